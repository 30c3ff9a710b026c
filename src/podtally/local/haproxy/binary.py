"""The haproxy executable: where it is found, and its own check of a configuration file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from podtally.errors import MissingDependencyError, PodtallyError

HAPROXY_ENV = "PODTALLY_HAPROXY"


def install_hint() -> str:
    if sys.platform == "darwin":
        return "install it with 'brew install haproxy'"
    return "install it with 'sudo apt-get install haproxy'"


def find_binary() -> str:
    """The haproxy executable: ``$PODTALLY_HAPROXY`` if set, else ``haproxy`` on PATH or sbin."""
    override = os.environ.get(HAPROXY_ENV)
    if override:
        found = shutil.which(override)
        if found is None:
            raise MissingDependencyError(
                f"haproxy not found ({HAPROXY_ENV}={override}): {install_hint()}"
            )
        return found
    found = shutil.which("haproxy")
    if found is None:
        for candidate in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy"):
            if os.access(candidate, os.X_OK):
                return candidate
        raise MissingDependencyError(f"haproxy not found: {install_hint()}")
    return found


def check_config(binary: str, path: Path) -> None:
    """Run ``haproxy -c`` on a configuration file; raise with HAProxy's own words if it fails."""
    result = subprocess.run(
        [binary, "-c", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        lines = (result.stderr + result.stdout).strip().splitlines()
        alerts = [line.split(" : ", 2)[-1] for line in lines if "[ALERT]" in line]
        detail = alerts[0] if alerts else (lines[-1] if lines else f"exit {result.returncode}")
        raise PodtallyError(f"generated HAProxy configuration {path} is invalid: {detail}")
