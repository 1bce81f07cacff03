--
-- purge: purge_now, purge_status and the tenant lifecycle (docs/contract.md §9).
-- The worker of this test cluster sleeps (keys_guard.purge_naptime = 3600);
-- the TAP suites test the worker itself.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
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
-- Counts, never rows, in the audit log, and the requests that deleted the rows.
SELECT action, target, detail FROM keys_guard.audit_log
 WHERE action = 'purge' AND target LIKE 'tenant\_pu.%';
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

-- Two ways to delete (src/purge.c): a table that nothing references and
-- that has no DELETE trigger or rule of its own is purged directly; every
-- other table through a DELETE statement, so that its triggers and rules
-- see each purged row as they would see any DELETE.
CREATE TABLE public.pu_purge_log (tbl text, id int, how text);
CREATE TABLE tenant_pu.plain (id int PRIMARY KEY, body text);
CREATE TABLE tenant_pu.trig (id int PRIMARY KEY, body text);
CREATE TABLE tenant_pu.ruled (id int PRIMARY KEY, body text);
CREATE FUNCTION tenant_pu.log_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pu_purge_log
    VALUES (TG_TABLE_NAME, CASE WHEN TG_LEVEL = 'ROW' THEN OLD.id END, lower(TG_LEVEL) || ' trigger');
    RETURN NULL;
END
$$;
CREATE TRIGGER log_row AFTER DELETE ON tenant_pu.trig
    FOR EACH ROW EXECUTE FUNCTION tenant_pu.log_delete();
CREATE TRIGGER log_statement AFTER DELETE ON tenant_pu.trig
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_pu.log_delete();
CREATE RULE log_delete AS ON DELETE TO tenant_pu.ruled
    DO ALSO INSERT INTO public.pu_purge_log VALUES ('ruled', OLD.id, 'rule');
SELECT t, r, p.grace
  FROM unnest(ARRAY['tenant_pu.plain', 'tenant_pu.trig', 'tenant_pu.ruled']) t,
       LATERAL keys_guard.release_table(t) r,
       LATERAL keys_guard.protect_table(t, grace => interval '0') p;
BEGIN;
SELECT keys_guard.set_context('pu', 'alice', 'req-pu-3');
INSERT INTO plain SELECT g, 'p' || g FROM generate_series(1, 3) g;
INSERT INTO trig SELECT g, 't' || g FROM generate_series(1, 3) g;
INSERT INTO ruled SELECT g, 'r' || g FROM generate_series(1, 3) g;
DELETE FROM plain WHERE id <= 2;
DELETE FROM trig WHERE id <= 2;
DELETE FROM ruled WHERE id <= 2;
COMMIT;
-- The rule also fires with the soft delete (which is a DELETE to the
-- client); the purge is what this test looks at.
TRUNCATE public.pu_purge_log;
SELECT relation, purged, skipped
  FROM unnest(ARRAY['tenant_pu.plain', 'tenant_pu.trig', 'tenant_pu.ruled']) t,
       keys_guard.purge_now(t);
SET keys_guard.bypass = on;
-- Each table keeps only row 3; the trigger and the rule saw rows 1 and 2.
SELECT 'plain' AS tbl, array_agg(id ORDER BY id) AS ids FROM tenant_pu.plain
UNION ALL SELECT 'trig', array_agg(id ORDER BY id) FROM tenant_pu.trig
UNION ALL SELECT 'ruled', array_agg(id ORDER BY id) FROM tenant_pu.ruled;
SELECT tbl, id, how FROM public.pu_purge_log ORDER BY tbl, how, id;
RESET keys_guard.bypass;

-- A table that publishes deletes needs a replica identity to be purged, as
-- it does for any DELETE (55000); nothing is purged until it has one.
CREATE TABLE tenant_pu.nokey (id int NOT NULL, body text);
SELECT keys_guard.release_table('tenant_pu.nokey');
SELECT grace FROM keys_guard.protect_table('tenant_pu.nokey', grace => interval '0');
SET client_min_messages = error;
CREATE PUBLICATION pu_deletes FOR TABLE tenant_pu.nokey WITH (publish = 'delete');
RESET client_min_messages;
BEGIN;
SELECT keys_guard.set_context('pu', 'alice', 'req-pu-4');
INSERT INTO nokey VALUES (1, 'one'), (2, 'two');
DELETE FROM nokey WHERE id = 1;
COMMIT;
SELECT * FROM keys_guard.purge_now('tenant_pu.nokey');
\echo :LAST_ERROR_SQLSTATE
SELECT rows_waiting, rows_purged FROM keys_guard.purge_status WHERE relation = 'tenant_pu.nokey'::regclass;
ALTER TABLE tenant_pu.nokey REPLICA IDENTITY FULL;
SELECT * FROM keys_guard.purge_now('tenant_pu.nokey');
DROP PUBLICATION pu_deletes;
SELECT count(keys_guard.release_table(t))
  FROM unnest(ARRAY['tenant_pu.plain', 'tenant_pu.trig', 'tenant_pu.ruled', 'tenant_pu.nokey']) t;
DROP TABLE public.pu_purge_log, tenant_pu.plain, tenant_pu.trig, tenant_pu.ruled, tenant_pu.nokey;
DROP FUNCTION tenant_pu.log_delete();

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
