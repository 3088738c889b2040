/*
 * jwks.c - a worker's JSON Web Key Set cache (see jwks.h), Centrifugo's
 * internal/jwks rewritten for one event loop.
 *
 * Model. One struct jep per endpoint URL (a template already filled in)
 * holds the keys fetched from it, each under its kid, and at most one fetch
 * in flight (two attempts of JWKS_TIMEOUT_MS, as Centrifugo). A fetch
 * answers every waiter of its URL when it is over; it adds or replaces the
 * keys the set lists (keys the set no longer lists stay until their TTL,
 * JWKS_TTL_S after their last use, as Centrifugo's TTL cache), and a failed
 * fetch changes no key: an outage of the identity provider keeps the
 * cached keys working.
 *
 * Rate limit. A miss starts a fetch only when none is in flight for the
 * URL and the previous one ended at least JWKS_REFETCH_MIN_MS ago; any
 * other miss is JWKS_MISSING at once, the answer an invalid token gets.
 * Forged kids thus never cost more than one request per interval, and a
 * token that waited for a fetch and still finds no key is refused (its
 * second look comes right after the fetch ended), never made to wait
 * again.
 *
 * The kid is only ever a key of this in-memory table (never a path, a URL
 * or a file), and "oct" (symmetric) keys are never loaded: a JWKS cannot
 * turn a public key into an HMAC secret (security-and-faults.md, alg
 * confusion).
 */
#include "config.h"
#include "jwks.h"
#include "b64.h"
#include "log.h"
#include "upstream.h"
#include "util.h"

#include <ev.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdlib.h>
#include <string.h>

#define JWKS_URLS_MAX 256

struct jentry {
	struct jentry *next;
	char *kid;
	struct jwk key;
	int64_t used_s;
};

struct jwaiter {
	struct jwaiter *next;
	void (*done)(void *arg);
	void *arg;
};

struct jep {
	struct jep *next;
	char *url;
	struct jentry *keys;
	struct upstream_req *req;      /* the fetch in flight */
	int attempt;
	bool fetched;                  /* a fetch was ever started */
	ev_tstamp ended;               /* when the last one ended */
	uint64_t fetches;
	struct jwaiter *waiters;
};

static struct {
	struct ev_loop *loop;
	struct jep *eps;
	unsigned neps, nkeys;
	struct jwaiter *later;         /* waits with no fetch in flight */
	ev_timer later_w;
} J;

/* ---- keys ------------------------------------------------------------------- */

/* Base64url (padded or not) of a JSON string member into a new buffer. */
static unsigned char *b64_member(const json_t *o, const char *name, size_t *len)
{
	const char *s = json_string_value(json_object_get(o, name));
	unsigned char *out;
	size_t n;

	if (s == NULL)
		return NULL;
	n = strlen(s);
	while (n > 0 && s[n - 1] == '=')
		n--;
	out = xmalloc(b64_decoded_max(n) + 1);
	if (n == 0 || b64_decode(out, len, s, n, B64_URL | B64_NOPAD) != RT_OK) {
		free(out);
		return NULL;
	}
	return out;
}

/* PKEY from BLD's parameters, as a public key of TYPE, checked. */
static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL), *check = NULL;
	EVP_PKEY *pkey = NULL;

	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (check == NULL || EVP_PKEY_public_check(check) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
out:
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	ERR_clear_error();
	return pkey;
}

static EVP_PKEY *rsa_key(const json_t *o, const char **why)
{
	size_t nlen, elen;
	unsigned char *n = b64_member(o, "n", &nlen), *e = b64_member(o, "e", &elen);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	BIGNUM *bn = NULL, *be = NULL;
	EVP_PKEY *pkey = NULL;

	*why = "RSA key without valid n and e";
	if (n == NULL || e == NULL || bld == NULL)
		goto out;
	bn = BN_bin2bn(n, (int)nlen, NULL);
	be = BN_bin2bn(e, (int)elen, NULL);
	if (bn == NULL || be == NULL || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) != 1)
		goto out;
	pkey = from_params("RSA", bld);
	if (pkey != NULL && EVP_PKEY_get_bits(pkey) < 1024) {
		*why = "RSA key shorter than 1024 bits";
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
out:
	BN_free(bn);
	BN_free(be);
	OSSL_PARAM_BLD_free(bld);
	free(n);
	free(e);
	return pkey;
}

static const struct {
	const char *crv, *group, *alg;
	size_t bytes;
} curves[] = {
	{ "P-256", "prime256v1", "ES256", 32 },
	{ "P-384", "secp384r1", "ES384", 48 },
	{ "P-521", "secp521r1", "ES512", 66 },
};

static EVP_PKEY *ec_key(const json_t *o, struct jwk *key, const char **why)
{
	const char *crv = json_string_value(json_object_get(o, "crv"));
	size_t i, xlen = 0, ylen = 0;
	unsigned char *x = NULL, *y = NULL, pub[1 + 2 * 66];
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;

	for (i = 0; crv != NULL && i < ROTOR_ARRAY_LEN(curves); i++)
		if (strcmp(crv, curves[i].crv) == 0)
			break;
	if (crv == NULL || i == ROTOR_ARRAY_LEN(curves)) {
		*why = "EC key on a curve other than P-256, P-384, P-521";
		return NULL;
	}
	snprintf(key->curve, sizeof(key->curve), "%s", curves[i].group);
	*why = "EC key without valid x and y";
	x = b64_member(o, "x", &xlen);
	y = b64_member(o, "y", &ylen);
	if (x == NULL || y == NULL || xlen != curves[i].bytes || ylen != curves[i].bytes)
		goto out;
	pub[0] = 0x04; /* uncompressed point */
	memcpy(pub + 1, x, xlen);
	memcpy(pub + 1 + xlen, y, ylen);
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curves[i].group, 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + xlen + ylen) != 1)
		goto out;
	pkey = from_params("EC", bld); /* the point must be on the curve */
out:
	OSSL_PARAM_BLD_free(bld);
	free(x);
	free(y);
	return pkey;
}

int jwks_parse_key(const json_t *o, struct jwk *key, const char **why)
{
	const char *kty = json_string_value(json_object_get(o, "kty"));
	const char *use = json_string_value(json_object_get(o, "use"));
	const json_t *alg = json_object_get(o, "alg");
	const char *a = json_string_value(alg);

	memset(key, 0, sizeof(*key));
	if (!json_is_object(o) || kty == NULL) {
		*why = "not a JWK (no kty)";
		return -1;
	}
	if (json_object_get(o, "use") != NULL && (use == NULL || strcmp(use, "sig") != 0)) {
		*why = "not a signature key (use is not \"sig\")";
		return -1;
	}
	if (alg != NULL && (a == NULL || strlen(a) >= sizeof(key->alg))) {
		*why = "unsupported alg";
		return -1;
	}
	if (strcmp(kty, "RSA") == 0) {
		key->kty = JWK_RSA;
		if (a != NULL && strcmp(a, "RS256") != 0 && strcmp(a, "RS384") != 0 && strcmp(a, "RS512") != 0) {
			*why = "RSA key for an algorithm other than RS256, RS384, RS512";
			return -1;
		}
		key->pkey = rsa_key(o, why);
	} else if (strcmp(kty, "EC") == 0) {
		key->kty = JWK_EC;
		key->pkey = ec_key(o, key, why);
		for (size_t i = 0; key->pkey != NULL && a != NULL && i < ROTOR_ARRAY_LEN(curves); i++) {
			if (strcmp(key->curve, curves[i].group) == 0 && strcmp(a, curves[i].alg) != 0) {
				*why = "EC key for an algorithm other than the ES* of its curve";
				EVP_PKEY_free(key->pkey);
				key->pkey = NULL;
			}
		}
	} else if (strcmp(kty, "OKP") == 0) {
		const char *crv = json_string_value(json_object_get(o, "crv"));
		size_t xlen;
		unsigned char *x;

		key->kty = JWK_OKP;
		if (crv == NULL || strcmp(crv, "Ed25519") != 0) {
			*why = "OKP key on a curve other than Ed25519";
			return -1;
		}
		if (a != NULL && strcmp(a, "EdDSA") != 0) {
			*why = "Ed25519 key for an algorithm other than EdDSA";
			return -1;
		}
		*why = "Ed25519 key without a valid x";
		x = b64_member(o, "x", &xlen);
		if (x != NULL && xlen == 32)
			key->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, xlen);
		free(x);
		ERR_clear_error();
	} else {
		*why = "kty other than RSA, EC and OKP";
		return -1;
	}
	if (key->pkey == NULL)
		return -1;
	snprintf(key->alg, sizeof(key->alg), "%s", a ? a : "");
	*why = "ok";
	return 0;
}

static void entry_free(struct jentry *e)
{
	EVP_PKEY_free(e->key.pkey);
	free(e->kid);
	free(e);
	J.nkeys--;
}

/* Makes room for one more key: drops the least recently used one. */
static void evict_one(void)
{
	struct jentry **victim = NULL, **pe, *e;
	struct jep *ep;

	for (ep = J.eps; ep != NULL; ep = ep->next)
		for (pe = &ep->keys; *pe != NULL; pe = &(*pe)->next)
			if (victim == NULL || (*pe)->used_s < (*victim)->used_s)
				victim = pe;
	if (victim != NULL) {
		e = *victim;
		*victim = e->next;
		entry_free(e);
	}
}

static void add_key(struct jep *ep, const char *kid, struct jwk *key)
{
	struct jentry *e;

	for (e = ep->keys; e != NULL; e = e->next) {
		if (strcmp(e->kid, kid) == 0) {
			EVP_PKEY_free(e->key.pkey);
			e->key = *key;
			e->used_s = (int64_t)ev_now(J.loop);
			return;
		}
	}
	if (J.nkeys >= JWKS_KEYS_MAX)
		evict_one();
	e = xcalloc(1, sizeof(*e));
	e->kid = xstrdup(kid);
	e->key = *key;
	e->used_s = (int64_t)ev_now(J.loop);
	e->next = ep->keys;
	ep->keys = e;
	J.nkeys++;
}

/* Loads the key set BODY fetched from EP; false when it is not one. */
static bool load_set(struct jep *ep, const char *body, size_t len)
{
	json_error_t jerr;
	json_t *set = json_loadb(body, len, 0, &jerr), *keys, *o;
	size_t i, loaded = 0;
	const char *why;
	struct jwk key;

	keys = json_object_get(set, "keys");
	if (!json_is_array(keys)) {
		log_warn("jwks %s: not a JSON Web Key Set (an object with a \"keys\" array)", ep->url);
		json_decref(set);
		return false;
	}
	json_array_foreach(keys, i, o) {
		const char *kid = json_string_value(json_object_get(o, "kid"));
		if (kid == NULL || *kid == '\0') {
			log_warn("jwks %s: key %zu without a kid: skipped", ep->url, i);
			continue;
		}
		if (jwks_parse_key(o, &key, &why) < 0) {
			log_warn("jwks %s: key %s: %s: skipped", ep->url, kid, why);
			continue;
		}
		add_key(ep, kid, &key);
		loaded++;
	}
	log_info("jwks %s: %zu keys loaded", ep->url, loaded);
	json_decref(set);
	return true;
}

/* ---- fetches ---------------------------------------------------------------- */

static void answer(struct jwaiter *w)
{
	while (w != NULL) {
		struct jwaiter *next = w->next;
		w->done(w->arg);
		free(w);
		w = next;
	}
}

static void fetch_done(void *arg, const struct upstream_resp *r);

/* Starts an attempt on EP; false when it could not start. */
static bool attempt(struct jep *ep)
{
	static const struct upstream_header accept[] = { { "Accept", "application/json", 16 } };
	char err[256];
	struct upstream *u = upstream_get(J.loop, ep->url, NULL, err, sizeof(err));

	if (u == NULL) {
		log_warn("jwks %s: %s", ep->url, err);
		return false;
	}
	ep->attempt++;
	ep->req = upstream_request(u, "GET", upstream_url_target(ep->url), accept, 1, NULL, 0, JWKS_BODY_MAX,
				   JWKS_TIMEOUT_MS, fetch_done, ep);
	return true;
}

static const char *err_name(enum upstream_err e)
{
	switch (e) {
	case UPSTREAM_OK: return "ok";
	case UPSTREAM_ETIMEDOUT: return "timed out";
	case UPSTREAM_ECONNECT: return "cannot connect";
	case UPSTREAM_ETLS: return "TLS handshake or certificate check failed";
	case UPSTREAM_ECLOSED: return "connection closed";
	case UPSTREAM_ETOOBIG: return "response too big";
	case UPSTREAM_EPROTO: return "not an HTTP response";
	case UPSTREAM_ESHUTDOWN: return "shutting down";
	}
	return "?";
}

static void fetch_done(void *arg, const struct upstream_resp *r)
{
	struct jep *ep = arg;
	struct jwaiter *w;

	ep->req = NULL;
	if (r->err == UPSTREAM_ESHUTDOWN)
		return; /* jwks_shutdown frees the rest */
	if (r->err == UPSTREAM_OK && r->status == 200) {
		if (!load_set(ep, r->body, r->len))
			log_warn("jwks %s: the keys cached before stay", ep->url);
	} else {
		if (r->err == UPSTREAM_OK)
			log_warn("jwks %s: HTTP status %d", ep->url, r->status);
		else
			log_warn("jwks %s: %s", ep->url, err_name(r->err));
		if (ep->attempt < JWKS_ATTEMPTS && attempt(ep))
			return;
	}
	ep->ended = ev_now(J.loop);
	w = ep->waiters;
	ep->waiters = NULL;
	answer(w);
}

static struct jep *jep_find(const char *url)
{
	for (struct jep *ep = J.eps; ep != NULL; ep = ep->next)
		if (strcmp(ep->url, url) == 0)
			return ep;
	return NULL;
}

int jwks_find(const char *url, const char *kid, int64_t now_s, const struct jwk **key)
{
	struct jep *ep;
	struct jentry **pe, *e;

	*key = NULL;
	if (J.loop == NULL)
		return JWKS_MISSING;
	ep = jep_find(url);
	if (ep != NULL) {
		for (pe = &ep->keys; (e = *pe) != NULL; pe = &e->next) {
			if (strcmp(e->kid, kid) != 0)
				continue;
			if (now_s - e->used_s > JWKS_TTL_S) {
				*pe = e->next; /* expired: as if never fetched */
				entry_free(e);
				break;
			}
			e->used_s = now_s;
			*key = &e->key;
			return JWKS_FOUND;
		}
		if (ep->req != NULL)
			return JWKS_PENDING;
		if (ep->fetched && (ev_now(J.loop) - ep->ended) * 1000 < JWKS_REFETCH_MIN_MS)
			return JWKS_MISSING;
	} else {
		if (J.neps >= JWKS_URLS_MAX) {
			log_warn("jwks %s: more than %d endpoint URLs: refused", url, JWKS_URLS_MAX);
			return JWKS_MISSING;
		}
		ep = xcalloc(1, sizeof(*ep));
		ep->url = xstrdup(url);
		ep->next = J.eps;
		J.eps = ep;
		J.neps++;
	}
	ep->fetched = true;
	ep->attempt = 0;
	ep->fetches++;
	log_debug("jwks %s: fetching for kid %s", url, kid);
	if (attempt(ep))
		return JWKS_PENDING;
	ep->ended = ev_now(J.loop);
	return JWKS_MISSING;
}

static void later_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct jwaiter *l = J.later;

	(void)loop, (void)w, (void)revents;
	J.later = NULL;
	answer(l);
}

void jwks_wait(const char *url, void (*done)(void *arg), void *arg)
{
	struct jep *ep = J.loop ? jep_find(url) : NULL;
	struct jwaiter *w = xcalloc(1, sizeof(*w));

	w->done = done;
	w->arg = arg;
	if (ep != NULL && ep->req != NULL) {
		w->next = ep->waiters;
		ep->waiters = w;
		return;
	}
	w->next = J.later;
	J.later = w;
	if (J.loop != NULL)
		ev_timer_start(J.loop, &J.later_w);
}

uint64_t jwks_fetches(const char *url)
{
	struct jep *ep = jep_find(url);
	return ep ? ep->fetches : 0;
}

void jwks_init(struct ev_loop *loop)
{
	if (J.loop == loop)
		return;
	J.loop = loop;
	ev_timer_init(&J.later_w, later_cb, 0., 0.);
}

static void free_waiters(struct jwaiter *w)
{
	while (w != NULL) {
		struct jwaiter *next = w->next;
		free(w);
		w = next;
	}
}

void jwks_shutdown(void)
{
	struct jep *ep;
	struct jentry *e;

	while ((ep = J.eps) != NULL) {
		J.eps = ep->next;
		if (ep->req != NULL)
			upstream_cancel(ep->req);
		while ((e = ep->keys) != NULL) {
			ep->keys = e->next;
			entry_free(e);
		}
		free_waiters(ep->waiters);
		free(ep->url);
		free(ep);
	}
	J.neps = 0;
	free_waiters(J.later);
	J.later = NULL;
	if (J.loop != NULL)
		ev_timer_stop(J.loop, &J.later_w);
	J.loop = NULL;
}
