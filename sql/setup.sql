--
-- setup: CREATE EXTENSION installs keys_guard and its roles.  In a database
-- of its own, so that the install is a fresh one whatever ran before; the
-- other suites get the extension, the roles they use and the shared
-- tenants from sql/fixture.psql.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
SELECT current_database() AS regress_db \gset
CREATE DATABASE kg_setup;
\c kg_setup
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

\c :regress_db
DROP DATABASE kg_setup;
