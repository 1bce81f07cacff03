--
-- setup: install keys_guard and the roles and fixtures the other suites use
--
\set SHOW_CONTEXT never
-- Roles are cluster-wide: drop what an earlier run left behind.
SET client_min_messages = warning;
DROP ROLE IF EXISTS kg_app, kg_migrator, kg_nobody;
RESET client_min_messages;
CREATE EXTENSION keys_guard;

-- The install script creates both roles, NOLOGIN.
SELECT rolname, rolcanlogin FROM pg_roles
 WHERE rolname IN ('keys_guard_admin', 'keys_guard_gateway') ORDER BY 1;

-- Not relocatable, fixed schema, the default_version of keys_guard.control.
SELECT extname, extversion, extrelocatable, n.nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'keys_guard';

-- A second CREATE EXTENSION is the usual error, nothing more.
\set VERBOSITY terse
CREATE EXTENSION keys_guard;
\echo :LAST_ERROR_SQLSTATE
CREATE EXTENSION IF NOT EXISTS keys_guard;
\set VERBOSITY default

-- Roles for the suites: an API server login (gateway), a migration role
-- (admin), and a role with no keys_guard rights at all.
CREATE ROLE kg_app LOGIN IN ROLE keys_guard_gateway;
CREATE ROLE kg_migrator LOGIN IN ROLE keys_guard_admin;
CREATE ROLE kg_nobody LOGIN;
GRANT CREATE ON SCHEMA public TO kg_migrator;

-- A helper that waits (polls, never a fixed sleep) until the background
-- worker has written n audit rows matching a filter, up to 10 seconds.
CREATE FUNCTION public.wait_for_audit(filter text, n int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    got bigint;
    deadline timestamptz := clock_timestamp() + interval '10 seconds';
BEGIN
    LOOP
        EXECUTE 'SELECT count(*) FROM keys_guard.audit_log WHERE ' || filter INTO got;
        EXIT WHEN got >= n OR clock_timestamp() > deadline;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN got;
END
$$;
