"""The library names settings; the command line words them with its flags."""

from __future__ import annotations

from pathlib import Path

from podtally.cli.app import load
from podtally.cli.params import error_line, flag_namer
from podtally.errors import Phrase, PodtallyError, Setting, UsageError, worded
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
