"""A real replica with gRPC on, until `podtally serve --grpc-port` exists (then use start_serve)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ServeProcess, clean_env, free_port

_RUN = (
    "import sys\n"
    "from podtally.errors import PodtallyError\n"
    "from podtally.service.config import ServeConfig\n"
    "from podtally.service.server import serve\n"
    "host, port, grpc_port, drain = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), "
    "float(sys.argv[4])\n"
    "try:\n"
    "    code = serve(ServeConfig(host=host, port=port, grpc_port=grpc_port, "
    "drain_seconds=drain))\n"
    "except PodtallyError as exc:\n"
    "    print(f'error: {exc}', file=sys.stderr)\n"
    "    code = exc.exit_code\n"
    "sys.exit(code)\n"
)


def start_grpc_serve(
    tmp_path: Path,
    grpc_port: int | None = None,
    drain_seconds: float = 1.0,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> tuple[ServeProcess, int]:
    port = free_port()
    grpc_port = grpc_port or free_port()
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RUN,
                "127.0.0.1",
                str(port),
                str(grpc_port),
                str(drain_seconds),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=clean_env(env),
        )
    server = ServeProcess(proc, "127.0.0.1", port, log_path)
    if not wait_ready:
        return server, grpc_port
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {log_path.read_text()}")
        with contextlib.suppress(OSError):
            if server.get("/readyz")[0] == 200:
                return server, grpc_port
        time.sleep(0.05)
    server.stop()
    raise AssertionError(f"serve never became ready: {log_path.read_text()}")
