"""`podtally serve --grpc-port`: parsing in-process, the port in use and the missing extra for real.

The CLI's default is 9090 (the library's is 0: replicas sharing one host cannot all take it);
0 turns gRPC off; PODTALLY_GRPC_PORT sets it too. Without the grpc extra, the default quietly
becomes HTTP only (with a log line), while an explicit port is an error naming the extra.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest

from podtally.service.config import ServeConfig
from tests.cli.conftest import Run, one_error_line
from tests.support import REPO, ServeProcess, accepts, clean_env, free_port, run_cli

HOST = "127.0.0.31"
# `podtally serve ARGS` in a Python where the gRPC packages cannot be imported (as without
# podtally[grpc]): a None in sys.modules makes every import of that name fail.
_WITHOUT_GRPC = (
    "import sys\n"
    "for name in ('grpc', 'grpc_health', 'grpc_reflection'):\n"
    "    sys.modules[name] = None\n"
    "from podtally.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[ServeConfig]:
    """The configs `podtally serve` would run, instead of running them (parsing only)."""
    configs: list[ServeConfig] = []

    def fake_serve(config: ServeConfig) -> int:
        configs.append(config)
        return 0

    monkeypatch.setattr("podtally.service.serve", fake_serve)
    return configs


def _without_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("grpc", "grpc_health", "grpc_reflection"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize(
    ("args", "env", "port"),
    [
        ((), {}, 9090),
        (("--grpc-port", "0"), {}, 0),
        (("--grpc-port", "50051"), {}, 50051),
        ((), {"PODTALLY_GRPC_PORT": "7000"}, 7000),
        (("--grpc-port", "7001"), {"PODTALLY_GRPC_PORT": "7000"}, 7001),
    ],
)
def test_grpc_port_parsing(
    podtally: Run, served: list[ServeConfig], args: tuple[str, ...], env: dict[str, str], port: int
) -> None:
    ran = podtally("serve", "--host", "127.0.0.1", *args, env=env)
    assert ran.code == 0, ran
    assert [c.grpc_port for c in served] == [port]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--grpc-port", "70000"), "error: --grpc-port 70000: must be between 0 (off) and 65535"),
        (("--grpc-port", "-1"), "error: --grpc-port -1: must be between 0 (off) and 65535"),
        (
            ("--port", "9000", "--grpc-port", "9000"),
            "error: --grpc-port 9000: must differ from the HTTP port 9000",
        ),
        (("--grpc-port", "x"), "error: invalid value for '--grpc-port': 'x' is not a valid"),
    ],
)
def test_bad_grpc_ports_are_one_line_exit_2(
    podtally: Run, served: list[ServeConfig], args: tuple[str, ...], line: str
) -> None:
    assert one_error_line(podtally("serve", *args), 2).startswith(line)
    assert served == []


def test_the_help_shows_the_flag_its_default_and_env(podtally: Run) -> None:
    ran = podtally("serve", "--help")
    text = " ".join(ran.out.split())
    assert "--grpc-port INTEGER" in text
    assert "PODTALLY_GRPC_PORT" in text
    assert "default: 9090]" in text.split("--grpc-port", 1)[1]


def test_without_the_extra_an_explicit_port_is_exit_3_naming_it(
    podtally: Run, served: list[ServeConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_grpc(monkeypatch)
    for args, env in (
        (("--grpc-port", "9090"), {}),
        ((), {"PODTALLY_GRPC_PORT": "9091"}),
    ):
        line = one_error_line(podtally("serve", *args, env=env), 3)
        assert line.startswith("error: --grpc-port 909"), line
        assert "pip install 'podtally[grpc]'" in line
    assert served == []
    # Off is off: nothing to import.
    assert podtally("serve", "--grpc-port", "0").code == 0
    assert [c.grpc_port for c in served] == [0]


def test_without_the_extra_the_default_serves_http_only_and_says_so(
    podtally: Run, served: list[ServeConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_grpc(monkeypatch)
    ran = podtally("serve")
    assert ran.code == 0, ran
    assert [c.grpc_port for c in served] == [0]
    event = json.loads(ran.err)
    assert event["event"] == "grpc" and event["listen"] is None
    assert "podtally[grpc]" in event["reason"]


@pytest.mark.slow
def test_a_grpc_port_in_use_is_exit_2_and_leaves_nothing_running() -> None:
    port, grpc_port = free_port(HOST), free_port(HOST)
    with socket.socket() as taken:
        taken.bind((HOST, grpc_port))
        taken.listen(1)
        started = time.monotonic()
        result = run_cli(
            *("serve", "--host", HOST, "--port", str(port), "--grpc-port", str(grpc_port)),
            timeout=60,
            cwd=REPO,
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: --grpc-port {grpc_port}: is already in use on {HOST}\n"
    assert time.monotonic() - started < 30
    # The process is gone (run() waited for it) and so is its HTTP listener.
    assert not accepts(HOST, port)


def _start(tmp_path: Path, env: dict[str, str], *, without_grpc: bool = False) -> ServeProcess:
    """`podtally serve` on HOST with the CLI's default gRPC port, until its `ready` event."""
    port = free_port(HOST)
    log_path = tmp_path / "serve.log"
    program = ["-c", _WITHOUT_GRPC] if without_grpc else ["-m", "podtally"]
    argv = [sys.executable, *program, "serve", "--host", HOST, "--port", str(port)]
    replica = ServeProcess.spawn([*argv, "--drain-seconds", "0"], HOST, port, log_path, env)
    return replica.wait_ready(by_log=True)


def _default_env() -> dict[str, str]:
    env = clean_env({"POD_NAME": "grpc-default"})
    env.pop("PODTALLY_GRPC_PORT", None)  # the CLI's own default, 9090
    return env


@pytest.mark.slow
def test_without_the_extra_a_real_replica_serves_http(tmp_path: Path) -> None:
    replica = _start(tmp_path, _default_env(), without_grpc=True)
    try:
        assert replica.get("/")[2].startswith(b"Pod: grpc-default\n")
        grpc_events = [e for e in replica.events() if e["event"] == "grpc"]
        assert [e["listen"] for e in grpc_events] == [None], grpc_events
        assert not accepts(HOST, 9090)
        replica.signal()
        assert replica.wait() == 0
    finally:
        replica.stop()


@pytest.mark.slow
def test_the_default_starts_grpc_on_9090(tmp_path: Path) -> None:
    """The CLI default, for real: gRPC health answers SERVING on 9090 beside HTTP."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if accepts(HOST, 9090):
        pytest.fail(f"{HOST}:9090 is taken: run the tests in a private network namespace")
    replica = _start(tmp_path, _default_env())
    try:
        with grpc.insecure_channel(f"{HOST}:9090") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert [e["listen"] for e in replica.events() if e["event"] == "grpc"] == [f"{HOST}:9090"]
        replica.signal()
        assert replica.wait() == 0
    finally:
        replica.stop()
