"""Fixtures: real balancers over real replicas, each yielding a ``Balancer`` with its truth.

Module scope: one set of three replicas (web-a, web-b, web-c on distinct loopback addresses,
kernel-chosen ports; ``pod_specs`` gives their nodes, zones and versions) serves every nginx
and HAProxy fixture of a test module; each balancer starts once per module. The iptables
Service brings its own namespace and replicas (the same identities).

- ``nginx_round_robin``, ``nginx_random``, ``nginx_least_conn``, ``nginx_ip_hash``,
  ``nginx_weighted`` (2:1:1), ``nginx_down`` (web-c marked ``down``);
- ``haproxy_roundrobin``, ``haproxy_random``, ``haproxy_source``, ``haproxy_weighted`` (2:1:1);
- ``kube_proxy_iptables``: a ClusterIP Service at 127.0.0.200:80 in a private namespace;
- ``balancer``: every one of the above in turn (parametrized by name).

Each is also a plain context manager (``nginx.upstream``, ``haproxy.backend``,
``kube_proxy.service`` over ``replicas.running``) for tests that want their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

import pytest

from tests.balancers import haproxy, kube_proxy, nginx, replicas
from tests.balancers.truth import Backend, Balancer
from tests.support import free_port

# Loopback addresses of the host-side replicas: apart from other test areas' (127.0.0.21-23).
POD_HOSTS = ("127.0.31.1", "127.0.31.2", "127.0.31.3")


def pod_specs() -> list[replicas.PodSpec]:
    """web-a (node-1, zone-a, stable), web-b (node-2, zone-b, stable), web-c (node-3, zone-b,
    canary), each on its own loopback address and a kernel-chosen port."""
    return replicas.web_pods(POD_HOSTS, [free_port(host) for host in POD_HOSTS])


def backend(spec: replicas.PodSpec) -> Backend:
    return Backend(
        spec.pod, spec.host, spec.port, node=spec.node, zone=spec.zone, version=spec.version
    )


def backends_of(
    pods: Sequence[replicas.Replica], weights: Sequence[int] = (), down: Sequence[str] = ()
) -> list[Backend]:
    out = [backend(r.spec) for r in pods]
    if weights:
        out = [replace(b, weight=w) for b, w in zip(out, weights, strict=True)]
    return [replace(b, down=b.pod in down) for b in out]


Factory = Callable[[Path, Sequence[replicas.Replica]], AbstractContextManager[Balancer]]

# Every balancer the suite knows, by fixture name: how to start it over the host's replicas.
FACTORIES: dict[str, Factory] = {
    "nginx_round_robin": lambda tmp, pods: nginx.upstream(tmp, backends_of(pods)),
    "nginx_random": lambda tmp, pods: nginx.upstream(tmp, backends_of(pods), "random"),
    "nginx_least_conn": lambda tmp, pods: nginx.upstream(tmp, backends_of(pods), "least_conn"),
    "nginx_ip_hash": lambda tmp, pods: nginx.upstream(tmp, backends_of(pods), "ip_hash"),
    "nginx_weighted": lambda tmp, pods: nginx.upstream(tmp, backends_of(pods, (2, 1, 1))),
    "nginx_down": lambda tmp, pods: nginx.upstream(tmp, backends_of(pods, down=("web-c",))),
    "haproxy_roundrobin": lambda tmp, pods: haproxy.backend(tmp, backends_of(pods)),
    "haproxy_source": lambda tmp, pods: haproxy.backend(tmp, backends_of(pods), "source"),
    "haproxy_random": lambda tmp, pods: haproxy.backend(tmp, backends_of(pods), "random"),
    "haproxy_weighted": lambda tmp, pods: haproxy.backend(tmp, backends_of(pods, (2, 1, 1))),
    "kube_proxy_iptables": lambda tmp, pods: kube_proxy.service(tmp),
}


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[replicas.Replica]]:
    """Three real replicas on the host's loopback, shared by the module's balancers."""
    with replicas.running(tmp_path_factory.mktemp("pods"), pod_specs()) as started:
        yield started


def _start(
    name: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AbstractContextManager[Balancer]:
    tmp = tmp_path_factory.mktemp(name)
    if name == "kube_proxy_iptables":  # its replicas live in its own namespace
        return FACTORIES[name](tmp, [])
    return FACTORIES[name](tmp, request.getfixturevalue("pods"))


def _fixture(name: str) -> Callable[..., Iterator[Balancer]]:
    def fixture(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Balancer]:
        with _start(name, request, tmp_path_factory) as balancer:
            yield balancer

    fixture.__name__ = name
    fixture.__doc__ = f"The {name.replace('_', ' ')} balancer over real replicas, with its truth."
    return pytest.fixture(scope="module", name=name)(fixture)


for _name in FACTORIES:
    globals()[_name] = _fixture(_name)


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def balancer(request: pytest.FixtureRequest) -> Balancer:
    """Each balancer in turn (reusing the named module fixture, so each starts once)."""
    found = request.getfixturevalue(request.param)
    assert isinstance(found, Balancer)
    return found


@contextlib.contextmanager
def started(name: str, tmp: Path) -> Iterator[Balancer]:
    """One balancer by name with replicas of its own, outside pytest's fixtures."""
    if name == "kube_proxy_iptables":
        with FACTORIES[name](tmp, []) as balancer:
            yield balancer
        return
    with replicas.running(tmp, pod_specs()) as own, FACTORIES[name](tmp, own) as balancer:
        yield balancer
