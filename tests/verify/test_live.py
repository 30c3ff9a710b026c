"""`podtally verify --live`: on a pseudo-terminal, the live view (bars, rate, errors, the verdict
as it forms); without a terminal, today's output exactly."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator

import pytest

from podtally.verify.live import LiveTally
from tests.support import clean_env, free_port, run_cli, stderr_on_a_terminal
from tests.verify.conftest import StubServer, identity_responder
from tests.verify.test_html import observation

PODS = ["pod-a", "pod-b", "pod-c"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def balanced(stub: Callable[..., StubServer]) -> Iterator[StubServer]:
    yield stub("127.0.0.1", free_port(), identity_responder(PODS))


def on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run podtally with stderr on a pty (80 columns); return (code, terminal text, stdout)."""
    env = {**clean_env(), "COLUMNS": "100", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    code, screen, out = stderr_on_a_terminal([sys.executable, "-m", "podtally", *args], env)
    return code, screen, out.decode()


def test_live_view_on_a_terminal(balanced: StubServer) -> None:
    code, screen, out = on_a_terminal(
        "verify", balanced.url, "-n", "1500", "-c", "4", "--expect-pods", "3", "--live"
    )
    assert code == 0, screen
    text = ANSI.sub("", screen)
    verdicts = re.findall(r"verdict so far: (even|uneven|inconclusive)", text)
    # the first frame is drawn before any answer: the verdict forms as the run goes
    assert verdicts[0] == "inconclusive", verdicts
    # the last frame, after the run, is the run's own verdict, worded as the report words it
    final = text.rsplit("verdict so far:", 1)[-1]
    report_line = out.rstrip().splitlines()[-1]
    assert report_line.startswith("verdict: PASS: even"), out
    assert report_line in re.sub(r"\s*\n\s*", " ", final), final
    for pod in PODS:
        assert re.search(rf"{pod}\s+500\s+33\.3%\s+━+", text), text[-2000:]
    assert re.search(r"1500 requests, [\d,]+/s, [\d.]+ s \(100%\); failed 0", text)
    assert "\x1b[" in screen  # drawn in colour, in place
    assert "verdict: PASS" in out  # the report itself, on stdout, as always


def test_live_without_a_terminal_is_todays_output(balanced: StubServer) -> None:
    args = ["verify", balanced.url, "-n", "60", "-c", "3"]
    plain = run_cli(*args)
    live = run_cli(*args, "--live")
    assert live.returncode == plain.returncode == 1  # 60 requests: inconclusive
    assert live.stderr == plain.stderr == ""

    def steady(text: str) -> str:  # timings differ between runs
        return "\n".join(
            line
            for line in text.splitlines()
            if not line.startswith(("requests ", "latency ", "target "))
        )

    assert steady(live.stdout) == steady(plain.stdout)


def test_live_and_no_progress_contradict(balanced: StubServer) -> None:
    """--live draws on stderr, --no-progress asks for nothing there: one error line, exit 2,
    before any request."""
    proc = run_cli("verify", balanced.url, "-n", "10", "--live", "--no-progress")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("error: --live and --no-progress contradict each other; pick one\n"), (
        proc.stderr
    )
    assert balanced.paths == []


def test_tally_turns_from_inconclusive_to_even_and_counts_failures() -> None:
    tally = LiveTally(expect_pods=3)
    assert tally.snapshot().decision.verdict == "inconclusive"
    for i in range(1500):
        tally.add(observation(i, PODS[i % 3]))
    tally.add(observation(1500, None, error="refused"))
    snap = tally.snapshot()
    assert snap.decision.verdict == "even" and snap.failed == 1
    # a pod that takes half of everything is shown uneven, in the same view
    skewed = LiveTally(expect_pods=3)
    for i in range(1500):
        skewed.add(observation(i, "pod-a" if i % 2 else PODS[i % 3]))
    assert skewed.snapshot().decision.verdict == "uneven"


def test_with_a_split_the_tally_judges_the_split_s_field() -> None:
    """`verify --expect-split version=...` and `demo --canary`: the bars are the versions, judged
    against the split (a 90/10 canary is even against 90:10, uneven as four equal pods)."""
    from podtally.local.demo import expectation
    from podtally.verify.expected_split import parse_expect_split

    split = parse_expect_split("version=stable:90,canary:10")
    canary = LiveTally(expect_split=split)
    pods = LiveTally(expect_pods=4)
    for i in range(20000):
        version, pod = ("canary", "pod-d") if i % 10 == 0 else ("stable", PODS[i % 3])
        canary.add(observation(i, pod, version=version))
        pods.add(observation(i, pod, version=version))
    decision = canary.snapshot().decision
    assert decision.verdict == "even"
    assert {g.name: g.count for g in decision.groups} == {"stable": 18000, "canary": 2000}
    assert pods.snapshot().decision.verdict == "uneven"
    assert "version" in str(canary.view().renderables[0].columns[0].header)  # type: ignore[attr-defined]
    # The demo's live view expects what its verifier expects.
    assert expectation(3, canary=True) == (None, parse_expect_split("version=stable:90,canary:10"))
    assert expectation(3, canary=False) == (3, None)
    assert expectation(3, canary=False, expect_pods=2) == (2, None)
