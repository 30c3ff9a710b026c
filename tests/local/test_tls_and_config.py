"""The generated CA and certificate (checked with cryptography's own X.509 path validation and by
a real TLS handshake through HAProxy elsewhere), and the generated HAProxy configuration
(checked by `haproxy -c` itself, for every shape the stack can take). No ports used.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from podtally.errors import MissingDependencyError, PodtallyError, UsageError
from podtally.local import StackConfig, tls
from podtally.local import haproxy as hap
from podtally.local.models import SERVER_SLOTS


def _load(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


@pytest.fixture
def files(tmp_path: Path) -> tls.TlsFiles:
    return tls.generate(tmp_path / "tls", "t", host="podtally.example.test")


@pytest.mark.parametrize(
    "name",
    [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        x509.DNSName("podtally.example.test"),
    ],
)
def test_server_certificate_chains_to_the_ca_for_each_name(
    files: tls.TlsFiles, name: x509.DNSName | x509.IPAddress
) -> None:
    ca = _load(files.ca_cert)[0]
    leaf = _load(files.server_pem)[0]
    builder = PolicyBuilder().store(Store([ca])).time(dt.datetime.now(dt.UTC))
    verifier = builder.build_server_verifier(name)
    chain = verifier.verify(leaf, [])
    assert chain[-1] == ca


def test_certificate_does_not_cover_other_names(files: tls.TlsFiles) -> None:
    ca = _load(files.ca_cert)[0]
    leaf = _load(files.server_pem)[0]
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName("evil.test"))
    with pytest.raises(VerificationError):
        verifier.verify(leaf, [])


def test_another_stacks_ca_does_not_vouch_for_this_certificate(
    files: tls.TlsFiles, tmp_path: Path
) -> None:
    other = tls.generate(tmp_path / "other", "other")
    verifier = (
        PolicyBuilder()
        .store(Store(_load(other.ca_cert)))
        .build_server_verifier(x509.DNSName("localhost"))
    )
    with pytest.raises(VerificationError):
        verifier.verify(_load(files.server_pem)[0], [])


def test_private_keys_are_private(files: tls.TlsFiles) -> None:
    assert stat.S_IMODE(files.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.server_pem.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in files.server_pem.read_text()
    assert "PRIVATE KEY" not in files.ca_cert.read_text()


def _layout(tmp_path: Path, tls_on: bool, replicas: int) -> hap.Layout:
    cert = tls.generate(tmp_path / "tls", "t").server_pem if tls_on else None
    slots = [
        hap.Slot(n, f"127.0.0.{10 + n}", 18080) if n <= replicas else hap.Slot(n)
        for n in range(1, SERVER_SLOTS + 1)
    ]
    return hap.Layout(
        http_port=18080,
        https_port=18443 if tls_on else None,
        stats_port=18404,
        socket_path=tmp_path / "haproxy.sock",
        cert_path=cert,
        slots=slots,
    )


@pytest.mark.haproxy
@pytest.mark.parametrize(("tls_on", "replicas"), [(True, 1), (True, 3), (False, 6), (True, 64)])
def test_rendered_config_passes_haproxy_check(tmp_path: Path, tls_on: bool, replicas: int) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(hap.render(_layout(tmp_path, tls_on, replicas)))
    result = subprocess.run(
        [hap.find_binary(), "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = path.read_text()
    assert text.count("\n    server pod") == SERVER_SLOTS
    assert text.count(" disabled\n") == SERVER_SLOTS - replicas
    assert ("ssl-min-ver TLSv1.2" in text) is tls_on
    assert ("Strict-Transport-Security" in text) is tls_on


@pytest.mark.haproxy
def test_check_config_reports_haproxys_complaint(tmp_path: Path) -> None:
    path = tmp_path / "bad.cfg"
    path.write_text("frontend x\n    bind 127.0.0.1:18080\n    no-such-keyword\n")
    with pytest.raises(PodtallyError, match=r"bad\.cfg is invalid: .*no-such-keyword"):
        hap.check_config(hap.find_binary(), path)


def test_haproxy_override_pointing_nowhere_is_missing_dependency(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(hap.HAPROXY_ENV, str(tmp_path / "nope"))
    with pytest.raises(MissingDependencyError, match="haproxy not found"):
        hap.find_binary()


def test_stack_config_without_tls_ignores_the_https_port() -> None:
    assert StackConfig(tls=False, https_port=8080).https_port == 8080


def test_differences_are_data_naming_each_setting() -> None:
    running = StackConfig(replicas=2, drain_seconds=0.5)
    asked = StackConfig(replicas=3, nodes=2, tls=False, http_port=9000, host="app.test")
    found = {key: (mine, theirs) for key, mine, theirs in running.differences(asked)}
    assert found == {
        "replicas": (2, 3),
        "nodes": (None, 2),
        "tls": (True, False),
        "http_port": (8080, 9000),
        "host": (None, "app.test"),
        "drain_seconds": (0.5, 2.0),
    }
    # Without TLS on either side, the HTTPS port makes no difference.
    assert StackConfig(tls=False).differences(StackConfig(tls=False, https_port=9443)) == []


def test_differences_read_like_the_options_that_set_them() -> None:
    from podtally.cli.local import _as_option

    running = StackConfig(replicas=2, drain_seconds=0.5)
    asked = StackConfig(replicas=3, nodes=2, tls=False, http_port=9000, host="app.test")
    said = ", ".join(_as_option(*d) for d in running.differences(asked))
    assert "--replicas 2 (asked: --replicas 3)" in said
    assert "one node per replica (asked: --nodes 2)" in said
    assert "TLS (asked: --no-tls)" in said
    assert "--http-port 8080 (asked: --http-port 9000)" in said
    assert "no --host (asked: --host app.test)" in said
    assert "--drain-seconds 0.5 (asked: --drain-seconds 2)" in said
    for internal in ("None", "True", "False", "_port", "drain_seconds", "'"):
        assert internal not in said, said


_FLAGS = ("--http-port", "--https-port", "--stats-port", "--replicas", "--no-tls", "--name")


@pytest.mark.parametrize(
    ("kwargs", "setting", "message"),
    [
        ({"replicas": 65}, "replicas", "between 1 and 64"),
        ({"replicas": 0}, "replicas", "between 1 and 64"),
        ({"nodes": 0}, "nodes", "nodes must be"),
        ({"http_port": 0}, "http_port", "HTTP port"),
        ({"https_port": 70000}, "https_port", "HTTPS port"),
        ({"stats_port": 8443}, "stats_port", "must differ"),
        ({"name": "Bad_Name"}, "name", "DNS-1123"),
        ({"name": "x" * 47}, "name", "too long"),
        ({"namespace": "Prod"}, "namespace", "DNS-1123"),
        ({"host": "not a host"}, "host", "not a valid DNS hostname"),
        ({"drain_seconds": -1.0}, "drain_seconds", "drain seconds"),
        ({"ready_timeout": 0.0}, "ready_timeout", "ready timeout"),
    ],
)
def test_bad_values_name_their_setting_and_never_a_flag(
    kwargs: dict[str, object], setting: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        StackConfig(**kwargs)  # type: ignore[arg-type]
    error = caught.value
    assert error.setting == setting
    assert error.value == next(iter(kwargs.values()))
    assert not any(flag in str(error) for flag in _FLAGS), str(error)


def test_command_hints_name_the_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from podtally.local import command_hint

    monkeypatch.setenv("PODTALLY_STATE_DIR", str(tmp_path))
    assert command_hint("down", "podtally") == "'podtally down'"
    assert command_hint("down", "podtally", tmp_path / "podtally") == "'podtally down'"
    assert command_hint("status", "web") == "'podtally status --name web'"
    assert command_hint("scale N", "web") == "'podtally scale N --name web'"
    elsewhere = tmp_path / "other place" / "web"
    assert command_hint("down", "web", elsewhere) == (
        f"\"PODTALLY_STATE_DIR='{elsewhere.parent}' podtally down --name web\""
    )
