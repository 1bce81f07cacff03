#!/usr/bin/env bash
# keys_guard benchmark by instruction count: what keys_guard adds to one
# statement or transaction, counted by valgrind's callgrind in a
# single-user backend (postgres --single), so that the figure does not
# depend on what else the machine runs.  Complements the tps ratios of
# bench/log.sh and bench/api_key.sh, which a shared 2-core machine blurs.
#
#   (log)   SELECT abalance FROM accounts WHERE aid = N, with
#           log_statement = all: keys_guard preloaded vs not preloaded
#           (docs/contract.md §14, statement logging with redaction);
#   (plain) the same without statement logging (§14, library preloaded
#           vs not);
#   (key)   a point lookup under use_api_key() (read key, audited) vs the
#           same under set_context(), each transaction BEGIN / context /
#           SELECT / COMMIT (§14, API keys).
#
# Each workload runs twice under callgrind: with 1 unit and with UNITS
# units; the cost of a unit is the difference divided by UNITS - 1, so
# start-up (loading the library, catalog caches) cancels out.  Statements
# go through the simple protocol of the single-user backend: parsing and
# planning count, the client, the socket and the kernel do not.  The last
# makes a ratio here larger than a pgbench ratio of the same work (the
# baseline has less in it); parsing and planning make it smaller than with
# prepared statements.
#
# Run as root on Debian bookworm from anywhere (about 3 minutes):
#   bash bench/cost.sh
# Settings (environment): UNITS=2000 BENCH_INSTALL=1 BENCH_DEPS=1
#   BENCH_PRIVATE=0 (see bench/README.md)
# Writes the table to stdout and to bench/results/cost.md.
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")/.." && pwd)
bench="$here/bench"
cd "$here"

UNITS=${UNITS:-2000}
BENCH_INSTALL=${BENCH_INSTALL:-1}
BENCH_DEPS=${BENCH_DEPS:-1}
[[ $UNITS =~ ^[0-9]+$ ]] && [ "$UNITS" -ge 10 ] || { echo "cost.sh: UNITS must be a whole number >= 10" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "cost.sh: run as root (the backend runs as the postgres user)" >&2; exit 2; }

. "$bench/lib.sh"

if ! command -v valgrind >/dev/null; then
  apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi

new_workdir keys_guard_bench_cost
cleanup() { finish_run $?; }
trap cleanup EXIT
trap 'exit 130' INT TERM

log "initdb in $pgdata"
runuser -u postgres -- initdb -D "$pgdata" -U postgres -A trust -E UTF8 --locale=C --no-sync \
  >"$work/initdb.log"
cat >>"$pgdata/postgresql.conf" <<EOF
fsync = off
synchronous_commit = off
autovacuum = off
jit = off
timezone = 'UTC'
keys_guard.min_grace = 0
EOF

# single <preload> <script> [options...]: run a script in a single-user
# backend; prints its output.
single() {
  local preload=$1 script=$2
  shift 2
  runuser -u postgres -- postgres --single -D "$pgdata" -c "shared_preload_libraries=$preload" \
    "$@" postgres <"$script"
}

log "setting up: tenants, invoices, a read key"
cat >"$work/setup.sql" <<'EOF'
CREATE EXTENSION keys_guard;
CREATE ROLE bench_app LOGIN;
CREATE ROLE bench_tool LOGIN;
GRANT keys_guard_gateway TO bench_app;
GRANT keys_guard_keyholder TO bench_tool;
SELECT count(*) FROM generate_series(1, 20) AS g, LATERAL keys_guard.create_tenant(g::text, 'bench tenant ' || g);
CREATE TABLE accounts (aid int PRIMARY KEY, abalance int NOT NULL);
INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100000) AS g;
CREATE TABLE invoices (id bigint PRIMARY KEY, tenant_id text NOT NULL, number text NOT NULL, amount numeric(12,2) NOT NULL);
INSERT INTO invoices SELECT (t - 1) * 1000 + k, t::text, 'INV-' || t || '-' || k, k FROM generate_series(1, 20) AS t, generate_series(1, 1000) AS k;
SELECT kind FROM keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id');
GRANT SELECT ON accounts, invoices TO bench_app, bench_tool;
VACUUM (ANALYZE) accounts, invoices;
COPY (SELECT secret FROM keys_guard.create_api_key(tenant => '7', name => 'bench')) TO '/tmp/KG_SECRET_FILE';
EOF
secret_file="$work/secret"
sed -i "s|/tmp/KG_SECRET_FILE|$secret_file|" "$work/setup.sql"
chown postgres:postgres "$work/setup.sql"
single keys_guard "$work/setup.sql" >"$work/setup.log" 2>&1 ||
  { cat "$work/setup.log" >&2; exit 1; }
secret=$(cat "$secret_file")
[[ $secret == kgk_* ]] || { echo "cost.sh: no key was made" >&2; exit 1; }

# The workloads, with n units each: write_<name> <n> <file>.
write_log() {
  awk -v n="$1" 'BEGIN { srand(1); for (i = 0; i < n; i++) printf "SELECT abalance FROM accounts WHERE aid = %d;\n", 1 + int(rand() * 100000) }' >"$2"
}
write_key() {
  { echo "SET SESSION AUTHORIZATION bench_tool;"
    awk -v n="$1" -v s="$secret" 'BEGIN { srand(1); for (i = 0; i < n; i++)
      printf "BEGIN;\nSELECT keys_guard.use_api_key(%c%s%c);\nSELECT id, number, amount FROM invoices WHERE id = %d;\nCOMMIT;\n", 39, s, 39, 6001 + int(rand() * 1000) }'
  } >"$2"
}
write_ctx() {
  { echo "SET SESSION AUTHORIZATION bench_app;"
    awk -v n="$1" 'BEGIN { srand(1); for (i = 0; i < n; i++)
      printf "BEGIN;\nSELECT keys_guard.set_context(%c7%c, %cbench%c);\nSELECT id, number, amount FROM invoices WHERE id = %d;\nCOMMIT;\n", 39, 39, 39, 39, 6001 + int(rand() * 1000) }'
  } >"$2"
}

# instructions <label> <preload> <writer> [options...]: callgrind's count
# for UNITS units minus that for one unit, per unit.
instructions() {
  local label=$1 preload=$2 writer=$3 n ir
  shift 3
  declare -A got
  for n in 1 "$UNITS"; do
    "write_$writer" "$n" "$work/$label.$n.sql"
    chown postgres:postgres "$work/$label.$n.sql"
    runuser -u postgres -- valgrind --tool=callgrind --callgrind-out-file="$work/cg.$label.$n" \
      postgres --single -D "$pgdata" -c "shared_preload_libraries=$preload" "$@" postgres \
      <"$work/$label.$n.sql" >"$work/$label.$n.log" 2>&1 ||
      { tail -20 "$work/$label.$n.log" >&2; return 1; }
    if grep -q 'ERROR:' "$work/$label.$n.log"; then
      echo "cost.sh: $label had errors:" >&2; grep -m3 'ERROR:' "$work/$label.$n.log" >&2; return 1
    fi
    ir=$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$work/$label.$n.log")
    got[$n]=$ir
  done
  awk -v a="${got[1]}" -v b="${got[$UNITS]}" -v n="$UNITS" 'BEGIN { printf "%.0f\n", (b - a) / (n - 1) }'
}

logging=(-c log_statement=all -c log_destination=stderr)
log "callgrind: $UNITS statements with log_statement = all, preloaded and not"
log_kg=$(instructions log_kg keys_guard log "${logging[@]}")
log_base=$(instructions log_base '' log "${logging[@]}")
log "callgrind: the same without statement logging"
plain_kg=$(instructions plain_kg keys_guard log)
plain_base=$(instructions plain_base '' log)
log "callgrind: $UNITS transactions under use_api_key() and under set_context()"
key_kg=$(instructions key keys_guard key)
ctx_kg=$(instructions ctx keys_guard ctx)

row() {  # <what> <baseline> <keys_guard> <target %>
  awk -v w="$1" -v b="$2" -v k="$3" -v t="$4" 'BEGIN {
    r = k / b; printf "| %s | %d | %d | %.3f | %+.1f %% | %s | %s |\n", w, b, k, r, (r - 1) * 100,
      "≤ " t " %", ((r - 1) * 100 <= t) ? "yes" : "**no**" }'
}
report="$work/report.md"
{
  echo "# keys_guard benchmark: instructions per unit of work"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(valgrind --version), single-user backend, $UNITS units,"
  echo "instructions counted by callgrind, (count for $UNITS units - count for 1) / $((UNITS - 1))."
  echo "Protocol, client and kernel costs are not in the baseline, so a ratio here overstates what a client sees."
  echo
  echo "| unit of work | baseline instructions | keys_guard instructions | ratio | difference | target | met? |"
  echo "|---|---:|---:|---:|---:|---|---|"
  row "point lookup, \`log_statement = all\`: keys_guard preloaded vs not" "$log_base" "$log_kg" 5
  row "point lookup, no statement logging: preloaded vs not" "$plain_base" "$plain_kg" 1
  row "transaction: read key (\`use_api_key()\`, audited) vs \`set_context()\`" "$ctx_kg" "$key_kg" 10
  echo
  echo "Reproduce: \`cd $here && UNITS=$UNITS BENCH_INSTALL=$BENCH_INSTALL BENCH_PRIVATE=${BENCH_PRIVATE:-0} bash bench/cost.sh\`"
} >"$report"
cat "$report"
mkdir -p "$bench/results"
cp "$report" "$bench/results/cost.md"
