"""Synthetic multi-domain text the repo makes itself: fast, exactly reproducible, no files.

Each domain is its own sparse Markov chain over the vocabulary (every token has a few likely
successors), so a model's loss falls from ln(V) towards the chain's entropy and domains differ
in what they teach. Documents end in EOS and are packed into rows with segment ids and
positions, in the same batch format as the seqio pipeline. Tests and the training core use it;
real experiments use the corpus.

Row r of domain d depends only on (seed, d, r), and the domain draws of step s only on
(seed, s) and the weights, so the iterator's state is two counters and every process can build
just its own rows of the global batch while agreeing on the draws.
"""

import numpy as np

from data.mixing import parse_weights

PAD, EOS, FIRST_TOKEN = 0, 1, 3
_TRAIN, _EVAL, _DRAWS, _CHAIN = 1, 2, 3, 4


class SyntheticMixture:
    """An endless iterator of process-local batches drawn from a weighted mix of domains."""

    def __init__(self, *, num_domains: int, vocab_size: int, seq_len: int, global_batch: int,
                 weights="uniform", seed: int = 0, process_index: int = 0,
                 process_count: int = 1, successors: int = 4, mean_doc_len: int = 48):
        if global_batch % process_count:
            raise ValueError(f"global batch {global_batch} is not divisible by the {process_count} "
                             "processes: each process feeds an equal share of rows")
        if vocab_size <= FIRST_TOKEN + successors:
            raise ValueError(f"vocab_size={vocab_size} is too small for synthetic text")
        self.domain_names = [f"synthetic_{d}" for d in range(num_domains)]
        self.seq_len, self.global_batch, self.seed = seq_len, global_batch, seed
        self.rows = slice(process_index * global_batch // process_count,
                          (process_index + 1) * global_batch // process_count)
        self.mean_doc_len = mean_doc_len
        self.weights = parse_weights(weights, self.domain_names)
        self._chains = []
        for d in range(num_domains):
            rng = np.random.default_rng([seed, _CHAIN, d])
            succ = rng.integers(FIRST_TOKEN, vocab_size, size=(vocab_size, successors))
            probs = rng.dirichlet(np.ones(successors), size=vocab_size).cumsum(-1)
            self._chains.append((succ, probs))
        self._step = 0
        self._rows_used = np.zeros(num_domains, np.int64)

    def set_weights(self, weights) -> None:
        """New weights apply from the next batch."""
        self.weights = parse_weights(weights, self.domain_names)

    def get_state(self) -> dict:
        return {"step": self._step, "rows_used": self._rows_used.tolist(),
                "weights": self.weights.tolist()}

    def set_state(self, state: dict) -> None:
        self._step = int(state["step"])
        self._rows_used = np.asarray(state["rows_used"], np.int64)
        self.weights = parse_weights(state["weights"], self.domain_names)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        draws = np.random.default_rng([self.seed, _DRAWS, self._step])
        domains = draws.choice(len(self.domain_names), size=self.global_batch, p=self.weights)
        # Row j of domain d takes that domain's next unused row index, in global-batch order.
        index = np.empty(self.global_batch, np.int64)
        for d in range(len(self.domain_names)):
            (where,) = np.nonzero(domains == d)
            index[where] = self._rows_used[d] + np.arange(len(where))
            self._rows_used[d] += len(where)
        self._step += 1
        rows = [self.row(int(d), int(r), _TRAIN) for d, r in zip(domains[self.rows], index[self.rows])]
        return self._stack(rows, domains[self.rows])

    def eval_batches(self, rows_per_domain: int) -> dict:
        """Validation rows (a stream disjoint from training) of every domain, in global batches
        padded with empty rows; each process gets its own slice of each batch."""
        out = {}
        for d, name in enumerate(self.domain_names):
            rows = [self.row(d, r, _EVAL) for r in range(rows_per_domain)]
            rows += [self._empty_row()] * (-len(rows) % self.global_batch)
            out[name] = [self._stack(rows[start + self.rows.start:start + self.rows.stop],
                                     np.full(self.rows.stop - self.rows.start, d))
                         for start in range(0, len(rows), self.global_batch)]
        return out

    def row(self, domain: int, index: int, stream: int) -> dict:
        """One packed row: documents from `domain`'s chain until seq_len tokens are filled."""
        rng = np.random.default_rng([self.seed, stream, domain, index])
        succ, probs = self._chains[domain]
        targets = np.zeros(self.seq_len, np.int32)
        segments = np.zeros(self.seq_len, np.int32)
        positions = np.zeros(self.seq_len, np.int32)
        pos, seg = 0, 0
        while pos < self.seq_len:
            seg += 1
            n = min(int(rng.geometric(1.0 / self.mean_doc_len)) + 1, self.seq_len - pos)
            uniforms = rng.random(n)
            token = int(rng.integers(FIRST_TOKEN, len(succ)))
            for i in range(n - 1):
                targets[pos + i] = token
                token = int(succ[token, np.searchsorted(probs[token], uniforms[i])])
            targets[pos + n - 1] = EOS
            segments[pos:pos + n] = seg
            positions[pos:pos + n] = np.arange(n)
            pos += n
        inputs = np.where(positions == 0, PAD, np.roll(targets, 1)).astype(np.int32)
        return {"inputs": inputs, "targets": targets, "segment_ids": segments,
                "positions": positions, "loss_mask": np.ones(self.seq_len, np.float32)}

    def _empty_row(self) -> dict:
        z = np.zeros(self.seq_len, np.int32)
        return {"inputs": z, "targets": z, "segment_ids": z, "positions": z,
                "loss_mask": np.zeros(self.seq_len, np.float32)}

    @staticmethod
    def _stack(rows: list, domains: np.ndarray) -> dict:
        batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        batch["domain_id"] = np.asarray(domains, np.int32)
        return batch
