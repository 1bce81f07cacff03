--
-- tenants: create_tenant, the tenants view, automatic guarding of tables
-- created in tenant schemas (docs/contract.md §4)
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
-- In a database of its own: the fixture has made this suite's tenants
-- (acme, globex, ...) in the regression database already, and the suite
-- lists every tenant and guarded table there is.
SELECT current_database() AS regress_db \gset
CREATE DATABASE kg_tenants;
\c kg_tenants
CREATE EXTENSION keys_guard;
SELECT id, name, schema, status, deleted_at, hard_delete_at
  FROM keys_guard.create_tenant('acme', name => 'Acme Inc.');
SELECT id, name, schema FROM keys_guard.create_tenant('globex');
SELECT id, name, schema FROM keys_guard.create_tenant('0c1f9d2e-5b7a-4c3e-9f1a-2b3c4d5e6f70');
SELECT id, name, schema FROM keys_guard.create_tenant('42');

-- The schema exists, owned by keys_guard_admin, usable by the gateway.
SELECT nspname, pg_get_userbyid(nspowner) AS owner,
       has_schema_privilege('keys_guard_gateway', oid, 'USAGE') AS gateway_usage
  FROM pg_namespace WHERE nspname LIKE 'tenant\_%' ORDER BY 1;

-- Idempotent: the same call again returns the row with a NOTICE.
SELECT id, name FROM keys_guard.create_tenant('acme', name => 'Acme Inc.');
SELECT count(*) FROM keys_guard.tenants WHERE id = 'acme';

-- The same id with other attributes is 22023, naming the difference.
SELECT keys_guard.create_tenant('acme', name => 'Acme Corp');
\echo :LAST_ERROR_SQLSTATE

-- Invalid ids are 22023 and create nothing.
SELECT keys_guard.create_tenant('');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.create_tenant('Acme');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.create_tenant('-acme');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.create_tenant('acme inc');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.create_tenant('a''; DROP SCHEMA public; --');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.create_tenant(repeat('a', 49));
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.create_tenant(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.create_tenant('ok', name => '');
\echo :LAST_ERROR_SQLSTATE
-- 48 characters is the longest id.
SELECT length(id), schema FROM keys_guard.create_tenant(repeat('b', 48));
SELECT count(*) AS tenants FROM keys_guard.tenants;
SELECT count(*) AS stray_schemas FROM pg_namespace
 WHERE nspname IN ('tenant_', 'tenant_Acme', 'tenant_ok', 'tenant_-acme');

-- A schema that already exists but is not a tenant's is not adopted.
CREATE SCHEMA tenant_squatter;
SELECT keys_guard.create_tenant('squatter');
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA tenant_squatter;

-- Only keys_guard_admin members create tenants.
SET ROLE kg_app;
SELECT keys_guard.create_tenant('sneaky');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE kg_migrator;
SELECT id FROM keys_guard.create_tenant('initech');
RESET ROLE;

-- Every table a migration creates in a tenant schema is guarded at once.
CREATE TABLE tenant_acme.notes (id int PRIMARY KEY, body text);
CREATE TABLE tenant_globex.notes (id int PRIMARY KEY, body text);
SET ROLE kg_migrator;
CREATE TABLE tenant_initech.notes (id int PRIMARY KEY, body text);
RESET ROLE;
SELECT relation, kind, tenant_id, tenant_column, soft_delete, grace, class
  FROM keys_guard.guarded_tables ORDER BY relation::text;

-- The guard includes the fail-closed row security policy, forced for owners.
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       array_agg(p.polname ORDER BY p.polname) AS policies
  FROM pg_class c JOIN pg_policy p ON p.polrelid = c.oid
 WHERE c.oid = 'tenant_acme.notes'::regclass
 GROUP BY 1, 2, 3;

-- Views, sequences and temporary tables are not registered (a view in a
-- tenant schema is still covered by the schema rule, see isolation).
CREATE VIEW tenant_acme.notes_view AS SELECT * FROM tenant_acme.notes;
SELECT count(*) FROM keys_guard.guarded_tables WHERE relation::text LIKE '%notes_view%';

-- The tenants view is readable by the gateway but not by others.
SET ROLE kg_app;
SELECT id FROM keys_guard.tenants WHERE id = 'acme';
RESET ROLE;
SET ROLE kg_nobody;
SELECT id FROM keys_guard.tenants;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
\c :regress_db
DROP DATABASE kg_tenants;
