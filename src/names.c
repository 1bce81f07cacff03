/*-------------------------------------------------------------------------
 *
 * names.c
 *	  The names and rules that keys_guard's SQL scripts and its C code must
 *	  agree on, handed to SQL from their one definition in C.
 *
 * A rule both languages apply (what a tenant id looks like, the name of a
 * tenant's schema, what counts as a table's purge index, the grace
 * settings) is defined once, in C, and the scripts call it through the
 * functions below.  Names the scripts must spell out themselves (the
 * soft-delete columns, the prefix of keys_guard's triggers and policies)
 * are listed by keys_guard._shared_names(), and the names suite fails as
 * soon as a script and keys_guard.h disagree.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "keys_guard.h"

/* keys_guard._tenant_id_valid(id text): has id the shape of a tenant id? */
PG_FUNCTION_INFO_V1(keys_guard_tenant_id_valid);
Datum
keys_guard_tenant_id_valid(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(kg_tenant_id_is_valid(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

/* keys_guard._tenant_schema(id text): the name of a tenant's schema. */
PG_FUNCTION_INFO_V1(keys_guard_tenant_schema);
Datum
keys_guard_tenant_schema(PG_FUNCTION_ARGS)
{
	char	   *id = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (!kg_tenant_id_is_valid(id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant id \"%s\"", id)));
	PG_RETURN_TEXT_P(cstring_to_text(psprintf(KG_TENANT_SCHEMA_PREFIX "%s", id)));
}

/*
 * keys_guard._purge_index(r regclass): the index the purge walks on r, or
 * NULL if r has none (kg_purge_index() says what qualifies).
 */
PG_FUNCTION_INFO_V1(keys_guard_purge_index);
Datum
keys_guard_purge_index(PG_FUNCTION_ARGS)
{
	Oid			indexoid = kg_purge_index(PG_GETARG_OID(0));

	if (!OidIsValid(indexoid))
		PG_RETURN_NULL();
	PG_RETURN_OID(indexoid);
}

/* keys_guard._purge_index_name(r regclass): the name keys_guard gives it. */
PG_FUNCTION_INFO_V1(keys_guard_purge_index_name);
Datum
keys_guard_purge_index_name(PG_FUNCTION_ARGS)
{
	char	   *relname = get_rel_name(PG_GETARG_OID(0));
	int			len;

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", PG_GETARG_OID(0))));
	/* The first KG_PURGE_INDEX_NAME_CHARS characters of the table name. */
	len = pg_mbcharcliplen(relname, strlen(relname), KG_PURGE_INDEX_NAME_CHARS);
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%.*s" KG_PURGE_INDEX_SUFFIX, len, relname)));
}

/* A setting in seconds as an interval, days as days (justify_hours). */
static Interval *
seconds_interval(int seconds)
{
	Interval   *result = palloc0(sizeof(Interval));

	result->day = seconds / SECS_PER_DAY;
	result->time = (int64) (seconds % SECS_PER_DAY) * USECS_PER_SEC;
	return result;
}

/* keys_guard._min_grace() and ._default_grace(): the grace settings. */
PG_FUNCTION_INFO_V1(keys_guard_min_grace_setting);
Datum
keys_guard_min_grace_setting(PG_FUNCTION_ARGS)
{
	PG_RETURN_INTERVAL_P(seconds_interval(keys_guard_min_grace));
}

PG_FUNCTION_INFO_V1(keys_guard_default_grace_setting);
Datum
keys_guard_default_grace_setting(PG_FUNCTION_ARGS)
{
	PG_RETURN_INTERVAL_P(seconds_interval(keys_guard_default_grace));
}

/*
 * keys_guard._shared_names(): (name, value) for each name of keys_guard.h
 * that the scripts spell out too.
 */
PG_FUNCTION_INFO_V1(keys_guard_shared_names);
Datum
keys_guard_shared_names(PG_FUNCTION_ARGS)
{
	static const char *const names[][2] = {
		{"tenant_schema_prefix", KG_TENANT_SCHEMA_PREFIX},
		{"deleted_at", KG_COL_DELETED_AT},
		{"hard_delete_at", KG_COL_HARD_DELETE_AT},
		{"deleted_by", KG_COL_DELETED_BY},
		{"delete_request_id", KG_COL_DELETE_REQUEST_ID},
		{"object_prefix", KG_OBJECT_PREFIX},
		{"purge_index_suffix", KG_PURGE_INDEX_SUFFIX},
		{"tenant_id_maxlen", CppAsString2(KG_TENANT_ID_MAXLEN)},
	};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < lengthof(names); i++)
	{
		Datum		values[2] = {CStringGetTextDatum(names[i][0]),
		CStringGetTextDatum(names[i][1])};
		bool		nulls[2] = {false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
