"""One helper for what the commands do with SIGINT (Ctrl-C) and SIGTERM while they run.

Modelled on uvicorn's ``capture_signals``: install handlers for the block, remember what
arrived, restore the handlers of before on the way out, then deliver. The commands need three
behaviours, one per ``mode``:

``"interrupt"``
    SIGTERM does what Ctrl-C does (``kill`` from a supervisor rolls back or tears down as
    Ctrl-C would). It is delivered as SIGINT, so that inside :func:`asyncio.run` the event
    loop's own SIGINT handler cancels the requests cleanly, and outside it Python raises
    :class:`KeyboardInterrupt` where the program is. Only the first SIGTERM is: ``timeout``
    signals the command and then its process group, and a second SIGINT would be a second
    Ctrl-C. Where SIGINT is ignored (a job started with ``&`` in a script), Python's handler
    is put back for the block, so that SIGTERM still finds it.
``"hold"``
    Neither signal interrupts the block; when it is done, one that arrived is delivered as
    Ctrl-C (:class:`KeyboardInterrupt`), so the command still ends with exit 130.
``"ignore"``
    Neither signal interrupts the block, and those that arrived are dropped: the command is
    already stopping because of one.

Signals go to the main thread only; elsewhere the helper does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Literal

Mode = Literal["interrupt", "hold", "ignore"]


def _as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        raise KeyboardInterrupt  # SIGINT is ignored (a background job): stop all the same
    signal.raise_signal(signal.SIGINT)


@contextlib.contextmanager
def capture_signals(mode: Mode) -> Iterator[list[int]]:
    """For the block, handle SIGINT and SIGTERM as ``mode`` says; yield the signals held."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def remember(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    if mode == "interrupt":

        def once_as_ctrl_c(signum: int, frame: FrameType | None) -> None:
            # `timeout` sends SIGTERM to the command and then to its whole process group: the
            # first one stops the run; another would be a second Ctrl-C, which abandons the
            # partial report. A real second Ctrl-C still does.
            if not received:
                received.append(signum)
                _as_ctrl_c(signum, frame)

        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, once_as_ctrl_c)}
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            # Started in the background (`&` in a script): SIGINT is ignored, and asyncio would
            # install no handler of its own. SIGTERM must still stop the block as Ctrl-C does.
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    else:
        previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received and mode == "interrupt":
            # Stopping on the first SIGTERM already: the rest of it (the partial report, the
            # exit code) is not cut short by the second one.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if received and mode == "hold":
        raise KeyboardInterrupt
