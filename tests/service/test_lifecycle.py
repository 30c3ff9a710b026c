"""Readiness, the graceful drain, signals, and bad input: the real process, real signals."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.support import clean_env, free_port, run_cli, start_serve, wait_until


def test_sigterm_turns_readyz_503_while_the_rest_answers_then_exits_0(serve: Any) -> None:
    replica = serve(host="127.0.0.24", env={"POD_NAME": "drainer"}, drain_seconds=2)
    # A keep-alive connection opened before the signal keeps being served during the drain.
    conn = http.client.HTTPConnection(replica.host, replica.port, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read().startswith(b"Pod: drainer\n")

    replica.signal(signal.SIGTERM)
    # It turns at once; poll briefly, bounded.
    wait_until(lambda: replica.get("/readyz")[0] == 503, "readyz 503", seconds=5, pause=0.02)
    status, headers, body = replica.get("/readyz")
    assert (status, body) == (503, b"draining\n")
    assert headers["x-pod-name"] == "drainer"
    assert replica.get("/")[0] == 200
    assert replica.get("/livez")[0] == 200
    # The open keep-alive connection is still answered, and told to go: `Connection: close`
    # moves keep-alive clients to replicas that stay.
    conn.request("GET", "/api/identity")
    answer = conn.getresponse()
    assert (answer.status, answer.getheader("connection")) == (200, "close")
    answer.read()
    assert answer.will_close
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
    wait_until(lambda: replica.get("/readyz")[0] == 503, "readyz 503", seconds=5, pause=0.02)
    replica.signal(signal.SIGTERM)
    # Far sooner than the 60 s drain: the second signal does not wait.
    assert replica.wait(timeout=20) == 128 + signal.SIGTERM


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--host", "not-an-ip"), "error: host 'not-an-ip' is not an IP address"),
        (("--host", "127.0.0.1", "--port", "70000"), "error: port must be between 1 and 65535"),
        (("--host", "127.0.0.1", "--port", "0"), "error: port must be between 1 and 65535"),
        (("--host", "127.0.0.1", "--port", "x"), "error: invalid value for '--port': 'x'"),
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
    assert result.stderr == (
        f"error: port {replica.port} on 127.0.0.24 is already in use (by another podtally serve)\n"
    )
    # The first replica is still the only one answering on that port.
    for _ in range(5):
        assert replica.get("/")[0] == 200


def test_a_closed_log_pipe_does_not_stop_the_drain(tmp_path: Path) -> None:
    """A log reader that goes away (`podtally serve | head`) must not make SIGTERM a no-op."""
    port = free_port("127.0.0.24")
    command = [sys.executable, "-m", "podtally", "serve", "--host", "127.0.0.24"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--drain-seconds", "0.2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert proc.stderr is not None
        for _ in range(2):  # start, ready
            assert proc.stderr.readline()
        proc.stderr.close()  # the reader is gone: the next log line meets a broken pipe
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_two_replicas_started_at_once_never_share_a_port(tmp_path: Path) -> None:
    """granian binds with SO_REUSEPORT: without a claim, both could pass the check and serve."""
    for attempt in range(6):
        port = free_port("127.0.0.24")
        logs = [tmp_path / f"{attempt}-{i}" for i in range(2)]  # one log file each
        for directory in logs:
            directory.mkdir()
        pair = [start_serve(d, "127.0.0.24", port, wait_ready=False) for d in logs]
        try:
            deadline = time.monotonic() + 30
            codes: list[int | None] = [None, None]
            while time.monotonic() < deadline:
                codes = [r.proc.poll() for r in pair]
                if 2 in codes:
                    break
                time.sleep(0.05)
            assert sorted(codes, key=str) == [2, None], f"attempt {attempt}: {codes}"
            loser = pair[codes.index(2)]
            assert "already in use" in loser.log_path.read_text()
            winner = pair[codes.index(None)]
            wait_until(
                lambda: "ready" in [e["event"] for e in winner.events()],  # noqa: B023 - waited for here
                "the winner ready",
                proc=winner.proc,
                log=winner.log_path,
            )
            assert winner.get("/readyz")[0] == 200
        finally:
            for replica in pair:
                replica.stop()


def test_a_half_sent_request_does_not_fail_the_exit(serve: Any) -> None:
    replica = serve(host="127.0.0.24", drain_seconds=0.2, args=("--shutdown-timeout", "1"))
    with socket.create_connection((replica.host, replica.port), timeout=5) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        replica.signal(signal.SIGTERM)
        assert replica.wait(timeout=20) == 0
    stopped = replica.events()[-1]
    assert stopped["event"] == "stopped" and stopped["code"] == 0
    assert "closed" in str(stopped["reason"])


def test_a_signal_before_ready_skips_the_drain(tmp_path: Path) -> None:
    """Signalled while still resolving its zone: never ready, so it stops without draining."""
    silent = socket.socket()  # an IMDS that accepts and never answers keeps start-up busy
    silent.bind(("127.0.0.25", 0))
    silent.listen(8)
    silent.settimeout(20)
    endpoint = f"http://127.0.0.25:{silent.getsockname()[1]}"
    replica = start_serve(
        tmp_path,
        "127.0.0.24",
        env={"PODTALLY_IMDS_ENDPOINT": endpoint},
        drain_seconds=60,
        wait_ready=False,
    )
    try:
        asked, _ = silent.accept()  # the lookup has begun, so the signal handlers are in place
        replica.signal(signal.SIGTERM)
        assert replica.wait(timeout=20) == 0  # far sooner than the 60 s drain
        asked.close()
    finally:
        silent.close()
        replica.stop()
    events = [(e["event"], e.get("reason")) for e in replica.events()]
    assert ("stopped", "signalled before ready") in events
    assert ("ready", None) not in events and ("draining", None) not in events
