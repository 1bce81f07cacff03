
# Copyright and license: see keys_guard's README.
#
# Loading keys_guard (docs/contract.md §1) and claiming a tenant outside
# keys_guard's API (docs/contract.md §3):
#   - CREATE EXTENSION refuses to run unless the library is in
#     shared_preload_libraries (55000, hint naming the setting);
#   - with the library preloaded it installs, with its two NOLOGIN roles;
#   - a server restarted without the library keeps guarded tables closed
#     (fail closed), and opens them again once the library is back;
#   - neither a connection option nor ALTER ROLE ... SET gives a session a
#     tenant context.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('load');
$node->init;
$node->append_conf('postgresql.conf', "keys_guard.min_grace = 0");
$node->start;

# Settings for each psql call that checks an error's SQLSTATE.
my $verbose = "\\set VERBOSITY verbose\n";

# Turn keys_guard in shared_preload_libraries on or off, and restart.
sub set_preload
{
	my ($on) = @_;
	$node->stop;
	$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', undef);
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = '" . ($on ? 'keys_guard' : '') . "'");
	$node->start;
	return;
}

# A connection string for role $user, with extra libpq keywords.
sub connstr_as
{
	my ($user, $extra) = @_;
	return $node->connstr('postgres') . " user=$user"
	  . (defined $extra ? " $extra" : '');
}

###########################################################################
# (a) CREATE EXTENSION without shared_preload_libraries: 55000 + hint.
###########################################################################

my ($ret, $out, $err) =
  $node->psql('postgres', $verbose . "CREATE EXTENSION keys_guard;");
isnt($ret, 0, 'CREATE EXTENSION fails when keys_guard is not preloaded');
like(
	$err,
	qr/ERROR:  55000: keys_guard must be loaded via shared_preload_libraries/,
	'CREATE EXTENSION without preload fails with SQLSTATE 55000');
like(
	$err,
	qr/HINT:  [^\n]*shared_preload_libraries/,
	'the error hint names shared_preload_libraries');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_extension WHERE extname = 'keys_guard'"),
	'0',
	'the failed CREATE EXTENSION leaves no extension behind');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_roles"
		  . " WHERE rolname IN ('keys_guard_admin', 'keys_guard_gateway')"),
	'0',
	'the failed CREATE EXTENSION leaves no roles behind');

###########################################################################
# (b) With the library preloaded, CREATE EXTENSION works and creates the
#     three NOLOGIN roles of docs/contract.md §2.
###########################################################################

set_preload(1);

($ret, $out, $err) =
  $node->psql('postgres', $verbose . "CREATE EXTENSION keys_guard;");
is($ret, 0, 'CREATE EXTENSION succeeds when keys_guard is preloaded')
  or diag($err);
is( $node->safe_psql(
		'postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'keys_guard'"),
	'1.3',
	'keys_guard 1.3 (the default version) is installed');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(rolname || ':' || rolcanlogin, ',' ORDER BY rolname)"
		  . " FROM pg_roles"
		  . " WHERE rolname IN ('keys_guard_admin', 'keys_guard_gateway', 'keys_guard_keyholder')"),
	'keys_guard_admin:false,keys_guard_gateway:false,keys_guard_keyholder:false',
	'roles keys_guard_admin, keys_guard_gateway and keys_guard_keyholder exist and are NOLOGIN');

###########################################################################
# (c) Fail closed.  A non-superuser login role of the API gateway owns a
#     pooled table and a table in a tenant schema; rows are inserted under
#     a context.  Restarted without the library, the role cannot read or
#     delete anything; with the library back, it reads again.
###########################################################################

# The schema changes run without a tenant context, as migrations do.
$node->safe_psql(
	'postgres', q{
SELECT keys_guard.create_tenant('acme');
SELECT keys_guard.create_tenant('globex');
CREATE ROLE app LOGIN;
GRANT keys_guard_gateway TO app;
CREATE TABLE public.invoices (id int PRIMARY KEY, tenant_id text NOT NULL, amount int);
SELECT keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id');
CREATE TABLE tenant_acme.notes (id int PRIMARY KEY, body text);
ALTER TABLE public.invoices OWNER TO app;
ALTER TABLE tenant_acme.notes OWNER TO app;
});

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(schema || '.' || table_name || ':' || kind, ','"
		  . " ORDER BY schema, table_name)"
		  . " FROM keys_guard.guarded_tables"),
	'public.invoices:pooled,tenant_acme.notes:tenant_schema',
	'both tables are guarded (pooled, and tenant schema by the event trigger)');

# Seed data as the application role, under contexts.
$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT keys_guard.set_context('acme', 'seed') \g /dev/null
INSERT INTO public.invoices (id, amount) VALUES (1, 100);
INSERT INTO tenant_acme.notes VALUES (1, 'acme note');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('globex', 'seed') \g /dev/null
INSERT INTO public.invoices (id, amount) VALUES (2, 200);
COMMIT;
},
	connstr => connstr_as('app'));

# With the library loaded: context required, rows filtered to the tenant.
my $read_as_acme = q{
BEGIN;
SELECT keys_guard.set_context('acme', 'user_1') \g /dev/null
SELECT string_agg(id || ':' || tenant_id, ',' ORDER BY id) FROM public.invoices;
SELECT string_agg(id || ':' || body, ',' ORDER BY id) FROM tenant_acme.notes;
COMMIT;
};
is( $node->safe_psql(
		'postgres', $read_as_acme, connstr => connstr_as('app')),
	"1:acme\n1:acme note",
	'preloaded: the owner role reads its tenant rows under a context');

($ret, $out, $err) = $node->psql(
	'postgres',
	$verbose . "SELECT count(*) FROM public.invoices;",
	connstr => connstr_as('app'));
like($err, qr/ERROR:  42501: no tenant context/,
	'preloaded: the owner role is refused without a context');

# Restart without the library.
set_preload(0);

is( $node->safe_psql(
		'postgres', "SELECT current_setting('shared_preload_libraries')"),
	'',
	'server restarted without keys_guard in shared_preload_libraries');

foreach my $t ('public.invoices', 'tenant_acme.notes')
{
	($ret, $out, $err) = $node->psql(
		'postgres',
		$verbose . "SELECT * FROM $t;",
		connstr => connstr_as('app'));
	isnt($ret, 0, "not preloaded: SELECT on $t by its owner fails");
	is($out, '', "not preloaded: SELECT on $t returns no rows");
	like(
		$err,
		qr/ERROR:  55000: keys_guard is not loaded/,
		"not preloaded: SELECT on $t fails closed with 55000");
}

# A write must not get through either: without the library, DELETE would
# not even be turned into a soft delete.
($ret, $out, $err) = $node->psql(
	'postgres',
	$verbose . "DELETE FROM public.invoices;",
	connstr => connstr_as('app'));
like(
	$err,
	qr/ERROR:  55000: keys_guard is not loaded, so guarded tables are closed/,
	'not preloaded: DELETE on the pooled table by its owner fails closed');
($ret, $out, $err) = $node->psql(
	'postgres',
	$verbose . "INSERT INTO tenant_acme.notes VALUES (2, 'sneaky');",
	connstr => connstr_as('app'));
like(
	$err,
	qr/ERROR:  55000: keys_guard is not loaded, so guarded tables are closed/,
	'not preloaded: INSERT into the tenant table by its owner fails closed');

# Nor can a context be set without the library.
($ret, $out, $err) = $node->psql(
	'postgres',
	$verbose
	  . "BEGIN; SELECT keys_guard.set_context('acme', 'user_1'); COMMIT;",
	connstr => connstr_as('app'));
like(
	$err,
	qr/ERROR:  55000: keys_guard must be loaded via shared_preload_libraries/,
	'not preloaded: set_context fails with 55000');

# Restore the library: the same role reads again, under a context.
set_preload(1);

is( $node->safe_psql(
		'postgres', $read_as_acme, connstr => connstr_as('app')),
	"1:acme\n1:acme note",
	'preloaded again: access works under a context, and nothing was deleted'
);
is( $node->safe_psql(
		'postgres', q{
BEGIN;
SELECT keys_guard.set_context('globex', 'user_2') \g /dev/null
SELECT string_agg(id || ':' || tenant_id, ',' ORDER BY id) FROM public.invoices;
COMMIT;
},
		connstr => connstr_as('app')),
	'2:globex',
	'preloaded again: the other tenant sees only its own row');

###########################################################################
# (d) A client can never claim a tenant: not through a connection option,
#     not through ALTER ROLE / ALTER DATABASE ... SET; each is refused with
#     42501 (README "The request context"), for a superuser and a plain
#     role.  Each refusal is matched by its SQLSTATE and message, so that a
#     connection failing for another reason (a wrong role, a bad connection
#     string) fails the test.
###########################################################################

$node->safe_psql('postgres', "CREATE ROLE dba LOGIN SUPERUSER;");
# The server log carries the SQLSTATE of a refused connection, which the
# client's message does not.
$node->append_conf('postgresql.conf', "log_error_verbosity = verbose");
$node->reload;

# What a session sees of its context, and whether it can read tenant data.
my $probe = $verbose . q{
SELECT coalesce(keys_guard.current_tenant(), '<none>');
SELECT count(*) FROM tenant_acme.notes;
};

# A superuser passes PostgreSQL's privilege check for the PGC_SUSET setting
# and meets keys_guard's check hook; another role is stopped by the
# privilege check.
my %option_refusal = (
	dba => qr/keys_guard context parameters cannot be set directly/,
	app => qr/permission denied to set parameter "keys_guard\.tenant"/);

foreach my $user ('dba', 'app')
{
	# The role and connection string work without the option ...
	$node->connect_ok(connstr_as($user),
		"$user: connects without a keys_guard option",
		sql => "SELECT coalesce(keys_guard.current_tenant(), '<none>')",
		expected_stdout => qr/^<none>$/);
	# ... and with it, the connection is refused by keys_guard's rule.
	foreach my $opt ("-ckeys_guard.tenant=acme", "-c keys_guard.tenant=acme")
	{
		$node->connect_fails(
			connstr_as($user, "options='$opt'"),
			"$user: connection option '$opt' is refused",
			expected_stderr => qr/FATAL:  $option_refusal{$user}/,
			log_like => [qr/FATAL:  42501: $option_refusal{$user}/]);
	}
}

foreach my $user ('dba', 'app')
{
	foreach my $scope ('', ' IN DATABASE postgres')
	{
		($ret, $out, $err) = $node->psql('postgres',
			$verbose . "ALTER ROLE $user$scope SET keys_guard.tenant = 'acme';");
		like(
			$err,
			qr/ERROR:  42501: keys_guard context parameters cannot be set directly/,
			"$user: ALTER ROLE$scope ... SET keys_guard.tenant is refused with 42501");
	}
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM pg_db_role_setting WHERE setrole = '$user'::regrole"),
		'0',
		"$user: nothing was stored for the role");

	($ret, $out, $err) = $node->psql(
		'postgres', $probe,
		connstr => connstr_as($user),
		on_error_stop => 1);
	is($out, '<none>', "$user: no context at login");
	like($err, qr/ERROR:  42501: no tenant context/,
		"$user: tenant rows still need a context");
}

# Nor does a database-level default.
($ret, $out, $err) = $node->psql('postgres',
	$verbose . "ALTER DATABASE postgres SET keys_guard.tenant = 'acme';");
like(
	$err,
	qr/ERROR:  42501: keys_guard context parameters cannot be set directly/,
	'ALTER DATABASE ... SET keys_guard.tenant is refused with 42501');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_db_role_setting"
		  . " WHERE array_to_string(setconfig, ',') LIKE '%keys_guard%'"),
	'0',
	'nothing was stored for the database either');

# The server is still healthy, and a legitimate context still works.
is( $node->safe_psql(
		'postgres', $read_as_acme, connstr => connstr_as('app')),
	"1:acme\n1:acme note",
	'set_context still works for the gateway role');

$node->stop;
done_testing();
