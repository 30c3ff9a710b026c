"""The Helm chart's values for an AppSpec: what `helm install` needs to equal `render(spec)`.

The renderer (:mod:`podtally.k8s.render`) stays the one source of truth: the runtime image, the
CLI and the Pulumi program need no helm binary. The chart in ``charts/podtally`` is a second
spelling of the same objects, and ``tests/k8s/test_chart.py`` proves that ``helm template`` with
:func:`chart_values` equals :func:`~podtally.k8s.render.render` for a matrix of settings. The
one difference is by Helm convention: the chart's ``app.kubernetes.io/managed-by`` is ``Helm``.
"""

from __future__ import annotations

import re
from typing import Any

from podtally.errors import UsageError
from podtally.k8s.gateway import check_gateway
from podtally.spec import AppSpec

CHART_NAME = "podtally"
# Semantic Versioning 2.0.0, as Helm requires of a chart version.
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


def check_chart_version(value: str) -> str:
    """A chart version must be semver (``0.1.0``, ``1.2.3-rc.1``); Helm refuses anything else."""
    if not _SEMVER.match(value):
        raise UsageError(
            "is not a semantic version (MAJOR.MINOR.PATCH, e.g. 0.1.0)",
            setting="chart_version",
            value=value,
        )
    return value


def _image(spec: AppSpec) -> dict[str, str]:
    ref, _, digest = spec.image.partition("@")
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        repository, tag = ref[:colon], ref[colon + 1 :]
    else:
        repository, tag = ref, ""
    return {"repository": repository, "tag": tag, "digest": digest}


def chart_values(
    spec: AppSpec, *, create_namespace: bool = True, gateway: bool = False
) -> dict[str, Any]:
    """Values for ``charts/podtally`` (release name = spec.name, namespace = spec.namespace).

    With ``gateway`` the chart renders :func:`podtally.k8s.gateway.render_with_gateway`'s
    objects instead of :func:`~podtally.k8s.render.render`'s.
    """
    if gateway:
        check_gateway(spec)
    image = _image(spec)
    if not image["tag"]:
        raise UsageError(
            "the chart needs an image tag (a digest may follow it)",
            setting="image",
            value=spec.image,
        )
    values: dict[str, Any] = {
        "profile": spec.profile,
        "replicaCount": spec.replicas,
        "image": image,
        "commonLabels": dict(spec.labels),
        "namespace": {"create": create_namespace},
        "port": spec.port,
        "drainSeconds": spec.drain,
        "zoneLookup": spec.zone_lookup,
        "grpc": {"port": spec.grpc_port, "probes": spec.grpc_probes},
        "ingress": {
            "host": spec.host or "",
            "className": spec.ingress_class or "",
            "tls": {"enabled": spec.tls, "secretName": spec.tls_secret or ""},
            "alb": {"certificateArn": spec.certificate_arn or ""},
        },
        "hpa": {"enabled": spec.autoscaling, "maxReplicas": spec.max_replicas},
        "gateway": {"enabled": gateway},
    }
    return values
