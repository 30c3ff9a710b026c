"""Where ports come from: the local stack's picks lie above the kernel's ephemeral range, the
tests' below it, each worker in a slice of its own, so no outgoing connection and no other
worker can take a port between its check and the server's bind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from podtally import net
from podtally.local import launch
from tests import support
from tests.support import free_base, free_port, free_ports

SPAN = net.ephemeral_range()
linux_only = pytest.mark.skipif(SPAN is None, reason="no ephemeral port range to read (not Linux)")


def write_range(tmp_path: Path, first: int, last: int) -> Path:
    path = tmp_path / "ip_local_port_range"
    path.write_text(f"{first}\t{last}\n")
    return path


def test_the_ephemeral_range_is_read_and_an_unreadable_one_is_none(tmp_path: Path) -> None:
    assert net.ephemeral_range(write_range(tmp_path, 32768, 60999)) == (32768, 60999)
    (tmp_path / "junk").write_text("not numbers")
    assert net.ephemeral_range(tmp_path / "junk") is None
    assert net.ephemeral_range(tmp_path / "missing") is None


@linux_only
def test_the_stacks_picks_lie_above_the_ephemeral_range_and_are_bindable() -> None:
    assert SPAN is not None
    picks = {net.free_port("127.0.0.1") for _ in range(40)}
    assert all(SPAN[1] < port <= 65535 for port in picks), sorted(picks)
    assert len(picks) > 30  # random, so two stacks starting together rarely meet
    for port in list(picks)[:5]:
        assert net.bind_error("127.0.0.1", port) is None


@linux_only
def test_the_stacks_pick_skips_taken_and_bound_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SPAN is not None
    first = SPAN[1] + 1
    free = [p for p in range(first, 65536) if net.bind_error("127.0.0.1", p) is None][:3]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free[1]))
        listener.listen(1)
        # The random draws: a taken port, then the bound one, then a free one.
        draws = iter([free[0] - first, free[1] - first, free[2] - first])
        monkeypatch.setattr(net.secrets, "randbelow", lambda _n: next(draws))
        assert net.free_port("127.0.0.1", taken={free[0]}) == free[2]


def test_without_room_above_the_range_the_kernel_picks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(net, "EPHEMERAL_RANGE_FILE", write_range(tmp_path, 1024, 65000))
    monkeypatch.setattr(net.secrets, "randbelow", lambda _n: pytest.fail("no room to draw from"))
    port = net.free_port("127.0.0.1")
    assert 1024 <= port <= 65000 and net.bind_error("127.0.0.1", port) is None


@linux_only
def test_a_single_address_replica_and_every_grpc_port_come_from_above_the_range() -> None:
    assert SPAN is not None
    address, port = launch.pick_endpoint([], multi_address=False, http_port=8080)
    grpc = launch.pick_grpc_port([], "127.0.0.11", http_port=8080)
    assert address == "127.0.0.1" and port > SPAN[1] and grpc > SPAN[1]


def test_the_tests_ports_lie_in_this_workers_slice_below_the_stacks_picks() -> None:
    ports = [free_port(), *free_ports(3, support.STACK_HOSTS), free_base()]
    slice_ = support.PORTS.ports
    assert all(port in slice_ for port in ports), (ports, slice_)
    assert len(set(ports)) == len(ports)
    if SPAN is not None:  # never where the local stack draws its own ports
        assert all(port <= SPAN[1] for port in ports)
        if SPAN[0] - support.TEST_PORTS_FIRST >= support.MIN_ROOM:
            assert all(port < SPAN[0] for port in ports)


def test_workers_get_disjoint_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    slices = []
    for worker in range(3):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
        slices.append(set(support._port_slice()))
    assert all(len(s) > 1000 for s in slices)
    assert (
        not (slices[0] & slices[1]) and not (slices[1] & slices[2]) and not (slices[0] & slices[2])
    )


def test_a_base_is_a_run_of_free_ports_and_skips_a_bound_one() -> None:
    pool = support._PortPool()
    with socket.socket() as held:
        start = pool.ports[pool.cursor % len(pool.ports)]
        if start + 1 not in pool.ports:
            pytest.skip("the random cursor sits at the end of the slice")
        held.bind(("127.0.0.1", start + 1))
        base = pool.take(lambda port: [("127.0.0.1", port + k) for k in range(3)], span=3)
    assert base != start and base not in (start - 1, start + 1)
    assert all(base + k in pool.ports for k in range(3))


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (32768, 60999, range(20000, 32768)),  # Linux's default: below the range
        (25000, 60999, range(20000, 25000)),  # less room below, still enough
        (10000, 60999, range(20000, 32768)),  # no room below: a fixed window, never above
        (1024, 65535, range(20000, 32768)),
    ],
)
def test_the_tests_ports_avoid_the_ephemeral_range_where_it_leaves_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: int, last: int, expected: range
) -> None:
    monkeypatch.setattr(net, "EPHEMERAL_RANGE_FILE", write_range(tmp_path, first, last))
    assert support._test_ports() == expected
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    assert len(support._port_slice()) >= 1000


def test_another_run_is_never_handed_a_port_this_one_holds() -> None:
    """Two test runs on one machine have the same slices; the claims keep them apart."""
    this_run, other_run = support._PortPool(), support._PortPool()
    other_run.cursor = this_run.cursor
    mine = [this_run.take(lambda port: [("127.0.0.1", port)], span=3) for _ in range(5)]
    theirs = [other_run.take(lambda port: [("127.0.0.1", port)]) for _ in range(5)]
    held = {port + k for port in mine for k in range(3)}
    assert not held & set(theirs), (mine, theirs)
