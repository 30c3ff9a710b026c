"""Where AWS credentials would come from, checked before Pulumi starts.

With botocore installed (the cloud extra pins it), the answer is botocore's own: the same chain
the AWS SDKs and the Pulumi AWS provider walk (environment keys, the shared files, SSO, a role,
web identity, a credential process, a container endpoint, an EC2 instance profile through IMDS).
Resolving can start a ``credential_process`` or ask the container endpoint or IMDS (one attempt,
a one-second timeout each; ``AWS_EC2_METADATA_DISABLED=true`` skips IMDS), but never calls an AWS
API: credentials that resolve may still be expired or refused.

Without botocore, a hand-written check looks for the same sources without contacting anything;
it cannot see an instance profile or a container role behind the metadata services.
"""

from __future__ import annotations

import configparser
import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from podtally.errors import PodtallyError

# Keys that make a profile in ~/.aws/config (or ~/.aws/credentials) a source of credentials.
CREDENTIAL_KEYS = (
    "aws_access_key_id",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "role_arn",
    "web_identity_token_file",
)
NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_PROFILE (after 'aws configure' or 'aws sso login'), "
    "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)


def check_aws_credentials(env: Mapping[str, str] | None = None) -> str:
    """Where AWS credentials come from (``botocore: <method>``, or the variable or file the
    fallback found), or a one-line :class:`PodtallyError` saying what to set."""
    env = os.environ if env is None else env
    try:
        import botocore.session  # noqa: F401
    except ImportError:
        return check_sources(env)
    return check_with_botocore(env)


def check_with_botocore(env: Mapping[str, str]) -> str:
    """botocore's credential resolution over ``env`` (the process environment by default)."""
    import botocore.exceptions
    import botocore.session

    with _environment(env):
        try:
            credentials = botocore.session.get_session().get_credentials()
        except botocore.exceptions.ProfileNotFound as exc:
            raise PodtallyError(
                f"no AWS credentials: {_first_line(exc)} (set AWS_PROFILE to a profile in "
                "~/.aws/config, or unset it)"
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise PodtallyError(
                f"AWS credentials could not be resolved: {_first_line(exc)}"
            ) from None
    if credentials is None:
        raise PodtallyError(NO_CREDENTIALS)
    return f"botocore: {credentials.method}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """botocore reads ``os.environ``: for another mapping, swap it in for the call (the CLI
    always passes ``os.environ`` itself, so it never swaps)."""
    if env is os.environ:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _profile_has_credentials(path: Path, section: str) -> bool:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return False
    if not parser.has_section(section):
        return False
    return any(parser.get(section, key, fallback="").strip() for key in CREDENTIAL_KEYS)


def check_sources(env: Mapping[str, str]) -> str:
    """The fallback without botocore: the sources the AWS SDKs read, without contacting
    anything: keys in the environment, a named profile, web identity (CI), a container
    credentials endpoint, or a default profile in the shared files that holds credentials
    (keys, a credential process, SSO or a role). A ``~/.aws/config`` that only sets a region is
    not a source."""
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return "AWS_ACCESS_KEY_ID"
    for var in (
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):
        if env.get(var):
            return var
    home = Path(env.get("HOME") or Path.home())
    profile = env.get("AWS_DEFAULT_PROFILE") or "default"
    credentials = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
    config = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    # The credentials file names profiles plainly; the config file says "profile NAME", except
    # for the default profile.
    config_section = profile if profile == "default" else f"profile {profile}"
    for path, section in ((credentials, profile), (config, config_section)):
        if path.is_file() and _profile_has_credentials(path, section):
            return str(path)
    raise PodtallyError(NO_CREDENTIALS)
