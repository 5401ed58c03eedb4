"""What a run does at the terminal: Ctrl-C waits for a step boundary (:func:`deferred_interrupt`), and
``TQDM_DISABLE=1`` silences every progress bar (:func:`tqdm_disabled`)."""
from __future__ import annotations

import signal
import sys
from contextlib import contextmanager


def tqdm_disabled() -> bool:
    """``TQDM_DISABLE=1`` silences the engine's bars even where ``progress=True`` is passed (tqdm's own
    environment default loses to an explicit ``disable=``); notebooks' kernels set it."""
    from ..paths import env_flag

    return env_flag("TQDM_DISABLE")


@contextmanager
def deferred_interrupt():
    """Turn Ctrl-C into a flag checked at step boundaries, so a checkpoint is never half-updated.

    A second Ctrl-C interrupts at once.
    """
    state = {"interrupted": False}
    if sys.platform == "win32" or not _is_main_thread():
        yield state
        return

    def handler(signum, frame):
        if state["interrupted"]:
            raise KeyboardInterrupt
        state["interrupted"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
