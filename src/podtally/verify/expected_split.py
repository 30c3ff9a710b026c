"""``expect_split``: the share each value of one identity field (a version, a zone...) should get,
for a canary or a weighted balancer, as plain data (:class:`ExpectedSplit`) and parsed from its
text form ``FIELD=VALUE:WEIGHT,...``.

Errors are usage errors naming the ``expect_split`` setting and its value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from podtally.errors import UsageError

SPLIT_FIELDS = ("pod", "node", "zone", "version")


@dataclass(frozen=True, slots=True)
class ExpectedSplit:
    """``expect_split``: the share each value of one identity field should get.

    ``field`` is one of :data:`SPLIT_FIELDS`; ``weights`` are relative (``90, 10`` and ``9, 1``
    mean the same), each positive, each value named once.
    """

    field: str
    weights: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        shown = str(self)
        if self.field not in SPLIT_FIELDS:
            raise UsageError(
                f"unknown field {self.field!r} (one of {', '.join(SPLIT_FIELDS)})",
                setting="expect_split",
                value=shown,
            )
        if not self.weights:
            raise UsageError("names no value", setting="expect_split", value=shown)
        seen: set[str] = set()
        for value, weight in self.weights:
            if not value:
                raise UsageError("a value is empty", setting="expect_split", value=shown)
            if value in seen:
                raise UsageError(f"{value!r} is named twice", setting="expect_split", value=shown)
            seen.add(value)
            if isinstance(weight, bool) or not (0 < weight < math.inf):
                raise UsageError(
                    f"the weight of {value!r} must be a positive number",
                    setting="expect_split",
                    value=shown,
                )

    def shares(self) -> dict[str, float]:
        """Each value's expected share (weights over their sum)."""
        total = sum(w for _, w in self.weights)
        return {value: weight / total for value, weight in self.weights}

    def __str__(self) -> str:
        """As given (``version=stable:90,canary:10``); parsed back, the same weights exactly."""
        return f"{self.field}=" + ",".join(f"{v}:{_exact(w)}" for v, w in self.weights)


def _exact(weight: float) -> str:
    """``90`` for 90.0, and every digit a weight needs to be read back as itself."""
    short = f"{weight:g}"
    return short if float(short) == weight else repr(weight)


def parse_expect_split(text: str) -> ExpectedSplit:
    """``FIELD=VALUE:WEIGHT,...`` (``version=stable:90,canary:10``) -> :class:`ExpectedSplit`."""

    def fail(problem: str) -> UsageError:
        return UsageError(problem, setting="expect_split", value=text)

    field_name, sep, rest = text.strip().partition("=")
    field_name = field_name.strip()
    if not sep:
        raise fail("must be FIELD=VALUE:WEIGHT,... (example: version=stable:90,canary:10)")
    if field_name not in SPLIT_FIELDS:
        raise fail(f"unknown field {field_name!r} (one of {', '.join(SPLIT_FIELDS)})")
    weights: list[tuple[str, float]] = []
    for item in rest.split(","):
        if not item.strip():
            continue
        value, colon, weight_text = item.strip().rpartition(":")
        if not colon or not value.strip():
            raise fail(f"{item.strip()!r} must be VALUE:WEIGHT")
        try:
            weight = float(weight_text)
        except ValueError:
            raise fail(f"the weight of {value.strip()!r} is not a number") from None
        weights.append((value.strip(), weight))
    if not weights:
        raise fail("names no value")
    return ExpectedSplit(field_name, tuple(weights))
