#!/usr/bin/env bash
# sharelab: one command to set up and run the offline Delta Sharing teaching lab.
# Usage: ./run-demo.sh [open|batch|test|stop|status|--help] [options]
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
                  --lan publishes on every interface (workshop mode, instructor only).
  batch           Execute every notebook and lab solution in order with papermill and
                  write the executed notebooks plus summary.html to runs/<timestamp>/.
                  Options are passed on: -p NAME VALUE (e.g. -p scale medium -p seed 7),
                  -f params.yaml, --only PATTERN, --out DIR.
  test            Create .venv/ if missing and run the whole test suite (pytest args
                  may follow, e.g. ./run-demo.sh test -k catalog).
  stop            Stop the provider server and JupyterLab (or the containers).
  status          Show what is running.
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

engine() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; return; fi
  if command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then echo podman; return; fi
  echo ""
}

open_local() {
  ensure_venv
  local host=127.0.0.1 public=()
  if [[ "${LAN:-0}" == 1 ]]; then
    # workshop mode: listen on every interface and hand out profiles with the LAN address
    host=0.0.0.0
    local ip
    ip="$(hostname -I 2>/dev/null | awk '{print $1}')"
    [[ -n "$ip" ]] && public=(--public-url "http://$ip:${SHARELAB_PORT:-8080}")
  fi
  "$PY" -m helpers start --host "$host" ${SHARELAB_PORT:+--port "$SHARELAB_PORT"} "${public[@]}"
  "$PY" -m helpers jupyter start --host "$host" --notebook-dir "$ROOT"
}

cmd="${1:-open}"
case "$cmd" in
  --local|--lan) cmd=open ;;  # options of the default command
  *) [[ $# -gt 0 ]] && shift ;;
esac
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
  batch)
    ensure_venv
    exec "$PY" -m helpers batch "$@"
    ;;
  test)
    ensure_venv
    cd "$ROOT"
    # The suite gives each test its own lab home; keep the user's lab out of it.
    unset SHARELAB_HOME
    exec "$PY" -m pytest "$@"
    ;;
  stop)
    if [[ -x "$ROOT/docker/lab.sh" ]] && [[ -n "$(engine)" ]]; then "$ROOT/docker/lab.sh" down "$(engine)" || true; fi
    if [[ -x "$PY" ]]; then
      "$PY" -m helpers jupyter stop || true
      "$PY" -m helpers stop || true
    fi
    ;;
  status)
    ensure_venv
    "$PY" -m helpers status || true
    "$PY" -m helpers jupyter status || true
    ;;
  *)
    echo "error: unknown command '$cmd'" >&2
    usage >&2
    exit 2
    ;;
esac
