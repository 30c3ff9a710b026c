"""Kubernetes manifests for podtally, as plain data (see :mod:`podtally.k8s.render`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from podtally.k8s.render import is_system_namespace, render, to_json, to_yaml

if TYPE_CHECKING:
    from podtally.k8s.render import Obj
    from podtally.spec import AppSpec

__all__ = ["app_objects", "is_system_namespace", "render", "to_json", "to_yaml"]


def app_objects(
    spec: AppSpec,
    *,
    create_namespace: bool = True,
    gateway: bool = False,
    traffic_distribution: str | None = None,
) -> list[Obj]:
    """The app's objects in apply order: :func:`render`'s, or with ``gateway`` the Gateway
    API's (:mod:`podtally.k8s.gateway`) instead of the Ingress, the Service's
    ``trafficDistribution`` set when given (:mod:`podtally.k8s.traffic`)."""
    from podtally.k8s.gateway import render_with_gateway
    from podtally.k8s.traffic import with_traffic_distribution

    make = render_with_gateway if gateway else render
    objs = make(spec, create_namespace=create_namespace)
    if traffic_distribution is not None:
        objs = with_traffic_distribution(objs, traffic_distribution)
    return objs
