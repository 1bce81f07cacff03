-- isolation_paths.sql: every way of reaching another tenant's schema is
-- refused (docs/contract.md §6, first two rows of the isolation table, §13 42501).
--
-- With a context for tenant iso_a, any statement that reaches a relation of
-- tenant_iso_b (a table or a sequence) -- directly, through a view, a
-- function, dynamic SQL, a SECURITY DEFINER function, a prepared statement
-- or a cursor created under iso_b's context -- fails with 42501
-- "cross-tenant access denied", for an API role, for the table owner and for
-- a superuser; so does DDL in tenant_iso_b.  The own tenant's schema works,
-- and unqualified names resolve to it (§4 search_path).
--
-- The API role holds every table privilege (and the server-file roles COPY
-- needs), so without keys_guard each denied statement would succeed; the
-- message is checked too, since a missing privilege would also be 42501.
BEGIN;
SELECT plan(85);

--
-- Fixtures: roles, two tenants with a table each, objects in public that
-- reach tenant_iso_b.  DDL runs without a context, as migrations do.
--
CREATE ROLE kg_iso_app NOLOGIN;
GRANT keys_guard_gateway TO kg_iso_app;
GRANT pg_read_server_files, pg_write_server_files TO kg_iso_app;
CREATE ROLE kg_iso_owner NOLOGIN;
GRANT pg_read_server_files, pg_write_server_files TO kg_iso_owner;

SELECT id FROM keys_guard.create_tenant('iso_a') \g /dev/null
SELECT id FROM keys_guard.create_tenant('iso_b') \g /dev/null

CREATE TABLE tenant_iso_a.t (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE tenant_iso_b.t (id int PRIMARY KEY, v text NOT NULL);
ALTER TABLE tenant_iso_a.t OWNER TO kg_iso_owner;
ALTER TABLE tenant_iso_b.t OWNER TO kg_iso_owner;
GRANT USAGE ON SCHEMA tenant_iso_a, tenant_iso_b TO kg_iso_owner;
GRANT ALL ON tenant_iso_a.t, tenant_iso_b.t TO kg_iso_app;
-- A sequence in each tenant schema: sequences are relations of the tenant too.
CREATE SEQUENCE tenant_iso_a.s;
CREATE SEQUENCE tenant_iso_b.s;
GRANT ALL ON SEQUENCE tenant_iso_a.s, tenant_iso_b.s TO kg_iso_app;

-- A view in public over tenant b's table.
CREATE VIEW public.kg_iso_b_view AS SELECT id, v FROM tenant_iso_b.t;
GRANT SELECT ON public.kg_iso_b_view TO kg_iso_app, kg_iso_owner;

-- A SQL function, a plpgsql function with dynamic SQL (read and write) and a
-- SECURITY DEFINER function owned by the superuser running this file.
CREATE FUNCTION public.kg_iso_sql_count_b() RETURNS bigint
    LANGUAGE sql STABLE AS $$ SELECT count(*) FROM tenant_iso_b.t $$;
CREATE FUNCTION public.kg_iso_dyn_count(rel text) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %s', rel) INTO n;
    RETURN n;
END $$;
CREATE FUNCTION public.kg_iso_dyn_touch(rel text) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('UPDATE %s SET v = v', rel);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
-- Called in a select list, a set-returning SQL function runs its query
-- lazily, one row per fetch.
CREATE FUNCTION public.kg_iso_srf_b() RETURNS SETOF text
    LANGUAGE sql VOLATILE AS $$ SELECT v FROM tenant_iso_b.t ORDER BY id $$;
CREATE FUNCTION public.kg_iso_definer_count_b() RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN (SELECT count(*) FROM tenant_iso_b.t); END $$;
-- The DETAIL of the error a statement raises (NULL if it raises none).
CREATE FUNCTION public.kg_iso_error_detail(sql text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE d text;
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN d;
END $$;
GRANT EXECUTE ON FUNCTION public.kg_iso_sql_count_b(), public.kg_iso_dyn_count(text),
    public.kg_iso_dyn_touch(text), public.kg_iso_definer_count_b(),
    public.kg_iso_error_detail(text), public.kg_iso_srf_b() TO kg_iso_app, kg_iso_owner;

-- Data, each tenant under its own context.
DO $$ BEGIN PERFORM keys_guard.set_context('iso_b', 'seed'); END $$;
INSERT INTO tenant_iso_b.t VALUES (1, 'b1'), (2, 'b2');
DO $$ BEGIN PERFORM keys_guard.set_context('iso_a', 'seed'); END $$;
INSERT INTO tenant_iso_a.t VALUES (1, 'a1'), (2, 'a2');
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;

--
-- The API role, first under tenant b's context: statements prepared and
-- cursors opened there must not carry b's access over to tenant a.
--
SET LOCAL ROLE kg_iso_app;
DO $$ BEGIN PERFORM keys_guard.set_context('iso_b', 'user_b'); END $$;

PREPARE kg_iso_prep_b AS SELECT count(*) FROM tenant_iso_b.t;
PREPARE kg_iso_prep_unqualified AS SELECT v FROM t ORDER BY id;
SELECT results_eq('kg_iso_prep_b', ARRAY[2::bigint],
                  'under b: a prepared statement on tenant_iso_b.t runs');
SELECT results_eq('kg_iso_prep_unqualified', ARRAY['b1', 'b2'],
                  'under b: unqualified t resolves to tenant_iso_b.t');
DECLARE kg_iso_cur_b NO SCROLL CURSOR FOR SELECT v FROM tenant_iso_b.t ORDER BY id;
SELECT results_eq('FETCH 1 FROM kg_iso_cur_b', ARRAY['b1'],
                  'under b: a cursor on tenant_iso_b.t is declared and fetched');
DECLARE kg_iso_cur_srf NO SCROLL CURSOR FOR SELECT public.kg_iso_srf_b();
SELECT results_eq('FETCH 1 FROM kg_iso_cur_srf', ARRAY['b1'],
                  'under b: a cursor over a lazy SQL function reading tenant_iso_b.t is fetched');
SELECT throws_ok('SELECT * FROM tenant_iso_a.t', '42501', 'cross-tenant access denied',
                 'under b: SELECT from tenant_iso_a.t is denied');

-- Switch to tenant a within the same transaction.
DO $$ BEGIN PERFORM keys_guard.set_context('iso_a', 'user_a'); END $$;

SELECT throws_ok('kg_iso_prep_b', '42501', 'cross-tenant access denied',
                 'app: a prepared statement created under b is denied under a');
SELECT results_eq('kg_iso_prep_unqualified', ARRAY['a1', 'a2'],
                  'app: a prepared statement with unqualified names created under b reads tenant a under a');
SELECT throws_ok('FETCH 1 FROM kg_iso_cur_b', '42501', 'cross-tenant access denied',
                 'app: FETCH from a cursor declared under b is denied under a');
SELECT throws_ok('FETCH 1 FROM kg_iso_cur_srf', '42501', 'cross-tenant access denied',
                 'app: FETCH from a cursor over a lazy SQL function started under b is denied under a');

--
-- The API role under tenant a: every path to tenant_iso_b is 42501.
--
SELECT throws_ok('SELECT * FROM tenant_iso_b.t', '42501', 'cross-tenant access denied',
                 'app: SELECT from tenant_iso_b.t');
SELECT throws_ok('SELECT * FROM tenant_iso_b.t FOR UPDATE', '42501', 'cross-tenant access denied',
                 'app: SELECT ... FOR UPDATE from tenant_iso_b.t');
SELECT throws_ok('SELECT count(*) FROM t JOIN tenant_iso_b.t b USING (id)', '42501',
                 'cross-tenant access denied', 'app: a join with tenant_iso_b.t');
SELECT throws_ok('SELECT * FROM t WHERE id IN (SELECT id FROM tenant_iso_b.t)', '42501',
                 'cross-tenant access denied', 'app: a subquery on tenant_iso_b.t');
SELECT throws_ok('WITH c AS (SELECT * FROM tenant_iso_b.t) SELECT count(*) FROM c', '42501',
                 'cross-tenant access denied', 'app: a CTE on tenant_iso_b.t');
SELECT throws_ok('EXPLAIN ANALYZE SELECT * FROM tenant_iso_b.t', '42501',
                 'cross-tenant access denied', 'app: EXPLAIN ANALYZE of tenant_iso_b.t');
SELECT throws_ok('CREATE TEMP TABLE kg_iso_copy AS SELECT * FROM tenant_iso_b.t', '42501',
                 'cross-tenant access denied', 'app: CREATE TABLE AS from tenant_iso_b.t');
SELECT throws_ok($$INSERT INTO tenant_iso_b.t VALUES (10, 'x')$$, '42501',
                 'cross-tenant access denied', 'app: INSERT into tenant_iso_b.t');
SELECT throws_ok('INSERT INTO t SELECT id + 100, v FROM tenant_iso_b.t', '42501',
                 'cross-tenant access denied', 'app: INSERT into own table from tenant_iso_b.t');
SELECT throws_ok($$UPDATE tenant_iso_b.t SET v = 'x'$$, '42501',
                 'cross-tenant access denied', 'app: UPDATE tenant_iso_b.t');
SELECT throws_ok('UPDATE t SET v = b.v FROM tenant_iso_b.t b WHERE b.id = t.id', '42501',
                 'cross-tenant access denied', 'app: UPDATE own table FROM tenant_iso_b.t');
SELECT throws_ok('DELETE FROM tenant_iso_b.t', '42501',
                 'cross-tenant access denied', 'app: DELETE from tenant_iso_b.t');
SELECT throws_ok($$MERGE INTO tenant_iso_b.t AS d USING (VALUES (1, 'x')) AS s(id, v) ON d.id = s.id
                   WHEN MATCHED THEN UPDATE SET v = s.v
                   WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)$$, '42501',
                 'cross-tenant access denied', 'app: MERGE into tenant_iso_b.t');
SELECT throws_ok($$MERGE INTO t AS d USING tenant_iso_b.t AS s ON d.id = s.id
                   WHEN MATCHED THEN UPDATE SET v = s.v$$, '42501',
                 'cross-tenant access denied', 'app: MERGE using tenant_iso_b.t as source');
SELECT throws_ok($$COPY tenant_iso_b.t TO '/dev/null'$$, '42501',
                 'cross-tenant access denied', 'app: COPY tenant_iso_b.t TO');
SELECT throws_ok($$COPY tenant_iso_b.t FROM '/dev/null'$$, '42501',
                 'cross-tenant access denied', 'app: COPY tenant_iso_b.t FROM');
SELECT throws_ok($$COPY (SELECT * FROM tenant_iso_b.t) TO '/dev/null'$$, '42501',
                 'cross-tenant access denied', 'app: COPY (SELECT ... tenant_iso_b.t) TO');
SELECT throws_ok('TRUNCATE tenant_iso_b.t', '42501',
                 'cross-tenant access denied', 'app: TRUNCATE tenant_iso_b.t');
SELECT throws_ok('LOCK TABLE tenant_iso_b.t IN ACCESS SHARE MODE', '42501',
                 'cross-tenant access denied', 'app: LOCK tenant_iso_b.t');
SELECT throws_ok($$SELECT nextval('tenant_iso_b.s')$$, '42501',
                 'cross-tenant access denied', 'app: nextval() of sequence tenant_iso_b.s');
SELECT throws_ok($$SELECT setval('tenant_iso_b.s', 1000)$$, '42501',
                 'cross-tenant access denied', 'app: setval() of sequence tenant_iso_b.s');
SELECT throws_ok('SELECT last_value FROM tenant_iso_b.s', '42501',
                 'cross-tenant access denied', 'app: SELECT from sequence tenant_iso_b.s');
SELECT throws_ok('SELECT * FROM public.kg_iso_b_view', '42501',
                 'cross-tenant access denied', 'app: a view in public over tenant_iso_b.t');
SELECT throws_ok('SELECT public.kg_iso_sql_count_b()', '42501',
                 'cross-tenant access denied', 'app: a SQL function reading tenant_iso_b.t');
SELECT throws_ok($$SELECT public.kg_iso_dyn_count('tenant_iso_b.t')$$, '42501',
                 'cross-tenant access denied', 'app: plpgsql EXECUTE format(...) reading tenant_iso_b.t');
SELECT throws_ok($$SELECT public.kg_iso_dyn_touch('tenant_iso_b.t')$$, '42501',
                 'cross-tenant access denied', 'app: plpgsql EXECUTE format(...) updating tenant_iso_b.t');
SELECT throws_ok('SELECT public.kg_iso_definer_count_b()', '42501',
                 'cross-tenant access denied', 'app: a SECURITY DEFINER function owned by a superuser');
SELECT throws_ok($q$DO $do$ BEGIN EXECUTE 'SELECT count(*) FROM tenant_iso_b.t'; END $do$$q$, '42501',
                 'cross-tenant access denied', 'app: a DO block with EXECUTE on tenant_iso_b.t');

-- The detail names the relation and both tenants (§6).
SELECT ok(d LIKE '%tenant_iso_b.t%' AND d LIKE '%"iso_b"%' AND d LIKE '%"iso_a"%',
          'app: the denial detail names tenant_iso_b.t, tenant "iso_b" and tenant "iso_a"')
  FROM coalesce(public.kg_iso_error_detail('SELECT * FROM tenant_iso_b.t'), '') AS d;

-- The own tenant's schema works, reached through unqualified names.
SELECT is((current_schemas(false))[1], 'tenant_iso_a'::name,
          'app: tenant_iso_a comes first on search_path under tenant a');
SELECT results_eq('SELECT id, v FROM t ORDER BY id',
                  $$VALUES (1, 'a1'), (2, 'a2')$$,
                  'app: unqualified t reads tenant_iso_a.t');
SELECT lives_ok($$INSERT INTO t VALUES (3, 'a3')$$, 'app: INSERT into own table');
SELECT lives_ok($$UPDATE t SET v = 'a3x' WHERE id = 3$$, 'app: UPDATE own table');
SELECT lives_ok($$MERGE INTO t AS d USING (VALUES (3, 'a3y')) AS s(id, v) ON d.id = s.id
                  WHEN MATCHED THEN UPDATE SET v = s.v$$, 'app: MERGE into own table');
SELECT results_eq('SELECT v FROM tenant_iso_a.t WHERE id = 3', ARRAY['a3y'],
                  'app: own writes landed in tenant_iso_a.t');
SELECT lives_ok('DELETE FROM t WHERE id = 3', 'app: DELETE from own table');
SELECT lives_ok($$COPY t TO '/dev/null'$$, 'app: COPY own table TO');
SELECT lives_ok('LOCK TABLE t IN ACCESS SHARE MODE', 'app: LOCK own table');
SELECT is(nextval('s'), 1::bigint, 'app: nextval() of the unqualified own sequence');
SELECT is(public.kg_iso_dyn_count('t'), 2::bigint,
          'app: dynamic SQL on the unqualified own table works');

--
-- The table owner under tenant a (the context set above stays in force).
--
SET LOCAL ROLE kg_iso_owner;
SELECT throws_ok('SELECT * FROM tenant_iso_b.t', '42501', 'cross-tenant access denied',
                 'owner: SELECT from tenant_iso_b.t');
SELECT throws_ok($$INSERT INTO tenant_iso_b.t VALUES (10, 'x')$$, '42501',
                 'cross-tenant access denied', 'owner: INSERT into tenant_iso_b.t');
SELECT throws_ok($$UPDATE tenant_iso_b.t SET v = 'x'$$, '42501',
                 'cross-tenant access denied', 'owner: UPDATE tenant_iso_b.t');
SELECT throws_ok('DELETE FROM tenant_iso_b.t', '42501',
                 'cross-tenant access denied', 'owner: DELETE from tenant_iso_b.t');
SELECT throws_ok($$MERGE INTO tenant_iso_b.t AS d USING (VALUES (1, 'x')) AS s(id, v) ON d.id = s.id
                   WHEN MATCHED THEN UPDATE SET v = s.v$$, '42501',
                 'cross-tenant access denied', 'owner: MERGE into tenant_iso_b.t');
SELECT throws_ok($$COPY tenant_iso_b.t TO '/dev/null'$$, '42501',
                 'cross-tenant access denied', 'owner: COPY tenant_iso_b.t TO');
SELECT throws_ok('TRUNCATE tenant_iso_b.t', '42501',
                 'cross-tenant access denied', 'owner: TRUNCATE tenant_iso_b.t');
SELECT throws_ok('LOCK TABLE tenant_iso_b.t IN ACCESS EXCLUSIVE MODE', '42501',
                 'cross-tenant access denied', 'owner: LOCK tenant_iso_b.t');
SELECT throws_ok('SELECT * FROM public.kg_iso_b_view', '42501',
                 'cross-tenant access denied', 'owner: a view in public over tenant_iso_b.t');
SELECT throws_ok($$SELECT public.kg_iso_dyn_count('tenant_iso_b.t')$$, '42501',
                 'cross-tenant access denied', 'owner: dynamic SQL reading tenant_iso_b.t');
SELECT throws_ok('ALTER TABLE tenant_iso_b.t ADD COLUMN x int', '42501', NULL,
                 'owner: ALTER TABLE tenant_iso_b.t');
SELECT results_eq('SELECT id, v FROM t ORDER BY id',
                  $$VALUES (1, 'a1'), (2, 'a2')$$,
                  'owner: unqualified t reads tenant_iso_a.t');

--
-- A superuser under tenant a.
--
RESET ROLE;
SELECT throws_ok('SELECT * FROM tenant_iso_b.t', '42501', 'cross-tenant access denied',
                 'superuser: SELECT from tenant_iso_b.t');
SELECT throws_ok($$INSERT INTO tenant_iso_b.t VALUES (10, 'x')$$, '42501',
                 'cross-tenant access denied', 'superuser: INSERT into tenant_iso_b.t');
SELECT throws_ok($$UPDATE tenant_iso_b.t SET v = 'x'$$, '42501',
                 'cross-tenant access denied', 'superuser: UPDATE tenant_iso_b.t');
SELECT throws_ok('DELETE FROM tenant_iso_b.t', '42501',
                 'cross-tenant access denied', 'superuser: DELETE from tenant_iso_b.t');
SELECT throws_ok($$MERGE INTO tenant_iso_b.t AS d USING (VALUES (1, 'x')) AS s(id, v) ON d.id = s.id
                   WHEN MATCHED THEN DELETE$$, '42501',
                 'cross-tenant access denied', 'superuser: MERGE into tenant_iso_b.t');
SELECT throws_ok($$COPY tenant_iso_b.t TO '/dev/null'$$, '42501',
                 'cross-tenant access denied', 'superuser: COPY tenant_iso_b.t TO');
SELECT throws_ok($$COPY tenant_iso_b.t FROM '/dev/null'$$, '42501',
                 'cross-tenant access denied', 'superuser: COPY tenant_iso_b.t FROM');
SELECT throws_ok('TRUNCATE tenant_iso_b.t', '42501',
                 'cross-tenant access denied', 'superuser: TRUNCATE tenant_iso_b.t');
SELECT throws_ok('LOCK TABLE tenant_iso_b.t IN ACCESS EXCLUSIVE MODE', '42501',
                 'cross-tenant access denied', 'superuser: LOCK tenant_iso_b.t');
SELECT throws_ok('SELECT * FROM public.kg_iso_b_view', '42501',
                 'cross-tenant access denied', 'superuser: a view in public over tenant_iso_b.t');
SELECT throws_ok('SELECT public.kg_iso_sql_count_b()', '42501',
                 'cross-tenant access denied', 'superuser: a SQL function reading tenant_iso_b.t');
SELECT throws_ok($$SELECT public.kg_iso_dyn_touch('tenant_iso_b.t')$$, '42501',
                 'cross-tenant access denied', 'superuser: dynamic SQL updating tenant_iso_b.t');
SELECT throws_ok('SELECT public.kg_iso_definer_count_b()', '42501',
                 'cross-tenant access denied', 'superuser: a SECURITY DEFINER function');
SELECT results_eq('SELECT id, v FROM t ORDER BY id',
                  $$VALUES (1, 'a1'), (2, 'a2')$$,
                  'superuser: unqualified t reads tenant_iso_a.t');

-- DDL under a context stays in the context's own tenant schema (§6).
SELECT throws_ok('CREATE TABLE tenant_iso_b.x (id int)', '42501', NULL,
                 'superuser: CREATE TABLE in tenant_iso_b');
SELECT throws_ok('ALTER TABLE tenant_iso_b.t ADD COLUMN x int', '42501', NULL,
                 'superuser: ALTER TABLE tenant_iso_b.t');
SELECT throws_ok('CREATE INDEX ON tenant_iso_b.t (v)', '42501', NULL,
                 'superuser: CREATE INDEX on tenant_iso_b.t');
SELECT throws_ok('CREATE VIEW tenant_iso_b.v AS SELECT 1 AS one', '42501', NULL,
                 'superuser: CREATE VIEW in tenant_iso_b');
SELECT throws_ok($$COMMENT ON TABLE tenant_iso_b.t IS 'x'$$, '42501', NULL,
                 'superuser: COMMENT ON tenant_iso_b.t');
SELECT lives_ok('CREATE TABLE t2 (id int PRIMARY KEY)',
                'superuser: CREATE TABLE with an unqualified name under tenant a');
SELECT ok(EXISTS (SELECT 1 FROM keys_guard.guarded_tables
                   WHERE relation = to_regclass('tenant_iso_a.t2') AND tenant_id = 'iso_a'),
          'the unqualified CREATE TABLE landed in tenant_iso_a and is guarded for iso_a');

--
-- Without any context a tenant schema is closed, superusers included.
--
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;
SELECT throws_ok('SELECT * FROM tenant_iso_a.t', '42501', 'no tenant context',
                 'superuser without a context: SELECT from tenant_iso_a.t');
SET LOCAL ROLE kg_iso_app;
SELECT throws_ok('SELECT * FROM tenant_iso_b.t', '42501', 'no tenant context',
                 'app without a context: SELECT from tenant_iso_b.t');
SELECT throws_ok('SELECT * FROM public.kg_iso_b_view', '42501', 'no tenant context',
                 'app without a context: a view over tenant_iso_b.t');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
