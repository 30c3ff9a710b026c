"""Observations files written by hand for the replay tests: a fixed run's settings line
(``-n 900 -c 3 --expect-pods 3``) and round-robin observations over three pods."""

from __future__ import annotations

from podtally.contract import OBSERVATIONS_SCHEMA_ID

PODS = ["pod-a", "pod-b", "pod-c"]


def observation(index: int, pod: str | None = None) -> dict[str, object]:
    """Observation ``index``: answered by ``pod`` (round robin over PODS if None) in 1 ms."""
    return {
        "index": index,
        "start": index / 1000,
        "latency_ms": 1.0,
        "status": 200,
        "pod": PODS[index % 3] if pod is None else pod,
        "source": "headers",
        "error": None,
        "connection": index + 1,
    }


def options(**changes: object) -> dict[str, object]:
    """A settings line's ``options`` (a fixed run: -n 900 -c 3 --expect-pods 3), changed."""
    fixed: dict[str, object] = {
        "requests": 900,
        "duration_seconds": None,
        "concurrency": 3,
        "rate": None,
        "timeout_seconds": 5.0,
        "keep_alive": False,
        "protocol": "http1",
        "http2": False,
        "streams": 10,
        "new_channel": False,
        "follow": False,
        "insecure": False,
        "cacert": None,
        "resolve": [],
        "alpha": 0.001,
        "tolerance": 0.2,
        "expect_pods": 3,
        "expect_split": None,
        "max_requests": 20000,
        "max_duration_seconds": None,
        "auto": False,
        "max_error_rate": 0.0,
    }
    return fixed | changes


def header(**changes: object) -> dict[str, object]:
    """The settings line (schema, url, options), with ``changes`` to its keys."""
    line = {"schema": OBSERVATIONS_SCHEMA_ID, "url": "http://lb.test/", "options": options()}
    return line | changes
