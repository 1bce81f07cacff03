-- Tenant creation for the migration part of bench/tenants.sh: tenants
-- 'f1' .. 'f<:tenants>', each created with keys_guard.create_tenant() from
-- the template schema fleet_tpl, in one DO block that commits every 500
-- tenants.  A NOTICE after every 1 000 tenants gives the elapsed time, so
-- that the script can report whether creation stays flat as tenants
-- accumulate.
\set ON_ERROR_STOP on
SELECT set_config('bench.tenants', :'tenants', false) \gset
DO $$
DECLARE
    tenants int := current_setting('bench.tenants')::int;
    started timestamptz := clock_timestamp();
    t int;
BEGIN
    FOR t IN 1 .. tenants LOOP
        PERFORM keys_guard.create_tenant('f' || t, template => 'fleet_tpl');
        IF t % 500 = 0 OR t = tenants THEN
            COMMIT;
        END IF;
        IF t % 1000 = 0 OR t = tenants THEN
            RAISE NOTICE 'tenants created: % elapsed_ms: %', t,
                round(extract(epoch FROM clock_timestamp() - started) * 1000);
        END IF;
    END LOOP;
END
$$;
