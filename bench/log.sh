#!/usr/bin/env bash
# keys_guard benchmark of the server log's redaction (README, "Secrets in
# the server log"; target: docs/contract.md §14, at most 5 % slower):
#
#   pgbench -S's statement (select-only, built-in tables) with every
#   statement logged (log_statement = all, logging_collector writing stderr
#   format to a file), on a server with keys_guard preloaded (its
#   emit_log_hook scans every line for secrets) vs an identical server
#   without it.
#
# Two throw-away clusters (initdb in temp dirs, Unix sockets only, removed
# on exit).  The machine may be small and shared, and its speed changes
# from one second to the next, so the two sides run at the same time:
# bench/pairbench.c alternates the statement between the servers, statement
# by statement, pinned with them to one CPU (BENCH_CPU).  Every round
# restarts both servers, loads their tables into shared buffers and empties
# their log directories (the files grow by tens of MB per round); the
# result is the median over rounds of the per-round ratio of mean latencies
# (baseline / keys_guard: the throughput ratio).
#
# Run as root on Debian bookworm from anywhere:
#   bash bench/log.sh
# Settings (environment):
#   BENCH_SECONDS=10   length of each measured alternation
#   ROUNDS=5           rounds
#   WARMUP_SECONDS=3   unmeasured alternation before it
#   SCALE=10           pgbench scale
#   PGBENCH_MODE=prepared   as pgbench -M (simple: the statement text
#                      carries the literal; prepared: the "execute" line
#                      carries a "parameters: $1 = ..." detail)
#   BENCH_CPU=0        the CPU to pin both servers and pairbench to (none:
#                      do not pin)
#   PAIRBENCH_BURST=1  statements in a row on one server before the other
#                      (pairbench -b; 1: strictly alternated)
#   BENCH_INSTALL=1    build and `make install` the tree first (0: benchmark
#                      the keys_guard already installed for PostgreSQL 15)
#   BENCH_DEPS=1       run scripts/deps.sh first (0: skip)
#   BENCH_LIBRARY=     a keys_guard.so to preload instead of the installed
#                      one (copied into the work directory, which goes first
#                      on dynamic_library_path, so that the preloaded library
#                      and the background workers load the copy), for
#                      machines where others `make install` during the run;
#                      the statement calls no keys_guard SQL function, which
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
SCALE=${SCALE:-10}
PGBENCH_MODE=${PGBENCH_MODE:-prepared}
BENCH_INSTALL=${BENCH_INSTALL:-1}
BENCH_DEPS=${BENCH_DEPS:-1}
BENCH_LIBRARY=${BENCH_LIBRARY:-}
BENCH_CPU=${BENCH_CPU:-0}

for v in BENCH_SECONDS ROUNDS WARMUP_SECONDS SCALE; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "log.sh: $v must be a whole number" >&2; exit 2; }
done
[ "$ROUNDS" -ge 1 ] && [ "$BENCH_SECONDS" -ge 1 ] || { echo "log.sh: ROUNDS and BENCH_SECONDS must be >= 1" >&2; exit 2; }
[[ $PGBENCH_MODE =~ ^(simple|prepared)$ ]] || { echo "log.sh: PGBENCH_MODE is simple or prepared" >&2; exit 2; }
[[ $BENCH_CPU =~ ^([0-9]+|none)$ ]] || { echo "log.sh: BENCH_CPU is a CPU number or none" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "log.sh: run as root (servers are started as the postgres user)" >&2; exit 2; }

repro="cd $here && BENCH_SECONDS=$BENCH_SECONDS ROUNDS=$ROUNDS WARMUP_SECONDS=$WARMUP_SECONDS"
repro+=" SCALE=$SCALE PGBENCH_MODE=$PGBENCH_MODE BENCH_CPU=$BENCH_CPU BENCH_INSTALL=$BENCH_INSTALL"
[ "${PAIRBENCH_BURST:-1}" != 1 ] && repro+=" PAIRBENCH_BURST=$PAIRBENCH_BURST"
[ -n "$BENCH_LIBRARY" ] && repro+=" BENCH_LIBRARY=$BENCH_LIBRARY"
repro+=" bash bench/log.sh"

. "$bench/lib.sh"

# --- throw-away cluster -----------------------------------------------------

new_workdir keys_guard_bench_log

base_up=0
cleanup() {
  local rc=$?
  if [ "$base_up" = 1 ]; then
    runuser -u postgres -- pg_ctl -D "$work/base" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  finish_run $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

use_free_port 55532

# The server with keys_guard ($pgdata) and the one without ($work/base),
# configured alike; each logs to its own directory.
base_pgdata="$work/base"
base_port=$((port + 1))
while [ -e "/var/run/postgresql/.s.PGSQL.$base_port" ] || [ -e "/tmp/.s.PGSQL.$base_port" ]; do
  base_port=$((base_port + 1))
done
init_cluster
pgdata=$base_pgdata port=$base_port init_cluster
logdir="$work/serverlog"
base_logdir="$work/baselog"
for d in "$pgdata:$logdir" "$base_pgdata:$base_logdir"; do
  mkdir -p "${d#*:}"
  chown postgres:postgres "${d#*:}"
  cat >>"${d%%:*}/postgresql.conf" <<EOF
shared_buffers = 256MB
logging_collector = on
log_destination = 'stderr'
log_directory = '${d#*:}'
log_filename = 'postgresql-%Y%m%d-%H%M%S.log'
log_rotation_size = 0
log_rotation_age = 0
log_line_prefix = '%m [%p] %q%u@%d '
log_statement = all
EOF
done

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

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

raw="$work/raw.tsv"
printf 'round\tvariant\tlatency_us\tstatements\tlog_lines\n' >"$raw"

start_epoch=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start_server 1
runuser -u postgres -- pg_ctl -D "$base_pgdata" -l "$work/base.log" -w -t 120 start >/dev/null
base_up=1

log "pgbench -i -s $SCALE on both servers; building bench/pairbench.c"
build_pairbench
for p in "$port" "$base_port"; do
  psql_su -p "$p" -d postgres -c "CREATE DATABASE kg_pgbench"
  pgbench -i -q -s "$SCALE" -p "$p" -U postgres kg_pgbench >>"$work/pgbench-init.log" 2>&1
  psql_su -p "$p" -d kg_pgbench <<'EOF' >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION pg_prewarm;
CREATE ROLE bench_app LOGIN;
GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO bench_app;
VACUUM (FREEZE, ANALYZE);
CHECKPOINT;
EOF
done
psql_su -d kg_pgbench -c "CREATE EXTENSION keys_guard" -c "GRANT keys_guard_gateway TO bench_app" >/dev/null

# statement_lines <dir>: statement lines the server logged there.
statement_lines() { cat "$1"/* | grep -c 'statement: \|execute ' || true; }

for r in $(seq 1 "$ROUNDS"); do
  # Restart both, in alternating order, with empty log directories.
  if [ $((r % 2)) = 1 ]; then order=(off on); else order=(on off); fi
  for m in "${order[@]}"; do
    if [ "$m" = on ]; then
      stop_server
      rm -f "$logdir"/*
      start_server 1
    else
      runuser -u postgres -- pg_ctl -D "$base_pgdata" -m fast -w stop >/dev/null
      rm -f "$base_logdir"/*
      runuser -u postgres -- pg_ctl -D "$base_pgdata" -l "$work/base.log" -w -t 120 start >/dev/null
    fi
  done
  got=$(psql -X -At -p "$base_port" -U postgres -d postgres -c "SHOW shared_preload_libraries")
  [ -z "$got" ] || { echo "log.sh: the baseline server preloads '$got'" >&2; exit 1; }
  result=$(pairbench_round "$base_pgdata" "$base_port" "$r" -M "$PGBENCH_MODE")
  # "a <n> <µs> b <n> <µs>": a is the server without keys_guard.
  read -r _ n_off lat_off _ n_on lat_on <<<"$result"
  sleep 0.5   # the collectors write the last lines
  lines_on=$(statement_lines "$logdir")
  lines_off=$(statement_lines "$base_logdir")
  if [ "${lines_on:-0}" -lt "$n_on" ] || [ "${lines_off:-0}" -lt "$n_off" ]; then
    echo "log.sh: round $r logged $lines_on and $lines_off statement lines for $n_on statements on each server" >&2
    exit 1
  fi
  printf '%s\toff\t%s\t%s\t%s\n' "$r" "$lat_off" "$n_off" "$lines_off" >>"$raw"
  printf '%s\ton\t%s\t%s\t%s\n' "$r" "$lat_on" "$n_on" "$lines_on" >>"$raw"
  log "round $r/$ROUNDS: not preloaded ${lat_off} µs, preloaded ${lat_on} µs per statement ($n_on each; $lines_off / $lines_on lines logged)"
done
runuser -u postgres -- pg_ctl -D "$base_pgdata" -m fast -w stop >/dev/null
base_up=0

check_library
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date +%s) - start_epoch ))

# --- report -------------------------------------------------------------------

lat_of() { awk -F'\t' -v v="$1" 'NR > 1 && $2 == v { print $3 }' "$raw"; }
# Per round: baseline latency / keys_guard latency (the throughput ratio).
ratios() {
  awk -F'\t' 'NR > 1 && $2 == "on" { x[$1] = $3 } NR > 1 && $2 == "off" { y[$1] = $3 }
    END { for (r = 1; r in x; r++) printf "%.4f\n", y[r] / x[r] }' "$raw"
}

base=$(lat_of off | median)
kg=$(lat_of on | median)
ratio=$(ratios | median)
all=$(ratios | paste -sd' ')
slower=$(awk -v r="$ratio" 'BEGIN { printf "%.1f %%", (1 - r) * 100 }')
met=$(awk -v r="$ratio" 'BEGIN { print ((1 - r) * 100 <= 5) ? "yes" : "**no**" }')
record_target "pgbench -S's statement with log_statement = all, preloaded vs not" ">=" 0.95 $(ratios)

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
  echo "bench/pairbench.c -M $PGBENCH_MODE: pgbench -S's statement, scale $SCALE, as bench_app, alternated between the two"
  echo "servers statement by statement for $BENCH_SECONDS s after $WARMUP_SECONDS s of warm-up; servers and pairbench $( [ "$BENCH_CPU" = none ] && echo "not pinned" || echo "pinned to CPU $BENCH_CPU");"
  echo "log_statement = all, logging_collector = on, stderr format to a file; both servers restarted before every round;"
  echo "$ROUNDS rounds; **ratio = median over rounds of (baseline latency / keys_guard latency) in the same run**"
  echo "(the throughput ratio); latency columns are medians of the rounds' mean latencies."
  echo
  echo "| what | baseline latency | keys_guard latency | ratio | % slower | target | met? | per-round ratios |"
  echo "|---|---:|---:|---:|---:|---|---|---|"
  printf '| %s | %.1f µs | %.1f µs | %.3f | %s | %s | %s | %s |\n' \
    "pgbench -S's statement with \`log_statement = all\`, keys_guard preloaded vs not preloaded" \
    "$base" "$kg" "$ratio" "$slower" "≤ 5 % slower" "$met" "$all"
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
