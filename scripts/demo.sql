-- keys_guard guided demo: tenants, a pooled table, a denied cross-tenant
-- query and the audit record of the denial.  Run by scripts/demo.sh.
\set VERBOSITY default
\set SHOW_CONTEXT never
\pset footer off
\echo
\echo '== 1. Install the extension (the library is in shared_preload_libraries)'
CREATE EXTENSION keys_guard;

\echo
\echo '== 2. A migration creates two tenants: each gets its own schema'
SELECT id, name, schema, status FROM keys_guard.create_tenant('acme', name => 'Acme Inc.');
SELECT id, name, schema, status FROM keys_guard.create_tenant('globex', name => 'Globex Corp');

\echo
\echo '== 3. Tables created in a tenant schema are guarded automatically;'
\echo '      a shared ("pooled") table is guarded with protect_table()'
CREATE TABLE tenant_acme.projects (id int PRIMARY KEY, title text);
CREATE TABLE tenant_globex.projects (id int PRIMARY KEY, title text);
CREATE TABLE public.invoices (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    amount    numeric(10,2) NOT NULL
);
CREATE INDEX ON public.invoices (tenant_id);
SELECT relation, kind, tenant_column FROM keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id');
SELECT relation, kind, tenant_id, tenant_column FROM keys_guard.guarded_tables ORDER BY 1;

\echo
\echo '== 4. The API server (a role in keys_guard_gateway) sets a request context'
\echo '      per transaction; the tenant id is filled in on insert'
CREATE ROLE demo_api LOGIN IN ROLE keys_guard_gateway;
GRANT USAGE ON SCHEMA tenant_acme, tenant_globex TO demo_api;
GRANT SELECT, INSERT, DELETE ON tenant_acme.projects, tenant_globex.projects, public.invoices TO demo_api;
SET ROLE demo_api;
BEGIN;
SELECT keys_guard.set_context(tenant => 'acme', actor => 'user_alice', request_id => 'req-0001') \gset
INSERT INTO projects VALUES (1, 'Rocket skates');
INSERT INTO invoices (amount) VALUES (120.00), (80.50);
COMMIT;
BEGIN;
SELECT keys_guard.set_context(tenant => 'globex', actor => 'user_bob', request_id => 'req-0002') \gset
INSERT INTO projects VALUES (1, 'Doomsday device');
INSERT INTO invoices (amount) VALUES (999.99);
COMMIT;

\echo
\echo '== 5. Globex reads the shared table without a WHERE clause: only its own rows'
BEGIN;
SELECT keys_guard.set_context(tenant => 'globex', actor => 'user_bob', request_id => 'req-0003') \gset
SELECT tenant_id, amount FROM invoices;
SELECT * FROM projects;

\echo
\echo '== 6. Globex names Acme: denied with SQLSTATE 42501, not silently filtered'
SELECT * FROM tenant_acme.projects;
\echo 'SQLSTATE:' :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context(tenant => 'globex', actor => 'user_bob', request_id => 'req-0004') \gset
SELECT * FROM invoices WHERE tenant_id = 'acme';
\echo 'SQLSTATE:' :LAST_ERROR_SQLSTATE
ROLLBACK;

\echo
\echo '== 7. No context, no data - superusers included'
RESET ROLE;
SELECT count(*) FROM public.invoices;
\echo 'SQLSTATE:' :LAST_ERROR_SQLSTATE

\echo
\echo '== 8. The denials were rolled back with their statements, yet they are in'
\echo '      the audit log: the background worker wrote them (polling up to 5 s)'
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN (SELECT count(*) FROM keys_guard.audit_log WHERE outcome = 'denied') >= 3;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT at::time(0) AS at, tenant, actor, request_id, action, target, outcome,
       detail->>'reason' AS reason
  FROM keys_guard.audit_log WHERE outcome = 'denied' ORDER BY id;

\echo
\echo '== 9. Acme deletes a project: the client sees DELETE 1 and the RETURNING row,'
\echo '      but the row is only soft-deleted (30 days of grace by default)'
SET ROLE demo_api;
BEGIN;
SELECT keys_guard.set_context(tenant => 'acme', actor => 'user_alice', request_id => 'req-0005') \gset
\set QUIET off
DELETE FROM projects WHERE id = 1 RETURNING id, title;
\set QUIET on
SELECT count(*) AS projects_acme_sees FROM projects;
COMMIT;
RESET ROLE;

\echo
\echo '== 10. An admin sees what was deleted, by whom and until when, and restores'
\echo '       everything that request deleted'
BEGIN;
SELECT keys_guard.admin_context(actor => 'ops_dana', reason => 'ticket 4711: restore deleted project') \gset
SET LOCAL keys_guard.include_deleted = on;
SELECT id, title, deleted_by, delete_request_id, hard_delete_at - deleted_at AS grace
  FROM tenant_acme.projects;
COMMIT;
SELECT keys_guard.restore_request('req-0005') AS rows_restored;
BEGIN;
SELECT keys_guard.set_context(tenant => 'acme', actor => 'user_alice') \gset
SELECT id, title FROM projects;
COMMIT;

\echo
\echo '== Done.'
