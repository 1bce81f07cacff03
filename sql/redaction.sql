\i sql/fixture.psql
--
-- redaction: API key secrets never reach an error message that passes
-- through the server log (README, "Secrets in the server log").  What the client
-- receives has gone through the same emit_log_hook as the server log line
-- whenever the message is logged (log_min_messages), so the client-visible
-- text shows what the log got.  The server log itself is checked by
-- t/013_secret_log.pl.
--
-- A key-shaped secret (the format of §15; not a real key) and its marker.
\set key 'kgk_0123456789abcdef0123456789abcdefabcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst0badc0de'
SELECT length(:'key') AS key_length;

-- An error whose message quotes the input.
SELECT :'key'::int;
SELECT :'key'::uuid;

-- A mistyped, truncated or upper-cased key is still a secret; the prefix
-- alone is not, and nor is a prefix followed by a non-key character.
SELECT 'kgk_0123456789abcdefZZZ'::int;
SELECT 'kgk_a'::int;
SELECT 'kgk_'::int;
SELECT 'kgk_[REDACTED]'::int;
SELECT 'xkgk_0123456789-kgk_ kgk_:kgk_9'::int;
SELECT 'KGK_0123456789'::int;
-- Two keys back to back are one run, not a marker and a second key
-- without its prefix.
SELECT ('kgk_0123456789abcdef' || 'kgk_fedcba9876543210')::int;
SELECT 'kgk_0123_abcd_ef'::int;

-- RAISE with the secret in message, detail and hint, and an error in a
-- dynamic statement (message, context and the internal query).
DO $$
BEGIN
    RAISE EXCEPTION 'bad key %', 'kgk_00112233445566778899aabbccddeeff'
        USING DETAIL = 'key was kgk_deadbeef, then kgk_cafe',
              HINT = 'never log kgk_feedface';
END
$$;
DO $$
BEGIN
    EXECUTE 'SELECT ''kgk_0123456789abcdef''::int';
END
$$;

-- The secret around multibyte text and many secrets in one message.
DO $$
BEGIN
    RAISE EXCEPTION '%', 'é日本kgk_0123abcdé' || repeat(' kgk_x1', 5) || ' end kgk_';
END
$$;

-- Huge texts: a 1 MB run is one marker; 2 000 secrets in the
-- statement and context (terse: the client prints the message only).
\set VERBOSITY terse
DO $$
BEGIN
    RAISE EXCEPTION 'huge: %', 'kgk_' || repeat('a', 1000000) || ' done';
END
$$;
DO $$
BEGIN
    EXECUTE 'SELECT 1/0 /* ' || repeat('kgk_abc ', 2000) || ' */';
END
$$;
DO $$
BEGIN
    RAISE EXCEPTION 'many: %', length(repeat('kgk_ kgk', 200000));
END
$$;
\set VERBOSITY default

-- A NOTICE is redacted when it is logged (it goes through the hook) and
-- reaches the client unchanged when only the client gets it: then the
-- text never passes the server log.
SET log_min_messages = notice;
DO $$ BEGIN RAISE NOTICE 'logged: kgk_0123456789abcdef'; END $$;
RESET log_min_messages;
DO $$ BEGIN RAISE NOTICE 'client only: kgk_0123456789abcdef'; END $$;

-- A message that ends with ": " and the running statement's text, as a
-- statement log line does: that text, found clean, is not scanned again,
-- but what comes before it is (here a key the statement only builds).
CREATE FUNCTION redaction_tail(k text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING '%', k || ': ' || current_query();
END
$$;
SELECT redaction_tail('kgk_' || '0123456789abcdef');
SELECT redaction_tail('kgk_' || '0123456789abcdef');
DROP FUNCTION redaction_tail(text);

-- Prepared statements and bound values: the error text is redacted.
PREPARE redaction_p(text) AS SELECT $1::int;
EXECUTE redaction_p(:'key');
DEALLOCATE redaction_p;

-- pg_stat_activity shows the statement's text redacted while it runs.
SELECT query FROM pg_stat_activity
 WHERE pid = pg_backend_pid() AND :'key' IS NOT NULL;
SELECT position(:'key' IN query) = 0 AS secret_absent,
       position('kgk_[REDACTED]' IN query) > 0 AS marker_present
  FROM pg_stat_activity WHERE pid = pg_backend_pid();
-- pg_stat_activity keeps the first track_activity_query_size (1024) bytes:
-- the redacted copy is cut at a character boundary, so that what is kept
-- never ends in part of a character (the cut falls inside an 'é' here).
SELECT strpos(query, 'kgk_' || '0123456789abcdef') = 0 AS secret_absent,
       query ~ ('kgk_' || '[0-9a-z]{8}') AS key_shaped,
       right(query, 1) = 'é' AS ends_in_whole_character
  FROM pg_stat_activity
 WHERE pid = pg_backend_pid() AND :'key' || 'éééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé' IS NOT NULL;
-- A statement without a secret is shown as it is.
SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid();

-- The audit log never keeps a secret: not in a record's target, nor in
-- its detail, whether C or SQL built it (README, same section).
SELECT keys_guard._audit('redaction_probe', 'key ' || :'key',
                         jsonb_build_object('key', :'key', 'n', 1));
SELECT target, detail FROM keys_guard.audit_log
 WHERE action = 'redaction_probe' ORDER BY id DESC LIMIT 1;

-- Other secrets (README, "Secrets in the server log"): JSON Web Tokens,
-- the literal after PASSWORD, a connection string's password=, and the
-- patterns of keys_guard.redact_patterns; each becomes [REDACTED].
SET log_min_messages = notice;
\set jwt 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqd3QtcGF5bG9hZCJ9.c2lnbmF0dXJlLXNlY3JldA'
SELECT :'jwt'::int;
SELECT ('token ' || :'jwt' || '. and eyJnotajwt and eyJa.b')::int;
DO $do$ BEGIN RAISE NOTICE 'create: %', $q$CREATE ROLE r PASSWORD 'pw-one' LOGIN$q$; END $do$;
DO $do$ BEGIN RAISE NOTICE 'quotings: %', $q$ENCRYPTED PASSWORD E'pw\'two' password 'pw''three' PASSWORD $$pw-four$$ Password $t$pw$$five$t$ password /* c */ 'pw-six' PASSWORD NULL nopassword 'kept'$q$; END $do$;
DO $do$ BEGIN RAISE NOTICE 'conninfo: %', $q$CONNECTION 'host=x password=pw-seven port=5432' OPTIONS (password 'pw-eight', "password" 'pw-nine') 'password = ''pw ten'' user=u' 'password=''pw\''eleven'' dbname=d'$q$; END $do$;
-- The end of an identifier: db_password = 'x'; not a longer word.
DO $do$ BEGIN RAISE NOTICE 'names: %', $q$UPDATE t SET db_password = 'pw-14', passwords = 'kept', password_hash = 'kept' WHERE password_ok AND "password" = $$pw-15$$$q$; END $do$;
-- A literal inside a literal (dynamic SQL).
DO $do$ BEGIN RAISE NOTICE 'nested: %', $q$EXECUTE 'ALTER ROLE r PASSWORD ''pw-13'' LOGIN'$q$; END $do$;
-- Unterminated: redacted to the end.
DO $do$ BEGIN RAISE NOTICE 'cut: %', $q$PASSWORD 'pw-twelve and the rest$q$; END $do$;
-- Already redacted text stays as it is.
DO $do$ BEGIN RAISE NOTICE 'again: %', $q$PASSWORD '[REDACTED]' password=[REDACTED] kgk_[REDACTED]$q$; END $do$;

-- redact_patterns: compiled when set; a match anywhere in a line.
SET keys_guard.redact_patterns = 'sk_live_[0-9a-z]{8}', '(?i)ghp_[[:alnum:]_]+';
SHOW keys_guard.redact_patterns;
SELECT 'sk_live_abcd1234 then GHP_Secret9 then sk_live_short'::int;
DO $$ BEGIN RAISE EXCEPTION 'é sk_live_abcd1234 é' USING DETAIL = 'ghp_x', HINT = 'sk_live_00000000'; END $$;
-- Empty matches hide nothing.
SET keys_guard.redact_patterns = 'q*';
SELECT 'abc'::int;
-- An invalid pattern is refused (22023), and the setting is unchanged.
SET keys_guard.redact_patterns = 'sk_live_[0-9';
SET keys_guard.redact_patterns = 'ok', '(unclosed';
SET keys_guard.redact_patterns = '';
SHOW keys_guard.redact_patterns;
\set VERBOSITY sqlstate
SET keys_guard.redact_patterns = '*bad';
\set VERBOSITY default
-- Only a superuser sets it.
CREATE ROLE redaction_plain;
SET ROLE redaction_plain;
SET keys_guard.redact_patterns = 'x';
RESET ROLE;
DROP ROLE redaction_plain;
RESET keys_guard.redact_patterns;
-- A text found clean before a pattern was set is looked at again after:
-- shown as it is, then other statements, then shown redacted.
SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid() AND 'pat-12345678' <> '';
SELECT 1 AS other;
SELECT 2 AS other;
SET keys_guard.redact_patterns = 'pat-[0-9]{8}';
SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid() AND 'pat-12345678' <> '';
RESET keys_guard.redact_patterns;

-- pg_stat_activity: the new kinds are shown redacted too.
SELECT query FROM pg_stat_activity
 WHERE pid = pg_backend_pid() AND 'password=pw-act' <> :'jwt';
RESET log_min_messages;

-- The scan looks at sixteen bytes at a time: each kind of secret at every
-- offset within a block and across the block's end (a candidate as the
-- last byte of a block, its next byte in the following one) and in the
-- tail after the last whole block.  Each statement reads its own text back
-- from pg_stat_activity; the markers the checks look for are built by
-- concatenation, so that the checks' own text holds none of them.  The
-- statements are not echoed (the secrets would be in the expected output).
CREATE TEMP TABLE redaction_offsets (kind text, pad int, query text);
\set ECHO none
SELECT format($s$INSERT INTO redaction_offsets SELECT %L, %s, query FROM pg_stat_activity WHERE pid = pg_backend_pid() -- %s%s$s$,
              kind, pad, repeat(' ', pad), secret)
  FROM generate_series(0, 35) AS pad,
       (VALUES ('key', 'kgk_0123456789abcdefdeadbeefcafe'),
               ('jwt', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl'),
               ('jwt-dot', 'ab.eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl'),
               ('pw', 'PassWord ''hunter2secret''')) AS v(kind, secret)
 ORDER BY kind, pad \gexec
\set ECHO all
SELECT kind, count(*) AS statements,
       count(*) FILTER (WHERE strpos(query, 'deadbeef' || 'cafe') > 0
                           OR strpos(query, 'c2lnbmF0' || 'dXJl') > 0
                           OR strpos(query, 'hunter2' || 'secret') > 0) AS leaked,
       count(*) FILTER (WHERE strpos(query, '[REDACTED]') > 0) AS redacted
  FROM redaction_offsets GROUP BY kind ORDER BY kind;
DROP TABLE redaction_offsets;

-- Correlation (README, "Every log line has its request") goes to the
-- server-only detail: the client's messages carry nothing extra.
SET log_min_messages = notice;
BEGIN;
SELECT keys_guard.set_context(tenant => 'acme', actor => 'user_456', request_id => 'req-redaction');
DO $$ BEGIN RAISE NOTICE 'in a request' USING DETAIL = 'the detail'; END $$;
SELECT 1/0;
ROLLBACK;
RESET log_min_messages;
