/*-------------------------------------------------------------------------
 *
 * control.c
 *	  Which code speaks for keys_guard: the registry and the guards change
 *	  only through keys_guard's own functions (docs/contract.md §11).
 *
 * While keys_guard itself is acting (acting.c: one of its procedural
 * functions, its internal mode, its worker or its own extension script,
 * and none of the user code those run), the registry tables may be written
 * and guard-weakening DDL is let through; otherwise both are refused,
 * superusers included.
 *
 * The registry tables carry a statement trigger, keys_guard._registry_guard(),
 * that enforces this for INSERT, UPDATE, DELETE and TRUNCATE.  One
 * exception: INSERT (or COPY) under keys_guard.bypass, which is how
 * pg_restore puts a dumped registry back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "utils/rel.h"

#include "keys_guard.h"

/*
 * keys_guard._registry_guard(): BEFORE ... FOR EACH STATEMENT trigger of
 * the registry tables.
 */
PG_FUNCTION_INFO_V1(keys_guard_registry_guard);
Datum
keys_guard_registry_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent event;
	const char *table;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "keys_guard_registry_guard: not called by trigger manager");
	event = trigdata->tg_event;

	if (kg_acting_for_keys_guard())
		return PointerGetDatum(NULL);
	/* pg_restore loading a dumped registry (docs/contract.md §11). */
	if (TRIGGER_FIRED_BY_INSERT(event) && kg_current_mode() == KG_MODE_BYPASS)
		return PointerGetDatum(NULL);

	table = RelationGetRelationName(trigdata->tg_relation);
	if (TRIGGER_FIRED_BY_INSERT(event))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot insert into keys_guard's registry table \"%s\" directly", table),
				 errdetail("The registry changes only through keys_guard's functions, for every role."),
				 errhint("Use keys_guard's functions (the view keys_guard.operations lists them); pg_restore loads a dump with PGOPTIONS='-c keys_guard.bypass=on'.")));
	else if (TRIGGER_FIRED_BY_UPDATE(event))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot update keys_guard's registry table \"%s\" directly", table),
				 errdetail("The registry changes only through keys_guard's functions, for every role."),
				 errhint("Use keys_guard's functions (the view keys_guard.operations lists them); pg_restore loads a dump with PGOPTIONS='-c keys_guard.bypass=on'.")));
	else if (TRIGGER_FIRED_BY_DELETE(event))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot delete from keys_guard's registry table \"%s\" directly", table),
				 errdetail("The registry changes only through keys_guard's functions, for every role."),
				 errhint("Use keys_guard's functions (the view keys_guard.operations lists them); pg_restore loads a dump with PGOPTIONS='-c keys_guard.bypass=on'.")));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot truncate keys_guard's registry table \"%s\" directly", table),
				 errdetail("The registry changes only through keys_guard's functions, for every role."),
				 errhint("Use keys_guard's functions (the view keys_guard.operations lists them); pg_restore loads a dump with PGOPTIONS='-c keys_guard.bypass=on'.")));
	PG_RETURN_NULL();			/* keep compiler quiet */
}
