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
#   - pg_stat_activity shows a running statement's text redacted (sent as
#     a simple query, or as Parse, Bind and Execute messages), in its
#     own backend and in a parallel worker;
#   - real keys (issue 12): a read and a write key issued (the secret a
#     result column, the write key's WARNING logged), used by a keyholder
#     login as a literal and as a bind parameter, refused (a wrong secret
#     with a valid checksum, a truncated, an expired and a revoked one,
#     the old key after a rotation's overlap; each ERROR and LOG line with
#     its statement and reason), a write under a read key refused,
#     rotated and revoked: no part of any of those secrets in any log
#     file, in keys_guard.audit_log or in what the clients were told, and
#     none in pg_stat_activity while a statement using a key runs or after
#     one failed with a syntax error.
#
# To add a case, add a step to @battery (or call run_step() with SQL and
# the secrets it carries); the checks at the end cover every secret that
# was registered with remember_secret().

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
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
	return run_extended_as(undef, $script, %vars);
}

# The same as a given login role (undef: the bootstrap superuser).
# Returns true if pgbench succeeded, and what it printed.
sub run_extended_as
{
	my ($user, $script, %vars) = @_;
	my $file = PostgreSQL::Test::Utils::tempdir() . '/step.sql';
	PostgreSQL::Test::Utils::append_to_file($file, $script);
	my @cmd = ('pgbench', '-n', '-M', 'extended', '-t', '1', '-f', $file);
	push @cmd, '-D', "$_=$vars{$_}" for sort keys %vars;
	push @cmd, $node->connstr('postgres') . (defined $user ? " user=$user" : '');
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	return ($ok, $out . $err);
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
	my ($tag, $settings, $sql, $backend_type, %opt) = @_;
	my $make_secret = $opt{make_secret};
	my $secret = $opt{secret} // ($make_secret ? $make_secret->() : key_shaped_secret());
	remember_secret($secret);
	(my $text = $sql) =~ s/SECRET/$secret/g;
	$text =~ s/TAG/$tag/g;
	my $connstr =
	  $node->connstr('postgres') . (defined $opt{user} ? " user=$opt{user}" : '');
	my ($out, $err) = ('', '');
	my @cmd = ('psql', '-X', '-d', $connstr, '-c', $settings, '-c', $text);
	# protocol => 'extended' or 'prepared': pgbench sends the statements
	# as Parse, Bind and Execute messages, and PostgreSQL reports the text
	# again at each, the Execute's from a copy of the portal's.
	if (my $mode = $opt{protocol})
	{
		my $file = PostgreSQL::Test::Utils::tempdir() . "/$tag.sql";
		PostgreSQL::Test::Utils::append_to_file($file, "$settings;\n$text;\n");
		@cmd = ('pgbench', '-n', '-M', $mode, '-t', '1', '-f', $file, $connstr);
	}
	my $h = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err);
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
# Without statement logging in the session: a log line at the Execute
# message would redact pg_stat_activity by itself (emit_log_hook), and
# hide whether the executor's hooks do.
check_activity('step_activity_extended', "SET log_statement = 'none'",
	q{SELECT /* TAG */ pg_sleep(60) WHERE 'SECRET' IS NOT NULL},
	'client backend', protocol => 'extended');
check_activity('step_activity_prepared', "SET log_statement = 'none'",
	q{SELECT /* TAG */ pg_sleep(60) WHERE 'SECRET' IS NOT NULL},
	'client backend', protocol => 'prepared');
check_activity('step_activity_utility', "SET log_statement = 'none'",
	q{DO $$ BEGIN PERFORM pg_sleep(60); END $$ /* TAG SECRET */},
	'client backend', protocol => 'extended');
check_activity('step_activity_jwt', 'SELECT 1',
	q{SELECT /* TAG */ pg_sleep(60) WHERE 'SECRET' IS NOT NULL},
	'client backend', make_secret => \&jwt_secret);
check_activity('step_activity_password', 'SELECT 1',
	q{SELECT /* TAG */ pg_sleep(60) WHERE 'host=x password=SECRET' IS NOT NULL},
	'client backend', make_secret => \&password_secret);
check_activity('step_activity_pattern', 'SELECT 1',
	q{SELECT /* TAG */ pg_sleep(60) WHERE 'SECRET' IS NOT NULL},
	'client backend', make_secret => \&pattern_secret);

# ---------------------------------------------------------------------
# Real API keys: keys that create_api_key() and rotate_api_key() issued,
# used, refused, rotated and revoked under the same logging.  Every
# secret they returned, and every near miss sent (a wrong secret with a
# valid checksum, a truncated one), is remembered, so the checks at the
# end look for each in every log file; the audit log and what the clients
# were told are checked here too.
# ---------------------------------------------------------------------

# CRC-32C (Castagnoli, reflected 0x82F63B78) in lower-case hex: the
# checksum of a secret (of its first 88 characters), to make a wrong
# secret that passes the shape check.
sub crc32c
{
	my ($s) = @_;
	my $crc = 0xFFFFFFFF;
	for my $byte (unpack 'C*', $s)
	{
		$crc ^= $byte;
		$crc = ($crc & 1) ? (($crc >> 1) ^ 0x82F63B78) : ($crc >> 1) for 1 .. 8;
	}
	return sprintf '%08x', $crc ^ 0xFFFFFFFF;
}

# A tenant with a guarded table, and the tool's login: a keyholder with
# SELECT (and INSERT, for the write key) on it.
$node->safe_psql(
	'postgres', q{
SELECT keys_guard.create_tenant('keyco');
CREATE TABLE tenant_keyco.things (id int PRIMARY KEY, label text);
BEGIN;
SELECT keys_guard.set_context('keyco', 'setup');
INSERT INTO tenant_keyco.things VALUES (1, 'one'), (2, 'two');
COMMIT;
CREATE ROLE kg_agent LOGIN IN ROLE keys_guard_keyholder;
GRANT USAGE ON SCHEMA tenant_keyco TO kg_agent;
GRANT SELECT, INSERT ON tenant_keyco.things TO kg_agent;
});

# Issue a key as the superuser; the secret is a result column, which no
# log line shows (the statement is logged, without any secret: its tag
# goes to @plain_tags, checked to be logged, not to be followed by the
# marker).
my @plain_tags;

sub issue_key
{
	my ($tag, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT /* $tag */ $sql");
	is($ret, 0, "$tag: issued");
	my ($id, $secret) = split /\|/, $out;
	like($secret, qr/^kgk_[0-9a-f]{32}[a-z2-7]{52}[0-9a-f]{8}$/, "$tag: a secret");
	remember_secret($secret);
	push @plain_tags, $tag;
	return ($id, $secret, $err);
}

my ($read_id, $read_secret) = issue_key('key_create_read',
	q{key_id, secret FROM keys_guard.create_api_key('keyco', 'reader')});
my ($write_id, $write_secret, $write_warning) = issue_key('key_create_write',
	q{key_id, secret FROM keys_guard.create_api_key('keyco', 'writer', '{read,write}', write_consent => true)});
like($write_warning, qr/this key can modify the data of tenant "keyco"/,
	'key_create_write: the WARNING');
my ($short_id, $short_secret) = issue_key('key_create_short',
	q{key_id, secret FROM keys_guard.create_api_key('keyco', 'short', expires_in => '1 second')});
is(crc32c(substr($read_secret, 0, 88)), substr($read_secret, 88), 'crc32c() computes the checksum of a secret');

# The near misses: the read key's id with another random part (a valid
# checksum: "wrong secret"), and the read key cut short ("malformed").
my $wrong_secret = substr($read_secret, 0, 40)
  . (substr($read_secret, 40, 1) eq 'a' ? 'b' : 'a')
  . substr($read_secret, 41, 47);
$wrong_secret .= crc32c($wrong_secret);
my $truncated_secret = substr($read_secret, 0, 80);
remember_secret($wrong_secret, $truncated_secret);

# What the tool's sessions were told (stdout and stderr): no secret either.
my $client_output = '';

# Use a key as a literal (psql, simple protocol: each statement its own
# query) in one transaction with a statement after it; SECRET is the key,
# TAG the step's tag.  Returns psql's exit code and its output.
sub key_literal
{
	my ($tag, $secret, $sql) = @_;
	$sql //= q{SELECT /* TAG */ count(*) FROM tenant_keyco.things;};
	my $text = "BEGIN;\nSELECT /* TAG */ keys_guard.use_api_key('SECRET');\n$sql\nCOMMIT;\n";
	$text =~ s/SECRET/$secret/g;
	$text =~ s/TAG/$tag/g;
	my ($ret, $out, $err) =
	  $node->psql('postgres', $text, extra_params => [ '-U', 'kg_agent' ]);
	$client_output .= "$out\n$err\n";
	push @tags, $tag;
	return ($ret, "$out$err");
}

# The same with the key as a bind parameter (pgbench, extended protocol).
sub key_bind
{
	my ($tag, $secret, $sql) = @_;
	$sql //= q{SELECT /* TAG */ count(*) FROM tenant_keyco.things;};
	my $text = "BEGIN;\nSELECT /* TAG */ keys_guard.use_api_key(:key);\n$sql\nCOMMIT;\n";
	$text =~ s/TAG/$tag/g;
	my ($ok, $out) = run_extended_as('kg_agent', $text, key => $secret);
	$client_output .= "$out\n";
	push @tags, $tag;
	return ($ok, $out);
}

my ($ret, $out, $ok);

# Used: the read key and the write key, as literals and bind parameters.
($ret, $out) = key_literal('key_use_literal', $read_secret);
ok($ret == 0 && $out =~ /^2$/m, 'key_use_literal: the read key works as a literal');
($ok, $out) = key_bind('key_use_bind', $read_secret);
ok($ok, 'key_use_bind: the read key works as a bind parameter');
($ret, $out) = key_literal('key_write_literal', $write_secret,
	q{INSERT /* TAG */ INTO tenant_keyco.things VALUES (3, 'three');});
is($ret, 0, 'key_write_literal: the write key writes');
($ok, $out) = key_bind('key_write_bind', $write_secret,
	q{INSERT /* TAG */ INTO tenant_keyco.things VALUES (4, 'four');});
ok($ok, 'key_write_bind: the write key writes as a bind parameter');

# A write under the read key: refused (42501) and logged.
($ret, $out) = key_literal('key_read_writes', $read_secret,
	q{INSERT /* TAG */ INTO tenant_keyco.things VALUES (5, 'five');});
ok($ret != 0 && $out =~ /permission denied|read-only/, 'key_read_writes: a write under a read key is refused')
  or diag($out);
($ok, $out) = key_bind('key_read_writes_bind', $read_secret,
	q{INSERT /* TAG */ INTO tenant_keyco.things VALUES (5, 'five');});
ok(!$ok, 'key_read_writes_bind: refused as well');

# Failed uses, each an ERROR "invalid API key" that the log shows with
# its statement.
for my $case ([ 'key_wrong', $wrong_secret ], [ 'key_truncated', $truncated_secret ])
{
	my ($tag, $secret) = @$case;
	($ret, $out) = key_literal("${tag}_literal", $secret);
	ok($ret != 0 && $out =~ /invalid API key/, "${tag}_literal: refused");
	($ok, $out) = key_bind("${tag}_bind", $secret);
	ok(!$ok && $out =~ /invalid API key/, "${tag}_bind: refused");
}

# Expired.
ok( $node->poll_query_until(
		'postgres',
		"SELECT now() > expires_at FROM keys_guard.api_keys WHERE key_id = '$short_id'"),
	'the short key expires');
($ret, $out) = key_literal('key_expired_literal', $short_secret);
ok($ret != 0 && $out =~ /invalid API key/, 'key_expired_literal: refused');
($ok, $out) = key_bind('key_expired_bind', $short_secret);
ok(!$ok && $out =~ /invalid API key/, 'key_expired_bind: refused');

# Rotate the read key with an overlap of 5 seconds: the new secret is a
# result column; both work during the overlap (the old key is used
# first), only the new one after it.
my ($new_id, $new_secret) = issue_key('key_rotate',
	qq{new_key_id, secret FROM keys_guard.rotate_api_key('$read_id', overlap => '5 seconds')});
($ret, $out) = key_literal('key_old_overlap', $read_secret);
is($ret, 0, 'key_old_overlap: the old key works during the overlap');
($ret, $out) = key_literal('key_new_literal', $new_secret);
ok($ret == 0 && $out =~ /^4$/m, 'key_new_literal: the new key works');
($ok, $out) = key_bind('key_new_bind', $new_secret);
ok($ok, 'key_new_bind: the new key works as a bind parameter');
ok( $node->poll_query_until(
		'postgres',
		"SELECT now() > expires_at FROM keys_guard.api_keys WHERE key_id = '$read_id'"),
	'the overlap ends');
($ret, $out) = key_literal('key_old_after_literal', $read_secret);
ok($ret != 0 && $out =~ /invalid API key/, 'key_old_after_literal: the old key is refused after the overlap');
($ok, $out) = key_bind('key_old_after_bind', $read_secret);
ok(!$ok && $out =~ /invalid API key/, 'key_old_after_bind: refused as well');

# Revoke the write key; then it is refused.
$node->safe_psql('postgres', "SELECT /* key_revoke */ keys_guard.revoke_api_key('$write_id')");
($ret, $out) = key_literal('key_revoked_literal', $write_secret);
ok($ret != 0 && $out =~ /invalid API key/, 'key_revoked_literal: refused');
($ok, $out) = key_bind('key_revoked_bind', $write_secret);
ok(!$ok && $out =~ /invalid API key/, 'key_revoked_bind: refused');

# pg_stat_activity, while a statement that uses a key as a literal runs.
check_activity('key_activity', 'BEGIN',
	q{SELECT /* TAG */ keys_guard.use_api_key('SECRET'), pg_sleep(60)},
	'client backend', secret => $new_secret, user => 'kg_agent');

# pg_stat_activity of a session left idle after a statement with a key
# that failed before it was analyzed (a syntax error): the text it shows
# is that statement's.
{
	my $tag = 'key_idle_after_error';
	my ($in, $iout, $ierr) = ('', '', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-d', $node->connstr('postgres') . ' user=kg_agent', '-f', '-' ],
		'<', \$in, '>', \$iout, '2>', \$ierr);
	$in .= "SELECT /* $tag */ keys_guard.use_api_key('$new_secret') FROM;\n";
	$h->pump while length $in;
	my $which = "FROM pg_stat_activity WHERE query LIKE '%$tag%' AND pid <> pg_backend_pid()";
	ok($node->poll_query_until('postgres', "SELECT count(*) > 0 $which AND state = 'idle'"),
		"$tag: the session is idle after the error");
	my $shown = $node->safe_psql('postgres', "SELECT string_agg(query, ' | ') $which");
	unlike($shown, qr/\Q$new_secret\E/, "$tag: pg_stat_activity does not show the secret");
	like($shown, qr/\Q$marker\E/, "$tag: pg_stat_activity shows the marker");
	$in .= "\\q\n";
	$h->finish;
	# Not added to $client_output: psql prints the statement's own text
	# (from its input, not from the server) under a syntax error.
	push @tags, $tag;
}

my @real_secrets = ($read_secret, $write_secret, $short_secret, $new_secret,
	$wrong_secret, $truncated_secret);

# Some 16 characters of secret (after the prefix) in text, or ''.
sub secret_piece_in
{
	my ($text, @list) = @_;
	for my $secret (@list)
	{
		for (my $i = 4; $i + 16 <= length $secret; $i++)
		{
			my $piece = substr($secret, $i, 16);
			return $piece if index($text, $piece) >= 0;
		}
	}
	return '';
}

is(secret_piece_in($client_output, @real_secrets), '',
	'what the tool was told holds no secret');
like($client_output, qr/invalid API key/, 'the tool was told of the refusals');

# The audit log: every use and refusal is there (the worker writes them
# from the queue), with the reasons, and no secret.
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) >= 4 FROM keys_guard.audit_log WHERE action = 'api_key_use'"
		  . " AND outcome = 'denied' AND detail->>'reason' IN ('malformed', 'wrong secret', 'revoked', 'expired')"
		  . " HAVING count(DISTINCT detail->>'reason') = 4"),
	'the audit log has the refusals, with each reason');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM keys_guard.audit_log WHERE action = 'api_key_write_denied'"),
	'the audit log has the write under the read key');
my $audit = $node->safe_psql('postgres',
	"SELECT string_agg(concat_ws(' ', tenant, actor, request_id, action, target, detail::text), E'\\n')"
	  . ' FROM keys_guard.audit_log');
like($audit, qr/\Q$read_id\E/, 'the audit log names the keys by id');
is(secret_piece_in($audit, @real_secrets), '', 'the audit log holds no secret');

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

# Each refusal of a real key is in the log with its statement (in jsonlog,
# where each message is one object): the ERROR, and the LOG line before
# it with the reason, both with the step's tag in the statement (or in
# the redacted statement appended to the detail, where the statement
# carried the literal key).
my %refusals = (
	key_wrong => 'wrong secret',
	key_truncated => 'malformed',
	key_expired => 'expired',
	key_old_after => 'expired',
	key_revoked => 'revoked');
my (%error_logged, %reason_logged, %write_denied_logged);
for my $line (split /\n/, $content{json})
{
	my $entry = eval { JSON::PP::decode_json($line) } or next;
	my $all = join ' ', map { $entry->{$_} // '' } qw(statement detail context);
	next unless $all =~ m{/\* (key_\w+) \*/};
	my $tag = $1;
	my $message = $entry->{message} // '';
	$error_logged{$tag} = 1
	  if $message eq 'invalid API key' && ($entry->{error_severity} // '') eq 'ERROR';
	$reason_logged{$tag} = $1
	  if $message eq 'keys_guard: API key refused' && $all =~ /Reason: ([^;]+);/;
	$write_denied_logged{$tag} = 1
	  if $message =~ /^cannot execute INSERT under a read-only API key/;
}
for my $case (sort keys %refusals)
{
	for my $tag ("${case}_literal", "${case}_bind")
	{
		ok($error_logged{$tag}, "$tag: the ERROR is logged with its statement");
		is($reason_logged{$tag}, $refusals{$case},
			"$tag: the LOG line says why, with the statement");
	}
}
ok($write_denied_logged{$_}, "$_: the refused write is logged with its statement")
  for qw(key_read_writes key_read_writes_bind);

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
	for my $tag (@plain_tags)
	{
		ok(index($text, $tag) >= 0, "$format: $tag is logged");
	}
	ok(index($text, 'this key can modify the data of tenant') >= 0,
		"$format: the write key's WARNING is logged");
	ok(index($text, $control) >= 0,
		"$format: the control token was logged (the check can fail)");
}

done_testing();
