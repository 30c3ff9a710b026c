#!/usr/bin/env bash
# podman, set up for the machine it runs on; every image script and test goes through here.
#
# Where podman's defaults cannot work, a containers.conf (pointed to by CONTAINERS_CONF, unless the
# caller set one) says what to use instead:
#   - no systemd as PID 1: cgroupfs as the cgroup manager and a file as the events log;
#   - runc when it is installed (Debian's podman works with it as root where crun may not);
#   - ulimits no higher than this process's own hard limits: podman's default nofile (1048576)
#     cannot be granted without CAP_SYS_RESOURCE. default_ulimits covers `podman build` too,
#     whose RUN steps start from nproc 32768 and may not raise it, hence the cap.
set -euo pipefail

if ! command -v podman >/dev/null 2>&1; then
  echo "error: podman is not installed: 'make image' installs it (with runc and debootstrap) on Debian" >&2
  exit 3
fi

if [ -z "${CONTAINERS_CONF:-}" ]; then
  conf_dir="${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/podtally-image-$(id -u)"
  mkdir -p "$conf_dir"
  ulimits=()
  nofile="$(ulimit -Hn)"
  nproc="$(ulimit -Hu)"
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
  [ "$nofile" != unlimited ] && ulimits+=("\"nofile=$nofile:$nofile\"")
  ulimits+=("\"nproc=$nproc:$nproc\"")
  {
    echo "[containers]"
    echo "default_ulimits = [$(IFS=,; echo "${ulimits[*]}")]"
    echo "[engine]"
    if [ ! -d /run/systemd/system ]; then
      echo 'cgroup_manager = "cgroupfs"'
      echo 'events_logger = "file"'
    fi
    if command -v runc >/dev/null 2>&1; then
      echo 'runtime = "runc"'
    fi
  } >"$conf_dir/containers.conf.$$"
  # Atomic: several podman processes may start at once.
  mv -f "$conf_dir/containers.conf.$$" "$conf_dir/containers.conf"
  export CONTAINERS_CONF="$conf_dir/containers.conf"
fi

exec podman "$@"
