/*-------------------------------------------------------------------------
 *
 * keys_guard.h
 *	  Declarations shared by keys_guard's source files, grouped by the file
 *	  that owns (defines) them.  The functions hooks.c dispatches to are
 *	  marked "hooks.c calls" in their file's group.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KEYS_GUARD_H
#define KEYS_GUARD_H

#include "compat.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "executor/execdesc.h"
#include "executor/executor.h"
#include "nodes/parsenodes.h"
#include "nodes/pathnodes.h"
#include "tcop/utility.h"
#include "nodes/plannodes.h"
#include "storage/itemptr.h"
#include "nodes/pg_list.h"
#include "nodes/primnodes.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/*
 * kg_hot marks the functions of the paths every request takes: the hooks
 * and what they run for any statement or transaction, and set_context()
 * with a statement on a guarded table.  GCC puts them together in
 * .text.hot, a few pages of the library instead of dozens spread over it.
 * Per statement, the instruction-cache lines keys_guard's code takes cost
 * more than its instructions do: PostgreSQL's own statement evicts them
 * every time (bench/README.md, "Where the time goes").
 */
#if defined(__GNUC__)
#define kg_hot __attribute__((hot))
#else
#define kg_hot
#endif

/*
 * kg_statement_path marks, of those, the ones every statement runs: the
 * executor hooks, the range-table check, the transaction callbacks and
 * what they call when the session has nothing of keys_guard's in force.
 * In a section of their own they sit together, about 1 kB on a page or two
 * of the library instead of spread over several (one translation-buffer
 * entry each), and the lines that follow each other are fetched ahead.
 * Each starts on a cache line of its own: a hook's quick path is a line or
 * two, and one that starts near the end of a line takes one more (callgrind
 * counted 15 of keys_guard's instruction-cache misses per pgbench -S
 * statement aligned, 19 not).
 */
#if defined(__GNUC__) && defined(__ELF__)
#define kg_statement_path __attribute__((hot, aligned(64), section(".text.hot.keys_guard_statement")))
#else
#define kg_statement_path kg_hot
#endif

/*
 * Everything this file declares is keys_guard's own and stays inside the
 * library: hidden, so that the compiler calls it directly and reads its
 * variables without going through the PLT and the GOT, each an extra cache
 * line per statement.  What PostgreSQL looks up by name (_PG_init, the
 * SQL-callable functions of PG_FUNCTION_INFO_V1, the workers' entry points)
 * is declared in the .c files, outside this, and keeps default visibility.
 */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* Names SQL knows too: the extension and its schema. */
#define KG_EXTENSION			"keys_guard"
#define KG_SCHEMA				"keys_guard"

/*
 * Names keys_guard's SQL scripts use too.  The scripts spell them out
 * (SQL cannot include this file); names.c hands them to SQL as
 * keys_guard._shared_names(), and sql/names.sql fails when the two differ.
 */
#define KG_TENANT_SCHEMA_PREFIX	"tenant_"	/* + tenant id: its schema */
#define KG_COL_DELETED_AT		"deleted_at"	/* the soft-delete columns */
#define KG_COL_HARD_DELETE_AT	"hard_delete_at"
#define KG_COL_DELETED_BY		"deleted_by"
#define KG_COL_DELETE_REQUEST_ID "delete_request_id"
#define KG_OBJECT_PREFIX		"keys_guard_"	/* its triggers and policies */
#define KG_PURGE_INDEX_SUFFIX	"_kg_purge" /* after the table name's ... */
#define KG_PURGE_INDEX_NAME_CHARS 48	/* ... first 48 characters */

/* SQL conditions on a soft-delete table's row called alias. */
#define KG_SQL_DELETED(alias)	alias "." KG_COL_DELETED_AT " IS NOT NULL"
#define KG_SQL_LIVE(alias)		alias "." KG_COL_DELETED_AT " IS NULL"
#define KG_SQL_EXPIRED(alias) \
	KG_SQL_DELETED(alias) " AND " alias "." KG_COL_HARD_DELETE_AT " < now()"

/* Longest tenant id (docs/contract.md §4) and the buffers that hold context values. */
#define KG_TENANT_ID_MAXLEN		48
#define KG_ACTOR_MAXLEN			200
#define KG_REQUEST_ID_MAXLEN	200
#define KG_REASON_MAXLEN		500

/* The roles the install scripts create (docs/contract.md §2). */
#define KG_ROLE_ADMIN			"keys_guard_admin"
#define KG_ROLE_GATEWAY			"keys_guard_gateway"
#define KG_ROLE_KEYHOLDER		"keys_guard_keyholder"
#define KG_ROLE_CLIENT			"keys_guard_client"

/*
 * API keys (docs/contract.md §15).  A secret is, in this order:
 *   KG_API_KEY_PREFIX                                   4 chars
 *   the key id: its uuid's 16 bytes in lower-case hex  32 chars
 *   KG_API_KEY_RANDOM_BYTES from pg_strong_random(),
 *     RFC 4648 base32 in lower case (a-z, 2-7), no padding   52 chars
 *   CRC-32C of everything before it, lower-case hex      8 chars
 * KG_API_KEY_LEN characters in all.  Only its SHA-256 hash is stored.
 */
#define KG_API_KEY_PREFIX		"kgk_"
#define KG_API_KEY_PREFIX_LEN	4
#define KG_API_KEY_ID_HEX_LEN	32
#define KG_API_KEY_RANDOM_BYTES	32
#define KG_API_KEY_RANDOM_LEN	52	/* ceil(32 * 8 / 5) */
#define KG_API_KEY_CHECK_LEN	8
#define KG_API_KEY_LEN			96
#define KG_API_KEY_ID_TEXT_LEN	36	/* a key id as canonical uuid text */
#define KG_API_KEY_NAME_MAXLEN	200

/* hooks.c */
extern void kg_hooks_install(void);

/*
 * The variables the hooks read at every statement and transaction, kept
 * together: a statement then reads three cache lines of them instead of
 * one per variable, and one translation-buffer entry instead of several,
 * each of which PostgreSQL's own statement has evicted since the last
 * (bench/README.md, "Where the time goes").  The functions the executor
 * hooks pass a statement on to are here too, read once at installation:
 * each would otherwise be one more line, of the global offset table.
 * Each part belongs to the file named above it, which alone writes it;
 * the others only read it.  keys_guard.c defines it.
 */
struct KgContext;
struct ContextLevel;
struct KgRelationGuard;
typedef struct KgHotState
{
	/* first line: hooks.c, then what a quiet session is (keys_guard.h) */
	ExecutorStart_hook_type next_executor_start;
	ExecutorRun_hook_type next_executor_run;
	ExecutorFinish_hook_type next_executor_finish;
	ExecutorEnd_hook_type next_executor_end;
	ExecutorCheckPerms_hook_type prev_check_perms;
	object_access_hook_type prev_object_access;
	/* context.c: the context in force, or NULL */
	const struct KgContext *context;
	/* acting.c: none of its state is in force (kg_acting_statement_is_plain) */
	bool		acting_quiet;
	/* keyholder.c: whether session user keyholder_session is a keyholder */
	bool		keyholder_valid;
	bool		keyholder_result;
	Oid			keyholder_session;

	/*
	 * second line: isolation.c, the statements started on guarded data and
	 * the range table the last ExecutorCheckPerms checked, with what it
	 * found; keyholder.c, the statements counted under a key and the
	 * executor's nesting; catalog.c, the registry cache's generation and
	 * state
	 */
	dlist_head	running_queries;
	dlist_head	key_statements;
	List	   *checked_range_table;
	uint64		checked_generation;
	uint64		registry_generation;
	int			executor_depth;
	bool		checked_guarded;
	bool		cache_valid;
	bool		funcs_valid;

	/* third line: catalog.c, the relation kg_relation_guard() answered last */
	Oid			last_guard_relid;
	struct KgRelationGuard *last_guard;
	/* context.c: the context's API key id or NULL; its transaction levels */
	const char *context_key;
	struct ContextLevel *context_levels;
	/*
	 * redact.c: the statement text last found clean, and its length; this
	 * backend's pg_stat_activity entry's change count when its text was last
	 * looked at
	 */
	char	   *clean_activity;
	int			clean_activity_len;
	int			activity_changecount;
	/* redact.c (token.c sets secret_call_active around its calls) */
	bool		secret_call_active;
	bool		aborted_set;
	/* keyholder.c: a statement timeout this transaction pinned */
	bool		pinned_in_xact;
} KgHotState;

extern KgHotState kg_hot_state;

/*
 * Whether keyholder.c has found the session user not to be a keyholder
 * (kg_keyholder_session()'s cached answer, for this session user).  False
 * also when it has not looked yet: then only keyholder.c can say.
 */
static inline bool
kg_session_user_known_not_keyholder(void)
{
	Oid			session = GetSessionUserId();

	return likely(kg_hot_state.keyholder_valid) && likely(!kg_hot_state.keyholder_result) &&
		likely(kg_hot_state.keyholder_session == session) && likely(OidIsValid(session));
}

/*
 * Whether the session is quiet: no context in force (so no API key and no
 * read-only token either), none of acting.c's state, and a session user
 * known not to be a keyholder.  Each hook's work for the keyholder regime,
 * for a key's audit and for the context after a statement depends on one
 * of these, so a quiet session lets the hooks pass the statement straight
 * to PostgreSQL after the checks that depend on the statement itself.  Not
 * quiet means only "ask each file", which decides as it always does.
 */
static inline bool
kg_session_quiet(void)
{
	return likely(kg_hot_state.context == NULL) && likely(kg_hot_state.acting_quiet) &&
		kg_session_user_known_not_keyholder();
}

/* keys_guard.c: settings */
extern bool keys_guard_preloaded;
extern bool keys_guard_bypass;
extern bool keys_guard_tenant_search_path;
extern bool keys_guard_allow_session_context;
extern int	keys_guard_default_grace;
extern int	keys_guard_min_grace;
extern int	keys_guard_audit_queue_size;
extern char *keys_guard_database;
extern int	keys_guard_purge_naptime;
extern int	keys_guard_purge_batch_delay;
extern int	keys_guard_purge_batch_time;
extern double keys_guard_purge_busy_duty;
extern int	keys_guard_api_key_max_lifetime;
extern int	keys_guard_api_key_statement_timeout;
extern int	keys_guard_token_leeway;
extern char *keys_guard_token_issuer;
extern char *keys_guard_token_audience;
extern char *keys_guard_token_tenant_claim;
extern char *keys_guard_token_request_id_claim;
extern bool keys_guard_token_audit_each_use;

/* context.c */
typedef enum KgMode
{
	KG_MODE_NONE,				/* no context: guarded data is refused */
	KG_MODE_TENANT,				/* one tenant's data */
	KG_MODE_ADMIN,				/* attributed cross-tenant access */
	KG_MODE_BYPASS				/* keys_guard.bypass by a privileged role */
} KgMode;

extern char *kg_context_setting;
extern bool kg_tenant_id_is_valid(const char *id);

extern bool kg_check_context(char **newval, void **extra, GucSource source);
extern void kg_assign_context(const char *newval, void *extra);
extern bool kg_check_shown_setting(char **newval, void **extra, GucSource source);
extern const char *kg_show_tenant(void);
extern const char *kg_show_actor(void);
extern const char *kg_show_request_id(void);
extern const char *kg_show_admin_reason(void);
extern void kg_assign_bypass(bool newval, void *extra);
extern bool kg_check_allow_session_context(bool *newval, void **extra, GucSource source);
extern void kg_note_filter_state(void);
extern KgMode kg_current_mode(void);
extern const char *kg_current_tenant(void);
extern const char *kg_current_actor(void);
extern const char *kg_current_request_id(void);
extern const char *kg_current_admin_reason(void);
extern const char *kg_context_api_key(bool *can_write);
extern void kg_apply_key_context(const char *tenant_id, const char *actor,
								 const char *key_id, bool can_write);
extern void kg_apply_token_context(const char *tenant_id, const char *actor,
								   const char *request_id, bool read_only);
extern bool kg_context_read_only(void);
extern void kg_context_xact_event(XactEvent event);	/* hooks.c calls */
extern void kg_context_subxact_event(SubXactEvent event);
extern Size kg_context_shmem_size(void);	/* hooks.c calls: shared memory */
extern void kg_context_shmem_init(void);
extern uint64 kg_context_serial(void);
extern void kg_context_before_parallel_plan(void);
extern void kg_context_before_utility(PlannedStmt *pstmt);
extern void kg_context_after_utility(PlannedStmt *pstmt);
extern void kg_context_after_statement(void);
extern void kg_context_check_analyzed(Query *query);
extern void kg_refuse_keyholder(const char *funcname);
extern bool kg_has_role(const char *rolename);
extern char *kg_required_text_arg(FunctionCallInfo fcinfo, int argno, const char *argname);
extern char *kg_acting_person(void);
extern void kg_require_preloaded(void);

/*
 * Whether no regime of keyholder.c applies to the session: no API key in
 * force, no read-only token's context (kg_context_read_only()), and a
 * session user known not to be a keyholder; the negation of keyholder.c's
 * regime_session(), decided from kg_hot_state where it can be.  Not
 * unregimed means only "ask keyholder.c".
 */
static inline bool
kg_session_unregimed(void)
{
	return likely(kg_hot_state.context_key == NULL) && kg_session_user_known_not_keyholder() &&
		(kg_hot_state.context == NULL || !kg_context_read_only());
}

#if defined(__GNUC__)
#pragma GCC visibility push(default)	/* SQL-callable */
#endif
extern Datum keys_guard_current_tenant_uuid(PG_FUNCTION_ARGS);
extern Datum keys_guard_current_tenant_bigint(PG_FUNCTION_ARGS);
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
/* The key id of the transaction's key context, or NULL; *can_write for a write key. */
extern const char *kg_context_api_key(bool *can_write);

/* catalog.c */
typedef struct KgTenant
{
	Oid			nspoid;			/* hash key: the tenant's schema */
	char		id[KG_TENANT_ID_MAXLEN + 1];
	bool		active;
} KgTenant;

typedef struct KgPooledRel
{
	Oid			relid;			/* hash key */
	AttrNumber	tenant_attno;
	Oid			tenant_type;
	Oid			tenant_collation;
	Oid			compare_collation;	/* the filter's: never nondeterministic */
	Oid			eq_opr;			/* tenant column = current tenant */
	Oid			current_func;	/* function yielding the current tenant */
} KgPooledRel;

typedef enum KgClass
{
	KG_CLASS_STANDARD,
	KG_CLASS_PAYMENT,			/* soft-deleted, never purged */
	KG_CLASS_AUDIT				/* append-only */
} KgClass;

/* A foreign key with ON DELETE CASCADE from a soft-delete table. */
typedef struct KgCascade
{
	Oid			child;
	int			nkeys;
	AttrNumber	child_keys[INDEX_MAX_KEYS];
	AttrNumber	parent_keys[INDEX_MAX_KEYS];
} KgCascade;

/* A registered table (pooled or in a tenant schema) and its options. */
typedef struct KgGuardedTable
{
	Oid			relid;			/* hash key */
	bool		soft_delete;
	KgClass		class;
	Interval	grace;
	AttrNumber	deleted_at;		/* the soft-delete columns, or 0 */
	AttrNumber	hard_delete_at;
	AttrNumber	deleted_by;
	AttrNumber	delete_request_id;
	List	   *cascades;		/* read it with kg_table_cascades() */
} KgGuardedTable;

/* How one relation is guarded; owner and pooled are never both set. */
typedef struct KgRelationGuard
{
	Oid			relid;			/* hash key */
	KgTenant   *owner;			/* in a tenant schema: that tenant */
	KgPooledRel *pooled;		/* a pooled table */
	KgGuardedTable *table;		/* registered options, if registered */
} KgRelationGuard;

extern void kg_catalog_init(void);	/* hooks.c calls: cache callbacks */
extern KgRelationGuard *kg_relation_guard_lookup(Oid relid);

/*
 * How a relation is guarded (catalog.c).  Inline for the relation answered
 * last, which a statement asks about again: kg_relation_guard_lookup()
 * keeps it only while the registry cache and its functions are valid, and
 * forgets it at every change of the cache.  Callers are in a transaction.
 */
static inline KgRelationGuard *
kg_relation_guard(Oid relid)
{
	if (likely(relid == kg_hot_state.last_guard_relid) &&
		likely(kg_hot_state.cache_valid) && likely(kg_hot_state.funcs_valid))
		return kg_hot_state.last_guard;
	return kg_relation_guard_lookup(relid);
}
extern char *kg_relation_name(Oid relid);
extern bool kg_extension_active(void);
extern void kg_require_complete_extension(void);
extern bool kg_extension_complete(void);
extern bool kg_registry_in_use(void);
extern KgTenant *kg_tenant_owned_by(Oid roleid);
extern KgTenant *kg_tenant_by_namespace(Oid nspoid);
extern uint64 kg_registry_generation(void);
extern void kg_oid_hash_renew(HTAB **htab, const char *name, Size entrysize);
extern bool kg_schema_has_objects(Oid nspoid);
extern uint64 kg_schema_contents_generation(void);
extern Oid	kg_role_oid(const char *rolename);
extern KgTenant *kg_tenant_by_id(const char *id);
extern KgPooledRel *kg_pooled_rel(Oid relid);
extern Oid	kg_assert_tenant_func(void);
extern Oid	kg_assert_relation_func(void);
extern Oid	kg_guard_active_func(void);
extern Oid	kg_assert_conflict_func(void);
extern KgGuardedTable *kg_guarded_table(Oid relid);
extern List *kg_table_cascades(KgGuardedTable *table);
extern Oid	kg_hard_delete_at_func(void);
extern Oid	kg_deleted_by_func(void);
extern Oid	kg_request_id_func(void);

/* isolation.c */
extern void kg_check_relation(Oid relid, const char *action);

/* statement.c: per-statement entries, forgotten with the statement */
typedef struct KgStatementEntry
{
	dlist_node	node;
	QueryDesc  *query_desc;
	MemoryContextCallback callback;
} KgStatementEntry;
extern void *kg_statement_entry_new(dlist_head *list, QueryDesc *queryDesc, Size size);

/*
 * The entry of list for queryDesc, or NULL.  Inline: the executor hooks ask
 * at every statement, and the list is nearly always empty.
 */
static inline void *
kg_statement_entry_find(dlist_head *list, QueryDesc *queryDesc)
{
	dlist_iter	iter;

	dlist_foreach(iter, list)
	{
		KgStatementEntry *entry = dlist_container(KgStatementEntry, node, iter.cur);

		if (entry->query_desc == queryDesc)
			return entry;
	}
	return NULL;
}

/* hooks.c calls: executor side */
extern void kg_isolation_check_range_table(List *rangeTable);
extern void kg_isolation_executor_started_slow(QueryDesc *queryDesc, int eflags);

/*
 * After ExecutorStart: remember the context a statement on guarded data
 * started under.  Inline for the common case, a range table that
 * ExecutorCheckPerms has just found reads nothing guarded.
 */
static inline void
kg_isolation_executor_started(QueryDesc *queryDesc, int eflags)
{
	if (likely(queryDesc->plannedstmt->rtable == kg_hot_state.checked_range_table) &&
		likely(kg_hot_state.checked_generation == kg_hot_state.registry_generation) &&
		likely(!kg_hot_state.checked_guarded))
	{
		kg_hot_state.checked_range_table = NIL;
		return;
	}
	kg_isolation_executor_started_slow(queryDesc, eflags);
}
extern void kg_isolation_check_portal_context(QueryDesc *queryDesc);
/* hooks.c calls: planner side */
extern bool kg_isolation_plan_begin(void);
extern void kg_isolation_plan_end(bool save);
extern void kg_isolation_refuse_holdable_cursor(void);
extern void kg_isolation_mark_policies(Query *parse);
extern void kg_isolation_drop_fail_closed(Query *parse);
extern void kg_isolation_add_gates(Query *parse);
extern void kg_isolation_planned(PlannedStmt *result);
extern void kg_isolation_relation_info(PlannerInfo *root, Oid relationObjectId,
									   RelOptInfo *rel);

/* acting.c */
/* hooks.c calls: xact and cache callbacks, fmgr hooks, statement spans */
extern void kg_acting_init(void);
extern void kg_acting_xact_event(XactEvent event);
extern bool kg_acting_function_hooked(Oid fn_oid);
extern void kg_acting_function_event(FmgrHookEventType event, FmgrInfo *flinfo,
									 Datum *private);
/* What kg_begin_statement() returns, for kg_end_statement(). */
#define KG_STATEMENT_IN_RULE	0x01	/* in_rule_action was set before */
#define KG_STATEMENT_USER		0x02	/* the statement counts as a user frame */
extern int	kg_begin_statement(Query *query, PlannedStmt *pstmt);
extern void kg_end_statement(int save);
extern Datum kg_call_own_function(const char *name, int nargs, const Oid *argtypes,
								  const Datum *args, bool *isnull);
extern int	kg_acting_run_begin(void);
extern void kg_acting_run_end(int save);
extern bool kg_acting_statement_is_plain_slow(PlannedStmt *pstmt);

/* Whether a rule produced the plan (kg_mark_rule_action() marked it). */
static inline bool
kg_plan_is_rule_action(PlannedStmt *pstmt)
{
	return pstmt->relationOids != NIL && linitial_oid(pstmt->relationOids) == InvalidOid;
}

/*
 * Whether the executor hooks may run the statement without an acting span
 * (acting.c).  With none of acting.c's state in force, the answer needs
 * only the plan and whether an RI query runs it: inline, as the hooks ask
 * three times a statement.
 */
static inline bool
kg_acting_statement_is_plain(PlannedStmt *pstmt)
{
	if (likely(kg_hot_state.acting_quiet) && !kg_plan_is_rule_action(pstmt) &&
		!InNoForceRLSOperation())
		return true;
	return kg_acting_statement_is_plain_slow(pstmt);
}
extern void kg_mark_rule_action(PlannedStmt *pstmt);
extern bool kg_in_internal_operation(void);
extern bool kg_physical_delete_allowed(void);
extern bool kg_ri_query_trusted(void);
extern bool kg_in_soft_delete_cascade(void);
extern bool kg_acting_for_keys_guard(void);
extern bool kg_rte_is_rule_placeholder(RangeTblEntry *rte);
extern bool kg_in_rule_action(void);
extern bool kg_rte_trusted(RangeTblEntry *rte);
extern bool kg_rte_internal(RangeTblEntry *rte);
extern const char *kg_internal_alias(void);
extern const char *kg_untrusted_alias(void);
extern bool kg_rte_marked_untrusted(RangeTblEntry *rte);
extern void kg_run_internal(void (*fn) (void *), void *arg, bool physical);
extern void kg_run_cascade(Oid child_owner, void (*fn) (void *), void *arg);
extern void kg_run_as_user_code(void (*fn) (void *), void *arg);
extern bool kg_filters_relaxed_span(void);
typedef struct KgOwnerSwitch
{
	Oid			userid;
	int			sec_context;
	int			nestlevel;
} KgOwnerSwitch;

extern void kg_begin_as_owner(Oid relid, KgOwnerSwitch *save);
extern void kg_end_as_owner(KgOwnerSwitch *save);
extern int	kg_execute_as_owner(Oid relid, const char *sql, int nargs, Oid *types,
								Datum *values, const char *nulls, bool read_only,
								long count);

/* soft_delete.c */
extern bool keys_guard_include_deleted;
extern bool kg_check_include_deleted(bool *newval, void **extra, GucSource source);
extern void kg_assign_include_deleted(bool newval, void *extra);
extern Expr *kg_soft_delete_qual(Index rtindex, KgGuardedTable *table, bool trusted);
extern bool kg_soft_delete_rewrite(Query *parse);	/* hooks.c calls */

/* purge.c */
extern int	keys_guard_purge_batch_size;
extern void kg_purge_table(Oid relid, int batch_size, int max_batches, bool dry_run,
						   int64 *purged, int64 *skipped);
extern int	kg_drop_expired_tenant(const char *id);
extern Oid	kg_purge_index(Oid relid);

/* A purge run of the worker, one table; purge.c picks the path. */
typedef struct KgPurgeRun KgPurgeRun;

#define KG_PURGE_MAX_READ_AHEAD	(1024 * 1024)	/* rows listed at once */

extern KgPurgeRun *kg_purge_run_begin(Oid relid, MemoryContext cxt);
extern bool kg_purge_run_step(KgPurgeRun *run, int batch_rows, int read_ahead, int *handled);
extern bool kg_purge_run_finished(const KgPurgeRun *run);
extern char *kg_purge_run_activity(const KgPurgeRun *run, int batch_rows, int read_ahead);
extern void kg_purge_run_end(KgPurgeRun *run);

/* utility.c */
extern PlannedStmt *kg_utility_check_statement(PlannedStmt *pstmt);	/* hooks.c calls */

/* apikey.c */
extern bool kg_api_key_parse(const char *secret, pg_uuid_t *key_id);
extern void kg_sha256(const void *data, size_t len, uint8 *digest);

/* token.c: verified tokens (docs/contract.md §17) */
extern int	kg_b64url_value(unsigned char c);
#define KG_TOKEN_MAXLEN			8192	/* longest token set_context_from_token() reads */

/* keyholder.c: nothing changes in a keyholder session without a write key */
extern bool kg_keyholder_session(void);
/* hooks.c calls: cache callbacks, executor, object access, utility */
extern void kg_keyholder_init(void);
extern void kg_keyholder_xact_event(XactEvent event);
extern void kg_keyholder_subxact_event(SubXactEvent event);
extern void kg_keyholder_lower_timeout(void);	/* apikey.c calls */

extern void kg_keyholder_executor_start(QueryDesc *queryDesc, int eflags);
extern void kg_keyholder_nest(int delta);
extern void kg_keyholder_executor_started(QueryDesc *queryDesc);
extern void kg_keyholder_executor_end(QueryDesc *queryDesc);
extern void kg_keyholder_function_execute(Oid fn);
extern void kg_keyholder_check_utility(PlannedStmt *pstmt);
extern void kg_keyholder_utility_done(PlannedStmt *pstmt, ProcessUtilityContext context);

/* audit.c: the only writer of keys_guard.audit_log */
typedef enum KgAuditOutcome
{
	KG_OUTCOME_OK,
	KG_OUTCOME_DENIED,
	KG_OUTCOME_ERROR			/* the worker's own failure: see audit.c */
} KgAuditOutcome;

/* A record's detail, a JSON object built key by key. */
typedef struct KgAuditDetail KgAuditDetail;

extern Size kg_audit_shmem_size(void);	/* hooks.c calls: shared memory */
extern void kg_audit_request_locks(void);
extern void kg_audit_shmem_init(void);
extern KgAuditDetail *kg_audit_detail(void);
extern void kg_audit_detail_text(KgAuditDetail *detail, const char *key,
								 const char *value);
extern void kg_audit_detail_int(KgAuditDetail *detail, const char *key, int64 value);
extern void kg_audit_detail_bool(KgAuditDetail *detail, const char *key, bool value);
/* In the current transaction: rolls back with it. */
extern void kg_audit_write(const char *action, const char *target,
						   KgAuditOutcome outcome, KgAuditDetail *detail);
/* Through the shared queue: survives a rollback. */
extern void kg_audit_enqueue(const char *action, const char *target,
							 KgAuditOutcome outcome, KgAuditDetail *detail);
extern int	kg_audit_drain(void);
extern void kg_audit_release(bool committed);
extern void kg_audit_reclaim(void);
extern void kg_audit_forget(Oid dboid);
extern int	kg_audit_pending(void);
/* Counted per backend and written by the second (see audit.c). */
extern void kg_audit_key_use(const char *key_id, const char *name, bool write);
extern void kg_audit_key_statement(const char *key_id, const char *command,
								   const Oid *relations, int nrelations,
								   int64 statements, int64 rows);
extern void kg_audit_close_windows(void);	/* the worker */

/* redact.c: secrets out of the server log and pg_stat_activity */
#define KG_REDACTED_TEXT		"[REDACTED]"	/* the other secrets' marker */
#define KG_REDACTED_MARKER		KG_API_KEY_PREFIX KG_REDACTED_TEXT
extern char *keys_guard_redact_patterns;
extern const char *kg_log_request_id;	/* the worker's request, for its log lines */
extern bool kg_check_redact_patterns(char **newval, void **extra, GucSource source);
extern void kg_assign_redact_patterns(const char *newval, void *extra);
extern char *kg_redact_text(const char *s);
extern bool kg_text_has_secret(const char *s);
extern const char *kg_token_context_kid(void);	/* token.c */
extern void kg_redact_xact_event(XactEvent event);	/* hooks.c calls */
extern void kg_redact_subxact_event(SubXactEvent event);
extern void kg_redact_error_data(ErrorData *edata);	/* hooks.c calls */
/*
 * hooks.c calls, at each statement parsed, planned, started or run as a
 * utility: the text pg_stat_activity shows for this backend, out of its
 * secrets.
 */
extern void kg_redact_activity(void);

/* worker.c */
extern Size kg_worker_shmem_size(void);	/* hooks.c calls: shared memory */
extern void kg_worker_shmem_init(void);
extern void kg_worker_register_launcher(void);
extern void kg_worker_wake(Oid dboid);
extern void kg_worker_wake_all(Oid dboid);
extern bool kg_worker_serves_database(const char *dbname);
extern void kg_worker_stop_database(Oid dboid);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif							/* KEYS_GUARD_H */
