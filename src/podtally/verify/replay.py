"""Judge a run again from its saved observations (``--observations FILE``, JSON Lines).

Observations re-enter the chain at the tally: :func:`~podtally.verify.saved_run.load_run`
reads the file back, its first line (the run's settings, schema
:data:`~podtally.contract.OBSERVATIONS_SCHEMA_ID`) into the run's
:class:`~podtally.verify.options.VerifyOptions` and every other line into an
:class:`~podtally.verify.probe.Observation`; :func:`judge_again` counts them exactly as the live
run did and returns the same kind of :class:`~podtally.verify.result.VerifyResult`, so the same
verdict. :func:`judging` says how to judge: as the run did, with what a caller gives instead
(and which settings came from where). :func:`decisions` judges each dimension (pod, node, zone,
version) with :func:`podtally.verify.decision.decide`, for pages built from observations alone.

A file an older podtally wrote (format ``/1``: no settings line) holds requests only: the
judging settings and the mode come from the caller (:func:`replay`, as before). Auto mode
(``auto=True``, verify's default) is replayed as it ran: the observations go in again in the
order the run wrote them (the order they completed), the same looks
(:class:`podtally.verify._Stopper`) judge them, and the verdict is the one reached at the look
that stopped the run; what came after it was in flight, counted but not judged. Fixed mode
(``-n``, ``--duration``) judges everything once.

A run that did not get to its end (its file's end line says ``interrupted``, or a ``/3`` file
has no end line: cut short) is judged as verify judged its interrupted run: once on everything
it got, the result marked ``interrupted`` (partial); it never passes (:func:`exit_code`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypedDict, Unpack, cast

from podtally.errors import UsageError
from podtally.verify.decision import Decision, Mode, decide
from podtally.verify.expected_split import ExpectedSplit
from podtally.verify.options import (
    DEFAULT_ALPHA,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_TOLERANCE,
    VerifyOptions,
)
from podtally.verify.probe import Observation, ProbeSummary
from podtally.verify.result import VerifyResult, build_result
from podtally.verify.saved_run import SavedRun
from podtally.verify.tally import Accumulator

if TYPE_CHECKING:
    from podtally.verify.clients.http1 import Engine

REPLAY_URL = "http://observations.invalid/"  # the target when the caller names none
DIMENSIONS = ("pod", "node", "zone", "version")


# --- judging again ------------------------------------------------------------------------------
class _Halt:
    """What the auto mode's looks stop: here, the replay (the live run stops its engine)."""

    def __init__(self) -> None:
        self.status = ""
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


class ReplaySettings(TypedDict, total=False):
    """What :func:`replay` and :func:`replay_options` judge with; each may be left out."""

    url: str  # the target shown (default: REPLAY_URL)
    auto: bool  # judge at auto mode's looks (default: False, once on everything)
    alpha: float  # default: DEFAULT_ALPHA
    tolerance: float  # default: DEFAULT_TOLERANCE
    expect_pods: int | None  # default: None (the pods that answered)
    expect_split: ExpectedSplit | None  # default: None
    max_error_rate: float  # default: 0
    concurrency: int  # auto mode's looks (default: DEFAULT_CONCURRENCY)
    max_requests: int  # auto mode's error budget (default: DEFAULT_MAX_REQUESTS)


def replay(
    observations: Sequence[Observation],
    *,
    started_at: float = 0.0,
    **settings: Unpack[ReplaySettings],
) -> VerifyResult:
    """The result the run would have printed, from its observations alone, judged with these
    ``settings`` (:class:`ReplaySettings`; for a file with the run's own: :func:`judging`).

    ``auto``: the run was in auto mode; judge it at the same looks (they come every
    ``concurrency`` requests at least, as in the run, so give the run's ``concurrency``) and keep
    the verdict of the look that stopped it. Otherwise every observation is judged once.
    Whether connections were reused is read from the observations (a connection id carrying
    more than one request).
    """
    options = replay_options(observations, **settings)
    return judge_again(observations, options, started_at=started_at)


def replay_options(
    observations: Sequence[Observation], **settings: Unpack[ReplaySettings]
) -> VerifyOptions:
    """:func:`replay`'s options: the ``settings`` given (:class:`ReplaySettings`), the rest read
    from the observations. A setting it does not know is a :class:`TypeError`, as a keyword
    argument it does not take would be."""
    unknown = sorted(set(settings) - set(ReplaySettings.__annotations__))
    if unknown:
        raise TypeError(f"replay() got unexpected settings: {', '.join(unknown)}")
    url = settings.get("url", REPLAY_URL)
    auto = settings.get("auto", False)
    connections = Counter(o.connection for o in observations if o.connection is not None)
    keep_alive = any(n > 1 for n in connections.values())
    grpc = url.strip().lower().startswith(("grpc://", "grpcs://"))
    return VerifyOptions(
        url,
        requests=None if auto else len(observations),
        keep_alive=keep_alive and not grpc,
        new_channel=grpc and not keep_alive,
        concurrency=settings.get("concurrency", DEFAULT_CONCURRENCY),
        alpha=settings.get("alpha", DEFAULT_ALPHA),
        tolerance=settings.get("tolerance", DEFAULT_TOLERANCE),
        expect_pods=settings.get("expect_pods"),
        expect_split=settings.get("expect_split"),
        max_error_rate=settings.get("max_error_rate", 0.0),
        max_requests=max(settings.get("max_requests", DEFAULT_MAX_REQUESTS), len(observations)),
    )


def judge_again(
    observations: Sequence[Observation],
    options: VerifyOptions,
    *,
    started_at: float = 0.0,
    interrupted: bool = False,
) -> VerifyResult:
    """The result of a run with these ``options`` that got these observations.

    In auto mode (``options.auto``) the observations are judged at the run's looks (after every
    batch of ``concurrency``, at least 10) and the verdict is that of the look that stopped it;
    otherwise they are judged once. Elapsed time is the last response's end.

    ``interrupted``: the run did not get to its end (:attr:`SavedRun.partial
    <podtally.verify.saved_run.SavedRun.partial>`): the result is marked so, as the interrupted
    run's own, and judged as that run judged it, once on everything it got.
    """
    from podtally.verify import _Stopper

    connections = Counter(o.connection for o in observations if o.connection is not None)
    acc = Accumulator(track_connections=options.reuses_connections)
    looks = _Stopper(options, acc) if options.auto and not interrupted else None
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
    decided = looks.decided if looks is not None else None
    return build_result(options, acc, summary, interrupted=interrupted, decided=decided)


def exit_code(result: VerifyResult) -> int:
    """`podtally report`'s exit code for a run judged again: the verdict's, except that a run
    that did not get to its end never passes (1 where its verdict alone would give 0).

    Not 130, verify's for an interrupted run: that code says the command itself was
    interrupted (128 + SIGINT), which a report of a saved file was not."""
    code = result.verdict.exit_code
    return 1 if result.interrupted and code == 0 else code


# --- as the run did, or otherwise ---------------------------------------------------------------
JUDGING: Final = (
    "auto",
    "concurrency",
    "max_requests",
    "alpha",
    "tolerance",
    "expect_pods",
    "expect_split",
    "max_error_rate",
)
"""The settings a verdict depends on that a caller of :func:`judging` may give (``auto``: the
mode; ``concurrency``: auto mode's looks; ``max_requests``: auto mode's error budget)."""

DEFAULTS: Final[Mapping[str, object]] = {
    "auto": True,
    "concurrency": DEFAULT_CONCURRENCY,
    "max_requests": DEFAULT_MAX_REQUESTS,
    "alpha": DEFAULT_ALPHA,
    "tolerance": DEFAULT_TOLERANCE,
    "expect_pods": None,
    "expect_split": None,
    "max_error_rate": 0.0,
}
"""Each of :data:`JUDGING` as `verify` has it when not told otherwise."""

_EXPECTATION = ("expect_pods", "expect_split")  # one expectation: given, both are replaced
_AUTO_ONLY = ("concurrency", "max_requests")  # what only auto mode's looks depend on


def setting(options: VerifyOptions, name: str) -> object:
    """One of :data:`JUDGING` as ``options`` have it."""
    return options.auto if name == "auto" else getattr(options, name)


@dataclass(frozen=True, slots=True)
class Judging:
    """How a saved run is judged, and where each setting came from."""

    options: VerifyOptions  # what the observations are judged with
    run: VerifyOptions | None  # the run's own, from its file; None: the file does not say
    from_run: tuple[str, ...]  # settings of JUDGING taken from the file, not at their defaults
    overridden: tuple[str, ...]  # settings of JUDGING given, other than the run's


def judging(saved: SavedRun, given: Mapping[str, Any], url: str | None = None) -> Judging:
    """The options to judge ``saved`` with: the run's own, from its file, except the settings
    of :data:`JUDGING` in ``given`` (and ``url``, the target named). A given ``expect_pods`` or
    ``expect_split`` replaces the run's expectation as a whole; a given ``auto`` other than the
    run's judges a fixed run at auto mode's looks, or an auto run once on everything.

    A file without the run's settings (an older podtally's) is judged with ``given`` and the
    :data:`DEFAULTS` (auto mode), as :func:`replay` does. A given setting that is bad input
    raises :class:`UsageError` naming it; a ``url`` the run's settings do not fit, or of another
    protocol than the run's (it renames the target, it does not change the run), names ``url``.
    """
    unknown = set(given) - set(JUDGING)
    if unknown:
        raise TypeError(f"not judging settings: {', '.join(sorted(unknown))}")
    observations = saved.observations
    run = saved.options
    if run is None:
        settings = {**DEFAULTS, **given}
        return Judging(
            replay_options(observations, url=url or REPLAY_URL, **settings), None, (), ()
        )
    touched = set(given)
    if touched & set(_EXPECTATION):
        touched |= set(_EXPECTATION)
    wanted = {name: given.get(name) if name in touched else setting(run, name) for name in JUDGING}
    changes: dict[str, Any] = {name: wanted[name] for name in touched if name != "auto"}
    if wanted["auto"] != run.auto:
        changes["requests"] = None if wanted["auto"] else len(observations)
        changes["duration"] = None
    if wanted["auto"]:  # never a request limit below what the file holds (as replay())
        changes["max_requests"] = max(cast("int", wanted["max_requests"]), len(observations))
    if url is not None:
        changes["url"] = url
    try:
        options = dataclasses.replace(run, **changes)
    except UsageError as exc:
        if url is None or exc.setting in touched:
            raise
        raise UsageError(
            f"does not fit the run's settings ({exc})", setting="url", value=url
        ) from None
    if options.protocol != run.protocol:  # the target renamed, not the run
        raise UsageError(
            f"is not a URL of the run's protocol ({run.protocol})", setting="url", value=url
        )
    # Auto mode's looks and error budget mean nothing to a judgement made once, on everything.
    relevant = [name for name in JUDGING if wanted["auto"] or name not in _AUTO_ONLY]
    return Judging(
        options,
        run,
        from_run=tuple(
            name
            for name in relevant
            if name not in touched and setting(run, name) != DEFAULTS[name]
        ),
        overridden=tuple(
            name for name in relevant if name in touched and wanted[name] != setting(run, name)
        ),
    )


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
