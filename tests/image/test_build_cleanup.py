"""Rebuilding the image leaves no earlier podtally build behind in podman's store, and touches
nothing that is not podtally's (scripts/image-build.sh)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.helpers import podman_cmd
from tests.support import REPO

pytestmark = pytest.mark.image

IMAGE = os.environ.get("PODTALLY_TEST_IMAGE", "")
BASE = "localhost/podtally-base:bookworm"


def podman(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        podman_cmd(*args), input=stdin, capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout.strip()


def dangling(tmp_path: Path, parent: str, label: str) -> str:
    """An untagged image on ``parent`` with one more ``label``: what an earlier build leaves."""
    tmp_path.mkdir()
    (tmp_path / "Containerfile").write_text(f"FROM {parent}\nLABEL {label}\n")
    tag = f"localhost/podtally-stale-test:{tmp_path.name.lower()[-20:]}"
    podman("build", "--isolation", "chroot", "-q", "-t", tag, str(tmp_path))
    image_id = podman("image", "inspect", "--format", "{{.Id}}", tag)
    podman("untag", tag)
    return image_id


def exists(image_id: str) -> bool:
    return subprocess.run(podman_cmd("image", "exists", image_id), check=False).returncode == 0


@pytest.fixture
def leftovers(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if not IMAGE:
        pytest.skip("PODTALLY_TEST_IMAGE names no built image (run through `make image-test`)")
    ours = dangling(tmp_path / "ours", IMAGE, "podtally.test=stale")
    theirs = dangling(tmp_path / "theirs", BASE, "someone.else=1")
    yield ours, theirs
    for image_id in (ours, theirs):
        subprocess.run(podman_cmd("rmi", "--ignore", image_id), capture_output=True, check=False)


def test_a_rebuild_removes_earlier_untagged_builds_and_only_those(
    leftovers: tuple[str, str],
) -> None:
    ours, theirs = leftovers
    assert exists(ours) and exists(theirs)
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "image-build.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "IMAGE": IMAGE},
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert "earlier build(s) of podtally that no tag names" in built.stdout, built.stdout
    assert not exists(ours), "an earlier podtally build was left in the store"
    assert exists(theirs), "an untagged image that is not podtally's was removed"
    assert exists(IMAGE)
