# Copyright and license: see keys_guard's README.
#
# What a client sees of a soft delete (docs/contract.md §7): DELETE on a soft-delete
# table reports "DELETE n" with the number of rows soft-deleted, and
# RETURNING returns them, exactly as for a real delete -- while the rows
# stay in the table, marked with deleted_at, hard_delete_at = deleted_at +
# grace, deleted_by (the actor) and delete_request_id (the request id).
#
# A small libpq client (t/client/delete_tags.c) deletes through every path
# docs/contract.md names: the simple query protocol, PQprepare/PQexecPrepared under
# force_custom_plan, force_generic_plan and the default (eight executions
# each), SQL-level PREPARE/EXECUTE, PQexecParams, PL/pgSQL (static, cached
# past the switch to a generic plan, and dynamic), a SQL function's
# DELETE ... RETURNING, WITH ... DELETE ... RETURNING (as a CTE and at the
# top level), an ON DELETE CASCADE from an unguarded parent into guarded
# children (a tenant-schema table and a pooled table), the soft-delete
# cascade from a guarded parent into a guarded child, MERGE ... WHEN
# MATCHED THEN DELETE (tag "MERGE n"), a superuser, keys_guard.bypass and
# session_replication_role = replica -- and, since docs/contract.md §7 lets no
# statement remove a row physically, through an updatable view, a rule,
# PL/pgSQL's DELETE ... RETURNING INTO and a cursor's WHERE CURRENT OF.
# Each case is one transaction with its own context, as an API server runs
# it.
#
# Then, in SQL: every soft-deleted row is still there, marked by the case
# that deleted it, hidden from ordinary reads, visible to an admin with
# keys_guard.include_deleted; live rows and the other tenant's rows are
# untouched.  A second run of every case deletes nothing (DELETE 0 /
# MERGE 0 / a row count of 0) and moves no hard_delete_at.

use strict;
use warnings;

use FindBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

###########################################################################
# Build the client.
###########################################################################

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $client = "$tmp/delete_tags";
my $source = "$FindBin::RealBin/client/delete_tags.c";

sub pg_config
{
	my ($what) = @_;
	my ($out, $err);
	IPC::Run::run([ 'pg_config', $what ], '>', \$out, '2>', \$err)
	  or BAIL_OUT("pg_config $what failed: $err");
	chomp $out;
	return $out;
}

my ($cc_out, $cc_err);
my $built = IPC::Run::run(
	[
		'cc', '-I' . pg_config('--includedir'),
		$source, '-L' . pg_config('--libdir'),
		'-lpq', '-o', $client
	],
	'>', \$cc_out, '2>', \$cc_err);
ok($built, 'the libpq client t/client/delete_tags.c builds')
  or BAIL_OUT("cc failed: $cc_err");

###########################################################################
# A cluster with keys_guard, two tenants, and the tables the client uses:
#   tenant_acme.items     a table in a tenant schema (ids 1..1100)
#   public.orders         a pooled table (acme ids 1..1100; globex 5011,
#                         5701, 5901 -- 5011 shares acme's 'batch-simple')
#   public.accounts       an unguarded parent, ON DELETE CASCADE into
#   tenant_acme.notes     a guarded tenant-schema child and
#   public.account_tags   a guarded pooled child;
#   tenant_acme.projects  a guarded parent, ON DELETE CASCADE into
#   tenant_acme.tasks     a guarded child;
#   public.items_v        an updatable view over tenant_acme.items;
#   public.item_log       an unguarded table whose rule deletes items.
# Every guarded table has the default grace, 30 days.
###########################################################################

my $node = PostgreSQL::Test::Cluster->new('delete_tags');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'keys_guard'\nkeys_guard.min_grace = 0");
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION keys_guard;
SELECT keys_guard.create_tenant('acme');
SELECT keys_guard.create_tenant('globex');
CREATE ROLE app LOGIN;
GRANT keys_guard_gateway TO app;
CREATE ROLE dba LOGIN SUPERUSER;
CREATE ROLE ops LOGIN;
GRANT keys_guard_admin TO ops;

CREATE TABLE tenant_acme.items (id int PRIMARY KEY, label text NOT NULL);
CREATE TABLE public.orders (id int PRIMARY KEY, tenant_id text NOT NULL, item text NOT NULL);
SELECT keys_guard.protect_table('public.orders', tenant_column => 'tenant_id');
CREATE TABLE public.accounts (id int PRIMARY KEY, owner text NOT NULL);
CREATE TABLE tenant_acme.notes (id int PRIMARY KEY,
    account_id int NOT NULL REFERENCES public.accounts ON DELETE CASCADE,
    body text NOT NULL);
CREATE TABLE public.account_tags (id int PRIMARY KEY, tenant_id text NOT NULL,
    account_id int NOT NULL REFERENCES public.accounts ON DELETE CASCADE,
    tag text NOT NULL);
SELECT keys_guard.protect_table('public.account_tags', tenant_column => 'tenant_id');
CREATE TABLE tenant_acme.projects (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE tenant_acme.tasks (id int PRIMARY KEY,
    project_id int NOT NULL REFERENCES tenant_acme.projects ON DELETE CASCADE,
    title text NOT NULL);
CREATE VIEW public.items_v AS SELECT id, label FROM tenant_acme.items;
CREATE TABLE public.item_log (id int NOT NULL);
CREATE RULE item_log_deletes AS ON INSERT TO public.item_log
    DO ALSO DELETE FROM tenant_acme.items WHERE id = NEW.id;

GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_acme.items, tenant_acme.notes,
    public.orders, public.accounts, public.account_tags, tenant_acme.projects,
    tenant_acme.tasks, public.items_v, public.item_log TO app;
GRANT SELECT ON tenant_acme.items, tenant_acme.notes, public.orders,
    public.account_tags TO ops;

CREATE FUNCTION public.kg_del_plpgsql(ids int[]) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    DELETE FROM tenant_acme.items WHERE id = ANY (ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
CREATE FUNCTION public.kg_del_dynamic(ids int[]) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE 'DELETE FROM public.orders WHERE id = ANY ($1)' USING ids;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
CREATE FUNCTION public.kg_del_into(key int) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE v text;
BEGIN
    DELETE FROM tenant_acme.items WHERE id = key RETURNING label INTO v;
    RETURN coalesce(v, '-') || ':' || FOUND;
END $$;
CREATE FUNCTION public.kg_del_sql(ids int[]) RETURNS SETOF int
    LANGUAGE sql AS $$ DELETE FROM tenant_acme.items WHERE id = ANY (ids) RETURNING id $$;
});

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(relation::text || ':' || soft_delete || ':' || grace, ','"
		  . " ORDER BY relation::text) FROM keys_guard.guarded_tables"),
	'account_tags:true:30 days,orders:true:30 days,'
	  . 'tenant_acme.items:true:30 days,tenant_acme.notes:true:30 days,'
	  . 'tenant_acme.projects:true:30 days,tenant_acme.tasks:true:30 days',
	'the six guarded tables have soft delete with a 30-day grace; accounts and item_log are unguarded'
);

$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT keys_guard.set_context('acme', 'seed') \g /dev/null
INSERT INTO tenant_acme.items SELECT g, 'item ' || g FROM generate_series(1, 1100) g;
INSERT INTO public.orders (id, item) SELECT g, 'order ' || g FROM generate_series(1, 1100) g;
UPDATE public.orders SET item = 'batch-simple' WHERE id IN (11, 12);
INSERT INTO public.accounts VALUES (1, 'acme'), (2, 'acme'), (3, 'acme'), (4, 'acme');
INSERT INTO tenant_acme.notes VALUES
    (1, 1, 'n1'), (2, 1, 'n2'), (3, 2, 'n3'), (4, 3, 'n4'), (5, 3, 'n5'), (6, 4, 'n6');
INSERT INTO public.account_tags (id, account_id, tag) VALUES
    (1, 1, 't1'), (2, 2, 't2'), (3, 2, 't3'), (4, 4, 't4');
INSERT INTO tenant_acme.projects VALUES (1, 'p1'), (2, 'p2'), (3, 'p3'), (4, 'p4');
INSERT INTO tenant_acme.tasks VALUES
    (11, 1, 'a'), (12, 1, 'b'), (21, 2, 'c'), (31, 3, 'd'), (32, 3, 'e'), (41, 4, 'f');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('globex', 'seed') \g /dev/null
INSERT INTO public.orders (id, item) VALUES
    (5011, 'batch-simple'), (5701, 'order 5701'), (5901, 'order 5901');
COMMIT;
});

###########################################################################
# What each case must print: "<PQcmdStatus>|<PQcmdTuples>|<PQntuples>|
# <first column of the rows, sorted>", in the first run and in the second
# (where every row is already soft-deleted).  And which rows each case
# soft-deletes: table => { id => case }.
###########################################################################

my @cases;
my %deleted = map { $_ => {} } qw(items orders notes account_tags projects tasks);

sub expect
{
	my ($name, $run1, $run2, $table, @ids) = @_;
	push @cases, [ $name, $run1, $run2 ];
	$deleted{$table}{$_} = $name foreach @ids;
	return;
}

expect('simple', 'DELETE 2|2|0|', 'DELETE 0|0|0|', 'items', 1, 2);
expect('simple_returning', 'DELETE 3|3|3|3,4,5', 'DELETE 0|0|0|', 'items', 3, 4, 5);
expect('simple_absent', 'DELETE 0|0|0|', 'DELETE 0|0|0|', 'items');
expect('simple_pooled', 'DELETE 2|2|2|11,12', 'DELETE 0|0|0|', 'orders', 11, 12);
foreach my $p (
	[ 'prep_custom', 'items', 101, 1, '0/8' ],
	[ 'prep_generic', 'items', 201, 1, '8/0' ],
	[ 'prep_generic_pooled', 'orders', 201, 1, '8/0' ],
	[ 'prep_auto', 'items', 301, 0, qr{^SELECT 1\|1\|1\|[1-8]/[0-7]$} ])
{
	my ($prefix, $table, $first, $returning, $plans) = @$p;
	foreach my $i (1 .. 8)
	{
		my $id = $first + $i - 1;
		expect("${prefix}_$i",
			$returning ? "DELETE 1|1|1|$id" : 'DELETE 1|1|0|',
			'DELETE 0|0|0|', $table, $id);
	}
	# The plan counts, generic/custom: the plan_cache_mode took effect
	# (under the default, PostgreSQL went generic after five custom plans).
	$plans = "SELECT 1|1|1|$plans" unless ref $plans;
	push @cases, [ "${prefix}_plans", $plans, $plans ];
}
expect('sql_execute_1', 'DELETE 1|1|1|351', 'DELETE 0|0|0|', 'items', 351);
expect('sql_execute_2', 'DELETE 1|1|1|352', 'DELETE 0|0|0|', 'items', 352);
expect('exec_params', 'DELETE 2|2|2|251,252', 'DELETE 0|0|0|', 'orders', 251, 252);
foreach my $i (1 .. 7)
{
	expect("plpgsql_$i", 'SELECT 1|1|1|2', 'SELECT 1|1|1|0', 'items',
		400 + 2 * $i - 1, 400 + 2 * $i);
}
expect('plpgsql_dynamic', 'SELECT 1|1|1|3', 'SELECT 1|1|1|0', 'orders', 451, 452, 453);
expect('plpgsql_returning_into', 'SELECT 1|1|1|item 1054:true', 'SELECT 1|1|1|-:false',
	'items', 1054);
expect('sql_function', 'SELECT 2|2|2|501,502', 'SELECT 0|0|0|', 'items', 501, 502);
expect('with_count', 'SELECT 1|1|1|3', 'SELECT 1|1|1|0', 'orders', 601, 602, 603);
expect('with_select', 'SELECT 2|2|2|611,612', 'SELECT 0|0|0|', 'orders', 611, 612);
expect('with_top', 'DELETE 2|2|2|601,602', 'DELETE 0|0|0|', 'items', 601, 602);
# The unguarded parent rows are deleted for real (so run 2 finds none); the
# guarded children are soft-deleted by the cascade.
expect('cascade_1', 'DELETE 1|1|1|1', 'DELETE 0|0|0|', 'notes', 1, 2);
$deleted{account_tags}{1} = 'cascade_1';
expect('cascade_2', 'DELETE 2|2|0|', 'DELETE 0|0|0|', 'notes', 3, 4, 5);
$deleted{account_tags}{$_} = 'cascade_2' foreach (2, 3);
# A guarded parent: the soft delete cascades into the guarded child.
expect('cascade_guarded', 'DELETE 1|1|1|1', 'DELETE 0|0|0|', 'projects', 1);
$deleted{tasks}{$_} = 'cascade_guarded' foreach (11, 12);
expect('view', 'DELETE 2|2|2|1051,1052', 'DELETE 0|0|0|', 'items', 1051, 1052);
# The rule's DELETE runs with the INSERT, whose tag the client sees.
expect('rule', 'INSERT 0 1|1|0|', 'INSERT 0 1|1|0|', 'items', 1053);
# In run 2 the cursor does not see the deleted row, so it is on no row.
expect('current_of', 'DELETE 1|1|1|1055',
	'ERROR|24000|cursor "c" is not positioned on a row', 'items', 1055);
expect('merge', 'MERGE 2|2|0|', 'MERGE 0|0|0|', 'items', 701, 702);
expect('merge_pooled', 'MERGE 2|2|0|', 'MERGE 0|0|0|', 'orders', 701, 702);
# 711 and 712 are deleted, 713 updated; in run 2 only 713 still matches.
expect('merge_update_or_delete', 'MERGE 3|3|0|', 'MERGE 1|1|0|', 'items', 711, 712);
expect('superuser', 'DELETE 2|2|2|801,802', 'DELETE 0|0|0|', 'items', 801, 802);
expect('superuser_pooled', 'DELETE 2|2|2|801,802', 'DELETE 0|0|0|', 'orders', 801, 802);
expect('bypass', 'DELETE 2|2|2|901,902', 'DELETE 0|0|0|', 'items', 901, 902);
# Under bypass the pooled table is unfiltered: globex's 5901 too.
expect('bypass_pooled', 'DELETE 2|2|2|acme,globex', 'DELETE 0|0|0|', 'orders', 901, 5901);
expect('replica', 'DELETE 2|2|2|1001,1002', 'DELETE 0|0|0|', 'items', 1001, 1002);
expect('replica_pooled', 'DELETE 2|2|2|1001,1002', 'DELETE 0|0|0|', 'orders', 1001, 1002);
expect('cascade_guarded_replica', 'DELETE 1|1|0|', 'DELETE 0|0|0|', 'projects', 2);
$deleted{tasks}{21} = 'cascade_guarded_replica';
expect('cascade_guarded_bypass', 'DELETE 1|1|0|', 'DELETE 0|0|0|', 'projects', 3);
$deleted{tasks}{$_} = 'cascade_guarded_bypass' foreach (31, 32);

my %table_name = (
	items => 'tenant_acme.items',
	orders => 'public.orders',
	notes => 'tenant_acme.notes',
	account_tags => 'public.account_tags',
	projects => 'tenant_acme.projects',
	tasks => 'tenant_acme.tasks');
my %table_rows = (
	items => 1100,
	orders => 1103,
	notes => 6,
	account_tags => 4,
	projects => 4,
	tasks => 6);

my $app = $node->connstr('postgres') . ' user=app';
my $dba = $node->connstr('postgres') . ' user=dba';

# Run the client; returns { case => result } and checks every line once.
sub run_client
{
	my ($run) = @_;
	my ($out, $err);
	my $ok = IPC::Run::run([ $client, $app, $dba, $run ], '>', \$out, '2>', \$err);
	ok($ok, "$run: the client ran") or diag($err);
	my %got;
	my @extra;
	foreach my $line (split /\n/, $out)
	{
		my ($name, $rest) = split /\|/, $line, 2;
		if (exists $got{$name})
		{
			push @extra, $line;
			next;
		}
		$got{$name} = $rest;
	}
	my %known = map { $_->[0] => 1 } @cases;
	push @extra, grep { !$known{$_} } sort keys %got;
	is(join("\n", @extra), '', "$run: the client printed no unexpected line")
	  or diag($out);
	return \%got;
}

# One case's line against its expected text (or pattern).
sub check
{
	my ($got, $expected, $what) = @_;
	return ref $expected
	  ? like($got, $expected, "$what $expected")
	  : is($got, $expected, "$what $expected");
}

# Settings for a superuser session that sees every row, deleted or not.
my $see_all = "SET keys_guard.bypass = on;\n";

###########################################################################
# Run 1.
###########################################################################

my $got = run_client('run1');
foreach my $c (@cases)
{
	my ($name, $run1) = @$c;
	check($got->{$name}, $run1, "run1: $name: the client receives");
}

# Every soft-deleted row is still in its table, and no other row is marked.
foreach my $t (sort keys %deleted)
{
	my @ids = sort { $a <=> $b } keys %{ $deleted{$t} };
	is( $node->safe_psql(
			'postgres', $see_all
			  . "SELECT count(*) || ':' || coalesce(string_agg(id::text, ',' ORDER BY id)"
			  . " FILTER (WHERE deleted_at IS NOT NULL), '')"
			  . " FROM $table_name{$t}"),
		"$table_rows{$t}:" . join(',', @ids),
		"run1: $table_name{$t} keeps all $table_rows{$t} rows; exactly the deleted ones are marked"
	);
}

# Each row is marked by the statement that deleted it: deleted_at, the
# grace (hard_delete_at - deleted_at), the actor and the request id of
# that case's transaction.  Without a context (bypass) the actor is the
# role; there is no request id to check.
foreach my $t (sort keys %deleted)
{
	my @ids = sort { $a <=> $b } keys %{ $deleted{$t} };
	my $expected = join(
		"\n",
		map {
			my $case = $deleted{$t}{$_};
			$case =~ /bypass/
			  ? "$_|30 days|dba|-"
			  : "$_|30 days|actor-$case|req-$case-run1"
		} @ids);
	is( $node->safe_psql(
			'postgres', $see_all . qq{
SELECT id || '|' || (hard_delete_at - deleted_at)::text || '|' || deleted_by || '|'
       || CASE WHEN deleted_by = 'dba' THEN '-' ELSE delete_request_id END
  FROM $table_name{$t} WHERE deleted_at IS NOT NULL ORDER BY id}),
		$expected,
		"run1: $table_name{$t}: deleted_at, hard_delete_at = deleted_at + 30 days, deleted_by, delete_request_id of the deleting case"
	);
}

# Each execution of a prepared statement is its own transaction: a cached
# generic plan marks each row with that transaction's time.
foreach my $t ('items', 'orders')
{
	is( $node->safe_psql(
			'postgres', $see_all
			  . "SELECT count(DISTINCT deleted_at) FROM $table_name{$t} WHERE id BETWEEN 201 AND 208"
		),
		'8',
		"run1: the eight generic-plan executions on $table_name{$t} carry eight transaction times"
	);
}

is( $node->safe_psql(
		'postgres', $see_all . q{
SELECT string_agg(id::text, ',' ORDER BY id) FROM public.accounts;
SELECT label || ':' || (deleted_at IS NULL) FROM tenant_acme.items WHERE id = 713;
SELECT string_agg(id || ':' || (deleted_at IS NULL), ',' ORDER BY id)
  FROM public.orders WHERE tenant_id = 'globex';
}),
	"4\nkept by merge:true\n5011:true,5701:true,5901:false",
	'run1: the unguarded parent rows are gone; MERGE updated the row it did not delete; '
	  . 'globex rows were reached only under bypass');

# The soft-delete cascade gives each child its parent's marks.
is( $node->safe_psql(
		'postgres', $see_all . q{
SELECT count(*) || ':' || count(*) FILTER (WHERE t.deleted_at = p.deleted_at
                                             AND t.hard_delete_at = p.hard_delete_at
                                             AND t.deleted_by = p.deleted_by
                                             AND t.delete_request_id IS NOT DISTINCT FROM p.delete_request_id)
  FROM tenant_acme.tasks t JOIN tenant_acme.projects p ON p.id = t.project_id
 WHERE p.deleted_at IS NOT NULL}),
	'5:5',
	'run1: the five tasks of the three deleted projects carry their project\'s deleted_at, hard_delete_at, deleted_by and request id'
);

# Ordinary reads do not see the deleted rows.
my $app_reads = q{
BEGIN;
SELECT keys_guard.set_context('acme', 'reader') \g /dev/null
SELECT count(*) FROM tenant_acme.items;
SELECT count(*) FROM public.orders;
SELECT count(*) FROM tenant_acme.notes;
SELECT count(*) FROM public.account_tags;
SELECT count(*) FROM tenant_acme.projects;
SELECT count(*) FROM tenant_acme.tasks;
COMMIT;
};
# acme's rows of public.orders: all but globex's three (ids above 5000).
my %acme_rows = (%table_rows, orders => 1100);
my $live = join(
	"\n",
	map {
		my $t = $_;
		$acme_rows{$t} - scalar(grep { $_ < 5000 } keys %{ $deleted{$t} })
	} qw(items orders notes account_tags projects tasks));
is($node->safe_psql('postgres', $app_reads, connstr => $app),
	$live, 'run1: the API role sees only the live rows of each table');

# An admin sees them with keys_guard.include_deleted, not without.
my $admin_reads = q{
BEGIN;
SELECT keys_guard.admin_context('ops', 'check soft delete') \g /dev/null
SELECT count(*) FILTER (WHERE deleted_at IS NOT NULL) FROM tenant_acme.items;
SELECT count(*) FILTER (WHERE deleted_at IS NOT NULL) FROM public.orders;
COMMIT;
};
is( $node->safe_psql(
		'postgres', "SET keys_guard.include_deleted = on;\n" . $admin_reads,
		connstr => $node->connstr('postgres') . ' user=ops'),
	scalar(keys %{ $deleted{items} }) . "\n" . scalar(keys %{ $deleted{orders} }),
	'run1: an admin with keys_guard.include_deleted sees every deleted row');
is( $node->safe_psql(
		'postgres', $admin_reads,
		connstr => $node->connstr('postgres') . ' user=ops'),
	"0\n0",
	'run1: an admin without keys_guard.include_deleted sees no deleted row');

###########################################################################
# Run 2: every row is already soft-deleted.  Nothing matches again, and
# no mark moves.
###########################################################################

my $marks = join(
	"\n",
	map {
		"SELECT '$_', string_agg(concat_ws('|', id, deleted_at, hard_delete_at, deleted_by,"
		  . " delete_request_id), ',' ORDER BY id) FROM $table_name{$_} WHERE deleted_at IS NOT NULL;"
	} sort keys %table_name);
my $before = $node->safe_psql('postgres', $see_all . $marks);

$got = run_client('run2');
foreach my $c (@cases)
{
	my ($name, undef, $run2) = @$c;
	check($got->{$name}, $run2, "run2: $name: a repeated delete gives");
}

is($node->safe_psql('postgres', $see_all . $marks),
	$before,
	'run2: deleted_at, hard_delete_at, deleted_by and delete_request_id of every deleted row are unchanged'
);
foreach my $t (sort keys %deleted)
{
	is( $node->safe_psql(
			'postgres', $see_all
			  . "SELECT count(*) || ':' || count(deleted_at) FROM $table_name{$t}"),
		"$table_rows{$t}:" . scalar(keys %{ $deleted{$t} }),
		"run2: $table_name{$t} still has every row, and no new row is marked");
}

$node->stop;
done_testing();
