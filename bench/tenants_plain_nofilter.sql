-- bench/tenants.sh, reference: bench/tenants_plain.sql without the
-- soft-delete filter, a lookup that would also return soft-deleted rows
-- (none are deleted here, so the same row comes back).  Against it,
-- keys_guard's lookup pays for hiding soft-deleted rows too.  Variables:
-- -D tenants=N -D rows=M.
\set tenant random(1, :tenants)
\set id (:tenant - 1) * :rows + random(1, :rows)
BEGIN;
SELECT set_config('search_path', 'plain_' || :tenant || ', public', true);
SELECT id, number, amount, status FROM invoices WHERE id = :id \gset got_
COMMIT;
