"""podman through scripts/image-podman.sh, containers on 127.0.0.1, and the Deployment as flags."""

from __future__ import annotations

import contextlib
import json
import random
import re
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from tests.support import REPO, free_port

PODMAN = REPO / "scripts" / "image-podman.sh"
# Every container a test starts carries this label and a name with this prefix.
LABEL = "podtally.test=image"


def podman_cmd(*args: str) -> list[str]:
    return ["bash", str(PODMAN), *args]


@dataclass
class Container:
    podman: Podman
    name: str
    port: int
    grpc_port: int | None = None  # the published gRPC port, where one is

    def grpc_health(self, timeout: float = 3) -> str:
        """grpc.health.v1.Health/Check for the whole server, as the kubelet's gRPC probe calls
        it: SERVING, NOT_SERVING, or UNAVAILABLE when the call itself fails."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        assert self.grpc_port is not None, "started without a published gRPC port"
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=timeout
                )
            except grpc.RpcError:
                return "UNAVAILABLE"
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return name

    def probe(self, probe: Probe) -> bool:
        """One probe as the kubelet runs it: HTTP 200-399, or gRPC health SERVING."""
        if probe.grpc:
            return self.grpc_health(timeout=probe.timeout) == "SERVING"
        try:
            return 200 <= self.get(probe.path, timeout=probe.timeout)[0] < 400
        except OSError:
            return False

    def get(
        self, path: str, timeout: float = 3, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())

    def inspect(self, template: str) -> str:
        return self.podman.run("inspect", "--format", template, self.name).strip()

    def logs(self) -> str:
        """What the container wrote, stdout then stderr (the service logs to stderr)."""
        out = self.podman.completed("logs", self.name)
        return out.stdout + out.stderr

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.podman.completed("exec", self.name, *argv)

    def wait_ready(self, seconds: float = 30) -> float:
        """Seconds until /readyz answered 200; fails the test (with the logs) otherwise."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            with contextlib.suppress(OSError):
                if self.get("/readyz", timeout=1)[0] == 200:
                    return time.monotonic() - started
            if self.inspect("{{.State.Running}}") != "true":
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name} never became ready:\n{self.logs()}")


@dataclass
class Podman:
    started: list[str] = field(default_factory=list)

    def completed(
        self, *args: str, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            podman_cmd(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        out = self.completed(*args, timeout=timeout)
        if check:
            assert out.returncode == 0, f"podman {' '.join(args)}: {out.stderr[-2000:]}"
        return out.stdout

    def all_containers(self) -> set[str]:
        """Every container podman knows, build containers (--external) included."""
        out = self.run("ps", "--all", "--external", "--format", "{{.ID}} {{.Names}}")
        return set(out.splitlines())

    def start(
        self,
        image: str,
        flags: list[str] | None = None,
        args: list[str] | None = None,
        port: int = 8080,
        grpc_port: int | None = None,
    ) -> Container:
        """`podman run -d` with the container's port (and gRPC port) published on 127.0.0.1."""
        name = f"podtally-test-{random.randrange(16**8):08x}"
        host_port = free_port()
        publish = ["--publish", f"127.0.0.1:{host_port}:{port}"]
        grpc_host_port = None
        if grpc_port is not None:
            grpc_host_port = free_port()
            publish += ["--publish", f"127.0.0.1:{grpc_host_port}:{grpc_port}"]
        self.started.append(name)
        self.run(
            "run", "--detach", "--name", name, "--label", LABEL, *publish,
            *(flags or []), image, *(args or []),
        )  # fmt: skip
        return Container(self, name, host_port, grpc_host_port)

    def remove_started(self) -> None:
        for name in self.started:
            self.completed("rm", "--force", "--time", "0", "--ignore", name)
        self.started.clear()


# --- the Deployment, as `podman run` flags -------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    """The downward API's view of one pod: what fieldRef env vars would read."""

    name: str
    namespace: str
    node: str
    ip: str
    labels: dict[str, str]

    def field(self, path: str) -> str:
        simple = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "spec.nodeName": self.node,
            "status.podIP": self.ip,
        }
        if path in simple:
            return simple[path]
        label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
        if label:
            return self.labels[label.group(1)]
        raise AssertionError(f"the test cannot play the downward API's fieldPath {path}")


@dataclass(frozen=True)
class Probe:
    path: str  # "" for a gRPC probe
    port: int
    period: float
    timeout: float
    failures: int
    grpc: bool = False


@dataclass(frozen=True)
class AsRun:
    """One container of the Deployment as podman runs it."""

    flags: list[str]
    args: list[str]
    port: int
    grpc_port: int | None
    grace_seconds: int
    memory_limit: int | None
    env: dict[str, str]
    liveness: Probe
    readiness: Probe
    startup: Probe


def _seconds(value: Any, default: float) -> float:
    return float(value) if value is not None else default


def _probe(spec: dict[str, Any], ports: dict[str, int]) -> Probe:
    known = {"httpGet", "grpc", "periodSeconds", "timeoutSeconds", "failureThreshold",
             "successThreshold"}  # fmt: skip
    assert set(spec) <= known, f"probe settings the test cannot run: {set(spec) - known}"
    assert spec.get("successThreshold", 1) == 1, spec
    if "grpc" in spec:
        # The kubelet calls Health/Check with the probe's service name ("" when absent).
        assert set(spec["grpc"]) <= {"port", "service"}, spec["grpc"]
        assert spec["grpc"].get("service", "") == "", spec["grpc"]
        assert int(spec["grpc"]["port"]) in ports.values(), "a gRPC port the container declares"
        return Probe(
            path="",
            port=int(spec["grpc"]["port"]),
            period=_seconds(spec.get("periodSeconds"), 10),
            timeout=_seconds(spec.get("timeoutSeconds"), 1),
            failures=int(spec.get("failureThreshold", 3)),
            grpc=True,
        )
    get = spec["httpGet"]
    assert set(get) <= {"path", "port", "scheme"}, get
    assert get.get("scheme", "HTTP") == "HTTP", get
    assert spec.get("successThreshold", 1) == 1, spec
    port = get["port"]
    return Probe(
        path=get["path"],
        port=ports[port] if isinstance(port, str) else int(port),
        period=_seconds(spec.get("periodSeconds"), 10),
        timeout=_seconds(spec.get("timeoutSeconds"), 1),
        failures=int(spec.get("failureThreshold", 3)),
    )


# The keys of the pod and container specs this translation knows; a new key in the manifest fails
# the test until it is translated here (or said to need no translation), so they cannot drift.
POD_KEYS = {
    "containers", "securityContext", "terminationGracePeriodSeconds", "volumes",
    "automountServiceAccountToken", "enableServiceLinks", "serviceAccountName",
    "topologySpreadConstraints",  # scheduling: nothing to run
}  # fmt: skip
CONTAINER_KEYS = {
    "name", "image", "imagePullPolicy", "args", "env", "ports", "securityContext",
    "livenessProbe", "readinessProbe", "startupProbe", "resources", "volumeMounts",
}  # fmt: skip
SECURITY_KEYS = {
    "runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem", "capabilities",
    "allowPrivilegeEscalation", "privileged", "seccompProfile", "fsGroup",
}  # fmt: skip


def deployment_as_run(deployment: dict[str, Any], pod: Pod) -> AsRun:
    """The Deployment's only container as `podman run` flags, the way the kubelet would run it."""
    spec = deployment["spec"]["template"]["spec"]
    assert set(spec) <= POD_KEYS, f"pod settings the test cannot run: {set(spec) - POD_KEYS}"
    (container,) = spec["containers"]
    extra = set(container) - CONTAINER_KEYS
    assert not extra, f"container settings the test cannot run: {extra}"
    assert spec.get("automountServiceAccountToken") is False, "a token would need mounting"
    assert spec.get("enableServiceLinks") is False, "service links would need env vars"
    assert "command" not in container, "the image's ENTRYPOINT is what runs"

    # The container's security context wins over the pod's, key by key.
    security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    assert set(security) <= SECURITY_KEYS, set(security) - SECURITY_KEYS
    flags: list[str] = []
    if "runAsUser" in security:
        flags += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', 0)}"]
    if security.get("readOnlyRootFilesystem"):
        # Kubernetes adds no tmpfs of its own: only the volumes below are writable.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    drop = security.get("capabilities", {}).get("drop", [])
    assert security.get("capabilities", {}).keys() <= {"drop"}, security["capabilities"]
    flags += [f"--cap-drop={cap}" for cap in drop]
    if security.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    assert security.get("privileged", False) is False
    # RuntimeDefault is podman's default seccomp profile: nothing to add.
    assert security.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}
    if "fsGroup" in security:
        flags += ["--group-add", str(security["fsGroup"])]

    # emptyDir volumes as tmpfs, writable by the pod's fsGroup, within their size limit.
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        assert set(volume) == {"name", "emptyDir"}, f"only emptyDir volumes are run: {volume}"
        size = volume["emptyDir"].get("sizeLimit", "")
        size_opt = f",size={size.removesuffix('i').lower()}" if size else ""
        flags += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777{size_opt}"]

    limits = container.get("resources", {}).get("limits", {})
    assert set(limits) <= {"cpu", "memory"}, limits
    memory_limit = None
    if "memory" in limits:
        quantity = re.fullmatch(r"(\d+)(Mi|Gi)", limits["memory"])
        assert quantity, f"a memory quantity the test cannot read: {limits['memory']}"
        memory_limit = int(quantity[1]) * {"Mi": 2**20, "Gi": 2**30}[quantity[2]]
        flags += ["--memory", f"{memory_limit}b"]
    if "cpu" in limits:
        cpu = str(limits["cpu"])
        flags += ["--cpus", str(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu))]

    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            env[var["name"]] = pod.field(var["valueFrom"]["fieldRef"]["fieldPath"])
    for name, value in env.items():
        flags += ["--env", f"{name}={value}"]

    ports = {p["name"]: int(p["containerPort"]) for p in container.get("ports", [])}
    assert set(ports) <= {"http", "grpc"}, ports
    port = ports["http"]
    liveness = _probe(container["livenessProbe"], ports)
    assert not liveness.grpc, "podman's health check below runs an HTTP liveness probe"
    # The kubelet probes liveness; here podman's health check runs the same GET, inside the
    # container (the test triggers it: no systemd timers here).
    flags += [
        "--health-cmd",
        "python -c \"import urllib.request; urllib.request.urlopen("
        f"'http://127.0.0.1:{liveness.port}{liveness.path}', timeout={liveness.timeout:g})\"",
        "--health-interval", "disable",
        "--health-timeout", f"{liveness.timeout:g}s",
        "--health-retries", str(liveness.failures),
    ]  # fmt: skip
    return AsRun(
        flags=flags,
        args=[str(a) for a in container.get("args", [])],
        port=port,
        grpc_port=ports.get("grpc"),
        grace_seconds=int(spec.get("terminationGracePeriodSeconds", 30)),
        memory_limit=memory_limit,
        env=env,
        liveness=liveness,
        readiness=_probe(container["readinessProbe"], ports),
        startup=_probe(container["startupProbe"], ports),
    )


def manifests() -> list[dict[str, Any]]:
    """`podtally manifests` (the defaults: the generic profile), parsed."""
    import yaml

    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "podtally"), "manifests"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def labels_of(podman: Podman, image: str) -> dict[str, str]:
    out = podman.run("image", "inspect", "--format", "{{json .Labels}}", image)
    labels: dict[str, str] = json.loads(out)
    return labels
