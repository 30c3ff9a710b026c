"""``decide()``: one dimension's counts, expected shares, tolerance and alpha -> a Decision."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from podtally.errors import UsageError
from podtally.verify.decision.intervals import (
    MODES,
    FloatArray,
    Mode,
    beta_prior,
    classify,
    clopper_pearson,
    mixture_sequence,
    prior_strength,
    tolerance_band,
)
from podtally.verify.decision.unit import Unit

Verdict = Literal["even", "uneven", "inconclusive"]
GroupState = Literal["inside", "outside", "undecided"]

DEFAULT_TOLERANCE = 0.2
DEFAULT_ALPHA = 0.001
METHOD_NAMES: dict[Mode, str] = {
    "fixed": "clopper-pearson",
    "sequential": "beta-binomial-mixture-cs",
}
CORRECTION = "bonferroni"
MAX_NEEDED = 100_000_000  # beyond this, requests_needed is None ("not in any practical run")
UNSEEN = "(no answer {})"  # name for a group expect_pods counts but no response named


# --- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupDecision:
    """One group (a pod, node, zone or version) as judged."""

    name: str
    count: int
    share: float  # count / total (0 when total is 0)
    expected: float  # expected share; 0 for a group nobody expected
    band: tuple[float, float]  # tolerance band for the share
    interval: tuple[float, float]  # simultaneous confidence interval for the true share
    state: GroupState

    @property
    def missing(self) -> bool:
        """Expected, but never answered."""
        return self.expected > 0 and self.count == 0


@dataclass(frozen=True)
class Method:
    """How the decision was made, for the report and JSON."""

    name: str  # "clopper-pearson" | "beta-binomial-mixture-cs"
    mode: Mode
    alpha: float  # the error rate of each verdict
    tolerance: float
    groups: int  # k, the groups the union bound is over
    alpha_per_group: float  # alpha / k
    correction: str  # "bonferroni"
    prior_strength: tuple[float, ...] | None  # sequential: Beta prior a + b per group


@dataclass(frozen=True)
class Decision:
    """The verdict on one dimension, with everything a report needs."""

    verdict: Verdict
    reason: str  # one line, no trailing period
    dimension: str
    unit: Unit
    total: int  # units judged
    groups: tuple[GroupDecision, ...]
    missing: tuple[str, ...]  # expected groups with zero count (placeholders for unnamed ones)
    unexpected: tuple[str, ...]  # groups that answered but nobody expected (expected share 0)
    requests_needed: int | None  # units that would most likely decide it; None: never / decided
    min_detectable_skew: float | None  # smallest relative deviation that would show uneven now
    method: Method

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON (tuples become lists)."""
        data = asdict(self)
        data["groups"] = [{**asdict(group), "missing": group.missing} for group in self.groups]
        return data


# --- the decision ------------------------------------------------------------------------------
def _check(
    tolerance: float, alpha: float, mode: str, expect_pods: int | None, split: object
) -> None:
    if not (isinstance(tolerance, int | float) and 0 < tolerance < 1):
        raise UsageError("must be within (0, 1)", setting="tolerance", value=tolerance)
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise UsageError("must be within (0, 1)", setting="alpha", value=alpha)
    if mode not in MODES:
        raise UsageError("must be fixed or sequential", setting="mode", value=mode)
    if expect_pods is not None and split is not None:
        raise UsageError("give expect_pods or expect_split, not both", setting="expect_split")
    if expect_pods is not None and (
        isinstance(expect_pods, bool) or not isinstance(expect_pods, int) or expect_pods < 1
    ):
        raise UsageError(
            "must be a positive whole number", setting="expect_pods", value=expect_pods
        )


def _expectation(
    counts: Mapping[str, int],
    expect_pods: int | None,
    expect_split: Mapping[str, float] | None,
) -> tuple[list[str], list[int], list[float]]:
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UsageError(f"count of {name!r} must be a whole number >= 0", setting="counts")
    if expect_split is not None:
        if not expect_split:
            raise UsageError("names no group", setting="expect_split")
        for name, weight in expect_split.items():
            if not (isinstance(weight, int | float) and not isinstance(weight, bool)) or not (
                0 < weight < math.inf
            ):
                raise UsageError(
                    f"weight of {name!r} must be a positive number",
                    setting="expect_split",
                    value=weight,
                )
        weights = sum(expect_split.values())
        names = list(expect_split)
        shares = [expect_split[name] / weights for name in names]
        extra = sorted(name for name, count in counts.items() if count > 0 and name not in names)
        names += extra
        shares += [0.0] * len(extra)
        return names, [counts.get(name, 0) for name in names], shares
    seen = sorted(name for name, count in counts.items() if count > 0)
    if expect_pods is None:
        return seen, [counts[name] for name in seen], [1 / len(seen)] * len(seen) if seen else []
    # a name the caller counted at zero is a better name for a silent group than a placeholder
    silent = sorted(name for name, count in counts.items() if count == 0)
    wanted = max(0, expect_pods - len(seen))
    silent += [UNSEEN.format(i + 1) for i in range(wanted - len(silent))]
    unseen = silent[:wanted]
    names = seen + unseen
    # more groups than expected: the first expect_pods (largest counts) are expected, the rest not
    by_count = sorted(seen, key=lambda name: (-counts[name], name))
    expected_names = set(by_count[:expect_pods]) | set(unseen)
    shares = [1 / expect_pods if name in expected_names else 0.0 for name in names]
    return names, [counts.get(name, 0) for name in names], shares


def decide(
    counts: Mapping[str, int],
    *,
    expect_pods: int | None = None,
    expect_split: Mapping[str, float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    alpha: float = DEFAULT_ALPHA,
    mode: Mode = "fixed",
    unit: Unit = "requests",
    dimension: str = "pod",
) -> Decision:
    """Judge one dimension's counts against the expected shares.

    ``counts``: units per group (requests, or connections when pinned: see :func:`choose_unit`).
    Expected shares: ``expect_split`` (name -> relative weight), else ``expect_pods`` groups
    equally, else equal over the groups that answered. A group that answered but is not in
    ``expect_split`` is expected at share 0 (any share it is shown to have makes the run uneven).
    """
    _check(tolerance, alpha, mode, expect_pods, expect_split)
    names, group_counts, shares = _expectation(counts, expect_pods, expect_split)
    k = len(names)
    total = int(sum(group_counts))
    alpha_each = alpha / max(k, 1)
    method = Method(
        name=METHOD_NAMES[mode],
        mode=mode,
        alpha=alpha,
        tolerance=tolerance,
        groups=k,
        alpha_per_group=alpha_each,
        correction=CORRECTION,
        prior_strength=tuple(
            prior_strength(p, tolerance, alpha_each) if p > 0 else 2.0 for p in shares
        )
        if mode == "sequential"
        else None,
    )
    if k == 0:
        return Decision(
            "inconclusive",
            f"no {dimension} answered",
            dimension,
            unit,
            0,
            (),
            (),
            (),
            None,
            None,
            method,
        )
    expected = np.array(shares)
    observed = np.array(group_counts, dtype=np.float64)
    judge = _Judge(mode, alpha_each, expected, tolerance)
    lo, hi = judge.bounds(observed, float(total))
    inside, outside = classify(lo, hi, judge.band_lo, judge.band_hi)
    missing = tuple(
        n for n, c, p in zip(names, group_counts, shares, strict=True) if p > 0 and c == 0
    )
    unexpected = tuple(n for n, p in zip(names, shares, strict=True) if p == 0)
    groups = tuple(
        GroupDecision(
            name=names[i],
            count=group_counts[i],
            share=group_counts[i] / total if total else 0.0,
            expected=shares[i],
            band=(float(judge.band_lo[i]), float(judge.band_hi[i])),
            interval=(float(lo[i]), float(hi[i])),
            state="inside" if inside[i] else "outside" if outside[i] else "undecided",
        )
        for i in range(k)
    )
    lone = k == 1 and expect_pods is None and expect_split is None
    if lone:
        verdict: Verdict = "inconclusive"
        reason = (
            f"only one {dimension} ({names[0]}) answered and one was not expected: "
            "nothing to compare"
        )
        needed = None
    elif outside.any():
        verdict = "uneven"
        reason = _uneven_reason(groups, dimension, alpha)
        needed = None
    elif inside.all():
        verdict = "even"
        reason = (
            f"every {dimension}'s share is within {tolerance:.0%} of its expected share "
            f"({_confidence(alpha)} simultaneous intervals, {total:,} {unit})"
        )
        needed = None
    else:
        verdict = "inconclusive"
        needed = judge.needed(observed, total)
        undecided = sum(1 for g in groups if g.state == "undecided")
        reason = f"{undecided} of {k} {dimension}s not yet shown inside or outside their band"
        reason += f" after {total:,} {unit}"
        if missing:
            reason += f"; no answer from {', '.join(missing)}"
        reason += f"; about {needed:,} would most likely decide" if needed else ""
    return Decision(
        verdict=verdict,
        reason=reason,
        dimension=dimension,
        unit=unit,
        total=total,
        groups=groups,
        missing=missing,
        unexpected=unexpected,
        requests_needed=needed,
        min_detectable_skew=None if lone else judge.min_skew(total),
        method=method,
    )


def _confidence(alpha: float) -> str:
    return f"{(1 - alpha) * 100:.10g}%"


def _uneven_reason(groups: tuple[GroupDecision, ...], dimension: str, alpha: float) -> str:
    # a group that never answered says most; else the one farthest outside its band
    worst = max(
        (g for g in groups if g.state == "outside"),
        key=lambda g: (g.missing, max(g.band[0] - g.interval[1], g.interval[0] - g.band[1])),
    )
    low, high = worst.interval
    where = f"{worst.share:.1%} (interval {low:.1%}-{high:.1%})"
    if worst.missing:
        head = f"{dimension} {worst.name} never answered: its share {where}"
    elif worst.expected == 0:
        head = f"{dimension} {worst.name} was not expected but took {where}"
    else:
        head = f"{dimension} {worst.name}'s share {where}"
    return (
        f"{head} lies outside its band {worst.band[0]:.1%}-{worst.band[1]:.1%} "
        f"({_confidence(alpha)} simultaneous intervals)"
    )


class _Judge:
    """The fixed parts of one decision (method, bands), with projections to other sample sizes."""

    def __init__(self, mode: Mode, alpha_each: float, expected: FloatArray, tolerance: float):
        self.mode = mode
        self.alpha_each = alpha_each
        self.expected = expected
        self.tolerance = tolerance
        self.band_lo, self.band_hi = tolerance_band(expected, tolerance)
        if mode == "sequential":
            strength = np.array([prior_strength(float(p), tolerance, alpha_each) for p in expected])
            self.a, self.b = beta_prior(expected, strength)

    def bounds(
        self, counts: FloatArray, total: float | FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        totals = np.asarray(total, dtype=np.float64)
        if self.mode == "fixed":
            return clopper_pearson(counts, totals, self.alpha_each)
        return mixture_sequence(counts, totals, self.alpha_each, self.a, self.b)

    def _decided(self, shares: FloatArray, n: float) -> bool:
        lo, hi = self.bounds(shares * n, n)
        inside, outside = classify(lo, hi, self.band_lo, self.band_hi)
        return bool(inside.all() or outside.any())

    def needed(self, observed: FloatArray, total: int) -> int | None:
        """Smallest n (about 5%) at which the current shares, held, would give a verdict."""
        shares = observed / total if total else self.expected
        if not self._decided(shares, float(MAX_NEEDED)):
            return None
        low, high = float(max(total, 1)), float(MAX_NEEDED)
        if self._decided(shares, low):
            return max(total, 1)
        while high / low > 1.05:  # bisection on log n: about 30 interval calls at most
            mid = math.sqrt(low * high)
            if self._decided(shares, mid):
                high = mid
            else:
                low = mid
        return math.ceil(high)

    def min_skew(self, total: int) -> float | None:
        """Smallest relative deviation of one group's share that would be shown outside at n.

        A share ``p0 (1 + d)`` is shown above its band when its interval's lower end clears
        ``p0 (1 + tolerance)``: ``d = tolerance + reach / p0``, with ``reach`` the distance from
        the share down to that end. ``reach`` barely changes with ``d``, so a few fixed-point
        steps settle it (to well under 1%); downward likewise.
        """
        keep = self.expected > 0
        if total == 0 or not keep.any():
            return None
        p0 = np.concatenate([self.expected[keep], self.expected[keep]])
        sign = np.repeat([1.0, -1.0], int(keep.sum()))
        d = np.full_like(p0, self.tolerance)
        n = float(total)
        for _ in range(4):
            share = np.clip(p0 * (1 + sign * d), 0.0, 1.0)
            lo, hi = self._bounds_subset(share * n, n, np.concatenate([keep, keep]))
            reach = np.where(sign > 0, share - lo, hi - share)
            d = self.tolerance + reach / p0
        feasible = np.where(sign > 0, p0 * (1 + d) <= 1, d <= 1)
        return float(d[feasible].min()) if feasible.any() else None

    def _bounds_subset(
        self, counts: FloatArray, n: float, keep: NDArray[np.bool_]
    ) -> tuple[FloatArray, FloatArray]:
        totals = np.asarray(n, dtype=np.float64)
        if self.mode == "fixed":
            return clopper_pearson(counts, totals, self.alpha_each)
        a, b = np.concatenate([self.a, self.a]), np.concatenate([self.b, self.b])
        return mixture_sequence(counts, totals, self.alpha_each, a[keep], b[keep])
