"""The whole story in one call: a local stack up, verified through its balancer, torn down.

:func:`demo` starts its own stack (named :data:`DEMO_NAME`, on ports apart from a user's own
``up``), verifies it with :func:`podtally.verify.run`, removes the stack in every case and
returns the :class:`~podtally.verify.VerifyResult`. Every setting is checked before anything
starts, so bad input fails at once and leaves nothing behind. Errors name the demo's own
settings: a port in use is ``setting="ports"``, not the stack's ``http_port``.

With ``canary=True`` the stack also runs :data:`CANARY_REPLICAS` canary replica(s) that HAProxy
sends :data:`CANARY_WEIGHT` percent of the requests, and the verifier checks that split by
version (:data:`CANARY_SPLIT`) until its verdict is known.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podtally.errors import UsageError

if TYPE_CHECKING:
    from podtally.verify import Observation, Progress, VerifyOptions, VerifyResult
    from podtally.verify.expected_split import ExpectedSplit

DEMO_NAME = "podtally-demo"
DEMO_REPLICAS = 3
DEMO_REQUESTS = 1000
DEMO_DRAIN_SECONDS = 0.5  # nothing sends traffic when the demo tears down
DEMO_PORTS = (18080, 18443, 18404)  # apart from a user's own stack on 8080/8443/8404
PORT_SETTINGS = ("http_port", "https_port", "stats_port")
PORT_NAMES = ("HTTP", "HTTPS", "STATS")  # as ``ports`` lists them
_COUNTS = {3: "three", 6: "six"}
CANARY_REPLICAS = 1
CANARY_WEIGHT = 10.0  # percent
CANARY_SPLIT = f"version=stable:{100 - CANARY_WEIGHT:g},canary:{CANARY_WEIGHT:g}"


def parse_ports(ports: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """``"HTTP,HTTPS,STATS"`` (or three ints) → three different ports; else ``setting="ports"``."""
    try:
        http, https, stats = parse_port_list(ports, PORT_NAMES)
    except UsageError as exc:
        if str(exc.value).count(",") != 5:
            raise
        what = f"{exc.what}: six are the gRPC demo's"
        raise UsageError(what, setting="ports", value=exc.value) from None
    return http, https, stats


def parse_port_list(
    ports: str | Sequence[int], names: Sequence[str], need: str = "must be"
) -> tuple[int, ...]:
    """``ports`` as a comma-separated list (or ints), one different port for each of ``names``
    (``HTTP``, ``HTTPS``, ...); else :class:`UsageError` with ``setting="ports"``. ``need``
    starts the sentence that says how many it takes (``must be three ports, ...``)."""
    text = ports if isinstance(ports, str) else ",".join(str(port) for port in ports)

    def fail(problem: str) -> UsageError:
        return UsageError(problem, setting="ports", value=text)

    count = _COUNTS.get(len(names), str(len(names)))
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(names):
        raise fail(f"{need} {count} ports, {','.join(names)} (got {len(parts)})")
    for what, part in zip(names, parts, strict=True):
        if not (part.isascii() and part.isdigit()):
            raise fail(f"the {what} port {part!r} is not a number")
        if not 1 <= int(part) <= 65535:
            raise fail(f"the {what} port {part} must be between 1 and 65535")
    numbers = tuple(int(p) for p in parts)
    if len(set(numbers)) != len(numbers):
        raise fail(f"the {count} ports must differ")
    return numbers


def describe(options: VerifyOptions) -> str:
    """``1000 requests, 10 at a time, a new connection each``."""
    amount = f"{options.requests} requests" if options.requests else ""
    if options.duration:
        amount = (amount + " or " if amount else "") + f"{options.duration:g}s"
    if not amount:
        most = getattr(options, "max_requests", None)
        amount = "requests until the verdict is known" + (f" (at most {most})" if most else "")
    mode = "keep-alive" if options.keep_alive else "a new connection each"
    return f"{amount}, {options.concurrency} at a time, {mode}"


def expectation(
    replicas: int,
    canary: bool,
    expect_pods: int | None = None,
    expect_split: ExpectedSplit | None = None,
) -> tuple[int | None, ExpectedSplit | None]:
    """What the demo's verifier expects, as ``(expect_pods, expect_split)``: the settings' own
    expectation; with ``canary``, :data:`CANARY_SPLIT` unless a split is given; else every
    replica. (Both given is the verifier's usage error, raised when it checks its settings.)"""
    from podtally.verify.expected_split import parse_expect_split

    if canary and expect_split is None:
        expect_split = parse_expect_split(CANARY_SPLIT)
    if expect_pods is None and expect_split is None:
        expect_pods = replicas
    return expect_pods, expect_split


def demo(
    *,
    replicas: int = DEMO_REPLICAS,
    canary: bool = False,
    nodes: int | None = None,
    http: bool = False,
    ports: str | tuple[int, int, int] = DEMO_PORTS,
    run_dir: Path | None = None,
    image: str | None = None,
    say: Callable[[str], None] | None = None,
    progress: Callable[[Progress], None] | None = None,
    on_observation: Callable[[Observation], None] | None = None,
    on_options: Callable[[VerifyOptions], None] | None = None,
    **verify: Any,
) -> VerifyResult:
    """Start the demo stack, verify it, tear it down; return the verification's result.

    ``verify`` takes :class:`~podtally.verify.VerifyOptions`' settings (``requests``,
    ``duration``, ``concurrency``, ``alpha``, ``max_error_rate``, ...) except the URL and the
    CA, which are the stack's; without ``requests`` and ``duration`` it sends
    :data:`DEMO_REQUESTS` (with ``canary``, it sends until the verdict is known); with
    ``canary``, ``expect_split`` defaults to :data:`CANARY_SPLIT`; without a split,
    ``expect_pods`` defaults to every replica. ``http`` verifies the
    plain-HTTP listener instead of HTTPS with the stack's CA; ``image`` runs each replica as a
    podman container of that image. ``say`` gets a line for each step,
    ``progress`` and ``on_observation`` are :func:`podtally.verify.run`'s; ``on_options`` gets
    the verifier's options before its first request.

    Raises :class:`~podtally.errors.UsageError` for bad settings before anything starts; Ctrl-C
    during the run raises :class:`~podtally.verify.VerifyInterrupted` (with the partial result)
    once the stack is gone.
    """
    import time

    from podtally.local import StackConfig, down, up
    from podtally.verify import VerifyOptions, run

    tell = say or (lambda line: None)
    http_port, https_port, stats_port = parse_ports(ports)
    config = StackConfig(
        name=DEMO_NAME,
        replicas=replicas,
        nodes=nodes,
        http_port=http_port,
        https_port=https_port,
        stats_port=stats_port,
        tls=not http,
        run_dir=run_dir,
        drain_seconds=DEMO_DRAIN_SECONDS,
        canary_replicas=CANARY_REPLICAS if canary else 0,
        canary_weight=CANARY_WEIGHT if canary else None,
        image=image,
    )
    if not canary and verify.get("requests") is None and verify.get("duration") is None:
        verify["requests"] = DEMO_REQUESTS
    verify["expect_pods"], verify["expect_split"] = expectation(
        replicas, canary, verify.get("expect_pods"), verify.get("expect_split")
    )
    # Every verify setting is checked now, against a URL of the same shape.
    VerifyOptions(f"http://127.0.0.1:{http_port}/", **verify)

    started = time.monotonic()
    try:
        stack = up(config, progress=tell)
        for track in stack.tracks() if canary else ():
            tell(
                f"track {track.name}: {track.replicas} replica(s), version {track.version}, "
                f"{track.weight:g}% of requests (HAProxy server weight {track.server_weight})"
            )
    except UsageError as exc:
        if exc.setting in PORT_SETTINGS:
            raise UsageError(
                exc.what, setting="ports", value=f"{http_port},{https_port},{stats_port}"
            ) from None
        raise
    try:
        url = stack.http_url if http else stack.url
        options = VerifyOptions(url, cacert=None if http else stack.ca_path, **verify)
        tell(f"verifying {url} with {describe(options)} ...")
        if on_options is not None:
            on_options(options)
        result = run(options, progress=progress, on_observation=on_observation)
    finally:
        tell(f"tearing down {DEMO_NAME} ...")
        down(DEMO_NAME, run_dir=run_dir, progress=tell)
    tell(f"demo done in {time.monotonic() - started:.1f} s")
    return result
