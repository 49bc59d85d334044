#!/usr/bin/env bash
# meetgate beside the peers: benches/peers/bench.sh with meetgate
# variants added to the same interleaved rounds (started by benches/load.sh).
# Start every peer on loopback, check auth correctness, then run interleaved wrk rounds.
# usage: MEETGATE_BIN=... PEERS=... bash bench-with-meetgate.sh DIR      (DIR prepared by setup.sh)
# env:   ROUNDS=3 DUR=8s CONNS=32 TLS=1 CHECK_ONLY=0 SRV_CPU=1 LOAD_CPU=0 UP_CPU=0 MAX_OTHER=3 RETRIES=3
set -uo pipefail
DIR=$(cd "${1:?usage: bench.sh DIR}" && pwd)
HERE=${PEERS:?PEERS: the benches/peers directory}
LOADDIR=$(cd "$(dirname "$0")" && pwd)
MEETGATE_BIN=${MEETGATE_BIN:?MEETGATE_BIN: the release binary}
ROUNDS=${ROUNDS:-3} DUR=${DUR:-8s} CONNS=${CONNS:-32} TLS=${TLS:-1} CHECK_ONLY=${CHECK_ONLY:-0}
MAX_OTHER=${MAX_OTHER:-3} RETRIES=${RETRIES:-3}
SRV_CPU=${SRV_CPU:-1} LOAD_CPU=${LOAD_CPU:-0} UP_CPU=${UP_CPU:-0}
MODDIR=${APACHE_MODDIR:-/usr/lib/apache2/modules}
. "$DIR/tokens/claims.env"
RUN=$DIR/run OUT=$DIR/results
rm -rf "$RUN" && mkdir -p "$RUN/apache-oidc" "$RUN/apache-pass" "$OUT"
chown www-data "$RUN/apache-oidc" "$RUN/apache-pass" 2>/dev/null
tok() { cat "$DIR/tokens/$1.jwt"; }

# ---- start servers (each one's PID is recorded; all are stopped by PID on exit) ----
PIDS=(); declare -A SPID   # SPID[name] = server (master) PID
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  echo "stopped PIDs: ${PIDS[*]}"
}
trap stop_all EXIT
trap 'exit 130' INT TERM
for f in "$HERE"/conf/* "$LOADDIR"/meetgate.toml.in "$LOADDIR"/*.lua; do
  sed -e "s#@DIR@#$DIR#g" -e "s#@ISS@#$ISS#g" -e "s#@AUD@#$AUD#g" -e "s#@MODDIR@#$MODDIR#g" \
    "$f" > "$RUN/$(basename "$f" .in)"
done
start() {  # name cpu command...   (taskset execs the server, so $! is the server's PID)
  local name=$1 cpu=$2; shift 2
  taskset -c "$cpu" "$@" > "$RUN/$name.out" 2>&1 &
  PIDS+=($!); SPID[$name]=$!
}
start upstream     "$UP_CPU"  nginx -c "$RUN/upstream-nginx.conf" -p "$RUN/" -e "$RUN/upstream-error.log"
start nginx-pass   "$SRV_CPU" nginx -c "$RUN/nginx-pass.conf" -p "$RUN/" -e "$RUN/nginx-pass-error.log"
start haproxy-pass "$SRV_CPU" haproxy -db -f "$RUN/haproxy-pass.cfg"
start haproxy-jwt  "$SRV_CPU" haproxy -db -f "$RUN/haproxy-jwt.cfg"
start apache-pass  "$SRV_CPU" apache2 -DFOREGROUND -f "$RUN/apache.conf"
start apache-oidc  "$SRV_CPU" apache2 -DFOREGROUND -DAUTH -f "$RUN/apache.conf"
RUST_LOG=warn start meetgate "$SRV_CPU" "$MEETGATE_BIN" --log-format json run --config "$RUN/meetgate.toml"

# variant -> plain HTTP port; its TLS port is the plain port + 360 (18441..18445)
declare -A PORT=([nginx-pass]=18081 [haproxy-pass]=18082 [haproxy-jwt]=18083 [apache-oidc]=18084 [apache-pass]=18085
                 [meetgate-pass]=18086 [meetgate-jwt]=18086 [meetgate-nocache]=18086 [meetgate-webhook]=18086 [meetgate-sdk]=18086)
# meetgate variants share one process and port; the route is chosen by path.
declare -A VPATH=([meetgate-pass]=/pass [meetgate-jwt]=/jwt [meetgate-nocache]=/jwt-nocache [meetgate-webhook]=/webhook [meetgate-sdk]=/sdk-signature)
declare -A WRK_EXTRA=([meetgate-webhook]="-s $RUN/webhook.lua" [meetgate-sdk]="-s $RUN/sdk-signature.lua")
for v in meetgate-pass meetgate-jwt meetgate-nocache meetgate-webhook meetgate-sdk; do SPID[$v]=${SPID[meetgate]}; done
CHECKED=(nginx-pass haproxy-pass haproxy-jwt apache-pass apache-oidc meetgate-pass meetgate-jwt meetgate-nocache)
VARIANTS=("${CHECKED[@]}" meetgate-webhook meetgate-sdk)
for p in 18080 18090 18446 "${PORT[@]}"; do
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done
sleep 0.5
for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { echo "a server died at start: see $RUN/*.out, *-error.log"; exit 1; }; done
echo "servers up: PIDs ${PIDS[*]} (upstream on CPU $UP_CPU, proxies on CPU $SRV_CPU, wrk on CPU $LOAD_CPU)"

# ---- correctness: HTTP status per token case ----
CASES=(rs256_valid es256_valid missing expired bad_sig wrong_iss wrong_aud alg_none hs256_confusion)
code() {  # url case
  local h=()
  [ "$2" != missing ] && h=(-H "Authorization: Bearer $(tok "$2")")
  curl -sk -o /dev/null -w '%{http_code}' -m 5 "${h[@]}" "$1"
}
check_table() {  # scheme portoffset
  printf '\n== correctness (%s): HTTP status per case; expected 200 for *_valid, 401/403 otherwise ==\n' "$1"
  printf '%-13s' variant; printf ' %-8.8s' "${CASES[@]}"; printf ' verdict\n'
  for v in "${CHECKED[@]}"; do
    local port=$((PORT[$v] + $2)) ok=1 open=0 c
    printf '%-13s' "$v"
    for c in "${CASES[@]}"; do
      local s; s=$(code "$1://127.0.0.1:$port${VPATH[$v]:-/}" "$c"); printf ' %-8s' "$s"
      case $c in *_valid) [ "$s" = 200 ] || ok=0 ;; *) [ "$s" = 200 ] && open=1; [[ $s =~ ^40[13]$ ]] || ok=0 ;; esac
    done
    if [[ $v == *-pass ]]; then echo " no auth (baseline)";
    elif [ $ok = 1 ]; then echo " PASS"; elif [ $open = 1 ]; then echo " FAIL (accepts invalid)"; else echo " FAIL"; fi
  done
}
{ check_table http 0; [ "$TLS" = 1 ] && check_table https 360
  printf '\n== meetgate webhook and sdk-signature (expected 200 each) ==\n'
  for v in meetgate-webhook meetgate-sdk; do
    printf '%-17s %s\n' "$v" "$(taskset -c "$LOAD_CPU" wrk -t1 -c1 -d1s ${WRK_EXTRA[$v]} -H "Authorization: Bearer $(tok rs256_valid)" "http://127.0.0.1:18086${VPATH[$v]}" | awk '/Non-2xx/ {print "FAIL: " $0; f=1} END {if (!f) print "200 only"}')"
  done
} | tee "$OUT/correctness.txt"
[ "$CHECK_ONLY" = 1 ] && exit 0

# ---- load: interleaved rounds, every variant gets the same Authorization header ----
# Besides wrk's numbers, each run records: busy % of CPU 0 and of the proxy CPU (which side
# was the bottleneck), the proxy's own CPU time per request (srv_us: its processes' utime+stime
# / requests; robust to other load), and other % = CPU time of both cores used by anything but
# wrk, the upstream and the proxy under test (> a few % means another workload disturbed the run).
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk -v c="cpu$1" '$1==c {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6, $2+$3+$4+$9}' /proc/stat; }
ptime() {  # utime+stime ticks of the given PIDs and of their children
  local t=0 p st f
  for p in "$@" $(ps -o pid= --ppid "$(IFS=,; echo "$*")"); do
    st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    read -ra f <<< "${st##*) }"; t=$((t + f[11] + f[12]))
  done
  echo "$t"
}
to_ms() { awk '{v=$1; if (v ~ /us$/) v=v/1000; else if (v ~ /ms$/) v=v+0; else if (v ~ /s$/) v=v*1000; printf "%.2f", v}' <<<"$1"; }
load() {  # round proto variant token url
  local log="$OUT/wrk-$1-$2-$3-$4.txt" t0 t1 i0 i1 b0 b1 j0 j1 a0 a1 x s0 s1 u0 u1 wall wu ws TIMEFORMAT='%R %U %S'
  read -r t0 i0 x < <(cpu_ticks 0); read -r b0 j0 x < <(cpu_ticks "$SRV_CPU"); read -r x x a0 < <(cpu_ticks "")
  s0=$(ptime "${SPID[$3]}"); u0=$(ptime "${SPID[upstream]}")
  { time timeout 60 taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DUR" --latency ${WRK_EXTRA[$3]:-} \
      -H "Authorization: Bearer $(tok "$4")" "$5" > "$log" 2>&1; } 2> "$log.time"
  read -r t1 i1 x < <(cpu_ticks 0); read -r b1 j1 x < <(cpu_ticks "$SRV_CPU"); read -r x x a1 < <(cpu_ticks "")
  s1=$(ptime "${SPID[$3]}"); u1=$(ptime "${SPID[upstream]}"); read -r wall wu ws < "$log.time"
  local rps p50 p99 bad reqs
  rps=$(awk '/^Requests\/sec/ {printf "%d", $2}' "$log"); reqs=$(awk '/requests in/ {print $1}' "$log")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' "$log")"); p99=$(to_ms "$(awk '$1=="99%" {print $2}' "$log")")
  bad=$(awk '/Non-2xx/ {print "non2xx=" $NF} /Socket errors/ {gsub(",", ""); print "sockerr=" $4 + $6 + $8 + $10}' "$log" | paste -sd, -)
  awk -v r="$1" -v p="$2" -v v="$3-$4" -v rps="${rps:-0}" -v p50="$p50" -v p99="$p99" -v bad="${bad:-0}" \
      -v c0="$(( 100 - 100 * (i1 - i0) / (t1 - t0 + 1) ))" -v c1="$(( 100 - 100 * (j1 - j0) / (b1 - b0 + 1) ))" \
      -v srv="$((s1 - s0))" -v up="$((u1 - u0))" -v all="$((a1 - a0))" -v reqs="${reqs:-1}" \
      -v wrk="$(awk -v u="$wu" -v s="$ws" -v hz="$HZ" 'BEGIN {print (u + s) * hz}')" -v wall="$wall" -v hz="$HZ" \
    'BEGIN { other = 100 * (all - srv - up - wrk) / (2 * wall * hz); if (other < 0) other = 0
             printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.1f\t%.0f\n", r, p, v, rps, p50, p99, bad, c0, c1,
                    srv * 1e6 / hz / reqs, other }'
}
RUNS=()   # proto variant token
for v in "${VARIANTS[@]}"; do RUNS+=("http $v rs256_valid"); done
RUNS+=("http haproxy-jwt es256_valid" "http apache-oidc es256_valid" "http meetgate-jwt es256_valid" "http meetgate-nocache es256_valid")
if [ "$TLS" = 1 ]; then
  for v in "${VARIANTS[@]}"; do RUNS+=("https $v rs256_valid"); done
  RUNS+=("https haproxy-jwt es256_valid" "https meetgate-jwt es256_valid" "https meetgate-nocache es256_valid")
fi
url() { if [ "$1" = https ]; then echo "https://127.0.0.1:$((PORT[$2] + 360))${VPATH[$2]:-/}"; else echo "http://127.0.0.1:${PORT[$2]}${VPATH[$2]:-/}"; fi; }

echo; echo "warm-up (2s each, not recorded)"
for r in "${RUNS[@]}"; do set -- $r; DUR=2s load 0 "$1" "$2" "$3" "$(url "$1" "$2")" > /dev/null; done
RES=$OUT/runs.tsv
printf 'round\tproto\tvariant\treq_s\tp50_ms\tp99_ms\terrors\tcpu0_%%\tcpu%s_%%\tsrv_us\tother_%%\n' "$SRV_CPU" | tee "$RES"
measure() {  # like load, but a run disturbed by other load (other % > MAX_OTHER) is redone, up to RETRIES times
  local line try other
  for try in $(seq 0 "$RETRIES"); do
    line=$(load "$@"); other=$(cut -f11 <<< "$line")
    [ "$other" -le "$MAX_OTHER" ] || [ "$try" = "$RETRIES" ] && break
    echo "  (disturbed by other load: $(cut -f3,11 <<< "$line" | tr '\t' ' ')%; retry $((try + 1)) in 10s)" >&2; sleep 10
  done
  echo "$line"
}
for round in $(seq "$ROUNDS"); do
  for r in "${RUNS[@]}"; do set -- $r; measure "$round" "$1" "$2" "$3" "$(url "$1" "$2")"; done | tee -a "$RES"
done

# ---- summary: medians over rounds; ratio = req/s / nginx-pass req/s of the same round+proto ----
echo; echo "medians over $ROUNDS rounds of wrk -t1 -c$CONNS -d$DUR (other = max over rounds); proxies on CPU $SRV_CPU, upstream on CPU $UP_CPU, wrk on CPU $LOAD_CPU" | tee "$OUT/summary.txt"
awk -F'\t' -v R="$ROUNDS" '
  NR == 1 { next }
  { key = $2 "\t" $3; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    if ($7 != "0") err[key] = err[key] "r" $1 ":" $7 " "
    rps[key, $1] = $4; p50[key, $1] = $5; p99[key, $1] = $6; c0[key, $1] = $8; c1[key, $1] = $9
    us[key, $1] = $10; if ($11 > oth[key]) oth[key] = $11
    if ($3 == "nginx-pass-rs256_valid") base[$2, $1] = $4
    if ($3 == "meetgate-pass-rs256_valid") mbase[$2, $1] = $4 }
  function med(arr, key,   i, m, t, v) { m = 0
    for (i = 1; i <= R; i++) v[++m] = arr[key, i]
    for (i = 1; i <= m; i++) for (t = i + 1; t <= m; t++) if (v[t] < v[i]) { x = v[i]; v[i] = v[t]; v[t] = x }
    return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
  END {
    printf "%-6s %-29s %7s %7s %7s %6s %8s %15s %9s %7s %6s  %s\n", "proto", "variant-token", "req/s", "p50_ms", "p99_ms",
      "ratio", "/mg-pass", "ratio/round", "cpu0/srv", "srv_us", "other", "errors"
    for (k = 1; k <= n; k++) { key = order[k]; split(key, f, "\t"); rl = ""
      for (i = 1; i <= R; i++) { ratio[key, i] = rps[key, i] / base[f[1], i]; mratio[key, i] = rps[key, i] / mbase[f[1], i]
                                 rl = rl (i > 1 ? "/" : "") sprintf("%.2f", ratio[key, i]) }
      printf "%-6s %-29s %7d %7.2f %7.2f %6.2f %8.2f %15s %4d/%d%% %7.1f %5d%%  %s\n", f[1], f[2], med(rps, key), med(p50, key),
        med(p99, key), med(ratio, key), med(mratio, key), rl, med(c0, key), med(c1, key), med(us, key), oth[key], (key in err) ? err[key] : "-" }
  }' "$RES" | tee -a "$OUT/summary.txt"

# ---- p99 at 70 % of the maximum rate: meetgate RS256 against meetgate pass-through ----
# Both at the same offered rate, 70 % of the RS256 route's median req/s over
# HTTP above, paced by pace.lua over PACE_CONNS connections.
PACE_CONNS=${PACE_CONNS:-256}
MAXRPS=$(awk -F'\t' '$2 == "http" && $3 == "meetgate-jwt-rs256_valid" {print $4}' "$RES" | sort -n |
  awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)}')
if [ -n "$MAXRPS" ] && [ "$MAXRPS" -gt 0 ]; then
  TARGET=$((MAXRPS * 70 / 100))
  # Per connection: one request every PACE_CONNS/TARGET s; the delay leaves
  # room for the ~0.5 ms the request itself takes at this load (with 256
  # connections the delay is ~25 ms, so the error in the rate stays small).
  PACE_DELAY_MS=$(awk -v c="$PACE_CONNS" -v t="$TARGET" 'BEGIN {d = c * 1000 / t - 0.5; if (d < 1) d = 1; printf "%d", d + 0.5}')
  echo; echo "p99 at 70 % of the max rate: target $TARGET req/s (70 % of meetgate RS256's $MAXRPS), $PACE_CONNS connections, $PACE_DELAY_MS ms between requests per connection, $ROUNDS rounds of $DUR" | tee "$OUT/paced.txt"
  printf '%-6s %-14s %9s %8s %8s\n' round variant "req/s" p50_ms p99_ms | tee -a "$OUT/paced.txt"
  for round in $(seq "$ROUNDS"); do
    for v in meetgate-pass meetgate-jwt; do
      log="$OUT/paced-$round-$v.txt"
      PACE_DELAY_MS=$PACE_DELAY_MS timeout 60 taskset -c "$LOAD_CPU" wrk -t1 -c"$PACE_CONNS" -d"$DUR" --latency \
        -s "$RUN/pace.lua" -H "Authorization: Bearer $(tok rs256_valid)" "$(url http "$v")" > "$log" 2>&1
      printf '%-6s %-14s %9d %8s %8s\n' "$round" "$v" "$(awk '/^Requests\/sec/ {printf "%d", $2}' "$log")" \
        "$(to_ms "$(awk '$1 == "50%" {print $2}' "$log")")" "$(to_ms "$(awk '$1 == "99%" {print $2}' "$log")")"
    done
  done | tee -a "$OUT/paced.txt"
  awk '$2 == "meetgate-pass" {p[$1] = $5} $2 == "meetgate-jwt" {j[$1] = $5}
    END {n = 0; for (r in p) d[++n] = j[r] - p[r]
         for (i = 1; i <= n; i++) for (k = i + 1; k <= n; k++) if (d[k] < d[i]) { x = d[i]; d[i] = d[k]; d[k] = x }
         if (n) printf "p99 added by RS256 over pass-through at that rate (median over rounds): %.2f ms\n", (n % 2) ? d[(n + 1) / 2] : (d[n / 2] + d[n / 2 + 1]) / 2 }' \
    <(tail -n +3 "$OUT/paced.txt") | tee -a "$OUT/paced.txt"
fi

# ---- peak resident memory of each server (its processes' VmHWM, summed) ----
echo; echo "peak RSS per server (VmHWM, MiB):" | tee "$OUT/rss.txt"
for name in upstream nginx-pass haproxy-pass haproxy-jwt apache-pass apache-oidc meetgate; do
  kb=0
  for p in "${SPID[$name]}" $(ps -o pid= --ppid "${SPID[$name]}"); do
    v=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null); kb=$((kb + ${v:-0}))
  done
  printf '  %-13s %6.1f\n' "$name" "$(awk -v k="$kb" 'BEGIN {print k / 1024}')" | tee -a "$OUT/rss.txt"
done

# ---- reference: raw signature-verify ceiling of one core (OpenSSL, no proxy work) ----
echo; echo "openssl speed on CPU $SRV_CPU (verify/s = upper bound for per-request signature checks):" | tee "$OUT/crypto_ceiling.txt"
taskset -c "$SRV_CPU" openssl speed -seconds 2 rsa2048 ecdsap256 2>/dev/null | grep -E 'sign|bits' | tee -a "$OUT/crypto_ceiling.txt"
