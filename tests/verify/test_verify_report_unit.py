"""The report's and the probe's pure helpers in-process: observation lines, body parsing, format."""

from __future__ import annotations

import json

import pytest

from podtally.verify.probe import Observation, parse_identity_text
from podtally.verify.report import observation_line
from podtally.verify.report.figures import milliseconds, percent, signed_percent
from podtally.verify.report.text import table


def observation(**changes: object) -> Observation:
    values: dict[str, object] = {
        "index": 3,
        "start": 0.1234567,
        "latency": 0.0021,
        "status": 200,
        "pod": "web-0",
        "node": "node-a",
        "namespace": "shop",
        "ip": "10.0.0.7",
        "zone": "zone-1",
        "version": "canary",
        "source": "headers",
        "error": None,
        "detail": None,
        "connection": 1,
        "peer": "127.0.0.1:8080",
        "location": None,
        "redirects": 0,
    }
    values.update(changes)
    return Observation(**values)  # type: ignore[arg-type]


def test_an_observation_line_carries_every_identity_field() -> None:
    line = observation_line(observation())
    assert line.endswith("\n") and line.count("\n") == 1
    doc = json.loads(line)
    fields = ("pod", "node", "namespace", "ip", "zone", "version")
    assert [doc[k] for k in fields] == ["web-0", "node-a", "shop", "10.0.0.7", "zone-1", "canary"]
    assert doc["start"] == 0.123457 and doc["latency_ms"] == 2.1


def test_a_failed_observation_line_has_nulls() -> None:
    doc = json.loads(observation_line(observation(pod=None, version=None, error="refused")))
    assert doc["pod"] is None and doc["version"] is None and doc["error"] == "refused"


def test_body_identity_in_field_order_with_version() -> None:
    body = b"Pod: p\nNode: n\nNamespace: ns\nIP: 1.2.3.4\nZone: z\nVersion: stable\n"
    assert parse_identity_text(body) == ["p", "n", "ns", "1.2.3.4", "z", "stable"]
    assert parse_identity_text(b"Pod: p\n") == ["p", None, None, None, None, None]
    assert parse_identity_text(b"Version: stable\n") is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.00123, "1.23 ms"), (0.0456, "45.6 ms"), (2.5, "2500 ms")],
)
def test_milliseconds(seconds: float, text: str) -> None:
    assert milliseconds(seconds) == text


def test_percentages() -> None:
    assert percent(1 / 3) == "33.3%"
    assert signed_percent(0.05) == "+5.0%" and signed_percent(-0.123) == "-12.3%"


def test_table_aligns_names_left_and_numbers_right() -> None:
    lines = table(["pod", "count"], [["web-0", "7"], ["w", "1234"]])
    assert lines == ["  pod    count", "  web-0      7", "  w       1234"]
