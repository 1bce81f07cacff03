/*-------------------------------------------------------------------------
 *
 * migrate.c
 *	  One migration across every tenant schema: the C half of
 *	  keys_guard.migrate_tenants() (docs/contract.md §18).
 *
 * The procedure itself is PL/pgSQL (keys_guard--1.2--1.3.sql): it picks the
 * schemas, gives each its own transaction and commits it.  What it cannot
 * do safely itself is here:
 *
 * - the migration's SQL runs as user code (kg_run_as_user_code), with the
 *	 caller's rights and the tenant's schema first on search_path, so the
 *	 guard rails (utility.c) refuse what they refuse to the caller anywhere
 *	 else; a PL/pgSQL function of keys_guard's would otherwise count as
 *	 keys_guard acting (acting.c);
 * - the ledger keys_guard.tenant_migrations is a registry table (control.c):
 *	 its rows are written here, as keys_guard's own operation, in the same
 *	 transaction as the schema's migration, so the ledger says "ok" exactly
 *	 when the migration committed;
 * - the audit records of a run's start and finish (audit.c).
 *
 * Each function checks that the caller is a member of keys_guard_admin:
 * they are granted to that role only because the procedure runs with the
 * caller's rights.  Calling them directly gives nothing the procedure does
 * not: _migrate_schema really runs the SQL it records, and the ledger keeps
 * the SHA-256 of that SQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "keys_guard.h"

/* Refuse callers that are not members of keys_guard_admin. */
static void
require_admin(void)
{
	if (!kg_has_role("keys_guard_admin"))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to migrate tenants"),
				 errdetail("Only members of keys_guard_admin can run keys_guard.migrate_tenants().")));
}

/* The SHA-256 of the migration's SQL in hex: the ledger's fingerprint. */
static char *
sql_digest(const char *sql)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
	int			i;

	kg_sha256(sql, strlen(sql), digest);
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	return hex;
}

/*
 * A syntax error's position is in the migration's SQL, not in the CALL
 * statement that carries it: report it as PostgreSQL does for a function
 * body (an internal query with its cursor).
 */
static void
migration_parse_error_callback(void *arg)
{
	int			pos = geterrposition();

	errcontext("migration SQL");
	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery((const char *) arg);
	}
}

/*
 * keys_guard._migration_check(sql text) returns text: parse the migration's
 * SQL once before anything runs (a syntax error is 42601 here rather than
 * a failure in every schema), refuse transaction control (each schema's
 * transaction is keys_guard's), and return the SQL's SHA-256.
 */
PG_FUNCTION_INFO_V1(keys_guard_migration_check);
Datum
keys_guard_migration_check(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	List	   *stmts;
	ListCell   *lc;
	ErrorContextCallback errcallback;

	require_admin();
	errcallback.callback = migration_parse_error_callback;
	errcallback.arg = sql;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	stmts = raw_parser(sql, RAW_PARSE_DEFAULT);
	error_context_stack = errcallback.previous;
	if (stmts == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration SQL must contain at least one statement")));
	foreach(lc, stmts)
	{
		RawStmt    *raw = lfirst_node(RawStmt, lc);

		if (IsA(raw->stmt, TransactionStmt))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("migration SQL cannot contain transaction control statements"),
					 errdetail("keys_guard runs each schema's migration in a transaction of its own and commits it."),
					 errhint("Remove BEGIN, COMMIT, ROLLBACK and SAVEPOINT from the migration.")));
	}
	PG_RETURN_TEXT_P(cstring_to_text(sql_digest(sql)));
}

/* What one schema's migration needs, for the callbacks below. */
typedef struct MigrateArgs
{
	const char *migration;
	const char *tenant;			/* NULL for a template schema */
	const char *schema;
	const char *sql;
	const char *sqlstate;		/* failures only */
	const char *message;		/* failures only */
	Interval   *took;
	bool		ok;
} MigrateArgs;

/*
 * The schema must be an active tenant's (tenant given) or the template of
 * a registered tenant (tenant NULL): nothing else is migrated.
 */
static void
check_target(void *arg)
{
	MigrateArgs *args = (MigrateArgs *) arg;
	Datum		values[2];
	Oid			types[2] = {TEXTOID, NAMEOID};
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	values[1] = DirectFunctionCall1(namein, CStringGetDatum(args->schema));
	if (args->tenant != NULL)
	{
		values[0] = CStringGetTextDatum(args->tenant);
		rc = SPI_execute_with_args("SELECT 1 FROM keys_guard.tenant"
								   " WHERE id = $1 AND schema_name = $2 AND status = 'active'",
								   2, types, values, NULL, true, 1);
	}
	else
		rc = SPI_execute_with_args("SELECT 1 FROM keys_guard.tenant WHERE template_schema = $1",
								   1, types + 1, values + 1, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: could not read the tenant registry");
	if (SPI_processed == 0)
	{
		if (args->tenant != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" is not the schema of active tenant \"%s\"",
							args->schema, args->tenant)));
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("schema \"%s\" is not the template of any tenant", args->schema)));
	}
	SPI_finish();
}

/*
 * Write (or overwrite) the schema's ledger row, as keys_guard: ok with the
 * time it took, or failed with the error.  One row per migration and
 * schema; attempts counts the runs that reached it.
 */
static void
record_ledger(void *arg)
{
	MigrateArgs *args = (MigrateArgs *) arg;
	static const char *sql =
		"INSERT INTO keys_guard.tenant_migrations AS l"
		" (migration, tenant, schema_name, status, sqlstate, error, took, at, attempts, sql_sha256)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, pg_catalog.clock_timestamp(), 1, $8)"
		" ON CONFLICT (migration, schema_name) DO UPDATE SET"
		" tenant = excluded.tenant, status = excluded.status, sqlstate = excluded.sqlstate,"
		" error = excluded.error, took = excluded.took, at = excluded.at,"
		" attempts = l.attempts OPERATOR(pg_catalog.+) 1, sql_sha256 = excluded.sql_sha256";
	Oid			types[8] = {TEXTOID, TEXTOID, NAMEOID, TEXTOID, TEXTOID, TEXTOID,
	INTERVALOID, TEXTOID};
	Datum		values[8];
	char		nulls[8];

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(args->migration);
	if (args->tenant)
		values[1] = CStringGetTextDatum(args->tenant);
	else
		nulls[1] = 'n';
	values[2] = DirectFunctionCall1(namein, CStringGetDatum(args->schema));
	values[3] = CStringGetTextDatum(args->ok ? "ok" : "failed");
	if (args->sqlstate)
		values[4] = CStringGetTextDatum(args->sqlstate);
	else
		nulls[4] = 'n';
	if (args->message)
		values[5] = CStringGetTextDatum(args->message);
	else
		nulls[5] = 'n';
	values[6] = IntervalPGetDatum(args->took);
	values[7] = CStringGetTextDatum(sql_digest(args->sql));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	if (SPI_execute_with_args(sql, 8, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "keys_guard: could not write the migration ledger");
	SPI_finish();
}

/* The migration's statements, as the caller's own code. */
static void
run_migration_sql(void *arg)
{
	MigrateArgs *args = (MigrateArgs *) arg;
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	rc = SPI_execute(args->sql, false, 0);
	if (rc < 0)
		elog(ERROR, "keys_guard: the migration's SQL failed: %s", SPI_result_code_string(rc));
	SPI_finish();
}

static Interval *
elapsed_since(TimestampTz start)
{
	return DatumGetIntervalP(DirectFunctionCall2(timestamp_mi,
												 TimestampTzGetDatum(GetCurrentTimestamp()),
												 TimestampTzGetDatum(start)));
}

/*
 * keys_guard._migrate_schema(migration text, tenant text, schema name,
 * sql text) returns interval: run the migration in one schema, in the
 * caller's transaction, and record it in the ledger as ok.  The schema
 * comes first on search_path, followed by the caller's; the migration's
 * own SET of search_path ends with it.  The transaction commits
 * asynchronously: the ledger row and the migration commit or vanish
 * together, so a crash can only make a later run migrate the schema again.
 */
PG_FUNCTION_INFO_V1(keys_guard_migrate_schema);
Datum
keys_guard_migrate_schema(PG_FUNCTION_ARGS)
{
	MigrateArgs args;
	TimestampTz start = GetCurrentTimestamp();
	int			nestlevel;
	char	   *path;

	require_admin();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration, schema and SQL must not be null")));
	memset(&args, 0, sizeof(args));
	args.migration = text_to_cstring(PG_GETARG_TEXT_PP(0));
	args.tenant = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	args.schema = pstrdup(NameStr(*PG_GETARG_NAME(2)));
	args.sql = text_to_cstring(PG_GETARG_TEXT_PP(3));
	args.ok = true;

	kg_run_internal(check_target, &args, false);
	(void) get_namespace_oid(args.schema, false);

	(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	path = namespace_search_path && namespace_search_path[0]
		? psprintf("%s, %s", quote_identifier(args.schema), namespace_search_path)
		: pstrdup(quote_identifier(args.schema));
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	kg_run_as_user_code(run_migration_sql, &args);
	AtEOXact_GUC(true, nestlevel);

	args.took = elapsed_since(start);
	kg_run_internal(record_ledger, &args, false);
	PG_RETURN_INTERVAL_P(args.took);
}

/*
 * keys_guard._migration_failed(migration, tenant, schema, sql, sqlstate,
 * message, took): record a schema's failure in the ledger (the procedure
 * calls it after rolling the schema's work back).
 */
PG_FUNCTION_INFO_V1(keys_guard_migration_failed);
Datum
keys_guard_migration_failed(PG_FUNCTION_ARGS)
{
	MigrateArgs args;

	require_admin();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(6))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration, schema, SQL and time must not be null")));
	memset(&args, 0, sizeof(args));
	args.migration = text_to_cstring(PG_GETARG_TEXT_PP(0));
	args.tenant = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	args.schema = pstrdup(NameStr(*PG_GETARG_NAME(2)));
	args.sql = text_to_cstring(PG_GETARG_TEXT_PP(3));
	args.sqlstate = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	args.message = PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5));
	args.took = PG_GETARG_INTERVAL_P(6);
	args.ok = false;
	kg_run_internal(record_ledger, &args, false);
	PG_RETURN_VOID();
}

/* What a run's audit record says. */
typedef struct RunAudit
{
	const char *migration;
	const char *phase;
	const char *sql;
	int			tenants;
	int			ok;
	int			failed;
	int			skipped;
	bool		canary;
	bool		stopped;
} RunAudit;

static void
write_run_audit(void *arg)
{
	RunAudit   *run = (RunAudit *) arg;
	KgAuditDetail *detail = kg_audit_detail();

	kg_audit_detail_text(detail, "phase", run->phase);
	kg_audit_detail_text(detail, "sql_sha256", sql_digest(run->sql));
	kg_audit_detail_bool(detail, "canary", run->canary);
	kg_audit_detail_int(detail, "tenants", run->tenants);
	if (strcmp(run->phase, "finish") == 0)
	{
		kg_audit_detail_int(detail, "ok", run->ok);
		kg_audit_detail_int(detail, "failed", run->failed);
		kg_audit_detail_int(detail, "skipped", run->skipped);
		kg_audit_detail_bool(detail, "stopped", run->stopped);
	}
	kg_audit_write("migrate_tenants", run->migration, KG_OUTCOME_OK, detail);
}

/*
 * keys_guard._migration_audit(migration, phase, sql, tenants, ok, failed,
 * skipped, canary, stopped): the audit record of a run's start or finish.
 */
PG_FUNCTION_INFO_V1(keys_guard_migration_audit);
Datum
keys_guard_migration_audit(PG_FUNCTION_ARGS)
{
	RunAudit	run;
	int			i;

	require_admin();
	for (i = 0; i < 9; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("the arguments of keys_guard._migration_audit() must not be null")));
	run.migration = text_to_cstring(PG_GETARG_TEXT_PP(0));
	run.phase = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (strcmp(run.phase, "start") != 0 && strcmp(run.phase, "finish") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid migration phase \"%s\"", run.phase)));
	run.sql = text_to_cstring(PG_GETARG_TEXT_PP(2));
	run.tenants = PG_GETARG_INT32(3);
	run.ok = PG_GETARG_INT32(4);
	run.failed = PG_GETARG_INT32(5);
	run.skipped = PG_GETARG_INT32(6);
	run.canary = PG_GETARG_BOOL(7);
	run.stopped = PG_GETARG_BOOL(8);
	kg_run_internal(write_run_audit, &run, false);
	PG_RETURN_VOID();
}
