/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  keys_guard's background workers: a launcher and one worker per
 *	  database in which the extension is installed (docs/contract.md §9).
 *
 * The launcher connects to no database.  It lists the databases that allow
 * connections (restricted by keys_guard.database), starts a worker for
 * each, and restarts any that stops.  A worker that finds no keys_guard in
 * its database says so in shared memory and exits; the launcher leaves that
 * database alone until the extension's scripts (CREATE EXTENSION and
 * ALTER EXTENSION ... UPDATE call keys_guard._notify_worker()) or a reload
 * ask it to look again.  The notice takes effect when the script's
 * transaction commits: a worker started before that would not see the
 * extension yet.  Each notice also bumps the slot's generation, so a worker
 * that looked before the commit and found nothing looks again instead of
 * marking the database as without keys_guard.
 *
 * A database worker moves denial records from the shared queue into
 * keys_guard.audit_log; a backend that queues a record sets the worker's
 * latch, so records arrive within moments.  Backends wait for room when
 * the queue is full (audit.c), so the worker drains batch after batch,
 * also between purge batches, and frees slots only after each commit.  The skeleton is worker_spi's:
 * reload on SIGHUP, exit on SIGTERM, WL_EXIT_ON_PM_DEATH, one short
 * transaction per unit of work, visible in pg_stat_activity, and a
 * scratch memory context reset every loop (keys_guard_worker_main()).
 *
 * Every transaction of a database worker that reads or writes the
 * extension's tables locks the extension first (begin_extension_xact()),
 * as DROP EXTENSION does before it drops anything, and keys_guard's
 * utility hook before ALTER EXTENSION keys_guard UPDATE: the two then wait
 * for each other instead of deadlocking, each holding a table the other
 * opens next (audit_log, then the registry that keys_guard's own executor
 * hook reads, against DROP EXTENSION taking them in its own order).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "keys_guard.h"

#define KG_MAX_DATABASES 64

/* How long a database's worker stays away for DROP/RENAME DATABASE. */
#define KG_PAUSE_MS 10000

/* Least time between two starts of one database's worker. */
#define KG_RESTART_DELAY_MS 2000

/*
 * Most audit batches one call of drain_audit_queue() writes back to back:
 * under a flood the queue refills while a batch commits, and the purge
 * must still get its turn in between.
 */
#define KG_AUDIT_DRAIN_MAX_BATCHES 16

/*
 * While few records wait, the worker gives them KG_AUDIT_GATHER_MS to
 * become a batch before it writes them: a transaction for every record or
 * two (each enqueue sets the latch) would cost far more than the records,
 * under a steady stream such as the per-statement audit of API keys.  A
 * denial still reaches keys_guard.audit_log within milliseconds.
 */
#define KG_AUDIT_GATHER_MS 5
#define KG_AUDIT_GATHER_BELOW 256

typedef struct KgWorkerSlot
{
	Oid			dboid;			/* InvalidOid: free */
	pid_t		pid;			/* 0 while not running */
	Latch	   *latch;
	bool		no_extension;	/* last worker found no keys_guard here */
	uint32		ext_generation; /* bumped by each committed notice */
	TimestampTz paused_until;	/* DROP/RENAME DATABASE in progress */
} KgWorkerSlot;

typedef struct KgWorkerShared
{
	slock_t		mutex;
	Latch	   *launcher_latch;
	pid_t		launcher_pid;
	bool		rescan;			/* look at every database again */
	KgWorkerSlot slots[KG_MAX_DATABASES];
} KgWorkerShared;

static KgWorkerShared *shared = NULL;

static KgWorkerSlot *slot_for(Oid dboid, bool create);

PGDLLEXPORT void keys_guard_launcher_main(Datum main_arg);
PGDLLEXPORT void keys_guard_worker_main(Datum main_arg);

Size
kg_worker_shmem_size(void)
{
	return sizeof(KgWorkerShared);
}

void
kg_worker_shmem_init(void)
{
	bool		found;

	shared = ShmemInitStruct("keys_guard workers", sizeof(KgWorkerShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(KgWorkerShared));
		SpinLockInit(&shared->mutex);
	}
}

void
kg_worker_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "keys_guard");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "keys_guard_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "keys_guard launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "keys_guard launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * Wake the worker of a database (a record is waiting), or the launcher if
 * that database has no running worker.
 */
void
kg_worker_wake(Oid dboid)
{
	Latch	   *latch = NULL;
	int			i;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < KG_MAX_DATABASES; i++)
	{
		if (shared->slots[i].dboid == dboid && shared->slots[i].pid != 0)
		{
			latch = shared->slots[i].latch;
			break;
		}
	}
	if (latch == NULL)
	{
		shared->rescan = true;
		latch = shared->launcher_latch;
	}
	SpinLockRelease(&shared->mutex);
	if (latch)
		SetLatch(latch);
}

/*
 * Wake every running database worker (the audit queue is full and any of
 * them may hold records), and the launcher if the database dboid has none.
 */
void
kg_worker_wake_all(Oid dboid)
{
	Latch	   *latches[KG_MAX_DATABASES + 1];
	bool		has_worker = false;
	int			n = 0;
	int			i;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < KG_MAX_DATABASES; i++)
	{
		if (shared->slots[i].dboid != InvalidOid && shared->slots[i].pid != 0 &&
			shared->slots[i].latch != NULL)
		{
			latches[n++] = shared->slots[i].latch;
			if (shared->slots[i].dboid == dboid)
				has_worker = true;
		}
	}
	if (!has_worker && shared->launcher_latch != NULL)
	{
		shared->rescan = true;
		latches[n++] = shared->launcher_latch;
	}
	SpinLockRelease(&shared->mutex);
	for (i = 0; i < n; i++)
		SetLatch(latches[i]);
}

/*
 * The extension was created or updated in this database and that has
 * committed: the worker must (re)start and look again.
 */
static void
extension_changed(Oid dboid)
{
	Latch	   *latches[2];
	int			n = 0;
	int			i;
	KgWorkerSlot *slot;

	SpinLockAcquire(&shared->mutex);
	slot = slot_for(dboid, false);
	if (slot)
	{
		slot->no_extension = false;
		slot->ext_generation++;
		if (slot->pid != 0 && slot->latch != NULL)
			latches[n++] = slot->latch;
	}
	shared->rescan = true;
	if (shared->launcher_latch != NULL)
		latches[n++] = shared->launcher_latch;
	SpinLockRelease(&shared->mutex);
	for (i = 0; i < n; i++)
		SetLatch(latches[i]);
}

static bool notify_at_commit = false;

static void
notify_xact_callback(XactEvent event, void *arg)
{
	if (!notify_at_commit)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		notify_at_commit = false;
		extension_changed(MyDatabaseId);
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
		notify_at_commit = false;
}

/*
 * keys_guard._notify_worker(): called by the extension's scripts (CREATE
 * EXTENSION, ALTER EXTENSION ... UPDATE) so the worker of this database
 * starts as soon as their transaction commits, with no other event.
 */
PG_FUNCTION_INFO_V1(keys_guard_notify_worker);
Datum
keys_guard_notify_worker(PG_FUNCTION_ARGS)
{
	static bool registered = false;

	if (shared == NULL)
		PG_RETURN_VOID();
	if (!registered)
	{
		RegisterXactCallback(notify_xact_callback, NULL);
		registered = true;
	}
	notify_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * Stop the worker of a database and keep it stopped for a while, because
 * DROP DATABASE, ALTER DATABASE ... RENAME and CREATE DATABASE ... TEMPLATE
 * refuse to run while another session is connected to it.
 */
void
kg_worker_stop_database(Oid dboid)
{
	pid_t		pid = 0;
	int			waited_ms;

	if (shared == NULL || !OidIsValid(dboid))
		return;
	SpinLockAcquire(&shared->mutex);
	{
		KgWorkerSlot *slot = slot_for(dboid, false);

		if (slot)
		{
			slot->paused_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 KG_PAUSE_MS);
			pid = slot->pid;
		}
	}
	SpinLockRelease(&shared->mutex);
	if (pid == 0)
		return;

	(void) kill(pid, SIGTERM);
	for (waited_ms = 0; waited_ms < KG_PAUSE_MS; waited_ms += 10)
	{
		bool		gone;

		SpinLockAcquire(&shared->mutex);
		gone = (slot_for(dboid, false) == NULL || slot_for(dboid, false)->pid != pid);
		SpinLockRelease(&shared->mutex);
		if (gone)
			return;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10 * 1000L);
	}
}

/*
 * Whether keys_guard.database lets the worker serve this database (the
 * audit queue asks too: records of a database without a worker would
 * never leave it).
 */
bool
kg_worker_serves_database(const char *dbname)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		served = false;

	if (keys_guard_database == NULL || keys_guard_database[0] == '\0')
		return true;
	raw = pstrdup(keys_guard_database);
	if (!SplitIdentifierString(raw, ',', &names))
	{
		ereport(LOG,
				(errmsg("keys_guard: invalid list syntax in keys_guard.database")));
		return false;
	}
	foreach(lc, names)
	{
		if (strcmp((char *) lfirst(lc), dbname) == 0)
			served = true;
	}
	return served;
}

/* The databases the launcher should serve. */
static List *
served_databases(void)
{
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		if (db->datallowconn && !db->datistemplate &&
			kg_worker_serves_database(NameStr(db->datname)))
		{
			MemoryContext old = MemoryContextSwitchTo(caller);

			result = lappend_oid(result, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	return result;
}

typedef struct LauncherEntry
{
	Oid			dboid;
	BackgroundWorkerHandle *handle;
	TimestampTz last_start;
} LauncherEntry;

static LauncherEntry launched[KG_MAX_DATABASES];

static KgWorkerSlot *
slot_for(Oid dboid, bool create)
{
	KgWorkerSlot *free_slot = NULL;
	int			i;

	for (i = 0; i < KG_MAX_DATABASES; i++)
	{
		if (shared->slots[i].dboid == dboid)
			return &shared->slots[i];
		if (free_slot == NULL && shared->slots[i].dboid == InvalidOid)
			free_slot = &shared->slots[i];
	}
	if (create && free_slot)
	{
		free_slot->dboid = dboid;
		free_slot->pid = 0;
		free_slot->latch = NULL;
		free_slot->no_extension = false;
		free_slot->ext_generation = 0;
		free_slot->paused_until = 0;
		return free_slot;
	}
	return NULL;
}

static bool
worker_is_running(LauncherEntry *entry)
{
	pid_t		pid;

	return entry->handle != NULL &&
		GetBackgroundWorkerPid(entry->handle, &pid) != BGWH_STOPPED;
}

static void
start_database_worker(LauncherEntry *entry)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "keys_guard");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "keys_guard_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "keys_guard worker for database %u", entry->dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "keys_guard worker");
	worker.bgw_main_arg = ObjectIdGetDatum(entry->dboid);
	worker.bgw_notify_pid = MyProcPid;

	entry->last_start = GetCurrentTimestamp();
	if (!RegisterDynamicBackgroundWorker(&worker, &entry->handle))
	{
		entry->handle = NULL;
		ereport(LOG,
				(errmsg("keys_guard: could not start the worker for database %u", entry->dboid),
				 errhint("Consider raising max_worker_processes.")));
	}
}

/*
 * One launcher pass: make sure every served database with keys_guard has a
 * running worker.
 */
static void
launcher_pass(bool rescan)
{
	List	   *dbs = served_databases();
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();

	foreach(lc, dbs)
	{
		Oid			dboid = lfirst_oid(lc);
		LauncherEntry *entry = NULL;
		KgWorkerSlot *slot;
		bool		skip;
		int			i;

		for (i = 0; i < KG_MAX_DATABASES; i++)
		{
			if (launched[i].dboid == dboid || (entry == NULL && launched[i].dboid == InvalidOid))
			{
				entry = &launched[i];
				if (launched[i].dboid == dboid)
					break;
			}
		}
		if (entry == NULL)
		{
			ereport(LOG,
					(errmsg("keys_guard: more than %d databases; database %u is not served",
							KG_MAX_DATABASES, dboid)));
			continue;
		}
		entry->dboid = dboid;

		SpinLockAcquire(&shared->mutex);
		slot = slot_for(dboid, true);
		if (slot && rescan)
			slot->no_extension = false;
		skip = (slot == NULL || slot->no_extension || slot->paused_until > now);
		SpinLockRelease(&shared->mutex);

		if (skip || worker_is_running(entry))
			continue;
		if (entry->last_start != 0 &&
			!TimestampDifferenceExceeds(entry->last_start, now, KG_RESTART_DELAY_MS))
			continue;
		start_database_worker(entry);
	}

	/* Stop the workers of databases that are no longer served. */
	{
		int			i;

		for (i = 0; i < KG_MAX_DATABASES; i++)
		{
			LauncherEntry *entry = &launched[i];

			if (entry->dboid == InvalidOid || list_member_oid(dbs, entry->dboid))
				continue;
			if (worker_is_running(entry))
				TerminateBackgroundWorker(entry->handle);
			SpinLockAcquire(&shared->mutex);
			{
				KgWorkerSlot *slot = slot_for(entry->dboid, false);

				if (slot && slot->pid == 0)
					slot->dboid = InvalidOid;
			}
			SpinLockRelease(&shared->mutex);
			if (!worker_is_running(entry))
			{
				/* Dropped or no longer served: its records cannot leave. */
				kg_audit_forget(entry->dboid);
				entry->dboid = InvalidOid;
				entry->handle = NULL;
				entry->last_start = 0;
			}
		}
	}
	list_free(dbs);
}

/*
 * Entry point of the launcher.
 */
void
keys_guard_launcher_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("keys_guard launcher");

	SpinLockAcquire(&shared->mutex);
	shared->launcher_latch = MyLatch;
	shared->launcher_pid = MyProcPid;
	shared->rescan = true;
	SpinLockRelease(&shared->mutex);

	for (;;)
	{
		bool		rescan;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			SpinLockAcquire(&shared->mutex);
			shared->rescan = true;
			SpinLockRelease(&shared->mutex);
		}

		SpinLockAcquire(&shared->mutex);
		rescan = shared->rescan;
		shared->rescan = false;
		SpinLockRelease(&shared->mutex);

		launcher_pass(rescan);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 KG_RESTART_DELAY_MS, PG_WAIT_EXTENSION);
	}
}

static void
worker_detach(int code, Datum arg)
{
	KgWorkerSlot *slot = (KgWorkerSlot *) DatumGetPointer(arg);

	SpinLockAcquire(&shared->mutex);
	slot->pid = 0;
	slot->latch = NULL;
	SpinLockRelease(&shared->mutex);
}

/*
 * Whether keys_guard is installed in this worker's database; *complete
 * says whether its SQL objects match this library (after an upgrade of the
 * library without ALTER EXTENSION ... UPDATE they do not, and the worker
 * then only moves audit records).
 */
static bool
extension_installed(KgWorkerSlot *slot, bool *complete)
{
	bool		installed;
	uint32		generation;
	MemoryContext caller = CurrentMemoryContext;

	for (;;)
	{
		SpinLockAcquire(&shared->mutex);
		generation = slot->ext_generation;
		SpinLockRelease(&shared->mutex);

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		installed = OidIsValid(get_extension_oid("keys_guard", true));
		*complete = installed && kg_extension_complete() &&
			OidIsValid(get_relname_relid("purge_stats", get_namespace_oid("keys_guard", false)));
		CommitTransactionCommand();
		MemoryContextSwitchTo(caller);
		if (installed)
			return true;

		/*
		 * Not there.  Unless CREATE EXTENSION committed while we looked (its
		 * notice bumped the generation), say so for the launcher.
		 */
		SpinLockAcquire(&shared->mutex);
		if (slot->ext_generation == generation)
		{
			slot->no_extension = true;
			SpinLockRelease(&shared->mutex);
			return false;
		}
		SpinLockRelease(&shared->mutex);
	}
}

/*
 * This database has no keys_guard (any more): its queued records have no
 * audit_log to go to.  The launcher starts a worker again when the
 * extension is created.
 */
static void
exit_without_extension(KgWorkerSlot *slot)
{
	kg_audit_forget(MyDatabaseId);
	proc_exit(0);
}

/*
 * Start a transaction on the extension's tables: lock the extension
 * (AccessShareLock on its pg_extension entry, which DROP EXTENSION locks
 * AccessExclusive before it drops a member), then look again, since a
 * DROP EXTENSION that held the lock may have committed while we waited.
 * Returns false, the transaction started, when keys_guard is not there any
 * more; the caller commits and does nothing else in it (the loop then
 * finds the extension gone: keys_guard_worker_main()).
 */
static bool
begin_extension_xact(void)
{
	Oid			extoid;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	extoid = get_extension_oid("keys_guard", true);
	if (!OidIsValid(extoid))
		return false;
	LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
	/* Taking the lock read the invalidations; read the catalog afresh. */
	InvalidateCatalogSnapshot();
	return get_extension_oid("keys_guard", true) == extoid;
}

/* When the last drain failed; the next waits a second (no retry loop). */
static TimestampTz drain_failed_at = 0;

/*
 * After an error in one of the worker's own transactions: report it, abort
 * the transaction and return to the caller's memory context.
 */
static void
report_and_abort(MemoryContext caller)
{
	MemoryContextSwitchTo(caller);
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(caller);
}

/*
 * Move queued audit records into audit_log, a batch per transaction, until
 * none of this database's is left (or KG_AUDIT_DRAIN_MAX_BATCHES; the
 * latch brings the worker back at once).  The slots of a batch are freed (and
 * the backends waiting for room woken) only after its commit; a batch that
 * fails stays queued for the next try.
 */
/*
 * API key windows that have been open long enough become queued records,
 * in a transaction of their own (the records name relations).  A failure
 * is logged; the windows it had taken are lost, and the log says so.
 */
static void
close_key_windows(void)
{
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		kg_audit_close_windows();
		CommitTransactionCommand();
		MemoryContextSwitchTo(caller);
	}
	PG_CATCH();
	{
		report_and_abort(caller);
	}
	PG_END_TRY();
}

static void
drain_audit_queue(void)
{
	MemoryContext caller = CurrentMemoryContext;
	volatile int written = 1;
	int			batches;
	int			pending;

	close_key_windows();
	if (drain_failed_at != 0 &&
		!TimestampDifferenceExceeds(drain_failed_at, GetCurrentTimestamp(), 1000))
		return;
	pending = kg_audit_pending();
	if (pending == 0)
		return;
	if (pending < KG_AUDIT_GATHER_BELOW)
		pg_usleep(KG_AUDIT_GATHER_MS * 1000L);
	for (batches = 0; batches < KG_AUDIT_DRAIN_MAX_BATCHES && written > 0 &&
		 kg_audit_pending() > 0; batches++)
	{
		if (!begin_extension_xact())
		{
			/* Its records stay queued until the loop forgets them. */
			CommitTransactionCommand();
			MemoryContextSwitchTo(caller);
			break;
		}
		PG_TRY();
		{
			SPI_connect();
			PushActiveSnapshot(GetTransactionSnapshot());
			pgstat_report_activity(STATE_RUNNING, "keys_guard: writing audit records");
			written = kg_audit_drain();
			SPI_finish();
			PopActiveSnapshot();
			CommitTransactionCommand();
			MemoryContextSwitchTo(caller);
		}
		PG_CATCH();
		{
			report_and_abort(caller);
			kg_audit_release(false);
			drain_failed_at = GetCurrentTimestamp();
			pgstat_report_activity(STATE_IDLE, NULL);
			return;
		}
		PG_END_TRY();
		kg_audit_release(true);
		drain_failed_at = 0;
		if (written > 0)
			elog(DEBUG1, "keys_guard: wrote %d audit records", written);
		CHECK_FOR_INTERRUPTS();
	}
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Run one query in its own transaction and return its first column as oids or text. */
static List *
query_list(const char *sql, bool as_text)
{
	List	   *result = NIL;
	MemoryContext caller = CurrentMemoryContext;
	uint64		i;

	if (!begin_extension_xact())
	{
		CommitTransactionCommand();
		MemoryContextSwitchTo(caller);
		return NIL;
	}
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: worker query failed");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		value = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(caller);

		if (as_text)
			result = lappend(result, TextDatumGetCString(value));
		else
			result = lappend_oid(result, DatumGetObjectId(value));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	return result;
}

/*
 * Record a failed unit of work where operators look: the server log,
 * keys_guard.purge_stats (for a table) and the audit log (outcome error).
 */
static void
record_failure(const char *action, Oid relid, const char *target, const char *message)
{
	Oid			types[2] = {REGCLASSOID, TEXTOID};
	Datum		values[2];
	KgAuditDetail *detail;
	MemoryContext caller = CurrentMemoryContext;

	if (OidIsValid(relid))
		ereport(LOG,
				(errmsg("keys_guard: purge of %s failed", target),
				 errdetail_internal("%s", message)));
	else
		ereport(LOG,
				(errmsg("keys_guard: dropping tenant schema %s failed", target),
				 errdetail_internal("%s", message)));

	detail = kg_audit_detail();
	kg_audit_detail_text(detail, "error", message);
	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(message);

	/* Recording must not take the worker down: if it fails, the log has it. */
	PG_TRY();
	{
		/* With the extension gone, the log above is the only record. */
		if (begin_extension_xact())
		{
			SPI_connect();
			PushActiveSnapshot(GetTransactionSnapshot());
			if (OidIsValid(relid))
				(void) SPI_execute_with_args("INSERT INTO keys_guard.purge_stats AS s (relid, last_error, last_error_at)"
											 " VALUES ($1, $2, now()) ON CONFLICT (relid) DO UPDATE"
											 " SET last_error = $2, last_error_at = now()",
											 2, types, values, NULL, false, 0);
			kg_audit_write(action, target, KG_OUTCOME_ERROR, detail);
			SPI_finish();
			PopActiveSnapshot();
		}
		CommitTransactionCommand();
		MemoryContextSwitchTo(caller);
	}
	PG_CATCH();
	{
		report_and_abort(caller);
	}
	PG_END_TRY();
}

typedef enum WorkKind
{
	WORK_PURGE_BEGIN,			/* start the purge run of a table */
	WORK_PURGE_STEP,			/* one step of it (purge.c decides what) */
	WORK_DROP_TENANT
} WorkKind;

/* One unit of work of a purge run. */
typedef struct WorkUnit
{
	WorkKind	kind;
	Oid			relid;			/* WORK_PURGE_BEGIN */
	const char *tenant;			/* WORK_DROP_TENANT */
	KgPurgeRun *run;			/* WORK_PURGE_BEGIN sets, WORK_PURGE_STEP runs */
	bool		deleted;		/* WORK_PURGE_STEP: it deleted a batch */
	int			handled;		/* ... of this many rows */
} WorkUnit;

/*
 * The purge's pace (docs/design.md, "How the purge paces itself").  Like autovacuum's
 * cost-based delay, the worker works, then pauses in proportion to the
 * work; unlike it, the unit of work is time, and the pause depends on
 * whether anyone else is using the server:
 *
 * - idle (other sessions have not been seen running statements twice
 *   within KG_PACE_IDLE_AFTER_MS, the last time at most that long ago):
 *   batches of about keys_guard.purge_batch_time, no pause.  One sighting
 *   alone (a monitoring query now and then) does not slow the purge;
 *   sustained work does;
 * - busy: the worker purges keys_guard.purge_busy_duty of the time.  A
 *   batch of W ms is followed by a pause of W * (1 - duty) / duty ms, and
 *   the batches are sized to take about purge_batch_delay * duty /
 *   (1 - duty) ms, so that the pause is about purge_batch_delay: short
 *   transactions that hold their locks briefly.  A batch slowed down by
 *   the load earns a longer pause.
 *
 * The batch size follows the time the last full batch took per row: a
 * slow machine or a slow table gets smaller batches by itself.  It may
 * grow by KG_PACE_MAX_GROWTH at a time, shrink at once, and stays between
 * KG_PACE_MIN_BATCH and keys_guard.purge_batch_size.  Each table's run
 * starts with KG_PACE_FIRST_BATCH rows.  A larger batch should cost less
 * per row; one that costs KG_PACE_WORSE times more per row than the
 * cheapest batch of the run (as the statement path's large batches do)
 * caps the run's batches at the size of the cheapest.  keys_guard.purge_batch_delay = 0 means full speed:
 * batches of purge_batch_time and no pause, whatever the load.
 *
 * The load is sampled from the PGPROC array without a lock: a process
 * runs a statement while it holds a snapshot (its xmin is set) and does
 * not wait for its client.  Autovacuum, keys_guard's launcher and workers
 * and this worker do not count (the launcher lists the databases to serve
 * every 2 s).  A sample is taken after each batch and every
 * KG_PACE_SAMPLE_MS during a pause.
 *
 * A run that starts after a quiet spell (no sample for KG_PACE_IDLE_AFTER_MS:
 * a new worker, or the next pass after purge_naptime) knows nothing of the
 * load.  Taking that for idle gave a busy server a burst of growing batches
 * until the second sighting; so the run first looks, a sample every
 * KG_PACE_SAMPLE_MS as during a pause (a statement shorter than that is
 * seen once at most) for at most KG_PACE_LOOK_MS (a busy server shows
 * itself twice within a few samples), and its first batch has
 * KG_PACE_MIN_BATCH rows if the server is busy.
 */
#define KG_PACE_IDLE_AFTER_MS	500
#define KG_PACE_SAMPLE_MS		5
#define KG_PACE_LOOK_MS			40
#define KG_PACE_MAX_GROWTH		4
#define KG_PACE_MIN_BATCH		100
#define KG_PACE_FIRST_BATCH		1000
#define KG_PACE_WORSE			2.0
#define KG_PACE_MAX_PAUSE_MS	(10 * keys_guard_purge_batch_delay)

/*
 * How many batches one listing of the direct path reads ahead: on an idle
 * server a few, at full speed many; while the server is busy one, so that
 * no step runs much longer than a batch: the foreground feels long bursts
 * more than the total.
 */
#define KG_READ_AHEAD_IDLE		4
#define KG_READ_AHEAD_FULL		16

typedef struct PurgePace
{
	int			batch_rows;		/* rows of the next batch */
	double		ms_per_row;		/* of the last full batch; 0: none yet */
	double		best_ms_per_row;	/* the cheapest rows of this run ... */
	int			best_rows;		/* ... came in batches of this size */
	int			cap_rows;		/* larger batches cost more per row */
	double		worked_ms;		/* work since the last pause */
	TimestampTz last_busy;		/* when another session was last seen busy */
	TimestampTz prev_busy;		/* ... and the time before */
	TimestampTz last_sample;	/* when the load was last sampled */
} PurgePace;

static PurgePace pace;

/* Is pid keys_guard's launcher or one of its database workers? */
static bool
is_keys_guard_worker(int pid)
{
	int			i;

	if (pid == shared->launcher_pid)
		return true;
	for (i = 0; i < KG_MAX_DATABASES; i++)
	{
		if (shared->slots[i].pid == pid)
			return true;
	}
	return false;
}

/*
 * Is another session running a statement right now?  Read without a lock:
 * a sample may be stale by a moment, which only shifts the pace.
 */
static bool
others_running(void)
{
	int			i;

	for (i = 0; i < ProcGlobal->allProcCount; i++)
	{
		volatile PGPROC *proc = &ProcGlobal->allProcs[i];
		int			pid = proc->pid;

		if (pid == 0 || proc == MyProc)
			continue;
		if (!TransactionIdIsValid(proc->xmin))
			continue;
		if (proc->statusFlags & PROC_IS_AUTOVACUUM)
			continue;
		if (proc->wait_event_info == WAIT_EVENT_CLIENT_READ)
			continue;
		if (is_keys_guard_worker(pid))
			continue;
		return true;
	}
	return false;
}

/* Take a load sample. */
static void
pace_sample(TimestampTz now)
{
	pace.last_sample = now;
	if (others_running())
	{
		pace.prev_busy = pace.last_busy;
		pace.last_busy = now;
	}
}

/* Does the worker give way to other sessions now? */
static bool
pace_busy(void)
{
	if (keys_guard_purge_batch_delay == 0 || pace.prev_busy == 0)
		return false;
	return !TimestampDifferenceExceeds(pace.prev_busy, pace.last_busy, KG_PACE_IDLE_AFTER_MS) &&
		!TimestampDifferenceExceeds(pace.last_busy, GetCurrentTimestamp(), KG_PACE_IDLE_AFTER_MS);
}

/* The time the next batch should take, in ms. */
static double
pace_batch_ms(void)
{
	double		duty = keys_guard_purge_busy_duty;

	if (pace_busy() && duty < 1.0)
		return Min((double) keys_guard_purge_batch_time,
				   keys_guard_purge_batch_delay * duty / (1.0 - duty));
	return keys_guard_purge_batch_time;
}

static int
pace_read_ahead(void)
{
	if (keys_guard_purge_batch_delay == 0)
		return KG_READ_AHEAD_FULL;
	return pace_busy() ? 1 : KG_READ_AHEAD_IDLE;
}

/* Size the next batch from the time per row of the last full one. */
static void
pace_size_batch(void)
{
	int			max_rows = keys_guard_purge_batch_size;
	double		rows;

	if (pace.ms_per_row > 0)
	{
		rows = pace_batch_ms() / pace.ms_per_row;
		rows = Min(rows, (double) pace.batch_rows * KG_PACE_MAX_GROWTH);
	}
	else if (pace_busy())
		rows = KG_PACE_MIN_BATCH;
	else
		rows = pace.batch_rows;
	if (pace.cap_rows > 0)
		rows = Min(rows, (double) pace.cap_rows);
	rows = Max(rows, (double) Min(KG_PACE_MIN_BATCH, max_rows));
	pace.batch_rows = (int) Min(rows, (double) max_rows);
}

/* A purge run starts: its first batch has KG_PACE_FIRST_BATCH rows. */
static void
pace_start_run(void)
{
	pace.batch_rows = Min(KG_PACE_FIRST_BATCH, keys_guard_purge_batch_size);
	pace.ms_per_row = 0;
	pace.best_ms_per_row = 0;
	pace.best_rows = 0;
	pace.cap_rows = 0;
	pace.worked_ms = 0;
}

/*
 * Wait for up to ms, sampling the load every KG_PACE_SAMPLE_MS; with
 * until_busy, stop as soon as the server counts as busy.  A latch (a
 * denial to record) cuts the wait short.
 */
static void
pace_wait(long ms, bool until_busy)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	long		left = ms;

	while (left > 0 && !(until_busy && pace_busy()))
	{
		int			rc;

		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   Min(left, KG_PACE_SAMPLE_MS), PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			break;
		}
		pace_sample(GetCurrentTimestamp());
		left = (long) (end - GetCurrentTimestamp()) / 1000;
	}
}

/*
 * Before a run's first batch: after a quiet spell, look at the load until
 * the server shows itself busy, for at most KG_PACE_LOOK_MS.
 */
static void
pace_look(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (keys_guard_purge_batch_delay == 0 ||
		!TimestampDifferenceExceeds(pace.last_sample, now, KG_PACE_IDLE_AFTER_MS))
		return;
	pace_sample(now);
	pace_wait(KG_PACE_LOOK_MS, true);
}

/*
 * A step took ms; if it was a batch of rows rows, of which the worker had
 * asked for asked, learn its time per row.
 */
static void
pace_step_done(double ms, bool batch, int rows, int asked)
{
	pace.worked_ms += ms;
	if (!batch || rows <= 0 || rows < asked)
		return;
	pace.ms_per_row = ms / rows;
	if (pace.best_ms_per_row == 0 || pace.ms_per_row < pace.best_ms_per_row)
	{
		pace.best_ms_per_row = pace.ms_per_row;
		pace.best_rows = rows;
	}
	else if (rows > pace.best_rows && pace.ms_per_row > KG_PACE_WORSE * pace.best_ms_per_row)
		pace.cap_rows = pace.best_rows;
}

/*
 * After a batch: if other sessions are busy, pause in proportion to the
 * work since the last pause, sampling the load as it goes; a latch (a
 * denial to record) cuts the pause short.  On an idle server, go on.
 */
static void
pace_pause(void)
{
	double		duty = keys_guard_purge_busy_duty;

	pace_sample(GetCurrentTimestamp());
	if (pace_busy() && duty < 1.0)
		pace_wait((long) Min(pace.worked_ms * (1.0 - duty) / duty, (double) KG_PACE_MAX_PAUSE_MS),
				  false);
	pace.worked_ms = 0;
	pace_size_batch();
}

/*
 * The unit's target, for pg_stat_activity and failure records, or NULL if
 * its table is gone.  Called inside the unit's transaction.
 */
static char *
unit_target(WorkUnit *unit, char **activity)
{
	switch (unit->kind)
	{
		case WORK_PURGE_BEGIN:
			if (get_rel_name(unit->relid) == NULL)
				return NULL;
			*activity = psprintf("keys_guard: preparing the purge of %s",
								 kg_relation_name(unit->relid));
			return kg_relation_name(unit->relid);
		case WORK_PURGE_STEP:
			if (get_rel_name(unit->relid) == NULL)
				return NULL;
			*activity = kg_purge_run_activity(unit->run, pace.batch_rows, pace_read_ahead());
			return kg_relation_name(unit->relid);
		case WORK_DROP_TENANT:
			*activity = psprintf("keys_guard: dropping tenant %s", unit->tenant);
			return psprintf(KG_TENANT_SCHEMA_PREFIX "%s", unit->tenant);
	}
	return NULL;
}

static void
do_unit(WorkUnit *unit, MemoryContext caller)
{
	switch (unit->kind)
	{
		case WORK_PURGE_BEGIN:
			unit->run = kg_purge_run_begin(unit->relid, caller);
			break;
		case WORK_PURGE_STEP:
			unit->deleted = kg_purge_run_step(unit->run, pace.batch_rows, pace_read_ahead(),
											  &unit->handled);
			break;
		case WORK_DROP_TENANT:
			(void) kg_drop_expired_tenant(unit->tenant);
			break;
	}
}

/*
 * The request a unit of work finishes, for its log lines (redact.c adds it
 * to every line while kg_log_request_id is set): for a tenant drop, the
 * request of the delete_tenant() that scheduled it, from its audit record
 * (found through the audit log's index on at, from the tenant's
 * deleted_at).  A purge batch names the requests whose rows it removes
 * itself, as it meets them (purge.c).
 */
static char unit_request_id[KG_REQUEST_ID_MAXLEN + 1];

static void
note_unit_request(WorkUnit *unit)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	Datum		d;

	kg_log_request_id = NULL;
	if (unit->kind != WORK_DROP_TENANT)
		return;
	values[0] = CStringGetTextDatum(unit->tenant);
	if (SPI_connect() != SPI_OK_CONNECT)
		return;
	if (SPI_execute_with_args("SELECT a.request_id FROM keys_guard.tenant t"
							  " JOIN keys_guard.audit_log a ON a.at >= t.deleted_at"
							  " AND a.action = 'delete_tenant' AND a.target = t.schema_name"
							  " WHERE t.id = $1 AND a.request_id IS NOT NULL"
							  " ORDER BY a.at LIMIT 1",
							  1, types, values, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
		{
			text_to_cstring_buffer(DatumGetTextPP(d), unit_request_id,
								   sizeof(unit_request_id));
			kg_log_request_id = unit_request_id;
		}
	}
	SPI_finish();
}

/*
 * One unit of work in its own transaction; a failure is recorded and the
 * worker goes on with the next one.  Returns false if the unit failed or
 * its table is gone.
 */
static bool
run_unit(WorkUnit *unit)
{
	volatile bool ok = true;
	MemoryContext caller = CurrentMemoryContext;
	bool		purge = (unit->kind != WORK_DROP_TENANT);
	char	   *activity = NULL;
	char	   *target;

	if (!begin_extension_xact())
	{
		CommitTransactionCommand();
		MemoryContextSwitchTo(caller);
		return false;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	target = unit_target(unit, &activity);
	if (target == NULL)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(caller);
		return false;
	}
	target = MemoryContextStrdup(caller, target);
	pgstat_report_activity(STATE_RUNNING, activity);
	PG_TRY();
	{
		/*
		 * A batch and its counts commit together, so a commit lost in a crash
		 * only means the batch runs again: no need to wait for the WAL flush,
		 * which would also slow every other commit.
		 */
		if (unit->kind == WORK_PURGE_STEP)
			(void) set_config_option("synchronous_commit", "off", PGC_SUSET, PGC_S_SESSION,
									 GUC_ACTION_LOCAL, true, ERROR, false);
		note_unit_request(unit);
		do_unit(unit, caller);
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(caller);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(caller);
		record_failure(purge ? "purge" : "drop_tenant", purge ? unit->relid : InvalidOid,
					   target, edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	kg_log_request_id = NULL;
	pfree(target);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

static void
process_interrupts_and_reload(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* Between two batches: settings, denials, and room for the foreground. */
static void
between_batches(void)
{
	process_interrupts_and_reload();
	drain_audit_queue();
	pace_pause();
}

/*
 * Purge one table: its run, step after step, each in its own transaction,
 * at the pace above.  A failed step ends the run; the next run starts
 * over.
 */
static void
purge_table(Oid relid)
{
	WorkUnit	unit = {WORK_PURGE_BEGIN, relid};

	pace_start_run();
	if (!run_unit(&unit))
		return;
	unit.kind = WORK_PURGE_STEP;
	if (!kg_purge_run_finished(unit.run))
		pace_look();
	pace_size_batch();
	for (;;)
	{
		int			asked = pace.batch_rows;
		instr_time	start;
		instr_time	duration;
		bool		ok;

		if (kg_purge_run_finished(unit.run))
			break;
		INSTR_TIME_SET_CURRENT(start);
		ok = run_unit(&unit);
		INSTR_TIME_SET_CURRENT(duration);
		INSTR_TIME_SUBTRACT(duration, start);
		if (!ok)
			break;
		pace_step_done(INSTR_TIME_GET_MILLISEC(duration), unit.deleted, unit.handled, asked);
		if (unit.deleted)
			between_batches();
	}
	kg_purge_run_end(unit.run);
}

/*
 * One purge run: every standard soft-delete table, batch after batch, then
 * the tenants whose deletion grace has passed.  Denials keep reaching the
 * audit log in between, and a reload changes the batch size at once.
 */
static void
run_purge(void)
{
	List	   *tables = query_list("SELECT relid FROM keys_guard.guarded_table"
									" WHERE soft_delete AND class = 'standard' ORDER BY relid", false);
	List	   *tenants;
	ListCell   *lc;

	foreach(lc, tables)
	{
		purge_table(lfirst_oid(lc));
		process_interrupts_and_reload();
		drain_audit_queue();
	}
	list_free(tables);

	tenants = query_list("SELECT id FROM keys_guard.tenant"
						 " WHERE status = 'deleted' AND hard_delete_at < now() ORDER BY id", true);
	foreach(lc, tenants)
	{
		WorkUnit	unit = {WORK_DROP_TENANT, InvalidOid, (char *) lfirst(lc)};

		(void) run_unit(&unit);
		process_interrupts_and_reload();
	}
	list_free_deep(tenants);
}

/*
 * Entry point of a database worker.
 */
void
keys_guard_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	KgWorkerSlot *slot;
	TimestampTz next_purge = 0;
	bool		complete;
	MemoryContext loop_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("keys_guard worker");

	/*
	 * The worker runs as the bootstrap superuser; a search_path that the
	 * database's owner set (ALTER DATABASE ... SET) must not pick the
	 * operators and functions its statements name.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	SpinLockAcquire(&shared->mutex);
	slot = slot_for(dboid, true);
	if (slot)
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
	}
	SpinLockRelease(&shared->mutex);
	if (slot == NULL)
		proc_exit(0);
	before_shmem_exit(worker_detach, PointerGetDatum(slot));

	/* Records a killed predecessor had taken but not released. */
	kg_audit_reclaim();
	if (!extension_installed(slot, &complete))
		exit_without_extension(slot);

	/* The first purge comes one naptime after the worker starts. */
	next_purge = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 keys_guard_purge_naptime * 1000L);

	/*
	 * Scratch memory of one loop iteration (pg_cron's loop context,
	 * TimescaleDB's scheduler): whatever a pass allocates outside its
	 * transactions (table and tenant lists, skip predicates, failure
	 * records) is freed at the top of the next, so a worker that runs for
	 * months does not grow.  Each helper below returns to it after its
	 * transaction ends, which leaves TopMemoryContext current.
	 */
	loop_context = AllocSetContextCreate(TopMemoryContext, "keys_guard worker loop",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz now;

		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);
		ResetLatch(MyLatch);
		process_interrupts_and_reload();

		/* A naptime shortened by a reload counts from now, not from before. */
		now = GetCurrentTimestamp();
		if (next_purge > TimestampTzPlusMilliseconds(now, keys_guard_purge_naptime * 1000L))
			next_purge = TimestampTzPlusMilliseconds(now, keys_guard_purge_naptime * 1000L);

		if (!extension_installed(slot, &complete))
			exit_without_extension(slot);
		drain_audit_queue();

		now = GetCurrentTimestamp();
		if (now >= next_purge && !complete)
		{
			ereport(LOG,
					(errmsg("keys_guard: not purging database %u: the extension's SQL objects do not match the library",
							MyDatabaseId),
					 errhint("Run ALTER EXTENSION keys_guard UPDATE in that database.")));
			next_purge = TimestampTzPlusMilliseconds(now, 3600 * 1000L);
		}
		if (now >= next_purge)
		{
			run_purge();
			next_purge = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 keys_guard_purge_naptime * 1000L);
		}

		/* Wake for denials (latch), the next purge, or at least once a second. */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
	}
}
