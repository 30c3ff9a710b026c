"""What the engines share below the protocol: the TLS context, the connection, and the failure.

A request that fails raises :class:`Failure` (an error kind and a one-line detail) from wherever
it failed; :func:`classify` turns the exceptions of connecting, TLS and reading into one, and
:func:`certificate_failure` adds the advice that fits a certificate that failed verification.

A detail that advises a setting is a :class:`~podtally.errors.Phrase`: as a ``str`` it names
the setting as the library does (``use cacert FILE``); the report words it with the command
line's flags (``use --cacert FILE``) wherever it shows it.
"""

from __future__ import annotations

import asyncio
import errno
import ssl

from podtally.contract import LOCAL_CA_ORGANIZATION
from podtally.errors import Phrase, PodtallyError, Setting
from podtally.verify.options import VerifyOptions
from podtally.verify.probe import ErrorKind


class Failure(Exception):
    """A request failed; ``kind`` is one of :data:`~podtally.verify.probe.ERROR_KINDS`, and
    ``detail`` one line, a :class:`~podtally.errors.Phrase` where it names a setting."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: ErrorKind = kind
        self.detail = detail


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection of an HTTP engine, numbered for the observations."""

    def __init__(self, serial: int, peer: str) -> None:
        self.serial = serial
        self.peer = peer  # 'address:port', as the report shows it
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()


def classify(exc: BaseException, peer: str) -> Failure:
    """Map an exception from connecting, TLS or reading to an error kind and a one-line detail."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, ConnectionRefusedError):
        return Failure("refused", f"connection refused to {peer}")
    if isinstance(exc, TimeoutError):
        return Failure("timeout", f"timed out waiting for {peer}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return certificate_failure(exc, peer)
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        hint = " (is it plain HTTP? try http://)" if reason == "WRONG_VERSION_NUMBER" else ""
        return Failure("tls", f"TLS handshake with {peer} failed: {reason}{hint}")
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return Failure("reset", f"connection to {peer} reset")
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRNOTAVAIL:
            return Failure("other", f"no local port free to connect to {peer}")
        reason = exc.strerror or str(exc)
        return Failure("other", f"cannot connect to {peer}: {reason}")
    return Failure("other", f"{type(exc).__name__}: {exc}")


# OpenSSL's verification results (X509_V_ERR_*) that need their own advice.
_NAME_MISMATCH = frozenset({62, 64})  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
# The chain ends at a CA this client does not know: DEPTH_ZERO_SELF_SIGNED_CERT,
# SELF_SIGNED_CERT_IN_CHAIN, UNABLE_TO_GET_ISSUER_CERT(_LOCALLY), UNABLE_TO_VERIFY_LEAF_SIGNATURE.
_UNKNOWN_CA = frozenset({2, 18, 19, 20, 21})


def certificate_failure(
    exc: ssl.SSLCertVerificationError,
    peer: str,
    host: str | None = None,
    cacert: str | None = None,
    local_ca: bool = False,
) -> Failure:
    """A certificate that failed verification, with the advice that fits why it failed.

    ``host`` is the name asked for, ``cacert`` the CA file the options gave (``cacert``), if
    any, and ``local_ca`` whether it is the local stack's CA (whose certificate names only
    localhost, 127.0.0.1 and the stack's own ``host``). The advice names those settings.
    """
    reason = exc.verify_message or exc.reason or str(exc)
    code = exc.verify_code
    if code in _NAME_MISMATCH:
        name = host or "the host asked for"
        what = "IP address" if code == 64 else "hostname"
        mismatch = f"TLS certificate of {peer} does not name {name} ({what} mismatch)"
        if not local_ca:
            return Failure("tls", mismatch)
        # The local stack's certificate names its `host` setting: advice to run `up` again.
        restart = Phrase(
            f"{mismatch}: restart the local stack with ", Setting("host", command="up"), f" {host}"
        )
        return Failure("tls", restart)
    if code in _UNKNOWN_CA:
        untrusted = f"TLS certificate of {peer} not trusted: {reason}"
        if cacert is not None:
            signed = f" {cacert})"
            return Failure(
                "tls",
                Phrase(f"{untrusted} (it is not signed by the CA in ", Setting("cacert"), signed),
            )
        return Failure("tls", Phrase(f"{untrusted} (use ", Setting("cacert"), " FILE)"))
    return Failure("tls", f"TLS certificate of {peer} not trusted: {reason}")


def is_local_ca(context: ssl.SSLContext) -> bool:
    """Does ``context`` trust the local stack's CA (loaded from the ``cacert`` file)?"""
    for cert in context.get_ca_certs():
        subject = cert.get("subject", ())
        for rdn in subject if isinstance(subject, tuple) else ():
            if ("organizationName", LOCAL_CA_ORGANIZATION) in rdn:
                return True
    return False


def unverified_context() -> ssl.SSLContext:
    """A client context that checks neither the certificate nor the name (``insecure``)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def ssl_context(options: VerifyOptions) -> ssl.SSLContext:
    """The client's TLS context: ``insecure``, or the CA in ``cacert``, or the system's CAs."""
    if options.insecure:
        return unverified_context()
    cafile = str(options.cacert) if options.cacert is not None else None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (ssl.SSLError, OSError) as exc:
        # VerifyOptions loaded it already; this is the file changing under a running verifier.
        raise PodtallyError(
            f"cannot load it as PEM: {exc}", setting="cacert", value=str(options.cacert)
        ) from None
