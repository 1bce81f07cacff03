--
-- guard_rails: DDL that would weaken a guard is refused outside keys_guard's
-- API, for every role (this suite runs as a superuser); the registry is
-- written only by keys_guard's functions; snapshot() versions the state;
-- release_all() prepares DROP EXTENSION (docs/contract.md §11)
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
SELECT id FROM keys_guard.create_tenant('gr');
CREATE TABLE tenant_gr.docs (id int PRIMARY KEY, body text);
CREATE TABLE gr_pooled (id int PRIMARY KEY, tenant_id text NOT NULL, amount int);
SELECT relation, kind FROM keys_guard.protect_table('gr_pooled', tenant_column => 'tenant_id');

-- Row security stays on and forced.
ALTER TABLE gr_pooled DISABLE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled NO FORCE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE tenant_gr.docs DISABLE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
-- Also when hidden among other subcommands.
ALTER TABLE gr_pooled ADD COLUMN note text, DISABLE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'gr_pooled'::regclass;

-- keys_guard's policies.
DROP POLICY keys_guard_fail_closed ON gr_pooled;
\echo :LAST_ERROR_SQLSTATE
DROP POLICY IF EXISTS keys_guard_base ON tenant_gr.docs;
\echo :LAST_ERROR_SQLSTATE
ALTER POLICY keys_guard_fail_closed ON gr_pooled USING (true);
\echo :LAST_ERROR_SQLSTATE
ALTER POLICY keys_guard_base ON gr_pooled RENAME TO anything;
\echo :LAST_ERROR_SQLSTATE
SELECT polname, polpermissive FROM pg_policy WHERE polrelid = 'gr_pooled'::regclass ORDER BY polname;

-- keys_guard's triggers stay enabled ALWAYS.
ALTER TABLE gr_pooled DISABLE TRIGGER keys_guard_tenant;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled ENABLE TRIGGER keys_guard_tenant;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled ENABLE REPLICA TRIGGER keys_guard_refuse_delete;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled DISABLE TRIGGER ALL;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled DISABLE TRIGGER USER;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled ENABLE TRIGGER ALL;
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER keys_guard_refuse_delete ON gr_pooled;
\echo :LAST_ERROR_SQLSTATE
ALTER TRIGGER keys_guard_refuse_truncate ON gr_pooled RENAME TO anything;
\echo :LAST_ERROR_SQLSTATE
CREATE OR REPLACE TRIGGER keys_guard_tenant BEFORE INSERT ON gr_pooled
    FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
\echo :LAST_ERROR_SQLSTATE
-- Enabling ALWAYS (what pg_restore does) is no weakening.
ALTER TABLE gr_pooled ENABLE ALWAYS TRIGGER keys_guard_tenant;
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'gr_pooled'::regclass AND NOT tgisinternal ORDER BY tgname;

-- The soft-delete columns and the tenant column.
ALTER TABLE gr_pooled DROP COLUMN deleted_at;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE tenant_gr.docs DROP COLUMN hard_delete_at CASCADE;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled ALTER COLUMN hard_delete_at TYPE text;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled ALTER COLUMN deleted_at SET DEFAULT now();
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled RENAME COLUMN deleted_by TO removed_by;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled DROP COLUMN tenant_id;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled ALTER COLUMN tenant_id TYPE varchar(10);
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE gr_pooled RENAME COLUMN tenant_id TO owner;
\echo :LAST_ERROR_SQLSTATE
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'gr_pooled'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
-- Other columns are the application's own.
ALTER TABLE gr_pooled ADD COLUMN note text;
ALTER TABLE gr_pooled ALTER COLUMN amount TYPE bigint;
ALTER TABLE gr_pooled ALTER COLUMN deleted_at SET STATISTICS 500;

-- Moving, dropping; tenant schemas.
ALTER TABLE gr_pooled SET SCHEMA tenant_gr;
\echo :LAST_ERROR_SQLSTATE
DROP TABLE gr_pooled;
\echo :LAST_ERROR_SQLSTATE
ALTER SCHEMA tenant_gr RENAME TO tenant_gr2;
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA tenant_gr CASCADE;
\echo :LAST_ERROR_SQLSTATE
DROP OWNED BY keys_guard_admin;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_gr';

-- keys_guard's own objects.
DROP FUNCTION keys_guard._guard_active() CASCADE;
\echo :LAST_ERROR_SQLSTATE
CREATE OR REPLACE FUNCTION keys_guard._guard_active() RETURNS boolean
    LANGUAGE sql AS 'SELECT true';
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION keys_guard.helper() RETURNS void LANGUAGE plpgsql AS 'BEGIN END';
\echo :LAST_ERROR_SQLSTATE
ALTER FUNCTION keys_guard._guard_active() RENAME TO anything;
\echo :LAST_ERROR_SQLSTATE
ALTER FUNCTION keys_guard.create_tenant(text, text, text) SECURITY INVOKER;
\echo :LAST_ERROR_SQLSTATE
ALTER EVENT TRIGGER keys_guard_ddl_command_end DISABLE;
\echo :LAST_ERROR_SQLSTATE
ALTER EVENT TRIGGER keys_guard_sql_drop ENABLE REPLICA;
\echo :LAST_ERROR_SQLSTATE
DROP EVENT TRIGGER keys_guard_sql_drop;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE keys_guard.tenant DISABLE TRIGGER ALL;
\echo :LAST_ERROR_SQLSTATE
DROP TABLE keys_guard.guarded_table CASCADE;
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA keys_guard CASCADE;
\echo :LAST_ERROR_SQLSTATE
DROP EXTENSION keys_guard;
\echo :LAST_ERROR_SQLSTATE
DROP EXTENSION keys_guard CASCADE;
\echo :LAST_ERROR_SQLSTATE
SELECT evtname, evtenabled FROM pg_event_trigger ORDER BY evtname;

-- The registry: only keys_guard's functions write it, superusers included.
INSERT INTO keys_guard.tenant (id, name, schema_name) VALUES ('gr-x', 'x', 'tenant_gr-x');
\echo :LAST_ERROR_SQLSTATE
UPDATE keys_guard.guarded_table SET soft_delete = false WHERE relid = 'gr_pooled'::regclass;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM keys_guard.guarded_table WHERE relid = 'gr_pooled'::regclass;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE keys_guard.purge_stats;
\echo :LAST_ERROR_SQLSTATE
UPDATE keys_guard.tenant SET status = 'active' WHERE false;
\echo :LAST_ERROR_SQLSTATE
-- pg_restore loads a dumped registry with INSERT/COPY under bypass; nothing else.
BEGIN;
SET LOCAL keys_guard.bypass = on;
INSERT INTO keys_guard.tenant (id, name, schema_name) VALUES ('gr-restored', 'r', 'tenant_gr-restored');
DELETE FROM keys_guard.tenant WHERE id = 'gr-restored';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT count(*) FROM keys_guard.tenant WHERE id LIKE 'gr-%';
SELECT soft_delete FROM keys_guard.guarded_table WHERE relid = 'gr_pooled'::regclass;

-- Every refusal is in the audit log, with what was refused (written by the
-- background worker, so waited for).
SELECT wait_for_audit($$action = 'ddl' AND outcome = 'denied'
                        AND detail->>'reason' = 'ddl weakening a guard'$$, 30) >= 30 AS refusals_audited;
SELECT target, detail->>'refused' AS refused FROM keys_guard.audit_log
 WHERE action = 'ddl' AND target = 'public.gr_pooled'
   AND detail->>'refused' LIKE 'cannot disable row-level security%' ORDER BY id LIMIT 1;

-- Through the API the same changes work: release_table, then anything.
SELECT keys_guard.release_table('gr_pooled', dry_run => true);
SELECT count(*) FROM keys_guard.guarded_tables WHERE relation = 'gr_pooled'::regclass;
SELECT keys_guard.release_table('gr_pooled');
ALTER TABLE gr_pooled DROP COLUMN deleted_at;
DROP TABLE gr_pooled;
SELECT keys_guard.release_table(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.release_table('gr_pooled', dry_run => NULL);
\echo :LAST_ERROR_SQLSTATE

-- snapshot(): the governance state, with a version that goes up with every
-- change of the registry and stays put otherwise.
SELECT (keys_guard.snapshot()->>'version')::bigint AS v0 \gset
SELECT keys_guard.snapshot()->>'version' = :'v0' AS unchanged_by_reading;
CREATE TABLE gr_versioned (id int PRIMARY KEY, tenant_id text NOT NULL);
SELECT relation FROM keys_guard.protect_table('gr_versioned', tenant_column => 'tenant_id');
SELECT (keys_guard.snapshot()->>'version')::bigint > :v0 AS bumped_by_protect;
SELECT (keys_guard.snapshot()->>'version')::bigint AS v1 \gset
SELECT relation FROM keys_guard.protect_table('gr_versioned', tenant_column => 'tenant_id');
SELECT (keys_guard.snapshot()->>'version')::bigint = :v1 AS same_after_noop;
SELECT relation FROM keys_guard.protect_table('gr_versioned', tenant_column => 'tenant_id',
                                              grace => interval '60 days');
SELECT (keys_guard.snapshot()->>'version')::bigint > :v1 AS bumped_by_upgrade;
SELECT jsonb_path_query(keys_guard.snapshot(),
                        '$.guarded_tables[*] ? (@.relation == "public.gr_versioned")');
SELECT jsonb_path_query(keys_guard.snapshot(), '$.tenants[*] ? (@.id == "gr")') - 'created_at';
SELECT keys_guard.snapshot()->'extension_version' AS extension_version,
       keys_guard.snapshot()->'settings' ? 'keys_guard.default_grace' AS has_settings,
       keys_guard.snapshot()->'settings' ? 'keys_guard.context' AS has_session_context;
SELECT keys_guard.release_table('gr_versioned');
DROP TABLE gr_versioned;

-- release_all() and DROP EXTENSION, in a database of their own.
SELECT current_database() AS regress_db \gset
CREATE DATABASE kg_removal;
\c kg_removal
\set SHOW_CONTEXT never
CREATE EXTENSION keys_guard;
SELECT id FROM keys_guard.create_tenant('rm');
CREATE TABLE tenant_rm.items (id int PRIMARY KEY, name text);
CREATE TABLE shared_items (id int PRIMARY KEY, tenant_id text NOT NULL, name text);
SELECT relation FROM keys_guard.protect_table('shared_items', tenant_column => 'tenant_id');
BEGIN;
SELECT keys_guard.set_context('rm', 'remover');
INSERT INTO items VALUES (1, 'kept'), (2, 'deleted');
INSERT INTO shared_items VALUES (1, 'rm', 'kept');
DELETE FROM items WHERE id = 2;
COMMIT;
-- A key used in this session before the extension goes (its registry's
-- oid is remembered until an invalidation of it: see below).
SELECT secret AS rm_secret FROM keys_guard.create_api_key('rm', 'before-removal') \gset
BEGIN;
SELECT keys_guard.use_api_key(:'rm_secret');
SELECT keys_guard.current_tenant();
ROLLBACK;
DROP EXTENSION keys_guard;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.release_all();
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.release_all(confirm => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.release_all(dry_run => true);
SELECT count(*) FROM keys_guard.guarded_tables;
SET ROLE keys_guard_admin;
SELECT * FROM keys_guard.release_all(confirm => true);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT * FROM keys_guard.release_all(confirm => true);
SELECT * FROM keys_guard.release_all(confirm => true);
SELECT action, detail FROM keys_guard.audit_log WHERE action = 'release_all';
DROP EXTENSION keys_guard;
-- Everything of the application stays: schemas, tables, columns, rows
-- (soft-deleted rows too), with no policy or trigger of keys_guard left.
SELECT nspname FROM pg_namespace WHERE nspname IN ('tenant_rm', 'keys_guard') ORDER BY 1;
SELECT id, name, deleted_at IS NOT NULL AS soft_deleted FROM tenant_rm.items ORDER BY id;
SELECT * FROM shared_items;
SELECT count(*) AS guard_objects_left
  FROM (SELECT polname FROM pg_policy WHERE polname LIKE 'keys\_guard\_%'
        UNION ALL
        SELECT tgname FROM pg_trigger WHERE tgname LIKE 'keys\_guard\_%') AS o;
SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
 WHERE oid IN ('tenant_rm.items'::regclass, 'shared_items'::regclass) ORDER BY relname;
-- With the extension gone, its schema is an ordinary (empty) schema.
DROP SCHEMA keys_guard;
-- And it can be installed again.
CREATE EXTENSION keys_guard;
SELECT count(*) FROM keys_guard.tenants;
-- The same session uses a key of the new registry (a new table): the old
-- one's oid, remembered by this backend, was forgotten when it was dropped.
SELECT id FROM keys_guard.create_tenant('rm2');
SELECT secret AS rm2_secret FROM keys_guard.create_api_key('rm2', 'after-reinstall') \gset
BEGIN;
SELECT keys_guard.use_api_key(:'rm2_secret');
SELECT keys_guard.current_tenant();
ROLLBACK;
\c :regress_db
DROP DATABASE kg_removal;
