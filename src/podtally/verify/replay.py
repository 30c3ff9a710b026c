"""Judge a run again from its saved observations (``--observations FILE``, JSON Lines).

Observations re-enter the chain at the tally: :func:`load_run` reads the file back, its first
line (the run's settings, schema :data:`~podtally.contract.OBSERVATIONS_SCHEMA_ID`) into the
run's :class:`~podtally.verify.options.VerifyOptions` and every other line into an
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
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast, get_args

from podtally.contract import FIELDS, OBSERVATIONS_SCHEMA_ID
from podtally.errors import UsageError
from podtally.verify.decision import Decision, Mode, decide
from podtally.verify.expected_split import ExpectedSplit, parse_expect_split
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
from podtally.verify.target import parse_resolve

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


# The settings line (format /2): each key of its ``options`` (the ``--json`` document's), the
# VerifyOptions keyword it feeds (None: checked against the options, not fed) and its JSON types.
_NUMBER = (int, float)
_OPTION_KEYS: Final[dict[str, tuple[str | None, tuple[type, ...]]]] = {
    "requests": ("requests", (int, type(None))),
    "duration_seconds": ("duration", (*_NUMBER, type(None))),
    "concurrency": ("concurrency", (int,)),
    "rate": ("rate", (*_NUMBER, type(None))),
    "timeout_seconds": ("timeout", _NUMBER),
    "keep_alive": ("keep_alive", (bool,)),
    "protocol": (None, (str,)),
    "http2": ("http2", (bool,)),
    "streams": ("streams", (int,)),
    "new_channel": ("new_channel", (bool,)),
    "follow": ("follow", (bool,)),
    "insecure": ("insecure", (bool,)),
    "cacert": (None, (str, type(None))),  # a file on the machine that ran it: not needed here
    "resolve": ("resolve", (list,)),
    "alpha": ("alpha", _NUMBER),
    "tolerance": ("tolerance", _NUMBER),
    "expect_pods": ("expect_pods", (int, type(None))),
    "expect_split": ("expect_split", (str, type(None))),
    "max_requests": ("max_requests", (int,)),
    "max_duration_seconds": ("max_duration", (*_NUMBER, type(None))),
    "auto": (None, (bool,)),
    "max_error_rate": ("max_error_rate", _NUMBER),
}
_HEADER_KEYS: Final = ("schema", "url", "options")
_SCHEMA = re.compile(r"^podtally\.verify\.observations/(\d+)$")


def _typed(value: object, kinds: tuple[type, ...]) -> bool:
    """``value`` is of one of ``kinds`` as JSON means it: a boolean is not a number."""
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def options_from_header(record: Mapping[str, Any]) -> VerifyOptions:
    """A settings line (the first of an ``--observations`` file) -> the run's
    :class:`VerifyOptions` (``cacert`` left out: judging needs no CA file).

    Raises :class:`ValueError` naming what is wrong: another schema (``/1`` has no such line, a
    higher number is a newer format), a key missing, unknown or of the wrong type, a value the
    run could not have had.
    """
    schema = record.get("schema")
    match = _SCHEMA.match(schema) if isinstance(schema, str) else None
    if match is None:
        raise ValueError(f"schema {schema!r} is not a podtally observations schema")
    if schema != OBSERVATIONS_SCHEMA_ID:
        raise ValueError(
            f"schema {schema} is not one this podtally reads ({OBSERVATIONS_SCHEMA_ID}, or a "
            "file without a settings line): a newer podtally wrote it"
        )
    unknown = sorted(set(record) - set(_HEADER_KEYS))
    if unknown or not all(key in record for key in _HEADER_KEYS):
        raise ValueError(f"keys must be {', '.join(_HEADER_KEYS)}")
    url, given = record["url"], record["options"]
    if not isinstance(url, str) or not isinstance(given, dict):
        raise ValueError("url must be a string, options an object")
    unknown = sorted(set(given) ^ set(_OPTION_KEYS))
    if unknown:
        raise ValueError(f"options: {', '.join(unknown)} unknown or missing")
    settings: dict[str, Any] = {}
    for key, (keyword, kinds) in _OPTION_KEYS.items():
        value = given[key]
        if not _typed(value, kinds):
            raise ValueError(f"options: {key} is {json.dumps(value)}")
        if keyword is not None:
            settings[keyword] = value
    try:
        if not all(isinstance(entry, str) for entry in settings["resolve"]):
            raise ValueError("options: resolve must be a list of strings")
        settings["resolve"] = tuple(parse_resolve(entry) for entry in settings["resolve"])
        if settings["expect_split"] is not None:
            settings["expect_split"] = parse_expect_split(settings["expect_split"])
        options = VerifyOptions(url, **settings)
    except UsageError as exc:  # said with the library's names: the file's, not a flag
        raise ValueError(str(exc)) from None
    for key, actual in (("protocol", options.protocol), ("auto", options.auto)):
        if given[key] != actual:
            raise ValueError(f"options: {key} is {json.dumps(given[key])}, the others say {actual}")
    return options


@dataclass(frozen=True, slots=True)
class SavedRun:
    """An ``--observations`` file read back: the run's settings and its observations."""

    observations: tuple[Observation, ...]  # in the order the run wrote them
    options: VerifyOptions | None  # the run's, from its settings line; None: an older file


def parse_run(lines: Iterable[str], name: str = "observations") -> SavedRun:
    """JSON Lines -> the run's settings (its first line, when it has one: an object with a
    ``schema``) and its observations, in the file's order (a run writes them as they complete,
    the order its auto mode judged them in). A bad line is bad input, named by number."""
    observations = []
    options: VerifyOptions | None = None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if isinstance(record, dict) and "schema" in record:
                if number > 1 or options is not None:
                    raise UsageError(
                        f"line {number} is the settings line of a run, which only the first "
                        "line can be (one run per file)",
                        setting="observations",
                        value=name,
                    )
                try:
                    options = options_from_header(record)
                except ValueError as exc:
                    raise UsageError(
                        f"line 1 is not a podtally settings line: {exc}",
                        setting="observations",
                        value=name,
                    ) from None
                continue
            observations.append(observation_from(record))
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(
                f"line {number} is not a podtally observation ({exc})",
                setting="observations",
                value=name,
            ) from None
    if not observations:
        raise UsageError("holds no observation", setting="observations", value=name)
    return SavedRun(tuple(observations), options)


def parse_observations(lines: Iterable[str], name: str = "observations") -> list[Observation]:
    """JSON Lines -> observations, in the file's order (:func:`parse_run` without the run's
    settings)."""
    return list(parse_run(lines, name).observations)


def load_run(path: Path) -> SavedRun:
    """Read a saved ``--observations`` file: the run's settings and observations."""
    try:
        with path.open(encoding="utf-8") as handle:
            return parse_run(handle, str(path))
    except OSError as exc:
        raise UsageError(
            f"cannot read it: {exc.strerror}", setting="observations", value=path
        ) from None
    except UnicodeDecodeError:
        raise UsageError("is not UTF-8 text", setting="observations", value=path) from None


def load_observations(path: Path) -> list[Observation]:
    """Read a saved ``--observations`` file's observations (:func:`load_run`'s)."""
    return list(load_run(path).observations)


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
    expect_split: ExpectedSplit | None = None,
    max_error_rate: float = 0.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    started_at: float = 0.0,
) -> VerifyResult:
    """The result the run would have printed, from its observations alone, judged with these
    settings (for a file without the run's own: see :func:`judging` for one with them).

    ``auto``: the run was in auto mode; judge it at the same looks (they come every
    ``concurrency`` requests at least, as in the run, so give the run's ``concurrency``) and keep
    the verdict of the look that stopped it. Otherwise every observation is judged once.
    Whether connections were reused is read from the observations (a connection id carrying
    more than one request).
    """
    options = replay_options(
        observations,
        url=url,
        auto=auto,
        alpha=alpha,
        tolerance=tolerance,
        expect_pods=expect_pods,
        expect_split=expect_split,
        max_error_rate=max_error_rate,
        concurrency=concurrency,
        max_requests=max_requests,
    )
    return judge_again(observations, options, started_at=started_at)


def replay_options(
    observations: Sequence[Observation],
    *,
    url: str = REPLAY_URL,
    auto: bool = False,
    alpha: float = DEFAULT_ALPHA,
    tolerance: float = DEFAULT_TOLERANCE,
    expect_pods: int | None = None,
    expect_split: ExpectedSplit | None = None,
    max_error_rate: float = 0.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> VerifyOptions:
    """:func:`replay`'s options: the settings given, the rest read from the observations."""
    connections = Counter(o.connection for o in observations if o.connection is not None)
    keep_alive = any(n > 1 for n in connections.values())
    grpc = url.strip().lower().startswith(("grpc://", "grpcs://"))
    return VerifyOptions(
        url,
        requests=None if auto else len(observations),
        keep_alive=keep_alive and not grpc,
        new_channel=grpc and not keep_alive,
        concurrency=concurrency,
        alpha=alpha,
        tolerance=tolerance,
        expect_pods=expect_pods,
        expect_split=expect_split,
        max_error_rate=max_error_rate,
        max_requests=max(max_requests, len(observations)),
    )


def judge_again(
    observations: Sequence[Observation], options: VerifyOptions, *, started_at: float = 0.0
) -> VerifyResult:
    """The result of a run with these ``options`` that got these observations.

    In auto mode (``options.auto``) the observations are judged at the run's looks (after every
    batch of ``concurrency``, at least 10) and the verdict is that of the look that stopped it;
    otherwise they are judged once. Elapsed time is the last response's end.
    """
    from podtally.verify import _Stopper

    connections = Counter(o.connection for o in observations if o.connection is not None)
    acc = Accumulator(track_connections=options.reuses_connections)
    looks = _Stopper(options, acc) if options.auto else None
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
    return Judging(
        options,
        run,
        from_run=tuple(
            name for name in JUDGING if name not in touched and setting(run, name) != DEFAULTS[name]
        ),
        overridden=tuple(
            name for name in JUDGING if name in touched and wanted[name] != setting(run, name)
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
