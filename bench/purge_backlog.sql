-- The backlog of (b) of bench/purge.sh, rebuilt before every measured
-- pgbench run.  Run by a superuser while keys_guard's worker does not serve
-- the database.  psql variable: backlog.
--
-- pu_backlog: a pooled table guarded by protect_table (soft delete, grace
-- 0) with :backlog rows, all soft-deleted by one DELETE under tenant 1's
-- context, hence all expired from the next transaction on.  The pgbench
-- tables are vacuumed and pgbench_history emptied, so every run starts
-- from the same state.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

SELECT count(keys_guard.release_table('public.pu_backlog'))
 WHERE to_regclass('public.pu_backlog') IS NOT NULL;
DROP TABLE IF EXISTS pu_backlog;

CREATE TABLE pu_backlog (
    id                bigint PRIMARY KEY,
    tenant_id         text NOT NULL,
    grp               int NOT NULL,
    title             text NOT NULL,
    amount            numeric(12,2) NOT NULL,
    created_at        timestamptz NOT NULL,
    deleted_at        timestamptz,
    hard_delete_at    timestamptz,
    deleted_by        text,
    delete_request_id text
);
CREATE INDEX pu_backlog_tenant_id_idx ON pu_backlog (tenant_id);
INSERT INTO pu_backlog (id, tenant_id, grp, title, amount, created_at)
SELECT g, '1', g % 100, 'item ' || g, round((g * 37 % 100000) / 100.0, 2),
       timestamptz '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, :backlog) AS g;
SELECT count(*) FROM keys_guard.protect_table('public.pu_backlog', tenant_column => 'tenant_id', grace => interval '0');

-- The soft delete, as the application would do it.
BEGIN;
SELECT count(*) FROM keys_guard.set_context('1', 'bench', 'backlog');
DELETE FROM pu_backlog;
COMMIT;

VACUUM (FREEZE, ANALYZE) pu_backlog;
TRUNCATE pgbench_history;
VACUUM (ANALYZE) pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;
