-- (c) of bench/soft_delete.sh, baseline: the equivalent single-row UPDATE
-- of the soft-delete columns on the unguarded twin table sd1_plain, with the
-- application's own context setting (as bench/context_plain.sql).
-- Variables: -D rows=N (ids 1..N).
\set id random(1, :rows)
BEGIN;
SELECT set_config('app.tenant', '1', true);
UPDATE sd1_plain SET deleted_at = now(), hard_delete_at = now() + interval '30 days',
       deleted_by = 'bench', delete_request_id = 'r'
 WHERE id = :id AND deleted_at IS NULL;
COMMIT;
