"""`podtally demo --grpc` end to end (issue 12): real replicas, real HAProxy, the verifier's real
gRPC clients. Pinned channels through the Service path miss the three replicas added by the
scale-out, and the verdict names them; the ALB path and a channel per call are even.

Every port the demo's HAProxy binds comes from ``--ports`` (six with ``--grpc``), taken from this
worker's free ports: no test here binds a fixed port.

Needs the verifier's gRPC client (``VerifyOptions(..., new_channel=...)``); skipped without it.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from pathlib import Path

import pytest
from tests.local.localstack_helpers import stack_processes
from tests.support import free_base, run_cli

from podtally.local.grpc_demo import GRPC_DEMO_NAME, GRPC_DEMO_TO, GRPC_PORT_NAMES
from podtally.verify import VerifyOptions

pytest.importorskip("grpc")
pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

if "new_channel" not in {f.name for f in dataclasses.fields(VerifyOptions)}:
    pytest.skip("the verifier has no gRPC client yet", allow_module_level=True)


def _six_ports() -> list[int]:
    """HTTP, HTTPS, stats, gRPC, Service, Service gRPC: free on 127.0.0.1, the HTTP port also on
    the loopback address of each replica the scale-out ends with."""
    base = free_base(len(GRPC_PORT_NAMES), replicas=GRPC_DEMO_TO)
    return list(range(base, base + len(GRPC_PORT_NAMES)))


def test_grpc_demo_pins_then_spreads(tmp_path: Path) -> None:
    ports = _six_ports()
    result = run_cli(
        "demo",
        "--grpc",
        "--ports",
        ",".join(map(str, ports)),
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
    # The runs went through the ports given: the Service path's gRPC port, the ALB path's.
    assert f"== Service path, reused channels: grpc://127.0.0.1:{ports[5]}" in out
    assert f"verifying grpcs://127.0.0.1:{ports[3]} (ALB path" in result.stderr
    assert stack_processes(tmp_path / GRPC_DEMO_NAME) == []
    assert not (tmp_path / GRPC_DEMO_NAME).exists()


@pytest.mark.parametrize("taken", [3, 4, 5], ids=GRPC_PORT_NAMES[3:])
def test_a_taken_grpc_demo_port_is_blamed_on_ports(tmp_path: Path, taken: int) -> None:
    """A port only the gRPC demo binds, in use: one error line naming --ports, exit 2, and
    nothing started, nothing left behind (no process, no run directory)."""
    ports = _six_ports()
    given = ",".join(map(str, ports))
    state = tmp_path / "state"
    run_dir = state / GRPC_DEMO_NAME
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports[taken]))
        busy.listen(1)
        result = run_cli(
            *("demo", "--grpc", "--ports", given, "--run-dir", str(run_dir)),
            env={"PODTALLY_STATE_DIR": str(state), "PODTALLY_SUPERVISOR": "off"},
            timeout=60,
        )
    assert result.returncode == 2, result.stderr
    what = {3: "gRPC", 4: "Service", 5: "Service gRPC"}[taken]
    assert result.stderr.splitlines()[-1] == (
        f"error: --ports '{given}': {what} port 127.0.0.1:{ports[taken]} is already in use: "
        "stop what uses it or pick another"
    )
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert "_port" not in result.stderr  # the stack's own settings are not the demo's
    assert "starting" not in result.stderr and result.stdout == ""
    assert stack_processes(run_dir) == []
    assert not run_dir.exists() and list(state.glob("*")) + list(state.glob(".*")) == []


def test_the_grpc_demo_takes_six_ports(tmp_path: Path) -> None:
    """Three ports (the plain demo's) are not enough: the gRPC demo binds six, and says so
    before it starts anything."""
    ports = _six_ports()[:3]
    given = ",".join(map(str, ports))
    run_dir = tmp_path / GRPC_DEMO_NAME
    result = run_cli("demo", "--grpc", "--ports", given, "--run-dir", str(run_dir), timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"error: --ports '{given}': the gRPC demo takes six ports, "
        "HTTP,HTTPS,STATS,GRPC,SERVICE,SERVICE_GRPC (got 3)\n"
    )
    assert not run_dir.exists()
