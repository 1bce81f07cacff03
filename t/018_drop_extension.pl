
# Copyright and license: see keys_guard's README.
#
# DROP EXTENSION while the database's worker is in a transaction on the
# extension's tables (README, "Removing keys_guard"):
#   - the worker is held writing an audit record: a session holds
#     keys_guard.audit_log in SHARE mode, and a refused API key queues a
#     record;
#   - DROP EXTENSION keys_guard starts and waits;
#   - the holder lets go.  The worker writes its record and commits; then
#     DROP EXTENSION goes on and succeeds.  Neither is chosen as a
#     deadlock's victim.
#
# Without the worker's lock on the extension (worker.c,
# begin_extension_xact()), DROP EXTENSION takes the registry table before
# audit_log, the worker takes audit_log and then the registry (keys_guard's
# executor hook reads it for the INSERT), and DROP EXTENSION fails with
# "deadlock detected".  deadlock_timeout is long enough for the holder to
# let go before DROP EXTENSION's one deadlock check, so that check sees
# the cycle: the failure is the one a user would see.
#
# ALTER EXTENSION keys_guard UPDATE takes the same lock first (utility.c,
# lock_extension_for_update()): with the worker held the same way, the
# update of a 1.2 installation (held by a cross-tenant denial's record:
# 1.2 has no API keys) waits on the extension's lock, then runs
# once the worker has committed.  A role that does not own the extension
# gets PostgreSQL's ownership error at once: it takes no lock first.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('drop_extension');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard'
keys_guard.purge_naptime = 3600
deadlock_timeout = '5s'
max_worker_processes = 16
});
$node->start;

# The checks run in another database: while DROP EXTENSION holds the
# extension's tables, every statement in its database that keys_guard's
# hooks look at waits for them.
sub poll_within
{
	my ($seconds, $query, $expected) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $seconds;
	return $node->poll_query_until('watch', $query, $expected);
}

my $worker_query = q{SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'keys_guard worker' AND datname = 'postgres'};

$node->safe_psql('postgres', 'CREATE DATABASE watch');
$node->safe_psql('postgres', 'CREATE EXTENSION keys_guard');
ok(poll_within(60, "SELECT count(*) = 1 FROM ($worker_query) w"),
	'the worker of the database is running');
my $worker = $node->safe_psql('watch', $worker_query);
my $audit_log = $node->safe_psql('postgres', q{SELECT 'keys_guard.audit_log'::regclass::oid});

# Hold the worker inside its transaction, about to write audit_log.
my $holder = $node->background_psql('postgres', on_error_stop => 0);
$holder->query_safe('BEGIN; LOCK TABLE keys_guard.audit_log IN SHARE MODE;');

my ($ret, $stdout, $stderr) =
  $node->psql('postgres', q{SELECT keys_guard.use_api_key('kg_not_a_key')});
like($stderr, qr/API key/, 'a refused key queues an audit record');
ok( poll_within(
		60,
		"SELECT count(*) = 1 FROM pg_locks WHERE pid = $worker AND NOT granted"
		  . " AND relation = $audit_log"),
	'the worker waits to write it into keys_guard.audit_log');

my $log_offset = -s $node->logfile;
my $dropper = $node->background_psql('postgres', on_error_stop => 0);
$dropper->query_until(qr/dropping/,
	"\\echo dropping\nDROP EXTENSION keys_guard;\nSELECT 'drop returned';\n");
ok( poll_within(
		60,
		q{SELECT count(*) = 1 FROM pg_stat_activity
 WHERE query LIKE 'DROP EXTENSION%' AND wait_event_type = 'Lock'}),
	'DROP EXTENSION waits');

$holder->query_safe('COMMIT;');
# psql goes on after an error: the SELECT answers either way.
pump_until($dropper->{run}, $dropper->{timeout}, \$dropper->{stdout}, qr/drop returned/);
my $drop_err = $dropper->{stderr};
unlike($drop_err, qr/ERROR/, 'DROP EXTENSION succeeds');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_extension WHERE extname = 'keys_guard'}),
	'0', 'the extension is gone');

my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/deadlock detected/, 'no deadlock, in DROP EXTENSION or in the worker');
ok(poll_within(60, "SELECT count(*) = 0 FROM ($worker_query) w"),
	'the worker leaves the database without keys_guard');

###########################################################################
# ALTER EXTENSION keys_guard UPDATE.
###########################################################################

# At 1.2 there are no API keys: a cross-tenant denial queues the record.
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION keys_guard VERSION '1.2';
SELECT keys_guard.create_tenant('a');
SELECT keys_guard.create_tenant('b');
CREATE TABLE tenant_b.docs (id int PRIMARY KEY, body text);
CREATE ROLE api LOGIN;
GRANT keys_guard_gateway TO api;
GRANT SELECT ON tenant_b.docs TO api;
});
ok(poll_within(60, "SELECT count(*) = 1 FROM ($worker_query) w"),
	'the worker of the database runs again (version 1.2 installed)');
$worker = $node->safe_psql('watch', $worker_query);
$audit_log = $node->safe_psql('postgres', q{SELECT 'keys_guard.audit_log'::regclass::oid});
$node->safe_psql('postgres', 'CREATE ROLE mallory LOGIN');

$holder->query_safe('BEGIN; LOCK TABLE keys_guard.audit_log IN SHARE MODE;');
($ret, $stdout, $stderr) = $node->psql(
	'postgres',
	q{BEGIN; SELECT keys_guard.set_context('a', 'x'); SELECT * FROM tenant_b.docs;},
	extra_params => [ '-U', 'api' ]);
like($stderr, qr/cross-tenant access denied/, 'update: a cross-tenant denial queues an audit record');
ok( poll_within(
		60,
		"SELECT count(*) = 1 FROM pg_locks WHERE pid = $worker AND NOT granted"
		  . " AND relation = $audit_log"),
	'update: the worker waits to write it into keys_guard.audit_log');

($ret, $stdout, $stderr) = $node->psql(
	'postgres',
	"SET lock_timeout = '3s'; ALTER EXTENSION keys_guard UPDATE",
	extra_params => [ '-U', 'mallory', '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/ERROR:  42501: must be owner of extension keys_guard/,
	"another role's ALTER EXTENSION keys_guard UPDATE fails its ownership check at once (42501), not on the lock");

$log_offset = -s $node->logfile;
my $updater = $node->background_psql('postgres', on_error_stop => 0);
$updater->query_until(qr/updating/,
	"\\echo updating\nALTER EXTENSION keys_guard UPDATE;\nSELECT 'update returned';\n");
ok( poll_within(
		60,
		q{SELECT count(*) = 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
 WHERE a.query LIKE 'ALTER EXTENSION%' AND l.locktype = 'object'
   AND l.classid = 'pg_extension'::regclass AND NOT l.granted}),
	"ALTER EXTENSION keys_guard UPDATE waits for the worker's transaction, on the extension's lock");

$holder->query_safe('COMMIT;');
pump_until($updater->{run}, $updater->{timeout}, \$updater->{stdout}, qr/update returned/);
unlike($updater->{stderr}, qr/ERROR/, 'ALTER EXTENSION keys_guard UPDATE succeeds');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'keys_guard'}),
	'1.3', 'the extension is at 1.3');
ok( poll_within(
		60,
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'keys_guard worker' AND datname = 'postgres'}),
	'the worker still serves the database');
$log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/deadlock detected/, 'update: no deadlock, in the update or in the worker');

$holder->quit;
$dropper->quit;
$updater->quit;
$node->stop;
done_testing();
