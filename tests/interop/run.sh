#!/usr/bin/env bash
# Interop test: a stock Python grpcio client against a real bth-gateway over mutual TLS.
#
#   bash tests/interop/run.sh [GATEWAY_BINARY]    (default: target/release/bth-gateway)
#
# Environment: INTEROP_VENV  reuse (or create) this virtualenv instead of a throw-away one
#              PYTHON        interpreter used to create the venv (default python3)
#              INTEROP_KEEP  if set, keep the temporary directory (printed at the end)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

bin="${1:-$repo/target/release/bth-gateway}"
if [[ ! -x "$bin" ]]; then
  echo "interop: gateway binary not found or not executable: $bin" >&2
  exit 2
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/bth-interop.XXXXXX")"
server_pid=""
cleanup() {
  local rc=$?
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -f "$tmp/server.log" ]]; then
    echo "interop: FAILED (exit $rc); last lines of the gateway log:" >&2
    tail -n 40 "$tmp/server.log" >&2 || true
  fi
  if [[ -n "${INTEROP_KEEP:-}" ]]; then
    echo "interop: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Python client environment ---------------------------------------------------------------
venv="${INTEROP_VENV:-$tmp/venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r "$here/requirements.txt"

stubs="$tmp/stubs"
mkdir -p "$stubs"
"$py" -m grpc_tools.protoc -I "$repo/proto" \
  --python_out="$stubs" --grpc_python_out="$stubs" \
  "$repo"/proto/bth/gateway/v1/*.proto

# --- Gateway working directory, participants, certificates -----------------------------------
dir="$tmp/gw"
"$bin" init "$dir" >/dev/null
"$bin" participants add --dir "$dir" --name "Tianjin Statistics Bureau" \
  --kind STATE_ORGAN --recipient-type GOV_DEPT --region CN-TJ --roles publisher tj-stats
"$bin" participants add --dir "$dir" --name "Tianjin Commerce Bureau" \
  --kind STATE_ORGAN --recipient-type GOV_DEPT --region CN-TJ --roles consumer --clearance G2 tj-commerce
for id in tj-stats tj-commerce nobody; do   # `nobody` is deliberately never registered
  "$bin" certs issue "$id" --dir "$dir" >/dev/null
done

# --- Start the gateway -----------------------------------------------------------------------
port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
NO_COLOR=1 "$bin" serve --dir "$dir" --listen "127.0.0.1:$port" >"$tmp/server.log" 2>&1 &
server_pid=$!

"$py" - "$port" "$server_pid" <<'EOF'
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit("interop: the gateway exited before listening")
        if time.monotonic() > deadline:
            sys.exit(f"interop: the gateway did not listen on 127.0.0.1:{port} within 30 s")
        time.sleep(0.2)
EOF
echo "interop: gateway listening on 127.0.0.1:$port (pid $server_pid)"

# --- The client --------------------------------------------------------------------------------
"$py" "$here/client.py" --port "$port" --certs "$dir/certs" --stubs "$stubs"
