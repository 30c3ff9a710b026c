"""Readiness, the graceful drain, signals, and bad input: the real process, real signals."""

from __future__ import annotations

import http.client
import signal
import socket
import time
from typing import Any

import pytest
from tests.support import run_cli


def test_sigterm_turns_readyz_503_while_the_rest_answers_then_exits_0(serve: Any) -> None:
    replica = serve(host="127.0.0.24", env={"POD_NAME": "drainer"}, drain_seconds=2)
    # A keep-alive connection opened before the signal keeps being served during the drain.
    conn = http.client.HTTPConnection(replica.host, replica.port, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read().startswith(b"Pod: drainer\n")

    replica.signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while replica.get("/readyz")[0] != 503:  # turns at once; poll briefly, bounded
        assert time.monotonic() < deadline, "readyz never turned 503"
        time.sleep(0.02)
    status, headers, body = replica.get("/readyz")
    assert (status, body) == (503, b"draining\n")
    assert headers["x-pod-name"] == "drainer"
    assert replica.get("/")[0] == 200
    assert replica.get("/livez")[0] == 200
    conn.request("GET", "/api/identity")
    assert conn.getresponse().status == 200
    metrics = replica.get("/metrics")[2].decode()
    assert "podtally_draining 1.0" in metrics and "podtally_ready 0.0" in metrics

    assert replica.wait(timeout=20) == 0
    conn.close()
    events = [e["event"] for e in replica.events()]
    assert events == ["start", "ready", "draining", "stopped"]
    assert replica.events()[-1]["code"] == 0
    with pytest.raises(OSError):  # the port is released
        socket.create_connection((replica.host, replica.port), timeout=1)


def test_sigint_drains_too(serve: Any) -> None:
    replica = serve(host="127.0.0.24", drain_seconds=0)
    replica.signal(signal.SIGINT)
    assert replica.wait(timeout=20) == 0


def test_second_signal_exits_at_once(serve: Any) -> None:
    replica = serve(host="127.0.0.24", drain_seconds=60)
    replica.signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while replica.get("/readyz")[0] != 503:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    replica.signal(signal.SIGTERM)
    # Far sooner than the 60 s drain: the second signal does not wait.
    assert replica.wait(timeout=20) == 128 + signal.SIGTERM


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--host", "not-an-ip"), "error: host 'not-an-ip' is not an IP address"),
        (("--host", "127.0.0.1", "--port", "70000"), "error: port must be between 1 and 65535"),
        (("--host", "127.0.0.1", "--port", "0"), "error: port must be between 1 and 65535"),
        (("--host", "127.0.0.1", "--port", "x"), "error: argument --port: invalid int value"),
        (("--host", "192.0.2.123", "--port", "18080"), "error: address 192.0.2.123 is not"),
        (("--drain-seconds", "-1"), "error: drain seconds must be between 0 and 3600"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = run_cli("serve", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_one_line_exit_2_and_leaves_nothing(serve: Any) -> None:
    replica = serve(host="127.0.0.24")
    result = run_cli("serve", "--host", "127.0.0.24", "--port", str(replica.port))
    assert result.returncode == 2
    assert result.stderr == f"error: port {replica.port} on 127.0.0.24 is already in use\n"
    # The first replica is still the only one answering on that port.
    for _ in range(5):
        assert replica.get("/")[0] == 200
