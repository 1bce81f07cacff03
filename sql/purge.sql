--
-- purge: purge_now, purge_status and the tenant lifecycle (SPEC.md §9).
-- The worker of this test cluster sleeps (keys_guard.purge_naptime = 3600);
-- the TAP suites test the worker itself.
--
\set SHOW_CONTEXT never
SELECT id FROM keys_guard.create_tenant('pu');
CREATE TABLE tenant_pu.docs (id int PRIMARY KEY, body text);
SELECT keys_guard.release_table('tenant_pu.docs');
SELECT grace FROM keys_guard.protect_table('tenant_pu.docs', grace => interval '0');
CREATE TABLE tenant_pu.notes (id int PRIMARY KEY, doc_id int REFERENCES tenant_pu.docs ON DELETE CASCADE);
CREATE TABLE tenant_pu.receipts (id int PRIMARY KEY, doc_id int REFERENCES tenant_pu.docs ON DELETE CASCADE);
SELECT keys_guard.release_table('tenant_pu.receipts');
SELECT class FROM keys_guard.protect_table('tenant_pu.receipts', class => 'payment', grace => interval '0');
-- The purge finds expired rows through a partial index the guard created.
SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'tenant_pu.docs'::regclass AND NOT indisprimary;

BEGIN;
SELECT keys_guard.set_context('pu', 'alice', 'req-pu-1');
INSERT INTO docs SELECT g, 'doc ' || g FROM generate_series(1, 10) g;
INSERT INTO notes VALUES (1, 1), (2, 2);
INSERT INTO receipts VALUES (1, 3);
-- docs 1-6 deleted (grace 0: expired as soon as this commits); note 1, 2 and
-- receipt 1 follow through the cascade (notes: 30 days of grace).
DELETE FROM docs WHERE id <= 6;
COMMIT;

SELECT relation, class, policy, rows_deleted, rows_waiting, rows_purged, rows_skipped
  FROM keys_guard.purge_status WHERE relation::text LIKE 'tenant_pu.%' ORDER BY relation::text;

-- A dry run only counts.
SELECT * FROM keys_guard.purge_now(dry_run => true) WHERE relation::text LIKE 'tenant_pu.%' ORDER BY 1;
SELECT rows_waiting FROM keys_guard.purge_status WHERE relation = 'tenant_pu.docs'::regclass;

-- Doc 3 has a receipt (a payment row) behind ON DELETE CASCADE: it is
-- skipped.  Docs 1 and 2 take their (soft-deleted, equally expired) notes
-- with them through the cascade.  The rest is purged.
SELECT * FROM keys_guard.purge_now('tenant_pu.docs');
SELECT relation, rows_deleted, rows_waiting, rows_purged, rows_skipped
  FROM keys_guard.purge_status WHERE relation::text LIKE 'tenant_pu.%' ORDER BY relation::text;
SET keys_guard.bypass = on;
SELECT id FROM tenant_pu.docs ORDER BY id;
SELECT id FROM tenant_pu.notes ORDER BY id;
SELECT id, deleted_at IS NOT NULL AS deleted FROM tenant_pu.receipts;
RESET keys_guard.bypass;
-- Counts, never rows, in the audit log.
SELECT action, target, detail FROM keys_guard.audit_log WHERE action = 'purge';
-- Idempotent: nothing left to do.
SELECT * FROM keys_guard.purge_now('tenant_pu.docs');
-- purge_now runs in the caller's transaction.
BEGIN;
SELECT keys_guard.set_context('pu', 'alice', 'req-pu-2');
DELETE FROM docs WHERE id = 7;
COMMIT;
BEGIN;
SELECT * FROM keys_guard.purge_now('tenant_pu.docs');
ROLLBACK;
SELECT rows_waiting FROM keys_guard.purge_status WHERE relation = 'tenant_pu.docs'::regclass;

-- Bad input.
SELECT * FROM keys_guard.purge_now('tenant_pu.nosuch');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.purge_now('public.acme_notes');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.purge_now(NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SET ROLE kg_app;
SELECT * FROM keys_guard.purge_now();
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.purge_status;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

--
-- Tenant lifecycle
--
SELECT id FROM keys_guard.create_tenant('gone');
CREATE TABLE tenant_gone.items (id int PRIMARY KEY);
BEGIN;
SELECT keys_guard.set_context('gone', 'bob');
INSERT INTO items SELECT generate_series(1, 5);
COMMIT;
-- Preview: tables and rows, nothing changed.
SELECT tenant, status, relation, rows FROM keys_guard.delete_tenant('gone', dry_run => true);
SELECT status FROM keys_guard.tenants WHERE id = 'gone';
-- Delete: access denied from now on, grace starts.
SELECT tenant, status, relation, rows,
       hard_delete_at - now() AS grace, hard_delete_at AS gone_deadline
  FROM keys_guard.delete_tenant('gone', grace => interval '90 days') \gset
SELECT :'tenant' AS tenant, :'status' AS status, :'relation' AS relation, :'rows' AS rows, :'grace' AS grace;
BEGIN;
SELECT keys_guard.set_context('gone', 'bob');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Idempotent: the same deadline, "already deleted".
SELECT tenant, status, hard_delete_at = :'gone_deadline' AS same_deadline
  FROM keys_guard.delete_tenant('gone');
-- Creating it again points to restore_tenant.
\set VERBOSITY terse
SELECT keys_guard.create_tenant('gone');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- Restore within the grace; idempotent.
SELECT id, status, deleted_at IS NULL AS live FROM keys_guard.restore_tenant('gone');
SELECT id, status FROM keys_guard.restore_tenant('gone');
BEGIN;
SELECT keys_guard.set_context('gone', 'bob');
SELECT count(*) FROM items;
COMMIT;
-- Bad input.
SELECT * FROM keys_guard.delete_tenant(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.delete_tenant('nosuch');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.delete_tenant('gone', grace => interval '-1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM keys_guard.restore_tenant('nosuch');
\echo :LAST_ERROR_SQLSTATE
SET ROLE kg_app;
SELECT * FROM keys_guard.delete_tenant('gone');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Past its grace a tenant cannot be restored.
SELECT tenant, status FROM keys_guard.delete_tenant('gone', grace => interval '0');
\set VERBOSITY terse
SELECT keys_guard.restore_tenant('gone');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
