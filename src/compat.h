/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every PG_VERSION_NUM conditional of keys_guard, in one place.
 *
 * keys_guard supports PostgreSQL 15: it is built and every test suite runs
 * against 15 only (CONTRIBUTING.md).  Older versions are refused here, as
 * the code relies on what 15 brought: shmem_request_hook,
 * MarkGUCPrefixReserved and MERGE.
 *
 * The branches for 16 and later below record changes known there (the
 * permission checks moved to RTEPermissionInfo) as a start for a port.
 * They are neither built nor tested, so keys_guard claims nothing for 16 or
 * later.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KEYS_GUARD_COMPAT_H
#define KEYS_GUARD_COMPAT_H

#if PG_VERSION_NUM < 150000
#error "keys_guard requires PostgreSQL 15 (older versions lack shmem_request_hook, MarkGUCPrefixReserved and MERGE)"
#endif

/* 16 moved permission checks from range table entries to RTEPermissionInfo. */
#if PG_VERSION_NUM >= 160000
#define KG_CHECK_PERMS_ARGS List *rangeTable, List *rtePermInfos, bool ereport_on_violation
#define KG_CHECK_PERMS_CALL_ARGS rangeTable, rtePermInfos, ereport_on_violation
#else
#define KG_CHECK_PERMS_ARGS List *rangeTable, bool ereport_on_violation
#define KG_CHECK_PERMS_CALL_ARGS rangeTable, ereport_on_violation
/* Up to 15, a range table entry says which access it needs (requiredPerms). */
#define KG_RTE_HAS_REQUIRED_PERMS 1
#endif

#endif							/* KEYS_GUARD_COMPAT_H */
