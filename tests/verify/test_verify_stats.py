"""The statistics with fixed tallies: no network, exact expectations.

The verdict comes from the decision (simultaneous intervals against tolerance bands, see
tests/verify/test_decision.py); the chi-square statistic stays in the report as information.
"""

from __future__ import annotations

import math

import pytest
from scipy.stats import chisquare

from podtally.verify.options import VerifyOptions
from podtally.verify.tally import (
    UNKNOWN,
    Accumulator,
    Dimension,
    IdentityKey,
    Verdict,
    judge,
    latency_summary,
    tally_dimensions,
)
from podtally.verify.verdict import assess


def key(pod: str, node: str | None = "node-a", zone: str | None = "zone-1") -> IdentityKey:
    return IdentityKey(pod, node, "ns", f"10.0.0.{pod[-1]}", zone)


def dims(counts: dict[IdentityKey, int]) -> dict[str, Dimension]:
    return {d.name: d for d in tally_dimensions(counts)}


def verdict_of(
    counts: dict[IdentityKey, int],
    requests: int | None = None,
    errors: dict[str, int] | None = None,
    responses: int | None = None,
    **options: object,
) -> Verdict:
    """Judge ``counts`` as a fixed-size run of ``requests`` (default: the identified total)."""
    acc = Accumulator()
    acc.identities.update(counts)
    total = sum(counts.values())
    opts = VerifyOptions("http://x/", requests=requests or max(total, 1), **options)  # type: ignore[arg-type]
    assessment = assess(acc, opts, "fixed") if counts else None
    return judge(
        assessment,
        requests=requests or total,
        responses=total if responses is None else responses,
        errors=errors or {},  # type: ignore[arg-type]
        expect_pods=opts.expect_pods,
        max_error_rate=opts.max_error_rate,
    )


def test_33_33_34_is_the_chi_square_of_old_and_inconclusive_at_100() -> None:
    pods = dims({key("pod-1"): 33, key("pod-2"): 33, key("pod-3"): 34})["pod"]
    assert pods.judged
    # By hand: expected 33.33 each; chi2 = (0.33² + 0.33² + 0.67²) / 33.33 = 0.02
    assert pods.chi2 == pytest.approx(0.02, abs=1e-9)
    assert pods.dof == 2
    assert pods.p_value == pytest.approx(math.exp(-0.01), rel=1e-6)
    assert pods.max_min_ratio == pytest.approx(34 / 33)
    # A chi-square that fails to reject is not a proof: 100 requests cannot show ±20%.
    verdict = verdict_of({key("pod-1"): 33, key("pod-2"): 33, key("pod-3"): 34})
    assert (verdict.result, verdict.passed, verdict.exit_code) == ("inconclusive", False, 1)
    assert "about 866 would most likely decide" in verdict.summary
    assert "smallest skew this run could have shown" in verdict.summary


def test_3300_3300_3400_is_even() -> None:
    verdict = verdict_of({key("pod-1"): 3300, key("pod-2"): 3300, key("pod-3"): 3400})
    assert (verdict.result, verdict.passed, verdict.exit_code) == ("even", True, 0)
    assert verdict.summary == (
        "PASS: even: every pod's share is within ±20% of 1/3 "
        "(simultaneous 99.9% intervals over 10,000 requests)"
    )


def test_90_5_5_is_uneven() -> None:
    pods = tally_dimensions({key("pod-1"): 90, key("pod-2"): 5, key("pod-3"): 5})[0]
    # chi2 = (56.67² + 2·28.33²)/33.33 = 144.5, p = exp(-144.5/2) for 2 dof
    assert pods.chi2 == pytest.approx(144.5, rel=1e-6)
    assert pods.p_value == pytest.approx(math.exp(-72.25), rel=1e-6)
    assert pods.max_min_ratio == pytest.approx(18.0)
    verdict = verdict_of({key("pod-1"): 90, key("pod-2"): 5, key("pod-3"): 5})
    assert (verdict.result, verdict.passed, verdict.exit_code) == ("uneven", False, 1)
    assert "uneven: pod pod-1's share 90.0%" in verdict.summary


def test_alpha_decides_a_borderline_spread() -> None:
    # 450/300/250 of 1000: pod-1 at 45% is shown outside 26.7-40% at alpha 0.05, not at 0.001.
    counts = {key("pod-1"): 450, key("pod-2"): 300, key("pod-3"): 250}
    assert verdict_of(counts, alpha=0.05).result == "uneven"
    assert verdict_of(counts, alpha=0.001).result == "inconclusive"


def test_tolerance_decides_what_even_means() -> None:
    counts = {key("pod-1"): 11000, key("pod-2"): 10000, key("pod-3"): 9000}
    assert verdict_of(counts, tolerance=0.3).result == "even"
    assert verdict_of(counts, tolerance=0.05).result == "uneven"


def test_nodes_and_zones_are_weighted_by_their_pods() -> None:
    # Three pods on node-a (zone-1), one on node-b (zone-2); every pod gets 25 of 100.
    counts = {
        key("pod-1", "node-a", "zone-1"): 25,
        key("pod-2", "node-a", "zone-1"): 25,
        key("pod-3", "node-a", "zone-1"): 25,
        key("pod-4", "node-b", "zone-2"): 25,
    }
    d = dims(counts)
    nodes = d["node"]
    rows = {r.name: r for r in nodes.rows}
    assert rows["node-a"].pods == 3 and rows["node-a"].expected_share == pytest.approx(0.75)
    assert rows["node-b"].pods == 1 and rows["node-b"].expected_share == pytest.approx(0.25)
    assert rows["node-a"].deviation == pytest.approx(0.0)
    assert nodes.chi2 == pytest.approx(0.0)
    assert nodes.p_value == pytest.approx(1.0)
    # A balancer that splits by node instead (50/50) is uneven per pod and per node.
    skewed = {
        key("pod-1", "node-a", "zone-1"): 150,
        key("pod-2", "node-a", "zone-1"): 150,
        key("pod-3", "node-a", "zone-1"): 150,
        key("pod-4", "node-b", "zone-2"): 450,
    }
    d = dims(skewed)
    node_rows = {r.name: r for r in d["node"].rows}
    assert node_rows["node-b"].share == pytest.approx(0.5)
    assert node_rows["node-b"].deviation == pytest.approx(1.0)  # twice its fair share
    assert d["node"].max_min_ratio == pytest.approx(3.0)
    assert verdict_of(skewed).result == "uneven"
    acc = Accumulator()
    acc.identities.update(skewed)
    shown = {d.dimension: d for d in assess(acc, VerifyOptions("http://x/"), "fixed").shown}
    node_expected = {g.name: g.expected for g in shown["node"].groups}
    assert node_expected == pytest.approx({"node-a": 0.75, "node-b": 0.25})


def test_missing_fields_group_as_unknown() -> None:
    counts = {key("pod-1", zone=None): 10, key("pod-2", zone=None): 10, key("pod-3"): 10}
    zones = {r.name: r for r in dims(counts)["zone"].rows}
    assert zones[UNKNOWN].pods == 2 and zones["zone-1"].pods == 1


def test_one_pod_never_passes_unless_one_is_expected() -> None:
    one = {key("pod-1"): 1000}
    verdict = verdict_of(one)
    assert (verdict.result, verdict.exit_code) == ("inconclusive", 1)
    assert "nothing to compare" in verdict.summary
    verdict = verdict_of(one, expect_pods=3)
    assert verdict.exit_code == 1
    assert "only 1 of 3 expected pods answered" in verdict.failures
    assert verdict_of(one, expect_pods=1).exit_code == 0


def test_two_of_three_even_pods_fail_expect_pods() -> None:
    verdict = verdict_of({key("pod-1"): 5000, key("pod-2"): 5000}, expect_pods=3)
    assert (verdict.result, verdict.exit_code) == ("uneven", 1)
    assert "only 2 of 3 expected pods answered" in verdict.failures


def test_error_budget() -> None:
    counts = {key("pod-1"): 3300, key("pod-2"): 3300, key("pod-3"): 3300}
    errors = {"refused": 1}
    over = verdict_of(counts, requests=9901, errors=errors)
    assert over.exit_code == 1 and over.result == "even"
    assert "1 of 9901 requests failed (0.0%: 1 refused)" in over.summary
    within = verdict_of(counts, requests=9901, errors=errors, max_error_rate=0.01)
    assert within.exit_code == 0


def test_nothing_answered_is_exit_3_with_the_reason() -> None:
    verdict = judge(
        None, 10, 0, {"refused": 10}, unreachable_reason="connection refused to 127.0.0.1:9"
    )
    assert (verdict.result, verdict.exit_code) == ("unreachable", 3)
    assert verdict.failures == ("connection refused to 127.0.0.1:9",)


def test_answers_without_identity() -> None:
    verdict = judge(None, 10, 10, {"no-identity": 10})
    assert (verdict.result, verdict.exit_code) == ("no identity", 1)


def test_latency_nearest_rank() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    lat = latency_summary(values)
    assert lat is not None
    assert (lat.p50, lat.p90, lat.p99, lat.max) == (0.05, 0.09, 0.099, 0.1)
    assert lat.mean == pytest.approx(0.0505)
    assert latency_summary([]) is None
    assert latency_summary([0.2]) == latency_summary([0.2])


@pytest.mark.parametrize(
    "counts",
    [(33, 33, 34), (90, 5, 5), (45, 30, 25), (10, 12, 9, 14, 30), (500, 480, 520, 510)],
)
def test_agrees_with_scipy_stats_chisquare(counts: tuple[int, ...]) -> None:
    pods = tally_dimensions({key(f"pod-{i}"): n for i, n in enumerate(counts)})[0]
    reference = chisquare(sorted(counts, reverse=True))
    assert pods.chi2 == pytest.approx(reference.statistic, rel=1e-12)
    assert pods.p_value == pytest.approx(reference.pvalue, rel=1e-9)
