--
-- api_keys: API keys for tools and AI agents (docs/contract.md §15):
-- create, the secret's shape, use, every refusal with one message, audit
-- without the secret, rotation, revocation, the tenant lifecycle, the
-- view and the registry's protection.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
SET client_min_messages = warning;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kg_tool') THEN
        CREATE ROLE kg_tool LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kg_tool_gw') THEN
        CREATE ROLE kg_tool_gw LOGIN;
    END IF;
END
$$;
GRANT keys_guard_keyholder TO kg_tool, kg_tool_gw;
GRANT keys_guard_gateway TO kg_tool_gw;
SELECT id FROM keys_guard.create_tenant('apikeys');
SELECT id FROM keys_guard.create_tenant('apikeys_other');
SELECT id FROM keys_guard.create_tenant('apikeys_gone');
CREATE TABLE IF NOT EXISTS tenant_apikeys.things (id int PRIMARY KEY, label text);
BEGIN;
SELECT keys_guard.set_context('apikeys', 'setup');
INSERT INTO tenant_apikeys.things VALUES (1, 'one'), (2, 'two') ON CONFLICT DO NOTHING;
COMMIT;
GRANT USAGE ON SCHEMA tenant_apikeys TO keys_guard_keyholder;
-- CRC-32C (Castagnoli, reflected 0x82F63B78) in lower-case hex, to make
-- well-formed secrets that were never issued.
CREATE FUNCTION pg_temp.crc32c(s text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    crc bigint := 4294967295;
BEGIN
    FOR i IN 1..length(s) LOOP
        crc := crc # ascii(substr(s, i, 1));
        FOR j IN 1..8 LOOP
            crc := CASE WHEN crc & 1 = 1 THEN (crc >> 1) # 2197175160 ELSE crc >> 1 END;
        END LOOP;
    END LOOP;
    RETURN lpad(to_hex(crc # 4294967295), 8, '0');
END
$$;
GRANT SELECT ON tenant_apikeys.things TO keys_guard_keyholder;
RESET client_min_messages;

--
-- 1. create_api_key
--
-- A read key (the defaults): the secret's shape.
SELECT key_id AS read_id, secret AS read_secret, expires_at AS read_expires
  FROM keys_guard.create_api_key('apikeys', 'assistant') \gset
SELECT left(:'read_secret', 4) AS prefix, length(:'read_secret') AS length,
       :'read_secret' ~ '^kgk_[0-9a-f]{32}[a-z2-7]{52}[0-9a-f]{8}$' AS shape,
       substr(:'read_secret', 5, 32) = replace(:'read_id', '-', '') AS carries_key_id,
       :'read_expires'::timestamptz - now() BETWEEN interval '89 days 23 hours' AND interval '90 days' AS ninety_days,
       right(:'read_secret', 8) = pg_temp.crc32c(left(:'read_secret', 88)) AS crc32c;
-- A second key differs (id and random part).
SELECT key_id AS read2_id, secret AS read2_secret
  FROM keys_guard.create_api_key('apikeys', 'assistant-2', '{read}', '1 day') \gset
SELECT :'read_secret' <> :'read2_secret' AS differ,
       substr(:'read_secret', 37, 52) <> substr(:'read2_secret', 37, 52) AS random_differs;
-- Write without consent: 22023.  With consent: a WARNING, and the consent recorded.
SELECT * FROM keys_guard.create_api_key('apikeys', 'writer', '{read,write}');
\echo :LAST_ERROR_SQLSTATE
SELECT key_id AS write_id, secret AS write_secret
  FROM keys_guard.create_api_key('apikeys', 'writer', '{read,write}', write_consent => true) \gset
SELECT scopes, write_consent_by, write_consent_at IS NOT NULL AS consent_at
  FROM keys_guard.api_keys WHERE key_id = :'write_id';
-- Bad arguments.
SELECT * FROM keys_guard.create_api_key(NULL, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.create_api_key('apikeys', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.create_api_key('apikeys', 'x', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.create_api_key('apikeys', 'x', expires_in => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.create_api_key('apikeys', 'x', write_consent => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.create_api_key('apikeys', '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.create_api_key('apikeys', 'x', '{admin}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.create_api_key('apikeys', 'x', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.create_api_key('apikeys', 'x', expires_in => '0 seconds');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.create_api_key('apikeys', 'x', expires_in => '-1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.create_api_key('apikeys', 'x', expires_in => '2 years');
\echo :LAST_ERROR_SQLSTATE
SET keys_guard.api_key_max_lifetime = '1h';
SELECT * FROM keys_guard.create_api_key('apikeys', 'x', expires_in => '2 hours');
\echo :LAST_ERROR_SQLSTATE
RESET keys_guard.api_key_max_lifetime;
SELECT * FROM keys_guard.create_api_key('no_such_tenant', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.create_api_key('Bad Tenant!', 'x');
\echo :LAST_ERROR_SQLSTATE
-- Who: a gateway for the tenant of its context, nobody else.
SET ROLE kg_app;
SELECT * FROM keys_guard.create_api_key('apikeys', 'x');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT keys_guard.set_context('apikeys', 'user_456');
SELECT key_id IS NOT NULL AS gateway_created FROM keys_guard.create_api_key('apikeys', 'from-app');
SELECT * FROM keys_guard.create_api_key('apikeys_other', 'x');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET ROLE kg_nobody;
SELECT * FROM keys_guard.create_api_key('apikeys', 'x');
\echo :LAST_ERROR_SQLSTATE
SET ROLE kg_tool;
SELECT * FROM keys_guard.create_api_key('apikeys', 'x');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

--
-- 2. use_api_key
--
SET ROLE kg_tool;
BEGIN;
SELECT keys_guard.use_api_key(:'read_secret');
SELECT keys_guard.current_tenant(), keys_guard.current_actor(),
       keys_guard.current_request_id() IS NOT NULL AS has_request_id,
       current_setting('statement_timeout') AS statement_timeout;
SELECT id, label FROM things ORDER BY id;
COMMIT;
-- Transaction-scoped: gone after COMMIT.
SELECT keys_guard.current_tenant();
-- A lower statement_timeout stays; none (0) counts as infinite.
BEGIN;
SET LOCAL statement_timeout = '5s';
SELECT keys_guard.use_api_key(:'read_secret');
SELECT current_setting('statement_timeout') AS statement_timeout;
ROLLBACK;
-- A higher one is lowered for the transaction, and is back after it; then
-- the session's own (a session whose login is not a keyholder: a
-- keyholder's session keeps the lowered value, see api_key_attacks).
BEGIN;
SET LOCAL statement_timeout = '1h';
SELECT keys_guard.use_api_key(:'read_secret');
SELECT current_setting('statement_timeout') AS statement_timeout;
COMMIT;
SELECT current_setting('statement_timeout') AS statement_timeout;
-- Outside a transaction block: a warning.  The timer use_api_key() armed
-- ends with the statement's implicit transaction: it does not cancel a
-- later statement of the session.
RESET ROLE;
SET keys_guard.api_key_statement_timeout = '200ms';
SET ROLE kg_tool;
SELECT keys_guard.use_api_key(:'read_secret');
SELECT pg_sleep(0.5) AS later_statement;
-- A higher statement_timeout of the session does not lift the key's.
BEGIN;
SET LOCAL statement_timeout = '1h';
SELECT keys_guard.use_api_key(:'read_secret');
SELECT pg_sleep(0.5) AS over_the_key;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
RESET keys_guard.api_key_statement_timeout;
SET ROLE kg_tool;
-- A keyholder never sets a context itself, even with gateway rights.
SELECT keys_guard.set_context('apikeys', 'me');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE kg_tool_gw;
SELECT keys_guard.set_context('apikeys', 'me');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.admin_context('me', 'why');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Only keyholders use keys.
SET ROLE kg_app;
SELECT keys_guard.use_api_key(:'read_secret');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE kg_tool;
SELECT keys_guard.use_api_key(NULL);
\echo :LAST_ERROR_SQLSTATE

--
-- 3. Every refusal is 28000 "invalid API key", whatever the reason.
--
-- Well-formed secrets with a valid checksum that were never issued: an
-- unknown key id, and the id of a live key with another random part.
RESET ROLE;
SELECT 'kgk_' || md5('never issued') || repeat('a', 52) AS unknown_body,
       left(:'write_secret', 36) || repeat('b', 52) AS wrong_body \gset
SELECT :'unknown_body' || pg_temp.crc32c(:'unknown_body') AS unknown_secret,
       :'wrong_body' || pg_temp.crc32c(:'wrong_body') AS wrong_secret \gset
SET ROLE kg_tool;
SELECT keys_guard.use_api_key(:'unknown_secret');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.use_api_key(:'wrong_secret');
\echo :LAST_ERROR_SQLSTATE
-- malformed: too long, truncated, empty, bad checksum, spliced
SELECT keys_guard.use_api_key(:'read_secret' || 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.use_api_key(left(:'read_secret', 95));
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.use_api_key('');
\echo :LAST_ERROR_SQLSTATE
-- bad checksum: the last character changed
SELECT keys_guard.use_api_key(left(:'read_secret', 95) ||
       CASE right(:'read_secret', 1) WHEN '0' THEN '1' ELSE '0' END);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.use_api_key(left(:'read2_secret', 36) || substr(:'read_secret', 37));
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

--
-- 4. Revocation: idempotent, and refused after.
--
SELECT keys_guard.revoke_api_key(:'read2_id') AS first_revoke \gset
SELECT keys_guard.revoke_api_key(:'read2_id') = :'first_revoke'::timestamptz AS same_time;
SELECT status, revoked_by FROM keys_guard.api_keys WHERE key_id = :'read2_id';
SET ROLE kg_tool;
SELECT keys_guard.use_api_key(:'read2_secret');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT keys_guard.revoke_api_key(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.revoke_api_key('00000000-0000-4000-8000-000000000000');
\echo :LAST_ERROR_SQLSTATE

--
-- 5. Expiry.
--
SELECT key_id AS short_id, secret AS short_secret
  FROM keys_guard.create_api_key('apikeys', 'short', expires_in => '1 second') \gset
SELECT pg_sleep(1.2);
SET ROLE kg_tool;
SELECT keys_guard.use_api_key(:'short_secret');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT status FROM keys_guard.api_keys WHERE key_id = :'short_id';

--
-- 6. Rotation: a new key; the old one works until the overlap ends.
--
SELECT new_key_id AS rot_id, secret AS rot_secret,
       old_expires_at - now() = interval '1 hour' AS overlap_hour,
       expires_at - now() = interval '90 days' AS same_lifetime
  FROM keys_guard.rotate_api_key(:'read_id', overlap => '1 hour') \gset
SELECT :'overlap_hour' AS overlap_hour, :'same_lifetime' AS same_lifetime;
SELECT key_id = :'read_id' AS is_old, status, replaced_by = :'rot_id' AS points_to_new,
       rotated_from = :'read_id' AS points_to_old
  FROM keys_guard.api_keys WHERE key_id IN (:'read_id', :'rot_id') ORDER BY is_old;
SET ROLE kg_tool;
BEGIN;
SELECT keys_guard.use_api_key(:'read_secret');
SELECT keys_guard.use_api_key(:'rot_secret');
SELECT keys_guard.current_actor();
COMMIT;
RESET ROLE;
-- Rotating again, or with a negative overlap, is refused.
SELECT * FROM keys_guard.rotate_api_key(:'read_id');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.rotate_api_key(:'rot_id', '-1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.rotate_api_key(:'rot_id', NULL);
\echo :LAST_ERROR_SQLSTATE
-- Overlap 0: the old key stops at once.
SELECT new_key_id AS rot2_id, secret AS rot2_secret
  FROM keys_guard.rotate_api_key(:'rot_id', overlap => '0 seconds') \gset
SET ROLE kg_tool;
SELECT keys_guard.use_api_key(:'rot_secret');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- A write key's rotation keeps the consent and warns again.
SELECT new_key_id IS NOT NULL AS rotated FROM keys_guard.rotate_api_key(:'write_id');

--
-- 7. delete_tenant revokes the tenant's keys; restore_tenant does not.
--
SELECT key_id AS gone_id, secret AS gone_secret
  FROM keys_guard.create_api_key('apikeys_gone', 'bot') \gset
SET client_min_messages = warning;
SELECT DISTINCT status FROM keys_guard.delete_tenant('apikeys_gone', grace => '1 day');
SELECT status, revoked_by FROM keys_guard.api_keys WHERE key_id = :'gone_id';
SELECT * FROM keys_guard.create_api_key('apikeys_gone', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT status FROM keys_guard.restore_tenant('apikeys_gone');
RESET client_min_messages;
SELECT status, revoked_by FROM keys_guard.api_keys WHERE key_id = :'gone_id';
SET ROLE kg_tool;
SELECT keys_guard.use_api_key(:'gone_secret');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

--
-- 8. Audit: successes and refusals with the key id and reason, never the secret.
--
SELECT wait_for_audit($$action = 'api_key_use' AND outcome = 'denied' AND target = '$$ || :'gone_id' || $$' AND outcome = 'denied'$$, 1) > 0 AS drained;
-- Successful uses are counted per key in windows of about a second ("uses"),
-- written once the window closes; each refusal is a record of its own.
SELECT wait_for_audit_total($$action = 'api_key_use' AND outcome = 'ok' AND target IN ('$$ || :'read_id' || $$', '$$ || :'read2_id' || $$', '$$ || :'short_id' || $$', '$$ || :'rot_id' || $$', '$$ || :'gone_id' || $$', '$$ || :'write_id' || $$')$$, 7) AS uses_written;
SELECT outcome, detail->>'reason' AS reason,
       sum(coalesce((detail->>'uses')::int, 1)) AS uses
  FROM keys_guard.audit_log
 WHERE action = 'api_key_use'
   AND (target IN (:'read_id', :'read2_id', :'short_id', :'rot_id', :'gone_id', :'write_id')
        OR target = substr(:'unknown_secret', 5, 32)::uuid::text
        OR (target IS NULL AND detail->>'reason' = 'malformed'))
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT tenant, actor, detail->>'name' AS name
  FROM keys_guard.audit_log
 WHERE action = 'api_key_use' AND outcome = 'ok' AND target = :'read_id' LIMIT 1;
SELECT action, count(*) FROM keys_guard.audit_log
 WHERE action IN ('create_api_key', 'rotate_api_key', 'revoke_api_key')
   AND target IN (:'read_id', :'read2_id', :'rot_id', :'rot2_id') GROUP BY 1 ORDER BY 1;
-- No record holds a secret (or its random part); the redaction marker, which
-- other suites' records may hold, is not one.
SELECT count(*) AS records_with_secret FROM keys_guard.audit_log
 WHERE position(substr(:'read_secret', 37, 52) IN detail::text || coalesce(target, '') || coalesce(actor, '')) > 0
    OR position(substr(:'read2_secret', 37, 52) IN detail::text) > 0
    OR position(substr(:'rot_secret', 37, 52) IN detail::text) > 0
    OR position(substr(:'wrong_secret', 37, 52) IN detail::text) > 0
    OR position('kgk_' IN replace(detail::text || coalesce(target, ''), 'kgk_[REDACTED]', '')) > 0;

-- Uses and statements are counted per key in windows of about a second:
-- one api_key_statement record per command and relations with how many
-- ("statements") and their rows in all.  What a rolled-back transaction ran
-- is counted too.  A window that saw one request carries its request id.
SELECT key_id AS win_id, secret AS win_secret
  FROM keys_guard.create_api_key('apikeys', 'windowed') \gset
SET ROLE kg_tool;
BEGIN;
SELECT keys_guard.use_api_key(:'win_secret');
SELECT keys_guard.current_request_id() AS win_request \gset
SELECT id FROM things WHERE id = 1;
SELECT id FROM things WHERE id = 2;
SELECT id, label FROM things ORDER BY id;
ROLLBACK;
RESET ROLE;
SELECT wait_for_audit_total($$action = 'api_key_statement' AND detail->>'key_id' = '$$ || :'win_id' || $$'$$, 5) AS win_statements;
SELECT detail->>'command' AS command, detail->>'relations' AS relations,
       detail->>'statements' AS statements, detail->>'rows' AS rows,
       request_id = :'win_request' AS its_request, detail ? 'first_request_id' AS several
  FROM keys_guard.audit_log
 WHERE action = 'api_key_statement' AND detail->>'key_id' = :'win_id'
 ORDER BY 2;
-- Two requests in a row under one key: one window, no single request id,
-- the first and last named.
SELECT key_id AS win2_id, secret AS win2_secret
  FROM keys_guard.create_api_key('apikeys', 'windowed2') \gset
SET ROLE kg_tool;
BEGIN;
SELECT keys_guard.use_api_key(:'win2_secret');
SELECT keys_guard.current_request_id() AS win2_first \gset
COMMIT;
BEGIN;
SELECT keys_guard.use_api_key(:'win2_secret');
SELECT keys_guard.current_request_id() AS win2_last \gset
COMMIT;
RESET ROLE;
SELECT wait_for_audit_total($$action = 'api_key_use' AND target = '$$ || :'win2_id' || $$'$$, 2) AS win2_uses;
SELECT count(*) AS records, sum((detail->>'uses')::int) AS uses,
       bool_and(request_id IS NULL) AS no_request_id,
       bool_and(detail->>'first_request_id' = :'win2_first') AS first_named,
       bool_and(detail->>'last_request_id' = :'win2_last') AS last_named,
       bool_and(detail ? 'last_at') AS has_last_at
  FROM keys_guard.audit_log
 WHERE action = 'api_key_use' AND target = :'win2_id';

-- A statement counts as one the request ran (and is audited) when it ends
-- at top level.  An error part-way through a statement, caught by an
-- exception block or rolled back to a savepoint, leaves the statements
-- that follow at top level: each is recorded.
CREATE FUNCTION public.kg_swallow_error() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        PERFORM id / 0 FROM tenant_apikeys.things;
    EXCEPTION WHEN division_by_zero THEN
        RETURN -1;
    END;
    RETURN 0;
END
$$;
SELECT key_id AS err_id, secret AS err_secret
  FROM keys_guard.create_api_key('apikeys', 'errors') \gset
SET ROLE kg_tool;
BEGIN;
SELECT keys_guard.use_api_key(:'err_secret');
SELECT public.kg_swallow_error() FROM things WHERE id = 1;
SAVEPOINT s;
SELECT id / 0 FROM things;
ROLLBACK TO s;
SELECT label FROM things WHERE id = 2;
SELECT count(*) FROM things;
COMMIT;
-- A transaction that fails part-way through a statement, then the next.
BEGIN;
SELECT keys_guard.use_api_key(:'err_secret');
SELECT id / 0 FROM things;
ROLLBACK;
BEGIN;
SELECT keys_guard.use_api_key(:'err_secret');
SELECT label FROM things WHERE id = 1;
COMMIT;
RESET ROLE;
SELECT wait_for_audit_total($$action = 'api_key_statement' AND detail->>'key_id' = '$$ || :'err_id' || $$'$$, 7) AS err_statements;
SELECT sum((detail->>'statements')::int) AS statements, sum((detail->>'rows')::int) AS rows
  FROM keys_guard.audit_log
 WHERE action = 'api_key_statement' AND detail->>'key_id' = :'err_id';
DROP FUNCTION public.kg_swallow_error();

-- A statement is counted when it starts, its rows when it ends: a cursor
-- whose rows were read and whose transaction or savepoint is rolled back,
-- and a cursor that a function closes, are counted too.
CREATE FUNCTION public.kg_close_cursor(name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CLOSE %I', name);
END
$$;
SELECT key_id AS cur_id, secret AS cur_secret
  FROM keys_guard.create_api_key('apikeys', 'cursors') \gset
SET ROLE kg_tool;
BEGIN;
SELECT keys_guard.use_api_key(:'cur_secret');
DECLARE c1 CURSOR FOR SELECT id FROM things ORDER BY id;
FETCH ALL FROM c1;
ROLLBACK;
BEGIN;
SELECT keys_guard.use_api_key(:'cur_secret');
SAVEPOINT s;
DECLARE c2 CURSOR FOR SELECT label FROM things ORDER BY id;
FETCH ALL FROM c2;
ROLLBACK TO s;
DECLARE c3 CURSOR FOR SELECT id, label FROM things ORDER BY id;
FETCH 1 FROM c3;
SELECT public.kg_close_cursor('c3');
COMMIT;
RESET ROLE;
SELECT wait_for_audit_total($$action = 'api_key_statement' AND detail->>'key_id' = '$$ || :'cur_id' || $$'$$, 6) AS cur_statements;
SELECT detail->>'command' AS command, detail->>'relations' AS relations,
       sum((detail->>'statements')::int) AS statements, sum((detail->>'rows')::int) AS rows
  FROM keys_guard.audit_log
 WHERE action = 'api_key_statement' AND detail->>'key_id' = :'cur_id'
 GROUP BY 1, 2 ORDER BY 1, 2;
DROP FUNCTION public.kg_close_cursor(text);

--
-- 9. The view and the registry.
--
SELECT attname FROM pg_attribute
 WHERE attrelid = 'keys_guard.api_keys'::regclass AND attnum > 0 ORDER BY attnum;
SELECT has_table_privilege('kg_app', 'keys_guard.api_key', 'SELECT') AS app_reads_table,
       has_table_privilege('kg_tool', 'keys_guard.api_keys', 'SELECT') AS tool_reads_view;
-- A gateway sees the keys of its context's tenant only.
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('apikeys_other', 'u');
SELECT count(*) AS other_tenant_keys FROM keys_guard.api_keys;
ROLLBACK;
RESET ROLE;
-- Direct writes are refused, superusers included.
UPDATE keys_guard.api_key SET revoked_at = NULL;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM keys_guard.api_key;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO keys_guard.api_key SELECT * FROM keys_guard.api_key LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE keys_guard.api_key;
\echo :LAST_ERROR_SQLSTATE
-- The stored hash is SHA-256 of the secret.
SELECT secret_hash = sha256(convert_to(:'write_secret', 'UTF8')) AS sha256
  FROM keys_guard.api_key WHERE id = :'write_id';
