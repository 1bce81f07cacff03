--
-- isolation: relations of tenant schemas (docs/contract.md §6)
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
GRANT USAGE ON SCHEMA tenant_acme, tenant_globex TO kg_app;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON tenant_acme.notes, tenant_globex.notes TO kg_app;

-- No context: refused for everyone, superusers included.
SELECT * FROM tenant_acme.notes;
\echo :LAST_ERROR_SQLSTATE
SET ROLE kg_app;
INSERT INTO tenant_acme.notes VALUES (1, 'x');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Own schema: everything works, unqualified names resolve to it.
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a', 'req-a');
INSERT INTO notes VALUES (1, 'acme note'), (2, 'second acme note');
UPDATE notes SET body = 'acme note, edited' WHERE id = 1;
SELECT * FROM notes ORDER BY id;
SELECT * FROM tenant_acme.notes ORDER BY id;
COMMIT;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g', 'req-g');
INSERT INTO notes VALUES (1, 'globex note');
SELECT * FROM notes;
COMMIT;
RESET ROLE;

-- Another tenant's schema: 42501 for every kind of access (try() and the
-- view public.acme_notes come from the fixture).
CREATE SEQUENCE tenant_acme.counter;
GRANT USAGE, SELECT, UPDATE ON SEQUENCE tenant_acme.counter TO kg_app;
ALTER TABLE tenant_acme.notes OWNER TO kg_app;
CREATE FUNCTION public.acme_count_sql() RETURNS bigint LANGUAGE sql
    AS 'SELECT count(*) FROM tenant_acme.notes';
CREATE FUNCTION public.acme_count_definer() RETURNS bigint LANGUAGE sql
    SECURITY DEFINER AS 'SELECT count(*) FROM tenant_acme.notes';
GRANT SELECT ON public.acme_notes, tenant_acme.notes_view TO kg_app;

SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g', 'req-g');
SELECT stmt, try(stmt) FROM (VALUES
    ('SELECT * FROM tenant_acme.notes'),
    ('INSERT INTO tenant_acme.notes VALUES (9, ''x'')'),
    ('UPDATE tenant_acme.notes SET body = ''x'''),
    ('DELETE FROM tenant_acme.notes'),
    ('MERGE INTO tenant_acme.notes n USING (SELECT 1 AS id) s ON n.id = s.id WHEN MATCHED THEN UPDATE SET body = ''x'''),
    ('TRUNCATE tenant_acme.notes'),
    ('LOCK TABLE tenant_acme.notes IN ACCESS SHARE MODE'),
    ('SELECT * FROM public.acme_notes'),
    ('SELECT public.acme_count_sql()'),
    ('SELECT public.acme_count_definer()'),
    ('SELECT * FROM tenant_acme.notes_view'),
    ('SELECT g.* FROM notes g JOIN tenant_acme.notes a USING (id)'),
    ('SELECT * FROM notes WHERE id IN (SELECT id FROM tenant_acme.notes)'),
    ('WITH a AS (SELECT * FROM tenant_acme.notes) SELECT * FROM a'),
    ('SELECT nextval(''tenant_acme.counter'')'),
    ('SELECT currval(''tenant_acme.counter'')'),
    ('SELECT setval(''tenant_acme.counter'', 1000)'),
    ('SELECT (SELECT nextval(''tenant_acme.counter''))'),
    ('SELECT * FROM (SELECT nextval(''tenant_acme.counter'')) s'),
    ('WITH s AS (SELECT nextval(''tenant_acme.counter'')) SELECT * FROM s'),
    ('SELECT * FROM nextval(''tenant_acme.counter'')'),
    ('SELECT x FROM (VALUES (nextval(''tenant_acme.counter''))) v(x)'),
    ('SELECT 1 WHERE EXISTS (SELECT 1 FROM notes WHERE id = currval(''tenant_acme.counter''))'),
    ('SELECT count(*) FROM notes GROUP BY id HAVING id < nextval(''tenant_acme.counter'')'),
    ('ANALYZE tenant_acme.notes'),
    ('REINDEX TABLE tenant_acme.notes'),
    ('CLUSTER tenant_acme.notes USING notes_pkey')
) AS t(stmt);
COMMIT;
-- COPY, both forms (psql runs these; PL/pgSQL cannot).
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
COPY tenant_acme.notes TO STDOUT;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
COPY (SELECT * FROM tenant_acme.notes) TO STDOUT;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
COPY tenant_acme.notes FROM STDIN;
9	smuggled
\.
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;

-- The message names the relation and both tenants.
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
SELECT * FROM tenant_acme.notes;
ROLLBACK;

-- A statement prepared under one tenant is checked again under another.
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
PREPARE acme_notes_stmt AS SELECT count(*) FROM tenant_acme.notes;
EXECUTE acme_notes_stmt;
SELECT keys_guard.set_context('globex', 'user_g');
EXECUTE acme_notes_stmt;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
DEALLOCATE acme_notes_stmt;

-- A cursor opened under one tenant cannot be read under another.
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
DECLARE acme_cur CURSOR FOR SELECT id FROM tenant_acme.notes ORDER BY id;
FETCH 1 FROM acme_cur;
SELECT keys_guard.set_context('globex', 'user_g');
FETCH 1 FROM acme_cur;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- ... nor once the context is cleared, with nothing else of keys_guard's
-- in force in the session: the executor hooks take their quick path then,
-- and still check a cursor started on guarded data.
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
DECLARE acme_cur2 CURSOR FOR SELECT id FROM tenant_acme.notes ORDER BY id;
FETCH 1 FROM acme_cur2;
SELECT keys_guard.clear_context();
FETCH 1 FROM acme_cur2;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;

-- acme's rows are intact after all the attempts.
BEGIN;
SELECT keys_guard.set_context('acme', 'auditor');
SELECT * FROM tenant_acme.notes ORDER BY id;
COMMIT;

-- Maintenance without a context is an operator's: allowed.
ANALYZE tenant_acme.notes;
VACUUM tenant_acme.notes;

-- DDL: migrations (no context) may change every tenant schema ...
ALTER TABLE tenant_acme.notes ADD COLUMN tag text;
ALTER TABLE tenant_globex.notes ADD COLUMN tag text;
-- ... with a context, only the tenant's own schema.
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
CREATE TABLE tenant_globex.scratch (x int);
CREATE INDEX ON tenant_globex.scratch (x);
CREATE TEMP TABLE scratch_tmp (x int);
-- A guarded table is dropped only after an explicit release.
DROP TABLE tenant_globex.scratch;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
CREATE TABLE tenant_globex.scratch (x int);
SELECT keys_guard.release_table('tenant_globex.scratch');
DROP TABLE tenant_globex.scratch;
COMMIT;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
ALTER TABLE tenant_acme.notes ADD COLUMN evil int;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
CREATE TABLE tenant_acme.evil (x int);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
DROP TABLE tenant_acme.notes CASCADE;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
CREATE TABLE public.evil (x int);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT to_regclass('tenant_acme.evil') IS NULL AND to_regclass('public.evil') IS NULL AS nothing_created;

-- An admin context reaches every tenant.
SET ROLE kg_migrator;
GRANT USAGE ON SCHEMA tenant_acme, tenant_globex TO kg_migrator;
RESET ROLE;
GRANT SELECT ON tenant_acme.notes, tenant_globex.notes TO kg_migrator;
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.admin_context('ops_jane', 'monthly report');
SELECT (SELECT count(*) FROM tenant_acme.notes) AS acme, (SELECT count(*) FROM tenant_globex.notes) AS globex;
COMMIT;
RESET ROLE;

-- A tenant pending deletion: its data is denied, with a detail that says
-- so, even to a context set before the deletion (a session-wide one, which
-- needs keys_guard.allow_session_context).
SET keys_guard.allow_session_context = on;
SELECT keys_guard.set_context('globex', 'user_g', is_local => false);
SELECT DISTINCT status FROM keys_guard.delete_tenant('globex');
SELECT * FROM tenant_globex.notes;
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.clear_context();
RESET keys_guard.allow_session_context;
SELECT status FROM keys_guard.restore_tenant('globex');

-- keys_guard.bypass: superusers read without a context (pg_dump).
SET keys_guard.bypass = on;
SELECT count(*) FROM tenant_acme.notes;
RESET keys_guard.bypass;
SELECT count(*) FROM tenant_acme.notes;
\echo :LAST_ERROR_SQLSTATE

-- A pooled table whose tenant column cannot be resolved (here a registry
-- row pg_restore could load for a column the table does not have) is
-- refused with 55000: the guard is in the wrong state, nobody lacks a
-- privilege.  In a database of its own: the registry row cannot be removed.
SELECT current_database() AS regress_db \gset
CREATE DATABASE kg_incomplete_guard;
\c kg_incomplete_guard
\set SHOW_CONTEXT never
CREATE EXTENSION keys_guard;
SELECT count(*) AS tenants FROM keys_guard.create_tenant('inc');
CREATE TABLE broken (id int, owner text);
SET keys_guard.bypass = on;
INSERT INTO keys_guard.guarded_table (relid, tenant_column, grace)
VALUES ('broken'::regclass, 'tenant_id', '30 days');
RESET keys_guard.bypass;
BEGIN;
SELECT keys_guard.set_context('inc', 'someone');
SELECT count(*) FROM broken;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
\c :regress_db
DROP DATABASE kg_incomplete_guard;
