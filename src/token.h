/*
 * token.h - Centrifugo connection and subscription tokens (JWT): verifying
 * them with the configured keys, reading their claims the way Centrifugo
 * does, and signing HMAC tokens for rotorctl and the tests.
 */
#ifndef ROTOR_TOKEN_H
#define ROTOR_TOKEN_H

#include "rotor.h"
#include <jansson.h>
#include <regex.h>
#include <stdbool.h>

struct conf;
struct conf_report;
struct evp_pkey_st; /* OpenSSL's EVP_PKEY */

/* Longest token accepted; a longer one is invalid before any parsing. */
#define TOK_MAX_LEN 8192

/* Results of tok_verify*. How the caller reports them (server-api.md 2.4):
 * on connect, TOK_EXPIRED is error 109 "token expired" and TOK_INVALID is
 * disconnect 3500 "invalid token"; on subscribe, 109 and 103. */
enum {
	TOK_OK = 0,
	TOK_EXPIRED = 1, /* exp passed or nbf in the future; a fresh token will do */
	TOK_INVALID = 2, /* anything else: format, algorithm, signature, claims */
	TOK_PENDING = 3, /* JWKS: the token's key is being fetched; see tok_jwks_wait */
};

/* Verifier state for one token configuration (client.token.*, or
 * client.subscription_token.* when that is enabled). Built by tok_keys_init
 * or tok_keys_from_conf, read-only afterwards, released by tok_keys_free. A
 * reload builds a new one and frees the old. */
struct tok_keys {
	/* Settings, named as in the config; owned copies, "" when unset. */
	char *hmac_secret_key;
	/* Key rotation: HS* tokens signed with the previous secret are still
	 * accepted until the unix time valid_until (0: no limit). */
	char *hmac_previous_secret_key;
	int64_t hmac_previous_secret_key_valid_until;
	char *rsa_public_key;   /* as configured (SPKI or PKCS#1 PEM) */
	char *ecdsa_public_key; /* as configured (SPKI PEM) */
	char *audience;
	char *audience_regex;
	char *issuer;
	char *issuer_regex;
	char *user_id_claim;
	/* JWKS URL template; when set, only JWKS keys verify signatures. */
	char *jwks_public_endpoint;
	bool insecure_skip_jwks_endpoint_safety_check;
	/* client.insecure_skip_token_signature_verify: the caller sets it after
	 * init; when true no signature and no algorithm is checked at all. */
	bool insecure_skip_verify;

	/* Derived by init; private to token.c. */
	unsigned algs;              /* accepted algorithms, one bit each */
	char *rsa_pem, *ec_pem;     /* keys re-encoded as SPKI PEM for libjwt */
	struct evp_pkey_st *rsa, *ec;
	regex_t *audience_re, *issuer_re;
	char **audience_groups, **issuer_groups; /* group names by number (NULL: unnamed) */
	size_t naudience_groups, nissuer_groups;
};

/* Builds K from SETTINGS, a JSON object whose members are named like the
 * keys of client.token (hmac_secret_key, hmac_previous_secret_key,
 * hmac_previous_secret_key_valid_until, rsa_public_key, ecdsa_public_key,
 * jwks_public_endpoint, insecure_skip_jwks_endpoint_safety_check,
 * audience, audience_regex, issuer, issuer_regex, user_id_claim; others are
 * ignored, missing or null means unset). SECTION ("client.token") prefixes
 * the key names in problems added to REP: a PEM that is not a public key of
 * the right type, an ECDSA curve other than P-256/384/521, audience together
 * with audience_regex (likewise issuer), a regex that does not compile, a
 * user_id_claim not matching ^[a-zA-Z_]+$, a previous HMAC secret without a
 * current one, a JWKS endpoint that is not an http(s) URL, whose {{name}}
 * placeholders are not named groups of issuer_regex or audience_regex, or
 * (unless insecure_skip_jwks_endpoint_safety_check) whose groups are not
 * explicit lists of values (Centrifugo's safety check: the values come from
 * unverified claims). Returns RT_OK, or RT_INVAL with
 * every problem reported and K left empty (tok_keys_free is still safe). A
 * configuration without any key is valid: every token is then invalid. */
int tok_keys_init(struct tok_keys *k, const json_t *settings, const char *section,
		  struct conf_report *rep);

/* Same, reading SECTION.* from C ("client.token" or
 * "client.subscription_token"), plus client.insecure_skip_token_signature_verify. */
int tok_keys_from_conf(struct tok_keys *k, const struct conf *c, const char *section,
		       struct conf_report *rep);

void tok_keys_free(struct tok_keys *k);

/* Verifies the LEN bytes of TOKEN (no NUL needed) at NOW_S (unix seconds)
 * following Centrifugo's rules, in its order: format, claim types, aud/iss,
 * algorithm and signature, then exp/nbf. On TOK_OK, *CLAIMS is the payload
 * object (the caller owns a reference). Otherwise *CLAIMS is NULL and *WHY
 * a static text for logs and rotorctl ("token expired", "invalid token:
 * bad signature", ...). On TOK_OK *WHY is "ok".
 *
 * With a JWKS endpoint, the key is the token's kid in jwks.c's cache; when
 * it is not there, a fetch may be under way: TOK_PENDING, and the caller
 * calls tok_jwks_wait at once, then verifies the same token again when
 * told (that second verification never gives TOK_PENDING for the same
 * reason: a kid still missing after the fetch is TOK_INVALID). Without a
 * worker loop (rotorctl) a JWKS key is never found. */
int tok_verify(const struct tok_keys *k, const char *token, size_t len, int64_t now_s,
	       json_t **claims, const char **why);
/* As tok_verify, plus the connection-token rule: a non-empty `channel`
 * claim makes the token invalid (checked before exp). */
int tok_verify_connect(const struct tok_keys *k, const char *token, size_t len,
		       int64_t now_s, json_t **claims, const char **why);
/* As tok_verify, plus the subscription-token rule: `channel` must be a
 * non-empty string (checked after exp). The caller still compares it with
 * the channel asked for, and `sub` with the connection's user. */
int tok_verify_subscribe(const struct tok_keys *k, const char *token, size_t len,
			 int64_t now_s, json_t **claims, const char **why);

/* After a tok_verify* that returned TOK_PENDING (and before any other):
 * DONE(ARG) when the fetch it waits for is over, never from within this
 * call. */
void tok_jwks_wait(void (*done)(void *arg), void *arg);

/* The user ID of verified CLAIMS: the user_id_claim of K when set (a number
 * or boolean turned into its JSON text, as Centrifugo's gjson does), else
 * `sub`. "" means anonymous. K may be NULL. The caller frees the result. */
char *tok_claim_sub(const struct tok_keys *k, const json_t *claims);

/* The `exp` of verified CLAIMS in unix seconds (a fraction dropped), or 0
 * when the token has none. */
int64_t tok_claim_exp(const json_t *claims);

/* Rewrites a Go (RE2) regular expression as configs write them into POSIX
 * extended syntax for regcomp: (?P<name>...), (?<name>...) and (?:...)
 * become plain groups, \d and \D become [0-9] and [^0-9] outside brackets;
 * other (? constructs are left for regcomp to refuse. Returns a new string
 * the caller frees. Shared by token audience/issuer and channel_regex. */
char *tok_regex_from_go(const char *re);

/* Signs CLAIMS (an object) with ALG "HS256", "HS384" or "HS512" and the
 * bytes of SECRET. Returns the token, which the caller frees with free(),
 * or NULL when SECRET is NULL or empty, ALG is not one of those, or CLAIMS
 * is not an object. */
char *tok_sign_hmac(const char *secret, const char *alg, json_t *claims);

#endif
