"""Render a :class:`VerifyResult`: the text report, the ``--json`` document, observation lines.

Pure functions from a result to a string; nothing here computes statistics or prints. Notes and
failures that name a setting are worded by ``flag_name(setting)``, which a command line gives
(``--follow``); without it, settings keep the library's names (``follow``).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from podtally.contract import RESULT_SCHEMA_ID
from podtally.errors import worded
from podtally.verify.decision import Decision
from podtally.verify.probe import Observation
from podtally.verify.result import VerifyResult
from podtally.verify.tally import Dimension
from podtally.verify.verdict import Assessment

SCHEMA_ID = RESULT_SCHEMA_ID  # the name callers of this module have used


# --- text ---------------------------------------------------------------------------------------
def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _signed_pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 1000 else f"{ms:.0f} ms"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = []
    for cells in (headers, *rows):
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        lines.append(indent + "  ".join(parts).rstrip())
    return lines


GRPC_CODES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
"""gRPC status codes by number (the observation's ``status`` for a gRPC call)."""

CONNECTION_ROWS = 12  # the per-connection table shows this many; the rest are summed up


def status_name(status: int, grpc: bool) -> str:
    """An HTTP status as its number; a gRPC status as ``14 UNAVAILABLE``."""
    if grpc and 0 <= status < len(GRPC_CODES):
        return f"{status} {GRPC_CODES[status]}"
    return str(status)


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
    lines.extend(_table([word, "to", "responses", "pods (responses)"], rows))
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


def _band(low: float, high: float) -> str:
    return f"{low * 100:.1f}-{min(high, 1.0) * 100:.1f}%"


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
            _pct(g.share),
            _pct(g.expected),
            _band(*g.interval),
            _band(*g.band),
            g.state,
        ]
        for g in decision.groups
    ]
    role = decision.verdict if judged else "information, not judged"
    title = f"{decision.dimension} ({decision.unit}): {role}"
    # The chi-square tests the even (pod-weighted) spread: information, and only without a split.
    if dimension is not None and dimension.p_value is not None and not split:
        title += f"; chi-square p = {_p(dimension.p_value)} (information)"
    return [title, *_table(headers, rows), ""]


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
                f"p50 {_ms(lat.p50)}  p90 {_ms(lat.p90)}  p99 {_ms(lat.p99)}  max {_ms(lat.max)}",
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
        facts.append((f"  {kind}", f"{detail} (x{count})"))
    if result.interrupted:
        facts.append(("interrupted", f"{_progress_text(result)}: every figure above is partial"))
    width = max(len(k) for k, _ in facts)
    lines.extend(f"{key.ljust(width)}  {value}" for key, value in facts)
    table = _connection_table(result)
    if table:
        lines.append("")
        lines.extend(table)
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
    summary = worded(result.verdict.summary, flag_name)
    if result.interrupted:
        lines.append(f"verdict: INTERRUPTED; on what was collected: {summary}")
    else:
        lines.append(f"verdict: {summary}")
    return "\n".join(lines) + "\n"


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


# --- json ---------------------------------------------------------------------------------------
def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _decision_doc(decision: Decision, judged: bool) -> dict[str, Any]:
    return {
        "judged": judged,
        "verdict": decision.verdict,
        "reason": decision.reason,
        "total": decision.total,
        "groups": [
            {
                "name": g.name,
                "count": g.count,
                "share": _round(g.share),
                "expected_share": _round(g.expected),
                "interval": [_round(g.interval[0]), _round(g.interval[1])],
                "band": [_round(g.band[0]), _round(g.band[1])],
                "state": g.state,
                "missing": g.missing,
            }
            for g in decision.groups
        ],
        "requests_needed": decision.requests_needed,
        "min_detectable_skew": _round(decision.min_detectable_skew),
        "method": {
            "name": decision.method.name,
            "mode": decision.method.mode,
            "alpha": decision.method.alpha,
            "alpha_per_group": decision.method.alpha_per_group,
            "correction": decision.method.correction,
            "groups": decision.method.groups,
        },
    }


def _assessment_doc(result: VerifyResult) -> dict[str, Any] | None:
    assessment = result.assessment
    if assessment is None:
        return None
    options = result.options
    judged = {d.dimension for d in assessment.judged}
    first = assessment.judged[0] if assessment.judged else None
    return {
        "verdict": assessment.verdict,
        "reason": assessment.reason,
        "mode": assessment.mode,
        "method": first.method.name if first is not None else None,
        "alpha": options.alpha,
        "tolerance": options.tolerance,
        "expect_split": None
        if options.expect_split is None
        else {
            "field": options.expect_split.field,
            "weights": dict(options.expect_split.weights),
        },
        "unit": assessment.unit.unit,
        "unit_reason": assessment.unit.reason,
        "requests_needed": assessment.requests_needed,
        "min_detectable_skew": _round(assessment.min_detectable_skew),
        "missing": list(assessment.missing),
        "dimensions": {
            d.dimension: _decision_doc(d, d.dimension in judged) for d in assessment.shown
        },
    }


def _dimension_doc(dimension: Dimension) -> dict[str, Any]:
    return {
        "groups": [
            {
                "name": row.name,
                "count": row.count,
                "share": _round(row.share),
                "expected_share": _round(row.expected_share),
                "deviation": _round(row.deviation),
                "pods": row.pods,
            }
            for row in dimension.rows
        ],
        "total": dimension.total,
        "chi2": _round(dimension.chi2),
        "p_value": dimension.p_value,
        "dof": dimension.dof,
        "max_min_ratio": _round(dimension.max_min_ratio),
        "min_expected": _round(dimension.min_expected),
        "judged": dimension.judged,
    }


def to_document(result: VerifyResult, flag_name: Callable[[str], str] = str) -> dict[str, Any]:
    """The ``--json`` document (schema: :data:`podtally.verify.schema.RESULT_SCHEMA`)."""
    options = result.options
    latency = result.latency
    spread = result.connection_spread
    return {
        "schema": SCHEMA_ID,
        "url": options.target.url,
        "started_at": datetime.fromtimestamp(result.started_at, UTC).isoformat(
            timespec="milliseconds"
        ),
        "elapsed_seconds": _round(result.elapsed),
        "interrupted": result.interrupted,
        "options": {
            "requests": options.requests,
            "duration_seconds": options.duration,
            "concurrency": options.concurrency,
            "rate": options.rate,
            "timeout_seconds": options.timeout,
            "keep_alive": options.keep_alive,
            "protocol": options.protocol,
            "http2": options.http2,
            "streams": options.streams,
            "new_channel": options.new_channel,
            "follow": options.follow,
            "insecure": options.insecure,
            "cacert": str(options.cacert) if options.cacert else None,
            "resolve": [str(r) for r in options.resolve],
            "alpha": options.alpha,
            "tolerance": options.tolerance,
            "expect_pods": options.expect_pods,
            "expect_split": None if options.expect_split is None else str(options.expect_split),
            "max_requests": options.max_requests,
            "max_duration_seconds": options.max_duration,
            "auto": options.auto,
            "max_error_rate": options.max_error_rate,
        },
        "summary": {
            "requests": result.requests,
            "responses": result.responses,
            "identified": result.identified,
            "failed": result.failed,
            "error_rate": _round(result.error_rate),
            "connections": result.connections,
            "requests_per_second": _round(result.requests_per_second, 1),
            "pods": result.pods_answered,
            "addresses": list(result.addresses),
        },
        "pods": [
            {
                "pod": key.pod,
                "node": key.node,
                "namespace": key.namespace,
                "ip": key.ip,
                "zone": key.zone,
                "version": key.version,
                "count": count,
            }
            for key, count in result.identities
        ],
        "dimensions": {d.name: _dimension_doc(d) for d in result.dimensions},
        "decision": _assessment_doc(result),
        "latency_ms": None
        if latency is None
        else {
            "p50": _round(latency.p50 * 1000, 3),
            "p90": _round(latency.p90 * 1000, 3),
            "p99": _round(latency.p99 * 1000, 3),
            "max": _round(latency.max * 1000, 3),
            "mean": _round(latency.mean * 1000, 3),
        },
        "status_codes": {str(status): n for status, n in result.status_codes},
        "errors": dict(result.errors),
        "error_examples": {kind: detail for kind, detail, _ in result.error_details},
        "redirects": [{"location": loc, "count": n} for loc, n in result.redirects],
        "identity_sources": dict(result.sources),
        "connection_spread": None
        if spread is None
        else {
            "connections": spread.connections,
            "pinned": spread.pinned,
            "most_pods": spread.most_pods,
            "unit": spread.word,
            "per_connection": [
                {
                    "connection": row.connection,
                    "peer": row.peer,
                    "responses": row.requests,
                    "pods": dict(row.pods),
                }
                for row in spread.rows
            ],
        },
        "notes": [worded(note, flag_name) for note in result.notes],
        "verdict": {
            "result": result.verdict.result,
            "passed": result.verdict.passed,
            "exit_code": result.verdict.exit_code,
            "summary": worded(result.verdict.summary, flag_name),
            "failures": [worded(failure, flag_name) for failure in result.verdict.failures],
        },
    }


def render_json(result: VerifyResult, flag_name: Callable[[str], str] = str) -> str:
    return json.dumps(to_document(result, flag_name), indent=2, allow_nan=False) + "\n"


def observation_line(observation: Observation) -> str:
    """One ``--observations`` line (JSON Lines): everything known about one request."""
    return (
        json.dumps(
            {
                "index": observation.index,
                "start": round(observation.start, 6),
                "latency_ms": round(observation.latency * 1000, 3),
                "status": observation.status,
                "pod": observation.pod,
                "node": observation.node,
                "namespace": observation.namespace,
                "ip": observation.ip,
                "zone": observation.zone,
                "version": observation.version,
                "source": observation.source,
                "error": observation.error,
                "detail": observation.detail,
                "connection": observation.connection,
                "peer": observation.peer,
                "location": observation.location,
                "redirects": observation.redirects,
            },
            allow_nan=False,
        )
        + "\n"
    )
