"""Kubernetes' Service data path in kube-proxy's iptables mode, in a private network namespace.

The nat rules are the ones kube-proxy writes for a ClusterIP Service (pkg/proxy/iptables):
``KUBE-SERVICES`` (hooked from OUTPUT and PREROUTING) matches the Service's address and port
and jumps to ``KUBE-SVC-<hash>``; that chain has one rule per endpoint, in order, endpoint i of
n with ``-m statistic --mode random --probability 1/(n-i)`` and the last with no match, each
jumping to ``KUBE-SEP-<hash>``, which DNATs to the endpoint. The choice is made on a
connection's first packet; conntrack applies it to the rest, so the unit is the connection.
Left out: ``KUBE-MARK-MASQ`` / ``KUBE-POSTROUTING`` (masquerade for hairpin and off-node
traffic), which loopback-only traffic never needs.

The Service address lives in 127.0.0.0/8 (127.0.0.200:80 by default), so nothing ever names a
non-loopback address. The client runs inside the namespace too, so its packets pass the nat
OUTPUT chain. ``route_localnet`` stays 0: it is only needed when a packet that arrived on a
non-loopback interface is routed to 127.x (kube-proxy sets it for NodePorts on localhost);
locally generated traffic DNATed to 127.x in OUTPUT is delivered without it.

The namespace: a holder process started with ``unshare --net`` (as root) or
``unshare --net --map-root-user`` (without root); everything else enters it with ``nsenter``.
The holder reads its stdin until EOF, so the namespace goes away with this test process even
if it is killed, and nothing is left in /run/netns.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.balancers import replicas
from tests.balancers.truth import Backend, Balancer, Truth
from tests.processes import die_with_parent
from tests.support import run_captured

SERVICE = "balancers/web:http"  # namespace/name:port, as kube-proxy names a service port
PROTOCOL = "tcp"
SERVICE_HOST = "127.0.0.200"
SERVICE_PORT = 80
POD_PORT = 8080


def _hash(text: str) -> str:
    # kube-proxy: base32(sha256(...)) cut to 16 characters.
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def service_chain(service: str = SERVICE, protocol: str = PROTOCOL) -> str:
    return "KUBE-SVC-" + _hash(service + protocol)


def endpoint_chain(endpoint: str, service: str = SERVICE, protocol: str = PROTOCOL) -> str:
    return "KUBE-SEP-" + _hash(service + protocol + endpoint)


def probability(index: int, count: int) -> str:
    """Endpoint ``index`` of ``count`` (from 0) is picked with 1/(count-index) of what is left."""
    return f"{1.0 / (count - index):0.10f}"


def rules(endpoints: Sequence[str], host: str = SERVICE_HOST, port: int = SERVICE_PORT) -> str:
    """The nat table for one Service, in ``iptables-restore`` form."""
    svc = service_chain()
    seps = [endpoint_chain(e) for e in endpoints]
    lines = ["*nat", ":KUBE-SERVICES - [0:0]", f":{svc} - [0:0]"]
    lines += [f":{sep} - [0:0]" for sep in seps]
    portals = '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
    lines += [f"-A OUTPUT {portals}", f"-A PREROUTING {portals}"]
    lines.append(
        f"-A KUBE-SERVICES -d {host}/32 -p tcp "
        f'-m comment --comment "{SERVICE} cluster IP" -m tcp --dport {port} -j {svc}'
    )
    for index, (endpoint, sep) in enumerate(zip(endpoints, seps, strict=True)):
        statistic = ""
        if index < len(endpoints) - 1:
            p = probability(index, len(endpoints))
            statistic = f"-m statistic --mode random --probability {p} "
        lines.append(f'-A {svc} -m comment --comment "{SERVICE} -> {endpoint}" {statistic}-j {sep}')
    for endpoint, sep in zip(endpoints, seps, strict=True):
        lines.append(
            f'-A {sep} -p tcp -m comment --comment "{SERVICE}" -m tcp '
            f"-j DNAT --to-destination {endpoint}"
        )
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


@dataclass
class Namespace:
    """A private network namespace held open by one process; ``prefix`` runs a command in it."""

    holder: subprocess.Popen[bytes]
    prefix: tuple[str, ...]

    def run(
        self, argv: Sequence[str], stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_captured([*self.prefix, *argv], stdin=stdin)

    def check(self, argv: Sequence[str], stdin: str | None = None) -> str:
        done = self.run(argv, stdin)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: {done.stderr.strip()}")
        return done.stdout


@contextlib.contextmanager
def namespace() -> Iterator[Namespace]:
    """A new network namespace with lo up; skip the test where none can be made."""
    for tool, package in (("unshare", "util-linux"), ("nsenter", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: apt-get install {package})")
    root = os.geteuid() == 0
    unshare = ["unshare", "--net"] if root else ["unshare", "--net", "--map-root-user"]
    holder = subprocess.Popen(
        [*die_with_parent(), *unshare, "--", "cat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Wait until the holder has left our namespace (unshare has exec'd cat).
        ours = os.readlink("/proc/self/ns/net")
        for _ in range(500):  # 5 s
            if holder.poll() is not None:
                err = holder.stderr.read().decode().strip() if holder.stderr else ""
                how = "as root" if root else "without root, with a user namespace"
                pytest.skip(f"no private network namespace ({how}): {' '.join(unshare)}: {err}")
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{holder.pid}/ns/net") != ours:
                    break
            time.sleep(0.01)
        else:
            raise AssertionError("unshare never entered a new network namespace")
        target = ["nsenter", "--target", str(holder.pid)]
        prefix = (*target, "--net") if root else (*target, "--user", "--net")
        ns = Namespace(holder, tuple(prefix))
        ns.check(["ip", "link", "set", "lo", "up"])
        yield ns
    finally:
        if holder.stdin:
            holder.stdin.close()
        try:
            holder.wait(timeout=5)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait(timeout=5)


@contextlib.contextmanager
def service(tmp: Path, specs: Sequence[replicas.PodSpec] | None = None) -> Iterator[Balancer]:
    """A ClusterIP Service at 127.0.0.200:80 over real replicas, all inside one namespace."""
    if shutil.which("iptables-restore") is None and not os.access(
        "/usr/sbin/iptables-restore", os.X_OK
    ):
        pytest.skip("iptables is not installed (Debian: apt-get install iptables)")
    if specs is None:
        hosts = [f"127.0.0.{11 + k}" for k in range(3)]
        specs = replicas.web_pods(hosts, [POD_PORT] * len(hosts))
    endpoints = [f"{s.host}:{s.port}" for s in specs]
    table = rules(endpoints)
    with namespace() as ns:
        restore = ns.run(["iptables-restore", "--noflush"], stdin=table)
        if restore.returncode != 0:
            pytest.skip(f"iptables cannot write the nat table here: {restore.stderr.strip()}")
        (tmp / "kube-proxy.rules").write_text(table)
        with replicas.running(tmp, specs, prefix=ns.prefix):
            backends = tuple(
                Backend(s.pod, s.host, s.port, node=s.node, zone=s.zone, version=s.version)
                for s in specs
            )
            yield Balancer(
                name="kube-proxy-iptables",
                url=f"http://{SERVICE_HOST}:{SERVICE_PORT}/",
                backends=backends,
                truth=Truth(
                    unit="connection",
                    shares={b.pod: 1 / len(backends) for b in backends},
                    one_pod_per_connection=True,
                    summary=(
                        f"kube-proxy iptables mode, {len(backends)} endpoints: "
                        "a uniform random choice per new connection, kept by conntrack"
                    ),
                ),
                prefix=ns.prefix,
                config=table,
            )
