"""The stack's two paths with real HAProxy and real replicas (issue 12).

- The ALB path balances each gRPC call on its own: one channel (one TCP connection) through
  ``--grpc-port`` or the HTTPS port reaches every replica, also replicas added after it opened.
- The Service path balances connections, as kube-proxy: one channel stays on one replica for its
  whole life (a replica added later gets nothing from it), new connections spread at random.

One stack of two replicas, TLS on, scaled to three by the last test. Bounded: every loop has a
fixed count, every call a deadline.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.local.localstack_helpers import (
    every_path_ports,
    running_stack,
    stack_config,
    stack_processes,
)
from tests.support import STACK_HOSTS, free_ports, run_cli

from podtally.local import Stack, restart, scale, status
from podtally.local import haproxy as hap

grpc = pytest.importorskip("grpc")
from podtally.proto import identity_pb2 as pb  # noqa: E402

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]
NAME = "pathtest"
GET = "/podtally.v1.Identity/Get"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("paths")
    with running_stack(stack_config(root / NAME, 2, **every_path_ports())) as started:
        yield started


def _secure(stack: Stack, port: int) -> Any:
    assert stack.ca_path is not None
    credentials = grpc.ssl_channel_credentials(stack.ca_path.read_bytes())
    return grpc.secure_channel(
        f"127.0.0.1:{port}",
        credentials,
        options=[("grpc.ssl_target_name_override", "localhost")],
    )


def _plain(port: int) -> Any:
    # A channel of its own: grpcio would otherwise share one connection between channels.
    return grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )


def _pods(channel: Any, calls: int) -> list[str]:
    """The pod that answered each of ``calls`` Identity/Get calls on one channel."""
    get = channel.unary_unary(
        GET,
        request_serializer=pb.GetRequest.SerializeToString,
        response_deserializer=pb.IdentityReply.FromString,
    )
    pods = []
    for _ in range(calls):
        _, call = get.with_call(pb.GetRequest(), timeout=5)
        pods.append(dict(call.initial_metadata())["x-pod-name"])
    return pods


def _replica_pods(stack: Stack) -> set[str]:
    return {r.pod for r in status(NAME, run_dir=stack.run_dir).replicas}


def test_the_config_has_both_paths(stack: Stack) -> None:
    text = (stack.run_dir / "haproxy.cfg").read_text()
    assert f"backend {hap.GRPC_BACKEND}" in text and " proto h2 track pods/pod1" in text
    service = text.split(f"backend {hap.SERVICE_GRPC_BACKEND}")[1]
    assert "mode tcp" in service and "balance random" in service
    replica = status(NAME, run_dir=stack.run_dir).replicas[0]
    assert replica.grpc_port and replica.grpc_port != replica.port
    assert f"{replica.address}:{replica.grpc_port} proto h2" in text


def test_alb_grpc_port_balances_each_call(stack: Stack) -> None:
    assert stack.config.grpc_port is not None
    with _secure(stack, stack.config.grpc_port) as channel:
        pods = _pods(channel, 20)
    assert set(pods) == _replica_pods(stack)
    assert abs(pods.count(pods[0]) - 10) <= 1  # round robin over two


def test_alb_https_port_carries_grpc_too(stack: Stack) -> None:
    with _secure(stack, stack.config.https_port) as channel:
        pods = _pods(channel, 10)
    assert set(pods) == _replica_pods(stack)


def test_service_path_pins_a_channel_and_spreads_connections(stack: Stack) -> None:
    assert stack.config.service_grpc_port is not None
    with _plain(stack.config.service_grpc_port) as channel:
        assert len(set(_pods(channel, 20))) == 1
    seen: set[str] = set()
    for _ in range(30):  # P(one replica in 30 random picks of 2) = 2**-29
        with _plain(stack.config.service_grpc_port) as channel:
            seen.update(_pods(channel, 1))
    assert seen == _replica_pods(stack)


def test_service_path_http_keeps_a_connection_on_one_pod(stack: Stack) -> None:
    assert stack.config.service_port is not None
    conn = http.client.HTTPConnection("127.0.0.1", stack.config.service_port, timeout=5)
    pods = set()
    try:
        for _ in range(10):
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            pods.add(response.getheader("X-Pod-Name"))
    finally:
        conn.close()
    assert len(pods) == 1 and pods <= _replica_pods(stack)


def test_status_lists_both_paths(stack: Stack) -> None:
    env = {"PODTALLY_STATE_DIR": str(stack.run_dir.parent)}
    result = run_cli("status", "--name", NAME, env=env)
    assert result.returncode == 0, result.stderr
    assert f"grpcs://127.0.0.1:{stack.config.grpc_port}" in result.stdout
    assert f"http://127.0.0.1:{stack.config.service_port}/" in result.stdout
    assert f"grpc://127.0.0.1:{stack.config.service_grpc_port}" in result.stdout
    data = json.loads(run_cli("status", "--name", NAME, "--json", env=env).stdout)
    assert data["service_grpc_url"] == f"grpc://127.0.0.1:{stack.config.service_grpc_port}"


def test_scale_out_reaches_alb_channels_not_pinned_service_channels(stack: Stack) -> None:
    """The failure of issue 12 in miniature: channels opened before the scale-out. Through the
    Service path each stays on its replica; through the ALB path the new replica answers."""
    assert stack.config.grpc_port is not None and stack.config.service_grpc_port is not None
    before = _replica_pods(stack)
    pinned = [_plain(stack.config.service_grpc_port) for _ in range(6)]
    with _secure(stack, stack.config.grpc_port) as alb:
        try:
            first = [set(_pods(channel, 3)) for channel in pinned]
            assert all(len(pods) == 1 for pods in first)
            scale(3, NAME, run_dir=stack.run_dir)
            added = _replica_pods(stack) - before
            assert len(added) == 1
            after = [set(_pods(channel, 10)) for channel in pinned]
            assert after == first  # every call still on the replica its connection picked
            assert added <= set(_pods(alb, 9))  # per call: the new replica takes its turn
        finally:
            for channel in pinned:
                channel.close()


def test_restart_moves_every_path_to_the_new_replicas(stack: Stack) -> None:
    """A rolling restart reuses server slots: each backend must get the new addresses."""
    assert stack.config.grpc_port is not None and stack.config.service_grpc_port is not None
    before = _replica_pods(stack)
    restart(NAME, run_dir=stack.run_dir)
    now = _replica_pods(stack)
    assert not now & before
    with _secure(stack, stack.config.grpc_port) as channel:
        assert set(_pods(channel, 3 * len(now))) == now
    seen: set[str] = set()
    for _ in range(40):  # P(a replica missed in 40 random picks of 3) < 3 * (2/3)**40 < 1e-6
        with _plain(stack.config.service_grpc_port) as channel:
            seen.update(_pods(channel, 1))
    assert seen == now


@pytest.mark.parametrize("tls", [True, False])
def test_rendered_config_is_valid(tmp_path: Path, tls: bool) -> None:
    slots = [hap.Slot(1, "127.0.0.11", 8080, 3, 40001), hap.Slot(2)]
    layout = hap.Layout(
        http_port=8080,
        https_port=8443 if tls else None,
        stats_port=8404,
        socket_path=tmp_path / "s.sock",
        cert_path=tmp_path / "server.pem" if tls else None,
        slots=slots,
        grpc_port=9443,
        service_port=8081,
        service_grpc_port=9081,
    )
    text = hap.render(layout)
    grpc_bind = "bind 127.0.0.1:9443 ssl crt" if tls else "bind 127.0.0.1:9443 proto h2"
    assert grpc_bind in text
    assert "server pod1 127.0.0.11:40001 weight 3 proto h2 track pods/pod1" in text
    assert "server pod1 127.0.0.11:8080 weight 3 track pods/pod1" in text  # Service, HTTP
    assert "server pod2 127.0.0.1:9 disabled proto h2 track pods/pod2" in text
    if tls:
        from podtally.local import tls as local_tls

        files = local_tls.generate(tmp_path / "tls", "t", None)
        text = text.replace(str(tmp_path / "server.pem"), str(files.server_pem))
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    hap.check_config(hap.find_binary(), path)


def test_grpc_port_in_use_is_one_error_line(tmp_path: Path) -> None:
    http, https, stats, grpc_port, service, service_grpc = free_ports(6, STACK_HOSTS)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", grpc_port))
        taken.listen()
        result = run_cli(
            "up",
            "--name",
            "busy",
            *("--http-port", str(http), "--https-port", str(https)),
            *("--stats-port", str(stats), "--grpc-port", str(grpc_port)),
            *("--service-port", str(service), "--service-grpc-port", str(service_grpc)),
            env={"PODTALLY_STATE_DIR": str(tmp_path), "PODTALLY_SUPERVISOR": "off"},
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--grpc-port" in lines[0]
    assert str(grpc_port) in lines[0]
    assert stack_processes(tmp_path / "busy") == []
    assert not (tmp_path / "busy").exists()
