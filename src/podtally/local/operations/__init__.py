"""The stack's operations, as the CLI and library callers use them: ``up``, ``status``,
``restart``, ``scale``, ``down``, each under the stack's lock and each recovering from a crash
or an interrupt half-way.

* :mod:`.lifecycle`: ``up``, ``status`` and ``down``: the stack starts whole or not at all, and
  goes whole
* :mod:`.changes`: ``restart`` and ``scale``: replicas come and go without a failed request
* :mod:`.common`: what they all need (the recorded state, the lock's note, the supervisor)
"""

from __future__ import annotations

from podtally.local.operations.changes import restart, scale
from podtally.local.operations.lifecycle import down, status, up

__all__ = ["down", "restart", "scale", "status", "up"]
