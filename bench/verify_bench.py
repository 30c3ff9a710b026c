"""Benchmark `podtally verify` against wrk and the original curl loop, on the local stack.

One run, side by side, the same duration for the load generators, the median of --runs:

- `podtally verify --duration D -c 50` (a new connection per request, the default)
- `wrk -t2 -c50 -d D -H 'Connection: close'` (the fastest common load generator)
- the original check: 100 `curl` processes in a shell loop, `| grep Pod | sort | uniq -c`

for plain HTTP (a stack with --no-tls) and for HTTPS (a stack with its own CA), plus keep-alive
for reference; the time `podtally verify URL --expect-pods 3` takes to an answer in auto mode
(no -n: it sends until the verdict is even or uneven); and the wall time of `podtally demo`.
Prints a markdown table on stdout; progress on stderr.
Usage: python bench/verify_bench.py [--duration 5] [--runs 3] [--auto-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from podtally.local import Stack, StackConfig, down, up

PY = sys.executable
HTTP_PORTS = (20300, 20301, 20302)
TLS_PORTS = (20310, 20311, 20312)
DEMO_PORTS = "20320,20321,20322"
CONCURRENCY = 50
CURL_REQUESTS = 100


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Sample:
    rps: float
    errors: int
    note: str = ""


def podtally_verify(url: str, duration: float, extra: list[str]) -> Sample:
    proc = subprocess.run(
        [
            PY,
            "-m",
            "podtally",
            "verify",
            url,
            "--duration",
            f"{duration}s",
            "-c",
            str(CONCURRENCY),
            "--json",
            "--no-progress",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=False,
    )
    doc = json.loads(proc.stdout)
    summary = doc["summary"]
    return Sample(
        rps=summary["requests_per_second"],
        errors=summary["failed"],
        note=f"{doc['verdict']['result']}, {summary['requests']} requests, {summary['pods']} pods",
    )


@dataclass
class Answer:
    seconds: float  # wall time of the whole command, start-up included
    requests: int
    verdict: str


def time_to_answer(url: str, extra: list[str]) -> Answer:
    """`podtally verify URL --expect-pods 3` in auto mode: how long, how many requests."""
    started = time.perf_counter()
    proc = subprocess.run(
        [PY, "-m", "podtally", "verify", url, "--expect-pods", "3", "--json", *extra],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"podtally verify failed (exit {proc.returncode}):\n{proc.stderr}")
    doc = json.loads(proc.stdout)
    return Answer(seconds, doc["summary"]["requests"], doc["verdict"]["result"])


def answers(runs: int, url: str, extra: list[str]) -> list[Answer]:
    found = []
    for i in range(runs):
        answer = time_to_answer(url, extra)
        say(
            f"  auto mode run {i + 1}/{runs}: {answer.verdict} after {answer.requests} requests, "
            f"{answer.seconds:.2f} s"
        )
        found.append(answer)
    return found


def answer_line(title: str, found: list[Answer]) -> str:
    verdicts = sorted({a.verdict for a in found})
    return (
        f"| {title} | {statistics.median(a.requests for a in found):,.0f} | "
        f"{statistics.median(a.seconds for a in found):.2f} s | "
        f"{', '.join(verdicts)} ({len(found)} runs) |"
    )


def wrk(url: str, duration: float, close: bool) -> Sample:
    headers = ["-H", "Connection: close"] if close else []
    proc = subprocess.run(
        ["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{max(1, round(duration))}s", *headers, url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", proc.stdout).group(1))  # type: ignore[union-attr]
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", proc.stdout
    )
    if socket_errors:
        # With Connection: close, wrk counts the server's close after each response as a
        # read "error"; only connect, write and timeout errors are failures.
        errors += sum(int(socket_errors.group(i)) for i in (1, 3, 4))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", proc.stdout)
    if non2xx:
        errors += int(non2xx.group(1))
    return Sample(rps=rps, errors=errors)


def curl_loop(url: str, cacert: Path | None) -> Sample:
    tls = f"--cacert {cacert} " if cacert else ""
    script = (
        f"for i in $(seq {CURL_REQUESTS}); do curl -s {tls}{url}; done | grep Pod | sort | uniq -c"
    )
    started = time.perf_counter()
    proc = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, timeout=600
    )
    elapsed = time.perf_counter() - started
    counted = sum(int(line.split()[0]) for line in proc.stdout.splitlines())
    return Sample(
        rps=CURL_REQUESTS / elapsed,
        errors=CURL_REQUESTS - counted,
        note=f"{elapsed:.2f} s for {CURL_REQUESTS}",
    )


def median(samples: list[Sample]) -> Sample:
    ordered = sorted(samples, key=lambda s: s.rps)
    middle = ordered[len(ordered) // 2]
    return Sample(
        rps=statistics.median(s.rps for s in samples),
        errors=max(s.errors for s in samples),
        note=middle.note,
    )


def measure(runs: int, what: str, fn: Callable[[], Sample]) -> Sample:
    samples = []
    for i in range(runs):
        sample = fn()
        say(f"  {what} run {i + 1}/{runs}: {sample.rps:,.0f} req/s, {sample.errors} errors")
        samples.append(sample)
    return median(samples)


def bench_stack(
    tls: bool,
    ports: tuple[int, int, int],
    duration: float,
    runs: int,
    run_root: Path,
    auto: dict[str, list[Answer]],
    auto_only: bool = False,
) -> dict[str, Sample]:
    config = StackConfig(
        name="podtally-bench-verify-" + ("tls" if tls else "http"),
        replicas=3,
        http_port=ports[0],
        https_port=ports[1],
        stats_port=ports[2],
        tls=tls,
        run_dir=run_root / ("tls" if tls else "http"),
    )
    say(f"starting the local stack ({'HTTPS' if tls else 'HTTP'}) ...")
    stack: Stack = up(config)
    try:
        url = stack.url
        extra = ["--cacert", str(stack.ca_path)] if tls and stack.ca_path else []
        say(f"podtally verify, auto mode ({'HTTPS' if tls else 'HTTP'}) ...")
        auto["HTTPS" if tls else "HTTP"] = answers(runs, url, extra)
        if auto_only:
            return {}
        results = {
            "verify": measure(
                runs, "podtally verify", lambda: podtally_verify(url, duration, extra)
            ),
            "wrk": measure(runs, "wrk Connection: close", lambda: wrk(url, duration, True)),
            "curl": measure(
                runs, "curl loop", lambda: curl_loop(url, stack.ca_path if tls else None)
            ),
            "verify-ka": measure(
                runs,
                "podtally verify --keep-alive",
                lambda: podtally_verify(url, duration, [*extra, "--keep-alive"]),
            ),
            "wrk-ka": measure(runs, "wrk keep-alive", lambda: wrk(url, duration, False)),
        }
    finally:
        down(config.name, run_dir=config.run_dir)
    return results


def demo_wall(runs: int, run_root: Path) -> tuple[float, list[float]]:
    times = []
    for i in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(
            [
                PY,
                "-m",
                "podtally",
                "demo",
                "--ports",
                DEMO_PORTS,
                "--no-progress",
                "--run-dir",
                str(run_root / f"demo-{i}"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"podtally demo failed (exit {proc.returncode}):\n{proc.stderr}")
        say(f"  podtally demo run {i + 1}/{runs}: {elapsed:.2f} s")
        times.append(elapsed)
    return statistics.median(times), times


def table(title: str, results: dict[str, Sample], duration: float) -> list[str]:
    verify, wrk_close, curl = results["verify"], results["wrk"], results["curl"]
    rows = [
        (
            "`podtally verify -c 50` (new connection per request)",
            verify,
            f"{verify.rps / wrk_close.rps:.2f}x wrk, {verify.rps / curl.rps:.0f}x curl loop",
        ),
        ("`wrk -t2 -c50 -H 'Connection: close'`", wrk_close, "1.00x wrk"),
        (
            f"original check: {CURL_REQUESTS} `curl` processes in a loop",
            curl,
            f"{curl.rps / wrk_close.rps:.3f}x wrk",
        ),
        (
            "`podtally verify -c 50 --keep-alive`",
            results["verify-ka"],
            f"{results['verify-ka'].rps / results['wrk-ka'].rps:.2f}x wrk keep-alive",
        ),
        ("`wrk -t2 -c50` (keep-alive)", results["wrk-ka"], ""),
    ]
    lines = [
        f"### {title} ({duration:g} s per run for verify and wrk)",
        "",
        "| client | req/s (median) | errors | ratio | detail |",
        "|---|---:|---:|---|---|",
    ]
    lines += [
        f"| {name} | {s.rps:,.0f} | {s.errors} | {ratio} | {s.note} |" for name, s, ratio in rows
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-tls", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--auto-only", action="store_true", help="only the auto-mode timings")
    args = parser.parse_args()
    for tool in ("wrk", "curl", "haproxy"):
        if shutil.which(tool) is None and not os.access(f"/usr/sbin/{tool}", os.X_OK):
            raise SystemExit(f"{tool} is not installed (make bench installs it)")

    with tempfile.TemporaryDirectory(prefix="podtally-bench-") as tmp:
        root = Path(tmp)
        auto: dict[str, list[Answer]] = {}
        only = args.auto_only
        http = bench_stack(False, HTTP_PORTS, args.duration, args.runs, root, auto, only)
        tls = (
            None
            if args.skip_tls
            else bench_stack(True, TLS_PORTS, args.duration, args.runs, root, auto, only)
        )
        demo = None if args.skip_demo or only else demo_wall(args.runs, root)

    cpu = platform.processor() or platform.machine()
    auto_lines = [
        "### podtally verify URL --expect-pods 3: time to an answer (auto mode)",
        "",
        f"Machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}; medians of {args.runs} runs, wall time of "
        "the whole command (start-up included); local stack, 3 replicas behind HAProxy "
        "(round robin), a new connection per request, -c 10.",
        "",
        "| listener | requests sent | time to the answer | verdicts |",
        "|---|---:|---:|---|",
        *(answer_line(name, found) for name, found in auto.items()),
    ]
    if only:
        print("\n".join(auto_lines))
        return 0
    lines = [
        "## podtally verify: requests per second through HAProxy (local stack, 3 replicas)",
        "",
        f"Machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"medians of {args.runs} runs; client, HAProxy and replicas share the machine.",
        "",
        *table("Plain HTTP", http, args.duration),
    ]
    if tls is not None:
        lines += ["", *table("HTTPS (TLS handshake on every new connection)", tls, args.duration)]
    verify, wrk_close, curl = http["verify"], http["wrk"], http["curl"]
    lines += [
        "",
        f"Floors (plain HTTP, new connections): >= 25x the curl loop: "
        f"{verify.rps / curl.rps:.0f}x {'OK' if verify.rps >= 25 * curl.rps else 'BELOW'}; "
        f">= 0.25x wrk: {verify.rps / wrk_close.rps:.2f}x "
        f"{'OK' if verify.rps >= 0.25 * wrk_close.rps else 'BELOW'}.",
    ]
    if demo is not None:
        wall, times = demo
        lines += [
            "",
            f"`podtally demo` (up 3 replicas + HAProxy, 1000 HTTPS requests, report, "
            f"down): median wall time {wall:.2f} s "
            f"(runs: {', '.join(f'{t:.2f}' for t in times)}).",
        ]
    print("\n".join([*lines, "", *auto_lines]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
