"""CLI for `podtally cloud preview|up|down|verify`: the Pulumi program in infra/ on AWS."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from podtally.cli.common import err


def _ref(args: argparse.Namespace) -> Any:
    from podtally.cloud import StackRef, backend_url, check_stack_name, find_infra_dir

    return StackRef(check_stack_name(args.stack), find_infra_dir(args.infra_dir), backend_url())


def _preview(args: argparse.Namespace) -> int:
    from podtally.cloud import preview

    summary = preview(_ref(args), err)
    print(json.dumps({"stack": args.stack, "changes": summary}, sort_keys=True))
    return 0


def _up(args: argparse.Namespace) -> int:
    from podtally.cloud import up

    outputs = up(_ref(args), err)
    print(json.dumps({"stack": args.stack, "outputs": outputs}, sort_keys=True, default=str))
    return 0


def _down(args: argparse.Namespace) -> int:
    from podtally.cloud import destroy

    summary = destroy(_ref(args), err)
    print(json.dumps({"stack": args.stack, "changes": summary, "removed": True}, sort_keys=True))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from podtally.cloud import read_outputs
    from podtally.errors import NotRunningError

    outputs = read_outputs(_ref(args), err)
    url, replicas = outputs.get("url"), outputs.get("replicas")
    if not url or not replicas:
        raise NotRunningError(
            f"stack {args.stack!r} has no url/replicas outputs: is podtally:deployApp true and "
            "has 'podtally cloud up' finished?"
        )
    from podtally.cli import main

    extra = list(args.verify_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    argv = ["verify", str(url), "--expect-pods", str(int(replicas)), *extra]
    err("podtally " + " ".join(argv))
    return main(argv)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `cloud` and its sub-commands."""
    cloud = sub.add_parser(
        "cloud",
        help="create, check and delete the AWS deployment (Pulumi, needs podtally[cloud])",
        description=(
            "Drive the Pulumi program in infra/ (VPC, EKS, load balancer controller, ECR, ACM, "
            "Route53, the app). The knobs: infra/Pulumi.STACK.yaml, copied from "
            "infra/stack.example.yaml on first use. State: a local file backend under "
            "~/.local/state/podtally/pulumi unless PULUMI_BACKEND_URL is set. Needs the pulumi "
            "CLI, the AWS CLI, AWS credentials and PULUMI_CONFIG_PASSPHRASE."
        ),
    )
    actions = cloud.add_subparsers(dest="cloud_command", metavar="ACTION")
    actions.required = True
    helps = {
        "preview": ("show what `up` would change", _preview),
        "up": ("create or update the stack; prints its outputs as JSON", _up),
        "down": ("delete everything the stack created, then the stack itself", _down),
        "verify": ("run `podtally verify` against the stack's URL and replica count", _verify),
    }
    for name, (text, func) in helps.items():
        parser = actions.add_parser(name, help=text, description=text)
        parser.add_argument(
            "--stack",
            default="dev",
            help="Pulumi stack name (default: dev); its knobs are infra/Pulumi.STACK.yaml",
        )
        parser.add_argument(
            "--infra-dir",
            type=Path,
            default=None,
            help="the Pulumi project directory (default: infra/ of this checkout)",
        )
        if name == "verify":
            parser.add_argument(
                "verify_args",
                nargs=argparse.REMAINDER,
                help="extra arguments for `podtally verify` (after --)",
            )
        parser.set_defaults(func=func)
