"""What every operation on the stack needs: its recorded state read with a way out when it cannot
be, the error for a stack whose HAProxy is gone, the note while another command holds the lock,
the replicas' template hash, and the supervisor started (again) after a change."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from podtally.errors import NotRunningError, PodtallyError
from podtally.local import state as st
from podtally.local.models import StackConfig, command_hint
from podtally.local.placement import template_hash as pod_template_hash
from podtally.local.polling import Progress


def quiet(_: str) -> None:
    """The progress callback of a caller that gave none."""


def template_hash(config: StackConfig, restarted_at: str) -> str:
    """The replicas' template hash (part of their pod names); ``restart`` gives it a new time."""
    return pod_template_hash(config.name, config.namespace, config.drain_seconds, restarted_at)


def lock_note(name: str, say: Progress) -> Callable[[], None]:
    """What to say when another command holds the stack's lock."""
    return lambda: say(f"waiting for another podtally command on stack {name!r} ...")


def load_state(name: str, run_dir: Path) -> st.StackState | None:
    """The recorded state; an unreadable file is an error that says how to get out of it."""
    try:
        return st.load(run_dir)
    except st.UnreadableStateError as exc:
        raise PodtallyError(
            f"{exc}; {command_hint('down', name, run_dir)} stops whatever still runs from "
            f"{run_dir} and removes it"
        ) from exc


def haproxy_gone(name: str, run_dir: Path, state: st.StackState) -> NotRunningError:
    """The error for a recorded stack whose HAProxy no longer runs, with the way out."""
    pid = f" (pid {state.haproxy_pid})" if state.haproxy_pid > 0 else ""
    return NotRunningError(
        f"stack {name!r} is not up: its HAProxy{pid} is not running; "
        f"{command_hint('down', name, run_dir)} stops what is left, then "
        f"{command_hint('up', name, run_dir)} starts it again"
    )


def supervise(run_dir: Path, start: bool = False) -> None:
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
