"""The JSON outputs: the ``--json`` document of a :class:`VerifyResult` (schema:
:data:`podtally.verify.schema.RESULT_SCHEMA`) and the ``--observations`` lines: the run's
settings, one JSON object a request, and how the run ended (read back by
:mod:`podtally.verify.saved_run`).

Pure functions to plain data and strings; notes and failures that name a setting are worded by
``flag_name(setting)``, as in the text report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from podtally.contract import FIELDS, OBSERVATIONS_SCHEMA_ID, RESULT_SCHEMA_ID
from podtally.errors import worded
from podtally.verify.decision import Decision
from podtally.verify.options import VerifyOptions
from podtally.verify.probe import Observation
from podtally.verify.result import VerifyResult
from podtally.verify.tally import Dimension


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


def options_document(options: VerifyOptions) -> dict[str, Any]:
    """What was asked, as plain data: the ``options`` of the ``--json`` document, and of the
    first line of an ``--observations`` file (:func:`observations_header`)."""
    return {
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
    }


def to_document(result: VerifyResult, flag_name: Callable[[str], str] = str) -> dict[str, Any]:
    """The ``--json`` document (schema: :data:`podtally.verify.schema.RESULT_SCHEMA`)."""
    options = result.options
    latency = result.latency
    spread = result.connection_spread
    return {
        "schema": RESULT_SCHEMA_ID,
        "url": options.target.url,
        "started_at": datetime.fromtimestamp(result.started_at, UTC).isoformat(
            timespec="milliseconds"
        ),
        "elapsed_seconds": _round(result.elapsed),
        "interrupted": result.interrupted,
        "options": options_document(options),
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
            {**{name: getattr(key, name) for name in FIELDS}, "count": count}
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
        "error_examples": {
            kind: worded(detail, flag_name) for kind, detail, _ in result.error_details
        },
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


def observation_line(observation: Observation, flag_name: Callable[[str], str] = str) -> str:
    """One ``--observations`` line (JSON Lines): everything known about one request.

    A detail that names a setting is written worded by ``flag_name``, as the report words it:
    the file holds plain text (a :class:`~podtally.errors.Phrase` does not survive JSON), which
    a replay (``podtally report``) shows as the run that wrote it said it."""
    return (
        json.dumps(
            {
                "index": observation.index,
                "start": round(observation.start, 6),
                "latency_ms": round(observation.latency * 1000, 3),
                "status": observation.status,
                **{name: getattr(observation, name) for name in FIELDS},
                "source": observation.source,
                "error": observation.error,
                "detail": None
                if observation.detail is None
                else worded(observation.detail, flag_name),
                "connection": observation.connection,
                "peer": observation.peer,
                "location": observation.location,
                "redirects": observation.redirects,
            },
            allow_nan=False,
        )
        + "\n"
    )


def observations_header(options: VerifyOptions) -> str:
    """The first line of an ``--observations`` file: the run's settings, once (schema
    :data:`~podtally.contract.OBSERVATIONS_SCHEMA_ID`), so that a replay judges the
    observations as the run did. Its ``options`` are the ``--json`` document's."""
    return (
        json.dumps(
            {
                "schema": OBSERVATIONS_SCHEMA_ID,
                "url": options.target.url,
                "options": options_document(options),
            },
            allow_nan=False,
        )
        + "\n"
    )


def observations_end(result: VerifyResult) -> str:
    """The last line of an ``--observations`` file, written when the run is over: how it ended
    (``complete``, or ``interrupted`` by Ctrl-C: its figures are partial) and how many
    observations it wrote. A file of this format without it was cut short (killed, disk full)."""
    return (
        json.dumps(
            {
                "end": "interrupted" if result.interrupted else "complete",
                "requests": result.requests,
            }
        )
        + "\n"
    )
