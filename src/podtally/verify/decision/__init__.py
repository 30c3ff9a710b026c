"""The decision: counts per group -> ``even`` | ``uneven`` | ``inconclusive``, with error rates.

Pure: no I/O, no clock, no printing. One call judges one dimension (pod, node, zone or version).

The rule. Every group has an expected share ``p0`` and a tolerance band
``[p0 * (1 - tolerance), p0 * (1 + tolerance)]``. Every group also gets a confidence interval for
its true share, simultaneous over the ``k`` groups judged (union bound: each at ``alpha / k``).

- ``even``: every group's interval lies inside its band;
- ``uneven``: some group's interval lies wholly outside its band;
- ``inconclusive``: neither (yet).

"inside" and "wholly outside" exclude each other, so ``even`` and ``uneven`` never both hold. If
the intervals cover the true shares (probability at least ``1 - alpha``), ``even`` is only said
when every true share is inside its band and ``uneven`` only when some true share is outside its
band: each verdict is wrong with probability at most ``alpha``.

Two interval methods:

- ``fixed`` (judged once, at a sample size chosen in advance): Clopper-Pearson, exact binomial.
  Its coverage is at least the nominal level for every true share and every ``n`` (Wilson's dips
  below it for some), so the stated error rate is a guarantee, not an approximation.
- ``sequential`` (anytime-valid: the caller may look after every batch and stop when it likes): the
  beta-binomial mixture confidence sequence (Robbins 1970; Howard et al. 2021, section on conjugate
  mixtures). For a Beta(a, b) prior, ``M_n(p) = B(a + S, b + n - S) / (B(a, b) p^S (1-p)^(n-S))``
  is a nonnegative martingale under the true share ``p`` with ``M_0 = 1``; by Ville's inequality it
  ever reaches ``1 / alpha`` with probability at most ``alpha``. So the set
  ``{p : M_n(p) < 1 / alpha}``, an interval, holds the true share at every ``n`` at once. The
  prior is fixed before any data: centred on the expected share, with a strength tuned to the
  sample size at which the tolerance could first be shown (:func:`prior_strength`).
"""

from podtally.verify.decision.intervals import (
    MODES,
    Mode,
    beta_prior,
    bounds,
    classify,
    clopper_pearson,
    equal_split_verdicts,
    mixture_sequence,
    prior_strength,
    tolerance_band,
    verdicts,
)
from podtally.verify.decision.judge import (
    CORRECTION,
    DEFAULT_ALPHA,
    DEFAULT_TOLERANCE,
    MAX_NEEDED,
    METHOD_NAMES,
    UNSEEN,
    Decision,
    GroupDecision,
    GroupState,
    Method,
    Verdict,
    decide,
)
from podtally.verify.decision.unit import Unit, UnitChoice, choose_unit

__all__ = [
    "CORRECTION",
    "DEFAULT_ALPHA",
    "DEFAULT_TOLERANCE",
    "MAX_NEEDED",
    "METHOD_NAMES",
    "MODES",
    "UNSEEN",
    "Decision",
    "GroupDecision",
    "GroupState",
    "Method",
    "Mode",
    "Unit",
    "UnitChoice",
    "Verdict",
    "beta_prior",
    "bounds",
    "choose_unit",
    "classify",
    "clopper_pearson",
    "decide",
    "equal_split_verdicts",
    "mixture_sequence",
    "prior_strength",
    "tolerance_band",
    "verdicts",
]
