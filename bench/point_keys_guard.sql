-- Point lookup on the pooled guarded table `invoices`, as an application
-- behind a transaction-pooling PgBouncer does it: assert the request
-- context for the transaction, then run the query without naming a tenant.
-- Variables from bench/run.sh: -D tenants=N -D rows=M.
\set tenant random(1, :tenants)
\set id (:tenant - 1) * :rows + random(1, :rows)
BEGIN;
SELECT keys_guard.set_context(:tenant, 'bench');
SELECT id, number, amount, status FROM invoices WHERE id = :id;
COMMIT;
