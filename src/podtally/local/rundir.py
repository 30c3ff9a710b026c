"""A stack's run directory: where it lives, what podtally may delete in it, and the lock that
keeps two commands from changing one stack at once.

One directory per stack name holds everything the stack owns: ``state.json`` (see
:mod:`podtally.local.state`), ``haproxy.cfg``, the runtime API socket, ``tls/`` and ``logs/``.
``down`` removes it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from podtally.errors import PodtallyError, UsageError

STATE_ENV = "PODTALLY_STATE_DIR"
STATE_FILE = "state.json"


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


# Everything a stack creates in its run directory; nothing else is ever deleted.
OWNED_ENTRIES = frozenset(
    {STATE_FILE, "state.tmp", "haproxy.cfg", "haproxy.tmp", "haproxy.sock", "tls", "logs"}
    | {"supervisor.json", "supervisor.tmp"}  # podtally.local.supervisor
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
