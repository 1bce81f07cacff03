#!/usr/bin/env bash
# Guided demo of keys_guard against a throw-away PostgreSQL 15 server.
# Installs dependencies, builds and installs the extension, starts a
# temporary cluster with keys_guard preloaded, runs scripts/demo.sql, and
# removes the cluster again. Run as root on Debian bookworm.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash scripts/deps.sh
export PATH=/usr/lib/postgresql/15/bin:$PATH
make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
make -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null

demo_sql=$(mktemp /tmp/keys_guard_demo.XXXXXX.sql)
trap 'rm -f "$demo_sql"' EXIT
cp scripts/demo.sql "$demo_sql"
chmod 644 "$demo_sql"

runuser -u postgres -- pg_virtualenv -o shared_preload_libraries=keys_guard \
  psql -X -q -v ON_ERROR_STOP=0 -d postgres -f "$demo_sql"
