"""Idle keep-alive connections outlive the load balancer's idle timeout (issue 15, point 2).

granian (hyper) has one timer for "no complete request head yet": it closes an idle keep-alive
connection and a connection that sends nothing alike. The replica therefore sets it from
--keep-alive-timeout, which defaults above the ALB's 60 s idle timeout; the eks profile sets the
ALB's idle timeout explicitly below it.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from podtally.k8s.gateway import load_balancer_configuration
from podtally.k8s.render import ALB_IDLE_TIMEOUT, alb_annotations
from podtally.service.config import DEFAULT_KEEP_ALIVE_TIMEOUT, ServeConfig
from podtally.spec import AppSpec

REQUEST = b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n"


def _ask(sock: socket.socket) -> bytes:
    """Send one request on a kept-alive connection; its answer, or b"" if the replica closed it."""
    try:
        sock.sendall(REQUEST)
        return sock.recv(4096)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def _closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the replica closes an idle connection (a read returns b""), up to limit."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return limit
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_the_default_keep_alive_outlasts_the_albs_idle_timeout() -> None:
    assert ServeConfig().keep_alive_timeout == DEFAULT_KEEP_ALIVE_TIMEOUT > 60
    assert ALB_IDLE_TIMEOUT < DEFAULT_KEEP_ALIVE_TIMEOUT
    spec = AppSpec(profile="eks", host="podtally.example.com")
    attributes = alb_annotations(spec)["alb.ingress.kubernetes.io/load-balancer-attributes"]
    assert f"idle_timeout.timeout_seconds={ALB_IDLE_TIMEOUT}" in attributes.split(",")
    lb = load_balancer_configuration(spec)["spec"]["loadBalancerAttributes"]
    assert {"key": "idle_timeout.timeout_seconds", "value": str(ALB_IDLE_TIMEOUT)} in lb


def test_an_idle_keep_alive_connection_lives_for_the_keep_alive_timeout(serve: Any) -> None:
    """Reused after an idle pause shorter than --keep-alive-timeout: answered; then closed."""
    replica = serve(host="127.0.0.24", args=("--keep-alive-timeout", "3"))
    with socket.create_connection((replica.host, replica.port), timeout=5) as sock:
        assert _ask(sock).startswith(b"HTTP/1.1 200")
        time.sleep(2)  # idle, below the keep-alive timeout
        assert _ask(sock).startswith(b"HTTP/1.1 200"), "closed before --keep-alive-timeout"
        closed = _closed_after(sock, limit=8)
    assert 0.5 < closed < 5, f"idle connection closed after {closed:.1f} s, expected about 3"


def test_a_connection_that_sends_nothing_is_cut_after_the_silent_timeout(serve: Any) -> None:
    """granian alone keeps a silent new connection for ever (it waits for the first bytes to
    tell HTTP/1.1 from h2c with no limit); the replica's guard cuts it, and only it."""
    replica = serve(host="127.0.0.24", args=("--keep-alive-timeout", "30", "--silent-timeout", "1"))
    with (
        socket.create_connection((replica.host, replica.port), timeout=5) as silent,
        socket.create_connection((replica.host, replica.port), timeout=5) as talking,
    ):
        assert _ask(talking).startswith(b"HTTP/1.1 200")
        closed = _closed_after(silent, limit=8)
        assert 0.8 < closed < 4, f"silent connection closed after {closed:.1f} s, expected ~1"
        # A kept-alive connection that has spoken is hyper's business: still open, and answered.
        assert _ask(talking).startswith(b"HTTP/1.1 200")


def test_hypers_header_timer_starts_with_the_first_byte(serve: Any) -> None:
    """What the server library allows: one timer for an idle keep-alive connection and for a
    request head that has begun but not finished; a slow head is cut at the keep-alive timeout."""
    replica = serve(host="127.0.0.24", args=("--keep-alive-timeout", "2"))
    with socket.create_connection((replica.host, replica.port), timeout=5) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\n")
        closed = _closed_after(slow, limit=8)
    assert 1.5 < closed < 4, f"half-sent head closed after {closed:.1f} s, expected about 2"


def test_keep_alive_timeout_out_of_range_is_one_error_line(serve: Any) -> None:
    from tests.support import run_cli

    result = run_cli("serve", "--keep-alive-timeout", "0", timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --keep-alive-timeout 0: must be between 1 and 3600 seconds"
    ]
