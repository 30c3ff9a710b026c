"""`podtally cloud ...` as a user runs it, where it cannot reach Pulumi or AWS.

The real console script runs in a subprocess with a bare PATH and a temporary HOME. Each missing
precondition must give one `error: ...` line naming what to install or set, the documented exit
code, no traceback, and nothing written (no state directory, no files in infra/).
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from podtally.cloud import (
    backend_url,
    check_pulumi_cli,
    check_stack_name,
    find_infra_dir,
    incluster,
)
from podtally.cloud.credentials import check_aws_credentials, check_sources
from podtally.errors import MissingDependencyError, NotRunningError, PodtallyError, UsageError
from podtally.k8s.render import to_json

REPO = Path(__file__).resolve().parents[2]
PODTALLY = Path(sys.executable).parent / "podtally"
BARE_PATH = "/usr/bin:/bin"
ACTIONS = ("preview", "up", "down", "verify")


def _env(home: Path, path: str = BARE_PATH, **extra: str) -> dict[str, str]:
    # No instance metadata service: botocore's resolution must not reach for the network.
    return {
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PODTALLY), *argv], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert proc.stdout == ""
    return lines[0]


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def fake_pulumi(tmp_path: Path) -> Path:
    """`pulumi` and `aws` on PATH that record being run (they must not be: checks come first)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "pulumi", f"touch {tmp_path}/pulumi-was-run\nexit 1\n")
    _script(bin_dir / "aws", f"touch {tmp_path}/aws-was-run\nexit 1\n")
    return bin_dir


def _working_pulumi(bin_dir: Path, calls: Path, stderr: str, code: int) -> None:
    """A `pulumi` that passes the version check and fails every other command like the real
    CLI does: the given line on stderr, the given exit code. Each call is logged to `calls`."""
    _script(
        bin_dir / "pulumi",
        f'echo "$*" >> {calls}\n'
        'if [ "$1" = version ]; then echo v3.272.0; exit 0; fi\n'
        f'echo "{stderr}" >&2\nexit {code}\n',
    )


def _full_env(home: Path, bin_dir: Path) -> dict[str, str]:
    """Everything the checks look for: the CLIs, credentials, the passphrase."""
    env = _env(home, f"{bin_dir}:{BARE_PATH}")
    env["AWS_ACCESS_KEY_ID"] = "AKIAEXAMPLE"
    env["AWS_SECRET_ACCESS_KEY"] = "not-secret"  # noqa: S105  (a test value)
    env["PULUMI_CONFIG_PASSPHRASE"] = "not-secret"  # noqa: S105  (a test value)
    return env


def _infra_listing() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "infra").rglob("*"))


@pytest.mark.parametrize("action", ACTIONS)
def test_without_the_pulumi_cli(action: str, tmp_path: Path) -> None:
    assert PODTALLY.exists(), f"console script missing: {PODTALLY}"
    assert shutil.which("pulumi", path=BARE_PATH) is None
    before = _infra_listing()
    proc = _run(["cloud", action, "--stack", "dev"], _env(tmp_path, AWS_PROFILE="x"))
    line = _one_error_line(proc)
    assert (
        line == "error: the pulumi CLI is not installed: see https://www.pulumi.com/docs/install/"
    )
    assert proc.returncode == 3
    assert list(tmp_path.iterdir()) == [], "nothing may be written to HOME"
    assert _infra_listing() == before


@pytest.mark.parametrize("action", ("preview", "up", "down"))
def test_without_aws_credentials(action: str, tmp_path: Path, fake_pulumi: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    proc = _run(["cloud", action], _env(home, f"{fake_pulumi}:{BARE_PATH}"))
    line = _one_error_line(proc)
    assert "no AWS credentials found" in line
    assert "AWS_PROFILE" in line
    assert "AWS_ACCESS_KEY_ID" in line
    assert proc.returncode == 3
    assert not (tmp_path / "pulumi-was-run").exists()
    assert not (tmp_path / "aws-was-run").exists()
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("action", ("preview", "up", "down"))
def test_without_the_aws_cli(action: str, tmp_path: Path, fake_pulumi: Path) -> None:
    """The kubeconfig runs `aws eks get-token`: without it `up` would fail ~15 minutes in and
    `down` could not delete the Ingress, stranding its ALB. So it is checked first."""
    (fake_pulumi / "aws").unlink()
    assert shutil.which("aws", path=f"{fake_pulumi}:{BARE_PATH}") is None
    home = tmp_path / "home"
    home.mkdir()
    before = _infra_listing()
    proc = _run(["cloud", action], _full_env(home, fake_pulumi))
    line = _one_error_line(proc)
    assert line.startswith("error: the AWS CLI (aws) is not installed"), line
    assert "aws eks get-token" in line
    assert proc.returncode == 3
    assert not (tmp_path / "pulumi-was-run").exists()
    assert list(home.iterdir()) == []
    assert _infra_listing() == before


def test_verify_does_not_need_the_aws_cli(tmp_path: Path, fake_pulumi: Path) -> None:
    """`verify` only reads outputs: it gets past the AWS checks without aws or credentials."""
    (fake_pulumi / "aws").unlink()
    home = tmp_path / "home"
    home.mkdir()
    env = _env(home, f"{fake_pulumi}:{BARE_PATH}")
    env["PULUMI_CONFIG_PASSPHRASE"] = "not-secret"  # noqa: S105  (a test value)
    line = _one_error_line(_run(["cloud", "verify"], env))
    assert "pulumi" in line and "AWS" not in line


def test_without_the_passphrase(tmp_path: Path, fake_pulumi: Path) -> None:
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = x\n"
    )
    for action in ACTIONS:
        proc = _run(["cloud", action], _env(home, f"{fake_pulumi}:{BARE_PATH}"))
        line = _one_error_line(proc)
        assert "PULUMI_CONFIG_PASSPHRASE is not set" in line, action
        assert proc.returncode == 2
    assert not (tmp_path / "pulumi-was-run").exists()
    assert not (tmp_path / "aws-was-run").exists()
    assert sorted(p.name for p in home.iterdir()) == [".aws"]


def test_without_the_cloud_extra(tmp_path: Path) -> None:
    # The packages are installed here; hide them the way a missing install looks to Python.
    code = (
        "import sys\n"
        "for m in ('pulumi', 'pulumi.automation', 'pulumi_aws', 'pulumi_kubernetes'):\n"
        "    sys.modules[m] = None\n"
        "from podtally.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "cloud", "up"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = _one_error_line(proc)
    assert "pip install 'podtally[cloud]'" in line
    assert proc.returncode == 3


def test_an_infra_dir_without_a_project_is_bad_usage(tmp_path: Path) -> None:
    proc = _run(["cloud", "preview", "--infra-dir", str(tmp_path)], _env(tmp_path))
    line = _one_error_line(proc)
    assert "no Pulumi project (Pulumi.yaml)" in line
    assert proc.returncode == 2


def test_usage_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    proc = _run(["cloud", "launch"], _env(tmp_path))
    assert proc.returncode == 2
    _one_error_line(proc)


def test_infra_dir_is_found_from_the_package() -> None:
    assert find_infra_dir() == REPO / "infra"
    with pytest.raises(UsageError):
        find_infra_dir(REPO / "docs")


def test_fallback_credentials_sources(tmp_path: Path) -> None:
    """Without botocore: the hand-written look at the environment and the shared files."""
    check_aws_credentials = check_sources
    home = {"HOME": str(tmp_path)}
    with pytest.raises(PodtallyError, match="no AWS credentials"):
        check_aws_credentials(home)
    with pytest.raises(PodtallyError):  # a key id alone is not a credential
        check_aws_credentials({**home, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"})
    both = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"}
    assert check_aws_credentials({**home, **both}) == "AWS_ACCESS_KEY_ID"
    assert check_aws_credentials({**home, "AWS_PROFILE": "dev"}) == "AWS_PROFILE"
    assert (
        check_aws_credentials({**home, "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token"})
        == "AWS_WEB_IDENTITY_TOKEN_FILE"
    )
    aws = tmp_path / ".aws"
    aws.mkdir()
    # A config file that only sets a region is what `aws configure set region` leaves behind:
    # no credentials, so not accepted.
    (aws / "config").write_text("[default]\nregion = us-east-1\n")
    with pytest.raises(PodtallyError, match="no AWS credentials"):
        check_aws_credentials(home)
    # A credentials file with an empty default profile is not a source either.
    (aws / "credentials").write_text("[default]\n[other]\naws_access_key_id = AKIAEXAMPLE\n")
    with pytest.raises(PodtallyError, match="no AWS credentials"):
        check_aws_credentials(home)
    # ...unless AWS_DEFAULT_PROFILE picks the profile that has keys.
    assert check_aws_credentials({**home, "AWS_DEFAULT_PROFILE": "other"}) == str(
        aws / "credentials"
    )
    (aws / "credentials").write_text("[default]\naws_access_key_id = AKIAEXAMPLE\n")
    assert check_aws_credentials(home) == str(aws / "credentials")
    (aws / "credentials").unlink()
    for source in (
        "sso_session = corp",
        "sso_start_url = https://corp.awsapps.com/start",
        "credential_process = /usr/local/bin/get-creds",
        "role_arn = arn:aws:iam::123456789012:role/Deployer\nsource_profile = base",
    ):
        (aws / "config").write_text(f"[default]\nregion = us-east-1\n{source}\n")
        assert check_aws_credentials(home) == str(aws / "config"), source
    # In the config file a named profile is "[profile NAME]".
    (aws / "config").write_text("[profile ci]\nsso_session = corp\n")
    assert check_aws_credentials({**home, "AWS_DEFAULT_PROFILE": "ci"}) == str(aws / "config")
    with pytest.raises(PodtallyError):
        check_aws_credentials(home)


def test_pulumi_cli_lookup_uses_path(fake_pulumi: Path) -> None:
    assert check_pulumi_cli({"PATH": str(fake_pulumi)}) == str(fake_pulumi / "pulumi")
    with pytest.raises(MissingDependencyError, match=r"pulumi\.com/docs/install"):
        check_pulumi_cli({"PATH": BARE_PATH})


def test_state_lives_outside_the_repository(tmp_path: Path) -> None:
    url = backend_url({"HOME": str(tmp_path)})
    assert url == f"file://{tmp_path}/.local/state/podtally/pulumi"
    assert not Path(url.removeprefix("file://")).is_relative_to(REPO)
    assert backend_url({"XDG_STATE_HOME": str(tmp_path)}) == f"file://{tmp_path}/podtally/pulumi"
    assert backend_url({"PULUMI_BACKEND_URL": "s3://bucket/podtally"}) == "s3://bucket/podtally"


STACK_KUBECONFIG = "apiVersion: v1\nkind: Config\n# the stack's secret output\n"


def _stack_outputs(url: str, replicas: int) -> dict[str, object]:
    return {
        "url": url,
        "replicas": replicas,
        "image": "ghcr.io/podtally/podtally:0.1.0",
        "kubeconfig": STACK_KUBECONFIG,
        "appName": "tally",
        "namespace": "apps",
    }


def test_cloud_verify_runs_the_verifier_on_the_stack_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stack cannot exist here, so its outputs are given; the verifier and the service are
    real: one `podtally serve` on loopback, and the verifier's own exit code comes back."""
    from tests.support import start_serve

    import podtally.cloud
    from podtally.cli import main

    server = start_serve(tmp_path, host="127.0.0.66", env={"POD_NAME": "only-pod"})
    try:
        outputs = _stack_outputs(server.url + "/", 1)
        seen: list[str] = []

        def read_outputs(ref: podtally.cloud.StackRef, progress: object) -> dict[str, object]:
            seen.append(ref.name)
            return outputs

        monkeypatch.setattr(podtally.cloud, "read_verify_outputs", read_outputs)
        # `cloud verify` takes every option of `verify`; the URL and the pods come from the stack.
        outside_only = ["cloud", "verify", "--no-in-cluster"]
        # (40 requests: the fewest that show one expected pod within ±20% of 100% at 99.9%.)
        code = main([*outside_only, "--stack", "dev", "--requests", "40", "--json"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert seen == ["dev"]
        assert f"verifying {server.url}/, expecting 1 pods" in captured.err
        doc = json.loads(captured.out)
        assert doc["summary"]["requests"] == 40 and "only-pod" in captured.out

        outputs["replicas"] = 2  # one pod answers, two expected: the verifier's verdict is 1
        assert main([*outside_only, "--requests", "20", "--json"]) == 1
        capsys.readouterr()
        # --expect-pods overrides the stack's replica count.
        assert main([*outside_only, "-n", "40", "--expect-pods", "1"]) == 0
        assert "verdict: PASS" in capsys.readouterr().out

        outputs.pop("url")
        assert main([*outside_only]) == 3
        assert "has no url/replicas outputs" in capsys.readouterr().err
    finally:
        server.stop()


# --- the in-cluster half: the verify Job through kubectl -----------------------------------------

STAND_IN_KUBECTL = """#!{python}
# A stand-in for kubectl, as a cluster would answer it: it logs each call and answers the
# verify Job's steps from the scenario file beside it.
import json, os, stat, sys
from pathlib import Path

here = Path(__file__).parent
args = sys.argv[1:]
config = Path(args[args.index("--kubeconfig") + 1])
mode = stat.S_IMODE(config.stat().st_mode)
with open(here / "calls", "a") as log:
    log.write(json.dumps({{"args": args, "config": config.read_text(), "mode": mode}}) + "\\n")
scenario = json.loads((here / "scenario.json").read_text())
verb = args[args.index("--namespace") + 2]
if verb in scenario.get("fail", {{}}):
    sys.stderr.write(scenario["fail"][verb] + "\\n")
    sys.exit(1)
if verb == "get" and args[args.index("--namespace") + 3].startswith("job/"):
    polls = here / "polls"
    count = int(polls.read_text()) + 1 if polls.exists() else 1
    polls.write_text(str(count))
    done = scenario.get("finish_after")
    status = {{}}
    if done is not None and count >= done:
        status = {{"conditions": [{{"type": scenario["state"], "status": "True",
                                  "reason": scenario.get("reason", "")}}]}}
    print(json.dumps({{"kind": "Job", "status": status}}))
elif verb == "get":
    code = scenario.get("exit_code")
    state = {{"terminated": {{"exitCode": code}}}} if code is not None else {{"waiting": {{}}}}
    print(json.dumps({{"items": [{{"status": {{"containerStatuses": [{{"state": state}}]}}}}]}}))
elif verb == "logs":
    print(scenario.get("log", ""))
"""


def _stand_in_kubectl(tmp_path: Path, **scenario: object) -> Path:
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(STAND_IN_KUBECTL.format(python=sys.executable))
    kubectl.chmod(0o755)
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    return kubectl


def _calls(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "calls"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _steps(tmp_path: Path) -> list[str]:
    """Each call as its verb and target: 'delete -f', 'apply -f', 'get job/x', ..."""
    steps = []
    for call in _calls(tmp_path):
        args = [str(a) for a in call["args"]]  # type: ignore[union-attr]
        rest = args[args.index("--namespace") + 2 :]
        steps.append(" ".join(rest[:2]))
    return steps


def _plan(requests: int = 50, deadline_seconds: int = 60) -> incluster.JobPlan:
    outputs = _stack_outputs("https://podtally.example.com", 3)
    return incluster.plan_from_stack(outputs, requests=requests, deadline_seconds=deadline_seconds)


def test_the_job_runs_cleared_applied_awaited_read_and_deleted(tmp_path: Path) -> None:
    kubectl = _stand_in_kubectl(
        tmp_path, finish_after=3, state="Complete", exit_code=0, log="verdict: PASS"
    )
    progress: list[str] = []
    result = incluster.run_verify_job(
        _plan(),
        STACK_KUBECONFIG,
        kubectl=str(kubectl),
        progress=progress.append,
        poll_seconds=0.05,
    )
    assert result == incluster.JobResult(0, "Complete", "verdict: PASS\n")
    assert _steps(tmp_path) == [
        "delete -f",
        "apply -f",
        "get job/tally-verify",
        "get job/tally-verify",
        "get job/tally-verify",
        "get pods",
        "logs job/tally-verify",
        "delete -f",
    ]
    calls = _calls(tmp_path)
    # Every call used the stack's kubeconfig, readable by its owner only, in the app's namespace.
    assert {c["config"] for c in calls} == {STACK_KUBECONFIG}
    assert {c["mode"] for c in calls} == {0o600}
    first = [str(a) for a in calls[0]["args"]]  # type: ignore[union-attr]
    assert first[first.index("--namespace") + 1] == "apps"
    assert progress == ["in-cluster: applying job/tally-verify in namespace apps"]
    config_path = first[first.index("--kubeconfig") + 1]
    assert config_path != str(tmp_path) and not Path(config_path).exists(), "the copy is gone"


def test_the_applied_manifest_is_the_library_s_job(tmp_path: Path) -> None:
    """The file kubectl applies holds verify_objects() for the stack's app, with the requests
    and deadline given, read while kubectl runs."""
    from podtally.k8s.verify_job import verify_objects
    from podtally.spec import AppSpec

    kubectl = _stand_in_kubectl(tmp_path, finish_after=1, state="Complete", exit_code=0)
    script = kubectl.read_text().replace(
        "scenario = json.loads",
        'if "apply" in args:\n'
        '    (here / "applied.json").write_text(Path(args[args.index("-f") + 1]).read_text())\n'
        "scenario = json.loads",
    )
    kubectl.write_text(script)
    plan = _plan(requests=77, deadline_seconds=90)
    incluster.run_verify_job(plan, STACK_KUBECONFIG, kubectl=str(kubectl), progress=print)
    applied = json.loads((tmp_path / "applied.json").read_text())
    spec = AppSpec(name="tally", namespace="apps", replicas=3)
    assert applied["items"] == verify_objects(spec, requests=77, deadline_seconds=90)


@pytest.mark.parametrize(
    ("scenario", "code", "outcome"),
    [
        (
            {"state": "Failed", "reason": "BackoffLimitExceeded", "exit_code": 1},
            1,
            "Failed (BackoffLimitExceeded)",
        ),
        ({"state": "Failed", "reason": "DeadlineExceeded"}, 3, "Failed (DeadlineExceeded)"),
        (
            {"state": "Failed", "reason": "BackoffLimitExceeded", "exit_code": 2},
            2,
            "Failed (BackoffLimitExceeded)",
        ),
        ({"state": "Complete", "exit_code": 0}, 0, "Complete"),
    ],
    ids=["uneven", "deadline", "bad-usage-in-pod", "even"],
)
def test_the_job_s_exit_code_is_the_verifier_s(
    tmp_path: Path, scenario: dict[str, object], code: int, outcome: str
) -> None:
    kubectl = _stand_in_kubectl(tmp_path, finish_after=1, log="report", **scenario)
    result = incluster.run_verify_job(
        _plan(), STACK_KUBECONFIG, kubectl=str(kubectl), progress=print
    )
    assert (result.exit_code, result.outcome) == (code, outcome)
    assert _steps(tmp_path)[-1] == "delete -f"


def test_the_wait_is_bounded_and_the_job_is_deleted_after(tmp_path: Path) -> None:
    kubectl = _stand_in_kubectl(tmp_path)  # never finishes
    started = time.monotonic()
    result = incluster.run_verify_job(
        _plan(deadline_seconds=10),
        STACK_KUBECONFIG,
        kubectl=str(kubectl),
        progress=print,
        poll_seconds=0.1,
        wait_margin_seconds=-9.5,
    )
    assert time.monotonic() - started < 5
    assert result.exit_code == 3
    assert result.outcome == "did not finish within 0.5s"
    steps = _steps(tmp_path)
    assert steps.count("get job/tally-verify") >= 2
    assert steps[-1] == "delete -f"


@pytest.mark.parametrize("verb", ["apply", "get"])
def test_a_kubectl_failure_is_one_line_and_the_job_is_deleted(tmp_path: Path, verb: str) -> None:
    said = 'Error from server (Forbidden): jobs.batch is forbidden: User "x" cannot create'
    kubectl = _stand_in_kubectl(tmp_path, fail={verb: said})
    with pytest.raises(PodtallyError) as caught:
        incluster.run_verify_job(_plan(), STACK_KUBECONFIG, kubectl=str(kubectl), progress=print)
    step = "apply" if verb == "apply" else "get job"
    assert caught.value.what == f"in-cluster check: kubectl {step} exited 1: {said}"
    assert _steps(tmp_path)[-1] == "delete -f"


def test_the_real_kubectl_accepts_every_command(tmp_path: Path) -> None:
    """The real kubectl (installed by `make setup`) parses each command podtally builds; with no
    API server on the loopback address it gets as far as connecting. A misspelt flag, for
    contrast, fails in parsing."""
    kubectl = incluster.find_kubectl()
    assert Path(kubectl).parent == Path(sys.executable).parent
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    manifest = tmp_path / "job.json"
    manifest.write_text(to_json(_plan().objects))
    commands = incluster.kubectl_commands(kubectl, config, _plan().spec, manifest)
    assert sorted(commands) == ["apply", "clear", "delete", "logs", "pods", "status"]
    for step, argv in commands.items():
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode != 0, step
        assert "refused" in out.stderr, (step, out.stderr)
        assert "unknown flag" not in out.stderr and "Usage:" not in out.stderr, step
    wrong = [*commands["status"], "--wiat"]
    out = subprocess.run(wrong, capture_output=True, text=True, timeout=60, check=False)
    assert "unknown flag: --wiat" in out.stderr


def test_result_combination() -> None:
    worst = incluster.worst_exit_code
    assert worst(0, 0) == 0
    assert worst(0, 1) == worst(1, 0) == 1
    assert worst(1, 3) == worst(3, 1) == 3
    assert worst(2, 1) == 2
    assert worst(0, 137) == 3, "an unknown code (a killed verifier) counts as broken"
    state = incluster.job_state
    assert state({}) is None
    assert state({"status": {"conditions": [{"type": "Failed", "status": "False"}]}}) is None
    suspended = {"type": "Suspended", "status": "True"}
    complete = {"type": "Complete", "status": "True", "reason": "CompletionsReached"}
    assert state({"status": {"conditions": [suspended, complete]}}) == (
        "Complete",
        "CompletionsReached",
    )
    assert incluster.container_exit_code({"items": []}) is None
    outcome = incluster.outcome_exit_code
    assert outcome(("Complete", ""), None) == 0
    assert outcome(("Failed", "DeadlineExceeded"), None) == 3
    assert outcome(("Failed", "BackoffLimitExceeded"), 1) == 1
    assert outcome(None, None) == 3


def test_the_plan_needs_the_stack_s_image_and_kubeconfig() -> None:
    outputs = _stack_outputs("https://podtally.example.com", 3)
    for key in ("image", "kubeconfig"):
        with pytest.raises(NotRunningError, match=f"the stack has no {key} output"):
            incluster.plan_from_stack({**outputs, key: None})
    with pytest.raises(UsageError) as caught:
        incluster.plan_from_stack(outputs, deadline_seconds=5)
    assert caught.value.setting == "deadline_seconds"
    plan = incluster.plan_from_stack({k: v for k, v in outputs.items() if k != "appName"})
    assert plan.spec.name == "podtally" and plan.spec.namespace == "apps"


def test_cloud_verify_reports_both_and_exits_with_the_worse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both halves through the real CLI: the outside check against a real `podtally serve`,
    the in-cluster Job through the stand-in kubectl; the exit code is the worse of the two."""
    from tests.support import start_serve

    import podtally.cloud
    from podtally.cli import main

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "aws", "exit 0\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:{BARE_PATH}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server = start_serve(tmp_path, host="127.0.0.67", env={"POD_NAME": "only-pod"})
    try:
        outputs = _stack_outputs(server.url + "/", 1)
        monkeypatch.setattr(podtally.cloud, "read_verify_outputs", lambda ref, progress: outputs)
        jobs = tmp_path / "jobs"
        jobs.mkdir()
        kubectl = _stand_in_kubectl(
            jobs,
            finish_after=1,
            state="Failed",
            reason="BackoffLimitExceeded",
            exit_code=1,
            log="verdict: FAIL (too few pods)",
        )
        argv = ["cloud", "verify", "-n", "40", "--kubectl", str(kubectl)]
        code = main([*argv, "--deadline-seconds", "45"])
        captured = capsys.readouterr()
        assert code == 1, captured.err
        assert "verdict: PASS" in captured.out  # the outside report, as `podtally verify`'s
        assert "in-cluster: verdict: FAIL (too few pods)" in captured.err
        assert captured.err.rstrip().endswith(
            "outside: exit 0; in-cluster: exit 1 (job/tally-verify Failed (BackoffLimitExceeded))"
        )
        applied = [c for c in _calls(jobs) if "apply" in c["args"]]  # type: ignore[operator]
        assert len(applied) == 1

        (jobs / "calls").unlink()
        (jobs / "polls").unlink()
        _stand_in_kubectl(jobs, finish_after=1, state="Complete", exit_code=0, log="ok")
        assert main(argv) == 0
        assert "outside: exit 0; in-cluster: exit 0" in capsys.readouterr().err

        # A precondition of the in-cluster half fails before the outside check sends anything.
        (jobs / "calls").unlink()
        (bin_dir / "aws").unlink()
        assert main(argv) == 3
        captured = capsys.readouterr()
        assert captured.err.startswith("error: the AWS CLI (aws) is not installed")
        assert "verifying" not in captured.err and captured.out == ""
        assert _calls(jobs) == []
        bad = main([*argv, "--kubectl", str(tmp_path / "nowhere")])
        assert bad == 2
        assert capsys.readouterr().err == (
            f"error: --kubectl '{tmp_path / 'nowhere'}': is not an executable file\n"
        )
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "echo 'pulumi: cannot execute binary file' >&2\nexit 1\n",
            "('pulumi version' exited 1: pulumi: cannot execute binary file)",
        ),
        ("echo v2.0.0\n", "is version 2.0.0"),
        ("echo v4.0.0\n", "is version 4.0.0"),
    ],
    ids=["broken", "too-old", "too-new"],
)
def test_a_broken_or_unsupported_pulumi_is_one_line(
    body: str, expected: str, tmp_path: Path, fake_pulumi: Path
) -> None:
    _script(fake_pulumi / "pulumi", body)
    home = tmp_path / "home"
    home.mkdir()
    before = _infra_listing()
    for action in ACTIONS:
        proc = _run(["cloud", action], _full_env(home, fake_pulumi))
        line = _one_error_line(proc)
        assert line.startswith(f"error: {fake_pulumi / 'pulumi'} "), line
        assert expected in line
        assert "podtally needs pulumi >= 3.1.0" in line
        assert proc.returncode == 3
    assert list(home.iterdir()) == [], "no state directory before pulumi is known to work"
    assert _infra_listing() == before
    assert not (tmp_path / "aws-was-run").exists()


@pytest.mark.parametrize("action", ("verify", "down"))
def test_a_missing_stack_creates_no_state_directory(
    action: str, tmp_path: Path, fake_pulumi: Path
) -> None:
    """`down` and `verify` need a stack that exists: they must not start a backend."""
    calls = tmp_path / "calls"
    _working_pulumi(fake_pulumi, calls, "error: no stack named 'dev' found", 255)
    home = tmp_path / "home"
    home.mkdir()
    proc = _run(["cloud", action], _full_env(home, fake_pulumi))
    line = _one_error_line(proc)
    assert line == (
        f"error: stack 'dev' does not exist in file://{home}/.local/state/podtally/pulumi: "
        "run 'podtally cloud up' first"
    )
    assert proc.returncode == 3
    assert list(home.iterdir()) == []
    assert calls.read_text().splitlines()[0] == "version"
    assert "stack select --stack dev" in calls.read_text()


def _project_copy(tmp_path: Path) -> Path:
    infra = tmp_path / "infra"
    infra.mkdir()
    for name in ("Pulumi.yaml", "stack.example.yaml"):
        shutil.copy(REPO / "infra" / name, infra / name)
    return infra


@pytest.mark.parametrize("action", ("preview", "up"))
def test_first_use_copies_the_template_to_an_untracked_stack_file(
    action: str, tmp_path: Path, fake_pulumi: Path
) -> None:
    infra = _project_copy(tmp_path)
    calls = tmp_path / "calls"
    _working_pulumi(fake_pulumi, calls, "error: could not find plugin", 1)
    home = tmp_path / "home"
    home.mkdir()
    argv = ["cloud", action, "--stack", "team-a", "--infra-dir", str(infra)]

    first = _run(argv, _full_env(home, fake_pulumi))
    assert first.returncode == 2
    assert _one_error_line(first) == (
        f"error: created {infra}/Pulumi.team-a.yaml from the template: set "
        "podtally:route53Zone and podtally:hostname in it (and read the other knobs), then "
        "run this again"
    )
    stack_file = infra / "Pulumi.team-a.yaml"
    assert stack_file.read_text() == (infra / "stack.example.yaml").read_text()
    assert set(calls.read_text().splitlines()) == {"version"}, "no stack is created yet"
    assert list(home.iterdir()) == []

    # Second run: the stack file is there, Pulumi is asked, and its failure is one clean line
    # (no "stderr:" label from the Automation API, no "error: error:").
    stack_file.write_text(stack_file.read_text() + "  # edited\n")
    second = _run(argv, _full_env(home, fake_pulumi))
    line = _one_error_line(second)
    assert line == "error: pulumi could not open stack 'team-a': could not find plugin"
    assert second.returncode == 3
    assert stack_file.read_text().endswith("  # edited\n"), "an existing stack file is kept"
    assert (home / ".local" / "state" / "podtally" / "pulumi").is_dir()


def test_the_shipped_repository_has_no_stack_file_and_ignores_them() -> None:
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "infra/Pulumi.*.yaml"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert tracked.stdout == "", "a per-user stack file (with its salt) is tracked"
    assert (REPO / "infra" / "stack.example.yaml").is_file()
    for name in ("infra/Pulumi.dev.yaml", "infra/Pulumi.team-a.yaml"):
        ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", name], check=False)
        assert ignored.returncode == 0, f"{name} must be ignored (.gitignore: infra/Pulumi.*.yaml)"


@pytest.mark.parametrize("name", ["bad/name", "a b", ".hidden", "x" * 101, "dev;rm"])
def test_a_bad_stack_name_is_bad_usage(name: str, tmp_path: Path) -> None:
    before = _infra_listing()
    proc = _run(["cloud", "up", "--stack", name], _env(tmp_path))
    line = _one_error_line(proc)
    assert "is not a valid stack name" in line
    assert proc.returncode == 2
    assert list(tmp_path.iterdir()) == []
    assert _infra_listing() == before


def test_good_stack_names() -> None:
    for name in ("dev", "prod-eu_1", "team.a", "X" * 100):
        assert check_stack_name(name) == name


def test_one_line_strips_the_labels_of_a_command_error() -> None:
    from pulumi.automation import CommandError, CommandResult

    from podtally.cloud.stack import _one_line

    exc = CommandError(CommandResult("", "error: could not find plugin aws v7.51.1", 1))
    assert str(exc).splitlines()[-1].strip().startswith("stderr: error:")
    assert _one_line(exc) == "could not find plugin aws v7.51.1"
    noisy = CommandResult(
        "Updating (dev)\n  error: update failed\n",
        "warning: x\nerror: error: 2 errors occurred\n",
        255,
    )
    assert _one_line(CommandError(noisy)) == "2 errors occurred"
    assert _one_line(CommandError(CommandResult("", "", 1))) == "pulumi exited 1"
    assert _one_line(CommandError(CommandResult("panic: boom\n", "", 2))) == "panic: boom"


def test_down_removes_the_stack_after_destroying_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pulumi CLI cannot run here, so the opened stack is a stand-in that records calls;
    the order and the failure handling are podtally's own code."""
    from pulumi.automation import CommandError, CommandResult

    import podtally.cloud.stack as stack_module

    events: list[str] = []

    class Summary:
        def __init__(self) -> None:
            self.resource_changes = {"delete": 42}

    class Result:
        def __init__(self) -> None:
            self.summary = Summary()

    class Workspace:
        def remove_stack(self, name: str) -> None:
            events.append(f"remove {name}")

    class FakeStack:
        workspace = Workspace()
        fail = False

        def destroy(self, **kwargs: object) -> Result:
            events.append("destroy")
            if self.fail:
                raise CommandError(CommandResult("", "error: deleting ALB: timeout", 255))
            return Result()

    fake = FakeStack()
    monkeypatch.setattr(stack_module, "_open", lambda ref, **kwargs: fake)
    ref = stack_module.StackRef("dev", REPO / "infra", "file:///nowhere")
    progress: list[str] = []
    assert stack_module.destroy(ref, progress.append) == {"delete": 42}
    assert events == ["destroy", "remove dev"]
    assert progress[-1] == "stack dev removed from file:///nowhere"

    events.clear()
    fake.fail = True
    with pytest.raises(PodtallyError, match="down failed: deleting ALB: timeout"):
        stack_module.destroy(ref, progress.append)
    assert events == ["destroy"], "a stack whose resources were not deleted is kept"


# --- the credential check through botocore (the cloud extra pins it) ---------------------------


def _bare(home: Path, **extra: str) -> dict[str, str]:
    """An environment with nothing AWS in it but ``extra``; IMDS off unless ``extra`` says."""
    return {"HOME": str(home), "PATH": BARE_PATH, "AWS_EC2_METADATA_DISABLED": "true", **extra}


def test_botocore_resolves_environment_keys(tmp_path: Path) -> None:
    keys = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"}
    assert check_aws_credentials(_bare(tmp_path, **keys)) == "botocore: env"


def test_botocore_finds_nothing_without_a_source(tmp_path: Path) -> None:
    with pytest.raises(PodtallyError) as caught:
        check_aws_credentials(_bare(tmp_path))
    assert caught.value.what.startswith("no AWS credentials found: set AWS_PROFILE")
    # A config file that only sets a region is still no source.
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default]\nregion = us-east-1\n")
    with pytest.raises(PodtallyError, match="no AWS credentials found"):
        check_aws_credentials(_bare(tmp_path))


def test_botocore_reads_the_shared_files_and_runs_a_credential_process(tmp_path: Path) -> None:
    aws = tmp_path / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = x\n"
    )
    assert check_aws_credentials(_bare(tmp_path)) == "botocore: shared-credentials-file"
    (aws / "credentials").unlink()
    process = tmp_path / "get-creds"
    _script(
        process,
        'echo \'{"Version": 1, "AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "x"}\'\n',
    )
    (aws / "config").write_text(f"[profile ci]\ncredential_process = {process}\n")
    assert check_aws_credentials(_bare(tmp_path, AWS_PROFILE="ci")) == "botocore: custom-process"


def test_botocore_names_a_missing_profile(tmp_path: Path) -> None:
    """The fallback took any AWS_PROFILE on trust; botocore knows the profile is not there."""
    assert check_sources(_bare(tmp_path, AWS_PROFILE="nosuch")) == "AWS_PROFILE"
    with pytest.raises(PodtallyError) as caught:
        check_aws_credentials(_bare(tmp_path, AWS_PROFILE="nosuch"))
    assert caught.value.what == (
        "no AWS credentials: The config profile (nosuch) could not be found (set AWS_PROFILE to "
        "a profile in ~/.aws/config, or unset it)"
    )


class _InstanceMetadata(http.server.BaseHTTPRequestHandler):
    """The EC2 instance metadata service as botocore asks it for an instance profile's role."""

    def do_PUT(self) -> None:
        self._answer("/latest/api/token", "a-session-token")

    def do_GET(self) -> None:
        role = "/latest/meta-data/iam/security-credentials/"
        if self.path == role:
            self._answer(role, "podtally-node")
            return
        creds = {
            "Code": "Success",
            "AccessKeyId": "ASIAEXAMPLE",
            "SecretAccessKey": "x",
            "Token": "t",
            "Expiration": "2099-01-01T00:00:00Z",
        }
        self._answer(role + "podtally-node", json.dumps(creds))

    def _answer(self, path: str, body: str) -> None:
        data = body.encode()
        self.send_response(200 if self.path == path else 404)
        self.send_header("Content-Length", str(len(data) if self.path == path else 0))
        self.end_headers()
        if self.path == path:
            self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return


def test_botocore_finds_an_instance_profile(tmp_path: Path) -> None:
    """What the hand-written chain missed: an EC2 instance profile, here from a stand-in for the
    metadata service on loopback (botocore's own endpoint setting points at it)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _InstanceMetadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = _bare(tmp_path)
        env.pop("AWS_EC2_METADATA_DISABLED")
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://127.0.0.1:{server.server_port}/"
        assert check_aws_credentials(env) == "botocore: iam-role"
        with pytest.raises(PodtallyError, match="no AWS credentials"):
            check_sources(env)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_without_botocore_the_fallback_answers(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['botocore'] = None\n"
        "sys.modules['botocore.session'] = None\n"
        "from podtally.cloud import check_aws_credentials\n"
        "print(check_aws_credentials())\n"
    )
    keys = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=_bare(tmp_path, **keys),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "AWS_ACCESS_KEY_ID"


def test_the_process_environment_is_restored(tmp_path: Path) -> None:
    import os

    before = dict(os.environ)
    check_aws_credentials(_bare(tmp_path, AWS_ACCESS_KEY_ID="A", AWS_SECRET_ACCESS_KEY="x"))  # noqa: S106
    with pytest.raises(PodtallyError):
        check_aws_credentials(_bare(tmp_path))
    assert dict(os.environ) == before


def test_verify_reads_the_kubeconfig_and_the_app_s_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a stand-in for the opened stack (the Automation API cannot run here): the secret
    kubeconfig is revealed, as JSON text, for the Job only; other secrets stay redacted; the
    app's name and namespace come from the stack's config."""
    from pulumi.automation import ConfigValue, OutputValue

    import podtally.cloud.stack as stack_module

    class FakeStack:
        def outputs(self) -> dict[str, OutputValue]:
            return {
                "url": OutputValue("https://podtally.example.com", False),
                "replicas": OutputValue(3, False),
                "kubeconfig": OutputValue({"apiVersion": "v1", "kind": "Config"}, True),
                "token": OutputValue("hidden", True),
            }

        def get_all_config(self) -> dict[str, ConfigValue]:
            return {
                "podtally:namespace": ConfigValue("apps"),
                "podtally:appName": ConfigValue("tally"),
                "aws:region": ConfigValue("us-east-1"),
            }

    monkeypatch.setattr(stack_module, "_open", lambda ref, **kwargs: FakeStack())
    ref = stack_module.StackRef("dev", REPO / "infra", "file:///nowhere")
    outputs = stack_module.read_verify_outputs(ref, print)
    assert outputs == {
        "url": "https://podtally.example.com",
        "replicas": 3,
        "kubeconfig": '{"apiVersion": "v1", "kind": "Config"}',
        "token": "[secret]",
        "appName": "tally",
        "namespace": "apps",
    }
    assert stack_module.read_outputs(ref, print)["kubeconfig"] == "[secret]"
