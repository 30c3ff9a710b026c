"""CLI for the Kubernetes commands: `podtally manifests`."""

from __future__ import annotations

import math
import sys
from typing import Any

import click

from podtally.cli.common import err, require_extra
from podtally.cli.params import Command, defaults_of, grpc_port_option, off_switch, option
from podtally.k8s.traffic import TRAFFIC_DISTRIBUTIONS
from podtally.k8s.verify_job import DEFAULT_DEADLINE_SECONDS, DEFAULT_REQUESTS
from podtally.spec import AppSpec

DEFAULTS = defaults_of(AppSpec)
# Options that only shape the verify Job, and options that only shape the app's objects.
_JOB_ONLY = ("requests", "deadline_seconds")
_APP_ONLY = ("gateway", "traffic_distribution")


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
@off_switch(
    "--no-namespace",
    "create_namespace",
    "leave the Namespace object out: the namespace exists and is managed elsewhere "
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
@off_switch("--no-tls", "tls", "eks: HTTP only (listener 80, no redirect); generic: no TLS section")
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
    "--gateway",
    is_flag=True,
    help="eks: the Gateway API (GatewayClass, Gateway, HTTPRoutes) instead of the Ingress",
)
@option(
    "--traffic-distribution",
    type=click.Choice(TRAFFIC_DISTRIBUTIONS),
    default=None,
    show_default="none: every pod alike",
    help="the Service's trafficDistribution; PreferSameZone narrows what an in-cluster verifier "
    "sees to its own zone",
)
@option(
    "--verify-job",
    is_flag=True,
    help="print instead the Job that verifies the Service from inside the cluster (and its "
    "NetworkPolicy); apply it after the app",
)
@option(
    "-n",
    "--requests",
    type=int,
    default=DEFAULT_REQUESTS,
    help="with --verify-job: the most requests the Job sends (it stops when its verdict is known)",
)
@option(
    "--deadline-seconds",
    type=int,
    default=DEFAULT_DEADLINE_SECONDS,
    help="with --verify-job: the Job fails after this many seconds, 10 to 3600",
)
@grpc_port_option(
    DEFAULTS["grpc_port"],
    "the pods' gRPC port (Service port 9090; eks with TLS: a gRPC Ingress on the same ALB)",
)
@off_switch(
    "--http-probes",
    "grpc_probes",
    "start-up and readiness on HTTP /readyz instead of gRPC health (Kubernetes before 1.27)",
)
@option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", help="format")
@click.pass_context
def manifests_command(
    ctx: click.Context, /, create_namespace: bool, output: str, **settings: Any
) -> int:
    _check_combination(ctx, settings["verify_job"])
    if output == "yaml":
        require_extra("local", "yaml")
    from podtally.k8s import app_objects, is_system_namespace, to_json, to_yaml

    variant = {name: settings.pop(name) for name in (*_JOB_ONLY, *_APP_ONLY, "verify_job")}
    host = settings["host"]
    # Host names are case-insensitive; Kubernetes wants an Ingress host in lower case.
    spec = AppSpec(**{**settings, "host": host.lower() if host is not None else None})
    if variant["verify_job"]:
        from podtally.k8s.verify_job import verify_objects

        objs = verify_objects(
            spec, requests=variant["requests"], deadline_seconds=variant["deadline_seconds"]
        )
        sys.stdout.write(to_yaml(objs) if output == "yaml" else to_json(objs))
        return 0
    objs = app_objects(
        spec,
        create_namespace=create_namespace,
        gateway=variant["gateway"],
        traffic_distribution=variant["traffic_distribution"],
    )
    if is_system_namespace(spec.namespace):
        err(
            f"note: no Namespace object for {spec.namespace!r}: every cluster has it, and its "
            "labels are the cluster's" + (_READINESS_GATE if spec.profile == "eks" else "")
        )
    elif not create_namespace and spec.profile == "eks":
        err(f"note: no Namespace object: namespace {spec.namespace!r} must exist" + _READINESS_GATE)
    sys.stdout.write(to_yaml(objs) if output == "yaml" else to_json(objs))
    return 0


def _check_combination(ctx: click.Context, verify_job: bool) -> None:
    """The Job's options only with --verify-job, the app's variants only without it."""
    given = {
        name
        for name in (*_JOB_ONLY, *_APP_ONLY)
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    }
    flags = {p.name: max(p.opts, key=len) for p in ctx.command.params if p.name}
    if not verify_job and given & set(_JOB_ONLY):
        flag = flags[min(given & set(_JOB_ONLY))]
        raise click.UsageError(f"{flag} only applies with --verify-job", ctx)
    if verify_job and given & set(_APP_ONLY):
        flag = flags[min(given & set(_APP_ONLY))]
        raise click.UsageError(f"{flag} shapes the app's objects, not --verify-job's", ctx)


_READINESS_GATE = (
    " (label it elbv2.k8s.aws/pod-readiness-gate-inject=enabled for the ALB's pod readiness gate)"
)

COMMANDS: dict[str, click.Command] = {"manifests": manifests_command}
