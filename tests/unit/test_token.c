/*
 * test_token.c - base64 and JWT verification (src/b64.c, src/token.c).
 *
 * Tokens are built here from header and payload text and signed with
 * OpenSSL directly, not with the code under test, so that the verifier is
 * checked against an independent signer; keys are generated at start-up.
 * The JWT cases follow security-and-faults.md 3.3.
 */
#include "config.h"
#include "b64.h"
#include "conf.h"
#include "token.h"
#include "util.h"
#include "../tap.h"

#include <openssl/ecdsa.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <stdlib.h>

#define NOW 1700000000LL

static EVP_PKEY *rsa, *ec256, *ec384, *k1;
static char *rsa_pub, *rsa_pub_pkcs1, *ec256_pub, *ec384_pub, *k1_pub;

/* Everything allocated for one check is released at the end. */
static char *garbage[4096];
static size_t ngarbage;

static char *keep(char *s)
{
	if (ngarbage < ROTOR_ARRAY_LEN(garbage))
		garbage[ngarbage++] = s;
	return s;
}

static char *pub_pem(EVP_PKEY *pkey, const char *structure)
{
	OSSL_ENCODER_CTX *ectx;
	unsigned char *data = NULL;
	size_t len = 0;
	char *out;

	ectx = OSSL_ENCODER_CTX_new_for_pkey(pkey, EVP_PKEY_PUBLIC_KEY, "PEM", structure, NULL);
	if (ectx == NULL || !OSSL_ENCODER_to_data(ectx, &data, &len))
		abort();
	OSSL_ENCODER_CTX_free(ectx);
	out = xstrndup((char *)data, len);
	OPENSSL_free(data);
	return out;
}

static char *b64u(const void *p, size_t n)
{
	return b64_encode_alloc(p, n, B64_URL | B64_NOPAD);
}

/* Signs DATA for ALG ("HS256", "RS384", "ES256", "none"...) with KEY: the
 * secret text for HS*, an EVP_PKEY for RS* and ES*. Returns the base64url
 * signature. */
static char *sign(const char *alg, const void *key, const char *data)
{
	unsigned char sig[1024];
	size_t slen = sizeof(sig);
	const EVP_MD *md;

	if (strncmp(alg, "HS", 2) && strncmp(alg, "RS", 2) && strncmp(alg, "ES", 2))
		return xstrdup("");
	md = EVP_get_digestbyname(alg[2] == '2' ? "SHA256" : alg[2] == '3' ? "SHA384" : "SHA512");
	if (alg[0] == 'H') {
		unsigned int n = 0;
		HMAC(md, key, (int)strlen(key), (const unsigned char *)data, strlen(data), sig, &n);
		slen = n;
	} else {
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		if (EVP_DigestSignInit(ctx, NULL, md, NULL, (EVP_PKEY *)key) != 1 ||
		    EVP_DigestSign(ctx, sig, &slen, (const unsigned char *)data, strlen(data)) != 1)
			abort();
		EVP_MD_CTX_free(ctx);
		if (alg[0] == 'E') { /* DER -> JOSE R||S */
			const unsigned char *p = sig;
			ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)slen);
			int n = alg[2] == '2' ? 32 : alg[2] == '3' ? 48 : 66;
			BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, n);
			BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + n, n);
			ECDSA_SIG_free(es);
			slen = 2 * (size_t)n;
		}
	}
	return b64u(sig, slen);
}

/* A token with header text HDR (NULL: {"alg":ALG,"typ":"JWT"}) and payload
 * text PAYLOAD, signed for ALG with KEY. */
static char *mk_hdr(const char *hdr, const char *alg, const void *key, const char *payload)
{
	char *h = hdr ? xstrdup(hdr) : xasprintf("{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
	char *hp = b64u(h, strlen(h)), *pp = b64u(payload, strlen(payload));
	char *data = xasprintf("%s.%s", hp, pp);
	char *s = sign(alg, key, data);
	char *tok = xasprintf("%s.%s", data, s);

	free(h);
	free(hp);
	free(pp);
	free(data);
	free(s);
	return keep(tok);
}

static char *mk(const char *alg, const void *key, const char *payload)
{
	return mk_hdr(NULL, alg, key, payload);
}

static char *mk_typ(const char *typ, const char *alg, const void *key, const char *payload)
{
	char *h = xasprintf("{\"alg\":\"%s\",\"typ\":\"%s\"}", alg, typ);
	char *t = mk_hdr(h, alg, key, payload);
	free(h);
	return t;
}

static const char *last_why;
static char *last_sub;

/* Verifies TOK with K at NOW as KIND ('a'ny, 'c'onnect, 's'ubscribe). */
static int ver_kind(const struct tok_keys *k, char kind, const char *tok)
{
	json_t *claims = NULL;
	int rc;

	if (kind == 'c')
		rc = tok_verify_connect(k, tok, strlen(tok), NOW, &claims, &last_why);
	else if (kind == 's')
		rc = tok_verify_subscribe(k, tok, strlen(tok), NOW, &claims, &last_why);
	else
		rc = tok_verify(k, tok, strlen(tok), NOW, &claims, &last_why);
	if ((rc == TOK_OK) != (claims != NULL))
		printf("# claims %s with rc %d\n", claims ? "set" : "unset", rc);
	free(last_sub);
	last_sub = claims ? tok_claim_sub(k, claims) : NULL;
	json_decref(claims);
	return rc;
}

static int ver(const struct tok_keys *k, const char *tok)
{
	return ver_kind(k, 'a', tok);
}

static struct conf_report rep;

/* Keys from a JSON settings text; the test fails loudly if they don't load. */
static void keys(struct tok_keys *k, json_t *settings)
{
	int rc = tok_keys_init(k, settings, "client.token", &rep);
	if (rc != RT_OK)
		printf("# keys failed: %s\n", rep.nerrors ? rep.errors[0] : "?");
	json_decref(settings);
}

/* A copy of TOK with the signature bit BIT of byte BYTE flipped. */
static char *flip_sig(const char *tok, size_t byte, int bit)
{
	const char *dot = strrchr(tok, '.');
	unsigned char sig[1024];
	size_t n;
	char *s, *out;

	b64_decode(sig, &n, dot + 1, strlen(dot + 1), B64_URL | B64_NOPAD);
	sig[byte % n] ^= (unsigned char)(1 << bit);
	s = b64u(sig, n);
	out = xasprintf("%.*s.%s", (int)(dot - tok), tok, s);
	free(s);
	return keep(out);
}

static void test_b64(void)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const std[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	static const char *const raw[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
	char enc[64], dec[64];
	size_t n;

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(plain); i++) {
		size_t len = strlen(plain[i]);
		b64_encode(enc, plain[i], len, B64_STD);
		is_str(enc, std[i], "b64 std encode \"%s\"", plain[i]);
		is_int(b64_encoded_len(len, B64_STD), strlen(std[i]), "b64 std length %zu", len);
		b64_encode(enc, plain[i], len, B64_URL | B64_NOPAD);
		is_str(enc, raw[i], "b64url raw encode \"%s\"", plain[i]);
		is_int(b64_encoded_len(len, B64_URL | B64_NOPAD), strlen(raw[i]), "b64url raw length %zu", len);
		ok(b64_decode(dec, &n, std[i], strlen(std[i]), B64_STD) == RT_OK && n == len &&
		   memcmp(dec, plain[i], n) == 0, "b64 std decode \"%s\"", std[i]);
		ok(b64_decode(dec, &n, raw[i], strlen(raw[i]), B64_URL) == RT_OK && n == len &&
		   memcmp(dec, plain[i], n) == 0, "b64url decode without padding \"%s\"", raw[i]);
		ok(b64_decode(dec, &n, std[i], strlen(std[i]), B64_URL) == RT_OK && n == len,
		   "b64url decode with padding \"%s\"", std[i]);
	}

	b64_encode(enc, "\xfb\xff", 2, B64_STD);
	is_str(enc, "+/8=", "b64 std alphabet");
	b64_encode(enc, "\xfb\xff", 2, B64_URL);
	is_str(enc, "-_8=", "b64url alphabet with padding");
	ok(b64_decode(dec, &n, "-_8", 3, B64_STD) == RT_INVAL, "b64 std refuses - and _");
	ok(b64_decode(dec, &n, "+/8", 3, B64_URL) == RT_INVAL, "b64url refuses + and /");
	ok(b64_decode(dec, &n, "Zg", 2, B64_STD) == RT_INVAL, "b64 std requires padding");
	ok(b64_decode(dec, &n, "Zg", 2, B64_STD | B64_NOPAD) == RT_OK && n == 1, "raw std accepts no padding");
	ok(b64_decode(dec, &n, "Zg==", 4, B64_URL | B64_NOPAD) == RT_INVAL, "NOPAD refuses padding");
	ok(b64_decode(dec, &n, "Zg=", 3, B64_URL) == RT_INVAL, "b64url refuses short padding");
	ok(b64_decode(dec, &n, "Zg===", 5, B64_URL) == RT_INVAL, "refuses three =");
	ok(b64_decode(dec, &n, "Zm8==", 5, B64_URL) == RT_INVAL, "refuses padding that does not complete");
	ok(b64_decode(dec, &n, "Zg==Zg==", 8, B64_STD) == RT_INVAL, "refuses = in the middle");
	ok(b64_decode(dec, &n, "Zm9vY", 5, B64_URL) == RT_INVAL, "refuses 4k+1 characters");
	ok(b64_decode(dec, &n, "Zm9v Zg==", 9, B64_STD) == RT_INVAL, "refuses whitespace");
	ok(b64_decode(dec, &n, "Zm9v\nZg==", 9, B64_STD) == RT_INVAL, "refuses newline");
	ok(b64_decode(dec, &n, "====", 4, B64_STD) == RT_INVAL, "refuses padding only");
	ok(b64_decode(dec, &n, "Zh==", 4, B64_STD) == RT_OK && n == 1 && dec[0] == 'f',
	   "ignores unused low bits, as Go does");

	/* Round trips of random bytes, every length up to 100, every flag set. */
	{
		unsigned char buf[100], back[110];
		char text[200];
		int bad = 0;

		util_random(buf, sizeof(buf));
		for (unsigned flags = 0; flags < 4; flags++) {
			for (size_t len = 0; len <= sizeof(buf); len++) {
				size_t tl = b64_encode(text, buf, len, flags);
				if (tl != b64_encoded_len(len, flags) ||
				    b64_decode(back, &n, text, tl, flags) != RT_OK || n != len ||
				    memcmp(back, buf, len) != 0 || n > b64_decoded_max(tl))
					bad++;
			}
		}
		is_int(bad, 0, "b64 round trips of random bytes, all flags");
	}
}

static void test_keys(void)
{
	struct tok_keys k;
	struct conf_report r = { 0 };
	json_t *s;

	s = json_pack("{s:s}", "rsa_public_key", "not a pem");
	is_int(tok_keys_init(&k, s, "client.token", &r), RT_INVAL, "keys: garbage RSA PEM refused");
	ok(r.nerrors == 1 && strstr(r.errors[0], "client.token.rsa_public_key") != NULL,
	   "keys: the problem names the key");
	tok_keys_free(&k);
	json_decref(s);
	conf_report_free(&r);

	s = json_pack("{s:s}", "rsa_public_key", ec256_pub);
	is_int(tok_keys_init(&k, s, "client.token", &r), RT_INVAL, "keys: EC key as RSA key refused");
	json_decref(s);
	conf_report_free(&r);
	s = json_pack("{s:s}", "ecdsa_public_key", rsa_pub);
	is_int(tok_keys_init(&k, s, "client.token", &r), RT_INVAL, "keys: RSA key as ECDSA key refused");
	json_decref(s);
	conf_report_free(&r);
	s = json_pack("{s:s}", "ecdsa_public_key", k1_pub);
	is_int(tok_keys_init(&k, s, "client.token", &r), RT_INVAL, "keys: secp256k1 refused");
	ok(r.nerrors == 1 && strstr(r.errors[0], "secp256k1") != NULL, "keys: the curve is named");
	json_decref(s);
	conf_report_free(&r);

	/* Every problem in one pass. */
	s = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "audience", "a", "audience_regex", "b",
		      "issuer", "i", "issuer_regex", "(", "user_id_claim", "a.b",
		      "hmac_secret_key", "x");
	is_int(tok_keys_init(&k, s, "client.subscription_token", &r), RT_INVAL, "keys: conflicts refused");
	is_int(r.nerrors, 4, "keys: four problems reported at once");
	for (size_t i = 0; i < r.nerrors; i++)
		ok(strncmp(r.errors[i], "client.subscription_token.", 26) == 0, "problem named: %s", r.errors[i]);
	json_decref(s);
	conf_report_free(&r);

	s = json_pack("{s:i}", "hmac_secret_key", 5);
	is_int(tok_keys_init(&k, s, "client.token", &r), RT_INVAL, "keys: a number as secret refused");
	json_decref(s);
	conf_report_free(&r);

	s = json_pack("{s:s, s:s}", "rsa_public_key", rsa_pub_pkcs1, "audience_regex",
		      "^tenant-(?P<id>\\d+)$");
	is_int(tok_keys_init(&k, s, "client.token", &r), RT_OK, "keys: PKCS#1 RSA key and Go regex accepted");
	ok(k.rsa_pem && strstr(k.rsa_pem, "BEGIN PUBLIC KEY"), "keys: PKCS#1 re-encoded as SPKI for libjwt");
	tok_keys_free(&k);
	json_decref(s);

	s = json_object();
	is_int(tok_keys_init(&k, s, "client.token", &r), RT_OK, "keys: no key at all is valid");
	is_int(ver(&k, mk("HS256", "", "{\"sub\":\"a\"}")), TOK_INVALID,
	       "no key configured: HS256 with an empty secret is invalid");
	is_int(ver(&k, mk("HS256", "x", "{\"sub\":\"a\"}")), TOK_INVALID,
	       "no key configured: HS256 is invalid");
	is_str(last_why, "invalid token: disabled JWT algorithm", "  ... as a disabled algorithm");
	tok_keys_free(&k);
	json_decref(s);

	s = json_pack("{s:s}", "hmac_secret_key", "");
	tok_keys_init(&k, s, "client.token", &r);
	is_int(ver(&k, mk("HS256", "", "{\"sub\":\"a\"}")), TOK_INVALID,
	       "empty secret configured: a token signed with an empty secret is invalid");
	tok_keys_free(&k);
	json_decref(s);
	conf_report_free(&r);
}

static void test_valid(void)
{
	struct tok_keys hs, rs, rs1, es, es384, both;
	static const char *const hsalg[] = { "HS256", "HS384", "HS512" };
	static const char *const rsalg[] = { "RS256", "RS384", "RS512" };
	json_t *claims;

	keys(&hs, json_pack("{s:s}", "hmac_secret_key", "secret"));
	keys(&rs, json_pack("{s:s}", "rsa_public_key", rsa_pub));
	keys(&rs1, json_pack("{s:s}", "rsa_public_key", rsa_pub_pkcs1));
	keys(&es, json_pack("{s:s}", "ecdsa_public_key", ec256_pub));
	keys(&es384, json_pack("{s:s}", "ecdsa_public_key", ec384_pub));
	keys(&both, json_pack("{s:s, s:s}", "hmac_secret_key", "secret", "rsa_public_key", rsa_pub));

	for (size_t i = 0; i < 3; i++) {
		char *t;
		claims = json_pack("{s:s, s:I}", "sub", "alice", "exp", NOW + 60);
		t = keep(tok_sign_hmac("secret", hsalg[i], claims));
		json_decref(claims);
		is_int(ver(&hs, t), TOK_OK, "%s from tok_sign_hmac verifies", hsalg[i]);
		is_str(last_sub, "alice", "  ... for user alice");
		is_int(ver(&hs, mk(hsalg[i], "secret", "{\"sub\":\"bob\"}")), TOK_OK,
		       "%s from OpenSSL verifies", hsalg[i]);
		is_int(ver(&hs, mk_typ("at+jwt", hsalg[i], "secret", "{\"sub\":\"bob\"}")), TOK_OK,
		       "%s with typ at+jwt verifies", hsalg[i]);
		is_int(ver(&both, mk(hsalg[i], "secret", "{}")), TOK_OK, "%s with HMAC and RSA configured", hsalg[i]);
		is_int(ver(&rs, mk(rsalg[i], rsa, "{\"sub\":\"carol\"}")), TOK_OK, "%s verifies", rsalg[i]);
		is_str(last_sub, "carol", "  ... for user carol");
		is_int(ver(&rs, mk_typ("at+jwt", rsalg[i], rsa, "{}")), TOK_OK,
		       "%s with typ at+jwt verifies", rsalg[i]);
		is_int(ver(&both, mk(rsalg[i], rsa, "{}")), TOK_OK, "%s with HMAC and RSA configured", rsalg[i]);
	}
	is_int(ver(&rs1, mk("RS256", rsa, "{}")), TOK_OK, "RS256 with a PKCS#1 key configured");
	is_int(ver(&es, mk("ES256", ec256, "{\"sub\":\"dave\"}")), TOK_OK, "ES256 verifies");
	is_str(last_sub, "dave", "  ... for user dave");
	is_int(ver(&es, mk_typ("at+jwt", "ES256", ec256, "{}")), TOK_OK, "ES256 with typ at+jwt verifies");
	is_int(ver(&es384, mk("ES384", ec384, "{}")), TOK_OK, "ES384 verifies with a P-384 key");
	is_int(ver(&es384, mk_typ("at+jwt", "ES384", ec384, "{}")), TOK_OK, "ES384 with typ at+jwt verifies");
	is_int(ver(&es, mk("ES384", ec256, "{}")), TOK_INVALID, "ES384 refused with a P-256 key");
	is_int(ver(&es384, mk("ES256", ec384, "{}")), TOK_INVALID, "ES256 refused with a P-384 key");

	is_int(ver(&hs, mk_hdr("{\"alg\":\"HS256\"}", "HS256", "secret", "{}")), TOK_OK, "typ absent accepted");
	is_int(ver(&hs, mk_typ("jwt", "HS256", "secret", "{}")), TOK_OK, "typ jwt accepted");
	is_int(ver(&hs, mk_hdr("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"../../etc/passwd\"}", "HS256",
			       "secret", "{}")), TOK_OK, "a kid header is ignored");
	is_int(ver(&hs, mk("HS256", "secret", "{\"exp\":1700000000}")), TOK_EXPIRED, "at+jwt path still checks exp");
	is_int(ver(&hs, mk("HS256", "secret", "{\"iat\":1,\"jti\":\"x\",\"info\":{\"a\":[1,2]}}")), TOK_OK,
	       "sub absent: anonymous");
	is_str(last_sub, "", "  ... user is \"\"");
	is_int(ver(&hs, mk("HS256", "secret", "{\"sub\":\"a\",\"sub\":\"b\"}")), TOK_OK,
	       "duplicate payload keys: accepted");
	is_str(last_sub, "b", "  ... last one wins, as in Go");

	tok_keys_free(&hs);
	tok_keys_free(&rs);
	tok_keys_free(&rs1);
	tok_keys_free(&es);
	tok_keys_free(&es384);
	tok_keys_free(&both);
}

/* The negative list of security-and-faults.md 3.3, on both signature paths
 * (libjwt for typ JWT, OpenSSL for any other typ). */
static void test_invalid(void)
{
	struct tok_keys hs, rs, both, es;
	static const char *const nones[] = { "none", "NONE", "nOnE", "", "HS1024", "hs256" };
	static const char *const typs[] = { "JWT", "at+jwt" };
	char *t, *big;

	keys(&hs, json_pack("{s:s}", "hmac_secret_key", "secret"));
	keys(&rs, json_pack("{s:s}", "rsa_public_key", rsa_pub));
	keys(&both, json_pack("{s:s, s:s}", "hmac_secret_key", "secret", "rsa_public_key", rsa_pub));
	keys(&es, json_pack("{s:s}", "ecdsa_public_key", ec256_pub));

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(nones); i++) {
		char *h = xasprintf("{\"alg\":\"%s\",\"typ\":\"JWT\"}", nones[i]);
		t = mk_hdr(h, "none", NULL, "{\"sub\":\"a\"}");
		is_int(ver(&hs, t), TOK_INVALID, "alg \"%s\" unsigned: invalid (HMAC)", nones[i]);
		is_int(ver(&both, t), TOK_INVALID, "alg \"%s\" unsigned: invalid (HMAC+RSA)", nones[i]);
		free(h);
		h = xasprintf("{\"alg\":\"%s\"}", nones[i]);
		t = mk_hdr(h, "HS256", "secret", "{\"sub\":\"a\"}");
		is_int(ver(&hs, t), TOK_INVALID, "alg \"%s\" with an HS256 signature: invalid", nones[i]);
		free(h);
	}
	is_int(ver(&hs, mk_hdr("{\"typ\":\"JWT\"}", "HS256", "secret", "{}")), TOK_INVALID, "alg missing: invalid");
	is_int(ver(&hs, mk_hdr("{\"alg\":256}", "HS256", "secret", "{}")), TOK_INVALID, "alg a number: invalid");

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(typs); i++) {
		const char *ty = typs[i];
		is_int(ver(&rs, mk_typ(ty, "HS256", rsa_pub, "{}")), TOK_INVALID,
		       "typ %s: HS256 signed with the RSA PEM, RSA configured: invalid", ty);
		is_int(ver(&both, mk_typ(ty, "HS256", rsa_pub, "{}")), TOK_INVALID,
		       "typ %s: HS256 signed with the RSA PEM, HMAC+RSA configured: invalid", ty);
		is_int(ver(&es, mk_typ(ty, "HS256", ec256_pub, "{}")), TOK_INVALID,
		       "typ %s: HS256 signed with the EC PEM, ECDSA configured: invalid", ty);
		is_int(ver(&rs, mk_typ(ty, "HS256", "secret", "{}")), TOK_INVALID,
		       "typ %s: HS256 while only RSA configured: invalid", ty);
		is_int(ver(&hs, mk_typ(ty, "RS256", rsa, "{}")), TOK_INVALID,
		       "typ %s: RS256 while only HMAC configured: invalid", ty);
		is_int(ver(&rs, mk_typ(ty, "ES256", ec256, "{}")), TOK_INVALID,
		       "typ %s: ES256 while only RSA configured: invalid", ty);
		is_int(ver(&es, mk_typ(ty, "RS256", rsa, "{}")), TOK_INVALID,
		       "typ %s: RS256 while only ECDSA configured: invalid", ty);
		is_int(ver(&hs, mk_typ(ty, "HS256", "other", "{}")), TOK_INVALID,
		       "typ %s: HS256 with another secret: invalid", ty);
		is_str(last_why, "invalid token: bad signature", "  ... bad signature");

		t = mk_typ(ty, "HS256", "secret", "{\"sub\":\"a\"}");
		is_int(ver(&hs, flip_sig(t, 0, 0)), TOK_INVALID, "typ %s: HS256 one bit flipped: invalid", ty);
		is_int(ver(&hs, flip_sig(t, 31, 7)), TOK_INVALID, "typ %s: HS256 last bit flipped: invalid", ty);
		is_int(ver(&hs, keep(xstrndup(t, strlen(t) - 4))), TOK_INVALID, "typ %s: HS256 truncated: invalid", ty);
		is_int(ver(&hs, keep(xasprintf("%sAAAA", t))), TOK_INVALID, "typ %s: HS256 extended: invalid", ty);
		t = mk_typ(ty, "RS256", rsa, "{\"sub\":\"a\"}");
		is_int(ver(&rs, flip_sig(t, 100, 3)), TOK_INVALID, "typ %s: RS256 one bit flipped: invalid", ty);
		is_int(ver(&rs, keep(xstrndup(t, strlen(t) - 4))), TOK_INVALID, "typ %s: RS256 truncated: invalid", ty);
		t = mk_typ(ty, "ES256", ec256, "{\"sub\":\"a\"}");
		is_int(ver(&es, flip_sig(t, 5, 1)), TOK_INVALID, "typ %s: ES256 one bit flipped: invalid", ty);
		is_int(ver(&es, keep(xstrndup(t, strlen(t) - 4))), TOK_INVALID, "typ %s: ES256 truncated: invalid", ty);
		/* Empty signatures: libjwt 1.10.2 overruns a buffer on them (RS, ES). */
		is_int(ver(&es, keep(xasprintf("%.*s", (int)(strrchr(t, '.') - t + 1), t))), TOK_INVALID,
		       "typ %s: ES256 without signature: invalid", ty);
		t = mk_typ(ty, "RS256", rsa, "{}");
		is_int(ver(&rs, keep(xasprintf("%.*s", (int)(strrchr(t, '.') - t + 1), t))), TOK_INVALID,
		       "typ %s: RS256 without signature: invalid", ty);
		t = mk_typ(ty, "HS256", "secret", "{}");
		is_int(ver(&hs, keep(xasprintf("%.*s", (int)(strrchr(t, '.') - t + 1), t))), TOK_INVALID,
		       "typ %s: HS256 without signature: invalid", ty);
		is_int(ver(&hs, keep(xasprintf("%.*sAA", (int)(strrchr(t, '.') - t + 1), t))), TOK_INVALID,
		       "typ %s: HS256 with a one-byte signature: invalid", ty);
		/* The payload changed under a valid signature. */
		{
			char *t2 = mk_typ(ty, "HS256", "secret", "{\"sub\":\"mallory\"}");
			const char *d1 = strchr(t, '.'), *d2 = strchr(t2, '.');
			t = mk_typ(ty, "HS256", "secret", "{\"sub\":\"alice\"}");
			d1 = strchr(t, '.');
			is_int(ver(&hs, keep(xasprintf("%.*s%.*s%s", (int)(d1 - t), t,
						       (int)(strrchr(t2, '.') - d2), d2, strrchr(t, '.')))),
			       TOK_INVALID, "typ %s: payload swapped under a valid signature: invalid", ty);
		}
	}

	/* A signature whose last character carries different unused bits. */
	{
		char *c;
		size_t len;
		t = keep(xstrdup(mk("HS256", "secret", "{}")));
		len = strlen(t);
		c = &t[len - 1];
		*c = *c == 'A' ? 'B' : (char)(*c ^ 1); /* 43 chars for 32 bytes: the low 2 bits are unused */
		is_int(ver(&hs, t), TOK_INVALID, "non-canonical signature encoding: invalid");
		t = mk_typ("at+jwt", "HS256", "secret", "{}");
		t = keep(xasprintf("%s=", t));
		is_int(ver(&hs, t), TOK_INVALID, "signature with = padding: invalid");
	}

	t = mk("HS256", "secret", "{\"sub\":\"a\"}");
	is_int(ver(&hs, keep(xstrndup(t, (size_t)(strrchr(t, '.') - t)))), TOK_INVALID, "two parts: invalid");
	is_int(ver(&hs, keep(xasprintf("%s.AAAA", t))), TOK_INVALID, "four parts: invalid");
	is_int(ver(&hs, keep(xasprintf("%s.", t))), TOK_INVALID, "trailing dot: invalid");
	is_int(ver(&hs, ""), TOK_INVALID, "empty: invalid");
	is_int(ver(&hs, ".."), TOK_INVALID, "two dots only: invalid");
	is_int(ver(&hs, "a b.c.d"), TOK_INVALID, "space: invalid");
	{
		json_t *claims = NULL;
		char *copy = keep(xstrdup(t));
		copy[3] = '\0';
		is_int(tok_verify(&hs, copy, strlen(t), NOW, &claims, &last_why), TOK_INVALID,
		       "embedded NUL: invalid");
	}
	is_int(ver(&hs, mk_hdr("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", "HS256", "secret", "{}")), TOK_INVALID,
	       "duplicate alg, same value: invalid");
	is_int(ver(&both, mk_hdr("{\"alg\":\"RS256\",\"alg\":\"HS256\"}", "HS256", rsa_pub, "{}")), TOK_INVALID,
	       "duplicate alg RS256 then HS256 signed with the PEM: invalid");
	is_int(ver(&hs, mk_hdr("{ \"alg\":\"HS256\"}", "HS256", "secret", "{}")), TOK_INVALID,
	       "header not starting with {\" (no eyJ prefix): invalid");
	is_int(ver(&hs, mk_hdr("[\"alg\"]", "HS256", "secret", "{}")), TOK_INVALID, "header an array: invalid");
	is_int(ver(&hs, mk_hdr("{\"alg\":\"HS256\",\"typ\":7}", "HS256", "secret", "{}")), TOK_INVALID,
	       "typ a number: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "[1]")), TOK_INVALID, "payload an array: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"sub\":")), TOK_INVALID, "payload truncated JSON: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{} x")), TOK_INVALID, "payload with trailing garbage: invalid");

	/* Size limit. */
	big = xmalloc(TOK_MAX_LEN + 1);
	memset(big, 'a', TOK_MAX_LEN);
	big[TOK_MAX_LEN] = '\0';
	t = keep(xasprintf("{\"sub\":\"a\",\"pad\":\"%.*s\"}", 6300, big));
	t = mk("HS256", "secret", t);
	ok(strlen(t) > TOK_MAX_LEN, "a token over %d bytes...", TOK_MAX_LEN);
	is_int(ver(&hs, t), TOK_INVALID, "  ... is invalid");
	is_str(last_why, "invalid token: too long", "  ... as too long");
	t = keep(xasprintf("{\"sub\":\"a\",\"pad\":\"%.*s\"}", 5000, big));
	t = mk("HS256", "secret", t);
	ok(strlen(t) <= TOK_MAX_LEN, "a token under %d bytes...", TOK_MAX_LEN);
	is_int(ver(&hs, t), TOK_OK, "  ... is valid");
	free(big);

	/* Claim types that Centrifugo's structs refuse. */
	is_int(ver(&hs, mk("HS256", "secret", "{\"sub\":42}")), TOK_INVALID, "sub a number: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"iss\":[]}")), TOK_INVALID, "iss an array: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"aud\":1}")), TOK_INVALID, "aud a number: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"aud\":[\"a\",1]}")), TOK_INVALID, "aud array with a number: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"exp\":\"soon\"}")), TOK_INVALID, "exp a non-numeric string: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"exp\":\"1e10 \"}")), TOK_INVALID, "exp a padded numeric string: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"exp\":true}")), TOK_INVALID, "exp a boolean: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"exp\":1e300}")), TOK_INVALID, "exp beyond int64: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"nbf\":{}}")), TOK_INVALID, "nbf an object: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"iat\":\"x\"}")), TOK_INVALID, "iat a string: invalid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"exp\":null,\"sub\":null}")), TOK_OK, "null claims: absent");
	is_int(ver_kind(&hs, 'c', mk("HS256", "secret", "{\"channels\":\"a\"}")), TOK_INVALID,
	       "connect: channels a string: invalid");
	is_int(ver_kind(&hs, 'c', mk("HS256", "secret", "{\"channels\":[\"a\",\"b\"],\"subs\":{\"c\":{\"info\":1,"
				     "\"override\":{\"presence\":{\"value\":true}}}},\"meta\":[1]}")), TOK_OK,
	       "connect: channels, subs and meta of the right types: valid");
	is_int(ver_kind(&hs, 'c', mk("HS256", "secret", "{\"subs\":{\"c\":{\"override\":{\"presence\":{\"value\":1}}}}}")),
	       TOK_INVALID, "connect: override value not a boolean: invalid");
	is_int(ver_kind(&hs, 'c', mk("HS256", "secret", "{\"subs\":[]}")), TOK_INVALID, "connect: subs an array: invalid");
	is_int(ver_kind(&hs, 'c', mk("HS256", "secret", "{\"expire_at\":1.5}")), TOK_INVALID,
	       "connect: expire_at a float: invalid");
	is_int(ver_kind(&hs, 'c', mk("HS256", "secret", "{\"b64info\":{}}")), TOK_INVALID,
	       "connect: b64info an object: invalid");
	is_int(ver_kind(&hs, 's', mk("HS256", "secret", "{\"channel\":\"c\",\"client\":1}")), TOK_INVALID,
	       "subscribe: client a number: invalid");
	is_int(ver_kind(&hs, 's', mk("HS256", "secret", "{\"channel\":[\"c\"]}")), TOK_INVALID,
	       "subscribe: channel an array: invalid");

	tok_keys_free(&hs);
	tok_keys_free(&rs);
	tok_keys_free(&both);
	tok_keys_free(&es);
}

static void test_time(void)
{
	struct tok_keys hs;
	char *p;

	keys(&hs, json_pack("{s:s}", "hmac_secret_key", "secret"));
#define PAY(...) keep(xasprintf(__VA_ARGS__))
	is_int(ver(&hs, mk("HS256", "secret", PAY("{\"exp\":%lld}", NOW - 100))), TOK_EXPIRED, "exp in the past: expired");
	is_str(last_why, "token expired", "  ... token expired");
	is_int(ver(&hs, mk("HS256", "secret", PAY("{\"exp\":%lld}", NOW))), TOK_EXPIRED, "exp now: expired");
	is_int(ver(&hs, mk("HS256", "secret", PAY("{\"exp\":%lld}", NOW + 1))), TOK_OK, "exp in a second: valid");
	is_int(ver(&hs, mk("HS256", "secret", "{\"exp\":1.5e9}")), TOK_EXPIRED, "exp a float in the past: expired");
	is_int(ver(&hs, mk("HS256", "secret", PAY("{\"exp\":%lld.5}", NOW))), TOK_OK, "exp a float half a second ahead: valid");
	is_int(ver(&hs, mk("HS256", "secret", PAY("{\"exp\":%lld.0}", NOW - 1))), TOK_EXPIRED, "exp a float one second ago: expired");
	is_int(ver(&hs, mk("HS256", "secret", PAY("{\"exp\":\"%lld\"}", NOW + 60))), TOK_OK,
	       "exp a numeric string in the future: valid (Go's json.Number takes it)");
	is_int(ver(&hs, mk("HS256", "secret", PAY("{\"exp\":\"%lld\"}", NOW - 60))), TOK_EXPIRED,
	       "exp a numeric string in the past: expired");
	is_int(ver(&hs, mk("HS256", "secret", "{\"exp\":-1}")), TOK_EXPIRED, "exp negative: expired");
	is_int(ver(&hs, mk("HS256", "secret", PAY("{\"nbf\":%lld}", NOW + 10))), TOK_EXPIRED, "nbf in the future: expired");
	is_int(ver(&hs, mk("HS256", "secret", PAY("{\"nbf\":%lld}", NOW))), TOK_OK, "nbf now: valid");
	is_int(ver(&hs, mk("HS256", "secret", PAY("{\"nbf\":%lld,\"exp\":%lld}", NOW - 10, NOW + 10))), TOK_OK,
	       "nbf past, exp future: valid");
	is_int(ver(&hs, mk("HS256", "secret", PAY("{\"iat\":%lld}", NOW + 1000))), TOK_OK, "iat in the future: not checked");
	is_int(ver(&hs, mk("HS256", "other", PAY("{\"exp\":%lld}", NOW - 100))), TOK_INVALID,
	       "expired with a bad signature: invalid (signature first)");
	is_int(ver(&hs, mk_typ("at+jwt", "HS256", "secret", PAY("{\"exp\":%lld}", NOW - 1))), TOK_EXPIRED,
	       "typ at+jwt, expired: expired");

	/* Connection and subscription rules around exp. */
	p = PAY("{\"sub\":\"u\",\"channel\":\"news\",\"exp\":%lld}", NOW + 60);
	is_int(ver_kind(&hs, 'c', mk("HS256", "secret", p)), TOK_INVALID, "connect: channel claim: invalid");
	is_int(ver_kind(&hs, 's', mk("HS256", "secret", p)), TOK_OK, "subscribe: channel claim: valid");
	is_int(ver_kind(&hs, 'a', mk("HS256", "secret", p)), TOK_OK, "any: channel claim: valid");
	is_int(ver_kind(&hs, 'c', mk("HS256", "secret", "{\"channel\":\"\"}")), TOK_OK, "connect: empty channel claim: valid");
	p = PAY("{\"channel\":\"news\",\"exp\":%lld}", NOW - 60);
	is_int(ver_kind(&hs, 'c', mk("HS256", "secret", p)), TOK_INVALID,
	       "connect: channel claim and expired: invalid (channel first)");
	is_int(ver_kind(&hs, 's', mk("HS256", "secret", "{\"sub\":\"u\"}")), TOK_INVALID, "subscribe: no channel: invalid");
	is_int(ver_kind(&hs, 's', mk("HS256", "secret", PAY("{\"exp\":%lld}", NOW - 60))), TOK_EXPIRED,
	       "subscribe: no channel and expired: expired (exp first)");
	tok_keys_free(&hs);
}

static void test_aud_iss(void)
{
	struct tok_keys a, i, are, ire, uid, skip;
	json_t *claims;

	keys(&a, json_pack("{s:s, s:s}", "hmac_secret_key", "secret", "audience", "rotor"));
	keys(&i, json_pack("{s:s, s:s}", "hmac_secret_key", "secret", "issuer", "https://auth"));
	keys(&are, json_pack("{s:s, s:s}", "hmac_secret_key", "secret", "audience_regex", "^tenant-(?P<id>\\d+)$"));
	keys(&ire, json_pack("{s:s, s:s}", "hmac_secret_key", "secret", "issuer_regex", "^https://(?:a|b)\\.example$"));
	keys(&uid, json_pack("{s:s, s:s}", "hmac_secret_key", "secret", "user_id_claim", "user_id"));

	is_int(ver(&a, mk("HS256", "secret", "{\"aud\":\"rotor\"}")), TOK_OK, "aud string matching: valid");
	is_int(ver(&a, mk("HS256", "secret", "{\"aud\":[\"x\",\"rotor\"]}")), TOK_OK, "aud array containing: valid");
	is_int(ver(&a, mk("HS256", "secret", "{\"aud\":\"other\"}")), TOK_INVALID, "aud other: invalid");
	is_int(ver(&a, mk("HS256", "secret", "{\"aud\":[\"x\",\"rotorx\"]}")), TOK_INVALID, "aud array without: invalid");
	is_int(ver(&a, mk("HS256", "secret", "{}")), TOK_INVALID, "aud missing: invalid");
	is_int(ver(&a, mk("HS256", "secret", PAY("{\"aud\":\"other\",\"exp\":%lld}", NOW - 5))), TOK_INVALID,
	       "wrong aud and expired: invalid");
	is_int(ver(&i, mk("HS256", "secret", "{\"iss\":\"https://auth\"}")), TOK_OK, "iss matching: valid");
	is_int(ver(&i, mk("HS256", "secret", "{\"iss\":\"https://auth/\"}")), TOK_INVALID, "iss other: invalid");
	is_int(ver(&i, mk("HS256", "secret", "{}")), TOK_INVALID, "iss missing: invalid");
	is_int(ver(&are, mk("HS256", "secret", "{\"aud\":[\"x\",\"tenant-42\"]}")), TOK_OK, "aud regex match: valid");
	is_int(ver(&are, mk("HS256", "secret", "{\"aud\":\"tenant-x\"}")), TOK_INVALID, "aud regex no match: invalid");
	is_int(ver(&ire, mk("HS256", "secret", "{\"iss\":\"https://b.example\"}")), TOK_OK, "iss regex match: valid");
	is_int(ver(&ire, mk("HS256", "secret", "{\"iss\":\"https://bXexample\"}")), TOK_INVALID,
	       "iss regex no match: invalid");
	is_int(ver(&uid, mk("HS256", "secret", "{\"sub\":\"s\",\"user_id\":\"u1\"}")), TOK_OK, "user_id_claim token");
	is_str(last_sub, "u1", "  ... user from user_id_claim");
	ver(&uid, mk("HS256", "secret", "{\"sub\":\"s\",\"user_id\":42}"));
	is_str(last_sub, "42", "  ... a number as its text, as gjson does");
	ver(&uid, mk("HS256", "secret", "{\"sub\":\"s\"}"));
	is_str(last_sub, "", "  ... missing: anonymous");

	keys(&skip, json_pack("{s:s}", "hmac_secret_key", "secret"));
	skip.insecure_skip_verify = true;
	is_int(ver(&skip, mk("HS256", "other", "{\"sub\":\"x\"}")), TOK_OK, "skip verify: bad signature accepted");
	is_int(ver(&skip, mk_hdr("{\"alg\":\"none\"}", "none", NULL, "{}")), TOK_OK, "skip verify: alg none accepted");
	is_int(ver(&skip, mk("HS256", "other", PAY("{\"exp\":%lld}", NOW - 5))), TOK_EXPIRED,
	       "skip verify: exp still checked");

	claims = json_pack("{s:f}", "exp", 1700000123.75);
	is_int(tok_claim_exp(claims), 1700000123, "tok_claim_exp drops the fraction");
	json_decref(claims);
	claims = json_object();
	is_int(tok_claim_exp(claims), 0, "tok_claim_exp: 0 without exp");
	json_decref(claims);

	tok_keys_free(&a);
	tok_keys_free(&i);
	tok_keys_free(&are);
	tok_keys_free(&ire);
	tok_keys_free(&uid);
	tok_keys_free(&skip);
}

static void test_rotation(void)
{
	struct tok_keys k;
	struct conf_report r = { 0 };
	json_t *s;

	keys(&k, json_pack("{s:s, s:s, s:I}", "hmac_secret_key", "new", "hmac_previous_secret_key", "old",
			   "hmac_previous_secret_key_valid_until", (json_int_t)NOW + 10));
	is_int(ver(&k, mk("HS256", "new", "{}")), TOK_OK, "rotation: current secret accepted");
	is_int(ver(&k, mk("HS384", "old", "{}")), TOK_OK, "rotation: previous secret accepted before valid_until");
	is_int(ver(&k, mk_typ("at+jwt", "HS256", "old", "{}")), TOK_OK, "rotation: previous secret, typ at+jwt");
	is_int(ver(&k, mk("HS256", "older", "{}")), TOK_INVALID, "rotation: another secret refused");
	is_int(ver(&k, mk("RS256", rsa, "{}")), TOK_INVALID, "rotation: RS256 still disabled");
	tok_keys_free(&k);

	keys(&k, json_pack("{s:s, s:s, s:I}", "hmac_secret_key", "new", "hmac_previous_secret_key", "old",
			   "hmac_previous_secret_key_valid_until", (json_int_t)NOW));
	is_int(ver(&k, mk("HS256", "old", "{}")), TOK_INVALID, "rotation: previous secret refused from valid_until");
	is_int(ver(&k, mk_typ("at+jwt", "HS256", "old", "{}")), TOK_INVALID, "  ... on both paths");
	tok_keys_free(&k);

	keys(&k, json_pack("{s:s, s:s}", "hmac_secret_key", "new", "hmac_previous_secret_key", "old"));
	is_int(ver(&k, mk("HS256", "old", "{}")), TOK_OK, "rotation: valid_until 0 means no limit");
	tok_keys_free(&k);

	s = json_pack("{s:s}", "hmac_previous_secret_key", "old");
	is_int(tok_keys_init(&k, s, "client.token", &r), RT_INVAL, "rotation: previous without current refused");
	json_decref(s);
	s = json_pack("{s:s, s:i}", "hmac_secret_key", "new", "hmac_previous_secret_key_valid_until", -5);
	is_int(tok_keys_init(&k, s, "client.token", &r), RT_INVAL, "rotation: negative valid_until refused");
	is_int(r.nerrors, 2, "rotation: both problems named");
	json_decref(s);
	conf_report_free(&r);
}

static void test_sign(void)
{
	json_t *claims = json_pack("{s:s}", "sub", "a"), *arr = json_array();
	char *t;

	ok(tok_sign_hmac(NULL, "HS256", claims) == NULL, "sign: NULL secret refused");
	ok(tok_sign_hmac("", "HS256", claims) == NULL, "sign: empty secret refused");
	ok(tok_sign_hmac("s", "RS256", claims) == NULL, "sign: RS256 refused");
	ok(tok_sign_hmac("s", "none", claims) == NULL, "sign: none refused");
	ok(tok_sign_hmac("s", "HS256", arr) == NULL, "sign: claims not an object refused");
	t = tok_sign_hmac("s", "HS512", claims);
	ok(t && strncmp(t, "eyJ", 3) == 0 && strchr(t, '=') == NULL, "sign: HS512 token, base64url without padding");
	free(t);
	json_decref(claims);
	json_decref(arr);
}

int main(void)
{
	rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
	if (!rsa || !ec256 || !ec384 || !k1)
		abort();
	rsa_pub = pub_pem(rsa, "SubjectPublicKeyInfo");
	rsa_pub_pkcs1 = pub_pem(rsa, "type-specific");
	ec256_pub = pub_pem(ec256, "SubjectPublicKeyInfo");
	ec384_pub = pub_pem(ec384, "SubjectPublicKeyInfo");
	k1_pub = pub_pem(k1, "SubjectPublicKeyInfo");
	ok(strstr(rsa_pub_pkcs1, "BEGIN RSA PUBLIC KEY") != NULL, "test key: PKCS#1 PEM made");

	test_b64();
	test_keys();
	test_valid();
	test_invalid();
	test_time();
	test_aud_iss();
	test_rotation();
	test_sign();

	is_int(rep.nerrors, 0, "every test key set loaded");
	conf_report_free(&rep);
	for (size_t i = 0; i < ngarbage; i++)
		free(garbage[i]);
	free(last_sub);
	free(rsa_pub);
	free(rsa_pub_pkcs1);
	free(ec256_pub);
	free(ec384_pub);
	free(k1_pub);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec256);
	EVP_PKEY_free(ec384);
	EVP_PKEY_free(k1);
	return tap_done();
}
