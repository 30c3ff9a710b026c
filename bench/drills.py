"""Reliability drills (issue 15): what an attacker and a bad day do to a replica and the stack.

Loopback only, bounded in count and time (a few minutes in all); a markdown table on stdout,
progress on stderr. Run it in a private network namespace (`make drills` does):

* one replica (`podtally serve`) and nginx (one worker), side by side: idle sockets held open
  (1,000, 5,000, 10,000; half say nothing, half send half a request head), slowloris, slow body
  and slow read with slowhttptest (1,000 and 5,000 connections) while a probe sends normal
  requests (what failed, the p99), and a fuzz of malformed requests (crash, hangs, RSS);
* the local stack (3 replicas, HAProxy, the supervisor) under steady HTTPS load (3 threads, a
  new connection per request, 5 s client timeout): kill -9 of a replica, of HAProxy, of the
  supervisor; kill -STOP of a replica for 10 s; a `restart` killed with SIGKILL; two restarts at
  once. For each: failed of total, seconds until the stack is healthy again, converged or not.

    .venv/bin/python bench/drills.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import free_port  # noqa: E402

from podtally.local import processes as proc  # noqa: E402
from stack_drills import stack_drills  # noqa: E402

SERVICE_ADDR, NGINX_ADDR = "127.0.0.61", "127.0.0.62"
Row = tuple[str, ...]


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def raw_get(host: str, port: int, timeout: float = 5.0) -> float:
    """One GET /livez on a new connection; its latency in ms (raises on any failure)."""
    start = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        if not sock.recv(64).startswith(b"HTTP/1.1 200"):
            raise OSError("not 200")
    return (time.perf_counter() - start) * 1000


def wait_listening(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            raw_get(host, port, 1)
            return
        time.sleep(0.05)
    raise SystemExit(f"error: {host}:{port} never answered")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def podtally_serve() -> Iterator[tuple[str, int, int]]:
    port = free_port(SERVICE_ADDR)
    command = [sys.executable, "-m", "podtally", "serve", "--host", SERVICE_ADDR]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--drain-seconds", "0"], stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(SERVICE_ADDR, port)
        yield SERVICE_ADDR, port, process.pid
    finally:
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def nginx(workdir: Path) -> Iterator[tuple[str, int, int]]:
    """nginx, one worker, with limits sized like the replica's (fds, keep-alive 75 s)."""
    port = free_port(NGINX_ADDR)
    workdir.chmod(0o755)
    (workdir / "livez").write_text("ok\n")
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log crit;
events {{ worker_connections 19000; }}
http {{
  access_log off;
  keepalive_timeout 75s;
  client_header_timeout 10s;
  client_body_timeout 10s;
  server {{
    listen {NGINX_ADDR}:{port} backlog=4096;
    location / {{ default_type text/plain; root {workdir}; try_files /livez =404; }}
  }}
}}
"""
    )
    process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(workdir)])
    try:
        wait_listening(NGINX_ADDR, port)
        worker = int(
            subprocess.run(
                ["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=False
            ).stdout.split()[0]
        )
        yield NGINX_ADDR, port, worker
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


class Probe:
    """Normal clients beside the attack: one request every 20 ms, 5 s timeout, latencies kept."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.ms: list[float] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(5000):
            if self._stop.is_set():
                return
            try:
                self.ms.append(raw_get(self.host, self.port))
            except OSError:
                self.failed += 1
            time.sleep(0.02)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def cells(self) -> Row:
        total = len(self.ms) + self.failed
        p99 = statistics.quantiles(self.ms, n=100)[98] if len(self.ms) >= 2 else float("nan")
        return f"{self.failed}/{total}", f"{p99:.1f}"


# --- the replica's drills, beside nginx --------------------------------------------------------


def idle_sockets(host: str, port: int, count: int) -> Row:
    held: list[socket.socket] = []
    try:
        for i in range(count):
            sock = socket.create_connection((host, port), timeout=5)
            if i % 2:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: d\r\n")
            held.append(sock)
        time.sleep(0.5)
        with Probe(host, port) as probe:
            time.sleep(3)
        return probe.cells()
    except OSError as exc:
        return f"could not open {len(held)}+1: {exc.strerror}", "-"
    finally:
        for sock in held:
            sock.close()


def slowhttptest(host: str, port: int, mode: str, count: int, seconds: int) -> Row:
    flags = {"slowloris": ["-H"], "slow body": ["-B"], "slow read": ["-X", "-k", "3", "-n", "5"]}
    command = [
        "slowhttptest",
        *flags[mode],
        "-c",
        str(count),
        "-r",
        str(max(200, count // 5)),
        "-i",
        "5",
        "-l",
        str(seconds),
        "-u",
        f"http://{host}:{port}/",
        "-p",
        "3",
    ]
    with Probe(host, port) as probe:
        attack = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            attack.wait(seconds + 20)
        except subprocess.TimeoutExpired:
            attack.kill()
            attack.wait()
    return probe.cells()


def fuzz(host: str, port: int, pid: int, count: int) -> Row:
    """Malformed requests: a valid one mutated (bytes flipped, cut, repeated, junk inserted)."""
    rng = random.Random(15)
    base = b"GET /?a=1 HTTP/1.1\r\nHost: d\r\nAccept: */*\r\nContent-Length: 0\r\n\r\n"
    rss_before, hangs, errors = rss_mb(pid), 0, 0
    for _ in range(count):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[at] = rng.randrange(256)
            elif choice < 0.6:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
            elif choice < 0.8:
                del data[at : at + rng.randint(1, 10)]
            else:
                data[at:at] = data[at : at + 20] * rng.randint(2, 50)
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                sock.sendall(bytes(data))
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
        except TimeoutError:
            hangs += 1
        except OSError:
            errors += 1
    alive = proc.pid_alive(pid)
    return (
        "alive" if alive else "CRASHED",
        str(hangs),
        f"{rss_before:.0f} -> {rss_mb(pid):.0f}" if alive else "-",
    )


def server_drills(quick: bool) -> tuple[list[Row], list[Row], list[Row]]:
    idle_rows: list[Row] = []
    slow_rows: list[Row] = []
    fuzz_rows: list[Row] = []
    sizes = (1000, 5000) if quick else (1000, 5000, 10000)
    slow_sizes = (1000,) if quick else (1000, 5000)
    seconds = 8 if quick else 12
    fuzz_count = 2000 if quick else 10000
    with tempfile.TemporaryDirectory(prefix="podtally-drills-") as tmp:
        for name, server in (("podtally", podtally_serve), ("nginx", lambda: nginx(Path(tmp)))):
            with server() as (host, port, pid):
                for n in sizes:
                    say(f"{name}: {n} idle sockets")
                    idle_rows.append((name, f"{n:,}", *idle_sockets(host, port, n)))
                if shutil.which("slowhttptest"):
                    for mode in ("slowloris", "slow body", "slow read"):
                        for n in slow_sizes:
                            say(f"{name}: {mode} x {n}")
                            cells = slowhttptest(host, port, mode, n, seconds)
                            slow_rows.append((name, mode, f"{n:,}", *cells))
                say(f"{name}: fuzz x {fuzz_count}")
                fuzz_rows.append((name, f"{fuzz_count:,}", *fuzz(host, port, pid, fuzz_count)))
    return idle_rows, slow_rows, fuzz_rows


# --- the stack's drills ------------------------------------------------------------------------


def table(headers: Row, rows: list[Row]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (about a minute)")
    parser.add_argument("--only", choices=("server", "stack"), help="one half only")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.environ.pop("PODTALLY_SUPERVISOR", None)
    print(
        f"podtally drills, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}: "
        f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}, "
        f"fd limit {hard}\n"
    )
    if args.only != "stack":
        idle_rows, slow_rows, fuzz_rows = server_drills(args.quick)
        print("Idle sockets held open (half silent, half half a request head), a probe beside:\n")
        print(table(("server", "sockets", "probe failed", "probe p99 ms"), idle_rows) + "\n")
        if slow_rows:
            print("slowhttptest, a probe beside:\n")
            print(table(("server", "attack", "connections", "probe failed", "p99 ms"), slow_rows))
            print()
        else:
            print("slowhttptest is not installed (apt-get install slowhttptest): skipped\n")
        print("Fuzz (malformed requests, 2 s each at most):\n")
        print(table(("server", "requests", "process", "hangs", "RSS MB"), fuzz_rows) + "\n")
    if args.only != "server":
        rows = stack_drills()
        print("The local stack under steady HTTPS load (3 threads, 5 s client timeout):\n")
        print(
            table(("fault", "requests failed", "seconds until healthy", "converged"), rows) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
