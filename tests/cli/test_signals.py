"""capture_signals, with real signals sent to this process (pytest runs in the main thread)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from podtally.cli.signals import capture_signals


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # Python runs the handler at the next bytecode boundary


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_hold_delivers_ctrl_c_after_the_block(sig: int) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    finished = False
    with pytest.raises(KeyboardInterrupt), capture_signals("hold") as received:
        _deliver(sig)
        finished = True  # the block was not interrupted
    assert finished and received == [sig]
    assert {s: signal.getsignal(s) for s in before} == before


def test_ignore_drops_what_arrived() -> None:
    with capture_signals("ignore") as received:
        _deliver(signal.SIGINT)
        _deliver(signal.SIGTERM)
    assert received == [signal.SIGINT, signal.SIGTERM]


def test_interrupt_turns_sigterm_into_ctrl_c() -> None:
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(KeyboardInterrupt), capture_signals("interrupt"):
            _deliver(signal.SIGTERM)
            pytest.fail("SIGTERM did not interrupt the block")
        # The command is stopping: another SIGTERM (timeout's to the process group) must not
        # cut its partial report and exit code short.
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


def test_interrupt_passes_on_only_the_first_sigterm() -> None:
    before = signal.getsignal(signal.SIGTERM)
    cleaned_up = False
    try:
        with pytest.raises(KeyboardInterrupt), capture_signals("interrupt"):
            try:
                _deliver(signal.SIGTERM)
            finally:
                _deliver(signal.SIGTERM)  # timeout's second, while the command cleans up
                cleaned_up = True
    finally:
        signal.signal(signal.SIGTERM, before)
    assert cleaned_up, "the second SIGTERM interrupted the clean-up"


def test_interrupt_restores_handlers_when_nothing_came() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with capture_signals("interrupt"):
        pass
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_nothing_received_nothing_raised() -> None:
    with capture_signals("hold") as received:
        pass
    assert received == []
