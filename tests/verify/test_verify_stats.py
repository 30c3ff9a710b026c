"""The statistics with fixed tallies: no network, exact expectations."""

from __future__ import annotations

import math

import pytest
from scipy.stats import chi2 as chi2_distribution
from scipy.stats import chisquare

from podtally.verify.tally import (
    UNKNOWN,
    Dimension,
    IdentityKey,
    judge,
    latency_summary,
    tally_dimensions,
)


def key(pod: str, node: str | None = "node-a", zone: str | None = "zone-1") -> IdentityKey:
    return IdentityKey(pod, node, "ns", f"10.0.0.{pod[-1]}", zone)


def dims(counts: dict[IdentityKey, int]) -> dict[str, Dimension]:
    return {d.name: d for d in tally_dimensions(counts)}


def test_33_33_34_is_even() -> None:
    pods = dims({key("pod-1"): 33, key("pod-2"): 33, key("pod-3"): 34})["pod"]
    assert pods.judged
    # By hand: expected 33.33 each; chi2 = (0.33² + 0.33² + 0.67²) / 33.33 = 0.02
    assert pods.chi2 == pytest.approx(0.02, abs=1e-9)
    assert pods.dof == 2
    assert pods.p_value == pytest.approx(math.exp(-0.01), rel=1e-6)
    assert pods.max_min_ratio == pytest.approx(34 / 33)
    verdict = judge(pods, requests=100, responses=100, errors={}, alpha=0.001)
    assert (verdict.result, verdict.passed, verdict.exit_code) == ("even", True, 0)
    assert verdict.summary.startswith("PASS: even across 3 pods")


def test_90_5_5_is_uneven() -> None:
    pods = tally_dimensions({key("pod-1"): 90, key("pod-2"): 5, key("pod-3"): 5})[0]
    # chi2 = (56.67² + 2·28.33²)/33.33 = 144.5, p = exp(-144.5/2) for 2 dof
    assert pods.chi2 == pytest.approx(144.5, rel=1e-6)
    assert pods.p_value == pytest.approx(math.exp(-72.25), rel=1e-6)
    assert pods.max_min_ratio == pytest.approx(18.0)
    verdict = judge(pods, requests=100, responses=100, errors={}, alpha=0.001)
    assert (verdict.result, verdict.passed, verdict.exit_code) == ("uneven", False, 1)
    assert "uneven" in verdict.summary and "max/min 18.00" in verdict.summary


def test_alpha_decides_a_borderline_spread() -> None:
    # 45/30/25 of 100: chi2 = 6.5, p = 0.0388: uneven at alpha 0.05, even at 0.001.
    pods = tally_dimensions({key("pod-1"): 45, key("pod-2"): 30, key("pod-3"): 25})[0]
    assert pods.p_value == pytest.approx(chi2_distribution.sf(6.5, 2), rel=1e-9)
    assert judge(pods, 100, 100, {}, alpha=0.05).result == "uneven"
    assert judge(pods, 100, 100, {}, alpha=0.001).result == "even"


def test_tiny_samples_are_too_few_to_judge() -> None:
    # 12 responses over 3 pods: 4 expected per pod, under the 5 the chi-square test needs.
    pods = tally_dimensions({key("pod-1"): 4, key("pod-2"): 4, key("pod-3"): 4})[0]
    assert not pods.judged and pods.p_value is None and pods.min_expected == 4
    verdict = judge(pods, requests=12, responses=12, errors={}, alpha=0.001)
    assert verdict.result == "too few requests to judge"
    assert verdict.exit_code == 1
    assert "about 15 identified responses for 3 pods" in verdict.summary
    # 15 is enough: the same spread, judged.
    enough = tally_dimensions({key("pod-1"): 5, key("pod-2"): 5, key("pod-3"): 5})[0]
    assert judge(enough, 15, 15, {}, alpha=0.001).result == "even"


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
        key("pod-1", "node-a", "zone-1"): 50,
        key("pod-2", "node-a", "zone-1"): 50,
        key("pod-3", "node-a", "zone-1"): 50,
        key("pod-4", "node-b", "zone-2"): 150,
    }
    d = dims(skewed)
    node_rows = {r.name: r for r in d["node"].rows}
    assert node_rows["node-b"].share == pytest.approx(0.5)
    assert node_rows["node-b"].deviation == pytest.approx(1.0)  # twice its fair share
    # chi2 over nodes: expected 225/75, observed 150/150: 75²/225 + 75²/75 = 100
    assert d["node"].chi2 == pytest.approx(100.0)
    assert d["zone"].chi2 == pytest.approx(100.0)
    # max/min relative to the expected share: node-b carries 2/(2/3) = 3x what node-a carries
    assert d["node"].max_min_ratio == pytest.approx(3.0)
    assert judge(d["pod"], 300, 300, {}, alpha=0.001).result == "uneven"


def test_missing_fields_group_as_unknown() -> None:
    counts = {key("pod-1", zone=None): 10, key("pod-2", zone=None): 10, key("pod-3"): 10}
    zones = {r.name: r for r in dims(counts)["zone"].rows}
    assert zones[UNKNOWN].pods == 2 and zones["zone-1"].pods == 1


def test_one_pod_passes_but_expect_pods_fails() -> None:
    pods = tally_dimensions({key("pod-1"): 100})[0]
    assert not pods.judged
    assert judge(pods, 100, 100, {}, alpha=0.001).result == "one pod"
    assert judge(pods, 100, 100, {}, alpha=0.001).exit_code == 0
    verdict = judge(pods, 100, 100, {}, alpha=0.001, expect_pods=3)
    assert verdict.exit_code == 1
    assert "only 1 of 3 expected pods answered" in verdict.failures


def test_error_budget() -> None:
    pods = tally_dimensions({key("pod-1"): 33, key("pod-2"): 33, key("pod-3"): 33})[0]
    errors = {"refused": 1}
    over = judge(pods, 100, 99, errors, alpha=0.001)
    assert over.exit_code == 1 and over.result == "even"
    assert "1 of 100 requests failed (1.0%: 1 refused)" in over.summary
    assert "(spread: even across 3 pods" in over.summary
    within = judge(pods, 100, 99, errors, alpha=0.001, max_error_rate=0.01)
    assert within.exit_code == 0


def test_nothing_answered_is_exit_3_with_the_reason() -> None:
    pods = tally_dimensions({})[0]
    verdict = judge(
        pods,
        10,
        0,
        {"refused": 10},
        alpha=0.001,
        unreachable_reason="connection refused to 127.0.0.1:9",
    )
    assert (verdict.result, verdict.exit_code) == ("unreachable", 3)
    assert verdict.failures == ("connection refused to 127.0.0.1:9",)


def test_answers_without_identity() -> None:
    pods = tally_dimensions({})[0]
    verdict = judge(pods, 10, 10, {"no-identity": 10}, alpha=0.001)
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
