"""`podtally demo`: the library's :func:`podtally.local.demo.demo` (a stack up, verified, torn
down), watched and reported as `verify` is; ``--grpc`` runs issue 12's scenario instead
(:mod:`podtally.cli.demo_grpc`).

The options are `verify`'s load, judging and output groups (:mod:`podtally.cli.verify`) and the
demo stack's own (:data:`STACK_OPTIONS`, the library's keywords of the same names).
"""

from __future__ import annotations

from typing import Any

import click

from podtally.cli.common import require_extra
from podtally.cli.local import replica_options
from podtally.cli.params import IMAGE_OPTION, Command, option, path_option, stacked
from podtally.cli.signals import capture_signals
from podtally.cli.verify import JUDGE_OPTIONS, OUTPUT_OPTIONS, load_options, verify_settings
from podtally.cli.watching import outputs_of, until_interrupted, watching
from podtally.local.demo import (
    CANARY_REPLICAS,
    CANARY_SPLIT,
    CANARY_WEIGHT,
    DEMO_PORTS,
    DEMO_REPLICAS,
    DEMO_REQUESTS,
)
from podtally.local.grpc_demo import GRPC_DEMO_PORTS


def _listed(ports: tuple[int, ...]) -> str:
    return ",".join(str(port) for port in ports)


# The demo stack's settings: what `podtally.local.demo.demo` takes besides the verifier's.
STACK_OPTIONS = stacked(
    replica_options(DEMO_REPLICAS),
    option(
        "--canary",
        is_flag=True,
        help=f"add {CANARY_REPLICAS} canary replica(s) that HAProxy sends {CANARY_WEIGHT:g}% of "
        f"the requests, and verify that split (--expect-split {CANARY_SPLIT}) until the "
        "verdict is known",
    ),
    option(
        "--grpc",
        is_flag=True,
        help="issue 12's failure instead: gRPC clients hold channels through the Service path "
        "(per connection) while the stack scales from 3 to 6 replicas; then the ALB path (per "
        "call) and a channel per call. Exit 0 when each of the three verdicts is the expected "
        "one (3 pods never answered; even; even)",
    ),
    option(
        "--http",
        is_flag=True,
        help="verify the plain-HTTP listener instead of HTTPS with the stack's own CA",
    ),
    option(
        "--ports",
        default=None,
        show_default=f"{_listed(DEMO_PORTS)}; with --grpc {_listed(GRPC_DEMO_PORTS)}",
        metavar="HTTP,HTTPS,STATS[,GRPC,SERVICE,SERVICE_GRPC]",
        help="the demo stack's HAProxy ports on 127.0.0.1: HTTP, HTTPS, stats; with --grpc "
        "six: those three, then the ALB path's gRPC port and the Service path's HTTP and "
        "gRPC ports",
    ),
    path_option(
        "--run-dir", show_default="the state directory", help="where the stack keeps its state"
    ),
    IMAGE_OPTION,
)


@click.command(
    "demo",
    cls=Command,
    short_help="bring up the local stack, verify it, print the report, tear it down",
    help="The whole story in one command: start replicas of the identity service behind "
    "HAProxy (its own stack, apart from `podtally up`), verify the balancer through it "
    "with new connections, print the report, tear everything down. The exit code is the "
    "verifier's.",
    epilog="exit codes: as `podtally verify`; the stack is removed in every case.",
    # The verifier trusts the demo stack's own CA: advice that names the CA names that file.
    fixed_settings={"cacert": "the demo stack's CA file"},
)
@STACK_OPTIONS
@load_options(DEMO_REQUESTS)
@JUDGE_OPTIONS
@OUTPUT_OPTIONS
def demo_command(grpc: bool, **settings: Any) -> int:
    require_extra("local", "httptools", "scipy", "cryptography", "yaml")
    outputs = outputs_of(settings)
    if settings["ports"] is None:  # the library's own: three ports, six for the gRPC demo
        del settings["ports"]
    if grpc:  # issue 12: its own scenario and report (podtally.cli.demo_grpc)
        from podtally.cli.demo_grpc import demo_grpc

        for name in ("replicas", "canary", "nodes", "http"):  # the scenario has its own
            del settings[name]
        return demo_grpc(json=outputs["json"], **verify_settings(**settings))
    from podtally.local.demo import demo, expectation

    settings = verify_settings(**settings)
    # The live view expects what the demo's verifier expects (the canary split, with --canary).
    expect_pods, expect_split = expectation(
        settings["replicas"],
        settings["canary"],
        settings["expect_pods"],
        settings.get("expect_split"),
    )
    with (
        capture_signals("interrupt"),
        watching(expect_pods, settings["alpha"], expect_split=expect_split, **outputs) as watch,
    ):
        result = watch.result = until_interrupted(
            lambda: demo(
                say=watch.say,
                progress=watch.progress,
                on_observation=watch.observe(),
                on_options=watch.judged_by,
                **settings,
            )
        )
    return watch.report(result, "podtally demo")


COMMANDS: dict[str, click.Command] = {"demo": demo_command}
