/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  Audit records that must outlive their transaction (docs/contract.md §6, §10).
 *
 * A denial raises an error, so anything it wrote to a table would roll back
 * with it.  Denials (and admin-context and bypass use) are therefore put in
 * a fixed-size queue in shared memory, and the background worker of the
 * database moves them into keys_guard.audit_log in its own transactions.
 * Each denial is also written to the server log at once by its caller.
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
 * with one statement; it frees their slots only after the batch has
 * committed, so a failed or killed drain leaves them queued for the next.
 * Text fields are clipped on a character boundary; a detail that does not
 * fit, or is not JSON, is kept as a clipped JSON string, never dropped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
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

Size
kg_audit_shmem_size(void)
{
	return add_size(offsetof(KgAuditQueue, records),
					mul_size(sizeof(KgAuditRecord), keys_guard_audit_queue_size));
}

void
kg_audit_shmem_init(void)
{
	bool		found;

	queue = ShmemInitStruct("keys_guard audit queue", kg_audit_shmem_size(), &found);
	if (!found)
	{
		memset(queue, 0, kg_audit_shmem_size());
		queue->lock = &(GetNamedLWLockTranche("keys_guard"))->lock;
		ConditionVariableInit(&queue->room);
		queue->capacity = keys_guard_audit_queue_size;
		queue->next_seq = 1;
	}
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

static bool
json_is_valid(const char *json)
{
	JsonLexContext *lex;

	lex = makeJsonLexContextCstringLen(unconstify(char *, json), strlen(json),
									   GetDatabaseEncoding(), false);
	return pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS;
}

/*
 * The record's detail: the caller's JSON if it is JSON and fits, else an
 * object that keeps as much of it as fits as a string, so the record still
 * reaches audit_log and still says what it can.
 */
static void
set_detail(char *dst, size_t size, const char *json)
{
	StringInfoData buf;
	StringInfoData text;
	int			len;
	int			clip;
	bool		fits;

	if (json == NULL)
		json = "{}";
	len = strlen(json);
	fits = len < (int) size;
	if (fits && json_is_valid(json))
	{
		memcpy(dst, json, len + 1);
		return;
	}

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"%s\": true, \"length\": %d, \"text\": ",
					 fits ? "not_json" : "truncated", len);
	initStringInfo(&text);
	clip = Min(len, (int) size);
	for (;;)
	{
		clip = pg_mbcliplen(json, len, clip);
		resetStringInfo(&text);
		escape_json(&text, pnstrdup(json, clip));
		if (buf.len + text.len + 2 <= (int) size || clip == 0)
			break;
		clip = clip * 3 / 4;
	}
	appendStringInfoString(&buf, text.data);
	appendStringInfoChar(&buf, '}');
	clip_field(dst, size, buf.data);
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

static void
report_not_queued(const KgAuditRecord *rec, const char *why, const char *hint)
{
	ereport(LOG,
			(errmsg("keys_guard: audit record not written to keys_guard.audit_log: %s", why),
			 errdetail_log("action=%s outcome=%s tenant=%s actor=%s request_id=%s target=%s detail=%s",
						   rec->action, outcome_name(rec->outcome), rec->tenant, rec->actor,
						   rec->request_id, rec->target, rec->detail),
			 errhint("%s", hint),
			 errhidestmt(true),
			 errhidecontext(true)));
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
		report_not_queued(rec, "the audit queue is full and no worker drains it",
						  "Check that the keys_guard worker of this database is running; the count of such records goes to keys_guard.audit_log.");
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
		report_not_queued(rec, "the audit queue is full and no worker drains it",
						  "Check that the keys_guard worker of this database is running; the count of such records goes to keys_guard.audit_log.");
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
		report_not_queued(rec, "keys_guard.database does not name this database, so no worker serves it",
						  "Add the database to keys_guard.database; until then its audit records are in the server log only.");
	}
	return false;
}

/*
 * Queue one audit record of the current context; it reaches
 * keys_guard.audit_log even if the current transaction rolls back.  Waits
 * while the queue is full (see the file header).
 */
void
kg_audit_enqueue(const char *action, const char *target,
				 KgAuditOutcome outcome, const char *detail_json)
{
	KgAuditRecord rec;
	uint64		written;

	if (queue == NULL)
		return;

	memset(&rec, 0, offsetof(KgAuditRecord, tenant));
	rec.dboid = MyDatabaseId;
	rec.at = GetCurrentTimestamp();
	rec.outcome = outcome;
	clip_field(rec.tenant, sizeof(rec.tenant), kg_current_tenant());
	clip_field(rec.actor, sizeof(rec.actor), kg_current_actor());
	clip_field(rec.request_id, sizeof(rec.request_id), kg_current_request_id());
	clip_field(rec.action, sizeof(rec.action), action);
	clip_field(rec.target, sizeof(rec.target), target);
	set_detail(rec.detail, sizeof(rec.detail), detail_json);

	if (!database_has_drainer(&rec))
		return;
	if (queue_put(&rec, &written))
		;
	else if (MyBgworkerEntry != NULL &&
			 strcmp(MyBgworkerEntry->bgw_library_name, "keys_guard") == 0)
	{
		/* The worker itself would wait for its own drain: count it. */
		add_gap(rec.dboid, 1);
		report_not_queued(&rec, "the audit queue is full",
						  "Consider raising keys_guard.audit_queue_size.");
	}
	else
		wait_for_room(&rec, written);
	kg_worker_wake(MyDatabaseId);
}

void
kg_audit_deny(const char *action, const char *target, const char *detail_json)
{
	kg_audit_enqueue(action, target, KG_OUTCOME_DENIED, detail_json);
}

/*
 * Whether any record (of any database) or a count of lost ones waits: a
 * cheap check that lets the worker skip starting a transaction.
 */
bool
kg_audit_pending(void)
{
	bool		pending;
	int			i;

	if (queue == NULL)
		return false;
	LWLockAcquire(queue->lock, LW_SHARED);
	pending = queue->used > 0;
	for (i = 0; i < KG_AUDIT_MAX_GAPS && !pending; i++)
		pending = queue->gaps[i].records > 0;
	LWLockRelease(queue->lock);
	return pending;
}

static int
compare_seq(const void *a, const void *b)
{
	const KgAuditRecord *ra = (const KgAuditRecord *) a;
	const KgAuditRecord *rb = (const KgAuditRecord *) b;

	return (ra->seq > rb->seq) - (ra->seq < rb->seq);
}

/*
 * Take up to one batch of this database's records, oldest first, and mark
 * them taken; they stay in their slots until kg_audit_release().  Also
 * takes this database's count of lost records.
 */
static int
take_batch(KgAuditRecord *batch)
{
	int			n = 0;
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
	for (i = 0; i < queue->capacity && n < KG_AUDIT_DRAIN_BATCH; i++)
	{
		KgAuditRecord *rec = &queue->records[i];

		if (rec->state == KG_SLOT_QUEUED && rec->dboid == MyDatabaseId)
		{
			rec->state = KG_SLOT_TAKEN;
			memcpy(&batch[n], rec, sizeof(KgAuditRecord));
			taken_slots[n] = i;
			taken_seqs[n] = rec->seq;
			n++;
		}
	}
	ntaken = n;
	LWLockRelease(queue->lock);
	qsort(batch, n, sizeof(KgAuditRecord), compare_seq);
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
	if (forgotten > 0)
	{
		ConditionVariableBroadcast(&queue->room);
		ereport(LOG,
				(errmsg("keys_guard: %d queued audit records of database %u were discarded", forgotten, dboid),
				 errdetail("The database no longer has keys_guard.audit_log or a worker; the records are in the server log.")));
	}
}

static Datum
text_array(KgAuditRecord *batch, int n, size_t offset)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
	{
		const char *value = (const char *) &batch[i] + offset;

		nulls[i] = (value[0] == '\0');
		elems[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(value);
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Write one batch of this database's queued records into
 * keys_guard.audit_log with one statement.  Runs in the worker inside a
 * transaction with SPI connected; the caller then calls
 * kg_audit_release() with whether that transaction committed.  Returns
 * the number of records written.
 */
int
kg_audit_drain(void)
{
	static SPIPlanPtr plan = NULL;
	KgAuditRecord *batch;
	Datum		values[8];
	Datum	   *at;
	Datum	   *outcome;
	int			n;
	int			i;
	int			rc;

	if (queue == NULL)
		return 0;
	batch = palloc(sizeof(KgAuditRecord) * KG_AUDIT_DRAIN_BATCH);
	n = take_batch(batch);

	if (taken_gap > 0)
	{
		char	   *detail = psprintf("{\"records\": " UINT64_FORMAT "}", taken_gap);
		Oid			types[1] = {TEXTOID};
		Datum		args[1] = {CStringGetTextDatum(detail)};

		ereport(LOG,
				(errmsg("keys_guard: " UINT64_FORMAT " audit records of this database did not reach keys_guard.audit_log",
						taken_gap),
				 errdetail("Each is in the server log (\"audit record not written to keys_guard.audit_log\").")));
		rc = SPI_execute_with_args("INSERT INTO keys_guard.audit_log (actor, action, outcome, detail)"
								   " VALUES ('keys_guard worker', 'audit_records_lost', 'error', $1::jsonb)",
								   1, types, args, NULL, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "keys_guard: audit insert failed: %s", SPI_result_code_string(rc));
	}
	if (n == 0)
	{
		pfree(batch);
		return 0;
	}

	if (plan == NULL)
	{
		Oid			types[8] = {TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};

		plan = SPI_prepare("INSERT INTO keys_guard.audit_log"
						   " (at, tenant, actor, request_id, action, target, outcome, detail)"
						   " SELECT r.at, r.tenant, r.actor, r.request_id, r.action, r.target,"
						   " r.outcome, r.detail::jsonb"
						   " FROM unnest($1, $2, $3, $4, $5, $6, $7, $8) WITH ORDINALITY"
						   " AS r(at, tenant, actor, request_id, action, target, outcome, detail, n)"
						   " ORDER BY r.n", 8, types);
		if (plan == NULL)
			elog(ERROR, "keys_guard: could not prepare the audit insert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}

	at = palloc(sizeof(Datum) * n);
	outcome = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
	{
		at[i] = TimestampTzGetDatum(batch[i].at);
		outcome[i] = CStringGetTextDatum(outcome_name(batch[i].outcome));
	}
	values[0] = PointerGetDatum(construct_array(at, n, TIMESTAMPTZOID, sizeof(TimestampTz),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = text_array(batch, n, offsetof(KgAuditRecord, tenant));
	values[2] = text_array(batch, n, offsetof(KgAuditRecord, actor));
	values[3] = text_array(batch, n, offsetof(KgAuditRecord, request_id));
	values[4] = text_array(batch, n, offsetof(KgAuditRecord, action));
	values[5] = text_array(batch, n, offsetof(KgAuditRecord, target));
	values[6] = PointerGetDatum(construct_array(outcome, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[7] = text_array(batch, n, offsetof(KgAuditRecord, detail));

	rc = SPI_execute_plan(plan, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT || SPI_processed != (uint64) n)
		elog(ERROR, "keys_guard: audit insert failed: %s", SPI_result_code_string(rc));
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
	Relation	rel;
	const char *operation;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "keys_guard_append_only: not called by trigger manager");
	rel = trigdata->tg_relation;
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		operation = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		operation = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		operation = "TRUNCATE";
	else
		return PointerGetDatum(trigdata->tg_trigtuple);

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot %s append-only table %s", operation,
					kg_relation_name(RelationGetRelid(rel))),
			 errdetail("Audit records can be added but never changed or removed.")));
	PG_RETURN_NULL();
}
