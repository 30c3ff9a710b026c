"""The decision layer with fixed counts: the rule, the edge cases, the unit, bad input.

Pure computation, no network. The statistical guarantees are in test_decision_sim.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import betaln
from scipy.stats import binomtest

from podtally.errors import UsageError
from podtally.verify.decision import (
    MODES,
    UNSEEN,
    bounds,
    choose_unit,
    classify,
    clopper_pearson,
    decide,
    mixture_sequence,
    tolerance_band,
    verdicts,
)


def round_robin(n: int, k: int) -> dict[str, int]:
    return {f"pod-{i}": (n + k - 1 - i) // k for i in range(k)}


# --- the rule -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fixed", "sequential"])
def test_even_and_uneven_never_both_hold(mode: str) -> None:
    # Every split of up to 60 units over 3 groups (vectorised), then a sample through decide():
    # a group is never both inside and wholly outside its band, every interval holds the observed
    # share, and the verdict follows the group states.
    splits = np.array(
        [(a, b, t - a - b) for t in range(61) for a in range(t + 1) for b in range(t + 1 - a)],
        dtype=np.float64,
    )
    expected = np.full(3, 1 / 3)
    for tolerance in (0.05, 0.2, 0.9):
        lo, hi = bounds(
            splits,
            splits.sum(axis=1, keepdims=True),
            mode=mode,  # type: ignore[arg-type]
            alpha_each=0.05 / 3,
            expected=expected,
            tolerance=tolerance,
        )
        inside, outside = classify(lo, hi, *tolerance_band(expected, tolerance))
        assert not (inside & outside).any()
        verdict = verdicts(inside, outside)
        assert not (inside.all(axis=1) & outside.any(axis=1)).any()
        assert 0 in verdict and (-1 in verdict or mode == "sequential")
    rng = np.random.default_rng(11)
    cases = [tuple(int(x) for x in rng.multinomial(n, [0.4, 0.3, 0.3])) for n in range(0, 3000, 30)]
    for counts in cases:
        decision = decide(
            {f"g{i}": c for i, c in enumerate(counts)},
            expect_pods=3,
            alpha=0.05,
            mode=mode,  # type: ignore[arg-type]
        )
        states = [g.state for g in decision.groups]
        for g in decision.groups:
            lo_g, hi_g = g.interval
            assert not (
                g.band[0] <= lo_g and hi_g <= g.band[1] and (hi_g < g.band[0] or lo_g > g.band[1])
            )
            assert lo_g <= g.share <= hi_g
        want = (
            "uneven"
            if "outside" in states
            else "even"
            if all(s == "inside" for s in states)
            else "inconclusive"
        )
        assert decision.verdict == want, counts


def test_classify_is_exclusive_for_any_interval() -> None:
    rng = np.random.default_rng(3)
    ends = np.sort(rng.uniform(0, 1, size=(100_000, 2)), axis=1)
    band_lo, band_hi = tolerance_band(rng.uniform(0, 1, 100_000), 0.3)
    inside, outside = classify(ends[:, 0], ends[:, 1], band_lo, band_hi)
    assert not (inside & outside).any()
    assert inside.any() and outside.any()


def test_round_robin_of_three_is_even_at_699_requests_not_before() -> None:
    # Fixed n, alpha 0.001, tolerance 0.2: 233/233/233 is not yet even, 233/233/233 + 0 ...
    # the first even total is 699 (simultaneous Clopper-Pearson at 0.001/3 inside 26.7%-40%).
    assert decide(round_robin(698, 3)).verdict == "inconclusive"
    decision = decide(round_robin(699, 3))
    assert decision.verdict == "even"
    assert decision.reason.startswith("every pod's share is within 20% of its expected share")
    assert [g.state for g in decision.groups] == ["inside"] * 3
    assert decision.groups[0].band == pytest.approx((1 / 3 * 0.8, 1 / 3 * 1.2))


def test_requests_needed_predicts_the_round_robin_answer() -> None:
    # From 200/200/200 (inconclusive) the projection says about 699: within its 5% resolution.
    fixed = decide(round_robin(600, 3))
    assert fixed.verdict == "inconclusive"
    assert fixed.requests_needed is not None
    assert 699 <= fixed.requests_needed <= 699 * 1.06
    assert f"about {fixed.requests_needed:,} would most likely decide" in fixed.reason
    sequential = decide(round_robin(600, 3), mode="sequential")
    assert sequential.requests_needed is not None
    assert 1029 <= sequential.requests_needed <= 1029 * 1.06
    # before any data the projection assumes the expected shares
    assert decide({}, expect_pods=3).requests_needed == pytest.approx(699, rel=0.06)


def test_min_detectable_skew_exceeds_tolerance_and_shrinks_with_n() -> None:
    skews = [decide(round_robin(n, 3)).min_detectable_skew for n in (100, 1000, 10_000)]
    assert all(s is not None for s in skews)
    small, medium, large = (s for s in skews if s is not None)
    assert small > medium > large > 0.2
    # 10,000 requests: half-width ~ 3.1 sigma, sigma = sqrt(1/3 * 2/3 / 10,000) = 0.0047
    assert large == pytest.approx(0.2 + 0.0146 / (1 / 3), abs=0.01)


# --- groups that did not answer, or were not expected ---------------------------------------------
def test_one_pod_answering_of_three_expected_is_uneven_and_names_the_missing() -> None:
    decision = decide({"web-a": 300}, expect_pods=3)
    assert decision.verdict == "uneven"
    assert decision.missing == (UNSEEN.format(1), UNSEEN.format(2))
    assert "never answered" in decision.reason


def test_silent_pod_the_caller_named_is_missing_by_its_name() -> None:
    decision = decide({"web-a": 1000, "web-b": 1000, "web-c": 0}, expect_pods=3)
    assert decision.missing == ("web-c",)
    assert decision.reason.startswith("pod web-c never answered")


def test_one_pod_answering_without_expectation_is_never_even() -> None:
    decision = decide({"web-a": 100_000})
    assert decision.verdict == "inconclusive"
    assert "only one pod (web-a) answered" in decision.reason
    assert decision.requests_needed is None


def test_expect_pods_one_is_even_from_35_requests() -> None:
    # Band [0.8, 1]; Clopper-Pearson lower end (0.001/2)^(1/n) >= 0.8 from n = 35 on.
    assert decide({"web-a": 34}, expect_pods=1).verdict == "inconclusive"
    assert decide({"web-a": 35}, expect_pods=1).verdict == "even"


def test_canary_that_never_answered_fails_by_name() -> None:
    decision = decide(
        {"stable": 1000}, expect_split={"stable": 90, "canary": 10}, dimension="version"
    )
    assert decision.verdict == "uneven"
    assert decision.missing == ("canary",)
    assert decision.reason.startswith("version canary never answered")
    canary = decision.groups[1]
    assert (canary.name, canary.count) == ("canary", 0)
    assert canary.expected == pytest.approx(0.1)
    assert canary.missing and canary.state == "outside"


def test_canary_split_90_10_is_even_when_it_holds() -> None:
    counts = {"stable": 9000, "canary": 1000}
    split = {"stable": 90, "canary": 10}
    decision = decide(counts, expect_split=split, dimension="version")
    assert decision.verdict == "even"
    # a 5% canary where 10% was configured (ingress-nginx #9745 the other way round)
    bad = decide({"stable": 9500, "canary": 500}, expect_split=split, dimension="version")
    assert bad.verdict == "uneven"
    assert bad.reason.startswith("version canary's share 5.0%")


def test_group_nobody_expected_makes_it_uneven() -> None:
    decision = decide({"a": 500, "b": 480, "c": 20}, expect_split={"a": 1, "b": 1})
    assert decision.unexpected == ("c",)
    assert decision.verdict == "uneven"
    assert "pod c was not expected" in decision.reason


def test_more_pods_than_expect_pods_marks_the_smallest_unexpected() -> None:
    decision = decide({"a": 500, "b": 480, "c": 20}, expect_pods=2)
    assert decision.unexpected == ("c",)
    assert decision.verdict == "uneven"


# --- the sampling unit ----------------------------------------------------------------------------
def test_six_pinned_connections_carrying_600_requests_are_six_observations() -> None:
    pods = {i: {f"pod-{i % 3}"} for i in range(6)}
    requests = dict.fromkeys(range(6), 100)
    unit = choose_unit(pods, requests)
    assert (unit.unit, unit.pinned, unit.connections) == ("connections", True, 6)
    assert "balanced per connection" in unit.reason
    per_connection = {f"pod-{i}": 2 for i in range(3)}
    for mode in MODES:
        decision = decide(per_connection, expect_pods=3, mode=mode, unit=unit.unit)
        assert decision.verdict != "even"
        assert decision.total == 6 and decision.unit == "connections"


def test_pinned_unit_matters_where_requests_would_say_even() -> None:
    # 1,200 requests over 6 pinned connections: counted as requests 400/400/400 would be `even`.
    assert decide(round_robin(1200, 3)).verdict == "even"
    unit = choose_unit({i: {f"pod-{i % 3}"} for i in range(6)}, dict.fromkeys(range(6), 200))
    assert unit.unit == "connections"
    assert decide(round_robin(6, 3), unit=unit.unit).verdict == "inconclusive"


def test_a_connection_that_saw_two_pods_means_requests_are_the_unit() -> None:
    pods = {1: {"a", "b"}, 2: {"a"}, 3: {"b"}}
    unit = choose_unit(pods, {1: 10, 2: 10, 3: 10})
    assert (unit.unit, unit.pinned) == ("requests", False)
    assert unit.reason.startswith("1 of 3 connections saw more than one pod")


def test_one_request_per_connection_counts_requests() -> None:
    unit = choose_unit({i: {"a"} for i in range(5)}, dict.fromkeys(range(5), 1))
    assert (unit.unit, unit.pinned) == ("requests", False)


# --- the intervals against independent computations ---------------------------------------------
def test_clopper_pearson_matches_scipy_binomtest() -> None:
    for n, s in [(1, 0), (1, 1), (10, 3), (600, 200), (20_000, 1), (20_000, 19_999), (31, 0)]:
        lo, hi = clopper_pearson(np.array([s]), np.array([n]), 0.001 / 3)
        expected = binomtest(s, n).proportion_ci(confidence_level=1 - 0.001 / 3, method="exact")
        assert (lo[0], hi[0]) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_mixture_sequence_is_the_set_its_martingale_defines() -> None:
    # Brute force over a fine grid of p: the interval holds exactly the p with M_n(p) < 1/alpha,
    # and its ends lie outside that set (conservative), to grid precision.
    rng = np.random.default_rng(5)
    grid = np.linspace(0, 1, 400_001)[1:-1]
    for _ in range(60):
        n = int(rng.integers(0, 20_001))
        s = int(rng.choice([0, n, int(rng.integers(0, n + 1))]))
        f = n - s
        a, b, alpha = rng.uniform(0.5, 50), rng.uniform(0.5, 500), 10 ** rng.uniform(-5, -1)
        lo, hi = mixture_sequence(np.array([s]), np.array([n]), alpha, np.array([a]), np.array([b]))
        level = betaln(a + s, b + f) - betaln(a, b) - math.log(1 / alpha)
        loglik = (s * np.log(grid) if s else 0) + (f * np.log1p(-grid) if f else 0)
        kept = grid[loglik > level]
        assert kept.size, (n, s)
        assert lo[0] <= kept.min() and kept.max() <= hi[0]
        assert kept.min() - lo[0] < 1e-5 or kept.min() < 3e-6
        assert hi[0] - kept.max() < 1e-5 or kept.max() > 1 - 3e-6


# --- output ------------------------------------------------------------------------------------
def test_decision_is_plain_data_for_json() -> None:
    decision = decide({"a": 10, "b": 12}, mode="sequential")
    data = json.loads(json.dumps(decision.as_dict()))
    assert data["verdict"] == "inconclusive"
    assert data["method"]["name"] == "beta-binomial-mixture-cs"
    assert data["method"]["alpha_per_group"] == pytest.approx(0.0005)
    assert data["groups"][0]["interval"][0] < data["groups"][0]["share"]
    assert data["groups"][0]["missing"] is False


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"tolerance": 0}, "tolerance"),
        ({"tolerance": 1}, "tolerance"),
        ({"tolerance": -0.5}, "tolerance"),
        ({"alpha": 0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"mode": "auto"}, "mode"),
        ({"expect_pods": 0}, "expect_pods"),
        ({"expect_pods": True}, "expect_pods"),
        ({"expect_split": {}}, "expect_split"),
        ({"expect_split": {"a": 0}}, "expect_split"),
        ({"expect_split": {"a": -1}}, "expect_split"),
        ({"expect_split": {"a": math.nan}}, "expect_split"),
        ({"expect_split": {"a": math.inf}}, "expect_split"),
        ({"expect_pods": 2, "expect_split": {"a": 1}}, "expect_split"),
    ],
)
def test_bad_settings_are_usage_errors_naming_the_setting(
    kwargs: dict[str, object], setting: str
) -> None:
    with pytest.raises(UsageError) as raised:
        decide({"a": 1}, **kwargs)  # type: ignore[arg-type]
    assert raised.value.setting == setting
    assert raised.value.exit_code == 2


def test_negative_count_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as raised:
        decide({"a": -1})
    assert raised.value.setting == "counts"
