/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  The registry of tenants and guarded tables, cached per backend.
 *
 * The hooks consult the registry on every statement, so what they look up
 * is kept in hash tables keyed by namespace oid, tenant id and relation
 * oid, answers "not registered" included.  Each entry is read on its own,
 * the first time it is needed, with one index scan of keys_guard.tenant or
 * keys_guard.guarded_table: a backend never reads the whole registry, so
 * 10 000 tenants cost what 10 cost (docs/contract.md §18).
 *
 * Invalidation is keyed by what changed.  A statement trigger on the
 * registry tables sends a relcache invalidation for the registry table
 * itself; that, or a change to any schema, empties the cache (nothing is
 * read again until a lookup needs it).  A change to a relation marks that
 * relation's entries to be read again, in place.  A change to pg_proc
 * only makes the function oids the hooks use be looked up again.  Nothing
 * polls.
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
#include "catalog/pg_collation.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
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
	bool		exists;			/* false: no such tenant (a negative entry) */
} KgTenantById;

typedef struct KgTenantByNamespace
{
	KgTenant	tenant;			/* hash key: tenant.nspoid */
	bool		exists;			/* false: not a tenant's schema */
} KgTenantByNamespace;

/* One relation's row of keys_guard.guarded_table, or its absence. */
typedef struct KgRegisteredRel
{
	KgGuardedTable table;		/* hash key: table.relid */
	KgPooledRel pooled;
	bool		registered;		/* false: not registered (a negative entry) */
	bool		is_pooled;
	bool		valid;			/* false: read it again before use */
	bool		cascades_loaded;
} KgRegisteredRel;

typedef struct KgRelationGuardEntry
{
	KgRelationGuard guard;		/* hash key: guard.relid */
	bool		valid;
} KgRelationGuardEntry;

static MemoryContext cache_context = NULL;
static bool extension_active = false;
static bool extension_incomplete = false;	/* registry there, functions not */
static HTAB *tenants_by_namespace = NULL;
static HTAB *tenants_by_id = NULL;
static HTAB *registered_rels = NULL;
static HTAB *relation_guards = NULL;
static Oid	tenant_registry_relid = InvalidOid;
static Oid	guarded_registry_relid = InvalidOid;
static Oid	tenant_id_index = InvalidOid;
static Oid	tenant_schema_index = InvalidOid;
static Oid	guarded_relid_index = InvalidOid;
static Oid	assert_tenant_funcid = InvalidOid;
static Oid	assert_relation_funcid = InvalidOid;
static Oid	assert_conflict_funcid = InvalidOid;
static Oid	hard_delete_at_funcid = InvalidOid;
static Oid	deleted_by_funcid = InvalidOid;
static Oid	request_id_funcid = InvalidOid;
static Oid	current_tenant_text_funcid = InvalidOid;
static Oid	current_tenant_uuid_funcid = InvalidOid;
static Oid	current_tenant_bigint_funcid = InvalidOid;
static Oid	guard_active_funcid = InvalidOid;

/*
 * Whether a schema holds anything, by schema oid; emptied by any change to
 * a catalog whose objects are named within a schema.
 */
typedef struct KgSchemaContents
{
	Oid			nspoid;			/* hash key */
	bool		has_objects;
} KgSchemaContents;

static HTAB *schema_contents = NULL;
static bool schema_contents_valid = false;
static uint64 schema_contents_generation = 0;

/*
 * kg_hot_state.registry_generation counts the registry cache's
 * invalidations and resets; cache_valid and funcs_valid there say whether
 * the cache and the functions' oids can be used.
 */

/*
 * The registry cache, or an entry of it, changed: count a generation, and
 * forget the answer kg_relation_guard() gave last.
 */
static inline void
registry_changed(void)
{
	kg_hot_state.registry_generation++;
	kg_hot_state.last_guard_relid = InvalidOid;
	kg_hot_state.last_guard = NULL;
}

/* Role oids by name, for the few roles keys_guard checks membership of. */
#define KG_ROLE_CACHE_SIZE 4
static struct
{
	char		name[NAMEDATALEN];
	Oid			roleid;
}			role_cache[KG_ROLE_CACHE_SIZE];
static int	role_cache_used = 0;

/*
 * Relcache invalidation: the registry tables changed (their trigger sends
 * this) or everything was invalidated: start over, lazily.  Any other
 * relation: only what is cached about that relation is read again, in
 * place (a caller may still hold a pointer to it).
 */
static void
kg_relcache_callback(Datum arg, Oid relid)
{
	KgRegisteredRel *rel;
	KgRelationGuardEntry *guard;

	if (!kg_hot_state.cache_valid || registered_rels == NULL)
		return;
	if (!OidIsValid(relid) ||
		relid == tenant_registry_relid ||
		relid == guarded_registry_relid)
	{
		kg_hot_state.cache_valid = false;
		registry_changed();
		return;
	}
	/* A relation may have moved in or out of a tenant schema. */
	guard = hash_search(relation_guards, &relid, HASH_FIND, NULL);
	if (guard != NULL)
	{
		guard->valid = false;
		registry_changed();
	}
	/* Its columns or foreign keys may have changed. */
	rel = hash_search(registered_rels, &relid, HASH_FIND, NULL);
	if (rel != NULL)
		rel->valid = false;
}

/*
 * Syscache invalidation of pg_namespace (schemas created, renamed or
 * dropped, the keys_guard schema included): start over, lazily.
 */
static void
kg_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	kg_hot_state.cache_valid = false;
	registry_changed();
}

/*
 * A catalog whose objects live in schemas changed: what a schema holds is
 * read again when next needed.
 */
static void
kg_schema_contents_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	schema_contents_valid = false;
	schema_contents_generation++;
}

/* pg_authid: look role oids up again. */
static void
kg_role_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	role_cache_used = 0;
}

/* pg_proc: look the functions the hooks use up again. */
static void
kg_proc_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	kg_hot_state.funcs_valid = false;
}

/*
 * Register the registry cache's invalidation callbacks (called once, from
 * kg_hooks_install()).
 */
void
kg_catalog_init(void)
{
	CacheRegisterRelcacheCallback(kg_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, kg_namespace_callback, (Datum) 0);
	/* The function oids the hooks use (and a library/SQL mismatch). */
	CacheRegisterSyscacheCallback(PROCOID, kg_proc_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, kg_role_callback, (Datum) 0);

	/*
	 * Every catalog whose objects search_path resolves by name: one of them
	 * changed, so a schema may have gained or lost its first object.
	 */
	{
		static const int name_caches[] = {
			NAMESPACEOID, RELNAMENSP, TYPENAMENSP, PROCNAMEARGSNSP,
			OPERNAMENSP, COLLNAMEENCNSP, CONNAMENSP, CLAAMNAMENSP,
			OPFAMILYAMNAMENSP, STATEXTNAMENSP, TSCONFIGNAMENSP,
			TSDICTNAMENSP, TSPARSERNAMENSP, TSTEMPLATENAMENSP
		};

		for (int i = 0; i < lengthof(name_caches); i++)
			CacheRegisterSyscacheCallback(name_caches[i],
										  kg_schema_contents_callback, (Datum) 0);
	}
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

/*
 * An empty hash table keyed by an Oid, in its own memory context under
 * TopMemoryContext, in place of *htab (destroyed if there was one): a
 * backend-lifetime cache read again after an invalidation.
 */
void
kg_oid_hash_renew(HTAB **htab, const char *name, Size entrysize)
{
	HASHCTL		ctl;

	if (*htab != NULL)
		hash_destroy(*htab);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = entrysize;
	*htab = hash_create(name, 16, &ctl, HASH_ELEM | HASH_BLOBS);
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

/*
 * The snapshot registry reads use: the latest, which sees registry changes
 * committed since the statement began; during a parallel operation (no new
 * snapshots may be taken) the statement's own.
 */
static Snapshot
registry_snapshot(void)
{
	if (IsInParallelMode() && ActiveSnapshotSet())
		return RegisterSnapshot(GetActiveSnapshot());
	return RegisterSnapshot(GetLatestSnapshot());
}

/*
 * Read the one registry row whose column attnum equals value (through the
 * index when there is one): fn(tuple, desc, arg) is called for it, and the
 * result says whether there was one.
 */
static bool
read_registry_row(Oid relid, Oid indexid, const char *column, RegProcedure eqproc,
				  Datum value, void (*fn) (HeapTuple, TupleDesc, Relation, void *),
				  void *arg)
{
	Relation	rel = table_open(relid, AccessShareLock);
	AttrNumber	attnum = attnameAttNum(rel, column, false);
	Snapshot	snapshot = registry_snapshot();
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	ScanKeyEntryInitialize(&key, 0, attnum, BTEqualStrategyNumber, InvalidOid,
						   TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attcollation,
						   eqproc, value);
	/*
	 * While an extension script runs, the registry's indexes may exist
	 * before they are built: read the table itself then.
	 */
	scan = systable_beginscan(rel, indexid, OidIsValid(indexid) && !creating_extension,
							  snapshot, 1, &key);
	PG_TRY();
	{
		if ((tuple = systable_getnext(scan)) != NULL)
		{
			MemoryContext tmpcxt = AllocSetContextCreate(CurrentMemoryContext,
														 "keys_guard registry row",
														 ALLOCSET_SMALL_SIZES);
			MemoryContext oldcxt = MemoryContextSwitchTo(tmpcxt);

			found = true;
			fn(tuple, RelationGetDescr(rel), rel, arg);
			MemoryContextSwitchTo(oldcxt);
			MemoryContextDelete(tmpcxt);
		}
	}
	PG_FINALLY();
	{
		systable_endscan(scan);
		UnregisterSnapshot(snapshot);
	}
	PG_END_TRY();
	table_close(rel, AccessShareLock);
	return found;
}

/* A tenant row into a KgTenant. */
static void
fill_tenant(HeapTuple tuple, TupleDesc desc, Relation rel, void *arg)
{
	KgTenant   *tenant = (KgTenant *) arg;
	char	   *id = registry_text(tuple, desc, attnameAttNum(rel, "id", false));
	char	   *schema = registry_text(tuple, desc, attnameAttNum(rel, "schema_name", false));
	char	   *status = registry_text(tuple, desc, attnameAttNum(rel, "status", false));

	memset(tenant->id, 0, sizeof(tenant->id));
	if (id == NULL || schema == NULL || strlen(id) > KG_TENANT_ID_MAXLEN)
	{
		tenant->id[0] = '\0';
		return;
	}
	strlcpy(tenant->id, id, sizeof(tenant->id));
	tenant->nspoid = get_namespace_oid(schema, true);
	tenant->active = (status != NULL && strcmp(status, "active") == 0);
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

	/*
	 * Under a nondeterministic collation two tenant ids can compare equal
	 * ("ci_a" and "cia" with ignorable punctuation): the filter compares
	 * them byte for byte instead.  protect_table refuses such a column
	 * since 1.3; a table guarded before is filtered safely all the same.
	 */
	pooled->compare_collation = pooled->tenant_collation;
	if (OidIsValid(pooled->tenant_collation) &&
		!get_collation_isdeterministic(pooled->tenant_collation))
		pooled->compare_collation = C_COLLATION_OID;
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

/* A guarded_table row into a KgRegisteredRel. */
static void
fill_registered(HeapTuple tuple, TupleDesc desc, Relation rel, void *arg)
{
	KgRegisteredRel *entry = (KgRegisteredRel *) arg;
	Oid			relid = entry->table.relid;
	char	   *column = registry_text(tuple, desc, attnameAttNum(rel, "tenant_column", false));
	KgGuardedTable *table = &entry->table;
	Datum		value;
	bool		isnull;

	entry->registered = true;
	value = heap_getattr(tuple, attnameAttNum(rel, "soft_delete", false), desc, &isnull);
	table->soft_delete = !isnull && DatumGetBool(value);
	value = heap_getattr(tuple, attnameAttNum(rel, "grace", false), desc, &isnull);
	if (!isnull)
		memcpy(&table->grace, DatumGetIntervalP(value), sizeof(Interval));
	table->class = class_from_name(registry_text(tuple, desc,
												 attnameAttNum(rel, "class", false)));
	table->deleted_at = get_attnum(relid, KG_COL_DELETED_AT);
	table->hard_delete_at = get_attnum(relid, KG_COL_HARD_DELETE_AT);
	table->deleted_by = get_attnum(relid, KG_COL_DELETED_BY);
	table->delete_request_id = get_attnum(relid, KG_COL_DELETE_REQUEST_ID);

	if (column != NULL)
	{
		entry->is_pooled = true;
		entry->pooled.relid = relid;

		/*
		 * A pooled table whose tenant column cannot be resolved stays
		 * registered with no filter function: the isolation hooks refuse
		 * it rather than let it through.
		 */
		if (!resolve_pooled_rel(&entry->pooled, relid, column))
			entry->pooled.current_func = InvalidOid;
	}
}

/*
 * Make the cache usable: after an invalidation that concerns everything
 * (the registry tables, a schema), empty it; nothing is read until a
 * lookup needs it.  The extension counts as active only when its schema,
 * tables and functions all exist, so a half-run install script is never
 * mistaken for a working one.
 */
static pg_noinline void
reset_cache(void)
{
	Oid			nspoid;
	MemoryContext oldcxt;

	/*
	 * A caller may still hold a pointer into the old cache (an entry it
	 * looked up before running a statement that accepted the
	 * invalidation): the old cache is freed when the transaction ends, not
	 * now.
	 */
	if (cache_context != NULL && tenants_by_namespace == NULL)
		MemoryContextReset(cache_context);	/* it holds no entry */
	else
	{
		if (cache_context != NULL)
			MemoryContextSetParent(cache_context, TopTransactionContext);
		cache_context = AllocSetContextCreate(CacheMemoryContext,
											  "keys_guard registry cache",
											  ALLOCSET_SMALL_SIZES);
	}
	tenants_by_namespace = tenants_by_id = registered_rels = relation_guards = NULL;
	registry_changed();
	extension_active = false;
	extension_incomplete = false;

	/* Invalidations that arrive while we read make the next lookup reset. */
	kg_hot_state.cache_valid = true;
	kg_hot_state.funcs_valid = false;

	nspoid = get_namespace_oid("keys_guard", true);
	if (!OidIsValid(nspoid))
		return;
	tenant_registry_relid = get_relname_relid("tenant", nspoid);
	guarded_registry_relid = get_relname_relid("guarded_table", nspoid);
	tenant_id_index = get_relname_relid("tenant_pkey", nspoid);
	tenant_schema_index = get_relname_relid("tenant_schema_name_key", nspoid);
	guarded_relid_index = get_relname_relid("guarded_table_pkey", nspoid);
	if (!OidIsValid(tenant_registry_relid) || !OidIsValid(guarded_registry_relid))
	{
		/* Installing: look again next time. */
		kg_hot_state.cache_valid = false;
		return;
	}

	oldcxt = MemoryContextSwitchTo(cache_context);
	tenants_by_namespace = create_cache_hash("keys_guard tenants by schema",
											 sizeof(Oid), sizeof(KgTenantByNamespace), false);
	tenants_by_id = create_cache_hash("keys_guard tenants by id",
									  KG_TENANT_ID_MAXLEN + 1, sizeof(KgTenantById), true);
	registered_rels = create_cache_hash("keys_guard guarded tables",
										sizeof(Oid), sizeof(KgRegisteredRel), false);
	relation_guards = create_cache_hash("keys_guard relation guards",
										sizeof(Oid), sizeof(KgRelationGuardEntry), false);
	MemoryContextSwitchTo(oldcxt);
	extension_active = true;
}

/*
 * The functions the hooks use.  With the registry present but a function
 * missing, the SQL objects do not match this library (CREATE EXTENSION is
 * still running, or the library was upgraded without ALTER EXTENSION ...
 * UPDATE).  Guards are still read, so guarded relations are refused rather
 * than let through; the cache starts over on every use until this is
 * resolved.
 */
static pg_noinline void
lookup_functions(void)
{
	Oid			assert_args[2] = {OIDOID, TEXTOID};
	Oid			conflict_args[3] = {OIDOID, TEXTOID, TIMESTAMPTZOID};

	kg_hot_state.funcs_valid = true;
	assert_tenant_funcid = lookup_keys_guard_function("_assert_tenant", 2, assert_args);
	assert_relation_funcid = lookup_keys_guard_function("_assert_relation", 1, assert_args);
	assert_conflict_funcid = lookup_keys_guard_function("_assert_conflict_row", 3, conflict_args);
	hard_delete_at_funcid = lookup_keys_guard_function("_hard_delete_at", 1, assert_args);
	deleted_by_funcid = lookup_keys_guard_function("_deleted_by", 0, NULL);
	request_id_funcid = lookup_keys_guard_function("current_request_id", 0, NULL);
	current_tenant_text_funcid = lookup_keys_guard_function("current_tenant", 0, NULL);
	current_tenant_uuid_funcid = lookup_keys_guard_function("_current_tenant_uuid", 0, NULL);
	current_tenant_bigint_funcid = lookup_keys_guard_function("_current_tenant_bigint", 0, NULL);
	guard_active_funcid = lookup_keys_guard_function("_guard_active", 0, NULL);
	extension_incomplete =
		!OidIsValid(assert_tenant_funcid) || !OidIsValid(assert_relation_funcid) ||
		!OidIsValid(hard_delete_at_funcid) || !OidIsValid(deleted_by_funcid) ||
		!OidIsValid(request_id_funcid) || !OidIsValid(current_tenant_text_funcid) ||
		!OidIsValid(current_tenant_uuid_funcid) || !OidIsValid(current_tenant_bigint_funcid);
	if (extension_incomplete)
		kg_hot_state.cache_valid = false;
	/* Pooled tables name current_tenant functions: read them again. */
	if (registered_rels != NULL)
	{
		HASH_SEQ_STATUS status;
		KgRegisteredRel *rel;

		hash_seq_init(&status, registered_rels);
		while ((rel = hash_seq_search(&status)) != NULL)
			if (rel->is_pooled)
				rel->valid = false;
	}
}

/* Make the cache usable; false outside a transaction (no catalog access). */
static bool
ensure_cache(void)
{
	if (!IsTransactionState())
		return false;
	if (!kg_hot_state.cache_valid)
		reset_cache();
	if (extension_active && !kg_hot_state.funcs_valid)
		lookup_functions();
	return true;
}

kg_hot bool
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
kg_hot void
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
 * One registered relation (a negative entry if it is not registered),
 * read from keys_guard.guarded_table the first time and after an
 * invalidation of the relation.
 */
static KgRegisteredRel *
registered_rel(Oid relid)
{
	KgRegisteredRel *entry;
	bool		found;

	entry = hash_search(registered_rels, &relid, HASH_ENTER, &found);
	if (found && entry->valid)
		return entry;
	memset((char *) entry + sizeof(Oid), 0, sizeof(KgRegisteredRel) - sizeof(Oid));
	entry->valid = true;
	PG_TRY();
	{
		if (OidIsValid(get_rel_namespace(relid)))
			(void) read_registry_row(guarded_registry_relid, guarded_relid_index, "relid",
									 F_OIDEQ, ObjectIdGetDatum(relid), fill_registered, entry);
	}
	PG_CATCH();
	{
		entry->valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	return entry;
}

/*
 * Whether anything is guarded here: a registered table, or a tenant whose
 * schema still exists.  DROP EXTENSION waits for release_all() until not.
 * Reads the registry tables (DROP EXTENSION is rare).
 */
bool
kg_registry_in_use(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	Snapshot	snapshot;
	bool		in_use = false;

	if (!kg_extension_active())
		return false;
	snapshot = registry_snapshot();
	rel = table_open(guarded_registry_relid, AccessShareLock);
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while (!in_use && (tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(heap_getattr(tuple,
														  attnameAttNum(rel, "relid", false),
														  RelationGetDescr(rel), &isnull));

		in_use = !isnull && OidIsValid(get_rel_namespace(relid));
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	rel = table_open(tenant_registry_relid, AccessShareLock);
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while (!in_use && (tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		KgTenant	tenant;

		memset(&tenant, 0, sizeof(tenant));
		fill_tenant(tuple, RelationGetDescr(rel), rel, &tenant);
		in_use = tenant.id[0] != '\0' && OidIsValid(tenant.nspoid);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snapshot);
	return in_use;
}

/*
 * The tenant (lowest id) whose schema the role owns, or NULL.  Reads the
 * tenant registry (DROP OWNED is rare); the result lives in the cache.
 */
KgTenant *
kg_tenant_owned_by(Oid roleid)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	Snapshot	snapshot;
	KgTenant	best;

	if (!kg_extension_active())
		return NULL;
	memset(&best, 0, sizeof(best));
	snapshot = registry_snapshot();
	rel = table_open(tenant_registry_relid, AccessShareLock);
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		KgTenant	tenant;
		HeapTuple	nsptuple;

		memset(&tenant, 0, sizeof(tenant));
		fill_tenant(tuple, RelationGetDescr(rel), rel, &tenant);
		if (tenant.id[0] == '\0' || !OidIsValid(tenant.nspoid))
			continue;
		nsptuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(tenant.nspoid));
		if (!HeapTupleIsValid(nsptuple))
			continue;
		if (((Form_pg_namespace) GETSTRUCT(nsptuple))->nspowner == roleid &&
			(best.id[0] == '\0' || strcmp(tenant.id, best.id) < 0))
			best = tenant;
		ReleaseSysCache(nsptuple);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snapshot);
	if (best.id[0] == '\0')
		return NULL;
	return kg_tenant_by_namespace(best.nspoid);
}

/*
 * The tenant whose schema nspoid is, or NULL: read from keys_guard.tenant
 * (by schema name) the first time, then one hash probe, "not a tenant"
 * included.
 */
static KgTenant *
tenant_by_namespace(Oid nspoid)
{
	KgTenantByNamespace *entry;
	bool		found;

	entry = hash_search(tenants_by_namespace, &nspoid, HASH_FIND, &found);
	if (entry == NULL)
	{
		char	   *nspname = OidIsValid(nspoid) ? get_namespace_name(nspoid) : NULL;
		KgTenant	tenant;
		bool		exists = false;

		memset(&tenant, 0, sizeof(tenant));
		if (nspname != NULL)
			exists = read_registry_row(tenant_registry_relid, tenant_schema_index,
									   "schema_name", F_NAMEEQ,
									   DirectFunctionCall1(namein, CStringGetDatum(nspname)),
									   fill_tenant, &tenant) &&
				tenant.id[0] != '\0' && tenant.nspoid == nspoid;
		entry = hash_search(tenants_by_namespace, &nspoid, HASH_ENTER, &found);
		entry->tenant = tenant;
		entry->tenant.nspoid = nspoid;
		entry->exists = exists;
	}
	return entry->exists ? &entry->tenant : NULL;
}

KgTenant *
kg_tenant_by_namespace(Oid nspoid)
{
	if (!kg_extension_active())
		return NULL;
	return tenant_by_namespace(nspoid);
}

kg_hot KgTenant *
kg_tenant_by_id(const char *id)
{
	/* The last tenant looked up: a request asks for the same one again. */
	static KgTenantById *last_entry = NULL;
	static uint64 last_generation = 0;
	char		key[KG_TENANT_ID_MAXLEN + 1];
	KgTenantById *entry;
	bool		found;

	if (!kg_extension_active())
		return NULL;
	if (last_entry != NULL && last_generation == kg_hot_state.registry_generation &&
		strcmp(last_entry->id, id) == 0)
		return last_entry->exists ? &last_entry->tenant : NULL;
	if (strlen(id) > KG_TENANT_ID_MAXLEN)
		return NULL;
	memset(key, 0, sizeof(key));
	strlcpy(key, id, sizeof(key));
	entry = hash_search(tenants_by_id, key, HASH_FIND, NULL);
	if (entry == NULL)
	{
		KgTenant	tenant;
		bool		exists;

		memset(&tenant, 0, sizeof(tenant));
		exists = read_registry_row(tenant_registry_relid, tenant_id_index, "id", F_TEXTEQ,
								   CStringGetTextDatum(key), fill_tenant, &tenant) &&
			tenant.id[0] != '\0';
		entry = hash_search(tenants_by_id, key, HASH_ENTER, &found);
		entry->tenant = tenant;
		entry->exists = exists;
	}
	last_entry = entry;
	last_generation = kg_hot_state.registry_generation;
	return entry->exists ? &entry->tenant : NULL;
}

/*
 * Counts the registry cache's invalidations: a value derived from the
 * registry stays valid while this does not change.
 */
kg_hot uint64
kg_registry_generation(void)
{
	return kg_hot_state.registry_generation;
}

/*
 * get_role_oid(name, true), remembered until pg_authid changes, for the
 * few role names keys_guard checks on every request.
 */
kg_hot Oid
kg_role_oid(const char *rolename)
{
	Oid			roleid;

	for (int i = 0; i < role_cache_used; i++)
		if (strcmp(role_cache[i].name, rolename) == 0)
			return role_cache[i].roleid;
	roleid = get_role_oid(rolename, true);
	if (role_cache_used < KG_ROLE_CACHE_SIZE && strlen(rolename) < NAMEDATALEN)
	{
		strlcpy(role_cache[role_cache_used].name, rolename, NAMEDATALEN);
		role_cache[role_cache_used].roleid = roleid;
		role_cache_used++;
	}
	return roleid;
}

/*
 * Whether anything lives in schema nspoid.  Every object PostgreSQL names
 * within a schema (relations, types, functions, operators, collations,
 * conversions, operator classes and families, statistics objects, text
 * search objects, an extension's members) records a normal dependency on
 * its schema; an index or a TOAST table depends on its table instead,
 * which is in the same schema.  So one probe of pg_depend's reference
 * index answers it, and the answer is kept until one of the catalogs
 * above changes (kg_schema_contents_generation() counts those changes).
 */
kg_hot bool
kg_schema_has_objects(Oid nspoid)
{
	KgSchemaContents *entry;
	bool		found;

	if (!schema_contents_valid || schema_contents == NULL)
	{
		kg_oid_hash_renew(&schema_contents, "keys_guard schema contents",
						  sizeof(KgSchemaContents));
		schema_contents_valid = true;
	}
	entry = hash_search(schema_contents, &nspoid, HASH_FIND, NULL);
	if (entry == NULL)
	{
		Relation	depend = table_open(DependRelationId, AccessShareLock);
		ScanKeyData keys[2];
		SysScanDesc scan;
		bool		has_objects;

		ScanKeyInit(&keys[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber,
					F_OIDEQ, ObjectIdGetDatum(NamespaceRelationId));
		ScanKeyInit(&keys[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber,
					F_OIDEQ, ObjectIdGetDatum(nspoid));
		scan = systable_beginscan(depend, DependReferenceIndexId, true, NULL, 2, keys);
		has_objects = HeapTupleIsValid(systable_getnext(scan));
		systable_endscan(scan);
		table_close(depend, AccessShareLock);

		entry = hash_search(schema_contents, &nspoid, HASH_ENTER, &found);
		entry->has_objects = has_objects;
	}
	return entry->has_objects;
}

kg_hot uint64
kg_schema_contents_generation(void)
{
	return schema_contents_generation;
}

KgPooledRel *
kg_pooled_rel(Oid relid)
{
	KgRegisteredRel *entry;

	if (!kg_extension_active())
		return NULL;
	entry = registered_rel(relid);
	return entry->registered && entry->is_pooled ? &entry->pooled : NULL;
}

/* Look relid's entry up, and read it if it is new or invalidated. */
static pg_noinline KgRelationGuardEntry *
relation_guard_entry(Oid relid)
{
	KgRelationGuardEntry *entry;
	KgRelationGuard *guard;
	KgRegisteredRel *rel;
	bool		found;

	entry = hash_search(relation_guards, &relid, HASH_ENTER, &found);
	guard = &entry->guard;
	if (!found || !entry->valid)
	{
		/* An invalidation that arrives while we read marks it again. */
		entry->valid = true;
		guard->owner = NULL;
		guard->pooled = NULL;
		guard->table = NULL;
		PG_TRY();
		{
			guard->owner = tenant_by_namespace(get_rel_namespace(relid));
			rel = registered_rel(relid);
		}
		PG_CATCH();
		{
			entry->valid = false;
			PG_RE_THROW();
		}
		PG_END_TRY();
		guard->pooled = (guard->owner == NULL && rel->registered && rel->is_pooled)
			? &rel->pooled : NULL;
		guard->table = rel->registered ? &rel->table : NULL;
	}
	return entry;
}

/*
 * How a relation is guarded: by the schema of the tenant that owns it, as a
 * pooled table, or not at all.  This is the question every statement asks
 * of every relation it touches, so the answer is kept per relation oid and
 * costs one hash probe after the first time; the last answer, which a
 * statement asks for again, costs none (kg_relation_guard() in
 * keys_guard.h returns it).  Every change of the cache forgets that answer
 * (registry_changed()), and while the cache and its functions are valid
 * kg_extension_active() would change nothing.
 */
pg_noinline KgRelationGuard *
kg_relation_guard_lookup(Oid relid)
{
	KgRelationGuard *guard;
	uint64		generation;

	if (!kg_extension_active())
		return NULL;

	generation = kg_hot_state.registry_generation;
	guard = &relation_guard_entry(relid)->guard;
	guard = (guard->owner || guard->pooled) ? guard : NULL;
	/* Not if an invalidation arrived while the entry was read. */
	if (kg_hot_state.registry_generation == generation)
	{
		kg_hot_state.last_guard_relid = relid;
		kg_hot_state.last_guard = guard;
	}
	return guard;
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
	KgRegisteredRel *entry;

	if (!kg_extension_active())
		return NULL;
	entry = registered_rel(relid);
	return entry->registered ? &entry->table : NULL;
}

/*
 * The ON DELETE CASCADE foreign keys from soft-delete tables to a
 * soft-delete table, so that soft-deleting a parent can soft-delete its
 * children in the same statement.  Found through pg_depend (a foreign key
 * depends on the table it references), once per table until it changes.
 */
List *
kg_table_cascades(KgGuardedTable *table)
{
	KgRegisteredRel *entry = (KgRegisteredRel *) table;
	Relation	deprel;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	List	   *seen = NIL;
	List	   *cascades = NIL;
	MemoryContext oldcxt;

	if (entry->cascades_loaded)
		return table->cascades;
	if (!table->soft_delete)
	{
		entry->cascades_loaded = true;
		table->cascades = NIL;
		return NIL;
	}
	deprel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&keys[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(RelationRelationId));
	ScanKeyInit(&keys[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(table->relid));
	scan = systable_beginscan(deprel, DependReferenceIndexId, true, NULL, 2, keys);
	while ((tuple = systable_getnext(scan)) != NULL)
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tuple);
		HeapTuple	contuple;
		Form_pg_constraint con;
		KgRegisteredRel *child;
		KgCascade  *cascade;
		int			nkeys;

		if (dep->classid != ConstraintRelationId || list_member_oid(seen, dep->objid))
			continue;
		seen = lappend_oid(seen, dep->objid);
		contuple = SearchSysCache1(CONSTROID, ObjectIdGetDatum(dep->objid));
		if (!HeapTupleIsValid(contuple))
			continue;
		con = (Form_pg_constraint) GETSTRUCT(contuple);
		if (con->contype != CONSTRAINT_FOREIGN || con->confdeltype != FKCONSTR_ACTION_CASCADE ||
			con->confrelid != table->relid)
		{
			ReleaseSysCache(contuple);
			continue;
		}
		child = registered_rel(con->conrelid);
		if (!child->registered || !child->table.soft_delete)
		{
			ReleaseSysCache(contuple);
			continue;
		}
		oldcxt = MemoryContextSwitchTo(cache_context);
		cascade = palloc0(sizeof(KgCascade));
		cascade->child = con->conrelid;
		DeconstructFkConstraintRow(contuple, &nkeys, cascade->child_keys,
								   cascade->parent_keys, NULL, NULL, NULL, NULL, NULL);
		cascade->nkeys = nkeys;
		cascades = lappend(cascades, cascade);
		MemoryContextSwitchTo(oldcxt);
		ReleaseSysCache(contuple);
	}
	systable_endscan(scan);
	table_close(deprel, AccessShareLock);
	list_free(seen);

	/* The entry may have been read again meanwhile: it is still this table. */
	table->cascades = cascades;
	entry->cascades_loaded = true;
	return cascades;
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
kg_guard_active_func(void)
{
	return kg_extension_active() ? guard_active_funcid : InvalidOid;
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
