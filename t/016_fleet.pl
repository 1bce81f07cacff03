
# Copyright and license: see keys_guard's README.
#
# A fleet of tenants (docs/contract.md §18), at a size where per-tenant
# costs show: 2 000 tenants cloned from a template schema.
#   - migrate_tenants() over every tenant: the template first, one
#     committed transaction per schema, the ledger readable from another
#     session while it runs; the run killed with pg_terminate_backend()
#     part-way, called again, and then every tenant migrated exactly once
#     (one ok row with one attempt each, the column and the index once);
#   - tenants whose schema differs fail with their SQLSTATE and message and
#     the run goes on; max_failures stops a run; a failing template stops
#     it before any tenant;
#   - a canary group runs only on its tenants and not on the template;
#     dry_run changes nothing; refused DDL is refused and recorded;
#   - a tenant created afterwards from the template is born current;
#   - fleet-wide operations (purge_now(), doctor(), snapshot()) work at this
#     size with the default lock table.
# No step waits a fixed time: each polls for its condition.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tenants = 2000;
my $node = PostgreSQL::Test::Cluster->new('fleet');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard'
keys_guard.min_grace = 0
keys_guard.purge_naptime = 3600
max_worker_processes = 16
});
$node->start;

my $sql_migration =
  'ALTER TABLE invoices ADD COLUMN due_date date; CREATE INDEX ON invoices (due_date)';

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION keys_guard;
CREATE SCHEMA fleet_tpl;
CREATE TABLE fleet_tpl.invoices (id int PRIMARY KEY, amount int);
CREATE TABLE fleet_tpl.lines (id int PRIMARY KEY,
                              invoice int REFERENCES fleet_tpl.invoices ON DELETE CASCADE);
});
# One DO block, committing every 200 tenants.
my $t0 = time;
$node->safe_psql(
	'postgres', qq{
SET client_min_messages = warning;
DO \$\$
BEGIN
    FOR i IN 1 .. $tenants LOOP
        PERFORM keys_guard.create_tenant('f' || lpad(i::text, 5, '0'), template => 'fleet_tpl');
        IF i % 200 = 0 THEN COMMIT; END IF;
    END LOOP;
END
\$\$;
});
note sprintf('%d tenants created in %d s', $tenants, time - $t0);
is($node->safe_psql('postgres', q{SELECT count(*) FROM keys_guard.tenants WHERE status = 'active'}),
	$tenants, 'the fleet is there');

# Three tenants whose schema already has the column: the migration fails there.
my @odd = ('f00100', 'f00700', 'f01500');
$node->safe_psql('postgres',
	join('', map { "ALTER TABLE tenant_$_.invoices ADD COLUMN due_date date;" } @odd));

# dry_run: the template and every tenant, and nothing changes.
my ($ret, $out, $err) = $node->psql('postgres',
	qq{CALL keys_guard.migrate_tenants('2026_12_due_date', '$sql_migration', dry_run => true)});
is($ret, 0, 'dry_run succeeds');
like($err, qr/would run in 1 template schemas and $tenants tenant schemas/,
	'dry_run names the template and every tenant');
like($err, qr/Schemas, in order: fleet_tpl, tenant_f00001, tenant_f00002/,
	'the template comes first, then the tenants by id');
is($node->safe_psql('postgres', 'SELECT count(*) FROM keys_guard.tenant_migrations'),
	0, 'dry_run writes no ledger row');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_attribute WHERE attname = 'due_date' AND attrelid = 'fleet_tpl.invoices'::regclass}),
	0, 'dry_run changes no schema');

# A canary group: its tenants only, not the template.
($ret, $out, $err) = $node->psql('postgres',
	qq{CALL keys_guard.migrate_tenants('2026_12_due_date', '$sql_migration', tenants => '{f00002,f00001,f00003}')});
is($ret, 0, 'the canary run succeeds');
is($node->safe_psql('postgres',
		q{SELECT string_agg(coalesce(tenant, '-') || ':' || status, ',' ORDER BY schema_name) FROM keys_guard.tenant_migrations}),
	'f00001:ok,f00002:ok,f00003:ok', 'the canary run migrated its three tenants and not the template');

# Refused DDL is refused inside a migration, and recorded.
($ret, $out, $err) = $node->psql('postgres',
	q{CALL keys_guard.migrate_tenants('weaken', 'ALTER TABLE invoices DISABLE ROW LEVEL SECURITY', tenants => '{f00004}')});
is($node->safe_psql('postgres',
		q{SELECT status || ' ' || sqlstate FROM keys_guard.tenant_migrations WHERE migration = 'weaken'}),
	'failed 42501', 'refused DDL fails with 42501 and is recorded');
is($node->safe_psql('postgres',
		q{SELECT relrowsecurity FROM pg_class WHERE oid = 'tenant_f00004.invoices'::regclass}),
	't', 'row security is still on');

# The full run, in the background, killed part-way.
my ($bg_out, $bg_err) = ('', '');
my $bg = IPC::Run::start(
	[
		'psql', '-X', '-d', $node->connstr('postgres'), '-c',
		qq{CALL keys_guard.migrate_tenants('2026_12_due_date', '$sql_migration')}
	],
	'>', \$bg_out, '2>', \$bg_err);
ok( $node->poll_query_until(
		'postgres',
		q{SELECT count(*) >= 300 FROM keys_guard.tenant_migrations WHERE migration = '2026_12_due_date'}),
	'the ledger shows progress from another session');
my $progress = $node->safe_psql('postgres',
	q{SELECT templates_ok, tenants_ok > 3, tenants_pending > 0 FROM keys_guard.tenant_migration_progress WHERE migration = '2026_12_due_date'});
is($progress, '1|t|t', 'the progress view shows the template done and tenants done and pending');
is($node->safe_psql('postgres',
		q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'CALL keys_guard.migrate_tenants(%' AND pid <> pg_backend_pid()}),
	't', 'the run is killed');
$bg->finish;
my $done_at_kill = $node->safe_psql('postgres',
	q{SELECT count(*) FROM keys_guard.tenant_migrations WHERE migration = '2026_12_due_date' AND tenant IS NOT NULL});
cmp_ok($done_at_kill, '<', $tenants, "the kill left the run part-way ($done_at_kill tenants recorded)");
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM keys_guard.audit_log WHERE action = 'migrate_tenants' AND target = '2026_12_due_date' AND detail->>'phase' = 'finish'}),
	1, 'the killed run wrote no finish record (only the canary run did)');

# Called again: it resumes where it stopped.
($ret, $out, $err) = $node->psql('postgres',
	qq{CALL keys_guard.migrate_tenants('2026_12_due_date', '$sql_migration')});
is($ret, 0, 'the second run completes');
like($err, qr/schemas done/, 'it reports progress with NOTICEs');
like($err, qr/migration "2026_12_due_date" failed in 3 of \d+ tenants/, 'it warns of the three failures');
is($node->safe_psql('postgres',
		q{SELECT count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status = 'failed'), max(attempts) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE tenant IS NULL) FROM keys_guard.tenant_migrations WHERE migration = '2026_12_due_date'}),
	($tenants - 3 + 1) . '|3|1|1',
	'the ledger is exact: every tenant but three ok, each with one attempt, the template once');
is($node->safe_psql('postgres',
		q{SELECT string_agg(tenant || ' ' || sqlstate || ' ' || error, ',' ORDER BY tenant) FROM keys_guard.tenant_migrations WHERE migration = '2026_12_due_date' AND status = 'failed'}),
	'f00100 42701 column "due_date" of relation "invoices" already exists,'
	  . 'f00700 42701 column "due_date" of relation "invoices" already exists,'
	  . 'f01500 42701 column "due_date" of relation "invoices" already exists',
	'the failed tenants are recorded with SQLSTATE and message');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0] WHERE c.relname = 'invoices' AND a.attname = 'due_date' AND (n.nspname LIKE 'tenant_f%' OR n.nspname = 'fleet_tpl')}),
	$tenants - 3 + 1, 'each migrated schema has the index exactly once');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM keys_guard.audit_log WHERE action = 'migrate_tenants' AND target = '2026_12_due_date'}),
	5, 'audited: canary start and finish, the killed run\'s start, the resumed run\'s start and finish');

# A third call: nothing left but the three failures, which fail again.
($ret, $out, $err) = $node->psql('postgres',
	qq{CALL keys_guard.migrate_tenants('2026_12_due_date', '$sql_migration')});
like($err, qr/failed in 3 of 3 tenants/, 'a third call only retries the failed tenants');
is($node->safe_psql('postgres',
		q{SELECT attempts FROM keys_guard.tenant_migrations WHERE migration = '2026_12_due_date' AND tenant = 'f01500'}),
	2, 'their attempts are counted');

# A tenant created now from the migrated template is born current.
$node->safe_psql('postgres', q{SELECT keys_guard.create_tenant('late', template => 'fleet_tpl')});
is($node->safe_psql('postgres',
		q{SELECT status || ' ' || from_template FROM keys_guard.tenant_migrations WHERE migration = '2026_12_due_date' AND tenant = 'late'}),
	'ok true', 'a tenant created from the migrated template is born current');

# max_failures stops a run.
($ret, $out, $err) = $node->psql('postgres',
	q{CALL keys_guard.migrate_tenants('broken', 'ALTER TABLE nope ADD COLUMN x int', tenants => '{f00010,f00011,f00012,f00013,f00014,f00015}', max_failures => 4)});
like($err, qr/migration "broken" stopped after 4 failures/, 'max_failures stops the run');
is($node->safe_psql('postgres', q{SELECT count(*) FROM keys_guard.tenant_migrations WHERE migration = 'broken'}),
	4, 'with exactly that many failures recorded');

# A migration that fails in the template stops before any tenant.
($ret, $out, $err) = $node->psql('postgres',
	q{CALL keys_guard.migrate_tenants('tpl_broken', 'ALTER TABLE nope ADD COLUMN x int')});
like($err, qr/migration "tpl_broken" failed in template schema "fleet_tpl"/, 'a template failure stops the run');
is($node->safe_psql('postgres',
		q{SELECT count(*) FILTER (WHERE tenant IS NULL) || ' ' || count(*) FILTER (WHERE tenant IS NOT NULL) FROM keys_guard.tenant_migrations WHERE migration = 'tpl_broken'}),
	'1 0', 'no tenant was attempted');

# Fleet-wide operations at this size, with the default lock table.
($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM keys_guard.purge_now()');
is($ret, 0, 'purge_now() over every guarded table works') or diag($err);
($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM keys_guard.purge_now(dry_run => true)');
is($ret, 0, 'purge_now(dry_run => true) works') or diag($err);
($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM keys_guard.doctor()');
is($ret, 0, 'doctor() works') or diag($err);
($ret, $out, $err) = $node->psql('postgres', 'SELECT keys_guard.snapshot() IS NOT NULL');
is($ret, 0, 'snapshot() works') or diag($err);
($ret, $out, $err) = $node->psql('postgres', q{SELECT count(*) FROM keys_guard.delete_tenant('f00020', dry_run => true)});
is($ret, 0, 'delete_tenant\'s preview works') or diag($err);

$node->stop;
done_testing();
