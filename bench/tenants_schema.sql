-- bench/tenants.sh, schema per tenant: a point lookup in the tenant's own
-- table tenant_<t>.invoices, named without a schema, as schema-per-tenant
-- applications do; the context puts the tenant's schema first on
-- search_path (run as bench_app).  Variables: -D tenants=N (tenants 1 .. N
-- are picked at random) -D rows=M.  \gset fails the transaction (and the
-- run) unless exactly one row comes back, so every lookup is checked: the
-- id exists only in tenant t's table.
\set tenant random(1, :tenants)
\set id (:tenant - 1) * :rows + random(1, :rows)
BEGIN;
SELECT keys_guard.set_context(:tenant, 'bench');
SELECT id, number, amount, status FROM invoices WHERE id = :id \gset got_
COMMIT;
