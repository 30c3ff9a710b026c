"""The HTML report: one self-contained page (inline CSS and SVG, no script, no network).

Pure: decisions, observations, parameters and a verdict line in, a string out. The page shows

- the verdict in one line, coloured (green even, red uneven, amber anything else);
- per dimension (pod, node, zone, version) one bar per group: its share, its confidence interval
  as a whisker, and the tolerance band around the expected share;
- a timeline strip: one lane per pod over the run's time, shaded by the share of each moment's
  requests that pod answered (a restart, a scale-out or a pod out of rotation shows as a lane
  that ends, starts or pauses), and a lane of failures;
- a latency histogram with p50, p90 and p99 marked;
- failures over time, stacked by kind;
- the run's parameters.

Colours per group come from :func:`podtally.service.routes.pod_colour`, the identity page's own,
so a pod has the same colour here as on its page. A Content-Security-Policy ``default-src
'none'`` keeps the page from loading anything even if a value in it looked like a URL.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from podtally.service.routes import pod_colour
from podtally.verify.decision import Decision, GroupDecision
from podtally.verify.probe import ERROR_KINDS, Observation
from podtally.verify.report.figures import milliseconds, percent
from podtally.verify.report.text import Tone, verdict_summary, verdict_tone
from podtally.verify.tally import latency_summary

if TYPE_CHECKING:
    from podtally.verify.result import VerifyResult


_TONES: dict[str, str] = {"even": "#1a7f37", "uneven": "#cf222e", "inconclusive": "#9a6700"}
_KIND_COLOURS = ("#cf222e", "#8250df", "#bc4c00", "#0969da", "#57606a", "#1b7c83", "#953800")
_WIDTH = 760  # drawing width of every chart, in SVG units
_LABEL = 230  # room for group names left of the bars
_COLUMNS = 240  # time columns of the timeline and the failures chart
_BINS = 40  # latency histogram bins

_STYLE = """
:root{color-scheme:light}
body{margin:0 auto;max-width:820px;padding:24px;font:14px/1.45 system-ui,sans-serif;color:#1f2328}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:28px 0 6px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.verdict{padding:10px 14px;border-radius:6px;color:#fff;font-weight:600;font-size:16px}
.sub{color:#57606a;margin:4px 0 10px}
svg{display:block;width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#1f2328}
table{border-collapse:collapse}
td,th{padding:2px 12px 2px 0;text-align:left;vertical-align:top}
th{color:#57606a;font-weight:500}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px}
@media print{body{max-width:none;padding:0}.verdict{print-color-adjust:exact;
-webkit-print-color-adjust:exact}section{break-inside:avoid}}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _svg(height: float, body: Sequence[str], label: str) -> str:
    return (
        f'<svg viewBox="0 0 {_WIDTH} {height:.0f}" role="img" aria-label="{_e(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg>'
    )


# --- per dimension: shares, intervals, bands ---------------------------------------------------
def _scale(groups: Sequence[GroupDecision]) -> float:
    """The share at the right edge: the largest interval end or band end, rounded up."""
    top = max(max(g.interval[1], g.band[1], g.share) for g in groups)
    return min(1.0, math.ceil(top * 10 + 0.5) / 10)


def _bars(decision: Decision) -> str:
    groups = decision.groups
    if not groups:
        return f'<p class="sub">{_e(decision.reason)}</p>'
    row = 26
    scale = _scale(groups)
    span = _WIDTH - _LABEL - 60

    def x(share: float) -> float:
        return _LABEL + span * share / scale

    body: list[str] = []
    for tick in range(round(scale * 10) + 1):
        share = tick / 10
        body.append(
            f'<line x1="{x(share):.1f}" x2="{x(share):.1f}" y1="0" y2="{row * len(groups)}" '
            f'stroke="#eaeef2"/><text x="{x(share):.1f}" y="{row * len(groups) + 12}" '
            f'text-anchor="middle">{share * 100:.0f}%</text>'
        )
    for i, group in enumerate(groups):
        top = i * row
        mid = top + row / 2
        name = group.name if len(group.name) <= 34 else group.name[:16] + "…" + group.name[-16:]
        low, high = group.band
        body.append(
            f'<g class="bar" data-group="{_e(group.name)}" data-state="{group.state}">'
            f"<title>{_e(group.name)}: {group.count} ({percent(group.share)}), interval "
            f"{percent(group.interval[0])} to {percent(group.interval[1])}, band {percent(low)} to "
            f"{percent(high)}, {group.state}</title>"
            f'<text x="{_LABEL - 8}" y="{mid + 4:.1f}" text-anchor="end">{_e(name)}</text>'
        )
        if group.expected > 0:
            body.append(
                f'<rect class="band" x="{x(low):.1f}" y="{top + 2}" '
                f'width="{max(x(high) - x(low), 1):.1f}" height="{row - 4}" fill="#d8f3dc" '
                f'stroke="#74c69d"/><line x1="{x(group.expected):.1f}" '
                f'x2="{x(group.expected):.1f}" y1="{top + 2}" y2="{top + row - 2}" '
                'stroke="#2d6a4f" stroke-dasharray="3 2"/>'
            )
        body.append(
            f'<rect class="share" x="{_LABEL}" y="{top + 8}" '
            f'width="{max(x(group.share) - _LABEL, 0):.1f}" height="{row - 16}" '
            f'fill="{pod_colour(group.name)}"/>'
            f'<line class="interval" x1="{x(group.interval[0]):.1f}" '
            f'x2="{x(group.interval[1]):.1f}" y1="{mid}" y2="{mid}" stroke="#1f2328" '
            'stroke-width="2"/>'
            + "".join(
                f'<line x1="{x(end):.1f}" x2="{x(end):.1f}" y1="{mid - 5}" y2="{mid + 5}" '
                'stroke="#1f2328" stroke-width="2"/>'
                for end in group.interval
            )
            + f'<text x="{_WIDTH - 4}" y="{mid + 4:.1f}" text-anchor="end">'
            f"{percent(group.share)}</text></g>"
        )
    method = decision.method
    caption = (
        f"{decision.verdict}: {decision.reason}. {decision.total} {decision.unit}; bars: share; "
        f"whiskers: {method.name} interval ({1 - method.alpha:.4g} simultaneous over "
        f"{method.groups}); green: tolerance band ±{method.tolerance * 100:g}% of the expected "
        "share (dashed)."
    )
    return (
        _svg(row * len(groups) + 18, body, f"{decision.dimension} shares")
        + f'<p class="sub">{_e(caption)}</p>'
    )


# --- over time ----------------------------------------------------------------------------------
def _columns(observations: Sequence[Observation]) -> int:
    """Time columns: about six requests each, so a column of a round-robin run is solid."""
    return max(12, min(_COLUMNS, len(observations) // 6))


def _end(observations: Sequence[Observation]) -> float:
    return max((o.start + o.latency for o in observations), default=0.0) or 1.0


def _timeline(observations: Sequence[Observation]) -> str:
    pods = sorted({o.pod for o in observations if o.pod is not None})
    lanes: list[str | None] = [*pods, None]  # None: the requests that failed
    end = _end(observations)
    n = _columns(observations)
    column_width = (_WIDTH - _LABEL) / n
    hits: dict[str | None, list[int]] = {lane: [0] * n for lane in lanes}
    for o in observations:
        column = min(int(o.start / end * n), n - 1)
        lane = o.pod if o.pod is not None else (None if o.error is not None else "")
        if lane in hits:
            hits[lane][column] += 1
    # shade each moment relative to its busiest lane: under round robin every pod that answered
    # is solid; a pod that took a tenth of what the busiest took is faint
    busiest = [max((hits[lane][c] for lane in lanes), default=0) or 1 for c in range(n)]
    row = 18
    body: list[str] = []
    for i, lane in enumerate(lanes):
        top = i * row
        colour = "#57606a" if lane is None else pod_colour(lane)
        label = "failed" if lane is None else lane
        label = label if len(label) <= 34 else label[:16] + "…" + label[-16:]
        cells = "".join(
            f'<rect x="{_LABEL + c * column_width:.2f}" y="{top + 2}" '
            f'width="{column_width + 0.05:.2f}" height="{row - 4}" fill="{colour}" '
            f'fill-opacity="{0.15 + 0.85 * count / busiest[c]:.3f}"/>'
            for c, count in enumerate(hits[lane])
            if count
        )
        body.append(
            f'<g class="lane" data-group="{_e(label)}"><text x="{_LABEL - 8}" y="{top + 13}" '
            f'text-anchor="end">{_e(label)}</text><rect x="{_LABEL}" y="{top + 2}" '
            f'width="{_WIDTH - _LABEL}" height="{row - 4}" fill="#f6f8fa"/>{cells}</g>'
        )
    axis = row * len(lanes)
    body.append(
        f'<text x="{_LABEL}" y="{axis + 12}">0 s</text><text x="{_WIDTH}" y="{axis + 12}" '
        f'text-anchor="end">{end:.2f} s</text>'
    )
    return _svg(axis + 16, body, "which pod answered over time") + (
        '<p class="sub">One lane per pod across the run, coloured where the pod answered; '
        "fainter where it answered fewer of that moment's requests than the busiest pod.</p>"
    )


def _latency(observations: Sequence[Observation]) -> str:
    latencies = [o.latency for o in observations if o.status is not None]
    summary = latency_summary(latencies)
    if summary is None:
        return '<p class="sub">No response: no latency to show.</p>'
    top = max(summary.p99 * 1.25, summary.p50 * 2) or summary.max or 1e-3
    counts = [0] * _BINS
    beyond = 0
    for value in latencies:
        if value >= top:
            beyond += 1
        else:
            counts[int(value / top * _BINS)] += 1
    height = 120
    most = max(counts) or 1
    bin_width = _WIDTH / _BINS
    body = [
        f'<rect x="{i * bin_width:.1f}" y="{height - height * n / most:.1f}" '
        f'width="{bin_width - 1:.1f}" height="{height * n / most:.1f}" fill="#0969da"/>'
        for i, n in enumerate(counts)
        if n
    ]
    marks = (("p50", summary.p50), ("p90", summary.p90), ("p99", summary.p99))
    for step, (name, value) in enumerate(marks):
        px = min(value / top, 1.0) * _WIDTH
        anchor = "end" if px > _WIDTH - 120 else "start"
        body.append(
            f'<g class="percentile" data-name="{name}"><line x1="{px:.1f}" x2="{px:.1f}" y1="0" '
            f'y2="{height}" stroke="#cf222e" stroke-dasharray="4 3"/><text '
            f'x="{px + (-3 if anchor == "end" else 3):.1f}" y="{12 + 14 * step}" '
            f'text-anchor="{anchor}">{name} {milliseconds(value)}</text></g>'
        )
    body.append(
        f'<text x="0" y="{height + 14}">0</text><text x="{_WIDTH}" y="{height + 14}" '
        f'text-anchor="end">{milliseconds(top)}</text>'
    )
    note = (
        f"; {beyond} slower than {milliseconds(top)}, up to {milliseconds(summary.max)}"
        if beyond
        else ""
    )
    return _svg(height + 18, body, "latency histogram") + (
        f'<p class="sub">{len(latencies)} responses; p50 {milliseconds(summary.p50)}, '
        f"p90 {milliseconds(summary.p90)}, p99 {milliseconds(summary.p99)}, "
        f"max {milliseconds(summary.max)}{note}.</p>"
    )


def _failures(observations: Sequence[Observation]) -> str:
    failed = [o for o in observations if o.error is not None]
    if not failed:
        return '<p class="sub" id="no-failures">No request failed.</p>'
    end = _end(observations)
    kinds = [kind for kind in ERROR_KINDS if any(o.error == kind for o in failed)]
    colours = dict(zip(kinds, _KIND_COLOURS * 2, strict=False))
    n = _columns(observations)
    columns: list[dict[str, int]] = [{} for _ in range(n)]
    for o in failed:
        column = columns[min(int(o.start / end * n), n - 1)]
        column[str(o.error)] = column.get(str(o.error), 0) + 1
    height = 80
    most = max(sum(c.values()) for c in columns) or 1
    width = _WIDTH / n
    body: list[str] = []
    for i, column in enumerate(columns):
        y = float(height)
        for kind in kinds:
            n = column.get(kind, 0)
            if n:
                h = height * n / most
                y -= h
                body.append(
                    f'<rect class="failure" data-kind="{kind}" x="{i * width:.2f}" y="{y:.1f}" '
                    f'width="{width + 0.05:.2f}" height="{h:.1f}" fill="{colours[kind]}"/>'
                )
    body.append(
        f'<text x="0" y="{height + 14}">0 s</text><text x="{_WIDTH}" y="{height + 14}" '
        f'text-anchor="end">{end:.2f} s</text>'
    )
    legend = "".join(
        f'<span><i style="background:{colours[kind]}"></i>{_e(kind)} '
        f"{sum(1 for o in failed if o.error == kind)}</span>"
        for kind in kinds
    )
    return _svg(height + 18, body, "failures over time") + f'<p class="legend">{legend}</p>'


# --- the page -----------------------------------------------------------------------------------
def _parameters(params: Mapping[str, object]) -> str:
    rows = "".join(
        f"<tr><th>{_e(key)}</th><td>{_e('-' if value is None else value)}</td></tr>"
        for key, value in params.items()
    )
    return f'<table id="parameters">{rows}</table>'


def render_html(
    decisions: Sequence[Decision],
    observations: Sequence[Observation],
    params: Mapping[str, object],
    verdict_line: str,
    verdict: Tone,
    title: str = "podtally verify",
) -> str:
    """The whole page. ``verdict`` picks the verdict line's colour; ``params`` are shown as given,
    in order (the caller words them)."""
    colour = _TONES.get(verdict, _TONES["inconclusive"])
    sections = [
        f'<section><h2>{_e(d.dimension)}</h2><div class="dimension" '
        f'data-dimension="{_e(d.dimension)}" data-verdict="{d.verdict}">{_bars(d)}</div></section>'
        for d in decisions
    ]
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}: {_e(verdict)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="verdict" id="verdict" data-verdict="{_e(verdict)}" '
        f'style="background:{colour}">{_e(verdict_line)}</p>'
        + "".join(sections)
        + "<section><h2>Who answered, over time</h2>"
        + _timeline(observations)
        + "</section><section><h2>Latency</h2>"
        + _latency(observations)
        + "</section><section><h2>Failures over time</h2>"
        + _failures(observations)
        + "</section><section><h2>Parameters</h2>"
        + _parameters(params)
        + "</section></body></html>\n"
    )


def result_html(
    result: VerifyResult,
    observations: Sequence[Observation],
    flag_name: Callable[[str], str] = str,
    title: str = "podtally verify",
) -> str:
    """:func:`render_html` for a finished run: its own decisions (the ones its verdict was made
    of, in the mode it ran: an auto-mode run's bars are those of the look that stopped it), its
    parameters and its verdict line. Nothing is judged again here, so the headline and the bars
    cannot disagree."""
    from podtally.verify.replay import parameters

    judged = result.assessment.shown if result.assessment is not None else ()
    line = verdict_summary(result, flag_name)
    return render_html(judged, observations, parameters(result), line, verdict_tone(result), title)
