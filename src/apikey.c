/*-------------------------------------------------------------------------
 *
 * apikey.c
 *	  API keys for tools and AI agents (docs/contract.md §15): issue, check,
 *	  rotate and revoke the keys in keys_guard.api_key.
 *
 * A secret is KG_API_KEY_PREFIX, the key id in hex, 256 random bits in
 * base32 and a CRC-32C of all that (keys_guard.h has the layout), so that
 * a scanner can spot a leaked key by its prefix and a lookalike is
 * rejected by its checksum before any table is read.  Only the secret's
 * SHA-256 hash is stored; use_api_key() finds the row by the key id the
 * secret carries and compares the hashes in constant time.
 *
 * Every failure of use_api_key() is the same 28000 "invalid API key"; the
 * reason and the key id (never the secret) go to the server log (LOG, the
 * reason only in the log's DETAIL) and, through the shared queue so that
 * they survive the error's rollback, to keys_guard.audit_log.  No message
 * of this file ever contains a secret or echoes an argument.
 *
 * A key's context is an ordinary transaction-scoped context (context.c)
 * that also carries the key id and whether the key may write, so it ends
 * with the transaction and reverts with a rollback like any other.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include <openssl/evp.h>

#include "keys_guard.h"

#define KG_API_KEY_SECRET_BUF	(KG_API_KEY_LEN + 1)

static const char base32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
static const char hex_digits[] = "0123456789abcdef";

/* ---------------------------------------------------------------------
 * The secret's shape
 * ---------------------------------------------------------------------
 */

static pg_crc32c
secret_checksum(const char *secret)
{
	pg_crc32c	crc;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, secret, KG_API_KEY_LEN - KG_API_KEY_CHECK_LEN);
	FIN_CRC32C(crc);
	return crc;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Build a secret for key_id from KG_API_KEY_RANDOM_BYTES random bytes. */
static void
format_secret(const pg_uuid_t *key_id, const unsigned char *random, char *out)
{
	char	   *p = out;
	uint32		buffer = 0;
	int			bits = 0;
	int			i;
	pg_crc32c	crc;

	memcpy(p, KG_API_KEY_PREFIX, KG_API_KEY_PREFIX_LEN);
	p += KG_API_KEY_PREFIX_LEN;
	for (i = 0; i < UUID_LEN; i++)
	{
		*p++ = hex_digits[key_id->data[i] >> 4];
		*p++ = hex_digits[key_id->data[i] & 0x0f];
	}
	/* RFC 4648 base32, most significant bits first, no padding. */
	for (i = 0; i < KG_API_KEY_RANDOM_BYTES; i++)
	{
		buffer = (buffer << 8) | random[i];
		bits += 8;
		while (bits >= 5)
		{
			*p++ = base32_alphabet[(buffer >> (bits - 5)) & 0x1f];
			bits -= 5;
		}
	}
	if (bits > 0)
		*p++ = base32_alphabet[(buffer << (5 - bits)) & 0x1f];
	Assert(p - out == KG_API_KEY_LEN - KG_API_KEY_CHECK_LEN);
	*p = '\0';
	crc = secret_checksum(out);
	snprintf(p, KG_API_KEY_CHECK_LEN + 1, "%08x", (unsigned int) crc);
	out[KG_API_KEY_LEN] = '\0';
}

/*
 * True if secret has the shape of a keys_guard API key and its checksum
 * matches; *key_id is then the id it carries.  No table is read: this is
 * the offline rejection of lookalikes (and what log redaction can use).
 */
bool
kg_api_key_parse(const char *secret, pg_uuid_t *key_id)
{
	const char *p;
	int			i;
	uint32		check = 0;

	if (secret == NULL || strnlen(secret, KG_API_KEY_LEN + 1) != KG_API_KEY_LEN)
		return false;
	if (memcmp(secret, KG_API_KEY_PREFIX, KG_API_KEY_PREFIX_LEN) != 0)
		return false;
	p = secret + KG_API_KEY_PREFIX_LEN;
	for (i = 0; i < UUID_LEN; i++)
	{
		int			hi = hex_value(p[2 * i]);
		int			lo = hex_value(p[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		if (key_id)
			key_id->data[i] = (unsigned char) (hi << 4 | lo);
	}
	p += KG_API_KEY_ID_HEX_LEN;
	for (i = 0; i < KG_API_KEY_RANDOM_LEN; i++)
	{
		char		c = p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')))
			return false;
	}
	p += KG_API_KEY_RANDOM_LEN;
	for (i = 0; i < KG_API_KEY_CHECK_LEN; i++)
	{
		int			v = hex_value(p[i]);

		if (v < 0)
			return false;
		check = (check << 4) | (uint32) v;
	}
	return check == (uint32) secret_checksum(secret);
}

/*
 * SHA-256 through OpenSSL, with the algorithm fetched once per backend:
 * PostgreSQL's pg_cryptohash looks it up in OpenSSL 3's provider tables at
 * every hash, which cost ten times the hashing of a key (2 % of a point
 * lookup under a key).  token.c hashes every token it is given with it too.
 */
void
kg_sha256(const void *data, size_t len, uint8 *digest)
{
	static EVP_MD *md = NULL;
	unsigned int digest_len = 0;

	if (md == NULL)
	{
		md = EVP_MD_fetch(NULL, "SHA256", NULL);
		if (md == NULL)
			elog(ERROR, "keys_guard: could not load the SHA-256 algorithm from OpenSSL");
	}
	if (EVP_Digest(data, len, digest, &digest_len, md, NULL) != 1 ||
		digest_len != PG_SHA256_DIGEST_LENGTH)
		elog(ERROR, "keys_guard: could not compute a SHA-256 hash");
}

/* Compare two digests in time that does not depend on where they differ. */
static bool
digests_equal(const uint8 *a, const uint8 *b, size_t len)
{
	volatile uint8 diff = 0;
	size_t		i;

	for (i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

static void
strong_random(void *buf, size_t len)
{
	if (!pg_strong_random(buf, len))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for an API key")));
}

/* A new random (version 4) key id. */
static void
new_key_id(pg_uuid_t *id)
{
	strong_random(id->data, UUID_LEN);
	id->data[6] = (id->data[6] & 0x0f) | 0x40;
	id->data[8] = (id->data[8] & 0x3f) | 0x80;
}

/* A key id as uuid_out() writes it, without the function call. */
static char *
key_id_text(const pg_uuid_t *id)
{
	static const char hex[] = "0123456789abcdef";
	char	   *text = palloc(KG_API_KEY_ID_TEXT_LEN + 1);
	char	   *p = text;
	int			i;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[id->data[i] >> 4];
		*p++ = hex[id->data[i] & 0x0f];
	}
	*p = '\0';
	return text;
}

/* ---------------------------------------------------------------------
 * Arguments and permissions
 * ---------------------------------------------------------------------
 */

static void
require_args(FunctionCallInfo fcinfo, int nargs, const char *names)
{
	int			i;

	for (i = 0; i < nargs; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", names)));
}

/*
 * Members of keys_guard_admin manage every tenant's keys; members of
 * keys_guard_gateway only those of the tenant of their current context
 * (not one obtained with a key: a key never makes keys).
 */
static void
require_key_manager(const char *tenant_id, const char *funcname)
{
	const char *current;

	if (kg_context_api_key(NULL) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to call %s() under an API key", funcname),
				 errdetail("API keys are managed by administrators and by the application's gateway, never with a key.")));
	if (kg_has_role(KG_ROLE_ADMIN))
		return;
	current = kg_current_tenant();
	if (kg_has_role(KG_ROLE_GATEWAY) && kg_current_mode() == KG_MODE_TENANT &&
		current != NULL && tenant_id != NULL && strcmp(current, tenant_id) == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to manage API keys of this tenant"),
			 errdetail("Members of keys_guard_admin manage every tenant's keys; members of keys_guard_gateway those of the tenant of their current context.")));
}

static Interval *
seconds_interval(int64 seconds)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = seconds * USECS_PER_SEC;
	return iv;
}

static int
interval_compare(Interval *a, Interval *b)
{
	return DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(a),
											 IntervalPGetDatum(b)));
}

/* expires_in: positive and at most keys_guard.api_key_max_lifetime. */
static void
check_lifetime(Interval *lifetime, const char *argname)
{
	if (interval_compare(lifetime, seconds_interval(0)) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", argname)));
	if (interval_compare(lifetime, seconds_interval(keys_guard_api_key_max_lifetime)) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s exceeds keys_guard.api_key_max_lifetime", argname),
				 errdetail("keys_guard.api_key_max_lifetime is %s.",
						   GetConfigOption("keys_guard.api_key_max_lifetime", false, false))));
}

static TimestampTz
now_plus(Interval *iv)
{
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
												   IntervalPGetDatum(iv)));
}

/* scopes: '{read}' or '{read,write}' in any order; true if write. */
static bool
parse_scopes(ArrayType *scopes)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	bool		read = false;
	bool		write = false;

	if (ARR_NDIM(scopes) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scopes must be a one-dimensional array")));
	deconstruct_array(scopes, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *s;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("scopes must not contain null")));
		s = TextDatumGetCString(elems[i]);
		if (strcmp(s, "read") == 0)
			read = true;
		else if (strcmp(s, "write") == 0)
			write = true;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown API key scope"),
					 errhint("Scopes are '{read}' or '{read,write}'.")));
	}
	if (!read)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scopes must include \"read\""),
				 errhint("Scopes are '{read}' or '{read,write}'.")));
	return write;
}

static void
validate_name(const char *name)
{
	const unsigned char *p;

	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("name must not be empty")));
	if (strlen(name) > KG_API_KEY_NAME_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("name is too long"),
				 errdetail("The limit is %d bytes.", KG_API_KEY_NAME_MAXLEN)));
	for (p = (const unsigned char *) name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("name must not contain control characters")));
}

static void
warn_write_key(const char *tenant_id)
{
	ereport(WARNING,
			(errmsg("this key can modify the data of tenant \"%s\"", tenant_id),
			 errdetail("Its scopes include write, with the consent recorded in keys_guard.api_keys."),
			 errhint("Revoke it with keys_guard.revoke_api_key() when it is no longer needed.")));
}

/* ---------------------------------------------------------------------
 * create_api_key
 * ---------------------------------------------------------------------
 */

static Oid	api_key_relid(void);

typedef struct CreateArgs
{
	MemoryContext caller;
	char	   *tenant;
	char	   *name;
	bool		write;
	bool		consent;
	TimestampTz expires_at;
	pg_uuid_t	id;
	char		secret[KG_API_KEY_SECRET_BUF];
	char	   *rotated_from;	/* rotation: the old key, its consent */
	char	   *consent_by;
	Datum		consent_at;
	bool		consent_at_null;
} CreateArgs;

/* Look up the tenant a key is for: 22023 if unknown, 42501 if deleted. */
static void
require_active_tenant(const char *tenant_id)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(tenant_id)};
	bool		isnull;
	char	   *status;

	if (SPI_execute_with_args("SELECT status FROM keys_guard.tenant WHERE id = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: could not read the tenant registry");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tenant \"%s\" does not exist", tenant_id),
				 errhint("Create it with keys_guard.create_tenant().")));
	status = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	if (strcmp(status, "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("tenant \"%s\" is deleted", tenant_id),
				 errdetail("A deleted tenant gets no API keys.")));
}

static void
insert_key(CreateArgs *args)
{
	static const char *sql =
		"INSERT INTO keys_guard.api_key (id, tenant, name, scopes, secret_hash,"
		" created_at, created_by, expires_at, write_consent_by, write_consent_at, rotated_from)"
		" VALUES ($1, $2, $3, $4, $5, pg_catalog.now(), $6, $7, $8, $9, $10)";
	Oid			types[10] = {UUIDOID, TEXTOID, TEXTOID, TEXTARRAYOID, BYTEAOID,
	TEXTOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID, UUIDOID};
	Datum		values[10];
	char		nulls[10];
	Datum		scopes[2] = {CStringGetTextDatum("read"), CStringGetTextDatum("write")};
	unsigned char random[KG_API_KEY_RANDOM_BYTES];
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	bytea	   *hash;
	KgAuditDetail *detail;
	char	   *id_text;

	new_key_id(&args->id);
	strong_random(random, sizeof(random));
	format_secret(&args->id, random, args->secret);
	explicit_bzero(random, sizeof(random));
	kg_sha256(args->secret, KG_API_KEY_LEN, digest);
	hash = palloc(VARHDRSZ + sizeof(digest));
	SET_VARSIZE(hash, VARHDRSZ + sizeof(digest));
	memcpy(VARDATA(hash), digest, sizeof(digest));

	memset(nulls, ' ', sizeof(nulls));
	values[0] = UUIDPGetDatum(&args->id);
	values[1] = CStringGetTextDatum(args->tenant);
	values[2] = CStringGetTextDatum(args->name);
	values[3] = PointerGetDatum(construct_array(scopes, args->write ? 2 : 1, TEXTOID,
												-1, false, TYPALIGN_INT));
	values[4] = PointerGetDatum(hash);
	values[5] = CStringGetTextDatum(kg_acting_person());
	values[6] = TimestampTzGetDatum(args->expires_at);
	if (args->consent_by)
	{
		values[7] = CStringGetTextDatum(args->consent_by);
		values[8] = args->consent_at;
		if (args->consent_at_null)
			nulls[8] = 'n';
	}
	else if (args->write)
	{
		values[7] = CStringGetTextDatum(kg_acting_person());
		values[8] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	}
	else
		nulls[7] = nulls[8] = 'n';
	if (args->rotated_from)
		values[9] = DirectFunctionCall1(uuid_in, CStringGetDatum(args->rotated_from));
	else
		nulls[9] = 'n';

	if (SPI_execute_with_args(sql, 10, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "keys_guard: could not register the API key");

	id_text = key_id_text(&args->id);
	detail = kg_audit_detail();
	kg_audit_detail_text(detail, "key_id", id_text);
	kg_audit_detail_text(detail, "tenant", args->tenant);
	kg_audit_detail_text(detail, "name", args->name);
	kg_audit_detail_text(detail, "scopes", args->write ? "read,write" : "read");
	kg_audit_detail_text(detail, "expires_at",
						 timestamptz_to_str(args->expires_at));
	if (args->rotated_from)
		kg_audit_detail_text(detail, "rotated_from", args->rotated_from);
	kg_audit_write(args->rotated_from ? "rotate_api_key" : "create_api_key",
				   id_text, KG_OUTCOME_OK, detail);
}

static void
create_internal(void *arg)
{
	CreateArgs *args = (CreateArgs *) arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	require_active_tenant(args->tenant);
	insert_key(args);
	SPI_finish();
}

static Datum
key_result(FunctionCallInfo fcinfo, const pg_uuid_t *id, const char *secret,
		   TimestampTz expires_at, Datum extra, bool has_extra)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	pg_uuid_t  *idcopy = palloc(sizeof(pg_uuid_t));

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "keys_guard: return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	memcpy(idcopy, id, sizeof(pg_uuid_t));
	values[0] = UUIDPGetDatum(idcopy);
	values[1] = CStringGetTextDatum(secret);
	values[2] = TimestampTzGetDatum(expires_at);
	values[3] = extra;
	Assert(tupdesc->natts == (has_extra ? 4 : 3));
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * keys_guard.create_api_key(tenant, name, scopes, expires_in, write_consent)
 *	  RETURNS (key_id, secret, expires_at)
 */
PG_FUNCTION_INFO_V1(keys_guard_create_api_key);
Datum
keys_guard_create_api_key(PG_FUNCTION_ARGS)
{
	CreateArgs	args;
	Interval   *expires_in;
	Datum		result;

	kg_require_preloaded();
	require_args(fcinfo, 5, "tenant, name, scopes, expires_in and write_consent");
	memset(&args, 0, sizeof(args));
	args.caller = CurrentMemoryContext;
	args.tenant = text_to_cstring(PG_GETARG_TEXT_PP(0));
	args.name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	expires_in = PG_GETARG_INTERVAL_P(3);
	args.consent = PG_GETARG_BOOL(4);

	if (!kg_tenant_id_is_valid(args.tenant))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant id"),
				 errdetail("A tenant id is 1 to %d lower-case letters, digits, \"_\" or \"-\", starting with a letter or a digit.",
						   KG_TENANT_ID_MAXLEN)));
	require_key_manager(args.tenant, "create_api_key");
	validate_name(args.name);
	args.write = parse_scopes(PG_GETARG_ARRAYTYPE_P(2));
	if (args.write && !args.consent)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a key with the write scope needs write_consent => true"),
				 errdetail("Keys are read-only unless a person consents to writes; the consent is recorded."),
				 errhint("Create a read key, or pass write_consent => true on behalf of the person who consented.")));
	check_lifetime(expires_in, "expires_in");
	args.expires_at = now_plus(expires_in);

	api_key_relid();
	kg_require_complete_extension();
	kg_run_internal(create_internal, &args, false);

	if (args.write)
		warn_write_key(args.tenant);
	result = key_result(fcinfo, &args.id, args.secret, args.expires_at, (Datum) 0, false);
	explicit_bzero(args.secret, sizeof(args.secret));
	PG_RETURN_DATUM(result);
}

/* ---------------------------------------------------------------------
 * use_api_key
 * ---------------------------------------------------------------------
 */

/*
 * The keys this backend has looked up, by key id: a use_api_key() per
 * transaction reads no table.  Only rows that exist are kept, at most
 * KG_KEY_CACHE_MAX of them, and the whole cache is dropped whenever the
 * registry changes (its trigger keys_guard._registry_changed() sends a
 * relcache invalidation of keys_guard.api_key to every backend at commit)
 * or relcache invalidations were lost.  A key with a revocation time is
 * revoked; its expiry is compared with the clock.
 */
typedef struct KeyEntry
{
	pg_uuid_t	id;				/* hash key */
	char		tenant[KG_TENANT_ID_MAXLEN + 1];
	char		name[KG_API_KEY_NAME_MAXLEN + 1];
	bool		write;
	bool		hash_ok;
	uint8		hash[PG_SHA256_DIGEST_LENGTH];
	bool		has_revoked_at;
	TimestampTz revoked_at;
	TimestampTz expires_at;
} KeyEntry;

#define KG_KEY_CACHE_MAX 1024

static HTAB *key_cache = NULL;
static Oid	key_cache_relid = InvalidOid;
static bool key_cache_callback_registered = false;
static uint64 key_cache_generation = 0;	/* invalidations seen */

static void
key_cache_invalidate(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == key_cache_relid)
	{
		key_cache_generation++;
		key_cache_relid = InvalidOid;
		if (key_cache != NULL)
		{
			hash_destroy(key_cache);
			key_cache = NULL;
		}
	}
}

/*
 * keys_guard.api_key, looked up by name only after an invalidation of it
 * (a registry change, a DROP or a rename sends one) or of every relation.
 */
static Oid
api_key_relid(void)
{
	Oid			nsp;
	Oid			relid;

	if (!key_cache_callback_registered)
	{
		CacheRegisterRelcacheCallback(key_cache_invalidate, (Datum) 0);
		key_cache_callback_registered = true;
	}
	if (OidIsValid(key_cache_relid))
		return key_cache_relid;
	nsp = get_namespace_oid(KG_SCHEMA, true);
	relid = OidIsValid(nsp) ? get_relname_relid("api_key", nsp) : InvalidOid;
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"keys_guard\" is not installed at version 1.3 or later in this database"),
				 errhint("Run ALTER EXTENSION keys_guard UPDATE.")));
	key_cache_relid = relid;
	return relid;
}

/* Read a key's row as the registry's owner into entry; false if none. */
static bool
read_key(Oid relid, const pg_uuid_t *id, KeyEntry *entry)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[1];
	KgOwnerSwitch save;
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	bytea	   *hash;
	Datum		revoked_at;
	int			rc;
	bool		found = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	kg_begin_as_owner(relid, &save);
	if (plan == NULL)
	{
		Oid			types[1] = {UUIDOID};
		SPIPlanPtr	p = SPI_prepare("SELECT k.tenant, k.name, k.scopes OPERATOR(pg_catalog.@>) '{write}'::text[],"
									" k.secret_hash, k.revoked_at, k.expires_at"
									" FROM keys_guard.api_key k WHERE k.id OPERATOR(pg_catalog.=) $1",
									1, types);

		if (p == NULL)
			elog(ERROR, "keys_guard: could not prepare the API key lookup");
		SPI_keepplan(p);
		plan = p;
	}
	values[0] = UUIDPGetDatum(id);

	/*
	 * The latest committed state of the registry, not the transaction's
	 * snapshot: under REPEATABLE READ or SERIALIZABLE a revocation that
	 * committed after the snapshot was taken counts too.
	 */
	rc = SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
							  InvalidSnapshot, true, false, 1);
	kg_end_as_owner(&save);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: could not read the API key registry");
	if (SPI_processed == 1)
	{
		tuple = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		found = true;
		memset(entry, 0, sizeof(KeyEntry));
		entry->id = *id;
		strlcpy(entry->tenant, TextDatumGetCString(SPI_getbinval(tuple, desc, 1, &isnull)),
				sizeof(entry->tenant));
		strlcpy(entry->name, TextDatumGetCString(SPI_getbinval(tuple, desc, 2, &isnull)),
				sizeof(entry->name));
		entry->write = DatumGetBool(SPI_getbinval(tuple, desc, 3, &isnull));
		hash = DatumGetByteaPP(SPI_getbinval(tuple, desc, 4, &isnull));
		entry->hash_ok = !isnull && VARSIZE_ANY_EXHDR(hash) == PG_SHA256_DIGEST_LENGTH;
		if (entry->hash_ok)
			memcpy(entry->hash, VARDATA_ANY(hash), PG_SHA256_DIGEST_LENGTH);
		revoked_at = SPI_getbinval(tuple, desc, 5, &isnull);
		entry->has_revoked_at = !isnull;
		entry->revoked_at = isnull ? 0 : DatumGetTimestampTz(revoked_at);
		entry->expires_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 6, &isnull));
	}
	SPI_finish();
	return found;
}

/*
 * The key with this id, from the cache or the registry, copied into *key
 * (the cache may be dropped by any catalog access after this); false if
 * there is none.
 */
static bool
lookup_key(const pg_uuid_t *id, KeyEntry *key)
{
	Oid			relid;
	KeyEntry	row;
	KeyEntry   *entry;
	bool		found;
	int			tries;

	/* A revocation committed since this transaction began counts at once. */
	AcceptInvalidationMessages();
	relid = api_key_relid();
	if (key_cache != NULL)
	{
		entry = hash_search(key_cache, id, HASH_FIND, NULL);
		if (entry != NULL)
		{
			memcpy(key, entry, sizeof(KeyEntry));
			return true;
		}
	}

	/*
	 * Read the row.  The snapshot is taken before the lock on the registry,
	 * and taking the lock processes invalidations: a change that committed
	 * in between (a revocation) would be used up by this read while the
	 * row came from before it.  So read again until no invalidation
	 * arrived during the read; only then is the row current.
	 */
	for (tries = 0;; tries++)
	{
		uint64		generation = key_cache_generation;

		found = read_key(relid, id, &row);
		AcceptInvalidationMessages();
		if (generation == key_cache_generation)
			break;
		if (tries >= 10)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not read the API key registry while it keeps changing"),
					 errhint("Try again.")));
	}
	if (!found)
		return false;
	if (key_cache == NULL || hash_get_num_entries(key_cache) >= KG_KEY_CACHE_MAX)
	{
		HASHCTL		ctl;

		if (key_cache != NULL)
			hash_destroy(key_cache);
		ctl.keysize = sizeof(pg_uuid_t);
		ctl.entrysize = sizeof(KeyEntry);
		ctl.hcxt = TopMemoryContext;
		key_cache = hash_create("keys_guard API keys", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(key_cache, id, HASH_ENTER, &found);
	memcpy(entry, &row, sizeof(KeyEntry));
	memcpy(key, &row, sizeof(KeyEntry));
	return true;
}

/*
 * Refuse a key: one message for every reason.  The reason and the key id
 * (if the secret had a valid shape) go to the server log and the audit
 * log; the secret goes nowhere.
 */
static void
refuse_key(const char *reason, const char *key_id, const char *tenant)
{
	KgAuditDetail *detail = kg_audit_detail();

	kg_audit_detail_text(detail, "reason", reason);
	if (key_id)
		kg_audit_detail_text(detail, "key_id", key_id);
	if (tenant)
		kg_audit_detail_text(detail, "key_tenant", tenant);
	kg_audit_enqueue("api_key_use", key_id, KG_OUTCOME_DENIED, detail);

	ereport(LOG,
			(errmsg("keys_guard: API key refused"),
			 errdetail_log("Reason: %s; key id: %s.", reason, key_id ? key_id : "none")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("invalid API key")));
}

/*
 * keys_guard.use_api_key(secret): the transaction-scoped context of the
 * key's tenant, for members of keys_guard_keyholder.
 */
PG_FUNCTION_INFO_V1(keys_guard_use_api_key);
Datum
keys_guard_use_api_key(PG_FUNCTION_ARGS)
{
	pg_uuid_t	id;
	KeyEntry	keyrow;
	KeyEntry   *key = &keyrow;
	KgTenant   *tenant;
	TimestampTz now;
	char	   *secret;
	char	   *id_text;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	bool		match;

	kg_require_preloaded();
	if (!kg_has_role(KG_ROLE_KEYHOLDER))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to use an API key"),
				 errdetail("Only members of keys_guard_keyholder can obtain a context with an API key.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("secret must not be null")));
	if (!kg_extension_active())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"keys_guard\" is not installed in this database")));
	kg_require_complete_extension();

	secret = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!kg_api_key_parse(secret, &id))
	{
		explicit_bzero(secret, strlen(secret));
		refuse_key("malformed", NULL, NULL);
	}
	id_text = key_id_text(&id);
	kg_sha256(secret, KG_API_KEY_LEN, digest);
	explicit_bzero(secret, strlen(secret));

	if (!lookup_key(&id, &keyrow))
		refuse_key("unknown key", id_text, NULL);
	match = key->hash_ok && digests_equal(digest, key->hash, PG_SHA256_DIGEST_LENGTH);
	if (!match)
		refuse_key("wrong secret", id_text, key->tenant);
	/*
	 * A revocation counts whenever it was made (revoke_api_key stamps its
	 * own transaction's start, which may be later than this one's), and
	 * expiry is judged by the clock, not this transaction's start: a key
	 * revoked or rotated with no overlap by a transaction that committed
	 * after this one began is refused here at once.
	 */
	now = GetCurrentTimestamp();
	if (key->has_revoked_at)
		refuse_key("revoked", id_text, key->tenant);
	if (key->expires_at <= now)
		refuse_key("expired", id_text, key->tenant);
	tenant = kg_tenant_by_id(key->tenant);
	if (tenant == NULL || !tenant->active)
		refuse_key("tenant deleted", id_text, key->tenant);

	kg_apply_key_context(key->tenant, psprintf("api_key:%s", key->name), id_text, key->write);
	kg_keyholder_lower_timeout();

	kg_audit_key_use(id_text, key->name, key->write);
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * rotate_api_key and revoke_api_key
 * ---------------------------------------------------------------------
 */

typedef struct KeyRow
{
	bool		found;
	char	   *tenant;
	char	   *name;
	bool		write;
	bool		revoked;
	bool		expired;
	bool		replaced;
	Interval   *lifetime;
	char	   *consent_by;
	Datum		consent_at;
	bool		consent_at_null;
	Datum		revoked_at;
} KeyRow;

/* Read and lock a key's row; SPI connected, in keys_guard's own mode. */
static KeyRow
lock_key(const pg_uuid_t *id)
{
	Oid			types[1] = {UUIDOID};
	Datum		values[1] = {UUIDPGetDatum(id)};
	KeyRow		row;
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;

	memset(&row, 0, sizeof(row));
	if (SPI_execute_with_args("SELECT tenant, name, scopes @> '{write}'::text[],"
							  " revoked_at IS NOT NULL, expires_at <= now(), replaced_by IS NOT NULL,"
							  " expires_at - created_at, write_consent_by, write_consent_at, revoked_at"
							  " FROM keys_guard.api_key WHERE id = $1 FOR UPDATE",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: could not read the API key registry");
	if (SPI_processed == 0)
		return row;
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	row.found = true;
	row.tenant = SPI_getvalue(tuple, desc, 1);
	row.name = SPI_getvalue(tuple, desc, 2);
	row.write = DatumGetBool(SPI_getbinval(tuple, desc, 3, &isnull));
	row.revoked = DatumGetBool(SPI_getbinval(tuple, desc, 4, &isnull));
	row.expired = DatumGetBool(SPI_getbinval(tuple, desc, 5, &isnull));
	row.replaced = DatumGetBool(SPI_getbinval(tuple, desc, 6, &isnull));
	row.lifetime = DatumGetIntervalP(SPI_getbinval(tuple, desc, 7, &isnull));
	row.consent_by = SPI_getvalue(tuple, desc, 8);
	row.consent_at = SPI_getbinval(tuple, desc, 9, &row.consent_at_null);
	row.revoked_at = SPI_getbinval(tuple, desc, 10, &isnull);
	return row;
}

static void
unknown_key(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("API key does not exist"),
			 errhint("keys_guard.api_keys lists the keys.")));
}

typedef struct RotateArgs
{
	pg_uuid_t	old_id;
	Interval   *overlap;
	CreateArgs	create;
	TimestampTz old_expires_at;
} RotateArgs;

static void
rotate_internal(void *arg)
{
	RotateArgs *args = (RotateArgs *) arg;
	KeyRow		row;
	Datum		values[2];
	bool		isnull;
	Interval   *lifetime;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	row = lock_key(&args->old_id);
	if (!row.found)
		unknown_key();
	require_key_manager(row.tenant, "rotate_api_key");
	if (row.revoked)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("API key is revoked"),
				 errhint("Create a new key with keys_guard.create_api_key().")));
	if (row.replaced)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("API key was already rotated"),
				 errhint("Rotate its replacement (replaced_by in keys_guard.api_keys).")));
	if (row.expired)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("API key has expired"),
				 errhint("Create a new key with keys_guard.create_api_key().")));

	/* The new key lives as long as the old one was meant to, within the limit. */
	lifetime = row.lifetime;
	if (interval_compare(lifetime, seconds_interval(keys_guard_api_key_max_lifetime)) > 0)
		lifetime = seconds_interval(keys_guard_api_key_max_lifetime);
	args->create.tenant = MemoryContextStrdup(args->create.caller, row.tenant);
	args->create.name = row.name;
	args->create.write = row.write;
	args->create.consent = row.write;
	args->create.expires_at = now_plus(lifetime);
	args->create.rotated_from = key_id_text(&args->old_id);
	if (row.write)
	{
		args->create.consent_by = row.consent_by ? row.consent_by : kg_acting_person();
		args->create.consent_at = row.consent_at;
		args->create.consent_at_null = row.consent_at_null;
	}
	require_active_tenant(row.tenant);
	insert_key(&args->create);

	values[0] = UUIDPGetDatum(&args->old_id);
	values[1] = TimestampTzGetDatum(now_plus(args->overlap));
	if (SPI_execute_with_args("UPDATE keys_guard.api_key SET replaced_by = $3,"
							  " expires_at = least(expires_at, $2) WHERE id = $1 RETURNING expires_at",
							  3, (Oid[]) {UUIDOID, TIMESTAMPTZOID, UUIDOID},
							  (Datum[]) {values[0], values[1], UUIDPGetDatum(&args->create.id)},
							  NULL, false, 0) != SPI_OK_UPDATE_RETURNING || SPI_processed != 1)
		elog(ERROR, "keys_guard: could not update the rotated API key");
	args->old_expires_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
}

/*
 * keys_guard.rotate_api_key(key_id, overlap)
 *	  RETURNS (new_key_id, secret, expires_at, old_expires_at)
 *
 * A new key (a new id and secret, same tenant, name, scopes and consent)
 * replaces the old one, which keeps working until the overlap ends.
 */
PG_FUNCTION_INFO_V1(keys_guard_rotate_api_key);
Datum
keys_guard_rotate_api_key(PG_FUNCTION_ARGS)
{
	RotateArgs	args;
	Datum		result;

	kg_require_preloaded();
	require_args(fcinfo, 2, "key_id and overlap");
	memset(&args, 0, sizeof(args));
	memcpy(&args.old_id, PG_GETARG_UUID_P(0), sizeof(pg_uuid_t));
	args.overlap = PG_GETARG_INTERVAL_P(1);
	if (interval_compare(args.overlap, seconds_interval(0)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("overlap must not be negative")));
	args.create.caller = CurrentMemoryContext;
	api_key_relid();
	kg_require_complete_extension();
	kg_run_internal(rotate_internal, &args, false);
	if (args.create.write)
		warn_write_key(args.create.tenant);
	result = key_result(fcinfo, &args.create.id, args.create.secret, args.create.expires_at,
						TimestampTzGetDatum(args.old_expires_at), true);
	explicit_bzero(args.create.secret, sizeof(args.create.secret));
	PG_RETURN_DATUM(result);
}

typedef struct RevokeArgs
{
	pg_uuid_t	id;
	TimestampTz revoked_at;
} RevokeArgs;

static void
revoke_internal(void *arg)
{
	RevokeArgs *args = (RevokeArgs *) arg;
	KeyRow		row;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	row = lock_key(&args->id);
	if (!row.found)
		unknown_key();
	require_key_manager(row.tenant, "revoke_api_key");
	if (row.revoked)
	{
		args->revoked_at = DatumGetTimestampTz(row.revoked_at);
		ereport(NOTICE,
				(errmsg("API key is already revoked")));
	}
	else
	{
		KgAuditDetail *detail = kg_audit_detail();
		char	   *id_text = key_id_text(&args->id);

		if (SPI_execute_with_args("UPDATE keys_guard.api_key SET revoked_at = now(), revoked_by = $2"
								  " WHERE id = $1 RETURNING revoked_at",
								  2, (Oid[]) {UUIDOID, TEXTOID},
								  (Datum[]) {UUIDPGetDatum(&args->id), CStringGetTextDatum(kg_acting_person())},
								  NULL, false, 0) != SPI_OK_UPDATE_RETURNING || SPI_processed != 1)
			elog(ERROR, "keys_guard: could not revoke the API key");
		args->revoked_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 1, &isnull));
		kg_audit_detail_text(detail, "key_id", id_text);
		kg_audit_detail_text(detail, "tenant", row.tenant);
		kg_audit_write("revoke_api_key", id_text, KG_OUTCOME_OK, detail);
	}
	SPI_finish();
}

/*
 * keys_guard.revoke_api_key(key_id) RETURNS timestamptz: when the key was
 * revoked.  Idempotent: revoking a revoked key changes nothing and returns
 * the same time.
 */
PG_FUNCTION_INFO_V1(keys_guard_revoke_api_key);
Datum
keys_guard_revoke_api_key(PG_FUNCTION_ARGS)
{
	RevokeArgs	args;

	kg_require_preloaded();
	require_args(fcinfo, 1, "key_id");
	memset(&args, 0, sizeof(args));
	memcpy(&args.id, PG_GETARG_UUID_P(0), sizeof(pg_uuid_t));
	api_key_relid();
	kg_require_complete_extension();
	kg_run_internal(revoke_internal, &args, false);
	PG_RETURN_TIMESTAMPTZ(args.revoked_at);
}
