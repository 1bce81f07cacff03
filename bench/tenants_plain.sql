-- bench/tenants.sh, control without keys_guard: the schema-per-tenant
-- lookup of bench/tenants_schema.sql as an application without keys_guard
-- writes it: it switches the schema itself (SET LOCAL search_path) and
-- hides soft-deleted rows itself (deleted_at IS NULL), on the unguarded
-- tables of bench/tenants_plain_setup.sql, which have the same soft-delete
-- columns and purge index as keys_guard's.  The same rows come back as in
-- bench/tenants_schema.sql, where keys_guard hides soft-deleted rows.
-- Variables: -D tenants=N -D rows=M.  \gset fails the run unless exactly
-- one row comes back.
\set tenant random(1, :tenants)
\set id (:tenant - 1) * :rows + random(1, :rows)
BEGIN;
SELECT set_config('search_path', 'plain_' || :tenant || ', public', true);
SELECT id, number, amount, status FROM invoices WHERE id = :id AND deleted_at IS NULL \gset got_
COMMIT;
