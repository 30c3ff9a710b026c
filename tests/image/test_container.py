"""The built image, running: as the Deployment runs it, as `docker run` runs it, and its config.

Needs podman and a built image (`make image image-test`); ports are published on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import random
import subprocess
import time

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from podtally import __version__
from tests.image.helpers import (
    Container,
    Pod,
    Podman,
    deployment_as_run,
    labels_of,
    manifests,
    podman_cmd,
)

pytestmark = [pytest.mark.image, pytest.mark.slow]

UID = "10001"


def _status_ids(container: Container) -> dict[str, str]:
    """Uid, Gid, CapEff and NoNewPrivs of the service (PID 1), as the kernel has them."""
    status = container.exec("cat", "/proc/1/status")
    assert status.returncode == 0, status.stderr
    fields = dict(line.split(":", 1) for line in status.stdout.splitlines() if ":" in line)
    return {k: fields[k].split()[0] for k in ("Uid", "Gid", "CapEff", "NoNewPrivs")}


def test_runs_as_the_deployment_says(podman: Podman, image: str) -> None:
    objects = manifests()
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    subnet = podman.run("network", "inspect", "--format", "{{range .Subnets}}{{.Subnet}}{{end}}",
                        "podman").strip()  # fmt: skip
    assert subnet == "10.88.0.0/16", subnet
    pod = Pod(
        name="podtally-6f7c9d8b5-q4x2z",
        namespace=deployment["metadata"]["namespace"],
        node="node-a.example.internal",
        ip=f"10.88.{random.randrange(200, 250)}.{random.randrange(2, 250)}",
        # The pod template's labels (POD_VERSION reads its version label), and the zone label
        # Kubernetes 1.35+ copies from the node.
        labels={
            **deployment["spec"]["template"]["metadata"]["labels"],
            "topology.kubernetes.io/zone": "zone-b",
        },
    )
    run = deployment_as_run(deployment, pod)
    # The downward API's names, as the seed and the contract fix them.
    assert set(run.env) == {
        "POD_NAME", "NODE_NAME", "POD_NAMESPACE", "POD_IP", "ZONE", "POD_VERSION"
    }  # fmt: skip
    started = time.monotonic()
    container = podman.start(
        image, [*run.flags, "--ip", pod.ip], run.args, port=run.port, grpc_port=run.grpc_port
    )

    # The startup probe's budget, probed from outside as the kubelet does (gRPC health on the
    # gRPC port for start-up and readiness, by default; HTTP /livez for liveness).
    assert (run.startup.grpc, run.readiness.grpc, run.liveness.grpc) == (True, True, False)
    budget = run.startup.failures * run.startup.period
    while not container.probe(run.startup):
        assert time.monotonic() - started < budget, container.logs()
        time.sleep(0.05)
    ready_after = time.monotonic() - started
    assert ready_after < budget
    assert container.probe(run.readiness)
    assert container.probe(run.liveness)

    # The seed's text, byte for byte, from the downward-API values.
    status, body = container.get("/")
    assert status == 200
    assert (
        body
        == (
            f"Pod: {pod.name}\nNode: {pod.node}\nNamespace: {pod.namespace}\nIP: {pod.ip}\n"
            f"Zone: zone-b\nVersion: {pod.labels['app.kubernetes.io/version']}\n"
        ).encode()
    )

    # securityContext: uid/gid 10001, no capabilities, no privilege escalation.
    ids = _status_ids(container)
    assert (ids["Uid"], ids["Gid"]) == (UID, UID)
    assert ids["CapEff"] == "0000000000000000"
    assert ids["NoNewPrivs"] == "1"
    # Read-only root: a write fails; the emptyDir at /tmp is the one writable place.
    denied = container.exec("python", "-c", "open('/opt/podtally/written', 'w')")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied
    denied = container.exec("python", "-c", "open('/written', 'w')")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied
    assert container.exec("python", "-c", "open('/tmp/scratch', 'w').write('x')").returncode == 0

    # resources.limits.memory is the kernel's limit on the container's cgroup (v2 or v1).
    limit = container.exec("sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null"
                           " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes")  # fmt: skip
    assert limit.stdout.strip() == str(run.memory_limit), limit

    # The liveness probe as podman's health check.
    check = podman.completed("healthcheck", "run", container.name, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert container.inspect("{{.State.Health.Status}}") == "healthy"

    # SIGTERM (podman stop, with the pod's grace period): not ready at once, still answering
    # while it drains, then exit 0 well within the grace period.
    sent = time.monotonic()
    stop = subprocess.Popen(
        podman_cmd("stop", "--time", str(run.grace_seconds), container.name),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        draining = False
        while time.monotonic() - sent < run.grace_seconds and stop.poll() is None:
            try:
                ready, _ = container.get("/readyz", timeout=1)
                served, _ = container.get("/", timeout=1)
            except OSError:
                break
            if ready == 503:
                draining = True
                assert served == 200, "a draining pod still answers"
                # The readiness probe (gRPC health) fails at once too; liveness still passes.
                assert not container.probe(run.readiness)
                assert container.probe(run.liveness)
                break
            time.sleep(0.05)
        _, err = stop.communicate(timeout=run.grace_seconds + 10)
    finally:
        if stop.poll() is None:
            stop.kill()
            stop.wait()
    stopped_after = time.monotonic() - sent
    assert stop.returncode == 0, err
    assert draining, container.logs()
    assert stopped_after < run.grace_seconds, stopped_after
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    lines = [json.loads(line) for line in container.logs().splitlines() if line.startswith("{")]
    events = ["start", "grpc", "ready", "draining", "stopped"]
    assert [e["event"] for e in lines] == events, lines
    assert lines[1]["listen"] == f"0.0.0.0:{run.grpc_port}", lines
    assert lines[3]["signal"] == "SIGTERM" and lines[4]["code"] == 0, lines
    print(f"ready after {ready_after:.2f} s, stopped {stopped_after:.2f} s after SIGTERM, "
          f"{time.monotonic() - started:.1f} s in all")  # fmt: skip


@pytest.mark.parametrize("prefix", ["", "K8_"])
def test_seed_text_from_either_env_name(podman: Podman, image: str, prefix: str) -> None:
    """The image's own CMD, with the seed's K8_* names or the downward-API names."""
    env = {
        f"{prefix}POD_NAME": "seed-pod",
        f"{prefix}NODE_NAME": "seed-node",
        f"{prefix}POD_NAMESPACE": "seed-ns",
        f"{prefix}POD_IP": "192.0.2.7",
        # No zone lookup: this machine may be a cloud instance.
        "PODTALLY_IMDS_ENDPOINT": "off",
    }
    flags = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
    container = podman.start(image, ["--read-only", *flags])
    container.wait_ready()
    status, body = container.get("/")
    assert status == 200
    assert body == (
        b"Pod: seed-pod\nNode: seed-node\nNamespace: seed-ns\nIP: 192.0.2.7\nZone: unknown\n"
        b"Version: unknown\n"
    )


def test_the_image_serves_grpc_health_by_default(podman: Podman, image: str) -> None:
    """The image's own CMD starts gRPC on 9090 beside HTTP: the grpc extra is installed."""
    container = podman.start(image, ["--read-only", "--env", "PODTALLY_IMDS_ENDPOINT=off"],
                             grpc_port=9090)  # fmt: skip
    container.wait_ready()
    assert container.grpc_health() == "SERVING", container.logs()
    # And `--grpc-port 0` turns it off: nothing answers on 9090 in the container.
    off = podman.start(image, ["--read-only", "--env", "PODTALLY_IMDS_ENDPOINT=off"],
                       ["--host", "0.0.0.0", "--port", "8080", "--grpc-port", "0"],
                       grpc_port=9090)  # fmt: skip
    off.wait_ready()
    assert off.grpc_health(timeout=2) == "UNAVAILABLE"


def test_image_healthcheck_reports_healthy(podman: Podman, image: str) -> None:
    # The image's own HEALTHCHECK (kept by the docker format); the test runs it (no timers here).
    config = json.loads(podman.run("image", "inspect", "--format", "{{json .Config.Healthcheck}}",
                                   image))  # fmt: skip
    assert config and "/readyz" in " ".join(config["Test"]), config
    container = podman.start(image, ["--read-only", "--health-interval", "disable"])
    container.wait_ready()
    check = podman.completed("healthcheck", "run", container.name, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert container.inspect("{{.State.Health.Status}}") == "healthy"
    # And when the service hangs (stopped by SIGSTOP), the same check says so within its timeout.
    podman.run("kill", "--signal", "STOP", container.name)
    assert podman.completed("healthcheck", "run", container.name, timeout=30).returncode != 0


def test_image_config_and_labels(podman: Podman, image: str) -> None:
    user = podman.run("image", "inspect", "--format", "{{.User}}", image).strip()
    assert user == f"{UID}:{UID}"
    labels = labels_of(podman, image)
    assert labels["org.opencontainers.image.title"] == "podtally"
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert labels["org.opencontainers.image.description"]
    entry = podman.run("image", "inspect", "--format", "{{json .Config.Entrypoint}}", image)
    assert json.loads(entry) == ["podtally", "serve"]


def test_no_pip_left_and_the_installed_set_is_consistent(podman: Podman, image: str) -> None:
    """No pip or setuptools in the runtime; what `pip check` checked at build time still holds."""
    probe = (
        "import importlib.metadata as m, importlib.util as u, json, shutil; print(json.dumps({"
        "'specs': [n for n in ('pip', 'setuptools', '_distutils_hack') if u.find_spec(n)],"
        "'pip_on_path': shutil.which('pip') or shutil.which('pip3'),"
        "'dists': {d.metadata['Name']: [d.version, d.requires or []] for d in m.distributions()}"
        "}))"
    )
    out = podman.run("run", "--rm", "--read-only", "--entrypoint", "python", image, "-c", probe)
    found = json.loads(out)
    assert found["specs"] == [], found["specs"]
    assert found["pip_on_path"] is None, found["pip_on_path"]
    dists = {name.lower().replace("_", "-"): info for name, info in found["dists"].items()}
    assert "podtally" in dists and "pip" not in dists and "setuptools" not in dists
    # pip check, replayed: every requirement of every installed distribution is satisfied
    # (markers evaluated for the image: CPython 3.11 on Linux, no extras).
    env = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux",
           "extra": ""}  # fmt: skip
    for name, (_version, requires) in dists.items():
        for text in requires:
            req = Requirement(text)
            if req.marker and not req.marker.evaluate(env):
                continue
            key = req.name.lower().replace("_", "-")
            assert key in dists, f"{name} needs {req}, which is not installed"
            assert req.specifier.contains(Version(dists[key][0]), prereleases=True), (name, req)
