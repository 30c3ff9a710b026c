"""The run directory of a stack: where it lives, what it records, who may change it, and the
small process helpers that decide whether a recorded pid still belongs to the stack.

One directory per stack name holds everything the stack owns: ``state.json`` (pids, addresses,
pod names), ``haproxy.cfg``, the runtime API socket, ``tls/`` and ``logs/``. ``down`` removes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podtally.errors import PodtallyError, UsageError

STATE_ENV = "PODTALLY_STATE_DIR"
STATE_FILE = "state.json"
STATE_VERSION = 1


def state_root() -> Path:
    """Where stacks keep their run directories.

    ``$PODTALLY_STATE_DIR``, else ``$XDG_STATE_HOME/podtally``, else ``~/.local/state/podtally``.
    """
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "podtally"


def resolve_run_dir(name: str, run_dir: Path | None) -> Path:
    return (Path(run_dir) if run_dir is not None else state_root() / name).absolute()


# Errors that say the path itself is unusable (the user's choice of directory), not that the
# machine is in trouble (a full disk, an I/O error).
_PATH_ERRNOS = frozenset(
    {
        errno.ENOTDIR,
        errno.EEXIST,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.ENOENT,
    }
)


def path_error(exc: OSError, action: str, path: Path) -> PodtallyError:
    """One line for an OSError on the stack's files: UsageError (exit 2) when the path is the
    problem, PodtallyError (exit 3) otherwise. ``action`` completes "cannot ...", e.g. "create"."""
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        reason = "a file is in the way where a directory should be"
    message = f"cannot {action} {path}: {reason}"
    if exc.errno in _PATH_ERRNOS:
        return UsageError(f"{message}; point {STATE_ENV} at a directory you can write to")
    return PodtallyError(message)


def check_run_dir(run_dir: Path) -> None:
    """UsageError if ``run_dir`` or one of its parents exists but is not a directory."""
    for path in (run_dir, *run_dir.parents):
        try:
            mode = path.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # missing, or a parent is a file: the parent tells which
        except OSError as exc:
            raise path_error(exc, "use", path) from exc
        if not stat.S_ISDIR(mode):
            raise UsageError(
                f"cannot use {run_dir} as a run directory: {path} is a file, not a directory; "
                f"point {STATE_ENV} at a directory"
            )
        return  # the nearest existing ancestor is a directory: the rest can be created


def make_dirs(path: Path, mode: int = 0o777) -> None:
    """``mkdir -p``, with a one-line error."""
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as exc:
        raise path_error(exc, "create", path) from exc


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
    replicas: list[ReplicaRecord] = field(default_factory=list)
    created_at: float = 0.0
    version: int = STATE_VERSION

    @property
    def path(self) -> Path:
        return Path(self.run_dir)


# Everything a stack creates in its run directory; nothing else is ever deleted.
OWNED_ENTRIES = frozenset(
    {STATE_FILE, "state.tmp", "haproxy.cfg", "haproxy.tmp", "haproxy.sock", "tls", "logs"}
)


def foreign_entries(run_dir: Path) -> list[str]:
    """Names in ``run_dir`` that podtally did not create (empty if the directory is missing)."""
    try:
        return sorted(p.name for p in run_dir.iterdir() if p.name not in OWNED_ENTRIES)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise path_error(exc, "list", run_dir) from exc


def remove_run_dir(run_dir: Path, socket_path: str | None = None) -> None:
    """Delete what the stack created, and the directory itself if that leaves it empty."""
    if socket_path and Path(socket_path).parent != run_dir:
        with contextlib.suppress(OSError):
            Path(socket_path).unlink()
    for name in OWNED_ENTRIES:
        entry = run_dir / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            # Best effort, as rmtree: this also runs while cleaning up after another error.
            with contextlib.suppress(OSError):
                entry.unlink()
    with contextlib.suppress(OSError):
        run_dir.rmdir()


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


def _acquire(lock_path: Path, deadline: float, on_wait: Callable[[], None]) -> int:
    """Open and flock ``lock_path``; retry if it was removed while we waited for it.

    ``on_wait`` is called once, the first time the lock is found taken.
    """
    told = False
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise path_error(exc, "create the lock file", lock_path) from exc
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not told:
                        told = True
                        on_wait()
                    if time.monotonic() > deadline:
                        raise PodtallyError(
                            f"another podtally command holds {lock_path}; try again later"
                        ) from None
                    time.sleep(0.1)
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)  # the holder removed the file as it finished: lock the new one


def _nothing() -> None:
    return None


@contextlib.contextmanager
def locked(
    run_dir: Path, timeout: float = 120.0, on_wait: Callable[[], None] = _nothing
) -> Iterator[None]:
    """Hold the stack's lock so that two commands never change one stack at once.

    The lock file sits next to the run directory (``.<name>.lock``), so that ``down`` can remove
    the directory while holding it; the lock file goes too once the run directory is gone.
    ``on_wait`` is called once if another command holds the lock (to say why nothing happens).
    """
    check_run_dir(run_dir)
    make_dirs(run_dir.parent)
    lock_path = run_dir.parent / f".{run_dir.name}.lock"
    fd = _acquire(lock_path, time.monotonic() + timeout, on_wait)
    try:
        yield
    finally:
        if not run_dir.exists():
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
        os.close(fd)


# --- processes -----------------------------------------------------------------------------

# Processes this interpreter started: polled through Popen so that they are reaped, never zombies.
_children: dict[int, subprocess.Popen[bytes]] = {}


def adopt(process: subprocess.Popen[bytes]) -> None:
    _children[process.pid] = process


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc (``Z`` for a zombie), or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone" if Path("/proc/self").exists() else None
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    if pid <= 0:
        return False
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    state = _proc_state(pid)
    if state in ("Z", "X", "gone"):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> str | None:
    """The command line of ``pid`` joined by spaces, or None where /proc is not available."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def pid_is(pid: int, *needles: str) -> bool:
    """True if ``pid`` is alive and (where /proc exists) its command line has every needle.

    Guards against signalling an unrelated process that reused the pid of a crashed stack.
    """
    if not pid_alive(pid):
        return False
    if pid in _children:
        return True  # started by this process and not reaped yet: the pid cannot be reused
    line = cmdline(pid)
    # Just after a spawn the command line reads empty until the kernel finishes the exec.
    deadline = time.monotonic() + 1.0
    while line == "" and time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.005)
        line = cmdline(pid)
    if line is None:
        return True
    return all(needle in line for needle in needles)


def group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process is in process group ``pgid``."""
    if pgid <= 0:
        return False
    if pid_alive(pgid):
        return True
    proc = Path("/proc")
    if proc.exists():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def signal_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every process group in ``pids`` is gone; return those still alive."""
    deadline = time.monotonic() + timeout
    remaining = [pid for pid in pids if group_alive(pid)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = [pid for pid in remaining if group_alive(pid)]
    return remaining


def stop_groups(pids: list[int], first: signal.Signals, grace: float) -> bool:
    """Send ``first`` to each leader, SIGKILL each whole group after ``grace`` seconds.

    Every process the stack starts leads its own session (and process group), so a group kill
    takes any worker processes with it. Returns True if anything was running.
    """
    alive = [pid for pid in pids if group_alive(pid)]
    for pid in alive:
        signal_pid(pid, first)
    stubborn = wait_gone(alive, grace)
    for pid in stubborn:
        signal_group(pid, signal.SIGKILL)
    left = wait_gone(stubborn, 5.0)
    if left:
        raise PodtallyError(f"process(es) {', '.join(map(str, left))} survived SIGKILL")
    for pid in alive:
        pid_alive(pid)  # reap our own children
    return bool(alive)


def processes_in(run_dir: Path) -> list[tuple[int, str]] | None:
    """Live processes working in ``run_dir`` (where the stack starts HAProxy and every replica),
    with their command lines; None where /proc is not available.

    What runs from a run directory can be found this way even when ``state.json`` is lost.
    """
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    wanted = os.path.realpath(run_dir)
    found: list[tuple[int, str]] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd").removesuffix(" (deleted)")
        except OSError:
            continue  # gone meanwhile, or not ours to look at
        if cwd != wanted:
            continue
        pid = int(entry.name)
        line = cmdline(pid)
        if line and pid_alive(pid):
            found.append((pid, line))
    return found
