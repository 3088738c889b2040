/*
 * test_jwks.c - JWKs into OpenSSL keys (jwks_parse_key: every accepted and
 * refused form), the JWKS settings of a token verifier (endpoint URL,
 * template placeholders, Centrifugo's safety check), a verifier without a
 * worker loop (rotorctl: no JWKS key is ever found), and the rate limit of
 * jwks_find against a refused port on a real loop. Fetching real sets is
 * tests/integration/jwks.test.js's.
 */
#include "config.h"
#include "b64.h"
#include "conf.h"
#include "jwks.h"
#include "log.h"
#include "token.h"
#include "upstream.h"
#include "util.h"
#include "../tap.h"

#include <arpa/inet.h>
#include <ev.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static char *b64u_bn(EVP_PKEY *pkey, const char *param, size_t pad)
{
	BIGNUM *bn = NULL;
	unsigned char buf[1024];
	int n;

	EVP_PKEY_get_bn_param(pkey, param, &bn);
	n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
	BN_free(bn);
	return b64_encode_alloc(buf, (size_t)n, B64_URL | B64_NOPAD);
}

static json_t *rsa_jwk(EVP_PKEY *k, const char *alg)
{
	char *n = b64u_bn(k, OSSL_PKEY_PARAM_RSA_N, 0), *e = b64u_bn(k, OSSL_PKEY_PARAM_RSA_E, 0);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", "r", "n", n, "e", e);

	if (alg)
		json_object_set_new(o, "alg", json_string(alg));
	free(n);
	free(e);
	return o;
}

static json_t *ec_jwk(EVP_PKEY *k, const char *crv, size_t bytes)
{
	char *x = b64u_bn(k, OSSL_PKEY_PARAM_EC_PUB_X, bytes), *y = b64u_bn(k, OSSL_PKEY_PARAM_EC_PUB_Y, bytes);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "kid", "e", "crv", crv, "x", x, "y", y);

	free(x);
	free(y);
	return o;
}

/* jwks_parse_key on O (consumed): 0 or -1; the key is freed. */
static int parse(json_t *o, struct jwk *out, const char **why)
{
	struct jwk key;
	int rc = jwks_parse_key(o, &key, why);

	if (out != NULL)
		*out = key;
	else
		EVP_PKEY_free(key.pkey);
	json_decref(o);
	return rc;
}

static void test_parse(void)
{
	EVP_PKEY *rsa = EVP_RSA_gen(2048), *small = EVP_RSA_gen(768), *p256 = EVP_EC_gen("P-256"),
		 *p384 = EVP_EC_gen("P-384"), *p521 = EVP_EC_gen("P-521");
	struct jwk key;
	const char *why;
	json_t *o;

	is_int(parse(rsa_jwk(rsa, NULL), &key, &why), 0, "RSA without alg: %s", why);
	ok(key.kty == JWK_RSA && key.alg[0] == '\0' && EVP_PKEY_eq(key.pkey, rsa) == 1, "RSA: the same public key");
	EVP_PKEY_free(key.pkey);
	is_int(parse(rsa_jwk(rsa, "RS512"), &key, &why), 0, "RSA with alg RS512");
	is_str(key.alg, "RS512", "RSA: its alg kept");
	EVP_PKEY_free(key.pkey);
	is_int(parse(rsa_jwk(rsa, "ES256"), NULL, &why), -1, "RSA with alg ES256 refused: %s", why);
	is_int(parse(rsa_jwk(rsa, "PS256"), NULL, &why), -1, "RSA with alg PS256 refused: %s", why);
	is_int(parse(rsa_jwk(rsa, "HS256"), NULL, &why), -1, "RSA with alg HS256 refused: %s", why);
	is_int(parse(rsa_jwk(small, NULL), NULL, &why), -1, "768-bit RSA refused: %s", why);
	o = rsa_jwk(rsa, NULL);
	json_object_set_new(o, "use", json_string("enc"));
	is_int(parse(o, NULL, &why), -1, "use enc refused: %s", why);
	o = rsa_jwk(rsa, NULL);
	json_object_set_new(o, "use", json_string("sig"));
	is_int(parse(o, NULL, &why), 0, "use sig accepted");
	o = rsa_jwk(rsa, NULL);
	json_object_del(o, "e");
	is_int(parse(o, NULL, &why), -1, "RSA without e refused: %s", why);
	o = rsa_jwk(rsa, NULL);
	json_object_set_new(o, "n", json_string("!!!"));
	is_int(parse(o, NULL, &why), -1, "RSA with n not base64url refused: %s", why);
	is_int(parse(json_pack("{s:s, s:s}", "kty", "oct", "k", "c2VjcmV0"), NULL, &why), -1,
	       "oct (symmetric) refused: %s", why);
	is_int(parse(json_pack("{s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x", "AAAA"), NULL, &why), -1,
	       "Ed25519 with a 3-byte x refused: %s", why);
	{
		EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		unsigned char raw[32];
		size_t n = sizeof(raw);
		char *x;

		EVP_PKEY_get_raw_public_key(ed, raw, &n);
		x = b64_encode_alloc(raw, n, B64_URL | B64_NOPAD);
		is_int(parse(json_pack("{s:s, s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x", x, "alg", "EdDSA"),
			     &key, &why), 0, "Ed25519: %s", why);
		ok(key.kty == JWK_OKP && EVP_PKEY_eq(key.pkey, ed) == 1, "Ed25519: the same public key");
		EVP_PKEY_free(key.pkey);
		is_int(parse(json_pack("{s:s, s:s, s:s}", "kty", "OKP", "crv", "X25519", "x", x), NULL, &why), -1,
		       "X25519 refused: %s", why);
		is_int(parse(json_pack("{s:s, s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x", x, "alg", "ES256"),
			     NULL, &why), -1, "Ed25519 with alg ES256 refused: %s", why);
		free(x);
		EVP_PKEY_free(ed);
	}
	is_int(parse(json_pack("{s:s}", "n", "AQAB"), NULL, &why), -1, "no kty refused: %s", why);

	is_int(parse(ec_jwk(p256, "P-256", 32), &key, &why), 0, "EC P-256: %s", why);
	ok(key.kty == JWK_EC && strcmp(key.curve, "prime256v1") == 0 && EVP_PKEY_eq(key.pkey, p256) == 1,
	   "EC P-256: the same public key on prime256v1");
	EVP_PKEY_free(key.pkey);
	is_int(parse(ec_jwk(p384, "P-384", 48), NULL, &why), 0, "EC P-384");
	is_int(parse(ec_jwk(p521, "P-521", 66), NULL, &why), 0, "EC P-521");
	is_int(parse(ec_jwk(p384, "P-256", 48), NULL, &why), -1, "a P-384 point named P-256 refused: %s", why);
	is_int(parse(ec_jwk(p256, "P-192", 32), NULL, &why), -1, "P-192 refused: %s", why);
	o = ec_jwk(p256, "P-256", 32);
	json_object_set_new(o, "alg", json_string("ES384"));
	is_int(parse(o, NULL, &why), -1, "P-256 with alg ES384 refused: %s", why);
	o = ec_jwk(p256, "P-256", 32);
	json_object_set_new(o, "alg", json_string("ES256"));
	is_int(parse(o, NULL, &why), 0, "P-256 with alg ES256");
	/* y of another point: not on the curve (or not this key) */
	o = ec_jwk(p256, "P-256", 32);
	{
		EVP_PKEY *other = EVP_EC_gen("P-256");
		char *y = b64u_bn(other, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
		unsigned char raw[32];
		size_t n;
		b64_decode(raw, &n, y, strlen(y), B64_URL | B64_NOPAD);
		free(y);
		raw[31] ^= 1;
		y = b64_encode_alloc(raw, 32, B64_URL | B64_NOPAD);
		json_object_set_new(o, "y", json_string(y));
		free(y);
		EVP_PKEY_free(other);
	}
	is_int(parse(o, NULL, &why), -1, "a point not on the curve refused: %s", why);

	EVP_PKEY_free(rsa);
	EVP_PKEY_free(small);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(p521);
}

/* tok_keys_init of SETTINGS (JSON text): its rc, the first error in ERR. */
static int init(const char *settings, char *err, size_t n)
{
	json_t *s = json_loads(settings, 0, NULL);
	struct conf_report rep = { 0 };
	struct tok_keys k;
	int rc = tok_keys_init(&k, s, "client.token", &rep);

	snprintf(err, n, "%s", rep.nerrors ? rep.errors[0] : "");
	tok_keys_free(&k);
	conf_report_free(&rep);
	json_decref(s);
	return rc;
}

static void test_settings(void)
{
	char err[512];

	is_int(init("{\"jwks_public_endpoint\":\"https://example.com/.well-known/jwks.json\"}", err, sizeof(err)), RT_OK,
	       "an https endpoint %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"http://127.0.0.1:8080/jwks\"}", err, sizeof(err)), RT_OK,
	       "an http endpoint with a port");
	is_int(init("{\"jwks_public_endpoint\":\"example.com/jwks\"}", err, sizeof(err)), RT_INVAL, "no scheme");
	is_str(err, "client.token.jwks_public_endpoint: must be an http:// or https:// URL, got \"example.com/jwks\"",
	       "no scheme: the message");
	is_int(init("{\"jwks_public_endpoint\":\"https:///jwks\"}", err, sizeof(err)), RT_INVAL, "no host: %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"https://a b/\"}", err, sizeof(err)), RT_INVAL, "a space: %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"https://x/{{t}}\",\"issuer_regex\":\"^(?P<t>a|b)$\"}", err, sizeof(err)),
	       RT_OK, "placeholder from an issuer_regex list %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"https://x/{{t}}\",\"audience_regex\":\"^(?<t>a|b\\\\.c)$\"}", err,
		    sizeof(err)), RT_OK, "placeholder from an audience_regex list with an escaped dot %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"https://x/{{t}}\",\"issuer_regex\":\"^(?P<t>(?:a|b)c)$\"}", err,
		    sizeof(err)), RT_OK, "a non-capturing group in the list %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"https://x/{{t}}\",\"issuer_regex\":\"^(?P<t>.+)$\"}", err, sizeof(err)),
	       RT_INVAL, "a wildcard group refused: %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"https://x/{{t}}\",\"issuer_regex\":\"^(?P<t>\\\\w+)$\"}", err,
		    sizeof(err)), RT_INVAL, "\\w refused: %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"https://x/{{t}}\",\"issuer_regex\":\"^[a-z](?P<t>a|b)$\"}", err,
		    sizeof(err)), RT_INVAL, "a class elsewhere in the regex refused: %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"https://x/{{t}}\",\"issuer_regex\":\"^(?P<t>.+)$\","
		    "\"insecure_skip_jwks_endpoint_safety_check\":true}", err, sizeof(err)), RT_OK,
	       "the escape hatch %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"https://x/{{t}}\",\"issuer_regex\":\"^(?P<u>a|b)$\"}", err, sizeof(err)),
	       RT_INVAL, "a placeholder with no group: %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"https://x/{{t\"}", err, sizeof(err)), RT_INVAL, "unclosed {{: %s", err);
	is_int(init("{\"jwks_public_endpoint\":\"https://x/\",\"insecure_skip_jwks_endpoint_safety_check\":1}", err,
		    sizeof(err)), RT_INVAL, "the escape hatch must be a boolean: %s", err);
}

/* An RS256 token naming KID, signed by nobody (the key is never found). */
static char *token_with_kid(const char *kid)
{
	json_t *h = json_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT", "kid", kid);
	char *hs = json_dumps(h, JSON_COMPACT), *he = b64_encode_alloc(hs, strlen(hs), B64_URL | B64_NOPAD);
	char *t = xasprintf("%s.eyJzdWIiOiJ1In0.AAAA", he);

	json_decref(h);
	free(hs);
	free(he);
	return t;
}

static int waited;
static void wait_cb(void *arg)
{
	(void)arg;
	waited++;
}

static void test_verify(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct conf_report rep = { 0 };
	struct tok_keys k;
	json_t *s, *claims;
	const char *why;
	char *url, *t = token_with_kid("k1");
	struct ev_loop *loop = ev_default_loop(0);
	double t0;

	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &al);
	close(fd); /* a refused port */
	url = xasprintf("http://127.0.0.1:%d/jwks", ntohs(a.sin_port));
	s = json_pack("{s:s, s:s}", "jwks_public_endpoint", url, "hmac_secret_key", "secret");
	is_int(tok_keys_init(&k, s, "client.token", &rep), RT_OK, "a JWKS verifier");

	/* no loop: rotorctl */
	is_int(tok_verify(&k, t, strlen(t), 1700000000, &claims, &why), TOK_INVALID, "without a loop: invalid");
	is_str(why, "invalid token: public key not found", "without a loop: why");

	jwks_init(loop);
	is_int(tok_verify(&k, t, strlen(t), 1700000000, &claims, &why), TOK_PENDING, "a key to fetch: pending");
	tok_jwks_wait(wait_cb, NULL);
	is_int(waited, 0, "the wait is not answered inside the call");
	t0 = ev_time();
	while (waited == 0 && ev_time() - t0 < 5)
		ev_run(loop, EVRUN_ONCE);
	is_int(waited, 1, "the wait is answered when the fetch failed");
	is_int(jwks_fetches(url), 1, "one fetch");
	is_int(tok_verify(&k, t, strlen(t), 1700000000, &claims, &why), TOK_INVALID, "after the fetch: invalid");
	is_str(why, "invalid token: public key not found", "after the fetch: why");
	free(t);
	t = token_with_kid("k2");
	is_int(tok_verify(&k, t, strlen(t), 1700000000, &claims, &why), TOK_INVALID,
	       "another kid within the interval: invalid at once");
	is_int(jwks_fetches(url), 1, "still one fetch");
	free(t);
	t = token_with_kid("");
	is_int(tok_verify(&k, t, strlen(t), 1700000000, &claims, &why), TOK_INVALID, "an empty kid");
	is_str(why, "invalid token: kid is not provided", "an empty kid: why");
	jwks_wait(url, wait_cb, NULL);
	ev_run(loop, EVRUN_NOWAIT);
	is_int(waited, 2, "a wait with no fetch in flight is answered from the loop");

	jwks_shutdown();
	tok_keys_free(&k);
	conf_report_free(&rep);
	json_decref(s);
	free(url);
	free(t);
	upstream_shutdown();
}

int main(void)
{
	log_set_level(getenv("JWKS_LOG") ? LOG_DEBUG : LOG_ERROR);
	test_parse();
	test_settings();
	test_verify();
	return tap_done();
}
