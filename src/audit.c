/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  Every write to keys_guard.audit_log (docs/contract.md §6, §10).
 *
 * A record is written one of two ways, and audit.c is the only code that
 * writes audit_log:
 *
 *	kg_audit_write()	in the current transaction, which it commits or
 *						rolls back with: state changes (tenants, guards,
 *						restores, purges; SQL scripts reach it through
 *						keys_guard._audit())
 *	kg_audit_enqueue()	through a queue in shared memory, so that the
 *						record survives a rollback: denials, admin-context
 *						and bypass use
 *
 * Both take the record's detail from one builder (kg_audit_detail() and
 * kg_audit_detail_text() and friends), which builds a jsonb object, so no
 * caller writes JSON by hand.  Both name the current context's tenant,
 * actor and request id.  A record written in the transaction without an
 * actor names the session user instead (whoever called the API); a queued
 * one leaves the actor empty then (a denial's detail names the role).  A
 * record of outcome "error" is keys_guard's worker reporting its own
 * failure (a purge that failed, records that were lost): it names the
 * actor "keys_guard worker", no tenant, and the request id of the work
 * that failed, if a request started it (kg_log_request_id: a tenant drop
 * after delete_tenant(), a purge of rows that requests deleted).  The
 * worker's other records carry that request id too.
 *
 * A denial raises an error, so anything it wrote to a table would roll back
 * with it.  That is what the queue is for: the background worker of the
 * database moves queued records into keys_guard.audit_log in its own
 * transactions.  Each denial is also written to the server log at once by
 * its caller.
 *
 * No record is turned away.  When the queue is full, the backend that
 * wants to add one wakes the workers and waits on a condition variable
 * until a worker has made room: a flood slows the flooder down to the pace
 * at which the worker writes, and the other sessions' records wait their
 * turn with it.  The wait is interruptible (cancel, statement_timeout,
 * terminate), and it never outlasts a queue that nobody drains: if no
 * record has left the queue for KG_AUDIT_STALL_MS (the worker cannot run,
 * or waits for a lock the waiting backend holds), the backend stops
 * waiting, logs the record as not queued, and counts it.  Records given up
 * that way, or whose wait was interrupted, are counted per database and
 * the worker writes the count into audit_log (action "audit_records_lost",
 * outcome "error"), so a gap is visible where the records should be.
 * A database that keys_guard.database excludes has no worker, so its
 * records are not queued (they would never leave): they stay in the server
 * log, which says so once per session.
 *
 * The worker takes records off the queue in batches and inserts each batch
 * with one statement (the same one kg_audit_write() uses for its single
 * record); it frees their slots only after the batch has committed, so a
 * failed or killed drain leaves them queued for the next.  Text fields are
 * clipped on a character boundary; a detail that does not fit is kept as a
 * clipped JSON string, never dropped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/backendid.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "keys_guard.h"

typedef enum KgAuditSlotState
{
	KG_SLOT_FREE = 0,
	KG_SLOT_QUEUED,				/* waits for the worker */
	KG_SLOT_TAKEN				/* in a worker's batch, not yet committed */
} KgAuditSlotState;

typedef struct KgAuditRecord
{
	KgAuditSlotState state;
	uint64		seq;
	Oid			dboid;
	TimestampTz at;
	KgAuditOutcome outcome;
	char		tenant[KG_TENANT_ID_MAXLEN + 1];
	char		actor[KG_ACTOR_MAXLEN + 1];
	char		request_id[KG_REQUEST_ID_MAXLEN + 1];
	char		action[32];
	char		target[384];	/* two quoted identifiers fit */
	char		detail[1024];
} KgAuditRecord;

/* Records of one database that never reached the queue. */
typedef struct KgAuditGap
{
	Oid			dboid;
	uint64		records;
} KgAuditGap;

#define KG_AUDIT_MAX_GAPS 64

typedef struct KgAuditQueue
{
	LWLock	   *lock;
	ConditionVariable room;		/* broadcast when slots are freed */
	uint64		next_seq;
	uint64		written;		/* records ever written: progress */
	int			capacity;
	int			used;
	int			free_hint;
	KgAuditGap	gaps[KG_AUDIT_MAX_GAPS];
	KgAuditRecord records[FLEXIBLE_ARRAY_MEMBER];
} KgAuditQueue;

static KgAuditQueue *queue = NULL;

/* API key windows: see "Windows" further down. */
#define KG_WINDOW_MS		1000
#define KG_WINDOW_GROUPS	8
#define KG_WINDOW_COMMAND	40
#define KG_WINDOW_RELATIONS 8
#define KG_WINDOW_PARTITIONS 16

typedef struct KgWindowGroup
{
	char		command[KG_WINDOW_COMMAND];
	int			nrelations;
	Oid			relations[KG_WINDOW_RELATIONS]; /* named when the window closes */
	int64		statements;
	int64		rows;
} KgWindowGroup;

typedef struct KgWindowKey
{
	Oid			dboid;
	char		key_id[KG_API_KEY_ID_TEXT_LEN + 1];
} KgWindowKey;

typedef struct KgKeyWindow
{
	KgWindowKey key;			/* hash key */
	TimestampTz opened;
	TimestampTz last;
	char		name[KG_API_KEY_NAME_MAXLEN + 1];	/* set by a use */
	bool		write;
	char		tenant[KG_TENANT_ID_MAXLEN + 1];
	char		actor[KG_ACTOR_MAXLEN + 1];
	char		first_request[KG_REQUEST_ID_MAXLEN + 1];
	char		last_request[KG_REQUEST_ID_MAXLEN + 1];
	bool		several_requests;
	int64		uses;
	int			ngroups;
	KgWindowGroup groups[KG_WINDOW_GROUPS];
} KgKeyWindow;

/* Open windows by database and key, in shared memory, in partitions. */
static HTAB *windows = NULL;
static LWLockPadded *window_locks = NULL;

/* Most records one drain writes in one transaction. */
#define KG_AUDIT_DRAIN_BATCH 1000

/* How long a full queue may make no progress before a backend gives up. */
#define KG_AUDIT_STALL_MS 30000

/* How often a waiting backend wakes the workers again. */
#define KG_AUDIT_REWAKE_MS 1000

/* Worker side: the slots of the batch in flight, and its gap count. */
static int	taken_slots[KG_AUDIT_DRAIN_BATCH];
static uint64 taken_seqs[KG_AUDIT_DRAIN_BATCH];
static int	ntaken = 0;
static uint64 taken_gap = 0;

/* Backend side: queue progress when this backend last gave up waiting. */
static bool gave_up = false;
static uint64 gave_up_at_written = 0;

static Size
queue_shmem_size(void)
{
	return add_size(offsetof(KgAuditQueue, records),
					mul_size(sizeof(KgAuditRecord), keys_guard_audit_queue_size));
}

#define KG_WINDOW_TRANCHE "keys_guard_api_key_windows"

/* At most two open windows per backend, on average. */
static long
windows_max(void)
{
	return 2L * MaxBackends;
}

static Size
windows_shmem_size(void)
{
	return hash_estimate_size(windows_max(), sizeof(KgKeyWindow));
}


Size
kg_audit_shmem_size(void)
{
	return add_size(queue_shmem_size(), windows_shmem_size());
}

void
kg_audit_shmem_init(void)
{
	bool		found;
	HASHCTL		info;

	queue = ShmemInitStruct("keys_guard audit queue", queue_shmem_size(), &found);
	if (!found)
	{
		memset(queue, 0, queue_shmem_size());
		queue->lock = &(GetNamedLWLockTranche("keys_guard"))->lock;
		ConditionVariableInit(&queue->room);
		queue->capacity = keys_guard_audit_queue_size;
		queue->next_seq = 1;
	}
	info.keysize = sizeof(KgWindowKey);
	info.entrysize = sizeof(KgKeyWindow);
	info.num_partitions = KG_WINDOW_PARTITIONS;
	windows = ShmemInitHash("keys_guard API key windows",
							windows_max(), windows_max(), &info,
							HASH_ELEM | HASH_BLOBS | HASH_PARTITION | HASH_FIXED_SIZE);
	window_locks = GetNamedLWLockTranche(KG_WINDOW_TRANCHE);
}

/* hooks.c calls, in shmem_request_hook: the locks of the API key windows. */
void
kg_audit_request_locks(void)
{
	RequestNamedLWLockTranche(KG_WINDOW_TRANCHE, KG_WINDOW_PARTITIONS);
}

/* Copy src into dst, clipped on a character boundary to fit. */
static void
clip_field(char *dst, size_t size, const char *src)
{
	int			len;

	if (src == NULL)
		src = "";
	len = strlen(src);
	if (len >= (int) size)
		len = pg_mbcliplen(src, len, size - 1);
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/*
 * The detail builder: a jsonb object, one key at a time.  A NULL text value
 * leaves its key out.  Once written (or queued), a detail is finished and
 * takes no more keys.
 */
struct KgAuditDetail
{
	JsonbParseState *state;
	Jsonb	   *done;
};

KgAuditDetail *
kg_audit_detail(void)
{
	KgAuditDetail *detail = palloc0(sizeof(KgAuditDetail));

	(void) pushJsonbValue(&detail->state, WJB_BEGIN_OBJECT, NULL);
	return detail;
}

static void
detail_add(KgAuditDetail *detail, const char *key, JsonbValue *value)
{
	JsonbValue	k;

	Assert(detail->done == NULL);
	k.type = jbvString;
	k.val.string.val = unconstify(char *, key);
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(&detail->state, WJB_KEY, &k);
	(void) pushJsonbValue(&detail->state, WJB_VALUE, value);
}

void
kg_audit_detail_text(KgAuditDetail *detail, const char *key, const char *value)
{
	JsonbValue	v;
	char	   *redacted;

	if (value == NULL)
		return;
	/* Never an API key secret (redact.c), whoever passed the value. */
	redacted = kg_redact_text(value);
	if (redacted != NULL)
		value = redacted;
	v.type = jbvString;
	v.val.string.val = unconstify(char *, value);
	v.val.string.len = strlen(value);
	detail_add(detail, key, &v);
}

void
kg_audit_detail_int(KgAuditDetail *detail, const char *key, int64 value)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(value);
	detail_add(detail, key, &v);
}

void
kg_audit_detail_bool(KgAuditDetail *detail, const char *key, bool value)
{
	JsonbValue	v;

	v.type = jbvBool;
	v.val.boolean = value;
	detail_add(detail, key, &v);
}

/* The finished detail; no detail at all is an empty object. */
static Jsonb *
detail_jsonb(KgAuditDetail *detail)
{
	if (detail == NULL)
		detail = kg_audit_detail();
	if (detail->done == NULL)
		detail->done = JsonbValueToJsonb(pushJsonbValue(&detail->state,
														WJB_END_OBJECT, NULL));
	return detail->done;
}

static char *
jsonb_text(Jsonb *jsonb)
{
	return JsonbToCString(NULL, &jsonb->root, VARSIZE(jsonb));
}

/*
 * Put the JSON text of a detail in a queue record: the text if it fits, else
 * an object that keeps as much of it as fits as a string, so the record
 * still reaches audit_log and still says what it can.
 */
static void
set_detail(char *dst, size_t size, const char *json)
{
	int			len = strlen(json);
	int			clip;

	if (len < (int) size)
	{
		memcpy(dst, json, len + 1);
		return;
	}
	clip = Min(len, (int) size);
	for (;;)
	{
		KgAuditDetail *truncated = kg_audit_detail();
		char	   *text;

		clip = pg_mbcliplen(json, len, clip);
		kg_audit_detail_bool(truncated, "truncated", true);
		kg_audit_detail_int(truncated, "length", len);
		kg_audit_detail_text(truncated, "text", pnstrdup(json, clip));
		text = jsonb_text(detail_jsonb(truncated));
		if (strlen(text) < size || clip == 0)
		{
			clip_field(dst, size, text);
			return;
		}
		clip = clip * 3 / 4;
	}
}

/* Put one record in a free slot; false if the queue is full. */
static bool
queue_put(const KgAuditRecord *rec, uint64 *written)
{
	int			i;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	*written = queue->written;
	for (i = 0; i < queue->capacity && queue->used < queue->capacity; i++)
	{
		int			slot = (queue->free_hint + i) % queue->capacity;
		KgAuditRecord *dst = &queue->records[slot];

		if (dst->state == KG_SLOT_FREE)
		{
			memcpy(dst, rec, sizeof(KgAuditRecord));
			dst->state = KG_SLOT_QUEUED;
			dst->seq = queue->next_seq++;
			queue->free_hint = (slot + 1) % queue->capacity;
			queue->used++;
			LWLockRelease(queue->lock);
			return true;
		}
	}
	LWLockRelease(queue->lock);
	return false;
}

/* Count records of a database that did not reach the queue. */
static void
add_gap(Oid dboid, uint64 records)
{
	KgAuditGap *free_gap = NULL;
	int			i;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < KG_AUDIT_MAX_GAPS; i++)
	{
		if (queue->gaps[i].dboid == dboid)
		{
			queue->gaps[i].records += records;
			LWLockRelease(queue->lock);
			return;
		}
		if (free_gap == NULL && queue->gaps[i].dboid == InvalidOid)
			free_gap = &queue->gaps[i];
	}
	if (free_gap)
	{
		free_gap->dboid = dboid;
		free_gap->records = records;
	}
	LWLockRelease(queue->lock);
}

static const char *
outcome_name(KgAuditOutcome outcome)
{
	switch (outcome)
	{
		case KG_OUTCOME_OK:
			return "ok";
		case KG_OUTCOME_DENIED:
			return "denied";
		case KG_OUTCOME_ERROR:
			return "error";
	}
	return "error";
}

/* Why a record did not reach the queue. */
typedef enum KgNotQueued
{
	KG_NOT_QUEUED_STALLED,		/* the queue is full and nobody drains it */
	KG_NOT_QUEUED_FULL,			/* the queue is full and the worker would wait for itself */
	KG_NOT_QUEUED_NO_WORKER		/* keys_guard.database leaves the database out */
} KgNotQueued;

#define NOT_QUEUED_DETAIL(rec) \
	errdetail_log("action=%s outcome=%s tenant=%s actor=%s request_id=%s target=%s detail=%s", \
				  (rec)->action, outcome_name((rec)->outcome), (rec)->tenant, (rec)->actor, \
				  (rec)->request_id, (rec)->target, (rec)->detail)

static void
report_not_queued(const KgAuditRecord *rec, KgNotQueued why)
{
	switch (why)
	{
		case KG_NOT_QUEUED_STALLED:
			ereport(LOG,
					(errmsg("keys_guard: audit record not written to keys_guard.audit_log: the audit queue is full and no worker drains it"),
					 NOT_QUEUED_DETAIL(rec),
					 errhint("Check that the keys_guard worker of this database is running; the count of such records goes to keys_guard.audit_log."),
					 errhidestmt(true),
					 errhidecontext(true)));
			break;
		case KG_NOT_QUEUED_FULL:
			ereport(LOG,
					(errmsg("keys_guard: audit record not written to keys_guard.audit_log: the audit queue is full"),
					 NOT_QUEUED_DETAIL(rec),
					 errhint("Consider raising keys_guard.audit_queue_size."),
					 errhidestmt(true),
					 errhidecontext(true)));
			break;
		case KG_NOT_QUEUED_NO_WORKER:
			ereport(LOG,
					(errmsg("keys_guard: audit record not written to keys_guard.audit_log: keys_guard.database does not name this database, so no worker serves it"),
					 NOT_QUEUED_DETAIL(rec),
					 errhint("Add the database to keys_guard.database; until then its audit records are in the server log only."),
					 errhidestmt(true),
					 errhidecontext(true)));
			break;
	}
}

/*
 * The queue is full: wake the workers and wait until one of them has made
 * room, interruptibly.  Gives up (logged and counted) only if the queue
 * makes no progress for KG_AUDIT_STALL_MS, and waits no more after that
 * until it has moved again, so a queue nobody drains slows each backend
 * once, not at every record.
 */
static void
wait_for_room(const KgAuditRecord *rec, uint64 written)
{
	TimestampTz progress_at = GetCurrentTimestamp();
	uint64		seen = written;
	bool		queued = false;

	if (gave_up && written == gave_up_at_written)
	{
		add_gap(rec->dboid, 1);
		report_not_queued(rec, KG_NOT_QUEUED_STALLED);
		return;
	}
	gave_up = false;

	ConditionVariablePrepareToSleep(&queue->room);
	PG_TRY();
	{
		for (;;)
		{
			TimestampTz now;

			kg_worker_wake_all(rec->dboid);
			(void) ConditionVariableTimedSleep(&queue->room, KG_AUDIT_REWAKE_MS,
											   PG_WAIT_EXTENSION);
			if (queue_put(rec, &written))
			{
				queued = true;
				break;
			}
			now = GetCurrentTimestamp();
			if (written != seen)
			{
				seen = written;
				progress_at = now;
			}
			else if (TimestampDifferenceExceeds(progress_at, now, KG_AUDIT_STALL_MS))
				break;
		}
	}
	PG_CATCH();
	{
		/* Interrupted: the record is in the server log; count the gap. */
		ConditionVariableCancelSleep();
		add_gap(rec->dboid, 1);
		PG_RE_THROW();
	}
	PG_END_TRY();
	ConditionVariableCancelSleep();

	if (!queued)
	{
		gave_up = true;
		gave_up_at_written = written;
		add_gap(rec->dboid, 1);
		report_not_queued(rec, KG_NOT_QUEUED_STALLED);
	}
}

/*
 * Whether a worker can ever drain this database's records; says once per
 * session when not.
 */
static bool
database_has_drainer(const KgAuditRecord *rec)
{
	static char *dbname = NULL;
	static bool reported = false;

	if (dbname == NULL)
	{
		char	   *name = get_database_name(MyDatabaseId);

		dbname = MemoryContextStrdup(TopMemoryContext, name ? name : "");
	}
	if (kg_worker_serves_database(dbname))
		return true;
	if (!reported)
	{
		reported = true;
		report_not_queued(rec, KG_NOT_QUEUED_NO_WORKER);
	}
	return false;
}

/* Whom a record names: see the file header. */
typedef struct KgAuditWho
{
	const char *tenant;
	const char *actor;
	const char *request_id;
} KgAuditWho;

#define KG_AUDIT_WORKER_ACTOR "keys_guard worker"

static KgAuditWho
audit_who(KgAuditOutcome outcome, bool in_transaction)
{
	KgAuditWho	who = {NULL, KG_AUDIT_WORKER_ACTOR, NULL};

	if (outcome == KG_OUTCOME_ERROR)
	{
		who.request_id = kg_log_request_id;
		return who;
	}
	who.tenant = kg_current_tenant();
	who.actor = kg_current_actor();
	who.request_id = kg_current_request_id();
	/* The worker's records name the request(s) its work is for, as its lines do. */
	if (who.request_id == NULL && IsBackgroundWorker)
		who.request_id = kg_log_request_id;
	if (who.actor == NULL && in_transaction)
		who.actor = GetUserNameFromId(GetSessionUserId(), false);
	return who;
}

/*
 * Fill a queue record.  who names the record's tenant, actor and request
 * id; at is when it happened.
 */
static void
fill_record(KgAuditRecord *rec, const char *action, const char *target,
			KgAuditOutcome outcome, KgAuditWho who, TimestampTz at,
			KgAuditDetail *detail)
{
	char	   *redacted;

	/* Never an API key secret (redact.c) in the target. */
	redacted = kg_redact_text(target);
	if (redacted != NULL)
		target = redacted;

	memset(rec, 0, offsetof(KgAuditRecord, tenant));
	rec->dboid = MyDatabaseId;
	rec->at = at;
	rec->outcome = outcome;
	clip_field(rec->tenant, sizeof(rec->tenant), who.tenant);
	clip_field(rec->actor, sizeof(rec->actor), who.actor);
	clip_field(rec->request_id, sizeof(rec->request_id), who.request_id);
	clip_field(rec->action, sizeof(rec->action), action);
	clip_field(rec->target, sizeof(rec->target), target);
	set_detail(rec->detail, sizeof(rec->detail), jsonb_text(detail_jsonb(detail)));
}

/*
 * Put a record in the queue, waiting for room if need be; the worker never
 * waits for itself (its record is counted as lost instead).
 */
static void
submit_record(const KgAuditRecord *rec)
{
	uint64		written;

	if (queue_put(rec, &written))
		;
	else if (MyBgworkerEntry != NULL &&
			 strcmp(MyBgworkerEntry->bgw_library_name, "keys_guard") == 0)
	{
		add_gap(rec->dboid, 1);
		report_not_queued(rec, KG_NOT_QUEUED_FULL);
	}
	else
		wait_for_room(rec, written);
}

/*
 * Queue one audit record; it reaches keys_guard.audit_log even if the
 * current transaction rolls back.  Waits while the queue is full (see the
 * file header).
 */
void
kg_audit_enqueue(const char *action, const char *target,
				 KgAuditOutcome outcome, KgAuditDetail *detail)
{
	KgAuditRecord rec;

	if (queue == NULL)
		return;
	fill_record(&rec, action, target, outcome, audit_who(outcome, false),
				GetCurrentTimestamp(), detail);
	if (!database_has_drainer(&rec))
		return;
	submit_record(&rec);
	kg_worker_wake(MyDatabaseId);
}

/* ---------------------------------------------------------------------
 * Windows: the use of an API key, counted
 *
 * A tool under an API key may run thousands of statements a second, and a
 * queue record (and an audit_log row) for each would cost more than the
 * statements themselves.  So the uses of a key and the statements run
 * under it are counted in a window in shared memory, and the window becomes
 * records when it closes:
 *
 *	- one "api_key_use" record for its authentications ("uses": how many);
 *	- one "api_key_statement" record per command and set of relations
 *	  ("statements": how many, "rows": their rows in all).
 *
 * There is one window per database and key, shared by every session that
 * uses the key.  A window closes KG_WINDOW_MS after it opened: the next
 * use of its key closes it, and the database's worker closes the windows of
 * keys that went quiet (it looks at least once a second).  It also closes
 * early when it has no room for another kind of statement.  A window that
 * saw one request (a tool's usual pace) carries that request id like any
 * record; one that saw several carries none, and its detail names the
 * first and last ("first_request_id", "last_request_id").  "last_at" is
 * when its last entry was counted; the record's own time is the first's.
 * When every window is taken (twice max_connections of them), a use or a
 * statement is a record of its own, as it is where no worker serves the
 * database.
 *
 * Refusals are never counted in a window: each is its own record at once,
 * and so is a statement with a longer command or more relations than a
 * window's group holds.  A window keeps relation oids and names them when
 * it closes, so a relation renamed within the second has its new name.  What a window holds survives the end of its session
 * and of its transaction (it is in shared memory), but not a server crash,
 * exactly like the queue.
 * ---------------------------------------------------------------------
 */


/* Whether this database has a worker to close its windows. */
static bool
windows_usable(void)
{
	static char *dbname = NULL;

	if (windows == NULL || queue == NULL)
		return false;
	if (dbname == NULL)
	{
		char	   *name = get_database_name(MyDatabaseId);

		dbname = MemoryContextStrdup(TopMemoryContext, name ? name : "");
	}
	return kg_worker_serves_database(dbname);
}

/* The window's part of a record's detail. */
static void
window_detail(KgAuditDetail *detail, const KgKeyWindow *w)
{
	char		buf[MAXDATELEN + 1];

	if (w->several_requests)
	{
		kg_audit_detail_text(detail, "first_request_id", w->first_request);
		kg_audit_detail_text(detail, "last_request_id", w->last_request);
	}
	kg_audit_detail_text(detail, "last_at",
						 pstrdup(JsonEncodeDateTime(buf, TimestampTzGetDatum(w->last),
													TIMESTAMPTZOID, NULL)));
}

/*
 * The relations of a statement, schema-qualified, ", "-separated: named when
 * the record is written, from the catalog as it is then (a relation dropped
 * since is its oid).  Needs a transaction.
 */
static char *
relation_names(const Oid *relids, int n)
{
	StringInfoData names;
	int			i;

	initStringInfo(&names);
	for (i = 0; i < n; i++)
		appendStringInfo(&names, "%s%s", i > 0 ? ", " : "", kg_relation_name(relids[i]));
	return names.data;
}

/* Turn a closed window into its records and queue them. */
static void
window_submit(const KgKeyWindow *w)
{
	KgAuditWho	who;
	KgAuditRecord rec;
	int			i;

	who.tenant = w->tenant;
	who.actor = w->actor;
	who.request_id = w->several_requests ? NULL : w->first_request;
	if (w->uses > 0)
	{
		KgAuditDetail *detail = kg_audit_detail();

		kg_audit_detail_text(detail, "key_id", w->key.key_id);
		kg_audit_detail_text(detail, "name", w->name);
		kg_audit_detail_bool(detail, "write", w->write);
		kg_audit_detail_int(detail, "uses", w->uses);
		window_detail(detail, w);
		fill_record(&rec, "api_key_use", w->key.key_id, KG_OUTCOME_OK, who,
					w->opened, detail);
		rec.dboid = w->key.dboid;
		submit_record(&rec);
	}
	for (i = 0; i < w->ngroups; i++)
	{
		KgAuditDetail *detail = kg_audit_detail();

		kg_audit_detail_text(detail, "key_id", w->key.key_id);
		kg_audit_detail_text(detail, "command", w->groups[i].command);
		kg_audit_detail_text(detail, "relations",
							 relation_names(w->groups[i].relations, w->groups[i].nrelations));
		kg_audit_detail_int(detail, "statements", w->groups[i].statements);
		kg_audit_detail_int(detail, "rows", w->groups[i].rows);
		window_detail(detail, w);
		fill_record(&rec, "api_key_statement", NULL, KG_OUTCOME_OK, who,
					w->opened, detail);
		rec.dboid = w->key.dboid;
		submit_record(&rec);
	}
}

/* Open a fresh window in an entry whose hash key is set. */
static void
window_open(KgKeyWindow *w, TimestampTz now, const char *tenant, const char *actor)
{
	memset((char *) w + sizeof(KgWindowKey), 0,
		   offsetof(KgKeyWindow, groups) - sizeof(KgWindowKey));
	w->opened = now;
	strcpy(w->tenant, tenant);
	strcpy(w->actor, actor);
}

/*
 * Count a use of a key (command NULL) or a statement under it in the key's
 * window, closing the window first if it cannot take it.  False if there
 * is no window for the key and no room for one.
 */
static bool
window_add(const char *key_id, const char *name, bool write,
		   const char *command, const Oid *relations, int nrelations,
		   int64 statements, int64 rows)
{
	KgWindowKey key;
	KgKeyWindow *w;
	KgKeyWindow *closed = NULL;
	KgAuditWho	who = audit_who(KG_OUTCOME_OK, false);
	TimestampTz now = GetCurrentTimestamp();
	char		tenant[KG_TENANT_ID_MAXLEN + 1];
	char		actor[KG_ACTOR_MAXLEN + 1];
	char		request[KG_REQUEST_ID_MAXLEN + 1];
	uint32		hashcode;
	LWLock	   *lock;
	bool		found;
	int			group = -1;
	int			i;

	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	clip_field(key.key_id, sizeof(key.key_id), key_id);
	clip_field(tenant, sizeof(tenant), who.tenant);
	clip_field(actor, sizeof(actor), who.actor);
	clip_field(request, sizeof(request), who.request_id);
	hashcode = get_hash_value(windows, &key);
	lock = &window_locks[hashcode % KG_WINDOW_PARTITIONS].lock;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	w = hash_search_with_hash_value(windows, &key, hashcode, HASH_ENTER_NULL, &found);
	if (w == NULL)
	{
		LWLockRelease(lock);
		return false;
	}
	if (found)
	{
		bool		takes;

		takes = !TimestampDifferenceExceeds(w->opened, now, KG_WINDOW_MS) &&
			strcmp(w->tenant, tenant) == 0 && strcmp(w->actor, actor) == 0;
		if (takes && command != NULL)
		{
			for (i = 0; i < w->ngroups; i++)
			{
				if (strcmp(w->groups[i].command, command) == 0 &&
					w->groups[i].nrelations == nrelations &&
					memcmp(w->groups[i].relations, relations, sizeof(Oid) * nrelations) == 0)
				{
					group = i;
					break;
				}
			}
			takes = group >= 0 || w->ngroups < KG_WINDOW_GROUPS;
		}
		if (!takes)
		{
			closed = palloc(sizeof(KgKeyWindow));
			memcpy(closed, w, sizeof(KgKeyWindow));
			window_open(w, now, tenant, actor);
		}
	}
	else
		window_open(w, now, tenant, actor);

	if (w->last == 0)
		strcpy(w->first_request, request);
	else if (strcmp(w->first_request, request) != 0)
		w->several_requests = true;
	strcpy(w->last_request, request);
	w->last = now;
	if (command == NULL)
	{
		w->uses++;
		clip_field(w->name, sizeof(w->name), name);
		w->write = write;
	}
	else
	{
		if (group < 0)
		{
			group = w->ngroups++;
			strcpy(w->groups[group].command, command);
			w->groups[group].nrelations = nrelations;
			memcpy(w->groups[group].relations, relations, sizeof(Oid) * nrelations);
			w->groups[group].statements = 0;
			w->groups[group].rows = 0;
		}
		w->groups[group].statements += statements;
		w->groups[group].rows += rows;
	}
	LWLockRelease(lock);

	if (closed != NULL)
	{
		window_submit(closed);
		pfree(closed);
		kg_worker_wake(MyDatabaseId);
	}
	return true;
}

/*
 * Audit a successful use of an API key (use_api_key()): counted in the
 * key's window (see above), or a record of its own where no worker would
 * close the window or no window is free.
 */
void
kg_audit_key_use(const char *key_id, const char *name, bool write)
{
	KgAuditDetail *detail;

	if (windows_usable() && window_add(key_id, name, write, NULL, NULL, 0, 0, 0))
		return;
	detail = kg_audit_detail();
	kg_audit_detail_text(detail, "key_id", key_id);
	kg_audit_detail_text(detail, "name", name);
	kg_audit_detail_bool(detail, "write", write);
	kg_audit_detail_int(detail, "uses", 1);
	kg_audit_enqueue("api_key_use", key_id, KG_OUTCOME_OK, detail);
}

/*
 * Audit statements run under an API key: their command, the relations
 * they named (each once, in order), how many and the rows they processed
 * (a statement is counted when it starts and its rows when it ends,
 * keyholder.c).  The relations are named when the record is written.
 */
void
kg_audit_key_statement(const char *key_id, const char *command,
					   const Oid *relations, int nrelations,
					   int64 statements, int64 rows)
{
	KgAuditDetail *detail;

	if (windows_usable() && strlen(command) < KG_WINDOW_COMMAND &&
		nrelations <= KG_WINDOW_RELATIONS &&
		window_add(key_id, NULL, false, command, relations, nrelations, statements, rows))
		return;
	detail = kg_audit_detail();
	kg_audit_detail_text(detail, "key_id", key_id);
	kg_audit_detail_text(detail, "command", command);
	kg_audit_detail_text(detail, "relations", relation_names(relations, nrelations));
	kg_audit_detail_int(detail, "statements", statements);
	kg_audit_detail_int(detail, "rows", rows);
	kg_audit_enqueue("api_key_statement", NULL, KG_OUTCOME_OK, detail);
}

/*
 * Take the windows of a database out of the table: those open at least
 * KG_WINDOW_MS (all of them if all is true), as many as max.  Every
 * partition is locked, in order, for the scan.
 */
static int
take_windows(Oid dboid, bool all, KgKeyWindow *out, int max)
{
	TimestampTz now = GetCurrentTimestamp();
	HASH_SEQ_STATUS status;
	KgKeyWindow *w;
	int			n = 0;
	int			i;

	for (i = 0; i < KG_WINDOW_PARTITIONS; i++)
		LWLockAcquire(&window_locks[i].lock, LW_EXCLUSIVE);
	hash_seq_init(&status, windows);
	while ((w = hash_seq_search(&status)) != NULL)
	{
		if (w->key.dboid != dboid ||
			(!all && !TimestampDifferenceExceeds(w->opened, now, KG_WINDOW_MS)))
			continue;
		if (out != NULL)
		{
			if (n == max)
			{
				hash_seq_term(&status);
				break;
			}
			memcpy(&out[n], w, sizeof(KgKeyWindow));
		}
		n++;
		(void) hash_search(windows, &w->key, HASH_REMOVE, NULL);
	}
	for (i = KG_WINDOW_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(&window_locks[i].lock);
	return n;
}

/*
 * The worker: close this database's windows that have been open
 * KG_WINDOW_MS (their keys went quiet) and queue their records, as many as
 * the queue has room for.  In a transaction: the records name relations.
 */
void
kg_audit_close_windows(void)
{
	KgKeyWindow *taken;
	int			room;
	int			n;
	int			i;

	if (windows == NULL || queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_SHARED);
	room = (queue->capacity - queue->used) / (KG_WINDOW_GROUPS + 1);
	LWLockRelease(queue->lock);
	room = Min(room, 64);
	if (room <= 0)
		return;
	taken = palloc(sizeof(KgKeyWindow) * room);
	n = take_windows(MyDatabaseId, false, taken, room);
	for (i = 0; i < n; i++)
		window_submit(&taken[i]);
	pfree(taken);
}

/*
 * How many records (of any database) wait, counting a database's count of
 * lost ones as one: a cheap check that lets the worker skip starting a
 * transaction, and gather a batch while few wait.
 */
int
kg_audit_pending(void)
{
	int			pending;
	int			i;

	if (queue == NULL)
		return 0;
	LWLockAcquire(queue->lock, LW_SHARED);
	pending = queue->used;
	for (i = 0; i < KG_AUDIT_MAX_GAPS; i++)
		pending += queue->gaps[i].records > 0 ? 1 : 0;
	LWLockRelease(queue->lock);
	return pending;
}

/* A queued record's place in the queue, ordered by its sequence number. */
typedef struct KgTaken
{
	uint64		seq;
	int			slot;
} KgTaken;

static int
compare_taken(const void *a, const void *b)
{
	const KgTaken *ta = (const KgTaken *) a;
	const KgTaken *tb = (const KgTaken *) b;

	return (ta->seq > tb->seq) - (ta->seq < tb->seq);
}

/*
 * Take up to one batch of this database's records, oldest first, and mark
 * them taken; they stay in their slots until kg_audit_release().  Also
 * takes this database's count of lost records.
 */
static int
take_batch(KgAuditRecord *batch)
{
	KgTaken		taken[KG_AUDIT_DRAIN_BATCH];
	int			n = 0;
	int			seen = 0;
	int			i;

	Assert(ntaken == 0);
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < KG_AUDIT_MAX_GAPS; i++)
	{
		if (queue->gaps[i].dboid == MyDatabaseId)
		{
			taken_gap = queue->gaps[i].records;
			queue->gaps[i].dboid = InvalidOid;
			queue->gaps[i].records = 0;
		}
	}
	/* Stop once every slot in use was seen: the rest are free. */
	for (i = 0; i < queue->capacity && n < KG_AUDIT_DRAIN_BATCH && seen < queue->used; i++)
	{
		KgAuditRecord *rec = &queue->records[i];

		if (rec->state == KG_SLOT_FREE)
			continue;
		seen++;
		if (rec->state == KG_SLOT_QUEUED && rec->dboid == MyDatabaseId)
		{
			rec->state = KG_SLOT_TAKEN;
			taken[n].seq = rec->seq;
			taken[n].slot = i;
			n++;
		}
	}
	/* Copy them out oldest first; the records are not moved while sorting. */
	qsort(taken, n, sizeof(KgTaken), compare_taken);
	for (i = 0; i < n; i++)
	{
		memcpy(&batch[i], &queue->records[taken[i].slot], sizeof(KgAuditRecord));
		taken_slots[i] = taken[i].slot;
		taken_seqs[i] = taken[i].seq;
	}
	ntaken = n;
	LWLockRelease(queue->lock);
	return n;
}

/*
 * After the drain's transaction: free the slots of a committed batch and
 * wake the backends waiting for room, or put an aborted batch (and its
 * count of lost records) back in the queue.
 */
void
kg_audit_release(bool committed)
{
	int			i;

	if (queue == NULL || (ntaken == 0 && taken_gap == 0))
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < ntaken; i++)
	{
		KgAuditRecord *rec = &queue->records[taken_slots[i]];

		if (rec->state != KG_SLOT_TAKEN || rec->seq != taken_seqs[i])
			continue;
		if (committed)
		{
			rec->state = KG_SLOT_FREE;
			queue->used--;
			queue->written++;
		}
		else
			rec->state = KG_SLOT_QUEUED;
	}
	LWLockRelease(queue->lock);
	if (!committed && taken_gap > 0)
		add_gap(MyDatabaseId, taken_gap);
	ntaken = 0;
	taken_gap = 0;
	if (committed)
		ConditionVariableBroadcast(&queue->room);
}

/*
 * Put back the records a previous worker of this database had taken but
 * not released (it was killed mid-batch): they were not committed, or the
 * commit was the last thing it did.
 */
void
kg_audit_reclaim(void)
{
	int			i;

	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < queue->capacity; i++)
	{
		if (queue->records[i].state == KG_SLOT_TAKEN &&
			queue->records[i].dboid == MyDatabaseId)
			queue->records[i].state = KG_SLOT_QUEUED;
	}
	LWLockRelease(queue->lock);
}

/*
 * Drop the queued records of a database that has no audit_log any more
 * (DROP EXTENSION, DROP DATABASE) or no worker (keys_guard.database), so
 * they do not hold slots forever; they are in the server log.
 */
void
kg_audit_forget(Oid dboid)
{
	int			forgotten = 0;
	int			i;

	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < queue->capacity; i++)
	{
		KgAuditRecord *rec = &queue->records[i];

		if (rec->state != KG_SLOT_FREE && rec->dboid == dboid)
		{
			rec->state = KG_SLOT_FREE;
			queue->used--;
			forgotten++;
		}
	}
	for (i = 0; i < KG_AUDIT_MAX_GAPS; i++)
	{
		if (queue->gaps[i].dboid == dboid)
		{
			queue->gaps[i].dboid = InvalidOid;
			queue->gaps[i].records = 0;
		}
	}
	LWLockRelease(queue->lock);
	if (windows != NULL)
		forgotten += take_windows(dboid, true, NULL, 0);
	if (forgotten > 0)
	{
		ConditionVariableBroadcast(&queue->room);
		ereport(LOG,
				(errmsg("keys_guard: %d queued audit records of database %u were discarded", forgotten, dboid),
				 errdetail("The database no longer has keys_guard.audit_log or a worker; the records are in the server log.")));
	}
}

/* One row for insert_rows(); NULL text fields are NULL in audit_log. */
typedef struct KgAuditRow
{
	TimestampTz at;
	const char *tenant;
	const char *actor;
	const char *request_id;
	const char *action;
	const char *target;
	KgAuditOutcome outcome;
	Datum		detail;			/* jsonb */
} KgAuditRow;

static Datum
text_array(const KgAuditRow *rows, int n, size_t offset)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
	{
		const char *value = *(const char *const *) ((const char *) &rows[i] + offset);

		nulls[i] = (value == NULL);
		elems[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(value);
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * The one statement that writes keys_guard.audit_log: rows in their order,
 * in the current transaction, as the current user.  SPI must be connected.
 */
static void
insert_rows(const KgAuditRow *rows, int n)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[8];
	Datum	   *at = palloc(sizeof(Datum) * n);
	Datum	   *outcome = palloc(sizeof(Datum) * n);
	Datum	   *detail = palloc(sizeof(Datum) * n);
	int			rc;
	int			i;

	if (plan == NULL)
	{
		Oid			types[8] = {TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID};
		SPIPlanPtr	prepared;

		prepared = SPI_prepare("INSERT INTO keys_guard.audit_log"
							   " (at, tenant, actor, request_id, action, target, outcome, detail)"
							   " SELECT r.at, r.tenant, r.actor, r.request_id, r.action, r.target,"
							   " r.outcome, r.detail"
							   " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
							   " pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5),"
							   " pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8))"
							   " WITH ORDINALITY"
							   " AS r(at, tenant, actor, request_id, action, target, outcome, detail, n)"
							   " ORDER BY r.n", 8, types);
		if (prepared == NULL)
			elog(ERROR, "keys_guard: could not prepare the audit insert: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(prepared) != 0)
			elog(ERROR, "keys_guard: could not keep the audit insert");
		plan = prepared;
	}

	for (i = 0; i < n; i++)
	{
		at[i] = TimestampTzGetDatum(rows[i].at);
		outcome[i] = CStringGetTextDatum(outcome_name(rows[i].outcome));
		detail[i] = rows[i].detail;
	}
	values[0] = PointerGetDatum(construct_array(at, n, TIMESTAMPTZOID, sizeof(TimestampTz),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = text_array(rows, n, offsetof(KgAuditRow, tenant));
	values[2] = text_array(rows, n, offsetof(KgAuditRow, actor));
	values[3] = text_array(rows, n, offsetof(KgAuditRow, request_id));
	values[4] = text_array(rows, n, offsetof(KgAuditRow, action));
	values[5] = text_array(rows, n, offsetof(KgAuditRow, target));
	values[6] = PointerGetDatum(construct_array(outcome, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[7] = PointerGetDatum(construct_array(detail, n, JSONBOID, -1, false, TYPALIGN_INT));

	rc = SPI_execute_plan(plan, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT || SPI_processed != (uint64) n)
		elog(ERROR, "keys_guard: audit insert failed: %s", SPI_result_code_string(rc));
}

/* Write one record in the current transaction (kg_audit_write, _audit()). */
static void
write_record(const char *action, const char *target, KgAuditOutcome outcome,
			 Jsonb *detail)
{
	KgAuditWho	who = audit_who(outcome, true);
	KgAuditRow	row;
	char	   *redacted;

	/*
	 * Never an API key secret (redact.c) in the target or in a detail that
	 * SQL built (_audit()): the marker keeps the JSON valid.
	 */
	redacted = kg_redact_text(target);
	if (redacted != NULL)
		target = redacted;
	if (detail != NULL)
	{
		redacted = kg_redact_text(jsonb_text(detail));
		if (redacted != NULL)
			detail = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														CStringGetDatum(redacted)));
	}

	row.at = GetCurrentTimestamp();
	row.tenant = who.tenant;
	row.actor = who.actor;
	row.request_id = who.request_id;
	row.action = action;
	row.target = target;
	row.outcome = outcome;
	row.detail = JsonbPGetDatum(detail ? detail : detail_jsonb(NULL));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	insert_rows(&row, 1);
	SPI_finish();
}

/*
 * Write one audit record in the current transaction: it commits or rolls
 * back with it.
 */
void
kg_audit_write(const char *action, const char *target, KgAuditOutcome outcome,
			   KgAuditDetail *detail)
{
	write_record(action, target, outcome, detail_jsonb(detail));
}

/*
 * keys_guard._audit(action, target, detail): kg_audit_write() for the SQL
 * scripts, outcome "ok".  A NULL detail is an empty object.
 */
PG_FUNCTION_INFO_V1(keys_guard_audit);
Datum
keys_guard_audit(PG_FUNCTION_ARGS)
{
	write_record(PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0)),
				 PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
				 KG_OUTCOME_OK,
				 PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2));
	PG_RETURN_VOID();
}

static inline const char *
or_null(const char *field)
{
	return field[0] == '\0' ? NULL : field;
}

/*
 * Write one batch of this database's queued records into
 * keys_guard.audit_log.  Runs in the worker inside a transaction with SPI
 * connected; the caller then calls kg_audit_release() with whether that
 * transaction committed.  Returns the number of records written.
 */
int
kg_audit_drain(void)
{
	KgAuditRecord *batch;
	KgAuditRow *rows;
	int			n;
	int			i;

	if (queue == NULL)
		return 0;
	batch = palloc(sizeof(KgAuditRecord) * KG_AUDIT_DRAIN_BATCH);
	n = take_batch(batch);

	if (taken_gap > 0)
	{
		KgAuditDetail *detail = kg_audit_detail();

		ereport(LOG,
				(errmsg("keys_guard: %llu audit records of this database did not reach keys_guard.audit_log",
						(unsigned long long) taken_gap),
				 errdetail("Each is in the server log (\"audit record not written to keys_guard.audit_log\").")));
		kg_audit_detail_int(detail, "records", (int64) taken_gap);
		kg_audit_write("audit_records_lost", NULL, KG_OUTCOME_ERROR, detail);
	}
	if (n == 0)
	{
		pfree(batch);
		return 0;
	}

	rows = palloc(sizeof(KgAuditRow) * n);
	for (i = 0; i < n; i++)
	{
		rows[i].at = batch[i].at;
		rows[i].tenant = or_null(batch[i].tenant);
		rows[i].actor = or_null(batch[i].actor);
		rows[i].request_id = or_null(batch[i].request_id);
		rows[i].action = or_null(batch[i].action);
		rows[i].target = or_null(batch[i].target);
		rows[i].outcome = batch[i].outcome;
		rows[i].detail = DirectFunctionCall1(jsonb_in, CStringGetDatum(batch[i].detail));
	}
	insert_rows(rows, n);
	pfree(rows);
	pfree(batch);
	return n;
}

/*
 * Trigger of append-only tables (keys_guard.audit_log): UPDATE, DELETE and
 * TRUNCATE are refused for every role.
 */
PG_FUNCTION_INFO_V1(keys_guard_append_only);
Datum
keys_guard_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	char	   *table;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "keys_guard_append_only: not called by trigger manager");
	table = kg_relation_name(RelationGetRelid(trigdata->tg_relation));
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot UPDATE append-only table %s", table),
				 errdetail("Audit records can be added but never changed or removed.")));
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot DELETE append-only table %s", table),
				 errdetail("Audit records can be added but never changed or removed.")));
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot TRUNCATE append-only table %s", table),
				 errdetail("Audit records can be added but never changed or removed.")));
	return PointerGetDatum(trigdata->tg_trigtuple);
}
