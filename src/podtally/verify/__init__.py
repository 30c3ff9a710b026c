"""Verify a load balancer: which pod answered each request, and is the spread even?

Library first: :func:`run` sends the requests and returns an immutable :class:`VerifyResult`;
the CLI only renders it (:mod:`podtally.verify.report`). The data flows one way::

    probe (requests) -> observations -> tally (counts) -> decision (intervals) -> verdict -> report

Example::

    from podtally.verify import VerifyOptions, run

    result = run(VerifyOptions("http://127.0.0.1:8080/", expect_pods=3))  # auto: until known
    print(result.verdict.summary, result.pod_counts(), result.exit_code)

The URL picks the client: ``http(s)://`` HTTP/1.1
(:class:`~podtally.verify.clients.http1.Engine`), or with ``http2=True`` HTTP/2
(:class:`~podtally.verify.clients.h2.H2Engine`); ``grpc(s)://HOST:PORT`` gRPC
(:class:`~podtally.verify.clients.grpc.GrpcEngine`). Everything after the observations is the
same for every protocol.
"""

from __future__ import annotations

from collections.abc import Callable

from podtally.verify.clients.http1 import Engine
from podtally.verify.clients.runner import Runner
from podtally.verify.expected_split import ExpectedSplit, parse_expect_split
from podtally.verify.options import (
    DEFAULT_STREAMS,
    VerifyOptions,
    parse_duration,
    parse_header,
    parse_rate_fraction,
)
from podtally.verify.probe import (
    ERROR_KINDS,
    ErrorKind,
    Observation,
    Progress,
    Resolver,
)
from podtally.verify.result import ConnectionSpread, VerifyResult, build_result
from podtally.verify.tally import (
    Accumulator,
    Dimension,
    IdentityKey,
    Latency,
    Row,
    Verdict,
    judge,
    tally_dimensions,
)
from podtally.verify.target import Resolve, Target, parse_resolve, parse_url
from podtally.verify.verdict import Assessment, assess, status_line

__all__ = [
    "DEFAULT_STREAMS",
    "ERROR_KINDS",
    "Assessment",
    "ConnectionSpread",
    "Dimension",
    "ErrorKind",
    "ExpectedSplit",
    "IdentityKey",
    "Latency",
    "Observation",
    "Progress",
    "Resolve",
    "Resolver",
    "Row",
    "Target",
    "Verdict",
    "VerifyInterrupted",
    "VerifyOptions",
    "VerifyResult",
    "assess",
    "judge",
    "parse_duration",
    "parse_expect_split",
    "parse_header",
    "parse_rate_fraction",
    "parse_resolve",
    "parse_url",
    "run",
    "run_async",
    "tally_dimensions",
]


class VerifyInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped :func:`run`. ``result`` is what was collected until then, marked
    ``interrupted`` (its figures are partial), or ``None`` if no request had completed yet.

    A :class:`KeyboardInterrupt`, so code that does not care about partial results stops as
    it would on any other Ctrl-C.
    """

    def __init__(self, result: VerifyResult | None) -> None:
        super().__init__()
        self.result = result


def _client(
    options: VerifyOptions,
    sink: Callable[[Observation], None],
    progress: Callable[[Progress], None] | None,
    resolver: Resolver | None,
) -> Runner:
    """The engine for ``options.protocol`` (the others' imports only when they are used)."""
    if options.protocol == "http2":
        from podtally.verify.clients.h2 import H2Engine

        return H2Engine(options, sink, progress=progress, resolver=resolver)
    if options.protocol == "grpc":
        from podtally.verify.clients.grpc import GrpcEngine

        return GrpcEngine(options, sink, progress=progress, resolver=resolver)
    return Engine(options, sink, progress, resolver)


def _engine(
    options: VerifyOptions,
    progress: Callable[[Progress], None] | None,
    on_observation: Callable[[Observation], None] | None,
    resolver: Resolver | None,
) -> tuple[Accumulator, Runner, _Stopper | None]:
    acc = Accumulator(track_connections=options.reuses_connections)
    watcher = on_observation
    check = _Stopper(options, acc) if options.auto else None

    def sink(observation: Observation) -> None:
        acc.add(observation)
        if watcher is not None:
            watcher(observation)
        if check is not None:
            check(engine)

    engine = _client(options, sink, progress, resolver)
    return acc, engine, check


LONE_STOP = 200
"""Auto mode: one pod answered and none was expected, so no verdict can come; after this many
requests any other pod with a share of 3.4% or more would have answered (probability 0.999)."""


class _Stopper:
    """Auto mode: after every batch, judge with the anytime-valid intervals; stop the engine
    once the verdict is even or uneven, or once the error budget cannot be met any more."""

    def __init__(self, options: VerifyOptions, acc: Accumulator) -> None:
        self.options = options
        self.acc = acc
        self.next = max(options.concurrency, 10)
        self.errors_allowed = options.max_error_rate * options.max_requests
        # The verdict at the look that stopped the run: requests still in flight then complete
        # and are shown, but the verdict is the one reached at the stopping time (the
        # anytime-valid guarantee is for that time; a later look may swing back to undecided).
        self.decided: Assessment | None = None

    def __call__(self, engine: Runner) -> None:
        acc = self.acc
        if acc.requests < self.next:
            return
        self.next = acc.requests + max(self.options.concurrency, 10, acc.requests // 20)
        if sum(acc.errors.values()) > self.errors_allowed:
            engine.status = "error budget exceeded"
            engine.stop()
            return
        if not acc.identities:
            return
        assessment = assess(acc, self.options, "sequential", judged_only=True)
        engine.status = status_line(assessment)
        if assessment.decided:
            self.decided = assess(acc, self.options, "sequential")
            engine.stop()
        elif assessment.lone and acc.requests >= LONE_STOP:
            engine.stop()


async def run_async(
    options: VerifyOptions,
    progress: Callable[[Progress], None] | None = None,
    on_observation: Callable[[Observation], None] | None = None,
    resolver: Resolver | None = None,
) -> VerifyResult:
    """:func:`run` for callers already inside an event loop (cancellation propagates)."""
    acc, engine, stopper = _engine(options, progress, on_observation, resolver)
    summary = await engine.run()
    return build_result(options, acc, summary, decided=stopper.decided if stopper else None)


async def _run_until_interrupted(
    options: VerifyOptions,
    progress: Callable[[Progress], None] | None,
    on_observation: Callable[[Observation], None] | None,
    resolver: Resolver | None,
) -> tuple[VerifyResult | None, bool]:
    """:func:`run`'s main task: ``(result, interrupted)``. The task is only ever cancelled by
    :class:`asyncio.Runner` on SIGINT, and then returns what was collected so far."""
    import asyncio

    acc, engine, stopper = _engine(options, progress, on_observation, resolver)
    try:
        summary = await engine.run()
    except asyncio.CancelledError:
        if not (engine.started and acc.requests):
            return None, True
        return build_result(options, acc, engine.summary(), interrupted=True), True
    decided = stopper.decided if stopper else None
    return build_result(options, acc, summary, decided=decided), False


def run(
    options: VerifyOptions,
    progress: Callable[[Progress], None] | None = None,
    on_observation: Callable[[Observation], None] | None = None,
    resolver: Resolver | None = None,
) -> VerifyResult:
    """Send the requests ``options`` describe and return the judged result.

    ``progress`` is called about ten times a second; ``on_observation`` once per request, as it
    completes (for ``--observations``); ``resolver`` replaces the system's name resolution
    (``async (host, port) -> addresses``, raising :class:`socket.gaierror` for an unknown name).
    Bad input was rejected when ``options`` was built (:class:`podtally.errors.UsageError`);
    this raises :class:`podtally.errors.PodtallyError` only before the first request, for a
    host that does not resolve. A target that does not answer is a result whose verdict is
    ``unreachable`` (exit code 3).

    Ctrl-C (SIGINT, in the main thread) stops the run: :class:`VerifyInterrupted`, a
    :class:`KeyboardInterrupt`, carries the partial result.
    """
    import asyncio

    from podtally.verify.probe import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        result, interrupted = runner.run(
            _run_until_interrupted(options, progress, on_observation, resolver)
        )
    if interrupted or result is None:
        raise VerifyInterrupted(result)
    return result
