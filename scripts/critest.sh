#!/usr/bin/env bash
# `make critest`: the CRI validation suite against every handler, on the containerd on PATH, then
# 2.2.7 and 2.3.4 from $SHARED_DIR (scripts/release-env.sh; SKIPPED where missing). critest is
# cri-tools' (v1.32 or later), built by whoever runs this: the repository neither ships nor builds
# it. Each release's run goes twice: podshim's handlers exec with `runc exec` (the default), then
# with podshim-exec (`[runtime] exec_helper`). A table per run on stdout; critest's output in
# $TARGET_DIR/critest/<release>[-exec-helper]-<handler>.log.
#
#   CRITEST=/path/to/critest scripts/critest.sh [extra podshim-critest args, e.g. --focus RE]
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR="${TARGET_DIR:-$PWD/target}"
SHARED_DIR="$(realpath -m "${SHARED_DIR:-$PWD/../shared}")"
if [ -z "${CRITEST:-}" ] || [ ! -x "$CRITEST" ]; then
  echo "critest: set CRITEST to a critest binary (cri-tools v1.32 or later); this repository does not ship one" >&2
  exit 2
fi
bin="$TARGET_DIR/debug/podshim-critest"
[ -x "$bin" ] || { echo "critest: build $bin first (make critest)" >&2; exit 1; }
# shellcheck source=scripts/release-env.sh
. scripts/release-env.sh
failed=0
for release in system 2.2.7 2.3.4; do
  for mode in default exec-helper; do
    rc=0
    (
      use_release "$release" critest --if-present || exit $?
      tag="$containerd_version"
      args=()
      if [ "$mode" = exec-helper ]; then tag="$tag-exec-helper" args=(--exec-helper); fi
      "$bin" --critest "$CRITEST" --tag "$tag" "${args[@]}" "$@"
    ) || rc=$?
    case $rc in
      0) ;;
      3) break ;;
      *) echo "critest: containerd $release ($mode) had failures (exit $rc)" >&2; failed=1 ;;
    esac
  done
done
exit "$failed"
