/*-------------------------------------------------------------------------
 *
 * utility.c
 *	  keys_guard's ProcessUtility hook: the utility statements that touch
 *	  tenant data without going through the executor (SPEC.md §6).
 *
 * TRUNCATE and LOCK name relations directly, so they are checked here with
 * the same rules as a query.  COPY needs nothing: it calls
 * ExecCheckRTPerms, which isolation.c hooks.  DDL is scoped by the event
 * triggers of the install script.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/index.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"

#include "keys_guard.h"

static ProcessUtility_hook_type prev_process_utility_hook = NULL;

/* Check each relation a TRUNCATE or LOCK names. */
static void
check_relation_list(List *relations, const char *action)
{
	ListCell   *lc;

	foreach(lc, relations)
	{
		RangeVar   *rv = lfirst_node(RangeVar, lc);
		Oid			relid = RangeVarGetRelid(rv, NoLock, true);

		if (OidIsValid(relid))
			kg_check_relation(relid, action);
	}
}

/*
 * The database a statement needs free of other sessions (DROP DATABASE,
 * RENAME, or use as a CREATE DATABASE template), or InvalidOid.
 */
static Oid
database_needing_exclusive_access(Node *parsetree)
{
	if (IsA(parsetree, DropdbStmt))
		return get_database_oid(((DropdbStmt *) parsetree)->dbname, true);
	if (IsA(parsetree, RenameStmt) &&
		((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
		return get_database_oid(((RenameStmt *) parsetree)->subname, true);
	if (IsA(parsetree, CreatedbStmt))
	{
		ListCell   *lc;

		foreach(lc, ((CreatedbStmt *) parsetree)->options)
		{
			DefElem    *def = lfirst_node(DefElem, lc);

			if (strcmp(def->defname, "template") == 0 && def->arg != NULL)
				return get_database_oid(defGetString(def), true);
		}
	}
	return InvalidOid;
}

/*
 * Maintenance commands (VACUUM, ANALYZE, CLUSTER, REINDEX) read no data for
 * the client, so without a context they stay available to operators.  Under
 * a tenant context they count as schema changes and stay in the tenant's
 * own schema.
 */
static void
check_maintenance_target(RangeVar *rv, const char *action)
{
	Oid			relid;

	if (rv == NULL || kg_current_mode() != KG_MODE_TENANT)
		return;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (OidIsValid(relid))
	{
		/* An index is judged by its table. */
		Oid			table = IndexGetRelation(relid, true);

		kg_check_relation(OidIsValid(table) ? table : relid, action);
	}
}

static void
check_maintenance(Node *parsetree)
{
	ListCell   *lc;

	if (IsA(parsetree, VacuumStmt))
	{
		VacuumStmt *stmt = (VacuumStmt *) parsetree;

		foreach(lc, stmt->rels)
			check_maintenance_target(lfirst_node(VacuumRelation, lc)->relation,
									 stmt->is_vacuumcmd ? "vacuum" : "analyze");
	}
	else if (IsA(parsetree, ClusterStmt))
		check_maintenance_target(((ClusterStmt *) parsetree)->relation, "cluster");
	else if (IsA(parsetree, ReindexStmt))
	{
		ReindexStmt *stmt = (ReindexStmt *) parsetree;

		if (stmt->kind == REINDEX_OBJECT_TABLE || stmt->kind == REINDEX_OBJECT_INDEX)
			check_maintenance_target(stmt->relation, "reindex");
	}
}

static void
kg_process_utility(KG_UTILITY_ARGS)
{
	Node	   *parsetree = pstmt->utilityStmt;
	Oid			exclusive_db = database_needing_exclusive_access(parsetree);

	/* keys_guard's own worker must not be the "other session" in the way. */
	if (OidIsValid(exclusive_db))
		kg_worker_stop_database(exclusive_db);

	if (IsA(parsetree, TruncateStmt))
		check_relation_list(((TruncateStmt *) parsetree)->relations, "truncate");
	else if (IsA(parsetree, LockStmt))
		check_relation_list(((LockStmt *) parsetree)->relations, "lock");
	else
		check_maintenance(parsetree);

	if (prev_process_utility_hook)
		prev_process_utility_hook(KG_UTILITY_CALL_ARGS);
	else
		standard_ProcessUtility(KG_UTILITY_CALL_ARGS);
}

void
kg_utility_init(void)
{
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = kg_process_utility;
}
