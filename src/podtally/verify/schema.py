"""The JSON Schemas (draft 2020-12) of the ``podtally verify --json`` document and of the first
and last lines of an ``--observations`` file (the run's settings, how the run ended).

Kept next to the renderer (:func:`podtally.verify.report.document.to_document`) and checked
against real runs in the tests, so the documented shape and the printed shape cannot drift apart.
"""

from __future__ import annotations

from typing import Any, get_args

from podtally.contract import OBSERVATIONS_SCHEMA_ID, RESULT_SCHEMA_ID
from podtally.verify.probe import ERROR_KINDS, IdentitySource
from podtally.verify.tally import DIMENSIONS, VerdictResult

_NUM = {"type": "number"}
_INT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}
_OPT_STR = {"type": ["string", "null"]}
_OPT_NUM = {"type": ["number", "null"]}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


_GROUP = _object(
    {
        "name": _STR,
        "count": _INT,
        "share": _NUM,
        "expected_share": _NUM,
        "deviation": _NUM,
        "pods": _INT,
    }
)

_DIMENSION = _object(
    {
        "groups": {"type": "array", "items": _GROUP},
        "total": _INT,
        "chi2": _OPT_NUM,
        "p_value": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "dof": _INT,
        "max_min_ratio": _OPT_NUM,
        "min_expected": _NUM,
        "judged": {"type": "boolean"},
    }
)

_PAIR = {"type": "array", "items": _NUM, "minItems": 2, "maxItems": 2}
_VERDICT = {"enum": ["even", "uneven", "inconclusive"]}
_OPT_COUNT = {"type": ["integer", "null"], "minimum": 0}

_DECISION = _object(
    {
        "judged": {"type": "boolean"},
        "verdict": _VERDICT,
        "reason": _STR,
        "total": _INT,
        "groups": {
            "type": "array",
            "items": _object(
                {
                    "name": _STR,
                    "count": _INT,
                    "share": _NUM,
                    "expected_share": _NUM,
                    "interval": _PAIR,
                    "band": _PAIR,
                    "state": {"enum": ["inside", "outside", "undecided"]},
                    "missing": {"type": "boolean"},
                }
            ),
        },
        "requests_needed": _OPT_COUNT,
        "min_detectable_skew": _OPT_NUM,
        "method": _object(
            {
                "name": _STR,
                "mode": {"enum": ["fixed", "sequential"]},
                "alpha": _NUM,
                "alpha_per_group": _NUM,
                "correction": _STR,
                "groups": _INT,
            }
        ),
    }
)

_ASSESSMENT = _object(
    {
        "verdict": _VERDICT,
        "reason": _STR,
        "mode": {"enum": ["fixed", "sequential"]},
        "method": _OPT_STR,
        "alpha": _NUM,
        "tolerance": _NUM,
        "expect_split": {
            "oneOf": [
                {"type": "null"},
                _object(
                    {
                        "field": {"enum": ["pod", "node", "zone", "version"]},
                        "weights": {"type": "object", "additionalProperties": _NUM},
                    }
                ),
            ]
        },
        "unit": {"enum": ["requests", "connections"]},
        "unit_reason": _STR,
        "requests_needed": _OPT_COUNT,
        "min_detectable_skew": _OPT_NUM,
        "missing": {"type": "array", "items": _STR},
        "dimensions": {
            "type": "object",
            "propertyNames": {"enum": list(DIMENSIONS)},
            "additionalProperties": _DECISION,
        },
    }
)

_OPTIONS = _object(
    {
        "requests": {"type": ["integer", "null"], "minimum": 1},
        "duration_seconds": _OPT_NUM,
        "concurrency": {"type": "integer", "minimum": 1},
        "rate": _OPT_NUM,
        "timeout_seconds": _NUM,
        "keep_alive": {"type": "boolean"},
        "protocol": {"enum": ["http1", "http2", "grpc"]},
        "http2": {"type": "boolean"},
        "streams": {"type": "integer", "minimum": 1},
        "new_channel": {"type": "boolean"},
        "follow": {"type": "boolean"},
        "insecure": {"type": "boolean"},
        "cacert": _OPT_STR,
        "resolve": {"type": "array", "items": _STR},
        "alpha": _NUM,
        "tolerance": _NUM,
        "expect_pods": {"type": ["integer", "null"], "minimum": 1},
        "expect_split": _OPT_STR,
        "max_requests": {"type": "integer", "minimum": 1},
        "max_duration_seconds": _OPT_NUM,
        "auto": {"type": "boolean"},
        "max_error_rate": _NUM,
    }
)
"""What was asked: the result's ``options``, and those of an observations file's header."""

RESULT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": RESULT_SCHEMA_ID,
    "title": "podtally verify result",
    **_object(
        {
            "schema": {"const": RESULT_SCHEMA_ID},
            "url": _STR,
            "started_at": {"type": "string", "format": "date-time"},
            "elapsed_seconds": _NUM,
            "interrupted": {"type": "boolean"},
            "options": _OPTIONS,
            "summary": _object(
                {
                    "requests": _INT,
                    "responses": _INT,
                    "identified": _INT,
                    "failed": _INT,
                    "error_rate": _NUM,
                    "connections": _INT,
                    "requests_per_second": _NUM,
                    "pods": _INT,
                    "addresses": {"type": "array", "items": _STR},
                }
            ),
            "pods": {
                "type": "array",
                "items": _object(
                    {
                        "pod": _STR,
                        "node": _OPT_STR,
                        "namespace": _OPT_STR,
                        "ip": _OPT_STR,
                        "zone": _OPT_STR,
                        "version": _OPT_STR,
                        "count": _INT,
                    }
                ),
            },
            "dimensions": _object(dict.fromkeys(DIMENSIONS, _DIMENSION)),
            "decision": {"oneOf": [{"type": "null"}, _ASSESSMENT]},
            "latency_ms": {
                "oneOf": [
                    {"type": "null"},
                    _object({k: _NUM for k in ("p50", "p90", "p99", "max", "mean")}),
                ]
            },
            "status_codes": {
                "type": "object",
                "propertyNames": {"pattern": "^[1-5][0-9][0-9]$"},
                "additionalProperties": _INT,
            },
            "errors": _object({kind: _INT for kind in ERROR_KINDS}),
            "error_examples": {
                "type": "object",
                "propertyNames": {"enum": list(ERROR_KINDS)},
                "additionalProperties": _STR,
            },
            "redirects": {
                "type": "array",
                "items": _object({"location": _STR, "count": _INT}),
            },
            "identity_sources": {
                "type": "object",
                "propertyNames": {"enum": list(get_args(IdentitySource))},
                "additionalProperties": _INT,
            },
            "connection_spread": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "connections": _INT,
                            "pinned": _INT,
                            "most_pods": _INT,
                            "unit": {"enum": ["connection", "channel"]},
                            "per_connection": {
                                "type": "array",
                                "items": _object(
                                    {
                                        "connection": _INT,
                                        "peer": _OPT_STR,
                                        "responses": _INT,
                                        "pods": {"type": "object", "additionalProperties": _INT},
                                    }
                                ),
                            },
                        }
                    ),
                ]
            },
            "notes": {"type": "array", "items": _STR},
            "verdict": _object(
                {
                    "result": {"enum": list(get_args(VerdictResult))},
                    "passed": {"type": "boolean"},
                    "exit_code": {"enum": [0, 1, 3]},
                    "summary": _STR,
                    "failures": {"type": "array", "items": _STR},
                }
            ),
        }
    ),
}

OBSERVATIONS_HEADER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": OBSERVATIONS_SCHEMA_ID,
    "title": "podtally verify --observations: the first line, the run's settings",
    **_object(
        {
            "schema": {"const": OBSERVATIONS_SCHEMA_ID},
            "url": _STR,
            "options": _OPTIONS,
        }
    ),
}

OBSERVATIONS_END_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": OBSERVATIONS_SCHEMA_ID + "/end",
    "title": "podtally verify --observations: the last line, how the run ended",
    **_object(
        {
            "end": {"enum": ["complete", "interrupted"]},
            "requests": _INT,
        }
    ),
}
