"""CLI for `podtally cloud preview|up|down|verify`: the Pulumi program in infra/ on AWS."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from podtally.cli.common import err
from podtally.cli.params import Group, option, path_option
from podtally.cli.progress import steps
from podtally.cli.verify import VERIFY_OPTIONS, verify_url
from podtally.k8s.verify_job import DEFAULT_DEADLINE_SECONDS, DEFAULT_REQUESTS


def _ref(stack: str, infra_dir: Path | None) -> Any:
    from podtally.cloud import StackRef, backend_url, check_stack_name, find_infra_dir

    return StackRef(check_stack_name(stack), find_infra_dir(infra_dir), backend_url())


@click.group(
    "cloud",
    cls=Group,
    short_help="create, check and delete the AWS deployment (Pulumi, needs podtally[cloud])",
    help="Drive the Pulumi program in infra/ (VPC, EKS, load balancer controller, ECR, ACM, "
    "Route53, the app). The knobs: infra/Pulumi.STACK.yaml, copied from "
    "infra/stack.example.yaml on first use. State: a local file backend under "
    "~/.local/state/podtally/pulumi unless PULUMI_BACKEND_URL is set. Needs the pulumi CLI, the "
    "AWS CLI, AWS credentials and PULUMI_CONFIG_PASSPHRASE.",
)
def cloud_group() -> None:
    """The group itself does nothing: its commands do."""


def _action(name: str, text: str) -> Callable[[Callable[..., int]], click.Command]:
    """A cloud action with the options every action takes: --stack and --infra-dir."""

    def decorate(func: Callable[..., int]) -> click.Command:
        func = path_option(
            "--infra-dir",
            show_default="infra/ of this checkout",
            help="the Pulumi project directory",
        )(func)
        func = option(
            "--stack",
            default="dev",
            help="Pulumi stack name; its knobs are infra/Pulumi.STACK.yaml",
        )(func)
        return cloud_group.command(name, short_help=text, help=text)(func)

    return decorate


@_action("preview", "show what `up` would change")
def preview_command(stack: str, infra_dir: Path | None) -> int:
    from podtally.cloud import preview

    summary = preview(_ref(stack, infra_dir), err)
    print(json.dumps({"stack": stack, "changes": summary}, sort_keys=True))
    return 0


@_action("up", "create or update the stack; prints its outputs as JSON")
def up_command(stack: str, infra_dir: Path | None) -> int:
    from podtally.cloud import up

    outputs = up(_ref(stack, infra_dir), err)
    print(json.dumps({"stack": stack, "outputs": outputs}, sort_keys=True, default=str))
    return 0


@_action("down", "delete everything the stack created, then the stack itself")
def down_command(stack: str, infra_dir: Path | None) -> int:
    from podtally.cloud import destroy

    summary = destroy(_ref(stack, infra_dir), err)
    print(json.dumps({"stack": stack, "changes": summary, "removed": True}, sort_keys=True))
    return 0


@_action(
    "verify",
    "check the stack from outside and from inside: `podtally verify` on the stack's URL (through "
    "the ALB and DNS name), and the verify Job in the cluster (the Service path), expecting the "
    "stack's replica count (--expect-pods overrides it; with --expect-split the outside check "
    "judges the split instead); exits with the worse of the two; takes every option of "
    "`podtally verify` (-n also sets the Job's requests)",
)
@option(
    "--no-in-cluster",
    "in_cluster",
    is_flag=True,
    flag_value=False,
    default=True,
    show_default=False,
    help="only the outside check: no Job, so no kubectl, aws CLI or AWS credentials needed",
)
@option(
    "--kubectl",
    default=None,
    show_default="kubectl beside podtally, else on PATH",
    help="the kubectl that applies the in-cluster Job",
)
@option(
    "--deadline-seconds",
    type=int,
    default=DEFAULT_DEADLINE_SECONDS,
    help="the in-cluster Job fails after this many seconds, 10 to 3600",
)
@VERIFY_OPTIONS
def verify_command(
    stack: str,
    infra_dir: Path | None,
    expect_pods: int | None,
    in_cluster: bool,
    kubectl: str | None,
    deadline_seconds: int,
    **settings: Any,
) -> int:
    import podtally.cloud
    from podtally.cloud import incluster
    from podtally.errors import NotRunningError

    outputs = podtally.cloud.read_verify_outputs(_ref(stack, infra_dir), err)
    url, replicas = outputs.get("url"), outputs.get("replicas")
    if not url or not replicas:
        raise NotRunningError(
            f"stack {stack!r} has no url/replicas outputs: is podtally:deployApp true and "
            "has 'podtally cloud up' finished?"
        )
    expected = expect_pods if expect_pods is not None else int(replicas)
    # Every precondition of the in-cluster half holds before either half starts.
    job = (
        _in_cluster_job(outputs, expected, kubectl, settings, deadline_seconds)
        if in_cluster
        else None
    )
    split = settings.get("expect_split")
    if split is not None and expect_pods is None:
        # A split judges shares of a field; the pod count is the in-cluster Job's to check.
        err(f"verifying {url}, expecting the split {split}")
        outside = verify_url(str(url), **settings)
    else:
        err(f"verifying {url}, expecting {expected} pods")
        outside = verify_url(str(url), expect_pods=expected, **settings)
    if job is None:
        return outside
    plan, kubectl_path = job
    with steps(f"running job/{plan.spec.name}-verify in the cluster") as say:
        result = incluster.run_verify_job(
            plan, str(outputs["kubeconfig"]), kubectl=kubectl_path, progress=say
        )
    for line in result.log.splitlines():
        err(f"in-cluster: {line}")
    err(
        f"outside: exit {outside}; in-cluster: exit {result.exit_code} "
        f"(job/{plan.spec.name}-verify {result.outcome})"
    )
    return incluster.worst_exit_code(outside, result.exit_code)


def _in_cluster_job(
    outputs: dict[str, Any],
    expected: int,
    kubectl: str | None,
    settings: dict[str, Any],
    deadline_seconds: int,
) -> tuple[Any, str]:
    """The Job to run and the kubectl to run it with, after the in-cluster preconditions."""
    import podtally.cloud
    from podtally.cloud import incluster

    plan = incluster.plan_from_stack(
        {**outputs, "replicas": expected},
        requests=settings["requests"] or DEFAULT_REQUESTS,
        deadline_seconds=deadline_seconds,
    )
    kubectl_path = incluster.find_kubectl(kubectl)
    podtally.cloud.check_aws_cli()  # the kubeconfig runs `aws eks get-token`
    podtally.cloud.check_aws_credentials()
    return plan, kubectl_path


COMMANDS: dict[str, click.Command] = {"cloud": cloud_group}
