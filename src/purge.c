/*-------------------------------------------------------------------------
 *
 * purge.c
 *	  Hard-deleting soft-deleted rows after their grace (docs/contract.md §9).
 *
 * One batch removes up to a given number of expired rows of one table
 * (the background worker's adapted batch size, worker.c, or
 * keys_guard.purge_batch_size for purge_now()), oldest deadline first,
 * skipping rows another transaction has locked (a restore in flight wins) and rows whose real delete would fail
 * or reach data that must stay (keys_guard._purge_skip_predicate()).  The
 * batch, its bookkeeping in keys_guard.purge_stats and its audit record
 * (counts, never rows) commit together, so a purge killed at any point
 * loses nothing and deletes nothing twice.  audit and payment tables are
 * never purged.
 *
 * The background worker runs one batch per transaction; purge_now() runs
 * the same code in the caller's transaction.
 *
 * Two ways to delete, with the same result.  The direct path walks the
 * purge index and deletes each expired row through the table access method
 * without waiting: a row another transaction holds (a restore in flight) or
 * changed since the scan began is left for a later run, as SKIP LOCKED
 * would.  That is one write per row where the statement path writes two
 * (the row lock, then the delete).  It is taken only when a plain DELETE
 * would do nothing more than remove the row: no rules, no DELETE trigger
 * but keys_guard's own (so no foreign key references the table and nothing
 * cascades), a valid btree purge index.  Every other table goes through a
 * DELETE statement, which fires the foreign-key triggers and cascades.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "keys_guard.h"

int			keys_guard_purge_batch_size = 50000;

typedef struct PurgeArgs
{
	Oid			relid;
	int			batch_size;
	int			max_batches;	/* 0: until no expired row is left */
	bool		dry_run;
	const char *predicate;		/* skip predicate, if the caller has it */
	int64		purged;
	int64		skipped;
} PurgeArgs;

static Oid	purge_index(Relation rel, KgGuardedTable *table);

/*
 * The requests whose work a batch finishes.  A row that a request
 * soft-deleted carries the request's id (delete_request_id); the rows a
 * batch removes name the requests it works for.  In the worker, every log
 * line of the batch names them (redact.c adds kg_log_request_id to each
 * line, docs/contract.md §16), so that one grep for a request id finds the
 * purge of its rows too; the batch's audit record lists them
 * ("request_ids").  A batch names the first KG_PURGE_NAMED_REQUESTS
 * requests it meets, comma-separated.
 */
#define KG_PURGE_NAMED_REQUESTS 8
static char batch_requests[KG_PURGE_NAMED_REQUESTS * (KG_REQUEST_ID_MAXLEN + 1)];
static int	batch_nrequests = 0;

static void
batch_requests_reset(void)
{
	batch_requests[0] = '\0';
	batch_nrequests = 0;
	if (IsBackgroundWorker)
		kg_log_request_id = NULL;
}

/* Name the request of one row the batch removes (its delete_request_id). */
static void
batch_request_add(Datum id_datum)
{
	text	   *id = DatumGetTextPP(id_datum);
	const char *id_data = VARDATA_ANY(id);
	size_t		len = VARSIZE_ANY_EXHDR(id);
	const char *p = batch_requests;

	if (len == 0 || len > KG_REQUEST_ID_MAXLEN)
		return;
	while (*p)
	{
		const char *end = strchr(p, ',');
		size_t		n = end ? (size_t) (end - p) : strlen(p);

		if (n == len && memcmp(p, id_data, len) == 0)
			return;
		p += n;
		if (*p == ',')
			p++;
	}
	if (batch_nrequests >= KG_PURGE_NAMED_REQUESTS)
		return;
	if (batch_nrequests > 0)
		strcat(batch_requests, ",");
	strncat(batch_requests, id_data, len);
	batch_nrequests++;
	if (IsBackgroundWorker)
		kg_log_request_id = batch_requests;
}

/* The request of row of a listing query whose second column is delete_request_id. */
static void
note_listed_request(SPITupleTable *listed, uint64 row, bool with_request)
{
	bool		isnull;
	Datum		id;

	if (!with_request)
		return;
	id = SPI_getbinval(listed->vals[row], listed->tupdesc, 2, &isnull);
	if (!isnull)
		batch_request_add(id);
}

static int64
spi_count(const char *sql)
{
	bool		isnull;

	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "keys_guard: could not count rows");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* The rows of relid that must not be hard-deleted, as a SQL condition on t. */
static char *
skip_predicate(Oid relid)
{
	Oid			types[3] = {REGCLASSOID, TEXTOID, INT4OID};
	Datum		values[3] = {ObjectIdGetDatum(relid), CStringGetTextDatum("t"), Int32GetDatum(0)};
	bool		isnull;
	Datum		pred;

	pred = kg_call_own_function("_purge_skip_predicate", 3, types, values, &isnull);
	return isnull ? pstrdup("true") : TextDatumGetCString(pred);
}

static void
record_batch(PurgeArgs *args, const char *table)
{
	Oid			types[3] = {REGCLASSOID, INT8OID, INT8OID};
	Datum		values[3];
	KgAuditDetail *detail;
	int64		skipped_before = -1;
	bool		isnull;

	values[0] = ObjectIdGetDatum(args->relid);
	if (SPI_execute_with_args("SELECT rows_skipped FROM keys_guard.purge_stats WHERE relid = $1",
							  1, types, values, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
		skipped_before = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 1, &isnull));
	values[1] = Int64GetDatum(args->purged);
	values[2] = Int64GetDatum(args->skipped);
	if (SPI_execute_with_args("INSERT INTO keys_guard.purge_stats AS s"
							  " (relid, rows_purged, rows_skipped, last_run)"
							  " VALUES ($1, $2, $3, now())"
							  " ON CONFLICT (relid) DO UPDATE"
							  " SET rows_purged = s.rows_purged + $2, rows_skipped = $3,"
							  " last_run = now(), last_error = NULL, last_error_at = NULL",
							  3, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "keys_guard: could not record the purge");
	/* Audit what changed: rows purged, or a new count of rows held back. */
	if (args->purged == 0 && (args->skipped == 0 || args->skipped == skipped_before))
		return;
	if (args->skipped != skipped_before && args->skipped > 0)
		ereport(LOG,
				(errmsg("keys_guard: purge of %s skips " INT64_FORMAT " expired rows", table, args->skipped),
				 errdetail("Deleting them would reach rows of an audit or payment table, or rows that a foreign key without ON DELETE CASCADE still references.")));

	detail = kg_audit_detail();
	kg_audit_detail_int(detail, "rows", args->purged);
	kg_audit_detail_int(detail, "skipped", args->skipped);
	if (batch_nrequests > 0)
		kg_audit_detail_text(detail, "request_ids", batch_requests);
	kg_audit_write("purge", table, KG_OUTCOME_OK, detail);
}

/* record_batch() outside any SPI connection of the caller. */
static void
record_batch_alone(PurgeArgs *args)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	record_batch(args, kg_relation_name(args->relid));
	SPI_finish();
}

/* Soft-delete tables of class standard are purged; audit and payment never. */
static bool
purgeable(KgGuardedTable *table)
{
	return table != NULL && table->soft_delete && table->class == KG_CLASS_STANDARD;
}

/* Is this trigger keys_guard's own BEFORE DELETE guard, _refuse_delete()? */
static bool
is_refuse_delete_trigger(const Trigger *trigger)
{
	Oid			nspoid = get_func_namespace(trigger->tgfoid);
	char	   *proname = get_func_name(trigger->tgfoid);
	char	   *nspname = OidIsValid(nspoid) ? get_namespace_name(nspoid) : NULL;

	return proname != NULL && nspname != NULL &&
		strcmp(nspname, "keys_guard") == 0 && strcmp(proname, "_refuse_delete") == 0;
}

/*
 * The purge index of rel if the direct path may delete its expired rows,
 * else InvalidOid (see the head of this file).  No skip predicate needs
 * checking here: it is non-trivial only when a foreign key references the
 * table, and every such key puts its action trigger for DELETE on the
 * table, which rules the direct path out below.
 */
static Oid
direct_purge_index(Relation rel, KgGuardedTable *table)
{
	TriggerDesc *trigdesc = rel->trigdesc;
	Relation	index;
	Oid			indexoid;
	bool		usable;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rules != NULL ||
		table->deleted_at == InvalidAttrNumber || table->hard_delete_at == InvalidAttrNumber ||
		TupleDescAttr(RelationGetDescr(rel), table->hard_delete_at - 1)->atttypid != TIMESTAMPTZOID)
		return InvalidOid;
	if (trigdesc != NULL)
	{
		int			i;

		if (trigdesc->trig_delete_old_table)
			return InvalidOid;
		for (i = 0; i < trigdesc->numtriggers; i++)
		{
			Trigger    *trigger = &trigdesc->triggers[i];

			if (TRIGGER_FOR_DELETE(trigger->tgtype) &&
				!(TRIGGER_FOR_ROW(trigger->tgtype) && TRIGGER_FOR_BEFORE(trigger->tgtype) &&
				  is_refuse_delete_trigger(trigger)))
				return InvalidOid;
		}
	}

	indexoid = purge_index(rel, table);
	if (!OidIsValid(indexoid))
		return InvalidOid;
	index = index_open(indexoid, AccessShareLock);
	usable = index->rd_index->indisvalid && index->rd_index->indisready &&
		index->rd_index->indislive;
	index_close(index, AccessShareLock);
	return usable ? indexoid : InvalidOid;
}

/*
 * Is index the purge index of the soft-delete table it belongs to: a btree
 * index on hard_delete_at alone, ascending, WHERE deleted_at IS NOT NULL?
 * The one definition: _sync_guard() creates one unless this finds one,
 * doctor() reports its absence, _release_table() drops keys_guard's.
 */
static bool
is_purge_index(Relation index, AttrNumber deleted_at, AttrNumber hard_delete_at)
{
	Form_pg_index form = index->rd_index;
	List	   *pred;
	NullTest   *test;

	if (index->rd_rel->relam != BTREE_AM_OID || form->indnatts != 1 ||
		form->indkey.values[0] != hard_delete_at ||
		index->rd_opcintype[0] != TIMESTAMPTZOID || index->rd_indoption[0] != 0)
		return false;
	pred = RelationGetIndexPredicate(index);
	if (list_length(pred) != 1 || !IsA(linitial(pred), NullTest))
		return false;
	test = linitial_node(NullTest, pred);
	return test->nulltesttype == IS_NOT_NULL && !test->argisrow &&
		IsA(test->arg, Var) && ((Var *) test->arg)->varattno == deleted_at;
}

/* rel's purge index, a valid one first, or InvalidOid. */
static Oid
purge_index(Relation rel, KgGuardedTable *table)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		bool		match = is_purge_index(index, table->deleted_at, table->hard_delete_at);
		bool		valid = index->rd_index->indisvalid;

		index_close(index, AccessShareLock);
		if (match && (valid || !OidIsValid(found)))
		{
			found = lfirst_oid(lc);
			if (valid)
				break;
		}
	}
	list_free(indexes);
	return found;
}

/*
 * The purge index of a table (docs/contract.md §7), valid or not; also for
 * a table not (or no longer) registered, from its columns' names.
 */
Oid
kg_purge_index(Oid relid)
{
	KgGuardedTable columns = {0};
	Relation	rel = relation_open(relid, AccessShareLock);
	Oid			found = InvalidOid;

	columns.deleted_at = get_attnum(relid, KG_COL_DELETED_AT);
	columns.hard_delete_at = get_attnum(relid, KG_COL_HARD_DELETE_AT);
	if (columns.deleted_at != InvalidAttrNumber && columns.hard_delete_at != InvalidAttrNumber)
		found = purge_index(rel, &columns);
	relation_close(rel, AccessShareLock);
	return found;
}

/*
 * Delete one expired row of rel found by a scan or given by TID, without
 * waiting; the row must be visible to snapshot.  False if it is no longer
 * expired or another transaction holds or changed it (left for a later
 * run, as SKIP LOCKED would leave it).
 */
static bool
delete_if_expired(Relation rel, KgGuardedTable *table, TupleTableSlot *slot,
				  CommandId cid, Snapshot snapshot, TimestampTz now)
{
	TM_FailureData tmfd;
	TM_Result	result;
	bool		isnull;
	Datum		deadline;

	(void) slot_getattr(slot, table->deleted_at, &isnull);
	if (isnull)
		return false;
	deadline = slot_getattr(slot, table->hard_delete_at, &isnull);
	if (isnull || DatumGetTimestampTz(deadline) >= now)
		return false;

	result = table_tuple_delete(rel, &slot->tts_tid, cid, snapshot, InvalidSnapshot,
								false, &tmfd, false);
	switch (result)
	{
		case TM_Ok:
			if (table->delete_request_id != InvalidAttrNumber)
			{
				Datum		id = slot_getattr(slot, table->delete_request_id, &isnull);

				if (!isnull)
					batch_request_add(id);
			}
			return true;
		case TM_BeingModified:	/* held by a transaction in progress */
		case TM_Updated:		/* restored (or changed) since the scan began */
		case TM_Deleted:
		case TM_SelfModified:
			return false;
		default:
			elog(ERROR, "keys_guard: unexpected result %d deleting from %s",
				 (int) result, RelationGetRelationName(rel));
	}
	return false;
}

/*
 * Walk the purge index of rel for expired rows, oldest deadline first: up
 * to limit of them (0: all).  With remove, each is deleted (the direct path
 * of purge_now()); without, their TIDs are stored in tids (the worker's
 * list for its next batches).  Returns how many were deleted or stored.
 */
static int64
scan_expired(Relation rel, Oid indexoid, KgGuardedTable *table, int64 limit,
			 bool remove, ItemPointerData *tids)
{
	Relation	index = index_open(indexoid, AccessShareLock);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc scan;
	ScanKeyData key;
	Snapshot	snapshot;
	CommandId	cid = InvalidCommandId;
	int64		found = 0;

	if (remove)
	{
		/* As DELETE would: a published table needs its replica identity. */
		CheckCmdReplicaIdentity(rel, CMD_DELETE);
		/* A statement of its own: it sees what the transaction did so far. */
		CommandCounterIncrement();
		cid = GetCurrentCommandId(true);
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	snapshot = GetActiveSnapshot();

	ScanKeyInit(&key, 1, BTLessStrategyNumber, F_TIMESTAMPTZ_LT, TimestampTzGetDatum(now));
	scan = index_beginscan(rel, index, snapshot, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while ((limit == 0 || found < limit) &&
		   index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		CHECK_FOR_INTERRUPTS();
		if (remove)
		{
			if (delete_if_expired(rel, table, slot, cid, snapshot, now))
				found++;
		}
		else
			tids[found++] = slot->tts_tid;
	}
	index_endscan(scan);
	PopActiveSnapshot();
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	if (remove)
		CommandCounterIncrement();
	return found;
}

/*
 * Delete the expired rows among the given TIDs (found by scan_expired() in
 * an earlier transaction).  Each row is read again under this
 * transaction's snapshot and checked again: a row restored since is no
 * longer visible or no longer expired, and a TID whose row is gone is
 * skipped.  Returns rows deleted.
 */
static int64
delete_listed(Relation rel, KgGuardedTable *table, const ItemPointerData *tids, int ntids)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	BlockNumber nblocks = RelationGetNumberOfBlocks(rel);
	Snapshot	snapshot;
	CommandId	cid;
	int64		purged = 0;
	int			i;

	CheckCmdReplicaIdentity(rel, CMD_DELETE);
	CommandCounterIncrement();
	cid = GetCurrentCommandId(true);
	PushActiveSnapshot(GetTransactionSnapshot());
	snapshot = GetActiveSnapshot();
	for (i = 0; i < ntids; i++)
	{
		ItemPointerData tid = tids[i];

		CHECK_FOR_INTERRUPTS();
		/* VACUUM may have truncated the table since the TIDs were read. */
		if (ItemPointerGetBlockNumber(&tid) >= nblocks ||
			!table_tuple_fetch_row_version(rel, &tid, snapshot, slot))
			continue;
		if (delete_if_expired(rel, table, slot, cid, snapshot, now))
			purged++;
	}
	PopActiveSnapshot();
	ExecDropSingleTupleTableSlot(slot);
	CommandCounterIncrement();
	return purged;
}

/*
 * Delete the rows of one batch (their TIDs) that are still expired, as the
 * table's owner: the DELETE runs the table's triggers and rules and the
 * foreign-key actions of the rows, which are user code (acting.c).
 */
static int64
delete_batch(Oid relid, SPIPlanPtr delete_plan, Datum *tids, int n)
{
	ArrayType  *array = construct_array(tids, n, TIDOID, sizeof(ItemPointerData),
										false, TYPALIGN_SHORT);
	KgOwnerSwitch save;
	int			result;

	kg_begin_as_owner(relid, &save);
	result = SPI_execute_plan(delete_plan, (Datum[]) {PointerGetDatum(array)}, NULL, false, 0);
	kg_end_as_owner(&save);
	if (result != SPI_OK_DELETE)
		elog(ERROR, "keys_guard: purge of %s failed", kg_relation_name(relid));
	SPI_freeplan(delete_plan);
	pfree(array);
	return (int64) SPI_processed;
}

/*
 * The DELETE of a batch.  Its target carries keys_guard's internal alias,
 * which marks the rows it deletes as keys_guard's even inside a rule
 * action of the table (acting.c).
 */
static SPIPlanPtr
prepare_delete(const char *name)
{
	Oid			tid_array[1] = {TIDARRAYOID};
	const char *alias = kg_internal_alias();
	SPIPlanPtr	plan;

	plan = SPI_prepare(psprintf("DELETE FROM ONLY %s %s WHERE %s.ctid = ANY ($1)"
								" AND " KG_SQL_EXPIRED("%s"),
								name, alias, alias, alias, alias), 1, tid_array);
	if (plan == NULL)
		elog(ERROR, "keys_guard: could not prepare the purge of %s", name);
	return plan;
}

/*
 * One batch: the worker's unit of work, one per transaction.  The rows are
 * listed and locked by keys_guard (no user code runs in that SELECT), then
 * deleted as the table's owner.
 */
static int64
purge_one_batch(Oid relid, const char *name, const char *expired, const char *pred,
				int batch_size, bool with_request)
{
	char	   *sql = psprintf("SELECT t.ctid%s FROM ONLY %s t WHERE %s AND NOT (%s)"
							   " ORDER BY t." KG_COL_HARD_DELETE_AT " LIMIT %d FOR UPDATE OF t SKIP LOCKED",
							   with_request ? ", t." KG_COL_DELETE_REQUEST_ID : "",
							   name, expired, pred, batch_size);
	SPITupleTable *listed;
	Datum	   *tids;
	uint64		n;
	uint64		i;

	if (SPI_execute(sql, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: purge of %s failed", name);
	n = SPI_processed;
	listed = SPI_tuptable;
	if (n == 0)
		return 0;
	tids = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		tids[i] = SPI_getbinval(listed->vals[i], listed->tupdesc, 1, &isnull);
		note_listed_request(listed, i, with_request);
	}
	return delete_batch(relid, prepare_delete(name), tids, (int) n);
}

/*
 * Several batches in the caller's transaction (purge_now()).  One cursor
 * walks the expired rows once, oldest deadline first, locking them as it
 * goes, and each batch deletes the rows of one fetch.  Restarting the scan
 * for every batch instead would walk, batch after batch, over the index
 * entries of the rows this transaction already deleted (they cannot be
 * pruned while it is open): quadratic in the backlog.
 */
static int64
purge_batches(Oid relid, const char *name, const char *expired, const char *pred,
			  int batch_size, int max_batches, bool with_request)
{
	Portal		cursor;
	int64		purged = 0;
	int			batches = 0;

	cursor = SPI_cursor_open_with_args(NULL,
									   psprintf("SELECT t.ctid%s FROM ONLY %s t WHERE %s AND NOT (%s)"
												" ORDER BY t." KG_COL_HARD_DELETE_AT " FOR UPDATE OF t SKIP LOCKED",
												with_request ? ", t." KG_COL_DELETE_REQUEST_ID : "",
												name, expired, pred),
									   0, NULL, NULL, NULL, false, 0);
	for (;;)
	{
		SPITupleTable *fetched;
		Datum	   *tids;
		uint64		n;
		uint64		i;
		bool		isnull;

		SPI_cursor_fetch(cursor, true, batch_size);
		n = SPI_processed;
		fetched = SPI_tuptable;
		if (n == 0)
			break;
		tids = palloc(sizeof(Datum) * n);
		for (i = 0; i < n; i++)
		{
			tids[i] = SPI_getbinval(fetched->vals[i], fetched->tupdesc, 1, &isnull);
			note_listed_request(fetched, i, with_request);
		}
		/*
		 * A DELETE of its own per batch: the internal alias it carries is
		 * new each time (acting.c), so one that a trigger read from an
		 * error context in one batch marks nothing in the next.
		 */
		purged += delete_batch(relid, prepare_delete(name), tids, (int) n);
		SPI_freetuptable(fetched);
		pfree(tids);
		batches++;
		if (n < (uint64) batch_size || (max_batches > 0 && batches >= max_batches))
			break;
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(cursor);
	return purged;
}

static void
purge_internal(void *arg)
{
	PurgeArgs  *args = (PurgeArgs *) arg;
	KgGuardedTable *table = kg_guarded_table(args->relid);
	Relation	rel;
	Oid			indexoid;
	char	   *name;
	char	   *pred;
	const char *expired = KG_SQL_EXPIRED("t");

	batch_requests_reset();
	args->purged = 0;
	if (args->predicate == NULL)
		args->skipped = 0;
	if (!purgeable(table))
		return;

	name = kg_relation_name(args->relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	if (args->predicate)
		pred = (char *) args->predicate;	/* skipped: counted by the caller */
	else
	{
		pred = skip_predicate(args->relid);
		args->skipped = spi_count(psprintf("SELECT count(*) FROM ONLY %s t WHERE %s AND (%s)",
										   name, expired, pred));
	}
	if (args->dry_run)
	{
		args->purged = spi_count(psprintf("SELECT count(*) FROM ONLY %s t WHERE %s AND NOT (%s)",
										  name, expired, pred));
		SPI_finish();
		return;
	}

	rel = table_open(args->relid, RowExclusiveLock);
	indexoid = direct_purge_index(rel, table);
	if (OidIsValid(indexoid))
		args->purged = scan_expired(rel, indexoid, table,
									(int64) args->batch_size * args->max_batches, true, NULL);
	else if (args->max_batches == 1)
		args->purged = purge_one_batch(args->relid, name, expired, pred, args->batch_size,
									   table->delete_request_id != InvalidAttrNumber);
	else
		args->purged = purge_batches(args->relid, name, expired, pred, args->batch_size,
									  args->max_batches,
									  table->delete_request_id != InvalidAttrNumber);
	table_close(rel, NoLock);
	record_batch(args, name);
	SPI_finish();
}

/*
 * Purge expired rows of one table in the current transaction: at most
 * max_batches batches (0: all).  Returns the rows purged and the expired
 * rows skipped because their delete would reach protected data.
 */
void
kg_purge_table(Oid relid, int batch_size, int max_batches, bool dry_run,
			   int64 *purged, int64 *skipped)
{
	PurgeArgs	args = {relid, batch_size, max_batches, dry_run, NULL, 0, 0};

	kg_run_internal(purge_internal, &args, !dry_run);
	*purged = args.purged;
	*skipped = args.skipped;
}

/*
 * A purge run of the worker: one table, one transaction per step.
 *
 * purge.c chooses how a table is purged; the worker only decides when and
 * how fast (worker.c).  kg_purge_run_begin() computes the table's skip
 * predicate once per run and picks the path.  On the direct path a step
 * either reads the next expired rows ahead, in one pass over the purge
 * index, or deletes one batch of them, so the batches do not each walk
 * the index again past the entries of the rows deleted before; the list is
 * read again while it came back full.  On the statement path each step
 * is one DELETE batch.
 */
struct KgPurgeRun
{
	Oid			relid;
	char	   *predicate;		/* skip predicate for this run */
	int64		skipped;		/* expired rows it holds back */
	bool		direct;			/* direct path (else statement path) */
	bool		finished;
	ItemPointerData *tids;		/* direct path: rows read ahead */
	int			capacity;		/* ... room in tids */
	int			max_rows;		/* ... at most this many in the last list */
	int			ntids;			/* ... listed */
	int			done;			/* ... handled by the batches so far */
	int64		purged;			/* ... rows deleted from this list */
	MemoryContext cxt;			/* where the run and its list live */
};

typedef struct BeginArgs
{
	KgPurgeRun *run;
	MemoryContext cxt;
} BeginArgs;

static void
begin_internal(void *arg)
{
	BeginArgs  *args = (BeginArgs *) arg;
	KgPurgeRun *run = args->run;
	KgGuardedTable *table = kg_guarded_table(run->relid);
	char	   *pred;

	if (!purgeable(table))
	{
		run->finished = true;
		return;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	pred = skip_predicate(run->relid);
	run->skipped = spi_count(psprintf("SELECT count(*) FROM ONLY %s t"
									  " WHERE " KG_SQL_EXPIRED("t") " AND (%s)",
									  kg_relation_name(run->relid), pred));
	run->predicate = MemoryContextStrdup(args->cxt, pred);
	SPI_finish();

	if (run->direct)
	{
		Relation	rel = table_open(run->relid, AccessShareLock);

		run->direct = OidIsValid(direct_purge_index(rel, table));
		table_close(rel, AccessShareLock);
	}
	run->cxt = args->cxt;
}

/*
 * Start the purge of relid, in the current transaction; the run lives in
 * cxt, across the transactions of its steps.  A table that is gone or not
 * purgeable gives a finished run.
 */
KgPurgeRun *
kg_purge_run_begin(Oid relid, MemoryContext cxt)
{
	KgPurgeRun *run = MemoryContextAllocZero(cxt, sizeof(KgPurgeRun));
	BeginArgs	args = {run, cxt};

	run->relid = relid;
	run->direct = true;
	run->cxt = cxt;
	if (get_rel_name(relid) == NULL)
		run->finished = true;
	else
		kg_run_internal(begin_internal, &args, false);
	return run;
}

bool
kg_purge_run_finished(const KgPurgeRun *run)
{
	return run->finished;
}

void
kg_purge_run_end(KgPurgeRun *run)
{
	if (run->predicate)
		pfree(run->predicate);
	if (run->tids)
		pfree(run->tids);
	pfree(run);
}

/* Rows the next listing of the direct path reads ahead. */
static int
list_size(int batch_rows, int read_ahead)
{
	return (int) Min((int64) Max(batch_rows, 1) * Max(read_ahead, 1), KG_PURGE_MAX_READ_AHEAD);
}

/*
 * The activity the next step, with batches of batch_rows rows and listings
 * of read_ahead batches, shows in pg_stat_activity.
 */
char *
kg_purge_run_activity(const KgPurgeRun *run, int batch_rows, int read_ahead)
{
	char	   *name = kg_relation_name(run->relid);

	if (run->direct && run->done == run->ntids)
		return psprintf("keys_guard: listing expired rows of %s (up to %d)", name,
						list_size(batch_rows, read_ahead));
	if (run->direct)
		batch_rows = Min(batch_rows, run->ntids - run->done);
	return psprintf("keys_guard: purging %s (batch of %d rows)", name, batch_rows);
}

/* Direct path: list the next expired rows of the run. */
static void
list_internal(void *arg)
{
	KgPurgeRun *run = (KgPurgeRun *) arg;
	KgGuardedTable *table = kg_guarded_table(run->relid);
	Relation	rel;
	Oid			indexoid = InvalidOid;

	batch_requests_reset();
	run->ntids = run->done = 0;
	run->purged = 0;
	if (!purgeable(table))
		return;
	rel = table_open(run->relid, AccessShareLock);
	indexoid = direct_purge_index(rel, table);
	if (OidIsValid(indexoid))
		run->ntids = (int) scan_expired(rel, indexoid, table, run->max_rows, false, run->tids);
	table_close(rel, AccessShareLock);

	/* Nothing to purge: still a run, as purge_status shows it. */
	if (OidIsValid(indexoid) && run->ntids == 0)
	{
		PurgeArgs	none = {run->relid, 0, 0, false, run->predicate, 0, run->skipped};

		record_batch_alone(&none);
	}
}

typedef struct RowsArgs
{
	KgPurgeRun *run;
	int			ntids;
	int64		purged;			/* -1: the table needs the statement path now */
} RowsArgs;

/* Direct path: delete the next batch of listed rows that are still expired. */
static void
rows_internal(void *arg)
{
	RowsArgs   *args = (RowsArgs *) arg;
	KgPurgeRun *run = args->run;
	KgGuardedTable *table = kg_guarded_table(run->relid);
	PurgeArgs	batch = {run->relid, args->ntids, 1, false, run->predicate, 0, run->skipped};
	Relation	rel;

	batch_requests_reset();
	args->purged = 0;
	if (!purgeable(table))
		return;

	/*
	 * Checked again under the lock: a foreign key or trigger added since the
	 * rows were listed means the statement path from now on.  Adding either
	 * needs a lock that conflicts with this one.
	 */
	rel = table_open(run->relid, RowExclusiveLock);
	if (!OidIsValid(direct_purge_index(rel, table)))
	{
		table_close(rel, NoLock);
		args->purged = -1;
		return;
	}
	batch.purged = args->purged = delete_listed(rel, table, run->tids + run->done, args->ntids);
	table_close(rel, NoLock);
	record_batch_alone(&batch);
}

/*
 * One step of a run, in the current transaction (the caller commits it):
 * a batch of at most batch_rows rows, or on the direct path, when the rows
 * listed before are done, a listing of the next read_ahead batches.
 * Returns whether the step was a batch, after which the worker gives way
 * to the foreground; *handled is then the rows the batch took on (fewer
 * than batch_rows only at the end of a list or of the backlog).
 */
bool
kg_purge_run_step(KgPurgeRun *run, int batch_rows, int read_ahead, int *handled)
{
	*handled = 0;
	batch_rows = Max(batch_rows, 1);
	if (run->finished)
		return false;

	if (!run->direct)
	{
		PurgeArgs	args = {run->relid, batch_rows, 1, false,
		run->predicate, 0, run->skipped};

		kg_run_internal(purge_internal, &args, true);
		run->finished = args.purged < batch_rows;
		*handled = run->finished ? (int) args.purged : batch_rows;
		return true;
	}

	if (run->done == run->ntids)
	{
		run->max_rows = list_size(batch_rows, read_ahead);
		if (run->capacity < run->max_rows)
		{
			if (run->tids)
				pfree(run->tids);
			run->tids = MemoryContextAlloc(run->cxt, sizeof(ItemPointerData) * run->max_rows);
			run->capacity = run->max_rows;
		}
		kg_run_internal(list_internal, run, false);
		run->finished = (run->ntids == 0);
		return false;
	}

	{
		RowsArgs	args = {run, Min(batch_rows, run->ntids - run->done), 0};

		kg_run_internal(rows_internal, &args, true);
		if (args.purged < 0)
		{
			/* A foreign key or trigger came: the statement path next run. */
			run->finished = true;
			return false;
		}
		run->done += args.ntids;
		run->purged += args.purged;
		*handled = args.ntids;
	}

	/*
	 * A short list was the end of the backlog; a list whose rows were all
	 * held by other transactions waits for the next run.
	 */
	if (run->done == run->ntids && (run->ntids < run->max_rows || run->purged == 0))
		run->finished = true;
	return true;
}

static Datum
two_counts(FunctionCallInfo fcinfo, int64 a, int64 b)
{
	TupleDesc	desc;
	Datum		values[2] = {Int64GetDatum(a), Int64GetDatum(b)};
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "keys_guard: function must return a row type");
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls));
}

/*
 * keys_guard._purge_table(rel, batch_size, max_batches, dry_run)
 */
PG_FUNCTION_INFO_V1(keys_guard_purge_table);
Datum
keys_guard_purge_table(PG_FUNCTION_ARGS)
{
	int64		purged;
	int64		skipped;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("arguments of _purge_table must not be null")));
	if (PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch size must be positive")));
	kg_purge_table(PG_GETARG_OID(0), PG_GETARG_INT32(1), PG_GETARG_INT32(2),
				   PG_GETARG_BOOL(3), &purged, &skipped);
	return two_counts(fcinfo, purged, skipped);
}

typedef struct CountArgs
{
	Oid			relid;
	bool		expired_only;
	int64		a;
	int64		b;
} CountArgs;

static void
count_internal(void *arg)
{
	CountArgs  *args = (CountArgs *) arg;
	char	   *name = kg_relation_name(args->relid);
	bool		has_deleted_at = get_attnum(args->relid, KG_COL_DELETED_AT) != InvalidAttrNumber;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	if (!has_deleted_at)
	{
		args->a = args->expired_only ? 0 : spi_count(psprintf("SELECT count(*) FROM ONLY %s", name));
		args->b = 0;
	}
	else if (args->expired_only)
	{
		args->a = spi_count(psprintf("SELECT count(*) FROM ONLY %s t WHERE " KG_SQL_EXPIRED("t"),
									 name));
		args->b = spi_count(psprintf("SELECT count(*) FROM ONLY %s t WHERE " KG_SQL_DELETED("t"),
									 name));
	}
	else
	{
		args->a = spi_count(psprintf("SELECT count(*) FROM ONLY %s t WHERE " KG_SQL_LIVE("t"), name));
		args->b = spi_count(psprintf("SELECT count(*) FROM ONLY %s t WHERE " KG_SQL_DELETED("t"),
									 name));
	}
	SPI_finish();
}

/*
 * keys_guard._backlog(rel): soft-deleted rows past their grace (waiting for
 * the purge) and soft-deleted rows in all.
 */
PG_FUNCTION_INFO_V1(keys_guard_backlog);
Datum
keys_guard_backlog(PG_FUNCTION_ARGS)
{
	CountArgs	args = {PG_GETARG_OID(0), true, 0, 0};

	kg_run_internal(count_internal, &args, false);
	return two_counts(fcinfo, args.a, args.b);
}

/* keys_guard._count_rows(rel): live and soft-deleted rows, every tenant. */
PG_FUNCTION_INFO_V1(keys_guard_count_rows);
Datum
keys_guard_count_rows(PG_FUNCTION_ARGS)
{
	CountArgs	args = {PG_GETARG_OID(0), false, 0, 0};

	kg_run_internal(count_internal, &args, false);
	return two_counts(fcinfo, args.a, args.b);
}

PG_FUNCTION_INFO_V1(keys_guard_in_internal_operation);
Datum
keys_guard_in_internal_operation(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(kg_in_internal_operation());
}

typedef struct DropTenantArgs
{
	const char *id;
	int			dropped;
} DropTenantArgs;

static void
drop_tenant_internal(void *arg)
{
	DropTenantArgs *args = (DropTenantArgs *) arg;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(args->id)};
	bool		isnull;
	Datum		dropped;

	dropped = kg_call_own_function("_drop_expired_tenant", 1, types, values, &isnull);
	args->dropped = isnull ? 0 : DatumGetInt32(dropped);
}

/*
 * Drop one tenant whose deletion grace has passed (archiving its audit and
 * payment tables); 1 if dropped, 0 if it was not due.
 */
int
kg_drop_expired_tenant(const char *id)
{
	DropTenantArgs args = {id, 0};

	kg_run_internal(drop_tenant_internal, &args, true);
	return args.dropped;
}
