"""The steps of up, restart, scale and cloud: a rich spinner on a terminal, plain lines
elsewhere (exactly the lines the library gave)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

SCRIPT = """
import time
from podtally.cli.progress import steps
with steps("starting stack 'x'") as say:
    for line in ("generating a local CA", "starting 3 replica(s)", "starting HAProxy"):
        say(line)
        time.sleep(0.3)
print("done")
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_plain_lines_without_a_terminal() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and proc.stdout == "done\n"
    assert proc.stderr == "generating a local CA\nstarting 3 replica(s)\nstarting HAProxy\n"


def test_a_spinner_on_a_terminal() -> None:
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=follower, env=env
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == b"done\n"
    text = ANSI.sub("", seen.decode(errors="replace"))
    # the step under way beside the spinner, and every step's line kept above it
    assert "starting stack 'x': starting HAProxy" in text, text
    assert re.search(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] starting stack 'x'", text), text
    for line in ("generating a local CA", "starting 3 replica(s)", "starting HAProxy"):
        assert re.search(rf"(^|\n){re.escape(line)}\s*(\n|$)", text.replace("\r", "\n")), line
