#!/usr/bin/env bash
# sharelab: one command to set up and run the offline Delta Sharing teaching lab.
# Usage: ./run-demo.sh [open|workshop|batch|test|stop|status|reset NAME|--help] [options]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
export SHARELAB_HOME="${SHARELAB_HOME:-$ROOT/lab-home}"

usage() {
  cat <<'EOF'
sharelab: an offline Delta Sharing teaching lab.

Usage: ./run-demo.sh [COMMAND] [OPTIONS]

Commands:
  (none) | open   Set up what is missing and open the lab: in the Docker image when a
                  Docker or podman engine is available (--local forces the virtual
                  environment), otherwise in .venv/. Starts the provider server and
                  JupyterLab on 127.0.0.1 with token auth and prints the URL.
                  --lan: workshop mode (instructor only): the provider listens on every
                  interface over HTTPS (a lab CA made once per lab home; its SHA-256
                  fingerprint is printed for attendees to check; SHARELAB_TLS=0 for plain
                  HTTP); JupyterLab stays on 127.0.0.1.
  workshop        The hub route (root): the provider over TLS on every interface, a
                  JupyterHub over TLS on HUB_PORT (default 8000) with one OS user and
                  JupyterLab per attendee (idle servers culled after an hour; options of
                  `sharelab workshop hub start` may follow), and the instructor's JupyterLab
                  on a root-only unix socket, no TCP port (it prints the ssh -L line that
                  reaches it). Then `sharelab workshop hub add NAME...` prints each
                  attendee's join code; `sharelab workshop grade` grades their labs in place.
  batch           Execute every notebook and lab solution in order with papermill and
                  write the executed notebooks plus summary.html to runs/<timestamp>/.
                  Options are passed on: -p NAME VALUE (e.g. -p scale medium -p seed 7),
                  -f params.yaml, --only PATTERN, --out DIR.
  test            Create .venv/ if missing and run the whole test suite, including the
                  static checks of helpers/ (ruff check, ruff format --check, mypy:
                  tests/test_static.py). pytest args may follow, e.g.
                  ./run-demo.sh test -k catalog.
  stop            Stop the provider server and JupyterLab (or the containers).
  status          Show what is running: the lab's containers and the local processes.
  reset NAME      Restore your copy of a notebook or lab exercise as shipped, e.g.
                  ./run-demo.sh reset lab1 (or 03). You work on copies in ./work/
                  (SHARELAB_WORK), made on the first start; the originals are never edited.
                  When the container lab runs, the copy in its work volume is restored.
  --help          This text.

Environment: SHARELAB_HOME (default: ./lab-home) holds the catalog, the Delta tables,
the server's pid/log files and the recipients' profiles.
EOF
}

# Create or refresh .venv/ when pyproject.toml or constraints.txt changed.
ensure_venv() {
  local stamp="$VENV/.sharelab-stamp" want
  want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$PY" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  local base="${PYTHON:-python3}"
  if ! "$base" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "error: Python >= 3.11 is needed (found: $("$base" --version 2>&1 || echo none)); set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  if [[ ! -x "$PY" ]]; then
    echo "==> creating $VENV"
    "$base" -m venv "$VENV"
  fi
  echo "==> installing sharelab and its pinned dependencies into .venv/ (first run takes a few minutes)"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet -c "$ROOT/constraints.txt" -e "$ROOT[test]"
  "$PY" -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
  echo "$want" >"$stamp"
}

# The hub route's extra pieces: JupyterHub in .venv, the proxy from npm in hub/, and .hub-venv, the
# attendees' environment on a Python every OS user can run (.venv's may live under root's home).
ensure_hub() {
  "$PY" -m pip install --quiet -c "$ROOT/constraints.txt" -e "$ROOT[hub]"
  if [[ ! -x "$ROOT/hub/node_modules/.bin/configurable-http-proxy" ]]; then
    command -v npm >/dev/null 2>&1 || { echo "error: npm is needed for the hub's proxy (apt-get install npm)" >&2; exit 1; }
    npm install --prefix "$ROOT/hub" --no-audit --no-fund --silent
  fi
  local hv="$ROOT/.hub-venv" want
  want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
  if [[ ! -f "$hv/.sharelab-stamp" || "$(cat "$hv/.sharelab-stamp")" != "$want" ]]; then
    local base="${HUB_PYTHON:-/usr/bin/python3}"
    echo "==> making $hv for the attendees' servers (from $base)"
    "$base" -m venv "$hv"
    "$hv/bin/pip" install --quiet -c "$ROOT/constraints.txt" -e "$ROOT[hub]"
    echo "$want" >"$hv/.sharelab-stamp"
  fi
}

engine() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; return; fi
  if command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then echo podman; return; fi
  echo ""
}

open_local() {
  ensure_venv
  local host=127.0.0.1 public=() tls=()
  if [[ "${LAN:-0}" == 1 ]]; then
    # workshop mode: only the provider listens on every interface, over TLS (a lab CA made once per
    # lab home; its fingerprint is printed), and hands out https profiles with the LAN address.
    # The instructor's JupyterLab (a provider kernel, terminals) stays on 127.0.0.1.
    host=0.0.0.0
    local ip scheme=https
    [[ "${SHARELAB_TLS:-1}" == 0 ]] && scheme=http || tls=(--tls)
    ip="$(hostname -I 2>/dev/null | awk '{print $1}')"
    [[ -n "$ip" ]] && public=(--public-url "$scheme://$ip:${SHARELAB_PORT:-8080}")
  fi
  "$PY" -m helpers start --host "$host" ${SHARELAB_PORT:+--port "$SHARELAB_PORT"} "${public[@]}" "${tls[@]}"
  # JupyterLab opens on the learner's copies (./work or SHARELAB_WORK, made when missing)
  "$PY" -m helpers jupyter start --host 127.0.0.1 ${JUPYTER_PORT:+--port "$JUPYTER_PORT"}
}

cmd="${1:-open}"
case "$cmd" in
  --local|--lan) cmd=open ;;  # options of the default command
  *) [[ $# -gt 0 ]] && shift ;;
esac

# PostgreSQL, nginx and Chromium from Debian's packages for the catalog-backend, replica and browser tests: installed
# on root machines with apt-get when missing; elsewhere those tests skip and say why.
ensure_test_services() {
  local need=()
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
  [[ -x /usr/bin/chromium ]] || need+=(chromium)  # tests/browser: Playwright drives Debian's Chromium
  if [[ ${#need[@]} -gt 0 && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing ${need[*]} for the tests (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${need[@]}" >/dev/null 2>&1; } \
      || echo "could not install ${need[*]}: those tests will skip" >&2
  fi
  # the hub route's pieces for tests/workshop/test_hub.py (it makes OS users: root only)
  if [[ "$(id -u)" == 0 ]] && command -v npm >/dev/null; then
    ensure_hub || echo "could not set up the hub route: the hub tests will skip" >&2
  fi
}

case "$cmd" in
  -h|--help|help) usage ;;
  open)
    LOCAL=0; LAN=0; rest=()
    for a in "$@"; do
      case "$a" in
        --local) LOCAL=1 ;;
        --lan) LAN=1 ;;
        *) rest+=("$a") ;;
      esac
    done
    eng="$(engine)"
    if [[ "$LOCAL" == 0 && -n "$eng" && -x "$ROOT/docker/lab.sh" ]]; then
      LAN="$LAN" exec "$ROOT/docker/lab.sh" up "$eng"
    fi
    LAN="$LAN" open_local
    ;;
  workshop)
    # the hub route: provider over TLS on every interface, a JupyterHub (one OS user and JupyterLab per
    # attendee; needs root to make the OS users), and the instructor's JupyterLab on a root-only unix
    # socket (no TCP port, so no attendee process on this machine can reach it; reach it through ssh -L)
    if [[ "$(id -u)" != 0 ]]; then echo "error: ./run-demo.sh workshop makes OS users: run it as root" >&2; exit 1; fi
    ensure_venv
    ensure_hub
    ip="$(hostname -I 2>/dev/null | awk '{print $1}')"
    "$PY" -m helpers start --host 0.0.0.0 ${SHARELAB_PORT:+--port "$SHARELAB_PORT"} \
      ${ip:+--public-url "https://$ip:${SHARELAB_PORT:-8080}"} --tls
    "$PY" -m helpers workshop hub start --port "${HUB_PORT:-8000}" ${ip:+--public-host "$ip"} "$@"
    "$PY" -m helpers workshop hub lab
    echo "==> add attendees: $PY -m helpers workshop hub add NAME... (or --csv roster.csv); board: $PY -m helpers workshop board"
    ;;
  batch)
    ensure_venv
    exec "$PY" -m helpers batch "$@"
    ;;
  test)
    ensure_venv
    cd "$ROOT"
    # The suite gives each test its own lab home; keep the user's lab out of it.
    unset SHARELAB_HOME SHARELAB_CATALOG_URL
    ensure_test_services
    # Tests are independent (own lab home, free ports): spread them over the cores unless told otherwise.
    # loadfile: a module's tests stay in one worker, so a fixture they share (the hub's classroom) is made
    # once (loadgroup would do it per mark, but xdist 3.8 cannot tag pytest 9's node ids); files in
    # collection order, where tests/conftest.py puts the slow ones first (xdist's default: most tests first)
    par=(-n "${SHARELAB_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder)
    for a in "$@"; do [[ "$a" == -n* || "$a" == --numprocesses* ]] && par=(); done
    exec "$PY" -m pytest "${par[@]}" "$@"
    ;;
  stop)
    if [[ -x "$ROOT/docker/lab.sh" ]] && [[ -n "$(engine)" ]]; then "$ROOT/docker/lab.sh" down "$(engine)" || true; fi
    if [[ -x "$PY" ]]; then
      "$PY" -m helpers jupyter stop || true
      if [[ -d "$SHARELAB_HOME/hub" ]]; then  # the hub route's pieces too
        "$PY" -m helpers workshop hub lab --stop || true
        "$PY" -m helpers workshop hub stop || true
      fi
      "$PY" -m helpers stop || true
    fi
    ;;
  status)
    eng="$(engine)"
    if [[ -n "$eng" && -x "$ROOT/docker/lab.sh" ]]; then
      echo "Containers ($eng):"
      "$ROOT/docker/lab.sh" status "$eng" || true
    fi
    ensure_venv
    echo "Local processes:"
    "$PY" -m helpers status || true
    "$PY" -m helpers jupyter status || true
    ;;
  reset)
    [[ $# -ge 1 ]] || { echo "error: name the copy to restore, e.g. ./run-demo.sh reset lab1" >&2; exit 2; }
    # the container route: the copies are in the lab container's work volume
    eng="$(engine)"
    if [[ -n "$eng" && -x "$ROOT/docker/lab.sh" ]] && "$ROOT/docker/lab.sh" running "$eng"; then
      exec "$ROOT/docker/lab.sh" reset "$eng" "$@"
    fi
    ensure_venv
    "$PY" -m helpers jupyter reset "$@"
    ;;
  *)
    echo "error: unknown command '$cmd'" >&2
    usage >&2
    exit 2
    ;;
esac
