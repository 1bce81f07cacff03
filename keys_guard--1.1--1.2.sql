/* keys_guard--1.1--1.2.sql: closing the ways around the guarantees */

\echo Use "ALTER EXTENSION keys_guard UPDATE TO '1.2'" to load this file. \quit

--
-- INSERT ... ON CONFLICT DO UPDATE: the conflicting row must be live
-- before anything of the statement's own is evaluated on it (SPEC.md §6).
--
CREATE FUNCTION keys_guard._assert_live_row(relid oid, deleted_at timestamptz)
RETURNS boolean
LANGUAGE C STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'keys_guard_assert_live_row';

--
-- Undo belongs to the tenant too (SPEC.md §7): inside a tenant context the
-- application's gateway may restore and preview that tenant's own rows;
-- the C functions refuse every row of another tenant (42501).
--
GRANT EXECUTE ON FUNCTION keys_guard.restore(text, anyelement),
    keys_guard.restore(text, text), keys_guard._restore_key(regclass, text),
    keys_guard.restore_request(text),
    keys_guard.preview_delete(text, anyelement), keys_guard.preview_delete(text, text),
    keys_guard._preview_delete(text, text),
    keys_guard._preview(regclass, text, int, text, oid[])
    TO keys_guard_gateway;

