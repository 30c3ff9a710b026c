"""Drive the Pulumi program in ``infra/`` through Pulumi's Automation API.

Importing this package is cheap: Pulumi itself is imported only when a stack is opened.
"""

from __future__ import annotations

from podtally.cloud.credentials import check_aws_credentials
from podtally.cloud.stack import (
    StackRef,
    backend_url,
    check_aws_cli,
    check_pulumi_cli,
    check_stack_name,
    destroy,
    ensure_stack_file,
    find_infra_dir,
    preview,
    pulumi_command,
    read_outputs,
    read_verify_outputs,
    up,
)

__all__ = [
    "StackRef",
    "backend_url",
    "check_aws_cli",
    "check_aws_credentials",
    "check_pulumi_cli",
    "check_stack_name",
    "destroy",
    "ensure_stack_file",
    "find_infra_dir",
    "preview",
    "pulumi_command",
    "read_outputs",
    "read_verify_outputs",
    "up",
]
