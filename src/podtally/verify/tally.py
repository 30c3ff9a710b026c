"""Observations → counts → statistics → verdict.

:class:`Accumulator` takes observations one by one (cheaply: it runs inside the request loop).
:func:`tally_dimensions` turns identity counts into one :class:`Dimension` per pod, node, zone
and IP, each with a chi-square goodness-of-fit test (scipy) against the spread a fair balancer
gives: even over pods, and for nodes, zones and IPs weighted by how many pods each holds.
:func:`judge` combines the pod test, the expected pod count and the error budget into a
:class:`Verdict`. Where a failure names a setting (the error budget, ``max_error_rate``), it is a
:class:`~podtally.errors.Phrase`: a command line words it with its own flag.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

from podtally.errors import Phrase, Setting
from podtally.verify.probe import ERROR_KINDS, ErrorKind, Observation

if TYPE_CHECKING:
    from podtally.verify.verdict import Assessment

DimensionName = Literal["pod", "node", "zone", "version"]
DIMENSIONS: tuple[DimensionName, ...] = ("pod", "node", "zone", "version")
MIN_EXPECTED = 5.0  # the usual chi-square rule: every expected count at least 5
UNKNOWN = "(unknown)"

VerdictResult = Literal["even", "uneven", "inconclusive", "no identity", "unreachable"]


class IdentityKey(NamedTuple):
    """Who answered: the identity fields (``None`` where a response did not say)."""

    pod: str
    node: str | None
    namespace: str | None
    ip: str | None
    zone: str | None
    version: str | None = None


# --- counting -----------------------------------------------------------------------------------
class Accumulator:
    """Counts observations as they arrive; keeps no per-request objects but latencies."""

    def __init__(self, track_connections: bool = False) -> None:
        self.requests = 0
        self.responses = 0
        self.identities: Counter[IdentityKey] = Counter()
        self.sources: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[ErrorKind] = Counter()
        self.details: dict[ErrorKind, Counter[str]] = {}
        self.locations: Counter[str] = Counter()
        self.redirected = 0
        self.latencies = array("d")
        self._track = track_connections
        self.pods_per_connection: dict[int, Counter[str]] = {}  # pod -> identified responses
        self.peer_of_connection: dict[int, str] = {}
        self.requests_per_connection: Counter[int] = Counter()

    def add(self, observation: Observation) -> None:
        self.requests += 1
        status = observation.status
        if status is not None:
            self.responses += 1
            self.statuses[status] += 1
            self.latencies.append(observation.latency)
        pod = observation.pod
        if pod is not None:
            self.identities[
                IdentityKey(
                    pod,
                    observation.node,
                    observation.namespace,
                    observation.ip,
                    observation.zone,
                    observation.version,
                )
            ] += 1
            if observation.source is not None:
                self.sources[observation.source] += 1
            if self._track and observation.connection is not None:
                self.pods_per_connection.setdefault(observation.connection, Counter())[pod] += 1
                self.requests_per_connection[observation.connection] += 1
                if observation.peer is not None:
                    self.peer_of_connection.setdefault(observation.connection, observation.peer)
        if observation.redirects:
            self.redirected += 1
        kind = observation.error
        if kind is not None:
            self.errors[kind] += 1
            if observation.detail is not None:
                self.details.setdefault(kind, Counter())[observation.detail] += 1
            if observation.location is not None:
                self.locations[observation.location] += 1


# --- statistics ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Row:
    """One pod, node, zone or IP: how many responses it gave against how many it should have."""

    name: str
    count: int
    share: float
    expected_share: float
    pods: int  # pods in this group (1 for the pod dimension)

    @property
    def deviation(self) -> float:
        """Relative difference from the expected share: +0.05 is 5 % more than a fair share."""
        return self.share / self.expected_share - 1.0 if self.expected_share else 0.0


@dataclass(frozen=True, slots=True)
class Dimension:
    """The tally along one dimension, with its goodness-of-fit test."""

    name: DimensionName
    rows: tuple[Row, ...]  # most responses first
    total: int
    chi2: float | None
    p_value: float | None
    dof: int
    max_min_ratio: float | None  # busiest over quietest, each relative to its expected share
    min_expected: float
    judged: bool  # False when there is one group or an expected count is under MIN_EXPECTED

    @property
    def groups(self) -> int:
        return len(self.rows)


def _dimension(
    name: DimensionName, counts: Mapping[str, int], pods: Mapping[str, int]
) -> Dimension:
    from scipy.special import chdtrc

    total = sum(counts.values())
    all_pods = sum(pods.values())
    names = sorted(counts, key=lambda k: (-counts[k], k))
    rows = tuple(
        Row(
            name=k,
            count=counts[k],
            share=counts[k] / total if total else 0.0,
            expected_share=pods[k] / all_pods if all_pods else 0.0,
            pods=pods[k],
        )
        for k in names
    )
    expected = [total * r.expected_share for r in rows]
    min_expected = min(expected) if expected else 0.0
    # max/min of observed over expected: for pods plainly the busiest over the quietest pod;
    # for a node with two pods, its count is halved before comparing.
    loads = [r.share / r.expected_share for r in rows if r.expected_share]
    ratio = max(loads) / min(loads) if loads and min(loads) > 0 else None
    if len(rows) < 2 or min_expected < MIN_EXPECTED:
        return Dimension(
            name, rows, total, None, None, max(len(rows) - 1, 0), ratio, min_expected, judged=False
        )
    # Pearson's statistic; its p-value from scipy's chi-square survival function. (This is what
    # scipy.stats.chisquare computes; scipy.special loads in a third of the time.)
    statistic = sum((r.count - e) ** 2 / e for r, e in zip(rows, expected, strict=True))
    p_value = float(chdtrc(len(rows) - 1, statistic))
    return Dimension(
        name=name,
        rows=rows,
        total=total,
        chi2=statistic,
        p_value=p_value,
        dof=len(rows) - 1,
        max_min_ratio=ratio,
        min_expected=min_expected,
        judged=True,
    )


def pod_placement(identities: Mapping[IdentityKey, int]) -> dict[str, IdentityKey]:
    """Each pod's node, namespace, IP and zone: the most frequent seen with it (normally one)."""
    best: dict[str, tuple[int, IdentityKey]] = {}
    for key, count in identities.items():
        current = best.get(key.pod)
        if current is None or count > current[0]:
            best[key.pod] = (count, key)
    return {pod: key for pod, (_, key) in best.items()}


def tally_dimensions(identities: Mapping[IdentityKey, int]) -> tuple[Dimension, ...]:
    """Pod, node, zone and version tallies from identity counts (the chi-square is information).

    Pods are expected to share evenly. A node (zone, IP) is expected to receive its pods' share:
    with pods a, b on node-1 and c on node-2, node-1 should see 2/3 of the responses.
    """
    pod_counts: Counter[str] = Counter()
    for key, count in identities.items():
        pod_counts[key.pod] += count
    placement = pod_placement(identities)
    dimensions = [_dimension("pod", pod_counts, dict.fromkeys(pod_counts, 1))]
    for name in ("node", "zone", "version"):
        counts: Counter[str] = Counter()
        pods: Counter[str] = Counter()
        for pod, count in pod_counts.items():
            group = getattr(placement[pod], name) or UNKNOWN
            counts[group] += count
            pods[group] += 1
        dimensions.append(_dimension(name, counts, pods))
    return tuple(dimensions)


# --- latency ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Latency:
    """Response times in seconds (nearest-rank percentiles over every HTTP response)."""

    p50: float
    p90: float
    p99: float
    max: float
    mean: float


def latency_summary(latencies: Sequence[float]) -> Latency | None:
    if not latencies:
        return None
    ordered = sorted(latencies)
    n = len(ordered)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * n) - 1)]

    return Latency(rank(50), rank(90), rank(99), ordered[-1], sum(ordered) / n)


# --- verdict ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome. ``result`` judges the spread; ``failures`` lists every failed check."""

    result: VerdictResult
    passed: bool
    exit_code: int
    summary: str
    failures: tuple[str, ...]


def judge(
    assessment: Assessment | None,
    requests: int,
    responses: int,
    errors: Mapping[ErrorKind, int],
    expect_pods: int | None = None,
    max_error_rate: float = 0.0,
    unreachable_reason: str | None = None,
    identity_hint: str | None = None,
) -> Verdict:
    """Combine the decision, the pods expected by name or number, and the error budget.

    Exit codes: 0 even, every expected pod answered, errors within budget; 1 uneven,
    inconclusive, no identity, an expected pod silent, or errors over budget; 3 nothing
    answered at all.
    """
    if responses == 0:
        reason = unreachable_reason or "no response to any request"
        said = Phrase.joined(": ", ["nothing answered", reason])  # keeps a Phrase's settings
        return Verdict("unreachable", False, 3, said, (reason,))

    failures: list[str] = []
    result: VerdictResult
    if assessment is None or not assessment.judged or not assessment.judged[0].total:
        result = "no identity"
        missing = "no response carried an identity (X-Pod-* headers or 'Pod:' lines)"
        failures.append(Phrase.joined(": ", [missing, identity_hint]) if identity_hint else missing)
    else:
        result = assessment.verdict
        failures.extend(f"{name} never answered" for name in assessment.missing)
        if assessment.unseen and expect_pods is not None:
            answered = expect_pods - assessment.unseen
            failures.append(f"only {answered} of {expect_pods} expected pods answered")
        if result == "uneven":
            failures.append(f"uneven: {assessment.reason}")
        elif result == "inconclusive":
            failures.append(f"inconclusive: {_inconclusive(assessment)}")

    failed = sum(errors.values())
    rate = failed / requests if requests else 0.0
    if rate > max_error_rate:
        kinds = ", ".join(f"{n} {k}" for k in ERROR_KINDS if (n := errors.get(k, 0)))
        failures.append(
            Phrase(
                f"{failed} of {requests} requests failed ({rate:.1%}: {kinds}); "
                f"budget {max_error_rate:.1%} (",
                Setting("max_error_rate"),
                ")",
            )
        )

    passed = not failures
    summary: str
    if passed and assessment is not None:
        summary = f"PASS: even: {_even_reason(assessment)}"
    else:
        summary = Phrase.joined("", ["FAIL: ", Phrase.joined("; ", failures)])
    return Verdict(result, passed, 0 if passed else 1, summary, tuple(failures))


def _fraction(share: float) -> str:
    for d in range(1, 13):
        if abs(share * d - round(share * d)) < 1e-9:
            return f"{round(share * d)}/{d}" if d > 1 else f"{share:.0%}"
    return f"{share:.1%}"


def _even_reason(assessment: Assessment) -> str:
    first = assessment.judged[0]
    expected = {round(g.expected, 12) for g in first.groups}
    tolerance = first.method.tolerance
    target = f"of {_fraction(expected.pop())}" if len(expected) == 1 else "of its expected share"
    dims = " and ".join(f"every {d.dimension}'s" for d in assessment.judged)
    confidence = f"{(1 - first.method.alpha) * 100:.10g}%"
    return (
        f"{dims} share is within ±{tolerance:.0%} {target} (simultaneous {confidence} "
        f"intervals over {first.total:,} {first.unit})"
    )


def _inconclusive(assessment: Assessment) -> str:
    text = assessment.reason
    if assessment.min_detectable_skew is not None:
        skew = assessment.min_detectable_skew
        text += f"; the smallest skew this run could have shown is ±{skew:.0%}"
    return text
