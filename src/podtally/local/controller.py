"""The controller of one stack: starts replicas and puts them in rotation, drains and retires
them, starts HAProxy and talks to its runtime API, and records every step in the state file.

The operations (:mod:`podtally.local.operations`) decide what to do; the controller does it.
A stack runs one or more :class:`~podtally.local.models.Track` of replicas; a replica is
started for a track, which gives its version, so another track (a canary) is data. The
frontends HAProxy serves are rendered by :mod:`podtally.local.haproxy`; how a replica is
launched (a process, or a container of the image), by :mod:`podtally.local.launch`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import time
from pathlib import Path

from podtally.errors import PodtallyError
from podtally.local import haproxy as hap
from podtally.local import launch
from podtally.local import processes as proc
from podtally.local import state as st
from podtally.local.models import SERVER_SLOTS, Replica, Stack, StackConfig, Track
from podtally.local.placement import LOOPBACK, node_of, pod_name, track_hash
from podtally.local.polling import POLL, Progress, Waiter, accepts, http_status, tail
from podtally.local.signals import deferred_interrupts


class Controller:
    """Operations on one stack's state: start and retire replicas, talk to HAProxy."""

    def __init__(self, state: st.StackState, progress: Progress) -> None:
        self.state = state
        self.progress = progress
        self.config = StackConfig.from_dict(state.config)
        self.api = hap.RuntimeApi(Path(state.socket_path))
        self.launcher = launch.launcher_for(self.config, state.path)
        self._terminated: dict[int, float] = {}  # pid -> when it got SIGTERM
        self._drained: set[int] = set()  # pids set to drain in HAProxy (out of rotation)

    # state
    def save(self) -> None:
        st.save(self.state)

    def set_config(self, config: StackConfig) -> None:
        """Record a new configuration (``scale``), with haproxy.cfg kept in step."""
        self.config = config
        self.state.config = config.to_dict()
        self.save()
        self.write_haproxy_config()

    def replica_alive(self, record: st.ReplicaRecord) -> bool:
        needles = self.launcher.needles(record)
        return proc.pid_is(record.pid, *needles, created=record.create_time)

    def haproxy_alive(self) -> bool:
        config = str(self.state.path / "haproxy.cfg")
        return proc.pid_is(self.state.haproxy_pid, config, created=self.state.haproxy_create_time)

    # tracks
    def track(self, name: str) -> Track:
        """The configured track called ``name``."""
        for track in self.config.tracks():
            if track.name == name:
                return track
        raise PodtallyError(f"the stack has no track {name!r}")

    def replicas_of(self, track: str) -> list[st.ReplicaRecord]:
        """The recorded replicas of one track, by ordinal, oldest first."""
        mine = [r for r in self.state.replicas if r.track == track]
        return sorted(mine, key=lambda r: (r.ordinal, r.started_at))

    def _free_server_slot(self) -> int:
        used = {r.server for r in self.state.replicas}
        for slot in range(1, SERVER_SLOTS + 1):
            if slot not in used:
                return slot
        raise PodtallyError("all HAProxy server slots are taken")

    # replicas
    def start_replica(
        self, ordinal: int, template_hash: str, track: Track | None = None
    ) -> st.ReplicaRecord:
        """Start one replica of ``track`` (the first configured one if None) at ``ordinal``,
        which decides its node and zone, and record it (not yet in HAProxy's rotation)."""
        self.launcher.check()
        first = self.config.tracks()[0]
        track = track or first
        if track.name != first.name:
            template_hash = track_hash(template_hash, track.version)
        taken, multi = self.state.replicas, self.state.multi_address
        address, port = launch.pick_endpoint(taken, multi, self.config.http_port)
        grpc_port = launch.pick_grpc_port(taken, address, port)
        # Tracks after the first take the next positions, so that with one node per replica
        # a canary lands on a node of its own, as its own Deployment's pods would.
        position = ordinal
        for earlier in self.config.tracks():
            if earlier.name == track.name:
                break
            position += earlier.replicas
        node, zone = node_of(position, self.config.node_count)
        pod = pod_name(self.config.name, template_hash, (r.pod for r in self.state.replicas))
        logs = self.state.path / "logs"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{pod}.log"
        spec = launch.ReplicaSpec(
            pod, node, zone, self.config.namespace, track.version, address, port, grpc_port,
            self.config.drain_seconds,
        )  # fmt: skip
        command, env = self.launcher.command(spec), self.launcher.env(spec)
        # A Ctrl-C between the spawn and the record would leave a replica no cleanup knows of:
        # hold signals until the new process is in the state.
        with deferred_interrupts():
            process = proc.spawn(command, log_path=log_path, cwd=self.state.path, env=env)
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
                create_time=proc.create_time(process.pid),
                track=track.name,
                grpc_port=grpc_port,
            )
            self.state.replicas.append(record)
            self.save()
        return record

    def wait_ready(self, records: list[st.ReplicaRecord]) -> None:
        """Wait until each replica answers /readyz with 200; fail early if one exits."""
        pending = list(records)
        names = ", ".join(r.pod for r in pending)
        waiter = Waiter(f"replicas ready ({names})", self.config.ready_timeout, self.progress)
        while pending:
            for record in list(pending):
                if not proc.pid_alive(record.pid):
                    detail = tail(record.log)
                    raise PodtallyError(
                        f"replica {record.pod} exited before it was ready"
                        + (f": {detail}" if detail else f" (log: {record.log})")
                    )
                if http_status(record.address, record.port, "/readyz", timeout=0.5) == 200 and (
                    not record.grpc_port or accepts(record.address, record.grpc_port)
                ):
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
        """Put a ready replica into a free HAProxy slot, with the weights of every replica in
        rotation set for its track's share before it takes a request."""
        slot = self._free_server_slot()
        server = hap.server_name(slot)
        for backend in self.backends():
            port = record.grpc_port if backend in hap.GRPC_BACKENDS else record.port
            self.api.set_address(server, record.address, port, backend)
        record.server = slot
        self.save()
        self.rebalance()
        self.set_state(server, "ready")

    def backends(self) -> list[str]:
        """The HAProxy backends this stack's configuration renders: each has every slot."""
        config = self.config
        wanted = {
            hap.BACKEND: True,
            hap.GRPC_BACKEND: config.grpc_port is not None,
            hap.SERVICE_BACKEND: config.service_port is not None,
            hap.SERVICE_GRPC_BACKEND: config.service_grpc_port is not None,
        }
        return [backend for backend in hap.BACKENDS if wanted[backend]]

    def set_state(self, server: str, state: str) -> None:
        """A slot's state (ready, drain, maint) in every backend: the paths agree on who serves."""
        for backend in self.backends():
            self.api.set_state(server, state, backend)

    # weights
    def in_rotation(self) -> list[st.ReplicaRecord]:
        """The replicas in a HAProxy slot and not set to drain."""
        return [r for r in self.state.replicas if r.server and r.pid not in self._drained]

    def weights(self) -> dict[int, int]:
        """Each slot's HAProxy weight, so that each track gets its configured share of the
        requests whatever its number of replicas in rotation (slot -> weight)."""
        rotation = self.in_rotation()
        tracks = self.config.tracks()
        counts = [sum(1 for r in rotation if r.track == t.name) for t in tracks]
        per_track, _ = hap.server_weights(
            [(t.weight, n) for t, n in zip(tracks, counts, strict=True)]
        )
        weight_of = {t.name: w for t, w in zip(tracks, per_track, strict=True)}
        return {r.server: max(1, weight_of.get(r.track, 1)) for r in rotation}

    def rebalance(self) -> None:
        """Set every replica in rotation to its weight (HAProxy's roundrobin takes new weights
        on the fly). A single track has weight 1 everywhere, as before tracks existed."""
        for slot, weight in self.weights().items():
            for backend in self.backends():
                self.api.set_weight(hap.server_name(slot), weight, backend)

    def wait_up(self, records: list[st.ReplicaRecord]) -> None:
        """Wait until HAProxy's health checks see each replica UP."""
        pending = {hap.server_name(r.server): r for r in records}
        waiter = Waiter(
            f"HAProxy to see {len(pending)} replica(s) UP", self.config.ready_timeout, self.progress
        )
        while pending:
            if not self.haproxy_alive():
                raise PodtallyError(
                    f"HAProxy exited: {tail(self.state.path / 'logs' / 'haproxy.log')}"
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
                    self.set_state(hap.server_name(record.server), "drain")
                self._drained.add(record.pid)
            with contextlib.suppress(OSError, PodtallyError):
                self.rebalance()  # the others of its track take over its share
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
                time.sleep(POLL)
        for record in records:
            if self.replica_alive(record):
                proc.signal_pid(record.pid, signal.SIGTERM)
            self._terminated.setdefault(record.pid, time.monotonic())

    def terminated(self, record: st.ReplicaRecord) -> bool:
        """True once :meth:`drain` is through with ``record`` (it got SIGTERM, or was gone)."""
        return record.pid in self._terminated

    def undrain(self, records: list[st.ReplicaRecord]) -> None:
        """Put drained replicas that never got SIGTERM back into rotation."""
        if self.haproxy_alive():
            for record in records:
                self._drained.discard(record.pid)
            with contextlib.suppress(OSError, PodtallyError):
                self.rebalance()
            for record in records:
                if record.server:
                    with contextlib.suppress(OSError, PodtallyError):
                        self.set_state(hap.server_name(record.server), "ready")

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
                left = proc.wait_gone([record.pid], max(0.0, since + grace - time.monotonic()))
                if left:
                    proc.signal_group(record.pid, signal.SIGKILL)
                    if proc.wait_gone(left, 5.0):
                        raise PodtallyError(f"replica {record.pod} survived SIGKILL")
        done = [r for r in records if not self.replica_alive(r)]
        try:
            self.launcher.discard(done, grace=0.0)  # a container its client left behind
        except PodtallyError as exc:  # the replica is gone from the stack all the same
            self.progress(f"warning: {exc}")
        if done and self.haproxy_alive():
            for record in done:
                if record.server:
                    with contextlib.suppress(OSError, PodtallyError):
                        self.set_state(hap.server_name(record.server), "maint")
        for record in done:
            if record in self.state.replicas:
                self.state.replicas.remove(record)
            self._terminated.pop(record.pid, None)
            self._drained.discard(record.pid)
        if done:
            self.save()
        return [r for r in records if r not in done]

    # HAProxy
    def layout(self) -> hap.Layout:
        by_slot = {r.server: r for r in self.state.replicas if r.server}
        weights = self.weights()
        slots = [
            hap.Slot(
                n, by_slot[n].address, by_slot[n].port, weights.get(n, 1), by_slot[n].grpc_port
            )
            if n in by_slot
            else hap.Slot(n)
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
            grpc_port=self.config.grpc_port,
            service_port=self.config.service_port,
            service_grpc_port=self.config.service_grpc_port,
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
        with deferred_interrupts():
            command = [self.state.haproxy_binary, "-f", str(path)]
            process = proc.spawn(command, log_path=log_path, cwd=self.state.path)
            self.state.haproxy_pid = process.pid
            self.state.haproxy_create_time = proc.create_time(process.pid)
            self.save()
        waiter = Waiter("HAProxy to start", self.config.ready_timeout, self.progress)
        while not self.api.available():
            if not proc.pid_alive(process.pid):
                raise PodtallyError(f"HAProxy exited at start: {tail(log_path)}")
            waiter.tick()

    def wait_frontend(self) -> None:
        """Wait until a request through the balancer's own frontend succeeds."""
        context: ssl.SSLContext | None = None
        port = self.config.http_port
        if self.config.tls and self.state.ca_path:
            context = ssl.create_default_context(cafile=self.state.ca_path)
            port = self.config.https_port
        waiter = Waiter("HAProxy to answer", self.config.ready_timeout, self.progress)
        while http_status(LOOPBACK, port, "/", context=context) != 200:
            waiter.tick()

    def stop_all(self) -> bool:
        """Stop HAProxy (soft stop, so in-flight requests finish), then every replica."""
        stopped = False
        if self.haproxy_alive():
            stopped |= proc.stop_groups([self.state.haproxy_pid], signal.SIGUSR1, grace=10.0)
        pids = [r.pid for r in self.state.replicas if self.replica_alive(r)]
        if pids:
            self.progress(
                f"stopping {len(pids)} replica(s) (drain {self.config.drain_seconds:g} s)"
            )
        stopped |= proc.stop_groups(pids, signal.SIGTERM, grace=self.config.drain_seconds + 10.0)
        self.launcher.discard_all(grace=self.config.drain_seconds)  # left by a dead client
        return stopped

    def kill_all(self) -> None:
        """SIGKILL HAProxy and every replica still running: the end of an interrupted ``down``."""
        pids = [r.pid for r in self.state.replicas if self.replica_alive(r)]
        if self.haproxy_alive():
            pids.append(self.state.haproxy_pid)
        proc.kill_groups(pids)
        self.launcher.discard_all(grace=0.0)

    def snapshot(self, containers: bool = False) -> Stack:
        """The stack as it runs (``containers``: ask podman which of the replicas' run)."""
        stats: dict[str, hap.ServerStat] = {}
        if self.haproxy_alive():
            with contextlib.suppress(OSError, PodtallyError):
                stats = self.api.servers()
        replicas = []
        running = self.launcher.running_containers(self.state.replicas) if containers else {}
        order = {t.name: n for n, t in enumerate(self.config.tracks())}
        for record in sorted(
            self.state.replicas,
            key=lambda r: (order.get(r.track, len(order)), r.ordinal, r.started_at),
        ):
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
                    weight=stat.weight if stat is not None else 0,
                    running=self.replica_alive(record),
                    server=f"{hap.BACKEND}/{server}" if server else "",
                    template_hash=record.template_hash,
                    log_path=record.log,
                    track=record.track,
                    grpc_port=record.grpc_port,
                    container=running.get(record.pod, ""),
                )
            )
        return Stack(
            config=self.config,
            replicas=replicas,
            run_dir=self.state.path,
            ca_path=Path(self.state.ca_path) if self.state.ca_path else None,
            haproxy_pid=self.state.haproxy_pid,
        )
