"""The local stack on the image that ships: ``podtally up --image`` runs each replica as a podman
container on its own loopback address, behind the same HAProxy (issue 16).

Needs podman and a built image (`make image image-test`). Every stack runs from a run directory
of its own, and every container it starts carries that directory as a label: the tests look
for their containers (``podman ps -a``) by it, so other podman users on the machine never count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from podtally.local import container as ctr
from tests.image.helpers import podman_cmd
from tests.local.localstack_helpers import Load, get, stack_processes
from tests.support import REPO, free_base, run_cli

pytestmark = [pytest.mark.image, pytest.mark.slow]

NAME = "imgstack"


def _env(root: Path) -> dict[str, str]:
    # The supervisor would replace a killed replica itself; these tests watch the commands.
    return {"PODTALLY_STATE_DIR": str(root), "PODTALLY_SUPERVISOR": "off"}


def _ports(base: int) -> list[str]:
    return [
        "--http-port", str(base), "--stats-port", str(base + 2), "--no-tls",
        "--grpc-port", "0", "--service-port", "0", "--service-grpc-port", "0",
    ]  # fmt: skip


def _containers(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every container (running or not) labelled with ``run_dir``: name -> podman's entry."""
    where = f"label={ctr.RUN_DIR_LABEL}={run_dir.absolute()}"
    out = subprocess.run(
        podman_cmd("ps", "--all", "--format", "json", "--filter", where),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {entry["Names"][0]: entry for entry in json.loads(out.stdout or "[]")}


def _status(root: Path) -> dict[str, Any]:
    """``status --json`` (exit 1 when a replica is not UP: the document is there all the same)."""
    cli = run_cli("status", "--name", NAME, "--json", env=_env(root))
    assert cli.returncode in (0, 1), cli.stderr
    document: dict[str, Any] = json.loads(cli.stdout)
    return document


def _up(root: Path, base: int, image: str, replicas: int) -> None:
    args = ["up", "--name", NAME, "--replicas", str(replicas), "--image", image, *_ports(base)]
    cli = run_cli(*args, env=_env(root), timeout=120)
    assert cli.returncode == 0, cli.stderr


def _down(root: Path) -> None:
    cli = run_cli("down", "--name", NAME, env=_env(root), timeout=120)
    assert cli.returncode == 0, cli.stderr


@pytest.fixture
def root(tmp_path: Path) -> Any:
    yield tmp_path
    if (tmp_path / NAME).exists():
        run_cli("down", "--name", NAME, env=_env(tmp_path), timeout=120)
    # Whatever a failed test left: no container of its stack may outlive it.
    left = _containers(tmp_path / NAME)
    if left:
        subprocess.run(podman_cmd("rm", "--force", "--time", "0", *left), timeout=60, check=False)
    assert not left, f"containers left behind: {sorted(left)}"


def test_up_verify_restart_scale_down_on_containers(root: Path, image: str) -> None:
    base = free_base()
    started = time.monotonic()
    _up(root, base, image, replicas=3)
    up_seconds = time.monotonic() - started
    run_dir = root / NAME

    stack = _status(root)
    pods = {r["pod"]: r for r in stack["replicas"]}
    assert len(pods) == 3 and stack["config"]["image"] == image
    # Each replica is a running container of the image, labelled with its pod, as status says;
    # the server in it runs as the Deployment's user on a read-only root.
    running = _containers(run_dir)
    assert {c["Labels"][ctr.POD_LABEL] for c in running.values()} == set(pods)
    assert {c["State"] for c in running.values()} == {"running"}
    assert {c["Image"] for c in running.values()} == {image}
    assert {r["container"] for r in pods.values()} == set(running)
    for name, entry in running.items():
        pod = entry["Labels"][ctr.POD_LABEL]
        inside = subprocess.run(
            podman_cmd("exec", name, "cat", "/proc/1/status", "/proc/1/environ"),
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout.decode(errors="replace")
        assert f"POD_NAME={pod}" in inside and "Uid:\t10001" in inside
        assert (
            subprocess.run(
                podman_cmd("exec", name, "touch", "/written"),
                capture_output=True,
                timeout=30,
                check=False,
            ).returncode
            != 0
        ), "the root filesystem is writable"
        # The replica on its own loopback address answers with its pod's text.
        _, _, body = get(f"http://{pods[pod]['address']}:{pods[pod]['port']}/")
        assert body.startswith(f"Pod: {pod}\nNode: {pods[pod]['node']}\n"), body

    # Through HAProxy, every container answers, evenly.
    url = f"http://127.0.0.1:{base}/"
    verified = run_cli(
        "verify", url, "--requests", "1500", "--expect-pods", "3", "--json", env=_env(root)
    )
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr
    seen = {p["pod"] for p in json.loads(verified.stdout)["pods"]}
    assert seen == set(pods)

    # The image is part of the configuration: asking for another is a conflict.
    other = run_cli("up", "--name", NAME, "--image", "localhost/podtally:other", env=_env(root))
    assert other.returncode == 2, other.stderr
    assert f"--image {image} (asked: --image localhost/podtally:other)" in other.stderr

    # A rolling restart replaces each container with a new one, and under steady load through
    # HAProxy no request fails (each old container drains before it goes).
    with Load(url, None, threads=2, max_requests=20000, max_seconds=120) as load:
        load.wait_for(50)
        restarted = run_cli("restart", "--name", NAME, env=_env(root), timeout=120)
        load.wait_for(load.result.ok + 50)
    assert restarted.returncode == 0, restarted.stderr
    assert load.result.failures == [], load.result.failures[:10]
    assert set(load.result.pods) > set(pods), "the load saw old and new pods"
    after = _status(root)
    new_pods = {r["pod"] for r in after["replicas"]}
    assert len(new_pods) == 3 and not new_pods & set(pods), (pods, new_pods)
    assert after["ready"]
    now = _containers(run_dir)
    assert {c["Labels"][ctr.POD_LABEL] for c in now.values()} == new_pods

    # Scaling in drains and removes a container like a process.
    scaled = run_cli("scale", "2", "--name", NAME, env=_env(root), timeout=120)
    assert scaled.returncode == 0, scaled.stderr
    left = {r["pod"] for r in _status(root)["replicas"]}
    assert len(left) == 2 and left < new_pods
    assert {c["Labels"][ctr.POD_LABEL] for c in _containers(run_dir).values()} == left

    _down(root)
    assert _containers(run_dir) == {}
    assert not run_dir.exists() and stack_processes(run_dir) == []
    print(f"up --image, 3 replicas: ready in {up_seconds:.1f} s")


def test_down_removes_the_container_of_a_killed_podman_client(root: Path, image: str) -> None:
    base = free_base()
    _up(root, base, image, replicas=1)
    run_dir = root / NAME
    (replica,) = _status(root)["replicas"]
    os.kill(replica["pid"], signal.SIGKILL)  # the podman client; conmon keeps the container
    deadline = time.monotonic() + 10
    while _status(root)["replicas"][0]["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    (orphan,) = _status(root)["replicas"]
    assert not orphan["running"] and orphan["container"] == replica["container"]
    assert _containers(run_dir)[replica["container"]]["State"] == "running"
    _down(root)
    assert _containers(run_dir) == {}
    assert not run_dir.exists() and stack_processes(run_dir) == []


def test_the_supervisor_replaces_a_killed_container_replica(root: Path, image: str) -> None:
    env = {**_env(root), "PODTALLY_SUPERVISOR": "on"}
    base = free_base()
    cli = run_cli("up", "--name", NAME, "--image", image, "--replicas", "1", *_ports(base), env=env)
    assert cli.returncode == 0, cli.stderr
    run_dir = root / NAME
    (replica,) = _status(root)["replicas"]
    os.kill(replica["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        replicas = _status(root)["replicas"]
        if [(r["running"], r["health"]) for r in replicas] == [(True, "UP")]:
            break
        time.sleep(0.2)
    (fresh,) = replicas
    assert fresh["pod"] != replica["pod"] and fresh["health"] == "UP", replicas
    # The old container (its client killed, itself left to conmon) went with its replica.
    assert set(_containers(run_dir)) == {fresh["container"]}
    _down(root)
    assert _containers(run_dir) == {}


def test_down_without_a_readable_state_removes_the_containers(root: Path, image: str) -> None:
    base = free_base()
    _up(root, base, image, replicas=2)
    run_dir = root / NAME
    assert len(_containers(run_dir)) == 2
    (run_dir / "state.json").write_text("{ not json")
    _down(root)
    assert _containers(run_dir) == {}
    deadline = time.monotonic() + 10  # the podman clients exit with their containers
    while stack_processes(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not run_dir.exists() and stack_processes(run_dir) == []


def test_an_image_that_does_not_exist_is_one_error_line(root: Path) -> None:
    base = free_base()
    missing = "localhost/podtally:no-such-tag"
    cli = run_cli("up", "--name", NAME, "--image", missing, *_ports(base), env=_env(root))
    assert cli.returncode == 2, cli.stderr
    errors = [line for line in cli.stderr.splitlines() if line.startswith("error:")]
    assert errors == cli.stderr.splitlines()[-1:], cli.stderr
    assert errors[0].startswith(f"error: --image '{missing}': no image {missing}"), errors
    assert "Traceback" not in cli.stderr
    assert not (root / NAME).exists() and stack_processes(root / NAME) == []
    assert _containers(root / NAME) == {}


def test_the_stack_uses_the_scripts_podman_settings(tmp_path: Path) -> None:
    """One containers.conf: what podtally.local.container writes is what image-podman.sh does."""
    env = {k: v for k, v in os.environ.items() if k != "CONTAINERS_CONF"}
    env.update(XDG_RUNTIME_DIR=str(tmp_path))
    subprocess.run(
        ["bash", str(REPO / "scripts" / "image-podman.sh"), "--version"],
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    written = (tmp_path / f"podtally-image-{os.getuid()}" / "containers.conf").read_text()
    assert written == ctr.conf_text()
