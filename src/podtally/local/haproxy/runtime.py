"""HAProxy's runtime API: where its unix socket lives, and a client that reads server states and
changes a server's address, weight and state while HAProxy runs (no reload)."""

from __future__ import annotations

import csv
import hashlib
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from podtally.errors import PodtallyError
from podtally.local.haproxy.config import BACKEND
from podtally.local.haproxy.weights import MAX_WEIGHT

# HAProxy refuses a stats socket path over 97 characters (it binds a temporary name beside it
# first); a margin below that.
MAX_SOCKET_PATH = 90


def socket_path(run_dir: Path) -> str:
    """The runtime API socket, in the run directory unless that path is too long for HAProxy
    (then in the temporary directory, under a name derived from the run directory)."""
    path = run_dir / "haproxy.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return str(path)
    digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"podtally-{os.getuid()}-{digest}.sock")


@dataclass(frozen=True)
class ServerStat:
    """HAProxy's view of one backend server (a row of ``show stat``)."""

    name: str
    status: str  # UP, DOWN, MAINT, DRAIN, "UP 1/2", "DOWN 1/2", NOLB, no check
    address: str
    sessions: int  # current sessions (scur)
    total: int  # total sessions (stot)
    weight: int = 1  # the server's current weight

    @property
    def health(self) -> str:
        """UP, DOWN, DRAIN or MAINT: the status without HAProxy's transition counters."""
        word = self.status.split(" ")[0]
        if word in ("NOLB",):
            return "DRAIN"
        return word


class RuntimeApi:
    """HAProxy's runtime API over its unix stats socket: one command per connection."""

    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks: list[bytes] = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def _checked(self, line: str) -> str:
        answer = self.command(line)
        lowered = answer.lower()
        if any(
            marker in lowered
            for marker in ("no such", "unknown command", "permission denied", "require", "invalid")
        ):
            raise PodtallyError(f"HAProxy refused {line!r}: {answer.strip()}")
        return answer

    def available(self) -> bool:
        try:
            return "Name: HAProxy" in self.command("show info")
        except OSError:
            return False

    def servers(self, backend: str = BACKEND) -> dict[str, ServerStat]:
        text = self.command("show stat")
        if not text.startswith("# "):
            raise PodtallyError(f"unexpected answer to 'show stat': {text[:80]!r}")
        rows = csv.DictReader(text[2:].splitlines())
        found: dict[str, ServerStat] = {}
        for row in rows:
            if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND"):
                continue
            name = row["svname"]
            found[name] = ServerStat(
                name=name,
                status=row.get("status", ""),
                address=row.get("addr", ""),
                sessions=int(row.get("scur") or 0),
                total=int(row.get("stot") or 0),
                weight=int(row.get("weight") or 0),
            )
        return found

    def set_address(self, server: str, address: str, port: int, backend: str = BACKEND) -> None:
        self._checked(f"set server {backend}/{server} addr {address} port {port}")

    def set_weight(self, server: str, weight: int, backend: str = BACKEND) -> None:
        if not 1 <= weight <= MAX_WEIGHT:
            raise ValueError(weight)
        self._checked(f"set weight {backend}/{server} {weight}")

    def set_state(self, server: str, state: str, backend: str = BACKEND) -> None:
        if state not in ("ready", "drain", "maint"):
            raise ValueError(state)
        self._checked(f"set server {backend}/{server} state {state}")
