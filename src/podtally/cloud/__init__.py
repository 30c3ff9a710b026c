"""Drive the Pulumi program in ``infra/`` through Pulumi's Automation API.

Importing this package is cheap: Pulumi itself is imported only when a stack is opened.
"""

from __future__ import annotations

from podtally.cloud.stack import (
    StackRef,
    backend_url,
    check_aws_credentials,
    check_pulumi_cli,
    destroy,
    find_infra_dir,
    preview,
    read_outputs,
    up,
)

__all__ = [
    "StackRef",
    "backend_url",
    "check_aws_credentials",
    "check_pulumi_cli",
    "destroy",
    "find_infra_dir",
    "preview",
    "read_outputs",
    "up",
]
