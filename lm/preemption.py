"""SIGTERM / SIGINT ask the run to save at the next step boundary and exit cleanly.

Preemptible machines send SIGTERM some seconds before they go; a person presses Ctrl-C. The
first signal only sets a flag that the loop reads between steps; a second one exits at once
(exit code 128 + the signal number), for when the save itself is what hangs.
"""

import os
import signal
import sys
import threading

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionGuard:
    """Context manager: while inside, `requested` turns True on the first SIGTERM/SIGINT."""

    def __init__(self):
        self.requested = False
        self.signal_name = ""
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested:
            os._exit(128 + signum)
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        print(f"{self.signal_name} received: saving a checkpoint at the next step boundary, "
              "then exiting (send it again to exit at once, without saving)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> "PreemptionGuard":
        if threading.current_thread() is threading.main_thread():  # Python's rule for handlers
            self._previous = {s: signal.signal(s, self._handle) for s in _SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
