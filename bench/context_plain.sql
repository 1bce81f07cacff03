-- Diagnostic (BENCH_BREAKDOWN=1): baseline of context_keys_guard.sql, a
-- transaction-local set_config() and no query.
\set tenant random(1, :tenants)
BEGIN;
SELECT set_config('app.tenant', :tenant, true);
COMMIT;
