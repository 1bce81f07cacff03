/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  keys_guard's background workers: a launcher and one worker per
 *	  database in which the extension is installed (SPEC.md §9).
 *
 * The launcher connects to no database.  It lists the databases that allow
 * connections (restricted by keys_guard.database), starts a worker for
 * each, and restarts any that stops.  A worker that finds no keys_guard in
 * its database says so in shared memory and exits; the launcher leaves that
 * database alone until CREATE EXTENSION (which calls
 * keys_guard._notify_worker()) or a reload asks it to look again.
 *
 * A database worker moves denial records from the shared queue into
 * keys_guard.audit_log; a backend that queues a record sets the worker's
 * latch, so records arrive within moments.  The skeleton is worker_spi's:
 * reload on SIGHUP, exit on SIGTERM, WL_EXIT_ON_PM_DEATH, one short
 * transaction per unit of work, visible in pg_stat_activity.
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
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
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

typedef struct KgWorkerSlot
{
	Oid			dboid;			/* InvalidOid: free */
	pid_t		pid;			/* 0 while not running */
	Latch	   *latch;
	bool		no_extension;	/* last worker found no keys_guard here */
	TimestampTz paused_until;	/* DROP/RENAME DATABASE in progress */
} KgWorkerSlot;

typedef struct KgWorkerShared
{
	slock_t		mutex;
	Latch	   *launcher_latch;
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
 * keys_guard._notify_worker(): called by CREATE EXTENSION so the worker of
 * this database starts now rather than at the next rescan.
 */
PG_FUNCTION_INFO_V1(keys_guard_notify_worker);
Datum
keys_guard_notify_worker(PG_FUNCTION_ARGS)
{
	kg_worker_wake(MyDatabaseId);
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

/* Whether keys_guard.database lets the worker serve this database. */
static bool
database_is_served(const char *dbname)
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
			database_is_served(NameStr(db->datname)))
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

/* Whether keys_guard is installed in this worker's database. */
static bool
extension_installed(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("keys_guard", true));
	CommitTransactionCommand();
	return installed;
}

/* One unit of work: move queued audit records into audit_log. */
static void
drain_audit_queue(void)
{
	int			written;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "keys_guard: writing audit records");
	written = kg_audit_drain();
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	if (written > 0)
		elog(DEBUG1, "keys_guard: wrote %d audit records", written);
}

/*
 * Entry point of a database worker.
 */
void
keys_guard_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	KgWorkerSlot *slot;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("keys_guard worker");

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

	if (!extension_installed())
	{
		SpinLockAcquire(&shared->mutex);
		slot->no_extension = true;
		SpinLockRelease(&shared->mutex);
		proc_exit(0);
	}

	for (;;)
	{
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (!extension_installed())
		{
			SpinLockAcquire(&shared->mutex);
			slot->no_extension = true;
			SpinLockRelease(&shared->mutex);
			proc_exit(0);
		}
		drain_audit_queue();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
	}
}
