/*-------------------------------------------------------------------------
 *
 * acting.c
 *	  Who is acting: keys_guard itself, PostgreSQL's own referential-integrity
 *	  query, or user code (docs/contract.md §6 "No path around the rules" and "No
 *	  privilege is lent").
 *
 * keys_guard relaxes its own rules in exactly three kinds of span:
 *
 * - its internal operations (restore, hard delete, purge, tenant drop,
 *	 counts), which must see soft-deleted rows of every tenant;
 * - PostgreSQL's referential-integrity queries, which run with row security
 *	 relaxed (SECURITY_NOFORCE_RLS), as keys_guard's own soft-delete
 *	 cascade does;
 * - its SQL API functions (the registry and guard-weakening DDL).
 *
 * User code runs inside each of them: triggers and rules of the tables
 * those statements touch, CHECK constraints, defaults, index expressions,
 * row security policies, event triggers.  That code must get no more than
 * it would get outside the span.  So while a span is open, every function
 * that is not built-in C or internal code is routed through fmgr_hook
 * (installed by hooks.c, counted here), which counts "user frames"; a span trusts only the code that runs with
 * the same number of user frames as when the span began.  A function
 * looked up outside any span is not hooked, which keeps SQL-function
 * inlining and the fast call path for ordinary statements, except those
 * PostgreSQL may keep an FmgrInfo of across statements (operators, index
 * support procedures, range and cast functions: kept_by_postgres()), which
 * are hooked always: one looked up outside a span and called inside one
 * would otherwise run as the span itself (attack_review part 9).
 * A statement that built-in code starts while a trusted statement runs
 * (query_to_xml() in a CHECK constraint) counts as a user frame too
 * (kg_begin_statement(), attack_review part 10).
 *
 * Rule actions are user code that PostgreSQL splices into a statement
 * without any function call; they are recognised by their range table (the
 * rule's OLD and NEW entries) and are never trusted either.
 *
 * Internal operations also never lend privilege: the statements they run
 * on a user's table run as that table's owner inside a security-restricted
 * operation with a safe search_path (kg_execute_as_owner), as autovacuum
 * and REFRESH MATERIALIZED VIEW run index expressions; only their
 * bookkeeping (registry, audit log) runs as keys_guard's schema owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_amproc.h"
#include "catalog/pg_cast.h"
#include "catalog/pg_class.h"
#include "catalog/pg_language.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_range.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "keys_guard.h"

/* What fmgr_hook's per-function private datum says about a function. */
#define KG_FUNC_UNKNOWN	0
#define KG_FUNC_OURS	1		/* a procedural function of keys_guard's */
#define KG_FUNC_USER	2		/* any other non-C, non-internal function */
#define KG_FUNC_OTHER	3		/* C, internal or keys_guard's SQL: not user code */

/* Active hooked user-code frames (KG_FUNC_USER) in this backend. */
static int	user_frames = 0;

/*
 * keys_guard's API functions on the stack, and for each of them how many
 * user frames were active when it started.  Deeper nesting than the array
 * holds is never trusted.
 */
#define KG_MAX_API_DEPTH 32
static int	api_depth = 0;
static int	api_base[KG_MAX_API_DEPTH];

/* keys_guard's internal operation, if one runs. */
static int	internal_depth = 0;
static int	internal_base = 0;
static bool internal_physical = false;

/* keys_guard's soft-delete cascade, if one runs. */
static int	cascade_depth = 0;
static int	cascade_base = 0;

/*
 * User frames when the current SECURITY_NOFORCE_RLS span was first seen, or
 * -1.  PostgreSQL gives no callback when its RI code sets the flag, so the
 * span is latched the first time any of keys_guard's hooks sees it.
 */
static int	noforce_base = -1;

/*
 * Set while a query that a rule produced is planned or executed: rule
 * actions are user code and never trusted.
 */
static bool in_rule_action = false;

/*
 * User frames when the innermost statement that keys_guard's internal
 * operation or an RI query runs began its planning, start or run
 * (kg_acting_run_begin()), or -1 outside such a run.
 */
static int	trusted_run_frames = -1;

/*
 * kg_hot_state.acting_quiet: whether none of the four above is in force.
 * Then a statement needs no span unless a rule produced it or an RI query
 * runs it (kg_acting_statement_is_plain() in keys_guard.h, asked three
 * times a statement).  note_quiet() follows every change of any of them.
 */
static inline void
note_quiet(void)
{
	kg_hot_state.acting_quiet = internal_depth == 0 && noforce_base < 0 &&
		!in_rule_action && trusted_run_frames < 0;
}

/*
 * The alias keys_guard's internal statements give the table they change.
 * A rule action that PostgreSQL splices into such a statement carries a
 * copy of that range table entry: the rows the statement itself touches,
 * which keep its trust.  The alias is random per backend, so no rule
 * written beforehand can name it.
 */
static char internal_alias[NAMEDATALEN];

/*
 * Set once a statement carrying the alias has run: its text may then have
 * been shown to user code (the error context of a trigger's error names
 * the SPI statement), so the next internal statement gets a new alias.
 */
static bool internal_alias_shown = false;

/*
 * The alias keys_guard gives, in an internal statement, to the relations
 * that a row security policy of the statement's table reads in a
 * subquery: user code that PostgreSQL splices into the statement without
 * a function call, never trusted.  Random per backend, like the above.
 */
static char untrusted_alias[NAMEDATALEN];

static bool noforce_span_trusted(void);

/* ----------------------------------------------------------------
 * Function classification and fmgr hooks
 * ----------------------------------------------------------------
 */

static int
classify_function(Oid fn_oid)
{
	HeapTuple	tuple;
	Form_pg_proc proc;
	int			result;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	if (!HeapTupleIsValid(tuple))
		return KG_FUNC_OTHER;
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	if (proc->prolang == ClanguageId || proc->prolang == INTERNALlanguageId)
		result = KG_FUNC_OTHER;
	else if (proc->pronamespace != get_namespace_oid(KG_SCHEMA, true))
		result = KG_FUNC_USER;
	else if (proc->prolang == SQLlanguageId)
		result = KG_FUNC_OTHER; /* keys_guard's SQL wrappers: keep inlining */
	else
		result = KG_FUNC_OURS;
	ReleaseSysCache(tuple);
	return result;
}

/*
 * needs_fmgr_hook is asked whenever a function that is not built in is
 * looked up, which a cached plan does on every execution; a small
 * direct-mapped cache of the classification keeps that to an array lookup.
 * Any change to pg_proc or pg_namespace, or to the catalogs read by
 * kept_by_postgres() below, empties it.
 */
#define KG_FUNC_CACHE_SIZE	64

typedef struct KgFuncCacheEntry
{
	Oid			fn_oid;
	int			class;
	bool		kept;			/* a user function kept_by_postgres() */
} KgFuncCacheEntry;

static KgFuncCacheEntry func_cache[KG_FUNC_CACHE_SIZE];

static void
func_cache_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	memset(func_cache, 0, sizeof(func_cache));
}

/*
 * The user functions PostgreSQL may call through an FmgrInfo it keeps
 * across statements, built while no span was open and so not hooked:
 * operator implementations and index support procedures (the type cache,
 * the relcache's index support, the foreign-key comparison cache), a range
 * type's canonical and subtype_diff functions (the type cache: a GiST
 * insert or a selectivity estimate calls them) and cast functions (the
 * foreign-key comparison cache).  These are hooked always, span or no span
 * (kg_acting_function_hooked()), so that one called inside a span is
 * counted as user code.  Every other user function is hooked only while a
 * span is open, which keeps SQL-function inlining and the plain call path
 * for ordinary statements; PostgreSQL looks those up again for every
 * statement (an expression's functions at executor start).
 *
 * Read from pg_amproc, pg_operator, pg_range and pg_cast (no index on the
 * function columns: one scan of each, keeping only objects made after
 * initdb) the first time a user function is classified, and again after
 * any of them changes.
 */
static HTAB *kept_functions = NULL;
static bool kept_functions_valid = false;

static void
kept_functions_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	kept_functions_valid = false;
	func_cache_invalidate(arg, cacheid, hashvalue);
}

static void
kept_function_add(Oid fn_oid)
{
	if (OidIsValid(fn_oid) && fn_oid >= FirstNormalObjectId)
		(void) hash_search(kept_functions, &fn_oid, HASH_ENTER, NULL);
}

/* Add the functions of columns attnums of every row of catalog relid. */
static void
kept_functions_scan(Oid relid, const AttrNumber *attnums, int nattnums)
{
	Relation	rel = table_open(relid, AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tuple;

	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		for (int i = 0; i < nattnums; i++)
		{
			bool		isnull;
			Datum		value = heap_getattr(tuple, attnums[i], RelationGetDescr(rel), &isnull);

			if (!isnull)
				kept_function_add(DatumGetObjectId(value));
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

static bool
kept_by_postgres(Oid fn_oid)
{
	if (!kept_functions_valid || kept_functions == NULL)
	{
		static const AttrNumber amproc[] = {Anum_pg_amproc_amproc};
		static const AttrNumber oprcode[] = {Anum_pg_operator_oprcode};
		static const AttrNumber range[] = {Anum_pg_range_rngcanonical, Anum_pg_range_rngsubdiff};
		static const AttrNumber castfunc[] = {Anum_pg_cast_castfunc};

		kg_oid_hash_renew(&kept_functions, "keys_guard kept functions", sizeof(Oid));
		/* An invalidation that arrives while we read makes the next call read again. */
		kept_functions_valid = true;
		kept_functions_scan(AccessMethodProcedureRelationId, amproc, lengthof(amproc));
		kept_functions_scan(OperatorRelationId, oprcode, lengthof(oprcode));
		kept_functions_scan(RangeRelationId, range, lengthof(range));
		kept_functions_scan(CastRelationId, castfunc, lengthof(castfunc));
	}
	return hash_search(kept_functions, &fn_oid, HASH_FIND, NULL) != NULL;
}

static kg_hot KgFuncCacheEntry *
cached_entry(Oid fn_oid)
{
	KgFuncCacheEntry *entry = &func_cache[fn_oid % KG_FUNC_CACHE_SIZE];
	int			class;
	bool		kept;

	if (entry->fn_oid == fn_oid && OidIsValid(fn_oid))
		return entry;
	if (!IsTransactionState())
		return NULL;
	class = classify_function(fn_oid);
	kept = class == KG_FUNC_USER && kept_by_postgres(fn_oid);
	/* Filled last: the lookups above may take in an invalidation. */
	entry->class = class;
	entry->kept = kept;
	entry->fn_oid = fn_oid;
	return entry;
}

static int
cached_class(Oid fn_oid)
{
	KgFuncCacheEntry *entry = cached_entry(fn_oid);

	return entry ? entry->class : KG_FUNC_OTHER;
}

/* Whether keys_guard's own extension script is running. */
static bool
creating_keys_guard(void)
{
	return creating_extension &&
		CurrentExtensionObject == get_extension_oid(KG_EXTENSION, true);
}

/* Whether any span that relaxes keys_guard's rules is open. */
static bool
trust_span_open(void)
{
	return internal_depth > 0 || api_depth > 0 || cascade_depth > 0 ||
		InNoForceRLSOperation() || creating_keys_guard();
}

/*
 * needs_fmgr_hook (hooks.c, when no earlier provider asked for the
 * function): keys_guard's own procedural functions always, other user code
 * while a span is open.
 */
kg_hot bool
kg_acting_function_hooked(Oid fn_oid)
{
	KgFuncCacheEntry *entry = cached_entry(fn_oid);

	if (entry == NULL)
		return false;
	if (entry->class == KG_FUNC_OURS)
		return true;
	return entry->class == KG_FUNC_USER && (entry->kept || trust_span_open());
}

/* Forget a NOFORCE span latched deeper than the user frames now active. */
static void
forget_stale_noforce(void)
{
	if (noforce_base > user_frames)
	{
		noforce_base = -1;
		note_quiet();
	}
}

/*
 * fmgr_hook (hooks.c, after any earlier provider): count keys_guard's API
 * frames and user-code frames as functions start and end.
 */
void
kg_acting_function_event(FmgrHookEventType event, FmgrInfo *flinfo, Datum *private)
{
	if (*private == KG_FUNC_UNKNOWN)
		*private = cached_class(flinfo->fn_oid);

	switch (event)
	{
		case FHET_START:
			if (*private == KG_FUNC_OURS)
			{
				if (api_depth < KG_MAX_API_DEPTH)
					api_base[api_depth] = user_frames;
				api_depth++;
			}
			else if (*private == KG_FUNC_USER)
			{
				(void) noforce_span_trusted();	/* latch a NOFORCE span */
				user_frames++;
			}
			break;
		case FHET_END:
		case FHET_ABORT:
			if (*private == KG_FUNC_OURS && api_depth > 0)
				api_depth--;
			else if (*private == KG_FUNC_USER && user_frames > 0)
			{
				user_frames--;
				forget_stale_noforce();
			}
			break;
	}
}

/* Belt and braces: no count survives its transaction. */
void
kg_acting_xact_event(XactEvent event)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		api_depth = 0;
		user_frames = 0;
		noforce_base = -1;
		in_rule_action = false;
		trusted_run_frames = -1;
		note_quiet();
	}
}

/* ----------------------------------------------------------------
 * Who is acting
 * ----------------------------------------------------------------
 */

/* Whether this process is one of keys_guard's background workers. */
static bool
am_keys_guard_worker(void)
{
	return MyBgworkerEntry != NULL &&
		strcmp(MyBgworkerEntry->bgw_library_name, KG_EXTENSION) == 0;
}

/*
 * Whether keys_guard's internal operation is acting right now: one is
 * running and no user code has started inside it.
 */
static bool
internal_span_trusted(void)
{
	return internal_depth > 0 && user_frames == internal_base;
}

kg_hot bool
kg_in_internal_operation(void)
{
	return internal_span_trusted() && !in_rule_action;
}

/* Whether keys_guard's hard delete or purge may remove rows for real now. */
bool
kg_physical_delete_allowed(void)
{
	return internal_physical && kg_in_internal_operation();
}

/*
 * Whether the code running now is PostgreSQL's own referential-integrity
 * query (or keys_guard's soft-delete cascade statement), which row
 * security and keys_guard leave alone; code those statements run (triggers,
 * constraints, rules) is not.
 */
static kg_hot bool
noforce_span_trusted(void)
{
	if (!InNoForceRLSOperation())
	{
		noforce_base = -1;
		note_quiet();
		return false;
	}
	if (noforce_base < 0)
	{
		noforce_base = user_frames;
		note_quiet();
	}
	return user_frames == noforce_base;
}

kg_hot bool
kg_ri_query_trusted(void)
{
	return noforce_span_trusted() && !in_rule_action;
}

/*
 * Whether the range table entry rte of the statement being planned or
 * checked is read by keys_guard's internal operation or PostgreSQL's RI
 * query themselves: true for their own statements; in a rule action, only
 * for the copy of an internal statement's own target (its internal alias);
 * never for a relation a row security policy's subquery reads.
 */
kg_hot bool
kg_rte_trusted(RangeTblEntry *rte)
{
	if (kg_rte_marked_untrusted(rte))
		return false;
	if (in_rule_action)
		return kg_rte_internal(rte);
	return internal_span_trusted() || noforce_span_trusted();
}

/* The same for keys_guard's internal operation alone. */
bool
kg_rte_internal(RangeTblEntry *rte)
{
	if (!internal_span_trusted() || kg_rte_marked_untrusted(rte))
		return false;
	if (!in_rule_action)
		return true;
	return rte != NULL && rte->alias != NULL && internal_alias[0] != '\0' &&
		strcmp(rte->alias->aliasname, internal_alias) == 0;
}

/* A new random alias "<prefix><64 random bits in hex>" in buf. */
static void
make_random_alias(char *buf, const char *prefix)
{
	uint64		nonce;

	if (!pg_strong_random(&nonce, sizeof(nonce)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	snprintf(buf, NAMEDATALEN, "%s%016llx", prefix, (unsigned long long) nonce);
}

/* The alias of the table an internal statement changes (see above). */
const char *
kg_internal_alias(void)
{
	if (internal_alias[0] == '\0' || internal_alias_shown)
	{
		make_random_alias(internal_alias, "keys_guard_");
		internal_alias_shown = false;
	}
	return internal_alias;
}

/* The alias that marks a relation read by a policy's subquery (see above). */
const char *
kg_untrusted_alias(void)
{
	if (untrusted_alias[0] == '\0')
		make_random_alias(untrusted_alias, "keys_guard_policy_");
	return untrusted_alias;
}

kg_hot bool
kg_rte_marked_untrusted(RangeTblEntry *rte)
{
	return rte != NULL && rte->alias != NULL && untrusted_alias[0] != '\0' &&
		strcmp(rte->alias->aliasname, untrusted_alias) == 0;
}

/* Whether keys_guard's soft-delete cascade statement is acting now. */
bool
kg_in_soft_delete_cascade(void)
{
	return cascade_depth > 0 && user_frames == cascade_base &&
		kg_ri_query_trusted();
}

/*
 * Whether keys_guard itself is acting: one of its API functions, its
 * internal mode, its worker, or its own extension script (CREATE / ALTER
 * EXTENSION) -- and no user code that one of them ran.
 */
bool
kg_acting_for_keys_guard(void)
{
	if (kg_in_internal_operation())
		return true;
	if (api_depth > 0)
		return api_depth <= KG_MAX_API_DEPTH &&
			user_frames == api_base[api_depth - 1] && !in_rule_action;
	if (user_frames > 0)
		return false;
	return am_keys_guard_worker() || creating_keys_guard();
}

/*
 * A range table that holds a rule's OLD or NEW entry belongs to a rule
 * action: user code, whatever span it runs in.
 */
/*
 * A rule's OLD or NEW entry.  In a rule action PostgreSQL points the
 * action's references at the original statement's own entry instead, so
 * these only name the rule's table, which is the original statement's
 * target.
 */
bool
kg_rte_is_rule_placeholder(RangeTblEntry *rte)
{
	return rte->rtekind == RTE_RELATION && rte->eref != NULL &&
		(strcmp(rte->eref->aliasname, "old") == 0 ||
		 strcmp(rte->eref->aliasname, "new") == 0);
}

/*
 * Plans of rule actions carry a mark the executor hooks can see: an
 * invalid oid first among the relations the plan depends on, which the
 * plan cache never matches against a real relation.  First, so that the
 * executor hooks, which ask at every start, run and finish of every
 * statement, look at one cell.
 */
void
kg_mark_rule_action(PlannedStmt *pstmt)
{
	pstmt->relationOids = lcons_oid(InvalidOid, pstmt->relationOids);
}

static bool
is_rule_action(Query *query, PlannedStmt *pstmt)
{
	if (query != NULL)
		return query->querySource != QSRC_ORIGINAL;
	return pstmt != NULL && kg_plan_is_rule_action(pstmt);
}

/*
 * A statement is about to be planned (query) or executed (pstmt): if a rule
 * produced it, nothing it does is trusted (but the entry of the original
 * statement's target, kg_rte_internal()) until kg_end_statement() restores
 * the state this returns.
 *
 * So is a statement that starts while a trusted statement of a span is
 * planned, started or run (kg_acting_run_begin()) with no user frame in
 * between: built-in code of that statement's expressions runs it
 * (query_to_xml(), ts_stat() in a CHECK constraint, a default, a policy;
 * table_to_xml() in a policy, which the planner evaluates for a
 * selectivity estimate), which is user code that the function manager
 * never counts (attack_review parts 10 and 11).  It counts as one
 * user frame until it ends, whoever it calls: a keys_guard function that
 * user code of the statement calls (a row security policy calling
 * keys_guard._preview()) runs it as that user code.  keys_guard's own
 * triggers that run statements are AFTER triggers, which fire after the
 * run, and its C code calls its own SQL functions directly, not from a
 * statement (kg_call_own_function()).
 */
int
kg_begin_statement(Query *query, PlannedStmt *pstmt)
{
	int			save = in_rule_action ? KG_STATEMENT_IN_RULE : 0;

	in_rule_action |= is_rule_action(query, pstmt);
	note_quiet();
	if (trusted_run_frames >= 0 && user_frames == trusted_run_frames)
	{
		user_frames++;
		save |= KG_STATEMENT_USER;
	}
	return save;
}

void
kg_end_statement(int save)
{
	in_rule_action = (save & KG_STATEMENT_IN_RULE) != 0;
	note_quiet();
	if ((save & KG_STATEMENT_USER) != 0 && user_frames > 0)
	{
		user_frames--;
		forget_stale_noforce();
	}
}

/*
 * A statement is about to be planned, started or run (the planner,
 * ExecutorStart, ExecutorRun): if keys_guard's internal operation or an RI
 * query (or the soft-delete cascade) is acting, the statements its
 * expressions start are user code (above) until kg_acting_run_end() puts
 * back what this returns.  Its AFTER triggers fire later (ExecutorFinish),
 * outside the run.
 */
int
kg_acting_run_begin(void)
{
	int			save = trusted_run_frames;

	if (!in_rule_action && (internal_span_trusted() || noforce_span_trusted()))
		trusted_run_frames = user_frames;
	else
		trusted_run_frames = -1;
	note_quiet();
	return save;
}

void
kg_acting_run_end(int save)
{
	trusted_run_frames = save;
	note_quiet();
}

/*
 * Whether kg_begin_statement(NULL, pstmt) and kg_acting_run_begin() would
 * leave every piece of the state above as it is, as they do for nearly
 * every statement: one that no rule produced, started outside any trusted
 * span and outside the run of a trusted statement (or inside a rule
 * action, where nothing is trusted anyway).  The executor hooks then run
 * the statement without them, and without a PG_TRY block to undo them.
 * May note where an RI query's span starts, as kg_acting_run_begin() does.
 */
bool
kg_acting_statement_is_plain_slow(PlannedStmt *pstmt)
{
	if (trusted_run_frames >= 0)
		return false;
	if (in_rule_action)
		return true;
	return !is_rule_action(NULL, pstmt) &&
		!internal_span_trusted() && !noforce_span_trusted();
}

bool
kg_in_rule_action(void)
{
	return in_rule_action;
}

/* ----------------------------------------------------------------
 * Internal operations and the soft-delete cascade
 * ----------------------------------------------------------------
 */

/* The owner of schema keys_guard: the role that installed the extension. */
static Oid
keys_guard_owner(void)
{
	Oid			nspoid = get_namespace_oid(KG_SCHEMA, false);
	HeapTuple	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspoid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for namespace %u", nspoid);
	owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Run fn(arg) as one of keys_guard's own operations: its statements see
 * every tenant and soft-deleted rows and, if physical is true, may remove
 * rows of soft-delete tables for real.  fn's bookkeeping runs as the owner
 * of keys_guard's schema, who can read the registry and write the audit
 * log; statements on users' tables go through kg_execute_as_owner().  Plans
 * cached meanwhile are invalidated on both edges, so no plan made without
 * a filter is ever reused by an ordinary statement.
 */
void
kg_run_internal(void (*fn) (void *), void *arg, bool physical)
{
	bool		save_physical = internal_physical;
	int			save_base = internal_base;
	bool		save_rule_action = in_rule_action;
	Oid			save_userid;
	int			save_sec_context;
	Oid			owner = keys_guard_owner();
	int			nestlevel;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);

	/*
	 * The statements fn runs as keys_guard's owner name operators and
	 * functions unqualified ("=", now()); resolved through the caller's
	 * search_path, a schema of the caller's ahead of pg_catalog would run
	 * its own code with the owner's rights.
	 */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	internal_depth++;
	internal_base = user_frames;
	internal_physical = physical;
	in_rule_action = false;
	note_quiet();
	kg_note_filter_state();
	PG_TRY();
	{
		fn(arg);
		AtEOXact_GUC(true, nestlevel);
	}
	PG_FINALLY();
	{
		internal_depth--;
		internal_base = save_base;
		internal_physical = save_physical;
		in_rule_action = save_rule_action;
		note_quiet();
		SetUserIdAndSecContext(save_userid, save_sec_context);
		kg_note_filter_state();
	}
	PG_END_TRY();
}

/*
 * Run fn(arg) as keys_guard's soft-delete cascade: the statement fn runs
 * is trusted like PostgreSQL's own foreign-key actions, with row security
 * relaxed, as the child table's owner.
 */
void
kg_run_cascade(Oid child_owner, void (*fn) (void *), void *arg)
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_base = cascade_base;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(child_owner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_NOFORCE_RLS);
	cascade_depth++;
	cascade_base = user_frames;
	kg_note_filter_state();
	PG_TRY();
	{
		fn(arg);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
		cascade_depth--;
		cascade_base = save_base;
		kg_note_filter_state();
	}
	PG_END_TRY();
}

/*
 * Run fn(arg) as user code, even from inside one of keys_guard's API
 * functions: nothing it does is trusted as keys_guard acting (the
 * statements a migration runs in every tenant schema, migrate.c, pass the
 * guard rails like any other statement of the caller's).
 */
void
kg_run_as_user_code(void (*fn) (void *), void *arg)
{
	int			save_frames = user_frames;

	user_frames++;
	PG_TRY();
	{
		fn(arg);
	}
	PG_FINALLY();
	{
		user_frames = save_frames;
		forget_stale_noforce();
	}
	PG_END_TRY();
}

/* True while keys_guard's internal mode or cascade may make unfiltered plans. */
kg_hot bool
kg_filters_relaxed_span(void)
{
	return internal_depth > 0 || cascade_depth > 0;
}

/*
 * Become relid's owner inside a security-restricted operation with
 * search_path pg_catalog, pg_temp, for the statements of an internal
 * operation that change a user's table: its triggers, defaults,
 * constraints, rules and index expressions then run with the owner's
 * rights, never with keys_guard's, and cannot change the session (SET
 * ROLE, temporary objects, cursors that outlive it).  On error the
 * (sub)transaction abort undoes it; kg_end_as_owner() does otherwise.
 */
void
kg_begin_as_owner(Oid relid, KgOwnerSwitch *save)
{
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);

	internal_alias_shown = true;
	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	SetUserIdAndSecContext(owner, save->sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

void
kg_end_as_owner(KgOwnerSwitch *save)
{
	AtEOXact_GUC(false, save->nestlevel);
	SetUserIdAndSecContext(save->userid, save->sec_context);
}

/* One SPI statement on relid's data as its owner (kg_begin_as_owner()). */
int
kg_execute_as_owner(Oid relid, const char *sql, int nargs, Oid *types,
					Datum *values, const char *nulls, bool read_only, long count)
{
	KgOwnerSwitch save;
	int			result;

	kg_begin_as_owner(relid, &save);
	result = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, count);
	kg_end_as_owner(&save);
	return result;
}

/*
 * Call keys_guard's own SQL-level function name(argtypes) with args (none
 * NULL), from C and not from a statement: the statements it runs are then
 * keys_guard's own (its API frame), where from a statement of a span they
 * would count as code that statement starts (kg_begin_statement()).  Under
 * a snapshot of its own, as a statement would have.  *isnull says whether
 * it returned NULL.
 */
#define KG_OWN_FUNCTION_MAX_ARGS	3

Datum
kg_call_own_function(const char *name, int nargs, const Oid *argtypes,
					 const Datum *args, bool *isnull)
{
	LOCAL_FCINFO(fcinfo, KG_OWN_FUNCTION_MAX_ARGS);
	FmgrInfo	flinfo;
	Oid			fn;
	Datum		result;

	if (nargs > KG_OWN_FUNCTION_MAX_ARGS)
		elog(ERROR, "keys_guard: too many arguments for %s()", name);
	fn = LookupFuncName(list_make2(makeString(KG_SCHEMA), makeString(pstrdup(name))),
						nargs, argtypes, false);
	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, nargs, InvalidOid, NULL, NULL);
	for (int i = 0; i < nargs; i++)
	{
		fcinfo->args[i].value = args[i];
		fcinfo->args[i].isnull = false;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	result = FunctionCallInvoke(fcinfo);
	PopActiveSnapshot();
	*isnull = fcinfo->isnull;
	return result;
}

/*
 * Register acting.c's cache callbacks (called once, from
 * kg_hooks_install()).
 */
void
kg_acting_init(void)
{
	CacheRegisterSyscacheCallback(PROCOID, func_cache_invalidate, (Datum) 0);
	/* The keys_guard schema may come and go with the extension. */
	CacheRegisterSyscacheCallback(NAMESPACEOID, func_cache_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(AMPROCNUM, kept_functions_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(OPEROID, kept_functions_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(RANGETYPE, kept_functions_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(CASTSOURCETARGET, kept_functions_invalidate, (Datum) 0);
}
