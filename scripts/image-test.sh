#!/usr/bin/env bash
# Run tests/image against IMAGE (default localhost/podtally:VERSION), which must be built already
# (`make image`). Extra arguments go to pytest.
# Exit codes: pytest's own; 2 the image does not exist; 3 podman is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
image="${IMAGE:-localhost/podtally:$version}"
scripts/image-podman.sh --version >/dev/null
if ! scripts/image-podman.sh image exists "$image" 2>/dev/null; then
  echo "error: no image $image in podman's image store: build it with 'make image IMAGE=$image'" >&2
  exit 2
fi
PODTALLY_TEST_IMAGE="$image" exec .venv/bin/pytest -m image tests/image "$@"
