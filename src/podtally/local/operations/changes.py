"""Changes to a running stack that fail no request: ``restart`` (a rolling restart) and ``scale``.

* ``restart``: like ``kubectl rollout restart`` with maxSurge 1, maxUnavailable 0: for each replica
  a new one (new template hash, new pod name) starts, turns ready and is UP in HAProxy before the
  old one is set to drain in HAProxy, sent SIGTERM, and killed if it outlives a bound. The old one
  drains while the next replacement starts.
* ``scale``: new replicas join the same way; removed ones leave the same way.

Each runs under the stack's lock. Interrupted or failing half-way, it stops the new replicas not
yet in rotation and keeps the others serving; each step sits beside its undoing (the functions'
docstrings say what is left).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from podtally.errors import NotRunningError
from podtally.local import rundir
from podtally.local import state as st
from podtally.local.controller import Controller
from podtally.local.models import (
    DEFAULT_NAME,
    MAX_REPLICAS,
    STABLE,
    Stack,
    StackConfig,
    command_hint,
)
from podtally.local.operations import common
from podtally.local.polling import Progress
from podtally.local.signals import deferred_interrupts, no_interrupts


def _running_or_raise(name: str, run_dir: Path, say: Progress) -> Controller:
    """The runner of a live stack for ``restart`` and ``scale``, which change nothing otherwise:
    a stack whose HAProxy is gone is left for ``down`` (or ``up``) to clean up."""
    state = common.load_state(name, run_dir)
    if state is None:
        raise NotRunningError(
            f"stack {name!r} is not up ({command_hint('up', name, run_dir)} starts it)"
        )
    runner = Controller(state, say)
    if not runner.haproxy_alive():
        raise common.haproxy_gone(name, run_dir, state)
    return runner


def restart(
    name: str = DEFAULT_NAME, run_dir: Path | None = None, progress: Progress | None = None
) -> Stack:
    """Rolling restart: one replica at a time, the new one UP before the old one drains.

    Replicas that exited are replaced like the others. If it is interrupted (Ctrl-C, SIGTERM)
    or fails, the replacement not yet in rotation is stopped, the old replicas already draining
    finish, and every other replica keeps running: the stack has as many replicas as before.
    """
    say = progress or common.quiet
    where = rundir.resolve_run_dir(name, run_dir)
    with rundir.locked(where, on_wait=common.lock_note(name, say)):
        runner = _running_or_raise(name, where, say)
        template_hash = common.template_hash(runner.config, restarted_at=f"{time.time():.6f}")
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
        common.supervise(where)
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
    say = progress or common.quiet
    where = rundir.resolve_run_dir(name, run_dir)
    with rundir.locked(where, on_wait=common.lock_note(name, say)):
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
        common.supervise(where)
        return runner.snapshot()
