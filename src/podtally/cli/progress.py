"""Progress on stderr, only on a terminal: the verifier's bar (runs over a second), and the
steps of the stack and cloud commands (a rich spinner with the step under way)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from podtally.cli.common import err, stderr_is_tty

if TYPE_CHECKING:
    from podtally.verify import Progress

BAR_AFTER = 1.0  # seconds: short runs never draw a bar
BAR_WIDTH = 24


class ProgressBar:
    """``[#####-----]  52%  523/1000  4.1k/s  0 errors`` on stderr, redrawn in place."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.drawn = False

    def update(self, progress: Progress) -> None:
        if progress.elapsed < BAR_AFTER:
            return
        fraction = progress.fraction
        filled = int(fraction * BAR_WIDTH)
        rate = progress.done / progress.elapsed if progress.elapsed else 0.0
        count = f"{progress.done}/{progress.total}" if progress.total else f"{progress.done}"
        if progress.duration and not progress.total:
            count += f" in {progress.elapsed:.1f}/{progress.duration:g}s"
        line = (
            f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction:4.0%}  {count}  "
            f"{rate:,.0f}/s  {progress.errors} errors"
        )
        if progress.status:
            line += f"  {progress.status}"
        self.stream.write(f"\r{line}\x1b[K")
        self.stream.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False


@contextmanager
def progress_bar(no_progress: bool) -> Iterator[ProgressBar | None]:
    """A bar while the block runs (none when asked or not on a terminal), wiped at the end."""
    bar = ProgressBar(sys.stderr) if stderr_is_tty() and not no_progress else None
    try:
        yield bar
    finally:
        if bar is not None:
            bar.clear()


@contextmanager
def steps(what: str) -> Iterator[Callable[[str], None]]:
    """The ``progress`` callback of ``up``, ``restart``, ``scale`` and ``cloud``.

    On a terminal, a rich spinner on stderr shows ``what`` and the step under way; each step's
    line stays printed above it once the next begins, and the spinner is gone at the end.
    Elsewhere every step is one plain line on stderr, as it always was.
    """
    if not stderr_is_tty():
        yield err
        return
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    with console.status(what, spinner="dots") as status:

        def say(line: str) -> None:
            console.print(line, markup=False)
            status.update(f"{what}: {line.strip()}")

        yield say
