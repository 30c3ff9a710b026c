"""The decision: counts per group -> ``even`` | ``uneven`` | ``inconclusive``, with error rates.

Pure: no I/O, no clock, no printing. One call judges one dimension (pod, node, zone or version).

The rule. Every group has an expected share ``p0`` and a tolerance band
``[p0 * (1 - tolerance), p0 * (1 + tolerance)]``. Every group also gets a confidence interval for
its true share, simultaneous over the ``k`` groups judged (union bound: each at ``alpha / k``).

- ``even``: every group's interval lies inside its band;
- ``uneven``: some group's interval lies wholly outside its band;
- ``inconclusive``: neither (yet).

"inside" and "wholly outside" exclude each other, so ``even`` and ``uneven`` never both hold. If
the intervals cover the true shares (probability at least ``1 - alpha``), ``even`` is only said
when every true share is inside its band and ``uneven`` only when some true share is outside its
band: each verdict is wrong with probability at most ``alpha``.

Two interval methods:

- ``fixed`` (judged once, at a sample size chosen in advance): Clopper-Pearson, exact binomial.
  Its coverage is at least the nominal level for every true share and every ``n`` (Wilson's dips
  below it for some), so the stated error rate is a guarantee, not an approximation.
- ``sequential`` (anytime-valid: the caller may look after every batch and stop when it likes): the
  beta-binomial mixture confidence sequence (Robbins 1970; Howard et al. 2021, section on conjugate
  mixtures). For a Beta(a, b) prior, ``M_n(p) = B(a + S, b + n - S) / (B(a, b) p^S (1-p)^(n-S))``
  is a nonnegative martingale under the true share ``p`` with ``M_0 = 1``; by Ville's inequality it
  ever reaches ``1 / alpha`` with probability at most ``alpha``. So the set
  ``{p : M_n(p) < 1 / alpha}``, an interval, holds the true share at every ``n`` at once. The
  prior is fixed before any data: centred on the expected share, with a strength tuned to the
  sample size at which the tolerance could first be shown (:func:`prior_strength`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray
from scipy.special import betaincinv, betaln
from scipy.stats import norm

from podtally.errors import UsageError

Verdict = Literal["even", "uneven", "inconclusive"]
Mode = Literal["fixed", "sequential"]
GroupState = Literal["inside", "outside", "undecided"]
Unit = Literal["requests", "connections"]
FloatArray: TypeAlias = NDArray[np.float64]

MODES: tuple[Mode, ...] = ("fixed", "sequential")
DEFAULT_TOLERANCE = 0.2
DEFAULT_ALPHA = 0.001
METHOD_NAMES: dict[Mode, str] = {
    "fixed": "clopper-pearson",
    "sequential": "beta-binomial-mixture-cs",
}
CORRECTION = "bonferroni"
MAX_NEEDED = 100_000_000  # beyond this, requests_needed is None ("not in any practical run")
_NEWTON_STEPS = 9  # Newton from outside: 8 steps reach 1e-11 for any n <= 20,000 (checked)
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


@dataclass(frozen=True)
class UnitChoice:
    """Which sampling unit the decision counts, and why (for the report)."""

    unit: Unit
    pinned: bool
    connections: int
    reason: str


# --- the sampling unit --------------------------------------------------------------------------
def choose_unit(
    pods_per_connection: Mapping[int, Collection[str]],
    requests_per_connection: Mapping[int, int],
) -> UnitChoice:
    """Requests, or connections when a connection-level balancer pins them.

    Pinned means: no connection saw more than one pod, and some connection carried more than one
    request. Then the requests on a connection are one draw, and the connection is the unit. If any
    connection saw two pods, the balancer chooses per request and requests are the unit.
    """
    connections = len(pods_per_connection)
    mixed = sum(1 for pods in pods_per_connection.values() if len(pods) > 1)
    reused = sum(1 for count in requests_per_connection.values() if count > 1)
    if mixed:
        return UnitChoice(
            "requests",
            False,
            connections,
            f"{mixed} of {connections} connections saw more than one pod: balanced per request",
        )
    if reused:
        return UnitChoice(
            "connections",
            True,
            connections,
            f"each of {connections} connections stayed on one pod while {reused} carried more "
            "than one request: balanced per connection",
        )
    return UnitChoice(
        "requests",
        False,
        connections,
        "one request per connection: requests and connections are the same draws",
    )


# --- intervals (vectorised: the simulations call these on whole arrays) -------------------------
@functools.lru_cache(maxsize=1024)
def prior_strength(expected: float, tolerance: float, alpha_each: float) -> float:
    """Strength ``a + b`` of the Beta prior for the sequential interval, fixed before any data.

    ``n*``: the sample size at which a fixed-n normal interval at ``alpha_each`` would first fit in
    the band, ``z^2 (1 - p0) / (tolerance^2 p0)``. For the normal mixture the width at ``n`` is
    smallest when the prior precision is ``n / x`` with ``x - log(1 + x) = 2 log(1 / alpha)``
    (Howard et al. 2021, sec. 3.5); the beta mixture is its binomial analogue, so ``n* / x``.
    """
    p0 = min(max(expected, 1e-6), 1 - 1e-6)
    z = float(norm.isf(alpha_each / 2))
    n_star = z * z * (1 - p0) / (tolerance * tolerance * p0)
    target = 2 * math.log(1 / alpha_each)
    x = target
    for _ in range(50):
        x = target + math.log1p(x)
    return max(2.0, n_star / x)


def _prior(expected: FloatArray, strength: FloatArray) -> tuple[FloatArray, FloatArray]:
    # Centre on the expected share; a group nobody expected (p0 = 0) gets a uniform prior.
    unexpected = expected <= 0
    p0 = np.clip(np.where(unexpected, 0.5, expected), 1e-6, 1 - 1e-6)
    c = np.where(unexpected, 2.0, strength)
    return np.maximum(c * p0, 0.5), np.maximum(c * (1 - p0), 0.5)


def clopper_pearson(
    counts: FloatArray, totals: FloatArray, alpha_each: float
) -> tuple[FloatArray, FloatArray]:
    """Exact two-sided binomial interval at level ``1 - alpha_each`` (arrays broadcast)."""
    s = np.asarray(counts, dtype=np.float64)
    f = np.asarray(totals, dtype=np.float64) - s
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(s > 0, betaincinv(np.maximum(s, 1e-300), f + 1, alpha_each / 2), 0.0)
        hi = np.where(f > 0, betaincinv(s + 1, np.maximum(f, 1e-300), 1 - alpha_each / 2), 1.0)
    return lo, hi


def mixture_sequence(
    counts: FloatArray,
    totals: FloatArray,
    alpha_each: float,
    prior_a: FloatArray,
    prior_b: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Beta-binomial mixture confidence sequence at ``1 - alpha_each``, valid at every ``n``.

    The interval is ``{p : S log p + F log(1 - p) > log B(a+S, b+F) - log B(a, b) - log(1/alpha)}``.
    Its upper end is the lower end of the mirrored problem (``1 - p``, ``S`` and ``F`` swapped),
    so one root finder serves both ends, on the whole array at once.
    """
    s, n, a, b = np.broadcast_arrays(
        np.asarray(counts, dtype=np.float64),
        np.asarray(totals, dtype=np.float64),
        np.asarray(prior_a, dtype=np.float64),
        np.asarray(prior_b, dtype=np.float64),
    )
    f = n - s
    level = betaln(a + s, b + f) - betaln(a, b) - math.log(1 / alpha_each)
    ends = _lower_end(
        np.concatenate([s.ravel(), f.ravel()]),
        np.concatenate([f.ravel(), s.ravel()]),
        np.concatenate([level.ravel(), level.ravel()]),
    )
    size = s.size
    return ends[:size].reshape(s.shape), 1 - ends[size:].reshape(s.shape)


def _lower_end(s: FloatArray, f: FloatArray, level: FloatArray) -> FloatArray:
    """Lower end of ``{p : S log p + F log(1 - p) > level}``, from outside the set (conservative).

    In ``u = log p`` the function ``h(u) = S u + F log(1 - e^u) - level`` is concave, so Newton's
    method started left of the root climbs to it without ever stepping inside the set: every
    iterate is a valid (slightly wide) lower end, and a few steps reach machine precision.
    With ``S = 0`` the set reaches down to 0 (``level < 0`` always holds there).
    """
    positive = s > 0
    n = s + f
    centre = np.where(positive, s / np.maximum(n, 1), 1.0)
    u = np.log(centre) - 50.0

    def h(u: FloatArray) -> FloatArray:
        return np.asarray(s * u + f * np.log(-np.expm1(u)) - level)

    start_ok = h(u) <= 0
    for _ in range(_NEWTON_STEPS):
        p = np.exp(u)
        slope = s - f * p / (-np.expm1(u))
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(slope > 0, -h(u) / slope, 0.0)
        u = u + np.maximum(step, 0.0)
    return np.where(positive & start_ok, np.exp(u), 0.0)


def bounds(
    counts: FloatArray,
    totals: FloatArray,
    *,
    mode: Mode,
    alpha_each: float,
    expected: FloatArray,
    tolerance: float,
) -> tuple[FloatArray, FloatArray]:
    """Interval ends for every group; ``counts`` shape ``(..., k)``, ``totals`` broadcastable."""
    if mode == "fixed":
        return clopper_pearson(counts, totals, alpha_each)
    strength = np.array([prior_strength(float(p), tolerance, alpha_each) for p in expected.ravel()])
    a, b = _prior(expected, strength.reshape(expected.shape))
    return mixture_sequence(counts, totals, alpha_each, a, b)


def tolerance_band(expected: FloatArray, tolerance: float) -> tuple[FloatArray, FloatArray]:
    """``[p0 (1 - tolerance), p0 (1 + tolerance)]`` clipped to [0, 1]."""
    return expected * (1 - tolerance), np.minimum(expected * (1 + tolerance), 1.0)


def classify(
    lo: FloatArray, hi: FloatArray, band_lo: FloatArray, band_hi: FloatArray
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Per group: (inside its band, wholly outside its band). Never both (lo <= hi)."""
    inside = (lo >= band_lo) & (hi <= band_hi)
    outside = (hi < band_lo) | (lo > band_hi)
    return inside, outside


def verdicts(inside: NDArray[np.bool_], outside: NDArray[np.bool_]) -> NDArray[np.int8]:
    """Along the last axis: 1 even, -1 uneven, 0 inconclusive (for simulations)."""
    even = inside.all(axis=-1)
    uneven = outside.any(axis=-1)
    return np.where(even, 1, np.where(uneven, -1, 0)).astype(np.int8)


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
            self.a, self.b = _prior(expected, strength)

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
