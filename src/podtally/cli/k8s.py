"""CLI for the Kubernetes commands: `podtally manifests`."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from podtally.cli.common import err, require_extra


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `manifests`."""
    p = sub.add_parser(
        "manifests",
        help="print the Kubernetes objects for a deployment (generic or eks profile)",
        description=(
            "Print every Kubernetes object podtally needs, in apply order, for "
            "`kubectl apply -f -`. The same objects the Pulumi program deploys."
        ),
    )
    p.add_argument(
        "--profile",
        choices=("generic", "eks"),
        default="generic",
        help="generic: any cluster; eks: one ALB via the AWS Load Balancer Controller "
        "(default: %(default)s)",
    )
    p.add_argument("--name", default="podtally", help="object names (default: %(default)s)")
    p.add_argument("--namespace", default="podtally", help="namespace (default: %(default)s)")
    p.add_argument(
        "--no-namespace",
        dest="create_namespace",
        action="store_false",
        help="leave the Namespace object out: the namespace exists and is managed elsewhere "
        "(it is always left out for default and kube-*, which every cluster has)",
    )
    p.add_argument("--replicas", type=int, default=3, help="replicas (default: %(default)s)")
    p.add_argument(
        "--image",
        default=None,
        help="image by digest or immutable tag (default: the release image of this version)",
    )
    p.add_argument("--host", default=None, help="public hostname (an Ingress rule)")
    p.add_argument(
        "--certificate-arn", default=None, help="eks: the ACM certificate for HTTPS on the ALB"
    )
    p.add_argument(
        "--no-tls",
        dest="tls",
        action="store_false",
        help="eks: HTTP only (listener 80, no redirect); generic: no TLS section",
    )
    p.add_argument("--ingress-class", default=None, help="generic: the Ingress class")
    p.add_argument(
        "--tls-secret", default=None, help="generic: the TLS Secret for the Ingress host"
    )
    p.add_argument(
        "--zone-lookup",
        action="store_true",
        help="let pods read their node's zone label (mounts a token; RBAC: get nodes)",
    )
    p.add_argument(
        "--drain-seconds",
        type=_whole_seconds,
        default=None,
        help="whole seconds a pod keeps answering after SIGTERM, 0 to 3600 "
        "(default: 5 generic, 20 eks)",
    )
    p.add_argument(
        "--autoscale", action="store_true", help="add a HorizontalPodAutoscaler (min = replicas)"
    )
    p.add_argument(
        "--max-replicas", type=int, default=None, help="autoscaler maximum (default: 3 x replicas)"
    )
    p.add_argument(
        "-o", "--output", choices=("yaml", "json"), default="yaml", help="format (default: yaml)"
    )
    p.set_defaults(func=_manifests)


def _whole_seconds(text: str) -> int:
    """``--drain-seconds``: a whole number, since the fields it sets are integers."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of seconds (the pods' grace period and the ALB's "
            "deregistration delay are integers)"
        )
    return int(value)


def _manifests(args: argparse.Namespace) -> int:
    from podtally.spec import DEFAULT_IMAGE, AppSpec

    if args.output == "yaml":
        require_extra("local", "yaml")
    from podtally.k8s import is_system_namespace, render, to_json, to_yaml

    spec = AppSpec(
        name=args.name,
        namespace=args.namespace,
        replicas=args.replicas,
        image=args.image if args.image is not None else DEFAULT_IMAGE,
        # Host names are case-insensitive; Kubernetes wants an Ingress host in lower case.
        host=args.host.lower() if args.host is not None else None,
        tls=args.tls,
        profile=args.profile,
        certificate_arn=args.certificate_arn,
        zone_lookup=args.zone_lookup,
        drain_seconds=args.drain_seconds,  # None: the profile's default
        ingress_class=args.ingress_class,
        tls_secret=args.tls_secret,
        autoscaling=args.autoscale,
        max_replicas=args.max_replicas,
    )
    objs = render(spec, create_namespace=args.create_namespace)
    if is_system_namespace(spec.namespace):
        err(
            f"note: no Namespace object for {spec.namespace!r}: every cluster has it, and its "
            "labels are the cluster's" + (_READINESS_GATE if spec.profile == "eks" else "")
        )
    elif not args.create_namespace and spec.profile == "eks":
        err(f"note: no Namespace object: namespace {spec.namespace!r} must exist" + _READINESS_GATE)
    sys.stdout.write(to_yaml(objs) if args.output == "yaml" else to_json(objs))
    return 0


_READINESS_GATE = (
    " (label it elbv2.k8s.aws/pod-readiness-gate-inject=enabled for the ALB's pod readiness gate)"
)
