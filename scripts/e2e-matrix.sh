#!/usr/bin/env bash
# Runs the e2e suite against every containerd release this machine has: the containerd on PATH
# ("system", Debian's 2.1.9) and each archive in $SHARED_DIR/containerd (scripts/e2e-release.sh);
# then once more on the containerd on PATH with podshim-snapshotter as CRI's default snapshotter
# for every handler ("system-podsnap": the README's recommended snapshotter setup).
# E2E_MATRIX_JOBS releases run at once (each with E2E_THREADS cases at once); a release's output
# goes to $TARGET_DIR/e2e-matrix-<release>.out and is printed whole when it ends. Exits non-zero
# if any release failed; a release whose archive is missing is reported as skipped.
#
#   scripts/e2e-matrix.sh [-- extra test-runner args, e.g. a name filter]
set -uo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--" ] && shift

TARGET_DIR="${TARGET_DIR:-$PWD/target}"
SHARED_DIR="$(realpath -m "${SHARED_DIR:-$PWD/../shared}")"
JOBS="${E2E_MATRIX_JOBS:-1}"
export TARGET_DIR SHARED_DIR

releases=(system)
if [ -d "$SHARED_DIR/containerd" ]; then
  for a in "$SHARED_DIR"/containerd/containerd-*-linux-*.tar.xz; do
    [ -e "$a" ] || continue
    r="$(basename "$a")"; r="${r#containerd-}"; r="${r%%-linux-*}"
    releases+=("$r")
  done
fi
if [ ${#releases[@]} -eq 1 ]; then
  echo "e2e-matrix: SKIPPED every release but the containerd on PATH: no $SHARED_DIR/containerd" \
       "(the project's archives of containerd 2.2 and 2.3; a user's machine has none)" >&2
fi
releases+=(system-podsnap)
echo "e2e-matrix: releases ${releases[*]}, $JOBS at a time, ${E2E_THREADS:-2} cases at a time each"

mkdir -p "$TARGET_DIR"
# The test binary is built once, before the runs start (they would race for cargo's lock).
if ! "${CARGO:-cargo}" test --no-run -q -p podshim-integration --test e2e >/dev/null; then
  echo "e2e-matrix: building the e2e test binary failed" >&2; exit 1
fi

declare -A rc
start=$(date +%s)
running=()
finish_one() {
  local pid=$1 r=$2
  wait "$pid"; rc[$r]=$?
  cat "$TARGET_DIR/e2e-matrix-$r.out"
  echo "e2e-matrix: containerd $r finished with exit ${rc[$r]} after $(( $(date +%s) - start )) s"
}
declare -A pid_of
for r in "${releases[@]}"; do
  while [ ${#running[@]} -ge "$JOBS" ]; do
    first=${running[0]}; running=("${running[@]:1}")
    finish_one "${pid_of[$first]}" "$first"
  done
  case "$r" in
    system-podsnap) PODSHIM_E2E_SNAPSHOTTER=podsnap bash scripts/e2e-release.sh system -- "$@" ;;
    *) bash scripts/e2e-release.sh --if-present "$r" -- "$@" ;;
  esac >"$TARGET_DIR/e2e-matrix-$r.out" 2>&1 &
  pid_of[$r]=$!
  running+=("$r")
done
for r in "${running[@]}"; do finish_one "${pid_of[$r]}" "$r"; done

status=0
echo "e2e-matrix summary ($(( $(date +%s) - start )) s):"
for r in "${releases[@]}"; do
  line="$(grep -E '^test result:' "$TARGET_DIR/e2e-matrix-$r.out" | tail -1)"
  skipped="$(grep -E '^SKIPPED:' "$TARGET_DIR/e2e-matrix-$r.out" | head -1)"
  echo "  containerd $r: exit ${rc[$r]} ${skipped:-$line}"
  [ "${rc[$r]}" -eq 0 ] || status=1
done
exit $status
