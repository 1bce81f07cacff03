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
 * tenant's keys; the runbook view lists the new functions.
 */

\echo Use "ALTER EXTENSION keys_guard UPDATE TO '1.3'" to load this file. \quit

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

REVOKE ALL ON FUNCTION keys_guard.create_api_key(text, text, text[], interval, boolean),
    keys_guard.use_api_key(text), keys_guard.rotate_api_key(uuid, interval),
    keys_guard.revoke_api_key(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_guard.create_api_key(text, text, text[], interval, boolean),
    keys_guard.rotate_api_key(uuid, interval), keys_guard.revoke_api_key(uuid)
    TO keys_guard_admin, keys_guard_gateway;
GRANT EXECUTE ON FUNCTION keys_guard.use_api_key(text) TO keys_guard_keyholder;

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

-- The runbook catalog lists the key functions.
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
         NULL)
      ) AS l(signature, safety_class, side_effects, preconditions, guard_argument)
      JOIN pg_catalog.pg_proc p ON p.oid = pg_catalog.to_regprocedure(l.signature)
     ORDER BY p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) COLLATE "C";
