"""Every command's ``--help``: each option's default (from the library) and env var shown."""

from __future__ import annotations

import re

import click
import pytest

from podtally.cli.app import COMMANDS, load
from podtally.local import StackConfig
from podtally.verify.options import DEFAULT_ALPHA, DEFAULT_CONCURRENCY
from tests.cli.conftest import Run


def _commands() -> list[tuple[list[str], click.Command]]:
    found: list[tuple[list[str], click.Command]] = []
    for name in COMMANDS:
        command = load(name)
        if isinstance(command, click.Group):
            found += [([name, sub], command.commands[sub]) for sub in command.commands]
        else:
            found.append(([name], command))
    return found


COMMAND_LINES = _commands()


def test_every_command_is_listed(podtally: Run) -> None:
    ran = podtally("--help")
    assert ran.code == 0 and ran.err == ""
    for name in COMMANDS:
        assert re.search(rf"^  {name}\s+\S", ran.out, re.M), name
    assert len(COMMAND_LINES) == 14  # 10 commands and cloud's 4 actions


@pytest.mark.parametrize(
    ("words", "command"), COMMAND_LINES, ids=[" ".join(w) for w, _ in COMMAND_LINES]
)
def test_help_shows_every_default_and_env_var(
    podtally: Run, words: list[str], command: click.Command
) -> None:
    ran = podtally(*words, "--help")
    assert ran.code == 0 and ran.err == "", ran
    text = " ".join(ran.out.split())  # help text is wrapped
    options = [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]
    assert options  # every command has one at least (--name, --stack, ...)
    for param in options:
        variable = f"PODTALLY_{(param.name or '').upper()}"
        assert param.envvar == variable
        assert f"env var: {variable}" in text
        if param.is_flag or param.multiple:
            continue  # off unless given: nothing to show
        assert param.show_default, param.name
        if param.default is not None or isinstance(param.show_default, str):
            assert re.search(rf"{variable}; default: \S", text), param.name


def test_defaults_come_from_the_library(podtally: Run) -> None:
    up = " ".join(podtally("up", "--help").out.split())
    defaults = StackConfig()
    for option, value in (
        ("REPLICAS", defaults.replicas),
        ("HTTP_PORT", defaults.http_port),
        ("DRAIN_SECONDS", defaults.drain_seconds),
        ("READY_TIMEOUT", defaults.ready_timeout),
    ):
        assert f"PODTALLY_{option}; default: {value}]" in up, option
    verify = " ".join(podtally("verify", "--help").out.split())
    assert f"PODTALLY_ALPHA; default: {DEFAULT_ALPHA}]" in verify
    assert f"PODTALLY_CONCURRENCY; default: {DEFAULT_CONCURRENCY}]" in verify


def test_option_env_vars_are_not_the_librarys_own() -> None:
    """PODTALLY_STATE_DIR, PODTALLY_HAPROXY, ... configure the library: no option may take
    one of those names (the stack's replicas inherit the environment)."""
    import pathlib

    source = pathlib.Path(__file__).resolve().parents[2] / "src" / "podtally"
    library = {
        match
        for path in source.rglob("*.py")
        if "cli" not in path.parts
        for match in re.findall(r"\"(PODTALLY_[A-Z_]+)\"", path.read_text())
    }
    assert "PODTALLY_STATE_DIR" in library
    options = {
        param.envvar
        for _, command in COMMAND_LINES
        for param in command.params
        if isinstance(param, click.Option)
    }
    assert not library & options
