"""Shared by the k8s tests: the spec matrix, the offline tools, and object lookups."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from podtally.spec import AppSpec
from tests.support import run_cli

REPO = Path(__file__).resolve().parents[2]
# The image's locked wheels for this machine, downloaded by `make setup` so the image recipe test
# installs offline. PODTALLY_WHEELHOUSE points elsewhere.
WHEELHOUSE = Path(os.environ.get("PODTALLY_WHEELHOUSE") or REPO / ".venv" / "wheelhouse")
ARN = "arn:aws:acm:us-east-1:111122223333:certificate/0f0e0d0c-1111-2222-3333-444455556666"
DIGEST_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/podtally:0.1.0@sha256:" + "ab" * 32

# Every combination a user or the Pulumi program can reach, by name.
MATRIX: dict[str, AppSpec] = {
    "generic-default": AppSpec(),
    "generic-one-replica": AppSpec(replicas=1),
    "generic-host": AppSpec(host="podtally.example.com"),
    "generic-host-class-tls": AppSpec(
        host="podtally.example.com",
        ingress_class="nginx",
        tls_secret="podtally-tls",  # noqa: S106 - the name of a Secret, not a secret
    ),
    "generic-zone-autoscale": AppSpec(
        name="tally", namespace="apps", zone_lookup=True, autoscaling=True, max_replicas=9
    ),
    "generic-digest-drain0": AppSpec(image=DIGEST_IMAGE, drain_seconds=0, replicas=2),
    "eks-arn": AppSpec(profile="eks", host="podtally.example.com", certificate_arn=ARN),
    "eks-arn-no-host": AppSpec(profile="eks", certificate_arn=ARN, replicas=1),
    "eks-host-discovery": AppSpec(profile="eks", host="podtally.example.com"),
    "eks-http-only": AppSpec(profile="eks", tls=False, image=DIGEST_IMAGE),
    "eks-everything": AppSpec(
        profile="eks",
        host="podtally.example.com",
        certificate_arn=ARN,
        image=DIGEST_IMAGE,
        replicas=4,
        zone_lookup=True,
        autoscaling=True,
        drain_seconds=30,
    ),
    # gRPC (issue 12): off; on a port of its own with HTTP probes; names too long for the
    # IngressGroup's namespace.name (63 at most), so it becomes a digest.
    "generic-grpc-off": AppSpec(grpc_port=0),
    "eks-grpc-http-probes": AppSpec(
        profile="eks", host="podtally.example.com", grpc_port=50051, grpc_probes=False
    ),
    "eks-grpc-off": AppSpec(profile="eks", host="podtally.example.com", grpc_port=0),
    "eks-long-names": AppSpec(
        profile="eks", certificate_arn=ARN, name="p" * 40, namespace="n" * 40, replicas=2
    ),
}


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def by_name(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]


def tool(name: str) -> str:
    """An offline tool from the virtualenv, PATH, or (checkov) its own venv; missing = failure."""
    candidates = [
        os.environ.get(f"PODTALLY_{name.upper()}", ""),
        str(Path(sys.executable).parent / name),
        shutil.which(name) or "",
    ]
    if name == "checkov":
        candidates.append(str(REPO / ".venv-checkov" / "bin" / "checkov"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"{name} is not installed (CI installs it; see docs/kubernetes.md)")


def checkov(target: Path, framework: str = "kubernetes") -> tuple[int, dict[str, Any]]:
    """checkov on ``target`` (a directory, or one file) for one framework, offline: its exit
    status (0 all passed, 1 a check failed; anything else fails the test) and its JSON report."""
    out = subprocess.run(
        [
            tool("checkov"),
            "--skip-download",
            "--framework",
            framework,
            "-d" if target.is_dir() else "-f",
            str(target),
            "-o",
            "json",
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode in (0, 1), out.stderr[-2000:]
    report = json.loads(out.stdout)
    # One framework -> one report object (checkov prints a list only for several).
    assert isinstance(report, dict), out.stdout[:500]
    return out.returncode, report


def checkov_failures(report: dict[str, Any]) -> list[str]:
    """Each failed check of a checkov report: ``ID resource (file)``."""
    return [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for c in report["results"]["failed_checks"]
    ]


def checkov_skips(report: dict[str, Any]) -> set[str]:
    """The IDs of the checks a report skipped (the manifests' inline, reasoned skips)."""
    return {c["check_id"] for c in report["results"].get("skipped_checks", [])}


def podtally(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a user runs it (clean identity environment, from the repository root)."""
    return run_cli(*args, timeout=60, cwd=REPO)


# requirements/*.lock as uv and pip-compile write them: `name==version \`, then hash lines.
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:(?P<digest>[0-9a-f]{64})")


def norm_name(name: str) -> str:
    """A distribution name as PEP 503 compares them (prometheus_client == prometheus-client)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> tuple[dict[str, str], dict[str, set[str]], set[str]]:
    """(every pin, its sha256 hashes, the names pulled in by podtally itself)."""
    pins: dict[str, str] = {}
    hashes: dict[str, set[str]] = {}
    top: set[str] = set()
    current = ""
    for line in text.splitlines():
        if match := PIN.match(line):
            current = norm_name(match["name"])
            pins[current] = match["version"]
            hashes[current] = set()
        for digest in _HASH.findall(line):
            hashes[current].add(digest)
        if re.match(r"^\s+#\s+(via\s+)?podtally \(pyproject\.toml\)", line):
            top.add(current)
    return pins, hashes, top
