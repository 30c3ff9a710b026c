"""The verifier against the real local stack: replicas of `podtally serve` behind real HAProxy,
real TLS with the stack's own CA, and `podtally demo` end to end.

Every port comes from this worker's pool (:func:`tests.support.free_ports`), free on 127.0.0.1
and on the replicas' 127.0.0.11-13, so this file shares no port with another.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from podtally.local import Stack, StackConfig, down, up
from podtally.verify import VerifyOptions, parse_resolve, run
from podtally.verify.schema import RESULT_SCHEMA
from tests.processes import listening
from tests.support import (
    STACK_HOSTS,
    accepts,
    clean_env,
    free_port,
    free_ports,
    run_cli,
    wait_until,
)

HOST = "verify.podtally.test"


@pytest.fixture
def demo_ports() -> tuple[int, int, int]:
    """HTTP, HTTPS and stats ports for one `podtally demo` (``--ports``)."""
    http, https, stats = free_ports(3, STACK_HOSTS)
    return http, https, stats


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    http, https, stats = free_ports(3, STACK_HOSTS)
    config = StackConfig(
        name="podtally-verify-test",
        replicas=3,
        nodes=2,  # two pods on one node: the node and zone tallies must weight by pods
        http_port=http,
        https_port=https,
        stats_port=stats,
        host=HOST,
        run_dir=tmp_path_factory.mktemp("stack") / "run",
    )
    running = up(config)
    try:
        yield running
    finally:
        down(config.name, run_dir=config.run_dir)


def haproxy_totals(stack: Stack) -> dict[str, int]:
    """HAProxy's own count of requests per pod (``stot`` per server, from its stats CSV)."""
    with urllib.request.urlopen(stack.stats_url + ";csv", timeout=5) as response:
        text = response.read().decode()
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    by_server = {f"{r['pxname']}/{r['svname']}": int(r["stot"] or 0) for r in rows}
    return {replica.pod: by_server[replica.server] for replica in stack.replicas}


def test_1000_requests_through_haproxy_are_even_and_match_its_own_counts(stack: Stack) -> None:
    before = haproxy_totals(stack)
    assert stack.ca_path is not None
    result = run(VerifyOptions(stack.url, requests=1000, cacert=stack.ca_path, expect_pods=3))
    after = haproxy_totals(stack)

    assert result.verdict.result == "even", result.verdict.summary
    assert result.exit_code == 0 and result.requests == result.identified == 1000
    assert result.connections == 1000
    pods = {replica.pod for replica in stack.replicas}
    assert set(result.pod_counts()) == pods
    # Round robin over three servers: about 333 each (HAProxy runs a thread per core, so its
    # picks are not strictly in turn when requests overlap).
    assert all(300 <= count <= 367 for count in result.pod_counts().values())
    # What we tallied per pod is what HAProxy says it sent to that pod's server.
    assert result.pod_counts() == {pod: after[pod] - before[pod] for pod in pods}
    # Node, zone and IP come from the replicas themselves and match the stack's records.
    seen = {key.pod: key for key, _ in result.identities}
    for replica in stack.replicas:
        key = seen[replica.pod]
        assert (key.node, key.zone, key.ip, key.namespace) == (
            replica.node,
            replica.zone,
            replica.address,
            replica.namespace,
        )
    # Two of the three pods share a node (and its zone): that node is expected to get 2/3.
    pods_per_node: dict[str, list[str]] = {}
    for replica in stack.replicas:
        pods_per_node.setdefault(replica.node, []).append(replica.pod)
    assert sorted(len(p) for p in pods_per_node.values()) == [1, 2]
    nodes = result.dimension("node")
    assert nodes.judged and nodes.p_value is not None  # the chi-square: information only
    for row in nodes.rows:
        members = pods_per_node[row.name]
        assert row.pods == len(members)
        assert row.expected_share == pytest.approx(len(members) / 3)
        assert row.count == sum(result.pod_counts()[pod] for pod in members)
    zone_of = {replica.node: replica.zone for replica in stack.replicas}
    assert {r.name: r.pods for r in result.dimension("zone").rows} == {
        zone_of[r.name]: r.pods for r in nodes.rows
    }


def test_expect_more_pods_than_there_are_fails(stack: Stack) -> None:
    proc = run_cli(
        "verify", stack.url, "--cacert", str(stack.ca_path), "-n", "150", "--expect-pods", "4"
    )
    assert proc.returncode == 1, proc.stderr
    last = proc.stdout.rstrip().splitlines()[-1]
    assert last.startswith("verdict: FAIL: only 3 of 4 expected pods answered")
    assert "uneven: pod (no answer 1) never answered" in last


def test_one_replica_bypassing_the_balancer_fails_expect_pods(stack: Stack) -> None:
    replica = stack.replicas[0]
    url = f"http://{replica.address}:{replica.port}/"
    proc = run_cli("verify", url, "-n", "50", "--expect-pods", "3", "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["verdict"]["result"] == "uneven"  # two pods at 1/3 each never answered
    assert doc["verdict"]["failures"][0] == "only 1 of 3 expected pods answered"
    assert [p["pod"] for p in doc["pods"]] == [replica.pod]
    assert doc["pods"][0]["count"] == 50


def test_keep_alive_vs_new_connections_through_haproxy(stack: Stack) -> None:
    assert stack.ca_path is not None
    fresh = run(VerifyOptions(stack.url, requests=300, concurrency=5, cacert=stack.ca_path))
    kept = run(
        VerifyOptions(stack.url, requests=300, concurrency=5, cacert=stack.ca_path, keep_alive=True)
    )
    # 300 requests cannot show ±20% (inconclusive); this is about connections, not the verdict.
    assert fresh.failed == 0 and kept.failed == 0
    assert fresh.connections == 300 and kept.connections == 5
    # HTTP mode: each connection saw several pods, so requests are the unit.
    assert kept.assessment is not None and kept.assessment.unit.unit == "requests"
    assert fresh.connection_spread is None
    # HAProxy in HTTP mode balances each request, even on one client connection: every
    # connection reached all three pods. An L4 balancer would pin each to one pod instead.
    spread = kept.connection_spread
    assert spread is not None
    assert (spread.connections, spread.pinned, spread.most_pods) == (5, 0, 3)
    assert any("per-connection balancer" in note for note in kept.notes)
    assert not any("per-connection balancer" in note for note in fresh.notes)
    assert all(80 <= count <= 120 for count in kept.pod_counts().values())


def test_https_name_via_resolve_and_the_http_redirect(stack: Stack) -> None:
    assert stack.ca_path is not None
    https = stack.config.https_port
    named = run(
        VerifyOptions(
            f"https://{HOST}:{https}/",
            requests=60,
            cacert=stack.ca_path,
            resolve=(parse_resolve(f"{HOST}:{https}:127.0.0.1"),),
        )
    )
    assert named.failed == 0 and named.pods_answered == 3

    untrusted = run(VerifyOptions(stack.url, requests=3, concurrency=1))  # no --cacert
    assert untrusted.exit_code == 3 and dict(untrusted.errors)["tls"] == 3

    redirected = run(VerifyOptions(stack.http_url, requests=20))
    assert redirected.exit_code == 1 and redirected.status_codes == ((301, 20),)
    # The library names its setting; the CLI words it as --follow (tests/verify/test_verify_cli.py).
    assert "use follow or the https URL" in redirected.verdict.summary
    followed = run(VerifyOptions(stack.http_url, requests=60, follow=True, cacert=stack.ca_path))
    assert followed.failed == 0 and followed.pods_answered == 3


def test_demo_end_to_end(tmp_path: Path, demo_ports: tuple[int, int, int]) -> None:
    run_dir = tmp_path / "demo"
    ports = ",".join(map(str, demo_ports))
    proc = run_cli("demo", "-n", "2000", "--ports", ports, "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seed = [line for line in proc.stdout.splitlines() if re.match(r"^ +\d+ Pod: ", line)]
    assert len(seed) == 3
    assert sum(int(line.split()[0]) for line in seed) == 2000
    assert all("Pod: podtally-demo-" in line for line in seed)
    assert "verdict: PASS: even: every pod's share is within ±20% of 1/3" in proc.stdout
    assert f"verifying https://127.0.0.1:{demo_ports[1]}/" in proc.stderr
    assert "tearing down podtally-demo" in proc.stderr
    # Nothing left behind: the run directory is gone and the ports are free again.
    assert not run_dir.exists()
    assert not any(accepts("127.0.0.1", port, timeout=2) for port in demo_ports)


def test_demo_fails_with_the_verifiers_code_and_still_tears_down(
    tmp_path: Path, demo_ports: tuple[int, int, int]
) -> None:
    run_dir = tmp_path / "demo"
    proc = run_cli(
        "demo",
        "--replicas",
        "2",
        "-n",
        "40",
        "--expect-pods",
        "3",
        "--ports",
        ",".join(map(str, demo_ports)),
        "--run-dir",
        str(run_dir),
        "--json",
    )
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["verdict"]["failures"][0] == "only 2 of 3 expected pods answered"
    assert not run_dir.exists()
    assert not any(accepts("127.0.0.1", port, timeout=2) for port in demo_ports)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_interrupted_mid_run_still_tears_down(
    tmp_path: Path, signum: int, demo_ports: tuple[int, int, int]
) -> None:
    ports = demo_ports
    run_dir = tmp_path / "demo"
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "podtally",
                "demo",
                "--duration",
                "60s",
                "--rate",
                "50",
                "--ports",
                ",".join(map(str, ports)),
                "--run-dir",
                str(run_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=clean_env(),
        )
    try:
        wait_until(
            lambda: "verifying" in log.read_text(), "demo verifying", seconds=60, proc=proc, log=log
        )
        time.sleep(0.5)  # mid-run: requests in flight
        proc.send_signal(signum)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"demo still running 60 s after signal {signum}:\n{log.read_text()}")
        assert code == 130
        out = proc.stdout.read().decode() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
    text = log.read_text()
    assert "tearing down podtally-demo" in text and text.endswith("\nerror: interrupted\n")
    assert "Traceback" not in text
    # What was verified before the signal is reported, marked as partial.
    assert re.search(r"^interrupted\s+after \d+ requests, [\d.]+ of 60 s", out, re.M), out
    assert out.rstrip().splitlines()[-1].startswith("verdict: INTERRUPTED; on what was collected")
    assert not run_dir.exists()
    assert not any(accepts("127.0.0.1", port, timeout=2) for port in ports)


def test_demo_into_a_full_disk_is_exit_3_and_still_tears_down(
    tmp_path: Path, demo_ports: tuple[int, int, int]
) -> None:
    run_dir = tmp_path / "demo"
    ports = demo_ports
    with open("/dev/full", "w") as full:
        proc = run_cli(
            *("demo", "-n", "60", "--ports", ",".join(map(str, ports))),
            *("--run-dir", str(run_dir)),
            stdout=full,
        )
    # Not 1 (uneven): the verdict was never written.
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-1] == "error: cannot write output: No space left on device"
    assert "tearing down podtally-demo ..." in lines and "Traceback" not in proc.stderr
    assert not run_dir.exists()
    assert not any(accepts("127.0.0.1", port, timeout=2) for port in ports)


@pytest.fixture(scope="module")
def l4_balancer(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real HAProxy in TCP mode (as an NLB or kube-proxy: per connection) over the replicas."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert os.access(haproxy, os.X_OK), "haproxy is not installed (apt-get install haproxy)"
    directory = tmp_path_factory.mktemp("l4")
    servers = "\n".join(
        f"    server s{i} {r.address}:{r.port}" for i, r in enumerate(stack.replicas)
    )
    l4_port = free_port()
    config = directory / "haproxy.cfg"
    config.write_text(
        "global\n    maxconn 1000\n"
        "defaults\n    mode tcp\n    timeout connect 2s\n"
        "    timeout client 30s\n    timeout server 30s\n"
        f"frontend l4\n    bind 127.0.0.1:{l4_port}\n    default_backend pods\n"
        f"backend pods\n    balance roundrobin\n{servers}\n"
    )
    argv = [haproxy, "-db", "-f", str(config)]
    with listening(argv, "127.0.0.1", l4_port, directory / "haproxy.log", seconds=30):
        yield f"http://127.0.0.1:{l4_port}/"


def test_keep_alive_through_a_per_connection_balancer_is_pinned(l4_balancer: str) -> None:
    fresh = run(VerifyOptions(l4_balancer, requests=150, concurrency=2, expect_pods=3))
    # Round robin per connection: about 50 each (not exactly: HAProxy's round robin is not
    # strictly ordered when connections open and close concurrently).
    counts = sorted(fresh.pod_counts().values())
    assert fresh.failed == 0 and len(counts) == 3 and all(40 <= c <= 60 for c in counts), counts
    assert fresh.assessment is not None and fresh.assessment.unit.unit == "requests"

    kept = run(
        VerifyOptions(l4_balancer, requests=150, concurrency=2, expect_pods=3, keep_alive=True)
    )
    # Two connections, each pinned to one pod: the third pod never sees a request.
    assert kept.connections == 2
    assert kept.connection_spread is not None
    assert (kept.connection_spread.connections, kept.connection_spread.pinned) == (2, 2)
    assert kept.pods_answered == 2 and kept.exit_code == 1
    assert "only 2 of 3 expected pods answered" in kept.verdict.failures
    assert any("every connection stayed on one pod" in note for note in kept.notes)
    # The decision counts the 2 connections, not the 150 requests.
    assert kept.assessment is not None and kept.assessment.unit.unit == "connections"
    assert kept.assessment.judged[0].total == 2
