"""Issue 12's failure, replayed on the local stack (`podtally demo --grpc`): gRPC clients hold
their channels through the Service path (per connection) while the stack scales out, and the
verifier finds the new pods never answered; then the two fixes, the ALB path (per call) and a
channel per call, each verified even. :func:`grpc_demo` returns the three runs and whether each
verdict was the expected one.

The demo's stack binds six ports on 127.0.0.1, all given by one setting, ``ports``
(:data:`GRPC_PORT_NAMES`): the plain demo's three (HAProxy's HTTP, HTTPS and stats) and the ALB
path's gRPC port, the Service path's HTTP and gRPC ports. A port in use is blamed on ``ports``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podtally.errors import MissingDependencyError, UsageError
from podtally.local.demo import (
    DEMO_DRAIN_SECONDS,
    DEMO_PORTS,
    PORT_NAMES,
    PORT_SETTINGS,
    parse_port_list,
)

if TYPE_CHECKING:
    from podtally.local import Stack, StackConfig
    from podtally.verify import Observation, VerifyOptions, VerifyResult


GRPC_DEMO_NAME = "podtally-grpc-demo"
GRPC_DEMO_FROM = 3  # replicas when the clients open their channels
GRPC_DEMO_TO = 6  # replicas after the scale-out (as an HPA would)
# HTTP, HTTPS, stats (the plain demo's), then ALB gRPC, Service HTTP, Service gRPC.
GRPC_DEMO_PORTS = (*DEMO_PORTS, 19443, 18081, 19081)
GRPC_PORT_NAMES = (*PORT_NAMES, "GRPC", "SERVICE", "SERVICE_GRPC")  # as ``ports`` lists them
GRPC_DEMO_CONCURRENCY = 8  # channels held open through the Service path
GRPC_DEMO_RATE = 200.0  # calls per second of the pinned run: leaves the CPU to the scale-out
GRPC_AFTER_SCALE = 3.0  # seconds the pinned clients go on calling after the scale-out
_GRPC_PORT_SETTINGS = ("grpc_port", "service_port", "service_grpc_port")


@dataclass(frozen=True)
class GrpcRun:
    """One of the demo's three runs: where it went, how, what it found, what was expected."""

    path: str  # "Service" or "ALB"
    channels: str  # "reused" or "one per call"
    url: str
    expected: str  # in words: "3 pods never answer", "even"
    result: VerifyResult
    as_expected: bool

    @property
    def answered(self) -> tuple[str, ...]:
        """The pods that answered, most calls first."""
        return tuple(dict.fromkeys(key.pod for key, _count in self.result.identities))


@dataclass(frozen=True)
class GrpcDemoResult:
    """The three runs, the pods before and after the scale-out, and how the scale-out went."""

    runs: tuple[GrpcRun, ...]
    before: tuple[str, ...]  # the pods the channels could pick
    added: tuple[str, ...]  # the pods the scale-out added
    scale_seconds: float
    calls_after_scale: int  # pinned calls sent after every new pod was in rotation

    @property
    def ok(self) -> bool:
        return all(run.as_expected for run in self.runs)


def _answered(result: VerifyResult) -> set[str]:
    return {key.pod for key, _count in result.identities}


class _Clients:
    """The pinned run in a thread of its own: the verifier's clients calling through the
    Service path while the caller scales the stack out."""

    def __init__(self, options: VerifyOptions) -> None:
        import threading

        self.options = options
        self.lock = threading.Lock()
        self.connections: set[int] = set()
        self.calls_at: list[float] = []
        self.outcome: list[VerifyResult | BaseException] = []
        self.thread = threading.Thread(target=self._run, name="pinned-grpc-clients", daemon=True)

    def _watch(self, observation: Observation) -> None:
        import time

        with self.lock:
            if observation.connection is not None:
                self.connections.add(observation.connection)
            self.calls_at.append(time.monotonic())

    def _run(self) -> None:
        from podtally.verify import run

        try:
            self.outcome.append(run(self.options, on_observation=self._watch))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.outcome.append(exc)

    def start_and_wait_for_channels(self, timeout: float = 10.0) -> None:
        """Start; return once every client has its channel (or ``timeout`` passed)."""
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while self.thread.is_alive() and time.monotonic() < deadline:
            with self.lock:
                if len(self.connections) >= self.options.concurrency:
                    return
            time.sleep(0.05)

    def result(self, timeout: float) -> VerifyResult:
        from podtally.errors import PodtallyError

        self.thread.join(timeout)
        if self.thread.is_alive() or not self.outcome:
            raise PodtallyError("the pinned gRPC clients did not finish")
        outcome = self.outcome[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def calls_since(self, moment: float) -> int:
        with self.lock:
            return sum(1 for at in self.calls_at if at >= moment)


def parse_grpc_ports(ports: str | Sequence[int]) -> tuple[int, ...]:
    """``"HTTP,HTTPS,STATS,GRPC,SERVICE,SERVICE_GRPC"`` (or six ints) → six different ports;
    else :class:`UsageError` with ``setting="ports"``."""
    return parse_port_list(ports, GRPC_PORT_NAMES, need="the gRPC demo takes")


def _grpc_config(
    ports: str | Sequence[int], run_dir: Path | None, image: str | None = None
) -> StackConfig:
    http_port, https_port, stats_port, grpc_port, service_port, service_grpc_port = (
        parse_grpc_ports(ports)
    )
    from podtally.local import StackConfig

    return StackConfig(
        name=GRPC_DEMO_NAME,
        replicas=GRPC_DEMO_FROM,
        http_port=http_port,
        https_port=https_port,
        stats_port=stats_port,
        grpc_port=grpc_port,
        service_port=service_port,
        service_grpc_port=service_grpc_port,
        run_dir=run_dir,
        drain_seconds=DEMO_DRAIN_SECONDS,
        image=image,
    )


def _grpc_up(config: StackConfig, tell: Callable[[str], None]) -> Stack:
    """``up``, with a port in use blamed on the demo's ``ports``."""
    from podtally.local import up

    try:
        return up(config, progress=tell)
    except UsageError as exc:
        if exc.setting in PORT_SETTINGS + _GRPC_PORT_SETTINGS:
            ports = ",".join(str(getattr(config, s)) for s in PORT_SETTINGS + _GRPC_PORT_SETTINGS)
            raise UsageError(exc.what, setting="ports", value=ports) from None
        raise


def _pinned(
    stack: Stack,
    config: StackConfig,
    seconds: float,
    concurrency: int,
    tell: Callable[[str], None],
    verify: dict[str, Any],
) -> tuple[GrpcRun, tuple[str, ...], float, int]:
    """The failure: channels opened through the Service path, then the scale-out.
    Returns the run, the pods added, the scale-out's seconds, the calls made after it."""
    import time

    from podtally.errors import PodtallyError
    from podtally.local import scale
    from podtally.verify import VerifyOptions

    url = stack.service_grpc_url or ""
    before = {r.pod for r in stack.replicas}
    clients = _Clients(
        VerifyOptions(url, concurrency=concurrency, duration=seconds, rate=GRPC_DEMO_RATE, **verify)
    )
    tell(
        f"{concurrency} gRPC clients open a channel each through the Service path ({url}) "
        f"and call for {seconds:.0f}s ..."
    )
    clients.start_and_wait_for_channels()
    tell(f"scaling out from {GRPC_DEMO_FROM} to {GRPC_DEMO_TO} replicas, as an HPA would ...")
    scaled_at = time.monotonic()
    scaled = scale(GRPC_DEMO_TO, config.name, run_dir=config.run_dir, progress=tell)
    done_at = time.monotonic()
    added = tuple(r.pod for r in scaled.replicas if r.pod not in before)
    result = clients.result(seconds + 60.0)
    after = clients.calls_since(done_at)
    if after == 0:
        raise PodtallyError(
            f"the scale-out took {done_at - scaled_at:.1f}s, longer than the pinned clients "
            f"called ({seconds:.0f}s): the machine is too busy to show it"
        )
    answered = _answered(result)
    expected = result.exit_code == 1 and answered <= before and not answered & set(added)
    run = GrpcRun("Service", "reused", url, f"{len(added)} pods never answer", result, expected)
    return run, added, done_at - scaled_at, after


def _even(
    path: str,
    url: str,
    new_channel: bool,
    cacert: Path | None,
    concurrency: int,
    tell: Callable[[str], None],
    verify: dict[str, Any],
) -> GrpcRun:
    """A run expected even: until the verdict is known."""
    from podtally.verify import VerifyOptions, run

    channels = "one per call" if new_channel else "reused"
    settings: dict[str, Any] = {**verify, "new_channel": new_channel, "cacert": cacert}
    options = VerifyOptions(url, concurrency=concurrency, **settings)
    tell(f"verifying {url} ({path} path, {channels} channels) until the verdict is known ...")
    result = run(options)
    expected = result.verdict.result == "even" and result.exit_code == 0
    return GrpcRun(path, channels, url, "even", result, expected)


def grpc_demo(
    *,
    ports: str | Sequence[int] = GRPC_DEMO_PORTS,
    run_dir: Path | None = None,
    say: Callable[[str], None] | None = None,
    concurrency: int = GRPC_DEMO_CONCURRENCY,
    image: str | None = None,
    **verify: Any,
) -> GrpcDemoResult:
    """The gRPC pinning failure, as it happens in production, and its two fixes.

    A stack of :data:`GRPC_DEMO_FROM` replicas on the six ``ports`` (:data:`GRPC_PORT_NAMES`,
    default :data:`GRPC_DEMO_PORTS`); ``concurrency`` gRPC clients open a channel each
    through the Service path (per connection) and keep calling while the stack scales out to
    :data:`GRPC_DEMO_TO`; the verifier (``expect_pods`` = 6) finds the new pods never answered.
    Then the same verifier through the ALB path (per call, channels reused), and through the
    Service path with a channel per call: both even. ``verify`` takes further
    :class:`~podtally.verify.VerifyOptions` settings (``alpha``, ``tolerance``, ...) for every
    run. ``image`` runs the replicas as podman containers of that image. The stack is removed
    in every case.

    Raises :class:`~podtally.errors.UsageError` for bad settings before anything starts, and
    :class:`~podtally.errors.PodtallyError` when the scale-out outlasted the pinned run (the
    scenario could not be shown).
    """
    import dataclasses
    import time

    from podtally.local import down
    from podtally.verify import VerifyOptions

    tell = say or (lambda line: None)
    if "new_channel" not in {f.name for f in dataclasses.fields(VerifyOptions)}:
        raise MissingDependencyError("this podtally's verifier has no gRPC client")
    config = _grpc_config(ports, run_dir, image)
    verify["expect_pods"] = GRPC_DEMO_TO
    # The scenario fixes these (the demo's own URLs, its rate, its three kinds of channels).
    for setting in (
        "requests",
        "duration",
        "rate",
        "new_channel",
        "http2",
        "cacert",
        "keep_alive",
        "expect_split",
        "resolve",
        "headers",
    ):
        verify.pop(setting, None)
    # Every setting is checked now, before anything starts.
    VerifyOptions(f"grpc://127.0.0.1:{config.service_grpc_port}", concurrency=concurrency, **verify)

    started = time.monotonic()
    stack = _grpc_up(config, tell)
    up_seconds = time.monotonic() - started
    try:
        # Long enough for a scale-out as slow as the `up` just measured, then GRPC_AFTER_SCALE.
        seconds = max(8.0, 2 * up_seconds + GRPC_AFTER_SCALE)
        pinned, added, scale_seconds, after = _pinned(
            stack, config, seconds, concurrency, tell, verify
        )
        alb = _even("ALB", stack.grpc_url or "", False, stack.ca_path, concurrency, tell, verify)
        per_call = _even(
            "Service", stack.service_grpc_url or "", True, None, concurrency, tell, verify
        )
    finally:
        tell(f"tearing down {GRPC_DEMO_NAME} ...")
        down(GRPC_DEMO_NAME, run_dir=run_dir, progress=tell)
    tell(f"demo done in {time.monotonic() - started:.1f} s")
    return GrpcDemoResult(
        runs=(pinned, alb, per_call),
        before=tuple(r.pod for r in stack.replicas),
        added=added,
        scale_seconds=scale_seconds,
        calls_after_scale=after,
    )
