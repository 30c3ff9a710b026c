"""Real servers for the verifier's tests, all on loopback, all torn down.

- ``replicas``: three real ``podtally serve`` processes on 127.0.0.21-23, one port (free on all
  three, from this worker's pool in tests.support) per group;
- ``StubServer``: a stdlib HTTP server on loopback for what the real service never does (no
  identity, identity only in the body, redirects, errors), recording the client ports it saw;
- raw listeners that accept and then hang, or accept and reset;
- a throw-away CA and server certificate (the local stack's own generator) for TLS;
- a guard that fails any test whose verifier would ask DNS for a name.

Every listener binds port 0 and reports the port the kernel gave it, so test files can run in
parallel without sharing a port.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import ServeProcess, free_ports, start_serve, stopped_on_failure

IDENTITY_HEADERS = (
    "X-Pod-Name",
    "X-Node-Name",
    "X-Pod-Namespace",
    "X-Pod-IP",
    "X-Zone",
    "X-Pod-Version",
)


@dataclass
class Replicas:
    servers: list[ServeProcess]
    pods: list[str]

    @property
    def port(self) -> int:
        """The port every replica of the group listens on (each on its own address)."""
        return self.servers[0].port

    def url(self, index: int = 0) -> str:
        return self.servers[index].url + "/"


def start_replicas(
    tmp: Path, port: int | None = None, count: int = 3, first_address: int = 21, zones: bool = True
) -> Replicas:
    """``count`` real replicas, pod-k on 127.0.0.<first+k>:port; nodes: k=0,1 -> node-a.

    Without ``port``, one the kernel gives out that is free on all the addresses. Versions:
    pod-0 ``canary``, the others ``stable``.
    """
    servers: list[ServeProcess] = []
    pods = []
    if port is None:
        (port,) = free_ports(1, tuple(f"127.0.0.{first_address + k}" for k in range(count)))
    with stopped_on_failure(servers):
        for k in range(count):
            host = f"127.0.0.{first_address + k}"
            pod = f"podtally-test-{k}"
            env = {
                "POD_NAME": pod,
                "NODE_NAME": "node-a" if k < 2 else "node-b",
                "POD_NAMESPACE": "verify-test",
                "POD_IP": host,
                "POD_VERSION": "canary" if k == 0 else "stable",
            }
            if zones:
                env["ZONE"] = "zone-1" if k < 2 else "zone-2"
            servers.append(start_serve(tmp, host=host, port=port, env=env, drain_seconds=0))
            pods.append(pod)
    return Replicas(servers, pods)


# --- stdlib stand-ins ---------------------------------------------------------------------------
Responder = Callable[[BaseHTTPRequestHandler], tuple[int, Mapping[str, str], bytes]]


@dataclass
class StubServer:
    """A ThreadingHTTPServer answering with ``respond(handler)``; records client ports seen."""

    host: str
    port: int
    respond: Responder
    keep_alive: bool = True
    client_ports: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    host_headers: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    tls: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}/"

    def start(self) -> StubServer:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if stub.keep_alive else "HTTP/1.0"

            def do_GET(self) -> None:
                stub.client_ports.append(self.client_address[1])
                stub.paths.append(self.path)
                stub.host_headers.append(self.headers.get("Host", ""))
                status, headers, body = stub.respond(self)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        server = Server((self.host, self.port), Handler)
        self.port = int(server.server_address[1])  # the kernel's choice when asked for port 0
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def identity_responder(pods: list[str], headers: bool = True, body: bool = True) -> Responder:
    """Answer as pods[i % len(pods)] in turn: headers and/or the body's four lines."""
    turn = iter(range(1_000_000))
    lock = threading.Lock()

    def respond(_: BaseHTTPRequestHandler) -> tuple[int, Mapping[str, str], bytes]:
        with lock:
            pod = pods[next(turn) % len(pods)]
        values = (pod, "stub-node", "stub-ns", "127.0.0.1", "stub-zone", "stub-version")
        hdrs = dict(zip(IDENTITY_HEADERS, values, strict=True)) if headers else {}
        text = f"Pod: {pod}\nNode: stub-node\nNamespace: stub-ns\nIP: 127.0.0.1\n" if body else ""
        return 200, {"Content-Type": "text/plain", **hdrs}, (text or "hello\n").encode()

    return respond


@pytest.fixture
def stub() -> Iterator[Callable[..., StubServer]]:
    started: list[StubServer] = []

    def factory(host: str, port: int, respond: Responder, **kwargs: object) -> StubServer:
        server = StubServer(host, port, respond, **kwargs).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


class RawListener:
    """Accepts connections, then never answers (``hang``), resets them (``reset``), or answers
    HTTP/1.0 style with a body delimited by closing the connection (``eof``)."""

    def __init__(self, host: str, port: int, mode: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port = int(self.sock.getsockname()[1])  # the kernel's choice when asked for port 0
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.mode = mode
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "eof":
                # HTTP/1.0 style: no Content-Length, the body ends when the connection does.
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                conn.sendall(b"Pod: eof-pod\nNode: eof-node\nNamespace: ns\nIP: 127.0.0.1\n")
                conn.close()
            elif self.mode == "reset":
                conn.recv(4096)
                # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:
                self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def raw_listener() -> Iterator[Callable[[str, int, str], RawListener]]:
    started: list[RawListener] = []

    def factory(host: str, port: int, mode: str) -> RawListener:
        listener = RawListener(host, port, mode)
        started.append(listener)
        return listener

    yield factory
    for listener in started:
        listener.close()


# --- TLS ----------------------------------------------------------------------------------------
@dataclass
class Certs:
    ca: Path
    server_pem: Path  # certificate then key, as HAProxy takes it
    other_ca: Path  # a CA that did not sign the server certificate

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_pem)
        return context


def make_certs(directory: Path, name: str = "podtally.test") -> Certs:
    """The local stack's own CA and server certificate (localhost, 127.0.0.1 and ``name``)."""
    from podtally.local.tls import generate

    files = generate(directory / "signed", "verify-test", host=name)
    other = generate(directory / "other", "some-other-ca")
    return Certs(ca=files.ca_cert, server_pem=files.server_pem, other_ca=other.ca_cert)


# --- no DNS -------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _no_dns_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The verifier's tests never ask DNS for a name: only loopback literals and ``localhost``
    reach the system resolver; anything else fails the test instead of leaving the machine."""
    from podtally.verify import probe

    real = probe.system_addresses

    async def guarded(host: str, port: int) -> list[str]:
        local = host == "localhost"
        with contextlib.suppress(ValueError):
            local = ipaddress.ip_address(host).is_loopback
        if not local:
            pytest.fail(f"a test asked DNS for {host!r}: use --resolve or an injected resolver")
        return await real(host, port)

    monkeypatch.setattr(probe, "system_addresses", guarded)
