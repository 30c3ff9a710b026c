"""gRPC in the manifests (issue 12): container and Service ports, gRPC health probes, and on eks a
second Ingress in the same IngressGroup with the AWS Load Balancer Controller's gRPC settings.

The chart's equality with the renderer (tests/k8s/test_chart.py) and the validators
(kubernetes-validate, checkov: tests/k8s/test_lint.py) run over the gRPC cases in MATRIX too.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from podtally.errors import UsageError
from podtally.k8s import render
from podtally.k8s.render import GRPC_HEALTH_CHECK_PATH, GRPC_PATHS, alb_group_name
from podtally.spec import AppSpec
from tests.k8s.helpers import ARN, MATRIX, by_kind

ALB = "alb.ingress.kubernetes.io/"
HOST = "podtally.example.com"


def _container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = by_kind(objs, "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def _ingresses(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "Ingress"}


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return {
        k.removeprefix(ALB): v
        for k, v in obj["metadata"].get("annotations", {}).items()
        if k.startswith(ALB)
    }


def test_grpc_probes_ask_the_grpc_port_and_liveness_stays_on_livez() -> None:
    container = _container(render(AppSpec(grpc_port=50051)))
    assert {"name": "grpc", "containerPort": 50051, "protocol": "TCP"} in container["ports"]
    for probe in ("startupProbe", "readinessProbe"):
        # No service name: the server's overall health, which follows readiness.
        assert container[probe]["grpc"] == {"port": 50051}
        assert "httpGet" not in container[probe]
    # gRPC health is NOT_SERVING while draining; liveness must not fail a draining pod.
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    # The same timings as the HTTP probes they replace.
    http = _container(render(AppSpec(grpc_port=50051, grpc_probes=False)))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        timing = {k: v for k, v in container[probe].items() if k not in ("grpc", "httpGet")}
        assert timing == {k: v for k, v in http[probe].items() if k != "httpGet"}
    assert http["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_service_and_network_policy_carry_grpc_only_when_it_is_on() -> None:
    objs = render(AppSpec())
    assert by_kind(objs, "Service")["spec"]["ports"][1] == {
        "name": "grpc",
        "protocol": "TCP",
        "port": 9090,
        "targetPort": "grpc",
        "appProtocol": "kubernetes.io/h2c",
    }
    policy_ports = by_kind(objs, "NetworkPolicy")["spec"]["ingress"][0]["ports"]
    assert [p["port"] for p in policy_ports] == ["http", "grpc"]
    off = render(AppSpec(grpc_port=0))
    assert [p["name"] for p in by_kind(off, "Service")["spec"]["ports"]] == ["http"]
    assert [p["port"] for p in by_kind(off, "NetworkPolicy")["spec"]["ingress"][0]["ports"]] == [
        "http"
    ]
    assert "grpc" not in json.dumps(_container(off)["startupProbe"])


def test_eks_routes_grpc_through_the_same_alb_with_grpc_health_checks() -> None:
    spec = AppSpec(profile="eks", host=HOST, certificate_arn=ARN, drain_seconds=25)
    ingresses = _ingresses(render(spec))
    assert sorted(ingresses) == ["podtally", "podtally-grpc"]
    grpc, http = _annotations(ingresses["podtally-grpc"]), _annotations(ingresses["podtally"])
    # As the AWS Load Balancer Controller documents them.
    assert grpc["backend-protocol-version"] == "GRPC"
    assert grpc["healthcheck-path"] == GRPC_HEALTH_CHECK_PATH == "/grpc.health.v1.Health/Check"
    assert grpc["success-codes"] == "0"
    assert grpc["target-type"] == "ip"
    assert json.loads(grpc["listen-ports"]) == [{"HTTPS": 443}]
    assert grpc["target-group-attributes"] == "deregistration_delay.timeout_seconds=25"
    # One ALB: the same group, and the gRPC paths are matched before the HTTP Ingress's "/".
    assert grpc["group.name"] == http["group.name"] == "podtally.podtally"
    assert 1 <= int(grpc["group.order"]) < int(http["group.order"]) <= 1000
    # Load-balancer-wide annotations agree where both set them (the controller's Exclusive rule).
    for key in ("scheme", "ssl-policy", "certificate-arn"):
        assert grpc[key] == http[key], key
    rule = ingresses["podtally-grpc"]["spec"]["rules"][0]
    assert rule["host"] == HOST
    assert [p["path"] for p in rule["http"]["paths"]] == list(GRPC_PATHS)
    for path in rule["http"]["paths"]:
        assert path["pathType"] == "Prefix"
        assert path["backend"] == {"service": {"name": "podtally", "port": {"name": "grpc"}}}


def test_the_grpc_paths_are_the_services_the_replica_registers() -> None:
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection

    from podtally.proto import identity_pb2

    registered = {
        identity_pb2.DESCRIPTOR.services_by_name["Identity"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    }
    assert {p.removeprefix("/") for p in GRPC_PATHS} == registered


@pytest.mark.parametrize(
    "spec",
    [
        AppSpec(profile="eks", tls=False),  # gRPC needs the ALB's HTTPS listener
        AppSpec(profile="eks", host=HOST, grpc_port=0),
    ],
    ids=["http-only", "grpc-off"],
)
def test_no_grpc_ingress_and_no_group_without_https_or_grpc(spec: AppSpec) -> None:
    ingresses = _ingresses(render(spec))
    assert list(ingresses) == ["podtally"]
    assert not {"group.name", "group.order"} & set(_annotations(ingresses["podtally"]))


def test_certificate_discovery_applies_to_the_grpc_ingress_too() -> None:
    ingresses = _ingresses(render(AppSpec(profile="eks", host=HOST)))
    assert ingresses["podtally-grpc"]["spec"]["tls"] == [{"hosts": [HOST]}]
    assert "certificate-arn" not in _annotations(ingresses["podtally-grpc"])


def test_group_names_stay_valid_for_long_names() -> None:
    name = alb_group_name(MATRIX["eks-long-names"])
    assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), name
    assert name.startswith("podtally-")
    other = alb_group_name(AppSpec(profile="eks", certificate_arn=ARN, name="p" * 41))
    assert other != name  # installs with different names never share an ALB


@pytest.mark.parametrize(
    ("settings", "what"),
    [
        ({"grpc_port": 70000}, "must be between 0 (off) and 65535"),
        ({"grpc_port": -1}, "must be between 0 (off) and 65535"),
        ({"grpc_port": 8080}, "must differ from the HTTP port 8080"),
    ],
)
def test_bad_grpc_ports_are_usage_errors(settings: dict[str, Any], what: str) -> None:
    with pytest.raises(UsageError) as info:
        AppSpec(**settings)
    assert info.value.setting == "grpc_port"
    assert info.value.what.startswith(what)


def test_manifests_cli_sets_the_grpc_port_and_the_probes() -> None:
    from tests.k8s.helpers import podtally

    def deployment(*args: str) -> dict[str, Any]:
        out = podtally("manifests", "-o", "json", *args)
        assert out.returncode == 0, out.stderr
        return _container(json.loads(out.stdout)["items"])

    assert deployment()["startupProbe"]["grpc"] == {"port": 9090}
    assert deployment("--grpc-port", "50051")["readinessProbe"]["grpc"] == {"port": 50051}
    http = deployment("--http-probes")
    assert http["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert http["args"][-2:] == ["--grpc-port", "9090"]
    off = deployment("--grpc-port", "0")
    assert [p["name"] for p in off["ports"]] == ["http"]
    bad = podtally("manifests", "--grpc-port", "70000")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == "error: --grpc-port 70000: must be between 0 (off) and 65535, got 70000\n"
