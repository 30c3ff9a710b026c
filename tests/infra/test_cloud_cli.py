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

from podtally.cloud import backend_url, check_aws_credentials, check_pulumi_cli, find_infra_dir
from podtally.errors import MissingDependencyError, PodtallyError, UsageError

REPO = Path(__file__).resolve().parents[2]
PODTALLY = Path(sys.executable).parent / "podtally"
BARE_PATH = "/usr/bin:/bin"
ACTIONS = ("preview", "up", "down", "verify")


def _env(home: Path, path: str = BARE_PATH, **extra: str) -> dict[str, str]:
    return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", **extra}


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


@pytest.fixture
def fake_pulumi(tmp_path: Path) -> Path:
    """A `pulumi` on PATH that records being run (it must not be: checks come first)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(f"#!/bin/sh\ntouch {tmp_path}/pulumi-was-run\nexit 1\n")
    script.chmod(0o755)
    return bin_dir


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
    assert list(home.iterdir()) == []


def test_without_the_passphrase(tmp_path: Path, fake_pulumi: Path) -> None:
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("[default]\n")
    for action in ACTIONS:
        proc = _run(["cloud", action], _env(home, f"{fake_pulumi}:{BARE_PATH}"))
        line = _one_error_line(proc)
        assert "PULUMI_CONFIG_PASSPHRASE is not set" in line, action
        assert proc.returncode == 2
    assert not (tmp_path / "pulumi-was-run").exists()
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


def test_credentials_sources(tmp_path: Path) -> None:
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
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default]\nregion = us-east-1\n")
    assert check_aws_credentials(home) == str(tmp_path / ".aws" / "config")


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
        outputs = {"url": server.url + "/", "replicas": 1}
        seen: list[str] = []

        def read_outputs(ref: podtally.cloud.StackRef, progress: object) -> dict[str, object]:
            seen.append(ref.name)
            return outputs

        monkeypatch.setattr(podtally.cloud, "read_outputs", read_outputs)
        code = main(["cloud", "verify", "--stack", "dev", "--", "--requests", "20", "--json"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert seen == ["dev"]
        assert f"podtally verify {server.url}/ --expect-pods 1 --requests 20" in captured.err
        assert "only-pod" in captured.out

        outputs["replicas"] = 2  # one pod answers, two expected: the verifier's verdict is 1
        assert main(["cloud", "verify", "--", "--requests", "20", "--json"]) == 1
        capsys.readouterr()

        outputs.pop("url")
        assert main(["cloud", "verify"]) == 3
        assert "has no url/replicas outputs" in capsys.readouterr().err
    finally:
        server.stop()
