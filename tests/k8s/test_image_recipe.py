"""The image's install recipe, replayed without docker: what deploy/Dockerfile's build stages do
(build the wheel from the files the build context admits, install it with the core dependencies
only into a fresh virtualenv, drop pip), then `podtally serve` from that virtualenv.

This proves the image needs nothing beyond the core extra, and that serving writes nothing into
the installed tree (the read-only root filesystem). It needs PyPI (or the pip index CI
configures) for granian and prometheus-client. Ports 21010-21019 on 127.0.0.22.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.k8s.helpers import REPO
from tests.support import clean_env

HOST = "127.0.0.22"
PORT = 21010


def _copy_dockerfile_sources(context: Path) -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    # The build stage copies exactly these; .dockerignore (deny-all, then allow) must admit each.
    for name in ("pyproject.toml", "README.md", "src"):
        assert f"!{name}" in ignore or f"!{name}/" in ignore, name
    assert "COPY pyproject.toml README.md ./" in dockerfile
    assert "COPY src ./src" in dockerfile
    shutil.copy(REPO / "pyproject.toml", context)
    shutil.copy(REPO / "README.md", context)
    shutil.copytree(
        REPO / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


@pytest.mark.slow
def test_core_only_virtualenv_serves(tmp_path: Path) -> None:
    context, dist, venv = tmp_path / "context", tmp_path / "dist", tmp_path / "venv"
    context.mkdir()
    _copy_dockerfile_sources(context)
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def run(*cmd: str | Path) -> None:
        out = subprocess.run(
            [str(c) for c in cmd],
            capture_output=True,
            text=True,
            timeout=300,
            env=pip_env,
            check=False,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-cache-dir",
        "--no-deps",
        "--wheel-dir",
        dist,
        context,
    )
    (wheel,) = dist.glob("podtally-*.whl")
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--no-cache-dir", wheel)
    run(venv / "bin" / "pip", "uninstall", "--yes", "pip")

    python = venv / "bin" / "python"
    # Core only: the verifier's, local stack's and cloud's dependencies are absent.
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u; print([m for m in "
            "('granian', 'prometheus_client', 'yaml', 'scipy', 'httptools', 'pulumi') "
            "if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert probe.stdout.strip() == "['granian', 'prometheus_client']"

    before = _snapshot(venv)
    env = clean_env(
        {"POD_NAME": "image-pod", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                venv / "bin" / "podtally",
                "serve",
                "--host",
                HOST,
                "--port",
                str(PORT),
                "--drain-seconds",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=env,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            with (
                contextlib.suppress(OSError, urllib.error.HTTPError),
                urllib.request.urlopen(f"http://{HOST}:{PORT}/", timeout=2) as response,
            ):
                body = response.read().decode()
                break
            time.sleep(0.05)
        assert body.startswith("Pod: image-pod\n"), log.read_text()
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    # Nothing in the installed tree was written while serving.
    assert _snapshot(venv) == before
