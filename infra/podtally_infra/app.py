"""The app: the manifests from ``podtally.k8s`` (eks profile), applied to the cluster, and an
alias record from the hostname to the ALB the controller makes for the Ingress.

The record is an alias A record only: the VPC has no IPv6 and the Ingress asks for no dual-stack
ALB, so there is nothing for an AAAA record to point at.

``render()`` wants plain strings, but the certificate ARN is only known once ACM has issued it.
The manifests are therefore rendered once, in the program's own time, with a placeholder ARN of
the right shape; every string that holds the placeholder then becomes an Output that swaps in
the real ARN. The kinds, names and all other fields stay plain, so previews and the tests see
every object as it will be applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from podtally.k8s import render
from podtally.k8s.gateway import render_with_gateway
from podtally.spec import AppSpec
from podtally_infra.config import Settings

PLACEHOLDER_CERT_ID = "00000000-0000-4000-8000-000000000000"

# (apiVersion, kind) -> the typed Pulumi resource that creates it.
KINDS: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("v1", "LimitRange"): k8s.core.v1.LimitRange,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("networking.k8s.io/v1", "Ingress"): k8s.networking.v1.Ingress,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
}


class KubernetesObject(pulumi.CustomResource):
    """Any Kubernetes object by apiVersion and kind, its ``status`` an output (the Gateway API's
    kinds: pulumi_kubernetes' generic CustomResource does not expose status in Python)."""

    status: pulumi.Output[Any]

    def __init__(
        self, name: str, *, opts: pulumi.ResourceOptions, api_version: str, kind: str, **fields: Any
    ) -> None:
        props = {"apiVersion": api_version, "kind": kind, **fields, "status": None}
        super().__init__(f"kubernetes:{api_version}:{kind}", name, props, opts)


GATEWAY_KINDS = {
    ("gateway.networking.k8s.io/v1", "GatewayClass"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("gateway.k8s.aws/v1", "LoadBalancerConfiguration"),
    ("gateway.k8s.aws/v1", "TargetGroupConfiguration"),
}
# Pulumi waits for these fields before it counts the object as created (pulumi.com/waitFor):
# the load balancer's DNS name, which the Route53 record needs.
WAIT_FOR = {"Gateway": "jsonpath={.status.addresses[0].value}"}


@dataclass(frozen=True)
class App:
    objects: list[pulumi.CustomResource]
    front: pulumi.CustomResource  # the Ingress, or with podtally:gateway the Gateway
    alb_hostname: pulumi.Output[str]
    records: list[aws.route53.Record]


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _with_arn(value: Any, placeholder: str, arn: pulumi.Output[str]) -> Any:
    """A copy of ``value`` where every string containing the placeholder is an Output."""
    if isinstance(value, dict):
        return {k: _with_arn(v, placeholder, arn) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_arn(v, placeholder, arn) for v in value]
    if isinstance(value, str) and placeholder in value:
        text = value

        def swap(real: str) -> str:
            return text.replace(placeholder, real)

        return arn.apply(swap)
    return value


def _alb_hostname(status: k8s.networking.v1.outputs.IngressStatus | None) -> str:
    """The ALB's DNS name from the Ingress status the controller writes."""
    entries = status.load_balancer.ingress if status and status.load_balancer else None
    if not entries or not entries[0].hostname:
        raise pulumi.RunError("the Ingress has no load balancer address; see the controller logs")
    return entries[0].hostname


def _gateway_hostname(status: dict[str, Any] | None) -> str:
    """The ALB's DNS name from the Gateway status the controller writes."""
    addresses = (status or {}).get("addresses") or []
    if not addresses or not addresses[0].get("value"):
        raise pulumi.RunError("the Gateway has no address; see the controller logs")
    return str(addresses[0]["value"])


def manifests(settings: Settings, image: str, account_id: str) -> tuple[list[dict[str, Any]], str]:
    """The plain objects from podtally.k8s, and the placeholder ARN they carry."""
    placeholder = f"arn:aws:acm:{settings.region}:{account_id}:certificate/{PLACEHOLDER_CERT_ID}"
    spec = AppSpec(
        profile="eks",
        name=settings.app_name,
        namespace=settings.namespace,
        replicas=settings.replicas,
        image=image,
        host=settings.hostname,
        certificate_arn=placeholder,
        # Every pod reports its real zone: the downward API where the cluster copies the node's
        # topology labels onto pods (1.35+, beta), else the node's label through the API (this),
        # else IMDS (reachable: the node group's hop limit is 2).
        zone_lookup=True,
    )
    objs = render_with_gateway(spec) if settings.gateway else render(spec)
    return objs, placeholder


def build(
    settings: Settings,
    objects: list[dict[str, Any]],
    placeholder: str,
    certificate_arn: pulumi.Output[str],
    zone_id: str,
    provider: k8s.Provider,
    controller: pulumi.Resource,
) -> App:
    created: list[pulumi.CustomResource] = []
    front: pulumi.CustomResource | None = None
    alb_hostname: pulumi.Output[str] | None = None
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key not in KINDS and key not in GATEWAY_KINDS:
            raise pulumi.RunError(f"podtally.k8s rendered a {key[1]} ({key[0]}) the program lacks")
        fields = {
            _snake(k): _with_arn(v, placeholder, certificate_arn)
            for k, v in obj.items()
            if k not in ("apiVersion", "kind", "status")
        }
        meta = obj["metadata"]
        logical = f"{obj['kind'].lower()}-{meta.get('namespace', 'cluster')}-{meta['name']}"
        # Everything after the controller: the Ingress needs its admission webhook, and the
        # objects go in render order (the namespace first) by depending on what came before.
        opts = pulumi.ResourceOptions(provider=provider, depends_on=[controller, *created[-1:]])
        resource: pulumi.CustomResource
        if key in GATEWAY_KINDS:
            if obj["kind"] in WAIT_FOR:
                annotations = {
                    **meta.get("annotations", {}),
                    "pulumi.com/waitFor": WAIT_FOR[obj["kind"]],
                }
                fields["metadata"] = {**fields["metadata"], "annotations": annotations}
            custom = KubernetesObject(logical, opts=opts, api_version=key[0], kind=key[1], **fields)
            if obj["kind"] == "Gateway":
                front, alb_hostname = custom, custom.status.apply(_gateway_hostname)
            resource = custom
        else:
            typed = KINDS[key](logical, opts=opts, **fields)
            if obj["kind"] == "Ingress":
                front, alb_hostname = typed, typed.status.apply(_alb_hostname)
            resource = typed
        created.append(resource)
    # Pulumi waits for the Ingress (or, by waitFor, the Gateway) to get an address: alb_hostname
    # is the ALB's DNS name.
    if front is None or alb_hostname is None:
        raise pulumi.RunError("podtally.k8s rendered no Ingress or Gateway for the eks profile")
    alb_zone_id = aws.lb.get_hosted_zone_id(
        load_balancer_type="application", region=settings.region
    ).id
    # A only: the VPC is IPv4-only and podtally.k8s asks for no dual-stack ALB, so there is no
    # AAAA to publish (an alias AAAA to an IPv4-only ALB would answer with nothing).
    record = aws.route53.Record(
        f"{settings.app_name}-a",
        zone_id=zone_id,
        name=settings.hostname,
        type="A",
        aliases=[{"name": alb_hostname, "zone_id": alb_zone_id, "evaluate_target_health": True}],
        allow_overwrite=True,
    )
    return App(created, front, alb_hostname, [record])
