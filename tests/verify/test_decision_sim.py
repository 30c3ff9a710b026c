"""The decision's error rates, by simulation: seeded numpy balancers, seconds not minutes.

alpha is 0.05 here so that rates are measurable with a few hundred runs (the guarantee holds for
any alpha). A rate "is at most alpha" when the count of wrong verdicts does not exceed the 99.9%
quantile of Binomial(runs, alpha): a method whose true rate is alpha fails this check one time in
a thousand. Each check is shown to catch a naive method: a fixed-n interval re-tested after
every batch (optional stopping).

Scenarios (expected shares equal over the groups):
- EVEN: three pods at exactly 1/3. A wrong verdict is `uneven`. Tolerance 0.05 makes the band
  narrow, where a false `uneven` is easiest; 0.2 is the default.
- SKEW_2T: one pod at 1/3 * (1 + 2 * 0.2), two at 1/3 * 0.8: a skew of twice the tolerance.
- EDGE: two pods at 60/40 with tolerance 0.2: each share exactly on its band's edge, a skew of
  exactly the tolerance, the hardest case for a false `even`.
Looks: every 10 units, up to 3,000.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.stats import binom, norm

from podtally.verify.decision import (
    Mode,
    bounds,
    classify,
    decide,
    equal_split_verdicts,
    tolerance_band,
    verdicts,
)

ALPHA = 0.05
RUNS = 600
BATCH = 10
LOOKS = 300
EVEN, UNEVEN = 1, -1
LIMIT = int(binom.ppf(0.999, RUNS, ALPHA))  # 48 of 600: 8%

Counts = NDArray[np.float64]


def paths(seed: int, truth: list[float]) -> Counts:
    """Cumulative counts after every batch: shape (runs, looks, groups)."""
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(BATCH, truth, size=(RUNS, LOOKS))
    return np.cumsum(draws, axis=1).astype(np.float64)


def method(counts: Counts, tolerance: float, mode: Mode) -> NDArray[np.int8]:
    """The module's verdicts (1 even, -1 uneven, 0 inconclusive) at every look."""
    return equal_split_verdicts(counts, mode=mode, alpha=ALPHA, tolerance=tolerance)


def naive(counts: Counts, tolerance: float) -> NDArray[np.int8]:
    """The naive method: a fixed-n (Wald) interval, as if each look were the only one."""
    k = counts.shape[-1]
    expected = np.full(k, 1 / k)
    n = counts.sum(axis=-1, keepdims=True)
    share = counts / n
    z = norm.isf(ALPHA / k / 2)  # simultaneous over the groups, like the module
    half = z * np.sqrt(share * (1 - share) / n)
    band_lo, band_hi = tolerance_band(expected, tolerance)
    inside = (share - half >= band_lo) & (share + half <= band_hi)
    outside = (share + half < band_lo) | (share - half > band_hi)
    return verdicts(inside, outside)


def ever(found: NDArray[np.int8], verdict: int) -> int:
    """Runs that said ``verdict`` at some look: the worst stopping rule for that verdict."""
    return int((found == verdict).any(axis=-1).sum())


def at_end(found: NDArray[np.int8], verdict: int) -> int:
    return int((found[:, -1] == verdict).sum())


@pytest.fixture(scope="module")
def even3() -> Counts:
    return paths(101, [1 / 3] * 3)


@pytest.fixture(scope="module")
def skew_2t() -> Counts:
    return paths(202, [1 / 3 * 1.4, 1 / 3 * 0.8, 1 / 3 * 0.8])


@pytest.fixture(scope="module")
def edge() -> Counts:
    return paths(303, [0.6, 0.4])


# --- (a) an even balancer is rarely called uneven -------------------------------------------------
def test_even_balancer_judged_once_is_rarely_uneven(even3: Counts) -> None:
    for tolerance in (0.05, 0.2):
        assert at_end(method(even3, tolerance, "fixed"), UNEVEN) <= LIMIT
    # the same check catches the fixed-n method misused: re-tested after every batch
    assert ever(naive(even3, 0.05), UNEVEN) > LIMIT


def test_even_balancer_looked_at_every_batch_is_rarely_uneven(even3: Counts) -> None:
    for tolerance in (0.05, 0.2):
        assert ever(method(even3, tolerance, "sequential"), UNEVEN) <= LIMIT
    # the check catches a fixed-n interval re-tested after every batch
    assert ever(naive(even3, 0.05), UNEVEN) > LIMIT


# --- (b) a skewed balancer is rarely called even --------------------------------------------------
def test_skewed_balancer_judged_once_is_rarely_even(skew_2t: Counts, edge: Counts) -> None:
    assert at_end(method(skew_2t, 0.2, "fixed"), EVEN) <= LIMIT
    assert at_end(method(edge, 0.2, "fixed"), EVEN) <= LIMIT
    # the same check catches the fixed-n method misused: re-tested after every batch
    assert ever(naive(edge, 0.2), EVEN) > LIMIT


def test_skewed_balancer_looked_at_every_batch_is_rarely_even(
    skew_2t: Counts, edge: Counts
) -> None:
    assert ever(method(skew_2t, 0.2, "sequential"), EVEN) <= LIMIT
    assert ever(method(edge, 0.2, "sequential"), EVEN) <= LIMIT
    assert ever(naive(edge, 0.2), EVEN) > LIMIT


# --- (c) optional stopping: stop at the first verdict, as `verify` does ---
def first_verdict(found: NDArray[np.int8]) -> NDArray[np.int8]:
    decided = found != 0
    look = np.argmax(decided, axis=-1)
    return cast(
        NDArray[np.int8], np.where(decided.any(axis=-1), found[np.arange(len(found)), look], 0)
    )


def test_stopping_at_the_first_verdict_keeps_both_error_rates(
    even3: Counts, skew_2t: Counts, edge: Counts
) -> None:
    assert int((first_verdict(method(even3, 0.05, "sequential")) == UNEVEN).sum()) <= LIMIT
    assert int((first_verdict(method(edge, 0.2, "sequential")) == EVEN).sum()) <= LIMIT
    assert int((first_verdict(method(skew_2t, 0.2, "sequential")) == EVEN).sum()) <= LIMIT
    # the naive method fails the same check in both directions
    assert int((first_verdict(naive(even3, 0.05)) == UNEVEN).sum()) > LIMIT
    assert int((first_verdict(naive(edge, 0.2)) == EVEN).sum()) > LIMIT
    # and the sequential method does decide: an even balancer is mostly called even by 3,000
    assert int((first_verdict(method(even3, 0.2, "sequential")) == EVEN).sum()) > RUNS * 0.9


def test_decide_agrees_with_the_vectorised_core(even3: Counts, edge: Counts) -> None:
    rng = np.random.default_rng(9)
    for counts, tolerance in ((even3, 0.05), (even3, 0.2), (edge, 0.2)):
        rows = counts[rng.integers(0, RUNS, 10), rng.integers(0, LOOKS, 10)]
        for mode in cast(tuple[Mode, ...], ("fixed", "sequential")):
            found = method(rows, tolerance, mode)
            for row, code in zip(rows, found, strict=True):
                decision = decide(
                    {f"g{i}": int(c) for i, c in enumerate(row)},
                    expect_pods=len(row),
                    tolerance=tolerance,
                    alpha=ALPHA,
                    mode=mode,
                )
                assert {"even": EVEN, "uneven": UNEVEN, "inconclusive": 0}[decision.verdict] == code


# --- (d) a deterministic round robin is shown even, at a known count ---
def test_round_robin_of_three_is_even_within_1049_requests_when_looked_at_every_request() -> None:
    # alpha 0.001, tolerance 0.2, sequential (anytime-valid): first even at 1,029 requests and
    # even at every request from 1,049 on (fixed n: 699, in test_decision.py).
    n = np.arange(1, 5001)
    counts = np.stack([(n + 2 - i) // 3 for i in range(3)], axis=-1).astype(np.float64)
    expected = np.full(3, 1 / 3)
    lo, hi = bounds(
        counts,
        n[:, None].astype(np.float64),
        mode="sequential",
        alpha_each=0.001 / 3,
        expected=expected,
        tolerance=0.2,
    )
    found = verdicts(*classify(lo, hi, *tolerance_band(expected, 0.2)))
    assert int(n[np.argmax(found == EVEN)]) == 1029
    assert int(n[found != EVEN].max()) + 1 == 1049
    assert not (found == UNEVEN).any()
