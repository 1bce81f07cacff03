-- context.sql: the request context (docs/contract.md §3, §13).
--
--   * only members of keys_guard_gateway / keys_guard_admin (and superusers)
--     set a context; nobody claims a tenant through the settings directly:
--     SET, SET LOCAL, set_config(), a function's SET clause, ALTER ROLE /
--     ALTER DATABASE ... SET -- 42501, for a plain role, a gateway role and
--     a superuser alike;
--   * a tenant must exist, be a valid id and be non-empty; an actor must be
--     non-empty: 22023, NULL 22004; a refused call changes nothing;
--   * current_tenant() / current_actor() / current_request_id() are NULL
--     (never '') without a context; a missing request id is generated;
--   * a context set in a rolled-back (sub)transaction is gone, search_path
--     included;
--   * admin_context() is for keys_guard_admin members and sees every tenant;
--   * keys_guard.bypass is a superuser-only setting.
--
-- What one pgTAP transaction cannot show, and is left to the pg_regress and
-- TAP suites: the difference between is_local => true (the default; gone at
-- COMMIT) and is_local => false (kept for the session).  Inside a single
-- transaction PostgreSQL treats SET LOCAL and SET alike: both survive RELEASE
-- SAVEPOINT and the end of a plpgsql exception block, both are undone by
-- ROLLBACK TO SAVEPOINT, and a function's SET clause restores only the
-- settings it names itself (which keys_guard.tenant cannot be).  Likewise the
-- WARNING for is_local outside a transaction block and "-c
-- keys_guard.tenant=..." connection options need their own sessions.
BEGIN;
SELECT plan(75);

-- The per-request functions keep PostgreSQL's default EXECUTE privilege
-- (no ACL to look up at every call) and check their callers themselves.
SELECT is((SELECT count(*)::int FROM pg_proc
            WHERE oid IN ('keys_guard.set_context(text, text, text, boolean)'::regprocedure,
                          'keys_guard.use_api_key(text)'::regprocedure,
                          'keys_guard.set_context_from_token(text)'::regprocedure)
              AND proacl IS NULL),
          3, 'set_context(), use_api_key() and set_context_from_token() have the default ACL');

CREATE ROLE kg_ctx_plain NOLOGIN;
CREATE ROLE kg_ctx_exec NOLOGIN;            -- an explicit EXECUTE grant, but no membership
CREATE ROLE kg_ctx_gw NOLOGIN;
GRANT keys_guard_gateway TO kg_ctx_gw;
CREATE ROLE kg_ctx_admin NOLOGIN;
GRANT keys_guard_admin TO kg_ctx_admin;
GRANT EXECUTE ON FUNCTION keys_guard.set_context(text, text, text, boolean) TO kg_ctx_exec;

SELECT id FROM keys_guard.create_tenant('ctx_a') \g /dev/null
SELECT id FROM keys_guard.create_tenant('ctx_b') \g /dev/null
CREATE TABLE tenant_ctx_a.t (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE tenant_ctx_b.t (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE public.kg_ctx_pool (id serial PRIMARY KEY, tenant_id text, v text NOT NULL);
INSERT INTO public.kg_ctx_pool (tenant_id, v) VALUES ('ctx_a', 'pa'), ('ctx_b', 'pb');
SELECT relation FROM keys_guard.protect_table('public.kg_ctx_pool', tenant_column => 'tenant_id') \g /dev/null
GRANT SELECT ON tenant_ctx_a.t, tenant_ctx_b.t, public.kg_ctx_pool
    TO kg_ctx_plain, kg_ctx_gw, kg_ctx_admin;
CREATE TABLE public.kg_ctx_victim (id int);

-- A function owned by the plain role, for ALTER FUNCTION ... SET.
CREATE FUNCTION public.kg_ctx_probe() RETURNS text
    LANGUAGE sql AS $$ SELECT keys_guard.current_tenant() $$;
ALTER FUNCTION public.kg_ctx_probe() OWNER TO kg_ctx_plain;

DO $$ BEGIN PERFORM keys_guard.set_context('ctx_a', 'seed'); END $$;
INSERT INTO tenant_ctx_a.t VALUES (1, 'a1');
DO $$ BEGIN PERFORM keys_guard.set_context('ctx_b', 'seed'); END $$;
INSERT INTO tenant_ctx_b.t VALUES (1, 'b1');
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;

--
-- No context: the accessors return NULL, never ''.
--
SET LOCAL ROLE kg_ctx_gw;
SELECT is(keys_guard.current_tenant(), NULL, 'no context: current_tenant() is NULL');
SELECT is(keys_guard.current_actor(), NULL, 'no context: current_actor() is NULL');
SELECT is(keys_guard.current_request_id(), NULL, 'no context: current_request_id() is NULL');

--
-- Who may set a context.
--
SET LOCAL ROLE kg_ctx_plain;
SELECT throws_ok($$SELECT keys_guard.set_context('ctx_a', 'u')$$, '42501',
                 'permission denied to set a keys_guard context',
                 'plain role: set_context() is refused');
-- Who may call is the first thing checked: a plain role's bad arguments
-- are refused as a plain role's, and leave no context.
SELECT throws_ok($$SELECT keys_guard.set_context(NULL, NULL, NULL, NULL)$$, '42501',
                 'permission denied to set a keys_guard context',
                 'plain role: set_context() with NULL arguments is refused for the role first');
SELECT is(keys_guard.current_tenant(), NULL, 'plain role: the refused calls set no context');
SELECT throws_ok($$SELECT keys_guard.admin_context('u', 'because')$$, '42501',
                 'permission denied for function admin_context',
                 'plain role: admin_context() is refused');
SET LOCAL ROLE kg_ctx_exec;
SELECT throws_ok($$SELECT keys_guard.set_context('ctx_a', 'u')$$, '42501', NULL,
                 'role with EXECUTE but not a gateway/admin member: set_context() is refused');
SET LOCAL ROLE kg_ctx_gw;
SELECT throws_ok($$SELECT keys_guard.admin_context('u', 'because')$$, '42501', NULL,
                 'gateway role: admin_context() is refused');

SELECT lives_ok($$SELECT keys_guard.set_context('ctx_a', 'user_1')$$,
                'gateway role: set_context() works');
SELECT is(keys_guard.current_tenant(), 'ctx_a', 'gateway role: current_tenant() is the tenant set');
SELECT is(keys_guard.current_actor(), 'user_1', 'gateway role: current_actor() is the actor set');
SELECT matches(keys_guard.current_request_id(),
               '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
               'a NULL request id is generated as a UUID');
DO $$ BEGIN PERFORM keys_guard.set_context('ctx_a', 'user_1', request_id => 'req-1'); END $$;
SELECT is(keys_guard.current_request_id(), 'req-1', 'a given request id is kept');
SELECT results_eq('SELECT v FROM t', ARRAY['a1'],
                  'gateway role: the context puts tenant_ctx_a first on search_path');

SET LOCAL ROLE kg_ctx_admin;
SELECT lives_ok($$SELECT keys_guard.set_context('ctx_b', 'user_2')$$,
                'admin role: set_context() works');
SELECT is(keys_guard.current_tenant(), 'ctx_b', 'admin role: current_tenant() is the tenant set');
RESET ROLE;
SELECT lives_ok($$SELECT keys_guard.set_context('ctx_a', 'user_3')$$,
                'superuser: set_context() works');
SELECT is(keys_guard.current_tenant(), 'ctx_a', 'superuser: current_tenant() is the tenant set');
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;

--
-- Nobody claims a tenant through the settings.
--
SET LOCAL ROLE kg_ctx_plain;
SELECT throws_ok($$SET keys_guard.tenant = 'ctx_a'$$, '42501',
                 'permission denied to set parameter "keys_guard.tenant"',
                 'plain role: SET keys_guard.tenant is refused');
SELECT throws_ok($$SET LOCAL keys_guard.tenant = 'ctx_a'$$, '42501',
                 'permission denied to set parameter "keys_guard.tenant"',
                 'plain role: SET LOCAL keys_guard.tenant is refused');
SELECT throws_ok($$SELECT set_config('keys_guard.tenant', 'ctx_a', true)$$, '42501',
                 'permission denied to set parameter "keys_guard.tenant"',
                 'plain role: set_config(''keys_guard.tenant'', ..., true) is refused');
SELECT throws_ok($$SELECT set_config('keys_guard.tenant', 'ctx_a', false)$$, '42501',
                 'permission denied to set parameter "keys_guard.tenant"',
                 'plain role: set_config(''keys_guard.tenant'', ..., false) is refused');
SELECT throws_ok($$SET keys_guard.actor = 'someone'$$, '42501',
                 'permission denied to set parameter "keys_guard.actor"',
                 'plain role: SET keys_guard.actor is refused');
SELECT throws_ok($q$DO $do$ BEGIN
                     ALTER FUNCTION public.kg_ctx_probe() SET keys_guard.tenant = 'ctx_a';
                     PERFORM public.kg_ctx_probe();
                   END $do$$q$, '42501', NULL,
                 'plain role: ALTER FUNCTION ... SET keys_guard.tenant is refused when altered or called');

SET LOCAL ROLE kg_ctx_gw;
SELECT throws_ok($$SET keys_guard.tenant = 'ctx_a'$$, '42501',
                 'permission denied to set parameter "keys_guard.tenant"',
                 'gateway role: SET keys_guard.tenant is refused');
SELECT throws_ok($$SELECT set_config('keys_guard.tenant', 'ctx_a', true)$$, '42501',
                 'permission denied to set parameter "keys_guard.tenant"',
                 'gateway role: set_config(''keys_guard.tenant'', ...) is refused');

RESET ROLE;
SELECT throws_ok($$SET keys_guard.tenant = 'ctx_a'$$, '42501',
                 'keys_guard context parameters cannot be set directly',
                 'superuser: SET keys_guard.tenant is refused');
SELECT throws_ok($$SET LOCAL keys_guard.tenant = 'ctx_a'$$, '42501',
                 'keys_guard context parameters cannot be set directly',
                 'superuser: SET LOCAL keys_guard.tenant is refused');
SELECT throws_ok($$SELECT set_config('keys_guard.tenant', 'ctx_a', true)$$, '42501',
                 'keys_guard context parameters cannot be set directly',
                 'superuser: set_config(''keys_guard.tenant'', ..., true) is refused');
SELECT throws_ok($$SELECT set_config('keys_guard.tenant', 'ctx_a', false)$$, '42501',
                 'keys_guard context parameters cannot be set directly',
                 'superuser: set_config(''keys_guard.tenant'', ..., false) is refused');
SELECT throws_ok($$SET keys_guard.actor = 'someone'$$, '42501',
                 'keys_guard context parameters cannot be set directly',
                 'superuser: SET keys_guard.actor is refused');
SELECT throws_ok($$SELECT set_config('keys_guard.request_id', 'req-x', true)$$, '42501',
                 'keys_guard context parameters cannot be set directly',
                 'superuser: set_config(''keys_guard.request_id'', ...) is refused');
SELECT throws_ok($q$DO $do$ BEGIN
                     ALTER FUNCTION public.kg_ctx_probe() SET keys_guard.tenant = 'ctx_a';
                     PERFORM public.kg_ctx_probe();
                   END $do$$q$, '42501', NULL,
                 'superuser: ALTER FUNCTION ... SET keys_guard.tenant is refused when altered or called');
SELECT throws_ok($q$DO $do$ BEGIN
                     CREATE FUNCTION public.kg_ctx_claim() RETURNS text LANGUAGE sql
                         SET keys_guard.tenant = 'ctx_a'
                         AS 'SELECT keys_guard.current_tenant()';
                     PERFORM public.kg_ctx_claim();
                   END $do$$q$, '42501', NULL,
                 'superuser: CREATE FUNCTION ... SET keys_guard.tenant is refused when created or called');
SELECT throws_ok($$ALTER ROLE kg_ctx_plain SET keys_guard.tenant = 'ctx_a'$$, '42501', NULL,
                 'superuser: ALTER ROLE ... SET keys_guard.tenant is refused');
SELECT throws_ok($q$DO $do$ BEGIN
                     EXECUTE format('ALTER DATABASE %I SET keys_guard.tenant = %L', current_database(), 'ctx_a');
                   END $do$$q$, '42501', NULL,
                 'superuser: ALTER DATABASE ... SET keys_guard.tenant is refused');
SELECT is(keys_guard.current_tenant(), NULL,
          'after the refused attempts there is still no context');
-- The refusals are about the context settings, not about a missing context:
-- that still closes tenant data.
SELECT throws_ok('SELECT * FROM tenant_ctx_a.t', '42501', 'no tenant context',
                 'superuser without a context: tenant_ctx_a.t stays closed');

--
-- Invalid arguments: 22023 / 22004, and the current context is unchanged.
--
SET LOCAL ROLE kg_ctx_gw;
DO $$ BEGIN PERFORM keys_guard.set_context('ctx_a', 'user_1', 'req-ok'); END $$;
SELECT throws_ok($$SELECT keys_guard.set_context('', 'u')$$, '22023', NULL,
                 'empty tenant is 22023');
SELECT throws_ok($$SELECT keys_guard.set_context('ctx_b', '')$$, '22023', NULL,
                 'empty actor is 22023');
SELECT throws_ok($$SELECT keys_guard.set_context(NULL, 'u')$$, '22004', NULL,
                 'NULL tenant is 22004');
SELECT throws_ok($$SELECT keys_guard.set_context('ctx_b', NULL)$$, '22004', NULL,
                 'NULL actor is 22004');
SELECT throws_ok($$SELECT keys_guard.set_context('ctx_b', 'u', NULL, NULL)$$, '22004', NULL,
                 'NULL is_local is 22004');
SELECT throws_ok($$SELECT keys_guard.set_context('nosuch', 'u')$$, '22023', NULL,
                 'unknown tenant is 22023');
SELECT throws_ok($$SELECT keys_guard.set_context('tenant_ctx_b', 'u')$$, '22023', NULL,
                 'a schema name is not a tenant id: 22023');
SELECT throws_ok(format('SELECT keys_guard.set_context(%L, %L)', repeat('b', 49), 'u'), '22023', NULL,
                 'a 49-character tenant id is 22023');
SELECT throws_ok(format('SELECT keys_guard.set_context(%L, %L)', repeat('b', 10000), 'u'), '22023', NULL,
                 'a 10000-character tenant id is 22023');
SELECT throws_ok($$SELECT keys_guard.set_context('CTX_B', 'u')$$, '22023', NULL,
                 'an upper-case tenant id is 22023');
SELECT throws_ok($$SELECT keys_guard.set_context(' ctx_b', 'u')$$, '22023', NULL,
                 'a tenant id with a leading space is 22023');
SELECT throws_ok($$SELECT keys_guard.set_context('ctx_b''', 'u')$$, '22023', NULL,
                 'a tenant id with a quote is 22023');
SELECT throws_ok($$SELECT keys_guard.set_context('ctx_b''; DROP TABLE public.kg_ctx_victim; --', 'u')$$,
                 '22023', NULL, 'an SQL-injection tenant id is 22023');
SELECT throws_ok($$SELECT keys_guard.set_context('ctx_b", "public', 'u')$$, '22023', NULL,
                 'a search_path-injection tenant id is 22023');
SELECT ok(keys_guard.current_tenant() = 'ctx_a'
          AND keys_guard.current_actor() = 'user_1'
          AND keys_guard.current_request_id() = 'req-ok'
          AND (current_schemas(false))[1] = 'tenant_ctx_a'
          AND to_regclass('public.kg_ctx_victim') IS NOT NULL,
          'the refused calls changed nothing: same context, same search_path, no table dropped');

-- An actor is any non-empty string: stored verbatim, never executed.
SELECT lives_ok($$SELECT keys_guard.set_context('ctx_a', 'o''brien''; DROP TABLE public.kg_ctx_victim; --')$$,
                'an actor with quotes is accepted');
SELECT ok(keys_guard.current_actor() = 'o''brien''; DROP TABLE public.kg_ctx_victim; --'
          AND to_regclass('public.kg_ctx_victim') IS NOT NULL,
          'the actor is stored verbatim and nothing was executed');

--
-- Scope: the context follows transaction semantics.
--
DO $$ BEGIN PERFORM keys_guard.set_context('ctx_a', 'user_1'); END $$;
SAVEPOINT kg_ctx_sp;
DO $$ BEGIN PERFORM keys_guard.set_context('ctx_b', 'user_2'); END $$;
ROLLBACK TO SAVEPOINT kg_ctx_sp;
RELEASE SAVEPOINT kg_ctx_sp;
SELECT ok(keys_guard.current_tenant() = 'ctx_a' AND keys_guard.current_actor() = 'user_1'
          AND (current_schemas(false))[1] = 'tenant_ctx_a',
          'a context set in a rolled-back savepoint is gone, with its search_path');


--
-- clear_context(): back to NULLs and no tenant schema on search_path.
--
SELECT lives_ok('SELECT keys_guard.clear_context()', 'gateway role: clear_context() works');
SELECT is(keys_guard.current_tenant(), NULL, 'after clear_context(): current_tenant() is NULL');
SELECT is(keys_guard.current_actor(), NULL, 'after clear_context(): current_actor() is NULL');
SELECT is(keys_guard.current_request_id(), NULL, 'after clear_context(): current_request_id() is NULL');
SELECT ok(NOT current_schemas(false) && ARRAY['tenant_ctx_a', 'tenant_ctx_b']::name[],
          'after clear_context(): no tenant schema on search_path');

--
-- admin_context(): keys_guard_admin members act on every tenant.
--
SET LOCAL ROLE kg_ctx_admin;
SELECT throws_ok('SELECT v FROM public.kg_ctx_pool', '42501', 'no tenant context',
                 'admin role without a context: pooled rows are closed');
SELECT throws_ok($$SELECT keys_guard.admin_context('', 'incident 42')$$, '22023', NULL,
                 'admin_context() with an empty actor is 22023');
SELECT throws_ok($$SELECT keys_guard.admin_context(NULL, 'incident 42')$$, '22004', NULL,
                 'admin_context() with a NULL actor is 22004');
SELECT lives_ok($$SELECT keys_guard.admin_context('ops_1', 'incident 42')$$,
                'admin role: admin_context() works');
SELECT results_eq('SELECT v FROM public.kg_ctx_pool ORDER BY v', ARRAY['pa', 'pb'],
                  'admin context: every tenant''s pooled rows are visible');
SELECT results_eq('SELECT v FROM tenant_ctx_a.t UNION ALL SELECT v FROM tenant_ctx_b.t ORDER BY 1',
                  ARRAY['a1', 'b1'],
                  'admin context: every tenant schema is readable');
SELECT ok(keys_guard.current_tenant() IS NULL AND keys_guard.current_actor() = 'ops_1',
          'admin context: no current tenant, the actor is attributed');
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;

--
-- keys_guard.bypass: superusers only.
--
SET LOCAL ROLE kg_ctx_plain;
SELECT throws_ok('SET keys_guard.bypass = on', '42501',
                 'permission denied to set parameter "keys_guard.bypass"',
                 'plain role: SET keys_guard.bypass is refused');
SELECT throws_ok($$SELECT set_config('keys_guard.bypass', 'on', true)$$, '42501',
                 'permission denied to set parameter "keys_guard.bypass"',
                 'plain role: set_config(''keys_guard.bypass'', ...) is refused');
SET LOCAL ROLE kg_ctx_gw;
SELECT throws_ok('SET keys_guard.bypass = on', '42501',
                 'permission denied to set parameter "keys_guard.bypass"',
                 'gateway role: SET keys_guard.bypass is refused');
SET LOCAL ROLE kg_ctx_admin;
SELECT throws_ok('SET keys_guard.bypass = on', '42501',
                 'permission denied to set parameter "keys_guard.bypass"',
                 'admin role: SET keys_guard.bypass is refused');
RESET ROLE;
SET LOCAL keys_guard.bypass = on;
SELECT results_eq('SELECT v FROM public.kg_ctx_pool ORDER BY v', ARRAY['pa', 'pb'],
                  'superuser with keys_guard.bypass: every pooled row is readable without a context');
SET LOCAL keys_guard.bypass = off;

SELECT * FROM finish();
ROLLBACK;
