"""Who this replica is: pod, node, namespace, IP, zone and version, and where each came from.

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
- version: ``POD_VERSION`` (env; in Kubernetes the pod's ``app.kubernetes.io/version`` label) →
  ``unknown`` (fallback)

The variable names, header names and text lines are the wire contract's (:mod:`podtally.contract`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from podtally.contract import ENV, FIELDS, HEADERS, ZONE_LABEL, FieldName, format_text

Source = Literal["env", "file", "kubernetes-api", "imds", "fallback"]

SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IMDS_ENDPOINT = "http://169.254.169.254"
ZONE_LOOKUP_BUDGET = 1.0  # seconds, for all zone lookups together

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
    version: Field

    def text(self) -> str:
        """The plain-text identity: the seed's four lines, in order, then zone and version."""
        return format_text({name: f.value for name, f in self.fields().items()})

    def headers(self) -> tuple[tuple[str, str], ...]:
        """The identity headers sent on every response (lower-case, as HTTP/2 wants them)."""
        return tuple((HEADERS[name].lower(), f.value) for name, f in self.fields().items())

    def fields(self) -> dict[FieldName, Field]:
        """Every field by name, in the contract's order."""
        return {name: getattr(self, name) for name in FIELDS}


def _usable(value: str, where: str, log: Log) -> str | None:
    """A value that can go into a header and a line of text as it is: printable ASCII only.

    Anything else (a CR or LF, control bytes, non-ASCII) would break the text format or be dropped
    from the headers by the server, so it is refused and the next source is tried.
    """
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isprintable():
        return value
    log("identity-value-refused", {"from": where, "reason": "not printable ASCII", "value": value})
    return None


def _from_env(env: Mapping[str, str], key: FieldName, log: Log) -> str | None:
    for name in ENV[key]:
        value = _usable(env.get(name, ""), name, log)
        if value:
            return value
    return None


def _primary_address() -> str:
    """The host's primary address: the source address of its default route.

    Connecting a UDP socket only asks the kernel for a route; nothing is sent. Where there is no
    route, what the hostname resolves to, if not loopback. (Stock Debian maps the hostname to
    127.0.1.1, so the route comes first.)
    """
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: any address the default route covers
        address = str(probe.getsockname()[0])
        if not ipaddress.ip_address(address).is_unspecified:
            return address
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
    if not host or not token_file.exists():
        return None  # not in a cluster
    if not node:
        reason = "NODE_NAME is not set (give it from spec.nodeName through the downward API)"
        log("zone-lookup-skipped", {"via": "kubernetes-api", "reason": reason})
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
        # For the operator reading the service's log, not a command's user: the manifests'
        # zone lookup setting (AppSpec.zone_lookup, the chart's zoneLookup) grants the `get`.
        hint = " (the service account may not `get` nodes: render the manifests with zone lookup)"
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
    return _usable(str(zone), f"the node's {ZONE_LABEL} label", log)


def _zone_from_imds(endpoint: str, deadline: _Deadline, log: Log) -> str | None:
    base = endpoint.rstrip("/")
    if deadline.remaining() < 0.1:
        log("zone-lookup-skipped", {"via": "imds", "reason": "the zone lookup budget is used up"})
        return None
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
    return _usable(zone, "IMDS placement/availability-zone", log)


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

    pod_env = _from_env(env, "pod", log)
    pod = Field(pod_env, "env") if pod_env else Field(socket.gethostname(), "fallback")

    node_env = _from_env(env, "node", log)
    node = Field(node_env, "env") if node_env else Field("unknown", "fallback")

    namespace_env = _from_env(env, "namespace", log)
    namespace = Field(namespace_env, "env") if namespace_env else Field("default", "fallback")
    if not namespace_env:
        with contextlib.suppress(OSError):
            from_file = _usable((sa_dir / "namespace").read_text(), "the namespace file", log)
            if from_file:
                namespace = Field(from_file, "file")

    ip_env = _from_env(env, "ip", log)
    ip = Field(ip_env, "env") if ip_env else Field(_bound_ip(bind_host), "fallback")

    zone_env = _from_env(env, "zone", log)
    zone = Field(zone_env, "env") if zone_env else _zone_within(budget, env, node_env, sa_dir, log)

    version_env = _from_env(env, "version", log)
    version = Field(version_env, "env") if version_env else Field("unknown", "fallback")

    return Identity(pod=pod, node=node, namespace=namespace, ip=ip, zone=zone, version=version)


def _zone_within(
    budget: float, env: Mapping[str, str], node: str | None, sa_dir: Path, log: Log
) -> Field:
    """The zone lookups, cut off when the budget is spent.

    Socket timeouts bound each read, not a whole answer: an endpoint that trickles bytes could
    hold a lookup for ever. So the lookups run in a daemon thread, which is abandoned (and its
    later log lines dropped) once the budget and a small grace are over.
    """
    deadline = _Deadline(budget)
    result: list[Field] = []
    late = threading.Event()

    def guarded_log(event: str, fields: Mapping[str, object]) -> None:
        if not late.is_set():
            log(event, fields)

    def lookup() -> None:
        found = _zone_from_kubernetes(env, node, sa_dir, deadline, guarded_log)
        if found:
            result.append(Field(found, "kubernetes-api"))
            return
        endpoint = env.get("PODTALLY_IMDS_ENDPOINT", "").strip()
        if endpoint != "off" and (endpoint or _looks_like_ec2()):
            found = _zone_from_imds(endpoint or IMDS_ENDPOINT, deadline, guarded_log)
            if found:
                result.append(Field(found, "imds"))

    worker = threading.Thread(target=lookup, name="podtally-zone-lookup", daemon=True)
    worker.start()
    worker.join(budget + 0.2)
    if worker.is_alive():
        late.set()
        log("zone-lookup-failed", {"reason": f"no complete answer within {budget:g} s"})
        return Field("unknown", "fallback")
    return result[0] if result else Field("unknown", "fallback")
