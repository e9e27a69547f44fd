#!/usr/bin/env bash
# CI setup for tests/container/: podman, debootstrap and runc from Debian, and the locally made
# base image (no container registry is reachable from CI). The test does the same when these are
# missing; running this first keeps the install out of the test's time. Needs root and apt-get;
# elsewhere it says so and the container test skips with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-container: not root or no apt-get; tests/container will skip" >&2
  exit 0
fi
missing=()
for t in podman debootstrap runc; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq podman debootstrap runc >/dev/null
fi
ENGINE=podman docker/make-base-image.sh localhost/sharelab-base:bookworm
