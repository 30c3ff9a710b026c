"""Where the requests go: the target URL (:class:`Target`, ``http(s)://`` or ``grpc(s)://``) and
the ``resolve`` entries that pin a host to an address, each parsed and checked once.

Plain parsing, no sockets. Errors are usage errors naming the setting at fault (``url``,
``resolve``) and its value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, urljoin, urlsplit

from podtally.errors import UsageError

HTTP_SCHEMES = ("http", "https")
GRPC_SCHEMES = ("grpc", "grpcs")


@dataclass(frozen=True, slots=True)
class Target:
    """One parsed ``http(s)://host:port/path?query`` URL."""

    url: str
    scheme: str  # "http", "https", or for a gRPC target "grpc", "grpcs"
    host: str  # as written, without brackets: the Host header and the TLS server name
    port: int
    path: str  # path and query, the request target ("" for a gRPC target)

    @property
    def tls(self) -> bool:
        return self.scheme in ("https", "grpcs")

    @property
    def authority(self) -> str:
        """``host:port`` (IPv6 in brackets), the port always written."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    def join(self, location: str) -> Target:
        """The target a redirect's ``Location`` points to, resolved against this URL."""
        return parse_url(urljoin(self.url, location), what="redirect location")


@dataclass(frozen=True, slots=True)
class Resolve:
    """A ``resolve`` entry, ``HOST:PORT:ADDR``: connect to ADDR whenever the URL names HOST:PORT
    (as curl does)."""

    host: str
    port: int
    address: str

    def __str__(self) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.host}:{self.port}:{address}"


def _ascii_host(host: str, fail: Callable[[str], UsageError]) -> str:
    """A host name as it goes on the wire: lower case, non-ASCII names IDNA-encoded (as curl)."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise fail(f"host {host!r} is not valid: {exc}") from None


def _percent_encode(text: str) -> str:
    """Percent-encode (UTF-8) every character that is not printable ASCII, as curl does;
    what is already ASCII, existing ``%XX`` escapes included, is left as written."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if c.isascii() and c.isprintable() else quote(c, safe="") for c in text)


def _split(
    text: str,
    schemes: tuple[str, str],
    fail: Callable[[str], UsageError],
    path_problem: str | None = None,
) -> tuple[SplitResult, str, int]:
    """The checks an http(s) URL and a gRPC target share: ``schemes`` is (clear, TLS); with
    ``path_problem`` a path, query or fragment fails with it. Returns the parts, the host as it
    goes on the wire, and the port (the scheme's default when none is written)."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise fail(f"is not valid: {exc}") from None
    if parts.scheme not in schemes:
        raise fail(f"must start with {schemes[0]}:// or {schemes[1]}://")
    if not parts.hostname:
        raise fail("has no host")
    if path_problem is not None and (parts.path not in ("", "/") or parts.query or parts.fragment):
        raise fail(path_problem)
    if parts.username or parts.password:
        raise fail("credentials in the URL are not supported")
    if any(c.isspace() for c in text):
        raise fail("contains white space")
    if port == 0:
        raise fail("has port 0")
    default = 443 if parts.scheme == schemes[1] else 80
    return parts, _ascii_host(parts.hostname, fail), port or default


def parse_url(url: str, what: str | None = None) -> Target:
    """Parse and check an http(s) URL; anything else is a usage error.

    The error names the ``url`` setting, or, with ``what`` (``"redirect location"``), says
    what the URL was in its text.
    """

    def fail(problem: str) -> UsageError:
        if what is None:
            return UsageError(problem, setting="url", value=url)
        return UsageError(f"{what} {url!r}: {problem}")

    text = url.strip()
    parts, host, port = _split(text, HTTP_SCHEMES, fail)
    path = _percent_encode(parts.path) or "/"
    if parts.query:
        path = f"{path}?{_percent_encode(parts.query)}"
    return Target(url=text, scheme=parts.scheme, host=host, port=port, path=path)


def parse_grpc_url(url: str) -> Target:
    """``grpc://HOST:PORT`` or ``grpcs://HOST:PORT`` (default ports 80 and 443), no path: the
    call is podtally's own (``podtally.v1.Identity/Get``)."""

    def fail(problem: str) -> UsageError:
        return UsageError(problem, setting="url", value=url)

    text = url.strip()
    parts, host, port = _split(
        text,
        GRPC_SCHEMES,
        fail,
        path_problem="a gRPC target has no path or query (the call is podtally.v1.Identity/Get): "
        "give grpc://HOST:PORT",
    )
    return Target(url=text, scheme=parts.scheme, host=host, port=port, path="")


def parse_resolve(value: str) -> Resolve:
    """``HOST:PORT:ADDR`` with ADDR an IPv4 address or a bracketed IPv6 address."""

    def fail(problem: str) -> UsageError:
        return UsageError(problem, setting="resolve", value=value)

    host, sep1, rest = value.partition(":")
    port_text, sep2, address = rest.partition(":")
    if not (sep1 and sep2 and host and port_text and address):
        raise fail("must be HOST:PORT:ADDR (as in curl)")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise fail(f"port {port_text!r} is not a port number")
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise fail(f"{address!r} is not an IP address (IPv6 goes in brackets)") from None
    host = _ascii_host(host.lower().rstrip("."), fail)
    return Resolve(host=host, port=int(port_text), address=address)
