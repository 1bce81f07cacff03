-- (c) of bench/soft_delete.sh: one soft DELETE by primary key on the
-- keys_guard-guarded table tenant_1.sd1_kg, with the request context set
-- for the transaction (the tenant's schema comes first on search_path).
-- Variables: -D rows=N (ids 1..N).
\set id random(1, :rows)
BEGIN;
SELECT keys_guard.set_context('1', 'bench', 'r');
DELETE FROM sd1_kg WHERE id = :id;
COMMIT;
