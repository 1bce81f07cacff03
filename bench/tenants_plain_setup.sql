-- Control for bench/tenants.sh's schema-per-tenant spread reference: the
-- same tables without keys_guard.  Run by a superuser in a fresh database
-- in which keys_guard is NOT installed (the library is still preloaded;
-- its hooks find no extension and step aside).  psql variables: tables
-- (schemas plain_1 .. plain_<tables>), rows (rows per schema).
--
-- Each plain_<t>.invoices has the columns, rows and indexes of a guarded
-- tenant_<t>.invoices (the four soft-delete columns and the purge's partial
-- index included), but no row security policies, no triggers and no
-- registry: what is left of the difference is keys_guard's work at run
-- time.  The application switches schemas itself, with SET LOCAL
-- search_path (bench/tenants_plain.sql).
\set ON_ERROR_STOP on

SET client_min_messages = warning;
\ir tenants_rows.sql
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_app') THEN
        CREATE ROLE bench_app LOGIN;
    END IF;
END
$$;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT SELECT ON TABLES TO bench_app;
RESET client_min_messages;

SELECT set_config('bench.tables', :'tables', false),
       set_config('bench.rows', :'rows', false) \gset

DO $$
DECLARE
    tables int := current_setting('bench.tables')::int;
    nrows int := current_setting('bench.rows')::int;
    t int;
BEGIN
    FOR t IN 1 .. tables LOOP
        EXECUTE format('CREATE SCHEMA %I', 'plain_' || t);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO bench_app', 'plain_' || t);
        EXECUTE format('CREATE TABLE %I.invoices (
                            id                bigint PRIMARY KEY,
                            number            text NOT NULL,
                            amount            numeric(12,2) NOT NULL,
                            status            text NOT NULL,
                            created_at        timestamptz NOT NULL,
                            deleted_at        timestamptz,
                            hard_delete_at    timestamptz,
                            deleted_by        text,
                            delete_request_id text)', 'plain_' || t);
        EXECUTE format('CREATE INDEX invoices_kg_purge ON %I.invoices (hard_delete_at)
                         WHERE deleted_at IS NOT NULL', 'plain_' || t);
        PERFORM pg_temp.bench_fill_invoices('plain_' || t, t, nrows);
        IF t % 50 = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
END
$$;
