/*-------------------------------------------------------------------------
 *
 * redact.c
 *	  Keeps secrets out of the server log, out of the error messages that
 *	  pass through it, and out of pg_stat_activity; and ties every log
 *	  line of a backend to its request while a context is set.
 *
 * The secrets (README, "Secrets in the server log"):
 *
 *	- API key secrets, described below, replaced by KG_REDACTED_MARKER;
 *	- JSON Web Tokens: "eyJ", then base64url characters, a dot, at least
 *	  one base64url character, a dot and any base64url characters; or any
 *	  other run of at least 4 base64url characters that decodes to JSON
 *	  whitespace, '{', whitespace and '"' (a header written with spaces or
 *	  newlines), followed by the same two parts; the whole token becomes
 *	  KG_REDACTED_TEXT;
 *	- everything between the parentheses of a call of add_token_key()
 *	  or set_context_from_token(), whatever the arguments look like, and
 *	  the bind parameters logged for a statement that calls either; the
 *	  arguments of EXECUTE name(...) when the prepared statement calls
 *	  either (match_execute_call());
 *
 * While add_token_key() or set_context_from_token() runs
 * (kg_hot_state.secret_call_active), a message's statement is never printed as it
 * was: the server-only detail gets it with its literals hidden, and its
 * bind parameters become the marker (a secret passed through a function
 * of the caller's has no shape to recognise).
 *	- the literal after the word "password" (any case, as in PASSWORD
 *	  '...', ENCRYPTED PASSWORD E'...', OPTIONS (password $$...$$)): its
 *	  contents become KG_REDACTED_TEXT, the quotes stay;
 *	- the value after "password=" (connection strings, quoted or not);
 *	- every match of the regular expressions in keys_guard.redact_patterns,
 *	  compiled by the setting's check hook, never here, each match
 *	  replaced by KG_REDACTED_TEXT.
 *
 * A literal or quoted value that does not end (a statement cut by
 * pg_stat_activity, a stray backslash) is redacted to the end of the
 * text: too much rather than too little.
 *
 * An API key secret is the prefix KG_API_KEY_PREFIX followed by at least one
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
 *	  inside error reporting: it never throws, and when it cannot redact a
 *	  field it overwrites the field in place instead.  For messages up to ERROR
 *	  it also redacts this backend's pg_stat_activity text if that still
 *	  carries a secret (a statement that failed before parse analysis).
 *	- kg_redact_activity(), from post_parse_analyze_hook, planner_hook,
 *	  ExecutorStart_hook and ProcessUtility_hook: when the text
 *	  pg_stat_activity shows for this backend carries a secret, report a
 *	  redacted copy in its place.
 *	- kg_redact_text(), API key redaction for any caller (the audit log).
 *
 * The common case, a text without a secret and no redact_patterns, costs
 * one scan with a table lookup per byte (k, e, E, p, P, _ and . start a
 * candidate)
 * and allocates nothing.  When a text cannot be redacted (no memory, the
 * regular expression engine fails), a log field is overwritten in place
 * with the marker: the line loses that field, never keeps the secret.
 *
 * Correlation: while a request context is set, kg_redact_error_data()
 * appends "keys_guard: request_id=... tenant=... actor=..." to the
 * server-only detail (detail_log), which every log format prints (stderr
 * as DETAIL, unless log_error_verbosity = terse) and the client never
 * gets.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>
#if defined(__x86_64__) || defined(_M_AMD64)
#include <emmintrin.h>
#define KG_USE_SSE2
#endif

#include "access/xact.h"
#include "catalog/pg_collation_d.h"
#include "commands/prepare.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/pg_bitutils.h"
#include "regex/regex.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "keys_guard.h"

#define PREFIX_LEN		(sizeof(KG_API_KEY_PREFIX) - 1)
#define MARKER_LEN		(sizeof(KG_REDACTED_MARKER) - 1)
#define TEXT_MARKER_LEN	(sizeof(KG_REDACTED_TEXT) - 1)
#define STATEMENT_LABEL "statement: "

/* One secret: [start, end) is replaced by marker. */
typedef struct Secret
{
	const char *start;
	const char *end;
	const char *marker;
	size_t		markerlen;
} Secret;

/* The compiled keys_guard.redact_patterns (malloc'd, kept for good). */
typedef struct Patterns
{
	int			n;
	regex_t		res[FLEXIBLE_ARRAY_MEMBER];
} Patterns;

char	   *keys_guard_redact_patterns = NULL;
static Patterns *active_patterns = NULL;

/*
 * kg_hot_state.clean_activity is the last text of pg_stat_activity's
 * kg_redact_activity() found clean, so that the executions of a prepared
 * statement, and the executor start that follows parse analysis of a
 * simple query, do not scan it again.  A copy, not just the pointer: the
 * text may be freed and another put in its place.  Its length
 * clean_activity_len is -1 when there is none.
 *
 * It is one of the last CLEAN_SLOTS texts found clean, kept so that a
 * transaction of several statements, each shown in turn (a prepared
 * statement's text at each Bind and Execute), does not scan each of them
 * again every time: a text is found among them by its length and its last
 * bytes (where the literals of statements that differ only in them
 * differ), then compared whole.  No hash: a text that is never seen again
 * (literals sent as text) pays only those comparisons.  The oldest gives
 * way to a new one.  A slot holds nothing while its text is NULL or its
 * len -1.
 */
#define CLEAN_SLOTS 8

typedef struct CleanSlot
{
	char	   *text;			/* pgstat_track_activity_query_size + 1 bytes */
	int			len;
	uint64		tail;			/* its last 8 bytes (text_tail()) */
} CleanSlot;

static CleanSlot clean_slots[CLEAN_SLOTS];
static int	clean_slot_next = 0;	/* the next to give way */

/* The last 8 bytes of a text of len bytes, as one word (0 if shorter). */
static inline uint64
text_tail(const char *text, size_t len)
{
	uint64		tail = 0;

	if (len >= sizeof(tail))
		memcpy(&tail, text + len - sizeof(tail), sizeof(tail));
	return tail;
}

/*
 * Set when a scan's verdict depended on the session's prepared statements
 * (an EXECUTE with arguments): such a text is not remembered as clean,
 * since the same text may carry a secret once the statement it names is
 * prepared again.
 */
static bool scan_read_session = false;

/* A character of a secret's run: ASCII letters, digits and '_'. */
static inline bool
is_key_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		(c >= 'A' && c <= 'Z') || c == '_';
}

static inline bool
is_b64url_char(char c)
{
	return is_key_char(c) || c == '-';
}

static inline bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * Whether the n bytes at p (of which avail are readable; SIZE_MAX for a
 * NUL-terminated text, whose NUL differs from any word byte) are word,
 * lower case, with ASCII letters compared without case, as the SQL
 * keywords and function names it is used for are.  Inline, since every
 * 'e', 'p' and '_' of every log line is tried against a word.
 */
static inline bool
word_at(const char *p, size_t avail, const char *word, size_t n)
{
	if (avail < n)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) p[i];

		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (c != (unsigned char) word[i])
			return false;
	}
	return true;
}

/*
 * Bytes that may start a secret: 'k' (kgk_), 'e' (eyJ), 'e' / 'E' (an
 * EXECUTE whose prepared statement takes one), 'p' / 'P' (password), '_' (the arguments of add_token_key() and
 * set_context_from_token()), '.' (the first dot of any other JSON Web
 * Token: the secret starts before it).
 */
static const bool candidate[256] = {
	['k'] = true,['e'] = true,['E'] = true,['p'] = true,['P'] = true,['_'] = true,['.'] = true,
};

/*
 * kg_hot_state.secret_call_active is set while add_token_key() or
 * set_context_from_token() runs (token.c), cleared when it returns and at
 * the end of the transaction: a message raised meanwhile never shows its
 * statement or its bind parameters as they were (a secret passed through a
 * function or a prepared statement has no shape to recognise).
 */
static bool calls_token_key_function(const char *text);

/* An API key at p (p[0] == 'k'). */
static bool
match_key(const char *p, const char *end, Secret *sec)
{
	const char *run;

	if ((size_t) (end - p) <= PREFIX_LEN ||
		memcmp(p, KG_API_KEY_PREFIX, PREFIX_LEN) != 0 ||
		!is_key_char(p[PREFIX_LEN]))
		return false;
	run = p + PREFIX_LEN;
	while (run < end && is_key_char(*run))
		run++;
	sec->start = p;
	sec->end = run;
	sec->marker = KG_REDACTED_MARKER;
	sec->markerlen = MARKER_LEN;
	return true;
}

/* A JSON Web Token at p (p[0] == 'e'). */
static bool
match_jwt(const char *p, const char *end, Secret *sec)
{
	const char *q;
	const char *seg;

	if (end - p < 3 || p[1] != 'y' || p[2] != 'J')
		return false;
	q = p + 3;
	while (q < end && is_b64url_char(*q))
		q++;
	if (q >= end || *q != '.')
		return false;
	seg = ++q;
	while (q < end && is_b64url_char(*q))
		q++;
	if (q == seg || q >= end || *q != '.')
		return false;
	q++;
	while (q < end && is_b64url_char(*q))
		q++;
	sec->start = p;
	sec->end = q;
	sec->marker = KG_REDACTED_TEXT;
	sec->markerlen = TEXT_MARKER_LEN;
	return true;
}

/*
 * Whether the base64url text [p, end) starts with the encoding of a JSON
 * object's opening: JSON whitespace, '{', whitespace, '"' (a JWS header
 * is an object whose first member has a name).  Only as much is decoded
 * as it takes to tell; at most 64 bytes of whitespace are looked through.
 */
static bool
b64url_opens_object(const char *p, const char *end)
{
	unsigned int bits = 0;
	int			nbits = 0;
	int			seen = 0;
	bool		brace = false;

	for (; p < end; p++)
	{
		int			v = kg_b64url_value((unsigned char) *p);
		unsigned char c;

		if (v < 0)
			return false;
		bits = (bits << 6) | (unsigned int) v;
		nbits += 6;
		if (nbits < 8)
			continue;
		nbits -= 8;
		c = (unsigned char) ((bits >> nbits) & 0xff);
		bits &= (1U << nbits) - 1;
		if (++seen > 64)
			return false;
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		if (!brace && c == '{')
		{
			brace = true;
			continue;
		}
		return brace && c == '"';
	}
	return false;
}

/*
 * Any JSON Web Token whose first dot is at p, whatever its header's
 * first bytes (JSON with whitespace does not encode to "eyJ"): a run of
 * at least 4 base64url characters before p (not before from) that
 * decodes to the opening of a JSON object, at least one base64url
 * character after p, a dot, and any base64url characters.  Ordinary
 * dotted names (schema.table.column) do not decode to '{' and '"'.
 */
static bool
match_jwt_at_dot(const char *from, const char *p, const char *end, Secret *sec)
{
	const char *start = p;
	const char *q;
	const char *seg;

	while (start > from && is_b64url_char(start[-1]))
		start--;
	if (p - start < 4 || !b64url_opens_object(start, p))
		return false;
	q = p + 1;
	seg = q;
	while (q < end && is_b64url_char(*q))
		q++;
	if (q == seg || q >= end || *q != '.')
		return false;
	q++;
	while (q < end && is_b64url_char(*q))
		q++;
	sec->start = start;
	sec->end = q;
	sec->marker = KG_REDACTED_TEXT;
	sec->markerlen = TEXT_MARKER_LEN;
	return true;
}

/*
 * The value of a connection string's "password=" at q (after the '=' and
 * any spaces).  Quoted: a run of quote characters opens it (one for
 * libpq quoting, two when the connection string sits in an SQL literal)
 * and the same run closes it; a backslash escapes the next character.
 * Not quoted: up to a space or a lone quote (the end of the enclosing
 * SQL literal; a doubled one is part of the value).
 */
static const char *
conninfo_value(const char *q, const char *end, const char **vstart)
{
	int			quotes = 0;

	while (q + quotes < end && q[quotes] == '\'' && quotes < 2)
		quotes++;
	q += quotes;
	*vstart = q;
	if (quotes > 0)
	{
		while (q < end)
		{
			if (*q == '\\')
				q += 2;
			else if (*q == '\'' && (quotes == 1 || (q + 1 < end && q[1] == '\'')))
				return q;
			else
				q++;
		}
		return end;
	}
	while (q < end && !is_space(*q))
	{
		if (*q == '\\')
		{
			q += 2;
			continue;
		}
		if (*q == '\'')
		{
			if (q + 1 < end && q[1] == '\'')
			{
				q += 2;
				continue;
			}
			break;
		}
		q++;
	}
	return q < end ? q : end;
}

/*
 * The contents of the SQL literal at q, if one starts there: '...' (a
 * doubled quote and a backslash escape do not end it), ''...'' (a literal
 * quoted inside another), E'...', U&'...', $$...$$ and $tag$...$tag$.  Returns the end of the contents (the
 * closing quote or tag), or NULL when no literal starts at q.
 */
static const char *
sql_literal(const char *q, const char *end, const char **vstart)
{
	if (q < end && (*q == 'E' || *q == 'e') && q + 1 < end && q[1] == '\'')
		q++;
	else if (end - q >= 3 && (*q == 'U' || *q == 'u') && q[1] == '&' && q[2] == '\'')
		q += 2;
	if (end - q >= 3 && q[0] == '\'' && q[1] == '\'' && q[2] != '\'')
	{
		/*
		 * A literal inside a literal (EXECUTE '... PASSWORD ''x'' ...'):
		 * up to the next doubled quote.  An empty literal ('' LOGIN) is
		 * read the same way: too much is hidden, never too little.
		 */
		q += 2;
		*vstart = q;
		while (q + 1 < end && !(q[0] == '\'' && q[1] == '\''))
			q++;
		return q + 1 < end ? q : end;
	}
	if (q < end && *q == '\'')
	{
		q++;
		*vstart = q;
		while (q < end)
		{
			if (*q == '\\')
				q += 2;
			else if (*q == '\'')
			{
				if (q + 1 < end && q[1] == '\'')
					q += 2;
				else
					return q;
			}
			else
				q++;
		}
		return end;
	}
	if (q < end && *q == '$')
	{
		const char *tag = q;
		const char *t = q + 1;
		size_t		taglen;

		while (t < end && (is_key_char(*t) || (unsigned char) *t >= 0x80))
			t++;
		if (t >= end || *t != '$' || (q[1] >= '0' && q[1] <= '9'))
			return NULL;
		taglen = t - tag + 1;
		q = t + 1;
		*vstart = q;
		while (q < end)
		{
			if (*q == '$' && (size_t) (end - q) >= taglen && memcmp(q, tag, taglen) == 0)
				return q;
			q++;
		}
		return end;
	}
	return NULL;
}

/*
 * A password at p (p[0] is 'p' or 'P'): the word "password", then either
 * "=" and a connection string value, or an SQL literal (after spaces and
 * comments).  The word must not continue a word ("nopassword"), but may
 * end an identifier (db_password = 'x'); it may be a quoted identifier
 * ("password" 'x').
 */
static bool
match_password(const char *s, const char *p, const char *end, Secret *sec)
{
	const char *q = p + 8;
	const char *vstart = NULL;
	const char *vend;

	if (end - p < 9 || !word_at(p, end - p, "password", 8))
		return false;
	if (p > s && p[-1] != '_' && (is_key_char(p[-1]) || p[-1] == '$'))
		return false;
	if (q < end && *q == '"')
		q++;
	for (;;)
	{
		while (q < end && is_space(*q))
			q++;
		if (end - q >= 2 && q[0] == '/' && q[1] == '*')
		{
			const char *c = q + 2;

			while (c + 1 < end && !(c[0] == '*' && c[1] == '/'))
				c++;
			q = c + 2 <= end ? c + 2 : end;
			continue;
		}
		break;
	}
	if (q < end && *q == '=')
	{
		q++;
		while (q < end && (*q == ' ' || *q == '\t'))
			q++;
		/* password = $$x$$ or E'x' in SQL; else a connection string's value. */
		vend = NULL;
		if (q < end && *q != '\'')
			vend = sql_literal(q, end, &vstart);
		if (vend == NULL)
			vend = conninfo_value(q, end, &vstart);
	}
	else
	{
		vend = sql_literal(q, end, &vstart);
		if (vend == NULL)
			return false;
	}
	/* An empty value, or the marker already there, is nothing to hide. */
	if (vend <= vstart ||
		((size_t) (vend - vstart) == TEXT_MARKER_LEN &&
		 memcmp(vstart, KG_REDACTED_TEXT, TEXT_MARKER_LEN) == 0))
		return false;
	sec->start = vstart;
	sec->end = vend;
	sec->marker = KG_REDACTED_TEXT;
	sec->markerlen = TEXT_MARKER_LEN;
	return true;
}

/*
 * The functions whose arguments are secrets, each with three letters
 * before its first underscore (where the match starts).
 */
static const char *const secret_call_names[] = {"add_token_key", "set_context_from_token"};

/*
 * The arguments of a call of add_token_key() or set_context_from_token()
 * at p (p[0] == '_', the first underscore of the name): an HS256 key
 * passed as a literal is a secret, and so is a token, whatever its shape
 * (docs/contract.md §17).  Everything between the parentheses is
 * replaced, the kid and the algorithm too (the literals are skipped whole,
 * so a parenthesis inside one does not end the list); a list that does
 * not end is redacted to the end of the text.
 */
static bool match_call_arguments(const char *q, const char *end, Secret *sec);

static bool
match_token_key_call(const char *s, const char *p, const char *end, Secret *sec)
{
	const char *q = NULL;
	int			i;

	if (p - s < 3)
		return false;
	for (i = 0; i < (int) lengthof(secret_call_names); i++)
	{
		size_t		namelen = strlen(secret_call_names[i]);

		if (word_at(p - 3, end - (p - 3), secret_call_names[i], namelen))
		{
			q = p - 3 + namelen;
			break;
		}
	}
	if (q == NULL)
		return false;
	if (q < end && *q == '"')
		q++;
	return match_call_arguments(q, end, sec);
}

/*
 * The argument list that starts at q (after spaces and comments): all
 * that lies between its parentheses, literals skipped whole, into *sec;
 * false if no list starts there, or it is empty or already the marker.
 */
static bool
match_call_arguments(const char *q, const char *end, Secret *sec)
{
	const char *vstart;
	int			depth = 0;

	for (;;)
	{
		while (q < end && is_space(*q))
			q++;
		if (end - q >= 2 && q[0] == '/' && q[1] == '*')
		{
			const char *c = q + 2;

			while (c + 1 < end && !(c[0] == '*' && c[1] == '/'))
				c++;
			q = c + 2 <= end ? c + 2 : end;
			continue;
		}
		break;
	}
	if (q >= end || *q != '(')
		return false;
	vstart = ++q;
	while (q < end)
	{
		const char *lstart;
		const char *lend = NULL;

		if (*q == '\'' || *q == '$' || ((*q == 'E' || *q == 'e') && q + 1 < end && q[1] == '\''))
			lend = sql_literal(q, end, &lstart);
		if (lend != NULL)
		{
			size_t		closing = 1;	/* ' */

			if (*q == '$')
				closing = lstart - q;	/* $tag$ */
			else if (q[0] == '\'' && lstart == q + 2)
				closing = 2;	/* ''...'' inside a literal */
			q = (size_t) (end - lend) > closing ? lend + closing : end;
			continue;
		}
		if (*q == '(')
			depth++;
		else if (*q == ')')
		{
			if (depth == 0)
				break;
			depth--;
		}
		q++;
	}
	if (q <= vstart ||
		((size_t) (q - vstart) == TEXT_MARKER_LEN &&
		 memcmp(vstart, KG_REDACTED_TEXT, TEXT_MARKER_LEN) == 0))
		return false;
	sec->start = vstart;
	sec->end = q;
	sec->marker = KG_REDACTED_TEXT;
	sec->markerlen = TEXT_MARKER_LEN;
	return true;
}

/* q past spaces and comments. */
static const char *
skip_space_and_comments(const char *q, const char *end)
{
	for (;;)
	{
		while (q < end && is_space(*q))
			q++;
		if (end - q >= 2 && q[0] == '/' && q[1] == '*')
		{
			const char *c = q + 2;

			while (c + 1 < end && !(c[0] == '*' && c[1] == '/'))
				c++;
			q = c + 2 <= end ? c + 2 : end;
			continue;
		}
		return q;
	}
}

/*
 * The arguments of EXECUTE name(...) at p (p[0] is 'e' or 'E'), when the
 * prepared statement may call add_token_key() or set_context_from_token():
 * its text does, or the text that holds the EXECUTE does (PREPARE and
 * EXECUTE in one string, logged before the PREPARE ran), or this session
 * has no statement of that name and the text deallocates one (logged
 * after the DEALLOCATE ran).
 */
static bool
match_execute_call(const char *s, const char *p, const char *end, Secret *sec)
{
	char		name[NAMEDATALEN];
	int			n = 0;
	const char *q;
	PreparedStatement *ps;
	bool		secret;

	if (end - p < 9 || !word_at(p, end - p, "execute", 7) || !is_space(p[7]))
		return false;
	if (p > s && (is_key_char(p[-1]) || p[-1] == '$' || (unsigned char) p[-1] >= 0x80))
		return false;
	q = skip_space_and_comments(p + 7, end);
	if (q < end && *q == '"')
	{
		for (q++; q < end; q++)
		{
			if (*q == '"')
			{
				if (q + 1 < end && q[1] == '"')
					q++;
				else
					break;
			}
			if (n < NAMEDATALEN - 1)
				name[n++] = *q;
		}
		if (q >= end)
			return false;
		q++;
	}
	else
	{
		if (q >= end || !(is_key_char(*q) || (unsigned char) *q >= 0x80) ||
			(*q >= '0' && *q <= '9'))
			return false;
		for (; q < end && (is_key_char(*q) || *q == '$' || (unsigned char) *q >= 0x80); q++)
			if (n < NAMEDATALEN - 1)
				name[n++] = (*q >= 'A' && *q <= 'Z') ? *q + ('a' - 'A') : *q;
	}
	name[n] = '\0';
	if (n == 0 || !match_call_arguments(q, end, sec))
		return false;
	scan_read_session = true;
	ps = FetchPreparedStatement(name, false);
	secret = ps != NULL && ps->plansource != NULL &&
		calls_token_key_function(ps->plansource->query_string);
	if (!secret)
		secret = calls_token_key_function(s);
	if (!secret && ps == NULL)
	{
		const char *d;

		for (d = s; *d && !secret; d++)
			if (word_at(d, SIZE_MAX, "deallocate", 10))
				secret = true;
	}
	return secret;
}

/*
 * Whether a built-in secret starts at the candidate byte p (or, for a dot,
 * just before it) of the text that starts at s and ends at end; from is
 * where the search started.  The byte after the candidate rules out most
 * of them before a matcher is called: every log line has many.
 */
static inline bool
secret_at(const char *s, const char *from, const char *p, const char *end,
		  Secret *sec)
{
	unsigned char next = p + 1 < end ? (unsigned char) p[1] : '\0';

	if (next >= 'A' && next <= 'Z')
		next += 'a' - 'A';
	switch (*p)
	{
		case 'k':
			return next == 'g' && match_key(p, end, sec);
		case 'e':
			if (next == 'y' && match_jwt(p, end, sec))
				return true;
			/* FALLTHROUGH */
		case 'E':
			return next == 'x' && match_execute_call(s, p, end, sec);
		case '_':
			/* ...add_token_key or ...set_context_from_token */
			return p - s >= 3 &&
				((p[-1] | 0x20) == 'd' || (p[-1] | 0x20) == 't') &&
				match_token_key_call(s, p, end, sec);
		case '.':
			return match_jwt_at_dot(from, p, end, sec);
		case 'p':
		case 'P':
			return next == 'a' && match_password(s, p, end, sec);
		default:
			return false;
	}
}

#ifdef KG_USE_SSE2
/*
 * Bit i set if p[i] may start a secret, for the 16 bytes at p (p[16] must
 * be readable): every statement's text is scanned once, for
 * pg_stat_activity, and this rules out sixteen bytes at a time, with the
 * byte after each candidate letter (as secret_at() does first).  With bit
 * 0x20 set in every byte the candidates are five values; the few other
 * bytes that then match ('K' before 'g', DEL) are ruled out by the
 * caller's table.
 */
static inline uint32
candidate_mask16(const char *p)
{
	const __m128i fold = _mm_set1_epi8(0x20);
	__m128i		b = _mm_or_si128(_mm_loadu_si128((const __m128i *) p), fold);
	__m128i		n = _mm_or_si128(_mm_loadu_si128((const __m128i *) (p + 1)), fold);
	__m128i		key = _mm_and_si128(_mm_cmpeq_epi8(b, _mm_set1_epi8('k')),
									_mm_cmpeq_epi8(n, _mm_set1_epi8('g')));
	__m128i		e = _mm_and_si128(_mm_cmpeq_epi8(b, _mm_set1_epi8('e')),
								  _mm_or_si128(_mm_cmpeq_epi8(n, _mm_set1_epi8('y')),
											   _mm_cmpeq_epi8(n, _mm_set1_epi8('x'))));
	__m128i		pw = _mm_and_si128(_mm_cmpeq_epi8(b, _mm_set1_epi8('p')),
								   _mm_cmpeq_epi8(n, _mm_set1_epi8('a')));
	__m128i		other = _mm_or_si128(_mm_cmpeq_epi8(b, _mm_set1_epi8('_' | 0x20)),
									 _mm_cmpeq_epi8(b, _mm_set1_epi8('.')));

	return (uint32) _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(key, e),
												   _mm_or_si128(pw, other)));
}
#endif

/*
 * The first built-in secret that starts in [from, last) of the text that
 * starts at s and ends at end (keys only when keys_only), or false.  A
 * byte-wise search: all server encodings keep ASCII bytes unambiguous, so
 * it never matches inside a multibyte character.  Candidates are tried in
 * the order of the text, so the first secret found is the first one.
 */
static bool
find_secret_before(const char *s, const char *from, const char *last,
				   const char *end, bool keys_only, Secret *sec)
{
	const char *p;

	if (keys_only)
	{
		for (p = from; p < last && (p = memchr(p, KG_API_KEY_PREFIX[0], last - p)) != NULL; p++)
			if (match_key(p, end, sec))
				return true;
		return false;
	}
	p = from;
#ifdef KG_USE_SSE2
	for (; last - p >= 16 && end - p > 16; p += 16)
	{
		uint32		mask = candidate_mask16(p);

		while (mask != 0)
		{
			const char *c = p + pg_rightmost_one_pos32(mask);

			mask &= mask - 1;
			if (candidate[(unsigned char) *c] && secret_at(s, from, c, end, sec))
				return true;
		}
	}
#endif
	for (; p < last; p++)
		if (unlikely(candidate[(unsigned char) *p]) && secret_at(s, from, p, end, sec))
			return true;
	return false;
}

/* The first built-in secret in [from, end) of the text that starts at s. */
static bool
find_secret(const char *s, const char *from, const char *end, bool keys_only,
			Secret *sec)
{
	return find_secret_before(s, from, end, end, keys_only, sec);
}

/* A growing output buffer that never throws: failed is set instead. */
typedef struct OutBuf
{
	MemoryContext cxt;
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;
} OutBuf;

static void
out_append(OutBuf *buf, const char *p, size_t n)
{
	if (buf->failed)
		return;
	if (buf->len + n + 1 > buf->cap)
	{
		size_t		cap = Max(buf->cap * 2, buf->len + n + 1);
		char	   *data;

		cap = Max(cap, 64);
		data = MemoryContextAllocExtended(buf->cxt, cap,
										  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
		if (data == NULL)
		{
			buf->failed = true;
			return;
		}
		if (buf->data)
		{
			memcpy(data, buf->data, buf->len);
			pfree(buf->data);
		}
		buf->data = data;
		buf->cap = cap;
	}
	memcpy(buf->data + buf->len, p, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
}

static void
out_discard(OutBuf *buf)
{
	if (buf->data)
		pfree(buf->data);
	buf->data = NULL;
}

/*
 * Redact the built-in secrets of s[0..len), the first of which is first,
 * into a new string in cxt; NULL when memory runs out.
 */
static char *
redact_builtin(MemoryContext cxt, const char *s, size_t len, const Secret *first,
			   bool keys_only)
{
	const char *end = s + len;
	const char *pos = s;
	Secret		sec = *first;
	OutBuf		buf = {cxt, NULL, 0, 0, false};

	for (;;)
	{
		out_append(&buf, pos, sec.start - pos);
		out_append(&buf, sec.marker, sec.markerlen);
		pos = sec.end;
		if (!find_secret(s, pos, end, keys_only, &sec))
			break;
	}
	out_append(&buf, pos, end - pos);
	if (buf.failed)
	{
		out_discard(&buf);
		return NULL;
	}
	return buf.data;
}

/*
 * Apply one compiled pattern to s[0..len): a new string in cxt with each
 * non-empty match replaced by KG_REDACTED_TEXT, or NULL when nothing
 * matched (or on failure, with *failed set).
 */
static char *
redact_pattern(MemoryContext cxt, regex_t *re, const char *s, size_t len, bool *failed)
{
	pg_wchar   *wstr;
	int			wlen;
	size_t		search = 0;
	size_t		wpos = 0;		/* characters of s walked so far ... */
	const char *pos = s;		/* ... and where they end */
	const char *copied = s;		/* s up to here is in buf */
	const char *end = s + len;
	OutBuf		buf = {cxt, NULL, 0, 0, false};
	bool		matched = false;

	wstr = MemoryContextAllocExtended(cxt, (len + 1) * sizeof(pg_wchar),
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (wstr == NULL)
	{
		*failed = true;
		return NULL;
	}
	wlen = pg_mb2wchar_with_len(s, wstr, len);

	while (search <= (size_t) wlen)
	{
		regmatch_t	m;
		int			rc;

		rc = pg_regexec(re, wstr, wlen, search, NULL, 1, &m, 0);
		if (rc == REG_NOMATCH)
			break;
		if (rc != REG_OKAY)
		{
			*failed = true;
			break;
		}
		if (m.rm_eo <= m.rm_so)
		{
			/* An empty match hides nothing: look further on. */
			search = m.rm_so + 1;
			continue;
		}
		/* Copy the text up to the match, then the marker for it. */
		while (wpos < (size_t) m.rm_so && pos < end)
		{
			pos += pg_mblen(pos);
			wpos++;
		}
		pos = Min(pos, end);
		out_append(&buf, copied, pos - copied);
		out_append(&buf, KG_REDACTED_TEXT, TEXT_MARKER_LEN);
		while (wpos < (size_t) m.rm_eo && pos < end)
		{
			pos += pg_mblen(pos);
			wpos++;
		}
		pos = Min(pos, end);
		copied = pos;
		matched = true;
		search = m.rm_eo;
	}
	pfree(wstr);
	if (matched)
		out_append(&buf, copied, end - copied);
	if (*failed || buf.failed)
	{
		*failed = true;
		out_discard(&buf);
		return NULL;
	}
	return matched ? buf.data : NULL;
}

typedef enum RedactResult
{
	REDACT_CLEAN,				/* no secret: nothing allocated */
	REDACT_DONE,				/* *out is the redacted copy */
	REDACT_FAILED				/* a secret may be there; no copy */
} RedactResult;

/*
 * Redact s into a new string in cxt: the built-in secrets, then (unless
 * keys_only) every redact_patterns match.  Secrets are looked for from
 * the first clean_from bytes on only when the caller knows the rest to be
 * clean (redact_message()); once one is found, everywhere.  Never throws.
 */
static RedactResult
redact_string_from(MemoryContext cxt, const char *s, size_t len, size_t clean_from,
				   bool keys_only, char **out)
{
	Secret		first;
	char	   *cur = NULL;
	int			i;

	if (find_secret_before(s, s, s + clean_from, s + len, keys_only, &first))
	{
		cur = redact_builtin(cxt, s, len, &first, keys_only);
		if (cur == NULL)
			return REDACT_FAILED;
	}
	if (!keys_only && active_patterns != NULL)
	{
		for (i = 0; i < active_patterns->n; i++)
		{
			bool		failed = false;
			const char *text = cur ? cur : s;
			char	   *next;

			next = redact_pattern(cxt, &active_patterns->res[i], text,
								  cur ? strlen(cur) : len, &failed);
			if (failed)
			{
				if (cur)
					pfree(cur);
				return REDACT_FAILED;
			}
			if (next)
			{
				if (cur)
					pfree(cur);
				cur = next;
			}
		}
	}
	if (cur == NULL)
		return REDACT_CLEAN;
	*out = cur;
	return REDACT_DONE;
}

static RedactResult
redact_string(MemoryContext cxt, const char *s, size_t len, bool keys_only, char **out)
{
	return redact_string_from(cxt, s, len, len, keys_only, out);
}

/*
 * Last resort for a log field that cannot be redacted: overwrite it in
 * place with the marker (or stars when it is shorter), so the line keeps
 * its shape and loses the field's text.
 */
static void
scrub_in_place(char *s)
{
	size_t		len = strlen(s);

	if (len >= TEXT_MARKER_LEN)
	{
		memcpy(s, KG_REDACTED_TEXT, TEXT_MARKER_LEN);
		s[TEXT_MARKER_LEN] = '\0';
	}
	else
		memset(s, '*', len);
}

/*
 * keys_guard.redact_patterns: a list of regular expressions (PostgreSQL's
 * advanced flavour, as for ~), separated by commas; one with a comma or a
 * space is double-quoted.  The check hook compiles the list, or refuses
 * it with the engine's message; compiled lists are kept for the life of
 * the process, one per distinct value (a reload that keeps the value
 * compiles nothing), so that the extra the GUC machinery frees is only a
 * pointer to one of them.
 */
typedef struct PatternCache
{
	struct PatternCache *next;
	Patterns   *patterns;
	char		value[FLEXIBLE_ARRAY_MEMBER];
} PatternCache;

static PatternCache *pattern_cache = NULL;

bool
kg_check_redact_patterns(char **newval, void **extra, GucSource source)
{
	PatternCache *entry;
	Patterns   *patterns = NULL;
	char	   *raw;
	List	   *list;
	ListCell   *lc;
	Patterns  **result;
	int			n = 0;

	for (entry = pattern_cache; entry; entry = entry->next)
		if (strcmp(entry->value, *newval) == 0)
			break;

	if (entry == NULL)
	{
		raw = pstrdup(*newval);
		if (!SplitGUCList(raw, ',', &list))
		{
			GUC_check_errdetail("List syntax is invalid.");
			return false;
		}
		if (list != NIL)
		{
			patterns = malloc(offsetof(Patterns, res) + list_length(list) * sizeof(regex_t));
			if (patterns == NULL)
			{
				GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
				GUC_check_errmsg("out of memory");
				return false;
			}
			foreach(lc, list)
			{
				const char *pattern = lfirst(lc);
				size_t		plen = strlen(pattern);
				pg_wchar   *wpattern = palloc((plen + 1) * sizeof(pg_wchar));
				int			wlen = pg_mb2wchar_with_len(pattern, wpattern, plen);
				int			rc;

				rc = pg_regcomp(&patterns->res[n], wpattern, wlen,
								REG_ADVANCED, C_COLLATION_OID);
				pfree(wpattern);
				if (rc == REG_OKAY && plen == 0)
				{
					pg_regfree(&patterns->res[n]);
					rc = REG_INVARG;
				}
				if (rc != REG_OKAY)
				{
					char		errstr[100];

					if (plen == 0)
						strlcpy(errstr, "empty pattern", sizeof(errstr));
					else
						pg_regerror(rc, &patterns->res[n], errstr, sizeof(errstr));
					while (n-- > 0)
						pg_regfree(&patterns->res[n]);
					free(patterns);
					GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
					GUC_check_errmsg("invalid regular expression in keys_guard.redact_patterns: %s",
									 errstr);
					GUC_check_errdetail("The pattern is \"%s\".", pattern);
					return false;
				}
				n++;
			}
			patterns->n = n;
		}
		entry = malloc(offsetof(PatternCache, value) + strlen(*newval) + 1);
		if (entry == NULL)
		{
			while (n-- > 0)
				pg_regfree(&patterns->res[n]);
			free(patterns);
			GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
			GUC_check_errmsg("out of memory");
			return false;
		}
		strcpy(entry->value, *newval);
		entry->patterns = patterns;
		entry->next = pattern_cache;
		pattern_cache = entry;
	}

	result = malloc(sizeof(Patterns *));
	if (result == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	*result = entry->patterns;
	*extra = result;
	return true;
}

void
kg_assign_redact_patterns(const char *newval, void *extra)
{
	active_patterns = extra ? *(Patterns **) extra : NULL;
	/* What was clean may not be any more. */
	kg_hot_state.clean_activity_len = -1;
	kg_hot_state.activity_changecount = -1;
	for (int i = 0; i < CLEAN_SLOTS; i++)
		clean_slots[i].len = -1;
}

/*
 * A redacted copy of s in the current memory context, or NULL when s
 * carries no API key secret (nothing is allocated then).  For ordinary
 * callers (the audit log): an allocation failure is the usual
 * out-of-memory error.  API keys only: the audit log's JSON must stay
 * valid, which a pattern or a password's value cut at a quote could break.
 */
char *
kg_redact_text(const char *s)
{
	char	   *out = NULL;

	if (s == NULL)
		return NULL;
	switch (redact_string(CurrentMemoryContext, s, strlen(s), true, &out))
	{
		case REDACT_CLEAN:
			return NULL;
		case REDACT_DONE:
			return out;
		case REDACT_FAILED:
			break;
	}
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("out of memory")));
	return NULL;				/* keep compiler quiet */
}

/* Does s carry an API key secret? */
bool
kg_text_has_secret(const char *s)
{
	Secret		sec;

	return s != NULL && find_secret(s, s, s + strlen(s), true, &sec);
}

/*
 * How many bytes at the end of message s[0..len) are the text
 * kg_redact_activity() last found clean in pg_stat_activity, after ": ": what
 * PostgreSQL's statement log lines end with ("statement: %s", "execute
 * %s: %s"), and, with log_statement = all, the longest part of most lines.
 * 0 when the message does not end so, or when redact_patterns are set (a
 * pattern may match across the ": ").  A built-in secret cannot start in
 * such a tail: a scan of the whole message would look at each of its
 * bytes with the same text after it, and before it the ": ", which ends
 * every word, key and token that a matcher looks back for.
 */
static size_t
clean_activity_tail(const char *s, size_t len)
{
	size_t		n;

	if (kg_hot_state.clean_activity_len <= 0 || active_patterns != NULL ||
		kg_hot_state.clean_activity_len >= pgstat_track_activity_query_size)
		return 0;
	n = (size_t) kg_hot_state.clean_activity_len;
	if (len < n + 2 || s[len - n - 2] != ':' || s[len - n - 1] != ' ' ||
		memcmp(s + len - n, kg_hot_state.clean_activity, n) != 0)
		return 0;
	return n;
}

/*
 * Redact one palloc'd field of an ErrorData in place: replace the pointer
 * by a redacted copy in cxt and free the old text (errfinish frees the
 * fields it finds, and a LOG message does not reset ErrorContext), or
 * overwrite it when it cannot be redacted.  With clean_tail, secrets are
 * not looked for in a clean_activity_tail().
 */
static void
redact_field_from(char **field, MemoryContext cxt, bool clean_tail)
{
	char	   *s = *field;
	char	   *out = NULL;
	size_t		len;
	size_t		scan;

	if (s == NULL)
		return;
	len = strlen(s);
	scan = clean_tail ? len - clean_activity_tail(s, len) : len;
	switch (redact_string_from(cxt, s, len, scan, false, &out))
	{
		case REDACT_CLEAN:
			break;
		case REDACT_DONE:
			*field = out;
			pfree(s);
			break;
		case REDACT_FAILED:
			scrub_in_place(s);
			break;
	}
}

static void
redact_field(char **field, MemoryContext cxt)
{
	redact_field_from(field, cxt, false);
}

/*
 * Add a line to the server-only detail, after the detail the log would
 * show anyway (detail_log replaces detail in the server log).  Nothing
 * happens when there is no memory for it.
 */
static void
append_detail_log(ErrorData *edata, MemoryContext cxt, const char *line)
{
	const char *base = edata->detail_log ? edata->detail_log : edata->detail;
	OutBuf		buf = {cxt, NULL, 0, 0, false};

	if (base)
	{
		out_append(&buf, base, strlen(base));
		out_append(&buf, "\n", 1);
	}
	out_append(&buf, line, strlen(line));
	if (buf.failed)
	{
		out_discard(&buf);
		return;
	}
	if (edata->detail_log)
		pfree(edata->detail_log);
	edata->detail_log = buf.data;
}

/*
 * The statement PostgreSQL would print after this message, when it
 * carries a secret: hide it, and give the server log its redacted text in
 * the server-only detail.  check_log_of_query() is the test elog.c
 * applies for every destination.
 */
static void
redact_statement(ErrorData *edata, MemoryContext cxt)
{
	const char *stmt = debug_query_string;
	char	   *redacted = NULL;
	char	   *line;
	size_t		redlen;

	if (stmt == NULL || !check_log_of_query(edata))
		return;
	switch (redact_string(cxt, stmt, strlen(stmt), false, &redacted))
	{
		case REDACT_CLEAN:
			return;
		case REDACT_FAILED:
			/* Not printed at all rather than printed as it was. */
			edata->hide_stmt = true;
			return;
		case REDACT_DONE:
			break;
	}
	/* From here on the statement is never printed as it was. */
	edata->hide_stmt = true;

	redlen = strlen(redacted);
	line = MemoryContextAllocExtended(cxt, strlen(STATEMENT_LABEL) + redlen + 1,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (line != NULL)
	{
		memcpy(line, STATEMENT_LABEL, strlen(STATEMENT_LABEL));
		memcpy(line + strlen(STATEMENT_LABEL), redacted, redlen + 1);
		append_detail_log(edata, cxt, line);
		pfree(line);
	}
	pfree(redacted);
}

/*
 * The statement of a message raised while add_token_key() or
 * set_context_from_token() runs (kg_hot_state.secret_call_active): never printed as
 * it was; the server-only detail gets it with the contents of every
 * literal, and every run of 16 digits or more, replaced by the marker
 * (a secret passed on through a function, EXECUTE or a variable has no
 * shape to recognise; the statement's comments and names stay).
 */
static void
hide_secret_call_statement(ErrorData *edata, MemoryContext cxt)
{
	static const char label[] = "statement (literals hidden): ";
	const char *stmt = debug_query_string;
	const char *end;
	const char *pos;
	const char *q;
	OutBuf		buf = {cxt, NULL, 0, 0, false};

	if (stmt == NULL || !check_log_of_query(edata))
		return;
	edata->hide_stmt = true;
	end = stmt + strlen(stmt);
	out_append(&buf, label, sizeof(label) - 1);
	pos = q = stmt;
	while (q < end)
	{
		const char *vstart;
		const char *lend = NULL;

		if (*q == '\'' || *q == '$' ||
			((*q == 'E' || *q == 'e' || *q == 'U' || *q == 'u') &&
			 (q == stmt || !(is_key_char(q[-1]) || q[-1] == '$'))))
			lend = sql_literal(q, end, &vstart);
		if (lend != NULL)
		{
			size_t		closing = 1;	/* ' */

			if (*q == '$')
				closing = vstart - q;	/* $tag$ */
			else if (q[0] == '\'' && vstart == q + 2)
				closing = 2;	/* ''...'' */
			out_append(&buf, pos, vstart - pos);
			out_append(&buf, KG_REDACTED_TEXT, TEXT_MARKER_LEN);
			pos = lend;
			q = (size_t) (end - lend) > closing ? lend + closing : end;
			continue;
		}
		if (*q >= '0' && *q <= '9' &&
			(q == stmt || !(is_key_char(q[-1]) || q[-1] == '$')))
		{
			const char *d = q;

			while (d < end && *d >= '0' && *d <= '9')
				d++;
			if (d - q >= 16)
			{
				out_append(&buf, pos, q - pos);
				out_append(&buf, KG_REDACTED_TEXT, TEXT_MARKER_LEN);
				pos = d;
			}
			q = d;
			continue;
		}
		q++;
	}
	out_append(&buf, pos, end - pos);
	if (buf.failed)
	{
		out_discard(&buf);
		return;
	}
	append_detail_log(edata, cxt, buf.data);
	out_discard(&buf);
}

/*
 * A failed statement in a transaction block rolls the context back with
 * the rest of the transaction's settings, at once; the block goes on
 * until ROLLBACK, and its "current transaction is aborted" errors and the
 * ROLLBACK itself are still the request's.  So the context is kept as it
 * was at the abort, and used while the block stays aborted
 * (kg_hot_state.aborted_set).
 */
static char aborted_request_id[KG_REQUEST_ID_MAXLEN + 1];
static char aborted_tenant[KG_TENANT_ID_MAXLEN + 1];
static char aborted_actor[KG_ACTOR_MAXLEN + 1];

static void
keep_context(char *dst, size_t size, const char *value)
{
	if (value)
		strlcpy(dst, value, size);
	else
		dst[0] = '\0';
}

kg_statement_path void
kg_redact_xact_event(XactEvent event)
{
	const char *request_id;
	const char *tenant;
	const char *actor;

	/* add_token_key() or set_context_from_token() ended with its transaction. */
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT)
		kg_hot_state.secret_call_active = false;
	if (event != XACT_EVENT_ABORT)
	{
		if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PREPARE)
			kg_hot_state.aborted_set = false;
		return;
	}
	request_id = kg_current_request_id();
	tenant = kg_current_tenant();
	actor = kg_current_actor();
	kg_hot_state.aborted_set = (request_id || tenant || actor);
	keep_context(aborted_request_id, sizeof(aborted_request_id), request_id);
	keep_context(aborted_tenant, sizeof(aborted_tenant), tenant);
	keep_context(aborted_actor, sizeof(aborted_actor), actor);
}

/*
 * add_token_key() and set_context_from_token() run no user code and no
 * subtransaction of their own: a subtransaction that aborts while the flag
 * is set is one whose call of them failed and whose error user code caught
 * (an exception block).  The call has ended, so its flag ends too; left
 * set, it would hide the statements of the rest of the transaction from
 * the server log, and set_context_from_token() sets it before it refuses
 * a caller without the roles (its EXECUTE is PUBLIC).
 */
void
kg_redact_subxact_event(SubXactEvent event)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		kg_hot_state.secret_call_active = false;
}

/*
 * Correlation: while a request context is set, the line's server-only
 * detail ends with the request id, tenant and actor (those that are set),
 * redacted like any other text.  Worker lines carry the request id the
 * worker set for the work it is doing (kg_log_request_id).
 */
const char *kg_log_request_id = NULL;

static void
append_correlation(ErrorData *edata, MemoryContext cxt)
{
	const char *request_id = kg_current_request_id();
	const char *tenant = kg_current_tenant();
	const char *actor = kg_current_actor();
	char		line[64 + KG_REQUEST_ID_MAXLEN + KG_TENANT_ID_MAXLEN + KG_ACTOR_MAXLEN];
	char	   *out = NULL;

	if (request_id == NULL && tenant == NULL && actor == NULL &&
		kg_hot_state.aborted_set && IsAbortedTransactionBlockState())
	{
		request_id = aborted_request_id[0] ? aborted_request_id : NULL;
		tenant = aborted_tenant[0] ? aborted_tenant : NULL;
		actor = aborted_actor[0] ? aborted_actor : NULL;
	}
	if (request_id == NULL)
		request_id = kg_log_request_id;
	if (request_id == NULL && tenant == NULL && actor == NULL)
		return;
	snprintf(line, sizeof(line), "keys_guard:%s%s%s%s%s%s",
			 request_id ? " request_id=" : "", request_id ? request_id : "",
			 tenant ? " tenant=" : "", tenant ? tenant : "",
			 actor ? " actor=" : "", actor ? actor : "");
	switch (redact_string(cxt, line, strlen(line), false, &out))
	{
		case REDACT_CLEAN:
			append_detail_log(edata, cxt, line);
			break;
		case REDACT_DONE:
			append_detail_log(edata, cxt, out);
			pfree(out);
			break;
		case REDACT_FAILED:
			break;
	}
}

/*
 * Report text[0..len) to pg_stat_activity as this backend's running
 * statement, redacted, when it carries a secret (as the marker alone when
 * it cannot be redacted), with the query id parse analysis reported kept.
 * Returns false if the text was clean (nothing reported).  Never throws.
 */
static bool
report_redacted_activity(MemoryContext cxt, const char *text, size_t len)
{
	char	   *redacted = NULL;
	uint64		query_id;

	switch (redact_string(cxt, text, len, false, &redacted))
	{
		case REDACT_CLEAN:
			return false;
		case REDACT_DONE:
			break;
		case REDACT_FAILED:
			redacted = NULL;
			break;
	}

	/*
	 * Reporting a running statement forgets its query id; put back the one
	 * parse analysis already reported.
	 */
	query_id = pgstat_get_my_query_id();
	pgstat_report_activity(STATE_RUNNING, redacted ? redacted : KG_REDACTED_TEXT);
	if (query_id != UINT64CONST(0))
		pgstat_report_query_id(query_id, true);
	if (redacted)
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

	if (MyBEEntry == NULL || MyBEEntry->st_procpid != MyProcPid ||
		!pgstat_track_activities || MyBEEntry->st_state != STATE_RUNNING ||
		MyBEEntry->st_activity_raw == NULL)
		return;
	shown = MyBEEntry->st_activity_raw;
	len = strnlen(shown, pgstat_track_activity_query_size);
	/* The text kg_redact_activity() found clean: every line of it pays. */
	if ((int) len == kg_hot_state.clean_activity_len &&
		memcmp(shown, kg_hot_state.clean_activity, len) == 0)
		return;
	(void) report_redacted_activity(cxt, shown, len);
}

/*
 * emit_log_hook's work: redact every text of a message on its way to the
 * server log, and to the client when it goes there too (the hook runs
 * before either is sent), and the statement pg_stat_activity shows when
 * it still carries a secret; then tie the message to its request.  Never
 * throws.
 */
/*
 * Whether text calls add_token_key() or set_context_from_token(): then
 * every bind parameter of the statement may be a token key's secret,
 * which has no shape to recognise, or a token.
 */
static bool
calls_token_key_function(const char *text)
{
	const char *p;
	int			i;

	if (text == NULL)
		return false;
	for (p = text; (p = strchr(p, '_')) != NULL; p++)
		if (p - text >= 3)
			for (i = 0; i < (int) lengthof(secret_call_names); i++)
				if (word_at(p - 3, SIZE_MAX, secret_call_names[i],
							strlen(secret_call_names[i])))
					return true;
	return false;
}

/*
 * The bind parameters PostgreSQL appends to a line of an extended-protocol
 * statement ("parameters: $1 = '...'" in DETAIL, "... with parameters: ..."
 * in CONTEXT) become the marker, in place: it is shorter than any list of
 * parameters, and nothing is allocated.
 */
static void
redact_parameters(char *field)
{
	char	   *p;

	if (field == NULL || (p = strstr(field, "parameters: ")) == NULL)
		return;
	p += strlen("parameters: ");
	if (strlen(p) >= TEXT_MARKER_LEN)
		memcpy(p, KG_REDACTED_TEXT, TEXT_MARKER_LEN + 1);
	else
		*p = '\0';
}

void
kg_redact_error_data(ErrorData *edata)
{
	MemoryContext cxt = edata->assoc_context ? edata->assoc_context : CurrentMemoryContext;

	redact_field_from(&edata->message, cxt, true);
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
	if ((edata->detail || edata->detail_log || edata->context) &&
		(kg_hot_state.secret_call_active || calls_token_key_function(debug_query_string)))
	{
		redact_parameters(edata->detail);
		redact_parameters(edata->detail_log);
		redact_parameters(edata->context);
	}
	if (kg_hot_state.secret_call_active)
		hide_secret_call_statement(edata, cxt);
	else
		redact_statement(edata, cxt);
	if (edata->elevel <= ERROR)
		redact_own_activity(cxt);
	append_correlation(edata, cxt);
}

/*
 * pg_stat_activity: when source, the text it shows for this backend,
 * carries a secret, report a redacted copy in its place.  Called by
 * kg_redact_activity() below for a text other than the last one found
 * clean; whole is its length, up to what pg_stat_activity keeps.  Returns
 * true when the text is clean and now the last one found so (one of the
 * clean slots).
 */
static pg_noinline bool
redact_new_activity(const char *source, size_t whole)
{
	uint64		tail = text_tail(source, whole);
	CleanSlot  *slot;
	size_t		len;

	for (int i = 0; i < CLEAN_SLOTS; i++)
	{
		slot = &clean_slots[i];
		if (slot->len == (int) whole && slot->tail == tail && slot->text != NULL &&
			memcmp(slot->text, source, whole) == 0)
			goto clean;
	}

	/*
	 * What pg_stat_activity keeps, cut at a character boundary: a copy that
	 * ends in part of a character would be kept whole, unclipped.  A text
	 * that fits is kept whole (the walk through its characters would find
	 * the same length).
	 */
	len = whole;
	if ((int) len > pgstat_track_activity_query_size - 1)
		len = pg_mbcliplen(source, len, pgstat_track_activity_query_size - 1);
	scan_read_session = false;
	if (report_redacted_activity(CurrentMemoryContext, source, len) ||
		scan_read_session)
		return false;

	/* Clean: remember it (the whole text looked at, not the clipped part). */
	slot = &clean_slots[clean_slot_next];
	clean_slot_next = (clean_slot_next + 1) % CLEAN_SLOTS;
	if (slot->text == NULL)
		slot->text = MemoryContextAlloc(TopMemoryContext,
										pgstat_track_activity_query_size + 1);
	memcpy(slot->text, source, whole);
	slot->text[whole] = '\0';
	slot->len = (int) whole;
	slot->tail = tail;
clean:
	kg_hot_state.clean_activity = slot->text;
	kg_hot_state.clean_activity_len = slot->len;
	return true;
}

/*
 * hooks.c calls, at each statement parsed, planned, started or run as a
 * utility: when the text pg_stat_activity shows for this backend carries a
 * secret, show a redacted copy instead.  What is shown is looked at, not
 * the text the hook was given: PostgreSQL reports the text of every
 * Parse, Bind and Execute message anew, from copies of the portal's text
 * (exec_execute_message()), and a statement nested in a function runs
 * while its caller's text is shown.  Nothing to do for the text last found
 * clean, the common case; a redacted copy, once shown, is itself found
 * clean the next time.  Reads only this backend's own entry, which no
 * other process writes.
 *
 * PostgreSQL counts every write to the entry (st_changecount, up before
 * and after each, for readers in other processes); while the count is the
 * one seen when the text was last looked at, or last reported redacted,
 * the text is the same and nothing is read.  That is every statement after
 * the first of a message: the executor's run after its start, statements
 * run by functions.
 */
kg_statement_path void
kg_redact_activity(void)
{
	volatile PgBackendStatus *entry = MyBEEntry;
	const char *shown;
	size_t		len;

	if (unlikely(entry == NULL) || !pgstat_track_activities ||
		likely(entry->st_changecount == kg_hot_state.activity_changecount))
		return;
	shown = entry->st_activity_raw;
	if (shown == NULL)
		return;

	/*
	 * The text last found clean, with its terminating zero, is the text
	 * shown if one comparison says so; the entry's buffer holds that many
	 * bytes (what pg_stat_activity keeps, ending in a zero).
	 */
	if (unlikely(kg_hot_state.clean_activity_len < 0) ||
		unlikely(memcmp(shown, kg_hot_state.clean_activity,
						kg_hot_state.clean_activity_len + 1) != 0))
	{
		len = strnlen(shown, pgstat_track_activity_query_size);
		/*
		 * Not a verdict to keep (a redacted copy was reported, or the
		 * verdict depended on the session's prepared statements): look
		 * again next time.
		 */
		if (!redact_new_activity(shown, len))
			return;
	}
	kg_hot_state.activity_changecount = entry->st_changecount;
}
