--
-- pooled: shared tables with a tenant column (docs/contract.md §5, §6)
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
CREATE TABLE public.invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    amount int NOT NULL
);
CREATE INDEX invoices_tenant_idx ON public.invoices (tenant_id, id);
ALTER TABLE public.invoices OWNER TO kg_app;

-- protect_table: bad input is a clear error and guards nothing.
SELECT keys_guard.protect_table('public.nosuchtable', tenant_column => 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('not a name;', tenant_column => 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table(NULL, tenant_column => 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('public.invoices');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('public.invoices', tenant_column => 'nosuchcolumn');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('public.invoices', tenant_column => 'amount');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id', class => 'gold');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id', grace => interval '-1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id', soft_delete => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('tenant_acme.notes', tenant_column => 'body');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('keys_guard.audit_log', tenant_column => 'tenant');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('public.acme_notes', tenant_column => 'body');
\echo :LAST_ERROR_SQLSTATE
SET ROLE kg_app;
SELECT keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) FROM keys_guard.guarded_tables WHERE relation = 'public.invoices'::regclass;

-- Guard it; a second identical call changes nothing.
SELECT relation, kind, tenant_column, soft_delete, grace, class
  FROM keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id');
SELECT relation, kind, tenant_column, soft_delete, grace, class
  FROM keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id');
-- A stronger option upgrades; a weaker one needs release_table first.
SELECT grace FROM keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id',
                                           grace => interval '60 days');
SELECT keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id',
                                grace => interval '7 days');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('public.invoices', tenant_column => 'tenant_id',
                                soft_delete => false);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.protect_table('public.invoices', tenant_column => 'amount');
\echo :LAST_ERROR_SQLSTATE

-- No context: refused, for the owner and for a superuser.
SELECT count(*) FROM public.invoices;
\echo :LAST_ERROR_SQLSTATE
SET ROLE kg_app;
SELECT count(*) FROM public.invoices;
\echo :LAST_ERROR_SQLSTATE

-- Inserting without a tenant fills in the current one.
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
INSERT INTO invoices (amount) VALUES (100), (200);
INSERT INTO invoices (tenant_id, amount) VALUES ('acme', 300);
COMMIT;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
INSERT INTO invoices (amount) VALUES (999);
COMMIT;

-- Reads without naming a tenant see only the current tenant's rows, even
-- for the table owner (kg_app) and through views, CTEs, subqueries and
-- inlined SQL functions.
RESET ROLE;
CREATE VIEW public.invoice_totals AS SELECT tenant_id, sum(amount) AS total FROM public.invoices GROUP BY 1;
CREATE FUNCTION public.all_invoices() RETURNS SETOF public.invoices
    LANGUAGE sql STABLE AS 'SELECT * FROM public.invoices';
CREATE FUNCTION public.invoices_of(t text) RETURNS SETOF public.invoices
    LANGUAGE sql STABLE AS 'SELECT * FROM public.invoices WHERE tenant_id = t';
GRANT SELECT ON public.invoice_totals TO kg_app;
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
SELECT tenant_id, amount FROM invoices ORDER BY id;
SELECT * FROM invoice_totals;
WITH i AS (SELECT * FROM invoices) SELECT count(*) FROM i;
SELECT count(*) FROM (SELECT * FROM invoices) s;
SELECT count(*) FROM all_invoices();
SELECT count(*) FROM invoices WHERE amount IN (SELECT amount FROM invoices);
-- Updates and deletes reach only the current tenant's rows.
UPDATE invoices SET amount = amount + 1;
DELETE FROM invoices WHERE amount = 0;
COMMIT;
RESET ROLE;
-- A superuser with a context is filtered the same way.
BEGIN;
SELECT keys_guard.set_context('acme', 'root');
SELECT tenant_id, amount FROM invoices ORDER BY id;
COMMIT;

-- Naming another tenant explicitly is a 42501 denial, not an empty result.
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
SELECT stmt, try(stmt) FROM (VALUES
    ('SELECT * FROM invoices WHERE tenant_id = ''acme'''),
    ('SELECT * FROM invoices WHERE tenant_id IN (''globex'', ''acme'')'),
    ('SELECT * FROM invoices WHERE tenant_id = ANY (ARRAY[''acme''])'),
    ('SELECT * FROM invoices WHERE ''acme'' = tenant_id AND amount > 0'),
    ('SELECT * FROM invoice_totals WHERE tenant_id = ''acme'''),
    ('WITH i AS (SELECT * FROM invoices) SELECT * FROM i WHERE tenant_id = ''acme'''),
    ('WITH i AS MATERIALIZED (SELECT * FROM invoices) SELECT * FROM i WHERE tenant_id = ''acme'''),
    ('SELECT * FROM invoices_of(''acme'')'),
    ('UPDATE invoices SET amount = 0 WHERE tenant_id = ''acme'''),
    ('DELETE FROM invoices WHERE tenant_id = ''acme'''),
    ('INSERT INTO invoices (tenant_id, amount) VALUES (''acme'', 1)'),
    ('UPDATE invoices SET tenant_id = ''acme'''),
    ('SELECT * FROM invoices WHERE tenant_id = ''globex'''),
    ('SELECT * FROM invoices WHERE tenant_id IN (''globex'')')
) AS t(stmt);
COMMIT;

-- Bound parameters: custom and generic plans alike.
PREPARE by_tenant(text) AS SELECT count(*) FROM invoices WHERE tenant_id = $1;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
SET LOCAL plan_cache_mode = force_custom_plan;
EXECUTE by_tenant('globex');
EXECUTE by_tenant('acme');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('globex', 'user_g');
SET LOCAL plan_cache_mode = force_generic_plan;
EXECUTE by_tenant('globex');
EXECUTE by_tenant('acme');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- A generic plan made for one tenant is not reused for another.
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
SET LOCAL plan_cache_mode = force_generic_plan;
EXECUTE by_tenant('acme');
EXECUTE by_tenant('globex');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
DEALLOCATE by_tenant;
RESET ROLE;

-- The filter is an ordinary indexable clause: a point lookup by tenant and
-- id uses the index.
SET enable_seqscan = off;
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
EXPLAIN (COSTS OFF) SELECT * FROM invoices WHERE id = 1;
EXPLAIN (COSTS OFF) SELECT * FROM invoices;
COMMIT;
RESET enable_seqscan;

-- An admin context sees every tenant's rows and must name the tenant on insert.
GRANT SELECT, INSERT ON public.invoices TO kg_migrator;
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.admin_context('ops_jane', 'reconcile invoices');
SELECT tenant_id, count(*) FROM invoices GROUP BY 1 ORDER BY 1;
INSERT INTO invoices (amount) VALUES (1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;

-- uuid and bigint tenant columns compare in their own type.
CREATE TABLE public.events (id serial PRIMARY KEY, tenant uuid, what text);
CREATE INDEX ON public.events (tenant);
SELECT kind, tenant_column FROM keys_guard.protect_table('public.events', tenant_column => 'tenant');
CREATE TABLE public.counters (id serial PRIMARY KEY, tenant_no bigint, n int);
SELECT kind, tenant_column FROM keys_guard.protect_table('public.counters', tenant_column => 'tenant_no');
BEGIN;
SELECT keys_guard.set_context('0c1f9d2e-5b7a-4c3e-9f1a-2b3c4d5e6f70', 'user_u');
INSERT INTO events (what) VALUES ('signup');
SELECT tenant, what FROM events;
SELECT count(*) FROM events WHERE tenant = '0c1f9d2e-5b7a-4c3e-9f1a-2b3c4d5e6f70';
SELECT count(*) FROM events WHERE tenant = '00000000-0000-4000-8000-000000000000';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('42', 'user_n');
INSERT INTO counters (n) VALUES (1);
SELECT tenant_no, n FROM counters;
SELECT count(*) FROM counters WHERE tenant_no = 42;
SELECT count(*) FROM counters WHERE tenant_no = 43;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- A tenant id that is not a value of the column's type sees nothing and
-- cannot insert.
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
SELECT count(*) FROM counters;
INSERT INTO counters (n) VALUES (1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Relation names resolve in the caller's search_path.
CREATE TABLE public.badges (id int, tenant_id text);
SELECT relation, kind FROM keys_guard.protect_table('badges', tenant_column => 'tenant_id');
SELECT keys_guard.release_table('badges');

-- release_table removes the guards (idempotent), data stays.
SELECT keys_guard.release_table('public.counters');
SELECT keys_guard.release_table('public.counters');
SELECT count(*) FROM public.counters;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'public.counters'::regclass;
-- No trigger, policy or index of keys_guard is left; the columns stay.
SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.counters'::regclass AND NOT tgisinternal) AS triggers,
       (SELECT count(*) FROM pg_policy WHERE polrelid = 'public.counters'::regclass) AS policies,
       (SELECT count(*) FROM pg_index WHERE indrelid = 'public.counters'::regclass AND NOT indisprimary) AS indexes,
       (SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.counters'::regclass AND attname = 'deleted_at') AS deleted_at_column;
-- release_table: bad input.
SELECT keys_guard.release_table(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.release_table('');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.release_table('public.nosuchtable');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.release_table('public.invoices"; DROP TABLE public.invoices; --');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS still_guarded FROM keys_guard.guarded_tables WHERE relation = 'public.invoices'::regclass;

-- Parallel query: workers run the plan their leader checked and filtered.
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
EXPLAIN (COSTS OFF) SELECT count(*) FROM invoices;
SELECT count(*) FROM invoices;
COMMIT;
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET enable_indexscan;
RESET enable_bitmapscan;

-- The tenant column on UPDATE: an AFTER UPDATE row trigger that fires only
-- when the column changed, so it sees the row as stored, after every
-- BEFORE trigger of the table's own (whatever their names), and an UPDATE
-- that leaves the column alone (a soft DELETE included) pays nothing.
CREATE TABLE pl_moves (id int PRIMARY KEY, tenant_id text, note text);
SELECT count(*) FROM keys_guard.protect_table('public.pl_moves', tenant_column => 'tenant_id');
CREATE INDEX ON pl_moves (tenant_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON pl_moves TO kg_app;
SELECT tgname, tgtype, pg_get_triggerdef(oid) LIKE '%WHEN ((old.tenant_id IS DISTINCT FROM new.tenant_id))%' AS when_changed
  FROM pg_trigger WHERE tgrelid = 'public.pl_moves'::regclass AND tgname LIKE 'keys_guard_tenant%' ORDER BY tgname;
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
INSERT INTO pl_moves (id, note) VALUES (1, 'one'), (2, 'two');
COMMIT;
RESET ROLE;
-- A BEFORE trigger of the table's own that moves the row to another
-- tenant, named to fire after keys_guard's: refused (42501).
CREATE FUNCTION pl_moves_to_globex() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.tenant_id := 'globex'; RETURN NEW; END $$;
CREATE TRIGGER zz_move BEFORE UPDATE ON pl_moves FOR EACH ROW
    WHEN (NEW.note = 'move') EXECUTE FUNCTION pl_moves_to_globex();
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
UPDATE pl_moves SET note = 'move' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Setting the column to another tenant, or to NULL: refused.
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
UPDATE pl_moves SET tenant_id = (SELECT 'glo' || 'bex') WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
UPDATE pl_moves SET tenant_id = NULL WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- To the same tenant, or leaving it alone: allowed; a soft DELETE too.
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
UPDATE pl_moves SET tenant_id = 'acme', note = 'same' WHERE id = 1;
UPDATE pl_moves SET note = 'still acme' WHERE id = 2;
DELETE FROM pl_moves WHERE id = 2;
SELECT id, tenant_id, note FROM pl_moves ORDER BY id;
COMMIT;
-- ON CONFLICT DO UPDATE that moves the row: refused.
BEGIN;
SELECT keys_guard.set_context('acme', 'user_a');
INSERT INTO pl_moves (id, note) VALUES (1, 'x')
    ON CONFLICT (id) DO UPDATE SET tenant_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- An admin context may move a row between tenants, not to NULL.
RESET ROLE;
BEGIN;
SELECT keys_guard.admin_context('ops', 'move a row between tenants');
UPDATE pl_moves SET tenant_id = NULL WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.admin_context('ops', 'move a row between tenants');
UPDATE pl_moves SET tenant_id = 'globex' WHERE id = 1;
SELECT id, tenant_id FROM pl_moves ORDER BY id;
ROLLBACK;
DROP TRIGGER zz_move ON pl_moves;
DROP FUNCTION pl_moves_to_globex();
SELECT count(*) FROM keys_guard.release_table('public.pl_moves');
DROP TABLE pl_moves;
