--
-- attacks_more: more ways around keys_guard's guarantees (docs/contract.md §6 "No
-- path around the rules" and "No privilege is lent"), each asserted closed.
-- Self-contained: its own roles (atm_*), tenants atm_a / atm_b and tables.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
SET client_min_messages = warning;
DROP ROLE IF EXISTS atm_app, atm_adm, atm_own, atm_cli;
RESET client_min_messages;
CREATE ROLE atm_app LOGIN IN ROLE keys_guard_gateway;   -- the API server
CREATE ROLE atm_adm LOGIN IN ROLE keys_guard_admin;     -- a non-superuser admin
CREATE ROLE atm_own LOGIN;                              -- owns tables, no keys_guard role
SELECT id FROM keys_guard.create_tenant('atm_a');
SELECT id FROM keys_guard.create_tenant('atm_b');

-- A pooled table with a live row of each tenant and a soft-deleted row of a.
CREATE TABLE public.atm_pool (id int PRIMARY KEY, tenant_id text NOT NULL, secret text);
SELECT relation FROM keys_guard.protect_table('public.atm_pool', tenant_column => 'tenant_id');
CREATE TABLE tenant_atm_b.private (id int PRIMARY KEY, secret text);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.atm_pool TO atm_app, atm_adm, atm_own;
GRANT USAGE ON SCHEMA tenant_atm_a, tenant_atm_b TO atm_app, atm_own;
GRANT SELECT ON tenant_atm_b.private TO atm_own, atm_app;
BEGIN;
SELECT keys_guard.set_context('atm_a', 'setup');
INSERT INTO public.atm_pool VALUES (1, 'atm_a', 'a-secret'), (3, 'atm_a', 'a-deleted');
DELETE FROM public.atm_pool WHERE id = 3;
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atm_b', 'setup');
INSERT INTO public.atm_pool VALUES (2, 'atm_b', 'b-secret');
INSERT INTO tenant_atm_b.private VALUES (1, 'b-private');
COMMIT;

-- Where the attackers' code writes what it saw, and as whom it ran.
CREATE TABLE public.atm_loot (how text, who text, what text);
GRANT INSERT, SELECT ON public.atm_loot TO PUBLIC;

--
-- 1. keys_guard's internal operations resolve operators and functions
-- through the caller's search_path.  Their bookkeeping statements run as
-- keys_guard's owner (a superuser): an operator "=" or a function now() of
-- the caller's, ahead of pg_catalog, would run with that owner's rights.
--
CREATE SCHEMA atm_evil AUTHORIZATION atm_app;
GRANT USAGE ON SCHEMA atm_evil TO PUBLIC;
SET ROLE atm_app;
CREATE FUNCTION atm_evil.grab() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.atm_loot VALUES ('search_path', current_user, NULL);
    BEGIN
        EXECUTE 'ALTER ROLE atm_app SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
END
$$;
CREATE FUNCTION atm_evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM atm_evil.grab(); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION atm_evil.int_eq(int, int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM atm_evil.grab(); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR atm_evil.= (leftarg = int, rightarg = int, function = atm_evil.int_eq);
RESET ROLE;

-- The gateway's undo button (restore of its own tenant's row).
SET ROLE atm_app;
SET search_path = atm_evil, pg_catalog;
BEGIN;
SELECT keys_guard.set_context('atm_a', 'attacker');
SELECT keys_guard.restore('public.atm_pool', 3);
DELETE FROM public.atm_pool WHERE id OPERATOR(pg_catalog.=) 3;
SELECT keys_guard.preview_delete('public.atm_pool', 1) IS NOT NULL AS previewed;
COMMIT;
RESET search_path;
RESET ROLE;
-- HOLE (fixed): restore ran the caller's "=" and now() as keys_guard's owner
-- (a superuser) and made atm_app superuser.  The caller's code may run with
-- the caller's own rights (keys_guard's PL/pgSQL of preview_delete), never
-- with anyone else's.
SELECT rolsuper FROM pg_roles WHERE rolname = 'atm_app';
SELECT how, who FROM public.atm_loot WHERE who <> 'atm_app';

-- A non-superuser admin: hard_delete and purge_now.
SET ROLE atm_adm;
SET search_path = atm_evil, pg_catalog;
\set VERBOSITY terse
SELECT keys_guard.hard_delete('public.atm_pool', 3);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT keys_guard.purge_now('public.atm_pool', dry_run => true) IS NOT NULL AS purged;
RESET search_path;
RESET ROLE;
SELECT rolsuper FROM pg_roles WHERE rolname IN ('atm_app', 'atm_adm') ORDER BY rolname;
SELECT how, who FROM public.atm_loot WHERE who NOT IN ('atm_app', 'atm_adm');

--
-- 2. The soft-delete cascade runs as the child table's owner (here a
-- superuser): its statement must not take its operator from the search_path
-- of the tenant whose DELETE started it.
--
CREATE TABLE public.atm_parent (id int PRIMARY KEY, tenant_id text NOT NULL);
CREATE TABLE public.atm_child (id int PRIMARY KEY, tenant_id text NOT NULL,
                               pid int REFERENCES public.atm_parent ON DELETE CASCADE);
SELECT relation FROM keys_guard.protect_table('public.atm_parent', tenant_column => 'tenant_id');
SELECT relation FROM keys_guard.protect_table('public.atm_child', tenant_column => 'tenant_id');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.atm_parent, public.atm_child TO atm_app;
SET ROLE atm_app;
SET search_path = atm_evil, pg_catalog;
BEGIN;
SELECT keys_guard.set_context('atm_a', 'attacker');
INSERT INTO public.atm_parent VALUES (1, 'atm_a');
INSERT INTO public.atm_child VALUES (1, 'atm_a', 1);
DELETE FROM public.atm_parent WHERE id OPERATOR(pg_catalog.=) 1;
SELECT count(*) AS live_children FROM public.atm_child;
COMMIT;
RESET search_path;
RESET ROLE;
-- HOLE (fixed): the cascade ran the tenant's "=" as the child's owner.
SELECT rolsuper FROM pg_roles WHERE rolname = 'atm_app';
SELECT how, who FROM public.atm_loot WHERE who <> 'atm_app';
-- The cascade itself still works, also for keys of another type.
BEGIN;
SELECT keys_guard.admin_context('setup', 'check');
SET LOCAL keys_guard.include_deleted = on;
SELECT id, deleted_at IS NOT NULL AS deleted, delete_request_id IS NOT NULL AS has_request
  FROM public.atm_child;
COMMIT;

--
-- 3. Row security policies are user code that PostgreSQL splices into
-- keys_guard's internal statements (which run as the table's owner under
-- FORCE ROW LEVEL SECURITY) without any function call.  A subquery in a
-- policy must see what it would see outside the operation.
--
CREATE SCHEMA atm_own AUTHORIZATION atm_own;
CREATE TABLE atm_own.notes (id int PRIMARY KEY, tenant_id text NOT NULL, note text);
ALTER TABLE atm_own.notes OWNER TO atm_own;
SELECT relation FROM keys_guard.protect_table('atm_own.notes', tenant_column => 'tenant_id');
GRANT USAGE ON SCHEMA atm_own TO atm_app, atm_adm;
GRANT SELECT, INSERT, UPDATE, DELETE ON atm_own.notes TO atm_app, atm_adm;
SET ROLE atm_own;
CREATE FUNCTION atm_own.leak(how text, x text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.atm_loot VALUES (how, current_user, x);
    RETURN true;
END
$$;
CREATE POLICY atm_peek ON atm_own.notes AS RESTRICTIVE
    USING (atm_own.leak('policy pooled',
           (SELECT string_agg(secret, ',' ORDER BY id) FROM public.atm_pool)));
RESET ROLE;
TRUNCATE public.atm_loot;
SET ROLE atm_app;
BEGIN;
SELECT keys_guard.set_context('atm_a', 'attacker');
INSERT INTO atm_own.notes VALUES (1, 'atm_a', 'n');
DELETE FROM atm_own.notes WHERE id = 1;
SELECT keys_guard.restore('atm_own.notes', 1);
COMMIT;
RESET ROLE;
-- HOLE (fixed): inside restore the policy's subquery read every tenant's
-- rows, soft-deleted ones included ("a-secret,b-secret,..." as atm_own).
SELECT DISTINCT how, who, what FROM public.atm_loot ORDER BY who, what;

-- A policy subquery that names another tenant's schema: 42501, nothing restored.
SET ROLE atm_own;
DROP POLICY atm_peek ON atm_own.notes;
CREATE POLICY atm_peek ON atm_own.notes AS RESTRICTIVE
    USING (atm_own.leak('policy schema', (SELECT string_agg(secret, ',') FROM tenant_atm_b.private)));
RESET ROLE;
TRUNCATE public.atm_loot;
SET ROLE atm_app;
BEGIN;
SELECT keys_guard.set_context('atm_a', 'attacker');
\set VERBOSITY terse
DELETE FROM atm_own.notes WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
-- Under an admin context the policy reads b's schema legitimately; the
-- gateway's restore of that row must not.
BEGIN;
SELECT keys_guard.admin_context('setup', 'delete a note');
DELETE FROM atm_own.notes WHERE id = 1;
COMMIT;
TRUNCATE public.atm_loot;
SET ROLE atm_app;
BEGIN;
SELECT keys_guard.set_context('atm_a', 'attacker');
SELECT keys_guard.restore('atm_own.notes', 1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
\set VERBOSITY default
-- HOLE (fixed): the restore's policy read tenant_atm_b.private.
SELECT how, who, what FROM public.atm_loot;
BEGIN;
SELECT keys_guard.admin_context('setup', 'check');
SET LOCAL keys_guard.include_deleted = on;
SELECT id, deleted_at IS NOT NULL AS deleted FROM atm_own.notes;
COMMIT;
SET ROLE atm_own;
DROP POLICY atm_peek ON atm_own.notes;
RESET ROLE;

--
-- 4. Rule actions are recognised as keys_guard's own by a random alias on
-- the internal statement's target.  A trigger's error shows that statement
-- (and its alias) in the error context; a rule written afterwards with the
-- alias on another relation must not be trusted in the next restore.
--
SET ROLE atm_own;
CREATE TABLE atm_own.flag (fail boolean);
INSERT INTO atm_own.flag VALUES (false);
GRANT SELECT, UPDATE ON atm_own.flag TO PUBLIC;
CREATE FUNCTION atm_own.fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT fail FROM atm_own.flag) THEN
        RAISE EXCEPTION 'failing on purpose';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER fail_once BEFORE UPDATE ON atm_own.notes
    FOR EACH ROW EXECUTE FUNCTION atm_own.fail_once();
RESET ROLE;
BEGIN;
SELECT keys_guard.admin_context('setup', 'restore a note');
SELECT keys_guard.restore('atm_own.notes', 1);
COMMIT;
SET ROLE atm_app;
BEGIN;
SELECT keys_guard.set_context('atm_a', 'attacker');
DELETE FROM atm_own.notes WHERE id = 1;
COMMIT;
UPDATE atm_own.flag SET fail = true;
CREATE TEMP TABLE atm_seen (ctx text);
DO $$
DECLARE
    ctx text;
BEGIN
    PERFORM keys_guard.set_context('atm_a', 'attacker');
    BEGIN
        PERFORM keys_guard.restore('atm_own.notes', 1);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS ctx = PG_EXCEPTION_CONTEXT;
    END;
    INSERT INTO atm_seen VALUES (ctx);
END
$$;
UPDATE atm_own.flag SET fail = false;
RESET ROLE;
SELECT substring(ctx from 'atm_own\.notes (keys_guard_[0-9a-f]+)') AS alias FROM atm_seen \gset
SELECT :'alias' ~ '^keys_guard_[0-9a-f]{16}$' AS alias_learned;
SET ROLE atm_own;
CREATE TABLE atm_own.loot (what text);
CREATE RULE atm_steal AS ON UPDATE TO atm_own.notes
    DO ALSO INSERT INTO atm_own.loot
       SELECT string_agg(secret, ',' ORDER BY id) FROM public.atm_pool :alias;
RESET ROLE;
SET ROLE atm_app;
BEGIN;
SELECT keys_guard.set_context('atm_a', 'attacker');
SELECT keys_guard.restore('atm_own.notes', 1);
COMMIT;
RESET ROLE;
-- HOLE (fixed): the rule action carrying the leaked alias was trusted and
-- copied every tenant's rows ("b-secret,a-secret").
SET ROLE atm_own;
SELECT what FROM atm_own.loot;
DROP RULE atm_steal ON atm_own.notes;
RESET ROLE;

-- Parts 5 and 6 run every statement that can in a parallel worker, with
-- the leader taking no part.
\set atm_parallel 'SET LOCAL force_parallel_mode = on; SET LOCAL parallel_leader_participation = off; SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0;'

--
-- 5. A parallel worker has its leader's context, and the statements that a
-- function runs inside it (a PL/pgSQL body) are planned and started there,
-- where the leader never saw them: they are checked like anywhere else.
--
CREATE FUNCTION public.atm_par_peek() RETURNS text
LANGUAGE plpgsql PARALLEL SAFE AS $$
DECLARE
    r text;
BEGIN
    SELECT string_agg(secret, ',' ORDER BY id) INTO r FROM tenant_atm_b.private;
    RETURN r;
END
$$;
CREATE FUNCTION public.atm_par_pool() RETURNS text
LANGUAGE plpgsql PARALLEL SAFE AS $$
DECLARE
    r text;
BEGIN
    SELECT string_agg(secret, ',' ORDER BY id) INTO r FROM public.atm_pool;
    RETURN r;
END
$$;
CREATE FUNCTION public.atm_par_switch(tenant text) RETURNS text
LANGUAGE plpgsql PARALLEL SAFE AS $$
BEGIN
    PERFORM keys_guard.set_context(tenant, 'attacker');
    RETURN keys_guard.current_tenant();
END
$$;
SET ROLE atm_app;
BEGIN;
SELECT keys_guard.set_context('atm_a', 'attacker') IS NOT NULL AS context;
:atm_parallel
EXPLAIN (COSTS OFF) SELECT public.atm_par_peek();
-- HOLE (fixed): in the worker, the other tenant's schema was not refused.
SELECT public.atm_par_peek();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('atm_a', 'attacker') IS NOT NULL AS context;
:atm_parallel
-- The pooled table, read in the worker: the tenant's own rows only.
SELECT public.atm_par_pool() AS pooled_in_worker;
-- The worker has the context in force when its plan starts, not the one a
-- parallel plan of the transaction had before: the context a worker
-- receives (keys_guard.context) is cleared whenever the context changes,
-- and a ROLLBACK TO takes it back together with the context.
SELECT keys_guard.set_context('atm_b', 'attacker') IS NOT NULL AS context;
SET LOCAL force_parallel_mode = off;
SELECT current_setting('keys_guard.context') = '' AS cleared_for_workers;
SET LOCAL force_parallel_mode = on;
SELECT public.atm_par_pool() AS pooled_in_worker_b;
SAVEPOINT s;
SELECT keys_guard.set_context('atm_a', 'attacker') IS NOT NULL AS context;
SELECT public.atm_par_pool() AS pooled_in_worker_a;
ROLLBACK TO s;
SELECT keys_guard.current_tenant();
SELECT public.atm_par_pool() AS pooled_in_worker_b_again;
-- A worker cannot change the context (its leader's must stay the one its
-- workers have).
SELECT public.atm_par_switch('atm_a');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
DROP FUNCTION public.atm_par_peek(), public.atm_par_pool(), public.atm_par_switch(text);

--
-- 6. A read-only token's regime holds in its parallel workers too: a
-- PARALLEL SAFE function's body calls pg_cancel_backend() in the worker.
--
CREATE ROLE atm_cli LOGIN IN ROLE keys_guard_client;
SELECT keys_guard.add_token_key('atm-hs', 'HS256', repeat('atm-secret-', 4));
SELECT public.test_hs256_token('atm-hs', repeat('atm-secret-', 4),
           jsonb_build_object('sub', 'atm-user', 'project_id', 'atm_a', 'scope', 'read',
                              'exp', extract(epoch FROM now())::bigint + 600)) AS atm_token \gset
CREATE FUNCTION public.atm_par_cancel(p int) RETURNS boolean
LANGUAGE plpgsql PARALLEL SAFE AS $$
BEGIN
    RETURN pg_cancel_backend(p);
END
$$;
SET ROLE atm_cli;
BEGIN;
SELECT keys_guard.set_context_from_token(:'atm_token') IS NOT NULL AS token_used;
:atm_parallel
-- HOLE (fixed): in the worker, the read-only regime did not apply.
SELECT public.atm_par_cancel(0);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
DROP FUNCTION public.atm_par_cancel(int);
SELECT keys_guard.set_token_key_state('atm-hs', 'revoked');
DROP ROLE atm_cli;
