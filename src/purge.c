/*-------------------------------------------------------------------------
 *
 * purge.c
 *	  Hard-deleting soft-deleted rows after their grace (SPEC.md §9).
 *
 * One batch removes up to keys_guard.purge_batch_size expired rows of one
 * table, oldest deadline first, skipping rows another transaction has
 * locked (a restore in flight wins) and rows whose real delete would fail
 * or reach data that must stay (keys_guard._purge_skip_predicate()).  The
 * batch, its bookkeeping in keys_guard.purge_stats and its audit record
 * (counts, never rows) commit together, so a purge killed at any point
 * loses nothing and deletes nothing twice.  audit and payment tables are
 * never purged.
 *
 * The background worker runs one batch per transaction; purge_now() runs
 * the same code in the caller's transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"

#include "keys_guard.h"

int			keys_guard_purge_batch_size = 1000;

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

static char *
table_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

static int64
spi_count(const char *sql)
{
	bool		isnull;

	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "keys_guard: count failed: %s", sql);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* The rows of relid that must not be hard-deleted, as a SQL condition on t. */
static char *
skip_predicate(Oid relid)
{
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	bool		isnull;
	Datum		pred;

	if (SPI_execute_with_args("SELECT keys_guard._purge_skip_predicate($1, 't')",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "keys_guard: could not compute the purge predicate");
	pred = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? pstrdup("true") : TextDatumGetCString(pred);
}

static void
record_batch(PurgeArgs *args, const char *table)
{
	Oid			types[3] = {REGCLASSOID, INT8OID, INT8OID};
	Datum		values[3];
	StringInfoData detail;
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

	initStringInfo(&detail);
	appendStringInfo(&detail, "{\"rows\": " INT64_FORMAT ", \"skipped\": " INT64_FORMAT "}",
					 args->purged, args->skipped);
	{
		Oid			atypes[2] = {TEXTOID, TEXTOID};
		Datum		avalues[2] = {CStringGetTextDatum(table), CStringGetTextDatum(detail.data)};

		if (SPI_execute_with_args("SELECT keys_guard._audit('purge', $1, $2::jsonb)",
								  2, atypes, avalues, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "keys_guard: could not audit the purge");
	}
}

/*
 * One batch in its own statement: the worker's unit of work, one per
 * transaction.
 */
static int64
purge_one_batch(const char *name, const char *expired, const char *pred,
				int batch_size)
{
	char	   *sql = psprintf("WITH batch AS ("
							   " SELECT t.ctid FROM ONLY %s t WHERE %s AND NOT (%s)"
							   " ORDER BY t.hard_delete_at LIMIT %d FOR UPDATE OF t SKIP LOCKED)"
							   " DELETE FROM ONLY %s t"
							   " WHERE t.ctid = ANY (ARRAY(SELECT ctid FROM batch)) AND %s",
							   name, expired, pred, batch_size, name, expired);

	if (SPI_execute(sql, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "keys_guard: purge of %s failed", name);
	return (int64) SPI_processed;
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
purge_batches(const char *name, const char *expired, const char *pred,
			  int batch_size, int max_batches)
{
	Oid			tid_array[1] = {TIDARRAYOID};
	SPIPlanPtr	delete_plan;
	Portal		cursor;
	int64		purged = 0;
	int			batches = 0;

	delete_plan = SPI_prepare(psprintf("DELETE FROM ONLY %s t WHERE t.ctid = ANY ($1) AND %s",
									   name, expired), 1, tid_array);
	if (delete_plan == NULL)
		elog(ERROR, "keys_guard: could not prepare the purge of %s", name);
	cursor = SPI_cursor_open_with_args(NULL,
									   psprintf("SELECT t.ctid FROM ONLY %s t WHERE %s AND NOT (%s)"
												" ORDER BY t.hard_delete_at FOR UPDATE OF t SKIP LOCKED",
												name, expired, pred),
									   0, NULL, NULL, NULL, false, 0);
	for (;;)
	{
		SPITupleTable *fetched;
		Datum	   *tids;
		ArrayType  *array;
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
			tids[i] = SPI_getbinval(fetched->vals[i], fetched->tupdesc, 1, &isnull);
		array = construct_array(tids, (int) n, TIDOID, sizeof(ItemPointerData),
								false, TYPALIGN_SHORT);
		if (SPI_execute_plan(delete_plan, (Datum[]) {PointerGetDatum(array)},
							 NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "keys_guard: purge of %s failed", name);
		purged += SPI_processed;
		SPI_freetuptable(fetched);
		pfree(array);
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
	char	   *name;
	char	   *pred;
	const char *expired = "t.deleted_at IS NOT NULL AND t.hard_delete_at < now()";

	args->purged = 0;
	if (args->predicate == NULL)
		args->skipped = 0;
	if (table == NULL || !table->soft_delete || table->class != KG_CLASS_STANDARD)
		return;

	name = table_name(args->relid);
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

	if (args->max_batches == 1)
		args->purged = purge_one_batch(name, expired, pred, args->batch_size);
	else
		args->purged = purge_batches(name, expired, pred, args->batch_size,
									  args->max_batches);
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

typedef struct PrepareArgs
{
	Oid			relid;
	char	   *predicate;
	int64		skipped;
} PrepareArgs;

static void
prepare_internal(void *arg)
{
	PrepareArgs *args = (PrepareArgs *) arg;
	MemoryContext caller = CurrentMemoryContext;
	char	   *pred;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	pred = skip_predicate(args->relid);
	args->skipped = spi_count(psprintf("SELECT count(*) FROM ONLY %s t"
									   " WHERE t.deleted_at IS NOT NULL AND t.hard_delete_at < now()"
									   " AND (%s)", table_name(args->relid), pred));
	args->predicate = MemoryContextStrdup(caller, pred);
	SPI_finish();
}

/*
 * For a run of single-batch purges (the worker): the skip predicate of a
 * table and how many expired rows it holds back, computed once per run.
 */
char *
kg_purge_prepare(Oid relid, int64 *skipped)
{
	PrepareArgs args = {relid, NULL, 0};

	kg_run_internal(prepare_internal, &args, false);
	*skipped = args.skipped;
	return args.predicate;
}

/* One batch with a predicate from kg_purge_prepare(); returns rows purged. */
int64
kg_purge_batch(Oid relid, const char *predicate, int64 skipped, int batch_size)
{
	PurgeArgs	args = {relid, batch_size, 1, false, predicate, 0, skipped};

	kg_run_internal(purge_internal, &args, true);
	return args.purged;
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
	char	   *name = table_name(args->relid);
	bool		has_deleted_at = get_attnum(args->relid, "deleted_at") != InvalidAttrNumber;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	if (!has_deleted_at)
	{
		args->a = args->expired_only ? 0 : spi_count(psprintf("SELECT count(*) FROM ONLY %s", name));
		args->b = 0;
	}
	else if (args->expired_only)
	{
		args->a = spi_count(psprintf("SELECT count(*) FROM ONLY %s t"
									 " WHERE t.deleted_at IS NOT NULL AND t.hard_delete_at < now()",
									 name));
		args->b = spi_count(psprintf("SELECT count(*) FROM ONLY %s t WHERE t.deleted_at IS NOT NULL",
									 name));
	}
	else
	{
		args->a = spi_count(psprintf("SELECT count(*) FROM ONLY %s t WHERE t.deleted_at IS NULL", name));
		args->b = spi_count(psprintf("SELECT count(*) FROM ONLY %s t WHERE t.deleted_at IS NOT NULL",
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

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	if (SPI_execute_with_args("SELECT keys_guard._drop_expired_tenant($1)", 1, types, values,
							  NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: could not drop tenant \"%s\"", args->id);
	args->dropped = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												1, &isnull));
	SPI_finish();
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
