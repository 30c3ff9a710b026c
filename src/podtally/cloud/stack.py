"""Stack selection, preconditions and the preview/up/destroy/outputs operations.

Every precondition is checked before Pulumi starts, in this order, and each failure is one
:class:`~podtally.errors.PodtallyError` whose message says what to install or set:

* a valid stack name                          -> Pulumi's rules for stack names
* the cloud extra (the ``pulumi`` packages)  -> ``pip install 'podtally[cloud]'``
* the ``pulumi`` CLI on PATH (the Automation API runs it) -> the install page
* the AWS CLI on PATH (preview, up, down: the kubeconfig runs ``aws eks get-token``)
* AWS credentials (preview, up, down)         -> which variables or files to set
  (resolved by botocore when installed: :mod:`podtally.cloud.credentials`)
* the passphrase of the stack's secrets       -> ``PULUMI_CONFIG_PASSPHRASE``
* a working ``pulumi`` of a version the SDK supports (``pulumi version`` is run only now)
* the stack file (preview, up): copied from the template on first use, then edit it

State goes to a local file backend under ``$XDG_STATE_HOME/podtally/pulumi`` (by default
``~/.local/state/podtally/pulumi``), never into the repository; ``PULUMI_BACKEND_URL`` (for
example ``s3://bucket/prefix``) overrides it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podtally.cloud.credentials import check_aws_credentials
from podtally.errors import (
    MissingDependencyError,
    NotRunningError,
    Phrase,
    PodtallyError,
    Setting,
    UsageError,
)

Progress = Callable[[str], None]
INSTALL_URL = "https://www.pulumi.com/docs/install/"
AWS_CLI_URL = "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
TEMPLATE = "stack.example.yaml"
# Pulumi's rule for a stack name: letters, digits, hyphens, underscores and periods.
STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
SECRETS_PROVIDER = "passphrase"


@dataclass(frozen=True)
class StackRef:
    """Which stack of which program, and where its state lives."""

    name: str
    infra_dir: Path
    backend: str

    @property
    def stack_file(self) -> Path:
        return self.infra_dir / f"Pulumi.{self.name}.yaml"


def check_stack_name(name: str) -> str:
    """A name Pulumi accepts for a stack (and that makes a file name ``Pulumi.NAME.yaml``)."""
    if not STACK_NAME.fullmatch(name) or name.startswith("."):
        raise UsageError(
            "is not a valid stack name: use up to 100 letters, digits, '-', '_' and '.' "
            "(not first)",
            setting="stack",
            value=name,
        )
    return name


def find_infra_dir(explicit: Path | None = None) -> Path:
    """The Pulumi project: ``explicit`` (the ``infra_dir`` setting), else ``infra/`` next to
    ``src/`` in a checkout."""
    candidates = [explicit] if explicit else [Path(__file__).resolve().parents[3] / "infra"]
    for path in candidates:
        if path is not None and (path / "Pulumi.yaml").is_file():
            return path.resolve()
    if explicit:
        raise UsageError(
            "no Pulumi project (Pulumi.yaml) in it", setting="infra_dir", value=explicit
        )
    raise UsageError(
        Phrase(
            "no Pulumi project (Pulumi.yaml) in the podtally checkout: pass ",
            Setting("infra_dir"),
            " DIR",
        )
    )


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


def find_program(name: str, env: Mapping[str, str] | None, missing: str) -> str:
    """The path of program ``name`` on ``env``'s PATH, else :class:`MissingDependencyError`
    saying ``missing``."""
    env = os.environ if env is None else env
    found = shutil.which(name, path=env.get("PATH", ""))
    if not found:
        raise MissingDependencyError(missing)
    return found


def check_pulumi_cli(env: Mapping[str, str] | None = None) -> str:
    """The path of the ``pulumi`` executable, or a one-line error saying where to get it."""
    return find_program("pulumi", env, f"the pulumi CLI is not installed: see {INSTALL_URL}")


def check_aws_cli(env: Mapping[str, str] | None = None) -> str:
    """The path of the ``aws`` executable: the kubeconfig authenticates with ``aws eks
    get-token``, so without it ``up`` fails when it reaches the cluster and ``down`` cannot
    delete the Ingress (and so strands the ALB)."""
    return find_program(
        "aws",
        env,
        f"the AWS CLI (aws) is not installed; the kubeconfig runs 'aws eks get-token': "
        f"see {AWS_CLI_URL}",
    )


def _minimum_pulumi_version() -> str:
    from pulumi.automation._minimum_version import _MINIMUM_VERSION

    return str(_MINIMUM_VERSION)


def pulumi_command(path: str) -> Any:
    """A ``PulumiCommand`` for the CLI at ``path``, after it ran ``pulumi version`` and its
    version passed the SDK's check; anything else is one line naming the binary and the version
    needed."""
    from pulumi import automation as auto

    minimum = _minimum_pulumi_version()
    need = f"podtally needs pulumi >= {minimum} (major version 3): see {INSTALL_URL}"
    # Run once here with stderr captured (PulumiCommand lets a failing CLI's stderr through).
    try:
        probe = subprocess.run(
            [path, "version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
        )
    except subprocess.TimeoutExpired:
        raise MissingDependencyError(f"{path} did not answer 'pulumi version'; {need}") from None
    except OSError as exc:
        raise MissingDependencyError(f"{path} cannot be run ({exc.strerror}); {need}") from None
    if probe.returncode != 0:
        said = next((ln.strip() for ln in probe.stderr.splitlines() if ln.strip()), "")
        detail = f": {said[:200]}" if said else ""
        raise MissingDependencyError(
            f"{path} does not work ('pulumi version' exited {probe.returncode}{detail}); {need}"
        )
    try:
        return auto.PulumiCommand()  # runs `pulumi version` from PATH: the one found above
    except subprocess.CalledProcessError as exc:
        raise MissingDependencyError(
            f"{path} does not work ('pulumi version' exited {exc.returncode}); {need}"
        ) from None
    except auto.InvalidVersionError as exc:
        found = re.search(r"(?:CLI )?version (?:is )?v?(\d+\.\d+\.\d+\S*?)[ .,]", str(exc) + " ")
        what = f"is version {found.group(1)}" if found else _first_sentence(exc)
        raise MissingDependencyError(f"{path} {what}; {need}") from None
    except OSError as exc:
        raise MissingDependencyError(f"{path} cannot be run ({exc.strerror}); {need}") from None


def _first_sentence(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text.split(". ", 1)[0].rstrip(".") if text else type(exc).__name__


def _check_passphrase(env: Mapping[str, str]) -> None:
    if "PULUMI_CONFIG_PASSPHRASE" in env or env.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return
    raise UsageError(
        "PULUMI_CONFIG_PASSPHRASE is not set: it encrypts the stack's secrets (the kubeconfig); "
        "export it (or PULUMI_CONFIG_PASSPHRASE_FILE) and keep it: it opens the stack later"
    )


_PREFIXES = ("stderr:", "stdout:", "error:")


def _strip_labels(line: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if line.lower().startswith(prefix):
                line = line[len(prefix) :].strip()
                stripped = True
    return line


def _one_line(exc: Exception) -> str:
    """The most telling line of a Pulumi CLI failure: its last ``error:`` line, without the
    ``stderr:``/``error:`` labels that the Automation API and the CLI put in front."""
    lines = [_strip_labels(line.strip()) for line in str(exc).splitlines()]
    raw = [line.strip() for line in str(exc).splitlines()]
    errors = [text for text, line in zip(lines, raw, strict=True) if text and "error:" in line]
    said = [text for text in lines if text and not text.startswith("code: ")]
    if errors:
        return errors[-1][:400]
    if said:
        return said[-1][:400]
    code = next((text[6:] for text in lines if text.startswith("code: ")), "")
    return f"pulumi exited {code}" if code else type(exc).__name__


def ensure_stack_file(ref: StackRef) -> None:
    """The per-user stack file ``infra/Pulumi.NAME.yaml`` (git ignores it): on first use, copy
    it from the tracked template and stop, so that the zone and hostname get set before anything
    is created. Pulumi writes the stack's ``encryptionsalt`` into this copy, never the template.
    """
    if ref.stack_file.is_file():
        return
    template = ref.infra_dir / TEMPLATE
    if not template.is_file():
        raise UsageError(f"no {ref.stack_file.name} and no template {template} to make it from")
    shutil.copyfile(template, ref.stack_file)
    raise UsageError(
        f"created {ref.stack_file} from the template: set podtally:route53Zone and "
        "podtally:hostname in it (and read the other knobs), then run this again"
    )


def _open(ref: StackRef, *, create: bool, need_aws: bool, progress: Progress) -> Any:
    """Select (or create) the stack, after every precondition holds (checked in this order)."""
    env = os.environ
    _require_cloud_extra()
    pulumi_path = check_pulumi_cli(env)
    if need_aws:
        check_aws_cli(env)
        check_aws_credentials(env)
    _check_passphrase(env)
    command = pulumi_command(pulumi_path)
    if create:
        ensure_stack_file(ref)
    from pulumi import automation as auto

    # Only preview/up may start a backend; down/verify need a stack that exists already.
    if create and ref.backend.startswith("file://"):
        Path(ref.backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    workspace_env = {
        "PULUMI_BACKEND_URL": ref.backend,
        # The program runs under this interpreter: the one with podtally and the cloud extra.
        "PULUMI_PYTHON_CMD": sys.executable,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(ref.infra_dir),
        env_vars=workspace_env,
        secrets_provider=SECRETS_PROVIDER,
        pulumi_command=command,
    )
    try:
        if create:
            stack = auto.create_or_select_stack(ref.name, work_dir=str(ref.infra_dir), opts=opts)
        else:
            stack = auto.select_stack(ref.name, work_dir=str(ref.infra_dir), opts=opts)
    except auto.StackNotFoundError:
        raise NotRunningError(
            f"stack {ref.name!r} does not exist in {ref.backend}: run 'podtally cloud up' first"
        ) from None
    except auto.CommandError as exc:
        raise PodtallyError(f"pulumi could not open stack {ref.name!r}: {_one_line(exc)}") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise PodtallyError(f"pulumi could not open stack {ref.name!r}: {exc}") from None
    progress(f"stack {ref.name} of {ref.infra_dir} (state: {ref.backend})")
    return stack


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
    except (OSError, subprocess.SubprocessError) as exc:
        raise PodtallyError(f"{action} failed: {exc}") from None


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
    """Delete everything the stack created, then the (now empty) stack itself from the backend;
    return the summary of deletions. The stack file in infra/ is kept (it holds your knobs)."""
    stack = _open(ref, create=False, need_aws=True, progress=progress)
    result = _run("down", lambda: stack.destroy(on_output=progress, color="never"))
    summary = {str(k): int(v) for k, v in (result.summary.resource_changes or {}).items()}
    _run("down finished, but removing the stack", lambda: stack.workspace.remove_stack(ref.name))
    progress(f"stack {ref.name} removed from {ref.backend}")
    return summary


def read_outputs(ref: StackRef, progress: Progress) -> dict[str, Any]:
    """The stack's current outputs (secrets redacted), without touching the cloud."""
    stack = _open(ref, create=False, need_aws=False, progress=progress)
    return _plain_outputs(_run("reading outputs", stack.outputs))


def read_verify_outputs(ref: StackRef, progress: Progress) -> dict[str, Any]:
    """What ``cloud verify`` needs: the outputs, with the kubeconfig revealed (as JSON text),
    and the app's ``appName`` and ``namespace`` from the stack's config."""
    stack = _open(ref, create=False, need_aws=False, progress=progress)
    raw = _run("reading outputs", stack.outputs)
    config = _run("reading the stack's config", stack.get_all_config)
    outputs = _plain_outputs(raw)
    kubeconfig = getattr(raw.get("kubeconfig"), "value", None)
    if kubeconfig is not None and not isinstance(kubeconfig, str):
        kubeconfig = json.dumps(kubeconfig)
    outputs["kubeconfig"] = kubeconfig
    for key in ("appName", "namespace"):
        value = getattr(config.get(f"podtally:{key}"), "value", None)
        if value:
            outputs[key] = value
    return outputs


def _plain_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: "[secret]" if getattr(value, "secret", False) else getattr(value, "value", value)
        for key, value in outputs.items()
    }
