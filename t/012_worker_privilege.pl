
# Copyright and license: see keys_guard's README.
#
# No privilege is lent by the background worker: it purges a row of a
# table whose owner (not a superuser) put a trigger on it that tries to
# make the owner superuser.  The trigger runs as the table's owner inside a
# security-restricted operation, so the attempt fails with 42501 and the
# row is still purged; the worker's own bootstrap superuser never runs it.
# The trigger also reads a pooled table of two tenants: with no context it
# is refused like any statement (the purge is keys_guard's, the trigger is
# not).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker_privilege');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'keys_guard'
keys_guard.min_grace = 0
keys_guard.purge_naptime = 1
max_worker_processes = 16
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION keys_guard;
CREATE ROLE mallory LOGIN;
CREATE ROLE api LOGIN IN ROLE keys_guard_gateway;
SELECT keys_guard.create_tenant('a') \g /dev/null
SELECT keys_guard.create_tenant('b') \g /dev/null
CREATE TABLE public.shared (id int PRIMARY KEY, tenant_id text NOT NULL, secret text);
SELECT keys_guard.protect_table('public.shared', tenant_column => 'tenant_id') \g /dev/null
GRANT SELECT ON public.shared TO mallory;
GRANT USAGE, CREATE ON SCHEMA tenant_a TO mallory;
GRANT CREATE ON SCHEMA public TO mallory;
});
$node->safe_psql('postgres', q{
BEGIN;
SELECT keys_guard.set_context('b', 'setup') \g /dev/null
INSERT INTO public.shared VALUES (1, 'b', 'b-secret');
COMMIT;
});

# mallory's table, with its escalation trigger.
$node->safe_psql(
	'postgres', q{
SET ROLE mallory;
CREATE TABLE public.attempts (by_user text, escalation text, stolen text);
CREATE TABLE tenant_a.notes (id int PRIMARY KEY, body text);
CREATE FUNCTION tenant_a.escalate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    escalation text;
    stolen text;
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
        escalation := 'became superuser';
    EXCEPTION WHEN OTHERS THEN
        escalation := SQLSTATE;
    END;
    BEGIN
        SELECT string_agg(secret, ',') INTO stolen FROM public.shared;
    EXCEPTION WHEN OTHERS THEN
        stolen := SQLSTATE;
    END;
    INSERT INTO public.attempts VALUES (current_user, escalation, stolen);
    RETURN OLD;
END
$$;
CREATE TRIGGER escalate BEFORE DELETE ON tenant_a.notes
    FOR EACH ROW EXECUTE FUNCTION tenant_a.escalate();
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_a.notes TO api;
GRANT INSERT ON public.attempts TO api;
GRANT USAGE ON SCHEMA tenant_a TO api;
RESET ROLE;
SELECT keys_guard.release_table('tenant_a.notes') \g /dev/null
SELECT keys_guard.protect_table('tenant_a.notes', grace => interval '0') \g /dev/null
});

# The application deletes a row; its grace is over at once.
$node->safe_psql(
	'postgres', q{
SET ROLE api;
BEGIN;
SELECT keys_guard.set_context('a', 'user_a') \g /dev/null
INSERT INTO tenant_a.notes VALUES (1, 'one');
DELETE FROM tenant_a.notes;
COMMIT;
});

# The worker purges it within a naptime or two: the trigger reports.
ok($node->poll_query_until('postgres', 'SELECT count(*) > 0 FROM public.attempts'),
	'the worker ran the trigger of the expired row');
is($node->safe_psql('postgres', "SET keys_guard.bypass = on;\nSELECT count(*) FROM tenant_a.notes"),
	'0', 'and purged the row');

is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"),
	'f', 'the table owner did not become superuser');
is( $node->safe_psql(
		'postgres', 'SELECT by_user, escalation, stolen FROM public.attempts'),
	'mallory|42501|42501',
	'the trigger ran as the table owner, its escalation and its read of another tenant were refused');

$node->stop;
done_testing();
