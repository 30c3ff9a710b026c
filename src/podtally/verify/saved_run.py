"""The observations file (``verify --observations FILE``, JSON Lines), read back.

Its first line is the run's settings (schema :data:`~podtally.contract.OBSERVATIONS_SCHEMA_ID`,
the ``--json`` document's ``options``): :func:`parse_run` turns it into the run's
:class:`~podtally.verify.options.VerifyOptions`; every other line but the last is one
:class:`~podtally.verify.probe.Observation`. The last line says how the run ended
(``{"end": "complete" | "interrupted", "requests": N}``, written when the run is over), so a file
without one was cut short: the run was killed, its disk filled, or the file was truncated.

Older formats are still read: ``/2`` has the settings line but no end line (it does not say how
its run ended), ``/1`` has neither. :mod:`podtally.verify.replay` judges what this reads.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from podtally.contract import FIELDS, OBSERVATIONS_SCHEMA_ID
from podtally.errors import UsageError
from podtally.verify.expected_split import parse_expect_split
from podtally.verify.options import (
    VerifyOptions,
)
from podtally.verify.probe import ERROR_KINDS, IdentitySource, Observation
from podtally.verify.target import parse_resolve

if TYPE_CHECKING:
    pass

_SOURCES = frozenset(get_args(IdentitySource))


# --- reading ------------------------------------------------------------------------------------
def _field(record: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = record.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise TypeError(name)
    return value


def observation_from(record: object) -> Observation:
    """One decoded ``--observations`` line -> an :class:`Observation` (TypeError/KeyError if it
    is not one)."""
    if not isinstance(record, dict):
        raise TypeError("not an object")
    index = _field(record, "index", int)
    start = _field(record, "start", (int, float))
    latency_ms = _field(record, "latency_ms", (int, float))
    if index is None or start is None or latency_ms is None:
        raise KeyError("index, start and latency_ms are required")
    error = _field(record, "error", str)
    if error is not None and error not in ERROR_KINDS:
        raise TypeError("error")
    source = _field(record, "source", str)
    if source is not None and source not in _SOURCES:
        raise TypeError("source")
    if not (math.isfinite(start) and math.isfinite(latency_ms) and latency_ms >= 0):
        raise TypeError("start")
    return Observation.of(
        [_field(record, name, str) for name in FIELDS],
        index=index,
        start=float(start),
        latency=float(latency_ms) / 1000,
        status=_field(record, "status", int),
        source=source,
        error=error,
        detail=_field(record, "detail", str),
        connection=_field(record, "connection", int),
        peer=_field(record, "peer", str),
        location=_field(record, "location", str),
        redirects=_field(record, "redirects", int) or 0,
    )


# The settings line (format /2): each key of its ``options`` (the ``--json`` document's), the
# VerifyOptions keyword it feeds (None: checked against the options, not fed) and its JSON types.
_NUMBER = (int, float)
_OPTION_KEYS: Final[dict[str, tuple[str | None, tuple[type, ...]]]] = {
    "requests": ("requests", (int, type(None))),
    "duration_seconds": ("duration", (*_NUMBER, type(None))),
    "concurrency": ("concurrency", (int,)),
    "rate": ("rate", (*_NUMBER, type(None))),
    "timeout_seconds": ("timeout", _NUMBER),
    "keep_alive": ("keep_alive", (bool,)),
    "protocol": (None, (str,)),
    "http2": ("http2", (bool,)),
    "streams": ("streams", (int,)),
    "new_channel": ("new_channel", (bool,)),
    "follow": ("follow", (bool,)),
    "insecure": ("insecure", (bool,)),
    "cacert": (None, (str, type(None))),  # a file on the machine that ran it: not needed here
    "resolve": ("resolve", (list,)),
    "alpha": ("alpha", _NUMBER),
    "tolerance": ("tolerance", _NUMBER),
    "expect_pods": ("expect_pods", (int, type(None))),
    "expect_split": ("expect_split", (str, type(None))),
    "max_requests": ("max_requests", (int,)),
    "max_duration_seconds": ("max_duration", (*_NUMBER, type(None))),
    "auto": (None, (bool,)),
    "max_error_rate": ("max_error_rate", _NUMBER),
}
_HEADER_KEYS: Final = ("schema", "url", "options")
_SCHEMA = re.compile(r"^podtally\.verify\.observations/(\d+)$")
SETTINGS_FORMATS: Final = (2, 3)
"""The formats with a settings line this podtally reads (``/3`` ends with an end line)."""


def _typed(value: object, kinds: tuple[type, ...]) -> bool:
    """``value`` is of one of ``kinds`` as JSON means it: a boolean is not a number."""
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def header_format(record: Mapping[str, Any]) -> int:
    """The format number of a settings line (one of :data:`SETTINGS_FORMATS`), else
    :class:`ValueError` (another schema; a higher number is a newer podtally's)."""
    schema = record.get("schema")
    match = _SCHEMA.match(schema) if isinstance(schema, str) else None
    if match is None:
        raise ValueError(f"schema {schema!r} is not a podtally observations schema")
    number = int(match.group(1))
    if number not in SETTINGS_FORMATS:
        newer = number > max(SETTINGS_FORMATS)
        raise ValueError(
            f"schema {schema} is not one this podtally reads ({OBSERVATIONS_SCHEMA_ID}, /2, or a "
            "file without a settings line)" + (": a newer podtally wrote it" if newer else "")
        )
    return number


def options_from_header(record: Mapping[str, Any]) -> VerifyOptions:
    """A settings line (the first of an ``--observations`` file) -> the run's
    :class:`VerifyOptions` (``cacert`` left out: judging needs no CA file).

    Raises :class:`ValueError` naming what is wrong: another schema (``/1`` has no such line, a
    higher number is a newer format), a key missing, unknown or of the wrong type, a value the
    run could not have had.
    """
    header_format(record)
    unknown = sorted(set(record) - set(_HEADER_KEYS))
    if unknown or not all(key in record for key in _HEADER_KEYS):
        raise ValueError(f"keys must be {', '.join(_HEADER_KEYS)}")
    url, given = record["url"], record["options"]
    if not isinstance(url, str) or not isinstance(given, dict):
        raise ValueError("url must be a string, options an object")
    unknown = sorted(set(given) ^ set(_OPTION_KEYS))
    if unknown:
        raise ValueError(f"options: {', '.join(unknown)} unknown or missing")
    settings: dict[str, Any] = {}
    for key, (keyword, kinds) in _OPTION_KEYS.items():
        value = given[key]
        if not _typed(value, kinds):
            raise ValueError(f"options: {key} is {json.dumps(value)}")
        if keyword is not None:
            settings[keyword] = value
    try:
        if not all(isinstance(entry, str) for entry in settings["resolve"]):
            raise ValueError("options: resolve must be a list of strings")
        settings["resolve"] = tuple(parse_resolve(entry) for entry in settings["resolve"])
        if settings["expect_split"] is not None:
            settings["expect_split"] = parse_expect_split(settings["expect_split"])
        options = VerifyOptions(url, **settings)
    except UsageError as exc:  # said with the library's names: the file's, not a flag
        raise ValueError(str(exc)) from None
    for key, actual in (("protocol", options.protocol), ("auto", options.auto)):
        if given[key] != actual:
            raise ValueError(f"options: {key} is {json.dumps(given[key])}, the others say {actual}")
    return options


Ending = Literal["complete", "interrupted", "cut short"]
"""How a saved run ended: its end line's ``complete`` or ``interrupted`` (Ctrl-C), or ``cut
short``: a file of the format with an end line (``/3``) that has none."""

ENDINGS: Final = ("complete", "interrupted")  # what an end line says
_END_KEYS: Final = ("end", "requests")


@dataclass(frozen=True, slots=True)
class SavedRun:
    """An ``--observations`` file read back: the run's settings and its observations."""

    observations: tuple[Observation, ...]  # in the order the run wrote them
    options: VerifyOptions | None  # the run's, from its settings line; None: a /1 file
    ended: Ending | None = None  # how the run ended; None: the file does not say (/1, /2)
    torn: bool = False  # cut short mid-line: the last line, incomplete, was left out

    @property
    def partial(self) -> bool:
        """The run did not get to its end: interrupted, or its file cut short."""
        return self.ended in ("interrupted", "cut short")


def end_from(record: Mapping[str, Any]) -> tuple[Ending, int]:
    """An end line -> how the run ended and how many observations it wrote (:class:`ValueError`
    naming what is wrong)."""
    if sorted(record) != sorted(_END_KEYS):
        raise ValueError(f"keys must be {', '.join(_END_KEYS)}")
    end, requests = record["end"], record["requests"]
    if end not in ENDINGS:
        raise ValueError(f"end is {json.dumps(end)}, not one of {', '.join(ENDINGS)}")
    if not _typed(requests, (int,)) or requests < 0:
        raise ValueError(f"requests is {json.dumps(requests)}")
    return end, requests


def _bad(what: str, name: str) -> UsageError:
    return UsageError(what, setting="observations", value=name)


def parse_run(lines: Iterable[str], name: str = "observations") -> SavedRun:
    """JSON Lines -> the run's settings (its first line, when it has one: an object with a
    ``schema``), its observations, in the file's order (a run writes them as they complete,
    the order its auto mode judged them in), and how it ended (its last line, an object with an
    ``end``). A bad line is bad input, named by number.

    A file of the format with an end line (``/3``) that has none was cut short; its last line,
    when it is incomplete (no line break: the run was killed, or the disk filled, mid-line), is
    left out rather than refused."""
    observations = []
    options: VerifyOptions | None = None
    version = 1
    ending: tuple[int, Ending, int] | None = None  # line number, how, requests counted
    torn = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if ending is not None:
            raise _bad(
                f"line {number} follows the run's end line (line {ending[0]}): one run per file",
                name,
            )
        try:
            record = json.loads(line)
            if isinstance(record, dict) and "schema" in record:
                if number > 1 or options is not None:
                    raise _bad(
                        f"line {number} is the settings line of a run, which only the first "
                        "line can be (one run per file)",
                        name,
                    )
                try:
                    version = header_format(record)
                    options = options_from_header(record)
                except ValueError as exc:
                    raise _bad(f"line 1 is not a podtally settings line: {exc}", name) from None
                continue
            if isinstance(record, dict) and "end" in record:
                if version < 3:
                    raise _bad(
                        f"line {number} is an end line, which a file of format /{version} "
                        "does not have",
                        name,
                    )
                try:
                    how, requests = end_from(record)
                except ValueError as exc:
                    raise _bad(f"line {number} is not a podtally end line: {exc}", name) from None
                ending = (number, how, requests)
                continue
            observations.append(observation_from(record))
        except (ValueError, TypeError, KeyError) as exc:
            cut = isinstance(exc, json.JSONDecodeError) and not line.endswith("\n")
            if cut and version >= 3:
                torn = True  # the last line, cut off where the file was
                continue
            raise _bad(f"line {number} is not a podtally observation ({exc})", name) from None
    if not observations:
        raise _bad("holds no observation", name)
    ended: Ending | None = None
    if ending is not None:
        _, ended, requests = ending
        if requests != len(observations):
            raise _bad(
                f"its end line (line {ending[0]}) counts {requests} observations, the file "
                f"holds {len(observations)}",
                name,
            )
    elif version >= 3:
        ended = "cut short"
    return SavedRun(tuple(observations), options, ended, torn)


def parse_observations(lines: Iterable[str], name: str = "observations") -> list[Observation]:
    """JSON Lines -> observations, in the file's order (:func:`parse_run` without the run's
    settings)."""
    return list(parse_run(lines, name).observations)


def load_run(path: Path) -> SavedRun:
    """Read a saved ``--observations`` file: the run's settings and observations."""
    try:
        with path.open(encoding="utf-8") as handle:
            return parse_run(handle, str(path))
    except OSError as exc:
        raise UsageError(
            f"cannot read it: {exc.strerror}", setting="observations", value=path
        ) from None
    except UnicodeDecodeError:
        raise UsageError("is not UTF-8 text", setting="observations", value=path) from None


def load_observations(path: Path) -> list[Observation]:
    """Read a saved ``--observations`` file's observations (:func:`load_run`'s)."""
    return list(load_run(path).observations)
