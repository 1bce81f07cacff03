#!/usr/bin/env bash
# keys_guard benchmark of the API-key target of docs/contract.md §14:
# pgbench point lookups on a pooled guarded table under use_api_key() (a
# read key, every statement audited) vs the same lookups under
# set_context() (target: at most 10 % slower).
#
# Both variants run the same transaction shape on the same table
# (bench/setup_point.sql's `invoices`): assert a context, look one of the
# tenant's invoices up, commit.  The key variant logs in as bench_tool, a
# member of keys_guard_keyholder, and presents one read key per tenant; the
# context variant logs in as bench_app, a member of keys_guard_gateway.
# Each variant is one pgbench script per tenant, picked at random per
# transaction, with the tenant (or its key) as a literal, so that both
# send the same number of statements and both prepare them (-M prepared).
#
# One throw-away cluster.  With BENCH_PAIRED (the default) both variants
# run in the same seconds: bench/pairbench.c holds one connection for each
# and alternates their transactions (the same tenant and invoice on both),
# the server and pairbench pinned to one CPU.  The measure is CPU time per
# transaction: the context's backend against the key's backend plus
# everything the server's other processes did meanwhile (the audit worker
# writing the key's records, the WAL writer), all of it charged to the key.
# Without it, rounds run both variants with pgbench back to back in a
# rotating order.  The result is the median over rounds of the per-round
# ratio key / context.
#
# Run as root on Debian bookworm from anywhere:
#   bash bench/api_key.sh
# Settings (environment): BENCH_SECONDS=10 ROUNDS=5 WARMUP_SECONDS=3
#   CLIENTS=2 JOBS=2 TENANTS=20 ROWS_PER_TENANT=1000 BENCH_INSTALL=1 BENCH_DEPS=1
#   BENCH_PAIRED=1 (0: pgbench runs one after the other, CLIENTS and JOBS
#   apply) BENCH_CPU=0 (paired: the CPU to pin to; none: do not pin)
# Writes the table to stdout and to bench/results/api_key.md (raw numbers in
# bench/results/api_key.tsv).
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
TENANTS=${TENANTS:-20}
ROWS_PER_TENANT=${ROWS_PER_TENANT:-1000}
BENCH_INSTALL=${BENCH_INSTALL:-1}
BENCH_DEPS=${BENCH_DEPS:-1}
BENCH_PAIRED=${BENCH_PAIRED:-1}
BENCH_CPU=${BENCH_CPU:-0}

for v in BENCH_SECONDS ROUNDS WARMUP_SECONDS CLIENTS JOBS TENANTS ROWS_PER_TENANT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "api_key.sh: $v must be a whole number" >&2; exit 2; }
done
[ "$ROUNDS" -ge 1 ] && [ "$BENCH_SECONDS" -ge 1 ] && [ "$TENANTS" -ge 2 ] ||
  { echo "api_key.sh: ROUNDS and BENCH_SECONDS must be >= 1, TENANTS >= 2" >&2; exit 2; }
[[ $BENCH_PAIRED =~ ^[01]$ ]] || { echo "api_key.sh: BENCH_PAIRED is 0 or 1" >&2; exit 2; }
[[ $BENCH_CPU =~ ^([0-9]+|none)$ ]] || { echo "api_key.sh: BENCH_CPU is a CPU number or none" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "api_key.sh: run as root (servers are started as the postgres user)" >&2; exit 2; }

repro="cd $here && BENCH_SECONDS=$BENCH_SECONDS ROUNDS=$ROUNDS WARMUP_SECONDS=$WARMUP_SECONDS"
repro+=" CLIENTS=$CLIENTS JOBS=$JOBS TENANTS=$TENANTS ROWS_PER_TENANT=$ROWS_PER_TENANT"
repro+=" BENCH_INSTALL=$BENCH_INSTALL BENCH_PAIRED=$BENCH_PAIRED BENCH_CPU=$BENCH_CPU BENCH_PRIVATE=${BENCH_PRIVATE:-0} bash bench/api_key.sh"

. "$bench/lib.sh"

new_workdir keys_guard_bench_key
cleanup() { finish_run $?; }
trap cleanup EXIT
trap 'exit 130' INT TERM
use_free_port 55452
init_cluster
echo "shared_buffers = 256MB" >>"$pgdata/postgresql.conf"
check_library
runuser -u postgres -- pg_ctl -D "$pgdata" -l "$work/server.log" -w -t 120 \
  -o "-c shared_preload_libraries=keys_guard" start >/dev/null
server_up=1

psql_su() { psql -X -q -v ON_ERROR_STOP=1 -U postgres "$@"; }

log "loading $TENANTS tenants x $ROWS_PER_TENANT invoices"
psql_su -d postgres -c "CREATE DATABASE kg_key"
psql_su -d kg_key -v tenants="$TENANTS" -v rows="$ROWS_PER_TENANT" \
  -f "$bench/setup_point.sql" >"$work/setup_point.log"
psql_su -d kg_key >/dev/null <<'EOF'
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_tool') THEN
        CREATE ROLE bench_tool LOGIN;
    END IF;
END
$$;
GRANT keys_guard_keyholder TO bench_tool;
GRANT SELECT ON invoices TO bench_tool;
EOF

# One script per tenant and variant, and for pairbench one row per tenant
# (bench/pairbench.c's -d); the keys' secrets only in $work.
mkdir -p "$work/scripts"
data="$work/scripts/tenants.tsv"
printf 'tenant\tsecret\tkey_lo\tkey_hi\n' >"$data"
for t in $(seq 1 "$TENANTS"); do
  secret=$(psql -X -At -v ON_ERROR_STOP=1 -U postgres -d kg_key -c \
    "SELECT secret FROM keys_guard.create_api_key(tenant => '$t', name => 'bench')")
  printf '%s\t%s\t%d\t%d\n' "$t" "$secret" $(( (t - 1) * ROWS_PER_TENANT + 1 )) $(( t * ROWS_PER_TENANT )) >>"$data"
  lookup="\\set id ($t - 1) * $ROWS_PER_TENANT + random(1, $ROWS_PER_TENANT)"
  printf '%s\nBEGIN;\nSELECT keys_guard.use_api_key(%s);\nSELECT id, number, amount, status FROM invoices WHERE id = :id;\nCOMMIT;\n' \
    "$lookup" "'$secret'" >"$work/scripts/key_$t.sql"
  printf '%s\nBEGIN;\nSELECT keys_guard.set_context(%s, %s);\nSELECT id, number, amount, status FROM invoices WHERE id = :id;\nCOMMIT;\n' \
    "$lookup" "'$t'" "'bench'" >"$work/scripts/ctx_$t.sql"
done
lookup_sql="SELECT id, number, amount, status FROM invoices WHERE id = :key"
printf 'BEGIN\nSELECT keys_guard.use_api_key(:secret)\n%s\nCOMMIT\n' "$lookup_sql" >"$work/scripts/key.txn"
printf "BEGIN\nSELECT keys_guard.set_context(:tenant, 'bench')\n%s\nCOMMIT\n" "$lookup_sql" >"$work/scripts/ctx.txn"
chown -R postgres:postgres "$work/scripts"

# Sanity: both variants see exactly tenant 2's rows.
for v in key ctx; do
  user=bench_app; [ $v = key ] && user=bench_tool
  ctx=$(sed -n '3p' "$work/scripts/${v}_2.sql" | sed 's/;$//')
  got=$(psql -X -q -At -v ON_ERROR_STOP=1 -U "$user" -d kg_key \
          -c "BEGIN; $ctx; SELECT count(*) FROM invoices; COMMIT;" | tail -1)
  [ "$got" = "$ROWS_PER_TENANT" ] || { echo "sanity check of variant $v failed: '$got' rows" >&2; exit 1; }
done

# <label> <key|ctx> <seconds>: prints tps and the CPU time (server and
# pgbench together) per transaction in microseconds.  The second is the
# steadier measure on a shared machine: other processes slow a run down,
# but hardly change what one transaction costs.
run_variant() {
  local label=$1 v=$2 secs=$3 user=bench_app out="$work/pgbench.$1.out" args=() t
  local cpu0 cpu1 pgb0 pgb1 xacts tps
  [ "$v" = key ] && user=bench_tool
  for t in $(seq 1 "$TENANTS"); do args+=(-f "$work/scripts/${v}_$t.sql"); done
  cpu0=$(server_cpu); children_cpu; pgb0=$children_ticks
  if ! pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" -T "$secs" -U "$user" "${args[@]}" kg_key \
       >"$out" 2>&1; then
    echo "pgbench ($label) failed:" >&2; tail -20 "$out" >&2; return 1
  fi
  sleep 0.5   # the backends exit and are reaped
  cpu1=$(server_cpu); children_cpu; pgb1=$children_ticks
  tps=$(awk '/^tps = / { print $3; found = 1 } END { exit !found }' "$out")
  echo "$tps $(cpu_per_xact $((cpu1 - cpu0)) $((pgb1 - pgb0)) "$out")"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

raw="$work/raw.tsv"
printf 'round\tvariant\ttps\tcpu_us_per_xact\n' >"$raw"
start_epoch=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$BENCH_PAIRED" = 1 ]; then
  paired_rounds kg_key "$data" ctx "$work/scripts/ctx.txn" bench_app key "$work/scripts/key.txn" bench_tool
else
  sequential_rounds key ctx
fi
audited=$(psql -X -At -U postgres -d kg_key -c \
  "SELECT count(*) FROM keys_guard.audit_log WHERE action LIKE 'api_key%'")

ratios=$(awk -F'\t' 'NR > 1 { t[$1, $2] = $3; n = $1 } END { for (r = 1; r <= n; r++) printf "%.4f\n", t[r, "key"] / t[r, "ctx"] }' "$raw")
ratio=$(median <<<"$ratios")
cpu_ratios=$(awk -F'\t' 'NR > 1 { c[$1, $2] = $4; n = $1 } END { for (r = 1; r <= n; r++) printf "%.4f\n", c[r, "key"] / c[r, "ctx"] }' "$raw")
cpu_ratio=$(median <<<"$cpu_ratios")
ctx_cpu=$(awk -F'\t' '$2 == "ctx" { print $4 }' "$raw" | median)
key_cpu=$(awk -F'\t' '$2 == "key" { print $4 }' "$raw" | median)
cpu_more=$(awk -v r="$cpu_ratio" 'BEGIN { printf "%.1f %%", (r - 1) * 100 }')
cpu_met=$(awk -v r="$cpu_ratio" 'BEGIN { print ((1 / r - 1) * -100 <= 10) ? "yes" : "**no**" }')
ctx_tps=$(awk -F'\t' '$2 == "ctx" { print $3 }' "$raw" | median)
key_tps=$(awk -F'\t' '$2 == "key" { print $3 }' "$raw" | median)
slower=$(awk -v r="$ratio" 'BEGIN { printf "%.1f %%", (1 - r) * 100 }')
met=$(awk -v r="$ratio" 'BEGIN { print ((1 - r) * 100 <= 10) ? "yes" : "**no**" }')
if [ "$BENCH_PAIRED" = 1 ]; then
  record_target "point lookup under use_api_key() vs set_context(), interleaved: latency" ">=" 0.90 $ratios
  record_target "the same: CPU per transaction, the server's other processes charged to the key (set_context / use_api_key)" ">=" 0.90 $(awk '{ printf "%.4f\n", 1 / $1 }' <<<"$cpu_ratios")
else
  record_target "point lookup under use_api_key() vs set_context(): tps" ">=" 0.90 $ratios
  record_target "the same: CPU per transaction (set_context / use_api_key)" ">=" 0.90 $(awk '{ printf "%.4f\n", 1 / $1 }' <<<"$cpu_ratios")
fi
report="$work/report.md"
{
  echo "# keys_guard benchmark: API keys"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load before $load_before, $(( $(date +%s) - start_epoch )) s."
  if [ "$BENCH_PAIRED" = 1 ]; then
    echo "bench/pairbench.c -M prepared, both variants' transactions alternated on one connection each (the same tenant and invoice),"
    echo "server and pairbench pinned to CPU $BENCH_CPU, ${BENCH_SECONDS}s per round after ${WARMUP_SECONDS}s, $TENANTS tenants x $ROWS_PER_TENANT rows,"
    echo "$ROUNDS rounds; tps = 1e6 / mean latency; **ratio = median over rounds of (use_api_key / set_context) in the same round**."
  else
    echo "pgbench -M prepared -c $CLIENTS -j $JOBS, ${BENCH_SECONDS}s per run, $TENANTS tenants x $ROWS_PER_TENANT rows,"
    echo "$ROUNDS interleaved rounds; **ratio = median over rounds of (use_api_key tps / set_context tps) in the same round**."
  fi
  echo
  echo "| what | set_context tps | use_api_key tps | ratio | % slower | target | met? | per-round ratios |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '| point lookup on pooled guarded `invoices`: read key (audited) vs gateway context | %.0f | %.0f | %.3f | %s | <= 10 %% | %s | %s |\n' \
    "$ctx_tps" "$key_tps" "$ratio" "$slower" "$met" "$(paste -sd' ' <<<"$ratios")"
  echo
  if [ "$BENCH_PAIRED" = 1 ]; then
    echo "CPU time per transaction: set_context's backend; use_api_key's backend plus all the CPU time the server's other processes"
    echo "took meanwhile (the audit worker writing the key's records, the WAL writer). On one shared CPU the latencies above"
    echo "spread that work over both sides; this charges it to the key:"
  else
    echo "CPU time per transaction (server processes and pgbench together), the measure that other load on the machine hardly moves:"
  fi
  echo
  echo "| what | set_context µs/xact | use_api_key µs/xact | ratio | % more CPU | throughput it allows | target | met? | per-round ratios |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '| the same | %.1f | %.1f | %.3f | %s | %.1f %% slower | <= 10 %% | %s | %s |\n' \
    "$ctx_cpu" "$key_cpu" "$cpu_ratio" "$cpu_more" "$(awk -v r="$cpu_ratio" 'BEGIN { print (1 - 1 / r) * 100 }')" \
    "$cpu_met" "$(paste -sd' ' <<<"$cpu_ratios")"
  echo
  echo "Audit records written under the keys during the run: $audited."
  echo
  echo "Reproduce: \`$repro\`"
} >"$report"
cat "$report"
mkdir -p "$bench/results"
cp "$report" "$bench/results/api_key.md"
cp "$raw" "$bench/results/api_key.tsv"
