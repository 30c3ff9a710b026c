"""The text report: seed-style counts, a table per dimension, the run's facts, the per-connection
table, notes and the verdict line.

Pure functions from a :class:`VerifyResult` to text; nothing here computes statistics or prints.
Notes and failures that name a setting are worded by ``flag_name(setting)``, which a command line
gives (``--follow``); without it, settings keep the library's names (``follow``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from typing import Literal

from podtally.errors import worded
from podtally.verify.decision import Decision
from podtally.verify.report.figures import band, milliseconds, p_value, percent, status_name
from podtally.verify.result import VerifyResult
from podtally.verify.tally import Dimension
from podtally.verify.verdict import Assessment

CONNECTION_ROWS = 12  # the per-connection table shows this many; the rest are summed up


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Rows under their headers: the first column aligned left, the others right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = []
    for cells in (headers, *rows):
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        lines.append(indent + "  ".join(parts).rstrip())
    return lines


def _connection_table(result: VerifyResult) -> list[str]:
    """Per reused connection (or gRPC channel): where it went, what it carried, which pods."""
    spread = result.connection_spread
    if spread is None or not spread.rows:
        return []
    word = spread.word
    rows = [
        [
            f"#{row.connection}",
            row.peer or "-",
            str(row.requests),
            ", ".join(f"{pod} {n}" for pod, n in row.pods),
        ]
        for row in spread.rows[:CONNECTION_ROWS]
    ]
    lines = [
        f"per {word}: {spread.connections} {word}s, {spread.pinned} pinned to one pod, "
        f"at most {spread.most_pods} {'pod' if spread.most_pods == 1 else 'pods'} on one"
    ]
    lines.extend(table([word, "to", "responses", "pods (responses)"], rows))
    hidden = spread.rows[CONNECTION_ROWS:]
    if hidden:
        pods = {pod for row in hidden for pod, _ in row.pods}
        lines.append(
            f"  ... {len(hidden)} more {word}s, {sum(r.requests for r in hidden)} responses "
            f"from {len(pods)} pods"
        )
    return lines


def _transport(result: VerifyResult) -> str:
    """How the requests travelled, for the report's ``requests`` line."""
    options = result.options
    n = result.connections
    if options.protocol == "grpc":
        if options.new_channel:
            return f"gRPC, a new channel per call ({n} channels)"
        return f"gRPC, one channel per slot, reused ({n} channels)"
    if options.protocol == "http2":
        scheme = "h2 over TLS" if options.target.tls else "h2c"
        return f"HTTP/2 ({scheme}), {options.streams} streams per connection ({n} connections)"
    if options.keep_alive:
        return f"keep-alive ({n} connections)"
    return f"a new connection per request ({n} connections)"


def _decision_text(
    decision: Decision, judged: bool, dimension: Dimension | None, split: bool
) -> list[str]:
    if not decision.groups:
        return []
    headers = [decision.dimension, "count", "share", "expected", "interval", "band", ""]
    rows = [
        [
            g.name,
            str(g.count),
            percent(g.share),
            percent(g.expected),
            band(*g.interval),
            band(*g.band),
            g.state,
        ]
        for g in decision.groups
    ]
    role = decision.verdict if judged else "information, not judged"
    title = f"{decision.dimension} ({decision.unit}): {role}"
    # The chi-square tests the even (pod-weighted) spread: information, and only without a split.
    if dimension is not None and dimension.p_value is not None and not split:
        title += f"; chi-square p = {p_value(dimension.p_value)} (information)"
    return [title, *table(headers, rows), ""]


def seed_lines(result: VerifyResult) -> list[str]:
    """The original check's output: ``curl`` in a loop ``| grep Pod | sort | uniq -c``."""
    rows = sorted(result.dimension("pod").rows, key=lambda r: r.name)
    return [f"{row.count:7d} Pod: {row.name}" for row in rows]


def render_text(result: VerifyResult, flag_name: Callable[[str], str] = str) -> str:
    """The human report: seed-style counts, one table per dimension (counts, shares, intervals
    and tolerance bands), then the facts (mode, unit, method), the verdict."""
    options = result.options
    lines = [*seed_lines(result)]
    if lines:
        lines.append("")
    assessment = result.assessment
    if assessment is not None:
        judged = {d.dimension for d in assessment.judged}
        tallies: dict[str, Dimension] = {d.name: d for d in result.dimensions}
        for decision in assessment.shown:
            lines.extend(
                _decision_text(
                    decision,
                    decision.dimension in judged,
                    tallies.get(decision.dimension),
                    options.expect_split is not None,
                )
            )

    mode = _transport(result)
    rate = f", rate limit {options.rate:g}/s" if options.rate else ""
    facts: list[tuple[str, str]] = [
        (
            "target",
            options.target.url
            + (f" via {', '.join(result.addresses)}" if result.addresses else ""),
        ),
        (
            "requests",
            f"{result.requests} in {result.elapsed:.2f} s ({result.requests_per_second:.0f}/s), "
            f"concurrency {options.concurrency}{rate}, {mode}",
        ),
        (
            "answered",
            f"{result.responses} responses, {result.identified} identified, "
            f"{result.pods_answered} pods"
            + (f" (expected {options.expect_pods})" if options.expect_pods else ""),
        ),
    ]
    if assessment is not None:
        facts.extend(_decision_facts(result, assessment))
    if result.latency is not None:
        lat = result.latency
        facts.append(
            (
                "latency",
                f"p50 {milliseconds(lat.p50)}  p90 {milliseconds(lat.p90)}  "
                f"p99 {milliseconds(lat.p99)}  max {milliseconds(lat.max)}",
            )
        )
    if result.status_codes:
        grpc = options.protocol == "grpc"
        facts.append(
            (
                "gRPC status" if grpc else "status codes",
                "  ".join(f"{status_name(s, grpc)}: {n}" for s, n in result.status_codes),
            )
        )
    failed = [(kind, n) for kind, n in result.errors if n]
    facts.append(
        (
            "errors",
            "none"
            if not failed
            else f"{result.failed} ({result.error_rate:.1%}): "
            + ", ".join(f"{kind} {n}" for kind, n in failed),
        )
    )
    for kind, detail, count in result.error_details:
        facts.append((f"  {kind}", f"{worded(detail, flag_name)} (x{count})"))
    if result.interrupted:
        facts.append(("interrupted", f"{_progress_text(result)}: every figure above is partial"))
    width = max(len(k) for k, _ in facts)
    lines.extend(f"{key.ljust(width)}  {value}" for key, value in facts)
    per_connection = _connection_table(result)
    if per_connection:
        lines.append("")
        lines.extend(per_connection)
    if result.notes:
        lines.append("")
        lines.extend(
            textwrap.fill(
                note,
                width=100,
                initial_indent="note: ",
                subsequent_indent="      ",
                break_on_hyphens=False,
            )
            for note in (worded(note, flag_name) for note in result.notes)
        )
    lines.append("")
    lines.append(f"verdict: {verdict_summary(result, flag_name)}")
    return "\n".join(lines) + "\n"


def verdict_summary(result: VerifyResult, flag_name: Callable[[str], str] = str) -> str:
    """The verdict in one line as every view gives it (this report, the live view, the HTML page):
    its summary worded with ``flag_name``, said to be partial when the run was interrupted."""
    summary = worded(result.verdict.summary, flag_name)
    if result.interrupted:
        return f"INTERRUPTED; on what was collected: {summary}"
    return summary


Tone = Literal["even", "uneven", "inconclusive"]


def verdict_tone(result: VerifyResult) -> Tone:
    """How a view colours the verdict: even when it passed, uneven when it was shown uneven,
    inconclusive otherwise (too few requests, errors, an interruption)."""
    if result.passed:
        return "even"
    return "uneven" if result.verdict.result == "uneven" else "inconclusive"


def _decision_facts(result: VerifyResult, assessment: Assessment) -> list[tuple[str, str]]:
    options = result.options
    first = assessment.judged[0] if assessment.judged else None
    facts: list[tuple[str, str]] = []
    if options.auto:
        run = f"auto: sent until even or uneven, at most {options.max_requests:,} requests"
        if options.max_duration is not None:
            run += f" or {options.max_duration:g} s"
    else:
        run = "fixed: judged once, at the end"
    facts.append(("mode", run))
    if options.auto and first is not None and first.unit == "requests":
        late = result.identified - first.total
        if late > 0:
            facts.append(
                (
                    "stopped",
                    f"decided at {first.total:,} identified responses; {late} more were in "
                    "flight and are counted above, not judged",
                )
            )
    facts.append(("unit", f"{assessment.unit.unit}: {assessment.unit.reason}"))
    if first is not None:
        method = first.method
        facts.append(
            (
                "method",
                f"{method.name} intervals, simultaneous over {method.groups} groups "
                f"({method.correction}), alpha {options.alpha:g}, tolerance "
                f"±{options.tolerance:.0%} of each expected share",
            )
        )
    if options.expect_split is not None:
        facts.append(("expected split", str(options.expect_split)))
    if assessment.verdict == "inconclusive":
        needed = assessment.requests_needed
        facts.append(
            (
                "to decide",
                f"about {needed:,} {assessment.unit.unit} would most likely decide it"
                if needed
                else "no practical number would decide it at these shares",
            )
        )
    if assessment.min_detectable_skew is not None:
        facts.append(
            (
                "detectable",
                f"this run could show a pod ±{assessment.min_detectable_skew:.0%} off its "
                "expected share as uneven",
            )
        )
    return facts


def _progress_text(result: VerifyResult) -> str:
    """How far an interrupted run got: ``after 523 of 1000 requests, 4.2 of 30 s``."""
    options = result.options
    done = f"after {result.requests}"
    if options.request_limit is not None:
        done += f" of {options.request_limit}"
    done += " requests"
    if options.time_limit is not None:
        done += f", {result.elapsed:.1f} of {options.time_limit:g} s"
    return done
