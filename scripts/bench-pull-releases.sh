#!/usr/bin/env bash
# The pull figure of the snapshotter benchmark on each containerd release: podshim-snapshotter
# against containerd's overlayfs, `ctr images pull` through the transfer service, once with its
# max_concurrent_unpacks = 1 (one layer at a time, containerd's default) and once with 3
# (containerd ≥ 2.2 unpacks layers in parallel into a snapshotter that can rebase; 2.1 still one
# at a time). Releases: the containerd on PATH, then 2.2.7 and 2.3.4 from $SHARED_DIR
# (scripts/release-env.sh; reported as SKIPPED where missing). Tables on stdout, raw samples in
# $TARGET_DIR/bench/pull-<release>-<unpacks>.json.
#
# Before each run: sync, then 61 s of quiet. ext4 without a journal (this project's machines) does
# not reuse an inode freed in the last 60 s, and a new file's allocation steps over each of them:
# the previous run's teardown would slow whichever snapshotter's files land near it.
#
#   scripts/bench-pull-releases.sh [extra podshim-bench-snapshots args, e.g. --quick]
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR="${TARGET_DIR:-$PWD/target}"
SHARED_DIR="$(realpath -m "${SHARED_DIR:-$PWD/../shared}")"
bin="$TARGET_DIR/release/podshim-bench-snapshots"
[ -x "$bin" ] || { echo "bench-pull: build $bin first (make bench-pull)" >&2; exit 1; }
# shellcheck source=scripts/release-env.sh
. scripts/release-env.sh
mkdir -p "$TARGET_DIR/bench"
QUIET_SECS="${QUIET_SECS:-61}"
for release in system 2.2.7 2.3.4; do
  for unpacks in 1 3; do
    rc=0
    (
      use_release "$release" bench-pull --if-present || exit $?
      echo "## containerd $containerd_version ($(command -v containerd)), max_concurrent_unpacks $unpacks"
      sync && sleep "$QUIET_SECS"
      "$bin" --pull --unpacks "$unpacks" \
        --out "$TARGET_DIR/bench/pull-$containerd_version-$unpacks.json" "$@"
    ) || rc=$?
    case $rc in
      0) ;;
      3) break ;;
      *) echo "bench-pull: containerd $release failed (exit $rc)" >&2; exit "$rc" ;;
    esac
  done
done
