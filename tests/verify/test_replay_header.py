"""An ``--observations`` file says how its run was judged: `podtally report FILE` with no option
judges it as the run did.

The runs are real (`podtally verify` as a subprocess against a loopback round-robin stub); the
wording of the notes on stderr is checked in-process (click's CliRunner around the real
``main``) on files written here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from podtally.contract import OBSERVATIONS_SCHEMA_ID
from podtally.verify.saved_run import load_run
from podtally.verify.schema import OBSERVATIONS_HEADER_SCHEMA
from tests.support import cli_in_process, free_port, run_cli
from tests.verify.conftest import StubServer, identity_responder
from tests.verify.saved_files import PODS, header, observation, options


@pytest.fixture
def balanced(stub: Any) -> Iterator[StubServer]:
    yield stub("127.0.0.1", free_port(), identity_responder(PODS))


def _fact(report: str, key: str) -> str:
    """The value of one ``key  value`` line of a text report."""
    (value,) = [
        line[len(key) :].strip() for line in report.splitlines() if line.startswith(key + " ")
    ]
    return value


def _judged_lines(text: str) -> list[str]:
    """The text report without what timing changes: the requests line (elapsed, rate) and the
    latency line (the file keeps each latency to the microsecond, so a percentile shown to
    0.01 ms can round the other way: 7.79 ms live, 7.78 ms again)."""
    timing = ("requests ", "latency ")
    return [line for line in text.splitlines() if not line.startswith(timing)]


# --- the run's own judgement, with no option ----------------------------------------------------
def test_a_fixed_run_is_judged_again_as_fixed_with_no_option(
    balanced: StubServer, tmp_path: Path
) -> None:
    """900 round-robin requests judged once (-n) are even at alpha 0.01; auto mode's looks over
    the same answers never get there. Before the settings line, `report FILE` judged them in
    auto mode (inconclusive, exit 1) and at verify's default alpha."""
    saved = tmp_path / "fixed.jsonl"
    args = ["-n", "900", "-c", "3", "--expect-pods", "3", "--alpha", "0.01"]
    live = run_cli("verify", balanced.url, "--observations", str(saved), *args)
    assert live.returncode == 0, live.stderr
    assert "simultaneous 99% intervals over 900 requests" in live.stdout.splitlines()[-1]
    again = run_cli("report", str(saved))
    assert again.returncode == 0, again.stderr
    assert _judged_lines(again.stdout) == _judged_lines(live.stdout)
    assert _fact(again.stdout, "mode").startswith("fixed: judged once, at the end")
    # stderr says where the settings came from (those not at verify's defaults)
    assert again.stderr == (
        "from fixed.jsonl, as the run had them: --fixed (-n 900), --alpha 0.01, --expect-pods 3\n"
    )
    # the same in JSON: the run's options, decision and verdict
    document = json.loads(run_cli("report", str(saved), "--json").stdout)
    assert document["options"]["requests"] == 900 and not document["options"]["auto"]
    assert document["decision"]["mode"] == "fixed"
    assert document["decision"]["alpha"] == 0.01
    assert document["verdict"]["result"] == "even"


def test_an_auto_run_with_a_split_is_judged_again_with_no_option(
    balanced: StubServer, tmp_path: Path
) -> None:
    """Auto mode, -c 7 (its looks), an expected split the round robin does not follow: the run
    stops at the look that showed it uneven; `report FILE` replays those looks with that split.
    (`report` had no --expect-split before: the file was judged as an even spread.)"""
    saved = tmp_path / "auto.jsonl"
    split = "pod=pod-a:2,pod-b:1,pod-c:1"
    args = ["-c", "7", "--expect-split", split, "--tolerance", "0.1", "--json"]
    live = run_cli("verify", balanced.url, "--observations", str(saved), *args)
    assert live.returncode == 1, live.stderr
    run = json.loads(live.stdout)
    assert run["verdict"]["result"] == "uneven" and run["decision"]["mode"] == "sequential"
    again = run_cli("report", str(saved), "--json")
    assert again.returncode == 1, again.stderr
    judged = json.loads(again.stdout)
    for key in ("verdict", "decision", "pods", "errors", "status_codes", "url"):
        assert judged[key] == run[key], key
    assert {k: v for k, v in judged["options"].items() if k != "max_requests"} == {
        k: v for k, v in run["options"].items() if k != "max_requests"
    }
    assert again.stderr == (
        "from auto.jsonl, as the run had them: --concurrency 7, --tolerance 0.1, "
        f"--expect-split {split}\n"
    )


def test_the_settings_line_is_the_json_documents_options(
    balanced: StubServer, tmp_path: Path
) -> None:
    saved = tmp_path / "run.jsonl"
    live = run_cli(
        "verify", balanced.url, "-n", "30", "--json", "--observations", str(saved), "--keep-alive"
    )
    assert live.returncode == 1, live.stderr
    first, *rest, last = saved.read_text().splitlines()
    header = json.loads(first)
    assert json.loads(last) == {"end": "complete", "requests": 30}  # how the run ended
    jsonschema.validate(header, OBSERVATIONS_HEADER_SCHEMA)
    assert header["schema"] == OBSERVATIONS_SCHEMA_ID == OBSERVATIONS_HEADER_SCHEMA["$id"]
    document = json.loads(live.stdout)
    assert header["url"] == document["url"] and header["options"] == document["options"]
    assert len(rest) == 30 and all("schema" not in json.loads(line) for line in rest)
    saved_run = load_run(saved)
    assert saved_run.options is not None and saved_run.options.keep_alive
    assert saved_run.options.requests == 30 and len(saved_run.observations) == 30


def test_observations_on_stdout_start_with_the_settings(balanced: StubServer) -> None:
    piped = run_cli("verify", balanced.url, "-n", "5", "--observations", "-")
    lines = piped.stdout.splitlines()
    assert json.loads(lines[0])["schema"] == OBSERVATIONS_SCHEMA_ID
    assert sorted(json.loads(line)["index"] for line in lines[1:-1]) == list(range(5))
    assert "verdict: " in piped.stderr  # the report went to stderr


# --- in-process: older files, options given, corrupt settings lines -----------------------------
def _write(path: Path, header: Mapping[str, object] | str | None, n: int = 900) -> Path:
    """A file of ``n`` observations, with this settings line; one of this format (or a corrupt
    settings line) ends with how the run ended: complete."""
    lines = [] if header is None else [header if isinstance(header, str) else json.dumps(header)]
    lines += [json.dumps(observation(i, PODS[i % 3])) for i in range(n)]
    if header is not None:
        lines.append(json.dumps({"end": "complete", "requests": n}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_hand_written_settings_line_is_valid() -> None:
    jsonschema.validate(header(), OBSERVATIONS_HEADER_SCHEMA)


def test_an_older_file_without_settings_is_judged_as_before(tmp_path: Path) -> None:
    old = _write(tmp_path / "old.jsonl", None)
    auto = cli_in_process("report", str(old), "--expect-pods", "3")
    assert auto.code == 1 and _fact(auto.out, "mode").startswith("auto: sent until even or uneven")
    assert auto.err == (
        "note: old.jsonl does not record its run's settings (an older podtally wrote it): "
        "judged with the options given here, in auto mode unless --fixed\n"
    )
    fixed = cli_in_process("report", str(old), "--fixed", "--expect-pods", "3")
    assert fixed.code == 0 and _fact(fixed.out, "mode").startswith("fixed: judged once, at the end")
    assert _fact(fixed.out, "target").startswith("http://observations.invalid/")


def test_the_same_file_with_settings_is_judged_as_the_run_was(tmp_path: Path) -> None:
    saved = _write(tmp_path / "new.jsonl", header())
    ran = cli_in_process("report", str(saved))
    assert ran.code == 0, ran
    assert _fact(ran.out, "mode").startswith("fixed: judged once, at the end")
    assert _fact(ran.out, "target").startswith("http://lb.test/")
    assert ran.out.splitlines()[-1].startswith("verdict: PASS: even: every pod's share")
    # options that agree with the run's are no override: no note
    same = cli_in_process("report", str(saved), "--fixed", "--expect-pods", "3", "-c", "3")
    assert same.out == ran.out and "note" not in same.err


def test_an_option_against_the_run_is_honoured_with_one_note(tmp_path: Path) -> None:
    """--auto on a fixed run: judged at auto mode's looks (900 answers do not decide them:
    inconclusive), and --expect-pods 4 replaces the run's 3; one note line says both."""
    saved = _write(tmp_path / "fixed.jsonl", header())
    ran = cli_in_process("report", str(saved), "--auto", "--expect-pods", "4")
    assert ran.code == 1
    assert _fact(ran.out, "mode").startswith("auto: sent until even or uneven")
    assert "only 3 of 4 expected pods answered" in ran.out.splitlines()[-1]
    notes = [line for line in ran.err.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: judged with --auto (the run's: --fixed (-n 900)), --expect-pods 4 (the run's: 3), "
        "as given here: not the judgement the run made"
    ]
    assert ran.err.splitlines()[0] == "from fixed.jsonl, as the run had them: --concurrency 3"
    # a split given replaces the run's --expect-pods: both named
    split = cli_in_process("report", str(saved), "--expect-split", "pod=pod-a:1,pod-b:1,pod-c:1")
    assert split.code == 0, split
    assert split.err.splitlines()[-1] == (
        "note: judged with --expect-pods none (the run's: 3), --expect-split "
        "pod=pod-a:1,pod-b:1,pod-c:1 (the run's: none), as given here: not the judgement the "
        "run made"
    )
    # --fixed on an auto run: judged once on everything
    auto = _write(tmp_path / "auto.jsonl", header(options=options(requests=None, auto=True)))
    once = cli_in_process("report", str(auto), "--fixed")
    assert once.code == 0 and _fact(once.out, "mode").startswith("fixed: judged once, at the end")
    assert "note: judged with --fixed (the run's: --auto)" in once.err
    # ... and the error rate of a size fixed in advance is not claimed for a size auto chose
    assert "note: auto mode chose this run's size by looking at these counts" in once.err
    # Auto mode's looks and budget mean nothing to a fixed judgement: given, they change nothing
    fixed = _write(tmp_path / "fixed.jsonl", header())
    same = cli_in_process("report", str(fixed), "--concurrency", "7", "--max-requests", "500")
    assert same.code == 0 and "note:" not in same.err, same.err


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (header(schema="podtally.verify.observations/4"), "a newer podtally wrote it"),
        # An older or unknown number: not blamed on a newer podtally.
        (header(schema="podtally.verify.observations/1"), "without a settings line)\n"),
        (header(schema="podtally.verify.result/2"), "is not a podtally observations schema"),
        (header(schema=2), "schema 2 is not a podtally observations schema"),
        (header(options=options(alpha=2)), "alpha=2: must be between 0 and 1"),
        (header(options=options(alpha="0.01")), 'options: alpha is "0.01"'),
        (header(options=options(expect_pods=True)), "options: expect_pods is true"),
        (header(options=options(auto=True)), "options: auto is true, the others say False"),
        (header(options=options(protocol="grpc")), "options: protocol is"),
        (header(options=options(expect_split="pods=a:1")), "unknown field 'pods'"),
        (header(options=options(resolve=["nope"])), "resolve='nope'"),
        (header(options={**options(), "colour": "red"}), "colour unknown or missing"),
        ({"schema": OBSERVATIONS_SCHEMA_ID, "options": options()}, "keys must be"),
        (header(url="ftp://x/"), "url="),
        ('{"schema": "podtally.verify.observ', "line 1 is not a podtally observation"),
    ],
)
def test_a_corrupt_settings_line_is_one_error_and_exit_2(
    tmp_path: Path, header: Mapping[str, object] | str, message: str
) -> None:
    path = _write(tmp_path / "bad.jsonl", header, n=3)
    ran = cli_in_process("report", str(path), "--html", str(tmp_path / "r.html"))
    assert ran.code == 2 and ran.out == "", ran
    assert ran.err.startswith("error: ") and ran.err.count("\n") == 1, ran.err
    assert message in ran.err and "Traceback" not in ran.err
    assert not (tmp_path / "r.html").exists()


def test_a_settings_line_after_the_first_is_refused(tmp_path: Path) -> None:
    """Two files joined: two runs in one, which no judgement fits."""
    one = _write(tmp_path / "one.jsonl", header(), n=3).read_text()
    joined = tmp_path / "joined.jsonl"
    joined.write_text(one + one)
    ran = cli_in_process("report", str(joined))
    assert ran.code == 2 and ran.out == ""
    assert "line 6 follows the run's end line (line 5): one run per file" in ran.err
    assert ran.err.count("\n") == 1
    # without their end lines, the second settings line is the one refused
    cut = "".join(one.splitlines(keepends=True)[:-1])
    joined.write_text(cut + cut)
    ran = cli_in_process("report", str(joined))
    assert ran.code == 2 and ran.out == ""
    assert "line 5 is the settings line of a run, which only the first line can be" in ran.err


def test_url_renames_the_target_only(tmp_path: Path) -> None:
    saved = _write(tmp_path / "run.jsonl", header(), n=30)
    ran = cli_in_process("report", str(saved), "--url", "http://other.test:8080/")
    assert "http://other.test:8080/" in _fact(ran.out, "target") and "note" not in ran.err
    grpc = cli_in_process("report", str(saved), "--url", "grpc://other.test:9090")
    assert (
        grpc.code == 2
        and grpc.out == ""
        and grpc.err
        == ("error: --url 'grpc://other.test:9090': is not a URL of the run's protocol (http1)\n")
    )
