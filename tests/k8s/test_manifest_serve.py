"""The rendered Deployment, run for real: the service started with exactly the container args and
the downward-API environment the manifest sets, probed on the paths and port the manifest names
(HTTP GET, or a gRPC health check as the kubelet makes it: success is SERVING), then terminated
the way the kubelet does (SIGTERM, then wait up to terminationGracePeriodSeconds).

Each case renders with a port the kernel just handed out on this module's loopback address.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from podtally.k8s import render
from podtally.spec import AppSpec
from tests.k8s.helpers import ARN, by_kind
from tests.support import ServeProcess, free_ports, start_serve

HOST = "127.0.0.21"

# What the kubelet would resolve each downward-API fieldPath to, for one pod (besides the pod
# template's own labels, which _run_container adds).
POD = {
    "metadata.name": "podtally-7d9c6b5f4-x2x8q",
    "spec.nodeName": "ip-10-42-1-17.ec2.internal",
    "metadata.namespace": "podtally",
    "status.podIP": "10.42.1.23",
    "metadata.labels['topology.kubernetes.io/zone']": "us-east-1b",
}


def _container(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = by_kind(objs, "Deployment")["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def _prober(container: dict[str, Any], probe: str) -> Callable[[ServeProcess], bool]:
    """The probe as the kubelet runs it: True when it would succeed right now.

    httpGet: a status from 200 to 399 on the named port. grpc: grpc.health.v1.Health/Check on
    the port, with the probe's service name (none: the server as a whole), answering SERVING.
    """
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    spec = container[probe]
    if "grpc" in spec:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        port = spec["grpc"]["port"]
        assert port == ports["grpc"], "the probe asks the container's gRPC port"
        service = spec["grpc"].get("service", "")

        def grpc_probe(replica: ServeProcess) -> bool:
            with grpc.insecure_channel(f"{replica.host}:{port}") as channel:
                try:
                    reply = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=service),
                        timeout=spec["timeoutSeconds"],
                    )
                except grpc.RpcError:
                    return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        return grpc_probe
    action = spec["httpGet"]
    assert action["scheme"] == "HTTP"
    port_ref = action["port"]
    assert (ports[port_ref] if isinstance(port_ref, str) else port_ref) == ports["http"]

    def http_probe(replica: ServeProcess) -> bool:
        try:
            return 200 <= replica.get(action["path"])[0] < 400
        except OSError:
            return False

    return http_probe


@contextlib.contextmanager
def _run_container(
    container: dict[str, Any], labels: dict[str, str], port: int, tmp_path: Path
) -> Iterator[ServeProcess]:
    """`podtally serve` (the image's ENTRYPOINT) with the container's args and downward-API env.

    ``labels`` are the pod template's: a ``metadata.labels['...']`` field resolves to them.
    """
    args = list(container["args"])
    # The one change: listen on a loopback address instead of every interface.
    args[args.index("--host") + 1] = HOST
    fields = {**{f"metadata.labels['{k}']": v for k, v in labels.items()}, **POD}
    env = {e["name"]: fields[e["valueFrom"]["fieldRef"]["fieldPath"]] for e in container["env"]}
    # start_serve puts its own --host/--port/--drain-seconds first; the container's args, last,
    # override them, so the process runs with exactly what the manifest says. Its environment is
    # clean_env(): no developer identity, no service account, no real instance metadata service.
    replica = start_serve(
        tmp_path, host=HOST, port=port, env=env, args=tuple(args), wait_ready=False
    )
    try:
        yield replica
    finally:
        replica.stop()


def _wait_ready(replica: ServeProcess, probe: Callable[[ServeProcess], bool]) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 30:
        assert replica.proc.poll() is None, replica.log_path.read_text()
        if probe(replica):
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"never ready: {replica.log_path.read_text()}")


@pytest.mark.parametrize(
    ("settings", "kinds"),
    [
        ({}, ("grpc", "grpc", "httpGet")),
        ({"profile": "eks", "certificate_arn": ARN}, ("grpc", "grpc", "httpGet")),
        ({"grpc_probes": False}, ("httpGet", "httpGet", "httpGet")),
        ({"grpc_port": 0}, ("httpGet", "httpGet", "httpGet")),
    ],
    ids=["generic", "eks", "grpc-http-probes", "grpc-off"],
)
def test_the_rendered_container_serves_its_probes_and_drains(
    settings: dict[str, Any], kinds: tuple[str, ...], tmp_path: Path
) -> None:
    port, grpc_port = free_ports(2, (HOST,))
    spec = AppSpec(port=port, drain_seconds=2, **{"grpc_port": grpc_port, **settings})
    objs = render(spec)
    pod, container = _container(objs)
    labels = by_kind(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert container["ports"][0]["containerPort"] == port
    names = ("startupProbe", "readinessProbe", "livenessProbe")
    assert tuple(next(k for k in ("grpc", "httpGet") if k in container[n]) for n in names) == kinds
    startup_probe, ready_probe, live_probe = (_prober(container, n) for n in names)
    with _run_container(container, labels, port, tmp_path) as replica:
        startup = _wait_ready(replica, startup_probe)
        # The replica (past exec) cannot ask a real instance metadata service.
        assert "PODTALLY_IMDS_ENDPOINT=off" in _environ(replica)
        # The startup probe's budget covers the real start-up time with a wide margin.
        budget = (
            container["startupProbe"]["periodSeconds"]
            * container["startupProbe"]["failureThreshold"]
        )
        assert startup < budget

        assert ready_probe(replica)
        assert live_probe(replica)
        status, headers, body = replica.get("/")
        assert status == 200
        assert body.decode().splitlines()[:6] == [
            "Pod: podtally-7d9c6b5f4-x2x8q",
            "Node: ip-10-42-1-17.ec2.internal",
            "Namespace: podtally",
            "IP: 10.42.1.23",
            "Zone: us-east-1b",
            "Version: 0.1.0",  # the pod template's app.kubernetes.io/version label
        ]
        assert headers["x-pod-name"] == "podtally-7d9c6b5f4-x2x8q"
        assert headers["x-zone"] == "us-east-1b"
        assert headers["x-pod-version"] == "0.1.0"

        # The kubelet's termination: SIGTERM, then SIGKILL after the grace period.
        sent = time.monotonic()
        replica.signal(signal.SIGTERM)
        deadline = sent + 5
        while ready_probe(replica):
            assert time.monotonic() < deadline, "readiness never turned off"
            time.sleep(0.02)
        # Draining: out of the endpoints, but still answering traffic and liveness.
        assert replica.get("/")[0] == 200
        assert live_probe(replica)
        code = replica.wait(timeout=pod["terminationGracePeriodSeconds"])
        took = time.monotonic() - sent
        assert code == 0, replica.log_path.read_text()
        # It kept answering for the drain it was given (never a hard cut before it).
        assert took >= spec.drain

    events = [str(e.get("event")) for e in replica.events()]
    assert "draining" in events and events[-1] == "stopped"


def _environ(replica: ServeProcess) -> list[str]:
    """The replica process's real environment, as the kernel has it."""
    raw = Path(f"/proc/{replica.proc.pid}/environ").read_bytes()
    return raw.decode(errors="replace").split("\0")
