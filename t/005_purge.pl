
# Copyright and license: see keys_guard's README.
#
# The purge (docs/contract.md §7-§9): after a row's grace, and only then, the
# background worker removes it for real.
#   - tables guarded with grace '0', '1 second' and '1 day': exactly the
#     rows past hard_delete_at are purged, never a row within its grace
#     (also in a table whose grace was raised between two deletes);
#   - audit and payment tables are never purged: their soft-deleted rows
#     stay;
#   - a row whose real delete would cascade into a payment or audit row
#     (directly or through a standard child), or that a NO ACTION foreign
#     key still references, is skipped and reported (purge_status.
#     rows_skipped, LOG "purge of ... skips N expired rows"); the other
#     rows are purged;
#   - keys_guard.purge_status shows the backlog (rows_waiting) and the
#     work done (rows_purged);
#   - each purge is audited as counts (action 'purge', detail rows and
#     skipped), never with row data;
#   - a row locked by another transaction is skipped while the lock is
#     held, purged once it is released, and stays if the lock was a
#     restore that commits;
#   - keys_guard.purge_now(dry_run => true) counts without deleting;
#     keys_guard.purge_now() purges in the caller's transaction, so a
#     ROLLBACK undoes it.
#
# The server starts with keys_guard.database naming another database, so
# that no worker serves this one while the first part (purge_now) runs;
# then the worker is let in with a reload.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('purge');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard'
keys_guard.min_grace = 0
keys_guard.purge_naptime = 1
max_worker_processes = 16
keys_guard.database = 'not_this_database'
});
$node->start;

# A superuser session that sees every row, soft-deleted or not.
my $see_all = "SET keys_guard.bypass = on;\n";

# Run $sql in one transaction under a context for tenant $tenant.
sub as_tenant
{
	my ($tenant, $sql) = @_;
	return $node->safe_psql(
		'postgres', qq{
BEGIN;
SELECT keys_guard.set_context('$tenant', 'user_$tenant') \\g /dev/null
$sql
COMMIT;
});
}

# poll_query_until with a time budget of $seconds.
sub poll_within
{
	my ($seconds, $query, $expected) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $seconds;
	return $node->poll_query_until('postgres', $query, $expected);
}

# "ids" of a table, every row (live or soft-deleted), as a compact list.
sub ids_of
{
	my ($table, $where) = @_;
	$where //= 'true';
	return $node->safe_psql('postgres',
		$see_all
		  . "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM $table WHERE $where"
	);
}

sub range_list
{
	my ($from, $to) = @_;
	return join(',', $from .. $to);
}

# The keys_guard worker of database postgres, if any.
my $worker_pids = q{
SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '')
  FROM pg_stat_activity
 WHERE backend_type = 'keys_guard worker' AND datname = 'postgres'};

###########################################################################
# Schema and data, with no worker serving the database.
###########################################################################

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION keys_guard;
SELECT keys_guard.create_tenant('a');
SELECT keys_guard.create_tenant('b');

-- Expired at once: grace 0.
CREATE TABLE public.t_zero (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.t_zero', tenant_column => 'tenant_id', grace => interval '0');
-- A tenant-schema table whose rows expire after one second (guarded by the
-- event trigger with the default grace of the moment).
SET keys_guard.default_grace = '1s';
CREATE TABLE tenant_a.t_sec (id int PRIMARY KEY, payload text);
RESET keys_guard.default_grace;
-- Within their grace for a day.
CREATE TABLE public.t_day (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.t_day', tenant_column => 'tenant_id', grace => interval '1 day');
-- Grace 0 for a first delete, then raised to a day for a second one.
CREATE TABLE public.t_mixed (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.t_mixed', tenant_column => 'tenant_id', grace => interval '0');
-- Payment: soft-deleted, expired, never purged.
CREATE TABLE public.t_pay (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.t_pay', tenant_column => 'tenant_id', grace => interval '0',
                                class => 'payment');
-- Standard when its rows were deleted, audit afterwards: never purged.
CREATE TABLE public.t_aud (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.t_aud', tenant_column => 'tenant_id', grace => interval '0');
-- For purge_now.
CREATE TABLE public.t_now (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.t_now', tenant_column => 'tenant_id', grace => interval '0');
-- For a lock held by another session.
CREATE TABLE public.t_lock (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.t_lock', tenant_column => 'tenant_id', grace => interval '0');

-- A parent whose real delete would reach protected rows:
--   parent 1 <- par_pay (payment, ON DELETE CASCADE)
--   parent 2 <- par_aud (audit, no soft delete, ON DELETE CASCADE)
--   parent 3    no child: purged
--   parent 4 <- par_std (standard, CASCADE) <- par_std_pay (payment, CASCADE)
--   parent 5    no child: purged
--   parent 6 <- par_note (unguarded, NO ACTION)
--   parents 7-10 stay live.
CREATE TABLE public.parent (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.parent', tenant_column => 'tenant_id', grace => interval '0');
CREATE TABLE public.par_pay (id int PRIMARY KEY, tenant_id text NOT NULL,
                             parent_id int REFERENCES public.parent ON DELETE CASCADE);
SELECT keys_guard.protect_table('public.par_pay', tenant_column => 'tenant_id', grace => interval '0',
                                class => 'payment');
CREATE TABLE public.par_aud (id int PRIMARY KEY, tenant_id text NOT NULL,
                             parent_id int REFERENCES public.parent ON DELETE CASCADE);
SELECT keys_guard.protect_table('public.par_aud', tenant_column => 'tenant_id', soft_delete => false,
                                class => 'audit');
CREATE TABLE public.par_std (id int PRIMARY KEY, tenant_id text NOT NULL,
                             parent_id int REFERENCES public.parent ON DELETE CASCADE);
SELECT keys_guard.protect_table('public.par_std', tenant_column => 'tenant_id', grace => interval '0');
CREATE TABLE public.par_std_pay (id int PRIMARY KEY, tenant_id text NOT NULL,
                                 std_id int REFERENCES public.par_std ON DELETE CASCADE);
SELECT keys_guard.protect_table('public.par_std_pay', tenant_column => 'tenant_id', grace => interval '0',
                                class => 'payment');
CREATE TABLE public.par_note (id int PRIMARY KEY, parent_id int REFERENCES public.parent);
});

is($node->safe_psql('postgres', $worker_pids),
	'', 'keys_guard.database names another database: no worker serves this one');

# Rows: ids 1..N, tenants a and b alternating, a recognisable payload.
foreach my $t (
	[ 't_zero', 100 ], [ 't_day', 50 ], [ 't_mixed', 60 ], [ 't_pay', 10 ],
	[ 't_aud', 10 ], [ 't_now', 50 ], [ 't_lock', 5 ], [ 'parent', 10 ])
{
	my ($table, $n) = @$t;
	foreach my $tenant ('a', 'b')
	{
		my $parity = $tenant eq 'a' ? 1 : 0;
		as_tenant($tenant,
			"INSERT INTO public.$table (id, payload) SELECT g, 'secret-payload-$table-' || g"
			  . " FROM generate_series(1, $n) g WHERE g % 2 = $parity;");
	}
}
as_tenant('a',
	"INSERT INTO tenant_a.t_sec SELECT g, 'secret-payload-t_sec-' || g FROM generate_series(1, 50) g;"
);
# Children of the parent rows (all of tenant a or b like their parent).
as_tenant('a', q{
INSERT INTO public.par_pay (id, parent_id) VALUES (1, 1);
});
as_tenant('b', q{
INSERT INTO public.par_aud (id, parent_id) VALUES (2, 2);
INSERT INTO public.par_std (id, parent_id) VALUES (4, 4);
INSERT INTO public.par_std_pay (id, std_id) VALUES (4, 4);
INSERT INTO public.par_note (id, parent_id) VALUES (6, 6);
});

# Soft deletes, each tenant deleting its own rows.
foreach my $tenant ('a', 'b')
{
	as_tenant($tenant, q{
DELETE FROM public.t_zero WHERE id <= 60;
DELETE FROM public.t_day WHERE id <= 25;
DELETE FROM public.t_mixed WHERE id <= 30;
DELETE FROM public.t_pay WHERE id <= 6;
DELETE FROM public.t_aud WHERE id <= 4;
DELETE FROM public.t_now WHERE id <= 30;
DELETE FROM public.t_lock;
DELETE FROM public.parent WHERE id <= 6;
});
}
as_tenant('a', "DELETE FROM tenant_a.t_sec WHERE id <= 20;");

# Raise t_mixed's grace to a day, then delete more: those stay.  Make
# t_aud an audit table now that it has soft-deleted rows.
$node->safe_psql(
	'postgres', q{
SELECT keys_guard.protect_table('public.t_mixed', tenant_column => 'tenant_id', grace => interval '1 day');
SELECT keys_guard.protect_table('public.t_aud', tenant_column => 'tenant_id', grace => interval '0',
                                class => 'audit');
});
foreach my $tenant ('a', 'b')
{
	as_tenant($tenant, "DELETE FROM public.t_mixed WHERE id BETWEEN 31 AND 45;");
}

is( $node->safe_psql(
		'postgres', $see_all . q{
SELECT string_agg(format('%s:%s', relname, n), ',' ORDER BY relname COLLATE "C") FROM (
  SELECT 't_mixed' AS relname, count(*) FILTER (WHERE hard_delete_at = deleted_at)
                               || '/' || count(*) FILTER (WHERE hard_delete_at = deleted_at + interval '1 day') AS n
    FROM public.t_mixed
  UNION ALL
  SELECT 'par_std', count(*) FILTER (WHERE deleted_at IS NOT NULL)::text FROM public.par_std
  UNION ALL
  SELECT 'par_std_pay', count(*) FILTER (WHERE deleted_at IS NOT NULL)::text FROM public.par_std_pay
  UNION ALL
  SELECT 'par_pay', count(*) FILTER (WHERE deleted_at IS NOT NULL)::text FROM public.par_pay
) s}),
	'par_pay:1,par_std:1,par_std_pay:1,t_mixed:30/15',
	'setup: t_mixed has 30 rows deleted with grace 0 and 15 with a day; the soft delete cascaded into the children'
);

# t_sec's rows expire one second after their delete.
ok( poll_within(
		30,
		"SELECT rows_waiting FROM keys_guard.purge_status WHERE relation = 'tenant_a.t_sec'::regclass",
		'20'),
	'purge_status: the 20 rows of tenant_a.t_sec are waiting once their second of grace has passed'
);

my %initial_rows = (
	't_zero' => 100, 'tenant_a.t_sec' => 50, 't_day' => 50, 't_mixed' => 60,
	't_pay' => 10, 't_aud' => 10, 't_now' => 50, 't_lock' => 5, 'parent' => 10,
	'par_pay' => 1, 'par_aud' => 1, 'par_std' => 1, 'par_std_pay' => 1);
my $count_all = $see_all . join(
	"\nUNION ALL\n",
	map { "SELECT '$_', count(*) FROM " . ($_ =~ /\./ ? $_ : "public.$_") }
	  sort keys %initial_rows) . ";";
my $initial_counts = join("\n",
	map { "$_|$initial_rows{$_}" } sort keys %initial_rows);
is($node->safe_psql('postgres', $count_all),
	$initial_counts, 'setup: every table holds all its rows');

###########################################################################
# purge_now(dry_run => true): counts what a purge would do, changes
# nothing.
###########################################################################

my $log_offset = -s $node->logfile;

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(format('%s:%s:%s', relation, purged, skipped), ',' ORDER BY relation::text COLLATE "C")
  FROM keys_guard.purge_now(dry_run => true)}),
	join(',',
		'par_pay:0:0', 'par_std:0:1', 'par_std_pay:0:0', 'parent:2:4',
		't_aud:0:0', 't_day:0:0', 't_lock:5:0', 't_mixed:30:0', 't_now:30:0',
		't_pay:0:0', 't_zero:60:0', 'tenant_a.t_sec:20:0'),
	'purge_now(dry_run => true) counts, per table, the expired rows it would purge and those it would skip'
);
is($node->safe_psql('postgres', $count_all),
	$initial_counts, 'purge_now(dry_run => true) deleted nothing');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM keys_guard.purge_stats WHERE rows_purged > 0"),
	'0',
	'purge_now(dry_run => true) recorded no purge in purge_stats');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM keys_guard.audit_log WHERE action = 'purge'"),
	'0', 'purge_now(dry_run => true) audited no purge');

###########################################################################
# purge_now() runs in the caller's transaction: a ROLLBACK undoes it.
###########################################################################

is( $node->safe_psql(
		'postgres', $see_all . q{
BEGIN;
SELECT format('%s:%s:%s', relation, purged, skipped) FROM keys_guard.purge_now('public.t_now');
SELECT count(*) FROM public.t_now;
SELECT rows_purged FROM keys_guard.purge_stats WHERE relid = 'public.t_now'::regclass;
ROLLBACK;
SELECT count(*) FROM public.t_now;
SELECT count(*) FROM keys_guard.purge_stats WHERE relid = 'public.t_now'::regclass;
SELECT count(*) FROM keys_guard.audit_log WHERE action = 'purge';
}),
	"t_now:30:0\n20\n30\n50\n0\n0",
	'purge_now() in a transaction: 30 rows gone and counted inside it; after ROLLBACK all 50 rows are back, no count, no audit row'
);

# Committed: the expired rows go, the live ones stay.
is( $node->safe_psql(
		'postgres',
		"SELECT format('%s:%s:%s', relation, purged, skipped) FROM keys_guard.purge_now('public.t_now')"
	),
	't_now:30:0',
	'purge_now(\'public.t_now\') purges the 30 expired rows');
is(ids_of('public.t_now'), range_list(31, 50),
	'purge_now(): exactly the expired rows of public.t_now are gone');
is( $node->safe_psql(
		'postgres', q{
SELECT format('%s/%s/%s/%s', rows_deleted, rows_waiting, rows_purged, rows_skipped)
  FROM keys_guard.purge_status WHERE relation = 'public.t_now'::regclass}),
	'0/0/30/0',
	'purge_status after purge_now(): nothing deleted or waiting, 30 purged');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(format('%s|%s|%s', target, outcome, detail - 'request_ids'), ',')
  FROM keys_guard.audit_log WHERE action = 'purge'}),
	'public.t_now|ok|{"rows": 30, "skipped": 0}',
	'purge_now() is audited once, as counts (and the requests that deleted the rows)');
is( $node->safe_psql(
		'postgres',
		"SELECT format('%s:%s:%s', relation, purged, skipped) FROM keys_guard.purge_now('public.t_now')"
	),
	't_now:0:0',
	'purge_now() again purges nothing (idempotent)');
is( $node->safe_psql(
		'postgres',
		"SELECT format('%s:%s:%s', relation, purged, skipped) FROM keys_guard.purge_now('public.t_pay')"
	),
	't_pay:0:0',
	'purge_now() on a payment table purges nothing');
is(ids_of('public.t_pay', 'deleted_at IS NOT NULL'),
	range_list(1, 6),
	'purge_now() left the six expired soft-deleted payment rows in place');

###########################################################################
# The worker.  Before letting it in: another session holds a lock on an
# expired row of t_lock, and a restore of an expired-soon row of t_restore
# is in flight.
###########################################################################

my $locker = $node->background_psql('postgres', on_error_stop => 0);
is( $locker->query(
		"BEGIN;\nSET LOCAL keys_guard.bypass = on;\n"
		  . "SELECT id FROM public.t_lock WHERE id = 1 FOR UPDATE;"),
	'1',
	'another session locks the expired row 1 of public.t_lock (FOR UPDATE)');

$node->safe_psql(
	'postgres', q{
CREATE TABLE public.t_restore (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.t_restore', tenant_column => 'tenant_id',
                                grace => interval '3 seconds');
});
# The restoring session connects first, so that its restore follows the
# delete closely, well within the three seconds.
my $restorer = $node->background_psql('postgres', on_error_stop => 0);
as_tenant('a',
	"INSERT INTO public.t_restore (id, payload) SELECT g, 'secret-payload-t_restore-' || g FROM generate_series(1, 5) g;"
	  . "\nDELETE FROM public.t_restore;");
is( $restorer->query(
		"BEGIN;\nSELECT keys_guard.restore('public.t_restore', 1);"),
	'1',
	'a restore of row 1 of public.t_restore, within its grace, is in flight (not committed)');

$log_offset = -s $node->logfile;
$node->safe_psql('postgres',
	"ALTER SYSTEM SET keys_guard.database = ''; SELECT pg_reload_conf();");
ok(poll_within(60, "SELECT ($worker_pids) <> ''"),
	'after the reload, a keys_guard worker serves this database');

# Wait for the worker to have done its work: every table at its expected
# waiting/purged/skipped counts.  t_restore's rows expire three seconds
# after their delete.
my $status_query = q{
SELECT string_agg(format('%s:%s/%s/%s', relation, rows_waiting, rows_purged, rows_skipped), ','
                  ORDER BY relation::text COLLATE "C")
  FROM keys_guard.purge_status};
my $expected_status = join(',',
	'par_pay:1/0/0',     'par_std:1/0/1',
	'par_std_pay:1/0/0', 'parent:4/2/4',
	't_aud:4/0/0',       't_day:0/0/0',
	't_lock:1/4/0',      't_mixed:0/30/0',
	't_now:0/30/0',      't_pay:6/0/0',
	't_restore:1/4/0',   't_zero:0/60/0',
	'tenant_a.t_sec:0/20/0');
ok(poll_within(60, $status_query, $expected_status),
	'the worker purges every expired row it may, and only those (purge_status: waiting/purged/skipped per table)'
) or diag($node->safe_psql('postgres', $status_query));

# Exactly which rows are left.
is(ids_of('public.t_zero'), range_list(61, 100),
	'grace 0: the 60 expired rows of public.t_zero are gone, the 40 live rows stay');
is(ids_of('tenant_a.t_sec'), range_list(21, 50),
	'grace 1 second: the 20 expired rows of tenant_a.t_sec are gone, the live rows stay');
is(ids_of('public.t_day'), range_list(1, 50),
	'grace 1 day: every row of public.t_day is still there');
is(ids_of('public.t_day', 'deleted_at IS NOT NULL'),
	range_list(1, 25), 'grace 1 day: its 25 rows are still soft-deleted, within their grace');
is(ids_of('public.t_mixed'), range_list(31, 60),
	'raised grace: the 30 rows deleted with grace 0 are gone; the 15 within a day and the 15 live rows stay'
);
is(ids_of('public.t_mixed', 'deleted_at IS NOT NULL'),
	range_list(31, 45), 'raised grace: rows 31-45 are still soft-deleted');
is(ids_of('public.t_pay'), range_list(1, 10),
	'payment: every row of public.t_pay is still there');
is(ids_of('public.t_pay', 'deleted_at IS NOT NULL AND hard_delete_at < now()'),
	range_list(1, 6), 'payment: its six expired rows stay, soft-deleted');
is(ids_of('public.t_aud'), range_list(1, 10),
	'audit: every row of public.t_aud is still there');
is(ids_of('public.t_aud', 'deleted_at IS NOT NULL'),
	range_list(1, 4), 'audit: its four expired rows stay, soft-deleted');
is(ids_of('public.parent'), '1,2,4,6,7,8,9,10',
	'parent: rows 3 and 5 are purged; 1, 2, 4 (cascade into payment/audit rows) and 6 (referenced) are skipped'
);
is(ids_of('public.parent', 'deleted_at IS NOT NULL'),
	'1,2,4,6', 'parent: the skipped rows stay soft-deleted');
is( $node->safe_psql(
		'postgres', $see_all . q{
SELECT (SELECT count(*) FROM public.par_pay) || ',' || (SELECT count(*) FROM public.par_aud)
       || ',' || (SELECT count(*) FROM public.par_std) || ',' || (SELECT count(*) FROM public.par_std_pay)
       || ',' || (SELECT count(*) FROM public.par_note)}),
	'1,1,1,1,1',
	'the payment, audit, standard and unguarded children of the skipped parents are all there');

# The skips are reported in the server log.
my $log = slurp_file($node->logfile, $log_offset);
like(
	$log,
	qr/LOG:  keys_guard: purge of public\.parent skips 4 expired rows/,
	'the server log reports "purge of public.parent skips 4 expired rows"');
like(
	$log,
	qr/LOG:  keys_guard: purge of public\.par_std skips 1 expired rows/,
	'the server log reports "purge of public.par_std skips 1 expired rows"');
unlike($log, qr/purge of \S+ failed/, 'no purge batch failed');

# The audit log has the counts, never the rows.
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(format('%s:%s/%s', target, sum_rows, max_skipped), ',' ORDER BY target COLLATE "C") FROM (
  SELECT target, sum((detail->>'rows')::bigint) AS sum_rows, max((detail->>'skipped')::bigint) AS max_skipped
    FROM keys_guard.audit_log WHERE action = 'purge' AND outcome = 'ok'
     AND ((detail->>'rows')::bigint > 0 OR (detail->>'skipped')::bigint > 0)
   GROUP BY target) s}),
	join(',',
		'public.par_std:0/1', 'public.parent:2/4', 'public.t_lock:4/0',
		'public.t_mixed:30/0', 'public.t_now:30/0',
		'public.t_restore:4/0', 'public.t_zero:60/0',
		'tenant_a.t_sec:20/0'),
	'audit_log: the purges are recorded per table with the number of rows purged and skipped'
);
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM keys_guard.audit_log
 WHERE action = 'purge'
   AND NOT (detail ?& ARRAY['rows', 'skipped']
            AND (detail - 'rows' - 'skipped' - 'request_ids') = '{}'::jsonb
            AND coalesce(detail->>'request_ids', '') ~ '^([0-9a-f-]{36}(,|$))*$')}),
	'0',
	'audit_log: a purge record holds only the counts "rows" and "skipped" and the ids of the requests');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM keys_guard.audit_log a WHERE a::text LIKE '%secret-payload%'"),
	'0', 'audit_log holds no row data of the purged rows');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM keys_guard.audit_log
 WHERE action = 'purge' AND target IN ('public.t_pay', 'public.t_aud', 'public.t_day',
                                       'public.par_pay', 'public.par_std_pay')
   AND (detail->>'rows')::bigint > 0}),
	'0', 'audit_log: no purge of payment, audit or within-grace tables');

###########################################################################
# The locked row: skipped while locked, purged after the lock is gone.
###########################################################################

is(ids_of('public.t_lock'), '1',
	'a locked expired row is skipped: row 1 of public.t_lock is still there, its siblings are gone'
);
$locker->query("ROLLBACK;");
ok( poll_within(
		30,
		"SELECT format('%s/%s', rows_waiting, rows_purged) FROM keys_guard.purge_status WHERE relation = 'public.t_lock'::regclass",
		'0/5'),
	'once the lock is released, the worker purges the row (rows_purged 5)');
is(ids_of('public.t_lock'), '', 'public.t_lock: every expired row is gone');
$locker->quit;

###########################################################################
# The restore in flight: its row was skipped; it commits and the row
# stays, live, through later purge runs.
###########################################################################

is(ids_of('public.t_restore'), '1',
	'a row being restored is skipped: row 1 of public.t_restore is there, its expired siblings are gone'
);
is(ids_of('public.t_restore', 'deleted_at IS NULL'),
	'', 'until the restore commits, row 1 is still soft-deleted for everyone else');
$restorer->query("COMMIT;");
my $committed_at = $node->safe_psql('postgres', "SELECT clock_timestamp()");
ok( poll_within(
		30, qq{
SELECT last_run > '$committed_at' FROM keys_guard.purge_stats
 WHERE relid = 'public.t_restore'::regclass}),
	'the worker has run again on public.t_restore since the restore committed');
is(ids_of('public.t_restore', 'deleted_at IS NULL'),
	'1', 'the restored row 1 of public.t_restore is live and still there');
is( as_tenant('a', "SELECT string_agg(payload, ',') FROM public.t_restore;"),
	'secret-payload-t_restore-1',
	'tenant a reads its restored row');
is( $node->safe_psql(
		'postgres', q{
SELECT format('%s/%s/%s', rows_deleted, rows_waiting, rows_purged)
  FROM keys_guard.purge_status WHERE relation = 'public.t_restore'::regclass}),
	'0/0/4',
	'purge_status of public.t_restore: nothing waiting, the four siblings purged');
$restorer->quit;

# Nothing within its grace went in all that time.
is(ids_of('public.t_day'), range_list(1, 50),
	'after all purge runs, public.t_day still has all its rows');
is(ids_of('public.t_mixed', 'deleted_at IS NOT NULL'),
	range_list(31, 45),
	'after all purge runs, the within-grace rows of public.t_mixed are still there');

$node->stop;
done_testing();
