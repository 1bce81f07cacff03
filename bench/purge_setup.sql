-- Once per run of bench/purge.sh (issue 4: purge throughput and the
-- foreground latency while the worker purges): the extension, the
-- application role and tenant '1'.  Run by a superuser in a fresh database
-- of a server that preloads keys_guard.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

CREATE EXTENSION keys_guard;
CREATE EXTENSION pg_prewarm;

-- The application's login role: not a superuser, a member of
-- keys_guard_gateway, as in bench/run.sh and bench/soft_delete.sh.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_app') THEN
        CREATE ROLE bench_app LOGIN;
    END IF;
END
$$;
GRANT keys_guard_gateway TO bench_app;

SELECT id FROM keys_guard.create_tenant('1', 'bench tenant');
