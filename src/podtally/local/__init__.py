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

from typing import TYPE_CHECKING, Any

from podtally.local.models import (
    MAX_REPLICAS,
    AlreadyUpError,
    Replica,
    Stack,
    StackConfig,
    Track,
    command_hint,
)

# The operations pull in psutil (the `local` extra) when first used, not when any submodule of
# this package is imported: `podtally verify` reads the demo's defaults from podtally.local.demo
# in an install with only the `verify` extra.
if TYPE_CHECKING:
    from podtally.local.operations import down, restart, scale, status, up

_OPERATIONS = frozenset({"down", "restart", "scale", "status", "up"})


def __getattr__(name: str) -> Any:
    if name in _OPERATIONS:
        from podtally.local import operations

        return getattr(operations, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_REPLICAS",
    "AlreadyUpError",
    "Replica",
    "Stack",
    "StackConfig",
    "Track",
    "command_hint",
    "down",
    "restart",
    "scale",
    "status",
    "up",
]
