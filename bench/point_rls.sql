-- Reference: the identical table `invoices_rls` guarded by a hand-made RLS
-- policy USING (tenant_id = current_setting('app.tenant')), FORCE'd; the
-- query names no tenant, like the keys_guard variant.
\set tenant random(1, :tenants)
\set id (:tenant - 1) * :rows + random(1, :rows)
BEGIN;
SELECT set_config('app.tenant', :tenant, true);
SELECT id, number, amount, status FROM invoices_rls WHERE id = :id;
COMMIT;
