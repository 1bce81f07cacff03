-- Tenant creation for bench/tenants.sh: tenants '1' .. :tenants, created
-- with keys_guard.create_tenant() in one DO block, as an onboarding
-- migration would.  It commits every 500 tenants: create_tenant takes an
-- advisory lock and creates a schema per tenant, and a single transaction
-- creating thousands of tenants runs out of lock table space with the
-- default max_locks_per_transaction ("out of shared memory").  A NOTICE
-- after every 1 000 tenants gives the elapsed time (the script reports how
-- creation slows down as tenants accumulate).
\set ON_ERROR_STOP on
SELECT set_config('bench.tenants', :'tenants', false) \gset
DO $$
DECLARE
    tenants int := current_setting('bench.tenants')::int;
    started timestamptz := clock_timestamp();
    t int;
BEGIN
    FOR t IN 1 .. tenants LOOP
        PERFORM keys_guard.create_tenant(t::text, 'bench tenant ' || t);
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
