/*-------------------------------------------------------------------------
 *
 * delete_tags.c
 *	  A libpq client for t/004_delete_tags.pl: deletes rows of keys_guard
 *	  soft-delete tables through every client path docs/contract.md §7 names, and
 *	  prints what the client received for each.
 *
 * Usage: delete_tags <app conninfo> <superuser conninfo> <run label>
 *
 * The app connection is an API role (a keys_guard_gateway member); the
 * superuser connection serves the superuser, keys_guard.bypass and
 * session_replication_role = replica cases.  Every case is one transaction,
 * as an API server runs a request:
 *
 *	 BEGIN;
 *	 SELECT keys_guard.set_context('acme', 'actor-<case>', 'req-<case>-<run label>');
 *	 <the case>;
 *	 COMMIT;
 *
 * so the test can tell afterwards which case (and which run) soft-deleted a
 * row.  The bypass cases set no context.
 *
 * Output, one line per case:
 *
 *	 <case>|<PQcmdStatus>|<PQcmdTuples>|<PQntuples>|<values>
 *
 * where <values> are the first column of every returned row, sorted and
 * comma-separated (NULL for a null).  A case that fails prints
 *
 *	 <case>|ERROR|<SQLSTATE>|<message>
 *
 * (a COMMIT that fails prints "<case>:commit|ERROR|...") and the client
 * goes on with the next case.  The exit status is 0 when every connection
 * worked, whatever the cases printed: the test judges.
 *
 * Build: cc -I$(pg_config --includedir) delete_tags.c \
 *			 -L$(pg_config --libdir) -lpq -o delete_tags
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libpq-fe.h"

/* Case names, actors, request ids and id lists all fit in this. */
#define TEXT_SIZE 256

static const char *run_label;

/* The request id of a case in this run. */
static void
request_id_of(const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "req-%s-%s", name, run_label);
}

static int
compare_strings(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * Print one case's result line and free the result.  Returns 1 if the
 * statement worked.
 */
static int
report(const char *name, PGresult *res)
{
	ExecStatusType status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
	{
		int			ntuples = PQntuples(res);
		const char **values = calloc(ntuples > 0 ? ntuples : 1, sizeof(char *));
		int			i;

		for (i = 0; i < ntuples; i++)
			values[i] = (PQnfields(res) > 0 && !PQgetisnull(res, i, 0))
				? PQgetvalue(res, i, 0) : "NULL";
		qsort(values, ntuples, sizeof(char *), compare_strings);

		printf("%s|%s|%s|%d|", name, PQcmdStatus(res), PQcmdTuples(res), ntuples);
		for (i = 0; i < ntuples; i++)
			printf("%s%s", i > 0 ? "," : "", values[i]);
		printf("\n");
		free(values);
		PQclear(res);
		return 1;
	}
	else
	{
		const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		const char *message = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

		printf("%s|ERROR|%s|%s\n", name, sqlstate ? sqlstate : "?????",
			   message ? message : "no result");
		if (res)
			PQclear(res);
		return 0;
	}
}

/* Run a statement that must work (set-up steps); exit if it fails. */
static void
must(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		fprintf(stderr, "delete_tags: \"%s\" failed: %s", sql, PQerrorMessage(conn));
		exit(1);
	}
	PQclear(res);
}

/*
 * BEGIN a case's transaction and set its context for tenant acme (no
 * context when tenant is NULL).  A failure is reported under the case's
 * name; the transaction is then left to end_case() to roll back.
 */
static void
begin_case(PGconn *conn, const char *name, const char *tenant)
{
	char		actor[TEXT_SIZE];
	char		request_id[TEXT_SIZE];
	const char *params[3];
	PGresult   *res;

	must(conn, "BEGIN");
	if (tenant == NULL)
		return;
	snprintf(actor, sizeof(actor), "actor-%s", name);
	request_id_of(name, request_id, sizeof(request_id));
	params[0] = tenant;
	params[1] = actor;
	params[2] = request_id;
	res = PQexecParams(conn, "SELECT keys_guard.set_context($1, $2, $3)",
					   3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		report(name, res);
	else
		PQclear(res);
}

/* COMMIT a case's transaction, or roll it back if it failed. */
static void
end_case(PGconn *conn, const char *name)
{
	PGresult   *res;

	if (PQtransactionStatus(conn) == PQTRANS_INERROR)
	{
		must(conn, "ROLLBACK");
		return;
	}
	res = PQexec(conn, "COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		char		commit_name[TEXT_SIZE];

		snprintf(commit_name, sizeof(commit_name), "%s:commit", name);
		report(commit_name, res);
		return;
	}
	PQclear(res);
}

/*
 * One case: a statement sent with PQexec (simple query protocol), after
 * running "setup" (a SET LOCAL, a DECLARE ... FETCH, or NULL) in the same
 * transaction.
 */
static void
exec_case_with(PGconn *conn, const char *name, const char *tenant,
			   const char *setup, const char *sql)
{
	begin_case(conn, name, tenant);
	if (setup != NULL && PQtransactionStatus(conn) != PQTRANS_INERROR)
	{
		PGresult   *res = PQexec(conn, setup);

		if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
			report(name, res);
		else
			PQclear(res);
	}
	if (PQtransactionStatus(conn) != PQTRANS_INERROR)
		report(name, PQexec(conn, sql));
	end_case(conn, name);
}

static void
exec_case(PGconn *conn, const char *name, const char *tenant, const char *sql)
{
	exec_case_with(conn, name, tenant, NULL, sql);
}

/* One case: a statement with one parameter, sent with PQexecParams. */
static void
params_case(PGconn *conn, const char *name, const char *tenant,
			const char *sql, const char *param)
{
	const char *params[1] = {param};

	begin_case(conn, name, tenant);
	if (PQtransactionStatus(conn) != PQTRANS_INERROR)
		report(name, PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0));
	end_case(conn, name);
}

/*
 * A prepared statement under one plan_cache_mode: PQprepare once, then
 * PQexecPrepared "executions" times, each in a transaction of its own with
 * the id first_id + i - 1 (i = 1..executions).  Then the number of generic
 * and custom plans PostgreSQL used for it, as case "<prefix>_plans" with
 * the value "generic/custom".
 */
static void
prepared_cases(PGconn *conn, const char *prefix, const char *mode,
			   const char *sql, int first_id, int executions)
{
	char		set_mode[TEXT_SIZE];
	char		name[TEXT_SIZE];
	char		id[32];
	const char *params[1];
	PGresult   *res;
	int			i;

	snprintf(set_mode, sizeof(set_mode), "SET plan_cache_mode = %s", mode);
	must(conn, set_mode);

	res = PQprepare(conn, prefix, sql, 1, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		snprintf(name, sizeof(name), "%s_prepare", prefix);
		report(name, res);
		must(conn, "RESET plan_cache_mode");
		return;
	}
	PQclear(res);

	for (i = 1; i <= executions; i++)
	{
		snprintf(name, sizeof(name), "%s_%d", prefix, i);
		snprintf(id, sizeof(id), "%d", first_id + i - 1);
		params[0] = id;
		begin_case(conn, name, "acme");
		if (PQtransactionStatus(conn) != PQTRANS_INERROR)
			report(name, PQexecPrepared(conn, prefix, 1, params, NULL, NULL, 0));
		end_case(conn, name);
	}

	snprintf(name, sizeof(name), "%s_plans", prefix);
	params[0] = prefix;
	report(name, PQexecParams(conn,
							  "SELECT generic_plans || '/' || custom_plans"
							  "  FROM pg_prepared_statements WHERE name = $1",
							  1, NULL, params, NULL, NULL, 0));

	snprintf(set_mode, sizeof(set_mode), "DEALLOCATE %s", prefix);
	must(conn, set_mode);
	must(conn, "RESET plan_cache_mode");
}

/* The cases run by the API role, under tenant acme's context. */
static void
app_cases(PGconn *app)
{
	int			i;

	/* Simple query protocol. */
	exec_case(app, "simple", "acme",
			  "DELETE FROM tenant_acme.items WHERE id IN (1, 2)");
	exec_case(app, "simple_returning", "acme",
			  "DELETE FROM tenant_acme.items WHERE id IN (3, 4, 5) RETURNING id");
	exec_case(app, "simple_absent", "acme",
			  "DELETE FROM tenant_acme.items WHERE id = 9999 RETURNING id");
	/* Pooled: globex has a row with the same item, which is not ours. */
	exec_case(app, "simple_pooled", "acme",
			  "DELETE FROM public.orders WHERE item = 'batch-simple' RETURNING id");

	/* Prepared statements: custom plans, generic plans, the default. */
	prepared_cases(app, "prep_custom", "force_custom_plan",
				   "DELETE FROM tenant_acme.items WHERE id = $1 RETURNING id", 101, 8);
	prepared_cases(app, "prep_generic", "force_generic_plan",
				   "DELETE FROM tenant_acme.items WHERE id = $1 RETURNING id", 201, 8);
	prepared_cases(app, "prep_generic_pooled", "force_generic_plan",
				   "DELETE FROM public.orders WHERE id = $1 RETURNING id", 201, 8);
	prepared_cases(app, "prep_auto", "auto",
				   "DELETE FROM tenant_acme.items WHERE id = $1", 301, 8);

	/* SQL-level PREPARE / EXECUTE. */
	must(app, "PREPARE sql_prep(int) AS DELETE FROM tenant_acme.items WHERE id = $1 RETURNING id");
	exec_case(app, "sql_execute_1", "acme", "EXECUTE sql_prep(351)");
	exec_case(app, "sql_execute_2", "acme", "EXECUTE sql_prep(352)");
	must(app, "DEALLOCATE sql_prep");

	/* Extended protocol, unnamed statement. */
	params_case(app, "exec_params", "acme",
				"DELETE FROM public.orders WHERE id = ANY ($1::int[]) RETURNING id",
				"{251,252}");

	/*
	 * PL/pgSQL: a static DELETE (its plan is cached by PL/pgSQL and goes
	 * generic after five calls, so seven calls), and a dynamic one.
	 */
	for (i = 1; i <= 7; i++)
	{
		char		name[TEXT_SIZE];
		char		ids[TEXT_SIZE];

		snprintf(name, sizeof(name), "plpgsql_%d", i);
		snprintf(ids, sizeof(ids), "{%d,%d}", 400 + 2 * i - 1, 400 + 2 * i);
		params_case(app, name, "acme", "SELECT public.kg_del_plpgsql($1::int[])", ids);
	}
	params_case(app, "plpgsql_dynamic", "acme",
				"SELECT public.kg_del_dynamic($1::int[])", "{451,452,453}");
	/* DELETE ... RETURNING INTO, and FOUND. */
	exec_case(app, "plpgsql_returning_into", "acme", "SELECT public.kg_del_into(1054)");

	/* A SQL function: DELETE ... RETURNING as its result. */
	params_case(app, "sql_function", "acme",
				"SELECT id FROM public.kg_del_sql($1::int[]) AS id", "{501,502}");

	/* WITH ... DELETE ... RETURNING, as a CTE and as the top level. */
	exec_case(app, "with_count", "acme",
			  "WITH d AS (DELETE FROM public.orders WHERE id IN (601, 602, 603) RETURNING *)"
			  " SELECT count(*) FROM d");
	exec_case(app, "with_select", "acme",
			  "WITH d AS (DELETE FROM public.orders WHERE id IN (611, 612) RETURNING id)"
			  " SELECT id FROM d");
	exec_case(app, "with_top", "acme",
			  "WITH doomed AS (SELECT unnest('{601,602}'::int[]) AS id)"
			  " DELETE FROM tenant_acme.items i USING doomed WHERE i.id = doomed.id"
			  " RETURNING i.id");

	/* An unguarded parent whose ON DELETE CASCADE reaches guarded children. */
	exec_case(app, "cascade_1", "acme",
			  "DELETE FROM public.accounts WHERE id = 1 RETURNING id");
	exec_case(app, "cascade_2", "acme",
			  "DELETE FROM public.accounts WHERE id IN (2, 3)");

	/* A guarded parent: the soft delete cascades into a guarded child. */
	exec_case(app, "cascade_guarded", "acme",
			  "DELETE FROM tenant_acme.projects WHERE id = 1 RETURNING id");

	/* Through an updatable view, a rule, and a cursor (WHERE CURRENT OF). */
	exec_case(app, "view", "acme",
			  "DELETE FROM public.items_v WHERE id IN (1051, 1052) RETURNING id");
	exec_case(app, "rule", "acme", "INSERT INTO public.item_log VALUES (1053)");
	exec_case_with(app, "current_of", "acme",
				   "DECLARE c CURSOR FOR SELECT id FROM tenant_acme.items WHERE id = 1055 FOR UPDATE;"
				   " FETCH c",
				   "DELETE FROM tenant_acme.items WHERE CURRENT OF c RETURNING id");

	/* MERGE ... WHEN MATCHED THEN DELETE (9999 and globex's 5701 unmatched). */
	exec_case(app, "merge", "acme",
			  "MERGE INTO tenant_acme.items t"
			  " USING (VALUES (701), (702), (9999)) s(id) ON t.id = s.id"
			  " WHEN MATCHED THEN DELETE");
	exec_case(app, "merge_pooled", "acme",
			  "MERGE INTO public.orders t"
			  " USING (VALUES (701), (702), (5701)) s(id) ON t.id = s.id"
			  " WHEN MATCHED THEN DELETE");
	exec_case(app, "merge_update_or_delete", "acme",
			  "MERGE INTO tenant_acme.items t"
			  " USING (VALUES (711, 'delete'), (712, 'delete'), (713, 'keep')) s(id, what)"
			  " ON t.id = s.id"
			  " WHEN MATCHED AND s.what = 'delete' THEN DELETE"
			  " WHEN MATCHED THEN UPDATE SET label = 'kept by merge'");
}

/* The cases run by a superuser. */
static void
superuser_cases(PGconn *su)
{
	/* A superuser under a context. */
	exec_case(su, "superuser", "acme",
			  "DELETE FROM tenant_acme.items WHERE id IN (801, 802) RETURNING id");
	exec_case(su, "superuser_pooled", "acme",
			  "DELETE FROM public.orders WHERE id IN (801, 802) RETURNING id");

	/* keys_guard.bypass: no context, every tenant. */
	exec_case_with(su, "bypass", NULL, "SET LOCAL keys_guard.bypass = on",
				   "DELETE FROM tenant_acme.items WHERE id IN (901, 902) RETURNING id");
	exec_case_with(su, "bypass_pooled", NULL, "SET LOCAL keys_guard.bypass = on",
				   "DELETE FROM public.orders WHERE id IN (901, 5901) RETURNING tenant_id");

	/* session_replication_role = replica, under a context. */
	exec_case_with(su, "replica", "acme", "SET LOCAL session_replication_role = replica",
				   "DELETE FROM tenant_acme.items WHERE id IN (1001, 1002) RETURNING id");
	exec_case_with(su, "replica_pooled", "acme", "SET LOCAL session_replication_role = replica",
				   "DELETE FROM public.orders WHERE id IN (1001, 1002) RETURNING id");

	/* The soft-delete cascade into a guarded child, in both modes. */
	exec_case_with(su, "cascade_guarded_replica", "acme",
				   "SET LOCAL session_replication_role = replica",
				   "DELETE FROM tenant_acme.projects WHERE id = 2");
	exec_case_with(su, "cascade_guarded_bypass", NULL, "SET LOCAL keys_guard.bypass = on",
				   "DELETE FROM tenant_acme.projects WHERE id = 3");
}

static PGconn *
connect_or_exit(const char *conninfo)
{
	PGconn	   *conn = PQconnectdb(conninfo);

	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "delete_tags: could not connect: %s", PQerrorMessage(conn));
		exit(1);
	}
	return conn;
}

int
main(int argc, char **argv)
{
	PGconn	   *app;
	PGconn	   *su;

	if (argc != 4)
	{
		fprintf(stderr, "usage: %s <app conninfo> <superuser conninfo> <run label>\n", argv[0]);
		return 2;
	}
	run_label = argv[3];
	setvbuf(stdout, NULL, _IOLBF, 0);

	app = connect_or_exit(argv[1]);
	app_cases(app);
	PQfinish(app);

	su = connect_or_exit(argv[2]);
	superuser_cases(su);
	PQfinish(su);
	return 0;
}
