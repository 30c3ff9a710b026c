"""What every engine shares: claiming request numbers, the rate schedule, the deadline, progress.

A subclass provides :meth:`Runner._prepare` (name resolution, TLS set-up: errors there are one
error up front), :meth:`Runner._lanes` (the concurrent workers) and :meth:`Runner._close`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from podtally.errors import PodtallyError
from podtally.verify.options import VerifyOptions
from podtally.verify.probe import Observation, ProbeSummary, Progress, Resolver

PROGRESS_INTERVAL = 0.1


class Runner:
    def __init__(
        self,
        options: VerifyOptions,
        sink: Callable[[Observation], None],
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.options = options
        self._sink = sink
        self._progress = progress
        self._claimed = 0
        self._done = 0
        self._errors = 0
        self._opened = 0
        self._peers: dict[str, None] = {}
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

    async def _next(self) -> tuple[int, float] | None:
        """The next request's number and start time, after the rate's wait; None when done."""
        total = self.options.request_limit
        if self._stopped or (total is not None and self._claimed >= total):
            return None
        index = self._claimed
        self._claimed += 1
        rate = self.options.rate
        if rate is not None:
            due = min(self._t0 + index / rate, self._deadline)
            while (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
        started = time.perf_counter()
        if started >= self._deadline or self._stopped:
            return None
        return index, started

    def _emit(self, observation: Observation) -> None:
        self._done += 1
        if observation.error is not None:
            self._errors += 1
        self._sink(observation)

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
        return self._t0 > 0

    def summary(self) -> ProbeSummary:
        return ProbeSummary(
            started_at=self._started_at,
            elapsed=time.perf_counter() - self._t0 if self.started else 0.0,
            sent=self._done,
            connections=self._opened,
            addresses=tuple(self._peers),
        )


async def resolve_addresses(
    options: VerifyOptions, resolver: Resolver, host: str, port: int
) -> list[tuple[str, str]]:
    """(address, 'address:port' label) pairs for HOST:PORT: ``--resolve``, a literal, or DNS."""
    forced = options.address_for(host, port)
    if forced is not None:
        found = [forced]
    else:
        try:
            found = list(dict.fromkeys(await resolver(host, port)))
        except socket.gaierror as exc:
            reason = exc.strerror or str(exc)
            raise PodtallyError(f"cannot resolve host {host}: {reason}") from None
        if not found:
            raise PodtallyError(f"cannot resolve host {host}: no address")
    return [(a, f"[{a}]:{port}" if ":" in a else f"{a}:{port}") for a in found]
