"""One family of errors. The CLI turns any of them into a single ``error: ...`` line.

Each class carries the process exit code it stands for, so that callers (the CLI, CI scripts)
never have to map exceptions to codes themselves.

Errors are structured: ``what`` went wrong in plain words, and, where one setting is to blame,
``setting`` (the library's own name for it, such as ``"max_error_rate"``, the keyword a caller
passed) and ``value`` (what it was). The library never words command-line flags; the CLI knows
which flag feeds which setting and says it in its own words (``--max-error-rate 2: must be
within 0..1``). ``str(error)`` is a plain sentence for library callers: ``max_error_rate=2: must
be within 0..1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

_UNSET: object = object()


class PodtallyError(Exception):
    """Something podtally could not do. Exit code 3: an operational failure."""

    exit_code: int = 3

    def __init__(self, what: str, *, setting: str | None = None, value: object = _UNSET) -> None:
        self.what = what
        self.setting = setting
        self.value = value
        super().__init__(what)

    @property
    def has_value(self) -> bool:
        return self.value is not _UNSET

    def __str__(self) -> str:
        if self.setting is None:
            return self.what
        if self.has_value:
            return f"{self.setting}={self.value!r}: {self.what}"
        return f"{self.setting}: {self.what}"


class UsageError(PodtallyError):
    """Bad usage or bad input: a malformed argument, a port in use, an invalid name. Exit 2."""

    exit_code = 2


class MissingDependencyError(PodtallyError):
    """A program or optional package podtally needs is not installed. Exit 3.

    The message says what to install.
    """


class NotRunningError(PodtallyError):
    """A stack or service that should be up is not. Exit 3."""


class Setting(str):
    """A setting's name inside a :class:`Phrase` (``Setting("follow")``).

    ``command`` names the operation the setting belongs to when it is not the one that wrote
    the phrase: advice to run something else, such as ``Setting("host", command="up")`` (the
    local stack's ``host``), which a command line words as that command with its flag
    (``podtally up --host``). As a ``str`` it is the setting's name alone.
    """

    command: str | None

    def __new__(cls, name: str, command: str | None = None) -> Setting:
        self = super().__new__(cls, name)
        self.command = command
        return self


class Phrase(str):
    """A sentence that names settings, such as ``use follow or the https URL``.

    As a ``str`` it names each setting as the library does (``follow``); :meth:`worded` names
    them as an interface does (``use --follow ...``), so that a CLI can say its own flags in a
    message the library wrote. Build it from parts: plain text and :class:`Setting` names.
    """

    parts: tuple[str, ...]

    def __new__(cls, *parts: str) -> Phrase:
        self = super().__new__(cls, "".join(parts))
        self.parts = parts
        return self

    def worded(self, name: Callable[[str], str]) -> str:
        """The sentence with every setting named by ``name(setting)``."""
        return "".join(name(part) if isinstance(part, Setting) else part for part in self.parts)

    @classmethod
    def joined(cls, separator: str, items: Iterable[str]) -> Phrase:
        """``separator.join(items)``, keeping the settings that phrases among them name."""
        parts: list[str] = []
        for index, item in enumerate(items):
            if index:
                parts.append(separator)
            parts.extend(item.parts if isinstance(item, Phrase) else (str(item),))
        return cls(*parts)


def worded(text: str, name: Callable[[str], str]) -> str:
    """``text`` with its settings named by ``name`` (plain text comes back as it is)."""
    return text.worded(name) if isinstance(text, Phrase) else text
