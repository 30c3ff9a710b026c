"""What a local stack is, as plain data: its configuration (:class:`StackConfig`, validated), its
tracks of replicas (:class:`Track`), and the views ``up`` and ``status`` return (:class:`Stack`,
:class:`Replica`). No processes, no HAProxy, no files beyond naming the run directory.

Defaults shared with Kubernetes come from :class:`podtally.spec.AppSpec` (name, namespace,
replicas, TLS). The drain differs on purpose: a replica behind the local HAProxy is out of
rotation within a second, so the local stack drains for :data:`LOCAL_DRAIN_SECONDS`; in a
cluster the load balancer's deregistration takes longer (``DEFAULT_DRAIN_SECONDS`` in spec).
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podtally.errors import UsageError
from podtally.local import rundir
from podtally.local.placement import LOOPBACK
from podtally.spec import AppSpec, check_dns1123_label, check_hostname

DEFAULT_NAME = AppSpec.name
MAX_REPLICAS = 64
MAX_DRAIN_SECONDS = 300.0
MAX_READY_TIMEOUT = 3600.0
LOCAL_DRAIN_SECONDS = 2.0
# HAProxy server slots: during a rolling restart, old replicas still draining and their
# replacements hold a slot each. Empty slots sit in maintenance and cost nothing.
SERVER_SLOTS = 2 * MAX_REPLICAS
STABLE = "stable"
CANARY = "canary"
# The command line's ports for the ALB path's gRPC and the Service path (see StackConfig).
GRPC_PORT = 9443
SERVICE_PORT = 8081
SERVICE_GRPC_PORT = 9081
# An image reference as podman takes it: [registry/]repository[:tag][@digest].
_IMAGE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}")

# One setting that differs between the running stack and the one asked for:
# (setting, running value, asked value), settings named as StackConfig's fields.
Difference = tuple[str, Any, Any]


class AlreadyUpError(UsageError):
    """``up`` found the stack already running.

    ``stack`` describes it; ``differences`` lists what the configuration asked for differs in
    (empty when the same stack was asked for again).
    """

    def __init__(
        self, what: str, stack: Stack, differences: list[Difference] | None = None
    ) -> None:
        super().__init__(what)
        self.stack = stack
        self.differences = list(differences or [])

    def __str__(self) -> str:
        if not self.differences:
            return self.what
        listed = ", ".join(
            f"{key}={mine!r} (asked {theirs!r})" for key, mine, theirs in self.differences
        )
        return f"{self.what}; it runs with {listed}"


@dataclass(frozen=True)
class Track:
    """A set of replicas that share a version and a share of the traffic (in Kubernetes, one
    Deployment behind a shared Service). The stack runs ``stable``, and ``canary`` when the
    configuration asks for canary replicas."""

    name: str
    replicas: int
    version: str
    weight: float = 100.0  # percent of the requests HAProxy sends to this track


def _usage(what: str, setting: str, value: object) -> UsageError:
    return UsageError(what, setting=setting, value=value)


@dataclass(frozen=True)
class StackConfig:
    """What to run locally. Validated on creation: bad values raise UsageError (exit 2) naming
    the field (``setting``) and its value."""

    name: str = DEFAULT_NAME
    replicas: int = AppSpec.replicas
    nodes: int | None = None  # default: one node per replica
    namespace: str = AppSpec.namespace
    http_port: int = 8080
    https_port: int = 8443
    stats_port: int = 8404
    # The ALB path's gRPC port (TLS like HTTPS; h2c when TLS is off) and the Service path's
    # ports (per connection, as kube-proxy): None leaves the listener out. The command line's
    # defaults are GRPC_PORT, SERVICE_PORT and SERVICE_GRPC_PORT; the library's are None, so
    # that stacks side by side need only the ports they name.
    grpc_port: int | None = None
    service_port: int | None = None
    service_grpc_port: int | None = None
    tls: bool = AppSpec.tls
    host: str | None = None  # an extra name on the certificate
    run_dir: Path | None = None  # default: $PODTALLY_STATE_DIR/<name> or ~/.local/state/...
    drain_seconds: float = LOCAL_DRAIN_SECONDS  # each replica's drain after SIGTERM
    ready_timeout: float = 30.0  # how long a replica or HAProxy may take to become ready
    canary_replicas: int = 0  # replicas of the canary track (version "canary"), besides these
    canary_weight: float | None = None  # percent of requests to the canary track, 0 < W < 100
    image: str | None = None  # run each replica as a container of this image (podman)

    def __post_init__(self) -> None:
        for setting, what in (("name", "stack name"), ("namespace", "namespace")):
            value = getattr(self, setting)
            try:
                check_dns1123_label(value, what)
            except UsageError as exc:
                raise _usage(exc.what, setting, value) from None
        if len(self.name) > 46:
            raise _usage("the stack name is too long (at most 46 characters)", "name", self.name)
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise _usage(
                f"replicas must be between 1 and {MAX_REPLICAS}", "replicas", self.replicas
            )
        if self.nodes is not None and not 1 <= self.nodes <= MAX_REPLICAS:
            raise _usage(f"nodes must be between 1 and {MAX_REPLICAS}", "nodes", self.nodes)
        # In the order a user gives them; of two equal ports, the later one is blamed.
        ports = {"http_port": self.http_port}
        if self.tls:
            ports["https_port"] = self.https_port
        ports["stats_port"] = self.stats_port
        for setting in ("grpc_port", "service_port", "service_grpc_port"):
            port = getattr(self, setting)
            if port is not None:
                if isinstance(port, bool) or not isinstance(port, int):
                    raise _usage(f"the {_port_word(setting)} must be a number", setting, port)
                ports[setting] = port
        for setting, port in ports.items():
            if not 1 <= port <= 65535:
                raise _usage(
                    f"the {_port_word(setting)} must be between 1 and 65535", setting, port
                )
        seen: dict[int, str] = {}
        for setting, port in ports.items():
            if port in seen:
                listed = ", ".join(f"{_port_word(s)} {p}" for s, p in ports.items())
                raise _usage(f"the stack's ports must differ ({listed})", setting, port)
            seen[port] = setting
        if self.host is not None:
            try:
                object.__setattr__(self, "host", check_hostname(self.host, "host"))
            except UsageError as exc:
                raise _usage(exc.what, "host", self.host) from None
        # NaN fails every comparison and infinity passes "> 0": check finiteness first.
        if not (math.isfinite(self.drain_seconds) and 0 <= self.drain_seconds <= MAX_DRAIN_SECONDS):
            raise _usage(
                f"drain seconds must be between 0 and {MAX_DRAIN_SECONDS:g}",
                "drain_seconds",
                self.drain_seconds,
            )
        if not (math.isfinite(self.ready_timeout) and 0 < self.ready_timeout <= MAX_READY_TIMEOUT):
            raise _usage(
                f"the ready timeout must be more than 0 and at most {MAX_READY_TIMEOUT:g} seconds",
                "ready_timeout",
                self.ready_timeout,
            )
        if self.run_dir is not None:
            object.__setattr__(self, "run_dir", Path(self.run_dir))
        if self.image is not None and not (
            isinstance(self.image, str) and _IMAGE_REFERENCE.fullmatch(self.image)
        ):
            raise _usage(
                "the image must be a reference such as localhost/podtally:0.1.0",
                "image",
                self.image,
            )
        self._check_canary()

    def _check_canary(self) -> None:
        """Both canary settings or neither; the weight strictly between 0 and 100 percent (0
        is no canary, 100 no stable track: neither is a split), and one HAProxy can carry."""
        count, weight = self.canary_replicas, self.canary_weight
        if not 0 <= count < MAX_REPLICAS:
            raise _usage(
                f"canary replicas must be between 0 and {MAX_REPLICAS - 1}",
                "canary_replicas",
                count,
            )
        if self.replicas + count > MAX_REPLICAS:
            raise _usage(
                f"{self.replicas} stable and {count} canary replicas are more than "
                f"{MAX_REPLICAS} in all",
                "replicas",
                self.replicas,
            )
        if weight is None:
            if count:
                raise _usage(
                    "a canary track needs its weight, the percent of requests it gets",
                    "canary_weight",
                    weight,
                )
            return
        if isinstance(weight, bool) or not (math.isfinite(weight) and 0 < weight < 100):
            raise _usage(
                "the canary weight must be a percentage more than 0 and less than 100",
                "canary_weight",
                weight,
            )
        if not count:
            raise _usage(
                "a canary weight needs at least one canary replica", "canary_replicas", count
            )
        from podtally.local.haproxy import MAX_SHARE_ERROR, server_weights

        tracks = self.tracks()
        _, error = server_weights([(t.weight, t.replicas) for t in tracks])
        if error > MAX_SHARE_ERROR:
            per_server = [t.weight / t.replicas for t in tracks]
            apart = max(per_server) / min(per_server)
            raise _usage(
                f"a {weight:g}% canary on {count} replica(s) beside {self.replicas} stable "
                f"ones needs server weights {apart:,.0f} times apart; HAProxy's (1 to 256) "
                f"cannot split that within {MAX_SHARE_ERROR:.0%}",
                "canary_weight",
                weight,
            )

    @property
    def total_replicas(self) -> int:
        """Every replica of every track."""
        return self.replicas + self.canary_replicas

    @property
    def node_count(self) -> int:
        return self.nodes if self.nodes is not None else self.total_replicas

    def tracks(self) -> list[Track]:
        """The tracks of replicas this configuration runs: ``stable`` (``replicas``), then
        ``canary`` when there are canary replicas, each with its share of the requests."""
        if not self.canary_replicas or self.canary_weight is None:
            return [Track(STABLE, self.replicas, version=STABLE, weight=100.0)]
        canary = float(self.canary_weight)
        return [
            Track(STABLE, self.replicas, version=STABLE, weight=100.0 - canary),
            Track(CANARY, self.canary_replicas, version=CANARY, weight=canary),
        ]

    def resolved_run_dir(self) -> Path:
        return rundir.resolve_run_dir(self.name, self.run_dir)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["run_dir"] = str(self.resolved_run_dir())
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("run_dir") is not None:
            values["run_dir"] = Path(values["run_dir"])
        return cls(**values)

    def differences(self, other: StackConfig) -> list[Difference]:
        """What ``other`` asks for that this configuration does not have (timeouts aside):
        ``(setting, this value, other's value)`` for each field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        ignored = {"ready_timeout"}
        if not (self.tls or other.tls):
            ignored.add("https_port")  # no HTTPS listener either way
        return [
            (key, mine[key], theirs[key])
            for key in mine
            if key not in ignored and mine[key] != theirs[key]
        ]


def _port_word(setting: str) -> str:
    return {
        "http_port": "HTTP port",
        "https_port": "HTTPS port",
        "grpc_port": "gRPC port",
        "service_port": "Service port",
        "service_grpc_port": "Service gRPC port",
    }.get(setting, "stats port")


def command_hint(command: str, name: str, run_dir: Path | None = None) -> str:
    """``'podtally COMMAND'`` as a user would type it for this stack: with ``--name`` unless it
    is the default stack, and with ``PODTALLY_STATE_DIR=...`` in front when the stack's run
    directory is not where the environment points.

    This is the one place in the library that spells a command-line flag: a hint is a command
    to type, and the messages that carry it would be useless without it.
    """
    words = f"podtally {command}"
    if name != DEFAULT_NAME:
        words += f" --name {name}"
    if run_dir is not None:
        where = Path(run_dir).absolute()
        if where.name == name and where != rundir.resolve_run_dir(name, None):
            words = f"{rundir.STATE_ENV}={shlex.quote(str(where.parent))} {words}"
    return f"'{words}'" if "'" not in words else f'"{words}"'


@dataclass(frozen=True)
class Replica:
    """One replica as the stack and HAProxy see it."""

    pod: str
    node: str
    zone: str
    namespace: str
    address: str
    port: int
    pid: int
    health: str  # HAProxy's view: UP, DOWN, DRAIN, MAINT (or "unknown" if HAProxy is silent)
    running: bool = True  # the process is alive
    server: str = ""  # HAProxy's server name for it (pods/<server>)
    template_hash: str = ""
    log_path: str = ""
    track: str = STABLE
    weight: int = 0  # HAProxy's weight for it (0 when HAProxy is silent or it is out)
    grpc_port: int = 0  # its gRPC port on the same address (0: none)
    container: str = ""  # the container that runs it, while one runs (--image stacks)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrackStatus:
    """One track as it runs: what was configured and what HAProxy's weights give it."""

    name: str
    version: str
    replicas: int  # configured
    up: int  # running and UP in HAProxy
    weight: float  # configured percent of the requests
    share: float  # percent of the requests HAProxy's current weights send it (UP replicas)
    server_weight: int  # the weight of each of its servers in HAProxy (0: none UP)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Stack:
    """A running stack: its configuration, where to reach it, and its replicas."""

    config: StackConfig
    replicas: list[Replica] = field(default_factory=list)
    run_dir: Path = Path()
    ca_path: Path | None = None
    haproxy_pid: int = 0

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.config.http_port}/"

    @property
    def https_url(self) -> str | None:
        return f"https://{LOOPBACK}:{self.config.https_port}/" if self.config.tls else None

    @property
    def url(self) -> str:
        """Where clients should go: HTTPS, or plain HTTP when TLS is off."""
        return self.https_url or self.http_url

    @property
    def grpc_url(self) -> str | None:
        """The ALB path's gRPC port: per call, over TLS (or h2c when TLS is off)."""
        if self.config.grpc_port is None:
            return None
        scheme = "grpcs" if self.config.tls else "grpc"
        return f"{scheme}://{LOOPBACK}:{self.config.grpc_port}"

    @property
    def service_url(self) -> str | None:
        """The Service path (kube-proxy semantics, per connection): plain HTTP."""
        port = self.config.service_port
        return None if port is None else f"http://{LOOPBACK}:{port}/"

    @property
    def service_grpc_url(self) -> str | None:
        """The Service path for gRPC (per connection: a channel stays on one replica)."""
        port = self.config.service_grpc_port
        return None if port is None else f"grpc://{LOOPBACK}:{port}"

    @property
    def stats_url(self) -> str:
        return f"http://{LOOPBACK}:{self.config.stats_port}/stats"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.config.stats_port}/metrics"

    def tracks(self) -> list[TrackStatus]:
        """Each configured track, with the share of requests HAProxy's weights give it now."""
        serving = [r for r in self.replicas if r.running and r.health == "UP"]
        total = sum(r.weight for r in serving)
        found = []
        for track in self.config.tracks():
            mine = [r for r in serving if r.track == track.name]
            weight_sum = sum(r.weight for r in mine)
            found.append(
                TrackStatus(
                    name=track.name,
                    version=track.version,
                    replicas=track.replicas,
                    up=len(mine),
                    weight=track.weight,
                    share=100.0 * weight_sum / total if total else 0.0,
                    server_weight=max((r.weight for r in mine), default=0),
                )
            )
        return found

    @property
    def ready(self) -> bool:
        """Every replica runs and HAProxy sees it UP."""
        return bool(self.replicas) and all(r.running and r.health == "UP" for r in self.replicas)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "url": self.url,
            "http_url": self.http_url,
            "https_url": self.https_url,
            "grpc_url": self.grpc_url,
            "service_url": self.service_url,
            "service_grpc_url": self.service_grpc_url,
            "stats_url": self.stats_url,
            "metrics_url": self.metrics_url,
            "ca_path": str(self.ca_path) if self.ca_path else None,
            "run_dir": str(self.run_dir),
            "haproxy_pid": self.haproxy_pid,
            "ready": self.ready,
            "config": self.config.to_dict(),
            "tracks": [t.to_dict() for t in self.tracks()],
            "replicas": [r.to_dict() for r in self.replicas],
        }
