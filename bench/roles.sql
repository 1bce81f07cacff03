-- The benchmarks' application login roles, included by every set-up script
-- (\ir roles.sql).  Not superusers (superusers bypass row security),
-- members of keys_guard_gateway, as docs/contract.md §2 describes.  bench_pool is
-- the same API role in a deployment with pooled tables only, which turns
-- off the search_path change of set_context().  Needs keys_guard
-- installed in the database (for keys_guard_gateway).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_app') THEN
        CREATE ROLE bench_app LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_pool') THEN
        CREATE ROLE bench_pool LOGIN;
    END IF;
END
$$;
GRANT keys_guard_gateway TO bench_app, bench_pool;
ALTER ROLE bench_pool SET keys_guard.tenant_search_path = off;
