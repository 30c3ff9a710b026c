"""The immutable outcome of one verification run, built from the accumulated counts.

Notes and failures that give advice in terms of a setting (``use follow``) are
:class:`~podtally.errors.Phrase` objects: the report words them with the interface's flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from podtally.errors import Phrase, Setting
from podtally.verify.options import VerifyOptions
from podtally.verify.probe import ERROR_KINDS, ErrorKind, ProbeSummary
from podtally.verify.tally import (
    UNKNOWN,
    Accumulator,
    Dimension,
    DimensionName,
    IdentityKey,
    Latency,
    Verdict,
    judge,
    latency_summary,
    tally_dimensions,
)
from podtally.verify.verdict import Assessment, assess

EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class ConnectionRow:
    """One reused connection (a keep-alive or HTTP/2 connection, a gRPC channel)."""

    connection: int  # the engine's serial number
    peer: str | None  # the address:port it went to
    requests: int  # identified responses it carried
    pods: tuple[tuple[str, int], ...]  # responses per pod, most first


@dataclass(frozen=True, slots=True)
class ConnectionSpread:
    """With reused connections (``keep_alive``, ``http2``, gRPC channels): did the requests
    on one connection reach one pod or several?"""

    connections: int  # connections that carried at least one identified response
    pinned: int  # of those, connections whose responses all came from one pod
    most_pods: int  # the most distinct pods seen on one connection
    rows: tuple[ConnectionRow, ...] = ()  # per connection, in the order they were opened
    word: str = "connection"  # what a connection is called here: "connection" or "channel"


def reuse_word(options: VerifyOptions) -> str:
    """What one reused connection is called for this protocol."""
    return "channel" if options.protocol == "grpc" else "connection"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Everything a report needs. The CLI renders it; tests and other tools read it directly."""

    options: VerifyOptions
    started_at: float  # epoch seconds
    elapsed: float  # seconds
    requests: int  # requests sent (each counted once, whatever happened)
    responses: int  # requests that got an HTTP response of any status
    identified: int  # responses that named a pod
    connections: int  # connections opened
    addresses: tuple[str, ...]  # address:port pairs connected to
    identities: tuple[tuple[IdentityKey, int], ...]  # most responses first
    dimensions: tuple[Dimension, ...]  # pod, node, zone, version: counts and chi-square (info)
    latency: Latency | None
    status_codes: tuple[tuple[int, int], ...]
    errors: tuple[tuple[ErrorKind, int], ...]  # every kind, zeros included
    error_details: tuple[tuple[ErrorKind, str, int], ...]  # the most frequent detail per kind
    redirects: tuple[tuple[str, int], ...]  # redirect locations not followed
    sources: tuple[tuple[str, int], ...]  # where identities came from: headers, body
    connection_spread: ConnectionSpread | None
    notes: tuple[str, ...]
    verdict: Verdict  # on what was collected (all of it, unless interrupted)
    assessment: Assessment | None  # the decision: unit, intervals, verdict (None: no identity)
    interrupted: bool = False  # stopped early (Ctrl-C): the figures are partial

    @property
    def exit_code(self) -> int:
        """The verdict's exit code; 130 for an interrupted run, whatever the partial verdict."""
        return EXIT_INTERRUPTED if self.interrupted else self.verdict.exit_code

    @property
    def passed(self) -> bool:
        """Only a run that finished can pass: an interrupted one never does."""
        return self.verdict.passed and not self.interrupted

    @property
    def failed(self) -> int:
        return sum(n for _, n in self.errors)

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def pods_answered(self) -> int:
        return self.dimension("pod").groups

    def dimension(self, name: DimensionName) -> Dimension:
        for dimension in self.dimensions:
            if dimension.name == name:
                return dimension
        raise KeyError(name)

    def pod_counts(self) -> dict[str, int]:
        return {row.name: row.count for row in self.dimension("pod").rows}


def _notes(
    options: VerifyOptions,
    acc: Accumulator,
    probe: ProbeSummary,
    dimensions: tuple[Dimension, ...],
    spread: ConnectionSpread | None,
) -> tuple[str, ...]:
    notes: list[str] = []
    if options.reuses_connections:
        word = reuse_word(options)
        here = ""
        if spread is not None and spread.connections:
            if spread.pinned == spread.connections:
                here = f" Here every {word} stayed on one pod: {word}s are pinned."
            else:
                here = (
                    f" Here {spread.connections - spread.pinned} of {spread.connections} "
                    f"{word}s reached several pods (up to {spread.most_pods}): the balancer "
                    f"spreads requests within a {word} (an HTTP-level balancer)."
                )
        if options.protocol == "grpc":
            what = f"gRPC: {probe.connections} channels carried {acc.requests} calls. "
            instead: Phrase = Phrase(
                "with ", Setting("new_channel"), " every call opens a channel of its own."
            )
        elif options.protocol == "http2":
            what = (
                f"HTTP/2: {probe.connections} connections carried {acc.requests} requests "
                f"({options.streams} streams each at a time). "
            )
            instead = Phrase(
                "without ", Setting("http2"), " every HTTP/1.1 request opens its own connection."
            )
        else:
            what = f"keep-alive: {probe.connections} connections carried {acc.requests} requests. "
            instead = Phrase(
                "without ", Setting("keep_alive"), " every request opens its own connection."
            )
        notes.append(
            Phrase(
                what,
                f"A per-connection balancer (NLB, kube-proxy, any L4 balancer) pins each {word} "
                f"to one pod, so the spread reflects {word}s, not requests; ",
                *instead.parts,
                here,
            )
        )
    if acc.locations and not options.follow:
        location, count = acc.locations.most_common(1)[0]
        https = " or the https URL" if location.startswith("https://") else ""
        notes.append(
            Phrase(
                f"{sum(acc.locations.values())} responses were redirects (to {location}, "
                f"{count} times), not followed: use ",
                Setting("follow"),
                f"{https}.",
            )
        )
    if acc.redirected:
        notes.append(f"{acc.redirected} requests followed redirects before they were answered.")
    body = acc.sources.get("body", 0)
    if body:
        notes.append(
            f"{body} identities came from the response body ('Pod:' lines): "
            "those responses had no X-Pod-* headers."
        )
    if len(probe.addresses) > 1:
        notes.append(
            f"new connections took the {len(probe.addresses)} addresses in turn: "
            + ", ".join(probe.addresses)
        )
    zones = next(d for d in dimensions if d.name == "zone")
    if zones.rows and all(r.name in (UNKNOWN, "unknown") for r in zones.rows):
        notes.append("the pods did not report a zone (set ZONE or run where it can be looked up).")
    return tuple(notes)


def build_result(
    options: VerifyOptions,
    acc: Accumulator,
    probe: ProbeSummary,
    interrupted: bool = False,
    decided: Assessment | None = None,
) -> VerifyResult:
    """Counts and engine facts → the immutable result, with statistics and the verdict.

    ``interrupted``: the run was stopped early; the result describes what it got done.
    ``decided``: auto mode's verdict at the look that stopped the run (else judged on it all).
    """
    dimensions = tally_dimensions(acc.identities)
    spread: ConnectionSpread | None = None
    if options.reuses_connections:
        per_connection = acc.pods_per_connection.values()
        spread = ConnectionSpread(
            connections=len(per_connection),
            pinned=sum(1 for pods in per_connection if len(pods) == 1),
            most_pods=max((len(pods) for pods in per_connection), default=0),
            rows=tuple(
                ConnectionRow(
                    connection=serial,
                    peer=acc.peer_of_connection.get(serial),
                    requests=acc.requests_per_connection.get(serial, 0),
                    pods=tuple(sorted(pods.items(), key=lambda kv: (-kv[1], kv[0]))),
                )
                for serial, pods in sorted(acc.pods_per_connection.items())
            ),
            word=reuse_word(options),
        )
    unreachable = None
    if acc.responses == 0 and acc.details:
        kind, _ = acc.errors.most_common(1)[0]
        unreachable = acc.details[kind].most_common(1)[0][0]
    hint = None
    if acc.locations and not options.follow:
        location = acc.locations.most_common(1)[0][0]
        https = " or the https URL" if location.startswith("https://") else ""
        hint = Phrase(f"redirected to {location}; use ", Setting("follow"), https)
    assessment = decided or (
        assess(acc, options, "sequential" if options.auto else "fixed") if acc.identities else None
    )
    verdict: Verdict = judge(
        assessment,
        requests=acc.requests,
        responses=acc.responses,
        errors=acc.errors,
        expect_pods=options.expect_pods,
        max_error_rate=options.max_error_rate,
        unreachable_reason=unreachable,
        identity_hint=hint,
    )
    return VerifyResult(
        options=options,
        started_at=probe.started_at,
        elapsed=probe.elapsed,
        requests=acc.requests,
        responses=acc.responses,
        identified=sum(acc.identities.values()),
        connections=probe.connections,
        addresses=probe.addresses,
        identities=tuple(sorted(acc.identities.items(), key=lambda kv: (-kv[1], kv[0].pod))),
        dimensions=dimensions,
        latency=latency_summary(acc.latencies),
        status_codes=tuple(sorted(acc.statuses.items())),
        errors=tuple((kind, acc.errors.get(kind, 0)) for kind in ERROR_KINDS),
        error_details=tuple(
            (kind, *acc.details[kind].most_common(1)[0])
            for kind in ERROR_KINDS
            if kind in acc.details
        ),
        redirects=tuple(acc.locations.most_common()),
        sources=tuple(sorted(acc.sources.items())),
        connection_spread=spread,
        notes=_notes(options, acc, probe, dimensions, spread),
        verdict=verdict,
        assessment=assessment,
        interrupted=interrupted,
    )
