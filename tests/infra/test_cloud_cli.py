"""`podtally cloud ...` as a user runs it, where it cannot reach Pulumi or AWS.

The real console script runs in a subprocess with a bare PATH and a temporary HOME. Each missing
precondition must give one `error: ...` line naming what to install or set, the documented exit
code, no traceback, and nothing written (no state directory, no files in infra/).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.infra.cloud_support import (
    ACTIONS,
    BARE_PATH,
    PODTALLY,
    REPO,
    _env,
    _full_env,
    _infra_listing,
    _one_error_line,
    _run,
    _script,
    _working_pulumi,
)

from podtally.cloud import (
    backend_url,
    check_pulumi_cli,
    check_stack_name,
    find_infra_dir,
)
from podtally.cloud.credentials import check_sources
from podtally.errors import MissingDependencyError, PodtallyError, UsageError


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
