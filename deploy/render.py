"""Regenerate (or check) the rendered parts of the kustomize tree in deploy/ from podtally.k8s.

    python deploy/render.py           # rewrite deploy/base/podtally.yaml, overlays/eks/ingress.yaml
    python deploy/render.py --check   # exit 1 and name the stale files if they differ from a render

deploy/base holds the generic profile's objects as the renderer gives them; the overlays are
kustomizations: `generic` is the base as it is, `eks` patches the few fields the eks profile
changes (the drain, the grace period, the hard zone rule, the readiness-gate label) and adds the
ALB Ingress rendered here. tests/k8s/test_kustomize.py builds both with `kubectl kustomize` and
compares them with the renderer; tests/k8s/test_deploy_copies.py runs `--check`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parent

# The example values in the eks overlay (host, certificate) are placeholders: copy the overlay and
# patch your own, or render with `podtally manifests --profile eks --host ... --certificate-arn`.
EKS_HOST = "podtally.example.com"
EKS_CERTIFICATE_ARN = (
    "arn:aws:acm:us-east-1:111122223333:certificate/00000000-0000-0000-0000-000000000000"
)
HEADER = "# Rendered by `python deploy/render.py` from podtally.k8s ({what}). Do not edit.\n"


def specs() -> dict[str, Any]:
    from podtally.spec import AppSpec

    return {
        "generic": AppSpec(),
        "eks": AppSpec(profile="eks", host=EKS_HOST, certificate_arn=EKS_CERTIFICATE_ARN),
    }


def copies() -> dict[str, str]:
    from podtally.k8s import render, to_yaml

    s = specs()
    eks_ingress = [o for o in render(s["eks"]) if o["kind"] == "Ingress"]
    return {
        "base/podtally.yaml": HEADER.format(what="profile generic") + to_yaml(render(s["generic"])),
        "overlays/eks/ingress.yaml": HEADER.format(what="profile eks, its Ingress")
        + to_yaml(eks_ingress),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    parser.add_argument("--dir", type=Path, default=DEPLOY, help="where the copies live")
    opts = parser.parse_args(argv)
    stale = []
    for rel, text in copies().items():
        path = opts.dir / rel
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
