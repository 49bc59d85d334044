#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the gateway's parsers:
# each target runs for SECONDS on its committed corpus (fuzz/corpus/TARGET),
# one at a time, single process, no sanitizer (`-s none`: the stable
# toolchain suffices). Then the corpus is minimized (`cargo fuzz cmin`, by
# edges) so what is committed stays small.
#
#   bash benches/fuzz.sh [SECONDS=60] [TARGET...]     (default: every target)
#
# Prints per target the executions, the coverage libFuzzer reached (`cov:`
# edges, `ft:` features) from its final stats line, the corpus size and the
# crashes, and writes the same to benches/results/DATE-fuzz-TARGET.txt.
# Exits 1 when a target crashed, leaked, hung (-timeout=10 s per input) or
# ran out of memory; the reproducer is in fuzz/artifacts/TARGET/. Move it
# to fuzz/regressions/TARGET/ with the fix (the corpus replay test in
# `cargo test` then runs it for good).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_PER_TARGET=${1:-60}
shift || true
ALL=(route config jwt jwks zoom_app_context webhook respond_body)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
cd "$ROOT"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build -s none
DATE=$(date -u +%F)
mkdir -p benches/results
LOG=$(mktemp "${TMPDIR:-/tmp}/meetgate-fuzz.XXXXXX")
trap 'rm -f "$LOG"' EXIT

failed=0
for t in "${TARGETS[@]}"; do
  corpus=fuzz/corpus/$t
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  before=$(find "$corpus" -type f | wc -l)
  crashes_before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  status=0
  cargo fuzz run -s none "$t" "$corpus" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$LOG" 2>&1 || status=$?
  last=$(grep -E '^#[0-9]+' "$LOG" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOG")
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' <<<"$last" || echo "cov: ? ft: ?")
  grown=$(find "$corpus" -type f | wc -l)
  if [ "$status" -eq 0 ]; then
    # Edges only (no hit counts): every edge reached stays covered, with a
    # few hundred files instead of thousands.
    cargo fuzz cmin -s none "$t" "$corpus" -- -use_counters=0 >/dev/null 2>&1
  fi
  after=$(find "$corpus" -type f | wc -l)
  crashes=$(( $(find "fuzz/artifacts/$t" -type f | wc -l) - crashes_before ))
  report=$(cat <<EOF
# bash benches/fuzz.sh $SECONDS_PER_TARGET $t ($DATE, $(nproc) CPUs, $(cargo fuzz --version), $(rustc --version))
target: $t
seconds: $SECONDS_PER_TARGET
executions: ${execs:-?} (${rate:-?}/s)
coverage: $cov
final stats line: $last
corpus: $before files before, $grown after the run, $after after cmin
crashes: $crashes (libFuzzer exit status $status)
EOF
)
  echo "$report"
  echo
  echo "$report" >"benches/results/$DATE-fuzz-$t.txt"
  if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed=1
    echo "fuzz: $t failed; the last lines of libFuzzer's output:"
    tail -40 "$LOG"
  fi
done
exit "$failed"
