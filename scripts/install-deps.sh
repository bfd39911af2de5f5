#!/usr/bin/env bash
# Installs what podshim's build, demo and tests need on Debian bookworm, from Debian's registries only.
# containerd 2.x comes from the forky suite behind a low pin, so nothing else is pulled from forky
# (a plain `-t forky` would upgrade libc and the compiler runtime).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if [ ! -f /etc/apt/sources.list.d/forky.sources ]; then
  # forky comes from the mirror this machine already uses for Debian itself: the first URIs line of
  # its deb822 sources (or the first `deb` line of a one-line sources.list) that serves the main archive.
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' \
      /etc/apt/sources.list 2>/dev/null || true)
  fi
  if [ -z "$mirror" ]; then
    echo "install-deps: no Debian mirror found in /etc/apt/sources.list(.d); cannot add the forky suite" >&2
    exit 1
  fi
  cat >/etc/apt/sources.list.d/forky.sources <<SRC
Types: deb
URIs: $mirror
Suites: forky
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  cat >/etc/apt/preferences.d/forky-low <<'PIN'
Package: *
Pin: release n=forky
Pin-Priority: 50
PIN
fi

need_update=1
pkgs=(runc crun containernetworking-plugins busybox-static iproute2 iptables skopeo docker-registry
      util-linux procps psmisc kmod protobuf-compiler gcc libc6-dev shellcheck dpkg-dev criu
      btrfs-progs)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ! command -v containerd >/dev/null 2>&1 || ! containerd --version | grep -q ' 2\.'; then missing+=(containerd/forky); fi
if [ ${#missing[@]} -gt 0 ]; then
  [ "$need_update" = 1 ] && apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The shim ships linked against musl (see the Makefile's SHIM_TARGET): Rust's self-contained musl
# target, from rustup's registry. Without it the Makefile falls back to a static glibc build.
musl_target="$(uname -m)-unknown-linux-musl"
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$musl_target"; then
  rustup target add "$musl_target" || echo "install-deps: rustup target add $musl_target failed; the shim will be built against static glibc" >&2
fi
# The Debian docker-registry package starts a service on :5000 under systemd; tests start their own.
systemctl disable --now docker-registry >/dev/null 2>&1 || true
containerd --version
runc --version | head -1
