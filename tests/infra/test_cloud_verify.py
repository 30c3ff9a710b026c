"""`podtally cloud verify`: the outside check on the stack's outputs, the in-cluster verify Job
through a stand-in kubectl (and the real kubectl's own parser), and the two combined."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.infra.cloud_support import (
    BARE_PATH,
    REPO,
    STACK_KUBECONFIG,
    _script,
    _stack_outputs,
)

from podtally.cloud import (
    incluster,
)
from podtally.errors import NotRunningError, PodtallyError, UsageError
from podtally.k8s.render import to_json


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

        # A split on the outside: the stack's replica count does not clash with it.
        split = ["-n", "40", "--expect-split", "pod=only-pod:100"]
        assert main([*outside_only, *split]) == 0
        captured = capsys.readouterr()
        assert "expecting the split pod=only-pod:100" in captured.err
        assert "verdict: PASS" in captured.out
        assert main([*outside_only, *split, "--expect-pods", "1"]) == 2
        assert "not both" in capsys.readouterr().err

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
    result = incluster.run_verify_job(
        _plan(deadline_seconds=10),
        STACK_KUBECONFIG,
        kubectl=str(kubectl),
        progress=print,
        poll_seconds=0.1,
        wait_margin_seconds=-9.5,
    )
    assert result.exit_code == 3
    assert result.outcome == "did not finish within 0.5s"
    steps = _steps(tmp_path)
    # Bounded by the deadline, not by the wall clock of a busy machine: polls 0.1 s apart stop
    # after 0.5 s, so there are at most six (fewer where each kubectl call is slow).
    assert 1 <= steps.count("get job/tally-verify") <= 6
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
