"""The stack's persisted state: ``state.json`` in the run directory, what it records (pids,
addresses, pod names, tracks) and how it is written (atomically) and read back (checked).

Where the run directory is and who may change it: :mod:`podtally.local.rundir`. Whether a
recorded pid still runs: :mod:`podtally.local.processes`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podtally.errors import PodtallyError
from podtally.local.rundir import STATE_FILE, path_error

__all__ = [
    "STATE_FILE",
    "STATE_VERSION",
    "ReplicaRecord",
    "StackState",
    "UnreadableStateError",
    "load",
    "save",
]

STATE_VERSION = 1


@dataclass
class ReplicaRecord:
    """One running replica as the stack started it."""

    ordinal: int  # position in the Deployment, decides the node (0-based)
    server: int  # HAProxy backend slot (1-based), 0 while not yet attached
    pod: str
    node: str
    zone: str
    address: str
    port: int
    pid: int
    template_hash: str
    log: str
    started_at: float
    # The process's start time as the kernel reports it (psutil's create_time): with the pid,
    # it tells the replica from an unrelated process that got the same pid later.
    create_time: float = 0.0
    track: str = "stable"  # the track (set of replicas with one version) it belongs to
    grpc_port: int = 0  # its gRPC port on the same address (0: none, a stack from before gRPC)


@dataclass
class StackState:
    """What ``state.json`` holds."""

    name: str
    config: dict[str, Any]
    run_dir: str
    haproxy_binary: str
    socket_path: str
    ca_path: str | None
    template_hash: str
    multi_address: bool
    haproxy_pid: int = 0
    haproxy_create_time: float = 0.0
    replicas: list[ReplicaRecord] = field(default_factory=list)
    created_at: float = 0.0
    version: int = STATE_VERSION

    @property
    def path(self) -> Path:
        return Path(self.run_dir)


def save(state: StackState) -> None:
    """Write ``state.json`` atomically: a reader sees the old or the new state, never half."""
    target = state.path / STATE_FILE
    tmp = target.with_suffix(".tmp")
    data = json.dumps(dataclasses.asdict(state), indent=2, sort_keys=True)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(data + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        raise path_error(exc, "write", target) from exc


class UnreadableStateError(PodtallyError):
    """``state.json`` exists but cannot be understood (not JSON, or not this version's shape).

    The stack layer adds what to do about it; ``down`` stops what runs from the directory anyway.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.path = path
        self.reason = reason


# The field types state.json must hold, by the annotation text (``from __future__ import
# annotations`` keeps annotations as strings).
_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "str | None": (str, type(None)),
    "bool": (bool,),
    "dict[str, Any]": (dict,),
}


def _checked_fields(cls: type[Any], raw: object, what: str) -> dict[str, Any]:
    """The fields of dataclass ``cls`` from ``raw``, each of the recorded type."""
    if not isinstance(raw, dict):
        raise ValueError(f"{what} is not a JSON object")
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if item.name not in raw:
            if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
                raise ValueError(f"{what} has no {item.name!r}")
            continue
        value = raw[item.name]
        expected = _TYPE_CHECKS.get(str(item.type))
        wrong_bool = isinstance(value, bool) and bool not in (expected or ())
        if expected is not None and (not isinstance(value, expected) or wrong_bool):
            raise ValueError(f"{what}: {item.name!r} is {type(value).__name__}")
        values[item.name] = value
    unknown = sorted(set(raw) - {item.name for item in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"{what} has unknown fields {', '.join(unknown)}")
    return values


def load(run_dir: Path) -> StackState | None:
    """The recorded state, or None when there is none.

    A file that is not this version's state raises :class:`UnreadableStateError`.
    """
    path = run_dir / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise path_error(exc, "read", path) from exc
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise UnreadableStateError(path, f"not valid JSON ({exc})") from exc
    try:
        values = _checked_fields(StackState, raw, "the state")
        items = values.pop("replicas", [])
        if not isinstance(items, list):
            raise ValueError("'replicas' is not a list")
        replicas = [ReplicaRecord(**_checked_fields(ReplicaRecord, i, "a replica")) for i in items]
        if values.get("version", STATE_VERSION) != STATE_VERSION:
            raise ValueError(f"version {values['version']!r}, not {STATE_VERSION}")
    except ValueError as exc:
        raise UnreadableStateError(
            path, f"not a state file of this podtally version ({exc})"
        ) from exc
    return StackState(replicas=replicas, **values)
