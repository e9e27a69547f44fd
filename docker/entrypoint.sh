#!/usr/bin/env bash
# Entry point of the sharelab image. The first argument picks what the container runs:
#
#   provider      the Delta Sharing server (sharelab serve) on 0.0.0.0:$SHARELAB_PORT; over HTTPS only
#                 when SHARELAB_TLS=1, or by default in workshop mode (SHARELAB_BIND not loopback)
#   lab           JupyterLab on $JUPYTER_IP (default 0.0.0.0):$JUPYTER_PORT, always with a token
#   batch [ARGS]  sharelab batch ARGS (papermill run of every notebook), then exit
#   health        the HEALTHCHECK: probe whichever service this container runs
#   anything else is executed as a command (e.g. `sharelab sql ...`, `bash`)
#
# Binding 0.0.0.0 is confined to the container's own network namespace; what reaches the host is
# decided by the published ports, which docker/lab.sh and compose.yaml bind to 127.0.0.1 unless
# the user asks for the LAN (workshop mode). In workshop mode on the host's network (podman,
# docker/lab.sh) JUPYTER_IP=127.0.0.1 keeps the instructor's JupyterLab off the network.
set -euo pipefail

: "${SHARELAB_HOME:=/lab-home}"
: "${SHARELAB_PORT:=8080}"
: "${SHARELAB_PUBLIC_URL:=http://provider:${SHARELAB_PORT}}"
: "${JUPYTER_PORT:=8888}"
: "${SHARELAB_WORK:=/home/lab/work}"
: "${JUPYTER_IP:=0.0.0.0}"
export SHARELAB_HOME SHARELAB_PORT SHARELAB_PUBLIC_URL JUPYTER_PORT SHARELAB_WORK

# Workshop mode (the provider published beyond loopback: SHARELAB_BIND, set by docker/lab.sh and
# compose.yaml) serves HTTPS by default; SHARELAB_TLS=1/0 forces it on/off.
tls_wanted() {
  case "${SHARELAB_TLS:-}" in
    1|yes|true) return 0 ;;
    0|no|false) return 1 ;;
  esac
  case "${SHARELAB_BIND:-127.0.0.1}" in
    127.0.0.1|localhost|::1|"") return 1 ;;
  esac
  return 0
}

# The role of this container, read back by `health` (a healthcheck runs as a separate exec and
# does not see the entry point's arguments).
ROLE_FILE=/tmp/sharelab-role

# Notebooks and lab exercises shipped in the image are copied into the work volume without
# overwriting anything a learner has edited; new notebooks of a newer image still show up. The lab
# solutions stay in /opt/sharelab/labs/solutions (as in the local route's ./work). Same rule as
# helpers/workspace.py; `sharelab jupyter reset NAME` (SHARELAB_WORK is set) restores one copy.
copy_work() {
  local d f
  for d in notebooks labs; do
    mkdir -p "$SHARELAB_WORK/$d"
    for f in "/opt/sharelab/$d"/*.ipynb; do
      [[ -e "$f" && ! -e "$SHARELAB_WORK/$d/${f##*/}" ]] && cp "$f" "$SHARELAB_WORK/$d/"
    done
  done
  return 0
}

health() {
  local role
  role="$(cat "$ROLE_FILE" 2>/dev/null || true)"
  case "$role" in
    # Over TLS: verified against the lab home's CA (its server certificate names 127.0.0.1).
    provider) url="http://127.0.0.1:${SHARELAB_PORT}/health"
              tls_wanted && url="https://127.0.0.1:${SHARELAB_PORT}/health" ;;
    # /api answers without a token and only once the server is up.
    lab) url="http://127.0.0.1:${JUPYTER_PORT}/api" ;;
    *) echo "unhealthy: this container runs no sharelab service (role '${role:-none}')"; return 1 ;;
  esac
  python - "$url" "$SHARELAB_HOME/tls/ca.pem" <<'EOF'
import json
import ssl
import sys
import urllib.request

url, ca = sys.argv[1], sys.argv[2]
try:
    ctx = ssl.create_default_context(cafile=ca) if url.startswith("https:") else None
    with urllib.request.urlopen(url, timeout=4, context=ctx) as resp:
        body = json.loads(resp.read() or b"{}")
except Exception as exc:  # any failure is "unhealthy", with the reason on stdout
    print(f"unhealthy: {url}: {exc}")
    sys.exit(1)
print(f"healthy: {url} {body}")
EOF
}

role="${1:-lab}"
[[ $# -gt 0 ]] && shift
# /opt/sharelab/runs (sharelab batch's default output) links here; the target must exist.
mkdir -p "$SHARELAB_WORK/runs" 2>/dev/null || true
case "$role" in
  provider)
    echo provider >"$ROLE_FILE"
    tls=()
    if tls_wanted; then
      # HTTPS only (no plain-HTTP listener), with the lab home's CA (made once; the server prints its
      # fingerprint). The profiles' endpoint must then be the https:// address attendees use.
      tls=(--tls)
      case "$SHARELAB_PUBLIC_URL" in
        https://provider:*|https://localhost:*|http://provider:*|http://localhost:*)
          echo "error: workshop mode needs the address attendees use: set SHARELAB_PUBLIC_URL=https://<your LAN address>:${SHARELAB_PORT} (or SHARELAB_TLS=0 for plain HTTP)" >&2
          exit 2 ;;
        http://*) SHARELAB_PUBLIC_URL="https://${SHARELAB_PUBLIC_URL#http://}"
                  echo "note: TLS on: the profiles' endpoint is $SHARELAB_PUBLIC_URL" >&2 ;;
      esac
    fi
    exec sharelab serve --host 0.0.0.0 --port "$SHARELAB_PORT" --public-url "$SHARELAB_PUBLIC_URL" \
      "${tls[@]}" "$@"
    ;;
  lab)
    echo lab >"$ROLE_FILE"
    copy_work
    # Never start without a token: use $JUPYTER_TOKEN, or make one and print it.
    # (Also when a compose tool passed a `${...}` it failed to interpolate: never a guessable token.)
    # shellcheck disable=SC2016  # a literal ${ is what we look for
    if [[ -z "${JUPYTER_TOKEN:-}" || "${JUPYTER_TOKEN}" == '${'* ]]; then
      JUPYTER_TOKEN="$(python -c 'import secrets; print(secrets.token_hex(24))')"
    fi
    export JUPYTER_TOKEN  # read by jupyter_server; kept off the command line (ps, inspect args)
    echo "JupyterLab: http://127.0.0.1:${JUPYTER_HOST_PORT:-$JUPYTER_PORT}/lab?token=${JUPYTER_TOKEN}"
    exec jupyter lab --no-browser --ip="$JUPYTER_IP" --port="$JUPYTER_PORT" \
      --ServerApp.root_dir="$SHARELAB_WORK" "$@"
    ;;
  batch)
    exec sharelab batch "$@"
    ;;
  health)
    health
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
