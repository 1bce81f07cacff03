--
-- api_key_attacks: in a keyholder session (the session user is a member of
-- keys_guard_keyholder) nothing changes unless a write key is in force, by
-- any path (docs/contract.md §15): each write path below is tried and
-- refused with 42501 (or PostgreSQL's own 25006), audited, and the
-- superuser then checks that nothing changed.  Self-contained: the role
-- kg_reader, tenant aka_t and objects named aka_*.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
SET client_min_messages = warning;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kg_reader') THEN
        CREATE ROLE kg_reader LOGIN;
    END IF;
END
$$;
DROP ROLE IF EXISTS aka_plain_role;
RESET client_min_messages;
GRANT keys_guard_keyholder TO kg_reader;
CREATE ROLE aka_plain_role LOGIN;   -- not a keyholder: the regime costs it nothing

-- What kg_reader owns or may use: a plain table, a sequence, a large
-- object, a tenant's table, a temporary table of this session, a
-- materialized view, a SECURITY DEFINER function owned by the superuser
-- that writes, an ordinary function that writes, and a procedure.
CREATE TABLE public.aka_plain (id int PRIMARY KEY, body text);
INSERT INTO public.aka_plain VALUES (1, 'one'), (2, 'two');
ALTER TABLE public.aka_plain OWNER TO kg_reader;
GRANT ALL ON public.aka_plain TO aka_plain_role;
CREATE SEQUENCE public.aka_seq;
SELECT nextval('public.aka_seq');
ALTER SEQUENCE public.aka_seq OWNER TO kg_reader;
GRANT ALL ON public.aka_seq TO aka_plain_role;
SELECT lo_from_bytea(424242, 'large object') AS lo;
ALTER LARGE OBJECT 424242 OWNER TO kg_reader;
CREATE MATERIALIZED VIEW public.aka_mv AS SELECT id FROM public.aka_plain;
ALTER MATERIALIZED VIEW public.aka_mv OWNER TO kg_reader;
SELECT id FROM keys_guard.create_tenant('aka_t');
CREATE TABLE tenant_aka_t.items (id int PRIMARY KEY, body text);
GRANT USAGE ON SCHEMA tenant_aka_t TO kg_reader;
GRANT ALL ON tenant_aka_t.items TO kg_reader;
CREATE TEMP TABLE aka_tmp (id int);
INSERT INTO aka_tmp VALUES (1);
GRANT ALL ON aka_tmp TO kg_reader;
CREATE FUNCTION public.aka_definer_write() RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO public.aka_plain VALUES (100, 'definer');
    RETURN 1;
END
$$;
CREATE FUNCTION public.aka_definer_lo() RETURNS oid
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT lo_create(0) $$;
CREATE FUNCTION public.aka_sql_write() RETURNS int
LANGUAGE sql AS $$ UPDATE public.aka_plain SET body = 'changed' RETURNING id $$;
CREATE PROCEDURE public.aka_proc() LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.aka_plain VALUES (101, 'procedure');
END
$$;
GRANT EXECUTE ON FUNCTION public.aka_definer_write(), public.aka_definer_lo(),
    public.aka_sql_write() TO kg_reader;
GRANT CREATE ON SCHEMA public TO kg_reader;

-- What must not change: its state now, and the same taken again at the end.
CREATE TEMP VIEW aka_state AS
SELECT (SELECT count(*) FROM public.aka_plain) AS plain_rows,
       (SELECT string_agg(id || body, ',' ORDER BY id) FROM public.aka_plain) AS plain_data,
       (SELECT count(*) FROM pg_temp.aka_tmp) AS temp_rows,
       (SELECT last_value FROM public.aka_seq) AS seq_value,
       (SELECT count(*) FROM pg_largeobject_metadata) AS large_objects,
       (SELECT lo_get(424242)) AS lo_data,
       (SELECT count(*) FROM pg_class) AS relations,
       (SELECT count(*) FROM pg_proc) AS functions,
       (SELECT max(oid::text::bigint) FROM pg_class) AS max_class_oid;
CREATE TEMP TABLE aka_before AS SELECT * FROM aka_state WITH NO DATA;
INSERT INTO aka_before SELECT * FROM aka_state;

--
-- 1. The keyholder session: SET SESSION AUTHORIZATION sets the session
-- user, which SET ROLE could not change.
--
SET SESSION AUTHORIZATION kg_reader;
SELECT session_user, current_user;
-- Reading works, and the transaction is read-only.
SELECT id, body FROM public.aka_plain ORDER BY id;
SELECT count(*) FROM pg_temp.aka_tmp;
SELECT currval('public.aka_seq') IS NULL AS no_currval_needed, last_value FROM public.aka_seq;
SELECT lo_get(424242);
SHOW transaction_read_only;

-- 2. Every write path through the executor, functions and utility
-- statements, each in its own subtransaction.
SELECT n, stmt, try(stmt) AS outcome FROM (VALUES
    (1, $$INSERT INTO public.aka_plain VALUES (3, 'three')$$),
    (2, $$UPDATE public.aka_plain SET body = 'x'$$),
    (3, $$DELETE FROM public.aka_plain$$),
    (4, $$MERGE INTO public.aka_plain p USING (SELECT 1 AS id) s ON p.id = s.id
          WHEN MATCHED THEN UPDATE SET body = 'merged'$$),
    (5, $$INSERT INTO public.aka_plain VALUES (3, 'x') ON CONFLICT DO NOTHING$$),
    (6, $$WITH w AS (INSERT INTO public.aka_plain VALUES (4, 'cte') RETURNING id) SELECT id FROM w$$),
    (7, $$WITH w AS (DELETE FROM public.aka_plain RETURNING id) SELECT 1$$),
    (8, $$SELECT * FROM public.aka_plain FOR UPDATE$$),
    (9, $$SELECT * FROM public.aka_plain FOR NO KEY UPDATE$$),
    (10, $$SELECT * FROM public.aka_plain FOR SHARE$$),
    (11, $$SELECT * FROM public.aka_plain FOR KEY SHARE$$),
    (12, $$INSERT INTO pg_temp.aka_tmp VALUES (2)$$),
    (13, $$UPDATE pg_temp.aka_tmp SET id = 3$$),
    (14, $$DELETE FROM pg_temp.aka_tmp$$),
    (15, $$INSERT INTO tenant_aka_t.items VALUES (1, 'x')$$),
    (16, $$COPY public.aka_plain FROM '/dev/null'$$),
    (17, $$COPY public.aka_plain FROM PROGRAM 'true'$$),
    (18, $$COPY public.aka_plain TO '/tmp/aka_out'$$),
    (19, $$TRUNCATE public.aka_plain$$),
    (20, $$TRUNCATE pg_temp.aka_tmp$$),
    (21, $$CREATE TABLE public.aka_new (id int)$$),
    (22, $$CREATE TEMP TABLE aka_new_tmp (id int)$$),
    (23, $$CREATE TABLE public.aka_ctas AS SELECT 1 AS id$$),
    (24, $$SELECT 1 AS id INTO TEMP aka_into$$),
    (25, $$CREATE INDEX ON public.aka_plain (body)$$),
    (26, $$CREATE FUNCTION public.aka_f() RETURNS int LANGUAGE sql AS 'SELECT 1'$$),
    (27, $$CREATE VIEW public.aka_v AS SELECT 1 AS id$$),
    (28, $$CREATE TEMP VIEW aka_tv AS SELECT 1 AS id$$),
    (29, $$CREATE SCHEMA aka_schema$$),
    (30, $$ALTER TABLE public.aka_plain ADD COLUMN extra int$$),
    (31, $$ALTER SEQUENCE public.aka_seq RESTART$$),
    (32, $$DROP TABLE public.aka_plain$$),
    (33, $$DROP SEQUENCE public.aka_seq$$),
    (34, $$COMMENT ON TABLE public.aka_plain IS 'x'$$),
    (35, $$GRANT SELECT ON public.aka_plain TO PUBLIC$$),
    (36, $$REFRESH MATERIALIZED VIEW public.aka_mv$$),
    (37, $$VACUUM public.aka_plain$$),
    (38, $$ANALYZE public.aka_plain$$),
    (39, $$CLUSTER public.aka_plain USING aka_plain_pkey$$),
    (40, $$REINDEX TABLE public.aka_plain$$),
    (41, $$CHECKPOINT$$),
    (42, $$SELECT nextval('public.aka_seq')$$),
    (43, $$SELECT setval('public.aka_seq', 100)$$),
    (44, $$SELECT setval('public.aka_seq', 100, false)$$),
    (45, $$INSERT INTO public.aka_plain VALUES (nextval('public.aka_seq'), 'x')$$),
    (46, $$NOTIFY aka_channel$$),
    (47, $$SELECT pg_notify('aka_channel', 'x')$$),
    (48, $$LOCK public.aka_plain IN ACCESS SHARE MODE$$),
    (49, $$LOCK public.aka_plain IN ROW SHARE MODE$$),
    (50, $$LOCK public.aka_plain IN ROW EXCLUSIVE MODE$$),
    (51, $$LOCK public.aka_plain IN SHARE UPDATE EXCLUSIVE MODE$$),
    (52, $$LOCK public.aka_plain IN SHARE MODE$$),
    (53, $$LOCK public.aka_plain IN SHARE ROW EXCLUSIVE MODE$$),
    (54, $$LOCK public.aka_plain IN EXCLUSIVE MODE$$),
    (55, $$LOCK public.aka_plain IN ACCESS EXCLUSIVE MODE$$),
    (56, $$LOCK public.aka_plain$$),
    (57, $$SET transaction_read_only = off$$),
    (58, $$SET default_transaction_read_only = off$$),
    (59, $$SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE$$),
    (60, $$SET statement_timeout = 0$$),
    (61, $$SET LOCAL statement_timeout = 0$$),
    (62, $$RESET statement_timeout$$),
    (63, $$SET lock_timeout = 0$$),
    (64, $$SET idle_in_transaction_session_timeout = 0$$),
    (65, $$RESET ALL$$),
    (66, $$SET ROLE aka_plain_role$$),
    (67, $$SET keys_guard.include_deleted = on$$),
    (68, $$SELECT set_config('statement_timeout', '0', false)$$),
    (69, $$SELECT set_config('transaction_read_only', 'off', true)$$),
    (70, $$SELECT set_config('work_mem', '64MB', true)$$),
    (71, $$CALL public.aka_proc()$$),
    (72, $$DO 'BEGIN INSERT INTO public.aka_plain VALUES (5, ''do''); END'$$),
    (73, $$DO 'BEGIN COMMIT; END'$$),
    (74, $$SELECT public.aka_definer_write()$$),
    (75, $$SELECT public.aka_definer_lo()$$),
    (76, $$SELECT public.aka_sql_write()$$),
    (77, $$EXPLAIN ANALYZE INSERT INTO public.aka_plain VALUES (6, 'explain')$$),
    (78, $$EXPLAIN (COSTS OFF) INSERT INTO public.aka_plain VALUES (6, 'explain')$$),
    (79, $$DISCARD ALL$$),
    (80, $$DISCARD TEMP$$),
    (81, $$DISCARD PLANS$$),
    (82, $$LISTEN aka_channel$$),
    (83, $$UNLISTEN aka_channel$$),
    (84, $$SELECT pg_cancel_backend(0)$$),
    (85, $$SELECT pg_terminate_backend(0)$$),
    (86, $$SELECT pg_stat_reset()$$),
    (87, $$SELECT pg_stat_reset_single_table_counters('public.aka_plain'::regclass)$$),
    (88, $$SELECT pg_reload_conf()$$),
    (89, $$CREATE EXTENSION IF NOT EXISTS keys_guard$$),
    (90, $$ALTER SYSTEM SET work_mem = '1MB'$$),
    (91, $$LOAD 'keys_guard'$$),
    (92, $$SECURITY LABEL ON TABLE public.aka_plain IS 'x'$$),
    (93, $$CREATE TEMP SEQUENCE aka_tseq$$),
    (94, $$SELECT * FROM public.aka_plain, LATERAL (SELECT nextval('public.aka_seq')) s$$),
    (95, $$EXPLAIN ANALYZE CREATE TABLE public.aka_explained AS SELECT 1 AS id$$),
    (96, $$EXPLAIN ANALYZE SELECT 1 AS id INTO TEMP aka_explained_tmp$$),
    (97, $$EXPLAIN ANALYZE CREATE MATERIALIZED VIEW public.aka_explained_mv AS SELECT 1 AS id$$),
    (98, $$EXPLAIN (COSTS OFF) CREATE TABLE public.aka_explained AS SELECT 1 AS id$$),
    (99, $$SELECT count(*) FROM public.aka_plain$$)
) AS v(n, stmt) ORDER BY n;

-- 3. Large objects: each function that changes one.
SELECT n, stmt, try(stmt) AS outcome FROM (VALUES
    (1, $$SELECT lo_creat(-1)$$),
    (2, $$SELECT lo_create(0)$$),
    (3, $$SELECT lo_import('/etc/hostname')$$),
    (4, $$SELECT lo_import('/etc/hostname', 434343)$$),
    (5, $$SELECT lo_export(424242, '/tmp/aka_lo')$$),
    (6, $$SELECT lo_unlink(424242)$$),
    (7, $$SELECT lowrite(lo_open(424242, 131072), 'x')$$),
    (8, $$SELECT lo_put(424242, 0, 'x')$$),
    (9, $$SELECT lo_from_bytea(0, 'x')$$),
    (10, $$SELECT lo_truncate(lo_open(424242, 131072), 0)$$),
    (11, $$SELECT lo_truncate64(lo_open(424242, 131072), 0)$$),
    (12, $$SELECT lo_get(424242)$$),
    (13, $$SELECT loread(lo_open(424242, 262144), 5)$$)
) AS v(n, stmt) ORDER BY n;

-- 4. Advisory locks: each kind, session and transaction level.
SELECT n, stmt, try(stmt) AS outcome FROM (VALUES
    (1, $$SELECT pg_advisory_lock(1)$$),
    (2, $$SELECT pg_advisory_lock(1, 2)$$),
    (3, $$SELECT pg_advisory_lock_shared(1)$$),
    (4, $$SELECT pg_advisory_lock_shared(1, 2)$$),
    (5, $$SELECT pg_try_advisory_lock(1)$$),
    (6, $$SELECT pg_try_advisory_lock(1, 2)$$),
    (7, $$SELECT pg_try_advisory_lock_shared(1)$$),
    (8, $$SELECT pg_try_advisory_lock_shared(1, 2)$$),
    (9, $$SELECT pg_advisory_xact_lock(1)$$),
    (10, $$SELECT pg_advisory_xact_lock(1, 2)$$),
    (11, $$SELECT pg_advisory_xact_lock_shared(1)$$),
    (12, $$SELECT pg_advisory_xact_lock_shared(1, 2)$$),
    (13, $$SELECT pg_try_advisory_xact_lock(1)$$),
    (14, $$SELECT pg_try_advisory_xact_lock(1, 2)$$),
    (15, $$SELECT pg_try_advisory_xact_lock_shared(1)$$),
    (16, $$SELECT pg_try_advisory_xact_lock_shared(1, 2)$$),
    (17, $$SELECT pg_advisory_unlock_all()$$)
) AS v(n, stmt) ORDER BY n;

-- 5. Statements PL/pgSQL cannot run: transaction control, COPY FROM STDIN,
-- VACUUM outside a transaction, stacked statements in one query string.
BEGIN READ WRITE;
\echo :LAST_ERROR_SQLSTATE
START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE;
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SET TRANSACTION READ WRITE;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SHOW transaction_read_only;
COMMIT;
BEGIN;
SELECT count(*) FROM public.aka_plain;
PREPARE TRANSACTION 'aka_prepared';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
VACUUM public.aka_plain;
\echo :LAST_ERROR_SQLSTATE
SELECT 1 AS stacked \; COMMIT \; DROP TABLE public.aka_plain;
\echo :LAST_ERROR_SQLSTATE
SELECT 1 AS stacked \; COMMIT \; DELETE FROM public.aka_plain;
\echo :LAST_ERROR_SQLSTATE
PREPARE aka_ins AS INSERT INTO public.aka_plain VALUES (7, 'prepared');
EXECUTE aka_ins;
\echo :LAST_ERROR_SQLSTATE
DEALLOCATE aka_ins;
BEGIN;
DECLARE aka_cur CURSOR FOR SELECT * FROM public.aka_plain FOR UPDATE;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
DECLARE aka_cur CURSOR FOR SELECT id FROM public.aka_plain ORDER BY id;
FETCH 1 FROM aka_cur;
CLOSE aka_cur;
COMMIT;
COPY (SELECT id FROM public.aka_plain ORDER BY id) TO STDOUT;
COPY public.aka_plain TO STDOUT;
-- psql's \copy is a COPY FROM STDIN.
\copy public.aka_plain FROM '/dev/null'
\echo :LAST_ERROR_SQLSTATE
-- psql's client-side large objects call lo_creat and lo_unlink through the
-- fast-path function call protocol, not a statement.
\lo_import '/etc/hostname'
\echo :LAST_ERROR_SQLSTATE
\lo_unlink 424242
\echo :LAST_ERROR_SQLSTATE
COPY (DELETE FROM public.aka_plain RETURNING id) TO STDOUT;
\echo :LAST_ERROR_SQLSTATE
COPY (WITH w AS (UPDATE public.aka_plain SET body = 'x' RETURNING id) SELECT id FROM w) TO STDOUT;
\echo :LAST_ERROR_SQLSTATE

--
-- 6. As the superuser again: nothing changed, and every refusal is in the
-- audit log.
--
RESET SESSION AUTHORIZATION;
SELECT session_user;
SHOW transaction_read_only;
SELECT b.plain_rows = a.plain_rows AS plain_rows_same,
       b.plain_data = a.plain_data AS plain_data_same,
       b.temp_rows = a.temp_rows AS temp_rows_same,
       b.seq_value = a.seq_value AS sequence_same,
       b.large_objects = a.large_objects AS large_objects_same,
       b.lo_data = a.lo_data AS lo_data_same,
       b.relations = a.relations AS relations_same,
       b.functions = a.functions AS functions_same,
       b.max_class_oid = a.max_class_oid AS no_new_relation
FROM pg_temp.aka_before b, pg_temp.aka_state a;
BEGIN;
SELECT keys_guard.set_context('aka_t', 'aka-check') IS NOT NULL AS context;
SELECT count(*) AS tenant_rows FROM tenant_aka_t.items;
COMMIT;
SELECT count(*) AS advisory_locks FROM pg_locks WHERE locktype = 'advisory';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'aka_prepared';
SELECT obj_description('public.aka_plain'::regclass, 'pg_class') AS comment;
SELECT current_setting('statement_timeout') AS statement_timeout,
       current_setting('default_transaction_read_only') AS default_read_only;

-- Each refusal is one denial record, whatever the path: the 114 refused
-- try() calls above and the 14 refused statements of part 5.
SELECT wait_for_audit($$action = 'api_key_write_denied' AND detail->>'session_user' = 'kg_reader'$$, 128) AS denials;
SELECT detail->>'command' AS command, count(*)
FROM keys_guard.audit_log
WHERE action = 'api_key_write_denied' AND detail->>'session_user' = 'kg_reader'
GROUP BY 1 ORDER BY 1;
SELECT DISTINCT outcome, regexp_replace(target, '^pg_temp_[0-9]+', 'pg_temp') AS target
FROM keys_guard.audit_log
WHERE action = 'api_key_write_denied' AND detail->>'session_user' = 'kg_reader'
  AND target IS NOT NULL ORDER BY 2;

--
-- 7. A role that is not a keyholder is not affected.
--
SET SESSION AUTHORIZATION aka_plain_role;
SHOW transaction_read_only;
SELECT try($$INSERT INTO public.aka_plain VALUES (50, 'plain role')$$) AS insert,
       try($$SELECT nextval('public.aka_seq')$$) AS nextval,
       try($$SELECT pg_advisory_xact_lock(1)$$) AS advisory,
       try($$SET statement_timeout = '5min'$$) AS set_timeout;
RESET statement_timeout;
RESET SESSION AUTHORIZATION;
SELECT id, body FROM public.aka_plain ORDER BY id;

--
-- 8. With real keys.  A pooled table of tenant aka_t (soft delete on), with
-- rows of aka_t and of a second tenant aka_u; a read key and a write key of
-- aka_t, made by the superuser.
--
SELECT id FROM keys_guard.create_tenant('aka_u');
CREATE TABLE public.aka_pooled (id int PRIMARY KEY, tenant_id text NOT NULL, body text);
SELECT kind FROM keys_guard.protect_table('public.aka_pooled', tenant_column => 'tenant_id');
BEGIN;
SELECT keys_guard.set_context('aka_t', 'aka-setup') IS NOT NULL AS context;
INSERT INTO public.aka_pooled (id, body) VALUES (1, 'one'), (2, 'two');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('aka_u', 'aka-setup') IS NOT NULL AS context;
INSERT INTO public.aka_pooled (id, body) VALUES (11, 'other tenant');
COMMIT;
GRANT ALL ON public.aka_pooled TO kg_reader;
SELECT key_id AS aka_read_id, secret AS aka_read_secret
  FROM keys_guard.create_api_key('aka_t', 'aka-reader') \gset
SELECT key_id AS aka_write_id, secret AS aka_write_secret
  FROM keys_guard.create_api_key('aka_t', 'aka-writer', '{read,write}', write_consent => true) \gset
SHOW statement_timeout;
SHOW keys_guard.api_key_statement_timeout;

-- 8a. A read key: the tenant's rows can be read, nothing can be written,
-- and the statement timeout is the key's.
SET SESSION AUTHORIZATION kg_reader;
BEGIN;
SELECT keys_guard.use_api_key(:'aka_read_secret');
SELECT keys_guard.current_tenant(), keys_guard.current_actor();
SHOW transaction_read_only;
SHOW statement_timeout;
SELECT id, tenant_id, body FROM public.aka_pooled ORDER BY id;
SELECT n, try(stmt) AS outcome FROM (VALUES
    (1, $$INSERT INTO public.aka_pooled (id, body) VALUES (3, 'aka-read-insert')$$),
    (2, $$WITH w AS (UPDATE public.aka_pooled SET body = 'aka-read-update' RETURNING id) SELECT id FROM w$$),
    (3, $$SELECT nextval('public.aka_seq')$$),
    (4, $$SELECT lo_create(0)$$),
    (5, $$SELECT pg_advisory_xact_lock(1)$$),
    (6, $$SET statement_timeout = 0$$),
    (7, $$SELECT set_config('statement_timeout', '0', true)$$),
    (8, $$CALL public.aka_proc()$$),
    (9, $$DO 'BEGIN NULL; END'$$),
    (10, $$COPY public.aka_pooled FROM '/dev/null'$$),
    (11, $$LOCK public.aka_pooled IN EXCLUSIVE MODE$$)
) AS v(n, stmt) ORDER BY n;
SHOW statement_timeout;
COMMIT;

-- 8b. A write key: the transaction is not read-only; INSERT, UPDATE and
-- DELETE reach the tenant's rows, DELETE is a soft delete, isolation still
-- refuses the other tenant's rows, the statement timeout still cannot be
-- lifted, and nothing but rows changes (no DDL, TRUNCATE, large object,
-- advisory lock, CALL, DO, NOTIFY, strong LOCK or setting).
BEGIN;
SELECT keys_guard.use_api_key(:'aka_write_secret');
SHOW transaction_read_only;
SHOW statement_timeout;
INSERT INTO public.aka_pooled (id, body) VALUES (3, 'zebra-aka-7731');
UPDATE public.aka_pooled SET body = 'zebra-aka-7732' WHERE id = 1;
DELETE FROM public.aka_pooled WHERE id = 2;
SELECT id, tenant_id, body FROM public.aka_pooled ORDER BY id;
SELECT n, try(stmt) AS outcome FROM (VALUES
    (1, $$UPDATE public.aka_pooled SET body = 'x' WHERE tenant_id = 'aka_u'$$),
    (2, $$DELETE FROM public.aka_pooled WHERE tenant_id = 'aka_u'$$),
    (3, $$INSERT INTO public.aka_pooled (id, tenant_id, body) VALUES (12, 'aka_u', 'x')$$),
    (4, $$SET statement_timeout = 0$$),
    (5, $$SET LOCAL statement_timeout = '1h'$$),
    (6, $$RESET statement_timeout$$),
    (7, $$RESET ALL$$),
    (8, $$CREATE TABLE public.aka_new (id int)$$),
    (9, $$TRUNCATE public.aka_pooled$$),
    (10, $$SELECT lo_create(0)$$),
    (11, $$SELECT pg_advisory_xact_lock(1)$$),
    (12, $$SELECT set_config('statement_timeout', '0', true)$$),
    (13, $$CALL public.aka_proc()$$),
    (14, $$DO 'BEGIN NULL; END'$$),
    (15, $$NOTIFY aka$$),
    (16, $$LOCK public.aka_pooled IN EXCLUSIVE MODE$$),
    (17, $$LOCK public.aka_pooled IN ROW EXCLUSIVE MODE$$),
    (18, $$SET ROLE aka_plain_role$$)
) AS v(n, stmt) ORDER BY n;
SHOW statement_timeout;
COMMIT;
-- The key was for that transaction only: the next one is read-only again,
-- with no context.
SELECT keys_guard.current_tenant() IS NULL AS no_context;
SHOW transaction_read_only;
SHOW statement_timeout;
SELECT try($$INSERT INTO public.aka_pooled (id, body) VALUES (4, 'after')$$) AS insert_after;
RESET SESSION AUTHORIZATION;
-- What the write key changed, as an administrator who sees deleted rows.
BEGIN;
SET LOCAL keys_guard.include_deleted = on;
SELECT keys_guard.admin_context('aka-check', 'api key writes') IS NOT NULL AS context;
SELECT id, tenant_id, body, deleted_at IS NOT NULL AS deleted, deleted_by
  FROM public.aka_pooled ORDER BY id;
COMMIT;

-- 8c. The statement timeout under a key cancels a longer statement (57014),
-- under a write key too, where set_config() cannot lift it (42501).
SET keys_guard.api_key_statement_timeout = '200ms';
SET SESSION AUTHORIZATION kg_reader;
BEGIN;
SELECT keys_guard.use_api_key(:'aka_read_secret');
SHOW statement_timeout;
SELECT pg_sleep(1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.use_api_key(:'aka_write_secret');
SELECT set_config('statement_timeout', '0', true) AS lifted;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.use_api_key(:'aka_write_secret');
SHOW statement_timeout;
SELECT pg_sleep(1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.use_api_key(:'aka_write_secret');
SELECT set_config('statement_timeout', '0', true) AS lifted \; SELECT pg_sleep(1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- A keyholder's session keeps the key's timeout once a key's transaction
-- has committed (30 s, from 8a and 8b: such a session cannot change the
-- setting anyway); the 200 ms of the transactions rolled back here is gone.
SHOW statement_timeout;
RESET SESSION AUTHORIZATION;
-- 8d. A key used after SET ROLE, in a session whose session user is no
-- keyholder (a superuser's here): the key's regime holds all the same,
-- transaction control included (42501; 55000 would be "disabled").
SET ROLE kg_reader;
BEGIN;
SELECT keys_guard.use_api_key(:'aka_read_secret') IS NULL AS key_null;
SAVEPOINT aka_role_sp;
PREPARE TRANSACTION 'aka_role_prepared';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
-- Functions of another role with their own SET statement_timeout = 0
-- (found by a review): one that sleeps is cancelled all the same, and the
-- setting is what it was before the transaction, with no timer left to
-- cancel a later statement; immutable ones, which planning runs
-- once per call, each starting a statement of its own, do not get a new
-- limit per call: the limit counts from the start of the client's
-- statement.
CREATE FUNCTION public.aka_nolimit_sleep(s float8) RETURNS void
LANGUAGE sql SET statement_timeout = 0 AS $$ SELECT pg_sleep(s) $$;
CREATE FUNCTION public.aka_nolimit_nap(s float8) RETURNS int
LANGUAGE sql IMMUTABLE SET statement_timeout = 0 AS $$ SELECT 1 FROM pg_sleep(s) $$;
SET SESSION AUTHORIZATION kg_reader;
BEGIN;
SELECT keys_guard.use_api_key(:'aka_read_secret');
SELECT public.aka_nolimit_sleep(1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SHOW statement_timeout;
SELECT pg_sleep(0.3) AS later_statement;
BEGIN;
SELECT keys_guard.use_api_key(:'aka_read_secret');
SELECT public.aka_nolimit_nap(0.15) + public.aka_nolimit_nap(0.15) + public.aka_nolimit_nap(0.15) AS folded;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SHOW statement_timeout;
RESET SESSION AUTHORIZATION;
DROP FUNCTION public.aka_nolimit_sleep(float8), public.aka_nolimit_nap(float8);
-- use_api_key() inside a function whose own SET clause gives a lower
-- timeout than the key's (found by a review): the value in force then
-- (100 ms) is made the session's, which outlives the function (a plain SET
-- overrides a function's SET clause).  Before, nothing was set, since
-- 100 ms is below the key's limit, and the session's 30 s came back when
-- the function returned: the next message's parse analysis, and its lock
-- waits, ran with 30 s, not 200 ms.
CREATE FUNCTION public.aka_key_scoped(k text) RETURNS void
LANGUAGE sql SET statement_timeout = '100ms' AS $$ SELECT keys_guard.use_api_key(k) $$;
SET SESSION AUTHORIZATION kg_reader;
BEGIN;
SELECT public.aka_key_scoped(:'aka_read_secret');
SHOW statement_timeout;
ROLLBACK;
RESET SESSION AUTHORIZATION;
DROP FUNCTION public.aka_key_scoped(text);
-- A key obtained through a SECURITY DEFINER function that a keyholder role
-- owns, in a session whose login is not a keyholder (found by a review):
-- the key's rules follow the key, not the login.
CREATE ROLE aka_kh_owner NOLOGIN;
GRANT keys_guard_keyholder TO aka_kh_owner;
CREATE FUNCTION public.aka_key_definer(k text) RETURNS void
LANGUAGE sql SECURITY DEFINER AS $$ SELECT keys_guard.use_api_key(k) $$;
ALTER FUNCTION public.aka_key_definer(text) OWNER TO aka_kh_owner;
SET SESSION AUTHORIZATION aka_plain_role;
BEGIN;
SELECT public.aka_key_definer(:'aka_read_secret');
SELECT keys_guard.current_tenant();
SHOW statement_timeout;
SELECT try($$SET LOCAL statement_timeout = 0$$) AS lift,
       try($$INSERT INTO public.aka_pooled (id, body) VALUES (40, 'definer')$$) AS insert;
ROLLBACK;
RESET SESSION AUTHORIZATION;
DROP FUNCTION public.aka_key_definer(text);
DROP ROLE aka_kh_owner;
RESET keys_guard.api_key_statement_timeout;

-- 8c'. A SERIALIZABLE transaction whose first snapshot comes after a
-- statement that takes none (SAVEPOINT) is registered read-write with SSI,
-- so that a write key used in it writes under conflict tracking: its reads
-- take predicate locks.
SET SESSION AUTHORIZATION kg_reader;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SAVEPOINT before_key;
SELECT keys_guard.use_api_key(:'aka_write_secret');
SELECT count(*) >= 0 AS read FROM public.aka_plain;
SELECT count(*) > 0 AS predicate_locks FROM pg_locks
 WHERE pid = pg_backend_pid() AND mode = 'SIReadLock';
ROLLBACK;
RESET SESSION AUTHORIZATION;

-- 8e. Paths a review found open, now closed: a gateway role's SECURITY
-- DEFINER function that calls set_context() for a keyholder session; a
-- PREPARE whose text holds a secret (pg_prepared_statements would keep
-- it); the rest of the statement that calls use_api_key() (its timer was
-- armed before); transaction ids assigned on demand.
CREATE FUNCTION public.aka_gw_ctx(t text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM keys_guard.set_context(t, 'gateway-helper');
END
$$;
ALTER FUNCTION public.aka_gw_ctx(text) OWNER TO kg_app;
SET keys_guard.api_key_statement_timeout = '200ms';
SET SESSION AUTHORIZATION kg_reader;
SELECT try($$SELECT public.aka_gw_ctx('aka_u')$$) AS definer_set_context;
SELECT keys_guard.current_tenant() IS NULL AS no_context;
SELECT try('PREPARE aka_p AS SELECT keys_guard.use_api_key(' || quote_literal(:'aka_read_secret') || ')')
       AS prepare_with_secret;
SELECT count(*) AS prepared FROM pg_prepared_statements;
SELECT try($$SELECT txid_current()$$) AS txid, try($$SELECT pg_current_xact_id()$$) AS xact_id;
BEGIN;
SELECT keys_guard.use_api_key(:'aka_read_secret')::text AS used, pg_sleep(1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET SESSION AUTHORIZATION;
RESET keys_guard.api_key_statement_timeout;
DROP FUNCTION public.aka_gw_ctx(text);
-- A function that a parallel worker runs is under the regime too: a
-- PL/pgSQL body prepares its calls in the worker that runs it, and the
-- worker has its leader's session user.
CREATE FUNCTION public.aka_par_cancel(p int) RETURNS boolean
LANGUAGE plpgsql PARALLEL SAFE AS $$
BEGIN
    RETURN pg_cancel_backend(p);
END
$$;
SET SESSION AUTHORIZATION kg_reader;
BEGIN;
SET LOCAL force_parallel_mode = on;
SET LOCAL parallel_leader_participation = off;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
EXPLAIN (COSTS OFF) SELECT public.aka_par_cancel(0);
SELECT public.aka_par_cancel(0);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET SESSION AUTHORIZATION;
DROP FUNCTION public.aka_par_cancel(int);
-- COMMIT AND CHAIN after a read key starts the next transaction with the
-- transaction's own read-only setting, not the one forced under the key:
-- a write key in it writes.
SET SESSION AUTHORIZATION kg_reader;
BEGIN;
SELECT keys_guard.use_api_key(:'aka_read_secret')::text AS read_key;
SHOW transaction_read_only;
COMMIT AND CHAIN;
SELECT keys_guard.use_api_key(:'aka_write_secret')::text AS write_key;
INSERT INTO public.aka_pooled (id, body) VALUES (5, 'chained');
SHOW transaction_read_only;
ROLLBACK;
RESET SESSION AUTHORIZATION;

-- 8d. The audit: api_key_statement records count the statements under a
-- key per command and relations, with the rows, and never a value; the
-- refusals under the read key carry its id, one record each.
SELECT wait_for_audit($$action = 'api_key_write_denied' AND detail->>'key_id' = '$$ || :'aka_read_id' || $$'$$, 11) AS read_key_denials;
SELECT detail->>'command' AS command, count(*)
  FROM keys_guard.audit_log
 WHERE action = 'api_key_write_denied' AND detail->>'key_id' = :'aka_read_id'
 GROUP BY 1 ORDER BY 1;
SELECT wait_for_audit($$action = 'api_key_write_denied' AND detail->>'key_id' = '$$ || :'aka_write_id' || $$'$$, 16) AS write_key_denials;
SELECT detail->>'command' AS command, count(*)
  FROM keys_guard.audit_log
 WHERE action = 'api_key_write_denied' AND detail->>'key_id' = :'aka_write_id'
 GROUP BY 1 ORDER BY 1;
SELECT wait_for_audit_total($$action = 'api_key_statement' AND detail->>'key_id' IN ('$$ || :'aka_read_id' || $$', '$$ || :'aka_write_id' || $$') AND detail->>'relations' = 'public.aka_pooled'$$, 6) AS pooled_statements;
SELECT detail->>'key_id' = :'aka_read_id' AS read_key, detail->>'command' AS command,
       detail->>'relations' AS relations, sum((detail->>'statements')::int) AS statements,
       sum((detail->>'rows')::int) AS rows, outcome, tenant
  FROM keys_guard.audit_log
 WHERE action = 'api_key_statement' AND detail->>'key_id' IN (:'aka_read_id', :'aka_write_id')
   AND detail->>'relations' = 'public.aka_pooled'
 GROUP BY 1, 2, 3, 6, 7
 ORDER BY 1 DESC, 2;
-- Statements without relations are recorded too (use_api_key's SELECT, SHOW).
SELECT detail->>'command' AS command, count(*) > 0 AS recorded
  FROM keys_guard.audit_log
 WHERE action = 'api_key_statement' AND detail->>'key_id' = :'aka_write_id'
   AND coalesce(detail->>'relations', '') = ''
 GROUP BY 1 ORDER BY 1;
SELECT count(*) AS records_with_values FROM keys_guard.audit_log
 WHERE position('zebra-aka' IN detail::text || coalesce(target, '') || coalesce(actor, '')) > 0;

-- Clean up what this suite made.
DROP VIEW pg_temp.aka_state;
DROP TABLE pg_temp.aka_before;
DROP MATERIALIZED VIEW public.aka_mv;
DROP TABLE public.aka_plain;
SELECT keys_guard.release_table('public.aka_pooled');
DROP TABLE public.aka_pooled;
DROP SEQUENCE public.aka_seq;
DROP FUNCTION public.aka_definer_write(), public.aka_definer_lo(), public.aka_sql_write();
DROP PROCEDURE public.aka_proc();
SELECT lo_unlink(424242);
REVOKE CREATE ON SCHEMA public FROM kg_reader;
DROP TABLE pg_temp.aka_tmp;
DROP ROLE aka_plain_role;
