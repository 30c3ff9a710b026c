"""The same stack with one replica and with six, side by side (two names, two sets of ports):
the one-replica stack over TLS, the six-replica stack with --no-tls and three nodes.

Ports come from this worker's pool (``free_base``), a set per stack.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from tests.local.localstack_helpers import (
    assert_all_gone,
    free_base,
    get,
    stack_pids,
)
from tests.support import run_cli

from podtally.local import Stack, StackConfig, down, status, up
from podtally.net import bind_error

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Stack]]:
    root = tmp_path_factory.mktemp("state")
    one_base, six_base = free_base(), free_base()
    while abs(one_base - six_base) < 3:
        six_base = free_base()
    one_config = StackConfig(
        name="one",
        replicas=1,
        http_port=one_base,
        https_port=one_base + 1,
        stats_port=one_base + 2,
        run_dir=root / "one",
        drain_seconds=0.5,
    )
    six_config = StackConfig(
        name="six",
        replicas=6,
        nodes=3,
        namespace="demo",
        http_port=six_base,
        https_port=six_base + 1,
        stats_port=six_base + 2,
        tls=False,
        run_dir=root / "six",
        drain_seconds=0.5,
    )
    try:
        one = up(one_config)
        six = up(six_config)
        yield one, six
    finally:
        down("one", run_dir=root / "one")
        down("six", run_dir=root / "six")


def test_one_replica_answers_everything(stacks: tuple[Stack, Stack]) -> None:
    one, _ = stacks
    assert len(one.replicas) == 1 and one.ready
    pods = Counter(get(one.url, one.ca_path)[1]["x-pod-name"] for _ in range(20))
    assert pods == Counter({one.replicas[0].pod: 20})
    assert one.replicas[0].node == "local-node-1" and one.replicas[0].zone == "local-a"


def test_six_replicas_share_the_load_evenly(stacks: tuple[Stack, Stack]) -> None:
    _, six = stacks
    assert len(six.replicas) == 6 and six.ready
    seen: Counter[str] = Counter()
    for _ in range(60):
        code, headers, body = get(six.url)
        assert code == 200 and body.startswith(f"Pod: {headers['x-pod-name']}\n")
        assert "Namespace: demo\n" in body
        seen[headers["x-pod-name"]] += 1
    assert set(seen) == {r.pod for r in six.replicas}
    assert all(5 <= n <= 15 for n in seen.values()), seen


def test_six_replicas_spread_round_robin_over_three_nodes(stacks: tuple[Stack, Stack]) -> None:
    _, six = stacks
    nodes = [r.node for r in six.replicas]
    assert nodes == ["local-node-1", "local-node-2", "local-node-3"] * 2
    zones = {r.node: r.zone for r in six.replicas}
    assert zones == {
        "local-node-1": "local-a",
        "local-node-2": "local-b",
        "local-node-3": "local-c",
    }
    assert len({r.address for r in six.replicas}) == 6
    assert {r.namespace for r in six.replicas} == {"demo"}


def test_no_tls_serves_plain_http_without_redirect_or_ca(stacks: tuple[Stack, Stack]) -> None:
    _, six = stacks
    assert six.https_url is None and six.ca_path is None
    assert six.url == f"http://127.0.0.1:{six.config.http_port}/"
    code, headers, _ = get(six.url)
    assert code == 200 and "strict-transport-security" not in headers
    assert bind_error("127.0.0.1", six.config.https_port) is None  # no HTTPS listener at all
    assert not (six.run_dir / "tls").exists()


def test_two_stacks_side_by_side_are_independent(stacks: tuple[Stack, Stack]) -> None:
    one, six = stacks
    assert one.run_dir != six.run_dir
    one_pods = {r.pod for r in one.replicas}
    assert one_pods.isdisjoint({r.pod for r in six.replicas})
    # Each balancer only ever answers with its own pods.
    assert {get(one.url, one.ca_path)[1]["x-pod-name"] for _ in range(6)} == one_pods
    status_one = status("one", run_dir=one.run_dir)
    assert [r.pod for r in status_one.replicas] == [r.pod for r in one.replicas]
    env = {"PODTALLY_STATE_DIR": str(six.run_dir.parent)}
    shown = run_cli("status", "--name", "six", env=env)
    assert shown.returncode == 0 and shown.stdout.count("local-node-") == 6, shown.stdout
    # Stopping one leaves the other running.
    pids = stack_pids(one)
    assert down("one", run_dir=one.run_dir)
    assert_all_gone(pids)
    assert status("six", run_dir=six.run_dir).ready
    assert get(six.url)[0] == 200


def test_single_address_fallback_uses_distinct_ports(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Where only 127.0.0.1 exists (macOS), replicas share it on ports of their own."""
    from podtally.local import restart
    from podtally.local.operations import lifecycle

    monkeypatch.setattr(lifecycle, "multi_address_loopback", lambda: False)
    base = free_base()
    run_dir = tmp_path_factory.mktemp("state") / "solo"
    config = StackConfig(
        name="solo",
        replicas=3,
        http_port=base,
        https_port=base + 1,
        stats_port=base + 2,
        tls=False,
        run_dir=run_dir,
        drain_seconds=0.5,
    )
    try:
        solo = up(config)
        assert {r.address for r in solo.replicas} == {"127.0.0.1"}
        assert len({r.port for r in solo.replicas}) == 3
        assert base not in {r.port for r in solo.replicas}
        seen = Counter(get(solo.url)[1]["x-pod-name"] for _ in range(30))
        assert set(seen) == {r.pod for r in solo.replicas}
        assert all(5 <= n <= 15 for n in seen.values()), seen
        again = restart("solo", run_dir=run_dir)
        assert again.ready and {r.address for r in again.replicas} == {"127.0.0.1"}
        pids = stack_pids(again)
    finally:
        down("solo", run_dir=run_dir)
    assert_all_gone(pids)
