--
-- upgrade: every way to keys_guard 1.3 ends in the same objects.
--
-- A fresh CREATE EXTENSION keys_guard runs the full script
-- keys_guard--1.2.sql and then keys_guard--1.2--1.3.sql (there is no full
-- 1.3 script).  A database that started at 1.0 (or 1.1) ran the released
-- install script and reaches 1.3 through keys_guard--1.0--1.1.sql,
-- keys_guard--1.1--1.2.sql and keys_guard--1.2--1.3.sql.  They are compared
-- object by object, with full definitions, and every difference is listed:
-- the expected output has none.  Tenants, guards and rows come through the
-- update.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
SELECT current_database() AS regress_db \gset

-- What an installed keys_guard consists of, one row per (kind, object):
-- every member object with its full definition (functions, views,
-- sequences, tables, event triggers), the columns, constraints, indexes,
-- triggers, policies and rules of its tables, the owner and privileges of
-- every object (as sets of grants) and their initial privileges (what
-- pg_dump takes as the extension's own), comments, the configuration
-- tables, the extension itself and the roles the scripts create.
SELECT $q$
WITH ext AS (
    SELECT e.oid, e.extversion, e.extrelocatable, e.extnamespace, e.extconfig, e.extcondition
      FROM pg_catalog.pg_extension e WHERE e.extname = 'keys_guard'
),
member AS (
    SELECT d.classid, d.objid, d.objsubid
      FROM pg_catalog.pg_depend d JOIN ext ON d.refobjid = ext.oid
     WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
),
rel AS (
    SELECT c.* FROM pg_catalog.pg_class c
      JOIN member m ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = c.oid
),
acl AS (
    SELECT 'pg_catalog.pg_proc'::regclass AS classid, p.oid AS objid, 0 AS objsubid,
           p.proowner AS owner, coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner)) AS acl
      FROM pg_catalog.pg_proc p JOIN member m ON m.classid = 'pg_catalog.pg_proc'::regclass AND m.objid = p.oid
    UNION ALL
    SELECT 'pg_catalog.pg_class'::regclass, r.oid, 0, r.relowner,
           coalesce(r.relacl, pg_catalog.acldefault(CASE r.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", r.relowner))
      FROM rel r
    UNION ALL
    SELECT 'pg_catalog.pg_class'::regclass, a.attrelid, a.attnum, r.relowner, a.attacl
      FROM rel r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid
     WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
    UNION ALL
    SELECT 'pg_catalog.pg_namespace'::regclass, n.oid, 0, n.nspowner,
           coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))
      FROM pg_catalog.pg_namespace n JOIN ext ON n.oid = ext.extnamespace
)
-- Every member object, with its full definition.
SELECT 'member' AS kind, pg_catalog.pg_describe_object(m.classid, m.objid, m.objsubid) AS object,
       CASE m.classid
       WHEN 'pg_catalog.pg_proc'::regclass THEN pg_catalog.pg_get_functiondef(m.objid)
       WHEN 'pg_catalog.pg_class'::regclass THEN
           (SELECT CASE r.relkind
                   WHEN 'v' THEN pg_catalog.pg_get_viewdef(r.oid)
                   WHEN 'S' THEN
                       (SELECT pg_catalog.format('AS %s INCREMENT %s MINVALUE %s MAXVALUE %s START %s CACHE %s%s%s',
                                                 s.seqtypid::regtype, s.seqincrement, s.seqmin, s.seqmax,
                                                 s.seqstart, s.seqcache,
                                                 CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END,
                                                 (SELECT pg_catalog.format(' OWNED BY %s.%I', d.refobjid::regclass, a.attname)
                                                    FROM pg_catalog.pg_depend d
                                                    JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                                   WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = r.oid
                                                     AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')))
                          FROM pg_catalog.pg_sequence s WHERE s.seqrelid = r.oid)
                   ELSE pg_catalog.format('relkind %s persistence %s row security %s forced %s replica identity %s options %s',
                                          r.relkind, r.relpersistence, r.relrowsecurity, r.relforcerowsecurity,
                                          r.relreplident, r.reloptions)
                   END
              FROM rel r WHERE r.oid = m.objid)
       WHEN 'pg_catalog.pg_event_trigger'::regclass THEN
           (SELECT pg_catalog.format('ON %s EXECUTE FUNCTION %s TAGS %s ENABLED %s',
                                     e.evtevent, e.evtfoid::regprocedure, e.evttags, e.evtenabled)
              FROM pg_catalog.pg_event_trigger e WHERE e.oid = m.objid)
       END AS definition
  FROM member m
UNION ALL
-- The columns of keys_guard's tables and views.
SELECT 'column', pg_catalog.format('%s.%I', r.oid::regclass, a.attname),
       pg_catalog.format('#%s %s%s%s%s%s%s', a.attnum, pg_catalog.format_type(a.atttypid, a.atttypmod),
                         CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                         ' DEFAULT ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid),
                         CASE a.attidentity WHEN '' THEN '' ELSE ' IDENTITY ' || a.attidentity::text END,
                         CASE a.attgenerated WHEN '' THEN '' ELSE ' GENERATED ' || a.attgenerated::text END,
                         CASE WHEN a.attcollation <> t.typcollation
                              THEN ' COLLATE ' || a.attcollation::regcollation END)
  FROM rel r
  JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE r.relkind IN ('r', 'v')
UNION ALL
SELECT 'constraint', pg_catalog.format('%I on %s', c.conname, c.conrelid::regclass),
       pg_catalog.pg_get_constraintdef(c.oid)
       || CASE WHEN c.condeferrable THEN ' DEFERRABLE' ELSE '' END
  FROM rel r JOIN pg_catalog.pg_constraint c ON c.conrelid = r.oid
UNION ALL
SELECT 'index', i.indexrelid::regclass::text,
       pg_catalog.pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END
  FROM rel r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
UNION ALL
SELECT 'trigger', pg_catalog.format('%I on %s', t.tgname, t.tgrelid::regclass),
       pg_catalog.pg_get_triggerdef(t.oid) || ' ENABLED ' || t.tgenabled::text
  FROM rel r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
UNION ALL
SELECT 'policy', pg_catalog.format('%I on %s', p.polname, p.polrelid::regclass),
       pg_catalog.format('%s FOR %s TO %s USING (%s) WITH CHECK (%s)',
                         CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END, p.polcmd,
                         p.polroles::regrole[], pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                         pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
  FROM rel r JOIN pg_catalog.pg_policy p ON p.polrelid = r.oid
UNION ALL
SELECT 'rule', pg_catalog.format('%I on %s', w.rulename, w.ev_class::regclass), pg_catalog.pg_get_ruledef(w.oid)
  FROM rel r JOIN pg_catalog.pg_rewrite w ON w.ev_class = r.oid
 WHERE r.relkind <> 'v'
UNION ALL
-- Owners and privileges as sets of grants, and the initial privileges
-- (pg_init_privs) that pg_dump takes as the extension's own.
SELECT w.kind, pg_catalog.pg_describe_object(a.classid, a.objid, a.objsubid),
       w.prefix
       || coalesce((SELECT pg_catalog.string_agg(pg_catalog.format('%s %s%s by %s',
                                                  CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END,
                                                  x.privilege_type, CASE WHEN x.is_grantable THEN ' (grantable)' ELSE '' END,
                                                  x.grantor::regrole),
                                                 ', ' ORDER BY 1)
                      FROM pg_catalog.aclexplode(w.acl) AS x), 'no grants')
  FROM acl a
 CROSS JOIN LATERAL (SELECT 'privileges', 'owner ' || a.owner::regrole || ', ', a.acl
                     UNION ALL
                     SELECT 'initial privileges', i.privtype::text || ': ', i.initprivs
                       FROM pg_catalog.pg_init_privs i
                      WHERE i.classoid = a.classid AND i.objoid = a.objid AND i.objsubid = a.objsubid)
       AS w(kind, prefix, acl)
UNION ALL
SELECT 'comment', pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
  FROM pg_catalog.pg_description d
 WHERE (d.classoid, d.objoid) IN (SELECT a.classid, a.objid FROM acl a
                                  UNION ALL SELECT 'pg_catalog.pg_extension'::regclass, ext.oid FROM ext
                                  UNION ALL SELECT m.classid, m.objid FROM member m)
UNION ALL
SELECT 'extension', 'keys_guard',
       pg_catalog.format('version %s relocatable %s schema %s', ext.extversion, ext.extrelocatable,
                         ext.extnamespace::regnamespace)
  FROM ext
UNION ALL
SELECT 'configuration table', c.oid::regclass::text, pg_catalog.format('dumped WHERE %L', cond)
  FROM ext, unnest(ext.extconfig, ext.extcondition) AS x(reloid, cond)
  JOIN pg_catalog.pg_class c ON c.oid = x.reloid
UNION ALL
-- The roles the install scripts create (cluster-wide).
SELECT 'role', r.rolname::text,
       pg_catalog.format('super %s inherit %s createrole %s createdb %s login %s replication %s bypassrls %s'
                         ' connlimit %s config %s member of %s',
                         r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
                         r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolconfig,
                         (SELECT pg_catalog.array_agg(m.roleid::regrole ORDER BY m.roleid::regrole::text)
                            FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid))
  FROM pg_catalog.pg_roles r
 WHERE r.rolname LIKE 'keys\_guard%'
$q$ AS members \gset

-- The differences between this database and the fresh install saved in
-- kg_fresh_objects: for a definition that differs, its first differing line.
SELECT $q$
SELECT coalesce(f.kind, u.kind) AS kind, coalesce(f.object, u.object) AS object,
       CASE WHEN u.object IS NULL THEN 'missing after the update'
            WHEN f.object IS NULL THEN 'only after the update'
            ELSE (SELECT pg_catalog.format('line %s: fresh %s, updated %s', d.n,
                                           coalesce(pg_catalog.quote_literal(d.fresh), 'nothing'),
                                           coalesce(pg_catalog.quote_literal(d.updated), 'nothing'))
                    FROM ROWS FROM (unnest(pg_catalog.string_to_array(f.definition, E'\n')),
                                    unnest(pg_catalog.string_to_array(u.definition, E'\n')))
                         WITH ORDINALITY AS d(fresh, updated, n)
                   WHERE d.fresh IS DISTINCT FROM d.updated
                   ORDER BY d.n LIMIT 1) END AS difference
  FROM kg_fresh_objects f
  FULL JOIN ($q$ || :'members' || $q$) u ON u.kind = f.kind AND u.object = f.object
 WHERE f.object IS NULL OR u.object IS NULL OR f.definition IS DISTINCT FROM u.definition
 ORDER BY 1, 2
$q$ AS differences \gset

-- The roles are cluster-wide and the scripts create them only when
-- missing.  Set the existing ones aside, so that each way creates its own
-- and they can be compared too.
SELECT format('ALTER ROLE %I RENAME TO %I', rolname, 'kg_upgrade_saved_' || rolname)
  FROM pg_roles WHERE rolname IN ('keys_guard_admin', 'keys_guard_gateway', 'keys_guard_keyholder', 'keys_guard_client')
 ORDER BY 1 \gexec

--
-- 1. A fresh install.
--
CREATE DATABASE kg_fresh;
\c kg_fresh
CREATE EXTENSION keys_guard;
SELECT extversion FROM pg_extension WHERE extname = 'keys_guard';
-- It ran keys_guard--1.2.sql, not the chain from 1.0: there
-- _assert_conflict_row (new in 1.2) is created before create_tenant (new
-- in 1.1); and then keys_guard--1.2--1.3.sql.
SELECT 'keys_guard._assert_conflict_row(oid,text,timestamptz)'::regprocedure::oid
       < 'keys_guard.create_tenant(text,text,text)'::regprocedure::oid AS ran_full_script;
-- Each kind of row is there, and each object has one row.
SELECT kind, count(*) = count(DISTINCT object) AS one_row_each
  FROM (:members) AS m GROUP BY kind ORDER BY kind;
SELECT jsonb_agg(jsonb_build_object('kind', kind, 'object', object, 'definition', definition))
       AS fresh_objects
  FROM (:members) AS m \gset
\c :regress_db
DROP DATABASE kg_fresh;
DROP ROLE keys_guard_admin, keys_guard_gateway, keys_guard_keyholder, keys_guard_client;

--
-- 2. A database created with 1.0, with data, updated to 1.3.
--
CREATE DATABASE kg_upgraded;
\c kg_upgraded
\set SHOW_CONTEXT never
CREATE EXTENSION keys_guard VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'keys_guard';
SELECT id FROM keys_guard.create_tenant('up');
CREATE TABLE tenant_up.notes (id int PRIMARY KEY, body text);
CREATE TABLE shared (id int PRIMARY KEY, tenant_id text NOT NULL, v int);
SELECT relation FROM keys_guard.protect_table('shared', tenant_column => 'tenant_id');
-- A pooled table whose tenant column has a nondeterministic collation,
-- which 1.0 guarded (1.3 refuses it): "up" and "u-p" compare equal there.
SELECT id FROM keys_guard.create_tenant('u-p');
CREATE COLLATION up_ignore_punct (provider = icu, locale = 'und-u-ka-shifted', deterministic = false);
CREATE TABLE shared_ci (id int PRIMARY KEY, tenant_id text COLLATE up_ignore_punct NOT NULL, v text);
SELECT relation FROM keys_guard.protect_table('shared_ci', tenant_column => 'tenant_id');
BEGIN;
SELECT keys_guard.set_context('up', 'migrator');
INSERT INTO notes VALUES (1, 'kept'), (2, 'soft-deleted');
INSERT INTO shared VALUES (1, 'up', 1);
INSERT INTO shared_ci VALUES (1, 'up', 'up''s row');
DELETE FROM notes WHERE id = 2;
COMMIT;
BEGIN;
SELECT keys_guard.set_context('u-p', 'migrator');
INSERT INTO shared_ci VALUES (2, 'u-p', 'u-p''s row');
COMMIT;
-- 1.0 has no snapshot() yet.
SELECT keys_guard.snapshot();
\echo :LAST_ERROR_SQLSTATE

ALTER EXTENSION keys_guard UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'keys_guard';
SELECT 'keys_guard._assert_conflict_row(oid,text,timestamptz)'::regprocedure::oid
       < 'keys_guard.create_tenant(text,text,text)'::regprocedure::oid AS ran_full_script;
-- No differences from the fresh install.
CREATE TEMP TABLE kg_fresh_objects AS
    SELECT * FROM jsonb_to_recordset(:'fresh_objects') AS f(kind text, object text, definition text);
:differences;

-- Tenants, guards and rows came through.
SELECT id, status FROM keys_guard.tenants;
SELECT relation, kind, soft_delete FROM keys_guard.guarded_tables ORDER BY relation::text;
BEGIN;
SELECT keys_guard.set_context('up', 'reader');
SELECT id, body FROM notes ORDER BY id;
SELECT id, tenant_id FROM shared;
COMMIT;
-- Each tenant sees only its own rows of shared_ci: the filter compares
-- tenant ids byte for byte, whatever the column's collation.
BEGIN;
SELECT keys_guard.set_context('up', 'reader');
SELECT id, v FROM shared_ci ORDER BY id;
SELECT keys_guard.set_context('u-p', 'reader');
SELECT id, v FROM shared_ci ORDER BY id;
COMMIT;
-- The pooled table's tenant trigger became BEFORE INSERT plus AFTER UPDATE
-- when the column changes (1.3), and both work.
SELECT tgname, tgtype, tgenabled FROM pg_trigger
 WHERE tgrelid = 'shared'::regclass AND tgname LIKE 'keys_guard_tenant%' ORDER BY tgname;
BEGIN;
SELECT keys_guard.set_context('up', 'writer');
INSERT INTO shared (id, v) VALUES (2, 2);
UPDATE shared SET tenant_id = 'other' WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- 1.1 works on the upgraded registry: a version above zero (the registry
-- was not empty), the guard rails, the registry protection.
SELECT (keys_guard.snapshot()->>'version')::int > 0 AS has_version,
       jsonb_array_length(keys_guard.snapshot()->'guarded_tables') AS guarded_tables;
ALTER TABLE shared DISABLE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
UPDATE keys_guard.guarded_table SET soft_delete = false;
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.release_table('shared', dry_run => true);
-- Updating again is a no-op.
ALTER EXTENSION keys_guard UPDATE;
\c :regress_db
DROP DATABASE kg_upgraded;
DROP ROLE keys_guard_admin, keys_guard_gateway, keys_guard_keyholder, keys_guard_client;

--
-- 3. A database created with 1.1, with data, updated to 1.3.
--
CREATE DATABASE kg_upgraded;
\c kg_upgraded
\set SHOW_CONTEXT never
CREATE EXTENSION keys_guard VERSION '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'keys_guard';
SELECT id FROM keys_guard.create_tenant('later', 'Later Ltd');
CREATE TABLE tenant_later.orders (id int PRIMARY KEY, item text);
BEGIN;
SELECT keys_guard.set_context('later', 'migrator');
INSERT INTO orders VALUES (1, 'kept'), (2, 'soft-deleted');
DELETE FROM orders WHERE id = 2;
COMMIT;
-- 1.1 has no _assert_conflict_row() yet.
SELECT to_regprocedure('keys_guard._assert_conflict_row(oid,text,timestamptz)') IS NULL AS not_yet;

ALTER EXTENSION keys_guard UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'keys_guard';
-- No differences from the fresh install.
CREATE TEMP TABLE kg_fresh_objects AS
    SELECT * FROM jsonb_to_recordset(:'fresh_objects') AS f(kind text, object text, definition text);
:differences;

-- Tenants, guards and rows came through.
SELECT id, name, status FROM keys_guard.tenants;
SELECT relation, kind, soft_delete FROM keys_guard.guarded_tables ORDER BY relation::text;
BEGIN;
SELECT keys_guard.set_context('later', 'reader');
SELECT id, item FROM orders ORDER BY id;
COMMIT;
\c :regress_db
DROP DATABASE kg_upgraded;
DROP ROLE keys_guard_admin, keys_guard_gateway, keys_guard_keyholder, keys_guard_client;

--
-- 4. A database at 1.2 where an application's function depends on
-- set_context() (a SQL-standard body): the update cannot drop and make it
-- again with no ACL, so it keeps it and gives it the default privilege's
-- grants (anyone may call it; it checks its callers itself).  The only
-- difference from a fresh install is that these grants are recorded as
-- the function's initial privileges.
--
CREATE DATABASE kg_upgraded;
\c kg_upgraded
\set SHOW_CONTEXT never
CREATE EXTENSION keys_guard VERSION '1.2';
SELECT id FROM keys_guard.create_tenant('later', 'Later Ltd');
CREATE FUNCTION app_enter(t text) RETURNS void LANGUAGE sql
BEGIN ATOMIC
    SELECT keys_guard.set_context(t, 'app');
END;
ALTER EXTENSION keys_guard UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'keys_guard';
SELECT p.proacl IS NOT NULL AS kept,
       p.proacl::text[] = acldefault('f', p.proowner)::text[] AS default_grants
  FROM pg_proc p WHERE p.oid = 'keys_guard.set_context(text, text, text, boolean)'::regprocedure;
BEGIN;
SELECT app_enter('later');
SELECT keys_guard.current_tenant();
ROLLBACK;
\c :regress_db
DROP DATABASE kg_upgraded;
DROP ROLE keys_guard_admin, keys_guard_gateway, keys_guard_keyholder, keys_guard_client;

-- The roles of the regression database come back.
SELECT format('ALTER ROLE %I RENAME TO %I', rolname, substr(rolname, length('kg_upgrade_saved_') + 1))
  FROM pg_roles WHERE rolname LIKE 'kg\_upgrade\_saved\_%' ORDER BY 1 \gexec
SELECT rolname FROM pg_roles WHERE rolname LIKE 'keys\_guard%' OR rolname LIKE 'kg\_upgrade%'
 ORDER BY 1;
