# Copyright and license: see keys_guard's README.
#
# Every log line has its request (README, "Every log line has its
# request"):
#   - while a request context is set, every server log line of that
#     backend carries "keys_guard: request_id=... tenant=... actor=..." in
#     its server-only detail, in every log format (stderr, csvlog,
#     jsonlog): statement and duration lines, a NOTICE and a WARNING,
#     PostgreSQL's own errors (division by zero, an error in a function,
#     the "current transaction is aborted" that follows);
#   - so one grep for the request id finds every line of the request:
#     the lines from the set_context() call to the ROLLBACK;
#   - the lines before the context and after it carry no request id, and
#     the client never gets the correlation detail;
#   - the worker's lines for dropping a tenant after delete_tenant()
#     carry the request id of that delete_tenant();
#   - the worker's lines for purging rows carry the request ids of the
#     requests that deleted them (a failing purge, rows of two requests),
#     and so does the audit record of a purge.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('log_correlation');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard'
keys_guard.min_grace = 0
keys_guard.purge_naptime = 1
max_worker_processes = 16
logging_collector = on
log_destination = 'stderr,csvlog,jsonlog'
log_directory = 'log'
log_line_prefix = '%m [%p] <%b> '
log_statement = all
log_min_duration_statement = 0
log_min_messages = notice
log_min_error_statement = debug5
log_error_verbosity = default
keys_guard.redact_patterns = 'corr-secret-[0-9]+'
});
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION keys_guard;
SELECT keys_guard.create_tenant('corr');
SELECT keys_guard.create_tenant('gone');
CREATE TABLE tenant_gone.docs (id int PRIMARY KEY);
CREATE TABLE tenant_gone.notes (id int PRIMARY KEY);
CREATE FUNCTION public.corr_fail(n int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'corr_fail called with %', n;
    RETURN 10 / n;
END $$;
});

my $request = 'req-corr-' . join('', map { sprintf('%x', int(rand(16))) } 1 .. 16);
my $begin = 'corr_begin_' . $request;
my $end = 'corr_end_' . $request;

# One session, one statement at a time (psql reads them from stdin).
my ($ret, $out, $err) = $node->psql(
	'postgres', qq{
SELECT '$begin';
BEGIN;
SELECT keys_guard.set_context(tenant => 'corr', actor => 'user_corr', request_id => '$request');
SELECT count(*) FROM pg_class WHERE relname <> 'corr-secret-4242';
DO \$\$ BEGIN RAISE NOTICE 'a notice'; RAISE WARNING 'a warning' USING DETAIL = 'its own detail'; END \$\$;
SELECT public.corr_fail(0);
SELECT 'after the error';
ROLLBACK;
SELECT '$end';
},
	on_error_stop => 0);
unlike($err, qr/request_id=/, 'the client never gets the correlation detail');
like($err, qr/division by zero/, 'the failing statement failed');

my $logdir = $node->data_dir . '/log';

sub slurp_format
{
	my ($ext) = @_;
	opendir(my $dh, $logdir) or die "cannot open $logdir: $!";
	my @files = sort map { "$logdir/$_" } grep { /\.\Q$ext\E$/ } readdir $dh;
	closedir $dh;
	return join '', map { slurp_file($_) } @files;
}

# Entries of each format as { pid, btype, message, detail, all }.
sub parse_json
{
	my @entries;
	for my $line (split /\n/, slurp_format('json'))
	{
		my $e = eval { decode_json($line) } or next;
		push @entries,
		  {
			pid => $e->{pid},
			btype => $e->{backend_type} // '',
			message => $e->{message} // '',
			detail => $e->{detail} // '',
			all => $line
		  };
	}
	return @entries;
}

sub parse_csv
{
	my $text = slurp_format('csv');
	my @entries;
	my @fields;
	while ($text =~ /\G(?:"((?:[^"]|"")*)"|([^,\n]*))(,|\n|\z)/gc)
	{
		my ($field, $sep) = (defined $1 ? $1 : $2, $3);
		$field =~ s/""/"/g;
		push @fields, $field;
		if ($sep ne ',')
		{
			push @entries,
			  {
				pid => $fields[3],
				btype => $fields[23] // '',
				message => $fields[13] // '',
				detail => $fields[14] // '',
				all => join(',', map { $_ // '' } @fields)
			  }
			  if @fields > 14;
			@fields = ();
			last if pos($text) >= length $text;
		}
	}
	return @entries;
}

sub parse_stderr
{
	my @entries;
	my %last;    # pid => the entry its secondary lines belong to
	my $current;
	for my $line (split /\n/, slurp_format('log'))
	{
		if ($line =~ /^\S+ \S+ \S+ \[(\d+)\] <([^>]*)> ([A-Z0-9]+):  (.*)$/)
		{
			my ($pid, $btype, $level, $text) = ($1, $2, $3, $4);
			if ($level =~ /^(DETAIL|HINT|CONTEXT|STATEMENT|QUERY|LOCATION)$/)
			{
				$current = $last{$pid} or next;
				$current->{detail} .= "$text\n" if $level eq 'DETAIL';
				$current->{all} .= "\n$line";
				next;
			}
			$current = {
				pid => $pid,
				btype => $btype,
				message => $text,
				detail => '',
				all => $line
			};
			$last{$pid} = $current;
			push @entries, $current;
		}
		elsif ($line =~ /^\t/ && $current)
		{
			$current->{all} .= "\n$line";
			(my $text = $line) =~ s/^\t//;
			$current->{detail} .= "$text\n";
		}
	}
	return @entries;
}

my %parse = (stderr => \&parse_stderr, csv => \&parse_csv, json => \&parse_json);

# Wait until every format has the last line of the session.
for my $try (1 .. 600)
{
	last if 3 == grep { index(slurp_format($_), $end) >= 0 } qw(log csv json);
	select(undef, undef, undef, 0.1);
}

for my $format (qw(stderr csv json))
{
	my @entries = $parse{$format}->();
	my ($start) = grep { $_->{message} =~ /\Q$begin\E/ } @entries;
	ok($start, "$format: the session's first statement is logged") or next;
	my $pid = $start->{pid};
	my @mine = grep { $_->{pid} eq $pid } @entries;

	# The request: after the set_context() statement line, up to the
	# ROLLBACK statement line (the last line logged before it runs).
	my ($from, $to);
	for my $i (0 .. $#mine)
	{
		$from //= $i + 1 if $mine[$i]{message} =~ /statement: SELECT keys_guard\.set_context/;
		$to = $i if defined $from && !defined $to && $mine[$i]{message} =~ /statement: ROLLBACK/;
	}
	ok(defined $from && defined $to, "$format: the request's lines are found") or next;
	my @request = @mine[ $from .. $to ];
	cmp_ok(scalar @request, '>=', 10, "$format: the request has its lines (" . scalar(@request) . ')');
	my @without = grep { index($_->{detail}, "request_id=$request") < 0 } @request;
	is(join("\n", map { $_->{all} } @without), '',
		"$format: every line of the request carries its request id");
	my @full = grep { $_->{detail} =~ /keys_guard: request_id=\Q$request\E tenant=corr actor=user_corr/ } @request;
	is(scalar @full, scalar @request, "$format: and its tenant and actor");
	for my $what ('division by zero', 'corr_fail called with 0', 'a warning',
		'current transaction is aborted', 'duration:')
	{
		ok((grep { index($_->{message}, $what) >= 0 } @request),
			"$format: the request's lines include \"$what\"");
	}
	# The warning keeps its own detail, before the correlation.
	ok((grep { $_->{detail} =~ /^its own detail\nkeys_guard: request_id=/ } @request),
		"$format: a line's own detail is kept, the correlation follows it");

	# One grep for the request id finds exactly the request's lines.
	my @found = grep { index($_->{all}, "request_id=$request") >= 0 } @entries;
	is(scalar @found, scalar(@request), "$format: a grep for the request id finds the request's lines");

	# Before and after: no request id.
	my @outside = grep { index($_->{detail}, 'request_id=') >= 0 } (@mine[ 0 .. $from - 1 ], @mine[ $to + 1 .. $#mine ]);
	is(scalar @outside, 0, "$format: lines outside the request carry no request id");
}

# redact_patterns set in postgresql.conf at startup works in every format.
for my $ext (qw(log csv json))
{
	my $text = slurp_format($ext);
	ok(index($text, 'corr-secret-4242') < 0 && index($text, "relname <> '[REDACTED]'") >= 0,
		"$ext: a keys_guard.redact_patterns match set at startup is redacted");
}

# ---------------------------------------------------------------------
# The worker: dropping a tenant after delete_tenant() carries the
# request id of that delete_tenant().
# ---------------------------------------------------------------------
my $drop_request = 'req-drop-' . join('', map { sprintf('%x', int(rand(16))) } 1 .. 16);
$node->safe_psql(
	'postgres', qq{
BEGIN;
SELECT keys_guard.admin_context(actor => 'ops', reason => 'corr test', request_id => '$drop_request');
SELECT count(*) FROM keys_guard.delete_tenant('gone', grace => interval '0');
COMMIT;
});
ok( $node->poll_query_until(
		'postgres', "SELECT status FROM keys_guard.tenants WHERE id = 'gone'", 'purged'),
	'the worker drops the deleted tenant');
$node->safe_psql('postgres', "SELECT 'worker_done_$drop_request'");
for my $try (1 .. 600)
{
	last if 3 == grep { index(slurp_format($_), "worker_done_$drop_request") >= 0 } qw(log csv json);
	select(undef, undef, undef, 0.1);
}
for my $format (qw(stderr csv json))
{
	my @worker = grep { $_->{btype} eq 'keys_guard worker' && $_->{message} =~ /drop cascades/ }
	  $parse{$format}->();
	ok(scalar @worker, "$format: the worker's drop of tenant_gone is logged") or next;
	my @without = grep { index($_->{detail}, "request_id=$drop_request") < 0 } @worker;
	is(join("\n", map { $_->{all} } @without), '',
		"$format: the worker's lines for the drop carry the request id of delete_tenant()");
}

# ---------------------------------------------------------------------
# The worker: a purge's lines name the requests whose rows it removes.
# public.corr_held refuses the hard delete of its rows (a trigger), so
# the worker's purge fails there, again at every naptime; public.corr_gone
# is purged.
# ---------------------------------------------------------------------
my $hex = sub { join('', map { sprintf('%x', int(rand(16))) } 1 .. 16) };
my ($purge_a, $purge_b, $purge_c) = map { "req-purge-$_-" . $hex->() } qw(a b c);
$node->safe_psql(
	'postgres', q{
CREATE TABLE public.corr_held (id int PRIMARY KEY, tenant_id text NOT NULL);
SELECT keys_guard.protect_table('public.corr_held', tenant_column => 'tenant_id', grace => interval '0');
CREATE FUNCTION public.corr_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.deleted_at IS NOT NULL THEN
        RAISE EXCEPTION 'corr_held keeps its rows';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER corr_refuse BEFORE DELETE ON public.corr_held
    FOR EACH ROW EXECUTE FUNCTION public.corr_refuse();
CREATE TABLE public.corr_gone (id int PRIMARY KEY, tenant_id text NOT NULL);
SELECT keys_guard.protect_table('public.corr_gone', tenant_column => 'tenant_id', grace => interval '0');
});
for my $case ([ $purge_a, 'corr_held', 1 ], [ $purge_b, 'corr_held', 2 ], [ $purge_c, 'corr_gone', 3 ])
{
	my ($req, $table, $id) = @$case;
	$node->safe_psql(
		'postgres', qq{
BEGIN;
SELECT keys_guard.set_context(tenant => 'corr', actor => 'user_corr', request_id => '$req');
INSERT INTO public.$table VALUES ($id, 'corr');
DELETE FROM public.$table WHERE id = $id;
COMMIT;
});
}
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM keys_guard.audit_log WHERE action = 'purge'"
		  . " AND outcome = 'error' AND target = 'public.corr_held'"),
	'the worker tried to purge corr_held and failed');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM keys_guard.audit_log WHERE action = 'purge'"
		  . " AND outcome = 'ok' AND target = 'public.corr_gone'"),
	'the worker purged corr_gone');
is( $node->safe_psql(
		'postgres',
		"SELECT request_id || ' ' || (detail->>'request_ids') FROM keys_guard.audit_log"
		  . " WHERE action = 'purge' AND outcome = 'ok' AND target = 'public.corr_gone'"),
	"$purge_c $purge_c",
	'the audit record of a purge names the request whose rows it removed');
like(
	$node->safe_psql(
		'postgres',
		"SELECT request_id FROM keys_guard.audit_log WHERE action = 'purge'"
		  . " AND outcome = 'error' AND target = 'public.corr_held' ORDER BY id LIMIT 1"),
	qr/^(\Q$purge_a,$purge_b\E|\Q$purge_b,$purge_a\E)$/,
	'the record of the failed purge names both requests');
$node->safe_psql('postgres', "SELECT 'purge_done_$purge_a'");
for my $try (1 .. 600)
{
	last if 3 == grep { index(slurp_format($_), "purge_done_$purge_a") >= 0 } qw(log csv json);
	select(undef, undef, undef, 0.1);
}
for my $format (qw(stderr csv json))
{
	my @worker =
	  grep { $_->{btype} eq 'keys_guard worker' && $_->{message} =~ /purge of public\.corr_held failed/ }
	  $parse{$format}->();
	ok(scalar @worker, "$format: the worker's failed purge of corr_held is logged") or next;
	my @without = grep {
		index($_->{detail}, "request_id=") < 0
		  || index($_->{detail}, $purge_a) < 0
		  || index($_->{detail}, $purge_b) < 0
	} @worker;
	is(join("\n", map { $_->{all} } @without), '',
		"$format: the worker's lines for the purge carry the ids of both requests");
}

done_testing();
