"""podman, as the local stack uses it to run replicas from the image (``podtally up --image``).

Where podman's defaults cannot work, a ``containers.conf`` pointed to by ``CONTAINERS_CONF``
(unless the caller set one) says what to use instead. It is the file
``scripts/image-podman.sh`` writes for ``make image`` and ``make image-test``, byte for byte,
at the same place (a test compares the two):

* no systemd as PID 1: cgroupfs as the cgroup manager and a file as the events log;
* runc when it is installed (Debian's podman works with it as root where crun may not);
* ulimits no higher than this process's own hard limits (podman's default nofile cannot be
  granted without CAP_SYS_RESOURCE), nproc capped at 32768.

Every container of a stack carries the labels :data:`STACK_LABEL` and :data:`RUN_DIR_LABEL`,
so that whatever outlives its podman client (a SIGKILLed client leaves its container running
under conmon) is found and removed by the run directory it belongs to.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
from pathlib import Path

from podtally.errors import MissingDependencyError, PodtallyError, UsageError

STACK_LABEL = "io.podtally.stack"
RUN_DIR_LABEL = "io.podtally.run-dir"
POD_LABEL = "io.podtally.pod"
NPROC_CAP = 32768
# How long a podman command that only asks or removes may take (removal waits for a drain).
_TIMEOUT = 60.0


def conf_text() -> str:
    """The ``containers.conf`` this machine needs (what scripts/image-podman.sh writes)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    if nproc == resource.RLIM_INFINITY or nproc > NPROC_CAP:
        nproc = NPROC_CAP
    ulimits = []
    if nofile != resource.RLIM_INFINITY:
        ulimits.append(f'"nofile={nofile}:{nofile}"')
    ulimits.append(f'"nproc={nproc}:{nproc}"')
    lines = ["[containers]", f"default_ulimits = [{','.join(ulimits)}]", "[engine]"]
    if not Path("/run/systemd/system").is_dir():
        lines += ['cgroup_manager = "cgroupfs"', 'events_logger = "file"']
    if shutil.which("runc"):
        lines.append('runtime = "runc"')
    return "\n".join(lines) + "\n"


def conf_dir() -> Path:
    """Where it goes: ``$XDG_RUNTIME_DIR`` (else ``$TMPDIR``, else /tmp)/podtally-image-UID."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp"  # noqa: S108
    return Path(base) / f"podtally-image-{os.getuid()}"


def podman_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) with ``CONTAINERS_CONF`` set, the file written."""
    env = dict(os.environ if environ is None else environ)
    if env.get("CONTAINERS_CONF"):
        return env
    where = conf_dir()
    where.mkdir(parents=True, exist_ok=True)
    target = where / "containers.conf"
    tmp = where / f"containers.conf.{os.getpid()}"
    tmp.write_text(conf_text())
    os.replace(tmp, target)  # atomic: several podman users may write it at once
    env["CONTAINERS_CONF"] = str(target)
    return env


def find_podman() -> str:
    """The podman binary; MissingDependencyError (exit 3) naming what to install if none."""
    found = shutil.which("podman")
    if found is None:
        raise MissingDependencyError(
            "podman is not installed: replicas from an image run as podman containers "
            "(on Debian: apt-get install podman runc; 'make image' installs them and builds "
            "the image)"
        )
    return found


def podman(*args: str, timeout: float = _TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` with this machine's settings; output captured, never raised on."""
    command = [find_podman(), *args]
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=podman_env(),
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise PodtallyError(f"podman {args[0]} did not finish within {timeout:g} s") from None


def check_image(image: str) -> None:
    """UsageError (``setting="image"``) unless podman's image store has ``image``."""
    found = podman("image", "exists", image)
    if found.returncode == 1:
        raise UsageError(
            f"no image {image} in podman's image store (`podman pull` it, or build it in a "
            f"podtally checkout: make image IMAGE={image})",
            setting="image",
            value=image,
        )
    if found.returncode != 0:
        detail = (found.stderr.strip().splitlines() or ["no message"])[-1]
        raise PodtallyError(f"podman cannot look up image {image}: {detail}")


def stack_id(run_dir: Path) -> str:
    """A short tag for the stack at ``run_dir``: stacks of one name in two run directories
    (tests, demos side by side) get containers of different names."""
    return hashlib.sha256(str(Path(run_dir).absolute()).encode()).hexdigest()[:8]


def container_name(run_dir: Path, pod: str) -> str:
    """The name of the container that runs ``pod`` of the stack at ``run_dir``."""
    return f"{pod}-{stack_id(run_dir)}"


def labels(name: str, run_dir: Path, pod: str) -> list[str]:
    """``--label`` flags that tie a container to its stack."""
    return [
        f"--label={STACK_LABEL}={name}",
        f"--label={RUN_DIR_LABEL}={Path(run_dir).absolute()}",
        f"--label={POD_LABEL}={pod}",
    ]


def containers_of(run_dir: Path) -> dict[str, str]:
    """The stack's containers, running or not: ``name -> state`` (running, exited, ...).
    Without podman there are none (so cleaning up after a failed ``up`` needs no podman)."""
    if shutil.which("podman") is None:
        return {}
    where = f"label={RUN_DIR_LABEL}={Path(run_dir).absolute()}"
    out = podman("ps", "--all", "--filter", where, "--format", "json")
    if out.returncode != 0:
        return {}
    try:
        listed = json.loads(out.stdout or "[]")
    except ValueError:
        return {}
    found: dict[str, str] = {}
    for entry in listed if isinstance(listed, list) else []:
        for name in entry.get("Names") or []:
            found[str(name)] = str(entry.get("State", ""))
    return found


def remove(names: list[str], grace: float) -> None:
    """Stop (the image's stop signal, then SIGKILL after ``grace`` seconds) and remove the
    containers ``names``; those already gone are no error."""
    if not names or shutil.which("podman") is None:
        return
    out = podman(
        "rm", "--force", "--ignore", "--time", str(max(0, round(grace))), *names,
        timeout=_TIMEOUT + grace,
    )  # fmt: skip
    if out.returncode != 0:
        detail = (out.stderr.strip().splitlines() or ["no message"])[-1]
        raise PodtallyError(f"podman could not remove {', '.join(names)}: {detail}")


def remove_stack(run_dir: Path, grace: float) -> None:
    """Stop and remove every container of the stack at ``run_dir`` (their podman clients,
    attached, exit with them)."""
    remove(sorted(containers_of(run_dir)), grace)
