#!/usr/bin/env bash
# keys_guard purge benchmark (issue 4):
#
#   (a) throughput: the background worker purging N expired soft-deleted
#       rows (one transaction per batch of keys_guard.purge_batch_size rows)
#       vs one plain `DELETE ... WHERE deleted_at IS NOT NULL AND
#       hard_delete_at < now()` of the same rows of an identical unguarded
#       table (target: the worker at least 50 % of the DELETE's rows/s);
#       keys_guard.purge_now() (all batches in one transaction) is measured
#       alongside;
#   (b) foreground latency: pgbench (built-in TPC-B-like script, mixed
#       reads and writes on unguarded tables) with and without the worker
#       purging a backlog of 1M expired rows in another table (target: p99
#       latency up by at most 20 %).
#
# Everything runs against one throw-away cluster (initdb in a temp dir, Unix
# socket only, removed on exit), keys_guard preloaded, min_grace = 0,
# purge_naptime = 1.  The worker is switched on and off for the benchmark
# database with keys_guard.database (ALTER SYSTEM + reload; off also
# terminates the running worker), so no purge races the set-up.
#
# (a) Every round rebuilds identical tables, one per variant, then, in a
# rotating order, for each: soft-deletes half its rows (grace 0: expired from the
# next transaction), VACUUM (FREEZE, ANALYZE), CHECKPOINT, and measures:
#   plain   psql \timing of the single DELETE;
#   worker  switch the worker on, wait until purge_stats shows every row
#           purged, switch it off.  The rate is taken from the server's own
#           clock: each batch writes an audit_log row (at =
#           clock_timestamp() at the end of the batch), so the steady rate
#           is (rows of batches 2..k) / (at of batch k - at of batch 1).
#           From switching on to the last batch ("end to end") is reported
#           too; it includes starting the worker;
#   worker_fk  the same on pu_fk, which a foreign key references: the
#           worker's statement path (src/purge.c) instead of the direct one;
#   plain_fk  the single DELETE on pu_plain_fk, referenced the same way;
#   now     psql \timing of SELECT ... FROM keys_guard.purge_now('pu_now');
#   batch, batch_nolock (BENCH_BREAKDOWN=1) the worker's batch statement
#           by hand on identical unguarded tables: a DO block that
#           EXECUTEs it and COMMITs after each batch, like the worker, with
#           and without FOR UPDATE SKIP LOCKED; they split the gap between
#           the worker and the single DELETE into the batched algorithm and
#           keys_guard's own costs.
# Round 0 is an unrecorded warm-up.  Every run is checked: command tag or
# returned count, rows left, nothing soft-deleted left, purge_status.
#
# (b) Every run first rebuilds the backlog (purge_backlog.sql: BACKLOG rows
# inserted and soft-deleted by one DELETE, VACUUM, CHECKPOINT; pgbench
# tables vacuumed, history emptied).  pgbench -c 2 -T 30 -l runs; LEAD
# seconds in, the worker is switched on ("with") or nothing happens
# ("without").  Latencies come from pgbench's per-transaction log.  The
# compared window is the purge: in "with", from switching on to the last
# batch (or pgbench's end); in "without" of the same round the same
# offsets.  The whole run after LEAD is reported too.  The order of the
# runs rotates from round to round; results are medians over rounds of the
# per-round ratio with / without.
#
# Run as root on Debian bookworm from anywhere:
#   bash bench/purge.sh
# Settings (environment):
#   ROUNDS=3           measured rounds of (a) and of (b)
#   B_ROUNDS=ROUNDS    rounds of (b)'s separate runs (reported)
#   PAIRS=16           (b)'s target: pairs of a window without the purge and
#                      the next one with it, interleaved in one pgbench run
#                      (0: skip)
#   PAIRS_PER_ROUND=4  consecutive pairs pooled into one round of the
#                      target: the p99 of the round's "with" windows taken
#                      together against that of its "without" windows
#                      (PAIRS a multiple of it)
#   PAIRS_BACKLOG=PAIRS*125000  expired rows waiting when the pairs start
#                      (each "with" window purges up to about 100 000)
#   AA=0               1: an A/A control of the pairs' method: the same
#                      schedule, but the worker is never switched on (the
#                      "with" window is the second to the sixth second after
#                      the "without" one); the target row then says how far
#                      the method alone moves the ratio
#   PAIR_OFF_S=5 PAIR_ON_S=6  seconds of each window (the "with" window
#                      starts when the worker's first batch ends, about 1 s
#                      after it is switched on)
#   ROWS=400000        rows per table in (a) (a multiple of 100); half of
#                      them are soft-deleted and purged (N = ROWS / 2)
#   BACKLOG=1000000    expired rows waiting in (b)
#   B_SECONDS=30       length of each pgbench run in (b)
#   LEAD=3             seconds of pgbench before the worker is switched on
#   CLIENTS=2 JOBS=2   pgbench -c / -j in (b)
#   SCALE=10           pgbench scale in (b)
#   RATE=0             pgbench -R (transactions/s, all clients): 0 runs
#                      unthrottled (closed loop: as fast as it can);
#                      with a rate, latency includes the schedule lag
#   SAMPLING=1         pgbench --sampling-rate of the log
#   WARMUP_SECONDS=5   unmeasured pgbench run before (b)
#   BATCH_SIZE=1000    rows per batch of the hand-written breakdown and of
#                      the throttled emulation (not the worker's setting)
#   WORKER_BATCH_SIZE=50000  keys_guard.purge_batch_size (the default): the
#                      most rows of one worker batch
#   BATCH_TIME_MS=20   keys_guard.purge_batch_time (the default)
#   BUSY_DUTY=0.01     keys_guard.purge_busy_duty (the default)
#   DELAY_A_MS=50      keys_guard.purge_batch_delay in (a): the default
#                      pacing, on a server where nothing else runs
#   DELAY_B_MS=50      keys_guard.purge_batch_delay in (b): the default pacing
#   CURVE=""           more pacing settings for (b), each one more "with"
#                      variant of every round, for the trade-off curve
#                      (purge rate under load vs the foreground's p99):
#                      space-separated, each a purge_busy_duty value or
#                      "full" (purge_batch_delay = 0: no pacing at all), e.g.
#                      CURVE="0.003 0.03 0.1 full" (each adds about
#                      B_SECONDS + 15 s per round)
#   B_THROTTLE_MS=0    > 0: add a third variant to (b), an emulation of a
#                      throttled worker (not a feature of keys_guard): a
#                      client runs keys_guard._purge_table(rel, BATCH_SIZE,
#                      1, false), the worker's unit of work, in a loop with
#                      COMMIT and pg_sleep(B_THROTTLE_MS) between batches
#   BENCH_BREAKDOWN=1  also measure the batch and batch_nolock variants of
#                      (a) (0: skip)
#   BENCH_EXPLAIN=1    diagnostics (0: skip): the plans of the purge's
#                      batch query (auto_explain during one purge_now())
#                      and of the single DELETE; where the worker's time
#                      goes (a restart with pg_stat_statements, one purge
#                      of (a)); the worker and purge_now() on the BACKLOG
#                      rows without pgbench
#   BENCH_ONLY=ab      which comparisons: a, b or ab
#   BENCH_INSTALL=1    build and `make install` the tree first (0: benchmark
#                      the keys_guard already installed for PostgreSQL 15)
#   BENCH_DEPS=1       run scripts/deps.sh first (0: skip)
# Writes the result table to stdout and to bench/results/purge.md (raw
# per-run numbers in bench/results/purge.tsv, per-second transactions and
# p99 of every pgbench run of (b) in bench/results/purge_timeline.tsv).
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")/.." && pwd)
bench="$here/bench"
cd "$here"

ROUNDS=${ROUNDS:-3}
B_ROUNDS=${B_ROUNDS:-$ROUNDS}
PAIRS=${PAIRS:-16}
PAIRS_PER_ROUND=${PAIRS_PER_ROUND:-4}
PAIRS_BACKLOG=${PAIRS_BACKLOG:-$((PAIRS * 125000))}
AA=${AA:-0}
PAIR_OFF_S=${PAIR_OFF_S:-5}
PAIR_ON_S=${PAIR_ON_S:-6}
ROWS=${ROWS:-400000}
BACKLOG=${BACKLOG:-1000000}
B_SECONDS=${B_SECONDS:-30}
LEAD=${LEAD:-3}
CLIENTS=${CLIENTS:-2}
JOBS=${JOBS:-2}
SCALE=${SCALE:-10}
RATE=${RATE:-0}
SAMPLING=${SAMPLING:-1}
WARMUP_SECONDS=${WARMUP_SECONDS:-5}
BATCH_SIZE=${BATCH_SIZE:-1000}
WORKER_BATCH_SIZE=${WORKER_BATCH_SIZE:-50000}
BATCH_TIME_MS=${BATCH_TIME_MS:-20}
BUSY_DUTY=${BUSY_DUTY:-0.01}
CURVE=${CURVE:-}
B_THROTTLE_MS=${B_THROTTLE_MS:-0}
DELAY_A_MS=${DELAY_A_MS:-50}
DELAY_B_MS=${DELAY_B_MS:-50}
BENCH_EXPLAIN=${BENCH_EXPLAIN:-1}
BENCH_BREAKDOWN=${BENCH_BREAKDOWN:-1}
BENCH_ONLY=${BENCH_ONLY:-ab}
BENCH_INSTALL=${BENCH_INSTALL:-1}
BENCH_DEPS=${BENCH_DEPS:-1}

me=purge.sh
for v in ROUNDS B_ROUNDS PAIRS PAIRS_PER_ROUND PAIRS_BACKLOG AA PAIR_OFF_S PAIR_ON_S ROWS BACKLOG B_SECONDS LEAD CLIENTS JOBS SCALE RATE WARMUP_SECONDS BATCH_SIZE WORKER_BATCH_SIZE BATCH_TIME_MS B_THROTTLE_MS DELAY_A_MS DELAY_B_MS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$me: $v must be a whole number" >&2; exit 2; }
done
[ "$ROUNDS" -ge 1 ] || { echo "$me: ROUNDS must be >= 1" >&2; exit 2; }
[ "$PAIRS_PER_ROUND" -ge 1 ] && [ $((PAIRS % PAIRS_PER_ROUND)) = 0 ] ||
  { echo "$me: PAIRS must be a multiple of PAIRS_PER_ROUND (>= 1)" >&2; exit 2; }
[[ $AA =~ ^[01]$ ]] || { echo "$me: AA is 0 or 1" >&2; exit 2; }
for d in $BUSY_DUTY $CURVE; do
  [ "$d" = full ] || [[ $d =~ ^(1|0?\.[0-9]+)$ ]] || { echo "$me: BUSY_DUTY and CURVE's values are fractions in (0, 1] (or \"full\" in CURVE)" >&2; exit 2; }
done
[ "$ROWS" -ge 100 ] && [ $((ROWS % 100)) = 0 ] || { echo "$me: ROWS must be a positive multiple of 100" >&2; exit 2; }
[ "$BATCH_SIZE" -ge 1 ] && [ $((ROWS / 2)) -ge $((3 * BATCH_SIZE)) ] ||
  { echo "$me: ROWS / 2 must be at least 3 batches (BATCH_SIZE = $BATCH_SIZE)" >&2; exit 2; }
[ "$BACKLOG" -ge $((3 * BATCH_SIZE)) ] || { echo "$me: BACKLOG must be at least 3 batches" >&2; exit 2; }
[ "$SCALE" -ge 1 ] && [ "$CLIENTS" -ge 1 ] && [ "$JOBS" -ge 1 ] ||
  { echo "$me: SCALE, CLIENTS, JOBS must be >= 1" >&2; exit 2; }
[ "$B_SECONDS" -gt $((LEAD + 2)) ] || { echo "$me: B_SECONDS must exceed LEAD + 2" >&2; exit 2; }
[[ $SAMPLING =~ ^(1|0?\.[0-9]+)$ ]] || { echo "$me: SAMPLING is a fraction in (0, 1]" >&2; exit 2; }
for v in BENCH_EXPLAIN BENCH_BREAKDOWN BENCH_INSTALL BENCH_DEPS; do
  [[ ${!v} =~ ^[01]$ ]] || { echo "$me: $v is 0 or 1" >&2; exit 2; }
done
[[ $BENCH_ONLY =~ ^(a|b|ab)$ ]] || { echo "$me: BENCH_ONLY is a, b or ab" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$me: run as root (the server is started as the postgres user)" >&2; exit 2; }

N=$((ROWS / 2))

repro="cd $here && ROUNDS=$ROUNDS B_ROUNDS=$B_ROUNDS PAIRS=$PAIRS PAIRS_PER_ROUND=$PAIRS_PER_ROUND PAIRS_BACKLOG=$PAIRS_BACKLOG AA=$AA PAIR_OFF_S=$PAIR_OFF_S PAIR_ON_S=$PAIR_ON_S ROWS=$ROWS BACKLOG=$BACKLOG B_SECONDS=$B_SECONDS LEAD=$LEAD CLIENTS=$CLIENTS JOBS=$JOBS"
repro+=" SCALE=$SCALE RATE=$RATE SAMPLING=$SAMPLING WARMUP_SECONDS=$WARMUP_SECONDS BATCH_SIZE=$BATCH_SIZE"
repro+=" WORKER_BATCH_SIZE=$WORKER_BATCH_SIZE BATCH_TIME_MS=$BATCH_TIME_MS BUSY_DUTY=$BUSY_DUTY CURVE='$CURVE'"
repro+=" DELAY_A_MS=$DELAY_A_MS DELAY_B_MS=$DELAY_B_MS B_THROTTLE_MS=$B_THROTTLE_MS"
repro+=" BENCH_BREAKDOWN=$BENCH_BREAKDOWN BENCH_EXPLAIN=$BENCH_EXPLAIN BENCH_ONLY=$BENCH_ONLY BENCH_INSTALL=$BENCH_INSTALL bash bench/purge.sh"

. "$bench/lib.sh"

# --- throw-away cluster -----------------------------------------------------

new_workdir keys_guard_purgebench
pgbench_pid=''
POLL_PID=''

cleanup() {
  local rc=$?
  if [ -n "$pgbench_pid" ]; then
    kill "$pgbench_pid" 2>/dev/null || true
    wait "$pgbench_pid" 2>/dev/null || true
  fi
  if [ -n "$POLL_PID" ]; then
    kill "$POLL_PID" 2>/dev/null || true
  fi
  finish_run $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

use_free_port 55632

db=kg_purge
# keys_guard.database names the databases the worker serves; this name is
# not a database, so "off" serves none.
db_off=kg_purge_worker_off

init_cluster
cat >>"$pgdata/postgresql.conf" <<EOF
shared_buffers = 512MB
max_wal_size = 4GB
shared_preload_libraries = 'keys_guard'
keys_guard.purge_naptime = 1
keys_guard.purge_batch_size = $WORKER_BATCH_SIZE
keys_guard.purge_batch_time = ${BATCH_TIME_MS}ms
keys_guard.purge_busy_duty = $BUSY_DUTY
keys_guard.purge_batch_delay = $DELAY_A_MS
keys_guard.database = '$db_off'
EOF

check_library
runuser -u postgres -- pg_ctl -D "$pgdata" -l "$work/server.log" -w -t 120 start >/dev/null
server_up=1
for i in $(seq 1 600); do
  pg_isready -q -d postgres -U postgres && break
  [ "$i" = 600 ] && { echo "server did not become ready" >&2; exit 1; }
  sleep 0.1
done

psql_su() { psql -X -q -v ON_ERROR_STOP=1 -U postgres -d "$db" "$@"; }
psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres -c "CREATE DATABASE $db"
psql_su -f "$bench/purge_setup.sql" >"$work/setup.log"


# One long-lived session for polling (each query its own transaction, so
# it holds no snapshot back); poll <sql> prints the one-line answer.
start_poll() {
  coproc POLL { stdbuf -oL psql -X -At -v ON_ERROR_STOP=1 -U postgres -d "$db" 2>&1; }
  [ "$(poll "SELECT 'ready'")" = ready ] || { echo "$me: polling session not ready" >&2; return 1; }
}
stop_poll() {
  if [ -n "${POLL_PID:-}" ]; then
    kill "$POLL_PID" 2>/dev/null || true
    wait "$POLL_PID" 2>/dev/null || true
    POLL_PID=''
  fi
}
poll() {
  local line
  printf '%s;\n' "$1" >&"${POLL[1]}"
  IFS= read -r -t 30 line <&"${POLL[0]}" || { echo "$me: the polling session did not answer: $1" >&2; return 1; }
  printf '%s\n' "$line"
}
start_poll

# restart_server <shared_preload_libraries> [more postgres options]
restart_server() {
  local i
  stop_poll
  runuser -u postgres -- pg_ctl -D "$pgdata" -l "$work/server.log" -m fast -w -t 120 \
    -o "-c shared_preload_libraries='$1' ${2:-}" restart >/dev/null
  for i in $(seq 1 600); do
    pg_isready -q -d postgres -U postgres && break
    [ "$i" = 600 ] && { echo "server did not become ready" >&2; return 1; }
    sleep 0.1
  done
  start_poll
}

epoch_now() { date +%s.%N; }

worker_pid() {
  poll "SELECT coalesce(string_agg(pid::text, ' '), '') FROM pg_stat_activity
         WHERE backend_type = 'keys_guard worker' AND datname = '$db'"
}

# worker_on: serve the database; the worker starts and purges at once.
# Prints the server's clock (epoch) at the reload.
worker_on() {
  psql_su -c "ALTER SYSTEM SET keys_guard.database = '$db'" >/dev/null
  psql_su -At -c "SELECT extract(epoch FROM clock_timestamp()) FROM pg_reload_conf()"
}

# worker_off: serve no database, stop the running worker, and make sure the
# launcher does not start it again (it waits 2 s between two starts).
worker_off() {
  local pids quiet=0 i
  psql_su -c "ALTER SYSTEM SET keys_guard.database = '$db_off'" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.3
  for i in $(seq 1 200); do
    pids=$(worker_pid)
    if [ -n "$pids" ]; then
      quiet=0
      poll "SELECT count(pg_terminate_backend(p)) FROM unnest('{${pids// /,}}'::int[]) p" >/dev/null
    else
      quiet=$((quiet + 1))
      [ "$quiet" -ge 12 ] && return 0
    fi
    sleep 0.25
  done
  echo "$me: the keys_guard worker keeps running" >&2
  return 1
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

raw="$work/raw.tsv"
printf 'comparison\tround\tvariant\tfields...\n' >"$raw"
timeline="$work/timeline.tsv"
printf 'round\tvariant\tsecond_of_the_run\ttransactions\tp99_ms\n' >"$timeline"

start_epoch=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- (a) throughput ------------------------------------------------------------

declare -A a_table=([plain]=pu_plain [plain_fk]=pu_plain_fk [worker]=pu_kg [worker_fk]=pu_fk [now]=pu_now [batch]=pu_batch [batch_nolock]=pu_batch_nolock)
guarded() { [ "$1" = worker ] || [ "$1" = worker_fk ] || [ "$1" = now ]; }
# The worker's batch statement (src/purge.c) for table $1; $2: the locking clause.
batch_sql() {
  printf 'WITH batch AS ( SELECT t.ctid FROM ONLY public.%s t WHERE t.deleted_at IS NOT NULL AND t.hard_delete_at < now() AND NOT (false) ORDER BY t.hard_delete_at LIMIT %s%s) DELETE FROM ONLY public.%s t WHERE t.ctid = ANY (ARRAY(SELECT ctid FROM batch)) AND t.deleted_at IS NOT NULL AND t.hard_delete_at < now()' \
    "$1" "$BATCH_SIZE" "$2" "$1"
}
# A DO block running it batch after batch, one transaction each.
batch_do() {
  printf 'DO $do$ DECLARE n bigint; BEGIN LOOP EXECUTE %s; GET DIAGNOSTICS n = ROW_COUNT; COMMIT; EXIT WHEN n < %s; END LOOP; END $do$' \
    "\$q\$$(batch_sql "$1" "$2")\$q\$" "$BATCH_SIZE"
}
soft_cols="deleted_at = now(), hard_delete_at = now(), deleted_by = 'bench', delete_request_id = 'r'"
expired="deleted_at IS NOT NULL AND hard_delete_at < now()"

# prepare_a <variant>: soft-delete the grp < 50 rows (keys_guard: a DELETE
# under tenant 1's context; plain: the same UPDATE by hand), vacuum,
# checkpoint, check that exactly N rows are expired.
prepare_a() {
  local v=$1 t=${a_table[$1]} out want got
  if ! guarded "$v"; then
    out=$(psql -X -At -v ON_ERROR_STOP=1 -U bench_app -d "$db" -c "UPDATE $t SET $soft_cols WHERE grp < 50" 2>&1)
    want="UPDATE $N"
  else
    out=$(psql -X -At -v ON_ERROR_STOP=1 -U bench_app -d "$db" -c "BEGIN" \
            -c "SELECT 'ctx' FROM keys_guard.set_context('1', 'bench', 'r')" -c "DELETE FROM $t WHERE grp < 50" -c "COMMIT" 2>&1)
    want="DELETE $N"
  fi
  grep -qx "$want" <<<"$out" || { echo "(a) $v: expected '$want', got:" >&2; echo "$out" >&2; return 1; }
  psql_su -c "VACUUM (FREEZE, ANALYZE) $t" -c CHECKPOINT
  got=$(psql_su -At -c "SET keys_guard.bypass = on" -c "
    SELECT count(*) || '|' || count(*) FILTER (WHERE $expired) || '|' || pg_relation_size('$t') FROM $t")
  [ "${got%|*}" = "$ROWS|$N" ] || { echo "(a) $v: rows|expired = ${got%|*}, expected $ROWS|$N" >&2; return 1; }
  echo "$v=${got##*|}" >>"$work/sizes"
}

# check_a <variant>: N rows gone, the rest untouched and live.
check_a() {
  local v=$1 t=${a_table[$1]} got
  got=$(psql_su -At -c "SET keys_guard.bypass = on" -c "
    SELECT count(*) || '|' || count(deleted_at) || '|' || count(*) FILTER (WHERE grp < 50) FROM $t")
  [ "$got" = "$((ROWS - N))|0|0" ] || { echo "(a) $v: rows|deleted|grp<50 = $got, expected $((ROWS - N))|0|0" >&2; return 1; }
  if guarded "$v"; then
    got=$(psql_su -At -c "SELECT rows_deleted || '|' || rows_waiting || '|' || rows_purged || '|' || rows_skipped
                            FROM keys_guard.purge_status WHERE relation = '$t'::regclass")
    [ "$got" = "0|0|$N|0" ] || { echo "(a) $v: purge_status deleted|waiting|purged|skipped = $got, expected 0|0|$N|0" >&2; return 1; }
    got=$(psql -X -At -v ON_ERROR_STOP=1 -U bench_app -d "$db" -c "BEGIN" \
            -c "SELECT 'ctx' FROM keys_guard.set_context('1', 'bench')" -c "SELECT 'seen ' || count(*) FROM $t" -c "COMMIT" |
          sed -n 's/^seen //p')
    [ "$got" = "$((ROWS - N))" ] || { echo "(a) $v: the application sees $got rows, expected $((ROWS - N))" >&2; return 1; }
  fi
}

# worker_purge <table> <rows>: switch the worker on, wait until purge_stats
# shows <rows> rows of <table> purged, switch it off.  Sets purge_result to
# "batches rows rows_after_batch_1 ms_batch_1_to_k ms_on_to_batch_k
# ms_on_to_batch_1 ms_per_batch_2_11 ms_per_batch_last_10", from the audit
# record each batch writes at its end (server clock).
worker_purge() {
  local t=$1 want=$2 base t_on got i batches sum
  base=$(poll "SELECT coalesce(max(id), 0) FROM keys_guard.audit_log")
  t_on=$(worker_on)
  for i in $(seq 1 12000); do
    got=$(poll "SELECT coalesce((SELECT rows_purged FROM keys_guard.purge_stats WHERE relid = '$t'::regclass), 0)")
    [ "$got" -ge "$want" ] && break
    [ "$i" = 12000 ] && { echo "$t: only $got of $want rows purged by the worker after 10 minutes" >&2; return 1; }
    sleep 0.05
  done
  worker_off
  purge_result=$(psql_su -At -F ' ' -c "
    WITH b AS (SELECT at, (detail->>'rows')::bigint AS n, row_number() OVER (ORDER BY id) AS k,
                      count(*) OVER () AS batches,
                      extract(epoch FROM at - lag(at) OVER (ORDER BY id)) * 1000 AS gap_ms
                 FROM keys_guard.audit_log
                WHERE id > $base AND action = 'purge' AND outcome = 'ok' AND target = 'public.$t')
    SELECT count(*), sum(n), sum(n) FILTER (WHERE k > 1),
           round(extract(epoch FROM max(at) - min(at)) * 1000, 3),
           round(extract(epoch FROM max(at)) * 1000 - $t_on * 1000, 3),
           round(extract(epoch FROM min(at)) * 1000 - $t_on * 1000, 3),
           round(avg(gap_ms) FILTER (WHERE k BETWEEN 2 AND 11), 2),
           round(avg(gap_ms) FILTER (WHERE k > batches - 10), 2)
      FROM b")
  read -r batches sum _ <<<"$purge_result"
  [ "$sum" = "$want" ] && [ "$batches" -ge 3 ] ||
    { echo "$t: the audit log shows $batches batches, $sum rows; expected $want rows in at least 3" >&2; return 1; }
}

# timed <sql>: psql \timing of one statement as postgres; prints "ms<TAB>output".
timed() {
  local out ms
  out=$(psql -X -At -v ON_ERROR_STOP=1 -U postgres -d "$db" -c '\timing on' -c "$1" 2>&1) || { echo "failed: $1" >&2; echo "$out" >&2; return 1; }
  ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -1)
  [ -n "$ms" ] || { echo "no time for: $1" >&2; echo "$out" >&2; return 1; }
  printf '%s\t%s\n' "$ms" "$(grep -v '^Time: \|^Timing is on' <<<"$out" | paste -sd' ')"
}

# run_a <round> <variant>: appends to $raw; a summary in $summary.
run_a() {
  local r=$1 v=$2 res ms out lock batches sum rest span e2e first gap_first gap_last
  prepare_a "$v"
  case $v in
    plain|plain_fk)
      res=$(timed "DELETE FROM ${a_table[$v]} WHERE $expired")
      ms=${res%%$'\t'*}; out=${res#*$'\t'}
      [ "$out" = "DELETE $N" ] || { echo "(a) $v: expected 'DELETE $N', got '$out'" >&2; return 1; }
      ;;
    batch|batch_nolock)
      if [ "$v" = batch ]; then lock=' FOR UPDATE OF t SKIP LOCKED'; else lock=''; fi
      res=$(timed "$(batch_do "${a_table[$v]}" "$lock")")
      ms=${res%%$'\t'*}; out=${res#*$'\t'}
      [ "$out" = "DO" ] || { echo "(a) $v: expected 'DO', got '$out'" >&2; return 1; }
      ;;
    now)
      res=$(timed "SELECT purged || '|' || skipped FROM keys_guard.purge_now('pu_now')")
      ms=${res%%$'\t'*}; out=${res#*$'\t'}
      [ "$out" = "$N|0" ] || { echo "(a) now: expected purge_now() to return $N|0, got '$out'" >&2; return 1; }
      ;;
    worker|worker_fk)
      worker_purge "${a_table[$v]}" "$N"
      read -r batches sum rest span e2e first gap_first gap_last <<<"$purge_result"
      ms=$span
      if [ "$v" = worker ]; then
        printf 'a\t%s\tworker_e2e\t%s\t%s\n' "$r" "$e2e" "$N" >>"$raw.tmp"
        printf 'aw\t%s\tworker\t%s\t%s\t%s\t%s\n' "$r" "$batches" "$first" "$gap_first" "$gap_last" >>"$raw.tmp"
      fi
      ;;
  esac
  check_a "$v"
  local rows=$N
  case $v in worker|worker_fk) rows=$rest ;; esac
  if [ "$r" != 0 ]; then
    printf 'a\t%s\t%s\t%s\t%s\n' "$r" "$v" "$ms" "$rows" >>"$raw"
    [ -f "$raw.tmp" ] && cat "$raw.tmp" >>"$raw"
  fi
  rm -f "$raw.tmp"
  summary=$(awk -v v="$v" -v ms="$ms" -v n="$rows" 'BEGIN { printf "%s=%.0fms(%.0f rows/s)", v, ms, n / ms * 1000 }')
}

a_variants=(plain plain_fk worker worker_fk now)
[ "$BENCH_BREAKDOWN" = 1 ] && a_variants+=(batch batch_nolock)
breakdown=false; [ "$BENCH_BREAKDOWN" = 1 ] && breakdown=true
if [[ $BENCH_ONLY == *a* ]]; then
  n=${#a_variants[@]}
  for r in $(seq 0 "$ROUNDS"); do
    psql_su -v rows="$ROWS" -v breakdown="$breakdown" -f "$bench/purge_tables.sql" >>"$work/tables.log"
    psql_su -c CHECKPOINT
    if [ "$r" = 0 ]; then line="(a) round 0 (warm-up, not recorded):"; else line="(a) round $r/$ROUNDS:"; fi
    : >"$work/sizes"
    for i in $(seq 0 $((n - 1))); do
      v=${a_variants[$(( (i + r) % n ))]}
      run_a "$r" "$v"
      line+=" $summary"
    done
    # The three tables must have been physically alike when measured.
    sizes=$(sed 's/.*=//' "$work/sizes" | sort -u | wc -l)
    [ "$sizes" = 1 ] || { echo "(a) tables of different sizes: $(paste -sd' ' "$work/sizes")" >&2; exit 1; }
    log "$line"
  done
  a_size=$(sed -n '1s/.*=//p' "$work/sizes")
  a_indexes=$(psql_su -At -c "
    SELECT c.relname || ': ' || string_agg(d, ', ' ORDER BY d)
      FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid,
           LATERAL regexp_replace(pg_get_indexdef(i.indexrelid), '.* USING ', '') AS d
     WHERE c.relname IN ('pu_plain', 'pu_plain_fk', 'pu_kg', 'pu_fk', 'pu_now', 'pu_batch', 'pu_batch_nolock') GROUP BY c.relname ORDER BY 1")
  [ "$(sed 's/^[^:]*: //' <<<"$a_indexes" | sort -u | wc -l)" = 1 ] ||
    { echo "(a) the tables have different indexes:" >&2; echo "$a_indexes" >&2; exit 1; }
fi

# --- (a) diagnostics: plans ------------------------------------------------------

explain=''
worker_profile=''
if [[ $BENCH_ONLY == *a* ]] && [ "$BENCH_EXPLAIN" = 1 ]; then
  log "(a) plans: auto_explain of the batches of one purge_now(), EXPLAIN ANALYZE of the single DELETE"
  psql_su -v rows="$ROWS" -v breakdown=false -f "$bench/purge_tables.sql" >>"$work/tables.log"
  prepare_a now
  prepare_a plain
  # auto_explain sends each nested statement's plan to the client as a
  # NOTICE; keep the batch query's plans.
  psql_su -c "LOAD 'auto_explain'" -c "SET auto_explain.log_min_duration = 0" \
    -c "SET auto_explain.log_analyze = on" -c "SET auto_explain.log_buffers = on" \
    -c "SET auto_explain.log_nested_statements = on" -c "SET auto_explain.log_level = notice" \
    -c "SET auto_explain.log_triggers = on" \
    -c "SELECT * FROM keys_guard.purge_now('pu_now')" >"$work/explain.out" 2>&1
  # Split the notices into plans; number the batch plans.
  awk -v dir="$work" '
    /^NOTICE:  duration: / { if (f) close(f); f = ""; buf = $0; next }
    /^Query Text: (WITH batch AS|DELETE FROM ONLY)/ && buf != "" { k++; f = dir "/batch." k ".plan"; print buf > f; buf = "" }
    buf != "" { buf = "" }
    f != "" { print > f }' "$work/explain.out"
  nb=$(find "$work" -maxdepth 1 -name 'batch.*.plan' | wc -l)
  if [ "$nb" -ge 1 ]; then
    for k in 1 $(( (nb + 1) / 2 )) "$nb"; do
      explain+="-- purge_now(): batch $k of $nb"$'\n'
      explain+=$(sed 's/^NOTICE:  //' "$work/batch.$k.plan")$'\n\n'
    done
  else
    explain+="(no batch plan captured; auto_explain output:)"$'\n'$(head -40 "$work/explain.out")$'\n'
  fi
  explain+="-- single DELETE (rolled back)"$'\n'
  explain+=$(psql_su -At -c "BEGIN" -c "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM pu_plain WHERE $expired" -c "ROLLBACK" |
             grep -v '^\(BEGIN\|ROLLBACK\)$')$'\n'

  # Where the worker's time goes: pg_stat_statements (nested statements
  # and planning included) during one worker purge of pu_kg.
  log "(a) worker profile: pg_stat_statements during one purge by the worker"
  restart_server keys_guard,pg_stat_statements "-c pg_stat_statements.track=all -c pg_stat_statements.track_planning=on"
  psql_su -c "CREATE EXTENSION pg_stat_statements"
  psql_su -v rows="$ROWS" -v breakdown=false -f "$bench/purge_tables.sql" >>"$work/tables.log"
  prepare_a worker
  psql_su -c "SELECT pg_stat_statements_reset()" >/dev/null
  worker_purge pu_kg "$N"
  profile_span=$(cut -d' ' -f1,4 <<<"$purge_result")
  # The worker runs as the bootstrap superuser, like this script; leave out
  # this script's own statements.
  worker_profile=$(psql_su -At -F ' | ' -c "
    SELECT calls, round(total_exec_time::numeric, 1), round(total_plan_time::numeric, 1),
           round(((total_exec_time + total_plan_time) / greatest(calls, 1))::numeric, 4),
           left(regexp_replace(query, '\s+', ' ', 'g'), 160)
      FROM pg_stat_statements
     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND query !~* 'pg_stat_activity|pg_stat_statements|pg_reload_conf|ALTER SYSTEM|pg_terminate_backend|audit_log WHERE id >|^WITH b AS|SELECT \\\$1$|rows_purged FROM keys_guard.purge_stats WHERE relid = \\\$1::regclass|coalesce\\(max\\(id\\)'
     ORDER BY total_exec_time + total_plan_time DESC LIMIT 14")
  psql_su -c "DROP EXTENSION pg_stat_statements"
  restart_server keys_guard
fi

# --- (b) foreground latency -------------------------------------------------------

if [[ $BENCH_ONLY == *b* ]]; then
  # (b) measures the worker as deployed: with its pacing between batches.
  psql_su -c "ALTER SYSTEM SET keys_guard.purge_batch_delay = '${DELAY_B_MS}ms'" \
          -c "SELECT pg_reload_conf()" >/dev/null
  log "(b) pgbench -i -s $SCALE"
  pgbench -i -q -s "$SCALE" -U postgres "$db" >"$work/pgbench-init.log" 2>&1
  psql_su -c "GRANT SELECT, UPDATE ON pgbench_accounts, pgbench_branches, pgbench_tellers TO bench_app" \
          -c "GRANT SELECT, INSERT ON pgbench_history TO bench_app"

  rate_args=()
  [ "$RATE" -gt 0 ] && rate_args=(-R "$RATE")
  sampling_args=()
  [ "$SAMPLING" != 1 ] && sampling_args=(--sampling-rate "$SAMPLING")

  build_backlog() {
    local got
    psql_su -v backlog="$BACKLOG" -f "$bench/purge_backlog.sql" >>"$work/backlog.log"
    psql_su -c CHECKPOINT
    psql_su -c "SELECT pg_prewarm('pgbench_accounts'), pg_prewarm('pgbench_accounts_pkey'),
                       pg_prewarm('pgbench_branches'), pg_prewarm('pgbench_tellers')" >/dev/null
    got=$(psql_su -At -c "SET keys_guard.bypass = on" -c "
      SELECT count(*) || '|' || count(*) FILTER (WHERE $expired AND deleted_by = 'bench') FROM pu_backlog")
    [ "$got" = "$BACKLOG|$BACKLOG" ] || { echo "(b) backlog: rows|expired = $got, expected $BACKLOG|$BACKLOG" >&2; return 1; }
  }

  # pgbench_b <label> <seconds> [extra args]: runs in the background; sets pgbench_pid.
  pgbench_b() {
    local label=$1 secs=$2; shift 2
    pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" -T "$secs" -U bench_app "${rate_args[@]}" "$@" "$db" \
      >"$work/pgbench.$label.out" 2>&1 &
    pgbench_pid=$!
  }
  pgbench_wait() {
    local label=$1 rc=0
    wait "$pgbench_pid" || rc=$?
    pgbench_pid=''
    if [ "$rc" != 0 ]; then
      echo "pgbench ($label) failed:" >&2; tail -20 "$work/pgbench.$label.out" >&2; return 1
    fi
    if grep -q 'number of failed transactions: [1-9]' "$work/pgbench.$label.out"; then
      echo "pgbench ($label) had failed transactions:" >&2; cat "$work/pgbench.$label.out" >&2; return 1
    fi
  }

  # The "throttled" variant: keys_guard's own unit of work, one batch per
  # transaction (keys_guard._purge_table(rel, batch_size, 1, false), as the
  # worker calls it, bookkeeping and audit included), run by a client
  # backend with a pause of B_THROTTLE_MS between batches.
  throttled_do="DO \$do\$ DECLARE n bigint; BEGIN LOOP
      SELECT purged INTO n FROM keys_guard._purge_table('public.pu_backlog', $BATCH_SIZE, 1, false);
      COMMIT; EXIT WHEN n < $BATCH_SIZE; PERFORM pg_sleep($B_THROTTLE_MS / 1000.0); END LOOP; END \$do\$"

  # pace_for <with|curve_D|curve_full>: the worker's pacing for a variant
  # (the default of this run, or one point of the curve), in force from
  # the reload that switches the worker on.
  pace_for() {
    local duty=$BUSY_DUTY delay=$DELAY_B_MS
    case $1 in
      curve_full) delay=0 ;;
      curve_*) duty=${1#curve_} ;;
    esac
    psql_su -c "ALTER SYSTEM SET keys_guard.purge_batch_delay = '${delay}ms'" \
            -c "ALTER SYSTEM SET keys_guard.purge_busy_duty = $duty" >/dev/null
  }

  # run_b <round> <without|with|curve_*|throttled>: appends to $raw; a summary in $summary.
  run_b() {
    local r=$1 v=$2 label="b.$1.$2" t0 t_on t_end pid cpu0 cpu1 got base waits i w1 do_pid=''
    build_backlog
    base=$(poll "SELECT coalesce(max(id), 0) FROM keys_guard.audit_log")
    : >"$work/waits.$label"
    t0=$(epoch_now)
    pgbench_b "$label" "$B_SECONDS" -l --log-prefix="$work/log.$label" "${sampling_args[@]}"
    sleep "$LEAD"
    pid=''
    case $v in
      with|curve_*)
        pace_for "$v"
        t_on=$(worker_on)
        for i in $(seq 1 100); do pid=$(worker_pid); [ -n "$pid" ] && break; sleep 0.02; done
        [ -n "$pid" ] || { echo "(b) the worker did not start" >&2; return 1; }
        ;;
      throttled)
        t_on=$(epoch_now)
        PGAPPNAME=kg_bench_throttled psql -X -q -U postgres -d "$db" -c "$throttled_do" >"$work/throttled.$label.out" 2>&1 &
        do_pid=$!
        for i in $(seq 1 100); do
          pid=$(poll "SELECT coalesce(string_agg(pid::text, ' '), '') FROM pg_stat_activity WHERE application_name = 'kg_bench_throttled'")
          [ -n "$pid" ] && break; sleep 0.02
        done
        [ -n "$pid" ] || { echo "(b) the throttled purge did not start" >&2; return 1; }
        ;;
      without)
        t_on=$(epoch_now)
        ;;
    esac
    [ -n "$pid" ] && cpu0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    # What the active backends wait for, twice a second (and the CPU time
    # of the purging process, which may end before pgbench).
    cpu1=${cpu0:-0}
    while kill -0 "$pgbench_pid" 2>/dev/null; do
      [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] && cpu1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo "$cpu1")
      poll "SELECT coalesce(string_agg(coalesce(wait_event_type || ':' || wait_event, 'CPU') || '@' ||
                                       CASE WHEN application_name = 'kg_bench_throttled' THEN 'throttled_purge'
                                            WHEN backend_type = 'client backend' THEN 'pgbench'
                                            ELSE replace(backend_type, ' ', '_') END, ' '), '')
              FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()" >>"$work/waits.$label" || true
      sleep 0.5
    done
    pgbench_wait "$label"
    t_end=$(epoch_now)
    if [ "$v" = without ]; then
      waits=$(psql_su -At -c "SELECT rows_waiting FROM keys_guard.purge_status WHERE relation = 'pu_backlog'::regclass")
      [ "$waits" = "$BACKLOG" ] || { echo "(b) without: $waits rows waiting after the run, expected $BACKLOG" >&2; return 1; }
      printf 'bw\t%s\twithout\t%s\t%s\t%s\n' "$r" "$t0" "$t_on" "$t_end" >>"$raw"
      summary="without"
      return
    fi
    [ -r "/proc/$pid/stat" ] && cpu1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo "$cpu1")
    # Batches committed by the end of pgbench (the purge may go on).
    got=$(psql_su -At -F ' ' -c "
      SELECT count(*), coalesce(sum((detail->>'rows')::bigint), 0),
             coalesce(extract(epoch FROM min(at)), 0), coalesce(extract(epoch FROM max(at)), 0)
        FROM keys_guard.audit_log
       WHERE id > $base AND action = 'purge' AND outcome = 'ok' AND target = 'public.pu_backlog'
         AND at <= to_timestamp($t_end)")
    if [ "$v" != throttled ]; then
      worker_off
    else
      poll "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE application_name = 'kg_bench_throttled'" >/dev/null
      wait "$do_pid" || true
      grep -q 'canceling statement\|^DO$\|^$' "$work/throttled.$label.out" ||
        [ ! -s "$work/throttled.$label.out" ] || { echo "(b) throttled purge:" >&2; cat "$work/throttled.$label.out" >&2; return 1; }
    fi
    read -r batches purged p_first p_last <<<"$got"
    [ "$batches" -ge 2 ] || { echo "(b) $v: fewer than 2 batches purged" >&2; return 1; }
    waits=$(psql_su -At -c "SELECT rows_waiting FROM keys_guard.purge_status WHERE relation = 'pu_backlog'::regclass")
    # Purge window: from the end of the first batch (a worker may wait one
    # naptime before its first purge) to the end of the last, if it
    # finished during the run, else to the end of the run.
    w1=$t_end
    [ "$purged" = "$BACKLOG" ] && w1=$p_last
    printf 'bw\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$v" "$t0" "$p_first" "$w1" "$batches" "$purged" \
      "$(awk -v a="$p_first" -v b="$p_last" 'BEGIN { printf "%.3f", b - a }')" "$waits" \
      "$(awk -v c="$((cpu1 - cpu0))" -v t="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", c / t }')" \
      "$(awk -v a="$t_on" -v b="$p_first" 'BEGIN { printf "%.3f", b - a }')" >>"$raw"
    summary="$v: purged $purged rows in $batches batches, $(awk -v a="$p_first" -v b="$w1" 'BEGIN { printf "%.1f", b - a }') s window"
  }

  # lat_stats <log files glob prefix> <from epoch> <to epoch> [<from> <to> ...]:
  # "n p50 p99 mean max tps" (latency in ms) of the transactions that ended
  # in any of the windows, taken together
  lat_stats() {
    local prefix=$1; shift
    cat "$prefix".* | awk -v w="$*" '
        BEGIN { n = split(w, x, " ") }
        { t = $5 + $6 / 1e6; for (i = 1; i < n; i += 2) if (t >= x[i] && t <= x[i + 1]) { print $3 / 1000; break } }' |
      sort -g | awk -v w="$*" '
        BEGIN { n = split(w, x, " "); for (i = 1; i < n; i += 2) span += x[i + 1] - x[i] }
        { v[NR] = $1; s += $1 }
        END {
          if (NR == 0) { print "0 0 0 0 0 0"; exit }
          i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++
          i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
          printf "%d %.3f %.3f %.3f %.3f %.1f\n", NR, v[i50], v[i99], s / NR, v[NR], NR / span
        }'
  }

  log "(b) warm-up, ${WARMUP_SECONDS}s"
  worker_off
  build_backlog
  if [ "$WARMUP_SECONDS" -gt 0 ]; then
    pgbench_b warm "$WARMUP_SECONDS"
    pgbench_wait warm
  fi

  b_variants=(without with)
  for d in $CURVE; do b_variants+=("curve_$d"); done
  [ "$B_THROTTLE_MS" -gt 0 ] && b_variants+=(throttled)
  nb=${#b_variants[@]}
  for r in $(seq 1 "$B_ROUNDS"); do
    # Rotate the order (two variants: alternate).
    line="(b) round $r/$B_ROUNDS:"
    for i in $(seq 0 $((nb - 1))); do
      v=${b_variants[$(( (i + r - 1) % nb ))]}
      run_b "$r" "$v"; line+=" $summary;"
    done
    # Windows, in seconds from the start of each pgbench run: a purging
    # variant's purge; in "without", the same seconds of its run.  Whole
    # run: after LEAD.
    read -r _ _ _ t0o _ <<<"$(awk -F'\t' -v r="$r" '$1 == "bw" && $2 == r && $3 == "without"' "$raw" | tr '\t' ' ')"
    plus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a + b }'; }
    printf 'bl\t%s\trun_without\t%s\n' "$r" "$(lat_stats "$work/log.b.$r.without" "$(plus "$t0o" "$LEAD")" "$(plus "$t0o" "$((B_SECONDS + 1))")")" >>"$raw"
    for v in "${b_variants[@]}"; do
      [ "$v" = without ] && continue
      read -r _ _ _ t0w w0w w1w _ <<<"$(awk -F'\t' -v r="$r" -v v="$v" '$1 == "bw" && $2 == r && $3 == v' "$raw" | tr '\t' ' ')"
      from=$(awk -v a="$w0w" -v b="$t0w" 'BEGIN { printf "%.6f", a - b }')
      to=$(awk -v a="$w1w" -v b="$t0w" 'BEGIN { printf "%.6f", a - b }')
      sw=$(lat_stats "$work/log.b.$r.$v" "$w0w" "$w1w")
      so=$(lat_stats "$work/log.b.$r.without" "$(plus "$t0o" "$from")" "$(plus "$t0o" "$to")")
      printf 'bl\t%s\twindow_%s\t%s\n' "$r" "$v" "$sw" >>"$raw"
      printf 'bl\t%s\twindow_without_%s\t%s\n' "$r" "$v" "$so" >>"$raw"
      printf 'bl\t%s\trun_%s\t%s\n' "$r" "$v" "$(lat_stats "$work/log.b.$r.$v" "$(plus "$t0w" "$LEAD")" "$(plus "$t0w" "$((B_SECONDS + 1))")")" >>"$raw"
      line+=" p99 in the $v window (s $(printf '%.1f' "$from")–$(printf '%.1f' "$to")): without $(cut -d' ' -f3 <<<"$so") ms, $v $(cut -d' ' -f3 <<<"$sw") ms;"
    done
    # Per second of each run: transactions, p99 (ms); t = 0 at pgbench's start.
    for v in "${b_variants[@]}"; do
      read -r _ _ _ t0 _ <<<"$(awk -F'\t' -v r="$r" -v v="$v" '$1 == "bw" && $2 == r && $3 == v' "$raw" | tr '\t' ' ')"
      cat "$work/log.b.$r.$v".* |
        awk -v t0="$t0" '{ print int($5 + $6 / 1e6 - t0), $3 / 1000 }' | sort -k1,1n -k2,2g |
        awk -v r="$r" -v v="$v" '
          function out() { if (n) { i = int(n * 0.99); if (i < n * 0.99) i++; printf "%s\t%s\t%d\t%d\t%.3f\n", r, v, cur, n, x[i] } }
          $1 != cur && n { out(); n = 0 }
          { cur = $1; x[++n] = $2 }
          END { out() }' >>"$timeline"
      tr ' ' '\n' <"$work/waits.b.$r.$v" | grep -v '^$' | sort | uniq -c | sort -rn |
        awk -v r="$r" -v v="$v" '{ printf "bwait\t%s\t%s\t%s\t%s\n", r, v, $2, $1 }' >>"$raw"
    done
    log "$line"
  done

  # The target: pairs interleaved in one pgbench run.  A separate run per
  # variant compares seconds that may be minutes apart, and on a shared
  # machine whole stretches of tens of seconds run at half speed (the
  # per-second transactions in purge_timeline.tsv show them in "without"
  # runs too); a window without the purge and the next one with it share
  # their conditions far more often.  The backlog is built once (each
  # "with" window purges a small part of it).
  #
  # The p99 of one 5-s window rests on its slowest 1 %, a few hundred
  # transactions, and a burst of a few hundred ms from anywhere on the
  # machine moves it by a third: with the worker never switched on
  # (AA=1), single pairs ranged 0.68-1.36.  So a round of the target is
  # PAIRS_PER_ROUND consecutive pairs, their "with" windows taken together
  # against their "without" windows: one p99 over four times the
  # transactions, still compared within the same minute.
  if [ "$PAIRS" -gt 0 ]; then
    bp_field() { awk -F'\t' -v t="$1" -v w="$2" -v f="$3" '$1 == t && $3 == w { split($4, x, " "); print x[f] }' "$raw"; }
    # bp_ratio <bpl|bgr> <field>: with / without per pair (bpl) or round (bgr)
    bp_ratio() {
      awk -F'\t' -v t="$1" -v f="$2" '
        $1 == t && $3 == "on" { split($4, x, " "); p[$2] = x[f] }
        $1 == t && $3 == "off" { split($4, y, " "); q[$2] = y[f] }
        END { for (k = 1; k in p; k++) printf "%.3f\n", (q[k] > 0) ? p[k] / q[k] : 0 }' "$raw"
    }
    if [ "$AA" = 1 ]; then
      log "(b) A/A control: $PAIRS pairs of ${PAIR_OFF_S}-s windows, the worker never switched on, in one pgbench run"
    else
      log "(b) $PAIRS interleaved pairs: ${PAIR_OFF_S} s without, then the worker on for ${PAIR_ON_S} s, in one pgbench run"
    fi
    pace_for with
    worker_off
    BACKLOG=$PAIRS_BACKLOG build_backlog
    # A pair takes its two windows and about 3 s more (the worker's start,
    # its switching off, the queries); pgbench must outlast them all.
    if [ "$AA" = 1 ]; then pair_slack=2; else pair_slack=5; fi
    pair_secs=$(( LEAD + PAIRS * (PAIR_OFF_S + PAIR_ON_S + pair_slack) + 2 ))
    pgbench_b pairs "$pair_secs" -l --log-prefix="$work/log.pairs" "${sampling_args[@]}"
    sleep "$LEAD"
    for k in $(seq 1 "$PAIRS"); do
      off0=$(epoch_now)
      sleep "$PAIR_OFF_S"
      off1=$(epoch_now)
      if [ "$AA" = 1 ]; then
        sleep "$PAIR_ON_S"
        p0=$(awk -v a="$off1" 'BEGIN { printf "%.6f", a + 1 }')
        p1=$(epoch_now) nb=3 np=0
      else
        base=$(poll "SELECT coalesce(max(id), 0) FROM keys_guard.audit_log")
        worker_on >/dev/null
        sleep "$PAIR_ON_S"
        # Switched off by terminating it: its batch in progress rolls back.
        # Switching off is the script's work, not the worker's (two psql
        # sessions, ALTER SYSTEM, a reload that every process of the
        # server answers): the window ends 0.1 s before it starts, as the
        # "without" window ends before the worker is switched on.
        off_cmd=$(epoch_now)
        worker_off
        got=$(psql_su -At -F ' ' -c "
          SELECT count(*), coalesce(sum((detail->>'rows')::bigint), 0),
                 coalesce(extract(epoch FROM min(at)), 0), coalesce(extract(epoch FROM max(at)), 0)
            FROM keys_guard.audit_log
           WHERE id > $base AND action = 'purge' AND outcome = 'ok' AND target = 'public.pu_backlog'")
        read -r nb np p0 p1 <<<"$got"
        p1=$(awk -v a="$p1" -v b="$off_cmd" 'BEGIN { b -= 0.1; printf "%.6f", (a < b ? a : b) }')
      fi
      [ "$nb" -ge 3 ] || { echo "(b) pair $k: $nb batches, fewer than 3" >&2; exit 1; }
      kill -0 "$pgbench_pid" 2>/dev/null || { echo "(b) pair $k: pgbench ended before the pair did" >&2; exit 1; }
      # The "without" window: from 0.3 s after the previous pair's worker
      # was seen gone for good (worker_off) to 0.1 s before off1 was taken
      # (the fork that takes it shows in the p99 of its 100 ms).
      off0=$(awk -v a="$off0" 'BEGIN { printf "%.6f", a + 0.3 }')
      off1=$(awk -v a="$off1" 'BEGIN { printf "%.6f", a - 0.1 }')
      printf 'bp\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$off0" "$off1" "$p0" "$p1" "$nb" "$np" >>"$raw"
    done
    pgbench_wait pairs
    offs=() ons=()
    while IFS=$'\t' read -r _ k off0 off1 p0 p1 _; do
      printf 'bpl\t%s\toff\t%s\n' "$k" "$(lat_stats "$work/log.pairs" "$off0" "$off1")" >>"$raw"
      printf 'bpl\t%s\ton\t%s\n' "$k" "$(lat_stats "$work/log.pairs" "$p0" "$p1")" >>"$raw"
      offs+=("$off0" "$off1") ons+=("$p0" "$p1")
      if [ $((k % PAIRS_PER_ROUND)) = 0 ]; then
        g=$((k / PAIRS_PER_ROUND))
        printf 'bgr\t%s\toff\t%s\n' "$g" "$(lat_stats "$work/log.pairs" "${offs[@]}")" >>"$raw"
        printf 'bgr\t%s\ton\t%s\n' "$g" "$(lat_stats "$work/log.pairs" "${ons[@]}")" >>"$raw"
        offs=() ons=()
      fi
    done < <(awk -F'\t' '$1 == "bp"' "$raw")
    log "(b) pairs, p99 with / without: $(bp_ratio bpl 3 | paste -sd' '); rounds of $PAIRS_PER_ROUND: $(bp_ratio bgr 3 | paste -sd' ')"
  fi

  noload=''
  if [ "$BENCH_EXPLAIN" = 1 ]; then
    log "(b) without load: the worker, then purge_now(), on the $BACKLOG-row backlog"
    pace_for with
    build_backlog
    worker_purge pu_backlog "$BACKLOG"
    read -r batches sum rest span e2e first gap_first gap_last <<<"$purge_result"
    noload="the worker (the pacing of \"with\": purge_batch_delay = $DELAY_B_MS ms, purge_busy_duty = $BUSY_DUTY; nothing else runs, so it does not pause): $batches batches, $(awk -v n="$rest" -v ms="$span" 'BEGIN { printf "%.0f", n / ms * 1000 }') rows/s"
    noload+=" (steady rate as in (a)), $(printf '%.1f' "$gap_first") ms per batch for batches 2–11, $(printf '%.1f' "$gap_last") ms for the last 10"
    build_backlog
    res=$(timed "SELECT purged || '|' || skipped FROM keys_guard.purge_now('pu_backlog')")
    [ "${res#*$'\t'}" = "$BACKLOG|0" ] || { echo "(b) purge_now() of the backlog returned '${res#*$'\t'}'" >&2; exit 1; }
    noload+="; \`purge_now('pu_backlog')\`: $(awk -v ms="${res%%$'\t'*}" 'BEGIN { printf "%.1f", ms / 1000 }') s,"
    noload+=" $(awk -v n="$BACKLOG" -v ms="${res%%$'\t'*}" 'BEGIN { printf "%.0f", n / ms * 1000 }') rows/s"
    log "(b) without load: $noload"
  fi
fi

check_library
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date +%s) - start_epoch ))

# --- report ------------------------------------------------------------------------

# a_rate <variant>: rows/s per round, one per line.
a_rate() { awk -F'\t' -v v="$1" '$1 == "a" && $3 == v { printf "%.0f\n", $5 / $4 * 1000 }' "$raw"; }
# a_ratio <variant> [baseline]: per-round rate / baseline rate (default: the single DELETE).
a_ratio() {
  awk -F'\t' -v v="$1" -v b="${2:-plain}" '
    $1 == "a" && $3 == v { x[$2] = $5 / $4 }
    $1 == "a" && $3 == b { y[$2] = $5 / $4 }
    END { for (r = 1; r in x; r++) printf "%.3f\n", x[r] / y[r] }' "$raw"
}
# judge <what> <op: >= or <=> <target or ""> <median ratio> <per-round ratios...>:
# sets met and target_text for a row of the report, and records a target.
judge() {
  local what=$1 op=$2 t=$3 ratio=$4
  shift 4
  if [ -z "$t" ]; then
    target_text="— (reported)"; met="—"
    return
  fi
  met=$(awk -v r="$ratio" -v t="$t" -v op="$op" 'BEGIN { ok = (op == ">=") ? (r >= t) : (r <= t); print ok ? "yes" : "**no**" }')
  record_target "$what" "$op" "$t" "$@"
  if [ "$op" = ">=" ]; then target_text="≥ $t"; else target_text="≤ $t"; fi
}
a_row() {
  local what=$1 v=$2 target=$3 rate ratio met target_text
  rate=$(a_rate "$v" | median)
  if [ "$v" = plain ]; then
    printf '| %s | %.0f | — | — | — | %s |\n' "$what" "$rate" "$(a_rate "$v" | paste -sd' ')"
    return
  fi
  ratio=$(a_ratio "$v" | median)
  judge "$what" ">=" "$target" "$ratio" $(a_ratio "$v")
  printf '| %s | %.0f | %.2f | %s | %s | %s (ratios %s) |\n' "$what" "$rate" "$ratio" "$target_text" "$met" \
    "$(a_rate "$v" | paste -sd' ')" "$(a_ratio "$v" | paste -sd' ')"
}

# bl <variant> <field>: per-round values (field 1 = n, 2 = p50, 3 = p99, 4 = mean, 5 = max, 6 = tps).
bl() { awk -F'\t' -v v="$1" -v f="$2" '$1 == "bl" && $3 == v { split($4, x, " "); print x[f] }' "$raw"; }
bl_ratio() {
  awk -F'\t' -v a="$1" -v b="$2" -v f="$3" '
    $1 == "bl" && $3 == a { split($4, x, " "); p[$2] = x[f] }
    $1 == "bl" && $3 == b { split($4, y, " "); q[$2] = y[f] }
    END { for (r = 1; r in p; r++) printf "%.3f\n", p[r] / q[r] }' "$raw"
}
# b_row <what> <window|run> <field> <unit> <max ratio or ""> [variant]
b_row() {
  local what=$1 scope=$2 f=$3 unit=$4 target=$5 v=${6:-with} ratio met target_text num den
  num=${scope}_$v
  if [ "$scope" = window ]; then den=window_without_$v; else den=run_without; fi
  ratio=$(bl_ratio "$num" "$den" "$f" | median)
  judge "$what" "<=" "$target" "$ratio" $(bl_ratio "$num" "$den" "$f")
  local fmt='%.0f'
  [ "$unit" = ms ] && fmt='%.3f ms'
  printf "| %s | $fmt | $fmt | %.3f | %s | %s | %s |\n" "$what" \
    "$(bl "$den" "$f" | median)" "$(bl "$num" "$f" | median)" \
    "$ratio" "$target_text" "$met" "$(bl_ratio "$num" "$den" "$f" | paste -sd' ')"
}

commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$here" diff --quiet HEAD -- src keys_guard--1.0.sql 2>/dev/null || commit+=" (src modified)"

report="$work/report.md"
{
  echo "# keys_guard purge benchmark results"
  echo
  if [ "$BENCH_INSTALL" = 1 ]; then built="built and installed from this tree"; else built="as installed before the run"; fi
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), tree at commit $commit, keys_guard.so ($built) md5 $libsum,"
  echo "$(psql -X -At -U postgres -d "$db" -c 'SELECT version()' | sed 's/ on .*//'), $(nproc --all) CPUs (not pinned), load average $load_before before / $load_after after, $elapsed s."
  echo "keys_guard.purge_naptime = 1, purge_batch_size = $WORKER_BATCH_SIZE, purge_batch_time = $BATCH_TIME_MS ms, purge_busy_duty = $BUSY_DUTY, purge_batch_delay = $DELAY_A_MS ms in (a) and $DELAY_B_MS ms in (b), min_grace = 0; tables guarded with grace => interval '0'; purge batches commit asynchronously."
  if [[ $BENCH_ONLY == *a* ]]; then
    echo
    echo "## (a) Purge throughput: $N expired rows of $ROWS"
    echo
    echo "$ROUNDS rounds after a warm-up round; each round rebuilds identical tables, one per variant ($((a_size / 8192)) pages each when measured,"
    echo "same indexes: $(sed -n '1s/^[^:]*: //p' <<<"$a_indexes")), soft-deletes the \`grp < 50\` half of one, VACUUM (FREEZE, ANALYZE),"
    echo "CHECKPOINT, measures it, in a rotating order. **Ratios are medians over rounds of the ratio to the single DELETE of the same round.**"
    echo
    echo "| what | rows/s | ratio to the single DELETE | target | met? | per round |"
    echo "|---|---:|---:|---|---|---|"
    a_row "single \`DELETE FROM pu_plain WHERE deleted_at IS NOT NULL AND hard_delete_at < now()\` on the unguarded table (psql \\timing)" plain ""
    a_row "background worker, steady rate: rows of batches 2..k / time from the end of batch 1 to the end of batch k (audit_log timestamps, server clock)" worker 0.5
    a_row "background worker on an identical table that a foreign key references (\`pu_fk_child\`, empty, \`ON DELETE CASCADE\`), so the purge takes the statement path: \`FOR UPDATE SKIP LOCKED\`, then a DELETE that fires the foreign key's trigger for every row; steady rate as above" worker_fk ""
    a_row "single DELETE of the expired rows of \`pu_plain_fk\`, unguarded and referenced the same way (its trigger fires for every row too)" plain_fk ""
    a_row "background worker, end to end: $N rows / time from the reload that switches it on to the end of the last batch (includes starting the worker and any wait before its first purge)" worker_e2e ""
    a_row "\`keys_guard.purge_now('pu_now')\`: every batch in one transaction (psql \\timing)" now ""
    if [ "$BENCH_BREAKDOWN" = 1 ]; then
      a_row "breakdown: the worker's batch statement by hand on an unguarded table, a DO block that EXECUTEs it and COMMITs after each batch (psql \\timing)" batch ""
      a_row "breakdown: the same without \`FOR UPDATE OF t SKIP LOCKED\`" batch_nolock ""
    fi
    echo
    if [ "$BENCH_BREAKDOWN" = 1 ]; then
      echo "Worker steady rate / hand-written batches (keys_guard's own cost on the same statement), per round: $(a_ratio worker batch | paste -sd' ');"
      echo "hand-written batches with / without the row locks: $(a_ratio batch batch_nolock | paste -sd' ')."
    fi
    echo "Statement path against its own baseline, the worker on pu_fk / the single DELETE on pu_plain_fk, per round: $(a_ratio worker_fk plain_fk | paste -sd' ') (median $(a_ratio worker_fk plain_fk | median))."
    echo "Worker batches per run: $(awk -F'\t' '$1 == "aw" { printf "%s%s", s, $4; s = ", " }' "$raw");"
    echo "first batch ended $(awk -F'\t' '$1 == "aw" { printf "%s%.0f", s, $5; s = ", " }' "$raw") ms after the reload;"
    echo "mean time per batch, batches 2–11: $(awk -F'\t' '$1 == "aw" { printf "%s%.1f", s, $6; s = ", " }' "$raw") ms;"
    echo "the last 10 batches: $(awk -F'\t' '$1 == "aw" { printf "%s%.1f", s, $7; s = ", " }' "$raw") ms."
    echo "Checked in every run: the DELETE's tag \`DELETE $N\` / purge_now() returning $N purged, 0 skipped / the worker's audit"
    echo "records adding up to $N rows; afterwards $((ROWS - N)) rows left, none soft-deleted, none with \`grp < 50\`; for the guarded"
    echo "tables purge_status shows 0 deleted, 0 waiting, $N purged, 0 skipped, and the application (bench_app with tenant 1's"
    echo "context) sees $((ROWS - N)) rows."
  fi
  if [[ $BENCH_ONLY == *b* ]]; then
    echo
    echo "## (b) Foreground latency with and without the worker purging $BACKLOG expired rows"
    echo
    if [ "$RATE" -gt 0 ]; then ratetxt="-R $RATE (latency includes the schedule lag)"; else ratetxt="unthrottled (closed loop)"; fi
    echo "pgbench built-in TPC-B-like script (unguarded pgbench tables, scale $SCALE), -n -M prepared -c $CLIENTS -j $JOBS -T $B_SECONDS,"
    echo "$ratetxt, as bench_app, per-transaction log (sampling $SAMPLING). Before every run: the backlog rebuilt (pu_backlog,"
    echo "$BACKLOG rows soft-deleted by one DELETE, VACUUM, CHECKPOINT), pgbench tables vacuumed and prewarmed, history emptied."
    if [ "$B_THROTTLE_MS" -gt 0 ]; then thr=", or the throttled emulation is started (\"throttled\")"; else thr=""; fi
    if [ "$B_ROUNDS" -gt 0 ]; then
      echo "At $LEAD s into the run the worker is switched on (\"with\") or not (\"without\")$thr. $B_ROUNDS rounds, in a rotating order."
      echo "**Ratios are medians over rounds of with / without in the same round**; the value columns are medians."
    else
      echo "No separate runs with and without the worker (B_ROUNDS=0): the pairs below only."
    fi
    echo
    if [ "$PAIRS" -gt 0 ]; then
      if [ "$AA" = 1 ]; then
        echo "**A/A control of the target's method: $PAIRS pairs in one pgbench run, the worker never switched on** (-T $pair_secs,"
        echo "the same options): after a backlog rebuilt as above and $LEAD s of pgbench, each pair is a ${PAIR_OFF_S}-s window (from 0.3 s"
        echo "after the pair began to 0.1 s before its end), then a second one from 1 s to ${PAIR_ON_S} s after the first one's end. What"
        echo "the target row would say with nothing switched on: how far the method alone moves the ratio."
        p99_target='' p99_what="p99 latency, A/A control: rounds of $PAIRS_PER_ROUND pairs (second windows of a round together / first windows together)"
      else
        echo "**The target: $PAIRS pairs interleaved in one pgbench run** (-T $pair_secs, the same options): after a backlog of"
        echo "$PAIRS_BACKLOG rows rebuilt as above and $LEAD s of pgbench, each pair is a ${PAIR_OFF_S}-s window without the purge (from"
        echo "0.3 s after the previous pair's worker was seen gone to 0.1 s before the window's end), then the worker switched on"
        echo "for ${PAIR_ON_S} s (its window: from the end of its first batch to the end of its last; then it is terminated, its"
        echo "batch in progress rolled back). **A round is $PAIRS_PER_ROUND consecutive pairs: the p99 of its \"with\" windows taken"
        echo "together / the p99 of its \"without\" windows taken together; the ratio is the median over the $((PAIRS / PAIRS_PER_ROUND)) rounds.**"
        echo "Single pairs are reported beside it. The value columns are medians."
        p99_target=1.2 p99_what="p99 latency while the worker purges, rounds of $PAIRS_PER_ROUND interleaved pairs (with: the round's worker windows together; without: the windows just before them, together)"
      fi
      echo
      echo "| what | without | with | ratio | target | met? | per-round (per-pair) ratios |"
      echo "|---|---:|---:|---:|---|---|---|"
      bp_row() {
        local what=$1 t=$2 f=$3 unit=$4 target=$5 ratio met target_text fmt='%.0f'
        ratio=$(bp_ratio "$t" "$f" | median)
        judge "$what" "<=" "$target" "$ratio" $(bp_ratio "$t" "$f")
        [ "$unit" = ms ] && fmt='%.3f ms'
        printf "| %s | $fmt | $fmt | %.3f | %s | %s | %s |\n" "$what" \
          "$(bp_field "$t" off "$f" | median)" "$(bp_field "$t" on "$f" | median)" \
          "$ratio" "$target_text" "$met" "$(bp_ratio "$t" "$f" | paste -sd' ')"
      }
      bp_row "$p99_what" bgr 3 ms "$p99_target"
      bp_row "p99 latency, single pairs (with: the worker's window; without: the window just before it)" bpl 3 ms ""
      bp_row "p50 latency, rounds of $PAIRS_PER_ROUND pairs" bgr 2 ms ""
      bp_row "tps, rounds of $PAIRS_PER_ROUND pairs" bgr 6 "" ""
      echo
      [ "$AA" = 1 ] || echo "The worker in each pair: $(awk -F'\t' '$1 == "bp" { printf "%s%s rows in %s batches", s, $8, $7; s = "; " }' "$raw")."
      echo
      if [ "$B_ROUNDS" -gt 0 ]; then
        echo "**Separate runs** ($B_ROUNDS rounds, reported):"
        echo
      fi
    fi
  fi
  # The separate runs: skipped with B_ROUNDS=0 (bench/all.sh, for time).
  if [[ $BENCH_ONLY == *b* ]] && [ "$B_ROUNDS" -gt 0 ]; then
    echo "| what | without | with | ratio | target | met? | per-round ratios |"
    echo "|---|---:|---:|---:|---|---|---|"
    if [ "$PAIRS" -gt 0 ]; then p99_target=""; else p99_target=1.2; fi
    b_row "p99 latency during the purge (with: from the end of the worker's first batch to the end of its last; without: the same seconds of its run)" window 3 ms "$p99_target"
    b_row "p50 latency during the purge" window 2 ms ""
    b_row "mean latency during the purge" window 4 ms ""
    b_row "tps during the purge" window 6 "" ""
    b_row "p99 latency, whole run after the first $LEAD s" run 3 ms ""
    b_row "p50 latency, whole run after the first $LEAD s" run 2 ms ""
    b_row "tps, whole run after the first $LEAD s" run 6 "" ""
    if [ "$B_THROTTLE_MS" -gt 0 ]; then
      b_row "emulation, not the worker as built: p99 during a purge by \`keys_guard._purge_table(rel, $BATCH_SIZE, 1, false)\` (the worker's unit of work) in a loop, one transaction per batch, \`pg_sleep($B_THROTTLE_MS ms)\` between batches (\"with\" column)" window 3 ms 1.2 throttled
      b_row "emulation: p50 during that purge" window 2 ms "" throttled
      b_row "emulation: tps during that purge" window 6 "" "" throttled
    fi
    if [ -n "$CURVE" ]; then
      echo
      echo "Trade-off curve (CURVE): each pacing setting is one more variant of every round, against the same round's"
      echo "\"without\" run. Purge rate under load: rows of batches 2..k over the time between the ends of batch 1 and"
      echo "batch k while pgbench ran; its ratio is to the median single DELETE of (a) (idle server)."
      echo
      echo "| pacing | p99 ratio during the purge (median) | per round | purge rows/s under load (median) | ratio to the single DELETE | per round (rows/s) |"
      echo "|---|---:|---|---:|---:|---|"
      plain_rate=$(a_rate plain | median)
      for v in with $(for d in $CURVE; do echo "curve_$d"; done); do
        case $v in
          with) label="default: purge_busy_duty = $BUSY_DUTY, purge_batch_delay = $DELAY_B_MS ms" ;;
          curve_full) label="purge_batch_delay = 0 (full speed, no pacing)" ;;
          *) label="purge_busy_duty = ${v#curve_}" ;;
        esac
        rates=$(awk -F'\t' -v v="$v" '$1 == "bw" && $3 == v { printf "%.0f\n", ($9 > 0 ? ($8 - $8 / $7) / $9 : 0) }' "$raw")
        rate=$(median <<<"$rates")
        printf '| %s | %.3f | %s | %.0f | %s | %s |\n' "$label" "$(bl_ratio "window_$v" "window_without_$v" 3 | median)" \
          "$(bl_ratio "window_$v" "window_without_$v" 3 | paste -sd' ')" "$rate" \
          "$(awk -v a="$rate" -v b="${plain_rate:-0}" 'BEGIN { if (b > 0) printf "%.4f", a / b; else printf "— (no (a) in this run)" }')" \
          "$(paste -sd' ' <<<"$rates")"
      done
    fi
    echo
    echo "The purge under load, per round (batches committed while pgbench ran):"
    echo
    echo "| round | purge | rows purged | batches | first batch ended after | purge window (seconds of the run) | rows/s | finished within the run? | CPU time of the purging process |"
    echo "|---|---|---:|---:|---:|---:|---:|---|---:|"
    awk -F'\t' -v all="$BACKLOG" '$1 == "bw" && $3 != "without" {
      printf "| %s | %s | %s | %s | %.0f ms | %.1f–%.1f s | %.0f | %s | %s s |\n", $2, ($3 == "with") ? "worker" : ($3 == "throttled") ? "throttled emulation" : "worker, " substr($3, 7), $8, $7,
             $12 * 1000, $5 - $4, $6 - $4, ($9 > 0 ? ($8 - $8 / $7) / $9 : 0),
             ($8 == all) ? "yes" : "no (" $10 " rows still waiting when stopped)", $11 }' "$raw"
    echo
    echo "(rows/s: rows of batches 2..k over the time between the ends of batch 1 and batch k.) What the active backends"
    echo "were doing, sampled twice a second from pg_stat_activity over all rounds (wait event, or CPU when none, @ process):"
    echo
    for v in "${b_variants[@]}"; do
      echo "- $v: $(awk -F'\t' -v v="$v" '$1 == "bwait" && $3 == v { c[$4] += $5 } END { for (k in c) print c[k], k }' "$raw" |
                  sort -rn | head -8 | awk '{ printf "%s%s ×%s", s, $2, $1; s = ", " }')"
    done
    echo
    if [ -n "$noload" ]; then
      echo "The same backlog without pgbench (BENCH_EXPLAIN=1), once: $noload."
      echo
    fi
    echo "Checked in every run: no failed pgbench transactions; before it, $BACKLOG rows in pu_backlog, all expired; after a"
    echo "\"without\" run all $BACKLOG still waiting (purge_status)."
  fi
  echo
  echo "Reproduce:"
  echo
  echo '```'
  echo "$repro"
  echo '```'
  if [ -n "$worker_profile" ]; then
    read -r pb pms <<<"$profile_span"
    echo
    echo "Where the worker's time goes (BENCH_EXPLAIN=1): pg_stat_statements (track = all, track_planning = on) during one"
    echo "purge of a fresh pu_kg by the worker: $pb batches, $pms ms from the end of the first to the end of the last"
    echo "($(awk -v b="$pb" -v ms="$pms" 'BEGIN { printf "%.3f", ms / (b - 1) }') ms per batch, transaction and the worker's own C code included)."
    echo "Columns: calls | execution ms | planning ms | ms per call | statement."
    echo
    echo '```'
    echo "$worker_profile"
    echo '```'
  fi
  if [ -n "$explain" ]; then
    echo
    echo "Plans (BENCH_EXPLAIN=1; a fresh table of (a)): the purge's batch query as run by purge_now() (auto_explain,"
    echo "ANALYZE, BUFFERS; the worker runs the same statement), and the single DELETE:"
    echo
    echo '```'
    printf '%s' "$explain"
    echo '```'
  fi
} >"$report"

mkdir -p "$bench/results"
cp "$report" "$bench/results/purge.md"
cp "$raw" "$bench/results/purge.tsv"
[[ $BENCH_ONLY == *b* ]] && cp "$timeline" "$bench/results/purge_timeline.tsv"
echo
cat "$report"
echo
echo "(written to bench/results/purge.md; raw runs in bench/results/purge.tsv, per-second pgbench numbers of (b) in bench/results/purge_timeline.tsv)"
