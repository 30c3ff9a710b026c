"""The replica's lifecycle: starting → ready → draining → stopped.

One small object that the routes read and the server writes; reads are plain attribute loads, so
the hot path pays nothing for it.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


class Lifecycle:
    __slots__ = ("phase",)

    def __init__(self) -> None:
        self.phase = Phase.STARTING

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    @property
    def draining(self) -> bool:
        return self.phase is Phase.DRAINING
