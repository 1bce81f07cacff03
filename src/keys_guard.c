/*-------------------------------------------------------------------------
 *
 * keys_guard.c
 *	  Module entry point, a table of contents: settings, shared memory,
 *	  background worker registration, then the hooks (hooks.c); and the two
 *	  SQL functions that say whether the library was preloaded.
 *
 * keys_guard only works when loaded through shared_preload_libraries: its
 * guarantees live in hooks and in shared memory.  Loaded any other way (for
 * instance by calling one of its functions) it installs nothing, and its SQL
 * functions refuse to work.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "keys_guard.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* keys_guard.h: what the hooks read at every statement, on three lines. */
pg_attribute_aligned(64) KgHotState kg_hot_state = {
	.acting_quiet = true,
	.clean_activity_len = -1,
	.activity_changecount = -1,
	.key_statements = DLIST_STATIC_INIT(kg_hot_state.key_statements),
	.running_queries = DLIST_STATIC_INIT(kg_hot_state.running_queries),
};

#if SIZEOF_VOID_P == 8
StaticAssertDecl(offsetof(KgHotState, running_queries) == 64 &&
				 offsetof(KgHotState, last_guard_relid) == 128 &&
				 sizeof(KgHotState) <= 192,
				 "each part of KgHotState stays on its cache line");
#endif

bool		keys_guard_preloaded = false;
bool		keys_guard_bypass = false;
bool		keys_guard_tenant_search_path = true;
bool		keys_guard_allow_session_context = false;
int			keys_guard_default_grace = 30 * 24 * 3600;
int			keys_guard_min_grace = 24 * 3600;
int			keys_guard_audit_queue_size = 8192;
char	   *keys_guard_database = NULL;
int			keys_guard_purge_naptime = 60;
int			keys_guard_purge_batch_delay = 50;
int			keys_guard_purge_batch_time = 20;
double		keys_guard_purge_busy_duty = 0.01;
int			keys_guard_api_key_max_lifetime = 365 * 24 * 3600;
int			keys_guard_api_key_statement_timeout = 30000;
int			keys_guard_token_leeway = 30;
char	   *keys_guard_token_issuer = NULL;
char	   *keys_guard_token_audience = NULL;
char	   *keys_guard_token_tenant_claim = NULL;
char	   *keys_guard_token_request_id_claim = NULL;
bool		keys_guard_token_audit_each_use = false;

/*
 * Define the request-context settings.  The context itself is backend-local
 * state (context.c); one internal PGC_SUSET setting, keys_guard.context,
 * carries it to parallel workers, and its check hook accepts a value only
 * from keys_guard's own code, so neither SET, set_config(), ALTER ROLE ...
 * SET, a function's SET clause nor a connection option can claim a tenant
 * (docs/contract.md §3), superusers included.  The context's fields are
 * shown through four settings that can be read but never set.
 */
static void
define_context_settings(void)
{
	static const struct
	{
		const char *name;
		const char *description;
		GucShowHook show;
	}			shown[] = {
		{"keys_guard.tenant", "Tenant of the current request context.", kg_show_tenant},
		{"keys_guard.actor", "Actor of the current request context.", kg_show_actor},
		{"keys_guard.request_id", "Request id of the current request context.", kg_show_request_id},
		{"keys_guard.admin_reason", "Reason of the current admin context; empty outside one.", kg_show_admin_reason},
	};
	/* Each setting needs storage of its own: the GUC code frees old values. */
	static char *shown_storage[4];
	int			i;

	StaticAssertStmt(lengthof(shown) == lengthof(shown_storage), "one storage per setting");

	DefineCustomStringVariable("keys_guard.context",
							   "The request context, as a parallel worker receives it.",
							   "Internal: written by keys_guard when a parallel plan starts.",
							   &kg_context_setting, "",
							   PGC_SUSET,
							   GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL |
							   GUC_DISALLOW_IN_FILE | GUC_DISALLOW_IN_AUTO_FILE,
							   kg_check_context, kg_assign_context, NULL);

	for (i = 0; i < lengthof(shown); i++)
		DefineCustomStringVariable(shown[i].name, shown[i].description,
								   "Read-only: set through keys_guard.set_context() or admin_context().",
								   &shown_storage[i], "",
								   PGC_SUSET,
								   GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE | GUC_DISALLOW_IN_AUTO_FILE,
								   kg_check_shown_setting, NULL, shown[i].show);
}

/*
 * Define every setting, the request context's first, then reserve the
 * keys_guard prefix.
 */
static void
define_settings(void)
{
	define_context_settings();

	DefineCustomBoolVariable("keys_guard.bypass",
							 "Lets superusers and BYPASSRLS roles read guarded data without a context.",
							 "Meant for pg_dump and maintenance; audited once per session.",
							 &keys_guard_bypass, false,
							 PGC_SUSET, 0,
							 NULL, kg_assign_bypass, NULL);

	/*
	 * A session-wide context outlives its transaction, so behind a
	 * transaction-pooling proxy the next client would inherit it: it is
	 * allowed only where a superuser turned this on for the role (docs/contract.md
	 * §3).  PGC_SUSET keeps SET, set_config(), ALTER ROLE and connection
	 * options of ordinary roles out; the check hook also keeps out roles
	 * that were granted SET on it.
	 */
	DefineCustomBoolVariable("keys_guard.allow_session_context",
							 "Lets set_context() and admin_context() set a session-wide context (is_local => false).",
							 "Only for direct or session-pooled connections: behind a transaction-pooling proxy "
							 "a session-wide context would be inherited by the next client.",
							 &keys_guard_allow_session_context, false,
							 PGC_SUSET, 0,
							 kg_check_allow_session_context, NULL, NULL);

	DefineCustomBoolVariable("keys_guard.include_deleted",
							 "Shows soft-deleted rows to members of keys_guard_admin.",
							 NULL,
							 &keys_guard_include_deleted, false,
							 PGC_USERSET, 0,
							 kg_check_include_deleted, kg_assign_include_deleted, NULL);

	DefineCustomBoolVariable("keys_guard.tenant_search_path",
							 "Puts the tenant's schema first on search_path while a context lasts.",
							 "Changing search_path makes PostgreSQL replan cached statements; "
							 "deployments that use only pooled tables can turn this off.",
							 &keys_guard_tenant_search_path, true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("keys_guard.default_grace",
							"Grace period of soft deletes when a table sets none.",
							NULL,
							&keys_guard_default_grace, 30 * 24 * 3600,
							0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("keys_guard.min_grace",
							"Shortest grace period any table may have.",
							NULL,
							&keys_guard_min_grace, 24 * 3600,
							0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("keys_guard.audit_queue_size",
							"Denial records shared memory holds until the worker writes them.",
							NULL,
							&keys_guard_audit_queue_size, 8192,
							64, 1024 * 1024,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("keys_guard.database",
							   "Databases the background worker serves (comma-separated); empty means all.",
							   NULL,
							   &keys_guard_database, "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("keys_guard.purge_batch_size",
							"Most rows the purge removes per transaction.",
							"The background worker adapts its batches to keys_guard.purge_batch_time, up to this many rows; purge_now() uses batches of this size.",
							&keys_guard_purge_batch_size, 50000,
							1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("keys_guard.purge_batch_time",
							"Time one purge batch of the background worker should take.",
							"The worker sizes its batches to this while no other session is running a statement.",
							&keys_guard_purge_batch_time, 20,
							1, 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("keys_guard.purge_batch_delay",
							"Pause of the background worker between two purge batches while other sessions are running statements.",
							"Gives way to the foreground workload, as autovacuum's cost delay does: the batches are then sized so that the pause after each keeps the worker's share of the time at keys_guard.purge_busy_duty; 0 purges at full speed always.",
							&keys_guard_purge_batch_delay, 50,
							0, 10000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomRealVariable("keys_guard.purge_busy_duty",
							 "Share of the time the background worker purges while other sessions are running statements.",
							 "After a batch of W ms the worker pauses W * (1 - duty) / duty ms; 1 means no pause.",
							 &keys_guard_purge_busy_duty, 0.01,
							 0.001, 1.0,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("keys_guard.purge_naptime",
							"Time between two runs of the background worker.",
							NULL,
							&keys_guard_purge_naptime, 60,
							1, 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("keys_guard.api_key_max_lifetime",
							"Longest lifetime create_api_key() and rotate_api_key() give a key.",
							NULL,
							&keys_guard_api_key_max_lifetime, 365 * 24 * 3600,
							1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("keys_guard.api_key_statement_timeout",
							"Statement timeout of a transaction under an API key; 0 leaves statement_timeout as it is.",
							"use_api_key() lowers statement_timeout to this for the transaction, never raises it.",
							&keys_guard_api_key_statement_timeout, 30000,
							0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	/* Verified tokens (token.c): superusers decide what a token must say. */
	DefineCustomIntVariable("keys_guard.token_leeway",
							"Clock skew allowed when checking a token's exp and nbf.",
							NULL,
							&keys_guard_token_leeway, 30,
							0, 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("keys_guard.token_issuer",
							   "The iss claim a token must carry; empty: not checked.",
							   NULL,
							   &keys_guard_token_issuer, "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("keys_guard.token_audience",
							   "The value a token's aud claim must be or contain; empty: not checked.",
							   NULL,
							   &keys_guard_token_audience, "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("keys_guard.token_tenant_claim",
							   "The claim of a token that names its tenant.",
							   NULL,
							   &keys_guard_token_tenant_claim, "project_id",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("keys_guard.token_request_id_claim",
							   "The claim of a token that gives the request id; empty: a request id is generated.",
							   NULL,
							   &keys_guard_token_request_id_claim, "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("keys_guard.token_audit_each_use",
							 "Audit every use of a verified token, not only its verification.",
							 "Off: a backend records a token when it verifies it, and its refusals always.",
							 &keys_guard_token_audit_each_use, false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("keys_guard.redact_patterns",
							   "Regular expressions whose matches never reach the server log.",
							   "A comma-separated list; double-quote a pattern that holds a comma or a space.",
							   &keys_guard_redact_patterns, "",
							   PGC_SUSET, GUC_LIST_INPUT,
							   kg_check_redact_patterns, kg_assign_redact_patterns, NULL);

	MarkGUCPrefixReserved("keys_guard");
}

/*
 * Module load.  Only through shared_preload_libraries: anywhere else
 * keys_guard installs nothing and its SQL functions refuse to work.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	keys_guard_preloaded = true;

	/* Settings. */
	define_settings();

	/*
	 * Shared memory: audit.c's denial queue and worker.c's worker table,
	 * requested and created by hooks.c's shmem_request and shmem_startup
	 * hooks.
	 */

	/* The launcher of the per-database background workers (worker.c). */
	kg_worker_register_launcher();

	/* Every PostgreSQL hook and callback (hooks.c). */
	kg_hooks_install();
}

/*
 * Called first by the install script: CREATE EXTENSION without the library
 * preloaded fails here (docs/contract.md §1).
 */
PG_FUNCTION_INFO_V1(keys_guard_assert_preloaded);
Datum
keys_guard_assert_preloaded(PG_FUNCTION_ARGS)
{
	if (!keys_guard_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("keys_guard must be loaded via shared_preload_libraries"),
				 errhint("Add keys_guard to shared_preload_libraries in postgresql.conf and restart the server.")));
	PG_RETURN_VOID();
}

/*
 * The fail-closed policy every guarded table carries: true while the
 * library is preloaded, an error otherwise, so a server restarted without
 * keys_guard denies guarded tables instead of exposing them (docs/contract.md §1).
 */
PG_FUNCTION_INFO_V1(keys_guard_guard_active);
Datum
keys_guard_guard_active(PG_FUNCTION_ARGS)
{
	if (!keys_guard_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("keys_guard is not loaded, so guarded tables are closed"),
				 errhint("Add keys_guard to shared_preload_libraries in postgresql.conf and restart the server.")));
	PG_RETURN_BOOL(true);
}
