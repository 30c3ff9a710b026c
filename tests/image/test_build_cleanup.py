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


def stage_images(stage: str) -> list[str]:
    listed = podman("images", "-q", "--no-trunc", "--filter", "dangling=true", "--filter",
                    f"label=io.podtally.stage={stage}")  # fmt: skip
    return listed.split()


@pytest.fixture
def source_change(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A clone of the repository with a one-line change to the source, and a tag to build it as."""
    if not IMAGE:
        pytest.skip("PODTALLY_TEST_IMAGE names no built image (run through `make image-test`)")
    tree = tmp_path / "tree"
    subprocess.run(["git", "clone", "-q", str(REPO), str(tree)], check=True, timeout=120)
    with (tree / "src" / "podtally" / "__init__.py").open("a") as init:
        init.write("# a change, so that the build stages are built again\n")
    tag = "localhost/podtally-stage-test:1"
    yield tree, tag
    subprocess.run(podman_cmd("rmi", "--ignore", tag), capture_output=True, check=False)


def test_a_rebuild_keeps_only_the_newest_of_each_build_stage(
    tmp_path: Path, source_change: tuple[Path, str]
) -> None:
    tree, tag = source_change
    # An earlier build's wheel stage, as a source change leaves it: older than this build's.
    old_stage = dangling(tmp_path / "old-stage", BASE, "io.podtally.stage=wheel")
    try:
        built = subprocess.run(
            ["bash", str(tree / "scripts" / "image-build.sh")],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tree,
            env={**os.environ, "IMAGE": tag},
            check=False,
        )
        assert built.returncode == 0, built.stderr
        assert not exists(old_stage), "an earlier build stage was left in the store"
        for stage in ("wheel", "venv"):
            kept = stage_images(stage)
            assert len(kept) == 1, (stage, kept)  # the newest: this build's, the next one's cache
            assert kept[0] != old_stage
        assert exists(tag) and exists(IMAGE)
    finally:
        subprocess.run(podman_cmd("rmi", "--ignore", old_stage), capture_output=True, check=False)
