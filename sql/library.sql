--
-- library: when the extension's SQL objects do not match the loaded
-- library (an upgrade without ALTER EXTENSION ... UPDATE), guarded data is
-- refused with 55000 instead of being let through half-checked
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
-- A pooled table of this suite's own, with a row of acme's.
CREATE TABLE public.lib_items (id int PRIMARY KEY, tenant_id text NOT NULL);
SELECT relation FROM keys_guard.protect_table('public.lib_items', tenant_column => 'tenant_id');
BEGIN;
SELECT keys_guard.set_context('acme', 'user_1');
INSERT INTO public.lib_items VALUES (1, 'acme');
COMMIT;
-- keys_guard's functions cannot be dropped (guard rails), so the mismatch
-- is made the way only a superuser can: in the catalog itself.
UPDATE pg_catalog.pg_proc SET proname = '_assert_relation_gone'
 WHERE oid = 'keys_guard._assert_relation(oid)'::regprocedure;

SELECT count(*) FROM tenant_acme.notes;
\echo :LAST_ERROR_SQLSTATE
SET keys_guard.bypass = on;
SELECT count(*) FROM public.lib_items;
\echo :LAST_ERROR_SQLSTATE
RESET keys_guard.bypass;
SELECT keys_guard.set_context('acme', 'user_1');
\echo :LAST_ERROR_SQLSTATE
-- Unguarded data and the registry stay readable.
SELECT count(*) > 0 AS tenants_readable FROM keys_guard.tenants;
-- The version the library names is default_version of keys_guard.control
-- (the Makefile reads it there and passes it to the C code), so the library
-- and the installed control file cannot disagree about it.
DO $$
DECLARE
    detail text;
BEGIN
    PERFORM count(*) FROM tenant_acme.notes;
EXCEPTION WHEN object_not_in_prerequisite_state THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'the detail names the default version: %',
        detail = format('Functions that version %s of the library needs are missing from schema keys_guard.',
                        (SELECT default_version FROM pg_available_extensions
                          WHERE name = 'keys_guard'));
END
$$;

-- Restoring the objects restores service.
UPDATE pg_catalog.pg_proc SET proname = '_assert_relation'
 WHERE oid = 'keys_guard._assert_relation_gone(oid)'::regprocedure;
BEGIN;
SELECT keys_guard.set_context('acme', 'user_1');
SELECT id, tenant_id FROM public.lib_items;
COMMIT;
