#!/usr/bin/env bash
# keys_guard benchmark of the verified-token target of docs/contract.md §14:
# pgbench point lookups on a pooled guarded table under
# set_context_from_token() with an ES256 token vs the same lookups under
# set_context() (target: at most 15 % slower).
#
# Both variants run the same transaction shape on the same table
# (bench/setup_point.sql's `invoices`): assert a context, look one of the
# tenant's invoices up, commit.  The token variant logs in as bench_client,
# a member of keys_guard_client, and presents one ES256 token per tenant
# (signed here with the openssl CLI under a key made for the run, scope
# "read", valid for a day); the context variant logs in as bench_app, a
# member of keys_guard_gateway.  Each variant is one pgbench script per
# tenant, picked at random per transaction, with the tenant (or its token)
# as a literal, so that both send the same number of statements and both
# prepare them (-M prepared).  A backend verifies each token once (the
# signature) and then finds it in its cache of verified tokens; exp, the
# key's state and the tenant are checked at every call.
#
# One throw-away cluster.  With BENCH_PAIRED (the default) both variants
# run in the same seconds: bench/pairbench.c holds one connection for each
# and alternates their transactions (the same tenant and invoice on both),
# the server and pairbench pinned to one CPU; besides the latencies it
# reports CPU time per transaction, the context's backend against the
# token's backend plus everything the server's other processes did
# meanwhile (the audit worker writing the token's records), all of it
# charged to the token.  Without it, rounds run both variants with pgbench
# back to back in a rotating order.  The result is the median over rounds
# of the per-round ratio token / context.
#
# Run as root on Debian bookworm from anywhere:
#   bash bench/token.sh
# Settings (environment): BENCH_SECONDS=10 ROUNDS=5 WARMUP_SECONDS=3
#   CLIENTS=2 JOBS=2 TENANTS=20 ROWS_PER_TENANT=1000 BENCH_INSTALL=1 BENCH_DEPS=1
#   BENCH_PAIRED=1 (0: pgbench runs one after the other, CLIENTS and JOBS
#   apply) BENCH_CPU=0 (paired: the CPU to pin to; none: do not pin)
#   AUDIT_EACH_USE=0 (1: keys_guard.token_audit_each_use = on, an audit row
#   for every set_context_from_token(), not only for a backend's first
#   verification of a token)
# Writes the table to stdout and to bench/results/token.md (raw numbers in
# bench/results/token.tsv).
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
AUDIT_EACH_USE=${AUDIT_EACH_USE:-0}
BENCH_PAIRED=${BENCH_PAIRED:-1}
BENCH_CPU=${BENCH_CPU:-0}

for v in BENCH_SECONDS ROUNDS WARMUP_SECONDS CLIENTS JOBS TENANTS ROWS_PER_TENANT AUDIT_EACH_USE; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "token.sh: $v must be a whole number" >&2; exit 2; }
done
[ "$ROUNDS" -ge 1 ] && [ "$BENCH_SECONDS" -ge 1 ] && [ "$TENANTS" -ge 2 ] ||
  { echo "token.sh: ROUNDS and BENCH_SECONDS must be >= 1, TENANTS >= 2" >&2; exit 2; }
[[ $BENCH_PAIRED =~ ^[01]$ ]] || { echo "token.sh: BENCH_PAIRED is 0 or 1" >&2; exit 2; }
[[ $BENCH_CPU =~ ^([0-9]+|none)$ ]] || { echo "token.sh: BENCH_CPU is a CPU number or none" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "token.sh: run as root (servers are started as the postgres user)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "token.sh: needs the openssl command" >&2; exit 2; }

repro="cd $here && BENCH_SECONDS=$BENCH_SECONDS ROUNDS=$ROUNDS WARMUP_SECONDS=$WARMUP_SECONDS"
repro+=" CLIENTS=$CLIENTS JOBS=$JOBS TENANTS=$TENANTS ROWS_PER_TENANT=$ROWS_PER_TENANT"
repro+=" AUDIT_EACH_USE=$AUDIT_EACH_USE BENCH_INSTALL=$BENCH_INSTALL BENCH_PAIRED=$BENCH_PAIRED BENCH_CPU=$BENCH_CPU bash bench/token.sh"

. "$bench/lib.sh"

new_workdir keys_guard_bench_token
cleanup() { finish_run $?; }
trap cleanup EXIT
trap 'exit 130' INT TERM
use_free_port 55611
init_cluster
echo "shared_buffers = 256MB" >>"$pgdata/postgresql.conf"
if [ "$AUDIT_EACH_USE" = 1 ]; then
  echo "keys_guard.token_audit_each_use = on" >>"$pgdata/postgresql.conf"
  audit_label="every use audited"
else
  audit_label="audited when a backend verifies it"
fi
check_library
runuser -u postgres -- pg_ctl -D "$pgdata" -l "$work/server.log" -w -t 120 \
  -o "-c shared_preload_libraries=keys_guard" start >/dev/null
server_up=1

psql_su() { psql -X -q -v ON_ERROR_STOP=1 -U postgres "$@"; }

log "loading $TENANTS tenants x $ROWS_PER_TENANT invoices"
psql_su -d postgres -c "CREATE DATABASE kg_token"
psql_su -d kg_token -v tenants="$TENANTS" -v rows="$ROWS_PER_TENANT" \
  -f "$bench/setup_point.sql" >"$work/setup_point.log"
psql_su -d kg_token >/dev/null <<'EOF'
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_client') THEN
        CREATE ROLE bench_client LOGIN;
    END IF;
END
$$;
GRANT keys_guard_client TO bench_client;
GRANT SELECT ON invoices TO bench_client;
EOF

# An ES256 key for the run: the private half stays in $work.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
# DER ECDSA-Sig-Value on stdin -> JOSE r || s (32 bytes each), base64url.
jose_sig() {
  perl -e 'local $/; my $d = <STDIN>; my $p = 2; my @n;
    for (1 .. 2) { die "not DER\n" unless ord(substr($d, $p, 1)) == 2;
      my $l = ord(substr($d, $p + 1, 1)); my $v = substr($d, $p + 2, $l); $p += 2 + $l;
      $v =~ s/^\x00+//; push @n, ("\x00" x (32 - length $v)) . $v; }
    print @n;' | b64url
}
openssl ecparam -name prime256v1 -genkey -noout -out "$work/es256.key" 2>/dev/null
openssl ec -in "$work/es256.key" -pubout -out "$work/es256.pub" 2>/dev/null
psql_su -d kg_token -v pem="$(cat "$work/es256.pub")" >/dev/null \
  <<<"SELECT keys_guard.add_token_key('bench-es256', 'ES256', :'pem')"
exp=$(( $(date +%s) + 86400 ))
header=$(printf '{"alg":"ES256","kid":"bench-es256","typ":"JWT"}' | b64url)

# One script per tenant and variant; the tokens only in $work.
mkdir -p "$work/scripts"
data="$work/scripts/tenants.tsv"
printf 'tenant\ttoken\tkey_lo\tkey_hi\n' >"$data"
for t in $(seq 1 "$TENANTS"); do
  payload=$(printf '{"sub":"bench","project_id":"%s","exp":%d,"scope":"read"}' "$t" "$exp" | b64url)
  sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$work/es256.key" | jose_sig)
  token="$header.$payload.$sig"
  printf '%s\t%s\t%d\t%d\n' "$t" "$token" $(( (t - 1) * ROWS_PER_TENANT + 1 )) $(( t * ROWS_PER_TENANT )) >>"$data"
  lookup="\\set id ($t - 1) * $ROWS_PER_TENANT + random(1, $ROWS_PER_TENANT)"
  printf '%s\nBEGIN;\nSELECT keys_guard.set_context_from_token(%s);\nSELECT id, number, amount, status FROM invoices WHERE id = :id;\nCOMMIT;\n' \
    "$lookup" "'$token'" >"$work/scripts/token_$t.sql"
  printf '%s\nBEGIN;\nSELECT keys_guard.set_context(%s, %s);\nSELECT id, number, amount, status FROM invoices WHERE id = :id;\nCOMMIT;\n' \
    "$lookup" "'$t'" "'bench'" >"$work/scripts/ctx_$t.sql"
done
lookup_sql="SELECT id, number, amount, status FROM invoices WHERE id = :key"
printf 'BEGIN\nSELECT keys_guard.set_context_from_token(:token)\n%s\nCOMMIT\n' "$lookup_sql" >"$work/scripts/token.txn"
printf "BEGIN\nSELECT keys_guard.set_context(:tenant, 'bench')\n%s\nCOMMIT\n" "$lookup_sql" >"$work/scripts/ctx.txn"
chown -R postgres:postgres "$work/scripts"

# Sanity: both variants see exactly tenant 2's rows.
for v in token ctx; do
  user=bench_app; [ $v = token ] && user=bench_client
  ctx=$(sed -n '3p' "$work/scripts/${v}_2.sql" | sed 's/;$//')
  got=$(psql -X -q -At -v ON_ERROR_STOP=1 -U "$user" -d kg_token \
          -c "BEGIN; $ctx; SELECT count(*) FROM invoices; COMMIT;" | tail -1)
  [ "$got" = "$ROWS_PER_TENANT" ] || { echo "sanity check of variant $v failed: '$got' rows" >&2; exit 1; }
done

run_variant() {  # <label> <token|ctx> <seconds>: prints tps
  local label=$1 v=$2 secs=$3 user=bench_app out="$work/pgbench.$1.out" args=() t
  [ "$v" = token ] && user=bench_client
  for t in $(seq 1 "$TENANTS"); do args+=(-f "$work/scripts/${v}_$t.sql"); done
  if ! pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" -T "$secs" -U "$user" "${args[@]}" kg_token \
       >"$out" 2>&1; then
    echo "pgbench ($label) failed:" >&2; tail -20 "$out" >&2; return 1
  fi
  awk '/^tps = / { print $3; found = 1 } END { exit !found }' "$out"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The cost of a verification the cache does not save (a token a backend
# has not seen): one backend, $TENANTS new tokens, timed in the server.
first_use_ms=$(psql -X -q -At -v ON_ERROR_STOP=1 -U bench_client -d kg_token <<EOF 2>"$work/first_use.err" | tail -1
CREATE TEMP TABLE t(tok text);
$(for t in $(seq 1 "$TENANTS"); do sed -n '3p' "$work/scripts/token_$t.sql" | sed 's/^SELECT keys_guard.set_context_from_token(\(.*\));$/INSERT INTO t VALUES (\1);/'; done)
CREATE FUNCTION pg_temp.timed() RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE r record; t0 timestamptz; t1 timestamptz; first interval := '0'; again interval := '0';
BEGIN
    FOR r IN SELECT tok FROM t LOOP
        t0 := clock_timestamp(); PERFORM keys_guard.set_context_from_token(r.tok);
        t1 := clock_timestamp(); first := first + (t1 - t0);
        PERFORM keys_guard.set_context_from_token(r.tok);
        again := again + (clock_timestamp() - t1);
    END LOOP;
    RETURN round((extract(epoch FROM first) * 1000 / $TENANTS)::numeric, 3)
        || ' / ' || round((extract(epoch FROM again) * 1000 / $TENANTS)::numeric, 3);
END
\$\$;
BEGIN;
SELECT pg_temp.timed();
COMMIT;
EOF
) || first_use_ms="failed: $(head -3 "$work/first_use.err")"

raw="$work/raw.tsv"
printf 'round\tvariant\ttps\tcpu_us_per_xact\n' >"$raw"
start_epoch=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$BENCH_PAIRED" = 1 ]; then
  paired_rounds kg_token "$data" ctx "$work/scripts/ctx.txn" bench_app token "$work/scripts/token.txn" bench_client
else
  sequential_rounds token ctx
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
check_library
audited=$(psql -X -At -U postgres -d kg_token -c \
  "SELECT count(*) FROM keys_guard.audit_log WHERE action = 'token_use' AND outcome = 'ok'")
refused=$(psql -X -At -U postgres -d kg_token -c \
  "SELECT count(*) FROM keys_guard.audit_log WHERE action = 'token_use' AND outcome = 'denied'")

ratios=$(awk -F'\t' 'NR > 1 { t[$1, $2] = $3; n = $1 } END { for (r = 1; r <= n; r++) printf "%.4f\n", t[r, "token"] / t[r, "ctx"] }' "$raw")
ratio=$(median <<<"$ratios")
ctx_tps=$(awk -F'\t' '$2 == "ctx" { print $3 }' "$raw" | median)
token_tps=$(awk -F'\t' '$2 == "token" { print $3 }' "$raw" | median)
slower=$(awk -v r="$ratio" 'BEGIN { printf "%.1f %%", (1 - r) * 100 }')
met=$(awk -v r="$ratio" 'BEGIN { print ((1 - r) * 100 <= 15) ? "yes" : "**no**" }')
if [ "$BENCH_PAIRED" = 1 ]; then
  cpu_ratios=$(awk -F'\t' 'NR > 1 { c[$1, $2] = $4; n = $1 } END { for (r = 1; r <= n; r++) printf "%.4f\n", c[r, "token"] / c[r, "ctx"] }' "$raw")
  cpu_ratio=$(median <<<"$cpu_ratios")
  ctx_cpu=$(awk -F'\t' '$2 == "ctx" { print $4 }' "$raw" | median)
  token_cpu=$(awk -F'\t' '$2 == "token" { print $4 }' "$raw" | median)
  cpu_met=$(awk -v r="$cpu_ratio" 'BEGIN { print ((1 - 1 / r) * 100 <= 15) ? "yes" : "**no**" }')
  record_target "point lookup under set_context_from_token() vs set_context(), interleaved: latency" ">=" 0.85 $ratios
  record_target "the same: CPU per transaction, the server's other processes charged to the token (set_context / set_context_from_token)" ">=" 0.85 $(awk '{ printf "%.4f\n", 1 / $1 }' <<<"$cpu_ratios")
else
  record_target "point lookup under set_context_from_token() vs set_context(): tps" ">=" 0.85 $ratios
fi
report="$work/report.md"
{
  echo "# keys_guard benchmark: verified tokens"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $load_before before / $load_after after, $(( $(date +%s) - start_epoch )) s, keys_guard.so md5 $libsum."
  if [ "$BENCH_PAIRED" = 1 ]; then
    echo "bench/pairbench.c -M prepared, both variants' transactions alternated on one connection each (the same tenant and invoice),"
    echo "server and pairbench pinned to CPU $BENCH_CPU, ${BENCH_SECONDS}s per round after ${WARMUP_SECONDS}s, $TENANTS tenants x $ROWS_PER_TENANT rows,"
    echo "$ROUNDS rounds; tps = 1e6 / mean latency; **ratio = median over rounds of (set_context_from_token / set_context) in the same round**."
  else
    echo "pgbench -M prepared -c $CLIENTS -j $JOBS, ${BENCH_SECONDS}s per run, $TENANTS tenants x $ROWS_PER_TENANT rows,"
    echo "$ROUNDS interleaved rounds; **ratio = median over rounds of (set_context_from_token tps / set_context tps) in the same round**."
  fi
  echo
  echo "| what | set_context tps | set_context_from_token tps | ratio | % slower | target | met? | per-round ratios |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '| point lookup on pooled guarded `invoices`: ES256 token (read scope, %s) vs gateway context | %.0f | %.0f | %.3f | %s | <= 15 %% | %s | %s |\n' \
    "$audit_label" "$ctx_tps" "$token_tps" "$ratio" "$slower" "$met" "$(paste -sd' ' <<<"$ratios")"
  if [ "$BENCH_PAIRED" = 1 ]; then
    echo
    echo "CPU time per transaction: set_context's backend; set_context_from_token's backend plus all the CPU time the server's other"
    echo "processes took meanwhile (the audit worker), charged to the token:"
    echo
    echo "| what | set_context µs/xact | set_context_from_token µs/xact | ratio | throughput it allows | target | met? | per-round ratios |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '| the same | %.1f | %.1f | %.3f | %.1f %% slower | <= 15 %% | %s | %s |\n' \
      "$ctx_cpu" "$token_cpu" "$cpu_ratio" "$(awk -v r="$cpu_ratio" 'BEGIN { print (1 - 1 / r) * 100 }')" \
      "$cpu_met" "$(paste -sd' ' <<<"$cpu_ratios")"
  fi
  echo
  echo "One backend, $TENANTS tokens it had not seen, then the same again (ms per call, first use / cached): ${first_use_ms:-not measured}."
  echo "Token uses audited during the run: $audited (refused: $refused)."
  echo
  echo "Reproduce: \`$repro\`"
} >"$report"
cat "$report"
mkdir -p "$bench/results"
suffix=; [ "$AUDIT_EACH_USE" = 1 ] && suffix=_audit_each_use
cp "$report" "$bench/results/token$suffix.md"
cp "$raw" "$bench/results/token$suffix.tsv"
