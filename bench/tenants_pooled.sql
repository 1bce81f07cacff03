-- bench/tenants.sh, pooled: a point lookup on public.pooled_invoices, guarded
-- by protect_table (row filter tenant_id = current tenant), run as
-- bench_pool (keys_guard.tenant_search_path = off).  Variables: -D
-- tenants=N -D rows=M.  \gset fails the transaction (and the run) unless
-- exactly one row comes back.
\set tenant random(1, :tenants)
\set id (:tenant - 1) * :rows + random(1, :rows)
BEGIN;
SELECT keys_guard.set_context(:tenant, 'bench');
SELECT id, number, amount, status FROM pooled_invoices WHERE id = :id \gset got_
COMMIT;
