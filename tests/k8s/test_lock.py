"""requirements/*.lock, the hashed pins the image installs, agree with pyproject.toml.

core.lock is the image's run time: the core dependencies and the grpc extra (`podtally serve`
starts gRPC on 9090 by default, and the manifests probe it), nothing from any other extra.

The image installs `requirements/core.lock` with `--require-hashes` and the podtally wheel with
`--no-deps`, so a pin changed in pyproject.toml without regenerating the lock would silently ship
the old version. These tests make that drift a failure. (Regenerate: docs/kubernetes.md.)
"""

from __future__ import annotations

import re
import tomllib

from tests.k8s.helpers import PIN, REPO, norm_name, parse_lock

CORE_LOCK = REPO / "requirements" / "core.lock"
BUILD_LOCK = REPO / "requirements" / "build.lock"


def _requirement_pins(requirements: list[str]) -> dict[str, str]:
    """`name==version` requirements (comments already gone in TOML) as {name: version}."""
    pins: dict[str, str] = {}
    for line in requirements:
        match = PIN.match(line.strip())
        assert match, f"not an exact pin: {line!r}"
        pins[norm_name(match["name"])] = match["version"]
    return pins


# The extras the image installs beside the core.
IMAGE_EXTRAS = ("grpc",)


def _image_requirements(pyproject: str) -> list[str]:
    project = tomllib.loads(pyproject)["project"]
    extras = [r for name in IMAGE_EXTRAS for r in project["optional-dependencies"][name]]
    return [*project["dependencies"], *extras]


def core_drift(pyproject: str, lock: str) -> list[str]:
    """What differs between pyproject's core `dependencies` (with the image's extras) and the
    lock's top-level pins."""
    wanted = _requirement_pins(_image_requirements(pyproject))
    pins, hashes, top = parse_lock(lock)
    problems = [
        f"{name}: pyproject {version}, lock {pins.get(name, 'absent')}"
        for name, version in wanted.items()
        if pins.get(name) != version
    ]
    if top != set(wanted):
        problems.append(f"lock top level {sorted(top)} != pyproject {sorted(wanted)}")
    problems += [f"{name}: no hash" for name, digests in hashes.items() if not digests]
    return problems


def test_core_lock_pins_are_pyprojects() -> None:
    assert core_drift((REPO / "pyproject.toml").read_text(), CORE_LOCK.read_text()) == []


def test_drift_is_noticed() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    lock = CORE_LOCK.read_text()
    version = _requirement_pins(tomllib.loads(pyproject)["project"]["dependencies"])["granian"]
    bumped = pyproject.replace(f'"granian=={version}"', f'"granian=={version}.1"')
    assert core_drift(bumped, lock) == [f"granian: pyproject {version}.1, lock {version}"]
    added = pyproject.replace(
        '"prometheus-client==0.26.0",', '"prometheus-client==0.26.0",\n    "httptools==0.9.0",'
    )
    assert any("httptools" in p for p in core_drift(added, lock))
    unhashed = re.sub(r"(?m)^\s+--hash=sha256:[0-9a-f]{64}( \\)?$\n", "", lock)
    assert "no hash" in " ".join(core_drift(pyproject, unhashed))


def test_core_lock_is_the_core_only_and_fully_hashed() -> None:
    pins, hashes, _ = parse_lock(CORE_LOCK.read_text())
    # granian needs click, grpcio typing-extensions; nothing from the verify/local/cloud extras
    # may creep in.
    assert set(pins) == {
        "granian",
        "click",
        "prometheus-client",
        "python-mimeparse",
        "uvloop",
        "grpcio",
        "grpcio-health-checking",
        "grpcio-reflection",
        "protobuf",
        "typing-extensions",
    }
    # Both architectures' wheels are in there: the binary packages carry many files' hashes.
    for name in ("granian", "uvloop", "grpcio"):
        assert len(hashes[name]) > 10, (name, len(hashes[name]))


def test_build_lock_pins_the_build_backend() -> None:
    build_requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]
    pins, hashes, _ = parse_lock(BUILD_LOCK.read_text())
    assert pins == _requirement_pins(build_requires["requires"])
    assert all(hashes.values())
