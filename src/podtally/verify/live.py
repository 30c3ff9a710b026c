"""The live view's state and its picture: per pod (or per value of an expected split's field) a
bar with its share and interval, requests per second, failures, and the verdict as it forms.

:class:`LiveTally` counts observations as they arrive and, on each progress tick, builds a rich
renderable (:meth:`LiveTally.view`). It draws nothing itself: the command line owns the terminal
and puts the renderable on it (``rich.live.Live``).

The verdict shown is :func:`podtally.verify.decision.decide` in ``sequential`` mode: its
intervals are anytime-valid, so a verdict read off the screen at any moment holds at the stated
error rate, although it is looked at ten times a second. The last frame, drawn when the run is
over (:meth:`LiveTally.view` with the result), shows the run's own decision and verdict, the
ones its report prints, not a judgement of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from podtally.verify.decision import DEFAULT_TOLERANCE, Decision, decide
from podtally.verify.options import DEFAULT_ALPHA
from podtally.verify.probe import Observation, Progress
from podtally.verify.report.text import verdict_summary, verdict_tone

if TYPE_CHECKING:
    from podtally.verify.expected_split import ExpectedSplit
    from podtally.verify.result import VerifyResult

BAR = 30  # bar width in cells
_STYLES = {"even": "bold green", "uneven": "bold red", "inconclusive": "bold yellow"}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the view shows at one moment."""

    done: int
    failed: int
    elapsed: float
    fraction: float
    decision: Decision

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


class LiveTally:
    """Counts per pod and failures by kind; :meth:`snapshot` judges them, :meth:`view` draws."""

    def __init__(
        self,
        expect_pods: int | None = None,
        alpha: float = DEFAULT_ALPHA,
        tolerance: float = DEFAULT_TOLERANCE,
        expect_split: ExpectedSplit | None = None,
    ) -> None:
        self.expect_pods = expect_pods
        self.alpha = alpha
        self.tolerance = tolerance
        # With a split, the groups are that field's values (a version split: stable, canary).
        self.expect_split = expect_split
        self.field = expect_split.field if expect_split is not None else "pod"
        self.pods: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.progress: Progress | None = None

    def add(self, observation: Observation) -> None:
        value = getattr(observation, self.field)
        if value is not None:
            self.pods[value] += 1
        if observation.error is not None:
            self.errors[observation.error] += 1

    def tick(self, progress: Progress) -> None:
        self.progress = progress

    def snapshot(self) -> Snapshot:
        progress = self.progress
        split = self.expect_split
        decision = decide(
            self.pods,
            expect_pods=self.expect_pods,
            expect_split=dict(split.weights) if split is not None else None,
            tolerance=self.tolerance,
            # A split by another field than the pod is one of the verifier's two judged
            # dimensions, each at half the error budget: this is that dimension's decision.
            alpha=self.alpha / 2 if self.field != "pod" else self.alpha,
            mode="sequential",
        )
        return Snapshot(
            done=progress.done if progress else sum(self.pods.values()),
            failed=sum(self.errors.values()),
            elapsed=progress.elapsed if progress else 0.0,
            fraction=progress.fraction if progress else 0.0,
            decision=decision,
        )

    def view(
        self, result: VerifyResult | None = None, flag_name: Callable[[str], str] = str
    ) -> RenderableType:
        """The frame so far; with the finished run's ``result``, its last frame: the pods'
        bars from the decision the result's verdict was made of, and that verdict, worded
        with ``flag_name`` as the report words it."""
        snap = self.snapshot()
        decision = snap.decision
        if result is not None and result.assessment is not None:
            shown = result.assessment.shown
            decision = next((d for d in shown if d.dimension == self.field), decision)
        scale = min(
            1.0, 1.05 * max((max(g.interval[1], g.band[1]) for g in decision.groups), default=1.0)
        )
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column(self.field)
        table.add_column("count", justify="right")
        table.add_column("share", justify="right")
        table.add_column(f"share ━, interval ─, band shaded (0 to {scale:.0%})")
        for group in decision.groups:
            table.add_row(
                group.name,
                str(group.count),
                f"{group.share:.1%}",
                _bar(group.share, group.interval, group.band, scale, group.state),
            )
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.errors.most_common())
        facts = Text(
            f"{snap.done} requests, {snap.rate:,.0f}/s, {snap.elapsed:.1f} s"
            f"{f' ({snap.fraction:.0%})' if snap.fraction else ''}; "
            f"failed {snap.failed}{f' ({kinds})' if kinds else ''}"
        )
        if result is not None:
            summary = verdict_summary(result, flag_name)
            verdict = Text.assemble(("verdict: ", "bold"), (summary, _STYLES[verdict_tone(result)]))
        else:
            verdict = Text.assemble(
                ("verdict so far: ", "bold"),
                (decision.verdict, _STYLES[decision.verdict]),
                f" ({decision.reason})",
            )
        return Group(table, facts, verdict)


def _bar(
    share: float,
    interval: tuple[float, float],
    band: tuple[float, float],
    scale: float,
    state: str,
) -> Text:
    """The share as a filled bar, the interval as a thin line after it, the tolerance band as
    a shaded background (``━━━━━━━━━━──┼──``)."""

    def cell(value: float) -> int:
        return max(0, min(BAR - 1, round(value / scale * (BAR - 1))))

    filled = cell(share) if share > 0 else -1
    low, high = cell(interval[0]), cell(interval[1])
    in_band = range(cell(band[0]), cell(band[1]) + 1) if band[1] > 0 else range(0)
    colour = {"inside": "green", "outside": "red"}.get(state, "yellow")
    text = Text()
    for i in range(BAR):
        char = "━" if i <= filled else "─" if low <= i <= high else " "
        style = colour if i <= filled else "bright_white" if char == "─" else ""
        if i in in_band:
            style += " on grey23"
        text.append(char, style=style.strip() or None)
    return text
