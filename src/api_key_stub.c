/*-------------------------------------------------------------------------
 *
 * api_key_stub.c
 *	  TEMPORARY: a stand-in for context.c's kg_context_api_key() until the
 *	  API keys themselves (use_api_key(), the registry) are merged.  It says
 *	  that no key is ever in force.  Delete this file (and its line in the
 *	  Makefile) when context.c defines the function.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "keys_guard.h"

/* TEMPORARY: no key context yet; context.c will define the real one. */
const char *
kg_context_api_key(bool *can_write)
{
	if (can_write != NULL)
		*can_write = false;
	return NULL;
}
