/*-------------------------------------------------------------------------
 *
 * utility.c
 *	  The checks keys_guard's ProcessUtility hook (hooks.c) makes before
 *	  the statement runs: the utility statements that touch tenant data
 *	  without going through the executor (docs/contract.md §6).
 *
 * TRUNCATE and LOCK name relations directly, so they are checked here with
 * the same rules as a query.  COPY of a guarded table TO a client, file or
 * program is turned into COPY (SELECT ... FROM ONLY table) TO, so that its
 * rows pass the planner's tenant and soft-delete filters like any SELECT;
 * COPY FROM is checked as an insert (ExecCheckRTPerms, which isolation.c
 * hooks, and the tenant row trigger).  DDL is scoped by the event triggers
 * of the install script.
 *
 * DDL that would weaken a guard is refused here, before it runs, for every
 * role (docs/contract.md §11): switching row security off, dropping or changing
 * keys_guard's policies and triggers, dropping or changing the soft-delete
 * and tenant columns, moving a guarded table out of its schema, renaming or
 * dropping a tenant schema, replacing or dropping keys_guard's own objects,
 * DROP EXTENSION while anything is guarded, ALTER EXTENSION keys_guard ADD
 * or DROP, making a guarded table unlogged (or creating an unlogged table in
 * a tenant schema), and changing or removing the values of an audit table
 * (docs/contract.md §5, §8).  Column commands are checked on every table they reach,
 * inheritance children and partitions included.  keys_guard's own functions
 * do all of these through its API (control.c says when they are running).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_inherits.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"

#include "keys_guard.h"

/* Check each relation a TRUNCATE or LOCK names. */
static void
check_relation_list(List *relations, const char *action)
{
	ListCell   *lc;

	foreach(lc, relations)
	{
		RangeVar   *rv = lfirst_node(RangeVar, lc);
		Oid			relid = RangeVarGetRelid(rv, NoLock, true);

		if (OidIsValid(relid))
			kg_check_relation(relid, action);
	}
}

/*
 * The column list of COPY ... TO as a SELECT target list: the columns
 * named, or else those COPY itself would write (not dropped, not
 * generated).  NIL with *ok false when a named column is not one COPY
 * accepts; PostgreSQL then reports that itself, before reading any row.
 */
static List *
copy_target_list(Relation rel, List *attlist, bool *ok)
{
	List	   *names = NIL;
	List	   *targets = NIL;
	ListCell   *lc;

	*ok = true;
	if (attlist == NIL)
	{
		TupleDesc	desc = RelationGetDescr(rel);

		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && !att->attgenerated)
				names = lappend(names, makeString(pstrdup(NameStr(att->attname))));
		}
	}
	else
	{
		foreach(lc, attlist)
		{
			const char *column = strVal(lfirst(lc));
			AttrNumber	attnum = get_attnum(RelationGetRelid(rel), column);

			if (attnum <= 0 || get_attgenerated(RelationGetRelid(rel), attnum))
			{
				*ok = false;
				return NIL;
			}
			names = lappend(names, makeString(pstrdup(column)));
		}
	}

	foreach(lc, names)
	{
		ColumnRef  *ref = makeNode(ColumnRef);
		ResTarget  *target = makeNode(ResTarget);

		ref->fields = list_make1(lfirst(lc));
		ref->location = -1;
		target->val = (Node *) ref;
		target->location = -1;
		targets = lappend(targets, target);
	}
	return targets;
}

/*
 * COPY <table> TO reads the table directly, without the planner, so the
 * tenant and soft-delete filters that keys_guard adds while planning would
 * never apply.  Return, for a guarded ordinary table, the statement
 * COPY (SELECT <columns> FROM ONLY <table>) TO ..., which copy.c itself
 * builds for roles subject to row security: the rows then pass the same
 * filters as a SELECT, for every role (docs/contract.md §6).  NULL when the
 * statement is left as it is: COPY FROM (checked as an INSERT), a query,
 * an unguarded relation, or one COPY refuses on its own (partitioned
 * tables, views).
 */
static CopyStmt *
copy_through_planner(CopyStmt *stmt)
{
	Oid			relid;
	Relation	rel;
	List	   *targets;
	bool		ok;
	RangeVar   *from;
	SelectStmt *select;
	CopyStmt   *result;

	if (stmt->is_from || stmt->relation == NULL || !kg_extension_active())
		return NULL;
	/* COPY itself takes this lock. */
	relid = RangeVarGetRelid(stmt->relation, AccessShareLock, true);
	if (!OidIsValid(relid) || kg_relation_guard(relid) == NULL ||
		get_rel_relkind(relid) != RELKIND_RELATION)
		return NULL;

	rel = table_open(relid, NoLock);
	targets = copy_target_list(rel, stmt->attlist, &ok);
	from = makeRangeVar(get_namespace_name(RelationGetNamespace(rel)),
						pstrdup(RelationGetRelationName(rel)), -1);
	table_close(rel, NoLock);
	if (!ok)
		return NULL;
	from->inh = false;			/* ONLY, as COPY of a table reads no children */

	select = makeNode(SelectStmt);
	select->targetList = targets;
	select->fromClause = list_make1(from);

	result = makeNode(CopyStmt);
	memcpy(result, stmt, sizeof(CopyStmt));
	result->relation = NULL;
	result->query = (Node *) select;
	/* Kept: COPY matches it against the query's columns, duplicates included. */
	result->attlist = stmt->attlist;
	return result;
}

/*
 * The database a statement needs free of other sessions (DROP DATABASE,
 * RENAME, or use as a CREATE DATABASE template), or InvalidOid.
 */
static Oid
database_needing_exclusive_access(Node *parsetree)
{
	if (IsA(parsetree, DropdbStmt))
		return get_database_oid(((DropdbStmt *) parsetree)->dbname, true);
	if (IsA(parsetree, RenameStmt) &&
		((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
		return get_database_oid(((RenameStmt *) parsetree)->subname, true);
	if (IsA(parsetree, CreatedbStmt))
	{
		ListCell   *lc;

		foreach(lc, ((CreatedbStmt *) parsetree)->options)
		{
			DefElem    *def = lfirst_node(DefElem, lc);

			if (strcmp(def->defname, "template") == 0 && def->arg != NULL)
				return get_database_oid(defGetString(def), true);
		}
	}
	return InvalidOid;
}

/*
 * Maintenance commands (VACUUM, ANALYZE, CLUSTER, REINDEX) read no data for
 * the client, so without a context they stay available to operators.  Under
 * a tenant context they count as schema changes and stay in the tenant's
 * own schema.
 */
static void
check_maintenance_target(RangeVar *rv, const char *action)
{
	Oid			relid;

	if (rv == NULL || kg_current_mode() != KG_MODE_TENANT)
		return;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (OidIsValid(relid))
	{
		/* An index is judged by its table. */
		Oid			table = IndexGetRelation(relid, true);

		kg_check_relation(OidIsValid(table) ? table : relid, action);
	}
}

static void
check_maintenance(Node *parsetree)
{
	ListCell   *lc;

	if (IsA(parsetree, VacuumStmt))
	{
		VacuumStmt *stmt = (VacuumStmt *) parsetree;

		foreach(lc, stmt->rels)
			check_maintenance_target(lfirst_node(VacuumRelation, lc)->relation,
									 stmt->is_vacuumcmd ? "vacuum" : "analyze");
	}
	else if (IsA(parsetree, ClusterStmt))
		check_maintenance_target(((ClusterStmt *) parsetree)->relation, "cluster");
	else if (IsA(parsetree, ReindexStmt))
	{
		ReindexStmt *stmt = (ReindexStmt *) parsetree;

		if (stmt->kind == REINDEX_OBJECT_TABLE || stmt->kind == REINDEX_OBJECT_INDEX)
			check_maintenance_target(stmt->relation, "reindex");
	}
}

/* printf into a palloc'd string. */
static char *format_va(const char *fmt, va_list args) pg_attribute_printf(1, 0);

static char *
format_va(const char *fmt, va_list args)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		copy;
		int			needed;

		va_copy(copy, args);
		needed = appendStringInfoVA(&buf, fmt, copy);
		va_end(copy);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	return buf.data;
}

/*
 * Refuse a statement that would weaken a guard: 42501, recorded in the
 * audit log like any other denial.  fmt is the whole primary message, one
 * per case, and like hint it is translated (for nls.mk: GETTEXT_TRIGGERS
 * refuse_ddl:2 refuse_ddl:3); the audit record keeps it untranslated.
 */
static void refuse_ddl(const char *target, const char *hint, const char *fmt,...)
			pg_attribute_printf(3, 4) pg_attribute_noreturn();

static void
refuse_ddl(const char *target, const char *hint, const char *fmt,...)
{
	va_list		args;
	char	   *refused;
	char	   *message;
	KgAuditDetail *detail;

	va_start(args, fmt);
	refused = format_va(fmt, args);
	va_end(args);
	va_start(args, fmt);
	message = format_va(_(fmt), args);
	va_end(args);

	detail = kg_audit_detail();
	kg_audit_detail_text(detail, "reason", "ddl weakening a guard");
	kg_audit_detail_text(detail, "refused", refused);
	kg_audit_enqueue("ddl", target, KG_OUTCOME_DENIED, detail);

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg_internal("%s", message),
			 errdetail("keys_guard guards it; the change would weaken a guard outside keys_guard's API."),
			 errhint("%s", _(hint))));
}

/* What a statement would do to one of keys_guard's own objects. */
typedef enum KgDdlVerb
{
	KG_DDL_ALTER,
	KG_DDL_DROP,
	KG_DDL_RENAME,
	KG_DDL_MOVE
} KgDdlVerb;

static const char *const release_hint =
gettext_noop("Release the table first with keys_guard.release_table(), or use keys_guard's functions.");

static bool
is_keys_guard_namespace(Oid nspoid)
{
	return OidIsValid(nspoid) && nspoid == get_namespace_oid("keys_guard", true);
}

/* Names keys_guard gives its policies, triggers and event triggers. */
static bool
is_guard_object_name(const char *name)
{
	return name != NULL && strncmp(name, KG_OBJECT_PREFIX, strlen(KG_OBJECT_PREFIX)) == 0;
}

/* A column a guard relies on: the soft-delete columns, the tenant column. */
static bool
is_guard_column(Oid relid, KgGuardedTable *table, const char *column)
{
	KgPooledRel *pooled;

	if (column == NULL)
		return false;
	if (table->soft_delete &&
		(strcmp(column, KG_COL_DELETED_AT) == 0 || strcmp(column, KG_COL_HARD_DELETE_AT) == 0 ||
		 strcmp(column, KG_COL_DELETED_BY) == 0 || strcmp(column, KG_COL_DELETE_REQUEST_ID) == 0))
		return true;
	pooled = kg_pooled_rel(relid);
	if (pooled != NULL)
	{
		char	   *tenant_column = get_attname(relid, pooled->tenant_attno, true);

		return tenant_column != NULL && strcmp(tenant_column, column) == 0;
	}
	return false;
}

/* The guarded table a RangeVar names, or InvalidOid. */
static Oid
guarded_relation(RangeVar *rv)
{
	Oid			relid;

	if (rv == NULL)
		return InvalidOid;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid) || kg_guarded_table(relid) == NULL)
		return InvalidOid;
	return relid;
}

/* keys_guard's own tables (registry, audit log) change only by its scripts. */
static void
check_own_relation(RangeVar *rv, KgDdlVerb verb)
{
	Oid			relid = rv ? RangeVarGetRelid(rv, NoLock, true) : InvalidOid;
	const char *hint = gettext_noop("keys_guard's own tables change only with ALTER EXTENSION keys_guard UPDATE.");
	char	   *name;

	if (!OidIsValid(relid) || !is_keys_guard_namespace(get_rel_namespace(relid)))
		return;
	name = kg_relation_name(relid);
	switch (verb)
	{
		case KG_DDL_ALTER:
			refuse_ddl(name, hint, "cannot alter keys_guard's table %s", name);
			break;
		case KG_DDL_DROP:
			refuse_ddl(name, hint, "cannot drop keys_guard's table %s", name);
			break;
		case KG_DDL_RENAME:
			refuse_ddl(name, hint, "cannot rename keys_guard's table %s", name);
			break;
		case KG_DDL_MOVE:
			refuse_ddl(name, hint, "cannot move keys_guard's table %s", name);
			break;
	}
}

/*
 * The relations an ALTER TABLE or RENAME changes: the one it names and,
 * unless it says ONLY, that one's partitions and inheritance children,
 * which PostgreSQL changes along with it for most column commands.
 */
static List *
relation_and_inheritors(RangeVar *rv)
{
	Oid			relid = rv ? RangeVarGetRelid(rv, NoLock, true) : InvalidOid;

	if (!OidIsValid(relid))
		return NIL;
	if (!rv->inh)
		return list_make1_oid(relid);
	return find_all_inheritors(relid, NoLock, NULL);
}

/* Whether PostgreSQL applies an ALTER TABLE subcommand to child tables too. */
static bool
subcommand_recurses(AlterTableType subtype)
{
	switch (subtype)
	{
		case AT_EnableRowSecurity:
		case AT_DisableRowSecurity:
		case AT_ForceRowSecurity:
		case AT_NoForceRowSecurity:
		case AT_SetLogged:
		case AT_SetUnLogged:
			return false;
		default:
			return true;
	}
}

/*
 * An audit table keeps the values of its existing rows (docs/contract.md §8): no
 * subcommand may change or remove them.  ADD COLUMN may rewrite the table
 * but keeps every existing value, and so do SET STORAGE, SET COMPRESSION,
 * CLUSTER and VACUUM FULL; they are allowed.
 */
static void
check_audit_subcommand(Oid relid, AlterTableCmd *cmd)
{
	char	   *name = kg_relation_name(relid);

	switch (cmd->subtype)
	{
		case AT_DropColumn:
			refuse_ddl(name, "An audit table keeps every value it holds; add columns instead of dropping them.",
					   "cannot drop column \"%s\" of audit table %s", cmd->name, name);
			break;
		case AT_AlterColumnType:
			refuse_ddl(name, "An audit table keeps every value it holds; add a column of the new type instead.",
					   "cannot change the type of column \"%s\" of audit table %s", cmd->name, name);
			break;
		default:
			break;
	}
}

/* One subcommand of an ALTER TABLE that reaches guarded table relid. */
static void
check_alter_table_subcommand(Oid relid, KgGuardedTable *table, AlterTableCmd *cmd)
{
	char	   *name = kg_relation_name(relid);

	if (table->class == KG_CLASS_AUDIT)
		check_audit_subcommand(relid, cmd);

	switch (cmd->subtype)
	{
		case AT_DisableRowSecurity:
			refuse_ddl(name, release_hint,
					   "cannot disable row-level security of guarded table %s", name);
			break;
		case AT_NoForceRowSecurity:
			refuse_ddl(name, release_hint,
					   "cannot stop forcing row-level security of guarded table %s", name);
			break;
		case AT_SetUnLogged:
			refuse_ddl(name, "A crash empties an unlogged table, so a guarded table stays logged; release the table first if it must become unlogged.",
					   "cannot make guarded table %s unlogged", name);
			break;
		case AT_EnableTrig:
		case AT_EnableReplicaTrig:
		case AT_DisableTrig:
			if (is_guard_object_name(cmd->name))
				refuse_ddl(name, "keys_guard's triggers stay enabled ALWAYS; keys_guard.release_table() removes them.",
						   "cannot change trigger \"%s\" of guarded table %s", cmd->name, name);
			break;
		case AT_EnableTrigAll:
		case AT_EnableTrigUser:
		case AT_DisableTrigAll:
		case AT_DisableTrigUser:
			refuse_ddl(name, "Name the triggers to change one by one; keys_guard's own (keys_guard_*) stay enabled ALWAYS.",
					   "cannot change all triggers of guarded table %s", name);
			break;
		case AT_DropColumn:
			if (is_guard_column(relid, table, cmd->name))
				refuse_ddl(name, release_hint,
						   "cannot drop column \"%s\" of guarded table %s", cmd->name, name);
			break;
		case AT_AlterColumnType:
		case AT_ColumnDefault:
		case AT_CookedColumnDefault:
		case AT_DropNotNull:
		case AT_SetNotNull:
		case AT_DropExpression:
		case AT_AddIdentity:
		case AT_SetIdentity:
		case AT_DropIdentity:
		case AT_AlterColumnGenericOptions:
			if (is_guard_column(relid, table, cmd->name))
				refuse_ddl(name, release_hint,
						   "cannot alter column \"%s\" of guarded table %s", cmd->name, name);
			break;
		default:
			break;
	}
}

static void
check_alter_table(AlterTableStmt *stmt)
{
	ListCell   *lr;

	check_own_relation(stmt->relation, KG_DDL_ALTER);
	foreach(lr, relation_and_inheritors(stmt->relation))
	{
		Oid			relid = lfirst_oid(lr);
		bool		named = (foreach_current_index(lr) == 0);
		KgGuardedTable *table = kg_guarded_table(relid);
		ListCell   *lc;

		if (table == NULL)
			continue;
		foreach(lc, stmt->cmds)
		{
			AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

			if (named || subcommand_recurses(cmd->subtype))
				check_alter_table_subcommand(relid, table, cmd);
		}
	}
}

/* DROP of a policy or trigger, named as (table name parts..., object name). */
static void
check_table_object(List *names, ObjectType kind)
{
	const char *object = strVal(llast(names));
	Oid			relid;
	char	   *name;

	if (!is_guard_object_name(object) || list_length(names) < 2)
		return;
	relid = guarded_relation(makeRangeVarFromNameList(list_truncate(list_copy(names),
																   list_length(names) - 1)));
	if (!OidIsValid(relid))
		return;
	name = kg_relation_name(relid);
	if (kind == OBJECT_POLICY)
		refuse_ddl(name, release_hint,
				   "cannot drop policy \"%s\" of guarded table %s", object, name);
	else
		refuse_ddl(name, release_hint,
				   "cannot drop trigger \"%s\" of guarded table %s", object, name);
}

/* DROP or RENAME of keys_guard's schema or a tenant's. */
static void
check_schema(const char *schema, KgDdlVerb verb)
{
	Oid			nspoid = get_namespace_oid(schema, true);
	const char *own_hint = gettext_noop("Run SELECT keys_guard.release_all(confirm => true) and DROP EXTENSION keys_guard to remove keys_guard.");
	const char *tenant_hint = gettext_noop("Use keys_guard.delete_tenant(), which drops the schema after the grace period.");
	KgTenant   *tenant;

	Assert(verb == KG_DDL_DROP || verb == KG_DDL_RENAME);
	if (!OidIsValid(nspoid))
		return;
	if (is_keys_guard_namespace(nspoid))
	{
		if (verb == KG_DDL_DROP)
			refuse_ddl(schema, own_hint, "cannot drop schema \"%s\"", schema);
		else
			refuse_ddl(schema, own_hint, "cannot rename schema \"%s\"", schema);
	}
	tenant = kg_tenant_by_namespace(nspoid);
	if (tenant == NULL)
		return;
	if (verb == KG_DDL_DROP)
		refuse_ddl(schema, tenant_hint, "cannot drop schema \"%s\" of tenant \"%s\"",
				   schema, tenant->id);
	else
		refuse_ddl(schema, tenant_hint, "cannot rename schema \"%s\" of tenant \"%s\"",
				   schema, tenant->id);
}

static void
check_function(ObjectWithArgs *func, ObjectType objtype, KgDdlVerb verb)
{
	Oid			funcid = LookupFuncWithArgs(objtype, func, true);
	const char *hint = gettext_noop("keys_guard's own functions change only with ALTER EXTENSION keys_guard UPDATE.");
	char	   *name;

	if (!OidIsValid(funcid) || !is_keys_guard_namespace(get_func_namespace(funcid)))
		return;
	name = format_procedure(funcid);
	switch (verb)
	{
		case KG_DDL_ALTER:
			refuse_ddl(name, hint, "cannot alter keys_guard's function %s", name);
			break;
		case KG_DDL_DROP:
			refuse_ddl(name, hint, "cannot drop keys_guard's function %s", name);
			break;
		case KG_DDL_RENAME:
			refuse_ddl(name, hint, "cannot rename keys_guard's function %s", name);
			break;
		case KG_DDL_MOVE:
			refuse_ddl(name, hint, "cannot move keys_guard's function %s", name);
			break;
	}
}

static void
check_drop(DropStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		Node	   *object = lfirst(lc);

		switch (stmt->removeType)
		{
			case OBJECT_POLICY:
				check_table_object(castNode(List, object), OBJECT_POLICY);
				break;
			case OBJECT_TRIGGER:
				check_table_object(castNode(List, object), OBJECT_TRIGGER);
				break;
			case OBJECT_TABLE:
				{
					RangeVar   *rv = makeRangeVarFromNameList(castNode(List, object));
					Oid			relid = guarded_relation(rv);

					check_own_relation(rv, KG_DDL_DROP);
					if (OidIsValid(relid))
						refuse_ddl(kg_relation_name(relid), release_hint,
								   "cannot drop guarded table %s", kg_relation_name(relid));
				}
				break;
			case OBJECT_SCHEMA:
				check_schema(strVal(object), KG_DDL_DROP);
				break;
			case OBJECT_FUNCTION:
			case OBJECT_PROCEDURE:
			case OBJECT_ROUTINE:
				check_function(castNode(ObjectWithArgs, object), stmt->removeType, KG_DDL_DROP);
				break;
			case OBJECT_EVENT_TRIGGER:
				if (is_guard_object_name(strVal(object)))
					refuse_ddl(strVal(object), "Run SELECT keys_guard.release_all(confirm => true) and DROP EXTENSION keys_guard to remove keys_guard.",
							   "cannot drop keys_guard's event trigger \"%s\"", strVal(object));
				break;
			case OBJECT_EXTENSION:
				if (strcmp(strVal(object), "keys_guard") == 0 && kg_registry_in_use())
					refuse_ddl("keys_guard",
							   "Run SELECT keys_guard.release_all(confirm => true) first; it releases every table and tenant and leaves all data in place.",
							   "cannot drop extension keys_guard while tables or tenants are guarded");
				break;
			default:
				break;
		}
	}
}

static void
check_rename(RenameStmt *stmt)
{
	Oid			relid;
	ListCell   *lc;

	switch (stmt->renameType)
	{
		case OBJECT_COLUMN:
			/* Renaming a column renames it in every child table too. */
			foreach(lc, relation_and_inheritors(stmt->relation))
			{
				KgGuardedTable *table = kg_guarded_table(lfirst_oid(lc));

				relid = lfirst_oid(lc);
				if (table != NULL && is_guard_column(relid, table, stmt->subname))
					refuse_ddl(kg_relation_name(relid), release_hint,
							   "cannot rename column \"%s\" of guarded table %s", stmt->subname,
							   kg_relation_name(relid));
			}
			break;
		case OBJECT_POLICY:
		case OBJECT_TRIGGER:
			relid = guarded_relation(stmt->relation);
			if (!OidIsValid(relid) || !is_guard_object_name(stmt->subname))
				break;
			if (stmt->renameType == OBJECT_POLICY)
				refuse_ddl(kg_relation_name(relid), release_hint,
						   "cannot rename policy \"%s\" of guarded table %s",
						   stmt->subname, kg_relation_name(relid));
			else
				refuse_ddl(kg_relation_name(relid), release_hint,
						   "cannot rename trigger \"%s\" of guarded table %s",
						   stmt->subname, kg_relation_name(relid));
			break;
		case OBJECT_SCHEMA:
			check_schema(stmt->subname, KG_DDL_RENAME);
			break;
		case OBJECT_TABLE:
			check_own_relation(stmt->relation, KG_DDL_RENAME);
			break;
		case OBJECT_FUNCTION:
		case OBJECT_PROCEDURE:
		case OBJECT_ROUTINE:
			check_function(castNode(ObjectWithArgs, stmt->object), stmt->renameType, KG_DDL_RENAME);
			break;
		case OBJECT_EVENT_TRIGGER:
			if (is_guard_object_name(stmt->subname))
				refuse_ddl(stmt->subname, "keys_guard's event triggers keep their names.",
						   "cannot rename keys_guard's event trigger \"%s\"", stmt->subname);
			break;
		default:
			break;
	}
}

/*
 * Tables in a tenant schema are guarded as they are created, and a
 * guarded table is never unlogged (docs/contract.md §5): a crash would empty it.
 * So no unlogged table is created in, or moved into, a tenant schema.
 */
static void
check_unlogged_in_tenant_schema(RangeVar *rv, Oid nspoid)
{
	KgTenant   *tenant = kg_tenant_by_namespace(nspoid);

	if (tenant != NULL)
		refuse_ddl(rv->relname,
				   "Create the table as a permanent (logged) table; keys_guard guards every table of a tenant schema, and a crash empties an unlogged one.",
				   "cannot create unlogged table \"%s\" in the schema of tenant \"%s\"",
				   rv->relname, tenant->id);
}

static void
check_new_relation(RangeVar *rv)
{
	if (rv == NULL || rv->relpersistence != RELPERSISTENCE_UNLOGGED)
		return;
	check_unlogged_in_tenant_schema(rv, RangeVarGetCreationNamespace(rv));
}

static void
check_move_unlogged(AlterObjectSchemaStmt *stmt)
{
	Oid			relid;
	Oid			nspoid;

	if (stmt->objectType != OBJECT_TABLE || stmt->relation == NULL)
		return;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	nspoid = get_namespace_oid(stmt->newschema, true);
	if (OidIsValid(relid) && OidIsValid(nspoid) &&
		get_rel_persistence(relid) == RELPERSISTENCE_UNLOGGED)
		check_unlogged_in_tenant_schema(stmt->relation, nspoid);
}

/*
 * keys_guard's members change only through its own scripts: ALTER
 * EXTENSION keys_guard ADD or DROP would let a guard object leave the
 * extension (and pg_dump's view of it).  pg_upgrade re-adds members with
 * ADD in binary-upgrade mode.
 */
static void
check_extension_contents(AlterExtensionContentsStmt *stmt)
{
	if (strcmp(stmt->extname, "keys_guard") != 0)
		return;
	if (stmt->action > 0 && IsBinaryUpgrade)
		return;
	if (stmt->action > 0)
		refuse_ddl("keys_guard",
				   "keys_guard's objects change only with ALTER EXTENSION keys_guard UPDATE.",
				   "cannot add an object to extension keys_guard");
	else
		refuse_ddl("keys_guard",
				   "keys_guard's objects change only with ALTER EXTENSION keys_guard UPDATE.",
				   "cannot drop an object from extension keys_guard");
}

/*
 * DDL that would weaken a guard, refused unless keys_guard itself is
 * acting.
 */
static void
check_guard_rails(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_AlterTableStmt:
		case T_DropStmt:
		case T_RenameStmt:
		case T_AlterPolicyStmt:
		case T_CreateTrigStmt:
		case T_AlterObjectSchemaStmt:
		case T_AlterFunctionStmt:
		case T_CreateFunctionStmt:
		case T_DropOwnedStmt:
		case T_AlterEventTrigStmt:
		case T_AlterExtensionContentsStmt:
		case T_CreateStmt:
		case T_CreateTableAsStmt:
			break;
		default:
			return;				/* the common case: nothing to check */
	}
	if (kg_acting_for_keys_guard() || !kg_extension_active())
		return;

	switch (nodeTag(parsetree))
	{
		case T_AlterTableStmt:
			check_alter_table((AlterTableStmt *) parsetree);
			break;
		case T_DropStmt:
			check_drop((DropStmt *) parsetree);
			break;
		case T_RenameStmt:
			check_rename((RenameStmt *) parsetree);
			break;
		case T_AlterPolicyStmt:
			{
				AlterPolicyStmt *stmt = (AlterPolicyStmt *) parsetree;
				Oid			relid = guarded_relation(stmt->table);

				if (OidIsValid(relid) && is_guard_object_name(stmt->policy_name))
					refuse_ddl(kg_relation_name(relid), release_hint,
							   "cannot alter policy \"%s\" of guarded table %s",
							   stmt->policy_name, kg_relation_name(relid));
			}
			break;
		case T_CreateTrigStmt:
			{
				CreateTrigStmt *stmt = (CreateTrigStmt *) parsetree;
				Oid			relid = guarded_relation(stmt->relation);

				if (stmt->replace && OidIsValid(relid) && is_guard_object_name(stmt->trigname))
					refuse_ddl(kg_relation_name(relid), release_hint,
							   "cannot replace trigger \"%s\" of guarded table %s",
							   stmt->trigname, kg_relation_name(relid));
			}
			break;
		case T_AlterObjectSchemaStmt:
			{
				AlterObjectSchemaStmt *stmt = (AlterObjectSchemaStmt *) parsetree;
				Oid			relid;

				if (stmt->objectType == OBJECT_FUNCTION || stmt->objectType == OBJECT_PROCEDURE)
				{
					check_function(castNode(ObjectWithArgs, stmt->object), stmt->objectType,
								   KG_DDL_MOVE);
					break;
				}
				check_own_relation(stmt->relation, KG_DDL_MOVE);
				check_move_unlogged(stmt);
				relid = guarded_relation(stmt->relation);
				if (OidIsValid(relid))
					refuse_ddl(kg_relation_name(relid), release_hint,
							   "cannot move guarded table %s to another schema", kg_relation_name(relid));
			}
			break;
		case T_AlterFunctionStmt:
			{
				AlterFunctionStmt *stmt = (AlterFunctionStmt *) parsetree;

				check_function(stmt->func, stmt->objtype, KG_DDL_ALTER);
			}
			break;
		case T_CreateFunctionStmt:
			{
				CreateFunctionStmt *stmt = (CreateFunctionStmt *) parsetree;
				char	   *fname;

				/* Also no new ones: they would count as keys_guard's own. */
				if (!is_keys_guard_namespace(QualifiedNameGetCreationNamespace(stmt->funcname, &fname)))
					break;
				if (stmt->replace)
					refuse_ddl(fname, "keys_guard's own functions change only with ALTER EXTENSION keys_guard UPDATE.",
							   "cannot replace function %s in schema keys_guard",
							   NameListToString(stmt->funcname));
				else
					refuse_ddl(fname, "keys_guard's own functions change only with ALTER EXTENSION keys_guard UPDATE.",
							   "cannot create function %s in schema keys_guard",
							   NameListToString(stmt->funcname));
			}
			break;
		case T_DropOwnedStmt:
			{
				ListCell   *lc;

				foreach(lc, ((DropOwnedStmt *) parsetree)->roles)
				{
					RoleSpec   *spec = lfirst_node(RoleSpec, lc);
					Oid			roleid = get_rolespec_oid(spec, true);
					KgTenant   *tenant = OidIsValid(roleid) ? kg_tenant_owned_by(roleid) : NULL;

					if (tenant != NULL)
						refuse_ddl(get_rolespec_name(spec),
								   "Use keys_guard.delete_tenant() to remove a tenant; its schema is dropped after the grace period.",
								   "cannot drop the objects of role \"%s\": it owns the schema of tenant \"%s\"",
								   get_rolespec_name(spec), tenant->id);
				}
			}
			break;
		case T_AlterEventTrigStmt:
			{
				AlterEventTrigStmt *stmt = (AlterEventTrigStmt *) parsetree;

				if (is_guard_object_name(stmt->trigname) && stmt->tgenabled != TRIGGER_FIRES_ALWAYS)
					refuse_ddl(stmt->trigname, "keys_guard's event triggers stay enabled ALWAYS.",
							   "cannot change keys_guard's event trigger \"%s\"", stmt->trigname);
			}
			break;
		case T_AlterExtensionContentsStmt:
			check_extension_contents((AlterExtensionContentsStmt *) parsetree);
			break;
		case T_CreateStmt:
			check_new_relation(((CreateStmt *) parsetree)->relation);
			break;
		case T_CreateTableAsStmt:
			check_new_relation(((CreateTableAsStmt *) parsetree)->into->rel);
			break;
		default:
			break;
	}
}

/*
 * ALTER EXTENSION keys_guard UPDATE by its owner: lock the extension as
 * DROP EXTENSION does (AccessExclusiveLock on its pg_extension entry)
 * before the update script takes any of its tables.  The database's
 * keys_guard worker locks that entry before it opens the extension's
 * tables (worker.c, begin_extension_xact()), so the two wait for each
 * other's transaction instead of meeting each other's table locks in a
 * cycle.  Anyone else's ALTER EXTENSION fails its ownership check in
 * PostgreSQL, and takes no lock here first.
 */
static void
lock_extension_for_update(AlterExtensionStmt *stmt)
{
	Oid			extoid;

	if (strcmp(stmt->extname, "keys_guard") != 0)
		return;
	extoid = get_extension_oid("keys_guard", true);
	if (OidIsValid(extoid) && pg_extension_ownercheck(extoid, GetUserId()))
		LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessExclusiveLock);
}

/*
 * From ProcessUtility_hook (hooks.c), before the statement runs: check it,
 * and hand back the statement to run instead, which is pstmt itself unless
 * a COPY TO was turned into COPY (SELECT ...) TO.
 */
kg_hot PlannedStmt *
kg_utility_check_statement(PlannedStmt *pstmt)
{
	Node	   *parsetree = pstmt->utilityStmt;
	Oid			exclusive_db = database_needing_exclusive_access(parsetree);

	/* keys_guard's own worker must not be the "other session" in the way. */
	if (OidIsValid(exclusive_db))
		kg_worker_stop_database(exclusive_db);

	if (IsA(parsetree, CopyStmt))
	{
		CopyStmt   *copy = copy_through_planner((CopyStmt *) parsetree);

		if (copy != NULL)
		{
			PlannedStmt *rewritten = makeNode(PlannedStmt);

			memcpy(rewritten, pstmt, sizeof(PlannedStmt));
			rewritten->utilityStmt = (Node *) copy;
			pstmt = rewritten;
			parsetree = (Node *) copy;
		}
	}

	if (IsA(parsetree, AlterExtensionStmt))
		lock_extension_for_update((AlterExtensionStmt *) parsetree);
	else if (IsA(parsetree, TruncateStmt))
		check_relation_list(((TruncateStmt *) parsetree)->relations, "truncate");
	else if (IsA(parsetree, LockStmt))
		check_relation_list(((LockStmt *) parsetree)->relations, "lock");
	else
		check_maintenance(parsetree);
	check_guard_rails(parsetree);
	return pstmt;
}
