"""The local stack under steady load: how long each lifecycle step takes and what clients see.

Brings up a stack of its own (name ``bench``, a temporary run directory, ports 19700-19702),
puts a steady HTTPS load on it (a few threads, a new TLS connection per request, bounded in count
and in time) and times, one after the other: ``restart`` with 3 replicas, ``scale`` 3 -> 6,
``restart`` with 6, ``scale`` 6 -> 3, and a ``kill -9`` of one replica (until HAProxy marks it
DOWN); ``up`` and ``down`` are timed without load. For each step: the wall time, the requests
started during it and how many of them failed. Medians over the rounds, as a markdown table on
stdout; progress on stderr. The stack is always torn down, also on Ctrl-C or an error.

    .venv/bin/python bench/local_bench.py [--rounds 3] [--threads 4] [--drain-seconds 2]
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import signal
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from podtally.errors import PodtallyError
from podtally.local import Stack, StackConfig, down, restart, scale, status, up

NAME = "bench"
HTTP, HTTPS, STATS = 19700, 19701, 19702
STEPS = ("restart (3)", "scale 3 to 6", "restart (6)", "scale 6 to 3", "kill -9 one replica")


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@dataclass
class Request:
    started: float
    ok: bool


@dataclass
class Load:
    """Steady load: ``threads`` loops of GET / on a new TLS connection, bounded twice."""

    port: int
    cafile: Path
    threads: int
    pause: float
    max_requests: int
    max_seconds: float
    done: list[Request] = field(default_factory=list)
    bound_hit: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _one(self, context: ssl.SSLContext) -> bool:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=context)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
            pod = response.getheader("X-Pod-Name")
            return response.status == 200 and pod is not None and body.startswith(b"Pod: ")
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _run(self, deadline: float) -> None:
        context = ssl.create_default_context(cafile=str(self.cafile))
        while not self._stop.is_set():
            if time.monotonic() >= deadline:
                self.bound_hit = f"time bound ({self.max_seconds:g} s)"
                return
            with self._lock:
                if len(self.done) >= self.max_requests:
                    self.bound_hit = f"count bound ({self.max_requests} requests)"
                    return
            started = time.monotonic()
            ok = self._one(context)
            with self._lock:
                self.done.append(Request(started, ok))
            time.sleep(self.pause)

    def start(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        self._workers = [
            threading.Thread(target=self._run, args=(deadline,), daemon=True)
            for _ in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def between(self, t0: float, t1: float) -> tuple[int, int]:
        """(requests started in [t0, t1], how many of those failed)."""
        with self._lock:
            inside = [r for r in self.done if t0 <= r.started <= t1]
        return len(inside), sum(1 for r in inside if not r.ok)

    def settle(self, seconds: float) -> None:
        """Let the load run on an unchanging stack for a while (between steps)."""
        time.sleep(seconds)


@dataclass
class Round:
    up_seconds: float = 0.0
    down_seconds: float = 0.0
    steps: dict[str, tuple[float, int, int]] = field(default_factory=dict)
    outside_failures: int = 0
    total: int = 0
    bound_hit: str = ""


def timed(step: Callable[[], object]) -> tuple[float, float, float]:
    t0 = time.monotonic()
    step()
    t1 = time.monotonic()
    return t0, t1, t1 - t0


def kill_one_and_wait_down(run_dir: Path) -> None:
    """SIGKILL one replica's process group (a pod killed hard); return once HAProxy says DOWN."""
    victim = status(NAME, run_dir=run_dir).replicas[1]
    os.killpg(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = next(
            (r for r in status(NAME, run_dir=run_dir).replicas if r.pod == victim.pod), None
        )
        if seen is None or seen.health == "DOWN":  # None: the supervisor replaced it already
            return
        time.sleep(0.02)
    raise PodtallyError(f"HAProxy did not mark {victim.pod} DOWN within 30 s")


def one_round(args: argparse.Namespace, run_dir: Path) -> Round:
    result = Round()
    ports = {"http_port": HTTP, "https_port": HTTPS, "stats_port": STATS}
    config = StackConfig(name=NAME, run_dir=run_dir, drain_seconds=args.drain_seconds, **ports)
    load: Load | None = None
    try:
        t0 = time.monotonic()
        stack: Stack = up(config)
        result.up_seconds = time.monotonic() - t0
        assert stack.ca_path is not None
        load = Load(
            HTTPS,
            stack.ca_path,
            args.threads,
            args.pause,
            args.max_requests,
            args.max_seconds,
        )
        load.start()
        load.settle(args.settle)
        windows: list[tuple[float, float]] = []
        actions: list[Callable[[], object]] = [
            lambda: restart(NAME, run_dir=run_dir),
            lambda: scale(6, NAME, run_dir=run_dir),
            lambda: restart(NAME, run_dir=run_dir),
            lambda: scale(3, NAME, run_dir=run_dir),
            lambda: kill_one_and_wait_down(run_dir),
        ]
        for name, action in zip(STEPS, actions, strict=True):
            start, end, seconds = timed(action)
            sent, failed = load.between(start, end)
            result.steps[name] = (seconds, sent, failed)
            windows.append((start, end))
            say(f"  {name}: {seconds:.2f} s, {sent} requests, {failed} failed")
            load.settle(args.settle)
        load.stop()
        result.total = len(load.done)
        result.bound_hit = load.bound_hit
        result.outside_failures = sum(
            1 for r in load.done if not r.ok and not any(a <= r.started <= b for a, b in windows)
        )
    finally:
        if load is not None:
            load.stop()
        t0 = time.monotonic()
        down(NAME, run_dir=run_dir)
        result.down_seconds = time.monotonic() - t0
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(rounds: list[Round], args: argparse.Namespace) -> str:
    lines = [
        f"Parameters: medians of {len(rounds)} round(s), {args.threads} client threads, "
        f"a new TLS connection per request, {args.pause * 1000:g} ms pause between a thread's "
        f"requests, {args.settle:g} s of load between steps, replicas' --drain-seconds "
        f"{args.drain_seconds:g}; {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}.",
        "",
        "| step | wall time (s) | requests during it | failed |",
        "|---|---:|---:|---:|",
        f"| `up` (3 replicas, no load) | {median([r.up_seconds for r in rounds]):.2f} "
        "| n/a | n/a |",
    ]
    for name in STEPS:
        seconds = median([r.steps[name][0] for r in rounds])
        sent = median([r.steps[name][1] for r in rounds])
        failed = median([r.steps[name][2] for r in rounds])
        worst = max(r.steps[name][2] for r in rounds)
        lines.append(
            f"| `{name}` | {seconds:.2f} | {sent:.0f} | {failed:.0f} (worst round: {worst}) |"
        )
    lines.append(
        f"| `down` (3 replicas, 1 killed) | {median([r.down_seconds for r in rounds]):.2f} "
        "| n/a | n/a |"
    )
    total = sum(r.total for r in rounds)
    outside = sum(r.outside_failures for r in rounds)
    lines += [
        "",
        f"All rounds: {total} requests, {outside} failed outside the steps above.",
    ]
    bounds = [r.bound_hit for r in rounds if r.bound_hit]
    if bounds:
        lines.append(f"Warning: the load stopped early at its {bounds[0]}: raise the bounds.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.005, help="seconds between requests")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of load between steps")
    parser.add_argument("--drain-seconds", type=float, default=2.0)
    parser.add_argument("--max-requests", type=int, default=200_000, help="per round")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="per round")
    args = parser.parse_args()
    if not (1 <= args.rounds <= 20 and 1 <= args.threads <= 64):
        parser.error("--rounds must be 1..20 and --threads 1..64")
    workdir = Path(tempfile.mkdtemp(prefix="podtally-local-bench-"))
    run_dir = workdir / NAME
    rounds: list[Round] = []
    try:
        for index in range(1, args.rounds + 1):
            say(f"round {index}/{args.rounds}")
            rounds.append(one_round(args, run_dir))
    except PodtallyError as exc:
        say(f"error: {exc}")
        return 3
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        down(NAME, run_dir=run_dir)  # idempotent; one_round already did it unless it failed
        shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write(table(rounds, args) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
