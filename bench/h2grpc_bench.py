"""Benchmark the verifier's HTTP/2 and gRPC clients against h2load, on one real replica.

Side by side on the same target, the same duration and the same concurrency, the median of --runs:

- HTTP/2 (h2c, prior knowledge) on the replica's HTTP port: `H2Engine` with C connections x M
  streams vs `h2load -c C -m M`;
- gRPC `Identity/Get` on the replica's gRPC port: `GrpcEngine` with C reused channels (one call
  in flight each) vs `h2load -c C -m 1` posting the same empty framed request;
- the service's gRPC calls per second under h2load `-c C -m M` (its ceiling on this machine).

Prints a markdown table on stdout; progress on stderr. Needs h2load (Debian: nghttp2-client).
Usage: python bench/h2grpc_bench.py [--duration 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.protocols.support import start_grpc_serve

from podtally.verify.clients.grpc import GrpcEngine, parse_grpc_url
from podtally.verify.clients.h2 import H2Engine
from podtally.verify.options import VerifyOptions
from podtally.verify.probe import new_event_loop

CONNECTIONS = 10
STREAMS = 10


def engine_rate(engine: Any) -> tuple[float, int]:
    errors = 0

    def sink(observation: Any) -> None:
        nonlocal errors
        errors += observation.error is not None

    engine._sink = sink
    loop = new_event_loop()
    try:
        summary = loop.run_until_complete(engine.run())
    finally:
        loop.close()
    return summary.sent / summary.elapsed, errors


def h2load_rate(args: list[str], duration: float) -> float:
    out = subprocess.run(
        ["h2load", "-D", f"{duration:g}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    match = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    if match is None:
        raise SystemExit(f"cannot read h2load's output:\n{out}")
    return float(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        print("error: h2load is not installed (Debian: nghttp2-client)", file=sys.stderr)
        return 2
    duration = args.duration
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "get.grpc"
        body.write_bytes(b"\x00\x00\x00\x00\x00")  # one uncompressed, empty GetRequest
        server, grpc_port = start_grpc_serve(Path(tmp), env={"POD_NAME": "bench"})
        try:
            http_url = server.url + "/"
            grpc_url = f"http://127.0.0.1:{grpc_port}/podtally.v1.Identity/Get"
            grpc_h2load = [
                "-d",
                str(body),
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
            ]
            rows: dict[str, list[float]] = {}
            for run in range(args.runs):
                print(f"run {run + 1}/{args.runs}", file=sys.stderr)
                options = VerifyOptions(
                    url=http_url, requests=None, duration=duration, concurrency=CONNECTIONS
                )
                rate, errors = engine_rate(H2Engine(options, print, streams=STREAMS))
                assert errors == 0, errors
                rows.setdefault("h2c: podtally H2Engine", []).append(rate)
                rows.setdefault("h2c: h2load", []).append(
                    h2load_rate(["-c", str(CONNECTIONS), "-m", str(STREAMS), http_url], duration)
                )
                options = VerifyOptions(
                    url="http://127.0.0.1/",
                    requests=None,
                    duration=duration,
                    concurrency=CONNECTIONS,
                )
                engine = GrpcEngine(
                    options, print, target=parse_grpc_url(f"grpc://127.0.0.1:{grpc_port}")
                )
                rate, errors = engine_rate(engine)
                assert errors == 0, errors
                rows.setdefault("gRPC: podtally GrpcEngine", []).append(rate)
                rows.setdefault("gRPC: h2load -m 1", []).append(
                    h2load_rate(
                        ["-c", str(CONNECTIONS), "-m", "1", *grpc_h2load, grpc_url], duration
                    )
                )
                rows.setdefault("gRPC service ceiling: h2load -m 10", []).append(
                    h2load_rate(
                        ["-c", str(CONNECTIONS), "-m", str(STREAMS), *grpc_h2load, grpc_url],
                        duration,
                    )
                )
        finally:
            server.stop()
    medians = {name: statistics.median(values) for name, values in rows.items()}
    print(
        f"| what ({CONNECTIONS} connections, {duration:g} s, median of {args.runs}) "
        "| req/s | runs |"
    )
    print("| --- | ---: | --- |")
    for name, median in medians.items():
        runs = ", ".join(f"{v:.0f}" for v in rows[name])
        print(f"| {name} | {median:.0f} | {runs} |")
    h2_ratio = medians["h2c: podtally H2Engine"] / medians["h2c: h2load"]
    grpc_ratio = medians["gRPC: podtally GrpcEngine"] / medians["gRPC: h2load -m 1"]
    print(f"\nratio podtally/h2load: h2c {h2_ratio:.2f}, gRPC {grpc_ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
