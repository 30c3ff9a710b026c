"""What the `podtally cloud` tests share: the console script run with a bare PATH and a
temporary HOME, stand-ins for the CLIs it looks for, and the outputs a real stack would give."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PODTALLY = Path(sys.executable).parent / "podtally"
BARE_PATH = "/usr/bin:/bin"
ACTIONS = ("preview", "up", "down", "verify")
STACK_KUBECONFIG = "apiVersion: v1\nkind: Config\n# the stack's secret output\n"


def _env(home: Path, path: str = BARE_PATH, **extra: str) -> dict[str, str]:
    # No instance metadata service: botocore's resolution must not reach for the network.
    return {
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PODTALLY), *argv], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert proc.stdout == ""
    return lines[0]


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _working_pulumi(bin_dir: Path, calls: Path, stderr: str, code: int) -> None:
    """A `pulumi` that passes the version check and fails every other command like the real
    CLI does: the given line on stderr, the given exit code. Each call is logged to `calls`."""
    _script(
        bin_dir / "pulumi",
        f'echo "$*" >> {calls}\n'
        'if [ "$1" = version ]; then echo v3.272.0; exit 0; fi\n'
        f'echo "{stderr}" >&2\nexit {code}\n',
    )


def _full_env(home: Path, bin_dir: Path) -> dict[str, str]:
    """Everything the checks look for: the CLIs, credentials, the passphrase."""
    env = _env(home, f"{bin_dir}:{BARE_PATH}")
    env["AWS_ACCESS_KEY_ID"] = "AKIAEXAMPLE"
    env["AWS_SECRET_ACCESS_KEY"] = "not-secret"  # noqa: S105  (a test value)
    env["PULUMI_CONFIG_PASSPHRASE"] = "not-secret"  # noqa: S105  (a test value)
    return env


def _infra_listing() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "infra").rglob("*"))


def _stack_outputs(url: str, replicas: int) -> dict[str, object]:
    return {
        "url": url,
        "replicas": replicas,
        "image": "ghcr.io/podtally/podtally:0.1.0",
        "kubeconfig": STACK_KUBECONFIG,
        "appName": "tally",
        "namespace": "apps",
    }
