"""How every command declares its options and says its errors.

* :func:`option`: a click option declared once: its default shown in ``--help``, and an
  environment variable ``PODTALLY_<NAME>`` (the parameter's name, which is the library setting
  it feeds: ``--cacert`` reads ``PODTALLY_CACERT``), shown in ``--help`` too.
  :func:`off_switch` declares a flag that turns a setting off (``--no-tls``), :func:`path_option`
  one that names a file (``--cacert FILE``).
* :func:`stacked`: a group of options declared once, as one decorator, for every command that
  takes them (`verify`'s options are also `cloud verify`'s; `demo` shares the load, judging and
  output options with `verify`). A command adds one of its own with one more decorator.
* :class:`Command` and :class:`Group`: a library error that names a setting is worded with the
  command's own flag (``error: --max-error-rate 2: must be within 0..1``), because every click
  parameter is named after the library setting it feeds.
* :func:`usage_line`: a click usage error as one line pointing at the command's ``--help``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from podtally.errors import PodtallyError, Setting, worded

ENV_PREFIX = "PODTALLY_"
F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def envvar(name: str) -> str:
    """The environment variable of the option that feeds setting ``name``."""
    return ENV_PREFIX + name.upper()


class Option(click.Option):
    """An option whose usage errors name it by its flags only (its env var is in ``--help``)."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        return " / ".join(f"'{flag}'" for flag in self.opts)


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` with the project's rules: default and env var shown in ``--help``.

    The last declaration without dashes, if any, is the parameter's (and setting's) name;
    otherwise click derives it from the long option.
    """
    name = click.Option(decls).name or ""  # the name click gives it
    attrs.setdefault("envvar", envvar(name))
    attrs.setdefault("show_envvar", True)
    attrs.setdefault("show_default", True)
    attrs.setdefault("cls", Option)
    return click.option(*decls, **attrs)


def off_switch(flag: str, setting: str, help: str) -> Callable[[F], F]:
    """``--no-tls``: a flag that turns ``setting`` (on by default) off; nothing to show as its
    default, since its absence is the default."""
    return option(
        flag, setting, is_flag=True, flag_value=False, default=True, show_default=False, help=help
    )


def grpc_port_option(default: int, what: str) -> Callable[[F], F]:
    """``--grpc-port``, the replica's gRPC port, as `serve` takes it and `manifests` sets it."""
    return option("--grpc-port", type=int, default=default, help=f"{what}; 0 turns gRPC off")


def path_option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """An option naming a file or directory (a :class:`~pathlib.Path`; None when not given)."""
    path = click.Path(dir_okay=attrs.pop("dir_okay", True), path_type=Path)
    return option(*decls, type=path, default=None, **attrs)


def stacked(*decorators: Callable[[Any], Any]) -> Callable[[F], F]:
    """One decorator for ``decorators``, as if written one above the other (the first on top)."""

    def apply(func: F) -> F:
        decorated: Any = func
        for decorator in reversed(decorators):
            decorated = decorator(decorated)
        applied: F = decorated
        return applied

    return apply


def flag_namer(command: click.Command | None) -> Callable[[str], str]:
    """``setting -> how this command's user writes it``: an option's long flag
    (``--max-error-rate``, ``--requests`` rather than ``-n``), an argument's metavar (``URL``);
    else, for a setting the command gives the library itself, its words for it
    (:attr:`Command.fixed_settings`), else the setting's own name. A
    :class:`~podtally.errors.Setting` of another command is that command with its flag
    (``podtally up --host``)."""
    names: dict[str, str] = {}
    if command is not None:
        names.update(getattr(command, "fixed_settings", {}))
        for param in command.params:
            if param.name is not None and isinstance(param, click.Option):
                names[param.name] = max(param.opts, key=len)  # the long form
            elif param.name is not None:
                names[param.name] = param.human_readable_name
    own = command.name if command is not None else None

    def name(setting: str) -> str:
        other = setting.command if isinstance(setting, Setting) else None
        if other is None or other == own:
            return names.get(setting, setting)
        # Advice to run another command: that command as typed, with its own flag.
        from podtally.cli.app import load

        try:
            return f"podtally {other} {flag_namer(load(other))(str(setting))}"
        except (KeyError, PodtallyError):  # not a command, or its extra is not installed
            return f"podtally {other} {setting}"

    return name


def _shown(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def error_line(exc: PodtallyError, command: click.Command | None = None) -> str:
    """``error: --flag VALUE: what`` (or ``error: what``) for a library error."""
    name = flag_namer(command)
    what = worded(exc.what, name)
    if exc.setting is None:
        return f"error: {what}"
    where = name(exc.setting)
    # A flag's value is its presence: `--gateway`, not `--gateway True`.
    if exc.has_value and not isinstance(exc.value, bool):
        where += f" {_shown(exc.value)}"
    return f"error: {where}: {what}"


class WordedError(Exception):
    """A library error already worded for this command line: ``line`` and ``exit_code``."""

    def __init__(self, line: str, exit_code: int) -> None:
        super().__init__(line)
        self.line = line
        self.exit_code = exit_code


class Command(click.Command):
    """A command whose library errors name its own flags.

    ``fixed_settings`` words the settings the command gives the library itself, without a
    flag, for a library message that names one: `demo` verifies with its stack's own CA, so
    its ``cacert`` is "the demo stack's CA file", never a ``--cacert`` it does not take.
    """

    def __init__(
        self, *args: Any, fixed_settings: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("context_settings", CONTEXT)
        super().__init__(*args, **kwargs)
        self.fixed_settings: dict[str, str] = dict(fixed_settings or {})

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PodtallyError as exc:
            raise WordedError(error_line(exc, self), exc.exit_code) from exc


class Group(click.Group):
    """A group of :class:`Command` (and of groups like itself). Without a command it is a
    usage error (``missing command``), not the help text."""

    command_class = Command
    group_class = type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT)
        kwargs.setdefault("no_args_is_help", False)
        super().__init__(*args, **kwargs)


# Issue 16: `up` and `demo` can run their replicas from the image that ships (podman).
IMAGE_OPTION = option(
    "--image",
    default=None,
    metavar="IMAGE",
    show_default="processes of this install",
    help="run each replica as a podman container of IMAGE, such as localhost/podtally:VERSION "
    "(`make image` builds it)",
)


def usage_line(exc: click.UsageError) -> str:
    """``error: no such option: --bogus (see 'podtally serve --help')``."""
    message = exc.format_message().strip().rstrip(".")
    message = message[:1].lower() + message[1:]
    where = exc.ctx.command_path if exc.ctx is not None else "podtally"
    return f"error: {' '.join(message.split())} (see '{where} --help')"


__all__ = [
    "CONTEXT",
    "ENV_PREFIX",
    "IMAGE_OPTION",
    "Command",
    "Group",
    "WordedError",
    "defaults_of",
    "envvar",
    "error_line",
    "flag_namer",
    "grpc_port_option",
    "off_switch",
    "option",
    "path_option",
    "stacked",
    "usage_line",
]


def defaults_of(config: type) -> dict[str, Any]:
    """The defaults a library dataclass declares, by field name: ``--help`` shows these."""
    import dataclasses

    return {
        f.name: f.default
        for f in dataclasses.fields(config)
        if f.default is not dataclasses.MISSING
    }
