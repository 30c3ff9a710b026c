"""Each balancer fixture produces the distribution its truth states, counted by a plain client.

Margins: where the schedule is random, every observed share must lie within 5 standard errors
of its truth (sqrt(p(1-p)/n)); a correct balancer fails that about once in 1.7 million runs per
pod. Deterministic schedules (round robin, least_conn one request at a time) must hit their
shares exactly over whole cycles.
"""

from __future__ import annotations

import math

import pytest

from tests.balancers import kube_proxy
from tests.balancers.counting import Tally
from tests.balancers.truth import Balancer

pytestmark = pytest.mark.slow  # real processes; about 15-35 s for the module

N = 600  # draws per proof: a multiple of every cycle here (3 pods, weights 2:1:1 -> 4)
Z = 5.0
# Client addresses in distinct /24s: nginx ip_hash hashes an IPv4 client's first three octets.
CLIENTS = ("127.0.0.1", "127.0.41.1", "127.0.42.1", "127.0.43.1")


def margin(share: float, n: int) -> float:
    return Z * math.sqrt(share * (1 - share) / n)


def assert_shares(balancer: Balancer, counts: dict[str, int], n: int) -> None:
    truth = balancer.truth
    assert truth.shares is not None
    strangers = set(counts) - set(truth.shares)
    assert not strangers, f"{balancer.name}: pods outside the backends answered: {strangers}"
    for pod, expected in truth.shares.items():
        observed = counts.get(pod, 0) / n
        if truth.exact or expected == 0:
            assert counts.get(pod, 0) == round(expected * n), (
                f"{balancer.name}: {pod} got {counts.get(pod, 0)} of {n}, "
                f"exactly {expected * n:g} expected ({truth.summary}); counts {counts}"
            )
        else:
            assert abs(observed - expected) <= margin(expected, n), (
                f"{balancer.name}: {pod} got {observed:.3f} of {n}, {expected:.3f} "
                f"+/- {margin(expected, n):.3f} expected ({truth.summary}); counts {counts}"
            )


def draws(balancer: Balancer, n: int) -> Tally:
    """``n`` independent draws in the balancer's own unit: a new connection per request."""
    tally = balancer.count(connections=n)
    assert not tally.failures, f"{balancer.name}: {tally.failures[:3]}"
    assert tally.requests == n
    return tally


def test_balancer_produces_its_truth(balancer: Balancer) -> None:
    """Every fixture: shares where the truth has them, one pod per client where it does not."""
    truth = balancer.truth
    if truth.shares is not None:
        assert_shares(balancer, dict(draws(balancer, N).pods), N)
    if truth.one_pod_per_client:
        for client in CLIENTS:
            tally = balancer.count(connections=50, source=client)
            assert not tally.failures, tally.failures[:3]
            assert len(tally.pods) == 1, f"{balancer.name}: client {client} saw {tally.pods}"
    if truth.one_pod_per_connection:
        tally = balancer.count(connections=30, requests_per_connection=20)
        assert not tally.failures, tally.failures[:3]
        assert tally.pods_per_connection() == [1] * 30, tally.per_connection


@pytest.mark.parametrize(
    "balancer", ["nginx_round_robin", "haproxy_roundrobin", "nginx_random"], indirect=["balancer"]
)
def test_an_l7_proxy_balances_each_request_of_one_connection(balancer: Balancer) -> None:
    """Per-request balancers: one kept-alive connection still reaches every pod."""
    assert balancer.truth.unit == "request"
    tally = balancer.count(connections=1, requests_per_connection=60)
    assert not tally.failures, tally.failures[:3]
    assert tally.pods_per_connection() == [3], tally.pods


def test_nginx_weights_2_1_1_give_half_a_quarter_a_quarter(nginx_weighted: Balancer) -> None:
    assert nginx_weighted.truth.shares == {"web-a": 0.5, "web-b": 0.25, "web-c": 0.25}
    assert nginx_weighted.expected_shares("version") == {"stable": 0.75, "canary": 0.25}
    assert nginx_weighted.expected_shares("zone") == {"zone-a": 0.5, "zone-b": 0.5}
    assert dict(draws(nginx_weighted, N).pods) == {"web-a": 300, "web-b": 150, "web-c": 150}


def test_a_server_marked_down_gets_nothing(nginx_down: Balancer) -> None:
    assert nginx_down.truth.shares is not None
    assert nginx_down.truth.shares["web-c"] == 0
    counts = draws(nginx_down, N).pods
    assert counts["web-c"] == 0
    assert counts == {"web-a": N // 2, "web-b": N // 2}


def test_nginx_ip_hash_sends_one_client_to_one_pod(nginx_ip_hash: Balancer) -> None:
    tally = nginx_ip_hash.count(connections=100)
    assert not tally.failures
    assert len(tally.pods) == 1, tally.pods


def test_iptables_new_connection_per_request_spreads_over_every_pod(
    kube_proxy_iptables: Balancer,
) -> None:
    counts = draws(kube_proxy_iptables, N).pods
    assert set(counts) == {"web-a", "web-b", "web-c"}
    assert_shares(kube_proxy_iptables, dict(counts), N)


def test_iptables_pins_a_kept_alive_connection_to_one_pod(kube_proxy_iptables: Balancer) -> None:
    """conntrack keeps the first packet's choice: 20 requests on a connection, one pod."""
    tally = kube_proxy_iptables.count(connections=30, requests_per_connection=20)
    assert not tally.failures, tally.failures[:3]
    assert tally.requests == 600
    assert tally.pods_per_connection() == [1] * 30, tally.per_connection
    # 30 connections all on one pod of three: probability 3 * 3**-30.
    assert len(tally.connection_pods()) > 1, tally.connection_pods()


def test_iptables_rules_are_written_as_kube_proxy_writes_them(
    kube_proxy_iptables: Balancer,
) -> None:
    saved = kube_proxy_iptables.run(["iptables-save", "-t", "nat"], check=True).stdout
    svc = kube_proxy.service_chain()
    seps = [kube_proxy.endpoint_chain(b.address) for b in kube_proxy_iptables.backends]
    assert svc.startswith("KUBE-SVC-") and len(svc) == len("KUBE-SVC-") + 16
    assert '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in saved
    assert "-d 127.0.0.200/32 -p tcp" in saved
    jumps = [line for line in saved.splitlines() if line.startswith(f"-A {svc} ")]
    assert [line.rsplit("-j ", 1)[1] for line in jumps] == seps
    # iptables stores the probability in 32 bits and prints it back so: 1/3, 1/2, then none.
    assert "--probability 0.33333333349" in jumps[0]
    assert "--probability 0.50000000000" in jumps[1]
    assert "statistic" not in jumps[2]
    for sep, backend in zip(seps, kube_proxy_iptables.backends, strict=True):
        assert f"-A {sep} -p tcp" in saved
        assert f"-j DNAT --to-destination {backend.address}" in saved


def test_podtally_reaches_the_service_from_inside_the_namespace(
    kube_proxy_iptables: Balancer,
) -> None:
    """The verifier runs where the client must run; the verdict tests build on this."""
    done = kube_proxy_iptables.podtally("verify", kube_proxy_iptables.url, "-n", "60", "--json")
    assert done.returncode in (0, 1), done.stderr
    for pod in kube_proxy_iptables.pods:
        assert pod in done.stdout, done.stdout
