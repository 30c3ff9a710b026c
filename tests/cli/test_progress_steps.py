"""The steps of up, restart, scale and cloud: a rich spinner on a terminal, plain lines
elsewhere (exactly the lines the library gave)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys

from tests.support import stderr_on_a_terminal

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
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    code, screen, out = stderr_on_a_terminal([sys.executable, "-c", SCRIPT], env)
    assert code == 0 and out == b"done\n"
    text = ANSI.sub("", screen)
    # the step under way beside the spinner, and every step's line kept above it
    assert "starting stack 'x': starting HAProxy" in text, text
    assert re.search(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] starting stack 'x'", text), text
    for line in ("generating a local CA", "starting 3 replica(s)", "starting HAProxy"):
        assert re.search(rf"(^|\n){re.escape(line)}\s*(\n|$)", text.replace("\r", "\n")), line


TABLE = """
from types import SimpleNamespace as NS
from podtally.cli.stack_view import print_table
replica = lambda pod, health, running=True: NS(
    pod=pod, node="local-node-1", zone="local-a", address="127.0.0.11", port=8080, pid=42,
    running=running, health=health, track="stable", weight=1, grpc_port=9001 if running else None)
stack = NS(config=NS(tracks=lambda: ["stable"]),
           replicas=[replica("web-[a]", "UP"), replica("web-b", "DOWN", running=False)])
print_table(stack)
"""


def _stdout_of(script: str, terminal: bool) -> str:
    if not terminal:
        return subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=follower, env=env)
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 5)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=30) == 0
    return seen.decode()


def test_the_status_table_plain_and_on_a_terminal() -> None:
    plain = _stdout_of(TABLE, terminal=False)
    assert plain.splitlines() == [
        "POD      NODE          ZONE     ADDRESS          PID          HAPROXY  GRPC",
        "web-[a]  local-node-1  local-a  127.0.0.11:8080  42           UP       9001",
        "web-b    local-node-1  local-a  127.0.0.11:8080  42 (exited)  DOWN     -",
    ]
    drawn = _stdout_of(TABLE, terminal=True)
    assert "\x1b[" in drawn  # rich: bold headers, the replica that is not UP in yellow
    rows = [line.rstrip() for line in ANSI.sub("", drawn).replace("\r", "").splitlines()]
    assert rows[0].split() == ["POD", "NODE", "ZONE", "ADDRESS", "PID", "HAPROXY", "GRPC"]
    assert rows[1].split()[0] == "web-[a]"  # a name is text, never markup
    assert rows[2].split()[-2:] == ["DOWN", "-"]
