--
-- operations: the runbook catalog (docs/contract.md §11).  Every public keys_guard
-- function has one row with its safety class; every destructive one has a
-- dry_run (or, for hard_delete, confirm) argument.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql

-- Every public function of schema keys_guard has exactly one row: the
-- missing ones and the doubles are listed (none expected).
SELECT p.oid::regprocedure AS missing
  FROM pg_proc p
 WHERE p.pronamespace = 'keys_guard'::regnamespace AND p.proname !~ '^_'
   AND NOT EXISTS (SELECT 1 FROM keys_guard.operations o WHERE o.function = p.oid)
 ORDER BY p.oid::regprocedure::text COLLATE "C";
SELECT function, count(*) FROM keys_guard.operations GROUP BY 1 HAVING count(*) > 1;
-- ... and nothing else: no internal functions, nothing outside keys_guard.
SELECT function FROM keys_guard.operations o
  JOIN pg_proc p ON p.oid = o.function
 WHERE p.pronamespace <> 'keys_guard'::regnamespace OR p.proname ~ '^_' OR o.name <> p.proname;

-- The classes and guard arguments take only their documented values, and
-- every row says what it does and needs.
SELECT safety_class, guard_argument, count(*)
  FROM keys_guard.operations GROUP BY 1, 2 ORDER BY 1, 2;
SELECT function FROM keys_guard.operations
 WHERE safety_class NOT IN ('SAFE', 'REVERSIBLE', 'IRREVERSIBLE')
    OR guard_argument NOT IN ('dry_run', 'confirm')
    OR coalesce(side_effects, '') = '' OR coalesce(preconditions, '') = '';

-- Every IRREVERSIBLE function has a guard argument, and that argument is a
-- boolean parameter of the function itself.
SELECT function FROM keys_guard.operations
 WHERE safety_class = 'IRREVERSIBLE' AND guard_argument IS NULL;
SELECT o.function, o.guard_argument
  FROM keys_guard.operations o JOIN pg_proc p ON p.oid = o.function
 WHERE o.guard_argument IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proargnames, p.proargtypes::oid[]) AS a(name, type)
                    WHERE a.name = o.guard_argument AND a.type = 'boolean'::regtype)
 ORDER BY o.function::text COLLATE "C";

-- The destructive lifecycle functions have dry_run; hard_delete has confirm.
SELECT name, guard_argument FROM keys_guard.operations
 WHERE name IN ('delete_tenant', 'purge_now', 'release_table', 'release_all', 'hard_delete')
 ORDER BY function::text COLLATE "C";

-- A few classes by name.
SELECT function, safety_class FROM keys_guard.operations
 WHERE name IN ('doctor', 'snapshot', 'preview_delete', 'set_context', 'current_tenant',
                'create_tenant', 'protect_table', 'restore', 'restore_tenant',
                'hard_delete', 'purge_now')
 ORDER BY function::text COLLATE "C";

-- SAFE functions change nothing but session state; the others say what
-- they change.
SELECT function, safety_class FROM keys_guard.operations
 WHERE (safety_class = 'SAFE') <> (side_effects ~ '^(None|Changes only session state)');

-- A function with a dry_run or confirm parameter names it as its guard.
SELECT o.function FROM keys_guard.operations o JOIN pg_proc p ON p.oid = o.function
 WHERE p.proargnames && ARRAY['dry_run', 'confirm'] AND o.guard_argument IS NULL;

-- keys_guard_admin may read it, others may not.
SET ROLE kg_migrator;
SELECT count(*) > 0 AS readable FROM keys_guard.operations;
RESET ROLE;
SET ROLE kg_nobody;
SELECT count(*) FROM keys_guard.operations;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- The whole catalog, in the view's order (by name).
SELECT function, safety_class, guard_argument FROM keys_guard.operations;
