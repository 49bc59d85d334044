#!/usr/bin/env bash
# Load benchmark: meetgate and the peers (nginx, HAProxy jwt_verify, Apache
# mod_auth_openidc) in the same interleaved wrk rounds on this machine.
#
#   bash benches/load.sh [DIR]        # DIR: scratch dir readable by www-data (default /srv/meetgate-bench)
#
# Builds meetgate in release mode, installs the peers and wrk when missing
# (benches/peers/setup.sh, needs root), then runs benches/load/bench-with-meetgate.sh:
# correctness table first, then ROUNDS interleaved rounds (knobs as in
# benches/peers/README.md: ROUNDS, DUR, CONNS, TLS, SRV_CPU, LOAD_CPU, UP_CPU).
# Prints one table (req/s, p50, p99, ratio to nginx pass-through and to meetgate
# pass-through, proxy CPU µs/req) and each server's peak RSS; results in DIR/results/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS="$ROOT/benches/peers"
DIR=${1:-/srv/meetgate-bench}
mkdir -p "$DIR" && chmod 755 "$DIR"
if [ ! -f "$DIR/tokens/claims.env" ] || ! command -v wrk >/dev/null || ! command -v haproxy >/dev/null; then
  bash "$PEERS/setup.sh" "$DIR"
fi
(cd "$ROOT" && cargo build --release --quiet)
MEETGATE_BIN="$ROOT/target/release/meetgate" PEERS="$PEERS" bash "$ROOT/benches/load/bench-with-meetgate.sh" "$DIR"
