"""The canary track on a real stack: 3 stable replicas and 1 canary behind a real HAProxy that
sends the canary 10% of the requests. Counted through the balancer with new connections
(HAProxy's weighted round robin is deterministic, so 1,000 requests land within a request or two
of the split; equal server weights would give the canary 25%), kept through ``scale`` and a
rolling ``restart``, shown by ``status``; bad canary settings; the verifier's verdict against
the split and ``demo --canary`` once the verifier checks expected splits (issue 11).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.local.localstack_helpers import Load, get, running_stack, stack_config
from tests.support import free_base, run_cli

from podtally.local import Stack, restart, scale, status

NAME = "canarytest"
REQUESTS = 1000

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def started(root: Path) -> Iterator[Stack]:
    config = stack_config(root / NAME, canary_replicas=1, canary_weight=10, tls=False, addresses=8)
    lines: list[str] = []
    with running_stack(config, lines.append) as stack:
        assert any("starting 3 stable and 1 canary replica(s)" in line for line in lines), lines
        yield stack


@pytest.fixture
def stack(started: Stack, root: Path) -> Stack:
    """The shared stack with 3 stable replicas and its canary, whatever a test before did."""
    now = status(NAME, run_dir=root / NAME)
    if now.config.replicas != 3:
        now = scale(3, NAME, run_dir=root / NAME)
    assert now.ready and [t.up for t in now.tracks()] == [3, 1], now.replicas
    return now


def _count_tracks(stack: Stack, requests: int = REQUESTS) -> Counter[str]:
    """Requests through the balancer, one new connection each, counted by the answering pod's
    track (the pod names the stack gave each track)."""
    track_of = {r.pod: r.track for r in stack.replicas}
    seen: Counter[str] = Counter()
    for _ in range(requests):
        code, headers, _ = get(stack.http_url)
        assert code == 200
        seen[track_of[headers["x-pod-name"]]] += 1
    return seen


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_each_replica_runs_with_its_tracks_version(stack: Stack) -> None:
    tracks = Counter(r.track for r in stack.replicas)
    assert tracks == {"stable": 3, "canary": 1}
    for replica in stack.replicas:
        assert _environ(replica.pid)["POD_VERSION"] == replica.track
        _, headers, _ = get(f"http://{replica.address}:{replica.port}/")
        if "x-pod-version" in headers:  # the identity's version field (issue 11)
            assert headers["x-pod-version"] == replica.track
    # One node per replica: the canary on a node of its own.
    assert len({r.node for r in stack.replicas}) == 4
    # Another pod template (another Deployment): its own template hash in the pod name.
    hashes = {
        track: {r.pod.split("-")[1] for r in stack.replicas if r.track == track}
        for track in ("stable", "canary")
    }
    assert len(hashes["stable"]) == len(hashes["canary"]) == 1
    assert hashes["stable"] != hashes["canary"]
    # status lists the stable track, then the canary.
    assert [r.track for r in stack.replicas] == ["stable", "stable", "stable", "canary"]


def test_haproxy_sends_the_canary_its_weight_not_its_replica_share(stack: Stack) -> None:
    stable, canary = stack.tracks()
    assert (stable.server_weight, canary.server_weight) == (3, 1)
    assert (stable.share, canary.share) == (pytest.approx(90.0), pytest.approx(10.0))
    seen = _count_tracks(stack)
    assert abs(seen["canary"] / REQUESTS - 0.10) <= 0.005, seen


def test_scale_keeps_the_canary_share_with_one_stable_replica(stack: Stack, root: Path) -> None:
    now = scale(1, NAME, run_dir=root / NAME)
    assert [t.up for t in now.tracks()] == [1, 1]
    assert [t.server_weight for t in now.tracks()] == [9, 1]
    seen = _count_tracks(now)
    # Equal weights would split 50/50 now.
    assert abs(seen["canary"] / REQUESTS - 0.10) <= 0.005, seen


def test_restart_keeps_the_tracks_and_the_share_under_load(stack: Stack, root: Path) -> None:
    before = {r.pod for r in stack.replicas}
    with Load(stack.http_url, None, threads=3, max_requests=20000, max_seconds=90) as load:
        load.wait_for(50)
        now = restart(NAME, run_dir=root / NAME)
    assert not load.result.failures, load.result.failures[:5]
    assert not before & {r.pod for r in now.replicas}  # every pod replaced
    assert Counter(r.track for r in now.replicas) == {"stable": 3, "canary": 1}
    assert all(_environ(r.pid)["POD_VERSION"] == r.track for r in now.replicas)
    # While old and new replicas overlap the weights follow who is in rotation.
    pods_by_track = Counter[str]()
    canary_pods = {r.pod for r in stack.replicas + now.replicas if r.track == "canary"}
    for pod, count in load.result.pods.items():
        pods_by_track["canary" if pod in canary_pods else "stable"] += count
    share = pods_by_track["canary"] / load.result.ok
    assert 0.07 <= share <= 0.13, (pods_by_track, load.result.ok)
    seen = _count_tracks(now)
    assert abs(seen["canary"] / REQUESTS - 0.10) <= 0.005, seen


def test_status_shows_the_tracks_and_weights(stack: Stack, root: Path) -> None:
    env = {"PODTALLY_STATE_DIR": str(root)}
    cli = run_cli("status", "--name", NAME, env=env, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert (
        "track stable: 3/3 replicas UP, version stable, weight 90% "
        "(HAProxy: server weight 3, 90.0% of requests)"
    ) in cli.stdout
    assert (
        "track canary: 1/1 replicas UP, version canary, weight 10% "
        "(HAProxy: server weight 1, 10.0% of requests)"
    ) in cli.stdout
    header = next(line for line in cli.stdout.splitlines() if line.startswith("POD "))
    assert header.split()[-2:] == ["TRACK", "WEIGHT"]
    document = json.loads(run_cli("status", "--name", NAME, "--json", env=env).stdout)
    assert [(t["name"], t["weight"], t["up"]) for t in document["tracks"]] == [
        ("stable", 90.0, 3),
        ("canary", 10.0, 1),
    ]
    assert document["config"]["canary_weight"] == 10.0
    assert sorted(r["weight"] for r in document["replicas"]) == [1, 3, 3, 3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--canary-weight", "10"], "--canary-replicas"),
        (["--canary-replicas", "1"], "--canary-weight"),
        (["--canary-replicas", "1", "--canary-weight", "100"], "less than 100"),
        (["--canary-replicas", "1", "--canary-weight", "0"], "more than 0"),
        (["--canary-replicas", "1", "--canary-weight", "nan"], "percentage"),
        (["--canary-replicas", "1", "--canary-weight", "ten"], "ten"),
        (["--replicas", "60", "--canary-replicas", "5", "--canary-weight", "10"], "in all"),
    ],
)
def test_bad_canary_input_is_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    cli = run_cli("up", *args, env={"PODTALLY_STATE_DIR": str(tmp_path)}, timeout=60)
    assert cli.returncode == 2, cli.stderr
    assert cli.stderr.startswith("error: ") and cli.stderr.count("\n") == 1, cli.stderr
    assert message in cli.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("split", "verdict", "code"),
    [("version=stable:90,canary:10", "even", 0), ("version=stable:75,canary:25", "uneven", 1)],
)
def test_the_verifier_judges_the_canary_split(
    stack: Stack, split: str, verdict: str, code: int
) -> None:
    cli = run_cli(
        "verify",
        stack.http_url,
        "--expect-split",
        split,
        "--max-requests",
        "20000",
        "--json",
        timeout=300,
    )
    assert cli.returncode == code, cli.stdout[-2000:] + cli.stderr
    assert json.loads(cli.stdout)["verdict"]["result"] == verdict


def test_demo_canary_proves_the_90_10_split_and_exits_0(tmp_path: Path) -> None:
    base = free_base(replicas=8)
    cli = run_cli(
        "demo",
        "--canary",
        "--http",
        "--ports",
        f"{base},{base + 1},{base + 2}",
        "--run-dir",
        str(tmp_path / "demo"),
        "--no-progress",
        env={"PODTALLY_STATE_DIR": str(tmp_path)},
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-2000:]
    assert "track canary: 1 replica(s), version canary, 10% of requests" in cli.stderr
    assert not (tmp_path / "demo").exists()
    assert os.listdir(tmp_path) == []
