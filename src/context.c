/*-------------------------------------------------------------------------
 *
 * context.c
 *	  The request context: tenant, actor and request id (docs/contract.md §3).
 *
 * The context is backend-local state with the scope rules of a setting:
 * a transaction-scoped context (SET LOCAL semantics) ends with its
 * transaction, a session-wide one (SET semantics) outlives it, and a
 * rolled-back transaction or subtransaction takes back what it set.  It is
 * not kept in a GUC because every request sets one: a GUC write costs
 * several thousand instructions at the write and again at commit, which
 * walks every setting once any is changed.  A parallel worker gets its
 * leader's context through one internal setting, keys_guard.context,
 * written only when a parallel plan starts and cleared whenever the
 * context changes; its check hook refuses every value that does not come
 * from this file, so no SET, set_config(), ALTER ROLE ... SET, function
 * SET clause or connection option can claim a tenant, superusers
 * included.
 *
 * A context is transaction-scoped unless keys_guard.allow_session_context,
 * which only a superuser can turn on, allows a session-wide one: behind a
 * transaction-pooling proxy a session-wide context would pass to the next
 * client of the server connection.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "common/string.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/nodeFuncs.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/backendid.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/uuid.h"
#include "utils/varlena.h"

#include "keys_guard.h"

/*
 * The fields of a context, as written into keys_guard.context for a
 * parallel worker, are separated by the unit separator (0x1f), which no
 * field can contain: tenant ids have a fixed alphabet and the other fields
 * are refused if they contain control characters.
 */
#define KG_CONTEXT_SEPARATOR '\x1f'

typedef struct KgContext
{
	char		tenant[KG_TENANT_ID_MAXLEN + 1];
	char		actor[KG_ACTOR_MAXLEN + 1];
	char		request_id[KG_REQUEST_ID_MAXLEN + 1];
	char		reason[KG_REASON_MAXLEN + 1];	/* set only in an admin context */
	char		api_key[KG_API_KEY_ID_TEXT_LEN + 1];	/* set only by use_api_key() */
	char		api_key_write[2];	/* "w" if that key may write, else "" */
	char		read_only[2];	/* "r" for a read-only token's context, else "" */
	uint64		serial;			/* this backend's number for it, from 1 */

	/*
	 * Not packed: set by apply_context() once the context is in force, and
	 * so kept and taken back with it (a ROLLBACK TO brings back the earlier
	 * context's own).  The tenant's schema, if it was left off search_path
	 * because it held nothing, and a hash of the search_path it was left
	 * with.
	 */
	Oid			deferred_schema;
	uint32		deferred_base_hash;
	bool		deferred_local; /* the context's scope: SET LOCAL */
	uint64		checked_generation; /* contents seen empty as of this */

	int			refcount;		/* references from the scope stack below */
} KgContext;

/*
 * kg_hot_state.context is the context in force: NULL, or one this file
 * made (in a parallel worker, the one the GUC machinery keeps for
 * keys_guard.context); kg_hot_state.context_key is its API key id, or
 * NULL.  Every change of the context in force goes through here.
 */
static inline void
set_current_context(const KgContext *ctx)
{
	kg_hot_state.context = ctx;
	kg_hot_state.context_key =
		(ctx != NULL && ctx->api_key[0] != '\0') ? ctx->api_key : NULL;
}

/*
 * What each (sub)transaction level changed, newest level first: the context
 * in force before its first change, which a rollback of the level brings
 * back, and the newest session-wide context set at the level, which a
 * commit keeps.  As for a setting, a transaction-scoped change ends with
 * the transaction, and a session-wide one survives its commit.
 */
typedef struct ContextLevel
{
	int			nest_level;		/* GetCurrentTransactionNestLevel() */
	KgContext  *prior;
	KgContext  *kept;			/* valid if has_kept */
	bool		has_kept;
	struct ContextLevel *below;
} ContextLevel;

/* kg_hot_state.context_levels is the newest. */

/* Numbers contexts, so that a context's identity survives its reuse. */
static uint64 context_serial_counter = 0;

char	   *kg_context_setting = NULL;

/* True only while this file writes keys_guard.context. */
static bool setting_context = false;

/*
 * The serial of the context keys_guard.context holds now, or 0
 * when it is empty: it is written when a parallel plan starts, cleared
 * when the context changes, and put back by the GUC machinery with the
 * context when a (sub)transaction ends, so it is never a context other
 * than the one in force.
 */
static uint64 mirrored_serial = 0;

/*
 * The serial of each backend's context in force (0: none), indexed by
 * backend id, in shared memory: a parallel worker takes the context it
 * receives only if it is the one its leader has in force, so that no
 * path that starts workers without keys_guard seeing it (a parallel index
 * build, say) can hand them an earlier one.
 */
typedef union KgContextSerial
{
	pg_atomic_uint64 serial;
	char		pad[PG_CACHE_LINE_SIZE];	/* one cache line per backend */
} KgContextSerial;

static KgContextSerial *context_serials = NULL;

/*
 * Each backend writes its slot at every set_context() and transaction end;
 * with the slots packed, two busy backends would take the same cache line
 * from each other's CPU at every write.
 */
Size
kg_context_shmem_size(void)
{
	return mul_size(MaxBackends + 1, sizeof(KgContextSerial));
}

void
kg_context_shmem_init(void)
{
	bool		found;

	context_serials = ShmemInitStruct("keys_guard context serials",
									  kg_context_shmem_size(), &found);
	if (!found)
		for (int i = 0; i <= MaxBackends; i++)
			pg_atomic_init_u64(&context_serials[i].serial, 0);
}

/* Publish the serial of the context now in force, for parallel workers. */
static inline void
publish_context_serial(void)
{
	if (context_serials != NULL && MyBackendId != InvalidBackendId &&
		MyBackendId <= MaxBackends)
		pg_atomic_write_u64(&context_serials[MyBackendId].serial,
							kg_hot_state.context ? kg_hot_state.context->serial : 0);
}

/*
 * Which filters plans made now leave out (KG_PLANS_* bits); a plan cached
 * under one state is never reused under another.
 */
#define KG_PLANS_ADMIN				0x01	/* every tenant, live rows */
#define KG_PLANS_BYPASS				0x02	/* everything */
#define KG_PLANS_KEYS_GUARD			0x04	/* keys_guard's operation or cascade */
#define KG_PLANS_INCLUDE_DELETED	0x08	/* soft-deleted rows too */

static int	plans_filter_state = 0;

static uint32 path_hash(const char *path);


static inline bool
is_set(const char *value)
{
	return value != NULL && value[0] != '\0';
}

/* Copy the next separated field of *cursor into dst; false if too long. */
static bool
unpack_field(const char **cursor, char *dst, size_t size)
{
	const char *p = *cursor;
	size_t		len = 0;

	/* One pass: the fields are short, most of them empty. */
	for (; *p != '\0' && *p != KG_CONTEXT_SEPARATOR; p++)
	{
		if (len + 1 >= size)
			return false;
		dst[len++] = *p;
	}
	dst[len] = '\0';
	*cursor = *p == KG_CONTEXT_SEPARATOR ? p + 1 : p;
	return true;
}

static bool
unpack_context(const char *packed, KgContext *ctx)
{
	const char *cursor = packed;
	char		serial[17];		/* 16 hex digits */
	char	   *serial_end;

	return unpack_field(&cursor, ctx->tenant, sizeof(ctx->tenant)) &&
		unpack_field(&cursor, ctx->actor, sizeof(ctx->actor)) &&
		unpack_field(&cursor, ctx->request_id, sizeof(ctx->request_id)) &&
		unpack_field(&cursor, ctx->reason, sizeof(ctx->reason)) &&
		unpack_field(&cursor, ctx->api_key, sizeof(ctx->api_key)) &&
		unpack_field(&cursor, ctx->api_key_write, sizeof(ctx->api_key_write)) &&
		unpack_field(&cursor, ctx->read_only, sizeof(ctx->read_only)) &&
		unpack_field(&cursor, serial, sizeof(serial)) &&
		*cursor == '\0' &&
		(ctx->serial = strtou64(serial, &serial_end, 16)) != 0 &&
		*serial_end == '\0';
}

/* The context's fields, separated, for keys_guard.context ("" for none). */
static char *
pack_context(const KgContext *ctx)
{
	StringInfoData buf;
	const char *fields[7];		/* then the serial */

	if (ctx == NULL)
		return pstrdup("");
	fields[0] = ctx->tenant;
	fields[1] = ctx->actor;
	fields[2] = ctx->request_id;
	fields[3] = ctx->reason;
	fields[4] = ctx->api_key;
	fields[5] = ctx->api_key_write;
	fields[6] = ctx->read_only;
	initStringInfo(&buf);
	for (int i = 0; i < lengthof(fields); i++)
	{
		appendStringInfoString(&buf, fields[i]);
		appendStringInfoChar(&buf, KG_CONTEXT_SEPARATOR);
	}
	appendStringInfo(&buf, "%" INT64_MODIFIER "x", ctx->serial);
	return buf.data;
}

/* Write ctx (or nothing) into keys_guard.context, in the transaction's scope. */
static void
write_context_setting(const KgContext *ctx)
{
	char	   *packed = pack_context(ctx);

	setting_context = true;
	PG_TRY();
	{
		(void) set_config_option("keys_guard.context", packed,
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, ERROR, false);
	}
	PG_FINALLY();
	{
		setting_context = false;
	}
	PG_END_TRY();
	pfree(packed);
}

/* Copy value (NULL: empty) into dst; false if it does not fit or holds the separator. */
static kg_hot bool
copy_field(char *dst, size_t size, const char *value)
{
	size_t		len = value ? strlen(value) : 0;

	if (len >= size || (len > 0 && memchr(value, KG_CONTEXT_SEPARATOR, len) != NULL))
		return false;
	memcpy(dst, value ? value : "", len);
	dst[len] = '\0';
	return true;
}

static KgContext *
context_ref(KgContext *ctx)
{
	if (ctx != NULL)
		ctx->refcount++;
	return ctx;
}

static void
context_unref(KgContext *ctx)
{
	if (ctx != NULL && --ctx->refcount == 0)
		pfree(ctx);
}

/*
 * Make ctx (a new context, or NULL for none) the context in force, in the
 * scope of a SET LOCAL (is_local) or a SET at the current transaction
 * level.  Nothing here can fail once the level's record exists.
 */
static void
prepare_context_level(void)
{
	int			level = GetCurrentTransactionNestLevel();

	Assert(level >= 1);
	Assert(kg_hot_state.context_levels == NULL ||
		   kg_hot_state.context_levels->nest_level <= level);
	if (kg_hot_state.context_levels == NULL ||
		kg_hot_state.context_levels->nest_level != level)
	{
		ContextLevel *entry = MemoryContextAllocZero(TopMemoryContext, sizeof(ContextLevel));

		/* Until the level changes something, its end changes nothing. */
		entry->nest_level = level;
		entry->prior = context_ref((KgContext *) kg_hot_state.context);
		entry->below = kg_hot_state.context_levels;
		kg_hot_state.context_levels = entry;
	}
}

/*
 * A new context with these fields.  Each was checked by its caller (a
 * tenant id's alphabet, the other fields' length and lack of control
 * characters); a field that does not fit is a bug.
 */
static KgContext *
new_context(const char *tenant, const char *actor, const char *request_id,
			const char *reason, const char *api_key, bool api_key_write,
			bool read_only)
{
	/* Not zeroed: 1.3 kB, every field set below. */
	KgContext  *ctx = MemoryContextAlloc(TopMemoryContext, sizeof(KgContext));

	if (!copy_field(ctx->tenant, sizeof(ctx->tenant), tenant) ||
		!copy_field(ctx->actor, sizeof(ctx->actor), actor) ||
		!copy_field(ctx->request_id, sizeof(ctx->request_id), request_id) ||
		!copy_field(ctx->reason, sizeof(ctx->reason), reason) ||
		!copy_field(ctx->api_key, sizeof(ctx->api_key), api_key))
	{
		pfree(ctx);
		elog(ERROR, "keys_guard context field does not fit");
	}
	strcpy(ctx->api_key_write, api_key_write ? "w" : "");
	strcpy(ctx->read_only, read_only ? "r" : "");
	ctx->serial = ++context_serial_counter;
	ctx->deferred_schema = InvalidOid;
	ctx->deferred_base_hash = 0;
	ctx->deferred_local = false;
	ctx->checked_generation = 0;
	ctx->refcount = 0;
	return ctx;
}

/*
 * Make ctx (a new context, or NULL for none) the context in force, in the
 * scope of a SET LOCAL (is_local) or a SET, at the level
 * prepare_context_level() made ready.  Cannot fail.
 */
static void
put_context(KgContext *ctx, bool is_local)
{
	KgContext  *previous = (KgContext *) kg_hot_state.context;

	Assert(kg_hot_state.context_levels != NULL &&
		   kg_hot_state.context_levels->nest_level == GetCurrentTransactionNestLevel());
	if (!is_local)
	{
		context_ref(ctx);
		context_unref(kg_hot_state.context_levels->kept);
		kg_hot_state.context_levels->kept = ctx;
		kg_hot_state.context_levels->has_kept = true;
	}
	set_current_context(context_ref(ctx));
	context_unref(previous);
	publish_context_serial();
	kg_note_filter_state();
}

/* End the newest level: taken back, or merged into the level below it. */
static void
end_context_level(bool commit)
{
	ContextLevel *entry = kg_hot_state.context_levels;
	ContextLevel *below = entry->below;
	KgContext  *previous = (KgContext *) kg_hot_state.context;

	kg_hot_state.context_levels = below;
	if (!commit)
	{
		set_current_context(entry->prior);	/* its reference moves */
		context_unref(previous);
		context_unref(entry->kept);
	}
	else if (below != NULL && below->nest_level == entry->nest_level - 1)
	{
		context_unref(entry->prior);
		if (entry->has_kept)
		{
			context_unref(below->kept);
			below->kept = entry->kept;
			below->has_kept = true;
		}
	}
	else
	{
		/* The level below changed nothing: this one takes its place. */
		entry->nest_level--;
		entry->below = below;
		kg_hot_state.context_levels = entry;
		return;
	}
	pfree(entry);
}

/*
 * Subtransaction end: its changes are taken back, or become the parent's.
 * In a parallel worker, which changes nothing, there are none.
 */
void
kg_context_subxact_event(SubXactEvent event)
{
	int			level;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	level = GetCurrentTransactionNestLevel();
	while (kg_hot_state.context_levels != NULL &&
		   kg_hot_state.context_levels->nest_level > level)
		end_context_level(false);	/* cannot happen: deeper levels ended first */
	if (kg_hot_state.context_levels != NULL &&
		kg_hot_state.context_levels->nest_level == level)
	{
		end_context_level(event == SUBXACT_EVENT_COMMIT_SUB);
		publish_context_serial();
		kg_note_filter_state();
	}
}

/*
 * Transaction end: a rollback brings back the context in force before it;
 * a commit (or PREPARE TRANSACTION) keeps the newest session-wide context
 * the transaction set, if it set one, and ends the transaction-scoped ones.
 */
static pg_noinline void
end_transaction_levels(bool commit)
{
	KgContext  *previous;
	ContextLevel *entry;

	while (kg_hot_state.context_levels->below != NULL)
		end_context_level(commit);
	entry = kg_hot_state.context_levels;
	kg_hot_state.context_levels = NULL;
	previous = (KgContext *) kg_hot_state.context;
	if (commit && entry->has_kept)
	{
		set_current_context(entry->kept);	/* its reference moves */
		context_unref(entry->prior);
	}
	else
	{
		set_current_context(entry->prior);	/* its reference moves */
		context_unref(entry->kept);
	}
	context_unref(previous);
	pfree(entry);
	publish_context_serial();
	kg_note_filter_state();
}

/*
 * hooks.c calls, after keys_guard's other transaction callbacks: they may
 * still read the transaction's context.
 */
kg_statement_path void
kg_context_xact_event(XactEvent event)
{
	if ((event == XACT_EVENT_COMMIT || event == XACT_EVENT_PREPARE ||
		 event == XACT_EVENT_ABORT) && kg_hot_state.context_levels != NULL)
		end_transaction_levels(event != XACT_EVENT_ABORT);
}

/*
 * An identity of the context in force, unique in this backend's life, or
 * NULL when there is none.
 */
uint64
kg_context_serial(void)
{
	return kg_hot_state.context ? kg_hot_state.context->serial : 0;
}

static void
reject_direct_setting(void)
{
	GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
	GUC_check_errmsg("keys_guard context parameters cannot be set directly");
	GUC_check_errhint("Use keys_guard.set_context() or keys_guard.admin_context().");
}

/*
 * Check hook of keys_guard.context: a value only from this file, or when a
 * parallel worker copies its leader's settings.  Every other write is
 * refused, clearing included, since clearing the setting would not end
 * the context (clear_context() does).
 */
bool
kg_check_context(char **newval, void **extra, GucSource source)
{
	KgContext  *ctx;

	if (!setting_context && !InitializingParallelWorker &&
		!(source == PGC_S_DEFAULT && !is_set(*newval)))
	{
		reject_direct_setting();
		return false;
	}
	if (!is_set(*newval))
	{
		*extra = NULL;
		return true;
	}
	/* The GUC machinery frees an extra with free(), so it comes from malloc. */
	ctx = malloc(sizeof(KgContext));
	if (ctx == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	memset(ctx, 0, sizeof(KgContext));
	if (!unpack_context(*newval, ctx))
	{
		free(ctx);
		GUC_check_errdetail("The keys_guard context value is malformed.");
		return false;
	}
	*extra = ctx;
	return true;
}

/*
 * Cached plans of guarded tables carry the tenant and soft-delete filters
 * unless they were made under an admin context, bypass, include_deleted or
 * one of keys_guard's own operations, each of which leaves out a different
 * filter.  Whenever the set of filters left out changes, every cached plan
 * of this backend is invalidated, so no plan is ever reused under a state
 * it was not made for (a foreign-key lookup planned to hide soft-deleted
 * rows is not reused by a soft-delete cascade, which must see them).
 * Tenant-to-tenant switches need no replanning: the filter reads the
 * current tenant at execution.
 */
kg_hot void
kg_note_filter_state(void)
{
	int			state = 0;

	if (kg_hot_state.context && kg_hot_state.context->reason[0])
		state |= KG_PLANS_ADMIN;
	if (keys_guard_bypass)
		state |= KG_PLANS_BYPASS;
	if (kg_filters_relaxed_span())
		state |= KG_PLANS_KEYS_GUARD;
	if (keys_guard_include_deleted)
		state |= KG_PLANS_INCLUDE_DELETED;
	if (state != plans_filter_state)
	{
		plans_filter_state = state;
		ResetPlanCache();
	}
}

/*
 * Assign hook of keys_guard.context.  A parallel worker takes its leader's
 * context from it; in any other backend it only carries the context to
 * workers, and this notes which one it holds now.
 */
void
kg_assign_context(const char *newval, void *extra)
{
	const KgContext *ctx = (const KgContext *) extra;

	if (InitializingParallelWorker || IsParallelWorker())
	{
		/* Only the context the leader has in force; else none. */
		if (ctx != NULL &&
			(context_serials == NULL || ParallelLeaderBackendId == InvalidBackendId ||
			 ParallelLeaderBackendId > MaxBackends ||
			 pg_atomic_read_u64(&context_serials[ParallelLeaderBackendId].serial) != ctx->serial))
			ctx = NULL;
		set_current_context(ctx);
		kg_note_filter_state();
		return;
	}
	mirrored_serial = ctx ? ctx->serial : 0;
}

/*
 * Before a statement with a parallel plan starts (ExecutorStart, before
 * parallel mode): keys_guard.context holds the context in force, for the
 * workers.  Written in the transaction's scope, so that it ends with the
 * transaction and a ROLLBACK TO takes it back with the context.
 */
void
kg_context_before_parallel_plan(void)
{
	if ((kg_hot_state.context ? kg_hot_state.context->serial : 0) == mirrored_serial)
		return;
	write_context_setting(kg_hot_state.context);
}

void
kg_assign_bypass(bool newval, void *extra)
{
	keys_guard_bypass = newval;
	kg_note_filter_state();
}

/*
 * Check hook of the show-only settings keys_guard.tenant, .actor,
 * .request_id and .admin_reason: they display the context and can never be
 * set.
 */
bool
kg_check_shown_setting(char **newval, void **extra, GucSource source)
{
	if (!is_set(*newval) || InitializingParallelWorker)
		return true;
	reject_direct_setting();
	return false;
}

const char *
kg_show_tenant(void)
{
	return kg_hot_state.context ? kg_hot_state.context->tenant : "";
}

const char *
kg_show_actor(void)
{
	return kg_hot_state.context ? kg_hot_state.context->actor : "";
}

const char *
kg_show_request_id(void)
{
	return kg_hot_state.context ? kg_hot_state.context->request_id : "";
}

const char *
kg_show_admin_reason(void)
{
	return kg_hot_state.context ? kg_hot_state.context->reason : "";
}

/*
 * The mode that governs the current statement.  Bypass counts only for the
 * roles docs/contract.md §3 names: superusers and BYPASSRLS roles.
 */
kg_hot KgMode
kg_current_mode(void)
{
	if (keys_guard_bypass &&
		(superuser() || has_bypassrls_privilege(GetUserId())))
		return KG_MODE_BYPASS;
	if (kg_hot_state.context == NULL)
		return KG_MODE_NONE;
	if (kg_hot_state.context->reason[0])
		return KG_MODE_ADMIN;
	if (kg_hot_state.context->tenant[0])
		return KG_MODE_TENANT;
	return KG_MODE_NONE;
}

kg_hot const char *
kg_current_tenant(void)
{
	const KgContext *ctx = kg_hot_state.context;

	return ctx && ctx->tenant[0] ? ctx->tenant : NULL;
}

const char *
kg_current_actor(void)
{
	const KgContext *ctx = kg_hot_state.context;

	return ctx && ctx->actor[0] ? ctx->actor : NULL;
}

const char *
kg_current_request_id(void)
{
	const KgContext *ctx = kg_hot_state.context;

	return ctx && ctx->request_id[0] ? ctx->request_id : NULL;
}

const char *
kg_current_admin_reason(void)
{
	const KgContext *ctx = kg_hot_state.context;

	return ctx && ctx->reason[0] ? ctx->reason : NULL;
}

/*
 * The API key the current context was obtained with (its id as text), or
 * NULL; *can_write says whether that key may change data.
 */
const char *
kg_context_api_key(bool *can_write)
{
	if (kg_hot_state.context == NULL || kg_hot_state.context->api_key[0] == '\0')
	{
		if (can_write)
			*can_write = false;
		return NULL;
	}
	if (can_write)
		*can_write = kg_hot_state.context->api_key_write[0] == 'w';
	return kg_hot_state.context->api_key;
}

/*
 * Whether the context in force was obtained with a token that has no
 * "write" scope: then nothing may change (keyholder.c), in any session,
 * its parallel workers included (they have the leader's context, and
 * prepare the calls of the PL/pgSQL bodies they run themselves).
 */
kg_hot bool
kg_context_read_only(void)
{
	return kg_hot_state.context != NULL && kg_hot_state.context->read_only[0] == 'r';
}

static void
require_preloaded(void)
{
	if (!keys_guard_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("keys_guard must be loaded via shared_preload_libraries"),
				 errhint("Add keys_guard to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* True if the current user has the privileges of the named role. */
static bool
has_role(const char *rolename)
{
	Oid			roleid = kg_role_oid(rolename);

	return OidIsValid(roleid) && has_privs_of_role(GetUserId(), roleid);
}

bool
kg_has_role(const char *rolename)
{
	return has_role(rolename);
}

void
kg_require_preloaded(void)
{
	require_preloaded();
}

/*
 * A member of keys_guard_keyholder (an AI tool's or MCP server's login)
 * obtains a context only by presenting an API key, whatever other roles it
 * was granted (docs/contract.md §15).  Superusers, who have the privileges
 * of every role, are not counted as keyholders.  Both the current user and
 * the session user count: a keyholder session must not get a context
 * through a SECURITY DEFINER function of a gateway role that calls
 * set_context() for it.
 */
kg_hot void
kg_refuse_keyholder(const char *funcname)
{
	Oid			roleid;

	roleid = kg_role_oid(KG_ROLE_KEYHOLDER);
	if (!OidIsValid(roleid))
		return;
	if ((is_member_of_role_nosuper(GetUserId(), roleid) && !superuser()) ||
		kg_keyholder_session())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to call %s()", funcname),
				 errdetail("Members of %s obtain a context only with keys_guard.use_api_key().",
						   KG_ROLE_KEYHOLDER)));
}

/*
 * Argument access with the NULL rule of docs/contract.md: a required NULL is 22004.
 */
kg_hot char *
kg_required_text_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * Who acts now, for the registries' records (who created, consented to or
 * revoked a key): the session user, the current user if it differs, and
 * the context's actor if there is one.
 */
char *
kg_acting_person(void)
{
	const char *session = GetUserNameFromId(GetSessionUserId(), false);
	const char *current = GetUserNameFromId(GetUserId(), false);
	const char *actor = kg_current_actor();
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, session);
	if (strcmp(session, current) != 0)
		appendStringInfo(&buf, " as %s", current);
	if (actor)
		appendStringInfo(&buf, " (actor %s)", actor);
	return buf.data;
}

/*
 * An actor, request id or reason: non-empty, bounded, printable.  These
 * values reach the server log and the audit log, so control characters
 * (which could forge log lines) are refused.  The value itself is not
 * echoed: it is caller-supplied and may be long.
 */
static kg_hot void
validate_context_text(const char *argname, const char *value, int maxlen)
{
	const unsigned char *p;

	if (value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname)));
	if (strlen(value) > (size_t) maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", argname),
				 errdetail("The limit is %d bytes.", maxlen)));
	for (p = (const unsigned char *) value; *p; p++)
	{
		if (*p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not contain control characters", argname)));
	}
}

/* True if id has the shape docs/contract.md §4 gives tenant ids. */
kg_hot bool
kg_tenant_id_is_valid(const char *id)
{
	size_t		len = strlen(id);
	size_t		i;

	if (len < 1 || len > KG_TENANT_ID_MAXLEN)
		return false;
	for (i = 0; i < len; i++)
	{
		char		c = id[i];
		bool		alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '_' && c != '-')))
			return false;
	}
	return true;
}

/*
 * Look up an active tenant for a new context; every failure is an error
 * and nothing is changed.
 */
static KgTenant *
context_tenant(const char *id)
{
	KgTenant   *tenant;

	if (!kg_tenant_id_is_valid(id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant id"),
				 errdetail("A tenant id is 1 to %d lower-case letters, digits, \"_\" or \"-\", starting with a letter or a digit.",
						   KG_TENANT_ID_MAXLEN)));
	if (!kg_extension_active())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"keys_guard\" is not installed in this database")));
	kg_require_complete_extension();
	tenant = kg_tenant_by_id(id);
	if (tenant == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tenant \"%s\" does not exist", id),
				 errhint("Create it with keys_guard.create_tenant().")));
	if (!OidIsValid(tenant->nspoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("schema of tenant \"%s\" does not exist", id)));
	if (!tenant->active)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("tenant \"%s\" is deleted", id),
				 errdetail("The tenant is pending deletion; its data cannot be accessed."),
				 errhint("An administrator can bring it back with keys_guard.restore_tenant().")));
	return tenant;
}

/* The low "digits" hex digits of word at p, most significant first. */
static inline void
put_hex(char *p, uint64 word, int digits)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = digits - 1; i >= 0; i--)
	{
		p[i] = hex[word & 0xF];
		word >>= 4;
	}
}

/*
 * A random (version 4) UUID in canonical text form.  Request ids correlate
 * log lines; they need to be unique, not unpredictable, so the backend's
 * (securely seeded) PRNG serves, which keeps set_context() cheap.
 */
static kg_hot char *
generate_request_id(void)
{
	uint64		hi = pg_prng_uint64(&pg_global_prng_state);
	uint64		lo = pg_prng_uint64(&pg_global_prng_state);
	char	   *result = palloc(37);

	hi = (hi & UINT64CONST(0xFFFFFFFFFFFF0FFF)) | UINT64CONST(0x0000000000004000);
	lo = (lo & UINT64CONST(0x3FFFFFFFFFFFFFFF)) | UINT64CONST(0x8000000000000000);
	/* 8-4-4-4-12 hex digits, most significant first */
	put_hex(result, hi >> 32, 8);
	result[8] = '-';
	put_hex(result + 9, hi >> 16, 4);
	result[13] = '-';
	put_hex(result + 14, hi, 4);
	result[18] = '-';
	put_hex(result + 19, lo >> 48, 4);
	result[23] = '-';
	put_hex(result + 24, lo, 12);
	result[36] = '\0';
	return result;
}

/*
 * The current search_path without any tenant schema, as text; tenant
 * schemas belong on the path only while their context lasts.  Remembered
 * for the last path seen until the registry changes, since every request
 * asks and the answer is nearly always the same.
 */
static char *clean_path_input = NULL;
static char *clean_path = NULL;
static uint64 clean_path_generation = 0;
static uint64 clean_path_builds = 0;	/* counts the builds of clean_path */

static const char *
search_path_without_tenants(void)
{
	char	   *raw;
	List	   *elems;
	ListCell   *lc;
	StringInfoData buf;
	uint64		generation;

	if (clean_path != NULL &&
		clean_path_generation == kg_registry_generation() &&
		strcmp(clean_path_input, namespace_search_path) == 0)
		return clean_path;

	/*
	 * The registry as of now: the lookups below may take in invalidations,
	 * and the answer is remembered under the generation it started from, so
	 * that a change that arrives part-way is seen by the next call.
	 */
	(void) kg_extension_active();
	generation = kg_registry_generation();
	initStringInfo(&buf);
	raw = pstrdup(namespace_search_path);
	if (!SplitIdentifierString(raw, ',', &elems))
		appendStringInfoString(&buf, namespace_search_path);
	else
	{
		foreach(lc, elems)
		{
			char	   *name = (char *) lfirst(lc);
			Oid			nspoid = get_namespace_oid(name, true);

			if (OidIsValid(nspoid) && kg_tenant_by_namespace(nspoid) != NULL)
				continue;
			if (buf.len > 0)
				appendStringInfoString(&buf, ", ");
			appendStringInfoString(&buf, quote_identifier(name));
		}
	}

	if (clean_path != NULL)
	{
		pfree(clean_path_input);
		pfree(clean_path);
	}
	clean_path_input = MemoryContextStrdup(TopMemoryContext, namespace_search_path);
	clean_path = MemoryContextStrdup(TopMemoryContext, buf.data);
	clean_path_generation = generation;
	clean_path_builds++;
	return clean_path;
}

/* schema (quoted) first, then the rest of a path. */
static char *
prepend_schema(const char *schema, const char *rest)
{
	const char *quoted = quote_identifier(schema);
	size_t		quoted_len = strlen(quoted);
	size_t		rest_len = strlen(rest);
	char	   *path;

	if (rest_len == 0)
		return pstrdup(quoted);
	/* "<schema>, <rest>", built by hand: every request pays for it. */
	path = palloc(quoted_len + 2 + rest_len + 1);
	memcpy(path, quoted, quoted_len);
	memcpy(path + quoted_len, ", ", 2);
	memcpy(path + quoted_len + 2, rest, rest_len + 1);
	return path;
}

/*
 * The search_path with a tenant's schema first, then clean_path, for the
 * last TENANT_PATH_SLOTS tenants: a schema-per-tenant deployment builds
 * one at every request, from the schema's name (a catalog lookup) quoted.
 * Kept while clean_path is the same build and the registry's generation
 * the same (a schema renamed or dropped changes it).
 */
#define TENANT_PATH_SLOTS 16

static struct
{
	Oid			nspoid;
	char	   *path;
}			tenant_paths[TENANT_PATH_SLOTS];
static int	tenant_paths_used = 0;
static int	tenant_paths_next = 0;
static uint64 tenant_paths_builds = 0;
static uint64 tenant_paths_generation = 0;

static const char *
tenant_search_path(Oid nspoid, const char *rest)
{
	uint64		generation = kg_registry_generation();
	char	   *schema;
	char	   *path;

	if (tenant_paths_builds != clean_path_builds ||
		tenant_paths_generation != generation)
	{
		for (int i = 0; i < tenant_paths_used; i++)
			pfree(tenant_paths[i].path);
		tenant_paths_used = tenant_paths_next = 0;
		tenant_paths_builds = clean_path_builds;
		tenant_paths_generation = generation;
	}
	for (int i = 0; i < tenant_paths_used; i++)
		if (tenant_paths[i].nspoid == nspoid)
			return tenant_paths[i].path;

	schema = get_namespace_name(nspoid);
	if (schema == NULL)
		return rest;
	path = prepend_schema(schema, rest);
	/* A lookup that took in an invalidation: not kept. */
	if (kg_registry_generation() != generation)
		return path;
	path = MemoryContextStrdup(TopMemoryContext, path);
	if (tenant_paths_used < TENANT_PATH_SLOTS)
		tenant_paths_next = tenant_paths_used++;
	else
		pfree(tenant_paths[tenant_paths_next].path);
	tenant_paths[tenant_paths_next].nspoid = nspoid;
	tenant_paths[tenant_paths_next].path = path;
	tenant_paths_next = (tenant_paths_next + 1) % TENANT_PATH_SLOTS;
	return path;
}

/*
 * Write the context and, if asked, the search_path in one scope: tenant
 * schemas come off the path and the schema tenant_nspoid (if valid) goes
 * first.  A context cannot change in a parallel operation (a worker has
 * its leader's, and the leader's must stay the one its workers have).
 *
 * A tenant schema that holds nothing is left off: it would change no
 * name's resolution, and any change of search_path makes PostgreSQL replan
 * every cached statement it next runs, so a deployment whose tables are
 * all pooled never pays for schema switching.  The context remembers it
 * (KgContext.deferred_schema, restored with the context by a ROLLBACK TO),
 * and the path it would have had is put in place as soon as it matters:
 * before a utility statement (CREATE without a schema lands in the
 * tenant's schema), and after any statement once the schema holds
 * something.  A statement analyzed while the schema gained its first
 * object in another session is refused, to be run again
 * (kg_context_check_analyzed()).
 */
static kg_hot void
apply_context(const char *tenant, const char *actor, const char *request_id,
			  const char *reason, const char *api_key, bool api_key_write,
			  bool read_only, Oid tenant_nspoid, bool is_local,
			  bool touch_search_path)
{
	const char *path = NULL;
	Oid			deferred = InvalidOid;
	KgContext  *ctx = NULL;

	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot set a keys_guard context during a parallel operation")));

	/*
	 * A security-restricted operation (an index build, ANALYZE, REFRESH
	 * MATERIALIZED VIEW, CLUSTER, VACUUM) runs the table owner's code and
	 * takes back every setting that code changed even when it succeeds;
	 * the context, kept by transaction level, would outlive it.
	 */
	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot change the keys_guard context within security-restricted operation")));
	if (touch_search_path)
	{
		const char *rest = search_path_without_tenants();

		if (!OidIsValid(tenant_nspoid))
			path = rest;
		else if (!kg_schema_has_objects(tenant_nspoid))
		{
			deferred = tenant_nspoid;
			path = rest;
		}
		else
			path = tenant_search_path(tenant_nspoid, rest);
		if (strcmp(path, namespace_search_path) == 0 && is_local)
			path = NULL;
	}

	/* A parallel worker must never see the context this one replaces. */
	if (mirrored_serial != 0)
		write_context_setting(NULL);

	prepare_context_level();
	if (tenant || actor || request_id || reason)
		ctx = new_context(tenant, actor, request_id, reason, api_key,
						  api_key && api_key_write, read_only);
	put_context(ctx, is_local);

	/* Taken back with the context if this fails. */
	if (path != NULL)
		(void) set_config_option("search_path", path,
								 PGC_USERSET, PGC_S_SESSION,
								 is_local ? GUC_ACTION_LOCAL : GUC_ACTION_SET,
								 true, ERROR, false);

	if (OidIsValid(deferred) && ctx != NULL)
	{
		ctx->deferred_schema = deferred;
		ctx->deferred_base_hash = path_hash(namespace_search_path);
		ctx->deferred_local = is_local;
		ctx->checked_generation = kg_schema_contents_generation();
	}
}

/* A hash of a search_path value. */
static uint32
path_hash(const char *path)
{
	return hash_bytes((const unsigned char *) path, strlen(path));
}

/*
 * The current context's left-off tenant schema, if search_path is still
 * the one it was left with (the caller's own SET search_path, or a
 * function's, since then is left alone).
 */
static Oid
pending_schema(void)
{
	if (kg_hot_state.context == NULL ||
		!OidIsValid(kg_hot_state.context->deferred_schema) ||
		!IsTransactionState() ||
		path_hash(namespace_search_path) != kg_hot_state.context->deferred_base_hash)
		return InvalidOid;
	return kg_hot_state.context->deferred_schema;
}

/* Put the left-off schema first now, in the scope of the context. */
static void
apply_pending_schema(Oid nspoid)
{
	char	   *schema = get_namespace_name(nspoid);

	if (schema == NULL)
		return;
	(void) set_config_option("search_path", prepend_schema(schema, namespace_search_path),
							 PGC_USERSET, PGC_S_SESSION,
							 kg_hot_state.context->deferred_local ?
							 GUC_ACTION_LOCAL : GUC_ACTION_SET,
							 true, ERROR, false);
}

/*
 * Before a utility statement (ProcessUtility_hook): CREATE without a
 * schema, SHOW search_path and the like see the tenant's schema.
 * Transaction control, SET, EXECUTE, DEALLOCATE, DISCARD, CALL and DO
 * create nothing and show nothing themselves.
 */
kg_hot void
kg_context_before_utility(PlannedStmt *pstmt)
{
	Oid			nspoid;

	switch (nodeTag(pstmt->utilityStmt))
	{
		case T_TransactionStmt:
		case T_VariableSetStmt:
		case T_ExecuteStmt:
		case T_DeallocateStmt:
		case T_DiscardStmt:
		case T_CallStmt:
		case T_DoStmt:
			return;
		default:
			break;
	}
	if (OidIsValid(nspoid = pending_schema()))
		apply_pending_schema(nspoid);

	/* An index build (CREATE INDEX, REINDEX, CLUSTER ...) may start workers. */
	if (!IsParallelWorker())
		kg_context_before_parallel_plan();
}

/*
 * After a statement (ExecutorEnd, ProcessUtility): if the left-off schema
 * holds something now (a function with its own search_path created it, or
 * another session did), it goes first for the statements that follow.
 */
kg_hot void
kg_context_after_statement(void)
{
	Oid			nspoid;
	KgContext  *ctx;

	if (kg_hot_state.context == NULL ||
		!OidIsValid(kg_hot_state.context->deferred_schema) ||
		kg_hot_state.context->checked_generation == kg_schema_contents_generation())
		return;
	if (!OidIsValid(nspoid = pending_schema()))
		return;
	ctx = (KgContext *) kg_hot_state.context;
	if (kg_schema_has_objects(nspoid))
		apply_pending_schema(nspoid);
	else
		ctx->checked_generation = kg_schema_contents_generation();
}

/*
 * After a utility statement (ProcessUtility): DISCARD ALL and RESET ALL,
 * which a session-pooling proxy runs between clients, end the context as
 * they end every setting: as clear_context() would.
 */
kg_hot void
kg_context_after_utility(PlannedStmt *pstmt)
{
	Node	   *stmt = pstmt->utilityStmt;

	if ((IsA(stmt, DiscardStmt) && ((DiscardStmt *) stmt)->target == DISCARD_ALL) ||
		(IsA(stmt, VariableSetStmt) && ((VariableSetStmt *) stmt)->kind == VAR_RESET_ALL))
	{
		if (kg_hot_state.context != NULL)
			apply_context(NULL, NULL, NULL, NULL, NULL, false, false, InvalidOid,
						  false, false);
		return;
	}
	kg_context_after_statement();
}

/*
 * Whether a relation the statement names, outside schema nspoid, has a
 * namesake in nspoid: with nspoid first on search_path, an unqualified
 * name would have resolved to that one.
 */
static bool
names_shadowed_relation(Node *node, void *arg)
{
	Oid			nspoid = *(Oid *) arg;

	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;
		ListCell   *lc;

		foreach(lc, query->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
			char	   *name;

			if (rte->rtekind != RTE_RELATION || get_rel_namespace(rte->relid) == nspoid)
				continue;
			name = get_rel_name(rte->relid);
			if (name != NULL && OidIsValid(get_relname_relid(name, nspoid)))
				return true;
		}
		return query_tree_walker(query, names_shadowed_relation, arg, 0);
	}
	return expression_tree_walker(node, names_shadowed_relation, arg);
}

/*
 * After parse analysis (post_parse_analyze_hook): the statement's names
 * were resolved without the left-off schema.  If that schema holds
 * something by now (another session committed its first object while the
 * context lasted), it goes first from this statement on; and if the
 * statement names a relation that the schema now has a namesake of, its
 * name may have resolved past the tenant's own, so it is refused (40001),
 * to be run again with the context set again.  (A utility statement
 * resolves its names when it runs, after kg_context_before_utility().)
 */
void
kg_context_check_analyzed(Query *query)
{
	Oid			nspoid;

	if (kg_hot_state.context == NULL ||
		!OidIsValid(kg_hot_state.context->deferred_schema) ||
		query->commandType == CMD_UTILITY)
		return;
	AcceptInvalidationMessages();
	if (kg_hot_state.context->checked_generation == kg_schema_contents_generation())
		return;
	if (!OidIsValid(nspoid = pending_schema()))
		return;
	if (!kg_schema_has_objects(nspoid))
	{
		((KgContext *) kg_hot_state.context)->checked_generation =
			kg_schema_contents_generation();
		return;
	}
	apply_pending_schema(nspoid);
	if (names_shadowed_relation((Node *) query, &nspoid))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("schema of tenant \"%s\" gained objects after the context was set",
						kg_hot_state.context->tenant),
				 errdetail("A relation the statement names has a namesake in the tenant's schema, which was not on search_path when the statement's names were resolved."),
				 errhint("Set the context again and run the statement again.")));
}

/*
 * Check hook of keys_guard.allow_session_context.  Turning it off is always
 * allowed.  The sources below a client's own (postgresql.conf, ALTER SYSTEM,
 * the stored ALTER ROLE / ALTER DATABASE ... SET values applied at
 * connection) are written only by superusers, since the setting is
 * PGC_SUSET.  From the client's own sources (connection options, SET,
 * set_config(), a function's SET clause, and the validation of a new
 * ALTER ROLE ... SET) it is accepted only from a superuser, so a role that
 * was granted SET on the parameter still cannot turn it on for itself.
 */
bool
kg_check_allow_session_context(bool *newval, void **extra, GucSource source)
{
	if (!*newval || source < PGC_S_CLIENT || InitializingParallelWorker)
		return true;
	if (IsTransactionState() && superuser())
		return true;
	GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
	GUC_check_errmsg("permission denied to set parameter \"keys_guard.allow_session_context\"");
	GUC_check_errdetail("Only a superuser can turn it on, in the server configuration or for a role with ALTER ROLE ... SET.");
	return false;
}

/*
 * A session-wide context (is_local => false) outlives its transaction, and
 * behind a transaction-pooling proxy the next client on the same server
 * connection would inherit it, tenant and actor included.  So it fails
 * closed: refused unless a superuser turned keys_guard.allow_session_context
 * on for this role.
 */
static void
require_session_context_allowed(bool is_local, const char *funcname)
{
	if (is_local || keys_guard_allow_session_context)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("session-wide keys_guard context not allowed"),
			 errdetail("A context set by %s() with is_local => false outlives the transaction; behind a transaction-pooling proxy the next client on the same server connection would inherit it.",
					   funcname),
			 errhint("Use is_local => true inside BEGIN ... COMMIT. For direct or session-pooled connections, a superuser can turn on keys_guard.allow_session_context for the role with ALTER ROLE ... SET.")));
}

/*
 * SET LOCAL's warning, for is_local outside a transaction block.  The fix
 * it suggests is a transaction block, never a session-wide context.
 */
static kg_hot void
warn_if_no_transaction_block(bool is_local, const char *funcname)
{
	if (is_local && !IsTransactionBlock())
		ereport(WARNING,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s() with is_local => true outside a transaction block lasts only until its implicit transaction ends", funcname),
				 errhint("Call it inside BEGIN ... COMMIT, together with the statements it is for.")));
}

static char *
optional_request_id(FunctionCallInfo fcinfo, int argno)
{
	char	   *request_id;

	if (PG_ARGISNULL(argno))
		return generate_request_id();
	request_id = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	validate_context_text("request_id", request_id, KG_REQUEST_ID_MAXLEN);
	return request_id;
}

/*
 * keys_guard.set_context(tenant, actor, request_id, is_local)
 */
PG_FUNCTION_INFO_V1(keys_guard_set_context);
kg_hot Datum
keys_guard_set_context(PG_FUNCTION_ARGS)
{
	char	   *tenant_id;
	char	   *actor;
	char	   *request_id;
	bool		is_local;
	KgTenant   *tenant;

	require_preloaded();
	/* Anyone may call it (EXECUTE is PUBLIC): who may is checked here. */
	if (!has_role("keys_guard_gateway") && !has_role("keys_guard_admin"))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to set a keys_guard context"),
				 errdetail("Only members of keys_guard_gateway or keys_guard_admin can set a context.")));
	kg_refuse_keyholder("set_context");

	tenant_id = kg_required_text_arg(fcinfo, 0, "tenant");
	actor = kg_required_text_arg(fcinfo, 1, "actor");
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("is_local must not be null")));
	is_local = PG_GETARG_BOOL(3);

	require_session_context_allowed(is_local, "set_context");
	tenant = context_tenant(tenant_id);
	validate_context_text("actor", actor, KG_ACTOR_MAXLEN);
	request_id = optional_request_id(fcinfo, 2);

	warn_if_no_transaction_block(is_local, "set_context");
	apply_context(tenant->id, actor, request_id, NULL, NULL, false, false, tenant->nspoid,
				  is_local, keys_guard_tenant_search_path);
	PG_RETURN_VOID();
}

/*
 * The transaction-scoped context of an API key (apikey.c has checked the
 * key): the key's tenant, an actor naming the key, a generated request id,
 * and the key itself with whether it may write.
 */
void
kg_apply_key_context(const char *tenant_id, const char *actor,
					 const char *key_id, bool can_write)
{
	KgTenant   *tenant = kg_tenant_by_id(tenant_id);
	Oid			nspoid = tenant != NULL ? tenant->nspoid : InvalidOid;

	if (!IsTransactionBlock())
		ereport(WARNING,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("use_api_key() outside a transaction block lasts only until its implicit transaction ends"),
				 errhint("Call it inside BEGIN ... COMMIT, together with the statements it is for.")));
	apply_context(tenant_id, actor, generate_request_id(), NULL, key_id, can_write,
				  false, nspoid, true, keys_guard_tenant_search_path);
}

/*
 * The transaction-scoped context of a verified token (token.c has checked
 * the token, the tenant's existence included): its tenant, its subject as
 * the actor, its request id or a generated one, and whether it is
 * read-only.
 */
void
kg_apply_token_context(const char *tenant_id, const char *actor,
					   const char *request_id, bool read_only)
{
	KgTenant   *tenant = kg_tenant_by_id(tenant_id);
	Oid			nspoid = tenant != NULL ? tenant->nspoid : InvalidOid;

	if (!IsTransactionBlock())
		ereport(WARNING,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("set_context_from_token() outside a transaction block lasts only until its implicit transaction ends"),
				 errhint("Call it inside BEGIN ... COMMIT, together with the statements it is for.")));
	apply_context(tenant_id, actor, request_id ? request_id : generate_request_id(),
				  NULL, NULL, false, read_only, nspoid, true,
				  keys_guard_tenant_search_path);
}

/*
 * keys_guard.admin_context(actor, reason, request_id, is_local): attributed
 * access to every tenant for members of keys_guard_admin.  The call is
 * audited at once, and so is every statement that touches guarded data
 * under it.
 */
PG_FUNCTION_INFO_V1(keys_guard_admin_context);
Datum
keys_guard_admin_context(PG_FUNCTION_ARGS)
{
	char	   *actor;
	char	   *reason;
	char	   *request_id;
	bool		is_local;
	KgAuditDetail *detail;

	require_preloaded();
	actor = kg_required_text_arg(fcinfo, 0, "actor");
	reason = kg_required_text_arg(fcinfo, 1, "reason");
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("is_local must not be null")));
	is_local = PG_GETARG_BOOL(3);

	kg_refuse_keyholder("admin_context");
	if (!has_role("keys_guard_admin"))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to set an admin context"),
				 errdetail("Only members of keys_guard_admin can act across tenants.")));

	require_session_context_allowed(is_local, "admin_context");
	validate_context_text("actor", actor, KG_ACTOR_MAXLEN);
	validate_context_text("reason", reason, KG_REASON_MAXLEN);
	request_id = optional_request_id(fcinfo, 2);

	warn_if_no_transaction_block(is_local, "admin_context");
	apply_context(NULL, actor, request_id, reason, NULL, false, false, InvalidOid, is_local, true);

	detail = kg_audit_detail();
	kg_audit_detail_text(detail, "reason", reason);
	kg_audit_detail_bool(detail, "is_local", is_local);
	kg_audit_enqueue("admin_context", NULL, KG_OUTCOME_OK, detail);
	PG_RETURN_VOID();
}

/*
 * keys_guard.clear_context(): anyone may give up a context.
 */
PG_FUNCTION_INFO_V1(keys_guard_clear_context);
Datum
keys_guard_clear_context(PG_FUNCTION_ARGS)
{
	require_preloaded();
	apply_context(NULL, NULL, NULL, NULL, NULL, false, false, InvalidOid, false, true);
	PG_RETURN_VOID();
}

static Datum
text_or_null(FunctionCallInfo fcinfo, const char *value)
{
	if (value == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(value));
}

PG_FUNCTION_INFO_V1(keys_guard_current_tenant);
kg_hot Datum
keys_guard_current_tenant(PG_FUNCTION_ARGS)
{
	return text_or_null(fcinfo, kg_current_tenant());
}

PG_FUNCTION_INFO_V1(keys_guard_current_actor);
Datum
keys_guard_current_actor(PG_FUNCTION_ARGS)
{
	return text_or_null(fcinfo, kg_current_actor());
}

PG_FUNCTION_INFO_V1(keys_guard_current_request_id);
Datum
keys_guard_current_request_id(PG_FUNCTION_ARGS)
{
	return text_or_null(fcinfo, kg_current_request_id());
}

/*
 * The current tenant as a uuid, for pooled tables keyed by uuid; NULL when
 * there is no context or the id is not a canonical UUID (then no row
 * matches).
 */
PG_FUNCTION_INFO_V1(keys_guard_current_tenant_uuid);
Datum
keys_guard_current_tenant_uuid(PG_FUNCTION_ARGS)
{
	const char *tenant = kg_current_tenant();
	int			i;

	if (tenant == NULL || strlen(tenant) != 36)
		PG_RETURN_NULL();
	for (i = 0; i < 36; i++)
	{
		bool		dash = (i == 8 || i == 13 || i == 18 || i == 23);
		char		c = tenant[i];

		if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			PG_RETURN_NULL();
	}
	return DirectFunctionCall1(uuid_in, CStringGetDatum(tenant));
}

/*
 * The current tenant as a bigint, for pooled tables keyed by bigint; NULL
 * when there is no context or the id is not a plain decimal number.
 */
PG_FUNCTION_INFO_V1(keys_guard_current_tenant_bigint);
Datum
keys_guard_current_tenant_bigint(PG_FUNCTION_ARGS)
{
	const char *tenant = kg_current_tenant();
	int64		value = 0;
	const char *p;

	if (tenant == NULL || strlen(tenant) > 18 || (tenant[0] == '0' && tenant[1] != '\0'))
		PG_RETURN_NULL();
	for (p = tenant; *p; p++)
	{
		if (*p < '0' || *p > '9')
			PG_RETURN_NULL();
		value = value * 10 + (*p - '0');
	}
	PG_RETURN_INT64(value);
}
