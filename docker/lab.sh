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
#   reset NAME...  restore your copy of a notebook or lab exercise in the running lab as shipped
#            (e.g. reset lab1, reset 03): `sharelab jupyter reset` in the lab container
#   running  exit 0 when the lab container runs (run-demo.sh picks the route with it)
#   engine ENGINE ARGS...   run the engine with the settings this script uses (e.g. ps -a)
#
# Environment:
#   LAN=1              workshop mode: the provider is published on every interface, over HTTPS
#                      (a lab CA made once in the lab-home volume; its SHA-256 fingerprint is
#                      printed for attendees to check) at https://<this machine's LAN address>:PORT;
#                      plain HTTP is not served. JupyterLab stays on 127.0.0.1.
#   SHARELAB_TLS=0     workshop mode over plain HTTP (not recommended: tokens cross the network in clear)
#   SHARELAB_NO_REBUILD=1  start the image at hand even when the sources are newer (no rebuild)
#   SHARELAB_PORT      host port of the provider (default 8080)
#   JUPYTER_PORT       host port of JupyterLab (default 8888)
#   JUPYTER_TOKEN      JupyterLab token (default: a new random one at each `up`)
#   SHARELAB_PUBLIC_URL  the provider URL written into profiles (default http://provider:8080,
#                      or https://<LAN address>:PORT in workshop mode)
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
RESET_NAMES=()
for a in "$@"; do
  case "$a" in
    docker|podman) ENGINE="$a" ;;
    --volumes|-v) DOWN_VOLUMES=1 ;;
    *) [[ "$cmd" == reset ]] || die "unknown argument '$a' (see docker/lab.sh --help)"
       RESET_NAMES+=("$a") ;;
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
  [[ "${SHARELAB_NO_REBUILD:-0}" == 1 ]] && return 0
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

# JupyterLab is on 127.0.0.1 in every mode (workshop mode publishes only the provider).
print_url() {
  local token
  token="$(container_token)"
  [[ -n "$token" ]] || die "the lab container $NAME-lab is not running; start it: docker/lab.sh up"
  echo "JupyterLab: http://127.0.0.1:$LAB_PORT/lab?token=$token"
}

lab_running() {
  [[ "$(eng inspect --format '{{.State.Status}}' "$NAME-lab" 2>/dev/null || true)" == running ]]
}

# The learner's copies live in the work volume: restore one in the running lab container.
reset_copy() {
  [[ ${#RESET_NAMES[@]} -gt 0 ]] || die "name the copy to restore, e.g. docker/lab.sh reset lab1"
  lab_running || die "the lab container $NAME-lab is not running; start it: ./run-demo.sh (or docker/lab.sh up)"
  eng_quiet exec "$NAME-lab" sharelab jupyter reset "${RESET_NAMES[@]}"
}

# The lab CA's fingerprint, for the instructor to read out (workshop mode over TLS).
print_fingerprint() {
  local line
  line="$(eng exec "$1" sharelab status 2>/dev/null | grep -m1 'fingerprint' || true)"
  [[ -n "$line" ]] && echo "$line (attendees check it before trusting the lab CA)"
  return 0
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
  local bind=127.0.0.1 public="${SHARELAB_PUBLIC_URL:-}" tls=0 scheme=http
  if [[ "${LAN:-0}" == 1 ]]; then
    bind=0.0.0.0
    if [[ "${SHARELAB_TLS:-1}" != 0 ]]; then tls=1; scheme=https; fi
    [[ -z "$public" ]] && public="$scheme://$(lan_address):$PROVIDER_PORT"
    if [[ "$tls" == 1 ]]; then
      echo "note: workshop mode: the provider is published on every interface over HTTPS only;" \
           "JupyterLab stays on 127.0.0.1" >&2
    else
      echo "warning: workshop mode with SHARELAB_TLS=0: the provider serves plain HTTP on every" \
           "interface (tokens and links cross the network in clear); JupyterLab stays on 127.0.0.1" >&2
    fi
  fi
  public="${public:-http://provider:8080}"
  local provider_url="http://127.0.0.1:$PROVIDER_PORT"
  [[ "$tls" == 1 ]] && provider_url="https://127.0.0.1:$PROVIDER_PORT"
  export JUPYTER_TOKEN="${JUPYTER_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
  ensure_image

  if [[ "$ENGINE" == docker ]]; then
    local compose=(docker compose)
    docker compose version >/dev/null 2>&1 || compose=(docker-compose)
    command -v "${compose[0]}" >/dev/null 2>&1 || die "docker compose is missing; install the compose plugin"
    SHARELAB_NAME="$NAME" SHARELAB_BIND="$bind" SHARELAB_PUBLIC_URL="$public" SHARELAB_IMAGE="$IMAGE" SHARELAB_TLS="$tls" \
      SHARELAB_PORT="$PROVIDER_PORT" JUPYTER_PORT="$LAB_PORT" \
      "${compose[@]}" -f "$HERE/compose.yaml" -p "$NAME" up -d --no-build
    NAME_PROVIDER="$("${compose[@]}" -f "$HERE/compose.yaml" -p "$NAME" ps -q provider)"
    NAME_LAB="$("${compose[@]}" -f "$HERE/compose.yaml" -p "$NAME" ps -q lab)"
    wait_healthy "$NAME_PROVIDER"
    wait_healthy "$NAME_LAB"
    say "provider: $provider_url (profiles: $public)"
    [[ "$tls" == 1 ]] && print_fingerprint "$NAME_PROVIDER"
    echo "JupyterLab: http://127.0.0.1:$LAB_PORT/lab?token=$JUPYTER_TOKEN"
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
  # the host's network, so the provider listens on every interface at the host port and the lab
  # reaches it at the same LAN address as the attendees (a container usually cannot reach its own
  # host's published ports through the LAN address); JupyterLab listens on 127.0.0.1 only.
  local net=() ports=(-e "SHARELAB_PORT=8080" -e "JUPYTER_PORT=8888")
  local mode=(-e "SHARELAB_BIND=$bind" -e "SHARELAB_TLS=$tls")
  if [[ "$bind" == 0.0.0.0 ]]; then
    net=(--network host)
    ports=(-e "SHARELAB_PORT=$PROVIDER_PORT" -e "JUPYTER_PORT=$LAB_PORT" -e "JUPYTER_IP=127.0.0.1")
  else
    net=(-p "$bind:$PROVIDER_PORT:8080" -p "$bind:$LAB_PORT:8888")
  fi
  say "starting pod $NAME (provider on $bind:$PROVIDER_PORT, JupyterLab on 127.0.0.1:$LAB_PORT)"
  eng pod create --name "$NAME" --share net,ipc,uts,pid --add-host provider:127.0.0.1 \
    "${net[@]}" >/dev/null
  eng_quiet run -d --pod "$NAME" --name "$NAME-provider" "${ports[@]}" "${mode[@]}" \
    -v "$NAME-home:/lab-home" -e "SHARELAB_PUBLIC_URL=$public" "$IMAGE" provider >/dev/null
  wait_healthy "$NAME-provider"
  eng_quiet run -d --pod "$NAME" --name "$NAME-lab" "${ports[@]}" "${mode[@]}" \
    -v "$NAME-home:/lab-home" -v "$NAME-work:/home/lab/work" \
    -e JUPYTER_TOKEN -e "JUPYTER_HOST_PORT=$LAB_PORT" -e "SHARELAB_PUBLIC_URL=$public" \
    "$IMAGE" lab >/dev/null
  wait_healthy "$NAME-lab"
  say "provider: $provider_url (profiles and the lab use $public)"
  [[ "$tls" == 1 ]] && print_fingerprint "$NAME-provider"
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
  reset) reset_copy ;;
  running) lab_running ;;
  engine) exec "${E[@]}" "${ENGINE_ARGS[@]}" ;;
  *) die "unknown command '$cmd' (see docker/lab.sh --help)" ;;
esac
