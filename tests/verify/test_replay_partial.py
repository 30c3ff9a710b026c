"""An ``--observations`` file says how its run ended, and `podtally report FILE` believes it: an
interrupted run, or a file with no end line (killed, a full disk, truncated), is reported as
partial, exactly as `verify` reported its interrupted run, with one ``note:`` line on stderr.

The runs are real (`podtally verify` as a subprocess against a loopback round-robin stub,
interrupted with SIGINT or killed with SIGKILL once the stub has seen a given number of
requests: never after a time); the wording is checked in-process (click's CliRunner around the
real ``main``) on files written here.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from podtally.contract import OBSERVATIONS_SCHEMA_ID
from podtally.verify.replay import judge_again
from podtally.verify.saved_run import load_run
from podtally.verify.schema import OBSERVATIONS_END_SCHEMA, RESULT_SCHEMA
from tests.support import clean_env, cli_in_process, free_port, run_cli, wait_until
from tests.verify.conftest import StubServer, identity_responder
from tests.verify.saved_files import PODS, header, observation

PARTIAL = "verdict: INTERRUPTED; on what was collected: "


@pytest.fixture
def balanced(stub: Any) -> Iterator[StubServer]:
    yield stub("127.0.0.1", free_port(), identity_responder(PODS))


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _verdict_line(text: str) -> str:
    return text.rstrip().splitlines()[-1]


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "podtally", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[str], sig: int) -> tuple[str, str]:
    try:
        proc.send_signal(sig)
        return proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- real runs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [["--duration", "20s"], []], ids=["fixed", "auto"])
def test_an_interrupted_runs_file_is_reported_partial(
    balanced: StubServer, tmp_path: Path, mode: list[str]
) -> None:
    """Ctrl-C after some 20 answers: verify's file ends with ``"end": "interrupted"``, and
    `report` marks its report partial as verify did (text, --json, --html), says so on stderr,
    and never exits 0 or 130. Before the end line, `report` judged the file as a run that
    completed: no mark, no note."""
    saved = tmp_path / "cut.jsonl"
    args = ["verify", balanced.url, *mode, "--rate", "50", "-c", "2", "--json"]
    proc = _start([*args, "--observations", str(saved)])
    # The stub sees a request before the client has its answer, and -c 2 keeps up to two in
    # flight: 22 seen means at least 20 answered, whatever the machine's load.
    wait_until(lambda: len(balanced.client_ports) >= 22, "22 requests through", proc=proc)
    out, err = _stop(proc, signal.SIGINT)
    assert proc.returncode == 130 and err == "error: interrupted\n", err
    live = json.loads(out)
    assert live["interrupted"] is True
    *observations, end = _lines(saved)[1:]
    jsonschema.validate(end, OBSERVATIONS_END_SCHEMA)
    assert end == {"end": "interrupted", "requests": len(observations)}
    assert len(observations) == live["summary"]["requests"] >= 20

    again = run_cli("report", str(saved), "--json", "--html", str(tmp_path / "r.html"))
    assert again.returncode == 1, again.stderr  # inconclusive, partial: never 0, never 130
    notes = [line for line in again.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: cut.jsonl records that its run was interrupted: every figure is partial, as in "
        "the report verify printed then, and it cannot pass"
    ]
    judged = json.loads(again.stdout)
    jsonschema.validate(judged, RESULT_SCHEMA)
    assert judged["interrupted"] is True
    for key in ("verdict", "decision", "pods", "errors", "options"):
        assert judged[key] == live[key], key
    assert judged["summary"]["requests"] == live["summary"]["requests"]
    page = (tmp_path / "r.html").read_text()
    assert "INTERRUPTED; on what was collected: " in page

    text = run_cli("report", str(saved))
    assert text.returncode == 1 and text.stderr.count("note: ") == 1, text.stderr
    done = re.search(r"^interrupted\s+after (\d+) (of \d+ )?requests", text.stdout, re.M)
    assert done and int(done.group(1)) == len(observations), text.stdout
    assert _verdict_line(text.stdout).startswith(PARTIAL)


def test_a_complete_runs_file_has_no_note_and_the_same_file_cut_short_is_partial(
    balanced: StubServer, tmp_path: Path
) -> None:
    """A run that passed ends with ``"end": "complete"`` and replays as it ran (exit 0, nothing
    said about its end); the same file without its end line is a run cut short: partial, one
    note, exit 1 (the verdict on what is there is still shown)."""
    saved = tmp_path / "run.jsonl"
    args = ["-n", "900", "-c", "3", "--expect-pods", "3", "--alpha", "0.01"]
    live = run_cli("verify", balanced.url, "--observations", str(saved), *args)
    assert live.returncode == 0, live.stderr
    *_, end = _lines(saved)
    assert end == {"end": "complete", "requests": 900}
    jsonschema.validate(end, OBSERVATIONS_END_SCHEMA)

    again = run_cli("report", str(saved))
    assert again.returncode == 0, again.stderr
    assert "note:" not in again.stderr and "interrupted" not in again.stdout
    assert _verdict_line(again.stdout) == _verdict_line(live.stdout)

    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("".join(saved.read_text().splitlines(keepends=True)[:-1]))
    cut = run_cli("report", str(truncated))
    assert cut.returncode == 1, cut.stderr
    assert cut.stderr.splitlines()[-1] == (
        "note: truncated.jsonl has no end line: its run was cut short (killed, or its disk "
        "filled) or the file was truncated; every figure is partial, and it cannot pass"
    )
    assert re.search(r"^interrupted\s+after 900 of 900 requests", cut.stdout, re.M), cut.stdout
    assert _verdict_line(cut.stdout) == PARTIAL + _verdict_line(live.stdout)[len("verdict: ") :]


def test_a_killed_runs_file_is_reported_partial(balanced: StubServer, tmp_path: Path) -> None:
    """SIGKILL: no end line, and most likely a last line cut off where the buffer was written
    out; `report` leaves that line out and reports the rest as a run cut short."""
    saved = tmp_path / "killed.jsonl"
    args = ["--duration", "60s", "--rate", "100", "-c", "2", "--observations", str(saved)]
    proc = _start(["verify", balanced.url, *args])
    # What reached the file: the settings line and at least two observations.
    wait_until(lambda: saved.read_text().count("\n") >= 3, "observations on disk", proc=proc)
    _stop(proc, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    text = saved.read_text()
    torn = not text.endswith("\n")
    whole = text.count("\n") - 1  # the observations whole on disk
    again = run_cli("report", str(saved), "--json")
    assert again.returncode == 1, again.stderr
    (note,) = [line for line in again.stderr.splitlines() if line.startswith("note: ")]
    assert note.startswith("note: killed.jsonl has no end line")
    assert ("(its last line, cut off mid-way, is left out)" in note) == torn
    judged = json.loads(again.stdout)
    assert judged["interrupted"] is True and judged["summary"]["requests"] == whole


def test_observations_on_stdout_end_with_how_the_run_ended(balanced: StubServer) -> None:
    piped = run_cli("verify", balanced.url, "-n", "5", "--observations", "-")
    settings, *observations, end = [json.loads(line) for line in piped.stdout.splitlines()]
    assert settings["schema"] == OBSERVATIONS_SCHEMA_ID
    assert len(observations) == 5 and end == {"end": "complete", "requests": 5}


# --- in-process: the wording, older formats, corrupt end lines ----------------------------------
def _notes(err: str) -> str:
    """The ``note:`` lines of stderr (the line naming the settings taken from the file aside)."""
    return "".join(line for line in err.splitlines(keepends=True) if line.startswith("note: "))


def _observation(index: int) -> str:
    return json.dumps(observation(index))


def _header(schema: str = OBSERVATIONS_SCHEMA_ID) -> str:
    """A fixed run's settings line: -n 900 -c 3 --expect-pods 3 (even, exit 0, when whole)."""
    return json.dumps(header(schema=schema))


def _file(
    path: Path,
    *,
    header: str | None = None,
    end: Mapping[str, object] | str | None = None,
    n: int = 900,
    tail: str = "",
) -> Path:
    lines = [] if header is None else [header]
    lines += [_observation(i) for i in range(n)]
    if end is not None:
        lines.append(end if isinstance(end, str) else json.dumps(end))
    path.write_text("\n".join(lines) + "\n" + tail)
    return path


def test_a_complete_file_says_nothing_about_its_end(tmp_path: Path) -> None:
    saved = _file(
        tmp_path / "run.jsonl", header=_header(), end={"end": "complete", "requests": 900}
    )
    ran = cli_in_process("report", str(saved))
    assert ran.code == 0 and "note:" not in ran.err, ran
    assert ran.out.splitlines()[-1].startswith("verdict: PASS: even")
    loaded = load_run(saved)
    assert loaded.ended == "complete" and not loaded.partial


def test_an_interrupted_file_is_partial_in_every_form(tmp_path: Path) -> None:
    """The same observations, said to be interrupted: the report verify printed then, marked
    the same way in text, --json and --html (and the library's result is marked)."""
    saved = _file(
        tmp_path / "cut.jsonl", header=_header(), end={"end": "interrupted", "requests": 900}
    )
    html = tmp_path / "r.html"
    ran = cli_in_process("report", str(saved), "--html", str(html))
    assert ran.code == 1, ran
    assert _notes(ran.err) == (
        "note: cut.jsonl records that its run was interrupted: every figure is partial, as in "
        "the report verify printed then, and it cannot pass\n"
    )
    assert re.search(
        r"^interrupted +after 900 of 900 requests: every figure above is partial$", ran.out, re.M
    )
    assert ran.out.splitlines()[-1].startswith(PARTIAL + "PASS: even")
    assert "INTERRUPTED; on what was collected: PASS: even" in html.read_text()
    document = json.loads(cli_in_process("report", str(saved), "--json").out)
    assert document["interrupted"] is True and document["verdict"]["result"] == "even"
    loaded = load_run(saved)
    assert loaded.ended == "interrupted" and loaded.partial
    assert loaded.options is not None
    result = judge_again(loaded.observations, loaded.options, interrupted=True)
    assert result.interrupted and not result.passed


def test_a_file_without_its_end_line_is_cut_short(tmp_path: Path) -> None:
    saved = _file(tmp_path / "cut.jsonl", header=_header())
    ran = cli_in_process("report", str(saved))
    assert ran.code == 1, ran
    assert _notes(ran.err) == (
        "note: cut.jsonl has no end line: its run was cut short (killed, or its disk filled) or "
        "the file was truncated; every figure is partial, and it cannot pass\n"
    )
    assert ran.out.splitlines()[-1].startswith(PARTIAL)
    # ... and one cut mid-line: that line is left out, the others judged
    torn = _file(tmp_path / "torn.jsonl", header=_header(), tail='{"index": 900, "sta')
    ran = cli_in_process("report", str(torn), "--json")
    assert ran.code == 1, ran
    assert _notes(ran.err).startswith("note: torn.jsonl has no end line (its last line, cut off")
    assert json.loads(ran.out)["summary"]["requests"] == 900
    assert load_run(torn).torn


def test_a_format_2_file_does_not_say_how_it_ended(tmp_path: Path) -> None:
    """Written before the end line: judged as a run that completed (as before), with a note."""
    old = _file(tmp_path / "old.jsonl", header=_header("podtally.verify.observations/2"))
    ran = cli_in_process("report", str(old))
    assert ran.code == 0, ran
    assert _notes(ran.err) == (
        "note: old.jsonl does not record how its run ended (an older podtally wrote it): judged "
        "as a run that completed\n"
    )
    assert ran.out.splitlines()[-1].startswith("verdict: PASS: even")
    assert load_run(old).ended is None


def test_a_format_1_file_is_judged_as_before(tmp_path: Path) -> None:
    old = _file(tmp_path / "old.jsonl")
    ran = cli_in_process("report", str(old), "--fixed", "--expect-pods", "3")
    assert ran.code == 0, ran
    assert ran.err.count("\n") == 1 and "does not record its run's settings" in ran.err


END = {"end": "complete", "requests": 3}


@pytest.mark.parametrize(
    ("header", "end", "tail", "message"),
    [
        (_header(), {**END, "end": "done"}, "", 'line 5 is not a podtally end line: end is "done"'),
        (_header(), {**END, "requests": -1}, "", "line 5 is not a podtally end line: requests"),
        (_header(), {**END, "why": "x"}, "", "keys must be end, requests"),
        (_header(), {**END, "requests": 4}, "", "end line (line 5) counts 4 observations"),
        (_header(), END, _observation(3) + "\n", "line 6 follows the run's end line (line 5)"),
        (_header(), END, json.dumps(END) + "\n", "line 6 follows the run's end line (line 5)"),
        (
            _header("podtally.verify.observations/2"),
            END,
            "",
            "line 5 is an end line, which a file of format /2 does not have",
        ),
        (None, END, "", "line 4 is an end line, which a file of format /1 does not have"),
        # A bad line other than the last one cut off is still bad input.
        (_header(), '{"index": 3, "sta', "", "line 5 is not a podtally observation"),
    ],
)
def test_a_corrupt_end_is_one_error_and_exit_2(
    tmp_path: Path,
    header: str | None,
    end: Mapping[str, object] | str,
    tail: str,
    message: str,
) -> None:
    path = _file(tmp_path / "bad.jsonl", header=header, end=end, n=3, tail=tail)
    ran = cli_in_process("report", str(path), "--html", str(tmp_path / "r.html"))
    assert ran.code == 2 and ran.out == "", ran
    assert ran.err.startswith("error: ") and ran.err.count("\n") == 1, ran.err
    assert message in ran.err and "Traceback" not in ran.err
    assert not (tmp_path / "r.html").exists()


def test_a_run_that_reached_its_limit_without_a_verdict_is_complete(
    balanced: StubServer, tmp_path: Path
) -> None:
    """Auto mode stopped by --max-requests, undecided: the run ended as it was meant to (end
    "complete"); `report` judges it as it ran, the same inconclusive verdict, and says nothing
    about its end."""
    saved = tmp_path / "limit.jsonl"
    args = ["--max-requests", "60", "-c", "3", "--json", "--observations", str(saved)]
    live = run_cli("verify", balanced.url, *args)
    assert live.returncode == 1, live.stderr
    run = json.loads(live.stdout)
    assert run["verdict"]["result"] == "inconclusive" and run["summary"]["requests"] == 60
    assert _lines(saved)[-1] == {"end": "complete", "requests": 60}
    again = run_cli("report", str(saved), "--json")
    assert again.returncode == 1 and "note:" not in again.stderr, again.stderr
    judged = json.loads(again.stdout)
    assert judged["interrupted"] is False
    for key in ("verdict", "decision", "pods"):
        assert judged[key] == run[key], key
