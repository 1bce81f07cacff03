--
-- migrations: keys_guard.migrate_tenants() runs one migration in tenant
-- schemas, one committed transaction per schema, and keeps a ledger
-- (docs/contract.md §18).  This suite runs it on its own tenants only (a
-- canary list): a run over every tenant, the template step, a kill and the
-- resume are in t/016_fleet.pl, on a cluster of its own.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql

SET client_min_messages = warning;
CREATE SCHEMA mig_tpl;
CREATE TABLE mig_tpl.mig_invoices (id int PRIMARY KEY, amount int);
DO $$
BEGIN
    PERFORM keys_guard.create_tenant('mig-a', template => 'mig_tpl');
    PERFORM keys_guard.create_tenant('mig-b', template => 'mig_tpl');
    PERFORM keys_guard.create_tenant('mig-c', template => 'mig_tpl');
    PERFORM keys_guard.create_tenant('mig-plain');
END
$$;
RESET client_min_messages;

-- A tenant remembers its template (and only keys_guard writes the registry).
SELECT id, template_schema FROM keys_guard.tenant WHERE id LIKE 'mig-%' ORDER BY id;

-- The API: a procedure of keys_guard_admin, listed in the runbook view.
SELECT function, safety_class, guard_argument FROM keys_guard.operations
 WHERE name = 'migrate_tenants';

-- dry_run says what would run and changes nothing.
CALL keys_guard.migrate_tenants('mig_1', $$ALTER TABLE mig_invoices ADD COLUMN due_date date; CREATE INDEX ON mig_invoices (due_date)$$,
                                tenants => '{mig-b,mig-a}', dry_run => true);
SELECT count(*) FROM keys_guard.tenant_migrations WHERE migration = 'mig_1';

-- A canary group: just those tenants, each with its schema first on
-- search_path, recorded ok with the time it took.
CALL keys_guard.migrate_tenants('mig_1', $$ALTER TABLE mig_invoices ADD COLUMN due_date date; CREATE INDEX ON mig_invoices (due_date)$$,
                                tenants => '{mig-b,mig-a}');
SELECT tenant, schema_name, status, sqlstate, error, took > '0' AS took, attempts, from_template
  FROM keys_guard.tenant_migrations WHERE migration = 'mig_1' ORDER BY schema_name;
-- The ledger fingerprints the SQL that ran: its SHA-256, in hex.
SELECT count(*) AS fingerprinted FROM keys_guard.tenant_migrations
 WHERE migration = 'mig_1'
   AND sql_sha256 = encode(sha256(convert_to($$ALTER TABLE mig_invoices ADD COLUMN due_date date; CREATE INDEX ON mig_invoices (due_date)$$, 'UTF8')), 'hex');
SELECT attname FROM pg_attribute
 WHERE attrelid IN ('tenant_mig-a.mig_invoices'::regclass, 'tenant_mig-b.mig_invoices'::regclass,
                    'tenant_mig-c.mig_invoices'::regclass)
   AND attname = 'due_date' ORDER BY attrelid::regclass::text;
SELECT count(*) FROM pg_indexes WHERE schemaname LIKE 'tenant_mig-%' AND indexdef LIKE '%(due_date)%';

-- A second call skips the tenants already migrated; mig-c is new to it.
CALL keys_guard.migrate_tenants('mig_1', $$ALTER TABLE mig_invoices ADD COLUMN due_date date; CREATE INDEX ON mig_invoices (due_date)$$,
                                tenants => '{mig-a,mig-b,mig-c}');
SELECT tenant, status, attempts FROM keys_guard.tenant_migrations
 WHERE migration = 'mig_1' ORDER BY schema_name;

-- A tenant where the migration fails is recorded with its SQLSTATE and
-- message, and the run goes on (a WARNING says so).
CALL keys_guard.migrate_tenants('mig_2', $$CREATE TABLE notes_archive (id int); ALTER TABLE mig_invoices ADD COLUMN paid boolean$$,
                                tenants => '{mig-a,mig-plain,mig-b}');
SELECT tenant, status, sqlstate, error FROM keys_guard.tenant_migrations
 WHERE migration = 'mig_2' ORDER BY schema_name;
-- ... and nothing of the failed tenant's transaction stayed.
SELECT to_regclass('"tenant_mig-plain".notes_archive') IS NULL AS rolled_back;

-- max_failures: the run stops when that many tenants failed (55000).
CALL keys_guard.migrate_tenants('mig_3', $$ALTER TABLE no_such_table ADD COLUMN x int$$,
                                tenants => '{mig-a,mig-b,mig-c}', max_failures => 2);
\echo :LAST_ERROR_SQLSTATE
SELECT tenant, status, sqlstate FROM keys_guard.tenant_migrations
 WHERE migration = 'mig_3' ORDER BY schema_name;

-- Refused DDL stays refused: the migration's statements are the caller's
-- own, never keys_guard acting (docs/contract.md §11).
CALL keys_guard.migrate_tenants('mig_4', $$ALTER TABLE mig_invoices DISABLE ROW LEVEL SECURITY$$,
                                tenants => '{mig-a}');
CALL keys_guard.migrate_tenants('mig_5', $$ALTER TABLE mig_invoices DROP COLUMN deleted_at$$,
                                tenants => '{mig-b}');
CALL keys_guard.migrate_tenants('mig_6', $$DROP POLICY keys_guard_fail_closed ON mig_invoices$$,
                                tenants => '{mig-c}');
SELECT migration, tenant, status, sqlstate, error FROM keys_guard.tenant_migrations
 WHERE migration IN ('mig_4', 'mig_5', 'mig_6') ORDER BY migration;
SELECT relrowsecurity FROM pg_class WHERE oid = '"tenant_mig-a".mig_invoices'::regclass;

-- A migration name stands for one SQL text.
CALL keys_guard.migrate_tenants('mig_1', $$ALTER TABLE mig_invoices ADD COLUMN due date$$,
                                tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE

-- Progress, from the ledger.
SELECT migration, tenants_ok, tenants_failed, templates_ok, templates_failed
  FROM keys_guard.tenant_migration_progress WHERE migration LIKE 'mig\_%' ORDER BY migration;

-- Audited: one record when a run starts, one when it ends (not for dry_run).
SELECT target, detail->>'phase' AS phase, detail->'canary' AS canary, detail->'tenants' AS tenants,
       detail->'ok' AS ok, detail->'failed' AS failed, detail->'skipped' AS skipped,
       detail->'stopped' AS stopped
  FROM keys_guard.audit_log WHERE action = 'migrate_tenants' AND target LIKE 'mig\_%'
 ORDER BY id;

-- Bad input: NULLs (22004), empty or garbage (22023), SQL that does not
-- parse (42601) or controls the transaction (0A000).
CALL keys_guard.migrate_tenants(NULL, 'SELECT 1', tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('mig_x', NULL, tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('mig_x', 'SELECT 1', tenants => '{mig-a}', dry_run => NULL);
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('mig_x', 'SELECT 1', tenants => '{mig-a}', max_failures => NULL);
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('', 'SELECT 1', tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants(repeat('m', 201), 'SELECT 1', tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants(E'mig\nx', 'SELECT 1', tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('mig_x', '', tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('mig_x', ' ; -- nothing', tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('mig_x', 'ALTER TABLE mig_invoices ADD COLUM x int', tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('mig_x', 'SELECT 1; COMMIT', tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('mig_x', 'SAVEPOINT s', tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('mig_x', 'SELECT 1', tenants => '{mig-a}', max_failures => 0);
\echo :LAST_ERROR_SQLSTATE
-- The tenant list: empty (22023), a NULL in it (22004), an unknown tenant
-- (22023, nothing runs), a tenant pending deletion (55000).
CALL keys_guard.migrate_tenants('mig_x', 'SELECT 1', tenants => '{}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('mig_x', 'SELECT 1', tenants => '{mig-a,NULL}');
\echo :LAST_ERROR_SQLSTATE
CALL keys_guard.migrate_tenants('mig_x', 'SELECT 1', tenants => '{mig-a,mig-nobody}');
\echo :LAST_ERROR_SQLSTATE
SET client_min_messages = warning;
SELECT id FROM keys_guard.create_tenant('mig-gone');
SELECT status FROM keys_guard.delete_tenant('mig-gone', grace => '1 day');
RESET client_min_messages;
CALL keys_guard.migrate_tenants('mig_x', 'SELECT 1', tenants => '{mig-a,mig-gone}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM keys_guard.tenant_migrations WHERE migration = 'mig_x';

-- Inside a transaction block it cannot commit: refused before anything
-- runs (2D000).
BEGIN;
CALL keys_guard.migrate_tenants('mig_x', 'SELECT 1', tenants => '{mig-a}');
ROLLBACK;
SELECT count(*) FROM keys_guard.tenant_migrations WHERE migration = 'mig_x';
SELECT count(*) FROM keys_guard.audit_log WHERE action = 'migrate_tenants' AND target = 'mig_x';

-- Who may call: keys_guard_admin members (kg_migrator); not a gateway
-- (kg_app) or anyone else (42501).  The migration runs with the caller's
-- rights.
SET ROLE kg_migrator;
CALL keys_guard.migrate_tenants('mig_7', 'CREATE TABLE by_migrator (id int)', tenants => '{mig-a}');
SELECT tenant, status FROM keys_guard.tenant_migrations WHERE migration = 'mig_7';
SELECT tableowner FROM pg_tables WHERE schemaname = 'tenant_mig-a' AND tablename = 'by_migrator';
RESET ROLE;
SET ROLE kg_app;
CALL keys_guard.migrate_tenants('mig_8', 'SELECT 1', tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM keys_guard.tenant_migrations;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE kg_nobody;
CALL keys_guard.migrate_tenants('mig_8', 'SELECT 1', tenants => '{mig-a}');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard._migrate_schema('mig_8', 'mig-a', 'tenant_mig-a', 'SELECT 1');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- The ledger is a registry table: read-only for every role, superusers
-- included (42501).
INSERT INTO keys_guard.tenant_migrations (migration, tenant, schema_name, status, took, sql_sha256)
VALUES ('mig_forged', 'mig-c', 'tenant_mig-c', 'ok', '0', 'x');
\echo :LAST_ERROR_SQLSTATE
UPDATE keys_guard.tenant_migrations SET status = 'ok' WHERE migration = 'mig_3';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM keys_guard.tenant_migrations WHERE migration = 'mig_3';
\echo :LAST_ERROR_SQLSTATE
TRUNCATE keys_guard.tenant_migrations;
\echo :LAST_ERROR_SQLSTATE
-- Its helpers check their caller and what they are given.
SET ROLE kg_migrator;
SELECT keys_guard._migrate_schema('mig_8', 'mig-a', 'tenant_mig-b', 'SELECT 1');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard._migrate_schema('mig_8', NULL, 'public', 'SELECT 1');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard._migration_audit('mig_8', 'middle', 'SELECT 1', 0, 0, 0, 0, false, false);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) FROM keys_guard.tenant_migrations WHERE migration IN ('mig_8', 'mig_forged');

-- A tenant created from a template that already has a migration is born
-- with it: the ledger says so, and a run skips it.  (The template is
-- migrated by a run over every tenant; here the ledger row is made as such
-- a run would.)
SELECT keys_guard._migrate_schema('mig_1', NULL, 'mig_tpl',
                                  $$ALTER TABLE mig_invoices ADD COLUMN due_date date; CREATE INDEX ON mig_invoices (due_date)$$)
       > '0' AS template_migrated;
SET client_min_messages = warning;
SELECT id FROM keys_guard.create_tenant('mig-d', template => 'mig_tpl');
RESET client_min_messages;
SELECT tenant, status, attempts, from_template FROM keys_guard.tenant_migrations
 WHERE migration = 'mig_1' AND tenant = 'mig-d';
SELECT count(*) FROM pg_attribute WHERE attrelid = '"tenant_mig-d".mig_invoices'::regclass AND attname = 'due_date';
CALL keys_guard.migrate_tenants('mig_1', $$ALTER TABLE mig_invoices ADD COLUMN due_date date; CREATE INDEX ON mig_invoices (due_date)$$,
                                tenants => '{mig-d}');

-- Clean up what this suite made.
SET client_min_messages = warning;
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['mig-a', 'mig-b', 'mig-c', 'mig-d', 'mig-plain'] LOOP
        PERFORM keys_guard.delete_tenant(t, grace => '0');
    END LOOP;
END
$$;
RESET client_min_messages;
