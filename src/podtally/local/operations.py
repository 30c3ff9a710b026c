"""The stack's operations, as the CLI and library callers use them: ``up``, ``status``,
``restart``, ``scale``, ``down``, each under the stack's lock and each recovering from a crash
or an interrupt half-way.

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

Somewhat over 400 lines on purpose: each operation sits beside its recovery path (what an
interrupt or a failure half-way leaves, and how it is undone), and they read best together.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from podtally.errors import MissingDependencyError, NotRunningError, PodtallyError, UsageError
from podtally.local import haproxy as hap
from podtally.local import processes as proc
from podtally.local import rundir
from podtally.local import state as st
from podtally.local.container import remove_stack
from podtally.local.controller import Controller
from podtally.local.models import (
    DEFAULT_NAME,
    LOCAL_DRAIN_SECONDS,
    MAX_REPLICAS,
    STABLE,
    AlreadyUpError,
    Stack,
    StackConfig,
    command_hint,
)
from podtally.local.placement import LOOPBACK, multi_address_loopback, replica_address
from podtally.local.placement import template_hash as make_template_hash
from podtally.local.polling import Progress
from podtally.local.signals import deferred_interrupts, no_interrupts
from podtally.net import bind_error


def _quiet(_: str) -> None:
    return None


def _remove_run_dir(state: st.StackState | None, run_dir: Path) -> None:
    rundir.remove_run_dir(run_dir, state.socket_path if state is not None else None)


def _template_hash(config: StackConfig, restarted_at: str) -> str:
    return make_template_hash(config.name, config.namespace, config.drain_seconds, restarted_at)


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


def _load_running(name: str, run_dir: Path, progress: Progress) -> Controller | None:
    """The runner of a live stack, or None. Stale state (HAProxy gone) is cleaned up (``up``)."""
    state = _load_state(name, run_dir)
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
    with rundir.locked(run_dir, on_wait=_lock_note(config.name, say)):
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

        rundir.make_dirs(run_dir, mode=0o700)
        template_hash = _template_hash(config, restarted_at="")
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
        try:
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
        except BaseException:
            with no_interrupts():
                say("start failed: stopping what was started")
                runner.stop_all()
                _remove_run_dir(state, run_dir)
            raise
        _supervise(run_dir, start=True)
        return runner.snapshot()


def _supervise(run_dir: Path, start: bool = False) -> None:
    """Issue 15: the stack's supervisor (podtally.local.supervisor) runs while the stack does;
    ``up`` starts it, and ``restart`` and ``scale`` start it again if it is gone.
    PODTALLY_SUPERVISOR=off runs stacks without one (tests of the commands' own recovery)."""
    from podtally.local import supervisor

    if os.environ.get(supervisor.SWITCH_ENV) == "off":
        return
    if start:
        supervisor.start(run_dir)
    else:
        supervisor.ensure(run_dir)


def status(name: str = DEFAULT_NAME, run_dir: Path | None = None) -> Stack:
    """The running stack, with HAProxy's view of each replica. NotRunningError if it is not up."""
    where = rundir.resolve_run_dir(name, run_dir)
    rundir.check_run_dir(where)
    state = _load_state(name, where)
    if state is None:
        raise NotRunningError(f"stack {name!r} is not up (no state in {where})")
    runner = Controller(state, _quiet)
    if not runner.haproxy_alive():
        raise _haproxy_gone(name, where, state)
    return runner.snapshot()


def _running_or_raise(name: str, run_dir: Path, say: Progress) -> Controller:
    """The runner of a live stack for ``restart`` and ``scale``, which change nothing otherwise:
    a stack whose HAProxy is gone is left for ``down`` (or ``up``) to clean up."""
    state = _load_state(name, run_dir)
    if state is None:
        raise NotRunningError(
            f"stack {name!r} is not up ({command_hint('up', name, run_dir)} starts it)"
        )
    runner = Controller(state, say)
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
    where = rundir.resolve_run_dir(name, run_dir)
    with rundir.locked(where, on_wait=_lock_note(name, say)):
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
                track = runner.track(previous.track)
                fresh = runner.start_replica(previous.ordinal, template_hash, track)
                say(f"{step} started {fresh.pod} on {fresh.node} to replace {previous.pod}")
                runner.wait_ready([fresh])
                runner.attach(fresh)
                runner.wait_up([fresh])
                say(f"{step} {fresh.pod} is UP; draining {previous.pod}")
                with deferred_interrupts():  # both, or neither
                    kept.add(fresh.pod)
                    draining.append(previous)
                # The old replica drains while the next new one starts, as in a Deployment.
                runner.drain([previous])
                draining = runner.finish(draining, wait=False)
            if draining:
                say(f"waiting for {len(draining)} old replica(s) to finish draining")
        except BaseException:
            with no_interrupts():
                strays = [r for r in runner.state.replicas if r.pod not in original | kept]
                if strays:
                    say("stopping " + ", ".join(r.pod for r in strays) + " (not in rotation yet)")
                runner.retire(strays)
            raise
        finally:
            with no_interrupts():
                runner.drain([r for r in draining if not runner.terminated(r)])
                runner.finish(draining, wait=True)
                runner.write_haproxy_config()
        _supervise(where)
        return runner.snapshot()


def _removal_order(runner: Controller, live: list[st.ReplicaRecord]) -> list[st.ReplicaRecord]:
    """Live replicas in the order a scale-down removes them, as a ReplicaSet does: the ones
    HAProxy does not see UP first, then the highest ordinals, the newest first."""
    health = runner.health_by_pod()
    return sorted(live, key=lambda r: (health.get(r.pod) == "UP", -r.ordinal, -r.started_at))


def _add_replicas(runner: Controller, ordinals: list[int], before: StackConfig) -> None:
    """Start replicas for ``ordinals`` and put them in rotation once ready; on any failure or
    interrupt, stop the ones not in rotation and go back to the configuration ``before``."""
    original = {r.pod for r in runner.state.replicas}
    try:
        fresh: list[st.ReplicaRecord] = []
        for ordinal in ordinals:
            fresh.append(
                runner.start_replica(ordinal, runner.state.template_hash, runner.track(STABLE))
            )
        runner.wait_ready(fresh)
        for record in fresh:
            runner.attach(record)
        runner.wait_up(fresh)
    except BaseException:
        with no_interrupts():
            new = [r for r in runner.state.replicas if r.pod not in original]
            if new:
                runner.progress(
                    "stopping " + ", ".join(r.pod for r in new) + " (not in rotation yet)"
                )
            runner.retire(new)
            runner.set_config(before)
        raise


def _remove_replicas(runner: Controller, leaving: list[st.ReplicaRecord]) -> None:
    """Drain and stop ``leaving``; on any failure or interrupt, put the ones that did not get
    SIGTERM yet back into rotation and record as many replicas as are left."""
    try:
        runner.retire(leaving)
    except BaseException:
        with no_interrupts():
            back = [r for r in leaving if runner.replica_alive(r) and not runner.terminated(r)]
            runner.undrain(back)
            stopping = [r for r in leaving if r not in back and runner.replica_alive(r)]
            if stopping:
                runner.progress(
                    f"waiting for {len(stopping)} replica(s) already sent SIGTERM to finish "
                    f"draining (at most {runner.config.drain_seconds + 10:g} s)"
                )
            runner.finish([r for r in leaving if r not in back], wait=True)
            stable = sum(1 for r in runner.state.replicas if r.track == STABLE)
            room = MAX_REPLICAS - runner.config.canary_replicas
            count = max(1, min(room, stable))
            runner.set_config(dataclasses.replace(runner.config, replicas=count))
        raise


def scale(
    replicas: int,
    name: str = DEFAULT_NAME,
    run_dir: Path | None = None,
    progress: Progress | None = None,
) -> Stack:
    """Bring the stack's stable track to ``replicas`` running replicas, like a ReplicaSet (a
    canary track keeps its replicas, and HAProxy's weights keep its share of the requests).

    Replicas whose process exited are replaced (new ones join once UP in HAProxy) and removed.
    Scaling down removes the replicas HAProxy does not see UP first, then the highest ordinals;
    they are drained in HAProxy before they get SIGTERM. If it is interrupted (Ctrl-C, SIGTERM)
    or fails, new replicas not yet in rotation are stopped and replicas not yet sent SIGTERM
    are put back into rotation. The returned stack may still be degraded (a replica running
    but not UP, which scaling leaves alone): check :attr:`Stack.ready`.
    """
    say = progress or _quiet
    where = rundir.resolve_run_dir(name, run_dir)
    with rundir.locked(where, on_wait=_lock_note(name, say)):
        runner = _running_or_raise(name, where, say)
        before = runner.config
        target = dataclasses.replace(before, replicas=replicas)  # validates the count
        current = runner.replicas_of(STABLE)
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
        _supervise(where)
        return runner.snapshot()


def _down_without_state(where: Path, problem: st.UnreadableStateError, say: Progress) -> bool:
    """``down`` for a run directory whose state.json cannot be read: stop what runs from it.

    The stack starts HAProxy and every replica with the run directory as working directory;
    of those processes, the ones that are HAProxy on its ``haproxy.cfg`` or ``podtally serve``
    are stopped as ``down`` stops them. Then the run directory is removed as usual.
    """
    found = proc.processes_in(where)
    haproxy = [pid for pid, line in found if "haproxy" in line and "haproxy.cfg" in line]
    replicas = [pid for pid, line in found if "podtally serve" in line and "--port" in line]
    say(
        f"{problem.path} is unreadable: stopping the {len(haproxy) + len(replicas)} "
        f"process(es) that run from {where}"
    )
    try:
        proc.stop_groups(haproxy, signal.SIGUSR1, grace=10.0)
        proc.stop_groups(replicas, signal.SIGTERM, grace=LOCAL_DRAIN_SECONDS + 10.0)
        remove_stack(where, grace=LOCAL_DRAIN_SECONDS)  # replicas run from an image (issue 16)
    except KeyboardInterrupt:
        with no_interrupts():
            say("interrupted: killing what is left of the stack")
            proc.kill_groups(haproxy + replicas)
            rundir.remove_run_dir(where, hap.socket_path(where))
        raise
    rundir.remove_run_dir(where, hap.socket_path(where))
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
    say = progress or _quiet
    where = rundir.resolve_run_dir(name, run_dir)
    rundir.check_run_dir(where)
    if not where.exists():
        return False
    with rundir.locked(where, on_wait=_lock_note(name, say)):
        try:
            state = st.load(where)
        except st.UnreadableStateError as exc:
            return _down_without_state(where, exc, say)
        stopped = False
        if state is not None:
            from podtally.local import supervisor

            supervisor.stop(where)  # issue 15: first, or it would start HAProxy again
            runner = Controller(state, say)
            try:
                if runner.haproxy_alive():
                    say("stopping HAProxy")
                stopped = runner.stop_all()
            except KeyboardInterrupt:
                with no_interrupts():
                    say("interrupted: killing what is left of the stack")
                    runner.kill_all()
                    _remove_run_dir(state, where)
                raise
        _remove_run_dir(state, where)
        return stopped
