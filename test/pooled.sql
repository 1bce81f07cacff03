-- pooled.sql: pooled tables, one per tenant column type (docs/contract.md §5, the
-- pooled-table rows of §6's isolation table, §13 42501).
--
-- For a tenant column of type text, uuid and bigint:
--   * reads without a tenant predicate return only the current tenant's rows,
--     for an API role, the table owner and a superuser, directly and through
--     a view, a CTE, a subquery and an inlined SQL set-returning function;
--   * naming another tenant is 42501 "cross-tenant access denied": "= 'b'",
--     "'b' =", IN, = ANY, in a join, a view, a subquery, a CTE, an inlined
--     SQL function's parameter, a prepared statement's parameter under
--     custom and generic plans, and in writes: INSERT (also ... SELECT,
--     MERGE) of b, UPDATE (also ON CONFLICT, MERGE) setting b, UPDATE and
--     DELETE ... WHERE tenant_id = b -- for an API role, and as far as
--     relevant for the table owner and a superuser;
--   * an INSERT without a tenant value gets the current tenant;
--   * UPDATE and MERGE without a tenant predicate touch only the tenant's
--     rows;
--   * a cached plan follows the current tenant; a cursor opened under one
--     tenant cannot be fetched under another;
--   * the tenant filter is an index condition (EXPLAIN);
--   * without a context the table is closed: 42501 "no tenant context".
--
-- Every table holds rows of tenants a and b and of 200 other tenants, so an
-- unfiltered read would return them, and the API role has every privilege.
BEGIN;
SELECT plan(249);

CREATE ROLE kg_pool_app NOLOGIN;
GRANT keys_guard_gateway TO kg_pool_app;
CREATE ROLE kg_pool_owner NOLOGIN;

SELECT id FROM keys_guard.create_tenant('pool_a') \g /dev/null
SELECT id FROM keys_guard.create_tenant('pool_b') \g /dev/null
SELECT id FROM keys_guard.create_tenant('0b9a3c5e-1d2f-4a6b-8c7d-9e0f1a2b3c4d') \g /dev/null
SELECT id FROM keys_guard.create_tenant('5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f') \g /dev/null
SELECT id FROM keys_guard.create_tenant('42') \g /dev/null
SELECT id FROM keys_guard.create_tenant('43') \g /dev/null

CREATE TABLE public.kg_pool_text (id bigserial PRIMARY KEY, tenant_id text, v text NOT NULL);
CREATE TABLE public.kg_pool_uuid (id bigserial PRIMARY KEY, tenant_id uuid, v text NOT NULL);
CREATE TABLE public.kg_pool_bigint (id bigserial PRIMARY KEY, tenant_id bigint, v text NOT NULL);
CREATE INDEX kg_pool_text_tenant_idx ON public.kg_pool_text (tenant_id);
CREATE INDEX kg_pool_uuid_tenant_idx ON public.kg_pool_uuid (tenant_id);
CREATE INDEX kg_pool_bigint_tenant_idx ON public.kg_pool_bigint (tenant_id);

-- Rows are loaded before the tables are guarded.
INSERT INTO public.kg_pool_text (tenant_id, v)
    SELECT 'pool_a', 'a' || g FROM generate_series(1, 3) g
    UNION ALL SELECT 'pool_b', 'b' || g FROM generate_series(1, 3) g
    UNION ALL SELECT 'fill_' || (g % 200), 'f' FROM generate_series(1, 4000) g;
INSERT INTO public.kg_pool_uuid (tenant_id, v)
    SELECT '0b9a3c5e-1d2f-4a6b-8c7d-9e0f1a2b3c4d'::uuid, 'a' || g FROM generate_series(1, 3) g
    UNION ALL SELECT '5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f'::uuid, 'b' || g FROM generate_series(1, 3) g
    UNION ALL SELECT md5((g % 200)::text)::uuid, 'f' FROM generate_series(1, 4000) g;
INSERT INTO public.kg_pool_bigint (tenant_id, v)
    SELECT 42, 'a' || g FROM generate_series(1, 3) g
    UNION ALL SELECT 43, 'b' || g FROM generate_series(1, 3) g
    UNION ALL SELECT 1000 + g % 200, 'f' FROM generate_series(1, 4000) g;
ANALYZE public.kg_pool_text, public.kg_pool_uuid, public.kg_pool_bigint;

ALTER TABLE public.kg_pool_text OWNER TO kg_pool_owner;
ALTER TABLE public.kg_pool_uuid OWNER TO kg_pool_owner;
ALTER TABLE public.kg_pool_bigint OWNER TO kg_pool_owner;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON public.kg_pool_text, public.kg_pool_uuid, public.kg_pool_bigint TO kg_pool_app;
GRANT USAGE ON SEQUENCE public.kg_pool_text_id_seq, public.kg_pool_uuid_id_seq,
    public.kg_pool_bigint_id_seq TO kg_pool_app;

SELECT relation FROM keys_guard.protect_table('public.kg_pool_text', tenant_column => 'tenant_id') \g /dev/null
SELECT relation FROM keys_guard.protect_table('public.kg_pool_uuid', tenant_column => 'tenant_id') \g /dev/null
SELECT relation FROM keys_guard.protect_table('public.kg_pool_bigint', tenant_column => 'tenant_id') \g /dev/null

-- For each table: a view (owned by the superuser running this file) and an
-- inlinable SQL set-returning function over it.
CREATE VIEW public.kg_pool_text_v AS SELECT id, tenant_id, v FROM public.kg_pool_text;
CREATE VIEW public.kg_pool_uuid_v AS SELECT id, tenant_id, v FROM public.kg_pool_uuid;
CREATE VIEW public.kg_pool_bigint_v AS SELECT id, tenant_id, v FROM public.kg_pool_bigint;
GRANT SELECT ON public.kg_pool_text_v, public.kg_pool_uuid_v, public.kg_pool_bigint_v
    TO kg_pool_app, kg_pool_owner;
CREATE FUNCTION public.kg_pool_text_rows() RETURNS TABLE (v text)
    LANGUAGE sql STABLE AS $$ SELECT v FROM public.kg_pool_text $$;
CREATE FUNCTION public.kg_pool_uuid_rows() RETURNS TABLE (v text)
    LANGUAGE sql STABLE AS $$ SELECT v FROM public.kg_pool_uuid $$;
CREATE FUNCTION public.kg_pool_bigint_rows() RETURNS TABLE (v text)
    LANGUAGE sql STABLE AS $$ SELECT v FROM public.kg_pool_bigint $$;
-- The same with the tenant as a parameter (a bound parameter once inlined).
CREATE FUNCTION public.kg_pool_text_of(tenant text) RETURNS TABLE (v text)
    LANGUAGE sql STABLE AS $$ SELECT v FROM public.kg_pool_text WHERE tenant_id = tenant $$;
CREATE FUNCTION public.kg_pool_uuid_of(tenant uuid) RETURNS TABLE (v text)
    LANGUAGE sql STABLE AS $$ SELECT v FROM public.kg_pool_uuid WHERE tenant_id = tenant $$;
CREATE FUNCTION public.kg_pool_bigint_of(tenant bigint) RETURNS TABLE (v text)
    LANGUAGE sql STABLE AS $$ SELECT v FROM public.kg_pool_bigint WHERE tenant_id = tenant $$;

-- Reads that name no tenant return exactly tenant a's rows a1..a3.
CREATE FUNCTION public.kg_pool_reads(tbl text, who text) RETURNS SETOF text
    LANGUAGE plpgsql AS $$
DECLARE
    own constant text[] := ARRAY['a1', 'a2', 'a3'];
BEGIN
    RETURN NEXT results_eq(format('SELECT v FROM %s ORDER BY v', tbl), own,
                           format('%s: SELECT from %s returns only the current tenant''s rows', who, tbl));
    RETURN NEXT results_eq(format('SELECT count(*) FROM %s', tbl), ARRAY[3::bigint],
                           format('%s: count(*) on %s counts only the current tenant''s rows', who, tbl));
    RETURN NEXT results_eq(format('SELECT v FROM %s_v ORDER BY v', tbl), own,
                           format('%s: a view over %s returns only the current tenant''s rows', who, tbl));
    RETURN NEXT results_eq(format('WITH c AS MATERIALIZED (SELECT * FROM %s) SELECT v FROM c ORDER BY v', tbl), own,
                           format('%s: a CTE over %s returns only the current tenant''s rows', who, tbl));
    RETURN NEXT results_eq(format('SELECT v FROM (SELECT * FROM %s OFFSET 0) s WHERE v IN (SELECT v FROM %s) ORDER BY v', tbl, tbl), own,
                           format('%s: subqueries over %s return only the current tenant''s rows', who, tbl));
    RETURN NEXT results_eq(format('SELECT v FROM %s_rows() ORDER BY v', tbl), own,
                           format('%s: an inlined SQL function over %s returns only the current tenant''s rows', who, tbl));
END $$;

-- Predicates naming another tenant are denied, wherever they stand in the
-- statement; naming the own tenant works.
CREATE FUNCTION public.kg_pool_names(tbl text, own_lit text, other_lit text, who text)
    RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    RETURN NEXT throws_ok(format('SELECT v FROM %s WHERE tenant_id = %s', tbl, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: WHERE tenant_id = <other tenant> on %s', who, tbl));
    RETURN NEXT throws_ok(format('SELECT v FROM %s WHERE %s = tenant_id', tbl, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: WHERE <other tenant> = tenant_id on %s', who, tbl));
    RETURN NEXT throws_ok(format('SELECT v FROM %s WHERE tenant_id IN (%s, %s)', tbl, own_lit, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: WHERE tenant_id IN (<own>, <other>) on %s', who, tbl));
    RETURN NEXT throws_ok(format('SELECT x.v FROM %s x JOIN %s y ON y.id = x.id AND y.tenant_id = %s', tbl, tbl, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: JOIN ... ON tenant_id = <other tenant> on %s', who, tbl));
    RETURN NEXT throws_ok(format('SELECT v FROM %s_v WHERE tenant_id = %s', tbl, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: WHERE tenant_id = <other tenant> on a view over %s', who, tbl));
    RETURN NEXT throws_ok(format('SELECT v FROM (SELECT * FROM %s) s WHERE tenant_id = %s', tbl, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: WHERE tenant_id = <other tenant> on a subquery over %s', who, tbl));
    RETURN NEXT throws_ok(format('SELECT v FROM %s WHERE id IN (SELECT id FROM %s WHERE tenant_id = %s)', tbl, tbl, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: tenant_id = <other tenant> in an IN (subquery) on %s', who, tbl));
    RETURN NEXT throws_ok(format('WITH c AS (SELECT * FROM %s WHERE tenant_id = %s) SELECT v FROM c', tbl, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: tenant_id = <other tenant> inside a CTE on %s', who, tbl));
    RETURN NEXT throws_ok(format('WITH c AS (SELECT * FROM %s) SELECT v FROM c WHERE tenant_id = %s', tbl, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: WHERE tenant_id = <other tenant> on a CTE over %s', who, tbl));
    RETURN NEXT throws_ok(format('SELECT v FROM %s_of(%s)', tbl, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: an inlined SQL function over %s with the other tenant as parameter', who, tbl));
    RETURN NEXT results_eq(format('SELECT v FROM %s WHERE tenant_id = %s ORDER BY v', tbl, own_lit),
                           ARRAY['a1', 'a2', 'a3'],
                           format('%s: WHERE tenant_id = <own tenant> on %s returns the own rows', who, tbl));
    RETURN NEXT results_eq(format('SELECT v FROM %s_of(%s) ORDER BY v', tbl, own_lit),
                           ARRAY['a1', 'a2', 'a3'],
                           format('%s: an inlined SQL function over %s with the own tenant as parameter returns the own rows', who, tbl));
END $$;

-- Writes naming another tenant are denied.
CREATE FUNCTION public.kg_pool_writes(tbl text, other_lit text, who text)
    RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    RETURN NEXT throws_ok(format('INSERT INTO %s (tenant_id, v) VALUES (%s, %L)', tbl, other_lit, 'x'),
                          '42501', 'cross-tenant access denied',
                          format('%s: INSERT of another tenant''s id into %s', who, tbl));
    RETURN NEXT throws_ok(format('INSERT INTO %s (tenant_id, v) SELECT %s, %L', tbl, other_lit, 'x'),
                          '42501', 'cross-tenant access denied',
                          format('%s: INSERT ... SELECT of another tenant''s id into %s', who, tbl));
    RETURN NEXT throws_ok(format('UPDATE %s SET tenant_id = %s WHERE v = %L', tbl, other_lit, 'a1'),
                          '42501', 'cross-tenant access denied',
                          format('%s: UPDATE setting %s.tenant_id to another tenant''s id', who, tbl));
    RETURN NEXT throws_ok(format('INSERT INTO %s (id, v) SELECT id, v FROM %s WHERE v = %L'
                                 ' ON CONFLICT (id) DO UPDATE SET tenant_id = %s', tbl, tbl, 'a1', other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: INSERT ... ON CONFLICT DO UPDATE setting %s.tenant_id to another tenant''s id', who, tbl));
    RETURN NEXT throws_ok(format('MERGE INTO %s d USING (VALUES (%L)) s(v) ON d.v = s.v'
                                 ' WHEN NOT MATCHED THEN INSERT (tenant_id, v) VALUES (%s, s.v)', tbl, 'new', other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: MERGE ... INSERT of another tenant''s id into %s', who, tbl));
    RETURN NEXT throws_ok(format('MERGE INTO %s d USING (VALUES (%L)) s(v) ON d.v = s.v'
                                 ' WHEN MATCHED THEN UPDATE SET tenant_id = %s', tbl, 'a1', other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: MERGE ... UPDATE setting %s.tenant_id to another tenant''s id', who, tbl));
    RETURN NEXT throws_ok(format('UPDATE %s SET v = v WHERE tenant_id = %s', tbl, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: UPDATE %s WHERE tenant_id = <other tenant>', who, tbl));
    RETURN NEXT throws_ok(format('DELETE FROM %s WHERE tenant_id = %s', tbl, other_lit),
                          '42501', 'cross-tenant access denied',
                          format('%s: DELETE FROM %s WHERE tenant_id = <other tenant>', who, tbl));
END $$;

-- Rows a statement processed.
CREATE FUNCTION public.kg_pool_rowcount(sql text) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE sql;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- The plan of a query, as text.
CREATE FUNCTION public.kg_pool_plan(sql text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    line text;
    result text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || sql LOOP
        result := result || line || E'\n';
    END LOOP;
    RETURN result;
END $$;

--
-- text tenant column: tenants pool_a and pool_b.
--
SET LOCAL ROLE kg_pool_app;
DO $$ BEGIN PERFORM keys_guard.set_context('pool_a', 'user_a'); END $$;
SELECT * FROM public.kg_pool_reads('public.kg_pool_text', 'app');
SET LOCAL ROLE kg_pool_owner;
SELECT * FROM public.kg_pool_reads('public.kg_pool_text', 'owner');
RESET ROLE;
SELECT * FROM public.kg_pool_reads('public.kg_pool_text', 'superuser');

SET LOCAL ROLE kg_pool_app;
SELECT * FROM public.kg_pool_names('public.kg_pool_text', $$'pool_a'$$, $$'pool_b'$$, 'app');
SELECT throws_ok($$SELECT v FROM public.kg_pool_text WHERE tenant_id = ANY (ARRAY['pool_a', 'pool_b'])$$,
                 '42501', 'cross-tenant access denied',
                 'app: WHERE tenant_id = ANY (ARRAY[<own>, <other>]) on public.kg_pool_text');
RESET ROLE;
SELECT * FROM public.kg_pool_names('public.kg_pool_text', $$'pool_a'$$, $$'pool_b'$$, 'superuser');
SET LOCAL ROLE kg_pool_app;

PREPARE kg_pool_text_q(text) AS SELECT v FROM public.kg_pool_text WHERE tenant_id = $1 ORDER BY v;
SET LOCAL plan_cache_mode = force_custom_plan;
SELECT results_eq($$EXECUTE kg_pool_text_q('pool_a')$$, ARRAY['a1', 'a2', 'a3'],
                  'app: custom plan, $1 = own tenant returns the own rows (text)');
SELECT throws_ok($$EXECUTE kg_pool_text_q('pool_b')$$, '42501', 'cross-tenant access denied',
                 'app: custom plan, $1 = other tenant is denied (text)');
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT results_eq($$EXECUTE kg_pool_text_q('pool_a')$$, ARRAY['a1', 'a2', 'a3'],
                  'app: generic plan, $1 = own tenant returns the own rows (text)');
SELECT throws_ok($$EXECUTE kg_pool_text_q('pool_b')$$, '42501', 'cross-tenant access denied',
                 'app: generic plan, $1 = other tenant is denied (text)');
SET LOCAL plan_cache_mode = auto;
DO $$ BEGIN FOR i IN 1..6 LOOP EXECUTE $e$EXECUTE kg_pool_text_q('pool_a')$e$; END LOOP; END $$;
SELECT throws_ok($$EXECUTE kg_pool_text_q('pool_b')$$, '42501', 'cross-tenant access denied',
                 'app: 7th execution, $1 = other tenant is denied (text)');

SELECT ok(p LIKE '%Index Cond: (tenant_id = %' AND p LIKE '%kg_pool_text_tenant_idx%',
          'app: the tenant filter on public.kg_pool_text is an index condition')
  FROM public.kg_pool_plan('SELECT v FROM public.kg_pool_text') AS p;

SELECT lives_ok($$INSERT INTO public.kg_pool_text (v) VALUES ('a4')$$,
                'app: INSERT without a tenant value into public.kg_pool_text');
SELECT results_eq($$SELECT tenant_id FROM public.kg_pool_text WHERE v = 'a4'$$, ARRAY['pool_a'],
                  'app: the missing tenant value was filled in with the current tenant (text)');
SELECT * FROM public.kg_pool_writes('public.kg_pool_text', $$'pool_b'$$, 'app');
SELECT is(public.kg_pool_rowcount($$UPDATE public.kg_pool_text SET v = v WHERE v = 'b1'$$), 0::bigint,
          'app: UPDATE of another tenant''s row by a non-tenant predicate touches nothing (text)');
SELECT is(public.kg_pool_rowcount('UPDATE public.kg_pool_text SET v = v'), 4::bigint,
          'app: UPDATE without a predicate touches only the current tenant''s rows (text)');
SELECT is(public.kg_pool_rowcount($$MERGE INTO public.kg_pool_text d USING (VALUES ('b1')) s(v) ON d.v = s.v
                                     WHEN MATCHED THEN UPDATE SET v = 'stolen'$$), 0::bigint,
          'app: MERGE matching another tenant''s row by a non-tenant predicate touches nothing (text)');

SET LOCAL ROLE kg_pool_owner;
SELECT * FROM public.kg_pool_writes('public.kg_pool_text', $$'pool_b'$$, 'owner');
SELECT throws_ok($$SELECT v FROM public.kg_pool_text WHERE tenant_id = 'pool_b'$$, '42501',
                 'cross-tenant access denied', 'owner: WHERE tenant_id = <other tenant> on public.kg_pool_text');
RESET ROLE;
SELECT * FROM public.kg_pool_writes('public.kg_pool_text', $$'pool_b'$$, 'superuser');

-- A plan cached under pool_a reads pool_b's rows under pool_b; a cursor
-- opened under pool_a cannot be read under pool_b.
SET LOCAL ROLE kg_pool_app;
SET LOCAL plan_cache_mode = force_generic_plan;
PREPARE kg_pool_text_all AS SELECT v FROM public.kg_pool_text ORDER BY v;
SELECT results_eq('kg_pool_text_all', ARRAY['a1', 'a2', 'a3', 'a4'],
                  'app: a generic plan without a tenant predicate reads pool_a''s rows under pool_a');
DECLARE kg_pool_cur NO SCROLL CURSOR FOR SELECT v FROM public.kg_pool_text ORDER BY v;
SELECT results_eq('FETCH 1 FROM kg_pool_cur', ARRAY['a1'],
                  'app: a cursor on public.kg_pool_text opened under pool_a reads pool_a''s rows');
DO $$ BEGIN PERFORM keys_guard.set_context('pool_b', 'user_b'); END $$;
SELECT results_eq('kg_pool_text_all', ARRAY['b1', 'b2', 'b3'],
                  'app: the same cached plan reads only pool_b''s rows under pool_b');
SELECT throws_ok('FETCH ALL FROM kg_pool_cur', '42501', 'cross-tenant access denied',
                 'app: the cursor opened under pool_a cannot be fetched under pool_b');
SET LOCAL plan_cache_mode = auto;
RESET ROLE;

--
-- uuid tenant column: tenant ids are canonical UUIDs.
--
SET LOCAL ROLE kg_pool_app;
DO $$ BEGIN PERFORM keys_guard.set_context('0b9a3c5e-1d2f-4a6b-8c7d-9e0f1a2b3c4d', 'user_a'); END $$;
SELECT * FROM public.kg_pool_reads('public.kg_pool_uuid', 'app');
SET LOCAL ROLE kg_pool_owner;
SELECT * FROM public.kg_pool_reads('public.kg_pool_uuid', 'owner');
RESET ROLE;
SELECT * FROM public.kg_pool_reads('public.kg_pool_uuid', 'superuser');

SET LOCAL ROLE kg_pool_app;
SELECT * FROM public.kg_pool_names('public.kg_pool_uuid', $$'0b9a3c5e-1d2f-4a6b-8c7d-9e0f1a2b3c4d'$$,
                                   $$'5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f'$$, 'app');
SELECT throws_ok($$SELECT v FROM public.kg_pool_uuid
                    WHERE tenant_id = ANY (ARRAY['0b9a3c5e-1d2f-4a6b-8c7d-9e0f1a2b3c4d',
                                                 '5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f']::uuid[])$$,
                 '42501', 'cross-tenant access denied',
                 'app: WHERE tenant_id = ANY (ARRAY[<own>, <other>]) on public.kg_pool_uuid');
RESET ROLE;
SELECT * FROM public.kg_pool_names('public.kg_pool_uuid', $$'0b9a3c5e-1d2f-4a6b-8c7d-9e0f1a2b3c4d'$$,
                                   $$'5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f'$$, 'superuser');
SET LOCAL ROLE kg_pool_app;

PREPARE kg_pool_uuid_q(uuid) AS SELECT v FROM public.kg_pool_uuid WHERE tenant_id = $1 ORDER BY v;
SET LOCAL plan_cache_mode = force_custom_plan;
SELECT results_eq($$EXECUTE kg_pool_uuid_q('0b9a3c5e-1d2f-4a6b-8c7d-9e0f1a2b3c4d')$$, ARRAY['a1', 'a2', 'a3'],
                  'app: custom plan, $1 = own tenant returns the own rows (uuid)');
SELECT throws_ok($$EXECUTE kg_pool_uuid_q('5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f')$$, '42501',
                 'cross-tenant access denied', 'app: custom plan, $1 = other tenant is denied (uuid)');
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT results_eq($$EXECUTE kg_pool_uuid_q('0b9a3c5e-1d2f-4a6b-8c7d-9e0f1a2b3c4d')$$, ARRAY['a1', 'a2', 'a3'],
                  'app: generic plan, $1 = own tenant returns the own rows (uuid)');
SELECT throws_ok($$EXECUTE kg_pool_uuid_q('5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f')$$, '42501',
                 'cross-tenant access denied', 'app: generic plan, $1 = other tenant is denied (uuid)');
SET LOCAL plan_cache_mode = auto;
DO $$ BEGIN FOR i IN 1..6 LOOP
    EXECUTE $e$EXECUTE kg_pool_uuid_q('0b9a3c5e-1d2f-4a6b-8c7d-9e0f1a2b3c4d')$e$;
END LOOP; END $$;
SELECT throws_ok($$EXECUTE kg_pool_uuid_q('5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f')$$, '42501',
                 'cross-tenant access denied', 'app: 7th execution, $1 = other tenant is denied (uuid)');

SELECT ok(p LIKE '%Index Cond: (tenant_id = %' AND p LIKE '%kg_pool_uuid_tenant_idx%',
          'app: the tenant filter on public.kg_pool_uuid is an index condition')
  FROM public.kg_pool_plan('SELECT v FROM public.kg_pool_uuid') AS p;

SELECT lives_ok($$INSERT INTO public.kg_pool_uuid (v) VALUES ('a4')$$,
                'app: INSERT without a tenant value into public.kg_pool_uuid');
SELECT results_eq($$SELECT tenant_id FROM public.kg_pool_uuid WHERE v = 'a4'$$,
                  ARRAY['0b9a3c5e-1d2f-4a6b-8c7d-9e0f1a2b3c4d'::uuid],
                  'app: the missing tenant value was filled in with the current tenant (uuid)');
SELECT * FROM public.kg_pool_writes('public.kg_pool_uuid', $$'5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f'$$, 'app');
SELECT is(public.kg_pool_rowcount($$UPDATE public.kg_pool_uuid SET v = v WHERE v = 'b1'$$), 0::bigint,
          'app: UPDATE of another tenant''s row by a non-tenant predicate touches nothing (uuid)');
SELECT is(public.kg_pool_rowcount('UPDATE public.kg_pool_uuid SET v = v'), 4::bigint,
          'app: UPDATE without a predicate touches only the current tenant''s rows (uuid)');
SELECT is(public.kg_pool_rowcount($$MERGE INTO public.kg_pool_uuid d USING (VALUES ('b1')) s(v) ON d.v = s.v
                                     WHEN MATCHED THEN UPDATE SET v = 'stolen'$$), 0::bigint,
          'app: MERGE matching another tenant''s row by a non-tenant predicate touches nothing (uuid)');

SET LOCAL ROLE kg_pool_owner;
SELECT * FROM public.kg_pool_writes('public.kg_pool_uuid', $$'5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f'$$, 'owner');
SELECT throws_ok($$SELECT v FROM public.kg_pool_uuid WHERE tenant_id = '5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f'$$,
                 '42501', 'cross-tenant access denied',
                 'owner: WHERE tenant_id = <other tenant> on public.kg_pool_uuid');
RESET ROLE;
SELECT * FROM public.kg_pool_writes('public.kg_pool_uuid', $$'5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f'$$, 'superuser');

--
-- bigint tenant column: tenant ids 42 and 43.
--
SET LOCAL ROLE kg_pool_app;
DO $$ BEGIN PERFORM keys_guard.set_context('42', 'user_a'); END $$;
SELECT * FROM public.kg_pool_reads('public.kg_pool_bigint', 'app');
SET LOCAL ROLE kg_pool_owner;
SELECT * FROM public.kg_pool_reads('public.kg_pool_bigint', 'owner');
RESET ROLE;
SELECT * FROM public.kg_pool_reads('public.kg_pool_bigint', 'superuser');

SET LOCAL ROLE kg_pool_app;
SELECT * FROM public.kg_pool_names('public.kg_pool_bigint', '42', '43', 'app');
SELECT throws_ok('SELECT v FROM public.kg_pool_bigint WHERE tenant_id = ANY (ARRAY[42, 43])',
                 '42501', 'cross-tenant access denied',
                 'app: WHERE tenant_id = ANY (ARRAY[<own>, <other>]) on public.kg_pool_bigint');
RESET ROLE;
SELECT * FROM public.kg_pool_names('public.kg_pool_bigint', '42', '43', 'superuser');
SET LOCAL ROLE kg_pool_app;

PREPARE kg_pool_bigint_q(bigint) AS SELECT v FROM public.kg_pool_bigint WHERE tenant_id = $1 ORDER BY v;
SET LOCAL plan_cache_mode = force_custom_plan;
SELECT results_eq('EXECUTE kg_pool_bigint_q(42)', ARRAY['a1', 'a2', 'a3'],
                  'app: custom plan, $1 = own tenant returns the own rows (bigint)');
SELECT throws_ok('EXECUTE kg_pool_bigint_q(43)', '42501', 'cross-tenant access denied',
                 'app: custom plan, $1 = other tenant is denied (bigint)');
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT results_eq('EXECUTE kg_pool_bigint_q(42)', ARRAY['a1', 'a2', 'a3'],
                  'app: generic plan, $1 = own tenant returns the own rows (bigint)');
SELECT throws_ok('EXECUTE kg_pool_bigint_q(43)', '42501', 'cross-tenant access denied',
                 'app: generic plan, $1 = other tenant is denied (bigint)');
SET LOCAL plan_cache_mode = auto;
DO $$ BEGIN FOR i IN 1..6 LOOP EXECUTE 'EXECUTE kg_pool_bigint_q(42)'; END LOOP; END $$;
SELECT throws_ok('EXECUTE kg_pool_bigint_q(43)', '42501', 'cross-tenant access denied',
                 'app: 7th execution, $1 = other tenant is denied (bigint)');

SELECT ok(p LIKE '%Index Cond: (tenant_id = %' AND p LIKE '%kg_pool_bigint_tenant_idx%',
          'app: the tenant filter on public.kg_pool_bigint is an index condition')
  FROM public.kg_pool_plan('SELECT v FROM public.kg_pool_bigint') AS p;

SELECT lives_ok($$INSERT INTO public.kg_pool_bigint (v) VALUES ('a4')$$,
                'app: INSERT without a tenant value into public.kg_pool_bigint');
SELECT results_eq($$SELECT tenant_id FROM public.kg_pool_bigint WHERE v = 'a4'$$, ARRAY[42::bigint],
                  'app: the missing tenant value was filled in with the current tenant (bigint)');
SELECT * FROM public.kg_pool_writes('public.kg_pool_bigint', '43', 'app');
SELECT is(public.kg_pool_rowcount($$UPDATE public.kg_pool_bigint SET v = v WHERE v = 'b1'$$), 0::bigint,
          'app: UPDATE of another tenant''s row by a non-tenant predicate touches nothing (bigint)');
SELECT is(public.kg_pool_rowcount('UPDATE public.kg_pool_bigint SET v = v'), 4::bigint,
          'app: UPDATE without a predicate touches only the current tenant''s rows (bigint)');
SELECT is(public.kg_pool_rowcount($$MERGE INTO public.kg_pool_bigint d USING (VALUES ('b1')) s(v) ON d.v = s.v
                                     WHEN MATCHED THEN UPDATE SET v = 'stolen'$$), 0::bigint,
          'app: MERGE matching another tenant''s row by a non-tenant predicate touches nothing (bigint)');

SET LOCAL ROLE kg_pool_owner;
SELECT * FROM public.kg_pool_writes('public.kg_pool_bigint', '43', 'owner');
SELECT throws_ok('SELECT v FROM public.kg_pool_bigint WHERE tenant_id = 43', '42501',
                 'cross-tenant access denied', 'owner: WHERE tenant_id = <other tenant> on public.kg_pool_bigint');
RESET ROLE;
SELECT * FROM public.kg_pool_writes('public.kg_pool_bigint', '43', 'superuser');

--
-- No context: pooled tables are closed to everyone, superusers included.
--
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;
SET LOCAL ROLE kg_pool_app;
SELECT throws_ok('SELECT v FROM public.kg_pool_text', '42501', 'no tenant context',
                 'app without a context: SELECT from public.kg_pool_text');
SELECT throws_ok('SELECT v FROM public.kg_pool_uuid', '42501', 'no tenant context',
                 'app without a context: SELECT from public.kg_pool_uuid');
SELECT throws_ok('SELECT v FROM public.kg_pool_bigint', '42501', 'no tenant context',
                 'app without a context: SELECT from public.kg_pool_bigint');
SELECT throws_ok('SELECT v FROM public.kg_pool_text_v', '42501', 'no tenant context',
                 'app without a context: a view over public.kg_pool_text');
SELECT throws_ok($$INSERT INTO public.kg_pool_text (tenant_id, v) VALUES ('pool_a', 'x')$$, '42501',
                 'no tenant context', 'app without a context: INSERT into public.kg_pool_text');
SET LOCAL ROLE kg_pool_owner;
SELECT throws_ok('SELECT v FROM public.kg_pool_text', '42501', 'no tenant context',
                 'owner without a context: SELECT from public.kg_pool_text');
RESET ROLE;
SELECT throws_ok('SELECT v FROM public.kg_pool_text', '42501', 'no tenant context',
                 'superuser without a context: SELECT from public.kg_pool_text');
SELECT throws_ok($$UPDATE public.kg_pool_text SET v = v$$, '42501', 'no tenant context',
                 'superuser without a context: UPDATE public.kg_pool_text');

SELECT * FROM finish();
ROLLBACK;
