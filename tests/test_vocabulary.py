"""data/vocabulary.py: SentencePiece and byte ids equal seqio's, Hugging Face tokenizer.json files
(tiny BPE ones trained here, no network) with their EOS/BOS found, identities and their check,
bad inputs named before any work."""
import hashlib
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from data import vocabulary as v

TEXTS = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune.",
    "def add(a, b):\n    \"\"\"Adds two numbers.\"\"\"\n    if a:\n\treturn a + b  # 12345\n",
    "Ünïcödé 漢字 and  two  spaces\t, emoji 🙂, ﬁ ligature, café\r\n",
    "",
    "  leading and trailing whitespace  \n\n",
]
LINES = [line for t in TEXTS[:3] for line in t.split("\n") if line.strip()] * 20


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    """A tiny SentencePiece BPE model with data/tokenizer.py's settings."""
    import sentencepiece as spm

    prefix = tmp_path_factory.mktemp("spm") / "tiny"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(LINES), model_prefix=str(prefix), model_type="bpe",
        vocab_size=400, character_coverage=0.9995, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=False,
        allow_whitespace_only_pieces=True, minloglevel=2, num_threads=1)
    return f"{prefix}.model"


def train_bpe(directory, special_tokens, extra_lines=(), truncate=0):
    """A byte-level BPE tokenizer.json (GPT-2 style) trained on the test lines."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(LINES + list(extra_lines), trainer)
    if truncate:
        tok.enable_truncation(max_length=truncate)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    return directory / "tokenizer.json"


def seqio_vocab(path):
    from data import tokenizer
    return tokenizer.load_vocabulary(path)


# -- SentencePiece and bytes: the seqio pipeline's ids ------------------------------------------

def test_sentencepiece_ids_equal_seqios(spm_model):
    import tensorflow as tf

    ours, theirs = v.load(spm_model), seqio_vocab(spm_model)
    assert ours.kind == "sentencepiece" and ours.path == os.path.abspath(spm_model)
    assert (ours.vocab_size, ours.eos_id, ours.start_id) == (theirs.vocab_size, theirs.eos_id, 0)
    assert (ours.vocab_size, ours.eos_id) == (400, 1)
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == list(theirs.encode(text))
        assert ids == theirs.encode_tf(tf.constant(text)).numpy().tolist()  # the tf.data path
        assert all(0 < i < ours.vocab_size for i in ids) and ours.start_id not in ids
        assert ours.decode(ids) == text
    assert ours.encode_batch(TEXTS) == [ours.encode(t) for t in TEXTS]
    assert ours.encode_batch([]) == []
    assert ours.decode(ours.encode(TEXTS[0]) + [ours.eos_id, 0]) == TEXTS[0]  # specials dropped


def test_byte_ids_equal_seqios():
    import tensorflow as tf

    ours, theirs = v.load("byte"), seqio_vocab("byte")
    assert (ours.kind, ours.vocab_size, ours.eos_id, ours.start_id) == ("byte", 259, 1, 0)
    assert ours.vocab_size == theirs.vocab_size and ours.eos_id == theirs.eos_id
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == list(theirs.encode(text))
        assert ids == theirs.encode_tf(tf.constant(text)).numpy().tolist()
        assert ours.decode(ids) == text == theirs.decode(ids)
    assert ours.encode_batch(TEXTS) == [ours.encode(t) for t in TEXTS]
    assert ours.identity() == {"kind": "byte", "path": "", "sha256": "", "vocab_size": 259,
                               "eos_id": 1, "start_id": 0}


def test_builtin_reads_the_corpus_model_and_names_the_fix(tmp_path, spm_model):
    from data import tokenizer

    with pytest.raises(FileNotFoundError, match="python -m data.tokenizer"):
        v.load("builtin", data_dir=str(tmp_path), vocab_size=400)
    with pytest.raises(ValueError, match="needs vocab_size"):
        v.load("builtin", data_dir=str(tmp_path))
    path = tokenizer.model_path(str(tmp_path), 400)
    path.parent.mkdir(parents=True)
    path.write_bytes(open(spm_model, "rb").read())
    vocab = v.load("builtin", data_dir=str(tmp_path), vocab_size=400)
    assert vocab.identity() == {**v.load(spm_model).identity(), "path": str(path.resolve())}
    with pytest.raises(ValueError, match="vocab_size=256 is smaller than .* 400 ids"):
        v.load(spm_model, vocab_size=256)
    with pytest.raises(ValueError, match="leave them empty"):
        v.load(spm_model, eos_token="</s>")


# -- Hugging Face tokenizer.json --------------------------------------------------------------

def test_hf_gpt2_style_eos_is_the_start_token(tmp_path):
    path = train_bpe(tmp_path / "gpt2", ["<|endoftext|>"], truncate=4)
    vocab = v.load(str(path))  # no config beside it: the well-known name
    assert vocab.kind == "huggingface" and vocab.path == str(path.resolve())
    assert vocab.eos_token == "<|endoftext|>" and vocab.bos_token is None
    assert vocab.eos_id == vocab.start_id == vocab.tokenizer.token_to_id("<|endoftext|>") == 0
    assert vocab.vocab_size == vocab.tokenizer.get_vocab_size(with_added_tokens=True)
    for text in TEXTS:
        ids = vocab.encode(text)
        assert vocab.decode(ids) == text  # byte-level: exact, whitespace and non-ASCII kept
        assert vocab.eos_id not in ids
    assert len(vocab.encode(TEXTS[0])) > 4  # the file's truncation is switched off
    assert vocab.encode_batch(TEXTS) == [vocab.encode(t) for t in TEXTS]
    assert vocab.decode(vocab.encode(TEXTS[0]) + [vocab.eos_id]) == TEXTS[0]
    assert v.load(str(tmp_path / "gpt2")).identity() == vocab.identity()  # the directory
    assert vocab.identity() == {
        "kind": "huggingface", "path": str(path.resolve()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "vocab_size": vocab.vocab_size, "eos_id": 0, "start_id": 0}


def test_hf_llama_style_special_tokens_from_its_config(tmp_path):
    path = train_bpe(tmp_path / "llama", ["<unk>", "<s>", "</s>", "<|endoftext|>"])
    vocab = v.load(str(path))  # no config: well-known names, BOS <s> is the start token
    ids = {t: vocab.tokenizer.token_to_id(t) for t in ("<s>", "</s>", "<|endoftext|>")}
    assert (vocab.eos_token, vocab.eos_id) == ("<|endoftext|>", ids["<|endoftext|>"])
    assert (vocab.bos_token, vocab.start_id) == ("<s>", ids["<s>"])

    (tmp_path / "llama" / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False},
        "eos_token": "</s>", "add_bos_token": True}))
    vocab = v.load(str(tmp_path / "llama"))
    assert (vocab.eos_id, vocab.start_id) == (ids["</s>"], ids["<s>"])
    assert vocab.encode("hello") == vocab.encode_batch(["hello"])[0]
    assert ids["<s>"] not in vocab.encode("hello")  # no special tokens added

    # special_tokens_map.json before tokenizer_config.json (as transformers reads them); a null
    # BOS there means none: the start token is then the EOS
    (tmp_path / "llama" / "special_tokens_map.json").write_text(json.dumps({
        "eos_token": {"content": "<|endoftext|>"}, "bos_token": None}))
    vocab = v.load(str(path))
    assert (vocab.eos_id, vocab.bos_id, vocab.start_id) == (ids["<|endoftext|>"], None,
                                                             ids["<|endoftext|>"])
    # the arguments before both files
    vocab = v.load(str(path), eos_token="</s>", bos_token="<s>")
    assert (vocab.eos_id, vocab.start_id) == (ids["</s>"], ids["<s>"])

    with pytest.raises(ValueError, match="names '<eot>', which the tokenizer .* does not have"):
        v.load(str(path), eos_token="<eot>")
    (tmp_path / "llama" / "special_tokens_map.json").write_text("{not json")
    with pytest.raises(ValueError, match="special_tokens_map.json: not valid JSON"):
        v.load(str(path))


def test_hf_without_an_eos_names_the_file_and_the_fix(tmp_path):
    path = train_bpe(tmp_path / "plain", ["<pad>"])
    with pytest.raises(ValueError, match=r"no EOS token for .*plain/tokenizer.json.*"
                                         r"tokenizer_config.json.*eos_token"):
        v.load(str(path))
    vocab = v.load(str(path), eos_token="<pad>")
    assert vocab.eos_id == vocab.start_id == vocab.tokenizer.token_to_id("<pad>")
    (tmp_path / "plain" / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<pad>"}))
    assert v.load(str(path)).eos_id == vocab.eos_id


# -- identities ------------------------------------------------------------------------------

def test_identity_follows_the_files_bytes_and_check_identity_names_the_difference(tmp_path):
    path = train_bpe(tmp_path / "a", ["<|endoftext|>"])
    before = v.load(str(path))
    recorded = json.loads(json.dumps(before.identity()))  # as a store writes it
    v.check_identity(recorded, before, "store S")  # the same tokenizer: passes

    moved = tmp_path / "b" / "tokenizer.json"
    moved.parent.mkdir()
    moved.write_bytes(path.read_bytes())
    v.check_identity(recorded, v.load(str(moved)), "store S")  # the same file, moved: passes

    train_bpe(tmp_path / "a", ["<|endoftext|>"], extra_lines=["zzzz qqqq zzzz qqqq"] * 50)
    after = v.load(str(path))
    assert after.identity()["sha256"] != recorded["sha256"]
    assert after.identity()["path"] == recorded["path"]
    with pytest.raises(ValueError, match=r"store S was made with another tokenizer.*"
                                         r"sha256 [0-9a-f]{12} -> [0-9a-f]{12}.*"
                                         r"rebuild store S") as e:
        v.check_identity(recorded, after, "store S")
    assert "path" not in str(e.value).split("sha256")[0].split("now:")[1]  # same path: unnamed

    with pytest.raises(ValueError) as e:
        v.check_identity(recorded, v.load("byte"), "run W")
    assert (f"(recorded -> now: path {str(path.resolve())!r} -> ''; kind 'huggingface' -> "
            f"'byte'; sha256 {recorded['sha256'][:12]} -> ''; vocab_size "
            f"{recorded['vocab_size']} -> 259; eos_id 0 -> 1)") in str(e.value)
    assert "start_id" not in str(e.value)  # 0 in both
    with pytest.raises(ValueError, match=r"start_id \(not recorded\) -> 0"):
        v.check_identity({k: x for k, x in recorded.items() if k != "start_id"}, before, "run W")


# -- bad input -------------------------------------------------------------------------------

def test_bad_inputs_name_the_path_and_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no tokenizer at .*missing.model.*"
                                                r"SentencePiece .model.*tokenizer.json"):
        v.load(str(tmp_path / "missing.model"))
    with pytest.raises(FileNotFoundError, match="holds no tokenizer.json"):
        v.load(str(tmp_path))
    for name, content in [("notes.txt", b"hello world\n"), ("empty.model", b""),
                          ("x.model", b"\x1f\x8b\x08\x00 gzip")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name} is neither a SentencePiece model nor a "
                                             "Hugging Face tokenizer.json"):
            v.load(str(tmp_path / name))
    (tmp_path / "fake.model").write_bytes(b"\x0a\x05hello garbage")
    with pytest.raises(ValueError, match="fake.model is not a readable SentencePiece model"):
        v.load(str(tmp_path / "fake.model"))
    (tmp_path / "other.json").write_text(json.dumps({"vocab": {}}))
    with pytest.raises(ValueError, match="other.json is not a Hugging Face tokenizer.json"):
        v.load(str(tmp_path / "other.json"))
    train_bpe(tmp_path / "hf", ["<|endoftext|>"])
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps({"eos_token": "x"}))
    with pytest.raises(ValueError, match="is the tokenizer's tokenizer_config.json, not the "
                                         "tokenizer: name .*hf/tokenizer.json"):
        v.load(str(tmp_path / "hf" / "tokenizer_config.json"))
    with pytest.raises(ValueError, match="config.data.vocab is empty"):
        v.load("")
