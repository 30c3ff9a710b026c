"""The request engine through the library API, against real sockets on loopback.

Real `podtally serve` replicas where the service can play the part; stdlib servers and raw
listeners for what it never does (no identity, redirects, hanging, resetting, TLS variants).
Every server binds a port the kernel hands out, so this module shares nothing with another.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from podtally.cli.app import load
from podtally.cli.params import flag_namer
from podtally.errors import PodtallyError, worded
from podtally.verify import (
    Observation,
    Progress,
    VerifyOptions,
    parse_resolve,
    run,
)
from tests.support import free_port
from tests.verify.conftest import (
    Certs,
    RawListener,
    Replicas,
    StubServer,
    identity_responder,
    make_certs,
    start_replicas,
)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    group = start_replicas(tmp_path_factory.mktemp("replicas"))
    yield group
    for server in group.servers:
        server.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


# --- identity -----------------------------------------------------------------------------------
def test_identity_from_a_real_replica(replicas: Replicas) -> None:
    seen: list[Observation] = []
    result = run(
        VerifyOptions(replicas.url(0), requests=20, concurrency=4), on_observation=seen.append
    )
    assert result.requests == 20 and result.responses == 20 and result.identified == 20
    assert result.pod_counts() == {"podtally-test-0": 20}
    assert result.verdict.result == "inconclusive" and result.exit_code == 1
    assert result.status_codes == ((200, 20),)
    assert dict(result.sources) == {"headers": 20}
    obs = seen[0]
    assert (obs.pod, obs.node, obs.namespace, obs.ip, obs.zone, obs.version) == (
        "podtally-test-0",
        "node-a",
        "verify-test",
        "127.0.0.21",
        "zone-1",
        "canary",
    )
    assert obs.peer == f"127.0.0.21:{replicas.port}" and obs.status == 200 and obs.error is None
    assert sorted(o.index for o in seen) == list(range(20))
    assert all(o.latency > 0 for o in seen)


def test_identity_from_the_body_when_there_are_no_headers(
    stub: Callable[..., StubServer],
) -> None:
    # What the original nginx pods did: the four lines in the body, no X-Pod-* headers.
    server = stub("127.0.0.1", 0, identity_responder(["nginx-a", "nginx-b"], headers=False))
    result = run(VerifyOptions(server.url, requests=40, concurrency=1))
    assert result.pod_counts() == {"nginx-a": 20, "nginx-b": 20}
    assert dict(result.sources) == {"body": 40}
    assert result.identities[0][0].node == "stub-node"
    assert any("came from the response body" in note for note in result.notes)
    assert result.verdict.result == "inconclusive" and result.exit_code == 1


def test_a_body_without_identity_is_counted_as_such(stub: Callable[..., StubServer]) -> None:
    server = stub("127.0.0.1", 0, identity_responder(["x"], headers=False, body=False))
    result = run(VerifyOptions(server.url, requests=10, concurrency=2))
    assert result.responses == 10 and result.identified == 0
    assert dict(result.errors)["no-identity"] == 10
    assert result.verdict.result == "no identity" and result.exit_code == 1


def test_non_2xx_is_an_http_status_error_but_still_tallied(
    stub: Callable[..., StubServer],
) -> None:
    def respond(_: object) -> tuple[int, dict[str, str], bytes]:
        return 503, {"X-Pod-Name": "sick-pod"}, b"draining\n"

    server = stub("127.0.0.1", 0, respond)
    result = run(VerifyOptions(server.url, requests=6, concurrency=2, max_error_rate=0.5))
    assert dict(result.errors)["http-status"] == 6
    assert result.status_codes == ((503, 6),)
    assert result.pod_counts() == {"sick-pod": 6}
    assert result.exit_code == 1  # 100 % errors against a 50 % budget


# --- connections --------------------------------------------------------------------------------
def test_new_connection_per_request_vs_keep_alive(stub: Callable[..., StubServer]) -> None:
    """Seen from the server: one client port per request by default, reused with keep-alive."""
    fresh = stub("127.0.0.1", 0, identity_responder(["a", "b"]))
    result = run(VerifyOptions(fresh.url, requests=60, concurrency=3))
    assert result.connections == 60
    assert len(set(fresh.client_ports)) == 60
    assert result.connection_spread is None

    reused = stub("127.0.0.1", 0, identity_responder(["a", "b"]))
    seen: list[Observation] = []
    result = run(
        VerifyOptions(reused.url, requests=60, concurrency=3, keep_alive=True),
        on_observation=seen.append,
    )
    assert result.requests == 60 and result.verdict.result == "inconclusive"
    assert result.connections == 3
    assert len(set(reused.client_ports)) == 3
    assert len({o.connection for o in seen}) == 3
    # This stub alternates pods on every request, like an HTTP-level balancer does.
    assert result.connection_spread is not None
    assert result.connection_spread.pinned == 0
    assert any("keep-alive: 3 connections carried 60 requests" in n for n in result.notes)


def test_keep_alive_reconnects_when_the_server_closes(stub: Callable[..., StubServer]) -> None:
    # An HTTP/1.0 server closes after every response: keep-alive must still work, reconnecting.
    server = stub("127.0.0.1", 0, identity_responder(["a", "b"]), keep_alive=False)
    result = run(VerifyOptions(server.url, requests=30, concurrency=2, keep_alive=True))
    assert result.failed == 0 and result.responses == 30
    assert result.connections == 30 and len(set(server.client_ports)) == 30


def test_balanced_addresses_from_resolve_and_host_header(replicas: Replicas) -> None:
    # --resolve sends a DNS name to a given address; the Host header keeps the name.
    options = VerifyOptions(
        f"http://pods.podtally.test:{replicas.port}/",
        requests=10,
        concurrency=2,
        resolve=(parse_resolve(f"pods.podtally.test:{replicas.port}:127.0.0.23"),),
    )
    result = run(options)
    assert result.pod_counts() == {"podtally-test-2": 10}
    assert result.addresses == (f"127.0.0.23:{replicas.port}",)


def test_host_header_is_the_url_host(stub: Callable[..., StubServer]) -> None:
    server = stub("127.0.0.1", 0, identity_responder(["a"]))
    run(
        VerifyOptions(
            f"http://app.podtally.test:{server.port}/some/path?q=1",
            requests=2,
            concurrency=1,
            resolve=(parse_resolve(f"app.podtally.test:{server.port}:127.0.0.1"),),
        )
    )
    assert server.host_headers == [f"app.podtally.test:{server.port}"] * 2
    assert server.paths == ["/some/path?q=1"] * 2


# --- errors -------------------------------------------------------------------------------------
def test_refused() -> None:
    port = free_port()  # nothing listens there
    result = run(VerifyOptions(f"http://127.0.0.1:{port}/", requests=5, concurrency=2))
    assert dict(result.errors)["refused"] == 5 and result.responses == 0
    assert result.verdict.result == "unreachable" and result.exit_code == 3
    assert result.verdict.failures == (f"connection refused to 127.0.0.1:{port}",)


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
def test_timeout(http2: bool, raw_listener: Callable[[str, int, str], RawListener]) -> None:
    listener = raw_listener("127.0.0.1", 0, "hang")
    url = f"http://127.0.0.1:{listener.port}/"
    result = run(VerifyOptions(url, requests=3, concurrency=3, timeout=0.3, http2=http2))
    assert dict(result.errors)["timeout"] == 3
    # Both engines say it alike, naming the setting that bounds the wait (worded by the CLI).
    said = f"no response from 127.0.0.1:{listener.port} within 0.3s (timeout)"
    assert said in result.verdict.failures[0]
    assert result.exit_code == 3


def test_reset(raw_listener: Callable[[str, int, str], RawListener]) -> None:
    listener = raw_listener("127.0.0.1", 0, "reset")
    result = run(VerifyOptions(f"http://127.0.0.1:{listener.port}/", requests=4, concurrency=2))
    assert dict(result.errors)["reset"] == 4
    assert result.exit_code == 3


def test_body_delimited_by_the_end_of_the_connection(
    raw_listener: Callable[[str, int, str], RawListener],
) -> None:
    listener = raw_listener("127.0.0.1", 0, "eof")
    result = run(VerifyOptions(f"http://127.0.0.1:{listener.port}/", requests=8, concurrency=2))
    assert result.failed == 0 and result.pod_counts() == {"eof-pod": 8}
    assert dict(result.sources) == {"body": 8}


def test_error_budget_on_a_real_run(stub: Callable[..., StubServer]) -> None:
    """Every fourth answer is a 500: 25 % errors, judged against the budget."""
    responder = identity_responder(["a", "b", "c"])
    calls = iter(range(1000))

    def flaky(handler: object) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = responder(handler)  # type: ignore[arg-type]
        return (500 if next(calls) % 4 == 3 else status), dict(headers), body

    server = stub("127.0.0.1", 0, flaky)
    within = run(VerifyOptions(server.url, requests=40, concurrency=1, max_error_rate=0.3))
    assert dict(within.errors)["http-status"] == 10
    assert within.error_rate == pytest.approx(0.25) and not any(
        "budget" in f for f in within.verdict.failures
    )
    over = run(VerifyOptions(server.url, requests=40, concurrency=1, max_error_rate=0.2))
    assert over.exit_code == 1
    assert "10 of 40 requests failed (25.0%: 10 http-status)" in over.verdict.summary


# --- TLS ----------------------------------------------------------------------------------------
def test_tls_with_cacert_and_sni(stub: Callable[..., StubServer], certs: Certs) -> None:
    server = stub(
        "127.0.0.1", 0, identity_responder(["tls-a", "tls-b"]), tls=certs.server_context()
    )
    assert server.url.startswith("https://")
    resolve = (parse_resolve(f"podtally.test:{server.port}:127.0.0.1"),)
    good = run(
        VerifyOptions(
            f"https://podtally.test:{server.port}/",
            requests=10,
            concurrency=2,
            cacert=certs.ca,
            resolve=resolve,
        )
    )
    assert good.pod_counts() == {"tls-a": 5, "tls-b": 5} and good.failed == 0

    untrusted = run(
        VerifyOptions(
            f"https://podtally.test:{server.port}/",
            requests=2,
            concurrency=1,
            cacert=certs.other_ca,
            resolve=resolve,
        )
    )
    assert dict(untrusted.errors)["tls"] == 2 and untrusted.exit_code == 3
    # The advice names the library's settings; `podtally verify` words them with its flags.
    said = flag_namer(load("verify"))
    assert untrusted.verdict.failures[0].endswith(
        f"(it is not signed by the CA in cacert {certs.other_ca})"
    )
    assert worded(untrusted.verdict.failures[0], said) == (
        f"TLS certificate of 127.0.0.1:{server.port} not trusted: "
        "unable to get local issuer certificate "
        f"(it is not signed by the CA in --cacert {certs.other_ca})"
    )

    no_cacert = run(
        VerifyOptions(
            f"https://podtally.test:{server.port}/", requests=1, concurrency=1, resolve=resolve
        )
    )
    assert dict(no_cacert.errors)["tls"] == 1
    assert no_cacert.verdict.failures[0].endswith("(use cacert FILE)")
    assert worded(no_cacert.verdict.failures[0], said).endswith("(use --cacert FILE)")

    wrong_name = run(
        VerifyOptions(
            f"https://wrong.podtally.test:{server.port}/",
            requests=1,
            concurrency=1,
            cacert=certs.ca,
            resolve=(parse_resolve(f"wrong.podtally.test:{server.port}:127.0.0.1"),),
        )
    )
    assert dict(wrong_name.errors)["tls"] == 1
    # The CA is trusted (--cacert was given); the certificate names other hosts. Advice about
    # --cacert would be wrong; the local stack's CA names the host with `podtally up --host`.
    assert wrong_name.verdict.failures[0].endswith(
        "restart the local stack with host wrong.podtally.test"
    )
    assert worded(wrong_name.verdict.failures[0], said) == (
        f"TLS certificate of 127.0.0.1:{server.port} does not name wrong.podtally.test "
        "(hostname mismatch): restart the local stack with podtally up --host wrong.podtally.test"
    )

    wrong_address = run(
        VerifyOptions(
            f"https://127.0.0.9:{server.port}/",
            requests=1,
            concurrency=1,
            cacert=certs.ca,
            resolve=(parse_resolve(f"127.0.0.9:{server.port}:127.0.0.1"),),
        )
    )
    assert wrong_address.verdict.failures[0].startswith(
        f"TLS certificate of 127.0.0.1:{server.port} does not name 127.0.0.9 (IP address mismatch)"
    )

    insecure = run(
        VerifyOptions(
            f"https://wrong.podtally.test:{server.port}/",
            requests=2,
            concurrency=1,
            insecure=True,
            resolve=(parse_resolve(f"wrong.podtally.test:{server.port}:127.0.0.1"),),
        )
    )
    assert insecure.responses == 2 and dict(insecure.errors)["tls"] == 0


def test_https_to_a_plain_http_port_is_a_tls_error(replicas: Replicas) -> None:
    result = run(VerifyOptions(f"https://127.0.0.22:{replicas.port}/", requests=2, concurrency=1))
    assert dict(result.errors)["tls"] == 2
    assert "TLS handshake" in result.verdict.failures[0]


# --- redirects ----------------------------------------------------------------------------------
def test_redirect_reported_and_followed(
    stub: Callable[..., StubServer], replicas: Replicas
) -> None:
    def to_https(_: object) -> tuple[int, dict[str, str], bytes]:
        return 301, {"Location": "https://app.podtally.test/"}, b""

    server = stub("127.0.0.1", 0, to_https)
    result = run(VerifyOptions(server.url, requests=5, concurrency=1))
    assert result.redirects == (("https://app.podtally.test/", 5),)
    assert result.exit_code == 1
    assert result.verdict.failures[0].endswith(
        "redirected to https://app.podtally.test/; use follow or the https URL"
    )

    def to_replica(_: object) -> tuple[int, dict[str, str], bytes]:
        return 308, {"Location": replicas.url(2)}, b""

    hop = stub("127.0.0.1", 0, to_replica)
    followed = run(VerifyOptions(hop.url, requests=6, concurrency=2, follow=True))
    assert followed.pod_counts() == {"podtally-test-2": 6}
    assert followed.failed == 0
    assert any("6 requests followed redirects" in n for n in followed.notes)
    kept = run(VerifyOptions(hop.url, requests=6, concurrency=2, follow=True, keep_alive=True))
    assert kept.pod_counts() == {"podtally-test-2": 6}


# --- pacing, duration, progress -----------------------------------------------------------------
def test_rate_spaces_the_requests(replicas: Replicas) -> None:
    seen: list[Observation] = []
    run(
        VerifyOptions(replicas.url(0), requests=10, concurrency=5, rate=40),
        on_observation=seen.append,
    )
    # Request i may not start before i/rate seconds (a lower bound: holds on any machine).
    assert all(o.start >= o.index / 40 - 0.005 for o in seen)
    assert max(o.start for o in seen) >= 9 / 40 - 0.005


def test_duration_bounds_the_run_and_progress_is_reported(replicas: Replicas) -> None:
    updates: list[Progress] = []
    seen: list[Observation] = []
    result = run(
        VerifyOptions(replicas.url(1), requests=None, duration=0.4, concurrency=2, rate=200),
        progress=updates.append,
        on_observation=seen.append,
    )
    # Only bounds a slow machine cannot break: no request starts at or after the deadline, the
    # run lasts at least until it, and request i starts no sooner than i/rate (so at most
    # 0.4 s * 200/s = 80 requests). How many fit in is the machine's business.
    assert result.elapsed >= 0.4
    assert seen and all(o.start < 0.4 for o in seen)
    assert 1 <= result.requests <= 80
    assert updates and updates[-1].done == result.requests
    assert [u.done for u in updates] == sorted(u.done for u in updates)
    assert updates[-1].fraction == 1.0


# --- names and addresses ------------------------------------------------------------------------
def test_unresolvable_host_fails_before_sending() -> None:
    """Name resolution is injected: no DNS query leaves the machine in any test."""
    asked: list[tuple[str, int]] = []

    async def no_such_host(host: str, port: int) -> list[str]:
        asked.append((host, port))
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    seen: list[Observation] = []
    with pytest.raises(PodtallyError, match="cannot resolve host") as info:
        run(
            VerifyOptions("http://nowhere.podtally.test:20044/", requests=3),
            on_observation=seen.append,
            resolver=no_such_host,
        )
    assert info.value.exit_code == 3
    assert str(info.value) == (
        "cannot resolve host nowhere.podtally.test: Name or service not known"
    )
    assert asked == [("nowhere.podtally.test", 20044)]  # once, up front; not once per request
    assert seen == []


def test_a_name_with_several_addresses_is_used_across_all_of_them(replicas: Replicas) -> None:
    """As for an NLB's DNS name (one address per zone): new connections take them in turn."""
    addresses = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]

    async def three(host: str, port: int) -> list[str]:
        assert (host, port) == ("pods.podtally.test", replicas.port)
        return addresses

    result = run(
        VerifyOptions(f"http://pods.podtally.test:{replicas.port}/", requests=30, concurrency=3),
        resolver=three,
    )
    assert result.pod_counts() == {f"podtally-test-{k}": 10 for k in range(3)}
    assert sorted(result.addresses) == [f"{a}:{replicas.port}" for a in addresses]


def test_non_ascii_path_and_host_are_encoded_as_curl_does(stub: Callable[..., StubServer]) -> None:
    server = stub("127.0.0.1", 0, identity_responder(["a"]))
    run(
        VerifyOptions(
            f"http://bücher.podtally.test:{server.port}/☃/ü?q=é&r=%41",
            requests=1,
            resolve=(parse_resolve(f"bücher.podtally.test:{server.port}:127.0.0.1"),),
        )
    )
    # UTF-8, percent-encoded; an existing escape is left alone. The host goes out as IDNA.
    assert server.paths == ["/%E2%98%83/%C3%BC?q=%C3%A9&r=%41"]
    assert server.host_headers == [f"xn--bcher-kva.podtally.test:{server.port}"]


def test_counts_add_up(replicas: Replicas) -> None:
    seen: list[Observation] = []
    result = run(
        VerifyOptions(replicas.url(0), requests=50, concurrency=7), on_observation=seen.append
    )
    assert result.requests == result.responses == result.identified == 50
    assert sum(result.pod_counts().values()) == 50
    assert len(seen) == 50 and Counter(o.error for o in seen) == {None: 50}
