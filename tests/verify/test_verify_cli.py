"""`podtally verify` and `podtally demo` as a user runs them: a subprocess against real servers,
its stdout, stderr and exit code; signals, closed pipes and full disks. Argument handling and
error wording without a server run in-process: tests/cli/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest

from podtally.verify.probe import ERROR_KINDS
from podtally.verify.schema import RESULT_SCHEMA
from tests.support import (
    clean_env,
    cli_in_process,
    free_port,
    run_cli,
    stderr_on_a_terminal,
    wait_until,
)
from tests.verify.conftest import StubServer, identity_responder, make_certs

PODS = ["pod-a", "pod-b", "pod-c"]


@pytest.fixture
def balanced(stub: Callable[..., StubServer]) -> Iterator[StubServer]:
    """A round-robin 'balancer' over three pods (the stack tests use the real HAProxy)."""
    yield stub("127.0.0.1", free_port(), identity_responder(PODS))


def test_text_report(balanced: StubServer) -> None:
    """Auto mode (no -n): sends until the round robin is shown even, then reports."""
    proc = run_cli("verify", balanced.url, "-c", "3", "--expect-pods", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # The seed's `sort | uniq -c` lines come first, exactly in its format.
    seed = out.splitlines()[:3]
    assert [line.split()[1:] for line in seed] == [["Pod:", pod] for pod in PODS]
    counts = [int(line.split()[0]) for line in seed]
    assert max(counts) - min(counts) <= 3 and 300 < sum(counts) < 20_000
    assert re.search(r"^pod \(requests\): even; chi-square p = [\d.]+ \(information\)$", out, re.M)
    assert re.search(
        r"^  pod-a\s+\d+\s+33\.\d%\s+33\.3%\s+2\d\.\d-\d\d\.\d%\s+26\.7-40\.0%\s+inside$", out, re.M
    )
    assert not re.search(r"^node ", out, re.M)  # one node: nothing to show
    assert re.search(r"^mode\s+auto: sent until even or uneven, at most 20,000", out, re.M)
    assert re.search(r"^unit\s+requests: one request per connection", out, re.M)
    assert re.search(r"^latency\s+p50 [\d.]+ ms  p90 [\d.]+ ms  p99 [\d.]+ ms  max", out, re.M)
    assert re.search(r"^errors\s+none$", out, re.M)
    assert re.fullmatch(
        r"verdict: PASS: even: every pod's share is within ±20% of 1/3 "
        r"\(simultaneous 99\.9% intervals over [\d,]+ requests\)",
        out.rstrip().splitlines()[-1],
    )
    assert proc.stderr == ""  # not a terminal: no progress bar


def test_json_document_matches_the_documented_schema(balanced: StubServer, tmp_path: Path) -> None:
    proc = run_cli("verify", balanced.url, "-n", "30", "--json", "--expect-pods", "4")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["verdict"]["exit_code"] == 1 and doc["verdict"]["result"] == "inconclusive"
    assert doc["verdict"]["failures"][0] == "only 3 of 4 expected pods answered"
    decision = doc["decision"]
    assert (decision["verdict"], decision["mode"], decision["unit"]) == (
        "inconclusive",
        "fixed",
        "requests",
    )
    assert decision["requests_needed"] > 30 and decision["min_detectable_skew"] > 0.2
    pods = decision["dimensions"]["pod"]
    assert [g["expected_share"] for g in pods["groups"]] == [0.25] * 4
    assert pods["groups"][3]["missing"] and pods["method"]["name"] == "clopper-pearson"
    assert doc["summary"]["requests"] == 30 and doc["summary"]["pods"] == 3
    assert {g["name"]: g["count"] for g in doc["dimensions"]["pod"]["groups"]} == dict.fromkeys(
        PODS, 10
    )
    assert set(doc["errors"]) == set(ERROR_KINDS)
    assert doc["status_codes"] == {"200": 30}
    # The docs show the same schema: keep them in step.
    docs = (Path(__file__).parents[2] / "docs" / "verify.md").read_text()
    fields = ("error_examples", "connection_spread", "expected_share", "requests_needed")
    for field in (*fields, "min_detectable_skew", "interval", "band", "unit_reason"):
        assert f"`{field}`" in docs, field


def test_observations_file(balanced: StubServer, tmp_path: Path) -> None:
    path = tmp_path / "obs.jsonl"
    proc = run_cli("verify", balanced.url, "-n", "12", "-c", "2", "--observations", str(path))
    assert proc.returncode == 1  # 4 per pod: too few to judge
    assert "verdict: FAIL: inconclusive" in proc.stdout
    settings, *lines, end = [json.loads(line) for line in path.read_text().splitlines()]
    assert settings["options"]["requests"] == 12  # the run's settings first (report reads them)
    assert end == {"end": "complete", "requests": 12}  # how the run ended last
    assert len(lines) == 12
    assert sorted(line["index"] for line in lines) == list(range(12))
    assert {line["pod"] for line in lines} == set(PODS)
    assert all(line["status"] == 200 and line["error"] is None for line in lines)
    assert all(
        line["peer"] == f"127.0.0.1:{balanced.port}" and line["latency_ms"] > 0 for line in lines
    )
    assert len({line["connection"] for line in lines}) == 12


def test_unreachable_is_one_line_and_exit_3() -> None:
    port = free_port()  # nothing listens there
    proc = run_cli("verify", f"http://127.0.0.1:{port}/", "-n", "5")
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr == f"error: connection refused to 127.0.0.1:{port}\n"

    as_json = run_cli("verify", f"http://127.0.0.1:{port}/", "-n", "5", "--json")
    assert as_json.returncode == 3
    doc = json.loads(as_json.stdout)
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["verdict"]["result"] == "unreachable"
    assert doc["errors"]["refused"] == 5
    assert doc["error_examples"]["refused"] == f"connection refused to 127.0.0.1:{port}"
    assert as_json.stderr == f"error: connection refused to 127.0.0.1:{port}\n"


def test_body_without_identity(stub: Callable[..., StubServer]) -> None:
    server = stub("127.0.0.1", free_port(), identity_responder(["x"], headers=False, body=False))
    proc = run_cli("verify", server.url, "-n", "10")
    assert proc.returncode == 1
    assert re.search(r"^errors\s+10 \(100\.0%\): no-identity 10$", proc.stdout, re.M)
    assert "verdict: FAIL: no response carried an identity" in proc.stdout


def test_redirect_is_explained(stub: Callable[..., StubServer]) -> None:
    def redirect(_: object) -> tuple[int, dict[str, str], bytes]:
        return 301, {"Location": "https://127.0.0.1:20104/"}, b""

    server = stub("127.0.0.1", free_port(), redirect)
    proc = run_cli("verify", server.url, "-n", "4")
    assert proc.returncode == 1
    # The library names the setting (follow); the report names the flag.
    assert "redirected to https://127.0.0.1:20104/; use --follow or the https URL" in proc.stdout
    assert "not followed: use --follow or the https URL." in " ".join(proc.stdout.split())
    as_json = run_cli("verify", server.url, "-n", "4", "--json")
    assert "use --follow or the https URL" in json.loads(as_json.stdout)["verdict"]["summary"]
    assert re.search(r"^status codes\s+301: 4$", proc.stdout, re.M)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-H", "X-A: ☃"], "error: --header 'X-A: ☃': header 'X-A' contains '☃'"),
        (["--cacert", __file__], f"error: --cacert {__file__}: cannot load it as PEM"),
        (["--observations", "/nonexistent/dir/obs.jsonl"], "error: --observations /nonexistent/"),
        (["--observations", "/"], "error: --observations /: cannot write it"),
        (["--tolerance", "1.5"], "error: --tolerance 1.5: must be between 0 and 1"),
        (["--tolerance", "0"], "error: --tolerance 0: must be between 0 and 1"),
        (["--expect-split", "color=a:1"], "error: --expect-split 'color=a:1': unknown field"),
        (["--expect-split", "pod=a:0"], "error: --expect-split 'pod=a:0': the weight of 'a' must"),
        (["--expect-split", "pod=a:-1"], "error: --expect-split 'pod=a:-1': the weight of 'a'"),
        (["--expect-split", "pod=a:x"], "error: --expect-split 'pod=a:x': the weight of 'a' is"),
        (["--expect-split", "pod=a:nan"], "error: --expect-split 'pod=a:nan': the weight of"),
        (["--expect-split", "pod="], "error: --expect-split 'pod=': names no value"),
        (["--expect-split", "pod"], "error: --expect-split 'pod': must be FIELD=VALUE:WEIGHT"),
        (["--expect-split", "pod=a:1,a:2"], "error: --expect-split 'pod=a:1,a:2': 'a' is named"),
        (
            ["--expect-split", "pod=a:1", "--expect-pods", "2"],
            "error: --expect-split 'pod=a:1': give --expect-pods or --expect-split, not both",
        ),
        (["--max-requests", "0"], "error: --max-requests 0: must be at least 1"),
        (["--max-duration", "x"], "error: --max-duration 'x': must be a duration"),
    ],
)
def test_bad_input_sends_nothing(balanced: StubServer, args: list[str], message: str) -> None:
    ran = cli_in_process("verify", balanced.url, "-n", "5", *args)
    assert ran.code == 2, ran.err
    assert ran.err.startswith(message) and ran.err.count("\n") == 1, ran.err
    assert ran.out == ""
    assert balanced.client_ports == []  # not one request was sent


def test_non_ascii_url_is_encoded_not_a_traceback(balanced: StubServer) -> None:
    proc = run_cli("verify", balanced.url + "☃?q=ü", "-n", "3")
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1  # one per pod: too few to judge, but every one answered
    assert "verdict: FAIL: inconclusive" in proc.stdout
    assert balanced.paths == ["/%E2%98%83?q=%C3%BC"] * 3


def test_demo_checks_its_outputs_before_starting_anything(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    proc = run_cli(
        "demo",
        "--ports",
        f"{free_port()},{free_port()},{free_port()}",
        "--run-dir",
        str(run_dir),
        "--observations",
        "/nonexistent/dir/obs.jsonl",
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        "error: --observations /nonexistent/dir/obs.jsonl: cannot write it: "
        "No such file or directory\n"
    )
    assert not run_dir.exists()


@pytest.mark.parametrize("earlier", [None, "an earlier run\n"])
def test_demo_that_cannot_start_leaves_the_observations_file_as_it_was(
    tmp_path: Path, earlier: str | None
) -> None:
    """The file is opened before the stack starts; if no request is ever sent, a file it
    created is removed again and one that was there keeps its content."""
    path = tmp_path / "obs.jsonl"
    if earlier is not None:
        path.write_text(earlier)
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        ports = f"{taken},{free_port()},{free_port()}"
        proc = run_cli(
            "demo",
            "--ports",
            ports,
            "--run-dir",
            str(tmp_path / "demo"),
            "--observations",
            str(path),
            timeout=60,
        )
    assert proc.returncode == 2, proc.stderr
    assert "starting HAProxy" not in proc.stderr
    # The error names the demo's own option: it has --ports, not up's --http-port.
    last = proc.stderr.rstrip().splitlines()[-1]
    assert last.startswith(f"error: --ports '{ports}': HTTP port 127.0.0.1:{taken} "), last
    assert "--http-port" not in proc.stderr and "http_port" not in proc.stderr
    if earlier is None:
        assert not path.exists()
    else:
        assert path.read_text() == earlier


def test_progress_bar_only_on_a_terminal(balanced: StubServer) -> None:
    """A run of ~1.5 s draws the bar on a terminal; the same run into a pipe stays silent."""
    args = ["verify", balanced.url, "--duration", "1.5s", "--rate", "100", "-c", "2"]
    piped = run_cli(*args)
    assert piped.returncode == 1 and piped.stderr == ""  # 150 requests: inconclusive

    code, text, out = stderr_on_a_terminal(
        [sys.executable, "-m", "podtally", *args], clean_env(), timeout=30
    )
    assert code == 1
    assert re.search(r"\[#+-*\]\s+\d+%\s+\d+ in [\d.]+/1.5s\s+[\d,]+/s\s+0 errors", text), text
    assert text.endswith("\r\x1b[K")  # the bar is wiped before the report
    assert b"verdict: FAIL: inconclusive" in out


def test_observations_disk_full_is_one_line(balanced: StubServer) -> None:
    proc = run_cli("verify", balanced.url, "-n", "20", "--observations", "/dev/full")
    assert proc.returncode == 3
    assert proc.stderr == "error: --observations /dev/full: No space left on device\n"


def test_observations_on_stdout_send_the_report_to_stderr(
    balanced: StubServer, tmp_path: Path
) -> None:
    """`--observations -` is stdout (JSON Lines for a pipe), not a file named '-'."""
    proc = run_cli(
        "verify", balanced.url, "-n", "30", "--observations", "-", cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 1, proc.stderr  # 30 requests: inconclusive
    settings, *lines, _ = [json.loads(line) for line in proc.stdout.splitlines()]
    assert settings["options"]["requests"] == 30  # the run's settings first
    assert sorted(line["index"] for line in lines) == list(range(30))
    assert {line["pod"] for line in lines} == set(PODS)
    assert proc.stderr.rstrip().splitlines()[-1].startswith("verdict: FAIL: inconclusive")
    assert "     10 Pod: pod-a" in proc.stderr
    assert not (tmp_path / "-").exists()


def test_a_certificate_for_another_name_is_not_a_cacert_problem(
    stub: Callable[..., StubServer], tmp_path: Path
) -> None:
    certs = make_certs(tmp_path)
    port = free_port()
    server = stub("127.0.0.1", port, identity_responder(PODS), tls=certs.server_context())
    proc = run_cli(
        "verify",
        f"https://app.test:{port}/",
        "--resolve",
        f"app.test:{port}:127.0.0.1",
        "--cacert",
        str(certs.ca),
        "-n",
        "3",
    )
    assert proc.returncode == 3
    assert proc.stderr == (
        f"error: TLS certificate of 127.0.0.1:{port} does not name app.test (hostname mismatch): "
        "restart the local stack with podtally up --host app.test\n"
    )
    assert server.client_ports == []  # the handshake failed: no request reached the server


def test_certificate_advice_names_the_flags_in_every_output(
    stub: Callable[..., StubServer], tmp_path: Path
) -> None:
    """The library's advice names its setting (``cacert``); what `verify` prints, the --json
    document and the --observations file name the flag, and a replay says it as the run did."""
    certs = make_certs(tmp_path)
    port = free_port()
    stub("127.0.0.1", port, identity_responder(PODS), tls=certs.server_context())
    saved = tmp_path / "saved.jsonl"
    url = f"https://app.test:{port}/"
    args = ("--resolve", f"app.test:{port}:127.0.0.1", "-n", "2", "-c", "1")
    proc = run_cli("verify", url, *args, "--json", "--observations", str(saved))
    assert proc.returncode == 3, proc.stderr
    advice = "(use --cacert FILE)"
    document = json.loads(proc.stdout)
    assert document["error_examples"]["tls"].endswith(advice)
    assert document["verdict"]["summary"].endswith(advice)
    assert all(failure.endswith(advice) for failure in document["verdict"]["failures"])
    lines = [json.loads(line) for line in saved.read_text().splitlines()[1:-1]]  # observations
    assert len(lines) == 2 and all(line["detail"].endswith(advice) for line in lines)
    text = run_cli("verify", url, *args)
    assert (text.returncode, text.stdout) == (3, "")
    assert text.stderr == f"error: {lines[0]['detail']}\n"
    # Nothing answered: the verdict is the one line, the flag's advice at its end.
    assert text.stderr.startswith("error: TLS certificate of 127.0.0.1:") and advice in text.stderr
    again = run_cli("report", str(saved), "--json")
    assert again.returncode == 3
    assert json.loads(again.stdout)["error_examples"] == document["error_examples"]
    report = run_cli("report", str(saved)).stdout  # the text report of the saved run
    detail = lines[0]["detail"]
    assert re.search(rf"^  tls +{re.escape(detail)} \(x2\)$", report, re.M)
    assert f"verdict: nothing answered: {detail}\n" in report


def test_podtally_cacert_in_the_environment_is_cacert(
    stub: Callable[..., StubServer], tmp_path: Path
) -> None:
    """`PODTALLY_CACERT=ca.pem podtally verify URL`: every option has its PODTALLY_ variable."""
    certs = make_certs(tmp_path)
    server = stub("127.0.0.1", free_port(), identity_responder(PODS), tls=certs.server_context())
    untrusted = run_cli("verify", server.url, "-n", "30")
    assert untrusted.returncode == 3, untrusted.stderr  # the CA is not the system's
    trusted = run_cli("verify", server.url, "-n", "30", env={"PODTALLY_CACERT": str(certs.ca)})
    assert trusted.returncode == 1, trusted.stderr  # 30 requests: inconclusive, but answered
    assert "30 responses, 30 identified, 3 pods" in trusted.stdout
    assert re.search(r"^errors\s+none$", trusted.stdout, re.M)


# --- the top level: output, Ctrl-C, usage -----------------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--json"], ["--expect-pods", "4"]])
def test_a_full_disk_on_stdout_is_one_line_and_exit_3(
    balanced: StubServer, extra: list[str]
) -> None:
    """Not exit 1, which would read as an uneven spread: the verdict was never written."""
    with open("/dev/full", "w") as full:
        proc = run_cli("verify", balanced.url, "-n", "30", *extra, stdout=full, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == "error: cannot write output: No space left on device\n"


@pytest.mark.parametrize(("extra", "code"), [([], 0), (["-n", "30", "--expect-pods", "4"], 1)])
def test_a_closed_stdout_keeps_the_verdicts_exit_code(
    balanced: StubServer, extra: list[str], code: int
) -> None:
    """`podtally verify ... | head -0`: the reader left; that is nobody's error, and the exit
    code is still the verdict's."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = run_cli("verify", balanced.url, *extra, stdout=write_end, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr == ""


INTERRUPT_DURING_IMPORT = """
import os, signal, sys

class CtrlC:
    # Ctrl-C at a precise moment: as the module {module!r} is about to be imported.
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv = ["podtally", "manifests", "-o", "json"]
from podtally.cli import run
run()
"""


@pytest.mark.parametrize("module", ["click", "podtally.cli.k8s", "podtally.k8s"])
def test_ctrl_c_while_the_command_starts_is_one_line_and_130(module: str) -> None:
    """The first tens of milliseconds import the command modules; Ctrl-C then is no traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT_DURING_IMPORT.format(module=module)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "error: interrupted\n"
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("as_json", "signals", "background"),
    [
        (False, [signal.SIGINT], False),
        (True, [signal.SIGINT], False),
        (False, [signal.SIGTERM], False),
        (False, [signal.SIGTERM, signal.SIGTERM], False),  # `timeout`: the process, its group
        (False, [signal.SIGTERM], True),
    ],
    ids=["ctrl-c", "ctrl-c-json", "sigterm", "sigterm-twice", "sigterm-in-background"],
)
def test_ctrl_c_prints_the_partial_report_then_one_line(
    balanced: StubServer, as_json: bool, signals: list[signal.Signals], background: bool
) -> None:
    """As hey and ab do: what was collected, marked as partial; then `error: interrupted`.
    SIGTERM (`timeout`, a cancelled CI job) does what Ctrl-C does, also when it comes twice
    and when the command runs in the background (SIGINT ignored)."""
    args = ["verify", balanced.url, "--duration", "20s", "--rate", "50", "-c", "2"]
    # In the background, as a job started with `&` in a script: SIGINT ignored, across exec.
    shell = ["bash", "-c", 'trap "" INT; exec "$@"', "bash"] if background else []
    proc = subprocess.Popen(
        [*shell, sys.executable, "-m", "podtally", *args, *(["--json"] if as_json else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        # The stub sees a request before the client has its answer, and -c 2 keeps up to two in
        # flight: 22 seen means at least 20 answered, whatever the machine's load.
        wait_until(lambda: len(balanced.client_ports) >= 22, "22 requests through", proc=proc)
        for k, sig in enumerate(signals):
            if k:  # as `timeout` does: the process first, then its group, as it shuts down
                time.sleep(0.02)
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err == "error: interrupted\n"
    if as_json:
        doc = json.loads(out)
        jsonschema.validate(doc, RESULT_SCHEMA)
        assert doc["interrupted"] is True
        assert 20 <= doc["summary"]["requests"] < 1000
        assert doc["verdict"]["result"] == "inconclusive"  # a few dozen: not enough
        return
    done = re.search(
        r"^interrupted\s+after (\d+) requests, [\d.]+ of 20 s: every figure", out, re.M
    )
    assert done, out
    assert 20 <= int(done.group(1)) < 1000
    assert re.search(rf"^requests\s+{done.group(1)} in ", out, re.M)
    assert out.rstrip().splitlines()[-1].startswith("verdict: INTERRUPTED; on what was collected: ")


def test_auto_mode_stops_when_decided_and_reports_the_verdict_so_far(
    balanced: StubServer,
) -> None:
    """Auto mode: the progress callback carries the intervals and verdict so far; the run stops
    once the round robin is shown even, well before --max-requests."""
    from podtally.verify import Progress, VerifyOptions, run

    seen: list[Progress] = []
    result = run(VerifyOptions(balanced.url, concurrency=3, expect_pods=3), progress=seen.append)
    assert result.verdict.result == "even" and result.exit_code == 0
    assert result.assessment is not None and result.assessment.mode == "sequential"
    assert 300 < result.requests < 3000  # stopped when the answer was known
    statuses = [p.status for p in seen if p.status]
    assert statuses, "no progress carried the verdict so far"
    assert re.fullmatch(r"(inconclusive|even) \(requests\): pod-a \d+-\d+% .*", statuses[-1])
    assert statuses[-1].startswith("even")
    assert seen[-1].total == 20_000  # the bound auto mode runs against
