"""``podtally up --image`` where podman is missing: one error line before any replica starts,
nothing left running and no run directory. Needs no podman (plain ``make test``): PATH is
narrowed to a directory without it. The runs with podman are in tests/image/test_up_image.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.local.localstack_helpers import stack_processes
from tests.support import free_base, run_cli

from podtally.errors import MissingDependencyError, UsageError
from podtally.local import StackConfig, up

pytestmark = [pytest.mark.haproxy]

IMAGE = "localhost/podtally:0.1.0"  # built or not: without podman it is never looked up


def _without_podman(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has haproxy (named by PODTALLY_HAPROXY) and no podman."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    empty = tmp_path / "bin"
    empty.mkdir()
    return {
        "PATH": str(empty),
        "PODTALLY_HAPROXY": haproxy,
        "PODTALLY_STATE_DIR": str(tmp_path / "state"),
        "PODTALLY_SUPERVISOR": "off",
    }


@pytest.mark.parametrize("command", ["up", "demo"])
def test_up_image_without_podman_is_one_error_line(tmp_path: Path, command: str) -> None:
    env = _without_podman(tmp_path)
    base = free_base()
    if command == "up":
        args = ["up", "--name", "noman", "--http-port", str(base), "--https-port", str(base + 1)]
        args += ["--stats-port", str(base + 2), "--grpc-port", "0", "--service-port", "0"]
        args += ["--service-grpc-port", "0"]
    else:
        args = ["demo", "--ports", f"{base},{base + 1},{base + 2}", "--no-progress"]
    cli = run_cli(*args, "--image", IMAGE, env=env, timeout=60)
    assert cli.returncode == 3, cli.stderr
    errors = [line for line in cli.stderr.splitlines() if line.startswith("error:")]
    assert errors == [cli.stderr.splitlines()[-1]], cli.stderr
    assert errors[0].startswith("error: podman is not installed"), cli.stderr
    assert "apt-get install podman" in errors[0] and "make image" in errors[0]
    assert "Traceback" not in cli.stderr
    state = tmp_path / "state"
    assert not (state / "noman").exists() and not (state / "demo").exists()
    assert stack_processes(state / "noman") == []
    assert stack_processes(state / "demo") == []


def test_the_library_says_so_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _without_podman(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    base = free_base()
    ports = {"http_port": base, "https_port": base + 1, "stats_port": base + 2}
    config = StackConfig(name="noman", run_dir=tmp_path / "noman", image=IMAGE, **ports)
    with pytest.raises(MissingDependencyError, match="podman is not installed"):
        up(config)
    assert not (tmp_path / "noman").exists()
    assert stack_processes(tmp_path / "noman") == []


@pytest.mark.parametrize("image", ["", " localhost/podtally", "-rm", "a b", "x" * 300])
def test_an_image_that_is_no_reference_is_a_usage_error(image: str) -> None:
    with pytest.raises(UsageError) as caught:
        StackConfig(image=image)
    assert caught.value.setting == "image"


def test_the_image_is_part_of_the_configuration() -> None:
    """Recorded in the state (its dict) and compared like every other setting by ``up``."""
    running = StackConfig(image=IMAGE)
    assert StackConfig.from_dict(running.to_dict()).image == running.image
    assert ("image", IMAGE, None) in running.differences(StackConfig())
    assert (
        StackConfig.from_dict(
            {k: v for k, v in StackConfig().to_dict().items() if k != "image"}
        ).image
        is None
    )
