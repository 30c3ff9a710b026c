"""The wire contract in-process: the text format's producer and parser, and the names' shape.

The literal names below are the project's published interface (README, DESIGN): spelling them
out here, instead of reading them back from the module, is what makes a rename fail a test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from podtally import contract
from podtally.contract import FIELDS, FieldName, format_text, parse_text

VALUES: dict[FieldName, str] = {
    "pod": "web-7d4b9c8f6d-x2k9p",
    "node": "ip-10-0-1-23.ec2.internal",
    "namespace": "shop",
    "ip": "10.0.1.57",
    "zone": "eu-west-1a",
    "version": "canary",
}


def test_text_is_the_seed_lines_then_zone_and_version() -> None:
    assert format_text(VALUES) == (
        "Pod: web-7d4b9c8f6d-x2k9p\n"
        "Node: ip-10-0-1-23.ec2.internal\n"
        "Namespace: shop\n"
        "IP: 10.0.1.57\n"
        "Zone: eu-west-1a\n"
        "Version: canary\n"
    )


def test_order_is_the_contracts_whatever_order_the_values_come_in() -> None:
    shuffled = dict(reversed(list(VALUES.items())))
    assert format_text(shuffled) == format_text(VALUES)


def test_optional_lines_are_left_out_when_absent() -> None:
    seed = {k: v for k, v in VALUES.items() if k in contract.SEED_FIELDS}
    assert format_text(seed).splitlines() == [
        "Pod: web-7d4b9c8f6d-x2k9p",
        "Node: ip-10-0-1-23.ec2.internal",
        "Namespace: shop",
        "IP: 10.0.1.57",
    ]


def test_the_seed_lines_are_required() -> None:
    with pytest.raises(ValueError, match="needs node"):
        format_text({"pod": "p", "namespace": "n", "ip": "i"})


@pytest.mark.parametrize(
    "values",
    [
        VALUES,
        {k: v for k, v in VALUES.items() if k != "zone"},
        {**VALUES, "pod": "a:b:c"},  # a colon in a value stays in the value
    ],
)
def test_round_trip(values: dict[FieldName, str]) -> None:
    assert parse_text(format_text(values)) == values
    assert parse_text(format_text(values).encode()) == values


def test_parser_takes_what_other_servers_write() -> None:
    """nginx pages of the original exercise: any case, extra spaces, CRLF, other lines around."""
    body = (
        b"<pre>\r\n  pod :  nginx-a \r\nNODE: n1\r\nnamespace: d\r\n"
        b"Server: nginx\r\nip: 1.2.3.4\r\n"
    )
    assert parse_text(body) == {"pod": "nginx-a", "node": "n1", "namespace": "d", "ip": "1.2.3.4"}


def test_parser_keeps_the_first_value_and_skips_empty_ones() -> None:
    assert parse_text("Pod:\nPod: first\nPod: second\nVersion: \n") == {"pod": "first"}


@pytest.mark.parametrize("body", [b"", b"hello\n", b"Node: n\nIP: 1.2.3.4\n", b"\xff\xfe"])
def test_no_pod_line_is_no_identity(body: bytes) -> None:
    assert parse_text(body) is None


def test_every_field_has_an_env_name_a_header_and_a_line() -> None:
    assert FIELDS == ("pod", "node", "namespace", "ip", "zone", "version")
    assert set(contract.ENV) == set(contract.HEADERS) == set(contract.TEXT_LABELS) == set(FIELDS)
    # The header names the README and the manifests document, field by field in FIELDS' order.
    headers = "X-Pod-Name X-Node-Name X-Pod-Namespace X-Pod-IP X-Zone X-Pod-Version"
    assert [contract.HEADERS[field] for field in FIELDS] == headers.split()
    assert contract.ENV_NAMES == (
        "POD_NAME",
        "K8_POD_NAME",
        "NODE_NAME",
        "K8_NODE_NAME",
        "POD_NAMESPACE",
        "K8_POD_NAMESPACE",
        "POD_IP",
        "K8_POD_IP",
        "ZONE",
        "POD_VERSION",
    )
    assert contract.header_keys()[b"x-pod-version"] == "version"


def test_the_contract_imports_nothing_of_podtally() -> None:
    """Any part may import it, so it may import no part (no cycles, ever)."""
    source = Path(contract.__file__).read_text(encoding="utf-8")
    assert "import podtally" not in source and "from podtally" not in source


def test_spec_does_not_reach_into_the_service() -> None:
    """The spec (and so the manifests and the cloud program) loads without the service."""
    code = "import sys, podtally.spec; print(sorted(m for m in sys.modules if 'service' in m))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
