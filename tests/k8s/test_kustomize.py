"""deploy/ as kustomize: `kubectl kustomize` builds each overlay, and it equals the renderer."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from podtally.k8s import render
from tests.k8s.helpers import REPO
from tests.k8s.kubetools import run

# deploy/render.py, by path: it names the settings each overlay stands for.
_loader = importlib.util.spec_from_file_location("deploy_render", REPO / "deploy" / "render.py")
assert _loader is not None and _loader.loader is not None
deploy_render = importlib.util.module_from_spec(_loader)
_loader.loader.exec_module(deploy_render)

OVERLAYS = REPO / "deploy" / "overlays"


def _build(path: Path) -> list[dict[str, Any]]:
    out = run("kubectl", "kustomize", str(path))
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _by_key(objs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_each_overlay_equals_the_renderer() -> None:
    for profile, spec in deploy_render.specs().items():
        built = _by_key(_build(OVERLAYS / profile))
        want = _by_key(render(spec))
        assert sorted(built) == sorted(want), profile
        for key, obj in want.items():
            assert built[key] == obj, (profile, key)


def test_overlays_validate() -> None:
    for profile in ("generic", "eks"):
        for obj in _build(OVERLAYS / profile):
            kubernetes_validate.validate(obj, "1.35", strict=True)


def test_a_patch_that_no_longer_fits_fails_the_build(tmp_path: Path) -> None:
    # The eks patches `test` the fields they replace: if the renderer moved --drain-seconds, the
    # build stops instead of replacing the wrong argument.
    copy = tmp_path / "deploy"
    shutil.copytree(REPO / "deploy", copy)
    base = copy / "base" / "podtally.yaml"
    base.write_text(base.read_text().replace("- --drain-seconds", "- --drain", 1))
    out = run("kubectl", "kustomize", str(copy / "overlays" / "eks"))
    assert out.returncode != 0
    assert "test" in out.stderr.lower(), out.stderr
