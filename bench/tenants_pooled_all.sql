-- bench/tenants.sh, reference: as bench/tenants_pooled.sql on
-- public.pooled_invoices_all, which holds the rows of every tenant of the
-- database (-D rows= of them each), so that -D tenants= can spread the
-- transactions over all of them.
\set tenant random(1, :tenants)
\set id (:tenant - 1) * :rows + random(1, :rows)
BEGIN;
SELECT keys_guard.set_context(:tenant, 'bench');
SELECT id, number, amount, status FROM pooled_invoices_all WHERE id = :id \gset got_
COMMIT;
