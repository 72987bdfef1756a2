#!/usr/bin/env bash
# Starts a control plane binary (memory store, free ports, a temporary data dir), runs
# scripts/hostile-input.py against it, prints RSS before/after/idle, and stops it.
#   scripts/hostile-input.sh target/release/atoll-zone-cp [ROUNDS]
#   scripts/hostile-input.sh target/release/atoll-global-cp [ROUNDS]
set -euo pipefail
BIN=$1
ROUNDS=${2:-500}
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=$(free_port); HTTPS=$(free_port); DIAG=$(free_port); XDS=$(free_port); KDS=$(free_port)
ATOLL_STORE=memory ATOLL_DATA_DIR=$DATA ATOLL_API_ADDRESS=127.0.0.1:$API \
  ATOLL_API_HTTPS_ADDRESS=127.0.0.1:$HTTPS \
  ATOLL_DIAGNOSTICS_ADDRESS=127.0.0.1:$DIAG ATOLL_XDS_ADDRESS=127.0.0.1:$XDS \
  ATOLL_KDS_ADDRESS=127.0.0.1:$KDS ATOLL_LOG_LEVEL=error "$BIN" run >"$DATA/cp.log" 2>&1 &
CP=$!
trap 'kill $CP 2>/dev/null; wait $CP 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$DIAG/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 2  # let start-up allocations settle
BOOT=()
case "$BIN" in *zone-cp*) BOOT=(--bootstrap "https://127.0.0.1:$XDS/bootstrap") ;; esac
python3 "$HERE/hostile-input.py" --pid "$CP" --api "http://127.0.0.1:$API" "${BOOT[@]}" --rounds "$ROUNDS"
