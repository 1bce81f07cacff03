#!/usr/bin/env bash
# keys_guard: every benchmark of bench/, one after the other, in bounded
# time (under 30 minutes on 2 cores: 26 and 27 on the second machine of
# the 2026-12-05 10:10 and 10:46 runs), and one report that gathers their
# tables: bench/results/all.md.  Each script's own table keeps its per-round
# ratios and its "met?" column; this one adds how long each took and
# whether it finished.
#
# Run as root on Debian bookworm from anywhere:
#   bash bench/all.sh
#   QUICK=1 bash bench/all.sh      # a few minutes, to see that everything runs
#   ONLY="api_key log" bash bench/all.sh
# Settings (environment):
#   QUICK=0     1: tiny settings (the figures then mean nothing)
#   ONLY=       the benchmarks to run, by name (default: all of them):
#               run soft_delete purge tenants api_key token log cost
#   BENCH_DEPS=1  run scripts/deps.sh first (0: skip)
# Every script runs against a private copy of PostgreSQL with this tree's
# keys_guard installed in it (BENCH_PGROOT, see bench/README.md), made once
# and removed at the end, so nothing another `make install` does during the
# run can change what is measured.
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")/.." && pwd)
bench="$here/bench"
cd "$here"

QUICK=${QUICK:-0}
BENCH_DEPS=${BENCH_DEPS:-1}
ONLY=${ONLY:-run soft_delete purge tenants api_key token log cost}
[ "$(id -u)" -eq 0 ] || { echo "all.sh: run as root (servers are started as the postgres user)" >&2; exit 2; }

if [ "$BENCH_DEPS" = 1 ]; then
  bash "$here/scripts/deps.sh"
fi

pgroot=$(mktemp -d /tmp/keys_guard_bench_all.XXXXXX)
trap 'rm -rf "$pgroot"' EXIT

# <name> <script> <settings> <results file>, in the order they run.  The
# settings bound each one's time; QUICK replaces them.
declare -A full quick results script
script[run]=run.sh;               results[run]=latest.md
full[run]="BENCH_SECONDS=6 ROUNDS=5 B_STARTS=4 B_SECONDS=3";                    quick[run]="BENCH_SECONDS=2 ROUNDS=1 WARMUP_SECONDS=1"
script[soft_delete]=soft_delete.sh; results[soft_delete]=soft_delete.md
full[soft_delete]="ROUNDS=4 C_TRANSACTIONS=20000";      quick[soft_delete]="ROUNDS=1 ROWS=20000 CROWS=20000 C_TRANSACTIONS=2000 BENCH_BREAKDOWN=0"
script[purge]=purge.sh;           results[purge]=purge.md
full[purge]="ROUNDS=3 B_ROUNDS=0 PAIRS=16 BENCH_BREAKDOWN=0 BENCH_EXPLAIN=0"; quick[purge]="ROUNDS=1 ROWS=20000 BACKLOG=50000 B_SECONDS=6 PAIRS=2 PAIRS_PER_ROUND=1 PAIRS_BACKLOG=50000 PAIR_OFF_S=2 PAIR_ON_S=3 BENCH_BREAKDOWN=0 BENCH_EXPLAIN=0"
script[tenants]=tenants.sh;       results[tenants]=tenants.md
full[tenants]="ROUNDS=1 PAIRED_ROUNDS=3 FIRST_SAMPLES=15 BENCH_SECONDS=5 WARMUP_SECONDS=2";       quick[tenants]="ROUNDS=1 BENCH_SECONDS=3 WARMUP_SECONDS=1 TENANTS_LARGE=1000 TABLES_LARGE=100"
script[api_key]=api_key.sh;       results[api_key]=api_key.md
full[api_key]="ROUNDS=5 BENCH_SECONDS=6";                quick[api_key]="ROUNDS=1 BENCH_SECONDS=2 WARMUP_SECONDS=1"
script[token]=token.sh;           results[token]=token.md
full[token]="ROUNDS=5 BENCH_SECONDS=6";                  quick[token]="ROUNDS=1 BENCH_SECONDS=2 WARMUP_SECONDS=1"
script[log]=log.sh;               results[log]=log.md
full[log]="ROUNDS=6 BENCH_SECONDS=6";                    quick[log]="ROUNDS=1 BENCH_SECONDS=2 WARMUP_SECONDS=1"
script[cost]=cost.sh;             results[cost]=cost.md
full[cost]="UNITS=2000";                                 quick[cost]="UNITS=100"

mkdir -p "$bench/results"
report="$bench/results/all.md"
summary=$(mktemp)
body=$(mktemp)
# Every script appends its targets here (record_target in bench/lib.sh).
export KG_TARGETS=$(mktemp)
start_all=$(date +%s)
{
  echo "# keys_guard: every benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before,"
  echo "tree at $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)$([ "$QUICK" = 1 ] && echo ', QUICK=1: tiny settings, the figures mean nothing')."
  echo "Ratios only, each against a baseline measured in the same round."
} >"$report"

for name in $ONLY; do
  [ -n "${script[$name]:-}" ] || { echo "all.sh: no benchmark named $name" >&2; exit 2; }
  settings=${full[$name]}
  [ "$QUICK" = 1 ] && settings=${quick[$name]}
  echo "==> bench/${script[$name]} ($settings)"
  rm -f "$bench/results/${results[$name]}"
  t0=$(date +%s)
  # shellcheck disable=SC2086
  if env $settings BENCH_DEPS=0 BENCH_INSTALL=0 BENCH_PGROOT="$pgroot" \
       bash "$bench/${script[$name]}" >"$pgroot.$name.log" 2>&1; then
    status=finished
  else
    status="**failed** (last lines below)"
  fi
  took=$(( $(date +%s) - t0 ))
  printf '| %s | %s | %d min %02d s | %s |\n' "bench/${script[$name]}" "$settings" $((took / 60)) $((took % 60)) "$status" >>"$summary"
  {
    echo
    echo "## bench/${script[$name]} ($settings), $((took / 60)) min $((took % 60)) s, $status"
    echo
    if [ -f "$bench/results/${results[$name]}" ]; then
      sed '1{/^# /d}' "$bench/results/${results[$name]}"
    else
      echo '```'
      tail -20 "$pgroot.$name.log"
      echo '```'
    fi
  } >>"$body"
  rm -f "$pgroot.$name.log"
done

# The targets, each judged on its spread: met when its worst round clears
# the target, or when its median does by more than the median absolute
# deviation of its rounds; otherwise not met, whatever the median says.
{
  echo
  echo "## Targets"
  echo
  echo "Each target judged on its rounds: **yes** when the worst round clears it; **yes (median ± MAD)**"
  echo "when the median clears it by more than the median absolute deviation of the rounds"
  echo "(MAD); **no** otherwise, even if the median alone clears it. Ratios as in each script's table."
  echo
  echo "| script | what | target | median | MAD | worst round | met? | per-round ratios |"
  echo "|---|---|---|---:|---:|---:|---|---|"
  awk -F'\t' '
    function median(a, n,   i, j, t, b) {
      for (i = 1; i <= n; i++) b[i] = a[i]
      for (i = 2; i <= n; i++) { t = b[i]; for (j = i - 1; j >= 1 && b[j] > t; j--) b[j + 1] = b[j]; b[j + 1] = t }
      return (n % 2) ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
    }
    {
      n = split($5, r, " ")
      if (n == 0) next
      m = median(r, n)
      for (i = 1; i <= n; i++) { d[i] = r[i] - m; if (d[i] < 0) d[i] = -d[i] }
      mad = median(d, n)
      worst = r[1]
      for (i = 2; i <= n; i++) {
        if ($3 == ">=" && r[i] < worst) worst = r[i]
        if ($3 == "<=" && r[i] > worst) worst = r[i]
        if ($3 == "~") { a = r[i] - 1; if (a < 0) a = -a; b = worst - 1; if (b < 0) b = -b; if (a > b) worst = r[i] }
      }
      if ($3 == ">=") { ok_worst = worst >= $4; ok_med = m - mad >= $4; tgt = "≥ " $4 }
      else if ($3 == "<=") { ok_worst = worst <= $4; ok_med = m + mad <= $4; tgt = "≤ " $4 }
      else { w = worst - 1; if (w < 0) w = -w; md = m - 1; if (md < 0) md = -md
             ok_worst = w <= $4; ok_med = md + mad <= $4; tgt = sprintf("within ±%.3f of 1", $4) }
      met = ok_worst ? "yes" : (ok_med ? "yes (median ± MAD)" : "**no**")
      printf "| %s | %s | %s | %.3f | %.3f | %.3f | %s | %s |\n", $1, $2, tgt, m, mad, worst, met, $5
    }' "$KG_TARGETS"
} >>"$report"
cat "$body" >>"$report"
rm -f "$body" "$KG_TARGETS"
{
  echo
  echo "## Runs"
  echo
  echo "| script | settings | took | |"
  echo "|---|---|---|---|"
  cat "$summary"
  echo
  echo "All of it: $(( ($(date +%s) - start_all) / 60 )) min."
} >>"$report"
rm -f "$summary"
cat "$report"
