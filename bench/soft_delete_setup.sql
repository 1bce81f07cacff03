-- Once per run of bench/soft_delete.sh (docs/contract.md §14, soft-delete rows):
-- the extension, the application role, tenant '1' and the hand-made
-- soft-delete trigger function of comparison (b).  Run by a superuser in a
-- fresh database of a server that preloads keys_guard.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

CREATE EXTENSION keys_guard;

-- The application's login role, bench_app.
\ir roles.sql

-- Schema tenant_1: tables created in it are guarded automatically.
SELECT id, schema FROM keys_guard.create_tenant('1', 'bench tenant');

-- (b) the usual hand-made soft delete: a BEFORE DELETE row trigger that
-- marks the row and cancels the delete (so the client sees DELETE 0).
-- Static SQL with literals, the cheapest form of it.
CREATE FUNCTION public.sd_trig_soft_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE public.sd_trig
       SET deleted_at = now(), hard_delete_at = now() + interval '30 days',
           deleted_by = 'bench', delete_request_id = 'r'
     WHERE id = OLD.id;
    RETURN NULL;
END
$$;

-- Reference for (b): the same trigger written once for every table, as
-- generic soft-delete snippets are, with dynamic SQL on TG_TABLE_NAME.
CREATE FUNCTION public.sd_trig_soft_delete_generic() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('UPDATE %I.%I SET deleted_at = now(), hard_delete_at = now() + interval ''30 days'','
                   ' deleted_by = $2, delete_request_id = $3 WHERE id = $1',
                   TG_TABLE_SCHEMA, TG_TABLE_NAME)
      USING OLD.id, 'bench', 'r';
    RETURN NULL;
END
$$;
