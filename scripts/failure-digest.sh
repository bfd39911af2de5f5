#!/usr/bin/env bash
# What each failed e2e case said, first lines only, and the processes of its containerd when
# it failed, from the matrix's per-release outputs:
# `make test` prints it last, where a long log's tail still shows it.
#
#   scripts/failure-digest.sh   (reads $TARGET_DIR/e2e-matrix-*.out)
set -uo pipefail
TARGET_DIR="${TARGET_DIR:-$(dirname "$0")/../target}"
for f in "$TARGET_DIR"/e2e-matrix-*.out; do
  [ -e "$f" ] || continue
  r="$(basename "$f" .out)"; r="${r#e2e-matrix-}"
  # The case's message (8 lines), then the processes of its containerd when it failed (24).
  awk -v r="$r" '
    /^---- .* stdout ----$/ { name = $2; n = 0; procs = -1; print "e2e " r ": " name; next }
    name != "" && /^--- processes / { procs = 0; print "    processes when it failed:"; next }
    name != "" && /^--- containerd / { name = ""; next }
    name != "" && /^(failures:|test result:)/ { name = ""; next }
    name != "" && procs >= 0 { if (procs < 24 && NF > 0) print "      " substr($0, 1, 200); procs++; next }
    name != "" && n < 8 && NF > 0 { print "    " substr($0, 1, 300); n++ }
  ' "$f"
done
