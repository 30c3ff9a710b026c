"""`podtally demo --grpc` end to end (issue 12): real replicas, real HAProxy, the verifier's real
gRPC clients. Pinned channels through the Service path miss the three replicas added by the
scale-out, and the verdict names them; the ALB path and a channel per call are even.

Needs the verifier's gRPC client (``VerifyOptions(..., new_channel=...)``); skipped without it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from tests.local.localstack_helpers import stack_processes
from tests.support import STACK_HOSTS, free_ports, run_cli

from podtally.local.grpc_demo import GRPC_DEMO_NAME
from podtally.verify import VerifyOptions

pytest.importorskip("grpc")
pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

if "new_channel" not in {f.name for f in dataclasses.fields(VerifyOptions)}:
    pytest.skip("the verifier has no gRPC client yet", allow_module_level=True)


def test_grpc_demo_pins_then_spreads(tmp_path: Path) -> None:
    http, https, stats = free_ports(3, STACK_HOSTS)
    result = run_cli(
        "demo",
        "--grpc",
        "--ports",
        f"{http},{https},{stats}",
        "--run-dir",
        str(tmp_path / GRPC_DEMO_NAME),
        env={"PODTALLY_STATE_DIR": str(tmp_path), "PODTALLY_SUPERVISOR": "off"},
        timeout=240,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:] + out[-3000:]
    assert out.count("as expected") == 3 and "NOT as expected" not in out
    silent = re.search(r"never answered the pinned clients: (.*)", out)
    assert silent is not None and len(silent.group(1).split(", ")) == 3
    # The per-connection table of the pinned run: every channel on one pod, none on a new one.
    assert "per channel:" in out
    for pod in silent.group(1).split(", "):
        assert out.count(pod) == 1  # named once, in the list, never in a table
    assert "only 3 of 6 expected pods answered" in out
    assert stack_processes(tmp_path / GRPC_DEMO_NAME) == []
    assert not (tmp_path / GRPC_DEMO_NAME).exists()
