"""Who this replica is: pod, node, namespace, IP and zone, and where each value came from.

Resolved once at start-up, then frozen: every response is built from the same immutable
:class:`Identity`, so concurrent responses can never mix values.

Sources, per field, in the order they are tried:

- pod: ``POD_NAME`` / ``K8_POD_NAME`` (env) → the hostname (fallback)
- node: ``NODE_NAME`` / ``K8_NODE_NAME`` (env) → ``unknown`` (fallback)
- namespace: ``POD_NAMESPACE`` / ``K8_POD_NAMESPACE`` (env) → the service-account namespace file
  (file) → ``default`` (fallback)
- ip: ``POD_IP`` / ``K8_POD_IP`` (env) → the bound address, or the host's primary address when
  bound to all interfaces (fallback)
- zone: ``ZONE`` (env) → the node's ``topology.kubernetes.io/zone`` label from the Kubernetes API
  (kubernetes-api) → AWS IMDSv2 (imds) → ``unknown`` (fallback). The lookups share one deadline of
  about a second, so start-up is never held up for longer.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Source = Literal["env", "file", "kubernetes-api", "imds", "fallback"]

SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IMDS_ENDPOINT = "http://169.254.169.254"
ZONE_LABEL = "topology.kubernetes.io/zone"
ZONE_LOOKUP_BUDGET = 1.0  # seconds, for all zone lookups together

ENV_NAMES: Mapping[str, tuple[str, ...]] = {
    "pod": ("POD_NAME", "K8_POD_NAME"),
    "node": ("NODE_NAME", "K8_NODE_NAME"),
    "namespace": ("POD_NAMESPACE", "K8_POD_NAMESPACE"),
    "ip": ("POD_IP", "K8_POD_IP"),
    "zone": ("ZONE",),
}

Log = Callable[[str, Mapping[str, object]], None]


@dataclass(frozen=True, slots=True)
class Field:
    value: str
    source: Source


@dataclass(frozen=True, slots=True)
class Identity:
    pod: Field
    node: Field
    namespace: Field
    ip: Field
    zone: Field

    def text(self) -> str:
        """The plain-text identity: the seed's four lines, in order, then the zone."""
        return (
            f"Pod: {self.pod.value}\n"
            f"Node: {self.node.value}\n"
            f"Namespace: {self.namespace.value}\n"
            f"IP: {self.ip.value}\n"
            f"Zone: {self.zone.value}\n"
        )

    def headers(self) -> tuple[tuple[str, str], ...]:
        """The identity headers sent on every response."""
        return (
            ("x-pod-name", self.pod.value),
            ("x-node-name", self.node.value),
            ("x-pod-namespace", self.namespace.value),
            ("x-pod-ip", self.ip.value),
            ("x-zone", self.zone.value),
        )

    def fields(self) -> dict[str, Field]:
        return {
            "pod": self.pod,
            "node": self.node,
            "namespace": self.namespace,
            "ip": self.ip,
            "zone": self.zone,
        }


def _from_env(env: Mapping[str, str], key: str) -> str | None:
    for name in ENV_NAMES[key]:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def _primary_address() -> str:
    """The host's primary address without sending anything: what its hostname resolves to."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return "127.0.0.1"
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return addresses[0] if addresses else "127.0.0.1"


def _bound_ip(bind_host: str) -> str:
    try:
        address = ipaddress.ip_address(bind_host)
    except ValueError:
        return _primary_address() if bind_host in ("", "*") else bind_host
    return _primary_address() if address.is_unspecified else str(address)


def _looks_like_ec2() -> bool:
    """Only ask IMDS on EC2, so a laptop or CI runner never sends traffic to 169.254.169.254."""
    for path, prefix in (
        ("/sys/devices/virtual/dmi/id/sys_vendor", "amazon"),
        ("/sys/devices/virtual/dmi/id/board_asset_tag", "i-"),
        ("/sys/hypervisor/uuid", "ec2"),
    ):
        try:
            if Path(path).read_text().strip().lower().startswith(prefix):
                return True
        except OSError:
            continue
    return False


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())


def _zone_from_kubernetes(
    env: Mapping[str, str], node: str | None, sa_dir: Path, deadline: _Deadline, log: Log
) -> str | None:
    host = env.get("KUBERNETES_SERVICE_HOST")
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    token_file = sa_dir / "token"
    if not host or not node or not token_file.exists():
        return None
    if ":" in host:  # an IPv6 service address
        host = f"[{host}]"
    url = f"https://{host}:{port}/api/v1/nodes/{node}"
    try:
        context = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {token_file.read_text().strip()}"}
        )
        with urllib.request.urlopen(  # noqa: S310
            request, timeout=max(0.05, deadline.remaining()), context=context
        ) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        hint = " (the service account may not `get` nodes: render with --zone-lookup)"
        log("zone-lookup-failed", {"via": "kubernetes-api", "reason": f"HTTP {exc.code}{hint}"})
        return None
    except (OSError, ValueError, ssl.SSLError) as exc:
        log("zone-lookup-failed", {"via": "kubernetes-api", "reason": str(exc)})
        return None
    labels = body.get("metadata", {}).get("labels", {}) if isinstance(body, dict) else {}
    zone = labels.get(ZONE_LABEL) if isinstance(labels, dict) else None
    if not zone:
        log("zone-lookup-failed", {"via": "kubernetes-api", "reason": f"node has no {ZONE_LABEL}"})
        return None
    return str(zone)


def _zone_from_imds(endpoint: str, deadline: _Deadline, log: Log) -> str | None:
    base = endpoint.rstrip("/")
    try:
        token_request = urllib.request.Request(  # noqa: S310 - IMDS endpoint, http by design
            f"{base}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        )
        with urllib.request.urlopen(  # noqa: S310
            token_request, timeout=max(0.05, deadline.remaining())
        ) as response:
            token = response.read().decode().strip()
    except (TimeoutError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            log(
                "zone-lookup-failed",
                {
                    "via": "imds",
                    "reason": "IMDSv2 token request timed out; in a container this usually means "
                    "the instance's metadata hop limit is 1 (set HttpPutResponseHopLimit to 2)",
                },
            )
        else:
            log("zone-lookup-failed", {"via": "imds", "reason": f"token request: {reason}"})
        return None
    except (OSError, ValueError) as exc:
        log("zone-lookup-failed", {"via": "imds", "reason": f"token request: {exc}"})
        return None
    try:
        zone_request = urllib.request.Request(  # noqa: S310
            f"{base}/latest/meta-data/placement/availability-zone",
            headers={"X-aws-ec2-metadata-token": token},
        )
        with urllib.request.urlopen(  # noqa: S310
            zone_request, timeout=max(0.05, deadline.remaining())
        ) as response:
            zone = response.read().decode().strip()
    except (OSError, ValueError) as exc:
        log("zone-lookup-failed", {"via": "imds", "reason": f"placement request: {exc}"})
        return None
    return zone or None


def _no_log(event: str, fields: Mapping[str, object]) -> None:
    return None


def resolve(
    bind_host: str,
    env: Mapping[str, str] | None = None,
    *,
    log: Log = _no_log,
    serviceaccount_dir: Path | None = None,
    budget: float = ZONE_LOOKUP_BUDGET,
) -> Identity:
    """Resolve this replica's identity once, at start-up.

    ``env`` defaults to the process environment. ``PODTALLY_SERVICEACCOUNT_DIR`` and
    ``PODTALLY_IMDS_ENDPOINT`` point the lookups elsewhere (tests use loopback stand-ins); IMDS is
    only asked on EC2 or when its endpoint is given explicitly, and never when that is ``off``.
    """
    env = os.environ if env is None else env
    sa_dir = serviceaccount_dir or Path(env.get("PODTALLY_SERVICEACCOUNT_DIR", SERVICEACCOUNT_DIR))

    pod_env = _from_env(env, "pod")
    pod = Field(pod_env, "env") if pod_env else Field(socket.gethostname(), "fallback")

    node_env = _from_env(env, "node")
    node = Field(node_env, "env") if node_env else Field("unknown", "fallback")

    namespace_env = _from_env(env, "namespace")
    if namespace_env:
        namespace = Field(namespace_env, "env")
    else:
        try:
            namespace = Field((sa_dir / "namespace").read_text().strip(), "file")
        except OSError:
            namespace = Field("default", "fallback")
        if not namespace.value:
            namespace = Field("default", "fallback")

    ip_env = _from_env(env, "ip")
    ip = Field(ip_env, "env") if ip_env else Field(_bound_ip(bind_host), "fallback")

    zone_env = _from_env(env, "zone")
    if zone_env:
        zone = Field(zone_env, "env")
    else:
        deadline = _Deadline(budget)
        found = _zone_from_kubernetes(env, node_env, sa_dir, deadline, log)
        if found:
            zone = Field(found, "kubernetes-api")
        else:
            endpoint = env.get("PODTALLY_IMDS_ENDPOINT", "").strip()
            if endpoint == "off":
                found = None
            elif endpoint or _looks_like_ec2():
                found = _zone_from_imds(endpoint or IMDS_ENDPOINT, deadline, log)
            zone = Field(found, "imds") if found else Field("unknown", "fallback")

    return Identity(pod=pod, node=node, namespace=namespace, ip=ip, zone=zone)
