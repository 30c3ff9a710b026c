"""`podtally report OBSERVATIONS.jsonl`: judge a saved ``--observations`` file again.

The text report (or ``--json``) goes to stdout as `verify` prints it, ``--html FILE`` writes the
HTML report; the exit code is the verdict's, as `verify`'s. The file's first line holds the run's
settings (its mode, alpha, tolerance, expectation, ...), so with no option the observations are
judged as the run judged them; an option given here is honoured, and stderr says in one line
which of the run's settings it replaced. Another line on stderr names the run's settings taken
from the file that are not `verify`'s defaults. A file an older podtally wrote has no settings
line: it is judged with the options given here, as before (``--auto`` unless ``--fixed``).

The file's last line says how the run ended. A run that was interrupted, or whose file has no
end line (cut short: killed, a full disk), is reported as partial, as `verify` reported its
interrupted run, with one ``note:`` line on stderr; it never passes (exit 1 at best, not 130:
`report` itself was not interrupted).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from podtally.cli.common import err, require_extra
from podtally.cli.params import Command, flag_namer, option, path_option
from podtally.errors import UsageError
from podtally.verify.options import (
    DEFAULT_ALPHA,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_TOLERANCE,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from podtally.verify import Observation, VerifyOptions, VerifyResult
    from podtally.verify.replay import Judging
    from podtally.verify.saved_run import SavedRun

# The report's forms, as `verify`, `demo` and `report` take them.
JSON_OPTION = option("--json", is_flag=True, help="print one JSON document instead")
HTML_OPTION = path_option(
    "--html",
    dir_okay=False,
    metavar="FILE",
    help="also write the report as one self-contained HTML page",
)


def check_html(path: Path | None) -> None:
    """A ``--html`` path that cannot be written is bad input, said before anything runs."""
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path()
    if path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError("cannot write a file there", setting="html", value=path)


def write_html(
    path: Path | None, result: VerifyResult, observations: list[Observation], title: str
) -> None:
    """Write the HTML report of ``result`` to ``path`` (nothing when ``path`` is None)."""
    if path is None:
        return
    from podtally.verify.html import result_html

    page = result_html(result, observations, flag_namer(click.get_current_context().command), title)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write it: {exc.strerror}", setting="html", value=path) from None


def _worded(options: VerifyOptions, name: str, bounds: bool = True) -> str:
    """One judging setting's value as a user writes it (the mode as ``--fixed (-n 900)``, or
    without ``bounds`` as ``--fixed``)."""
    from podtally.verify.replay import setting

    if name == "auto":
        if options.auto or not bounds:
            return "--auto" if options.auto else "--fixed"
        limits = []
        if options.requests is not None:
            limits.append(f"-n {options.requests}")
        if options.duration is not None:
            limits.append(f"--duration {options.duration:g}s")
        return "--fixed" + (f" ({' or '.join(limits)})" if limits else "")
    value = setting(options, name)
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _flagged(
    options: VerifyOptions, name: str, flag_name: Callable[[str], str], bounds: bool = True
) -> str:
    """``--alpha 0.01``, ``--fixed (-n 900)``."""
    value = _worded(options, name, bounds)
    return value if name == "auto" else f"{flag_name(name)} {value}"


def provenance(how: Judging, file: str, flag_name: Callable[[str], str]) -> list[str]:
    """What stderr says about the settings: where they came from, when it matters."""
    run = how.run
    if run is None:
        return [
            f"note: {file} does not record its run's settings (an older podtally wrote it): "
            "judged with the options given here, in auto mode unless --fixed"
        ]
    lines = []
    if how.from_run:
        taken = ", ".join(_flagged(run, name, flag_name) for name in how.from_run)
        lines.append(f"from {file}, as the run had them: {taken}")
    if how.overridden:
        given = ", ".join(
            f"{_flagged(how.options, name, flag_name, bounds=False)} "
            f"(the run's: {_worded(run, name)})"
            for name in how.overridden
        )
        lines.append(f"note: judged with {given}, as given here: not the judgement the run made")
    if run.auto and not how.options.auto:
        lines.append(
            "note: auto mode chose this run's size by looking at these counts; the error rate "
            "a fixed judgement states holds for a size fixed in advance, not for this one"
        )
    return lines


def ending(saved: SavedRun, file: str) -> list[str]:
    """What stderr says about how the run ended, unless the file says it completed."""
    if saved.options is None:  # an older podtally's file: provenance() says so
        return []
    if saved.ended == "interrupted":
        return [
            f"note: {file} records that its run was interrupted: every figure is partial, as "
            "in the report verify printed then, and it cannot pass"
        ]
    if saved.ended == "cut short":
        torn = " (its last line, cut off mid-way, is left out)" if saved.torn else ""
        return [
            f"note: {file} has no end line{torn}: its run was cut short (killed, or its disk "
            "filled) or the file was truncated; every figure is partial, and it cannot pass"
        ]
    if saved.ended is None:
        return [
            f"note: {file} does not record how its run ended (an older podtally wrote it): "
            "judged as a run that completed"
        ]
    return []


@click.command(
    "report",
    cls=Command,
    short_help="judge a saved --observations file again: text, --json or --html",
    help="Read the JSON lines a `podtally verify --observations FILE` run wrote and judge them "
    "again: the same counts, the same verdict, printed as `verify` prints it (or --json), and "
    "--html FILE for the page with bars, intervals and the timeline. The file's first line "
    "records the run's settings, so with no option the observations are judged as the run "
    "judged them.",
    epilog="An option given here replaces the run's setting and is honoured: one 'note:' line "
    "on stderr says which, and what the run had (--auto on a run made with -n judges it at auto "
    "mode's looks; --expect-pods or --expect-split replaces the run's expectation). Another "
    "line names the run's settings taken from the file that are not verify's defaults. A file "
    "written by an older podtally records no settings: give the run's options, --fixed for a "
    "run with -n or --duration (the default there is --auto, as before).\n\n"
    "A run that was interrupted, or whose file has no end line (cut short: killed, a full "
    "disk), is reported as partial, as verify reported its interrupted run, with a 'note:' "
    "line on stderr.\n\n"
    "exit codes: as `podtally verify`, except that a partial run never passes (1 where its "
    "verdict would give 0; never 130); 2 for a file that is not an observations file (or a "
    "settings or end line that is corrupt or from a newer podtally).",
)
@click.argument("observations", type=click.Path(dir_okay=False, path_type=Path))
@option(
    "--url", default=None, show_default="the run's; none for an older file", help="target shown"
)
@option(
    "--auto/--fixed",
    default=None,
    show_default="the run's",
    help="the mode to judge in: auto (verify without -n or --duration; the verdict of the look "
    "that stopped it) or fixed (judged once, on everything)",
)
@option(
    "-c",
    "--concurrency",
    type=int,
    default=None,
    show_default=f"the run's; {DEFAULT_CONCURRENCY} for an older file",
    help="auto mode looks after every batch of this many",
)
@option(
    "--max-requests",
    type=int,
    default=None,
    show_default=f"the run's; {DEFAULT_MAX_REQUESTS} for an older file",
    help="auto mode: its error budget is --max-error-rate of this many",
)
@option(
    "--alpha",
    type=float,
    default=None,
    show_default=f"the run's; {DEFAULT_ALPHA:g} for an older file",
    help="error rate of each verdict, as verify's",
)
@option(
    "--tolerance",
    type=float,
    default=None,
    show_default=f"the run's; {DEFAULT_TOLERANCE:g} for an older file",
    help="as verify's",
)
@option(
    "--expect-pods",
    type=int,
    default=None,
    metavar="K",
    show_default="the run's",
    help="fail unless K pods answered (replaces the run's expectation)",
)
@option(
    "--expect-split",
    default=None,
    metavar="FIELD=VALUE:WEIGHT,...",
    show_default="the run's",
    help="the split expected, as verify's (replaces the run's expectation)",
)
@option(
    "--max-error-rate",
    default=None,
    metavar="RATE",
    show_default="the run's; 0 for an older file",
    help="fail when more requests than this failed (0.01 or 1%)",
)
@JSON_OPTION
@HTML_OPTION
def report_command(
    observations: Path,
    url: str | None,
    auto: bool | None,
    concurrency: int | None,
    max_requests: int | None,
    alpha: float | None,
    tolerance: float | None,
    expect_pods: int | None,
    expect_split: str | None,
    max_error_rate: str | None,
    json: bool,
    html: Path | None,
) -> int:
    require_extra("verify", "scipy")
    from podtally.verify import parse_expect_split, parse_rate_fraction
    from podtally.verify.replay import exit_code, judge_again, judging
    from podtally.verify.report import render_json, render_text
    from podtally.verify.saved_run import load_run

    check_html(html)
    given: dict[str, Any] = {
        "auto": auto,
        "concurrency": concurrency,
        "max_requests": max_requests,
        "alpha": alpha,
        "tolerance": tolerance,
        "expect_pods": expect_pods,
        "expect_split": None if expect_split is None else parse_expect_split(expect_split),
        "max_error_rate": None
        if max_error_rate is None
        else parse_rate_fraction(max_error_rate, "max_error_rate"),
    }
    saved = load_run(observations)
    how = judging(saved, {k: v for k, v in given.items() if v is not None}, url)
    flag_name = flag_namer(click.get_current_context().command)
    for line in [*provenance(how, observations.name, flag_name), *ending(saved, observations.name)]:
        err(line)
    result = judge_again(
        saved.observations,
        how.options,
        started_at=observations.stat().st_mtime,
        interrupted=saved.partial,
    )
    click.echo(render_json(result, flag_name) if json else render_text(result, flag_name), nl=False)
    write_html(html, result, list(saved.observations), f"podtally report {observations.name}")
    return exit_code(result)


COMMANDS: dict[str, click.Command] = {"report": report_command}
