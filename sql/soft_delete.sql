--
-- soft_delete: DELETE becomes a recoverable soft delete (docs/contract.md §7, §8)
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
-- Show command tags: the client must see "DELETE n".
\set QUIET off
SELECT id FROM keys_guard.create_tenant('sd');
CREATE TABLE tenant_sd.projects (id int PRIMARY KEY, title text NOT NULL);
CREATE TABLE tenant_sd.tasks (
    id int PRIMARY KEY,
    project_id int NOT NULL REFERENCES tenant_sd.projects ON DELETE CASCADE,
    title text
);
-- Only a table with soft-delete children (ON DELETE CASCADE) carries the
-- cascade trigger; every soft-delete table refuses physical deletes.
SELECT tgrelid::regclass, tgname FROM pg_trigger
 WHERE tgrelid IN ('tenant_sd.projects'::regclass, 'tenant_sd.tasks'::regclass)
   AND tgname LIKE 'keys_guard%' ORDER BY 1, 2;
-- The guard added the soft-delete columns.
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'tenant_sd.projects'::regclass AND attnum > 0 ORDER BY attnum;

BEGIN;
SELECT keys_guard.set_context('sd', 'alice', 'req-sd-1');
INSERT INTO projects VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four');
INSERT INTO tasks VALUES (10, 1, 'a'), (11, 1, 'b'), (12, 2, 'c');
-- The client sees DELETE n and RETURNING rows, as for a real delete.
DELETE FROM projects WHERE id = 1 RETURNING id, title;
-- A repeated DELETE matches nothing.
DELETE FROM projects WHERE id = 1;
-- Deleted rows are invisible: reads, joins, updates, deletes.
SELECT id, title FROM projects ORDER BY id;
SELECT t.id FROM tasks t JOIN projects p ON p.id = t.project_id ORDER BY 1;
UPDATE projects SET title = 'again' WHERE id = 1;
-- The cascade soft-deleted project 1's tasks in the same statement.
SELECT id FROM tasks ORDER BY id;
-- A child cannot reference a soft-deleted parent.
INSERT INTO tasks VALUES (13, 1, 'orphan');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Committed, then inspected by an admin with include_deleted.
BEGIN;
SELECT keys_guard.set_context('sd', 'alice', 'req-sd-2');
INSERT INTO projects VALUES (1, 'one'), (2, 'two'), (3, 'three');
INSERT INTO tasks VALUES (10, 1, 'a'), (11, 1, 'b'), (12, 2, 'c');
COMMIT;
BEGIN;
SELECT keys_guard.set_context('sd', 'alice', 'req-sd-3');
DELETE FROM projects WHERE id IN (1, 3);
COMMIT;

SET ROLE kg_app;
SET keys_guard.include_deleted = on;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE kg_migrator;
SET keys_guard.include_deleted = on;
RESET ROLE;
GRANT USAGE ON SCHEMA tenant_sd TO kg_migrator;
GRANT SELECT ON tenant_sd.projects, tenant_sd.tasks TO kg_migrator;
SET ROLE kg_migrator;
BEGIN;
SELECT keys_guard.admin_context('ops', 'inspect deletes');
SELECT id, deleted_at IS NOT NULL AS deleted, hard_delete_at - deleted_at AS grace,
       deleted_by, delete_request_id FROM tenant_sd.projects ORDER BY id;
SELECT id, deleted_at IS NOT NULL AS deleted, delete_request_id,
       hard_delete_at = (SELECT hard_delete_at FROM tenant_sd.projects WHERE id = 1) AS same_deadline
  FROM tenant_sd.tasks ORDER BY id;
COMMIT;
RESET keys_guard.include_deleted;
RESET ROLE;

-- preview_delete: what a delete of project 2 would reach.
BEGIN;
SELECT keys_guard.set_context('sd', 'alice');
SELECT relation, depth, via, rows, effect FROM keys_guard.preview_delete('projects', 2);
COMMIT;

-- restore by key, idempotent.
SELECT keys_guard.restore('tenant_sd.projects', 3);
SELECT keys_guard.restore('tenant_sd.projects', 3);
SELECT keys_guard.restore('tenant_sd.projects', 99);
\echo :LAST_ERROR_SQLSTATE
-- restore_request brings back everything request req-sd-3 deleted, cascade included.
SELECT keys_guard.restore_request('req-sd-3');
SELECT keys_guard.restore_request('req-sd-3');
BEGIN;
SELECT keys_guard.set_context('sd', 'alice');
SELECT id FROM projects ORDER BY id;
SELECT id FROM tasks ORDER BY id;
COMMIT;

-- A restore that would collide with a live row on a unique key: 23505,
-- nothing changed.
CREATE TABLE tenant_sd.users (id int PRIMARY KEY, email text NOT NULL);
CREATE UNIQUE INDEX users_email_live ON tenant_sd.users (email) WHERE deleted_at IS NULL;
BEGIN;
SELECT keys_guard.set_context('sd', 'alice', 'req-sd-4');
INSERT INTO users VALUES (1, 'a@example.com');
DELETE FROM users WHERE id = 1;
INSERT INTO users VALUES (2, 'a@example.com');
COMMIT;
SELECT keys_guard.restore('tenant_sd.users', 1);
\echo :LAST_ERROR_SQLSTATE
SET keys_guard.bypass = on;
SELECT id, deleted_at IS NOT NULL AS deleted FROM tenant_sd.users ORDER BY id;
RESET keys_guard.bypass;

-- Grace: hard_delete before hard_delete_at is refused; after it (grace 0
-- on a test cluster, keys_guard.min_grace = 0) it needs confirm.  (Terse:
-- the DETAIL names the deadline.)
\set VERBOSITY terse
SELECT keys_guard.hard_delete('tenant_sd.users', 1);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT keys_guard.hard_delete('tenant_sd.users', 2);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE tenant_sd.sessions (id int PRIMARY KEY, token_hint text);
SELECT grace FROM keys_guard.protect_table('tenant_sd.sessions', grace => interval '7 days');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.release_table('tenant_sd.sessions');
SELECT grace FROM keys_guard.protect_table('tenant_sd.sessions', grace => interval '0');
SELECT keys_guard.protect_table('tenant_sd.sessions', grace => interval '-1 day');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT keys_guard.set_context('sd', 'alice', 'req-sd-5');
INSERT INTO sessions VALUES (1, 'x'), (2, 'y');
DELETE FROM sessions;
COMMIT;
SELECT keys_guard.hard_delete('tenant_sd.sessions', 1);
SELECT keys_guard.hard_delete('tenant_sd.sessions', 1, confirm => true);
SELECT keys_guard.hard_delete('tenant_sd.sessions', 1, confirm => true);
\set VERBOSITY terse
SELECT keys_guard.restore('tenant_sd.sessions', 2);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SET keys_guard.bypass = on;
SELECT id FROM tenant_sd.sessions ORDER BY id;
RESET keys_guard.bypass;

-- Bad input.
SELECT keys_guard.restore(NULL::text, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.restore('tenant_sd.nosuch', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.restore('public.acme_notes', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.restore('tenant_sd.projects', NULL::int);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.restore('tenant_sd.projects', 'not a number');
\echo :LAST_ERROR_SQLSTATE
-- A quoted key works as well as a typed one.
SELECT keys_guard.restore('tenant_sd.projects', '3');
SELECT keys_guard.restore_request(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.restore_request('');
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.hard_delete('tenant_sd.projects', 2, NULL);
\echo :LAST_ERROR_SQLSTATE
SET ROLE kg_app;
SELECT keys_guard.restore('tenant_sd.projects', 3);
\echo :LAST_ERROR_SQLSTATE
SELECT keys_guard.hard_delete('tenant_sd.projects', 3);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- No statement removes rows physically: TRUNCATE and DROP are refused,
-- also for a superuser under bypass.
SET keys_guard.bypass = on;
TRUNCATE tenant_sd.tasks;
\echo :LAST_ERROR_SQLSTATE
RESET keys_guard.bypass;
DROP TABLE tenant_sd.tasks;
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA tenant_sd CASCADE;
\echo :LAST_ERROR_SQLSTATE

-- Protected classes.
CREATE TABLE public.ledger (id int PRIMARY KEY, tenant_id text, amount int);
SELECT kind, class FROM keys_guard.protect_table('public.ledger', tenant_column => 'tenant_id', class => 'payment');
CREATE TABLE public.events_log (id int PRIMARY KEY, tenant_id text, what text);
SELECT kind, class FROM keys_guard.protect_table('public.events_log', tenant_column => 'tenant_id', class => 'audit');
-- A class can go up, never down without release.
SELECT class FROM keys_guard.protect_table('public.ledger', tenant_column => 'tenant_id', class => 'standard');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT keys_guard.set_context('sd', 'alice', 'req-sd-6');
INSERT INTO ledger VALUES (1, 'sd', 100);
INSERT INTO events_log VALUES (1, 'sd', 'login');
DELETE FROM ledger WHERE id = 1;
SELECT count(*) AS visible_payments FROM ledger;
COMMIT;
SELECT keys_guard.hard_delete('public.ledger', 1, confirm => true);
\echo :LAST_ERROR_SQLSTATE
-- audit: append-only for everyone, superusers and replica mode included.
BEGIN;
SELECT keys_guard.set_context('sd', 'alice');
UPDATE events_log SET what = 'x';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context('sd', 'alice');
DELETE FROM events_log;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET keys_guard.bypass = on;
SET session_replication_role = replica;
DELETE FROM public.events_log;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE public.events_log;
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
RESET keys_guard.bypass;

-- Restore works on pooled tables too, without a context (an admin's
-- operation across tenants).
SELECT keys_guard.restore('public.ledger', 1);
BEGIN;
SELECT keys_guard.set_context('sd', 'alice');
SELECT id, amount FROM ledger;
COMMIT;

-- Superusers, bypass and replica mode soft-delete too.
SET keys_guard.bypass = on;
SET session_replication_role = replica;
DELETE FROM tenant_sd.projects WHERE id = 2;
RESET session_replication_role;
SELECT id, deleted_at IS NOT NULL AS deleted FROM tenant_sd.projects ORDER BY id;
RESET keys_guard.bypass;

-- State-changing calls are audited (this suite's: its tables and requests).
SELECT action, target, outcome FROM keys_guard.audit_log
 WHERE action IN ('restore', 'restore_request', 'hard_delete')
   AND (target LIKE 'tenant\_sd.%' OR target = 'public.ledger'
        OR detail->>'request_id' LIKE 'req-sd-%')
 ORDER BY id;
