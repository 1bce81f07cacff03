/*-------------------------------------------------------------------------
 *
 * redact.c
 *	  Keeps API key secrets out of the server log, out of the error
 *	  messages that pass through it, and out of pg_stat_activity.
 *
 * A secret is the prefix KG_API_KEY_PREFIX followed by at least one
 * letter, digit or underscore; the whole run of those after the prefix is
 * replaced by a fixed marker, so "kgk_<92 characters>" becomes
 * KG_REDACTED_MARKER.  The length and the checksum are not looked at: a
 * truncated or mistyped key is still (most of) a secret.  Upper-case
 * letters are part of the run although real keys are lower-case, so that
 * a key with one wrong character is not cut in two with its tail left
 * visible; the underscore is, so that two keys written back to back
 * (constant folding of 'kgk_...' || 'kgk_...' prints them so) are one
 * run and not one marker followed by the second key without its prefix.
 * The prefix with nothing after it is left alone, which makes redaction
 * idempotent (the marker itself is not a secret).
 *
 * Three entry points, all dispatched from hooks.c:
 *
 *	- kg_redact_error_data(), from emit_log_hook: every text field of a
 *	  message bound for the server log (and, when it goes there too, the
 *	  client).  The statement that PostgreSQL appends after the hook
 *	  ("STATEMENT:" in stderr, the statement field of csvlog and jsonlog)
 *	  is debug_query_string, which the hook cannot change; when it carries
 *	  a secret and would be printed, the hook sets hide_stmt and appends
 *	  the redacted statement to the server-only detail (detail_log).  Runs
 *	  inside error reporting: it never throws, and when it cannot allocate
 *	  it overwrites the secret in place instead.  For messages up to ERROR
 *	  it also redacts this backend's pg_stat_activity text if that still
 *	  carries a secret (a statement that failed before parse analysis).
 *	- kg_redact_activity(), from post_parse_analyze_hook, planner_hook,
 *	  ExecutorStart_hook and ProcessUtility_hook: when the top-level
 *	  statement text (debug_query_string) carries a secret, report a
 *	  redacted copy to pg_stat_activity.
 *	- kg_redact_text(), the redaction itself for any caller.
 *
 * The common case, a text without the prefix, costs one scan for the
 * prefix's first byte and allocates nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/elog.h"
#include "utils/memutils.h"

#include "keys_guard.h"

#define PREFIX_LEN		(sizeof(KG_API_KEY_PREFIX) - 1)
#define MARKER_LEN		(sizeof(KG_REDACTED_MARKER) - 1)
#define STATEMENT_LABEL "statement: "

/* A character of a secret's run: ASCII letters, digits and '_'. */
static inline bool
is_key_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		(c >= 'A' && c <= 'Z') || c == '_';
}

/*
 * The first secret in s[0..len), as the position of its prefix, or NULL.
 * A secret whose run is cut by len still counts (one key character after
 * the prefix is enough).  Scans for the prefix's first byte with memchr;
 * all server encodings keep ASCII bytes unambiguous, so a byte-wise search
 * never matches inside a multibyte character.
 */
static const char *
find_secret(const char *s, size_t len)
{
	const char *p = s;
	const char *end = s + len;

	while (p < end && (p = memchr(p, KG_API_KEY_PREFIX[0], end - p)) != NULL)
	{
		if ((size_t) (end - p) > PREFIX_LEN &&
			memcmp(p, KG_API_KEY_PREFIX, PREFIX_LEN) == 0 &&
			is_key_char(p[PREFIX_LEN]))
			return p;
		p++;
	}
	return NULL;
}

/*
 * Redact s[0..len), whose first secret is at first, into a new
 * NUL-terminated string allocated in cxt; NULL when that allocation fails
 * (never an error: this runs inside error reporting too).
 */
static char *
redact_into(MemoryContext cxt, const char *s, size_t len, const char *first)
{
	const char *end = s + len;
	const char *p;
	size_t		outlen = 0;
	char	   *out;
	char	   *o;

	/* First pass: the length of the result. */
	outlen = first - s;
	p = first;
	while (p != NULL)
	{
		const char *run = p + PREFIX_LEN;
		const char *next;

		while (run < end && is_key_char(*run))
			run++;
		outlen += MARKER_LEN;
		next = find_secret(run, end - run);
		outlen += (next ? next : end) - run;
		p = next;
	}

	out = MemoryContextAllocExtended(cxt, outlen + 1,
									 MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (out == NULL)
		return NULL;

	/* Second pass: copy, with each secret replaced by the marker. */
	o = out;
	memcpy(o, s, first - s);
	o += first - s;
	p = first;
	while (p != NULL)
	{
		const char *run = p + PREFIX_LEN;
		const char *next;

		while (run < end && is_key_char(*run))
			run++;
		memcpy(o, KG_REDACTED_MARKER, MARKER_LEN);
		o += MARKER_LEN;
		next = find_secret(run, end - run);
		memcpy(o, run, (next ? next : end) - run);
		o += (next ? next : end) - run;
		p = next;
	}
	*o = '\0';
	Assert(o == out + outlen);
	return out;
}

/*
 * Last resort when no memory is left: overwrite every secret's run in
 * place with '*', so the text keeps its length and loses the secret.
 */
static void
scrub_in_place(char *s)
{
	char	   *p = s;
	const char *first;

	while ((first = find_secret(p, strlen(p))) != NULL)
	{
		p = (char *) first + PREFIX_LEN;
		while (is_key_char(*p))
			*p++ = '*';
	}
}

/*
 * A redacted copy of s in the current memory context, or NULL when s
 * carries no secret (nothing is allocated then).  For ordinary callers:
 * an allocation failure is the usual out-of-memory error.
 */
char *
kg_redact_text(const char *s)
{
	size_t		len;
	const char *first;
	char	   *out;

	if (s == NULL)
		return NULL;
	len = strlen(s);
	first = find_secret(s, len);
	if (first == NULL)
		return NULL;
	out = redact_into(CurrentMemoryContext, s, len, first);
	if (out == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return out;
}

/* Does s carry a secret? */
bool
kg_text_has_secret(const char *s)
{
	return s != NULL && find_secret(s, strlen(s)) != NULL;
}

/*
 * Redact one palloc'd field of an ErrorData in place: replace the pointer
 * by a redacted copy in cxt and free the old text (errfinish frees the
 * fields it finds, and a LOG message does not reset ErrorContext), or
 * scrub it in place when there is no memory for a copy.
 */
static void
redact_field(char **field, MemoryContext cxt)
{
	char	   *s = *field;
	size_t		len;
	const char *first;
	char	   *out;

	if (s == NULL)
		return;
	len = strlen(s);
	first = find_secret(s, len);
	if (first == NULL)
		return;
	out = redact_into(cxt, s, len, first);
	if (out == NULL)
	{
		scrub_in_place(s);
		return;
	}
	*field = out;
	pfree(s);
}

/*
 * The statement PostgreSQL would print after this message, when it
 * carries a secret: hide it, and give the server log its redacted text in
 * the server-only detail, after the detail the log would show anyway.
 * check_log_of_query() is the test elog.c applies for every destination.
 */
static void
redact_statement(ErrorData *edata, MemoryContext cxt)
{
	const char *stmt = debug_query_string;
	size_t		len;
	const char *first;
	char	   *redacted;
	const char *base;
	size_t		baselen;
	size_t		redlen;
	char	   *detail;
	char	   *o;

	if (stmt == NULL || !check_log_of_query(edata))
		return;
	len = strlen(stmt);
	first = find_secret(stmt, len);
	if (first == NULL)
		return;

	/* From here on the statement is never printed as it was. */
	edata->hide_stmt = true;

	redacted = redact_into(cxt, stmt, len, first);
	if (redacted == NULL)
		return;

	/* Already redacted by redact_field(), like the fields it copies from. */
	base = edata->detail_log ? edata->detail_log : edata->detail;
	baselen = base ? strlen(base) : 0;
	redlen = strlen(redacted);
	detail = MemoryContextAllocExtended(cxt,
										baselen + 1 + strlen(STATEMENT_LABEL) + redlen + 1,
										MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (detail == NULL)
	{
		pfree(redacted);
		return;
	}
	o = detail;
	if (base)
	{
		memcpy(o, base, baselen);
		o += baselen;
		*o++ = '\n';
	}
	memcpy(o, STATEMENT_LABEL, strlen(STATEMENT_LABEL));
	o += strlen(STATEMENT_LABEL);
	memcpy(o, redacted, redlen + 1);
	pfree(redacted);

	if (edata->detail_log)
		pfree(edata->detail_log);
	edata->detail_log = detail;
}

/*
 * Report text[0..len), whose first secret is at first, to pg_stat_activity
 * as this backend's running statement, redacted and with the query id
 * parse analysis reported kept.  Never throws: false when there was no
 * memory for the copy.
 */
static bool
report_redacted_activity(MemoryContext cxt, const char *text, size_t len,
						 const char *first)
{
	char	   *redacted;
	uint64		query_id;

	redacted = redact_into(cxt, text, len, first);
	if (redacted == NULL)
		return false;

	/*
	 * Reporting a running statement forgets its query id; put back the one
	 * parse analysis already reported.
	 */
	query_id = pgstat_get_my_query_id();
	pgstat_report_activity(STATE_RUNNING, redacted);
	if (query_id != UINT64CONST(0))
		pgstat_report_query_id(query_id, true);
	pfree(redacted);
	return true;
}

/*
 * The text pg_stat_activity shows for this backend, when it is running a
 * statement whose text still carries a secret: a statement that failed
 * before parse analysis (a syntax error) never reached
 * kg_redact_activity(), and its text would stay on show, the session's
 * last query, until the next statement.  Redact it now.  Reads only this
 * backend's own entry, which no other process writes.  Never throws.
 */
static void
redact_own_activity(MemoryContext cxt)
{
	const char *shown;
	size_t		len;
	const char *first;

	if (MyBEEntry == NULL || MyBEEntry->st_procpid != MyProcPid ||
		!pgstat_track_activities || MyBEEntry->st_state != STATE_RUNNING ||
		MyBEEntry->st_activity_raw == NULL)
		return;
	shown = MyBEEntry->st_activity_raw;
	len = strnlen(shown, pgstat_track_activity_query_size);
	first = find_secret(shown, len);
	if (first == NULL)
		return;
	(void) report_redacted_activity(cxt, shown, len, first);
}

/*
 * emit_log_hook's work: redact every text of a message on its way to the
 * server log, and to the client when it goes there too (the hook runs
 * before either is sent), and the statement pg_stat_activity shows when
 * it still carries a secret.  Never throws.
 */
void
kg_redact_error_data(ErrorData *edata)
{
	MemoryContext cxt = edata->assoc_context ? edata->assoc_context : CurrentMemoryContext;

	redact_field(&edata->message, cxt);
	redact_field(&edata->detail, cxt);
	redact_field(&edata->detail_log, cxt);
	redact_field(&edata->hint, cxt);
	redact_field(&edata->context, cxt);
	redact_field(&edata->internalquery, cxt);
	redact_field(&edata->schema_name, cxt);
	redact_field(&edata->table_name, cxt);
	redact_field(&edata->column_name, cxt);
	redact_field(&edata->datatype_name, cxt);
	redact_field(&edata->constraint_name, cxt);
	redact_statement(edata, cxt);
	if (edata->elevel <= ERROR)
		redact_own_activity(cxt);
}

/*
 * pg_stat_activity: when source is the top-level statement text (the one
 * PostgreSQL reported) and carries a secret within what pg_stat_activity
 * keeps, report a redacted copy in its place.  Only that many bytes are
 * looked at: a run cut at the end is redacted all the same.
 */
void
kg_redact_activity(const char *source)
{
	size_t		len;
	const char *first;

	if (source == NULL || source != debug_query_string || !pgstat_track_activities)
		return;
	/*
	 * What pg_stat_activity keeps, cut at a character boundary: a copy that
	 * ends in part of a character would be kept whole, unclipped.
	 */
	len = strnlen(source, pgstat_track_activity_query_size);
	len = pg_mbcliplen(source, len, pgstat_track_activity_query_size - 1);
	first = find_secret(source, len);
	if (first == NULL)
		return;
	if (!report_redacted_activity(CurrentMemoryContext, source, len, first))
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
}
