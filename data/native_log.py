"""Keeps the native start-up chatter of TensorFlow and sentencepiece off the terminal.

TensorFlow logs from C++ at import (oneDNN, CUDA probing, absl's pre-init warning) whatever
TF_CPP_MIN_LOG_LEVEL says, and the sentencepiece kernel of tensorflow-text logs "precompiled_
charsmap is empty" each time a pipeline first tokenizes. Both write to file descriptor 2
directly, so the only switch is the descriptor: `quiet()` points it at /dev/null for the
duration of such a call when TF_CPP_MIN_LOG_LEVEL >= 1 (main.py sets 3 unless --verbosity is
given). Python's own output (errors, the progress bar) goes through sys.stderr and is held
back only within those short calls; an exception raised there is printed once fd 2 is back.
"""

import contextlib
import os
import sys


def _wanted() -> bool:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) >= 1
    except ValueError:
        return False


@contextlib.contextmanager
def quiet():
    """File descriptor 2 on /dev/null inside the block, if the run asked for quiet logs."""
    if not _wanted():
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
