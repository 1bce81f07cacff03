--
-- context: set_context, admin_context, clear_context and the current_*
-- functions (docs/contract.md §3)
--
\set SHOW_CONTEXT never
\i sql/fixture.psql

-- No context: NULL, never an empty string.
SELECT keys_guard.current_tenant() IS NULL AS tenant_null,
       keys_guard.current_actor() IS NULL AS actor_null,
       keys_guard.current_request_id() IS NULL AS request_null;

-- Transaction-scoped by default; the tenant schema goes first on search_path.
SHOW search_path;
BEGIN;
SELECT keys_guard.set_context(tenant => 'acme', actor => 'user_456', request_id => 'req-1');
SELECT keys_guard.current_tenant(), keys_guard.current_actor(), keys_guard.current_request_id();
SHOW search_path;
-- Switching tenants replaces the tenant schema rather than stacking it.
SELECT keys_guard.set_context('globex', 'user_456');
SHOW search_path;
-- A missing request id is generated: a UUID.
SELECT keys_guard.current_request_id() ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS uuid_request_id;
COMMIT;
SELECT keys_guard.current_tenant() IS NULL AS gone_after_commit;
SHOW search_path;
-- The path is built on the search_path in force at each call: another
-- base path, another path for the same tenant.
BEGIN;
SET LOCAL search_path = ctx_base_a, public;
SELECT keys_guard.set_context('acme', 'user_456');
SHOW search_path;
COMMIT;
BEGIN;
SET LOCAL search_path = ctx_base_b, public;
SELECT keys_guard.set_context('acme', 'user_456');
SHOW search_path;
COMMIT;

-- is_local => true (the default) in a transaction block: no warning, gone
-- at COMMIT.
BEGIN;
SELECT keys_guard.set_context('acme', 'user_1', is_local => true);
SELECT keys_guard.current_tenant();
COMMIT;
SELECT keys_guard.current_tenant() IS NULL AS gone_after_commit;

-- A session-wide context (is_local => false) outlives the transaction, and
-- behind a transaction-pooling proxy the next client on the same server
-- connection would inherit it.  So it is refused (55000, the hint names
-- keys_guard.allow_session_context) unless that setting is on for the role:
-- superusers, gateways and admin_context alike.  A refused call changes
-- nothing.
SHOW keys_guard.allow_session_context;
SELECT keys_guard.set_context('acme', 'user_1', 'req-s', is_local => false);
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT keys_guard.set_context('acme', 'user_1', is_local => false);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET ROLE kg_app;
SELECT keys_guard.set_context('acme', 'user_1', is_local => false);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE kg_migrator;
SELECT keys_guard.admin_context('ops_jane', 'monthly report', is_local => false);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT keys_guard.current_tenant() IS NULL AS no_tenant,
       keys_guard.current_actor() IS NULL AS no_actor;

-- Only a superuser turns it on.  A role cannot for itself: not with SET,
-- set_config(), ALTER ROLE ... SET or a function's SET clause ...
SET ROLE kg_app;
SET keys_guard.allow_session_context = on;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('keys_guard.allow_session_context', 'on', false);
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE kg_app SET keys_guard.allow_session_context = on;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE kg_migrator;
CREATE FUNCTION public.kg_session_claim() RETURNS void LANGUAGE sql
    SECURITY DEFINER SET keys_guard.allow_session_context = on
    AS $$ SELECT keys_guard.set_context('acme', 'user_1', is_local => false) $$;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- ... not even when granted SET on the parameter ...
GRANT SET ON PARAMETER keys_guard.allow_session_context TO kg_app;
SET ROLE kg_app;
SET keys_guard.allow_session_context = on;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('keys_guard.allow_session_context', 'on', true);
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE kg_app SET keys_guard.allow_session_context = on;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE SET ON PARAMETER keys_guard.allow_session_context FROM kg_app;
-- ... so nothing was stored and nothing changed.
SELECT count(*) AS stored FROM pg_db_role_setting
 WHERE array_to_string(setconfig, ',') LIKE '%allow_session_context%';
SHOW keys_guard.allow_session_context;

-- A superuser may turn it on in its own session ...
SET keys_guard.allow_session_context = on;
SELECT keys_guard.set_context('acme', 'user_1', 'req-su', is_local => false);
SELECT keys_guard.current_tenant(), keys_guard.current_request_id();
SELECT keys_guard.clear_context();
RESET keys_guard.allow_session_context;

-- ... and for a role (direct or session-pooled connections), which takes
-- effect at the role's next connection.
DROP ROLE IF EXISTS kg_session;
CREATE ROLE kg_session LOGIN IN ROLE keys_guard_gateway;
\getenv kg_password PGPASSWORD
\if :{?kg_password}
ALTER ROLE kg_session PASSWORD :'kg_password';
\endif
ALTER ROLE kg_session SET keys_guard.allow_session_context = on;
SELECT current_user AS kg_superuser \gset
\c - kg_session
SHOW keys_guard.allow_session_context;
-- Rolled back with the transaction too.
BEGIN;
SELECT keys_guard.set_context('acme', 'user_1', is_local => false);
ROLLBACK;
SELECT keys_guard.current_tenant() IS NULL AS gone_after_rollback;
-- is_local => false lasts for the session, until clear_context().
SELECT keys_guard.set_context('acme', 'user_1', 'req-s', is_local => false);
SELECT keys_guard.current_tenant(), keys_guard.current_request_id();
SHOW search_path;
SELECT keys_guard.clear_context();
SELECT keys_guard.current_tenant() IS NULL AS cleared, keys_guard.current_actor() IS NULL AS actor_cleared;
SHOW search_path;
-- Scope as for a setting: a session-wide context set in a transaction
-- outlives its commit, even when a transaction-scoped one replaced it
-- later in the transaction ...
BEGIN;
SELECT keys_guard.set_context('acme', 'session_actor', is_local => false);
SELECT keys_guard.set_context('acme', 'local_actor');
SELECT keys_guard.current_actor();
COMMIT;
SELECT keys_guard.current_actor() AS after_commit;
-- ... a ROLLBACK TO takes back what its savepoint set, a released
-- savepoint's session-wide context is the transaction's, and a
-- transaction-scoped context ends with the transaction.
BEGIN;
SELECT keys_guard.set_context('acme', 'local_actor');
SAVEPOINT s1;
SELECT keys_guard.set_context('acme', 'rolled_back', is_local => false);
ROLLBACK TO s1;
SELECT keys_guard.current_actor() AS after_rollback_to;
SAVEPOINT s2;
SELECT keys_guard.set_context('acme', 'released', is_local => false);
RELEASE s2;
SELECT keys_guard.set_context('acme', 'local_again');
COMMIT;
SELECT keys_guard.current_actor() AS after_release_and_commit;
-- A failed transaction and an exception block take back theirs.
BEGIN;
SELECT keys_guard.set_context('acme', 'doomed', is_local => false);
SELECT 1 / 0;
ROLLBACK;
DO $$
BEGIN
    PERFORM keys_guard.set_context('acme', 'in_block', is_local => false);
    RAISE EXCEPTION 'undone';
EXCEPTION WHEN raise_exception THEN
    NULL;
END
$$;
SELECT keys_guard.current_actor() AS after_failures;
-- RESET ALL ends the context like a SET: a rollback brings it back.
BEGIN;
RESET ALL;
SELECT keys_guard.current_tenant() IS NULL AS reset;
ROLLBACK;
SELECT keys_guard.current_actor() AS after_reset_rolled_back;
SELECT keys_guard.clear_context();
-- A session-mode pooler's DISCARD ALL (or RESET ALL) ends a session
-- context; the role's setting stays.
SELECT keys_guard.set_context('acme', 'user_1', is_local => false);
SHOW keys_guard.tenant;
DISCARD ALL;
SELECT keys_guard.current_tenant() IS NULL AS discarded;
SHOW keys_guard.tenant;
SHOW keys_guard.allow_session_context;
\c - :kg_superuser
DROP ROLE kg_session;

-- is_local outside a transaction block warns: it lasts one statement.
SELECT keys_guard.set_context('acme', 'user_1');
SELECT keys_guard.current_tenant() IS NULL AS already_gone;

-- Bad input: a clear error, nothing changed.
SELECT keys_guard.set_context(NULL, 'user_1');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context('acme', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context('acme', 'user_1', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context('', 'user_1');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context('acme', '');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context('acme', 'user_1', '');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context('nosuchtenant', 'user_1');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context('acme''; SET ROLE postgres; --', 'user_1');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context(repeat('a', 10000), 'user_1');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context('acme', repeat('u', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context('acme', E'user\nLOG:  forged line');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.current_tenant() IS NULL AS unchanged;

-- Nobody claims a tenant through the settings: not a superuser ...
SET keys_guard.tenant = 'acme';
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('keys_guard.tenant', 'acme', false);
\echo :LAST_ERROR_SQLSTATE
SET keys_guard.admin_reason = 'because';
\echo :LAST_ERROR_SQLSTATE
-- ... not through a function's SET clause ...
CREATE FUNCTION public.claim() RETURNS text LANGUAGE sql
    SET keys_guard.tenant = 'acme' AS 'SELECT keys_guard.current_tenant()';
\echo :LAST_ERROR_SQLSTATE
-- ... not a plain role ...
SET ROLE kg_nobody;
SET keys_guard.tenant = 'acme';
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('keys_guard.actor', 'someone', true);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context('acme', 'user_1');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.admin_context('me', 'curiosity');
\echo :LAST_ERROR_SQLSTATE
-- ... though anyone may give a context up.
SELECT keys_guard.clear_context();
RESET ROLE;
-- Clearing (RESET) is always allowed.
RESET keys_guard.tenant;
SELECT keys_guard.current_tenant() IS NULL AS still_none;
-- keys_guard.context carries the context to parallel workers; nothing but
-- keys_guard writes it, not even to clear it, which would not end the
-- context (clear_context() does).
SET keys_guard.context = '';
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('keys_guard.context', 'acme', true);
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT keys_guard.set_context('acme', 'user_1');
RESET keys_guard.context;
SELECT keys_guard.current_tenant() AS unchanged_by_reset;
COMMIT;

-- The gateway sets contexts but cannot act as an admin.
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('acme', 'user_456');
SELECT keys_guard.current_tenant();
COMMIT;
SELECT keys_guard.admin_context('user_456', 'support ticket');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- admin_context: attributed, with a reason; no current tenant.
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.admin_context(actor => 'ops_jane', reason => 'data migration 2026-11');
SELECT keys_guard.current_tenant() IS NULL AS no_tenant, keys_guard.current_actor();
SHOW keys_guard.admin_reason;
-- set_context ends the admin context.
SELECT keys_guard.set_context('acme', 'ops_jane');
SHOW keys_guard.admin_reason;
COMMIT;
SELECT keys_guard.admin_context('ops_jane', '');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.admin_context('ops_jane', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.admin_context('', 'reason');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.admin_context('ops_jane', repeat('r', 501));
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- keys_guard.bypass is superuser-only.
SET ROLE kg_app;
SET keys_guard.bypass = on;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- A context cannot be set for a tenant that is pending deletion.
SELECT DISTINCT status FROM keys_guard.delete_tenant('initech');
SELECT keys_guard.set_context('initech', 'user_1');
\echo :LAST_ERROR_SQLSTATE
SELECT status FROM keys_guard.restore_tenant('initech');

-- keys_guard.tenant_search_path = off leaves search_path alone (pooled-only
-- deployments: a changing search_path makes PostgreSQL replan cached
-- statements).  Superuser-only.
SET ROLE kg_app;
SET keys_guard.tenant_search_path = off;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET keys_guard.tenant_search_path = off;
BEGIN;
SELECT keys_guard.set_context('acme', 'user_1');
SHOW search_path;
SELECT keys_guard.current_tenant();
COMMIT;
RESET keys_guard.tenant_search_path;

-- A tenant schema that holds nothing is left off search_path when the
-- context is set: it would change no name's resolution, and any change of
-- search_path makes PostgreSQL replan every cached statement (so a
-- pooled-only deployment never pays for it).  current_setting() shows the
-- path queries resolve in; the first utility statement of the context
-- (SHOW, CREATE, ...) puts the schema first, as documented.
SELECT id FROM keys_guard.create_tenant('ctxempty');
CREATE FUNCTION ctx_path() RETURNS text LANGUAGE sql AS $$ SELECT current_setting('search_path') $$;
CREATE FUNCTION ctx_schema_of(text) RETURNS text LANGUAGE sql
AS $$ SELECT relnamespace::regnamespace::text FROM pg_class WHERE relname = $1 $$;
BEGIN;
SELECT keys_guard.set_context('ctxempty', 'user_1');
SELECT ctx_path() AS path_while_empty;
SHOW search_path;
SELECT ctx_path() AS path_after_show;
COMMIT;
SELECT ctx_path() AS path_after_commit;
-- Undone with the savepoint it was put in place under, and put back by
-- the next utility statement.
BEGIN;
SELECT keys_guard.set_context('ctxempty', 'user_1');
SAVEPOINT s1;
CREATE TEMP TABLE ctx_scratch (x int);
SELECT ctx_path() AS path_after_create;
ROLLBACK TO s1;
SELECT ctx_path() AS path_after_rollback_to;
CREATE TEMP TABLE ctx_scratch (x int);
SELECT ctx_path() AS path_after_second_create;
COMMIT;
SELECT ctx_path() AS path_after_commit;
-- A function's own SET search_path is left alone: its CREATE goes where
-- its path says (public, which a tenant context refuses: 42501).
CREATE FUNCTION ctx_make_table() RETURNS text LANGUAGE plpgsql SET search_path = public
AS $$ BEGIN CREATE TABLE ctx_fn_made (id int); RETURN ctx_schema_of('ctx_fn_made'); END $$;
BEGIN;
SELECT keys_guard.set_context('ctxempty', 'user_1');
SELECT ctx_make_table();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- So is the caller's own SET LOCAL search_path after the context.
BEGIN;
SELECT keys_guard.set_context('ctxempty', 'user_1');
SET LOCAL search_path = public;
SHOW search_path;
ROLLBACK;
-- CREATE without a schema lands in the tenant's schema, guarded.
BEGIN;
SELECT keys_guard.set_context('ctxempty', 'user_1');
CREATE TABLE ctx_notes (id int PRIMARY KEY, body text);
SELECT ctx_schema_of('ctx_notes');
COMMIT;
SELECT count(*) AS guarded FROM keys_guard.guarded_tables WHERE relation = 'tenant_ctxempty.ctx_notes'::regclass;
-- Now that it holds a table, the schema goes first at once, in this
-- session and in a new one.
BEGIN;
SELECT keys_guard.set_context('ctxempty', 'user_1');
SELECT ctx_path() AS path_with_a_table;
COMMIT;
\c
BEGIN;
SELECT keys_guard.set_context('ctxempty', 'user_1');
SELECT ctx_path() AS path_with_a_table_new_session;
-- Any kind of object counts, not only tables.
SELECT count(*) FROM keys_guard.release_table('tenant_ctxempty.ctx_notes');
DROP TABLE tenant_ctxempty.ctx_notes;
CREATE FUNCTION tenant_ctxempty.ctx_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';
COMMIT;
BEGIN;
SELECT keys_guard.set_context('ctxempty', 'user_1');
SELECT ctx_path() AS path_with_a_function;
COMMIT;
DROP FUNCTION tenant_ctxempty.ctx_fn();
BEGIN;
SELECT keys_guard.set_context('ctxempty', 'user_1');
SELECT ctx_path() AS path_empty_again;
COMMIT;
DROP FUNCTION ctx_make_table(), ctx_path(), ctx_schema_of(text);
