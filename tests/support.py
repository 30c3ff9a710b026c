"""Test support: real `podtally serve` processes on loopback, a clean environment, free ports,
and the one wait-until loop every test that waits for a process uses."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pty
import random
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from podtally.contract import ENV_NAMES
from podtally.net import ephemeral_range

REPO = Path(__file__).resolve().parent.parent

# Environment variables that would leak the developer's or CI's identity into a replica.
IDENTITY_ENV = (
    *ENV_NAMES,
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "PODTALLY_IMDS_ENDPOINT",
    "PODTALLY_SERVICEACCOUNT_DIR",
)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in IDENTITY_ENV}
    # Never read a real service-account directory, even on a machine that has one.
    env["PODTALLY_SERVICEACCOUNT_DIR"] = "/nonexistent/podtally-test"
    # Never ask a real instance metadata service, even when the tests run on EC2.
    env["PODTALLY_IMDS_ENDPOINT"] = "off"
    env.update(extra or {})
    return env


def accepts(host: str, port: int, timeout: float = 1.0) -> bool:
    """Something accepts TCP connections on ``host:port`` now (a bind test would trip on
    TIME_WAIT)."""
    with socket.socket() as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


# Tests take their ports below the kernel's ephemeral range, each pytest-xdist worker from a
# slice of its own, starting at a random place in it. A port from bind(host, 0) would come from
# the range the kernel also gives every outgoing connection its source port from (and hands to
# every other worker's bind(0)): between the check and a server's bind, a connection of another
# test could take it. That happened once in CI, to a stack's HTTPS port. Below the range, only
# this worker hands the port out. The local stack's own picks (podtally.net.free_port) lie above
# the range, so they never meet these either. Another test run on the same machine (a second
# worktree) has the same slices: each port handed out is also claimed by name (an abstract
# socket, machine-wide within a network namespace, as the ports are) for the next CLAIMS_HELD
# handouts, so two runs never hand out one port at the same time.
TEST_PORTS_FIRST = 20000
TEST_PORTS_LAST = 32767
MIN_ROOM = 2000  # less than this below the ephemeral range, and the tests take a fixed window
CLAIMS_HELD = 256


def _test_ports() -> range:
    """Below the ephemeral range if there is room there, else a fixed window (inside the range
    on any usual machine; not above it, where the local stack draws its own ports with
    podtally.net.free_port, unless the range ends below the window)."""
    first = (ephemeral_range() or (TEST_PORTS_LAST + 1, 0))[0]
    below = range(TEST_PORTS_FIRST, min(first, TEST_PORTS_LAST + 1))
    return below if len(below) >= MIN_ROOM else range(TEST_PORTS_FIRST, TEST_PORTS_LAST + 1)


def _port_slice() -> range:
    ports = _test_ports()
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    width = len(ports) // workers
    return ports[worker * width : (worker + 1) * width]


class _PortPool:
    """This worker's ports, handed out in turn: each checked free and claimed when handed out."""

    def __init__(self) -> None:
        self.ports = _port_slice()
        self.cursor = random.randrange(len(self.ports))
        self.claims: collections.deque[socket.socket] = collections.deque()

    def take(self, hosts_at: Callable[[int], Sequence[tuple[str, int]]], span: int = 1) -> int:
        """The first port P after the cursor such that every ``(host, port)`` of
        ``hosts_at(P)`` can be bound now, ``P .. P+span-1`` lie in the slice, and no other
        test run holds a claim on one of them."""
        for _ in range(len(self.ports)):
            index = self.cursor % len(self.ports)
            self.cursor = index + span
            if index + span > len(self.ports):
                continue
            port = self.ports[index]
            if all(_bindable(host, p) for host, p in hosts_at(port)) and self._claim(port, span):
                return port
        raise AssertionError(f"no free port left in this worker's slice {self.ports}")

    def _claim(self, port: int, span: int) -> bool:
        held: list[socket.socket] = []
        for p in range(port, port + span):
            claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                claim.bind(f"\0podtally-test-port:{p}")
            except OSError:
                claim.close()
                for other in held:
                    other.close()
                return False
            held.append(claim)
        self.claims.extend(held)
        while len(self.claims) > CLAIMS_HELD:
            self.claims.popleft().close()
        return True


def _bindable(host: str, port: int) -> bool:
    """Without SO_REUSEADDR, so a port with connections in TIME_WAIT is not taken either."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


PORTS = _PortPool()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now, that no other test of this run is handed."""
    return PORTS.take(lambda port: [(host, port)])


# The local stack's HAProxy binds 127.0.0.1 and its replicas 127.0.0.11-13 on the HTTP port.
STACK_HOSTS = ("127.0.0.1", "127.0.0.11", "127.0.0.12", "127.0.0.13")


def free_ports(count: int, hosts: tuple[str, ...] = ("127.0.0.1",)) -> tuple[int, ...]:
    """``count`` distinct ports, each free on every one of ``hosts`` now (see free_port)."""
    return tuple(PORTS.take(lambda port: [(host, port) for host in hosts]) for _ in range(count))


def free_base(span: int = 3, replicas: int = 6) -> int:
    """A port P such that P .. P+span-1 are free on 127.0.0.1 and P is free on each replica's
    loopback address (127.0.0.11 ...), where replicas listen on the stack's HTTP port: a
    stack's HTTP, HTTPS and stats ports as ``P, P+1, P+2`` (see free_port)."""

    def wanted(base: int) -> list[tuple[str, int]]:
        on_loopback = [("127.0.0.1", base + k) for k in range(span)]
        return on_loopback + [(f"127.0.0.{10 + k}", base) for k in range(1, replicas + 1)]

    return PORTS.take(wanted, span)


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str | Path],
        host: str,
        port: int,
        log_path: Path,
        env: Mapping[str, str],
        cwd: Path | None = None,
    ) -> ServeProcess:
        """Start ``argv`` (a ``serve`` listening on ``host:port``), its stderr to ``log_path``."""
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(arg) for arg in argv],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=dict(env),
                cwd=cwd,
            )
        return cls(proc, host, port, log_path)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def get(
        self, path: str, headers: Mapping[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(
            self.url + path, headers=dict(headers or {}), method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return (
                    response.status,
                    {k.lower(): v for k, v in response.headers.items()},
                    (response.read()),
                )
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()

    def events(self) -> list[dict[str, object]]:
        return log_events(self.log_path)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def wait_ready(self, *, by_log: bool = False, seconds: float = 30.0) -> ServeProcess:
        """Return this replica once /readyz answers 200 (``by_log``: once it logs its ``ready``
        event); stop it and fail if it exits first or never gets there."""

        def ready() -> bool:
            if by_log:
                return any(e.get("event") == "ready" for e in self.events())
            return self.get("/readyz")[0] == 200

        try:
            wait_until(ready, "serve ready", seconds=seconds, proc=self.proc, log=self.log_path)
        except AssertionError:
            self.stop()
            raise
        return self


def serve_argv(host: str, port: int, drain_seconds: float, *args: str) -> list[str]:
    """``python -m podtally serve`` on ``host:port`` with gRPC off, then ``args``.

    serve's default gRPC port is 9090, and many replicas share loopback here: off, unless the
    caller's ``args`` say otherwise (click takes the last one).
    """
    return [
        sys.executable,
        "-m",
        "podtally",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--drain-seconds",
        str(drain_seconds),
        "--grpc-port",
        "0",
        *args,
    ]


def log_events(path: Path) -> list[dict[str, object]]:
    """The JSON events a replica logged to ``path`` (other lines skipped)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                out.append(event)
    return out


def wait_until(
    done: Callable[[], bool],
    what: str,
    *,
    seconds: float = 30.0,
    proc: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
    pause: float = 0.05,
) -> float:
    """Poll ``done()`` until it is true (an ``OSError`` from it counts as not yet); return the
    seconds that took.

    Fail with ``what`` (and ``log``'s text) if ``proc`` exits first or ``seconds`` pass: every
    wait in the tests is bounded, and says what it waited for.
    """
    start = time.monotonic()
    while True:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: exited with {proc.returncode}: {read_log(log)}")
        with contextlib.suppress(OSError):
            if done():
                return time.monotonic() - start
        if time.monotonic() - start > seconds:
            raise AssertionError(f"{what}: not after {seconds:g} s: {read_log(log)}")
        time.sleep(pause)


def read_log(path: Path | None) -> str:
    if path is None:
        return "(no log)"
    try:
        return path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return "(no log)"


@contextlib.contextmanager
def stopped_on_failure(servers: list[ServeProcess]) -> Iterator[list[ServeProcess]]:
    """Stop every server started so far if starting the next one fails."""
    try:
        yield servers
    except BaseException:
        for server in servers:
            server.stop()
        raise


def start_serve(
    tmp_path: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    drain_seconds: float = 1.0,
    wait_ready: bool = True,
) -> ServeProcess:
    port = port or free_port(host)
    log_path = tmp_path / f"serve-{host}-{port}.log"
    argv = serve_argv(host, port, drain_seconds, *args)
    server = ServeProcess.spawn(argv, host, port, log_path, clean_env(env))
    return server.wait_ready() if wait_ready else server


def run_captured(
    argv: Sequence[str | Path],
    *,
    stdin: str | None = None,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to the end (bounded by ``timeout``), its output captured as text; the exit
    status is the caller's to check."""
    return subprocess.run(
        [str(arg) for arg in argv],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else dict(env),
        cwd=cwd,
    )


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
    stdout: int | IO[Any] = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m podtally ARGS`` as a user would, with a clean identity environment.

    ``stdout`` may point elsewhere (``/dev/full``, a pipe's write end) for the output-error tests.
    """
    return subprocess.run(
        [sys.executable, "-m", "podtally", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        env=clean_env(env),
        cwd=cwd,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class Ran:
    """What an in-process run of the CLI gave: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str


def cli_in_process(*args: str, env: Mapping[str, str] | None = None) -> Ran:
    """``podtally ARGS`` in this process: click's CliRunner isolation around the real ``main``
    (the console script minus ``SystemExit``), so parsing, the library call, the error wording
    and the exit code are the real ones, without an interpreter's start for each case."""
    from click.testing import CliRunner

    from podtally.cli import main

    with CliRunner().isolation(env=dict(env or {})) as (out, err, _):
        code = main(list(args))
    return Ran(code, out.getvalue().decode(), err.getvalue().decode())


def stderr_on_a_terminal(
    argv: list[str], env: Mapping[str, str], timeout: float = 60
) -> tuple[int, str, bytes]:
    """Run ``argv`` with stderr on a pseudo-terminal and stdout on a pipe, until it exits (or
    ``timeout`` seconds pass); return (exit code, what the terminal showed, stdout)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower, env=dict(env))
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, seen.decode(errors="replace"), out
