"""How a replica is launched: as ``podtally serve`` in a process of this interpreter, or as a
container of the image (``podtally up --image``), its podman client in the foreground.

Either way the stack tracks one process per replica (the server, or its podman client, which
passes SIGTERM on to the container and removes it once it exited), so the pid-based lifecycle of
:mod:`podtally.local.controller` holds for both. A container can outlive its client (a SIGKILLed
client leaves it running under conmon): :meth:`Launcher.discard` and
:meth:`Launcher.discard_all` remove what is left by name or by the stack's label.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from podtally.contract import ENV, FIELDS
from podtally.errors import PodtallyError
from podtally.local import container as ctr
from podtally.local.models import SERVER_SLOTS, StackConfig
from podtally.local.placement import LOOPBACK, replica_address
from podtally.local.state import ReplicaRecord
from podtally.net import bind_error, free_port

# The Deployment's securityContext and /tmp emptyDir (podtally.k8s.render), as podman flags.
CONTAINER_USER = "10001:10001"
CONTAINER_TMP = "/tmp:rw,mode=1777,size=16m"  # noqa: S108 - a container-private tmpfs


@dataclass(frozen=True)
class ReplicaSpec:
    """What one replica is: its pod-like identity and where it listens."""

    pod: str
    node: str
    zone: str
    namespace: str
    version: str
    address: str
    port: int
    grpc_port: int
    drain_seconds: float

    def serve_args(self) -> list[str]:
        """``podtally serve``'s arguments (the gRPC port: replicas share this machine)."""
        return [
            "--host", self.address,
            "--port", str(self.port),
            "--drain-seconds", f"{self.drain_seconds:g}",
            "--grpc-port", str(self.grpc_port),
        ]  # fmt: skip

    def downward_env(self) -> dict[str, str]:
        """The downward API's variables (the contract's names), as a pod's would read."""
        values = (self.pod, self.node, self.namespace, self.address, self.zone, self.version)
        env = {ENV[name][0]: value for name, value in zip(FIELDS, values, strict=True)}
        return {**env, "PYTHONUNBUFFERED": "1"}


def pick_endpoint(
    replicas: Iterable[ReplicaRecord], multi_address: bool, http_port: int
) -> tuple[str, int]:
    """Where a new replica listens: the HTTP port on the first free loopback address (each
    replica its own, as a pod has its IP), or a free port on 127.0.0.1 (:func:`free_port`) where the
    loopback has one address only."""
    taken = {(r.address, r.port) for r in replicas}
    if multi_address:
        for k in range(1, SERVER_SLOTS + 1):
            address = replica_address(k)
            if (address, http_port) not in taken and bind_error(address, http_port) is None:
                return address, http_port
        raise PodtallyError("no free loopback address left for a new replica")
    return LOOPBACK, free_port(LOOPBACK, {port for address, port in taken if address == LOOPBACK})


def pick_grpc_port(replicas: Iterable[ReplicaRecord], address: str, http_port: int) -> int:
    """A port for the replica's gRPC server on its address (:func:`free_port`), apart from
    every port the stack records (its own HTTP port included)."""
    taken = {(address, http_port)}
    for r in replicas:
        taken |= {(r.address, r.port), (r.address, r.grpc_port)}
    return free_port(address, {port for host, port in taken if host == address})


class Launcher:
    """Replicas as processes of this interpreter: ``python -m podtally serve``."""

    def check(self) -> None:
        """Fail before anything starts if replicas cannot be launched at all."""

    def command(self, spec: ReplicaSpec) -> list[str]:
        return [sys.executable, "-m", "podtally", "serve", *spec.serve_args()]

    def env(self, spec: ReplicaSpec) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("K8_")}
        env.update(spec.downward_env())
        return env

    def needles(self, record: ReplicaRecord) -> tuple[str, ...]:
        """What the command line of ``record``'s process has (see processes.pid_is)."""
        return ("serve", f"--host {record.address}", f"--port {record.port}")

    def container(self, record: ReplicaRecord) -> str:
        """The container that runs ``record`` ("" when replicas are processes)."""
        return ""

    def running_containers(self, records: list[ReplicaRecord]) -> dict[str, str]:
        """The containers of ``records`` that run now, by pod."""
        return {}

    def discard(self, records: list[ReplicaRecord], grace: float) -> None:
        """Remove what may outlive the processes of ``records`` (nothing, for processes)."""

    def discard_all(self, grace: float) -> None:
        """Remove whatever of the stack may outlive its processes."""


class ContainerLauncher(Launcher):
    """Replicas as containers of ``image`` on the host's network, each on its own address."""

    def __init__(self, image: str, name: str, run_dir: Path) -> None:
        self.image = image
        self.name = name
        self.run_dir = run_dir
        self._checked = False

    def check(self) -> None:
        if not self._checked:
            ctr.find_podman()
            ctr.check_image(self.image)
            self._checked = True

    def container(self, record: ReplicaRecord) -> str:
        return ctr.container_name(self.run_dir, record.pod)

    def command(self, spec: ReplicaSpec) -> list[str]:
        env = [f"--env={key}={value}" for key, value in spec.downward_env().items()]
        return [
            ctr.find_podman(), "run", "--rm",
            "--name", ctr.container_name(self.run_dir, spec.pod),
            *ctr.labels(self.name, self.run_dir, spec.pod),
            # The replica listens on its loopback address as a process would.
            "--network=host", "--pull=never",
            # HAProxy checks the replicas; podman's health check would need systemd timers.
            "--no-healthcheck",
            # As the Deployment runs it: non-root, read-only root, no capabilities, /tmp apart.
            "--user", CONTAINER_USER, "--read-only", "--read-only-tmpfs=false",
            "--tmpfs", CONTAINER_TMP, "--cap-drop=ALL", "--security-opt=no-new-privileges",
            *env, self.image, *spec.serve_args(),
        ]  # fmt: skip

    def env(self, spec: ReplicaSpec) -> dict[str, str]:
        return ctr.podman_env()  # the client's; the container's own is in the command

    def needles(self, record: ReplicaRecord) -> tuple[str, ...]:
        name = ctr.container_name(self.run_dir, record.pod)
        return ("run", f"--name {name}", f"--host {record.address}", f"--port {record.port}")

    def running_containers(self, records: list[ReplicaRecord]) -> dict[str, str]:
        running = {n for n, s in ctr.containers_of(self.run_dir).items() if s == "running"}
        return {r.pod: name for r in records if (name := self.container(r)) in running}

    def discard(self, records: list[ReplicaRecord], grace: float) -> None:
        ctr.remove([self.container(r) for r in records], grace)

    def discard_all(self, grace: float) -> None:
        ctr.remove_stack(self.run_dir, grace)


def launcher_for(config: StackConfig, run_dir: Path) -> Launcher:
    """The launcher of a stack configured as ``config`` that runs from ``run_dir``."""
    if config.image:
        return ContainerLauncher(config.image, config.name, run_dir)
    return Launcher()
