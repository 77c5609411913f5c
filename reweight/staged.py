"""The source a stage selector wraps the pipeline in: a pool drawn from it, chosen rows served.

Stage 0 trains on the inner source as drawn. At a stage boundary the selector draws a pool of
candidate rows from the inner source (domain provenance kept), chooses some, and the loop then
trains on those rows, each once, in pool order. The source's own state is the inner source's
(the pipeline item of the checkpoint); the selection, which the selector keeps in its own item,
is the inner state the pool was drawn at, the pool's size, the chosen indices and the cursor:
the pool is redrawn from it exactly, so no rows are stored.
"""

import numpy as np

from reweight.interface import BatchSource

BATCH_KEYS = ("inputs", "targets", "segment_ids", "positions", "loss_mask", "domain_id")


class StagedSource:
    """The BatchSource the loop trains from; weights set on it reach the inner source (and so
    the next pool)."""

    def __init__(self, inner: BatchSource):
        self.inner = inner
        self.domain_names = inner.domain_names
        self.pool: dict | None = None  # this process's candidate rows, [M, ...] per key
        self.pool_origin: dict | None = None  # the inner source's state the pool was drawn at
        self.pool_batches = 0
        self.selected = np.zeros(0, np.int64)  # pool indices of the stage, in serving order
        self.cursor = 0
        self.local_batch = 0  # rows per batch on this process

    def draw_pool(self, batches: int) -> dict:
        """Draws `batches` batches of this process's rows as the new pool; returns it."""
        self.pool_origin, self.pool_batches = self.inner.get_state(), batches
        drawn = [next(self.inner) for _ in range(batches)]
        self.pool = {k: np.concatenate([b[k] for b in drawn]) for k in BATCH_KEYS}
        self.local_batch = len(drawn[0]["domain_id"])
        return self.pool

    def serve(self, selected: np.ndarray, cursor: int = 0) -> None:
        """Trains on these pool rows from the next batch, each once."""
        self.selected, self.cursor = np.asarray(selected, np.int64), cursor

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.pool is None:
            return next(self.inner)
        rows = self.selected[self.cursor:self.cursor + self.local_batch]
        if len(rows) < self.local_batch:
            raise RuntimeError(f"the stage has used all {len(self.selected)} selected rows: "
                               "the selector must choose a new stage before they run out")
        self.cursor += self.local_batch
        return {k: v[rows] for k, v in self.pool.items()}

    def set_weights(self, weights) -> None:
        self.inner.set_weights(weights)

    def get_state(self) -> dict:
        return self.inner.get_state()

    def set_state(self, state: dict) -> None:
        self.inner.set_state(state)

    def selection_state(self) -> dict:
        """JSON for the selector's checkpoint item."""
        return {"pool_origin": self.pool_origin, "pool_batches": self.pool_batches,
                "selected": self.selected.tolist(), "cursor": self.cursor}

    def restore_selection(self, state: dict) -> None:
        """Redraws the pool from the inner state it was drawn at, then serves from the cursor
        (the loop restores the inner source's own state afterwards)."""
        if state["pool_origin"] is not None:
            self.inner.set_state(state["pool_origin"])
            self.draw_pool(int(state["pool_batches"]))
            self.serve(np.asarray(state["selected"], np.int64), int(state["cursor"]))
