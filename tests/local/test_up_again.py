"""`podtally up` on a stack that runs already (issue 14, point 3): without flags it shows the stack
and exits 0, even after a `scale`; only a flag the user gave that really differs is an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support import free_base, run_cli

from podtally.local import down

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


def test_up_on_a_running_scaled_stack(tmp_path: Path) -> None:
    base = free_base()
    env = {"PODTALLY_STATE_DIR": str(tmp_path)}
    ports = ["--http-port", str(base), "--https-port", str(base + 1), "--stats-port", str(base + 2)]
    name = ["--name", "again"]
    first = run_cli("up", *name, "--replicas", "2", "--drain-seconds", "0.5", *ports, env=env)
    assert first.returncode == 0, first.stderr
    try:
        scaled = run_cli("scale", "3", *name, env=env)
        assert scaled.returncode == 0, scaled.stderr
        # nothing asked: it shows the stack as it runs (3 replicas, its own ports), exit 0
        plain = run_cli("up", *name, env=env)
        assert plain.returncode == 0, plain.stderr
        assert "already up" in plain.stderr
        assert "3/3 replicas UP" in plain.stdout
        assert f"https://127.0.0.1:{base + 1}/" in plain.stdout
        # asked for what runs: the same
        same = run_cli("up", *name, "--replicas", "3", *ports, env=env)
        assert same.returncode == 0, same.stderr
        # asked for something else: one line, exit 2, naming only what conflicts
        other = run_cli("up", *name, "--replicas", "2", env=env)
        assert other.returncode == 2
        assert other.stderr.startswith("error: ") and other.stderr.count("\n") == 1
        assert "--replicas 3 (asked: --replicas 2)" in other.stderr
        assert "port" not in other.stderr
    finally:
        down("again", run_dir=tmp_path / "again")
