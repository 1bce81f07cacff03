# Copyright and license: see keys_guard's README.
#
# API key secrets never reach the server log (README, "Secrets in the
# server log"):
#   - under full statement logging (log_statement = all,
#     log_min_duration_statement = 0, log_min_error_statement = debug5,
#     every bind parameter, auto_explain with every plan), in every log
#     format (stderr, csvlog, jsonlog), no log file holds any part of a
#     key-shaped secret that passed through simple-protocol statements,
#     PREPARE/EXECUTE, extended-protocol bind parameters, failing
#     statements, RAISE and functions;
#   - the statements were logged all the same, with the marker where the
#     secret was: each step's tag is in every format, followed by the
#     marker;
#   - the check can fail: a control token sent the same ways (not
#     key-shaped, so not redacted) is in every log file;
#   - pg_stat_activity shows a running statement's text redacted, in its
#     own backend and in a parallel worker.
#
# To add a case, add a step to @battery (or call run_step() with SQL and
# the secrets it carries); the checks at the end cover every secret that
# was registered with remember_secret().

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $marker = 'kgk_[REDACTED]';

my $node = PostgreSQL::Test::Cluster->new('secret_log');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard, auto_explain'
keys_guard.min_grace = 0
logging_collector = on
log_destination = 'stderr,csvlog,jsonlog'
log_directory = 'log'
log_statement = all
log_min_duration_statement = 0
log_min_messages = info
log_min_error_statement = debug5
log_error_verbosity = verbose
log_parameter_max_length = -1
log_parameter_max_length_on_error = -1
auto_explain.log_min_duration = 0
auto_explain.log_analyze = on
auto_explain.log_verbose = on
auto_explain.log_nested_statements = on
});
$node->start;
$node->safe_psql('postgres',
	'CREATE EXTENSION keys_guard; CREATE TABLE secret_t (id int, label text);'
	  . " INSERT INTO secret_t VALUES (1, 'one')");

# A random key-shaped secret: the format of the API keys (prefix,
# 32 hex digits of key id, 52 base32 characters, 8 hex digits of
# checksum), not a real key: the checksum is random too, and redaction
# does not look at it.
sub random_chars
{
	my ($alphabet, $n) = @_;
	return join '', map { substr($alphabet, int(rand(length $alphabet)), 1) } 1 .. $n;
}

sub key_shaped_secret
{
	return 'kgk_'
	  . random_chars('0123456789abcdef', 32)
	  . random_chars('abcdefghijklmnopqrstuvwxyz234567', 52)
	  . random_chars('0123456789abcdef', 8);
}

# Every secret the battery sent; the checks at the end look for each.
my @secrets;

sub remember_secret
{
	push @secrets, @_;
	return;
}

# A control token: sent the same ways as the secrets but not key-shaped,
# so it must be in the log (else the grep or the settings are wrong).
my $control = 'ctl' . random_chars('0123456789abcdef', 24);

# Run SQL through psql's simple protocol; errors are expected for some
# steps and do not fail the test (the log is what is checked).
sub run_sql
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	return $ret;
}

# Run a pgbench script once through the extended protocol, with
# variables given as -D name=value, so that each :name is sent as a bind
# parameter ($1, ...).
sub run_extended
{
	my ($script, %vars) = @_;
	my $file = PostgreSQL::Test::Utils::tempdir() . '/step.sql';
	PostgreSQL::Test::Utils::append_to_file($file, $script);
	my @cmd = ('pgbench', '-n', '-M', 'extended', '-t', '1', '-f', $file);
	push @cmd, '-D', "$_=$vars{$_}" for sort keys %vars;
	push @cmd, $node->connstr('postgres');
	my ($out, $err);
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	return;
}

# One step of the battery: a tag (in a comment of each statement, so the
# step's log lines can be found), the way it runs, and the SQL with
# SECRET where a secret goes.  The step gets a fresh secret and is run a
# second time with the control token.  Returns the tag.
sub run_step
{
	my ($tag, $how, $sql) = @_;
	my $secret = key_shaped_secret();
	remember_secret($secret);
	for my $token ($secret, $control)
	{
		(my $text = $sql) =~ s/TAG/$tag/g;
		if ($how eq 'extended')
		{
			# SECRET is the bind parameter :key.
			$text =~ s/SECRET/:key/g;
			run_extended($text, key => $token);
		}
		else
		{
			$text =~ s/SECRET/$token/g;
			run_sql($text);
		}
	}
	return $tag;
}

my @battery = (
	[ 'step_literal', 'simple', q{SELECT /* TAG */ length('SECRET')} ],
	[ 'step_cast_error', 'simple', q{SELECT /* TAG */ 'SECRET'::int} ],
	[
		'step_raise', 'simple',
		q{DO $$ BEGIN RAISE EXCEPTION 'TAG %', 'SECRET' USING DETAIL = 'd SECRET', HINT = 'h SECRET'; END $$}
	],
	[
		'step_notice', 'simple',
		q{DO $$ BEGIN RAISE NOTICE 'TAG %', 'SECRET'; RAISE WARNING 'TAG w SECRET'; END $$}
	],
	[
		'step_prepare', 'simple',
		q{PREPARE p_TAG(text) AS SELECT /* TAG */ length($1); EXECUTE p_TAG('SECRET'); EXECUTE p_TAG('SECRET' || 'x')}
	],
	[
		'step_prepared_literal', 'simple',
		q{PREPARE q_TAG AS SELECT /* TAG */ 'SECRET'::int; EXECUTE q_TAG}
	],
	[
		'step_function', 'simple',
		q{CREATE OR REPLACE FUNCTION f_TAG(k text) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'TAG got %', k; RETURN k::int; END $$; SELECT /* TAG */ f_TAG('SECRET')}
	],
	[
		'step_explain', 'simple',
		q{SELECT /* TAG */ * FROM secret_t WHERE label = 'SECRET' OR id = 1}
	],
	[
		'step_utility', 'simple',
		q{COMMENT /* TAG */ ON TABLE secret_t IS 'SECRET'; ALTER TABLE secret_t ADD CONSTRAINT c_TAG CHECK (label <> 'SECRET'); ALTER TABLE secret_t DROP CONSTRAINT c_TAG}
	],
	[
		'step_multi', 'simple',
		q{SELECT /* TAG */ 1; SELECT /* TAG */ 'SECRET' || 'SECRET'; SELECT /* TAG */ 'SECRET'::int}
	],
	[ 'step_bind', 'extended', q{SELECT /* TAG */ length(SECRET);} ],
	[ 'step_bind_error', 'extended', q{SELECT /* TAG */ SECRET::int;} ],
	[
		'step_bind_explain', 'extended',
		q{SELECT /* TAG */ * FROM secret_t WHERE label = SECRET;}
	],);

my @tags = map { run_step(@$_) } @battery;

# ---------------------------------------------------------------------
# The other secrets (README, "Secrets in the server log"): JSON Web
# Tokens, PASSWORD literals in role statements, password= in connection
# strings and user mappings, and keys_guard.redact_patterns.  Each step
# runs once: SECRET gets a fresh secret of its kind, CONTROL the control
# token (which is no secret of any kind, so it is logged: the statement
# was), and the step's log lines must show the marker [REDACTED].
# ---------------------------------------------------------------------
my $text_marker = '[REDACTED]';
my %marker_of;

sub jwt_secret
{
	my $b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
	return 'eyJ'
	  . random_chars($b64, 30) . '.'
	  . random_chars($b64, 40) . '.'
	  . random_chars($b64, 43);
}

sub password_secret
{
	return 'pw' . random_chars('0123456789abcdefghijklmnopqrstuvwxyz', 24);
}

# keys_guard.redact_patterns (set in postgresql.conf below).
sub pattern_secret
{
	return 'sk_live_' . random_chars('0123456789abcdef', 24);
}

sub run_kind_step
{
	my ($tag, $how, $make_secret, $sql) = @_;
	my %vars;
	(my $text = $sql) =~ s/TAG/$tag/g;
	$text =~ s/CONTROL/$control/g;
	# Each SECRET (or SECRET2, ...) gets its own secret.
	$text =~ s{(SECRET\d*)}{$vars{$1} //= $make_secret->()}ge;
	remember_secret(values %vars);
	if ($how eq 'extended')
	{
		my %bind;
		for my $name (keys %vars)
		{
			$bind{ lc $name } = $vars{$name};
			$text =~ s/\Q$vars{$name}\E/:\L$name/g;
		}
		$bind{ctl} = $control;
		$text =~ s/\Q$control\E/:ctl/g;
		run_extended($text, %bind);
	}
	else
	{
		run_sql($text);
	}
	$marker_of{$tag} = $text_marker;
	return $tag;
}

$node->append_conf('postgresql.conf',
	"keys_guard.redact_patterns = 'sk_live_[0-9a-f]{24}, \"(?i)xyzzy-[a-z]{4}\"'");
$node->reload;
# postgres_fdw is in contrib; the user mapping step needs it.
my $fdw = $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_available_extensions WHERE name = 'postgres_fdw'");

my @kind_battery = (
	# Roles: every quoting, ENCRYPTED, ALTER, a failing statement.
	[ 'kind_role_plain', 'simple', \&password_secret,
		q{CREATE ROLE r_TAG LOGIN PASSWORD 'SECRET' /* TAG CONTROL */} ],
	[ 'kind_role_quotings', 'simple', \&password_secret,
		q{ALTER ROLE /* TAG CONTROL */ r_kind_role_plain ENCRYPTED PASSWORD E'SECRET'; ALTER USER /* TAG */ r_kind_role_plain PASSWORD $$SECRET2$$; ALTER USER /* TAG */ r_kind_role_plain WITH password $pw$SECRET3$pw$ VALID UNTIL 'infinity'} ],
	[ 'kind_role_failing', 'simple', \&password_secret,
		q{CREATE USER r_kind_role_plain PASSWORD 'SECRET' /* TAG CONTROL */} ],
	[ 'kind_role_syntax', 'simple', \&password_secret,
		q{CREATE ROLE r_TAG PASSWORD 'SECRET' NOSUCHOPTION /* TAG CONTROL */} ],
	[ 'kind_role_nested', 'simple', \&password_secret,
		q{DO $$ BEGIN EXECUTE 'CREATE ROLE r_TAG PASSWORD ''SECRET'' /* TAG CONTROL */'; EXECUTE 'CREATE ROLE r_TAG PASSWORD ''SECRET2'''; END $$} ],
	[ 'kind_role_function', 'simple', \&password_secret,
		q{CREATE FUNCTION f_TAG() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN ALTER ROLE r_kind_role_plain PASSWORD 'SECRET'; RAISE EXCEPTION 'TAG CONTROL'; END $f$; SELECT f_TAG()} ],
	# Connection strings.
	[ 'kind_subscription', 'simple', \&password_secret,
		q{CREATE SUBSCRIPTION s_TAG CONNECTION 'host=127.0.0.1 port=1 dbname=nowhere password=SECRET application_name=CONTROL' PUBLICATION p WITH (connect = false)} ],
	[ 'kind_subscription_quoted', 'simple', \&password_secret,
		q{ALTER SUBSCRIPTION s_kind_subscription CONNECTION 'host=127.0.0.1 password = ''SECRET'' application_name=CONTROL'; CREATE SUBSCRIPTION s_TAG CONNECTION 'password=''SECRET2'' host=nowhere.invalid application_name=CONTROL' PUBLICATION p} ],
	[ 'kind_conninfo_literal', 'simple', \&password_secret,
		q{SELECT /* TAG CONTROL */ 'host=x password=SECRET user=u'::int} ],
	# JSON Web Tokens: literals, bind parameters, functions.
	[ 'kind_jwt_literal', 'simple', \&jwt_secret,
		q{SELECT /* TAG CONTROL */ length('SECRET'); SELECT /* TAG */ 'Bearer SECRET2'::int} ],
	[ 'kind_jwt_bind', 'extended', \&jwt_secret,
		q{SELECT /* TAG */ length(SECRET) + length(CONTROL);} ],
	[ 'kind_jwt_bind_error', 'extended', \&jwt_secret,
		q{SELECT /* TAG */ (SECRET || CONTROL)::int;} ],
	[ 'kind_jwt_function', 'simple', \&jwt_secret,
		q{CREATE FUNCTION f_TAG(t text) RETURNS int LANGUAGE plpgsql AS $f$ BEGIN RAISE NOTICE 'TAG CONTROL %', t; RETURN t::int; END $f$; SELECT f_TAG('SECRET')} ],
	[ 'kind_jwt_prepare', 'simple', \&jwt_secret,
		q{PREPARE p_TAG(text) AS SELECT /* TAG CONTROL */ $1::int; EXECUTE p_TAG('SECRET')} ],
	# keys_guard.redact_patterns.
	[ 'kind_pattern_literal', 'simple', \&pattern_secret,
		q{SELECT /* TAG CONTROL */ length('SECRET'); SELECT 'x SECRET2 y'::int} ],
	[ 'kind_pattern_bind', 'extended', \&pattern_secret,
		q{SELECT /* TAG */ (SECRET || CONTROL)::int;} ],
	[ 'kind_pattern_raise', 'simple', \&pattern_secret,
		q{DO $$ BEGIN RAISE WARNING 'TAG CONTROL' USING DETAIL = 'SECRET', HINT = 'SECRET2'; END $$} ],
	[ 'kind_pattern_icase', 'simple', sub { 'XYZZY-' . random_chars('ABCDEFGH', 4) },
		q{SELECT /* TAG CONTROL */ 'SECRET'::int} ],);
if ($fdw)
{
	push @kind_battery,
	  [ 'kind_user_mapping', 'simple', \&password_secret,
		q{CREATE EXTENSION IF NOT EXISTS postgres_fdw; CREATE SERVER sv_TAG FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'nowhere.invalid', dbname 'CONTROL'); CREATE USER MAPPING FOR CURRENT_USER SERVER sv_TAG OPTIONS (user 'u', password 'SECRET'); ALTER USER MAPPING FOR CURRENT_USER SERVER sv_TAG OPTIONS (SET password 'SECRET2'); CREATE USER MAPPING FOR CURRENT_USER SERVER sv_TAG OPTIONS ("password" 'SECRET3')} ];
}

push @tags, map { run_kind_step(@$_) } @kind_battery;

# pg_stat_activity: a statement that runs for a while, with a secret in
# its text, is shown redacted to another session, in its own backend and
# in a parallel worker that runs its plan.
sub check_activity
{
	my ($tag, $settings, $sql, $backend_type, $make_secret) = @_;
	my $secret = $make_secret ? $make_secret->() : key_shaped_secret();
	remember_secret($secret);
	(my $text = $sql) =~ s/SECRET/$secret/g;
	$text =~ s/TAG/$tag/g;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', $settings, '-c', $text ],
		'>', \$out, '2>', \$err);
	my $which =
	    "FROM pg_stat_activity WHERE query LIKE '%$tag%' AND pid <> pg_backend_pid()"
	  . " AND backend_type = '$backend_type'";
	ok($node->poll_query_until('postgres', "SELECT count(*) > 0 $which"),
		"$tag: the running statement is in pg_stat_activity ($backend_type)");
	my $shown = $node->safe_psql('postgres', "SELECT string_agg(query, ' | ') $which");
	unlike($shown, qr/\Q$secret\E/, "$tag: pg_stat_activity does not show the secret");
	like($shown, qr/\Q@{[ $make_secret ? $text_marker : $marker ]}\E/,
		"$tag: pg_stat_activity shows the marker");
	$node->safe_psql('postgres',
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%$tag%'"
		  . " AND pid <> pg_backend_pid() AND backend_type = 'client backend'");
	$h->finish;
	push @tags, $tag;
	$marker_of{$tag} = $text_marker if $make_secret;
	return;
}

check_activity('step_activity', 'SELECT 1',
	q{SELECT /* TAG */ pg_sleep(60) WHERE 'SECRET' IS NOT NULL},
	'client backend');
check_activity(
	'step_parallel',
	'SET force_parallel_mode = on',
	q{SELECT /* TAG */ count(*) FROM generate_series(1, 2000000000) g WHERE 'SECRET' IS NOT NULL},
	'parallel worker');
check_activity('step_activity_jwt', 'SELECT 1',
	q{SELECT /* TAG */ pg_sleep(60) WHERE 'SECRET' IS NOT NULL},
	'client backend', \&jwt_secret);
check_activity('step_activity_password', 'SELECT 1',
	q{SELECT /* TAG */ pg_sleep(60) WHERE 'host=x password=SECRET' IS NOT NULL},
	'client backend', \&password_secret);
check_activity('step_activity_pattern', 'SELECT 1',
	q{SELECT /* TAG */ pg_sleep(60) WHERE 'SECRET' IS NOT NULL},
	'client backend', \&pattern_secret);

# ---------------------------------------------------------------------
# Real API keys: once keys_guard.use_api_key()
# and its siblings exist, add here the steps that use a real key, fail
# to use one (a mistyped and a revoked key), rotate it and revoke it,
# each through run_sql() / run_extended(), and remember_secret() every
# secret create_api_key() and rotate_api_key() returned.
# ---------------------------------------------------------------------

# The last line, so that the collector has written everything before it.
my $done = 'battery_done_' . random_chars('0123456789abcdef', 16);
run_sql("SELECT '$done'");

my $logdir = $node->data_dir . '/log';

sub log_files
{
	opendir(my $dh, $logdir) or die "cannot open $logdir: $!";
	my @files = map { "$logdir/$_" } grep { /\.(log|csv|json)$/ } readdir $dh;
	closedir $dh;
	return (@files, $node->logfile);
}

sub format_of
{
	my ($file) = @_;
	return 'startup' if $file !~ m{/pgdata/log/};
	return $file =~ /\.(csv|json)$/ ? $1 : 'stderr';
}

# Wait until each format has written the last line.
my %content;
for my $try (1 .. 600)
{
	%content = ();
	for my $file (log_files())
	{
		$content{ format_of($file) } .= slurp_file($file);
	}
	last
	  if 3 == grep { defined $content{$_} && index($content{$_}, $done) >= 0 }
	  qw(stderr csv json);
	select(undef, undef, undef, 0.1);
}
for my $format (qw(stderr csv json))
{
	ok(defined $content{$format} && index($content{$format}, $done) >= 0,
		"the $format log has the whole battery");
}

# No part of any secret in any file: the secret, its body without the
# prefix, and any 16 characters of it; nor anything that looks like a key.
for my $file (log_files())
{
	my $text = slurp_file($file);
	my @leaks;
	for my $secret (@secrets)
	{
		if (index($text, $secret) >= 0)
		{
			push @leaks, $secret;
			next;
		}
		for (my $i = 4; $i + 16 <= length $secret; $i++)
		{
			my $piece = substr($secret, $i, 16);
			if (index($text, $piece) >= 0)
			{
				push @leaks, $piece;
				last;
			}
		}
	}
	push @leaks, $1 while $text =~ /(kgk_[0-9A-Za-z_]{20,})/g;
	push @leaks, $1 while $text =~ /(eyJ[0-9A-Za-z_-]+\.[0-9A-Za-z_-]+\.)/g;
	is(join(', ', @leaks), '', "no secret in $file");
}

# The battery was logged: each tag is in every format, and some line of
# it is followed closely by the marker (the same line, or the DETAIL
# line and statement that follow it).  The control token is in every
# format: the checks above would have seen a secret that was logged.
for my $format (qw(stderr csv json))
{
	my $text = $content{$format};
	for my $tag (@tags)
	{
		my $found = 0;
		my $pos = 0;
		while (($pos = index($text, $tag, $pos)) >= 0)
		{
			if (index(substr($text, $pos, 800), $marker_of{$tag} // $marker) >= 0)
			{
				$found = 1;
				last;
			}
			$pos++;
		}
		ok($found, "$format: $tag is logged, with the marker");
	}
	ok(index($text, $control) >= 0,
		"$format: the control token was logged (the check can fail)");
}

done_testing();
