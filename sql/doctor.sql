--
-- doctor: the drift report (docs/contract.md §11).  Each kind of drift is made, found
-- with its problem code and detail, and repaired by executing the fix
-- doctor() reports.  Other suites run before this one in the same database,
-- so only this suite's objects (tenant_doc*, public.doc_*) are looked at.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
SELECT id FROM keys_guard.create_tenant('doc');
SELECT id FROM keys_guard.create_tenant('docgone');
-- tenant_doc.parent has the cascade trigger: child soft-deletes with it.
CREATE TABLE tenant_doc.parent (id int PRIMARY KEY, body text);
CREATE TABLE tenant_doc.child (id int PRIMARY KEY,
                               parent_id int REFERENCES tenant_doc.parent ON DELETE CASCADE);
CREATE TABLE tenant_doc.events (id int PRIMARY KEY, what text);
SELECT keys_guard.release_table('tenant_doc.events');
SELECT class FROM keys_guard.protect_table('tenant_doc.events', class => 'audit');
-- Pooled: doc_orders with options doctor's fix must keep; doc_items with a
-- policy of its own (so no keys_guard_base) and an index led by its tenant
-- column; doc_lines whose only index has the tenant column second.
CREATE TABLE public.doc_orders (id int PRIMARY KEY, tenant_id text NOT NULL);
CREATE INDEX ON public.doc_orders (tenant_id, id);
SELECT kind, tenant_column, grace, class
  FROM keys_guard.protect_table('public.doc_orders', tenant_column => 'tenant_id',
                                grace => interval '12 days', class => 'payment');
CREATE TABLE public.doc_items (id int PRIMARY KEY, tenant_id uuid NOT NULL);
CREATE INDEX ON public.doc_items (tenant_id);
CREATE POLICY doc_items_own ON public.doc_items USING (id > 0);
SELECT kind FROM keys_guard.protect_table('public.doc_items', tenant_column => 'tenant_id');
CREATE TABLE public.doc_lines (id int, tenant_id bigint NOT NULL, PRIMARY KEY (id, tenant_id));
SELECT kind FROM keys_guard.protect_table('public.doc_lines', tenant_column => 'tenant_id');

CREATE TEMP VIEW my_doctor AS
    SELECT problem, relation, detail, fix FROM keys_guard.doctor()
     WHERE relation IN (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname LIKE 'tenant\_doc%' OR c.relname LIKE 'doc\_%')
        OR detail LIKE '%tenant\_doc%';

-- A clean state: the only finding is doc_lines' tenant column.
SELECT problem, relation, detail, fix FROM my_doctor;

-- Read-only, for keys_guard_admin only.
SELECT provolatile, prosecdef, proconfig FROM pg_proc WHERE oid = 'keys_guard.doctor()'::regprocedure;
SET ROLE kg_migrator;
SELECT count(*) FROM keys_guard.doctor() WHERE relation = 'public.doc_lines'::regclass;
RESET ROLE;
SET ROLE kg_nobody;
SELECT count(*) FROM keys_guard.doctor();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

--
-- Drift.  DROP INDEX and release_table() are allowed; what the guard rails
-- refuse as DDL a superuser can still do in the catalogs.
--
DROP INDEX tenant_doc.parent_kg_purge;
CREATE TABLE tenant_doc."Loose one" (id int PRIMARY KEY);
SELECT keys_guard.release_table('tenant_doc."Loose one"');
DROP INDEX public.doc_items_tenant_id_idx;
UPDATE pg_catalog.pg_class SET relforcerowsecurity = false
 WHERE oid = 'tenant_doc.child'::regclass;
UPDATE pg_catalog.pg_trigger SET tgenabled = 'D'
 WHERE tgrelid = 'tenant_doc.child'::regclass AND tgname = 'keys_guard_refuse_truncate';
UPDATE pg_catalog.pg_trigger SET tgenabled = 'O'
 WHERE tgrelid = 'tenant_doc.events'::regclass AND tgname = 'keys_guard_append_only';
UPDATE pg_catalog.pg_trigger SET tgenabled = 'R'
 WHERE tgrelid = 'tenant_doc.parent'::regclass AND tgname = 'keys_guard_cascade';
-- The fail-closed policy of doc_orders made permissive and USING (true).
UPDATE pg_catalog.pg_policy p
   SET polpermissive = true,
       polqual = (SELECT b.polqual FROM pg_catalog.pg_policy b
                   WHERE b.polrelid = p.polrelid AND b.polname = 'keys_guard_base')
 WHERE polrelid = 'public.doc_orders'::regclass AND polname = 'keys_guard_fail_closed';
-- A trigger gone (renamed in the catalog) and one that fires on the wrong
-- events.
UPDATE pg_catalog.pg_trigger SET tgname = 'doc_renamed'
 WHERE tgrelid = 'public.doc_lines'::regclass AND tgname = 'keys_guard_tenant';
UPDATE pg_catalog.pg_trigger SET tgtype = 19
 WHERE tgrelid = 'public.doc_items'::regclass AND tgname = 'keys_guard_refuse_delete';
-- A tenant whose schema is gone (renamed behind keys_guard's back).
UPDATE pg_catalog.pg_namespace SET nspname = 'doc_moved_away' WHERE nspname = 'tenant_docgone';

SELECT problem, relation, detail, fix FROM my_doctor;

-- The doctor's fixes repair everything it found.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT fix FROM my_doctor WHERE fix IS NOT NULL LOOP
        EXECUTE r.fix;
    END LOOP;
END
$$;
SELECT problem, relation, detail, fix FROM my_doctor;
DROP TRIGGER doc_renamed ON public.doc_lines;

-- The tables are protected again, as before.
SELECT c.oid::regclass, c.relrowsecurity, c.relforcerowsecurity
  FROM pg_class c WHERE c.oid IN ('tenant_doc.child'::regclass, 'public.doc_orders'::regclass)
 ORDER BY c.relname;
SELECT tgrelid::regclass, tgname, tgtype, tgenabled FROM pg_trigger
 WHERE tgrelid IN ('tenant_doc.parent'::regclass, 'tenant_doc.child'::regclass,
                   'tenant_doc.events'::regclass, 'public.doc_orders'::regclass,
                   'public.doc_items'::regclass, 'public.doc_lines'::regclass)
   AND NOT tgisinternal
 ORDER BY tgrelid::regclass::text COLLATE "C", tgname;
SELECT polrelid::regclass, polname, polpermissive, pg_get_expr(polqual, polrelid) AS using_expr
  FROM pg_policy WHERE polrelid IN ('public.doc_orders'::regclass, 'public.doc_items'::regclass)
 ORDER BY polrelid::regclass::text COLLATE "C", polname;
SELECT indexrelid::regclass, pg_get_indexdef(indexrelid) FROM pg_index
 WHERE indrelid IN ('tenant_doc.parent'::regclass, 'public.doc_items'::regclass, 'public.doc_lines'::regclass)
   AND NOT indisprimary
 ORDER BY indexrelid::regclass::text COLLATE "C";
-- doc_orders, doc_items and doc_lines kept their options through release and
-- protect; doc_items still has no keys_guard_base (it has a policy of its own).
SELECT relation, kind, tenant_id, tenant_column, soft_delete, grace, class
  FROM keys_guard.guarded_tables
 WHERE schema LIKE 'tenant\_doc%' OR table_name LIKE 'doc\_%'
 ORDER BY relation::text COLLATE "C";
SELECT nspname, pg_get_userbyid(nspowner) AS owner,
       has_schema_privilege('keys_guard_gateway', oid, 'USAGE') AS gateway_usage
  FROM pg_namespace WHERE nspname IN ('tenant_docgone', 'doc_moved_away') ORDER BY 1;


--
-- A foreign key between pooled tables without the tenant columns: the
-- database alone does not keep a reference inside one tenant (keys_guard
-- checks it for writes under a tenant context, not under an admin
-- context).  doctor() reports it; its fix puts the tenant columns in the
-- key.
--
SELECT id FROM keys_guard.create_tenant('docx');
CREATE TABLE public.doc_customers (id int PRIMARY KEY, tenant_id text NOT NULL);
CREATE INDEX ON public.doc_customers (tenant_id);
CREATE TABLE public.doc_invoices (id int PRIMARY KEY, tenant_id text NOT NULL,
                                  customer_id int REFERENCES public.doc_customers ON DELETE CASCADE);
CREATE INDEX ON public.doc_invoices (tenant_id);
-- Already keyed by tenant: not reported.
CREATE TABLE public.doc_notes (id int PRIMARY KEY, tenant_id text NOT NULL, customer_id int);
CREATE INDEX ON public.doc_notes (tenant_id);
CREATE UNIQUE INDEX ON public.doc_customers (tenant_id, id);
ALTER TABLE public.doc_notes ADD FOREIGN KEY (tenant_id, customer_id)
    REFERENCES public.doc_customers (tenant_id, id);
SELECT kind FROM keys_guard.protect_table('public.doc_customers', tenant_column => 'tenant_id', soft_delete => false);
SELECT kind FROM keys_guard.protect_table('public.doc_invoices', tenant_column => 'tenant_id', soft_delete => false);
SELECT kind FROM keys_guard.protect_table('public.doc_notes', tenant_column => 'tenant_id', soft_delete => false);
GRANT SELECT, INSERT, DELETE ON public.doc_customers, public.doc_invoices TO kg_app;
SELECT problem, relation, detail, fix FROM my_doctor WHERE problem = 'cross_tenant_foreign_key';
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context('doc', 'doctor');
INSERT INTO public.doc_customers VALUES (1, 'doc');
COMMIT;
-- docx references doc's customer 1: refused as a key that does not exist.
BEGIN;
SELECT keys_guard.set_context('docx', 'doctor');
INSERT INTO public.doc_invoices VALUES (1, 'docx', 1);
ROLLBACK;
RESET ROLE;
-- The fix names an admin context, for the new key's check of every row.
BEGIN;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT fix FROM my_doctor WHERE problem = 'cross_tenant_foreign_key' LOOP
        EXECUTE r.fix;
    END LOOP;
END
$$;
COMMIT;
SELECT problem, relation, detail, fix FROM my_doctor WHERE problem = 'cross_tenant_foreign_key';
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'public.doc_invoices'::regclass AND contype = 'f';
SET ROLE kg_app;
-- Keyed by tenant, the same reference fails the same way.
BEGIN;
SELECT keys_guard.set_context('docx', 'doctor');
INSERT INTO public.doc_invoices VALUES (1, 'docx', 1);
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('docx', 'doctor');
INSERT INTO public.doc_invoices VALUES (1, 'docx', 999);
ROLLBACK;
-- doc's own reference and its cascade work as before.
BEGIN;
SELECT keys_guard.set_context('doc', 'doctor');
INSERT INTO public.doc_invoices VALUES (2, 'doc', 1);
DELETE FROM public.doc_customers WHERE id = 1;
SELECT count(*) FROM public.doc_invoices;
ROLLBACK;
RESET ROLE;
