#!/usr/bin/env bash
# Rebuild time of the image after a one-line source change: the Dockerfile at OLD (a git ref)
# against the working tree's, alternating, ROUNDS rounds each (default 3), in a throwaway clone,
# tagged localhost/podtally-bench:{old,new}. What the builds leave in podman's store (the tags,
# and the stage images an unlabelled Dockerfile leaves) is removed at the end.
# Usage: bash bench/image_rebuild.sh OLD [ROUNDS]    (needs the base: `make image` once)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 1 ]; then
  echo "error: give the git ref of the Dockerfile to compare with (see BENCHMARKS.md)" >&2
  exit 2
fi
old_ref="$1"
rounds="${2:-3}"
podman=(bash "$repo/scripts/image-podman.sh")
work="$(mktemp -d)"
"${podman[@]}" images -q --filter dangling=true | sort >"$work/before"
cleanup() {
  "${podman[@]}" rmi --ignore localhost/podtally-bench:old localhost/podtally-bench:new \
    >/dev/null 2>&1 || true
  "${podman[@]}" images -q --filter dangling=true | sort >"$work/after"
  mapfile -t left < <(comm -13 "$work/before" "$work/after")
  [ "${#left[@]}" -eq 0 ] || "${podman[@]}" rmi "${left[@]}" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
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
