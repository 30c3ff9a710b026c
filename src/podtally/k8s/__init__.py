"""Kubernetes manifests for podtally, as plain data (see :mod:`podtally.k8s.render`)."""

from __future__ import annotations

from podtally.k8s.render import is_system_namespace, render, to_json, to_yaml

__all__ = ["is_system_namespace", "render", "to_json", "to_yaml"]
