-- Data for the tenant-count benchmark (bench/tenants.sh, docs/contract.md §14 "isolation
-- check cost with 10 000 tenants vs 10").  Run by a superuser, without a
-- tenant context, in a fresh database of a server that preloads keys_guard,
-- once per database: the databases differ only in the psql variables
--   tenants   tenants registered ('1' .. tenants)
--   tables    tenants 1 .. tables get a table tenant_<t>.invoices
--   measured  tenants 1 .. measured are the ones the comparison measures:
--             their rows are in public.pooled_invoices
--   rows      rows per tenant in the tenant tables and pooled_invoices
--   all_rows  1: also public.pooled_invoices_all, spread_rows rows of every
--             tenant (the reference that spreads transactions over all
--             tenants)
-- Tenants are created by bench/tenants.sh (bench/tenants_create.sql) before
-- this file runs, so that their creation is timed on its own.
--
-- Tenant t owns ids (t-1)*rows+1 .. t*rows in its table and in
-- pooled_invoices ((t-1)*spread_rows+1 .. t*spread_rows in
-- pooled_invoices_all), so a lookup of one of its ids finds exactly one row
-- only when the context (schema-per-tenant: the search_path) points at
-- tenant t.  Every table of a measured tenant is
-- built by the same statements in both databases, so its pages are the same.
\set ON_ERROR_STOP on

-- The application's login roles, bench_app and bench_pool (cluster-wide;
-- the second database's run finds them).
SET client_min_messages = warning;
\ir roles.sql
-- Every table created below (tenant tables included) is readable by both.
ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT SELECT ON TABLES TO bench_app, bench_pool;
RESET client_min_messages;

-- Loading guarded tables needs a way past the guards: bypass is the
-- superuser's maintenance switch (docs/contract.md §3).
SET keys_guard.bypass = on;

SELECT set_config('bench.tables', :'tables', false),
       set_config('bench.rows', :'rows', false) \gset

-- Schema-per-tenant: the same table in every tenant 1 .. tables, guarded by
-- keys_guard's event trigger as it is created (tenant isolation and soft
-- delete: four columns, policies, triggers and a registry row per table).
-- Committed every 50 tables: each creation takes a handful of locks.
\ir tenants_rows.sql
DO $$
DECLARE
    tables int := current_setting('bench.tables')::int;
    nrows int := current_setting('bench.rows')::int;
    t int;
BEGIN
    FOR t IN 1 .. tables LOOP
        EXECUTE format('CREATE TABLE %I.invoices (
                            id         bigint PRIMARY KEY,
                            number     text NOT NULL,
                            amount     numeric(12,2) NOT NULL,
                            status     text NOT NULL,
                            created_at timestamptz NOT NULL)', 'tenant_' || t);
        PERFORM pg_temp.bench_fill_invoices('tenant_' || t, t, nrows);
        IF t % 50 = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
END
$$;

-- Pooled: the measured tenants' rows, the same in every database.
CREATE TABLE pooled_invoices (
    id         bigint PRIMARY KEY,
    tenant_id  text NOT NULL,
    number     text NOT NULL,
    amount     numeric(12,2) NOT NULL,
    status     text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX pooled_invoices_tenant_id_idx ON pooled_invoices (tenant_id);
INSERT INTO pooled_invoices
SELECT (t - 1) * :rows + k,
       t::text,
       format('INV-%s-%s', t, k),
       round((k * 37 % 100000) / 100.0, 2),
       (ARRAY['draft', 'open', 'paid', 'void'])[1 + k % 4],
       timestamptz '2024-01-01' + k * interval '1 hour'
  FROM generate_series(1, :measured) AS t,
       generate_series(1, :rows) AS k
 ORDER BY 1;
SELECT relation FROM keys_guard.protect_table('public.pooled_invoices', tenant_column => 'tenant_id');
-- Its unguarded twin: bench/tenants.sh's control of a new connection's
-- first transaction (what the larger catalog costs PostgreSQL itself).
CREATE TABLE pooled_plain (LIKE pooled_invoices INCLUDING ALL);
INSERT INTO pooled_plain SELECT * FROM pooled_invoices ORDER BY id;

-- Pooled, every tenant (reference only: another table than the measured one).
\if :all_rows
CREATE TABLE pooled_invoices_all (
    id         bigint,
    tenant_id  text NOT NULL,
    number     text NOT NULL,
    amount     numeric(12,2) NOT NULL,
    status     text NOT NULL,
    created_at timestamptz NOT NULL
);
INSERT INTO pooled_invoices_all
SELECT (t - 1) * :spread_rows + k,
       t::text,
       format('INV-%s-%s', t, k),
       round((k * 37 % 100000) / 100.0, 2),
       (ARRAY['draft', 'open', 'paid', 'void'])[1 + k % 4],
       timestamptz '2024-01-01' + k * interval '1 hour'
  FROM generate_series(1, :tenants) AS t,
       generate_series(1, :spread_rows) AS k
 ORDER BY 1;
ALTER TABLE pooled_invoices_all ADD PRIMARY KEY (id);
CREATE INDEX pooled_invoices_all_tenant_id_idx ON pooled_invoices_all (tenant_id);
SELECT relation FROM keys_guard.protect_table('public.pooled_invoices_all', tenant_column => 'tenant_id');
\endif

RESET keys_guard.bypass;
