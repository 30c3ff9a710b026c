"""HAProxy for the local stack, by part; the names the stack uses are gathered here.

* :mod:`.config`: the backends and their server slots, and the configuration written from a
  :class:`Layout` (pure text, section by section)
* :mod:`.weights`: integer server weights that give each track its share of the requests
* :mod:`.runtime`: the runtime API's socket and a client for it (server states, addresses,
  weights), through which replicas come and go without a reload
* :mod:`.binary`: finding the haproxy executable, and its check of a configuration file
"""

from __future__ import annotations

from podtally.local.haproxy.binary import HAPROXY_ENV, check_config, find_binary, install_hint
from podtally.local.haproxy.config import (
    BACKEND,
    BACKENDS,
    GRPC_BACKEND,
    GRPC_BACKENDS,
    GRPC_IDLE_TIMEOUT,
    HSTS_MAX_AGE,
    SECTIONS,
    SERVER_PREFIX,
    SERVICE_BACKEND,
    SERVICE_GRPC_BACKEND,
    SERVICE_IDLE_TIMEOUT,
    Layout,
    Section,
    Slot,
    check_path,
    render,
    server_name,
)
from podtally.local.haproxy.runtime import MAX_SOCKET_PATH, RuntimeApi, ServerStat, socket_path
from podtally.local.haproxy.weights import MAX_SHARE_ERROR, MAX_WEIGHT, server_weights

__all__ = [
    "BACKEND",
    "BACKENDS",
    "GRPC_BACKEND",
    "GRPC_BACKENDS",
    "GRPC_IDLE_TIMEOUT",
    "HAPROXY_ENV",
    "HSTS_MAX_AGE",
    "MAX_SHARE_ERROR",
    "MAX_SOCKET_PATH",
    "MAX_WEIGHT",
    "SECTIONS",
    "SERVER_PREFIX",
    "SERVICE_BACKEND",
    "SERVICE_GRPC_BACKEND",
    "SERVICE_IDLE_TIMEOUT",
    "Layout",
    "RuntimeApi",
    "Section",
    "ServerStat",
    "Slot",
    "check_config",
    "check_path",
    "find_binary",
    "install_hint",
    "render",
    "server_name",
    "server_weights",
    "socket_path",
]
