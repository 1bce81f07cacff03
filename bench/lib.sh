# bench/lib.sh: what every keys_guard benchmark script does first.  Sourced
# after the script has set here (the repository), BENCH_DEPS and
# BENCH_INSTALL (and optionally BENCH_PRIVATE); defines bindir, PATH, log,
# libfile, libsum and check_library.

me=${me:-$(basename "$0")}

if [ "$BENCH_DEPS" = 1 ]; then
  bash "$here/scripts/deps.sh"
fi

bindir=/usr/lib/postgresql/15/bin
libfile=/usr/lib/postgresql/15/lib/keys_guard.so
private_root=
private_root_made=0

# BENCH_PRIVATE=1: a private copy of this machine's PostgreSQL 15 (binaries,
# libraries, share) in /tmp, with keys_guard installed into it, so that a
# `make install` by someone else during the run cannot change what is
# measured; removed after the run.  BENCH_PGROOT=/some/dir: the same in a
# directory you name, copied on first use and kept for the next runs.
# PostgreSQL finds its share and lib directories relative to its binaries,
# so the copy works as it is.
if [ -n "${BENCH_PGROOT:-}" ] || [ "${BENCH_PRIVATE:-0}" = 1 ]; then
  if [ -n "${BENCH_PGROOT:-}" ]; then
    private_root=$BENCH_PGROOT
    mkdir -p "$private_root"
  else
    private_root=$(mktemp -d /tmp/keys_guard_bench_pg.XXXXXX)
    private_root_made=1
  fi
  chmod 755 "$private_root"
  if [ ! -x "$private_root/usr/lib/postgresql/15/bin/postgres" ]; then
    echo "==> copying PostgreSQL 15 to $private_root"
    mkdir -p "$private_root/usr/lib/postgresql" "$private_root/usr/share/postgresql"
    cp -a /usr/lib/postgresql/15 "$private_root/usr/lib/postgresql/"
    cp -a /usr/share/postgresql/15 "$private_root/usr/share/postgresql/"
  fi
  echo "==> building keys_guard and installing it into $private_root"
  make -s -C "$here" PG_CONFIG=$bindir/pg_config
  make -s -C "$here" install DESTDIR="$private_root" PG_CONFIG=$bindir/pg_config >/dev/null
  bindir=$private_root/usr/lib/postgresql/15/bin
  libfile=$private_root/usr/lib/postgresql/15/lib/keys_guard.so
elif [ "$BENCH_INSTALL" = 1 ]; then
  echo "==> building and installing keys_guard"
  make -s -C "$here" PG_CONFIG=$bindir/pg_config
  make -s -C "$here" install PG_CONFIG=$bindir/pg_config >/dev/null
fi
export PATH=$bindir:$PATH

log() { echo "==> $*" >&2; }

# Every server start loads the installed library again: a `make install` by
# someone else during the run would mix two builds (and a library newer than
# the SQL objects created at the start).  Refuse to report that.
libsum=$(md5sum "$libfile" | cut -c1-12)
check_library() {
  local now
  now=$(md5sum "$libfile" | cut -c1-12)
  if [ "$now" != "$libsum" ]; then
    echo "$me: $libfile changed during the run ($libsum -> $now); someone ran make install. Run again." >&2
    return 1
  fi
}

# Where the work directories go: BENCH_TMPDIR, else /dev/shm when it has
# 8 GB free (a tmpfs: the data directory, WAL and pgbench's logs never wait
# for a disk that other processes of the machine share; the benchmarks run
# without durability anyway), else /tmp.
if [ -z "${BENCH_TMPDIR:-}" ]; then
  BENCH_TMPDIR=/tmp
  if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')" -ge 8388608 ] 2>/dev/null; then
    BENCH_TMPDIR=/dev/shm
  fi
fi

# The work directory of a run (the cluster's data and socket, logs),
# readable by the postgres user: sets work, pgdata and server_up.
new_workdir() {
  work=$(mktemp -d "$BENCH_TMPDIR/$1.XXXXXX")
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
  [ "$private_root_made" = 1 ] && rm -rf "$private_root"
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

# CPU accounting, the steadier measure on a shared machine: other processes
# slow a run down, but hardly change what one transaction costs.
# CPU time (clock ticks) the server has used: the postmaster's own and that
# of its children that have exited (reaped), plus that of its live
# children.  Read while no client is connected.
server_cpu() {
  local pm total pid t
  pm=$(head -1 "$pgdata/postmaster.pid")
  total=$(sed 's/^.*) //' "/proc/$pm/stat" | awk '{ print $12 + $13 + $14 + $15 }')
  for pid in $(pgrep -P "$pm"); do
    t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || continue
    total=$((total + ${t:-0}))
  done
  echo "$total"
}
# children_cpu: CPU time (clock ticks) of the finished children of this
# shell (pgbench), in $children_ticks.  Not to be called in $(...): a
# subshell would report its own children.
children_cpu() {
  times >"$work/times.out"
  children_ticks=$(awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
    split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%d\n", ((u[1] * 60 + u[2]) + (s[1] * 60 + s[2])) * hz }' \
    "$work/times.out")
}
# cpu_per_xact <server ticks> <pgbench ticks> <pgbench output>: CPU time in
# microseconds per transaction pgbench reports.
cpu_per_xact() {
  local xacts
  xacts=$(awk '/^number of transactions actually processed: / { print $6 }' "$3")
  awk -v c=$(( $1 + $2 )) -v x="$xacts" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f\n", c / hz * 1e6 / x }'
}

# build_pairbench: compile bench/pairbench.c into $work/pairbench, against
# the system's libpq (a BENCH_PRIVATE copy has no headers).
build_pairbench() {
  gcc -O2 -Wall -Werror -I"$(/usr/lib/postgresql/15/bin/pg_config --includedir)" \
    -o "$work/pairbench" "$here/bench/pairbench.c" -lpq
}

# pin_server <pgdata> <cpu>: pin a running server's postmaster and its
# processes to a CPU (backends started later inherit it).
pin_server() {
  local pm pid
  pm=$(head -1 "$1/postmaster.pid")
  taskset -p -c "$2" "$pm" >/dev/null
  for pid in $(pgrep -P "$pm"); do taskset -p -c "$2" "$pid" >/dev/null 2>&1 || true; done
}

# pairbench_round <base pgdata> <base port> <seed> [pairbench options...]:
# one round of pgbench -S's statement on this server ($pgdata, $port) and
# the baseline one, both with database kg_pgbench at scale $SCALE: load
# the tables into both servers' shared buffers, pin both servers and
# pairbench to $BENCH_CPU (unless none), run pairbench for $BENCH_SECONDS
# after $WARMUP_SECONDS as bench_app, the baseline as side a; prints
# pairbench's line.
pairbench_round() {
  local base_pgdata=$1 base_port=$2 seed=$3 p pin=()
  shift 3
  [[ ${PAIRBENCH_BURST:-1} =~ ^[1-9][0-9]*$ ]] || { echo "PAIRBENCH_BURST must be a whole number >= 1" >&2; return 2; }
  for p in "$port" "$base_port"; do
    psql -X -q -v ON_ERROR_STOP=1 -U postgres -p "$p" -d kg_pgbench \
      -c "SELECT pg_prewarm('pgbench_accounts'), pg_prewarm('pgbench_accounts_pkey'),
                 pg_prewarm('pgbench_branches'), pg_prewarm('pgbench_tellers')" >/dev/null
  done
  if [ "$BENCH_CPU" != none ]; then
    pin_server "$pgdata" "$BENCH_CPU"
    pin_server "$base_pgdata" "$BENCH_CPU"
    pin=(taskset -c "$BENCH_CPU")
  fi
  "${pin[@]}" "$work/pairbench" -b "${PAIRBENCH_BURST:-1}" "$@" -T "$BENCH_SECONDS" -W "$WARMUP_SECONDS" -r $((SCALE * 100000)) -s "$seed" \
    "host=$work port=$base_port user=bench_app dbname=kg_pgbench" \
    "host=$work port=$port user=bench_app dbname=kg_pgbench"
}

# paired_scripts_round <db> <data.tsv> <script a> <user a> <script b>
# <user b> <seed> [<db b>]: one round of two transaction scripts on this
# server ($pgdata, $port), side b the one under test (in database db b
# when given, else db too).  Pins the server and
# pairbench to $BENCH_CPU (unless none), alternates the two for
# $WARMUP_SECONDS, then times them for $BENCH_SECONDS with the same values
# on both (bench/pairbench.c -u -P).  The server's other processes' CPU
# time while timed (the audit worker writing what side b caused, the WAL
# writer) is charged to side b: all of it, although side a may have caused
# some.  Prints "<a µs> <b µs> <a CPU µs> <b CPU µs> <others' CPU µs>" per
# transaction: mean latency, then CPU time (a: its backend; b: its backend
# + the others), then the others' part of b's.
paired_scripts_round() {
  local db=$1 data=$2 script_a=$3 user_a=$4 script_b=$5 user_b=$6 seed=$7 db_b=${8:-$1} pin=() out
  local n_a lat_a n_b lat_b cpu_a cpu_b other
  if [ "$BENCH_CPU" != none ]; then
    pin_server "$pgdata" "$BENCH_CPU"
    pin=(taskset -c "$BENCH_CPU")
  fi
  out=$("${pin[@]}" "$work/pairbench" -u -P "$(head -1 "$pgdata/postmaster.pid")" \
          -d "$data" -f "$script_a" -f "$script_b" -T "$BENCH_SECONDS" -W "$WARMUP_SECONDS" -s "$seed" \
          "host=$work port=$port user=$user_a dbname=$db" "host=$work port=$port user=$user_b dbname=$db_b")
  read -r _ n_a lat_a _ n_b lat_b _ cpu_a cpu_b _ other <<<"$out"
  awk -v la="$lat_a" -v lb="$lat_b" -v ca="$cpu_a" -v cb="$cpu_b" -v o="$other" -v nb="$n_b" \
    'BEGIN { printf "%.3f %.3f %.3f %.3f %.3f\n", la, lb, ca, cb + o / nb, o / nb }'
}

# paired_rounds <db> <data.tsv> <name a> <script a> <user a> <name b>
# <script b> <user b>: $ROUNDS rounds of paired_scripts_round, each
# appending "<round> <name> <tps> <CPU µs per transaction>" (tab-separated,
# tps = 1e6 / mean latency) for both sides to $raw, and logging the round.
paired_rounds() {
  local db=$1 data=$2 name_a=$3 script_a=$4 user_a=$5 name_b=$6 script_b=$7 user_b=$8
  local r out lat_a lat_b cpu_a cpu_b other
  build_pairbench
  for r in $(seq 1 "$ROUNDS"); do
    out=$(paired_scripts_round "$db" "$data" "$script_a" "$user_a" "$script_b" "$user_b" "$r")
    read -r lat_a lat_b cpu_a cpu_b other <<<"$out"
    awk -v r="$r" -v na="$name_a" -v nb="$name_b" -v la="$lat_a" -v lb="$lat_b" -v ca="$cpu_a" -v cb="$cpu_b" \
      'BEGIN { printf "%s\t%s\t%.1f\t%.2f\n%s\t%s\t%.1f\t%.2f\n", r, nb, 1e6 / lb, cb, r, na, 1e6 / la, ca }' >>"$raw"
    log "round $r/$ROUNDS (paired): $name_a $lat_a µs, $cpu_a µs CPU; $name_b $lat_b µs, $cpu_b µs CPU ($other of it the server's other processes) per transaction"
  done
}

# sequential_rounds <variant a> <variant b>: the two variants one after the
# other: $WARMUP_SECONDS of each, then $ROUNDS rounds of $BENCH_SECONDS
# each, the order flipped every round.  The caller's run_variant <label>
# <variant> <seconds> runs one and prints "<tps> [<CPU µs per
# transaction>]"; each run appends "<round> <variant> <tps> <CPU µs>"
# (tab-separated, CPU empty if not printed) to $raw.
sequential_rounds() {
  local a=$1 b=$2 r v line result tps cpu order
  if [ "$WARMUP_SECONDS" -gt 0 ]; then
    log "warm-up, ${WARMUP_SECONDS}s per variant"
    run_variant "warm.$a" "$a" "$WARMUP_SECONDS" >/dev/null
    run_variant "warm.$b" "$b" "$WARMUP_SECONDS" >/dev/null
  fi
  for r in $(seq 1 "$ROUNDS"); do
    order=("$a" "$b"); [ $((r % 2)) = 0 ] && order=("$b" "$a")
    line="round $r/$ROUNDS:"
    for v in "${order[@]}"; do
      result=$(run_variant "$r.$v" "$v" "$BENCH_SECONDS")
      read -r tps cpu <<<"$result"
      printf '%s\t%s\t%s\t%s\n' "$r" "$v" "$tps" "${cpu:-}" >>"$raw"
      line+=" $v=$tps${cpu:+ (${cpu} us CPU/xact)}"
    done
    log "$line"
  done
}

# record_target <what> <op> <threshold> <per-round ratios...>: one target
# for the table of targets of bench/all.sh (which sets KG_TARGETS; without
# it, nothing).  op: ">=" or "<=" (each ratio should be at least / at most
# threshold) or "~" (|ratio - 1| at most threshold).
record_target() {
  [ -n "${KG_TARGETS:-}" ] || return 0
  local what=$1 op=$2 threshold=$3
  shift 3
  printf '%s\t%s\t%s\t%s\t%s\n' "$me" "$what" "$op" "$threshold" "$(echo "$@" | tr '\n' ' ' | sed 's/  */ /g; s/ $//')" >>"$KG_TARGETS"
}
