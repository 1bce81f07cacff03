-- soft_delete.sql: DELETE is a recoverable soft delete (docs/contract.md §7, §8,
-- §13).
--
--   * DELETE marks the rows (deleted_at = now(), hard_delete_at = now() +
--     grace, deleted_by = the actor, delete_request_id = the request id)
--     and leaves them in the table;
--   * soft-deleted rows are invisible to SELECT, joins, views, subqueries,
--     CTEs, UPDATE, DELETE, MERGE (a deleted row is NOT MATCHED) and the
--     table's own foreign-key lookups (23503), on tenant-schema and pooled
--     tables;
--   * keys_guard.include_deleted shows them to members of keys_guard_admin
--     only (anyone else: 42501);
--   * ON DELETE CASCADE into guarded soft-delete children soft-deletes them
--     in the same statement, two levels deep, with the parent's
--     hard_delete_at and request id (not the child table's own grace);
--   * preview_delete lists per table the rows a delete would reach, and
--     changes nothing;
--   * restore / restore_request / hard_delete: results, idempotence and
--     SQLSTATEs (55000 past or before the grace, 42501 for payment and
--     audit tables and for non-admins, 23505 with nothing changed for a
--     unique collision, 22004 / 22023 for bad input);
--   * class 'audit' is append-only for the owner and a superuser, also
--     with session_replication_role = replica; keys_guard.audit_log too;
--   * TRUNCATE of a soft-delete table and DROP TABLE of any guarded table
--     are 42501, the DROP hint naming release_table;
--   * grace: keys_guard.default_grace and a per-table grace give
--     hard_delete_at = deleted_at + grace; a negative grace is 22023.
--
-- The test cluster runs with keys_guard.min_grace = 0, so a table guarded
-- with grace => interval '0' has expired rows at once: this file runs in one
-- transaction, where now() is constant, so a row deleted here gets
-- hard_delete_at = now(), and "hard_delete_at <= now()" holds.
BEGIN;
SELECT plan(175);

--
-- Roles: an API role, an admin, the owner of the audit table.
--
CREATE ROLE kg_sd_app NOLOGIN;
GRANT keys_guard_gateway TO kg_sd_app;
CREATE ROLE kg_sd_admin NOLOGIN;
GRANT keys_guard_admin TO kg_sd_admin;
CREATE ROLE kg_sd_owner NOLOGIN;
GRANT keys_guard_gateway TO kg_sd_owner;

SELECT id FROM keys_guard.create_tenant('sd_a') \g /dev/null
SELECT id FROM keys_guard.create_tenant('sd_b') \g /dev/null

--
-- Tables.  DDL without a context, as migrations run it; every table in
-- tenant_sd_a is guarded with soft delete by the event trigger.
--
CREATE TABLE tenant_sd_a.customers (id int PRIMARY KEY, email text NOT NULL, name text NOT NULL);
CREATE UNIQUE INDEX kg_sd_customers_email_live ON tenant_sd_a.customers (email)
    WHERE deleted_at IS NULL;
-- orders get their grace from keys_guard.default_grace.
SET LOCAL keys_guard.default_grace = '7d';
CREATE TABLE tenant_sd_a.orders (
    id int PRIMARY KEY,
    customer_id int NOT NULL REFERENCES tenant_sd_a.customers ON DELETE CASCADE,
    total int NOT NULL);
RESET keys_guard.default_grace;
CREATE TABLE tenant_sd_a.order_lines (
    id int PRIMARY KEY,
    order_id int NOT NULL REFERENCES tenant_sd_a.orders ON DELETE CASCADE,
    qty int NOT NULL);
-- No foreign key: visits keep pointing at deleted customers, for joins.
CREATE TABLE tenant_sd_a.visits (id int PRIMARY KEY, customer_id int NOT NULL, day text NOT NULL);
CREATE TABLE tenant_sd_a.payments (id int PRIMARY KEY, amount int NOT NULL);
SELECT class FROM keys_guard.protect_table('tenant_sd_a.payments', class => 'payment') \g /dev/null
CREATE TABLE tenant_sd_a.events (id int PRIMARY KEY, what text NOT NULL);
SELECT class FROM keys_guard.protect_table('tenant_sd_a.events', class => 'audit') \g /dev/null
ALTER TABLE tenant_sd_a.events OWNER TO kg_sd_owner;
CREATE TABLE tenant_sd_a.composite (a int, b int, PRIMARY KEY (a, b));
CREATE TABLE tenant_sd_a.nopk (id int, v text);

-- Pooled: grace 0 (expires at once), grace 7 days, no soft delete.
CREATE TABLE public.kg_sd_expiring (id int PRIMARY KEY, tenant_id text NOT NULL, v text NOT NULL);
SELECT grace FROM keys_guard.protect_table('public.kg_sd_expiring', tenant_column => 'tenant_id',
                                           grace => interval '0') \g /dev/null
CREATE TABLE public.kg_sd_week (id int PRIMARY KEY, tenant_id text NOT NULL, v text NOT NULL);
SELECT grace FROM keys_guard.protect_table('public.kg_sd_week', tenant_column => 'tenant_id',
                                           grace => interval '7 days') \g /dev/null
CREATE TABLE public.kg_sd_nosoft (id int PRIMARY KEY, tenant_id text NOT NULL);
SELECT grace FROM keys_guard.protect_table('public.kg_sd_nosoft', tenant_column => 'tenant_id',
                                           soft_delete => false) \g /dev/null
CREATE TABLE public.kg_sd_neg (id int PRIMARY KEY, tenant_id text NOT NULL);
CREATE TABLE public.kg_sd_unguarded (id int PRIMARY KEY);

CREATE VIEW public.kg_sd_customers_v AS SELECT id, email, name FROM tenant_sd_a.customers;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenant_sd_a TO kg_sd_app, kg_sd_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.kg_sd_expiring, public.kg_sd_week,
    public.kg_sd_nosoft TO kg_sd_app, kg_sd_admin;
GRANT SELECT ON public.kg_sd_customers_v TO kg_sd_app, kg_sd_admin;

--
-- Helpers.
--
-- The helpers below return an error as 'error <SQLSTATE>: <message>'
-- rather than raising it, so that a failure fails one test, not the file.
--
-- Rows a statement processed.
CREATE FUNCTION public.kg_sd_rowcount(sql text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE sql;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n::text;
EXCEPTION WHEN OTHERS THEN
    RETURN format('error %s: %s', SQLSTATE, SQLERRM);
END $$;
-- The first value a query returns.
CREATE FUNCTION public.kg_sd_value(sql text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
    EXECUTE sql INTO r;
    RETURN r;
EXCEPTION WHEN OTHERS THEN
    RETURN format('error %s: %s', SQLSTATE, SQLERRM);
END $$;
-- Every row a query returns, as record text, ';'-separated.  Relations
-- print schema-qualified (search_path is only pg_catalog here).
CREATE FUNCTION public.kg_sd_rows(sql text) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE r text;
BEGIN
    EXECUTE format('SELECT string_agg(q::text, %L) FROM (%s) q', ';', sql) INTO r;
    RETURN r;
EXCEPTION WHEN OTHERS THEN
    RETURN format('error %s: %s', SQLSTATE, SQLERRM);
END $$;
-- A query's one value as the table really is: every tenant, deleted rows
-- included (a superuser's keys_guard.bypass).
CREATE FUNCTION public.kg_sd_all(sql text) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET keys_guard.bypass = on AS $$
DECLARE r text;
BEGIN
    EXECUTE sql INTO r;
    RETURN r;
END $$;
-- The soft-delete marks of row <key> of <rel>: 'absent', 'live', or
-- 'deleted|<deleted_at = now()>|<hard_delete_at - deleted_at>|<deleted_by>|<delete_request_id>'.
CREATE FUNCTION public.kg_sd_mark(rel regclass, key int) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET keys_guard.bypass = on AS $$
DECLARE r text;
BEGIN
    EXECUTE format('SELECT CASE WHEN deleted_at IS NULL THEN %L'
                   ' ELSE concat_ws(%L, %L, (deleted_at = now())::text, hard_delete_at - deleted_at,'
                   ' deleted_by, delete_request_id) END FROM %s WHERE id = $1',
                   'live', '|', 'deleted', rel)
        INTO r USING key;
    RETURN coalesce(r, 'absent');
END $$;
-- SQLSTATE, message and hint of the error a statement raises.
CREATE FUNCTION public.kg_sd_error(sql text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    state text;
    msg text;
    hint text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN concat_ws(' | ', state, msg, hint);
END $$;
GRANT EXECUTE ON FUNCTION public.kg_sd_rowcount(text), public.kg_sd_value(text),
    public.kg_sd_rows(text), public.kg_sd_error(text)
    TO kg_sd_app, kg_sd_admin, kg_sd_owner;
REVOKE ALL ON FUNCTION public.kg_sd_all(text), public.kg_sd_mark(regclass, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.kg_sd_all(text), public.kg_sd_mark(regclass, int)
    TO kg_sd_app, kg_sd_admin, kg_sd_owner;

--
-- Data, under tenant contexts.
--
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'seed', 'sd-seed'); END $$;
INSERT INTO tenant_sd_a.customers VALUES
    (1, 'c1@example.com', 'one'), (2, 'c2@example.com', 'two'), (3, 'c3@example.com', 'three'),
    (4, 'c4@example.com', 'four'), (6, 'c6@example.com', 'six'), (7, 'c7@example.com', 'seven');
INSERT INTO tenant_sd_a.orders VALUES
    (11, 1, 10), (12, 1, 20), (21, 2, 30), (22, 2, 40), (41, 4, 50), (71, 7, 70);
INSERT INTO tenant_sd_a.order_lines VALUES
    (111, 11, 1), (112, 11, 2), (121, 12, 1), (211, 21, 1), (212, 21, 2), (213, 21, 3), (411, 41, 1);
INSERT INTO tenant_sd_a.visits VALUES (1, 1, 'monday'), (2, 2, 'tuesday'), (3, 1, 'friday');
INSERT INTO tenant_sd_a.payments VALUES (1, 100), (2, 200);
INSERT INTO tenant_sd_a.events VALUES (1, 'login'), (2, 'logout');
INSERT INTO tenant_sd_a.composite VALUES (1, 1);
INSERT INTO tenant_sd_a.nopk VALUES (1, 'x');
INSERT INTO public.kg_sd_expiring (id, v) VALUES (1, 'e1'), (2, 'e2'), (3, 'e3');
INSERT INTO public.kg_sd_week (id, v) VALUES (1, 'w1'), (2, 'w2'), (3, 'w3');
INSERT INTO public.kg_sd_nosoft (id) VALUES (1);
DO $$ BEGIN PERFORM keys_guard.set_context('sd_b', 'seed'); END $$;
INSERT INTO public.kg_sd_expiring (id, v) VALUES (101, 'b1');
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;

SELECT results_eq($$SELECT format('%s.%s', schema, table_name) COLLATE "default", soft_delete, grace, class FROM keys_guard.guarded_tables
                     WHERE format('%s.%s', schema, table_name) IN ('tenant_sd_a.customers', 'tenant_sd_a.orders',
                               'tenant_sd_a.payments', 'tenant_sd_a.events', 'public.kg_sd_expiring',
                               'public.kg_sd_week', 'public.kg_sd_nosoft')
                     ORDER BY 1$$,
                  $$VALUES ('public.kg_sd_expiring', true, interval '0', 'standard'),
                           ('public.kg_sd_nosoft', false, interval '30 days', 'standard'),
                           ('public.kg_sd_week', true, interval '7 days', 'standard'),
                           ('tenant_sd_a.customers', true, interval '30 days', 'standard'),
                           ('tenant_sd_a.events', true, interval '30 days', 'audit'),
                           ('tenant_sd_a.orders', true, interval '7 days', 'standard'),
                           ('tenant_sd_a.payments', true, interval '30 days', 'payment')$$,
                  'grace and class as set: default 30 days, keys_guard.default_grace = 7d, per table 0 and 7 days');

--
-- DELETE marks rows and keeps them.  Customer 1 has orders 11 and 12
-- (lines 111, 112, 121); its deletion cascades two levels.
--
SET LOCAL ROLE kg_sd_app;
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'alice', 'sd-req-1'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.customers WHERE id = 1'), '1',
          'DELETE of one customer reports 1 row (cascaded children are not counted)');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 1), 'deleted|true|30 days|alice|sd-req-1',
          'the deleted row is still in the table: deleted_at = now(), hard_delete_at = now() + 30 days, actor, request id');
SELECT is(public.kg_sd_all('SELECT count(*) FROM tenant_sd_a.customers'), '6',
          'the customers table still holds all 6 rows');
SELECT results_eq($$SELECT id, public.kg_sd_mark('tenant_sd_a.orders', id)
                      FROM unnest(ARRAY[11, 12, 21, 22]) id ORDER BY id$$,
                  $$VALUES (11, 'deleted|true|30 days|alice|sd-req-1'), (12, 'deleted|true|30 days|alice|sd-req-1'),
                           (21, 'live'), (22, 'live')$$,
                  'cascade: the customer''s orders are soft-deleted with its hard_delete_at (not orders'' own 7 days) and request id; others are live');
SELECT results_eq($$SELECT id, public.kg_sd_mark('tenant_sd_a.order_lines', id)
                      FROM unnest(ARRAY[111, 112, 121, 211]) id ORDER BY id$$,
                  $$VALUES (111, 'deleted|true|30 days|alice|sd-req-1'), (112, 'deleted|true|30 days|alice|sd-req-1'),
                           (121, 'deleted|true|30 days|alice|sd-req-1'), (211, 'live')$$,
                  'cascade, second level: the orders'' lines are soft-deleted with the same hard_delete_at and request id');
SELECT is(public.kg_sd_all('SELECT count(*) FROM tenant_sd_a.orders') || '/'
          || public.kg_sd_all('SELECT count(*) FROM tenant_sd_a.order_lines'), '6/7',
          'cascade: no order or order line was removed physically');

SELECT is(public.kg_sd_rowcount('DELETE FROM public.kg_sd_expiring WHERE id = 3'), '1',
          'pooled table: DELETE reports 1 row');
SELECT is(public.kg_sd_mark('public.kg_sd_expiring', 3), 'deleted|true|00:00:00|alice|sd-req-1',
          'pooled table: the row is kept and marked; grace 0 gives hard_delete_at = deleted_at');

--
-- Soft-deleted rows are invisible to every ordinary read and write.
--
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'alice', 'sd-req-2'); END $$;
SELECT results_eq('SELECT id FROM tenant_sd_a.customers ORDER BY id', ARRAY[2, 3, 4, 6, 7],
                  'SELECT does not return the deleted customer');
SELECT is_empty('SELECT * FROM tenant_sd_a.customers WHERE id = 1',
                'SELECT by the deleted row''s primary key returns nothing');
SELECT results_eq('SELECT count(*) FROM tenant_sd_a.customers', ARRAY[5::bigint],
                  'count(*) does not count the deleted customer');
SELECT results_eq('SELECT id FROM tenant_sd_a.orders ORDER BY id', ARRAY[21, 22, 41, 71],
                  'SELECT does not return cascaded (soft-deleted) orders');
SELECT results_eq('SELECT v FROM public.kg_sd_expiring ORDER BY id', ARRAY['e1', 'e2'],
                  'pooled table: SELECT returns neither the deleted row nor other tenants'' rows');
SELECT results_eq('SELECT v.id FROM tenant_sd_a.visits v JOIN tenant_sd_a.customers c ON c.id = v.customer_id ORDER BY 1',
                  ARRAY[2], 'an inner join does not find the deleted customer');
SELECT results_eq($$SELECT v.id, c.id FROM tenant_sd_a.visits v
                      LEFT JOIN tenant_sd_a.customers c ON c.id = v.customer_id ORDER BY 1$$,
                  $$VALUES (1, NULL::int), (2, 2), (3, NULL::int)$$,
                  'a left join sees no row for the deleted customer');
SELECT results_eq('SELECT id FROM public.kg_sd_customers_v ORDER BY id', ARRAY[2, 3, 4, 6, 7],
                  'a view does not return the deleted customer');
SELECT is_empty('SELECT * FROM public.kg_sd_customers_v WHERE id = 1',
                'a view filtered on the deleted row''s key returns nothing');
SELECT results_eq('SELECT id FROM tenant_sd_a.visits WHERE customer_id IN (SELECT id FROM tenant_sd_a.customers) ORDER BY id',
                  ARRAY[2], 'an IN (subquery) does not see the deleted customer');
SELECT results_eq($$SELECT id FROM tenant_sd_a.visits v
                     WHERE NOT EXISTS (SELECT 1 FROM tenant_sd_a.customers c WHERE c.id = v.customer_id) ORDER BY id$$,
                  ARRAY[1, 3], 'a NOT EXISTS (subquery) does not see the deleted customer');
SELECT results_eq('SELECT (SELECT name FROM tenant_sd_a.customers WHERE id = 1)', ARRAY[NULL::text],
                  'a scalar subquery does not see the deleted customer');
SELECT results_eq('SELECT count(*) FROM (SELECT * FROM tenant_sd_a.customers OFFSET 0) s', ARRAY[5::bigint],
                  'a derived table does not see the deleted customer');
SELECT results_eq('WITH c AS MATERIALIZED (SELECT * FROM tenant_sd_a.customers) SELECT count(*) FROM c',
                  ARRAY[5::bigint], 'a CTE does not see the deleted customer');

SELECT is(public.kg_sd_rowcount($$UPDATE tenant_sd_a.customers SET name = 'renamed' WHERE id = 1$$), '0',
          'UPDATE ... WHERE id = <deleted row> updates 0 rows');
SELECT is(public.kg_sd_rowcount('UPDATE tenant_sd_a.customers SET name = name'), '5',
          'UPDATE without a predicate updates only the 5 live customers');
SELECT is(public.kg_sd_all('SELECT name FROM tenant_sd_a.customers WHERE id = 1'), 'one',
          'the deleted row was not updated');
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.customers WHERE id = 1'), '0',
          'a repeated DELETE of the deleted row reports 0 rows');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 1), 'deleted|true|30 days|alice|sd-req-1',
          'the repeated DELETE did not re-mark the row (still request sd-req-1)');
SELECT is(public.kg_sd_rowcount($$MERGE INTO tenant_sd_a.customers t USING (VALUES (1)) s(id) ON t.id = s.id
                                  WHEN MATCHED THEN UPDATE SET name = 'merged'$$), '0',
          'MERGE ... WHEN MATCHED THEN UPDATE does not match the deleted row');
SELECT is(public.kg_sd_rowcount($$MERGE INTO tenant_sd_a.customers t USING (VALUES (1)) s(id) ON t.id = s.id
                                  WHEN MATCHED THEN DELETE$$), '0',
          'MERGE ... WHEN MATCHED THEN DELETE does not match the deleted row');
SELECT is(public.kg_sd_rowcount($$MERGE INTO tenant_sd_a.customers t
                                  USING (VALUES (5, 'c1@example.com')) s(id, email) ON t.email = s.email
                                  WHEN MATCHED THEN UPDATE SET name = 'matched'
                                  WHEN NOT MATCHED THEN INSERT (id, email, name) VALUES (s.id, s.email, 'inserted')$$),
          '1', 'MERGE: the deleted row is NOT MATCHED, so the row is inserted');
SELECT results_eq($$SELECT id, name FROM tenant_sd_a.customers WHERE email = 'c1@example.com'$$,
                  $$VALUES (5, 'inserted')$$, 'MERGE inserted a new live row with the deleted row''s email');
SELECT is(public.kg_sd_all('SELECT name || '':'' || (deleted_at IS NOT NULL) FROM tenant_sd_a.customers WHERE id = 1'),
          'one:true', 'MERGE left the deleted row as it was');

-- The foreign-key lookup does not find a soft-deleted parent.
SELECT throws_ok('INSERT INTO tenant_sd_a.orders VALUES (13, 1, 5)', '23503', NULL,
                 'inserting an order that references the deleted customer fails with 23503');
SELECT throws_ok('UPDATE tenant_sd_a.orders SET customer_id = 1 WHERE id = 21', '23503', NULL,
                 'pointing an order at the deleted customer fails with 23503');
SELECT lives_ok('INSERT INTO tenant_sd_a.orders VALUES (31, 3, 5)',
                'inserting an order that references a live customer works');

--
-- keys_guard.include_deleted: members of keys_guard_admin only.
--
SELECT throws_ok('SET keys_guard.include_deleted = on', '42501', 'permission denied to see deleted rows',
                 'API role: SET keys_guard.include_deleted = on is refused');
SELECT throws_ok('SET LOCAL keys_guard.include_deleted = on', '42501', 'permission denied to see deleted rows',
                 'API role: SET LOCAL keys_guard.include_deleted = on is refused');
SELECT throws_ok($$SELECT set_config('keys_guard.include_deleted', 'on', true)$$, '42501',
                 'permission denied to see deleted rows',
                 'API role: set_config(''keys_guard.include_deleted'', ''on'') is refused');
SET LOCAL ROLE kg_sd_owner;
SELECT throws_ok('SET LOCAL keys_guard.include_deleted = on', '42501', 'permission denied to see deleted rows',
                 'the table owner (not an admin): SET keys_guard.include_deleted = on is refused');
SET LOCAL ROLE kg_sd_admin;
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'ops', 'sd-req-admin'); END $$;
SELECT results_eq('SELECT id FROM tenant_sd_a.customers ORDER BY id', ARRAY[2, 3, 4, 5, 6, 7],
                  'admin without include_deleted: the deleted customer is hidden');
SELECT lives_ok('SET LOCAL keys_guard.include_deleted = on',
                'admin: SET keys_guard.include_deleted = on is allowed');
SELECT results_eq('SELECT id FROM tenant_sd_a.customers ORDER BY id', ARRAY[1, 2, 3, 4, 5, 6, 7],
                  'admin with include_deleted: SELECT shows the deleted customer');
SELECT results_eq('SELECT id FROM tenant_sd_a.orders ORDER BY id', ARRAY[11, 12, 21, 22, 31, 41, 71],
                  'admin with include_deleted: SELECT shows the cascaded orders');
SELECT results_eq($$SELECT id, deleted_by, delete_request_id FROM tenant_sd_a.customers WHERE deleted_at IS NOT NULL$$,
                  $$VALUES (1, 'alice', 'sd-req-1')$$,
                  'admin with include_deleted: the marks are readable');
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.customers WHERE id = 1'), '0',
          'admin with include_deleted: a DELETE of the visible deleted row still reports 0');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 1), 'deleted|true|30 days|alice|sd-req-1',
          'admin with include_deleted: that DELETE did not re-mark the row');
SET LOCAL ROLE kg_sd_app;
SELECT results_eq('SELECT id FROM tenant_sd_a.customers ORDER BY id', ARRAY[2, 3, 4, 5, 6, 7],
                  'a non-admin role does not see deleted rows although the admin left include_deleted on');
SET LOCAL ROLE kg_sd_admin;
SET LOCAL keys_guard.include_deleted = off;
SELECT results_eq('SELECT id FROM tenant_sd_a.customers ORDER BY id', ARRAY[2, 3, 4, 5, 6, 7],
                  'admin after include_deleted = off: the deleted customer is hidden again');

--
-- preview_delete: per table, what a DELETE of that row would reach,
-- counted as the caller (here a superuser under tenant sd_a's context; an
-- admin role is tested further down).  Customer 2 has orders 21 (lines
-- 211-213) and 22.
--
RESET ROLE;
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'ops', 'sd-req-preview'); END $$;
SELECT is(public.kg_sd_rows($$SELECT relation, depth, rows
                                FROM keys_guard.preview_delete('tenant_sd_a.customers', 2) ORDER BY depth$$),
          '(tenant_sd_a.customers,0,1);(tenant_sd_a.orders,1,2);(tenant_sd_a.order_lines,2,3)',
          'preview_delete: the customer, its 2 orders and their 3 lines');
SELECT is(public.kg_sd_rows($$SELECT relation, depth, rows
                                FROM keys_guard.preview_delete('tenant_sd_a.orders', 22) ORDER BY depth$$),
          '(tenant_sd_a.orders,0,1);(tenant_sd_a.order_lines,1,0)',
          'preview_delete: an order without lines reaches only itself');
SELECT is(public.kg_sd_rows($$SELECT relation, depth, rows
                                FROM keys_guard.preview_delete('tenant_sd_a.customers', 1)$$),
          '(tenant_sd_a.customers,0,0)',
          'preview_delete of a soft-deleted row: a DELETE would reach nothing');
SELECT ok(public.kg_sd_mark('tenant_sd_a.customers', 2) = 'live'
          AND public.kg_sd_mark('tenant_sd_a.orders', 21) = 'live'
          AND public.kg_sd_mark('tenant_sd_a.order_lines', 213) = 'live',
          'preview_delete changed nothing');
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;
SELECT throws_ok($$SELECT * FROM keys_guard.preview_delete('tenant_sd_a.customers', 2)$$, '42501', NULL,
                 'preview_delete counts as the caller: without a context it is refused like a DELETE');

--
-- Deletes to restore later, each its own request.
--
SET LOCAL ROLE kg_sd_app;
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'bob', 'sd-req-3'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.customers WHERE id = 3'), '1',
          'request sd-req-3 deletes customer 3 (and cascades to order 31)');
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'bob', 'sd-req-4'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.customers WHERE id = 4'), '1',
          'request sd-req-4 deletes customer 4 (and cascades to order 41 and line 411)');
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'bob', 'sd-req-6'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.customers WHERE id = 6') || '+'
          || public.kg_sd_rowcount('DELETE FROM public.kg_sd_expiring WHERE id = 2'), '1+1',
          'request sd-req-6 deletes customer 6 (30 days) and expiring row 2 (grace 0)');
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'bob', 'sd-req-exp'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM public.kg_sd_expiring WHERE id = 1'), '1',
          'request sd-req-exp deletes expiring row 1 (grace 0)');
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'bob', 'sd-req-wk-1'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM public.kg_sd_week WHERE id = 2'), '1',
          'request sd-req-wk-1 deletes pooled row 2 of kg_sd_week');
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'bob', 'sd-req-wk-2'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM public.kg_sd_week WHERE id = 3'), '1',
          'request sd-req-wk-2 deletes pooled row 3 of kg_sd_week');
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'bob', 'sd-req-pay'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.payments WHERE id = 1'), '1',
          'payment table: DELETE reports 1 row');
SELECT results_eq('SELECT id FROM tenant_sd_a.payments', ARRAY[2],
                  'payment table: the deleted payment is hidden');
SELECT is(public.kg_sd_mark('tenant_sd_a.payments', 1), 'deleted|true|30 days|bob|sd-req-pay',
          'payment table: the deleted payment is kept and marked');

-- The API role restores only its own tenant's rows (tested in
-- sql/attacks.sql); another tenant's are refused, and only admins
-- hard-delete.
DO $$ BEGIN PERFORM keys_guard.set_context('sd_b', 'mallory', 'sd-req-b'); END $$;
SELECT throws_ok($$SELECT keys_guard.restore('tenant_sd_a.customers', 3)$$, '42501', NULL,
                 'API role: restore() of another tenant''s row is refused');
SELECT throws_ok($$SELECT keys_guard.restore_request('sd-req-3')$$, '42501', NULL,
                 'API role: restore_request() of another tenant''s request is refused');
SELECT throws_ok($$SELECT keys_guard.hard_delete('public.kg_sd_expiring', 1, confirm => true)$$, '42501', NULL,
                 'API role: hard_delete() is refused');
SELECT is(public.kg_sd_mark('public.kg_sd_expiring', 1), 'deleted|true|00:00:00|bob|sd-req-exp',
          'the refused calls changed nothing');

--
-- restore and restore_request, without a context (they act across
-- tenants), here by a superuser; an admin role is tested further down.
--
RESET ROLE;
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;
SELECT is(public.kg_sd_value($$SELECT keys_guard.restore('tenant_sd_a.customers', 3)$$), '1',
          'restore of a deleted row within its grace returns 1');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 3), 'live',
          'the restored row is live again, its marks cleared');
SELECT is(public.kg_sd_value($$SELECT keys_guard.restore('tenant_sd_a.customers', 3)$$), '0',
          'restoring it again returns 0 (idempotent)');
SELECT is(public.kg_sd_value($$SELECT keys_guard.restore('tenant_sd_a.customers', 2)$$), '0',
          'restore of a row that was never deleted returns 0');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 2), 'live', 'and leaves it live');
SELECT throws_ok($$SELECT keys_guard.restore('tenant_sd_a.customers', 999)$$, '22023', NULL,
                 'restore of a key that does not exist is 22023');

-- Customer 5 (live) took customer 1's email: restoring 1 would violate
-- the partial unique index.
SELECT throws_ok($$SELECT keys_guard.restore('tenant_sd_a.customers', 1)$$, '23505', NULL,
                 'restore colliding with a live row on a partial unique index is 23505');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 1), 'deleted|true|30 days|alice|sd-req-1',
          'the failed restore left the deleted row as it was');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 5), 'live',
          'the failed restore left the live row as it was');

SELECT is(public.kg_sd_value($$SELECT keys_guard.restore_request('sd-req-4')$$), '3',
          'restore_request restores everything the request deleted: customer, order, line');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 4) || ',' || public.kg_sd_mark('tenant_sd_a.orders', 41)
          || ',' || public.kg_sd_mark('tenant_sd_a.order_lines', 411), 'live,live,live',
          'restore_request: the three rows are live again');
SELECT is(public.kg_sd_value($$SELECT keys_guard.restore('public.kg_sd_week', 2)$$), '1',
          'restore of a pooled table''s row without a context returns 1');
SELECT is(public.kg_sd_mark('public.kg_sd_week', 2), 'live', 'the pooled row is live again');
SELECT is(public.kg_sd_value($$SELECT keys_guard.restore_request('sd-req-wk-2')$$), '1',
          'restore_request of a pooled table''s row without a context returns 1');
SELECT is(public.kg_sd_mark('public.kg_sd_week', 3), 'live', 'the request''s pooled row is live again');
SELECT is(public.kg_sd_value($$SELECT keys_guard.restore_request('sd-req-4')$$), '0',
          'restore_request again returns 0 (idempotent)');
SELECT is(public.kg_sd_value($$SELECT keys_guard.restore_request('sd-no-such-request')$$), '0',
          'restore_request of an unknown request returns 0');

-- A cascade does not re-mark a child deleted earlier by another request,
-- and restoring the parent's request leaves that child deleted.
SET LOCAL ROLE kg_sd_app;
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'erin', 'sd-req-9a'); END $$;
INSERT INTO tenant_sd_a.customers VALUES (9, 'c9@example.com', 'nine');
INSERT INTO tenant_sd_a.orders VALUES (91, 9, 1), (92, 9, 2);
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.orders WHERE id = 92'), '1',
          'request sd-req-9a deletes order 92');
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'erin', 'sd-req-9b'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.customers WHERE id = 9'), '1',
          'request sd-req-9b deletes customer 9');
SELECT is(public.kg_sd_mark('tenant_sd_a.orders', 91) || ',' || public.kg_sd_mark('tenant_sd_a.orders', 92),
          'deleted|true|30 days|erin|sd-req-9b,deleted|true|7 days|erin|sd-req-9a',
          'cascade: the live order gets the parent''s marks; the order deleted earlier keeps its own');
RESET ROLE;
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;
SELECT is(public.kg_sd_value($$SELECT keys_guard.restore_request('sd-req-9b')$$), '2',
          'restore_request of the parent''s request restores the customer and the order it cascaded to');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 9) || ',' || public.kg_sd_mark('tenant_sd_a.orders', 91)
          || ',' || public.kg_sd_mark('tenant_sd_a.orders', 92),
          'live,live,deleted|true|7 days|erin|sd-req-9a',
          'restore_request left the order another request deleted as it was');

-- Past the grace (grace 0: hard_delete_at = now()).
SELECT throws_ok($$SELECT keys_guard.restore('public.kg_sd_expiring', 1)$$, '55000', 'grace period has expired',
                 'restore after hard_delete_at is 55000 "grace period has expired"');
SELECT is(public.kg_sd_mark('public.kg_sd_expiring', 1), 'deleted|true|00:00:00|bob|sd-req-exp',
          'the refused restore changed nothing');
SELECT throws_ok($$SELECT keys_guard.restore_request('sd-req-6')$$, '55000', 'grace period has expired',
                 'restore_request of a request with one expired row is 55000');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 6), 'deleted|true|30 days|bob|sd-req-6',
          'restore_request restored nothing: the row still within its grace stays deleted');

--
-- hard_delete.
--
SELECT throws_ok($$SELECT keys_guard.hard_delete('tenant_sd_a.customers', 6, confirm => true)$$, '55000',
                 'grace period has not expired', 'hard_delete before hard_delete_at is 55000');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 6), 'deleted|true|30 days|bob|sd-req-6',
          'the refused hard_delete left the row');
SELECT throws_ok($$SELECT keys_guard.hard_delete('tenant_sd_a.customers', 2, confirm => true)$$, '55000', NULL,
                 'hard_delete of a live row is 55000');
SELECT is(public.kg_sd_mark('tenant_sd_a.customers', 2), 'live', 'the live row is still there');
SELECT is(public.kg_sd_value($$SELECT keys_guard.hard_delete('public.kg_sd_expiring', 1)$$), '1',
          'hard_delete without confirm reports the 1 row it would remove');
SELECT is(public.kg_sd_mark('public.kg_sd_expiring', 1), 'deleted|true|00:00:00|bob|sd-req-exp',
          'hard_delete without confirm changed nothing');
SELECT is(public.kg_sd_value($$SELECT keys_guard.hard_delete('public.kg_sd_expiring', 1, confirm => true)$$), '1',
          'hard_delete with confirm after hard_delete_at removes the row: 1');
SELECT is(public.kg_sd_mark('public.kg_sd_expiring', 1), 'absent', 'the row is physically gone');
SELECT is(public.kg_sd_all('SELECT string_agg(id::text, '','' ORDER BY id) FROM public.kg_sd_expiring'),
          '2,3,101', 'no other row was removed');
SELECT is(public.kg_sd_value($$SELECT keys_guard.hard_delete('public.kg_sd_expiring', 1, confirm => true)$$), '0',
          'hard_delete of a row already gone returns 0 (idempotent)');
SELECT is(public.kg_sd_value($$SELECT keys_guard.hard_delete('public.kg_sd_expiring', 999, confirm => true)$$), '0',
          'hard_delete of a row that never existed returns 0');
SELECT throws_ok($$SELECT keys_guard.hard_delete('tenant_sd_a.payments', 1, confirm => true)$$, '42501', NULL,
                 'hard_delete on a payment table is 42501');
SELECT is(public.kg_sd_mark('tenant_sd_a.payments', 1), 'deleted|true|30 days|bob|sd-req-pay',
          'the payment row is still there');
SELECT throws_ok($$SELECT keys_guard.hard_delete('tenant_sd_a.events', 1, confirm => true)$$, '42501', NULL,
                 'hard_delete on an audit table is 42501');
SELECT is(public.kg_sd_mark('tenant_sd_a.events', 1), 'live', 'the audit row is still there');

--
-- keys_guard_admin members who are not superusers may restore, restore a
-- request, hard-delete and preview (docs/contract.md §2).  Rows of kg_sd_week
-- (grace 7 days) deleted by the API role; expiring row 2 is past its grace.
--
SET LOCAL ROLE kg_sd_app;
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'dave', 'sd-req-adm-1'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.visits WHERE id = 3'), '1',
          'request sd-req-adm-1 deletes visit 3');
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'dave', 'sd-req-adm-2'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.visits WHERE id = 2'), '1',
          'request sd-req-adm-2 deletes visit 2');
SET LOCAL ROLE kg_sd_admin;
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;
SELECT is(public.kg_sd_value($$SELECT keys_guard.restore('tenant_sd_a.visits', 3)$$), '1',
          'admin role: restore() of a deleted row returns 1');
SELECT is(public.kg_sd_mark('tenant_sd_a.visits', 3), 'live', 'admin role: the row is restored');
SELECT is(public.kg_sd_value($$SELECT keys_guard.restore_request('sd-req-adm-2')$$), '1',
          'admin role: restore_request() returns 1');
SELECT is(public.kg_sd_mark('tenant_sd_a.visits', 2), 'live', 'admin role: the request''s row is restored');
SELECT is(public.kg_sd_value($$SELECT keys_guard.hard_delete('public.kg_sd_expiring', 2, confirm => true)$$), '1',
          'admin role: hard_delete() of an expired row returns 1');
SELECT is(public.kg_sd_mark('public.kg_sd_expiring', 2), 'absent', 'admin role: the expired row is removed');
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'ops', 'sd-req-adm-3'); END $$;
SELECT is(public.kg_sd_rows($$SELECT relation, depth, rows
                                FROM keys_guard.preview_delete('tenant_sd_a.customers', 2) ORDER BY depth$$),
          '(tenant_sd_a.customers,0,1);(tenant_sd_a.orders,1,2);(tenant_sd_a.order_lines,2,3)',
          'admin role: preview_delete() under a context lists the customer, its orders and lines');
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;

--
-- class 'audit': append-only for the owner and a superuser, also in
-- replica mode.
--
SET LOCAL ROLE kg_sd_owner;
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'owner', 'sd-req-audit'); END $$;
SELECT lives_ok($$INSERT INTO tenant_sd_a.events VALUES (3, 'append')$$,
                'audit table: the owner can append');
SELECT throws_ok($$UPDATE tenant_sd_a.events SET what = 'x' WHERE id = 1$$, '42501', NULL,
                 'audit table: UPDATE by the owner is 42501');
SELECT throws_ok('DELETE FROM tenant_sd_a.events WHERE id = 1', '42501', NULL,
                 'audit table: DELETE by the owner is 42501');
SELECT throws_ok('TRUNCATE tenant_sd_a.events', '42501', NULL,
                 'audit table: TRUNCATE by the owner is 42501');
RESET ROLE;
SELECT throws_ok($$UPDATE tenant_sd_a.events SET what = 'x' WHERE id = 1$$, '42501', NULL,
                 'audit table: UPDATE by a superuser is 42501');
SELECT throws_ok('DELETE FROM tenant_sd_a.events WHERE id = 1', '42501', NULL,
                 'audit table: DELETE by a superuser is 42501');
SELECT throws_ok('TRUNCATE tenant_sd_a.events', '42501', NULL,
                 'audit table: TRUNCATE by a superuser is 42501');
SET LOCAL session_replication_role = replica;
SELECT throws_ok($$UPDATE tenant_sd_a.events SET what = 'x' WHERE id = 1$$, '42501', NULL,
                 'audit table: UPDATE by a superuser in replica mode is 42501');
SELECT throws_ok('DELETE FROM tenant_sd_a.events WHERE id = 1', '42501', NULL,
                 'audit table: DELETE by a superuser in replica mode is 42501');
SELECT throws_ok('TRUNCATE tenant_sd_a.events', '42501', NULL,
                 'audit table: TRUNCATE by a superuser in replica mode is 42501');
SET LOCAL session_replication_role = origin;
SELECT is(public.kg_sd_all($$SELECT string_agg(id || ':' || what || ':' || (deleted_at IS NULL), ',' ORDER BY id)
                             FROM tenant_sd_a.events$$),
          '1:login:true,2:logout:true,3:append:true',
          'audit table: every row is there, unchanged and not deleted');
SELECT throws_ok('UPDATE keys_guard.audit_log SET outcome = outcome', '42501', NULL,
                 'keys_guard.audit_log: UPDATE by a superuser is 42501');
SELECT throws_ok('DELETE FROM keys_guard.audit_log', '42501', NULL,
                 'keys_guard.audit_log: DELETE by a superuser is 42501');
SELECT throws_ok('TRUNCATE keys_guard.audit_log', '42501', NULL,
                 'keys_guard.audit_log: TRUNCATE by a superuser is 42501');

--
-- TRUNCATE of soft-delete tables, DROP of guarded tables.
--
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'dba', 'sd-req-ddl'); END $$;
SELECT throws_ok('TRUNCATE tenant_sd_a.visits', '42501', 'cannot truncate soft-delete table tenant_sd_a.visits',
                 'TRUNCATE of a soft-delete table by a superuser is 42501');
SELECT throws_ok('TRUNCATE tenant_sd_a.customers CASCADE', '42501', NULL,
                 'TRUNCATE ... CASCADE of a soft-delete parent is 42501');
SELECT throws_ok('TRUNCATE public.kg_sd_expiring', '42501',
                 'cannot truncate soft-delete table public.kg_sd_expiring',
                 'TRUNCATE of a pooled soft-delete table is 42501');
SELECT throws_ok('TRUNCATE tenant_sd_a.payments', '42501', NULL,
                 'TRUNCATE of a payment table is 42501');
SET LOCAL session_replication_role = replica;
SELECT throws_ok('TRUNCATE tenant_sd_a.visits', '42501', 'cannot truncate soft-delete table tenant_sd_a.visits',
                 'TRUNCATE of a soft-delete table in replica mode is 42501');
SET LOCAL session_replication_role = origin;
SET LOCAL keys_guard.bypass = on;
SELECT throws_ok('TRUNCATE tenant_sd_a.visits', '42501', 'cannot truncate soft-delete table tenant_sd_a.visits',
                 'TRUNCATE of a soft-delete table under keys_guard.bypass is 42501');
SET LOCAL keys_guard.bypass = off;
SELECT is(public.kg_sd_all('SELECT count(*) FROM tenant_sd_a.visits') || '/'
          || public.kg_sd_all('SELECT count(*) FROM tenant_sd_a.customers'), '3/8',
          'the refused TRUNCATEs removed nothing');

DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;
SELECT matches(public.kg_sd_error('DROP TABLE tenant_sd_a.visits'), '^42501 \| .* \| .*release_table',
               'DROP TABLE of a guarded tenant-schema table is 42501 with a hint naming release_table');
SELECT matches(public.kg_sd_error('DROP TABLE public.kg_sd_week'), '^42501 \| .* \| .*release_table',
               'DROP TABLE of a guarded pooled table is 42501 with a hint naming release_table');
SELECT matches(public.kg_sd_error('DROP TABLE public.kg_sd_nosoft'), '^42501 \| .* \| .*release_table',
               'DROP TABLE of a guarded table without soft delete is 42501 with a hint naming release_table');
SELECT matches(public.kg_sd_error('DROP TABLE tenant_sd_a.events'), '^42501 \| ',
               'DROP TABLE of an audit table is 42501');
SELECT ok(to_regclass('tenant_sd_a.visits') IS NOT NULL AND to_regclass('public.kg_sd_week') IS NOT NULL
          AND to_regclass('public.kg_sd_nosoft') IS NOT NULL AND to_regclass('tenant_sd_a.events') IS NOT NULL,
          'the tables are still there');

--
-- Grace: hard_delete_at = deleted_at + the table's grace; never negative.
--
SET LOCAL ROLE kg_sd_app;
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'carol', 'sd-req-grace'); END $$;
SELECT is(public.kg_sd_rowcount('DELETE FROM tenant_sd_a.orders WHERE id = 71'), '1',
          'DELETE of an order (grace from keys_guard.default_grace = 7d)');
SELECT is(public.kg_sd_mark('tenant_sd_a.orders', 71), 'deleted|true|7 days|carol|sd-req-grace',
          'keys_guard.default_grace = 7d: hard_delete_at = deleted_at + 7 days');
SELECT is(public.kg_sd_rowcount('DELETE FROM public.kg_sd_week WHERE id = 1'), '1',
          'DELETE of a row of a table with grace => 7 days');
SELECT is(public.kg_sd_mark('public.kg_sd_week', 1), 'deleted|true|7 days|carol|sd-req-grace',
          'grace => interval ''7 days'': hard_delete_at = deleted_at + 7 days');
RESET ROLE;
SELECT throws_ok($$SELECT keys_guard.protect_table('public.kg_sd_neg', tenant_column => 'tenant_id',
                                                   grace => interval '-1 day')$$, '22023', NULL,
                 'protect_table with a negative grace is 22023');
SELECT is_empty($$SELECT 1 FROM keys_guard.guarded_tables WHERE relation = 'public.kg_sd_neg'::regclass$$,
                'the refused protect_table guarded nothing');
SELECT throws_ok('SET LOCAL keys_guard.default_grace = -1', '22023', NULL,
                 'a negative keys_guard.default_grace is 22023');

--
-- Bad input.  restore, hard_delete and preview_delete: NULL (22004),
-- unknown table, table without soft delete, composite or missing primary
-- key (22023).  preview_delete runs with a context, as it counts as the
-- caller.
--
DO $$ BEGIN PERFORM keys_guard.set_context('sd_a', 'dba', 'sd-req-bad'); END $$;
SELECT throws_ok($$SELECT keys_guard.restore(NULL::text, 1)$$, '22004', NULL, 'restore: NULL relation is 22004');
SELECT throws_ok($$SELECT keys_guard.restore('tenant_sd_a.customers', NULL::int)$$, '22004', NULL,
                 'restore: NULL key is 22004');
SELECT throws_ok($$SELECT keys_guard.restore('public.kg_sd_nosuch', 1)$$, '22023', NULL,
                 'restore: unknown table is 22023');
SELECT throws_ok($$SELECT keys_guard.restore('public.kg_sd_unguarded', 1)$$, '22023', NULL,
                 'restore: unguarded table is 22023');
SELECT throws_ok($$SELECT keys_guard.restore('public.kg_sd_nosoft', 1)$$, '22023', NULL,
                 'restore: table guarded without soft delete is 22023');
SELECT throws_ok($$SELECT keys_guard.restore('tenant_sd_a.composite', 1)$$, '22023', NULL,
                 'restore: table with a composite primary key is 22023');
SELECT throws_ok($$SELECT keys_guard.restore('tenant_sd_a.nopk', 1)$$, '22023', NULL,
                 'restore: table without a primary key is 22023');

SELECT throws_ok($$SELECT keys_guard.hard_delete(NULL::text, 1, confirm => true)$$, '22004', NULL,
                 'hard_delete: NULL relation is 22004');
SELECT throws_ok($$SELECT keys_guard.hard_delete('tenant_sd_a.customers', NULL::int, confirm => true)$$, '22004', NULL,
                 'hard_delete: NULL key is 22004');
SELECT throws_ok($$SELECT keys_guard.hard_delete('tenant_sd_a.customers', 6, NULL)$$, '22004', NULL,
                 'hard_delete: NULL confirm is 22004');
SELECT throws_ok($$SELECT keys_guard.hard_delete('public.kg_sd_nosuch', 1, confirm => true)$$, '22023', NULL,
                 'hard_delete: unknown table is 22023');
SELECT throws_ok($$SELECT keys_guard.hard_delete('public.kg_sd_unguarded', 1, confirm => true)$$, '22023', NULL,
                 'hard_delete: unguarded table is 22023');
SELECT throws_ok($$SELECT keys_guard.hard_delete('public.kg_sd_nosoft', 1, confirm => true)$$, '22023', NULL,
                 'hard_delete: table guarded without soft delete is 22023');
SELECT throws_ok($$SELECT keys_guard.hard_delete('tenant_sd_a.composite', 1, confirm => true)$$, '22023', NULL,
                 'hard_delete: table with a composite primary key is 22023');
SELECT throws_ok($$SELECT keys_guard.hard_delete('tenant_sd_a.nopk', 1, confirm => true)$$, '22023', NULL,
                 'hard_delete: table without a primary key is 22023');
SELECT is(public.kg_sd_all('SELECT count(*) FROM public.kg_sd_nosoft') || '/'
          || public.kg_sd_all('SELECT count(*) FROM tenant_sd_a.composite') || '/'
          || public.kg_sd_all('SELECT count(*) FROM tenant_sd_a.nopk'), '1/1/1',
          'the refused hard_delete calls removed nothing');

SELECT throws_ok($$SELECT * FROM keys_guard.preview_delete(NULL::text, 1)$$, '22004', NULL,
                 'preview_delete: NULL relation is 22004');
SELECT throws_ok($$SELECT * FROM keys_guard.preview_delete('tenant_sd_a.customers', NULL::int)$$, '22004', NULL,
                 'preview_delete: NULL key is 22004');
SELECT throws_ok($$SELECT * FROM keys_guard.preview_delete('public.kg_sd_nosuch', 1)$$, '22023', NULL,
                 'preview_delete: unknown table is 22023');
SELECT throws_ok($$SELECT * FROM keys_guard.preview_delete('public.kg_sd_unguarded', 1)$$, '22023', NULL,
                 'preview_delete: unguarded table is 22023');
SELECT throws_ok($$SELECT * FROM keys_guard.preview_delete('public.kg_sd_nosoft', 1)$$, '22023', NULL,
                 'preview_delete: table guarded without soft delete is 22023');
SELECT throws_ok($$SELECT * FROM keys_guard.preview_delete('tenant_sd_a.composite', 1)$$, '22023', NULL,
                 'preview_delete: table with a composite primary key is 22023');
SELECT throws_ok($$SELECT * FROM keys_guard.preview_delete('tenant_sd_a.nopk', 1)$$, '22023', NULL,
                 'preview_delete: table without a primary key is 22023');

SELECT throws_ok($$SELECT keys_guard.restore_request(NULL)$$, '22004', NULL,
                 'restore_request: NULL request id is 22004');
SELECT throws_ok($$SELECT keys_guard.restore_request('')$$, '22023', NULL,
                 'restore_request: empty request id is 22023');
DO $$ BEGIN PERFORM keys_guard.clear_context(); END $$;

SELECT * FROM finish();
ROLLBACK;
