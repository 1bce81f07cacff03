--
-- names: the names and rules keys_guard's SQL scripts and its library must
-- agree on (keys_guard.h, names.c).  Each check compares what the scripts
-- build with what the library says; renaming a column, prefix or suffix
-- on one side only fails here.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql

-- The library's list, as keys_guard.h defines it.
SELECT name, value FROM keys_guard._shared_names() ORDER BY name;
SELECT pg_catalog.current_setting('keys_guard.min_grace') AS min_grace \gset
\set VERBOSITY terse

-- A tenant's schema: create_tenant() names it as the library does.
SELECT id FROM keys_guard.create_tenant('names-a');
SELECT t.schema_name = keys_guard._tenant_schema('names-a') AS schema_as_library,
       t.schema_name = (SELECT value FROM keys_guard._shared_names()
                         WHERE name = 'tenant_schema_prefix') || 'names-a' AS prefix_as_header
  FROM keys_guard.tenant t WHERE t.id = 'names-a';
SELECT keys_guard._tenant_schema('Not Valid');
\echo :LAST_ERROR_SQLSTATE

-- The tenant-id shape: create_tenant() and the registry's CHECK accept
-- exactly the ids the library's rule accepts (set_context() calls that
-- rule directly).  The tenants made here are rolled back.
CREATE TEMP TABLE id_cases (id text);
INSERT INTO id_cases VALUES ('a'), ('0'), ('a-b_c'), (repeat('x', 48)),
    (''), ('-a'), ('_a'), ('A'), ('a b'), ('a.b'), ('é'), (repeat('x', 49)), ('a''b'),
    (E'a\nb');
BEGIN;
SELECT left(id, 12) AS id, keys_guard._tenant_id_valid(id) AS valid,
       public.try(format('SELECT keys_guard.create_tenant(%L)', id)) AS create_tenant
  FROM id_cases ORDER BY valid DESC, id COLLATE "C";
SELECT public.try($$INSERT INTO keys_guard.tenant (id, name, schema_name) VALUES ('Bad', 'x', 'x')$$) AS direct_insert;
ROLLBACK;
SELECT count(*) AS bad_ids_in_registry
  FROM keys_guard.tenant WHERE NOT keys_guard._tenant_id_valid(id);
SELECT pg_catalog.pg_get_constraintdef(oid) AS tenant_id_check
  FROM pg_constraint WHERE conrelid = 'keys_guard.tenant'::regclass AND conname = 'tenant_id_check';

-- A soft-delete table: its columns, triggers and policies carry the
-- library's names, and its purge index is the one the library finds.
CREATE TABLE public.names_docs (id int PRIMARY KEY, tenant_id text NOT NULL, body text);
CREATE INDEX ON public.names_docs (tenant_id);
SELECT relation FROM keys_guard.protect_table('public.names_docs', tenant_column => 'tenant_id');
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_attribute a
 WHERE a.attrelid = 'public.names_docs'::regclass AND a.attnum > 0
   AND a.attname IN (SELECT value FROM keys_guard._shared_names())
 ORDER BY a.attnum;
SELECT count(*) AS keys_guard_triggers,
       bool_and(t.tgname LIKE (SELECT value FROM keys_guard._shared_names()
                                WHERE name = 'object_prefix') || '%') AS all_prefixed
  FROM pg_trigger t WHERE t.tgrelid = 'public.names_docs'::regclass AND NOT t.tgisinternal;
SELECT count(*) AS keys_guard_policies,
       bool_and(p.polname LIKE (SELECT value FROM keys_guard._shared_names()
                                 WHERE name = 'object_prefix') || '%') AS all_prefixed
  FROM pg_policy p WHERE p.polrelid = 'public.names_docs'::regclass;
SELECT keys_guard._purge_index('public.names_docs')::text AS purge_index,
       keys_guard._purge_index_name('public.names_docs') AS name_as_library,
       keys_guard._purge_index('public.names_docs')::text
         LIKE '%' || (SELECT value FROM keys_guard._shared_names()
                       WHERE name = 'purge_index_suffix') AS suffix_as_header;

-- Only a btree index of that exact shape is the purge index: without it,
-- doctor() reports it missing and its repair creates it under the same name.
DROP INDEX public.names_docs_kg_purge;
CREATE INDEX names_docs_hash ON public.names_docs USING hash (hard_delete_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX names_docs_desc ON public.names_docs (hard_delete_at DESC) WHERE deleted_at IS NOT NULL;
CREATE INDEX names_docs_all ON public.names_docs (hard_delete_at);
SELECT keys_guard._purge_index('public.names_docs') AS purge_index;
SELECT problem, detail, fix FROM keys_guard.doctor() WHERE relation = 'public.names_docs'::regclass;
SELECT fix FROM keys_guard.doctor() WHERE relation = 'public.names_docs'::regclass
   AND problem = 'incomplete_guard' \gset
:fix ;
SELECT keys_guard._purge_index('public.names_docs')::text AS purge_index;
SELECT count(*) AS problems FROM keys_guard.doctor() WHERE relation = 'public.names_docs'::regclass;

-- Releasing the table drops keys_guard's purge index, not the user's.
SELECT keys_guard.release_table('public.names_docs');
SELECT indexrelid::regclass AS left_indexes FROM pg_index
 WHERE indrelid = 'public.names_docs'::regclass ORDER BY indexrelid::regclass::text;

-- The grace settings, read by the scripts through the library.
SELECT keys_guard._min_grace() = :'min_grace'::interval AS min_grace_as_setting;
SET keys_guard.default_grace = '36h';
SELECT keys_guard._default_grace() AS default_grace;
RESET keys_guard.default_grace;

-- Clean up.
DROP TABLE public.names_docs;
SELECT DISTINCT status FROM keys_guard.delete_tenant('names-a');
