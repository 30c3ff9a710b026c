"""`podtally demo` words the verifier's certificate advice for itself: it has no ``--cacert``
(the demo verifies with its stack's own CA), so the advice names that CA file, never a flag the
command lacks and never the library's bare setting name."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

from podtally.cli.app import load
from podtally.cli.params import error_line, flag_namer
from podtally.errors import PodtallyError, worded
from podtally.verify.clients.transport import certificate_failure

CA = "/run/podtally-demo/tls/ca.pem"
PEER = "127.0.0.1:18443"


def _cert_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"certificate verify failed: {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


def _flags_of_its_own(text: str) -> list[str]:
    """The flags ``text`` names for the command itself (not ``podtally up --host``)."""
    return re.findall(r"(?<![a-z] )--[a-z][a-z-]*", re.sub(r"podtally [a-z]+ --[a-z-]+", "", text))


def test_the_demo_names_its_stacks_ca_where_verify_names_cacert() -> None:
    unknown = _cert_error(20, "unable to get local issuer certificate")
    advice = certificate_failure(unknown, PEER, host="127.0.0.1", cacert=CA, local_ca=True)
    demo = worded(advice.detail, flag_namer(load("demo")))
    assert demo == (
        f"TLS certificate of {PEER} not trusted: unable to get local issuer certificate "
        f"(it is not signed by the CA in the demo stack's CA file {CA})"
    )
    # `verify`, which takes --cacert, still names it.
    assert worded(advice.detail, flag_namer(load("verify"))).endswith(f"in --cacert {CA})")


def test_no_certificate_advice_names_a_flag_the_demo_lacks() -> None:
    command = load("demo")
    name = flag_namer(command)
    own = {opt for param in command.params for opt in param.opts}
    details = [
        certificate_failure(_cert_error(20, "self-signed"), PEER, cacert=CA, local_ca=True),
        certificate_failure(_cert_error(62, "Hostname mismatch"), PEER, host="x", local_ca=True),
        certificate_failure(_cert_error(10, "certificate has expired"), PEER, cacert=CA),
    ]
    for failure in details:
        text = worded(failure.detail, name)
        assert set(_flags_of_its_own(text)) <= own, text
        assert " cacert " not in text, text  # the library's name, which no demo user types


def test_an_error_about_the_demo_stacks_ca_names_the_file_as_the_demo_has_it() -> None:
    error = PodtallyError("cannot read it", setting="cacert", value=Path(CA))
    line = error_line(error, load("demo"))
    assert line == f"error: the demo stack's CA file {CA}: cannot read it"
