/*
 * keys_guard--1.2--1.3.sql: keys_guard 1.3, API keys for tools and AI
 * agents (docs/contract.md §15).
 *
 * There is no full keys_guard--1.3.sql: CREATE EXTENSION keys_guard runs
 * keys_guard--1.2.sql and then this file, and a database at 1.2 (or at
 * 1.0 or 1.1, through the earlier upgrade scripts) runs this file alone.
 * So this file is the one definition of what 1.3 adds; sql/upgrade.sql
 * checks that every way to 1.3 ends in the same objects.
 *
 * Adds: the role keys_guard_keyholder, the registry table
 * keys_guard.api_key and its view keys_guard.api_keys (never the secret or
 * its hash), create_api_key(), use_api_key(), rotate_api_key(),
 * revoke_api_key() (src/apikey.c); delete_tenant() now revokes the
 * tenant's keys; doctor() checks the key registry's triggers; the runbook
 * view lists the new functions.  First, it restates the objects that 1.2
 * changed after it first shipped (the rules the library now defines once,
 * names.c, and the audit writer in C), so that a database that installed
 * that first 1.2 ends in the same objects as every other.
 *
 * Also (a fleet of tenants, docs/contract.md §18, at the end of the file):
 * migrate_tenants() with its ledger and progress view (src/migrate.c);
 * tenants remember their template; purge_now() keeps no locks on tables
 * it did not purge.
 */

\echo Use "ALTER EXTENSION keys_guard UPDATE TO '1.3'" to load this file. \quit

--
-- A database that installed 1.2 before its last changes (the shared
-- names and rules in the library, the audit writer in C) gets them here;
-- for every other 1.2 database these statements change nothing.
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

CREATE OR REPLACE FUNCTION keys_guard._audit(action text, target text, detail jsonb)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_audit';

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
    INSERT INTO keys_guard.tenant (id, name, schema_name, template_schema)
        VALUES (id, name, schema, template);
    IF tpl IS NOT NULL THEN
        PERFORM keys_guard._guard_clones(id, clones);
        -- Born current: the tenant has every migration its template had
        -- (migrate_tenants() then skips it).
        INSERT INTO keys_guard.tenant_migrations (migration, tenant, schema_name, status,
                                                  took, attempts, from_template, sql_sha256)
        SELECT m.migration, id, schema, 'ok', interval '0', 0, true, m.sql_sha256
          FROM keys_guard.tenant_migrations m
         WHERE m.schema_name = template AND m.tenant IS NULL AND m.status = 'ok';
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
        -- Under a nondeterministic collation two tenant ids compare equal
        -- ("ci_a" and "cia" where punctuation is ignored), so the tenant
        -- filter would show one tenant's rows to the other.
        IF EXISTS (SELECT 1
                     FROM pg_catalog.pg_attribute a
                     JOIN pg_catalog.pg_collation c ON c.oid = a.attcollation
                    WHERE a.attrelid = r AND a.attname = tenant_column
                      AND NOT c.collisdeterministic) THEN
            RAISE EXCEPTION 'tenant column "%" of table % has a nondeterministic collation', tenant_column, r
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Under a nondeterministic collation different tenant ids can compare equal.',
                      HINT = format('Give the column a deterministic collation: ALTER TABLE %s ALTER COLUMN %I TYPE text COLLATE "C".', r, tenant_column);
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
       FROM unnest(ARRAY['keys_guard_tenant', 'keys_guard_tenant_update', 'keys_guard_refuse_delete',
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
    -- Each table in a subtransaction, rolled back when it changed nothing
    -- (always under dry_run): its locks go with it, so a purge of every
    -- table holds locks only on the tables it purged, never 10 000 at once.
    FOR r IN SELECT g.relation FROM keys_guard.guarded_tables g
              WHERE g.soft_delete AND (t IS NULL OR g.relation = t)
              ORDER BY g.relation::text LOOP
        relation := r.relation;
        BEGIN
            SELECT p.purged, p.skipped INTO purged, skipped
              FROM keys_guard._purge_table(r.relation,
                       pg_catalog.current_setting('keys_guard.purge_batch_size')::int,
                       0, dry_run) p;
            IF dry_run OR (purged = 0 AND skipped = 0) THEN
                RAISE EXCEPTION USING ERRCODE = 'KGP00';
            END IF;
        EXCEPTION WHEN SQLSTATE 'KGP00' THEN
            NULL;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;


-- keys_guard_keyholder: the login role of an AI tool or MCP server is
-- granted it; it obtains a context only by presenting an API key.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'keys_guard_keyholder') THEN
        CREATE ROLE keys_guard_keyholder NOLOGIN;
    END IF;
END
$roles$;

--
-- The key registry.  A configuration table: pg_dump carries the keys over
-- (hashes only).  Written only by keys_guard's functions, like the rest of
-- the registry.  The secret itself is never stored: secret_hash is its
-- SHA-256.  A rotated key names its replacement (replaced_by) and the
-- replacement its predecessor (rotated_from).
--
CREATE TABLE keys_guard.api_key (
    id                uuid PRIMARY KEY,
    tenant            text NOT NULL REFERENCES keys_guard.tenant (id),
    name              text NOT NULL,
    scopes            text[] NOT NULL
                      CHECK (scopes = '{read}' OR scopes = '{read,write}'),
    secret_hash       bytea NOT NULL CHECK (pg_catalog.length(secret_hash) = 32),
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by        text NOT NULL,
    expires_at        timestamptz NOT NULL,
    write_consent_by  text,
    write_consent_at  timestamptz,
    revoked_at        timestamptz,
    revoked_by        text,
    rotated_from      uuid,
    replaced_by       uuid,
    CHECK (scopes = '{read}' OR write_consent_by IS NOT NULL)
);
CREATE INDEX api_key_tenant_idx ON keys_guard.api_key (tenant);
SELECT pg_catalog.pg_extension_config_dump('keys_guard.api_key', '');
REVOKE ALL ON keys_guard.api_key FROM PUBLIC;

CREATE TRIGGER keys_guard_registry_guard
    BEFORE INSERT OR UPDATE OR DELETE ON keys_guard.api_key
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_guard();
CREATE TRIGGER keys_guard_registry_guard_truncate
    BEFORE TRUNCATE ON keys_guard.api_key
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_guard();
ALTER TABLE keys_guard.api_key ENABLE ALWAYS TRIGGER keys_guard_registry_guard;
ALTER TABLE keys_guard.api_key ENABLE ALWAYS TRIGGER keys_guard_registry_guard_truncate;
-- Backends keep the keys they looked up (src/apikey.c); every change to
-- the registry tells them to look again.
CREATE TRIGGER keys_guard_registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keys_guard.api_key
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_changed();
ALTER TABLE keys_guard.api_key ENABLE ALWAYS TRIGGER keys_guard_registry_changed;

-- Never the secret, never its hash.  Administrators see every key, a
-- gateway the keys of the tenant of its current context.
CREATE VIEW keys_guard.api_keys AS
    SELECT k.id AS key_id, k.tenant, k.name, k.scopes,
           CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked'
                WHEN k.expires_at <= pg_catalog.now() THEN 'expired'
                WHEN k.replaced_by IS NOT NULL THEN 'rotating'
                ELSE 'active' END AS status,
           k.created_at, k.created_by, k.expires_at,
           k.write_consent_by, k.write_consent_at,
           k.revoked_at, k.revoked_by, k.rotated_from, k.replaced_by
      FROM keys_guard.api_key k
     WHERE pg_catalog.pg_has_role('keys_guard_admin', 'USAGE')
        OR k.tenant = keys_guard.current_tenant();
REVOKE ALL ON keys_guard.api_keys FROM PUBLIC;
GRANT SELECT ON keys_guard.api_keys TO keys_guard_admin, keys_guard_gateway;

--
-- The functions (src/apikey.c).
--
CREATE FUNCTION keys_guard.create_api_key(tenant text, name text,
                                          scopes text[] DEFAULT '{read}',
                                          expires_in interval DEFAULT '90 days',
                                          write_consent boolean DEFAULT false,
                                          OUT key_id uuid, OUT secret text,
                                          OUT expires_at timestamptz)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_create_api_key';

CREATE FUNCTION keys_guard.use_api_key(secret text)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_use_api_key';

CREATE FUNCTION keys_guard.rotate_api_key(key_id uuid,
                                          overlap interval DEFAULT '24 hours',
                                          OUT new_key_id uuid, OUT secret text,
                                          OUT expires_at timestamptz,
                                          OUT old_expires_at timestamptz)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_rotate_api_key';

CREATE FUNCTION keys_guard.revoke_api_key(key_id uuid)
RETURNS timestamptz
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_revoke_api_key';

-- use_api_key() keeps PostgreSQL's default EXECUTE privilege: it refuses
-- every caller but members of keys_guard_keyholder itself, first thing
-- (see set_context() below for why).
REVOKE ALL ON FUNCTION keys_guard.create_api_key(text, text, text[], interval, boolean),
    keys_guard.rotate_api_key(uuid, interval),
    keys_guard.revoke_api_key(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.create_api_key(text, text, text[], interval, boolean),
    keys_guard.rotate_api_key(uuid, interval), keys_guard.revoke_api_key(uuid)
    TO keys_guard_admin, keys_guard_gateway;

-- delete_tenant() revokes the tenant's keys (restore_tenant() does not
-- bring them back).
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
        -- Its API keys stop working at once and stay revoked if the tenant
        -- is restored.
        UPDATE keys_guard.api_key SET revoked_at = now(), revoked_by = 'delete_tenant'
         WHERE api_key.tenant = id AND revoked_at IS NULL;
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

-- doctor() reports the key registry's triggers when they are missing or
-- not enabled ALWAYS, as it does for the rest of the registry, and the
-- runbook catalog lists the key functions: both are defined once, with
-- the token registry's rows and the fleet's, after the verified tokens
-- below.

--
-- Verified tokens (docs/contract.md §17, src/token.c): the role
-- keys_guard_client, the key registry keys_guard.token_key and its view
-- keys_guard.token_keys (never an HS256 secret), add_token_key(),
-- set_token_key_state(), set_context_from_token(); the runbook view lists
-- them.
--

-- keys_guard_client: granted to the login roles of connections that carry
-- end users' tokens; they obtain a context only with a verified token.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'keys_guard_client') THEN
        CREATE ROLE keys_guard_client NOLOGIN;
    END IF;
END
$roles$;

-- The keys that verify tokens, by kid.  An HS256 key is a secret (in
-- secret, which no view shows); the others are public keys, kept as PEM
-- with the SHA-256 fingerprint of their DER.  current, standby and
-- previous keys verify; revoked ones never again.  Written only by
-- keys_guard's functions; pg_dump carries the keys over (the HS256
-- secrets included, like any secret in a dump).
CREATE TABLE keys_guard.token_key (
    kid               text PRIMARY KEY
                      CHECK (pg_catalog.length(kid) BETWEEN 1 AND 128 AND kid ~ '^[ -~]+$'),
    alg               text NOT NULL CHECK (alg IN ('HS256', 'RS256', 'ES256', 'EdDSA')),
    secret            bytea CHECK (pg_catalog.length(secret) BETWEEN 32 AND 512),
    public_key        text,
    fingerprint       text,
    state             text NOT NULL
                      CHECK (state IN ('current', 'standby', 'previous', 'revoked')),
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by        text NOT NULL,
    state_changed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    state_changed_by  text NOT NULL,
    CHECK ((alg = 'HS256') = (secret IS NOT NULL)),
    CHECK ((alg = 'HS256') = (public_key IS NULL)),
    CHECK ((public_key IS NULL) = (fingerprint IS NULL))
);
SELECT pg_catalog.pg_extension_config_dump('keys_guard.token_key', '');
REVOKE ALL ON keys_guard.token_key FROM PUBLIC;

CREATE TRIGGER keys_guard_registry_guard
    BEFORE INSERT OR UPDATE OR DELETE ON keys_guard.token_key
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_guard();
CREATE TRIGGER keys_guard_registry_guard_truncate
    BEFORE TRUNCATE ON keys_guard.token_key
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_guard();
ALTER TABLE keys_guard.token_key ENABLE ALWAYS TRIGGER keys_guard_registry_guard;
ALTER TABLE keys_guard.token_key ENABLE ALWAYS TRIGGER keys_guard_registry_guard_truncate;
-- Backends keep the keys and the tokens they verified (src/token.c);
-- every change to the registry tells them to drop both.
CREATE TRIGGER keys_guard_registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keys_guard.token_key
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_changed();
ALTER TABLE keys_guard.token_key ENABLE ALWAYS TRIGGER keys_guard_registry_changed;

-- Never an HS256 secret: public keys only, for administrators.
CREATE VIEW keys_guard.token_keys AS
    SELECT k.kid, k.alg, k.state, k.public_key, k.fingerprint,
           k.created_at, k.created_by, k.state_changed_at, k.state_changed_by
      FROM keys_guard.token_key k;
REVOKE ALL ON keys_guard.token_keys FROM PUBLIC;
GRANT SELECT ON keys_guard.token_keys TO keys_guard_admin;

CREATE FUNCTION keys_guard.add_token_key(kid text, alg text, key text,
                                         state text DEFAULT 'current')
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_add_token_key';

CREATE FUNCTION keys_guard.set_token_key_state(kid text, state text)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_set_token_key_state';

CREATE FUNCTION keys_guard.set_context_from_token(token text)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_set_context_from_token';

-- Whether a token's signature holds under a registered key, claims aside
-- (tests of the algorithms with published vectors).
CREATE FUNCTION keys_guard._verify_token_signature(kid text, token text)
RETURNS boolean
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_verify_token_signature';

-- set_context_from_token() keeps the default EXECUTE privilege: it refuses
-- every caller but members of keys_guard_client, keys_guard_gateway and
-- keys_guard_admin itself, first thing (see set_context()).
REVOKE ALL ON FUNCTION keys_guard.add_token_key(text, text, text, text),
    keys_guard.set_token_key_state(text, text),
    keys_guard._verify_token_signature(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.add_token_key(text, text, text, text),
    keys_guard.set_token_key_state(text, text),
    keys_guard._verify_token_signature(text, text)
    TO keys_guard_admin;

-- The runbook catalog lists the token functions too.
CREATE OR REPLACE VIEW keys_guard.operations AS
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
         'Member of keys_guard_admin.', NULL),
        ('keys_guard.migrate_tenants(text, text, text[], boolean, integer)', 'IRREVERSIBLE',
         'Runs a migration''s SQL in every active tenant schema (or the tenants given) and in their template schemas, one committed transaction per schema, with the caller''s rights; records each schema in keys_guard.tenant_migrations. Audited. dry_run => true reports and changes nothing.',
         'Member of keys_guard_admin; CALL outside a transaction block; the SQL parses and has no transaction control; the tenants given exist and are active.',
         'dry_run'),
        ('keys_guard.create_api_key(text, text, text[], interval, boolean)', 'REVERSIBLE',
         'Registers an API key of a tenant (only its hash is stored) and returns its secret once. Audited. A write key records who consented.',
         'Member of keys_guard_admin, or of keys_guard_gateway in a context of that tenant; the tenant is active; write scope needs write_consent. Undone by revoke_api_key().',
         NULL),
        ('keys_guard.use_api_key(text)', 'SAFE',
         'Changes only session state: the transaction-scoped context of the key''s tenant, with a statement timeout. Audited, refusals included.',
         'Member of keys_guard_keyholder; the key is valid, not revoked or expired, and its tenant is active.',
         NULL),
        ('keys_guard.rotate_api_key(uuid, interval)', 'REVERSIBLE',
         'Registers a replacement key (new id and secret, same tenant, name and scopes) and makes the old key expire when the overlap ends. Audited.',
         'Member of keys_guard_admin, or of keys_guard_gateway in a context of the key''s tenant; the key is neither revoked, expired nor rotated. Undone by revoke_api_key() of the new key.',
         NULL),
        ('keys_guard.revoke_api_key(uuid)', 'REVERSIBLE',
         'Revokes an API key: it is refused from then on. Idempotent. Audited. A revoked key is never reinstated; create_api_key() issues a new one.',
         'Member of keys_guard_admin, or of keys_guard_gateway in a context of the key''s tenant.',
         NULL),
        ('keys_guard.add_token_key(text, text, text, text)', 'REVERSIBLE',
         'Registers a key that verifies tokens: an HS256 secret (never shown again) or an RS256, ES256 or EdDSA public key. Audited.',
         'Member of keys_guard_admin; the kid is new; the key fits the algorithm. Undone by set_token_key_state(kid, ''revoked'').',
         NULL),
        ('keys_guard.set_token_key_state(text, text)', 'REVERSIBLE',
         'Moves a token key between current, standby and previous, or revokes it: tokens it signed are refused from then on. Idempotent. Audited.',
         'Member of keys_guard_admin; the key exists; a revoked key stays revoked.',
         NULL),
        ('keys_guard.set_context_from_token(text)', 'SAFE',
         'Changes only session state: the transaction-scoped context a verified token names, read-only unless its scope has write. Audited, refusals included.',
         'Member of keys_guard_client, keys_guard_gateway or keys_guard_admin, not of keys_guard_keyholder; the token verifies and its tenant is active.',
         NULL)
      ) AS l(signature, safety_class, side_effects, preconditions, guard_argument)
      JOIN pg_catalog.pg_proc p ON p.oid = pg_catalog.to_regprocedure(l.signature)
     ORDER BY p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) COLLATE "C";

-- doctor() checks the token key registry's triggers too.
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
            ('keys_guard_tenant'::name, 7, 'keys_guard._tenant_row_guard()',
             g.tenant_column, g.tenant_column IS NOT NULL),
            ('keys_guard_tenant_update'::name, 17, 'keys_guard._tenant_row_guard()',
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
    -- A foreign key between pooled tables that does not pair the two
    -- tenant columns: keys_guard keeps a reference written under a tenant
    -- context inside that tenant, but one written under an admin context
    -- (or before 1.3) may cross tenants, and a referential action that
    -- keys_guard runs as user code (nested in a trigger inside another
    -- one) misses such a row.  Keyed by tenant, the database keeps them all.
    SELECT 'cross_tenant_foreign_key', k.conrelid::regclass,
           pg_catalog.format('foreign key %I references pooled table %s without pairing tenant columns %I and %I, so a row written under an admin context can reference another tenant''s row',
                             k.conname, k.confrelid::regclass, ch.tenant_column, pa.tenant_column),
           -- The same key with the tenant columns in front (SET NULL and SET
           -- DEFAULT on delete keep to the key's own columns), checked against
           -- every tenant's rows under an admin context; none is
           -- offered for ON UPDATE SET NULL or SET DEFAULT, which would
           -- change the tenant column too.
           CASE WHEN k.confupdtype NOT IN ('n', 'd') THEN
           pg_catalog.format('SELECT keys_guard.admin_context(''doctor'', ''tenant columns into a foreign key''); '
                             'CREATE UNIQUE INDEX ON %s (%I, %s); '
                             'ALTER TABLE %s ADD FOREIGN KEY (%I, %s) REFERENCES %s (%I, %s)%s; '
                             'ALTER TABLE %s DROP CONSTRAINT %I',
                             k.confrelid::regclass, pa.tenant_column, fk.parent_cols,
                             k.conrelid::regclass, ch.tenant_column, fk.child_cols,
                             k.confrelid::regclass, pa.tenant_column, fk.parent_cols,
                             CASE k.confupdtype WHEN 'c' THEN ' ON UPDATE CASCADE'
                                                WHEN 'r' THEN ' ON UPDATE RESTRICT' ELSE '' END ||
                             CASE k.confdeltype WHEN 'c' THEN ' ON DELETE CASCADE'
                                                WHEN 'r' THEN ' ON DELETE RESTRICT'
                                                WHEN 'n' THEN ' ON DELETE SET NULL (' || fk.child_cols || ')'
                                                WHEN 'd' THEN ' ON DELETE SET DEFAULT (' || fk.child_cols || ')'
                                                ELSE '' END,
                             k.conrelid::regclass, k.conname) END
      FROM pg_catalog.pg_constraint k
      JOIN keys_guard.guarded_table ch ON ch.relid = k.conrelid AND ch.tenant_column IS NOT NULL
      JOIN keys_guard.guarded_table pa ON pa.relid = k.confrelid AND pa.tenant_column IS NOT NULL
      JOIN pg_catalog.pg_attribute cha
        ON cha.attrelid = k.conrelid AND cha.attname = ch.tenant_column AND NOT cha.attisdropped
      JOIN pg_catalog.pg_attribute paa
        ON paa.attrelid = k.confrelid AND paa.attname = pa.tenant_column AND NOT paa.attisdropped
     CROSS JOIN LATERAL (
            SELECT pg_catalog.string_agg(pg_catalog.quote_ident(ca.attname), ', ' ORDER BY u.i) AS child_cols,
                   pg_catalog.string_agg(pg_catalog.quote_ident(pa2.attname), ', ' ORDER BY u.i) AS parent_cols
              FROM unnest(k.conkey, k.confkey) WITH ORDINALITY AS u(c, p, i)
              JOIN pg_catalog.pg_attribute ca ON ca.attrelid = k.conrelid AND ca.attnum = u.c
              JOIN pg_catalog.pg_attribute pa2 ON pa2.attrelid = k.confrelid AND pa2.attnum = u.p) AS fk
     WHERE k.contype = 'f'
       AND NOT EXISTS (SELECT 1 FROM unnest(k.conkey, k.confkey) AS u(c, p)
                        WHERE u.c = cha.attnum AND u.p = paa.attnum)
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
                   ('keys_guard.api_key', 'keys_guard_registry_changed'),
                   ('keys_guard.api_key', 'keys_guard_registry_guard'),
                   ('keys_guard.api_key', 'keys_guard_registry_guard_truncate'),
                   ('keys_guard.tenant_migrations', 'keys_guard_registry_guard'),
                   ('keys_guard.tenant_migrations', 'keys_guard_registry_guard_truncate'),
                   ('keys_guard.token_key', 'keys_guard_registry_changed'),
                   ('keys_guard.token_key', 'keys_guard_registry_guard'),
                   ('keys_guard.token_key', 'keys_guard_registry_guard_truncate'),
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

--
-- A fleet of tenants: one migration across every tenant schema
-- (docs/contract.md §18, src/migrate.c).
--
-- The template a tenant was created from, so that a migration reaches the
-- template too and tenants created afterwards are born current.  Tenants
-- created before 1.3 get it from their create_tenant audit record.
--
ALTER TABLE keys_guard.tenant ADD COLUMN template_schema name;
UPDATE keys_guard.tenant t SET template_schema = (a.detail ->> 'template')::name
  FROM (SELECT DISTINCT ON (l.target) l.target, l.detail
          FROM keys_guard.audit_log l
         WHERE l.action = 'create_tenant' AND l.outcome = 'ok'
         ORDER BY l.target, l.id DESC) a
 WHERE a.target = t.schema_name AND t.template_schema IS NULL AND a.detail ? 'template';

-- The ledger: one row per migration and schema (a template schema's row has
-- no tenant).  status ok means the migration committed in that schema,
-- in the same transaction as the row; failed keeps the error of the last
-- attempt.  from_template: the tenant was created from a template that
-- already had the migration.  sql_sha256 fingerprints the SQL that ran.
CREATE TABLE keys_guard.tenant_migrations (
    migration      text NOT NULL,
    tenant         text,
    schema_name    name NOT NULL,
    status         text NOT NULL CHECK (status IN ('ok', 'failed')),
    sqlstate       text,
    error          text,
    took           interval NOT NULL,
    at             timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    attempts       integer NOT NULL DEFAULT 1,
    from_template  boolean NOT NULL DEFAULT false,
    sql_sha256     text NOT NULL,
    PRIMARY KEY (migration, schema_name)
);
SELECT pg_catalog.pg_extension_config_dump('keys_guard.tenant_migrations', '');
REVOKE ALL ON keys_guard.tenant_migrations FROM PUBLIC;
GRANT SELECT ON keys_guard.tenant_migrations TO keys_guard_admin;

-- Written only by keys_guard (src/control.c), like the rest of the registry.
CREATE TRIGGER keys_guard_registry_guard
    BEFORE INSERT OR UPDATE OR DELETE ON keys_guard.tenant_migrations
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_guard();
CREATE TRIGGER keys_guard_registry_guard_truncate
    BEFORE TRUNCATE ON keys_guard.tenant_migrations
    FOR EACH STATEMENT EXECUTE FUNCTION keys_guard._registry_guard();
ALTER TABLE keys_guard.tenant_migrations ENABLE ALWAYS TRIGGER keys_guard_registry_guard;
ALTER TABLE keys_guard.tenant_migrations ENABLE ALWAYS TRIGGER keys_guard_registry_guard_truncate;

-- Progress per migration, readable while a run goes on (each schema
-- commits): tenants migrated, failed, and still pending among the active
-- tenants.
CREATE VIEW keys_guard.tenant_migration_progress AS
    SELECT l.migration,
           pg_catalog.count(*) FILTER (WHERE l.tenant IS NOT NULL AND l.status = 'ok') AS tenants_ok,
           pg_catalog.count(*) FILTER (WHERE l.tenant IS NOT NULL AND l.status = 'failed') AS tenants_failed,
           (SELECT pg_catalog.count(*) FROM keys_guard.tenant t
             WHERE t.status = 'active'
               AND NOT EXISTS (SELECT 1 FROM keys_guard.tenant_migrations o
                                WHERE o.migration = l.migration
                                  AND o.schema_name = t.schema_name AND o.status = 'ok'))
               AS tenants_pending,
           pg_catalog.count(*) FILTER (WHERE l.tenant IS NULL AND l.status = 'ok') AS templates_ok,
           pg_catalog.count(*) FILTER (WHERE l.tenant IS NULL AND l.status = 'failed') AS templates_failed,
           pg_catalog.min(l.at) AS first_at, pg_catalog.max(l.at) AS last_at,
           pg_catalog.avg(l.took) FILTER (WHERE NOT l.from_template) AS avg_took
      FROM keys_guard.tenant_migrations l
     GROUP BY l.migration;
REVOKE ALL ON keys_guard.tenant_migration_progress FROM PUBLIC;
GRANT SELECT ON keys_guard.tenant_migration_progress TO keys_guard_admin;

-- The C half (src/migrate.c).
CREATE FUNCTION keys_guard._migration_check(sql text)
RETURNS text
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'keys_guard_migration_check';
CREATE FUNCTION keys_guard._migrate_schema(migration text, tenant text, schema name, sql text)
RETURNS interval
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_migrate_schema';
CREATE FUNCTION keys_guard._migration_failed(migration text, tenant text, schema name, sql text,
                                             sqlstate text, message text, took interval)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_migration_failed';
CREATE FUNCTION keys_guard._migration_audit(migration text, phase text, sql text,
                                            tenants integer, ok integer, failed integer,
                                            skipped integer, canary boolean, stopped boolean)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'keys_guard_migration_audit';

-- The schemas a run would migrate, in order: the templates of active
-- tenants first (a full run only), then the tenants, by id; those with the
-- migration already ok are left out.  Reads the registry for the caller.
CREATE FUNCTION keys_guard._migration_plan(migration text, tenants text[])
RETURNS TABLE (tenant text, schema_name name)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NULL::text, p.template_schema
      FROM (SELECT DISTINCT t.template_schema FROM keys_guard.tenant t
             WHERE $2 IS NULL AND t.status = 'active' AND t.template_schema IS NOT NULL) p
     WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = p.template_schema)
       AND NOT EXISTS (SELECT 1 FROM keys_guard.tenant_migrations l
                        WHERE l.migration = $1 AND l.schema_name = p.template_schema
                          AND l.status = 'ok')
    UNION ALL
    SELECT q.id, q.schema_name
      FROM (SELECT t.id, t.schema_name FROM keys_guard.tenant t
             WHERE t.status = 'active' AND ($2 IS NULL OR t.id = ANY ($2))
               AND NOT EXISTS (SELECT 1 FROM keys_guard.tenant_migrations l
                                WHERE l.migration = $1 AND l.schema_name = t.schema_name
                                  AND l.status = 'ok')
             ORDER BY t.id COLLATE "C") q
$$;

REVOKE ALL ON FUNCTION keys_guard._migration_check(text),
    keys_guard._migrate_schema(text, text, name, text),
    keys_guard._migration_failed(text, text, name, text, text, text, interval),
    keys_guard._migration_audit(text, text, text, integer, integer, integer, integer, boolean, boolean),
    keys_guard._migration_plan(text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard._migration_check(text),
    keys_guard._migrate_schema(text, text, name, text),
    keys_guard._migration_failed(text, text, name, text, text, text, interval),
    keys_guard._migration_audit(text, text, text, integer, integer, integer, integer, boolean, boolean),
    keys_guard._migration_plan(text, text[]) TO keys_guard_admin;

-- migrate_tenants(): a procedure, because it commits after each schema.
-- It runs with the caller's rights (no SECURITY DEFINER, no SET clause:
-- either would forbid COMMIT), so everything it names is schema-qualified.
CREATE PROCEDURE keys_guard.migrate_tenants(migration text, sql text,
                                            tenants text[] DEFAULT NULL,
                                            dry_run boolean DEFAULT false,
                                            max_failures integer DEFAULT 10)
LANGUAGE plpgsql
AS $$
#variable_conflict use_variable
DECLARE
    digest      text;
    canary      boolean := tenants IS NOT NULL;
    ids         text[];
    schemas     name[];
    n_templates integer;
    n_tenants   integer;
    skipped     integer;
    ok          integer := 0;
    failed      integer := 0;
    stopped     boolean := false;
    i           integer;
    st          text;
    msg         text;
    bad         text;
    t0          timestamptz;
    started     timestamptz;
    last_notice timestamptz;
BEGIN
    IF NOT pg_catalog.pg_has_role('keys_guard_admin', 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to migrate tenants'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only members of keys_guard_admin can run keys_guard.migrate_tenants().';
    END IF;
    IF migration IS NULL OR sql IS NULL OR dry_run IS NULL OR max_failures IS NULL THEN
        RAISE EXCEPTION 'migration, sql, dry_run and max_failures must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF pg_catalog.length(migration) OPERATOR(pg_catalog.<) 1
       OR pg_catalog.length(migration) OPERATOR(pg_catalog.>) 200
       OR migration OPERATOR(pg_catalog.~) '[\x01-\x1f\x7f-\x9f\u2028\u2029]' THEN
        RAISE EXCEPTION 'invalid migration name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A migration name is 1 to 200 characters, without control characters.';
    END IF;
    IF max_failures OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'max_failures must be at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    digest := keys_guard._migration_check(sql);
    SELECT l.schema_name INTO bad FROM keys_guard.tenant_migrations l
     WHERE l.migration OPERATOR(pg_catalog.=) migration
       AND l.sql_sha256 OPERATOR(pg_catalog.<>) digest LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'migration "%" already ran with different SQL', migration
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('Schema %s has it in keys_guard.tenant_migrations with other SQL.', bad),
                  HINT = 'A migration name stands for one SQL text; give a changed migration a new name.';
    END IF;

    IF canary THEN
        IF pg_catalog.cardinality(tenants) OPERATOR(pg_catalog.=) 0 THEN
            RAISE EXCEPTION 'tenants must not be empty'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass NULL to migrate every active tenant.';
        END IF;
        IF pg_catalog.array_position(tenants, NULL) IS NOT NULL THEN
            RAISE EXCEPTION 'tenants must not contain null'
                USING ERRCODE = 'null_value_not_allowed';
        END IF;
        SELECT u.id INTO bad FROM pg_catalog.unnest(tenants) AS u(id)
         WHERE NOT EXISTS (SELECT 1 FROM keys_guard.tenants t WHERE t.id OPERATOR(pg_catalog.=) u.id)
         LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'tenant "%" does not exist', pg_catalog.left(bad, 64)
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Every tenant of the list must be registered; nothing was migrated.';
        END IF;
        SELECT t.id INTO bad FROM keys_guard.tenants t
         WHERE t.id OPERATOR(pg_catalog.=) ANY (tenants)
           AND t.status OPERATOR(pg_catalog.<>) 'active' LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'tenant "%" is not active', bad
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'Only active tenants are migrated; nothing was migrated.';
        END IF;
    END IF;

    -- What would run; with dry_run that is all.
    SELECT pg_catalog.array_agg(p.tenant), pg_catalog.array_agg(p.schema_name)
      INTO ids, schemas FROM keys_guard._migration_plan(migration, tenants) p;
    ids := COALESCE(ids, '{}'::text[]);
    schemas := COALESCE(schemas, '{}'::name[]);
    SELECT pg_catalog.count(*) FILTER (WHERE x.id IS NULL) INTO n_templates
      FROM pg_catalog.unnest(ids) AS x(id);
    n_tenants := pg_catalog.cardinality(ids) OPERATOR(pg_catalog.-) n_templates;
    SELECT pg_catalog.count(*) INTO skipped FROM keys_guard.tenant_migrations l
     WHERE l.migration OPERATOR(pg_catalog.=) migration AND l.status OPERATOR(pg_catalog.=) 'ok'
       AND l.tenant IS NOT NULL
       AND (NOT canary OR l.tenant OPERATOR(pg_catalog.=) ANY (tenants));
    IF dry_run THEN
        RAISE NOTICE 'migration "%" would run in % template schemas and % tenant schemas; % tenants already have it',
                     migration, n_templates, n_tenants, skipped
            USING DETAIL = CASE WHEN pg_catalog.cardinality(schemas) OPERATOR(pg_catalog.=) 0
                                THEN 'Nothing to do.'
                                ELSE pg_catalog.format('Schemas, in order: %s%s.',
                                         pg_catalog.array_to_string(schemas[1:50], ', '),
                                         CASE WHEN pg_catalog.cardinality(schemas) OPERATOR(pg_catalog.>) 50
                                              THEN pg_catalog.format(' and %s more',
                                                   pg_catalog.cardinality(schemas) OPERATOR(pg_catalog.-) 50)
                                              ELSE '' END) END;
        RETURN;
    END IF;

    -- A CALL inside a transaction block cannot commit: refused here
    -- (2D000), before anything is locked, written or migrated.
    COMMIT;

    -- One run of a migration at a time (a session lock: it spans the
    -- commits, and goes with the session if the session is killed).
    IF NOT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('keys_guard.migrate_tenants'),
                                           pg_catalog.hashtext(migration)) THEN
        RAISE EXCEPTION 'migration "%" is already running', migration
            USING ERRCODE = 'object_in_use',
                  HINT = 'Its progress is in keys_guard.tenant_migration_progress.';
    END IF;
    PERFORM keys_guard._migration_audit(migration, 'start', sql, n_tenants, 0, 0, skipped,
                                        canary, false);
    COMMIT;

    started := pg_catalog.clock_timestamp();
    last_notice := started;
    FOR i IN 1 .. pg_catalog.cardinality(ids) LOOP
        t0 := pg_catalog.clock_timestamp();
        BEGIN
            PERFORM keys_guard._migrate_schema(migration, ids[i], schemas[i], sql);
            IF ids[i] IS NOT NULL THEN
                ok := ok OPERATOR(pg_catalog.+) 1;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
            PERFORM keys_guard._migration_failed(migration, ids[i], schemas[i], sql, st, msg,
                                                 pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) t0);
            IF ids[i] IS NULL THEN
                COMMIT;
                PERFORM keys_guard._migration_audit(migration, 'finish', sql, n_tenants, 0, 0,
                                                    skipped, canary, true);
                COMMIT;
                PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('keys_guard.migrate_tenants'),
                                                      pg_catalog.hashtext(migration));
                RAISE EXCEPTION 'migration "%" failed in template schema "%"', migration, schemas[i]
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          DETAIL = pg_catalog.format('%s: %s', st, msg),
                          HINT = 'No tenant was migrated. Fix the migration or the template, then call migrate_tenants() again.';
            END IF;
            failed := failed OPERATOR(pg_catalog.+) 1;
            RAISE WARNING 'migration "%" failed in schema "%": %', migration, schemas[i], msg
                USING DETAIL = pg_catalog.format('SQLSTATE %s; recorded in keys_guard.tenant_migrations.', st);
        END;
        COMMIT;
        IF failed OPERATOR(pg_catalog.>=) max_failures THEN
            stopped := true;
            EXIT;
        END IF;
        IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) last_notice
               OPERATOR(pg_catalog.>=) interval '10 seconds'
           OR i OPERATOR(pg_catalog.%) 1000 OPERATOR(pg_catalog.=) 0 THEN
            last_notice := pg_catalog.clock_timestamp();
            RAISE NOTICE 'migration "%": % of % schemas done, % failed, %',
                         migration, i, pg_catalog.cardinality(ids), failed,
                         pg_catalog.date_trunc('second', last_notice OPERATOR(pg_catalog.-) started);
        END IF;
    END LOOP;

    PERFORM keys_guard._migration_audit(migration, 'finish', sql, n_tenants, ok, failed, skipped,
                                        canary, stopped);
    COMMIT;
    PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('keys_guard.migrate_tenants'),
                                          pg_catalog.hashtext(migration));
    IF stopped THEN
        RAISE EXCEPTION 'migration "%" stopped after % failures', migration, failed
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = pg_catalog.format('%s tenants migrated, %s failed, %s not attempted.',
                                             ok, failed, n_tenants OPERATOR(pg_catalog.-) ok
                                                 OPERATOR(pg_catalog.-) failed),
                  HINT = 'keys_guard.tenant_migrations has each error; fix them and call migrate_tenants() again: tenants already migrated are skipped.';
    ELSIF failed OPERATOR(pg_catalog.>) 0 THEN
        RAISE WARNING 'migration "%" failed in % of % tenants', migration, failed, n_tenants
            USING DETAIL = pg_catalog.format('%s tenants migrated, %s already had it.', ok, skipped),
                  HINT = 'keys_guard.tenant_migrations has each error; call migrate_tenants() again to retry them.';
    ELSE
        RAISE NOTICE 'migration "%": % tenants migrated, % already had it', migration, ok, skipped;
    END IF;
END
$$;
REVOKE ALL ON PROCEDURE keys_guard.migrate_tenants(text, text, text[], boolean, integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE keys_guard.migrate_tenants(text, text, text[], boolean, integer)
    TO keys_guard_admin;

-- Whether a parent needs its cascade trigger: its foreign keys are found
-- through pg_depend's index on the referenced object (a foreign key depends
-- on the table it references) instead of a scan of pg_constraint, which
-- has no index on confrelid and grows with every tenant; this runs for
-- every CREATE and ALTER TABLE (the event trigger), so with 10 000 tenants
-- that scan made create_tenant and every migration slower as tenants
-- accumulated.
CREATE OR REPLACE FUNCTION keys_guard._sync_cascade_trigger(parent regclass)
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
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                     JOIN pg_catalog.pg_constraint c ON c.oid = d.objid
                     JOIN keys_guard.guarded_table ch ON ch.relid = c.conrelid AND ch.soft_delete
                    WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = parent
                      AND d.classid = 'pg_catalog.pg_constraint'::regclass
                      AND c.confrelid = parent AND c.contype = 'f' AND c.confdeltype = 'c')
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

-- The relations of a schema, through pg_depend's index on the referenced
-- object (every relation but a composite type or a TOAST table depends on
-- its namespace): pg_class has no index on relnamespace, and with 10 000
-- tenants a scan of it made every create_tenant from a template slower as
-- tenants accumulated.  The template functions below list the template's
-- relations with it; otherwise they are those of 1.2.
CREATE FUNCTION keys_guard._namespace_relations(nsp oid)
RETURNS SETOF pg_catalog.pg_class
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_class c ON c.oid = d.objid
     WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass AND d.refobjid = nsp
       AND d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0
       AND c.relnamespace = nsp
$$;
REVOKE ALL ON FUNCTION keys_guard._namespace_relations(oid) FROM PUBLIC;

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
      FROM keys_guard._namespace_relations(nsp) c
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
      FROM keys_guard._namespace_relations(nsp) c
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

CREATE OR REPLACE FUNCTION keys_guard._clone_sequences(tpl oid, target name)
RETURNS TABLE (source regclass, clone regclass)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT c.oid, c.relname, c.relpersistence, q.*
               FROM keys_guard._namespace_relations(tpl) c
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

CREATE OR REPLACE FUNCTION keys_guard._clone_template(tpl oid, target name)
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

    FOR t IN SELECT c.oid::regclass AS rel FROM keys_guard._namespace_relations(tpl) c
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
      FROM keys_guard._namespace_relations(tpl) c
     WHERE c.relnamespace = tpl AND c.relkind IN ('v', 'm', 'f');
    IF skipped IS NOT NULL THEN
        RAISE NOTICE 'only the tables of template schema "%" are cloned',
                     (SELECT nspname FROM pg_catalog.pg_namespace WHERE oid = tpl)
            USING DETAIL = format('Not cloned: %s.', skipped);
    END IF;

    RETURN QUERY SELECT key::oid::regclass, value::oid::regclass FROM jsonb_each_text(pairs);
END
$$;

-- The fail-closed policy's function is immutable from 1.3 on: whether the
-- library is preloaded cannot change without a restart, which no plan
-- outlives.  So the planner evaluates it once, when it plans (true, or the
-- "not loaded" error that closes the table), instead of once per row and
-- once per execution, which pooled point lookups paid for.
ALTER FUNCTION keys_guard._guard_active() IMMUTABLE;

-- A pooled table's tenant column is checked by two row triggers from 1.3
-- on: BEFORE INSERT (fills in the current tenant, refuses another's) and
-- AFTER UPDATE, only when the column changed (refuses another tenant's).
-- An UPDATE that leaves the column alone, a soft DELETE included, fires
-- neither; a BEFORE UPDATE row trigger would lock every row it updates.
CREATE FUNCTION keys_guard._create_tenant_triggers(r regclass, p_tenant_column name)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER keys_guard_tenant BEFORE INSERT ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION keys_guard._tenant_row_guard(%L)',
                   r, p_tenant_column);
    EXECUTE format('CREATE TRIGGER keys_guard_tenant_update AFTER UPDATE ON %s'
                   ' FOR EACH ROW WHEN (OLD.%I IS DISTINCT FROM NEW.%I)'
                   ' EXECUTE FUNCTION keys_guard._tenant_row_guard(%L)',
                   r, p_tenant_column, p_tenant_column, p_tenant_column);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER keys_guard_tenant', r);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER keys_guard_tenant_update', r);
END
$$;
REVOKE ALL ON FUNCTION keys_guard._create_tenant_triggers(regclass, name) FROM PUBLIC;

-- Put the guards on one table and record it.  Caller has validated options.
CREATE OR REPLACE FUNCTION keys_guard._apply_guard(r regclass, p_tenant_id text,
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
        PERFORM keys_guard._create_tenant_triggers(r, p_tenant_column);
    END IF;
    PERFORM keys_guard._sync_guard(r, p_soft_delete, p_class);

    INSERT INTO keys_guard.guarded_table
        (relid, tenant_id, tenant_column, soft_delete, grace, class, created_policy)
    VALUES (r, p_tenant_id, p_tenant_column, p_soft_delete, p_grace, p_class,
            NOT had_permissive);
    PERFORM keys_guard._sync_cascades_of(r);
END
$$;

-- The pooled tables guarded before 1.3 get the two triggers.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT gt.relid::regclass AS r, gt.tenant_column
               FROM keys_guard.guarded_table gt
              WHERE gt.tenant_column IS NOT NULL
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = gt.relid) LOOP
        PERFORM keys_guard._drop_trigger(g.r, 'keys_guard_tenant');
        PERFORM keys_guard._create_tenant_triggers(g.r, g.tenant_column);
    END LOOP;
END
$$;

-- set_context() is made again with PostgreSQL's default EXECUTE privilege
-- (PUBLIC).  It refuses every caller but members of keys_guard_gateway and
-- keys_guard_admin itself, before it reads its arguments, as use_api_key()
-- and set_context_from_token() do for theirs; the catalog ACL of 1.0–1.2
-- only repeated that check, and a function with a non-default ACL makes
-- every statement that calls it look its pg_proc row's last column up
-- field by field, about 1.3 % of a request's instructions.  Dropping it is
-- the only way back to no ACL at all; where the database has objects that
-- depend on it (an application's function with a SQL-standard body that
-- calls it, say), it is kept and given the default privilege's grants
-- instead, with the same effect and the lookup's cost.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass
                  AND d.refobjid = 'keys_guard.set_context(text, text, text, boolean)'::regprocedure
                  AND d.deptype = 'n') THEN
        -- In the default's order: PUBLIC, then the owner.
        REVOKE ALL ON FUNCTION keys_guard.set_context(text, text, text, boolean)
            FROM keys_guard_gateway, keys_guard_admin, CURRENT_USER;
        GRANT EXECUTE ON FUNCTION keys_guard.set_context(text, text, text, boolean) TO PUBLIC;
        GRANT EXECUTE ON FUNCTION keys_guard.set_context(text, text, text, boolean) TO CURRENT_USER;
    ELSE
        DROP FUNCTION keys_guard.set_context(text, text, text, boolean);
        CREATE FUNCTION keys_guard.set_context(tenant text, actor text,
                                               request_id text DEFAULT NULL,
                                               is_local boolean DEFAULT true)
        RETURNS void
        LANGUAGE C VOLATILE
        AS 'MODULE_PATHNAME', 'keys_guard_set_context';
    END IF;
END
$$;

-- release_all() forgets the tenants' API keys with the tenants (the keys'
-- foreign key refused the release once a tenant had a key).  Its
-- privileges stay as 1.2 set them.
CREATE OR REPLACE FUNCTION keys_guard.release_all(confirm boolean DEFAULT false,
                                       dry_run boolean DEFAULT false)
RETURNS TABLE (object_type text, object text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
    released int := 0;
    forgotten int := 0;
    keys bigint := 0;
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
    -- API keys belong to their tenants: forgotten with them.
    DELETE FROM keys_guard.api_key;
    GET DIAGNOSTICS keys = ROW_COUNT;
    FOR g IN DELETE FROM keys_guard.tenant RETURNING id LOOP
        object_type := 'tenant';
        object := g.id;
        forgotten := forgotten + 1;
        RETURN NEXT;
    END LOOP;
    DELETE FROM keys_guard.purge_stats;
    PERFORM keys_guard._audit('release_all', NULL,
                              jsonb_build_object('tables', released, 'tenants', forgotten,
                                                 'api_keys', keys));
END
$$;
