"""The host-side domain mixer: per global batch, draws every row's domain, then pulls rows.

Why on the host: seqio's Mixture freezes its rates when the dataset is built, and a
tf.Variable-driven sampler lags the packer by ~L examples, so neither switches weights
exactly at a step nor reproducibly on resume. Here the draws come from a numpy PCG64
Generator seeded from the config, so a `set_weights` applies from the very next batch,
every process makes the same draws, and the RNG state plus each stream's position make
the whole data state.

Row layout: global batch of B rows; process p of P owns rows [p*B/P, (p+1)*B/P) and pulls
each of them from its own stream of that row's domain (streams of different processes
read disjoint shards). Indexed streams (a prepared token store, data/store.py: `indexed`,
`targets(indices)` and `layout(targets)`) are read by global index instead: the n-th row the whole run draws from
a domain is that stream's row n, whichever process reads it, so the state (the RNG, the
weights and one count per domain) is the same on every process and restores onto any number
of them.

State (`get_state`, JSON-serializable, for orbax JsonSave):
  {"version": 1, "domain_names": [...], "global_batch": B, "process_index": p,
   "process_count": P, "batches": n, "weights": [float, ...],
   "rng": {"state": "<int>", "inc": "<int>", "has_uint32": 0|1, "uinteger": int},
   "streams": {domain_name: <that stream's get_state()>}}
The 128-bit PCG64 integers are strings so any JSON reader keeps them exact. The stream
states differ per process, so each process must save and restore its own; with indexed
streams "process_index" and "process_count" are null and "streams" holds {"kind": "indexed",
"rows": n} per domain, identical on every process.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

BATCH_KEYS = ("inputs", "targets", "segment_ids", "positions", "loss_mask")
STATE_VERSION = 1


class Stream(Protocol):
    """A domain's endless source of packed rows (dicts of 1-D numpy arrays of length L)."""

    def __next__(self) -> dict[str, np.ndarray]: ...
    def get_state(self) -> Any: ...
    def set_state(self, state: Any) -> None: ...


class ReplayStream:
    """Cycles forever over a re-iterable (e.g. a list) of rows; state is the row count.

    For tests and small in-memory data: restore re-iterates and skips, so its cost is
    linear in the rows consumed.
    """

    def __init__(self, rows: Iterable[dict[str, np.ndarray]]):
        self._rows = rows
        self._it = iter(rows)
        self.rows = 0

    def __next__(self) -> dict[str, np.ndarray]:
        try:
            row = next(self._it)
        except StopIteration:
            self._it = iter(self._rows)
            try:
                row = next(self._it)
            except StopIteration:
                raise ValueError("ReplayStream got an empty or one-shot iterable; pass a "
                                 "re-iterable sequence with at least one row") from None
        self.rows += 1
        return row

    def get_state(self) -> dict[str, Any]:
        return {"kind": "replay", "rows": self.rows}

    def set_state(self, state: dict[str, Any]) -> None:
        self._it = iter(self._rows)
        self.rows = 0
        for _ in range(int(state["rows"])):
            next(self)


def validate_weights(weights: Sequence[float] | Mapping[str, float] | np.ndarray,
                     domain_names: Sequence[str]) -> np.ndarray:
    """Checks domain weights and returns them as float64 probabilities (sum 1).

    A mapping gives weights by domain name; domains it leaves out get 0.
    """
    names = list(domain_names)
    if isinstance(weights, Mapping):
        unknown = [k for k in weights if k not in names]
        if unknown:
            raise ValueError(f"unknown domain(s) {unknown} in weights {dict(weights)}; "
                             f"the domains are {names}")
        weights = [weights.get(n, 0.0) for n in names]
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(names),):
        raise ValueError(f"weights must have one entry per domain ({len(names)}: {names}), "
                         f"got shape {w.shape}: {w.tolist()}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be finite, got {w.tolist()} for {names}")
    if np.any(w < 0):
        raise ValueError(f"weights must be >= 0, got {w.tolist()} for {names}")
    if w.sum() <= 0:
        raise ValueError(f"weights must not all be zero, got {w.tolist()} for {names}; "
                         "give at least one domain a positive weight")
    return w / w.sum()


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    s = rng.bit_generator.state
    return {"state": str(s["state"]["state"]), "inc": str(s["state"]["inc"]),
            "has_uint32": int(s["has_uint32"]), "uinteger": int(s["uinteger"])}


def _set_rng_state(rng: np.random.Generator, d: Mapping[str, Any]) -> None:
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": int(d["state"]), "inc": int(d["inc"])},
        "has_uint32": int(d["has_uint32"]), "uinteger": int(d["uinteger"])}


class Mixer:
    """Iterator of this process's rows of each global batch, with per-row `domain_id`."""

    def __init__(self, streams: Sequence[Stream], domain_names: Sequence[str], *,
                 global_batch: int, weights: Sequence[float] | Mapping[str, float],
                 seed: int, process_index: int = 0, process_count: int = 1):
        if len(streams) != len(domain_names) or not streams:
            raise ValueError(f"need one stream per domain, got {len(streams)} streams for "
                             f"domains {list(domain_names)}")
        if len(set(domain_names)) != len(domain_names):
            raise ValueError(f"domain names must be unique, got {list(domain_names)}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index must be in [0, {process_count}), got "
                             f"{process_index}")
        self.domain_names = tuple(domain_names)
        self.global_batch = global_batch
        self.process_index = process_index
        self.process_count = process_count
        self._streams = list(streams)
        self._weights = validate_weights(weights, self.domain_names)
        self._cdf = np.cumsum(self._weights)
        self._rng = np.random.default_rng(seed)
        local = rows_per_process(global_batch, process_count)
        self._rows = slice(process_index * local, (process_index + 1) * local)
        self.batches = 0
        # Indexed streams: rows drawn from each domain by the whole run so far.
        self.indexed = all(getattr(s, "indexed", False) for s in streams)
        if not self.indexed and any(getattr(s, "indexed", False) for s in streams):
            raise ValueError("a mixer's streams are all indexed (a token store) or none is")
        self._drawn = np.zeros(len(streams), np.int64)

    @classmethod
    def from_rows(cls, rows_by_domain: Mapping[str, Iterable[dict[str, np.ndarray]]],
                  **kwargs) -> "Mixer":
        """A mixer over in-memory rows, one re-iterable per domain (no TF needed)."""
        return cls([ReplayStream(r) for r in rows_by_domain.values()],
                   list(rows_by_domain), **kwargs)

    @property
    def weights(self) -> np.ndarray:
        return self._weights.copy()

    def set_weights(self, weights: Sequence[float] | Mapping[str, float]) -> None:
        """New domain weights, used from the next batch on."""
        self._weights = validate_weights(weights, self.domain_names)
        self._cdf = np.cumsum(self._weights)

    def draw_domains(self) -> np.ndarray:
        """The domains of all B rows of the next global batch (advances the RNG)."""
        u = self._rng.random(self.global_batch)
        # side="right" never picks a zero-weight domain; the clip guards rounding at 1.0.
        idx = np.searchsorted(self._cdf / self._cdf[-1], u, side="right")
        return np.minimum(idx, len(self.domain_names) - 1).astype(np.int32)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.indexed:
            return self._next_indexed()
        domain_id = self.draw_domains()[self._rows]
        rows = [next(self._streams[d]) for d in domain_id]
        batch = {k: np.stack([r[k] for r in rows]) for k in BATCH_KEYS}
        batch["domain_id"] = domain_id
        self.batches += 1
        return batch

    def _next_indexed(self) -> dict[str, np.ndarray]:
        """Row j of the global batch, of domain d, is that domain's stream row drawn[d] + (rows
        of d before j); this process reads its own rows' indices. The streams share one
        vocabulary, so the batch's tokens are laid out as packed rows in one call."""
        domains = self.draw_domains()
        index = np.empty(len(domains), np.int64)
        for d in np.unique(domains):
            at = domains == d
            index[at] = self._drawn[d] + np.arange(at.sum())
        self._drawn += np.bincount(domains, minlength=len(self._streams))
        domain_id, index = domains[self._rows], index[self._rows]
        targets = None
        for d in np.unique(domain_id):
            at = np.flatnonzero(domain_id == d)
            part = self._streams[d].targets(index[at])
            if targets is None:
                targets = np.empty((len(domain_id), part.shape[1]), part.dtype)
            targets[at] = part
        batch = self._streams[0].layout(targets)
        batch["domain_id"] = domain_id
        self.batches += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        """JSON-serializable state; see the module docstring for its format."""
        return {
            "version": STATE_VERSION,
            "domain_names": list(self.domain_names),
            "global_batch": self.global_batch,
            "process_index": None if self.indexed else self.process_index,
            "process_count": None if self.indexed else self.process_count,
            "batches": self.batches,
            "weights": self._weights.tolist(),
            "rng": _rng_state(self._rng),
            "streams": {n: ({"kind": "indexed", "rows": int(self._drawn[i])} if self.indexed
                            else s.get_state())
                        for i, (n, s) in enumerate(zip(self.domain_names, self._streams))},
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restores a `get_state()` taken by a mixer built with the same arguments."""
        mine = {"version": STATE_VERSION, "domain_names": list(self.domain_names),
                "global_batch": self.global_batch,
                "process_index": None if self.indexed else self.process_index,
                "process_count": None if self.indexed else self.process_count}
        seen = {k: state.get(k) for k in mine}
        if seen != mine:
            raise ValueError(f"data state does not fit this mixer: saved {seen}, this "
                             f"mixer {mine}; resume with the same domains, global batch "
                             "and process layout, and give each process its own state")
        validate_weights(state["weights"], self.domain_names)
        # As saved, not renormalised: w / w.sum() moves an ulp (1/6 -> 0.16666666666666669),
        # and the draws' cumulative sums with it.
        self._weights = np.asarray(state["weights"], np.float64)
        self._cdf = np.cumsum(self._weights)
        _set_rng_state(self._rng, state["rng"])
        for i, (name, stream) in enumerate(zip(self.domain_names, self._streams)):
            if self.indexed:
                self._drawn[i] = int(state["streams"][name]["rows"])
            else:
                stream.set_state(state["streams"][name])
        self.batches = int(state["batches"])


def parse_weights(weights: str | Sequence[float] | Mapping[str, float] | None,
                  domain_names: Sequence[str]) -> np.ndarray:
    """"uniform" / None, "0.5,0.5" (domain order), "name:w,..." (others 0), "file:PATH" (a
    file holding one of these, e.g. a sweep's mixture.txt), a sequence or a mapping ->
    probabilities."""
    if weights is None or (isinstance(weights, str) and weights.strip() == "uniform"):
        return np.full(len(domain_names), 1.0 / len(domain_names))
    if isinstance(weights, str) and weights.strip().startswith("file:"):
        path = weights.strip()[len("file:"):]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weights file {path!r} (from {weights!r}) does not exist: "
                                    "write it first (a sweep or DoReMi run writes mixture.txt)")
        with open(path) as f:
            return parse_weights(f.read().strip(), domain_names)
    if isinstance(weights, str):
        parts = [p.strip() for p in weights.split(",") if p.strip()]
        try:
            if all(":" in p for p in parts):
                pairs = [(k.strip(), float(v)) for k, v in (p.split(":", 1) for p in parts)]
            else:
                pairs, weights = None, [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"cannot parse weights {weights!r}: write 'uniform', "
                             "comma-separated floats, or 'name:w,...'") from None
        if pairs is not None:
            seen = [k for k, _ in pairs]
            twice = sorted({k for k in seen if seen.count(k) > 1})
            if twice:
                raise ValueError(f"weights {weights!r} name domain(s) {twice} more than once: "
                                 "give each domain one weight")
            weights = dict(pairs)
    return validate_weights(weights, domain_names)


def rows_per_process(global_batch: int, process_count: int) -> int:
    """b = B / P, with a clear error when B does not split evenly."""
    if global_batch <= 0 or global_batch % process_count:
        raise ValueError(f"global batch {global_batch} must be a positive multiple of the "
                         f"process count {process_count}")
    return global_batch // process_count


def pad_rows(rows: list[dict[str, np.ndarray]], n: int, seq_len: int) -> list[dict]:
    """Appends all-zero rows (loss_mask 0) until there are n rows."""
    zero = {k: np.zeros(seq_len, np.float32 if k == "loss_mask" else np.int32)
            for k in BATCH_KEYS}
    return rows + [zero] * max(0, n - len(rows))
