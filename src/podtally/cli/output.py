"""stdout while a command runs: a reader that left is no error, a failed write is exit 3."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from typing import Any, TextIO

from podtally.errors import PodtallyError


class OutputError(PodtallyError):
    """Writing to stdout failed (a full disk, an I/O error): exit 3, never a traceback."""


class Output:
    """``sys.stdout`` while a command runs.

    A reader that went away (``EPIPE``: ``podtally manifests | head``) is not the command's
    failure: the rest of the output is dropped and the command finishes with its own exit code.
    Any other failed write or flush is an :class:`OutputError`. Either way stdout's descriptor is
    pointed at ``/dev/null`` first, so that the bytes still in Python's buffer cannot fail again
    (and print ``Exception ignored ...``) when the interpreter exits. A failure is raised again
    at every later write and flush: a caller that swallowed it once (click probes a stream
    with an empty write inside ``except Exception``) cannot turn a full disk into success.
    """

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream  # None: the process was started with stdout closed (`>&-`)
        self._gone = False
        self._error: OutputError | None = None

    def write(self, text: str) -> int:
        if self._stream is None:
            raise OutputError("cannot write output: stdout is closed")
        if self._error is not None:
            raise self._error
        if not self._gone:
            try:
                self._stream.write(text)
            except OSError as exc:
                self._failed(exc)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._error is not None:
            raise self._error
        if self._stream is not None and not self._gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._failed(exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _failed(self, exc: OSError) -> None:
        self._gone = True
        self._discard()
        if isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE:
            return
        reason = exc.strerror or str(exc)
        self._error = OutputError(f"cannot write output: {reason}")
        raise self._error from None

    def _discard(self) -> None:
        try:
            fd = self._stream.fileno()  # type: ignore[union-attr]
        except (OSError, ValueError, AttributeError):  # not a real file (a test's capture)
            return
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except OSError:
            pass
