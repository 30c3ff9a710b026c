"""`podtally report`: a saved --observations file judged again gives the run's own verdict.

The runs are real: `podtally verify` as a subprocess against real servers (a loopback
round-robin stub, three real `podtally serve` replicas), then `podtally report` on its file.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from podtally.verify.replay import replay
from podtally.verify.saved_run import load_observations, observation_from
from tests.support import free_port, run_cli
from tests.verify.conftest import Replicas, StubServer, identity_responder, start_replicas

PODS = ["pod-a", "pod-b", "pod-c"]


@pytest.fixture
def balanced(stub: Callable[..., StubServer]) -> Iterator[StubServer]:
    yield stub("127.0.0.1", free_port(), identity_responder(PODS))


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    group = start_replicas(tmp_path_factory.mktemp("replicas"), count=1, first_address=41)
    yield group
    for server in group.servers:
        server.stop()


def _same_judgement(live: dict[str, object], again: dict[str, object]) -> None:
    for key in ("verdict", "decision", "dimensions", "pods", "errors", "status_codes"):
        assert again[key] == live[key], key
    live_summary = dict(live["summary"])  # type: ignore[call-overload]
    again_summary = dict(again["summary"])  # type: ignore[call-overload]
    for key in ("requests", "responses", "identified", "failed", "pods", "connections"):
        assert again_summary[key] == live_summary[key], key


@pytest.mark.parametrize("extra", [[], ["--keep-alive"]])
def test_report_gives_the_runs_verdict(
    balanced: StubServer, tmp_path: Path, extra: list[str]
) -> None:
    saved = tmp_path / "run.jsonl"
    live = run_cli(
        "verify",
        balanced.url,
        "-n",
        "90",
        "-c",
        "3",
        "--json",
        "--observations",
        str(saved),
        "--expect-pods",
        "3",
        *extra,
    )
    # 90 requests judged once cannot show even (inconclusive, exit 1): the same again
    assert live.returncode == 1, live.stderr
    assert json.loads(live.stdout)["verdict"]["result"] == "inconclusive"
    again = run_cli("report", str(saved), "--json")  # the file says: fixed, --expect-pods 3
    assert again.returncode == 1, again.stderr
    _same_judgement(json.loads(live.stdout), json.loads(again.stdout))
    # text, and a judgement the run did not make: four pods expected
    text = run_cli("report", str(saved), "--expect-pods", "4")
    assert text.returncode == 1
    assert text.stdout.splitlines()[:3] == [f"     30 Pod: {pod}" for pod in PODS]
    assert "only 3 of 4 expected pods answered" in text.stdout.splitlines()[-1]


def test_report_of_real_replicas_with_failures(replicas: Replicas, tmp_path: Path) -> None:
    """A real replica (one pod: nothing to compare, exit 0), then a refused port (unreachable,
    exit 3): replayed, each verdict and exit code comes back as it was."""
    for url in (replicas.url(0), "http://127.0.0.1:1/"):
        saved = tmp_path / "one.jsonl"
        saved.unlink(missing_ok=True)
        live = run_cli("verify", url, "-n", "20", "--json", "--observations", str(saved))
        if not saved.exists():  # unreachable: every request failed, still written
            pytest.fail(f"no observations written for {url}: {live.stderr}")
        again = run_cli("report", str(saved), "--json")
        assert again.returncode == live.returncode, again.stderr
        _same_judgement(json.loads(live.stdout), json.loads(again.stdout))


def test_library_replay_keeps_the_connections(balanced: StubServer, tmp_path: Path) -> None:
    saved = tmp_path / "ka.jsonl"
    assert (
        run_cli(
            "verify",
            balanced.url,
            "-n",
            "40",
            "-c",
            "2",
            "--keep-alive",
            "--observations",
            str(saved),
        ).returncode
        == 1  # 40 requests: inconclusive
    )
    result = replay(load_observations(saved))  # fixed, as the run was
    assert not result.options.auto and result.assessment is not None
    assert result.assessment.mode == "fixed"
    assert result.options.keep_alive and result.connection_spread is not None
    assert result.connections == 2 and result.requests == 40


@pytest.mark.parametrize("extra", [[], ["-c", "7"]])
def test_an_auto_mode_run_is_judged_again_at_its_own_looks(
    balanced: StubServer, tmp_path: Path, extra: list[str]
) -> None:
    """verify without -n stops at the look where the verdict became known; `report` (auto, as
    the file says) replays the same looks and keeps that look's verdict and intervals, in-flight
    responses counted, not judged."""
    saved = tmp_path / "auto.jsonl"
    args = ["--expect-pods", "3", *extra]
    live = run_cli("verify", balanced.url, "--json", "--observations", str(saved), *args)
    assert live.returncode == 0, live.stderr
    run = json.loads(live.stdout)
    assert run["verdict"]["result"] == "even", run["verdict"]
    again = run_cli("report", str(saved), "--json")  # the file says: auto, its -c and pods
    assert again.returncode == 0, again.stderr
    _same_judgement(run, json.loads(again.stdout))
    # judged again on everything, once (--fixed), it is another judgement: other intervals
    fixed = json.loads(run_cli("report", str(saved), "--fixed", "--json", *args).stdout)
    assert fixed["decision"]["mode"] == "fixed" and run["decision"]["mode"] == "sequential"
    assert fixed["decision"]["dimensions"] != run["decision"]["dimensions"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no observation"),
        ("not json\n", "line 1 is not a podtally observation"),
        ('{"index": 0, "start": 0, "latency_ms": 1}\n[1]\n', "line 2 is not"),
        ('{"index": 0, "start": 0, "latency_ms": 1, "error": "gremlins"}\n', "line 1 is not"),
        ('{"index": "0", "start": 0, "latency_ms": 1}\n', "line 1 is not"),
        ("\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_bad_files_are_one_line_and_exit_2(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content.encode("latin-1"))
    proc = run_cli("report", str(path), "--html", str(tmp_path / "r.html"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "r.html").exists()


def test_missing_file_and_unwritable_html(tmp_path: Path) -> None:
    proc = run_cli("report", str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert "cannot read it" in proc.stderr
    saved = tmp_path / "ok.jsonl"
    saved.write_text('{"index": 0, "start": 0, "latency_ms": 1, "status": 200, "pod": "p"}\n')
    proc = run_cli("report", str(saved), "--html", str(tmp_path / "no" / "dir" / "r.html"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: --html ")
    assert proc.stdout == ""


@pytest.mark.haproxy
@pytest.mark.slow
def test_demo_html_and_its_replay_agree(tmp_path: Path) -> None:
    """`demo --html --observations` on its own stack, then `report --html` on the saved file:
    both pages carry the same verdict line and the same bars."""
    from tests.support import free_base

    base = free_base()
    saved, live_page, again_page = tmp_path / "d.jsonl", tmp_path / "d.html", tmp_path / "r.html"
    ports = f"{base},{base + 1},{base + 2}"
    demo = run_cli(
        "demo",  # 1000 requests, judged once (the demo's fixed default)
        "--ports",
        ports,
        "--run-dir",
        str(tmp_path / "run"),
        "--observations",
        str(saved),
        "--html",
        str(live_page),
    )
    assert demo.returncode == 0, demo.stderr
    settings = json.loads(saved.read_text().splitlines()[0])["options"]
    assert (settings["requests"], settings["expect_pods"]) == (1000, 3)  # the demo's own
    again = run_cli("report", str(saved), "--html", str(again_page))  # as the demo judged
    assert again.returncode == 0, again.stderr

    def verdict_and_bars(page: Path) -> tuple[str, list[str]]:
        text = page.read_text()
        line = html.unescape(text.split('id="verdict"', 1)[1].split(">", 1)[1].split("<", 1)[0])
        return line, sorted(re.findall(r'<g class="bar" data-group="([^"]+)"', text))

    live_line, live_bars = verdict_and_bars(live_page)
    assert live_line.startswith("PASS: even: every pod's share is within"), live_line
    assert verdict_and_bars(again_page) == (live_line, live_bars)
    assert len([b for b in live_bars if b.startswith("podtally-demo-")]) == 3


def test_a_misspelt_setting_is_a_type_error_not_the_default() -> None:
    """`replay(obs, expect_pod=3)` must not judge with no expectation as if nothing was said."""
    observations = [
        observation_from(
            {"index": i, "start": i * 0.01, "latency_ms": 1.0, "status": 200, "pod": f"p{i % 3}"}
        )
        for i in range(30)
    ]
    with pytest.raises(TypeError, match="expect_pod, tolerence"):
        replay(observations, expect_pod=3, tolerence=0.5)  # type: ignore[call-arg]
    assert replay(observations, expect_pods=3).options.expect_pods == 3
