
# Copyright and license: see keys_guard's README.
#
# pg_dump / pg_restore keep keys_guard's registry and guards (docs/contract.md §11):
# a database dumped with keys_guard.bypass and restored into a new database
# (pg_restore with keys_guard.bypass, which is what lets it load the
# registry) has the same tenants, guarded tables, options and governance
# version, the same policies and triggers, and a cross-tenant query there
# is still denied.  Without bypass the restore fails loudly instead of
# loading a database whose guards do not match its registry.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('dump_restore');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'keys_guard'\nkeys_guard.min_grace = 0");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql(
	'src', q{
CREATE EXTENSION keys_guard;
SELECT keys_guard.create_tenant('a', name => 'Tenant A');
SELECT keys_guard.create_tenant('b');
SELECT keys_guard.create_tenant('gone');
CREATE TABLE tenant_a.notes (id int PRIMARY KEY, body text);
CREATE TABLE tenant_b.notes (id int PRIMARY KEY, body text);
CREATE TABLE tenant_a.ledger (id int PRIMARY KEY, entry text);
SELECT keys_guard.protect_table('tenant_a.ledger', class => 'audit',
                                grace => interval '400 days');
CREATE TABLE invoices (id int PRIMARY KEY, tenant_id text NOT NULL, amount int);
CREATE INDEX ON invoices (tenant_id);
SELECT keys_guard.protect_table('invoices', tenant_column => 'tenant_id');
CREATE TABLE payments (id int PRIMARY KEY, tenant_id text NOT NULL,
                       invoice_id int REFERENCES invoices ON DELETE CASCADE);
SELECT keys_guard.protect_table('payments', tenant_column => 'tenant_id',
                                class => 'payment', grace => interval '90 days');
SELECT keys_guard.delete_tenant('gone');
CREATE ROLE app LOGIN;
GRANT keys_guard_gateway TO app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, tenant_a, tenant_b TO app;
GRANT USAGE ON SCHEMA tenant_a, tenant_b TO app;
});
foreach my $t ('a', 'b')
{
	my $base = $t eq 'a' ? 0 : 10;
	$node->safe_psql(
		'src', qq{
BEGIN;
SELECT keys_guard.set_context('$t', 'seed') \\g /dev/null
INSERT INTO notes VALUES (1, 'note 1 of $t'), (2, 'note 2 of $t');
INSERT INTO invoices VALUES ($base + 1, '$t', 100), ($base + 2, '$t', 200);
INSERT INTO payments VALUES ($base + 1, '$t', $base + 1);
DELETE FROM notes WHERE id = 2;
COMMIT;
});
}

# API keys: one live, one revoked.  The dump holds their hashes only.
$node->safe_psql(
	'src', q{
CREATE ROLE tool LOGIN IN ROLE keys_guard_keyholder;
GRANT USAGE ON SCHEMA tenant_a TO tool;
GRANT SELECT ON tenant_a.notes TO tool;
});
my $key_secret = $node->safe_psql('src',
	q{SELECT secret FROM keys_guard.create_api_key('a', 'assistant')});
my $revoked_secret = $node->safe_psql('src',
	q{SELECT keys_guard.revoke_api_key(key_id) IS NOT NULL AS revoked, secret
	    FROM keys_guard.create_api_key('a', 'old') \gset
	  SELECT :'secret'});
my $keys = q{
SELECT string_agg(concat_ws('|', id, tenant, name, scopes, encode(secret_hash, 'hex'),
                            created_at, created_by, expires_at, revoked_at, revoked_by),
                  E'\n' ORDER BY id)
  FROM keys_guard.api_key;
};
like($revoked_secret, qr/^kgk_[0-9a-z]{92}$/, 'sanity: the revoked key\'s secret');
my $src_keys = $node->safe_psql('src', $keys);
like($src_keys, qr/assistant/, 'the source database has its API keys');

# What must survive: the registry, the governance state and the guards.
my $state = q{
SELECT (SELECT jsonb_agg(t ORDER BY t.id)
          FROM (SELECT id, name, schema, status, created_at, deleted_at, hard_delete_at
                  FROM keys_guard.tenants) t)
       || (SELECT jsonb_agg(g ORDER BY g.relation)
             FROM (SELECT relation::text, kind, tenant_id, tenant_column, soft_delete,
                          grace, class, created_at
                     FROM keys_guard.guarded_tables) g)
       || jsonb_build_array(keys_guard.snapshot()->'version');
};
my $guards = q{
SELECT string_agg(format('%s rls=%s/%s policies=%s triggers=%s', c.oid::regclass,
                         c.relrowsecurity, c.relforcerowsecurity,
                         (SELECT string_agg(p.polname || CASE WHEN p.polpermissive THEN '' ELSE '(restrictive)' END,
                                            ',' ORDER BY p.polname)
                            FROM pg_policy p WHERE p.polrelid = c.oid),
                         (SELECT string_agg(t.tgname || ':' || t.tgenabled::text, ',' ORDER BY t.tgname)
                            FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)),
                  E'\n' ORDER BY c.oid::regclass::text)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('public', 'tenant_a', 'tenant_b', 'tenant_gone') AND c.relkind = 'r';
};
my $src_state = $node->safe_psql('src', $state);
my $src_guards = $node->safe_psql('src', $guards);
like($src_guards, qr/keys_guard_fail_closed\(restrictive\)/,
	'the source database has its guards');

my $dump = $node->basedir . '/src.dump';
my $bypass = "-c keys_guard.bypass=on";

# pg_dump reads every tenant only with bypass; without it, it is refused.
{
	local $ENV{PGOPTIONS} = '';
	my ($ret, $out, $err) = $node->psql('src', 'SELECT 1');
	is($ret, 0, 'sanity: the source answers');
	command_fails_like(
		[ 'pg_dump', '-Fc', '-f', $dump . '.nobypass', '-d', $node->connstr('src') ],
		qr/no tenant context/,
		'pg_dump without keys_guard.bypass is refused: no tenant context');
}
{
	local $ENV{PGOPTIONS} = $bypass;
	command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ],
		'pg_dump with keys_guard.bypass');
}

# Restored with bypass into a new database.
$node->safe_psql('postgres', 'CREATE DATABASE dst');
my $restore_start = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
{
	local $ENV{PGOPTIONS} = $bypass;
	command_ok(
		[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dst'), $dump ],
		'pg_restore with keys_guard.bypass');
}
is($node->safe_psql('dst', $state), $src_state,
	'tenants, guarded tables, options and governance version restored');
# Every audit record the dump held is restored.  Either side may have more
# by now: the workers write denials and the bypass records of pg_dump and
# pg_restore themselves after they happen (in src after the dump's
# snapshot, in dst after the restore began).
my $restored_rows = $node->safe_psql('dst',
	"SELECT coalesce(max(id), 0) FROM keys_guard.audit_log WHERE at < '$restore_start'");
my $audit = "SELECT count(*), md5(string_agg(concat_ws('|', id, at, tenant, actor, action, target, outcome, detail), ',' ORDER BY id))"
  . " FROM keys_guard.audit_log WHERE id <= $restored_rows";
cmp_ok($restored_rows, '>', 0, 'the dump holds audit records');
is($node->safe_psql('dst', $audit), $node->safe_psql('src', $audit),
	'audit log restored');
is($node->safe_psql('dst', $guards), $src_guards,
	'row security, policies and triggers restored (triggers ALWAYS)');

# The guards work in the restored database.
my ($ret, $out, $err) = $node->psql(
	'dst', q{
BEGIN;
SELECT keys_guard.set_context('a', 'reader') \g /dev/null
SELECT * FROM tenant_b.notes;
},
	extra_params => [ '-U', 'app', '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'restored: cross-tenant query denied');
like($err, qr/42501.*cross-tenant access denied/s,
	'restored: the denial is 42501 cross-tenant access denied');

is( $node->safe_psql(
		'dst', q{
BEGIN;
SELECT keys_guard.set_context('a', 'reader') \g /dev/null
SELECT string_agg(format('%s:%s', id, tenant_id), ',' ORDER BY id) FROM invoices;
SELECT string_agg(body, ',' ORDER BY id) FROM notes;
COMMIT;
},
		extra_params => [ '-U', 'app' ]),
	"1:a,2:a\nnote 1 of a",
	'restored: pooled rows of the tenant only, soft-deleted rows hidden');

($ret, $out, $err) = $node->psql('dst', 'SELECT count(*) FROM invoices',
	extra_params => [ '-U', 'app' ]);
like($err, qr/no tenant context/, 'restored: no context, no rows');

is( $node->safe_psql(
		'dst', q{
BEGIN;
SELECT keys_guard.set_context('b', 'restorer') \g /dev/null
DELETE FROM notes WHERE id = 1;
COMMIT;
SET keys_guard.bypass = on;
SELECT deleted_by FROM tenant_b.notes WHERE id = 1;
}),
	'restorer',
	'restored: DELETE is still a soft delete');

($ret, $out, $err) =
  $node->psql('dst', 'ALTER TABLE invoices DISABLE ROW LEVEL SECURITY');
like($err, qr/cannot disable row-level security of guarded table/,
	'restored: the guard rails hold');

($ret, $out, $err) = $node->psql(
	'dst', q{
BEGIN;
SELECT keys_guard.set_context('gone', 'x') \g /dev/null
},
	extra_params => [ '-U', 'app' ]);
like($err, qr/is deleted/, 'restored: a tenant pending deletion stays deleted');

# API keys: the same rows (hashes), the live key works, the revoked one not.
is($node->safe_psql('dst', $keys), $src_keys, 'restored: API keys (hashes only)');
is( $node->safe_psql(
		'dst', qq{
BEGIN;
SELECT keys_guard.use_api_key('$key_secret') \\g /dev/null
SELECT keys_guard.current_tenant() || ':' || string_agg(body, ',' ORDER BY id) FROM notes;
COMMIT;
},
		extra_params => [ '-U', 'tool' ]),
	'a:note 1 of a',
	'restored: the API key gives its tenant context');
($ret, $out, $err) = $node->psql(
	'dst', "SELECT keys_guard.use_api_key('$revoked_secret')",
	extra_params => [ '-U', 'tool' ]);
like($err, qr/invalid API key/, 'restored: a revoked key stays revoked');
unlike(slurp_file($dump), qr/\Q$key_secret\E/, 'the dump does not hold the secret');

# The version goes on from where the dump left it.
my ($v) = $node->safe_psql('dst', q{SELECT keys_guard.snapshot()->>'version'});
$node->safe_psql('dst', q{SELECT keys_guard.create_tenant('c')});
cmp_ok($node->safe_psql('dst', q{SELECT keys_guard.snapshot()->>'version'}),
	'>', $v, 'restored: the governance version keeps increasing');
is( $node->safe_psql(
		'dst',
		q{SELECT count(DISTINCT id) = count(*) FROM keys_guard.audit_log}),
	't', 'restored: new audit records get new ids');

# Without bypass, pg_restore cannot load the registry and says so.
$node->safe_psql('postgres', 'CREATE DATABASE dst_nobypass');
{
	local $ENV{PGOPTIONS} = '';
	my $stderr;
	my $ok = IPC::Run::run(
		[ 'pg_restore', '-d', $node->connstr('dst_nobypass'), $dump ],
		'2>', \$stderr);
	ok(!$ok, 'pg_restore without keys_guard.bypass fails');
	like(
		$stderr,
		qr/cannot insert into keys_guard's registry table "tenant" directly/,
		'and names the registry table it could not load');
	like($stderr, qr/keys_guard\.bypass=on/, 'and the hint names bypass');
}

$node->stop;
done_testing();
