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
