"""Fixtures of the `podtally cloud` tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.infra.cloud_support import _script


@pytest.fixture
def fake_pulumi(tmp_path: Path) -> Path:
    """`pulumi` and `aws` on PATH that record being run (they must not be: checks come first)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "pulumi", f"touch {tmp_path}/pulumi-was-run\nexit 1\n")
    _script(bin_dir / "aws", f"touch {tmp_path}/aws-was-run\nexit 1\n")
    return bin_dir
