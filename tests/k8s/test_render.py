"""What `podtally.k8s.render` returns: valid for current Kubernetes, and what the issue asks."""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate
import pytest

from podtally.errors import UsageError
from podtally.k8s import render
from podtally.k8s.render import IN_FLIGHT_SECONDS, alb_annotations
from podtally.spec import AppSpec, check_hostname, check_ingress_host
from tests.k8s.helpers import ARN, DIGEST_IMAGE, MATRIX, by_kind, by_name

# Current Kubernetes (EKS's standard-support window and the newest schema the package ships).
VERSIONS = ("1.33", "1.35", "1.37")
LABELS = ("name", "instance", "version", "component", "part-of", "managed-by")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_object_validates_strictly(case: str, version: str) -> None:
    objs = render(MATRIX[case])
    for obj in objs:
        # Strict: an unknown or misspelled field anywhere is an error, not silently dropped.
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_a_misspelled_field() -> None:
    deployment = copy.deepcopy(by_kind(render(AppSpec()), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.35", strict=True)


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_apply_order_and_which_objects(case: str) -> None:
    spec = MATRIX[case]
    kinds = [o["kind"] for o in render(spec)]
    expected = ["Namespace", "ServiceAccount"]
    if spec.zone_lookup:
        expected += ["ClusterRole", "ClusterRoleBinding"]
    expected += ["NetworkPolicy", "Service", "Deployment", "PodDisruptionBudget"]
    if spec.autoscaling:
        expected.append("HorizontalPodAutoscaler")
    if spec.profile == "eks" and spec.tls and spec.grpc_port:
        expected.append("Ingress")  # gRPC's, before the HTTP one
    if spec.profile == "eks" or spec.host:
        expected.append("Ingress")
    assert kinds == expected


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_standard_labels_on_every_object_and_the_pods(case: str) -> None:
    spec = MATRIX[case]
    objs = render(spec)
    deployment = by_kind(objs, "Deployment")
    for meta in [o["metadata"] for o in objs] + [deployment["spec"]["template"]["metadata"]]:
        labels = meta["labels"]
        for key in LABELS:
            assert labels.get(f"app.kubernetes.io/{key}"), (meta.get("name"), key)
        assert labels["app.kubernetes.io/instance"] == spec.name
        assert labels["app.kubernetes.io/managed-by"] == "podtally"
    for obj in objs:
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == spec.namespace


def test_selectors_select_the_pods_and_leave_out_the_version() -> None:
    objs = render(AppSpec())
    pod_labels = by_kind(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selectors = [
        by_kind(objs, "Deployment")["spec"]["selector"]["matchLabels"],
        by_kind(objs, "Service")["spec"]["selector"],
        by_kind(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        by_kind(objs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
        # Selectors are immutable: a version in them would break every upgrade.
        assert "app.kubernetes.io/version" not in selector


def _pod(spec: AppSpec) -> dict[str, Any]:
    result: dict[str, Any] = by_kind(render(spec), "Deployment")["spec"]["template"]["spec"]
    return result


def test_downward_api_environment() -> None:
    env = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in _pod(AppSpec())["containers"][0]["env"]
    }
    assert env == {
        "POD_NAME": "metadata.name",
        "NODE_NAME": "spec.nodeName",
        "POD_NAMESPACE": "metadata.namespace",
        "POD_IP": "status.podIP",
        "ZONE": "metadata.labels['topology.kubernetes.io/zone']",
        "POD_VERSION": "metadata.labels['app.kubernetes.io/version']",
    }
    # The label POD_VERSION reads is on the pod template, so the replica does get a value.
    deployment = by_kind(render(AppSpec()), "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == "0.1.0"


def test_container_runs_serve_on_the_named_port_with_the_drain() -> None:
    spec = AppSpec(drain_seconds=7, port=9091)
    container = _pod(spec)["containers"][0]
    assert "command" not in container  # the image's entrypoint is `podtally serve`
    assert container["args"] == [
        "--host",
        "0.0.0.0",
        "--port",
        "9091",
        "--drain-seconds",
        "7",
        "--shutdown-timeout",
        str(IN_FLIGHT_SECONDS),
        "--grpc-port",
        "9090",
    ]
    assert container["ports"] == [
        {"name": "http", "containerPort": 9091, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 9090, "protocol": "TCP"},
    ]
    # Off is said explicitly (the image's default would be 9090), and no port is declared.
    off = _pod(AppSpec(grpc_port=0))["containers"][0]
    assert off["args"][-2:] == ["--grpc-port", "0"]
    assert [p["name"] for p in off["ports"]] == ["http"]


def test_probes_use_the_service_routes_on_the_named_port() -> None:
    container = _pod(AppSpec(grpc_probes=False))["containers"][0]
    assert container["startupProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "http",
        "scheme": "HTTP",
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"


@pytest.mark.parametrize("drain", [0, 5, 20, 600])
def test_grace_period_outlasts_drain_and_in_flight_requests(drain: int) -> None:
    pod = _pod(AppSpec(drain_seconds=drain))
    assert pod["terminationGracePeriodSeconds"] > drain + IN_FLIGHT_SECONDS


def test_drain_defaults_by_profile() -> None:
    assert AppSpec().drain_seconds == 5
    assert AppSpec(profile="eks", certificate_arn=ARN).drain_seconds == 20
    assert AppSpec(profile="eks", certificate_arn=ARN, drain_seconds=3).drain_seconds == 3


def test_rolling_update_never_goes_below_the_desired_count() -> None:
    strategy = by_kind(render(AppSpec()), "Deployment")["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }


@pytest.mark.parametrize(
    ("profile", "zone_rule"), [("generic", "ScheduleAnyway"), ("eks", "DoNotSchedule")]
)
def test_spread_over_hosts_and_zones(profile: str, zone_rule: str) -> None:
    spec = AppSpec(profile=profile, certificate_arn=ARN if profile == "eks" else None)  # type: ignore[arg-type]
    rules = {c["topologyKey"]: c for c in _pod(spec)["topologySpreadConstraints"]}
    assert set(rules) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for rule in rules.values():
        assert rule["maxSkew"] == 1
        assert rule["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == spec.name
    assert rules["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == zone_rule
    assert rules["kubernetes.io/hostname"]["whenUnsatisfiable"] == "ScheduleAnyway"


def test_restricted_security_profile_and_resources() -> None:
    pod = _pod(AppSpec())
    container = pod["containers"][0]
    for ctx in (pod["securityContext"], container["securityContext"]):
        assert ctx["runAsNonRoot"] is True
        assert ctx["runAsUser"] == 10001 and ctx["runAsGroup"] == 10001
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert pod["automountServiceAccountToken"] is False
    namespace = by_kind(render(AppSpec()), "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_token_and_node_reader_only_with_zone_lookup() -> None:
    plain = render(AppSpec())
    assert by_kind(plain, "ServiceAccount")["automountServiceAccountToken"] is False
    objs = render(AppSpec(zone_lookup=True))
    assert by_kind(objs, "ServiceAccount")["automountServiceAccountToken"] is True
    assert (
        by_kind(objs, "Deployment")["spec"]["template"]["spec"]["automountServiceAccountToken"]
        is True
    )
    role = by_kind(objs, "ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    binding = by_kind(objs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "podtally", "namespace": "podtally"}
    ]


def test_service_is_cluster_ip_on_the_named_port() -> None:
    service = by_kind(render(AppSpec(grpc_port=0)), "Service")["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http", "appProtocol": "http"}
    ]


@pytest.mark.parametrize("replicas", [1, 2, 3, 10])
def test_disruption_budget_lets_a_drain_through_at_any_size(replicas: int) -> None:
    pdb = by_kind(render(AppSpec(replicas=replicas)), "PodDisruptionBudget")["spec"]
    # maxUnavailable 1 is never stuck (minAvailable 1 with one replica would block every drain).
    assert pdb["maxUnavailable"] == 1
    assert "minAvailable" not in pdb


def test_autoscaler_off_by_default_min_is_replicas() -> None:
    assert "HorizontalPodAutoscaler" not in [o["kind"] for o in render(AppSpec())]
    objs = render(AppSpec(replicas=4, autoscaling=True, max_replicas=10))
    hpa = by_kind(objs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (4, 10)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "podtally"
    # The autoscaler owns the count: the Deployment does not reset it on every apply.
    assert "replicas" not in by_kind(objs, "Deployment")["spec"]
    assert by_kind(render(AppSpec(replicas=4)), "Deployment")["spec"]["replicas"] == 4


def test_network_policy_admits_only_the_app_port() -> None:
    policy = by_kind(render(AppSpec(grpc_port=0)), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": "http"}]}]


def test_eks_ingress_is_one_alb_with_tls_health_checks_and_drain() -> None:
    spec = AppSpec(profile="eks", host="podtally.example.com", certificate_arn=ARN)
    objs = render(spec)
    # The HTTP Ingress (gRPC's, beside it: tests/k8s/test_grpc_manifests.py).
    ingress = by_name(objs, "Ingress", "podtally")
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert ingress["spec"]["rules"][0]["host"] == "podtally.example.com"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": "podtally", "port": {"name": "http"}}}
    ann = {
        k.removeprefix("alb.ingress.kubernetes.io/"): v
        for k, v in ingress["metadata"]["annotations"].items()
    }
    assert ann["scheme"] == "internet-facing"
    assert ann["target-type"] == "ip"
    assert json.loads(ann["listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert ann["ssl-redirect"] == "443"
    assert ann["certificate-arn"] == ARN
    assert ann["healthcheck-path"] == "/readyz"
    assert ann["ssl-policy"].startswith("ELBSecurityPolicy-TLS13-")
    assert ann["success-codes"] == "200"
    assert ann["target-group-attributes"] == "deregistration_delay.timeout_seconds=20"
    # No second load balancer: the Service stays ClusterIP.
    assert by_kind(objs, "Service")["spec"]["type"] == "ClusterIP"
    # Rollouts wait for the ALB to call new pods healthy.
    labels = by_kind(objs, "Namespace")["metadata"]["labels"]
    assert labels["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"


def test_eks_variants_of_tls() -> None:
    discovery = by_name(render(AppSpec(profile="eks", host="a.example.com")), "Ingress", "podtally")
    assert discovery["spec"]["tls"] == [{"hosts": ["a.example.com"]}]
    assert "alb.ingress.kubernetes.io/certificate-arn" not in discovery["metadata"]["annotations"]
    http_only = alb_annotations(AppSpec(profile="eks", tls=False))
    assert json.loads(http_only["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}]
    assert "alb.ingress.kubernetes.io/ssl-redirect" not in http_only


def test_generic_ingress_takes_class_and_tls_from_the_spec() -> None:
    assert "Ingress" not in [o["kind"] for o in render(AppSpec())]
    bare = by_kind(render(AppSpec(host="a.example.com")), "Ingress")
    assert "ingressClassName" not in bare["spec"] and "tls" not in bare["spec"]
    assert "annotations" not in bare["metadata"]
    secret = "a-tls"  # noqa: S105 - the name of a Secret
    full = by_kind(
        render(AppSpec(host="a.example.com", ingress_class="nginx", tls_secret=secret)), "Ingress"
    )
    assert full["spec"]["ingressClassName"] == "nginx"
    assert full["spec"]["tls"] == [{"hosts": ["a.example.com"], "secretName": "a-tls"}]


def test_image_by_digest_drops_the_tag_skip() -> None:
    tagged = by_kind(render(AppSpec()), "Deployment")["metadata"]["annotations"]
    assert any(v.startswith("CKV_K8S_43=") for v in tagged.values())
    pinned = by_kind(render(AppSpec(image=DIGEST_IMAGE)), "Deployment")
    assert not any(v.startswith("CKV_K8S_43=") for v in pinned["metadata"]["annotations"].values())
    assert pinned["spec"]["template"]["spec"]["containers"][0]["image"] == DIGEST_IMAGE


def test_render_is_pure_and_repeatable() -> None:
    spec = MATRIX["eks-everything"]
    first = render(spec)
    first[0]["metadata"]["name"] = "changed"
    assert render(spec)[0]["metadata"]["name"] == spec.namespace
    assert json.dumps(render(spec)) == json.dumps(render(spec))


def test_spec_rejects_what_the_api_server_would() -> None:
    for bad in (
        {"drain_seconds": -1},
        {"drain_seconds": -30},
        {"name": "1pod"},
        {"name": "0"},
        {"host": "10.0.0.1"},
        {"host": "10.0.0.1."},
    ):
        with pytest.raises(UsageError):
            AppSpec(**bad)  # type: ignore[arg-type]
    # None means "the profile's default"; 0 is a real value (no drain).
    assert AppSpec(drain_seconds=None).drain_seconds == 5
    assert AppSpec(drain_seconds=0).drain_seconds == 0
    # Digits are fine after the first letter, and in the namespace (a DNS-1123 label).
    assert AppSpec(name="pod1", namespace="1apps").name == "pod1"
    # Hostnames with numeric labels that are not IP addresses stay valid.
    assert AppSpec(host="10.example.com").host == "10.example.com"


def test_hostnames_are_case_insensitive() -> None:
    """`up --host App.Test` and `manifests --host App.Test` both mean app.test."""
    assert check_hostname("App.Test.") == "app.test"
    assert check_ingress_host("PODTALLY.Example.COM") == "podtally.example.com"
