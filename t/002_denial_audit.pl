
# Copyright and license: see keys_guard's README.
#
# Denials are evidence (docs/contract.md §6, §10):
#   - every denial is written to the server log at once, as a LOG line
#     "keys_guard: ... denied" whose DETAIL gives tenant, actor, request id
#     and relation, and never a secret from the query text;
#   - every denial reaches keys_guard.audit_log within 2 seconds, although
#     the denied statement's transaction rolled back;
#   - the background worker that writes them is visible in pg_stat_activity;
#   - a burst of denials is recorded completely, each exactly once.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $secret = 'sk_live_SECRET123';

my $node = PostgreSQL::Test::Cluster->new('denial');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'keys_guard'\nkeys_guard.min_grace = 0");
$node->start;

# Schema, as a migration runs it: no context, superuser.  The API server
# logs in as "api", a member of keys_guard_gateway with ordinary table
# privileges everywhere, so only keys_guard stands between it and tenant b.
$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION keys_guard;
SELECT keys_guard.create_tenant('a');
SELECT keys_guard.create_tenant('b');
CREATE TABLE tenant_a.docs (id int PRIMARY KEY, body text);
CREATE TABLE tenant_b.docs (id int PRIMARY KEY, body text);
CREATE ROLE api LOGIN;
GRANT keys_guard_gateway TO api;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenant_a, tenant_b TO api;
-- Direct connections with session-wide contexts (is_local => false).
ALTER ROLE api SET keys_guard.allow_session_context = on;
});
$node->safe_psql(
	'postgres', qq{
BEGIN;
SELECT keys_guard.set_context('b', 'seed') \\g /dev/null
INSERT INTO tenant_b.docs VALUES (1, '$secret');
COMMIT;
});

my $api = $node->connstr('postgres') . ' user=api';

# The background worker that writes audit records serves this database.
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity"
		  . " WHERE datname = 'postgres'"
		  . " AND (backend_type = 'keys_guard worker'"
		  . " OR application_name = 'keys_guard worker')"),
	'the keys_guard worker of this database is in pg_stat_activity');

# poll_query_until with a time budget of $seconds instead of the default
# (minutes): a denial that never reaches the audit log fails quickly.
sub poll_within
{
	my ($seconds, $query) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $seconds;
	return $node->poll_query_until('postgres', $query);
}

# The keys_guard LOG message of one denial, from the LOG line up to the
# ERROR the same backend raises next: the DETAIL and anything else
# PostgreSQL attached to the LOG message (a STATEMENT line, for instance)
# are in between.
sub denial_log_message
{
	my ($log, $request_marker) = @_;
	my @lines = split /\n/, $log;
	for (my $i = 0; $i < @lines; $i++)
	{
		next unless $lines[$i] =~ /^.*?\[(\d+)\] .*LOG:  keys_guard: /;
		my $pid = $1;
		my $msg = $lines[$i];
		for (my $j = $i + 1; $j < @lines; $j++)
		{
			last if $lines[$j] =~ /\[$pid\] .*(ERROR|LOG|WARNING|FATAL):  /;
			$msg .= "\n" . $lines[$j];
		}
		return $msg if !defined $request_marker || $msg =~ /$request_marker/;
	}
	return undef;
}

###########################################################################
# Cross-tenant SELECT under a context for tenant a, with a secret in the
# query text.  The transaction also inserted a row, which rolls back.
###########################################################################

my $max_id =
  $node->safe_psql('postgres', "SELECT coalesce(max(id), 0) FROM keys_guard.audit_log");
my $log_offset = -s $node->logfile;

my $t0 = time();
my ($ret, $out, $err) = $node->psql(
	'postgres', qq{
\\set VERBOSITY verbose
BEGIN;
SELECT keys_guard.set_context('a', 'user_456', 'req-cross-1') \\g /dev/null
INSERT INTO tenant_a.docs VALUES (1, 'written before the denial');
SELECT * FROM tenant_b.docs WHERE body = '$secret';
COMMIT;
},
	connstr => $api);

isnt($ret, 0, 'cross-tenant SELECT fails');
is($out, '', 'cross-tenant SELECT returns no rows');
like(
	$err,
	qr/ERROR:  42501: cross-tenant access denied/,
	'cross-tenant SELECT is a 42501 "cross-tenant access denied"');
like($err, qr/DETAIL:  [^\n]*tenant_b\.docs[^\n]*"b"[^\n]*"a"/,
	'the client DETAIL names the relation and both tenants');

# "At once": the LOG line is in the server log as soon as the statement
# has failed, before any background work.
my $log = slurp_file($node->logfile, $log_offset);
my $msg = denial_log_message($log, 'req-cross-1');
ok(defined $msg, 'the denial is in the server log at once')
  or diag("server log since offset:\n$log");
$msg //= '';
like($msg, qr/LOG:  keys_guard: \S+ denied/,
	'it is a LOG line "keys_guard: ... denied"');
like($msg, qr/DETAIL:  [^\n]*tenant=a\b/, 'the DETAIL gives the tenant');
like($msg, qr/DETAIL:  [^\n]*actor=user_456\b/, 'the DETAIL gives the actor');
like($msg, qr/DETAIL:  [^\n]*request_id=req-cross-1\b/,
	'the DETAIL gives the request id');
like($msg, qr/DETAIL:  [^\n]*relation=tenant_b\.docs\b/,
	'the DETAIL gives the schema-qualified relation');
# The server log as a whole does contain the secret: the test cluster runs
# with log_statement = all ("LOG:  statement: ..."), and PostgreSQL logs the
# failing statement after the ERROR (log_min_error_statement = error).
# Those lines are PostgreSQL's own; keys_guard's LOG message, DETAIL and
# anything attached to it, must not repeat the query text.
unlike($msg, qr/SECRET123/,
	'the keys_guard LOG message and DETAIL do not contain the secret');
unlike($msg, qr/STATEMENT:/,
	'the keys_guard LOG message carries no STATEMENT line');

# Within 2 seconds in keys_guard.audit_log, although the transaction
# rolled back.
ok( poll_within(
		10, qq{
SELECT count(*) >= 1 FROM keys_guard.audit_log
 WHERE id > $max_id AND request_id = 'req-cross-1'}),
	'the cross-tenant denial reaches keys_guard.audit_log');
my $elapsed = time() - $t0;
cmp_ok($elapsed, '<', 2.0,
	'the cross-tenant denial reaches keys_guard.audit_log within 2 seconds')
  or diag(sprintf('took %.3f s', $elapsed));

is( $node->safe_psql(
		'postgres', qq{
SELECT concat_ws('|', outcome, tenant, actor, request_id, target)
  FROM keys_guard.audit_log
 WHERE id > $max_id AND request_id = 'req-cross-1'}),
	'denied|a|user_456|req-cross-1|tenant_b.docs',
	'audit row: outcome denied, tenant, actor, request id, schema-qualified target'
);
is( $node->safe_psql(
		'postgres', q{
BEGIN;
SELECT keys_guard.set_context('a', 'check') \g /dev/null
SELECT count(*) FROM tenant_a.docs;
COMMIT;
}),
	'0',
	'the denied transaction rolled back (its INSERT is gone)');

###########################################################################
# SELECT without a context.
###########################################################################

$max_id =
  $node->safe_psql('postgres', "SELECT coalesce(max(id), 0) FROM keys_guard.audit_log");
$log_offset = -s $node->logfile;

$t0 = time();
($ret, $out, $err) = $node->psql(
	'postgres', qq{
\\set VERBOSITY verbose
SELECT * FROM tenant_a.docs WHERE body = '$secret';
},
	connstr => $api);

is($out, '', 'no-context SELECT returns no rows');
like(
	$err,
	qr/ERROR:  42501: no tenant context/,
	'no-context SELECT is a 42501 "no tenant context"');
like($err, qr/HINT:  [^\n]*keys_guard\.set_context/,
	'the no-context hint names keys_guard.set_context');

$log = slurp_file($node->logfile, $log_offset);
$msg = denial_log_message($log, 'relation=tenant_a\.docs');
ok(defined $msg, 'the no-context denial is in the server log at once')
  or diag("server log since offset:\n$log");
$msg //= '';
like($msg, qr/LOG:  keys_guard: \S+ denied/,
	'no context: LOG line "keys_guard: ... denied"');
like($msg, qr/DETAIL:  [^\n]*tenant=[^\n]*actor=[^\n]*request_id=[^\n]*relation=tenant_a\.docs\b/,
	'no context: the DETAIL gives tenant, actor, request id and relation');
unlike($msg, qr/SECRET123/,
	'no context: the keys_guard LOG message does not contain the secret');

ok( poll_within(
		10, qq{
SELECT count(*) >= 1 FROM keys_guard.audit_log
 WHERE id > $max_id AND outcome = 'denied' AND target = 'tenant_a.docs'}),
	'the no-context denial reaches keys_guard.audit_log');
$elapsed = time() - $t0;
cmp_ok($elapsed, '<', 2.0,
	'the no-context denial reaches keys_guard.audit_log within 2 seconds')
  or diag(sprintf('took %.3f s', $elapsed));
is( $node->safe_psql(
		'postgres', qq{
SELECT concat_ws('|', outcome, coalesce(tenant, '<null>'), target)
  FROM keys_guard.audit_log
 WHERE id > $max_id AND target = 'tenant_a.docs'}),
	'denied|<null>|tenant_a.docs',
	'no-context audit row: outcome denied, no tenant, schema-qualified target');
is( $node->safe_psql(
		'postgres', qq{
SELECT coalesce(actor, detail->>'role')
  FROM keys_guard.audit_log
 WHERE id > $max_id AND target = 'tenant_a.docs'}),
	'api',
	'no-context audit row names who tried: the database role');

# docs/contract.md §10: the audit log never contains a secret.
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM keys_guard.audit_log a WHERE a::text LIKE '%SECRET123%'"),
	'0',
	'keys_guard.audit_log does not contain the secret from the query text');

###########################################################################
# A burst of 2000 denials from one session, each its own statement (a
# denial aborts the transaction, so a DO block could record only one).
# Every one reaches audit_log, exactly once.
###########################################################################

my $n = 2000;
$max_id =
  $node->safe_psql('postgres', "SELECT coalesce(max(id), 0) FROM keys_guard.audit_log");
$log_offset = -s $node->logfile;

my $script = "\\set ON_ERROR_STOP off\n\\set VERBOSITY terse\n";
for my $i (1 .. $n)
{
	$script .= "SELECT keys_guard.set_context('a', 'burst', 'burst-$i', is_local => false) \\g /dev/null\n";
	$script .= "SELECT * FROM tenant_b.docs;\n";
}
($ret, $out, $err) =
  $node->psql('postgres', $script, connstr => $api, on_error_stop => 0);
my $burst_end = time();
my $client_denials = () = $err =~ /cross-tenant access denied/g;
is($client_denials, $n, "the burst session got $n cross-tenant denials");
is($out, '', 'the burst returned no rows');

$log = slurp_file($node->logfile, $log_offset);
# The denial's own detail (every line of the session also carries the
# request in a "keys_guard: request_id=..." line: README, "Every log line
# has its request").
my $log_denials = () = $log =~ /DETAIL:  reason=[^\n]*request_id=burst-\d+ /g;
is($log_denials, $n, "all $n burst denials are in the server log");

ok( poll_within(
		30, qq{
SELECT count(*) >= $n FROM keys_guard.audit_log
 WHERE id > $max_id AND request_id LIKE 'burst-%'}),
	"the burst reaches keys_guard.audit_log");
$elapsed = time() - $burst_end;
cmp_ok($elapsed, '<', 2.0,
	'the whole burst is in keys_guard.audit_log within 2 seconds of the last denial')
  or diag(sprintf('took %.3f s', $elapsed));
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) || '/' || count(DISTINCT request_id)
  FROM keys_guard.audit_log
 WHERE id > $max_id AND request_id LIKE 'burst-%'
   AND outcome = 'denied' AND tenant = 'a' AND actor = 'burst'
   AND target = 'tenant_b.docs'}),
	"$n/$n",
	"all $n burst denials are in audit_log, each exactly once");

# Nothing the worker writes later changes that: a marker denial after the
# burst is written after every earlier record.
($ret, $out, $err) = $node->psql(
	'postgres', q{
BEGIN;
SELECT keys_guard.set_context('a', 'marker', 'marker-1') \g /dev/null
SELECT * FROM tenant_b.docs;
},
	connstr => $api);
ok( poll_within(
		10,
		"SELECT count(*) >= 1 FROM keys_guard.audit_log WHERE request_id = 'marker-1'"),
	'a later denial is recorded');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM keys_guard.audit_log
 WHERE id > $max_id AND request_id LIKE 'burst-%'}),
	$n,
	"still exactly $n burst records");

$node->stop;
done_testing();
