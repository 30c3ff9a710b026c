"""Signals during the stack's critical steps: hold an interrupt until a step is complete
(:func:`deferred_interrupts`), or ignore it while a bounded cleanup runs (:func:`no_interrupts`).

Both act in the main thread only (where Python delivers signals); elsewhere they do nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the length of the block, then deliver them (main thread only).

    Unlike :func:`no_interrupts`, nothing is lost: a signal that arrives inside the block is
    raised again, with the handlers of before, as soon as the block is done.
    """

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            signal.raise_signal(held[0])


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Let a cleanup finish even if Ctrl-C is pressed again or SIGTERM comes (main thread only).

    The cleanups this guards are bounded (a drain, then SIGKILL after a bound).
    """

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
