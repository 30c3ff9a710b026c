"""Counts -> the decision: which unit, which expected shares, which dimensions decide.

:func:`assess` turns an :class:`~podtally.verify.tally.Accumulator` into an :class:`Assessment`
with :func:`podtally.verify.decision.decide`, the statistical core:

- the unit (:func:`~podtally.verify.decision.choose_unit`): requests, or connections when a
  connection-level balancer pinned every kept-alive connection to one pod;
- the expected share of every pod: equal (over ``expect_pods``, or over the pods that answered),
  the ``expect_split`` weights when the split is by pod, else each group's weight shared evenly
  by the pods seen in it; a node, zone or version is then expected to get its pods' shares;
- the judged dimensions: the pod, and the split's field when it is not the pod. With two, each
  is judged at ``alpha / 2`` so that the verdict's error rate stays at most ``alpha``. The other
  dimensions are reported with the same kind of interval, as information.

The verdict: ``uneven`` if a judged dimension is uneven, ``even`` if every one is even, else
``inconclusive``. ``even`` and ``uneven`` exclude each other (see the decision package).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from podtally.verify.decision import UNSEEN, Decision, Mode, UnitChoice, Verdict, choose_unit
from podtally.verify.decision import decide as decide_one
from podtally.verify.options import VerifyOptions
from podtally.verify.tally import UNKNOWN, Accumulator, IdentityKey, pod_placement

JUDGED_FIELDS = ("pod", "node", "zone", "version")


@dataclass(frozen=True)
class Assessment:
    """The decision on a run so far: its verdict, and every dimension's intervals."""

    verdict: Verdict
    reason: str  # one line: the deciding dimension's reason
    mode: Mode
    unit: UnitChoice
    judged: tuple[Decision, ...]  # the dimensions the verdict is made of (pod first)
    shown: tuple[Decision, ...]  # every dimension (pod, node, zone, version), judged or not
    missing: tuple[str, ...]  # "pod web-c": expected, named, never answered
    unseen: int  # expect_pods counts this many pods no response named
    requests_needed: int | None  # units that would most likely decide it (inconclusive)
    min_detectable_skew: float | None  # smallest relative skew this run could have shown

    @property
    def decided(self) -> bool:
        return self.verdict != "inconclusive"

    @property
    def lone(self) -> bool:
        """One pod answered and nobody said how many to expect: nothing to compare, ever."""
        return (
            len(self.judged) == 1
            and len(self.judged[0].groups) == 1
            and self.judged[0].method.groups == 1
            and self.judged[0].groups[0].expected == 1.0
            and self.judged[0].verdict == "inconclusive"
        )


def _value(key: IdentityKey, field: str) -> str:
    value: str | None = getattr(key, field)
    return value if value else UNKNOWN


def unit_counts(acc: Accumulator, unit: UnitChoice) -> Counter[str]:
    """Units per pod: identified responses, or pinned connections."""
    counts: Counter[str] = Counter()
    if unit.unit == "connections":
        for pods in acc.pods_per_connection.values():
            if len(pods) == 1:
                counts[next(iter(pods))] += 1
        return counts
    for key, count in acc.identities.items():
        counts[key.pod] += count
    return counts


def pod_expectation(
    options: VerifyOptions, pods: Mapping[str, IdentityKey]
) -> tuple[dict[str, float] | None, int | None]:
    """``(expected weights per pod, expect_pods)`` as :func:`decide` takes them for the pod."""
    split = options.expect_split
    if split is None:
        return None, options.expect_pods
    if split.field == "pod":
        return dict(split.weights), None
    weights = dict(split.weights)
    members: dict[str, list[str]] = {}
    for pod, key in pods.items():
        members.setdefault(_value(key, split.field), []).append(pod)
    out: dict[str, float] = {}
    for group, names in members.items():
        if group in weights:
            out.update({pod: weights[group] / len(names) for pod in names})
    return out, None


def assess(
    acc: Accumulator, options: VerifyOptions, mode: Mode, judged_only: bool = False
) -> Assessment:
    """The decision on everything ``acc`` holds (``judged_only``: skip the informational
    dimensions, for the checks between batches)."""
    connections = {c: acc.requests_per_connection.get(c, 0) for c in acc.pods_per_connection}
    unit = choose_unit(acc.pods_per_connection, connections)
    pod_counts = unit_counts(acc, unit)
    placement = pod_placement(acc.identities)
    split = options.expect_split
    pod_weights, expect_pods = pod_expectation(options, placement)
    two = split is not None and split.field != "pod"
    alpha = options.alpha / 2 if two else options.alpha
    common = {"tolerance": options.tolerance, "mode": mode, "unit": unit.unit}

    judged: list[Decision] = []
    if pod_weights is None or pod_weights:
        judged.append(
            decide_one(
                pod_counts,
                expect_pods=expect_pods,
                expect_split=pod_weights,
                alpha=alpha,
                dimension="pod",
                **common,  # type: ignore[arg-type]
            )
        )
    if two and split is not None:
        judged.append(
            decide_one(
                _grouped(pod_counts, placement, split.field),
                expect_split=dict(split.weights),
                alpha=alpha,
                dimension=split.field,
                **common,  # type: ignore[arg-type]
            )
        )
    shown = list(judged)
    if not judged_only:
        # The other dimensions, as information: each group expected at its pods' shares.
        first = judged[0] if judged and judged[0].dimension == "pod" else None
        pod_shares = {g.name: g.expected for g in first.groups} if first else {}
        for field in JUDGED_FIELDS:
            if any(d.dimension == field for d in judged):
                continue
            expected: dict[str, float] = {}
            for pod, share in pod_shares.items():
                if share > 0 and pod in placement:
                    group = _value(placement[pod], field)
                    expected[group] = expected.get(group, 0.0) + share
            grouped = _grouped(pod_counts, placement, field)
            if len(grouped) < 2:  # one node (zone, version): nothing to compare or show
                continue
            shown.append(
                decide_one(
                    grouped,
                    expect_split=dict(expected) if expected else None,
                    alpha=options.alpha,
                    dimension=field,
                    **common,  # type: ignore[arg-type]
                )
            )
        shown.sort(key=lambda d: JUDGED_FIELDS.index(d.dimension))

    missing = tuple(
        f"{d.dimension} {name}"
        for d in judged
        for name in d.missing
        if not name.startswith(UNSEEN.split("{")[0])
    )
    unseen = sum(1 for d in judged for name in d.missing if name.startswith(UNSEEN.split("{")[0]))
    verdict, deciding = _combine(judged)
    needed = [d.requests_needed for d in judged if d.verdict == "inconclusive"]
    skews = [d.min_detectable_skew for d in judged if d.min_detectable_skew is not None]
    return Assessment(
        verdict=verdict,
        reason=deciding.reason if deciding is not None else "no pod answered",
        mode=mode,
        unit=unit,
        judged=tuple(judged),
        shown=tuple(shown),
        missing=missing,
        unseen=unseen,
        requests_needed=None
        if verdict != "inconclusive" or None in needed or not needed
        else max(n for n in needed if n is not None),
        min_detectable_skew=max(skews) if skews else None,
    )


def _grouped(
    counts: Mapping[str, int], placement: Mapping[str, IdentityKey], field: str
) -> Counter[str]:
    out: Counter[str] = Counter()
    for pod, count in counts.items():
        if pod in placement:
            out[_value(placement[pod], field)] += count
    return out


def _combine(judged: list[Decision]) -> tuple[Verdict, Decision | None]:
    if not judged:
        return "inconclusive", None
    for decision in judged:
        if decision.verdict == "uneven":
            return "uneven", decision
    if all(d.verdict == "even" for d in judged):
        return "even", judged[0]
    return "inconclusive", next(d for d in judged if d.verdict == "inconclusive")


def status_line(assessment: Assessment) -> str:
    """One short line for a progress display: the verdict so far and the pod intervals."""
    pod = next((d for d in assessment.judged if d.dimension == "pod"), None)
    groups = pod.groups if pod is not None else ()
    shown = " ".join(
        f"{g.name} {g.interval[0] * 100:.0f}-{g.interval[1] * 100:.0f}%" for g in groups[:4]
    )
    more = f" +{len(groups) - 4}" if len(groups) > 4 else ""
    return f"{assessment.verdict} ({assessment.unit.unit}): {shown}{more}"
