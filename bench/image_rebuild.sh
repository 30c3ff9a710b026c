#!/usr/bin/env bash
# Rebuild time of the image after a one-line source change: the Dockerfile at OLD (a git ref,
# default HEAD~1) against the working tree's, alternating, ROUNDS rounds each (default 3), in a
# throwaway clone, tagged localhost/podtally-bench:{old,new} and removed at the end.
# Usage: bash bench/image_rebuild.sh [OLD] [ROUNDS]    (needs the base: `make image` once)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
old_ref="${1:-HEAD~1}"
rounds="${2:-3}"
work="$(mktemp -d)"
trap 'bash "$repo/scripts/image-podman.sh" rmi --ignore localhost/podtally-bench:old localhost/podtally-bench:new >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git clone -q "$repo" "$work/tree"
git -C "$repo" show "$old_ref:deploy/Dockerfile" >"$work/Dockerfile.old"
cp "$repo/deploy/Dockerfile" "$work/Dockerfile.new"
cd "$work/tree"
build() { IMAGE="localhost/podtally-bench:$1" bash scripts/image-build.sh >/dev/null; }
for kind in old new; do cp "$work/Dockerfile.$kind" deploy/Dockerfile; build "$kind"; done # warm
for round in $(seq 1 "$rounds"); do
  for kind in old new; do
    cp "$work/Dockerfile.$kind" deploy/Dockerfile
    echo "# change $round $kind" >>src/podtally/__init__.py
    start=$(date +%s.%N)
    build "$kind"
    echo "$kind round $round: $(echo "$(date +%s.%N) - $start" | bc) s"
  done
done
