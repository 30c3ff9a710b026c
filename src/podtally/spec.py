"""AppSpec: the one description of a podtally deployment.

The local stack, the Kubernetes manifests and the Pulumi program all start from an AppSpec, so a
name, a replica count or a hostname is validated once, here, with the same one-line errors.

An error that names one of AppSpec's fields does so with a :class:`~podtally.errors.Setting`
(``host``, ``autoscaling``, ``certificate_arn``), never with a flag: each interface says it its
own way (``podtally manifests`` with its flags, ``--host``; the Pulumi program would with its
config keys, ``podtally:hostname``); ``str(error)`` names the field.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from podtally.contract import DEFAULT_GRPC_PORT, DEFAULT_PORT
from podtally.errors import Phrase, Setting, UsageError
from podtally.net import check_ports

Profile = Literal["generic", "eks"]
PROFILES: tuple[Profile, ...] = ("generic", "eks")

DEFAULT_IMAGE = "ghcr.io/podtally/podtally:0.1.0"
# Kubernetes keeps replica counts as int32.
INT32_MAX = 2**31 - 1
# How long a replica keeps answering after SIGTERM (with /readyz at 503), by profile. Behind the
# AWS Load Balancer Controller the ALB stops sending to a removed pod IP only after the controller
# has seen the endpoint change and the ALB has applied the deregistration: that takes longer
# than kube-proxy or an in-cluster ingress controller needs.
DEFAULT_DRAIN_SECONDS: dict[Profile, int] = {"generic": 5, "eks": 20}

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_HOST_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ACM_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+$")
# registry/path:tag or registry/path@sha256:<64 hex>, as the OCI distribution spec names them.
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_MUTABLE_TAGS = frozenset({"latest", "stable", "main", "master", "edge"})


def check_dns1123_label(value: str, what: str) -> str:
    """Return ``value`` if it is a DNS-1123 label (Kubernetes object names), else raise."""
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise UsageError(
            f"{what} {value!r} is not a DNS-1123 label "
            "(lower-case letters, digits and '-', starting and ending alphanumeric, at most 63)"
        )
    return value


def check_dns1035_label(value: str, what: str) -> str:
    """Return ``value`` if it is a DNS-1035 label (Service names), else raise."""
    if len(value) > 63 or not _DNS1035_LABEL.match(value):
        raise UsageError(
            f"{what} {value!r} is not a DNS-1035 label (it names the Service: lower-case "
            "letters, digits and '-', start with a letter, end alphanumeric, at most 63)"
        )
    return value


def check_hostname(value: str, what: str = "host") -> str:
    """Return ``value``, in lower case, if it is a valid DNS hostname (RFC 1123), else raise.

    Hostnames are case-insensitive, so ``App.Test`` is ``app.test``. An IPv4 address also passes
    (its labels are digits); :func:`check_ingress_host` does not.
    """
    name = (value[:-1] if value.endswith(".") else value).lower()
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or any(len(label) > 63 or not _HOST_LABEL.match(label) for label in labels)
    ):
        raise UsageError(f"{what} {value!r} is not a valid DNS hostname")
    return name


def check_ingress_host(value: str, what: str = "host") -> str:
    """A hostname for an Ingress rule: a DNS name, never an IP address (the API server's rule)."""
    name = check_hostname(value, what)
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    raise UsageError(
        Phrase(
            f"{what} {value!r} is an IP address; an Ingress host must be a DNS name (leave ",
            Setting("host"),
            " out to serve any host)",
        )
    )


def check_certificate_arn(value: str) -> str:
    if not _ACM_ARN.match(value):
        raise UsageError(
            f"certificate ARN {value!r} is malformed "
            "(expected arn:aws:acm:<region>:<account-id>:certificate/<id>)"
        )
    return value


def check_image(value: str) -> str:
    """An image reference by digest or by an immutable-looking tag (never ``latest``)."""
    match = _IMAGE.match(value)
    if not match:
        raise UsageError(f"image {value!r} is not a valid image reference")
    tag, digest = match.group("tag"), match.group("digest")
    if not digest and not tag:
        raise UsageError(f"image {value!r} has neither a tag nor a digest; pin one")
    if not digest and tag in _MUTABLE_TAGS:
        raise UsageError(f"image {value!r} uses the mutable tag {tag!r}; use a version or digest")
    return value


@dataclass(frozen=True)
class AppSpec:
    """What to run, independent of where: one source of truth for every target."""

    name: str = "podtally"
    namespace: str = "podtally"
    replicas: int = 3
    image: str = DEFAULT_IMAGE
    host: str | None = None
    tls: bool = True
    profile: Profile = "generic"
    certificate_arn: str | None = None
    zone_lookup: bool = False
    # None: the profile's default, DEFAULT_DRAIN_SECONDS[profile]; resolved in __post_init__.
    drain_seconds: int | None = None
    port: int = DEFAULT_PORT
    ingress_class: str | None = None
    tls_secret: str | None = None
    autoscaling: bool = False
    max_replicas: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # gRPC (issue 12): the container's `--grpc-port`; 0 turns gRPC off.
    grpc_port: int = DEFAULT_GRPC_PORT
    # Start-up and readiness probes through gRPC health where gRPC is on (Kubernetes 1.27+);
    # False keeps them on HTTP /readyz.
    grpc_probes: bool = True

    @property
    def drain(self) -> int:
        """The drain in seconds, with the profile's default filled in (never None)."""
        if self.drain_seconds is None:
            return DEFAULT_DRAIN_SECONDS[self.profile]
        return self.drain_seconds

    def __post_init__(self) -> None:
        # The name is every object's name, the Service's included: the stricter DNS-1035 rule.
        check_dns1035_label(self.name, "name")
        check_dns1123_label(self.namespace, "namespace")
        if self.replicas < 1:
            raise UsageError(f"replicas must be at least 1, got {self.replicas}")
        for setting in ("replicas", "max_replicas"):  # Kubernetes stores both as int32
            count = getattr(self, setting)
            if count is not None and count > INT32_MAX:
                raise UsageError(f"must be at most {INT32_MAX}", setting=setting, value=count)
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise UsageError(
                f"max replicas ({self.max_replicas}) is below replicas ({self.replicas})"
            )
        if self.profile not in PROFILES:
            raise UsageError(f"profile {self.profile!r} is not one of {', '.join(PROFILES)}")
        check_image(self.image)
        if self.drain_seconds is None:
            object.__setattr__(self, "drain_seconds", DEFAULT_DRAIN_SECONDS[self.profile])
        if self.host is not None:
            object.__setattr__(self, "host", check_ingress_host(self.host))
        if self.certificate_arn is not None:
            check_certificate_arn(self.certificate_arn)
        if not 0 <= self.drain <= 3600:
            raise UsageError(f"drain seconds must be between 0 and 3600, got {self.drain}")
        check_ports(self.port, self.grpc_port)
        if self.ingress_class is not None:
            check_dns1123_label(self.ingress_class, "ingress class")
        if self.tls_secret is not None:
            check_dns1123_label(self.tls_secret, "TLS secret")
        if self.max_replicas is not None and not self.autoscaling:
            raise UsageError(
                Phrase("max replicas only applies with autoscaling (", Setting("autoscaling"), ")")
            )
        if self.profile == "eks" and self.tls and not (self.certificate_arn or self.host):
            raise UsageError(
                Phrase(
                    "the eks profile serves HTTPS: give a certificate ARN (",
                    Setting("certificate_arn"),
                    "), or a host (",
                    Setting("host"),
                    ") for the load balancer controller to find an ACM certificate",
                )
            )
        if self.profile == "generic" and self.certificate_arn is not None:
            raise UsageError("a certificate ARN only applies to the eks profile")
        if self.profile == "eks" and (self.ingress_class or self.tls_secret):
            raise UsageError(
                "the eks profile uses the alb ingress class and ACM certificates; "
                "ingress class and TLS secret apply to the generic profile"
            )
        if self.host is None and (self.ingress_class or self.tls_secret):
            raise UsageError(
                Phrase("an ingress class or TLS secret needs a host (", Setting("host"), ")")
            )
