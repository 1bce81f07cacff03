/*-------------------------------------------------------------------------
 *
 * control.c
 *	  Which code speaks for keys_guard: the registry and the guards change
 *	  only through keys_guard's own functions (SPEC.md §11).
 *
 * A function hook (the one sepgsql uses for trusted procedures) counts how
 * deep the backend is inside keys_guard's procedural functions: the SQL API
 * (create_tenant, protect_table, release_table, ...), its event triggers and
 * the worker's tenant drop.  While that count is positive, or keys_guard
 * runs in its internal mode, or its own extension script is running, the
 * registry tables may be written and guard-weakening DDL is let through;
 * otherwise both are refused, superusers included.  The count cannot be
 * raised from SQL except by calling those functions.
 *
 * The registry tables carry a statement trigger, keys_guard._registry_guard(),
 * that enforces this for INSERT, UPDATE, DELETE and TRUNCATE.  One
 * exception: INSERT (or COPY) under keys_guard.bypass, which is how
 * pg_restore puts a dumped registry back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "keys_guard.h"

static needs_fmgr_hook_type prev_needs_fmgr_hook = NULL;
static fmgr_hook_type prev_fmgr_hook = NULL;

/* How many of keys_guard's functions are running in this backend. */
static int	api_depth = 0;

/* fmgr_hook's per-function private datum: whether the function is ours. */
#define KG_FUNC_UNKNOWN	0
#define KG_FUNC_OURS	1
#define KG_FUNC_OTHER	2

/*
 * keys_guard's functions written in a procedural language (PL/pgSQL).  The
 * C and SQL functions are left out: the C ones that change anything enter
 * the internal mode themselves, and hooking a function costs its caller
 * the SQL-function inlining and the fast call path.
 */
static bool
is_keys_guard_function(Oid fn_oid)
{
	HeapTuple	tuple;
	Form_pg_proc proc;
	bool		result = false;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	if (!HeapTupleIsValid(tuple))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	if (proc->prolang != ClanguageId && proc->prolang != SQLlanguageId &&
		proc->prolang != INTERNALlanguageId)
		result = proc->pronamespace == get_namespace_oid("keys_guard", true);
	ReleaseSysCache(tuple);
	return result;
}

/*
 * needs_fmgr_hook is asked whenever a function that is not built in is
 * looked up, which a cached plan does on every execution; a small
 * direct-mapped cache of the answers keeps that to an array lookup.  Any
 * change to pg_proc empties it.
 */
#define KG_FUNC_CACHE_SIZE	64

typedef struct KgFuncCacheEntry
{
	Oid			fn_oid;
	bool		ours;
} KgFuncCacheEntry;

static KgFuncCacheEntry func_cache[KG_FUNC_CACHE_SIZE];

static void
func_cache_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	memset(func_cache, 0, sizeof(func_cache));
}

static bool
kg_needs_fmgr_hook(Oid fn_oid)
{
	KgFuncCacheEntry *entry = &func_cache[fn_oid % KG_FUNC_CACHE_SIZE];

	if (prev_needs_fmgr_hook && prev_needs_fmgr_hook(fn_oid))
		return true;
	if (entry->fn_oid == fn_oid && OidIsValid(fn_oid))
		return entry->ours;
	if (!IsTransactionState())
		return false;
	entry->ours = is_keys_guard_function(fn_oid);
	entry->fn_oid = fn_oid;
	return entry->ours;
}

static void
kg_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *private)
{
	/*
	 * PostgreSQL keeps one private datum per hooked function; a module
	 * loaded before keys_guard that also uses it (sepgsql does) cannot share
	 * it, so keys_guard is not meant to be combined with such a module.
	 */
	if (prev_fmgr_hook)
		prev_fmgr_hook(event, flinfo, private);

	switch (event)
	{
		case FHET_START:
			if (*private == KG_FUNC_UNKNOWN)
				*private = is_keys_guard_function(flinfo->fn_oid) ? KG_FUNC_OURS : KG_FUNC_OTHER;
			if (*private == KG_FUNC_OURS)
				api_depth++;
			break;
		case FHET_END:
		case FHET_ABORT:
			if (*private == KG_FUNC_OURS && api_depth > 0)
				api_depth--;
			break;
	}
}

/* Belt and braces: no count survives its transaction. */
static void
control_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		api_depth = 0;
}

/* Whether this process is one of keys_guard's background workers. */
static bool
am_keys_guard_worker(void)
{
	return MyBgworkerEntry != NULL &&
		strcmp(MyBgworkerEntry->bgw_library_name, "keys_guard") == 0;
}

/*
 * Whether keys_guard itself is acting: one of its functions, its internal
 * mode, its worker, or its own extension script (CREATE / ALTER EXTENSION).
 */
bool
kg_acting_for_keys_guard(void)
{
	return api_depth > 0 || kg_in_internal_operation() || am_keys_guard_worker() ||
		(creating_extension && CurrentExtensionObject == get_extension_oid("keys_guard", true));
}

void
kg_control_init(void)
{
	prev_needs_fmgr_hook = needs_fmgr_hook;
	needs_fmgr_hook = kg_needs_fmgr_hook;
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = kg_fmgr_hook;
	RegisterXactCallback(control_xact_callback, NULL);
	CacheRegisterSyscacheCallback(PROCOID, func_cache_invalidate, (Datum) 0);
	/* The keys_guard schema may come and go with the extension. */
	CacheRegisterSyscacheCallback(NAMESPACEOID, func_cache_invalidate, (Datum) 0);
}

/*
 * keys_guard._registry_guard(): BEFORE ... FOR EACH STATEMENT trigger of
 * the registry tables.
 */
PG_FUNCTION_INFO_V1(keys_guard_registry_guard);
Datum
keys_guard_registry_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent event;
	const char *verb;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "keys_guard_registry_guard: not called by trigger manager");
	event = trigdata->tg_event;

	if (kg_acting_for_keys_guard())
		return PointerGetDatum(NULL);
	/* pg_restore loading a dumped registry (SPEC.md §11). */
	if (TRIGGER_FIRED_BY_INSERT(event) && kg_current_mode() == KG_MODE_BYPASS)
		return PointerGetDatum(NULL);

	if (TRIGGER_FIRED_BY_INSERT(event))
		verb = "insert into";
	else if (TRIGGER_FIRED_BY_UPDATE(event))
		verb = "update";
	else if (TRIGGER_FIRED_BY_DELETE(event))
		verb = "delete from";
	else
		verb = "truncate";
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot %s keys_guard's registry table \"%s\" directly", verb,
					RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("The registry changes only through keys_guard's functions, for every role."),
			 errhint("Use keys_guard's functions (the view keys_guard.operations lists them); pg_restore loads a dump with PGOPTIONS='-c keys_guard.bypass=on'.")));
	PG_RETURN_NULL();			/* keep compiler quiet */
}
