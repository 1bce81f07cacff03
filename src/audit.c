/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  Audit records that must outlive their transaction (SPEC.md §6, §10).
 *
 * A denial raises an error, so anything it wrote to a table would roll back
 * with it.  Denials (and admin-context and bypass use) are therefore put in
 * a fixed-size queue in shared memory, and the background worker of the
 * database moves them into keys_guard.audit_log in its own transactions.
 * Each record is also written to the server log at once by its caller, so
 * a full queue loses an audit row, never the evidence; the worker reports
 * how many records a full queue turned away.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "keys_guard.h"

typedef struct KgAuditRecord
{
	bool		used;
	uint64		seq;
	Oid			dboid;
	TimestampTz at;
	KgAuditOutcome outcome;
	char		tenant[KG_TENANT_ID_MAXLEN + 1];
	char		actor[KG_ACTOR_MAXLEN + 1];
	char		request_id[KG_REQUEST_ID_MAXLEN + 1];
	char		action[32];
	char		target[256];
	char		detail[1024];
} KgAuditRecord;

typedef struct KgAuditQueue
{
	LWLock	   *lock;
	uint64		next_seq;
	uint64		dropped;		/* turned away since last reported */
	int			capacity;
	int			used;
	int			free_hint;
	KgAuditRecord records[FLEXIBLE_ARRAY_MEMBER];
} KgAuditQueue;

static KgAuditQueue *queue = NULL;

/* Most records one drain writes in one transaction. */
#define KG_AUDIT_DRAIN_BATCH 1000

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
		queue->capacity = keys_guard_audit_queue_size;
		queue->next_seq = 1;
	}
}

static void
copy_field(char *dst, size_t size, const char *src)
{
	strlcpy(dst, src ? src : "", size);
}

/*
 * Queue one audit record of the current context; it reaches
 * keys_guard.audit_log even if the current transaction rolls back.
 */
void
kg_audit_enqueue(const char *action, const char *target,
				 KgAuditOutcome outcome, const char *detail_json)
{
	KgAuditRecord *rec = NULL;
	int			i;

	if (queue == NULL)
		return;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < queue->capacity && queue->used < queue->capacity; i++)
	{
		int			slot = (queue->free_hint + i) % queue->capacity;

		if (!queue->records[slot].used)
		{
			rec = &queue->records[slot];
			queue->free_hint = (slot + 1) % queue->capacity;
			break;
		}
	}
	if (rec == NULL)
	{
		queue->dropped++;
		LWLockRelease(queue->lock);
		return;
	}
	rec->used = true;
	rec->seq = queue->next_seq++;
	rec->dboid = MyDatabaseId;
	rec->at = GetCurrentTimestamp();
	rec->outcome = outcome;
	copy_field(rec->tenant, sizeof(rec->tenant), kg_current_tenant());
	copy_field(rec->actor, sizeof(rec->actor), kg_current_actor());
	copy_field(rec->request_id, sizeof(rec->request_id), kg_current_request_id());
	copy_field(rec->action, sizeof(rec->action), action);
	copy_field(rec->target, sizeof(rec->target), target);
	if (detail_json == NULL)
		copy_field(rec->detail, sizeof(rec->detail), "{}");
	else if (strlen(detail_json) >= sizeof(rec->detail))
		copy_field(rec->detail, sizeof(rec->detail), "{\"truncated\": true}");
	else
		copy_field(rec->detail, sizeof(rec->detail), detail_json);
	queue->used++;
	LWLockRelease(queue->lock);

	kg_worker_wake(MyDatabaseId);
}

void
kg_audit_deny(const char *action, const char *target, const char *detail_json)
{
	kg_audit_enqueue(action, target, KG_OUTCOME_DENIED, detail_json);
}

/*
 * Whether any record waits in the queue (of any database): a cheap check
 * that lets the worker skip starting a transaction when there is nothing.
 */
bool
kg_audit_pending(void)
{
	bool		pending;

	if (queue == NULL)
		return false;
	LWLockAcquire(queue->lock, LW_SHARED);
	pending = queue->used > 0 || queue->dropped > 0;
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

static Datum
text_or_null_datum(const char *value, char *null)
{
	*null = value[0] ? ' ' : 'n';
	return value[0] ? CStringGetTextDatum(value) : (Datum) 0;
}

/*
 * Take up to one batch of this database's records off the queue, oldest
 * first.  Returns how many; *dropped gets the count a full queue turned away.
 */
static int
take_batch(KgAuditRecord *batch, uint64 *dropped)
{
	int			n = 0;
	int			i;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	*dropped = queue->dropped;
	queue->dropped = 0;
	for (i = 0; i < queue->capacity && n < KG_AUDIT_DRAIN_BATCH; i++)
	{
		KgAuditRecord *rec = &queue->records[i];

		if (rec->used && rec->dboid == MyDatabaseId)
		{
			memcpy(&batch[n++], rec, sizeof(KgAuditRecord));
			rec->used = false;
			queue->used--;
		}
	}
	LWLockRelease(queue->lock);
	qsort(batch, n, sizeof(KgAuditRecord), compare_seq);
	return n;
}

/*
 * Write queued records of this database into keys_guard.audit_log.  Runs in
 * the worker inside a transaction with SPI connected; returns the number of
 * records written.
 */
int
kg_audit_drain(void)
{
	static SPIPlanPtr plan = NULL;
	KgAuditRecord *batch;
	uint64		dropped;
	int			n;
	int			i;

	if (queue == NULL)
		return 0;
	batch = palloc(sizeof(KgAuditRecord) * KG_AUDIT_DRAIN_BATCH);
	n = take_batch(batch, &dropped);
	if (dropped > 0)
		ereport(LOG,
				(errmsg("keys_guard: %llu audit records were lost because the audit queue was full",
						(unsigned long long) dropped),
				 errhint("Each denial is also in the server log. Consider raising keys_guard.audit_queue_size.")));
	if (n == 0)
		return 0;

	if (plan == NULL)
	{
		Oid			types[8] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID, TEXTOID};

		plan = SPI_prepare("INSERT INTO keys_guard.audit_log"
						   " (at, tenant, actor, request_id, action, target, outcome, detail)"
						   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)", 8, types);
		if (plan == NULL)
			elog(ERROR, "keys_guard: could not prepare the audit insert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}

	for (i = 0; i < n; i++)
	{
		KgAuditRecord *rec = &batch[i];
		Datum		values[8];
		char		nulls[8];
		int			rc;

		values[0] = TimestampTzGetDatum(rec->at);
		nulls[0] = ' ';
		values[1] = text_or_null_datum(rec->tenant, &nulls[1]);
		values[2] = text_or_null_datum(rec->actor, &nulls[2]);
		values[3] = text_or_null_datum(rec->request_id, &nulls[3]);
		values[4] = text_or_null_datum(rec->action, &nulls[4]);
		values[5] = text_or_null_datum(rec->target, &nulls[5]);
		values[6] = CStringGetTextDatum(outcome_name(rec->outcome));
		nulls[6] = ' ';
		values[7] = CStringGetTextDatum(rec->detail);
		nulls[7] = ' ';
		rc = SPI_execute_plan(plan, values, nulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "keys_guard: audit insert failed: %s", SPI_result_code_string(rc));
	}
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
					quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											   RelationGetRelationName(rel))),
			 errdetail("Audit records can be added but never changed or removed.")));
	PG_RETURN_NULL();
}
