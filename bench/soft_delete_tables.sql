-- Fresh tables for one round of bench/soft_delete.sh.  Run by a superuser
-- without a tenant context.  psql variables: rows (tables of (a)/(b)),
-- crows (tables of (c)), pooled (true/false: also the pooled pair),
-- extra (true/false: also the reference and diagnostic tables).
--
-- (a)/(b): physically identical tables of :rows rows (same rows, same
-- order, same columns including the four soft-delete columns, PK on id and
-- an index on grp, the predicate column; grp = id % 100, so
-- "grp < 50" matches half the rows, spread over every page):
--   tenant_1.sd_kg   in a tenant schema: guarded by keys_guard (soft delete)
--   tenant_1.sd_kg_b its twin, for the soft DELETE that runs beside (b)'s
--                    trigger
--   sd_plain         unguarded: the plain UPDATE
--   sd_trig          unguarded, with the hand-made BEFORE DELETE trigger
--   sd_pool          (pooled) pooled table guarded by protect_table, plus
--                    an index on tenant_id
--   sd_pool_plain    (pooled) its unguarded twin, same indexes
--   sd_pool_plain_idx (pooled, extra) that twin plus the partial index on
--                    hard_delete_at that keys_guard's purge uses
--   sd_trig_generic  (extra) unguarded, with the generic dynamic-SQL trigger
--   sd_plain_idx     (extra) unguarded, plus the partial index on
--                    hard_delete_at that keys_guard's purge uses, to split (a)
-- (c): tenant_1.sd1_kg and sd1_plain, :crows rows each, for single-row
-- deletes by primary key.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

-- The previous round's tables: guarded ones are released first (DROP of a
-- guarded table is refused).
SELECT count(keys_guard.release_table(r))
  FROM unnest(ARRAY['tenant_1.sd_kg', 'tenant_1.sd_kg_b', 'tenant_1.sd1_kg', 'public.sd_pool']) AS r
 WHERE to_regclass(r) IS NOT NULL;
DROP TABLE IF EXISTS tenant_1.sd_kg, tenant_1.sd_kg_b, tenant_1.sd1_kg, sd_pool, sd_plain, sd_trig,
                     sd_pool_plain, sd_pool_plain_idx, sd1_plain, sd_trig_generic, sd_plain_idx,
                     sd_plain_casc;

CREATE TABLE sd_plain (
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
CREATE INDEX sd_plain_grp_idx ON sd_plain (grp);
INSERT INTO sd_plain (id, tenant_id, grp, title, amount, created_at)
SELECT g, '1', g % 100, 'item ' || g, round((g * 37 % 100000) / 100.0, 2),
       timestamptz '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, :rows) AS g;

CREATE TABLE sd_trig (LIKE sd_plain INCLUDING ALL);
CREATE TRIGGER sd_trig_soft_delete BEFORE DELETE ON sd_trig
    FOR EACH ROW EXECUTE FUNCTION sd_trig_soft_delete();
INSERT INTO sd_trig SELECT * FROM sd_plain ORDER BY id;

-- Guarded by the event trigger as soon as it is created (the columns exist
-- already, so nothing is added); loaded under bypass, as a superuser's
-- maintenance would.
CREATE TABLE tenant_1.sd_kg (LIKE sd_plain INCLUDING ALL);
CREATE TABLE tenant_1.sd_kg_b (LIKE sd_plain INCLUDING ALL);
SET keys_guard.bypass = on;
INSERT INTO tenant_1.sd_kg SELECT * FROM sd_plain ORDER BY id;
INSERT INTO tenant_1.sd_kg_b SELECT * FROM sd_plain ORDER BY id;
RESET keys_guard.bypass;

\if :extra
CREATE TABLE sd_trig_generic (LIKE sd_plain INCLUDING ALL);
CREATE TRIGGER sd_trig_soft_delete BEFORE DELETE ON sd_trig_generic
    FOR EACH ROW EXECUTE FUNCTION sd_trig_soft_delete_generic();
INSERT INTO sd_trig_generic SELECT * FROM sd_plain ORDER BY id;
-- The unguarded twin with the index a hand-written purge job needs, as
-- keys_guard's purge has (sd_kg_kg_purge).
CREATE TABLE sd_plain_idx (LIKE sd_plain INCLUDING ALL);
CREATE INDEX sd_plain_idx_purge ON sd_plain_idx (hard_delete_at) WHERE deleted_at IS NOT NULL;
INSERT INTO sd_plain_idx SELECT * FROM sd_plain ORDER BY id;
GRANT SELECT, UPDATE, DELETE ON sd_trig_generic, sd_plain_idx TO bench_app;
\endif

\if :pooled
CREATE TABLE sd_pool_plain (LIKE sd_plain INCLUDING ALL);
CREATE INDEX sd_pool_plain_tenant_id_idx ON sd_pool_plain (tenant_id);
INSERT INTO sd_pool_plain SELECT * FROM sd_plain ORDER BY id;
CREATE TABLE sd_pool (LIKE sd_plain INCLUDING ALL);
CREATE INDEX sd_pool_tenant_id_idx ON sd_pool (tenant_id);
INSERT INTO sd_pool SELECT * FROM sd_plain ORDER BY id;
-- Guard after loading, as a migration on an existing table would.
SELECT count(*) FROM keys_guard.protect_table('public.sd_pool', tenant_column => 'tenant_id');
GRANT SELECT, UPDATE, DELETE ON sd_pool, sd_pool_plain TO bench_app;
\if :extra
-- The unguarded twin with the index a hand-written purge job needs, as
-- keys_guard's purge has (sd_pool_kg_purge).
CREATE TABLE sd_pool_plain_idx (LIKE sd_plain INCLUDING ALL);
CREATE INDEX sd_pool_plain_idx_tenant_id_idx ON sd_pool_plain_idx (tenant_id);
CREATE INDEX sd_pool_plain_idx_purge ON sd_pool_plain_idx (hard_delete_at) WHERE deleted_at IS NOT NULL;
INSERT INTO sd_pool_plain_idx SELECT * FROM sd_plain ORDER BY id;
GRANT SELECT, UPDATE, DELETE ON sd_pool_plain_idx TO bench_app;
\endif
\endif

CREATE TABLE sd1_plain (LIKE sd_plain INCLUDING ALL);
INSERT INTO sd1_plain SELECT * FROM sd_plain WHERE id <= :crows ORDER BY id;
INSERT INTO sd1_plain (id, tenant_id, grp, title, amount, created_at)
SELECT g, '1', g % 100, 'item ' || g, round((g * 37 % 100000) / 100.0, 2),
       timestamptz '2024-01-01' + g * interval '1 minute'
  FROM generate_series(:rows + 1, :crows) AS g;
CREATE TABLE tenant_1.sd1_kg (LIKE sd_plain INCLUDING ALL);
SET keys_guard.bypass = on;
INSERT INTO tenant_1.sd1_kg SELECT * FROM sd1_plain ORDER BY id;
RESET keys_guard.bypass;

GRANT SELECT, UPDATE, DELETE ON tenant_1.sd_kg, tenant_1.sd_kg_b, sd_plain, sd_trig, tenant_1.sd1_kg, sd1_plain
    TO bench_app;

VACUUM (FREEZE, ANALYZE) tenant_1.sd_kg, tenant_1.sd_kg_b, sd_plain, sd_trig, tenant_1.sd1_kg, sd1_plain;
\if :pooled
VACUUM (FREEZE, ANALYZE) sd_pool, sd_pool_plain;
\if :extra
VACUUM (FREEZE, ANALYZE) sd_pool_plain_idx;
\endif
\endif
\if :extra
VACUUM (FREEZE, ANALYZE) sd_trig_generic, sd_plain_idx;
\endif
