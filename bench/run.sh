#!/usr/bin/env bash
# keys_guard benchmarks for the performance targets of docs/contract.md §14:
#
#   (a) point lookups on a pooled guarded table vs the same query on an
#       identical unguarded table with a hand-written tenant filter (target:
#       at most 3 % slower); a plain current_setting() RLS policy on a third
#       identical table is measured alongside as a reference;
#   (b) pgbench -S (select-only, built-in tables) on a server with keys_guard
#       preloaded and installed in the database vs the same server without
#       it preloaded (target: at most 1 % slower).
#
# Everything runs against one throw-away cluster (initdb in a temp dir, Unix
# socket only, removed on exit).  The machine may be small and shared, so
# absolute tps mean little: each round runs every variant once, back to back,
# in a rotating order, and the result is the median over rounds of the
# per-round ratio keys_guard / baseline.
#
# Run as root on Debian bookworm from anywhere:
#   bash bench/run.sh
# Settings (environment):
#   BENCH_SECONDS=10   length of each measured pgbench run
#   ROUNDS=5           interleaved rounds per comparison
#   WARMUP_SECONDS=3   unmeasured pgbench run before measuring
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

for v in BENCH_SECONDS ROUNDS WARMUP_SECONDS CLIENTS JOBS TENANTS ROWS_PER_TENANT SCALE; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "run.sh: $v must be a whole number" >&2; exit 2; }
done
[ "$ROUNDS" -ge 1 ] && [ "$BENCH_SECONDS" -ge 1 ] || { echo "run.sh: ROUNDS and BENCH_SECONDS must be >= 1" >&2; exit 2; }
[ "$TENANTS" -ge 2 ] && [ "$ROWS_PER_TENANT" -ge 1 ] || { echo "run.sh: TENANTS must be >= 2, ROWS_PER_TENANT >= 1" >&2; exit 2; }
[[ $BENCH_BREAKDOWN =~ ^[01]$ ]] || { echo "run.sh: BENCH_BREAKDOWN is 0 or 1" >&2; exit 2; }
[[ $BENCH_ONLY =~ ^(a|b|ab)$ ]] || { echo "run.sh: BENCH_ONLY is a, b or ab" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run.sh: run as root (servers are started as the postgres user)" >&2; exit 2; }

repro="cd $here && BENCH_SECONDS=$BENCH_SECONDS ROUNDS=$ROUNDS WARMUP_SECONDS=$WARMUP_SECONDS"
repro+=" CLIENTS=$CLIENTS JOBS=$JOBS TENANTS=$TENANTS ROWS_PER_TENANT=$ROWS_PER_TENANT SCALE=$SCALE"
repro+=" BENCH_INSTALL=$BENCH_INSTALL BENCH_ONLY=$BENCH_ONLY BENCH_BREAKDOWN=$BENCH_BREAKDOWN bash bench/run.sh"

. "$bench/lib.sh"

# --- throw-away cluster -----------------------------------------------------

new_workdir keys_guard_bench

cleanup() {
  local rc=$?
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

# run_pgbench <label> <db> <seconds> <pgbench args...>: prints tps; the
# server's CPU time per transaction (µs, every server process, pgbench
# excluded) goes to $work/pgbench.<label>.cpu.
run_pgbench() {
  local label=$1 db=$2 secs=$3; shift 3
  local out="$work/pgbench.$label.out" cpu0 cpu1
  cpu0=$(server_cpu)
  if ! pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" -T "$secs" -U "${PGBENCH_USER:-bench_app}" "$@" "$db" \
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
  sleep 0.3   # the backends exit and are reaped
  cpu1=$(server_cpu)
  cpu_per_xact $((cpu1 - cpu0)) 0 "$out" >"$work/pgbench.$label.cpu"
  awk '/^tps = / { print $3; found = 1 } END { exit !found }' "$out"
}

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
                     [keys_guard_pool]=point_keys_guard.sql
                     [keys_guard_1t]=point_keys_guard.sql [plain_1t]=point_plain.sql
                     [ctx_keys_guard]=context_keys_guard.sql [ctx_plain]=context_plain.sql)
declare -A a_tenants=([keys_guard]=$TENANTS [plain]=$TENANTS [rls]=$TENANTS
                      [keys_guard_pool]=$TENANTS
                      [keys_guard_1t]=1 [plain_1t]=1
                      [ctx_keys_guard]=$TENANTS [ctx_plain]=$TENANTS)
# keys_guard_pool runs as bench_pool, whose keys_guard.tenant_search_path is
# off (a reference: with the default, empty tenant schemas stay off the path).
declare -A a_user=([keys_guard_pool]=bench_pool)
variants=(keys_guard_pool keys_guard plain rls)
if [ "$BENCH_BREAKDOWN" = 1 ]; then
  variants+=(keys_guard_1t plain_1t ctx_keys_guard ctx_plain)
fi
# run_a <label> <variant> <seconds>: prints tps.
run_a() {
  PGBENCH_USER=${a_user[$2]:-bench_app} run_pgbench "$1" kg_point "$3" -f "$bench/${a_script[$2]}" \
    -D "tenants=${a_tenants[$2]}" -D "rows=$ROWS_PER_TENANT"
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

  log "(a) warm-up, ${WARMUP_SECONDS}s per variant"
  for v in "${variants[@]}"; do
    if [ "$WARMUP_SECONDS" -gt 0 ]; then
      run_a "warm.$v" "$v" "$WARMUP_SECONDS" >/dev/null
    fi
  done
  n=${#variants[@]}
  for r in $(seq 1 "$ROUNDS"); do
    # Rotate the order so that no variant always runs first or last.
    order=()
    for i in $(seq 0 $((n - 1))); do order+=("${variants[$(( (i + r - 1) % n ))]}"); done
    line="(a) round $r/$ROUNDS:"
    for v in "${order[@]}"; do
      tps=$(run_a "a.$r.$v" "$v" "$BENCH_SECONDS")
      printf 'a\t%s\t%s\t%s\t%s\n' "$r" "$v" "$tps" "$(cat "$work/pgbench.a.$r.$v.cpu")" >>"$raw"
      line+=" $v=$tps"
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
      run_a "plans.$v" "$v" 2 >/dev/null
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

if [[ $BENCH_ONLY == *b* ]]; then
  log "(b) pgbench -i -s $SCALE"
  psql_su -d postgres -c "CREATE DATABASE kg_pgbench"
  pgbench -i -q -s "$SCALE" -U postgres kg_pgbench >"$work/pgbench-init.log" 2>&1
  psql_su -d kg_pgbench <<'EOF' >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION keys_guard;
CREATE EXTENSION pg_prewarm;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_app') THEN
        CREATE ROLE bench_app LOGIN;
    END IF;
END
$$;
GRANT keys_guard_gateway TO bench_app;
GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO bench_app;
VACUUM (FREEZE, ANALYZE);
CHECKPOINT;
EOF

  # Every measured run: restart in the wanted mode, load the tables into
  # shared buffers, warm up, measure (tps in $tps).
  measure_b() {
    local label=$1 preload=$2
    start_server "$preload"
    psql_su -d kg_pgbench -c "SELECT pg_prewarm('pgbench_accounts'), pg_prewarm('pgbench_accounts_pkey'),
                                     pg_prewarm('pgbench_branches'), pg_prewarm('pgbench_tellers')" >/dev/null
    if [ "$(psql -X -At -U bench_app -d kg_pgbench -c "SELECT count(*) FROM pg_extension WHERE extname = 'keys_guard'")" != 1 ]; then
      echo "keys_guard is not installed in kg_pgbench" >&2
      return 1
    fi
    if [ "$WARMUP_SECONDS" -gt 0 ]; then
      run_pgbench "warm.$label" kg_pgbench "$WARMUP_SECONDS" -S >/dev/null
    fi
    tps=$(run_pgbench "$label" kg_pgbench "$BENCH_SECONDS" -S)
  }

  for r in $(seq 1 "$ROUNDS"); do
    # A B, then B A: alternate which mode goes first.
    if [ $((r % 2)) = 1 ]; then order=(off on); else order=(on off); fi
    line="(b) round $r/$ROUNDS:"
    for m in "${order[@]}"; do
      if [ "$m" = on ]; then measure_b "b.$r.on" 1; else measure_b "b.$r.off" 0; fi
      printf 'b\t%s\t%s\t%s\t%s\n' "$r" "$m" "$tps" "$(cat "$work/pgbench.b.$r.$m.cpu")" >>"$raw"
      line+=" preload_$m=$tps"
    done
    log "$line"
  done
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

# cpu_ratios <comparison> <variant> <baseline>: per round, baseline CPU per
# transaction / variant CPU per transaction (below 1: keys_guard costs more).
cpu_ratios() {
  awk -F'\t' -v c="$1" -v v="$2" -v b="$3" '
    $1 == c && $3 == v { x[$2] = $5 }
    $1 == c && $3 == b { y[$2] = $5 }
    END { for (r = 1; r in x; r++) if (x[r] > 0) printf "%.4f\n", y[r] / x[r] }' "$raw"
}
cpu_of() { awk -F'\t' -v c="$1" -v v="$2" '$1 == c && $3 == v { print $5 }' "$raw"; }

# cpu_row <what> <comparison> <variant> <baseline> <max % slower>
cpu_row() {
  local what=$1 c=$2 v=$3 b=$4 target=$5 base kg ratio all slower met
  base=$(cpu_of "$c" "$b" | median)
  kg=$(cpu_of "$c" "$v" | median)
  ratio=$(cpu_ratios "$c" "$v" "$b" | median)
  all=$(cpu_ratios "$c" "$v" "$b" | paste -sd' ')
  slower=$(awk -v r="$ratio" 'BEGIN { printf "%.1f %%", (1 - r) * 100 }')
  met=$(awk -v r="$ratio" -v t="$target" 'BEGIN { print ((1 - r) * 100 <= t) ? "yes" : "**no**" }')
  record_target "$what" ">=" "$(awk -v t="$target" 'BEGIN { print 1 - t / 100 }')" $(cpu_ratios "$c" "$v" "$b")
  printf '| %s | %.1f µs | %.1f µs | %.3f | %s | ≤ %s %% slower | %s | %s |\n' \
    "$what" "$base" "$kg" "$ratio" "$slower" "$target" "$met" "$all"
}

# row <what> <comparison> <variant> <baseline> <max % slower or "">
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
  printf '| %s | %.0f | %.0f | %.3f | %s | %s | %s | %s |\n' \
    "$what" "$base" "$kg" "$ratio" "$slower" "$tgt" "$met" "$all"
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
  echo "Each run: pgbench -n -M prepared -c $CLIENTS -j $JOBS -T $BENCH_SECONDS as the non-superuser login role"
  echo "bench_app (member of keys_guard_gateway); $ROUNDS interleaved rounds; **ratio = median over rounds of"
  echo "(keys_guard tps / baseline tps) measured in the same round**; tps columns are medians."
  echo
  echo "| what | baseline tps | keys_guard tps | ratio | % slower | target | met? | per-round ratios |"
  echo "|---|---:|---:|---:|---:|---|---|---|"
  if [[ $BENCH_ONLY == *a* ]]; then
    row "(a) point lookup, pooled guarded \`invoices\` + set_context() vs unguarded \`invoices_plain\` + hand-written \`WHERE tenant_id\` + set_config(); default settings (the tenants' schemas are empty, so set_context() leaves search_path alone)" a keys_guard plain 3
    row "(a) reference: the same with \`keys_guard.tenant_search_path = off\` (search_path never touched)" a keys_guard_pool plain ""
    row "(a) reference: plain RLS policy \`tenant_id = current_setting('app.tenant')\` (FORCE) vs the same baseline (SPEC: about 1–2 % slower)" a rls plain ""
    row "(a) reference: keys_guard vs that plain RLS policy" a keys_guard rls ""
    if [ "$BENCH_BREAKDOWN" = 1 ]; then
      row "(a) diagnostic: as the first row, but every transaction sets the same tenant (no search_path change between transactions)" a keys_guard_1t plain_1t ""
      row "(a) diagnostic: \`BEGIN; SELECT keys_guard.set_context(..); COMMIT;\` vs \`BEGIN; SELECT set_config(..); COMMIT;\`" a ctx_keys_guard ctx_plain ""
    fi
  fi
  if [[ $BENCH_ONLY == *b* ]]; then
    row "(b) \`pgbench -S\` scale $SCALE, keys_guard preloaded and installed in the database vs not preloaded (restart + pg_prewarm before every run)" b on off 1
  fi
  echo
  echo "Server CPU time per transaction (every server process, pgbench excluded), the measure that other load on the"
  echo "machine hardly moves; ratio = baseline CPU / keys_guard CPU of the same round, so below 1 means keys_guard costs more:"
  echo
  echo "| what | baseline | keys_guard | ratio | % slower | target | met? | per-round ratios |"
  echo "|---|---:|---:|---:|---:|---|---|---|"
  if [[ $BENCH_ONLY == *a* ]]; then
    cpu_row "(a) point lookup, pooled, default settings: server CPU per transaction" a keys_guard plain 3
  fi
  if [[ $BENCH_ONLY == *b* ]]; then
    cpu_row "(b) \`pgbench -S\`, preloaded vs not: server CPU per transaction" b on off 1
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
