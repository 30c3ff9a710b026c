"""In a real browser (Debian's chromium, driven by playwright-core from tests/browser/package.json):

- the HTML report of `podtally verify URL --html FILE` on the local stack renders with no console
  error and no network request; the verdict text and one bar per pod are in the DOM; a screenshot
  is kept in tests/browser/artifacts/ (not compared pixel by pixel);
- the identity page through the local stack with ?refresh=1 shows two different pods within a
  few seconds, in the page's own text.

`make test` installs chromium (scripts/apt-install.sh) and the driver (npm ci); where either is
missing these tests skip and say which.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.local.localstack_helpers import running_stack, stack_config
from tests.support import run_cli

from podtally.local import Stack
from podtally.service.routes import pod_colour

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
NAME = "browsertest"

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return "no /usr/bin/chromium (make test installs it: scripts/apt-install.sh chromium)"
    if shutil.which("node") is None:
        return "no node to run playwright-core (apt-get install nodejs npm)"
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed (make test runs: npm ci --prefix tests/browser)"
    return None


def drive(*args: str, timeout: float = 60) -> dict[str, object]:
    proc = subprocess.run(
        ["node", str(HERE / "drive.mjs"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=HERE,
        env={"PATH": "/usr/bin:/bin", "HOME": str(HERE / "artifacts"), "CHROMIUM": str(CHROMIUM)},
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = _missing()
    if missing:
        pytest.skip(missing)
    ARTIFACTS.mkdir(exist_ok=True)
    root = tmp_path_factory.mktemp("browser")
    with running_stack(stack_config(root / NAME)) as started:
        yield started


def test_the_report_in_a_browser(stack: Stack, tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    proc = run_cli(
        "verify",
        stack.url,
        "--max-requests",  # auto mode, as a user runs it: until the verdict is known
        "5000",
        "--cacert",
        str(stack.ca_path),
        "--expect-pods",
        "3",
        "--html",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    seen = drive("report", report.as_uri(), str(shot))
    assert seen["console"] == [] and seen["pageErrors"] == [], seen
    # the page itself, and nothing else: no font, script, image or favicon fetched
    assert seen["requests"] == [report.as_uri()], seen["requests"]
    assert seen["failed"] == []
    verdict = str(seen["verdict"])
    assert verdict.startswith("PASS: even: every pod's share is within"), verdict
    assert verdict == proc.stdout.rstrip().splitlines()[-1].removeprefix("verdict: ")
    assert seen["verdictColour"] == "rgb(26, 127, 55)"  # green: even
    pods = sorted(replica.pod for replica in stack.replicas)
    bars = seen["bars"]
    assert isinstance(bars, dict)
    assert sorted(bars["pod"]) == pods
    assert seen["visibleBars"] == 3
    assert shot.stat().st_size > 10_000  # a real picture, kept for a human to look at
    # the pod colours are the identity page's
    assert all(pod_colour(pod) in report.read_text() for pod in pods)


def test_identity_page_rotates_pods(stack: Stack) -> None:
    seen = drive("rotate", stack.url + "?refresh=1", "8", timeout=60)
    pods = seen["pods"]
    assert isinstance(pods, list)
    assert len(set(pods)) >= 2, seen
    assert set(pods) <= {replica.pod for replica in stack.replicas}
    # no error at all: the page names an empty icon (data:,), so the browser never asks for
    # /favicon.ico (a 404 and a console error on every load)
    assert seen["pageErrors"] == [] and seen["console"] == [], seen
    assert not [url for url in seen["requests"] if "favicon" in str(url)], seen["requests"]
