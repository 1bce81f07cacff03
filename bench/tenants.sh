#!/usr/bin/env bash
# keys_guard benchmark for the tenant-count target of docs/contract.md §14: "isolation
# check cost with 10 000 tenants vs 10: flat (within noise)".
#
# Two databases in one throw-away cluster, kg<TENANTS_SMALL> and
# kg<TENANTS_LARGE>, identical except for the number of tenants (created
# with keys_guard.create_tenant()).  Both hold the same data for the same
# measured tenants '1' .. TENANTS_SMALL (bench/tenants_setup.sql):
#   - schema per tenant: tenant_<t>.invoices, guarded by keys_guard's event
#     trigger; in the large database TABLES_LARGE tenants have the table
#     (creating guarded tables gets slower as they accumulate, so not all
#     10 000 by default);
#   - pooled: public.pooled_invoices guarded by protect_table(tenant_column
#     => 'tenant_id'), the measured tenants' rows only, so that the index
#     lookups are the same size in both databases.
# Every transaction (pgbench -M prepared, bench/tenants_schema.sql and
# bench/tenants_pooled.sql) sets the context of a random measured tenant and
# looks up one of its rows; \gset fails the run unless exactly one row
# comes back.  Compared, per round: schema per tenant in the small vs the
# large database, and pooled in the small vs the large database.  An A/A
# control (the small database's run again in the same round) shows the
# noise the verdict is measured against.  As references (the data touched
# differs): the same transactions spread over every tenant with a table
# (schema) or every tenant (pooled, public.pooled_invoices_all) of the
# large database, so that the backends' caches hold them all; and, to tell
# PostgreSQL's own cost of touching many relations from keys_guard's, a
# control without keys_guard: the same tables, unguarded, in schemas
# plain_1 .. plain_<TABLES_LARGE> of a third database kg_plain (the
# extension not installed), the application setting search_path and
# hiding soft-deleted rows itself (bench/tenants_plain_setup.sql,
# bench/tenants_plain.sql), 10 schemas vs all of them; and the same
# without the soft-delete filter (bench/tenants_plain_nofilter.sql).  After
# the rounds, the same comparisons are alternated transaction by
# transaction (bench/pairbench.c, BENCH_PAIRED), each with an A/A pair for
# the noise: schema per tenant and pooled, the large database vs the small
# one, and keys_guard's schema-per-tenant lookup vs the hand-written one.
# Those are the targets' measures ("flat", "no more than the hand-written
# alternative"); the runs one after the other stay as references, since on
# a shared machine their own A/A control spreads by up to 25 %.
#
# The machine may be small and shared, so absolute tps mean little: each
# round runs every variant once, back to back, in a rotating order, and the
# result is the median over rounds of the per-round ratio large / small.
# The tps of a run is the mean of pgbench's per-second progress reports
# from second 2 on: every run opens new connections, and the first
# statement of a connection builds keys_guard's registry cache, which costs
# more with more tenants; that cost is measured on its own (fresh
# connections, and after an invalidation) and reported separately, as is
# the whole-run tps.  Correctness is checked before the first round and
# after every round in both databases (bench/tenants_check.sql): the
# context isolates (cross-tenant reads and explicit naming of another
# tenant are denied with SQLSTATE 42501, with the first and the last
# tenant), and every pgbench run ends without a failed transaction.
#
# Run as root on Debian bookworm from anywhere:
#   bash bench/tenants.sh      # about 10 minutes, one of them creating 10 000 tenants
# Quick look (under a minute on an idle 2-CPU machine):
#   ROUNDS=1 BENCH_SECONDS=3 WARMUP_SECONDS=1 TENANTS_LARGE=1000 TABLES_LARGE=100 \
#     BENCH_INSTALL=0 BENCH_DEPS=0 bash bench/tenants.sh
# Settings (environment):
#   ROUNDS=5           interleaved rounds
#   BENCH_SECONDS=10   length of each measured pgbench run (>= 3; seconds
#                      2 .. BENCH_SECONDS-1 are measured)
#   WARMUP_SECONDS=3   unmeasured pgbench run of every variant first (0: none)
#   CLIENTS=2 JOBS=2   pgbench -c / -j
#   TENANTS_SMALL=10   tenants of the small database = the measured tenants
#   TENANTS_LARGE=10000  tenants of the large database
#   TABLES_LARGE=1000  tenants of the large database with a table
#                      (TENANTS_SMALL .. TENANTS_LARGE); the setup time grows
#                      with the square of it (about 1 000: 15 s, 10 000:
#                      several minutes)
#   ROWS_PER_TENANT=1000  rows of every tenant in its table and in
#                      pooled_invoices
#   SPREAD_ROWS=10     rows of every tenant in pooled_invoices_all (the
#                      pooled spread reference)
#   FIRST_SAMPLES=5    fresh connections per database for the cache-build
#                      measurement, each round
#   BENCH_SPREAD=1     also run the spread-over-all-tenants references and
#                      their control without keys_guard (0: skip)
#   BENCH_PAIRED=1     also compare the large database with the small one
#                      (schema per tenant, pooled) and, with BENCH_SPREAD=1,
#                      keys_guard's schema per tenant lookup with the
#                      hand-written one, transaction by transaction
#                      (bench/pairbench.c): the targets' measures then (0:
#                      the runs one after the other only)
#   PAIRED_ROUNDS=ROUNDS  rounds of the transaction-by-transaction pairs
#   BENCH_CPU=0        the CPU the server and pairbench are pinned to for
#                      that (none: not pinned)
#   MIGRATE_TENANTS=10000  tenants of the migration benchmark (0: skip it):
#                      databases kg_fleet<MIGRATE_SMALL> and
#                      kg_fleet<MIGRATE_TENANTS>, every tenant cloned from
#                      a template schema with a table invoices (empty), and
#                      keys_guard.migrate_tenants() of the two-statement
#                      migration MIGRATION over all of them (and the
#                      template), timed; creation is timed per 1 000
#                      tenants
#   MIGRATE_SMALL=10   tenants of the small migration database
#   BENCH_INSTALL=1    build and `make install` the tree first (0: benchmark
#                      the keys_guard already installed for PostgreSQL 15)
#   BENCH_DEPS=1       run scripts/deps.sh first (0: skip)
# Writes the result table to stdout and to bench/results/tenants.md (raw
# per-run numbers in bench/results/tenants.tsv, the cache-build timings in
# bench/results/tenants_first.tsv).
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")/.." && pwd)
bench="$here/bench"
cd "$here"

ROUNDS=${ROUNDS:-5}
BENCH_SECONDS=${BENCH_SECONDS:-10}
WARMUP_SECONDS=${WARMUP_SECONDS:-3}
CLIENTS=${CLIENTS:-2}
JOBS=${JOBS:-2}
TENANTS_SMALL=${TENANTS_SMALL:-10}
TENANTS_LARGE=${TENANTS_LARGE:-10000}
TABLES_LARGE=${TABLES_LARGE:-1000}
ROWS_PER_TENANT=${ROWS_PER_TENANT:-1000}
SPREAD_ROWS=${SPREAD_ROWS:-10}
FIRST_SAMPLES=${FIRST_SAMPLES:-5}
BENCH_SPREAD=${BENCH_SPREAD:-1}
BENCH_PAIRED=${BENCH_PAIRED:-1}
PAIRED_ROUNDS=${PAIRED_ROUNDS:-$ROUNDS}
BENCH_CPU=${BENCH_CPU:-0}
BENCH_INSTALL=${BENCH_INSTALL:-1}
BENCH_DEPS=${BENCH_DEPS:-1}
MIGRATE_TENANTS=${MIGRATE_TENANTS:-10000}
MIGRATE_SMALL=${MIGRATE_SMALL:-10}
MIGRATION='ALTER TABLE invoices ADD COLUMN due_date date; CREATE INDEX ON invoices (due_date)'

me=tenants.sh
for v in ROUNDS PAIRED_ROUNDS BENCH_SECONDS WARMUP_SECONDS CLIENTS JOBS TENANTS_SMALL TENANTS_LARGE TABLES_LARGE \
         ROWS_PER_TENANT SPREAD_ROWS FIRST_SAMPLES MIGRATE_TENANTS MIGRATE_SMALL; do
  [[ ${!v} =~ ^[0-9]{1,9}$ ]] || { echo "$me: $v must be a whole number (at most 9 digits)" >&2; exit 2; }
  # Strip leading zeros, so that the values are decimal in $(( )).
  printf -v "$v" '%d' "$((10#${!v}))"
done
for v in BENCH_SPREAD BENCH_PAIRED BENCH_INSTALL BENCH_DEPS; do
  [[ ${!v} =~ ^[01]$ ]] || { echo "$me: $v is 0 or 1" >&2; exit 2; }
done
[[ $BENCH_CPU =~ ^([0-9]+|none)$ ]] || { echo "$me: BENCH_CPU is a CPU number or none" >&2; exit 2; }
[ "$ROUNDS" -ge 1 ] || { echo "$me: ROUNDS must be >= 1" >&2; exit 2; }
[ "$BENCH_SECONDS" -ge 3 ] || { echo "$me: BENCH_SECONDS must be >= 3 (the first second is not measured)" >&2; exit 2; }
if [ "$CLIENTS" -lt 1 ] || [ "$JOBS" -lt 1 ]; then
  echo "$me: CLIENTS and JOBS must be >= 1" >&2; exit 2
fi
[ "$TENANTS_SMALL" -ge 2 ] || { echo "$me: TENANTS_SMALL must be >= 2" >&2; exit 2; }
[ "$TENANTS_LARGE" -gt "$TENANTS_SMALL" ] || { echo "$me: TENANTS_LARGE must be > TENANTS_SMALL" >&2; exit 2; }
[ "$TENANTS_LARGE" -le 1000000 ] || { echo "$me: TENANTS_LARGE must be <= 1000000" >&2; exit 2; }
if [ "$TABLES_LARGE" -lt "$TENANTS_SMALL" ] || [ "$TABLES_LARGE" -gt "$TENANTS_LARGE" ]; then
  echo "$me: TABLES_LARGE must be between TENANTS_SMALL and TENANTS_LARGE" >&2; exit 2
fi
if [ "$ROWS_PER_TENANT" -lt 1 ] || [ $((TABLES_LARGE * ROWS_PER_TENANT)) -gt 100000000 ]; then
  echo "$me: ROWS_PER_TENANT must be >= 1, and TABLES_LARGE x ROWS_PER_TENANT <= 100000000" >&2; exit 2
fi
if [ "$SPREAD_ROWS" -lt 1 ] || [ $((TENANTS_LARGE * SPREAD_ROWS)) -gt 100000000 ]; then
  echo "$me: SPREAD_ROWS must be >= 1, and TENANTS_LARGE x SPREAD_ROWS <= 100000000" >&2; exit 2
fi
[ "$FIRST_SAMPLES" -ge 1 ] || { echo "$me: FIRST_SAMPLES must be >= 1" >&2; exit 2; }
[ "$PAIRED_ROUNDS" -ge 1 ] || { echo "$me: PAIRED_ROUNDS must be >= 1" >&2; exit 2; }
if [ "$MIGRATE_TENANTS" -ne 0 ] && { [ "$MIGRATE_SMALL" -lt 1 ] || [ "$MIGRATE_TENANTS" -le "$MIGRATE_SMALL" ]; }; then
  echo "$me: MIGRATE_SMALL must be >= 1 and below MIGRATE_TENANTS (or MIGRATE_TENANTS=0)" >&2; exit 2
fi
[ "$(id -u)" -eq 0 ] || { echo "$me: run as root (the server is started as the postgres user)" >&2; exit 2; }

repro="cd $here && ROUNDS=$ROUNDS BENCH_SECONDS=$BENCH_SECONDS WARMUP_SECONDS=$WARMUP_SECONDS CLIENTS=$CLIENTS JOBS=$JOBS"
repro+=" TENANTS_SMALL=$TENANTS_SMALL TENANTS_LARGE=$TENANTS_LARGE TABLES_LARGE=$TABLES_LARGE ROWS_PER_TENANT=$ROWS_PER_TENANT SPREAD_ROWS=$SPREAD_ROWS"
repro+=" FIRST_SAMPLES=$FIRST_SAMPLES BENCH_SPREAD=$BENCH_SPREAD BENCH_PAIRED=$BENCH_PAIRED PAIRED_ROUNDS=$PAIRED_ROUNDS BENCH_CPU=$BENCH_CPU"
repro+=" MIGRATE_TENANTS=$MIGRATE_TENANTS MIGRATE_SMALL=$MIGRATE_SMALL"
repro+=" BENCH_INSTALL=$BENCH_INSTALL${BENCH_PGROOT:+ BENCH_PGROOT=$BENCH_PGROOT} bash bench/tenants.sh"

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$bench/lib.sh"

small=kg$TENANTS_SMALL
large=kg$TENANTS_LARGE

# --- throw-away cluster -----------------------------------------------------

new_workdir keys_guard_tenants

cleanup() {
  local rc=$?
  finish_run $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

use_free_port 55632

init_cluster
# keys_guard.purge_naptime: the worker's purge pass walks every guarded
# table (over a thousand in the large database); once a minute it would
# land in some runs and not in others.  It is the purge's cost, not the
# isolation check's, so it is pushed out of the measurement (the worker
# still starts, and still drains the audit queue of the checks' denials).
cat >>"$pgdata/postgresql.conf" <<EOF
shared_buffers = 1GB
shared_preload_libraries = 'keys_guard'
keys_guard.purge_naptime = '1d'
EOF

check_library
runuser -u postgres -- pg_ctl -D "$pgdata" -l "$work/server.log" -w -t 120 start >/dev/null
server_up=1
for i in $(seq 1 600); do
  pg_isready -q -d postgres -U postgres && break
  [ "$i" = 600 ] && { echo "$me: server did not become ready" >&2; exit 1; }
  sleep 0.1
done
got=$(psql -X -At -U postgres -d postgres -c "SHOW shared_preload_libraries")
[ "$got" = keys_guard ] || { echo "$me: shared_preload_libraries is '$got'" >&2; exit 1; }

psql_su() { psql -X -q -v ON_ERROR_STOP=1 -U postgres "$@"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# fmt_s <ms>: seconds with two decimals.
fmt_s() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }

start_epoch=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the two databases ----------------------------------------------------------

declare -A tenants_of=([$small]=$TENANTS_SMALL [$large]=$TENANTS_LARGE)
declare -A tables_of=([$small]=$TENANTS_SMALL [$large]=$TABLES_LARGE)
declare -A all_rows_of=([$small]=0 [$large]=$BENCH_SPREAD)
declare -A create_ms setup_ms vacuum_ms first_k_ms last_k_ms

for db in "$small" "$large"; do
  log "$db: creating ${tenants_of[$db]} tenants"
  psql_su -d postgres -c "CREATE DATABASE $db"
  psql_su -d "$db" -c "CREATE EXTENSION keys_guard"
  t0=$(now_ms)
  if ! psql_su -d "$db" -v tenants="${tenants_of[$db]}" -f "$bench/tenants_create.sql" 2>"$work/create.$db.log"; then
    cat "$work/create.$db.log" >&2
    exit 1
  fi
  create_ms[$db]=$(( $(now_ms) - t0 ))
  # NOTICE lines "tenants created: N elapsed_ms: M", every 1 000 tenants.
  k_ms=$(awk '
    /tenants created:/ { for (i = 1; i <= NF; i++) { if ($i == "created:") n = $(i + 1); if ($i == "elapsed_ms:") e = $(i + 1) }
                         if (n % 1000 == 0) { if (k == 0) first = e; last = e - prev; k++ } prev = e }
    END { if (k == 0) { first = "-"; last = "-" } print first, last }' "$work/create.$db.log")
  read -r "first_k_ms[$db]" "last_k_ms[$db]" <<<"$k_ms"
  log "$db: ${tenants_of[$db]} tenants created in $(fmt_s "${create_ms[$db]}") s; ${tables_of[$db]} tenant tables and data"
  t0=$(now_ms)
  psql_su -d "$db" -v tenants="${tenants_of[$db]}" -v tables="${tables_of[$db]}" -v measured="$TENANTS_SMALL" \
    -v rows="$ROWS_PER_TENANT" -v all_rows="${all_rows_of[$db]}" -v spread_rows="$SPREAD_ROWS" \
    -f "$bench/tenants_setup.sql" >"$work/setup.$db.log"
  setup_ms[$db]=$(( $(now_ms) - t0 ))
  t0=$(now_ms)
  psql_su -d "$db" -c "VACUUM (FREEZE, ANALYZE)"
  vacuum_ms[$db]=$(( $(now_ms) - t0 ))
  log "$db: tables and data in $(fmt_s "${setup_ms[$db]}") s, VACUUM in $(fmt_s "${vacuum_ms[$db]}") s"
done
plain=kg_plain
if [ "$BENCH_SPREAD" = 1 ]; then
  log "$plain: $TABLES_LARGE unguarded schemas with the same table (control without keys_guard)"
  t0=$(now_ms)
  psql_su -d postgres -c "CREATE DATABASE $plain"
  psql_su -d "$plain" -v tables="$TABLES_LARGE" -v rows="$ROWS_PER_TENANT" \
    -f "$bench/tenants_plain_setup.sql" >"$work/setup.$plain.log"
  psql_su -d "$plain" -c "VACUUM (FREEZE, ANALYZE)"
  plain_ms=$(( $(now_ms) - t0 ))
  log "$plain: ready in $(fmt_s "$plain_ms") s"
fi
# Everything in shared buffers (1GB holds the three databases with the
# default sizes), so that no variant reads from the kernel's cache.
dbs=("$small" "$large")
[ "$BENCH_SPREAD" = 1 ] && dbs+=("$plain")
for db in "${dbs[@]}"; do
  psql_su -d "$db" -c "CREATE EXTENSION pg_prewarm" \
    -c "SELECT count(pg_prewarm(oid)) FROM pg_class WHERE relkind IN ('r', 'i', 't', 'm') AND relpersistence = 'p'" >/dev/null
done
psql_su -d postgres -c "CHECKPOINT"
# The server's open-files limit bounds how many relation files a backend
# keeps open (PostgreSQL closes and reopens them beyond it).
pm_pid=$(head -1 "$pgdata/postmaster.pid")
nofile=$(awk '/^Max open files/ { print $4 }' "/proc/$pm_pid/limits")
max_files=$(psql -X -At -U postgres -d postgres -c "SHOW max_files_per_process")

# The measured relations must be physically the same in both databases:
# the tables and indexes of the measured tenants and public.pooled_invoices.
measured_sizes() {
  psql -X -At -v ON_ERROR_STOP=1 -U postgres -d "$1" -c "
    SELECT string_agg(format('%s=%s', c.oid::regclass, pg_relation_size(c.oid)), ' '
                      ORDER BY c.oid::regclass::text)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'i')
       AND ((n.nspname ~ '^tenant_[0-9]+\$' AND substr(n.nspname, 8)::int <= $TENANTS_SMALL)
            OR (n.nspname = 'public' AND c.relname !~ '_all'))"
}
sizes_small=$(measured_sizes "$small")
sizes_large=$(measured_sizes "$large")
if [ "$sizes_small" != "$sizes_large" ] || [ -z "$sizes_small" ]; then
  echo "$me: the measured relations differ between $small and $large:" >&2
  echo "$small: $sizes_small" >&2
  echo "$large: $sizes_large" >&2
  exit 1
fi

# check_isolation <db>: bench/tenants_check.sql as bench_app; exits on a
# mismatch.
check_isolation() {
  local db=$1 last=${tenants_of[$1]} last_table=${tables_of[$1]} got expect
  local r=$ROWS_PER_TENANT
  got=$(psql -X -q -U bench_app -d "$db" -v rows="$r" -v last="$last" -v last_table="$last_table" \
          -v all_rows="${all_rows_of[$db]}" -f "$bench/tenants_check.sql" 2>"$work/check.$db.err") || true
  expect="schema own 1: $r 1-$r
schema 1 reads 2: 42501
schema own last: $r $(( (last_table - 1) * r + 1 ))-$(( last_table * r ))
schema last reads 1: 42501
schema no context: 42501
pooled own 1: $r 1-1
pooled 1 names 2: 42501
pooled no context: 42501"
  if [ "${all_rows_of[$db]}" = 1 ]; then
    expect+="
pooled_all own last: $SPREAD_ROWS $last-$last
pooled_all last names 1: 42501"
  fi
  if [ "$got" != "$expect" ]; then
    echo "$me: isolation check failed in $db; expected:" >&2
    echo "$expect" >&2
    echo "got:" >&2
    echo "$got" >&2
    cat "$work/check.$db.err" >&2
    exit 1
  fi
}

# Catalog facts for the report.
catalog_facts() {
  psql -X -At -F ' / ' -v ON_ERROR_STOP=1 -U postgres -d "$1" -c "
    SELECT (SELECT count(*) FROM keys_guard.tenant),
           (SELECT count(*) FROM keys_guard.guarded_table),
           (SELECT count(*) FROM pg_namespace),
           (SELECT count(*) FROM pg_class),
           pg_size_pretty(pg_database_size(current_database()))"
}

# Generic plans of the measured lookups as the application roles see them,
# with tenant 2's context: the same in both databases.
plans_of() {
  local db=$1
  psql -X -q -At -v ON_ERROR_STOP=1 -U bench_app -d "$db" <<EOF
SET plan_cache_mode = force_generic_plan;
BEGIN;
SELECT keys_guard.set_context('2', 'bench') \g /dev/null
PREPARE s(bigint) AS SELECT id, number, amount, status FROM invoices WHERE id = \$1;
\echo '-- schema per tenant (bench_app): invoices WHERE id = \$1'
EXPLAIN (COSTS OFF) EXECUTE s($((ROWS_PER_TENANT + 1)));
COMMIT;
\connect - bench_pool
SET plan_cache_mode = force_generic_plan;
BEGIN;
SELECT keys_guard.set_context('2', 'bench') \g /dev/null
PREPARE p(bigint) AS SELECT id, number, amount, status FROM pooled_invoices WHERE id = \$1;
\echo '-- pooled (bench_pool): pooled_invoices WHERE id = \$1'
EXPLAIN (COSTS OFF) EXECUTE p($((ROWS_PER_TENANT + 1)));
COMMIT;
EOF
}

for db in "$small" "$large"; do
  check_isolation "$db"
done
facts_small=$(catalog_facts "$small")
facts_large=$(catalog_facts "$large")
plans_small=$(plans_of "$small")
plans_large=$(plans_of "$large")
if [ "$plans_small" != "$plans_large" ]; then
  echo "$me: the plans of the measured lookups differ between $small and $large:" >&2
  echo "$plans_small" >&2
  echo "$plans_large" >&2
  exit 1
fi
log "isolation checks passed in both databases; measured relations and plans identical"

# --- cache (re)build ----------------------------------------------------------

# first_tx_ms <db>: in a fresh connection as bench_pool, the time of the
# first pooled transaction (it builds keys_guard's registry cache), of the
# same transaction again, of it once more after another session ran a
# CREATE and a DROP FUNCTION (a pg_proc invalidation, as any migration
# sends), and once more after a CREATE and a DROP SCHEMA (a pg_namespace
# invalidation, which empties the cache).  psql's \timing of the whole
# transaction sent as one string.  Then, in another fresh connection, the
# control: the same lookup on the unguarded twin pooled_plain, with
# set_config() for set_context(): a first transaction that reads nothing of
# keys_guard's registry, so what the larger catalog costs PostgreSQL
# itself.  Prints "first again after_function after_schema control".
first_tx_ms() {
  local db=$1 tx ctl t c
  tx="BEGIN\\; SELECT keys_guard.set_context('1', 'bench')\\; SELECT id, number, amount, status FROM pooled_invoices WHERE id = 1\\; COMMIT;"
  ctl="BEGIN\\; SELECT set_config('app.tenant', '1', true)\\; SELECT id, number, amount, status FROM pooled_plain WHERE id = 1\\; COMMIT;"
  t=$(psql -X -q -v ON_ERROR_STOP=1 -U bench_pool -d "$db" <<EOF | awk '/^Time: / { t[++n] = $2 } END { if (n != 4) exit 1; print t[1], t[2], t[3], t[4] }'
\o /dev/null
\timing on
$tx
$tx
\timing off
\! psql -X -q -v ON_ERROR_STOP=1 -U postgres -d $db -c 'CREATE FUNCTION public.kg_bench_inval() RETURNS int LANGUAGE sql AS \$\$SELECT 1\$\$' -c 'DROP FUNCTION public.kg_bench_inval()'
\timing on
$tx
\timing off
\! psql -X -q -v ON_ERROR_STOP=1 -U postgres -d $db -c 'CREATE SCHEMA kg_bench_inval' -c 'DROP SCHEMA kg_bench_inval'
\timing on
$tx
EOF
) || return 1
  c=$(psql -X -q -v ON_ERROR_STOP=1 -U bench_pool -d "$db" <<EOF | awk '/^Time: / { t[++n] = $2 } END { if (n != 1) exit 1; print t[1] }'
\o /dev/null
\timing on
$ctl
EOF
) || return 1
  echo "$t $c"
}

first_tsv="$work/first.tsv"
printf 'round\tdb\tfirst_ms\tagain_ms\tafter_function_ms\tafter_schema_ms\tcontrol_first_ms\n' >"$first_tsv"
measure_first() {
  local r=$1 db i t
  for db in "$small" "$large"; do
    for i in $(seq 1 "$FIRST_SAMPLES"); do
      t=$(first_tx_ms "$db")
      printf '%s\t%s\t%s\n' "$r" "$db" "${t// /$'\t'}" >>"$first_tsv"
    done
  done
}

# --- pgbench runs ---------------------------------------------------------------

# Variants: database, role, pgbench script, tenants picked from.
declare -A v_db=([schema_small]=$small [schema_large]=$large [schema_small_aa]=$small
                 [pooled_small]=$small [pooled_large]=$large [pooled_small_aa]=$small
                 [schema_spread]=$large [pooled_spread]=$large
                 [plain_small]=$plain [plain_spread]=$plain [plain_small_all]=$plain)
declare -A v_user=([schema_small]=bench_app [schema_large]=bench_app [schema_small_aa]=bench_app
                   [pooled_small]=bench_pool [pooled_large]=bench_pool [pooled_small_aa]=bench_pool
                   [schema_spread]=bench_app [pooled_spread]=bench_pool
                   [plain_small]=bench_app [plain_spread]=bench_app [plain_small_all]=bench_app)
declare -A v_script=([schema_small]=tenants_schema.sql [schema_large]=tenants_schema.sql
                     [schema_small_aa]=tenants_schema.sql
                     [pooled_small]=tenants_pooled.sql [pooled_large]=tenants_pooled.sql
                     [pooled_small_aa]=tenants_pooled.sql
                     [schema_spread]=tenants_schema.sql [pooled_spread]=tenants_pooled_all.sql
                     [plain_small]=tenants_plain.sql [plain_spread]=tenants_plain.sql
                     [plain_small_all]=tenants_plain_nofilter.sql)
declare -A v_tenants=([schema_small]=$TENANTS_SMALL [schema_large]=$TENANTS_SMALL [schema_small_aa]=$TENANTS_SMALL
                      [pooled_small]=$TENANTS_SMALL [pooled_large]=$TENANTS_SMALL [pooled_small_aa]=$TENANTS_SMALL
                      [schema_spread]=$TABLES_LARGE [pooled_spread]=$TENANTS_LARGE
                      [plain_small]=$TENANTS_SMALL [plain_spread]=$TABLES_LARGE
                      [plain_small_all]=$TENANTS_SMALL)
declare -A v_rows=([pooled_spread]=$SPREAD_ROWS)
variants=(schema_small schema_large pooled_small pooled_large schema_small_aa pooled_small_aa)
if [ "$BENCH_SPREAD" = 1 ]; then
  variants+=(schema_spread pooled_spread plain_small plain_spread plain_small_all)
fi

# pgbench_variant <label> <variant> <seconds>: one checked pgbench run; its
# output is in $work/pgbench.<label>.out.
pgbench_variant() {
  local label=$1 v=$2 secs=$3 rc=0
  local out="$work/pgbench.$label.out"
  pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" -T "$secs" -P 1 -U "${v_user[$v]}" \
    -f "$bench/${v_script[$v]}" -D tenants="${v_tenants[$v]}" -D rows="${v_rows[$v]:-$ROWS_PER_TENANT}" \
    "${v_db[$v]}" >"$out" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    echo "$me: pgbench ($label) failed with status $rc:" >&2
    tail -20 "$out" >&2
    return 1
  fi
  if ! grep -q '^number of failed transactions: 0 ' "$out"; then
    echo "$me: pgbench ($label) had failed transactions:" >&2
    cat "$out" >&2
    return 1
  fi
}

# run_variant <label> <variant> <seconds>: prints "<steady tps> <whole-run tps>".
run_variant() {
  local label=$1
  pgbench_variant "$@"
  # "progress: 2.0 s, 12345.6 tps, ..." lines from second 2 on, and the
  # whole run's "tps = ...".
  awk '/^progress: / { t = $2 + 0; if (t >= 2) { sum += $4; n++ } }
       /^tps = / { whole = $3 }
       END { if (n == 0 || whole == "") exit 1; printf "%.1f %.1f\n", sum / n, whole }' "$work/pgbench.$label.out" || {
    echo "$me: pgbench ($label): no progress reports or tps in its output:" >&2
    cat "$work/pgbench.$label.out" >&2
    return 1
  }
}

raw="$work/raw.tsv"
printf 'round\tvariant\tsteady_tps\twhole_tps\n' >"$raw"

if [ "$WARMUP_SECONDS" -gt 0 ]; then
  log "warm-up, ${WARMUP_SECONDS}s per variant"
  for v in "${variants[@]}"; do
    pgbench_variant "warm.$v" "$v" "$WARMUP_SECONDS"
  done
fi

n=${#variants[@]}
for r in $(seq 1 "$ROUNDS"); do
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${variants[$(( (i + r - 1) % n ))]}"); done
  line="round $r/$ROUNDS:"
  for v in "${order[@]}"; do
    res=$(run_variant "$r.$v" "$v" "$BENCH_SECONDS")
    read -r steady whole <<<"$res"
    printf '%s\t%s\t%s\t%s\n' "$r" "$v" "$steady" "$whole" >>"$raw"
    line+=" $v=$steady"
  done
  log "$line"
  measure_first "$r"
  for db in "$small" "$large"; do
    check_isolation "$db"
  done
  check_library
done

# --- one migration across every tenant schema ---------------------------------

# k_times <log>: "first-1000-ms last-1000-ms" from the creation NOTICEs.
k_times() {
  awk '
    /tenants created:/ { for (i = 1; i <= NF; i++) { if ($i == "created:") n = $(i + 1); if ($i == "elapsed_ms:") e = $(i + 1) }
                         if (n % 1000 == 0) { if (k == 0) first = e; last = e - prev; k++ } prev = e }
    END { if (k == 0) { first = "-"; last = "-" } print first, last }' "$1"
}
declare -A fleet_create_ms fleet_first_k fleet_last_k fleet_migrate_ms fleet_ok fleet_avg_ms
fleet_dbs=()
if [ "$MIGRATE_TENANTS" -gt 0 ]; then
  fleet_dbs=("kg_fleet$MIGRATE_SMALL" "kg_fleet$MIGRATE_TENANTS")
  declare -A fleet_n=([kg_fleet$MIGRATE_SMALL]=$MIGRATE_SMALL [kg_fleet$MIGRATE_TENANTS]=$MIGRATE_TENANTS)
  for db in "${fleet_dbs[@]}"; do
    log "$db: ${fleet_n[$db]} tenants from a template"
    psql_su -d postgres -c "CREATE DATABASE $db"
    psql_su -d "$db" -c "CREATE EXTENSION keys_guard" \
      -c "CREATE SCHEMA fleet_tpl" \
      -c "CREATE TABLE fleet_tpl.invoices (id bigint PRIMARY KEY, number text NOT NULL, amount numeric(12,2), status text)"
    t0=$(now_ms)
    if ! psql_su -d "$db" -v tenants="${fleet_n[$db]}" -f "$bench/fleet_create.sql" 2>"$work/create.$db.log"; then
      cat "$work/create.$db.log" >&2
      exit 1
    fi
    fleet_create_ms[$db]=$(( $(now_ms) - t0 ))
    read -r "fleet_first_k[$db]" "fleet_last_k[$db]" <<<"$(k_times "$work/create.$db.log")"
    psql_su -d "$db" -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
    log "$db: created in $(fmt_s "${fleet_create_ms[$db]}") s; migrate_tenants"
    t0=$(now_ms)
    psql_su -d "$db" -c "CALL keys_guard.migrate_tenants('bench_due_date', '$MIGRATION')" 2>"$work/migrate.$db.log"
    fleet_migrate_ms[$db]=$(( $(now_ms) - t0 ))
    read -r "fleet_ok[$db]" "fleet_avg_ms[$db]" <<<"$(psql -X -At -F ' ' -v ON_ERROR_STOP=1 -U postgres -d "$db" -c "
      SELECT count(*) FILTER (WHERE status = 'ok'),
             round((extract(epoch FROM avg(took)) * 1000)::numeric, 2)
        FROM keys_guard.tenant_migrations WHERE migration = 'bench_due_date'")"
    if [ "${fleet_ok[$db]}" != $(( fleet_n[$db] + 1 )) ]; then
      echo "$me: migrate_tenants in $db: ${fleet_ok[$db]} schemas ok, expected $(( fleet_n[$db] + 1 ))" >&2
      cat "$work/migrate.$db.log" >&2
      exit 1
    fi
    got=$(psql -X -At -v ON_ERROR_STOP=1 -U postgres -d "$db" -c "
      SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relname = 'invoices' AND a.attname = 'due_date' AND NOT a.attisdropped")
    if [ "$got" != $(( fleet_n[$db] + 1 )) ]; then
      echo "$me: $db: $got invoices tables have due_date, expected $(( fleet_n[$db] + 1 ))" >&2
      exit 1
    fi
    log "$db: migrated $(( fleet_n[$db] + 1 )) schemas in $(fmt_s "${fleet_migrate_ms[$db]}") s (${fleet_avg_ms[$db]} ms each inside)"
    check_library
  done
fi

# --- transaction by transaction: 10 000 tenants vs 10, and the hand-written lookup

# After everything else: pinning the server to one CPU would slow what
# follows it.  bench/pairbench.c holds one connection to each side and
# alternates their transactions (the same tenant and row on both), so that
# both see the machine in the same state; the scripts are those of
# bench/tenants_schema.sql, bench/tenants_pooled.sql and
# bench/tenants_plain.sql, one statement a line.  The pairs of a round:
#   schema_tc   schema per tenant, the small database (a) vs the large (b)
#   pooled_tc   pooled, the same
#   aa          schema per tenant, the small database on both sides: the
#               noise of the schema pairs
#   pooled_aa   pooled, the same: the noise of pooled_tc
#   plain       (BENCH_SPREAD=1) the hand-written lookup in kg_plain (a) vs
#               keys_guard's schema per tenant lookup in the small database
# Runs one after the other spread over 0.75-1.25 of each other on a busy
# machine; alternated, the A/A pairs stay within a few tenths of a percent.
paired=0
paired_raw="$work/paired.tsv"
if [ "$BENCH_PAIRED" = 1 ]; then
  paired=1
  build_pairbench
  pdata="$work/paired_data.tsv"
  {
    printf 'tenant\tkey_lo\tkey_hi\n'
    for t in $(seq 1 "$TENANTS_SMALL"); do
      printf '%d\t%d\t%d\n' "$t" $(( (t - 1) * ROWS_PER_TENANT + 1 )) $(( t * ROWS_PER_TENANT ))
    done
  } >"$pdata"
  cat >"$work/paired_schema.txn" <<'EOF'
BEGIN
SELECT keys_guard.set_context(:tenant, 'bench')
SELECT id, number, amount, status FROM invoices WHERE id = :key
COMMIT
EOF
  cat >"$work/paired_pooled.txn" <<'EOF'
BEGIN
SELECT keys_guard.set_context(:tenant, 'bench')
SELECT id, number, amount, status FROM pooled_invoices WHERE id = :key
COMMIT
EOF
  cat >"$work/paired_plain.txn" <<'EOF'
BEGIN
SELECT set_config('search_path', 'plain_' || :tenant || ', public', true)
SELECT id, number, amount, status FROM invoices WHERE id = :key AND deleted_at IS NULL
COMMIT
EOF
  pairs=(schema_tc aa pooled_tc pooled_aa)
  [ "$BENCH_SPREAD" = 1 ] && pairs+=(plain)
  printf 'round\tpair\tlat_a\tlat_b\tcpu_a\tcpu_b\n' >"$paired_raw"
  for r in $(seq 1 "$PAIRED_ROUNDS"); do
    for pair in "${pairs[@]}"; do
      # side a: database, script, user; side b: database, script, user
      case $pair in
        schema_tc) side=("$small" schema bench_app "$large" schema bench_app) ;;
        aa)        side=("$small" schema bench_app "$small" schema bench_app) ;;
        pooled_tc) side=("$small" pooled bench_pool "$large" pooled bench_pool) ;;
        pooled_aa) side=("$small" pooled bench_pool "$small" pooled bench_pool) ;;
        plain)     side=("$plain" plain bench_app "$small" schema bench_app) ;;
      esac
      # bench/lib.sh: "<a µs> <b µs> <a CPU µs> <b CPU µs + others'> <others'>";
      # the backends' own CPU time only here.
      read -r lat_a lat_b cpu_a cpu_b other <<<"$(paired_scripts_round "${side[0]}" "$pdata" \
        "$work/paired_${side[1]}.txn" "${side[2]}" "$work/paired_${side[4]}.txn" "${side[5]}" "$r" "${side[3]}")"
      cpu_b=$(awk -v c="$cpu_b" -v o="$other" 'BEGIN { printf "%.3f", c - o }')
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$pair" "$lat_a" "$lat_b" "$cpu_a" "$cpu_b" >>"$paired_raw"
      log "round $r/$PAIRED_ROUNDS (paired, $pair): $lat_a µs / $lat_b µs, CPU $cpu_a µs / $cpu_b µs per transaction"
    done
  done
  check_isolation "$small"
  check_isolation "$large"
  check_library
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date +%s) - start_epoch ))

# --- report -------------------------------------------------------------------

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# tps_of <variant> <column: 3 steady, 4 whole>: one per round.
tps_of() { awk -F'\t' -v v="$1" -v c="$2" 'NR > 1 && $2 == v { print $c }' "$raw"; }
# ratios <variant> <baseline> <column>: per-round variant / baseline.
ratios() {
  awk -F'\t' -v v="$1" -v b="$2" -v c="$3" '
    NR > 1 && $2 == v { x[$1] = $c }
    NR > 1 && $2 == b { y[$1] = $c }
    END { for (r = 1; r in x; r++) printf "%.4f\n", x[r] / y[r] }' "$raw"
}
# noise <aa variant> <baseline>: the largest |1 - ratio| of the A/A control.
noise() { ratios "$1" "$2" 3 | awk '{ d = $1 - 1; if (d < 0) d = -d; if (d > m) m = d } END { printf "%.4f\n", m }'; }

# row <what> <variant> <baseline> <column> <aa variant or "">
row() {
  local what=$1 v=$2 b=$3 c=$4 aa=$5
  local base val ratio all change band verdict tgt
  base=$(tps_of "$b" "$c" | median)
  val=$(tps_of "$v" "$c" | median)
  ratio=$(ratios "$v" "$b" "$c" | median)
  all=$(ratios "$v" "$b" "$c" | paste -sd' ')
  change=$(awk -v r="$ratio" 'BEGIN { printf "%+.1f %%", (r - 1) * 100 }')
  if [ -n "$aa" ] && [ "$paired" = 1 ]; then
    # The interleaved comparison below is the target's measure.
    tgt="reference (the target: the interleaved table below)"; verdict="—"
  elif [ -n "$aa" ]; then
    band=$(noise "$aa" "$b")
    tgt=$(awk -v n="$band" 'BEGIN { printf "flat: within the A/A noise (±%.1f %%)", n * 100 }')
    verdict=$(awk -v r="$ratio" -v n="$band" 'BEGIN { d = r - 1; if (d < 0) d = -d; print (d <= n) ? "yes" : "**no**" }')
    record_target "$what" "~" "$band" $(ratios "$v" "$b" "$c")
  else
    tgt="reference"; verdict="—"
  fi
  printf '| %s | %.0f | %.0f | %.3f | %s | %s | %s | %s |\n' "$what" "$base" "$val" "$ratio" "$change" "$tgt" "$verdict" "$all"
}

# row_no_more <what> <variant> <baseline> <aa variant>: keys_guard must cost
# no more than the baseline: met when the median ratio is at least 1 minus
# the A/A noise band of the same rounds.
row_no_more() {
  local what=$1 v=$2 b=$3 aa=$4
  local base val ratio all change band verdict tgt
  base=$(tps_of "$b" 3 | median)
  val=$(tps_of "$v" 3 | median)
  ratio=$(ratios "$v" "$b" 3 | median)
  all=$(ratios "$v" "$b" 3 | paste -sd' ')
  change=$(awk -v r="$ratio" 'BEGIN { printf "%+.1f %%", (r - 1) * 100 }')
  band=$(noise "$aa" schema_small)
  tgt=$(awk -v n="$band" 'BEGIN { printf "no slower, within the A/A noise (±%.1f %%)", n * 100 }')
  verdict=$(awk -v r="$ratio" -v n="$band" 'BEGIN { print (r >= 1 - n) ? "yes" : "**no**" }')
  if [ "$paired" = 1 ]; then
    # The interleaved comparison below is the target's measure.
    tgt="reference (the target: the interleaved table below)"; verdict="—"
  else
    record_target "$what" ">=" "$(awk -v n="$band" 'BEGIN { print 1 - n }')" $(ratios "$v" "$b" 3)
  fi
  printf '| %s | %.0f | %.0f | %.3f | %s | %s | %s | %s |\n' "$what" "$base" "$val" "$ratio" "$change" "$tgt" "$verdict" "$all"
}

# paired_ratios <pair> <a column> <b column>: per round, a / b (the
# baseline's latency or CPU over keys_guard's: its throughput ratio).
paired_ratios() {
  awk -F'\t' -v p="$1" -v a="$2" -v b="$3" 'NR > 1 && $2 == p { printf "%.4f\n", $a / $b }' "$paired_raw"
}

# paired_band <aa pair>: the largest |1 - ratio| of an A/A pair's rounds.
paired_band() {
  paired_ratios "$1" 3 4 | awk '{ d = $1 - 1; if (d < 0) d = -d; if (d > m) m = d } END { printf "%.4f\n", m }'
}

# row_paired_flat <what> <pair> <aa pair>: the large database vs the small
# one, interleaved (columns: mean latency of each side); flat when the
# median ratio is at least 1 minus the A/A pair's largest deviation.  One
# sided: the A/A pair measures the noise of one database against itself,
# and two databases differ by a few tenths of a percent either way for
# reasons of their own (where their relations' pages and the backends'
# memory fall); a large database that comes out faster costs nothing.
row_paired_flat() {
  local what=$1 pair=$2 aa=$3 ratio band verdict
  ratio=$(paired_ratios "$pair" 3 4 | median)
  band=$(paired_band "$aa")
  verdict=$(awk -v r="$ratio" -v n="$band" 'BEGIN { print (r >= 1 - n) ? "yes" : "**no**" }')
  record_target "$what" ">=" "$(awk -v n="$band" 'BEGIN { print 1 - n }')" $(paired_ratios "$pair" 3 4)
  printf '| %s | %.1f µs | %.1f µs | %.3f | %s | flat: no slower than the paired A/A noise (±%.1f %%) | %s | %s |\n' \
    "$what" "$(awk -F'\t' -v p="$pair" 'NR > 1 && $2 == p { print $3 }' "$paired_raw" | median)" \
    "$(awk -F'\t' -v p="$pair" 'NR > 1 && $2 == p { print $4 }' "$paired_raw" | median)" \
    "$ratio" "$(awk -v r="$ratio" 'BEGIN { printf "%+.1f %%", (r - 1) * 100 }')" \
    "$(awk -v n="$band" 'BEGIN { printf "%.1f", n * 100 }')" "$verdict" "$(paired_ratios "$pair" 3 4 | paste -sd' ')"
}

# row_paired <what>: keys_guard's schema per tenant lookup vs the
# hand-written one, interleaved; met when the median ratio is at least 1
# minus the largest deviation of the paired A/A rounds.
row_paired() {
  local what=$1 ratio all band verdict cpu cpu_all
  ratio=$(paired_ratios plain 3 4 | median)
  all=$(paired_ratios plain 3 4 | paste -sd' ')
  band=$(paired_band aa)
  cpu=$(paired_ratios plain 5 6 | median)
  cpu_all=$(paired_ratios plain 5 6 | paste -sd' ')
  verdict=$(awk -v r="$ratio" -v n="$band" 'BEGIN { print (r >= 1 - n) ? "yes" : "**no**" }')
  record_target "$what" ">=" "$(awk -v n="$band" 'BEGIN { print 1 - n }')" $(paired_ratios plain 3 4)
  printf '| %s | %.1f µs | %.1f µs | %.3f | %s | no slower, within the paired A/A noise (±%.1f %%) | %s | %s |\n' \
    "$what" "$(awk -F'\t' 'NR > 1 && $2 == "plain" { print $3 }' "$paired_raw" | median)" \
    "$(awk -F'\t' 'NR > 1 && $2 == "plain" { print $4 }' "$paired_raw" | median)" \
    "$ratio" "$(awk -v r="$ratio" 'BEGIN { printf "%+.1f %%", (r - 1) * 100 }')" \
    "$(awk -v n="$band" 'BEGIN { printf "%.1f", n * 100 }')" "$verdict" "$all"
  printf '| the same: CPU time of the two backends per transaction (hand-written / keys_guard) | %.1f µs | %.1f µs | %.3f | %s | reported | — | %s |\n' \
    "$(awk -F'\t' 'NR > 1 && $2 == "plain" { print $5 }' "$paired_raw" | median)" \
    "$(awk -F'\t' 'NR > 1 && $2 == "plain" { print $6 }' "$paired_raw" | median)" \
    "$cpu" "$(awk -v r="$cpu" 'BEGIN { printf "%+.1f %%", (r - 1) * 100 }')" "$cpu_all"
}

# first_median <db> <column 3..7>
first_median() { awk -F'\t' -v d="$1" -v c="$2" 'NR > 1 && $2 == d { print $c }' "$first_tsv" | median | awk '{ printf "%.2f", $1 }'; }

commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$here" diff --quiet HEAD -- src keys_guard--1.0.sql keys_guard--1.0--1.1.sql 2>/dev/null || commit+=" (src modified)"
if [ "$BENCH_INSTALL" = 1 ]; then built="built and installed from this tree"; else built="as installed before the run"; fi
ts=$TENANTS_SMALL
tl=$TENANTS_LARGE

report="$work/report.md"
{
  echo "# keys_guard: isolation cost with $tl tenants vs $ts"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), tree at commit $commit, keys_guard.so ($built) md5 $libsum,"
  echo "$(pgbench --version | sed 's/^pgbench (\(PostgreSQL\))/\1/'), $(nproc) CPUs, load average $load_before before / $load_after after, $elapsed s."
  echo "Each run: \`pgbench -n -M prepared -c $CLIENTS -j $JOBS -T $BENCH_SECONDS\`, tps = mean of the per-second progress"
  echo "reports from second 2 on; $ROUNDS interleaved rounds in a rotating order; **ratio = median over rounds of"
  echo "($large tps / $small tps) measured in the same round**; tps columns are medians."
  echo
  echo "| what | $small tps | $large tps | ratio | change | target | met? | per-round ratios |"
  echo "|---|---:|---:|---:|---:|---|---|---|"
  row "schema per tenant: \`set_context(t)\` + \`SELECT … FROM invoices WHERE id = \$1\` (tenant_<t>.invoices via search_path), the same $ts tenants" \
    schema_large schema_small 3 schema_small_aa
  row "pooled: \`set_context(t)\` + \`SELECT … FROM pooled_invoices WHERE id = \$1\` (protect_table, \`tenant_search_path = off\`), the same $ts tenants and rows" \
    pooled_large pooled_small 3 pooled_small_aa
  echo "| A/A control: schema per tenant, $small vs $small again in the same round (the noise) | — | — | $(ratios schema_small_aa schema_small 3 | median | awk '{ printf "%.3f", $1 }') | | | | $(ratios schema_small_aa schema_small 3 | paste -sd' ') |"
  echo "| A/A control: pooled, $small vs $small again | — | — | $(ratios pooled_small_aa pooled_small 3 | median | awk '{ printf "%.3f", $1 }') | | | | $(ratios pooled_small_aa pooled_small 3 | paste -sd' ') |"
  row "reference: schema per tenant, whole-run tps (includes each new connection's cache build)" schema_large schema_small 4 ""
  row "reference: pooled, whole-run tps" pooled_large pooled_small 4 ""
  if [ "$BENCH_SPREAD" = 1 ]; then
    row "reference: schema per tenant, $large transactions spread over all $TABLES_LARGE tenants with a table (vs $small's $ts)" \
      schema_spread schema_small 3 ""
    row "reference: pooled, $large transactions spread over all $tl tenants, on \`pooled_invoices_all\` ($SPREAD_ROWS rows each, $((tl * SPREAD_ROWS)) in all; vs $small's $ts tenants on \`pooled_invoices\`)" \
      pooled_spread pooled_small 3 ""
    row "control without keys_guard: the same tables unguarded in $plain, \`SET LOCAL search_path\` by the application, spread over $TABLES_LARGE schemas vs $ts (columns: $ts schemas, $TABLES_LARGE schemas)" \
      plain_spread plain_small 3 ""
    row_no_more "schema per tenant, keys_guard vs the hand-written alternative: \`set_context(t)\` in $small vs \`SET LOCAL search_path\` + \`AND deleted_at IS NULL\` on the same tables unguarded in $plain, over $ts tables (columns: plain, keys_guard; the same rows come back; both replan at every tenant switch)" \
      schema_small plain_small schema_small_aa
    row "reference: the same vs the hand-written lookup without \`AND deleted_at IS NULL\`, which would return soft-deleted rows too (columns: plain without the filter, keys_guard)" \
      schema_small plain_small_all 3 ""
    row "keys_guard vs that control, over $TABLES_LARGE tables: schema per tenant in $large vs plain in $plain (columns: plain, keys_guard)" \
      schema_spread plain_spread 3 ""
  fi
  echo
  echo "A ratio below 1 means the $tl-tenant database is slower. \"met?\" is yes when the median ratio is"
  echo "no further from 1 than the largest deviation of the A/A control of the same rounds$([ "$ROUNDS" -lt 3 ] && echo " (with $ROUNDS round(s), that band means little)"). The server ran"
  echo "with an open-files limit of $nofile and max_files_per_process = $max_files: a backend keeps fewer"
  echo "relation files open than that, and reopens the others when it needs them (a guarded tenant table"
  echo "has three: heap, primary key, the purge's partial index)."
  echo
  if [ "$paired" = 1 ]; then
    echo "**Transaction by transaction** (the targets' measure): bench/pairbench.c holds one connection to each"
    echo "side and alternates their transactions with the same tenant and row, ${BENCH_SECONDS}s per round after the"
    echo "warm-up, server and pairbench pinned to CPU $BENCH_CPU; the ratio is side a's mean latency over side b's"
    echo "(side b's throughput over side a's), median over $PAIRED_ROUNDS rounds. Each comparison has its A/A pair in the same"
    echo "rounds: the same database on both sides."
    echo
    echo "| what | $small | $large | ratio | change | target | met? | per-round ratios |"
    echo "|---|---:|---:|---:|---:|---|---|---|"
    row_paired_flat "schema per tenant, $large vs $small, interleaved: latency (\`set_context(t)\` + the lookup in tenant_<t>.invoices, the same $ts tenants, as bench_app)" schema_tc aa
    row_paired_flat "pooled, $large vs $small, interleaved: latency (\`set_context(t)\` + the lookup in \`pooled_invoices\`, \`tenant_search_path = off\`, as bench_pool)" pooled_tc pooled_aa
    echo "| paired A/A control: schema per tenant, $small on both sides (the noise) | — | — | $(paired_ratios aa 3 4 | median | awk '{ printf "%.3f", $1 }') | | | | $(paired_ratios aa 3 4 | paste -sd' ') |"
    echo "| paired A/A control: pooled, $small on both sides | — | — | $(paired_ratios pooled_aa 3 4 | median | awk '{ printf "%.3f", $1 }') | | | | $(paired_ratios pooled_aa 3 4 | paste -sd' ') |"
    echo
  fi
  if [ "$paired" = 1 ] && [ "$BENCH_SPREAD" = 1 ]; then
    echo "Schema per tenant, keys_guard vs the hand-written alternative, transaction by transaction"
    echo "(the target's measure): side a as bench_app in $plain (the hand-written"
    echo "\`set_config('search_path', …, true)\` + \`AND deleted_at IS NULL\`), side b in $small (\`set_context()\`); the"
    echo "ratio is the hand-written side's mean latency (or its backend's CPU time) over keys_guard's; both replan"
    echo "the lookup at every tenant switch. The noise is the schema A/A pair above."
    echo
    echo "| what | hand-written | keys_guard | ratio | change | target | met? | per-round ratios |"
    echo "|---|---:|---:|---:|---:|---|---|---|"
    row_paired "schema per tenant, keys_guard vs the hand-written alternative, interleaved: latency (\`set_context(t)\` in $small vs \`SET LOCAL search_path\` + \`AND deleted_at IS NULL\` on the same tables unguarded in $plain; the same rows come back)"
    echo
  fi
  echo "Registry cache: each backend reads the registry entries it needs, one index lookup each, and keeps"
  echo "them; an invalidation empties it (pg_namespace, the registry) or marks one relation (a guarded"
  echo "table), a pg_proc change only re-resolves keys_guard's function oids. One pooled transaction, timed"
  echo "by psql (ms), median of"
  echo "$((FIRST_SAMPLES * ROUNDS)) fresh connections as bench_pool:"
  echo
  echo "| | $small | $large |"
  echo "|---|---:|---:|"
  echo "| first transaction of a new connection | $(first_median "$small" 3) | $(first_median "$large" 3) |"
  echo "| control: the same first transaction on the unguarded twin \`pooled_plain\` (\`set_config()\`; no registry read): what the larger catalog costs PostgreSQL | $(first_median "$small" 7) | $(first_median "$large" 7) |"
  echo "| the same transaction again | $(first_median "$small" 4) | $(first_median "$large" 4) |"
  echo "| again, after another session ran \`CREATE FUNCTION\` + \`DROP FUNCTION\` | $(first_median "$small" 5) | $(first_median "$large" 5) |"
  echo "| again, after another session ran \`CREATE SCHEMA\` + \`DROP SCHEMA\` (the cache is emptied) | $(first_median "$small" 6) | $(first_median "$large" 6) |"
  echo
  echo "Setup (tenants created by \`keys_guard.create_tenant()\` in one DO block, committing every 500):"
  echo
  echo "| | $small | $large |"
  echo "|---|---:|---:|"
  echo "| tenants created in (s) | $(fmt_s "${create_ms[$small]}") | $(fmt_s "${create_ms[$large]}") |"
  if [ "${first_k_ms[$large]}" != - ]; then
    echo "| of which the first 1 000 / the last 1 000 tenants (s) | — | $(fmt_s "${first_k_ms[$large]}") / $(fmt_s "${last_k_ms[$large]}") |"
  fi
  echo "| tenant tables and data (s) | $(fmt_s "${setup_ms[$small]}") | $(fmt_s "${setup_ms[$large]}") |"
  echo "| \`VACUUM (FREEZE, ANALYZE)\` (s) | $(fmt_s "${vacuum_ms[$small]}") | $(fmt_s "${vacuum_ms[$large]}") |"
  if [ "$BENCH_SPREAD" = 1 ]; then
    echo "| control database $plain ($TABLES_LARGE unguarded schemas, tables, data, VACUUM) (s) | — | $(fmt_s "$plain_ms") |"
  fi
  echo "| tenants / guarded tables / pg_namespace rows / pg_class rows / database size | $facts_small | $facts_large |"
  echo
  echo "$ROWS_PER_TENANT rows per tenant in the tenant tables and \`pooled_invoices\`. Measured tenants '1' .. '$ts', the same tables and rows in both"
  echo "databases (checked: same relation sizes, same plans). In $large, tenants 1 .. $TABLES_LARGE have a table"
  echo "\`tenant_<t>.invoices\`, guarded by keys_guard's event trigger; the other tenants have their schema only."
  echo "Checked before the first round and after every round in both databases, as the application roles:"
  echo "reading another tenant's table and naming another tenant on the pooled table are denied with 42501"
  echo "(with tenants 1, 2 and the last), no context is denied, each tenant sees exactly its rows; every"
  echo "pgbench transaction \`\\gset\`s exactly one row, and no run had a failed transaction."
  echo
  if [ "$MIGRATE_TENANTS" -gt 0 ]; then
    fs=kg_fleet$MIGRATE_SMALL
    fl=kg_fleet$MIGRATE_TENANTS
    echo "One migration across every tenant schema: \`CALL keys_guard.migrate_tenants('bench_due_date', '$MIGRATION')\`"
    echo "over every tenant of a database whose tenants were all created from the template schema \`fleet_tpl\`"
    echo "(one empty table \`invoices\`), the template included; one committed transaction per schema."
    echo
    echo "| | $fs | $fl |"
    echo "|---|---:|---:|"
    echo "| tenants created from the template in (s) | $(fmt_s "${fleet_create_ms[$fs]}") | $(fmt_s "${fleet_create_ms[$fl]}") |"
    if [ "${fleet_first_k[$fl]}" != - ]; then
      echo "| of which the first 1 000 / the last 1 000 tenants (s) | — | $(fmt_s "${fleet_first_k[$fl]}") / $(fmt_s "${fleet_last_k[$fl]}") |"
    fi
    echo "| \`migrate_tenants\` of the two-statement migration, whole CALL (s) | $(fmt_s "${fleet_migrate_ms[$fs]}") | **$(fmt_s "${fleet_migrate_ms[$fl]}")** |"
    echo "| per schema, whole CALL / schemas (ms) | $(awk -v t="${fleet_migrate_ms[$fs]}" -v n=$((MIGRATE_SMALL + 1)) 'BEGIN { printf "%.2f", t / n }') | $(awk -v t="${fleet_migrate_ms[$fl]}" -v n=$((MIGRATE_TENANTS + 1)) 'BEGIN { printf "%.2f", t / n }') |"
    echo "| per schema, inside (the ledger's mean \`took\`) (ms) | ${fleet_avg_ms[$fs]} | ${fleet_avg_ms[$fl]} |"
    echo "| target: $MIGRATE_TENANTS tenant schemas in ≤ 5 minutes | | $(awk -v t="${fleet_migrate_ms[$fl]}" 'BEGIN { print (t <= 300000) ? "met" : "**not met**" }') |"
    echo
  fi
  echo "Reproduce:"
  echo
  echo '```'
  echo "$repro"
  echo '```'
  echo
  echo "Generic plans of the measured lookups (tenant 2's context; identical in both databases):"
  echo
  echo '```'
  echo "$plans_small"
  echo '```'
} >"$report"

mkdir -p "$bench/results"
cp "$report" "$bench/results/tenants.md"
cp "$raw" "$bench/results/tenants.tsv"
cp "$first_tsv" "$bench/results/tenants_first.tsv"
echo
cat "$report"
echo
echo "(written to bench/results/tenants.md; raw runs in bench/results/tenants.tsv and tenants_first.tsv)"
