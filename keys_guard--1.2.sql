/*
 * keys_guard--1.2.sql: the full install script of keys_guard 1.2
 *
 * CREATE EXTENSION keys_guard runs this file alone.  Databases that started
 * on an earlier version reach the same objects through the upgrade scripts
 * (keys_guard--1.0.sql, then keys_guard--1.0--1.1.sql and
 * keys_guard--1.1--1.2.sql), which stay as they were released.  Each object
 * is defined here once, in its 1.2 form, so this file is the one to read to
 * learn what keys_guard installs.
 *
 * The two ways must end in the same objects: sql/upgrade.sql installs
 * keys_guard both ways and reports every difference in a definition, a
 * privilege or a trigger.  A change to the SQL objects therefore goes into
 * a new upgrade script AND into the full script of the new version.
 *
 * Reading order: the registry tables and their protection, the audit log,
 * the views over the registry, the C functions the hooks and the worker
 * call, the SQL helpers that put a guard on a table, then the API by
 * subject (tenants, tables, undo, purge, tenant lifecycle, control plane),
 * and last the event triggers that enforce the rules on DDL.
 */

\echo Use "CREATE EXTENSION keys_guard" to load this file. \quit

-- Refuse to install unless the library was loaded by shared_preload_libraries:
-- without its hooks nothing below would be enforced.
CREATE FUNCTION keys_guard._assert_preloaded()
RETURNS void
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'keys_guard_assert_preloaded';
REVOKE ALL ON FUNCTION keys_guard._assert_preloaded() FROM PUBLIC;
SELECT keys_guard._assert_preloaded();

--
-- Roles.  They are cluster-wide, so they outlive DROP EXTENSION and are
-- created only when missing.
--   keys_guard_admin    manages tenants, guards, undo and purge
--   keys_guard_gateway  the application's connection role: sets the
--                       request context and undoes its tenant's deletes
--
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'keys_guard_admin') THEN
        CREATE ROLE keys_guard_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'keys_guard_gateway') THEN
        CREATE ROLE keys_guard_gateway NOLOGIN;
    END IF;
END
$roles$;

REVOKE ALL ON SCHEMA keys_guard FROM PUBLIC;
GRANT USAGE ON SCHEMA keys_guard TO PUBLIC;

--
-- The registry: tenants, guarded tables, and what the purge did per table.
-- Written only by keys_guard's functions.  tenant and guarded_table are
-- configuration tables, so pg_dump carries them over.
--
-- What a tenant id looks like: the one definition is in the library.
CREATE FUNCTION keys_guard._tenant_id_valid(id text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_tenant_id_valid';

CREATE TABLE keys_guard.tenant (
    id              text PRIMARY KEY
                    CONSTRAINT tenant_id_check CHECK (keys_guard._tenant_id_valid(id)),
    name            text NOT NULL,
    schema_name     name NOT NULL UNIQUE,
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'deleted', 'purged')),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    deleted_at      timestamptz,
    hard_delete_at  timestamptz
);

-- relid is the guarded table.  A tenant-schema table has tenant_id, a pooled
-- table has tenant_column; an archived table (kept when its tenant was
-- dropped) has neither.  created_policy says whether keys_guard added the
-- permissive policy keys_guard_base (and so removes it on release).
CREATE TABLE keys_guard.guarded_table (
    relid           regclass PRIMARY KEY,
    tenant_id       text REFERENCES keys_guard.tenant (id),
    tenant_column   name,
    soft_delete     boolean NOT NULL DEFAULT true,
    grace           interval NOT NULL,
    class           text NOT NULL DEFAULT 'standard'
                    CHECK (class IN ('standard', 'audit', 'payment')),
    created_policy  boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (tenant_id IS NULL OR tenant_column IS NULL)
);

SELECT pg_catalog.pg_extension_config_dump('keys_guard.tenant', '');
SELECT pg_catalog.pg_extension_config_dump('keys_guard.guarded_table', '');

-- Purge bookkeeping: written in the same transaction as each purge batch,
-- so the counts survive any crash exactly.
CREATE TABLE keys_guard.purge_stats (
    relid          regclass PRIMARY KEY,
    rows_purged    bigint NOT NULL DEFAULT 0,
    rows_skipped   bigint NOT NULL DEFAULT 0,
    last_run       timestamptz,
    last_error     text,
    last_error_at  timestamptz
);

REVOKE ALL ON keys_guard.tenant, keys_guard.guarded_table, keys_guard.purge_stats FROM PUBLIC;

-- Any change of the registry invalidates the per-backend cache the hooks
-- read (src/catalog.c).
CREATE FUNCTION keys_guard._registry_changed()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'keys_guard_registry_changed';
REVOKE ALL ON FUNCTION keys_guard._registry_changed() FROM PUBLIC;

CREATE TRIGGER keys_guard_registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keys_guard.tenant
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_changed();
CREATE TRIGGER keys_guard_registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keys_guard.guarded_table
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_changed();
ALTER TABLE keys_guard.tenant ENABLE ALWAYS TRIGGER keys_guard_registry_changed;
ALTER TABLE keys_guard.guarded_table ENABLE ALWAYS TRIGGER keys_guard_registry_changed;

-- The registry changes only through keys_guard's functions, superusers
-- included (src/control.c).  INSERT under keys_guard.bypass stays open for
-- pg_restore.
CREATE FUNCTION keys_guard._registry_guard()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'keys_guard_registry_guard';
REVOKE ALL ON FUNCTION keys_guard._registry_guard() FROM PUBLIC;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant', 'guarded_table', 'purge_stats'] LOOP
        EXECUTE format('CREATE TRIGGER keys_guard_registry_guard'
                       ' BEFORE INSERT OR UPDATE OR DELETE ON keys_guard.%I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_guard()', t);
        EXECUTE format('CREATE TRIGGER keys_guard_registry_guard_truncate'
                       ' BEFORE TRUNCATE ON keys_guard.%I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_guard()', t);
        EXECUTE format('ALTER TABLE keys_guard.%I ENABLE ALWAYS TRIGGER keys_guard_registry_guard', t);
        EXECUTE format('ALTER TABLE keys_guard.%I ENABLE ALWAYS TRIGGER keys_guard_registry_guard_truncate', t);
    END LOOP;
END
$$;

-- Governance version: increases with every change of the registry of
-- tenants and guarded tables.  A sequence, so that pg_dump carries it over
-- and a restored database goes on counting from where the dump was taken.
CREATE SEQUENCE keys_guard.governance_version AS bigint MINVALUE 1;
REVOKE ALL ON SEQUENCE keys_guard.governance_version FROM PUBLIC;
GRANT SELECT ON SEQUENCE keys_guard.governance_version TO keys_guard_admin;
SELECT pg_catalog.pg_extension_config_dump('keys_guard.governance_version', '');

CREATE FUNCTION keys_guard._bump_version()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.nextval('keys_guard.governance_version');
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION keys_guard._bump_version() FROM PUBLIC;

CREATE TRIGGER keys_guard_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keys_guard.tenant
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._bump_version();
CREATE TRIGGER keys_guard_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keys_guard.guarded_table
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._bump_version();
ALTER TABLE keys_guard.tenant ENABLE ALWAYS TRIGGER keys_guard_version;
ALTER TABLE keys_guard.guarded_table ENABLE ALWAYS TRIGGER keys_guard_version;

--
-- Audit log: append-only.  Denials reach it through a shared-memory queue
-- drained by the background worker, so they survive their rollback.  Its
-- ids come from an ordinary sequence of the extension (not an identity
-- column), so that pg_dump carries the sequence over with the log and a
-- restored database does not hand out ids that are already taken.
--
CREATE SEQUENCE keys_guard.audit_log_id_seq AS bigint;
REVOKE ALL ON SEQUENCE keys_guard.audit_log_id_seq FROM PUBLIC;

CREATE TABLE keys_guard.audit_log (
    id          bigint PRIMARY KEY
                DEFAULT pg_catalog.nextval('keys_guard.audit_log_id_seq'),
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    tenant      text,
    actor       text,
    request_id  text,
    action      text NOT NULL,
    target      text,
    outcome     text NOT NULL CHECK (outcome IN ('ok', 'denied', 'error')),
    detail      jsonb NOT NULL DEFAULT '{}'
);
ALTER SEQUENCE keys_guard.audit_log_id_seq OWNED BY keys_guard.audit_log.id;
CREATE INDEX audit_log_at_idx ON keys_guard.audit_log (at);
SELECT pg_catalog.pg_extension_config_dump('keys_guard.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('keys_guard.audit_log_id_seq', '');

REVOKE ALL ON keys_guard.audit_log FROM PUBLIC;
GRANT SELECT ON keys_guard.audit_log TO keys_guard_admin;

-- Refuses UPDATE, DELETE and TRUNCATE; also used for guarded tables of
-- class 'audit'.
CREATE FUNCTION keys_guard._append_only()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'keys_guard_append_only';
REVOKE ALL ON FUNCTION keys_guard._append_only() FROM PUBLIC;

CREATE TRIGGER keys_guard_append_only
    BEFORE UPDATE OR DELETE ON keys_guard.audit_log
    FOR EACH ROW EXECUTE FUNCTION keys_guard._append_only();
CREATE TRIGGER keys_guard_append_only_truncate
    BEFORE TRUNCATE ON keys_guard.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._append_only();
ALTER TABLE keys_guard.audit_log ENABLE ALWAYS TRIGGER keys_guard_append_only;
ALTER TABLE keys_guard.audit_log ENABLE ALWAYS TRIGGER keys_guard_append_only_truncate;

--
-- Views over the registry.  Several functions below return their row types.
--
CREATE VIEW keys_guard.tenants AS
    SELECT id, name, schema_name AS schema, status, created_at, deleted_at,
           hard_delete_at
      FROM keys_guard.tenant;

CREATE VIEW keys_guard.guarded_tables AS
    SELECT g.relid AS relation, n.nspname AS schema, c.relname AS table_name,
           CASE WHEN g.tenant_column IS NOT NULL THEN 'pooled'
                WHEN g.tenant_id IS NOT NULL THEN 'tenant_schema'
                ELSE 'archived' END AS kind,
           g.tenant_id, g.tenant_column, g.soft_delete, g.grace, g.class,
           g.created_at
      FROM keys_guard.guarded_table g
      JOIN pg_catalog.pg_class c ON c.oid = g.relid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;

REVOKE ALL ON keys_guard.tenants, keys_guard.guarded_tables FROM PUBLIC;
GRANT SELECT ON keys_guard.tenants, keys_guard.guarded_tables
    TO keys_guard_admin, keys_guard_gateway;

--
-- Request context (src/context.c; docs/contract.md §3): who is acting, for
-- which tenant, in which request.
--
CREATE FUNCTION keys_guard.set_context(tenant text, actor text,
                                       request_id text DEFAULT NULL,
                                       is_local boolean DEFAULT true)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_set_context';

CREATE FUNCTION keys_guard.admin_context(actor text, reason text,
                                         request_id text DEFAULT NULL,
                                         is_local boolean DEFAULT true)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_admin_context';

CREATE FUNCTION keys_guard.clear_context()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_clear_context';

CREATE FUNCTION keys_guard.current_tenant()
RETURNS text
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_current_tenant';

CREATE FUNCTION keys_guard.current_actor()
RETURNS text
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_current_actor';

CREATE FUNCTION keys_guard.current_request_id()
RETURNS text
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_current_request_id';

REVOKE ALL ON FUNCTION keys_guard.set_context(text, text, text, boolean),
    keys_guard.admin_context(text, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.set_context(text, text, text, boolean)
    TO keys_guard_gateway, keys_guard_admin;
GRANT EXECUTE ON FUNCTION keys_guard.admin_context(text, text, text, boolean)
    TO keys_guard_admin;

--
-- Gates the hooks splice into queries (src/isolation.c).  They run as the
-- querying role, so they keep the default EXECUTE privilege of PUBLIC.
--

-- The current tenant in the types a pooled tenant column may have; used by
-- the row filter the planner hook adds.  NULL when there is no context or
-- the tenant id is not a value of that type.
CREATE FUNCTION keys_guard._current_tenant_uuid()
RETURNS uuid
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_current_tenant_uuid';

CREATE FUNCTION keys_guard._current_tenant_bigint()
RETURNS bigint
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_current_tenant_bigint';

-- Gate for a predicate that names a tenant explicitly: true for the current
-- tenant, a 42501 denial for any other.  Evaluated once per execution.
CREATE FUNCTION keys_guard._assert_tenant(relid oid, value text)
RETURNS boolean
LANGUAGE C STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'keys_guard_assert_tenant';

-- Gate for a sequence function (nextval, currval, setval) naming a
-- sequence of a tenant schema: the relation rules decide.
CREATE FUNCTION keys_guard._assert_relation(relid oid)
RETURNS boolean
LANGUAGE C STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'keys_guard_assert_relation';

-- INSERT ... ON CONFLICT DO UPDATE: the conflicting row must be the
-- tenant's own and live before anything of the statement's own is
-- evaluated on it (docs/contract.md §6).
CREATE FUNCTION keys_guard._assert_conflict_row(relid oid, tenant text, deleted_at timestamptz)
RETURNS boolean
LANGUAGE C STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'keys_guard_assert_conflict_row';

-- Fail-closed row security: true while the library is preloaded, an error
-- otherwise.  Every guarded table has a restrictive policy calling it.
CREATE FUNCTION keys_guard._guard_active()
RETURNS boolean
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_guard_active';

-- Row trigger of a pooled table (BEFORE INSERT OR UPDATE): fills in the
-- current tenant when the row has none, refuses a row of another tenant.
CREATE FUNCTION keys_guard._tenant_row_guard()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'keys_guard_tenant_row_guard';
REVOKE ALL ON FUNCTION keys_guard._tenant_row_guard() FROM PUBLIC;

--
-- Soft delete and undo (src/soft_delete.c, src/recovery.c;
-- docs/contract.md §7): the values a DELETE-turned-UPDATE assigns, the
-- triggers every soft-delete table carries, and the C side of restore and
-- hard delete.
--
CREATE FUNCTION keys_guard._hard_delete_at(relid oid)
RETURNS timestamptz
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_hard_delete_at';

CREATE FUNCTION keys_guard._deleted_by()
RETURNS text
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_deleted_by';

CREATE FUNCTION keys_guard._refuse_delete()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'keys_guard_refuse_delete';

CREATE FUNCTION keys_guard._soft_delete_cascade()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'keys_guard_soft_delete_cascade';

CREATE FUNCTION keys_guard._restore_key(r regclass, key text)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_restore_key';

CREATE FUNCTION keys_guard._hard_delete_key(r regclass, key text, confirm boolean)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_hard_delete_key';

CREATE FUNCTION keys_guard.restore_request(request_id text)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_restore_request';

REVOKE ALL ON FUNCTION keys_guard._refuse_delete(), keys_guard._soft_delete_cascade(),
    keys_guard._restore_key(regclass, text), keys_guard._hard_delete_key(regclass, text, boolean),
    keys_guard.restore_request(text) FROM PUBLIC;
-- Undo belongs to the tenant too: inside a tenant context the gateway may
-- restore that tenant's own rows; the C functions refuse every row of
-- another tenant (42501).
GRANT EXECUTE ON FUNCTION keys_guard._restore_key(regclass, text),
    keys_guard.restore_request(text) TO keys_guard_admin, keys_guard_gateway;
GRANT EXECUTE ON FUNCTION keys_guard._hard_delete_key(regclass, text, boolean)
    TO keys_guard_admin;

--
-- Purge and the background worker (src/purge.c, src/worker.c;
-- docs/contract.md §9).
--
CREATE FUNCTION keys_guard._purge_table(r regclass, batch_size int, max_batches int,
                                        dry_run boolean,
                                        OUT purged bigint, OUT skipped bigint)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_purge_table';

CREATE FUNCTION keys_guard._backlog(r regclass, OUT waiting bigint, OUT deleted bigint)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_backlog';

CREATE FUNCTION keys_guard._count_rows(r regclass, OUT live bigint, OUT deleted bigint)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_count_rows';

-- Whether keys_guard's own internal operation (its tenant purge, for one)
-- is acting right now, with no user code started inside it; the sql_drop
-- event trigger asks.
CREATE FUNCTION keys_guard._in_internal_operation()
RETURNS boolean
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'keys_guard_in_internal_operation';

-- Called by the event triggers at the end of this file for every object a
-- DDL command created, altered or dropped: under a tenant context, DDL
-- stays in that tenant's schema.
CREATE FUNCTION keys_guard._deny_ddl(schema_name text, object_identity text)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_deny_ddl';

-- Called at the end of this script (and of each upgrade script) so that the
-- worker of this database starts as soon as the transaction commits.
CREATE FUNCTION keys_guard._notify_worker()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_notify_worker';

REVOKE ALL ON FUNCTION keys_guard._purge_table(regclass, int, int, boolean),
    keys_guard._backlog(regclass), keys_guard._count_rows(regclass),
    keys_guard._deny_ddl(text, text), keys_guard._notify_worker() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard._purge_table(regclass, int, int, boolean),
    keys_guard._backlog(regclass) TO keys_guard_admin;

--
-- Internal helpers in SQL
--

-- Resolve a relation name given as text; unknown or malformed names are a
-- 22023 error, as docs/contract.md §13 asks, rather than regclass's 42P01.
CREATE FUNCTION keys_guard._resolve_relation(rel text)
RETURNS regclass
LANGUAGE plpgsql STABLE
-- No SET search_path: names resolve in the caller's search_path, as they
-- would in the caller's own statements.  Everything here is qualified.
AS $$
DECLARE
    r regclass;
BEGIN
    IF rel IS NULL THEN
        RAISE EXCEPTION 'relation must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    BEGIN
        r := pg_catalog.to_regclass(rel);
    EXCEPTION WHEN OTHERS THEN
        r := NULL;
    END;
    IF r IS NULL THEN
        RAISE EXCEPTION 'relation "%" does not exist', rel
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN r;
END
$$;

-- One audit_log record of a successful operation, in the caller's
-- transaction, through the library's one audit writer (src/audit.c).
CREATE FUNCTION keys_guard._audit(action text, target text, detail jsonb)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_audit';

-- The grace settings as intervals, and the names keys_guard.h shares with
-- this script (names.c).
CREATE FUNCTION keys_guard._default_grace()
RETURNS interval
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_default_grace_setting';

CREATE FUNCTION keys_guard._min_grace()
RETURNS interval
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_min_grace_setting';

CREATE FUNCTION keys_guard._tenant_schema(id text)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_tenant_schema';

CREATE FUNCTION keys_guard._shared_names(OUT name text, OUT value text)
RETURNS SETOF record
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_shared_names';

-- A soft-delete table's purge index (a btree on hard_delete_at WHERE
-- deleted_at IS NOT NULL; a valid one first), and the name keys_guard
-- gives the one it creates.
CREATE FUNCTION keys_guard._purge_index(r regclass)
RETURNS regclass
LANGUAGE C STABLE STRICT
AS 'MODULE_PATHNAME', 'keys_guard_purge_index';

CREATE FUNCTION keys_guard._purge_index_name(r regclass)
RETURNS text
LANGUAGE C STABLE STRICT
AS 'MODULE_PATHNAME', 'keys_guard_purge_index_name';

REVOKE ALL ON FUNCTION keys_guard._purge_index(regclass),
    keys_guard._purge_index_name(regclass) FROM PUBLIC;

-- Drop one of keys_guard's triggers if the table has it (quietly).
CREATE FUNCTION keys_guard._drop_trigger(r regclass, trig text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = r AND tgname = trig) THEN
        EXECUTE format('DROP TRIGGER %I ON %s', trig, r);
    END IF;
END
$$;

-- The soft-delete cascade trigger is only on tables that need it: a
-- soft-delete table referenced through ON DELETE CASCADE by a soft-delete
-- child.  (It fires for every soft-deleted row, so tables without such
-- children should not pay for it.)
CREATE FUNCTION keys_guard._sync_cascade_trigger(parent regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted boolean;
    present boolean;
BEGIN
    SELECT EXISTS (SELECT 1 FROM keys_guard.guarded_table p
                    WHERE p.relid = parent AND p.soft_delete)
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                     JOIN keys_guard.guarded_table ch ON ch.relid = c.conrelid AND ch.soft_delete
                    WHERE c.confrelid = parent AND c.contype = 'f' AND c.confdeltype = 'c')
      INTO wanted;
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                    WHERE tgrelid = parent AND tgname = 'keys_guard_cascade')
      INTO present;
    IF wanted AND NOT present THEN
        EXECUTE format('CREATE TRIGGER keys_guard_cascade AFTER UPDATE OF deleted_at ON %s'
                       ' FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL)'
                       ' EXECUTE FUNCTION keys_guard._soft_delete_cascade()', parent);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER keys_guard_cascade', parent);
    ELSIF present AND NOT wanted THEN
        EXECUTE format('DROP TRIGGER keys_guard_cascade ON %s', parent);
    END IF;
END
$$;

-- Sync the cascade trigger of a table and of every table it references
-- through ON DELETE CASCADE.
CREATE FUNCTION keys_guard._sync_cascades_of(r regclass)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT keys_guard._sync_cascade_trigger(t)
      FROM (SELECT r AS t
            UNION
            SELECT c.confrelid::regclass FROM pg_catalog.pg_constraint c
             WHERE c.conrelid = r AND c.contype = 'f' AND c.confdeltype = 'c') AS s;
$$;

-- Give a table the columns and triggers its soft_delete and class options
-- call for.  Idempotent; only ever adds (weakening goes through release).
CREATE FUNCTION keys_guard._sync_guard(r regclass, p_soft_delete boolean, p_class text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col      record;
    trig     text;
BEGIN
    IF p_soft_delete THEN
        FOR col IN SELECT * FROM (VALUES ('deleted_at', 'timestamptz'::regtype),
                                         ('hard_delete_at', 'timestamptz'::regtype),
                                         ('deleted_by', 'text'::regtype),
                                         ('delete_request_id', 'text'::regtype)) AS c(name, type)
        LOOP
            PERFORM 1 FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = r AND a.attname = col.name AND NOT a.attisdropped
               AND a.atttypid <> col.type;
            IF FOUND THEN
                RAISE EXCEPTION 'column "%" of table % has the wrong type', col.name, r
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('keys_guard needs %s %s for soft delete.', col.name, col.type);
            END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                            WHERE a.attrelid = r AND a.attname = col.name AND NOT a.attisdropped) THEN
                EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', r, col.name, col.type);
            END IF;
        END LOOP;
        -- The purge finds expired rows through this index.
        IF keys_guard._purge_index(r) IS NULL THEN
            EXECUTE format('CREATE INDEX %I ON %s (hard_delete_at) WHERE deleted_at IS NOT NULL',
                           keys_guard._purge_index_name(r), r);
        END IF;
        FOREACH trig IN ARRAY ARRAY['keys_guard_refuse_delete', 'keys_guard_refuse_truncate'] LOOP
            PERFORM keys_guard._drop_trigger(r, trig);
        END LOOP;
        EXECUTE format('CREATE TRIGGER keys_guard_refuse_delete BEFORE DELETE ON %s'
                       ' FOR EACH ROW EXECUTE FUNCTION keys_guard._refuse_delete()', r);
        EXECUTE format('CREATE TRIGGER keys_guard_refuse_truncate BEFORE TRUNCATE ON %s'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._refuse_delete()', r);
        FOREACH trig IN ARRAY ARRAY['keys_guard_refuse_delete', 'keys_guard_refuse_truncate'] LOOP
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', r, trig);
        END LOOP;
    END IF;
    IF p_class = 'audit' THEN
        PERFORM keys_guard._drop_trigger(r, 'keys_guard_append_only');
        PERFORM keys_guard._drop_trigger(r, 'keys_guard_append_only_truncate');
        EXECUTE format('CREATE TRIGGER keys_guard_append_only BEFORE UPDATE OR DELETE ON %s'
                       ' FOR EACH ROW EXECUTE FUNCTION keys_guard._append_only()', r);
        EXECUTE format('CREATE TRIGGER keys_guard_append_only_truncate BEFORE TRUNCATE ON %s'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._append_only()', r);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER keys_guard_append_only', r);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER keys_guard_append_only_truncate', r);
    END IF;
END
$$;

-- Put the guards on one table and record it.  Caller has validated options.
CREATE FUNCTION keys_guard._apply_guard(r regclass, p_tenant_id text,
                                        p_tenant_column name,
                                        p_soft_delete boolean,
                                        p_grace interval, p_class text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    had_permissive boolean;
BEGIN
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_policy
                    WHERE polrelid = r AND polpermissive)
      INTO had_permissive;

    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', r);
    -- Restrictive: it can only take rows away from the table's own policies.
    EXECUTE format('CREATE POLICY keys_guard_fail_closed ON %s AS RESTRICTIVE'
                   ' USING (keys_guard._guard_active())'
                   ' WITH CHECK (keys_guard._guard_active())', r);
    -- Row security denies everything without a permissive policy; add one
    -- only when the table has none of its own, so that ours never widens
    -- what the table's policies allow.
    IF NOT had_permissive THEN
        EXECUTE format('CREATE POLICY keys_guard_base ON %s USING (true) WITH CHECK (true)', r);
    END IF;

    IF p_tenant_column IS NOT NULL THEN
        EXECUTE format('CREATE TRIGGER keys_guard_tenant BEFORE INSERT OR UPDATE ON %s'
                       ' FOR EACH ROW EXECUTE FUNCTION keys_guard._tenant_row_guard(%L)',
                       r, p_tenant_column);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER keys_guard_tenant', r);
    END IF;
    PERFORM keys_guard._sync_guard(r, p_soft_delete, p_class);

    INSERT INTO keys_guard.guarded_table
        (relid, tenant_id, tenant_column, soft_delete, grace, class, created_policy)
    VALUES (r, p_tenant_id, p_tenant_column, p_soft_delete, p_grace, p_class,
            NOT had_permissive);
    PERFORM keys_guard._sync_cascades_of(r);
END
$$;

REVOKE ALL ON FUNCTION keys_guard._audit(text, text, jsonb),
    keys_guard._drop_trigger(regclass, text),
    keys_guard._sync_cascade_trigger(regclass), keys_guard._sync_cascades_of(regclass),
    keys_guard._sync_guard(regclass, boolean, text),
    keys_guard._apply_guard(regclass, text, name, boolean, interval, text) FROM PUBLIC;

--
-- Tenants (docs/contract.md §4).  create_tenant(id, name, template =>
-- 'schema') creates the schema tenant_<id>, optionally cloning every table
-- of a template schema into it.  Only structure is cloned, never rows.
--
-- Order of the work, all in create_tenant's one transaction:
--   1. the schema and the clones are created BEFORE the tenant is
--      registered, so the event trigger does not give them the default
--      guard (which protect_table could not weaken afterwards);
--   2. the tenant row is inserted;
--   3. every clone is guarded with its template table's options (or the
--      defaults the event trigger would have given it).
-- Any error anywhere rolls all of it back.
--

-- Check a template argument and return its schema's oid.  The argument is a
-- schema NAME, compared as stored (no quoting, no case folding), never
-- parsed or interpolated.  Never another tenant's schema, never unlogged
-- tables (every clone is guarded, and a guarded table stays logged).
CREATE FUNCTION keys_guard._template_schema(template text, tenant_schema name)
RETURNS oid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp oid;
    bad text;
BEGIN
    IF template = '' THEN
        RAISE EXCEPTION 'template schema name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF template = tenant_schema THEN
        RAISE EXCEPTION 'schema "%" cannot be the template of its own tenant', template
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF template IN ('keys_guard', 'keys_guard_archive', 'information_schema')
       OR template LIKE 'pg\_%' THEN
        RAISE EXCEPTION 'schema "%" cannot be a template', left(template, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'System schemas and keys_guard''s own schemas are not templates.';
    END IF;
    SELECT n.oid INTO nsp FROM pg_catalog.pg_namespace n WHERE n.nspname = template;
    IF nsp IS NULL THEN
        RAISE EXCEPTION 'template schema "%" does not exist', left(template, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The template is a schema name as stored, without quotes.';
    END IF;
    -- Another tenant's schema holds that tenant's structure and names; it
    -- is never the pattern of a new tenant.
    SELECT t.id INTO bad FROM keys_guard.tenant t WHERE t.schema_name = template;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'schema "%" of tenant "%" cannot be a template', template, bad
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A template is a schema of its own, never the schema of a tenant.',
                  HINT = 'Create a template schema holding the tables every tenant starts with.';
    END IF;
    -- Every clone is guarded, and a guarded table is never unlogged.
    SELECT string_agg(format('%s', c.oid::regclass), ', ' ORDER BY c.relname) INTO bad
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = nsp AND c.relkind IN ('r', 'S') AND c.relpersistence <> 'p';
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'template schema "%" has unlogged tables or sequences', template
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Unlogged: %s.', bad),
                  HINT = 'Make them logged with ALTER TABLE ... SET LOGGED or ALTER SEQUENCE ... SET LOGGED.';
    END IF;

    -- keys_guard guards ordinary tables only; cloning part of a partition
    -- or inheritance tree would silently change what the tenant gets.
    SELECT string_agg(format('%s', c.oid::regclass), ', ' ORDER BY c.relname) INTO bad
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = nsp
       AND (c.relkind = 'p'
            OR (c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i
                                             WHERE i.inhrelid = c.oid)));
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'template schema "%" has partitioned or inheriting tables', template
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('Tables: %s.', bad),
                  HINT = 'A template holds ordinary tables only.';
    END IF;
    RETURN nsp;
END
$$;

-- A string literal as pg_get_expr prints it (standard_conforming_strings).
CREATE FUNCTION keys_guard._sql_literal(s text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT '''' || pg_catalog.replace(s, '''', '''''') || '''' $$;

-- Create the sequences of the template schema (not the identity sequences,
-- which CREATE TABLE ... LIKE makes itself) in the target schema, fresh:
-- same type, bounds, increment, start, cache and cycle, never its current
-- value.  Returns the pairs (template sequence, clone).
CREATE FUNCTION keys_guard._clone_sequences(tpl oid, target name)
RETURNS TABLE (source regclass, clone regclass)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT c.oid, c.relname, c.relpersistence, q.*
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_sequence q ON q.seqrelid = c.oid
              WHERE c.relnamespace = tpl AND c.relkind = 'S'
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                 WHERE d.classid = 'pg_catalog.pg_class'::regclass
                                   AND d.objid = c.oid AND d.deptype = 'i')
              ORDER BY c.relname LOOP
        EXECUTE format('CREATE %sSEQUENCE %I.%I AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s'
                       ' START WITH %s CACHE %s %sCYCLE',
                       CASE s.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END,
                       target, s.relname, s.seqtypid::regtype, s.seqincrement, s.seqmin,
                       s.seqmax, s.seqstart, s.seqcache,
                       CASE WHEN s.seqcycle THEN '' ELSE 'NO ' END);
        source := s.oid;
        clone := format('%I.%I', target, s.relname)::regclass;
        RETURN NEXT;
    END LOOP;
END
$$;

-- What an index is, without its name and its table's name: the part of its
-- definition after "USING" and the kind of constraint it backs.
CREATE FUNCTION keys_guard._index_signature(idx oid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT concat_ws('|', i.indisunique, i.indisprimary, i.indisexclusion, i.indnullsnotdistinct,
                     (SELECT c.contype FROM pg_catalog.pg_constraint c
                       WHERE c.conindid = idx AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x')),
                     substr(def, strpos(def, format(' ON %s USING ', i.indrelid::regclass))
                                 + length(format(' ON %s ', i.indrelid::regclass))))
      FROM pg_catalog.pg_index i, pg_catalog.pg_get_indexdef(idx) AS def
     WHERE i.indexrelid = idx
$$;

-- Create the clone of one template table: columns, defaults, constraints
-- (except foreign keys), indexes, identity and generated columns, storage,
-- compression, extended statistics and comments, then the template's index
-- names (LIKE makes up new ones), table comment and storage parameters.
CREATE FUNCTION keys_guard._clone_table(source regclass, target name)
RETURNS regclass
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src     pg_catalog.pg_class;
    clone   regclass;
    opts    text;
    dst     oid[];
    wanted  name[];
BEGIN
    SELECT * INTO src FROM pg_catalog.pg_class WHERE oid = source;
    SELECT string_agg(format('%s = %s', split_part(o, '=', 1),
                             keys_guard._sql_literal(substr(o, strpos(o, '=') + 1))), ', ')
      INTO opts
      FROM unnest(src.reloptions) AS o;
    EXECUTE format('CREATE %sTABLE %I.%I (LIKE %s INCLUDING ALL)%s%s',
                   CASE src.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END,
                   target, src.relname, source,
                   CASE WHEN src.relam <> 0 AND src.relam <> (SELECT oid FROM pg_catalog.pg_am WHERE amname = 'heap')
                        THEN format(' USING %I', (SELECT amname FROM pg_catalog.pg_am WHERE oid = src.relam))
                        ELSE '' END,
                   CASE WHEN opts IS NOT NULL THEN format(' WITH (%s)', opts) ELSE '' END);
    clone := format('%I.%I', target, src.relname)::regclass;
    IF obj_description(source, 'pg_class') IS NOT NULL THEN
        EXECUTE format('COMMENT ON TABLE %s IS %L', clone, obj_description(source, 'pg_class'));
    END IF;

    -- Give each clone index its template index's name: pair them by
    -- definition (without name and table), through temporary names so that
    -- the made-up names never collide with the wanted ones.
    SELECT coalesce(array_agg(d.indexrelid ORDER BY s.relname), '{}'),
           coalesce(array_agg(s.relname ORDER BY s.relname), '{}')
      INTO dst, wanted
      FROM (SELECT ci.relname, keys_guard._index_signature(i.indexrelid) AS sig,
                   row_number() OVER (PARTITION BY keys_guard._index_signature(i.indexrelid)
                                      ORDER BY ci.relname) AS n
              FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
             WHERE i.indrelid = source) s
      JOIN (SELECT i.indexrelid, keys_guard._index_signature(i.indexrelid) AS sig,
                   row_number() OVER (PARTITION BY keys_guard._index_signature(i.indexrelid)
                                      ORDER BY ci.relname) AS n
              FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
             WHERE i.indrelid = clone) d
        ON d.sig = s.sig AND d.n = s.n;
    IF cardinality(dst) <> (SELECT count(*) FROM pg_catalog.pg_index WHERE indrelid = source)
       OR cardinality(dst) <> (SELECT count(*) FROM pg_catalog.pg_index WHERE indrelid = clone) THEN
        RAISE EXCEPTION 'could not match the indexes of % with those of template table %',
                        clone, source
            USING ERRCODE = 'internal_error';
    END IF;
    FOR i IN 1 .. cardinality(dst) LOOP
        EXECUTE format('ALTER INDEX %s RENAME TO %I', dst[i]::regclass, 'kg_clone_' || dst[i]);
    END LOOP;
    FOR i IN 1 .. cardinality(dst) LOOP
        EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', target, 'kg_clone_' || dst[i], wanted[i]);
    END LOOP;
    RETURN clone;
END
$$;

-- Point the clone's column defaults at the cloned sequences instead of the
-- template's (LIKE copies nextval('template.seq') as it is).
CREATE FUNCTION keys_guard._repoint_defaults(clone regclass, seqs jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d     record;
    expr  text;
    s     record;
BEGIN
    FOR d IN SELECT DISTINCT ad.oid, a.attname, pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) AS expr
               FROM pg_catalog.pg_attrdef ad
               JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
               JOIN pg_catalog.pg_depend dep ON dep.classid = 'pg_catalog.pg_attrdef'::regclass
                                            AND dep.objid = ad.oid
                                            AND dep.refclassid = 'pg_catalog.pg_class'::regclass
              WHERE ad.adrelid = clone AND seqs ? dep.refobjid::text LOOP
        expr := d.expr;
        FOR s IN SELECT key::oid::regclass AS old, value::oid::regclass AS new
                   FROM jsonb_each_text(seqs) LOOP
            expr := replace(expr, keys_guard._sql_literal(s.old::text) || '::regclass',
                            keys_guard._sql_literal(s.new::text) || '::regclass');
        END LOOP;
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s', clone, d.attname, expr);
    END LOOP;
    -- Fail rather than leave a clone that would draw from the template's sequence.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef ad
                 JOIN pg_catalog.pg_depend dep ON dep.classid = 'pg_catalog.pg_attrdef'::regclass
                                              AND dep.objid = ad.oid
                                              AND dep.refclassid = 'pg_catalog.pg_class'::regclass
                WHERE ad.adrelid = clone AND seqs ? dep.refobjid::text) THEN
        RAISE EXCEPTION 'could not point the defaults of % at its own sequences', clone
            USING ERRCODE = 'internal_error';
    END IF;
END
$$;

-- Recreate the foreign keys of one template table on its clone: those
-- between template tables point at the clones, the others at the same
-- table as before.  Same columns, match type, actions and deferrability.
CREATE FUNCTION keys_guard._clone_foreign_keys(source regclass, clone regclass, tpl oid, target name)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk        record;
    ref       text;
    other     text;
    actions   constant jsonb := '{"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE",
                                  "n": "SET NULL", "d": "SET DEFAULT"}';
BEGIN
    FOR fk IN SELECT c.*, r.relname AS ref_name, r.relnamespace AS ref_nsp,
                     (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.n)
                        FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
                        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS cols,
                     (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.n)
                        FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
                        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum) AS ref_cols,
                     (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.n)
                        FROM unnest(c.confdelsetcols) WITH ORDINALITY AS k(attnum, n)
                        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS set_cols
                FROM pg_catalog.pg_constraint c
                JOIN pg_catalog.pg_class r ON r.oid = c.confrelid
               WHERE c.conrelid = source AND c.contype = 'f'
               ORDER BY c.conname LOOP
        IF fk.ref_nsp = tpl THEN
            ref := format('%I.%I', target, fk.ref_name);
        ELSE
            SELECT t.id INTO other FROM keys_guard.tenant t
              JOIN pg_catalog.pg_namespace n ON n.nspname = t.schema_name
             WHERE n.oid = fk.ref_nsp;
            IF other IS NOT NULL THEN
                RAISE EXCEPTION 'foreign key "%" of template table % references a table of tenant "%"',
                                fk.conname, source, other
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = 'A tenant''s tables cannot reference another tenant''s tables.';
            END IF;
            ref := fk.confrelid::regclass::text;
        END IF;
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I FOREIGN KEY (%s) REFERENCES %s (%s)%s'
                       ' ON UPDATE %s ON DELETE %s%s%s%s',
                       clone, fk.conname, fk.cols, ref, fk.ref_cols,
                       CASE fk.confmatchtype WHEN 'f' THEN ' MATCH FULL' ELSE '' END,
                       actions ->> fk.confupdtype::text, actions ->> fk.confdeltype::text,
                       CASE WHEN fk.set_cols IS NOT NULL THEN format(' (%s)', fk.set_cols) ELSE '' END,
                       CASE WHEN fk.condeferrable THEN ' DEFERRABLE' ELSE '' END,
                       CASE WHEN fk.condeferred THEN ' INITIALLY DEFERRED' ELSE '' END);
        IF obj_description(fk.oid, 'pg_constraint') IS NOT NULL THEN
            EXECUTE format('COMMENT ON CONSTRAINT %I ON %s IS %L', fk.conname, clone,
                           obj_description(fk.oid, 'pg_constraint'));
        END IF;
    END LOOP;
END
$$;

-- Give a clone (table or sequence) the template object's privileges, except
-- those of the template's owner: the clone's owner is keys_guard_admin, like
-- the tenant schema, so that keys_guard_admin members can migrate it.
CREATE FUNCTION keys_guard._clone_privileges(source regclass, clone regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT NULL::name AS attname, a.grantee, a.privilege_type, a.is_grantable
               FROM pg_catalog.pg_class c, aclexplode(c.relacl) AS a
              WHERE c.oid = source AND a.grantee <> c.relowner
             UNION ALL
             SELECT att.attname, a.grantee, a.privilege_type, a.is_grantable
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_attribute att ON att.attrelid = c.oid
                                               AND att.attnum > 0 AND NOT att.attisdropped,
                    aclexplode(att.attacl) AS a
              WHERE c.oid = source AND a.grantee <> c.relowner LOOP
        CONTINUE WHEN g.grantee = 'keys_guard_admin'::regrole;
        EXECUTE format('GRANT %s%s ON %s TO %s%s', g.privilege_type,
                       CASE WHEN g.attname IS NOT NULL THEN format(' (%I)', g.attname) ELSE '' END,
                       clone,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.grantee::regrole::text) END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;

-- Clone every table of the template schema into the (new, not yet
-- registered) target schema.  Returns the pairs (template table, clone).
CREATE FUNCTION keys_guard._clone_template(tpl oid, target name)
RETURNS TABLE (source regclass, clone regclass)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seqs     jsonb;
    pairs    jsonb := '{}';
    t        record;
    s        record;
    skipped  text;
BEGIN
    SELECT coalesce(jsonb_object_agg(c.source::oid::text, c.clone::oid), '{}')
      INTO seqs FROM keys_guard._clone_sequences(tpl, target) AS c;

    FOR t IN SELECT c.oid::regclass AS rel FROM pg_catalog.pg_class c
              WHERE c.relnamespace = tpl AND c.relkind = 'r'
              ORDER BY c.relname LOOP
        pairs := pairs || jsonb_build_object(t.rel::oid::text,
                                             keys_guard._clone_table(t.rel, target)::oid);
    END LOOP;

    -- With every table in place, the references between them.
    FOR t IN SELECT key::oid::regclass AS src, value::oid::regclass AS dst
               FROM jsonb_each_text(pairs) LOOP
        PERFORM keys_guard._repoint_defaults(t.dst, seqs);
        PERFORM keys_guard._clone_foreign_keys(t.src, t.dst, tpl, target);
        EXECUTE format('ALTER TABLE %s OWNER TO keys_guard_admin', t.dst);
        PERFORM keys_guard._clone_privileges(t.src, t.dst);
    END LOOP;
    FOR s IN SELECT key::oid::regclass AS src, value::oid::regclass AS dst
               FROM jsonb_each_text(seqs) LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNER TO keys_guard_admin', s.dst);
        PERFORM keys_guard._clone_privileges(s.src, s.dst);
        -- A serial column's sequence belongs to the clone's column.
        FOR t IN SELECT a.attname, (pairs ->> d.refobjid::text)::oid::regclass AS owner
                   FROM pg_catalog.pg_depend d
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.src
                    AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'a'
                    AND pairs ? d.refobjid::text LOOP
            EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', s.dst, t.owner, t.attname);
        END LOOP;
    END LOOP;

    SELECT string_agg(format('%s %s', CASE c.relkind WHEN 'v' THEN 'view'
                                                     WHEN 'm' THEN 'materialized view'
                                                     ELSE 'foreign table' END,
                             c.oid::regclass), ', ' ORDER BY c.relname)
      INTO skipped
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = tpl AND c.relkind IN ('v', 'm', 'f');
    IF skipped IS NOT NULL THEN
        RAISE NOTICE 'only the tables of template schema "%" are cloned',
                     (SELECT nspname FROM pg_catalog.pg_namespace WHERE oid = tpl)
            USING DETAIL = format('Not cloned: %s.', skipped);
    END IF;

    RETURN QUERY SELECT key::oid::regclass, value::oid::regclass FROM jsonb_each_text(pairs);
END
$$;

-- Guard the clones of a registered tenant: each with its template table's
-- soft_delete, grace and class, or, for an unguarded template table, with
-- what the event trigger gives a table created in a tenant schema.
CREATE FUNCTION keys_guard._guard_clones(tenant_id text, clones jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t          record;
    min_grace  interval := keys_guard._min_grace();
BEGIN
    FOR t IN SELECT key::oid::regclass AS src, value::oid::regclass AS dst,
                    coalesce(g.soft_delete, true) AS soft_delete,
                    coalesce(g.grace, keys_guard._default_grace()) AS grace,
                    coalesce(g.class, 'standard') AS class
               FROM jsonb_each_text(clones)
               LEFT JOIN keys_guard.guarded_table g ON g.relid = key::oid
              ORDER BY key LOOP
        IF t.grace < min_grace THEN
            RAISE EXCEPTION 'grace % of template table % is below keys_guard.min_grace', t.grace, t.src
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('keys_guard.min_grace is %s.', min_grace);
        END IF;
        PERFORM keys_guard._apply_guard(t.dst, tenant_id, NULL, t.soft_delete, t.grace, t.class);
    END LOOP;
END
$$;

-- Register a tenant and create its schema.  Tenant names have no control
-- characters.
CREATE FUNCTION keys_guard.create_tenant(id text, name text DEFAULT NULL,
                                         template text DEFAULT NULL)
RETURNS keys_guard.tenants
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    t        keys_guard.tenant;
    schema   name;
    tpl      oid;
    clones   jsonb;
    result   keys_guard.tenants;
    detail   jsonb;
BEGIN
    IF id IS NULL THEN
        RAISE EXCEPTION 'tenant id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT keys_guard._tenant_id_valid(id) THEN
        RAISE EXCEPTION 'invalid tenant id "%"', left(id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A tenant id is 1 to 48 lower-case letters, digits, "_" or "-", starting with a letter or a digit.';
    END IF;
    IF name IS NOT NULL AND (length(name) = 0 OR length(name) > 200) THEN
        RAISE EXCEPTION 'invalid tenant name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A tenant name is 1 to 200 characters.';
    END IF;
    -- Control characters (C0, DEL, C1, and the line and paragraph
    -- separators) would forge lines in logs, reports and terminals.
    IF name ~ '[\x01-\x1f\x7f-\x9f\u2028\u2029]' THEN
        RAISE EXCEPTION 'invalid tenant name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A tenant name has no control characters.';
    END IF;
    IF template = '' THEN
        RAISE EXCEPTION 'template schema name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    name := coalesce(name, id);
    schema := keys_guard._tenant_schema(id);

    -- Serialize concurrent creations of the same tenant.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('keys_guard.tenant'),
                                             pg_catalog.hashtext(id));

    SELECT * INTO t FROM keys_guard.tenant WHERE tenant.id = id;
    IF FOUND THEN
        IF t.status = 'deleted' THEN
            RAISE EXCEPTION 'tenant "%" is pending deletion', id
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Its data is kept until %s.', t.hard_delete_at),
                      HINT = 'Use keys_guard.restore_tenant() to bring it back.';
        END IF;
        IF t.name IS DISTINCT FROM name THEN
            RAISE EXCEPTION 'tenant "%" already exists with different attributes', id
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Existing name is %s, requested name is %s.',
                                      quote_literal(t.name), quote_literal(name));
        END IF;
        -- The template shapes a tenant when it is created, never after.
        IF template IS NULL THEN
            RAISE NOTICE 'tenant "%" already exists, skipping', id;
        ELSE
            RAISE NOTICE 'tenant "%" already exists, skipping', id
                USING DETAIL = 'A template is applied only when a tenant is created.';
        END IF;
        SELECT * INTO result FROM keys_guard.tenants WHERE tenants.id = id;
        RETURN result;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = schema) THEN
        RAISE EXCEPTION 'schema "%" already exists', schema
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'keys_guard creates the schema of a new tenant itself.',
                  HINT = 'Rename or drop the existing schema, or choose another tenant id.';
    END IF;
    IF template IS NOT NULL THEN
        tpl := keys_guard._template_schema(template, schema);
    END IF;

    EXECUTE format('CREATE SCHEMA %I AUTHORIZATION keys_guard_admin', schema);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO keys_guard_gateway', schema);
    -- Clone before the tenant exists, so the event trigger leaves the
    -- clones to _guard_clones (it would give them the default guard).
    IF tpl IS NOT NULL THEN
        SELECT coalesce(jsonb_object_agg(c.source::oid::text, c.clone::oid), '{}')
          INTO clones FROM keys_guard._clone_template(tpl, schema) AS c;
    END IF;
    INSERT INTO keys_guard.tenant (id, name, schema_name) VALUES (id, name, schema);
    IF tpl IS NOT NULL THEN
        PERFORM keys_guard._guard_clones(id, clones);
    END IF;

    detail := jsonb_build_object('tenant', id, 'name', name);
    IF template IS NOT NULL THEN
        detail := detail || jsonb_build_object('template', template,
                                               'tables', (SELECT count(*) FROM jsonb_object_keys(clones)));
    END IF;
    PERFORM keys_guard._audit('create_tenant', schema, detail);

    SELECT * INTO result FROM keys_guard.tenants WHERE tenants.id = id;
    RETURN result;
END
$$;

REVOKE ALL ON FUNCTION keys_guard.create_tenant(text, text, text),
    keys_guard._template_schema(text, name),
    keys_guard._sql_literal(text),
    keys_guard._clone_sequences(oid, name),
    keys_guard._clone_table(regclass, name),
    keys_guard._index_signature(oid),
    keys_guard._repoint_defaults(regclass, jsonb),
    keys_guard._clone_foreign_keys(regclass, regclass, oid, name),
    keys_guard._clone_privileges(regclass, regclass),
    keys_guard._clone_template(oid, name),
    keys_guard._guard_clones(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.create_tenant(text, text, text) TO keys_guard_admin;

--
-- Tables (docs/contract.md §5).  protect_table guards only what lasts:
-- permanent, logged, ordinary tables, with a tenant column that is a plain
-- stored column.
--
-- Check the options and guard one table, or strengthen the guard it has;
-- a guard is never weakened (release the table first).
CREATE FUNCTION keys_guard._protect_table(r regclass,
                                          tenant_column name,
                                          soft_delete boolean,
                                          grace interval,
                                          class text)
RETURNS SETOF keys_guard.guarded_tables
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    kind       "char";
    persistence "char";
    nsp        name;
    col_type   regtype;
    col_generated "char";
    col_identity  "char";
    bad_columns text;
    tid        text;
    min_grace  interval := keys_guard._min_grace();
    old        keys_guard.guarded_table;
    class_rank constant jsonb := '{"standard": 0, "payment": 1, "audit": 2}';
BEGIN
    IF soft_delete IS NULL OR class IS NULL THEN
        RAISE EXCEPTION 'soft_delete and class must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT class_rank ? class THEN
        RAISE EXCEPTION 'invalid class "%"', left(class, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The class is one of "standard", "audit" or "payment".';
    END IF;
    grace := coalesce(grace, keys_guard._default_grace());
    IF grace < interval '0' THEN
        RAISE EXCEPTION 'grace must not be negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF grace < min_grace THEN
        RAISE EXCEPTION 'grace % is below keys_guard.min_grace', grace
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('keys_guard.min_grace is %s.', min_grace);
    END IF;

    SELECT c.relkind, c.relpersistence, n.nspname INTO kind, persistence, nsp
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = r;
    IF kind <> 'r' THEN
        RAISE EXCEPTION '"%" is not a table', r
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'keys_guard guards ordinary tables; partitioned tables, views and foreign tables are not supported.';
    END IF;
    -- A crash empties an unlogged table, and a temporary one vanishes with
    -- its session (leaving nothing that could release it): keys_guard
    -- guards what lasts.
    IF persistence = 't' THEN
        RAISE EXCEPTION 'cannot guard temporary table %', r
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'keys_guard guards permanent tables only; a temporary table vanishes with its session.';
    END IF;
    IF persistence <> 'p' THEN
        RAISE EXCEPTION 'cannot guard unlogged table %', r
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A crash empties an unlogged table; keys_guard guards logged tables only.',
                  HINT = format('Make it logged first: ALTER TABLE %s SET LOGGED.', r);
    END IF;
    IF nsp IN ('keys_guard', 'pg_catalog', 'information_schema', 'pg_toast')
       OR r::oid < 16384 THEN
        RAISE EXCEPTION 'cannot guard "%"', r
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'System and keys_guard tables are not guarded by protect_table().';
    END IF;

    SELECT t.id INTO tid FROM keys_guard.tenant t WHERE t.schema_name = nsp;
    IF tid IS NOT NULL AND tenant_column IS NOT NULL THEN
        RAISE EXCEPTION 'table "%" is in the schema of tenant "%"', r, tid
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A table in a tenant schema belongs to that tenant as a whole.',
                  HINT = 'Pass tenant_column => NULL.';
    END IF;
    IF tid IS NULL AND tenant_column IS NULL THEN
        RAISE EXCEPTION 'tenant_column must not be null for table "%"', r
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'The table is not in a tenant schema, so it is a pooled table and needs a tenant column.';
    END IF;
    IF tenant_column IS NOT NULL THEN
        SELECT a.atttypid::regtype, a.attgenerated, a.attidentity
          INTO col_type, col_generated, col_identity
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = r AND a.attname = tenant_column
           AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of relation "%" does not exist', tenant_column, r
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- A generated value is computed after keys_guard's row trigger has
        -- checked the row, so it could name any tenant; an identity value
        -- comes from a sequence.  The tenant column holds what was written.
        IF col_generated <> '' THEN
            RAISE EXCEPTION 'tenant column "%" of table % is a generated column', tenant_column, r
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A tenant column is a plain stored column; a generated value is computed after keys_guard has checked the row.';
        END IF;
        IF col_identity <> '' THEN
            RAISE EXCEPTION 'tenant column "%" of table % is an identity column', tenant_column, r
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A tenant column is a plain stored column; an identity column takes its values from a sequence.';
        END IF;
        IF col_type NOT IN ('text'::regtype, 'uuid'::regtype, 'bigint'::regtype) THEN
            RAISE EXCEPTION 'tenant column "%" has type %', tenant_column, col_type
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A tenant column is of type text, uuid or bigint.';
        END IF;
    END IF;

    -- The soft-delete columns keys_guard writes must be plain columns too.
    IF soft_delete THEN
        SELECT string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO bad_columns
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = r AND NOT a.attisdropped
           AND a.attname IN ('deleted_at', 'hard_delete_at', 'deleted_by', 'delete_request_id')
           AND (a.attgenerated <> '' OR a.attidentity <> '');
        IF bad_columns IS NOT NULL THEN
            RAISE EXCEPTION 'soft-delete columns of table % are generated or identity columns', r
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Columns: %s.  keys_guard writes them on every delete.', bad_columns);
        END IF;
    END IF;

    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('keys_guard.guarded_table'),
                                             r::oid::int);
    SELECT * INTO old FROM keys_guard.guarded_table g WHERE g.relid = r;
    IF NOT FOUND THEN
        PERFORM keys_guard._apply_guard(r, tid, tenant_column, soft_delete, grace, class);
        PERFORM keys_guard._audit('protect_table', r::text,
                                  jsonb_build_object('tenant_column', tenant_column,
                                                     'soft_delete', soft_delete,
                                                     'grace', grace, 'class', class));
    ELSIF old.tenant_column IS DISTINCT FROM tenant_column THEN
        RAISE EXCEPTION 'table "%" is already guarded with tenant column %', r,
                coalesce(quote_ident(old.tenant_column), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Call keys_guard.release_table() first to change the tenant column.';
    ELSIF (old.soft_delete AND NOT soft_delete)
          OR (class_rank ->> class)::int < (class_rank ->> old.class)::int
          OR grace < old.grace THEN
        RAISE EXCEPTION 'cannot weaken the guard of table "%"', r
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('It is guarded with soft_delete => %s, grace => %s, class => %s.',
                                  old.soft_delete, old.grace, old.class),
                  HINT = 'Call keys_guard.release_table() first, then protect the table again.';
    ELSIF old.soft_delete = soft_delete AND old.class = class AND old.grace = grace THEN
        RAISE NOTICE 'table "%" is already guarded with these options, skipping', r;
    ELSE
        UPDATE keys_guard.guarded_table g
           SET soft_delete = _protect_table.soft_delete,
               grace = _protect_table.grace,
               class = _protect_table.class
         WHERE g.relid = r;
        PERFORM keys_guard._sync_guard(r, soft_delete, class);
        PERFORM keys_guard._sync_cascades_of(r);
        PERFORM keys_guard._audit('protect_table', r::text,
                                  jsonb_build_object('upgraded_from', to_jsonb(old) - 'relid',
                                                     'soft_delete', soft_delete,
                                                     'grace', grace, 'class', class));
    END IF;

    RETURN QUERY SELECT * FROM keys_guard.guarded_tables WHERE relation = r;
END
$$;

-- Remove keys_guard's policies, triggers and purge index from a table and
-- forget it; its columns and data stay.
CREATE FUNCTION keys_guard._release_table(r regclass)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old keys_guard.guarded_table;
    idx regclass;
BEGIN
    SELECT * INTO old FROM keys_guard.guarded_table g WHERE g.relid = r;
    IF NOT FOUND THEN
        RAISE NOTICE 'table "%" is not guarded, skipping', r;
        RETURN false;
    END IF;
    EXECUTE format('DROP POLICY IF EXISTS keys_guard_fail_closed ON %s', r);
    IF old.created_policy THEN
        EXECUTE format('DROP POLICY IF EXISTS keys_guard_base ON %s', r);
        EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY', r);
    END IF;
    PERFORM keys_guard._drop_trigger(r, t)
       FROM unnest(ARRAY['keys_guard_tenant', 'keys_guard_refuse_delete',
                         'keys_guard_refuse_truncate', 'keys_guard_cascade',
                         'keys_guard_append_only', 'keys_guard_append_only_truncate']) AS t;
    -- The purge index is keys_guard's too (data and columns stay).
    -- (named by keys_guard, perhaps from the table's name before a rename).
    idx := keys_guard._purge_index(r);
    IF (SELECT c.relname LIKE '%\_kg\_purge' FROM pg_catalog.pg_class c WHERE c.oid = idx) THEN
        EXECUTE format('DROP INDEX %s', idx);
    END IF;
    DELETE FROM keys_guard.guarded_table g WHERE g.relid = r;
    DELETE FROM keys_guard.purge_stats p WHERE p.relid = r;
    PERFORM keys_guard._sync_cascades_of(r);
    PERFORM keys_guard._audit('release_table', r::text, to_jsonb(old) - 'relid');
    RETURN true;
END
$$;

-- The public entry points resolve the relation name in the caller's
-- search_path, then do the privileged work in the functions above.
CREATE FUNCTION keys_guard.protect_table(rel text,
                                         tenant_column name DEFAULT NULL,
                                         soft_delete boolean DEFAULT true,
                                         grace interval DEFAULT NULL,
                                         class text DEFAULT 'standard')
RETURNS SETOF keys_guard.guarded_tables
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM keys_guard._protect_table(keys_guard._resolve_relation(rel),
                                            tenant_column, soft_delete, grace, class)
$$;

-- No SET search_path: rel is resolved in the caller's search_path.
CREATE FUNCTION keys_guard.release_table(rel text, dry_run boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r regclass;
BEGIN
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'dry_run must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    r := keys_guard._resolve_relation(rel);
    IF dry_run THEN
        RETURN EXISTS (SELECT 1 FROM keys_guard.guarded_table g WHERE g.relid OPERATOR(pg_catalog.=) r);
    END IF;
    RETURN keys_guard._release_table(r);
END
$$;

-- Release every guarded table and forget every tenant: schemas, tables,
-- columns and rows all stay, so that DROP EXTENSION keys_guard removes only
-- keys_guard's own objects.
CREATE FUNCTION keys_guard.release_all(confirm boolean DEFAULT false,
                                       dry_run boolean DEFAULT false)
RETURNS TABLE (object_type text, object text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
    released int := 0;
    forgotten int := 0;
BEGIN
    IF confirm IS NULL OR dry_run IS NULL THEN
        RAISE EXCEPTION 'confirm and dry_run must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF dry_run THEN
        RETURN QUERY
            SELECT 'table', gt.relid::text FROM keys_guard.guarded_table gt
            UNION ALL
            SELECT 'tenant', t.id FROM keys_guard.tenant t
            ORDER BY 1, 2;
        RETURN;
    END IF;
    IF NOT confirm THEN
        RAISE EXCEPTION 'release_all needs confirm => true'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'It removes the guards of every table and forgets every tenant.',
                  HINT = 'Call keys_guard.release_all(dry_run => true) to see what it would release.';
    END IF;
    -- One release at a time, in the same order for every caller.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('keys_guard.release_all'));
    FOR g IN SELECT relid FROM keys_guard.guarded_table ORDER BY relid::text LOOP
        PERFORM keys_guard._release_table(g.relid);
        object_type := 'table';
        object := g.relid::text;
        released := released + 1;
        RETURN NEXT;
    END LOOP;
    FOR g IN DELETE FROM keys_guard.tenant RETURNING id LOOP
        object_type := 'tenant';
        object := g.id;
        forgotten := forgotten + 1;
        RETURN NEXT;
    END LOOP;
    DELETE FROM keys_guard.purge_stats;
    PERFORM keys_guard._audit('release_all', NULL,
                              jsonb_build_object('tables', released, 'tenants', forgotten));
END
$$;

REVOKE ALL ON FUNCTION keys_guard._protect_table(regclass, name, boolean, interval, text),
    keys_guard._release_table(regclass),
    keys_guard.protect_table(text, name, boolean, interval, text),
    keys_guard.release_table(text, boolean),
    keys_guard.release_all(boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard._protect_table(regclass, name, boolean, interval, text),
    keys_guard._release_table(regclass),
    keys_guard.protect_table(text, name, boolean, interval, text),
    keys_guard.release_table(text, boolean) TO keys_guard_admin;
-- release_all is for the database owner's superuser only: it is the path
-- to DROP EXTENSION.

--
-- Undo (docs/contract.md §7): restore and hard-delete one row by primary
-- key, and preview what a DELETE of one row would reach.
--
CREATE FUNCTION keys_guard.restore(rel text, key anyelement)
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$ SELECT keys_guard._restore_key(keys_guard._resolve_relation(rel), key::text) $$;

CREATE FUNCTION keys_guard.hard_delete(rel text, key anyelement, confirm boolean DEFAULT false)
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$ SELECT keys_guard._hard_delete_key(keys_guard._resolve_relation(rel), key::text, confirm) $$;

-- The same with the key as text, so that a quoted literal ('42', a UUID)
-- resolves without a cast.
CREATE FUNCTION keys_guard.restore(rel text, key text)
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$ SELECT keys_guard._restore_key(keys_guard._resolve_relation(rel), key) $$;

CREATE FUNCTION keys_guard.hard_delete(rel text, key text, confirm boolean DEFAULT false)
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$ SELECT keys_guard._hard_delete_key(keys_guard._resolve_relation(rel), key, confirm) $$;

-- One level of the preview: the rows of r that filter selects and, through
-- ON DELETE CASCADE foreign keys, those of its children.
CREATE FUNCTION keys_guard._preview(r regclass, filter text, lvl int, fk text, path oid[])
RETURNS TABLE (relation regclass, depth int, via text, rows bigint, effect text)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    n        bigint;
    child    record;
    g        record;
BEGIN
    EXECUTE format('SELECT count(*) FROM %s WHERE %s', r, filter) INTO n;
    SELECT gt.soft_delete, gt.class INTO g FROM keys_guard.guarded_tables gt WHERE gt.relation = r;
    relation := r; depth := lvl; via := fk; rows := n;
    effect := CASE WHEN lvl = 0 AND g.soft_delete AND g.class <> 'audit' THEN 'soft delete'
                   WHEN lvl = 0 AND g.class = 'audit' THEN 'refused (audit)'
                   WHEN lvl = 0 THEN 'delete'
                   WHEN g.soft_delete THEN 'soft delete (cascade)'
                   ELSE 'unchanged (not a soft-delete table)' END;
    RETURN NEXT;
    IF n = 0 OR lvl >= 16 THEN
        RETURN;
    END IF;
    FOR child IN
        SELECT c.conname, c.conrelid::regclass AS childrel,
               (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY k.ord)
                  FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS fkcols,
               (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY k.ord)
                  FROM unnest(c.confkey) WITH ORDINALITY k(attnum, ord)
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum) AS refcols
          FROM pg_catalog.pg_constraint c
         WHERE c.confrelid = r AND c.contype = 'f' AND c.confdeltype = 'c'
           AND NOT c.conrelid = ANY (path)
         ORDER BY c.conname
    LOOP
        -- Only soft-delete children are reached: the parent row stays, so an
        -- ordinary child keeps referencing it.
        IF NOT EXISTS (SELECT 1 FROM keys_guard.guarded_tables gt
                        WHERE gt.relation = child.childrel AND gt.soft_delete) OR
           NOT COALESCE(g.soft_delete, false) THEN
            EXECUTE format('SELECT count(*) FROM %s WHERE (%s) IN (SELECT %s FROM %s WHERE %s)',
                           child.childrel, child.fkcols, child.refcols, r, filter) INTO n;
            relation := child.childrel; depth := lvl + 1; via := child.conname; rows := n;
            effect := CASE WHEN COALESCE(g.soft_delete, false) THEN 'unchanged (not a soft-delete table)'
                           ELSE 'delete (cascade)' END;
            RETURN NEXT;
            CONTINUE;
        END IF;
        RETURN QUERY SELECT * FROM keys_guard._preview(child.childrel,
            format('(%s) IN (SELECT %s FROM %s WHERE %s)', child.fkcols, child.refcols, r, filter),
            lvl + 1, child.conname::text, path || child.childrel::oid);
    END LOOP;
END
$$;

-- What a DELETE of one row (by primary key) would reach: the row itself
-- and, through ON DELETE CASCADE foreign keys, the rows of child tables,
-- counted as the caller's DELETE would see them.
CREATE FUNCTION keys_guard._preview_delete(rel text, key text)
RETURNS TABLE (relation regclass, depth int, via text, rows bigint, effect text)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r       regclass := keys_guard._resolve_relation(rel);
    pkcol   name;
    pktype  text;
BEGIN
    IF key IS NULL THEN
        RAISE EXCEPTION 'key must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM keys_guard.guarded_tables g
                    WHERE g.relation = r AND g.soft_delete) THEN
        RAISE EXCEPTION 'table % is not guarded with soft delete', r
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) INTO pkcol, pktype
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = r AND i.indisprimary AND i.indnkeyatts = 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % has no single-column primary key', r
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM keys_guard._preview(r,
        format('%I = %L::%s', pkcol, key, pktype), 0, NULL, ARRAY[r::oid]);
END
$$;

CREATE FUNCTION keys_guard.preview_delete(rel text, key anyelement)
RETURNS TABLE (relation regclass, depth int, via text, rows bigint, effect text)
LANGUAGE sql VOLATILE
AS $$ SELECT * FROM keys_guard._preview_delete(rel, key::text) $$;

CREATE FUNCTION keys_guard.preview_delete(rel text, key text)
RETURNS TABLE (relation regclass, depth int, via text, rows bigint, effect text)
LANGUAGE sql VOLATILE
AS $$ SELECT * FROM keys_guard._preview_delete(rel, key) $$;

REVOKE ALL ON FUNCTION keys_guard.restore(text, anyelement), keys_guard.restore(text, text),
    keys_guard.hard_delete(text, anyelement, boolean), keys_guard.hard_delete(text, text, boolean),
    keys_guard._preview(regclass, text, int, text, oid[]), keys_guard._preview_delete(text, text),
    keys_guard.preview_delete(text, anyelement), keys_guard.preview_delete(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.hard_delete(text, anyelement, boolean),
    keys_guard.hard_delete(text, text, boolean) TO keys_guard_admin;
-- Inside a tenant context the gateway may restore and preview that
-- tenant's own rows.
GRANT EXECUTE ON FUNCTION keys_guard.restore(text, anyelement), keys_guard.restore(text, text),
    keys_guard._preview(regclass, text, int, text, oid[]), keys_guard._preview_delete(text, text),
    keys_guard.preview_delete(text, anyelement), keys_guard.preview_delete(text, text)
    TO keys_guard_admin, keys_guard_gateway;

--
-- Purge (docs/contract.md §9)
--

-- A SQL condition, on the row of r called alias, that is true when deleting
-- that row for real would fail or reach data that must stay: a child row of
-- an audit or payment table behind ON DELETE CASCADE (or SET NULL/DEFAULT on
-- an audit table), any child row behind NO ACTION/RESTRICT, and the same
-- for grandchildren reached through cascades.  The purge skips such rows.
CREATE FUNCTION keys_guard._purge_skip_predicate(r regclass, alias text, lvl int DEFAULT 0)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk       record;
    parts    text[] := '{}';
    calias   text := 'kg_c' || lvl;
    match    text;
    deeper   text;
BEGIN
    IF lvl > 8 THEN
        RETURN 'true';
    END IF;
    FOR fk IN
        SELECT c.conrelid::regclass AS child, c.confdeltype, g.class,
               (SELECT string_agg(format('%I.%I', calias, a.attname), ', ' ORDER BY k.ord)
                  FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS childcols,
               (SELECT string_agg(format('%I.%I', alias, a.attname), ', ' ORDER BY k.ord)
                  FROM unnest(c.confkey) WITH ORDINALITY k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum) AS parentcols
          FROM pg_constraint c
          LEFT JOIN keys_guard.guarded_table g ON g.relid = c.conrelid
         WHERE c.confrelid = r AND c.contype = 'f'
    LOOP
        match := format('ROW(%s) = ROW(%s)', fk.childcols, fk.parentcols);
        IF fk.confdeltype IN ('a', 'r')
           OR (fk.confdeltype = 'c' AND fk.class IN ('audit', 'payment'))
           OR (fk.confdeltype IN ('n', 'd') AND fk.class = 'audit') THEN
            parts := parts || format('EXISTS (SELECT 1 FROM ONLY %s %I WHERE %s)',
                                     fk.child, calias, match);
        ELSIF fk.confdeltype = 'c' THEN
            deeper := keys_guard._purge_skip_predicate(fk.child, calias, lvl + 1);
            IF deeper <> 'false' THEN
                parts := parts || format('EXISTS (SELECT 1 FROM ONLY %s %I WHERE %s AND (%s))',
                                         fk.child, calias, match, deeper);
            END IF;
        END IF;
    END LOOP;
    RETURN CASE WHEN cardinality(parts) = 0 THEN 'false' ELSE array_to_string(parts, ' OR ') END;
END
$$;

-- Purge now, in the caller's transaction, what the worker would purge.
CREATE FUNCTION keys_guard.purge_now(rel text DEFAULT NULL, dry_run boolean DEFAULT false)
RETURNS TABLE (relation regclass, purged bigint, skipped bigint)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    t regclass;
    r record;
BEGIN
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'dry_run must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF rel IS NOT NULL THEN
        t := keys_guard._resolve_relation(rel);
        IF NOT EXISTS (SELECT 1 FROM keys_guard.guarded_tables g
                        WHERE g.relation = t AND g.soft_delete) THEN
            RAISE EXCEPTION 'table % is not guarded with soft delete', t
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    FOR r IN SELECT g.relation FROM keys_guard.guarded_tables g
              WHERE g.soft_delete AND (t IS NULL OR g.relation = t)
              ORDER BY g.relation::text LOOP
        relation := r.relation;
        SELECT p.purged, p.skipped INTO purged, skipped
          FROM keys_guard._purge_table(r.relation,
                   pg_catalog.current_setting('keys_guard.purge_batch_size')::int,
                   0, dry_run) p;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE VIEW keys_guard.purge_status AS
    SELECT g.relation, g.class,
           CASE WHEN g.class = 'standard' THEN 'purged after grace' ELSE 'never purged' END AS policy,
           b.deleted AS rows_deleted, b.waiting AS rows_waiting,
           coalesce(s.rows_purged, 0) AS rows_purged, coalesce(s.rows_skipped, 0) AS rows_skipped,
           s.last_run, s.last_error, s.last_error_at
      FROM keys_guard.guarded_tables g
      CROSS JOIN LATERAL keys_guard._backlog(g.relation) b
      LEFT JOIN keys_guard.purge_stats s ON s.relid = g.relation
     WHERE g.soft_delete;

REVOKE ALL ON FUNCTION keys_guard._purge_skip_predicate(regclass, text, int),
    keys_guard.purge_now(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.purge_now(text, boolean) TO keys_guard_admin;
REVOKE ALL ON keys_guard.purge_status FROM PUBLIC;
GRANT SELECT ON keys_guard.purge_status TO keys_guard_admin;

--
-- Tenant lifecycle (docs/contract.md §4, §9): a deleted tenant is denied at
-- once and can be restored within its grace; after it, the worker drops
-- its schema.
--

-- Mark a tenant deleted (or report what that would reach, with dry_run):
-- one row per table of its schema with its row count.
CREATE FUNCTION keys_guard.delete_tenant(id text, dry_run boolean DEFAULT false,
                                         grace interval DEFAULT NULL)
RETURNS TABLE (tenant text, status text, hard_delete_at timestamptz,
               relation regclass, rows bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    t          keys_guard.tenant;
    min_grace  interval := keys_guard._min_grace();
    deadline   timestamptz;
    g          record;
BEGIN
    IF id IS NULL OR dry_run IS NULL THEN
        RAISE EXCEPTION 'id and dry_run must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO t FROM keys_guard.tenant WHERE tenant.id = id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant "%" does not exist', left(id, 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF t.status = 'purged' THEN
        -- Idempotent: deleting a tenant that is gone changes nothing.
        RAISE NOTICE 'tenant "%" is already deleted and its data purged', id;
        tenant := id; status := t.status; hard_delete_at := t.hard_delete_at;
        relation := NULL; rows := NULL;
        RETURN NEXT;
        RETURN;
    END IF;
    grace := coalesce(grace, keys_guard._default_grace());
    IF grace < interval '0' THEN
        RAISE EXCEPTION 'grace must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF grace < min_grace THEN
        RAISE EXCEPTION 'grace % is below keys_guard.min_grace', grace
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('keys_guard.min_grace is %s.', min_grace);
    END IF;

    IF t.status = 'deleted' THEN
        RAISE NOTICE 'tenant "%" is already deleted', id;
        deadline := t.hard_delete_at;
    ELSE
        deadline := now() + grace;
    END IF;

    IF NOT dry_run AND t.status = 'active' THEN
        UPDATE keys_guard.tenant SET status = 'deleted', deleted_at = now(),
               hard_delete_at = deadline
         WHERE tenant.id = id;
        PERFORM keys_guard._audit('delete_tenant', t.schema_name,
                                  jsonb_build_object('tenant', id, 'hard_delete_at', deadline));
        t.status := 'deleted';
    END IF;

    tenant := id;
    status := CASE WHEN dry_run AND t.status = 'active' THEN 'would be deleted' ELSE t.status END;
    hard_delete_at := deadline;
    FOR g IN SELECT c.oid::regclass AS rel, gt.class
               FROM pg_class c
               LEFT JOIN keys_guard.guarded_table gt ON gt.relid = c.oid
              WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = t.schema_name)
                AND c.relkind IN ('r', 'p')
              ORDER BY c.relname LOOP
        relation := g.rel;
        SELECT b.deleted + b.live INTO rows FROM keys_guard._count_rows(g.rel) b;
        RETURN NEXT;
    END LOOP;
    IF NOT FOUND THEN
        relation := NULL; rows := NULL;
        RETURN NEXT;
    END IF;
END
$$;

-- Make a deleted tenant active again, within its grace.
CREATE FUNCTION keys_guard.restore_tenant(id text)
RETURNS keys_guard.tenants
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    t       keys_guard.tenant;
    result  keys_guard.tenants;
BEGIN
    IF id IS NULL THEN
        RAISE EXCEPTION 'id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO t FROM keys_guard.tenant WHERE tenant.id = id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant "%" does not exist', left(id, 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF t.status = 'active' THEN
        RAISE NOTICE 'tenant "%" is not deleted, skipping', id;
    ELSIF t.status = 'purged' OR t.hard_delete_at <= now() THEN
        RAISE EXCEPTION 'grace period has expired'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Tenant "%s" could be restored until %s.', id, t.hard_delete_at);
    ELSE
        UPDATE keys_guard.tenant SET status = 'active', deleted_at = NULL, hard_delete_at = NULL
         WHERE tenant.id = id;
        PERFORM keys_guard._audit('restore_tenant', t.schema_name, jsonb_build_object('tenant', id));
    END IF;
    SELECT * INTO result FROM keys_guard.tenants WHERE tenants.id = id;
    RETURN result;
END
$$;

-- Run by the worker in keys_guard's own mode: drop one tenant whose grace
-- has passed.  Its audit and payment tables are kept, moved to schema
-- keys_guard_archive and renamed <tenant id>__<table>.
CREATE FUNCTION keys_guard._drop_expired_tenant(id text)
RETURNS int
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    t      keys_guard.tenant;
    g      record;
    moved  int := 0;
BEGIN
    SELECT * INTO t FROM keys_guard.tenant WHERE tenant.id = id FOR UPDATE SKIP LOCKED;
    IF NOT FOUND OR t.status <> 'deleted' OR t.hard_delete_at > now() THEN
        RETURN 0;
    END IF;
    FOR g IN SELECT gt.relid, c.relname
               FROM keys_guard.guarded_table gt JOIN pg_class c ON c.oid = gt.relid
              WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = t.schema_name)
                AND gt.class IN ('audit', 'payment') LOOP
        CREATE SCHEMA IF NOT EXISTS keys_guard_archive;
        EXECUTE format('ALTER TABLE %s RENAME TO %I', g.relid::regclass,
                       left(id || '__' || g.relname, 63));
        EXECUTE format('ALTER TABLE %s SET SCHEMA keys_guard_archive', g.relid::regclass);
        UPDATE keys_guard.guarded_table SET tenant_id = NULL WHERE relid = g.relid;
        moved := moved + 1;
    END LOOP;
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', t.schema_name);
    UPDATE keys_guard.tenant SET status = 'purged' WHERE tenant.id = id;
    PERFORM keys_guard._audit('drop_tenant', t.schema_name,
                              jsonb_build_object('tenant', id, 'archived_tables', moved));
    RETURN 1;
END
$$;

REVOKE ALL ON FUNCTION keys_guard.delete_tenant(text, boolean, interval),
    keys_guard.restore_tenant(text), keys_guard._drop_expired_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.delete_tenant(text, boolean, interval),
    keys_guard.restore_tenant(text) TO keys_guard_admin;

--
-- Control plane (docs/contract.md §11)
--

-- snapshot(): the governance state as one jsonb document.
CREATE FUNCTION keys_guard.snapshot()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = iso_8601
AS $$
    SELECT jsonb_build_object(
        'version', (SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                      FROM keys_guard.governance_version),
        'extension_version', (SELECT extversion FROM pg_catalog.pg_extension
                               WHERE extname = 'keys_guard'),
        'tenants', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                    'id', t.id, 'name', t.name, 'schema', t.schema_name,
                                    'status', t.status, 'created_at', t.created_at,
                                    'deleted_at', t.deleted_at,
                                    'hard_delete_at', t.hard_delete_at) ORDER BY t.id)
                               FROM keys_guard.tenant t), '[]'),
        'guarded_tables', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                           'relation', g.relid::text, 'tenant_id', g.tenant_id,
                                           'tenant_column', g.tenant_column,
                                           'soft_delete', g.soft_delete, 'grace', g.grace,
                                           'class', g.class) ORDER BY g.relid::text)
                                      FROM keys_guard.guarded_table g), '[]'),
        -- Server-wide settings only; the per-session context is not state.
        'settings', (SELECT jsonb_object_agg(s.name, s.setting || coalesce(s.unit, '') ORDER BY s.name)
                       FROM pg_catalog.pg_settings s
                      WHERE s.name LIKE 'keys\_guard.%'
                        AND s.name NOT IN ('keys_guard.context', 'keys_guard.tenant',
                                           'keys_guard.actor', 'keys_guard.request_id',
                                           'keys_guard.admin_reason', 'keys_guard.bypass',
                                           'keys_guard.include_deleted')))
$$;

-- Drift report.  One row per problem, each with the statement that
-- repairs it:
--   incomplete_guard         a guarded table lacks a piece of its guard
--                            (row security, a policy, a trigger or its
--                            ENABLE ALWAYS state, a soft-delete column, the
--                            purge index, the cascade trigger)
--   unguarded_table          a table in a tenant schema that is not guarded
--   unindexed_tenant_column  no index of a pooled table starts with its
--                            tenant column
--   missing_table            the registry names a table that no longer exists
--   missing_tenant_schema    a tenant that is not purged has no schema
--   extension_drift          keys_guard's own triggers or event triggers
--                            are missing or not enabled ALWAYS
-- Pieces that one statement restores (ENABLE ALWAYS TRIGGER, FORCE ROW LEVEL
-- SECURITY, CREATE INDEX) get their own row and statement; the others of a
-- table are reported together, repaired by releasing and protecting the
-- table again with its registered options in one DO block.  A fix is NULL
-- when no keys_guard function can repair the problem.
CREATE FUNCTION keys_guard.doctor()
RETURNS TABLE (problem text, relation regclass, detail text, fix text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
WITH g AS (
    SELECT gt.relid, gt.tenant_id, gt.tenant_column, gt.soft_delete, gt.grace,
           gt.class, gt.created_policy,
           c.oid IS NOT NULL AS present, c.relname, n.nspname,
           c.relrowsecurity, c.relforcerowsecurity,
           CASE WHEN c.oid IS NOT NULL THEN pg_catalog.format('%I.%I', n.nspname, c.relname) END AS qname,
           CASE WHEN gt.tenant_column IS NOT NULL THEN 'pooled'
                WHEN gt.tenant_id IS NOT NULL THEN 'tenant_schema'
                ELSE 'archived' END AS kind
      FROM keys_guard.guarded_table gt
      LEFT JOIN pg_catalog.pg_class c ON c.oid = gt.relid
      LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
),
live AS (
    SELECT * FROM g WHERE present
),
-- What _apply_guard / _sync_guard / _sync_cascade_trigger create.
want_policy AS (
    SELECT g.relid, p.name, p.permissive, p.expr
      FROM live g
     CROSS JOIN LATERAL (VALUES
            ('keys_guard_fail_closed'::name, false, 'keys_guard._guard_active()', true),
            ('keys_guard_base'::name, true, 'true', g.created_policy))
            AS p(name, permissive, expr, wanted)
     WHERE p.wanted
),
want_trigger AS (
    SELECT g.relid, t.name, t.type, pg_catalog.to_regprocedure(t.func) AS func, t.arg
      FROM live g
     CROSS JOIN LATERAL (VALUES
            -- tgtype bits: 1 row, 2 before, 4 insert, 8 delete, 16 update, 32 truncate
            ('keys_guard_tenant'::name, 23, 'keys_guard._tenant_row_guard()',
             g.tenant_column, g.tenant_column IS NOT NULL),
            ('keys_guard_refuse_delete'::name, 11, 'keys_guard._refuse_delete()',
             NULL, g.soft_delete),
            ('keys_guard_refuse_truncate'::name, 34, 'keys_guard._refuse_delete()',
             NULL, g.soft_delete),
            ('keys_guard_append_only'::name, 27, 'keys_guard._append_only()',
             NULL, g.class = 'audit'),
            ('keys_guard_append_only_truncate'::name, 34, 'keys_guard._append_only()',
             NULL, g.class = 'audit'),
            ('keys_guard_cascade'::name, 17, 'keys_guard._soft_delete_cascade()', NULL,
             g.soft_delete
             AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                           JOIN keys_guard.guarded_table ch
                             ON ch.relid = k.conrelid AND ch.soft_delete
                          WHERE k.confrelid = g.relid AND k.contype = 'f'
                            AND k.confdeltype = 'c')))
            AS t(name, type, func, arg, wanted)
     WHERE t.wanted
),
want_column AS (
    SELECT g.relid, w.name, w.type
      FROM live g
     CROSS JOIN LATERAL (VALUES ('deleted_at'::name, 'timestamptz'::regtype),
                                ('hard_delete_at'::name, 'timestamptz'::regtype),
                                ('deleted_by'::name, 'text'::regtype),
                                ('delete_request_id'::name, 'text'::regtype)) AS w(name, type)
     WHERE g.soft_delete
),
-- Each missing piece: fix_kind 'own' (its own statement in fix), 'reguard'
-- (release and protect again; pre_fix runs in between) or 'none'.
piece AS (
    SELECT g.relid, 'row level security is disabled' AS detail, 'own' AS fix_kind,
           pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', g.qname) AS fix,
           NULL::text AS pre_fix
      FROM live g WHERE NOT g.relrowsecurity
    UNION ALL
    SELECT g.relid, 'row level security is not forced, so the table owner bypasses it', 'own',
           pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', g.qname), NULL
      FROM live g WHERE NOT g.relforcerowsecurity
    UNION ALL
    SELECT w.relid, d.detail, 'reguard', NULL, NULL
      FROM want_policy w
      LEFT JOIN pg_catalog.pg_policy p ON p.polrelid = w.relid AND p.polname = w.name
     CROSS JOIN LATERAL (
            SELECT pg_catalog.format('policy %I is missing', w.name) AS detail
             WHERE p.oid IS NULL
            UNION ALL
            SELECT pg_catalog.format('policy %I is %s', w.name,
                       CASE WHEN p.polpermissive THEN 'permissive, not restrictive'
                            ELSE 'restrictive, not permissive' END)
             WHERE p.polpermissive <> w.permissive
            UNION ALL
            SELECT pg_catalog.format('policy %I applies to %s commands only', w.name,
                       CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                                     WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE'
                                     ELSE p.polcmd::text END)
             WHERE p.polcmd <> '*'
            UNION ALL
            SELECT pg_catalog.format('policy %I applies to some roles only', w.name)
             WHERE p.polroles <> '{0}'::oid[]
            UNION ALL
            SELECT pg_catalog.format('policy %I has USING (%s), expected USING (%s)', w.name,
                       coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), ''), w.expr)
             WHERE p.oid IS NOT NULL
               AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) IS DISTINCT FROM w.expr
            UNION ALL
            SELECT pg_catalog.format('policy %I has WITH CHECK (%s), expected WITH CHECK (%s)', w.name,
                       coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), ''), w.expr)
             WHERE p.oid IS NOT NULL
               AND pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) IS DISTINCT FROM w.expr) AS d
    UNION ALL
    SELECT w.relid, pg_catalog.format('trigger %I is missing', w.name), 'reguard', NULL, NULL
      FROM want_trigger w
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                        WHERE t.tgrelid = w.relid AND t.tgname = w.name)
    UNION ALL
    SELECT w.relid, pg_catalog.format('trigger %I does not have the definition keys_guard gives it', w.name),
           'reguard', NULL, NULL
      FROM want_trigger w
      JOIN pg_catalog.pg_trigger t ON t.tgrelid = w.relid AND t.tgname = w.name
     WHERE t.tgtype <> w.type
        OR t.tgfoid IS DISTINCT FROM w.func::oid
        OR t.tgargs IS DISTINCT FROM
           CASE WHEN w.arg IS NULL THEN '\x'::bytea
                ELSE pg_catalog.convert_to(w.arg, pg_catalog.getdatabaseencoding()) || '\x00'::bytea END
    UNION ALL
    SELECT w.relid,
           pg_catalog.format('trigger %I is %s', w.name,
               CASE t.tgenabled WHEN 'D' THEN 'disabled'
                                WHEN 'O' THEN 'enabled on origin only, not ALWAYS'
                                WHEN 'R' THEN 'enabled on replicas only'
                                ELSE 'not enabled ALWAYS' END),
           'own', pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', g.qname, w.name), NULL
      FROM want_trigger w
      JOIN live g ON g.relid = w.relid
      JOIN pg_catalog.pg_trigger t ON t.tgrelid = w.relid AND t.tgname = w.name
     WHERE t.tgenabled <> 'A'
    UNION ALL
    SELECT w.relid,
           CASE WHEN a.attnum IS NULL THEN pg_catalog.format('column %I is missing', w.name)
                ELSE pg_catalog.format('column %I has type %s, expected %s', w.name,
                                       a.atttypid::regtype, w.type) END,
           'reguard', NULL,
           CASE WHEN a.attnum IS NOT NULL
                THEN pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I TYPE %s USING %I::%s;',
                                       g.qname, w.name, w.type, w.name, w.type) END
      FROM want_column w
      JOIN live g ON g.relid = w.relid
      LEFT JOIN pg_catalog.pg_attribute a
        ON a.attrelid = w.relid AND a.attname = w.name AND a.attnum > 0 AND NOT a.attisdropped
     WHERE a.attnum IS NULL OR a.atttypid <> w.type
    UNION ALL
    -- The purge index, found as _sync_guard finds it.
    SELECT g.relid,
           CASE WHEN ix.indexrelid IS NULL
                THEN 'purge index on (hard_delete_at) WHERE deleted_at IS NOT NULL is missing'
                ELSE pg_catalog.format('purge index %s is not valid', ix.indexrelid::regclass) END,
           'own',
           CASE WHEN ix.indexrelid IS NULL
                THEN pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON %s (hard_delete_at) WHERE deleted_at IS NOT NULL',
                                       keys_guard._purge_index_name(g.relid), g.qname)
                ELSE pg_catalog.format('REINDEX INDEX %s', ix.indexrelid::regclass) END,
           NULL
      FROM live g
      LEFT JOIN pg_catalog.pg_index ix ON ix.indexrelid = keys_guard._purge_index(g.relid)
     WHERE g.soft_delete AND (ix.indexrelid IS NULL OR NOT ix.indisvalid)
    UNION ALL
    -- A pooled table's tenant column: protect_table() accepts text, uuid
    -- and bigint only, so no statement is offered for these.
    SELECT g.relid,
           CASE WHEN a.attnum IS NULL THEN pg_catalog.format('tenant column %I is missing', g.tenant_column)
                ELSE pg_catalog.format('tenant column %I has type %s, expected text, uuid or bigint',
                                       g.tenant_column, a.atttypid::regtype) END,
           'none', NULL, NULL
      FROM live g
      LEFT JOIN pg_catalog.pg_attribute a
        ON a.attrelid = g.relid AND a.attname = g.tenant_column AND a.attnum > 0 AND NOT a.attisdropped
     WHERE g.tenant_column IS NOT NULL
       AND (a.attnum IS NULL OR a.atttypid NOT IN ('text'::regtype, 'uuid'::regtype, 'bigint'::regtype))
),
-- The pieces a re-guard restores, one row per table.
reguard AS (
    SELECT p.relid, pg_catalog.string_agg(p.detail, '; ' ORDER BY p.detail COLLATE "C") AS detail,
           coalesce(pg_catalog.string_agg(p.pre_fix, ' ' ORDER BY p.detail COLLATE "C"), '') AS pre_fix
      FROM piece p WHERE p.fix_kind = 'reguard'
     GROUP BY p.relid
),
reguard_fix AS (
    SELECT r.relid,
           CASE WHEN g.kind = 'archived' THEN r.detail || ' (an archived table cannot be protected again)'
                WHEN EXISTS (SELECT 1 FROM piece n WHERE n.relid = r.relid AND n.fix_kind = 'none')
                THEN r.detail || ' (protect_table() would refuse the table as it is)'
                ELSE r.detail END AS detail,
           CASE WHEN g.kind <> 'archived'
                 AND NOT EXISTS (SELECT 1 FROM piece n WHERE n.relid = r.relid AND n.fix_kind = 'none') THEN
               pg_catalog.format('PERFORM keys_guard.release_table(%L); %s'
                                 'PERFORM keys_guard.protect_table(%L, tenant_column => %L, '
                                 'soft_delete => %s, grace => %L, class => %L);',
                                 g.qname, r.pre_fix || CASE WHEN r.pre_fix <> '' THEN ' ' ELSE '' END,
                                 g.qname, g.tenant_column, g.soft_delete::text, g.grace, g.class) END AS body
      FROM reguard r JOIN live g ON g.relid = r.relid
),
report AS (
    SELECT 'incomplete_guard' AS problem, p.relid AS relation, p.detail, p.fix
      FROM piece p WHERE p.fix_kind IN ('own', 'none')
    UNION ALL
    SELECT 'incomplete_guard', r.relid, r.detail,
           CASE WHEN pg_catalog.strpos(r.body, '$fix$') = 0
                THEN 'DO $fix$ BEGIN ' || r.body || ' END $fix$'
                ELSE 'DO ' || pg_catalog.quote_literal('BEGIN ' || r.body || ' END') END
      FROM reguard_fix r
    UNION ALL
    SELECT 'missing_table', g.relid,
           pg_catalog.format('the registry guards relation %s, which no longer exists', g.relid::oid),
           NULL
      FROM g WHERE NOT g.present
    UNION ALL
    SELECT 'unguarded_table', c.oid::regclass,
           pg_catalog.format('table in the schema of tenant "%s" is not guarded', t.id),
           pg_catalog.format('SELECT keys_guard.protect_table(%L)',
                             pg_catalog.format('%I.%I', n.nspname, c.relname))
      FROM keys_guard.tenant t
      JOIN pg_catalog.pg_namespace n ON n.nspname = t.schema_name
      JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relkind = 'r'
     WHERE t.status <> 'purged'
       AND NOT EXISTS (SELECT 1 FROM keys_guard.guarded_table gt WHERE gt.relid = c.oid)
    UNION ALL
    SELECT 'unindexed_tenant_column', g.relid,
           pg_catalog.format('no index starts with tenant column %I', g.tenant_column),
           pg_catalog.format('CREATE INDEX ON %s (%I)', g.qname, g.tenant_column)
      FROM live g
      JOIN pg_catalog.pg_attribute a
        ON a.attrelid = g.relid AND a.attname = g.tenant_column
       AND a.attnum > 0 AND NOT a.attisdropped
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                        WHERE i.indrelid = g.relid AND i.indisvalid
                          AND i.indnkeyatts > 0 AND i.indkey[0] = a.attnum)
    UNION ALL
    SELECT 'missing_tenant_schema', NULL::regclass,
           pg_catalog.format('schema %I of tenant "%s" (%s) does not exist', t.schema_name, t.id, t.status),
           pg_catalog.format('CREATE SCHEMA %I AUTHORIZATION keys_guard_admin; '
                             'GRANT USAGE ON SCHEMA %I TO keys_guard_gateway',
                             t.schema_name, t.schema_name)
      FROM keys_guard.tenant t
     WHERE t.status <> 'purged'
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = t.schema_name)
    UNION ALL
    -- keys_guard's own tables: the registry's triggers and the append-only
    -- audit log.
    -- Its tables change only in extension scripts, so there is no statement
    -- to offer: reinstalling keys_guard repairs them.
    SELECT 'extension_drift', w.rel,
           CASE WHEN t.oid IS NULL THEN pg_catalog.format('trigger %I is missing', w.name)
                ELSE pg_catalog.format('trigger %I is not enabled ALWAYS', w.name) END,
           NULL
      FROM (VALUES ('keys_guard.tenant', 'keys_guard_registry_changed'),
                   ('keys_guard.tenant', 'keys_guard_registry_guard'),
                   ('keys_guard.tenant', 'keys_guard_registry_guard_truncate'),
                   ('keys_guard.tenant', 'keys_guard_version'),
                   ('keys_guard.guarded_table', 'keys_guard_registry_changed'),
                   ('keys_guard.guarded_table', 'keys_guard_registry_guard'),
                   ('keys_guard.guarded_table', 'keys_guard_registry_guard_truncate'),
                   ('keys_guard.guarded_table', 'keys_guard_version'),
                   ('keys_guard.purge_stats', 'keys_guard_registry_guard'),
                   ('keys_guard.purge_stats', 'keys_guard_registry_guard_truncate'),
                   ('keys_guard.audit_log', 'keys_guard_append_only'),
                   ('keys_guard.audit_log', 'keys_guard_append_only_truncate'))
           AS v(relname, name)
     CROSS JOIN LATERAL (SELECT pg_catalog.to_regclass(v.relname) AS rel, v.name::name AS name) AS w
      LEFT JOIN pg_catalog.pg_trigger t ON t.tgrelid = w.rel AND t.tgname = w.name
     WHERE w.rel IS NOT NULL AND (t.oid IS NULL OR t.tgenabled <> 'A')
    UNION ALL
    SELECT 'extension_drift', NULL::regclass,
           CASE WHEN e.oid IS NULL THEN pg_catalog.format('event trigger %I is missing', w.name)
                ELSE pg_catalog.format('event trigger %I is not enabled ALWAYS', w.name) END,
           CASE WHEN e.oid IS NOT NULL
                THEN pg_catalog.format('ALTER EVENT TRIGGER %I ENABLE ALWAYS', w.name) END
      FROM (VALUES ('keys_guard_ddl_command_end'::name), ('keys_guard_sql_drop'::name)) AS w(name)
      LEFT JOIN pg_catalog.pg_event_trigger e ON e.evtname = w.name
     WHERE e.oid IS NULL OR e.evtenabled <> 'A'
)
SELECT r.problem, r.relation, r.detail, r.fix
  FROM report r
  LEFT JOIN pg_catalog.pg_class c ON c.oid = r.relation
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 ORDER BY r.problem COLLATE "C", n.nspname, c.relname, r.detail COLLATE "C"
$$;

-- Runbook catalog: every public keys_guard function with its safety class,
-- side effects, preconditions and the argument that makes a call harmless
-- (dry_run) or deliberate (confirm).  The list is curated here and joined
-- to pg_proc, so a function dropped or renamed disappears from the view;
-- the regression suite checks that every public function has its row.
CREATE VIEW keys_guard.operations AS
    SELECT p.oid::regprocedure AS function, p.proname::text AS name,
           l.safety_class, l.side_effects, l.preconditions, l.guard_argument
      FROM (VALUES
        ('keys_guard.set_context(text, text, text, boolean)', 'SAFE',
         'Changes only session state: sets the tenant, actor and request id of the transaction (or session) and puts the tenant''s schema first on search_path.',
         'Member of keys_guard_gateway or keys_guard_admin; the tenant exists and is active; actor is not empty.',
         NULL),
        ('keys_guard.admin_context(text, text, text, boolean)', 'SAFE',
         'Changes only session state: an administrative context that sees every tenant. Writes an audit_log record.',
         'Member of keys_guard_admin; actor and reason are not empty.',
         NULL),
        ('keys_guard.clear_context()', 'SAFE',
         'Changes only session state: clears the tenant, actor and request id.',
         'None.', NULL),
        ('keys_guard.current_tenant()', 'SAFE', 'None: reads the session context.', 'None.', NULL),
        ('keys_guard.current_actor()', 'SAFE', 'None: reads the session context.', 'None.', NULL),
        ('keys_guard.current_request_id()', 'SAFE', 'None: reads the session context.', 'None.', NULL),
        ('keys_guard.create_tenant(text, text, text)', 'REVERSIBLE',
         'Registers a tenant and creates its schema tenant_<id> (from a template when one is given). Audited. Undone by delete_tenant().',
         'Member of keys_guard_admin; the id is valid and either new or the same tenant (then nothing changes); no schema of that name exists.',
         NULL),
        ('keys_guard.protect_table(text, name, boolean, interval, text)', 'REVERSIBLE',
         'Enables and forces row security, adds keys_guard''s policies and triggers, the soft-delete columns and the purge index, and registers the table. Audited. Undone by release_table().',
         'Member of keys_guard_admin; an ordinary table outside keys_guard; a pooled table needs a text, uuid or bigint tenant column; grace at least keys_guard.min_grace; a guard is never weakened.',
         NULL),
        ('keys_guard.release_table(text, boolean)', 'REVERSIBLE',
         'Removes keys_guard''s policies, triggers and purge index from a table and forgets it; columns and data stay. Audited. Undone by protect_table().',
         'Member of keys_guard_admin. dry_run => true reports and changes nothing.',
         'dry_run'),
        ('keys_guard.release_all(boolean, boolean)', 'REVERSIBLE',
         'Releases every guarded table and forgets every tenant (schemas and data stay), so that DROP EXTENSION keys_guard works. Audited. Undone by create_tenant() and protect_table().',
         'Superuser (not granted to keys_guard_admin); confirm => true, or dry_run => true to only list what it would release (without either it raises an error).',
         'dry_run'),
        ('keys_guard.restore(text, anyelement)', 'REVERSIBLE',
         'Makes one soft-deleted row live again. Audited. Undone by a DELETE of the row.',
         'Member of keys_guard_admin; the row is soft-deleted and within its grace; no unique index would be violated.',
         NULL),
        ('keys_guard.restore(text, text)', 'REVERSIBLE',
         'Makes one soft-deleted row live again. Audited. Undone by a DELETE of the row.',
         'Member of keys_guard_admin; the row is soft-deleted and within its grace; no unique index would be violated.',
         NULL),
        ('keys_guard.restore_request(text)', 'REVERSIBLE',
         'Makes every row one request soft-deleted live again, across tables. Audited.',
         'Member of keys_guard_admin; every such row is within its grace (otherwise nothing is restored).',
         NULL),
        ('keys_guard.hard_delete(text, anyelement, boolean)', 'IRREVERSIBLE',
         'Physically deletes one soft-deleted row. Audited. Without confirm => true it only reports what it would delete.',
         'Member of keys_guard_admin; the row is soft-deleted and its grace has expired; not an audit or payment table; confirm => true.',
         'confirm'),
        ('keys_guard.hard_delete(text, text, boolean)', 'IRREVERSIBLE',
         'Physically deletes one soft-deleted row. Audited. Without confirm => true it only reports what it would delete.',
         'Member of keys_guard_admin; the row is soft-deleted and its grace has expired; not an audit or payment table; confirm => true.',
         'confirm'),
        ('keys_guard.preview_delete(text, anyelement)', 'SAFE',
         'None: counts the rows a DELETE of one row would reach.',
         'Member of keys_guard_admin; a context, as the DELETE it previews would need.',
         NULL),
        ('keys_guard.preview_delete(text, text)', 'SAFE',
         'None: counts the rows a DELETE of one row would reach.',
         'Member of keys_guard_admin; a context, as the DELETE it previews would need.',
         NULL),
        ('keys_guard.purge_now(text, boolean)', 'IRREVERSIBLE',
         'Physically deletes soft-deleted rows whose grace has expired, in the caller''s transaction; updates purge_stats. Audited. Audit and payment tables are never purged.',
         'Member of keys_guard_admin. dry_run => true counts and changes nothing.',
         'dry_run'),
        ('keys_guard.delete_tenant(text, boolean, interval)', 'REVERSIBLE',
         'Marks a tenant deleted: every access to it is denied. After its grace the worker drops its schema (audit and payment tables are archived), which cannot be undone. Audited.',
         'Member of keys_guard_admin; grace at least keys_guard.min_grace. Undone by restore_tenant() within the grace. dry_run => true reports and changes nothing.',
         'dry_run'),
        ('keys_guard.restore_tenant(text)', 'REVERSIBLE',
         'Makes a deleted tenant active again. Audited.',
         'Member of keys_guard_admin; the tenant''s grace has not expired.',
         NULL),
        ('keys_guard.snapshot()', 'SAFE',
         'None: reads the registry and settings.',
         'Member of keys_guard_admin.', NULL),
        ('keys_guard.doctor()', 'SAFE',
         'None: reads the catalogs. The fixes it reports are not executed.',
         'Member of keys_guard_admin.', NULL)
      ) AS l(signature, safety_class, side_effects, preconditions, guard_argument)
      JOIN pg_catalog.pg_proc p ON p.oid = pg_catalog.to_regprocedure(l.signature)
     ORDER BY p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) COLLATE "C";

REVOKE ALL ON FUNCTION keys_guard.snapshot(), keys_guard.doctor() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.snapshot(), keys_guard.doctor() TO keys_guard_admin;
REVOKE ALL ON keys_guard.operations FROM PUBLIC;
GRANT SELECT ON keys_guard.operations TO keys_guard_admin;

--
-- Event triggers: guard every table created in a tenant schema, keep DDL
-- under a tenant context inside that tenant's schema, and refuse to drop a
-- guarded table or a column a guard relies on (docs/contract.md §8, §11;
-- src/utility.c refuses the direct statements, these catch every other
-- way).
--

-- The schema a DDL command acted in.  Policies, triggers, rules and
-- constraints have no schema of their own; theirs is their table's, the
-- first of their address names.  A schema is its own.
CREATE FUNCTION keys_guard._ddl_schema(object_type text, schema_name text,
                                       address_names text[])
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN schema_name IS NOT NULL THEN schema_name
        WHEN object_type = 'schema' THEN address_names[1]
        WHEN object_type IN ('policy', 'trigger', 'rule', 'table constraint')
            THEN address_names[1]
    END
$$;

CREATE FUNCTION keys_guard._on_ddl_command_end()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cmd     record;
    tid     text;
    g       keys_guard.guarded_table;
BEGIN
    FOR cmd IN SELECT * FROM pg_catalog.pg_event_trigger_ddl_commands() LOOP
        PERFORM keys_guard._deny_ddl(keys_guard._ddl_schema(cmd.object_type, cmd.schema_name,
                                         (pg_catalog.pg_identify_object_as_address(cmd.classid, cmd.objid, cmd.objsubid)).object_names),
                                     cmd.object_identity);
        IF cmd.object_type = 'table' AND cmd.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO') THEN
            SELECT t.id INTO tid FROM keys_guard.tenant t WHERE t.schema_name = cmd.schema_name;
            IF tid IS NOT NULL
               AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = cmd.objid) = 'r'
               AND NOT EXISTS (SELECT 1 FROM keys_guard.guarded_table WHERE relid = cmd.objid) THEN
                PERFORM keys_guard._apply_guard(cmd.objid::regclass, tid, NULL, true,
                                                keys_guard._default_grace(), 'standard');
            END IF;
        END IF;
        -- A new foreign key may make a guarded parent need its cascade trigger.
        IF cmd.object_type = 'table' AND cmd.command_tag IN ('CREATE TABLE', 'ALTER TABLE')
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid = cmd.objid) THEN
            PERFORM keys_guard._sync_cascades_of(cmd.objid::regclass);
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION keys_guard._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    obj record;
BEGIN
    FOR obj IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() LOOP
        IF obj.original THEN
            PERFORM keys_guard._deny_ddl(keys_guard._ddl_schema(obj.object_type, obj.schema_name,
                                                                obj.address_names),
                                         obj.object_identity);
        END IF;
    END LOOP;
    -- A guarded table is never dropped behind keys_guard's back, also not by
    -- DROP SCHEMA ... CASCADE or DROP OWNED.
    IF keys_guard._in_internal_operation() THEN
        -- keys_guard's own tenant purge: forget what it dropped.
        DELETE FROM keys_guard.guarded_table g
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = g.relid);
        DELETE FROM keys_guard.purge_stats p
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = p.relid);
        RETURN;
    END IF;
    FOR obj IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects()
                WHERE object_type = 'table'
                  AND objid IN (SELECT relid FROM keys_guard.guarded_table) LOOP
        RAISE EXCEPTION 'cannot drop guarded table %', obj.object_identity
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Release it first with keys_guard.release_table().';
    END LOOP;
    -- Nor a column of an audit table, nor a column a guard relies on,
    -- however it goes: ALTER TABLE on a parent, DROP TYPE ... CASCADE, DROP
    -- FUNCTION ... CASCADE of a generated column's function.
    FOR obj IN SELECT d.object_identity, g.class
                 FROM pg_catalog.pg_event_trigger_dropped_objects() d
                 JOIN keys_guard.guarded_table g ON g.relid = d.objid
                WHERE d.object_type = 'table column'
                  AND (g.class = 'audit'
                       OR d.address_names[3] = g.tenant_column
                       OR (g.soft_delete AND d.address_names[3] IN
                           ('deleted_at', 'hard_delete_at', 'deleted_by', 'delete_request_id'))) LOOP
        IF obj.class = 'audit' THEN
            RAISE EXCEPTION 'cannot drop column % of an audit table', obj.object_identity
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'An audit table keeps every value it holds.';
        END IF;
        RAISE EXCEPTION 'cannot drop column % of a guarded table', obj.object_identity
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'keys_guard''s guard of the table relies on the column.',
                  HINT = 'Release the table first with keys_guard.release_table().';
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION keys_guard._ddl_schema(text, text, text[]),
    keys_guard._on_ddl_command_end(), keys_guard._on_sql_drop() FROM PUBLIC;

CREATE EVENT TRIGGER keys_guard_ddl_command_end ON ddl_command_end
    EXECUTE FUNCTION keys_guard._on_ddl_command_end();
CREATE EVENT TRIGGER keys_guard_sql_drop ON sql_drop
    EXECUTE FUNCTION keys_guard._on_sql_drop();
ALTER EVENT TRIGGER keys_guard_ddl_command_end ENABLE ALWAYS;
ALTER EVENT TRIGGER keys_guard_sql_drop ENABLE ALWAYS;

-- Let the background worker of this database start now.
SELECT keys_guard._notify_worker();
