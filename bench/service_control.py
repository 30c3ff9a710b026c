"""Control for bench/service_bench.py: granian, embedded exactly as `podtally serve` runs it, with
an RSGI app that does nothing but answer the same bytes. The gap between this and nginx is the
HTTP server library's; the gap between this and podtally is podtally's own code.

    python bench/service_control.py HOST PORT
"""

from __future__ import annotations

import sys
from typing import Any

import uvloop

from podtally.service.server import embedded_server

BODY = b"Pod: podtally-5f6d7c8b9a-bench\nNode: local-node-1\nNamespace: podtally\nIP: x\nZone: z\n"
HEADERS = [("content-type", "text/plain; charset=utf-8")]


class App:
    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        protocol.response_bytes(200, HEADERS, BODY)

    def __rsgi_init__(self, loop: Any) -> None:
        return None

    def __rsgi_del__(self, loop: Any) -> None:
        return None


async def main(host: str, port: int) -> None:
    await embedded_server(App(), host, port).serve()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2])))
