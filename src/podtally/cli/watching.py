"""What `verify` and `demo` do around a run: watch it, keep its observations, print its report.

* :func:`watching`: the progress bar (or with ``--live`` on a terminal the live view) on
  stderr, and where each observation goes: the ``--observations`` file (first the run's
  settings, once, then a line per request, last how the run ended) and a list for ``--html``.
* :func:`until_interrupted`: a run's result, or after Ctrl-C its partial result.
* :meth:`Watch.report`: the ``--html`` page, the text report or the ``--json`` document, and
  the exit code.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from podtally.cli.common import err, stderr_is_tty
from podtally.cli.params import flag_namer
from podtally.cli.progress import progress_bar
from podtally.cli.report import check_html, write_html
from podtally.errors import Phrase, PodtallyError, Setting, UsageError, worded

if TYPE_CHECKING:
    from podtally.verify import Observation, Progress, VerifyOptions, VerifyResult
    from podtally.verify.expected_split import ExpectedSplit


class RunSettings:
    """The run's options, once known: the ``--observations`` file's first line; its result,
    once over: the file's last line."""

    options: VerifyOptions | None = None
    result: VerifyResult | None = None


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A write to the ``--observations`` file that fails is one error naming the file."""
    try:
        yield
    except OSError as exc:
        raise PodtallyError(str(exc.strerror), setting="observations", value=path) from None


@contextmanager
def _observation_writer(
    path: Path | None, run: RunSettings
) -> Iterator[Callable[[Observation], None] | None]:
    """Open ``--observations`` up front (a bad path is bad input: exit 2 before anything runs).

    The file is opened without truncating it and emptied at the first observation, so a run
    that never sends a request leaves an existing file as it was, and removes one it created.
    The run's settings (``run.options``, known by then) are written first, once, so that
    `podtally report` judges the observations as the run did. When the run is over (its
    result, ``run.result``, is known: complete or interrupted), one last line says how it
    ended; a run that stops otherwise (killed, a failed write) leaves a file without that line,
    which `podtally report` takes for one cut short.
    """
    if path is None:
        yield None
        return
    from podtally.verify.report import observation_line, observations_end, observations_header

    def header() -> str:
        return "" if run.options is None else observations_header(run.options)

    # A detail that names a setting is written as this command words it, as the report does.
    context = click.get_current_context(silent=True)
    flag_name = flag_namer(context.command if context is not None else None)

    if is_stdout(path):
        first = True

        def to_stdout(observation: Observation) -> None:
            nonlocal first
            if first:
                first = False
                sys.stdout.write(header())
            sys.stdout.write(observation_line(observation, flag_name))

        yield to_stdout
        if not first and run.result is not None:
            sys.stdout.write(observations_end(run.result))
        return
    existed = path.exists()
    try:
        handle = path.open("a", encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"cannot write it: {exc.strerror}", setting="observations", value=path
        ) from None
    # Only a regular file is emptied (not /dev/stdout, a pipe or a device).
    regular = stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
    started = False

    def write(observation: Observation) -> None:
        nonlocal started
        with _writing(path):
            if not started:
                started = True
                if regular:
                    handle.truncate(0)
                handle.write(header())
            handle.write(observation_line(observation, flag_name))

    try:
        yield write
        if started and run.result is not None:
            with _writing(path):
                handle.write(observations_end(run.result))
    finally:
        try:
            with _writing(path):
                handle.close()
        finally:
            if not started and not existed and regular:
                path.unlink(missing_ok=True)


def is_stdout(path: Path | None) -> bool:
    return path is not None and str(path) == "-"


def check_outputs(json: bool, observations: Path | None) -> None:
    """Two documents cannot share stdout: ``--observations -`` sends the text report to stderr,
    and there is no sensible place for a ``--json`` document next to it."""
    if json and is_stdout(observations):
        raise UsageError(
            Phrase(
                Setting("observations"),
                " - and ",
                Setting("json"),
                " would both write to stdout: give ",
                Setting("observations"),
                " a file, or leave ",
                Setting("json"),
                " out",
            )
        )


OUTPUTS = ("json", "observations", "no_progress", "html", "live")  # the output options


def outputs_of(settings: dict[str, Any]) -> dict[str, Any]:
    """The output options (:data:`OUTPUTS`), taken out of a command's ``settings``."""
    return {name: settings.pop(name) for name in OUTPUTS}


class Watch:
    """Where the run's progress and observations go (the bar or the live view, the
    ``--observations`` file, a list for ``--html``), and where its report goes."""

    def __init__(
        self,
        write: Callable[[Observation], None] | None,
        json: bool,
        observations: Path | None,
        html: Path | None,
        run: RunSettings | None = None,
    ) -> None:
        self.json, self.observations_path, self.html = json, observations, html
        self.run = run or RunSettings()
        self.observations: list[Observation] = []
        self.sinks = [sink for sink in (write, self.observations.append if html else None) if sink]
        self.progress: Callable[[Progress], None] | None = None
        self.say: Callable[[str], None] = err

    @property
    def result(self) -> VerifyResult | None:
        """The run's result, once over: the live view's last frame shows its verdict, and the
        ``--observations`` file ends with how the run ended."""
        return self.run.result

    @result.setter
    def result(self, result: VerifyResult | None) -> None:
        self.run.result = result

    def judged_by(self, options: VerifyOptions) -> None:
        """The run's options, known before its first request: the ``--observations`` file
        starts with them."""
        self.run.options = options

    def observe(self) -> Callable[[Observation], None] | None:
        sinks = self.sinks
        if not sinks:
            return None

        def observe(observation: Observation) -> None:
            for sink in sinks:
                sink(observation)

        return observe

    def report(self, result: VerifyResult, title: str) -> int:
        """Write the ``--html`` page, print the report (or the JSON document); return the
        exit code. An interrupted run's report is marked as such, then
        :class:`KeyboardInterrupt` is raised (``error: interrupted``, exit 130)."""
        from podtally.verify.report import render_json, render_text

        write_html(self.html, result, self.observations, title)
        flag_name = flag_namer(click.get_current_context().command)
        # The report goes to stdout, unless stdout carries the observations.
        out = sys.stderr if is_stdout(self.observations_path) else sys.stdout
        if self.json:
            out.write(render_json(result, flag_name))
        elif result.interrupted or result.verdict.result != "unreachable":
            out.write(render_text(result, flag_name))
        out.flush()
        sys.stdout.flush()
        if result.interrupted:
            raise KeyboardInterrupt
        if result.verdict.result == "unreachable":
            err(f"error: {worded(result.verdict.failures[0], flag_name)}")
        return result.exit_code


@contextmanager
def watching(
    expect_pods: int | None,
    alpha: float,
    *,
    expect_split: ExpectedSplit | None = None,
    json: bool,
    observations: Path | None,
    no_progress: bool,
    html: Path | None,
    live: bool,
) -> Iterator[Watch]:
    """The bar (as before), or with ``--live`` on a terminal the live view, on stderr.

    The output options are checked first: ``--json`` and ``--observations -`` cannot share
    stdout, ``--html`` must be writable, and ``--live`` (draws on stderr) with
    ``--no-progress`` (nothing there) is bad usage."""
    check_outputs(json, observations)
    check_html(html)
    if live and no_progress:
        raise UsageError(
            Phrase(
                Setting("live"), " and ", Setting("no_progress"), " contradict each other; pick one"
            )
        )
    run = RunSettings()
    with _observation_writer(observations, run) as write:
        watch = Watch(write, json, observations, html, run)
        if live and stderr_is_tty():
            from rich.console import Console
            from rich.live import Live

            from podtally.verify.live import LiveTally

            tally = LiveTally(expect_pods=expect_pods, alpha=alpha, expect_split=expect_split)
            watch.sinks.append(tally.add)
            with Live(tally.view(), console=Console(stderr=True), auto_refresh=False) as screen:

                def tick(progress: Progress) -> None:
                    tally.tick(progress)
                    screen.update(tally.view(), refresh=True)

                watch.progress = tick
                watch.say = screen.console.print
                try:
                    yield watch
                finally:
                    flag_name = flag_namer(click.get_current_context().command)
                    screen.update(tally.view(watch.result, flag_name), refresh=True)
            return
        with progress_bar(no_progress) as bar:
            if bar is not None:
                watch.progress = bar.update

                def say(line: str) -> None:
                    bar.clear()
                    err(line)

                watch.say = say
            yield watch


def until_interrupted(call: Callable[[], VerifyResult]) -> VerifyResult:
    """``call()``'s result; after Ctrl-C, the partial result (none at all: Ctrl-C goes on)."""
    from podtally.verify import VerifyInterrupted

    try:
        return call()
    except VerifyInterrupted as exc:
        if exc.result is None:  # interrupted before any request completed: nothing to report
            raise KeyboardInterrupt from None
        return exc.result
