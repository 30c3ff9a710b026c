"""The identity service against nginx, side by side, driven by wrk in alternation.

nginx and the service run one worker on loopback and serve the same text (nginx from a file);
a third server, granian with an app that does nothing (bench/service_control.py), is the control
that shows how much of the gap is the HTTP library's. Each round runs wrk against each server
with keep-alive and with `Connection: close`, first with two threads (wrk's own default, so the
issue's `wrk -c50`), then with one, which is harder on granian than on nginx (BENCHMARKS.md says
why). The table shows medians over the rounds, the ratios to nginx, and the range of each round's
own ratio. Then the resident memory of idle replicas.

    .venv/bin/python bench/service_bench.py [--rounds 3] [--seconds 5] [--connections 50]
        [--threads 2 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

NGINX_ADDR = "127.0.0.31"
SERVICE_ADDR = "127.0.0.32"
CONTROL_ADDR = "127.0.0.33"
ENV = {
    "POD_NAME": "podtally-5f6d7c8b9a-bench",
    "NODE_NAME": "local-node-1",
    "POD_NAMESPACE": "podtally",
    "POD_IP": SERVICE_ADDR,
    "ZONE": "local-a",
}
TEXT = (
    f"Pod: {ENV['POD_NAME']}\nNode: {ENV['NODE_NAME']}\nNamespace: {ENV['POD_NAMESPACE']}\n"
    f"IP: {ENV['POD_IP']}\nZone: {ENV['ZONE']}\n"
)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_ok(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
            if response.status == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"error: {url} never answered")


@contextlib.contextmanager
def nginx(workdir: Path) -> Iterator[str]:
    port = free_port(NGINX_ADDR)
    workdir.chmod(0o755)  # nginx workers may run as another user
    (workdir / "index.txt").write_text(TEXT)
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen {NGINX_ADDR}:{port} backlog=1024;
    location / {{ default_type text/plain; root {workdir}; try_files /index.txt =404; }}
  }}
}}
"""
    )
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(workdir)])
    try:
        wait_ok(f"http://{NGINX_ADDR}:{port}/")
        yield f"http://{NGINX_ADDR}:{port}/"
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(timeout=10)


def start_service(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "podtally", "serve", "--host", SERVICE_ADDR, "--port", str(port)],
        env={**os.environ, **ENV},
        stderr=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def service() -> Iterator[str]:
    port = free_port(SERVICE_ADDR)
    proc = start_service(port)
    try:
        wait_ok(f"http://{SERVICE_ADDR}:{port}/readyz")
        yield f"http://{SERVICE_ADDR}:{port}/"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def control() -> Iterator[str]:
    """granian embedded like the service, with an app that does nothing (service_control.py)."""
    port = free_port(CONTROL_ADDR)
    script = Path(__file__).with_name("service_control.py")
    proc = subprocess.Popen([sys.executable, str(script), CONTROL_ADDR, str(port)])
    try:
        wait_ok(f"http://{CONTROL_ADDR}:{port}/")
        yield f"http://{CONTROL_ADDR}:{port}/"
    finally:
        proc.kill()
        proc.wait(timeout=10)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, seconds: int, connections: int, close: bool, threads: int) -> dict[str, float]:
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if close:
        args[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=seconds + 30)
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: (.*)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        raise SystemExit(f"error: {url} answered {non2xx.group(1)} non-2xx responses")
    return {"rps": rps, "p50": p50, "p99": p99, "socket_errors": bool(errors)}


def idle_rss_mb(samples: int = 3) -> list[float]:
    """Resident memory of a fresh replica that has answered one request, then sat idle 1 s."""
    values = []
    for _ in range(samples):
        port = free_port(SERVICE_ADDR)
        proc = start_service(port)
        try:
            wait_ok(f"http://{SERVICE_ADDR}:{port}/readyz")
            time.sleep(1)
            status = Path(f"/proc/{proc.pid}/status").read_text()
            kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
            values.append(kb / 1024)
        finally:
            proc.kill()
            proc.wait(timeout=10)
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[2, 1],
        help="wrk threads; each value runs in every round, side by side (default: 2 1; 2 is "
        "wrk's own default, so the issue's `wrk -c50`; 1 leaves the server less CPU)",
    )
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            print(f"error: {tool} not found: sudo apt-get install -y wrk nginx-light")
            return 2

    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        nginx(Path(tmp)) as nginx_url,
        service() as svc_url,
        control() as control_url,
    ):
        targets = {"nginx": nginx_url, "podtally": svc_url, "granian-empty": control_url}
        for url in targets.values():  # warm both up
            wrk(url, 1, args.connections, close=False, threads=2)
        for round_ in range(args.rounds):
            order = list(targets.items())
            if round_ % 2:
                order.reverse()  # alternate who goes first
            for threads in args.threads:
                for mode in ("keep-alive", "close"):
                    for name, url in order:
                        close = mode == "close"
                        run = wrk(url, args.seconds, args.connections, close, threads)
                        results.setdefault((name, mode, threads), []).append(run)
                        print(
                            f"round {round_ + 1} wrk -t{threads} {mode:10} {name:13} "
                            f"{run['rps']:>9.0f} req/s "
                            f"p50 {run['p50']:.3f} ms p99 {run['p99']:.3f} ms",
                            file=sys.stderr,
                        )

    def runs(name: str, mode: str, threads: int, key: str) -> list[float]:
        return [r[key] for r in results[(name, mode, threads)]]

    def med(name: str, mode: str, threads: int, key: str) -> float:
        return statistics.median(runs(name, mode, threads, key))

    print(
        f"\nwrk -c{args.connections}, {args.seconds} s per run, medians of {args.rounds} "
        f"rounds, one worker each, loopback, {os.cpu_count()} cores\n"
    )
    print("| wrk | mode | server | req/s | p50 ms | p99 ms | ratio to nginx | ratio range |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        for mode in ("keep-alive", "close"):
            base = med("nginx", mode, threads, "rps")
            for name in ("nginx", "podtally", "granian-empty"):
                rps = med(name, mode, threads, "rps")
                # The same round's nginx run is the fair partner for each run's own ratio.
                ratios = [
                    a / b
                    for a, b in zip(
                        runs(name, mode, threads, "rps"),
                        runs("nginx", mode, threads, "rps"),
                        strict=True,
                    )
                ]
                print(
                    f"| -t{threads} | {mode} | {name} | {rps:.0f} | "
                    f"{med(name, mode, threads, 'p50'):.3f} | "
                    f"{med(name, mode, threads, 'p99'):.3f} | {rps / base:.2f}x | "
                    f"{min(ratios):.2f} to {max(ratios):.2f}x |"
                )
    rss = idle_rss_mb()
    print(
        f"\nidle replica RSS: median {statistics.median(rss):.1f} MB "
        f"(samples: {', '.join(f'{v:.1f}' for v in rss)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
