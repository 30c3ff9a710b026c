"""One real stack (3 replicas of `podtally serve` behind a real HAProxy, TLS on), shared by the
tests: traffic, redirects, TLS, status, then restart / scale / SIGKILL under load. The ``stack``
fixture hands each test the stack healthy with three replicas, whatever ran before, so no test
depends on another's order; ``down`` gets a stack of its own. Ports come from this worker's
pool (tests.support).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.local.localstack_helpers import (
    Load,
    assert_all_gone,
    get,
    running_stack,
    stack_config,
    stack_pids,
    tls_get,
)
from tests.support import run_cli

from podtally.local import Stack, down, restart, scale, status
from podtally.local import haproxy as hap
from podtally.local import processes as proc
from podtally.net import bind_error

NAME = "stacktest"
POD_RE = re.compile(
    r"^stacktest-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}$"
)

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


def _started(state_root: Path) -> Iterator[Stack]:
    lines: list[str] = []
    config = stack_config(state_root / NAME, host="podtally.test", drain_seconds=1)
    with running_stack(config, lines.append) as started:
        assert any("starting 3 replica" in line for line in lines), lines
        yield started


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def started(shared_root: Path) -> Iterator[Stack]:
    """The stack most tests share, as ``up`` returned it."""
    yield from _started(shared_root)


@pytest.fixture
def state_root(shared_root: Path) -> Path:
    return shared_root


@pytest.fixture
def stack(started: Stack, state_root: Path) -> Stack:
    """The shared stack, healthy with three replicas UP whatever a test before did to it (a
    test that restarts, scales or kills replicas leaves it so, but may fail half-way)."""
    now = current(state_root)
    if len(now.replicas) != 3:
        now = scale(3, NAME, run_dir=state_root / NAME)
    if not now.ready:
        now = restart(NAME, run_dir=state_root / NAME)
    assert now.ready and len(now.replicas) == 3, now.replicas
    return now


@pytest.fixture
def own_root(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def own_stack(own_root: Path) -> Iterator[Stack]:
    """A stack of its own, for the test that takes it down."""
    yield from _started(own_root)


def current(state_root: Path) -> Stack:
    return status(NAME, run_dir=state_root / NAME)


def test_up_starts_ready_replicas_with_pod_like_identities(started: Stack) -> None:
    now = started
    assert len(now.replicas) == 3
    assert all(r.health == "UP" and r.running for r in now.replicas), now.replicas
    assert all(POD_RE.match(r.pod) for r in now.replicas), [r.pod for r in now.replicas]
    # One Deployment revision: the same template hash in every pod name.
    assert len({r.pod.split("-")[1] for r in now.replicas}) == 1
    assert [r.node for r in now.replicas] == ["local-node-1", "local-node-2", "local-node-3"]
    assert [r.zone for r in now.replicas] == ["local-a", "local-b", "local-c"]
    assert {r.namespace for r in now.replicas} == {"podtally"}
    # Each replica on its own loopback address, like a pod IP.
    assert sorted(r.address for r in now.replicas) == ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    assert now.url == f"https://127.0.0.1:{now.config.https_port}/"
    assert now.http_url == f"http://127.0.0.1:{now.config.http_port}/"
    assert now.ca_path is not None and now.ca_path.is_file()


def test_99_requests_reach_every_replica_about_a_third_each(stack: Stack) -> None:
    by_pod = {r.pod: r for r in stack.replicas}
    seen: Counter[str] = Counter()
    for _ in range(99):
        code, headers, body = get(stack.url, stack.ca_path)
        assert code == 200
        pod = headers["x-pod-name"]
        replica = by_pod[pod]
        # The seed's text format, exactly, through the balancer.
        assert body == (
            f"Pod: {replica.pod}\nNode: {replica.node}\nNamespace: podtally\n"
            f"IP: {replica.address}\nZone: {replica.zone}\nVersion: stable\n"
        )
        assert headers["x-pod-version"] == "stable"
        assert headers["x-pod-ip"] == replica.address
        seen[pod] += 1
    assert set(seen) == set(by_pod), seen
    assert all(20 <= n <= 46 for n in seen.values()), seen


def test_http_redirects_to_https_keeping_name_path_and_query(stack: Stack) -> None:
    http, https = stack.config.http_port, stack.config.https_port
    code, headers, _ = get(f"http://127.0.0.1:{http}/api/identity?x=1")
    assert code == 301
    assert headers["location"] == f"https://127.0.0.1:{https}/api/identity?x=1"
    code, headers, _ = get(f"http://127.0.0.1:{http}/", headers={"Host": f"localhost:{http}"})
    assert code == 301
    assert headers["location"] == f"https://localhost:{https}/"


def test_https_verifies_against_the_stack_ca_and_sends_hsts(stack: Stack) -> None:
    https = stack.config.https_port
    assert stack.ca_path is not None
    code, headers, _ = get(stack.url, stack.ca_path)
    assert code == 200
    assert re.fullmatch(r"max-age=\d+", headers["strict-transport-security"])
    # The certificate names localhost and the --host name too (curl --resolve style).
    assert tls_get(https, "localhost", stack.ca_path).startswith("HTTP/1.1 200")
    assert tls_get(https, "podtally.test", stack.ca_path).startswith("HTTP/1.1 200")
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_get(https, "other.test", stack.ca_path)
    # Without the stack's CA the certificate is not trusted.
    with pytest.raises(ssl.SSLCertVerificationError):
        get(stack.url)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_https_refuses_tls_below_1_2(stack: Stack) -> None:
    https = stack.config.https_port
    assert stack.ca_path is not None

    def handshake(version: ssl.TLSVersion) -> str:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(str(stack.ca_path))
        # Allow old protocols on our side, so that a refusal can only come from HAProxy.
        context.set_ciphers("ALL:@SECLEVEL=0")
        context.minimum_version = version
        context.maximum_version = version
        with (
            socket.create_connection(("127.0.0.1", https), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            return str(tls.version())

    assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        handshake(ssl.TLSVersion.TLSv1_1)


def test_generated_haproxy_config_passes_haproxy_check(stack: Stack) -> None:
    config = stack.run_dir / "haproxy.cfg"
    result = subprocess.run(
        [hap.find_binary(), "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_stats_page_and_prometheus_endpoint(stack: Stack) -> None:
    code, _, page = get(stack.stats_url)
    assert code == 200 and "pods" in page
    code, _, metrics = get(stack.metrics_url)
    assert code == 200
    assert re.search(r'haproxy_backend_active_servers\{proxy="pods"\} 3\b', metrics), metrics[:500]


def test_status_cli_table_and_json(stack: Stack, state_root: Path) -> None:
    env = {"PODTALLY_STATE_DIR": str(state_root)}
    table = run_cli("status", "--name", NAME, env=env)
    assert table.returncode == 0, table.stderr
    for replica in stack.replicas:
        assert re.search(
            rf"{replica.pod}\s+{replica.node}\s+{replica.zone}\s+"
            rf"{re.escape(replica.address)}:{replica.port}\s+{replica.pid}\s+UP",
            table.stdout,
        ), table.stdout
    assert str(stack.ca_path) in table.stdout
    as_json = run_cli("status", "--name", NAME, "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["url"] == stack.url and data["ready"] is True
    assert {r["pod"]: r["health"] for r in data["replicas"]} == {
        r.pod: "UP" for r in stack.replicas
    }


def test_rolling_restart_under_load_fails_no_request(stack: Stack, state_root: Path) -> None:
    before = current(state_root)
    lines: list[str] = []
    with Load(before.url, before.ca_path) as load:
        load.wait_for(50)
        after = restart(NAME, run_dir=state_root / NAME, progress=lines.append)
        load.wait_for(load.result.ok + 50)
    result = load.result
    assert result.failures == [], result.failures[:10]
    old_pods = {r.pod for r in before.replicas}
    new_pods = {r.pod for r in after.replicas}
    assert len(new_pods) == 3 and not old_pods & new_pods
    assert all(r.health == "UP" for r in after.replicas)
    new_hashes = {r.pod.split("-")[1] for r in after.replicas}
    assert len(new_hashes) == 1 and new_hashes != {r.pod.split("-")[1] for r in before.replicas}
    # Nodes are kept: the new pod of node k replaces the old pod of node k.
    assert sorted(r.node for r in after.replicas) == sorted(r.node for r in before.replicas)
    # The load really spanned the restart: old and new pods both answered it.
    assert old_pods & set(result.pods) and new_pods & set(result.pods), result.pods
    assert_all_gone([r.pid for r in before.replicas])
    assert any("draining" in line for line in lines), lines


def test_scale_up_and_down_under_load_fails_no_request(stack: Stack, state_root: Path) -> None:
    before = current(state_root)
    with Load(before.url, before.ca_path) as load:
        load.wait_for(50)
        bigger = scale(5, NAME, run_dir=state_root / NAME)
        assert len(bigger.replicas) == 5 and all(r.health == "UP" for r in bigger.replicas)
        load.wait_for(load.result.ok + 100)
        smaller = scale(2, NAME, run_dir=state_root / NAME)
        load.wait_for(load.result.ok + 50)
    result = load.result
    assert result.failures == [], result.failures[:10]
    assert len(smaller.replicas) == 2 and all(r.health == "UP" for r in smaller.replicas)
    added = {r.pod for r in bigger.replicas} - {r.pod for r in before.replicas}
    assert len(added) == 2 and added & set(result.pods), result.pods
    removed = [r for r in bigger.replicas if r.pod not in {s.pod for s in smaller.replicas}]
    assert len(removed) == 3
    assert_all_gone([r.pid for r in removed])
    assert current(state_root).config.replicas == 2
    # Back to three, as the tests that share this stack find it.
    back = scale(3, NAME, run_dir=state_root / NAME)
    assert len(back.replicas) == 3 and back.ready


def test_sigkilled_replica_is_taken_out_and_no_request_fails(
    stack: Stack, state_root: Path
) -> None:
    before = current(state_root)
    victim = before.replicas[1]
    with Load(before.url, before.ca_path) as load:
        load.wait_for(50)
        proc.signal_group(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        seen = current(state_root)
        while time.monotonic() < deadline:
            seen = current(state_root)
            dead = next(r for r in seen.replicas if r.pod == victim.pod)
            if dead.health == "DOWN":
                break
            time.sleep(0.1)
        load.wait_for(load.result.ok + 100)
    result = load.result
    assert result.failures == [], result.failures[:10]
    dead = next(r for r in seen.replicas if r.pod == victim.pod)
    assert dead.health == "DOWN" and not dead.running
    # The survivors carried the load after the kill.
    assert {r.pod for r in before.replicas} - {victim.pod} <= set(result.pods)
    # `status` says so: exit 1 while a replica is down, the dead one marked.
    shown = run_cli("status", "--name", NAME, env={"PODTALLY_STATE_DIR": str(state_root)})
    assert shown.returncode == 1
    assert re.search(rf"{victim.pod}.*\(exited\)\s+DOWN", shown.stdout), shown.stdout
    # A rolling restart heals the stack.
    healed = restart(NAME, run_dir=state_root / NAME)
    assert healed.ready and len(healed.replicas) == 3


def test_down_leaves_no_process_no_port_no_state(own_stack: Stack, own_root: Path) -> None:
    last = current(own_root)
    pids = stack_pids(last)
    ports = (last.config.http_port, last.config.https_port, last.config.stats_port)
    endpoints = [("127.0.0.1", p) for p in ports]
    endpoints += [(r.address, r.port) for r in last.replicas]
    assert all(bind_error(a, p) for a, p in endpoints)  # all listening
    lines: list[str] = []
    assert down(NAME, run_dir=own_root / NAME, progress=lines.append) is True
    assert_all_gone(pids)
    busy = [(a, p) for a, p in endpoints if bind_error(a, p)]
    assert busy == []
    assert not (own_root / NAME).exists()
    assert list(own_root.iterdir()) == []  # not even the lock file stays
    # Idempotent: a second down finds nothing, says so, and succeeds.
    assert down(NAME, run_dir=own_root / NAME) is False
    again = run_cli("down", "--name", NAME, env={"PODTALLY_STATE_DIR": str(own_root)})
    assert again.returncode == 0 and "not running" in again.stderr
    gone = run_cli("status", "--name", NAME, env={"PODTALLY_STATE_DIR": str(own_root)})
    assert gone.returncode == 3
    assert gone.stderr.startswith("error: ") and gone.stderr.count("\n") == 1
