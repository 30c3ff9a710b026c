"""The image's install recipe, replayed without docker: what deploy/Dockerfile's build stages do,
step for step, then `podtally serve` from the resulting virtualenv.

1. the build context is exactly what .dockerignore admits;
2. setuptools from requirements/build.lock (hashes required) in a build virtualenv, then
   `pip wheel --no-deps --no-build-isolation`;
3. a fresh virtualenv: requirements/core.lock with `--require-hashes`, the wheel with `--no-deps`,
   `pip check`, pip removed.

It proves the image needs nothing beyond the locked core (with the grpc extra), that the lock is
complete (with `--no-deps` and `pip check`, a missing or mismatched dependency fails), that the
replica answers gRPC health on its default port beside HTTP, and that serving writes nothing
into the installed tree (the read-only root filesystem).

Offline: the only difference from the Dockerfile is where pip finds the files. Here it reads the
locked wheels `make setup` downloaded into the wheelhouse (`--no-index --find-links`); the hashes
are checked the same way. The replica listens on 127.0.0.22, on a port the kernel gives out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from podtally import __version__
from tests.k8s.helpers import REPO, WHEELHOUSE, norm_name, parse_lock
from tests.support import ServeProcess, clean_env, free_port, run_captured

HOST = "127.0.0.22"
LOCKS = ("requirements/build.lock", "requirements/core.lock")


def _copy_build_context(context: Path) -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "*", "the .dockerignore is deny-all, then allow"
    # Everything the Dockerfile copies must be admitted by .dockerignore, and copied here.
    for name in ("pyproject.toml", "README.md", "src/", *LOCKS):
        assert f"!{name}" in ignore, name
    for name in ("pyproject.toml", "README.md", *LOCKS):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, context / name)
    shutil.copytree(
        REPO / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )


def _dockerfile_runs_the_same_recipe() -> None:
    """The commands replayed below are the Dockerfile's own (only the file source differs)."""
    # One line per instruction, single spaces: line continuations do not matter.
    text = " ".join((REPO / "deploy" / "Dockerfile").read_text().replace("\\\n", " ").split())
    for fragment in (
        "COPY requirements/build.lock ./requirements/",
        "/opt/build/bin/pip install --no-cache-dir --require-hashes -r requirements/build.lock",
        "/opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation "
        "--wheel-dir /dist .",
        "COPY requirements/core.lock /tmp/core.lock",
        "/opt/podtally/bin/pip install --no-cache-dir --only-binary=:all: --require-hashes "
        "-r /tmp/core.lock",
        "/opt/podtally/bin/pip install --no-cache-dir --no-deps /dist/podtally-*.whl",
        "/opt/podtally/bin/pip check",
        "/opt/podtally/bin/pip uninstall --yes pip setuptools",
    ):
        assert fragment in text, fragment


def _serve(venv: Path, tmp_path: Path) -> ServeProcess:
    """The image's ENTRYPOINT and CMD (`podtally serve`) from the virtualenv, on loopback, with
    the CLI's own default gRPC port (9090)."""
    log_path = tmp_path / "serve.log"
    env = clean_env({"POD_NAME": "image-pod", "PYTHONDONTWRITEBYTECODE": "1"})
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PODTALLY_GRPC_PORT", None)  # serve's own default, 9090
    port = free_port(HOST)
    cmd = [venv / "bin" / "podtally", "serve", "--host", HOST, "--port", str(port)]
    argv = [*cmd, "--drain-seconds", "0"]
    return ServeProcess.spawn(argv, HOST, port, log_path, env, cwd=tmp_path).wait_ready()


def _grpc_health(host: str, port: int) -> str:
    """grpc.health.v1.Health/Check for the whole server, as the kubelet's gRPC probe calls it."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return name


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


@pytest.mark.slow
def test_locked_core_virtualenv_serves(tmp_path: Path) -> None:
    _dockerfile_runs_the_same_recipe()
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"no wheels in {WHEELHOUSE}: run `make setup` (it downloads the locked wheels)")
    context, dist = tmp_path / "context", tmp_path / "dist"
    build, venv = tmp_path / "build", tmp_path / "venv"
    context.mkdir()
    _copy_build_context(context)
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    # Where the Dockerfile's pip reads the index, this one reads the wheelhouse only.
    offline = ("--no-index", "--find-links", str(WHEELHOUSE))

    def run(*cmd: str | Path, cwd: Path | None = None) -> str:
        out = run_captured(cmd, timeout=180, env=pip_env, cwd=cwd)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out.stdout

    # Stage 1: the wheel, built with the locked setuptools and no build isolation.
    run(sys.executable, "-m", "venv", build)
    run(build / "bin" / "pip", "install", "--no-cache-dir", *offline, "--require-hashes",
        "-r", context / "requirements" / "build.lock")  # fmt: skip
    run(build / "bin" / "pip", "wheel", "--no-cache-dir", "--no-deps", "--no-build-isolation",
        "--wheel-dir", dist, ".", cwd=context)  # fmt: skip
    (wheel,) = dist.glob("podtally-*.whl")

    # Stage 2: the locked core, then the wheel without dependencies.
    pip = venv / "bin" / "pip"
    run(sys.executable, "-m", "venv", venv)
    run(pip, "install", "--no-cache-dir", *offline, "--only-binary=:all:", "--require-hashes",
        "-r", context / "requirements" / "core.lock")  # fmt: skip
    run(pip, "install", "--no-cache-dir", *offline, "--no-deps", wheel)
    run(pip, "check")
    run(pip, "uninstall", "--yes", "pip", "setuptools")
    python = venv / "bin" / "python"
    # Exactly the lock's pins and podtally: nothing resolved beyond the lock, no pip, no setuptools.
    installed = run(
        python,
        "-c",
        "import importlib.metadata as m; "
        "print(' '.join(d.name + '==' + d.version for d in m.distributions()))",
    ).split()
    locked = parse_lock((REPO / "requirements" / "core.lock").read_text())[0]
    assert {norm_name(n): v for n, v in (p.split("==") for p in installed)} == {
        **locked,
        "podtally": __version__,
    }

    # Core and gRPC only: the verifier's, local stack's and cloud's dependencies are absent.
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u; print([m for m in ('granian', 'prometheus_client', "
            "'uvloop', 'grpc', 'grpc_health', 'grpc_reflection', 'yaml', 'scipy', 'httptools', "
            "'h2', 'cryptography', 'pulumi') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert probe.stdout.strip() == (
        "['granian', 'prometheus_client', 'uvloop', 'grpc', 'grpc_health', 'grpc_reflection']"
    )

    # Every other command says, in one line, which extra it needs.
    for argv, extra in (
        (("verify", "http://127.0.0.1:9/"), "verify"),
        (("demo",), "local"),
        (("up", "--http-port", "8080"), "local"),  # refused before it binds anything
        (("manifests",), "local"),
        (("cloud", "preview", "--infra-dir", str(REPO / "infra")), "cloud"),
    ):
        missing = subprocess.run(
            [venv / "bin" / "podtally", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=clean_env({"PODTALLY_STATE_DIR": str(tmp_path / "state")}),
        )
        assert missing.returncode == 3, (argv, missing.stderr)
        assert missing.stderr.startswith("error: ") and len(missing.stderr.splitlines()) == 1
        assert f"pip install 'podtally[{extra}]'" in missing.stderr, missing.stderr
    assert not (tmp_path / "state").exists()

    before = _snapshot(venv)
    replica = _serve(venv, tmp_path)
    try:
        status, _, body = replica.get("/")
        assert status == 200
        assert body.decode().startswith("Pod: image-pod\n"), replica.log_path.read_text()
        # gRPC on the CLI's default port, as the manifests' gRPC probes ask it.
        assert _grpc_health(HOST, 9090) == "SERVING", replica.log_path.read_text()
        replica.signal()
        assert replica.wait() == 0, replica.log_path.read_text()
    finally:
        replica.stop()
    # Nothing in the installed tree was written while serving.
    assert _snapshot(venv) == before
