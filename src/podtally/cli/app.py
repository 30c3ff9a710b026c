"""The ``podtally`` group: every command, in the order ``--help`` lists them.

A command's module is imported only when that command runs (or shows its help): the modules
take their defaults from the library, and the library parts a command needs may come from a
pip extra that a slim install (the container image: ``podtally serve`` only) does not have.
"""

from __future__ import annotations

import importlib

import click

from podtally import __version__
from podtally.cli.params import Group
from podtally.errors import MissingDependencyError

# name: (module under podtally.cli, pip extra it needs or None, one line for `podtally --help`)
COMMANDS: dict[str, tuple[str, str | None, str]] = {
    "serve": ("serve", None, "run one replica of the identity service"),
    "up": ("local", "local", "start replicas of the identity service behind a local HAProxy"),
    "status": ("local", "local", "show the local stack's replicas and HAProxy's view of them"),
    "restart": ("local", "local", "rolling restart: a new replica UP before each old one drains"),
    "scale": ("local", "local", "change the number of replicas without failing a request"),
    "down": ("local", "local", "stop the local stack and remove its state"),
    "verify": (
        "verify",
        "verify",
        "send requests through a URL and check which pods answered, and how evenly",
    ),
    "demo": (
        "demo",
        "local",
        "bring up the local stack, verify it, print the report, tear it down",
    ),
    "report": (
        "report",
        "verify",
        "judge a saved --observations file again: text, --json or --html",
    ),
    "manifests": (
        "k8s",
        None,
        "print the Kubernetes objects for a deployment (generic or eks profile)",
    ),
    "cloud": (
        "cloud",
        "cloud",
        "create, check and delete the AWS deployment (Pulumi, needs podtally[cloud])",
    ),
}


def load(name: str) -> click.Command:
    """The click command ``name`` (its module imported now)."""
    module_name, extra, _ = COMMANDS[name]
    try:
        module = importlib.import_module(f"podtally.cli.{module_name}")
    except ImportError as exc:
        if extra is None or not exc.name or exc.name.startswith("podtally"):
            raise
        raise MissingDependencyError(
            f"this command needs {exc.name}: pip install 'podtally[{extra}]'"
        ) from None
    command: click.Command = module.COMMANDS[name]
    return command


class _Podtally(Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load(cmd_name) if cmd_name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=_Podtally,
    help="Which pod answered? Serve identities, verify load balancing, run it all.",
)
@click.version_option(
    __version__, "--version", prog_name="podtally", message="%(prog)s %(version)s"
)
def podtally() -> None:
    """The group itself does nothing: its commands do."""
