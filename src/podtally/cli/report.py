"""`podtally report OBSERVATIONS.jsonl`: judge a saved ``--observations`` file again.

The text report (or ``--json``) goes to stdout as `verify` prints it, ``--html FILE`` writes the
HTML report; the exit code is the verdict's, as `verify`'s. The file does not say which mode the
run was in: ``--auto`` (verify's default, judged again at the same looks) or ``--fixed`` (a run
with -n or --duration, judged once).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from podtally.cli.common import require_extra
from podtally.cli.params import Command, flag_namer, option, path_option
from podtally.errors import UsageError
from podtally.verify.options import (
    DEFAULT_ALPHA,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_TOLERANCE,
)

if TYPE_CHECKING:
    from podtally.verify import Observation, VerifyResult

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


@click.command(
    "report",
    cls=Command,
    short_help="judge a saved --observations file again: text, --json or --html",
    help="Read the JSON lines a `podtally verify --observations FILE` run wrote and judge them "
    "again: the same counts, the same verdict, printed as `verify` prints it (or --json), and "
    "--html FILE for the page with bars, intervals and the timeline.",
    epilog="Give the judging options the run had: the file records requests, not options. "
    "A run with -n or --duration is judged again with --fixed.\n\n"
    "exit codes: as `podtally verify`; 2 for a file that is not an observations file.",
)
@click.argument("observations", type=click.Path(dir_okay=False, path_type=Path))
@option("--url", default=None, show_default="none: the file does not say", help="target shown")
@option(
    "--auto/--fixed",
    default=True,
    help="the run's mode: auto (verify without -n or --duration; the verdict of the look that "
    "stopped it) or fixed (judged once, on everything)",
)
@option(
    "-c",
    "--concurrency",
    type=int,
    default=DEFAULT_CONCURRENCY,
    help="the run's concurrency (auto mode looks after every batch of this many)",
)
@option(
    "--max-requests",
    type=int,
    default=DEFAULT_MAX_REQUESTS,
    help="the run's --max-requests (auto mode: its error budget)",
)
@option("--alpha", type=float, default=DEFAULT_ALPHA, help="significance level, as verify's")
@option("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="as verify's")
@option("--expect-pods", type=int, default=None, metavar="K", help="fail unless K pods answered")
@option(
    "--max-error-rate",
    default="0",
    metavar="RATE",
    help="fail when more requests than this failed (0.01 or 1%)",
)
@JSON_OPTION
@HTML_OPTION
def report_command(
    observations: Path,
    url: str | None,
    auto: bool,
    concurrency: int,
    max_requests: int,
    alpha: float,
    tolerance: float,
    expect_pods: int | None,
    max_error_rate: str,
    json: bool,
    html: Path | None,
) -> int:
    require_extra("verify", "scipy")
    from podtally.verify import parse_rate_fraction
    from podtally.verify.replay import load_observations, replay
    from podtally.verify.report import render_json, render_text

    check_html(html)
    seen = load_observations(observations)
    judging: dict[str, Any] = {
        "auto": auto,
        "concurrency": concurrency,
        "max_requests": max_requests,
        "alpha": alpha,
        "tolerance": tolerance,
        "expect_pods": expect_pods,
        "max_error_rate": parse_rate_fraction(max_error_rate, "max_error_rate"),
    }
    if url is not None:
        judging["url"] = url
    result = replay(seen, started_at=observations.stat().st_mtime, **judging)
    flag_name = flag_namer(click.get_current_context().command)
    click.echo(render_json(result, flag_name) if json else render_text(result, flag_name), nl=False)
    write_html(html, result, seen, f"podtally report {observations.name}")
    return result.exit_code


COMMANDS: dict[str, click.Command] = {"report": report_command}
