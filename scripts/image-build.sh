#!/usr/bin/env bash
# Build deploy/Dockerfile into IMAGE (default localhost/podtally:VERSION).
#
# With a Docker daemon that answers (or ENGINE=docker), `docker build` on the Dockerfile's own
# pinned upstream base. Otherwise podman, on a base made here: Debian bookworm by debootstrap from
# the mirror apt uses, imported as BASE (default localhost/podtally-base:bookworm). The base stays
# in podman's image store, so later builds skip debootstrap; `make image-clean` removes it. A BASE
# outside localhost/ (the upstream one, say, where the registry is reachable) is pulled instead.
#
# Settings (environment): IMAGE, BASE, ENGINE (docker|podman), MIRROR (the Debian mirror),
# BUILD_LOG (where the build's output goes; the last line of it is shown on failure).
# Exit codes: 0 built; 2 bad input (an engine that is not docker or podman); 3 a tool is missing,
# or the base or the image could not be built.
set -euo pipefail
cd "$(dirname "$0")/.."
here="$(pwd)"
podman=("$here/scripts/image-podman.sh")

fail() { # exit code, then the message: one line on stderr
  echo "error: $2" >&2
  exit "$1"
}

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
[ -n "$version" ] || fail 3 "no version in pyproject.toml"
image="${IMAGE:-localhost/podtally:$version}"
log="${BUILD_LOG:-${TMPDIR:-/tmp}/podtally-image-build-$(id -u).log}"

engine="${ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    engine=docker
  else
    engine=podman
  fi
fi

case "$engine" in
docker)
  # Docker pulls the Dockerfile's own pinned base unless BASE names another.
  args=()
  [ -n "${BASE:-}" ] && args+=(--build-arg "BASE=$BASE")
  started=$SECONDS
  if ! docker build "${args[@]}" --build-arg "VERSION=$version" -f deploy/Dockerfile \
    -t "$image" . >"$log" 2>&1; then
    fail 3 "docker build failed: $(tail -n 1 "$log") (full log: $log)"
  fi
  echo "built $image with docker in $((SECONDS - started)) s"
  exit 0
  ;;
podman) ;;
*) fail 2 "ENGINE=$engine: must be docker or podman" ;;
esac

command -v podman >/dev/null 2>&1 ||
  fail 3 "podman is not installed (and no Docker daemon answers): 'make image' installs podman, runc and debootstrap on Debian"

base="${BASE:-localhost/podtally-base:bookworm}"

# The Debian mirror apt uses here (deb822 .sources or one-line sources.list), else deb.debian.org.
apt_mirror() {
  local uri
  uri="$(awk '
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") { print uri; exit } }
  ' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

if "${podman[@]}" image exists "$base" 2>/dev/null; then
  echo "base $base: cached in podman's image store"
elif [[ "$base" != localhost/* ]]; then
  echo "base $base: podman build pulls it"
else
  [ "$(id -u)" -eq 0 ] || fail 3 "building the base $base needs root (debootstrap): run 'sudo make image'"
  command -v debootstrap >/dev/null 2>&1 ||
    fail 3 "debootstrap is not installed: 'make image' installs it on Debian"
  mirror="${MIRROR:-$(apt_mirror)}"
  work="$(mktemp -d "${TMPDIR:-/tmp}/podtally-base.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "base $base: debootstrap bookworm from $mirror (a few minutes)"
  started=$SECONDS
  if ! debootstrap --variant=minbase --include=python3,python3-venv bookworm "$work/root" \
    "$mirror" >"$log" 2>&1; then
    fail 3 "could not build the base $base: debootstrap from $mirror failed: $(tail -n 1 "$log") (full log: $log)"
  fi
  # Slim, as Debian's own slim images are: no package lists or caches, documentation or
  # translations (the copyright files stay).
  rm -rf "$work/root"/var/lib/apt/lists/* "$work/root"/var/cache/apt/* \
    "$work/root"/usr/share/man/* "$work/root"/usr/share/info/* "$work/root"/usr/share/locale/*
  find "$work/root/usr/share/doc" -type f ! -name copyright -delete
  if ! tar -C "$work/root" -c . | "${podman[@]}" import --message "debootstrap bookworm minbase, python3" - "$base" >"$log" 2>&1; then
    fail 3 "could not import the base $base: $(tail -n 1 "$log")"
  fi
  rm -rf "$work"
  echo "base $base: built in $((SECONDS - started)) s"
fi

# The host's CA bundle, read-only, for pip inside the build: Debian's pip reads the system
# bundle (its certifi points there), so a TLS-inspecting proxy the host trusts is trusted in the
# build too; without the mount, pip finds no distribution here. Nothing of it stays in the image
# (a build-time mount is not a layer). An upstream python base's pip uses its own certifi bundle
# and would need PIP_CERT set in the build, which the Dockerfile does not take.
mounts=()
[ -d /etc/ssl/certs ] && mounts+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
started=$SECONDS
# docker format, so that HEALTHCHECK is kept (OCI image configs have no health check).
if ! "${podman[@]}" build --isolation chroot --network host --format docker --layers \
  "${mounts[@]}" --build-arg "BASE=$base" --build-arg "VERSION=$version" \
  -f deploy/Dockerfile -t "$image" . >"$log" 2>&1; then
  fail 3 "podman build failed: $(grep -v '^\s*$' "$log" | tail -n 1) (full log: $log)"
fi
size="$("${podman[@]}" image inspect --format '{{.Size}}' "$image")"
echo "built $image on $base with podman in $((SECONDS - started)) s ($((size / 1000000)) MB)"
# Earlier builds' images, untagged by this one (podtally's title label, no tag), and their build
# stages (io.podtally.stage) but the newest of each, which is the one this build used and the next
# one reuses from the cache: removed with the layers only they used, so that rebuilding does not
# fill the store. Only images with one of those labels are touched (an untagged image built FROM
# podtally inherits the title label: it goes too), never one a container still uses.
stale=()
mapfile -t -O 0 stale < <("${podman[@]}" images -q --filter dangling=true \
  --filter label=org.opencontainers.image.title=podtally)
for stage in wheel venv; do
  # Newest first, as podman lists images.
  mapfile -t older < <("${podman[@]}" images -q --filter dangling=true \
    --filter "label=io.podtally.stage=$stage" | tail -n +2)
  stale+=("${older[@]}")
done
if [ "${#stale[@]}" -gt 0 ]; then
  removed=0
  for id in "${stale[@]}"; do
    "${podman[@]}" rmi "$id" >/dev/null 2>&1 && removed=$((removed + 1))
  done
  echo "removed $removed earlier build(s) of podtally that no tag names"
fi
