"""The in-cluster half of `podtally cloud verify`: the verify Job, run with ``kubectl``.

The sequence, each step one ``kubectl`` command with its own time bound:

1. delete a Job left by an earlier run (a Job's pod template cannot be changed in place);
2. apply :func:`~podtally.k8s.verify_job.verify_objects` (its NetworkPolicy and the Job);
3. poll the Job until it is Complete or Failed, at most its deadline plus a margin for
   scheduling and the image pull;
4. read the verifier's exit code from its pod and its report from the log;
5. delete both objects, whatever happened before (the pod goes with the Job).

The commands and the reading of their answers are pure functions (:func:`kubectl_commands`,
:func:`job_state`, :func:`container_exit_code`, :func:`worst_exit_code`), so they are tested
without a cluster; :func:`run_verify_job` strings them together with ``subprocess``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podtally.cloud.stack import find_program
from podtally.errors import NotRunningError, PodtallyError, UsageError
from podtally.k8s.render import Obj, to_json
from podtally.k8s.verify_job import (
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_REQUESTS,
    verify_objects,
)
from podtally.spec import AppSpec

Progress = Callable[[str], None]
KUBECTL_URL = "https://kubernetes.io/docs/tasks/tools/"
# Each kubectl call: the API server must answer within this (kubectl's own --request-timeout),
# and the process must end within this plus a little (subprocess timeout).
REQUEST_TIMEOUT_SECONDS = 30
# Beyond the Job's own deadline: scheduling, the image pull, the pod's start.
WAIT_MARGIN_SECONDS = 120
POLL_SECONDS = 3.0
# Exit codes, as the CLI documents them; "worst" means the highest of these ranks.
SEVERITY = {0: 0, 1: 1, 2: 2, 3: 3}


@dataclass(frozen=True)
class JobResult:
    """What the in-cluster check found: the exit code it stands for (the verifier's own when
    its pod ran to the end), why, and the verifier's report (the pod's log)."""

    exit_code: int
    outcome: str
    log: str


def find_kubectl(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """``explicit`` (the ``kubectl`` setting), else ``kubectl`` beside this interpreter (``make
    setup`` puts one there), else on PATH."""
    if explicit is not None:
        if not os.access(explicit, os.X_OK) or not Path(explicit).is_file():
            raise UsageError("is not an executable file", setting="kubectl", value=explicit)
        return explicit
    beside = Path(sys.executable).parent / "kubectl"
    if os.access(beside, os.X_OK):
        return str(beside)
    return find_program(
        "kubectl",
        env,
        "kubectl is not installed; the in-cluster check applies its Job with it: see "
        + KUBECTL_URL,
    )


@dataclass(frozen=True)
class JobPlan:
    """The Job to run: the app as far as the Job needs it, and the objects to apply."""

    spec: AppSpec
    objects: list[Obj]
    deadline_seconds: int


def plan_from_stack(
    outputs: Mapping[str, Any],
    *,
    requests: int = DEFAULT_REQUESTS,
    deadline_seconds: int = DEFAULT_DEADLINE_SECONDS,
) -> JobPlan:
    """The Job for the app as the stack deployed it: name, namespace, replicas and image (the
    stack's outputs; name and namespace from its config). Bad settings fail here, before
    anything runs."""
    missing = [key for key in ("replicas", "image", "kubeconfig") if not outputs.get(key)]
    if missing:
        raise NotRunningError(
            f"the stack has no {', '.join(missing)} output: is podtally:deployApp true and has "
            "'podtally cloud up' finished?"
        )
    spec = AppSpec(
        name=str(outputs.get("appName") or "podtally"),
        namespace=str(outputs.get("namespace") or "podtally"),
        replicas=int(outputs["replicas"]),
        image=str(outputs["image"]),
    )
    objects = verify_objects(spec, requests=requests, deadline_seconds=deadline_seconds)
    return JobPlan(spec, objects, deadline_seconds)


def kubectl_commands(
    kubectl: str, kubeconfig: Path, spec: AppSpec, manifest: Path
) -> dict[str, list[str]]:
    """Every kubectl command the check runs, by step."""
    base = [
        kubectl,
        "--kubeconfig",
        str(kubeconfig),
        f"--request-timeout={REQUEST_TIMEOUT_SECONDS}s",
        "--namespace",
        spec.namespace,
    ]
    job = f"job/{spec.name}-verify"
    return {
        "clear": [*base, "delete", "-f", str(manifest), "--ignore-not-found", "--wait=true"],
        "apply": [*base, "apply", "-f", str(manifest)],
        "status": [*base, "get", job, "-o", "json"],
        "pods": [*base, "get", "pods", "-l", f"job-name={spec.name}-verify", "-o", "json"],
        "logs": [*base, "logs", job, "--tail=-1"],
        "delete": [*base, "delete", "-f", str(manifest), "--ignore-not-found", "--wait=false"],
    }


def job_state(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """``("Complete"|"Failed", reason)`` once the Job has finished, else None."""
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"]), str(condition.get("reason") or "")
    return None


def container_exit_code(pods: Mapping[str, Any]) -> int | None:
    """The verifier's exit code from the Job's pod list, if its container has terminated."""
    for pod in pods.get("items") or []:
        for status in pod.get("status", {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if terminated is not None and "exitCode" in terminated:
                return int(terminated["exitCode"])
    return None


def outcome_exit_code(state: tuple[str, str] | None, container_code: int | None) -> int:
    """The in-cluster check's exit code: the verifier's own when its container ran to the end;
    3 (the check did not finish: deadline, no pod, unknown) otherwise."""
    if state is not None and state[0] == "Complete":
        return 0 if container_code is None else container_code
    if container_code is not None and container_code in SEVERITY:
        return container_code
    return 3


def worst_exit_code(*codes: int) -> int:
    """The worst of several checks' exit codes (0 < 1 < 2 < 3; anything unknown is 3)."""
    return max((code if code in SEVERITY else 3 for code in codes), key=SEVERITY.__getitem__)


def _kubectl(argv: list[str], step: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PodtallyError(f"in-cluster check: kubectl {step} took over {timeout:g}s") from None
    except OSError as exc:
        raise PodtallyError(f"in-cluster check: kubectl {step}: {exc}") from None
    if out.returncode != 0:
        said = [line for line in out.stderr.strip().splitlines() if line.strip()]
        raise PodtallyError(
            f"in-cluster check: kubectl {step} exited {out.returncode}: "
            + (said[-1][:400] if said else "no message")
        )
    return out


def run_verify_job(
    plan: JobPlan,
    kubeconfig: str,
    *,
    kubectl: str,
    progress: Progress,
    poll_seconds: float = POLL_SECONDS,
    wait_margin_seconds: float = WAIT_MARGIN_SECONDS,
) -> JobResult:
    """Apply the verify Job, wait for its end (bounded), read its log, delete it."""
    spec, deadline_seconds = plan.spec, plan.deadline_seconds
    step_timeout = REQUEST_TIMEOUT_SECONDS + 15
    with tempfile.TemporaryDirectory(prefix="podtally-verify-") as tmp:
        config_path = Path(tmp) / "kubeconfig"
        manifest = Path(tmp) / "verify-job.json"
        # The kubeconfig is a secret output: only its owner may read the copy.
        config_path.touch(mode=0o600)
        config_path.write_text(kubeconfig, encoding="utf-8")
        manifest.write_text(to_json(plan.objects), encoding="utf-8")
        commands = kubectl_commands(kubectl, config_path, spec, manifest)
        _kubectl(commands["clear"], "delete (an earlier Job)", step_timeout + 60)
        progress(f"in-cluster: applying job/{spec.name}-verify in namespace {spec.namespace}")
        try:
            # Inside: a failed apply may still have created one of the two objects.
            _kubectl(commands["apply"], "apply", step_timeout)
            state = _wait(
                commands["status"],
                step_timeout,
                deadline_seconds + wait_margin_seconds,
                poll_seconds,
            )
            pods = json.loads(_kubectl(commands["pods"], "get pods", step_timeout).stdout)
            code = outcome_exit_code(state, container_exit_code(pods))
            try:
                log = _kubectl(commands["logs"], "logs", step_timeout).stdout
            except PodtallyError as exc:
                log = f"(no log: {exc.what})\n"
        finally:
            _kubectl(commands["delete"], "delete", step_timeout)
    if state is None:
        outcome = f"did not finish within {deadline_seconds + wait_margin_seconds:g}s"
    else:
        outcome = state[0] + (f" ({state[1]})" if state[1] else "")
    return JobResult(code, outcome, log)


def _wait(
    status: list[str], step_timeout: float, bound: float, poll_seconds: float
) -> tuple[str, str] | None:
    """Poll the Job until it is Complete or Failed; None when ``bound`` seconds pass first."""
    give_up = time.monotonic() + bound
    while True:
        job = json.loads(_kubectl(status, "get job", step_timeout).stdout)
        state = job_state(job)
        if state is not None or time.monotonic() >= give_up:
            return state
        time.sleep(min(poll_seconds, max(0.0, give_up - time.monotonic())))
