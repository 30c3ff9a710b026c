"""tests/image run against a built image (`make image`, then `make image-test`).

They are marked ``image`` and left out of every run that does not ask for them with ``-m image``
(plain `make test` has no container engine to offer), so they never show up as skipped there.
Each test checks that it left no container behind, build containers included.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.image.helpers import Podman


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "image" in (config.option.markexpr or ""):
        return
    ours = [item for item in items if item.get_closest_marker("image")]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [item for item in items if not item.get_closest_marker("image")]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "image: runs a built container image (make image-test)")


@pytest.fixture(scope="session")
def image() -> str:
    name = os.environ.get("PODTALLY_TEST_IMAGE", "")
    if not name:
        pytest.fail("PODTALLY_TEST_IMAGE is not set: run `make image image-test`")
    return name


@pytest.fixture
def podman() -> Iterator[Podman]:
    engine = Podman()
    before = engine.all_containers()
    yield engine
    engine.remove_started()
    left = engine.all_containers() - before
    assert not left, f"containers left behind: {sorted(left)}"
