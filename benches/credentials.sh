#!/usr/bin/env bash
# Load bench of the credentials meetgate answers itself (issues 16 and 17):
#  - throughput, proxy CPU µs/request, p50/p99 of the respond routes over TLS, each with a
#    verified RS256 bearer token: Meeting SDK signature (HS256, the baseline), the same with the
#    caller's ZAK (cached per grant), Vonage client token (RS256), OpenTok client token in T1
#    (HMAC-SHA1) and JWT (HS256) formats;
#  - latency of the Meeting SDK signature with a fresh OBF token (one user-token API call per
#    answer to a Zoom stand-in LATENCY_MS away) beside the same call made to the stand-in
#    directly, at low concurrency (OBF_CONNS): what the gateway adds to that call.
#
#   bash benches/credentials.sh [DIR]     # DIR: scratch dir (default /srv/meetgate-cred)
#
# Rig: benches/peers/setup.sh with SERVERS="nginx wrk" (nginx upstream serving the JWKS, RS256
# token, self-signed certificate), benches/load/credentials.toml.in, the Zoom stand-in
# examples/zoom_stand_in.rs. nginx, the stand-in and wrk on LOAD_CPU (0), meetgate on SRV_CPU (1).
# The grant is made by the real connect flow (connect -> stand-in authorize -> callback) first.
# Knobs: ROUNDS (3), DUR (8s), CONNS (32), OBF_DUR (15s), OBF_CONNS (4), LATENCY_MS (20),
# BIN / STAND_IN (use these binaries instead of building: cargo build --release),
# PROFILE="route ..." (profile those routes instead of measuring: perf record -e cpu-clock on
# meetgate during one DUR run each; DIR/cred/perf-ROUTE.txt has the top symbols),
# and the same OBF call through a bare TLS proxy hop (nginx, benches/peers/conf/nginx-pass.conf,
# on meetgate's CPU, keep-alive to the stand-in): the floor any proxy hop adds on this machine.
# Output: DIR/cred/runs.tsv (raw), DIR/cred/summary.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-/srv/meetgate-cred}
ROUNDS=${ROUNDS:-3} DUR=${DUR:-8s} CONNS=${CONNS:-32} OBF_DUR=${OBF_DUR:-15s} OBF_CONNS=${OBF_CONNS:-4}
LATENCY_MS=${LATENCY_MS:-20} SRV_CPU=${SRV_CPU:-1} LOAD_CPU=${LOAD_CPU:-0}
mkdir -p "$DIR" && chmod 755 "$DIR" && DIR=$(cd "$DIR" && pwd)
[ -f "$DIR/tokens/claims.env" ] && command -v wrk >/dev/null && command -v nginx >/dev/null ||
  SERVERS="nginx wrk" bash "$ROOT/benches/peers/setup.sh" "$DIR"
. "$DIR/tokens/claims.env"
if [ -z "${BIN:-}" ] || [ -z "${STAND_IN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet --bin meetgate --example zoom_stand_in)
fi
BIN=${BIN:-$ROOT/target/release/meetgate} STAND_IN=${STAND_IN:-$ROOT/target/release/examples/zoom_stand_in}

OUT=$DIR/cred RUN=$DIR/cred/run
rm -rf "$OUT" && mkdir -p "$RUN"
ZOOM=http://127.0.0.1:18091 URL=https://127.0.0.1:18446 DIRECT=bench-direct-access-token
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RUN/vonage.key" 2>/dev/null
GRANT_KEY=$(openssl rand -base64 32)
sed -e "s#@DIR@/run/#$RUN/#g" -e "s#@DIR@#$DIR#g" "$ROOT/benches/peers/conf/upstream-nginx.conf" > "$RUN/upstream-nginx.conf"
sed -e "s#@DIR@#$DIR#g" -e "s#@RUN@#$RUN#g" -e "s#@ISS@#$ISS#g" -e "s#@AUD@#$AUD#g" -e "s#@ZOOM@#$ZOOM#g" \
    -e "s#@GRANT_KEY@#$GRANT_KEY#g" "$ROOT/benches/load/credentials.toml.in" > "$RUN/meetgate.toml"

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done' EXIT
trap 'exit 130' INT TERM
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; return 1; }
taskset -c "$LOAD_CPU" nginx -c "$RUN/upstream-nginx.conf" -p "$RUN/" -e "$RUN/upstream-error.log" > "$RUN/upstream.out" 2>&1 &
PIDS+=($!); wait_port 18080
taskset -c "$LOAD_CPU" "$STAND_IN" 127.0.0.1:18091 benchZoomApp bench-zoom-app-secret "$LATENCY_MS" "$DIRECT" > "$RUN/zoom.out" 2>&1 &
PIDS+=($!); wait_port 18091
sed -e "s#@DIR@/run/#$RUN/#g" -e "s#@DIR@#$DIR#g" -e "s#127.0.0.1:18080;#127.0.0.1:18091;#" -e "s#nginx-pass#nginx-hop#g" \
    "$ROOT/benches/peers/conf/nginx-pass.conf" > "$RUN/nginx-hop.conf"
taskset -c "$SRV_CPU" nginx -c "$RUN/nginx-hop.conf" -p "$RUN/" -e "$RUN/nginx-hop-error.log" > "$RUN/nginx-hop.out" 2>&1 &
PIDS+=($!); wait_port 18441
RUST_LOG=warn taskset -c "$SRV_CPU" "$BIN" --log-format json run --config "$RUN/meetgate.toml" > "$RUN/meetgate.out" 2>&1 &
MPID=$!; PIDS+=($MPID)
wait_port 18446 || { echo "meetgate did not start: $RUN/meetgate.out"; exit 1; }

TOKEN=$(cat "$DIR/tokens/rs256_valid.jwt")
SESSION=2_MX5hYWFhYWFhYS1iYmJiLTRjY2MtOGRkZC0wMTIzNDU2Nzg5YWJ-fjE3NjcyMjU2MDAwMDB-dGVzdHNlc3Npb25-fn4
OT_SESSION=1_MX4xMjM0NTY3OH5-MTc2NzIyNTYwMDAwMH5hYmNkZWZnaGlqa2xtbn5-fg
SDK_BODY='{"meetingNumber":"85746065432","role":0}'
declare -A PATHS=([sdk-signature]=/sdk-signature [sdk-zak]=/sdk-zak [sdk-obf]=/sdk-obf
  [vonage]=/vonage/sessions/$SESSION/token [opentok-t1]=/opentok-t1/sessions/$OT_SESSION/token
  [opentok-jwt]=/opentok-jwt/sessions/$OT_SESSION/token)
declare -A BODY=([sdk-signature]=$SDK_BODY [sdk-zak]=$SDK_BODY [sdk-obf]=$SDK_BODY [vonage]='{}' [opentok-t1]='{}' [opentok-jwt]='{}')
declare -A FIELD=([sdk-signature]=signature [sdk-zak]=zak [sdk-obf]=obfToken [vonage]=token [opentok-t1]=token [opentok-jwt]=token)

# ---- the grant: the real connect flow, then every route answers what it should ----
AUTHORIZE=$(curl -sk -H "Authorization: Bearer $TOKEN" "$URL/zoom/connect" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["authorize_url"])')
s=$(curl -sk -L -o /dev/null -w '%{http_code} %{url_effective}' "$AUTHORIZE")
[ "$s" = "200 $URL/pass" ] || { echo "connect flow: got '$s', expected '200 $URL/pass'"; exit 1; }
for r in "${!PATHS[@]}"; do
  got=$(curl -sk -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "${BODY[$r]}" "$URL${PATHS[$r]}")
  python3 -c 'import json, sys; v = json.loads(sys.argv[1]); assert v.get(sys.argv[2]), v' "$got" "${FIELD[$r]}" ||
    { echo "$r: no ${FIELD[$r]} in: $got"; exit 1; }
done
s=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $DIRECT" "$ZOOM/v2/users/me/token?type=onbehalf&meeting_id=85746065432")
[ "$s" = 200 ] || { echo "stand-in direct call: $s"; exit 1; }

# ---- runs ----
HZ=$(getconf CLK_TCK)
ptime() { local f; read -ra f <<< "$(cut -d')' -f2- "/proc/$1/stat")"; echo $((f[11] + f[12])); }
ms() { awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
  printf "%.3f", (u == "us") ? n / 1000 : (u == "s") ? n * 1000 : (u == "m") ? n * 60000 : n }'; }
run() {  # round name connections duration url [body] -> one tsv line
  local log=$OUT/wrk-$1-$2.txt lua=$RUN/$2.lua s0 s1
  printf 'wrk.method = "%s"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
    "$([ -n "${6:-}" ] && echo POST || echo GET)" "$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "${6:-}")" > "$lua"
  s0=$(ptime "$MPID")
  timeout 120 taskset -c "$LOAD_CPU" wrk -t1 -c"$3" -d"$4" --latency -s "$lua" -H "Authorization: Bearer ${AUTH:-$TOKEN}" "$5" > "$log" 2>&1
  s1=$(ptime "$MPID")
  local rps reqs p50 p99 bad
  rps=$(awk '/^Requests\/sec/ {printf "%d", $2}' "$log"); reqs=$(awk '/requests in/ {print $1}' "$log")
  p50=$(ms "$(awk '$1 == "50%" {print $2}' "$log")"); p99=$(ms "$(awk '$1 == "99%" {print $2}' "$log")")
  bad=$(awk '/Non-2xx|Socket errors/ {printf "%s", $0}' "$log")
  printf '%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%s\n' "$1" "$2" "$3" "$rps" "$(awk -v d="$((s1 - s0))" -v n="$reqs" -v hz="$HZ" 'BEGIN {print d * 1e6 / hz / n}')" "$p50" "$p99" "${bad:--}"
}
if [ -n "${PROFILE:-}" ]; then
  for r in $PROFILE; do
    c=$CONNS; [ "$r" = sdk-obf ] && c=$OBF_CONNS
    perf record -q -e cpu-clock -F 4999 -g -p "$MPID" -o "$OUT/perf-$r.data" > /dev/null 2>&1 &
    PERF=$!; sleep 0.5
    run 0 "$r" "$c" "$DUR" "$URL${PATHS[$r]}" "${BODY[$r]}"
    kill -INT "$PERF"; wait "$PERF" || true
    perf report -q -i "$OUT/perf-$r.data" --no-children --sort symbol --percent-limit 0.7 --stdio -g none \
      > "$OUT/perf-$r.txt" 2>/dev/null
    echo "== $r: $OUT/perf-$r.txt"; head -40 "$OUT/perf-$r.txt"
  done
  exit 0
fi
RES=$OUT/runs.tsv
printf 'round\troute\tconns\treq_s\tsrv_us\tp50_ms\tp99_ms\terrors\n' | tee "$RES"
THROUGHPUT=(sdk-signature sdk-zak vonage opentok-t1 opentok-jwt)
for r in "${THROUGHPUT[@]}"; do run 0 "$r" "$CONNS" 2s "$URL${PATHS[$r]}" "${BODY[$r]}" > /dev/null; done
for round in $(seq "$ROUNDS"); do
  n=${#THROUGHPUT[@]}
  for i in $(seq 0 $((n - 1))); do   # rotated order per round
    r=${THROUGHPUT[$(( (i + round) % n ))]}
    run "$round" "$r" "$CONNS" "$DUR" "$URL${PATHS[$r]}" "${BODY[$r]}" | tee -a "$RES"
  done
  run "$round" sdk-obf "$OBF_CONNS" "$OBF_DUR" "$URL${PATHS[sdk-obf]}" "$SDK_BODY" | tee -a "$RES"
  AUTH=$DIRECT run "$round" zoom-direct "$OBF_CONNS" "$OBF_DUR" "$ZOOM/v2/users/me/token?type=onbehalf&meeting_id=85746065432" | tee -a "$RES"
  AUTH=$DIRECT run "$round" nginx-hop "$OBF_CONNS" "$OBF_DUR" "https://127.0.0.1:18441/v2/users/me/token?type=onbehalf&meeting_id=85746065432" | tee -a "$RES"
  run "$round" sdk-signature-low "$OBF_CONNS" "$OBF_DUR" "$URL${PATHS[sdk-signature]}" "$SDK_BODY" | tee -a "$RES"
done

# ---- summary ----
{
  echo "binary: $BIN ($("$BIN" --version 2>/dev/null || echo "?")); repository at $(git -C "$ROOT" rev-parse --short HEAD)"
  echo "$ROUNDS rounds; throughput: wrk -t1 -c$CONNS -d$DUR over TLS; OBF: -c$OBF_CONNS -d$OBF_DUR, stand-in latency ${LATENCY_MS} ms"
  echo "meetgate and the nginx hop on CPU $SRV_CPU; nginx (JWKS), the Zoom stand-in and wrk on CPU $LOAD_CPU"
  awk -F'\t' 'NR > 1 { k = $2; n[k]++; rps[k, n[k]] = $4; us[k, n[k]] = $5; p50[k, n[k]] = $6; p99[k, n[k]] = $7 }
    function med(a, k, m,   i, j, v, x) { for (i = 1; i <= m; i++) v[i] = a[k, i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
      return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
    END {
      split("sdk-signature sdk-zak vonage opentok-t1 opentok-jwt sdk-obf zoom-direct nginx-hop sdk-signature-low", R, " ")
      printf "\n%-18s %8s %8s %8s %8s   (medians of %d rounds)\n", "route", "req/s", "srv_us", "p50_ms", "p99_ms", n["sdk-zak"]
      for (i = 1; i <= 9; i++) { k = R[i]; m = n[k]; if (!m) continue
        A[k] = med(rps, k, m); U[k] = med(us, k, m); P[k] = med(p99, k, m); Q[k] = med(p50, k, m)
        printf "%-18s %8d %8.1f %8.3f %8.3f\n", k, A[k], U[k], Q[k], P[k] }
      b = A["sdk-signature"]
      printf "\nZAK (cached) respond / sdk-signature respond, req/s: %.2f (bound >= 0.80): %s\n", A["sdk-zak"] / b, (A["sdk-zak"] >= 0.8 * b) ? "met" : "NOT met"
      printf "Vonage client token / sdk-signature, req/s: %.2f (bound >= 0.80): %s\n", A["vonage"] / b, (A["vonage"] >= 0.8 * b) ? "met" : "NOT met"
      printf "  RS256 signing ceiling: vonage costs %.1f us/request of proxy CPU vs %.1f for sdk-signature: %.1f us more, the RS256 signature\n", U["vonage"], U["sdk-signature"], U["vonage"] - U["sdk-signature"]
      printf "OpenTok T1 / sdk-signature: %.2f, OpenTok JWT / sdk-signature: %.2f\n", A["opentok-t1"] / b, A["opentok-jwt"] / b
      d99 = P["sdk-obf"] - P["zoom-direct"]; d50 = Q["sdk-obf"] - Q["zoom-direct"]
      printf "OBF through the gateway vs the stand-in called directly: p99 %+.3f ms, p50 %+.3f ms (bound: p99 <= 1 ms more): %s\n", d99, d50, (d99 <= 1) ? "met" : "NOT met"
      printf "  the same call through a bare TLS proxy hop (nginx): p99 %+.3f ms, p50 %+.3f ms over direct; the gateway over that hop: p99 %+.3f ms, p50 %+.3f ms\n", P["nginx-hop"] - P["zoom-direct"], Q["nginx-hop"] - Q["zoom-direct"], P["sdk-obf"] - P["nginx-hop"], Q["sdk-obf"] - Q["nginx-hop"]
    }' "$RES"
} | tee "$OUT/summary.txt"
