-- bench/tenants.sh, control without keys_guard: the schema-per-tenant
-- lookup of bench/tenants_schema.sql with the application switching the
-- schema itself (SET LOCAL search_path), on the unguarded tables of
-- bench/tenants_plain_setup.sql.  Variables: -D tenants=N -D rows=M.
-- \gset fails the run unless exactly one row comes back.
\set tenant random(1, :tenants)
\set id (:tenant - 1) * :rows + random(1, :rows)
BEGIN;
SELECT set_config('search_path', 'plain_' || :tenant || ', public', true);
SELECT id, number, amount, status FROM invoices WHERE id = :id \gset got_
COMMIT;
