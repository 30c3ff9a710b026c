"""Bad input to the image scripts: one `error:` line, exit 2 or 3, nothing left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.image.helpers import Podman
from tests.support import REPO

pytestmark = pytest.mark.image


def _script(
    name: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / name)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )


def _one_error(out: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert says in lines[0], lines[0]


def _path_without_podman(tmp_path: Path) -> str:
    """A PATH with the tools the scripts use, but no podman and no docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sed", "head", "tail", "id", "awk", "mktemp", "dirname", "grep", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_missing_podman(tmp_path: Path) -> None:
    path = _path_without_podman(tmp_path)
    built = _script("image-build.sh", {"PATH": path, "ENGINE": ""})
    _one_error(built, 3, "podman is not installed")
    tested = _script("image-test.sh", {"PATH": path})
    _one_error(tested, 3, "podman is not installed")


def test_unknown_engine() -> None:
    _one_error(_script("image-build.sh", {"ENGINE": "rkt"}), 2, "ENGINE=rkt")


def test_image_tag_that_does_not_exist(podman: Podman) -> None:
    out = _script("image-test.sh", {"IMAGE": "localhost/podtally:no-such-tag"})
    _one_error(out, 2, "no image localhost/podtally:no-such-tag")


def test_base_that_cannot_be_built(podman: Podman, tmp_path: Path) -> None:
    base = "localhost/podtally-base:cannot-build"
    env = {
        "ENGINE": "podman",
        "BASE": base,
        "IMAGE": "localhost/podtally:cannot-build",
        # A mirror that refuses connections: debootstrap fails at its first download.
        "MIRROR": "http://127.0.0.1:9/debian",
        "TMPDIR": str(tmp_path),
        "BUILD_LOG": str(tmp_path / "build.log"),
    }
    out = _script("image-build.sh", env)
    _one_error(out, 3, f"could not build the base {base}")
    assert podman.completed("image", "exists", base).returncode == 1
    assert podman.completed("image", "exists", env["IMAGE"]).returncode == 1
    # debootstrap's working directory is gone.
    assert not list(tmp_path.glob("podtally-base.*"))


def test_a_base_that_is_no_image_reference(podman: Podman, tmp_path: Path) -> None:
    env = {"ENGINE": "podman", "BASE": "Not//An:Image", "IMAGE": "localhost/podtally:bad-base",
           "BUILD_LOG": str(tmp_path / "build.log")}  # fmt: skip
    out = _script("image-build.sh", env)
    _one_error(out, 3, "podman build failed")
    assert podman.completed("image", "exists", env["IMAGE"]).returncode == 1
