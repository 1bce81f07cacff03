/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every PG_VERSION_NUM conditional of keys_guard, in one place.
 *
 * keys_guard targets PostgreSQL 15 and keeps 13 to 17 buildable.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KEYS_GUARD_COMPAT_H
#define KEYS_GUARD_COMPAT_H

#if PG_VERSION_NUM < 130000
#error "keys_guard requires PostgreSQL 13 or later"
#endif

/* ProcessUtility gained "readOnlyTree" in 14. */
#if PG_VERSION_NUM >= 140000
#define KG_UTILITY_ARGS \
	PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define KG_UTILITY_CALL_ARGS \
	pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc
#else
#define KG_UTILITY_ARGS \
	PlannedStmt *pstmt, const char *queryString, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define KG_UTILITY_CALL_ARGS \
	pstmt, queryString, context, params, queryEnv, dest, qc
#endif

/* shmem_request_hook appeared in 15; before it, request from _PG_init. */
#if PG_VERSION_NUM >= 150000
#define KG_HAVE_SHMEM_REQUEST_HOOK 1
#endif

/* MarkGUCPrefixReserved replaced EmitWarningsOnPlaceholders in 15. */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* 16 moved permission checks from range table entries to RTEPermissionInfo. */
#if PG_VERSION_NUM >= 160000
#define KG_CHECK_PERMS_ARGS List *rangeTable, List *rtePermInfos, bool ereport_on_violation
#define KG_CHECK_PERMS_CALL_ARGS rangeTable, rtePermInfos, ereport_on_violation
#else
#define KG_CHECK_PERMS_ARGS List *rangeTable, bool ereport_on_violation
#define KG_CHECK_PERMS_CALL_ARGS rangeTable, ereport_on_violation
#endif

/* Whether a range table entry asks for no permission check (a rule's OLD/NEW). */
#if PG_VERSION_NUM >= 160000
#define KG_RTE_HAS_NO_PERMS(rte) ((rte)->perminfoindex == 0)
#else
#define KG_RTE_HAS_NO_PERMS(rte) ((rte)->requiredPerms == 0)
#endif

#endif							/* KEYS_GUARD_COMPAT_H */
