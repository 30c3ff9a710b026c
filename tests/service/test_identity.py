"""Identity resolution: env names, fallbacks, and the zone chain against loopback stand-ins.

The Kubernetes API stand-in speaks real HTTPS with a CA made here, and checks the bearer token; the
IMDS stand-in speaks the IMDSv2 token dance. Nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from podtally.identity import resolve
from podtally.local.tls import generate

STANDIN = "127.0.0.25"
KUBE_HOST = "127.0.0.1"  # the stand-in API server's certificate names 127.0.0.1
TOKEN = "test-service-account-token"  # noqa: S105 - a stand-in's token


def _quiet(handler: type[BaseHTTPRequestHandler]) -> type[BaseHTTPRequestHandler]:
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    return handler


class _Server:
    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        tls: ssl.SSLContext | None = None,
        host: str = STANDIN,
    ):
        self.httpd = ThreadingHTTPServer((host, 0), _quiet(handler))
        if tls:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.httpd.requests = self.requests  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ImdsHandler(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        self.server.requests.append(("PUT", self.path, dict(self.headers)))  # type: ignore[attr-defined]
        if self.path == "/latest/api/token" and self.headers.get(
            "X-aws-ec2-metadata-token-ttl-seconds"
        ):
            self._send(200, b"imds-token")
        else:
            self._send(400, b"")

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path, dict(self.headers)))  # type: ignore[attr-defined]
        if self.headers.get("X-aws-ec2-metadata-token") != "imds-token":
            self._send(401, b"")
        elif self.path == "/latest/meta-data/placement/availability-zone":
            self._send(200, b"eu-west-1b")
        else:
            self._send(404, b"")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _kube_handler(status: int, labels: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class KubeHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.server.requests.append(("GET", self.path, dict(self.headers)))  # type: ignore[attr-defined]
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                code, body = 401, {"kind": "Status", "code": 401}
            elif status != 200:
                code, body = status, {"kind": "Status", "code": status}
            elif self.path == "/api/v1/nodes/node-a":
                code, body = 200, {"kind": "Node", "metadata": {"name": "node-a", "labels": labels}}
            else:
                code, body = 404, {"kind": "Status", "code": 404}
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return KubeHandler


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A CA and a server certificate (for 127.0.0.1) for the stand-in API server."""
    files = generate(tmp_path_factory.mktemp("pki"), "kubernetes-standin")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.server_pem)  # certificate and key in one file
    return files.ca_cert, context


@pytest.fixture
def sa_dir(tmp_path: Path, pki: tuple[Path, ssl.SSLContext]) -> Path:
    """A service-account directory as Kubernetes mounts it."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(TOKEN + "\n")
    (directory / "namespace").write_text("from-file\n")
    (directory / "ca.crt").write_bytes(pki[0].read_bytes())
    return directory


@pytest.fixture
def imds() -> Iterator[_Server]:
    server = _Server(ImdsHandler)
    yield server
    server.close()


def kube(pki: tuple[Path, ssl.SSLContext], status: int = 200, labels: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    zone = {"topology.kubernetes.io/zone": "eu-west-1c"}
    return _Server(_kube_handler(status, zone if labels is None else labels), pki[1], KUBE_HOST)


def in_pod(api: _Server, **extra: str) -> dict[str, str]:
    """The environment of a pod on node-a whose API server is the stand-in ``api``."""
    return {
        "NODE_NAME": "node-a",
        "KUBERNETES_SERVICE_HOST": KUBE_HOST,
        "KUBERNETES_SERVICE_PORT": str(api.port),
        **extra,
    }


def events_log() -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    seen: list[tuple[str, dict[str, Any]]] = []
    return seen, lambda event, fields: seen.append((event, dict(fields)))


NOWHERE = Path("/nonexistent/podtally-test")
# Tests that do not stand in for IMDS switch it off, so a run on EC2 never asks the real one.
OFF = {"PODTALLY_IMDS_ENDPOINT": "off"}


def test_downward_api_names() -> None:
    env = {
        "POD_NAME": "p",
        "NODE_NAME": "n",
        "POD_NAMESPACE": "ns",
        "POD_IP": "10.1.2.3",
        "ZONE": "z",
        "POD_VERSION": "canary",
    }
    who = resolve("0.0.0.0", env, serviceaccount_dir=NOWHERE)
    assert [(f.value, f.source) for f in who.fields().values()] == [
        ("p", "env"),
        ("n", "env"),
        ("ns", "env"),
        ("10.1.2.3", "env"),
        ("z", "env"),
        ("canary", "env"),
    ]


def test_without_pod_version_the_version_is_unknown() -> None:
    who = resolve("127.0.0.1", OFF, serviceaccount_dir=NOWHERE)
    assert (who.version.value, who.version.source) == ("unknown", "fallback")
    assert who.text().splitlines()[-2:] == ["Zone: unknown", "Version: unknown"]
    assert ("x-pod-version", "unknown") in who.headers()


def test_the_original_exercises_names_work_too() -> None:
    env = {
        "K8_POD_NAME": "old-pod",
        "K8_NODE_NAME": "old-node",
        "K8_POD_NAMESPACE": "old-ns",
        "K8_POD_IP": "10.9.9.9",
    }
    who = resolve("127.0.0.1", {**env, **OFF}, serviceaccount_dir=NOWHERE)
    assert (who.pod.value, who.node.value, who.namespace.value, who.ip.value) == (
        "old-pod",
        "old-node",
        "old-ns",
        "10.9.9.9",
    )
    assert {f.source for f in (who.pod, who.node, who.namespace, who.ip)} == {"env"}
    # The new names win when both are set.
    both = resolve("127.0.0.1", {**env, **OFF, "POD_NAME": "new-pod"}, serviceaccount_dir=NOWHERE)
    assert both.pod.value == "new-pod"


def test_fallbacks() -> None:
    who = resolve("127.0.0.26", OFF, serviceaccount_dir=NOWHERE)
    assert who.pod.value == socket.gethostname() and who.pod.source == "fallback"
    assert (who.node.value, who.node.source) == ("unknown", "fallback")
    assert (who.namespace.value, who.namespace.source) == ("default", "fallback")
    assert (who.ip.value, who.ip.source) == ("127.0.0.26", "fallback")  # the bound address
    assert (who.zone.value, who.zone.source) == ("unknown", "fallback")
    anywhere = resolve("0.0.0.0", OFF, serviceaccount_dir=NOWHERE)
    assert not ipaddress.ip_address(anywhere.ip.value).is_unspecified


def test_namespace_from_the_service_account_file(sa_dir: Path) -> None:
    who = resolve("127.0.0.1", OFF, serviceaccount_dir=sa_dir)
    assert (who.namespace.value, who.namespace.source) == ("from-file", "file")


def test_zone_from_the_kubernetes_api(pki: Any, sa_dir: Path, imds: _Server) -> None:
    api = kube(pki)
    try:
        env = in_pod(api, PODTALLY_IMDS_ENDPOINT=f"http://{STANDIN}:{imds.port}")
        who = resolve("127.0.0.1", env, serviceaccount_dir=sa_dir)
    finally:
        api.close()
    assert (who.zone.value, who.zone.source) == ("eu-west-1c", "kubernetes-api")
    assert [r[1] for r in api.requests] == ["/api/v1/nodes/node-a"]
    assert imds.requests == [], "IMDS is not asked once the API answered"


def test_forbidden_api_falls_through_to_imds(pki: Any, sa_dir: Path, imds: _Server) -> None:
    api = kube(pki, status=403)
    seen, log = events_log()
    try:
        env = in_pod(api, PODTALLY_IMDS_ENDPOINT=f"http://{STANDIN}:{imds.port}")
        who = resolve("127.0.0.1", env, serviceaccount_dir=sa_dir, log=log)
    finally:
        api.close()
    assert (who.zone.value, who.zone.source) == ("eu-west-1b", "imds")
    assert [(m, p) for m, p, _ in imds.requests] == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/placement/availability-zone"),
    ]
    assert seen[0][0] == "zone-lookup-failed" and "HTTP 403" in seen[0][1]["reason"]


def test_node_without_zone_label(pki: Any, sa_dir: Path) -> None:
    api = kube(pki, labels={})
    seen, log = events_log()
    try:
        env = in_pod(api, **OFF)
        who = resolve("127.0.0.1", env, serviceaccount_dir=sa_dir, log=log)
    finally:
        api.close()
    assert who.zone.source == "fallback"
    assert "topology.kubernetes.io/zone" in seen[0][1]["reason"]


def test_in_a_cluster_without_node_name_says_why_it_skips_the_api(pki: Any, sa_dir: Path) -> None:
    api = kube(pki)
    seen, log = events_log()
    try:
        env = {k: v for k, v in in_pod(api, **OFF).items() if k != "NODE_NAME"}
        who = resolve("127.0.0.1", env, serviceaccount_dir=sa_dir, log=log)
    finally:
        api.close()
    assert who.zone.source == "fallback"
    assert api.requests == []
    assert seen[0][0] == "zone-lookup-skipped" and "NODE_NAME" in seen[0][1]["reason"]


def test_imds_hop_limit_is_reported_and_bounded() -> None:
    # A listener that accepts connections and never answers: what a container sees when the
    # instance's hop limit of 1 drops IMDS's token response.
    silent = socket.socket()
    silent.bind((STANDIN, 0))
    silent.listen(8)
    seen, log = events_log()
    started = time.monotonic()
    try:
        env = {"PODTALLY_IMDS_ENDPOINT": f"http://{STANDIN}:{silent.getsockname()[1]}"}
        who = resolve("127.0.0.1", env, serviceaccount_dir=NOWHERE, log=log, budget=0.3)
    finally:
        silent.close()
    assert (who.zone.value, who.zone.source) == ("unknown", "fallback")
    assert seen and "hop limit" in seen[0][1]["reason"]
    # Bounded by the budget, not by a socket's default timeout (generous for a slow machine).
    assert time.monotonic() - started < 5


def test_imds_off_is_never_asked(imds: _Server) -> None:
    who = resolve("127.0.0.1", OFF, serviceaccount_dir=NOWHERE)
    assert who.zone.source == "fallback"
    assert imds.requests == []


def test_the_running_service_reports_its_sources(
    serve: Any, pki: Any, sa_dir: Path, imds: _Server
) -> None:
    api = kube(pki)
    try:
        replica = serve(
            host="127.0.0.26",
            env=in_pod(api, POD_NAME="p", PODTALLY_SERVICEACCOUNT_DIR=str(sa_dir)),
        )
        doc = json.loads(replica.get("/api/identity")[2])
    finally:
        api.close()
    assert doc["zone"] == {"value": "eu-west-1c", "source": "kubernetes-api"}
    assert doc["namespace"] == {"value": "from-file", "source": "file"}
    assert doc["ip"] == {"value": "127.0.0.26", "source": "fallback"}
    assert replica.get("/")[1]["x-zone"] == "eu-west-1c"


def test_a_trickling_endpoint_is_cut_off_at_the_budget() -> None:
    """Socket timeouts bound each read; the budget must bound the whole lookup."""
    listener = socket.socket()
    listener.bind((STANDIN, 0))
    listener.listen(8)
    stop = threading.Event()

    def trickle() -> None:  # an answer that never ends: a header line every 0.1 s, for 30 s
        listener.settimeout(10)
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                for i in range(300):
                    if stop.wait(0.1):
                        break
                    conn.sendall(f"X-Slow-{i}: 1\r\n".encode())

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    seen, log = events_log()
    started = time.monotonic()
    try:
        env = {"PODTALLY_IMDS_ENDPOINT": f"http://{STANDIN}:{listener.getsockname()[1]}"}
        who = resolve("127.0.0.1", env, serviceaccount_dir=NOWHERE, log=log, budget=0.3)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        listener.close()
        feeder.join(5)
    assert (who.zone.value, who.zone.source) == ("unknown", "fallback")
    assert seen == [("zone-lookup-failed", {"reason": "no complete answer within 0.3 s"})]
    assert elapsed < 10  # the stand-in would have held it for 30 s (generous for a slow machine)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ZONE", "eu-west-1a\r\nX-Injected: 1"),
        ("POD_NAME", "pod\x00x"),
        ("NODE_NAME", "nöde"),
        ("POD_VERSION", "v1\nPod: spoofed"),
    ],
)
def test_values_that_would_break_the_format_are_refused(name: str, value: str) -> None:
    seen, log = events_log()
    who = resolve("127.0.0.1", {**OFF, name: value}, serviceaccount_dir=NOWHERE, log=log)
    field = {
        "ZONE": who.zone,
        "POD_NAME": who.pod,
        "NODE_NAME": who.node,
        "POD_VERSION": who.version,
    }[name]
    assert field.source == "fallback" and field.value != value
    assert seen[0][0] == "identity-value-refused" and seen[0][1]["from"] == name
    assert len(who.text().splitlines()) == 6  # the seed's four, zone and version


def _has_default_route() -> bool:
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            if line.split()[1] == "00000000":
                return True
    return False


@pytest.mark.skipif(not _has_default_route(), reason="this machine has no IPv4 default route")
def test_bound_to_all_reports_the_default_routes_address() -> None:
    """Not what the hostname resolves to: on stock Debian and Ubuntu that is 127.0.1.1."""
    who = resolve("0.0.0.0", OFF, serviceaccount_dir=NOWHERE)
    assert who.ip.source == "fallback"
    assert not ipaddress.ip_address(who.ip.value).is_loopback
