#!/usr/bin/env bash
# Make sure "$1" (the Python that builds .venv) is 3.11+ and can create virtualenvs; on Debian and
# Ubuntu the latter needs the python3-venv package, which apt-install.sh adds where it can.
set -euo pipefail
python="${1:-python3}"
if ! command -v "$python" >/dev/null; then
  echo "error: $python not found: install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3)" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $("$python" -V 2>&1) is too old: podtally needs Python 3.11+ (make PYTHON=python3.11 ...)" >&2
  exit 1
fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  version="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  bash "$(dirname "$0")/apt-install.sh" "python${version}-venv"
fi
