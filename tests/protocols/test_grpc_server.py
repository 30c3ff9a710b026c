"""The replica's gRPC side, against a real `serve` process: Identity Get and Watch, metadata,
health following readiness and the drain, reflection, metrics, a port in use."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from podtally.proto import identity_pb2, identity_pb2_grpc
from tests.protocols.support import start_grpc_serve
from tests.support import ServeProcess

POD = {"POD_NAME": "pod-g", "NODE_NAME": "node-g", "POD_NAMESPACE": "ns-g", "POD_IP": "10.9.8.7"}

Start = Callable[..., tuple[ServeProcess, str]]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start a replica of pod-g with gRPC on: (the server, its gRPC target); stopped after."""
    started: list[ServeProcess] = []

    def start(drain_seconds: float = 1.0) -> tuple[ServeProcess, str]:
        server, port = start_grpc_serve(tmp_path, env=POD, drain_seconds=drain_seconds)
        started.append(server)
        return server, f"127.0.0.1:{port}"

    yield start
    for server in started:
        server.stop()


def test_get_answers_the_identity_in_the_reply_and_the_metadata(start: Start) -> None:
    server, target = start()
    with grpc.insecure_channel(target) as channel:
        stub = identity_pb2_grpc.IdentityStub(channel)
        reply, call = stub.Get.with_call(identity_pb2.GetRequest(), timeout=5)
        metadata = dict(call.initial_metadata())
    assert (reply.pod, reply.node, reply.namespace, reply.ip) == (
        "pod-g",
        "node-g",
        "ns-g",
        "10.9.8.7",
    )
    assert reply.sequence == 0
    assert metadata["x-pod-name"] == "pod-g"
    assert metadata["x-node-name"] == "node-g"
    assert metadata["x-pod-namespace"] == "ns-g"
    assert metadata["x-pod-ip"] == "10.9.8.7"
    assert "x-zone" in metadata
    assert metadata["x-pod-version"] == reply.version
    # The calls are counted in the replica's /metrics.
    status, _, body = server.get("/metrics")
    assert status == 200
    assert b'podtally_grpc_calls_total{code="OK",method="Get"} 1.0' in body


def test_watch_streams_one_identity_per_interval(start: Start) -> None:
    server, target = start()
    with grpc.insecure_channel(target) as channel:
        stub = identity_pb2_grpc.IdentityStub(channel)
        started = time.monotonic()
        replies = list(stub.Watch(identity_pb2.WatchRequest(interval_ms=100, count=4), timeout=10))
        elapsed = time.monotonic() - started
    assert [r.sequence for r in replies] == [1, 2, 3, 4]
    assert {r.pod for r in replies} == {"pod-g"}
    assert 0.25 < elapsed < 5  # three intervals of 0.1 s between four messages
    _, _, body = server.get("/metrics")
    assert b'podtally_grpc_calls_total{code="OK",method="Watch"} 1.0' in body


def test_health_is_serving_when_ready_and_not_serving_from_sigterm(start: Start) -> None:
    server, target = start(3)
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", "podtally.v1.Identity"):
            check = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert check.status == serving
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="nope.v1.X"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == serving
        server.signal(signal.SIGTERM)
        assert next(watch).status == not_serving
        # Draining: health says NOT_SERVING, and the Identity service still answers.
        check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert check.status == not_serving
        reply = identity_pb2_grpc.IdentityStub(channel).Get(identity_pb2.GetRequest(), timeout=5)
        assert reply.pod == "pod-g"
    assert server.wait(timeout=20) == 0


def test_a_watch_stream_ends_cleanly_when_the_replica_stops(start: Start) -> None:
    server, target = start(0.5)
    with grpc.insecure_channel(target) as channel:
        stream = identity_pb2_grpc.IdentityStub(channel).Watch(
            identity_pb2.WatchRequest(interval_ms=50), timeout=20
        )
        assert next(stream).sequence == 1
        server.signal(signal.SIGTERM)
        rest = list(stream)  # ends with OK: no RpcError
        assert rest and rest[-1].sequence > 1
    assert server.wait(timeout=20) == 0


def test_reflection_lists_the_services(start: Start) -> None:
    _, target = start()
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"podtally.v1.Identity", "grpc.health.v1.Health"} <= names


def test_a_grpc_port_in_use_is_one_error_line_exit_2_and_nothing_left(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server, _ = start_grpc_serve(tmp_path, grpc_port=port, wait_ready=False)
        try:
            assert server.wait(timeout=30) == 2
        finally:
            server.stop()
    lines = server.log_path.read_text().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert str(port) in errors[0] and "in use" in errors[0]
    assert "Traceback" not in server.log_path.read_text()
    # Nothing left: the HTTP port was never served.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
