"""One tokenizer interface over the three kinds a config may name (`config.data.vocab`).

  "builtin"              the corpus's SentencePiece model ({data_dir}/tokenizer/spm_bpe_{N}.model)
  "byte"                 UTF-8 bytes, id = byte + 3 (pad 0, eos 1, unk 2)
  PATH.model             any SentencePiece model
  PATH/tokenizer.json    any Hugging Face `tokenizers` file (GPT-2, GPT-NeoX/Pythia, Llama,
                         OLMo, ...), or the directory holding it; read with the `tokenizers`
                         package alone (never `transformers`)

The kind of a path is read from the file's first bytes, not its name. SentencePiece and byte
ids are exactly those of the seqio vocabularies the on-the-fly pipeline tokenizes with
(`data.tokenizer.load_vocabulary`), so a prepared store and the tf.data path give one model the
same rows. Every document ends in `eos_id`; before its first token the model reads `start_id`:
0 for SentencePiece and bytes (padding, never a real token: what the seqio pipeline feeds), the
tokenizer's BOS for a Hugging Face tokenizer that has one, else its EOS (GPT-2's convention,
and the prefix token of lm-evaluation-harness's HF model).

A Hugging Face tokenizer's EOS and BOS are, first found wins (per token, as `transformers`
resolves them): the `eos_token` / `bos_token` arguments; `special_tokens_map.json`, then
`tokenizer_config.json` beside the tokenizer.json (a string, or a dict with "content"; null
there means "none"); else well-known names in the vocab (WELL_KNOWN_EOS / WELL_KNOWN_BOS).

`identity()` names the tokenizer (kind, absolute path, the file's sha256, size, eos/start ids);
a store or run records it, and `check_identity` refuses to read its ids with another one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Sequence

WELL_KNOWN_EOS = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")
WELL_KNOWN_BOS = ("<s>", "<|begin_of_text|>", "<bos>")
HF_CONFIG_FILES = ("special_tokens_map.json", "tokenizer_config.json")  # first found wins
IDENTITY_FIELDS = ("kind", "path", "sha256", "vocab_size", "eos_id", "start_id")

BYTE_OFFSET = 3  # seqio.ByteVocabulary: 0 pad, 1 eos, 2 unk, then the 256 bytes
SPM_START_ID = 0  # the seqio pipeline's input before a document: padding


class Vocabulary:
    """The interface: `kind`, `vocab_size` (ids are in [0, vocab_size)), `eos_id`, `start_id`,
    `encode` (no special tokens added), `encode_batch`, `decode`, `identity`."""

    kind: str = ""
    path: str = ""  # absolute; "" for bytes
    sha256: str = ""  # of the file at `path`; "" for bytes
    vocab_size: int
    eos_id: int
    start_id: int

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def identity(self) -> dict:
        return {"kind": self.kind, "path": self.path, "sha256": self.sha256,
                "vocab_size": int(self.vocab_size), "eos_id": int(self.eos_id),
                "start_id": int(self.start_id)}

    def __repr__(self) -> str:
        where = f" {self.path}" if self.path else ""
        return (f"<{type(self).__name__}{where}: {self.vocab_size} ids, eos {self.eos_id}, "
                f"start {self.start_id}>")


class ByteVocabulary(Vocabulary):
    """UTF-8 bytes as seqio.ByteVocabulary numbers them: byte + 3; pad 0, eos 1, unk 2."""

    kind = "byte"
    vocab_size = 256 + BYTE_OFFSET
    eos_id = 1
    start_id = 0

    def encode(self, text: str) -> list[int]:
        return [b + BYTE_OFFSET for b in text.encode("utf-8")]

    def decode(self, ids: Iterable[int]) -> str:
        """The bytes of the byte ids (pad, eos, unk and ids past 258 dropped, as seqio does;
        an incomplete UTF-8 sequence is dropped)."""
        data = bytes(i - BYTE_OFFSET for i in map(int, ids)
                     if BYTE_OFFSET <= i < self.vocab_size)
        return data.decode("utf-8", errors="ignore")


class SentencePieceVocabulary(Vocabulary):
    """A SentencePiece model, ids as seqio.SentencePieceVocabulary(path) gives them."""

    kind = "sentencepiece"
    start_id = SPM_START_ID

    def __init__(self, path: Path):
        import sentencepiece as spm  # pylint: disable=import-outside-toplevel

        self.path, self.sha256 = str(path), _sha256(path)
        try:
            self.sp = spm.SentencePieceProcessor(model_file=self.path)
        except (RuntimeError, OSError) as e:
            raise ValueError(f"{path} is not a readable SentencePiece model ({e}); config.data."
                             "vocab takes 'builtin', 'byte', a SentencePiece .model or a Hugging "
                             "Face tokenizer.json") from None
        self.vocab_size = self.sp.get_piece_size()
        self.eos_id = self.sp.eos_id()
        if self.eos_id < 0:
            raise ValueError(f"the SentencePiece model {path} has no EOS piece (eos_id=-1): "
                             "train it with eos_id=1 (data/tokenizer.py's settings)")

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.sp.encode(list(texts)) if texts else []

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; control ids (pad, eos) read as nothing and ids past the vocab as
        unk, as seqio decodes (but not cut at the first EOS)."""
        unk = self.sp.unk_id()
        return self.sp.decode([i if 0 <= i < self.vocab_size else unk for i in map(int, ids)])


class HuggingFaceVocabulary(Vocabulary):
    """A Hugging Face tokenizer.json through `tokenizers` (no special tokens added on encode,
    no truncation or padding even if the file sets them)."""

    kind = "huggingface"

    def __init__(self, path: Path, eos_token: str = "", bos_token: str = ""):
        from tokenizers import Tokenizer  # pylint: disable=import-outside-toplevel

        self.path, self.sha256 = str(path), _sha256(path)
        try:
            self.tokenizer = Tokenizer.from_file(self.path)
        except Exception as e:  # tokenizers raises bare Exceptions  # pylint: disable=broad-except
            raise ValueError(f"{path} is not a Hugging Face tokenizer.json ({e}); config.data."
                             "vocab takes 'builtin', 'byte', a SentencePiece .model or a "
                             "tokenizer.json (or the directory holding it)") from None
        self.tokenizer.no_truncation()  # a file may set them; documents must stay whole
        self.tokenizer.no_padding()
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self.eos_token, eos_from = _special_token(path, "eos_token", eos_token, WELL_KNOWN_EOS,
                                                  self.tokenizer)
        if self.eos_token is None:
            raise ValueError(
                f"no EOS token for {path}: {eos_from}. Put the tokenizer's tokenizer_config.json "
                "(or special_tokens_map.json) beside it, or name the token (the eos_token "
                "argument)")
        self.bos_token, _ = _special_token(path, "bos_token", bos_token, WELL_KNOWN_BOS,
                                           self.tokenizer)
        self.eos_id = self.tokenizer.token_to_id(self.eos_token)
        self.bos_id = None if self.bos_token is None else self.tokenizer.token_to_id(
            self.bos_token)
        self.start_id = self.eos_id if self.bos_id is None else self.bos_id

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        return [e.ids for e in batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`, special tokens (EOS, BOS, padding) left out."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)


def load(spec: str, *, data_dir: str = "", vocab_size: int = 0, eos_token: str = "",
         bos_token: str = "") -> Vocabulary:
    """The tokenizer `spec` names: "builtin" (the corpus model for `vocab_size` under
    `data_dir`), "byte", a SentencePiece model file, or a Hugging Face tokenizer.json (or its
    directory). `vocab_size` > 0 is also the model's embedding size: a tokenizer with more ids
    is a ValueError. `eos_token` / `bos_token` name a Hugging Face tokenizer's special tokens
    (see the module docstring); they are an error for the other kinds, whose ids are fixed.
    Raises FileNotFoundError / ValueError naming the path and the fix, before any work."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("config.data.vocab is empty: use 'builtin', 'byte', a SentencePiece "
                         ".model or a Hugging Face tokenizer.json")
    if spec == "builtin":
        if vocab_size <= 0:
            raise ValueError("vocab 'builtin' needs vocab_size (config.model.vocab_size): it "
                             "names the corpus tokenizer spm_bpe_{vocab_size}.model")
        from data import tokenizer  # pylint: disable=import-outside-toplevel
        path = tokenizer.model_path(data_dir, vocab_size)
        if not path.exists():
            raise FileNotFoundError(
                f"config.data.vocab='builtin' reads the corpus tokenizer of vocab_size="
                f"{vocab_size} under data_dir={data_dir!r}, and {path} does not exist: build it "
                f"with `python -m data.tokenizer --data_dir={data_dir} --vocab_size="
                f"{vocab_size}`, or set config.data.vocab to 'byte', a SentencePiece model or a "
                "Hugging Face tokenizer.json")
        vocab: Vocabulary = SentencePieceVocabulary(path.resolve())
    elif spec == "byte":
        vocab = ByteVocabulary()
    else:
        path, kind = _resolve(spec)
        vocab = (HuggingFaceVocabulary(path, eos_token, bos_token) if kind == "huggingface"
                 else SentencePieceVocabulary(path))
    if vocab.kind != "huggingface" and (eos_token or bos_token):
        raise ValueError(f"eos_token / bos_token ({eos_token!r}, {bos_token!r}) name a Hugging "
                         f"Face tokenizer's special tokens; {spec!r} is a {vocab.kind} "
                         "vocabulary, whose EOS is fixed (id 1): leave them empty")
    if vocab_size > 0 and vocab.vocab_size > vocab_size:
        raise ValueError(f"config.model.vocab_size={vocab_size} is smaller than the tokenizer "
                         f"{spec!r}'s {vocab.vocab_size} ids: raise it to at least "
                         f"{vocab.vocab_size}")
    return vocab


def identity_changes(recorded: dict, now: dict) -> str:
    """How `now` (an `identity()`) names another tokenizer than `recorded`: "" when the kind,
    file contents (sha256), size and eos/start ids agree, else "key old -> new; ...". A path
    alone may differ (the same file moved or copied); it is named when anything else differs."""
    differs = [k for k in IDENTITY_FIELDS if k != "path" and recorded.get(k) != now.get(k)]
    if not differs:
        return ""
    if recorded.get("path") != now.get("path"):
        differs.insert(0, "path")

    def show(key: str, value) -> str:
        if value is None:
            return "(not recorded)"
        if key == "sha256" and value:
            return str(value)[:12]
        return repr(value) if isinstance(value, str) else str(value)

    return "; ".join(f"{k} {show(k, recorded.get(k))} -> {show(k, now.get(k))}" for k in differs)


def check_identity(recorded: dict, vocab: Vocabulary, where: str) -> None:
    """Raises ValueError when `recorded` (an `identity()` that `where`, a store or a run,
    wrote) names another tokenizer than `vocab` (`identity_changes`)."""
    changes = identity_changes(recorded, vocab.identity())
    if not changes:
        return
    was = recorded.get("path") or recorded.get("kind") or "(not recorded)"
    raise ValueError(
        f"{where} was made with another tokenizer than this config's (recorded -> now: "
        f"{changes}); its token ids mean other text under this one. Point config.data.vocab "
        f"back at the recorded tokenizer ({was}, with the same contents), or rebuild {where} "
        "with this one (a store: `python main.py --mode=prepare`; a run: a new --workdir)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _resolve(spec: str) -> tuple[Path, str]:
    """(absolute file, kind) of a tokenizer path: a directory means its tokenizer.json; the
    kind is read from the first bytes (JSON: Hugging Face; a protobuf: SentencePiece)."""
    path = Path(spec).expanduser()
    expected = ("config.data.vocab takes 'builtin', 'byte', a SentencePiece .model, or a "
                "Hugging Face tokenizer.json or the directory holding it")
    if not path.exists():
        raise FileNotFoundError(f"no tokenizer at {path}: {expected}")
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise FileNotFoundError(
                f"the directory {path} holds no tokenizer.json ({expected}); for a "
                "SentencePiece model name its .model file")
        path = path / "tokenizer.json"
    path = path.resolve()
    with open(path, "rb") as f:
        head = f.read(64)
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        if path.name in HF_CONFIG_FILES and (path.parent / "tokenizer.json").is_file():
            raise ValueError(f"{path} is the tokenizer's {path.name}, not the tokenizer: name "
                             f"{path.parent / 'tokenizer.json'} (or its directory)")
        return path, "huggingface"
    if head[:1] == b"\x0a":  # a ModelProto opens with its pieces (field 1, length-delimited)
        return path, "sentencepiece"
    what = "empty" if not head else f"starts with {head[:8]!r}"
    raise ValueError(f"{path} is neither a SentencePiece model nor a Hugging Face tokenizer.json "
                     f"(the file is {what}); {expected}")


def _token_content(value, source: str) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"{source}: expected a token string or a dict with 'content', got "
                     f"{value!r}")


def _special_token(path: Path, key: str, given: str, well_known: Sequence[str],
                   tokenizer) -> tuple[str | None, str]:
    """(token or None, where it came from / where it was looked for) of `key` ("eos_token",
    "bos_token") of the tokenizer at `path`. A named token missing from the vocab is an error."""
    found, source = None, ""
    if given:
        found, source = given, f"the {key} argument"
    else:
        for name in HF_CONFIG_FILES:
            config = path.parent / name
            if not config.is_file():
                continue
            try:
                data = json.loads(config.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{config}: not valid JSON ({e}); repair it or remove it "
                                 f"and pass {key} explicitly") from None
            if isinstance(data, dict) and key in data:
                found = _token_content(data[key], f"{config}: {key}")
                if found is None:
                    return None, f"{config} sets {key} to null"
                source = f"{config} ({key})"
                break
    if found is not None:
        if tokenizer.token_to_id(found) is None:
            raise ValueError(f"{source} names {found!r}, which the tokenizer {path} does not "
                             "have: name one of its tokens")
        return found, source
    for name in well_known:
        if tokenizer.token_to_id(name) is not None:
            return name, f"the well-known token {name!r} in {path}"
    looked = " or ".join(HF_CONFIG_FILES)
    return None, (f"no {looked} beside it sets {key}, no {key} argument was given, and it has "
                  f"none of the well-known tokens {list(well_known)}")

