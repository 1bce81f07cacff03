
# Copyright and license: see keys_guard's README.
#
# keys_guard behind PgBouncer (docs/contract.md §3, §6):
#   - transaction pooling with a small pool (2 server connections) shared by
#     20 concurrent clients, each in its own tenant, each looping
#     BEGIN; set_context(own tenant); read a pooled table and its schema's
#     table; COMMIT; then statements outside any context: every row a client
#     reads is its own tenant's, and outside a transaction it has no
#     context, no actor, no tenant schema on search_path, and is denied
#     (42501 no tenant context) -- zero leaks;
#   - a session-wide context (is_local => false) through the pooler is
#     refused with 55000 naming keys_guard.allow_session_context, both in a
#     transaction that holds a server connection and mixed into the clients'
#     loops, so it can never be handed on to the next client;
#   - a connection option (PGOPTIONS) cannot turn the setting on for a
#     non-superuser (a superuser's can);
#   - session pooling for a role a superuser allowed session contexts:
#     server_reset_query = DISCARD ALL ends a client's session context
#     before the next client gets the server connection.
#
# Needs Debian's pgbouncer package (scripts/deps.sh); pgbouncer refuses to
# run as root, and the suite runs as the postgres user.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($pgbouncer) = grep { -x $_ }
  ((map { "$_/pgbouncer" } split(/:/, $ENV{PATH} // '')),
	'/usr/sbin/pgbouncer');
die "pgbouncer not found: install it (scripts/deps.sh)\n"
  unless defined $pgbouncer;

my $n_clients = 20;
my $n_loops = 25;
my $rows_per_tenant = 3;
my $pool_size = 2;

my $node = PostgreSQL::Test::Cluster->new('pgbouncer');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard'
max_worker_processes = 16
});
$node->start;

my @tenants = map { sprintf('t%02d', $_) } 1 .. $n_clients;

$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION keys_guard;
CREATE ROLE app LOGIN;
GRANT keys_guard_gateway TO app;
-- A role for the session-pooled part at the end.
CREATE ROLE sess LOGIN;
GRANT keys_guard_gateway TO sess;
CREATE TABLE public.items (id serial PRIMARY KEY, tenant_id text NOT NULL, v text NOT NULL);
SELECT keys_guard.protect_table('public.items', tenant_column => 'tenant_id');
GRANT SELECT ON public.items TO app, sess;
DO \$\$
DECLARE
	t text;
BEGIN
	FOR i IN 1..$n_clients LOOP
		t := format('t%s', lpad(i::text, 2, '0'));
		PERFORM keys_guard.create_tenant(t);
		EXECUTE format('CREATE TABLE tenant_%s.notes (tenant text NOT NULL)', t);
		EXECUTE format('GRANT USAGE ON SCHEMA tenant_%s TO app, sess', t);
		EXECUTE format('GRANT SELECT ON tenant_%s.notes TO app, sess', t);
	END LOOP;
END
\$\$;
});
$node->safe_psql(
	'postgres', qq{
BEGIN;
DO \$\$
DECLARE
	t text;
BEGIN
	FOR i IN 1..$n_clients LOOP
		t := format('t%s', lpad(i::text, 2, '0'));
		PERFORM keys_guard.set_context(t, 'seed');
		EXECUTE format('INSERT INTO tenant_%s.notes VALUES (%L)', t, t);
		INSERT INTO public.items (tenant_id, v)
			SELECT t, 'item ' || g FROM generate_series(1, $rows_per_tenant) g;
	END LOOP;
	PERFORM keys_guard.clear_context();
END
\$\$;
COMMIT;
});

###########################################################################
# PgBouncer in transaction mode in front of the cluster, listening on a
# free localhost port; one session-mode database alias for the mix.
###########################################################################

my $dir = PostgreSQL::Test::Utils::tempdir('pgbouncer');
my $bport = PostgreSQL::Test::Cluster::get_free_port();
my $host = $node->host;
my $port = $node->port;

PostgreSQL::Test::Utils::append_to_file("$dir/userlist.txt",
	qq{"app" ""\n"sess" ""\n});
PostgreSQL::Test::Utils::append_to_file(
	"$dir/pgbouncer.ini", qq{
[databases]
postgres = host=$host port=$port dbname=postgres
postgres_session = host=$host port=$port dbname=postgres pool_mode=session pool_size=1

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = $pool_size
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
; DISCARD ALL when a session-mode client leaves; transaction-mode pools run
; no reset query (server_reset_query_always = 0, the default), as in the
; deployments that leaked.
server_reset_query = DISCARD ALL
server_reset_query_always = 0
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
});

my ($bouncer_out, $bouncer_err) = ('', '');
my $bouncer = IPC::Run::start([ $pgbouncer, "$dir/pgbouncer.ini" ],
	'>', \$bouncer_out, '2>', \$bouncer_err);

# Stop pgbouncer however the test ends.
END
{
	if ($bouncer && $bouncer->pumpable)
	{
		$bouncer->signal('INT');
		$bouncer->finish;
	}
}

sub bouncer_connstr
{
	my ($user, $dbname) = @_;
	$dbname //= 'postgres';
	return "host=127.0.0.1 port=$bport dbname=$dbname user=$user";
}

# Run a psql script through pgbouncer; returns ($ret, $stdout, $stderr).
sub through_bouncer
{
	my ($user, $sql, $dbname) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			'psql', '-XAtq', '-v', 'VERBOSITY=verbose',
			'-d', bouncer_connstr($user, $dbname), '-f', '-'
		],
		'<', \$sql, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return ($? >> 8, $out, $err);
}

my $up = 0;
foreach (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	my ($ret, $out) = through_bouncer('app', 'SELECT 1');
	if ($ret == 0 && $out eq "1\n")
	{
		$up = 1;
		last;
	}
	select(undef, undef, undef, 0.1);
}
ok($up, "pgbouncer accepts connections on port $bport")
  or BAIL_OUT("pgbouncer did not start: $bouncer_err");

###########################################################################
# A session-wide context through the pooler is refused, also while the
# client holds a server connection in a transaction.  Two such clients at
# once hold both server connections: had either context been set, every
# later client would inherit one of them.
###########################################################################

my $seq = 0;

# A client that keeps its connection to pgbouncer open between scripts.
sub open_client
{
	my ($user) = @_;
	my %c = (in => '', out => '', err => '');
	$c{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'VERBOSITY=verbose', '-d', bouncer_connstr($user) ],
		'<', \$c{in}, '>', \$c{out}, '2>', \$c{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%c;
}

# Send $sql to an open client and wait until it has run; returns
# ($stdout, $stderr) of that script.
sub client_run
{
	my ($c, $sql) = @_;
	my $marker = 'kg_done_' . ++$seq;
	$c->{out} = '';
	$c->{err} = '';
	# The marker on both streams: stderr may arrive after stdout.
	$c->{in} .= "$sql\n\\echo $marker\n\\warn $marker\n";
	$c->{h}->pump
	  until $c->{out} =~ /^$marker$/m && $c->{err} =~ /^$marker$/m;
	(my $out = $c->{out}) =~ s/^$marker\n//m;
	(my $err = $c->{err}) =~ s/^$marker\n//m;
	return ($out, $err);
}

my @holders = map { open_client('app') } 1 .. $pool_size;
my @held_pids;
foreach my $i (0 .. $#holders)
{
	my $t = $tenants[$i];
	my ($out, $err) = client_run($holders[$i],
		"BEGIN;\nSELECT pg_backend_pid();\n"
		  . "SELECT keys_guard.set_context('$t', 'intruder_$t', is_local => false);");
	push @held_pids, $out =~ /^(\d+)$/m;
	like(
		$err,
		qr/ERROR:  55000: session-wide keys_guard context not allowed.*HINT:  [^\n]*keys_guard\.allow_session_context/s,
		"a session-wide context for $t through pgbouncer is refused with 55000, the hint names the setting"
	);
}
is(scalar(keys %{ { map { $_ => 1 } @held_pids } }),
	$pool_size, "the $pool_size clients in a transaction hold $pool_size different server connections");
foreach my $c (@holders)
{
	client_run($c, 'COMMIT;');
	$c->{in} .= "\\q\n";
	$c->{h}->finish;
}

# The same, outside a transaction block, and by an admin_context.
my ($ret, $out, $err) = through_bouncer('app',
	"SELECT keys_guard.set_context('t01', 'intruder', is_local => false);");
like($err, qr/ERROR:  55000: session-wide keys_guard context not allowed/,
	'a session-wide context outside a transaction block through pgbouncer is refused with 55000');

# Every server connection is clean afterwards.
my $clean_script = join('',
	map {
		"SELECT 'bare', coalesce(keys_guard.current_tenant(), '-'), coalesce(keys_guard.current_actor(), '-'), "
		  . "current_setting('search_path') !~ 'tenant_';\n"
		  . "SELECT 'leak', tenant_id FROM public.items;\n"
	  } 1 .. 2 * $pool_size);
($ret, $out, $err) = through_bouncer('app', $clean_script);
is($out, "bare|-|-|t\n" x (2 * $pool_size),
	'after the refusals, clients that set no context have none: no tenant, no actor, no tenant schema, no rows');
is(scalar(() = $err =~ /ERROR:  42501: no tenant context/g),
	2 * $pool_size, 'and reading the pooled table without a context is denied (42501)');

###########################################################################
# A connection option cannot turn the setting on for a non-superuser
# (pgbouncer does not pass options on, so this is a direct connection).
###########################################################################

{
	local $ENV{PGOPTIONS} = '-c keys_guard.allow_session_context=on';
	my ($pret, $pout, $perr) = $node->psql(
		'postgres', 'SHOW keys_guard.allow_session_context',
		connstr => $node->connstr('postgres') . ' user=app');
	isnt($pret, 0, 'PGOPTIONS -c keys_guard.allow_session_context=on: connection refused for a non-superuser');
	like(
		$perr,
		qr/permission denied to set parameter "keys_guard\.allow_session_context"/,
		'... with permission denied to set parameter');
	# A superuser's own connection option is a superuser's choice.
	($pret, $pout, $perr) =
	  $node->psql('postgres', 'SHOW keys_guard.allow_session_context');
	is($pout, 'on', '... while a superuser may turn it on for its own connection');
}

###########################################################################
# 20 concurrent clients, each in its own tenant, through 2 server
# connections.  Every 5th loop also tries a session-wide context, which must
# be refused; it would otherwise reach the other clients.
###########################################################################

sub client_script
{
	my ($t) = @_;
	my $sql = "";
	foreach my $i (1 .. $n_loops)
	{
		$sql .= qq{BEGIN;
SELECT keys_guard.set_context('$t', 'user_$t', 'req-$t-$i') \\g /dev/null
SELECT 'tx', pg_backend_pid(), keys_guard.current_tenant(), keys_guard.current_actor();
SELECT 'row', tenant_id FROM public.items ORDER BY id;
SELECT 'note', tenant FROM notes;
SELECT pg_sleep(0.002) \\g /dev/null
COMMIT;
SELECT 'bare', pg_backend_pid(), coalesce(keys_guard.current_tenant(), '-'), coalesce(keys_guard.current_actor(), '-'), current_setting('search_path') !~ 'tenant_';
SELECT 'leak', tenant_id FROM public.items;
SELECT 'leaknote', tenant FROM notes;
};
		$sql .=
		  "SELECT 'session', keys_guard.set_context('$t', 'user_$t', is_local => false);\n"
		  if $i % 5 == 0;
	}
	return $sql;
}

my @clients;
foreach my $t (@tenants)
{
	# Files, not pipes: the clients run at once without being pumped.
	my %c = (tenant => $t, file => "$dir/client_$t");
	PostgreSQL::Test::Utils::append_to_file("$c{file}.sql", client_script($t));
	$c{h} = IPC::Run::start(
		[
			'psql', '-XAtq', '-v', 'VERBOSITY=verbose',
			'-d', bouncer_connstr('app'), '-f', "$c{file}.sql"
		],
		'<', \undef, '>', "$c{file}.out", '2>', "$c{file}.err",
		IPC::Run::timeout(3 * $PostgreSQL::Test::Utils::timeout_default));
	push @clients, \%c;
}
foreach my $c (@clients)
{
	$c->{h}->finish;
	$c->{out} = PostgreSQL::Test::Utils::slurp_file("$c->{file}.out");
	$c->{err} = PostgreSQL::Test::Utils::slurp_file("$c->{file}.err");
}

my (%pids, %clients_of_pid);
my ($leaks, $bad_lines, $short) = (0, 0, 0);
my ($no_context_denials, $no_schema, $session_refusals, $other_errors) = (0, 0, 0, 0);
foreach my $c (@clients)
{
	my $t = $c->{tenant};
	my %count;
	foreach my $line (split /\n/, $c->{out})
	{
		my ($kind, @f) = split /\|/, $line;
		$count{$kind}++;
		if ($kind eq 'tx')
		{
			$pids{ $f[0] } = 1;
			$clients_of_pid{ $f[0] }{$t} = 1;
			$leaks++, diag("$t: tx $line") unless "$f[1]|$f[2]" eq "$t|user_$t";
		}
		elsif ($kind eq 'row' || $kind eq 'note')
		{
			$leaks++, diag("$t: $line") unless $f[0] eq $t;
		}
		elsif ($kind eq 'bare')
		{
			$leaks++, diag("$t: $line") unless "$f[1]|$f[2]|$f[3]" eq '-|-|t';
		}
		elsif ($kind eq 'leak' || $kind eq 'leaknote' || $kind eq 'session')
		{
			$leaks++;
			diag("$t: $line");
		}
		else
		{
			$bad_lines++;
			diag("$t: unexpected output: $line");
		}
	}
	# Every loop ran to the end: the counts rule out vacuous success.
	foreach my $want ([ tx => $n_loops ], [ row => $n_loops * $rows_per_tenant ],
		[ note => $n_loops ], [ bare => $n_loops ])
	{
		my ($kind, $n) = @$want;
		next if ($count{$kind} // 0) == $n;
		$short++;
		diag("$t: $kind lines: " . ($count{$kind} // 0) . ", expected $n");
	}
	my $e = $c->{err};
	my $denied = () = $e =~ /ERROR:  42501: no tenant context$/mg;
	my $missing = () = $e =~ /ERROR:  42P01: relation "notes" does not exist$/mg;
	my $refused = () = $e =~ /ERROR:  55000: session-wide keys_guard context not allowed$/mg;
	my $errors = () = $e =~ /ERROR:/g;
	$no_context_denials += $denied;
	$no_schema += $missing;
	$session_refusals += $refused;
	$other_errors += $errors - $denied - $missing - $refused;
	diag("$t: stderr: $e") if $errors != $denied + $missing + $refused;
}

is($leaks, 0,
	"$n_clients clients x $n_loops transactions through $pool_size pooled server connections: zero leaks "
	  . '(every row, note, tenant and actor is the client\'s own; nothing outside a transaction)');
is($short + $bad_lines, 0, 'every client ran every loop to the end');
is($no_context_denials, $n_clients * $n_loops,
	'every read of the pooled table outside a transaction was denied: no tenant context (42501)');
is($no_schema, $n_clients * $n_loops,
	'outside a transaction no tenant schema is on search_path (42P01 for notes)');
is($session_refusals, $n_clients * int($n_loops / 5),
	'every session-wide set_context in the loops was refused (55000)');
is($other_errors, 0, 'no other errors');
is(scalar(keys %pids), $pool_size,
	"the $n_clients clients shared the pool's $pool_size server connections");
ok((grep { keys %{ $clients_of_pid{$_} } > 1 } keys %clients_of_pid),
	'server connections really were shared between clients of different tenants');

###########################################################################
# Session pooling for a role a superuser allowed session contexts:
# server_reset_query = DISCARD ALL ends one client's session context before
# the next client gets the (single) server connection.
###########################################################################

($ret, $out, $err) = $node->psql('postgres',
	'ALTER ROLE sess SET keys_guard.allow_session_context = on;');
is($ret, 0, 'a superuser allows session contexts for a role (ALTER ROLE ... SET)');
($ret, $out, $err) = through_bouncer(
	'sess', q{
SELECT pg_backend_pid();
SELECT keys_guard.set_context('t01', 'first_client', is_local => false) \g /dev/null
SELECT keys_guard.current_tenant(), keys_guard.current_actor();
}, 'postgres_session');
my ($first_pid) = $out =~ /^(\d+)$/m;
like($out, qr/^t01\|first_client$/m,
	'session pooling, a role with allow_session_context: a session-wide context is allowed');
($ret, $out, $err) = through_bouncer(
	'sess', q{
SELECT pg_backend_pid();
SELECT coalesce(keys_guard.current_tenant(), '-'), coalesce(keys_guard.current_actor(), '-');
SELECT 'leak', tenant_id FROM public.items;
}, 'postgres_session');
my ($second_pid) = $out =~ /^(\d+)$/m;
is($second_pid, $first_pid, 'the next client gets the same server connection');
like($out, qr/^-\|-$/m, '... without the previous client\'s context (DISCARD ALL)');
unlike($out, qr/^leak/m, '... and reads no rows');
like($err, qr/ERROR:  42501: no tenant context/, '... but is denied: no tenant context');

###########################################################################
# Stop pgbouncer.
###########################################################################

$bouncer->signal('INT');
$bouncer->finish;
ok(!$bouncer->pumpable, 'pgbouncer stopped');
$node->stop;

done_testing();
