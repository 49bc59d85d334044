#!/usr/bin/env bash
# Bounded soak: `meetgate demo` (real TLS, local issuer, echo upstream) under
# mixed wrk traffic — authenticated, injected and answered credentials,
# webhooks, public, and failing requests (401, 403) — for DURATION seconds, in
# SEGMENT-second rounds (fresh tokens and webhook signatures each round; the
# audit log is rotated with SIGHUP each round). Reports per traffic class the
# requests, unexpected statuses, socket errors and latency (p50, worst p99),
# and the gateway's RSS after the first round and at the end.
#
#   bash benches/soak.sh [DURATION_SECS=600] [SEGMENT_SECS=60]
#
# Exits 1 on any unexpected status, socket error or timeout, or when memory is
# not flat: the RSS at the end above the highest RSS of the first half of the
# rounds (warm-up: allocator arenas and caches settle) by more than 15 % + 4 MiB.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${1:-600}
SEGMENT=${2:-60}
CONNS=${CONNS:-2}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
(cd "$ROOT" && cargo build --release --quiet)

DIR=$(mktemp -d "${TMPDIR:-/var/tmp}/meetgate-soak.XXXXXX")
GW_PORT=${GW_PORT:-18543}
ADMIN_PORT=${ADMIN_PORT:-19543}
cleanup() { kill "$GW" 2>/dev/null || true; wait "$GW" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
RUST_LOG=warn "$ROOT/target/release/meetgate" --log-format json demo \
  --listen "127.0.0.1:$GW_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" --dir "$DIR/demo" \
  >"$DIR/demo.out" 2>"$DIR/demo.err" & GW=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null || { echo "soak: demo not ready"; cat "$DIR/demo.err"; exit 1; }
ISSUER=$(grep -o "http://127.0.0.1:[0-9]*/token" "$DIR/demo.out" | head -1 | sed 's#/token##')
[ -n "$ISSUER" ] || { echo "soak: issuer address not found in the demo output"; exit 1; }
BASE="https://127.0.0.1:$GW_PORT"
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$GW/status"; }

CLASSES="auth inject respond webhook public noauth forbidden"
declare -A REQ UNEXP SOCK TMO P99 P50 LAST
for c in $CLASSES; do REQ[$c]=0; UNEXP[$c]=0; SOCK[$c]=0; TMO[$c]=0; P99[$c]=0; P50[$c]=0; LAST[$c]=0; done

run_class() { # name method path expect body h1 h2 h3
  local name=$1 method=$2 path=$3 expect=$4 body=${5:-} h1=${6:-} h2=${7:-} h3=${8:-}
  SOAK_METHOD=$method SOAK_EXPECT=$expect SOAK_BODY=$body SOAK_H1=$h1 SOAK_H2=$h2 SOAK_H3=$h3 \
    wrk -t1 -c"$CONNS" -d"${SEGMENT}s" --timeout 5s -s "$ROOT/benches/soak/soak.lua" "$BASE$path" \
    >"$DIR/wrk-$name.out" 2>&1 || true
}

ROUNDS=$(( (DURATION + SEGMENT - 1) / SEGMENT ))
RSS_BASE=0
RSS_SERIES=""
echo "soak: $ROUNDS round(s) of ${SEGMENT}s, ${CONNS} connection(s) per class, gateway pid $GW"
for round in $(seq "$ROUNDS"); do
  CREATOR=$(curl -sf "$ISSUER/token?sub=soak&roles=meeting-creators&tenant=acme")
  TS=$(date +%s)
  EVENT="{\"event\":\"meeting.started\",\"event_ts\":${TS}000,\"payload\":{\"object\":{\"id\":\"soak-$round\"}}}"
  SIG="v0=$(printf 'v0:%s:%s' "$TS" "$EVENT" | openssl dgst -sha256 -hmac demo-webhook-secret -r | cut -d' ' -f1)"
  AUTH="Authorization: Bearer $CREATOR"
  run_class auth GET /api/orgs/acme/meetings 200 "" "$AUTH" &
  run_class inject GET "/api/meetings/85746065432/join?role=0" 200 "" "$AUTH" &
  run_class respond POST /api/sdk-signature 200 '{"meetingNumber":85746065432,"role":0}' "$AUTH" "Content-Type: application/json" &
  run_class webhook POST /webhooks/zoom 200 "$EVENT" "Content-Type: application/json" "x-zm-request-timestamp: $TS" "x-zm-signature: $SIG" &
  run_class public GET /public/hello 200 &
  run_class noauth GET /api/orgs/acme/meetings 401 &
  run_class forbidden GET /api/orgs/other/meetings 403 "" "$AUTH" &
  wait $(jobs -p | grep -v "^$GW$") 2>/dev/null || true
  kill -0 "$GW" 2>/dev/null || { echo "soak: the gateway died"; tail -20 "$DIR/demo.err"; exit 1; }
  # Log rotation under load: move the audit file away, SIGHUP reopens it.
  mv -f "$DIR/demo/audit.log" "$DIR/demo/audit.log.1" 2>/dev/null && kill -HUP "$GW" && rm -f "$DIR/demo/audit.log.1"
  RSS=$(rss_kib)
  RSS_SERIES="$RSS_SERIES $((RSS / 1024))"
  if [ "$round" -le $(( (ROUNDS + 1) / 2 )) ] && [ "$RSS" -gt "$RSS_BASE" ]; then RSS_BASE=$RSS; fi
  line="round $round/$ROUNDS rss=${RSS}KiB"
  for c in $CLASSES; do
    s=$(grep '^SOAK ' "$DIR/wrk-$c.out" || true)
    if [ -z "$s" ]; then echo "soak: wrk gave no result for $c"; cat "$DIR/wrk-$c.out"; exit 1; fi
    get() { echo "$s" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k {print $2}'; }
    REQ[$c]=$(( REQ[$c] + $(get requests) )); UNEXP[$c]=$(( UNEXP[$c] + $(get unexpected) ))
    SOCK[$c]=$(( SOCK[$c] + $(get socket_errors) )); TMO[$c]=$(( TMO[$c] + $(get timeouts) ))
    p99=$(get p99_us); [ "$p99" -gt "${P99[$c]}" ] && P99[$c]=$p99
    P50[$c]=$(get p50_us)
    [ "$(get last_unexpected)" != 0 ] && LAST[$c]=$(get last_unexpected)
    line="$line $c=$(get requests)"
  done
  echo "$line"
done
RSS_LAST=$(rss_kib)

printf '\n%-10s %10s %10s %8s %8s %9s %12s\n' class requests unexpected socket timeouts p50_ms worst_p99_ms
fail=0
for c in $CLASSES; do
  printf '%-10s %10d %10d %8d %8d %9.2f %12.2f\n' "$c" "${REQ[$c]}" "${UNEXP[$c]}" "${SOCK[$c]}" "${TMO[$c]}" \
    "$(awk -v u="${P50[$c]}" 'BEGIN {print u / 1000}')" "$(awk -v u="${P99[$c]}" 'BEGIN {print u / 1000}')"
  if [ "${UNEXP[$c]}" != 0 ] || [ "${SOCK[$c]}" != 0 ] || [ "${TMO[$c]}" != 0 ]; then
    echo "  $c: unexpected status (last ${LAST[$c]}) or socket errors"; fail=1
  fi
done
echo "RSS per round (MiB):$RSS_SERIES"
echo "RSS: highest in the first half $((RSS_BASE / 1024)) MiB; at the end $((RSS_LAST / 1024)) MiB"
if [ "$RSS_LAST" -gt $(( RSS_BASE * 115 / 100 + 4096 )) ]; then
  echo "soak: memory grew"; fail=1
fi
grep -h '"level":"ERROR"' "$DIR/demo.err" | head -5 || true
[ "$fail" = 0 ] && echo "soak: OK" || echo "soak: FAILED"
exit "$fail"
