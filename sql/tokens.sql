--
-- tokens: verified tokens (docs/contract.md §17).  The published vectors
-- of RFC 7515 appendix A (HS256, RS256, ES256) and RFC 8037 A.4 (Ed25519)
-- verify; keys as JWK and PEM; every attack class of RFC 8725 is refused
-- with 28000 "invalid token"; claims, settings, the read-only regime, key
-- rotation and revocation, audit without the token, the registry's
-- protection.
--
-- The test tokens were signed once with throw-away keys (their private
-- halves were never kept); they expire in 2100.
--
\set SHOW_CONTEXT never
\i sql/fixture.psql
SET client_min_messages = warning;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kg_tok_client') THEN
        CREATE ROLE kg_tok_client LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kg_tok_tool') THEN
        CREATE ROLE kg_tok_tool LOGIN;
    END IF;
END
$$;
GRANT keys_guard_client TO kg_tok_client;
GRANT keys_guard_keyholder, keys_guard_client TO kg_tok_tool;
SELECT id FROM keys_guard.create_tenant('tokens');
SELECT id FROM keys_guard.create_tenant('tokens_other');
SELECT id FROM keys_guard.create_tenant('tokens_gone');
CREATE TABLE IF NOT EXISTS tenant_tokens.items (id int PRIMARY KEY, label text);
CREATE TABLE IF NOT EXISTS tenant_tokens_other.items (id int PRIMARY KEY, label text);
BEGIN;
SELECT keys_guard.set_context('tokens', 'setup');
INSERT INTO tenant_tokens.items VALUES (1, 'one') ON CONFLICT DO NOTHING;
COMMIT;
GRANT USAGE ON SCHEMA tenant_tokens, tenant_tokens_other TO keys_guard_client;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_tokens.items, tenant_tokens_other.items TO keys_guard_client;
CREATE SEQUENCE IF NOT EXISTS public.tokens_seq;
GRANT USAGE ON SEQUENCE public.tokens_seq TO keys_guard_client;
RESET client_min_messages;

--
-- 1. The published vectors.  Their tokens have no kid and expired in 2011,
-- so they are checked with _verify_token_signature() under keys
-- registered for them (as JWK, as published).
--
\set a1 'eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'
\set a2 'eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw'
\set a3 'eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q'
\set a4 'eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg'
SELECT keys_guard.add_token_key('rfc7515-a1', 'HS256',
  '{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}');
SELECT keys_guard.add_token_key('rfc7515-a2', 'RS256',
  '{"kty":"RSA","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ","e":"AQAB"}');
SELECT keys_guard.add_token_key('rfc7515-a3', 'ES256',
  '{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}');
SELECT keys_guard.add_token_key('rfc8037-a4', 'EdDSA',
  '{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}');
SELECT keys_guard._verify_token_signature('rfc7515-a1', :'a1') AS a1_hs256,
       keys_guard._verify_token_signature('rfc7515-a2', :'a2') AS a2_rs256,
       keys_guard._verify_token_signature('rfc7515-a3', :'a3') AS a3_es256,
       keys_guard._verify_token_signature('rfc8037-a4', :'a4') AS a4_eddsa;
-- One changed byte of the signing input, or of the signature, and none does.
SELECT keys_guard._verify_token_signature('rfc7515-a1', replace(:'a1', 'eyJpc3MiOiJqb2Ui', 'eyJpc3MiOiJqb2Ii')) AS a1_payload,
       keys_guard._verify_token_signature('rfc7515-a2', overlay(:'a2' placing 'd' from length(:'a2') - 5 for 1)) AS a2_sig,
       keys_guard._verify_token_signature('rfc7515-a3', overlay(:'a3' placing 'E' from length(:'a3') - 3 for 1)) AS a3_sig,
       keys_guard._verify_token_signature('rfc8037-a4', replace(:'a4', 'RXhhbXBsZSBv', 'RXhhbXBsZSBw')) AS a4_payload;
-- The algorithm is the key's: each vector under another vector's key is false.
SELECT keys_guard._verify_token_signature('rfc7515-a2', :'a1') AS hs_under_rsa,
       keys_guard._verify_token_signature('rfc7515-a1', :'a2') AS rsa_under_hs,
       keys_guard._verify_token_signature('rfc8037-a4', :'a3') AS es_under_ed;
-- ... and set_context_from_token() refuses them: no kid, long expired.
SELECT try($$SELECT keys_guard.set_context_from_token('$$ || :'a3' || $$')$$);

--
-- 2. Registering keys: PEM and JWK, checked against the algorithm; the
-- secret is never shown.
--
SELECT keys_guard.add_token_key('test-es', 'ES256', '-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXaCgnCy4Mz2B3TuFv+zY69KHHVAv
jasY7PdIHHoCuNpGIFKwlmpYPOK/byFKBYE5vHLTmzCYfV9RWyGvWx0tNA==
-----END PUBLIC KEY-----
');
SELECT keys_guard.add_token_key('test-rs', 'RS256', '-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtiapHk7zcPjlsSOlsHla
VpeXaQGSRfCk/16p62B+Nt5nhrioSJ0bdyr+/2a0JFWSUtWwkAZZtF3rns0/VEuP
U64O1A+hxiBGohc9Lg9zYIFLh/flZBX6RmC8Fy8ImrgU98/CbiU1f0reTJ3283Za
f0j9sFsVkR1Lm88zynBkmkoH8+OpZ+HFvciXx3YeOG93AnunqdZAaAD2ro/+UavL
vcafvJaQqGLar6FXbs/rsORKQQCpMYQ3yvH7NokTKxvOmfYc6hIIZoJ5AYLWi10p
Pr5tgYg8gcnWpsiUT+wiNwvNRFv8INSxXW16OvgEkaK2LxAWTVO8+prKWO8qsjYD
EQIDAQAB
-----END PUBLIC KEY-----
');
SELECT keys_guard.add_token_key('test-ed', 'EdDSA', '-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAt1ZqyzT/dBCv3vui5agrVV9as27MQzwCP0hPRT+Y9pY=
-----END PUBLIC KEY-----
');
SELECT keys_guard.add_token_key('test-rv', 'ES256', '-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEF6rstKDIwTkP3lWGW4zxnWab9z0w
/gcx9Y91aVabNHV1er4p9hp9HGbo4PXNv1zS/9sMRlqmkIILAns2TypLCg==
-----END PUBLIC KEY-----
');
SELECT keys_guard.add_token_key('test-sb', 'ES256', '-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXaEr/7NEXuHd9516ufsT1BRxRs23
+8uViZ6gRWzr9MjuFDl4ISdoPqYLgX32k8g8rSt9j1Llr28SOxWoTYfjxQ==
-----END PUBLIC KEY-----
', 'standby');
\set hs_secret 'kg-test-hs256-secret-0123456789abcdefghijklmnop'
SELECT keys_guard.add_token_key('test-hs', 'HS256', :'hs_secret');
SELECT kid, alg, state, public_key IS NOT NULL AS has_public_key,
       fingerprint ~ '^[0-9a-f]{64}$' AS fingerprint
  FROM keys_guard.token_keys WHERE kid LIKE 'test-%' OR kid LIKE 'rfc%' ORDER BY kid;
-- The view has no column that could hold the secret.
SELECT attname FROM pg_attribute
 WHERE attrelid = 'keys_guard.token_keys'::regclass AND attnum > 0 ORDER BY attnum;
-- Refusals: each 22023 (or 42710, 22004), none echoes the key.
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'ES256', '-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtiapHk7zcPjlsSOlsHla
VpeXaQGSRfCk/16p62B+Nt5nhrioSJ0bdyr+/2a0JFWSUtWwkAZZtF3rns0/VEuP
U64O1A+hxiBGohc9Lg9zYIFLh/flZBX6RmC8Fy8ImrgU98/CbiU1f0reTJ3283Za
f0j9sFsVkR1Lm88zynBkmkoH8+OpZ+HFvciXx3YeOG93AnunqdZAaAD2ro/+UavL
vcafvJaQqGLar6FXbs/rsORKQQCpMYQ3yvH7NokTKxvOmfYc6hIIZoJ5AYLWi10p
Pr5tgYg8gcnWpsiUT+wiNwvNRFv8INSxXW16OvgEkaK2LxAWTVO8+prKWO8qsjYD
EQIDAQAB
-----END PUBLIC KEY-----
')$$) AS rsa_as_es256;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'EdDSA', '-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXaCgnCy4Mz2B3TuFv+zY69KHHVAv
jasY7PdIHHoCuNpGIFKwlmpYPOK/byFKBYE5vHLTmzCYfV9RWyGvWx0tNA==
-----END PUBLIC KEY-----
')$$) AS ec_as_eddsa;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'RS256', '-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAt1ZqyzT/dBCv3vui5agrVV9as27MQzwCP0hPRT+Y9pY=
-----END PUBLIC KEY-----
')$$) AS ed_as_rs256;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS256', 'too-short-secret')$$) AS short_secret;
-- An HS256 "secret" that is a public key's text (algorithm confusion moved
-- into the registry: anyone could sign with it): PEM, its body, its DER in
-- a JWK's k, a JWK with a public key's members.
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS256', '-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAt1ZqyzT/dBCv3vui5agrVV9as27MQzwCP0hPRT+Y9pY=
-----END PUBLIC KEY-----
')$$) AS hs_public_pem;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS256', 'MCowBQYDK2VwAyEAt1ZqyzT/dBCv3vui5agrVV9as27MQzwCP0hPRT+Y9pY=')$$) AS hs_pem_body;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS256', 'MCowBQYDK2VwAyEAt1ZqyzT_dBCv3vui5agrVV9as27MQzwCP0hPRT-Y9pY')$$) AS hs_der_base64url;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS256', '{"kty":"oct","k":"MCowBQYDK2VwAyEAt1ZqyzT_dBCv3vui5agrVV9as27MQzwCP0hPRT-Y9pY"}')$$) AS hs_jwk_der;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS256', '{"kty":"oct","k":"LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUNvd0JRWURLMlZ3QXlFQXQxWnF5elQvZEJDdjN2dWk1YWdyVlY5YXMyN01RendDUDBoUFJUK1k5cFk9Ci0tLS0tRU5EIFBVQkxJQyBLRVktLS0tLQo"}')$$) AS hs_jwk_pem;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS256', '{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}')$$) AS hs_jwk_public_members;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS256', '{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}')$$) AS hs_jwk_okp;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'none', 'x')$$) AS alg_none;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS512', 'x')$$) AS alg_other;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'ES256', 'not a key')$$) AS garbage;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'ES256', '{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1"}')$$) AS off_curve;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'EdDSA', '{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}')$$) AS private_jwk;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'RS256', '{"kty":"RSA","n":"AQAB","e":"AQAB"}')$$) AS small_rsa;
-- Ed25519 points of small order (with one, anyone forges a signature: the
-- identity 01 00..00 verifies 01 00..00 || 00..00 over any message), also
-- with x's sign bit set, as PEM, and encodings of y >= p: refused.
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'EdDSA', '{"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}')$$) AS ed_identity;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'EdDSA', '{"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA"}')$$) AS ed_identity_signed;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'EdDSA', '-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAxxdqcD1N2E+6PAt2DRBnDyogU/osOczGTsf9d5KsA3o=
-----END PUBLIC KEY-----
')$$) AS ed_order_8_pem;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'EdDSA', '{"kty":"OKP","crv":"Ed25519","x":"7f_______________________________________38"}')$$) AS ed_y_is_p;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'EdDSA', '{"kty":"OKP","crv":"Ed25519","x":"8P________________________________________8"}')$$) AS ed_y_above_p;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'RS256', '{"kty":"RSA","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ","e":"AQ"}')$$) AS rsa_exponent_1;
SELECT try($$SELECT keys_guard.add_token_key('test-es', 'HS256', repeat('s', 40))$$) AS duplicate_kid;
SELECT try($$SELECT keys_guard.add_token_key(repeat('k', 129), 'HS256', repeat('s', 40))$$) AS long_kid;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS256', NULL)$$) AS null_key;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS256', repeat('s', 40), 'revoked')$$) AS born_revoked;
SELECT count(*) AS test_x_keys FROM keys_guard.token_keys WHERE kid = 'test-x';
-- Only administrators manage keys.
SET ROLE kg_app;
SELECT try($$SELECT keys_guard.add_token_key('test-x', 'HS256', repeat('s', 40))$$) AS gateway;
SELECT try($$SELECT * FROM keys_guard.token_keys$$) AS gateway_view;
RESET ROLE;
SET ROLE kg_tok_client;
SELECT try($$SELECT keys_guard.set_token_key_state('test-es', 'revoked')$$) AS client;
SELECT try($$SELECT keys_guard._verify_token_signature('rfc7515-a3', 'x.y.z')$$) AS client_verify;
RESET ROLE;
-- The registry changes only through these functions, superusers included.
SELECT try($$UPDATE keys_guard.token_key SET state = 'current' WHERE kid = 'test-es'$$) AS direct_update;
SELECT try($$INSERT INTO keys_guard.token_key (kid, alg, secret, state, created_by, state_changed_by) VALUES ('test-y', 'HS256', '\x00', 'current', 'x', 'x')$$) AS direct_insert;
SELECT try($$DELETE FROM keys_guard.token_key$$) AS direct_delete;
SELECT try($$TRUNCATE keys_guard.token_key$$) AS direct_truncate;
SET ROLE kg_migrator;
SELECT try($$SELECT secret FROM keys_guard.token_key$$) AS admin_reads_table;
RESET ROLE;

--
-- 3. A context from a token.
--
\set es_read 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQifQ.53s_Ia80rr-NgojPYepskMpx_mbevYIVLvxHsmSsJxG90Mpn7bW_bCFUYzwR5WlErrNexlwDC-2HmLqeYNS-KQ'
\set es_write 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQgd3JpdGUifQ.2Lws4POXdb7MGsSkeU8iVu4G6gd35YL0CFvkpoo6a2VWoybvRu3xEd_HkXQ9YOddM7VSRRg2mfPkCdCCDXotBQ'
\set es_noscope 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwfQ.NvHIWAEbgSaRB_tWDuVY5pxONYD4GzFP_PJzYJjqcSMLqOlVVAgOXvlWERJZab3CnxoVmcKW9bZVRYYAYJ9DIQ'
\set hs_write 'eyJhbGciOiJIUzI1NiIsImtpZCI6InRlc3QtaHMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6WyJyZWFkIiwid3JpdGUiXX0.SB5-_NQe4HqZGUeo9bxIVQgY-LIyi-L1e2i0sTUUxSQ'
\set rs_read 'eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QtcnMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQifQ.aDaWiO8_1DMlNEsh8ZwujUlBM3x23LnUzHdMMawO2__eTRlaol8aeaalqsb144JeAq5inuoqBBU5kSEvahN2yCVAZPjwKvxKRhpVYJksDxJUHWcbCve4_shhPGk10miJNE6zXsmkpV4hwwD9xbq-PMi8_Ep5Lu8vLetVBd8GASXgG8kIwetZ2KRA8rD34x7Iaw2V8K5jc9ZPG_X8XvPqzDYzkdVwY57W35Sq9Uufn3Iu9bk5QyoZabpz0NqZJ15piJZsT7MJZm6g6WtkUc---s2uCkK_6PLgb3jUoUgzhx4_NIS36cXOBCYS0QngyjzddvjbTUZuI9EZcVEve3idbQ'
\set ed_read 'eyJhbGciOiJFZERTQSIsImtpZCI6InRlc3QtZWQifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQifQ.2vZOfuojIHOlXja_SXSAsQxxbukANIhY22vs_bvKrEmR2zJs23lC-1u_72qYGdJ2zD8jYoo8b5sWI0th6crVAw'
\set rv_read 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtcnYifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQifQ.vOWtZC-L3ZQps8l34-cYS-e6enVe9tWGoTBWFlsrC2a870QknoVnK799fB69R4NKnSw2VujMJffFT6L0171Xew'
\set sb_read 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3Qtc2IifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQifQ.rJCu6PGuEd0wPWsLbSP7bGii7XdBv4IyAq95zwxcCK7UO5wKriB_relIYxZfp1aUGkzaOv-qX4M5p9BLkgbQyw'
\set lead0_r 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQiLCJuIjoiciIsIm5vbmNlIjoiYmEyZmIxYTNmOWQzIn0.AF-QUyu_OgI_gQVpj6HFLX2DFJMhhBS9IGadT4SIAhGnkTAgEkBUlAw1OucMYoFtjKazMEv83Gm6Hi3QCf0Wyw'
\set lead0_s 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQiLCJuIjoicyIsIm5vbmNlIjoiMzk3NDRhZjE3ZGZlIn0.76k4EUoQQlWwYf6Re1Oc2E5JBgXyXkI50Q0iZG-VAfoAiTOQewCB3bwUWVy-XbxHyZ3_hpgf_Z6rkIuoDMdOmw'
\set nbf_ok 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJuYmYiOjEzMDA4MTkzODB9.xKLq3e8YfNdoevyWezK6Us-QXs4YCjhoQAmQ_CwogLJJyt-sE1iTdLscvZWz_GGxwQGDVNNDCykeGPY5SPuavw'
\set iss_aud 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0IiwiYXVkIjpbIm90aGVyIiwia2ctYXBpIl0sInJpZCI6InJlcS00MiIsInRpZCI6InRva2Vuc19vdGhlciJ9.i1G2sqSt7joq742k3_cU7sP3roGgvOGZc5D7ycDjn9C7Lfg_4e1YURQBzC9Qd84nVUpEMFZGb7Q5aXc0in6LGA'
\set iss_aud_str 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0IiwiYXVkIjoia2ctYXBpIn0.oORMIOln8NJhFOjaasWzIgYIg4XhHsBqyy6cbdVZaZB2VjDSW5854Y7vMZS6pj80BovG7fnGRAhhgxNRAMzbig'
\set iss_wrong 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJpc3MiOiJodHRwczovL2V2aWwudGVzdCIsImF1ZCI6ImtnLWFwaSJ9.jNq5NnM2JewOExJ4lpCfSnwPMMfrrATnMSmikEn0sb5WQsztj9LelpiLUPMWQWWTSZYkgi9lATDV1JEUJkf3SA'
\set aud_wrong 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0IiwiYXVkIjpbIm90aGVyIl19.SDefYbWB-ftTTaR7okBZA3n98appP1VYP-_8Do2Q-B_u4PZu1L_I_YyTraIyDpIRZjuZwSKyrbGLzNqA4Jnjzg'
\set other_tenant 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zX290aGVyIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQgd3JpdGUifQ.7vyIe41hvEODi6HHB32pRM6MhqXRt79-1JVwtkcXsHFdWi4M-sQtdw7aqMid6_mssqqEi-e13cNMn_vRnS3EtA'
SET ROLE kg_tok_client;
BEGIN;
SELECT keys_guard.set_context_from_token(:'es_read');
SELECT keys_guard.current_tenant(), keys_guard.current_actor(),
       keys_guard.current_request_id() ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS generated_request_id;
SELECT id, label FROM tenant_tokens.items ORDER BY id;
COMMIT;
SELECT keys_guard.current_tenant() AS after_commit;
-- Every algorithm, each key format; ES256 signatures whose r or s starts
-- with a zero byte; a nbf in the past.
CREATE FUNCTION pg_temp.ctx(token text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM keys_guard.set_context_from_token(token);
    RETURN keys_guard.current_tenant() || ' ' || keys_guard.current_actor();
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;
BEGIN;
SELECT pg_temp.ctx(:'hs_write') AS hs256, pg_temp.ctx(:'rs_read') AS rs256,
       pg_temp.ctx(:'ed_read') AS eddsa, pg_temp.ctx(:'es_write') AS es256;
SELECT pg_temp.ctx(:'lead0_r') AS r_leading_zero, pg_temp.ctx(:'lead0_s') AS s_leading_zero,
       pg_temp.ctx(:'nbf_ok') AS nbf_past;
-- A standby key verifies (published ahead of a rotation).
SELECT pg_temp.ctx(:'sb_read') AS standby;
COMMIT;
-- Another tenant's token gives that tenant: the connection acts only for
-- the tenant a valid token names.
BEGIN;
SELECT keys_guard.set_context_from_token(:'other_tenant');
SELECT keys_guard.current_tenant();
SELECT try($$SELECT count(*) FROM tenant_tokens.items$$) AS other_tenants_table;
COMMIT;

--
-- 4. The read-only regime: a token without "write" in its scope changes
-- nothing, by any path; with it, rows change.
--
BEGIN;
SELECT keys_guard.set_context_from_token(:'es_read');
SELECT try($$INSERT INTO tenant_tokens.items VALUES (2, 'two')$$) AS insert_read;
SELECT try($$UPDATE tenant_tokens.items SET label = 'x'$$) AS update_read;
SELECT try($$DELETE FROM tenant_tokens.items$$) AS delete_read;
SELECT try($$SELECT * FROM tenant_tokens.items FOR UPDATE$$) AS for_update_read;
SELECT try($$CREATE TEMP TABLE t_tok (x int)$$) AS temp_table_read;
SELECT try($$SELECT pg_advisory_xact_lock(1)$$) AS advisory_read;
SELECT try($$SET transaction_read_only = off$$) AS read_write_read;
SELECT try($$SELECT set_config('keys_guard.token_leeway', '0', true)$$) AS set_config_read;
SELECT try($$COPY tenant_tokens.items FROM PROGRAM 'true'$$) AS copy_from_read;
SELECT try($$SELECT nextval('public.tokens_seq')$$) AS nextval_read;
SELECT try($$SELECT lo_create(0)$$) AS lo_create_read;
SELECT try($$NOTIFY tokens_channel$$) AS notify_read;
SELECT try($$LOCK tenant_tokens.items IN EXCLUSIVE MODE$$) AS lock_read;
SELECT try($$TRUNCATE tenant_tokens.items$$) AS truncate_read;
SELECT try($$DO 'BEGIN NULL; END'$$) AS do_read;
SELECT try($$RESET ALL$$) AS reset_all_read;
COMMIT;
BEGIN;
SELECT keys_guard.set_context_from_token(:'es_noscope');
SELECT try($$INSERT INTO tenant_tokens.items VALUES (2, 'two')$$) AS insert_no_scope;
COMMIT;
BEGIN;
SELECT keys_guard.set_context_from_token(:'es_read');
SELECT count(*) AS rows_unchanged FROM tenant_tokens.items;
COMMIT;
BEGIN;
SELECT keys_guard.set_context_from_token(:'es_write');
INSERT INTO tenant_tokens.items VALUES (2, 'two');
UPDATE tenant_tokens.items SET label = 'deux' WHERE id = 2;
DELETE FROM tenant_tokens.items WHERE id = 2;
SELECT count(*) AS rows_after_write FROM tenant_tokens.items;
-- A read token later in the same transaction closes it again.
SELECT keys_guard.set_context_from_token(:'es_read');
SELECT try($$INSERT INTO tenant_tokens.items VALUES (3, 'three')$$) AS insert_after_read;
COMMIT;
-- HS256 with scope as an array.
BEGIN;
SELECT keys_guard.set_context_from_token(:'hs_write');
INSERT INTO tenant_tokens.items VALUES (4, 'four');
DELETE FROM tenant_tokens.items WHERE id = 4;
COMMIT;
RESET ROLE;

--
-- 5. Every failure is 28000 "invalid token".
--
\set alg_none 'eyJhbGciOiJub25lIiwia2lkIjoidGVzdC1lcyJ9.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQgd3JpdGUifQ.'
\set alg_none_sig 'eyJhbGciOiJub25lIiwia2lkIjoidGVzdC1lcyJ9.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQgd3JpdGUifQ.eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA'
\set confusion 'eyJhbGciOiJIUzI1NiIsImtpZCI6InRlc3QtcnMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQgd3JpdGUifQ.tRznu8qpCHnOwz0jul-K-a0Td6Kv_sEAcmuosdyoZSs'
\set alg_other 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtcnMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwfQ.UCwQuBZgfjfv1QonZUl7XQIUbtW9Rxsp5dyXTsHnHN2kDZdVUFwvj7VosykfJQBwwBgf5_MrfgW2sC-sTST_8g'
\set unknown_kid 'eyJhbGciOiJFUzI1NiIsImtpZCI6Im5vLXN1Y2gta2lkIn0.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwfQ.spIsnVtEsg9l09Mir1EnKEmW-1ULFwmLJbaQjS2oXrNJG3ktg9f0YHZUInRFquUi8kpumRlLcl0dVGUZ6gvR0g'
\set missing_kid 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwfQ.4jn0uuO80rVTnQmYVEnemaNHe-pk_0jLxDSMz16Zr-_fqvSz23Y3FiepGxJGa03CMV-9SUPrMWV33HGoP3O6aA'
\set missing_alg 'eyJraWQiOiJ0ZXN0LWVzIn0.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwfQ.MSg0nOt9CTcuGr3djqZeH1ue13rKy9btkIPrb_Ek2T05_fikkJ8ARP3ztL5Cl5DYvHJCWyBgK-TIyQ01OTjYBw'
\set expired 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjoxMzAwODE5MzgwfQ.abGFr6buR0Z2y5AjRCIg-iavxG4gie0sRnvf4i6C35tWDxcGoVNq16UeBXwxLm-CaUpcFAWCV_TgENzR34UoOw'
\set not_yet 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJuYmYiOjQwMDAwMDAwMDB9.yPfGZT13V7RYFUYhWqNVfPIlyutNuy1SrMuptNP6lZrJlvtgNNvfEDCkLdecd5AEZrmTDaiv19FuoLTq031tHw'
\set no_exp 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIn0.PrQHWzaxAnM8hF9UX9vawXjK2gHJ9_5uAItphewYUV5Dn4qfFbXkd65vsUT_FI48CK4-diVqM8F4CMMUt3nAeA'
\set exp_string 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjoiNDEwMjQ0NDgwMCJ9.e0-5mDi8vxyD9S3leOzaEimJLnVaWJy8RgzhFlqv6TTHp9hFdCw8aJBeusejSjjWl3Gj01FpIEje6ob-HE30ag'
\set dup_claim 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwicHJvamVjdF9pZCI6ImFjbWUiLCJleHAiOjQxMDI0NDQ4MDB9.jbg3ofu2tdpyDdxxkx4oHnU5z3u0wxLnq-9ME0OHz5V3f7RqbKiU0pFTZCPWpqzYAGGiqL6gOtJdG6odTd6rQQ'
\set dup_escaped 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwicHJvamVjdFx1MDA1ZmlkIjoiYWNtZSIsImV4cCI6NDEwMjQ0NDgwMH0.otNeggyxQtNvggobtDojpVYlgComer9UsD0vwWbgSCIpmO5GkuSmVxeo5UBdFPdMn8WrHwlleYn3WZiIdifggw'
\set dup_nested 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJ4Ijp7ImEiOjEsImEiOjJ9fQ.iqDjXwEGPcQKau-kBGDbXpNkPUxApbEZIvDqZQi18Nlof_6yjZ88ABrXgODlvAxRQ9CCKtoXYrAEbcn5fGSHdw'
\set dup_header 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMiLCJraWQiOiJ0ZXN0LWhzIn0.eyJzdWIiOiAidXNlci0xIiwgInByb2plY3RfaWQiOiAidG9rZW5zIiwgImV4cCI6IDQxMDI0NDQ4MDB9.1_1LpkyDoKe8a2ZTs_YKFbpjupjjv5VTcenY9EWkppNClyuIPmOA29jiRDFuj0sgzVLzwZkKoAfydqPoY56H2A'
\set crit 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMiLCJjcml0IjpbImV4cCJdLCJleHAiOjF9.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwfQ.QnUyBVgznPxE9A-icgdD0NXZ39IXjUeYSxku30m5oOSQETCeuJfWUvyENweH3Q3DZus_qXfdWqMozNkIL7DaJQ'
\set payload_array 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.WzEsMl0.LULia_opiN0i8ThgCj0MswEZP5lG1-8Wip5LRdzL2m_3vEiT2RUmze5ySXpnDa2R7q1NJi9uE_kAorGKpfHY9A'
\set gone_tenant 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zX2dvbmUiLCJleHAiOjQxMDI0NDQ4MDB9.Lo8U29w9QtmWFjkq0jUMdvQywkz8x8mVI8vf1FaVBFQDrmjOGDgCm8TzZHUfR6TmrDssTuxecuPpzwo_T0FbqA'
\set unknown_tenant 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoibm9fc3VjaF90ZW5hbnQiLCJleHAiOjQxMDI0NDQ4MDB9.gxEeiXzugtYOXrPx_zOn15V59bSQHTtZibUi2DU_YpTs6bKYkSvmASR0UAmawJMbYNel0YCzipV8D7BhJBjL_g'
\set bad_tenant 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoiQmFkIFRlbmFudCEiLCJleHAiOjQxMDI0NDQ4MDB9.UTnkgFYwXVdQBj0gu4PQgUm06NzMGM2GU-y4M2mwgdwEJOtAXGa4cyQdD8-_HiMVF-1E2hhh-d5MDPuhnOFjuw'
\set no_sub 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwfQ.PYizUlF1W1vVXHBs2Ivw2IRBOgSeOzLjKsDP7M5ela6uXzw4ka3v8cglaPp6e4MD4Kv7QZC3zCiP9o0EBtDXpQ'
\set sig_der 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMifQ.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwfQ.MEUCIEACfZX_QTFONb4C8a9kLThrl143qUipq2I8UFBiYAZBAiEAxflSlKj9ToKJolqyWxmGI2qNE5XqXo6SEypZ6zfVqSo'
SELECT count(*) AS tokens_gone_deleted FROM keys_guard.delete_tenant('tokens_gone');
SET ROLE kg_tok_client;
CREATE FUNCTION pg_temp.refused(token text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM keys_guard.set_context_from_token(token);
    RETURN 'allowed';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;
SELECT attack, pg_temp.refused(token) AS result FROM (VALUES
    ('alg_none', :'alg_none'),
    ('alg_none_sig', :'alg_none_sig'),
    ('confusion', :'confusion'),
    ('alg_other', :'alg_other'),
    ('unknown_kid', :'unknown_kid'),
    ('missing_kid', :'missing_kid'),
    ('missing_alg', :'missing_alg'),
    ('expired', :'expired'),
    ('not_yet', :'not_yet'),
    ('no_exp', :'no_exp'),
    ('exp_string', :'exp_string'),
    ('dup_claim', :'dup_claim'),
    ('dup_escaped', :'dup_escaped'),
    ('dup_nested', :'dup_nested'),
    ('dup_header', :'dup_header'),
    ('crit', :'crit'),
    ('payload_array', :'payload_array'),
    ('gone_tenant', :'gone_tenant'),
    ('unknown_tenant', :'unknown_tenant'),
    ('bad_tenant', :'bad_tenant'),
    ('no_sub', :'no_sub'),
    ('sig_der', :'sig_der'),
    ('tampered header', split_part(:'es_noscope', '.', 1) || 'fQ' || '.' || split_part(:'es_read', '.', 2) || '.' || split_part(:'es_read', '.', 3)),
    ('header swapped', split_part(:'hs_write', '.', 1) || '.' || split_part(:'es_read', '.', 2) || '.' || split_part(:'es_read', '.', 3)),
    ('tampered payload', split_part(:'es_read', '.', 1) || '.' || split_part(:'es_write', '.', 2) || '.' || split_part(:'es_read', '.', 3)),
    ('tampered signature', overlay(:'es_read' placing CASE WHEN right(:'es_read', 5) LIKE 'A%' THEN 'B' ELSE 'A' END from length(:'es_read') - 4 for 1)),
    ('signature 63 bytes', left(:'es_read', length(:'es_read') - 3)),
    ('signature 65 bytes', :'es_read' || 'AA'),
    ('signature empty', split_part(:'es_read', '.', 1) || '.' || split_part(:'es_read', '.', 2) || '.'),
    ('hs256 signature short', left(:'hs_write', length(:'hs_write') - 2)),
    ('rs256 signature short', left(:'rs_read', length(:'rs_read') - 4)),
    ('eddsa signature long', :'ed_read' || 'AAAA'),
    ('padding', :'es_read' || '=='),
    ('plus and slash', translate(:'es_read', '-_', '+/')),
    ('stray bits', left(:'es_read', length(:'es_read') - 1) || CASE right(:'es_read', 1) WHEN 'Q' THEN 'R' WHEN 'g' THEN 'h' WHEN 'w' THEN 'x' ELSE 'B' END),
    ('space', ' ' || :'es_read'),
    ('two parts', split_part(:'es_read', '.', 1) || '.' || split_part(:'es_read', '.', 2)),
    ('four parts', :'es_read' || '.x'),
    ('oversized', 'eyJ' || repeat('A', 9000) || '.e30.x'),
    ('empty', ''),
    ('garbage', 'not a token'),
    ('nul escape', 'eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXNcdTAwMDAifQ.e30.AAAA'),
    ('deep nesting', rtrim(translate(encode(convert_to('{"alg":"ES256","kid":"test-es","x":' || repeat('[', 3000) || repeat(']', 3000) || '}', 'UTF8'), 'base64'), E'+/\n', '-_'), '=') || '.' || split_part(:'es_read', '.', 2) || '.' || split_part(:'es_read', '.', 3))
) AS t(attack, token) ORDER BY attack COLLATE "C";
-- No token at all is refused like any other (28000, reason "null").
SELECT try($$SELECT keys_guard.set_context_from_token(NULL)$$) AS null_token;
RESET ROLE;
SELECT count(*) AS tokens_gone_restored FROM keys_guard.restore_tenant('tokens_gone');

--
-- 6. Who may call it: keys_guard_client, gateway, admin; not a keyholder,
-- not anyone else.
--
SET ROLE kg_nobody;
SELECT try($$SELECT keys_guard.set_context_from_token('x.y.z')$$) AS nobody;
RESET ROLE;
SET ROLE kg_tok_tool;
SELECT try($$SELECT keys_guard.set_context_from_token('x.y.z')$$) AS keyholder;
RESET ROLE;
SET ROLE kg_app;
BEGIN;
SELECT keys_guard.set_context_from_token(:'es_read');
SELECT keys_guard.current_tenant() AS gateway_tenant;
-- A gateway session under a read-only token is read-only too.
SELECT try($$INSERT INTO tenant_tokens.items VALUES (5, 'five')$$) AS gateway_insert_read;
COMMIT;
-- So is its transaction control (the regime, not a disabled feature,
-- refuses PREPARE TRANSACTION: 42501, where 55000 would be "disabled").
BEGIN;
SELECT keys_guard.set_context_from_token(:'es_read') IS NULL AS token_set;
SAVEPOINT gateway_sp;
SHOW transaction_read_only;
PREPARE TRANSACTION 'kg_tok_gateway';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;

--
-- 7. Settings: iss, aud (a string or an array), the tenant and request
-- id claims, the leeway.
--
SET keys_guard.token_issuer = 'https://issuer.test';
SET keys_guard.token_audience = 'kg-api';
SET ROLE kg_tok_client;
BEGIN;
SELECT pg_temp.ctx(:'iss_aud') AS aud_array, pg_temp.ctx(:'iss_aud_str') AS aud_string,
       pg_temp.ctx(:'iss_wrong') AS wrong_issuer, pg_temp.ctx(:'aud_wrong') AS wrong_audience,
       pg_temp.ctx(:'es_read') AS no_iss;
COMMIT;
RESET ROLE;
SET keys_guard.token_tenant_claim = 'tid';
SET keys_guard.token_request_id_claim = 'rid';
SET ROLE kg_tok_client;
BEGIN;
SELECT keys_guard.set_context_from_token(:'iss_aud');
SELECT keys_guard.current_tenant(), keys_guard.current_request_id();
SELECT pg_temp.ctx(:'es_read') AS no_tid_claim;
COMMIT;
-- A client cannot loosen the settings.
SELECT try($$SET keys_guard.token_leeway = 100000$$) AS client_sets_leeway;
SELECT try($$SET keys_guard.token_issuer = ''$$) AS client_sets_issuer;
RESET ROLE;
RESET keys_guard.token_issuer;
RESET keys_guard.token_audience;
RESET keys_guard.token_tenant_claim;
RESET keys_guard.token_request_id_claim;
SELECT name, setting FROM pg_settings WHERE name LIKE 'keys_guard.token%' ORDER BY name;

--
-- 8. Rotation and revocation: previous still verifies, revoked never
-- again (a cached token included), and a revoked key stays revoked.
--
SET ROLE kg_tok_client;
BEGIN;
SELECT pg_temp.ctx(:'rv_read') AS before_revocation;
COMMIT;
RESET ROLE;
SELECT keys_guard.set_token_key_state('test-sb', 'current');
SELECT keys_guard.set_token_key_state('test-rv', 'previous');
SET ROLE kg_tok_client;
BEGIN;
SELECT pg_temp.ctx(:'rv_read') AS previous, pg_temp.ctx(:'sb_read') AS new_current;
COMMIT;
RESET ROLE;
SELECT keys_guard.set_token_key_state('test-rv', 'revoked');
SET ROLE kg_tok_client;
BEGIN;
SELECT pg_temp.ctx(:'rv_read') AS revoked;
COMMIT;
RESET ROLE;
SELECT try($$SELECT keys_guard.set_token_key_state('test-rv', 'current')$$) AS reinstate;
SELECT try($$SELECT keys_guard.set_token_key_state('test-rv', 'revoked')$$) AS revoke_again;
SELECT try($$SELECT keys_guard.set_token_key_state('no-such', 'current')$$) AS unknown_kid;
SELECT try($$SELECT keys_guard.set_token_key_state('test-sb', 'retired')$$) AS bad_state;
SELECT kid, state FROM keys_guard.token_keys WHERE kid IN ('test-rv', 'test-sb') ORDER BY kid;

--
-- 9. Audit: every use, allowed or refused, with the reason and the kid,
-- never the token or a secret.
--
SELECT wait_for_audit($$action = 'token_use' AND outcome = 'denied' AND detail->>'reason' = 'revoked key'$$, 1) > 0 AS drained;
SELECT detail->>'reason' AS reason, count(*) > 0 AS recorded
  FROM keys_guard.audit_log
 WHERE action = 'token_use' AND outcome = 'denied'
   AND detail->>'reason' IN ('alg none', 'algorithm mismatch', 'unknown kid', 'missing kid',
                            'expired', 'not yet valid', 'bad signature', 'wrong signature length',
                            'oversized', 'bad base64url', 'duplicate claim', 'tenant deleted',
                            'revoked key', 'duplicate header parameter', 'null')
 GROUP BY 1 ORDER BY 1;
SELECT count(*) > 0 AS allowed_recorded FROM keys_guard.audit_log
 WHERE action = 'token_use' AND outcome = 'ok' AND target = 'test-es';
SELECT action, outcome, count(*) > 0 AS recorded FROM keys_guard.audit_log
 WHERE action IN ('add_token_key', 'set_token_key_state', 'token_write_denied')
 GROUP BY 1, 2 ORDER BY 1, 2;
-- A write refused under a read-only token names the token's key.
SELECT DISTINCT detail->>'kid' AS write_denied_kid FROM keys_guard.audit_log
 WHERE action = 'token_write_denied' AND tenant LIKE 'tokens%' ORDER BY 1;
SELECT count(*) AS records_with_token_or_secret FROM keys_guard.audit_log
 WHERE (action LIKE '%token%' OR tenant LIKE 'tokens%')
   AND (concat_ws(' ', target, actor, request_id, detail::text) ~ 'eyJ[A-Za-z0-9_-]+\.'
        OR concat_ws(' ', target, actor, request_id, detail::text) LIKE '%' || :'hs_secret' || '%');

--
-- 10. The arguments of add_token_key() never reach a log line: an error
-- message that quotes the call shows none of them (the server log and
-- pg_stat_activity are checked by t/015_token_log.pl).
--
SELECT 'SELECT keys_guard.add_token_key(''k1'', ''HS256'', ''a-secret-of-thirty-two-bytes-or-more'')'::int;
SELECT 'select ADD_TOKEN_KEY (kid => ''k1'', alg => ''HS256'', key => $$a (secret) with ) inside$$) AS x'::int;
SELECT 'add_token_key(E''k1'', ''HS256'', E''it\''s a secret'')'::int;
-- A token in a message is redacted too (a JSON Web Token's shape).
SELECT :'es_read'::int;
-- ... also one whose header has JSON whitespace (it does not encode to
-- "eyJ"): spaces, a leading newline.
SELECT 'eyAiYWxnIjogIkVTMjU2IiwgImtpZCI6ICJ0ZXN0LWVzIiB9.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwfQ.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'::int;
SELECT 'token: CnsiYWxnIjoiSFMyNTYiLCJraWQiOiJ0ZXN0LWhzIn0.eyJzdWIiOiJ1c2VyLTEiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwfQ.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 end'::int;
-- Dotted names that are no token stay.
SELECT 'tenant_tokens.items.label www.example.com.au exam.ple.x e30.e30.x'::int;
-- The arguments of set_context_from_token(), whatever they look like.
SELECT 'SELECT keys_guard.set_context_from_token(''not.a-jwt'')'::int;
SELECT 'select SET_CONTEXT_FROM_TOKEN ( $$x$$ ), keys_guard.set_context(''tokens'')'::int;
--
-- 11. The clock: exp and nbf against keys_guard.token_leeway, at every
-- use, a cached token's too.  These tokens are signed here, when the test
-- runs, with the HS256 key test-hs (HMAC-SHA-256 from sha256(), RFC 2104).
--
CREATE FUNCTION pg_temp.b64url(b bytea) RETURNS text LANGUAGE sql
    AS $$ SELECT rtrim(translate(encode(b, 'base64'), E'+/\n', '-_'), '=') $$;
CREATE FUNCTION pg_temp.hs256(key text, claims jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    k bytea := convert_to(key, 'UTF8');
    ipad bytea;
    opad bytea;
    input text;
BEGIN
    k := k || decode(repeat('00', 64 - length(k)), 'hex');
    ipad := k;
    opad := k;
    FOR i IN 0..63 LOOP
        ipad := set_byte(ipad, i, get_byte(k, i) # 54);
        opad := set_byte(opad, i, get_byte(k, i) # 92);
    END LOOP;
    input := pg_temp.b64url(convert_to('{"alg":"HS256","kid":"test-hs"}', 'UTF8')) || '.'
          || pg_temp.b64url(convert_to(claims::text, 'UTF8'));
    RETURN input || '.' || pg_temp.b64url(sha256(opad || sha256(ipad || convert_to(input, 'UTF8'))));
END
$$;
SELECT pg_temp.hs256(:'hs_secret', jsonb_build_object('sub', 'user-1', 'project_id', 'tokens',
           'exp', extract(epoch FROM clock_timestamp())::bigint - 10)) AS just_expired,
       pg_temp.hs256(:'hs_secret', jsonb_build_object('sub', 'user-1', 'project_id', 'tokens',
           'exp', 4102444800, 'nbf', extract(epoch FROM clock_timestamp())::bigint + 10)) AS nearly_valid,
       pg_temp.hs256(:'hs_secret', jsonb_build_object('sub', 'user-1', 'project_id', 'tokens',
           'exp', extract(epoch FROM clock_timestamp()) + 3)) AS short_lived \gset
SET ROLE kg_tok_client;
BEGIN;
-- Within the default leeway of 30 s: accepted (and cached).
SELECT pg_temp.ctx(:'just_expired') AS expired_10s_ago, pg_temp.ctx(:'nearly_valid') AS valid_in_10s,
       pg_temp.ctx(:'short_lived') AS valid_3s_more;
COMMIT;
RESET ROLE;
SET keys_guard.token_leeway = 0;
SET ROLE kg_tok_client;
BEGIN;
-- Without leeway the same tokens, in this backend's cache, are refused.
SELECT pg_temp.ctx(:'just_expired') AS expired_10s_ago, pg_temp.ctx(:'nearly_valid') AS valid_in_10s;
COMMIT;
BEGIN;
SELECT pg_temp.ctx(:'short_lived') AS before_expiry;
SELECT pg_sleep(3.5);
SELECT pg_temp.ctx(:'short_lived') AS after_expiry;
COMMIT;
RESET ROLE;
RESET keys_guard.token_leeway;

--
-- 12. sub and the request id claim carry no control character beyond
-- ASCII either (C1), nor one that reorders or breaks what a log viewer
-- shows (bidirectional overrides and isolates, line separators): each is
-- "malformed sub" or "malformed request id claim".  Other letters are
-- fine.
--
SELECT pg_temp.hs256(:'hs_secret', jsonb_build_object('sub', 'user' || chr(133) || '1', 'project_id', 'tokens', 'exp', 4102444800)) AS sub_c1,
       pg_temp.hs256(:'hs_secret', jsonb_build_object('sub', 'user' || chr(8238) || '1-', 'project_id', 'tokens', 'exp', 4102444800)) AS sub_rlo,
       pg_temp.hs256(:'hs_secret', jsonb_build_object('sub', 'user' || chr(8295) || '1', 'project_id', 'tokens', 'exp', 4102444800)) AS sub_isolate,
       pg_temp.hs256(:'hs_secret', jsonb_build_object('sub', 'user' || chr(8232) || '1', 'project_id', 'tokens', 'exp', 4102444800)) AS sub_line_separator,
       pg_temp.hs256(:'hs_secret', jsonb_build_object('sub', 'user-1', 'rid', 'req' || chr(8234), 'project_id', 'tokens', 'exp', 4102444800)) AS rid_embedding,
       pg_temp.hs256(:'hs_secret', jsonb_build_object('sub', 'us' || chr(233) || 'r-' || chr(8364), 'rid', 'req-' || chr(1488), 'project_id', 'tokens', 'exp', 4102444800)) AS sub_letters \gset
SET keys_guard.token_request_id_claim = 'rid';
SET ROLE kg_tok_client;
SELECT pg_temp.refused(:'sub_c1') AS sub_c1, pg_temp.refused(:'sub_rlo') AS sub_rlo,
       pg_temp.refused(:'sub_isolate') AS sub_isolate,
       pg_temp.refused(:'sub_line_separator') AS sub_line_separator,
       pg_temp.refused(:'rid_embedding') AS rid_embedding;
BEGIN;
SELECT pg_temp.refused(:'sub_letters') AS sub_letters;
SELECT keys_guard.current_actor() = 'us' || chr(233) || 'r-' || chr(8364) AS actor_kept;
COMMIT;
RESET ROLE;
RESET keys_guard.token_request_id_claim;
SELECT wait_for_audit($$action = 'token_use' AND outcome = 'denied' AND detail->>'reason' = 'malformed request id claim'$$, 1) > 0 AS drained;
SELECT detail->>'reason' AS reason, count(*) > 0 AS recorded
  FROM keys_guard.audit_log
 WHERE action = 'token_use' AND outcome = 'denied'
   AND detail->>'reason' IN ('malformed sub', 'malformed request id claim')
 GROUP BY 1 ORDER BY 1;

--
-- 13. A weak key that reached the registry another way (a dump restored
-- under keys_guard.bypass) verifies nothing: an Ed25519 key of small order
-- (the identity: the "signature" 01 00..00 || 00..00 would verify any
-- token) and an HS256 "secret" that is a public key's PEM (anyone could
-- sign with it).
--
SET keys_guard.bypass = on;
INSERT INTO keys_guard.token_key (kid, alg, public_key, fingerprint, state, created_by, state_changed_by)
VALUES ('test-weak-ed', 'EdDSA', E'-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n-----END PUBLIC KEY-----\n',
        repeat('0', 64), 'current', 'restore', 'restore');
INSERT INTO keys_guard.token_key (kid, alg, secret, state, created_by, state_changed_by)
VALUES ('test-pem-hs', 'HS256', convert_to(E'-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAt1ZqyzT/dBCv3vui5agrVV9as27MQzwCP0hPRT+Y9pY=\n-----END PUBLIC KEY-----\n', 'UTF8'),
        'current', 'restore', 'restore');
RESET keys_guard.bypass;
\set forged_ed 'eyJhbGciOiJFZERTQSIsImtpZCI6InRlc3Qtd2Vhay1lZCJ9.eyJzdWIiOiJmb3JnZXIiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQgd3JpdGUifQ.AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
\set forged_hs 'eyJhbGciOiJIUzI1NiIsImtpZCI6InRlc3QtcGVtLWhzIn0.eyJzdWIiOiJmb3JnZXIiLCJwcm9qZWN0X2lkIjoidG9rZW5zIiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6InJlYWQgd3JpdGUifQ.U7co9U1XZ0JqLfPJh9TRHBHrFxOxKXkGEmpuoO6BJog'
SELECT keys_guard._verify_token_signature('test-weak-ed', :'forged_ed') AS weak_ed_verifies,
       keys_guard._verify_token_signature('test-pem-hs', :'forged_hs') AS pem_hs_verifies;
SET ROLE kg_tok_client;
SELECT pg_temp.refused(:'forged_ed') AS forged_ed, pg_temp.refused(:'forged_hs') AS forged_hs;
RESET ROLE;
SELECT keys_guard.set_token_key_state('test-weak-ed', 'revoked'),
       keys_guard.set_token_key_state('test-pem-hs', 'revoked');
