#!/usr/bin/env bash
# Build keys_guard and run every test suite against real PostgreSQL 15
# servers with the library preloaded:
#   1. pg_regress suites (sql/, expected/)   - make installcheck
#   2. pgTAP suites (test/*.sql)              - pg_prove
#   3. TAP suites (t/*.pl)                    - prove, PostgreSQL::Test::Cluster
# Run as root on Debian bookworm; installs its own dependencies.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash scripts/deps.sh

export PATH=/usr/lib/postgresql/15/bin:$PATH
pgxs_test=/usr/lib/postgresql/15/lib/pgxs/src/test

echo "==> building"
make -s clean >/dev/null
make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
make -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null

# The library exports what PostgreSQL looks up by name and nothing else:
# src/keys_guard.h declares everything the files share hidden, so that the
# hooks reach it without the PLT and the GOT (bench/README.md, "Where the
# time goes").  A declaration outside it would be exported again.
echo "==> checking keys_guard.so's exported symbols"
exported=$(nm -D --defined-only keys_guard.so | awk '{ print $NF }' |
  grep -vE '^(_PG_init|Pg_magic_func|pg_finfo_[a-z0-9_]+|keys_guard_[a-z0-9_]+)$' || true)
if [ -n "$exported" ]; then
  echo "keys_guard.so exports symbols PostgreSQL never looks up (declare them in src/keys_guard.h):" >&2
  echo "$exported" >&2
  exit 1
fi

# Servers run as the postgres user, who needs to read and write a copy of
# the tree; results land in it and are copied back on failure.
work=$(mktemp -d /tmp/keys_guard_test.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a "$here"/. "$work"/
chown -R postgres:postgres "$work"
chmod 755 "$work"

status=0
passed=0
failed=0

settings=(-o "shared_preload_libraries=keys_guard" -o "keys_guard.min_grace=0"
          -o "max_worker_processes=16" -o "keys_guard.purge_naptime=3600")

echo "==> pg_regress suites"
# pg_virtualenv runs as postgres so that its clusters live in private
# temporary directories (as root it would use /etc/postgresql/15/regress,
# which two concurrent runs would share).
if ! runuser -u postgres -- pg_virtualenv "${settings[@]}" \
     make -s -C "$work" installcheck PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config; then
  status=1; failed=$((failed + 1))
  cat "$work/regression.diffs" 2>/dev/null | head -200 || true
else
  passed=$((passed + 1))
fi

echo "==> pgTAP suites"
if ! runuser -u postgres -- pg_virtualenv "${settings[@]}" bash -c '
    set -e
    createdb keys_guard_tap
    psql -X -q -v ON_ERROR_STOP=1 -d keys_guard_tap \
      -c "CREATE EXTENSION keys_guard" -c "CREATE EXTENSION pgtap"
    cd "$1"
    pg_prove -d keys_guard_tap test/*.sql' _ "$work"; then
  status=1; failed=$((failed + 1))
else
  passed=$((passed + 1))
fi

echo "==> TAP suites"
if ! runuser -u postgres -- env PATH="$PATH" PG_REGRESS="$pgxs_test/regress/pg_regress" \
     bash -c 'cd "$1" && prove -I "$2/perl" t/*.pl' _ "$work" "$pgxs_test"; then
  status=1; failed=$((failed + 1))
  for log in "$work"/tmp_check/log/*; do
    [ -f "$log" ] && { echo "--- $log"; tail -50 "$log"; }
  done
else
  passed=$((passed + 1))
fi

echo "suites: $passed passed, $failed failed"
if [ $status -eq 0 ]; then
  echo "==> all keys_guard test suites passed"
else
  echo "==> keys_guard tests FAILED"
fi
exit $status
