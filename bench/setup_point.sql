-- Data for the point-lookup benchmark (bench/run.sh, docs/contract.md §14 row 1).
-- Run by a superuser, without a tenant context, in a fresh database of a
-- server that preloads keys_guard.  psql variables: tenants, rows.
--
-- Three physically identical tables (same rows, same order, same indexes):
--   invoices        pooled table guarded by keys_guard.protect_table()
--   invoices_plain  no row security; the query filters on tenant_id by hand
--   invoices_rls    FORCE'd RLS policy on current_setting('app.tenant')
\set ON_ERROR_STOP on

CREATE EXTENSION keys_guard;

-- The application's login roles, bench_app and bench_pool.
\ir roles.sql

-- Tenant ids '1' .. 'N' (numbers are valid tenant ids, and pgbench
-- variables are numbers).
SELECT count(*) AS tenants_created
  FROM generate_series(1, :tenants) AS g,
       LATERAL keys_guard.create_tenant(g::text, 'bench tenant ' || g);

CREATE TABLE invoices (
    id         bigint PRIMARY KEY,
    tenant_id  text NOT NULL,
    number     text NOT NULL,
    amount     numeric(12,2) NOT NULL,
    status     text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX invoices_tenant_id_idx ON invoices (tenant_id);
CREATE TABLE invoices_plain (LIKE invoices INCLUDING ALL);
CREATE TABLE invoices_rls (LIKE invoices INCLUDING ALL);

-- Tenant t owns ids (t-1)*rows+1 .. t*rows; the pgbench scripts pick ids
-- of the tenant they set.
INSERT INTO invoices
SELECT (t - 1) * :rows + k,
       t::text,
       format('INV-%s-%s', t, k),
       round((k * 37 % 100000) / 100.0, 2),
       (ARRAY['draft', 'open', 'paid', 'void'])[1 + k % 4],
       timestamptz '2024-01-01' + k * interval '1 hour'
  FROM generate_series(1, :tenants) AS t,
       generate_series(1, :rows) AS k
 ORDER BY 1;
INSERT INTO invoices_plain SELECT * FROM invoices ORDER BY id;
INSERT INTO invoices_rls SELECT * FROM invoices ORDER BY id;

-- Guard after loading, as a migration on an existing table would.
SELECT relation, kind, tenant_column, soft_delete, class
  FROM keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id');

ALTER TABLE invoices_rls ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invoices_rls
    USING (tenant_id = current_setting('app.tenant'));

GRANT SELECT ON invoices, invoices_plain, invoices_rls TO bench_app, bench_pool;

VACUUM (FREEZE, ANALYZE) invoices, invoices_plain, invoices_rls;
