--
-- library: when the extension's SQL objects do not match the loaded
-- library (an upgrade without ALTER EXTENSION ... UPDATE), guarded data is
-- refused with 55000 instead of being let through half-checked
--
\set SHOW_CONTEXT never
ALTER EXTENSION keys_guard DROP FUNCTION keys_guard._assert_relation(oid);
DROP FUNCTION keys_guard._assert_relation(oid);

SELECT count(*) FROM tenant_acme.notes;
\echo :LAST_ERROR_SQLSTATE
SET keys_guard.bypass = on;
SELECT count(*) FROM public.invoices;
\echo :LAST_ERROR_SQLSTATE
RESET keys_guard.bypass;
SELECT keys_guard.set_context('acme', 'user_1');
\echo :LAST_ERROR_SQLSTATE
-- Unguarded data and the registry stay readable.
SELECT count(*) > 0 AS tenants_readable FROM keys_guard.tenants;

-- Restoring the objects restores service.
CREATE FUNCTION keys_guard._assert_relation(relid oid) RETURNS boolean
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS '$libdir/keys_guard', 'keys_guard_assert_relation';
ALTER EXTENSION keys_guard ADD FUNCTION keys_guard._assert_relation(oid);
BEGIN;
SELECT keys_guard.set_context('acme', 'user_1');
SELECT count(*) FROM tenant_acme.notes;
COMMIT;
