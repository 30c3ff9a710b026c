#!/usr/bin/env bash
# Measure IMAGE (default localhost/podtally:VERSION) for BENCHMARKS.md: its size and its layers,
# then RUNS times (default 5): start-to-ready (from `podman run` to the first 200 from /readyz,
# as the Deployment runs it: read-only, no capabilities) and the idle RSS of every process in the
# container after IDLE seconds (default 5). Prints medians. Port PORT (default 28080) on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
podman=(bash scripts/image-podman.sh)
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
image="${IMAGE:-localhost/podtally:$version}"
runs="${RUNS:-5}"
idle="${IDLE:-5}"
port="${PORT:-28080}"
"${podman[@]}" image exists "$image" || {
  echo "error: no image $image in podman's image store: build it with 'make image'" >&2
  exit 2
}
command -v curl >/dev/null || {
  echo "error: curl is not installed" >&2
  exit 3
}

name="podtally-bench-$$"
trap '"${podman[@]}" rm --force --time 0 --ignore "$name" >/dev/null 2>&1 || true' EXIT

echo "image $image: $(("$("${podman[@]}" image inspect --format '{{.Size}}' "$image")" / 1000000)) MB"
"${podman[@]}" history --format '{{.Size}}\t{{.CreatedBy}}' "$image" | grep -v '^0 B' | cut -c1-90

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ready_ms=()
rss_kb=()
for _ in $(seq "$runs"); do
  start=$(date +%s%N)
  "${podman[@]}" run --detach --name "$name" --read-only --cap-drop ALL \
    --security-opt no-new-privileges --health-interval disable \
    --publish "127.0.0.1:$port:8080" "$image" >/dev/null 2>&1
  deadline=$((SECONDS + 30))
  until curl -fs -o /dev/null -m 1 "http://127.0.0.1:$port/readyz"; do
    [ $SECONDS -lt $deadline ] || {
      echo "error: the container was not ready within 30 s" >&2
      exit 3
    }
    sleep 0.01
  done
  ready_ms+=($((($(date +%s%N) - start) / 1000000)))
  sleep "$idle"
  # Every process in the container (granian's workers included) but this sh and cat: VmRSS, summed.
  rss_kb+=("$("${podman[@]}" exec "$name" sh -c 'cat /proc/[0-9]*/status' |
    awk '/^Name:/ { n = $2 } /^VmRSS:/ && n != "sh" && n != "cat" { sum += $2 } END { print sum }')")
  "${podman[@]}" rm --force --time 0 "$name" >/dev/null 2>&1
done
echo "start-to-ready ms: ${ready_ms[*]} (median $(printf '%s\n' "${ready_ms[@]}" | median))"
echo "idle RSS kB, all processes: ${rss_kb[*]} (median $(printf '%s\n' "${rss_kb[@]}" | median))"
