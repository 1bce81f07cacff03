# Copyright and license: see keys_guard's README.
#
# Verified tokens never reach the server log (README, "Verified tokens"):
# under full statement logging (log_statement = all,
# log_min_duration_statement = 0, log_min_error_statement = debug5, every
# bind parameter, auto_explain with every plan), in every log format
# (stderr, csvlog, jsonlog):
#   - an HS256 secret registered with add_token_key(), as text and as a
#     JWK, as a literal and as a bind parameter, in a call that succeeds
#     and in one that fails, is in no log file (neither as text nor in its
#     base64url form), and not in pg_stat_activity while the call runs,
#     nor while a function prepares the statement that the rest of the
#     string executes with it;
#   - tokens signed with it, used by a keys_guard_client login as literals
#     and as bind parameters, accepted, refused (tampered, expired, a
#     revoked key's), with a write refused under a read-only one, are in
#     no log file and nowhere in keys_guard.audit_log;
#   - the statements were logged all the same (each step's tag is in every
#     format), and each refusal's LOG line gives its reason and kid.
#
# The tokens are signed here, with HMAC-SHA-256 from Digest::SHA, under a
# secret drawn at random for the run.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256);
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('token_log');
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
auto_explain.log_nested_statements = on
});
$node->start;

sub random_chars
{
	my ($alphabet, $n) = @_;
	return join '', map { substr($alphabet, int(rand(length $alphabet)), 1) } 1 .. $n;
}

my $alnum = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
my $secret = 'hs' . random_chars($alnum, 46);    # the text form
my $jwk_secret = join '', map { chr(int(rand(256))) } 1 .. 48;    # the JWK form's bytes
my $jwk_k = encode_base64url($jwk_secret);

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION keys_guard;
CREATE ROLE tlog_client LOGIN;
GRANT keys_guard_client TO tlog_client;
SELECT keys_guard.create_tenant('tlog');
CREATE TABLE tenant_tlog.items (id int PRIMARY KEY, label text);
GRANT USAGE ON SCHEMA tenant_tlog TO keys_guard_client;
GRANT SELECT, INSERT ON tenant_tlog.items TO keys_guard_client;
});

# Every secret and token the steps used; the checks at the end look for each.
my @secrets = ($secret, $jwk_k);

sub sign_hs256
{
	my ($key, $kid, $claims) = @_;
	my $header = encode_base64url(encode_json({ alg => 'HS256', kid => $kid }));
	my $payload = encode_base64url(encode_json($claims));
	my $sig = encode_base64url(hmac_sha256("$header.$payload", $key));
	my $token = "$header.$payload.$sig";
	push @secrets, $token;
	return $token;
}

# A token whose header is given as text (JSON with whitespace does not
# encode to "eyJ"); its signature is a secret of its own too.
sub sign_hs256_header
{
	my ($key, $header_json, $claims) = @_;
	my $header = encode_base64url($header_json);
	my $payload = encode_base64url(encode_json($claims));
	my $sig = encode_base64url(hmac_sha256("$header.$payload", $key));
	my $token = "$header.$payload.$sig";
	push @secrets, $token, $sig;
	return $token;
}

sub run_sql
{
	my ($sql, $user) = @_;
	my ($ret, $out, $err) =
	  $node->psql('postgres', $sql, extra_params => [ defined $user ? ('-U', $user) : () ]);
	return ($ret, $out, $err);
}

# Once through the extended protocol (pgbench), :token a bind parameter.
sub run_extended
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

my @tags;
my $client_output = '';

# Keys: the secret as text and as a JWK, a duplicate (an ERROR with the
# statement), a call that shows its own pg_stat_activity text.
push @tags, 'key_text';
my ($ret, $out, $err) = run_sql(
	"SELECT /* key_text */ keys_guard.add_token_key('tlog-hs', 'HS256', '$secret')");
is($ret, 0, 'add_token_key with a text secret');
push @tags, 'key_jwk';
($ret, $out, $err) = run_sql(
	qq{SELECT /* key_jwk */ keys_guard.add_token_key('tlog-jwk', 'HS256', '{"kty":"oct","k":"$jwk_k"}')});
is($ret, 0, 'add_token_key with a JWK secret');
push @tags, 'key_duplicate';
($ret, $out, $err) = run_sql(
	"SELECT /* key_duplicate */ keys_guard.add_token_key('tlog-hs', 'HS256', '$secret')");
isnt($ret, 0, 'a duplicate kid is refused');
$client_output .= $out . $err;
push @tags, 'key_activity';
($ret, $out, $err) = run_sql(
	"SELECT /* key_activity */ keys_guard.add_token_key('tlog-act', 'HS256', '$secret'),"
	  . " (SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid())");
like($out, qr/add_token_key\(\[REDACTED\]\)/,
	'pg_stat_activity shows add_token_key() with its arguments redacted');
$client_output .= $out . $err;
# The call's name in capitals is the same call (names fold to lower case).
push @tags, 'key_upper';
($ret, $out, $err) = run_sql(
	"SELECT /* key_upper */ KEYS_GUARD.ADD_TOKEN_KEY('tlog-up', 'HS256', '$secret')");
is($ret, 0, 'ADD_TOKEN_KEY in capitals');
$client_output .= $out . $err;

# A secret as a bind parameter: the statement has no secret, the logged
# parameters do ("parameters: $1 = '...'"); a failing call adds them to
# the error's CONTEXT.
my $bind_secret = 'hb' . random_chars($alnum, 46);
push @secrets, $bind_secret;
for my $case ([ 'key_bind', 'tlog-bind' ], [ 'key_bind_dup', 'tlog-bind' ])
{
	my ($tag, $kid) = @$case;
	push @tags, $tag;
	my ($ok, $output) = run_extended(undef,
		"SELECT /* $tag */ keys_guard.add_token_key(:kid, 'HS256', :secret);\n",
		kid => $kid, secret => $bind_secret);
	$client_output .= $output;
}

# A secret through PREPARE/EXECUTE: the statement is EXECUTE p('...'),
# which has no call of add_token_key() in it.  Prepared and executed in
# separate statements (the prepared statement's text says what it
# calls), in one string (PREPARE and EXECUTE logged together, before the
# PREPARE ran), executed twice (the second fails: its STATEMENT), and
# deallocated in the same string (logged after the DEALLOCATE ran).
my $prep_secret = 'hp' . random_chars($alnum, 46);
my $prep_secret2 = 'hq' . random_chars($alnum, 46);
push @secrets, $prep_secret, $prep_secret2;
push @tags, 'key_prepared';
($ret, $out, $err) = run_sql(
	"PREPARE tlog_p(text, text) AS SELECT /* key_prepared */ keys_guard.add_token_key(\$1, 'HS256', \$2);\n"
	  . "EXECUTE tlog_p('tlog-prep', '$prep_secret');\n"
	  . "EXECUTE tlog_p('tlog-prep', '$prep_secret');\n");
like($err, qr/already exists/, 'the second EXECUTE fails');
$client_output .= $out . $err;
push @tags, 'key_prepared_one_string';
($ret, $out, $err) = $node->psql('postgres', undef,
	extra_params => [ '-c',
		"PREPARE tlog_q(text) AS SELECT /* key_prepared_one_string */ keys_guard.add_token_key('tlog-prep2', 'HS256', \$1); "
		  . "EXECUTE tlog_q('$prep_secret2'); DEALLOCATE tlog_q" ]);
is($ret, 0, 'PREPARE, EXECUTE and DEALLOCATE in one string');
$client_output .= $out . $err;

# pg_stat_activity while a statement prepares, by a function, a statement
# that the rest of the string then executes with a secret: when the text
# was first looked at, no statement of that name was prepared, and the
# text looked clean.  It is looked at again while the function runs (here
# when it sleeps).  Query ids computed: otherwise every statement the
# function runs changes pg_stat_activity's entry, and would hide whether
# a text whose verdict depended on the session's prepared statements is
# looked at again.
my $act_secret = 'ha' . random_chars($alnum, 46);
push @secrets, $act_secret;
$node->safe_psql('postgres', q{
CREATE FUNCTION tlog_prepare_then_sleep() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE 'PREPARE tlog_act(text) AS SELECT keys_guard.add_token_key(''tlog-act2'', ''HS256'', $1)';
	PERFORM pg_sleep(60);
END $$});
{
	my ($act_out, $act_err) = ('', '');
	my $h = IPC::Run::start(
		[
			'psql', '-X', '-d', $node->connstr('postgres'),
			'-c', "SET log_statement = 'none'; SET log_min_duration_statement = -1; "
			  . "SET auto_explain.log_min_duration = -1; SET compute_query_id = on",
			'-c', "SELECT /* key_activity_prepared_later */ tlog_prepare_then_sleep(); "
			  . "EXECUTE tlog_act('$act_secret')"
		],
		'>', \$act_out, '2>', \$act_err);
	my $which =
	    "FROM pg_stat_activity WHERE query LIKE '%key_activity_prepared_later%'"
	  . " AND pid <> pg_backend_pid() AND state = 'active'";
	ok($node->poll_query_until('postgres',
			"SELECT count(*) > 0 $which AND wait_event = 'PgSleep'"),
		'a statement prepared by a function: the function sleeps');
	my $shown = $node->safe_psql('postgres', "SELECT string_agg(query, ' | ') $which");
	is(secret_in($shown), '',
		'a statement prepared by a function: pg_stat_activity does not show the secret');
	like($shown, qr/\[REDACTED\]/,
		'a statement prepared by a function: pg_stat_activity shows the marker');
	$node->safe_psql('postgres', "SELECT pg_cancel_backend(pid) $which");
	$h->finish;
	$client_output .= $act_out . $act_err;
}

# A secret through a function of the caller's: no shape in the statement,
# no call in it either.  Without statement logging, the failing call's
# ERROR still has a STATEMENT line: hidden while add_token_key() runs.
my $wrapped_secret = 'hw' . random_chars($alnum, 46);
push @secrets, $wrapped_secret;
$node->safe_psql('postgres',
	"CREATE FUNCTION tlog_add(k text) RETURNS void LANGUAGE sql AS \$\$ SELECT keys_guard.add_token_key('tlog-wrap', 'HS256', k) \$\$");
push @tags, 'key_wrapped';
($ret, $out, $err) = run_sql(
	"SET log_statement = 'none'; SET log_min_duration_statement = -1; SET auto_explain.log_min_duration = -1;\n"
	  . "SELECT /* key_wrapped */ tlog_add('$wrapped_secret');\n"
	  . "SELECT /* key_wrapped */ tlog_add('$wrapped_secret');\n");
like($err, qr/already exists/, 'the wrapped call fails the second time');
$client_output .= $out . $err;

my $far = 4102444800;
my %claims = (sub => 'user-1', project_id => 'tlog', exp => $far, scope => 'read');
my $read = sign_hs256($secret, 'tlog-hs', {%claims});
my $write = sign_hs256($jwk_secret, 'tlog-jwk', { %claims, scope => 'read write' });
my $expired = sign_hs256($secret, 'tlog-hs', { %claims, exp => 1300819380 });
my $revoked_later = sign_hs256($secret, 'tlog-act', {%claims});
my $tampered = $read;
# The signature's first character changed: still canonical base64url.
$tampered =~ s/\.(.)([^.]*)$/'.' . ($1 eq 'A' ? 'B' : 'A') . $2/e;
push @secrets, $tampered;
# Headers with JSON whitespace: spaces ("eyAi..."), a leading newline ("Cns...").
my $spaced = sign_hs256_header($secret, '{ "alg": "HS256", "kid": "tlog-hs" }', {%claims});
my $newline = sign_hs256_header($secret, qq{\n{"alg":"HS256","kid":"tlog-hs"}}, {%claims});
die 'the spaced header encodes to eyJ' if $spaced =~ /^eyJ/ || $newline =~ /^eyJ/;
my $spaced_tampered = $spaced;
$spaced_tampered =~ s/\.(.)([^.]*)$/'.' . ($1 eq 'A' ? 'B' : 'A') . $2/e;
push @secrets, $spaced_tampered, ($spaced_tampered =~ /\.([^.]*)$/);

# Tokens: accepted (a literal, a bind parameter, in pg_stat_activity),
# refused, a write under a read-only token.
my @steps = (
	[ 'tok_literal', "BEGIN; SELECT /* tok_literal */ keys_guard.set_context_from_token('$read'); SELECT /* tok_literal */ count(*) FROM tenant_tlog.items; COMMIT" ],
	[ 'tok_write', "BEGIN; SELECT /* tok_write */ keys_guard.set_context_from_token('$write'); INSERT /* tok_write */ INTO tenant_tlog.items VALUES (1, 'one'); COMMIT" ],
	[ 'tok_read_write', "BEGIN; SELECT /* tok_read_write */ keys_guard.set_context_from_token('$read'); INSERT /* tok_read_write */ INTO tenant_tlog.items VALUES (2, 'two'); COMMIT" ],
	[ 'tok_expired', "SELECT /* tok_expired */ keys_guard.set_context_from_token('$expired')" ],
	[ 'tok_tampered', "SELECT /* tok_tampered */ keys_guard.set_context_from_token('$tampered')" ],
	[ 'tok_activity', "BEGIN; SELECT /* tok_activity */ keys_guard.set_context_from_token('$read'), (SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()); COMMIT" ],
	[ 'tok_error', "SELECT /* tok_error */ ('$read')::int" ],
	[ 'tok_spaced', "BEGIN; SELECT /* tok_spaced */ keys_guard.set_context_from_token('$spaced'); SELECT /* tok_spaced */ count(*) FROM tenant_tlog.items; COMMIT" ],
	[ 'tok_newline', "BEGIN; SELECT /* tok_newline */ keys_guard.set_context_from_token('$newline'); COMMIT" ],
	[ 'tok_spaced_tampered', "SELECT /* tok_spaced_tampered */ keys_guard.set_context_from_token('$spaced_tampered')" ],
	[ 'tok_spaced_error', "SELECT /* tok_spaced_error */ ('$spaced')::int" ],);
my %step_ret;
for my $step (@steps)
{
	push @tags, $step->[0];
	($ret, $out, $err) = run_sql($step->[1], 'tlog_client');
	$step_ret{ $step->[0] } = $ret;
	$client_output .= $out . $err;
}
is($step_ret{tok_spaced}, 0, 'a token whose header has spaces is accepted');
is($step_ret{tok_newline}, 0, 'a token whose header starts with a newline is accepted');
isnt($step_ret{tok_spaced_tampered}, 0, 'a tampered one is refused');
like($client_output, qr/set_context_from_token\(\[REDACTED\]\)/,
	'pg_stat_activity shows set_context_from_token() with the token redacted');

$node->safe_psql('postgres', "SELECT keys_guard.set_token_key_state('tlog-act', 'revoked')");
push @tags, 'tok_revoked';
($ret, $out, $err) = run_sql(
	"SELECT /* tok_revoked */ keys_guard.set_context_from_token('$revoked_later')", 'tlog_client');
$client_output .= $out . $err;

for my $case (
	[ 'bind_ok', $read ],
	[ 'bind_expired', $expired ],
	[ 'bind_tampered', $tampered ],
	[ 'bind_spaced', $spaced ],
	[ 'bind_spaced_tampered', $spaced_tampered ])
{
	my ($tag, $token) = @$case;
	push @tags, $tag;
	my ($ok, $output) = run_extended('tlog_client',
		"BEGIN;\nSELECT /* $tag */ keys_guard.set_context_from_token(:token);\nCOMMIT;\n",
		token => $token);
	$client_output .= $output;
}

# A database not in UTF-8 (LATIN1): claims beyond ASCII, raw or as a \u
# escape, are refused like any other bad token (28000, not an encoding
# error); ASCII claims are accepted.
$node->safe_psql('postgres',
	"CREATE DATABASE tlog_latin1 ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'");
$node->safe_psql(
	'tlog_latin1', qq{
CREATE EXTENSION keys_guard;
SELECT keys_guard.create_tenant('tlog');
SELECT keys_guard.add_token_key('tlog-l1', 'HS256', '$secret');
});

sub sign_hs256_payload
{
	my ($key, $kid, $payload_json) = @_;
	my $header = encode_base64url(encode_json({ alg => 'HS256', kid => $kid }));
	my $payload = encode_base64url($payload_json);
	my $sig = encode_base64url(hmac_sha256("$header.$payload", $key));
	my $token = "$header.$payload.$sig";
	push @secrets, $token, $sig;
	return $token;
}
my $l1_ascii = sign_hs256_payload($secret, 'tlog-l1',
	'{"sub":"user-1","project_id":"tlog","exp":4102444800}');
my $l1_raw = sign_hs256_payload($secret, 'tlog-l1',
	qq{{"sub":"user-\xc3\xa9","project_id":"tlog","exp":4102444800}});
my $l1_escape = sign_hs256_payload($secret, 'tlog-l1',
	'{"sub":"user-\\u00e9","project_id":"tlog","exp":4102444800}');
my $l1_escape_far = sign_hs256_payload($secret, 'tlog-l1',
	'{"sub":"user-\\u20ac","project_id":"tlog","exp":4102444800}');
for my $case ([ 'l1_ascii', $l1_ascii, '' ], [ 'l1_raw', $l1_raw, '28000' ],
	[ 'l1_escape', $l1_escape, '28000' ], [ 'l1_escape_far', $l1_escape_far, '28000' ])
{
	my ($tag, $token, $want) = @$case;
	push @tags, $tag;
	my ($ret, $out, $err) = $node->psql('tlog_latin1',
		"\\set VERBOSITY verbose\nBEGIN; SELECT /* $tag */ keys_guard.set_context_from_token('$token'); COMMIT;",
		extra_params => [ '-U', 'tlog_client' ]);
	if ($want eq '')
	{
		is($err, '', "LATIN1 database: $tag accepted");
	}
	else
	{
		like($err, qr/ERROR:  $want: invalid token/, "LATIN1 database: $tag refused with $want");
	}
	$client_output .= $out . $err;
}

# The audit log has the uses and refusals, none with a token or secret.
$node->poll_query_until('postgres',
	"SELECT count(*) >= 5 FROM keys_guard.audit_log WHERE action = 'token_use' AND outcome = 'denied'")
  or diag('the refusals were not all audited');
my $audit = $node->safe_psql('postgres',
	"SELECT string_agg(concat_ws(' ', tenant, actor, request_id, action, target, detail::text), E'\\n')"
	  . ' FROM keys_guard.audit_log');
like($audit, qr/token_use tlog-hs/, 'the audit log names the key of each use');

sub secret_in
{
	my ($text) = @_;
	return join ', ', map { substr($_, 0, 12) . '...' } grep { index($text, $_) >= 0 } @secrets;
}
is(secret_in($audit), '', 'the audit log holds no token and no secret');
is(secret_in($client_output), '', 'no client was told a token or a secret');

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

my %content;
for my $try (1 .. 600)
{
	%content = ();
	$content{ format_of($_) } .= slurp_file($_) for log_files();
	last
	  if 3 == grep { defined $content{$_} && index($content{$_}, $done) >= 0 }
	  qw(stderr csv json);
	select(undef, undef, undef, 0.1);
}
for my $format (qw(stderr csv json))
{
	ok(defined $content{$format} && index($content{$format}, $done) >= 0,
		"the $format log has the whole battery");
	for my $tag (@tags)
	{
		ok(index($content{$format}, $tag) >= 0, "$format: step $tag was logged");
	}
}

# The bind parameters of the add_token_key() calls were logged, redacted.
for my $format (qw(stderr csv json))
{
	ok(index($content{$format}, 'parameters: [REDACTED]') >= 0,
		"$format: add_token_key()'s bind parameters logged as the marker");
}

# Zero hits: no token, no secret, in any log file.
for my $file (log_files())
{
	is(secret_in(slurp_file($file)), '', "no token or secret in $file");
}

# Each refusal's LOG line says why, with the kid (jsonlog: one object a line).
my %reasons;
for my $line (split /\n/, $content{json})
{
	my $entry = eval { JSON::PP::decode_json($line) } or next;
	next unless ($entry->{message} // '') eq 'keys_guard: token refused';
	my $all = join ' ', map { $entry->{$_} // '' } qw(statement detail);
	next unless $all =~ m{/\* (\w+) \*/};
	my $tag = $1;
	$reasons{$tag} = "$1 ($2)" if $all =~ /Reason: ([^;]+); kid: ([^.]+)\./;
}
is($reasons{tok_expired}, 'expired (tlog-hs)', 'the expired token: reason and kid logged');
is($reasons{tok_tampered}, 'bad signature (tlog-hs)', 'the tampered token: reason and kid logged');
is($reasons{tok_revoked}, 'revoked key (tlog-act)', 'the revoked key: reason and kid logged');
is($reasons{l1_raw}, 'non-ASCII claims in a database not in UTF-8 (tlog-l1)',
	'LATIN1 database: a raw UTF-8 claim, reason and kid logged');
is($reasons{l1_escape}, 'non-ASCII claims in a database not in UTF-8 (tlog-l1)',
	'LATIN1 database: a \\u escape beyond ASCII, reason and kid logged');
is($reasons{tok_spaced_tampered}, 'bad signature (tlog-hs)',
	'the tampered token with a spaced header: reason and kid logged');

$node->stop;
done_testing();
