"""Where a replica goes and what it is called, as Kubernetes would decide: its pod name (a
template hash and a random suffix), its node and zone (spread by ordinal), and its address
(its own loopback address where the OS routes all of 127.0.0.0/8, else a free port).

Pure functions, apart from the one that asks the kernel about addresses.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
from collections.abc import Iterable

ZONES = ("local-a", "local-b", "local-c")
LOOPBACK = "127.0.0.1"
# Replica k (1-based) listens on 127.0.0.(10+k) where the OS routes all of 127.0.0.0/8 (Linux).
ADDRESS_BASE = 10
# The alphabet Kubernetes uses for generated names: no vowels, no look-alike characters.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(name: str, namespace: str, drain_seconds: float, restarted_at: str) -> str:
    """A pod-template-hash look-alike: 10 characters that change with the template."""
    template = {
        "name": name,
        "namespace": namespace,
        "drain_seconds": drain_seconds,
        "restartedAt": restarted_at,
    }
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(NAME_ALPHABET[b % len(NAME_ALPHABET)] for b in digest[:10])


def track_hash(template_hash: str, version: str) -> str:
    """The template hash of a track's pods: the stack's own for the first track, and for
    another version a different one, as another Deployment's pod template would have."""
    digest = hashlib.sha256(f"{template_hash}/{version}".encode()).digest()
    return "".join(NAME_ALPHABET[b % len(NAME_ALPHABET)] for b in digest[:10])


def pod_name(name: str, template_hash: str, taken: Iterable[str]) -> str:
    """``<name>-<template hash>-<5 random characters>``, not one of ``taken``."""
    used = set(taken)
    while True:
        suffix = "".join(secrets.choice(NAME_ALPHABET) for _ in range(5))
        pod = f"{name}-{template_hash}-{suffix}"
        if pod not in used:
            return pod


def node_of(ordinal: int, node_count: int) -> tuple[str, str]:
    """The node and zone of the replica at ``ordinal`` (0-based): round robin over the nodes,
    and the nodes round robin over the zones, so replicas spread over both."""
    index = ordinal % node_count
    return f"local-node-{index + 1}", ZONES[index % len(ZONES)]


def replica_address(k: int) -> str:
    """The loopback address of replica slot ``k`` (1-based) on a multi-address loopback."""
    return f"127.0.0.{ADDRESS_BASE + k}"


def multi_address_loopback() -> bool:
    """True where 127.0.0.11 can be bound without setup (Linux routes all of 127/8 to lo)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((replica_address(1), 0))
        except OSError:
            return False
    return True
