
# Copyright and license: see keys_guard's README.
#
# The worker starts with the extension (docs/contract.md §9): "a database's worker
# is running within seconds of CREATE EXTENSION there, with no restart,
# reload or other event needed".  In a database created after the server
# started:
#   - CREATE EXTENSION alone brings a "keys_guard worker" for it into
#     pg_stat_activity, and that worker purges a row whose grace is over
#     and drops a tenant whose grace is over, with no reload, denial or
#     other event to wake the launcher;
#   - after DROP EXTENSION the worker leaves; CREATE EXTENSION again
#     brings it back, and it purges again;
#   - ALTER EXTENSION ... UPDATE from 1.1: the worker of the updated
#     database is running and purges;
#   - CREATE EXTENSION in a transaction that is still open when the
#     launcher first looks at the database (its worker finds nothing and
#     leaves): the commit alone brings the worker.
# No step waits a fixed time: each polls for its condition with a budget.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker_start');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard'
keys_guard.min_grace = 0
keys_guard.purge_naptime = 1
max_worker_processes = 16
log_min_messages = debug1
});
$node->start;
my $log_offset = 0;

# poll_query_until in database $db with a budget of $seconds.
sub poll_within
{
	my ($seconds, $db, $query, $expected) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $seconds;
	return $node->poll_query_until($db, $query, $expected);
}

sub worker_running
{
	my ($db) = @_;
	return "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = '$db'"
	  . " AND backend_type = 'keys_guard worker'";
}

# A guarded table with one row deleted with a grace of 0 (expired at once)
# and one live row, and a tenant deleted with a grace of 0.
sub expired_work
{
	my ($db) = @_;
	$node->safe_psql(
		$db, q{
SELECT keys_guard.create_tenant('gone');
CREATE TABLE IF NOT EXISTS public.notes (id int PRIMARY KEY, tenant_id text NOT NULL);
SELECT keys_guard.protect_table('public.notes', tenant_column => 'tenant_id', grace => interval '0');
BEGIN;
SELECT keys_guard.set_context('gone', 'tester') \g /dev/null
INSERT INTO public.notes VALUES (1, 'gone'), (2, 'gone');
DELETE FROM public.notes WHERE id = 1;
COMMIT;
SELECT count(*) FROM keys_guard.delete_tenant('gone', grace => interval '0');
});
}

my $purged = "SELECT coalesce(sum(rows_purged), 0) FROM keys_guard.purge_stats WHERE relid = 'public.notes'::regclass";
my $rows_left = "SET keys_guard.bypass = on \\g /dev/null\nSELECT string_agg(id::text, ',' ORDER BY id) FROM public.notes";
my $schema_gone = "SELECT count(*) = 0 FROM pg_namespace WHERE nspname = 'tenant_gone'";

###########################################################################
# A fresh database: CREATE DATABASE, CREATE EXTENSION, nothing else.
###########################################################################

# The launcher has looked at every database at least once and found no
# keys_guard anywhere (the state a real cluster is in before the
# extension is installed).
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
ok( poll_within(
		30, 'postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'keys_guard launcher'"),
	'the launcher is running');

$node->safe_psql('fresh', 'CREATE EXTENSION keys_guard');
ok(poll_within(10, 'fresh', worker_running('fresh')),
	'within seconds of CREATE EXTENSION, a keys_guard worker serves the new database');

expired_work('fresh');
ok(poll_within(15, 'fresh', $purged, '1'),
	'the row whose grace is over is purged, with no other event');
is($node->safe_psql('fresh', $rows_left), '2', 'the live row stays');
ok(poll_within(15, 'fresh', $schema_gone),
	'the tenant whose grace is over is dropped, with no other event');

###########################################################################
# DROP EXTENSION, then CREATE EXTENSION again.
###########################################################################

$node->safe_psql('fresh',
	'SELECT keys_guard.release_all(confirm => true); DROP EXTENSION keys_guard; DROP TABLE public.notes');
ok(poll_within(15, 'fresh', worker_running('fresh'), 'f'),
	'after DROP EXTENSION the worker of the database leaves');

$node->safe_psql('fresh', 'CREATE EXTENSION keys_guard');
ok(poll_within(10, 'fresh', worker_running('fresh')),
	'CREATE EXTENSION again: the worker is back within seconds');
expired_work('fresh');
ok(poll_within(15, 'fresh', $purged, '1'),
	'after CREATE EXTENSION again, the worker purges an expired row');
ok(poll_within(15, 'fresh', $schema_gone),
	'after CREATE EXTENSION again, the worker drops an expired tenant');

###########################################################################
# ALTER EXTENSION ... UPDATE in another fresh database.
###########################################################################

$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
$node->safe_psql('upgraded', "CREATE EXTENSION keys_guard VERSION '1.1'");
$node->safe_psql('upgraded', 'ALTER EXTENSION keys_guard UPDATE');
is($node->safe_psql('upgraded', "SELECT extversion FROM pg_extension WHERE extname = 'keys_guard'"),
	'1.3', 'ALTER EXTENSION keys_guard UPDATE reaches 1.3');
ok(poll_within(10, 'upgraded', worker_running('upgraded')),
	'after ALTER EXTENSION ... UPDATE a keys_guard worker serves the database');
expired_work('upgraded');
ok(poll_within(15, 'upgraded', $purged, '1'),
	'after ALTER EXTENSION ... UPDATE the worker purges an expired row');
ok(poll_within(15, 'upgraded', $schema_gone),
	'after ALTER EXTENSION ... UPDATE the worker drops an expired tenant');

###########################################################################
# CREATE EXTENSION in a migration's transaction that stays open while the
# launcher looks at the new database: the worker it starts then finds no
# keys_guard (not committed yet) and leaves.  The commit alone must bring
# a worker back.
###########################################################################

$log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'CREATE DATABASE migrated');
my $mig_oid = $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = 'migrated'");
my $migration = $node->background_psql('migrated');
$migration->query_safe("BEGIN; CREATE EXTENSION keys_guard;");
# A reload makes the launcher look at every database again, this one
# included, while the transaction is open (log_min_messages = debug1: the
# postmaster logs each worker that exits).
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok( $node->wait_for_log(
		qr/unregistering background worker "keys_guard worker for database $mig_oid"/,
		$log_offset),
	'while CREATE EXTENSION is not committed, a worker looks at the database and leaves');
$migration->query_safe("COMMIT;");
$migration->quit;
ok(poll_within(10, 'migrated', worker_running('migrated')),
	'once the migration commits, a keys_guard worker serves the database');
expired_work('migrated');
ok(poll_within(15, 'migrated', $purged, '1'),
	'and purges an expired row, with no other event');

$node->stop;
done_testing();
