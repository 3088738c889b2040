/*
 * jwks.h - a worker's cache of JSON Web Key Sets (client.token.
 * jwks_public_endpoint and the subscription token's), fetched over
 * upstream.h on the worker's loop.
 *
 * Keys are cached per (endpoint URL, kid); a URL here is the endpoint
 * after its template variables were filled in (token.c does that). A kid
 * that is not cached starts a fetch of its URL unless one is in flight or
 * the last one ended less than JWKS_REFETCH_MIN_MS ago: a flood of
 * forged kids costs the identity provider at most one request per
 * endpoint per interval and worker. A failed fetch keeps every cached key.
 */
#ifndef ROTOR_JWKS_H
#define ROTOR_JWKS_H

#include <stdbool.h>
#include <stdint.h>

struct ev_loop;
struct evp_pkey_st; /* OpenSSL's EVP_PKEY */

#define JWKS_REFETCH_MIN_MS 2000   /* from the end of a fetch of a URL to the next */
#define JWKS_TIMEOUT_MS 1000       /* one attempt (Centrifugo: 1 s, 2 attempts) */
#define JWKS_ATTEMPTS 2
#define JWKS_TTL_S 3600            /* a key unused this long is forgotten */
#define JWKS_BODY_MAX (1u << 20)
#define JWKS_KEYS_MAX 4096         /* cached keys over all URLs */

enum jwk_kty { JWK_RSA, JWK_EC, JWK_OKP };

/* A cached public key. ALG is the JWK's "alg" ("" when it has none);
 * CURVE the OpenSSL group name of an EC key ("prime256v1", ...). */
struct jwk {
	enum jwk_kty kty;
	char alg[8];
	char curve[16];
	struct evp_pkey_st *pkey;
};

enum {
	JWKS_FOUND,    /* *KEY is valid until the loop runs again */
	JWKS_PENDING,  /* a fetch that may bring it is in flight: jwks_wait */
	JWKS_MISSING,  /* not cached and no fetch now: the token is invalid */
};

/* Makes the cache work on LOOP (a worker, after fork). Without it (rotorctl)
 * jwks_find answers JWKS_MISSING. Safe to call again (a reload). */
void jwks_init(struct ev_loop *loop);

/* The key KID of URL: JWKS_FOUND with *KEY, JWKS_PENDING (a fetch was
 * started now or is in flight), or JWKS_MISSING. NOW_S for the TTL. */
int jwks_find(const char *url, const char *kid, int64_t now_s, const struct jwk **key);

/* DONE(ARG) once the fetch of URL in flight is over (whatever it brought),
 * never from within this call; at once (from a zero timer) when none is.
 * The wait cannot be cancelled: DONE must cope with its caller gone. */
void jwks_wait(const char *url, void (*done)(void *arg), void *arg);

/* How many fetches of URL were started (for tests and logs). */
uint64_t jwks_fetches(const char *url);

/* Forgets every key and waiter (waiters are not called): a worker that
 * stops. */
void jwks_shutdown(void);

/* Turns one JWK (a JSON object) into KEY: kty RSA (n, e), EC (crv P-256,
 * P-384 or P-521, x, y) or OKP (crv Ed25519, x), "use" absent or "sig", an
 * "alg" (if any) of the key's family and curve. -1 with a reason in *WHY
 * otherwise. */
struct json_t;
int jwks_parse_key(const struct json_t *jwk, struct jwk *key, const char **why);

#endif
