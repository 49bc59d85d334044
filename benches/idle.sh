#!/usr/bin/env bash
# Peak memory of the gateway with N idle keep-alive connections open
# (default 10000), over TLS and then over the plaintext listener: starts the
# release binary, opens the connections (each makes one request the gateway
# answers itself, a 404, so no upstream is involved), prints VmRSS/VmHWM
# right after and once the connections have been idle for 2 s (idle
# HTTP/1.1 connections are parked: src/server/h1.rs).
#   bash benches/idle.sh [N]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-10000}
(cd "$ROOT" && cargo build --release --quiet)
DIR=$(mktemp -d)
GW=
trap 'kill $GW 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$ROOT/target/release/meetgate" dev-certs --out "$DIR" >/dev/null
cat > "$DIR/meetgate.toml" <<CONF
[server]
listen = "127.0.0.1:18198"
plain_listen = "127.0.0.1:18197"
tls_cert = "gateway.pem"
tls_key = "gateway-key.pem"
[limits]
header_read_timeout_ms = 600000
[[route]]
name = "app"
path = "/app/*"
upstream = "http://127.0.0.1:9"
authenticate = "none"
CONF
for mode in tls plain; do
  port=18198
  [ "$mode" = plain ] && port=18197
  echo "== $N idle HTTP/1.1 keep-alive connections, $mode"
  RUST_LOG=warn "$ROOT/target/release/meetgate" --log-format json run --config "$DIR/meetgate.toml" & GW=$!
  sleep 1
  python3 "$ROOT/benches/idle_connections.py" "127.0.0.1:$port" /not-routed "$GW" "$N" "$mode"
  kill $GW; wait $GW 2>/dev/null || true
done
