"""How the reports write a number: shares, latencies, p-values, bands, status codes.

Shared by the text report (:mod:`podtally.verify.report.text`) and the HTML page
(:mod:`podtally.verify.html`), so that a share or a latency reads the same in both.
"""

from __future__ import annotations

GRPC_CODES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
"""gRPC status codes by number (the observation's ``status`` for a gRPC call)."""


def percent(value: float) -> str:
    """A share, 0..1, as ``33.3%``."""
    return f"{value * 100:.1f}%"


def signed_percent(value: float) -> str:
    """A deviation from a share as ``+5.0%`` or ``-12.3%``."""
    return f"{value * 100:+.1f}%"


def milliseconds(seconds: float) -> str:
    """A latency with three significant figures or so: ``1.23 ms``, ``45.6 ms``, ``2500 ms``."""
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 1000 else f"{ms:.0f} ms"


def p_value(value: float | None) -> str:
    """A p-value to three significant figures; ``-`` where there is none."""
    return "-" if value is None else f"{value:.3g}"


def band(low: float, high: float) -> str:
    """An interval of shares as ``19.5-32.6%`` (the upper end at most 100%)."""
    return f"{low * 100:.1f}-{min(high, 1.0) * 100:.1f}%"


def status_name(status: int, grpc: bool) -> str:
    """An HTTP status as its number; a gRPC status as ``14 UNAVAILABLE``."""
    if grpc and 0 <= status < len(GRPC_CODES):
        return f"{status} {GRPC_CODES[status]}"
    return str(status)
