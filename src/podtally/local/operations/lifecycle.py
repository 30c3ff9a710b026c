"""The stack's life: ``up``, ``status`` and ``down``, each recovering from a crash or an interrupt
half-way.

* ``up``: check the ports and the haproxy binary before anything starts; generate the CA and the
  certificate; start each replica on its own loopback address with a pod-like identity; wait until
  every replica answers ``/readyz``; write and ``haproxy -c`` the configuration; start HAProxy;
  wait until it sees every replica UP and answers through its frontend. Any failure (or Ctrl-C)
  on the way stops whatever started and removes the run directory. State left by a stack whose
  HAProxy is gone (a crash) is cleaned up first.
* ``status``: the running stack, with HAProxy's view of each replica.
* ``down``: HAProxy soft-stops, the replicas get SIGTERM and drain, SIGKILL after a bound, and the
  run directory goes. Idempotent; interrupted, it kills what is left; with a ``state.json`` it
  cannot read, it finds the stack's processes by their working directory.
"""

from __future__ import annotations

import importlib.util
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from podtally.errors import MissingDependencyError, NotRunningError, PodtallyError, UsageError
from podtally.local import haproxy as hap
from podtally.local import launch, rundir
from podtally.local import processes as proc
from podtally.local import state as st
from podtally.local.container import RUN_DIR_LABEL, remove_stack
from podtally.local.controller import Controller
from podtally.local.models import (
    DEFAULT_NAME,
    LOCAL_DRAIN_SECONDS,
    AlreadyUpError,
    Stack,
    StackConfig,
    command_hint,
)
from podtally.local.operations import common
from podtally.local.placement import LOOPBACK, multi_address_loopback, replica_address
from podtally.local.polling import Progress
from podtally.local.signals import no_interrupts
from podtally.net import bind_error


def _remove_run_dir(state: st.StackState | None, run_dir: Path) -> None:
    rundir.remove_run_dir(run_dir, state.socket_path if state is not None else None)


_INTERRUPTED = "interrupted: killing what is left of the stack"


@contextmanager
def _torn_down_on(
    failure: type[BaseException],
    note: str,
    stop: Callable[[], object],
    run_dir: Path,
    socket_path: str | None,
    say: Progress,
) -> Iterator[None]:
    """Should ``failure`` end the block: with interrupts held, say ``note``, ``stop`` whatever
    runs and remove the run directory; then the failure goes on."""
    try:
        yield
    except failure:
        with no_interrupts():
            say(note)
            try:
                stop()
            except PodtallyError as exc:  # podman refusing: said, not raised over the failure
                say(f"could not stop everything: {exc}")
            rundir.remove_run_dir(run_dir, socket_path)
        raise


def _load_running(name: str, run_dir: Path, progress: Progress) -> Controller | None:
    """The runner of a live stack, or None. Stale state (HAProxy gone) is cleaned up (``up``)."""
    state = common.load_state(name, run_dir)
    if state is None:
        foreign = rundir.foreign_entries(run_dir)
        if foreign:
            raise UsageError(
                f"{run_dir} holds files podtally did not create ({', '.join(foreign[:3])}); "
                "pick another stack name or run directory"
            )
        if run_dir.exists() and any(run_dir.iterdir()):
            progress(f"removing leftovers in {run_dir} (no state file)")
            _remove_run_dir(None, run_dir)
        return None
    runner = Controller(state, progress)
    if runner.haproxy_alive():
        return runner
    progress(f"found stale state of stack {state.name!r} (HAProxy is gone): cleaning it up")
    runner.stop_all()
    _remove_run_dir(state, run_dir)
    return None


def _counted(config: StackConfig) -> str:
    """``3 replica(s)``, or ``3 stable and 1 canary replica(s)`` with a canary track."""
    tracks = config.tracks()
    if len(tracks) == 1:
        return f"{tracks[0].replicas} replica(s)"
    return " and ".join(f"{t.replicas} {t.name}" for t in tracks) + " replica(s)"


def _check_ports(config: StackConfig, multi_address: bool) -> None:
    """UsageError naming the setting (``http_port``, ...) if a port the stack needs is taken.
    Replicas listen on the HTTP port too, each on its own loopback address."""
    wanted = [("HTTP", LOOPBACK, config.http_port, "http_port")]
    if config.tls:
        wanted.append(("HTTPS", LOOPBACK, config.https_port, "https_port"))
    wanted.append(("stats", LOOPBACK, config.stats_port, "stats_port"))
    for what, setting in (
        ("gRPC", "grpc_port"),
        ("Service", "service_port"),
        ("Service gRPC", "service_grpc_port"),
    ):
        port = getattr(config, setting)
        if port is not None:
            wanted.append((what, LOOPBACK, port, setting))
    if multi_address:
        for k in range(1, config.total_replicas + 1):
            wanted.append(("replica", replica_address(k), config.http_port, "http_port"))
    for what, address, port, setting in wanted:
        problem = bind_error(address, port)
        if problem is not None:
            raise UsageError(
                f"{what} port {address}:{port} {problem}: stop what uses it or pick another",
                setting=setting,
                value=port,
            )


def up(config: StackConfig, progress: Progress | None = None) -> Stack:
    """Start the stack; return once every replica is ready and HAProxy answers.

    Raises AlreadyUpError if it runs already, UsageError for a port in use,
    MissingDependencyError without haproxy, PodtallyError if something never becomes ready.
    Whatever fails (Ctrl-C included), nothing is left running and the run directory is removed.
    """
    say = progress or common.quiet
    run_dir = config.resolved_run_dir()
    hap.check_path(run_dir)
    binary = hap.find_binary()
    if config.tls and importlib.util.find_spec("cryptography") is None:
        raise MissingDependencyError(
            "the local stack's TLS needs cryptography: pip install 'podtally[local]'"
        )
    with rundir.locked(run_dir, on_wait=common.lock_note(config.name, say)):
        running = _load_running(config.name, run_dir, say)
        if running is not None:
            stack = running.snapshot()
            raise AlreadyUpError(
                f"stack {config.name!r} is already up at {stack.url} "
                f"(see {command_hint('status', config.name, run_dir)}; "
                f"{command_hint('down', config.name, run_dir)} stops it)",
                stack,
                stack.config.differences(config),
            )
        multi = multi_address_loopback()
        _check_ports(config, multi)
        launch.launcher_for(config, run_dir).check()  # podman and the image, with --image

        rundir.make_dirs(run_dir, mode=0o700)
        template_hash = common.template_hash(config, restarted_at="")
        state = st.StackState(
            name=config.name,
            config=config.to_dict(),
            run_dir=str(run_dir),
            haproxy_binary=binary,
            socket_path=hap.socket_path(run_dir),
            ca_path=None,
            template_hash=template_hash,
            multi_address=multi,
            created_at=time.time(),
        )
        runner = Controller(state, say)
        failed = "start failed: stopping what was started"
        with _torn_down_on(BaseException, failed, runner.stop_all, run_dir, state.socket_path, say):
            rundir.make_dirs(run_dir / "logs")
            runner.save()
            if config.tls:
                from podtally.local import tls

                say("generating a local CA and a certificate")
                files = tls.generate(run_dir / "tls", config.name, config.host)
                state.ca_path = str(files.ca_cert)
                runner.save()
            say(f"starting {_counted(config)} of podtally serve")
            records = [
                runner.start_replica(ordinal, template_hash, track)
                for track in config.tracks()
                for ordinal in range(track.replicas)
            ]
            runner.wait_ready(records)
            for slot, record in enumerate(records, start=1):
                record.server = slot
            runner.save()
            say("starting HAProxy")
            runner.start_haproxy()
            runner.wait_up(records)
            runner.wait_frontend()
        common.supervise(run_dir, start=True)
        return runner.snapshot()


def status(name: str = DEFAULT_NAME, run_dir: Path | None = None, containers: bool = True) -> Stack:
    """The running stack, with HAProxy's view of each replica. NotRunningError if it is not up.
    ``containers``: with replicas from an image, ask podman which containers run."""
    where = rundir.resolve_run_dir(name, run_dir)
    rundir.check_run_dir(where)
    state = common.load_state(name, where)
    if state is None:
        raise NotRunningError(f"stack {name!r} is not up (no state in {where})")
    runner = Controller(state, common.quiet)
    if not runner.haproxy_alive():
        raise common.haproxy_gone(name, where, state)
    return runner.snapshot(containers=containers)


def _kill_all(pids: list[int], where: Path) -> None:
    proc.kill_groups(pids)
    remove_stack(where, grace=0)


def _down_without_state(where: Path, problem: st.UnreadableStateError, say: Progress) -> bool:
    """``down`` for a run directory whose state.json cannot be read: stop what runs from it.

    The stack starts HAProxy and every replica with the run directory as working directory;
    of those processes, the ones that are HAProxy on its ``haproxy.cfg`` or ``podtally serve``
    are stopped as ``down`` stops them. Then the run directory is removed as usual.
    """
    found = proc.processes_in(where)
    haproxy = [pid for pid, line in found if "haproxy" in line and "haproxy.cfg" in line]
    replicas = [
        pid
        for pid, line in found
        if ("podtally serve" in line or f"--label={RUN_DIR_LABEL}=" in line) and "--port" in line
    ]
    say(
        f"{problem.path} is unreadable: stopping the {len(haproxy) + len(replicas)} "
        f"process(es) that run from {where}"
    )
    socket_path = hap.socket_path(where)
    with _torn_down_on(
        KeyboardInterrupt,
        _INTERRUPTED,
        lambda: _kill_all(haproxy + replicas, where),
        where,
        socket_path,
        say,
    ):
        proc.stop_groups(haproxy, signal.SIGUSR1, grace=10.0)
        proc.stop_groups(replicas, signal.SIGTERM, grace=LOCAL_DRAIN_SECONDS + 10.0)
        # Replicas run from an image (up --image) are containers, found by the run dir's label.
        remove_stack(where, grace=LOCAL_DRAIN_SECONDS)
    rundir.remove_run_dir(where, socket_path)
    return bool(haproxy or replicas)


def down(
    name: str = DEFAULT_NAME, run_dir: Path | None = None, progress: Progress | None = None
) -> bool:
    """Stop the stack and remove its run directory. True if anything was running.

    Interrupted (Ctrl-C, SIGTERM), it stops waiting for drains: whatever still runs is killed
    and the run directory removed all the same before the interrupt goes on. A ``state.json``
    that cannot be read does not stop it either: the processes that run from the run directory
    (HAProxy and the replicas) are found in /proc and stopped.
    """
    say = progress or common.quiet
    where = rundir.resolve_run_dir(name, run_dir)
    rundir.check_run_dir(where)
    if not where.exists():
        return False
    with rundir.locked(where, on_wait=common.lock_note(name, say)):
        try:
            state = st.load(where)
        except st.UnreadableStateError as exc:
            return _down_without_state(where, exc, say)
        stopped = False
        if state is not None:
            from podtally.local import supervisor

            supervisor.stop(where)  # issue 15: first, or it would start HAProxy again
            runner = Controller(state, say)
            with _torn_down_on(
                KeyboardInterrupt, _INTERRUPTED, runner.kill_all, where, state.socket_path, say
            ):
                if runner.haproxy_alive():
                    say("stopping HAProxy")
                stopped = runner.stop_all()
        _remove_run_dir(state, where)
        return stopped
