"""Regenerate (or check) the rendered manifests in deploy/ from `podtally manifests`.

    python deploy/render.py           # rewrite deploy/{generic,eks}/podtally.yaml
    python deploy/render.py --check   # exit 1 and name the stale files if they differ from a render

The copies are what `kubectl apply -f deploy/generic/` applies; tests/k8s runs `--check`, so a
change to the renderer that is not re-rendered here fails the suite.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent

# The example values in the eks copy (host, certificate) are placeholders: render your own with
# `podtally manifests --profile eks --host ... --certificate-arn ... --image ...`.
COPIES: dict[str, list[str]] = {
    "generic/podtally.yaml": ["--profile", "generic"],
    "eks/podtally.yaml": [
        "--profile",
        "eks",
        "--host",
        "podtally.example.com",
        "--certificate-arn",
        "arn:aws:acm:us-east-1:111122223333:certificate/00000000-0000-0000-0000-000000000000",
    ],
}

HEADER = "# Rendered by `python deploy/render.py` (podtally manifests {args}). Do not edit.\n"


def render(args: list[str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "podtally", "manifests", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return HEADER.format(args=" ".join(args)) + out.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    parser.add_argument("--dir", type=Path, default=DEPLOY, help="where the copies live")
    opts = parser.parse_args(argv)
    stale = []
    for rel, args in COPIES.items():
        path = opts.dir / rel
        text = render(args)
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if opts.check:
            stale.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}", file=sys.stderr)
    if stale:
        print(f"stale: {', '.join(stale)} (regenerate: python deploy/render.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
