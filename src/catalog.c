/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  The registry of tenants and guarded tables, cached per backend.
 *
 * The hooks consult the registry on every statement, so it is read from the
 * tables keys_guard.tenant and keys_guard.guarded_table once and kept in
 * hash tables keyed by namespace oid, tenant id and relation oid.  A
 * statement trigger on the registry tables sends a relcache invalidation
 * for the registry table itself; that, a change to any guarded relation or
 * to any schema marks the cache stale, and the next lookup rebuilds it.
 * Nothing polls.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/genam.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "keys_guard.h"

/*
 * The version of keys_guard this library belongs to: default_version of
 * keys_guard.control, which the Makefile reads and passes in, so that it is
 * set in that one place.
 */
#ifndef KG_EXTENSION_VERSION
#error "KG_EXTENSION_VERSION is not defined: build keys_guard with its Makefile, which reads it from keys_guard.control"
#endif

typedef struct KgTenantById
{
	char		id[KG_TENANT_ID_MAXLEN + 1];	/* hash key */
	KgTenant	tenant;			/* nspoid is InvalidOid if the schema is gone */
} KgTenantById;


static MemoryContext cache_context = NULL;
static bool cache_valid = false;
static bool extension_active = false;
static bool extension_incomplete = false;	/* registry there, functions not */
static HTAB *tenants_by_namespace = NULL;
static HTAB *tenants_by_id = NULL;
static HTAB *pooled_rels = NULL;
static HTAB *guarded_rels = NULL;
static HTAB *relation_guards = NULL;	/* filled lazily by kg_relation_guard */
static Oid	tenant_registry_relid = InvalidOid;
static Oid	guarded_registry_relid = InvalidOid;
static Oid	assert_tenant_funcid = InvalidOid;
static Oid	assert_relation_funcid = InvalidOid;
static Oid	assert_conflict_funcid = InvalidOid;
static Oid	hard_delete_at_funcid = InvalidOid;
static Oid	deleted_by_funcid = InvalidOid;
static Oid	request_id_funcid = InvalidOid;
static Oid	current_tenant_text_funcid = InvalidOid;
static Oid	current_tenant_uuid_funcid = InvalidOid;
static Oid	current_tenant_bigint_funcid = InvalidOid;

/*
 * Relcache invalidation: the registry tables changed (their trigger sends
 * this), a guarded relation changed, or everything was invalidated.
 */
static void
kg_relcache_callback(Datum arg, Oid relid)
{
	if (!cache_valid)
		return;
	/* A relation may have moved in or out of a tenant schema. */
	if (OidIsValid(relid) && relation_guards != NULL)
		(void) hash_search(relation_guards, &relid, HASH_REMOVE, NULL);
	if (!OidIsValid(relid) ||
		relid == tenant_registry_relid ||
		relid == guarded_registry_relid ||
		(guarded_rels != NULL && hash_search(guarded_rels, &relid, HASH_FIND, NULL) != NULL))
		cache_valid = false;
}

/*
 * Syscache invalidation of pg_namespace (schemas created, renamed or
 * dropped, the keys_guard schema included) or pg_proc.
 */
static void
kg_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	cache_valid = false;
}

/*
 * Register the registry cache's invalidation callbacks (called once, from
 * kg_hooks_install()).
 */
void
kg_catalog_init(void)
{
	CacheRegisterRelcacheCallback(kg_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, kg_syscache_callback, (Datum) 0);
	/* The function oids the hooks use (and a library/SQL mismatch). */
	CacheRegisterSyscacheCallback(PROCOID, kg_syscache_callback, (Datum) 0);
}

static Oid
lookup_keys_guard_function(const char *name, int nargs, const Oid *argtypes)
{
	return LookupFuncName(list_make2(makeString("keys_guard"), makeString(pstrdup(name))),
						  nargs, argtypes, true);
}

static HTAB *
create_cache_hash(const char *name, Size keysize, Size entrysize, bool strings)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = keysize;
	ctl.entrysize = entrysize;
	ctl.hcxt = cache_context;
	return hash_create(name, 64, &ctl,
					   HASH_ELEM | HASH_CONTEXT | (strings ? HASH_STRINGS : HASH_BLOBS));
}

/* The text value of attribute "attname" of a registry tuple, or NULL. */
static char *
registry_text(HeapTuple tuple, TupleDesc desc, AttrNumber attnum)
{
	bool		isnull;
	Datum		value = heap_getattr(tuple, attnum, desc, &isnull);

	if (isnull)
		return NULL;
	if (TupleDescAttr(desc, attnum - 1)->atttypid == NAMEOID)
		return pstrdup(NameStr(*DatumGetName(value)));
	return TextDatumGetCString(value);
}

static void
load_tenants(Snapshot snapshot)
{
	Relation	rel = table_open(tenant_registry_relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	att_id = attnameAttNum(rel, "id", false);
	AttrNumber	att_schema = attnameAttNum(rel, "schema_name", false);
	AttrNumber	att_status = attnameAttNum(rel, "status", false);
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	HeapTuple	tuple;

	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		char	   *id = registry_text(tuple, desc, att_id);
		char	   *schema = registry_text(tuple, desc, att_schema);
		char	   *status = registry_text(tuple, desc, att_status);
		Oid			nspoid;
		KgTenant   *tenant;
		KgTenantById *byid;
		bool		found;

		if (id == NULL || schema == NULL || strlen(id) > KG_TENANT_ID_MAXLEN)
			continue;
		nspoid = get_namespace_oid(schema, true);
		byid = hash_search(tenants_by_id, id, HASH_ENTER, &found);
		strlcpy(byid->tenant.id, id, sizeof(byid->tenant.id));
		byid->tenant.nspoid = nspoid;
		byid->tenant.active = (status != NULL && strcmp(status, "active") == 0);
		if (!OidIsValid(nspoid))
			continue;
		tenant = hash_search(tenants_by_namespace, &nspoid, HASH_ENTER, &found);
		memcpy(tenant, &byid->tenant, sizeof(KgTenant));
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
}

/* Fill in how to filter one pooled table; false if it cannot be resolved. */
static bool
resolve_pooled_rel(KgPooledRel *pooled, Oid relid, const char *column)
{
	int32		typmod;

	pooled->tenant_attno = get_attnum(relid, column);
	if (pooled->tenant_attno == InvalidAttrNumber)
		return false;
	get_atttypetypmodcoll(relid, pooled->tenant_attno, &pooled->tenant_type,
						  &typmod, &pooled->tenant_collation);
	pooled->eq_opr = lookup_type_cache(pooled->tenant_type, TYPECACHE_EQ_OPR)->eq_opr;
	switch (pooled->tenant_type)
	{
		case TEXTOID:
			pooled->current_func = current_tenant_text_funcid;
			break;
		case UUIDOID:
			pooled->current_func = current_tenant_uuid_funcid;
			break;
		case INT8OID:
			pooled->current_func = current_tenant_bigint_funcid;
			break;
		default:
			pooled->current_func = InvalidOid;
			break;
	}
	return OidIsValid(pooled->eq_opr);
}

static KgClass
class_from_name(const char *name)
{
	if (name && strcmp(name, "audit") == 0)
		return KG_CLASS_AUDIT;
	if (name && strcmp(name, "payment") == 0)
		return KG_CLASS_PAYMENT;
	return KG_CLASS_STANDARD;
}

static void
load_guarded_tables(Snapshot snapshot)
{
	Relation	rel = table_open(guarded_registry_relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	att_relid = attnameAttNum(rel, "relid", false);
	AttrNumber	att_column = attnameAttNum(rel, "tenant_column", false);
	AttrNumber	att_soft = attnameAttNum(rel, "soft_delete", false);
	AttrNumber	att_grace = attnameAttNum(rel, "grace", false);
	AttrNumber	att_class = attnameAttNum(rel, "class", false);
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	HeapTuple	tuple;

	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(heap_getattr(tuple, att_relid, desc, &isnull));
		char	   *column = registry_text(tuple, desc, att_column);
		KgGuardedTable *table;
		Datum		value;
		bool		found;

		if (isnull || !OidIsValid(get_rel_namespace(relid)))
			continue;
		table = hash_search(guarded_rels, &relid, HASH_ENTER, &found);
		memset((char *) table + sizeof(Oid), 0, sizeof(KgGuardedTable) - sizeof(Oid));
		value = heap_getattr(tuple, att_soft, desc, &isnull);
		table->soft_delete = !isnull && DatumGetBool(value);
		value = heap_getattr(tuple, att_grace, desc, &isnull);
		if (!isnull)
			memcpy(&table->grace, DatumGetIntervalP(value), sizeof(Interval));
		table->class = class_from_name(registry_text(tuple, desc, att_class));
		table->deleted_at = get_attnum(relid, KG_COL_DELETED_AT);
		table->hard_delete_at = get_attnum(relid, KG_COL_HARD_DELETE_AT);
		table->deleted_by = get_attnum(relid, KG_COL_DELETED_BY);
		table->delete_request_id = get_attnum(relid, KG_COL_DELETE_REQUEST_ID);
		table->cascades = NIL;

		if (column != NULL)
		{
			KgPooledRel *pooled = hash_search(pooled_rels, &relid, HASH_ENTER, &found);

			/*
			 * A pooled table whose tenant column cannot be resolved stays in
			 * the hash with no filter function: the isolation hooks refuse it
			 * rather than let it through.
			 */
			if (!resolve_pooled_rel(pooled, relid, column))
				pooled->current_func = InvalidOid;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * Record the ON DELETE CASCADE foreign keys between soft-delete tables, so
 * that soft-deleting a parent can soft-delete its children in the same
 * statement.  pg_constraint has no index on the referenced table, so this
 * is one scan per rebuild rather than one per deleted row.
 */
static void
load_cascades(void)
{
	Relation	rel = table_open(ConstraintRelationId, AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tuple;

	while ((tuple = systable_getnext(scan)) != NULL)
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tuple);
		KgGuardedTable *parent;
		KgGuardedTable *child;
		KgCascade  *cascade;
		int			nkeys;

		if (con->contype != CONSTRAINT_FOREIGN || con->confdeltype != FKCONSTR_ACTION_CASCADE)
			continue;
		parent = hash_search(guarded_rels, &con->confrelid, HASH_FIND, NULL);
		child = hash_search(guarded_rels, &con->conrelid, HASH_FIND, NULL);
		if (parent == NULL || child == NULL || !parent->soft_delete || !child->soft_delete)
			continue;

		cascade = palloc0(sizeof(KgCascade));
		cascade->child = con->conrelid;
		DeconstructFkConstraintRow(tuple, &nkeys, cascade->child_keys,
								   cascade->parent_keys, NULL, NULL, NULL, NULL, NULL);
		cascade->nkeys = nkeys;
		parent->cascades = lappend(parent->cascades, cascade);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * Rebuild the cache from the registry tables.  The extension counts as
 * active only when its schema, tables and functions all exist, so a
 * half-run install script is never mistaken for a working one.
 */
static void
rebuild_cache(void)
{
	Oid			nspoid;
	Oid			assert_args[2] = {OIDOID, TEXTOID};
	Oid			conflict_args[3] = {OIDOID, TEXTOID, TIMESTAMPTZOID};
	MemoryContext oldcxt;
	Snapshot	snapshot;

	if (cache_context == NULL)
		cache_context = AllocSetContextCreate(CacheMemoryContext,
											  "keys_guard registry cache",
											  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(cache_context);
	tenants_by_namespace = tenants_by_id = pooled_rels = guarded_rels = NULL;
	relation_guards = NULL;
	extension_active = false;
	extension_incomplete = false;

	/* Invalidations that arrive while we read make the next lookup rebuild. */
	cache_valid = true;

	nspoid = get_namespace_oid("keys_guard", true);
	if (!OidIsValid(nspoid))
		return;
	tenant_registry_relid = get_relname_relid("tenant", nspoid);
	guarded_registry_relid = get_relname_relid("guarded_table", nspoid);
	assert_tenant_funcid = lookup_keys_guard_function("_assert_tenant", 2, assert_args);
	assert_relation_funcid = lookup_keys_guard_function("_assert_relation", 1, assert_args);
	assert_conflict_funcid = lookup_keys_guard_function("_assert_conflict_row", 3, conflict_args);
	hard_delete_at_funcid = lookup_keys_guard_function("_hard_delete_at", 1, assert_args);
	deleted_by_funcid = lookup_keys_guard_function("_deleted_by", 0, NULL);
	request_id_funcid = lookup_keys_guard_function("current_request_id", 0, NULL);
	current_tenant_text_funcid = lookup_keys_guard_function("current_tenant", 0, NULL);
	current_tenant_uuid_funcid = lookup_keys_guard_function("_current_tenant_uuid", 0, NULL);
	current_tenant_bigint_funcid = lookup_keys_guard_function("_current_tenant_bigint", 0, NULL);
	if (!OidIsValid(tenant_registry_relid) || !OidIsValid(guarded_registry_relid))
	{
		/* Installing: look again next time. */
		cache_valid = false;
		return;
	}

	/*
	 * With the registry present but a function missing, the SQL objects do
	 * not match this library (CREATE EXTENSION is still running, or the
	 * library was upgraded without ALTER EXTENSION ... UPDATE).  Guards are
	 * still loaded, so guarded relations are refused rather than let
	 * through; the cache is rebuilt on every use until this is resolved.
	 */
	extension_incomplete =
		!OidIsValid(assert_tenant_funcid) || !OidIsValid(assert_relation_funcid) ||
		!OidIsValid(hard_delete_at_funcid) || !OidIsValid(deleted_by_funcid) ||
		!OidIsValid(request_id_funcid) || !OidIsValid(current_tenant_text_funcid) ||
		!OidIsValid(current_tenant_uuid_funcid) || !OidIsValid(current_tenant_bigint_funcid);

	oldcxt = MemoryContextSwitchTo(cache_context);
	tenants_by_namespace = create_cache_hash("keys_guard tenants by schema",
											 sizeof(Oid), sizeof(KgTenant), false);
	tenants_by_id = create_cache_hash("keys_guard tenants by id",
									  KG_TENANT_ID_MAXLEN + 1, sizeof(KgTenantById), true);
	pooled_rels = create_cache_hash("keys_guard pooled tables",
									sizeof(Oid), sizeof(KgPooledRel), false);
	guarded_rels = create_cache_hash("keys_guard guarded tables",
									 sizeof(Oid), sizeof(KgGuardedTable), false);
	relation_guards = create_cache_hash("keys_guard relation guards",
										sizeof(Oid), sizeof(KgRelationGuard), false);
	MemoryContextSwitchTo(oldcxt);

	/*
	 * The latest snapshot sees registry changes committed since the
	 * statement began; during a parallel operation (no new snapshots may be
	 * taken) the statement's own snapshot serves.
	 */
	if (IsInParallelMode() && ActiveSnapshotSet())
		snapshot = RegisterSnapshot(GetActiveSnapshot());
	else
		snapshot = RegisterSnapshot(GetLatestSnapshot());
	PG_TRY();
	{
		MemoryContextSwitchTo(cache_context);
		load_tenants(snapshot);
		load_guarded_tables(snapshot);
		load_cascades();
		MemoryContextSwitchTo(oldcxt);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		cache_valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	UnregisterSnapshot(snapshot);
	extension_active = true;
	if (extension_incomplete)
		cache_valid = false;
}

/* Make the cache usable; false outside a transaction (no catalog access). */
static bool
ensure_cache(void)
{
	if (!IsTransactionState())
		return false;
	if (!cache_valid)
		rebuild_cache();
	return true;
}

bool
kg_extension_active(void)
{
	return ensure_cache() && extension_active;
}

/* Whether the extension is installed here with all the objects it needs. */
bool
kg_extension_complete(void)
{
	return kg_extension_active() && !extension_incomplete;
}

/*
 * Refuse to go on when the extension's SQL objects do not match the
 * library: guards would be enforced only in part.
 */
void
kg_require_complete_extension(void)
{
	if (kg_extension_active() && extension_incomplete)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("keys_guard's SQL objects do not match its library"),
				 errdetail("Functions that version %s of the library needs are missing from schema keys_guard.",
						   KG_EXTENSION_VERSION),
				 errhint("Run ALTER EXTENSION keys_guard UPDATE.")));
}

/*
 * Whether anything is guarded here: a registered table, or a tenant whose
 * schema still exists.  DROP EXTENSION waits for release_all() until not.
 */
bool
kg_registry_in_use(void)
{
	HASH_SEQ_STATUS status;
	KgTenantById *entry;
	bool		in_use = false;

	if (!kg_extension_active())
		return false;
	if (hash_get_num_entries(guarded_rels) > 0)
		return true;
	hash_seq_init(&status, tenants_by_id);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (OidIsValid(entry->tenant.nspoid))
		{
			in_use = true;
			hash_seq_term(&status);
			break;
		}
	}
	return in_use;
}

/* The tenant (lowest id) whose schema the role owns, or NULL. */
KgTenant *
kg_tenant_owned_by(Oid roleid)
{
	HASH_SEQ_STATUS status;
	KgTenant   *tenant;
	KgTenant   *result = NULL;

	if (!kg_extension_active())
		return NULL;
	hash_seq_init(&status, tenants_by_namespace);
	while ((tenant = hash_seq_search(&status)) != NULL)
	{
		HeapTuple	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(tenant->nspoid));

		if (!HeapTupleIsValid(tuple))
			continue;
		if (((Form_pg_namespace) GETSTRUCT(tuple))->nspowner == roleid &&
			(result == NULL || strcmp(tenant->id, result->id) < 0))
			result = tenant;
		ReleaseSysCache(tuple);
	}
	return result;
}

KgTenant *
kg_tenant_by_namespace(Oid nspoid)
{
	if (!kg_extension_active())
		return NULL;
	return hash_search(tenants_by_namespace, &nspoid, HASH_FIND, NULL);
}

KgTenant *
kg_tenant_by_id(const char *id)
{
	char		key[KG_TENANT_ID_MAXLEN + 1];
	KgTenantById *entry;

	if (!kg_extension_active() || strlen(id) > KG_TENANT_ID_MAXLEN)
		return NULL;
	memset(key, 0, sizeof(key));
	strlcpy(key, id, sizeof(key));
	entry = hash_search(tenants_by_id, key, HASH_FIND, NULL);
	return entry ? &entry->tenant : NULL;
}

KgPooledRel *
kg_pooled_rel(Oid relid)
{
	if (!kg_extension_active())
		return NULL;
	return hash_search(pooled_rels, &relid, HASH_FIND, NULL);
}

/*
 * How a relation is guarded: by the schema of the tenant that owns it, as a
 * pooled table, or not at all.  This is the question every statement asks
 * of every relation it touches, so the answer is kept per relation oid and
 * costs one hash probe after the first time.
 */
KgRelationGuard *
kg_relation_guard(Oid relid)
{
	KgRelationGuard *guard;
	bool		found;

	if (!kg_extension_active())
		return NULL;
	guard = hash_search(relation_guards, &relid, HASH_ENTER, &found);
	if (!found)
	{
		guard->owner = hash_search(tenants_by_namespace, &(Oid) {get_rel_namespace(relid)},
								   HASH_FIND, NULL);
		guard->pooled = guard->owner ? NULL
			: hash_search(pooled_rels, &relid, HASH_FIND, NULL);
		guard->table = hash_search(guarded_rels, &relid, HASH_FIND, NULL);
	}
	return (guard->owner || guard->pooled) ? guard : NULL;
}

Oid
kg_assert_tenant_func(void)
{
	return kg_extension_active() ? assert_tenant_funcid : InvalidOid;
}

/*
 * The schema-qualified, quoted name of a relation, for messages and the
 * statements keys_guard builds; its oid if the relation is gone.
 */
char *
kg_relation_name(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname = relname ? get_namespace_name(get_rel_namespace(relid)) : NULL;

	if (relname == NULL || nspname == NULL)
		return psprintf("%u", relid);
	return quote_qualified_identifier(nspname, relname);
}

/* The registered options of a table, or NULL. */
KgGuardedTable *
kg_guarded_table(Oid relid)
{
	if (!kg_extension_active())
		return NULL;
	return hash_search(guarded_rels, &relid, HASH_FIND, NULL);
}

Oid
kg_hard_delete_at_func(void)
{
	return hard_delete_at_funcid;
}

Oid
kg_deleted_by_func(void)
{
	return deleted_by_funcid;
}

Oid
kg_request_id_func(void)
{
	return request_id_funcid;
}

Oid
kg_assert_relation_func(void)
{
	return kg_extension_active() ? assert_relation_funcid : InvalidOid;
}

Oid
kg_assert_conflict_func(void)
{
	return kg_extension_active() ? assert_conflict_funcid : InvalidOid;
}

/*
 * Statement trigger on the registry tables: tell every backend, this one
 * included at the next command, that its cache is stale.
 */
PG_FUNCTION_INFO_V1(keys_guard_registry_changed);
Datum
keys_guard_registry_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "keys_guard_registry_changed: not called by trigger manager");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
