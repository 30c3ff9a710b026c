"""The identity service: one replica that says who it is, with honest readiness and a drain.

Importing this package is cheap: the server (granian, prometheus-client) loads only when
:func:`serve` runs, so every other podtally command starts without it.
"""

from __future__ import annotations

from podtally.service.config import ServeConfig


def serve(config: ServeConfig) -> int:
    """Run a replica in this process until it is signalled; returns the exit code."""
    from podtally.service.server import serve as run

    return run(config)


__all__ = ["ServeConfig", "serve"]
