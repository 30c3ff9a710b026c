"""kube-proxy's rules as plain data: chain names and probabilities (no processes)."""

from __future__ import annotations

import math

from tests.balancers import kube_proxy


def test_kube_proxy_probabilities_pick_each_endpoint_uniformly() -> None:
    """1/(n-i) of what is left: every endpoint of n gets 1/n, for n = 1..12."""
    for n in range(1, 13):
        left = 1.0
        for i in range(n):
            p = float(kube_proxy.probability(i, n))
            assert math.isclose(left * p, 1 / n, rel_tol=1e-8)
            left *= 1 - p


def test_chain_names_are_kube_proxys_own() -> None:
    """The hash gives the names every cluster shows in ``iptables-save`` for its own Services."""
    assert kube_proxy.service_chain("default/kubernetes:https", "tcp") == (
        "KUBE-SVC-NPX46M4PTMTKRN6Y"
    )
    assert kube_proxy.service_chain("kube-system/kube-dns:dns", "udp") == (
        "KUBE-SVC-TCOU7JCQXEZGVUNU"
    )
    assert kube_proxy.service_chain("kube-system/kube-dns:dns-tcp", "tcp") == (
        "KUBE-SVC-ERIFXISQEP7F7OF4"
    )
