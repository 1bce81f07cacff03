/*-------------------------------------------------------------------------
 *
 * isolation.c
 *	  Tenant isolation on the executor and planner side (docs/contract.md §6).
 *
 * Three mechanisms, each where PostgreSQL offers the right hook (hooks.c
 * installs the hooks and calls the kg_isolation_* functions below):
 *
 * - Relation level (ExecutorCheckPerms_hook, so also COPY and every nested
 *	 statement of a function, view or dynamic SQL): a relation in another
 *	 tenant's schema, a guarded relation without a context, or a deleted
 *	 tenant's data is a 42501 denial.  ExecutorRun checks again when the
 *	 context changed since the statement started (cursors, portals).
 *
 * - Row level for pooled tables (get_relation_info_hook): every scan of a
 *	 pooled table gets the security qual "tenant_column = current tenant",
 *	 ahead of any row security policy.  It is added while the planner builds
 *	 its relations, so it also reaches views, subqueries, CTEs and inlined SQL
 *	 functions, binds superusers and table owners, and is an ordinary
 *	 indexable clause.  The tenant is read at execution, so cached and
 *	 generic plans stay correct when the tenant changes.
 *
 * - Explicit naming of another tenant (planner_hook): an equality or IN
 *	 predicate on a pooled tenant column gets a one-time gate that raises
 *	 42501 when the value (a literal or a parameter, known only at execution
 *	 for generic plans) is not the current tenant.  Writes are checked by the
 *	 row trigger keys_guard._tenant_row_guard().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planner.h"
#include "optimizer/plancat.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteManip.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/uuid.h"

#include "keys_guard.h"

/*
 * A started statement that reads guarded data, with the context it started
 * under (statement.c forgets it with the statement).
 */
typedef struct KgRunningQuery
{
	KgStatementEntry entry;
	KgMode		mode;
	char		tenant[KG_TENANT_ID_MAXLEN + 1];
} KgRunningQuery;

/*
 * kg_hot_state holds them (running_queries), and the range table
 * ExecutorCheckPerms last checked with what it found (checked_*).
 */

/* Audit bookkeeping: bypass once per session, admin once per statement. */
static bool bypass_audited = false;
static TimestampTz admin_audited_statement = 0;

static void check_relation_rules(Oid relid, const char *action);
static void gate_pulled_up_predicates(PlannerInfo *root, Index rtindex, Oid relid,
									  KgPooledRel *pooled);

/* Set while planning when a pooled table was planned without the filter. */
static bool planned_unfiltered_pooled = false;

/*
 * The audit detail of a record: up to two facts and the database role that
 * acted (NULL values are left out).
 */
static KgAuditDetail *
access_detail(const char *key1, const char *value1,
			  const char *key2, const char *value2)
{
	KgAuditDetail *detail = kg_audit_detail();

	kg_audit_detail_text(detail, key1, value1);
	if (key2 != NULL)
		kg_audit_detail_text(detail, key2, value2);
	kg_audit_detail_text(detail, "role", GetUserNameFromId(GetUserId(), true));
	return detail;
}

static inline const char *
or_none(const char *value)
{
	return value ? value : "(none)";
}

/*
 * Record a denial: a LOG line now, an audit record through the shared queue
 * (it outlives the rollback), then the caller raises the error.
 */
static void
record_denial(const char *action, const char *relation, const char *reason,
			  const char *other_tenant)
{
	ereport(LOG,
			(errmsg("keys_guard: %s denied", action),
			 errdetail_log("reason=%s tenant=%s actor=%s request_id=%s relation=%s other_tenant=%s",
						   reason, or_none(kg_current_tenant()), or_none(kg_current_actor()),
						   or_none(kg_current_request_id()), relation,
						   or_none(other_tenant)),
			 errhidestmt(true),
			 errhidecontext(true)));
	kg_audit_enqueue(action, relation, KG_OUTCOME_DENIED,
					 access_detail("reason", reason, "relation_tenant", other_tenant));
}

/* A pooled table whose tenant column cannot be resolved is closed. */
static void refuse_incomplete_guard(const char *relation) pg_attribute_noreturn();

static void
refuse_incomplete_guard(const char *relation)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("guard of relation %s is incomplete", relation),
			 errdetail("Its tenant column cannot be resolved, so keys_guard refuses the table."),
			 errhint("Fix the table or release it with keys_guard.release_table().")));
}

static void
deny_no_context(const char *action, const char *relation)
{
	record_denial(action, relation, "no tenant context", NULL);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("no tenant context"),
			 errdetail("Relation %s is guarded by keys_guard.", relation),
			 errhint("Call keys_guard.set_context() before touching tenant data.")));
}

static void
deny_deleted_tenant(const char *action, const char *relation, const char *tenant)
{
	record_denial(action, relation, "tenant is deleted", tenant);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("access to a deleted tenant denied"),
			 errdetail("Tenant \"%s\" is deleted; relation %s cannot be accessed.",
					   tenant, relation),
			 errhint("An administrator can restore the tenant with keys_guard.restore_tenant().")));
}

static void
deny_cross_tenant(const char *action, const char *relation, const char *other)
{
	record_denial(action, relation, "cross-tenant access", other);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cross-tenant access denied"),
			 errdetail("Relation %s belongs to tenant \"%s\", but the current tenant is \"%s\".",
					   relation, other, or_none(kg_current_tenant()))));
}

/* A statement on a pooled table names another tenant's id. */
static void
deny_other_tenant_value(const char *action, const char *relation, const char *other)
{
	record_denial(action, relation, "cross-tenant access", other);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cross-tenant access denied"),
			 errdetail("The statement names tenant \"%s\" in relation %s, but the current tenant is \"%s\".",
					   other, relation, or_none(kg_current_tenant()))));
}

/* Admin access is audited once per statement, with the reason. */
static void
audit_admin_access(const char *action, Oid relid)
{
	TimestampTz stmt = GetCurrentStatementStartTimestamp();

	if (stmt == admin_audited_statement)
		return;
	admin_audited_statement = stmt;
	kg_audit_enqueue(action, kg_relation_name(relid), KG_OUTCOME_OK,
					 access_detail("reason", kg_current_admin_reason(),
								   "mode", "admin_context"));
}

static void
audit_bypass_once(const char *action, Oid relid)
{
	if (bypass_audited)
		return;
	bypass_audited = true;
	kg_audit_enqueue("bypass", kg_relation_name(relid), KG_OUTCOME_OK,
					 access_detail("first_action", action, NULL, NULL));
}

/*
 * Decide whether the current context may touch relation relid; raise the
 * 42501 denial if not.  "action" names the kind of access for the audit log.
 */
kg_hot void
kg_check_relation(Oid relid, const char *action)
{
	if (kg_in_internal_operation())
		return;
	check_relation_rules(relid, action);
}

/*
 * The rules themselves, also for user code that keys_guard's internal
 * operation runs inline (a row security policy's subquery).
 */
static kg_hot void
check_relation_rules(Oid relid, const char *action)
{
	KgRelationGuard *guard = kg_relation_guard(relid);
	KgTenant   *owner;
	KgPooledRel *pooled;
	KgTenant   *current;
	const char *tenant;

	if (guard == NULL)
		return;
	kg_require_complete_extension();
	owner = guard->owner;
	pooled = guard->pooled;

	switch (kg_current_mode())
	{
		case KG_MODE_BYPASS:
			audit_bypass_once(action, relid);
			return;
		case KG_MODE_ADMIN:
			audit_admin_access(action, relid);
			return;
		case KG_MODE_NONE:
			deny_no_context(action, kg_relation_name(relid));
			return;
		case KG_MODE_TENANT:
			break;
	}

	tenant = kg_current_tenant();
	current = kg_tenant_by_id(tenant);
	if (current == NULL || !current->active)
		deny_deleted_tenant(action, kg_relation_name(relid), tenant);
	if (owner != NULL && strcmp(owner->id, tenant) != 0)
		deny_cross_tenant(action, kg_relation_name(relid), owner->id);
	if (pooled != NULL && !OidIsValid(pooled->current_func))
	{
		char	   *relation = kg_relation_name(relid);

		record_denial(action, relation, "incomplete guard", NULL);
		refuse_incomplete_guard(relation);
	}
}

static const char *
rte_action(RangeTblEntry *rte)
{
#ifdef KG_RTE_HAS_REQUIRED_PERMS
	if (rte->requiredPerms & ACL_DELETE)
		return "delete";
	if (rte->requiredPerms & ACL_UPDATE)
		return "update";
	if (rte->requiredPerms & ACL_INSERT)
		return "insert";
	return "select";
#else
	return "access";
#endif
}

/*
 * Check every relation of a range table, but those that keys_guard's
 * internal operation or PostgreSQL's RI query reads itself (acting.c).
 *
 * Called by hooks.c's ExecutorCheckPerms_hook once PostgreSQL's own
 * permission checks and any earlier provider have passed.  PostgreSQL's own
 * foreign-key queries are integrity work on behalf of a statement that was
 * itself checked, and are left alone, as row security leaves them alone;
 * the user code they run is not (acting.c).
 */
static kg_hot pg_noinline void
check_guarded_range_table(List *rangeTable)
{
	ListCell   *lc;
	Oid			own_target = InvalidOid;

	/*
	 * In a rule action of keys_guard's internal statement, the rule's OLD
	 * and NEW entries name the table that statement itself changes.
	 */
	if (!kg_hot_state.acting_quiet && kg_in_rule_action())
	{
		foreach(lc, rangeTable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

			if (rte->rtekind == RTE_RELATION && kg_rte_internal(rte))
				own_target = rte->relid;
		}
	}

	foreach(lc, rangeTable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		/* An unguarded relation has no rules to check (check_relation_rules). */
		if (rte->rtekind != RTE_RELATION || kg_relation_guard(rte->relid) == NULL)
			continue;
		if (kg_rte_trusted(rte))
			continue;
		if (OidIsValid(own_target) && rte->relid == own_target &&
			kg_rte_is_rule_placeholder(rte))
			continue;
		if (kg_rte_marked_untrusted(rte))
			check_relation_rules(rte->relid, rte_action(rte));
		else
			kg_check_relation(rte->relid, rte_action(rte));
	}
}

/*
 * hooks.c calls: check a range table that reads a guarded relation (above),
 * and remember whether it did.
 */
kg_statement_path void
kg_isolation_check_range_table(List *rangeTable)
{
	ListCell   *lc;
	bool		guarded = false;

	/* Most statements read no guarded relation: one pass rules that out. */
	foreach(lc, rangeTable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION && kg_relation_guard(rte->relid) != NULL)
		{
			guarded = true;
			check_guarded_range_table(rangeTable);
			break;
		}
	}

	/* For kg_isolation_executor_started(), which runs next. */
	kg_hot_state.checked_range_table = rangeTable;
	kg_hot_state.checked_generation = kg_registry_generation();
	kg_hot_state.checked_guarded = guarded;
}

/*
 * Whether a relation of the range table is guarded.  The ExecutorStart that
 * asks has just had the same list checked (above), unless a nested
 * statement's check came in between.
 */
static bool
range_table_is_guarded(List *rangeTable)
{
	ListCell   *lc;

	if (rangeTable == kg_hot_state.checked_range_table &&
		kg_hot_state.checked_generation == kg_registry_generation())
	{
		bool		guarded = kg_hot_state.checked_guarded;

		kg_hot_state.checked_range_table = NIL;
		kg_hot_state.checked_guarded = false;
		return guarded;
	}
	foreach(lc, rangeTable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION && kg_relation_guard(rte->relid) != NULL)
			return true;
	}
	return false;
}

/*
 * After ExecutorStart (hooks.c): remember the context a statement on
 * guarded data started under, for kg_isolation_check_portal_context().
 */
static kg_hot pg_noinline void
remember_started_query(QueryDesc *queryDesc)
{
	KgRunningQuery *entry = kg_statement_entry_new(&kg_hot_state.running_queries,
												   queryDesc, sizeof(KgRunningQuery));
	const char *tenant = kg_current_tenant();

	entry->mode = kg_current_mode();
	if (tenant)
		strlcpy(entry->tenant, tenant, sizeof(entry->tenant));
}

/* kg_isolation_executor_started() (keys_guard.h), when it is not quick. */
pg_noinline void
kg_isolation_executor_started_slow(QueryDesc *queryDesc, int eflags)
{
	if (range_table_is_guarded(queryDesc->plannedstmt->rtable) &&
		(eflags & EXEC_FLAG_EXPLAIN_ONLY) == 0 && !kg_ri_query_trusted() &&
		!IsParallelWorker())
		remember_started_query(queryDesc);
}

/*
 * Before ExecutorRun (hooks.c): a cursor or portal started under one
 * context must not be read under another.
 */
static kg_hot pg_noinline void
check_started_query(KgRunningQuery *entry)
{
	const char *tenant = kg_current_tenant();

	if (entry->mode != kg_current_mode() ||
		strcmp(entry->tenant, tenant ? tenant : "") != 0)
	{
		record_denial("fetch", "(portal)", "context changed since the statement started",
					  entry->tenant[0] ? entry->tenant : NULL);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cross-tenant access denied"),
				 errdetail("The statement was started under tenant \"%s\", but the current tenant is \"%s\".",
						   entry->tenant[0] ? entry->tenant : "(none)",
						   or_none(tenant)),
				 errhint("Open the cursor again under the current context.")));
	}
}

kg_hot void
kg_isolation_check_portal_context(QueryDesc *queryDesc)
{
	KgRunningQuery *entry = kg_statement_entry_find(&kg_hot_state.running_queries,
													queryDesc);

	if (entry != NULL)
		check_started_query(entry);
}

/*
 * Whether scans of pooled tables get the tenant filter in this context;
 * "trusted": keys_guard's internal operation or PostgreSQL's RI query reads
 * the table itself.
 */
static bool
pooled_scans_filtered(bool trusted)
{
	KgMode		mode = kg_current_mode();

	return (mode == KG_MODE_TENANT || mode == KG_MODE_NONE) && !trusted;
}

/* "tenant_column = <current tenant>" for range table entry rtindex. */
static Expr *
make_tenant_qual(Index rtindex, KgPooledRel *pooled)
{
	Var		   *var;
	FuncExpr   *current;
	Expr	   *op;

	if (!OidIsValid(pooled->current_func))
		return (Expr *) makeBoolConst(false, false);

	var = makeVar(rtindex, pooled->tenant_attno, pooled->tenant_type, -1,
				  pooled->tenant_collation, 0);
	current = makeFuncExpr(pooled->current_func, pooled->tenant_type, NIL,
						   pooled->tenant_type == TEXTOID ? DEFAULT_COLLATION_OID : InvalidOid,
						   InvalidOid, COERCE_EXPLICIT_CALL);
	op = make_opclause(pooled->eq_opr, BOOLOID, false, (Expr *) var, (Expr *) current,
					   InvalidOid, pooled->compare_collation);
	((OpExpr *) op)->opfuncid = get_opcode(pooled->eq_opr);
	return op;
}

/* The attribute numbers of an int2[] column of pg_constraint (conkey, confkey). */
static Bitmapset *
constraint_columns(HeapTuple tuple, AttrNumber attnum, TupleDesc desc)
{
	bool		isnull;
	Datum		datum = heap_getattr(tuple, attnum, desc, &isnull);
	Bitmapset  *cols = NULL;
	ArrayType  *array;
	int16	   *values;
	int			n;

	if (isnull)
		return NULL;
	array = DatumGetArrayTypeP(datum);
	if (ARR_NDIM(array) != 1 || ARR_HASNULL(array) || ARR_ELEMTYPE(array) != INT2OID)
		return NULL;
	values = (int16 *) ARR_DATA_PTR(array);
	n = ARR_DIMS(array)[0];
	for (int i = 0; i < n; i++)
		cols = bms_add_member(cols, values[i] - FirstLowInvalidHeapAttributeNumber);
	return cols;
}

/*
 * Whether cols (offset by FirstLowInvalidHeapAttributeNumber, as
 * pull_varattnos() gives them) are the referenced columns of a foreign key
 * to relid.
 */
static bool
is_referenced_key(Oid relid, Bitmapset *cols)
{
	Relation	conrel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	bool		referenced = false;

	/* pg_constraint has no index on confrelid: this runs once per plan. */
	conrel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_constraint_confrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(conrel, InvalidOid, false, NULL, 1, &key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tuple);

		if (con->contype != CONSTRAINT_FOREIGN)
			continue;
		if (bms_equal(constraint_columns(tuple, Anum_pg_constraint_confkey,
										 RelationGetDescr(conrel)), cols))
		{
			referenced = true;
			break;
		}
	}
	systable_endscan(scan);
	table_close(conrel, AccessShareLock);
	return referenced;
}

/*
 * Whether the statement being planned is PostgreSQL's lookup of the row a
 * foreign key references (ri_triggers.c: the check of a referencing row,
 * and the NO ACTION check for a replacement key): a referential-integrity
 * query SELECT 1 FROM [ONLY] pktable x WHERE <referenced column> = $n
 * [AND ...] FOR KEY SHARE OF x.  The lookups that act on the referencing
 * table have other shapes (cascades) or put the parameter first (the NO
 * ACTION and RESTRICT check that a key is still referenced: ... WHERE $n =
 * <referencing column> ...), which tells the two apart when the
 * referencing columns of one foreign key are the referenced columns of
 * another (a table that shares its parent's primary key and is referenced
 * itself).  A custom plan may have replaced the parameter by its value.
 */
static bool
is_referenced_row_lookup(PlannerInfo *root)
{
	Query	   *parse = root->parse;
	RowMarkClause *rc;
	RangeTblEntry *rte;
	Bitmapset  *cols = NULL;
	List	   *quals;
	ListCell   *lc;

	if (root->parent_root != NULL || parse->commandType != CMD_SELECT ||
		list_length(parse->rowMarks) != 1 || parse->jointree == NULL ||
		list_length(parse->jointree->fromlist) != 1 || parse->jointree->quals == NULL ||
		parse->rtable == NIL)
		return false;
	rc = linitial_node(RowMarkClause, parse->rowMarks);
	rte = linitial_node(RangeTblEntry, parse->rtable);
	if (rc->rti != 1 || rc->strength != LCS_FORKEYSHARE || rte->rtekind != RTE_RELATION ||
		!IsA(linitial(parse->jointree->fromlist), RangeTblRef) ||
		((RangeTblRef *) linitial(parse->jointree->fromlist))->rtindex != 1)
		return false;
	quals = IsA(parse->jointree->quals, List) ?
		(List *) parse->jointree->quals : list_make1(parse->jointree->quals);
	foreach(lc, quals)
	{
		OpExpr	   *op = (OpExpr *) lfirst(lc);

		if (IsA(op, OpExpr) && list_length(op->args) == 2 &&
			!contain_var_clause(linitial(op->args)))
			return false;
	}
	pull_varattnos((Node *) quals, 1, &cols);
	return cols != NULL && is_referenced_key(rte->relid, cols);
}

/*
 * From get_relation_info_hook (hooks.c), after any earlier provider: add
 * the tenant filter to a pooled table as its first security qual, and the
 * soft-delete filter (soft_delete.c) after it.  Security quals were
 * already preprocessed into implicit-AND lists by now, and the planner
 * distributes them right after this, so the qual is as good as one written
 * by the user: index scans use it and user-supplied functions never see
 * other tenants' rows.
 */
void
kg_isolation_relation_info(PlannerInfo *root, Oid relationObjectId, RelOptInfo *rel)
{
	KgRelationGuard *guard;
	KgPooledRel *pooled;
	RangeTblEntry *rte;
	List	   *quals = NIL;
	Expr	   *deleted;
	bool		trusted;

	if (root->simple_rte_array == NULL || !kg_extension_active())
		return;
	guard = kg_relation_guard(relationObjectId);
	if (guard == NULL)
		return;
	pooled = guard->pooled;
	rte = root->simple_rte_array[rel->relid];
	trusted = kg_rte_trusted(rte);

	if (pooled != NULL && pooled_scans_filtered(trusted))
	{
		quals = lappend(quals, make_tenant_qual(rel->relid, pooled));
		if (kg_current_mode() == KG_MODE_TENANT && root->parse->jointree != NULL &&
			OidIsValid(kg_assert_tenant_func()) &&
			(root->parse->jointree->quals == NULL || IsA(root->parse->jointree->quals, List)))
			gate_pulled_up_predicates(root, rel->relid, relationObjectId, pooled);
	}
	else if (pooled != NULL && pooled_scans_filtered(false) &&
			 (kg_current_mode() == KG_MODE_TENANT || !kg_in_internal_operation()) &&
			 kg_ri_query_trusted() && is_referenced_row_lookup(root))
	{
		/*
		 * PostgreSQL's check that a referenced row exists looks past row
		 * security; under a tenant it finds the tenant's own rows only, so
		 * a row cannot reference another tenant's, and the error for one
		 * that tries is the error for a key that does not exist.  Without
		 * a context it finds none (the filter's tenant is NULL): such a
		 * session reads no pooled row, and a plan made there is reused
		 * once a tenant is set, which does not replan it.  keys_guard's
		 * own operations without a context (the worker's purge, whose ON
		 * DELETE SET DEFAULT looks up the default key) see every tenant's
		 * rows, as they do elsewhere; their plans are not reused outside
		 * them (kg_note_filter_state()).
		 */
		quals = lappend(quals, make_tenant_qual(rel->relid, pooled));
	}
	else if (pooled != NULL)
		planned_unfiltered_pooled = true;

	if ((deleted = kg_soft_delete_qual(rel->relid, guard->table,
									   kg_rte_internal(rte))) != NULL)
		quals = lappend(quals, deleted);
	else if (guard->table != NULL && guard->table->soft_delete)
		planned_unfiltered_pooled = true;

	if (quals != NIL)
	{
		rte->securityQuals = lcons(quals, rte->securityQuals);
		root->qual_security_level = Max(root->qual_security_level,
										list_length(rte->securityQuals));
	}
}

typedef struct GateContext
{
	List	   *ancestors;		/* enclosing query levels, innermost first */
	List	   *gates;			/* gates for the level being walked */
} GateContext;

static Node *
strip_relabel(Node *node)
{
	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	return node;
}

static KgPooledRel *tenant_column_of(Query *query, List *ancestors, Node *node,
									 Oid *relid);

/* The output column attno of a CTE visible from query, if it is a SELECT. */
static KgPooledRel *
tenant_column_of_cte(Query *query, List *ancestors, RangeTblEntry *rte,
					 AttrNumber attno, Oid *relid)
{
	Query	   *owner;
	List	   *owner_ancestors;
	ListCell   *lc;

	if (rte->self_reference || rte->ctelevelsup > list_length(ancestors))
		return NULL;
	if (rte->ctelevelsup == 0)
	{
		owner = query;
		owner_ancestors = ancestors;
	}
	else
	{
		owner = list_nth(ancestors, rte->ctelevelsup - 1);
		owner_ancestors = list_copy_tail(ancestors, rte->ctelevelsup);
	}
	foreach(lc, owner->cteList)
	{
		CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);
		Query	   *ctequery = (Query *) cte->ctequery;
		TargetEntry *tle;

		if (strcmp(cte->ctename, rte->ctename) != 0)
			continue;
		if (cte->cterecursive || !IsA(ctequery, Query) ||
			ctequery->commandType != CMD_SELECT)
			return NULL;
		tle = get_tle_by_resno(ctequery->targetList, attno);
		if (tle == NULL || tle->resjunk)
			return NULL;
		return tenant_column_of(ctequery, lcons(owner, owner_ancestors),
								(Node *) tle->expr, relid);
	}
	return NULL;
}

/*
 * The pooled table whose tenant column an expression of this query level
 * is, looking through the output columns of subqueries (views, derived
 * tables) and CTEs, so that a predicate on a view's or a CTE's tenant
 * column counts too.
 */
static KgPooledRel *
tenant_column_of(Query *query, List *ancestors, Node *node, Oid *relid)
{
	Var		   *var;
	RangeTblEntry *rte;
	KgPooledRel *pooled;

	node = strip_relabel(node);
	if (node == NULL || !IsA(node, Var))
		return NULL;
	var = (Var *) node;
	if (var->varlevelsup != 0 || var->varno < 1 ||
		var->varno > list_length(query->rtable))
		return NULL;
	rte = rt_fetch(var->varno, query->rtable);
	if (rte->rtekind == RTE_SUBQUERY && rte->subquery != NULL &&
		rte->subquery->setOperations == NULL)
	{
		TargetEntry *tle = get_tle_by_resno(rte->subquery->targetList, var->varattno);

		if (tle == NULL || tle->resjunk)
			return NULL;
		return tenant_column_of(rte->subquery, lcons(query, ancestors),
								(Node *) tle->expr, relid);
	}
	if (rte->rtekind == RTE_CTE)
		return tenant_column_of_cte(query, ancestors, rte, var->varattno, relid);
	if (rte->rtekind != RTE_RELATION)
		return NULL;
	pooled = kg_pooled_rel(rte->relid);
	if (pooled == NULL || pooled->tenant_attno != var->varattno)
		return NULL;
	*relid = rte->relid;
	return pooled;
}

/* keys_guard._assert_tenant(relid, value::text) */
static Expr *
make_gate(Oid relid, Node *value)
{
	Oid			type = exprType(value);
	Node	   *as_text = value;

	if (type != TEXTOID)
	{
		CoerceViaIO *coerce = makeNode(CoerceViaIO);

		coerce->arg = (Expr *) copyObject(value);
		coerce->resulttype = TEXTOID;
		coerce->resultcollid = DEFAULT_COLLATION_OID;
		coerce->coerceformat = COERCE_EXPLICIT_CAST;
		coerce->location = -1;
		as_text = (Node *) coerce;
	}
	else
		as_text = copyObject(value);
	return (Expr *) makeFuncExpr(kg_assert_tenant_func(), BOOLOID,
								 list_make2(makeConst(OIDOID, -1, InvalidOid, sizeof(Oid),
													  ObjectIdGetDatum(relid), false, true),
											as_text),
								 InvalidOid, DEFAULT_COLLATION_OID, COERCE_EXPLICIT_CALL);
}

/* keys_guard._assert_relation(relid) */
static Expr *
make_relation_gate(Oid relid)
{
	return (Expr *) makeFuncExpr(kg_assert_relation_func(), BOOLOID,
								 list_make1(makeConst(OIDOID, -1, InvalidOid, sizeof(Oid),
													  ObjectIdGetDatum(relid), false, true)),
								 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
}

/* A value that identifies a tenant without depending on the row. */
static bool
is_tenant_value(Node *node)
{
	return node != NULL && !contain_vars_of_level(node, 0) &&
		!contain_volatile_functions(node) && !contain_subplans(node) &&
		!checkExprHasSubLink(node);
}

/*
 * The tenant-column test of one predicate.  "match" says whether an
 * expression is the tenant column of a pooled table (and which); gates for
 * the values it is compared with are appended to *gates.
 */
typedef KgPooledRel *(*TenantColumnMatch) (Node *expr, void *arg, Oid *relid);

/* Whether an operator is named "=" (of any schema and types). */
static bool
is_equality_operator(Oid opno)
{
	char	   *opname = get_opname(opno);

	return opname != NULL && strcmp(opname, "=") == 0;
}

static void
gate_predicate(Node *node, TenantColumnMatch match, void *arg, List **gates)
{
	Oid			relid;

	if (IsA(node, OpExpr) && list_length(((OpExpr *) node)->args) == 2)
	{
		OpExpr	   *op = (OpExpr *) node;
		Node	   *left = linitial(op->args);
		Node	   *right = lsecond(op->args);
		Node	   *value;

		/* The column first: most operators compare no tenant column. */
		if (match(left, arg, &relid) && is_tenant_value(right))
			value = right;
		else if (match(right, arg, &relid) && is_tenant_value(left))
			value = left;
		else
			return;
		if (is_equality_operator(op->opno))
			*gates = lappend(*gates, make_gate(relid, value));
	}
	else if (IsA(node, ScalarArrayOpExpr))
	{
		ScalarArrayOpExpr *saop = (ScalarArrayOpExpr *) node;
		Node	   *left = linitial(saop->args);
		Node	   *right = lsecond(saop->args);

		if (!saop->useOr || !match(left, arg, &relid) || !is_tenant_value(right) ||
			!is_equality_operator(saop->opno))
			return;
		if (IsA(right, ArrayExpr))
		{
			ListCell   *lc;

			foreach(lc, ((ArrayExpr *) right)->elements)
				*gates = lappend(*gates, make_gate(relid, lfirst(lc)));
		}
		else if (IsA(right, Const) && !((Const *) right)->constisnull)
		{
			Const	   *array_const = (Const *) right;
			ArrayType  *array = DatumGetArrayTypeP(array_const->constvalue);
			Oid			elemtype = ARR_ELEMTYPE(array);
			int16		typlen;
			bool		typbyval;
			char		typalign;
			Datum	   *values;
			bool	   *nulls;
			int			n;
			int			i;

			get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
			deconstruct_array(array, elemtype, typlen, typbyval, typalign,
							  &values, &nulls, &n);
			for (i = 0; i < n; i++)
			{
				if (nulls[i])
					continue;
				*gates = lappend(*gates,
								 make_gate(relid, (Node *) makeConst(elemtype, -1,
																	 array_const->constcollid,
																	 typlen, values[i], false,
																	 typbyval)));
			}
		}
		else
			*gates = lappend(*gates, make_gate(relid, right));
	}
}

typedef struct PredicateWalk
{
	TenantColumnMatch match;
	void	   *arg;
	List	  **gates;
} PredicateWalk;

/* Walk one level's qual tree (not into sub-queries) gating tenant predicates. */
static bool
find_tenant_predicates(Node *node, void *arg)
{
	PredicateWalk *walk = (PredicateWalk *) arg;

	if (node == NULL)
		return false;
	if (IsA(node, Query) || IsA(node, SubLink) || IsA(node, SubPlan))
		return false;			/* other levels are visited on their own */
	gate_predicate(node, walk->match, walk->arg, walk->gates);
	return expression_tree_walker(node, find_tenant_predicates, arg);
}

typedef struct QueryMatchArg
{
	Query	   *query;
	List	   *ancestors;
} QueryMatchArg;

static KgPooledRel *
match_query_tenant_column(Node *expr, void *arg, Oid *relid)
{
	QueryMatchArg *qm = (QueryMatchArg *) arg;

	return tenant_column_of(qm->query, qm->ancestors, expr, relid);
}

/*
 * Sequence functions name a sequence by oid and never put it in a range
 * table; a call on a sequence of a tenant schema gets a relation gate in
 * the query level it is called in, unless the sequence is in the schema of
 * that level's own target table (a column default).
 */
static void
gate_sequence_call(FuncExpr *func, Query *query, List **gates)
{
	Oid			seqid;
	Oid			nspoid;
	bool		own_target = false;

	if ((func->funcid != F_NEXTVAL && func->funcid != F_CURRVAL &&
		 func->funcid != F_SETVAL_REGCLASS_INT8 &&
		 func->funcid != F_SETVAL_REGCLASS_INT8_BOOL) ||
		func->args == NIL || !IsA(linitial(func->args), Const) ||
		((Const *) linitial(func->args))->constisnull)
		return;
	seqid = DatumGetObjectId(((Const *) linitial(func->args))->constvalue);
	nspoid = get_rel_namespace(seqid);
	if (query->resultRelation > 0)
	{
		RangeTblEntry *target = rt_fetch(query->resultRelation, query->rtable);

		own_target = (target->rtekind == RTE_RELATION &&
					  get_rel_namespace(target->relid) == nspoid);
	}
	if (!own_target && kg_tenant_by_namespace(nspoid) != NULL)
		*gates = lappend(*gates, make_relation_gate(seqid));
}

/* Append gates to a query level's WHERE clause (not yet preprocessed). */
static void
add_gates_to_query(Query *query, List *gates)
{
	if (gates == NIL)
		return;
	if (query->jointree == NULL)
		query->jointree = makeFromExpr(NIL, NULL);
	if (query->jointree->quals)
		gates = lappend(gates, query->jointree->quals);
	query->jointree->quals = (Node *) make_ands_explicit(gates);
}

/* Add gates for one query level, then descend into the others. */
/*
 * Whether a column of query's own range table can be a pooled table's
 * tenant column (tenant_column_of()): a level that reads only other
 * relations, as a schema-per-tenant statement does, has no predicate to
 * gate, and its quals are not walked.
 */
static bool
may_name_tenant_column(Query *query)
{
	ListCell   *lc;

	foreach(lc, query->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_SUBQUERY || rte->rtekind == RTE_CTE ||
			(rte->rtekind == RTE_RELATION && kg_pooled_rel(rte->relid) != NULL))
			return true;
	}
	return false;
}

static bool
add_tenant_gates(Node *node, void *arg)
{
	GateContext *outer = (GateContext *) arg;

	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;
		GateContext ctx = {outer ? outer->ancestors : NIL, NIL};
		QueryMatchArg qm = {query, ctx.ancestors};
		PredicateWalk walk = {match_query_tenant_column, &qm, &ctx.gates};
		GateContext inner;
		bool		result;

		if (query->jointree && may_name_tenant_column(query))
			(void) find_tenant_predicates((Node *) query->jointree, &walk);
		add_gates_to_query(query, ctx.gates);

		/*
		 * One walk of the level's expressions gates its sequence calls
		 * (inner.gates) and visits the other levels (each Query node).
		 */
		inner.ancestors = lcons(query, ctx.ancestors);
		inner.gates = NIL;
		result = query_tree_walker(query, add_tenant_gates, &inner, 0);
		add_gates_to_query(query, inner.gates);
		return result;
	}
	if (IsA(node, FuncExpr) && outer != NULL && outer->ancestors != NIL)
		gate_sequence_call((FuncExpr *) node, (Query *) linitial(outer->ancestors),
						   &outer->gates);
	return expression_tree_walker(node, add_tenant_gates, arg);
}

typedef struct RelMatchArg
{
	Index		rtindex;
	Oid			relid;
	KgPooledRel *pooled;
} RelMatchArg;

static KgPooledRel *
match_rel_tenant_column(Node *expr, void *arg, Oid *relid)
{
	RelMatchArg *rm = (RelMatchArg *) arg;
	Node	   *node = strip_relabel(expr);

	if (node == NULL || !IsA(node, Var) || ((Var *) node)->varlevelsup != 0 ||
		((Var *) node)->varno != rm->rtindex ||
		((Var *) node)->varattno != rm->pooled->tenant_attno)
		return NULL;
	*relid = rm->relid;
	return rm->pooled;
}

/*
 * Gate tenant predicates that only exist once the planner has pulled up
 * subqueries and inlined SQL functions into this query level (a function
 * called with another tenant's id).  Called while the planner builds the
 * relation; the level's quals are then preprocessed implicit-AND lists not
 * yet distributed, so an appended gate is planned as a one-time filter.
 */
static void
gate_pulled_up_predicates(PlannerInfo *root, Index rtindex, Oid relid,
						  KgPooledRel *pooled)
{
	RelMatchArg rm = {rtindex, relid, pooled};
	List	   *gates = NIL;
	PredicateWalk walk = {match_rel_tenant_column, &rm, &gates};
	FromExpr   *jointree = root->parse->jointree;

	if (jointree == NULL)
		return;
	(void) find_tenant_predicates((Node *) jointree, &walk);
	if (gates != NIL)
		jointree->quals = (Node *) list_concat((List *) jointree->quals, gates);
}

/* "value::text" for a gate's argument. */
static Node *
as_text(Node *value)
{
	CoerceViaIO *coerce;

	if (exprType(value) == TEXTOID)
		return value;
	coerce = makeNode(CoerceViaIO);
	coerce->arg = (Expr *) value;
	coerce->resulttype = TEXTOID;
	coerce->resultcollid = DEFAULT_COLLATION_OID;
	coerce->coerceformat = COERCE_EXPLICIT_CAST;
	coerce->location = -1;
	return (Node *) coerce;
}

/*
 * INSERT ... ON CONFLICT DO UPDATE reaches a row that no scan returned: the
 * conflicting one.  Its DO UPDATE ... WHERE, SET and RETURNING must never
 * see a row of another tenant or a soft-deleted row, so a gate that
 * refuses such a row goes first in the WHERE, before anything of the
 * user's is evaluated on it: keys_guard._assert_conflict_row(relid,
 * tenant column or NULL, deleted_at or NULL).
 */
static void
gate_conflict_row(Query *parse)
{
	OnConflictExpr *onconflict = parse->onConflict;
	RangeTblEntry *rte;
	KgRelationGuard *guard;
	Node	   *tenant = NULL;
	Node	   *deleted = NULL;
	Expr	   *gate;

	if (onconflict == NULL || onconflict->action != ONCONFLICT_UPDATE ||
		parse->resultRelation <= 0)
		return;
	rte = rt_fetch(parse->resultRelation, parse->rtable);
	guard = kg_relation_guard(rte->relid);
	if (guard == NULL)
		return;

	if (guard->pooled != NULL && kg_current_mode() == KG_MODE_TENANT)
		tenant = as_text((Node *) makeVar(parse->resultRelation, guard->pooled->tenant_attno,
										  guard->pooled->tenant_type, -1,
										  guard->pooled->tenant_collation, 0));
	if (guard->table != NULL && guard->table->soft_delete &&
		guard->table->deleted_at != InvalidAttrNumber &&
		kg_soft_delete_qual(parse->resultRelation, guard->table, false) != NULL)
		deleted = (Node *) makeVar(parse->resultRelation, guard->table->deleted_at,
								   TIMESTAMPTZOID, -1, InvalidOid, 0);
	if (tenant == NULL && deleted == NULL)
		return;

	/* Added in 1.2: refuse the statement until the SQL objects are there. */
	if (!OidIsValid(kg_assert_conflict_func()))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("INSERT ... ON CONFLICT DO UPDATE on a guarded table needs keys_guard 1.2"),
				 errdetail("The library is newer than the extension's SQL objects in this database."),
				 errhint("Run ALTER EXTENSION keys_guard UPDATE.")));
	gate = (Expr *) makeFuncExpr(kg_assert_conflict_func(), BOOLOID,
						list_make3(makeConst(OIDOID, -1, InvalidOid, sizeof(Oid),
											 ObjectIdGetDatum(rte->relid), false, true),
								   tenant ? tenant : (Node *) makeNullConst(TEXTOID, -1, DEFAULT_COLLATION_OID),
								   deleted ? deleted : (Node *) makeNullConst(TIMESTAMPTZOID, -1, InvalidOid)),
						InvalidOid, DEFAULT_COLLATION_OID, COERCE_EXPLICIT_CALL);
	onconflict->onConflictWhere = onconflict->onConflictWhere
		? (Node *) make_andclause(list_make2(gate, onconflict->onConflictWhere))
		: (Node *) gate;
}

/* Mark every relation a policy's subquery reads (mark_policy_subqueries). */
static bool
mark_untrusted_walker(Node *node, void *arg)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->rtekind == RTE_RELATION)
			rte->alias = makeAlias(kg_untrusted_alias(), NIL);
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, mark_untrusted_walker, arg,
								 QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, mark_untrusted_walker, arg);
}

static bool
find_policy_quals(Node *node, void *arg)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->securityQuals != NIL)
			(void) mark_untrusted_walker((Node *) rte->securityQuals, arg);
		return false;
	}
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;
		ListCell   *lc;

		/* A policy's WITH CHECK (its USING when it has none) goes here. */
		foreach(lc, query->withCheckOptions)
			(void) mark_untrusted_walker(lfirst_node(WithCheckOption, lc)->qual, arg);
		return query_tree_walker(query, find_policy_quals, arg,
								 QTW_EXAMINE_RTES_BEFORE);
	}
	return expression_tree_walker(node, find_policy_quals, arg);
}

/*
 * Row security policies are user code that PostgreSQL splices into
 * keys_guard's internal statements (which run as the table's owner, under
 * FORCE ROW LEVEL SECURITY) without a function call.  Before planning, the
 * only security quals and WITH CHECK options are the policies' (keys_guard
 * adds its filters later), so every relation their subqueries read gets the untrusted
 * alias: they get the filters and relation checks of the caller's
 * context, as outside the operation.
 */
static void
mark_policy_subqueries(Query *parse)
{
	(void) find_policy_quals((Node *) parse, NULL);
}

/*
 * A WITH HOLD cursor outlives its transaction, and with it the context its
 * rows were read under (it is materialized at commit, and a later FETCH
 * reads that copy whatever the context is then).  Behind a transaction
 * pooler the next client on the connection could read it, so it is
 * refused, as a session-wide context is, unless a superuser allowed
 * session state for the role.
 */
void
kg_isolation_refuse_holdable_cursor(void)
{
	if (keys_guard_allow_session_context)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("WITH HOLD cursors are not allowed in a database guarded by keys_guard"),
			 errdetail("A holdable cursor outlives its transaction and its tenant context; behind a transaction pooler the next client could read it."),
			 errhint("Declare the cursor without WITH HOLD inside the transaction. For direct or session-pooled connections, a superuser can turn on keys_guard.allow_session_context for the role.")));
}

/*
 * The planner side of isolation, called by hooks.c's planner_hook around
 * the planner below it: kg_isolation_plan_begin() opens a planning level
 * (planning nests: SQL functions, policies) and hands back the enclosing
 * level's state for kg_isolation_plan_end(); the others act on the query
 * and on the plan.
 */
bool
kg_isolation_plan_begin(void)
{
	bool		save = planned_unfiltered_pooled;

	planned_unfiltered_pooled = false;
	return save;
}

void
kg_isolation_plan_end(bool save)
{
	planned_unfiltered_pooled = save;
}

/*
 * Before soft_delete.c rewrites the query: in a span where keys_guard's
 * filters are relaxed, the row security policies' subqueries stay user code.
 */
void
kg_isolation_mark_policies(Query *parse)
{
	if (kg_filters_relaxed_span())
		mark_policy_subqueries(parse);
}

/*
 * After the soft-delete rewrite: gate the conflicting row of ON CONFLICT DO
 * UPDATE, and add the explicit-tenant gates under a tenant context.
 */
void
kg_isolation_add_gates(Query *parse)
{
	if (!kg_in_internal_operation() && !kg_ri_query_trusted())
		gate_conflict_row(parse);
	if (OidIsValid(kg_assert_tenant_func()) && OidIsValid(kg_assert_relation_func()) &&
		kg_current_mode() == KG_MODE_TENANT && !kg_ri_query_trusted() &&
		!kg_in_internal_operation())
		(void) add_tenant_gates((Node *) parse, NULL);
}

/* Whether node is the fail-closed policy's qual, keys_guard._guard_active(). */
static bool
is_fail_closed_qual(Node *node, Oid funcid)
{
	return node != NULL && IsA(node, FuncExpr) &&
		((FuncExpr *) node)->funcid == funcid && ((FuncExpr *) node)->args == NIL;
}

/*
 * Whether a security qual filters nothing: the constant true of a
 * permissive policy USING (true), such as keys_guard_base.
 */
static bool
is_true_qual(Node *node)
{
	return node != NULL && IsA(node, Const) && !((Const *) node)->constisnull &&
		((Const *) node)->consttype == BOOLOID &&
		DatumGetBool(((Const *) node)->constvalue);
}

/*
 * Before planning: the fail-closed policy's qual is true whenever this code
 * runs (the library is loaded, or no hook would call it), so it leaves the
 * top query level's security quals and WITH CHECK options here instead of
 * being evaluated by the planner, once per planning, which a statement
 * replanned at every tenant switch pays every time.  A security qual that
 * is the constant true (keys_guard_base, the permissive policy that lets
 * the restrictive ones decide) filters nothing and leaves with it.  Quals
 * of deeper query levels fold as the immutable call they are.
 */
void
kg_isolation_drop_fail_closed(Query *parse)
{
	Oid			funcid = kg_guard_active_func();
	ListCell   *lc;

	if (!OidIsValid(funcid))
		return;
	foreach(lc, parse->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
		ListCell   *qc;

		foreach(qc, rte->securityQuals)
		{
			if (is_fail_closed_qual(lfirst(qc), funcid) || is_true_qual(lfirst(qc)))
				rte->securityQuals = foreach_delete_current(rte->securityQuals, qc);
		}
	}
	foreach(lc, parse->withCheckOptions)
	{
		WithCheckOption *wco = lfirst_node(WithCheckOption, lc);

		if (is_fail_closed_qual(wco->qual, funcid))
			parse->withCheckOptions = foreach_delete_current(parse->withCheckOptions, lc);
	}
}

/*
 * After planning: a plan that reads pooled tables unfiltered (admin,
 * bypass) depends on the role.
 */
void
kg_isolation_planned(PlannedStmt *result)
{
	if (planned_unfiltered_pooled)
		result->dependsOnRole = true;
}

/*
 * keys_guard._assert_conflict_row(relid, tenant, deleted_at): the gate of
 * the conflicting row of INSERT ... ON CONFLICT DO UPDATE.  A row of
 * another tenant is a cross-tenant denial (which tenant stays in the server
 * log); a soft-deleted row still holds its unique keys until it is
 * restored or purged, and cannot be updated.
 */
PG_FUNCTION_INFO_V1(keys_guard_assert_conflict_row);
Datum
keys_guard_assert_conflict_row(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);

	if (!PG_ARGISNULL(1) && kg_current_mode() == KG_MODE_TENANT)
	{
		char	   *value = text_to_cstring(PG_GETARG_TEXT_PP(1));

		if (strcmp(value, kg_current_tenant()) != 0)
		{
			char	   *relation = kg_relation_name(relid);

			if (strlen(value) > KG_TENANT_ID_MAXLEN)
				value[KG_TENANT_ID_MAXLEN] = '\0';
			record_denial("insert", relation, "cross-tenant access", value);
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("cross-tenant access denied"),
					 errdetail("INSERT ... ON CONFLICT DO UPDATE on %s found a conflicting row of another tenant.",
							   relation)));
		}
	}
	if (!PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("conflicting row of %s is soft-deleted", kg_relation_name(relid)),
				 errdetail("INSERT ... ON CONFLICT DO UPDATE found a soft-deleted row with the same key, which it cannot update."),
				 errhint("Restore the row with keys_guard.restore(), or wait until it is purged.")));
	PG_RETURN_BOOL(true);
}

/*
 * keys_guard._assert_tenant(relid, value): the gate of an explicit tenant
 * predicate.  True for the current tenant; a denial for any other.
 */
PG_FUNCTION_INFO_V1(keys_guard_assert_tenant);
Datum
keys_guard_assert_tenant(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *value;
	const char *tenant;

	switch (kg_current_mode())
	{
		case KG_MODE_BYPASS:
		case KG_MODE_ADMIN:
			PG_RETURN_BOOL(true);
		case KG_MODE_NONE:
			deny_no_context("select", kg_relation_name(relid));
			break;
		case KG_MODE_TENANT:
			break;
	}
	if (PG_ARGISNULL(1))
		PG_RETURN_BOOL(true);
	value = text_to_cstring(PG_GETARG_TEXT_PP(1));
	tenant = kg_current_tenant();
	if (strcmp(value, tenant) != 0)
	{
		if (strlen(value) > KG_TENANT_ID_MAXLEN)
			value[KG_TENANT_ID_MAXLEN] = '\0';
		deny_other_tenant_value("select", kg_relation_name(relid), value);
	}
	PG_RETURN_BOOL(true);
}

/*
 * keys_guard._assert_relation(relid): the gate of a sequence function call
 * on a sequence of a tenant schema; the relation rules decide.
 */
PG_FUNCTION_INFO_V1(keys_guard_assert_relation);
Datum
keys_guard_assert_relation(PG_FUNCTION_ARGS)
{
	kg_check_relation(PG_GETARG_OID(0), "sequence");
	PG_RETURN_BOOL(true);
}

/* The current tenant as a value of the pooled column's type. */
static Datum
tenant_as_column_value(KgPooledRel *pooled, const char *tenant, Oid relid)
{
	LOCAL_FCINFO(fcinfo, 0);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	fcinfo->isnull = false;
	switch (pooled->tenant_type)
	{
		case UUIDOID:
			result = keys_guard_current_tenant_uuid(fcinfo);
			break;
		case INT8OID:
			result = keys_guard_current_tenant_bigint(fcinfo);
			break;
		default:
			return CStringGetTextDatum(tenant);
	}
	if (fcinfo->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tenant \"%s\" cannot be stored in the tenant column of %s",
						tenant, kg_relation_name(relid)),
				 errdetail("The tenant column has type %s.", format_type_be(pooled->tenant_type))));
	return result;
}

/*
 * NULL when a (non-null) tenant column value is the tenant's, else the
 * value as text (cut to the longest tenant id) for the denial.
 */
static char *
tenant_value_text(KgPooledRel *pooled, Datum value, const char *tenant)
{
	Oid			output_func;
	bool		is_varlena;
	char	   *text_value;

	/* The common case first: a text column holding the tenant's id. */
	if (pooled->tenant_type == TEXTOID)
	{
		struct varlena *stored = (struct varlena *) DatumGetPointer(value);

		if (!VARATT_IS_COMPRESSED(stored) && !VARATT_IS_EXTERNAL(stored) &&
			VARSIZE_ANY_EXHDR(stored) == strlen(tenant) &&
			memcmp(VARDATA_ANY(stored), tenant, VARSIZE_ANY_EXHDR(stored)) == 0)
			return NULL;
	}
	getTypeOutputInfo(pooled->tenant_type, &output_func, &is_varlena);
	text_value = OidOutputFunctionCall(output_func, value);
	if (strcmp(text_value, tenant) == 0)
		return NULL;
	if (strlen(text_value) > KG_TENANT_ID_MAXLEN)
		text_value[KG_TENANT_ID_MAXLEN] = '\0';
	return text_value;
}

/*
 * Row trigger on pooled tables: BEFORE INSERT, fill in the current tenant
 * when the row has none and refuse a row of another tenant; AFTER UPDATE
 * WHEN the tenant column changed, refuse the new row unless it is the
 * current tenant's.  An UPDATE that leaves the column alone never fires
 * it: the row it changes was the current tenant's (the scan's filter, or
 * the gate of an ON CONFLICT row, saw to that), and an AFTER trigger costs
 * no row lock, which a BEFORE UPDATE row trigger takes for every row.
 * (Tables guarded before 1.3 still have BEFORE INSERT OR UPDATE until the
 * extension is updated; that works too.)
 */
PG_FUNCTION_INFO_V1(keys_guard_tenant_row_guard);
Datum
keys_guard_tenant_row_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tuple;
	KgPooledRel *pooled;
	bool		isnull;
	Datum		value;
	const char *tenant;
	char	   *text_value;
	KgMode		mode;
	bool		after;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event) ||
		(!TRIGGER_FIRED_BEFORE(trigdata->tg_event) &&
		 !TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		elog(ERROR, "keys_guard_tenant_row_guard: must be fired before INSERT or UPDATE or after UPDATE of a row");
	after = !TRIGGER_FIRED_BEFORE(trigdata->tg_event);

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	pooled = kg_pooled_rel(RelationGetRelid(rel));
	if (pooled == NULL)
		return PointerGetDatum(tuple);	/* released, or the extension is gone */

	mode = kg_current_mode();
	if (mode == KG_MODE_BYPASS || kg_in_internal_operation())
		return PointerGetDatum(tuple);
	if (mode == KG_MODE_NONE)
		deny_no_context("insert", kg_relation_name(RelationGetRelid(rel)));
	if (!OidIsValid(pooled->current_func))
		refuse_incomplete_guard(kg_relation_name(RelationGetRelid(rel)));

	value = heap_getattr(tuple, pooled->tenant_attno, desc, &isnull);
	if (mode == KG_MODE_ADMIN)
	{
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("tenant column \"%s\" must not be null under an admin context",
							NameStr(TupleDescAttr(desc, pooled->tenant_attno - 1)->attname)),
					 errdetail("An admin context has no current tenant to fill in.")));
		return PointerGetDatum(tuple);
	}

	tenant = kg_current_tenant();
	if (isnull && after)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("tenant column \"%s\" of %s must not be set to null",
						NameStr(TupleDescAttr(desc, pooled->tenant_attno - 1)->attname),
						kg_relation_name(RelationGetRelid(rel))),
				 errdetail("The row belongs to tenant \"%s\".", tenant)));
	if (isnull)
	{
		Datum		replacement = tenant_as_column_value(pooled, tenant, RelationGetRelid(rel));
		int			attnum = pooled->tenant_attno;
		bool		replnull = false;

		tuple = heap_modify_tuple_by_cols(tuple, desc, 1, &attnum, &replacement, &replnull);
		return PointerGetDatum(tuple);
	}

	text_value = tenant_value_text(pooled, value, tenant);
	if (text_value != NULL)
		deny_other_tenant_value(TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? "update" : "insert",
								kg_relation_name(RelationGetRelid(rel)), text_value);

	/*
	 * After an UPDATE the old row must have been the current tenant's too.
	 * The scan's filter saw to that when the row was read, but the context
	 * is read again here, at the end of the statement: a statement that
	 * switched the context after its UPDATE (a later CTE, a volatile
	 * function) must not hand the rows it read under one tenant to another.
	 */
	if (after)
	{
		bool		old_isnull;
		Datum		old_value = heap_getattr(trigdata->tg_trigtuple, pooled->tenant_attno,
											 desc, &old_isnull);

		text_value = old_isnull ? pstrdup("") : tenant_value_text(pooled, old_value, tenant);
		if (text_value != NULL)
			deny_other_tenant_value("update", kg_relation_name(RelationGetRelid(rel)),
									text_value);
	}
	return PointerGetDatum(tuple);
}

/*
 * keys_guard._deny_ddl(schema, object): called by the event triggers for
 * every object a DDL command created, altered or dropped.  Under a tenant
 * context DDL stays in that tenant's schema (or temporary schemas);
 * without a context it is a migration and ordinary privileges govern it.
 */
PG_FUNCTION_INFO_V1(keys_guard_deny_ddl);
Datum
keys_guard_deny_ddl(PG_FUNCTION_ARGS)
{
	char	   *schema = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *object = PG_ARGISNULL(1) ? pstrdup("(unknown)") : text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *tenant = kg_current_tenant();
	Oid			nspoid;
	KgTenant   *owner;

	if (kg_current_mode() != KG_MODE_TENANT)
		PG_RETURN_VOID();

	/* Temporary objects are the session's own ("pg_temp" is the alias). */
	if (schema && (strcmp(schema, "pg_temp") == 0 ||
				   strncmp(schema, "pg_temp_", 8) == 0 ||
				   strncmp(schema, "pg_toast_temp_", 14) == 0))
		PG_RETURN_VOID();

	/* By name too: a dropped tenant schema no longer has an oid. */
	nspoid = schema ? get_namespace_oid(schema, true) : InvalidOid;
	owner = OidIsValid(nspoid) ? kg_tenant_by_namespace(nspoid) : NULL;
	if (owner == NULL && schema &&
		strncmp(schema, KG_TENANT_SCHEMA_PREFIX, strlen(KG_TENANT_SCHEMA_PREFIX)) == 0)
		owner = kg_tenant_by_id(schema + 7);
	if (owner != NULL && strcmp(owner->id, tenant) == 0)
		PG_RETURN_VOID();

	if (owner != NULL)
	{
		record_denial("ddl", object, "cross-tenant access", owner->id);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cross-tenant access denied"),
				 errdetail("Object %s belongs to tenant \"%s\", but the current tenant is \"%s\".",
						   object, owner->id, tenant)));
	}
	record_denial("ddl", object, "ddl outside the tenant schema", NULL);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("schema changes outside the tenant's schema are not allowed under a tenant context"),
			 errdetail("Object %s is not in the schema of tenant \"%s\".", object, tenant),
			 errhint("Run migrations without a tenant context, or use keys_guard.admin_context().")));
	PG_RETURN_VOID();
}
