"""The verifier's HTTP/2 and gRPC clients against real replicas and a real HAProxy:
h2c direct, h2 over TLS through HAProxy, gRPC reused channels vs a channel per call, pinning
through the Service path, spread through the ALB path, errors counted by status code."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from podtally.errors import UsageError
from podtally.proto import identity_pb2, identity_pb2_grpc
from podtally.verify.clients.grpc import GrpcEngine, parse_grpc_url
from podtally.verify.clients.h2 import H2Engine
from podtally.verify.options import VerifyOptions
from podtally.verify.probe import Observation
from podtally.verify.target import parse_resolve
from tests.protocols.haproxy import Balancer, start_balancer
from tests.protocols.support import start_grpc_serve
from tests.support import ServeProcess, free_port, run_cli, stopped_on_failure
from tests.verify.conftest import make_certs


def run(engine: Any) -> list[Observation]:
    seen: list[Observation] = []
    engine._sink = seen.append
    asyncio.run(asyncio.wait_for(engine.run(), 60))
    return seen


def h2(url: str, n: int, c: int, streams: int = 5, **kw: Any) -> list[Observation]:
    options = VerifyOptions(url=url, requests=n, concurrency=c, **kw)
    return run(H2Engine(options, lambda _: None, streams=streams))


def grpc_run(url: str, n: int, c: int, new_channel: bool = False, **kw: Any) -> list[Observation]:
    options = VerifyOptions(url=url, requests=n, concurrency=c, new_channel=new_channel, **kw)
    return run(GrpcEngine(options, lambda _: None))


@dataclass
class Fleet:
    servers: list[ServeProcess]
    grpc_ports: list[int]
    balancer: Balancer | None = None
    ca: Path | None = None
    other_ca: Path | None = None


def start_fleet(tmp: Path, count: int) -> Fleet:
    servers: list[ServeProcess] = []
    grpc_ports = []
    with stopped_on_failure(servers):
        for k in range(count):
            server, port = start_grpc_serve(
                tmp, env={"POD_NAME": f"pod-{k}", "NODE_NAME": "n", "POD_NAMESPACE": "ns"}
            )
            servers.append(server)
            grpc_ports.append(port)
    return Fleet(servers, grpc_ports)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    fleet = start_fleet(tmp, 3)
    try:
        certs = make_certs(tmp / "certs", "podtally.test")
        fleet.ca = certs.ca
        fleet.other_ca = certs.other_ca
        fleet.balancer = start_balancer(
            tmp, fleet.grpc_ports, [s.port for s in fleet.servers], certs.server_pem
        )
        yield fleet
    finally:
        if fleet.balancer is not None:
            fleet.balancer.stop()
        for server in fleet.servers:
            server.stop()


# --- HTTP/2 -------------------------------------------------------------------------------------
def test_h2c_with_prior_knowledge_on_the_http_port(fleet: Fleet) -> None:
    seen = h2(fleet.servers[0].url + "/", n=40, c=2, streams=5)
    assert len(seen) == 40
    assert all(o.ok for o in seen), [o.detail for o in seen if not o.ok][:3]
    assert {o.pod for o in seen} == {"pod-0"}
    assert {o.source for o in seen} == {"headers"}
    assert {o.connection for o in seen} == {1, 2}  # two connections, many streams each


def test_h2_over_tls_through_haproxy_spreads_streams_per_request(fleet: Fleet) -> None:
    assert fleet.balancer is not None
    url = f"https://localhost:{fleet.balancer.alb_http}/"
    seen = h2(url, n=60, c=1, streams=6, cacert=fleet.ca)
    assert all(o.ok for o in seen), [o.detail for o in seen if not o.ok][:3]
    assert {o.connection for o in seen} == {1}  # one connection ...
    assert Counter(o.pod for o in seen) == {"pod-0": 20, "pod-1": 20, "pod-2": 20}  # ... all pods


def test_h2_refuses_a_tls_server_that_will_not_speak_h2(fleet: Fleet, tmp_path: Path) -> None:
    # The replicas' HTTP port speaks plain HTTP, not TLS: a TLS failure per request, no hang.
    seen = h2(f"https://127.0.0.1:{fleet.servers[0].port}/", n=2, c=1, streams=1, insecure=True)
    assert [o.error for o in seen] == ["tls", "tls"]


# --- gRPC ---------------------------------------------------------------------------------------
def test_grpc_reuses_one_channel_per_slot_by_default(fleet: Fleet) -> None:
    seen = grpc_run(f"grpc://127.0.0.1:{fleet.grpc_ports[1]}", n=30, c=3)
    assert all(o.ok for o in seen), [o.detail for o in seen if not o.ok][:3]
    assert {o.pod for o in seen} == {"pod-1"}
    assert {o.status for o in seen} == {0}
    assert {o.source for o in seen} == {"headers"}
    assert {o.connection for o in seen} == {1, 2, 3}


def test_grpc_new_channel_opens_one_per_call(fleet: Fleet) -> None:
    seen = grpc_run(f"grpc://127.0.0.1:{fleet.grpc_ports[1]}", n=12, c=2, new_channel=True)
    assert all(o.ok for o in seen)
    assert len({o.connection for o in seen}) == 12


def test_service_path_pins_reused_channels_and_a_channel_per_call_spreads(fleet: Fleet) -> None:
    assert fleet.balancer is not None
    url = f"grpc://127.0.0.1:{fleet.balancer.service}"
    pinned = grpc_run(url, n=60, c=2)
    assert all(o.ok for o in pinned)
    by_connection: dict[int | None, set[str | None]] = {}
    for o in pinned:
        by_connection.setdefault(o.connection, set()).add(o.pod)
    assert all(len(pods) == 1 for pods in by_connection.values())  # each channel: one pod
    assert len({o.pod for o in pinned}) <= 2  # two channels reach at most two of three pods
    spread = grpc_run(url, n=90, c=3, new_channel=True)
    assert all(o.ok for o in spread)
    assert {o.pod for o in spread} == {"pod-0", "pod-1", "pod-2"}


def test_alb_path_spreads_calls_of_one_channel_over_all_pods(fleet: Fleet) -> None:
    assert fleet.balancer is not None
    for url, extra in (
        (f"grpc://127.0.0.1:{fleet.balancer.alb_h2c}", {}),
        (f"grpcs://localhost:{fleet.balancer.alb_tls}", {"cacert": fleet.ca}),
    ):
        seen = grpc_run(url, n=60, c=1, **extra)
        assert all(o.ok for o in seen), [o.detail for o in seen if not o.ok][:3]
        assert {o.connection for o in seen} == {1}
        assert Counter(o.pod for o in seen) == {"pod-0": 20, "pod-1": 20, "pod-2": 20}


def test_grpc_refused_is_an_error_per_call() -> None:
    seen = grpc_run(f"grpc://127.0.0.1:{free_port()}", n=3, c=1, timeout=3)
    assert [o.error for o in seen] == ["refused"] * 3
    assert {o.status for o in seen} == {14}  # UNAVAILABLE


class _Failing(identity_pb2_grpc.IdentityServicer):  # type: ignore[misc]
    """Every third call OK, the others RESOURCE_EXHAUSTED or INTERNAL."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.lock:
            self.calls += 1
            turn = self.calls % 3
        if turn == 1:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
        if turn == 2:
            context.abort(grpc.StatusCode.INTERNAL, "boom")
        context.send_initial_metadata((("x-pod-name", "pod-x"),))
        return identity_pb2.IdentityReply(pod="pod-x")


def test_grpc_errors_are_counted_by_status_code() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    identity_pb2_grpc.add_IdentityServicer_to_server(_Failing(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        seen = grpc_run(f"grpc://127.0.0.1:{port}", n=30, c=1)
    finally:
        server.stop(None)
    assert Counter(o.status for o in seen) == {0: 10, 8: 10, 13: 10}
    assert Counter(o.error for o in seen) == {None: 10, "http-status": 20}
    failed = next(o for o in seen if o.status == 8)
    assert failed.detail == "gRPC RESOURCE_EXHAUSTED: slow down"
    assert {o.pod for o in seen if o.ok} == {"pod-x"}


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("grpc://127.0.0.1:9090/podtally.v1.Identity/Get", "no path"),
        ("grpc://127.0.0.1:9090?x=1", "no path"),
        ("grpcx://127.0.0.1:9090", "grpc:// or grpcs://"),
        ("http://127.0.0.1:9090", "grpc:// or grpcs://"),
        ("grpc://:9090", "no host"),
        ("grpc://127.0.0.1:0", "port 0"),
        ("grpc://127.0.0.1:99999", "not valid"),
    ],
)
def test_bad_grpc_urls_are_usage_errors(url: str, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_grpc_url(url)
    assert words in str(caught.value)
    assert caught.value.setting == "url"
    assert caught.value.exit_code == 2


def test_grpc_default_ports() -> None:
    assert parse_grpc_url("grpcs://example.test").port == 443
    assert parse_grpc_url("grpc://example.test/").port == 80


def test_a_certificate_from_another_ca_is_a_tls_error_for_both_clients(fleet: Fleet) -> None:
    assert fleet.balancer is not None
    seen = h2(f"https://localhost:{fleet.balancer.alb_http}/", n=2, c=1, cacert=fleet.other_ca)
    assert [o.error for o in seen] == ["tls", "tls"]
    assert "not trusted" in (seen[0].detail or "")
    seen = grpc_run(f"grpcs://localhost:{fleet.balancer.alb_tls}", n=2, c=1, cacert=fleet.other_ca)
    assert [o.error for o in seen] == ["tls", "tls"], [o.detail for o in seen]
    assert "not trusted" in (seen[0].detail or "")


@pytest.mark.parametrize("protocol", ["h2", "grpc"])
def test_a_replica_that_stops_mid_run_ends_in_errors_not_a_hang(
    tmp_path: Path, protocol: str
) -> None:
    import signal
    import threading
    import time

    server, grpc_port = start_grpc_serve(tmp_path, env={"POD_NAME": "pod-s"}, drain_seconds=0.3)
    try:
        stopper = threading.Timer(0.8, server.signal, (signal.SIGTERM,))
        stopper.start()
        started = time.monotonic()
        if protocol == "h2":
            options = VerifyOptions(
                url=server.url + "/", requests=None, duration=3, concurrency=2, timeout=1
            )
            seen = run(H2Engine(options, lambda _: None, streams=2))
        else:
            options = VerifyOptions(
                url=f"grpc://127.0.0.1:{grpc_port}", duration=3, concurrency=2, timeout=1
            )
            seen = run(GrpcEngine(options, lambda _: None))
        elapsed = time.monotonic() - started
        stopper.join()
        assert server.wait(timeout=20) == 0
    finally:
        server.stop()
    assert elapsed < 3 + 1 + 2  # the duration, one timeout, and slack
    assert any(o.ok and o.pod == "pod-s" for o in seen)
    errors = {o.error for o in seen if not o.ok}
    assert errors and errors <= {"refused", "reset"}, Counter(o.detail for o in seen if not o.ok)


def test_grpcs_insecure_trusts_the_presented_certificate_whatever_the_name(fleet: Fleet) -> None:
    assert fleet.balancer is not None
    # The certificate names localhost, 127.0.0.1 and podtally.test; ask for another name.
    url = f"grpcs://other.test:{fleet.balancer.alb_tls}"
    resolve = (parse_resolve(f"other.test:{fleet.balancer.alb_tls}:127.0.0.1"),)
    seen = grpc_run(url, n=6, c=1, insecure=True, resolve=resolve)
    assert all(o.ok for o in seen), [o.detail for o in seen]
    strict = grpc_run(url, n=2, c=1, cacert=fleet.ca, resolve=resolve)
    assert [o.error for o in strict] == ["tls", "tls"], [o.detail for o in strict]


# --- `podtally verify` over HTTP/2 and gRPC: the same verdicts, reports and exit codes -----------
def verify_json(*args: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("verify", *args, "--json", "--no-progress", "--max-duration", "60s")
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_verify_h2c_direct_reuses_connections_and_finds_the_one_pod(fleet: Fleet) -> None:
    code, doc = verify_json(
        fleet.servers[2].url + "/",
        "--http2",
        "-n",
        "60",
        "-c",
        "2",
        "--streams",
        "5",
        "--expect-pods",
        "1",
    )
    assert doc["options"]["protocol"] == "http2"
    assert doc["summary"]["connections"] == 2
    assert doc["errors"] == dict.fromkeys(doc["errors"], 0)
    assert [p["pod"] for p in doc["pods"]] == ["pod-2"]
    spread = doc["connection_spread"]
    assert (spread["connections"], spread["pinned"], spread["unit"]) == (2, 2, "connection")
    assert sum(row["responses"] for row in spread["per_connection"]) == 60
    # Two pinned connections are two draws, not sixty: the unit is the connection.
    assert doc["decision"]["unit"] == "connections", doc["decision"]
    assert code == 1 and doc["verdict"]["result"] == "inconclusive", doc["verdict"]


def test_verify_h2_through_haproxy_is_even_in_auto_mode(fleet: Fleet) -> None:
    assert fleet.balancer is not None and fleet.ca is not None
    url = f"https://localhost:{fleet.balancer.alb_http}/"
    code, doc = verify_json(
        url, "--http2", "-c", "2", "--expect-pods", "3", "--cacert", str(fleet.ca)
    )
    assert doc["options"]["auto"] and doc["options"]["protocol"] == "http2"
    assert doc["verdict"]["result"] == "even", doc["verdict"]
    assert doc["decision"]["unit"] == "requests"  # each connection reached all three pods
    assert doc["connection_spread"]["most_pods"] == 3
    assert code == 0


@pytest.mark.parametrize("path", ["h2c", "tls"])
def test_verify_grpc_through_the_l7_path_is_even(fleet: Fleet, path: str) -> None:
    assert fleet.balancer is not None and fleet.ca is not None
    if path == "h2c":
        args: tuple[str, ...] = (f"grpc://127.0.0.1:{fleet.balancer.alb_h2c}",)
    else:
        args = (f"grpcs://localhost:{fleet.balancer.alb_tls}", "--cacert", str(fleet.ca))
    code, doc = verify_json(*args, "-c", "2", "--expect-pods", "3")
    assert doc["options"]["protocol"] == "grpc"
    assert doc["verdict"]["result"] == "even", doc["verdict"]
    assert doc["status_codes"] == {"0": doc["summary"]["requests"]}
    assert doc["summary"]["connections"] == 2  # two channels, reused
    assert code == 0


def test_verify_grpc_text_report_has_the_per_channel_table(fleet: Fleet) -> None:
    assert fleet.balancer is not None
    url = f"grpc://127.0.0.1:{fleet.balancer.service}"
    done = run_cli("verify", url, "-n", "40", "-c", "4", "--no-progress")
    assert "gRPC, one channel per slot, reused (4 channels)" in done.stdout, done.stdout
    assert "per channel: 4 channels, 4 pinned to one pod" in done.stdout
    assert re.search(r"^gRPC status +0 OK: 40$", done.stdout, re.M), done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("  #")]
    assert [row[0] for row in rows] == ["#1", "#2", "#3", "#4"]
    assert sum(int(row[2]) for row in rows) == 40
    assert "--new-channel every call opens a channel of its own" in " ".join(done.stdout.split())


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("grpc://127.0.0.1:9090/podtally.v1.Identity/Get",), "URL 'grpc://127.0.0.1:9090/"),
        (("ftp://127.0.0.1/",), "must start with http://, https://, grpc:// or grpcs://"),
        (("grpc://127.0.0.1:9090", "--http2"), "--http2: gRPC always runs over HTTP/2"),
        (("http://127.0.0.1:9090/", "--new-channel"), "--new-channel: channels are gRPC's"),
        (("http://127.0.0.1:9090/", "--streams", "4"), "it needs --http2"),
        (("http://127.0.0.1:9090/", "--http2", "--streams", "0"), "--streams 0: must be"),
        (("grpc://127.0.0.1:9090", "--keep-alive"), "--keep-alive: is for HTTP/1.1"),
    ],
)
def test_verify_bad_protocol_input_is_one_line_and_exit_2(
    args: tuple[str, ...], words: str
) -> None:
    done = run_cli("verify", *args)
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert words in lines[0], lines[0]
