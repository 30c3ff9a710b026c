"""A real replica with gRPC on: `podtally serve --grpc-port`, on its own free ports."""

from __future__ import annotations

from pathlib import Path

from tests.support import ServeProcess, free_port, start_serve


def start_grpc_serve(
    tmp_path: Path,
    grpc_port: int | None = None,
    drain_seconds: float = 1.0,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> tuple[ServeProcess, int]:
    """``start_serve`` with gRPC on ``grpc_port`` (a free one by default): (server, gRPC port)."""
    grpc_port = grpc_port or free_port()
    server = start_serve(
        tmp_path,
        env=env,
        args=("--grpc-port", str(grpc_port)),
        drain_seconds=drain_seconds,
        wait_ready=wait_ready,
    )
    return server, grpc_port
