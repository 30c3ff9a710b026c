"""Stack selection, preconditions and the preview/up/destroy/outputs operations.

Every precondition is checked before Pulumi starts, and each failure is one
:class:`~podtally.errors.PodtallyError` whose message says what to install or set:

* the cloud extra (the ``pulumi`` packages)  -> ``pip install 'podtally[cloud]'``
* the ``pulumi`` CLI (the Automation API runs it) -> the install page
* AWS credentials (for preview, up and down)  -> which variables or files to set
* the passphrase of the stack's secrets       -> ``PULUMI_CONFIG_PASSPHRASE``

State goes to a local file backend under ``$XDG_STATE_HOME/podtally/pulumi`` (by default
``~/.local/state/podtally/pulumi``), never into the repository; ``PULUMI_BACKEND_URL`` (for
example ``s3://bucket/prefix``) overrides it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podtally.errors import MissingDependencyError, NotRunningError, PodtallyError, UsageError

Progress = Callable[[str], None]
INSTALL_URL = "https://www.pulumi.com/docs/install/"
SECRETS_PROVIDER = "passphrase"


@dataclass(frozen=True)
class StackRef:
    """Which stack of which program, and where its state lives."""

    name: str
    infra_dir: Path
    backend: str


def find_infra_dir(explicit: Path | None = None) -> Path:
    """The Pulumi project: ``--infra-dir``, else ``infra/`` next to ``src/`` in a checkout."""
    candidates = [explicit] if explicit else [Path(__file__).resolve().parents[3] / "infra"]
    for path in candidates:
        if path is not None and (path / "Pulumi.yaml").is_file():
            return path.resolve()
    where = explicit if explicit else "the podtally checkout"
    raise UsageError(f"no Pulumi project (Pulumi.yaml) in {where}: pass --infra-dir DIR")


def backend_url(env: Mapping[str, str] | None = None) -> str:
    """``PULUMI_BACKEND_URL`` if set, else a file backend in the user's state directory."""
    env = os.environ if env is None else env
    if env.get("PULUMI_BACKEND_URL"):
        return env["PULUMI_BACKEND_URL"]
    home = env.get("HOME") or str(Path.home())
    state_home = env.get("XDG_STATE_HOME") or str(Path(home) / ".local" / "state")
    return "file://" + str(Path(state_home) / "podtally" / "pulumi")


def _require_cloud_extra() -> None:
    try:
        import pulumi.automation  # noqa: F401
        import pulumi_aws  # noqa: F401
        import pulumi_kubernetes  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"the cloud commands need {exc.name or 'pulumi'}: pip install 'podtally[cloud]'"
        ) from None


def check_pulumi_cli(env: Mapping[str, str] | None = None) -> str:
    """The path of the ``pulumi`` executable, or a one-line error saying where to get it."""
    env = os.environ if env is None else env
    found = shutil.which("pulumi", path=env.get("PATH", ""))
    if not found:
        raise MissingDependencyError(f"the pulumi CLI is not installed: see {INSTALL_URL}")
    return found


def check_aws_credentials(env: Mapping[str, str] | None = None) -> str:
    """Where AWS credentials would come from, or a one-line error saying what to set.

    This looks for the sources the AWS SDKs read, without calling AWS: keys in the environment,
    a profile, web identity (CI), a container credentials endpoint, or the shared files.
    """
    env = os.environ if env is None else env
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return "AWS_ACCESS_KEY_ID"
    for var in (
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):
        if env.get(var):
            return var
    home = Path(env.get("HOME") or Path.home())
    files = [
        Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials"),
        Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config"),
    ]
    for path in files:
        if path.is_file():
            return str(path)
    raise PodtallyError(
        "no AWS credentials found: set AWS_PROFILE (after 'aws configure' or 'aws sso login'), "
        "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )


def _check_passphrase(env: Mapping[str, str]) -> None:
    if "PULUMI_CONFIG_PASSPHRASE" in env or env.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return
    raise UsageError(
        "PULUMI_CONFIG_PASSPHRASE is not set: it encrypts the stack's secrets (the kubeconfig); "
        "export it (or PULUMI_CONFIG_PASSPHRASE_FILE) and keep it: it opens the stack later"
    )


def _one_line(exc: Exception) -> str:
    """The most telling line of a Pulumi CLI failure (its last ``error:`` line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line.lower()]
    chosen = errors[-1] if errors else (lines[-1] if lines else type(exc).__name__)
    if chosen.lower().startswith("error:"):
        chosen = chosen[6:].strip()
    return chosen[:400]


def _open(ref: StackRef, *, create: bool, need_aws: bool, progress: Progress) -> Any:
    """Select (or create) the stack, after every precondition holds (checked in this order)."""
    env = os.environ
    _require_cloud_extra()
    check_pulumi_cli(env)
    if need_aws:
        check_aws_credentials(env)
    _check_passphrase(env)
    from pulumi import automation as auto

    if ref.backend.startswith("file://"):
        Path(ref.backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    workspace_env = {
        "PULUMI_BACKEND_URL": ref.backend,
        # The program runs under this interpreter: the one with podtally and the cloud extra.
        "PULUMI_PYTHON_CMD": sys.executable,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(ref.infra_dir), env_vars=workspace_env, secrets_provider=SECRETS_PROVIDER
    )
    progress(f"stack {ref.name} of {ref.infra_dir} (state: {ref.backend})")
    try:
        if create:
            return auto.create_or_select_stack(ref.name, work_dir=str(ref.infra_dir), opts=opts)
        return auto.select_stack(ref.name, work_dir=str(ref.infra_dir), opts=opts)
    except auto.StackNotFoundError:
        raise NotRunningError(
            f"stack {ref.name!r} does not exist in {ref.backend}: run 'podtally cloud up' first"
        ) from None
    except auto.CommandError as exc:
        raise PodtallyError(f"pulumi could not open stack {ref.name!r}: {_one_line(exc)}") from None


def _run(action: str, call: Callable[[], Any]) -> Any:
    from pulumi import automation as auto

    try:
        return call()
    except auto.ConcurrentUpdateError:
        raise PodtallyError(
            f"{action}: another update of this stack is running (or crashed; then run "
            "'pulumi cancel' in infra/ with the same PULUMI_BACKEND_URL)"
        ) from None
    except auto.CommandError as exc:
        raise PodtallyError(f"{action} failed: {_one_line(exc)}") from None


def preview(ref: StackRef, progress: Progress) -> dict[str, int]:
    """What ``up`` would change, by operation (create, update, delete, same)."""
    stack = _open(ref, create=True, need_aws=True, progress=progress)
    result = _run("preview", lambda: stack.preview(on_output=progress, color="never"))
    return {str(k): int(v) for k, v in result.change_summary.items()}


def up(ref: StackRef, progress: Progress) -> dict[str, Any]:
    """Create or update everything; return the stack outputs (secrets redacted)."""
    stack = _open(ref, create=True, need_aws=True, progress=progress)
    result = _run("up", lambda: stack.up(on_output=progress, color="never"))
    return _plain_outputs(result.outputs)


def destroy(ref: StackRef, progress: Progress) -> dict[str, int]:
    """Delete everything the stack created; return the summary of deletions."""
    stack = _open(ref, create=False, need_aws=True, progress=progress)
    result = _run("down", lambda: stack.destroy(on_output=progress, color="never"))
    return {str(k): int(v) for k, v in (result.summary.resource_changes or {}).items()}


def read_outputs(ref: StackRef, progress: Progress) -> dict[str, Any]:
    """The stack's current outputs (secrets redacted), without touching the cloud."""
    stack = _open(ref, create=False, need_aws=False, progress=progress)
    return _plain_outputs(_run("reading outputs", stack.outputs))


def _plain_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: "[secret]" if getattr(value, "secret", False) else getattr(value, "value", value)
        for key, value in outputs.items()
    }
