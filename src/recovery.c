/*-------------------------------------------------------------------------
 *
 * recovery.c
 *	  Restore and hard delete of soft-deleted rows (docs/contract.md §7).
 *
 These are keys_guard's own operations (acting.c): they read with the
 * tenant and soft-delete filters off (they must see deleted rows), and hard
 * delete is the one path besides the purge allowed to remove rows of a
 * soft-delete table physically.  Rows are locked before they are judged, so
 * a restore and a hard delete (or the purge) of the same row serialize, and
 * the grace period is checked against the transaction's now().  The UPDATE
 * or DELETE that changes the row runs as the table's owner in a
 * security-restricted operation, so the table's triggers never run with
 * keys_guard's rights.
 *
 * Who may: members of keys_guard_admin, for every tenant; members of
 * keys_guard_gateway inside a tenant context, for that tenant's rows only
 * (the application's "undo"): a row or request of another tenant is a
 * 42501 denial and nothing is restored.
 *
 * A restore never breaks a foreign key: a row whose parent row is gone or
 * still soft-deleted is refused with 23503 (restore_request() restores the
 * parents deleted by the same request together with their children).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/htup_details.h"
#include "catalog/index.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "catalog/pg_constraint.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "utils/acl.h"

#include "keys_guard.h"

/* What a restore sets: the row is live again, with no trace of the delete. */
#define RESTORE_SET "SET " KG_COL_DELETED_AT " = NULL, " KG_COL_HARD_DELETE_AT " = NULL, " \
	KG_COL_DELETED_BY " = NULL, " KG_COL_DELETE_REQUEST_ID " = NULL"

/* The single-column primary key of a table, for operations "by key". */
typedef struct KeyColumn
{
	char	   *table;			/* quoted, schema-qualified */
	char	   *column;			/* quoted */
	char	   *type;			/* formatted type name, for a cast */
} KeyColumn;

static KeyColumn
key_column_of(Oid relid)
{
	KeyColumn	key;
	Relation	rel = table_open(relid, AccessShareLock);
	Oid			indexoid = RelationGetPrimaryKeyIndex(rel);
	HeapTuple	indextup;
	Form_pg_index index;
	Form_pg_attribute att;

	key.table = kg_relation_name(RelationGetRelid(rel));
	if (!OidIsValid(indexoid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table %s has no primary key", key.table),
				 errhint("Use keys_guard.restore_request() to restore rows by request id.")));
	indextup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	if (!HeapTupleIsValid(indextup))
		elog(ERROR, "cache lookup failed for index %u", indexoid);
	index = (Form_pg_index) GETSTRUCT(indextup);
	if (index->indnkeyatts != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("primary key of table %s has more than one column", key.table),
				 errhint("Use keys_guard.restore_request() to restore rows by request id.")));
	att = TupleDescAttr(RelationGetDescr(rel), index->indkey.values[0] - 1);
	key.column = pstrdup(quote_identifier(NameStr(att->attname)));
	key.type = format_type_be_qualified(att->atttypid);
	ReleaseSysCache(indextup);
	table_close(rel, AccessShareLock);
	return key;
}

/*
 * Whose rows the caller may restore: every tenant's (admin), or only the
 * current tenant's (a gateway in a tenant context; NULL tenant otherwise).
 */
typedef struct RestoreScope
{
	bool		admin;
	const char *tenant;
} RestoreScope;

static RestoreScope
restore_scope(const char *action)
{
	RestoreScope scope = {false, NULL};
	Oid			admin = get_role_oid("keys_guard_admin", true);

	if (OidIsValid(admin) && has_privs_of_role(GetUserId(), admin))
	{
		scope.admin = true;
		return scope;
	}
	if (kg_current_mode() != KG_MODE_TENANT)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("no tenant context"),
				 errdetail("Outside keys_guard_admin, %s() restores only the current tenant's rows.",
						   action),
				 errhint("Call keys_guard.set_context() first.")));
	/* A copy: the operation's triggers may change the context. */
	scope.tenant = pstrdup(kg_current_tenant());
	return scope;
}

/* Refuse rows of another tenant in a restore by a tenant's gateway. */
static void
deny_other_tenant_rows(const char *action, const char *table, const char *other,
					   const char *tenant)
{
	KgAuditDetail *detail;

	ereport(LOG,
			(errmsg("keys_guard: %s denied", action),
			 errdetail_log("reason=cross-tenant access tenant=%s actor=%s request_id=%s relation=%s other_tenant=%s",
						   tenant, kg_current_actor() ? kg_current_actor() : "(none)",
						   kg_current_request_id() ? kg_current_request_id() : "(none)",
						   table, other ? other : "(unknown)"),
			 errhidestmt(true)));
	detail = kg_audit_detail();
	kg_audit_detail_text(detail, "reason", "cross-tenant access");
	kg_audit_enqueue(action, table, KG_OUTCOME_DENIED, detail);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cross-tenant access denied"),
			 errdetail("Some rows of %s that this call would restore do not belong to tenant \"%s\".",
					   table, tenant)));
}

/*
 * For a tenant-scoped restore: the SQL condition on t that picks rows of
 * other tenants in relid, or NULL when relid's rows are all the tenant's;
 * a table of another tenant's schema is refused outright.
 */
static char *
other_tenant_condition(Oid relid, const char *action, const char *table,
					   const char *tenant)
{
	KgRelationGuard *guard = kg_relation_guard(relid);

	if (guard != NULL && guard->owner != NULL && strcmp(guard->owner->id, tenant) != 0)
		deny_other_tenant_rows(action, table, guard->owner->id, tenant);
	if (guard != NULL && guard->pooled != NULL)
		return psprintf("t.%s::pg_catalog.text IS DISTINCT FROM %s",
						quote_identifier(get_attname(relid, guard->pooled->tenant_attno, false)),
						quote_literal_cstr(tenant));
	return NULL;
}

static KgGuardedTable *
soft_delete_table(Oid relid)
{
	KgGuardedTable *table = kg_guarded_table(relid);

	if (table == NULL || !table->soft_delete)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table %s is not guarded with soft delete",
						kg_relation_name(relid))));
	return table;
}

/* The audit detail of a restore or hard delete of one row. */
static KgAuditDetail *
key_detail(const char *key)
{
	KgAuditDetail *detail = kg_audit_detail();

	kg_audit_detail_text(detail, "key", key);
	return detail;
}

/*
 * Refuse to restore rows of relid (those matching "rows", a condition on t
 * with $1 as its one text parameter) whose parent row through a foreign
 * key is gone or soft-deleted: PostgreSQL re-checks a foreign key only when
 * its columns change, which a restore never does.  Under restore_request()
 * (same_request), a parent soft-deleted by the same request counts as live:
 * it is restored in the same call.
 */
static void
check_parents(Oid relid, const char *table, const char *rows, Datum param,
			  bool same_request)
{
	Relation	rel = table_open(relid, AccessShareLock);
	List	   *fks = copyObject(RelationGetFKeyList(rel));
	ListCell   *lc;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {param};

	table_close(rel, AccessShareLock);
	foreach(lc, fks)
	{
		ForeignKeyCacheInfo *fk = lfirst_node(ForeignKeyCacheInfo, lc);
		KgGuardedTable *parent = kg_guarded_table(fk->confrelid);
		StringInfoData sql;
		StringInfoData nonnull;
		int			i;

		initStringInfo(&sql);
		initStringInfo(&nonnull);
		for (i = 0; i < fk->nkeys; i++)
			appendStringInfo(&nonnull, " AND t.%s IS NOT NULL",
							 quote_identifier(get_attname(relid, fk->conkey[i], false)));
		appendStringInfo(&sql, "SELECT 1 FROM ONLY %s t WHERE (%s)%s AND NOT EXISTS"
						 " (SELECT 1 FROM ONLY %s p WHERE true",
						 table, rows, nonnull.data,
						 kg_relation_name(fk->confrelid));
		for (i = 0; i < fk->nkeys; i++)
			appendStringInfo(&sql, " AND p.%s OPERATOR(pg_catalog.=) t.%s",
							 quote_identifier(get_attname(fk->confrelid, fk->confkey[i], false)),
							 quote_identifier(get_attname(relid, fk->conkey[i], false)));
		if (parent != NULL && parent->soft_delete && parent->deleted_at != InvalidAttrNumber)
			appendStringInfo(&sql, " AND (" KG_SQL_LIVE("p") "%s)",
							 same_request ? " OR p." KG_COL_DELETE_REQUEST_ID " = $1" : "");
		appendStringInfoString(&sql, ") LIMIT 1");
		if (SPI_execute_with_args(sql.data, 1, types, values, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "keys_guard: could not check the parents of rows of %s", table);
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
					 errmsg("cannot restore rows of %s: a parent row is missing or deleted", table),
					 errdetail("Foreign key \"%s\" references %s, where the row is gone or still soft-deleted.",
							   get_constraint_name(fk->conoid),
							   kg_relation_name(fk->confrelid)),
					 errhint("Restore the parent row first.")));
	}
}

/* The state of one row, locked: absent, live, or deleted (with deadline). */
typedef enum RowState
{
	ROW_ABSENT,
	ROW_LIVE,
	ROW_DELETED
} RowState;

/*
 * Lock the row with key value and say what state it is in.  "other" (a
 * condition on t, or NULL) tells whether it belongs to another tenant.
 */
static RowState
lock_row(KeyColumn *key, const char *value, const char *other,
		 TimestampTz *hard_delete_at, bool *expired, bool *other_tenant)
{
	char	   *sql = psprintf("SELECT " KG_SQL_DELETED("t") ", t." KG_COL_HARD_DELETE_AT ","
							   " t." KG_COL_HARD_DELETE_AT " <= now(), %s"
							   " FROM ONLY %s t WHERE t.%s = $1::%s FOR UPDATE OF t",
							   other ? other : "false", key->table, key->column, key->type);
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(value)};
	bool		isnull;
	bool		deleted;

	if (SPI_execute_with_args(sql, 1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: could not read the row to restore");
	if (SPI_processed == 0)
		return ROW_ABSENT;
	*other_tenant = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											   4, &isnull));
	deleted = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (!deleted)
		return ROW_LIVE;
	*hard_delete_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 2, &isnull));
	*expired = !isnull && DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 3, &isnull));
	return ROW_DELETED;
}

typedef struct RestoreArgs
{
	Oid			relid;
	char	   *key;
	char	   *request_id;
	RestoreScope scope;
	int64		restored;
} RestoreArgs;

static void
restore_key_internal(void *arg)
{
	RestoreArgs *args = (RestoreArgs *) arg;
	KeyColumn	key;
	TimestampTz deadline = 0;
	bool		expired = false;
	bool		other_tenant = false;
	char	   *other = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	(void) soft_delete_table(args->relid);
	key = key_column_of(args->relid);
	if (!args->scope.admin)
		other = other_tenant_condition(args->relid, "restore", key.table, args->scope.tenant);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");

	switch (lock_row(&key, args->key, other, &deadline, &expired, &other_tenant))
	{
		case ROW_ABSENT:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("no row with key %s in %s", args->key, key.table),
					 errdetail("The row does not exist, or it was purged after its grace period.")));
			break;
		case ROW_LIVE:
			if (other_tenant)
				deny_other_tenant_rows("restore", key.table, NULL, args->scope.tenant);
			ereport(NOTICE,
					(errmsg("row %s of %s is not deleted, skipping", args->key, key.table)));
			args->restored = 0;
			SPI_finish();
			return;
		case ROW_DELETED:
			break;
	}
	if (other_tenant)
		deny_other_tenant_rows("restore", key.table, NULL, args->scope.tenant);
	if (expired)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("grace period has expired"),
				 errdetail("Row %s of %s could be restored until %s.", args->key, key.table,
						   timestamptz_to_str(deadline))));

	values[0] = CStringGetTextDatum(args->key);
	check_parents(args->relid, key.table,
				  psprintf("t.%s = $1::%s", key.column, key.type), values[0], false);
	if (kg_execute_as_owner(args->relid,
							psprintf("UPDATE ONLY %s %s " RESTORE_SET
									 " WHERE %s = $1::%s AND " KG_COL_DELETED_AT " IS NOT NULL",
									 key.table, kg_internal_alias(), key.column, key.type),
							1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "keys_guard: restore failed");
	args->restored = SPI_processed;
	kg_audit_write("restore", key.table, KG_OUTCOME_OK, key_detail(args->key));
	SPI_finish();
}

/*
 * keys_guard._restore_key(rel, key): restore one soft-deleted row by its
 * primary key.  0 if it was live (idempotent); 55000 after its grace.
 */
PG_FUNCTION_INFO_V1(keys_guard_restore_key);
Datum
keys_guard_restore_key(PG_FUNCTION_ARGS)
{
	RestoreArgs args = {0};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("relation and key must not be null")));
	args.relid = PG_GETARG_OID(0);
	args.key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	args.scope = restore_scope("restore");
	kg_run_internal(restore_key_internal, &args, false);
	PG_RETURN_INT64(args.restored);
}

static void
restore_request_internal(void *arg)
{
	RestoreArgs *args = (RestoreArgs *) arg;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(args->request_id)};
	const char *of_request = "t." KG_COL_DELETE_REQUEST_ID " = $1 AND " KG_SQL_DELETED("t");
	List	   *tables = NIL;
	ListCell   *lc;
	uint64		i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	if (SPI_execute("SELECT relid FROM keys_guard.guarded_table WHERE soft_delete ORDER BY relid",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: could not list soft-delete tables");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		tables = lappend_oid(tables, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																	SPI_tuptable->tupdesc, 1,
																	&isnull)));
	}

	/*
	 * First lock every row of the request and refuse if any has expired or,
	 * for a tenant's gateway, belongs to another tenant.
	 */
	foreach(lc, tables)
	{
		Oid			relid = lfirst_oid(lc);
		char	   *table = kg_relation_name(relid);
		char	   *other = NULL;

		if (SPI_execute_with_args(psprintf("SELECT t.hard_delete_at <= now() FROM ONLY %s t"
										   " WHERE %s FOR UPDATE OF t", table, of_request),
								  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "keys_guard: could not read rows of request");
		if (SPI_processed == 0)
			continue;
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("grace period has expired"),
						 errdetail("Rows of %s deleted by request \"%s\" are past their grace period.",
								   table, args->request_id)));
		}
		if (!args->scope.admin &&
			(other = other_tenant_condition(relid, "restore_request", table,
											args->scope.tenant)) != NULL)
		{
			if (SPI_execute_with_args(psprintf("SELECT 1 FROM ONLY %s t WHERE %s AND %s LIMIT 1",
											   table, of_request, other),
									  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
				elog(ERROR, "keys_guard: could not read rows of request");
			if (SPI_processed > 0)
				deny_other_tenant_rows("restore_request", table, NULL, args->scope.tenant);
		}
	}

	/* Every restored row's parents must be live, or restored with it. */
	foreach(lc, tables)
	{
		Oid			relid = lfirst_oid(lc);

		check_parents(relid,
					  kg_relation_name(relid),
					  of_request, values[0], true);
	}

	foreach(lc, tables)
	{
		Oid			relid = lfirst_oid(lc);
		char	   *table = kg_relation_name(relid);

		if (kg_execute_as_owner(relid,
								psprintf("UPDATE ONLY %s %s " RESTORE_SET
										 " WHERE " KG_COL_DELETE_REQUEST_ID " = $1"
										 " AND " KG_COL_DELETED_AT " IS NOT NULL",
										 table, kg_internal_alias()),
								1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "keys_guard: restore failed");
		args->restored += SPI_processed;
	}
	if (args->restored == 0)
		ereport(NOTICE,
				(errmsg("no deleted rows of request \"%s\", skipping", args->request_id)));
	else
	{
		KgAuditDetail *detail = kg_audit_detail();

		kg_audit_detail_text(detail, "request_id", args->request_id);
		kg_audit_detail_int(detail, "rows", args->restored);
		kg_audit_write("restore_request", NULL, KG_OUTCOME_OK, detail);
	}
	SPI_finish();
}

/*
 * keys_guard.restore_request(request_id): restore everything one request
 * soft-deleted, across tables, or nothing if any of it is past its grace.
 */
PG_FUNCTION_INFO_V1(keys_guard_restore_request);
Datum
keys_guard_restore_request(PG_FUNCTION_ARGS)
{
	RestoreArgs args = {0};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("request_id must not be null")));
	args.request_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (args.request_id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("request_id must not be empty")));
	args.scope = restore_scope("restore_request");
	kg_run_internal(restore_request_internal, &args, false);
	PG_RETURN_INT64(args.restored);
}

typedef struct HardDeleteArgs
{
	Oid			relid;
	char	   *key;
	bool		confirm;
	int64		deleted;
} HardDeleteArgs;

static void
hard_delete_internal(void *arg)
{
	HardDeleteArgs *args = (HardDeleteArgs *) arg;
	KgGuardedTable *table = soft_delete_table(args->relid);
	KeyColumn	key = key_column_of(args->relid);
	TimestampTz deadline = 0;
	bool		expired = false;
	bool		other_tenant = false;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	if (table->class == KG_CLASS_AUDIT)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot hard-delete rows of audit table %s", key.table),
				 errdetail("Rows of audit and payment tables are never hard-deleted.")));
	if (table->class == KG_CLASS_PAYMENT)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot hard-delete rows of payment table %s", key.table),
				 errdetail("Rows of audit and payment tables are never hard-deleted.")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");

	switch (lock_row(&key, args->key, NULL, &deadline, &expired, &other_tenant))
	{
		case ROW_ABSENT:
			ereport(NOTICE,
					(errmsg("row %s of %s is already gone, skipping", args->key, key.table)));
			args->deleted = 0;
			SPI_finish();
			return;
		case ROW_LIVE:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("row %s of %s is not deleted", args->key, key.table),
					 errhint("DELETE it first; it can be hard-deleted once its grace period has passed.")));
			break;
		case ROW_DELETED:
			break;
	}
	if (!expired)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("grace period has not expired"),
				 errdetail("Row %s of %s can be hard-deleted from %s on.", args->key, key.table,
						   timestamptz_to_str(deadline))));
	if (!args->confirm)
	{
		ereport(NOTICE,
				(errmsg("would hard-delete row %s of %s", args->key, key.table),
				 errhint("Pass confirm => true to delete it.")));
		args->deleted = 1;
		SPI_finish();
		return;
	}

	values[0] = CStringGetTextDatum(args->key);
	if (kg_execute_as_owner(args->relid,
							psprintf("DELETE FROM ONLY %s %s WHERE %s = $1::%s"
									 " AND " KG_COL_DELETED_AT " IS NOT NULL",
									 key.table, kg_internal_alias(), key.column, key.type),
							1, types, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "keys_guard: hard delete failed");
	args->deleted = SPI_processed;
	kg_audit_write("hard_delete", key.table, KG_OUTCOME_OK, key_detail(args->key));
	SPI_finish();
}

/*
 * keys_guard._hard_delete_key(rel, key, confirm): remove one soft-deleted
 * row after its grace period.  Without confirm it only reports.
 */
PG_FUNCTION_INFO_V1(keys_guard_hard_delete_key);
Datum
keys_guard_hard_delete_key(PG_FUNCTION_ARGS)
{
	HardDeleteArgs args = {0};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("relation, key and confirm must not be null")));
	args.relid = PG_GETARG_OID(0);
	args.key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	args.confirm = PG_GETARG_BOOL(2);
	kg_run_internal(hard_delete_internal, &args, args.confirm);
	PG_RETURN_INT64(args.deleted);
}
