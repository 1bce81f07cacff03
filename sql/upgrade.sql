--
-- upgrade: a database created with keys_guard 1.0 and updated with ALTER
-- EXTENSION keys_guard UPDATE ends up with exactly the objects of a fresh
-- install, keeps its tenants, guards and rows, and gets the 1.1 features
--
\set SHOW_CONTEXT never
SELECT current_database() AS regress_db \gset

-- What an installed keys_guard consists of: every member object, with the
-- full definition of each function, view and table.
SELECT $q$SELECT pg_describe_object(dep.classid, dep.objid, dep.objsubid)
               || coalesce(' ' || CASE WHEN dep.classid = 'pg_proc'::regclass
                                       THEN pg_get_functiondef(dep.objid)
                                       WHEN dep.classid = 'pg_class'::regclass
                                       THEN (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod),
                                                               ', ' ORDER BY a.attnum)
                                               FROM pg_attribute a
                                              WHERE a.attrelid = dep.objid AND a.attnum > 0
                                                AND NOT a.attisdropped)
                                  END, '') AS d
          FROM pg_depend dep
         WHERE dep.refclassid = 'pg_extension'::regclass AND dep.deptype = 'e'
           AND dep.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'keys_guard')
        UNION ALL
        SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass || ' ' || tgenabled::text
          FROM pg_trigger WHERE tgrelid::regclass::text LIKE 'keys_guard.%' AND NOT tgisinternal
        UNION ALL
        SELECT 'event trigger ' || evtname || ' ' || evtenabled::text FROM pg_event_trigger$q$ AS members \gset
CREATE DATABASE kg_fresh;
\c kg_fresh
CREATE EXTENSION keys_guard;
SELECT md5(string_agg(d, E'\n' ORDER BY d)) AS fresh_objects, count(*) AS fresh_count
  FROM (:members) AS o \gset
\c :regress_db
DROP DATABASE kg_fresh;

-- The same in a database that started at 1.0 and has data.
CREATE DATABASE kg_upgraded;
\c kg_upgraded
\set SHOW_CONTEXT never
CREATE EXTENSION keys_guard VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'keys_guard';
SELECT id FROM keys_guard.create_tenant('up');
CREATE TABLE tenant_up.notes (id int PRIMARY KEY, body text);
CREATE TABLE shared (id int PRIMARY KEY, tenant_id text NOT NULL, v int);
SELECT relation FROM keys_guard.protect_table('shared', tenant_column => 'tenant_id');
BEGIN;
SELECT keys_guard.set_context('up', 'migrator');
INSERT INTO notes VALUES (1, 'kept'), (2, 'soft-deleted');
INSERT INTO shared VALUES (1, 'up', 1);
DELETE FROM notes WHERE id = 2;
COMMIT;
-- 1.0 has no snapshot() yet.
SELECT keys_guard.snapshot();
\echo :LAST_ERROR_SQLSTATE

ALTER EXTENSION keys_guard UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'keys_guard';
SELECT md5(string_agg(d, E'\n' ORDER BY d)) = :'fresh_objects' AS same_objects_as_fresh,
       count(*) = :fresh_count AS same_count
  FROM (:members) AS o;

-- Tenants, guards and rows came through.
SELECT id, status FROM keys_guard.tenants;
SELECT relation, kind, soft_delete FROM keys_guard.guarded_tables ORDER BY relation::text;
BEGIN;
SELECT keys_guard.set_context('up', 'reader');
SELECT id, body FROM notes ORDER BY id;
SELECT id, tenant_id FROM shared;
COMMIT;
-- 1.1 works on the upgraded registry: a version above zero (the registry
-- was not empty), the guard rails, the registry protection.
SELECT (keys_guard.snapshot()->>'version')::int > 0 AS has_version,
       jsonb_array_length(keys_guard.snapshot()->'guarded_tables') AS guarded_tables;
ALTER TABLE shared DISABLE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
UPDATE keys_guard.guarded_table SET soft_delete = false;
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.release_table('shared', dry_run => true);
-- Updating again is a no-op.
ALTER EXTENSION keys_guard UPDATE;
\c :regress_db
DROP DATABASE kg_upgraded;
