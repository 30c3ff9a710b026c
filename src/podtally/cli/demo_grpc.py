"""`podtally demo --grpc`: the HTTP/2 pinning failure and its two fixes, printed side by side.

The library (:func:`podtally.local.grpc_demo.grpc_demo`) runs the scenario and judges it; this
prints the pinned run's report (with its per-connection table), the three verdicts side by
side, and one paragraph on what happened. Exit 0 when each verdict is what the scenario
expects, 1 when one is not.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from podtally.cli.common import err
from podtally.cli.params import flag_namer
from podtally.cli.signals import capture_signals
from podtally.local.grpc_demo import GRPC_DEMO_TO

if TYPE_CHECKING:
    from podtally.local.grpc_demo import GrpcDemoResult, GrpcRun


def _verdict(run: GrpcRun) -> str:
    verdict = run.result.verdict
    return (
        f"{verdict.result}, {len(run.answered)}/{GRPC_DEMO_TO} pods answered, "
        f"exit {verdict.exit_code}"
    )


def render(demo: GrpcDemoResult) -> str:
    """The side-by-side summary and the paragraph that explains it."""
    rows = [("PATH", "CHANNELS", "CALLS", "EXPECTED", "VERDICT", "")]
    for run in demo.runs:
        rows.append(
            (
                run.path,
                run.channels,
                str(run.result.requests),
                run.expected,
                _verdict(run),
                "as expected" if run.as_expected else "NOT as expected",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    pinned = demo.runs[0]
    silent = ", ".join(demo.added) or "none"
    paragraph = (
        f"What happened: {pinned.result.connections} gRPC clients each opened one channel, one "
        f"TCP connection, through the Service path while {len(demo.before)} replicas ran. A "
        "connection-level balancer (kube-proxy, an NLB) picks a replica once per connection, "
        "and every call rides that connection: when the stack scaled out to "
        f"{len(demo.before) + len(demo.added)} (in {demo.scale_seconds:.1f}s, as an HPA "
        f"would), the {len(demo.added)} new replicas got none of the "
        f"{demo.calls_after_scale} calls made after they were ready. The verifier names "
        "them as never answering; with pinned channels it counts connections, not calls, so "
        "it can show pods missing but not a spread even. Through the ALB path HAProxy speaks "
        "HTTP/2 to the replicas and picks one per call, so the same reused channels reach all "
        "six evenly; through the Service path with a channel per call, each new connection "
        "is a fresh random pick, even too, at the price of a handshake per call."
    )
    lines += ["", f"never answered the pinned clients: {silent}", "", *textwrap.wrap(paragraph, 96)]
    return "\n".join(lines) + "\n"


def demo_grpc(
    run_dir: Path | None,
    concurrency: int,
    json: bool,
    say: Any = err,
    **verify: Any,
) -> int:
    """Run the gRPC demo; print; return the exit code. ``verify`` holds the demo's ``ports``
    when given, and the verifier's settings."""
    from podtally.local.grpc_demo import grpc_demo
    from podtally.verify.report import render_json, render_text

    with capture_signals("interrupt"):
        demo = grpc_demo(run_dir=run_dir, say=say, concurrency=concurrency, **verify)
    flag_name = flag_namer(click.get_current_context().command)
    out = sys.stdout
    if json:
        import json as json_module

        documents = [json_module.loads(render_json(run.result, flag_name)) for run in demo.runs]
        out.write(
            json_module.dumps(
                {
                    "ok": demo.ok,
                    "added": list(demo.added),
                    "runs": [
                        {
                            "path": run.path,
                            "channels": run.channels,
                            "expected": run.expected,
                            "as_expected": run.as_expected,
                            "result": document,
                        }
                        for run, document in zip(demo.runs, documents, strict=True)
                    ],
                },
                indent=2,
            )
            + "\n"
        )
    else:
        pinned = demo.runs[0]
        out.write(f"== {pinned.path} path, {pinned.channels} channels: {pinned.url}\n")
        out.write(render_text(pinned.result, flag_name))
        out.write("\n== side by side\n")
        out.write(render(demo))
    out.flush()
    return 0 if demo.ok else 1
