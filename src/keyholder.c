/*-------------------------------------------------------------------------
 *
 * keyholder.c
 *	  The read-only regime of keyholder sessions (docs/contract.md §15) and
 *	  of read-only token contexts (§17), and the per-statement audit of
 *	  statements run under an API key.
 *
 * A session is a "keyholder" session when its session user (the login, or
 * what SET SESSION AUTHORIZATION made it: SET ROLE cannot change it) is a
 * member of keys_guard_keyholder and is not a superuser.  In such a
 * session, unless the current transaction has a write key in force
 * (kg_context_api_key()), nothing may change, by any path:
 *
 *	- every executor statement, nested ones (SPI, SQL functions, SECURITY
 *	  DEFINER functions, triggers) included, must be a plain SELECT: no
 *	  INSERT, UPDATE, DELETE or MERGE (temporary tables too, which
 *	  PostgreSQL's READ ONLY allows), no data-modifying CTE, no FOR
 *	  UPDATE/SHARE;
 *	- utility statements pass a whitelist (kg_keyholder_check_utility());
 *	- built-in functions with side effects the executor does not see
 *	  (large objects, advisory locks, pg_notify, set_config, sequences, ...)
 *	  are refused when an expression that calls them is initialised: the
 *	  object_access_hook's OAT_FUNCTION_EXECUTE event, which PostgreSQL
 *	  raises for built-in functions too (fmgr_hook is not consulted for
 *	  them);
 *	- and as a backstop the transaction is made READ ONLY (XactReadOnly),
 *	  so whatever PostgreSQL itself refuses in a read-only transaction is
 *	  refused too (25006) even if a path above were missed.  When a write key
 *	  comes into force the transaction's own setting is put back.
 *
 * A write key lets the transaction change table rows, as a gateway context
 * would (INSERT, UPDATE, DELETE, MERGE, COPY FROM, row locks, nextval()
 * for column defaults), and nothing else: the utility whitelist still
 * applies (no DDL, TRUNCATE, CALL or DO), so do the function list and the
 * protected settings, and no statement may create a relation.
 *
 * The same regime applies, in any session, while the context in force
 * came from a token whose scope has no "write" (set_context_from_token(),
 * token.c; kg_context_read_only()): a gateway's or an administrator's
 * session under such a context can change nothing either, until the
 * transaction ends or another context replaces it.  regime_session() says
 * whether the regime concerns the session, regime_applies() whether
 * nothing may change now.
 *
 * Each refusal is 42501, with a LOG line and an audit record through the
 * shared queue, so it survives the rollback the error causes.
 *
 * Every top-level statement run while a key (read or write) is in force
 * is audited too: the command, the relations of its range table, the rows
 * it processed; never a value.  audit.c counts them per key, command and
 * relations in windows of a second (kg_audit_key_statement()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parsetree.h"
#include "storage/lmgr.h"
#include "storage/lockdefs.h"
#include "storage/proc.h"
#include "tcop/cmdtag.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "keys_guard.h"

#define KG_KEYHOLDER_ROLE "keys_guard_keyholder"

/*
 * Whether the session user is a keyholder is kept in kg_hot_state
 * (keyholder_valid, keyholder_session, keyholder_result) until a role
 * changes.
 */

/* The transaction's own read-only setting, saved when the regime forced it. */
static LocalTransactionId forced_lxid = InvalidLocalTransactionId;
static bool saved_read_only = false;

/*
 * kg_hot_state.executor_depth is the depth of ExecutorRun/ExecutorFinish:
 * 0 means a statement ends at top level.  The hooks count it up and down
 * around the call without a PG_TRY block; an error that leaves a run
 * aborts the (sub)transaction it runs in, and the callbacks below put back
 * the depth that (sub)transaction started with.
 */

/*
 * The statement timeout a key pinned in a keyholder's session
 * (kg_keyholder_lower_timeout()): whether pinned_timeout is the session's
 * setting, and whether this transaction made it so
 * (kg_hot_state.pinned_in_xact), at which level.
 */
static bool timeout_pinned = false;		/* pinned_timeout is the session's */
static int	pinned_timeout = 0;
static int	pinned_level = 0;			/* at this nesting level */

/* The executor depth when each open subtransaction started, by level. */
static int *depth_at_level = NULL;
static int	depth_levels = 0;

/* A role or membership changed: compute again at the next statement. */
static void
keyholder_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	kg_hot_state.keyholder_valid = false;
}

/* A transaction is rolled back: no statement is running any more. */
kg_statement_path void
kg_keyholder_xact_event(XactEvent event)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		kg_hot_state.executor_depth = 0;
	/* guc.c undoes a session setting made by a transaction that aborts. */
	if (event == XACT_EVENT_ABORT && kg_hot_state.pinned_in_xact)
		timeout_pinned = false;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		kg_hot_state.pinned_in_xact = false;
}

/*
 * A subtransaction starts (remember the depth) or is rolled back, by ROLLBACK
 * TO or by an exception block that caught an error (put it back).
 */
void
kg_keyholder_subxact_event(SubXactEvent event)
{
	int			level = GetCurrentTransactionNestLevel();

	if (event == SUBXACT_EVENT_START_SUB)
	{
		if (level >= depth_levels)
		{
			int			n = Max(level + 1, depth_levels * 2);

			depth_at_level = depth_at_level == NULL ?
				MemoryContextAlloc(TopMemoryContext, n * sizeof(int)) :
				repalloc(depth_at_level, n * sizeof(int));
			depth_levels = n;
		}
		depth_at_level[level] = kg_hot_state.executor_depth;
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB && level < depth_levels)
		kg_hot_state.executor_depth = depth_at_level[level];

	/* The statement timeout pinned at this level: undone, or the parent's. */
	if (kg_hot_state.pinned_in_xact && pinned_level >= level)
	{
		if (event == SUBXACT_EVENT_ABORT_SUB)
			timeout_pinned = kg_hot_state.pinned_in_xact = false;
		else if (event == SUBXACT_EVENT_COMMIT_SUB)
			pinned_level = level - 1;
	}
}

/* hooks.c calls: register the cache callbacks. */
void
kg_keyholder_init(void)
{
	CacheRegisterSyscacheCallback(AUTHOID, keyholder_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, keyholder_invalidate, (Datum) 0);
}

/*
 * Whether this is a keyholder session: the session user is a member of
 * keys_guard_keyholder and not a superuser.  Needs a transaction (catalog
 * lookups).  A parallel worker has its leader's session user, and is one
 * when its leader is: the functions it runs are checked there (a PL/pgSQL
 * body prepares its calls in the worker that runs it, where the leader
 * never saw them).
 */
static pg_noinline bool
lookup_keyholder_session(Oid session)
{
	Oid			role;

	if (!IsTransactionState() || !OidIsValid(session))
		return false;

	role = get_role_oid(KG_KEYHOLDER_ROLE, true);
	kg_hot_state.keyholder_result = OidIsValid(role) && !superuser_arg(session) &&
		is_member_of_role(session, role);
	kg_hot_state.keyholder_session = session;
	kg_hot_state.keyholder_valid = true;
	return kg_hot_state.keyholder_result;
}

/* The above, kept for the session user until a role changes. */
kg_hot bool
kg_keyholder_session(void)
{
	Oid			session = GetSessionUserId();

	/* Asked at every statement. */
	if (kg_hot_state.keyholder_valid && kg_hot_state.keyholder_session == session &&
		OidIsValid(session))
		return kg_hot_state.keyholder_result;
	return lookup_keyholder_session(session);
}

/* The key id of the transaction's key context, or NULL. */
static const char *
current_key(void)
{
	bool		can_write = false;

	return kg_context_api_key(&can_write);
}

/* Whether the current transaction has a write key in force. */
static bool
write_key_in_force(void)
{
	bool		can_write = false;

	return kg_context_api_key(&can_write) != NULL && can_write;
}

/*
 * Whether the regime concerns this session at all: a keyholder session,
 * any session while an API key is in force (use_api_key() checks the
 * current user, which a SECURITY DEFINER function owned by a keyholder
 * role makes a keyholder in any session: found by review), or any session
 * whose context came from a token without the "write" scope
 * (kg_context_read_only()).
 */
static bool
regime_session(void)
{
	return kg_hot_state.context_key != NULL || kg_context_read_only() ||
		kg_keyholder_session();
}

/*
 * Whether nothing may change now, in a session regime_session() is true
 * for: a read-only token's context, or a keyholder session without a
 * write key.
 */
static bool
regime_applies(void)
{
	return kg_context_read_only() || !write_key_in_force();
}

/*
 * Make the transaction READ ONLY while the regime applies, and put its own
 * setting back once a write key is in force.
 */
static void
force_read_only(bool applies)
{
	LocalTransactionId lxid = MyProc->lxid;

	/*
	 * Not before the first snapshot of a SERIALIZABLE transaction (SAVEPOINT
	 * or SET take none; BEGIN is left alone by the caller, since its
	 * isolation level is not set yet): that snapshot would register the
	 * transaction with SSI as read-only (and possibly as safe, with no
	 * predicate locks), and a write key used later in it would then write
	 * without serializable conflict tracking.  The checks of this file
	 * still refuse every write before then; this is only the backstop.
	 */
	if (applies && IsolationIsSerializable() && !FirstSnapshotSet)
		return;

	if (applies)
	{
		if (forced_lxid != lxid)
		{
			forced_lxid = lxid;
			saved_read_only = XactReadOnly;
		}
		XactReadOnly = true;
	}
	else if (forced_lxid == lxid)
	{
		XactReadOnly = saved_read_only;
		forced_lxid = InvalidLocalTransactionId;
	}
}

/*
 * Refuse what is being attempted: a LOG line, an audit record that outlives
 * the rollback, then the error.  what is a command ("INSERT") or a function
 * ("lo_create()"); target a relation or function when there is one.
 */
static void
refuse(const char *what, const char *target)
{
	const char *key = current_key();
	KgAuditDetail *detail = kg_audit_detail();

	ereport(LOG,
			(errmsg(kg_context_read_only() ? "keys_guard: write denied under a read-only token" :
					"keys_guard: keyholder write denied"),
			 errdetail_log("command=%s target=%s key_id=%s session_user=%s",
						   what, target ? target : "(none)", key ? key : "(none)",
						   GetUserNameFromId(GetSessionUserId(), true)),
			 errhidestmt(true),
			 errhidecontext(true)));

	kg_audit_detail_text(detail, "command", what);
	kg_audit_detail_text(detail, "key_id", key);
	if (kg_context_read_only())
		kg_audit_detail_text(detail, "kid", kg_token_context_kid());
	kg_audit_detail_text(detail, "session_user",
						 GetUserNameFromId(GetSessionUserId(), true));
	kg_audit_detail_text(detail, "role", GetUserNameFromId(GetUserId(), true));
	kg_audit_enqueue(kg_context_read_only() ? "token_write_denied" : "api_key_write_denied",
					 target, KG_OUTCOME_DENIED, detail);

	if (kg_context_read_only())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot execute %s under a read-only token", what),
				 errdetail("Nothing can change in a transaction whose token has no \"write\" scope."),
				 errhint("Use a token whose scope includes \"write\" for changes.")));

	if (key != NULL && write_key_in_force())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot execute %s under an API key", what),
				 errdetail("A write API key changes table rows (INSERT, UPDATE, DELETE, MERGE, COPY FROM) and nothing else, and the statement timeout of its transaction cannot be lifted.")));
	if (key != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot execute %s under a read-only API key", what),
				 errdetail("Nothing can change in a transaction whose API key has only the \"read\" scope."),
				 errhint("Use a key created with scopes '{read,write}' for changes.")));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot execute %s without a write API key", what),
			 errdetail("The session user is a member of \"%s\": nothing can change unless the transaction uses a write key.",
					   KG_KEYHOLDER_ROLE),
			 errhint("Call keys_guard.use_api_key() with a key created with scopes '{read,write}' first.")));
}

static const char *
command_name(CmdType cmd)
{
	switch (cmd)
	{
		case CMD_SELECT:
			return "SELECT";
		case CMD_INSERT:
			return "INSERT";
		case CMD_UPDATE:
			return "UPDATE";
		case CMD_DELETE:
			return "DELETE";
		case CMD_MERGE:
			return "MERGE";
		case CMD_UTILITY:
			return "UTILITY";
		default:
			return "UNKNOWN";
	}
}

/* The first relation a statement writes, for the record's target. */
static char *
result_relation_name(PlannedStmt *pstmt)
{
	if (pstmt->resultRelations != NIL)
	{
		Index		rti = linitial_int(pstmt->resultRelations);
		RangeTblEntry *rte = rt_fetch(rti, pstmt->rtable);

		if (rte->rtekind == RTE_RELATION)
			return kg_relation_name(rte->relid);
	}
	return NULL;
}

/*
 * statement_timeout = min(statement_timeout, keys_guard.api_key_statement_timeout)
 * (0 is none), and the running statement's timer armed with it for the
 * rest of the statement: use_api_key() calls this, and so do the start and
 * the end of every top-level statement while a key is in force.  The
 * statement timeout under a key, read or write, cannot be lifted
 * (docs/contract.md §15): SET and RESET of it, RESET ALL and set_config()
 * are refused under the regime (check_set(), function_changes_something()),
 * and a function's SET clause lasts only for the function.  PostgreSQL
 * then arms and disarms the timer itself, at every protocol message
 * (parse analysis and lock waits included), as for any statement_timeout.
 *
 * In a keyholder's session the value in force is pinned for the rest of
 * the session as a session setting (GUC_ACTION_SET, undone if the
 * (sub)transaction rolls back): such a session cannot change the setting
 * anyway, and a session setting outranks the configuration file, so that a
 * reload cannot raise it, even when the value was already at or below the
 * limit when the key came.  A setting changed with SET LOCAL made every
 * commit walk all of PostgreSQL's settings (AtEOXact_GUC), the largest
 * single cost of a key's transaction; the pin pays it once a session.  A
 * pin made inside a function with its own SET statement_timeout clause
 * ends with the function: the end of the top-level statement finds the
 * value changed and pins again, before the next message starts.  In any
 * other session it is lowered for the transaction only (SET LOCAL).  The
 * timer PostgreSQL armed before the key (or did not arm) is armed for the
 * rest of the statement, unless it already fires sooner; it is never
 * armed again later, which would give a statement more time.
 */
void
kg_keyholder_lower_timeout(void)
{
	int			limit = keys_guard_api_key_statement_timeout;
	int			value;
	char		text[32];

	if (limit <= 0 || IsParallelWorker())
		return;
	value = (StatementTimeout > 0 && StatementTimeout <= limit) ? StatementTimeout : limit;
	if (kg_keyholder_session())
	{
		if (!timeout_pinned || StatementTimeout != pinned_timeout ||
			value != StatementTimeout)
		{
			snprintf(text, sizeof(text), "%d", value);
			(void) set_config_option("statement_timeout", text, PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SET, true, ERROR, false);
			timeout_pinned = true;
			pinned_timeout = value;
			kg_hot_state.pinned_in_xact = true;
			pinned_level = GetCurrentTransactionNestLevel();
		}
	}
	else if (value != StatementTimeout)
	{
		snprintf(text, sizeof(text), "%d", value);
		(void) set_config_option("statement_timeout", text, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, ERROR, false);
	}
	if (!get_timeout_active(STATEMENT_TIMEOUT) ||
		get_timeout_finish_time(STATEMENT_TIMEOUT) >
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), value))
		enable_timeout_after(STATEMENT_TIMEOUT, value);
}

/* Before each top-level statement under a key. */
static void
enforce_key_timeout(void)
{
	if (kg_hot_state.executor_depth == 0 && current_key() != NULL)
		kg_keyholder_lower_timeout();
}

/*
 * A statement starts in a session the regime concerns: a keyholder session
 * without a write key runs plain SELECTs only.  EXPLAIN without ANALYZE
 * runs nothing and is let through.
 */
static pg_noinline void
regime_executor_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *pstmt = queryDesc->plannedstmt;
	bool		applies;
	ListCell   *lc;

	applies = regime_applies();
	/* A parallel worker has its leader's transaction and settings. */
	if (!IsParallelWorker())
	{
		force_read_only(applies);
		enforce_key_timeout();
	}
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	/*
	 * Under a write key, row changes are what the key is for; a new
	 * relation is not (below).
	 */
	if (applies && pstmt->commandType != CMD_SELECT)
		refuse(command_name(pstmt->commandType), result_relation_name(pstmt));

	/*
	 * A SELECT whose rows go into a new relation: EXPLAIN ANALYZE CREATE
	 * TABLE AS (or SELECT INTO, CREATE MATERIALIZED VIEW) creates it in the
	 * executor, not in ProcessUtility, and PostgreSQL's read-only check
	 * does not see it.
	 */
	if (queryDesc->dest != NULL &&
		(queryDesc->dest->mydest == DestIntoRel ||
		 queryDesc->dest->mydest == DestTransientRel))
		refuse("CREATE TABLE AS", NULL);
	if (!applies)
		return;
	if (pstmt->hasModifyingCTE)
		refuse("WITH ... INSERT/UPDATE/DELETE", result_relation_name(pstmt));
	foreach(lc, pstmt->rowMarks)
	{
		PlanRowMark *rc = lfirst_node(PlanRowMark, lc);

		if (RowMarkRequiresRowShareLock(rc->markType))
		{
			RangeTblEntry *rte = rt_fetch(rc->rti, pstmt->rtable);

			refuse("SELECT FOR UPDATE/SHARE",
				   rte->rtekind == RTE_RELATION ? kg_relation_name(rte->relid) : NULL);
		}
	}
}

/*
 * hooks.c calls, at every ExecutorStart (nested statements too) before the
 * statement starts.  Apart from the above, which most sessions never need.
 */
kg_hot void
kg_keyholder_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (regime_session())
		regime_executor_start(queryDesc, eflags);
}

/*
 * The built-in functions with an effect that is not a write the executor
 * sees, refused under the regime.  Functions that only read (lo_get,
 * loread, currval) are not here.
 */
static bool
function_changes_something(Oid fn)
{
	switch (fn)
	{
			/* large objects */
		case F_LO_CREAT:
		case F_LO_CREATE:
		case F_LO_IMPORT_TEXT:
		case F_LO_IMPORT_TEXT_OID:
		case F_LO_EXPORT:
		case F_LO_UNLINK:
		case F_LOWRITE:
		case F_LO_PUT:
		case F_LO_FROM_BYTEA:
		case F_LO_TRUNCATE:
		case F_LO_TRUNCATE64:
			/* advisory locks, session and transaction level */
		case F_PG_ADVISORY_LOCK_INT8:
		case F_PG_ADVISORY_LOCK_INT4_INT4:
		case F_PG_ADVISORY_LOCK_SHARED_INT8:
		case F_PG_ADVISORY_LOCK_SHARED_INT4_INT4:
		case F_PG_TRY_ADVISORY_LOCK_INT8:
		case F_PG_TRY_ADVISORY_LOCK_INT4_INT4:
		case F_PG_TRY_ADVISORY_LOCK_SHARED_INT8:
		case F_PG_TRY_ADVISORY_LOCK_SHARED_INT4_INT4:
		case F_PG_ADVISORY_XACT_LOCK_INT8:
		case F_PG_ADVISORY_XACT_LOCK_INT4_INT4:
		case F_PG_ADVISORY_XACT_LOCK_SHARED_INT8:
		case F_PG_ADVISORY_XACT_LOCK_SHARED_INT4_INT4:
		case F_PG_TRY_ADVISORY_XACT_LOCK_INT8:
		case F_PG_TRY_ADVISORY_XACT_LOCK_INT4_INT4:
		case F_PG_TRY_ADVISORY_XACT_LOCK_SHARED_INT8:
		case F_PG_TRY_ADVISORY_XACT_LOCK_SHARED_INT4_INT4:
		case F_PG_ADVISORY_UNLOCK_INT8:
		case F_PG_ADVISORY_UNLOCK_INT4_INT4:
		case F_PG_ADVISORY_UNLOCK_SHARED_INT8:
		case F_PG_ADVISORY_UNLOCK_SHARED_INT4_INT4:
		case F_PG_ADVISORY_UNLOCK_ALL:
			/* sequences */
		case F_NEXTVAL:
		case F_SETVAL_REGCLASS_INT8:
		case F_SETVAL_REGCLASS_INT8_BOOL:
			/* notifications, settings (statement_timeout, read-only) */
		case F_PG_NOTIFY:
		case F_SET_CONFIG:
			/* other sessions and the server */
		case F_PG_CANCEL_BACKEND:
		case F_PG_TERMINATE_BACKEND:
		case F_PG_RELOAD_CONF:
		case F_PG_ROTATE_LOGFILE:
		case F_PG_LOG_BACKEND_MEMORY_CONTEXTS:
		case F_PG_SWITCH_WAL:
		case F_PG_CREATE_RESTORE_POINT:
		case F_PG_BACKUP_START:
		case F_PG_BACKUP_STOP:
		case F_PG_PROMOTE:
		case F_PG_WAL_REPLAY_PAUSE:
		case F_PG_WAL_REPLAY_RESUME:
		case F_PG_NEXTOID:
			/* transaction ids (a loop of them ages the cluster), snapshot files */
		case F_PG_CURRENT_XACT_ID:
		case F_TXID_CURRENT:
		case F_PG_EXPORT_SNAPSHOT:
		case F_PG_IMPORT_SYSTEM_COLLATIONS:
			/* statistics */
		case F_PG_STAT_RESET:
		case F_PG_STAT_RESET_SHARED:
		case F_PG_STAT_RESET_SLRU:
		case F_PG_STAT_RESET_SINGLE_TABLE_COUNTERS:
		case F_PG_STAT_RESET_SINGLE_FUNCTION_COUNTERS:
		case F_PG_STAT_RESET_REPLICATION_SLOT:
		case F_PG_STAT_RESET_SUBSCRIPTION_STATS:
			/* indexes changed by a function call */
		case F_BRIN_SUMMARIZE_NEW_VALUES:
		case F_BRIN_SUMMARIZE_RANGE:
		case F_BRIN_DESUMMARIZE_RANGE:
		case F_GIN_CLEAN_PENDING_LIST:
			/* replication slots, origins, logical messages */
		case F_PG_CREATE_PHYSICAL_REPLICATION_SLOT:
		case F_PG_CREATE_LOGICAL_REPLICATION_SLOT:
		case F_PG_COPY_PHYSICAL_REPLICATION_SLOT_NAME_NAME:
		case F_PG_COPY_PHYSICAL_REPLICATION_SLOT_NAME_NAME_BOOL:
		case F_PG_COPY_LOGICAL_REPLICATION_SLOT_NAME_NAME:
		case F_PG_COPY_LOGICAL_REPLICATION_SLOT_NAME_NAME_BOOL:
		case F_PG_COPY_LOGICAL_REPLICATION_SLOT_NAME_NAME_BOOL_NAME:
		case F_PG_DROP_REPLICATION_SLOT:
		case F_PG_REPLICATION_SLOT_ADVANCE:
		case F_PG_LOGICAL_SLOT_GET_CHANGES:
		case F_PG_LOGICAL_SLOT_GET_BINARY_CHANGES:
		case F_PG_LOGICAL_EMIT_MESSAGE_BOOL_TEXT_TEXT:
		case F_PG_LOGICAL_EMIT_MESSAGE_BOOL_TEXT_BYTEA:
		case F_PG_REPLICATION_ORIGIN_CREATE:
		case F_PG_REPLICATION_ORIGIN_DROP:
		case F_PG_REPLICATION_ORIGIN_ADVANCE:
		case F_PG_REPLICATION_ORIGIN_SESSION_SETUP:
		case F_PG_REPLICATION_ORIGIN_SESSION_RESET:
		case F_PG_REPLICATION_ORIGIN_XACT_SETUP:
		case F_PG_REPLICATION_ORIGIN_XACT_RESET:
			return true;
		default:
			return false;
	}
}

/*
 * hooks.c calls, from object_access_hook: an expression that calls a
 * function is being initialised (OAT_FUNCTION_EXECUTE).  Refuse the
 * functions with side effects under the regime, before any is called.
 */
static pg_noinline void
refuse_function(Oid fn)
{
	char	   *name;

	/* A write key inserts rows, and a column default may take a number. */
	if (fn == F_NEXTVAL && !regime_applies())
		return;
	name = get_func_name(fn);
	refuse(psprintf("%s()", name ? name : "function"), NULL);
}

kg_hot pg_noinline void
kg_keyholder_function_execute(Oid fn)
{
	if (regime_session() && function_changes_something(fn))
		refuse_function(fn);
}

/* Whether a transaction option list turns read-only off. */
static bool
sets_read_write(List *options)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, "transaction_read_only") == 0)
		{
			A_Const    *c = (A_Const *) opt->arg;

			if (c == NULL || !IsA(c, A_Const) || c->isnull ||
				!IsA(&c->val, Integer) || intVal(&c->val) == 0)
				return true;
		}
	}
	return false;
}

/* Whether a transaction option list sets READ ONLY. */
static bool
sets_read_only(List *options)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, "transaction_read_only") == 0)
			return true;		/* sets_read_write() refused the others */
	}
	return false;
}

/*
 * The settings a keyholder session cannot change: read-only, the timeouts
 * a key may set, the role, and keys_guard's own.  (session_authorization
 * is left to PostgreSQL: only a session whose login is a superuser can
 * change it, and the regime follows the session user it sets.)
 */
static bool
protected_setting(const char *name)
{
	static const char *const names[] = {
		"transaction_read_only", "default_transaction_read_only",
		"statement_timeout", "lock_timeout",
		"idle_in_transaction_session_timeout", "role",
	};
	int			i;

	if (name == NULL)
		return true;
	if (pg_strncasecmp(name, KG_EXTENSION ".", strlen(KG_EXTENSION) + 1) == 0)
		return true;
	for (i = 0; i < lengthof(names); i++)
		if (pg_strcasecmp(name, names[i]) == 0)
			return true;
	return false;
}

/* The first relation a statement names, qualified, for the record's target. */
static char *
first_relation(List *relations)
{
	RangeVar   *rv;
	Oid			relid;

	if (relations == NIL)
		return NULL;
	rv = linitial_node(RangeVar, relations);
	relid = RangeVarGetRelid(rv, NoLock, true);
	return OidIsValid(relid) ? kg_relation_name(relid) : rv->relname;
}

/* SET, RESET: anything but the protected settings and READ WRITE. */
static void
check_set(VariableSetStmt *stmt)
{
	switch (stmt->kind)
	{
		case VAR_SET_MULTI:
			/* SET TRANSACTION ..., SET SESSION CHARACTERISTICS AS TRANSACTION ... */
			if (sets_read_write(stmt->args))
				refuse(pg_strcasecmp(stmt->name, "TRANSACTION") == 0 ?
					   "SET TRANSACTION READ WRITE" :
					   "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", NULL);
			if (pg_strcasecmp(stmt->name, "TRANSACTION") == 0 &&
				sets_read_only(stmt->args))
				saved_read_only = true;
			return;
		case VAR_RESET_ALL:
			refuse("RESET ALL", NULL);
			return;
		default:
			if (protected_setting(stmt->name))
				refuse(stmt->kind == VAR_RESET ? "RESET" : "SET", stmt->name);
			return;
	}
}

/*
 * hooks.c calls, before every utility statement: in a keyholder session
 * without a write key, only what changes nothing runs (a whitelist).
 * Statements that run a query (EXECUTE, FETCH, EXPLAIN ANALYZE, COPY
 * (query) TO) are checked again in the executor.
 */
kg_hot void
kg_keyholder_check_utility(PlannedStmt *pstmt)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		applies;

	if (!regime_session())
		return;
	applies = regime_applies();
	if (!IsA(parsetree, TransactionStmt) ||
		(((TransactionStmt *) parsetree)->kind != TRANS_STMT_BEGIN &&
		 ((TransactionStmt *) parsetree)->kind != TRANS_STMT_START))
		force_read_only(applies);
	enforce_key_timeout();

	switch (nodeTag(parsetree))
	{
		case T_TransactionStmt:
			{
				TransactionStmt *stmt = (TransactionStmt *) parsetree;

				switch (stmt->kind)
				{
					case TRANS_STMT_BEGIN:
					case TRANS_STMT_START:
						if (sets_read_write(stmt->options))
							refuse("BEGIN READ WRITE", NULL);
						if (sets_read_only(stmt->options))
							saved_read_only = true;
						return;
					case TRANS_STMT_PREPARE:
						refuse("PREPARE TRANSACTION", NULL);
						return;
					case TRANS_STMT_COMMIT_PREPARED:
						refuse("COMMIT PREPARED", NULL);
						return;
					case TRANS_STMT_ROLLBACK_PREPARED:
						refuse("ROLLBACK PREPARED", NULL);
						return;
					case TRANS_STMT_COMMIT:
					case TRANS_STMT_ROLLBACK:

						/*
						 * AND CHAIN starts the next transaction with this
						 * one's characteristics, saved before it ends: its
						 * own read-only setting, not the one forced here.
						 * The next one is forced again at its first
						 * statement.
						 */
						if (stmt->chain)
							force_read_only(false);
						return;
					default:
						return; /* savepoints */
				}
			}
		case T_VariableSetStmt:
			/* A write key's transaction is read-write already. */
			if (applies || ((VariableSetStmt *) parsetree)->kind != VAR_SET_MULTI)
				check_set((VariableSetStmt *) parsetree);
			return;
		case T_LockStmt:
			/* Under a write key, no stronger than what its row changes take. */
			if (((LockStmt *) parsetree)->mode > (applies ? AccessShareLock : RowExclusiveLock))
				refuse("LOCK", first_relation(((LockStmt *) parsetree)->relations));
			return;
		case T_CopyStmt:
			{
				CopyStmt   *stmt = (CopyStmt *) parsetree;
				List	   *rel = stmt->relation ? list_make1(stmt->relation) : NIL;

				if (stmt->is_from && applies)
					refuse("COPY FROM", first_relation(rel));
				if (stmt->filename != NULL)
					refuse("COPY TO a file or program", first_relation(rel));
				return;
			}
		case T_DiscardStmt:
			{
				DiscardMode target = ((DiscardStmt *) parsetree)->target;

				if (target == DISCARD_ALL || target == DISCARD_TEMP)
					refuse(target == DISCARD_ALL ? "DISCARD ALL" : "DISCARD TEMP", NULL);
				return;
			}
		case T_TruncateStmt:
			refuse("TRUNCATE", first_relation(((TruncateStmt *) parsetree)->relations));
			return;
		case T_PrepareStmt:

			/*
			 * pg_prepared_statements would keep the text, and show it to
			 * the next client of a pooled connection: a key goes in as a
			 * bind parameter (not kept), never into PREPARE's text.
			 */
			if (debug_query_string != NULL && kg_text_has_secret(debug_query_string))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("cannot PREPARE a statement that holds an API key secret"),
						 errdetail("pg_prepared_statements would show it for the rest of the session."),
						 errhint("Pass the key as a parameter: PREPARE p(text) AS SELECT keys_guard.use_api_key($1).")));
			return;
		case T_VariableShowStmt:
		case T_DeclareCursorStmt:
		case T_FetchStmt:
		case T_ClosePortalStmt:
		case T_ExecuteStmt:
		case T_DeallocateStmt:
		case T_ExplainStmt:
		case T_ListenStmt:
		case T_UnlistenStmt:
			return;
		default:
			refuse(GetCommandTagName(CreateCommandTag(parsetree)), NULL);
	}
}

/*
 * hooks.c calls, around ExecutorRun and ExecutorFinish: +1 before, -1 after
 * a normal return (an error is handled by the callbacks above).
 */
kg_hot void
kg_keyholder_nest(int delta)
{
	kg_hot_state.executor_depth += delta;
}

/*
 * A statement that started at top level while a key was in force: counted
 * when it started (kg_keyholder_executor_started()), so that a statement
 * whose transaction is rolled back, or whose session ends, before it ends
 * is counted all the same; its rows are added when it ends normally.
 * statement.c forgets it with the statement.
 */
typedef struct KeyStatement
{
	KgStatementEntry entry;
	char		key[KG_API_KEY_ID_TEXT_LEN + 1];
} KeyStatement;

/* kg_hot_state.key_statements holds them. */

/* The relations of a statement's range table, each once, in order. */
static Oid *
statement_relations(PlannedStmt *pstmt, int *nrelids)
{
	Oid		   *relids = palloc(sizeof(Oid) * Max(list_length(pstmt->rtable), 1));
	ListCell   *lc;

	*nrelids = 0;
	foreach(lc, pstmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
		int			i;

		if (rte->rtekind != RTE_RELATION)
			continue;
		for (i = 0; i < *nrelids && relids[i] != rte->relid; i++)
			;
		if (i == *nrelids)
			relids[(*nrelids)++] = rte->relid;
	}
	return relids;
}

/* What a statement's audit record calls its command. */
static const char *
statement_command(QueryDesc *queryDesc)
{
	return queryDesc->plannedstmt->hasModifyingCTE ?
		"SELECT with data-modifying WITH" : command_name(queryDesc->operation);
}

/* Count a statement, or add its rows, under key. */
static void
audit_statement(const char *key, QueryDesc *queryDesc, int64 statements, int64 rows)
{
	int			nrelids;
	Oid		   *relids = statement_relations(queryDesc->plannedstmt, &nrelids);

	kg_audit_key_statement(key, statement_command(queryDesc), relids, nrelids,
						   statements, rows);
	pfree(relids);
}

/*
 * hooks.c calls, once ExecutorStart has set the statement up, while a key
 * is in force (kg_hot_state.context_key): a statement that starts at top level is
 * counted now, with the relations it names.
 */
void
kg_keyholder_executor_started(QueryDesc *queryDesc)
{
	const char *key;
	KeyStatement *entry;

	if (kg_hot_state.executor_depth > 0 || IsParallelWorker() ||
		queryDesc->estate == NULL ||
		!IsTransactionState() || (key = current_key()) == NULL)
		return;
	audit_statement(key, queryDesc, 1, 0);

	entry = kg_statement_entry_new(&kg_hot_state.key_statements, queryDesc,
								   sizeof(KeyStatement));
	strlcpy(entry->key, key, sizeof(entry->key));
}

/*
 * A statement ends while a key is in force or a statement was counted
 * under one: the rows of a statement counted when it started, if it ends
 * normally; a statement that started before a key was in force and ends at
 * top level under one (the SELECT that calls use_api_key()) is counted
 * now.  The relations are the range table's, schema-qualified, each once;
 * the rows are those it processed.
 */
static pg_noinline void
key_statement_end(QueryDesc *queryDesc)
{
	int64		rows = queryDesc->estate ? (int64) queryDesc->estate->es_processed : 0;
	KeyStatement *entry = kg_statement_entry_find(&kg_hot_state.key_statements, queryDesc);
	const char *key;

	/* Counted when it started (the entry goes with its executor memory). */
	if (entry != NULL)
	{
		if (rows > 0 && IsTransactionState())
			audit_statement(entry->key, queryDesc, 0, rows);
	}
	else if (kg_hot_state.executor_depth == 0 && (key = current_key()) != NULL &&
			 !IsParallelWorker() && IsTransactionState())
		audit_statement(key, queryDesc, 1, rows);

	/* A top-level statement under a key ends: the timeout for the next. */
	if (kg_hot_state.executor_depth == 0 && kg_hot_state.context_key != NULL &&
		IsTransactionState())
		kg_keyholder_lower_timeout();
}

/* hooks.c calls, at every ExecutorEnd: the above, if it has anything to do. */
kg_hot void
kg_keyholder_executor_end(QueryDesc *queryDesc)
{
	if (kg_hot_state.context_key != NULL || !dlist_is_empty(&kg_hot_state.key_statements))
		key_statement_end(queryDesc);
}

/*
 * hooks.c calls, after a top-level utility statement ran: one audit record
 * while a key is in force.  Statements that run a query are recorded by
 * kg_keyholder_executor_end(); transaction control is not recorded.
 */
kg_hot void
kg_keyholder_utility_done(PlannedStmt *pstmt, ProcessUtilityContext context)
{
	Node	   *parsetree = pstmt->utilityStmt;
	const char *key;

	if (context != PROCESS_UTILITY_TOPLEVEL || !IsTransactionState())
		return;
	/* The timeout for the next statement, as at the end of a query. */
	if (kg_hot_state.context_key != NULL)
		kg_keyholder_lower_timeout();
	switch (nodeTag(parsetree))
	{
		case T_TransactionStmt:
		case T_ExecuteStmt:
		case T_FetchStmt:
		case T_ExplainStmt:
		case T_DeclareCursorStmt:
			return;
		case T_CopyStmt:
			if (((CopyStmt *) parsetree)->query != NULL)
				return;
			break;
		default:
			break;
	}
	key = current_key();
	if (key == NULL)
		return;
	kg_audit_key_statement(key, GetCommandTagName(CreateCommandTag(parsetree)), NULL, 0, 1, 0);
}
