--
-- attacks: the ways around keys_guard's guarantees that an attacker tries
-- first, each asserted closed (README "Security model").  Self-contained:
-- its own tenants, roles and tables.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
SET client_min_messages = warning;
DROP ROLE IF EXISTS atk_evil, atk_owner;
RESET client_min_messages;
CREATE ROLE atk_evil LOGIN;
CREATE ROLE atk_owner LOGIN;
SELECT id FROM keys_guard.create_tenant('atk_a');
SELECT id FROM keys_guard.create_tenant('atk_b');

-- A pooled table with rows of both tenants, and a table in b's schema.
CREATE TABLE public.atk_secret (id int PRIMARY KEY, tenant_id text NOT NULL, secret text);
SELECT relation FROM keys_guard.protect_table('public.atk_secret', tenant_column => 'tenant_id');
CREATE TABLE tenant_atk_b.private (id int PRIMARY KEY, secret text);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.atk_secret, tenant_atk_b.private TO atk_evil, kg_app;
GRANT USAGE ON SCHEMA tenant_atk_a, tenant_atk_b TO atk_evil, kg_app;
GRANT CREATE ON SCHEMA tenant_atk_b TO kg_app;
BEGIN;
SELECT keys_guard.set_context('atk_a', 'setup');
INSERT INTO public.atk_secret VALUES (1, 'atk_a', 'a-secret');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_b', 'setup');
INSERT INTO public.atk_secret VALUES (2, 'atk_b', 'b-secret');
INSERT INTO tenant_atk_b.private VALUES (1, 'b-private');
COMMIT;

--
-- 1. User code inside a foreign-key action.  PostgreSQL runs the RI query
-- with row security relaxed; the triggers, rules and constraints it fires
-- are ordinary user code and get no more than outside it.
--
SET ROLE atk_evil;
CREATE TEMP TABLE loot (how text, outcome text);
CREATE TEMP TABLE parent (id int PRIMARY KEY);
CREATE TEMP TABLE child (id int PRIMARY KEY,
                         pid int REFERENCES parent ON DELETE CASCADE ON UPDATE CASCADE);
CREATE FUNCTION pg_temp.steal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        INSERT INTO loot SELECT TG_OP || ' pooled', string_agg(secret, ',' ORDER BY id)
          FROM public.atk_secret;
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO loot VALUES (TG_OP || ' pooled', SQLSTATE);
    END;
    BEGIN
        INSERT INTO loot SELECT TG_OP || ' schema', string_agg(secret, ',')
          FROM tenant_atk_b.private;
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO loot VALUES (TG_OP || ' schema', SQLSTATE);
    END;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER steal BEFORE UPDATE OR DELETE ON child
    FOR EACH ROW EXECUTE FUNCTION pg_temp.steal();
INSERT INTO parent VALUES (1), (2);
INSERT INTO child VALUES (10, 1), (20, 2);
-- No context: the cascade's trigger is refused like any statement.
UPDATE parent SET id = 3 WHERE id = 2;
DELETE FROM parent WHERE id = 1;
SELECT * FROM loot ORDER BY how;
RESET ROLE;

-- Under tenant a's context (the API role): the same trigger sees a's rows
-- only, and b's schema is denied -- also when its plan was cached inside
-- the cascade and is reused outside it.
SET ROLE kg_app;
CREATE TEMP TABLE loot_a (how text, outcome text);
CREATE TEMP TABLE parent_a (id int PRIMARY KEY);
CREATE TEMP TABLE child_a (id int PRIMARY KEY, pid int REFERENCES parent_a ON DELETE CASCADE);
CREATE FUNCTION pg_temp.peek() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO loot_a SELECT 'pooled', string_agg(secret, ',' ORDER BY id) FROM public.atk_secret;
    BEGIN
        INSERT INTO loot_a SELECT 'schema', string_agg(secret, ',') FROM tenant_atk_b.private;
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO loot_a VALUES ('schema', SQLSTATE);
    END;
    BEGIN
        EXECUTE 'CREATE TABLE tenant_atk_b.planted (id int)';
        INSERT INTO loot_a VALUES ('ddl', 'created');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO loot_a VALUES ('ddl', SQLSTATE);
    END;
    RETURN OLD;
END
$$;
CREATE TRIGGER peek BEFORE DELETE ON child_a FOR EACH ROW EXECUTE FUNCTION pg_temp.peek();
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a');
INSERT INTO parent_a VALUES (1), (2);
INSERT INTO child_a VALUES (10, 1), (20, 2);
DELETE FROM parent_a WHERE id = 1;
DELETE FROM child_a WHERE id = 20;
SELECT * FROM loot_a;
COMMIT;
RESET ROLE;
SELECT count(*) AS planted FROM pg_class WHERE relname = 'planted';

-- A rule on the child table: its action is user code that PostgreSQL
-- splices into the RI query, refused without a context.
SET ROLE atk_evil;
CREATE TEMP TABLE parent2 (id int PRIMARY KEY);
CREATE TEMP TABLE child2 (id int PRIMARY KEY, pid int REFERENCES parent2 ON DELETE CASCADE);
CREATE RULE steal AS ON DELETE TO child2
    DO ALSO INSERT INTO loot SELECT 'rule', string_agg(secret, ',') FROM public.atk_secret;
INSERT INTO parent2 VALUES (1);
INSERT INTO child2 VALUES (1, 1);
DELETE FROM parent2;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

--
-- 2. INSERT ... ON CONFLICT DO UPDATE reaches the conflicting row: it must
-- be the tenant's own and live before the statement's WHERE, SET or
-- RETURNING see it.
--
CREATE TABLE public.atk_kv (id int PRIMARY KEY, tenant_id text NOT NULL, v text);
SELECT relation FROM keys_guard.protect_table('public.atk_kv', tenant_column => 'tenant_id');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.atk_kv TO kg_app;
CREATE TABLE public.atk_seen (v text);
GRANT INSERT, SELECT ON public.atk_seen TO kg_app;
CREATE FUNCTION public.atk_leak(text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.atk_seen VALUES ($1);
    RETURN true;
END
$$;
BEGIN;
SELECT keys_guard.set_context('atk_b', 'user_b');
INSERT INTO public.atk_kv VALUES (1, 'atk_b', 'b-value'), (2, 'atk_b', 'b-deleted');
DELETE FROM public.atk_kv WHERE id = 2;
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a');
INSERT INTO public.atk_kv VALUES (3, 'atk_a', 'a-value'), (4, 'atk_a', 'a-deleted');
DELETE FROM public.atk_kv WHERE id = 4;
COMMIT;
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a');
SAVEPOINT s;
-- Taking over b's row.
INSERT INTO public.atk_kv VALUES (1, 'atk_a', 'x')
    ON CONFLICT (id) DO UPDATE SET tenant_id = 'atk_a', v = 'mine' RETURNING *;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- A function in the WHERE never sees b's row or a soft-deleted row.
INSERT INTO public.atk_kv VALUES (1, 'atk_a', 'x')
    ON CONFLICT (id) DO UPDATE SET v = 'x' WHERE public.atk_leak(atk_kv.v);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
INSERT INTO public.atk_kv VALUES (2, 'atk_a', 'x')
    ON CONFLICT (id) DO UPDATE SET v = 'x' WHERE public.atk_leak(atk_kv.v);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- No one-bit oracle: true and false predicates give the same answer.
INSERT INTO public.atk_kv VALUES (1, 'atk_a', 'x')
    ON CONFLICT (id) DO UPDATE SET v = 'x' WHERE atk_kv.v = 'b-value';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
INSERT INTO public.atk_kv VALUES (1, 'atk_a', 'x')
    ON CONFLICT (id) DO UPDATE SET v = 'x' WHERE atk_kv.v = 'something else';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- The same through a generic plan.
SET LOCAL plan_cache_mode = force_generic_plan;
PREPARE upsert(int) AS INSERT INTO public.atk_kv VALUES ($1, 'atk_a', 'x')
    ON CONFLICT (id) DO UPDATE SET v = 'mine' RETURNING *;
EXECUTE upsert(1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- A soft-deleted row of the tenant's own still holds its key: 23505.
EXECUTE upsert(4);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- The tenant's own live row: an ordinary upsert.
EXECUTE upsert(3);
-- DO NOTHING touches no row.
INSERT INTO public.atk_kv VALUES (1, 'atk_a', 'x') ON CONFLICT DO NOTHING;
COMMIT;
RESET ROLE;
SELECT count(*) AS rows_seen_by_leak FROM public.atk_seen;
BEGIN;
SELECT keys_guard.admin_context('auditor', 'attack suite check');
SELECT id, tenant_id, v, deleted_at IS NOT NULL AS deleted FROM public.atk_kv ORDER BY id;
COMMIT;

--
-- 3. No privilege is lent: a restore, hard delete or purge runs the
-- table's triggers as the table's owner in a security-restricted
-- operation, never as keys_guard's owner or a superuser.
--
GRANT USAGE, CREATE ON SCHEMA tenant_atk_a TO atk_owner;
GRANT CREATE ON SCHEMA public TO atk_owner;
SET ROLE atk_owner;
CREATE TABLE tenant_atk_a.docs (id int PRIMARY KEY, body text);
CREATE TABLE tenant_atk_a.drafts (id int PRIMARY KEY, body text);
CREATE TABLE public.atk_escalations (op text, tbl text, by_user text, outcome text);
CREATE FUNCTION tenant_atk_a.escalate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    outcome text;
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE atk_owner SUPERUSER';
        outcome := 'became superuser';
    EXCEPTION WHEN OTHERS THEN
        outcome := SQLSTATE;
    END;
    INSERT INTO public.atk_escalations VALUES (TG_OP, TG_TABLE_NAME, current_user, outcome);
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER escalate BEFORE UPDATE OR DELETE ON tenant_atk_a.docs
    FOR EACH ROW EXECUTE FUNCTION tenant_atk_a.escalate();
CREATE TRIGGER escalate BEFORE UPDATE OR DELETE ON tenant_atk_a.drafts
    FOR EACH ROW EXECUTE FUNCTION tenant_atk_a.escalate();
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_atk_a.docs, tenant_atk_a.drafts TO kg_app;
GRANT INSERT ON public.atk_escalations TO kg_app;
RESET ROLE;
SELECT keys_guard.release_table('tenant_atk_a.drafts');
SELECT relation FROM keys_guard.protect_table('tenant_atk_a.drafts', grace => interval '0');
-- The application deletes (with its own rights: the trigger cannot escalate).
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a', 'atk-req-docs');
INSERT INTO tenant_atk_a.docs VALUES (1, 'one'), (2, 'two');
INSERT INTO tenant_atk_a.drafts VALUES (1, 'one'), (2, 'two'), (3, 'three');
DELETE FROM tenant_atk_a.docs;
DELETE FROM tenant_atk_a.drafts;
COMMIT;
RESET ROLE;
TRUNCATE public.atk_escalations;
-- A non-superuser admin restores, hard-deletes and purges, and a superuser
-- restores: each time the trigger runs as the table's owner, who cannot
-- make itself superuser.
SET ROLE kg_migrator;
SELECT keys_guard.restore('tenant_atk_a.docs', 1);
SELECT keys_guard.hard_delete('tenant_atk_a.drafts', 1, confirm => true);
SELECT relation, purged FROM keys_guard.purge_now('tenant_atk_a.drafts');
RESET ROLE;
SELECT keys_guard.restore_request('atk-req-docs');
SELECT rolsuper FROM pg_roles WHERE rolname = 'atk_owner';
SELECT op, tbl, by_user, outcome, count(*) FROM public.atk_escalations
 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2;

--
-- 4. A restore never breaks a foreign key (23503, nothing restored), and
-- restore_request restores parents with their children.
--
CREATE TABLE tenant_atk_a.folders (id int PRIMARY KEY);
CREATE TABLE tenant_atk_a.files (id int PRIMARY KEY, folder int REFERENCES tenant_atk_a.folders);
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a', 'atk-req-files');
INSERT INTO tenant_atk_a.folders VALUES (1), (2);
INSERT INTO tenant_atk_a.files VALUES (10, 1), (20, 2), (30, NULL);
DELETE FROM tenant_atk_a.files WHERE id IN (10, 20, 30);
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a', 'atk-req-folders');
DELETE FROM tenant_atk_a.folders;
COMMIT;
SELECT keys_guard.restore('tenant_atk_a.files', 10);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.restore('tenant_atk_a.files', 30);
SELECT keys_guard.restore_request('atk-req-files');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.restore('tenant_atk_a.folders', 1);
SELECT keys_guard.restore('tenant_atk_a.files', 10);
BEGIN;
SELECT keys_guard.set_context('atk_a', 'checker');
SELECT id, folder FROM tenant_atk_a.files ORDER BY id;
COMMIT;
-- Parent and child deleted by one request come back together.
CREATE TABLE tenant_atk_a.albums (id int PRIMARY KEY);
CREATE TABLE tenant_atk_a.photos (id int PRIMARY KEY,
                                  album int REFERENCES tenant_atk_a.albums ON DELETE CASCADE);
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a', 'atk-req-album');
INSERT INTO tenant_atk_a.albums VALUES (1);
INSERT INTO tenant_atk_a.photos VALUES (1, 1), (2, 1);
DELETE FROM tenant_atk_a.albums;
COMMIT;
SELECT keys_guard.restore('tenant_atk_a.photos', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.restore_request('atk-req-album');

--
-- 5. A soft-delete cascade under an admin context with generic plans: the
-- foreign-key check of a child row inserted earlier in the transaction
-- must not be served by a plan made to hide deleted parents.
--
BEGIN;
SELECT keys_guard.admin_context('migrator', 'attack suite: cascade');
SET LOCAL plan_cache_mode = force_generic_plan;
INSERT INTO tenant_atk_a.albums VALUES (2), (3);
INSERT INTO tenant_atk_a.photos VALUES (3, 2), (4, 3);
DELETE FROM tenant_atk_a.albums WHERE id = 2;
DELETE FROM tenant_atk_a.albums WHERE id = 3;
SET LOCAL keys_guard.include_deleted = on;
SELECT id, deleted_at IS NOT NULL AS deleted, delete_request_id IS NOT NULL AS attributed
  FROM tenant_atk_a.photos WHERE id IN (3, 4) ORDER BY id;
COMMIT;

--
-- 6. Undo belongs to the tenant: the API role restores its own tenant's
-- rows, and nothing of another tenant's.
--
BEGIN;
SELECT keys_guard.set_context('atk_b', 'user_b', 'atk-req-b');
DELETE FROM public.atk_secret WHERE id = 2;
DELETE FROM tenant_atk_b.private WHERE id = 1;
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a', 'atk-req-a');
DELETE FROM public.atk_secret WHERE id = 1;
COMMIT;
SET ROLE kg_app;
SELECT keys_guard.restore('public.atk_secret', 1);
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a');
SAVEPOINT s;
SELECT keys_guard.restore('public.atk_secret', 2);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT keys_guard.restore('tenant_atk_b.private', 1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT keys_guard.restore_request('atk-req-b');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT keys_guard.hard_delete('public.atk_secret', 1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT keys_guard.restore('public.atk_secret', 1);
SELECT keys_guard.restore_request('atk-req-a');
SELECT id, secret FROM public.atk_secret;
COMMIT;
RESET ROLE;
BEGIN;
SELECT keys_guard.admin_context('auditor', 'attack suite check');
SELECT id, deleted_at IS NOT NULL AS deleted FROM public.atk_secret ORDER BY id;
SELECT id, deleted_at IS NOT NULL AS deleted FROM tenant_atk_b.private ORDER BY id;
COMMIT;
SELECT action, target FROM keys_guard.audit_log
 WHERE action = 'restore' AND outcome = 'ok' AND target LIKE '%atk_%' ORDER BY id;

--
-- 7. A WITH HOLD cursor outlives its transaction and its context: behind a
-- transaction pooler the next client could FETCH it.  Refused (55000),
-- like a session-wide context, unless session state is allowed.
--
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a');
DECLARE held CURSOR WITH HOLD FOR SELECT id, secret FROM public.atk_secret;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Without a context too: the rows would be read at commit, under
-- whatever context the transaction set by then.
BEGIN;
DECLARE held CURSOR WITH HOLD FOR SELECT 1;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- An ordinary cursor ends with its transaction.
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a');
DECLARE c CURSOR FOR SELECT id, secret FROM public.atk_secret;
FETCH ALL FROM c;
COMMIT;
RESET ROLE;
SET keys_guard.allow_session_context = on;
BEGIN;
DECLARE held CURSOR WITH HOLD FOR SELECT 1 AS allowed;
COMMIT;
FETCH ALL FROM held;
CLOSE held;
RESET keys_guard.allow_session_context;

--
-- 8. Transition tables hold the rows the statement changed: under a
-- tenant context, only that tenant's.
--
CREATE TABLE public.atk_transition_log (n bigint, tenants text);
CREATE FUNCTION public.atk_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.atk_transition_log
    SELECT count(*), string_agg(DISTINCT tenant_id, ',') FROM changed;
    RETURN NULL;
END
$$;
CREATE TRIGGER atk_transition AFTER UPDATE ON public.atk_kv
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION public.atk_transition();
GRANT INSERT ON public.atk_transition_log TO kg_app;
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('atk_a', 'user_a');
UPDATE public.atk_kv SET v = v || '!';
COMMIT;
RESET ROLE;
SELECT * FROM public.atk_transition_log;

--
-- 9. User code that keys_guard's own API runs: an event trigger fired by
-- the DDL of create_tenant() may neither write the registry nor weaken a
-- guard, although keys_guard's function is on the stack.
--
CREATE TABLE public.atk_evt_log (what text, outcome text);
CREATE FUNCTION public.atk_evil() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        UPDATE keys_guard.guarded_table SET soft_delete = false;
        INSERT INTO public.atk_evt_log VALUES ('registry update', 'allowed');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.atk_evt_log VALUES ('registry update', SQLSTATE);
    END;
    BEGIN
        EXECUTE 'ALTER TABLE public.atk_secret DISABLE ROW LEVEL SECURITY';
        INSERT INTO public.atk_evt_log VALUES ('disable row security', 'allowed');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.atk_evt_log VALUES ('disable row security', SQLSTATE);
    END;
END
$$;
CREATE EVENT TRIGGER atk_evil ON ddl_command_end EXECUTE FUNCTION public.atk_evil();
SELECT id FROM keys_guard.create_tenant('atk_c');
DROP EVENT TRIGGER atk_evil;
SELECT what, outcome, count(*) FROM public.atk_evt_log GROUP BY 1, 2 ORDER BY 1;
SELECT relation, soft_delete FROM keys_guard.guarded_tables WHERE relation::text = 'atk_secret';
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'public.atk_secret'::regclass;
