\i sql/fixture.psql
--
-- attack_review: attacks on the performance changes of 1.3 (an empty tenant
-- schema kept off search_path until a utility statement; the pooled tenant
-- trigger split into BEFORE INSERT and AFTER UPDATE).  docs/contract.md §3
-- (the tenant's schema comes first on search_path while its context lasts)
-- and §6 (no path around the rules).
--
\set VERBOSITY terse
SET client_min_messages = warning;
SELECT count(*) FROM (
    SELECT keys_guard.create_tenant(t)
      FROM unnest(ARRAY['atk_rv_a', 'atk_rv_b', 'atk_rv_c', 'atk_rv_d']) AS t) s;
RESET client_min_messages;
CREATE TABLE public.atk_rv_items (id int, what text);
INSERT INTO public.atk_rv_items VALUES (1, 'public, not the tenant''s');
GRANT SELECT ON public.atk_rv_items TO kg_app;

-- 1. A context set and rolled back in a savepoint: the outer context's
-- empty schema must still come first (§3), and CREATE without a schema
-- must land in it.
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
SAVEPOINT s;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
ROLLBACK TO s;
SELECT keys_guard.current_tenant();
SHOW search_path;
SELECT try('CREATE TABLE atk_rv_made (i int)');
SELECT relnamespace::regnamespace FROM pg_class WHERE relname = 'atk_rv_made';
ROLLBACK;

-- 2. The tenant's schema gets its first object after set_context() by a
-- statement that runs under its own search_path (a provisioning function):
-- an unqualified name must then resolve to the tenant's object, as it did
-- when the schema was always first.
CREATE FUNCTION public.atk_rv_provision(schema name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I.atk_rv_items (id int, what text)', schema);
    EXECUTE format('INSERT INTO %I.atk_rv_items VALUES (1, %L)', schema, 'the tenant''s own');
END
$$;
BEGIN;
SELECT keys_guard.set_context('atk_rv_c', 'reviewer');
SELECT public.atk_rv_provision('tenant_atk_rv_c');
SELECT what FROM atk_rv_items;
SELECT current_schema();
ROLLBACK;

-- 3. The same when another session creates the tenant's table while the
-- context's transaction runs (READ COMMITTED): a statement whose relation
-- now has a namesake in the tenant's schema is refused (40001: its names
-- were resolved without that schema); once the context is set again the
-- schema is first and the name resolves to the tenant's table.
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT format('dbname=%s port=%s host=%s', current_database(), current_setting('port'),
              split_part(current_setting('unix_socket_directories'), ',', 1)) AS atk_rv_conn \gset
BEGIN;
SELECT keys_guard.set_context('atk_rv_d', 'reviewer');
SELECT what FROM atk_rv_items;
SELECT dblink_exec(:'atk_rv_conn',
    'BEGIN; SELECT keys_guard.set_context(''atk_rv_d'', ''migration'');'
    ' CREATE TABLE tenant_atk_rv_d.atk_rv_items (id int, what text);'
    ' INSERT INTO tenant_atk_rv_d.atk_rv_items VALUES (1, ''the tenant''''s own''); COMMIT');
SAVEPOINT retry;
SELECT what FROM atk_rv_items;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO retry;
SELECT keys_guard.set_context('atk_rv_d', 'reviewer');
SELECT what FROM atk_rv_items;
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('atk_rv_d', 'reviewer');
SELECT what FROM atk_rv_items;
ROLLBACK;

-- 3b. A statement that names no such relation goes on, and the schema is
-- first from then on.
SET client_min_messages = warning;
SELECT count(*) FROM keys_guard.create_tenant('atk_rv_e');
RESET client_min_messages;
BEGIN;
SELECT keys_guard.set_context('atk_rv_e', 'reviewer');
SELECT current_setting('search_path') AS path_while_empty;
SELECT dblink_exec(:'atk_rv_conn',
    'BEGIN; SELECT keys_guard.set_context(''atk_rv_e'', ''migration'');'
    ' CREATE TABLE tenant_atk_rv_e.atk_rv_items (id int, what text);'
    ' INSERT INTO tenant_atk_rv_e.atk_rv_items VALUES (1, ''the tenant''''s own''); COMMIT');
SELECT 1 AS names_no_such_relation;
SELECT current_setting('search_path') AS path_after;
SELECT what FROM atk_rv_items;
ROLLBACK;

-- 4. Pooled table: a row of tenant a moved to tenant b by one statement
-- that switches the context after its UPDATE (§6: every row a statement
-- changes under a tenant context belongs to that tenant).
CREATE TABLE public.atk_rv_pool (id int PRIMARY KEY, tenant_id text, body text);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_pool', tenant_column => 'tenant_id');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.atk_rv_pool TO kg_app;
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_pool VALUES (1, NULL, 'a''s secret'), (2, NULL, 'a''s other secret');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
WITH moved AS (UPDATE atk_rv_pool SET tenant_id = (SELECT 'atk_rv_' || 'b') WHERE id = 1 RETURNING id)
SELECT keys_guard.set_context('atk_rv_b', 'reviewer') FROM moved;
\echo :LAST_ERROR_SQLSTATE
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
SELECT id, tenant_id, body FROM atk_rv_pool ORDER BY id;
COMMIT;
-- the same with the switch in a volatile function of the UPDATE itself
CREATE FUNCTION pg_temp.atk_rv_switch(t text) RETURNS text LANGUAGE sql VOLATILE AS
  $$ SELECT keys_guard.set_context(t, 'reviewer'); SELECT t $$;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
UPDATE atk_rv_pool SET tenant_id = pg_temp.atk_rv_switch('atk_rv_b') WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
SELECT id, tenant_id, body FROM atk_rv_pool ORDER BY id;
COMMIT;
RESET ROLE;

-- 5. A pooled table's tenant column under a nondeterministic collation:
-- "ci_a" and "cia" compare equal where punctuation is ignored, so the
-- tenant filter would show one tenant's rows to the other; protect_table
-- refuses it (22023).  (A table an earlier version guarded is filtered
-- byte for byte: sql/upgrade.sql.)
CREATE COLLATION atk_rv_ignore_punct (provider = icu, locale = 'und-u-ka-shifted', deterministic = false);
SELECT 'atk_rv_a' = 'atkrv_a' COLLATE atk_rv_ignore_punct AS ids_compare_equal;
CREATE TABLE public.atk_rv_ci_pool (id int PRIMARY KEY, tenant_id text COLLATE atk_rv_ignore_punct);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_ci_pool', tenant_column => 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE public.atk_rv_ci_pool;
DROP COLLATION atk_rv_ignore_punct;

-- 6. set_context(), use_api_key() and set_context_from_token() keep
-- PUBLIC's EXECUTE (1f8acf0) and refuse callers without the roles
-- themselves, before anything else.  A role with none of them
-- (kg_nobody) gets 42501 whatever it passes: no tenant existence oracle
-- (a tenant that exists and one that does not), no parse of the key or
-- token (a malformed one, none at all), no context.
SET ROLE kg_nobody;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context('atk_rv_no_such_tenant', 'reviewer');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context(NULL, NULL, NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.use_api_key('not a key');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.use_api_key(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.set_context_from_token(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.current_tenant() IS NULL AS no_context;

-- 6b. set_context_from_token() marks itself a secret call before that
-- check (so no message of it shows the statement as it was).  A caller
-- who catches the refusal in an exception block must not keep the mark:
-- it would redact every later message of the transaction (the bind
-- parameters of its DETAIL and CONTEXT, the statement in the server log)
-- and so hide what the caller does next from the server log.  The
-- WARNING of the next statement keeps its DETAIL as it was.
\set VERBOSITY default
BEGIN;
DO $$
BEGIN
    BEGIN
        PERFORM keys_guard.set_context_from_token('atk_rv.not.a_token');
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'refused: %', SQLSTATE;
    END;
END $$;
DO $$ BEGIN RAISE WARNING 'after the refusal'
    USING DETAIL = 'parameters: $1 = ''shown as it was, not redacted'''; END $$;
ROLLBACK;
RESET ROLE;
-- the same for the gateway, whose invalid token is refused (28000)
SET ROLE kg_app;
BEGIN;
DO $$
BEGIN
    BEGIN
        PERFORM keys_guard.set_context_from_token('atk_rv.not.a_token');
    EXCEPTION WHEN invalid_authorization_specification THEN
        RAISE NOTICE 'refused: %', SQLSTATE;
    END;
END $$;
DO $$ BEGIN RAISE WARNING 'after the refusal'
    USING DETAIL = 'parameters: $1 = ''shown as it was, not redacted'''; END $$;
ROLLBACK;
RESET ROLE;
\set VERBOSITY terse

-- 7. ExecutorCheckPerms remembers the range table it checked for the
-- ExecutorStart that follows (ad8dd7a).  A COPY checks a range table of its
-- own and starts no executor; a cursor on a guarded table declared after
-- it, or after a nested statement on an unguarded table, is still
-- recorded, and cannot be read under another tenant's context (42501).
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
COPY public.atk_rv_items TO STDOUT;
DECLARE c1 CURSOR FOR SELECT id, body FROM atk_rv_pool ORDER BY id;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
FETCH ALL FROM c1;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
CREATE FUNCTION pg_temp.atk_rv_count_items() RETURNS bigint LANGUAGE plpgsql AS
  $$ BEGIN RETURN (SELECT count(*) FROM public.atk_rv_items); END $$;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
DECLARE c2 CURSOR FOR
    SELECT id, body FROM atk_rv_pool WHERE id > (SELECT pg_temp.atk_rv_count_items()) - 10;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
FETCH ALL FROM c2;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- the same through EXPLAIN ANALYZE of a statement run in between
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
DECLARE c3 CURSOR FOR SELECT id, body FROM atk_rv_pool ORDER BY id;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM public.atk_rv_items;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
FETCH ALL FROM c3;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;

-- 8. kg_tenant_by_id() remembers the last tenant it looked up (ad8dd7a):
-- a tenant deleted right after it was used, in the same session, is
-- refused at once; restored, it is usable again.
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('atk_rv_c', 'reviewer');
SELECT count(*) FROM atk_rv_pool;
COMMIT;
RESET ROLE;
SELECT DISTINCT status FROM keys_guard.delete_tenant('atk_rv_c');
SET ROLE kg_app;
SELECT keys_guard.set_context('atk_rv_c', 'reviewer');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT status FROM keys_guard.restore_tenant('atk_rv_c');
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('atk_rv_c', 'reviewer');
SELECT count(*) FROM atk_rv_pool;
COMMIT;
RESET ROLE;
-- 9. User code that PostgreSQL calls through a function-manager entry it
-- caches across statements: a range type's subtype_diff function, kept in
-- the type cache and called by the GiST index's penalty function.  Looked
-- up first by an ordinary insert (no span of keys_guard's open), it is then
-- called by keys_guard's soft-delete cascade, which updates the child's
-- rows (the purge index makes that update insert into every index).  It
-- must run as the user code it is: under tenant a's context it sees a's
-- rows of a pooled table, never b's (§6, no path around the rules).
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_secrets (id int PRIMARY KEY, tenant_id text, body text);
CREATE FUNCTION public.atk_rv_diff(x int, y int) RETURNS float8
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    seen text;
BEGIN
    SELECT string_agg(body, ',' ORDER BY body) INTO seen FROM public.atk_rv_secrets;
    IF seen IS DISTINCT FROM current_setting('atk_rv.seen', true) AND
       coalesce(seen, '') > coalesce(current_setting('atk_rv.seen', true), '') THEN
        PERFORM set_config('atk_rv.seen', seen, false);
    END IF;
    RETURN x - y;
END
$$;
CREATE TYPE public.atk_rv_range AS RANGE (subtype = int, subtype_diff = public.atk_rv_diff);
CREATE TABLE public.atk_rv_parent (id int PRIMARY KEY, tenant_id text);
CREATE TABLE public.atk_rv_child (
    id int PRIMARY KEY, tenant_id text,
    parent_id int REFERENCES public.atk_rv_parent ON DELETE CASCADE,
    span public.atk_rv_range);
CREATE INDEX ON public.atk_rv_child USING gist (span);
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_secrets', tenant_column => 'tenant_id');
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_parent', tenant_column => 'tenant_id');
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_child', tenant_column => 'tenant_id');
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_secrets VALUES (2, NULL, 'b''s secret');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_secrets VALUES (1, NULL, 'a''s secret');
INSERT INTO atk_rv_parent VALUES (1, NULL), (2, NULL);
INSERT INTO atk_rv_child
SELECT i, NULL, 1 + i % 2, public.atk_rv_range(i * 10, i * 10 + 5) FROM generate_series(1, 3000) i;
COMMIT;
SELECT set_config('atk_rv.seen', '', false);
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
DELETE FROM atk_rv_parent WHERE id = 1;
SELECT count(*) FROM atk_rv_child;
COMMIT;
SELECT current_setting('atk_rv.seen') AS seen_in_cascade;
RESET ROLE;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_child');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_parent');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_secrets');
DROP TABLE public.atk_rv_child, public.atk_rv_parent, public.atk_rv_secrets;
DROP TYPE public.atk_rv_range;
DROP FUNCTION public.atk_rv_diff(int, int);

-- 10. User code that no function frame counts: a CHECK constraint made of
-- built-in functions only, one of which runs a query of its own
-- (query_to_xml(); ts_stat() and the other *_to_xml() functions alike).
-- keys_guard's soft-delete cascade updates the child's rows, so the
-- constraint runs inside the cascade; its query is user code like any
-- other and under tenant a's context sees a's rows, never b's (§6).
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_secrets (id int PRIMARY KEY, tenant_id text, body text);
CREATE TABLE public.atk_rv_parent (id int PRIMARY KEY, tenant_id text);
CREATE TABLE public.atk_rv_child (
    id int PRIMARY KEY, tenant_id text,
    parent_id int REFERENCES public.atk_rv_parent ON DELETE CASCADE,
    CHECK (set_config('atk_rv.seen', (xpath('//s/text()', query_to_xml(
        'SELECT string_agg(body, '','' ORDER BY body) AS s FROM public.atk_rv_secrets',
        false, false, '')))[1]::text, false) IS NOT NULL));
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_secrets', tenant_column => 'tenant_id');
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_parent', tenant_column => 'tenant_id');
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_child', tenant_column => 'tenant_id');
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_secrets VALUES (2, NULL, 'b''s secret');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_secrets VALUES (1, NULL, 'a''s secret');
INSERT INTO atk_rv_parent VALUES (1, NULL), (2, NULL);
INSERT INTO atk_rv_child VALUES (1, NULL, 1), (2, NULL, 2);
COMMIT;
SELECT set_config('atk_rv.seen', '', false);
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
DELETE FROM atk_rv_parent WHERE id = 1;
SELECT count(*) FROM atk_rv_child;
COMMIT;
SELECT current_setting('atk_rv.seen') AS seen_in_cascade;
RESET ROLE;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_child');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_parent');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_secrets');
DROP TABLE public.atk_rv_child, public.atk_rv_parent, public.atk_rv_secrets;

-- 11. User code that the planner runs: a row security policy of the table
-- keys_guard's restore changes (guarded tables run under FORCE ROW LEVEL
-- SECURITY) compares a column with a stable built-in that runs a query of
-- its own (table_to_xml(), here of a view).  The planner evaluates stable
-- functions to estimate a clause's selectivity, so the view's query runs
-- while the restore's statement is planned, not run; it is user code like
-- any other and under tenant a's context sees a's rows, never b's (§6).
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_secrets (id int PRIMARY KEY, tenant_id text, body text);
CREATE TABLE public.atk_rv_notes (id int PRIMARY KEY, tenant_id text);
CREATE VIEW public.atk_rv_peek AS
    SELECT string_agg(body, ',' ORDER BY body)::int AS s FROM public.atk_rv_secrets;
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_secrets', tenant_column => 'tenant_id');
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_notes', tenant_column => 'tenant_id');
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_secrets VALUES (2, NULL, 'b''s secret');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_secrets VALUES (1, NULL, 'a''s secret');
INSERT INTO atk_rv_notes VALUES (1, NULL);
DELETE FROM atk_rv_notes WHERE id = 1;
COMMIT;
CREATE POLICY atk_rv_peek ON public.atk_rv_notes AS RESTRICTIVE FOR UPDATE
    USING (id <> length(table_to_xml('public.atk_rv_peek', false, false, '')::text));
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
SELECT keys_guard.restore('public.atk_rv_notes', 1);
ROLLBACK;
DROP POLICY atk_rv_peek ON public.atk_rv_notes;
DROP VIEW public.atk_rv_peek;

-- 12. User code that calls one of keys_guard's own functions: a row
-- security policy of the table keys_guard's restore changes calls
-- keys_guard._preview() (granted to keys_guard_admin, which kg_migrator
-- is) with a filter of its own.  The function runs as keys_guard's, but
-- for the user code that called it: under tenant a's context its count
-- sees a's rows, never b's.  (keys_guard's C code calls its own functions
-- directly, never from a statement of a span.)  The tables of part 11.
CREATE POLICY atk_rv_preview ON public.atk_rv_notes AS RESTRICTIVE FOR UPDATE
    USING ((SELECT count(*) FROM keys_guard._preview('public.atk_rv_secrets',
        $f$(SELECT string_agg(body, ',' ORDER BY body) FROM public.atk_rv_secrets)::int > 0$f$,
        0, NULL, '{}')) > 0);
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
SELECT keys_guard.restore('public.atk_rv_notes', 1);
ROLLBACK;
DROP POLICY atk_rv_preview ON public.atk_rv_notes;
RESET ROLE;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_notes');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_secrets');
DROP TABLE public.atk_rv_notes, public.atk_rv_secrets;

-- 13. The same through PostgreSQL's own referential action: an ON UPDATE
-- CASCADE of a guarded parent's key updates the child's rows with row
-- security relaxed (SECURITY_NOFORCE_RLS), a query keys_guard trusts as
-- PostgreSQL's; the child's CHECK constraint runs a query of its own
-- (query_to_xml()) inside it, which is user code and under tenant a's
-- context sees a's rows, never b's.
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_secrets (id int PRIMARY KEY, tenant_id text, body text);
CREATE TABLE public.atk_rv_parent (id int PRIMARY KEY, tenant_id text);
CREATE TABLE public.atk_rv_child (
    id int PRIMARY KEY, tenant_id text,
    parent_id int REFERENCES public.atk_rv_parent ON UPDATE CASCADE,
    CHECK (set_config('atk_rv.seen', (xpath('//s/text()', query_to_xml(
        'SELECT string_agg(body, '','' ORDER BY body) AS s FROM public.atk_rv_secrets',
        false, false, '')))[1]::text, false) IS NOT NULL));
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_secrets', tenant_column => 'tenant_id');
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_parent', tenant_column => 'tenant_id');
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_child', tenant_column => 'tenant_id');
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_secrets VALUES (2, NULL, 'b''s secret');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_secrets VALUES (1, NULL, 'a''s secret');
INSERT INTO atk_rv_parent VALUES (1, NULL);
INSERT INTO atk_rv_child VALUES (1, NULL, 1);
COMMIT;
SELECT set_config('atk_rv.seen', '', false);
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
UPDATE atk_rv_parent SET id = 10 WHERE id = 1;
SELECT parent_id FROM atk_rv_child;
COMMIT;
SELECT current_setting('atk_rv.seen') AS seen_in_ri_cascade;
RESET ROLE;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_child');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_parent');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_secrets');
DROP TABLE public.atk_rv_child, public.atk_rv_parent, public.atk_rv_secrets;

-- 14. User code that starts a referential action of its own inside
-- PostgreSQL's: a BEFORE UPDATE row trigger (PL/pgSQL) of a guarded child
-- fires inside the parent's ON UPDATE CASCADE (a NOFORCE RI query, which
-- keys_guard trusts); it changes keys of a guarded grandchild, whose own ON
-- UPDATE CASCADE to a great-grandchild then starts inside the trigger.  The
-- trigger is user code: under tenant a's context it sees and changes a's
-- grandchild rows only, never b's row of the same group (§6).  The nested
-- cascade still carries a's keys down: no row of a's is left pointing at a
-- key that is gone.  The same with keys_guard's soft delete: DELETE of the
-- parent soft-deletes the child by keys_guard's cascade (an UPDATE, so the
-- trigger fires again inside it), the trigger deletes a's grandchild (a
-- soft delete too) and keys_guard's cascade soft-deletes a's
-- great-grandchild; b's rows stay live and untouched.  Then the same with
-- PostgreSQL's own ON DELETE CASCADE, on tables guarded without soft
-- delete (a BEFORE DELETE trigger).  (Not covered: a row of b's that
-- references a key of a's; the nested action runs as the trigger's user
-- code, filtered to a's rows, and would leave such a row behind.  Under a
-- tenant context such a row cannot be written, part 15; an admin context
-- can, through a foreign key without the tenant columns, which doctor()
-- reports as cross_tenant_foreign_key, sql/doctor.sql.)
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_parent (id int PRIMARY KEY, tenant_id text);
CREATE TABLE public.atk_rv_child (
    id int PRIMARY KEY, tenant_id text,
    parent_id int REFERENCES public.atk_rv_parent ON UPDATE CASCADE ON DELETE CASCADE);
CREATE TABLE public.atk_rv_grand (id int PRIMARY KEY, tenant_id text, grp int);
CREATE TABLE public.atk_rv_great (
    id int PRIMARY KEY, tenant_id text,
    grand_id int REFERENCES public.atk_rv_grand ON UPDATE CASCADE ON DELETE CASCADE);
CREATE FUNCTION public.atk_rv_child_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('atk_rv.seen', current_setting('atk_rv.seen') || TG_OP || ' ' ||
        coalesce((SELECT string_agg(id || ':' || tenant_id, ',' ORDER BY id)
                    FROM public.atk_rv_grand), '-') || ';', false);
    IF TG_OP = 'DELETE' THEN
        DELETE FROM public.atk_rv_grand WHERE grp = OLD.parent_id;
        RETURN OLD;
    ELSIF NEW.parent_id IS DISTINCT FROM OLD.parent_id THEN
        UPDATE public.atk_rv_grand SET id = id + 100, grp = NEW.parent_id
         WHERE grp = OLD.parent_id;
    ELSE
        DELETE FROM public.atk_rv_grand WHERE grp = OLD.parent_id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER atk_rv_child_trg BEFORE UPDATE ON public.atk_rv_child
    FOR EACH ROW EXECUTE FUNCTION public.atk_rv_child_trg();
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_parent', tenant_column => 'tenant_id');
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_child', tenant_column => 'tenant_id');
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_grand', tenant_column => 'tenant_id');
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_great', tenant_column => 'tenant_id');
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_grand VALUES (2, NULL, 1);
INSERT INTO atk_rv_great VALUES (2, NULL, 2);
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_parent VALUES (1, NULL);
INSERT INTO atk_rv_child VALUES (1, NULL, 1);
INSERT INTO atk_rv_grand VALUES (1, NULL, 1);
INSERT INTO atk_rv_great VALUES (1, NULL, 1);
COMMIT;
SELECT set_config('atk_rv.seen', '', false);
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
UPDATE atk_rv_parent SET id = 10 WHERE id = 1;
SELECT id, parent_id FROM atk_rv_child;
SELECT id, grp FROM atk_rv_grand;
SELECT id, grand_id FROM atk_rv_great;
COMMIT;
SELECT current_setting('atk_rv.seen') AS seen_in_ri_cascade;
SELECT set_config('atk_rv.seen', '', false);
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
DELETE FROM atk_rv_parent WHERE id = 10;
SELECT count(*) FROM atk_rv_child;
SELECT count(*) FROM atk_rv_grand;
SELECT count(*) FROM atk_rv_great;
COMMIT;
SELECT current_setting('atk_rv.seen') AS seen_in_soft_cascade;
RESET ROLE;
SET keys_guard.bypass = on;
SELECT id, tenant_id, grp, deleted_at IS NOT NULL AS deleted FROM public.atk_rv_grand ORDER BY id;
SELECT id, tenant_id, grand_id, deleted_at IS NOT NULL AS deleted,
       EXISTS (SELECT FROM public.atk_rv_grand g WHERE g.id = x.grand_id) AS parent_exists
  FROM public.atk_rv_great x ORDER BY id;
RESET keys_guard.bypass;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_great');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_grand');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_child');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_parent');
DROP TABLE public.atk_rv_great, public.atk_rv_grand, public.atk_rv_child, public.atk_rv_parent;
-- 14b. PostgreSQL's ON DELETE CASCADE, tables guarded without soft delete.
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_parent (id int PRIMARY KEY, tenant_id text);
CREATE TABLE public.atk_rv_child (
    id int PRIMARY KEY, tenant_id text,
    parent_id int REFERENCES public.atk_rv_parent ON DELETE CASCADE);
CREATE TABLE public.atk_rv_grand (id int PRIMARY KEY, tenant_id text, grp int);
CREATE TABLE public.atk_rv_great (
    id int PRIMARY KEY, tenant_id text,
    grand_id int REFERENCES public.atk_rv_grand ON DELETE CASCADE);
CREATE TRIGGER atk_rv_child_trg BEFORE DELETE ON public.atk_rv_child
    FOR EACH ROW EXECUTE FUNCTION public.atk_rv_child_trg();
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_parent', tenant_column => 'tenant_id', soft_delete => false);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_child', tenant_column => 'tenant_id', soft_delete => false);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_grand', tenant_column => 'tenant_id', soft_delete => false);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_great', tenant_column => 'tenant_id', soft_delete => false);
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_grand VALUES (2, NULL, 1);
INSERT INTO atk_rv_great VALUES (2, NULL, 2);
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_parent VALUES (1, NULL);
INSERT INTO atk_rv_child VALUES (1, NULL, 1);
INSERT INTO atk_rv_grand VALUES (1, NULL, 1);
INSERT INTO atk_rv_great VALUES (1, NULL, 1);
COMMIT;
SELECT set_config('atk_rv.seen', '', false);
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
DELETE FROM atk_rv_parent WHERE id = 1;
SELECT count(*) FROM atk_rv_child;
SELECT count(*) FROM atk_rv_grand;
SELECT count(*) FROM atk_rv_great;
COMMIT;
SELECT current_setting('atk_rv.seen') AS seen_in_ri_cascade;
RESET ROLE;
SET keys_guard.bypass = on;
SELECT id, tenant_id, grp FROM public.atk_rv_grand ORDER BY id;
SELECT id, tenant_id, grand_id,
       EXISTS (SELECT FROM public.atk_rv_grand g WHERE g.id = x.grand_id) AS parent_exists
  FROM public.atk_rv_great x ORDER BY id;
RESET keys_guard.bypass;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_great');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_grand');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_child');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_parent');
DROP TABLE public.atk_rv_great, public.atk_rv_grand, public.atk_rv_child, public.atk_rv_parent;
DROP FUNCTION public.atk_rv_child_trg();

-- 15. A reference to another tenant's row.  PostgreSQL checks that a
-- referenced row exists past row security, as the referenced table's
-- owner; keys_guard trusts that check as PostgreSQL's own, but under a
-- tenant it finds that tenant's rows only.  So tenant b's row can neither
-- reference a's customer (INSERT, UPDATE, a deferred key checked at
-- COMMIT, a table referencing itself; COPY FROM is refused by PostgreSQL
-- itself under forced row security) nor learn that a's key exists: the
-- error is the one for a key that exists nowhere, without the key's value.
-- Such a reference is what part 14's nested cascade would leave behind.
-- a's own references, cascades and NO ACTION checks work as before.
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_cust (id int PRIMARY KEY, tenant_id text,
                                 parent_id int REFERENCES public.atk_rv_cust);
CREATE TABLE public.atk_rv_inv (id int PRIMARY KEY, tenant_id text,
                                cust_id int REFERENCES public.atk_rv_cust ON DELETE CASCADE);
CREATE TABLE public.atk_rv_note (id int PRIMARY KEY, tenant_id text,
                                 cust_id int REFERENCES public.atk_rv_cust
                                     DEFERRABLE INITIALLY DEFERRED);
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_cust', tenant_column => 'tenant_id', soft_delete => false);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_inv', tenant_column => 'tenant_id', soft_delete => false);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_note', tenant_column => 'tenant_id', soft_delete => false);
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_cust VALUES (1, NULL, NULL);
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_cust VALUES (2, NULL, NULL);
INSERT INTO atk_rv_inv VALUES (2, NULL, 2);
COMMIT;
-- b names a's customer 1, then a key that exists nowhere: the same error.
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_inv VALUES (3, NULL, 1);
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_inv VALUES (3, NULL, 999);
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
UPDATE atk_rv_inv SET cust_id = 1 WHERE id = 2;
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
COPY atk_rv_inv (id, cust_id) FROM stdin;
4	1
\.
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_note VALUES (1, NULL, 1);
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_cust VALUES (5, NULL, 1);
ROLLBACK;
-- b's own references hold.
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_note VALUES (2, NULL, 2);
INSERT INTO atk_rv_cust VALUES (6, NULL, 2);
COMMIT;
-- a's: a reference, the cascade of a's DELETE, and NO ACTION refusing the
-- DELETE of a customer that a's own row still references.
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_inv VALUES (1, NULL, 1);
INSERT INTO atk_rv_cust VALUES (7, NULL, 1);
DELETE FROM atk_rv_cust WHERE id = 1;
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_inv VALUES (1, NULL, 1);
DELETE FROM atk_rv_cust WHERE id = 1;
SELECT count(*) AS a_invoices_left FROM atk_rv_inv;
ROLLBACK;
-- An admin context writes what it names, across tenants too (doctor()
-- reports the keys that allow it).
RESET ROLE;
BEGIN;
SELECT keys_guard.admin_context('reviewer', 'attack review: admin reference');
INSERT INTO public.atk_rv_inv VALUES (8, 'atk_rv_b', 1);
SELECT id, tenant_id, cust_id FROM public.atk_rv_inv WHERE id = 8;
ROLLBACK;
SET keys_guard.bypass = on;
SELECT id, tenant_id, cust_id FROM public.atk_rv_inv ORDER BY id;
SELECT id, tenant_id, cust_id FROM public.atk_rv_note ORDER BY id;
SELECT id, tenant_id, parent_id FROM public.atk_rv_cust ORDER BY id;
RESET keys_guard.bypass;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_note');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_inv');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_cust');
DROP TABLE public.atk_rv_note, public.atk_rv_inv, public.atk_rv_cust;

-- 16. Part 15's lookup, attacked.  (a) A table that shares its parent's
-- primary key (atk_rv_ext.id references atk_rv_acct.id) and is itself
-- referenced: the check of a reference to it and the NO ACTION check that
-- its key is still referenced read the same columns of it, so telling
-- them apart by columns alone left the check unfiltered and b referenced
-- a's row.  The RI query that acts on referencing rows puts the
-- parameter first ($1 = column), the lookup of a referenced row puts the
-- column first.  (b) Without a context the lookup found every tenant's
-- rows, through a table keys_guard does not guard (an existence oracle),
-- and the plan it was made with was reused once a tenant was set, which
-- does not replan: b, in the same session, referenced a's key.  Without
-- a context the lookup now finds no pooled row.  (c) What held: a UNIQUE
-- column that is not the primary key, a bigint key referenced by an int
-- column, ON CONFLICT DO UPDATE, MERGE, and ALTER TABLE ... ADD FOREIGN
-- KEY under a tenant context (refused with 23503 for a's key as for no
-- key, before the DDL itself is refused).
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_acct (id int PRIMARY KEY, tenant_id text, code text UNIQUE, big bigint UNIQUE);
CREATE TABLE public.atk_rv_ext (id int PRIMARY KEY REFERENCES public.atk_rv_acct, tenant_id text);
CREATE TABLE public.atk_rv_ord (id int PRIMARY KEY, tenant_id text,
                                ext_id int REFERENCES public.atk_rv_ext,
                                code text REFERENCES public.atk_rv_acct (code),
                                big int REFERENCES public.atk_rv_acct (big));
CREATE TABLE public.atk_rv_plain (x int REFERENCES public.atk_rv_acct);
CREATE TABLE public.atk_rv_probe (x int);
INSERT INTO public.atk_rv_probe VALUES (1);
GRANT INSERT ON public.atk_rv_plain TO kg_app;
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_acct', tenant_column => 'tenant_id', soft_delete => false);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_ext', tenant_column => 'tenant_id', soft_delete => false);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_ord', tenant_column => 'tenant_id', soft_delete => false);
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_acct VALUES (1, NULL, 'a1', 11);
INSERT INTO atk_rv_ext VALUES (1, NULL);
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO atk_rv_acct VALUES (2, NULL, 'b2', 22);
INSERT INTO atk_rv_ext VALUES (2, NULL);
COMMIT;
-- (a), (c): b names a's keys, then keys that exist nowhere: the same errors.
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
SELECT try('INSERT INTO atk_rv_ord (id, ext_id) VALUES (11, 1)');
SELECT try('INSERT INTO atk_rv_ord (id, ext_id) VALUES (12, 999)');
SELECT try('INSERT INTO atk_rv_ord (id, code) VALUES (13, ''a1'')');
SELECT try('INSERT INTO atk_rv_ord (id, code) VALUES (14, ''zz'')');
SELECT try('INSERT INTO atk_rv_ord (id, big) VALUES (15, 11)');
SELECT try('INSERT INTO atk_rv_ord (id, big) VALUES (16, 999)');
INSERT INTO atk_rv_ord (id, ext_id, code, big) VALUES (2, 2, 'b2', 22);
SELECT try('INSERT INTO atk_rv_ord (id, code) VALUES (2, ''b2'') ON CONFLICT (id) DO UPDATE SET code = ''a1''');
SELECT try('MERGE INTO atk_rv_ord o USING (SELECT 3 AS id) s ON o.id = s.id WHEN NOT MATCHED THEN INSERT (id, ext_id) VALUES (3, 1)');
SELECT try('MERGE INTO atk_rv_ord o USING (SELECT 2 AS id) s ON o.id = s.id WHEN MATCHED THEN UPDATE SET ext_id = 1');
SELECT try('ALTER TABLE public.atk_rv_probe ADD FOREIGN KEY (x) REFERENCES public.atk_rv_acct');
UPDATE public.atk_rv_probe SET x = 999;
SELECT try('ALTER TABLE public.atk_rv_probe ADD FOREIGN KEY (x) REFERENCES public.atk_rv_acct');
COMMIT;
-- a's own references to the shared key hold, and the NO ACTION checks on
-- it still see the rows that reference it.
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_ord (id, ext_id, code, big) VALUES (1, 1, 'a1', 11);
SELECT try('DELETE FROM atk_rv_ext WHERE id = 1');
SELECT try('DELETE FROM atk_rv_acct WHERE id = 1');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
DELETE FROM atk_rv_ord WHERE id = 1;
DELETE FROM atk_rv_ext WHERE id = 1;
SELECT count(*) AS a_ext_left FROM atk_rv_ext;
ROLLBACK;
RESET ROLE;
-- (b) Without a context: a's key and no key, the same error, again and
-- again (a cached plan); then under b, in the same session.
SET ROLE kg_app;
SELECT try('INSERT INTO public.atk_rv_plain VALUES (1)') FROM generate_series(1, 7);
SELECT try('INSERT INTO public.atk_rv_plain VALUES (999)');
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
SELECT try('INSERT INTO public.atk_rv_plain VALUES (1)');
INSERT INTO public.atk_rv_plain VALUES (2);
COMMIT;
RESET ROLE;
SET keys_guard.bypass = on;
SELECT * FROM public.atk_rv_plain;
SELECT id, tenant_id, ext_id, code, big FROM public.atk_rv_ord ORDER BY id;
SELECT id, tenant_id FROM public.atk_rv_ext ORDER BY id;
RESET keys_guard.bypass;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_ord');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_ext');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_acct');
DROP TABLE public.atk_rv_probe, public.atk_rv_plain, public.atk_rv_ord, public.atk_rv_ext, public.atk_rv_acct;

-- (d) More that held: a partition guarded as a pooled table under a
-- partitioned parent that a foreign key references, and ON UPDATE CASCADE
-- of a's own keys in a table that references itself.
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_pp (id int PRIMARY KEY, tenant_id text) PARTITION BY RANGE (id);
CREATE TABLE public.atk_rv_pp1 PARTITION OF public.atk_rv_pp FOR VALUES FROM (0) TO (1000);
CREATE TABLE public.atk_rv_pc (id int PRIMARY KEY, tenant_id text, pp_id int REFERENCES public.atk_rv_pp);
CREATE TABLE public.atk_rv_tree (id int PRIMARY KEY, tenant_id text,
                                 parent_id int REFERENCES public.atk_rv_tree ON UPDATE CASCADE);
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_pp1', tenant_column => 'tenant_id', soft_delete => false);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_pc', tenant_column => 'tenant_id', soft_delete => false);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_tree', tenant_column => 'tenant_id', soft_delete => false);
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_pp1 VALUES (1, NULL);
INSERT INTO atk_rv_pc VALUES (1, NULL, 1);
INSERT INTO atk_rv_tree VALUES (1, NULL, NULL), (2, NULL, 1);
UPDATE atk_rv_tree SET id = 10 WHERE id = 1;
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
SELECT try('INSERT INTO atk_rv_pc VALUES (2, NULL, 1)');
SELECT try('INSERT INTO atk_rv_pc VALUES (3, NULL, 999)');
SELECT try('INSERT INTO atk_rv_tree VALUES (3, NULL, 10)');
ROLLBACK;
RESET ROLE;
SET keys_guard.bypass = on;
SELECT id, tenant_id, parent_id FROM public.atk_rv_tree ORDER BY id;
SELECT id, tenant_id, pp_id FROM public.atk_rv_pc ORDER BY id;
RESET keys_guard.bypass;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_tree');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_pc');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_pp1');
DROP TABLE public.atk_rv_tree, public.atk_rv_pc, public.atk_rv_pp;

-- (e) keys_guard's own purge, without a context as the worker runs it,
-- still finds the row an ON DELETE SET DEFAULT key falls back to (the
-- lookup filtered without a context refused it).
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_sdp (id int PRIMARY KEY, tenant_id text);
CREATE TABLE public.atk_rv_sdc (id int PRIMARY KEY,
                                p int DEFAULT 0 REFERENCES public.atk_rv_sdp ON DELETE SET DEFAULT);
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_sdp', tenant_column => 'tenant_id', grace => '0 seconds');
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_sdp VALUES (0, NULL), (1, NULL);
INSERT INTO public.atk_rv_sdc VALUES (1, 1);
DELETE FROM atk_rv_sdp WHERE id = 1;
COMMIT;
RESET ROLE;
SELECT relation, purged, skipped FROM keys_guard.purge_now('public.atk_rv_sdp');
SELECT * FROM public.atk_rv_sdc;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_sdp');
DROP TABLE public.atk_rv_sdc, public.atk_rv_sdp;

-- (f) A deferred key checked after the context is given up: anyone may
-- call clear_context(), and the check at COMMIT or at SET CONSTRAINTS
-- then ran without a context, which found a's row (b's row referencing it
-- was committed).  It now finds none.
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_dc (id int PRIMARY KEY, tenant_id text);
CREATE TABLE public.atk_rv_dn (id int PRIMARY KEY, tenant_id text,
                               dc_id int REFERENCES public.atk_rv_dc DEFERRABLE INITIALLY DEFERRED);
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_dc', tenant_column => 'tenant_id', soft_delete => false);
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_dn', tenant_column => 'tenant_id', soft_delete => false);
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_dc VALUES (1, NULL);
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO public.atk_rv_dn VALUES (1, NULL, 1);
SELECT keys_guard.clear_context();
COMMIT;
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO public.atk_rv_dn VALUES (2, NULL, 1);
SELECT keys_guard.clear_context();
SET CONSTRAINTS ALL IMMEDIATE;
ROLLBACK;
RESET ROLE;
SET keys_guard.bypass = on;
SELECT id, tenant_id, dc_id FROM public.atk_rv_dn ORDER BY id;
RESET keys_guard.bypass;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_dn');
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_dc');
DROP TABLE public.atk_rv_dn, public.atk_rv_dc;

-- (g) ALTER TABLE ... ADD FOREIGN KEY to a pooled table by a role that
-- does not own it (PostgreSQL then checks the existing rows one by one,
-- past row security): without a context it is refused as any access to
-- guarded data is (42501 no tenant context), so it tells no one which
-- keys exist; under an admin context the key is added.
CREATE ROLE atk_rv_mig2;
GRANT CREATE ON SCHEMA public TO atk_rv_mig2;
SET ROLE kg_migrator;
CREATE TABLE public.atk_rv_gp (id int PRIMARY KEY, tenant_id text);
GRANT REFERENCES, SELECT ON public.atk_rv_gp TO atk_rv_mig2;
RESET ROLE;
SELECT count(*) FROM keys_guard.protect_table('public.atk_rv_gp', tenant_column => 'tenant_id', soft_delete => false);
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO atk_rv_gp VALUES (1, NULL);
COMMIT;
SET ROLE atk_rv_mig2;
CREATE TABLE public.atk_rv_gc (x int);
INSERT INTO public.atk_rv_gc VALUES (1);
SELECT try('ALTER TABLE public.atk_rv_gc ADD FOREIGN KEY (x) REFERENCES public.atk_rv_gp');
RESET ROLE;
GRANT keys_guard_admin TO atk_rv_mig2;
SET ROLE atk_rv_mig2;
BEGIN;
SELECT keys_guard.admin_context('reviewer', 'attack review: a foreign key to a pooled table');
SELECT try('ALTER TABLE public.atk_rv_gc ADD FOREIGN KEY (x) REFERENCES public.atk_rv_gp');
COMMIT;
SELECT count(*) AS foreign_keys FROM pg_constraint WHERE conrelid = 'public.atk_rv_gc'::regclass;
DROP TABLE public.atk_rv_gc;
RESET ROLE;
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_gp');
DROP TABLE public.atk_rv_gp;
REVOKE CREATE ON SCHEMA public FROM atk_rv_mig2;
REVOKE keys_guard_admin FROM atk_rv_mig2;
DROP ROLE atk_rv_mig2;

-- 17. A parallel worker runs a plan fragment that its leader checked.  SQL
-- that a function runs in the worker is not part of it, also when the
-- function runs while the fragment starts (initial partition pruning of a
-- partitioned table): it is checked like any other statement (§6), here
-- against the leader's context, tenant atk_rv_a.
CREATE TABLE tenant_atk_rv_b.atk_rv_secret (s text);
BEGIN;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO tenant_atk_rv_b.atk_rv_secret VALUES ('b''s secret');
COMMIT;
GRANT USAGE ON SCHEMA tenant_atk_rv_b TO kg_app;
GRANT SELECT ON tenant_atk_rv_b.atk_rv_secret TO kg_app;
CREATE TABLE public.atk_rv_part (k int) PARTITION BY LIST (k);
CREATE TABLE public.atk_rv_part1 PARTITION OF public.atk_rv_part FOR VALUES IN (1);
CREATE TABLE public.atk_rv_part2 PARTITION OF public.atk_rv_part FOR VALUES IN (2);
INSERT INTO public.atk_rv_part VALUES (1), (2);
GRANT SELECT ON public.atk_rv_part TO kg_app;
CREATE FUNCTION public.atk_rv_in_worker() RETURNS int
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF pg_backend_pid()::text <> current_setting('atk_rv.leader') THEN
        RAISE EXCEPTION 'read in a parallel worker: %',
            (SELECT string_agg(s, ',') FROM tenant_atk_rv_b.atk_rv_secret);
    END IF;
    RETURN 1;
END
$$;
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
SELECT set_config('atk_rv.leader', pg_backend_pid()::text, true) IS NOT NULL AS leader_noted;
SET LOCAL force_parallel_mode = on;
SELECT count(*) FROM public.atk_rv_part WHERE k = public.atk_rv_in_worker();
ROLLBACK;
-- The same statement's fragment itself runs in the worker, unchecked there
-- (its leader checked it): a plain parallel read of the tenant's own data.
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
SET LOCAL force_parallel_mode = on;
SELECT count(*) FROM public.atk_rv_part;
ROLLBACK;
RESET ROLE;
DROP FUNCTION public.atk_rv_in_worker();
DROP TABLE public.atk_rv_part;
SELECT count(*) FROM keys_guard.release_table('tenant_atk_rv_b.atk_rv_secret');
DROP TABLE tenant_atk_rv_b.atk_rv_secret;
REVOKE USAGE ON SCHEMA tenant_atk_rv_b FROM kg_app;

-- 18. The context follows transactions and savepoints.  A security-
-- restricted operation (ANALYZE, an index build, REFRESH MATERIALIZED
-- VIEW, CLUSTER, VACUUM FULL) runs the table owner's functions and takes
-- back the settings they change even when it succeeds: a context change
-- there would outlive the operation, so it is refused.
CREATE ROLE atk_rv_owner;
GRANT keys_guard_gateway TO atk_rv_owner;
GRANT CREATE ON SCHEMA public TO atk_rv_owner;
SET ROLE atk_rv_owner;
CREATE FUNCTION public.atk_rv_switch(int) RETURNS int
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF current_setting('atk_rv.arm', true) = 'on' THEN
        PERFORM keys_guard.set_context('atk_rv_b', 'owner');
    END IF;
    RETURN $1;
END
$$;
CREATE TABLE public.atk_rv_owned (x int);
INSERT INTO public.atk_rv_owned VALUES (1), (2);
CREATE INDEX ON public.atk_rv_owned (public.atk_rv_switch(x));
RESET ROLE;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'victim');
SET LOCAL atk_rv.arm = on;
-- HOLE (fixed): the owner's index function switched the caller to tenant
-- atk_rv_b for the rest of the transaction.
SAVEPOINT s;
ANALYZE public.atk_rv_owned;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT keys_guard.current_tenant(), keys_guard.current_actor();
ROLLBACK;
DROP TABLE public.atk_rv_owned;
DROP FUNCTION public.atk_rv_switch(int);
REVOKE CREATE ON SCHEMA public FROM atk_rv_owner;
DROP ROLE atk_rv_owner;

-- 19. Workers of a parallel index build, which never passes through the
-- executor, have their leader's context: keys_guard writes it for them
-- before the statement.
CREATE FUNCTION public.atk_rv_probe(int) RETURNS int
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF keys_guard.current_tenant() IS DISTINCT FROM current_setting('atk_rv.expect') THEN
        RAISE EXCEPTION 'index expression under tenant %', keys_guard.current_tenant();
    END IF;
    RETURN $1;
END
$$;
CREATE TABLE tenant_atk_rv_a.atk_rv_big (x int) WITH (parallel_workers = 2);
CREATE TABLE tenant_atk_rv_b.atk_rv_big (x int) WITH (parallel_workers = 2);
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
INSERT INTO tenant_atk_rv_a.atk_rv_big SELECT generate_series(1, 20000);
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
INSERT INTO tenant_atk_rv_b.atk_rv_big SELECT generate_series(1, 20000);
COMMIT;
SET max_parallel_maintenance_workers = 2;
SET parallel_leader_participation = off;
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
SELECT set_config('atk_rv.expect', 'atk_rv_a', true) IS NOT NULL AS expected;
-- HOLE (fixed): the workers evaluated the expression without a context.
CREATE INDEX atk_rv_big_probe ON tenant_atk_rv_a.atk_rv_big (public.atk_rv_probe(x));
ROLLBACK;
-- A parallel plan leaves the context for workers; a switch then clears it,
-- and the index build's workers still get the new one.
BEGIN;
SELECT keys_guard.set_context('atk_rv_a', 'reviewer');
SET LOCAL force_parallel_mode = on;
SELECT count(*) FROM tenant_atk_rv_a.atk_rv_big WHERE x < 0;
SET LOCAL force_parallel_mode = off;
SELECT keys_guard.set_context('atk_rv_b', 'reviewer');
SELECT set_config('atk_rv.expect', 'atk_rv_b', true) IS NOT NULL AS expected;
CREATE INDEX atk_rv_big_probe ON tenant_atk_rv_b.atk_rv_big (public.atk_rv_probe(x));
ROLLBACK;
RESET max_parallel_maintenance_workers;
RESET parallel_leader_participation;
SELECT count(*) FROM keys_guard.release_table('tenant_atk_rv_a.atk_rv_big');
SELECT count(*) FROM keys_guard.release_table('tenant_atk_rv_b.atk_rv_big');
DROP TABLE tenant_atk_rv_a.atk_rv_big, tenant_atk_rv_b.atk_rv_big;
DROP FUNCTION public.atk_rv_probe(int);

-- cleanup
SELECT count(*) FROM keys_guard.release_table('public.atk_rv_pool');
DROP TABLE public.atk_rv_pool;
DROP TABLE public.atk_rv_items;
DROP FUNCTION public.atk_rv_provision(name);
DROP EXTENSION dblink;
