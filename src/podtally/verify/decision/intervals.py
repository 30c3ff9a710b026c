"""Confidence intervals for shares, vectorised: the decision and the simulations both call these.

``fixed``: Clopper-Pearson. ``sequential``: the beta-binomial mixture confidence sequence. See the
package docstring for the reasoning, and docs/verify.md ("How the spread is judged").
"""

from __future__ import annotations

import functools
import math
from typing import Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray
from scipy.special import betaincinv, betaln, ndtri

Mode = Literal["fixed", "sequential"]
FloatArray: TypeAlias = NDArray[np.float64]

MODES: tuple[Mode, ...] = ("fixed", "sequential")
NEWTON_STEPS = 9  # Newton from outside: 8 steps reach 1e-11 for any n <= 20,000 (checked)


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
    z = float(-ndtri(alpha_each / 2))  # the normal's upper alpha/2 point (scipy.stats, unloaded)
    n_star = z * z * (1 - p0) / (tolerance * tolerance * p0)
    target = 2 * math.log(1 / alpha_each)
    x = target
    for _ in range(50):
        x = target + math.log1p(x)
    return max(2.0, n_star / x)


def beta_prior(expected: FloatArray, strength: FloatArray) -> tuple[FloatArray, FloatArray]:
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
    for _ in range(NEWTON_STEPS):
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
    a, b = beta_prior(expected, strength.reshape(expected.shape))
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


def equal_split_verdicts(
    counts: FloatArray, *, mode: Mode, alpha: float, tolerance: float
) -> NDArray[np.int8]:
    """The verdict codes of :func:`verdicts` for counts (last axis: the k groups) judged against an
    equal split, with the union bound over the k groups: the vectorised rule that :func:`decide`
    applies one run at a time, for simulations and benchmarks over many runs and looks at once."""
    k = counts.shape[-1]
    expected = np.full(k, 1 / k)
    lo, hi = bounds(
        counts,
        counts.sum(axis=-1, keepdims=True),
        mode=mode,
        alpha_each=alpha / k,
        expected=expected,
        tolerance=tolerance,
    )
    return verdicts(*classify(lo, hi, *tolerance_band(expected, tolerance)))
