"""Shared pieces of the local-stack tests: a test stack's settings and lifetime, a bounded load
loop, probes for processes and ports."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from tests.support import STACK_HOSTS, free_base, free_ports, wait_until

from podtally.local import Stack, StackConfig, down, up
from podtally.local import processes as proc

REPO = Path(__file__).resolve().parents[2]


def get(
    url: str,
    cafile: Path | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], str]:
    """One GET on a new connection, as `curl` would send it: (status, headers, body)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
        response = conn.getresponse()
        body = response.read().decode()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


@dataclass
class LoadResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    pods: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


@dataclass(eq=False)
class Load:
    """Steady client load through the balancer: a few threads, a new connection per request.

    Bounded in count (``max_requests``) and in time (``max_seconds``); records every failure.
    """

    url: str
    cafile: Path | None
    threads: int = 3
    max_requests: int = 20000
    max_seconds: float = 90.0
    pause: float = 0.005
    result: LoadResult = field(default_factory=LoadResult, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _workers: list[threading.Thread] = field(default_factory=list, init=False, repr=False)
    _started: float = field(default=0.0, init=False, repr=False)

    def _one(self) -> None:
        try:
            status, headers, body = get(self.url, self.cafile, timeout=10.0)
        except Exception as exc:  # noqa: BLE001 - every failure counts, whatever it is
            outcome: str | None = f"{type(exc).__name__}: {exc}"
            pod = None
        else:
            pod = headers.get("x-pod-name")
            ok = status == 200 and pod is not None and body.startswith(f"Pod: {pod}\n")
            outcome = None if ok else f"status {status}, pod {pod!r}, body {body[:60]!r}"
        with self._lock:
            if outcome is None and pod is not None:
                self.result.ok += 1
                self.result.pods[pod] += 1
            else:
                self.result.failures.append(f"{time.monotonic() - self._started:.2f}s {outcome}")

    def _run(self) -> None:
        deadline = self._started + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.result.ok + len(self.result.failures) >= self.max_requests:
                    return
            self._one()
            time.sleep(self.pause)

    def __enter__(self) -> Load:
        self._started = time.monotonic()
        self._workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        return self

    def wait_for(self, requests: int, timeout: float = 30.0) -> None:
        """Block until at least ``requests`` answers came back (so the load is really on)."""

        def answered() -> bool:
            with self._lock:
                return self.result.ok + len(self.result.failures) >= requests

        wait_until(answered, f"the load loop at {requests} requests", seconds=timeout, pause=0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        self.result.seconds = time.monotonic() - self._started


def tls_get(port: int, server_hostname: str, cafile: Path) -> str:
    """GET / over TLS to 127.0.0.1:port, verifying ``server_hostname`` (like curl --resolve)."""
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(
            f"GET / HTTP/1.1\r\nHost: {server_hostname}\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def stack_processes(run_dir: Path) -> list[str]:
    """Live processes that belong to the stack whose run directory is ``run_dir``.

    The stack starts every replica and HAProxy with ``run_dir`` as its working directory (which
    /proc still shows, with " (deleted)", once the directory is gone), and HAProxy's command line
    names ``run_dir/haproxy.cfg``. Test run directories are unique temporary paths, so processes
    of another test run on the same machine never match.
    """
    # The kernel reports resolved paths; HAProxy's command line has the path as given.
    wanted = {str(run_dir.absolute()), os.path.realpath(run_dir)}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd").removesuffix(" (deleted)")
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile, or not ours to look at
        ours = any(cwd == w or cwd.startswith(w + "/") or w + "/" in line for w in wanted)
        if ours and proc.pid_alive(int(entry.name)):
            found.append(f"{entry.name} (cwd {cwd}): {line}")
    return found


def stack_config(
    run_dir: Path,
    replicas: int = 3,
    *,
    base: int | None = None,
    addresses: int = 6,
    **settings: Any,
) -> StackConfig:
    """A test stack named ``run_dir.name`` that runs from ``run_dir``: ``replicas`` replicas, a
    0.5 s drain, HTTP, HTTPS and stats on ``base``, ``base + 1``, ``base + 2`` (by default a
    ``free_base`` for ``addresses`` replica addresses).

    ``settings`` add to or replace any of these (ports given there are used as they are).
    """
    values: dict[str, Any] = {"name": run_dir.name, "replicas": replicas, "run_dir": run_dir}
    values["drain_seconds"] = 0.5
    if "http_port" not in settings:
        base = free_base(replicas=addresses) if base is None else base
        values.update(http_port=base, https_port=base + 1, stats_port=base + 2)
    values.update(settings)
    return StackConfig(**values)


def every_path_ports() -> dict[str, int]:
    """Ports for a stack with every path on (HTTP, HTTPS, stats, gRPC, the Service's HTTP and
    gRPC), from this worker's pool, each free on HAProxy's and every replica's address."""
    names = ["http_port", "https_port", "stats_port", "grpc_port", "service_port"]
    names.append("service_grpc_port")
    return dict(zip(names, free_ports(len(names), STACK_HOSTS), strict=True))


@contextlib.contextmanager
def running_stack(
    config: StackConfig, progress: Callable[[str], None] | None = None
) -> Iterator[Stack]:
    """``up(config)``, and ``down`` on the way out, whatever happened in between."""
    started = up(config, progress)
    try:
        yield started
    finally:
        down(config.name, run_dir=config.run_dir)


def stack_pids(stack: Stack) -> list[int]:
    return [stack.haproxy_pid, *(r.pid for r in stack.replicas)]


def assert_all_gone(pids: list[int], within: float = 0.0) -> None:
    """Every process group in ``pids`` is gone now (or within ``within`` seconds)."""
    alive = proc.wait_gone(pids, within)
    assert not alive, f"processes still running: {alive}"


def read_until(stream: IO[str] | None, needle: str, timeout: float = 30) -> str:
    """Read a child's output lines until one contains ``needle``; bounded in lines and time."""
    assert stream is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while len(seen) < 500 and time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"{needle!r} never came; got {''.join(seen)!r}")
