
# Copyright and license: see keys_guard's README.
#
# Tenant lifecycle (docs/contract.md §9, §4, §6, §8, §13):
#   - delete_tenant(id, dry_run => true) previews tables and rows and
#     changes nothing;
#   - delete_tenant(id): status 'deleted', grace starts; set_context for it
#     is refused (42501 'is deleted'); a context set earlier in a session
#     is denied on access (42501, detail says deleted); the data stays;
#     create_tenant of it is 55000 naming restore_tenant;
#   - a second delete_tenant returns the same hard_delete_at with a NOTICE
#     'already deleted', whatever grace it is given, and has no second
#     effect;
#   - restore_tenant within the grace brings access back; a second one is a
#     no-op with a NOTICE;
#   - the worker leaves a deleted tenant alone within its grace; after a
#     grace of 0 / 1 second it drops schema tenant_<id>, first moving its
#     audit and payment tables to keys_guard_archive as <id>__<table> with
#     their rows intact; status 'purged'; audit_log 'drop_tenant';
#   - restore_tenant after the grace: 55000.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('tenants');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard'
keys_guard.min_grace = 0
keys_guard.purge_naptime = 1
max_worker_processes = 16
});
$node->start;

my $see_all = "SET keys_guard.bypass = on;\n";
my $verbose = "\\set VERBOSITY verbose\n";
my $api = $node->connstr('postgres') . ' user=api';

sub poll_within
{
	my ($seconds, $query, $expected) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $seconds;
	return $node->poll_query_until('postgres', $query, $expected);
}

# Run $sql as the API role under a context for $tenant; returns ($ret,
# $out, $err).
sub as_api
{
	my ($tenant, $sql) = @_;
	return $node->psql(
		'postgres', $verbose . qq{
BEGIN;
SELECT keys_guard.set_context('$tenant', 'user_$tenant') \\g /dev/null
$sql
COMMIT;
},
		connstr => $api);
}

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION keys_guard;
SELECT keys_guard.create_tenant('acme');
SELECT keys_guard.create_tenant('globex');
SELECT keys_guard.create_tenant('initech');
CREATE TABLE tenant_acme.docs (id int PRIMARY KEY, body text);
CREATE TABLE tenant_acme.ledger (id int PRIMARY KEY, amount int);
SELECT keys_guard.protect_table('tenant_acme.ledger', class => 'payment');
CREATE TABLE tenant_acme.events (id int PRIMARY KEY, what text);
SELECT keys_guard.protect_table('tenant_acme.events', class => 'audit');
CREATE TABLE tenant_globex.docs (id int PRIMARY KEY, body text);
CREATE TABLE tenant_initech.notes (id int PRIMARY KEY, body text);
-- A table the worker visits on every run (its purge_stats.last_run).
CREATE TABLE public.sentinel (id int PRIMARY KEY, tenant_id text NOT NULL);
SELECT keys_guard.protect_table('public.sentinel', tenant_column => 'tenant_id', grace => interval '0');
CREATE ROLE api LOGIN;
GRANT keys_guard_gateway TO api;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenant_acme, tenant_globex, tenant_initech TO api;
-- Direct connections with session-wide contexts (is_local => false).
ALTER ROLE api SET keys_guard.allow_session_context = on;
});
my ($ret, $out, $err) = as_api(
	'acme', q{
INSERT INTO tenant_acme.docs SELECT g, 'doc ' || g FROM generate_series(1, 5) g;
INSERT INTO tenant_acme.ledger SELECT g, 100 * g FROM generate_series(1, 3) g;
INSERT INTO tenant_acme.events SELECT g, 'event ' || g FROM generate_series(1, 4) g;
DELETE FROM tenant_acme.docs WHERE id = 5;
DELETE FROM tenant_acme.ledger WHERE id = 3;
});
is($ret, 0, 'setup: tenant acme has docs, a ledger (payment) and events (audit)') or diag($err);
as_api('globex', "INSERT INTO tenant_globex.docs VALUES (1, 'g1'), (2, 'g2');");
as_api('initech', "INSERT INTO tenant_initech.notes VALUES (1, 'n1'), (2, 'n2'), (3, 'n3');");

# Everything of acme's tables, soft-deleted rows and their marks included.
my $acme_rows = $see_all . q{
SELECT 'docs', string_agg(concat_ws('|', id, body, deleted_at, hard_delete_at, deleted_by), ',' ORDER BY id) FROM tenant_acme.docs;
SELECT 'ledger', string_agg(concat_ws('|', id, amount, deleted_at, hard_delete_at, deleted_by), ',' ORDER BY id) FROM tenant_acme.ledger;
SELECT 'events', string_agg(concat_ws('|', id, what, deleted_at, hard_delete_at, deleted_by), ',' ORDER BY id) FROM tenant_acme.events;
};
my $acme_before = $node->safe_psql('postgres', $acme_rows);
my $tenant_row = q{
SELECT concat_ws('|', status, deleted_at IS NOT NULL, hard_delete_at) FROM keys_guard.tenants WHERE id = 'acme'};
my $audit_count = q{
SELECT count(*) FROM keys_guard.audit_log WHERE action = '%s' AND target = 'tenant_acme'};

# A session of the API role that set acme's context for the session.
my $session = $node->background_psql('postgres', on_error_stop => 0,
	extra_params => [ '-U', 'api' ]);
$session->query_safe("\\set VERBOSITY verbose");
$session->query_safe(
	"SELECT keys_guard.set_context('acme', 'long_lived', is_local => false);");
is($session->query_safe("SELECT count(*) FROM tenant_acme.docs;"),
	'4', 'a session with a session-wide acme context reads its 4 live docs');

###########################################################################
# delete_tenant(dry_run => true): a preview, nothing changes.
###########################################################################

is( $node->safe_psql(
		'postgres', q{
SELECT concat_ws('|', tenant, status, relation, rows, hard_delete_at = now() + interval '30 days')
  FROM keys_guard.delete_tenant('acme', dry_run => true) ORDER BY relation::text COLLATE "C"}),
	"acme|would be deleted|tenant_acme.docs|5|t\n"
	  . "acme|would be deleted|tenant_acme.events|4|t\n"
	  . "acme|would be deleted|tenant_acme.ledger|3|t",
	'delete_tenant(dry_run => true) previews every table with its rows and hard_delete_at = now() + default grace'
);
is($node->safe_psql('postgres', $tenant_row),
	'active|f', 'after the dry run the tenant is still active');
is($node->safe_psql('postgres', sprintf($audit_count, 'delete_tenant')),
	'0', 'the dry run is not a delete_tenant in audit_log');
is($session->query_safe("SELECT count(*) FROM tenant_acme.docs;"),
	'4', 'after the dry run the session still reads acme');
is($node->safe_psql('postgres', $acme_rows),
	$acme_before, 'after the dry run every row of acme is unchanged');

###########################################################################
# delete_tenant: deleted, every access denied, data kept.
###########################################################################

my $deleted = $node->safe_psql(
	'postgres', q{
SELECT concat_ws('|', tenant, status, relation, rows, hard_delete_at = now() + interval '30 days')
  FROM keys_guard.delete_tenant('acme') ORDER BY relation::text COLLATE "C"});
is( $deleted,
	"acme|deleted|tenant_acme.docs|5|t\n"
	  . "acme|deleted|tenant_acme.events|4|t\n"
	  . "acme|deleted|tenant_acme.ledger|3|t",
	'delete_tenant(\'acme\') returns status deleted, its tables and hard_delete_at = now() + 30 days'
);
my $hard_delete_at = $node->safe_psql('postgres',
	"SELECT hard_delete_at FROM keys_guard.tenants WHERE id = 'acme'");
is($node->safe_psql('postgres', $tenant_row),
	"deleted|t|$hard_delete_at",
	'keys_guard.tenants: acme is deleted, with deleted_at and hard_delete_at');
is($node->safe_psql('postgres', sprintf($audit_count, 'delete_tenant')),
	'1', 'audit_log has one delete_tenant record for acme');

($ret, $out, $err) = as_api('acme', "SELECT count(*) FROM tenant_acme.docs;");
isnt($ret, 0, 'set_context for a deleted tenant fails');
like($err, qr/ERROR:  42501: tenant "acme" is deleted/,
	'set_context for a deleted tenant: 42501 \'tenant "acme" is deleted\'');
is($out, '', 'no row is returned');

$session->{stderr} = '';
my ($s_out, $s_failed) = $session->query("SELECT count(*) FROM tenant_acme.docs;");
is($s_out, '', 'the session with an earlier acme context reads nothing');
like(
	$session->{stderr},
	qr/ERROR:  42501: access to a deleted tenant denied/,
	'the session with an earlier acme context is denied: 42501 "access to a deleted tenant denied"'
);
like($session->{stderr}, qr/DETAIL:  [^\n]*deleted/,
	'the denial\'s DETAIL says the tenant is deleted');
$session->{stderr} = '';

($ret, $out, $err) = $node->psql('postgres',
	$verbose . "SELECT keys_guard.create_tenant('acme');");
like($err, qr/ERROR:  55000: /,
	'create_tenant of a tenant pending deletion is a 55000 error');
like($err, qr/HINT:  [^\n]*keys_guard\.restore_tenant/,
	'its hint names keys_guard.restore_tenant');

($ret, $out, $err) =
  as_api('globex', "SELECT count(*) FROM tenant_globex.docs;");
is($out, '2', 'another tenant is not affected') or diag($err);

# The worker runs while acme is deleted, within its 30 days: nothing goes.
my $t0 = $node->safe_psql('postgres', "SELECT clock_timestamp()");
ok( poll_within(
		30, qq{
SELECT last_run > '$t0' FROM keys_guard.purge_stats WHERE relid = 'public.sentinel'::regclass}),
	'the worker has run since acme was deleted');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_acme'"),
	'1', 'within its grace the schema tenant_acme is not dropped');
is($node->safe_psql('postgres', $acme_rows),
	$acme_before, 'within its grace every row of acme is kept');

###########################################################################
# delete_tenant again: same hard_delete_at, NOTICE, no second effect --
# even when given a shorter grace.
###########################################################################

($ret, $out, $err) = $node->psql('postgres',
	"SELECT DISTINCT concat_ws('|', status, hard_delete_at) FROM keys_guard.delete_tenant('acme');");
is($out, "deleted|$hard_delete_at",
	'a second delete_tenant returns status deleted and the same hard_delete_at');
like($err, qr/NOTICE:  tenant "acme" is already deleted/,
	'a second delete_tenant says NOTICE \'tenant "acme" is already deleted\'');
unlike($err, qr/ERROR/, 'a second delete_tenant is no error');
($ret, $out, $err) = $node->psql('postgres',
	"SELECT DISTINCT hard_delete_at FROM keys_guard.delete_tenant('acme', grace => interval '1 second');"
);
is($out, $hard_delete_at,
	'delete_tenant with a shorter grace does not move hard_delete_at of a deleted tenant');
is($node->safe_psql('postgres', $tenant_row),
	"deleted|t|$hard_delete_at", 'keys_guard.tenants: unchanged');
is($node->safe_psql('postgres', sprintf($audit_count, 'delete_tenant')),
	'1', 'still one delete_tenant record in audit_log');

###########################################################################
# restore_tenant within the grace: access is back.  Twice: a no-op.
###########################################################################

is( $node->safe_psql(
		'postgres',
		"SELECT concat_ws('|', id, status, deleted_at, hard_delete_at) FROM keys_guard.restore_tenant('acme')"
	),
	'acme|active',
	'restore_tenant(\'acme\') within the grace: status active, no deleted_at or hard_delete_at');
is($session->query_safe("SELECT count(*) FROM tenant_acme.docs;"),
	'4', 'the session with its earlier acme context reads again');
($ret, $out, $err) = as_api('acme', "SELECT count(*) FROM tenant_acme.docs;");
is($out, '4', 'set_context for acme works again') or diag($err);
is($node->safe_psql('postgres', $acme_rows),
	$acme_before, 'after the restore every row of acme is as it was');
is($node->safe_psql('postgres', sprintf($audit_count, 'restore_tenant')),
	'1', 'audit_log has one restore_tenant record');

($ret, $out, $err) = $node->psql('postgres',
	"SELECT status FROM keys_guard.restore_tenant('acme');");
is($ret, 0, 'a second restore_tenant is no error');
is($out, 'active', 'a second restore_tenant returns the active tenant');
like($err, qr/NOTICE:  tenant "acme" is not deleted/,
	'a second restore_tenant says the tenant is not deleted');
is($node->safe_psql('postgres', sprintf($audit_count, 'restore_tenant')),
	'1', 'still one restore_tenant record in audit_log');

# A grace of 0 has passed at once: restoring is too late.
($ret, $out, $err) = $node->psql(
	'postgres', $verbose . q{
BEGIN;
SELECT status FROM keys_guard.delete_tenant('initech', grace => interval '0') LIMIT 1;
SELECT keys_guard.restore_tenant('initech');
ROLLBACK;
});
like($err, qr/ERROR:  55000: grace period has expired/,
	'restore_tenant once the grace (0) has passed: 55000 "grace period has expired"');

###########################################################################
# After the grace the worker drops the tenant, archiving its audit and
# payment tables.
###########################################################################

$session->quit;
my $log_offset = -s $node->logfile;
$node->safe_psql(
	'postgres', q{
SELECT count(*) FROM keys_guard.delete_tenant('acme', grace => interval '1 second');
SELECT count(*) FROM keys_guard.delete_tenant('initech', grace => interval '0');
});
ok( poll_within(
		60, q{
SELECT count(*) FROM pg_namespace WHERE nspname IN ('tenant_acme', 'tenant_initech')}, '0'),
	'after their grace (1 second, 0) the worker drops schemas tenant_acme and tenant_initech');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(id || ':' || status, ',' ORDER BY id) FROM keys_guard.tenants"),
	'acme:purged,globex:active,initech:purged',
	'keys_guard.tenants: acme and initech are purged, globex is active');

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(c.relname, ',' ORDER BY c.relname COLLATE "C")
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'keys_guard_archive' AND c.relkind IN ('r', 'p')}),
	'acme__events,acme__ledger',
	'the audit and payment tables of acme are in keys_guard_archive as acme__events and acme__ledger'
);
my $archived_rows = $see_all . q{
SELECT 'docs', NULL;
SELECT 'ledger', string_agg(concat_ws('|', id, amount, deleted_at, hard_delete_at, deleted_by), ',' ORDER BY id) FROM keys_guard_archive.acme__ledger;
SELECT 'events', string_agg(concat_ws('|', id, what, deleted_at, hard_delete_at, deleted_by), ',' ORDER BY id) FROM keys_guard_archive.acme__events;
};
my @before = split /\n/, $acme_before;
my @after = split /\n/, $node->safe_psql('postgres', $archived_rows);
is($after[1], $before[1],
	'keys_guard_archive.acme__ledger holds every ledger row, the soft-deleted one with its marks');
is($after[2], $before[2],
	'keys_guard_archive.acme__events holds every event row');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(concat_ws('|', relation, kind, class), ',' ORDER BY relation::text COLLATE "C")
  FROM keys_guard.guarded_tables WHERE schema IN ('keys_guard_archive', 'tenant_acme', 'tenant_initech')}),
	'keys_guard_archive.acme__events|archived|audit,keys_guard_archive.acme__ledger|archived|payment',
	'guarded_tables: the archived tables keep their class (kind archived); nothing is left of the dropped schemas'
);
($ret, $out, $err) = $node->psql('postgres',
	$verbose . "DELETE FROM keys_guard_archive.acme__events;");
like($err, qr/ERROR:  42501: [^\n]*append-only[^\n]*keys_guard_archive\.acme__events/,
	'the archived audit table is still append-only (DELETE refused 42501)');

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(concat_ws('|', target, outcome, detail), ',' ORDER BY target COLLATE "C")
  FROM keys_guard.audit_log WHERE action = 'drop_tenant'}),
	'tenant_acme|ok|{"tenant": "acme", "archived_tables": 2},'
	  . 'tenant_initech|ok|{"tenant": "initech", "archived_tables": 0}',
	'audit_log: one drop_tenant record per tenant, with the number of archived tables');
unlike(slurp_file($node->logfile, $log_offset),
	qr/dropping tenant schema \S+ failed/, 'no tenant drop failed');

($ret, $out, $err) = as_api('globex', "SELECT count(*) FROM tenant_globex.docs;");
is($out, '2', 'globex is untouched') or diag($err);

###########################################################################
# After the grace: restoring is refused with 55000; deleting again changes
# nothing and is no error.
###########################################################################

($ret, $out, $err) = $node->psql('postgres',
	$verbose . "SELECT keys_guard.restore_tenant('acme');");
like($err, qr/ERROR:  55000: grace period has expired/,
	'restore_tenant after the grace (tenant purged): 55000');

my $audit_total = $node->safe_psql('postgres',
	"SELECT count(*) FROM keys_guard.audit_log WHERE action = 'delete_tenant'");
($ret, $out, $err) = $node->psql('postgres',
	$verbose . "SELECT count(*) FROM keys_guard.delete_tenant('acme');");
unlike($err, qr/ERROR/,
	'delete_tenant of a purged tenant is idempotent: no error (docs/contract.md: destructive operations are idempotent)'
);
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM keys_guard.audit_log WHERE action = 'delete_tenant'"),
	$audit_total,
	'delete_tenant of a purged tenant has no second effect');
is($node->safe_psql('postgres',
		"SELECT status FROM keys_guard.tenants WHERE id = 'acme'"),
	'purged', 'acme is still purged');

$node->stop;
done_testing();
