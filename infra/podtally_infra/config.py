"""The stack's knobs, read once from ``Pulumi.<stack>.yaml`` and checked before anything is created.

``Pulumi.<stack>.yaml`` is each user's untracked copy of the template ``infra/stack.example.yaml``.

Every setting lives under the ``podtally:`` namespace except the region, which is the AWS
provider's own ``aws:region``. A bad value stops the program with one line naming the key.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import pulumi

from podtally.errors import UsageError
from podtally.spec import check_dns1123_label, check_hostname

NAT_MODES = ("single", "per-zone")
CAPACITY_TYPES = ("ON_DEMAND", "SPOT")
MIN_ZONES, MAX_ZONES = 2, 4


class ConfigError(pulumi.RunError):
    """A knob in Pulumi.<stack>.yaml is missing or wrong. Pulumi prints it without a traceback."""


@dataclass(frozen=True)
class Settings:
    region: str
    vpc_cidr: str
    zones: int | tuple[str, ...]
    nat_mode: str
    cluster_name: str
    kubernetes_version: str
    node_instance_type: str
    node_count: int
    node_min: int
    node_max: int
    capacity_type: str
    api_public_cidrs: tuple[str, ...]
    admin_principal_arn: str | None
    namespace: str
    app_name: str
    route53_zone: str
    hostname: str
    replicas: int
    image_tag: str
    deploy_app: bool
    gateway: bool
    ecr_force_delete: bool

    @property
    def zone_count(self) -> int:
        return self.zones if isinstance(self.zones, int) else len(self.zones)


def _int(cfg: pulumi.Config, key: str, default: int, low: int, high: int) -> int:
    raw = cfg.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"podtally:{key} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"podtally:{key} must be between {low} and {high}, got {value}")
    return value


def _bool(cfg: pulumi.Config, key: str, default: bool) -> bool:
    raw = cfg.get(key)
    if raw is None:
        return default
    if raw.lower() in ("true", "yes", "1"):
        return True
    if raw.lower() in ("false", "no", "0"):
        return False
    raise ConfigError(f"podtally:{key} must be true or false, got {raw!r}")


def _choice(cfg: pulumi.Config, key: str, default: str, choices: tuple[str, ...]) -> str:
    value = cfg.get(key) or default
    if value not in choices:
        raise ConfigError(f"podtally:{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _zones(cfg: pulumi.Config) -> int | tuple[str, ...]:
    """``zones`` is either a count (the first N zones EKS supports) or an explicit list."""
    raw = cfg.get("zones") or "3"
    text = raw.strip()
    if text.startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"podtally:zones is not a valid list: {raw!r}") from None
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError("podtally:zones must be a number or a list of zone names")
        if len(set(names)) != len(names):
            raise ConfigError(f"podtally:zones lists a zone twice: {names}")
        if not MIN_ZONES <= len(names) <= MAX_ZONES:
            raise ConfigError(
                f"podtally:zones must name {MIN_ZONES} to {MAX_ZONES} zones, got {len(names)}"
            )
        return tuple(names)
    return _int(cfg, "zones", 3, MIN_ZONES, MAX_ZONES)


def _cidr(value: str, key: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ConfigError(f"podtally:{key} {value!r} is not a network in CIDR form") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ConfigError(f"podtally:{key} must be an IPv4 network, got {value!r}")
    return str(net)


def load() -> Settings:
    """Read and validate every knob; raise :class:`ConfigError` on the first bad one."""
    aws_cfg = pulumi.Config("aws")
    cfg = pulumi.Config("podtally")

    region = aws_cfg.get("region")
    if not region:
        raise ConfigError("aws:region is not set (e.g. us-east-1) in Pulumi.<stack>.yaml")

    vpc_cidr = _cidr(cfg.get("vpcCidr") or "10.42.0.0/16", "vpcCidr")
    prefix = ipaddress.ip_network(vpc_cidr).prefixlen
    if not 16 <= prefix <= 18:
        raise ConfigError(
            f"podtally:vpcCidr must be a /16, /17 or /18 (room for three subnet tiers), "
            f"got /{prefix}"
        )

    node_count = _int(cfg, "nodeCount", 3, 1, 100)
    node_min = _int(cfg, "nodeMin", node_count, 1, 100)
    node_max = _int(cfg, "nodeMax", node_count, 1, 100)
    if not node_min <= node_count <= node_max:
        raise ConfigError(
            f"podtally:nodeMin ({node_min}) <= nodeCount ({node_count}) <= nodeMax "
            f"({node_max}) does not hold"
        )

    raw_cidrs = cfg.get("apiPublicCidrs") or '["0.0.0.0/0"]'
    try:
        cidr_list = json.loads(raw_cidrs)
    except json.JSONDecodeError:
        raise ConfigError(f"podtally:apiPublicCidrs is not a list: {raw_cidrs!r}") from None
    if not isinstance(cidr_list, list) or not cidr_list:
        raise ConfigError("podtally:apiPublicCidrs must be a non-empty list of CIDRs")
    api_cidrs = tuple(_cidr(str(c), "apiPublicCidrs") for c in cidr_list)

    kubernetes_version = cfg.get("kubernetesVersion") or "1.35"
    parts = kubernetes_version.split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ConfigError(
            f"podtally:kubernetesVersion must look like 1.35, got {kubernetes_version!r}"
        )

    admin = cfg.get("adminPrincipalArn")
    if admin is not None and not admin.startswith("arn:aws"):
        raise ConfigError(f"podtally:adminPrincipalArn {admin!r} is not an IAM ARN")

    image_tag = cfg.get("imageTag") or "0.1.0"
    if image_tag in ("latest", "main", "master", "stable", "edge"):
        raise ConfigError(
            f"podtally:imageTag {image_tag!r} is a moving tag; the ECR repository has "
            "immutable tags, use a version such as 0.1.0"
        )

    try:
        cluster_name = check_dns1123_label(cfg.get("clusterName") or "podtally", "clusterName")
        namespace = check_dns1123_label(cfg.get("namespace") or "podtally", "namespace")
        app_name = check_dns1123_label(cfg.get("appName") or "podtally", "appName")
        zone = check_hostname(cfg.require("route53Zone"), "route53Zone").lower()
        hostname = check_hostname(cfg.require("hostname"), "hostname").lower()
    except UsageError as exc:
        raise ConfigError(f"podtally: {exc}") from None
    if hostname != zone and not hostname.endswith("." + zone):
        raise ConfigError(f"podtally:hostname {hostname!r} is not inside the zone {zone!r}")

    return Settings(
        region=region,
        vpc_cidr=vpc_cidr,
        zones=_zones(cfg),
        nat_mode=_choice(cfg, "natGateways", "single", NAT_MODES),
        cluster_name=cluster_name,
        kubernetes_version=kubernetes_version,
        node_instance_type=cfg.get("nodeInstanceType") or "t3.small",
        node_count=node_count,
        node_min=node_min,
        node_max=node_max,
        capacity_type=_choice(cfg, "capacityType", "ON_DEMAND", CAPACITY_TYPES),
        api_public_cidrs=api_cidrs,
        admin_principal_arn=admin,
        namespace=namespace,
        app_name=app_name,
        route53_zone=zone,
        hostname=hostname,
        replicas=_int(cfg, "replicas", 3, 1, 50),
        image_tag=image_tag,
        deploy_app=_bool(cfg, "deployApp", True),
        gateway=_bool(cfg, "gateway", False),
        ecr_force_delete=_bool(cfg, "ecrForceDelete", True),
    )
