--
-- guard_holes: the ways around keys_guard's guarantees found in issue 10,
-- each tried with its neighbours: COPY TO (docs/contract.md §6), unlogged and
-- temporary tables and generated tenant columns (§5), DDL that changes the
-- values of an audit table (§8), tenant names and templates (§4) and
-- ALTER EXTENSION (§11).  Self-contained: every object is named kgh_*.
-- Each refusal is followed by its SQLSTATE.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
SET client_min_messages = warning;
DROP ROLE IF EXISTS kgh_bypass, kgh_plain;
RESET client_min_messages;
CREATE ROLE kgh_bypass LOGIN BYPASSRLS IN ROLE keys_guard_gateway;
CREATE ROLE kgh_plain LOGIN IN ROLE keys_guard_gateway;
SELECT id FROM keys_guard.create_tenant('kgh_a');
SELECT id FROM keys_guard.create_tenant('kgh_b');

--
-- 1. COPY ... TO passes the same filters as SELECT, for every role.
--
CREATE TABLE public.kgh_orders (
    id int PRIMARY KEY,
    tenant_id text NOT NULL,
    item text NOT NULL,
    total int GENERATED ALWAYS AS (id * 10) STORED
);
SELECT relation FROM keys_guard.protect_table('public.kgh_orders', tenant_column => 'tenant_id');
GRANT SELECT, INSERT ON public.kgh_orders TO kgh_bypass, kgh_plain;
CREATE TABLE tenant_kgh_a.kgh_notes (id int PRIMARY KEY, body text);
GRANT SELECT ON tenant_kgh_a.kgh_notes TO kgh_bypass, kgh_plain;
BEGIN;
SELECT keys_guard.admin_context('kgh_setup', 'fixture');
INSERT INTO public.kgh_orders (id, tenant_id, item)
VALUES (1, 'kgh_a', 'a live'), (2, 'kgh_a', 'a deleted'), (3, 'kgh_b', 'b live');
DELETE FROM public.kgh_orders WHERE id = 2;
INSERT INTO tenant_kgh_a.kgh_notes VALUES (1, 'note live'), (2, 'note deleted');
DELETE FROM tenant_kgh_a.kgh_notes WHERE id = 2;
COMMIT;

-- A superuser with tenant kgh_a's context: only kgh_a's live rows, in every
-- form of COPY TO (the generated column is left out, as COPY always does).
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'su');
SELECT id, item FROM public.kgh_orders ORDER BY id;
COPY public.kgh_orders TO STDOUT;
COPY public.kgh_orders TO STDOUT WITH (FORMAT csv, HEADER);
COPY public.kgh_orders (item, id) TO STDOUT;
COPY kgh_orders (id) TO STDOUT;
COPY tenant_kgh_a.kgh_notes TO STDOUT;
COMMIT;
-- The same to a file and through a program, read back.
SELECT '/tmp/kgh_copy_' || pg_backend_pid() AS copy_file \gset
SELECT 'cat > /tmp/kgh_copy_' || pg_backend_pid() AS copy_program \gset
SELECT 'cat > /dev/null; rm -f /tmp/kgh_copy_' || pg_backend_pid() AS copy_cleanup \gset
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'su');
COPY public.kgh_orders TO :'copy_file';
SELECT pg_read_file(:'copy_file');
COPY public.kgh_orders (id, item) TO PROGRAM :'copy_program';
SELECT pg_read_file(:'copy_file');
COMMIT;
-- COPY refuses what it always refused, before reading a row.
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'su');
COPY public.kgh_orders (total) TO STDOUT;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'su');
COPY public.kgh_orders (id, id) TO STDOUT;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'su');
COPY public.kgh_orders (nosuchcolumn) TO STDOUT;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- A BYPASSRLS role and an ordinary role with a context: the same rows.
SET ROLE kgh_bypass;
BEGIN;
SELECT keys_guard.set_context('kgh_b', 'bypassrls');
COPY public.kgh_orders TO STDOUT;
COPY public.kgh_orders (item) TO STDOUT;
COMMIT;
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'bypassrls');
COPY public.kgh_orders TO STDOUT;
COPY tenant_kgh_a.kgh_notes TO STDOUT;
COMMIT;
RESET ROLE;
SET ROLE kgh_plain;
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'plain');
COPY public.kgh_orders TO STDOUT;
COPY public.kgh_orders (item, tenant_id) TO STDOUT;
COMMIT;
-- Another tenant's schema is still refused.
BEGIN;
SELECT keys_guard.set_context('kgh_b', 'plain');
COPY tenant_kgh_a.kgh_notes TO STDOUT;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;

-- No context: refused, for the superuser too.
COPY public.kgh_orders TO STDOUT;
\echo :LAST_ERROR_SQLSTATE
COPY public.kgh_orders (id) TO STDOUT;
\echo :LAST_ERROR_SQLSTATE
COPY tenant_kgh_a.kgh_notes TO STDOUT;
\echo :LAST_ERROR_SQLSTATE

-- An admin context sees every tenant's live rows, as SELECT does; deleted
-- rows only with include_deleted; bypass sees everything (pg_dump).
BEGIN;
SELECT keys_guard.admin_context('kgh_admin', 'export');
COPY public.kgh_orders TO STDOUT;
SET LOCAL keys_guard.include_deleted = on;
COPY public.kgh_orders (id, item) TO STDOUT;
COMMIT;
BEGIN;
SET LOCAL keys_guard.bypass = on;
COPY public.kgh_orders (id, item) TO STDOUT;
COMMIT;

-- Partitions and inheritance: a guarded partition or child is filtered; a
-- COPY of an unguarded parent reads only the parent's own rows (ONLY).
CREATE TABLE public.kgh_parted (id int, tenant_id text NOT NULL) PARTITION BY LIST (id);
CREATE TABLE public.kgh_parted_1 PARTITION OF public.kgh_parted FOR VALUES IN (1, 2);
SELECT relation FROM keys_guard.protect_table('public.kgh_parted_1', tenant_column => 'tenant_id',
                                              soft_delete => false);
CREATE TABLE public.kgh_base (id int, tenant_id text NOT NULL);
CREATE TABLE public.kgh_child () INHERITS (public.kgh_base);
SELECT relation FROM keys_guard.protect_table('public.kgh_child', tenant_column => 'tenant_id');
BEGIN;
SELECT keys_guard.admin_context('kgh_setup', 'fixture');
INSERT INTO public.kgh_parted VALUES (1, 'kgh_a'), (2, 'kgh_b');
INSERT INTO public.kgh_child VALUES (1, 'kgh_a'), (2, 'kgh_b');
INSERT INTO public.kgh_base VALUES (100, 'parent row');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('kgh_b', 'su');
COPY public.kgh_parted_1 TO STDOUT;
COPY public.kgh_child TO STDOUT;
COPY public.kgh_base TO STDOUT;
COPY (SELECT * FROM public.kgh_parted) TO STDOUT;
COPY public.kgh_parted TO STDOUT;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- COPY FROM is checked as before: a row of another tenant is refused, a
-- row of the context's tenant goes in, without a context nothing does.
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'su');
COPY public.kgh_orders (id, tenant_id, item) FROM STDIN;
10	kgh_b	smuggled
\.
ROLLBACK;
-- (psql keeps no SQLSTATE for an error during COPY FROM STDIN: the same
-- from a file.)
COPY (SELECT 10, 'kgh_b', 'smuggled') TO :'copy_file';
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'su');
COPY public.kgh_orders (id, tenant_id, item) FROM :'copy_file';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
COPY (SELECT 1) TO PROGRAM :'copy_cleanup';
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'su');
COPY public.kgh_orders (id, item) FROM STDIN;
11	filled in
\.
SELECT id, tenant_id, item, total FROM public.kgh_orders WHERE id = 11;
ROLLBACK;
COPY public.kgh_orders (id, tenant_id, item) FROM STDIN;
12	kgh_a	no context
\.
\echo :LAST_ERROR_SQLSTATE

--
-- 2. Guarded tables are permanent and logged (docs/contract.md §5).
--
CREATE UNLOGGED TABLE public.kgh_unlogged (id int, tenant_id text);
SELECT keys_guard.protect_table('public.kgh_unlogged', tenant_column => 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
CREATE TEMP TABLE kgh_temp (id int, tenant_id text);
SELECT keys_guard.protect_table('pg_temp.kgh_temp', tenant_column => 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS registered FROM keys_guard.guarded_table
 WHERE relid IN ('public.kgh_unlogged'::regclass, 'pg_temp.kgh_temp'::regclass);
DROP TABLE kgh_temp;
SELECT keys_guard.protect_table('pg_catalog.pg_class', tenant_column => 'relname');
\echo :LAST_ERROR_SQLSTATE
-- A guarded table never becomes unlogged, pooled or in a tenant schema.
ALTER TABLE public.kgh_orders SET UNLOGGED;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE tenant_kgh_a.kgh_notes SET UNLOGGED;
\echo :LAST_ERROR_SQLSTATE
SELECT relname, relpersistence FROM pg_class
 WHERE oid IN ('public.kgh_orders'::regclass, 'tenant_kgh_a.kgh_notes'::regclass) ORDER BY 1;
-- Every table of a tenant schema is guarded: none is created unlogged or
-- moved in unlogged, and a temporary one cannot live there at all.
CREATE UNLOGGED TABLE tenant_kgh_a.kgh_cache (id int);
\echo :LAST_ERROR_SQLSTATE
CREATE UNLOGGED TABLE tenant_kgh_a.kgh_cache2 AS SELECT 1 AS id;
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'su');
CREATE UNLOGGED TABLE kgh_cache3 (id int);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
CREATE TEMP TABLE tenant_kgh_a.kgh_scratch (id int);
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_unlogged SET SCHEMA tenant_kgh_a;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS unlogged_in_tenant_schema FROM pg_class
 WHERE relnamespace = 'tenant_kgh_a'::regnamespace AND relpersistence <> 'p';
-- A logged table in a tenant schema is still fine.
CREATE TABLE tenant_kgh_a.kgh_logged (id int);
SELECT relation, soft_delete FROM keys_guard.guarded_tables
 WHERE relation = 'tenant_kgh_a.kgh_logged'::regclass;
-- A template with an unlogged table or sequence is refused, nothing created.
CREATE SCHEMA kgh_tpl_unlogged;
CREATE UNLOGGED TABLE kgh_tpl_unlogged.items (id int);
SELECT keys_guard.create_tenant('kgh_c', template => 'kgh_tpl_unlogged');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE kgh_tpl_unlogged.items;
CREATE UNLOGGED SEQUENCE kgh_tpl_unlogged.numbers;
SELECT keys_guard.create_tenant('kgh_c', template => 'kgh_tpl_unlogged');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS created FROM pg_namespace WHERE nspname = 'tenant_kgh_c';

--
-- 3. The tenant column is a plain stored column (docs/contract.md §5).
--
CREATE TABLE public.kgh_gen (id int, owner text,
                             tenant_id text GENERATED ALWAYS AS (owner) STORED);
SELECT keys_guard.protect_table('public.kgh_gen', tenant_column => 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE public.kgh_ident (id int, tenant_id bigint GENERATED ALWAYS AS IDENTITY);
SELECT keys_guard.protect_table('public.kgh_ident', tenant_column => 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE public.kgh_gen_sd (id int, tenant_id text,
                                deleted_by text GENERATED ALWAYS AS ('nobody') STORED);
SELECT keys_guard.protect_table('public.kgh_gen_sd', tenant_column => 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS registered FROM keys_guard.guarded_table
 WHERE relid IN ('public.kgh_gen'::regclass, 'public.kgh_ident'::regclass,
                 'public.kgh_gen_sd'::regclass);
-- Nothing makes a guarded tenant column generated, or changes it, later,
-- also not through a parent table.
ALTER TABLE public.kgh_orders ALTER COLUMN tenant_id ADD GENERATED ALWAYS AS IDENTITY;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_orders ALTER COLUMN tenant_id DROP EXPRESSION;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_orders ALTER COLUMN tenant_id SET DEFAULT 'kgh_b';
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_base ALTER COLUMN tenant_id TYPE varchar(10);
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_base ALTER COLUMN tenant_id SET DEFAULT 'kgh_b';
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_base RENAME COLUMN tenant_id TO owner;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_base DROP COLUMN tenant_id;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_parted ALTER COLUMN tenant_id SET DEFAULT 'kgh_b';
\echo :LAST_ERROR_SQLSTATE
SELECT attname, format_type(atttypid, atttypmod), attgenerated, attidentity,
       pg_get_expr(d.adbin, d.adrelid) AS default
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = 'public.kgh_child'::regclass AND a.attname = 'tenant_id';
-- An unguarded parent's own columns stay its owner's business.
ALTER TABLE public.kgh_base ADD COLUMN note text;
ALTER TABLE public.kgh_base RENAME COLUMN note TO remark;
ALTER TABLE public.kgh_base DROP COLUMN remark;

--
-- 4. Audit tables keep every value they hold (docs/contract.md §8).
--
CREATE TYPE public.kgh_level AS ENUM ('info', 'warn');
CREATE TABLE public.kgh_ledger (id int PRIMARY KEY, tenant_id text NOT NULL,
                                amount int NOT NULL, note varchar(20),
                                level public.kgh_level);
SELECT relation, class FROM keys_guard.protect_table('public.kgh_ledger',
                                                     tenant_column => 'tenant_id',
                                                     soft_delete => false, class => 'audit');
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'su');
INSERT INTO public.kgh_ledger VALUES (1, 'kgh_a', 100, 'first', 'info');
COMMIT;
ALTER TABLE public.kgh_ledger ALTER COLUMN amount TYPE bigint USING 0;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_ledger ALTER COLUMN note TYPE text;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_ledger DROP COLUMN note;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_ledger DROP COLUMN IF EXISTS amount;
\echo :LAST_ERROR_SQLSTATE
-- Also when the column goes with a type dropped CASCADE.
DROP TYPE public.kgh_level CASCADE;
\echo :LAST_ERROR_SQLSTATE
-- Also through an unguarded parent.
CREATE TABLE public.kgh_ledger_base (id int, tenant_id text NOT NULL, amount int);
CREATE TABLE public.kgh_ledger_child () INHERITS (public.kgh_ledger_base);
SELECT relation FROM keys_guard.protect_table('public.kgh_ledger_child', tenant_column => 'tenant_id',
                                              soft_delete => false, class => 'audit');
ALTER TABLE public.kgh_ledger_base ALTER COLUMN amount TYPE bigint USING 0;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.kgh_ledger_base DROP COLUMN amount;
\echo :LAST_ERROR_SQLSTATE
-- What keeps every existing value is allowed: adding columns (even with a
-- volatile default, which rewrites), renaming, defaults, VACUUM FULL, CLUSTER.
ALTER TABLE public.kgh_ledger ADD COLUMN seen_at timestamptz DEFAULT clock_timestamp();
ALTER TABLE public.kgh_ledger RENAME COLUMN note TO memo;
ALTER TABLE public.kgh_ledger ALTER COLUMN memo SET DEFAULT 'none';
VACUUM FULL public.kgh_ledger;
CLUSTER public.kgh_ledger USING kgh_ledger_pkey;
BEGIN;
SELECT keys_guard.set_context('kgh_a', 'su');
SELECT id, tenant_id, amount, memo, level, seen_at IS NOT NULL AS seen FROM public.kgh_ledger;
COMMIT;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'public.kgh_ledger'::regclass AND attname = 'amount';

--
-- 5. Tenant names, templates, extension membership (docs/contract.md §4, §11).
--
SELECT keys_guard.create_tenant('kgh_ctl', name => E'Evil\nName');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.create_tenant('kgh_ctl', name => E'\u001b[31mred');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.create_tenant('kgh_ctl', name => E'nel\u0085here');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.create_tenant('kgh_ctl', name => E'tab\there');
\echo :LAST_ERROR_SQLSTATE
SELECT id, name FROM keys_guard.create_tenant('kgh_ctl', name => 'Acme & Sons (fine)');
-- Another tenant's schema is never a template (a deleted tenant's neither).
SELECT keys_guard.create_tenant('kgh_d', template => 'tenant_kgh_a');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS created FROM pg_namespace WHERE nspname = 'tenant_kgh_d';
-- ALTER EXTENSION keys_guard ADD / DROP: refused, for the superuser too.
ALTER EXTENSION keys_guard DROP FUNCTION keys_guard.current_tenant();
\echo :LAST_ERROR_SQLSTATE
ALTER EXTENSION keys_guard DROP TABLE keys_guard.audit_log;
\echo :LAST_ERROR_SQLSTATE
ALTER EXTENSION keys_guard DROP EVENT TRIGGER keys_guard_sql_drop;
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION public.kgh_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER EXTENSION keys_guard ADD FUNCTION public.kgh_fn();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS members FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'keys_guard')
   AND ((classid = 'pg_proc'::regclass AND objid IN ('keys_guard.current_tenant()'::regprocedure,
                                                     'public.kgh_fn()'::regprocedure))
        OR (classid = 'pg_class'::regclass AND objid = 'keys_guard.audit_log'::regclass));
-- The refusals of the utility hook are audited like every denial.
SELECT wait_for_audit($$outcome = 'denied' AND action = 'ddl'
                        AND (target LIKE 'public.kgh\_%'
                             OR detail->>'refused' LIKE '% extension keys_guard')$$,
                      19) AS audited_refusals;

--
-- 6. A registry row left by a temporary table guarded before 1.2 is
-- removed by the update (nothing else could remove it).
--
SELECT current_database() AS regress_db \gset
CREATE DATABASE kgh_upgrade;
\c kgh_upgrade
\set SHOW_CONTEXT never
CREATE EXTENSION keys_guard VERSION '1.1';
CREATE TEMP TABLE kgh_temp (id int, tenant_id text);
SELECT relation IS NOT NULL AS guarded
  FROM keys_guard.protect_table('pg_temp.kgh_temp', tenant_column => 'tenant_id');
-- What the end of the session does to it, without its event triggers.
DISCARD TEMP;
SELECT count(*) AS vanished FROM keys_guard.guarded_table g
 WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.relid);
ALTER EXTENSION keys_guard UPDATE TO '1.2';
SELECT count(*) AS vanished FROM keys_guard.guarded_table g
 WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.relid);
\c :regress_db
DROP DATABASE kgh_upgrade;
