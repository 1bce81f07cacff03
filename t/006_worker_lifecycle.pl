
# Copyright and license: see keys_guard's README.
#
# The background worker's life (docs/contract.md §9, §6, §10):
#   - a "keys_guard launcher" and one "keys_guard worker" per served
#     database appear in pg_stat_activity; keys_guard.database restricts
#     which databases are served (another database with the extension gets
#     no worker and no purge until it is named);
#   - with a backlog of 20 000 expired rows and keys_guard.purge_batch_size
#     = 100, pg_stat_activity shows "keys_guard: purging ... (batch of 100
#     rows)";
#   - SIGHUP: a new purge_batch_size (ALTER SYSTEM + pg_reload_conf()) is
#     used by the running worker for its next batch (the batch size adapts
#     to keys_guard.purge_batch_time, t/017, but never exceeds it);
#   - SIGTERM: the worker exits cleanly (no crash restart, other sessions
#     live on) and the launcher starts a new one;
#   - SIGKILL mid-batch (twice: once while a batch waits on a lock with its
#     rows deleted but not committed, once wherever it happens to be while
#     purging): the postmaster restarts, the worker runs again, and when
#     the purge is over rows_purged equals exactly the rows gone, every row
#     within its grace and every live row is still there;
#   - a burst of 10 000 denials reaches audit_log completely with the
#     default queue; with keys_guard.audit_queue_size = 64 and the worker
#     busy, the denying sessions wait for room, and every denial reaches
#     audit_log once the worker goes on.
#
# To hold the worker inside a batch, a session locks the table's row in
# keys_guard.purge_stats: the batch deletes its rows, then waits for that
# lock to record them (the bookkeeping commits with the batch).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard'
keys_guard.min_grace = 0
keys_guard.purge_naptime = 1
keys_guard.purge_batch_size = 100
keys_guard.database = 'postgres'
# No pause while this test's sessions poll (each counts as load, t/017):
# here the worker's life is under test, not its pace.
keys_guard.purge_busy_duty = 1
max_worker_processes = 16
restart_after_crash = on
});
$node->start;

my $see_all = "SET keys_guard.bypass = on;\n";

sub poll_within
{
	my ($seconds, $query, $expected, $db) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $seconds;
	return $node->poll_query_until($db // 'postgres', $query, $expected);
}

# The pids of the keys_guard workers of database $db ('' if none).
sub worker_pids_query
{
	my ($db) = @_;
	return qq{(SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '')
  FROM pg_stat_activity
 WHERE backend_type = 'keys_guard worker' AND datname = '$db')};
}

sub worker_pid
{
	return $node->safe_psql('postgres', 'SELECT ' . worker_pids_query('postgres'));
}

# Send SQL to a background session without waiting for its result.
sub send_async
{
	my ($session, $sql) = @_;
	$session->{stdin} .= "$sql\n";
	$session->{run}->pump_nb();
	return;
}

# The worker of postgres, held on purge_stats while purging $table with
# batches of $n rows: its pid, or '' after the time budget.
sub held_worker_query
{
	my ($table, $n) = @_;
	return qq{
SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity
 WHERE backend_type = 'keys_guard worker' AND datname = 'postgres'
   AND state = 'active' AND wait_event_type = 'Lock'
   AND query = 'keys_guard: purging $table (batch of $n rows)'};
}

# The worker held on a lock in any unit of work on $table: a batch, or the
# pass that lists expired rows and, finding none, records the run.
sub busy_worker_query
{
	my ($table) = @_;
	return qq{
SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity
 WHERE backend_type = 'keys_guard worker' AND datname = 'postgres'
   AND state = 'active' AND wait_event_type = 'Lock'
   AND (query LIKE 'keys_guard: purging $table (%'
        OR query LIKE 'keys_guard: listing expired rows of $table (%')};
}

###########################################################################
# Setup: the extension in database postgres, a tenant table for denials,
# and tables for the purge.
###########################################################################

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION keys_guard;
SELECT keys_guard.create_tenant('a');
SELECT keys_guard.create_tenant('b');
CREATE TABLE tenant_b.docs (id int PRIMARY KEY, body text);
CREATE ROLE api LOGIN;
GRANT keys_guard_gateway TO api;
GRANT SELECT ON ALL TABLES IN SCHEMA tenant_b TO api;
-- Direct connections with session-wide contexts (is_local => false).
ALTER ROLE api SET keys_guard.allow_session_context = on;
-- A table the worker visits every run: its purge_stats row tells when it ran.
CREATE TABLE public.sentinel (id int PRIMARY KEY, tenant_id text NOT NULL);
SELECT keys_guard.protect_table('public.sentinel', tenant_column => 'tenant_id', grace => interval '0');
});

###########################################################################
# Processes in pg_stat_activity.
###########################################################################

ok( poll_within(
		60, q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'keys_guard launcher' AND datname IS NULL}, '1'),
	'pg_stat_activity shows one "keys_guard launcher", connected to no database');
ok( poll_within(
		60, q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'keys_guard worker' AND datname = 'postgres'}, '1'),
	'pg_stat_activity shows one "keys_guard worker" for database postgres');

# The worker's purge run reaches the sentinel table.
ok( poll_within(
		30,
		"SELECT count(*) FROM keys_guard.purge_stats WHERE relid = 'public.sentinel'::regclass",
		'1'),
	'the worker has run a purge in database postgres');

###########################################################################
# keys_guard.database = 'postgres': database "other", with the extension
# and expired rows, gets no worker and no purge -- until it is named.
###########################################################################

$node->safe_psql('postgres', "CREATE DATABASE other;");
$node->safe_psql(
	'other', q{
CREATE EXTENSION keys_guard;
SELECT keys_guard.create_tenant('a');
CREATE TABLE public.t (id int PRIMARY KEY, tenant_id text NOT NULL);
SELECT keys_guard.protect_table('public.t', tenant_column => 'tenant_id', grace => interval '0');
BEGIN;
SELECT keys_guard.set_context('a', 'seed') \g /dev/null
INSERT INTO public.t (id) SELECT generate_series(1, 10);
DELETE FROM public.t WHERE id <= 7;
COMMIT;
});

# Wait for two purge runs of database postgres, starting now.
sub two_purge_runs
{
	my ($what) = @_;
	my $t0 = $node->safe_psql('postgres', "SELECT clock_timestamp()");
	foreach my $run (1, 2)
	{
		ok( poll_within(
				30, qq{
SELECT last_run > '$t0' FROM keys_guard.purge_stats WHERE relid = 'public.sentinel'::regclass}),
			"database postgres: purge run $run $what");
		$t0 = $node->safe_psql('postgres',
			"SELECT last_run FROM keys_guard.purge_stats WHERE relid = 'public.sentinel'::regclass");
	}
	return;
}

two_purge_runs('after the rows of database other expired');
is($node->safe_psql('postgres', 'SELECT ' . worker_pids_query('other')),
	'', 'keys_guard.database = postgres: no keys_guard worker for database other');
is( $node->safe_psql(
		'other', q{
SELECT format('%s/%s/%s', rows_deleted, rows_waiting, rows_purged)
  FROM keys_guard.purge_status WHERE relation = 'public.t'::regclass}),
	'7/7/0',
	'database other: its 7 expired rows are waiting, none purged');

# Name it: a worker comes, and purges.
$node->safe_psql('postgres',
	"ALTER SYSTEM SET keys_guard.database = 'postgres, other'; SELECT pg_reload_conf();");
ok(poll_within(60, "SELECT " . worker_pids_query('other') . " <> ''"),
	'keys_guard.database = "postgres, other" after a reload: database other gets a worker');
ok( poll_within(
		30, q{
SELECT format('%s/%s/%s', rows_deleted, rows_waiting, rows_purged)
  FROM keys_guard.purge_status WHERE relation = 'public.t'::regclass}, '0/0/7', 'other'),
	'database other: its worker purges the 7 expired rows');

# And restrict again: after the reload, database other is no longer served.
$node->safe_psql('postgres',
	"ALTER SYSTEM SET keys_guard.database = 'postgres'; SELECT pg_reload_conf();");
ok(poll_within(30, "SELECT " . worker_pids_query('other') . " = ''"),
	'keys_guard.database = postgres again after a reload: the worker of database other stops');
$node->safe_psql(
	'other', q{
BEGIN;
SELECT keys_guard.set_context('a', 'seed') \g /dev/null
DELETE FROM public.t WHERE id IN (8, 9, 10);
COMMIT;
});
two_purge_runs('after more rows of database other expired');
is( $node->safe_psql(
		'other', q{
SELECT format('%s/%s/%s', rows_deleted, rows_waiting, rows_purged)
  FROM keys_guard.purge_status WHERE relation = 'public.t'::regclass}),
	'3/3/7',
	'database other, no longer served: its 3 new expired rows are not purged');

###########################################################################
# A burst of 10 000 denials with the default audit queue: every one
# reaches audit_log.
###########################################################################

my $api = $node->connstr('postgres') . ' user=api';

# A psql script of $n cross-tenant denials under one session context.
sub burst_script
{
	my ($actor, $n) = @_;
	return "\\set ON_ERROR_STOP off\n\\set VERBOSITY terse\n"
	  . "SELECT keys_guard.set_context('a', '$actor', '$actor', is_local => false) \\g /dev/null\n"
	  . ("SELECT * FROM tenant_b.docs;\n" x $n);
}

my $n_burst = 10000;
my $log_offset = -s $node->logfile;
my ($ret, $out, $err) = $node->psql(
	'postgres',
	burst_script('burst-default', $n_burst),
	connstr => $api,
	on_error_stop => 0);
my $client_denials = () = $err =~ /cross-tenant access denied/g;
is($client_denials, $n_burst,
	"burst, default queue: one session got $n_burst cross-tenant denials");
ok( poll_within(
		60, qq{
SELECT count(*) >= $n_burst FROM keys_guard.audit_log
 WHERE actor = 'burst-default' AND outcome = 'denied'}),
	'burst, default queue: the denials reach audit_log');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM keys_guard.audit_log
 WHERE actor = 'burst-default' AND outcome = 'denied' AND target = 'tenant_b.docs'}),
	$n_burst,
	"burst, default queue: exactly $n_burst denials in audit_log");
unlike(
	slurp_file($node->logfile, $log_offset),
	qr/audit records? (were lost|not written|of this database did not reach)/,
	'burst, default queue: no audit record was lost');

###########################################################################
# The backlog: public.big, 25 000 rows.  20 000 are deleted with grace 0
# (expired at once), then the grace is raised to a day and 1 000 more are
# deleted (within their grace); 4 000 stay live.  An unguarded child table
# references live rows through ON DELETE CASCADE without an index, so
# each real delete costs a scan of it and the purge takes a while.
###########################################################################

$node->safe_psql(
	'postgres', q{
CREATE TABLE public.big (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.big', tenant_column => 'tenant_id', grace => interval '0');
CREATE TABLE public.big_note (id int PRIMARY KEY, big_id int REFERENCES public.big ON DELETE CASCADE);
BEGIN;
SET LOCAL keys_guard.bypass = on;
INSERT INTO public.big SELECT g, 'a', 'row ' || g FROM generate_series(1, 25000) g;
INSERT INTO public.big_note SELECT g, 21001 + g % 4000 FROM generate_series(1, 3000) g;
COMMIT;
});
ok( poll_within(
		30,
		"SELECT count(*) FROM keys_guard.purge_stats WHERE relid = 'public.big'::regclass",
		'1'),
	'the worker has visited public.big (its purge_stats row exists)');

my $holder = $node->background_psql('postgres', on_error_stop => 0);
$holder->query_safe(
	q{
BEGIN;
SET LOCAL keys_guard.bypass = on;
DELETE FROM public.big WHERE id <= 20000;
SELECT keys_guard.protect_table('public.big', tenant_column => 'tenant_id', grace => interval '1 day') \g /dev/null
DELETE FROM public.big WHERE id BETWEEN 20001 AND 21000;
COMMIT;
BEGIN;
SELECT relid FROM keys_guard.purge_stats WHERE relid = 'public.big'::regclass FOR UPDATE;
});

# The worker is now inside a batch of public.big, held on purge_stats.
ok(poll_within(30, "SELECT (" . held_worker_query('public.big', 100) . ") <> ''"),
	'pg_stat_activity: the worker shows "keys_guard: purging public.big (batch of 100 rows)"'
);
my $pid1 = $node->safe_psql('postgres', held_worker_query('public.big', 100));
like($pid1, qr/^\d+$/, 'one worker is purging public.big');

###########################################################################
# SIGTERM: the worker exits cleanly and the launcher starts another.
###########################################################################

$log_offset = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid1)"),
	't', 'SIGTERM (pg_terminate_backend) sent to the worker');
ok( poll_within(
		60,
		"SELECT (" . held_worker_query('public.big', 100) . ") NOT IN ('', '$pid1')"),
	'after SIGTERM the launcher starts a new worker, which resumes purging public.big');
my $pid2 = $node->safe_psql('postgres', held_worker_query('public.big', 100));
isnt($pid2, $pid1, "the new worker has a new pid ($pid1 -> $pid2)");
my $log = slurp_file($node->logfile, $log_offset);
like(
	$log,
	qr/background worker "keys_guard worker[^"]*" \(PID $pid1\) exited with exit code 1/,
	'the terminated worker exited normally (exit code 1, as after any FATAL)');
unlike($log, qr/terminating any other active server processes|server process .* was terminated by signal|all server processes terminated/,
	'SIGTERM to the worker caused no crash restart');
is($holder->query_safe("SELECT 'still here';"),
	'still here', 'another session lived through the worker\'s SIGTERM');

###########################################################################
# SIGHUP: a new batch size reaches the running worker.  A second session
# queues for the purge_stats row; when the first releases it the worker
# commits its batch of 100, reloads, and its next batch (50, the new most
# rows of a batch) waits for the second session.
###########################################################################

my $holder2 = $node->background_psql('postgres', on_error_stop => 0);
my $holder2_pid = $holder2->query_safe("SELECT pg_backend_pid();");
$node->safe_psql('postgres',
	"ALTER SYSTEM SET keys_guard.purge_batch_size = 50; SELECT pg_reload_conf();");
my $audit_at_reload = $node->safe_psql('postgres', "SELECT max(id) FROM keys_guard.audit_log");
send_async($holder2,
	"BEGIN;\nSELECT relid FROM keys_guard.purge_stats WHERE relid = 'public.big'::regclass FOR UPDATE;"
);
ok( poll_within(
		30,
		"SELECT wait_event_type FROM pg_stat_activity WHERE pid = $holder2_pid",
		'Lock'),
	'a second session queues for the purge_stats row behind the worker');
$holder->query_safe("COMMIT;");
ok(poll_within(30, "SELECT (" . held_worker_query('public.big', 50) . ") = '$pid2'"),
	'SIGHUP: after pg_reload_conf() the same worker purges in batches of 50 (pg_stat_activity)'
);
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(DISTINCT detail->>'rows', ',') FROM keys_guard.audit_log
 WHERE action = 'purge' AND target = 'public.big' AND (detail->>'rows')::int > 0}),
	'100',
	'the batches committed before the reload were of 100 rows (audit_log)');

###########################################################################
# SIGKILL while a batch of 50 has deleted its rows and waits to commit.
###########################################################################

my $gone_before = $node->safe_psql('postgres',
	$see_all . "SELECT 25000 - count(*) FROM public.big");
$log_offset = -s $node->logfile;
ok(kill('KILL', $pid2), "SIGKILL sent to the worker ($pid2) in the middle of a batch");
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
ok(poll_within(60, "SELECT 1", '1'), 'the postmaster restarted after the crash');
$log = slurp_file($node->logfile, $log_offset);
like(
	$log,
	qr/background worker "keys_guard worker[^"]*" \(PID $pid2\) was terminated by signal 9/,
	'the server log shows the worker killed by signal 9 and the crash restart');
eval { $holder->quit; };
eval { $holder2->quit; };
# One snapshot: the bookkeeping and the table agree, whatever the worker
# that the launcher starts again has done meanwhile.
is( $node->safe_psql(
		'postgres', $see_all . q{
SELECT (SELECT rows_purged FROM keys_guard.purge_stats WHERE relid = 'public.big'::regclass)
       = 25000 - count(*) FROM public.big}),
	't',
	'after the crash: purge_stats.rows_purged equals the rows gone (the killed batch counted nothing and deleted nothing)'
);
cmp_ok(
	$node->safe_psql('postgres', $see_all . "SELECT 25000 - count(*) FROM public.big"),
	'>=', $gone_before,
	"the $gone_before rows purged by batches committed before the kill are still gone");

###########################################################################
# SIGKILL again, without holding the worker: wherever it is, while it is
# purging public.big.
###########################################################################

my $watcher = $node->background_psql('postgres', on_error_stop => 0);
my $pid3 = '';
my $watch_query = q{
SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'keys_guard worker' AND datname = 'postgres'
   AND state = 'active' AND query LIKE 'keys_guard: purging public.big %';};
my $deadline = time() + 60;
while (time() < $deadline)
{
	$pid3 = $watcher->query($watch_query);
	last if $pid3 =~ /^\d+$/;
	usleep(2_000);
}
like($pid3, qr/^\d+$/,
	'after the crash a new worker resumes purging public.big');
isnt($pid3, $pid2, 'it is a new worker process');
$log_offset = -s $node->logfile;
ok(kill('KILL', $pid3), "SIGKILL sent to the worker ($pid3) while it is purging");
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
eval { $watcher->quit; };
ok(poll_within(60, "SELECT 1", '1'), 'the postmaster restarted after the second crash');

###########################################################################
# The purge finishes.  Nothing lost, nothing deleted twice.
###########################################################################

ok( poll_within(
		120, q{
SELECT format('%s/%s', rows_waiting, rows_deleted) FROM keys_guard.purge_status
 WHERE relation = 'public.big'::regclass}, '0/1000'),
	'after the crashes the worker finishes the purge: nothing waiting, the 1 000 rows within their grace remain deleted'
);
my $worker_after = worker_pid();
like($worker_after, qr/^\d+$/, 'a keys_guard worker is running after the crashes');
ok($worker_after ne $pid2 && $worker_after ne $pid3,
	'it is a new process');
is( $node->safe_psql(
		'postgres', $see_all . q{
SELECT (SELECT rows_purged FROM keys_guard.purge_stats WHERE relid = 'public.big'::regclass)
       || '/' || (25000 - count(*)) FROM public.big}),
	'20000/20000',
	'purge_stats.rows_purged equals exactly the number of rows physically gone (20 000)');
is( $node->safe_psql(
		'postgres', $see_all . q{
SELECT count(*) FILTER (WHERE deleted_at IS NULL) || '/'
       || count(*) FILTER (WHERE deleted_at IS NOT NULL AND hard_delete_at > now()) || '/'
       || count(*) || '/' || min(id) || '/' || max(id)
  FROM public.big}),
	'4000/1000/5000/20001/25000',
	'public.big holds exactly the 4 000 live and the 1 000 within-grace rows (ids 20001-25000)');
is( $node->safe_psql(
		'postgres', $see_all . q{
SELECT count(*) FROM public.big WHERE id BETWEEN 20001 AND 21000 AND deleted_at IS NOT NULL}),
	'1000', 'every row within its grace is still there, still soft-deleted');
is( $node->safe_psql(
		'postgres', q{
SELECT sum((detail->>'rows')::bigint) FROM keys_guard.audit_log
 WHERE action = 'purge' AND target = 'public.big' AND outcome = 'ok'}),
	'20000',
	'the purge audit records of public.big add up to exactly 20 000 rows');
is( $node->safe_psql(
		'postgres', qq{
SELECT max((detail->>'rows')::int) FROM (
  SELECT detail FROM keys_guard.audit_log
   WHERE action = 'purge' AND target = 'public.big' AND id > $audit_at_reload
   ORDER BY id OFFSET 1) b}),
	'50', 'after the reload (and the batch it held) the batches were of at most 50 rows');
is($node->safe_psql('postgres', "SELECT count(*) FROM public.big_note"),
	'3000', 'the unguarded child rows of live rows are untouched');

###########################################################################
# The direct path (src/purge.c): public.flat, which nothing references, is
# purged by listing its expired rows and deleting them a batch per
# transaction without a statement.  At full speed (purge_batch_delay = 0)
# one listing pass covers 16 batches.
# SIGKILL while its first batch has deleted 50 rows and waits to commit:
# nothing lost, nothing twice.
###########################################################################

$node->safe_psql('postgres',
	"ALTER SYSTEM SET keys_guard.purge_batch_delay = 0; SELECT pg_reload_conf();");
$node->safe_psql(
	'postgres', q{
CREATE TABLE public.flat (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.flat', tenant_column => 'tenant_id', grace => interval '0');
});
ok( poll_within(
		30,
		"SELECT count(*) FROM keys_guard.purge_stats WHERE relid = 'public.flat'::regclass",
		'1'),
	'the worker has visited public.flat (its purge_stats row exists)');
$holder = $node->background_psql('postgres', on_error_stop => 0);
$holder->query_safe(
	q{
BEGIN;
SET LOCAL keys_guard.bypass = on;
INSERT INTO public.flat SELECT g, 'a', 'row ' || g FROM generate_series(1, 10000) g;
DELETE FROM public.flat WHERE id <= 8000;
COMMIT;
BEGIN;
SELECT relid FROM keys_guard.purge_stats WHERE relid = 'public.flat'::regclass FOR UPDATE;
});
ok(poll_within(30, "SELECT (" . held_worker_query('public.flat', 50) . ") <> ''"),
	'the worker is held in its first batch of public.flat (50 rows deleted, not committed)');
my $pid4 = $node->safe_psql('postgres', held_worker_query('public.flat', 50));
is($node->safe_psql('postgres', $see_all . "SELECT count(*) FROM public.flat"),
	'10000', 'the held batch is not visible: all 10 000 rows are there');
$log_offset = -s $node->logfile;
ok(kill('KILL', $pid4), "SIGKILL sent to the worker ($pid4) inside a batch of public.flat");
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
eval { $holder->quit; };
ok(poll_within(60, "SELECT 1", '1'), 'the postmaster restarted after the third crash');
is( $node->safe_psql(
		'postgres', $see_all . q{
SELECT coalesce((SELECT rows_purged FROM keys_guard.purge_stats WHERE relid = 'public.flat'::regclass), 0)
       = 10000 - count(*) FROM public.flat}),
	't',
	'after the crash: purge_stats.rows_purged of public.flat equals the rows gone');
ok( poll_within(
		120, q{
SELECT format('%s/%s/%s', rows_waiting, rows_deleted, rows_purged) FROM keys_guard.purge_status
 WHERE relation = 'public.flat'::regclass}, '0/0/8000'),
	'the worker finishes public.flat: nothing waiting, 8 000 purged');
is( $node->safe_psql(
		'postgres', $see_all . q{
SELECT count(*) || '/' || min(id) || '/' || max(id) || '/' || count(*) FILTER (WHERE deleted_at IS NULL)
  FROM public.flat}),
	'2000/8001/10000/2000',
	'public.flat holds exactly its 2 000 live rows (ids 8001-10000)');
is( $node->safe_psql(
		'postgres', q{
SELECT sum((detail->>'rows')::bigint) || '/' || max((detail->>'rows')::int) FROM keys_guard.audit_log
 WHERE action = 'purge' AND target = 'public.flat' AND outcome = 'ok'}),
	'8000/50',
	'the purge audit records of public.flat add up to exactly 8 000 rows, in batches of at most 50');

###########################################################################
# audit_queue_size = 64, the worker busy (held in a batch), 10 000
# denials from four sessions: when the queue is full the denying sessions
# wait for room (docs/contract.md §10), and once the worker goes on every denial
# reaches audit_log; none is lost.
###########################################################################

$node->append_conf('postgresql.conf', "keys_guard.audit_queue_size = 64");
$node->restart;
is($node->safe_psql('postgres', "SHOW keys_guard.audit_queue_size"),
	'64', 'restarted with keys_guard.audit_queue_size = 64');
ok(poll_within(60, "SELECT (" . worker_pids_query('postgres') . ") <> ''"),
	'the worker runs after the restart');

# Hold the worker in its next batch of public.sentinel.
$holder = $node->background_psql('postgres', on_error_stop => 0);
$holder->query_safe(
	"BEGIN;\nSELECT relid FROM keys_guard.purge_stats WHERE relid = 'public.sentinel'::regclass FOR UPDATE;"
);
ok(poll_within(30, "SELECT (" . busy_worker_query('public.sentinel') . ") <> ''"),
	'the worker is busy: held inside a unit of work');

$log_offset = -s $node->logfile;
my @bursts;
foreach my $i (1 .. 4)
{
	my ($bout, $berr) = ('', '');
	# From a file: a harness feeds stdin only while it is pumped, and the
	# sessions must run on their own while the test polls.
	my $file = "${PostgreSQL::Test::Utils::tmp_check}/burst-small-$i.sql";
	PostgreSQL::Test::Utils::append_to_file($file, burst_script("burst-small-$i", $n_burst / 4));
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $api, '-f', $file ],
		'>', \$bout, '2>', \$berr);
	push @bursts, [ $h, \$berr ];
}

# The queue fills: the four sessions wait for room instead of going on.
ok( poll_within(
		20, q{
SELECT count(*) FROM pg_stat_activity
 WHERE usename = 'api' AND wait_event_type = 'Extension' AND wait_event = 'Extension'}, '4'),
	'burst, small queue, worker busy: the four denying sessions wait for room')
  or diag($node->safe_psql('postgres',
	"SELECT usename, backend_type, state, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity"));

# Let the worker go on: it writes what the queue holds, the sessions go on.
$holder->query_safe("ROLLBACK;");
$holder->quit;
my $denied = 0;
foreach my $b (@bursts)
{
	$b->[0]->finish;
	$denied += () = ${ $b->[1] } =~ /cross-tenant access denied/g;
}
is($denied, $n_burst, "burst, small queue: four sessions got $n_burst denials");

ok( poll_within(
		60, q{
SELECT count(*) FROM keys_guard.audit_log
 WHERE actor LIKE 'burst-small-%' AND outcome = 'denied'}, $n_burst),
	"burst, small queue: all $n_burst denials reach audit_log");
$log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/audit records? (were lost|not written|of this database did not reach)/,
	'burst, small queue: the server log reports no lost audit record');
my $logged = () = $log =~ /LOG:  keys_guard: \S+ denied/g;
is($logged, $n_burst, "burst, small queue: every denial is in the server log");

###########################################################################
# SIGHUP shortening keys_guard.purge_naptime: the sleeping worker purges
# within the new naptime, not after the old one.
###########################################################################

# Restarted with an hour of naptime, the worker's first purge is an hour
# away (it comes one naptime after the worker starts).
$node->safe_psql('postgres', "ALTER SYSTEM SET keys_guard.purge_naptime = 3600;");
$node->restart;
ok(poll_within(60, "SELECT (" . worker_pids_query('postgres') . ") <> ''"),
	'purge_naptime = 3600: the worker runs after the restart');
$node->safe_psql(
	'postgres', q{
BEGIN;
SET LOCAL keys_guard.bypass = on;
INSERT INTO public.flat SELECT g, 'a', 'late ' || g FROM generate_series(20001, 20100) g;
DELETE FROM public.flat WHERE id > 20000;
COMMIT;
});
$node->safe_psql('postgres',
	"ALTER SYSTEM SET keys_guard.purge_naptime = 1; SELECT pg_reload_conf();");
ok( poll_within(
		30, q{
SELECT rows_waiting || '/' || rows_purged FROM keys_guard.purge_status
 WHERE relation = 'public.flat'::regclass}, '0/8100'),
	'SIGHUP: with purge_naptime = 1 the sleeping worker purges the 100 new expired rows at once');

$node->stop;
done_testing();
