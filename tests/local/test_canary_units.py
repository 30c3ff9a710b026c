"""In-process tests of the canary track's pure parts: the configuration's checks, the tracks it
runs, and the HAProxy server weights that give each track its share. No process, no port.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from podtally.errors import UsageError
from podtally.local import Stack, StackConfig, Track
from podtally.local import haproxy as hap
from podtally.local.models import Replica


def _share(weights: list[int], counts: list[int], track: int) -> float:
    """The share of requests a weighted round robin sends to ``track``."""
    total = sum(w * n for w, n in zip(weights, counts, strict=True))
    return weights[track] * counts[track] / total


@pytest.mark.parametrize(
    ("shares", "expected"),
    [
        ([(100.0, 3)], [1]),  # one track: weight 1, as a stack without tracks always had
        ([(90.0, 3), (10.0, 1)], [3, 1]),  # 3x3 : 1 = 90 : 10, exactly
        ([(90.0, 1), (10.0, 3)], [27, 1]),  # the canary has more replicas than the stable
        ([(99.5, 3), (0.5, 1)], [199, 3]),  # a half-percent canary (ingress-nginx #9745)
        ([(50.0, 0), (50.0, 2)], [0, 1]),  # a track with nobody in rotation gets nothing
    ],
)
def test_server_weights_give_each_track_its_share(
    shares: list[tuple[float, int]], expected: list[int]
) -> None:
    weights, error = hap.server_weights(shares)
    assert weights == expected
    assert error == 0.0


@pytest.mark.parametrize(
    ("stable", "canary"),
    [(s, c) for s in (1, 2, 3, 5, 7, 12, 40, 63) for c in (1, 2, 3, 7) if s + c <= 64],
)
@pytest.mark.parametrize("weight", [1.0, 5.0, 10.0, 13.0, 33.3, 50.0, 80.0, 99.0])
def test_server_weights_hold_the_share_within_one_percent_whatever_the_counts(
    stable: int, canary: int, weight: float
) -> None:
    weights, error = hap.server_weights([(100 - weight, stable), (weight, canary)])
    assert all(1 <= w <= hap.MAX_WEIGHT for w in weights)
    share = _share(weights, [stable, canary], 1)
    assert abs(share - weight / 100) / (weight / 100) <= error + 1e-9
    per_server = [(100 - weight) / stable, weight / canary]
    if max(per_server) / min(per_server) <= hap.MAX_WEIGHT / 100:
        # Every weight can be 100 or more: rounding moves a share by at most 0.5%.
        assert error <= 0.005, (weights, error)
    # The configuration takes exactly the splits HAProxy can hold within the bound.
    try:
        StackConfig(replicas=stable, canary_replicas=canary, canary_weight=weight)
    except UsageError as exc:
        assert exc.setting == "canary_weight"
        assert error > hap.MAX_SHARE_ERROR
    else:
        assert error <= hap.MAX_SHARE_ERROR


def test_a_canary_configuration_runs_two_tracks_with_their_weights() -> None:
    config = StackConfig(replicas=3, canary_replicas=1, canary_weight=10)
    assert config.tracks() == [
        Track("stable", 3, version="stable", weight=90.0),
        Track("canary", 1, version="canary", weight=10.0),
    ]
    assert config.total_replicas == 4
    assert config.node_count == 4  # one node per replica, canaries included
    assert StackConfig(replicas=3).tracks() == [Track("stable", 3, "stable", 100.0)]


@pytest.mark.parametrize(
    ("settings", "setting", "message"),
    [
        ({"canary_replicas": 1}, "canary_weight", "needs its weight"),
        ({"canary_weight": 10.0}, "canary_replicas", "needs at least one canary replica"),
        ({"canary_replicas": 1, "canary_weight": 0.0}, "canary_weight", "more than 0"),
        ({"canary_replicas": 1, "canary_weight": 100.0}, "canary_weight", "less than 100"),
        ({"canary_replicas": 1, "canary_weight": -5.0}, "canary_weight", "percentage"),
        ({"canary_replicas": 1, "canary_weight": math.nan}, "canary_weight", "percentage"),
        ({"canary_replicas": 1, "canary_weight": math.inf}, "canary_weight", "percentage"),
        ({"canary_replicas": -1, "canary_weight": 10.0}, "canary_replicas", "between 0 and 63"),
        ({"canary_replicas": 64, "canary_weight": 10.0}, "canary_replicas", "between 0 and 63"),
        ({"replicas": 60, "canary_replicas": 5, "canary_weight": 10.0}, "replicas", "in all"),
        # 0.001% beside 60 stable replicas needs weights 1,667 times apart; 256 is the most.
        (
            {"replicas": 60, "canary_replicas": 1, "canary_weight": 0.001},
            "canary_weight",
            "HAProxy's (1 to 256) cannot split",
        ),
    ],
)
def test_bad_canary_settings_are_usage_errors_naming_the_setting(
    settings: dict[str, object], setting: str, message: str
) -> None:
    with pytest.raises(UsageError) as raised:
        StackConfig(**settings)  # type: ignore[arg-type]
    assert raised.value.setting == setting
    assert message in raised.value.what
    assert "--" not in str(raised.value)  # the library does not word flags


def test_render_writes_each_server_weight_and_leaves_weight_1_implicit(tmp_path: Path) -> None:
    layout = hap.Layout(
        http_port=1080,
        https_port=None,
        stats_port=1404,
        socket_path=tmp_path / "haproxy.sock",
        cert_path=None,
        slots=[hap.Slot(1, "127.0.0.11", 1080, 3), hap.Slot(2, "127.0.0.12", 1080), hap.Slot(3)],
    )
    servers = [line.strip() for line in hap.render(layout).splitlines() if "server pod" in line]
    assert servers == [
        "server pod1 127.0.0.11:1080 weight 3",
        "server pod2 127.0.0.12:1080",
        "server pod3 127.0.0.1:9 disabled",
    ]


def _replica(pod: str, track: str, weight: int, health: str = "UP") -> Replica:
    # Node, zone, namespace, address, port and pid do not count here: the same for every pod.
    return Replica(pod, "n", "z", "ns", "127.0.0.11", 1, 1, health, track=track, weight=weight)


def test_stack_tracks_report_the_share_haproxy_weights_give_the_up_replicas() -> None:
    config = StackConfig(replicas=2, canary_replicas=1, canary_weight=20)
    stack = Stack(
        config=config,
        replicas=[
            _replica("a", "stable", 2),
            _replica("b", "stable", 2),
            _replica("c", "canary", 1),
            _replica("d", "stable", 2, health="DOWN"),  # not UP: no share
        ],
    )
    stable, canary = stack.tracks()
    assert (stable.name, stable.up, stable.weight, stable.server_weight) == ("stable", 2, 80.0, 2)
    assert (canary.name, canary.up, canary.weight, canary.server_weight) == ("canary", 1, 20.0, 1)
    assert stable.share == pytest.approx(80.0)
    assert canary.share == pytest.approx(20.0)
    assert [t["name"] for t in stack.to_dict()["tracks"]] == ["stable", "canary"]
