"""CLI for the Kubernetes commands: `podtally manifests`."""

from __future__ import annotations

import math
import sys
from typing import Any

import click

from podtally.cli.common import err, require_extra
from podtally.cli.params import Command, defaults_of, option
from podtally.spec import AppSpec

DEFAULTS = defaults_of(AppSpec)


def _whole_seconds(ctx: click.Context, param: click.Parameter, text: str | None) -> int | None:
    """``--drain-seconds``: a whole number, since the fields it sets are integers."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise click.BadParameter(
            f"{text!r} is not a whole number of seconds (the pods' grace period and the ALB's "
            "deregistration delay are integers)"
        )
    return int(value)


@click.command(
    "manifests",
    cls=Command,
    short_help="print the Kubernetes objects for a deployment (generic or eks profile)",
    help="Print every Kubernetes object podtally needs, in apply order, for "
    "`kubectl apply -f -`. The same objects the Pulumi program deploys.",
)
@option(
    "--profile",
    type=click.Choice(["generic", "eks"]),
    default=DEFAULTS["profile"],
    help="generic: any cluster; eks: one ALB via the AWS Load Balancer Controller",
)
@option("--name", default=DEFAULTS["name"], help="object names")
@option("--namespace", default=DEFAULTS["namespace"], help="namespace")
@option(
    "--no-namespace",
    "create_namespace",
    is_flag=True,
    flag_value=False,
    default=True,
    show_default=False,
    help="leave the Namespace object out: the namespace exists and is managed elsewhere "
    "(it is always left out for default and kube-*, which every cluster has)",
)
@option("--replicas", type=int, default=DEFAULTS["replicas"], help="replicas")
@option(
    "--image",
    default=DEFAULTS["image"],
    help="image by digest or immutable tag (the default: the release image of this version)",
)
@option("--host", default=None, help="public hostname (an Ingress rule)")
@option("--certificate-arn", default=None, help="eks: the ACM certificate for HTTPS on the ALB")
@option(
    "--no-tls",
    "tls",
    is_flag=True,
    flag_value=False,
    default=DEFAULTS["tls"],
    show_default=False,
    help="eks: HTTP only (listener 80, no redirect); generic: no TLS section",
)
@option("--ingress-class", default=None, help="generic: the Ingress class")
@option("--tls-secret", default=None, help="generic: the TLS Secret for the Ingress host")
@option(
    "--zone-lookup",
    is_flag=True,
    help="let pods read their node's zone label (mounts a token; RBAC: get nodes)",
)
@option(
    "--drain-seconds",
    callback=_whole_seconds,
    default=None,
    show_default="5 generic, 20 eks",
    help="whole seconds a pod keeps answering after SIGTERM, 0 to 3600",
)
@option(
    "--autoscale",
    "autoscaling",
    is_flag=True,
    help="add a HorizontalPodAutoscaler (min = replicas)",
)
@option(
    "--max-replicas",
    type=int,
    default=None,
    show_default="3 x replicas",
    help="autoscaler maximum",
)
@option(
    "--grpc-port",
    type=int,
    default=DEFAULTS["grpc_port"],
    help="the pods' gRPC port (Service port 9090; eks with TLS: a gRPC Ingress on the same ALB); "
    "0 turns gRPC off",
)
@option(
    "--http-probes",
    "grpc_probes",
    is_flag=True,
    flag_value=False,
    default=DEFAULTS["grpc_probes"],
    show_default=False,
    help="start-up and readiness on HTTP /readyz instead of gRPC health (Kubernetes before 1.27)",
)
@option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", help="format")
def manifests_command(create_namespace: bool, output: str, **settings: Any) -> int:
    if output == "yaml":
        require_extra("local", "yaml")
    from podtally.k8s import is_system_namespace, render, to_json, to_yaml

    host = settings["host"]
    # Host names are case-insensitive; Kubernetes wants an Ingress host in lower case.
    spec = AppSpec(**{**settings, "host": host.lower() if host is not None else None})
    objs = render(spec, create_namespace=create_namespace)
    if is_system_namespace(spec.namespace):
        err(
            f"note: no Namespace object for {spec.namespace!r}: every cluster has it, and its "
            "labels are the cluster's" + (_READINESS_GATE if spec.profile == "eks" else "")
        )
    elif not create_namespace and spec.profile == "eks":
        err(f"note: no Namespace object: namespace {spec.namespace!r} must exist" + _READINESS_GATE)
    sys.stdout.write(to_yaml(objs) if output == "yaml" else to_json(objs))
    return 0


_READINESS_GATE = (
    " (label it elbv2.k8s.aws/pod-readiness-gate-inject=enabled for the ALB's pod readiness gate)"
)

COMMANDS: dict[str, click.Command] = {"manifests": manifests_command}
