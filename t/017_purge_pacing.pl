
# Copyright and license: see keys_guard's README.
#
# The purge worker's pace (docs/contract.md §9, README "Purge pacing"):
#   - the pacing settings and their defaults: purge_batch_size (the most
#     rows of a batch, 50000), purge_batch_time (20ms), purge_batch_delay
#     (50ms), purge_busy_duty (0.01); out-of-range values are refused by
#     PostgreSQL (22023), a session cannot SET them (55P02), and a reload
#     with a bad value keeps the old one;
#   - on a server where nothing else runs, the batch size adapts: the
#     first batch of a run has 1 000 rows, the next ones grow towards
#     purge_batch_time, never beyond purge_batch_size, and the batches
#     follow each other without a pause;
#   - while another session runs a statement (here a pg_sleep()), the
#     worker gives way: its batches shrink, and it pauses between them in
#     proportion to the time they took.  A run that starts after a quiet
#     spell looks at the load first, so already its first batch is short
#     (100 rows, not the idle server's 1 000);
#   - once that session is done, the batches grow again.
# Batch sizes and times are read from the audit records of the purge
# (detail "rows", at = the end of the batch).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('pacing');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard'
keys_guard.min_grace = 0
keys_guard.purge_naptime = 1
keys_guard.database = 'postgres'
max_worker_processes = 16
});
$node->start;

###########################################################################
# Settings.
###########################################################################

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(current_setting(n), ' ' ORDER BY n)
  FROM unnest('{keys_guard.purge_batch_delay,keys_guard.purge_batch_size,
                keys_guard.purge_batch_time,keys_guard.purge_busy_duty}'::text[]) n}),
	'50ms 50000 20ms 0.01',
	'defaults: purge_batch_delay 50ms, purge_batch_size 50000, purge_batch_time 20ms, purge_busy_duty 0.01');

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(name || ':' || context || ':' || coalesce(unit, '') || ':' || min_val || ':' || max_val, ' ' ORDER BY name)
  FROM pg_settings WHERE name IN ('keys_guard.purge_batch_time', 'keys_guard.purge_busy_duty')}),
	'keys_guard.purge_batch_time:sighup:ms:1:1000 keys_guard.purge_busy_duty:sighup::0.001:1',
	'purge_batch_time (ms, 1 to 1000) and purge_busy_duty (0.001 to 1) are sighup settings');

foreach my $bad (
	[ 'keys_guard.purge_busy_duty',   '0' ],
	[ 'keys_guard.purge_busy_duty',   '1.5' ],
	[ 'keys_guard.purge_busy_duty',   "'often'" ],
	[ 'keys_guard.purge_batch_time',  '0' ],
	[ 'keys_guard.purge_batch_time',  "'2s'" ],
	[ 'keys_guard.purge_batch_size',  '0' ],
	[ 'keys_guard.purge_batch_delay', "'-1ms'" ])
{
	my ($name, $value) = @$bad;
	my ($rc, $out, $err) = $node->psql(
		'postgres',
		"ALTER SYSTEM SET $name = $value",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  22023: /, "ALTER SYSTEM SET $name = $value is refused (22023)");
}

my ($rc, $out, $err) = $node->psql(
	'postgres',
	"SET keys_guard.purge_busy_duty = 0.5",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55P02: parameter "keys_guard.purge_busy_duty" cannot be changed now/,
	'a session cannot SET purge_busy_duty (55P02: sighup)');

# A bad value in the configuration file: the reload keeps the old one.
my $log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "keys_guard.purge_batch_time = 0\n");
$node->reload;
$node->wait_for_log(qr/keys_guard\.purge_batch_time/, $log_offset);
is($node->safe_psql('postgres', 'SHOW keys_guard.purge_batch_time'),
	'20ms', 'a reload with purge_batch_time = 0 keeps 20ms');
like(
	slurp_file($node->logfile, $log_offset),
	qr/0 ms is outside the valid range for parameter "keys_guard\.purge_batch_time" \(1 \.\. 1000\)/,
	'the server log says why the value was refused');
$node->adjust_conf('postgresql.conf', 'keys_guard.purge_batch_time', '20');
$node->reload;

###########################################################################
# The batch size adapts: on an idle server, then while another session
# runs a statement, then idle again.  Short busy batches and a short pause
# unit (purge_batch_delay = 10ms, duty 0.01: batches of about 0.1 ms,
# pauses of about 10 ms) keep the busy phase brief.
###########################################################################

$node->safe_psql('postgres', q{
ALTER SYSTEM SET keys_guard.purge_batch_delay = '10ms';
ALTER SYSTEM SET keys_guard.purge_batch_size = 20000;
SELECT pg_reload_conf();
CREATE EXTENSION keys_guard;
CREATE TABLE public.pace (id int PRIMARY KEY, tenant_id text NOT NULL, payload text);
SELECT keys_guard.protect_table('public.pace', tenant_column => 'tenant_id', grace => interval '0');
});

# The rows of one table, the purge records of it after audit id $from.
sub batches
{
	my ($table, $from) = @_;
	my $rows = $node->safe_psql(
		'postgres', qq{
SELECT (detail->>'rows') || ' ' || extract(epoch FROM at) FROM keys_guard.audit_log
 WHERE action = 'purge' AND target = '$table' AND id > $from AND (detail->>'rows')::int > 0
 ORDER BY id});
	return map { [ split / / ] } grep { $_ ne '' } split /\n/, $rows;
}

# Poll once a second, not ten times: every poll is a session running a
# statement, which the worker counts as load.  One session for all polls:
# a new connection runs statements of its own while it starts, long
# enough for the worker's look at the load to see it twice.
my $poller = $node->background_psql('postgres');

sub poll_slowly
{
	my ($query, $expected) = @_;
	foreach (1 .. 180)
	{
		return 1 if $poller->query_safe($query) eq $expected;
		sleep 1;
	}
	return 0;
}

# Rows per second of a run of batches (first batch's rows excluded).
sub rate
{
	my @b = @_;
	my $rows = 0;
	$rows += $b[$_][0] foreach 1 .. $#b;
	return $rows / (($b[-1][1] - $b[0][1]) || 1e-6);
}

sub median
{
	my @v = sort { $a <=> $b } @_;
	return @v ? $v[ int($#v / 2) ] : 0;
}

# Milliseconds between the ends of consecutive batches.
sub gaps_ms
{
	my @b = @_;
	return map { ($b[$_][1] - $b[ $_ - 1 ][1]) * 1000 } 1 .. $#b;
}

my $from = $node->safe_psql('postgres', "SELECT coalesce(max(id), 0) FROM keys_guard.audit_log");
$node->safe_psql('postgres', q{
BEGIN;
SET LOCAL keys_guard.bypass = on;
INSERT INTO public.pace SELECT g, 'a', repeat('x', 40) FROM generate_series(1, 300000) g;
DELETE FROM public.pace WHERE id <= 200000;
COMMIT;
});
# The poll reads the purge's counter, not purge_status: counting the rows
# still waiting takes long enough for the worker's look at the load to
# see the poll twice and start the run at the busy pace.
ok( poll_slowly(
		"SELECT rows_purged = 200000 FROM keys_guard.purge_stats WHERE relid = 'public.pace'::regclass",
		't'),
	'idle server: the worker purges the 200 000 expired rows');
is( $node->safe_psql(
		'postgres',
		"SELECT rows_waiting FROM keys_guard.purge_status WHERE relation = 'public.pace'::regclass"),
	'0', 'idle server: none is left waiting');
my @idle = batches('public.pace', $from);
is($idle[0][0], 1000, 'idle server: the first batch of the run has 1 000 rows');
my $max_idle = (sort { $b <=> $a } map { $_->[0] } @idle)[0];
cmp_ok($max_idle, '>', 1000, "idle server: later batches grow (largest: $max_idle rows)");
cmp_ok($max_idle, '<=', 20000, 'idle server: no batch exceeds purge_batch_size (20 000)');

# Another session runs a statement for as long as the busy phase lasts.
my $sleeper = $node->background_psql('postgres', on_error_stop => 0);
my $sleeper_pid = $sleeper->query_safe('SELECT pg_backend_pid()');
$sleeper->{stdin} .= "SELECT pg_sleep(600);\n";
$sleeper->{run}->pump_nb();
ok( $node->poll_query_until(
		'postgres',
		"SELECT wait_event FROM pg_stat_activity WHERE pid = $sleeper_pid", 'PgSleep'),
	'another session is running a statement (pg_sleep)');

$from = $node->safe_psql('postgres', "SELECT coalesce(max(id), 0) FROM keys_guard.audit_log");
$node->safe_psql('postgres', q{
BEGIN;
SET LOCAL keys_guard.bypass = on;
DELETE FROM public.pace WHERE id <= 300000;
COMMIT;
});
ok( poll_slowly(
		"SELECT count(*) >= 30 FROM keys_guard.audit_log WHERE action = 'purge' AND target = 'public.pace' AND id > $from AND (detail->>'rows')::int > 0",
		't'),
	'busy server: the worker purges batch after batch');
my @busy = batches('public.pace', $from);
@busy = @busy[ 0 .. 29 ];
# The run starts after the worker's naptime, a quiet spell: before its
# first batch the worker looks at the load, sees the pg_sleep twice, and
# starts small.
is($busy[0][0], 100, 'busy server: the worker looks at the load first, and the first batch of the run has 100 rows');
my $max_busy = (sort { $b <=> $a } map { $_->[0] } @busy)[0];
cmp_ok($max_busy, '<', 1000, "busy server: no batch of the run reaches the idle server's first 1 000 rows (largest: $max_busy rows)");
my $busy_gap = median(gaps_ms(@busy[ 1 .. $#busy ]));
cmp_ok($busy_gap, '>=', 5, "busy server: the worker pauses between batches (median gap $busy_gap ms)");
my ($idle_rate, $busy_rate) = (int(rate(@idle)), int(rate(@busy)));
cmp_ok($idle_rate, '>', 10 * $busy_rate,
	"the idle server's purge ($idle_rate rows/s) is more than 10 times the busy server's ($busy_rate rows/s)");

# The session's statement ends: the worker speeds up again.
$node->safe_psql('postgres', "SELECT pg_cancel_backend($sleeper_pid)");
ok( poll_slowly(
		"SELECT rows_waiting = 0 FROM keys_guard.purge_status WHERE relation = 'public.pace'::regclass", 't'),
	'the worker finishes the backlog once the other session is idle');
my @after = grep { $_->[1] > $busy[-1][1] } batches('public.pace', $from);
my $max_after = (sort { $b <=> $a } map { $_->[0] } @after)[0] // 0;
cmp_ok($max_after, '>', 1000, "idle again: the batches grow again (largest: $max_after rows)");
is( $node->safe_psql(
		'postgres', q{
SELECT sum((detail->>'rows')::bigint) FROM keys_guard.audit_log
 WHERE action = 'purge' AND target = 'public.pace' AND outcome = 'ok'}),
	'300000', 'the purge records add up to exactly the 300 000 rows deleted');
is($node->safe_psql('postgres', "SET keys_guard.bypass = on; SELECT count(*) FROM public.pace"),
	'0', 'every purged row is gone');

eval { $sleeper->quit; };
$poller->quit;
$node->stop;
done_testing();
