--
-- audit: keys_guard.audit_log records state changes and denials; denials
-- survive the rollback of their statement (docs/contract.md §6, §10)
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
-- Other suites' records are in the same audit log: this suite looks only at
-- its own, those of tenant aud, its tables (tenant_aud.notes,
-- public.aud_items) and its request ids (req-audit-*).
\set mine '(tenant = ''aud'' OR target IN (''tenant_aud'', ''tenant_aud.notes'', ''public.aud_items'') OR request_id LIKE ''req-audit-%'')'

-- State-changing calls are recorded in the same transaction.
SELECT id FROM keys_guard.create_tenant('aud', name => 'Audit Inc.');
CREATE TABLE tenant_aud.notes (id int PRIMARY KEY, body text);
CREATE TABLE public.aud_items (id int PRIMARY KEY, tenant_id text NOT NULL, amount int);
SELECT relation FROM keys_guard.protect_table('public.aud_items', tenant_column => 'tenant_id');
SELECT keys_guard.release_table('public.aud_items');
SELECT relation FROM keys_guard.protect_table('public.aud_items', tenant_column => 'tenant_id');
-- (release_table records the guard it removed, with its creation time.)
SELECT action, target, outcome, tenant, actor, detail - 'created_at' AS detail
  FROM keys_guard.audit_log WHERE action IN ('create_tenant', 'protect_table', 'release_table')
   AND :mine ORDER BY id;

-- A denial, rolled back, still reaches the audit log through the worker.
BEGIN;
SELECT keys_guard.set_context('acme', 'user_audit', 'req-audit-1');
SELECT * FROM tenant_globex.notes WHERE body = 'sk_live_SECRET';
ROLLBACK;
SELECT wait_for_audit($$request_id = 'req-audit-1'$$, 1);
SELECT tenant, actor, request_id, action, target, outcome, detail
  FROM keys_guard.audit_log WHERE request_id = 'req-audit-1';

-- The query text (and the secret in it) is not in the audit log.
SELECT count(*) AS secrets FROM keys_guard.audit_log
 WHERE detail::text LIKE '%sk_live%' OR coalesce(target, '') LIKE '%sk_live%';

-- Every denial kind is recorded with its reason: besides the cross-tenant
-- access above (the other suites test the messages; here only the
-- SQLSTATE), no context ...
\set VERBOSITY sqlstate
SELECT * FROM tenant_aud.notes;
-- ... a cursor read under another tenant than it was opened under ...
BEGIN;
SELECT keys_guard.set_context('aud', 'user_audit', 'req-audit-2');
DECLARE aud_cur CURSOR FOR SELECT id FROM tenant_aud.notes;
SELECT keys_guard.set_context('acme', 'user_audit', 'req-audit-2');
FETCH 1 FROM aud_cur;
ROLLBACK;
-- ... DDL outside the tenant's schema under a tenant context ...
BEGIN;
SELECT keys_guard.set_context('aud', 'user_audit', 'req-audit-3');
CREATE TABLE public.aud_evil (x int);
ROLLBACK;
-- ... DDL that would weaken a guard ...
ALTER TABLE public.aud_items DISABLE ROW LEVEL SECURITY;
-- ... and a tenant pending deletion, under a context set before.
SET keys_guard.allow_session_context = on;
SELECT keys_guard.set_context('aud', 'user_audit', 'req-audit-4', is_local => false);
SELECT DISTINCT status FROM keys_guard.delete_tenant('aud');
SELECT * FROM tenant_aud.notes;
SELECT keys_guard.clear_context();
RESET keys_guard.allow_session_context;
SELECT status FROM keys_guard.restore_tenant('aud');
\set VERBOSITY default
SELECT wait_for_audit($$outcome = 'denied' AND $$ || :'mine', 6) AS denials;
SELECT detail->>'reason' AS reason, action, target, tenant, request_id
  FROM keys_guard.audit_log WHERE outcome = 'denied' AND :mine ORDER BY 1;

-- Admin contexts are recorded with their reason, and so is bypass.
GRANT SELECT ON public.aud_items TO kg_migrator;
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.admin_context('ops_audit', 'quarterly review', 'req-audit-5');
SELECT count(*) FROM public.aud_items;
COMMIT;
RESET ROLE;
SELECT wait_for_audit($$request_id = 'req-audit-5'$$, 2) AS admin_recorded;
SELECT action, target, actor, detail FROM keys_guard.audit_log
 WHERE request_id = 'req-audit-5' ORDER BY action;
SET keys_guard.bypass = on;
SELECT count(*) FROM public.aud_items;
RESET keys_guard.bypass;
SELECT wait_for_audit($$action = 'bypass' AND target = 'public.aud_items'$$, 1) AS bypass_recorded;

-- Append-only, for everyone.
UPDATE keys_guard.audit_log SET outcome = 'ok' WHERE outcome = 'denied';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM keys_guard.audit_log;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE keys_guard.audit_log;
\echo :LAST_ERROR_SQLSTATE
SET session_replication_role = replica;
DELETE FROM keys_guard.audit_log;
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
-- Readable by admins only.
SET ROLE kg_app;
SELECT count(*) FROM keys_guard.audit_log;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE kg_migrator;
SELECT count(*) > 0 AS admin_reads FROM keys_guard.audit_log;
RESET ROLE;

-- Every record's detail is built as jsonb by src/audit.c, whichever way it
-- is written (in the transaction, through the SQL scripts' _audit(), or
-- through the queue): quotes, backslashes and newlines in what it records
-- come back verbatim, and nothing ends up as a clipped string instead.
-- In a database of its own, so that no other suite sees these records.
SELECT current_database() AS regress_db \gset
CREATE DATABASE kg_audit_json;
\c kg_audit_json
\set SHOW_CONTEXT never
CREATE EXTENSION keys_guard;
SELECT count(*) AS tenants FROM keys_guard.create_tenant('aj');
SELECT format('public.%I', E'aj "odd" \\tab\nle') AS odd \gset
CREATE TABLE :odd (id text PRIMARY KEY, tenant_id text NOT NULL, body text);
SELECT count(*) AS protected FROM keys_guard.protect_table(:'odd', tenant_column => 'tenant_id');
BEGIN;
SELECT keys_guard.set_context('aj', E'user "u" \\a', E'req "aj" \\1');
INSERT INTO :odd VALUES (E'k "1" \\', 'aj', 'x'), ('k2', 'aj', 'y');
DELETE FROM :odd;
COMMIT;
BEGIN;
SELECT keys_guard.admin_context(E'admin "a" \\b', E'reason "r" \\ with quotes', E'req "adm" \\2');
SELECT keys_guard.restore(:'odd', E'k "1" \\'::text);
SELECT keys_guard.restore_request(E'req "aj" \\1');
SELECT count(*) AS restored FROM :odd;
COMMIT;
-- Refused: DDL that would weaken the guard, and access without a context.
ALTER TABLE :odd DISABLE ROW LEVEL SECURITY;
SELECT count(*) FROM :odd;
SELECT keys_guard.release_table(:'odd') AS released;
-- The queued records arrive through this database's worker.
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '10 seconds';
BEGIN
    WHILE (SELECT count(*) FROM keys_guard.audit_log
            WHERE outcome = 'denied' OR action IN ('admin_context', 'select')) < 4
          AND clock_timestamp() < deadline LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT action, outcome, tenant, actor, request_id, target = :'odd' AS odd_target,
       CASE WHEN action = 'release_table' THEN detail - 'created_at' ELSE detail END::text AS detail
  FROM keys_guard.audit_log
 ORDER BY action, outcome, detail::text;
DROP TABLE :odd;
\c :regress_db
DROP DATABASE kg_audit_json;
