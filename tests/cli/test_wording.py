"""The library names settings; the command line words them with its flags."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from podtally.cli.app import load
from podtally.cli.params import error_line, flag_namer
from podtally.errors import Phrase, PodtallyError, Setting, UsageError, worded
from podtally.spec import AppSpec
from podtally.verify.clients.transport import certificate_failure
from podtally.verify.probe import FIELDS, Observation
from podtally.verify.report import observation_line
from podtally.verify.saved_run import observation_from
from podtally.verify.tally import judge


def test_a_phrase_is_a_str_with_library_names_until_worded() -> None:
    phrase = Phrase("use ", Setting("follow"), " or the https URL")
    assert phrase == "use follow or the https URL"
    assert phrase.worded(lambda s: f"--{s}") == "use --follow or the https URL"
    joined = Phrase.joined("; ", ["plain", phrase])
    assert joined == "plain; use follow or the https URL"
    assert worded(joined, lambda s: f"--{s}") == "plain; use --follow or the https URL"
    assert worded("plain text", lambda s: f"--{s}") == "plain text"


def test_error_lines_use_the_commands_flags() -> None:
    verify = load("verify")
    name = flag_namer(verify)
    assert name("max_error_rate") == "--max-error-rate"
    assert name("requests") == "--requests"  # the long form, not -n
    assert name("headers") == "--header"
    assert name("url") == "URL"
    assert name("unknown_setting") == "unknown_setting"
    error = UsageError("must be within 0..1", setting="max_error_rate", value=2.0)
    assert error_line(error, verify) == "error: --max-error-rate 2: must be within 0..1"
    assert str(error) == "max_error_rate=2.0: must be within 0..1"  # a library caller's view
    path = PodtallyError("no such file", setting="cacert", value=Path("/x"))
    assert error_line(path, verify) == "error: --cacert /x: no such file"
    assert error_line(PodtallyError("plain"), verify) == "error: plain"


def test_the_verdict_names_the_error_budget_setting() -> None:
    verdict = judge(None, requests=10, responses=5, errors={"refused": 5})
    assert verdict.summary.endswith("budget 0.0% (max_error_rate)")
    flag = worded(verdict.summary, lambda s: "--" + s.replace("_", "-"))
    assert flag.endswith("budget 0.0% (--max-error-rate)")


def _cert_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"certificate verify failed: {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


def test_certificate_advice_names_settings_until_the_command_line_words_it() -> None:
    verify = flag_namer(load("verify"))
    unknown = _cert_error(20, "unable to get local issuer certificate")
    plain = certificate_failure(unknown, "127.0.0.1:8443").detail
    assert plain.endswith("unable to get local issuer certificate (use cacert FILE)")
    assert worded(plain, verify).endswith("(use --cacert FILE)")
    other = certificate_failure(unknown, "127.0.0.1:8443", cacert="/ca.pem").detail
    assert other.endswith("(it is not signed by the CA in cacert /ca.pem)")
    assert worded(other, verify).endswith("(it is not signed by the CA in --cacert /ca.pem)")
    # The local stack's certificate names its `host`: advice for another command, `up`.
    mismatch = _cert_error(62, "Hostname mismatch")
    restart = certificate_failure(mismatch, "127.0.0.1:8443", host="app.test", local_ca=True)
    assert restart.detail == (
        "TLS certificate of 127.0.0.1:8443 does not name app.test (hostname mismatch): "
        "restart the local stack with host app.test"
    )
    assert worded(restart.detail, verify).endswith(
        ": restart the local stack with podtally up --host app.test"
    )
    assert worded(restart.detail, flag_namer(load("up"))).endswith("with --host app.test")


def test_a_timeout_and_an_unreachable_verdict_keep_the_setting() -> None:
    said = Phrase("no response from 127.0.0.1:80 within 5s (", Setting("timeout"), ")")
    verdict = judge(None, requests=1, responses=0, errors={"timeout": 1}, unreachable_reason=said)
    assert verdict.summary == "nothing answered: no response from 127.0.0.1:80 within 5s (timeout)"
    verify = flag_namer(load("verify"))
    assert worded(verdict.summary, verify).endswith("within 5s (--timeout)")
    assert worded(verdict.failures[0], verify).endswith("within 5s (--timeout)")
    # The --observations file holds the detail as the command worded it: plain text.
    seen = Observation.of(
        [None] * len(FIELDS),
        index=0,
        start=0.0,
        latency=5.0,
        status=None,
        source=None,
        error="timeout",
        detail=said,
        connection=None,
        peer="127.0.0.1:80",
        location=None,
        redirects=0,
    )
    assert json.loads(observation_line(seen))["detail"].endswith("(timeout)")
    line = observation_line(seen, verify)
    assert json.loads(line)["detail"].endswith("(--timeout)")
    assert observation_from(json.loads(line)).detail == worded(said, verify)


# AppSpec's errors: (settings, what a library caller reads, what `podtally manifests` prints).
SPEC_ERRORS: dict[str, tuple[dict[str, object], str, str]] = {
    "max-replicas": ({"max_replicas": 5}, "autoscaling (autoscaling)", "autoscaling (--autoscale)"),
    "ip-host": ({"host": "10.0.0.1"}, "(leave host out to", "(leave --host out to"),
    "class-without-host": (
        {"ingress_class": "nginx"},
        "needs a host (host)",
        "needs a host (--host)",
    ),
    "eks-without-tls": (
        {"profile": "eks"},
        "certificate ARN (certificate_arn), or a host (host) for",
        "certificate ARN (--certificate-arn), or a host (--host) for",
    ),
}


@pytest.mark.parametrize("case", sorted(SPEC_ERRORS))
def test_app_spec_errors_name_its_fields(case: str) -> None:
    settings, plain, flags = SPEC_ERRORS[case]
    with pytest.raises(UsageError) as caught:
        AppSpec(**settings)  # type: ignore[arg-type]
    assert plain in str(caught.value)
    assert flags in error_line(caught.value, load("manifests"))
    assert "--" not in str(caught.value)
