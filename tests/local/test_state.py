"""The run directory's lock and the process helpers that decide what still runs. No ports."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import run_cli

from podtally.errors import PodtallyError
from podtally.local import processes as proc
from podtally.local import rundir
from podtally.local import state as st


@contextlib.contextmanager
def sleeper(marker: str, spawned_in: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A process that sleeps with ``marker`` on its command line, in a session of its own;
    started by the stack's own ``spawn`` from ``spawned_in`` if given. Killed and reaped on exit.
    """
    argv = [sys.executable, "-c", "import time; time.sleep(60)", marker]
    if spawned_in is None:
        process = subprocess.Popen(argv, start_new_session=True)
    else:
        process = proc.spawn(argv, log_path=spawned_in / "log", cwd=spawned_in)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def held_elsewhere(run_dir: Path) -> Iterator[threading.Event]:
    """Another command (a thread here) holds the stack's lock until the event is set or the block
    ends; the lock is taken when the block starts."""
    held, release = threading.Event(), threading.Event()

    def first() -> None:
        with rundir.locked(run_dir):
            held.set()
            release.wait(10)

    worker = threading.Thread(target=first)
    worker.start()
    try:
        assert held.wait(10)
        yield release
    finally:
        release.set()
        worker.join(10)


def test_lock_keeps_a_second_command_out_until_the_first_is_done(tmp_path: Path) -> None:
    run_dir = tmp_path / "stack"
    run_dir.mkdir()
    with (
        held_elsewhere(run_dir),
        pytest.raises(PodtallyError, match="another podtally command holds"),
        rundir.locked(run_dir, timeout=0.3),
    ):
        pass
    with rundir.locked(run_dir, timeout=1):
        pass
    assert (tmp_path / ".stack.lock").exists()  # the stack still exists: its lock file stays


def test_lock_file_goes_with_the_run_directory_and_waiters_relock(tmp_path: Path) -> None:
    run_dir = tmp_path / "stack"
    run_dir.mkdir()
    held, release, second_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with rundir.locked(run_dir):
            held.set()
            release.wait(10)
            run_dir.rmdir()  # like `down`: the directory goes, so the lock file goes too

    def second() -> None:
        with rundir.locked(run_dir, timeout=10):
            second_in.set()

    a = threading.Thread(target=first)
    a.start()
    assert held.wait(10)
    b = threading.Thread(target=second)
    b.start()
    assert not second_in.wait(0.3)  # waits while the first holds the lock
    release.set()
    a.join(10)
    b.join(10)
    assert second_in.is_set()
    assert list(tmp_path.iterdir()) == []


def test_a_killed_but_unreaped_child_counts_as_gone() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert proc.pid_alive(process.pid)
        process.send_signal(signal.SIGKILL)
        # Not waited for: a zombie until reaped. It must not count as running.
        assert proc.wait_gone([process.pid], 10) == []
        assert not proc.group_alive(process.pid)
    finally:
        process.kill()
        process.wait()


def test_pid_is_checks_the_command_line_against_pid_reuse() -> None:
    # Asked at once after the spawn, many times: the command line reads empty until the exec
    # is through, and a process just started must still count as the one asked about.
    for _ in range(20):
        with sleeper("marker-one") as process:
            assert proc.pid_is(process.pid, "marker-one")
            assert not proc.pid_is(process.pid, "haproxy.cfg")


def test_a_child_this_process_started_is_never_taken_for_a_reused_pid(tmp_path: Path) -> None:
    # The stack keeps what it spawns; until reaped, such a pid cannot belong to anything else,
    # so the command line (which may still read empty while the exec finishes) is not consulted.
    with sleeper("marker-two", spawned_in=tmp_path) as process:
        assert proc.pid_is(process.pid, "serve", "--port 1")
    assert not proc.pid_is(process.pid, "marker-two")


def test_pid_is_checks_the_create_time_against_pid_reuse() -> None:
    # A recorded pid whose process started at another time is another process, even when its
    # command line matches (a crashed stack's pid, reused by a new replica of another stack).
    with sleeper("marker-three") as process:
        started = proc.create_time(process.pid)
        assert started > 0
        assert proc.pid_is(process.pid, "marker-three", created=started)
        assert not proc.pid_is(process.pid, "marker-three", created=started - 5.0)
        assert not proc.pid_is(process.pid, "marker-three", created=started + 5.0)
    assert proc.create_time(process.pid) == 0.0


def test_processes_in_finds_what_runs_from_a_directory(tmp_path: Path) -> None:
    with sleeper("marker-four", spawned_in=tmp_path) as process:
        found = dict(proc.processes_in(tmp_path))
        assert process.pid in found and "marker-four" in found[process.pid]
        assert proc.processes_in(tmp_path / "elsewhere") == []


def test_stop_groups_escalates_to_sigkill_for_a_process_that_ignores_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        assert proc.stop_groups([process.pid], signal.SIGTERM, grace=0.5) is True
        assert process.wait(5) == -signal.SIGKILL
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    "text",
    [
        "{garbage",
        "[]",
        '"a string"',
        '{"name": "x"}',
        '{"name": 1, "config": {}, "run_dir": "/x", "haproxy_binary": "h", "socket_path": "s", '
        '"ca_path": null, "template_hash": "t", "multi_address": true}',
        '{"name": "x", "config": {}, "run_dir": "/x", "haproxy_binary": "h", "socket_path": "s", '
        '"ca_path": null, "template_hash": "t", "multi_address": true, "replicas": [1]}',
        '{"name": "x", "config": {}, "run_dir": "/x", "haproxy_binary": "h", "socket_path": "s", '
        '"ca_path": null, "template_hash": "t", "multi_address": true, "haproxy_pid": "12"}',
    ],
)
def test_a_state_file_that_is_not_ours_is_one_clear_error(tmp_path: Path, text: str) -> None:
    (tmp_path / st.STATE_FILE).write_text(text)
    with pytest.raises(st.UnreadableStateError, match=r"cannot read .*state\.json: "):
        st.load(tmp_path)


def test_a_state_file_round_trips(tmp_path: Path) -> None:
    state = st.StackState(
        name="x",
        config={"replicas": 1},
        run_dir=str(tmp_path),
        haproxy_binary="/usr/sbin/haproxy",
        socket_path=str(tmp_path / "haproxy.sock"),
        ca_path=None,
        template_hash="abc",
        multi_address=True,
        haproxy_pid=42,
        replicas=[
            st.ReplicaRecord(
                ordinal=0,
                server=1,
                pod="x-abc-bcdfg",
                node="local-node-1",
                zone="local-a",
                address="127.0.0.11",
                port=8080,
                pid=43,
                template_hash="abc",
                log=str(tmp_path / "logs" / "x.log"),
                started_at=1.5,
            )
        ],
        created_at=1.0,
    )
    st.save(state)
    assert st.load(tmp_path) == state


def test_a_waiting_lock_says_so_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "stack"
    notes: list[str] = []
    with held_elsewhere(run_dir) as release:
        threading.Timer(0.5, release.set).start()
        with rundir.locked(run_dir, timeout=10, on_wait=lambda: notes.append("waiting")):
            pass
    assert notes == ["waiting"]
    with rundir.locked(run_dir, timeout=1, on_wait=lambda: notes.append("again")):
        pass
    assert notes == ["waiting"]  # a free lock is taken without a word


def test_without_psutil_the_stack_commands_say_what_to_install(tmp_path: Path) -> None:
    # A core install has no psutil: a module of that name that cannot be imported stands in.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "psutil.py").write_text("raise ModuleNotFoundError('psutil', name='psutil')\n")
    for command in (["status"], ["down"]):
        cli = run_cli(
            *command, env={"PYTHONPATH": str(shadow), "PODTALLY_STATE_DIR": str(tmp_path)}
        )
        assert cli.returncode == 3, cli.stderr
        assert cli.stderr == "error: the local stack needs psutil: pip install 'podtally[local]'\n"
