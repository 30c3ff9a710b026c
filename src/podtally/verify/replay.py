"""Judge a run again from its saved observations (``--observations FILE``, JSON Lines).

Observations re-enter the chain at the tally: :func:`load_observations` reads the file back into
:class:`~podtally.verify.probe.Observation` objects, :func:`replay` counts them exactly as the
live run did and returns the same kind of :class:`~podtally.verify.result.VerifyResult`, so the
same verdict. :func:`decisions` judges each dimension (pod, node, zone, version) with
:func:`podtally.verify.decision.decide`, for pages built from observations alone.

What the file does not hold is taken from the caller: the URL (for the report's "target" line),
the judging settings (``alpha``, ``expect_pods``, ``max_error_rate``) and the mode the run was
in. Auto mode (``auto=True``, verify's default) is replayed as it ran: the observations go in
again in the order the run wrote them (the order they completed), the same looks
(:class:`podtally.verify._Stopper`) judge them, and the verdict is the one reached at the look
that stopped the run; what came after it was in flight, counted but not judged. Fixed mode
(``-n``, ``--duration``) judges everything once.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args

from podtally.contract import FIELDS
from podtally.errors import UsageError
from podtally.verify.decision import Decision, Mode, decide
from podtally.verify.options import (
    DEFAULT_ALPHA,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_TOLERANCE,
    VerifyOptions,
)
from podtally.verify.probe import ERROR_KINDS, IdentitySource, Observation, ProbeSummary
from podtally.verify.result import VerifyResult, build_result
from podtally.verify.tally import Accumulator

if TYPE_CHECKING:
    from podtally.verify.clients.http1 import Engine

REPLAY_URL = "http://observations.invalid/"  # the target when the caller names none
DIMENSIONS = ("pod", "node", "zone", "version")

_SOURCES = frozenset(get_args(IdentitySource))


# --- reading ------------------------------------------------------------------------------------
def _field(record: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = record.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise TypeError(name)
    return value


def observation_from(record: object) -> Observation:
    """One decoded ``--observations`` line -> an :class:`Observation` (TypeError/KeyError if it
    is not one)."""
    if not isinstance(record, dict):
        raise TypeError("not an object")
    index = _field(record, "index", int)
    start = _field(record, "start", (int, float))
    latency_ms = _field(record, "latency_ms", (int, float))
    if index is None or start is None or latency_ms is None:
        raise KeyError("index, start and latency_ms are required")
    error = _field(record, "error", str)
    if error is not None and error not in ERROR_KINDS:
        raise TypeError("error")
    source = _field(record, "source", str)
    if source is not None and source not in _SOURCES:
        raise TypeError("source")
    if not (math.isfinite(start) and math.isfinite(latency_ms) and latency_ms >= 0):
        raise TypeError("start")
    return Observation.of(
        [_field(record, name, str) for name in FIELDS],
        index=index,
        start=float(start),
        latency=float(latency_ms) / 1000,
        status=_field(record, "status", int),
        source=source,
        error=error,
        detail=_field(record, "detail", str),
        connection=_field(record, "connection", int),
        peer=_field(record, "peer", str),
        location=_field(record, "location", str),
        redirects=_field(record, "redirects", int) or 0,
    )


def parse_observations(lines: Iterable[str], name: str = "observations") -> list[Observation]:
    """JSON Lines -> observations, in the file's order (a run writes them as they complete, the
    order its auto mode judged them in). A bad line is bad input, named by number."""
    observations = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            observations.append(observation_from(json.loads(line)))
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(
                f"line {number} is not a podtally observation ({exc})",
                setting="observations",
                value=name,
            ) from None
    if not observations:
        raise UsageError("holds no observation", setting="observations", value=name)
    return observations


def load_observations(path: Path) -> list[Observation]:
    """Read a saved ``--observations`` file."""
    try:
        with path.open(encoding="utf-8") as handle:
            return parse_observations(handle, str(path))
    except OSError as exc:
        raise UsageError(
            f"cannot read it: {exc.strerror}", setting="observations", value=path
        ) from None
    except UnicodeDecodeError:
        raise UsageError("is not UTF-8 text", setting="observations", value=path) from None


# --- judging again ------------------------------------------------------------------------------
class _Halt:
    """What the auto mode's looks stop: here, the replay (the live run stops its engine)."""

    def __init__(self) -> None:
        self.status = ""
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def replay(
    observations: Sequence[Observation],
    *,
    url: str = REPLAY_URL,
    auto: bool = False,
    alpha: float = DEFAULT_ALPHA,
    tolerance: float = DEFAULT_TOLERANCE,
    expect_pods: int | None = None,
    max_error_rate: float = 0.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    started_at: float = 0.0,
) -> VerifyResult:
    """The result the run would have printed, from its observations alone.

    ``auto``: the run was in auto mode; judge it at the same looks (they come every
    ``concurrency`` requests at least, as in the run, so give the run's ``concurrency``) and keep
    the verdict of the look that stopped it. Otherwise every observation is judged once.
    Whether connections were reused is read from the observations (a connection id carrying
    more than one request); elapsed time is the last response's end.
    """
    from podtally.verify import _Stopper

    connections = Counter(o.connection for o in observations if o.connection is not None)
    keep_alive = any(n > 1 for n in connections.values())
    grpc = url.strip().lower().startswith(("grpc://", "grpcs://"))
    options = VerifyOptions(
        url,
        requests=None if auto else len(observations),
        keep_alive=keep_alive and not grpc,
        new_channel=grpc and not keep_alive,
        concurrency=concurrency,
        alpha=alpha,
        tolerance=tolerance,
        expect_pods=expect_pods,
        max_error_rate=max_error_rate,
        max_requests=max(max_requests, len(observations)),
    )
    acc = Accumulator(track_connections=options.reuses_connections)
    looks = _Stopper(options, acc) if auto else None
    halt = _Halt()
    for observation in observations:
        acc.add(observation)
        if looks is not None:  # as the live run's sink: a look after every observation
            looks(cast("Engine", halt))
    peers = list(dict.fromkeys(o.peer for o in observations if o.peer is not None))
    summary = ProbeSummary(
        started_at=started_at,
        elapsed=max(o.start + o.latency for o in observations),
        sent=len(observations),
        connections=len(connections) if connections else len(observations),
        addresses=tuple(peers),
    )
    return build_result(options, acc, summary, decided=looks.decided if looks else None)


def decisions(
    observations: Iterable[Observation],
    *,
    expect_pods: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    alpha: float = DEFAULT_ALPHA,
    mode: Mode = "fixed",
) -> tuple[Decision, ...]:
    """Pod, node, zone and version, each judged by :func:`decide`.

    Pods are expected equally (``expect_pods`` of them, else those that answered); a node, zone
    or version is expected in proportion to the pods it holds (each pod counted where it most
    often said it was). Dimensions no response named are left out.
    """
    counts: dict[str, Counter[str]] = {name: Counter() for name in DIMENSIONS}
    placement: dict[str, Counter[tuple[str | None, str | None, str | None]]] = {}
    for o in observations:
        if o.pod is None:
            continue
        counts["pod"][o.pod] += 1
        placement.setdefault(o.pod, Counter())[(o.node, o.zone, o.version)] += 1
    if not counts["pod"]:
        return (decide({}, expect_pods=expect_pods, tolerance=tolerance, alpha=alpha, mode=mode),)
    pods: dict[str, Counter[str]] = {name: Counter() for name in DIMENSIONS[1:]}
    for pod, seen in placement.items():
        where = seen.most_common(1)[0][0]
        for name, value in zip(DIMENSIONS[1:], where, strict=True):
            if value is not None:
                pods[name][value] += 1
                counts[name][value] += counts["pod"][pod]
    judged = [
        decide(
            counts["pod"],
            expect_pods=expect_pods,
            tolerance=tolerance,
            alpha=alpha,
            mode=mode,
        )
    ]
    for name in DIMENSIONS[1:]:
        if counts[name]:
            judged.append(
                decide(
                    counts[name],
                    expect_split=dict(pods[name]),
                    tolerance=tolerance,
                    alpha=alpha,
                    mode=mode,
                    dimension=name,
                )
            )
    return tuple(judged)


def overall(judged: Sequence[Decision]) -> Decision:
    """The decision that speaks for the run: the pod dimension's."""
    return judged[0]


def parameters(
    result: VerifyResult, extra: Mapping[str, object] | None = None
) -> dict[str, object]:
    """The run's parameters as the HTML report lists them (library names, plain values)."""
    options = result.options
    params: dict[str, object] = {
        "url": options.target.url,
        "mode": (
            f"auto: until even or uneven, at most {options.max_requests:,} requests"
            if options.auto
            else "fixed: judged once, at the end"
        ),
        "unit": result.assessment.unit.unit if result.assessment is not None else None,
        "requests": result.requests,
        "elapsed": f"{result.elapsed:.2f} s ({result.requests_per_second:.0f}/s)",
        "concurrency": options.concurrency,
        "rate": options.rate,
        "keep_alive": options.keep_alive,
        "protocol": options.protocol,
        "connections": result.connections,
        "follow": options.follow,
        "alpha": options.alpha,
        "tolerance": options.tolerance,
        "expect_pods": options.expect_pods,
        "max_error_rate": options.max_error_rate,
    }
    params.update(extra or {})
    return params
