
# Copyright and license: see keys_guard's README.
#
# keys_guard.bypass (docs/contract.md §3): a superuser-only setting with which
# superusers read guarded data of every tenant without a context, as
# pg_dump needs; each session that uses it is audited exactly once (action
# 'bypass'); nobody else can set it (42501).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('bypass');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'keys_guard'\nkeys_guard.min_grace = 0");
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION keys_guard;
SELECT keys_guard.create_tenant('a');
SELECT keys_guard.create_tenant('b');
CREATE TABLE tenant_a.docs (id int PRIMARY KEY, body text);
CREATE TABLE tenant_b.docs (id int PRIMARY KEY, body text);
CREATE TABLE public.orders (id int PRIMARY KEY, tenant_id text NOT NULL, item text);
SELECT keys_guard.protect_table('public.orders', tenant_column => 'tenant_id');
CREATE ROLE dumper LOGIN SUPERUSER;
CREATE ROLE plain LOGIN;
CREATE ROLE gw LOGIN;
GRANT keys_guard_gateway TO gw;
GRANT SELECT ON ALL TABLES IN SCHEMA tenant_a, tenant_b, public TO plain, gw;
});
foreach my $t ('a', 'b')
{
	$node->safe_psql(
		'postgres', qq{
BEGIN;
SELECT keys_guard.set_context('$t', 'seed') \\g /dev/null
INSERT INTO tenant_$t.docs VALUES (1, 'doc of $t');
INSERT INTO public.orders (id, item) VALUES
  (CASE '$t' WHEN 'a' THEN 1 ELSE 2 END, 'order of $t');
COMMIT;
});
}

sub connstr_as
{
	my ($user, $extra) = @_;
	return $node->connstr('postgres') . " user=$user"
	  . (defined $extra ? " $extra" : '');
}

my $bypass_opt = "options='-c keys_guard.bypass=on'";

# Everything a dump reads, without a context.
my $read_all = q{
SELECT string_agg(body, ',' ORDER BY body) FROM tenant_a.docs;
SELECT string_agg(body, ',' ORDER BY body) FROM tenant_b.docs;
SELECT string_agg(item, ',' ORDER BY item) FROM public.orders;
};
my $all_rows = "doc of a\ndoc of b\norder of a,order of b";

# Audit records are written by the worker in the order they were queued.
# To count the records of some earlier sessions exactly, queue a marker
# denial afterwards and wait for it: once it is written, so is everything
# queued before it.
my $marker = 0;
sub audit_settled
{
	$marker++;
	$node->psql(
		'postgres', qq{
BEGIN;
SELECT keys_guard.set_context('a', 'marker', 'marker-$marker') \\g /dev/null
SELECT * FROM tenant_b.docs;
},
		connstr => connstr_as('gw'));
	# A bounded wait (the default is minutes): docs/contract.md §6 gives 2 seconds.
	local $PostgreSQL::Test::Utils::timeout_default = 10;
	return $node->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM keys_guard.audit_log"
		  . " WHERE request_id = 'marker-$marker'");
}

sub bypass_records
{
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM keys_guard.audit_log WHERE action = 'bypass'");
}

###########################################################################
# Without bypass, a superuser needs a context like everyone else.
###########################################################################

my ($ret, $out, $err) = $node->psql(
	'postgres', "\\set VERBOSITY verbose\n" . $read_all,
	connstr => connstr_as('dumper'));
like($err, qr/ERROR:  42501: no tenant context/,
	'superuser without bypass and without context is refused');
is($out, '', 'superuser without bypass reads nothing');

###########################################################################
# With bypass as a connection option, the superuser reads every tenant.
###########################################################################

ok(audit_settled(), 'audit log settled before the bypass sessions');
my $before = bypass_records();

($ret, $out, $err) = $node->psql(
	'postgres', $read_all . $read_all . q{
SELECT coalesce(keys_guard.current_tenant(), '<none>');
},
	connstr => connstr_as('dumper', $bypass_opt));
is($ret, 0, 'superuser with keys_guard.bypass=on reads without a context')
  or diag($err);
is($out, "$all_rows\n$all_rows\n<none>",
	'bypass: rows of every tenant, pooled table unfiltered, no context set');

# A second bypass session.
($ret, $out, $err) = $node->psql(
	'postgres', $read_all,
	connstr => connstr_as('dumper', $bypass_opt));
is($out, $all_rows, 'a second bypass session reads every tenant too');

ok(audit_settled(), 'audit log settled after the bypass sessions');
is(bypass_records() - $before,
	2, 'two bypass sessions are audited exactly once each');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM keys_guard.audit_log
 WHERE action = 'bypass' AND outcome = 'ok'
   AND (actor = 'dumper' OR detail::text LIKE '%"dumper"%')}),
	'2',
	'each bypass record has outcome ok and names the role that used it');

###########################################################################
# pg_dump, what bypass is for: it fails without bypass and dumps every
# tenant's rows with it.
###########################################################################

my ($stdout, $stderr);
my $dump_ok = IPC::Run::run(
	[ 'pg_dump', '--data-only', '-d', connstr_as('dumper') ],
	'>', \$stdout, '2>', \$stderr);
ok(!$dump_ok, 'pg_dump without bypass fails');
like($stderr, qr/no tenant context/, 'pg_dump without bypass: no tenant context');

$before = bypass_records();
$dump_ok = IPC::Run::run(
	[ 'pg_dump', '--data-only', '-d', connstr_as('dumper', $bypass_opt) ],
	'>', \$stdout, '2>', \$stderr);
ok($dump_ok, 'pg_dump with keys_guard.bypass=on succeeds') or diag($stderr);
like($stdout, qr/^1\tdoc of a(\t|$)/m, 'the dump has tenant a\'s rows');
like($stdout, qr/^1\tdoc of b(\t|$)/m, 'the dump has tenant b\'s rows');
like($stdout, qr/^1\ta\torder of a(\t|$)/m, 'the dump has pooled rows of tenant a');
like($stdout, qr/^2\tb\torder of b(\t|$)/m, 'the dump has pooled rows of tenant b');
ok(audit_settled(), 'audit log settled after pg_dump');
is(bypass_records() - $before, 1, 'the pg_dump session is audited exactly once');

###########################################################################
# Nobody but a superuser can set keys_guard.bypass.
###########################################################################

foreach my $user ('plain', 'gw')
{
	($ret, $out, $err) = $node->psql(
		'postgres', "\\set VERBOSITY verbose\nSET keys_guard.bypass = on;",
		connstr => connstr_as($user));
	like(
		$err,
		qr/ERROR:  42501: permission denied to set parameter "keys_guard\.bypass"/,
		"$user: SET keys_guard.bypass is refused (42501)");

	($ret, $out, $err) = $node->psql(
		'postgres',
		"\\set VERBOSITY verbose\nSELECT set_config('keys_guard.bypass', 'on', false);",
		connstr => connstr_as($user));
	like(
		$err,
		qr/ERROR:  42501: permission denied to set parameter "keys_guard\.bypass"/,
		"$user: set_config('keys_guard.bypass') is refused (42501)");

	($ret, $out, $err) = $node->psql(
		'postgres', $read_all,
		connstr => connstr_as($user, $bypass_opt));
	isnt($ret, 0, "$user: connecting with keys_guard.bypass=on fails");
	like($err, qr/permission denied to set parameter "keys_guard\.bypass"/,
		"$user: the connection option is refused as a permission error");
	is($out, '', "$user: the bypass connection option reads nothing");
}

# A superuser may give the setting to a role with ALTER ROLE ... SET, as
# PostgreSQL allows for any superuser-only setting.  It takes effect only
# for the roles docs/contract.md names (superusers and BYPASSRLS roles): the gateway
# role still needs a context, a BYPASSRLS maintenance role reads everything.
$node->safe_psql(
	'postgres', q{
CREATE ROLE maint LOGIN BYPASSRLS;
GRANT USAGE ON SCHEMA tenant_a, tenant_b TO maint;
GRANT SELECT ON ALL TABLES IN SCHEMA tenant_a, tenant_b, public TO maint;
ALTER ROLE gw SET keys_guard.bypass = on;
ALTER ROLE maint SET keys_guard.bypass = on;
});

($ret, $out, $err) = $node->psql(
	'postgres', "\\set VERBOSITY verbose\n" . $read_all,
	connstr => connstr_as('gw'));
like($err, qr/ERROR:  42501: no tenant context/,
	'gw: keys_guard.bypass from ALTER ROLE gives a non-privileged role nothing');
is($out, '', 'gw: with bypass from ALTER ROLE it reads nothing');

ok(audit_settled(), 'audit log settled before the BYPASSRLS session');
$before = bypass_records();
($ret, $out, $err) = $node->psql(
	'postgres', $read_all . $read_all,
	connstr => connstr_as('maint'));
is($out, "$all_rows\n$all_rows",
	'maint: a BYPASSRLS role with keys_guard.bypass reads every tenant')
  or diag($err);
ok(audit_settled(), 'audit log settled after the BYPASSRLS session');
is(bypass_records() - $before, 1,
	'maint: the BYPASSRLS bypass session is audited exactly once');

# The BYPASSRLS role still cannot set the setting itself.
($ret, $out, $err) = $node->psql(
	'postgres', "\\set VERBOSITY verbose\nSET keys_guard.bypass = off;\nSET keys_guard.bypass = on;",
	connstr => connstr_as('maint'));
like(
	$err,
	qr/ERROR:  42501: permission denied to set parameter "keys_guard\.bypass"/,
	'maint: SET keys_guard.bypass is refused (42501)');

$node->stop;
done_testing();
