"""Draws the next batches on a background thread, so the step never waits for the pipeline.

The thread takes each batch from the source and puts it on the devices (as a global array)
while the current step runs. Exact resume needs the source's state to match the batches the
loop has trained on, so the thread stops after any step the loop marks as a barrier (where a
hook acts: a save, an evaluation, a mixture update, a stage boundary) until the loop
`release()`s it: at a barrier nothing is drawn ahead, and the source's state and weights can be
read or changed safely. `stop_after(s)` ends the stream after step s (preemption), and the
thread never draws past it.
"""

import queue
import threading
import time
from typing import Any, Callable, Iterator

_DONE = object()


class Prefetcher:
    """Iterator of (step, device batch) for steps first_step .. last_step."""

    def __init__(self, source: Iterator[dict], to_device: Callable[[dict], Any], *, depth: int,
                 first_step: int, last_step: int, barrier: Callable[[int], bool]):
        if depth < 1:
            raise ValueError(f"config.data.prefetch must be >= 1, got {depth}")
        self._source, self._to_device, self._barrier = source, to_device, barrier
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._released = threading.Event()
        self._released.set()
        self._closing = threading.Event()
        self.depth = depth
        self._last_step = last_step  # the thread draws no step after this one
        self._next_step = first_step  # the step the thread draws next
        self._paused_at = None  # the barrier step the thread stops after
        self.wait_seconds = 0.0  # host time spent blocked in __next__ since the last reset
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _run(self) -> None:
        try:
            while True:
                self._released.wait()
                if self._closing.is_set() or self._next_step > self._last_step:
                    break
                step = self._next_step
                if self._barrier(step):  # pause after this batch until the loop is done with it
                    self._paused_at = step
                    self._released.clear()
                batch = self._to_device(next(self._source))
                self._next_step += 1
                if not self._put((step, batch)):
                    return
        except BaseException as e:  # handed to the loop, which raises it
            self._put(e)
            return
        self._put(_DONE)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[int, Any]:
        t0 = time.perf_counter()
        item = self._queue.get()
        self.wait_seconds += time.perf_counter() - t0
        if item is _DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def release(self, step: int) -> None:
        """Lets the thread draw past barrier `step` (a no-op if it is not paused there: the
        thread has already marked the barrier when the loop sees that step's batch)."""
        if self._paused_at == step:
            self._paused_at = None
            self._released.set()

    def stop_after(self, step: int) -> None:
        """Ends the stream after `step`. Pass at least (last step taken) + depth + 1: the thread
        may already have drawn that far, and a drawn batch must be trained on for the source's
        state to stay exact."""
        self._last_step = min(self._last_step, step)

    def close(self) -> None:
        self._closing.set()
        self._released.set()
        self._thread.join()
