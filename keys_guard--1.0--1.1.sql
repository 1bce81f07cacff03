/* keys_guard--1.0--1.1.sql: guard rails and control plane (docs/contract.md §11) */

\echo Use "ALTER EXTENSION keys_guard UPDATE TO '1.1'" to load this file. \quit

--
-- The registry changes only through keys_guard's functions, superusers
-- included (src/control.c).  INSERT under keys_guard.bypass stays open for
-- pg_restore.
--
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

--
-- Governance version: increases with every change of the registry of
-- tenants and guarded tables.  A sequence, so that pg_dump carries it over
-- and a restored database goes on counting from where the dump was taken.
--
CREATE SEQUENCE keys_guard.governance_version AS bigint MINVALUE 1;
REVOKE ALL ON SEQUENCE keys_guard.governance_version FROM PUBLIC;
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

-- Installations that already have a registry start above zero.
SELECT pg_catalog.nextval('keys_guard.governance_version')
 WHERE EXISTS (SELECT 1 FROM keys_guard.tenant)
    OR EXISTS (SELECT 1 FROM keys_guard.guarded_table);

--
-- snapshot(): the governance state as one jsonb document.
--
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
REVOKE ALL ON FUNCTION keys_guard.snapshot() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.snapshot() TO keys_guard_admin;
GRANT SELECT ON SEQUENCE keys_guard.governance_version TO keys_guard_admin;

--
-- Explicit removal.
--
DROP FUNCTION keys_guard.release_table(text);
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

REVOKE ALL ON FUNCTION keys_guard.release_table(text, boolean),
    keys_guard.release_all(boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.release_table(text, boolean) TO keys_guard_admin;
-- release_all is for the database owner's superuser only: it is the path
-- to DROP EXTENSION.

--
-- pg_dump carries the audit log over (a configuration table), but not the
-- identity sequence behind its ids: a restored database would hand out ids
-- that are already taken.  Its ids now come from an ordinary sequence of
-- the extension, which pg_dump carries over too.
--
ALTER TABLE keys_guard.audit_log ALTER COLUMN id DROP IDENTITY;
CREATE SEQUENCE keys_guard.audit_log_id_seq AS bigint OWNED BY keys_guard.audit_log.id;
SELECT pg_catalog.setval('keys_guard.audit_log_id_seq',
                         coalesce((SELECT max(id) FROM keys_guard.audit_log), 0) + 1, false);
ALTER TABLE keys_guard.audit_log
    ALTER COLUMN id SET DEFAULT pg_catalog.nextval('keys_guard.audit_log_id_seq');
REVOKE ALL ON SEQUENCE keys_guard.audit_log_id_seq FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('keys_guard.audit_log_id_seq', '');

--
-- Tenant templates (docs/contract.md §4):
-- create_tenant(id, name, template => 'schema') clones every table of a
-- template schema into the new tenant's schema.  Only structure is cloned,
-- never rows.
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
-- parsed or interpolated.
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
    min_grace  interval := (SELECT pg_catalog.justify_hours(pg_catalog.make_interval(secs => setting::float8))
                              FROM pg_catalog.pg_settings WHERE name = 'keys_guard.min_grace');
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

DROP FUNCTION keys_guard.create_tenant(text, text);

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
-- Issue 5 items 3 and 5 (helper D): keys_guard.doctor() and the view
-- keys_guard.operations.  For keys_guard--1.0--1.1.sql, after the 1.1
-- functions (release_table(text, boolean), release_all, snapshot,
-- create_tenant(text, text, text)) exist.
--

--
-- Drift report (docs/contract.md §11).  One row per problem, each with the statement
-- that repairs it:
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
--
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
                                       left(g.relname, 48) || '_kg_purge', g.qname)
                ELSE pg_catalog.format('REINDEX INDEX %s', ix.indexrelid::regclass) END,
           NULL
      FROM live g
      LEFT JOIN LATERAL (
            SELECT i.indexrelid, i.indisvalid FROM pg_catalog.pg_index i
             WHERE i.indrelid = g.relid
               AND pg_catalog.pg_get_indexdef(i.indexrelid)
                   LIKE '%(hard_delete_at) WHERE (deleted_at IS NOT NULL)'
             ORDER BY i.indisvalid DESC, i.indexrelid LIMIT 1) ix ON true
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

REVOKE ALL ON FUNCTION keys_guard.doctor() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.doctor() TO keys_guard_admin;

--
-- Runbook catalog (docs/contract.md §11): every public keys_guard function with its
-- safety class, side effects, preconditions and the argument that makes a
-- call harmless (dry_run) or deliberate (confirm).  The list is curated
-- here and joined to pg_proc, so a function dropped or renamed disappears
-- from the view; the regression suite checks that every public function
-- has its row.
--
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

REVOKE ALL ON keys_guard.operations FROM PUBLIC;
GRANT SELECT ON keys_guard.operations TO keys_guard_admin;
