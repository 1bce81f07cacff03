-- Once per run of bench/purge.sh (issue 4: purge throughput and the
-- foreground latency while the worker purges): the extension, the
-- application role and tenant '1'.  Run by a superuser in a fresh database
-- of a server that preloads keys_guard.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

CREATE EXTENSION keys_guard;
CREATE EXTENSION pg_prewarm;

-- The application's login role, bench_app.
\ir roles.sql

SELECT id FROM keys_guard.create_tenant('1', 'bench tenant');
