/*-------------------------------------------------------------------------
 *
 * statement.c
 *	  Per-statement entries: what keys_guard remembers about a started
 *	  statement lives in the statement's executor memory, on a list of the
 *	  caller's, and a reset callback on that memory unlinks it, so
 *	  ExecutorEnd and an abort both forget it.
 *
 *	  isolation.c keeps the context a statement on guarded data started
 *	  under (a cursor must not be read under another); keyholder.c the key
 *	  a statement was counted under when it started.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/execdesc.h"
#include "nodes/execnodes.h"
#include "utils/memutils.h"

#include "keys_guard.h"

static void
statement_entry_forget(void *arg)
{
	dlist_delete(&((KgStatementEntry *) arg)->node);
}

/*
 * A zeroed entry of size bytes (a struct whose first member is a
 * KgStatementEntry) for the started statement queryDesc, on list.
 */
kg_hot void *
kg_statement_entry_new(dlist_head *list, QueryDesc *queryDesc, Size size)
{
	MemoryContext cxt = queryDesc->estate->es_query_cxt;
	KgStatementEntry *entry;

	Assert(size >= sizeof(KgStatementEntry));
	entry = MemoryContextAllocZero(cxt, size);
	entry->query_desc = queryDesc;
	entry->callback.func = statement_entry_forget;
	entry->callback.arg = entry;
	MemoryContextRegisterResetCallback(cxt, &entry->callback);
	dlist_push_head(list, &entry->node);
	return entry;
}
