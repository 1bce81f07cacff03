-- Diagnostic (BENCH_BREAKDOWN=1): the cost of keys_guard.set_context() on
-- its own, in a transaction that runs no query.
\set tenant random(1, :tenants)
BEGIN;
SELECT keys_guard.set_context(:tenant, 'bench');
COMMIT;
