-- The rows of tenant t's invoices table, the same in every database of
-- bench/tenants.sh (keys_guard's tenant_<t> and the control's plain_<t>):
-- ids (t - 1) * nrows + 1 .. t * nrows.  A session function, included by
-- the set-up scripts with \ir.
CREATE FUNCTION pg_temp.bench_fill_invoices(nsp text, t int, nrows int) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('INSERT INTO %I.invoices (id, number, amount, status, created_at)
                    SELECT ($1 - 1) * $2 + k,
                           format(''INV-%%s-%%s'', $1, k),
                           round((k * 37 %% 100000) / 100.0, 2),
                           (ARRAY[''draft'', ''open'', ''paid'', ''void''])[1 + k %% 4],
                           timestamptz ''2024-01-01'' + k * interval ''1 hour''
                      FROM generate_series(1, $2) AS k
                     ORDER BY 1', nsp)
        USING t, nrows;
END
$fn$;
