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
from podtally.verify.probe import Observation
from podtally.verify.result import VerifyResult
from podtally.verify.tally import Dimension

SCHEMA_ID = RESULT_SCHEMA_ID  # the name callers of this module have used

_TITLES = {
    "pod": "pod",
    "node": "node (expected: weighted by its pods)",
    "zone": "zone (expected: weighted by its pods)",
    "ip": "ip (expected: weighted by its pods)",
}


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


def _dimension_text(dimension: Dimension) -> list[str]:
    if not dimension.rows:
        return []
    weighted = dimension.name != "pod"
    headers = [
        dimension.name,
        *(["pods"] if weighted else []),
        "count",
        "share",
        "expected",
        "deviation",
    ]
    rows = [
        [
            row.name,
            *([str(row.pods)] if weighted else []),
            str(row.count),
            _pct(row.share),
            _pct(row.expected_share),
            _signed_pct(row.deviation),
        ]
        for row in dimension.rows
    ]
    if dimension.judged:
        test = (
            f"chi-square {dimension.chi2:.2f}, {dimension.dof} dof, "
            f"p = {_p(dimension.p_value)}, max/min {dimension.max_min_ratio:.2f}"
        )
    elif dimension.groups < 2:
        test = "one group: nothing to compare"
    else:
        test = (
            f"not tested: {dimension.min_expected:.1f} expected in the smallest group, "
            "need at least 5"
        )
    return [f"{_TITLES[dimension.name]}: {test}", *_table(headers, rows), ""]


def seed_lines(result: VerifyResult) -> list[str]:
    """The original check's output: ``curl`` in a loop ``| grep Pod | sort | uniq -c``."""
    rows = sorted(result.dimension("pod").rows, key=lambda r: r.name)
    return [f"{row.count:7d} Pod: {row.name}" for row in rows]


def render_text(result: VerifyResult, flag_name: Callable[[str], str] = str) -> str:
    """The human report: seed-style counts, one table per dimension, then the facts, verdict."""
    options = result.options
    lines = [*seed_lines(result)]
    if lines:
        lines.append("")
    for dimension in result.dimensions:
        lines.extend(_dimension_text(dimension))

    mode = (
        f"keep-alive ({result.connections} connections)"
        if options.keep_alive
        else f"a new connection per request ({result.connections} connections)"
    )
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
    if result.latency is not None:
        lat = result.latency
        facts.append(
            (
                "latency",
                f"p50 {_ms(lat.p50)}  p90 {_ms(lat.p90)}  p99 {_ms(lat.p99)}  max {_ms(lat.max)}",
            )
        )
    if result.status_codes:
        facts.append(("status codes", "  ".join(f"{s}: {n}" for s, n in result.status_codes)))
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


def _progress_text(result: VerifyResult) -> str:
    """How far an interrupted run got: ``after 523 of 1000 requests, 4.2 of 30 s``."""
    options = result.options
    done = f"after {result.requests}"
    if options.requests is not None:
        done += f" of {options.requests}"
    done += " requests"
    if options.duration is not None:
        done += f", {result.elapsed:.1f} of {options.duration:g} s"
    return done


# --- json ---------------------------------------------------------------------------------------
def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


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
            "follow": options.follow,
            "insecure": options.insecure,
            "cacert": str(options.cacert) if options.cacert else None,
            "resolve": [str(r) for r in options.resolve],
            "alpha": options.alpha,
            "expect_pods": options.expect_pods,
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
                "count": count,
            }
            for key, count in result.identities
        ],
        "dimensions": {d.name: _dimension_doc(d) for d in result.dimensions},
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
