/*-------------------------------------------------------------------------
 *
 * token.c
 *	  Verified tokens (docs/contract.md §17): the keys in keys_guard.token_key
 *	  and set_context_from_token(), which checks a signed JSON Web Token
 *	  (JWS compact serialization) itself and sets the context its claims
 *	  name.
 *
 * Keys.  add_token_key(kid, alg, key) registers an HS256 secret or an
 * RS256, ES256 or EdDSA (Ed25519) public key, given as PEM or as a JWK.
 * Public keys are parsed and checked once, when they are registered, and
 * stored as PEM (SubjectPublicKeyInfo) with the SHA-256 fingerprint of
 * their DER; an HS256 secret is stored as bytes, and no view, function or
 * message ever returns it.  Refused: an Ed25519 point of small order or
 * not canonically encoded (anyone could sign for it), and an HS256
 * "secret" that is a public key's text (PEM, DER, its base64, a JWK with
 * a public key's members: algorithm confusion moved into the registry).
 * A key is current, standby, previous or revoked; all but revoked verify,
 * and revoked is final.
 *
 * Verification, in this order; the first failure is the reason:
 *	- a token (NULL is refused as "null"), at most KG_TOKEN_MAXLEN bytes,
 *	  three base64url parts (RFC 4648 §5, no padding, no other character,
 *	  no stray bits);
 *	- a header that is a JSON object without duplicate names, with a
 *	  string "alg" that is not "none", no "crit", and a string "kid";
 *	- the key registered under that kid, not revoked, whose algorithm is
 *	  the header's: the algorithm comes from the key, so a token cannot
 *	  choose how it is checked (an HS256 token "signed" with an RSA public
 *	  key's text is refused because the key is RS256);
 *	- the signature, by OpenSSL's libcrypto: HMAC-SHA-256 compared with
 *	  CRYPTO_memcmp(), RSASSA-PKCS1-v1_5 with SHA-256, ECDSA P-256 with
 *	  SHA-256 (the JOSE signature is r || s, 64 bytes, turned into the DER
 *	  ECDSA-Sig-Value OpenSSL reads), Ed25519; each with its exact length;
 *	- a payload that is a JSON object without duplicate names (at any
 *	  depth), with a numeric "exp" (required) and, if present, a numeric
 *	  "nbf", checked against the clock with keys_guard.token_leeway;
 *	- "iss" and "aud" when keys_guard.token_issuer / token_audience are set;
 *	- the tenant claim (keys_guard.token_tenant_claim), a valid tenant id
 *	  of an active tenant; "sub", the actor; the request id claim if one is
 *	  configured (else one is generated); "scope", a space-separated string
 *	  or an array, whose "write" makes the context writable.
 *
 * JSON is read with PostgreSQL's own parser (common/jsonapi.h) through
 * semantic actions that see every member name, so a name given twice in
 * one object (which jsonb would silently resolve to the last value) is
 * refused.  In a database not in UTF-8, a header or payload with anything
 * beyond ASCII (a byte, or a \u escape the parser would convert) is
 * refused.  sub and the request id carry no control character, C1
 * included, nor one that reorders or breaks a log line.
 *
 * Every failure is the same 28000 "invalid token"; the reason and the kid
 * (when it is well formed) go to the server log and, through the shared
 * queue so that they survive the error, to the audit log.  The token never
 * goes anywhere.  A backend's verification of a token is audited too, and
 * each later use with keys_guard.token_audit_each_use.
 *
 * Caches.  Each backend keeps the keys it loaded (with OpenSSL's parsed
 * public key) and the tokens it verified, by the SHA-256 of the token:
 * their claims, exp and nbf.  A cached token skips the parsing and the
 * signature, never the clock: exp and nbf are compared with the clock at
 * every use, and the tenant is looked up every time.  Both caches are
 * dropped whenever keys_guard.token_key changes (its trigger sends a
 * relcache invalidation, as for the API key registry) and the token cache
 * whenever one of the claim settings changes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "keys_guard.h"

#define KG_TOKEN_KID_MAXLEN		128
#define KG_TOKEN_SECRET_MIN		32	/* bytes: RFC 7518 §3.2, a key as long as the hash */
#define KG_TOKEN_SECRET_MAX		512
#define KG_TOKEN_KEY_TEXT_MAX	16384
#define KG_TOKEN_RSA_MIN_BITS	2048	/* RFC 7518 §3.3 */
#define KG_TOKEN_JSON_MAXDEPTH	32
#define KG_TOKEN_CACHE_MAX		1024
#define KG_TOKEN_KEY_CACHE_MAX	256

/* Seconds between the Unix epoch and PostgreSQL's. */
#define KG_UNIX_EPOCH_OFFSET	((double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)

typedef enum TokenAlg
{
	ALG_HS256,
	ALG_RS256,
	ALG_ES256,
	ALG_EDDSA,
	ALG_INVALID
} TokenAlg;

static const char *const alg_names[] = {"HS256", "RS256", "ES256", "EdDSA"};

typedef enum KeyState
{
	STATE_CURRENT,
	STATE_STANDBY,
	STATE_PREVIOUS,
	STATE_REVOKED,
	STATE_INVALID
} KeyState;

static const char *const state_names[] = {"current", "standby", "previous", "revoked"};

static TokenAlg
alg_from_name(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(alg_names); i++)
		if (strcmp(name, alg_names[i]) == 0)
			return (TokenAlg) i;
	return ALG_INVALID;
}

static KeyState
state_from_name(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(state_names); i++)
		if (strcmp(name, state_names[i]) == 0)
			return (KeyState) i;
	return STATE_INVALID;
}

/* ---------------------------------------------------------------------
 * base64url and SHA-256
 * ---------------------------------------------------------------------
 */

/* The value of a base64url character, or -1 (redact.c uses it too). */
int
kg_b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Decode src[0..len), base64url without padding (RFC 7515 §2), into a
 * palloc'd buffer.  Strict: any other character, a length that no
 * encoding has, or bits left over that are not zero (a second spelling of
 * the same bytes) make it false.
 */
static bool
b64url_decode(const char *src, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *buf;
	uint32		acc = 0;
	int			bits = 0;
	size_t		n = 0;
	size_t		i;

	if (len % 4 == 1)
		return false;
	buf = palloc(len * 3 / 4 + 3);
	for (i = 0; i < len; i++)
	{
		int			v = kg_b64url_value((unsigned char) src[i]);

		if (v < 0)
		{
			pfree(buf);
			return false;
		}
		acc = ((acc << 6) | (uint32) v) & 0xFFFFFF;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			buf[n++] = (unsigned char) ((acc >> bits) & 0xFF);
		}
	}
	if (bits > 0 && (acc & ((1U << bits) - 1)) != 0)
	{
		pfree(buf);
		return false;
	}
	*out = buf;
	*outlen = n;
	return true;
}

/* ---------------------------------------------------------------------
 * JSON objects, with every member name seen
 * ---------------------------------------------------------------------
 */

typedef enum ClaimKind
{
	CLAIM_STRING,
	CLAIM_NUMBER,
	CLAIM_BOOL,
	CLAIM_NULL,
	CLAIM_OBJECT,
	CLAIM_ARRAY
} ClaimKind;

/* A member of the top-level object. */
typedef struct Claim
{
	char	   *name;
	ClaimKind	kind;
	char	   *value;			/* a scalar's text (strings unescaped) */
	List	   *strings;		/* an array's string elements */
	bool		strings_only;	/* the array holds strings only */
} Claim;

typedef struct ClaimParse
{
	int			depth;			/* objects and arrays open */
	List	   *names[KG_TOKEN_JSON_MAXDEPTH + 1];	/* per open object */
	List	   *claims;			/* the top-level members */
	Claim	   *current;		/* the top-level member being read */
	bool		in_top_array;	/* inside the current member's array */
	bool		not_object;
	bool		duplicate;
	bool		too_deep;
} ClaimParse;

static void
cp_object_start(void *state)
{
	ClaimParse *cp = (ClaimParse *) state;

	if (cp->depth == 1 && cp->current)
		cp->current->kind = CLAIM_OBJECT;
	if (cp->depth == 2 && cp->in_top_array)
		cp->current->strings_only = false;
	cp->depth++;
	if (cp->depth > KG_TOKEN_JSON_MAXDEPTH)
		cp->too_deep = true;
	else
		cp->names[cp->depth] = NIL;
}

static void
cp_object_end(void *state)
{
	ClaimParse *cp = (ClaimParse *) state;

	if (cp->depth <= KG_TOKEN_JSON_MAXDEPTH)
		cp->names[cp->depth] = NIL;
	cp->depth--;
}

static void
cp_array_start(void *state)
{
	ClaimParse *cp = (ClaimParse *) state;

	if (cp->depth == 0)
		cp->not_object = true;
	else if (cp->depth == 1 && cp->current)
	{
		cp->current->kind = CLAIM_ARRAY;
		cp->current->strings_only = true;
		cp->in_top_array = true;
	}
	else if (cp->depth == 2 && cp->in_top_array)
		cp->current->strings_only = false;
	cp->depth++;
	if (cp->depth > KG_TOKEN_JSON_MAXDEPTH)
		cp->too_deep = true;
	else
		cp->names[cp->depth] = NIL;
}

static void
cp_array_end(void *state)
{
	ClaimParse *cp = (ClaimParse *) state;

	cp->depth--;
	if (cp->depth == 1)
		cp->in_top_array = false;
}

static void
cp_field_start(void *state, char *fname, bool isnull)
{
	ClaimParse *cp = (ClaimParse *) state;
	ListCell   *lc;

	if (cp->depth > KG_TOKEN_JSON_MAXDEPTH)
		return;
	foreach(lc, cp->names[cp->depth])
	{
		if (strcmp((char *) lfirst(lc), fname) == 0)
			cp->duplicate = true;
	}
	cp->names[cp->depth] = lappend(cp->names[cp->depth], fname);
	if (cp->depth == 1)
	{
		Claim	   *claim = palloc0(sizeof(Claim));

		claim->name = fname;
		cp->current = claim;
		cp->claims = lappend(cp->claims, claim);
	}
}

static void
cp_scalar(void *state, char *token, JsonTokenType tokentype)
{
	ClaimParse *cp = (ClaimParse *) state;

	if (cp->depth == 0)
	{
		cp->not_object = true;
		return;
	}
	if (cp->depth == 1 && cp->current)
	{
		switch (tokentype)
		{
			case JSON_TOKEN_STRING:
				cp->current->kind = CLAIM_STRING;
				break;
			case JSON_TOKEN_NUMBER:
				cp->current->kind = CLAIM_NUMBER;
				break;
			case JSON_TOKEN_TRUE:
			case JSON_TOKEN_FALSE:
				cp->current->kind = CLAIM_BOOL;
				break;
			default:
				cp->current->kind = CLAIM_NULL;
				break;
		}
		cp->current->value = token;
		return;
	}
	if (cp->depth == 2 && cp->in_top_array)
	{
		if (tokentype == JSON_TOKEN_STRING)
			cp->current->strings = lappend(cp->current->strings, token);
		else
			cp->current->strings_only = false;
	}
}

/*
 * Whether the brackets of JSON text nest deeper than maxdepth (outside
 * strings).  Checked before parsing: the parser recurses once per level,
 * and a stack-depth error would not be the one message every bad token
 * gets.
 */
static bool
nests_too_deep(const unsigned char *data, size_t len, int maxdepth)
{
	int			depth = 0;
	bool		in_string = false;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = data[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > maxdepth)
				return true;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return false;
}

/*
 * Whether data[0..len) has a byte or a \u escape beyond ASCII while the
 * database is not in UTF-8: the parser would turn an escape into the
 * database's encoding (and fail on one it cannot hold, with an error that
 * is not 28000), and a raw UTF-8 byte would reach the context as text of
 * another encoding.  Such JSON is refused instead.
 */
static bool
non_ascii_in_non_utf8_db(const unsigned char *data, size_t len)
{
	size_t		i;

	if (GetDatabaseEncoding() == PG_UTF8)
		return false;
	for (i = 0; i < len; i++)
	{
		if (data[i] >= 0x80)
			return true;
		if (data[i] == '\\' && i + 1 < len)
		{
			i++;
			if (data[i] == 'u')
			{
				unsigned int code = 0;
				int			j;

				for (j = 1; j <= 4 && i + j < len; j++)
				{
					int			c = data[i + j];
					int			v = (c >= '0' && c <= '9') ? c - '0' :
						(c >= 'a' && c <= 'f') ? c - 'a' + 10 :
						(c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;

					if (v < 0)
						break;
					code = (code << 4) | (unsigned int) v;
				}
				if (code >= 0x80)
					return true;
			}
		}
	}
	return false;
}

/*
 * Parse data[0..len) as a JSON object of UTF-8 text; the list of its
 * members, or false if it is not one, or has a name twice in one object,
 * or holds anything beyond ASCII in a database not in UTF-8.
 */
static bool
parse_object(const unsigned char *data, size_t len, List **claims, bool *duplicate)
{
	ClaimParse	cp;
	JsonSemAction sem;
	JsonLexContext *lex;
	char	   *copy;

	*duplicate = false;
	if (len == 0 || memchr(data, '\0', len) != NULL ||
		!pg_verify_mbstr(PG_UTF8, (const char *) data, (int) len, true) ||
		non_ascii_in_non_utf8_db(data, len) ||
		nests_too_deep(data, len, KG_TOKEN_JSON_MAXDEPTH))
		return false;
	copy = pnstrdup((const char *) data, len);
	memset(&cp, 0, sizeof(cp));
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &cp;
	sem.object_start = cp_object_start;
	sem.object_end = cp_object_end;
	sem.array_start = cp_array_start;
	sem.array_end = cp_array_end;
	sem.object_field_start = cp_field_start;
	sem.scalar = cp_scalar;
	lex = makeJsonLexContextCstringLen(copy, (int) len, PG_UTF8, true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
		return false;
	if (cp.duplicate)
	{
		*duplicate = true;
		return false;
	}
	if (cp.not_object || cp.too_deep)
		return false;
	*claims = cp.claims;
	return true;
}

static Claim *
find_claim(List *claims, const char *name)
{
	ListCell   *lc;

	foreach(lc, claims)
	{
		Claim	   *claim = (Claim *) lfirst(lc);

		if (strcmp(claim->name, name) == 0)
			return claim;
	}
	return NULL;
}

static const char *
string_claim(List *claims, const char *name)
{
	Claim	   *claim = find_claim(claims, name);

	return claim && claim->kind == CLAIM_STRING ? claim->value : NULL;
}

/* A NumericDate (RFC 7519 §2): a finite JSON number. */
static bool
number_claim(Claim *claim, double *value)
{
	char	   *end;
	double		v;

	if (claim == NULL || claim->kind != CLAIM_NUMBER)
		return false;
	v = strtod(claim->value, &end);
	if (*end != '\0' || isnan(v) || isinf(v))
		return false;
	*value = v;
	return true;
}

/*
 * Non-empty, at most maxlen bytes, no control characters: neither ASCII's
 * nor C1 (U+0080-U+009F), nor the invisible characters that reorder or
 * break what a log viewer shows (U+061C, U+200E-U+200F, U+2028-U+202E,
 * U+2066-U+2069).  The text is valid UTF-8 (parse_object()).
 */
static bool
printable_text(const char *s, size_t maxlen)
{
	const unsigned char *p;

	if (s == NULL || s[0] == '\0' || strlen(s) > maxlen)
		return false;
	for (p = (const unsigned char *) s; *p; p++)
	{
		if (*p < 0x20 || *p == 0x7f)
			return false;
		/* C1: U+0080-U+009F is C2 80 - C2 9F */
		if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			return false;
		/* U+061C (arabic letter mark): D8 9C */
		if (p[0] == 0xd8 && p[1] == 0x9c)
			return false;
		if (p[0] == 0xe2 && p[1] == 0x80 &&
			(p[2] == 0x8e || p[2] == 0x8f ||	/* U+200E, U+200F */
			 (p[2] >= 0xa8 && p[2] <= 0xae)))	/* U+2028-U+202E */
			return false;
		if (p[0] == 0xe2 && p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9)	/* U+2066-U+2069 */
			return false;
	}
	return true;
}

/* A kid fit for the log and the registry: printable ASCII, bounded. */
static bool
kid_is_valid(const char *kid)
{
	const unsigned char *p;

	if (kid == NULL || kid[0] == '\0' || strlen(kid) > KG_TOKEN_KID_MAXLEN)
		return false;
	for (p = (const unsigned char *) kid; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return false;
	return true;
}

/* ---------------------------------------------------------------------
 * Public keys: PEM or JWK in, OpenSSL's EVP_PKEY out
 * ---------------------------------------------------------------------
 */

/* A base64url JWK member decoded; false if absent or malformed. */
static bool
jwk_bytes(List *jwk, const char *name, unsigned char **out, size_t *outlen)
{
	const char *value = string_claim(jwk, name);

	return value != NULL && b64url_decode(value, strlen(value), out, outlen) &&
		*outlen > 0;
}

static EVP_PKEY *
pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY   *pkey = NULL;

	if (params != NULL &&
		(ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) != NULL &&
		EVP_PKEY_fromdata_init(ctx) == 1 &&
		EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
}

/* An RSA public key from a JWK's n and e. */
static EVP_PKEY *
jwk_rsa(List *jwk)
{
	unsigned char *n_bytes;
	unsigned char *e_bytes;
	size_t		n_len;
	size_t		e_len;
	BIGNUM	   *n = NULL;
	BIGNUM	   *e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY   *pkey = NULL;

	if (!jwk_bytes(jwk, "n", &n_bytes, &n_len) || !jwk_bytes(jwk, "e", &e_bytes, &e_len))
		return NULL;
	if ((n = BN_bin2bn(n_bytes, (int) n_len, NULL)) != NULL &&
		(e = BN_bin2bn(e_bytes, (int) e_len, NULL)) != NULL &&
		(bld = OSSL_PARAM_BLD_new()) != NULL &&
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) == 1)
		pkey = pkey_from_params("RSA", bld);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return pkey;
}

/* A P-256 public key from a JWK's x and y (32 bytes each). */
static EVP_PKEY *
jwk_ec(List *jwk)
{
	unsigned char *x;
	unsigned char *y;
	size_t		x_len;
	size_t		y_len;
	unsigned char point[65];
	OSSL_PARAM_BLD *bld;
	EVP_PKEY   *pkey = NULL;
	const char *crv = string_claim(jwk, "crv");

	if (crv == NULL || strcmp(crv, "P-256") != 0 ||
		!jwk_bytes(jwk, "x", &x, &x_len) || !jwk_bytes(jwk, "y", &y, &y_len) ||
		x_len != 32 || y_len != 32)
		return NULL;
	point[0] = 0x04;			/* uncompressed (SEC 1 §2.3.3) */
	memcpy(point + 1, x, 32);
	memcpy(point + 33, y, 32);
	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		return NULL;
	if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
		OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) == 1)
		pkey = pkey_from_params("EC", bld);
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

/* An Ed25519 public key from a JWK's x (RFC 8037). */
static EVP_PKEY *
jwk_okp(List *jwk)
{
	unsigned char *x;
	size_t		x_len;
	const char *crv = string_claim(jwk, "crv");

	if (crv == NULL || strcmp(crv, "Ed25519") != 0 ||
		!jwk_bytes(jwk, "x", &x, &x_len) || x_len != 32)
		return NULL;
	return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, x_len);
}

/*
 * Whether an Ed25519 public key is a point of small order or is not
 * canonically encoded (y >= p): with such a key anyone forges a signature
 * that verifies (with the identity, 01 00..00, the signature 01 00..00 ||
 * 00..00 signs every message).  The encodings of the eight points of small
 * order, compared with the sign bit of x cleared; and every y >= p =
 * 2^255 - 19 (little-endian: ed..ff ff..ff 7f and above).
 */
static bool
ed25519_key_is_weak(EVP_PKEY *pkey)
{
	static const unsigned char small_order[][32] = {
		/* 1 (the identity) */
		{0x01},
		/* p - 1 (order 2) */
		{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		/* 0 (order 4) */
		{0x00},
		/* order 8 */
		{0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
		0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
		{0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
		0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
	};
	unsigned char raw[32];
	size_t		raw_len = sizeof(raw);
	int			i;

	if (EVP_PKEY_get_raw_public_key(pkey, raw, &raw_len) != 1 || raw_len != 32)
		return true;
	for (i = 0; i < (int) lengthof(small_order); i++)
		if (memcmp(raw, small_order[i], 31) == 0 &&
			(raw[31] & 0x7f) == small_order[i][31])
			return true;
	/* y >= p: y's top byte 0x7f, bytes 30..1 0xff, byte 0 at least 0xed. */
	if ((raw[31] & 0x7f) != 0x7f || raw[0] < 0xed)
		return false;
	for (i = 1; i < 31; i++)
		if (raw[i] != 0xff)
			return false;
	return true;
}

/* Whether pkey is a key of alg's kind and strength. */
static bool
pkey_fits(EVP_PKEY *pkey, TokenAlg alg)
{
	char		group[64];
	size_t		group_len = 0;

	switch (alg)
	{
		case ALG_RS256:
			{
				EVP_PKEY_CTX *ctx;
				bool		ok;

				if (!EVP_PKEY_is_a(pkey, "RSA") ||
					EVP_PKEY_get_bits(pkey) < KG_TOKEN_RSA_MIN_BITS)
					return false;
				/* An odd modulus, an odd exponent above 1 (e = 1 signs anything). */
				ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
				ok = ctx != NULL && EVP_PKEY_public_check(ctx) == 1;
				EVP_PKEY_CTX_free(ctx);
				return ok;
			}
		case ALG_ES256:
			{
				EVP_PKEY_CTX *ctx;
				bool		ok;

				if (!EVP_PKEY_is_a(pkey, "EC") ||
					EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
												   group, sizeof(group), &group_len) != 1 ||
					strcmp(group, "prime256v1") != 0)
					return false;
				/* The point is on the curve (no invalid-curve keys). */
				ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
				ok = ctx != NULL && EVP_PKEY_public_check(ctx) == 1;
				EVP_PKEY_CTX_free(ctx);
				return ok;
			}
		case ALG_EDDSA:
			/* Not a point of small order (every signature would verify). */
			return EVP_PKEY_is_a(pkey, "ED25519") && !ed25519_key_is_weak(pkey);
		default:
			return false;
	}
}

static void
bad_key(TokenAlg alg, const char *detail)
{
	ERR_clear_error();
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s key", alg_names[alg]),
			 errdetail_internal("%s", detail)));
}

/*
 * The public key of text (PEM "PUBLIC KEY", or a JWK) for alg, checked;
 * 22023 if it is not one.  The caller frees it.
 */
static EVP_PKEY *
parse_public_key(const char *text, TokenAlg alg)
{
	const char *p = text;
	EVP_PKEY   *pkey = NULL;

	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p == '{')
	{
		List	   *jwk;
		bool		duplicate;
		const char *kty;
		const char *jwk_alg;
		static const char *const kty_of[] = {"oct", "RSA", "EC", "OKP"};

		if (!parse_object((const unsigned char *) p, strlen(p), &jwk, &duplicate))
			bad_key(alg, "The key is neither PEM nor a JSON Web Key.");
		kty = string_claim(jwk, "kty");
		if (kty == NULL || strcmp(kty, kty_of[alg]) != 0)
			bad_key(alg, psprintf("A JSON Web Key for %s has \"kty\": \"%s\".",
								  alg_names[alg], kty_of[alg]));
		jwk_alg = string_claim(jwk, "alg");
		if (find_claim(jwk, "alg") && (jwk_alg == NULL || strcmp(jwk_alg, alg_names[alg]) != 0))
			bad_key(alg, "The key's \"alg\" is another algorithm.");
		if (find_claim(jwk, "d") || find_claim(jwk, "p"))
			bad_key(alg, "The JSON Web Key holds a private key; register the public key only.");
		switch (alg)
		{
			case ALG_RS256:
				pkey = jwk_rsa(jwk);
				break;
			case ALG_ES256:
				pkey = jwk_ec(jwk);
				break;
			case ALG_EDDSA:
				pkey = jwk_okp(jwk);
				break;
			default:
				break;
		}
		if (pkey == NULL)
			bad_key(alg, "The JSON Web Key's members do not make a public key.");
	}
	else
	{
		BIO		   *bio = BIO_new_mem_buf(p, -1);

		if (bio != NULL)
			pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		BIO_free(bio);
		if (pkey == NULL)
			bad_key(alg, "The key is neither a PEM public key (\"-----BEGIN PUBLIC KEY-----\") nor a JSON Web Key.");
	}
	if (alg == ALG_EDDSA && EVP_PKEY_is_a(pkey, "ED25519") && ed25519_key_is_weak(pkey))
	{
		EVP_PKEY_free(pkey);
		bad_key(alg, "The Ed25519 public key is a point of small order or is not canonically encoded.");
	}
	if (!pkey_fits(pkey, alg))
	{
		EVP_PKEY_free(pkey);
		bad_key(alg, alg == ALG_RS256 ? "RS256 needs an RSA public key of at least 2048 bits." :
				alg == ALG_ES256 ? "ES256 needs an EC public key on curve P-256." :
				"EdDSA needs an Ed25519 public key.");
	}
	ERR_clear_error();
	return pkey;
}

/* PEM text and SHA-256 fingerprint (hex of the DER) of a public key. */
static void
describe_public_key(EVP_PKEY *pkey, char **pem, char **fingerprint)
{
	BIO		   *bio = BIO_new(BIO_s_mem());
	unsigned char *der = NULL;
	int			der_len;
	char	   *data;
	long		len;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	int			i;

	if (bio == NULL || PEM_write_bio_PUBKEY(bio, pkey) != 1 ||
		(len = BIO_get_mem_data(bio, &data)) <= 0 ||
		(der_len = i2d_PUBKEY(pkey, &der)) <= 0)
	{
		BIO_free(bio);
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		elog(ERROR, "keys_guard: could not encode a public key");
	}
	*pem = pnstrdup(data, len);
	BIO_free(bio);
	kg_sha256(der, der_len, digest);
	OPENSSL_free(der);
	*fingerprint = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(*fingerprint + 2 * i, 3, "%02x", digest[i]);
}

/* Whether DER bytes start with a SubjectPublicKeyInfo OpenSSL reads. */
static bool
der_is_public_key(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	EVP_PKEY   *pkey;

	if (len == 0 || len > (size_t) INT_MAX)
		return false;
	pkey = d2i_PUBKEY(NULL, &p, (long) len);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return pkey != NULL;
}

/*
 * Whether bytes that would be an HS256 secret are in fact a public key's
 * text (algorithm confusion, RFC 8725 §2.1, moved into the registry: a
 * secret anyone can read signs anything): PEM armour of any kind ("-----
 * BEGIN"), a PEM public key, a DER one, or the base64 or base64url of a
 * DER one (a PEM's body without its armour).
 */
static bool
secret_is_public_key(const unsigned char *data, size_t len)
{
	static const char armour[] = "-----BEGIN";
	const size_t armour_len = sizeof(armour) - 1;
	size_t		i;
	BIO		   *bio;
	EVP_PKEY   *pkey = NULL;
	unsigned char *b64;
	size_t		b64_len = 0;
	bool		found = false;

	for (i = 0; i + armour_len <= len; i++)
		if (pg_strncasecmp((const char *) data + i, armour, armour_len) == 0)
			return true;
	if (der_is_public_key(data, len))
		return true;
	if (len <= (size_t) INT_MAX && (bio = BIO_new_mem_buf(data, (int) len)) != NULL)
	{
		pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		BIO_free(bio);
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		if (pkey != NULL)
			return true;
	}

	/* Base64 (standard alphabet, padding, line breaks) of a DER key. */
	b64 = palloc(len + 1);
	for (i = 0; i < len; i++)
	{
		unsigned char c = data[i];

		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  c == '+' || c == '/' || c == '='))
		{
			b64_len = 0;
			break;
		}
		b64[b64_len++] = c;
	}
	if (b64_len >= 4 && b64_len % 4 == 0)
	{
		unsigned char *der = palloc(b64_len / 4 * 3 + 1);
		int			der_len = EVP_DecodeBlock(der, b64, (int) b64_len);

		found = der_len > 0 && der_is_public_key(der, der_len);
		pfree(der);
	}
	pfree(b64);
	if (!found)
	{
		unsigned char *der;
		size_t		der_len;

		if (b64url_decode((const char *) data, len, &der, &der_len))
		{
			found = der_is_public_key(der, der_len);
			pfree(der);
		}
	}
	ERR_clear_error();
	return found;
}

/*
 * An HS256 secret: a JWK {"kty":"oct","k":...}, or else the text's bytes.
 * At least KG_TOKEN_SECRET_MIN bytes.  Never a public key's text, as PEM,
 * DER or a JWK (whose members say what it is).  The secret is never echoed.
 */
static unsigned char *
parse_secret(const char *text, size_t *len)
{
	const char *p = text;
	unsigned char *secret;

	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p == '{')
	{
		List	   *jwk;
		bool		duplicate;
		const char *kty;

		if (!parse_object((const unsigned char *) p, strlen(p), &jwk, &duplicate))
			bad_key(ALG_HS256, "The key looks like a JSON Web Key but is not valid JSON.");
		kty = string_claim(jwk, "kty");
		if (kty == NULL || strcmp(kty, "oct") != 0)
			bad_key(ALG_HS256, "A JSON Web Key for HS256 has \"kty\": \"oct\".");
		if (find_claim(jwk, "n") || find_claim(jwk, "e") || find_claim(jwk, "x") ||
			find_claim(jwk, "y") || find_claim(jwk, "crv"))
			bad_key(ALG_HS256, "The JSON Web Key has a public key's members; an HS256 key is a shared secret, never a public key.");
		if (find_claim(jwk, "alg") &&
			(string_claim(jwk, "alg") == NULL || strcmp(string_claim(jwk, "alg"), "HS256") != 0))
			bad_key(ALG_HS256, "The key's \"alg\" is another algorithm.");
		if (!jwk_bytes(jwk, "k", &secret, len))
			bad_key(ALG_HS256, "The JSON Web Key's \"k\" is not base64url.");
	}
	else
	{
		*len = strlen(text);
		secret = (unsigned char *) pstrdup(text);
	}
	if (secret_is_public_key(secret, *len))
	{
		explicit_bzero(secret, *len);
		bad_key(ALG_HS256, "The key is a public key's text; an HS256 key is a shared secret, never a public key.");
	}
	if (*len < KG_TOKEN_SECRET_MIN || *len > KG_TOKEN_SECRET_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid HS256 key"),
				 errdetail("An HS256 secret is %d to %d bytes.",
						   KG_TOKEN_SECRET_MIN, KG_TOKEN_SECRET_MAX)));
	return secret;
}

/* ---------------------------------------------------------------------
 * The key registry and its per-backend cache
 * ---------------------------------------------------------------------
 */

typedef struct KeyEntry
{
	char		kid[KG_TOKEN_KID_MAXLEN + 1];	/* hash key */
	TokenAlg	alg;
	KeyState	state;
	size_t		secret_len;		/* HS256 */
	unsigned char secret[KG_TOKEN_SECRET_MAX];
	EVP_PKEY   *pkey;			/* the others; owned by the cache */
} KeyEntry;

typedef struct TokenEntry
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];	/* hash key: SHA-256 of the token */
	char		kid[KG_TOKEN_KID_MAXLEN + 1];
	double		exp;
	bool		has_nbf;
	double		nbf;
	char		tenant[KG_TENANT_ID_MAXLEN + 1];
	char		actor[KG_ACTOR_MAXLEN + 1];
	char		request_id[KG_REQUEST_ID_MAXLEN + 1];	/* "" : generate one */
	bool		write;
} TokenEntry;

static HTAB *key_cache = NULL;
static HTAB *token_cache = NULL;
static Oid	cache_relid = InvalidOid;
static bool cache_callback_registered = false;
static uint64 cache_generation = 0;
static char *cache_settings = NULL;	/* the claim settings the token cache was made under */

static void
drop_key_cache(void)
{
	HASH_SEQ_STATUS status;
	KeyEntry   *entry;

	if (key_cache == NULL)
		return;
	hash_seq_init(&status, key_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		EVP_PKEY_free(entry->pkey);
		explicit_bzero(entry->secret, sizeof(entry->secret));
	}
	hash_destroy(key_cache);
	key_cache = NULL;
}

static void
drop_token_cache(void)
{
	if (token_cache != NULL)
		hash_destroy(token_cache);
	token_cache = NULL;
}

/* keys_guard.token_key as last looked up; InvalidOid: look it up again. */
static Oid	known_relid = InvalidOid;

static void
cache_invalidate(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == cache_relid)
	{
		cache_generation++;
		drop_key_cache();
		drop_token_cache();
		known_relid = InvalidOid;
	}
}

/*
 * The registry's oid.  Remembered until an invalidation of the registry
 * (or a reset) arrives: a dropped and recreated extension is looked up
 * again.
 */
static Oid
token_key_relid(void)
{
	Oid			nsp;
	Oid			relid;

	if (OidIsValid(known_relid) && cache_callback_registered)
		return known_relid;
	nsp = get_namespace_oid(KG_SCHEMA, true);
	relid = OidIsValid(nsp) ? get_relname_relid("token_key", nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"keys_guard\" is not installed at version 1.3 or later in this database"),
				 errhint("Run ALTER EXTENSION keys_guard UPDATE.")));
	if (cache_callback_registered)
		known_relid = relid;
	return relid;
}

/*
 * Register the invalidation callback, take the invalidations that
 * arrived (a key revoked since this transaction began counts at once),
 * then the registry's oid; once per call.
 */
static Oid
caches_begin(void)
{
	Oid			relid;

	if (!cache_callback_registered)
	{
		CacheRegisterRelcacheCallback(cache_invalidate, (Datum) 0);
		cache_callback_registered = true;
	}
	AcceptInvalidationMessages();
	relid = token_key_relid();
	if (relid != cache_relid)
	{
		cache_invalidate((Datum) 0, InvalidOid);
		cache_relid = relid;
		known_relid = relid;
	}
	return relid;
}

/*
 * Read a key's row, as the registry's owner and with the latest committed
 * state, into entry (pkey loaded); false if there is none.
 */
static bool
read_key(Oid relid, const char *kid, KeyEntry *entry)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[1];
	KgOwnerSwitch save;
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	int			rc;
	bool		found = false;
	char	   *pem = NULL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	kg_begin_as_owner(relid, &save);
	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};
		SPIPlanPtr	p = SPI_prepare("SELECT k.alg, k.state, k.secret, k.public_key"
									" FROM keys_guard.token_key k WHERE k.kid OPERATOR(pg_catalog.=) $1",
									1, types);

		if (p == NULL)
			elog(ERROR, "keys_guard: could not prepare the token key lookup");
		SPI_keepplan(p);
		plan = p;
	}
	values[0] = CStringGetTextDatum(kid);
	rc = SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
							  InvalidSnapshot, true, false, 1);
	kg_end_as_owner(&save);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: could not read the token key registry");
	if (SPI_processed == 1)
	{
		Datum		d;

		tuple = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		memset(entry, 0, sizeof(KeyEntry));
		strlcpy(entry->kid, kid, sizeof(entry->kid));
		entry->alg = alg_from_name(TextDatumGetCString(SPI_getbinval(tuple, desc, 1, &isnull)));
		entry->state = state_from_name(TextDatumGetCString(SPI_getbinval(tuple, desc, 2, &isnull)));
		d = SPI_getbinval(tuple, desc, 3, &isnull);
		if (!isnull)
		{
			bytea	   *secret = DatumGetByteaPP(d);
			size_t		len = VARSIZE_ANY_EXHDR(secret);

			/* Not a public key's text (a registry restored from a dump). */
			if (len <= KG_TOKEN_SECRET_MAX &&
				!secret_is_public_key((const unsigned char *) VARDATA_ANY(secret), len))
			{
				memcpy(entry->secret, VARDATA_ANY(secret), len);
				entry->secret_len = len;
			}
		}
		d = SPI_getbinval(tuple, desc, 4, &isnull);
		if (!isnull)
			pem = TextDatumGetCString(d);
		found = true;
	}
	SPI_finish();
	if (found && pem != NULL && entry->alg != ALG_HS256)
	{
		BIO		   *bio = BIO_new_mem_buf(pem, -1);

		if (bio != NULL)
			entry->pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		BIO_free(bio);
		if (entry->pkey != NULL && !pkey_fits(entry->pkey, entry->alg))
		{
			EVP_PKEY_free(entry->pkey);
			entry->pkey = NULL;
		}
		ERR_clear_error();
	}
	return found;
}

/*
 * The key registered under kid, copied into *key with its own reference
 * to the public key (the caller frees it with EVP_PKEY_free(): an
 * invalidation may drop the cache at any catalog access); false if none.
 */
static bool
lookup_key(Oid relid, const char *kid, KeyEntry *key)
{
	KeyEntry	row;
	KeyEntry   *entry;
	bool		found;
	int			tries;

	if (key_cache != NULL)
	{
		entry = hash_search(key_cache, kid, HASH_FIND, NULL);
		if (entry != NULL)
		{
			memcpy(key, entry, sizeof(KeyEntry));
			if (key->pkey)
				EVP_PKEY_up_ref(key->pkey);
			return true;
		}
	}
	/* As in apikey.c: read again until no invalidation arrived meanwhile. */
	for (tries = 0;; tries++)
	{
		uint64		generation = cache_generation;

		found = read_key(relid, kid, &row);
		AcceptInvalidationMessages();
		if (generation == cache_generation)
			break;
		if (found)
			EVP_PKEY_free(row.pkey);
		if (tries >= 10)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not read the token key registry while it keeps changing"),
					 errhint("Try again.")));
	}
	if (!found)
		return false;
	if (key_cache == NULL || hash_get_num_entries(key_cache) >= KG_TOKEN_KEY_CACHE_MAX)
	{
		HASHCTL		ctl;

		drop_key_cache();
		ctl.keysize = KG_TOKEN_KID_MAXLEN + 1;
		ctl.entrysize = sizeof(KeyEntry);
		ctl.hcxt = TopMemoryContext;
		key_cache = hash_create("keys_guard token keys", 16, &ctl,
								HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	entry = hash_search(key_cache, kid, HASH_ENTER, &found);
	memcpy(entry, &row, sizeof(KeyEntry));
	memcpy(key, &row, sizeof(KeyEntry));
	explicit_bzero(row.secret, sizeof(row.secret));
	if (key->pkey)
		EVP_PKEY_up_ref(key->pkey);
	return true;
}

static void
release_key(KeyEntry *key)
{
	EVP_PKEY_free(key->pkey);
	key->pkey = NULL;
	explicit_bzero(key->secret, sizeof(key->secret));
}

/* ---------------------------------------------------------------------
 * Signatures
 * ---------------------------------------------------------------------
 */

/* EVP_DigestVerify() of input with pkey and md (NULL for Ed25519). */
static bool
digest_verify(EVP_PKEY *pkey, const EVP_MD *md, const unsigned char *sig, size_t sig_len,
			  const unsigned char *input, size_t input_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok;

	ok = ctx != NULL &&
		EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1 &&
		EVP_DigestVerify(ctx, sig, sig_len, input, input_len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/*
 * Check sig over input with key; NULL if it holds, else the reason.
 * Nothing here throws: OpenSSL's objects are freed on every path.
 */
static const char *
check_signature(const KeyEntry *key, const unsigned char *input, size_t input_len,
				const unsigned char *sig, size_t sig_len)
{
	const char *reason = "bad signature";

	switch (key->alg)
	{
		case ALG_HS256:
			{
				unsigned char mac[EVP_MAX_MD_SIZE];
				unsigned int mac_len = 0;

				if (sig_len != 32)
					return "wrong signature length";
				if (key->secret_len >= KG_TOKEN_SECRET_MIN &&
					HMAC(EVP_sha256(), key->secret, (int) key->secret_len,
						 input, input_len, mac, &mac_len) != NULL &&
					mac_len == 32 && CRYPTO_memcmp(mac, sig, 32) == 0)
					reason = NULL;
				explicit_bzero(mac, sizeof(mac));
				break;
			}
		case ALG_RS256:
			if (key->pkey == NULL)
				return "key unusable";
			if (sig_len != (size_t) EVP_PKEY_get_size(key->pkey))
				return "wrong signature length";
			if (digest_verify(key->pkey, EVP_sha256(), sig, sig_len, input, input_len))
				reason = NULL;
			break;
		case ALG_ES256:
			{
				ECDSA_SIG  *esig;
				BIGNUM	   *r;
				BIGNUM	   *s;
				unsigned char *der = NULL;
				int			der_len = 0;

				if (key->pkey == NULL)
					return "key unusable";
				if (sig_len != 64)
					return "wrong signature length";

				/*
				 * JOSE's r || s (RFC 7518 §3.4), each 32 bytes big-endian,
				 * as the DER ECDSA-Sig-Value OpenSSL verifies: BN_bin2bn()
				 * reads leading zero bytes as the number they are, and DER
				 * encodes each integer minimally.
				 */
				esig = ECDSA_SIG_new();
				r = BN_bin2bn(sig, 32, NULL);
				s = BN_bin2bn(sig + 32, 32, NULL);
				if (esig != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(esig, r, s) == 1)
				{
					r = s = NULL;	/* owned by esig now */
					der_len = i2d_ECDSA_SIG(esig, &der);
				}
				if (der_len > 0 &&
					digest_verify(key->pkey, EVP_sha256(), der, der_len, input, input_len))
					reason = NULL;
				OPENSSL_free(der);
				BN_free(r);
				BN_free(s);
				ECDSA_SIG_free(esig);
				break;
			}
		case ALG_EDDSA:
			if (key->pkey == NULL)
				return "key unusable";
			if (sig_len != 64)
				return "wrong signature length";
			if (digest_verify(key->pkey, NULL, sig, sig_len, input, input_len))
				reason = NULL;
			break;
		default:
			return "key unusable";
	}
	ERR_clear_error();
	return reason;
}

/*
 * The parts of a compact JWS: header, payload and signature, each decoded;
 * and the signing input's length (header "." payload).  A reason if it is
 * not one.
 */
typedef struct Jws
{
	unsigned char *header;
	size_t		header_len;
	unsigned char *payload;
	size_t		payload_len;
	unsigned char *sig;
	size_t		sig_len;
	size_t		input_len;
	List	   *header_claims;
	char	   *kid;			/* NULL until known to be well formed */
} Jws;

static const char *
split_jws(const char *token, size_t len, Jws *jws)
{
	const char *dot1 = memchr(token, '.', len);
	const char *dot2;
	const char *end = token + len;
	bool		duplicate;
	const char *alg;

	memset(jws, 0, sizeof(Jws));
	if (len == 0)
		return "empty";
	if (dot1 == NULL || (dot2 = memchr(dot1 + 1, '.', end - dot1 - 1)) == NULL ||
		memchr(dot2 + 1, '.', end - dot2 - 1) != NULL)
		return "not three parts";
	if (!b64url_decode(token, dot1 - token, &jws->header, &jws->header_len) ||
		!b64url_decode(dot1 + 1, dot2 - dot1 - 1, &jws->payload, &jws->payload_len) ||
		!b64url_decode(dot2 + 1, end - dot2 - 1, &jws->sig, &jws->sig_len))
		return "bad base64url";
	jws->input_len = dot2 - token;
	if (non_ascii_in_non_utf8_db(jws->header, jws->header_len))
		return "non-ASCII claims in a database not in UTF-8";
	if (!parse_object(jws->header, jws->header_len, &jws->header_claims, &duplicate))
		return duplicate ? "duplicate header parameter" : "malformed header";
	if (find_claim(jws->header_claims, "alg") == NULL)
		return "missing alg";
	alg = string_claim(jws->header_claims, "alg");
	if (alg == NULL)
		return "malformed alg";
	if (pg_strcasecmp(alg, "none") == 0)
		return "alg none";
	/* RFC 7515 §4.1.11: extensions this code does not know must be refused. */
	if (find_claim(jws->header_claims, "crit") != NULL)
		return "crit header";
	if (find_claim(jws->header_claims, "kid") == NULL)
		return "missing kid";
	if (!kid_is_valid(string_claim(jws->header_claims, "kid")))
		return "malformed kid";
	jws->kid = pstrdup(string_claim(jws->header_claims, "kid"));
	return NULL;
}

/* ---------------------------------------------------------------------
 * set_context_from_token
 * ---------------------------------------------------------------------
 */

/* The claim settings, as one string: the token cache holds under them only. */
static char *
claim_settings(void)
{
	return psprintf("%s\x1f%s\x1f%s\x1f%s",
					keys_guard_token_issuer ? keys_guard_token_issuer : "",
					keys_guard_token_audience ? keys_guard_token_audience : "",
					keys_guard_token_tenant_claim ? keys_guard_token_tenant_claim : "",
					keys_guard_token_request_id_claim ? keys_guard_token_request_id_claim : "");
}

/* The claims of a verified payload into *out; a reason if they do not do. */
static const char *
read_claims(List *claims, TokenEntry *out)
{
	const char *s;
	Claim	   *claim;
	const char *tenant_claim = keys_guard_token_tenant_claim;
	const char *request_id_claim = keys_guard_token_request_id_claim;

	claim = find_claim(claims, "exp");
	if (claim == NULL)
		return "missing exp";
	if (!number_claim(claim, &out->exp))
		return "malformed exp";
	claim = find_claim(claims, "nbf");
	if (claim != NULL)
	{
		if (!number_claim(claim, &out->nbf))
			return "malformed nbf";
		out->has_nbf = true;
	}
	if (keys_guard_token_issuer && keys_guard_token_issuer[0])
	{
		s = string_claim(claims, "iss");
		if (s == NULL || strcmp(s, keys_guard_token_issuer) != 0)
			return "wrong issuer";
	}
	if (keys_guard_token_audience && keys_guard_token_audience[0])
	{
		bool		ok = false;

		claim = find_claim(claims, "aud");
		if (claim && claim->kind == CLAIM_STRING)
			ok = strcmp(claim->value, keys_guard_token_audience) == 0;
		else if (claim && claim->kind == CLAIM_ARRAY && claim->strings_only)
		{
			ListCell   *lc;

			foreach(lc, claim->strings)
				if (strcmp((char *) lfirst(lc), keys_guard_token_audience) == 0)
					ok = true;
		}
		if (!ok)
			return "wrong audience";
	}

	/* The tenant: a string, or a number (a tenant id of digits). */
	claim = find_claim(claims, tenant_claim && tenant_claim[0] ? tenant_claim : "project_id");
	if (claim == NULL)
		return "missing tenant claim";
	if ((claim->kind != CLAIM_STRING && claim->kind != CLAIM_NUMBER) ||
		!kg_tenant_id_is_valid(claim->value))
		return "malformed tenant claim";
	strlcpy(out->tenant, claim->value, sizeof(out->tenant));

	claim = find_claim(claims, "sub");
	if (claim == NULL)
		return "missing sub";
	if (claim->kind != CLAIM_STRING || !printable_text(claim->value, KG_ACTOR_MAXLEN))
		return "malformed sub";
	strlcpy(out->actor, claim->value, sizeof(out->actor));

	if (request_id_claim && request_id_claim[0] &&
		(claim = find_claim(claims, request_id_claim)) != NULL)
	{
		if (claim->kind != CLAIM_STRING || !printable_text(claim->value, KG_REQUEST_ID_MAXLEN))
			return "malformed request id claim";
		strlcpy(out->request_id, claim->value, sizeof(out->request_id));
	}

	/* scope: "read write" (RFC 8693 §4.2) or ["read", "write"]; absent: read. */
	claim = find_claim(claims, "scope");
	if (claim && claim->kind == CLAIM_STRING)
	{
		char	   *copy = pstrdup(claim->value);
		char	   *save = NULL;
		char	   *word;

		for (word = strtok_r(copy, " ", &save); word; word = strtok_r(NULL, " ", &save))
			if (strcmp(word, "write") == 0)
				out->write = true;
	}
	else if (claim && claim->kind == CLAIM_ARRAY && claim->strings_only)
	{
		ListCell   *lc;

		foreach(lc, claim->strings)
			if (strcmp((char *) lfirst(lc), "write") == 0)
				out->write = true;
	}
	else if (claim)
		return "malformed scope";
	return NULL;
}

/*
 * Verify token (len bytes) fully: NULL and *out filled, or the reason
 * (*kid then names the key when the header named a well-formed one).
 */
static const char *
verify_token(Oid relid, const char *token, size_t len, TokenEntry *out, char **kid)
{
	Jws			jws;
	KeyEntry	key;
	const char *reason;
	List	   *claims;
	bool		duplicate;

	*kid = NULL;
	reason = split_jws(token, len, &jws);
	if (reason)
		return reason;
	*kid = jws.kid;
	if (!lookup_key(relid, jws.kid, &key))
		return "unknown kid";
	if (key.state == STATE_REVOKED)
		reason = "revoked key";
	else if (key.alg == ALG_INVALID ||
			 strcmp(string_claim(jws.header_claims, "alg"), alg_names[key.alg]) != 0)
		reason = "algorithm mismatch";
	else
		reason = check_signature(&key, (const unsigned char *) token, jws.input_len,
								 jws.sig, jws.sig_len);
	release_key(&key);
	if (reason)
		return reason;

	if (non_ascii_in_non_utf8_db(jws.payload, jws.payload_len))
		return "non-ASCII claims in a database not in UTF-8";
	if (!parse_object(jws.payload, jws.payload_len, &claims, &duplicate))
		return duplicate ? "duplicate claim" : "malformed payload";
	memset(out, 0, sizeof(TokenEntry));
	strlcpy(out->kid, jws.kid, sizeof(out->kid));
	return read_claims(claims, out);
}

/*
 * Refuse a token: one message for every reason; the reason and the kid to
 * the server log and the audit log, never the token.
 */
static void
refuse_token(const char *reason, const char *kid)
{
	KgAuditDetail *detail = kg_audit_detail();

	kg_audit_detail_text(detail, "reason", reason);
	if (kid)
		kg_audit_detail_text(detail, "kid", kid);
	kg_audit_enqueue("token_use", kid, KG_OUTCOME_DENIED, detail);

	ereport(LOG,
			(errmsg("keys_guard: token refused"),
			 errdetail_log("Reason: %s; kid: %s.", reason, kid ? kid : "none")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("invalid token")));
}

/*
 * The context the last token set (its serial), and its kid: while that
 * context is in force, kg_token_context_kid() names the key (a write
 * refused under a read-only token is audited with it).
 */
static uint64 token_context_serial = 0;
static char token_context_kid[KG_TOKEN_KID_MAXLEN + 1];

static void
remember_token_context(const char *kid)
{
	token_context_serial = kg_context_serial();
	strlcpy(token_context_kid, kid, sizeof(token_context_kid));
}

/* The kid of the token whose context is in force, or NULL. */
const char *
kg_token_context_kid(void)
{
	if (token_context_serial == 0 || kg_context_serial() != token_context_serial)
		return NULL;
	return token_context_kid;
}

/*
 * keys_guard.set_context_from_token(token): the transaction-scoped context
 * a verified token names, for members of keys_guard_client,
 * keys_guard_gateway and keys_guard_admin.
 */
PG_FUNCTION_INFO_V1(keys_guard_set_context_from_token);
Datum
keys_guard_set_context_from_token(PG_FUNCTION_ARGS)
{
	text	   *arg;
	size_t		len;
	char	   *token;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	TokenEntry	verified;
	TokenEntry *entry = NULL;
	char	   *kid = NULL;
	const char *reason;
	char	   *settings;
	double		now;
	KgTenant   *tenant;
	Oid			relid;
	KgAuditDetail *detail;
	bool		verified_now = false;

	/* redact.c: no message shows the statement */
	kg_hot_state.secret_call_active = true;
	kg_require_preloaded();
	kg_refuse_keyholder("set_context_from_token");
	if (!kg_has_role(KG_ROLE_CLIENT) && !kg_has_role(KG_ROLE_GATEWAY) &&
		!kg_has_role(KG_ROLE_ADMIN))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to set a keys_guard context from a token"),
				 errdetail("Only members of %s, %s or %s can.",
						   KG_ROLE_CLIENT, KG_ROLE_GATEWAY, KG_ROLE_ADMIN)));
	if (!kg_extension_active())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"keys_guard\" is not installed in this database")));
	kg_require_complete_extension();
	relid = caches_begin();

	/* No token is a token refused like any other (the function is not STRICT). */
	if (PG_ARGISNULL(0))
		refuse_token("null", NULL);
	arg = PG_GETARG_TEXT_PP(0);
	len = VARSIZE_ANY_EXHDR(arg);
	if (len > KG_TOKEN_MAXLEN)
		refuse_token("oversized", NULL);

	/* The token cache holds under the claim settings it was made with. */
	settings = claim_settings();
	if (cache_settings == NULL || strcmp(settings, cache_settings) != 0)
	{
		drop_token_cache();
		if (cache_settings)
			pfree(cache_settings);
		cache_settings = MemoryContextStrdup(TopMemoryContext, settings);
	}

	kg_sha256(VARDATA_ANY(arg), len, digest);
	if (token_cache != NULL)
		entry = hash_search(token_cache, digest, HASH_FIND, NULL);
	if (entry != NULL)
		memcpy(&verified, entry, sizeof(TokenEntry));
	else
	{
		uint64		generation = cache_generation;

		verified_now = true;
		token = text_to_cstring(arg);
		if (strlen(token) != len)
			refuse_token("malformed", NULL);
		reason = verify_token(relid, token, len, &verified, &kid);
		if (reason)
		{
			explicit_bzero(token, len);
			refuse_token(reason, kid);
		}
		/* Keep it unless the registry changed while it was checked. */
		if (generation == cache_generation)
		{
			bool		found;

			if (token_cache == NULL || hash_get_num_entries(token_cache) >= KG_TOKEN_CACHE_MAX)
			{
				HASHCTL		ctl;

				drop_token_cache();
				ctl.keysize = PG_SHA256_DIGEST_LENGTH;
				ctl.entrysize = sizeof(TokenEntry);
				ctl.hcxt = TopMemoryContext;
				token_cache = hash_create("keys_guard verified tokens", 64, &ctl,
										  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
			}
			memcpy(verified.digest, digest, sizeof(digest));
			entry = hash_search(token_cache, digest, HASH_ENTER, &found);
			memcpy(entry, &verified, sizeof(TokenEntry));
		}
		explicit_bzero(token, len);
	}
	kid = verified.kid;

	/* The clock, at every use (RFC 7519 §4.1.4, §4.1.5). */
	now = (double) GetCurrentTimestamp() / USECS_PER_SEC + KG_UNIX_EPOCH_OFFSET;
	if (now >= verified.exp + keys_guard_token_leeway)
		refuse_token("expired", kid);
	if (verified.has_nbf && now + keys_guard_token_leeway < verified.nbf)
		refuse_token("not yet valid", kid);

	tenant = kg_tenant_by_id(verified.tenant);
	if (tenant == NULL || !OidIsValid(tenant->nspoid))
		refuse_token("unknown tenant", kid);
	if (!tenant->active)
		refuse_token("tenant deleted", kid);

	kg_apply_token_context(verified.tenant, verified.actor,
						   verified.request_id[0] ? verified.request_id : NULL,
						   !verified.write);
	remember_token_context(kid);

	/*
	 * A verification is audited; a later use of the same token by this
	 * backend (found in its cache) only when keys_guard.token_audit_each_use
	 * is on: an audit row per request would cost more than the check.
	 */
	if (verified_now || keys_guard_token_audit_each_use)
	{
		detail = kg_audit_detail();
		kg_audit_detail_text(detail, "kid", kid);
		kg_audit_detail_bool(detail, "write", verified.write);
		kg_audit_detail_bool(detail, "verified", verified_now);
		kg_audit_enqueue("token_use", kid, KG_OUTCOME_OK, detail);
	}
	kg_hot_state.secret_call_active = false;
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * Key management
 * ---------------------------------------------------------------------
 */

static void
require_token_admin(const char *funcname)
{
	if (kg_context_api_key(NULL) != NULL || !kg_has_role(KG_ROLE_ADMIN))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to call %s()", funcname),
				 errdetail("Token keys are managed by members of %s.", KG_ROLE_ADMIN)));
}

static void
check_kid(const char *kid)
{
	if (!kid_is_valid(kid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid kid"),
				 errdetail("A kid is 1 to %d printable ASCII characters.", KG_TOKEN_KID_MAXLEN)));
}

static KeyState
check_state(const char *state)
{
	KeyState	s = state_from_name(state);

	if (s == STATE_INVALID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid token key state"),
				 errhint("The states are current, standby, previous and revoked.")));
	return s;
}

typedef struct AddArgs
{
	char	   *kid;
	TokenAlg	alg;
	KeyState	state;
	bytea	   *secret;			/* HS256 */
	char	   *pem;			/* the others */
	char	   *fingerprint;
} AddArgs;

static void
add_internal(void *arg)
{
	AddArgs    *args = (AddArgs *) arg;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	KgAuditDetail *detail;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	if (SPI_execute_with_args("SELECT 1 FROM keys_guard.token_key WHERE kid = $1 FOR UPDATE",
							  1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(args->kid)},
							  NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: could not read the token key registry");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("token key \"%s\" already exists", args->kid),
				 errhint("A kid names one key for good; register the new key under a new kid.")));
	values[0] = CStringGetTextDatum(args->kid);
	values[1] = CStringGetTextDatum(alg_names[args->alg]);
	values[2] = args->secret ? PointerGetDatum(args->secret) : (Datum) 0;
	nulls[2] = args->secret ? ' ' : 'n';
	values[3] = args->pem ? CStringGetTextDatum(args->pem) : (Datum) 0;
	nulls[3] = args->pem ? ' ' : 'n';
	values[4] = args->fingerprint ? CStringGetTextDatum(args->fingerprint) : (Datum) 0;
	nulls[4] = args->fingerprint ? ' ' : 'n';
	values[5] = CStringGetTextDatum(state_names[args->state]);
	if (SPI_execute_with_args("INSERT INTO keys_guard.token_key (kid, alg, secret, public_key,"
							  " fingerprint, state, created_by, state_changed_by)"
							  " VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
							  7, (Oid[]) {TEXTOID, TEXTOID, BYTEAOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID},
							  (Datum[]) {values[0], values[1], values[2], values[3], values[4], values[5],
							  CStringGetTextDatum(kg_acting_person())},
							  (char[]) {nulls[0], nulls[1], nulls[2], nulls[3], nulls[4], nulls[5], ' '},
							  false, 0) != SPI_OK_INSERT)
		elog(ERROR, "keys_guard: could not register the token key");
	detail = kg_audit_detail();
	kg_audit_detail_text(detail, "kid", args->kid);
	kg_audit_detail_text(detail, "alg", alg_names[args->alg]);
	kg_audit_detail_text(detail, "state", state_names[args->state]);
	if (args->fingerprint)
		kg_audit_detail_text(detail, "fingerprint", args->fingerprint);
	kg_audit_write("add_token_key", args->kid, KG_OUTCOME_OK, detail);
	SPI_finish();
}

/*
 * keys_guard.add_token_key(kid, alg, key, state): register a key.  The
 * key text is never echoed, in a message or anywhere else (an HS256
 * secret is a secret; redact.c keeps this call's arguments out of the
 * server log).
 */
PG_FUNCTION_INFO_V1(keys_guard_add_token_key);
Datum
keys_guard_add_token_key(PG_FUNCTION_ARGS)
{
	AddArgs		args;
	char	   *alg;
	char	   *key;
	size_t		key_len;

	/* redact.c: no message shows the statement */
	kg_hot_state.secret_call_active = true;
	kg_require_preloaded();
	require_token_admin("add_token_key");
	memset(&args, 0, sizeof(args));
	args.kid = kg_required_text_arg(fcinfo, 0, "kid");
	alg = kg_required_text_arg(fcinfo, 1, "alg");
	key = kg_required_text_arg(fcinfo, 2, "key");
	args.state = check_state(kg_required_text_arg(fcinfo, 3, "state"));
	check_kid(args.kid);
	args.alg = alg_from_name(alg);
	if (args.alg == ALG_INVALID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unsupported token algorithm"),
				 errhint("The algorithms are HS256, RS256, ES256 and EdDSA.")));
	if (args.state == STATE_REVOKED)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a new token key cannot be revoked"),
				 errhint("Register it as current, standby or previous.")));
	key_len = strlen(key);
	if (key_len > KG_TOKEN_KEY_TEXT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s key", alg_names[args.alg]),
				 errdetail("A key's text is at most %d bytes.", KG_TOKEN_KEY_TEXT_MAX)));
	if (args.alg == ALG_HS256)
	{
		size_t		len;
		unsigned char *secret = parse_secret(key, &len);

		args.secret = palloc(VARHDRSZ + len);
		SET_VARSIZE(args.secret, VARHDRSZ + len);
		memcpy(VARDATA(args.secret), secret, len);
		explicit_bzero(secret, len);
	}
	else
	{
		EVP_PKEY   *pkey = parse_public_key(key, args.alg);

		describe_public_key(pkey, &args.pem, &args.fingerprint);
		EVP_PKEY_free(pkey);
	}
	explicit_bzero(key, key_len);
	token_key_relid();
	kg_require_complete_extension();
	kg_run_internal(add_internal, &args, false);
	if (args.secret)
		explicit_bzero(VARDATA(args.secret), VARSIZE(args.secret) - VARHDRSZ);
	kg_hot_state.secret_call_active = false;
	PG_RETURN_VOID();
}

typedef struct StateArgs
{
	char	   *kid;
	KeyState	state;
} StateArgs;

static void
state_internal(void *arg)
{
	StateArgs  *args = (StateArgs *) arg;
	KeyState	old;
	bool		isnull;
	KgAuditDetail *detail;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "keys_guard: SPI_connect failed");
	if (SPI_execute_with_args("SELECT state FROM keys_guard.token_key WHERE kid = $1 FOR UPDATE",
							  1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(args->kid)},
							  NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "keys_guard: could not read the token key registry");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token key \"%s\" does not exist", args->kid),
				 errhint("keys_guard.token_keys lists the keys.")));
	old = state_from_name(TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc, 1, &isnull)));
	if (old == args->state)
	{
		SPI_finish();
		return;
	}
	if (old == STATE_REVOKED)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("token key \"%s\" is revoked", args->kid),
				 errdetail("A revoked key is never reinstated."),
				 errhint("Register a new key with keys_guard.add_token_key().")));
	if (SPI_execute_with_args("UPDATE keys_guard.token_key SET state = $2,"
							  " state_changed_at = now(), state_changed_by = $3 WHERE kid = $1",
							  3, (Oid[]) {TEXTOID, TEXTOID, TEXTOID},
							  (Datum[]) {CStringGetTextDatum(args->kid),
								  CStringGetTextDatum(state_names[args->state]),
							  CStringGetTextDatum(kg_acting_person())},
							  NULL, false, 0) != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "keys_guard: could not change the token key's state");
	detail = kg_audit_detail();
	kg_audit_detail_text(detail, "kid", args->kid);
	kg_audit_detail_text(detail, "from", state_names[old]);
	kg_audit_detail_text(detail, "to", state_names[args->state]);
	kg_audit_write("set_token_key_state", args->kid, KG_OUTCOME_OK, detail);
	SPI_finish();
}

/*
 * keys_guard.set_token_key_state(kid, state): move a key between current,
 * standby and previous, or revoke it (for good).  Idempotent.
 */
PG_FUNCTION_INFO_V1(keys_guard_set_token_key_state);
Datum
keys_guard_set_token_key_state(PG_FUNCTION_ARGS)
{
	StateArgs	args;

	kg_require_preloaded();
	require_token_admin("set_token_key_state");
	args.kid = kg_required_text_arg(fcinfo, 0, "kid");
	args.state = check_state(kg_required_text_arg(fcinfo, 1, "state"));
	token_key_relid();
	kg_require_complete_extension();
	kg_run_internal(state_internal, &args, false);
	PG_RETURN_VOID();
}

/*
 * keys_guard._verify_token_signature(kid, token) RETURNS boolean: whether
 * token's signature holds under the key registered as kid (not revoked,
 * the header's alg that key's), whatever its claims.  For tests of the
 * signature algorithms with published vectors, whose tokens carry no kid
 * and expired long ago; administrators only, and it returns nothing but
 * the answer.
 */
PG_FUNCTION_INFO_V1(keys_guard_verify_token_signature);
Datum
keys_guard_verify_token_signature(PG_FUNCTION_ARGS)
{
	char	   *kid;
	text	   *arg;
	size_t		len;
	char	   *token;
	const char *dot1;
	const char *dot2;
	unsigned char *header;
	unsigned char *sig;
	size_t		header_len;
	size_t		sig_len;
	List	   *header_claims;
	bool		duplicate;
	const char *alg;
	KeyEntry	key;
	Oid			relid;
	bool		ok = false;

	kg_require_preloaded();
	require_token_admin("_verify_token_signature");
	kid = kg_required_text_arg(fcinfo, 0, "kid");
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("token must not be null")));
	relid = caches_begin();
	arg = PG_GETARG_TEXT_PP(1);
	len = VARSIZE_ANY_EXHDR(arg);
	if (len > KG_TOKEN_MAXLEN)
		PG_RETURN_BOOL(false);
	token = text_to_cstring(arg);
	if (strlen(token) != len || !kid_is_valid(kid) ||
		(dot1 = strchr(token, '.')) == NULL || (dot2 = strchr(dot1 + 1, '.')) == NULL ||
		strchr(dot2 + 1, '.') != NULL ||
		!b64url_decode(token, dot1 - token, &header, &header_len) ||
		!b64url_decode(dot2 + 1, strlen(dot2 + 1), &sig, &sig_len) ||
		!parse_object(header, header_len, &header_claims, &duplicate) ||
		(alg = string_claim(header_claims, "alg")) == NULL)
		PG_RETURN_BOOL(false);
	if (!lookup_key(relid, kid, &key))
		PG_RETURN_BOOL(false);
	if (key.state != STATE_REVOKED && key.alg != ALG_INVALID &&
		strcmp(alg, alg_names[key.alg]) == 0)
		ok = check_signature(&key, (const unsigned char *) token, dot2 - token,
							 sig, sig_len) == NULL;
	release_key(&key);
	PG_RETURN_BOOL(ok);
}
