#!/usr/bin/env bash
# keys_guard benchmark of the server log's redaction (README, "Secrets in
# the server log"; target: docs/contract.md §14, at most 5 % slower):
#
#   pgbench -S (select-only, built-in tables) with every statement logged
#   (log_statement = all, logging_collector writing stderr format to a
#   file), on a server with keys_guard preloaded (its emit_log_hook scans
#   every line for secrets) vs the same server without it preloaded.
#
# Everything runs against one throw-away cluster (initdb in a temp dir, Unix
# socket only, removed on exit).  The machine may be small and shared, so
# absolute tps mean little: each round runs both modes back to back, in
# alternating order, restarting the server, pg_prewarm-ing the tables and
# warming up before each run; the result is the median over rounds of the
# per-round ratio keys_guard / baseline.  The log directory is emptied
# after every run (the files grow by tens of MB per run).
#
# Run as root on Debian bookworm from anywhere:
#   bash bench/log.sh
# Settings (environment):
#   BENCH_SECONDS=10   length of each measured pgbench run
#   ROUNDS=5           interleaved rounds
#   WARMUP_SECONDS=3   unmeasured pgbench run before measuring
#   CLIENTS=2 JOBS=2   pgbench -c / -j
#   SCALE=10           pgbench scale
#   PGBENCH_MODE=prepared   pgbench -M (simple: the statement text carries
#                      the literal; prepared/extended: the "execute" line
#                      carries a "parameters: $1 = ..." detail)
#   BENCH_INSTALL=1    build and `make install` the tree first (0: benchmark
#                      the keys_guard already installed for PostgreSQL 15)
#   BENCH_DEPS=1       run scripts/deps.sh first (0: skip)
#   BENCH_LIBRARY=     a keys_guard.so to preload instead of the installed
#                      one (copied into the work directory, which goes first
#                      on dynamic_library_path, so that the preloaded library
#                      and the background workers load the copy), for
#                      machines where others `make install` during the run;
#                      pgbench -S calls no keys_guard SQL function, which
#                      would load the installed library ($libdir/keys_guard)
# Writes the result table to stdout and to bench/results/log.md (raw
# per-run numbers in bench/results/log.tsv).
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")/.." && pwd)
bench="$here/bench"
cd "$here"

BENCH_SECONDS=${BENCH_SECONDS:-10}
ROUNDS=${ROUNDS:-5}
WARMUP_SECONDS=${WARMUP_SECONDS:-3}
CLIENTS=${CLIENTS:-2}
JOBS=${JOBS:-2}
SCALE=${SCALE:-10}
PGBENCH_MODE=${PGBENCH_MODE:-prepared}
BENCH_INSTALL=${BENCH_INSTALL:-1}
BENCH_DEPS=${BENCH_DEPS:-1}
BENCH_LIBRARY=${BENCH_LIBRARY:-}

for v in BENCH_SECONDS ROUNDS WARMUP_SECONDS CLIENTS JOBS SCALE; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "log.sh: $v must be a whole number" >&2; exit 2; }
done
[ "$ROUNDS" -ge 1 ] && [ "$BENCH_SECONDS" -ge 1 ] || { echo "log.sh: ROUNDS and BENCH_SECONDS must be >= 1" >&2; exit 2; }
[[ $PGBENCH_MODE =~ ^(simple|extended|prepared)$ ]] || { echo "log.sh: PGBENCH_MODE is simple, extended or prepared" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "log.sh: run as root (servers are started as the postgres user)" >&2; exit 2; }

repro="cd $here && BENCH_SECONDS=$BENCH_SECONDS ROUNDS=$ROUNDS WARMUP_SECONDS=$WARMUP_SECONDS"
repro+=" CLIENTS=$CLIENTS JOBS=$JOBS SCALE=$SCALE PGBENCH_MODE=$PGBENCH_MODE BENCH_INSTALL=$BENCH_INSTALL"
[ -n "$BENCH_LIBRARY" ] && repro+=" BENCH_LIBRARY=$BENCH_LIBRARY"
repro+=" bash bench/log.sh"

. "$bench/lib.sh"

# --- throw-away cluster -----------------------------------------------------

new_workdir keys_guard_bench_log

cleanup() {
  local rc=$?
  finish_run $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

use_free_port 55532

init_cluster
logdir="$work/serverlog"
mkdir -p "$logdir"
chown postgres:postgres "$logdir"
cat >>"$pgdata/postgresql.conf" <<EOF
shared_buffers = 256MB
logging_collector = on
log_destination = 'stderr'
log_directory = '$logdir'
log_filename = 'postgresql-%Y%m%d-%H%M%S.log'
log_rotation_size = 0
log_rotation_age = 0
log_line_prefix = '%m [%p] %q%u@%d '
log_statement = all
EOF

# What "preloaded" preloads: the installed library, or a private copy.
preload_name=keys_guard
if [ -n "$BENCH_LIBRARY" ]; then
  cp "$BENCH_LIBRARY" "$work/keys_guard.so"
  chmod 644 "$work/keys_guard.so"
  libfile="$work/keys_guard.so"
  libsum=$(md5sum "$libfile" | cut -c1-12)
  echo "dynamic_library_path = '$work:\$libdir'" >>"$pgdata/postgresql.conf"
fi

# start_server <preload: 0|1>: (re)start with or without keys_guard preloaded.
start_server() {
  local libs=''
  [ "$1" = 1 ] && libs=$preload_name
  if [ "$server_up" = 1 ]; then
    runuser -u postgres -- pg_ctl -D "$pgdata" -m fast -w stop >/dev/null
    server_up=0
  fi
  check_library
  runuser -u postgres -- pg_ctl -D "$pgdata" -l "$work/server.log" -w -t 120 \
    -o "-c shared_preload_libraries='$libs'" start >/dev/null
  server_up=1
  local i
  for i in $(seq 1 600); do
    pg_isready -q -d postgres -U postgres && break
    [ "$i" = 600 ] && { echo "server did not become ready" >&2; return 1; }
    sleep 0.1
  done
  local got
  got=$(psql -X -At -U postgres -d postgres -c "SHOW shared_preload_libraries")
  [ "$got" = "$libs" ] || { echo "shared_preload_libraries is '$got', expected '$libs'" >&2; return 1; }
}

stop_server() {
  if [ "$server_up" = 1 ]; then
    runuser -u postgres -- pg_ctl -D "$pgdata" -m fast -w stop >/dev/null
    server_up=0
  fi
}

psql_su() { psql -X -q -v ON_ERROR_STOP=1 -U postgres "$@"; }

# run_pgbench <label> <seconds>: prints tps.
run_pgbench() {
  local label=$1 secs=$2
  local out="$work/pgbench.$label.out"
  if ! pgbench -n -S -M "$PGBENCH_MODE" -c "$CLIENTS" -j "$JOBS" -T "$secs" -U bench_app kg_pgbench \
       >"$out" 2>&1; then
    echo "pgbench ($label) failed:" >&2
    tail -20 "$out" >&2
    return 1
  fi
  if grep -q 'number of failed transactions: [1-9]' "$out"; then
    echo "pgbench ($label) had failed transactions:" >&2
    cat "$out" >&2
    return 1
  fi
  awk '/^tps = / { print $3; found = 1 } END { exit !found }' "$out"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

raw="$work/raw.tsv"
printf 'round\tvariant\ttps\tlog_lines\tcpu_us_per_xact\n' >"$raw"

start_epoch=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start_server 1

log "pgbench -i -s $SCALE"
psql_su -d postgres -c "CREATE DATABASE kg_pgbench"
pgbench -i -q -s "$SCALE" -U postgres kg_pgbench >"$work/pgbench-init.log" 2>&1
psql_su -d kg_pgbench <<'EOF' >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION keys_guard;
CREATE EXTENSION pg_prewarm;
CREATE ROLE bench_app LOGIN;
GRANT keys_guard_gateway TO bench_app;
GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO bench_app;
VACUUM (FREEZE, ANALYZE);
CHECKPOINT;
EOF

# One measured run: restart in the wanted mode, prewarm, warm up, empty the
# log, measure; then count the lines the run logged (tps in $tps, lines in
# $lines) and empty the log directory.
measure() {
  local label=$1 preload=$2
  start_server "$preload"
  psql_su -d kg_pgbench -c "SELECT pg_prewarm('pgbench_accounts'), pg_prewarm('pgbench_accounts_pkey'),
                                   pg_prewarm('pgbench_branches'), pg_prewarm('pgbench_tellers')" >/dev/null
  if [ "$WARMUP_SECONDS" -gt 0 ]; then
    run_pgbench "warm.$label" "$WARMUP_SECONDS" >/dev/null
  fi
  sleep 0.5   # the warm-up's backends exit and are reaped
  local cpu0 pgb0 cpu1 pgb1
  cpu0=$(server_cpu); children_cpu; pgb0=$children_ticks
  tps=$(run_pgbench "$label" "$BENCH_SECONDS")
  sleep 0.5
  cpu1=$(server_cpu); children_cpu; pgb1=$children_ticks
  cpu=$(cpu_per_xact $((cpu1 - cpu0)) $((pgb1 - pgb0)) "$work/pgbench.$label.out")
  stop_server
  lines=$(cat "$logdir"/* | grep -c 'statement: \|execute ' || true)
  if [ "${lines:-0}" -lt 1 ]; then
    echo "log.sh: the server log of $label has no statement lines" >&2
    return 1
  fi
  rm -f "$logdir"/*
}

for r in $(seq 1 "$ROUNDS"); do
  # A B, then B A: alternate which mode goes first.
  if [ $((r % 2)) = 1 ]; then order=(off on); else order=(on off); fi
  line="round $r/$ROUNDS:"
  for m in "${order[@]}"; do
    if [ "$m" = on ]; then measure "log.$r.on" 1; else measure "log.$r.off" 0; fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$m" "$tps" "$lines" "$cpu" >>"$raw"
    line+=" preload_$m=$tps ($lines lines, $cpu us CPU/xact)"
  done
  log "$line"
done

check_library
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date +%s) - start_epoch ))

# --- report -------------------------------------------------------------------

tps_of() { awk -F'\t' -v v="$1" 'NR > 1 && $2 == v { print $3 }' "$raw"; }
ratios() {
  awk -F'\t' 'NR > 1 && $2 == "on" { x[$1] = $3 } NR > 1 && $2 == "off" { y[$1] = $3 }
    END { for (r = 1; r in x; r++) printf "%.4f\n", x[r] / y[r] }' "$raw"
}

base=$(tps_of off | median)
kg=$(tps_of on | median)
ratio=$(ratios | median)
all=$(ratios | paste -sd' ')
slower=$(awk -v r="$ratio" 'BEGIN { printf "%.1f %%", (1 - r) * 100 }')
cpu_ratios() {
  awk -F'\t' 'NR > 1 && $2 == "on" { x[$1] = $5 } NR > 1 && $2 == "off" { y[$1] = $5 }
    END { for (r = 1; r in x; r++) printf "%.4f\n", x[r] / y[r] }' "$raw"
}
cpu_base=$(awk -F'\t' 'NR > 1 && $2 == "off" { print $5 }' "$raw" | median)
cpu_kg=$(awk -F'\t' 'NR > 1 && $2 == "on" { print $5 }' "$raw" | median)
cpu_ratio=$(cpu_ratios | median)
cpu_all=$(cpu_ratios | paste -sd' ')
cpu_slower=$(awk -v r="$cpu_ratio" 'BEGIN { printf "%.1f %%", (1 - 1 / r) * 100 }')
cpu_met=$(awk -v r="$cpu_ratio" 'BEGIN { print ((1 - 1 / r) * 100 <= 5) ? "yes" : "**no**" }')
met=$(awk -v r="$ratio" 'BEGIN { print ((1 - r) * 100 <= 5) ? "yes" : "**no**" }')
record_target "pgbench -S with log_statement = all, preloaded vs not: tps" ">=" 0.95 $(ratios)
record_target "the same: CPU per transaction (not preloaded / preloaded)" ">=" 0.95 $(cpu_ratios | awk '{ printf "%.4f\n", 1 / $1 }')

commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$here" diff --quiet HEAD -- src 2>/dev/null || commit+=" (src modified)"

report="$work/report.md"
{
  echo "# keys_guard log redaction benchmark results"
  echo
  if [ -n "$BENCH_LIBRARY" ]; then built="a copy of $BENCH_LIBRARY";
  elif [ "$BENCH_INSTALL" = 1 ]; then built="built and installed from this tree"; else built="as installed before the run"; fi
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), tree at commit $commit, keys_guard.so ($built) md5 $libsum,"
  echo "$(pgbench --version | sed 's/^pgbench (\(PostgreSQL\))/\1/'), $(nproc) CPUs, load average $load_before before / $load_after after, $elapsed s."
  echo "Each run: pgbench -n -S -M $PGBENCH_MODE -c $CLIENTS -j $JOBS -T $BENCH_SECONDS, scale $SCALE, as bench_app;"
  echo "log_statement = all, logging_collector = on, stderr format to a file; $ROUNDS interleaved rounds;"
  echo "**ratio = median over rounds of (keys_guard tps / baseline tps) measured in the same round**; tps columns are medians."
  echo
  echo "| what | baseline tps | keys_guard tps | ratio | % slower | target | met? | per-round ratios |"
  echo "|---|---:|---:|---:|---:|---|---|---|"
  printf '| %s | %.0f | %.0f | %.3f | %s | %s | %s | %s |\n' \
    "\`pgbench -S\` with \`log_statement = all\`, keys_guard preloaded vs not preloaded" \
    "$base" "$kg" "$ratio" "$slower" "≤ 5 % slower" "$met" "$all"
  echo
  echo "CPU time per transaction (server processes, the log collector included, and pgbench), the measure that other load on the machine hardly moves:"
  echo
  echo "| what | baseline µs/xact | keys_guard µs/xact | ratio | throughput it allows | target | met? | per-round ratios |"
  echo "|---|---:|---:|---:|---:|---|---|---|"
  printf '| the same | %.1f | %.1f | %.3f | %s slower | %s | %s | %s |\n' \
    "$cpu_base" "$cpu_kg" "$cpu_ratio" "$cpu_slower" "≤ 5 % slower" "$cpu_met" "$cpu_all"
  echo
  echo "Reproduce:"
  echo
  echo '```'
  echo "$repro"
  echo '```'
} >"$report"

mkdir -p "$bench/results"
cp "$report" "$bench/results/log.md"
cp "$raw" "$bench/results/log.tsv"
echo
cat "$report"
echo
echo "(written to bench/results/log.md; raw runs in bench/results/log.tsv)"
