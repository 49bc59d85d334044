#!/usr/bin/env bash
# A/B of two meetgate builds by instructions executed per request, counted by
# valgrind's callgrind: exact and unaffected by other load on the machine
# (wall-clock CPU µs/request on a shared 2-vCPU VM varies ±20 % between runs,
# see benches/ab.sh). It measures work done, not time: cache and branch
# behaviour are not in it.
#
#   BIN_BEFORE=... BIN_AFTER=... bash benches/ab_instructions.sh [DIR]
#
# Rig: benches/ab.sh's (DIR, default /srv/meetgate-ab: nginx upstream, RS256
# tokens, benches/load/meetgate.toml.in; run `bash benches/ab.sh` once to set
# it up). For each build and route (/pass, /jwt, /jwt-nocache), meetgate runs
# under callgrind twice: WARM requests then N more, and WARM requests only,
# each over one TLS keep-alive connection, then SIGTERM; instructions (Ir)
# per request = (Ir of the first run - Ir of the second) / N, so start-up and
# shutdown cancel out. Knobs: N (2000), WARM (200), ROUNDS (2).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-/srv/meetgate-ab}
N=${N:-2000} WARM=${WARM:-200} ROUNDS=${ROUNDS:-2}
declare -A BIN=([before]=${BIN_BEFORE:?BIN_BEFORE=path} [after]=${BIN_AFTER:?BIN_AFTER=path})
. "$DIR/tokens/claims.env"
OUT=$DIR/ab-ir RUN=$DIR/ab-ir/run
rm -rf "$OUT" && mkdir -p "$RUN"
for f in "$ROOT"/benches/peers/conf/upstream-nginx.conf "$ROOT"/benches/load/meetgate.toml.in; do
  sed -e "s#@DIR@/run/#$RUN/#g" -e "s#@DIR@#$DIR#g" -e "s#@ISS@#$ISS#g" -e "s#@AUD@#$AUD#g" "$f" > "$RUN/$(basename "$f" .in)"
done
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done' EXIT
wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; return 1; }
nginx -c "$RUN/upstream-nginx.conf" -p "$RUN/" -e "$RUN/upstream-error.log" > "$RUN/upstream.out" 2>&1 &
PIDS+=($!); wait_port 18080
TOKEN=$(cat "$DIR/tokens/rs256_valid.jwt")

# N GETs of PATH over one TLS keep-alive connection; fails unless every one is 200.
requests() {
  python3 - "$1" "$2" "$TOKEN" <<'EOF'
import http.client, ssl, sys
n, path, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("127.0.0.1", 18446, context=ctx, timeout=60)
for _ in range(n):
    c.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = c.getresponse(); r.read()
    if r.status != 200: sys.exit(f"{path}: {r.status}")
EOF
}

RES=$OUT/runs.tsv
printf 'round\tbuild\troute\tIr_per_request\n' | tee "$RES"
for round in $(seq "$ROUNDS"); do
  for w in before after; do
    for p in /pass /jwt /jwt-nocache; do
      ir=()
      for count in $((WARM + N)) "$WARM"; do
        cg=$RUN/callgrind.$w.${p#/}.$round.$count
        valgrind --tool=callgrind --callgrind-out-file="$cg" \
          "${BIN[$w]}" --log-format json run --config "$RUN/meetgate.toml" > "$RUN/meetgate-$w.out" 2>&1 &
        VPID=$!; PIDS+=($VPID)
        wait_port 18446 || { echo "meetgate ($w) did not start: $RUN/meetgate-$w.out"; exit 1; }
        requests "$count" "$p"
        kill -TERM "$VPID"; wait "$VPID" 2>/dev/null || true; PIDS=("${PIDS[0]}")
        ir+=("$(awk '/^summary:/ {print $2}' "$cg")")
        rm -f "$cg"
      done
      printf '%s\t%s\t%s\t%d\n' "$round" "$w" "$p" "$(( (ir[0] - ir[1]) / N ))" | tee -a "$RES"
    done
  done
done
{
  echo "instructions per request (callgrind), N=$N after $WARM warm-up, over one TLS keep-alive connection"
  echo "BEFORE ${BIN[before]}"
  echo "AFTER  ${BIN[after]}"
  awk -F'\t' 'NR > 1 { s[$2, $3] += $4; n[$2, $3]++ }
    END {
      for (b = 1; b <= 2; b++) { bn = (b == 1) ? "before" : "after"
        for (r = 1; r <= 3; r++) { rn = (r == 1) ? "/pass" : (r == 2) ? "/jwt" : "/jwt-nocache"
          M[bn, rn] = s[bn, rn] / n[bn, rn]; printf "%-7s %-12s %10d Ir/request\n", bn, rn, M[bn, rn] } }
      for (r = 2; r <= 3; r++) { rn = (r == 2) ? "/jwt" : "/jwt-nocache"
        qb = M["before", rn] / M["before", "/pass"]; qa = M["after", rn] / M["after", "/pass"]
        printf "%-12s ratio to /pass: before %.3f after %.3f (%+.1f %%); own cost %+.1f %%\n", rn, qb, qa,
          100 * (qa / qb - 1), 100 * (M["after", rn] / M["before", rn] - 1) }
      printf "%-12s own cost %+.1f %%\n", "/pass", 100 * (M["after", "/pass"] / M["before", "/pass"] - 1)
    }' "$RES"
} | tee "$OUT/summary.txt"
