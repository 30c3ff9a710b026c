"""`podtally verify` against real balancers: the verdict each one's truth demands.

Every run is the real command (a subprocess, inside the namespace for the iptables Service),
read back through ``--json``. Auto mode (no ``-n``) unless a case needs a fixed size; every
run is bounded by ``--max-requests``. Defaults (``--alpha 0.001``, ``--tolerance 0.2``) where
the verdict is the point.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.balancers import nginx, replicas
from tests.balancers.conftest import backends_of
from tests.balancers.truth import Balancer

pytestmark = pytest.mark.slow  # real processes


def verify(balancer: Balancer, *args: str) -> tuple[int, dict[str, Any]]:
    done = balancer.podtally(
        "verify", balancer.url, "--json", "--no-progress", "--max-requests", "6000", *args
    )
    assert done.returncode in (0, 1), f"{balancer.name}: {done.returncode} {done.stderr}"
    return done.returncode, json.loads(done.stdout)


def decision(document: dict[str, Any]) -> dict[str, Any]:
    found = document["decision"]
    assert isinstance(found, dict)
    return found


@pytest.mark.parametrize(
    ("balancer", "extra"),
    [
        ("nginx_round_robin", ()),
        ("nginx_random", ()),
        # least_conn's truth is even one request at a time; with 10 in flight it favours the
        # pod that answers first (web-b took 44% in one run here): that is uneven, and said so.
        ("nginx_least_conn", ("-c", "1")),
        ("haproxy_roundrobin", ()),
    ],
    indirect=["balancer"],
)
def test_an_even_balancer_is_proved_even(balancer: Balancer, extra: tuple[str, ...]) -> None:
    code, doc = verify(balancer, "--expect-pods", "3", *extra)
    assert (code, decision(doc)["verdict"]) == (0, "even"), doc["verdict"]["summary"]
    assert decision(doc)["mode"] == "sequential"
    assert doc["summary"]["requests"] < 6000  # it stopped when the answer was known
    assert "within ±20% of 1/3" in doc["verdict"]["summary"]


@pytest.mark.parametrize("balancer", ["nginx_ip_hash", "haproxy_source"], indirect=["balancer"])
def test_a_balancer_that_sends_everything_to_one_pod_never_passes(balancer: Balancer) -> None:
    code, doc = verify(balancer)
    assert code == 1
    assert decision(doc)["verdict"] == "inconclusive"
    assert doc["summary"]["pods"] == 1
    assert "nothing to compare" in doc["verdict"]["summary"]
    code, doc = verify(balancer, "--expect-pods", "3")
    assert code == 1
    assert "only 1 of 3 expected pods answered" in doc["verdict"]["summary"]


@pytest.mark.parametrize("balancer", ["nginx_weighted", "haproxy_weighted"], indirect=["balancer"])
def test_weights_2_1_1_are_uneven_against_equal_and_even_against_their_split(
    balancer: Balancer,
) -> None:
    code, doc = verify(balancer)
    assert (code, decision(doc)["verdict"]) == (1, "uneven"), doc["verdict"]["summary"]
    assert "web-a" in doc["verdict"]["summary"]
    code, doc = verify(balancer, "--expect-split", "pod=web-a:2,web-b:1,web-c:1")
    assert (code, decision(doc)["verdict"]) == (0, "even"), doc["verdict"]["summary"]


def test_a_version_split_is_judged_with_its_pods(nginx_round_robin: Balancer) -> None:
    """web-a, web-b stable, web-c canary, round robin: stable gets 2/3 shared by two pods."""
    code, doc = verify(nginx_round_robin, "--expect-split", "version=stable:2,canary:1")
    assert (code, decision(doc)["verdict"]) == (0, "even"), doc["verdict"]["summary"]
    judged = [d for d, v in decision(doc)["dimensions"].items() if v["judged"]]
    assert sorted(judged) == ["pod", "version"]
    code, doc = verify(nginx_round_robin, "--expect-split", "version=stable:90,canary:10")
    assert (code, decision(doc)["verdict"]) == (1, "uneven")
    code, doc = verify(nginx_round_robin, "-n", "200", "--expect-split", "version=stable:1,gold:1")
    assert code == 1
    assert "version gold never answered" in doc["verdict"]["summary"]


def test_a_down_server_fails_by_name(nginx_down: Balancer) -> None:
    code, doc = verify(nginx_down, "--expect-split", "pod=web-a:1,web-b:1,web-c:1")
    assert (code, decision(doc)["verdict"]) == (1, "uneven")
    assert "pod web-c never answered" in doc["verdict"]["summary"]
    code, doc = verify(nginx_down, "--expect-pods", "3")
    assert code == 1
    assert "only 2 of 3 expected pods answered" in doc["verdict"]["summary"]


def test_kube_proxy_iptables_new_connections_are_even(kube_proxy_iptables: Balancer) -> None:
    code, doc = verify(kube_proxy_iptables, "--expect-pods", "3")
    assert (code, decision(doc)["verdict"]) == (0, "even"), doc["verdict"]["summary"]
    assert decision(doc)["unit"] == "requests"
    assert "one request per connection" in decision(doc)["unit_reason"]


def test_kube_proxy_iptables_keep_alive_counts_connections(
    kube_proxy_iptables: Balancer,
) -> None:
    """600 requests over 6 pinned connections are 6 draws: never 'even' with 600's confidence."""
    code, doc = verify(kube_proxy_iptables, "--keep-alive", "-c", "6", "-n", "600")
    assert code == 1
    found = decision(doc)
    assert found["unit"] == "connections"
    assert found["verdict"] != "even"
    assert found["dimensions"]["pod"]["total"] == 6
    assert "balanced per connection" in found["unit_reason"]


@pytest.fixture(scope="module")
def one_pod(
    pods: list[replicas.Replica], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Balancer]:
    with nginx.upstream(tmp_path_factory.mktemp("one"), backends_of(pods[:1])) as balancer:
        yield balancer


def test_a_one_pod_balancer_passes_only_when_one_pod_is_expected(one_pod: Balancer) -> None:
    code, doc = verify(one_pod)
    assert code == 1
    assert doc["summary"]["requests"] < 1000  # auto mode gives up: no verdict can come
    code, doc = verify(one_pod, "--expect-pods", "1")
    assert (code, decision(doc)["verdict"]) == (0, "even")
