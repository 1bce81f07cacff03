/*
 * keys_guard--1.1--1.2.sql: closing the ways around the guarantees
 *
 * The update of existing 1.1 databases.  Fresh installs run the full script
 * keys_guard--1.2.sql instead: a change here goes there too, in its final
 * form, and sql/upgrade.sql lists every difference between the two.
 */

\echo Use "ALTER EXTENSION keys_guard UPDATE TO '1.2'" to load this file. \quit

--
-- protect_table guards only what lasts (docs/contract.md §5): permanent, logged,
-- ordinary tables, with a tenant column that is a plain stored column.
-- (CREATE OR REPLACE keeps the function's grants.)
--
CREATE OR REPLACE FUNCTION keys_guard._protect_table(r regclass,
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

--
-- Templates (docs/contract.md §4): never another tenant's schema, never unlogged
-- tables (every clone is guarded, and a guarded table stays logged).
--
CREATE OR REPLACE FUNCTION keys_guard._template_schema(template text, tenant_schema name)
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

--
-- Tenant names have no control characters (docs/contract.md §4).
--
CREATE OR REPLACE FUNCTION keys_guard.create_tenant(id text, name text DEFAULT NULL,
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

--
-- No column of an audit table and no column a guard relies on is dropped
-- (docs/contract.md §8, §11); the utility hook refuses the direct ALTER TABLE, this
-- catches every other way a column goes.
--
CREATE OR REPLACE FUNCTION keys_guard._on_sql_drop()
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

--
-- A temporary table guarded by an earlier version vanished with its
-- session and left its registry row behind, where nothing could release
-- it (and a new relation could inherit its oid).  Forget such rows.
--
DELETE FROM keys_guard.guarded_table g
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = g.relid);
DELETE FROM keys_guard.purge_stats p
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = p.relid);

--
-- INSERT ... ON CONFLICT DO UPDATE: the conflicting row must be the
-- tenant's own and live before anything of the statement's own is
-- evaluated on it (docs/contract.md §6).
--
CREATE FUNCTION keys_guard._assert_conflict_row(relid oid, tenant text, deleted_at timestamptz)
RETURNS boolean
LANGUAGE C STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'keys_guard_assert_conflict_row';

--
-- Undo belongs to the tenant too (docs/contract.md §7): inside a tenant context the
-- application's gateway may restore and preview that tenant's own rows;
-- the C functions refuse every row of another tenant (42501).
--
GRANT EXECUTE ON FUNCTION keys_guard.restore(text, anyelement),
    keys_guard.restore(text, text), keys_guard._restore_key(regclass, text),
    keys_guard.restore_request(text),
    keys_guard.preview_delete(text, anyelement), keys_guard.preview_delete(text, text),
    keys_guard._preview_delete(text, text),
    keys_guard._preview(regclass, text, int, text, oid[])
    TO keys_guard_gateway;


-- The worker of this database looks again once this update commits (it
-- stops purging while the SQL objects do not match the library).
SELECT keys_guard._notify_worker();

--
-- The rules the scripts and the library share, defined once in the
-- library (names.c): the tenant-id shape, a tenant's schema name, the
-- grace settings, the purge index.  The functions that used their SQL
-- copies are restated in their 1.2 form, as in keys_guard--1.2.sql.
--
CREATE OR REPLACE FUNCTION keys_guard._tenant_id_valid(id text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_tenant_id_valid';

CREATE OR REPLACE FUNCTION keys_guard._default_grace()
RETURNS interval
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_default_grace_setting';

CREATE OR REPLACE FUNCTION keys_guard._min_grace()
RETURNS interval
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_min_grace_setting';

CREATE OR REPLACE FUNCTION keys_guard._tenant_schema(id text)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_tenant_schema';

CREATE OR REPLACE FUNCTION keys_guard._shared_names(OUT name text, OUT value text)
RETURNS SETOF record
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'keys_guard_shared_names';

CREATE OR REPLACE FUNCTION keys_guard._purge_index(r regclass)
RETURNS regclass
LANGUAGE C STABLE STRICT
AS 'MODULE_PATHNAME', 'keys_guard_purge_index';

CREATE OR REPLACE FUNCTION keys_guard._purge_index_name(r regclass)
RETURNS text
LANGUAGE C STABLE STRICT
AS 'MODULE_PATHNAME', 'keys_guard_purge_index_name';

REVOKE ALL ON FUNCTION keys_guard._purge_index(regclass),
    keys_guard._purge_index_name(regclass) FROM PUBLIC;

ALTER TABLE keys_guard.tenant
    DROP CONSTRAINT tenant_id_check,
    ADD CONSTRAINT tenant_id_check CHECK (keys_guard._tenant_id_valid(id));

CREATE OR REPLACE FUNCTION keys_guard._sync_guard(r regclass, p_soft_delete boolean, p_class text)
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

CREATE OR REPLACE FUNCTION keys_guard._guard_clones(tenant_id text, clones jsonb)
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

CREATE OR REPLACE FUNCTION keys_guard._release_table(r regclass)
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

CREATE OR REPLACE FUNCTION keys_guard.purge_now(rel text DEFAULT NULL, dry_run boolean DEFAULT false)
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

CREATE OR REPLACE FUNCTION keys_guard.delete_tenant(id text, dry_run boolean DEFAULT false,
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

CREATE OR REPLACE FUNCTION keys_guard.doctor()
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


-- keys_guard._audit() becomes a thin entry into the library's audit writer
-- (src/audit.c), the only code that writes keys_guard.audit_log.  Same
-- signature, same privileges, same row.
CREATE OR REPLACE FUNCTION keys_guard._audit(action text, target text, detail jsonb)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_audit';
