-- Baseline: the same lookup on the identical unguarded table
-- `invoices_plain` (no RLS), with the tenant filter written by hand, as
-- applications do without keys_guard.  The set_config() call stands for the
-- per-transaction tenant bookkeeping such an application does anyway.
\set tenant random(1, :tenants)
\set id (:tenant - 1) * :rows + random(1, :rows)
BEGIN;
SELECT set_config('app.tenant', :tenant, true);
SELECT id, number, amount, status FROM invoices_plain WHERE tenant_id = :tenant AND id = :id;
COMMIT;
