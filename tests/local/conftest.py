"""The local-stack tests run stacks without a supervisor (PODTALLY_SUPERVISOR=off), so that a
test of a command's own recovery (a replica killed before `scale`, HAProxy killed before
`restart`, a dead replica shown by `status`) is not raced by the self-healing.
test_supervisor.py is the exception: it tests the supervisor.

Module-scoped and autouse, so that it is in place before any module-scoped stack starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from podtally.local.supervisor import SWITCH_ENV

SUPERVISED_FILES = {"test_supervisor.py", "test_paths_supervised.py"}


@pytest.fixture(autouse=True, scope="module")
def _no_supervisor(request: pytest.FixtureRequest) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        if request.path.name in SUPERVISED_FILES:
            patch.delenv(SWITCH_ENV, raising=False)
        else:
            patch.setenv(SWITCH_ENV, "off")
        yield
