"""The CLI cases of issue 15, point 7: each is bad usage, one error line, exit 2."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Run


@pytest.mark.parametrize("option", ["--replicas", "--max-replicas"])
def test_replica_counts_above_int32_are_bad_usage(podtally: Run, option: str) -> None:
    """Kubernetes stores replica counts as int32: 3,000,000,000 would overflow."""
    extra = ("--autoscale",) if option == "--max-replicas" else ()
    ran = podtally("manifests", *extra, option, "3000000000")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err.splitlines() == [f"error: {option} 3000000000: must be at most 2147483647"]


@pytest.mark.parametrize(
    "args",
    [["down", "--name", "a/b"], ["status", "--name", ""], ["--version", "--junk"]],
    ids=["down-slash", "status-empty", "version-junk"],
)
def test_the_other_point7_cases_stay_bad_usage(podtally: Run, args: list[str]) -> None:
    ran = podtally(*args)
    assert ran.code == 2
    assert len(ran.err.splitlines()) == 1 and ran.err.startswith("error: ")
