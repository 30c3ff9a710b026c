"""How many requests the decision needs, and how long one decision takes. No network.

For 2, 3, 6 and 12 pods behind a round robin (deterministic) and a random balancer (each request
to a uniformly random pod; seeded), alpha 0.001, tolerance 0.2, looks after every batch of 50:

- sequential (anytime-valid, what `verify` uses without -n): the median over runs of the first
  look with a verdict, and how many runs ended `even`, `uneven` or undecided by --max;
- fixed (judged once, `-n N`): the smallest N on the batch grid at which at least half the runs
  are `even` when judged once at N (a fixed-n method may not stop at its first verdict).

Then the wall time of one `decide()` call with k groups at 20,000 units (median of repeats), in
both modes: the caller recomputes after every batch. Prints a markdown table on stdout.
Usage: python bench/decide_bench.py [--runs 200] [--batch 50] [--max 20000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from numpy.typing import NDArray

from podtally.verify.decision import (
    DEFAULT_ALPHA,
    DEFAULT_TOLERANCE,
    MODES,
    Mode,
    decide,
    equal_split_verdicts,
)

PODS = (2, 3, 6, 12)


def round_robin(k: int, looks: int, batch: int) -> NDArray[np.float64]:
    n = np.arange(1, looks + 1) * batch
    return np.stack([(n + k - 1 - i) // k for i in range(k)], axis=-1)[None].astype(np.float64)


def random_balancer(k: int, looks: int, batch: int, runs: int, seed: int) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(batch, [1 / k] * k, size=(runs, looks))
    return np.cumsum(draws, axis=1).astype(np.float64)


def judge(counts: NDArray[np.float64], mode: Mode) -> NDArray[np.int8]:
    return equal_split_verdicts(counts, mode=mode, alpha=DEFAULT_ALPHA, tolerance=DEFAULT_TOLERANCE)


def needed(found: NDArray[np.int8], mode: Mode, batch: int) -> tuple[str, str]:
    """(requests, outcome) for one pod count and balancer."""
    runs, looks = found.shape
    if mode == "fixed":
        share_even = (found == 1).mean(axis=0)
        reached = np.nonzero(share_even >= 0.5)[0]
        at = f"{(reached[0] + 1) * batch:,}" if reached.size else f"> {looks * batch:,}"
        return at, f"{share_even[-1]:.0%} even at {looks * batch:,}"
    decided = found != 0
    first = np.where(decided.any(axis=1), np.argmax(decided, axis=1), looks)
    verdict = found[np.arange(runs), np.minimum(first, looks - 1)] * decided.any(axis=1)
    median = statistics.median((first + 1) * batch)
    at = f"{median:,.0f}" if median <= looks * batch else f"> {looks * batch:,}"
    even, uneven = int((verdict == 1).sum()), int((verdict == -1).sum())
    return at, f"{even} even, {uneven} uneven, {runs - even - uneven} undecided of {runs}"


def time_decide(k: int, mode: Mode, repeats: int) -> tuple[float, float]:
    """Median milliseconds of decide(): a look that decides, and one that is inconclusive."""
    rng = np.random.default_rng(k)
    results = []
    for total in (20_000, 300 * k):
        shares = rng.dirichlet([2000.0] * k)
        counts = {f"pod-{i}": int(c) for i, c in enumerate(rng.multinomial(total, shares))}
        decide(counts, mode=mode)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            decide(counts, mode=mode)
            times.append(time.perf_counter() - start)
        results.append(statistics.median(times) * 1000)
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--max", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    looks = args.max // args.batch
    print(
        f"decide_bench: alpha {DEFAULT_ALPHA}, tolerance {DEFAULT_TOLERANCE}, looks every "
        f"{args.batch} up to {args.max:,}, {args.runs} seeded runs for `random`; "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n"
    )
    print("| pods | balancer | mode | requests to decide | outcome |")
    print("|---:|---|---|---:|---|")
    for k in PODS:
        for balancer in ("round robin", "random"):
            if balancer == "round robin":
                counts = round_robin(k, looks, args.batch)
            else:
                counts = random_balancer(k, looks, args.batch, args.runs, seed=1000 + k)
            for mode in ("sequential", "fixed"):
                at, outcome = needed(judge(counts, mode), mode, args.batch)
                print(f"| {k} | {balancer} | {mode} | {at} | {outcome} |")
    print("\n| pods | mode | decide() ms, 20,000 units (decided) | ms, 300/pod (inconclusive) |")
    print("|---:|---|---:|---:|")
    for k in PODS:
        for mode in MODES:
            decided, undecided = time_decide(k, mode, args.repeats)
            print(f"| {k} | {mode} | {decided:.2f} | {undecided:.2f} |")


if __name__ == "__main__":
    main()
