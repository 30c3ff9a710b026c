"""In-process tests of the local stack's pure parts: the HAProxy configuration writer, pod
naming, placement over nodes and zones, tracks, the runtime socket's path. No process, no port.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from podtally.errors import PodtallyError, UsageError
from podtally.local import StackConfig, Track, placement
from podtally.local import haproxy as hap
from podtally.local.models import LOCAL_DRAIN_SECONDS
from podtally.spec import AppSpec

_GENERATED = re.compile(r"^[bcdfghjklmnpqrstvwxz2456789]+$")


def _layout(tmp_path: Path, https: bool = True, filled: int = 2, slots: int = 4) -> hap.Layout:
    return hap.Layout(
        http_port=1080,
        https_port=1443 if https else None,
        stats_port=1404,
        socket_path=tmp_path / "haproxy.sock",
        cert_path=tmp_path / "server.pem" if https else None,
        slots=[
            hap.Slot(n, f"127.0.0.{10 + n}", 1080) if n <= filled else hap.Slot(n)
            for n in range(1, slots + 1)
        ],
    )


def _section(text: str, header: str) -> list[str]:
    """The lines of one section (``frontend https``, ``backend pods``) of a configuration."""
    lines = text.splitlines()
    start = lines.index(header)
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        body.append(line.strip())
    return body


def test_render_writes_one_server_line_per_slot_empty_ones_disabled(tmp_path: Path) -> None:
    text = hap.render(_layout(tmp_path, filled=2, slots=4))
    servers = [line for line in _section(text, "backend pods") if line.startswith("server ")]
    assert servers == [
        "server pod1 127.0.0.11:1080",
        "server pod2 127.0.0.12:1080",
        "server pod3 127.0.0.1:9 disabled",
        "server pod4 127.0.0.1:9 disabled",
    ]
    assert "http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost" in text


def test_render_with_tls_redirects_http_and_serves_https_with_hsts(tmp_path: Path) -> None:
    text = hap.render(_layout(tmp_path, https=True))
    http = _section(text, "frontend http")
    assert http[0] == "bind 127.0.0.1:1080"
    assert any("redirect location https://" in line and ":1443" in line for line in http)
    assert "default_backend pods" not in http
    https = _section(text, "frontend https")
    assert https[0] == f"bind 127.0.0.1:1443 ssl crt '{tmp_path / 'server.pem'}' alpn h2,http/1.1"
    assert f'http-response set-header Strict-Transport-Security "max-age={hap.HSTS_MAX_AGE}"' in (
        https
    )
    assert "ssl-min-ver TLSv1.2" in text
    stats = _section(text, "frontend stats")
    assert stats[0] == "bind 127.0.0.1:1404"


def test_render_without_tls_serves_plain_http_and_no_https_frontend(tmp_path: Path) -> None:
    text = hap.render(_layout(tmp_path, https=False))
    http = _section(text, "frontend http")
    assert (
        "default_backend pods" in http and "http-request set-header X-Forwarded-Proto http" in http
    )
    assert "frontend https" not in text and "ssl" not in text


def test_render_refuses_https_without_a_certificate(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    broken = hap.Layout(
        http_port=layout.http_port,
        https_port=layout.https_port,
        stats_port=layout.stats_port,
        socket_path=layout.socket_path,
        cert_path=None,
        slots=layout.slots,
    )
    with pytest.raises(PodtallyError, match="certificate"):
        hap.render(broken)


def test_render_quotes_paths_and_refuses_what_haproxy_would_rewrite(tmp_path: Path) -> None:
    spaced = tmp_path / "with space"
    text = hap.render(_layout(spaced))
    assert f"stats socket '{spaced / 'haproxy.sock'}' mode 600 level admin" in text
    with pytest.raises(UsageError, match="HAProxy's configuration cannot hold"):
        hap.render(_layout(tmp_path / "$HOME"))


def test_socket_path_stays_short_enough_for_a_unix_socket(tmp_path: Path) -> None:
    assert hap.socket_path(tmp_path) == str(tmp_path / "haproxy.sock")
    deep = tmp_path / ("d" * 120)
    far = hap.socket_path(deep)
    assert len(far) <= hap.MAX_SOCKET_PATH and far != hap.socket_path(tmp_path / ("e" * 120))
    # HAProxy refuses a stats socket path over 97 characters: one of 98 must move elsewhere.
    at_98 = Path("/" + "x" * (98 - len("/haproxy.sock") - 1))
    assert len(str(at_98 / "haproxy.sock")) == 98
    assert len(hap.socket_path(at_98)) <= 97
    assert far == hap.socket_path(deep)  # the same run directory, the same socket


def test_pod_names_look_like_a_deployments_and_avoid_taken_names() -> None:
    digest = placement.template_hash("web", "prod", 2.0, restarted_at="")
    assert len(digest) == 10 and _GENERATED.match(digest)
    assert digest == placement.template_hash("web", "prod", 2.0, restarted_at="")
    assert digest != placement.template_hash("web", "prod", 2.0, restarted_at="1700000000.0")
    assert digest != placement.template_hash("web", "prod", 3.0, restarted_at="")
    taken: set[str] = set()
    for _ in range(200):
        pod = placement.pod_name("web", digest, taken)
        name, template, suffix = pod.split("-")
        assert (name, template) == ("web", digest)
        assert len(suffix) == 5 and _GENERATED.match(suffix)
        assert pod not in taken
        taken.add(pod)


@pytest.mark.parametrize(("replicas", "nodes"), [(1, 1), (3, 3), (6, 3), (5, 2), (7, 7), (64, 64)])
def test_placement_spreads_replicas_over_nodes_and_nodes_over_zones(
    replicas: int, nodes: int
) -> None:
    placed = [placement.node_of(ordinal, nodes) for ordinal in range(replicas)]
    per_node = Counter(node for node, _ in placed)
    assert len(per_node) == min(replicas, nodes)
    assert max(per_node.values()) - min(per_node.values()) <= 1
    zone_of = dict(placed)
    assert len(zone_of) == len(per_node)  # one zone per node, always the same
    per_zone = Counter(zone_of.values())
    assert len(per_zone) == min(len(per_node), len(placement.ZONES))
    assert max(per_zone.values()) - min(per_zone.values()) <= 1
    assert placed[0] == ("local-node-1", "local-a")


def test_replica_addresses_start_after_the_balancers() -> None:
    assert [placement.replica_address(k) for k in (1, 2, 3)] == [
        "127.0.0.11",
        "127.0.0.12",
        "127.0.0.13",
    ]


def test_one_stable_track_carries_every_replica_and_request() -> None:
    assert StackConfig(replicas=4).tracks() == [Track("stable", 4, version="stable", weight=100)]


def test_local_defaults_come_from_the_app_spec_except_the_drain() -> None:
    local, spec = StackConfig(), AppSpec()
    assert (local.name, local.namespace, local.replicas, local.tls) == (
        spec.name,
        spec.namespace,
        spec.replicas,
        spec.tls,
    )
    assert local.drain_seconds == LOCAL_DRAIN_SECONDS


def test_already_up_error_carries_the_differences_as_data() -> None:
    from podtally.local import AlreadyUpError, Stack

    running = StackConfig(replicas=2)
    error = AlreadyUpError(
        "stack 'podtally' is already up",
        Stack(config=running),
        running.differences(StackConfig(replicas=4)),
    )
    assert error.differences == [("replicas", 2, 4)]
    assert error.exit_code == 2
    assert str(error) == "stack 'podtally' is already up; it runs with replicas=2 (asked 4)"
    assert "--" not in str(error)
