"""The local stack: replicas of the identity service behind a real HAProxy, on one machine.

``up`` starts it, ``status`` describes it, ``restart`` and ``scale`` change it without failing a
request, ``down`` removes it. Each stack keeps its pids, configuration and certificates in one run
directory (see :mod:`podtally.local.state`).
"""

from __future__ import annotations

from podtally.local.stack import (
    MAX_REPLICAS,
    AlreadyUpError,
    Replica,
    Stack,
    StackConfig,
    command_hint,
    down,
    restart,
    scale,
    status,
    up,
)

__all__ = [
    "MAX_REPLICAS",
    "AlreadyUpError",
    "Replica",
    "Stack",
    "StackConfig",
    "command_hint",
    "down",
    "restart",
    "scale",
    "status",
    "up",
]
