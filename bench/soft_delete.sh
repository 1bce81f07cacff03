#!/usr/bin/env bash
# keys_guard soft-delete benchmarks, the soft-delete rows of docs/contract.md §14:
#
#   (a) a bulk soft DELETE of 100k rows (of 200k) on a guarded table vs the
#       equivalent plain UPDATE of the soft-delete columns on an identical
#       unguarded table (target: at most 1.2x the UPDATE's time);
#   (b) the same soft DELETE vs the usual hand-made approach on an identical
#       unguarded table: a PL/pgSQL BEFORE DELETE row trigger that UPDATEs
#       the row and returns NULL (target: keys_guard at least 2x faster);
#   (c) single-row soft DELETE by primary key vs a single-row UPDATE of the
#       same columns (pgbench -M prepared -c 1, the same number of
#       transactions on both sides; reported, no contract target).
#
# The guarded table of (a)/(b)/(c) lives in a tenant schema (tenant_1); with
# BENCH_POOLED=1, (a) is also measured on a pooled table (protect_table with
# a tenant column) against an unguarded twin whose UPDATE filters on the
# tenant by hand.
#
# Everything runs against one throw-away cluster (initdb in a temp dir, Unix
# socket only, removed on exit).  Every round rebuilds all tables (so every
# run changes the same live rows of fresh, VACUUM (FREEZE, ANALYZE)'d
# tables), then times each statement once, in a rotating order, after a
# CHECKPOINT, in its own session as the non-superuser application role, in
# a transaction that first sets the context.  The time is psql's \timing of
# the statement alone, and the time its backend spent on a CPU meanwhile
# (/proc/<pid>/schedstat), which time lost to other processes of the
# machine leaves out.  With BENCH_PAIRED (the default), the soft DELETE of
# (a) and its UPDATE run at the same time on the one CPU and are compared
# by CPU time: the speed of this kind of machine changes from one second to
# the next, and two statements one after the other compare the machine's
# seconds as much as the statements.  So do (b)'s trigger DELETE and a
# soft DELETE of its own (on tenant_1.sd_kg_b, a twin of sd_kg): the
# trigger's DELETE takes longer, so it runs alone for its last part, which
# if anything favours the trigger.  Results are medians over rounds of
# the per-round ratio.  Round 0 is an unrecorded warm-up.  Each run is checked: command
# tag, and (read back under keys_guard.bypass) every row still there with
# exactly the matching rows marked deleted_at / hard_delete_at = +30 days /
# deleted_by = 'bench' / delete_request_id = 'r'.
#
# The server and every client are pinned to one CPU (BENCH_CPU): on small
# virtual machines a wake-up across CPUs can cost more than the statement,
# which makes one-row-per-transaction numbers (c) depend on where the
# scheduler happens to put pgbench and the backend (3-6x swings).
#
# Run as root on Debian bookworm from anywhere:
#   bash bench/soft_delete.sh
# Settings (environment):
#   ROUNDS=5           measured rounds
#   ROWS=200000        rows per table in (a)/(b) (a multiple of 100; half
#                      of them are deleted)
#   CROWS=400000       rows per table in (c)
#   C_TRANSACTIONS=40000  pgbench transactions per run of (c) (-t; a
#                      quarter of it in the warm-up round 0)
#   BENCH_CPU=0        the CPU to pin the server and clients to (taskset -c
#                      syntax); none: do not pin
#   BENCH_POOLED=1     also measure (a) on a pooled table (0: skip)
#   BENCH_BREAKDOWN=1  also measure, in the same rounds: for (b), the
#                      trigger written generically (dynamic SQL on
#                      TG_TABLE_NAME); for (a), the plain UPDATE on a table
#                      carrying a copy of keys_guard's AFTER UPDATE row
#                      trigger, which splits keys_guard's overhead (0: skip)
#   BENCH_ONLY=abc     which comparisons: any of a, b, c ((a) and (b) share
#                      their runs: ab costs as much as a)
#   BENCH_INSTALL=1    build and `make install` the tree first (0: benchmark
#                      the keys_guard already installed for PostgreSQL 15)
#   BENCH_DEPS=1       run scripts/deps.sh first (0: skip)
#   BENCH_PAIRED=1     run each (a) soft DELETE at the same time as its
#                      UPDATE, and (b)'s trigger DELETE at the same time as
#                      a soft DELETE of sd_kg_b, on the one CPU; compare their
#                      backends' CPU time (0: one after the other, by
#                      psql's \timing and CPU time; see bench/README.md)
#   BENCH_PERF=0       1: also record a perf profile of one soft DELETE of
#                      (a) (needs perf) and add its top entries to the report
# Writes the result table to stdout and to bench/results/soft_delete.md (raw
# per-run numbers in bench/results/soft_delete.tsv).
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")/.." && pwd)
bench="$here/bench"
cd "$here"

ROUNDS=${ROUNDS:-5}
ROWS=${ROWS:-200000}
CROWS=${CROWS:-400000}
C_TRANSACTIONS=${C_TRANSACTIONS:-40000}
BENCH_CPU=${BENCH_CPU:-0}
BENCH_POOLED=${BENCH_POOLED:-1}
BENCH_BREAKDOWN=${BENCH_BREAKDOWN:-1}
BENCH_ONLY=${BENCH_ONLY:-abc}
BENCH_INSTALL=${BENCH_INSTALL:-1}
BENCH_DEPS=${BENCH_DEPS:-1}
BENCH_PERF=${BENCH_PERF:-0}
BENCH_PAIRED=${BENCH_PAIRED:-1}

me=soft_delete.sh
for v in ROUNDS ROWS CROWS C_TRANSACTIONS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$me: $v must be a whole number" >&2; exit 2; }
done
[ "$ROUNDS" -ge 1 ] && [ "$C_TRANSACTIONS" -ge 4 ] || { echo "$me: ROUNDS must be >= 1, C_TRANSACTIONS >= 4" >&2; exit 2; }
[ "$ROWS" -ge 100 ] && [ $((ROWS % 100)) = 0 ] || { echo "$me: ROWS must be a positive multiple of 100" >&2; exit 2; }
[ "$CROWS" -ge 1 ] || { echo "$me: CROWS must be >= 1" >&2; exit 2; }
for v in BENCH_POOLED BENCH_BREAKDOWN BENCH_INSTALL BENCH_DEPS BENCH_PERF BENCH_PAIRED; do
  [[ ${!v} =~ ^[01]$ ]] || { echo "$me: $v is 0 or 1" >&2; exit 2; }
done
[[ $BENCH_ONLY =~ ^[abc]+$ ]] || { echo "$me: BENCH_ONLY is made of a, b, c" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$me: run as root (the server is started as the postgres user)" >&2; exit 2; }
if [ "$BENCH_CPU" != none ]; then
  command -v taskset >/dev/null || { echo "$me: pinning to a CPU needs taskset (util-linux); or BENCH_CPU=none" >&2; exit 2; }
  # This shell and everything it starts: the server, psql, pgbench.
  taskset -p -c "$BENCH_CPU" $$ >/dev/null || { echo "$me: cannot pin to CPU $BENCH_CPU" >&2; exit 2; }
fi
if [ "$BENCH_PERF" = 1 ] && ! command -v perf >/dev/null; then
  echo "$me: BENCH_PERF=1 needs perf" >&2; exit 2
fi

half=$((ROWS / 2))
do_ab=0; [[ $BENCH_ONLY == *[ab]* ]] && do_ab=1
do_c=0; [[ $BENCH_ONLY == *c* ]] && do_c=1

repro="cd $here && ROUNDS=$ROUNDS ROWS=$ROWS CROWS=$CROWS C_TRANSACTIONS=$C_TRANSACTIONS BENCH_CPU=$BENCH_CPU"
repro+=" BENCH_POOLED=$BENCH_POOLED BENCH_PAIRED=$BENCH_PAIRED BENCH_BREAKDOWN=$BENCH_BREAKDOWN BENCH_ONLY=$BENCH_ONLY BENCH_INSTALL=$BENCH_INSTALL BENCH_PERF=$BENCH_PERF"
repro+=" bash bench/soft_delete.sh"

. "$bench/lib.sh"

# --- throw-away cluster -----------------------------------------------------

new_workdir keys_guard_sdbench
perf_pid=''

cleanup() {
  local rc=$?
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
  fi
  finish_run $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

use_free_port 55532

init_cluster
cat >>"$pgdata/postgresql.conf" <<EOF
shared_buffers = 512MB
max_wal_size = 4GB
shared_preload_libraries = 'keys_guard'
EOF

check_library
runuser -u postgres -- pg_ctl -D "$pgdata" -l "$work/server.log" -w -t 120 start >/dev/null
server_up=1
for i in $(seq 1 600); do
  pg_isready -q -d postgres -U postgres && break
  [ "$i" = 600 ] && { echo "server did not become ready" >&2; exit 1; }
  sleep 0.1
done

db=kg_softdel
psql_su() { psql -X -q -v ON_ERROR_STOP=1 -U postgres -d "$db" "$@"; }
psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres -c "CREATE DATABASE $db"
psql_su -f "$bench/soft_delete_setup.sql" >"$work/setup.log"

pooled=false; [ "$BENCH_POOLED" = 1 ] && [ "$do_ab" = 1 ] && pooled=true
extra=false; [ "$BENCH_BREAKDOWN" = 1 ] && [ "$do_ab" = 1 ] && extra=true
build_tables() {
  psql_su -v rows="$ROWS" -v crows="$CROWS" -v pooled="$pooled" -v extra="$extra" \
    -f "$bench/soft_delete_tables.sql" >>"$work/tables.log"
  psql_su -c CHECKPOINT
}

# --- (a)/(b): one bulk statement per variant ------------------------------------

set_kg="SELECT keys_guard.set_context('1', 'bench', 'r');"
set_app="SELECT set_config('app.tenant', '1', true);"
soft_cols="deleted_at = now(), hard_delete_at = now() + interval '30 days', deleted_by = 'bench', delete_request_id = 'r'"
declare -A ab_ctx=([kg]=$set_kg [kg_b]=$set_kg [plain]=$set_app [trig]=$set_app [pool]=$set_kg [pool_plain]=$set_app
                   [trig_generic]=$set_app [plain_idx]=$set_app [pool_plain_idx]=$set_app)
declare -A ab_sql=(
  [kg]="DELETE FROM sd_kg WHERE grp < 50"
  [kg_b]="DELETE FROM sd_kg_b WHERE grp < 50"
  [plain]="UPDATE sd_plain SET $soft_cols WHERE grp < 50 AND deleted_at IS NULL"
  [trig]="DELETE FROM sd_trig WHERE grp < 50 AND deleted_at IS NULL"
  [pool]="DELETE FROM sd_pool WHERE grp < 50"
  [pool_plain]="UPDATE sd_pool_plain SET $soft_cols WHERE tenant_id = '1' AND grp < 50 AND deleted_at IS NULL"
  [trig_generic]="DELETE FROM sd_trig_generic WHERE grp < 50 AND deleted_at IS NULL"
  [plain_idx]="UPDATE sd_plain_idx SET $soft_cols WHERE grp < 50 AND deleted_at IS NULL"
  [pool_plain_idx]="UPDATE sd_pool_plain_idx SET $soft_cols WHERE tenant_id = '1' AND grp < 50 AND deleted_at IS NULL"
)
declare -A ab_table=([kg]=tenant_1.sd_kg [kg_b]=tenant_1.sd_kg_b [plain]=sd_plain [trig]=sd_trig [pool]=sd_pool [pool_plain]=sd_pool_plain
                     [trig_generic]=sd_trig_generic [plain_idx]=sd_plain_idx [pool_plain_idx]=sd_pool_plain_idx)
declare -A ab_tag=([kg]="DELETE $half" [kg_b]="DELETE $half" [plain]="UPDATE $half" [trig]="DELETE 0" [pool]="DELETE $half"
                   [pool_plain]="UPDATE $half" [trig_generic]="DELETE 0" [plain_idx]="UPDATE $half"
                   [pool_plain_idx]="UPDATE $half")
ab_variants=(kg plain trig)
[ "$BENCH_PAIRED" = 1 ] && ab_variants+=(kg_b)
[ "$pooled" = true ] && ab_variants+=(pool pool_plain)
[ "$extra" = true ] && ab_variants+=(trig_generic plain_idx)
[ "$extra" = true ] && [ "$pooled" = true ] && ab_variants+=(pool_plain_idx)

# check_rows <table>: every row still there, exactly the grp < 50 rows
# soft-deleted, with the values of the statement.  Read under bypass.
check_rows() {
  local got expect="$ROWS|$half|$half|0"
  got=$(psql_su -At -c "SET keys_guard.bypass = on" -c "
    SELECT count(*), count(deleted_at),
           count(*) FILTER (WHERE deleted_at IS NOT NULL AND deleted_by = 'bench'
                              AND delete_request_id = 'r'
                              AND hard_delete_at = deleted_at + interval '30 days'),
           count(*) FILTER (WHERE (deleted_at IS NOT NULL) <> (grp < 50))
      FROM $1")
  if [ "$got" != "$expect" ]; then
    echo "check of $1 failed: rows|deleted|deleted with the expected values|wrong rows = $got, expected $expect" >&2
    return 1
  fi
}

# run_ab <round> <variant>: time the statement; appends to $raw.  Two
# measures: psql's \timing (wall clock), and the time the session's backend
# spent on a CPU while the statement ran (the first field of
# /proc/<pid>/schedstat, in ns, read by psql's \! just before and after):
# time the backend waited for a CPU that other processes held is not in it.
run_ab() {
  local r=$1 v=$2 out tag ms cpu0 cpu1 cpu_ms
  psql_su -c CHECKPOINT
  out=$(psql -X -At -v ON_ERROR_STOP=1 -U bench_app -d "$db" 2>&1 <<EOF
BEGIN;
${ab_ctx[$v]}
SELECT pg_backend_pid() AS bpid \\gset
\\setenv KG_BENCH_BACKEND :bpid
\\! echo "cpu_before \$(cut -d' ' -f1 /proc/\$KG_BENCH_BACKEND/schedstat)"
\\timing on
${ab_sql[$v]};
\\timing off
\\! echo "cpu_after \$(cut -d' ' -f1 /proc/\$KG_BENCH_BACKEND/schedstat)"
COMMIT;
EOF
) || { echo "$v failed:" >&2; echo "$out" >&2; return 1; }
  tag=$(grep -E '^(DELETE|UPDATE) [0-9]+$' <<<"$out" | head -1 || true)
  ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out" | head -1)
  cpu0=$(sed -n 's/^cpu_before \([0-9]*\)$/\1/p' <<<"$out")
  cpu1=$(sed -n 's/^cpu_after \([0-9]*\)$/\1/p' <<<"$out")
  if [ -z "$cpu0" ] || [ -z "$cpu1" ]; then
    echo "$v: no CPU time of the backend (/proc/<pid>/schedstat), got:" >&2
    echo "$out" >&2
    return 1
  fi
  cpu_ms=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
  if [ "$tag" != "${ab_tag[$v]}" ] || [ -z "$ms" ]; then
    echo "$v: expected command tag '${ab_tag[$v]}' and a time, got:" >&2
    echo "$out" >&2
    return 1
  fi
  check_rows "${ab_table[$v]}"
  case $v in
    kg|kg_b|pool)
      # The application, with its context, sees only the live rows.
      local seen
      seen=$(psql -X -At -v ON_ERROR_STOP=1 -U bench_app -d "$db" \
               -c "BEGIN" -c "$set_kg" -c "SELECT 'seen ' || count(*) FROM ${ab_table[$v]#tenant_1.}" -c "COMMIT" |
             sed -n 's/^seen //p')
      [ "$seen" = "$((ROWS - half))" ] || { echo "$v: the application sees $seen rows, expected $((ROWS - half))" >&2; return 1; }
      ;;
  esac
  [ "$r" = 0 ] || printf 'ab\t%s\t%s\t%s\t%s\t%s\n' "$r" "$v" "$ms" "$tag" "$cpu_ms" >>"$raw"
  echo "$v=${ms}ms/cpu${cpu_ms}ms"
}

# --- (c): pgbench, one row per transaction --------------------------------------

declare -A c_script=([kg]=soft_delete_keys_guard.sql [plain]=soft_delete_plain.sql)
declare -A c_table=([kg]=tenant_1.sd1_kg [plain]=sd1_plain)
# run_c <round> <variant> <transactions>
run_c() {
  local r=$1 v=$2 count=$3 out="$work/pgbench.$1.$2.out" tps lat n deleted
  psql_su -c CHECKPOINT
  if ! pgbench -n -M prepared -c 1 -j 1 -t "$count" -U bench_app -f "$bench/${c_script[$v]}" \
       -D "rows=$CROWS" "$db" >"$out" 2>&1; then
    echo "pgbench ($v) failed:" >&2; tail -20 "$out" >&2; return 1
  fi
  if grep -q 'number of failed transactions: [1-9]' "$out"; then
    echo "pgbench ($v) had failed transactions:" >&2; cat "$out" >&2; return 1
  fi
  tps=$(awk '/^tps = / { print $3 }' "$out")
  # Latency in µs from tps (one client: the same as pgbench's "latency
  # average", with more digits).
  lat=$(awk -v t="$tps" 'BEGIN { printf "%.2f", 1e6 / t }')
  n=$(awk '/^number of transactions actually processed: / { print $6 }' "$out")
  # Every row still there; the deleted ones marked as the statement says.
  deleted=$(psql_su -At -c "SET keys_guard.bypass = on" -c "
    SELECT CASE WHEN count(*) = $CROWS
                 AND count(deleted_at) = count(*) FILTER (WHERE deleted_by = 'bench' AND delete_request_id = 'r'
                                                            AND hard_delete_at = deleted_at + interval '30 days')
           THEN count(deleted_at)::text ELSE 'bad: ' || count(*) || ' rows' END
      FROM ${c_table[$v]}")
  [[ $deleted =~ ^[0-9]+$ ]] && [ "$deleted" -gt 0 ] ||
    { echo "(c) $v: check of ${c_table[$v]} failed: $deleted" >&2; return 1; }
  [ "$r" = 0 ] || printf 'c\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$v" "$tps" "$lat" "$n" "$deleted" >>"$raw"
  echo "$v=${tps}tps"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

raw="$work/raw.tsv"
printf 'comparison\tround\tvariant\tms_or_tps\ttag_or_latency_us\t[transactions\trows_soft_deleted]\n' >"$raw"

start_epoch=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# The single-row DELETE's plan, as the application sees it (generic plan,
# as -M prepared uses after five executions).
c_plan=''

# run_pair <round> <variant> <variant>: both at once, each in its own
# session, sharing the one CPU everything is pinned to: whatever slows the
# machine down in those seconds slows both, and each one's CPU time is what
# it cost.
run_pair() {
  local r=$1 a=$2 b=$3 pa
  run_ab "$r" "$a" >"$work/pair.$a" 2>&1 &
  pa=$!
  if ! run_ab "$r" "$b" >"$work/pair.$b" 2>&1; then
    cat "$work/pair.$b" >&2; wait "$pa" || true; return 1
  fi
  if ! wait "$pa"; then cat "$work/pair.$a" >&2; return 1; fi
  echo "[$(cat "$work/pair.$a") $(cat "$work/pair.$b")]"
}

# What a round runs: with BENCH_PAIRED, each keys_guard variant of (a) and
# its baseline at once ("a+b"), and (b)'s trigger with a soft DELETE of its
# own; the generic trigger of (b)'s reference alone.
if [ "$BENCH_PAIRED" = 1 ]; then
  ab_units=(kg+plain kg_b+trig)
  [ "$pooled" = true ] && ab_units+=(pool+pool_plain)
  if [ "$extra" = true ] && [ "$pooled" = true ]; then
    ab_units+=(trig_generic plain_idx+pool_plain_idx)
  elif [ "$extra" = true ]; then
    ab_units+=(trig_generic plain_idx)
  fi
else
  ab_units=("${ab_variants[@]}")
fi
n=${#ab_units[@]}
for r in $(seq 0 "$ROUNDS"); do
  build_tables
  if [ "$r" = 0 ]; then line="round 0 (warm-up, not recorded):"; else line="round $r/$ROUNDS:"; fi
  if [ "$do_ab" = 1 ]; then
    for i in $(seq 0 $((n - 1))); do
      u=${ab_units[$(( (i + r) % n ))]}
      if [[ $u == *+* ]]; then
        line+=" $(run_pair "$r" "${u%+*}" "${u#*+}")"
      else
        line+=" $(run_ab "$r" "$u")"
      fi
    done
  fi
  if [ "$do_c" = 1 ]; then
    if [ $((r % 2)) = 1 ]; then corder=(plain kg); else corder=(kg plain); fi
    count=$C_TRANSACTIONS; [ "$r" = 0 ] && count=$((C_TRANSACTIONS / 4))
    for v in "${corder[@]}"; do line+=" c.$(run_c "$r" "$v" "$count")"; done
  fi
  log "$line"
done

# --- diagnostics: plans with per-node and per-trigger times ---------------------

log "plans: EXPLAIN (ANALYZE) of each statement on fresh tables (rolled back)"
build_tables
explain=''
if [ "$do_ab" = 1 ]; then
  for v in "${ab_variants[@]}"; do
    explain+="-- $v: ${ab_sql[$v]}"$'\n'
    explain+=$(psql -X -At -v ON_ERROR_STOP=1 -U bench_app -d "$db" <<EOF | grep -v '^\(BEGIN\|ROLLBACK\|\)$'
BEGIN;
\\o /dev/null
${ab_ctx[$v]}
\\o
EXPLAIN (ANALYZE, COSTS OFF) ${ab_sql[$v]};
ROLLBACK;
EOF
)
    explain+=$'\n\n'
  done
fi
if [ "$do_c" = 1 ]; then
  c_plan=$(psql -X -At -v ON_ERROR_STOP=1 -U bench_app -d "$db" <<EOF | grep -v '^\(BEGIN\|ROLLBACK\|SET\|PREPARE\|\)$'
SET plan_cache_mode = force_generic_plan;
BEGIN;
\\o /dev/null
$set_kg
\\o
PREPARE d(bigint) AS DELETE FROM sd1_kg WHERE id = \$1;
\\echo '-- kg: DELETE FROM sd1_kg WHERE id = \$1 (generic plan)'
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE d(7);
ROLLBACK;
BEGIN;
\\o /dev/null
$set_app
\\o
PREPARE u(bigint) AS UPDATE sd1_plain SET $soft_cols WHERE id = \$1 AND deleted_at IS NULL;
\\echo '-- plain: UPDATE sd1_plain SET ... WHERE id = \$1 AND deleted_at IS NULL (generic plan)'
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE u(7);
ROLLBACK;
EOF
)
fi

perf_report=''
perf_children=''
if [ "$BENCH_PERF" = 1 ] && [ "$do_ab" = 1 ]; then
  log "perf: profiling one soft DELETE of (a)"
  build_tables
  # One session: start it, find its backend, profile only that process.
  fifo="$work/perf.fifo"
  mkfifo "$fifo"
  psql -X -At -v ON_ERROR_STOP=1 -U bench_app -d "$db" <"$fifo" >"$work/perf.psql.out" 2>&1 &
  psql_pid=$!
  exec 9>"$fifo"
  echo "SELECT pg_backend_pid();" >&9
  for i in $(seq 1 100); do [ -s "$work/perf.psql.out" ] && break; sleep 0.1; done
  backend=$(head -1 "$work/perf.psql.out")
  perf record -q -g -o "$work/perf.data" -p "$backend" >/dev/null 2>&1 &
  perf_pid=$!
  sleep 1
  printf '%s\n' "BEGIN;" "$set_kg" "${ab_sql[kg]};" "COMMIT;" "SELECT 'done';" >&9
  for i in $(seq 1 600); do grep -q '^done$' "$work/perf.psql.out" && break; sleep 0.1; done
  kill -INT "$perf_pid"; wait "$perf_pid" || true; perf_pid=''
  exec 9>&-
  wait "$psql_pid"
  perf_report=$(perf report -i "$work/perf.data" --no-children --stdio --sort symbol 2>/dev/null |
                grep -E '^ +[0-9.]+%' | awk 'NR <= 25')
  # Inclusive shares of the trigger machinery and of keys_guard's functions.
  perf_children=$(perf report -i "$work/perf.data" --children --stdio --sort symbol -g none 2>/dev/null |
                  grep -E '^ +[0-9.]+% +[0-9.]+% .*(AfterTrigger|afterTrigger|ExecCallTriggerFunc|TriggerEnabled|ExecUpdate|ExecModifyTable|ExecScan|heap_update|ExecInsertIndexTuples|keys_guard|kg_)' |
                  awk 'NR <= 30')
fi

check_library
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date +%s) - start_epoch ))

# --- report ---------------------------------------------------------------------

# val <comparison> <variant> [field]: the value column (4: time; 6: the
# backend's CPU time), one per line, in round order.
val() { awk -F'\t' -v c="$1" -v v="$2" -v f="${3:-4}" '$1 == c && $3 == v { print $f }' "$raw"; }
# ratios <comparison> <numerator variant> <denominator variant> [field]
ratios() {
  awk -F'\t' -v c="$1" -v a="$2" -v b="$3" -v f="${4:-4}" '
    $1 == c && $3 == a { x[$2] = $f }
    $1 == c && $3 == b { y[$2] = $f }
    END { for (r = 1; r in x; r++) printf "%.3f\n", x[r] / y[r] }' "$raw"
}
# per_round <comparison> <numerator> <denominator> <unit> [field]: "1: a/b unit (ratio)"
per_round() {
  awk -F'\t' -v c="$1" -v a="$2" -v b="$3" -v u="$4" -v f="${5:-4}" '
    $1 == c && $3 == a { x[$2] = $f }
    $1 == c && $3 == b { y[$2] = $f }
    END { sep = ""; for (r = 1; r in x; r++) { printf "%s%.0f/%.0f %s (%.2f)", sep, x[r], y[r], u, x[r] / y[r]; sep = "; " } }' "$raw"
}
tags_of() { awk -F'\t' -v v="$1" '$1 == "ab" && $3 == v { print $5 }' "$raw" | sort -u | paste -sd, | sed 's/,/, /g'; }

# ab_row <what> <kg variant> <baseline variant> <kind> [limit [field]]
#   kind max: target keys_guard time <= limit x baseline; min: baseline time
#   >= limit x keys_guard; slower / faster: the same ratios, no target.
#   field 4 (default): psql's \timing; 6: the backend's CPU time.
ab_row() {
  local what=$1 kg=$2 base=$3 kind=$4 limit=${5:-} f=${6:-4} base_ms kg_ms ratio met tgt rounds
  base_ms=$(val ab "$base" "$f" | median)
  kg_ms=$(val ab "$kg" "$f" | median)
  if [ "$kind" = max ] || [ "$kind" = slower ]; then
    ratio=$(ratios ab "$kg" "$base" "$f" | median)
    rounds=$(per_round ab "$kg" "$base" ms "$f")
    if [ "$kind" = max ]; then
      tgt="keys_guard ≤ ${limit}× baseline time"
      met=$(awk -v r="$ratio" -v l="$limit" 'BEGIN { print (r <= l) ? "yes" : "**no**" }')
      record_target "$what" "<=" "$limit" $(ratios ab "$kg" "$base" "$f")
    fi
    ratio=$(printf '%.2f× (time / baseline time)' "$ratio")
  else
    ratio=$(ratios ab "$base" "$kg" "$f" | median)
    rounds=$(per_round ab "$base" "$kg" ms "$f")
    if [ "$kind" = min ]; then
      tgt="keys_guard ≥ ${limit}× faster"
      met=$(awk -v r="$ratio" -v l="$limit" 'BEGIN { print (r >= l) ? "yes" : "**no**" }')
      record_target "$what" ">=" "$limit" $(ratios ab "$base" "$kg" "$f")
    fi
    ratio=$(printf '%.2f× faster (baseline time / time)' "$ratio")
  fi
  if [ -z "$limit" ]; then tgt="reference"; met="—"; fi
  printf '| %s | %.0f ms, tag `%s` | %.0f ms, tag `%s` | %s | %s | %s | %s |\n' \
    "$what" "$base_ms" "$(tags_of "$base")" "$kg_ms" "$(tags_of "$kg")" "$ratio" "$tgt" "$met" "$rounds"
}

c_rows() {
  local base_tps kg_tps base_lat kg_lat tr lr
  base_tps=$(val c plain | median); kg_tps=$(val c kg | median)
  base_lat=$(awk -F'\t' '$1 == "c" && $3 == "plain" { print $5 }' "$raw" | median)
  kg_lat=$(awk -F'\t' '$1 == "c" && $3 == "kg" { print $5 }' "$raw" | median)
  tr=$(ratios c kg plain | median)
  lr=$(ratios c kg plain 5 | median)
  printf '| (c) single-row soft `DELETE FROM sd1_kg WHERE id = :id` (with `set_context()` in the transaction) vs `UPDATE sd1_plain SET <4 columns> WHERE id = :id AND deleted_at IS NULL` (with `set_config()`): throughput | %.0f tps | %.0f tps | %.3f (keys_guard / baseline tps) | — (reported) | — | %s |\n' \
    "$base_tps" "$kg_tps" "$tr" "$(ratios c kg plain | paste -sd' ')"
  printf '| (c) the same: latency | %.1f µs | %.1f µs | %.3f (keys_guard / baseline latency) | — (reported) | — | %s |\n' \
    "$base_lat" "$kg_lat" "$lr" "$(ratios c kg plain 5 | paste -sd' ')"
}

if [ "$BENCH_CPU" = none ]; then pinned="not pinned"; else pinned="server and clients pinned to CPU $BENCH_CPU"; fi
commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$here" diff --quiet HEAD -- src keys_guard--1.0.sql 2>/dev/null || commit+=" (src modified)"

report="$work/report.md"
{
  echo "# keys_guard soft-delete benchmark results"
  echo
  if [ "$BENCH_INSTALL" = 1 ]; then built="built and installed from this tree"; else built="as installed before the run"; fi
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), tree at commit $commit, keys_guard.so ($built) md5 $libsum,"
  echo "$(psql -X -At -U postgres -d "$db" -c 'SELECT version()' | sed 's/ on .*//'), $(nproc --all) CPUs ($pinned), load average $load_before before / $load_after after, $elapsed s."
  echo "$ROUNDS rounds after a warm-up round; every round rebuilds every table. Each statement runs in its own session as the"
  echo "non-superuser role bench_app, after a CHECKPOINT, in a transaction that sets the context first."
  if [ "$BENCH_PAIRED" = 1 ]; then
    echo "(a): each soft DELETE and its UPDATE run **at the same time**, sharing the one CPU everything is pinned to, and each is"
    echo "measured by its backend's CPU time, so that whatever slows the machine down in those seconds slows both; so do"
    echo "(b)'s trigger DELETE and a soft DELETE of the same rows of \`tenant_1.sd_kg_b\`, a twin of \`sd_kg\` (the trigger's"
    echo "DELETE takes longer and runs alone for its last part); the generic trigger of (b)'s reference runs alone."
    echo "(Wall-clock times of statements sharing a CPU say nothing alone: not reported.)"
  else
    echo "Times: psql \`\\timing\` of the statement alone, and its backend's CPU time."
  fi
  echo "**Ratios are medians over rounds of the ratio measured in the same round**; ms/tps columns are medians."
  echo
  echo "| what | baseline | keys_guard | ratio | target | met? | per-round values |"
  echo "|---|---|---|---|---|---|---|"
  ab_field=4; [ "$BENCH_PAIRED" = 1 ] && ab_field=6
  a_what="(a) soft \`DELETE FROM sd_kg WHERE grp < 50\` on a guarded table in tenant schema tenant_1 vs \`UPDATE sd_plain SET <4 soft-delete columns> WHERE grp < 50 AND deleted_at IS NULL\` on an identical unguarded table; $half of $ROWS rows"
  p_what="(a) the same on a pooled guarded table \`sd_pool\` (protect_table, tenant column) vs the UPDATE with a hand-written \`tenant_id = '1'\` on its unguarded twin"
  b_what="(b) the same soft DELETE vs \`DELETE FROM sd_trig WHERE grp < 50 AND deleted_at IS NULL\` on an identical unguarded table with a PL/pgSQL BEFORE DELETE row trigger that UPDATEs the row (static SQL) and returns NULL"
  if [ "$BENCH_PAIRED" = 1 ]; then
    if [[ $BENCH_ONLY == *a* ]]; then
      ab_row "$a_what: the backend's CPU time, the two statements at once" kg plain max 1.2 6
      if [ "$pooled" = true ]; then
        ab_row "$p_what: the same" pool pool_plain max 1.2 6
      fi
    fi
    if [[ $BENCH_ONLY == *b* ]]; then
      ab_row "$b_what: the backend's CPU time, the two statements at once (the soft DELETE on its twin \`sd_kg_b\`)" kg_b trig min 2 6
      if [[ $BENCH_ONLY == *a* ]]; then
        ab_row "(b) reference: the trigger's DELETE vs the plain UPDATE of (a) (\"keys_guard\" column: the UPDATE), each measured beside a soft DELETE: the most that any soft delete writing what the UPDATE writes can gain over the trigger" plain trig faster "" 6
      fi
    fi
  else
    if [[ $BENCH_ONLY == *a* ]]; then
      ab_row "$a_what" kg plain max 1.2
      if [ "$pooled" = true ]; then
        ab_row "$p_what" pool pool_plain max 1.2
      fi
      ab_row "(a) the tenant-schema soft DELETE vs the UPDATE: the backend's CPU time (other load on the machine hardly moves it)" kg plain max 1.2 6
      if [ "$pooled" = true ]; then
        ab_row "(a) the pooled soft DELETE vs its UPDATE: the backend's CPU time" pool pool_plain max 1.2 6
      fi
    fi
    if [[ $BENCH_ONLY == *b* ]]; then
      ab_row "$b_what" kg trig min 2
      ab_row "(b) the soft DELETE vs the trigger's DELETE: the backend's CPU time" kg trig min 2 6
    fi
  fi
  if [[ $BENCH_ONLY == *b* ]] && [ "$extra" = true ]; then
    ab_row "(b) reference: the same with the trigger function written once for all tables (\`EXECUTE format('UPDATE %I.%I …', TG_TABLE_SCHEMA, TG_TABLE_NAME) USING OLD.id\`)" kg trig_generic faster "" "$ab_field"
  fi
  if [[ $BENCH_ONLY == *a* ]] && [ "$extra" = true ]; then
    ab_row "(a) diagnostic: the plain UPDATE on a twin that also has keys_guard's partial purge index (\`(hard_delete_at) WHERE deleted_at IS NOT NULL\`, which a hand-written purge job needs too) vs the plain UPDATE (\"keys_guard\" column: with the index)" plain_idx plain slower "" "$ab_field"
    ab_row "(a) diagnostic: the keys_guard soft DELETE vs that UPDATE on the twin with the index: what keys_guard adds besides that index (rewrite, security quals, SET functions)" kg plain_idx slower "" "$ab_field"
    if [ "$pooled" = true ]; then
      ab_row "(a) diagnostic: the pooled soft DELETE vs the hand-written UPDATE on a twin that also has keys_guard's partial purge index (\`(hard_delete_at) WHERE deleted_at IS NOT NULL\`, which a hand-written purge job needs too): what keys_guard adds besides that index" pool pool_plain_idx slower "" "$ab_field"
    fi
  fi
  if [ "$do_c" = 1 ]; then
    c_rows
  fi
  echo
  echo "Per-round values: keys_guard/baseline ms (ratio) for (a) rows; baseline/keys_guard ms (ratio) for (b) rows; ratios for (c)."
  echo "The CPU rows: the time the session's backend spent on a CPU during the statement (/proc/<pid>/schedstat, read by"
  echo "psql's \\! just before and after it), in the same runs; time spent waiting for a CPU that other processes held is not in it."
  if [ "$do_ab" = 1 ]; then
    echo "Checked in every run: the command tag (\`DELETE $half\` for keys_guard, \`UPDATE $half\` for the UPDATE, \`DELETE 0\`"
    echo "for the trigger, which hides the count from the client); afterwards, read under \`keys_guard.bypass\`: all $ROWS rows are"
    echo "still in the table and exactly the $half rows with \`grp < 50\` have \`deleted_at\` set, \`hard_delete_at = deleted_at + 30 days\`,"
    echo "\`deleted_by = 'bench'\`, \`delete_request_id = 'r'\`; with its context the application sees $((ROWS - half)) rows."
  fi
  if [ "$do_c" = 1 ]; then
    echo "(c): pgbench -n -M prepared -c 1 -j 1 -t $C_TRANSACTIONS as bench_app, ids random in 1..$CROWS (tables of $CROWS rows, rebuilt"
    echo "every round; an id drawn twice finds its row already deleted, equally on both sides), scripts"
    echo "bench/soft_delete_keys_guard.sql and bench/soft_delete_plain.sql; each run is checked the same way (no failed"
    echo "transactions, every row still there, the deleted ones marked). Rows soft-deleted per run (keys_guard / baseline):"
    echo "$(awk -F'\t' '$1 == "c" { d[$2 "," $3] = $7 } END { sep = ""; for (r = 1; (r ",kg") in d; r++) { printf "%s%s / %s", sep, d[r ",kg"], d[r ",plain"]; sep = "; " } }' "$raw")."
  fi
  echo
  echo "Reproduce:"
  echo
  echo '```'
  echo "$repro"
  echo '```'
  if [ -n "$explain" ]; then
    echo
    echo "EXPLAIN (ANALYZE, COSTS OFF) of each bulk statement as bench_app with the context set, on fresh tables, rolled back"
    echo "(per-node timing adds overhead; compare the \`Trigger\` lines and the ModifyTable node):"
    echo
    echo '```'
    printf '%s' "$explain"
    echo '```'
  fi
  if [ -n "$c_plan" ]; then
    echo
    echo "Plans of the (c) statements:"
    echo
    echo '```'
    echo "$c_plan"
    echo '```'
  fi
  if [ -n "$perf_report" ]; then
    echo
    echo "perf (BENCH_PERF=1): top symbols (self time) of the backend during one soft DELETE of (a):"
    echo
    echo '```'
    echo "$perf_report"
    echo '```'
    echo
    echo "Inclusive (children, self) shares of the executor, trigger and keys_guard functions in the same profile:"
    echo
    echo '```'
    echo "$perf_children"
    echo '```'
  fi
} >"$report"

mkdir -p "$bench/results"
cp "$report" "$bench/results/soft_delete.md"
cp "$raw" "$bench/results/soft_delete.tsv"
echo
cat "$report"
echo
echo "(written to bench/results/soft_delete.md; raw runs in bench/results/soft_delete.tsv)"
