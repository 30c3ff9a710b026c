"""The one loop every engine runs on: request numbers, the rate, the deadline, progress, records.

A subclass provides :meth:`Runner._prepare` (name resolution, TLS set-up: errors there are one
error up front), :meth:`Runner._lanes` (the concurrent workers, each taking request numbers from
:meth:`Runner._next` until it says there are no more) and :meth:`Runner._close`, and hands each
request's outcome to :meth:`Runner._record`.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypedDict

from podtally.errors import PodtallyError
from podtally.verify import probe
from podtally.verify.clients.transport import Failure
from podtally.verify.options import VerifyOptions
from podtally.verify.probe import (
    PROGRESS_INTERVAL,
    IdentitySource,
    Observation,
    ProbeSummary,
    Progress,
    Resolver,
    Sink,
)


class Hooks(TypedDict, total=False):
    """The optional arguments every engine takes, by name."""

    progress: Callable[[Progress], None] | None  # called about ten times a second
    resolver: Resolver | None  # name resolution instead of the system's


class Runner:
    """One run. Create it, then ``await run()``; observations go to ``sink``."""

    def __init__(
        self,
        options: VerifyOptions,
        sink: Sink,
        progress: Callable[[Progress], None] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.options = options
        self._sink = sink
        self._progress = progress
        self._resolver = resolver if resolver is not None else probe.system_addresses
        self._addresses: dict[tuple[str, int], list[tuple[str, str]]] = {}
        self._turn: dict[tuple[str, int], itertools.count[int]] = {}
        self._serial = itertools.count(1)
        self._claimed = 0
        self._done = 0
        self._errors = 0
        self._opened = 0
        self._peers: dict[str, None] = {}
        # perf_counter() at the start: observation times, the rate schedule and the deadline
        # (uvloop's loop.time() ticks in whole milliseconds and is cached per loop iteration).
        self._t0 = 0.0
        self._started_at = 0.0
        self._deadline = float("inf")
        self._stopped = False
        self.status: str | None = None  # a caller's one-line state (auto mode: the verdict so far)

    def stop(self) -> None:
        """Send no more requests (those in flight complete): the answer is known."""
        self._stopped = True

    # --- for subclasses ------------------------------------------------------------------------
    async def _prepare(self) -> None:
        """Resolve names and load credentials before the clock starts."""

    def _lanes(self) -> list[Coroutine[Any, Any, None]]:
        raise NotImplementedError

    async def _close(self) -> None:
        """Close what the run opened."""

    def _lane_count(self) -> int:
        """``concurrency``, but never more lanes (or connections) than requests to send."""
        limit = self.options.request_limit
        return self.options.concurrency if limit is None else min(self.options.concurrency, limit)

    async def _next(self) -> tuple[int, float] | None:
        """The next request's number and start time, after the rate's wait; None when done."""
        total = self.options.request_limit
        if self._stopped or (total is not None and self._claimed >= total):
            return None
        index = self._claimed
        self._claimed += 1
        rate = self.options.rate
        if rate is not None:
            # Request i starts no sooner than i/rate after the start (checked against the clock
            # after each sleep: timers may fire a little early), and a wait never outlasts the
            # deadline.
            due = min(self._t0 + index / rate, self._deadline)
            while (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
        # The start time and the deadline check are one reading of the clock: no request
        # starts at or after the deadline, however loaded the machine is.
        started = time.perf_counter()
        if started >= self._deadline or self._stopped:
            return None
        return index, started

    async def _addresses_for(self, host: str, port: int) -> list[tuple[str, str]]:
        """(address, 'address:port' label) pairs for HOST:PORT: ``resolve``, a literal, or DNS."""
        key = (host, port)
        known = self._addresses.get(key)
        if known is not None:
            return known
        forced = self.options.address_for(host, port)
        if forced is not None:
            found = [forced]
        else:
            try:
                found = list(dict.fromkeys(await self._resolver(host, port)))
            except socket.gaierror as exc:
                reason = exc.strerror or str(exc)
                raise PodtallyError(f"cannot resolve host {host}: {reason}") from None
            if not found:
                raise PodtallyError(f"cannot resolve host {host}: no address")
        pairs = [(a, f"[{a}]:{port}" if ":" in a else f"{a}:{port}") for a in found]
        self._addresses[key] = pairs
        self._turn[key] = itertools.count()
        return pairs

    def _new_connection(self, host: str, port: int) -> tuple[int, str, str]:
        """(serial, address, peer) for a new connection to HOST:PORT (resolved already).

        New connections take the addresses in turn, so a DNS name with several addresses (one
        per zone, as for an NLB) is exercised across all of them.
        """
        key = (host, port)
        pairs = self._addresses[key]
        address, peer = pairs[next(self._turn[key]) % len(pairs)]
        self._peers.setdefault(peer)
        self._opened += 1
        return next(self._serial), address, peer

    def _peer_label(self, host: str, port: int) -> str | None:
        """The peer to name when no connection was made: the only address, if there is one."""
        pairs = self._addresses.get((host, port))
        return pairs[0][1] if pairs and len(pairs) == 1 else None

    def _record(
        self,
        index: int,
        started: float,
        latency: float,
        identity: Sequence[str | None],
        failure: Failure | None = None,
        status: int | None = None,
        source: IdentitySource | None = None,
        connection: int | None = None,
        peer: str | None = None,
        location: str | None = None,
        redirects: int = 0,
    ) -> None:
        """One request's outcome, as an :class:`Observation` to the sink."""
        self._done += 1
        if failure is not None:
            self._errors += 1
        self._sink(
            Observation.of(
                identity,
                index=index,
                start=started - self._t0,
                latency=latency,
                status=status,
                source=source,
                error=failure.kind if failure is not None else None,
                detail=failure.detail if failure is not None else None,
                connection=connection,
                peer=peer,
                location=location,
                redirects=redirects,
            )
        )

    # --- the run -------------------------------------------------------------------------------
    async def run(self) -> ProbeSummary:
        await self._prepare()
        self._started_at = time.time()
        self._t0 = time.perf_counter()
        if self.options.time_limit is not None:
            self._deadline = self._t0 + self.options.time_limit
        reporter = (
            asyncio.ensure_future(self._report_progress(self._progress))
            if self._progress is not None
            else None
        )
        tasks = [asyncio.ensure_future(lane) for lane in self._lanes()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if reporter is not None:
                reporter.cancel()
            await self._close()
        summary = self.summary()
        if self._progress is not None:
            self._progress(self._snapshot())
        return summary

    async def _report_progress(self, progress: Callable[[Progress], None]) -> None:
        while True:
            progress(self._snapshot())
            await asyncio.sleep(PROGRESS_INTERVAL)

    def _snapshot(self) -> Progress:
        return Progress(
            done=self._done,
            errors=self._errors,
            elapsed=time.perf_counter() - self._t0,
            total=self.options.request_limit,
            duration=self.options.time_limit,
            status=self.status,
        )

    @property
    def started(self) -> bool:
        """Whether the first request was sent (name resolution and TLS set-up passed)."""
        return self._t0 > 0

    def summary(self) -> ProbeSummary:
        """The run so far: after :meth:`run` returned, or what an interrupted run got done."""
        return ProbeSummary(
            started_at=self._started_at,
            elapsed=time.perf_counter() - self._t0 if self.started else 0.0,
            sent=self._done,
            connections=self._opened,
            addresses=tuple(self._peers),
        )
