#!/usr/bin/env bash
# Run the sharelab lab in containers: a `provider` (the Delta Sharing server) and a `lab`
# (JupyterLab) sharing one lab-home volume. Called by run-demo.sh; usable on its own.
#
# Usage: docker/lab.sh COMMAND [ENGINE]         ENGINE: docker | podman (default: whichever works)
#   build    build the image (always; the layer cache makes an unchanged rebuild quick)
#   up       build the image if missing or older than the sources, start both services,
#            print the JupyterLab URL with its token
#   down     stop and remove the containers (the volumes stay; down --volumes drops them too)
#   status   show the containers and their health
#   url      print the JupyterLab URL of the running lab
#   engine ENGINE ARGS...   run the engine with the settings this script uses (e.g. ps -a)
#
# Environment:
#   LAN=1              publish on every interface (workshop mode) instead of 127.0.0.1; the
#                      provider's public URL becomes http://<this machine's LAN address>:PORT
#   SHARELAB_PORT      host port of the provider (default 8080)
#   JUPYTER_PORT       host port of JupyterLab (default 8888)
#   JUPYTER_TOKEN      JupyterLab token (default: a new random one at each `up`)
#   SHARELAB_PUBLIC_URL  the provider URL written into profiles (default http://provider:8080,
#                      or the LAN address in workshop mode)
#   SHARELAB_IMAGE     image name (default localhost/sharelab:latest)
#   SHARELAB_NAME      prefix of the pod, containers and volumes (default sharelab)
#   BASE_IMAGE         base image for the build (default: localhost/sharelab-base:bookworm when
#                      it exists, else python:3.11-slim; see docker/make-base-image.sh)
#   NO_CACHE=1         build without the layer cache (build / up)
#   PODMAN_RUNTIME     OCI runtime for podman when the host needs the compat settings below
#                      (default: runc when installed); SHARELAB_PODMAN_COMPAT=1/0 forces them
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
IMAGE="${SHARELAB_IMAGE:-localhost/sharelab:latest}"
NAME="${SHARELAB_NAME:-sharelab}"
PROVIDER_PORT="${SHARELAB_PORT:-8080}"
LAB_PORT="${JUPYTER_PORT:-8888}"
LOCAL_BASE=localhost/sharelab-base:bookworm
DEFAULT_BASE=python:3.11-slim
SOURCE_LABEL=org.sharelab.source-hash

die() { echo "error: $*" >&2; exit 1; }
say() { echo "==> $*"; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
ENGINE=""
DOWN_VOLUMES=0
ENGINE_ARGS=()
if [[ "$cmd" == engine ]]; then  # engine ENGINE ARGS...: the engine with this script's settings
  ENGINE="${1:-}"
  [[ "$ENGINE" == docker || "$ENGINE" == podman ]] || die "usage: docker/lab.sh engine docker|podman ARGS..."
  shift
  ENGINE_ARGS=("$@")
  set --
fi
for a in "$@"; do
  case "$a" in
    docker|podman) ENGINE="$a" ;;
    --volumes|-v) DOWN_VOLUMES=1 ;;
    *) die "unknown argument '$a' (see docker/lab.sh --help)" ;;
  esac
done
case "$cmd" in
  -h|--help|help|"") usage; exit 0 ;;
esac

if [[ -z "$ENGINE" ]]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then ENGINE=docker
  elif command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then ENGINE=podman
  else die "no container engine found: install Docker or podman, or run the lab locally (./run-demo.sh --local)"; fi
fi

# Podman's defaults fail on some hosts: rootful podman raises RLIMIT_NOFILE to 1048576, beyond a
# lower hard limit, and crun cannot run under hybrid cgroups (v1 + v2). There, point podman at a
# small containers.conf (default ulimits the host allows, runc); it also covers a pod's infra
# container, which takes no --ulimit flags. SHARELAB_PODMAN_COMPAT=1/0 forces it on/off.
podman_compat() {
  [[ -n "${CONTAINERS_CONF:-}" ]] && return 0
  local hard_nofile compat="${SHARELAB_PODMAN_COMPAT:-}"
  hard_nofile="$(ulimit -Hn)"
  if [[ -z "$compat" ]]; then
    compat=0
    [[ "$hard_nofile" != unlimited && "$hard_nofile" -lt 1048576 ]] && compat=1
    [[ -d /sys/fs/cgroup/unified ]] && compat=1
  fi
  [[ "$compat" == 1 ]] || return 0
  [[ "$hard_nofile" == unlimited || "$hard_nofile" -gt 1048576 ]] && hard_nofile=1048576
  local conf runtime="${PODMAN_RUNTIME:-}"
  conf="${TMPDIR:-/tmp}/sharelab-containers-$(id -u).conf"
  [[ -z "$runtime" ]] && command -v runc >/dev/null 2>&1 && runtime=runc
  {
    echo "# written by sharelab docker/lab.sh: podman defaults this host can run"
    echo "[containers]"
    echo "default_ulimits = [\"nofile=$hard_nofile:$hard_nofile\", \"nproc=4096:4096\"]"
    if [[ -n "$runtime" ]]; then echo "[engine]"; echo "runtime = \"$runtime\""; fi
  } >"$conf"
  export CONTAINERS_CONF="$conf"
  if [[ -z "$runtime" && -d /sys/fs/cgroup/unified ]]; then
    echo "warning: hybrid cgroups and no runc: if containers fail to start, install runc" >&2
  fi
}
E=("$ENGINE")
[[ "$ENGINE" == podman ]] && podman_compat
eng() { "${E[@]}" "$@"; }
# Without systemd (inside containers, on CI) podman cannot schedule healthcheck timers and says
# so at every start; the checks still run on demand (podman healthcheck run). Drop that noise,
# keep everything else, and the whole error output when the command fails.
eng_quiet() {
  local err rc=0
  err="$(mktemp)"
  eng "$@" 2>"$err" || rc=$?
  if ((rc == 0)); then grep -v 'unable to get systemd connection' "$err" >&2 || true; else cat "$err" >&2; fi
  rm -f "$err"
  return "$rc"
}

image_exists() {
  if [[ "$ENGINE" == podman ]]; then eng image exists "$1"; else eng image inspect "$1" >/dev/null 2>&1; fi
}

# A hash of the files the image is built from, stored as a label, so `up` rebuilds after a
# `git pull` and reuses the image otherwise.
source_hash() {
  if command -v git >/dev/null 2>&1 && git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z -co --exclude-standard \
      | grep -zv -e '^lab-home/' -e '^runs/' -e '^\.venv/' \
      | sort -z | xargs -0 sha256sum 2>/dev/null | sha256sum | cut -c1-16)
  else
    echo unknown
  fi
}

pick_base() {
  if [[ -n "${BASE_IMAGE:-}" ]]; then echo "$BASE_IMAGE"; return; fi
  if image_exists "$LOCAL_BASE"; then echo "$LOCAL_BASE"; return; fi
  if image_exists "$DEFAULT_BASE" || eng pull -q "$DEFAULT_BASE" >/dev/null 2>&1; then
    echo "$DEFAULT_BASE"; return
  fi
  # No registry: make the base from the Debian mirror when we can, else explain how.
  if [[ "$(id -u)" == 0 ]] && command -v debootstrap >/dev/null 2>&1; then
    say "cannot pull $DEFAULT_BASE (no registry?); making $LOCAL_BASE with debootstrap" >&2
    ENGINE="$ENGINE" "$HERE/make-base-image.sh" "$LOCAL_BASE" >&2
    echo "$LOCAL_BASE"; return
  fi
  die "cannot pull $DEFAULT_BASE (no container registry?). Make a base image from a Debian mirror:
  sudo apt-get install debootstrap && sudo docker/make-base-image.sh
or load one (docker/README.md, offline route), or run the lab locally: ./run-demo.sh --local"
}

build() {
  local base hash flags=()
  base="$(pick_base)"
  hash="$(source_hash)"
  if [[ "$ENGINE" == podman ]]; then
    # --format docker keeps the HEALTHCHECK; host network and read-only mounts of this
    # machine's pip configuration, CA bundle and local package indexes let pip inside the build
    # reach the same registries as pip outside it (nothing of them lands in the image).
    flags+=(--format docker --network host)
    local p
    for p in /etc/pip.conf /etc/xdg/pip /opt/pypi /opt/pypi-more /opt/wheels \
             /etc/ssl/certs/ca-certificates.crt; do
      [[ -e "$p" ]] && flags+=(-v "$p:$p:ro")
    done
    [[ -d "${HOME:-/root}/.config/pip" ]] && flags+=(-v "${HOME:-/root}/.config/pip:/root/.config/pip:ro")
  fi
  [[ "${NO_CACHE:-0}" == 1 ]] && flags+=(--no-cache)
  say "building $IMAGE from $base with $ENGINE"
  local t0=$SECONDS
  eng build "${flags[@]}" --build-arg "BASE_IMAGE=$base" --label "$SOURCE_LABEL=$hash" \
    -f "$HERE/Dockerfile" -t "$IMAGE" "$ROOT"
  say "built $IMAGE in $((SECONDS - t0))s"
}

ensure_image() {
  if ! image_exists "$IMAGE"; then build; return; fi
  local have want
  have="$(eng image inspect --format "{{ index .Config.Labels \"$SOURCE_LABEL\" }}" "$IMAGE" 2>/dev/null || true)"
  want="$(source_hash)"
  if [[ "$want" != unknown && "$have" != "$want" ]]; then
    say "the sources changed since $IMAGE was built; rebuilding"
    # A separate process, so that a failed rebuild (offline room, image loaded from a file)
    # falls back to the image at hand instead of stopping the lab.
    if ! "$HERE/lab.sh" build "$ENGINE"; then
      echo "warning: the rebuild failed; starting the existing $IMAGE (docker/README.md, offline route)" >&2
    fi
  fi
}

lan_address() {
  local ip
  ip="$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)"
  [[ -z "$ip" ]] && ip="$(hostname -I 2>/dev/null | awk '{print $1}')"
  echo "${ip:-127.0.0.1}"
}

container_token() {
  eng inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$NAME-lab" 2>/dev/null \
    | sed -n 's/^JUPYTER_TOKEN=//p' | head -1
}

print_url() {
  local token host=127.0.0.1
  token="$(container_token)"
  [[ -n "$token" ]] || die "the lab container $NAME-lab is not running; start it: docker/lab.sh up"
  [[ "${LAN:-0}" == 1 ]] && host="$(lan_address)"
  echo "JupyterLab: http://$host:$LAB_PORT/lab?token=$token"
}

# Wait until a container's healthcheck passes; show its log and fail when it exits or stalls.
wait_healthy() {
  local c="$1" deadline=$((SECONDS + ${2:-180})) state
  while ((SECONDS < deadline)); do
    state="$(eng inspect --format '{{.State.Status}}' "$c" 2>/dev/null || echo missing)"
    if [[ "$state" != running ]]; then
      eng logs "$c" 2>&1 | tail -30 >&2 || true
      die "container $c is $state"
    fi
    if eng exec "$c" sharelab-entrypoint health >/dev/null 2>&1; then
      # Record the passing check in the container's health status too.
      if [[ "$ENGINE" == podman ]]; then eng healthcheck run "$c" >/dev/null 2>&1 || true; fi
      return 0
    fi
    sleep 1
  done
  eng logs "$c" 2>&1 | tail -30 >&2 || true
  die "container $c did not become healthy"
}

up() {
  local bind=127.0.0.1 public="${SHARELAB_PUBLIC_URL:-}"
  if [[ "${LAN:-0}" == 1 ]]; then
    bind=0.0.0.0
    [[ -z "$public" ]] && public="http://$(lan_address):$PROVIDER_PORT"
    echo "warning: workshop mode: the provider and JupyterLab are published on every interface;" \
         "anyone on this network who has the token can use the lab" >&2
  fi
  public="${public:-http://provider:8080}"
  export JUPYTER_TOKEN="${JUPYTER_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
  ensure_image

  if [[ "$ENGINE" == docker ]]; then
    local compose=(docker compose)
    docker compose version >/dev/null 2>&1 || compose=(docker-compose)
    command -v "${compose[0]}" >/dev/null 2>&1 || die "docker compose is missing; install the compose plugin"
    SHARELAB_BIND="$bind" SHARELAB_PUBLIC_URL="$public" SHARELAB_IMAGE="$IMAGE" \
      SHARELAB_PORT="$PROVIDER_PORT" JUPYTER_PORT="$LAB_PORT" \
      "${compose[@]}" -f "$HERE/compose.yaml" -p "$NAME" up -d --no-build
    NAME_PROVIDER="$("${compose[@]}" -f "$HERE/compose.yaml" -p "$NAME" ps -q provider)"
    NAME_LAB="$("${compose[@]}" -f "$HERE/compose.yaml" -p "$NAME" ps -q lab)"
    wait_healthy "$NAME_PROVIDER"
    wait_healthy "$NAME_LAB"
    echo "JupyterLab: http://$([[ $bind == 0.0.0.0 ]] && lan_address || echo 127.0.0.1):$LAB_PORT/lab?token=$JUPYTER_TOKEN"
    return
  fi

  # Podman: a pod is the compose project (shared network and pid namespace, so the lab sees the
  # provider at http://provider:8080 and its pid in server/server.json).
  if eng pod exists "$NAME" 2>/dev/null; then
    if [[ "$(eng pod inspect --format '{{.State}}' "$NAME")" == Running ]] && [[ -n "$(container_token)" ]]; then
      say "the lab is already running (docker/lab.sh down stops it)"
      print_url
      return
    fi
    eng pod rm -f "$NAME" >/dev/null
  fi
  local v
  for v in "$NAME-home" "$NAME-work"; do
    eng volume exists "$v" || eng volume create "$v" >/dev/null
  done
  # Loopback (default): a pod network with the two ports published on 127.0.0.1. Workshop mode:
  # the host's network, so the services listen on every interface at the host ports and the lab
  # reaches the provider at the same LAN address as the attendees (a container usually cannot
  # reach its own host's published ports through the LAN address).
  local net=() ports=(-e "SHARELAB_PORT=8080" -e "JUPYTER_PORT=8888")
  if [[ "$bind" == 0.0.0.0 ]]; then
    net=(--network host)
    ports=(-e "SHARELAB_PORT=$PROVIDER_PORT" -e "JUPYTER_PORT=$LAB_PORT")
  else
    net=(-p "$bind:$PROVIDER_PORT:8080" -p "$bind:$LAB_PORT:8888")
  fi
  say "starting pod $NAME (provider on $bind:$PROVIDER_PORT, JupyterLab on $bind:$LAB_PORT)"
  eng pod create --name "$NAME" --share net,ipc,uts,pid --add-host provider:127.0.0.1 \
    "${net[@]}" >/dev/null
  eng_quiet run -d --pod "$NAME" --name "$NAME-provider" "${ports[@]}" \
    -v "$NAME-home:/lab-home" -e "SHARELAB_PUBLIC_URL=$public" "$IMAGE" provider >/dev/null
  wait_healthy "$NAME-provider"
  eng_quiet run -d --pod "$NAME" --name "$NAME-lab" "${ports[@]}" \
    -v "$NAME-home:/lab-home" -v "$NAME-work:/home/lab/work" \
    -e JUPYTER_TOKEN -e "JUPYTER_HOST_PORT=$LAB_PORT" -e "SHARELAB_PUBLIC_URL=$public" \
    "$IMAGE" lab >/dev/null
  wait_healthy "$NAME-lab"
  say "provider: http://127.0.0.1:$PROVIDER_PORT (inside the lab: $public)"
  print_url
}

down() {
  if [[ "$ENGINE" == docker ]]; then
    local compose=(docker compose) flags=()
    docker compose version >/dev/null 2>&1 || compose=(docker-compose)
    [[ "$DOWN_VOLUMES" == 1 ]] && flags+=(--volumes)
    "${compose[@]}" -f "$HERE/compose.yaml" -p "$NAME" down "${flags[@]}"
    return
  fi
  if eng pod exists "$NAME" 2>/dev/null; then
    say "stopping pod $NAME"
    eng_quiet pod rm -f "$NAME" >/dev/null
  fi
  if [[ "$DOWN_VOLUMES" == 1 ]]; then
    local v
    for v in "$NAME-home" "$NAME-work"; do
      eng volume exists "$v" 2>/dev/null && eng volume rm "$v" >/dev/null && say "removed volume $v"
    done
  fi
  return 0
}

status() {
  if [[ "$ENGINE" == docker ]]; then
    docker compose -f "$HERE/compose.yaml" -p "$NAME" ps
  else
    eng ps -a --filter "pod=$NAME" --format '{{.Names}}\t{{.Status}}\t{{.Ports}}'
  fi
}

case "$cmd" in
  build) build ;;
  up) up ;;
  down|stop) down ;;
  status) status ;;
  url) print_url ;;
  engine) exec "${E[@]}" "${ENGINE_ARGS[@]}" ;;
  *) die "unknown command '$cmd' (see docker/lab.sh --help)" ;;
esac
