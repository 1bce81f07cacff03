
# Copyright and license: see keys_guard's README.
#
# No denial is ever lost (docs/contract.md §10): "when the shared queue is full, the
# denying backend waits for room (a flood slows the flooder; it never
# erases its traces), so a burst of 30 000 denials from one session all
# reach audit_log".  With keys_guard.audit_queue_size = 64, the smallest
# queue, so that the flood fills it many times over:
#   - 30 000 denials from one session, each caught by an exception block
#     of a PL/pgSQL loop (the denial rolls back only its subtransaction),
#     all reach keys_guard.audit_log, each exactly once;
#   - a denial of a second session during the flood reaches it too;
#   - the server log reports no audit record lost or left out;
#   - the wait never hangs a backend: while nothing drains the queue (the
#     worker waits for a lock on audit_log), a session that waits 30
#     seconds without any progress goes on, and so does one whose wait is
#     cancelled by statement_timeout; each record given up is in the
#     server log, and once the worker goes on audit_log holds every queued
#     record plus "audit_records_lost" rows whose counts add up to the
#     rest, so no gap is silent;
#   - a detail too long for a queue slot is kept (clipped), not replaced.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);

my $n = 30000;

my $node = PostgreSQL::Test::Cluster->new('flood');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard'
keys_guard.min_grace = 0
keys_guard.audit_queue_size = 64
max_worker_processes = 16
log_statement = none
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION keys_guard;
SELECT keys_guard.create_tenant('a');
SELECT keys_guard.create_tenant('b');
CREATE TABLE tenant_b.docs (id int PRIMARY KEY, body text);
CREATE ROLE api LOGIN;
GRANT keys_guard_gateway TO api;
GRANT SELECT ON ALL TABLES IN SCHEMA tenant_a, tenant_b TO api;
});

my $api = $node->connstr('postgres') . ' user=api';

sub poll_within
{
	my ($seconds, $query, $expected) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $seconds;
	return $node->poll_query_until('postgres', $query, $expected);
}

ok( poll_within(
		30,
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'keys_guard worker'"),
	'the keys_guard worker serves the database');

my $log_offset = -s $node->logfile;

# A DO block of $count denials by $actor, each caught: set a context for
# tenant a, read tenant b's table (42501), one request id per denial.
sub denial_block
{
	my ($actor, $count) = @_;
	return qq{
DO \$\$
DECLARE
	denied int := 0;
BEGIN
	FOR i IN 1 .. $count LOOP
		BEGIN
			PERFORM keys_guard.set_context('a', '$actor', '$actor-' || i);
			EXECUTE 'SELECT * FROM tenant_b.docs';
		EXCEPTION WHEN insufficient_privilege THEN
			denied := denied + 1;
		END;
	END LOOP;
	RAISE NOTICE 'denied % times', denied;
END
\$\$;
};
}

# The flood: one session, one DO block, $n cross-tenant SELECTs, each
# denied (42501) and caught.  Each has its own request id.
my $flood_sql = "SET application_name = 'flood';\n" . denial_block('flooder', $n);
my ($flood_out, $flood_err) = ('', '');
my $flood = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $api, '-c', $flood_sql ],
	'>', \$flood_out, '2>', \$flood_err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));

# While it runs, a second session is denied once.
ok( poll_within(
		30, q{
SELECT count(*) > 0 FROM keys_guard.audit_log WHERE actor = 'flooder'}),
	'the flood has begun to reach audit_log');
my ($ret, $out, $err) = $node->psql(
	'postgres', q{
BEGIN;
SELECT keys_guard.set_context('a', 'bystander', 'second-1') \g /dev/null
SELECT * FROM tenant_b.docs;
},
	connstr => $api);
like($err, qr/cross-tenant access denied/, 'the second session is denied during the flood');

$flood->finish;
like($flood_err, qr/denied $n times/, "the flooding session was denied $n times");

ok( poll_within(
		60,
		"SELECT count(*) FROM keys_guard.audit_log WHERE actor = 'flooder'", $n),
	"all $n denials of the flood reach keys_guard.audit_log");
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) || '/' || count(DISTINCT request_id) FROM keys_guard.audit_log
 WHERE actor = 'flooder' AND outcome = 'denied' AND target = 'tenant_b.docs'}),
	"$n/$n",
	"each of the $n denials is there exactly once, as a denial of tenant_b.docs");
ok( poll_within(
		10,
		"SELECT count(*) FROM keys_guard.audit_log WHERE request_id = 'second-1' AND outcome = 'denied'",
		'1'),
	'the denial of the second session during the flood reaches audit_log');

my @lost = grep { /audit records? (were|was) lost|not written to keys_guard\.audit_log/ }
  split /\n/, slurp_file($node->logfile, $log_offset);
is(scalar @lost, 0, 'the server log reports no audit record lost')
  or diag(join("\n", @lost[0 .. ($#lost < 5 ? $#lost : 5)]));

###########################################################################
# Nothing drains the queue: the worker is held on a lock on audit_log.
###########################################################################

my $holder = $node->background_psql('postgres');
$holder->query_safe("BEGIN; LOCK keys_guard.audit_log IN SHARE MODE;");
$log_offset = -s $node->logfile;

# A DO block of $count denials by $actor, each caught; $settings first.
sub denials
{
	my ($actor, $count, $settings) = @_;
	return $node->psql(
		'postgres', "$settings\n" . denial_block($actor, $count),
		connstr => $api);
}

# 100 denials: 64 fill the queue, the next waits until the queue has made
# no progress for 30 seconds, then it and the rest go to the server log
# only, counted, without waiting again.
my $t0 = time();
($ret, $out, $err) = denials('stalled', 100, '');
like($err, qr/denied 100 times/,
	'with nothing draining the queue, a session of 100 denials still ends');
my $waited = time() - $t0;
cmp_ok($waited, '>=', 25, "it waited for room first ($waited s)");

($ret, $out, $err) = denials('cancelled', 1, "SET statement_timeout = '1s';");
like($err, qr/canceling statement due to statement timeout/,
	'a session waiting for room can be cancelled (statement_timeout)');

@lost = grep { /audit record not written to keys_guard\.audit_log/ }
  split /\n/, slurp_file($node->logfile, $log_offset);
is(scalar @lost, 36,
	'the server log names each of the 36 records given up');

$holder->query_safe("ROLLBACK;");
$holder->quit;
ok( poll_within(
		30, q{
SELECT count(*) FILTER (WHERE actor = 'stalled')
       || '/' || coalesce(sum((detail->>'records')::int) FILTER (WHERE action = 'audit_records_lost'), 0)
  FROM keys_guard.audit_log}, '64/37'),
	'once the worker goes on: the 64 queued records, and audit_records_lost rows counting the other 37 (36 given up, 1 cancelled)'
);

# A detail too long for a slot: admin_context's reason, escaped.
my $reason = ('"' x 497) . 'end';    # 500 characters, twice as long escaped
$node->safe_psql(
	'postgres', qq{
BEGIN;
SELECT keys_guard.admin_context('long-reason', '$reason') \\g /dev/null
COMMIT;
});
ok( poll_within(
		10, q~
SELECT detail->>'truncated' = 'true' AND strpos(detail->>'text', '{"reason": "\"\"\"') = 1
  FROM keys_guard.audit_log WHERE action = 'admin_context' AND actor = 'long-reason'~),
	'a detail too long for the queue is kept, clipped, as a JSON string');

$node->stop;
done_testing();
