# bench/lib.sh: what every keys_guard benchmark script does first.  Sourced
# after the script has set here (the repository), BENCH_DEPS and
# BENCH_INSTALL; defines bindir, PATH, log, libfile, libsum and
# check_library.

me=${me:-$(basename "$0")}

if [ "$BENCH_DEPS" = 1 ]; then
  bash "$here/scripts/deps.sh"
fi

# BENCH_PGROOT=/some/dir: run PostgreSQL from a private copy of its
# binaries, libraries and share directory under that directory (made on
# first use; PostgreSQL finds them relative to its binaries), with
# keys_guard installed there, so that a `make install` by someone else on a
# shared machine cannot change the library under a long run.
system_bindir=/usr/lib/postgresql/15/bin
BENCH_PGROOT=${BENCH_PGROOT:-}
if [ -n "$BENCH_PGROOT" ]; then
  if [ ! -x "$BENCH_PGROOT/usr/lib/postgresql/15/bin/postgres" ]; then
    echo "==> copying PostgreSQL 15 to $BENCH_PGROOT"
    mkdir -p "$BENCH_PGROOT/usr/lib/postgresql" "$BENCH_PGROOT/usr/share/postgresql"
    cp -a /usr/lib/postgresql/15 "$BENCH_PGROOT/usr/lib/postgresql/"
    cp -a /usr/share/postgresql/15 "$BENCH_PGROOT/usr/share/postgresql/"
    chmod 755 "$BENCH_PGROOT"
  fi
  bindir=$BENCH_PGROOT/usr/lib/postgresql/15/bin
else
  bindir=$system_bindir
fi
export PATH=$bindir:$PATH

if [ "$BENCH_INSTALL" = 1 ]; then
  echo "==> building and installing keys_guard"
  # Built against the system's server headers, installed where bindir's
  # PostgreSQL looks.
  make -s -C "$here" PG_CONFIG=$system_bindir/pg_config
  make -s -C "$here" install PG_CONFIG=$bindir/pg_config >/dev/null
fi

log() { echo "==> $*" >&2; }

# Every server start loads the installed library again: a `make install` by
# someone else during the run would mix two builds (and a library newer than
# the SQL objects created at the start).  Refuse to report that.
libfile=$($bindir/pg_config --pkglibdir)/keys_guard.so
libsum=$(md5sum "$libfile" | cut -c1-12)
check_library() {
  local now
  now=$(md5sum "$libfile" | cut -c1-12)
  if [ "$now" != "$libsum" ]; then
    echo "$me: $libfile changed during the run ($libsum -> $now); someone ran make install. Run again." >&2
    return 1
  fi
}

# The work directory of a run (the cluster's data and socket, logs),
# readable by the postgres user: sets work, pgdata and server_up.
new_workdir() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$work"
  chown postgres:postgres "$work"
  pgdata="$work/data"
  server_up=0
}

# The end of every script's EXIT trap: stop the throw-away server, show the
# tail of its log if the run failed, remove the work directory.  Uses work,
# pgdata and server_up of the script.
finish_run() {
  local rc=$1
  if [ "$server_up" = 1 ]; then
    runuser -u postgres -- pg_ctl -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ "$rc" -ne 0 ] && [ -f "$work/server.log" ]; then
    echo "--- last lines of the server log" >&2
    tail -30 "$work/server.log" >&2 || true
  fi
  rm -rf "$work"
  exit "$rc"
}

# initdb of the throw-away server in $pgdata, with the settings every
# benchmark shares: Unix socket in $work only, no durability, no autovacuum
# or JIT.  The script appends its own (shared_buffers, preloading, ...).
init_cluster() {
  log "initdb in $pgdata (port $port)"
  runuser -u postgres -- initdb -D "$pgdata" -U postgres -A trust -E UTF8 --locale=C \
    --no-sync >"$work/initdb.log"
  cat >>"$pgdata/postgresql.conf" <<EOF

# keys_guard bench/$me
listen_addresses = ''
unix_socket_directories = '$work'
port = $port
max_connections = 20
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
jit = off
timezone = 'UTC'
log_min_messages = warning
keys_guard.min_grace = 0
EOF
}

# Point PGHOST/PGPORT at the throw-away server: its socket lives in $work,
# on the first port from $1 up that no other server on this machine holds
# (pg_virtualenv and other clusters may be running).
use_free_port() {
  port=$1
  while [ -e "/var/run/postgresql/.s.PGSQL.$port" ] || [ -e "/tmp/.s.PGSQL.$port" ] ||
        { command -v ss >/dev/null && ss -Hltn "sport = :$port" | grep -q .; }; do
    port=$((port + 1))
  done
  export PGHOST="$work" PGPORT="$port"
  unset PGDATABASE PGUSER PGPASSWORD PGSERVICE PGOPTIONS
}
