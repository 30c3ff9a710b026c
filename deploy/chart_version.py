"""Check a chart version before `helm package --version`: strict semver, or one `error:` line.

    python deploy/chart_version.py 0.2.0      # prints 0.2.0, exit 0
    python deploy/chart_version.py v0.2       # error: ..., exit 2

helm itself takes loose versions such as ``v1`` or ``1.0`` and would push them as OCI tags that
no semver range matches; the release workflow runs this first.
"""

from __future__ import annotations

import sys

from podtally.errors import UsageError
from podtally.k8s.chart import check_chart_version


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("error: give one chart version, e.g. 0.2.0", file=sys.stderr)
        return 2
    try:
        print(check_chart_version(argv[0]))
    except UsageError as exc:
        print(f"error: chart version {argv[0]!r} {exc.what}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
