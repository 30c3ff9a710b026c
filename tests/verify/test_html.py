"""The HTML report as a document: self-contained, one bar per group, the pod colours of the
identity page, the timeline, latency percentiles, failures by kind, parameters.

The page is checked by parsing it (stdlib HTMLParser); tests/browser/ opens it in a real browser.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html.parser import HTMLParser

import pytest

from podtally.service.routes import pod_colour
from podtally.verify.html import render_html
from podtally.verify.probe import ErrorKind, Observation
from podtally.verify.replay import decisions


def observation(
    index: int,
    pod: str | None,
    *,
    start: float | None = None,
    latency: float = 0.010,
    error: ErrorKind | None = None,
    node: str | None = None,
    version: str | None = None,
) -> Observation:
    return Observation(
        index=index,
        start=index * 0.01 if start is None else start,
        latency=latency,
        status=None if error else 200,
        pod=pod,
        node=node,
        namespace="ns",
        ip=None,
        zone=None,
        version=version,
        source="headers" if pod else None,
        error=error,
        detail="refused" if error else None,
        connection=index,
        peer="127.0.0.1:8080",
        location=None,
        redirects=0,
    )


def rolling_restart(n: int = 900) -> list[Observation]:
    """Three pods round robin; pod-c is replaced by pod-d two thirds in; a few refusals."""
    out = []
    for i in range(n):
        pods = ["pod-a", "pod-b", "pod-c" if i < 2 * n // 3 else "pod-d"]
        if i % 97 == 50:
            out.append(observation(i, None, error="refused"))
        else:
            pod = pods[i % 3]
            out.append(
                observation(
                    i,
                    pod,
                    latency=0.004 + (i % 10) * 0.001,
                    node="node-1" if pod != "pod-b" else "node-2",
                    version="v2" if pod == "pod-d" else "v1",
                )
            )
    return out


class Page(HTMLParser):
    """Every start tag with its attributes, and the text inside elements with an id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def having(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


def page_for(observations: Sequence[Observation], verdict: str = "even") -> str:
    judged = decisions(observations, expect_pods=3)
    return render_html(
        judged,
        observations,
        {"url": "https://app.test/", "requests": len(observations), "alpha": 0.001},
        f"verdict: PASS <even> across {len(judged[0].groups)} pods",
        verdict,  # type: ignore[arg-type]
    )


def test_self_contained() -> None:
    text = page_for(rolling_restart())
    page = Page(text)
    # nothing to load: no script, no stylesheet link, no image, no URL outside the SVG namespace
    assert not page.having("script") and not page.having("link") and not page.having("img")
    urls = set(re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]+)""", text))
    assert urls == set()
    assert "url(" not in text and "@import" not in text
    csp = page.having("meta", http_equiv="Content-Security-Policy")
    assert csp and "default-src 'none'" in str(csp[0]["content"])
    assert text.count("<svg") == 3 + 3  # pod, node, version; timeline, latency, failures


def test_verdict_line_is_escaped_and_coloured() -> None:
    for verdict, colour in (
        ("even", "#1a7f37"),
        ("uneven", "#cf222e"),
        ("inconclusive", "#9a6700"),
    ):
        page = Page(page_for(rolling_restart(300), verdict))
        (line,) = page.having("p", id="verdict")
        assert line["data-verdict"] == verdict
        assert f"background:{colour}" in str(line["style"])
    assert "verdict: PASS &lt;even&gt; across 4 pods" in page_for(rolling_restart(300))


def test_one_bar_per_group_in_the_pod_colour() -> None:
    observations = rolling_restart()
    page = Page(page_for(observations))
    bars = page.having("g", **{"class": "bar"})
    pods = {"pod-a", "pod-b", "pod-c", "pod-d"}
    pod_bars = [b["data-group"] for b in bars if b["data-group"] in pods]
    assert sorted(pod_bars) == sorted(pods)
    # node-1, node-2; v1, v2: the other dimensions have their own bars
    assert {b["data-group"] for b in bars} == pods | {"node-1", "node-2", "v1", "v2"}
    shares = {t["fill"] for t in page.having("rect", **{"class": "share"})}
    assert {pod_colour(pod) for pod in pods} <= shares
    # every expected group has its tolerance band, every group its interval whisker: with
    # expect_pods=3, pod-d (the newest, fewest answers) is the one nobody expected
    assert len(page.having("rect", **{"class": "band"})) == len(bars) - 1
    assert [b["data-state"] for b in bars if b["data-group"] == "pod-d"] == ["outside"]
    assert len(page.having("line", **{"class": "interval"})) == len(bars)


def test_timeline_shows_the_restart() -> None:
    """pod-c answers only in the first two thirds of the time, pod-d only in the last third."""
    text = page_for(rolling_restart())
    lanes = {
        m.group(1): m.group(2)
        for m in re.finditer(r'<g class="lane" data-group="([^"]+)">(.*?)</g>', text)
    }
    assert set(lanes) == {"pod-a", "pod-b", "pod-c", "pod-d", "failed"}

    def span(lane: str) -> tuple[float, float]:
        xs = [
            float(x)
            for x in re.findall(
                r'<rect x="([\d.]+)" y="[\d.]+" width="[\d.]+" '
                r'height="[\d.]+" fill="[^"]+" fill-opacity',
                lanes[lane],
            )
        ]
        return min(xs), max(xs)

    c_first, c_last = span("pod-c")
    d_first, d_last = span("pod-d")
    a_first, a_last = span("pod-a")
    assert c_last < d_first
    assert a_first == c_first and a_last == d_last  # pod-a answered throughout


def test_latency_percentiles_and_failures_by_kind() -> None:
    observations = rolling_restart()
    observations.append(observation(900, None, start=8.5, error="timeout"))
    page = Page(page_for(observations))
    assert [g["data-name"] for g in page.having("g", **{"class": "percentile"})] == [
        "p50",
        "p90",
        "p99",
    ]
    kinds = {r["data-kind"] for r in page.having("rect", **{"class": "failure"})}
    assert kinds == {"refused", "timeout"}
    text = "".join(page.text)
    assert "refused 9" in text and "timeout 1" in text


def test_no_failures_and_parameters() -> None:
    observations = [observation(i, f"pod-{i % 3}") for i in range(60)]
    page = Page(page_for(observations))
    assert page.having("p", id="no-failures")
    text = "".join(page.text)
    assert "https://app.test/" in text and "alpha" in text


@pytest.mark.parametrize("count", [0, 1])
def test_nothing_answered_still_renders(count: int) -> None:
    observations = [observation(i, None, error="refused") for i in range(count + 1)]
    text = page_for(observations, "inconclusive")
    assert "No response: no latency to show." in text
    assert text.count('class="bar"') == 3  # the three expected pods, none answered
    assert "(no answer 1)" in text


def round_robin(n: int) -> list[Observation]:
    return [observation(i, ["pod-a", "pod-b", "pod-c"][i % 3]) for i in range(n)]


@pytest.mark.parametrize(
    ("n", "verdict", "judged"),
    [
        # 900 round robin: judged once (fixed) it is even, but the auto-mode run never got there
        # with its anytime-valid intervals: the page must say what the run said
        (900, "inconclusive", 900),
        # auto mode stopped at a look before the last responses came in: the bars are that look's
        (3000, "even", 2944),
    ],
)
def test_a_runs_page_shows_its_own_decisions(n: int, verdict: str, judged: int) -> None:
    from podtally.verify.html import result_html
    from podtally.verify.replay import replay

    observations = round_robin(n)
    result = replay(observations, auto=True, expect_pods=3)
    assert result.verdict.result == verdict
    page = Page(result_html(result, observations))
    (line,) = page.having("p", id="verdict")
    assert line["data-verdict"] == verdict
    (pod,) = page.having("div", data_dimension="pod")
    assert pod["data-verdict"] == verdict
    text = "".join(page.text)
    counts = [int(c) for c in re.findall(r"pod-[abc]: (\d+) \(", text)]
    assert sum(counts) == judged
    assert "beta-binomial-mixture-cs interval" in text  # the run's anytime-valid intervals
    (mode,) = [t for t in page.text if t.startswith(("auto:", "fixed:"))]
    assert mode.startswith("auto:")
