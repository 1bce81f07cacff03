/* keys_guard--1.1--1.2.sql: closing the ways around the guarantees */

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

-- >>> issue 11, item 3 (one audit API): keys_guard._audit() becomes a thin
-- entry into the library's audit writer (src/audit.c), the only code that
-- writes keys_guard.audit_log.  Same signature, same privileges, same row.
CREATE OR REPLACE FUNCTION keys_guard._audit(action text, target text, detail jsonb)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_audit';
-- <<< issue 11, item 3
