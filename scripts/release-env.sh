# shellcheck shell=bash
# Sourced by the scripts that run against one containerd release (e2e-release.sh,
# bench-pull-releases.sh); needs TARGET_DIR and SHARED_DIR.
#
#   use_release RELEASE what [--if-present]
#
# RELEASE "system": the containerd on PATH (Debian's 2.1.9 on this project's machines).
# RELEASE X.Y.Z: containerd-X.Y.Z-linux-<arch>.tar.xz from $SHARED_DIR/containerd (built unmodified
# from containerd's release tag: containerd, ctr and its runc shim), unpacked once under
# $TARGET_DIR/containerd-X.Y.Z and put first on PATH. `what` names the caller in messages.
# Sets containerd_version (X.Y.Z of the containerd now first on PATH), containerd_major and
# containerd_minor. A missing archive: with --if-present, prints SKIPPED and returns 3; without,
# returns 1, as does any other failure.

# The architecture in the shared archives' names.
release_arch() {
  case "$(uname -m)" in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *) uname -m ;;
  esac
}

use_release() {
  local release="$1" what="$2" if_present="${3:-}" arch archive dir stamp want line
  arch="$(release_arch)"
  if [ "$release" != "system" ]; then
    archive="$SHARED_DIR/containerd/containerd-$release-linux-$arch.tar.xz"
    if [ ! -f "$archive" ]; then
      local msg="$what containerd $release: no archive $archive (the project's shared releases are not on this machine)"
      if [ "$if_present" = --if-present ]; then echo "SKIPPED: $msg" >&2; return 3; fi
      echo "$msg" >&2; return 1
    fi
    dir="$TARGET_DIR/containerd-$release"
    stamp="$dir/.unpacked-from"
    want="$(stat -c '%s %Y' "$archive") $archive"
    if [ ! -x "$dir/bin/containerd" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
      rm -rf "$dir" && mkdir -p "$dir"
      tar -xJf "$archive" -C "$dir" || return 1
      echo "$want" >"$stamp"
    fi
    export PATH="$dir/bin:$PATH"
  fi
  line="$(containerd --version)" || return 1
  containerd_version="$(echo "$line" | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1 || true)"
  if [ -z "$containerd_version" ]; then echo "$what: cannot read a release from: $line" >&2; return 1; fi
  if [ "$release" != "system" ] && [ "$containerd_version" != "$release" ]; then
    echo "$what: asked for containerd $release, $(command -v containerd) is $containerd_version" >&2; return 1
  fi
  # shellcheck disable=SC2034 # read by the sourcing script
  containerd_major="${containerd_version%%.*}"
  local rest="${containerd_version#*.}"
  # shellcheck disable=SC2034
  containerd_minor="${rest%%.*}"
}
