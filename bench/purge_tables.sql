-- Fresh tables for one round of (a) of bench/purge.sh.  Run by a superuser
-- without a tenant context.  psql variables: rows, breakdown (true/false).
--
-- Physically identical tables of :rows rows (same rows in the same
-- order, same columns including the four soft-delete columns, same
-- indexes; grp = id % 100, so "grp < 50" is half the rows, spread over
-- every page):
--   pu_plain  unguarded: the single DELETE of the expired rows
--   pu_kg     pooled, guarded by protect_table (soft delete, grace 0):
--             purged by the background worker
--   pu_fk     the same, referenced by pu_fk_child (empty, ON DELETE
--             CASCADE): purged by the worker's statement path
--   pu_plain_fk  unguarded, referenced the same way by pu_plain_fk_child:
--             the single DELETE that pu_fk's purge compares with
--   pu_now    the same as pu_kg: purged by keys_guard.purge_now()
--   pu_batch, pu_batch_nolock  (breakdown) unguarded: the worker's batch
--             statement run by hand, with and without FOR UPDATE SKIP LOCKED
-- Every table has the index protect_table would add for the purge,
-- (hard_delete_at) WHERE deleted_at IS NOT NULL (protect_table finds it and
-- adds none).
-- No row is deleted here: bench/purge.sh soft-deletes each table's
-- grp < 50 rows just before measuring it.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

SELECT count(keys_guard.release_table(r))
  FROM unnest(ARRAY['public.pu_kg', 'public.pu_fk', 'public.pu_now']) AS r
 WHERE to_regclass(r) IS NOT NULL;
DROP TABLE IF EXISTS pu_kg, pu_fk_child, pu_fk, pu_plain_fk_child, pu_plain_fk, pu_now, pu_plain, pu_batch, pu_batch_nolock;

CREATE TABLE pu_plain (
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
CREATE INDEX pu_plain_tenant_id_idx ON pu_plain (tenant_id);
CREATE INDEX pu_plain_kg_purge ON pu_plain (hard_delete_at) WHERE deleted_at IS NOT NULL;
INSERT INTO pu_plain (id, tenant_id, grp, title, amount, created_at)
SELECT g, '1', g % 100, 'item ' || g, round((g * 37 % 100000) / 100.0, 2),
       timestamptz '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, :rows) AS g;

CREATE TABLE pu_kg (LIKE pu_plain INCLUDING ALL);
INSERT INTO pu_kg SELECT * FROM pu_plain ORDER BY id;
CREATE TABLE pu_fk (LIKE pu_plain INCLUDING ALL);
INSERT INTO pu_fk SELECT * FROM pu_plain ORDER BY id;
CREATE TABLE pu_fk_child (id bigint PRIMARY KEY, pu_fk_id bigint REFERENCES pu_fk ON DELETE CASCADE);
CREATE INDEX pu_fk_child_pu_fk_id_idx ON pu_fk_child (pu_fk_id);
CREATE TABLE pu_plain_fk (LIKE pu_plain INCLUDING ALL);
INSERT INTO pu_plain_fk SELECT * FROM pu_plain ORDER BY id;
CREATE TABLE pu_plain_fk_child (id bigint PRIMARY KEY, pu_plain_fk_id bigint REFERENCES pu_plain_fk ON DELETE CASCADE);
CREATE INDEX pu_plain_fk_child_pu_plain_fk_id_idx ON pu_plain_fk_child (pu_plain_fk_id);
CREATE TABLE pu_now (LIKE pu_plain INCLUDING ALL);
INSERT INTO pu_now SELECT * FROM pu_plain ORDER BY id;

SELECT count(*) FROM keys_guard.protect_table('public.pu_kg', tenant_column => 'tenant_id', grace => interval '0');
SELECT count(*) FROM keys_guard.protect_table('public.pu_fk', tenant_column => 'tenant_id', grace => interval '0');
SELECT count(*) FROM keys_guard.protect_table('public.pu_now', tenant_column => 'tenant_id', grace => interval '0');
GRANT SELECT, UPDATE, DELETE ON pu_kg, pu_fk, pu_now, pu_plain, pu_plain_fk TO bench_app;

\if :breakdown
CREATE TABLE pu_batch (LIKE pu_plain INCLUDING ALL);
INSERT INTO pu_batch SELECT * FROM pu_plain ORDER BY id;
CREATE TABLE pu_batch_nolock (LIKE pu_plain INCLUDING ALL);
INSERT INTO pu_batch_nolock SELECT * FROM pu_plain ORDER BY id;
GRANT SELECT, UPDATE, DELETE ON pu_batch, pu_batch_nolock TO bench_app;
VACUUM (FREEZE, ANALYZE) pu_batch, pu_batch_nolock;
\endif
VACUUM (FREEZE, ANALYZE) pu_kg, pu_now, pu_plain;
