#!/usr/bin/env bash
# keys_guard benchmarks for the performance targets of docs/contract.md §14:
#
#   (a) point lookups on a pooled guarded table vs the same query on an
#       identical unguarded table with a hand-written tenant filter (target:
#       at most 3 % slower); a plain current_setting() RLS policy on a third
#       identical table is measured alongside as a reference;
#   (b) pgbench -S's statement (select-only, built-in tables) on a server
#       with keys_guard preloaded and installed in the database vs an
#       identical server without it (target: at most 1 % slower).
#
# Throw-away clusters (initdb in a temp dir, Unix socket only, removed on
# exit).  The machine may be small and shared: its speed changes by 10 % and
# more from one second to the next, so runs one after the other cannot
# settle a 1 % or 3 % target.  Both comparisons therefore run their sides
# at the same time, interleaved transaction by transaction:
#   (a) one pgbench run per round mixes the variants' scripts (each client
#       picks one at random per transaction), and each variant's mean
#       latency comes from pgbench's per-transaction log;
#   (b) bench/pairbench.c alternates the statement between the two servers,
#       pinned with them to one CPU, and times each one.
# The result is the median over rounds of the per-round ratio of mean
# latencies (baseline / keys_guard: the throughput ratio).
#
# Run as root on Debian bookworm from anywhere:
#   bash bench/run.sh
# Settings (environment):
#   BENCH_SECONDS=10   length of each measured run
#   ROUNDS=5           rounds per comparison
#   WARMUP_SECONDS=3   unmeasured run (or, in (b), alternation) before it
#   CLIENTS=2 JOBS=2   pgbench -c / -j
#   TENANTS=100 ROWS_PER_TENANT=1000   data of (a)
#   SCALE=10           pgbench scale of (b)
#   BENCH_INSTALL=1    build and `make install` the tree first (0: benchmark
#                      the keys_guard already installed for PostgreSQL 15)
#   BENCH_DEPS=1       run scripts/deps.sh first (0: skip)
#   BENCH_ONLY=ab      which comparisons to run: a, b or ab
#   BENCH_BREAKDOWN=0  1: also run the diagnostic variants of (a), which
#                      split its cost: the same tenant in every transaction
#                      (no search_path change between transactions), and
#                      set_context() alone vs set_config() alone
#   BENCH_CPU=0        (b): the CPU to pin both servers and pairbench to
#                      (none: do not pin)
#   PAIRBENCH_BURST=1  statements in a row on one server before the other
#                      (pairbench -b; 1: strictly alternated)
#   B_STARTS=1         (b): server starts per round, both servers restarted
#                      before each; a round pools their statements (see
#                      bench/README.md, "Rounds of several starts")
#   B_SECONDS=BENCH_SECONDS   (b): measured seconds per start
# Writes the result table to stdout and to bench/results/latest.md (raw
# per-run numbers in bench/results/latest.tsv).
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
TENANTS=${TENANTS:-100}
ROWS_PER_TENANT=${ROWS_PER_TENANT:-1000}
SCALE=${SCALE:-10}
BENCH_INSTALL=${BENCH_INSTALL:-1}
BENCH_DEPS=${BENCH_DEPS:-1}
BENCH_ONLY=${BENCH_ONLY:-ab}
BENCH_BREAKDOWN=${BENCH_BREAKDOWN:-0}
BENCH_CPU=${BENCH_CPU:-0}
B_STARTS=${B_STARTS:-1}
B_SECONDS=${B_SECONDS:-$BENCH_SECONDS}

for v in BENCH_SECONDS ROUNDS WARMUP_SECONDS CLIENTS JOBS TENANTS ROWS_PER_TENANT SCALE B_STARTS B_SECONDS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "run.sh: $v must be a whole number" >&2; exit 2; }
done
[ "$ROUNDS" -ge 1 ] && [ "$BENCH_SECONDS" -ge 1 ] || { echo "run.sh: ROUNDS and BENCH_SECONDS must be >= 1" >&2; exit 2; }
[ "$B_STARTS" -ge 1 ] && [ "$B_SECONDS" -ge 1 ] || { echo "run.sh: B_STARTS and B_SECONDS must be >= 1" >&2; exit 2; }
[ "$TENANTS" -ge 2 ] && [ "$ROWS_PER_TENANT" -ge 1 ] || { echo "run.sh: TENANTS must be >= 2, ROWS_PER_TENANT >= 1" >&2; exit 2; }
[[ $BENCH_BREAKDOWN =~ ^[01]$ ]] || { echo "run.sh: BENCH_BREAKDOWN is 0 or 1" >&2; exit 2; }
[[ $BENCH_ONLY =~ ^(a|b|ab)$ ]] || { echo "run.sh: BENCH_ONLY is a, b or ab" >&2; exit 2; }
[[ $BENCH_CPU =~ ^([0-9]+|none)$ ]] || { echo "run.sh: BENCH_CPU is a CPU number or none" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run.sh: run as root (servers are started as the postgres user)" >&2; exit 2; }

repro="cd $here && BENCH_SECONDS=$BENCH_SECONDS ROUNDS=$ROUNDS WARMUP_SECONDS=$WARMUP_SECONDS"
repro+=" CLIENTS=$CLIENTS JOBS=$JOBS TENANTS=$TENANTS ROWS_PER_TENANT=$ROWS_PER_TENANT SCALE=$SCALE"
repro+=" BENCH_INSTALL=$BENCH_INSTALL BENCH_ONLY=$BENCH_ONLY BENCH_BREAKDOWN=$BENCH_BREAKDOWN BENCH_CPU=$BENCH_CPU"
repro+=" B_STARTS=$B_STARTS B_SECONDS=$B_SECONDS"
[ "${PAIRBENCH_BURST:-1}" != 1 ] && repro+=" PAIRBENCH_BURST=$PAIRBENCH_BURST"
repro+=" bash bench/run.sh"

. "$bench/lib.sh"

# --- throw-away cluster -----------------------------------------------------

new_workdir keys_guard_bench

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

use_free_port 55432

init_cluster
cat >>"$pgdata/postgresql.conf" <<EOF
shared_buffers = 256MB
EOF

# start_server <preload: 0|1> [extra settings...]: (re)start with or without
# keys_guard preloaded.
start_server() {
  local libs='' opts='' o
  [ "$1" = 1 ] && libs=keys_guard
  shift
  for o in "$@"; do
    case $o in
      shared_preload_libraries=*) libs=${o#*=} ;;
      *) opts+=" -c $o" ;;
    esac
  done
  if [ "$server_up" = 1 ]; then
    runuser -u postgres -- pg_ctl -D "$pgdata" -m fast -w stop >/dev/null
    server_up=0
  fi
  check_library
  runuser -u postgres -- pg_ctl -D "$pgdata" -l "$work/server.log" -w -t 120 \
    -o "-c shared_preload_libraries='$libs'$opts" start >/dev/null
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

psql_su() { psql -X -q -v ON_ERROR_STOP=1 -U postgres "$@"; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

raw="$work/raw.tsv"
printf 'comparison\tround\tvariant\ttps\tcpu_us_per_xact\n' >"$raw"

start_epoch=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start_server 1

# --- (a) point lookups --------------------------------------------------------

# (a) variants: pgbench script and number of tenants the transactions pick
# from at random (1: every transaction sets the same tenant).
declare -A a_script=([keys_guard]=point_keys_guard.sql [plain]=point_plain.sql [rls]=point_rls.sql
                     [keys_guard_pool]=point_keys_guard.sql [plain_pool]=point_plain.sql
                     [keys_guard_1t]=point_keys_guard.sql [plain_1t]=point_plain.sql
                     [ctx_keys_guard]=context_keys_guard.sql [ctx_plain]=context_plain.sql)
# The variants compared run mixed in one pgbench run ("group"): every client
# picks one of the group's scripts at random for each transaction, so all of
# them run in the same seconds, on the same machine in the same state, and
# each one's mean latency comes from pgbench's per-transaction log.  A group
# has one login role and one number of tenants.  pool runs as bench_pool,
# whose keys_guard.tenant_search_path is off (a reference: with the default,
# empty tenant schemas stay off the path).
declare -A g_user=([main]=bench_app [pool]=bench_pool [onetenant]=bench_app [ctx]=bench_app)
declare -A g_tenants=([main]=$TENANTS [pool]=$TENANTS [onetenant]=1 [ctx]=$TENANTS)
declare -A g_variants=([main]="keys_guard plain rls" [pool]="keys_guard_pool plain_pool"
                       [onetenant]="keys_guard_1t plain_1t" [ctx]="ctx_keys_guard ctx_plain")
groups=(main pool)
if [ "$BENCH_BREAKDOWN" = 1 ]; then
  groups+=(onetenant ctx)
fi
# run_group <label> <group> <seconds>: one mixed pgbench run; prints
# "<variant> <rate>" per variant, rate = 1e6 / its mean latency in µs (the
# transactions per second one client gets with it).
run_group() {
  local label=$1 g=$2 secs=$3 out="$work/pgbench.$1.out" args=() v
  for v in ${g_variants[$g]}; do args+=(-f "$bench/${a_script[$v]}@1"); done
  rm -f "$work/log.$label".*
  if ! pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" -T "$secs" -U "${g_user[$g]}" \
       -l --log-prefix="$work/log.$label" "${args[@]}" \
       -D "tenants=${g_tenants[$g]}" -D "rows=$ROWS_PER_TENANT" kg_point >"$out" 2>&1; then
    echo "pgbench ($label) failed:" >&2
    tail -20 "$out" >&2
    return 1
  fi
  if grep -q 'number of failed transactions: [1-9]' "$out"; then
    echo "pgbench ($label) had failed transactions:" >&2
    cat "$out" >&2
    return 1
  fi
  # Log lines: client, transaction, latency (µs), script number, epoch, µs.
  cat "$work/log.$label".* | awk -v names="${g_variants[$g]}" '
    { sum[$4] += $3; n[$4]++ }
    END {
      k = split(names, name, " ")
      for (i = 1; i <= k; i++) {
        if (n[i - 1] < 100) { print "too few transactions of " name[i] > "/dev/stderr"; exit 1 }
        printf "%s %.3f\n", name[i], 1e6 / (sum[i - 1] / n[i - 1])
      }
    }'
  rm -f "$work/log.$label".*
}

if [[ $BENCH_ONLY == *a* ]]; then
  log "(a) loading $TENANTS tenants x $ROWS_PER_TENANT invoices into three identical tables"
  psql_su -d postgres -c "CREATE DATABASE kg_point"
  psql_su -d kg_point -v tenants="$TENANTS" -v rows="$ROWS_PER_TENANT" \
    -f "$bench/setup_point.sql" >"$work/setup_point.log"

  # Check, as the application role, that every variant returns exactly the
  # tenant's rows, so the comparison is between equivalent queries.
  t2_id=$((ROWS_PER_TENANT + 1))
  check=$(psql -X -q -At -v ON_ERROR_STOP=1 -U bench_app -d kg_point <<EOF
BEGIN;
SELECT 'ok' FROM keys_guard.set_context('2', 'bench');
SELECT count(*), count(*) FILTER (WHERE id = $t2_id), count(*) FILTER (WHERE id = 1) FROM invoices;
COMMIT;
BEGIN;
SELECT 'ok' FROM set_config('app.tenant', '2', true);
SELECT count(*), count(*) FILTER (WHERE id = $t2_id), count(*) FILTER (WHERE id = 1) FROM invoices_plain WHERE tenant_id = '2';
SELECT count(*), count(*) FILTER (WHERE id = $t2_id), count(*) FILTER (WHERE id = 1) FROM invoices_rls;
COMMIT;
EOF
)
  expect="ok
$ROWS_PER_TENANT|1|0
ok
$ROWS_PER_TENANT|1|0
$ROWS_PER_TENANT|1|0"
  if [ "$check" != "$expect" ]; then
    echo "sanity check of the three point-lookup variants failed; got:" >&2
    echo "$check" >&2
    exit 1
  fi

  # Plans as the application sees them (generic plans, as -M prepared uses
  # after five executions), for the report.
  plans=$(psql -X -q -At -v ON_ERROR_STOP=1 -U bench_app -d kg_point <<EOF
SET plan_cache_mode = force_generic_plan;
BEGIN;
SELECT keys_guard.set_context('2', 'bench');
PREPARE kg(bigint) AS SELECT id, number, amount, status FROM invoices WHERE id = \$1;
\echo '-- keys_guard: invoices WHERE id = \$1'
EXPLAIN (COSTS OFF) EXECUTE kg($t2_id);
COMMIT;
BEGIN;
SELECT set_config('app.tenant', '2', true);
PREPARE pl(text, bigint) AS SELECT id, number, amount, status FROM invoices_plain WHERE tenant_id = \$1 AND id = \$2;
\echo '-- plain: invoices_plain WHERE tenant_id = \$1 AND id = \$2'
EXPLAIN (COSTS OFF) EXECUTE pl('2', $t2_id);
PREPARE rl(bigint) AS SELECT id, number, amount, status FROM invoices_rls WHERE id = \$1;
\echo '-- rls: invoices_rls WHERE id = \$1'
EXPLAIN (COSTS OFF) EXECUTE rl($t2_id);
COMMIT;
EOF
)
  plans=$(grep -v '^$' <<<"$plans" | grep -v '^set_config\|^2$')

  log "(a) warm-up, ${WARMUP_SECONDS}s per group"
  for g in "${groups[@]}"; do
    if [ "$WARMUP_SECONDS" -gt 0 ]; then
      run_group "warm.$g" "$g" "$WARMUP_SECONDS" >/dev/null
    fi
  done
  n=${#groups[@]}
  for r in $(seq 1 "$ROUNDS"); do
    order=()
    for i in $(seq 0 $((n - 1))); do order+=("${groups[$(( (i + r - 1) % n ))]}"); done
    line="(a) round $r/$ROUNDS:"
    for g in "${order[@]}"; do
      rates=$(run_group "a.$r.$g" "$g" "$BENCH_SECONDS")
      while read -r v rate; do
        printf 'a\t%s\t%s\t%s\t\n' "$r" "$v" "$rate" >>"$raw"
        line+=" $v=$rate"
      done <<<"$rates"
    done
    log "$line"
  done

  if [ "$BENCH_BREAKDOWN" = 1 ]; then
    # How often the point-lookup query is planned, per execution (cached
    # plans are replanned when search_path changes).
    log "(a) counting plans per execution with pg_stat_statements"
    start_server 1 shared_preload_libraries=keys_guard,pg_stat_statements pg_stat_statements.track_planning=on
    psql_su -d kg_point -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
    plan_counts=""
    for v in keys_guard plain rls keys_guard_1t; do
      psql_su -d kg_point -c "SELECT pg_stat_statements_reset()" >/dev/null
      tenants=$TENANTS; [ "$v" = keys_guard_1t ] && tenants=1
      pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" -T 2 -U bench_app -f "$bench/${a_script[$v]}" \
        -D "tenants=$tenants" -D "rows=$ROWS_PER_TENANT" kg_point >"$work/pgbench.plans.$v.out" 2>&1
      plan_counts+="$v: $(psql -X -At -F ' ' -U postgres -d kg_point -c "
        SELECT format('%s plans / %s executions = %s', sum(plans), sum(calls),
                      round(sum(plans)::numeric / nullif(sum(calls), 0), 3))
          FROM pg_stat_statements
         WHERE query LIKE 'SELECT id, number, amount, status FROM invoices%'")"$'\n'
    done
    psql_su -d kg_point -c "DROP EXTENSION pg_stat_statements"
    start_server 1
  fi
fi

# --- (b) pgbench -S, preloaded vs not ----------------------------------------

# Two servers side by side, identical but for keys_guard: this one
# (preloaded, keys_guard installed in kg_pgbench) and a second one in
# $work/base without it.  bench/pairbench.c runs pgbench -S's statement on
# both, one statement on each in turn, with the server processes and
# pairbench pinned to one CPU (BENCH_CPU), so that the two sides share the
# machine's state statement by statement; every round restarts both servers
# (so no one start's memory layout decides the result) and loads their
# tables into shared buffers.
if [[ $BENCH_ONLY == *b* ]]; then
  log "(b) pgbench -i -s $SCALE on both servers; building bench/pairbench.c"
  build_pairbench
  base_pgdata="$work/base"
  base_port=$((port + 1))
  while [ -e "/var/run/postgresql/.s.PGSQL.$base_port" ] || [ -e "/tmp/.s.PGSQL.$base_port" ]; do
    base_port=$((base_port + 1))
  done
  pgdata=$base_pgdata port=$base_port init_cluster
  echo "shared_buffers = 256MB" >>"$base_pgdata/postgresql.conf"
  runuser -u postgres -- pg_ctl -D "$base_pgdata" -l "$work/base.log" -w -t 120 start >/dev/null
  base_up=1
  for p in "$port" "$base_port"; do
    psql_su -p "$p" -d postgres -c "CREATE DATABASE kg_pgbench"
    pgbench -i -q -s "$SCALE" -p "$p" -U postgres kg_pgbench >>"$work/pgbench-init.log" 2>&1
    psql_su -p "$p" -d kg_pgbench <<'EOF' >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION pg_prewarm;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_app') THEN
        CREATE ROLE bench_app LOGIN;
    END IF;
END
$$;
GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO bench_app;
VACUUM (FREEZE, ANALYZE);
CHECKPOINT;
EOF
  done
  psql_su -d kg_pgbench -c "CREATE EXTENSION keys_guard" -c "GRANT keys_guard_gateway TO bench_app" >/dev/null

  b_order=(base keys_guard)
  start_no=0
  for r in $(seq 1 "$ROUNDS"); do
    # B_STARTS starts of both servers; the round pools their statements.
    sum_off=0 sum_on=0 stmts_off=0 stmts_on=0
    for s in $(seq 1 "$B_STARTS"); do
      start_no=$((start_no + 1))
      # Restart both, in alternating order.
      if [ $((start_no % 2)) = 1 ]; then b_order=(base keys_guard); else b_order=(keys_guard base); fi
      for m in "${b_order[@]}"; do
        if [ "$m" = keys_guard ]; then
          start_server 1
        else
          runuser -u postgres -- pg_ctl -D "$base_pgdata" -l "$work/base.log" -w -t 120 restart >/dev/null
        fi
      done
      if [ "$(psql -X -At -U bench_app -d kg_pgbench -c "SELECT count(*) FROM pg_extension WHERE extname = 'keys_guard'")" != 1 ] ||
         [ "$(psql -X -At -p "$base_port" -U postgres -d postgres -c "SHOW shared_preload_libraries")" != "" ]; then
        echo "(b): keys_guard must be installed on one server and not preloaded on the other" >&2
        exit 1
      fi
      result=$(BENCH_SECONDS=$B_SECONDS pairbench_round "$base_pgdata" "$base_port" "$start_no")
      # "a <n> <µs> b <n> <µs>": a is the server without keys_guard.
      read -r _ n_off lat_off _ n_on lat_on <<<"$result"
      printf 'bs\t%s\toff\t%s\t\n' "$start_no" "$(awk -v l="$lat_off" 'BEGIN { printf "%.3f", 1e6 / l }')" >>"$raw"
      printf 'bs\t%s\ton\t%s\t\n' "$start_no" "$(awk -v l="$lat_on" 'BEGIN { printf "%.3f", 1e6 / l }')" >>"$raw"
      read -r sum_off stmts_off sum_on stmts_on < <(awk -v a="$sum_off" -v b="$stmts_off" -v c="$sum_on" -v d="$stmts_on" \
        -v no="$n_off" -v lo="$lat_off" -v nn="$n_on" -v ln="$lat_on" \
        'BEGIN { printf "%.6f %d %.6f %d\n", a + no * lo, b + no, c + nn * ln, d + nn }')
      log "(b) round $r/$ROUNDS, start $s/$B_STARTS: not preloaded ${lat_off} µs, preloaded ${lat_on} µs per statement ($n_on each)"
    done
    # The round: mean latency over all its statements, each side.
    printf 'b\t%s\toff\t%s\t\n' "$r" "$(awk -v s="$sum_off" -v n="$stmts_off" 'BEGIN { printf "%.3f", 1e6 * n / s }')" >>"$raw"
    printf 'b\t%s\ton\t%s\t\n' "$r" "$(awk -v s="$sum_on" -v n="$stmts_on" 'BEGIN { printf "%.3f", 1e6 * n / s }')" >>"$raw"
  done
  runuser -u postgres -- pg_ctl -D "$base_pgdata" -m fast -w stop >/dev/null
  base_up=0
fi

check_library
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date +%s) - start_epoch ))

# --- report -------------------------------------------------------------------

# tps_of <comparison> <variant>: one tps per line, in round order.
tps_of() { awk -F'\t' -v c="$1" -v v="$2" '$1 == c && $3 == v { print $4 }' "$raw"; }
# ratios <comparison> <variant> <baseline>: per-round variant/baseline.
ratios() {
  awk -F'\t' -v c="$1" -v v="$2" -v b="$3" '
    $1 == c && $3 == v { x[$2] = $4 }
    $1 == c && $3 == b { y[$2] = $4 }
    END { for (r = 1; r in x; r++) printf "%.4f\n", x[r] / y[r] }' "$raw"
}

# row <what> <comparison> <variant> <baseline> <max % slower or "">: the
# raw rates are 1e6 / mean latency (µs), so the latency columns are their
# medians turned back into µs per transaction.
row() {
  local what=$1 c=$2 v=$3 b=$4 target=$5
  local base kg ratio all slower met tgt
  base=$(tps_of "$c" "$b" | median)
  kg=$(tps_of "$c" "$v" | median)
  ratio=$(ratios "$c" "$v" "$b" | median)
  all=$(ratios "$c" "$v" "$b" | paste -sd' ')
  slower=$(awk -v r="$ratio" 'BEGIN { printf "%.1f %%", (1 - r) * 100 }')
  if [ -n "$target" ]; then
    tgt="≤ $target % slower"
    met=$(awk -v r="$ratio" -v t="$target" 'BEGIN { print ((1 - r) * 100 <= t) ? "yes" : "**no**" }')
    record_target "$what" ">=" "$(awk -v t="$target" 'BEGIN { print 1 - t / 100 }')" $(ratios "$c" "$v" "$b")
  else
    tgt="reference"; met="—"
  fi
  printf '| %s | %.1f µs | %.1f µs | %.3f | %s | %s | %s | %s |\n' \
    "$what" "$(awk -v r="$base" 'BEGIN { print 1e6 / r }')" "$(awk -v r="$kg" 'BEGIN { print 1e6 / r }')" \
    "$ratio" "$slower" "$tgt" "$met" "$all"
}

commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$here" diff --quiet HEAD -- src keys_guard--1.0.sql 2>/dev/null || commit+=" (src modified)"

report="$work/report.md"
{
  echo "# keys_guard benchmark results"
  echo
  if [ "$BENCH_INSTALL" = 1 ]; then built="built and installed from this tree"; else built="as installed before the run"; fi
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), tree at commit $commit, keys_guard.so ($built) md5 $libsum,"
  echo "$(pgbench --version | sed 's/^pgbench (\(PostgreSQL\))/\1/'), $(nproc) CPUs, load average $load_before before / $load_after after, $elapsed s."
  echo "(a): one pgbench -n -M prepared -c $CLIENTS -j $JOBS -T $BENCH_SECONDS run per group of variants and round,"
  echo "every client picking one of the group's scripts at random for each transaction, as the non-superuser login"
  echo "role bench_app (member of keys_guard_gateway; bench_pool for the tenant_search_path = off reference);"
  echo "latency = mean over that variant's transactions in pgbench's per-transaction log (-l)."
  echo "(b): bench/pairbench.c alternating pgbench -S's statement between the two servers, statement by statement,"
  echo "for $B_SECONDS s after $WARMUP_SECONDS s of warm-up, as bench_app; servers and pairbench $( [ "$BENCH_CPU" = none ] && echo "not pinned" || echo "pinned to CPU $BENCH_CPU"); both servers"
  echo "restarted and their tables prewarmed before every start, $B_STARTS start(s) per round. latency = mean per statement"
  echo "over the round's starts together."
  echo "$ROUNDS rounds; **ratio = median over rounds of (baseline latency / keys_guard latency) in the same run**"
  echo "(the throughput ratio keys_guard / baseline); latency columns are medians."
  echo
  echo "| what | baseline latency | keys_guard latency | ratio | % slower | target | met? | per-round ratios |"
  echo "|---|---:|---:|---:|---:|---|---|---|"
  if [[ $BENCH_ONLY == *a* ]]; then
    row "(a) point lookup, pooled guarded \`invoices\` + set_context() vs unguarded \`invoices_plain\` + hand-written \`WHERE tenant_id\` + set_config(); default settings (the tenants' schemas are empty, so set_context() leaves search_path alone)" a keys_guard plain 3
    row "(a) reference: the same with \`keys_guard.tenant_search_path = off\` (search_path never touched; its own group, as bench_pool)" a keys_guard_pool plain_pool ""
    row "(a) reference: plain RLS policy \`tenant_id = current_setting('app.tenant')\` (FORCE) vs the same baseline (SPEC: about 1–2 % slower)" a rls plain ""
    row "(a) reference: keys_guard vs that plain RLS policy" a keys_guard rls ""
    if [ "$BENCH_BREAKDOWN" = 1 ]; then
      row "(a) diagnostic: as the first row, but every transaction sets the same tenant (no search_path change between transactions)" a keys_guard_1t plain_1t ""
      row "(a) diagnostic: \`BEGIN; SELECT keys_guard.set_context(..); COMMIT;\` vs \`BEGIN; SELECT set_config(..); COMMIT;\`" a ctx_keys_guard ctx_plain ""
    fi
  fi
  if [[ $BENCH_ONLY == *b* ]]; then
    if [ "$B_STARTS" = 1 ]; then b_what="alternated statement by statement"
    else b_what="alternated statement by statement; a round pools $B_STARTS starts of both servers"; fi
    row "(b) pgbench -S's statement (scale $SCALE, prepared), server with keys_guard preloaded and installed in the database vs an identical server without it, $b_what" b on off 1
    [ "$B_STARTS" = 1 ] || row "(b) reference: the same, each start of the two servers on its own" bs on off ""
  fi
  echo
  echo "$TENANTS tenants × $ROWS_PER_TENANT rows per table in (a); transaction per pgbench script:"
  echo "\`BEGIN; SELECT keys_guard.set_context(:tenant, 'bench'); SELECT … FROM invoices WHERE id = :id; COMMIT;\`"
  echo "vs \`BEGIN; SELECT set_config('app.tenant', :tenant, true); SELECT … FROM invoices_plain WHERE tenant_id = :tenant AND id = :id; COMMIT;\`"
  echo "(bench/point_*.sql). A ratio below 1 means keys_guard is slower."
  echo
  echo "Reproduce:"
  echo
  echo '```'
  echo "$repro"
  echo '```'
  if [ -n "${plan_counts:-}" ]; then
    echo
    echo "Planning of the point-lookup SELECT (pg_stat_statements, 2 s per variant; *_1t: one tenant):"
    echo
    echo '```'
    printf '%s' "$plan_counts"
    echo '```'
  fi
  if [ -n "${plans:-}" ]; then
    echo
    echo "Generic plans of the (a) queries, as bench_app with tenant 2 set:"
    echo
    echo '```'
    echo "$plans"
    echo '```'
  fi
} >"$report"

mkdir -p "$bench/results"
cp "$report" "$bench/results/latest.md"
cp "$raw" "$bench/results/latest.tsv"
echo
cat "$report"
echo
echo "(written to bench/results/latest.md; raw runs in bench/results/latest.tsv)"
