"""deploy/ holds rendered parts of the kustomize tree: they must equal a fresh render."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

from tests.k8s.helpers import REPO

RENDER = REPO / "deploy" / "render.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RENDER), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


def test_deploy_copies_are_current() -> None:
    out = _run("--check")
    assert out.returncode == 0, out.stderr


def test_deploy_copies_apply_and_validate() -> None:
    for rel in ("base/podtally.yaml", "overlays/eks/ingress.yaml"):
        docs = list(yaml.safe_load_all((REPO / "deploy" / rel).read_text()))
        assert docs[0]["kind"] == ("Namespace" if rel.startswith("base") else "Ingress")
        for doc in docs:
            kubernetes_validate.validate(doc, "1.35", strict=True)
    eks = (REPO / "deploy" / "overlays" / "eks" / "ingress.yaml").read_text()
    assert "ingressClassName: alb" in eks


def test_check_notices_a_stale_copy(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(REPO / "deploy", copy)
    target = copy / "base" / "podtally.yaml"
    target.write_text(target.read_text().replace("maxSkew: 1", "maxSkew: 2", 1))
    out = _run("--check", "--dir", str(copy))
    assert out.returncode == 1
    assert "base/podtally.yaml" in out.stderr
    # Regenerating repairs it.
    assert _run("--dir", str(copy)).returncode == 0
    assert target.read_text() == (REPO / "deploy" / "base" / "podtally.yaml").read_text()
