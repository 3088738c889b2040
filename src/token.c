/*
 * token.c - verifying and signing Centrifugo tokens (JWT).
 *
 * Model: Centrifugo's internal/jwtverify (v6) over libjwt 1.10.2, following
 * security-and-faults.md 3.2. libjwt 1.10.2 checks no claim, skips the
 * signature when given no key, and happily verifies HS256 with an RSA PEM as
 * the secret; so it is never trusted to choose anything. For every token:
 *
 *   1. format: three base64url parts (alphabet only, no '=', canonical
 *      signature), at most TOK_MAX_LEN bytes, a header that is a JSON object
 *      without duplicate keys and starts with {" (Centrifugo's parser insists
 *      on the "eyJ" prefix), a payload that is a JSON object;
 *   2. claim types, as Go's json.Unmarshal into Centrifugo's claim structs
 *      would refuse them (sub must be a string, exp a number, ...);
 *   3. aud / iss against audience(_regex) / issuer(_regex);
 *   4. the algorithm named by the header must be one the configured keys
 *      enable (HMAC secret: HS256/384/512; RSA key: RS256/384/512; ECDSA key:
 *      the one ES* of its curve); the key is chosen by that family, so a key
 *      is never used for another family and is never empty;
 *   5. the signature: libjwt's jwt_decode with that key, then jwt_get_alg
 *      must name the same algorithm. libjwt refuses any `typ` other than
 *      "JWT"; Centrifugo ignores `typ` (at+jwt tokens from OAuth servers are
 *      fine), so a token with another typ is verified with OpenSSL directly
 *      instead, with the same key and the same algorithm;
 *   6. exp and nbf: TOK_EXPIRED when exp <= now or nbf > now.
 * Everything but 6 gives TOK_INVALID. The claims returned are parsed from
 * the verified payload bytes by jansson (duplicate keys: last wins, as Go).
 *
 * Invariants: a tok_keys bit in `algs` is set only when its key is loaded;
 * verification never allocates anything that outlives the call except the
 * returned claims.
 */
#include "config.h"
#include "token.h"
#include "b64.h"
#include "conf.h"
#include "jwks.h"
#include "util.h"

#include <jwt.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum family { FAM_HS, FAM_RS, FAM_ES, FAM_ED };

struct alg {
	const char *name;
	enum family fam;
	jwt_alg_t jwt;
	const char *md;  /* OpenSSL digest name */
	int ec_bytes;    /* ES*: size of R and of S in the signature */
	const char *curve; /* ES*: the one curve this algorithm uses */
};

static const struct alg algs[] = {
	{ "HS256", FAM_HS, JWT_ALG_HS256, "SHA256", 0, NULL },
	{ "HS384", FAM_HS, JWT_ALG_HS384, "SHA384", 0, NULL },
	{ "HS512", FAM_HS, JWT_ALG_HS512, "SHA512", 0, NULL },
	{ "RS256", FAM_RS, JWT_ALG_RS256, "SHA256", 0, NULL },
	{ "RS384", FAM_RS, JWT_ALG_RS384, "SHA384", 0, NULL },
	{ "RS512", FAM_RS, JWT_ALG_RS512, "SHA512", 0, NULL },
	{ "ES256", FAM_ES, JWT_ALG_ES256, "SHA256", 32, "prime256v1" },
	{ "ES384", FAM_ES, JWT_ALG_ES384, "SHA384", 48, "secp384r1" },
	{ "ES512", FAM_ES, JWT_ALG_ES512, "SHA512", 66, "secp521r1" },
	/* Ed25519, with JWKS keys only (libjwt 1.10 knows no EdDSA): no
	 * configured key enables it, so check_signature never sees it. */
	{ "EdDSA", FAM_ED, JWT_ALG_NONE, NULL, 0, NULL },
};

#define ALG_BIT(i) (1u << (i))

/* Exact, case-sensitive lookup, as Centrifugo compares algorithm names. */
static const struct alg *alg_find(const char *name, size_t *index)
{
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(algs); i++) {
		if (strcmp(algs[i].name, name) == 0) {
			if (index)
				*index = i;
			return &algs[i];
		}
	}
	return NULL;
}

/* ---- keys ---------------------------------------------------------------- */

static const char *const setting_names[] = {
	"hmac_secret_key", "hmac_previous_secret_key", "rsa_public_key", "ecdsa_public_key",
	"audience", "audience_regex", "issuer", "issuer_regex", "user_id_claim",
	"jwks_public_endpoint",
};

static char **setting_field(struct tok_keys *k, size_t i)
{
	char **f[] = {
		&k->hmac_secret_key, &k->hmac_previous_secret_key, &k->rsa_public_key,
		&k->ecdsa_public_key, &k->audience, &k->audience_regex, &k->issuer,
		&k->issuer_regex, &k->user_id_claim, &k->jwks_public_endpoint,
	};
	_Static_assert(ROTOR_ARRAY_LEN(f) == ROTOR_ARRAY_LEN(setting_names), "one field per setting");
	return f[i];
}

/* Loads a public key of TYPE ("RSA" or "EC") from PEM text, in any
 * structure OpenSSL knows (SubjectPublicKeyInfo, and PKCS#1 for RSA). */
static EVP_PKEY *load_public_pem(const char *pem, const char *type)
{
	EVP_PKEY *pkey = NULL;
	OSSL_DECODER_CTX *dctx;
	const unsigned char *p = (const unsigned char *)pem;
	size_t len = strlen(pem);

	dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, type, EVP_PKEY_PUBLIC_KEY,
					     NULL, NULL);
	if (dctx == NULL)
		return NULL;
	if (!OSSL_DECODER_from_data(dctx, &p, &len)) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	OSSL_DECODER_CTX_free(dctx);
	ERR_clear_error();
	if (pkey != NULL && !EVP_PKEY_is_a(pkey, type)) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	return pkey;
}

/* PKEY's public key as SPKI PEM text ("BEGIN PUBLIC KEY"), the only form
 * libjwt 1.10.2 reads. The caller frees it. */
static char *spki_pem(EVP_PKEY *pkey)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long n;

	if (bio == NULL)
		return NULL;
	if (PEM_write_bio_PUBKEY(bio, pkey) == 1) {
		n = BIO_get_mem_data(bio, &data);
		if (n > 0)
			out = xstrndup(data, (size_t)n);
	}
	BIO_free(bio);
	return out;
}

/* Rewrites the Go (RE2) constructs that configs use into POSIX extended
 * syntax: named groups (?P<name>...) and (?<name>...) and non-capturing
 * groups (?:...) become plain groups, \d and \D become [0-9] and [^0-9]
 * outside brackets. Other (? constructs are left for regcomp to refuse. */
char *tok_regex_from_go(const char *re)
{
	size_t n = strlen(re);
	char *out = xmalloc(n * 3 + 1), *o = out; /* \D becomes 6 bytes */
	bool in_class = false;

	for (size_t i = 0; i < n; i++) {
		if (re[i] == '\\' && i + 1 < n) {
			if (!in_class && (re[i + 1] == 'd' || re[i + 1] == 'D')) {
				o += sprintf(o, re[i + 1] == 'd' ? "[0-9]" : "[^0-9]");
			} else {
				*o++ = re[i];
				*o++ = re[i + 1];
			}
			i++;
			continue;
		}
		if (in_class) {
			if (re[i] == ']')
				in_class = false;
			*o++ = re[i];
			continue;
		}
		if (re[i] == '[') {
			in_class = true;
			*o++ = re[i++];
			if (i < n && re[i] == '^')
				*o++ = re[i++];
			if (i < n && re[i] == ']') /* a leading ] is literal */
				*o++ = re[i++];
			i--;
			continue;
		}
		if (re[i] == '(' && re[i + 1] == '?') {
			const char *name = NULL;
			if (re[i + 2] == ':') {
				*o++ = '(';
				i += 2;
				continue;
			}
			if (re[i + 2] == 'P' && re[i + 3] == '<')
				name = re + i + 4;
			else if (re[i + 2] == '<')
				name = re + i + 3;
			if (name != NULL && strchr(name, '>') != NULL) {
				*o++ = '(';
				i = (size_t)(strchr(name, '>') - re);
				continue;
			}
		}
		*o++ = re[i];
	}
	*o = '\0';
	return out;
}

static regex_t *compile_regex(const char *section, const char *key, const char *go_re,
			      struct conf_report *rep)
{
	regex_t *re = xmalloc(sizeof(*re));
	char *posix = tok_regex_from_go(go_re);
	int rc = regcomp(re, posix, REG_EXTENDED);

	free(posix);
	if (rc != 0) {
		char msg[128];
		regerror(rc, re, msg, sizeof(msg));
		conf_report_error(rep, "%s.%s: not a regular expression rotor can use (%s)",
				  section, key, msg);
		free(re);
		return NULL;
	}
	return re;
}

static bool valid_user_id_claim(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
			return false;
	}
	return true;
}

/* ---- JWKS endpoint templates ---------------------------------------------- */

/* Steps over the character RE[I] of a Go regex (an escape, or a bracket
 * expression's opening, as a whole): the index of the next one. *PAREN is
 * '(' or ')' when RE[I] is a group's parenthesis, else 0; *IN_CLASS
 * follows bracket expressions. */
static size_t re_step(const char *re, size_t i, bool *in_class, char *paren)
{
	*paren = 0;
	if (re[i] == '\\' && re[i + 1])
		return i + 2;
	if (*in_class) {
		*in_class = re[i] != ']';
		return i + 1;
	}
	if (re[i] == '[') {
		*in_class = true;
		i++;
		if (re[i] == '^')
			i++;
		if (re[i] == ']') /* a leading ] is literal */
			i++;
		return i;
	}
	if (re[i] == '(' || re[i] == ')')
		*paren = re[i];
	return i + 1;
}

/* Index just past the group that opens at RE[I] ('('), or strlen(RE). */
static size_t group_end(const char *re, size_t i)
{
	int depth = 0;
	bool in_class = false;
	char paren;

	while (re[i]) {
		size_t next = re_step(re, i, &in_class, &paren);
		if (paren == '(')
			depth++;
		else if (paren == ')' && --depth == 0)
			return next;
		i = next;
	}
	return i;
}

/* The names of the capturing groups of the Go regex RE by number (index 0
 * is the whole match and unnamed groups are NULL), counted the way
 * tok_regex_from_go leaves them for regcomp. Returns how many entries
 * *NAMES has. */
static size_t group_names(const char *re, char ***names)
{
	size_t n = 1, i = 0;
	bool in_class = false;
	char paren;

	*names = xcalloc(strlen(re) + 1, sizeof(**names));
	while (re[i]) {
		size_t next = re_step(re, i, &in_class, &paren);
		if (paren == '(') {
			const char *name = NULL;
			if (re[i + 1] != '?')
				n++;
			else if (re[i + 2] == 'P' && re[i + 3] == '<')
				name = re + i + 4;
			else if (re[i + 2] == '<')
				name = re + i + 3;
			if (name != NULL && strchr(name, '>') != NULL)
				(*names)[n++] = xstrndup(name, (size_t)(strchr(name, '>') - name));
		}
		i = next;
	}
	return n;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; names != NULL && i < n; i++)
		free(names[i]);
	free(names);
}

/* Centrifugo's safety check of a regex whose named group NAME fills a
 * placeholder of the JWKS endpoint: no character class anywhere, and the
 * group only an explicit list of fixed values (literals, '|', groups).
 * NULL, or the problem. */
static const char *unsafe_group(const char *re, const char *name)
{
	size_t i, end, nl = strlen(name);

	for (i = 0; re[i]; i++) {
		if (re[i] == '[')
			return "contains a character class ([...])";
		if (re[i] == '\\' && re[i + 1]) {
			if (strchr("dDwWsSpP", re[i + 1]))
				return "contains a character class shorthand (\\d, \\w, \\s, \\p ...)";
			i++;
		}
	}
	for (i = 0; re[i]; i++) {
		if (re[i] == '\\' && re[i + 1]) {
			i++;
			continue;
		}
		if (re[i] != '(' || re[i + 1] != '?')
			continue;
		const char *p = re + i + 2;
		if (*p == 'P')
			p++;
		if (*p != '<' || strncmp(p + 1, name, nl) != 0 || p[1 + nl] != '>')
			continue;
		end = group_end(re, i);
		for (const char *q = p + 2 + nl; q < re + end - 1; q++) {
			if (*q == '\\' && q[1]) {
				if ((q[1] >= 'a' && q[1] <= 'z') || (q[1] >= 'A' && q[1] <= 'Z') ||
				    (q[1] >= '0' && q[1] <= '9'))
					return "uses an escape that is not a literal character";
				q++;
			} else if (strchr(".*+?{}^$", *q)) {
				return "is not an explicit list of allowed values (value1|value2|value3)";
			} else if (*q == '(' && q[1] == '?') {
				if (q[2] != ':')
					return "is not an explicit list of allowed values (value1|value2|value3)";
				q += 2; /* (?: groups only */
			}
		}
		return NULL;
	}
	return NULL;
}

/* Does Go regex RE (with group names NAMES, N entries) name group NAME? */
static bool has_group(char **names, size_t n, const char *name)
{
	for (size_t i = 1; i < n; i++)
		if (names[i] != NULL && strcmp(names[i], name) == 0)
			return true;
	return false;
}

/* Checks K's jwks_public_endpoint: an http(s) URL with a host, whose
 * placeholders name groups of the issuer or audience regex. */
static int check_jwks(struct tok_keys *k, const char *section, struct conf_report *rep)
{
	const char *url = k->jwks_public_endpoint, *p, *host, *e;
	int rc = RT_OK;

	if (strncmp(url, "http://", 7) == 0)
		host = url + 7;
	else if (strncmp(url, "https://", 8) == 0)
		host = url + 8;
	else {
		conf_report_error(rep, "%s.jwks_public_endpoint: must be an http:// or https:// URL, got \"%s\"",
				  section, url);
		return RT_INVAL;
	}
	if (*host == '\0' || *host == '/' || *host == ':' || strpbrk(url, " \t\r\n\"<>\\^`|") != NULL ||
	    memchr(host, '@', strcspn(host, "/?#")) != NULL) {
		conf_report_error(rep, "%s.jwks_public_endpoint: not a URL rotor can fetch (a host, no user "
				  "information, no spaces): \"%s\"", section, url);
		return RT_INVAL;
	}
	for (p = url; (p = strstr(p, "{{")) != NULL; p = e + 2) {
		char name[64];
		const char *why = NULL, *which = NULL;

		if ((e = strstr(p + 2, "}}")) == NULL) {
			conf_report_error(rep, "%s.jwks_public_endpoint: unclosed {{ in \"%s\"", section, url);
			return RT_INVAL;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(e - p - 2), p + 2);
		if (k->issuer_re && has_group(k->issuer_groups, k->nissuer_groups, name)) {
			which = "issuer_regex";
			why = unsafe_group(k->issuer_regex, name);
		}
		if (why == NULL && k->audience_re && has_group(k->audience_groups, k->naudience_groups, name)) {
			which = "audience_regex";
			why = unsafe_group(k->audience_regex, name);
		}
		if (which == NULL) {
			conf_report_error(rep, "%s.jwks_public_endpoint: placeholder {{%s}} is not a named group "
					  "of %s.issuer_regex or %s.audience_regex", section, name, section, section);
			rc = RT_INVAL;
		} else if (why != NULL && !k->insecure_skip_jwks_endpoint_safety_check) {
			conf_report_error(rep, "%s.%s: named group \"%s\" is used in the JWKS endpoint URL template "
					  "and %s: only an explicit list of allowed values is permitted "
					  "(or set %s.insecure_skip_jwks_endpoint_safety_check)",
					  section, which, name, why, section);
			rc = RT_INVAL;
		}
	}
	return rc;
}

/* Loads K's RSA and ECDSA keys and enables their algorithms. */
static int load_keys(struct tok_keys *k, const char *section, struct conf_report *rep)
{
	int rc = RT_OK;

	if (*k->hmac_secret_key)
		k->algs |= ALG_BIT(0) | ALG_BIT(1) | ALG_BIT(2);

	if (*k->rsa_public_key) {
		k->rsa = load_public_pem(k->rsa_public_key, "RSA");
		if (k->rsa == NULL || (k->rsa_pem = spki_pem(k->rsa)) == NULL) {
			conf_report_error(rep, "%s.rsa_public_key: not a PEM-encoded RSA public key "
					  "(\"BEGIN PUBLIC KEY\" or \"BEGIN RSA PUBLIC KEY\")", section);
			rc = RT_INVAL;
		} else {
			k->algs |= ALG_BIT(3) | ALG_BIT(4) | ALG_BIT(5);
		}
	}

	if (*k->ecdsa_public_key) {
		char curve[64] = "";
		size_t i;

		k->ec = load_public_pem(k->ecdsa_public_key, "EC");
		if (k->ec == NULL || (k->ec_pem = spki_pem(k->ec)) == NULL) {
			conf_report_error(rep, "%s.ecdsa_public_key: not a PEM-encoded ECDSA public key "
					  "(\"BEGIN PUBLIC KEY\")", section);
			return RT_INVAL;
		}
		EVP_PKEY_get_utf8_string_param(k->ec, OSSL_PKEY_PARAM_GROUP_NAME, curve,
					       sizeof(curve), NULL);
		for (i = 0; i < ROTOR_ARRAY_LEN(algs); i++) {
			if (algs[i].curve && strcmp(algs[i].curve, curve) == 0)
				break;
		}
		if (i == ROTOR_ARRAY_LEN(algs)) {
			conf_report_error(rep, "%s.ecdsa_public_key: curve \"%s\" is not one of P-256, "
					  "P-384, P-521 (ES256, ES384, ES512)", section, curve);
			return RT_INVAL;
		}
		k->algs |= ALG_BIT(i);
	}
	return rc;
}

int tok_keys_init(struct tok_keys *k, const json_t *settings, const char *section,
		  struct conf_report *rep)
{
	int rc = RT_OK;

	memset(k, 0, sizeof(*k));
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(setting_names); i++) {
		const json_t *v = settings ? json_object_get(settings, setting_names[i]) : NULL;
		if (v != NULL && !json_is_null(v) && !json_is_string(v)) {
			conf_report_error(rep, "%s.%s: must be a string", section, setting_names[i]);
			rc = RT_INVAL;
		}
		*setting_field(k, i) = xstrdup(json_is_string(v) ? json_string_value(v) : "");
	}
	{
		const json_t *until = settings ? json_object_get(settings,
							"hmac_previous_secret_key_valid_until") : NULL;
		if (json_is_integer(until) && json_integer_value(until) >= 0) {
			k->hmac_previous_secret_key_valid_until = json_integer_value(until);
		} else if (until != NULL && !json_is_null(until)) {
			conf_report_error(rep, "%s.hmac_previous_secret_key_valid_until: must be a unix time",
					  section);
			rc = RT_INVAL;
		}
	}
	{
		const json_t *skip = settings ? json_object_get(settings,
							"insecure_skip_jwks_endpoint_safety_check") : NULL;
		if (json_is_boolean(skip)) {
			k->insecure_skip_jwks_endpoint_safety_check = json_is_true(skip);
		} else if (skip != NULL && !json_is_null(skip)) {
			conf_report_error(rep, "%s.insecure_skip_jwks_endpoint_safety_check: must be a boolean",
					  section);
			rc = RT_INVAL;
		}
	}
	if (rc != RT_OK)
		goto fail;
	if (*k->hmac_previous_secret_key && !*k->hmac_secret_key) {
		conf_report_error(rep, "%s.hmac_previous_secret_key: needs %s.hmac_secret_key", section,
				  section);
		rc = RT_INVAL;
	}

	if (load_keys(k, section, rep) != RT_OK)
		rc = RT_INVAL;
	if (*k->audience && *k->audience_regex) {
		conf_report_error(rep, "%s.audience_regex: can not be used together with %s.audience",
				  section, section);
		rc = RT_INVAL;
	}
	if (*k->issuer && *k->issuer_regex) {
		conf_report_error(rep, "%s.issuer_regex: can not be used together with %s.issuer",
				  section, section);
		rc = RT_INVAL;
	}
	if (*k->audience_regex &&
	    (k->audience_re = compile_regex(section, "audience_regex", k->audience_regex, rep)) == NULL)
		rc = RT_INVAL;
	if (*k->issuer_regex &&
	    (k->issuer_re = compile_regex(section, "issuer_regex", k->issuer_regex, rep)) == NULL)
		rc = RT_INVAL;
	if (k->audience_re)
		k->naudience_groups = group_names(k->audience_regex, &k->audience_groups);
	if (k->issuer_re)
		k->nissuer_groups = group_names(k->issuer_regex, &k->issuer_groups);
	if (*k->jwks_public_endpoint && check_jwks(k, section, rep) != RT_OK)
		rc = RT_INVAL;
	if (*k->user_id_claim && !valid_user_id_claim(k->user_id_claim)) {
		conf_report_error(rep, "%s.user_id_claim: must match ^[a-zA-Z_]+$ (a top-level claim name)",
				  section);
		rc = RT_INVAL;
	}
	if (rc == RT_OK)
		return RT_OK;
fail:
	tok_keys_free(k);
	return RT_INVAL;
}

int tok_keys_from_conf(struct tok_keys *k, const struct conf *c, const char *section,
		       struct conf_report *rep)
{
	json_t *settings = json_object();
	const json_t *skip;
	int rc;

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(setting_names); i++) {
		char name[128];
		const json_t *v;

		snprintf(name, sizeof(name), "%s.%s", section, setting_names[i]);
		v = conf_get(c, name);
		if (v != NULL)
			json_object_set(settings, setting_names[i], (json_t *)v);
	}
	{
		char name[128];
		const json_t *v;

		snprintf(name, sizeof(name), "%s.hmac_previous_secret_key_valid_until", section);
		if ((v = conf_get(c, name)) != NULL)
			json_object_set(settings, "hmac_previous_secret_key_valid_until", (json_t *)v);
		snprintf(name, sizeof(name), "%s.insecure_skip_jwks_endpoint_safety_check", section);
		if ((v = conf_get(c, name)) != NULL)
			json_object_set(settings, "insecure_skip_jwks_endpoint_safety_check", (json_t *)v);
	}
	rc = tok_keys_init(k, settings, section, rep);
	json_decref(settings);
	skip = conf_get(c, "client.insecure_skip_token_signature_verify");
	if (rc == RT_OK && json_is_true(skip))
		k->insecure_skip_verify = true;
	return rc;
}

void tok_keys_free(struct tok_keys *k)
{
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(setting_names); i++)
		free(*setting_field(k, i));
	free(k->rsa_pem);
	free(k->ec_pem);
	EVP_PKEY_free(k->rsa);
	EVP_PKEY_free(k->ec);
	if (k->audience_re) {
		regfree(k->audience_re);
		free(k->audience_re);
	}
	if (k->issuer_re) {
		regfree(k->issuer_re);
		free(k->issuer_re);
	}
	free_names(k->audience_groups, k->naudience_groups);
	free_names(k->issuer_groups, k->nissuer_groups);
	memset(k, 0, sizeof(*k));
}

/* ---- claims -------------------------------------------------------------- */

/* Go's json.Number accepts exactly the JSON number grammar. */
static bool is_json_number(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (*s >= '1' && *s <= '9')
		while (*s >= '0' && *s <= '9')
			s++;
	else
		return false;
	if (*s == '.') {
		s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

/* Reads a NumericDate claim as Centrifugo's JWT library does: a JSON number
 * or a string holding one (Go's json.Number takes both). Returns 1 and sets
 * *OUT, 0 when absent or null, -1 when malformed or beyond int64 seconds. */
static int numeric_date(const json_t *claims, const char *name, double *out)
{
	const json_t *v = json_object_get(claims, name);
	double d;

	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_number(v)) {
		d = json_number_value(v);
	} else if (json_is_string(v) && is_json_number(json_string_value(v))) {
		d = strtod(json_string_value(v), NULL);
	} else {
		return -1;
	}
	if (!isfinite(d) || fabs(d) >= 9.2e18)
		return -1;
	*out = d;
	return 1;
}

static bool opt_string(const json_t *o, const char *name)
{
	const json_t *v = json_object_get(o, name);
	return v == NULL || json_is_null(v) || json_is_string(v);
}

static bool opt_integer(const json_t *o, const char *name)
{
	const json_t *v = json_object_get(o, name);
	return v == NULL || json_is_null(v) || json_is_integer(v);
}

static bool opt_object(const json_t *o, const char *name)
{
	const json_t *v = json_object_get(o, name);
	return v == NULL || json_is_null(v) || json_is_object(v);
}

static bool string_array(const json_t *v)
{
	size_t i;
	const json_t *e;

	if (!json_is_array(v))
		return false;
	json_array_foreach(v, i, e) {
		if (!json_is_string(e))
			return false;
	}
	return true;
}

/* `override` of a subscription: {"presence": {"value": bool}, ...}. */
static bool override_ok(const json_t *o)
{
	static const char *const names[] = {
		"presence", "join_leave", "force_push_join_leave", "force_positioning",
		"force_recovery",
	};
	const json_t *ov = json_object_get(o, "override");

	if (ov == NULL || json_is_null(ov))
		return true;
	if (!json_is_object(ov))
		return false;
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(names); i++) {
		const json_t *b = json_object_get(ov, names[i]), *val;
		if (b == NULL || json_is_null(b))
			continue;
		if (!json_is_object(b))
			return false;
		val = json_object_get(b, "value");
		if (val != NULL && !json_is_null(val) && !json_is_boolean(val))
			return false;
	}
	return true;
}

/* Subscribe options, in a subscription token or in each `subs` item. */
static bool sub_options_ok(const json_t *o)
{
	return opt_string(o, "b64info") && opt_string(o, "b64data") && override_ok(o);
}

enum kind { KIND_ANY, KIND_CONNECT, KIND_SUBSCRIBE };

/* The claim types Centrifugo's structs impose; NULL if all are right, else
 * the reason. */
static const char *claim_types(const json_t *c, enum kind kind)
{
	static const char *const dates[] = { "exp", "nbf", "iat" };
	const json_t *aud = json_object_get(c, "aud");
	double d;

	if (!opt_string(c, "sub") || !opt_string(c, "iss") || !opt_string(c, "jti"))
		return "invalid token: sub, iss and jti must be strings";
	if (aud != NULL && !json_is_null(aud) && !json_is_string(aud) && !string_array(aud))
		return "invalid token: aud must be a string or an array of strings";
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(dates); i++) {
		if (numeric_date(c, dates[i], &d) < 0)
			return "invalid token: exp, nbf and iat must be numeric dates";
	}
	if (kind == KIND_ANY)
		return NULL;
	if (!opt_string(c, "channel") || !opt_integer(c, "expire_at") || !opt_string(c, "b64info"))
		return "invalid token: channel, expire_at or b64info has the wrong type";
	if (kind == KIND_CONNECT) {
		const json_t *chans = json_object_get(c, "channels"), *subs = json_object_get(c, "subs");
		const json_t *item;
		const char *name;

		if (chans != NULL && !json_is_null(chans) && !string_array(chans))
			return "invalid token: channels must be an array of strings";
		if (!opt_object(c, "subs"))
			return "invalid token: subs must be an object";
		json_object_foreach((json_t *)subs, name, item) {
			if (!json_is_null(item) && (!json_is_object(item) || !sub_options_ok(item)))
				return "invalid token: malformed subs item";
		}
	} else {
		if (!opt_string(c, "client") || !sub_options_ok(c))
			return "invalid token: client, b64data or override has the wrong type";
	}
	return NULL;
}

static bool regex_match(const regex_t *re, const char *s)
{
	return regexec(re, s, 0, NULL, 0) == 0;
}

/* aud and iss against the configuration; NULL if accepted. */
static const char *check_aud_iss(const struct tok_keys *k, const json_t *c)
{
	const json_t *aud = json_object_get(c, "aud"), *iss = json_object_get(c, "iss");
	const char *issuer = json_is_string(iss) ? json_string_value(iss) : "";
	size_t i;
	const json_t *e;
	bool found;

	if (*k->audience || k->audience_re) {
		found = false;
		if (json_is_string(aud)) {
			found = *k->audience ? strcmp(json_string_value(aud), k->audience) == 0
					     : regex_match(k->audience_re, json_string_value(aud));
		} else if (json_is_array(aud)) {
			json_array_foreach(aud, i, e) {
				const char *a = json_string_value(e);
				if (*k->audience ? strcmp(a, k->audience) == 0 : regex_match(k->audience_re, a)) {
					found = true;
					break;
				}
			}
		}
		if (!found)
			return "invalid token: invalid audience";
	}
	if (*k->issuer && strcmp(issuer, k->issuer) != 0)
		return "invalid token: invalid issuer";
	if (k->issuer_re && !regex_match(k->issuer_re, issuer))
		return "invalid token: issuer not matched";
	return NULL;
}

/* ---- signatures ---------------------------------------------------------- */

/* libjwt's check of the whole token TOK (NUL-terminated) with KEY. */
static bool verify_libjwt(const struct alg *a, const char *tok, const char *key)
{
	jwt_t *j = NULL;
	bool ok;

	assert(key != NULL && *key != '\0'); /* libjwt skips the check without a key */
	ok = jwt_decode(&j, tok, (const unsigned char *)key, (int)strlen(key)) == 0 &&
	     j != NULL && jwt_get_alg(j) == a->jwt;
	jwt_free(j);
	return ok;
}

/* OpenSSL's check of SIG over DATA ("header.payload") for A, with SECRET
 * for HS* and the public key PKEY otherwise. */
static bool verify_openssl(EVP_PKEY *pkey, const struct alg *a, const char *secret,
			   const char *data, size_t dlen, const unsigned char *sig, size_t slen)
{
	const EVP_MD *md = a->md ? EVP_get_digestbyname(a->md) : NULL;
	unsigned char buf[EVP_MAX_MD_SIZE];
	unsigned char *der = NULL;
	const unsigned char *vsig = sig;
	size_t vlen = slen;
	EVP_MD_CTX *ctx = NULL;
	bool ok = false;

	if (md == NULL && a->fam != FAM_ED)
		return false;
	if (a->fam == FAM_HS) {
		unsigned int blen = 0;
		assert(*secret != '\0');
		if (HMAC(md, secret, (int)strlen(secret),
			 (const unsigned char *)data, dlen, buf, &blen) == NULL)
			goto out;
		ok = blen == slen && CRYPTO_memcmp(buf, sig, slen) == 0;
		goto out;
	}
	if (a->fam == FAM_ES) {
		/* JOSE carries R||S; OpenSSL verifies DER. */
		ECDSA_SIG *es;
		BIGNUM *r, *s;
		int n;

		if (slen != 2 * (size_t)a->ec_bytes)
			goto out;
		es = ECDSA_SIG_new();
		r = BN_bin2bn(sig, a->ec_bytes, NULL);
		s = BN_bin2bn(sig + a->ec_bytes, a->ec_bytes, NULL);
		if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
			BN_free(r);
			BN_free(s);
			ECDSA_SIG_free(es);
			goto out;
		}
		n = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
		if (n <= 0)
			goto out;
		vsig = der;
		vlen = (size_t)n;
	}
	assert(pkey != NULL);
	ctx = EVP_MD_CTX_new();
	ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1 &&
	     EVP_DigestVerify(ctx, vsig, vlen, (const unsigned char *)data, dlen) == 1;
out:
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	OPENSSL_cleanse(buf, sizeof(buf));
	ERR_clear_error();
	return ok;
}

/* The size in bytes of a signature by A with RSA key RSA (for RS*). */
static size_t sig_size(EVP_PKEY *rsa, const struct alg *a)
{
	switch (a->fam) {
	case FAM_HS:
		return (size_t)EVP_MD_get_size(EVP_get_digestbyname(a->md));
	case FAM_RS:
		return (size_t)EVP_PKEY_get_size(rsa);
	default:
		return 2 * (size_t)a->ec_bytes;
	}
}

/* The signature of TOK (LEN bytes, the signature at SIG_OFF), decoded
 * into a new buffer of *SLEN bytes, which must be WANT. Its encoding must be
 * canonical, so that both verification paths accept exactly the same
 * texts. Sets *WHY when it is malformed or of the wrong size. */
static unsigned char *decode_sig(const char *tok, size_t len, size_t sig_off, size_t want, size_t *slen,
				 const char **why)
{
	unsigned char *sig = xmalloc(b64_decoded_max(len - sig_off) + 1);
	char *canon;

	*why = NULL;
	if (b64_decode(sig, slen, tok + sig_off, len - sig_off, B64_URL | B64_NOPAD) != RT_OK) {
		*slen = 0;
		*why = "invalid token: malformed signature";
		return sig;
	}
	canon = b64_encode_alloc(sig, *slen, B64_URL | B64_NOPAD);
	if (strlen(canon) != len - sig_off || memcmp(canon, tok + sig_off, len - sig_off) != 0)
		*why = "invalid token: malformed signature";
	free(canon);
	if (*why == NULL && *slen != want)
		*why = "invalid token: bad signature";
	return sig;
}

/* Checks algorithm and signature of TOK (NUL-terminated, LEN bytes, the
 * signature starting at SIG_OFF) whose header is HDR, at NOW_S (for the
 * previous HMAC secret). NULL if verified. */
static const char *check_signature(const struct tok_keys *k, const json_t *hdr, const char *tok,
				   size_t len, size_t sig_off, int64_t now_s)
{
	const char *alg_name = json_string_value(json_object_get(hdr, "alg"));
	const json_t *typ = json_object_get(hdr, "typ");
	const struct alg *a;
	size_t idx, slen;
	unsigned char *sig;
	const char *why = NULL;
	const char *keys[2] = { NULL, NULL };
	bool ok = false, libjwt;

	a = alg_find(alg_name ? alg_name : "", &idx);
	if (a == NULL || a->fam == FAM_ED)
		return "invalid token: unsupported JWT algorithm";
	if (!(k->algs & ALG_BIT(idx)))
		return "invalid token: disabled JWT algorithm";

	/* A signature of the wrong size can only fail; refusing it here also
	 * keeps an empty one away from libjwt 1.10.2, whose jwt_b64_decode
	 * writes past a zero-byte buffer for RS and ES (seen with valgrind). */
	sig = decode_sig(tok, len, sig_off, sig_size(k->rsa, a), &slen, &why);

	if (why == NULL) {
		keys[0] = a->fam == FAM_HS ? k->hmac_secret_key : a->fam == FAM_RS ? k->rsa_pem : k->ec_pem;
		if (a->fam == FAM_HS && *k->hmac_previous_secret_key &&
		    (k->hmac_previous_secret_key_valid_until == 0 ||
		     now_s < k->hmac_previous_secret_key_valid_until))
			keys[1] = k->hmac_previous_secret_key;
		libjwt = typ == NULL || json_is_null(typ) || strcasecmp(json_string_value(typ), "JWT") == 0;
		for (size_t i = 0; i < 2 && keys[i] != NULL && !ok; i++) {
			ok = libjwt ? verify_libjwt(a, tok, keys[i])
				    : verify_openssl(a->fam == FAM_RS ? k->rsa : k->ec, a, keys[i], tok,
						     sig_off - 1, sig, slen);
		}
		if (!ok)
			why = "invalid token: bad signature";
	}
	free(sig);
	return why;
}

/* ---- JWKS ------------------------------------------------------------------- */

/* The URL of the fetch the last TOK_PENDING waits for. */
static char *pending_url;

#define TOK_VARS_MAX 16

struct tok_var {
	const char *name;
	char value[128];
};

/* The named groups of RE (NAMES, N) matched in S, appended to V (*NV). */
static void add_vars(const regex_t *re, char **names, size_t n, const char *s, struct tok_var *v, size_t *nv)
{
	regmatch_t m[32];
	size_t i, len;

	if (n > ROTOR_ARRAY_LEN(m) || regexec(re, s, n, m, 0) != 0)
		return;
	for (i = 1; i < n && *nv < TOK_VARS_MAX; i++) {
		if (names[i] == NULL || m[i].rm_so < 0)
			continue;
		len = (size_t)(m[i].rm_eo - m[i].rm_so);
		if (len >= sizeof(v->value))
			len = sizeof(v->value) - 1;
		v[*nv].name = names[i];
		memcpy(v[*nv].value, s + m[i].rm_so, len);
		v[*nv].value[len] = '\0';
		(*nv)++;
	}
}

/* K's JWKS endpoint for claims C: the template with each {{name}} replaced
 * by that named group of issuer_regex or audience_regex (the audience's
 * when both have it, as Centrifugo), "" when it matched nothing. NULL with
 * *WHY when a value has a character other than [A-Za-z0-9._~-] or the path
 * has "." or ".." segments or "//" (Centrifugo's traversal check). */
static char *jwks_url(const struct tok_keys *k, const json_t *c, const char **why)
{
	struct tok_var v[TOK_VARS_MAX];
	size_t nv = 0, i, n;
	const json_t *aud = json_object_get(c, "aud"), *e;
	const char *iss = json_string_value(json_object_get(c, "iss")), *t = k->jwks_public_endpoint, *end;
	char *out, *o, *path;

	if (strstr(t, "{{") == NULL)
		return xstrdup(t);
	if (k->issuer_re && iss != NULL)
		add_vars(k->issuer_re, k->issuer_groups, k->nissuer_groups, iss, v, &nv);
	if (k->audience_re) {
		json_t *one = json_is_string(aud) ? json_pack("[O]", aud) : json_incref((json_t *)aud);
		json_array_foreach(one, i, e) {
			if (regexec(k->audience_re, json_string_value(e), 0, NULL, 0) == 0) {
				add_vars(k->audience_re, k->audience_groups, k->naudience_groups,
					 json_string_value(e), v, &nv);
				break;
			}
		}
		json_decref(one);
	}
	n = strlen(t);
	for (i = 0; i < nv; i++)
		n += strlen(v[i].value);
	o = out = xmalloc(n + 1);
	while (*t) {
		if (t[0] == '{' && t[1] == '{' && (end = strstr(t + 2, "}}")) != NULL) {
			size_t nl = (size_t)(end - t - 2);
			for (i = nv; i-- > 0;) {
				if (strlen(v[i].name) == nl && memcmp(v[i].name, t + 2, nl) == 0) {
					const char *val = v[i].value;
					if (strspn(val, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
						   "0123456789._~-") != strlen(val)) {
						*why = "invalid token: a JWKS endpoint variable has characters not allowed in a URL";
						free(out);
						return NULL;
					}
					o = stpcpy(o, val);
					break;
				}
			}
			t = end + 2;
			continue;
		}
		*o++ = *t++;
	}
	*o = '\0';
	path = strstr(out, "://");
	path = path ? strchr(path + 3, '/') : NULL;
	if (path != NULL) {
		size_t plen = strcspn(path, "?#");
		for (const char *seg = path; seg < path + plen; seg++) {
			if (*seg != '/')
				continue;
			size_t sl = strcspn(seg + 1, "/?#");
			if ((sl == 0 && seg + 1 < path + plen) || (sl == 1 && seg[1] == '.') ||
			    (sl == 2 && seg[1] == '.' && seg[2] == '.')) {
				*why = "invalid token: the JWKS endpoint path has traversal sequences";
				free(out);
				return NULL;
			}
		}
	}
	return out;
}

/* Checks the signature of TOK with the JWKS key its header names (kid),
 * from the endpoint filled in for claims C. NULL if verified; with
 * *PENDING set the key is being fetched (pending_url says from where). */
static const char *check_jwks_signature(const struct tok_keys *k, const json_t *hdr, const json_t *c,
					const char *tok, size_t len, size_t sig_off, int64_t now_s, bool *pending)
{
	const char *alg_name = json_string_value(json_object_get(hdr, "alg"));
	const char *kid = json_string_value(json_object_get(hdr, "kid"));
	const struct alg *a = alg_find(alg_name ? alg_name : "", NULL);
	const struct jwk *key;
	const char *why = NULL;
	unsigned char *sig;
	size_t slen;
	char *url;
	int r;

	*pending = false;
	if (a == NULL)
		return "invalid token: unsupported JWT algorithm";
	if (a->fam == FAM_HS)
		return "invalid token: disabled JWT algorithm"; /* a JWKS holds no HMAC secret */
	static const enum family fam_of[] = { [JWK_RSA] = FAM_RS, [JWK_EC] = FAM_ES, [JWK_OKP] = FAM_ED };
	if (kid == NULL || *kid == '\0')
		return "invalid token: kid is not provided";
	if ((url = jwks_url(k, c, &why)) == NULL)
		return why;
	r = jwks_find(url, kid, now_s, &key);
	if (r == JWKS_PENDING) {
		free(pending_url);
		pending_url = url;
		*pending = true;
		return "JWKS key being fetched";
	}
	free(url);
	if (r != JWKS_FOUND)
		return "invalid token: public key not found";
	/* The JWK's alg when it has one, else any of its family and curve
	 * (Centrifugo). */
	if (*key->alg ? strcmp(key->alg, a->name) != 0
		      : fam_of[key->kty] != a->fam || (key->kty == JWK_EC && strcmp(key->curve, a->curve) != 0))
		return "invalid token: algorithm does not match the key";
	sig = decode_sig(tok, len, sig_off,
			 a->fam == FAM_RS ? (size_t)EVP_PKEY_get_size(key->pkey)
			 : a->fam == FAM_ED ? 64 : 2 * (size_t)a->ec_bytes,
			 &slen, &why);
	if (why == NULL && !verify_openssl(key->pkey, a, NULL, tok, sig_off - 1, sig, slen))
		why = "invalid token: bad signature";
	free(sig);
	return why;
}

void tok_jwks_wait(void (*done)(void *arg), void *arg)
{
	jwks_wait(pending_url ? pending_url : "", done, arg);
	free(pending_url);
	pending_url = NULL;
}

/* ---- verification -------------------------------------------------------- */

/* Decodes one base64url part into a JSON value; NULL if malformed. */
static json_t *decode_part(const char *p, size_t n, size_t jflags, bool is_header)
{
	char *buf = xmalloc(b64_decoded_max(n) + 1);
	size_t blen;
	json_t *v = NULL;

	if (b64_decode(buf, &blen, p, n, B64_URL | B64_NOPAD) == RT_OK &&
	    (!is_header || (blen >= 2 && buf[0] == '{' && buf[1] == '"')))
		v = json_loadb(buf, blen, jflags, NULL);
	free(buf);
	if (v != NULL && !json_is_object(v)) {
		json_decref(v);
		v = NULL;
	}
	return v;
}

static int verify(const struct tok_keys *k, enum kind kind, const char *token, size_t len,
		  int64_t now_s, json_t **claims, const char **why)
{
	const char *dot1, *dot2;
	json_t *hdr = NULL, *c = NULL;
	char *tok = NULL;
	double exp, nbf;
	int rc = TOK_INVALID;
	const char *ch;

	*claims = NULL;
	*why = "invalid token: malformed";
	if (len == 0 || len > TOK_MAX_LEN) {
		*why = len ? "invalid token: too long" : "invalid token: empty";
		return TOK_INVALID;
	}
	if (memchr(token, '\0', len) != NULL)
		return TOK_INVALID;
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL) {
		*why = "invalid token: not three parts";
		return TOK_INVALID;
	}
	hdr = decode_part(token, (size_t)(dot1 - token), JSON_REJECT_DUPLICATES, true);
	if (hdr == NULL) {
		*why = "invalid token: malformed header";
		goto out;
	}
	if (!opt_string(hdr, "alg") || !opt_string(hdr, "typ") || !opt_string(hdr, "kid") ||
	    !opt_string(hdr, "cty")) {
		*why = "invalid token: malformed header";
		goto out;
	}
	c = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1), 0, false);
	if (c == NULL) {
		*why = "invalid token: malformed payload";
		goto out;
	}
	if ((*why = claim_types(c, kind)) != NULL)
		goto out;
	if ((*why = check_aud_iss(k, c)) != NULL)
		goto out;
	if (!k->insecure_skip_verify && *k->jwks_public_endpoint) {
		bool pending;
		*why = check_jwks_signature(k, hdr, c, token, len, (size_t)(dot2 + 1 - token), now_s, &pending);
		if (pending)
			rc = TOK_PENDING;
		if (*why != NULL)
			goto out;
	} else if (!k->insecure_skip_verify) {
		tok = xstrndup(token, len);
		if ((*why = check_signature(k, hdr, tok, len, (size_t)(dot2 + 1 - token), now_s)) != NULL)
			goto out;
	}
	ch = json_string_value(json_object_get(c, "channel"));
	if (kind == KIND_CONNECT && ch != NULL && *ch != '\0') {
		*why = "invalid token: connection token can not contain channel claim";
		goto out;
	}
	if ((numeric_date(c, "exp", &exp) == 1 && exp <= (double)now_s) ||
	    (numeric_date(c, "nbf", &nbf) == 1 && nbf > (double)now_s)) {
		*why = "token expired";
		rc = TOK_EXPIRED;
		goto out;
	}
	if (kind == KIND_SUBSCRIBE && (ch == NULL || *ch == '\0')) {
		*why = "invalid token: channel claim is required for subscription token";
		goto out;
	}
	*why = "ok";
	*claims = c;
	c = NULL;
	rc = TOK_OK;
out:
	free(tok);
	json_decref(hdr);
	json_decref(c);
	return rc;
}

int tok_verify(const struct tok_keys *k, const char *token, size_t len, int64_t now_s,
	       json_t **claims, const char **why)
{
	return verify(k, KIND_ANY, token, len, now_s, claims, why);
}

int tok_verify_connect(const struct tok_keys *k, const char *token, size_t len,
		       int64_t now_s, json_t **claims, const char **why)
{
	return verify(k, KIND_CONNECT, token, len, now_s, claims, why);
}

int tok_verify_subscribe(const struct tok_keys *k, const char *token, size_t len,
			 int64_t now_s, json_t **claims, const char **why)
{
	return verify(k, KIND_SUBSCRIBE, token, len, now_s, claims, why);
}

char *tok_claim_sub(const struct tok_keys *k, const json_t *claims)
{
	const char *name = k && *k->user_id_claim ? k->user_id_claim : "sub";
	const json_t *v = json_object_get(claims, name);

	if (v == NULL || json_is_null(v))
		return xstrdup("");
	if (json_is_string(v))
		return xstrdup(json_string_value(v));
	/* Only reachable with user_id_claim: gjson's String() of other values. */
	if (json_is_integer(v))
		return xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
	if (json_is_real(v))
		return xasprintf("%.17g", json_real_value(v));
	if (json_is_boolean(v))
		return xstrdup(json_is_true(v) ? "true" : "false");
	{
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		char *out = xstrdup(s ? s : "");
		free(s);
		return out;
	}
}

int64_t tok_claim_exp(const json_t *claims)
{
	double d;

	if (numeric_date(claims, "exp", &d) != 1)
		return 0;
	return (int64_t)d;
}

/* ---- signing ------------------------------------------------------------- */

char *tok_sign_hmac(const char *secret, const char *alg, json_t *claims)
{
	const struct alg *a = alg ? alg_find(alg, NULL) : NULL;
	jwt_t *j = NULL;
	char *text = NULL, *token = NULL;

	if (secret == NULL || *secret == '\0' || a == NULL || a->fam != FAM_HS ||
	    !json_is_object(claims))
		return NULL;
	text = json_dumps(claims, JSON_COMPACT);
	if (text != NULL && jwt_new(&j) == 0 &&
	    jwt_add_grants_json(j, text) == 0 &&
	    jwt_set_alg(j, a->jwt, (const unsigned char *)secret, (int)strlen(secret)) == 0)
		token = jwt_encode_str(j);
	jwt_free(j);
	free(text);
	return token;
}
