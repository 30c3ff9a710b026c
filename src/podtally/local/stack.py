"""The local stack: replicas of ``podtally serve`` behind a real HAProxy, on one machine.

Life of a stack, as the functions here drive it:

* ``up``: check the ports and the haproxy binary before anything starts; generate the CA and the
  certificate; start each replica on its own loopback address with a pod-like identity; wait until
  every replica answers ``/readyz``; write and ``haproxy -c`` the configuration; start HAProxy;
  wait until it sees every replica UP and answers through its frontend. Any failure (or Ctrl-C)
  on the way stops whatever started and removes the run directory.
* ``restart``: like ``kubectl rollout restart`` with maxSurge 1, maxUnavailable 0: for each replica
  a new one (new template hash, new pod name) starts, turns ready and is UP in HAProxy before the
  old one is set to drain in HAProxy, sent SIGTERM, and killed if it outlives a bound. The old one
  drains while the next replacement starts.
* ``scale``: new replicas join the same way; removed ones leave the same way.
* ``down``: HAProxy soft-stops, the replicas get SIGTERM and drain, SIGKILL after a bound, and the
  run directory goes. Idempotent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import importlib.util
import json
import math
import os
import secrets
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podtally.errors import MissingDependencyError, NotRunningError, PodtallyError, UsageError
from podtally.local import haproxy as hap
from podtally.local import state as st
from podtally.net import bind_error
from podtally.spec import check_dns1123_label, check_hostname

Progress = Callable[[str], None]

DEFAULT_NAME = "podtally"
MAX_REPLICAS = 64
MAX_DRAIN_SECONDS = 300.0
MAX_READY_TIMEOUT = 3600.0
# HAProxy server slots: during a rolling restart, old replicas still draining and their
# replacements hold a slot each. Empty slots sit in maintenance and cost nothing.
SERVER_SLOTS = 2 * MAX_REPLICAS
ZONES = ("local-a", "local-b", "local-c")
LOOPBACK = "127.0.0.1"
# Replica k (1-based) listens on 127.0.0.(10+k) where the OS routes all of 127.0.0.0/8 (Linux).
_ADDRESS_BASE = 10
# The alphabet Kubernetes uses for generated names: no vowels, no look-alike characters.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_POLL = 0.05


class AlreadyUpError(UsageError):
    """``up`` found the stack already running; ``stack`` describes it."""

    def __init__(self, message: str, stack: Stack) -> None:
        super().__init__(message)
        self.stack = stack


@dataclass(frozen=True)
class StackConfig:
    """What to run locally. Validated on creation: bad values raise UsageError (exit 2)."""

    name: str = DEFAULT_NAME
    replicas: int = 3
    nodes: int | None = None  # default: one node per replica
    namespace: str = "podtally"
    http_port: int = 8080
    https_port: int = 8443
    stats_port: int = 8404
    tls: bool = True
    host: str | None = None  # an extra name on the certificate
    run_dir: Path | None = None  # default: $PODTALLY_STATE_DIR/<name> or ~/.local/state/...
    drain_seconds: float = 2.0  # each replica's drain after SIGTERM
    ready_timeout: float = 30.0  # how long a replica or HAProxy may take to become ready

    def __post_init__(self) -> None:
        check_dns1123_label(self.name, "stack name")
        if len(self.name) > 46:
            raise UsageError(f"stack name {self.name!r} is too long (at most 46 characters)")
        check_dns1123_label(self.namespace, "namespace")
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise UsageError(f"replicas must be between 1 and {MAX_REPLICAS}, got {self.replicas}")
        if self.nodes is not None and not 1 <= self.nodes <= MAX_REPLICAS:
            raise UsageError(f"nodes must be between 1 and {MAX_REPLICAS}, got {self.nodes}")
        ports = {"HTTP": self.http_port, "stats": self.stats_port}
        if self.tls:
            ports["HTTPS"] = self.https_port
        for what, port in ports.items():
            if not 1 <= port <= 65535:
                raise UsageError(f"{what} port must be between 1 and 65535, got {port}")
        if len(set(ports.values())) != len(ports):
            listed = ", ".join(f"{what} {port}" for what, port in ports.items())
            raise UsageError(f"the stack's ports must differ ({listed})")
        if self.host is not None:
            object.__setattr__(self, "host", check_hostname(self.host, "host"))
        # NaN fails every comparison and infinity passes "> 0": check finiteness first.
        if not (math.isfinite(self.drain_seconds) and 0 <= self.drain_seconds <= MAX_DRAIN_SECONDS):
            raise UsageError(
                f"drain seconds must be between 0 and {MAX_DRAIN_SECONDS:g}, "
                f"got {self.drain_seconds}"
            )
        if not (math.isfinite(self.ready_timeout) and 0 < self.ready_timeout <= MAX_READY_TIMEOUT):
            raise UsageError(
                f"ready timeout must be more than 0 and at most {MAX_READY_TIMEOUT:g} seconds, "
                f"got {self.ready_timeout}"
            )
        if self.run_dir is not None:
            object.__setattr__(self, "run_dir", Path(self.run_dir))

    @property
    def node_count(self) -> int:
        return self.nodes if self.nodes is not None else self.replicas

    def resolved_run_dir(self) -> Path:
        return st.resolve_run_dir(self.name, self.run_dir)

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

    def differences(self, other: StackConfig) -> list[str]:
        """What ``other`` asks for that this configuration does not have (timeouts aside), in
        the words of the command line: ``--replicas 2 (asked: --replicas 4)``."""
        mine, theirs = self.to_dict(), other.to_dict()
        ignored = {"ready_timeout"}
        if not (self.tls or other.tls):
            ignored.add("https_port")  # no HTTPS listener either way
        return [
            f"{_setting(key, mine[key])} (asked: {_setting(key, theirs[key])})"
            for key in mine
            if key not in ignored and mine[key] != theirs[key]
        ]


def _setting(key: str, value: Any) -> str:
    """One configuration value as the ``podtally up`` option that sets it."""
    if key == "tls":
        return "TLS" if value else "--no-tls"
    if key == "nodes" and value is None:
        return "one node per replica"
    if key == "host" and value is None:
        return "no --host"
    if key == "run_dir":
        return f"run directory {value}"
    if isinstance(value, float):
        value = f"{value:g}"
    return f"--{key.replace('_', '-')} {value}"


def command_hint(command: str, name: str, run_dir: Path | None = None) -> str:
    """``'podtally COMMAND'`` as a user would type it for this stack: with ``--name`` unless it
    is the default stack, and with ``PODTALLY_STATE_DIR=...`` in front when the stack's run
    directory is not where the environment points."""
    words = f"podtally {command}"
    if name != DEFAULT_NAME:
        words += f" --name {name}"
    if run_dir is not None:
        where = Path(run_dir).absolute()
        if where.name == name and where != st.resolve_run_dir(name, None):
            words = f"{st.STATE_ENV}={shlex.quote(str(where.parent))} {words}"
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
        """Where clients should go: HTTPS, or HTTP with ``--no-tls``."""
        return self.https_url or self.http_url

    @property
    def stats_url(self) -> str:
        return f"http://{LOOPBACK}:{self.config.stats_port}/stats"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.config.stats_port}/metrics"

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
            "stats_url": self.stats_url,
            "metrics_url": self.metrics_url,
            "ca_path": str(self.ca_path) if self.ca_path else None,
            "run_dir": str(self.run_dir),
            "haproxy_pid": self.haproxy_pid,
            "ready": self.ready,
            "config": self.config.to_dict(),
            "replicas": [r.to_dict() for r in self.replicas],
        }


# --- small helpers ----------------------------------------------------------------------------


def _quiet(_: str) -> None:
    return None


def _template_hash(config: StackConfig, restarted_at: str) -> str:
    """A pod-template-hash look-alike: 10 characters that change with the template."""
    template = {
        "name": config.name,
        "namespace": config.namespace,
        "drain_seconds": config.drain_seconds,
        "restartedAt": restarted_at,
    }
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:10])


def _pod_name(name: str, template_hash: str, taken: Iterable[str]) -> str:
    used = set(taken)
    while True:
        suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
        pod = f"{name}-{template_hash}-{suffix}"
        if pod not in used:
            return pod


def _node_of(ordinal: int, node_count: int) -> tuple[str, str]:
    index = ordinal % node_count
    return f"local-node-{index + 1}", ZONES[index % len(ZONES)]


def _multi_address_loopback() -> bool:
    """True where 127.0.0.11 can be bound without setup (Linux routes all of 127/8 to lo)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((f"127.0.0.{_ADDRESS_BASE + 1}", 0))
        except OSError:
            return False
    return True


def _free_ephemeral_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(path: str | Path, lines: int = 3) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _http_status(
    address: str,
    port: int,
    path: str,
    timeout: float = 1.0,
    context: ssl.SSLContext | None = None,
) -> int | None:
    """One GET on a new connection; the status code, or None if the connection failed."""
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class _Waiter:
    """Poll until a condition holds, with a deadline and a progress line every few seconds."""

    def __init__(self, what: str, timeout: float, progress: Progress) -> None:
        self.what = what
        self.timeout = timeout
        self.progress = progress
        self.start = time.monotonic()
        self.next_note = self.start + 3.0

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.start > self.timeout:
            raise PodtallyError(f"{self.what}: not done after {self.timeout:g} s")
        if now >= self.next_note:
            self.progress(f"  still waiting: {self.what} ({now - self.start:.0f} s)")
            self.next_note = now + 3.0
        time.sleep(_POLL)


# --- the stack's processes --------------------------------------------------------------------


class _Runner:
    """Operations on one stack's state: start and retire replicas, talk to HAProxy."""

    def __init__(self, state: st.StackState, progress: Progress) -> None:
        self.state = state
        self.progress = progress
        self.config = StackConfig.from_dict(state.config)
        self.api = hap.RuntimeApi(Path(state.socket_path))
        self._terminated: dict[int, float] = {}  # pid -> when it got SIGTERM

    # state
    def save(self) -> None:
        st.save(self.state)

    def set_config(self, config: StackConfig) -> None:
        """Record a new configuration (``scale``), with haproxy.cfg kept in step."""
        self.config = config
        self.state.config = config.to_dict()
        self.save()
        self.write_haproxy_config()

    def _replica_needles(self, record: st.ReplicaRecord) -> tuple[str, ...]:
        return ("serve", f"--host {record.address}", f"--port {record.port}")

    def replica_alive(self, record: st.ReplicaRecord) -> bool:
        return st.pid_is(record.pid, *self._replica_needles(record))

    def haproxy_alive(self) -> bool:
        return st.pid_is(self.state.haproxy_pid, str(self.state.path / "haproxy.cfg"))

    # addresses
    def _pick_endpoint(self, extra_taken: Iterable[tuple[str, int]] = ()) -> tuple[str, int]:
        taken = {(r.address, r.port) for r in self.state.replicas} | set(extra_taken)
        if self.state.multi_address:
            port = self.config.http_port
            for k in range(1, SERVER_SLOTS + 1):
                address = f"127.0.0.{_ADDRESS_BASE + k}"
                if (address, port) not in taken and bind_error(address, port) is None:
                    return address, port
            raise PodtallyError("no free loopback address left for a new replica")
        for _ in range(50):
            port = _free_ephemeral_port()
            if (LOOPBACK, port) not in taken:
                return LOOPBACK, port
        raise PodtallyError("no free port left for a new replica")

    def _free_server_slot(self) -> int:
        used = {r.server for r in self.state.replicas}
        for slot in range(1, SERVER_SLOTS + 1):
            if slot not in used:
                return slot
        raise PodtallyError("all HAProxy server slots are taken")

    # replicas
    def start_replica(self, ordinal: int, template_hash: str) -> st.ReplicaRecord:
        address, port = self._pick_endpoint()
        node, zone = _node_of(ordinal, self.config.node_count)
        pod = _pod_name(self.config.name, template_hash, (r.pod for r in self.state.replicas))
        logs = self.state.path / "logs"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{pod}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("K8_")}
        env.update(
            POD_NAME=pod,
            NODE_NAME=node,
            POD_NAMESPACE=self.config.namespace,
            POD_IP=address,
            ZONE=zone,
            PYTHONUNBUFFERED="1",
        )
        command = [
            sys.executable,
            "-m",
            "podtally",
            "serve",
            "--host",
            address,
            "--port",
            str(port),
            "--drain-seconds",
            f"{self.config.drain_seconds:g}",
        ]
        # A Ctrl-C between the spawn and the record would leave a replica no cleanup knows of:
        # hold signals until the new process is in the state.
        with _deferred_interrupts(), open(log_path, "ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=self.state.path,
            )
            st.adopt(process)
            record = st.ReplicaRecord(
                ordinal=ordinal,
                server=0,
                pod=pod,
                node=node,
                zone=zone,
                address=address,
                port=port,
                pid=process.pid,
                template_hash=template_hash,
                log=str(log_path),
                started_at=time.time(),
            )
            self.state.replicas.append(record)
            self.save()
        return record

    def wait_ready(self, records: list[st.ReplicaRecord]) -> None:
        """Wait until each replica answers /readyz with 200; fail early if one exits."""
        pending = list(records)
        names = ", ".join(r.pod for r in pending)
        waiter = _Waiter(f"replicas ready ({names})", self.config.ready_timeout, self.progress)
        while pending:
            for record in list(pending):
                if not st.pid_alive(record.pid):
                    detail = _tail(record.log)
                    raise PodtallyError(
                        f"replica {record.pod} exited before it was ready"
                        + (f": {detail}" if detail else f" (log: {record.log})")
                    )
                if _http_status(record.address, record.port, "/readyz", timeout=0.5) == 200:
                    pending.remove(record)
            if pending:
                try:
                    waiter.tick()
                except PodtallyError:
                    waiting = ", ".join(r.pod for r in pending)
                    raise PodtallyError(
                        f"replica(s) {waiting} not ready after {self.config.ready_timeout:g} s "
                        f"(logs in {self.state.path / 'logs'})"
                    ) from None

    def attach(self, record: st.ReplicaRecord) -> None:
        """Put a ready replica into a free HAProxy slot."""
        slot = self._free_server_slot()
        server = hap.server_name(slot)
        self.api.set_address(server, record.address, record.port)
        self.api.set_state(server, "ready")
        record.server = slot
        self.save()

    def wait_up(self, records: list[st.ReplicaRecord]) -> None:
        """Wait until HAProxy's health checks see each replica UP."""
        pending = {hap.server_name(r.server): r for r in records}
        waiter = _Waiter(
            f"HAProxy to see {len(pending)} replica(s) UP", self.config.ready_timeout, self.progress
        )
        while pending:
            if not self.haproxy_alive():
                raise PodtallyError(
                    f"HAProxy exited: {_tail(self.state.path / 'logs' / 'haproxy.log')}"
                )
            with contextlib.suppress(OSError):
                stats = self.api.servers()
                for server in list(pending):
                    stat = stats.get(server)
                    if stat is not None and stat.status == "UP":
                        del pending[server]
            if pending:
                waiter.tick()

    def retire(self, records: list[st.ReplicaRecord]) -> None:
        """Take replicas out of rotation, then stop them: drain in HAProxy, SIGTERM, SIGKILL."""
        self.drain(records)
        self.finish(records, wait=True)

    def drain(self, records: list[st.ReplicaRecord]) -> None:
        """Stop sending replicas new requests, let theirs finish, then SIGTERM them.

        They stay in the state (and keep answering for their drain time) until :meth:`finish`.
        """
        attached = [r for r in records if r.server]
        if attached and self.haproxy_alive():
            for record in attached:
                with contextlib.suppress(OSError, PodtallyError):
                    self.api.set_state(hap.server_name(record.server), "drain")
            # Requests already on their way to these replicas finish first (bounded).
            deadline = time.monotonic() + max(2.0, self.config.drain_seconds)
            names = {hap.server_name(r.server) for r in attached}
            while time.monotonic() < deadline:
                try:
                    stats = self.api.servers()
                except OSError:
                    break
                if all(stats[n].sessions == 0 for n in names if n in stats):
                    break
                time.sleep(_POLL)
        for record in records:
            if self.replica_alive(record):
                st.signal_pid(record.pid, signal.SIGTERM)
            self._terminated.setdefault(record.pid, time.monotonic())

    def terminated(self, record: st.ReplicaRecord) -> bool:
        """True once :meth:`drain` is through with ``record`` (it got SIGTERM, or was gone)."""
        return record.pid in self._terminated

    def undrain(self, records: list[st.ReplicaRecord]) -> None:
        """Put drained replicas that never got SIGTERM back into rotation."""
        if self.haproxy_alive():
            for record in records:
                if record.server:
                    with contextlib.suppress(OSError, PodtallyError):
                        self.api.set_state(hap.server_name(record.server), "ready")

    def health_by_pod(self) -> dict[str, str]:
        """HAProxy's view of each replica (UP, DOWN, DRAIN, MAINT, unknown), by pod name."""
        return {r.pod: r.health for r in self.snapshot().replicas}

    def finish(self, records: list[st.ReplicaRecord], wait: bool) -> list[st.ReplicaRecord]:
        """Forget drained replicas once they exited; return those still running.

        With ``wait``, wait for each until its drain time plus a bound has passed since SIGTERM,
        then SIGKILL its process group. Without, only collect the ones already gone.
        """
        grace = self.config.drain_seconds + 10.0
        if wait:
            for record in records:
                if not self.replica_alive(record):
                    continue  # gone (its pid may belong to another process by now)
                since = self._terminated.get(record.pid, time.monotonic())
                left = st.wait_gone([record.pid], max(0.0, since + grace - time.monotonic()))
                if left:
                    st.signal_group(record.pid, signal.SIGKILL)
                    if st.wait_gone(left, 5.0):
                        raise PodtallyError(f"replica {record.pod} survived SIGKILL")
        done = [r for r in records if not self.replica_alive(r)]
        if done and self.haproxy_alive():
            for record in done:
                if record.server:
                    with contextlib.suppress(OSError, PodtallyError):
                        self.api.set_state(hap.server_name(record.server), "maint")
        for record in done:
            if record in self.state.replicas:
                self.state.replicas.remove(record)
            self._terminated.pop(record.pid, None)
        if done:
            self.save()
        return [r for r in records if r not in done]

    # HAProxy
    def layout(self) -> hap.Layout:
        by_slot = {r.server: r for r in self.state.replicas if r.server}
        slots = [
            hap.Slot(n, by_slot[n].address, by_slot[n].port) if n in by_slot else hap.Slot(n)
            for n in range(1, SERVER_SLOTS + 1)
        ]
        cert = self.state.path / "tls" / "server.pem" if self.config.tls else None
        return hap.Layout(
            http_port=self.config.http_port,
            https_port=self.config.https_port if self.config.tls else None,
            stats_port=self.config.stats_port,
            socket_path=Path(self.state.socket_path),
            cert_path=cert,
            slots=slots,
        )

    def write_haproxy_config(self) -> Path:
        """Render haproxy.cfg for the current replicas (what a restart of HAProxy would load)."""
        path = self.state.path / "haproxy.cfg"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(hap.render(self.layout()))
        os.replace(tmp, path)
        return path

    def start_haproxy(self) -> None:
        path = self.write_haproxy_config()
        hap.check_config(self.state.haproxy_binary, path)
        log_path = self.state.path / "logs" / "haproxy.log"
        # As for replicas: hold signals until the new process is in the state.
        with _deferred_interrupts(), open(log_path, "ab") as log:
            process = subprocess.Popen(
                [self.state.haproxy_binary, "-f", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.state.path,
            )
            st.adopt(process)
            self.state.haproxy_pid = process.pid
            self.save()
        waiter = _Waiter("HAProxy to start", self.config.ready_timeout, self.progress)
        while not self.api.available():
            if not st.pid_alive(process.pid):
                raise PodtallyError(f"HAProxy exited at start: {_tail(log_path)}")
            waiter.tick()

    def wait_frontend(self) -> None:
        """Wait until a request through the balancer's own frontend succeeds."""
        context: ssl.SSLContext | None = None
        port = self.config.http_port
        if self.config.tls and self.state.ca_path:
            context = ssl.create_default_context(cafile=self.state.ca_path)
            port = self.config.https_port
        waiter = _Waiter("HAProxy to answer", self.config.ready_timeout, self.progress)
        while _http_status(LOOPBACK, port, "/", context=context) != 200:
            waiter.tick()

    def stop_all(self) -> bool:
        """Stop HAProxy (soft stop, so in-flight requests finish), then every replica."""
        stopped = False
        if self.haproxy_alive():
            stopped |= st.stop_groups([self.state.haproxy_pid], signal.SIGUSR1, grace=10.0)
        pids = [r.pid for r in self.state.replicas if self.replica_alive(r)]
        if pids:
            self.progress(
                f"stopping {len(pids)} replica(s) (drain {self.config.drain_seconds:g} s)"
            )
        stopped |= st.stop_groups(pids, signal.SIGTERM, grace=self.config.drain_seconds + 10.0)
        return stopped

    def kill_all(self) -> None:
        """SIGKILL HAProxy and every replica still running: the end of an interrupted ``down``."""
        pids = [r.pid for r in self.state.replicas if self.replica_alive(r)]
        if self.haproxy_alive():
            pids.append(self.state.haproxy_pid)
        _kill(pids)

    def snapshot(self) -> Stack:
        stats: dict[str, hap.ServerStat] = {}
        if self.haproxy_alive():
            with contextlib.suppress(OSError, PodtallyError):
                stats = self.api.servers()
        replicas = []
        for record in sorted(self.state.replicas, key=lambda r: (r.ordinal, r.started_at)):
            server = hap.server_name(record.server) if record.server else ""
            stat = stats.get(server)
            replicas.append(
                Replica(
                    pod=record.pod,
                    node=record.node,
                    zone=record.zone,
                    namespace=self.config.namespace,
                    address=record.address,
                    port=record.port,
                    pid=record.pid,
                    health=stat.health if stat is not None else "unknown",
                    running=self.replica_alive(record),
                    server=f"{hap.BACKEND}/{server}" if server else "",
                    template_hash=record.template_hash,
                    log_path=record.log,
                )
            )
        return Stack(
            config=self.config,
            replicas=replicas,
            run_dir=self.state.path,
            ca_path=Path(self.state.ca_path) if self.state.ca_path else None,
            haproxy_pid=self.state.haproxy_pid,
        )


def _remove_run_dir(state: st.StackState | None, run_dir: Path) -> None:
    st.remove_run_dir(run_dir, state.socket_path if state is not None else None)


def _socket_path(run_dir: Path) -> str:
    """The runtime API socket, in the run directory unless that path is too long for AF_UNIX."""
    path = run_dir / "haproxy.sock"
    if len(str(path)) <= 100:
        return str(path)
    digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"podtally-{os.getuid()}-{digest}.sock")


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the length of the block, then deliver them (main thread only).

    Unlike :func:`_no_interrupts`, nothing is lost: a signal that arrives inside the block is
    raised again, with the handlers of before, as soon as the block is done.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            signal.raise_signal(held[0])


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Let a cleanup finish even if Ctrl-C is pressed again or SIGTERM comes (main thread only).

    The cleanups this guards are bounded (a drain, then SIGKILL after a bound).
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _lock_note(name: str, say: Progress) -> Callable[[], None]:
    """What to say when another command holds the stack's lock."""
    return lambda: say(f"waiting for another podtally command on stack {name!r} ...")


def _load_state(name: str, run_dir: Path) -> st.StackState | None:
    """The recorded state; an unreadable file is an error that says how to get out of it."""
    try:
        return st.load(run_dir)
    except st.UnreadableStateError as exc:
        raise PodtallyError(
            f"{exc}; {command_hint('down', name, run_dir)} stops whatever still runs from "
            f"{run_dir} and removes it"
        ) from exc


def _haproxy_gone(name: str, run_dir: Path, state: st.StackState) -> NotRunningError:
    pid = f" (pid {state.haproxy_pid})" if state.haproxy_pid > 0 else ""
    return NotRunningError(
        f"stack {name!r} is not up: its HAProxy{pid} is not running; "
        f"{command_hint('down', name, run_dir)} stops what is left, then "
        f"{command_hint('up', name, run_dir)} starts it again"
    )


def _load_running(name: str, run_dir: Path, progress: Progress) -> _Runner | None:
    """The runner of a live stack, or None. Stale state (HAProxy gone) is cleaned up (``up``)."""
    state = _load_state(name, run_dir)
    if state is None:
        foreign = st.foreign_entries(run_dir)
        if foreign:
            raise UsageError(
                f"{run_dir} holds files podtally did not create ({', '.join(foreign[:3])}); "
                "pick another stack name or run directory"
            )
        if run_dir.exists() and any(run_dir.iterdir()):
            progress(f"removing leftovers in {run_dir} (no state file)")
            _remove_run_dir(None, run_dir)
        return None
    runner = _Runner(state, progress)
    if runner.haproxy_alive():
        return runner
    progress(f"found stale state of stack {state.name!r} (HAProxy is gone): cleaning it up")
    runner.stop_all()
    _remove_run_dir(state, run_dir)
    return None


def _check_ports(config: StackConfig, multi_address: bool) -> None:
    wanted = [("HTTP", LOOPBACK, config.http_port, "http_port")]
    if config.tls:
        wanted.append(("HTTPS", LOOPBACK, config.https_port, "https_port"))
    wanted.append(("stats", LOOPBACK, config.stats_port, "stats_port"))
    if multi_address:
        for k in range(1, config.replicas + 1):
            address = f"127.0.0.{_ADDRESS_BASE + k}"
            wanted.append(("replica", address, config.http_port, "http_port"))
    for what, address, port, setting in wanted:
        problem = bind_error(address, port)
        if problem is not None:
            raise UsageError(
                f"{what} port {address}:{port} {problem}: stop what uses it or pick another",
                setting=setting,
                value=port,
            )


# --- the public operations -------------------------------------------------------------------


def up(config: StackConfig, progress: Progress | None = None) -> Stack:
    """Start the stack; return once every replica is ready and HAProxy answers.

    Raises AlreadyUpError if it runs already, UsageError for a port in use,
    MissingDependencyError without haproxy, PodtallyError if something never becomes ready.
    Whatever fails (Ctrl-C included), nothing is left running and the run directory is removed.
    """
    say = progress or _quiet
    run_dir = config.resolved_run_dir()
    hap.check_path(run_dir)
    binary = hap.find_binary()
    if config.tls and importlib.util.find_spec("cryptography") is None:
        raise MissingDependencyError(
            "the local stack's TLS needs cryptography: pip install 'podtally[local]'"
        )
    with st.locked(run_dir, on_wait=_lock_note(config.name, say)):
        running = _load_running(config.name, run_dir, say)
        if running is not None:
            stack = running.snapshot()
            raise AlreadyUpError(
                f"stack {config.name!r} is already up at {stack.url} "
                f"(see {command_hint('status', config.name, run_dir)}; "
                f"{command_hint('down', config.name, run_dir)} stops it)",
                stack,
            )
        multi = _multi_address_loopback()
        _check_ports(config, multi)

        st.make_dirs(run_dir, mode=0o700)
        template_hash = _template_hash(config, restarted_at="")
        state = st.StackState(
            name=config.name,
            config=config.to_dict(),
            run_dir=str(run_dir),
            haproxy_binary=binary,
            socket_path=_socket_path(run_dir),
            ca_path=None,
            template_hash=template_hash,
            multi_address=multi,
            created_at=time.time(),
        )
        runner = _Runner(state, say)
        try:
            st.make_dirs(run_dir / "logs")
            runner.save()
            if config.tls:
                from podtally.local import tls

                say("generating a local CA and a certificate")
                files = tls.generate(run_dir / "tls", config.name, config.host)
                state.ca_path = str(files.ca_cert)
                runner.save()
            say(f"starting {config.replicas} replica(s) of podtally serve")
            records = [runner.start_replica(i, template_hash) for i in range(config.replicas)]
            runner.wait_ready(records)
            for slot, record in enumerate(records, start=1):
                record.server = slot
            runner.save()
            say("starting HAProxy")
            runner.start_haproxy()
            runner.wait_up(records)
            runner.wait_frontend()
        except BaseException:
            with _no_interrupts():
                say("start failed: stopping what was started")
                runner.stop_all()
                _remove_run_dir(state, run_dir)
            raise
        return runner.snapshot()


def status(name: str = DEFAULT_NAME, run_dir: Path | None = None) -> Stack:
    """The running stack, with HAProxy's view of each replica. NotRunningError if it is not up."""
    where = st.resolve_run_dir(name, run_dir)
    st.check_run_dir(where)
    state = _load_state(name, where)
    if state is None:
        raise NotRunningError(f"stack {name!r} is not up (no state in {where})")
    runner = _Runner(state, _quiet)
    if not runner.haproxy_alive():
        raise _haproxy_gone(name, where, state)
    return runner.snapshot()


def _running_or_raise(name: str, run_dir: Path, say: Progress) -> _Runner:
    """The runner of a live stack for ``restart`` and ``scale``, which change nothing otherwise:
    a stack whose HAProxy is gone is left for ``down`` (or ``up``) to clean up."""
    state = _load_state(name, run_dir)
    if state is None:
        raise NotRunningError(
            f"stack {name!r} is not up ({command_hint('up', name, run_dir)} starts it)"
        )
    runner = _Runner(state, say)
    if not runner.haproxy_alive():
        raise _haproxy_gone(name, run_dir, state)
    return runner


def restart(
    name: str = DEFAULT_NAME, run_dir: Path | None = None, progress: Progress | None = None
) -> Stack:
    """Rolling restart: one replica at a time, the new one UP before the old one drains.

    Replicas that exited are replaced like the others. If it is interrupted (Ctrl-C, SIGTERM)
    or fails, the replacement not yet in rotation is stopped, the old replicas already draining
    finish, and every other replica keeps running: the stack has as many replicas as before.
    """
    say = progress or _quiet
    where = st.resolve_run_dir(name, run_dir)
    with st.locked(where, on_wait=_lock_note(name, say)):
        runner = _running_or_raise(name, where, say)
        template_hash = _template_hash(runner.config, restarted_at=f"{time.time():.6f}")
        runner.state.template_hash = template_hash
        runner.save()
        old = sorted(runner.state.replicas, key=lambda r: (r.ordinal, r.started_at))
        original = {r.pod for r in old}
        kept: set[str] = set()  # replacements in rotation whose old replica is draining
        draining: list[st.ReplicaRecord] = []
        try:
            for index, previous in enumerate(old, start=1):
                step = f"[{index}/{len(old)}]"
                fresh = runner.start_replica(previous.ordinal, template_hash)
                say(f"{step} started {fresh.pod} on {fresh.node} to replace {previous.pod}")
                runner.wait_ready([fresh])
                runner.attach(fresh)
                runner.wait_up([fresh])
                say(f"{step} {fresh.pod} is UP; draining {previous.pod}")
                with _deferred_interrupts():  # both, or neither
                    kept.add(fresh.pod)
                    draining.append(previous)
                # The old replica drains while the next new one starts, as in a Deployment.
                runner.drain([previous])
                draining = runner.finish(draining, wait=False)
            if draining:
                say(f"waiting for {len(draining)} old replica(s) to finish draining")
        except BaseException:
            with _no_interrupts():
                strays = [r for r in runner.state.replicas if r.pod not in original | kept]
                if strays:
                    say("stopping " + ", ".join(r.pod for r in strays) + " (not in rotation yet)")
                runner.retire(strays)
            raise
        finally:
            with _no_interrupts():
                runner.drain([r for r in draining if not runner.terminated(r)])
                runner.finish(draining, wait=True)
                runner.write_haproxy_config()
        return runner.snapshot()


def _removal_order(runner: _Runner, live: list[st.ReplicaRecord]) -> list[st.ReplicaRecord]:
    """Live replicas in the order a scale-down removes them, as a ReplicaSet does: the ones
    HAProxy does not see UP first, then the highest ordinals, the newest first."""
    health = runner.health_by_pod()
    return sorted(live, key=lambda r: (health.get(r.pod) == "UP", -r.ordinal, -r.started_at))


def _add_replicas(runner: _Runner, ordinals: list[int], before: StackConfig) -> None:
    """Start replicas for ``ordinals`` and put them in rotation once ready; on any failure or
    interrupt, stop the ones not in rotation and go back to the configuration ``before``."""
    original = {r.pod for r in runner.state.replicas}
    try:
        fresh: list[st.ReplicaRecord] = []
        for ordinal in ordinals:
            fresh.append(runner.start_replica(ordinal, runner.state.template_hash))
        runner.wait_ready(fresh)
        for record in fresh:
            runner.attach(record)
        runner.wait_up(fresh)
    except BaseException:
        with _no_interrupts():
            new = [r for r in runner.state.replicas if r.pod not in original]
            if new:
                runner.progress(
                    "stopping " + ", ".join(r.pod for r in new) + " (not in rotation yet)"
                )
            runner.retire(new)
            runner.set_config(before)
        raise


def _remove_replicas(runner: _Runner, leaving: list[st.ReplicaRecord]) -> None:
    """Drain and stop ``leaving``; on any failure or interrupt, put the ones that did not get
    SIGTERM yet back into rotation and record as many replicas as are left."""
    try:
        runner.retire(leaving)
    except BaseException:
        with _no_interrupts():
            back = [r for r in leaving if runner.replica_alive(r) and not runner.terminated(r)]
            runner.undrain(back)
            stopping = [r for r in leaving if r not in back and runner.replica_alive(r)]
            if stopping:
                runner.progress(
                    f"waiting for {len(stopping)} replica(s) already sent SIGTERM to finish "
                    f"draining (at most {runner.config.drain_seconds + 10:g} s)"
                )
            runner.finish([r for r in leaving if r not in back], wait=True)
            count = max(1, min(MAX_REPLICAS, len(runner.state.replicas)))
            runner.set_config(dataclasses.replace(runner.config, replicas=count))
        raise


def scale(
    replicas: int,
    name: str = DEFAULT_NAME,
    run_dir: Path | None = None,
    progress: Progress | None = None,
) -> Stack:
    """Bring the stack to ``replicas`` running replicas, like a ReplicaSet.

    Replicas whose process exited are replaced (new ones join once UP in HAProxy) and removed.
    Scaling down removes the replicas HAProxy does not see UP first, then the highest ordinals;
    they are drained in HAProxy before they get SIGTERM. If it is interrupted (Ctrl-C, SIGTERM)
    or fails, new replicas not yet in rotation are stopped and replicas not yet sent SIGTERM
    are put back into rotation. The returned stack may still be degraded (a replica running
    but not UP, which scaling leaves alone): check :attr:`Stack.ready`.
    """
    say = progress or _quiet
    where = st.resolve_run_dir(name, run_dir)
    with st.locked(where, on_wait=_lock_note(name, say)):
        runner = _running_or_raise(name, where, say)
        before = runner.config
        target = dataclasses.replace(before, replicas=replicas)  # validates the count
        current = sorted(runner.state.replicas, key=lambda r: (r.ordinal, r.started_at))
        live = [r for r in current if runner.replica_alive(r)]
        dead = [r for r in current if r not in live]
        missing = replicas - len(live)
        leaving = dead + _removal_order(runner, live)[: max(0, -missing)]
        if missing <= 0 and not leaving:
            say(f"stack {name!r} already has {replicas} replica(s)")
            if before.replicas != replicas:
                runner.set_config(target)
            return runner.snapshot()
        if dead:
            pods = ", ".join(r.pod for r in dead)
            say(f"found {len(dead)} replica(s) whose process exited: {pods}")
        runner.set_config(target)
        if missing > 0:
            used = {r.ordinal for r in live}
            ordinals = [i for i in range(replicas) if i not in used][:missing]
            say(f"scaling {name!r} from {len(live)} to {replicas}: starting {missing} replica(s)")
            _add_replicas(runner, ordinals, before)
        if leaving:
            verb = "removing"
            if missing < 0:
                verb = f"scaling {name!r} from {len(live)} to {replicas}: draining"
            say(f"{verb} " + ", ".join(r.pod for r in leaving))
            _remove_replicas(runner, leaving)
        runner.write_haproxy_config()
        return runner.snapshot()


def _down_without_state(where: Path, problem: st.UnreadableStateError, say: Progress) -> bool:
    """``down`` for a run directory whose state.json cannot be read: stop what runs from it.

    The stack starts HAProxy and every replica with the run directory as working directory;
    of those processes, the ones that are HAProxy on its ``haproxy.cfg`` or ``podtally serve``
    are stopped as ``down`` stops them. Then the run directory is removed as usual.
    """
    found = st.processes_in(where)
    if found is None:  # no /proc: nothing to find them by
        raise PodtallyError(
            f"{problem}; stop the haproxy and 'podtally serve' processes that run from {where}, "
            f"then remove {where}"
        )
    haproxy = [pid for pid, line in found if "haproxy" in line and "haproxy.cfg" in line]
    replicas = [pid for pid, line in found if "podtally serve" in line and "--port" in line]
    say(
        f"{problem.path} is unreadable: stopping the {len(haproxy) + len(replicas)} "
        f"process(es) that run from {where}"
    )
    try:
        st.stop_groups(haproxy, signal.SIGUSR1, grace=10.0)
        st.stop_groups(replicas, signal.SIGTERM, grace=StackConfig.drain_seconds + 10.0)
    except KeyboardInterrupt:
        with _no_interrupts():
            say("interrupted: killing what is left of the stack")
            _kill(haproxy + replicas)
            st.remove_run_dir(where, _socket_path(where))
        raise
    st.remove_run_dir(where, _socket_path(where))
    return bool(haproxy or replicas)


def _kill(pids: list[int]) -> None:
    """SIGKILL each process group in ``pids`` and wait (bounded) until they are gone."""
    for pid in pids:
        st.signal_group(pid, signal.SIGKILL)
    left = st.wait_gone(pids, 5.0)
    if left:
        raise PodtallyError(f"process(es) {', '.join(map(str, left))} survived SIGKILL")


def down(
    name: str = DEFAULT_NAME, run_dir: Path | None = None, progress: Progress | None = None
) -> bool:
    """Stop the stack and remove its run directory. True if anything was running.

    Interrupted (Ctrl-C, SIGTERM), it stops waiting for drains: whatever still runs is killed
    and the run directory removed all the same before the interrupt goes on. A ``state.json``
    that cannot be read does not stop it either: the processes that run from the run directory
    (HAProxy and the replicas) are found in /proc and stopped.
    """
    say = progress or _quiet
    where = st.resolve_run_dir(name, run_dir)
    st.check_run_dir(where)
    if not where.exists():
        return False
    with st.locked(where, on_wait=_lock_note(name, say)):
        try:
            state = st.load(where)
        except st.UnreadableStateError as exc:
            return _down_without_state(where, exc, say)
        stopped = False
        if state is not None:
            runner = _Runner(state, say)
            try:
                if runner.haproxy_alive():
                    say("stopping HAProxy")
                stopped = runner.stop_all()
            except KeyboardInterrupt:
                with _no_interrupts():
                    say("interrupted: killing what is left of the stack")
                    runner.kill_all()
                    _remove_run_dir(state, where)
                raise
        _remove_run_dir(state, where)
        return stopped
