#!/usr/bin/env bash
# A/B of two meetgate revisions on the load rig: proxy CPU µs/request and req/s of the
# pass-through route (/pass) and the RS256 routes (/jwt: verified-token cache on,
# /jwt-nocache: every request verified), over TLS, the two builds alternating.
#
#   bash benches/ab.sh REV_BEFORE REV_AFTER [DIR]     # DIR: scratch dir (default /srv/meetgate-ab)
#
# Build: each revision in its own git worktree (DIR/src-before, DIR/src-after; removed at the
# end) and target dir (DIR/target-before, -after; kept), with the same release profile:
# Cargo.toml's, overridden by LTO (default thin) and CGU (default 16) to keep build time
# sane; cargo -j JOBS (1). BIN_BEFORE / BIN_AFTER: use these binaries, skip that build.
# Rig: benches/load.sh's, meetgate only: benches/peers/setup.sh with SERVERS="nginx wrk"
# (nginx upstream, RS256 token, self-signed cert), benches/peers/conf/upstream-nginx.conf,
# benches/load/meetgate.toml.in. Upstream and wrk on LOAD_CPU (0), meetgate on SRV_CPU (1).
# Rounds: ROUNDS (5) rounds; in each, both builds one after the other (BEFORE first in odd
# rounds, AFTER first in even ones), one meetgate at a time: start it, check 200/401, warm
# up 2 s per route, wrk -t1 -cCONNS (32) -dDUR (8s) per route, stop it.
# Per run: req/s, srv_us = meetgate's utime+stime (/proc/PID/stat) over the run ÷ requests,
# busy % of CPU 0 and of SRV_CPU, other % = SRV_CPU time used by anything but meetgate (the
# machine may be shared: a run with other % > MAX_OTHER (10) is redone, up to RETRIES (2) times).
# Output: DIR/ab/runs.tsv (raw) and DIR/ab/summary.txt: medians, min-max, and per build the
# ratio srv_us(RS256 route) ÷ srv_us(/pass), with AFTER's ratio against BEFORE's (±5 %).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${1:?usage: ab.sh REV_BEFORE REV_AFTER [DIR]} A=${2:?usage: ab.sh REV_BEFORE REV_AFTER [DIR]}
DIR=${3:-/srv/meetgate-ab}
ROUNDS=${ROUNDS:-5} DUR=${DUR:-8s} CONNS=${CONNS:-32} SRV_CPU=${SRV_CPU:-1} LOAD_CPU=${LOAD_CPU:-0}
MAX_OTHER=${MAX_OTHER:-10} RETRIES=${RETRIES:-2}
mkdir -p "$DIR" && chmod 755 "$DIR" && DIR=$(cd "$DIR" && pwd)
declare -A REV=([before]=$(git -C "$ROOT" rev-parse "$B^{commit}") [after]=$(git -C "$ROOT" rev-parse "$A^{commit}"))
declare -A BIN=([before]=${BIN_BEFORE:-} [after]=${BIN_AFTER:-})
[ -f "$DIR/tokens/claims.env" ] && command -v wrk >/dev/null && command -v nginx >/dev/null ||
  SERVERS="nginx wrk" bash "$ROOT/benches/peers/setup.sh" "$DIR"
. "$DIR/tokens/claims.env"

# ---- build (same profile for both) ----
for w in before after; do
  [ -n "${BIN[$w]}" ] && continue
  git -C "$ROOT" worktree add --detach --force "$DIR/src-$w" "${REV[$w]}" >/dev/null
  (cd "$DIR/src-$w" && CARGO_TARGET_DIR="$DIR/target-$w" CARGO_PROFILE_RELEASE_LTO=${LTO:-thin} \
     CARGO_PROFILE_RELEASE_CODEGEN_UNITS=${CGU:-16} cargo build --release --locked -j "${JOBS:-1}" --quiet)
  git -C "$ROOT" worktree remove --force "$DIR/src-$w"
  BIN[$w]=$DIR/target-$w/release/meetgate
done

# ---- rig: upstream nginx (stopped on exit with whichever meetgate runs) ----
RUN=$DIR/ab/run OUT=$DIR/ab
rm -rf "$RUN" && mkdir -p "$RUN"
for f in "$ROOT"/benches/peers/conf/upstream-nginx.conf "$ROOT"/benches/load/meetgate.toml.in; do
  sed -e "s#@DIR@/run/#$RUN/#g" -e "s#@DIR@#$DIR#g" -e "s#@ISS@#$ISS#g" -e "s#@AUD@#$AUD#g" "$f" > "$RUN/$(basename "$f" .in)"
done
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done; echo "stopped PIDs: ${PIDS[*]}"' EXIT
trap 'exit 130' INT TERM
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; return 1; }
taskset -c "$LOAD_CPU" nginx -c "$RUN/upstream-nginx.conf" -p "$RUN/" -e "$RUN/upstream-error.log" > "$RUN/upstream.out" 2>&1 &
PIDS+=($!); wait_port 18080

TOKEN=$(cat "$DIR/tokens/rs256_valid.jwt") BAD=$(cat "$DIR/tokens/bad_sig.jwt") URL=https://127.0.0.1:18446
HZ=$(getconf CLK_TCK)
ticks() { awk -v c="cpu$1" '$1 == c {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat; }   # total, idle
ptime() { local f; read -ra f <<< "$(cut -d')' -f2- "/proc/$1/stat")"; echo $((f[11] + f[12])); }
start_meetgate() {  # build
  RUST_LOG=warn taskset -c "$SRV_CPU" "${BIN[$1]}" --log-format json run --config "$RUN/meetgate.toml" > "$RUN/meetgate-$1.out" 2>&1 &
  MPID=$!; PIDS+=($MPID)
  wait_port 18446 || { echo "meetgate ($1) did not start: $RUN/meetgate-$1.out"; exit 1; }
  local s; s=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" $URL/jwt-nocache)
  s+=" $(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $BAD" $URL/jwt-nocache)"
  s+=" $(curl -sk -o /dev/null -w '%{http_code}' $URL/pass)"
  [ "$s" = "200 401 200" ] || { echo "meetgate ($1): got '$s', expected '200 401 200'"; exit 1; }
}
stop_meetgate() { kill "$MPID"; wait "$MPID" 2>/dev/null || true; PIDS=("${PIDS[0]}"); }
run() {  # round build route duration -> one tsv line
  local log=$OUT/wrk-$1-$2-${3#/}.txt t0 i0 t1 i1 c0 j0 c1 j1 s0 s1 reqs rps bad
  read -r t0 i0 < <(ticks "$SRV_CPU"); read -r c0 j0 < <(ticks "$LOAD_CPU"); s0=$(ptime "$MPID")
  timeout 60 taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$4" -H "Authorization: Bearer $TOKEN" "$URL$3" > "$log" 2>&1
  read -r t1 i1 < <(ticks "$SRV_CPU"); read -r c1 j1 < <(ticks "$LOAD_CPU"); s1=$(ptime "$MPID")
  rps=$(awk '/^Requests\/sec/ {printf "%d", $2}' "$log"); reqs=$(awk '/requests in/ {print $1}' "$log")
  bad=$(awk '/Non-2xx|Socket errors/ {printf "%s", $0}' "$log")
  awk -v r="$1" -v b="$2" -v p="$3" -v rps="$rps" -v us="$(( (s1 - s0) ))" -v reqs="$reqs" -v hz="$HZ" -v bad="${bad:--}" \
      -v l="$((t1 - t0))" -v li="$((i1 - i0))" -v c="$((c1 - c0))" -v ci="$((j1 - j0))" 'BEGIN {
    printf "%s\t%s\t%s\t%s\t%.1f\t%.0f\t%.0f\t%.1f\t%s\n", r, b, p, rps, us * 1e6 / hz / reqs,
      100 * (c - ci) / c, 100 * (l - li) / l, 100 * ((l - li) - us) / l, bad }'
}
ROUTES=(/pass /jwt /jwt-nocache)
RES=$OUT/runs.tsv
printf 'round\tbuild\troute\treq_s\tsrv_us\tcpu%s_%%\tcpu%s_%%\tother_%%\terrors\n' "$LOAD_CPU" "$SRV_CPU" | tee "$RES"
for round in $(seq "$ROUNDS"); do
  order=(before after); [ $((round % 2)) = 0 ] && order=(after before)
  for w in "${order[@]}"; do
    start_meetgate "$w"
    for p in "${ROUTES[@]}"; do run 0 "$w" "$p" 2s > /dev/null; done
    for p in "${ROUTES[@]}"; do
      for try in $(seq 0 "$RETRIES"); do   # a run with other % > MAX_OTHER is redone, 5 s later
        line=$(run "$round" "$w" "$p" "$DUR"); other=$(cut -f8 <<< "$line")
        awk -v o="$other" -v m="$MAX_OTHER" 'BEGIN {exit !(o <= m)}' || [ "$try" = "$RETRIES" ] && break
        echo "  (disturbed: $(cut -f1-3,8 <<< "$line" | tr '\t' ' ') %; retry $((try + 1)))" >&2; sleep 5
      done
      echo "$line"
    done | tee -a "$RES"
    stop_meetgate
  done
done

# ---- summary ----
{
  echo "A/B: BEFORE ${REV[before]}  AFTER ${REV[after]}"
  echo "$ROUNDS rounds, wrk -t1 -c$CONNS -d$DUR over TLS; meetgate on CPU $SRV_CPU, upstream + wrk on CPU $LOAD_CPU"
  echo "profile: release, LTO=${LTO:-thin} CGU=${CGU:-16}${BIN_BEFORE:+ (BIN_BEFORE=$BIN_BEFORE)}${BIN_AFTER:+ (BIN_AFTER=$BIN_AFTER)}"
  awk -F'\t' 'NR > 1 { k = $2 " " $3; n[k]++; rps[k, n[k]] = $4; us[k, n[k]] = $5; oth[k, n[k]] = $8
                       per[$2, $3, $1] = $5 }
    function med(a, k, m,   i, j, v, x) { for (i = 1; i <= m; i++) v[i] = a[k, i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
      lo = v[1]; hi = v[m]; return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
    END {
      printf "\n%-7s %-12s %8s %15s %8s %15s %9s\n", "build", "route", "req/s", "(min-max)", "srv_us", "(min-max)", "other%max"
      for (b = 1; b <= 2; b++) for (r = 1; r <= 3; r++) { bn = (b == 1) ? "before" : "after"; rn = (r == 1) ? "/pass" : (r == 2) ? "/jwt" : "/jwt-nocache"
        k = bn " " rn; m = n[k]; if (!m) continue
        R = med(rps, k, m); rl = lo; rh = hi; U = med(us, k, m); ul = lo; uh = hi; med(oth, k, m)
        M[bn, rn] = U
        for (i = 1; i <= m; i++) { rr[bn, rn, i] = per[bn, rn, i] / per[bn, "/pass", i] }
        printf "%-7s %-12s %8d %15s %8.1f %15s %9.1f\n", bn, rn, R, sprintf("(%d-%d)", rl, rh), U, sprintf("(%.1f-%.1f)", ul, uh), hi }
      print "\nratio = srv_us(route) / srv_us(/pass): of the medians; [median, min-max of the per-round ratios]"
      for (r = 2; r <= 3; r++) { rn = (r == 2) ? "/jwt" : "/jwt-nocache"
        for (b = 1; b <= 2; b++) { bn = (b == 1) ? "before" : "after"
          for (i = 1; i <= m; i++) q[bn, i] = rr[bn, rn, i]; PR[bn] = med(q, bn, m); pl[bn] = lo; ph[bn] = hi
          Q[bn] = M[bn, rn] / M[bn, "/pass"] }
        d = 100 * (Q["after"] / Q["before"] - 1)
        printf "%-12s before %.3f [%.3f, %.3f-%.3f]  after %.3f [%.3f, %.3f-%.3f]  after/before %+.1f %%: %s\n", rn,
          Q["before"], PR["before"], pl["before"], ph["before"], Q["after"], PR["after"], pl["after"], ph["after"], d,
          (d <= 5 && d >= -5) ? "within 5 %" : "NOT within 5 %" }
    }' "$RES"
} | tee "$OUT/summary.txt"
