/*-------------------------------------------------------------------------
 *
 * soft_delete.c
 *	  DELETE becomes a soft delete; soft-deleted rows are hidden
 *	  (docs/contract.md §7, §8).
 *
 * The planner hook rewrites every DELETE (and every MERGE ... THEN DELETE
 * action) whose target is a soft-delete table into an UPDATE that sets
 * deleted_at, hard_delete_at, deleted_by and delete_request_id on the rows
 * that are still live.  The PlannedStmt of a rewritten top-level DELETE
 * keeps CMD_DELETE as its command type, so the client receives "DELETE n"
 * (PostgreSQL derives the tag and SPI's result code from it) while the
 * ModifyTable node updates; RETURNING returns the rows.  Because the rewrite
 * happens at planning, it covers plain, prepared and generic plans, PL/pgSQL
 * and SQL functions, WITH ... DELETE, foreign-key cascades (their DELETE is
 * planned too), superusers, bypass and session_replication_role = replica.
 *
 * Any path that deletes rows without the planner (logical replication
 * apply, a table AM call from another extension) meets a BEFORE DELETE
 * trigger that refuses it; only keys_guard's own hard delete passes.
 *
 * Every scan of a soft-delete table gets the security qual
 * "deleted_at IS NULL", foreign-key lookups included, except under bypass,
 * for members of keys_guard_admin with keys_guard.include_deleted, and in
 * keys_guard's own operations.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "utils/acl.h"
#include "utils/rls.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "keys_guard.h"

bool		keys_guard_include_deleted = false;

/*
 * Check hook of keys_guard.include_deleted: only members of
 * keys_guard_admin may turn it on.
 */
bool
kg_check_include_deleted(bool *newval, void **extra, GucSource source)
{
	Oid			admin;

	if (!*newval)
		return true;
	if (!IsTransactionState())
	{
		GUC_check_errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
		GUC_check_errmsg("keys_guard.include_deleted can only be turned on in a session");
		return false;
	}
	admin = get_role_oid("keys_guard_admin", true);
	if (OidIsValid(admin) && has_privs_of_role(GetUserId(), admin))
		return true;
	GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
	GUC_check_errmsg("permission denied to see deleted rows");
	GUC_check_errdetail("Only members of keys_guard_admin can set keys_guard.include_deleted.");
	return false;
}

void
kg_assign_include_deleted(bool newval, void *extra)
{
	keys_guard_include_deleted = newval;
	kg_note_filter_state();
}

/*
 * Whether scans of soft-delete tables hide deleted rows right now;
 * "trusted": keys_guard's internal operation reads the table itself.
 */
static bool
hide_deleted_rows(bool trusted)
{
	Oid			admin;

	if (trusted || kg_current_mode() == KG_MODE_BYPASS)
		return false;

	/*
	 * PostgreSQL re-checks the foreign key of a child row inserted earlier
	 * in the same transaction when the cascade updates it; the parent row is
	 * soft-deleted by then, so that lookup must not hide it.
	 */
	if (kg_in_soft_delete_cascade())
		return false;
	if (!keys_guard_include_deleted)
		return true;
	/* The role may have changed since the setting was made. */
	admin = get_role_oid("keys_guard_admin", true);
	return !(OidIsValid(admin) && has_privs_of_role(GetUserId(), admin));
}

/*
 * The "deleted_at IS NULL" qual of a soft-delete table at range table
 * index rtindex, or NULL if rows are not hidden now.
 */
Expr *
kg_soft_delete_qual(Index rtindex, KgGuardedTable *table, bool trusted)
{
	NullTest   *test;

	if (table == NULL || !table->soft_delete || table->deleted_at == InvalidAttrNumber ||
		!hide_deleted_rows(trusted))
		return NULL;
	test = makeNode(NullTest);
	test->arg = (Expr *) makeVar(rtindex, table->deleted_at, TIMESTAMPTZOID, -1,
								 InvalidOid, 0);
	test->nulltesttype = IS_NULL;
	test->argisrow = false;
	test->location = -1;
	return (Expr *) test;
}

static TargetEntry *
make_assignment(AttrNumber attno, const char *name, Oid funcid, Oid type, List *args)
{
	Expr	   *expr = (Expr *) makeFuncExpr(funcid, type, args, InvalidOid,
											 type == TEXTOID ? DEFAULT_COLLATION_OID : InvalidOid,
											 COERCE_EXPLICIT_CALL);

	return makeTargetEntry(expr, attno, pstrdup(name), false);
}

static int
compare_resno(const ListCell *a, const ListCell *b)
{
	return lfirst_node(TargetEntry, a)->resno - lfirst_node(TargetEntry, b)->resno;
}

/*
 * The SET list of a soft delete: now(), now() + grace, the actor and the
 * request id, in column order as the planner expects of an UPDATE.
 */
static List *
soft_delete_targetlist(KgGuardedTable *table)
{
	Const	   *relid = makeConst(OIDOID, -1, InvalidOid, sizeof(Oid),
								  ObjectIdGetDatum(table->relid), false, true);
	List	   *tlist;

	tlist = list_make4(make_assignment(table->deleted_at, KG_COL_DELETED_AT, F_NOW,
									   TIMESTAMPTZOID, NIL),
					   make_assignment(table->hard_delete_at, KG_COL_HARD_DELETE_AT,
									   kg_hard_delete_at_func(), TIMESTAMPTZOID,
									   list_make1(relid)),
					   make_assignment(table->deleted_by, KG_COL_DELETED_BY,
									   kg_deleted_by_func(), TEXTOID, NIL),
					   make_assignment(table->delete_request_id, KG_COL_DELETE_REQUEST_ID,
									   kg_request_id_func(), TEXTOID, NIL));
	list_sort(tlist, compare_resno);
	return tlist;
}

static void
mark_updated_columns(RangeTblEntry *rte, KgGuardedTable *table)
{
	AttrNumber	cols[4] = {table->deleted_at, table->hard_delete_at,
	table->deleted_by, table->delete_request_id};
	int			i;

	for (i = 0; i < 4; i++)
		rte->updatedCols = bms_add_member(rte->updatedCols,
										  cols[i] - FirstLowInvalidHeapAttributeNumber);
}

/*
 * The soft-delete table a DELETE of this query level targets, or NULL.  A
 * table whose soft-delete columns are gone cannot be converted: refused.
 */
static KgGuardedTable *
soft_delete_target(Query *query)
{
	RangeTblEntry *rte;
	KgGuardedTable *table;

	if (query->resultRelation <= 0 || kg_physical_delete_allowed())
		return NULL;
	rte = rt_fetch(query->resultRelation, query->rtable);
	if (rte->rtekind != RTE_RELATION)
		return NULL;
	table = kg_guarded_table(rte->relid);
	if (table == NULL || !table->soft_delete || table->class == KG_CLASS_AUDIT)
		return NULL;
	if (table->deleted_at == InvalidAttrNumber || table->hard_delete_at == InvalidAttrNumber ||
		table->deleted_by == InvalidAttrNumber || table->delete_request_id == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot delete from %s: its soft-delete columns are missing",
						kg_relation_name(rte->relid)),
				 errhint("Call keys_guard.protect_table() again to restore them.")));
	return table;
}

/* Turn this level's DELETE into the soft-delete UPDATE. */
static void
convert_delete(Query *query, KgGuardedTable *table)
{
	RangeTblEntry *rte = rt_fetch(query->resultRelation, query->rtable);
	NullTest   *live = makeNode(NullTest);

	query->commandType = CMD_UPDATE;
	query->targetList = soft_delete_targetlist(table);
	mark_updated_columns(rte, table);

	/* A row already soft-deleted is not matched again (DELETE 0). */
	live->arg = (Expr *) makeVar(query->resultRelation, table->deleted_at,
								 TIMESTAMPTZOID, -1, InvalidOid, 0);
	live->nulltesttype = IS_NULL;
	live->location = -1;
	query->jointree->quals = query->jointree->quals
		? (Node *) make_andclause(list_make2(live, query->jointree->quals))
		: (Node *) live;
}

/* Turn this level's MERGE ... THEN DELETE actions into soft deletes. */
static void
convert_merge_actions(Query *query, KgGuardedTable *table)
{
	ListCell   *lc;

	foreach(lc, query->mergeActionList)
	{
		MergeAction *action = lfirst_node(MergeAction, lc);

		if (action->commandType != CMD_DELETE)
			continue;
		action->commandType = CMD_UPDATE;
		action->targetList = soft_delete_targetlist(table);
		mark_updated_columns(rt_fetch(query->resultRelation, query->rtable), table);
	}
}

static bool
rewrite_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;
		KgGuardedTable *table;

		if ((query->commandType == CMD_DELETE || query->commandType == CMD_MERGE) &&
			(table = soft_delete_target(query)) != NULL)
		{
			if (query->commandType == CMD_DELETE)
				convert_delete(query, table);
			else
				convert_merge_actions(query, table);
		}
		return query_tree_walker(query, rewrite_walker, context, 0);
	}
	return expression_tree_walker(node, rewrite_walker, context);
}

/*
 * Rewrite the DELETEs of a query tree that target soft-delete tables.
 * Returns true if the top level itself was a DELETE that became a soft
 * delete, so the caller can keep CMD_DELETE on the PlannedStmt.
 */
bool
kg_soft_delete_rewrite(Query *parse)
{
	bool		top_is_delete = (parse->commandType == CMD_DELETE);

	/*
	 * A DELETE or MERGE is the statement itself or one of its WITH queries
	 * (PostgreSQL allows data-modifying WITH only at the top level, and
	 * marks it): anything else has none to find.
	 */
	if (!top_is_delete && parse->commandType != CMD_MERGE && !parse->hasModifyingCTE)
		return false;
	(void) rewrite_walker((Node *) parse, NULL);
	return top_is_delete && parse->commandType == CMD_UPDATE;
}

/*
 * keys_guard._hard_delete_at(relid): when a row soft-deleted now from that
 * table may be purged: the transaction's now() plus the table's grace.
 */
PG_FUNCTION_INFO_V1(keys_guard_hard_delete_at);
Datum
keys_guard_hard_delete_at(PG_FUNCTION_ARGS)
{
	/*
	 * A soft DELETE calls it for every row with the same answer: keep the
	 * last one while the relation, the transaction and the registry are
	 * the same.
	 */
	typedef struct HardDeleteAtCache
	{
		Oid			relid;
		TimestampTz xact_start;
		uint64		registry_generation;
		TimestampTz result;
	} HardDeleteAtCache;
	HardDeleteAtCache *cache = (HardDeleteAtCache *) fcinfo->flinfo->fn_extra;
	Oid			relid = PG_GETARG_OID(0);
	KgGuardedTable *table;
	Interval	grace;
	TimestampTz result;

	if (cache != NULL && cache->relid == relid &&
		cache->xact_start == GetCurrentTransactionStartTimestamp() &&
		cache->registry_generation == kg_registry_generation())
		PG_RETURN_TIMESTAMPTZ(cache->result);

	table = kg_guarded_table(relid);
	if (table)
		grace = table->grace;
	else
	{
		memset(&grace, 0, sizeof(grace));
		grace.time = (int64) keys_guard_default_grace * USECS_PER_SEC;
	}
	result = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
													 IntervalPGetDatum(&grace)));
	if (cache == NULL)
	{
		cache = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(HardDeleteAtCache));
		fcinfo->flinfo->fn_extra = cache;
	}
	cache->relid = relid;
	cache->xact_start = GetCurrentTransactionStartTimestamp();
	cache->registry_generation = kg_registry_generation();
	cache->result = result;
	PG_RETURN_TIMESTAMPTZ(result);
}

/* keys_guard._deleted_by(): the actor, or the database role without one. */
PG_FUNCTION_INFO_V1(keys_guard_deleted_by);
Datum
keys_guard_deleted_by(PG_FUNCTION_ARGS)
{
	const char *actor = kg_current_actor();

	if (actor == NULL)
		actor = GetUserNameFromId(GetUserId(), false);
	PG_RETURN_TEXT_P(cstring_to_text(actor));
}

/*
 * Trigger keys_guard._refuse_delete(), BEFORE DELETE (row) and BEFORE
 * TRUNCATE on soft-delete tables: a physical delete that was not turned
 * into a soft delete is refused, unless keys_guard.hard_delete() or the
 * purge is removing expired rows of a standard table.
 */
PG_FUNCTION_INFO_V1(keys_guard_refuse_delete);
Datum
keys_guard_refuse_delete(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	KgGuardedTable *table;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "keys_guard_refuse_delete: not called by trigger manager");
	rel = trigdata->tg_relation;

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot truncate soft-delete table %s", kg_relation_name(RelationGetRelid(rel))),
				 errdetail("TRUNCATE would remove every row at once, with no grace period."),
				 errhint("Use DELETE, which keys_guard turns into a soft delete; keys_guard.hard_delete() and the purge remove rows after their grace period.")));

	table = kg_guarded_table(RelationGetRelid(rel));
	if (kg_physical_delete_allowed() && table != NULL && table->class == KG_CLASS_STANDARD)
		return PointerGetDatum(trigdata->tg_trigtuple);

	if (table != NULL && table->class == KG_CLASS_PAYMENT)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot delete rows of payment table %s physically", kg_relation_name(RelationGetRelid(rel))),
				 errdetail("Rows of payment tables are soft-deleted and never removed.")));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot delete rows of soft-delete table %s physically", kg_relation_name(RelationGetRelid(rel))),
			 errdetail("This delete did not go through the planner, so keys_guard could not turn it into a soft delete."),
			 errhint("Use DELETE in SQL, or keys_guard.hard_delete() after the grace period.")));
	PG_RETURN_NULL();
}

/* The quoted schema of an operator, for OPERATOR(schema.name). */
static char *
qualified_operator_namespace(Oid opno)
{
	HeapTuple	tuple = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	Oid			nspoid;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for operator %u", opno);
	nspoid = ((Form_pg_operator) GETSTRUCT(tuple))->oprnamespace;
	ReleaseSysCache(tuple);
	return pstrdup(quote_identifier(get_namespace_name(nspoid)));
}

/* One soft-delete cascade statement and its arguments. */
typedef struct CascadeStatement
{
	const char *sql;
	const char *child;
	int			nargs;
	Oid			types[4 + INDEX_MAX_KEYS];
	Datum		values[4 + INDEX_MAX_KEYS];
	char		nulls[4 + INDEX_MAX_KEYS];
} CascadeStatement;

static void
run_cascade_statement(void *arg)
{
	CascadeStatement *stmt = (CascadeStatement *) arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	if (SPI_execute_with_args(stmt->sql, stmt->nargs, stmt->types, stmt->values,
							  stmt->nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "keys_guard: soft-delete cascade into %s failed", stmt->child);
	SPI_finish();
}

/* Soft-delete the children of one cascade foreign key of a parent row. */
static void
cascade_to_child(KgCascade *cascade, Relation parent, HeapTuple newtuple,
				 KgGuardedTable *table)
{
	KgGuardedTable *child = kg_guarded_table(cascade->child);
	Relation	childrel;
	StringInfoData sql;
	CascadeStatement stmt;
	AttrNumber	source[4];
	int			i;

	if (child == NULL || child->deleted_at == InvalidAttrNumber)
		return;
	childrel = table_open(cascade->child, RowExclusiveLock);

	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE ONLY %s SET " KG_COL_DELETED_AT " = $1, "
					 KG_COL_HARD_DELETE_AT " = $2, " KG_COL_DELETED_BY " = $3, "
					 KG_COL_DELETE_REQUEST_ID " = $4 WHERE " KG_COL_DELETED_AT " IS NULL",
					 kg_relation_name(RelationGetRelid(childrel)));
	source[0] = table->deleted_at;
	source[1] = table->hard_delete_at;
	source[2] = table->deleted_by;
	source[3] = table->delete_request_id;
	for (i = 0; i < 4; i++)
	{
		bool		isnull;

		stmt.types[i] = (i < 2) ? TIMESTAMPTZOID : TEXTOID;
		stmt.values[i] = heap_getattr(newtuple, source[i], RelationGetDescr(parent), &isnull);
		stmt.nulls[i] = isnull ? 'n' : ' ';
	}
	for (i = 0; i < cascade->nkeys; i++)
	{
		Form_pg_attribute childatt = TupleDescAttr(RelationGetDescr(childrel),
												   cascade->child_keys[i] - 1);
		bool		isnull;

		TypeCacheEntry *typentry = lookup_type_cache(childatt->atttypid, TYPECACHE_EQ_OPR);

		/*
		 * The caller's search_path must not choose the operator: the
		 * statement runs as the child's owner.  The child column's own
		 * equality operator, schema-qualified, on the parent's value cast to
		 * the child column's type, as PostgreSQL's RI query names its
		 * operators.
		 */
		if (!OidIsValid(typentry->eq_opr))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("could not identify an equality operator for type %s",
							format_type_be(childatt->atttypid))));
		appendStringInfo(&sql, " AND %s OPERATOR(%s.%s) $%d::%s",
						 quote_identifier(NameStr(childatt->attname)),
						 qualified_operator_namespace(typentry->eq_opr),
						 get_opname(typentry->eq_opr), i + 5,
						 format_type_be_qualified(childatt->atttypid));
		stmt.types[i + 4] = TupleDescAttr(RelationGetDescr(parent), cascade->parent_keys[i] - 1)->atttypid;
		stmt.values[i + 4] = heap_getattr(newtuple, cascade->parent_keys[i],
										  RelationGetDescr(parent), &isnull);
		stmt.nulls[i + 4] = isnull ? 'n' : ' ';
	}
	stmt.sql = sql.data;
	stmt.child = kg_relation_name(RelationGetRelid(childrel));
	stmt.nargs = cascade->nkeys + 4;

	/* As a foreign-key cascade does: as the child's owner, row security aside. */
	kg_run_cascade(childrel->rd_rel->relowner, run_cascade_statement, &stmt);
	table_close(childrel, NoLock);
}

/*
 * Trigger keys_guard._soft_delete_cascade(), AFTER UPDATE (row) on
 * soft-delete tables, WHEN a row goes from live to soft-deleted: rows of
 * soft-delete child tables that reference it through a foreign key with
 * ON DELETE CASCADE are soft-deleted in the same statement, with the same
 * deleted_at, hard_delete_at, actor and request id.
 */
PG_FUNCTION_INFO_V1(keys_guard_soft_delete_cascade);
Datum
keys_guard_soft_delete_cascade(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	KgGuardedTable *table;
	ListCell   *lc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "keys_guard_soft_delete_cascade: must be fired for an updated row");

	table = kg_guarded_table(RelationGetRelid(trigdata->tg_relation));
	if (table == NULL || kg_table_cascades(table) == NIL)
		return PointerGetDatum(NULL);
	foreach(lc, kg_table_cascades(table))
		cascade_to_child((KgCascade *) lfirst(lc), trigdata->tg_relation,
						 trigdata->tg_newtuple, table);
	return PointerGetDatum(NULL);
}
