#!/usr/bin/env bash
# Build the lab's base image locally from a Debian mirror, with no container registry.
#
# Workshop rooms and CI machines often cannot pull python:3.11-slim. This script makes an
# equivalent base (Debian bookworm + python3 3.11 + venv + pip) with debootstrap and imports it
# as a local image, which the Dockerfile then uses via --build-arg BASE_IMAGE=<name>.
#
# Usage: docker/make-base-image.sh [IMAGE_NAME]     (default: localhost/sharelab-base:bookworm)
# Environment:
#   ENGINE   podman or docker (default: podman if installed, else docker)
#   MIRROR   Debian mirror URL (default: the one apt is configured with on this machine,
#            read from /etc/apt/sources.list and /etc/apt/sources.list.d/)
#   FORCE=1  rebuild even if the image already exists
# Needs root (debootstrap) and the debootstrap package.
set -euo pipefail

NAME="${1:-localhost/sharelab-base:bookworm}"
SUITE=bookworm
INCLUDE=python3,python3-venv,python3-pip,ca-certificates

die() { echo "error: $*" >&2; exit 1; }

if [[ -z "${ENGINE:-}" ]]; then
  if command -v podman >/dev/null 2>&1; then ENGINE=podman
  elif command -v docker >/dev/null 2>&1; then ENGINE=docker
  else die "neither podman nor docker is installed; install one (apt-get install podman)"; fi
fi

# The first mirror apt uses for $SUITE itself (not -security / -updates), from either the
# one-line format (sources.list, *.list) or the deb822 format (*.sources).
detect_mirror() {
  local f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    uri="$(sed -e 's/\[[^]]*\]//' "$f" | awk -v s="$SUITE" '$1=="deb" && $3==s {print $2; exit}')"
    [[ -n "$uri" ]] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    uri="$(grep -v '^[[:space:]]*#' "$f" | awk -v s="$SUITE" 'BEGIN{RS=""; FS="\n"}
      { uris=""; suites=""; enabled=1
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/)    { uris = $i;   sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/)  { suites = " " $i " " }
          if ($i ~ /^Enabled:[ \t]*no/) { enabled = 0 }
        }
        if (enabled && uris != "" && suites ~ (" " s " ")) { split(uris, u, /[ \t]+/); print u[1]; exit }
      }')"
    [[ -n "$uri" ]] && { echo "$uri"; return; }
  done
}

image_exists() {
  if [[ "$ENGINE" == podman ]]; then podman image exists "$1"; else docker image inspect "$1" >/dev/null 2>&1; fi
}
if [[ "${FORCE:-0}" != 1 ]] && image_exists "$NAME"; then
  echo "==> base image $NAME already exists (FORCE=1 rebuilds it)"
  exit 0
fi

[[ "$(id -u)" == 0 ]] || die "debootstrap needs root; run: sudo $0 $*"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing; install it: apt-get install debootstrap"

MIRROR="${MIRROR:-$(detect_mirror)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

ROOTFS="$(mktemp -d "${TMPDIR:-/var/tmp}/sharelab-rootfs.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT

echo "==> debootstrap $SUITE from $MIRROR into $ROOTFS (a few minutes)"
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR"

# Keep the image small: no downloaded .debs, no package lists, no docs.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
# Same apt source inside the image as the one it was made from.
echo "deb $MIRROR $SUITE main" >"$ROOTFS/etc/apt/sources.list"

echo "==> importing as $NAME with $ENGINE"
tar -C "$ROOTFS" -c . | "$ENGINE" import \
  --change 'CMD ["/bin/bash"]' \
  --change 'ENV LANG=C.UTF-8' \
  - "$NAME"
echo "==> done: $NAME"
