/*-------------------------------------------------------------------------
 *
 * hooks.c
 *	  Installs every PostgreSQL hook keys_guard uses and dispatches each to
 *	  the file that owns the logic; nothing else.
 *
 * Every hook keeps the previous provider's pointer and calls it, or the
 * standard function when there is none (auto_explain's template); the
 * executor hooks decide which once, when they are installed.  A veto
 * hook lets the earlier providers speak first and respects their "no"
 * (sepgsql).  State that keys_guard changes around the call below it is
 * restored with PG_FINALLY when that call throws.
 *
 *	  hook						owner of the logic
 *	  shmem_request_hook		audit.c, worker.c (sizes)
 *	  shmem_startup_hook		audit.c, worker.c (initialisation)
 *	  ExecutorCheckPerms_hook	isolation.c
 *	  ExecutorStart_hook		keyholder.c, acting.c (statement span), isolation.c
 *	  ExecutorRun_hook			isolation.c, acting.c (statement span), keyholder.c (nesting)
 *	  ExecutorFinish_hook		acting.c (statement span), keyholder.c (nesting)
 *	  ExecutorEnd_hook			keyholder.c (per-statement audit under a key)
 *	  planner_hook				acting.c, isolation.c, soft_delete.c
 *	  get_relation_info_hook	isolation.c (tenant and soft-delete filters)
 *	  ProcessUtility_hook		keyholder.c, utility.c
 *	  object_access_hook		keyholder.c (functions with side effects)
 *	  needs_fmgr_hook, fmgr_hook	acting.c (user-code frames)
 *	  emit_log_hook				redact.c (secrets out of every log line)
 *	  post_parse_analyze_hook	redact.c (secrets out of pg_stat_activity;
 *								also from the planner, ExecutorStart and
 *								ProcessUtility hooks)
 *
 * Cache callbacks are not hooks: each stays with the file whose state it
 * invalidates (kg_catalog_init(), kg_acting_init(), kg_keyholder_init()),
 * and kg_hooks_install() calls those once.  The transaction callbacks are
 * one pair, here, that calls each file's part in order.  So this file
 * lists every way PostgreSQL calls into keys_guard on its own.  (worker.c
 * registers one more transaction callback lazily, the first time it has a
 * wake-up to send.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_proc.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "optimizer/plancat.h"
#include "optimizer/planner.h"
#include "parser/analyze.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/dest.h"
#include "tcop/utility.h"

#include "keys_guard.h"

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
/*
 * The hooks every statement runs keep the previous provider, or the
 * standard function, in kg_hot_state (keys_guard.h): next_executor_start
 * and so on, prev_check_perms and prev_object_access.
 */
static planner_hook_type prev_planner_hook = NULL;
static get_relation_info_hook_type prev_get_relation_info_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;
static needs_fmgr_hook_type prev_needs_fmgr_hook = NULL;
static fmgr_hook_type prev_fmgr_hook = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;
static post_parse_analyze_hook_type prev_post_parse_analyze_hook = NULL;

/*
 * shmem_request_hook: ask for keys_guard's shared memory, the denial queue
 * and the worker table.
 */
static void
kg_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(add_size(kg_audit_shmem_size(), kg_worker_shmem_size()),
									kg_context_shmem_size()));
	RequestNamedLWLockTranche("keys_guard", 1);
	kg_audit_request_locks();
}

/* shmem_startup_hook: create or attach to that shared memory. */
static void
kg_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	kg_audit_shmem_init();
	kg_worker_shmem_init();
	kg_context_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * In a parallel query's worker, the range table of the plan fragment it was
 * started to run, which its leader has already checked.
 */
static List *parallel_fragment_rtable = NIL;

/*
 * Whether acting.c needs no span for the statement, decided from its quick
 * part alone: kg_acting_statement_is_plain() is then true too.  Otherwise
 * the hooks take their full path, which asks it.
 */
static inline bool
plain_statement_quick(PlannedStmt *pstmt)
{
	return likely(kg_hot_state.acting_quiet) && likely(!kg_plan_is_rule_action(pstmt)) &&
		likely(!InNoForceRLSOperation());
}

/*
 * ExecutorCheckPerms_hook: PostgreSQL's own permission checks and the
 * earlier providers have passed; now keys_guard's.
 */
static kg_statement_path bool
kg_check_perms(KG_CHECK_PERMS_ARGS)
{
	if (kg_hot_state.prev_check_perms &&
		!kg_hot_state.prev_check_perms(KG_CHECK_PERMS_CALL_ARGS))
		return false;
	/*
	 * A parallel worker's plan fragment was checked by its leader.  The
	 * statements that functions run in the worker (a PL/pgSQL body, say,
	 * also one called while the fragment starts, for initial partition
	 * pruning) are planned in the worker and checked here like anywhere
	 * else: the worker has its leader's context.  So is any statement of a
	 * worker that runs no fragment (a parallel index build's expressions).
	 */
	if (rangeTable != NIL && rangeTable == parallel_fragment_rtable && IsParallelWorker())
		return true;
	kg_isolation_check_range_table(rangeTable);
	return true;
}

/*
 * Start a statement inside its acting span.  Apart from the hook, as are
 * the run and the finish below: a function with a PG_TRY block saves every
 * register it uses, and the hooks run at every statement without one.
 */
static pg_noinline void
executor_start_in_span(QueryDesc *queryDesc, int eflags)
{
	int			save = kg_begin_statement(NULL, queryDesc->plannedstmt);
	int			save_run = kg_acting_run_begin();

	PG_TRY();
	{
		kg_hot_state.next_executor_start(queryDesc, eflags);
	}
	PG_FINALLY();
	{
		kg_acting_run_end(save_run);
		kg_end_statement(save);
	}
	PG_END_TRY();
}

/*
 * A statement's start with each file's part: a keyholder session without a
 * write key runs only plain SELECTs (keyholder.c); start the statement
 * inside its acting span (a trusted statement's start evaluates
 * expressions too: initial partition pruning), then remember the context a
 * statement on guarded data started under, and count a statement under a
 * key.  Nearly every statement needs no span (acting.c), and is started
 * without one and without the PG_TRY block that would end it.
 */
static pg_noinline void
executor_start_full(QueryDesc *queryDesc, int eflags)
{
	/*
	 * A parallel query's plan fragment sends its rows to the leader through
	 * a tuple queue; no statement that a function runs in the worker does.
	 */
	if (IsParallelWorker() && queryDesc->dest != NULL &&
		queryDesc->dest->mydest == DestTupleQueue)
		parallel_fragment_rtable = queryDesc->plannedstmt->rtable;

	kg_keyholder_executor_start(queryDesc, eflags);
	if (queryDesc->plannedstmt->parallelModeNeeded && !IsParallelWorker())
		kg_context_before_parallel_plan();
	if (kg_acting_statement_is_plain(queryDesc->plannedstmt))
		kg_hot_state.next_executor_start(queryDesc, eflags);
	else
		executor_start_in_span(queryDesc, eflags);

	kg_isolation_executor_started(queryDesc, eflags);
	if (kg_hot_state.context_key != NULL)
		kg_keyholder_executor_started(queryDesc);
}

/*
 * ExecutorStart_hook: the statement's text out of pg_stat_activity's
 * secrets, then its start.  In a quiet session (keys_guard.h) a statement
 * that needs no span and no parallel worker has nothing to do but its
 * isolation record: the same as executor_start_full() would find, on a
 * few cache lines instead of all of its.  The hooks below have the same
 * shape: a quick path for what they would find in that case, decided from
 * kg_hot_state, and the full one for everything else.
 */
static kg_statement_path void
kg_executor_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *pstmt = queryDesc->plannedstmt;

	/*
	 * An Execute message reported its text again; a parallel worker shows
	 * its leader's.
	 */
	kg_redact_activity();

	if (likely(kg_session_quiet() && !pstmt->parallelModeNeeded &&
			   plain_statement_quick(pstmt) && !IsParallelWorker()))
	{
		kg_hot_state.next_executor_start(queryDesc, eflags);
		kg_isolation_executor_started(queryDesc, eflags);
	}
	else
		executor_start_full(queryDesc, eflags);
}

static pg_noinline void
executor_run_in_span(QueryDesc *queryDesc, ScanDirection direction,
					 uint64 count, bool execute_once)
{
	int			save = kg_begin_statement(NULL, queryDesc->plannedstmt);
	int			save_run = kg_acting_run_begin();

	PG_TRY();
	{
		kg_hot_state.next_executor_run(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		kg_acting_run_end(save_run);
		kg_end_statement(save);
	}
	PG_END_TRY();
}

/*
 * A run with each file's part: a cursor or portal started under one
 * context must not be read under another; then run inside the statement's
 * acting span, if it needs one, one level deeper (keyholder.c, which puts
 * the depth back if the run fails).
 */
static pg_noinline void
executor_run_full(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				  bool execute_once)
{
	kg_isolation_check_portal_context(queryDesc);

	kg_keyholder_nest(1);
	if (kg_acting_statement_is_plain(queryDesc->plannedstmt))
		kg_hot_state.next_executor_run(queryDesc, direction, count, execute_once);
	else
		executor_run_in_span(queryDesc, direction, count, execute_once);
	kg_keyholder_nest(-1);
}

/*
 * ExecutorRun_hook: pg_stat_activity's text out of its secrets, as at the
 * start (an Execute message runs a portal its Bind message started, and
 * reports its text again first), then, with no statement started on
 * guarded data, quickly.
 */
static kg_statement_path void
kg_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				bool execute_once)
{
	kg_redact_activity();
	if (likely(dlist_is_empty(&kg_hot_state.running_queries) &&
			   plain_statement_quick(queryDesc->plannedstmt)))
	{
		kg_keyholder_nest(1);
		kg_hot_state.next_executor_run(queryDesc, direction, count, execute_once);
		kg_keyholder_nest(-1);
	}
	else
		executor_run_full(queryDesc, direction, count, execute_once);
}

static pg_noinline void
executor_finish_in_span(QueryDesc *queryDesc)
{
	int			save = kg_begin_statement(NULL, queryDesc->plannedstmt);

	PG_TRY();
	{
		kg_hot_state.next_executor_finish(queryDesc);
	}
	PG_FINALLY();
	{
		kg_end_statement(save);
	}
	PG_END_TRY();
}

/*
 * A finish with each file's part: AFTER triggers of a statement a rule
 * produced run as part of that rule action, untrusted like it (acting.c);
 * one level deeper (keyholder.c).
 */
static pg_noinline void
executor_finish_full(QueryDesc *queryDesc)
{
	kg_keyholder_nest(1);
	if (kg_acting_statement_is_plain(queryDesc->plannedstmt))
		kg_hot_state.next_executor_finish(queryDesc);
	else
		executor_finish_in_span(queryDesc);
	kg_keyholder_nest(-1);
}

/*
 * ExecutorFinish_hook.  A SELECT without a data-modifying WITH runs nothing
 * in its finish: PostgreSQL starts it without AFTER triggers
 * (EXEC_FLAG_SKIP_TRIGGERS) and it has no ModifyTable node to complete.
 * No statement nests in it and no user code runs, so neither an acting
 * span nor the executor's depth (keyholder.c) has anything to mark, and it
 * goes straight on.  For any other statement that needs no span, quickly.
 */
static kg_statement_path void
kg_executor_finish(QueryDesc *queryDesc)
{
	if (likely(queryDesc->operation == CMD_SELECT) &&
		likely(!queryDesc->plannedstmt->hasModifyingCTE))
	{
		kg_hot_state.next_executor_finish(queryDesc);
		return;
	}
	if (likely(plain_statement_quick(queryDesc->plannedstmt)))
	{
		kg_keyholder_nest(1);
		kg_hot_state.next_executor_finish(queryDesc);
		kg_keyholder_nest(-1);
	}
	else
		executor_finish_full(queryDesc);
}

/* The end of a statement, with each file's part: kg_executor_end(). */
static pg_noinline void
executor_end_full(QueryDesc *queryDesc)
{
	kg_keyholder_executor_end(queryDesc);
	kg_hot_state.next_executor_end(queryDesc);
	if (kg_hot_state.context != NULL)
		kg_context_after_statement();
}

/*
 * ExecutorEnd_hook: a statement that ends at top level under an API key
 * gets its audit record (keyholder.c) while its counts are still there,
 * and a context may have a schema to put first (context.c).  With no
 * context and no statement counted under a key, neither has anything to
 * do.
 */
static kg_statement_path void
kg_executor_end(QueryDesc *queryDesc)
{
	if (likely(kg_hot_state.context == NULL &&
			   dlist_is_empty(&kg_hot_state.key_statements)))
		kg_hot_state.next_executor_end(queryDesc);
	else
		executor_end_full(queryDesc);
}

/*
 * planner_hook: refuse holdable cursors, rewrite DELETE into a soft delete
 * (soft_delete.c), add the explicit-tenant gates (isolation.c), plan, then
 * mark plans that read pooled tables unfiltered (admin, bypass) as
 * depending on the role and plans of rule actions as untrusted (acting.c).
 * Planning a trusted statement runs user code too (a policy's stable
 * function, evaluated for a selectivity estimate): it counts as a run.
 */
static kg_hot PlannedStmt *
kg_planner(Query *parse, const char *query_string, int cursorOptions,
		   ParamListInfo boundParams)
{
	PlannedStmt *result;
	int			save_statement = kg_begin_statement(parse, NULL);
	int			save_run = kg_acting_run_begin();
	bool		save_planning = kg_isolation_plan_begin();
	bool		soft_deleted = false;

	/* A Bind message reported its statement's text again. */
	kg_redact_activity();

	PG_TRY();
	{
		if ((cursorOptions & CURSOR_OPT_HOLD) && kg_extension_active())
			kg_isolation_refuse_holdable_cursor();
		if (parse->commandType != CMD_UTILITY && kg_extension_active())
		{
			kg_isolation_mark_policies(parse);
			soft_deleted = kg_soft_delete_rewrite(parse);
			kg_isolation_add_gates(parse);
			kg_isolation_drop_fail_closed(parse);
		}

		if (prev_planner_hook)
			result = prev_planner_hook(parse, query_string, cursorOptions, boundParams);
		else
			result = standard_planner(parse, query_string, cursorOptions, boundParams);
		kg_isolation_planned(result);
		if (parse->querySource != QSRC_ORIGINAL)
			kg_mark_rule_action(result);
		/* The client sees "DELETE n": the tag follows the statement's type. */
		if (soft_deleted)
			result->commandType = CMD_DELETE;
	}
	PG_FINALLY();
	{
		kg_isolation_plan_end(save_planning);
		kg_acting_run_end(save_run);
		kg_end_statement(save_statement);
	}
	PG_END_TRY();
	return result;
}

/*
 * get_relation_info_hook: after the earlier providers, the tenant and
 * soft-delete filters of a guarded relation (isolation.c).
 */
static void
kg_get_relation_info(PlannerInfo *root, Oid relationObjectId, bool inhparent,
					 RelOptInfo *rel)
{
	if (prev_get_relation_info_hook)
		prev_get_relation_info_hook(root, relationObjectId, inhparent, rel);
	kg_isolation_relation_info(root, relationObjectId, rel);
}

/* The previous provider's ProcessUtility, or the standard one. */
static inline void
next_process_utility(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context,
								  params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * A utility statement with each file's part: in a keyholder session without
 * a write key only statements that change nothing (keyholder.c); check the
 * statement (utility.c), which may replace a COPY TO by its planned form,
 * run it, and record it when it ran under an API key.
 */
static pg_noinline void
process_utility_full(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	if (context == PROCESS_UTILITY_TOPLEVEL)
		kg_redact_activity();
	kg_keyholder_check_utility(pstmt);
	pstmt = kg_utility_check_statement(pstmt);
	kg_context_before_utility(pstmt);

	next_process_utility(pstmt, queryString, readOnlyTree, context,
						 params, queryEnv, dest, qc);
	kg_keyholder_utility_done(pstmt, context);
	kg_context_after_utility(pstmt);
}

/*
 * ProcessUtility_hook.  Transaction control (BEGIN, COMMIT, SAVEPOINT ...)
 * where no regime of keyholder.c applies (kg_session_unregimed()) has
 * nothing to do in any file but the statement's text and the context's
 * after-statement check: utility.c checks none of it, the context sets no
 * schema before it and ends only at DISCARD ALL and RESET ALL, and
 * keyholder.c neither refuses nor records it outside its regimes.  Every
 * other statement takes the full path.
 */
static kg_hot void
kg_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	if (IsA(pstmt->utilityStmt, TransactionStmt) && kg_session_unregimed())
	{
		if (context == PROCESS_UTILITY_TOPLEVEL)
			kg_redact_activity();
		next_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
		kg_context_after_statement();
	}
	else
		process_utility_full(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
}

/*
 * object_access_hook: after the earlier providers, refuse a function with
 * side effects in a keyholder session without a write key or under a
 * read-only token (keyholder.c), which has nothing to do outside those
 * regimes (kg_session_unregimed()).  PostgreSQL raises
 * OAT_FUNCTION_EXECUTE when an expression calling a function is
 * initialised, built-in functions included.
 */
static pg_noinline void
object_access_full(ObjectAccessType access, Oid classId, Oid objectId,
				   int subId, void *arg)
{
	if (kg_hot_state.prev_object_access)
		kg_hot_state.prev_object_access(access, classId, objectId, subId, arg);
	if (access == OAT_FUNCTION_EXECUTE && classId == ProcedureRelationId &&
		!kg_session_unregimed())
		kg_keyholder_function_execute(objectId);
}

/*
 * The same with no earlier provider, the usual case: only the function's
 * oid is needed after the regime's check, not every argument.
 */
static kg_statement_path void
kg_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				 int subId, void *arg)
{
	if (unlikely(kg_hot_state.prev_object_access != NULL))
	{
		object_access_full(access, classId, objectId, subId, arg);
		return;
	}
	if (access == OAT_FUNCTION_EXECUTE && classId == ProcedureRelationId &&
		!kg_session_unregimed())
		kg_keyholder_function_execute(objectId);
}

/*
 * needs_fmgr_hook: a function an earlier provider hooks stays hooked;
 * acting.c decides for the others.
 */
static kg_hot bool
kg_needs_fmgr_hook(Oid fn_oid)
{
	if (prev_needs_fmgr_hook && prev_needs_fmgr_hook(fn_oid))
		return true;
	return kg_acting_function_hooked(fn_oid);
}

/* fmgr_hook: count the frames of a hooked function (acting.c). */
static kg_hot void
kg_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *private)
{
	/*
	 * PostgreSQL keeps one private datum per hooked function; a module
	 * loaded before keys_guard that also uses it (sepgsql does) cannot share
	 * it, so keys_guard is not meant to be combined with such a module.
	 */
	if (prev_fmgr_hook)
		prev_fmgr_hook(event, flinfo, private);
	kg_acting_function_event(event, flinfo, private);
}

/*
 * emit_log_hook: redact secrets before the message is written anywhere,
 * then let the earlier providers see the redacted message.  Runs inside
 * error reporting: redact.c never throws.
 */
static void
kg_emit_log(ErrorData *edata)
{
	kg_redact_error_data(edata);
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * post_parse_analyze_hook: the earlier providers, then the statement's
 * text in pg_stat_activity without its secrets (redact.c).
 */
static kg_hot void
kg_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	if (prev_post_parse_analyze_hook)
		prev_post_parse_analyze_hook(pstate, query, jstate);
	kg_redact_activity();
	kg_context_check_analyzed(query);
}

/*
 * The end of a transaction, for each file that keeps state across
 * statements: one callback instead of one per file, since PostgreSQL calls
 * each at every event of every transaction.  None has anything to do
 * before the commit, and acting.c only at a rollback.  context.c comes
 * last: the others may still read the transaction's context (redact.c
 * keeps an aborted block's request).  A commit that leaves their state
 * as it finds it, the common case, is decided from kg_hot_state alone:
 * they would only clear what is clear already.
 */
static pg_noinline void
xact_callback_full(XactEvent event)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		kg_acting_xact_event(event);
	kg_redact_xact_event(event);
	kg_keyholder_xact_event(event);
	kg_context_xact_event(event);
}

static kg_statement_path void
kg_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PARALLEL_PRE_COMMIT ||
		event == XACT_EVENT_PRE_PREPARE)
		return;
	if (likely(event == XACT_EVENT_COMMIT) &&
		likely(kg_hot_state.context_levels == NULL) &&
		likely(!kg_hot_state.secret_call_active) &&
		likely(!kg_hot_state.aborted_set) &&
		likely(!kg_hot_state.pinned_in_xact))
		return;
	xact_callback_full(event);
}

/* The same for a subtransaction's start and end. */
static kg_hot void
kg_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_PRE_COMMIT_SUB)
		return;
	kg_redact_subxact_event(event);
	kg_keyholder_subxact_event(event);
	kg_context_subxact_event(event);
}

/*
 * Install every hook, each beside the previous provider's, and register
 * the cache and transaction callbacks.  Called once, from _PG_init while
 * shared_preload_libraries is processed.
 */
void
kg_hooks_install(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = kg_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = kg_shmem_startup;

	RegisterXactCallback(kg_xact_callback, NULL);
	RegisterSubXactCallback(kg_subxact_callback, NULL);
	kg_catalog_init();

	kg_hot_state.prev_check_perms = ExecutorCheckPerms_hook;
	ExecutorCheckPerms_hook = kg_check_perms;
	kg_hot_state.next_executor_start =
		ExecutorStart_hook ? ExecutorStart_hook : standard_ExecutorStart;
	ExecutorStart_hook = kg_executor_start;
	kg_hot_state.next_executor_run =
		ExecutorRun_hook ? ExecutorRun_hook : standard_ExecutorRun;
	ExecutorRun_hook = kg_executor_run;
	kg_hot_state.next_executor_finish =
		ExecutorFinish_hook ? ExecutorFinish_hook : standard_ExecutorFinish;
	ExecutorFinish_hook = kg_executor_finish;
	kg_hot_state.next_executor_end =
		ExecutorEnd_hook ? ExecutorEnd_hook : standard_ExecutorEnd;
	ExecutorEnd_hook = kg_executor_end;
	prev_planner_hook = planner_hook;
	planner_hook = kg_planner;
	prev_get_relation_info_hook = get_relation_info_hook;
	get_relation_info_hook = kg_get_relation_info;

	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = kg_process_utility;
	kg_hot_state.prev_object_access = object_access_hook;
	object_access_hook = kg_object_access;
	kg_keyholder_init();

	prev_needs_fmgr_hook = needs_fmgr_hook;
	needs_fmgr_hook = kg_needs_fmgr_hook;
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = kg_fmgr_hook;

	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = kg_emit_log;
	prev_post_parse_analyze_hook = post_parse_analyze_hook;
	post_parse_analyze_hook = kg_post_parse_analyze;
	kg_acting_init();
}
