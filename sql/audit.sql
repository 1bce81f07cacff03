--
-- audit: keys_guard.audit_log records state changes and denials; denials
-- survive the rollback of their statement (docs/contract.md §6, §10)
--
\set SHOW_CONTEXT never

-- State-changing calls are recorded in the same transaction.
SELECT action, target, outcome, tenant, actor, detail
  FROM keys_guard.audit_log WHERE action IN ('create_tenant', 'protect_table', 'release_table')
 ORDER BY id LIMIT 4;

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

-- Every denial kind is recorded with its reason.
SELECT wait_for_audit($$outcome = 'denied'$$, 20) >= 20 AS many_denials;
SELECT DISTINCT detail->>'reason' AS reason FROM keys_guard.audit_log
 WHERE outcome = 'denied' ORDER BY 1;

-- Admin contexts are recorded with their reason, and so is bypass.
SELECT wait_for_audit($$action = 'admin_context'$$, 1) >= 1 AS admin_recorded;
SELECT DISTINCT detail->>'reason' AS reason FROM keys_guard.audit_log
 WHERE detail->>'mode' = 'admin_context' ORDER BY 1;
SELECT wait_for_audit($$action = 'bypass'$$, 1) >= 1 AS bypass_recorded;

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
