"""The local stack: replicas of the identity service behind a real HAProxy, on one machine.

``up`` starts it, ``status`` describes it, ``restart`` and ``scale`` change it without failing a
request, ``down`` removes it. Where each part lives:

* :mod:`~podtally.local.models`: the configuration, tracks and the views returned (plain data)
* :mod:`~podtally.local.operations`: up, status, restart, scale, down, with crash recovery
* :mod:`~podtally.local.controller`: starts, attaches, drains and retires replicas; HAProxy
* :mod:`~podtally.local.haproxy`: HAProxy's configuration and its runtime API
* :mod:`~podtally.local.processes`: spawn, identify (pid and create time), signal, stop
* :mod:`~podtally.local.placement`: pod names, nodes and zones, loopback addresses
* :mod:`~podtally.local.polling`: HTTP probes and bounded waits
* :mod:`~podtally.local.signals`: interrupts held or ignored during critical steps
* :mod:`~podtally.local.state` and :mod:`~podtally.local.rundir`: ``state.json``; the run
  directory and its lock
* :mod:`~podtally.local.tls`: the local CA and certificate
"""

from __future__ import annotations

from podtally.local.models import (
    MAX_REPLICAS,
    AlreadyUpError,
    Replica,
    Stack,
    StackConfig,
    Track,
    TrackStatus,
    command_hint,
)
from podtally.local.operations import down, restart, scale, status, up

__all__ = [
    "MAX_REPLICAS",
    "AlreadyUpError",
    "Replica",
    "Stack",
    "StackConfig",
    "Track",
    "TrackStatus",
    "command_hint",
    "down",
    "restart",
    "scale",
    "status",
    "up",
]
