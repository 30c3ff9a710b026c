"""The failure issue 12 is about, end to end: gRPC channels held open through a connection-level
balancer (HAProxy ``mode tcp``, ``balance random``: kube-proxy's semantics) while the replicas
scale out from 3 to 6. Calls on the old channels never reach the new pods, and
``podtally verify`` fails, naming them; a channel per call through the same balancer is even.

The new replicas are running from the start but disabled in HAProxy, and enabled over its
runtime API once the verifier's channels are open: endpoints turning ready, as after an HPA.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from podtally.verify import VerifyOptions, parse_expect_split, run
from podtally.verify.probe import Observation
from podtally.verify.replay import replay
from tests.protocols.support import start_grpc_serve
from tests.support import ServeProcess, accepts, free_port, wait_until

PODS = [f"pod-{k}" for k in range(6)]


@dataclass
class Service:
    url: str
    admin: Path  # HAProxy's runtime API socket
    proc: subprocess.Popen[bytes]

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.admin))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def scale_out(self) -> None:
        for k in (3, 4, 5):
            assert self.command(f"enable server grpc_tcp/r{k}").strip() == ""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    servers: list[ServeProcess] = []
    proc: subprocess.Popen[bytes] | None = None
    try:
        ports = []
        for pod in PODS:
            server, grpc_port = start_grpc_serve(tmp_path, env={"POD_NAME": pod})
            servers.append(server)
            ports.append(grpc_port)
        port = free_port()
        admin = tmp_path / "admin.sock"
        lines = [
            f"  server r{k} 127.0.0.1:{p}" + (" disabled" if k >= 3 else "")
            for k, p in enumerate(ports)
        ]
        config = tmp_path / "haproxy.cfg"
        config.write_text(
            f"global\n  stats socket {admin} level admin\n"
            "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n"
            "  timeout server 60s\n"
            f"frontend service\n  bind 127.0.0.1:{port}\n  default_backend grpc_tcp\n"
            "backend grpc_tcp\n  balance random\n" + "\n".join(lines) + "\n"
        )
        log = (tmp_path / "haproxy.log").open("wb")
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=log, stderr=log)
        wait_until(
            lambda: admin.exists() and accepts("127.0.0.1", port),
            "haproxy started",
            seconds=10,
            proc=proc,
            log=tmp_path / "haproxy.log",
        )
        yield Service(f"grpc://127.0.0.1:{port}", admin, proc)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        for server in servers:
            server.stop()


def test_channels_opened_before_a_scale_out_never_reach_the_new_pods(service: Service) -> None:
    split = parse_expect_split("pod=" + ",".join(f"{pod}:1" for pod in PODS))
    options = VerifyOptions(
        url=service.url, duration=3.0, rate=150, concurrency=4, expect_split=split
    )
    seen: list[Observation] = []
    timer = threading.Timer(1.0, service.scale_out)
    timer.start()
    try:
        result = run(options, on_observation=seen.append)
    finally:
        timer.join()
    assert result.failed == 0, result.error_details
    late = [o for o in seen if o.start > 1.5]
    assert len(late) > 100  # calls went on well after the scale-out ...
    answered = set(result.pod_counts())
    assert answered <= set(PODS[:3])  # ... and none reached the new pods
    failures = [str(f) for f in result.verdict.failures]
    for pod in PODS[3:]:
        assert f"pod {pod} never answered" in failures, failures
    assert result.exit_code == 1
    spread = result.connection_spread
    assert spread is not None and spread.word == "channel"
    assert spread.connections == spread.pinned == 4
    assert result.assessment is not None and result.assessment.unit.unit == "connections"
    # Judged again without names: `--expect-pods 6`.
    again = replay(seen, url=service.url, expect_pods=6)
    assert f"only {len(answered)} of 6 expected pods answered" in again.verdict.failures
    assert again.exit_code == 1


def test_a_channel_per_call_through_the_same_balancer_is_even(service: Service) -> None:
    service.scale_out()
    options = VerifyOptions(
        url=service.url, new_channel=True, concurrency=8, expect_pods=6, max_duration=60
    )
    result = run(options)
    assert result.verdict.result == "even", result.verdict.summary
    assert set(result.pod_counts()) == set(PODS)
    assert result.connection_spread is None  # nothing reused: requests are the unit
    assert result.exit_code == 0
