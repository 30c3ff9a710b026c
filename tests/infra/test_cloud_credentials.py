"""The AWS credential check through botocore's own resolution (the cloud extra pins it), and the
hand-written fallback that answers without it."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tests.infra.cloud_support import (
    BARE_PATH,
    _script,
)

from podtally.cloud.credentials import check_aws_credentials, check_sources
from podtally.errors import PodtallyError


def _bare(home: Path, **extra: str) -> dict[str, str]:
    """An environment with nothing AWS in it but ``extra``; IMDS off unless ``extra`` says."""
    return {"HOME": str(home), "PATH": BARE_PATH, "AWS_EC2_METADATA_DISABLED": "true", **extra}


def test_botocore_resolves_environment_keys(tmp_path: Path) -> None:
    keys = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"}
    assert check_aws_credentials(_bare(tmp_path, **keys)) == "botocore: env"


def test_botocore_finds_nothing_without_a_source(tmp_path: Path) -> None:
    with pytest.raises(PodtallyError) as caught:
        check_aws_credentials(_bare(tmp_path))
    assert caught.value.what.startswith("no AWS credentials found: set AWS_PROFILE")
    # A config file that only sets a region is still no source.
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default]\nregion = us-east-1\n")
    with pytest.raises(PodtallyError, match="no AWS credentials found"):
        check_aws_credentials(_bare(tmp_path))


def test_botocore_reads_the_shared_files_and_runs_a_credential_process(tmp_path: Path) -> None:
    aws = tmp_path / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = x\n"
    )
    assert check_aws_credentials(_bare(tmp_path)) == "botocore: shared-credentials-file"
    (aws / "credentials").unlink()
    process = tmp_path / "get-creds"
    _script(
        process,
        'echo \'{"Version": 1, "AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "x"}\'\n',
    )
    (aws / "config").write_text(f"[profile ci]\ncredential_process = {process}\n")
    assert check_aws_credentials(_bare(tmp_path, AWS_PROFILE="ci")) == "botocore: custom-process"


def test_botocore_names_a_missing_profile(tmp_path: Path) -> None:
    """The fallback took any AWS_PROFILE on trust; botocore knows the profile is not there."""
    assert check_sources(_bare(tmp_path, AWS_PROFILE="nosuch")) == "AWS_PROFILE"
    with pytest.raises(PodtallyError) as caught:
        check_aws_credentials(_bare(tmp_path, AWS_PROFILE="nosuch"))
    assert caught.value.what == (
        "no AWS credentials: The config profile (nosuch) could not be found (set AWS_PROFILE to "
        "a profile in ~/.aws/config, or unset it)"
    )


class _InstanceMetadata(http.server.BaseHTTPRequestHandler):
    """The EC2 instance metadata service as botocore asks it for an instance profile's role."""

    def do_PUT(self) -> None:
        self._answer("/latest/api/token", "a-session-token")

    def do_GET(self) -> None:
        role = "/latest/meta-data/iam/security-credentials/"
        if self.path == role:
            self._answer(role, "podtally-node")
            return
        creds = {
            "Code": "Success",
            "AccessKeyId": "ASIAEXAMPLE",
            "SecretAccessKey": "x",
            "Token": "t",
            "Expiration": "2099-01-01T00:00:00Z",
        }
        self._answer(role + "podtally-node", json.dumps(creds))

    def _answer(self, path: str, body: str) -> None:
        data = body.encode()
        self.send_response(200 if self.path == path else 404)
        self.send_header("Content-Length", str(len(data) if self.path == path else 0))
        self.end_headers()
        if self.path == path:
            self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return


def test_botocore_finds_an_instance_profile(tmp_path: Path) -> None:
    """What the hand-written chain missed: an EC2 instance profile, here from a stand-in for the
    metadata service on loopback (botocore's own endpoint setting points at it)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _InstanceMetadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = _bare(tmp_path)
        env.pop("AWS_EC2_METADATA_DISABLED")
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://127.0.0.1:{server.server_port}/"
        assert check_aws_credentials(env) == "botocore: iam-role"
        with pytest.raises(PodtallyError, match="no AWS credentials"):
            check_sources(env)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_without_botocore_the_fallback_answers(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['botocore'] = None\n"
        "sys.modules['botocore.session'] = None\n"
        "from podtally.cloud import check_aws_credentials\n"
        "print(check_aws_credentials())\n"
    )
    keys = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=_bare(tmp_path, **keys),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "AWS_ACCESS_KEY_ID"


def test_the_process_environment_is_restored(tmp_path: Path) -> None:
    import os

    before = dict(os.environ)
    check_aws_credentials(_bare(tmp_path, AWS_ACCESS_KEY_ID="A", AWS_SECRET_ACCESS_KEY="x"))  # noqa: S106
    with pytest.raises(PodtallyError):
        check_aws_credentials(_bare(tmp_path))
    assert dict(os.environ) == before
