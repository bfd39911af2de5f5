#!/usr/bin/env bash
# Runs the e2e suite against one containerd release.
#
#   scripts/e2e-release.sh [--if-present] [RELEASE] [-- extra test-runner args]
#
# RELEASE empty or "system": the containerd on PATH; X.Y.Z: that release from $SHARED_DIR
# (scripts/release-env.sh). With --if-present a missing archive is reported as skipped (a user's
# machine has no ../shared); without, it is an error.
#
# PODSHIM_E2E_SNAPSHOTTER=podsnap: every case's containerd has podshim-snapshotter as CRI's default
# snapshotter (the drop-in's recommended setup); the log is then e2e-<release>-podsnap.log.
#
# Cases that need a later release carry `needs_<major>_<minor>` at the end of their test name
# (integration/tests/e2e/main.rs): they are passed to the runner as --skip, which reports them as
# filtered out, not passed. The output is also kept in $TARGET_DIR/e2e-<release>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

if_present=0
if [ "${1:-}" = "--if-present" ]; then if_present=1; shift; fi
release="${1:-system}"
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift

TARGET_DIR="${TARGET_DIR:-$PWD/target}"
SHARED_DIR="$(realpath -m "${SHARED_DIR:-$PWD/../shared}")"
E2E_THREADS="${E2E_THREADS:-2}"
CARGO="${CARGO:-cargo}"

# shellcheck source=scripts/release-env.sh
. scripts/release-env.sh
rc=0
use_release "$release" e2e "$([ "$if_present" = 1 ] && echo --if-present)" || rc=$?
case $rc in 0) ;; 3) exit 0 ;; *) exit 1 ;; esac
version="$containerd_version" major="$containerd_major" minor="$containerd_minor"

# The test binary, run directly: parallel releases must not wait on cargo's build-directory lock.
if ! "$CARGO" test --no-run -q -p podshim-integration --test e2e; then
  echo "e2e containerd $release: building the e2e test binary failed" >&2; exit 1
fi
bin="$("$CARGO" test --no-run -q -p podshim-integration --test e2e --message-format=json 2>/dev/null \
        | grep '"kind":\["test"\]' | grep '"name":"e2e"' \
        | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then echo "e2e: building the e2e test binary failed" >&2; exit 1; fi
# It lists its tests; every needs_<M>_<m> gate above this release becomes a --skip.
skips=()
gates="$(cd integration && "$bin" --list --format terse | grep -oE 'needs_[0-9]+_[0-9]+' | sort -u || true)"
for g in $gates; do
  gm="$(echo "$g" | cut -d_ -f2)"; gn="$(echo "$g" | cut -d_ -f3)"
  if [ "$gm" -gt "$major" ] || { [ "$gm" -eq "$major" ] && [ "$gn" -gt "$minor" ]; }; then
    skips+=(--skip "$g")
  fi
done

# Cases named *shared_runc* run on runc 1.4.3 from $SHARED_DIR/runc (user namespaces need its
# id-mapped mounts): filtered out, and said so, where that archive is missing.
runc_archive="$SHARED_DIR/runc/runc-1.4.3-linux-$(release_arch).xz"
no_runc=""
if [ ! -f "$runc_archive" ]; then
  skips+=(--skip shared_runc)
  no_runc="no $runc_archive: "
fi

suffix="" setup=""
if [ "${PODSHIM_E2E_SNAPSHOTTER:-}" = podsnap ]; then
  suffix="-podsnap" setup=", podshim-snapshotter as the default snapshotter of CRI"
fi
log="$TARGET_DIR/e2e-$version$suffix.log"
mkdir -p "$TARGET_DIR"
{
  echo "=== e2e against containerd $version ($(command -v containerd))$setup"
  if [ ${#skips[@]} -gt 0 ]; then echo "=== filtered out (${no_runc}they need a later containerd or that runc): ${skips[*]}"; fi
} | tee "$log"
set +e
(cd integration && PODSHIM_E2E_CONTAINERD="$version" CARGO_MANIFEST_DIR="$PWD" \
  "$bin" --test-threads="$E2E_THREADS" "${skips[@]}" "$@") 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
set -e
echo "=== e2e against containerd $version: exit $rc (log: $log)" | tee -a "$log"
exit "$rc"
