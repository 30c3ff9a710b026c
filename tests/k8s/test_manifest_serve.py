"""The rendered Deployment, run for real: the service started with exactly the container args and
the downward-API environment the manifest sets, probed on the paths and port the manifest names,
then terminated the way the kubelet does (SIGTERM, then wait up to terminationGracePeriodSeconds).

Ports 21000-21099 on 127.0.0.x belong to this module.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podtally.k8s import render
from podtally.spec import AppSpec
from tests.k8s.helpers import ARN, by_kind
from tests.support import clean_env

HOST = "127.0.0.21"

# What the kubelet would resolve each downward-API fieldPath to, for one pod.
POD = {
    "metadata.name": "podtally-7d9c6b5f4-x2x8q",
    "spec.nodeName": "ip-10-42-1-17.ec2.internal",
    "metadata.namespace": "podtally",
    "status.podIP": "10.42.1.23",
    "metadata.labels['topology.kubernetes.io/zone']": "us-east-1b",
}


def _get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode()


def _container(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = by_kind(objs, "Deployment")["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def _probe_url(container: dict[str, Any], probe: str) -> str:
    action = container[probe]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = ports[action["port"]] if isinstance(action["port"], str) else action["port"]
    return f"{action['scheme'].lower()}://{HOST}:{port}{action['path']}"


@contextlib.contextmanager
def _run_container(container: dict[str, Any], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    args = list(container["args"])
    # The one change: listen on a loopback address instead of every interface.
    args[args.index("--host") + 1] = HOST
    env = {e["name"]: POD[e["valueFrom"]["fieldRef"]["fieldPath"]] for e in container["env"]}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "podtally", "serve", *args],  # the image's ENTRYPOINT + args
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=clean_env(env),
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 30:
        assert proc.poll() is None, log.read_text()
        with contextlib.suppress(OSError):
            if _get(url)[0] == 200:
                return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"never ready: {log.read_text()}")


@pytest.mark.parametrize(
    ("spec", "port"),
    [
        (AppSpec(port=21001, drain_seconds=2), 21001),
        (AppSpec(profile="eks", certificate_arn=ARN, port=21002, drain_seconds=2), 21002),
    ],
    ids=["generic", "eks"],
)
def test_the_rendered_container_serves_its_probes_and_drains(
    spec: AppSpec, port: int, tmp_path: Path
) -> None:
    pod, container = _container(render(spec))
    assert container["ports"][0]["containerPort"] == port
    log = tmp_path / "serve.log"
    with _run_container(container, log) as proc:
        startup = _wait_ready(_probe_url(container, "startupProbe"), proc, log)
        # The startup probe's budget covers the real start-up time with a wide margin.
        budget = (
            container["startupProbe"]["periodSeconds"]
            * container["startupProbe"]["failureThreshold"]
        )
        assert startup < budget

        assert _get(_probe_url(container, "readinessProbe"))[0] == 200
        assert _get(_probe_url(container, "livenessProbe"))[0] == 200
        status, headers, body = _get(f"http://{HOST}:{port}/")
        assert status == 200
        assert body.splitlines()[:5] == [
            "Pod: podtally-7d9c6b5f4-x2x8q",
            "Node: ip-10-42-1-17.ec2.internal",
            "Namespace: podtally",
            "IP: 10.42.1.23",
            "Zone: us-east-1b",
        ]
        assert headers["x-pod-name"] == "podtally-7d9c6b5f4-x2x8q"
        assert headers["x-zone"] == "us-east-1b"

        # The kubelet's termination: SIGTERM, then SIGKILL after the grace period.
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        deadline = sent + 5
        while _get(_probe_url(container, "readinessProbe"))[0] != 503:
            assert time.monotonic() < deadline, "readiness never turned 503"
            time.sleep(0.02)
        # Draining: out of the endpoints, but still answering traffic and liveness.
        assert _get(f"http://{HOST}:{port}/")[0] == 200
        assert _get(_probe_url(container, "livenessProbe"))[0] == 200
        code = proc.wait(timeout=pod["terminationGracePeriodSeconds"])
        took = time.monotonic() - sent
        assert code == 0, log.read_text()
        # It kept answering for the drain it was given (never a hard cut before it).
        assert took >= spec.drain_seconds

    events = [
        json.loads(line)["event"] for line in log.read_text().splitlines() if line.startswith("{")
    ]
    assert "draining" in events and events[-1] == "stopped"
