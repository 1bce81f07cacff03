/* keys_guard--1.0.sql: the 1.0 install script */

\echo Use "CREATE EXTENSION keys_guard" to load this file. \quit

-- Refuse to install unless the library was loaded by shared_preload_libraries:
-- without its hooks nothing below would be enforced.
CREATE FUNCTION keys_guard._assert_preloaded()
RETURNS void
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'keys_guard_assert_preloaded';
SELECT keys_guard._assert_preloaded();

--
-- Roles.  They are cluster-wide, so they outlive DROP EXTENSION and are
-- created only when missing.
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
-- Registry.  Written only by keys_guard's functions; a trigger on each table
-- invalidates the per-backend cache the hooks read.
--
CREATE TABLE keys_guard.tenant (
    id              text PRIMARY KEY
                    CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,47}$'),
    name            text NOT NULL,
    schema_name     name NOT NULL UNIQUE,
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'deleted', 'purged')),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    deleted_at      timestamptz,
    hard_delete_at  timestamptz
);

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

CREATE FUNCTION keys_guard._registry_changed()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'keys_guard_registry_changed';

CREATE TRIGGER keys_guard_registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keys_guard.tenant
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_changed();
CREATE TRIGGER keys_guard_registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keys_guard.guarded_table
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_changed();
ALTER TABLE keys_guard.tenant ENABLE ALWAYS TRIGGER keys_guard_registry_changed;
ALTER TABLE keys_guard.guarded_table ENABLE ALWAYS TRIGGER keys_guard_registry_changed;

REVOKE ALL ON keys_guard.tenant, keys_guard.guarded_table FROM PUBLIC;

--
-- Audit log: append-only.  Denials reach it through a shared-memory queue
-- drained by the background worker, so they survive their rollback.
--
CREATE TABLE keys_guard.audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    tenant      text,
    actor       text,
    request_id  text,
    action      text NOT NULL,
    target      text,
    outcome     text NOT NULL CHECK (outcome IN ('ok', 'denied', 'error')),
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON keys_guard.audit_log (at);
SELECT pg_catalog.pg_extension_config_dump('keys_guard.audit_log', '');

CREATE FUNCTION keys_guard._append_only()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'keys_guard_append_only';

CREATE TRIGGER keys_guard_append_only
    BEFORE UPDATE OR DELETE ON keys_guard.audit_log
    FOR EACH ROW EXECUTE FUNCTION keys_guard._append_only();
CREATE TRIGGER keys_guard_append_only_truncate
    BEFORE TRUNCATE ON keys_guard.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._append_only();
ALTER TABLE keys_guard.audit_log ENABLE ALWAYS TRIGGER keys_guard_append_only;
ALTER TABLE keys_guard.audit_log ENABLE ALWAYS TRIGGER keys_guard_append_only_truncate;

REVOKE ALL ON keys_guard.audit_log FROM PUBLIC;
GRANT SELECT ON keys_guard.audit_log TO keys_guard_admin;

--
-- Purge bookkeeping: what the purge did per table.  Written in the same
-- transaction as each batch, so the counts survive any crash exactly.
--
CREATE TABLE keys_guard.purge_stats (
    relid          regclass PRIMARY KEY,
    rows_purged    bigint NOT NULL DEFAULT 0,
    rows_skipped   bigint NOT NULL DEFAULT 0,
    last_run       timestamptz,
    last_error     text,
    last_error_at  timestamptz
);
REVOKE ALL ON keys_guard.purge_stats FROM PUBLIC;

--
-- Request context
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

-- Fail-closed row security: true while the library is preloaded, an error
-- otherwise.  Every guarded table has a restrictive policy calling it.
CREATE FUNCTION keys_guard._guard_active()
RETURNS boolean
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_guard_active';

CREATE FUNCTION keys_guard._tenant_row_guard()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'keys_guard_tenant_row_guard';

-- Soft delete (docs/contract.md §7): the values a DELETE-turned-UPDATE assigns, and
-- the triggers every soft-delete table carries.
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

-- Purge (docs/contract.md §9)
CREATE FUNCTION keys_guard._purge_table(r regclass, batch_size int, max_batches int,
                                        dry_run boolean,
                                        OUT purged bigint, OUT skipped bigint)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_purge_table';

CREATE FUNCTION keys_guard._backlog(r regclass, OUT waiting bigint, OUT deleted bigint)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_backlog';

CREATE FUNCTION keys_guard._in_internal_operation()
RETURNS boolean
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'keys_guard_in_internal_operation';

CREATE FUNCTION keys_guard._deny_ddl(schema_name text, object_identity text)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_deny_ddl';

CREATE FUNCTION keys_guard._notify_worker()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_notify_worker';

REVOKE ALL ON FUNCTION keys_guard._assert_preloaded(), keys_guard._registry_changed(),
    keys_guard._append_only(), keys_guard._tenant_row_guard(),
    keys_guard._refuse_delete(), keys_guard._soft_delete_cascade(),
    keys_guard._restore_key(regclass, text), keys_guard._hard_delete_key(regclass, text, boolean),
    keys_guard.restore_request(text),
    keys_guard._purge_table(regclass, int, int, boolean), keys_guard._backlog(regclass),
    keys_guard._deny_ddl(text, text), keys_guard._notify_worker() FROM PUBLIC;

--
-- Views
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
-- Internal helpers
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

CREATE FUNCTION keys_guard._audit(action text, target text, detail jsonb)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO keys_guard.audit_log (tenant, actor, request_id, action, target, outcome, detail)
    VALUES (keys_guard.current_tenant(),
            coalesce(keys_guard.current_actor(), session_user::text),
            keys_guard.current_request_id(), action, target, 'ok',
            coalesce(detail, '{}'));
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
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                        WHERE i.indrelid = r
                          AND pg_catalog.pg_get_indexdef(i.indexrelid) LIKE '%(hard_delete_at) WHERE (deleted_at IS NOT NULL)') THEN
            EXECUTE format('CREATE INDEX %I ON %s (hard_delete_at) WHERE deleted_at IS NOT NULL',
                           left((SELECT relname FROM pg_catalog.pg_class WHERE oid = r), 48) || '_kg_purge', r);
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

CREATE FUNCTION keys_guard._default_grace()
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.justify_hours(pg_catalog.make_interval(secs => setting::float8))
      FROM pg_catalog.pg_settings WHERE name = 'keys_guard.default_grace'
$$;

--
-- Tenants
--
CREATE FUNCTION keys_guard.create_tenant(id text, name text DEFAULT NULL)
RETURNS keys_guard.tenants
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    t        keys_guard.tenant;
    schema   name;
    result   keys_guard.tenants;
BEGIN
    IF id IS NULL THEN
        RAISE EXCEPTION 'tenant id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF id !~ '^[a-z0-9][a-z0-9_-]{0,47}$' THEN
        RAISE EXCEPTION 'invalid tenant id "%"', left(id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A tenant id is 1 to 48 lower-case letters, digits, "_" or "-", starting with a letter or a digit.';
    END IF;
    IF name IS NOT NULL AND (length(name) = 0 OR length(name) > 200) THEN
        RAISE EXCEPTION 'invalid tenant name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A tenant name is 1 to 200 characters.';
    END IF;
    name := coalesce(name, id);
    schema := 'tenant_' || id;

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
        RAISE NOTICE 'tenant "%" already exists, skipping', id;
        SELECT * INTO result FROM keys_guard.tenants WHERE tenants.id = id;
        RETURN result;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = schema) THEN
        RAISE EXCEPTION 'schema "%" already exists', schema
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'keys_guard creates the schema of a new tenant itself.',
                  HINT = 'Rename or drop the existing schema, or choose another tenant id.';
    END IF;

    EXECUTE format('CREATE SCHEMA %I AUTHORIZATION keys_guard_admin', schema);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO keys_guard_gateway', schema);
    INSERT INTO keys_guard.tenant (id, name, schema_name) VALUES (id, name, schema);
    PERFORM keys_guard._audit('create_tenant', schema,
                              jsonb_build_object('tenant', id, 'name', name));

    SELECT * INTO result FROM keys_guard.tenants WHERE tenants.id = id;
    RETURN result;
END
$$;

--
-- Tables
--
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
    nsp        name;
    col_type   regtype;
    tid        text;
    min_grace  interval := (SELECT pg_catalog.justify_hours(pg_catalog.make_interval(secs => setting::float8))
                              FROM pg_catalog.pg_settings WHERE name = 'keys_guard.min_grace');
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

    SELECT c.relkind, n.nspname INTO kind, nsp
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = r;
    IF kind <> 'r' THEN
        RAISE EXCEPTION '"%" is not a table', r
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'keys_guard guards ordinary tables; partitioned tables, views and foreign tables are not supported.';
    END IF;
    IF nsp IN ('keys_guard', 'pg_catalog', 'information_schema') THEN
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
        SELECT a.atttypid::regtype INTO col_type
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = r AND a.attname = tenant_column
           AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of relation "%" does not exist', tenant_column, r
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF col_type NOT IN ('text'::regtype, 'uuid'::regtype, 'bigint'::regtype) THEN
            RAISE EXCEPTION 'tenant column "%" has type %', tenant_column, col_type
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A tenant column is of type text, uuid or bigint.';
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

CREATE FUNCTION keys_guard._release_table(r regclass)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old keys_guard.guarded_table;
    idx record;
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
    FOR idx IN SELECT i.indexrelid::regclass AS name FROM pg_catalog.pg_index i
                JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
               WHERE i.indrelid = r AND c.relname LIKE '%\_kg\_purge'
                 AND pg_catalog.pg_get_indexdef(i.indexrelid) LIKE '%(hard_delete_at) WHERE (deleted_at IS NOT NULL)' LOOP
        EXECUTE format('DROP INDEX %s', idx.name);
    END LOOP;
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

CREATE FUNCTION keys_guard.release_table(rel text)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$ SELECT keys_guard._release_table(keys_guard._resolve_relation(rel)) $$;

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

--
-- Purge
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
                   (SELECT setting::int FROM pg_catalog.pg_settings
                     WHERE name = 'keys_guard.purge_batch_size'),
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

--
-- Tenant lifecycle
--
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
    min_grace  interval := (SELECT justify_hours(make_interval(secs => setting::float8))
                              FROM pg_settings WHERE name = 'keys_guard.min_grace');
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

CREATE FUNCTION keys_guard._count_rows(r regclass, OUT live bigint, OUT deleted bigint)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_count_rows';

REVOKE ALL ON FUNCTION keys_guard.create_tenant(text, text),
    keys_guard.protect_table(text, name, boolean, interval, text),
    keys_guard.release_table(text),
    keys_guard._protect_table(regclass, name, boolean, interval, text),
    keys_guard._release_table(regclass),
    keys_guard._apply_guard(regclass, text, name, boolean, interval, text),
    keys_guard._audit(text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION keys_guard.restore(text, anyelement),
    keys_guard.hard_delete(text, anyelement, boolean),
    keys_guard.preview_delete(text, anyelement),
    keys_guard.restore(text, text), keys_guard.hard_delete(text, text, boolean),
    keys_guard.preview_delete(text, text), keys_guard._preview_delete(text, text),
    keys_guard._preview(regclass, text, int, text, oid[]),
    keys_guard._sync_guard(regclass, boolean, text),
    keys_guard._drop_trigger(regclass, text),
    keys_guard._sync_cascade_trigger(regclass), keys_guard._sync_cascades_of(regclass),
    keys_guard._purge_skip_predicate(regclass, text, int), keys_guard._drop_expired_tenant(text),
    keys_guard._count_rows(regclass), keys_guard.purge_now(text, boolean),
    keys_guard.delete_tenant(text, boolean, interval), keys_guard.restore_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.purge_now(text, boolean),
    keys_guard._purge_table(regclass, int, int, boolean), keys_guard._backlog(regclass),
    keys_guard.delete_tenant(text, boolean, interval), keys_guard.restore_tenant(text)
    TO keys_guard_admin;
REVOKE ALL ON keys_guard.purge_status FROM PUBLIC;
GRANT SELECT ON keys_guard.purge_status TO keys_guard_admin;
GRANT EXECUTE ON FUNCTION keys_guard.restore(text, anyelement),
    keys_guard.hard_delete(text, anyelement, boolean),
    keys_guard.preview_delete(text, anyelement),
    keys_guard.restore(text, text), keys_guard.hard_delete(text, text, boolean),
    keys_guard.preview_delete(text, text), keys_guard._preview_delete(text, text),
    keys_guard._preview(regclass, text, int, text, oid[]),
    keys_guard._restore_key(regclass, text), keys_guard._hard_delete_key(regclass, text, boolean),
    keys_guard.restore_request(text) TO keys_guard_admin;
GRANT EXECUTE ON FUNCTION keys_guard.create_tenant(text, text),
    keys_guard.protect_table(text, name, boolean, interval, text),
    keys_guard.release_table(text),
    keys_guard._protect_table(regclass, name, boolean, interval, text),
    keys_guard._release_table(regclass) TO keys_guard_admin;
REVOKE ALL ON FUNCTION keys_guard.set_context(text, text, text, boolean),
    keys_guard.admin_context(text, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.set_context(text, text, text, boolean)
    TO keys_guard_gateway, keys_guard_admin;
GRANT EXECUTE ON FUNCTION keys_guard.admin_context(text, text, text, boolean)
    TO keys_guard_admin;

--
-- Event triggers: guard every table created in a tenant schema, and keep
-- DDL under a tenant context inside that tenant's schema.
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
END
$$;

REVOKE ALL ON FUNCTION keys_guard._on_ddl_command_end(), keys_guard._on_sql_drop(),
    keys_guard._ddl_schema(text, text, text[]) FROM PUBLIC;

CREATE EVENT TRIGGER keys_guard_ddl_command_end ON ddl_command_end
    EXECUTE FUNCTION keys_guard._on_ddl_command_end();
CREATE EVENT TRIGGER keys_guard_sql_drop ON sql_drop
    EXECUTE FUNCTION keys_guard._on_sql_drop();
ALTER EVENT TRIGGER keys_guard_ddl_command_end ENABLE ALWAYS;
ALTER EVENT TRIGGER keys_guard_sql_drop ENABLE ALWAYS;

-- Let the background worker of this database start now.
SELECT keys_guard._notify_worker();
