/*
 * conf_keys.c - the one table of rotor's configuration keys.
 *
 * Every key rotor reads or accepts is one row of conf_keys[]: its dotted v6
 * name, type, default (JSON text), bounds, flags, typed field and one line of
 * documentation. The parser (conf.c), the defaults, `rotord -T`,
 * `rotorctl genconfig` / `configdoc` and the test that rotor.conf(5) documents
 * every key all read this table; nothing else lists keys.
 *
 * Layout follows Centrifugo v6. Nested objects are expanded to their leaves
 * (http_server.tls.enabled, ...), except values that are lists of objects or
 * free-form maps, which are CONF_JSON. The options of a channel are the keys
 * under channel.without_namespace; conf.c validates every item of
 * channel.namespaces against those same keys (and rpc.namespaces against
 * rpc.without_namespace), so the option list exists once.
 *
 * Check functions here see values already converted to the key's type by
 * conf.c: durations arrive in canonical Go form ("1m30s", "1.5s", "500ms").
 * They name the key through k->name (conf.c passes a renamed copy for
 * namespace items, e.g. "channel.namespaces[chat].history_ttl").
 */
#include "config.h"
#include "conf.h"
#include "log.h"
#include "util.h"
#include "sockjs_frame.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- check functions ---------------------------------------------------- */

/* Compact JSON text of V for a message; caller frees. */
static char *check_text(const json_t *v)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	return s ? s : xstrdup("?");
}

/* Refuses a string that is not one of ALLOWED (NULL-terminated). */
static int one_of(const struct conf_key *k, const json_t *v, struct conf_report *rep,
		  const char *const *allowed)
{
	const char *s = json_string_value(v);
	char list[256] = "";
	size_t len = 0;

	for (const char *const *a = allowed; *a; a++) {
		if (strcmp(s, *a) == 0)
			return RT_OK;
		len += (size_t)snprintf(list + len, sizeof list - len, "%s\"%s\"",
					a == allowed ? "" : ", ", *a);
		if (len >= sizeof list)
			len = sizeof list - 1;
	}
	conf_report_error(rep, "%s: must be one of %s, got \"%s\"", k->name, list, s);
	return RT_INVAL;
}

static int check_log_level(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	enum log_level l;
	if (log_level_parse(json_string_value(v), &l) >= 0) /* RT_OK; see conf.c on RT_OK */
		return RT_OK;
	conf_report_error(rep, "%s: must be one of none, trace, debug, info, warn, error, got \"%s\"",
			  k->name, json_string_value(v));
	return RT_INVAL;
}

static int check_bus_size(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	long long n = json_integer_value(v);
	if ((n & (n - 1)) == 0)
		return RT_OK;
	conf_report_error(rep, "%s: must be a power of two, got %lld", k->name, n);
	return RT_INVAL;
}

static int check_engine_type(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	static const char *const allowed[] = { "memory", "redis", NULL };
	return one_of(k, v, rep, allowed);
}

static int check_broker_type(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	static const char *const allowed[] = { "memory", "redis", "nats", "redisnats", NULL };
	return one_of(k, v, rep, allowed);
}

static int check_recovery_mode(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	static const char *const allowed[] = { "", "stream", "cache", NULL };
	return one_of(k, v, rep, allowed);
}

static int check_error_mode(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	static const char *const allowed[] = { "", "transport", NULL };
	return one_of(k, v, rep, allowed);
}

static int check_delta_types(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e) {
		if (strcmp(json_string_value(e), "fossil") != 0) {
			conf_report_error(rep, "%s: the only delta type is \"fossil\", got \"%s\"",
					  k->name, json_string_value(e));
			return RT_INVAL;
		}
	}
	return RT_OK;
}

/* Centrifugo keeps history TTLs in whole seconds. A canonical duration has a
 * sub-second part exactly when it shows a '.' or is in "ms". */
static int check_whole_seconds(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	const char *s = json_string_value(v);
	if (strchr(s, '.') == NULL && strstr(s, "ms") == NULL)
		return RT_OK;
	conf_report_error(rep, "%s: must be a whole number of seconds, got \"%s\"", k->name, s);
	return RT_INVAL;
}

/* http_server.internal_port is a string in Centrifugo: empty, or a port. */
static int check_port_text(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	const char *s = json_string_value(v);
	long long port;
	if (*s == '\0' || util_parse_int(s, 1, 65535, &port) >= 0)
		return RT_OK;
	conf_report_error(rep, "%s: must be empty or a port from 1 to 65535, got \"%s\"", k->name, s);
	return RT_INVAL;
}

/* user_id_claim must match ^[a-zA-Z_]+$ (a top-level claim name) or be empty. */
static int check_claim_name(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	const char *s = json_string_value(v);
	if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_") == strlen(s))
		return RT_OK;
	conf_report_error(rep, "%s: must match ^[a-zA-Z_]+$, got \"%s\"", k->name, s);
	return RT_INVAL;
}

/* Refuses V unless GOOD, saying "KEY: must be WHAT, got V". */
static int must_be(const struct conf_key *k, const json_t *v, struct conf_report *rep, bool good,
		   const char *what)
{
	if (good)
		return RT_OK;
	char *t = check_text(v);
	conf_report_error(rep, "%s: must be %s, got %s", k->name, what, t);
	free(t);
	return RT_INVAL;
}

/* A path prefix that other paths continue: "/x", "/x/y", no trailing '/'.
 * Empty passes when EMPTY_OK (the feature is then off). */
static int path_prefix(const struct conf_key *k, const json_t *v, struct conf_report *rep, bool empty_ok)
{
	const char *s = json_string_value(v);
	size_t n = strlen(s);

	if (n == 0 && empty_ok)
		return RT_OK;
	if (n >= 2 && s[0] == '/' && s[n - 1] != '/' && !strpbrk(s, "?# \t"))
		return RT_OK;
	conf_report_error(rep, "%s: must be a path like \"/connection/sockjs\" (a '/' first, none last), got \"%s\"",
			  k->name, s);
	return RT_INVAL;
}

static int check_sockjs_prefix(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	return path_prefix(k, v, rep, false);
}

static int check_sockjs_test_prefix(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	return path_prefix(k, v, rep, true);
}

/* The iframe page's script: a URL starting with '/' or "http" that can sit
 * in an HTML attribute (sockjs_frame.c says which bytes it may hold). */
static int check_sockjs_url(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	const char *s = json_string_value(v);

	if (sjf_script_url_ok(s, strlen(s)))
		return RT_OK;
	conf_report_error(rep, "%s: must start with \"/\" or \"http\" and hold no spaces, quotes or angle "
			  "brackets, got \"%s\"", k->name, s);
	return RT_INVAL;
}

static int check_object(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	return must_be(k, v, rep, json_is_object(v), "an object");
}

static int check_array(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	return must_be(k, v, rep, json_is_array(v), "an array");
}

/* A map of strings to strings (static headers, channel replacements). */
static int check_string_map(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	const char *name;
	json_t *e;
	if (check_object(k, v, rep) != RT_OK)
		return RT_INVAL;
	json_object_foreach((json_t *)v, name, e) {
		if (!json_is_string(e)) {
			conf_report_error(rep, "%s.%s: must be a string", k->name, name);
			return RT_INVAL;
		}
	}
	return RT_OK;
}

/* Centrifugo's rule for namespace, proxy and consumer names. */
static bool valid_item_name(const char *s)
{
	return strlen(s) >= 2 &&
	       strspn(s, "-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") == strlen(s);
}

/* An array of objects, each with a valid "name" that no other item has.
 * RESERVED, if not NULL, is a name no item may take. */
static int check_items(const struct conf_key *k, const json_t *v, struct conf_report *rep,
		       const char *reserved)
{
	size_t i, j, n0 = rep->nerrors;
	json_t *item;

	if (must_be(k, v, rep, json_is_array(v), "an array of objects") != RT_OK)
		return RT_INVAL;
	json_array_foreach(v, i, item) {
		const json_t *name = json_object_get(item, "name");
		const char *s = json_string_value(name);
		if (!json_is_object(item)) {
			char *t = check_text(item);
			conf_report_error(rep, "%s[%zu]: must be an object, got %s", k->name, i, t);
			free(t);
		} else if (name == NULL) {
			conf_report_error(rep, "%s[%zu].name: missing", k->name, i);
		} else if (s == NULL || !valid_item_name(s)) {
			char *t = check_text(name);
			conf_report_error(rep, "%s[%zu].name: must match ^[-a-zA-Z0-9_.]{2,}$, got %s",
					  k->name, i, t);
			free(t);
		} else if (reserved && strcmp(s, reserved) == 0) {
			conf_report_error(rep, "%s[%s]: the name \"%s\" is reserved", k->name, s, s);
		} else {
			for (j = 0; j < i; j++) {
				const char *o = json_string_value(json_object_get(json_array_get(v, j), "name"));
				if (o && strcmp(o, s) == 0) {
					conf_report_error(rep, "%s[%s]: duplicate name", k->name, s);
					break;
				}
			}
		}
	}
	return rep->nerrors == n0 ? RT_OK : RT_INVAL;
}

static int check_named(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	return check_items(k, v, rep, NULL);
}

/* Named proxies: "default" means channel.proxy.* / rpc.proxy and is reserved. */
static int check_proxies(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	return check_items(k, v, rep, "default");
}

/* An unsigned 32-bit code member NAME of object O: its value, 0 when it is
 * missing or null, -1 when it is not an integer from 0 to 4294967295. */
static long long code_member(const json_t *o, const char *name)
{
	const json_t *v = json_object_get(o, name);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
		return -1;
	return json_integer_value(v);
}

/* Whether string member NAME of O, when there, is a string (and, with
 * ASCII, only ASCII); reports "KEY[I].WHERE: ..." otherwise. */
static bool text_member(const struct conf_key *k, size_t i, const json_t *o, const char *name,
			const char *where, bool ascii, struct conf_report *rep)
{
	const json_t *v = json_object_get(o, name);
	const char *s = json_string_value(v);

	if (v == NULL || json_is_null(v))
		return true;
	if (s == NULL) {
		conf_report_error(rep, "%s[%zu].%s: must be a string", k->name, i, where);
		return false;
	}
	for (; ascii && *s; s++) {
		if ((unsigned char)*s > 0x7f) {
			conf_report_error(rep, "%s[%zu].%s: must be ASCII", k->name, i, where);
			return false;
		}
	}
	return true;
}

/* The transforms of a code-to-something map: an array of objects, each
 * with a code (a connect error or disconnect code) and an object "to",
 * which TO_CHECK checks. Every error is reported; RT_OK or RT_INVAL. */
static int check_transforms(const struct conf_key *k, const json_t *v, struct conf_report *rep,
			    void (*to_check)(const struct conf_key *k, size_t i, const json_t *to,
					     struct conf_report *rep))
{
	size_t i, n0 = rep->nerrors;
	json_t *t;

	if (check_array(k, v, rep) != RT_OK)
		return RT_INVAL;
	json_array_foreach(v, i, t) {
		const json_t *to = json_object_get(t, "to");
		long long code = code_member(t, "code");

		if (!json_is_object(t)) {
			char *x = check_text(t);
			conf_report_error(rep, "%s[%zu]: must be an object, got %s", k->name, i, x);
			free(x);
			continue;
		}
		if (code < 0)
			conf_report_error(rep, "%s[%zu].code: must be an integer from 1 to 4294967295", k->name, i);
		else if (code == 0)
			conf_report_error(rep, "%s[%zu].code: must be set", k->name, i);
		if (to != NULL && !json_is_null(to) && !json_is_object(to))
			conf_report_error(rep, "%s[%zu].to: must be an object", k->name, i);
		else
			to_check(k, i, to, rep);
	}
	return rep->nerrors == n0 ? RT_OK : RT_INVAL;
}

/* client.connect_code_to_unidirectional_disconnect: to = {code, reason},
 * the disconnect code set and the reason ASCII (Centrifugo's
 * validateCodeToUniDisconnectTransforms). */
static void check_uni_to(const struct conf_key *k, size_t i, const json_t *to, struct conf_report *rep)
{
	long long code = code_member(to, "code");

	if (code < 0)
		conf_report_error(rep, "%s[%zu].to.code: must be an integer from 1 to 4294967295", k->name, i);
	else if (code == 0)
		conf_report_error(rep, "%s[%zu].to.code: no disconnect code set", k->name, i);
	text_member(k, i, to, "reason", "to.reason", true, rep);
}

static int check_uni_disconnect(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	return check_transforms(k, v, rep, check_uni_to);
}

/* <uni transport>.connect_code_to_http_response: to = {status_code, body},
 * the status code set (Centrifugo's validateConnectCodeTransforms) and one
 * an HTTP status line can carry (100-999: Go's WriteHeader panics on
 * others). */
static void check_http_to(const struct conf_key *k, size_t i, const json_t *to, struct conf_report *rep)
{
	const json_t *st = json_object_get(to, "status_code");

	if (st == NULL || json_is_null(st) || (json_is_integer(st) && json_integer_value(st) == 0))
		conf_report_error(rep, "%s[%zu].to.status_code: must be set", k->name, i);
	else if (!json_is_integer(st) || json_integer_value(st) < 100 || json_integer_value(st) > 999)
		conf_report_error(rep, "%s[%zu].to.status_code: must be an HTTP status from 100 to 999", k->name, i);
	text_member(k, i, to, "body", "to.body", false, rep);
}

static int check_http_response(const struct conf_key *k, const json_t *v, struct conf_report *rep)
{
	return check_transforms(k, v, rep, check_http_to);
}

/* ---- the table ---------------------------------------------------------- */

#define RLD CONF_RELOAD
#define IGN CONF_IGNORED
#define REF (CONF_IGNORED | CONF_REFUSED)
#define SEC CONF_SECRET
#define NF CONF_NO_FIELD
#define FIELD(f) offsetof(struct conf, f)
#define INF LLONG_MAX

/* Row builders, one per type. String and duration defaults are written bare. */
#define BOOL(n, d, fl, off, doc) { n, CONF_BOOL, d, 0, 0, fl, off, NULL, doc }
#define INT(n, d, lo, hi, fl, off, doc) { n, CONF_INT, #d, lo, hi, fl, off, NULL, doc }
#define DUR(n, d, lo, hi, fl, off, chk, doc) { n, CONF_DURATION, "\"" d "\"", lo, hi, fl, off, chk, doc }
#define STR(n, d, fl, off, chk, doc) { n, CONF_STRING, "\"" d "\"", 0, 0, fl, off, chk, doc }
#define LIST(n, d, fl, chk, doc) { n, CONF_STRLIST, d, 0, 0, fl, NF, chk, doc }
#define JSON(n, d, fl, chk, doc) { n, CONF_JSON, d, 0, 0, fl, NF, chk, doc }

/* A TLS object (Centrifugo's TLSConfig). PEM fields take PEM text,
 * base64-encoded PEM or a file path. */
#define TLS_KEYS(p, fl) \
	BOOL(p ".enabled", "false", fl, NF, "use TLS"), \
	STR(p ".cert_pem", "", fl, NF, NULL, "certificate: PEM text, base64 PEM or file path"), \
	STR(p ".key_pem", "", (fl) | SEC, NF, NULL, "private key: PEM text, base64 PEM or file path"), \
	STR(p ".server_ca_pem", "", fl, NF, NULL, "CA that verifies the server's certificate"), \
	STR(p ".client_ca_pem", "", fl, NF, NULL, "CA that verifies client certificates"), \
	BOOL(p ".insecure_skip_verify", "false", fl, NF, "do not verify the peer's certificate"), \
	STR(p ".server_name", "", fl, NF, NULL, "name the peer's certificate is verified against")

/* A Redis connection (engine.redis, broker.redis, presence_manager.redis). */
#define REDIS_KEYS(p, fl) \
	LIST(p ".address", "[\"redis://127.0.0.1:6379\"]", fl, NULL, \
	     "Redis addresses (redis://[user:pass@]host:port[/db]); several shard channels"), \
	STR(p ".prefix", "centrifugo", fl, NF, NULL, "prefix of every Redis key and channel"), \
	DUR(p ".connect_timeout", "1s", 0, INF, fl, NF, NULL, "Redis connect timeout"), \
	DUR(p ".io_timeout", "4s", 0, INF, fl, NF, NULL, "Redis read and write timeout"), \
	INT(p ".db", 0, 0, INF, fl, NF, "Redis database number"), \
	STR(p ".user", "", fl, NF, NULL, "Redis ACL user"), \
	STR(p ".password", "", (fl) | SEC, NF, NULL, "Redis password"), \
	STR(p ".client_name", "", fl, NF, NULL, "CLIENT SETNAME value"), \
	BOOL(p ".force_resp2", "false", fl, NF, "speak RESP2 even to a Redis that has RESP3"), \
	LIST(p ".cluster_address", "[]", fl, NULL, "Redis Cluster seed addresses"), \
	TLS_KEYS(p ".tls", fl), \
	LIST(p ".sentinel_address", "[]", fl, NULL, "Redis Sentinel addresses"), \
	STR(p ".sentinel_user", "", fl, NF, NULL, "Sentinel ACL user"), \
	STR(p ".sentinel_password", "", (fl) | SEC, NF, NULL, "Sentinel password"), \
	STR(p ".sentinel_master_name", "", fl, NF, NULL, "name of the master Sentinel watches"), \
	STR(p ".sentinel_client_name", "", fl, NF, NULL, "CLIENT SETNAME value towards Sentinel"), \
	BOOL(p ".sentinel_wait_replicas", "false", fl, NF, \
	     "rotor: a publish with history is ok only once every healthy replica has it (WAIT)"), \
	TLS_KEYS(p ".sentinel_tls", fl)

#define REDIS_HISTORY_KEYS(p, fl) \
	BOOL(p ".history_use_lists", "false", fl, NF, "keep history in Redis lists instead of streams")

#define REDIS_PRESENCE_KEYS(p, fl) \
	DUR(p ".presence_ttl", "60s", 0, INF, fl, NF, NULL, "how long a presence entry lives without refresh"), \
	BOOL(p ".presence_hash_field_ttl", "false", fl, NF, "expire presence hash fields one by one (Redis 7.4+)"), \
	BOOL(p ".presence_user_mapping", "false", fl, NF, "keep a user-to-clients map for faster presence_stats")

/* A proxy object (Centrifugo's Proxy). rotor proxies over HTTP only:
 * proxy_conf_check (src/proxy/proxy_conf.c) refuses grpc:// endpoints and
 * the gRPC options, and checks the http sub-object, kept whole. */
#define PROXY_KEYS(p) \
	STR(p ".endpoint", "", RLD, NF, NULL, "proxy endpoint: http:// or https:// URL (grpc:// is refused)"), \
	DUR(p ".timeout", "1s", 1, INF, RLD, NF, NULL, "proxy request timeout"), \
	LIST(p ".http_headers", "[]", RLD, NULL, "client HTTP headers passed on to the proxy"), \
	LIST(p ".emulated_headers", "[]", RLD, NULL, "headers of the client's connect request (headers emulation) passed on to the proxy"), \
	LIST(p ".grpc_metadata", "[]", RLD, NULL, "gRPC metadata (gRPC proxies only: refused when set)"), \
	BOOL(p ".binary_encoding", "false", RLD, NF, "send data base64-encoded (b64data)"), \
	BOOL(p ".include_connection_meta", "false", RLD, NF, "include the connection's meta"), \
	JSON(p ".http", "{}", RLD, check_object, \
	     "HTTP options: static_headers, status_to_code_transforms, tls"), \
	JSON(p ".grpc", "{}", RLD | SEC, check_object, \
	     "gRPC options (gRPC proxies only: refused when set)")

/* A token verification block (client.token, client.subscription_token). */
#define TOKEN_KEYS(p, secret_field) \
	STR(p ".hmac_secret_key", "", RLD | SEC, secret_field, NULL, "HMAC secret: enables HS256, HS384, HS512"), \
	STR(p ".hmac_previous_secret_key", "", RLD | SEC, NF, NULL, "previous HMAC secret, still accepted during rotation"), \
	INT(p ".hmac_previous_secret_key_valid_until", 0, 0, INF, RLD, NF, \
	    "unix time until which the previous HMAC secret is accepted"), \
	STR(p ".rsa_public_key", "", RLD, NF, NULL, "RSA public key (PEM): enables RS256, RS384, RS512"), \
	STR(p ".ecdsa_public_key", "", RLD, NF, NULL, "ECDSA public key (PEM): enables ES256, ES384, ES512"), \
	STR(p ".jwks_public_endpoint", "", RLD, NF, NULL, \
	    "JWKS URL (http or https; {{name}} filled from issuer_regex/audience_regex groups); when set, only JWKS keys verify tokens"), \
	BOOL(p ".insecure_skip_jwks_endpoint_safety_check", "false", RLD, NF, \
	     "allow JWKS URL placeholders from regex groups that are not explicit lists of values (insecure)"), \
	STR(p ".audience", "", RLD, NF, NULL, "required aud claim"), \
	STR(p ".audience_regex", "", RLD, NF, NULL, "regular expression the aud claim must match"), \
	STR(p ".issuer", "", RLD, NF, NULL, "required iss claim"), \
	STR(p ".issuer_regex", "", RLD, NF, NULL, "regular expression the iss claim must match"), \
	STR(p ".user_id_claim", "", RLD, NF, check_claim_name, "claim holding the user ID instead of sub")

/* The "connect code to HTTP response" blocks of the unidirectional transports. */
#define UNI_CODE_KEYS(p) \
	BOOL(p ".connect_code_to_http_response.enabled", "false", RLD, NF, \
	     "answer a refused connect with an HTTP response instead of a stream"), \
	JSON(p ".connect_code_to_http_response.transforms", "[]", RLD, check_http_response, \
	     "list of {code, to: {status_code, body}}; a code not listed is 500")

/* WebSocket settings; UNIMPL flags the ones of Go's WebSocket library
 * (buffers). */
#define WS_TUNING_KEYS(p, fl, unimpl) \
	BOOL(p ".compression", "false", fl, NF, "negotiate permessage-deflate with clients that offer it"), \
	INT(p ".compression_min_size", 0, 0, INF, fl, NF, \
	    "frames of at most this many bytes go uncompressed (bytes; 0 = compress all)"), \
	INT(p ".compression_level", 1, 1, 9, fl, NF, "deflate level, 1 (fastest) to 9 (smallest)"), \
	INT(p ".read_buffer_size", 0, 0, INF, (fl) | (unimpl), NF, "read buffer size (bytes; 0 = default)"), \
	BOOL(p ".use_write_buffer_pool", "false", (fl) | (unimpl), NF, "share write buffers between connections"), \
	INT(p ".write_buffer_size", 0, 0, INF, (fl) | (unimpl), NF, "write buffer size (bytes; 0 = default)"), \
	DUR(p ".write_timeout", "1000ms", 0, INF, fl, NF, NULL, "time a write may take before the connection is closed"), \
	INT(p ".message_size_limit", 65536, 0, INF, fl, NF, "largest message a client may send (bytes)")

const struct conf_key conf_keys[] = {
	/* rotor's own process keys */
	INT("workers", 0, 0, 256, 0, FIELD(workers),
	    "worker processes; 0 means one per online CPU"),
	STR("shm.dir", "/dev/shm", 0, FIELD(shm_dir), NULL,
	    "directory of rotor's shared-memory segment files"),
	STR("shm.data_dir", "", 0, FIELD(data_dir), NULL,
	    "directory of the history segment; empty means <shm.dir>/rotor-<port>.data"),
	INT("shm.history_streams", 65536, 16, 16777216, 0, FIELD(history_streams),
	    "most channel streams the history table holds"),
	INT("shm.history_size", 67108864, 65536, 68719476736, 0, FIELD(history_bytes),
	    "bytes of publication data the history keeps over all channels"),
	INT("shm.presence_entries", 65536, 16, 67108864, 0, FIELD(presence_nodes),
	    "channels with presence plus their subscribers that the presence table holds"),
	INT("shm.presence_size", 16777216, 65536, 17179869184, 0, FIELD(presence_bytes),
	    "bytes for users and infos in the presence table"),
	{ "shm.bus_size", CONF_INT, "16777216", 65536, 1073741824, 0, FIELD(bus_size), check_bus_size,
	  "bytes of the bus ring that carries publications between workers (a power of two)" },
	STR("pid_file", "", 0, FIELD(pid_file), NULL, "file the master writes its process ID to"),
	BOOL("enable_unreleased_features", "false", RLD | IGN, NF,
	     "enable Centrifugo's unreleased features"),

	/* http_server */
	STR("http_server.address", "", 0, FIELD(address), NULL,
	    "address to listen on; empty means every interface"),
	INT("http_server.port", 8000, 1, 65535, 0, FIELD(port), "port to listen on"),
	STR("http_server.internal_address", "", 0, FIELD(internal_address), NULL,
	    "address of the internal endpoints' listener; empty means http_server.address"),
	STR("http_server.internal_port", "", 0, FIELD(internal_port), check_port_text,
	    "port of the internal endpoints' listener; empty means http_server.port"),
	TLS_KEYS("http_server.tls", RLD),
	BOOL("http_server.tls_autocert.enabled", "false", RLD | REF, NF, "get certificates from an ACME provider"),
	LIST("http_server.tls_autocert.host_whitelist", "[]", RLD | IGN, NULL, "hosts certificates are requested for"),
	STR("http_server.tls_autocert.cache_dir", "", RLD | IGN, NF, NULL, "directory caching ACME certificates"),
	STR("http_server.tls_autocert.email", "", RLD | IGN, NF, NULL, "contact e-mail for the ACME account"),
	STR("http_server.tls_autocert.server_name", "", RLD | IGN, NF, NULL, "server name used without SNI"),
	BOOL("http_server.tls_autocert.http", "false", RLD | IGN, NF, "answer ACME HTTP-01 challenges"),
	STR("http_server.tls_autocert.http_addr", ":80", RLD | IGN, NF, NULL, "address for HTTP-01 challenges"),
	BOOL("http_server.tls_external", "false", RLD, NF,
	     "http_server.tls on the external port only, not on the internal one"),
	TLS_KEYS("http_server.internal_tls", RLD),
	BOOL("http_server.http3.enabled", "false", RLD | IGN, NF, "serve HTTP/3"),
	BOOL("http_server.h2c_external", "false", RLD | IGN, NF, "serve HTTP/2 cleartext on the external port"),
	INT("http_server.max_header_size", 32768, 1024, 1048576, RLD, FIELD(max_header_size),
	    "largest request head (request line and headers) in bytes"),
	INT("http_server.max_header_count", 100, 8, 1000, RLD, FIELD(max_header_count),
	    "most header fields a request may have"),
	INT("http_server.max_request_body_size", 4194304, 1024, 268435456, RLD, FIELD(max_body_size),
	    "largest request body in bytes"),
	DUR("http_server.read_header_timeout", "10s", 1, 86400000, RLD, FIELD(read_header_timeout_ms), NULL,
	    "time a client has to send a request head"),
	DUR("http_server.read_timeout", "30s", 1, 86400000, RLD, FIELD(read_timeout_ms), NULL,
	    "time a client has to send a whole request"),
	DUR("http_server.write_timeout", "30s", 1, 86400000, RLD, FIELD(write_timeout_ms), NULL,
	    "time a response may take to write"),
	DUR("http_server.idle_timeout", "60s", 1, 86400000, RLD, FIELD(idle_timeout_ms), NULL,
	    "time an idle keep-alive HTTP connection is kept open"),

	/* log */
	STR("log.level", "info", RLD, FIELD(log_level), check_log_level,
	    "none, error, warn, info, debug or trace"),
	STR("log.file", "", RLD, FIELD(log_file), NULL, "log file; empty means standard error"),

	/* engine, broker, presence_manager */
	STR("engine.type", "memory", 0, NF, check_engine_type, "memory or redis"),
	REDIS_KEYS("engine.redis", 0),
	REDIS_HISTORY_KEYS("engine.redis", 0),
	REDIS_PRESENCE_KEYS("engine.redis", 0),
	BOOL("broker.enabled", "false", 0, NF,
	     "use broker.* instead of engine.* for PUB/SUB, history and the control channel"),
	STR("broker.type", "memory", 0, NF, check_broker_type,
	    "memory or redis (nats and redisnats are refused when broker.enabled)"),
	REDIS_KEYS("broker.redis", 0),
	REDIS_HISTORY_KEYS("broker.redis", 0),
	STR("broker.nats.url", "nats://localhost:4222", IGN, NF, NULL, "NATS server URL"),
	STR("broker.nats.prefix", "centrifugo", IGN, NF, NULL, "prefix of NATS subjects"),
	DUR("broker.nats.dial_timeout", "1s", 0, INF, IGN, NF, NULL, "NATS connect timeout"),
	DUR("broker.nats.write_timeout", "1s", 0, INF, IGN, NF, NULL, "NATS write timeout"),
	TLS_KEYS("broker.nats.tls", IGN),
	BOOL("broker.nats.allow_wildcards", "false", IGN, NF, "allow wildcard subscriptions"),
	BOOL("broker.nats.raw_mode.enabled", "false", IGN, NF, "use channel names as NATS subjects as they are"),
	JSON("broker.nats.raw_mode.channel_replacements", "{}", IGN, check_string_map,
	     "map of characters replaced in channel names, e.g. {\":\": \".\"}"),
	STR("broker.nats.raw_mode.prefix", "", IGN, NF, NULL, "subject prefix in raw mode"),
	BOOL("presence_manager.enabled", "false", 0, NF, "use presence_manager.* instead of engine.* for presence"),
	STR("presence_manager.type", "memory", 0, NF, check_engine_type, "memory or redis"),
	REDIS_KEYS("presence_manager.redis", 0),
	REDIS_PRESENCE_KEYS("presence_manager.redis", 0),

	/* client */
	LIST("client.allowed_origins", "[]", RLD, NULL,
	     "Origin patterns browsers may connect from; empty allows only requests without Origin"),
	TOKEN_KEYS("client.token", FIELD(token_hmac_secret)),
	BOOL("client.subscription_token.enabled", "false", RLD, NF,
	     "verify subscription tokens with client.subscription_token.* instead of client.token.*"),
	TOKEN_KEYS("client.subscription_token", NF),
	BOOL("client.allow_anonymous_connect_without_token", "false", RLD, FIELD(allow_anonymous_connect),
	     "accept connections without a token as anonymous"),
	BOOL("client.disallow_anonymous_connection_tokens", "false", RLD, FIELD(disallow_anonymous_tokens),
	     "refuse connection tokens with an empty user ID"),
	DUR("client.ping_interval", "25s", LLONG_MIN, INF, RLD, FIELD(ping_interval_ms), NULL,
	    "interval between server pings; negative disables pings"),
	DUR("client.pong_timeout", "8s", LLONG_MIN, INF, RLD, FIELD(pong_timeout_ms), NULL,
	    "time a client has to answer a ping; must be below ping_interval; negative disables"),
	DUR("client.expired_close_delay", "25s", 0, INF, RLD, FIELD(expired_close_delay_ms), NULL,
	    "grace period before a connection with an expired token is closed"),
	DUR("client.expired_sub_close_delay", "25s", 0, INF, RLD, FIELD(expired_sub_close_delay_ms), NULL,
	    "grace period before a subscription with an expired token is closed"),
	DUR("client.stale_close_delay", "10s", 0, INF, RLD, FIELD(stale_close_delay_ms), NULL,
	    "time a connection has to send its connect command"),
	INT("client.channel_limit", 128, 0, INF, RLD, FIELD(channel_limit), "most channels one connection may subscribe to"),
	INT("client.queue_max_size", 1048576, 0, INF, RLD, FIELD(queue_max_size),
	    "bytes queued to a client before it is disconnected as slow"),
	DUR("client.presence_update_interval", "27s", 0, INF, RLD, FIELD(presence_interval_ms), NULL,
	    "interval between presence refreshes"),
	INT("client.concurrency", 0, 0, INF, RLD, NF,
	    "commands of one connection processed at once; 0 means one at a time"),
	DUR("client.channel_position_check_delay", "40s", 0, INF, RLD, NF, NULL,
	    "interval between stream position checks of positioned subscriptions"),
	DUR("client.channel_position_max_time_lag", "0", 0, INF, RLD, NF, NULL,
	    "tolerated lag of a position check; 0 means none"),
	INT("client.connection_limit", 0, 0, INF, RLD, FIELD(connection_limit), "most client connections on this node; 0 means no limit"),
	INT("client.user_connection_limit", 0, 0, INF, RLD, FIELD(user_connection_limit),
	    "most connections of one user on this node; 0 means no limit"),
	INT("client.connection_rate_limit", 0, 0, INF, RLD, NF,
	    "new connections per second on this node; 0 means no limit"),
	BOOL("client.connect_include_server_time", "false", RLD, FIELD(include_server_time), "include the server time in connect replies"),
	INT("client.history_max_publication_limit", 300, 0, INF, RLD, FIELD(history_max_limit),
	    "most publications one history call returns"),
	INT("client.recovery_max_publication_limit", 300, 0, INF, RLD, FIELD(recovery_max_limit),
	    "most publications one recovery returns"),
	BOOL("client.insecure", "false", RLD, FIELD(client_insecure),
	     "allow everything without tokens or permissions (development only)"),
	BOOL("client.insecure_skip_token_signature_verify", "false", RLD, FIELD(skip_token_verify),
	     "do not verify token signatures (development only)"),
	STR("client.user_id_http_header", "", RLD, NF, NULL,
	    "trusted HTTP header that carries the user ID"),
	BOOL("client.subscribe_to_user_personal_channel.enabled", "false", RLD, NF,
	     "subscribe every user to a personal channel"),
	STR("client.subscribe_to_user_personal_channel.personal_channel_namespace", "", RLD, NF, NULL,
	    "namespace of personal channels"),
	BOOL("client.subscribe_to_user_personal_channel.single_connection", "false", RLD, NF,
	     "keep one connection per user (needs presence in that namespace)"),
	BOOL("client.proxy.connect.enabled", "false", RLD, NF, "proxy connect requests without a token"),
	PROXY_KEYS("client.proxy.connect"),
	BOOL("client.proxy.refresh.enabled", "false", RLD, NF, "proxy connection refreshes"),
	PROXY_KEYS("client.proxy.refresh"),
	BOOL("client.connect_code_to_unidirectional_disconnect.enabled", "false", RLD, NF,
	     "map connect error codes to disconnects on unidirectional transports"),
	JSON("client.connect_code_to_unidirectional_disconnect.transforms", "[]", RLD, check_uni_disconnect,
	     "list of {code, to: {code, reason}}"),

	/* channel: the options of channels outside any namespace, which are also
	 * the options every channel.namespaces item may set. */
	BOOL("channel.without_namespace.presence", "false", RLD, NF, "keep presence (who is subscribed)"),
	BOOL("channel.without_namespace.join_leave", "false", RLD, NF, "send join and leave events"),
	BOOL("channel.without_namespace.force_push_join_leave", "false", RLD, NF,
	     "push join and leave events to every subscriber"),
	INT("channel.without_namespace.history_size", 0, 0, INF, RLD, NF,
	    "publications kept in history; needs history_ttl"),
	DUR("channel.without_namespace.history_ttl", "0", 0, INF, RLD, NF, check_whole_seconds,
	    "how long history is kept (whole seconds); needs history_size"),
	DUR("channel.without_namespace.history_meta_ttl", "0", 0, INF, RLD, NF, check_whole_seconds,
	    "how long stream meta is kept; 0 means channel.history_meta_ttl"),
	BOOL("channel.without_namespace.force_positioning", "false", RLD, NF,
	     "track stream position for every subscriber"),
	BOOL("channel.without_namespace.allow_positioning", "false", RLD, NF, "let clients ask for positioning"),
	BOOL("channel.without_namespace.force_recovery", "false", RLD, NF,
	     "recover missed publications for every subscriber (needs history)"),
	BOOL("channel.without_namespace.allow_recovery", "false", RLD, NF, "let clients ask for recovery"),
	STR("channel.without_namespace.force_recovery_mode", "", RLD, NF, check_recovery_mode,
	    "recovery mode: empty, stream or cache"),
	LIST("channel.without_namespace.allowed_delta_types", "[]", RLD, check_delta_types,
	     "delta types subscribers may ask for: fossil"),
	BOOL("channel.without_namespace.delta_publish", "false", RLD, NF, "mark every publication for delta delivery"),
	BOOL("channel.without_namespace.allow_subscribe_for_client", "false", RLD, NF,
	     "authenticated clients may subscribe without a token"),
	BOOL("channel.without_namespace.allow_subscribe_for_anonymous", "false", RLD, NF,
	     "anonymous clients may subscribe too"),
	BOOL("channel.without_namespace.allow_publish_for_client", "false", RLD, NF,
	     "authenticated clients may publish"),
	BOOL("channel.without_namespace.allow_publish_for_subscriber", "false", RLD, NF,
	     "subscribed clients may publish"),
	BOOL("channel.without_namespace.allow_publish_for_anonymous", "false", RLD, NF,
	     "anonymous clients may publish too"),
	BOOL("channel.without_namespace.allow_presence_for_client", "false", RLD, NF,
	     "authenticated clients may ask for presence"),
	BOOL("channel.without_namespace.allow_presence_for_subscriber", "false", RLD, NF,
	     "subscribed clients may ask for presence"),
	BOOL("channel.without_namespace.allow_presence_for_anonymous", "false", RLD, NF,
	     "anonymous clients may ask for presence too"),
	BOOL("channel.without_namespace.allow_history_for_client", "false", RLD, NF,
	     "authenticated clients may ask for history"),
	BOOL("channel.without_namespace.allow_history_for_subscriber", "false", RLD, NF,
	     "subscribed clients may ask for history"),
	BOOL("channel.without_namespace.allow_history_for_anonymous", "false", RLD, NF,
	     "anonymous clients may ask for history too"),
	BOOL("channel.without_namespace.allow_user_limited_channels", "false", RLD, NF,
	     "enable user-limited channels (name#user1,user2)"),
	STR("channel.without_namespace.channel_regex", "", RLD, NF, NULL,
	    "regular expression (RE2) channel names must match"),
	BOOL("channel.without_namespace.subscribe_proxy_enabled", "false", RLD, NF,
	     "ask the subscribe proxy whether to allow subscriptions"),
	STR("channel.without_namespace.subscribe_proxy_name", "default", RLD, NF, NULL,
	    "subscribe proxy to use"),
	BOOL("channel.without_namespace.publish_proxy_enabled", "false", RLD, NF,
	     "pass client publications through the publish proxy"),
	STR("channel.without_namespace.publish_proxy_name", "default", RLD, NF, NULL,
	    "publish proxy to use"),
	BOOL("channel.without_namespace.sub_refresh_proxy_enabled", "false", RLD, NF,
	     "refresh subscriptions through the sub_refresh proxy"),
	STR("channel.without_namespace.sub_refresh_proxy_name", "default", RLD, NF, NULL,
	    "sub_refresh proxy to use"),
	BOOL("channel.without_namespace.subscribe_stream_proxy_enabled", "false", RLD | REF, NF,
	     "feed subscriptions from the subscribe stream proxy"),
	STR("channel.without_namespace.subscribe_stream_proxy_name", "default", RLD | IGN, NF, NULL,
	    "subscribe stream proxy to use"),
	BOOL("channel.without_namespace.subscribe_stream_proxy_bidirectional", "false", RLD | IGN, NF,
	     "use a bidirectional subscribe stream"),
	JSON("channel.namespaces", "[]", RLD, check_named,
	     "list of namespaces: {\"name\": ..., plus any channel.without_namespace option}"),
	DUR("channel.history_meta_ttl", "720h", 0, INF, RLD, NF, check_whole_seconds,
	    "how long stream meta (epoch, offset) outlives the last publication"),
	INT("channel.max_length", 255, 0, INF, RLD, NF, "longest channel name clients may use (bytes)"),
	STR("channel.private_prefix", "$", RLD, NF, NULL,
	    "prefix of channels that need a subscription token; empty disables"),
	STR("channel.namespace_boundary", ":", RLD, NF, NULL, "separator between namespace and channel"),
	STR("channel.user_boundary", "#", RLD, NF, NULL, "separator before the users of a user-limited channel"),
	STR("channel.user_separator", ",", RLD, NF, NULL, "separator between users of a user-limited channel"),
	PROXY_KEYS("channel.proxy.subscribe"),
	PROXY_KEYS("channel.proxy.publish"),
	PROXY_KEYS("channel.proxy.sub_refresh"),
	PROXY_KEYS("channel.proxy.subscribe_stream"),

	/* rpc */
	PROXY_KEYS("rpc.proxy"),
	BOOL("rpc.without_namespace.proxy_enabled", "false", RLD, NF,
	     "send RPC calls without namespace to the RPC proxy"),
	STR("rpc.without_namespace.proxy_name", "default", RLD, NF, NULL, "RPC proxy to use"),
	JSON("rpc.namespaces", "[]", RLD, check_named,
	     "list of RPC namespaces: {\"name\": ..., plus any rpc.without_namespace option}"),
	STR("rpc.namespace_boundary", ":", RLD, NF, NULL, "separator between RPC namespace and method"),
	BOOL("rpc.ping.enabled", "false", RLD, NF, "answer the RPC method rpc.ping.method with an empty result"),
	STR("rpc.ping.method", "ping", RLD, NF, NULL, "name of the ping RPC method"),

	JSON("proxies", "[]", RLD | SEC, check_proxies,
	     "named proxies: {\"name\": ..., endpoint, timeout, ...}"),

	/* http_api, grpc_api */
	BOOL("http_api.disabled", "false", RLD, NF, "turn the HTTP server API off"),
	STR("http_api.handler_prefix", "/api", RLD, FIELD(api_prefix), NULL, "path of the HTTP server API"),
	STR("http_api.key", "", RLD | SEC, FIELD(api_key), NULL,
	    "API key callers send as \"Authorization: apikey KEY\" or X-API-Key"),
	STR("http_api.error_mode", "", RLD, NF, check_error_mode,
	    "empty, or transport to report errors with HTTP status codes"),
	BOOL("http_api.external", "false", RLD, NF, "serve the API on the external port"),
	BOOL("http_api.insecure", "false", RLD, FIELD(api_insecure), "serve the API without a key"),
	BOOL("grpc_api.enabled", "false", RLD | IGN, NF, "serve the gRPC server API"),
	STR("grpc_api.error_mode", "", RLD | IGN, NF, check_error_mode, "empty or transport"),
	STR("grpc_api.address", "", IGN, NF, NULL, "address of the gRPC API listener"),
	INT("grpc_api.port", 10000, 1, 65535, IGN, NF, "port of the gRPC API listener"),
	STR("grpc_api.key", "", RLD | IGN | SEC, NF, NULL, "key gRPC API callers must send"),
	TLS_KEYS("grpc_api.tls", RLD | IGN),
	BOOL("grpc_api.reflection", "false", RLD | IGN, NF, "enable gRPC reflection"),
	INT("grpc_api.max_receive_message_size", 0, 0, INF, RLD | IGN, NF,
	    "largest gRPC API request (bytes; 0 = default)"),

	JSON("consumers", "[]", RLD | IGN | SEC, check_named,
	     "message queue consumers: {\"name\": ..., type, enabled, ...}"),

	/* transports */
	BOOL("websocket.disabled", "false", RLD, NF, "turn the WebSocket transport off"),
	STR("websocket.handler_prefix", "/connection/websocket", RLD, NF, NULL, "path of the WebSocket endpoint"),
	WS_TUNING_KEYS("websocket", RLD, IGN),
	BOOL("sse.enabled", "false", RLD, NF, "serve the bidirectional SSE transport"),
	STR("sse.handler_prefix", "/connection/sse", RLD, NF, NULL, "path of the SSE endpoint"),
	INT("sse.max_request_body_size", 65536, 0, INF, RLD, NF, "largest connect request (bytes)"),
	BOOL("http_stream.enabled", "false", RLD, NF, "serve the bidirectional HTTP-streaming transport"),
	STR("http_stream.handler_prefix", "/connection/http_stream", RLD, NF, NULL,
	    "path of the HTTP-streaming endpoint"),
	INT("http_stream.max_request_body_size", 65536, 0, INF, RLD, NF, "largest connect request (bytes)"),
	STR("emulation.handler_prefix", "/emulation", RLD, NF, NULL,
	    "path where SSE and HTTP-streaming clients send commands"),
	INT("emulation.max_request_body_size", 65536, 0, INF, RLD, NF, "largest emulation request (bytes)"),
	BOOL("sockjs.enabled", "false", RLD, NF, "serve the SockJS endpoint (Centrifugo v5's legacy transport)"),
	STR("sockjs.handler_prefix", "/connection/sockjs", RLD, NF, check_sockjs_prefix,
	    "path prefix of the SockJS endpoint"),
	STR("sockjs.url", "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js", RLD, NF,
	    check_sockjs_url, "sockjs-client script loaded by the SockJS iframe page"),
	DUR("sockjs.heartbeat_delay", "0s", 0, 86400000, RLD, NF, NULL,
	    "SockJS heartbeat frame interval while a receiver waits; 0 turns them off (as Centrifugo v5)"),
	STR("sockjs.test_services_prefix", "", RLD, NF, check_sockjs_test_prefix,
	    "for the SockJS protocol test suite only: mounts its four echo services under this path"),
	BOOL("webtransport.enabled", "false", RLD | IGN, NF, "serve WebTransport (needs HTTP/3)"),
	STR("webtransport.handler_prefix", "/connection/webtransport", RLD | IGN, NF, NULL,
	    "path of the WebTransport endpoint"),
	INT("webtransport.message_size_limit", 65536, 0, INF, RLD | IGN, NF, "largest client message (bytes)"),
	BOOL("uni_websocket.enabled", "false", RLD, NF, "serve the unidirectional WebSocket transport"),
	STR("uni_websocket.handler_prefix", "/connection/uni_websocket", RLD, NF, NULL,
	    "path of the unidirectional WebSocket endpoint"),
	WS_TUNING_KEYS("uni_websocket", RLD, IGN),
	INT("uni_websocket.decompressed_message_size_limit", 0, 0, INF, RLD | IGN, NF,
	    "largest message after decompression (bytes; 0 = 10 times message_size_limit)"),
	BOOL("uni_websocket.join_push_messages", "false", RLD, NF, "join several pushes into one frame"),
	BOOL("uni_websocket.disable_disconnect_push", "false", RLD, NF,
	     "end a connection with the close frame only, without the disconnect push"),
	BOOL("uni_websocket.disable_closing_handshake", "false", RLD, NF,
	     "end a connection without a close frame"),
	BOOL("uni_sse.enabled", "false", RLD, NF, "serve the unidirectional SSE transport"),
	STR("uni_sse.handler_prefix", "/connection/uni_sse", RLD, NF, NULL, "path of the unidirectional SSE endpoint"),
	INT("uni_sse.max_request_body_size", 65536, 0, INF, RLD, NF, "largest connect request (bytes)"),
	UNI_CODE_KEYS("uni_sse"),
	BOOL("uni_http_stream.enabled", "false", RLD, NF, "serve the unidirectional HTTP-streaming transport"),
	STR("uni_http_stream.handler_prefix", "/connection/uni_http_stream", RLD, NF, NULL,
	    "path of the unidirectional HTTP-streaming endpoint"),
	INT("uni_http_stream.max_request_body_size", 65536, 0, INF, RLD, NF, "largest connect request (bytes)"),
	UNI_CODE_KEYS("uni_http_stream"),
	BOOL("uni_grpc.enabled", "false", RLD | IGN, NF, "serve the unidirectional gRPC transport"),
	STR("uni_grpc.address", "", IGN, NF, NULL, "address of the unidirectional gRPC listener"),
	INT("uni_grpc.port", 11000, 1, 65535, IGN, NF, "port of the unidirectional gRPC listener"),
	INT("uni_grpc.max_receive_message_size", 0, 0, INF, RLD | IGN, NF, "largest gRPC message (bytes; 0 = default)"),
	TLS_KEYS("uni_grpc.tls", RLD | IGN),

	/* operations */
	BOOL("admin.enabled", "false", RLD, NF, "serve the admin web interface"),
	STR("admin.handler_prefix", "", RLD, NF, NULL, "path prefix of the admin interface (\"\": the root)"),
	STR("admin.password", "", RLD | SEC, NF, NULL, "admin interface password"),
	STR("admin.secret", "", RLD | SEC, NF, NULL, "secret that signs admin session tokens"),
	BOOL("admin.insecure", "false", RLD, NF, "admin interface without authentication (development only)"),
	STR("admin.web_path", "", RLD, NF, NULL, "directory of a custom admin web application (default: rotor's own UI)"),
	STR("admin.web_proxy_address", "", RLD | IGN, NF, NULL, "address the admin web application is proxied to"),
	BOOL("admin.external", "false", RLD, NF, "serve the admin interface on the external port"),
	BOOL("prometheus.enabled", "false", RLD, NF, "serve Prometheus metrics of the whole node (metrics.c)"),
	STR("prometheus.handler_prefix", "/metrics", RLD, NF, NULL, "path of the metrics endpoint"),
	BOOL("prometheus.instrument_http_handlers", "false", RLD | IGN, NF, "add per-handler HTTP metrics"),
	BOOL("health.enabled", "true", RLD, FIELD(health_enabled),
	     "serve the health endpoint (on by default in rotor, off in Centrifugo)"),
	STR("health.handler_prefix", "/health", RLD, FIELD(health_prefix), NULL, "path of the health endpoint"),
	BOOL("swagger.enabled", "false", RLD | IGN, NF, "serve Swagger UI for the server API"),
	STR("swagger.handler_prefix", "/swagger", RLD | IGN, NF, NULL, "path of Swagger UI"),
	BOOL("debug.enabled", "false", RLD | IGN, NF, "serve Go pprof endpoints"),
	STR("debug.handler_prefix", "/debug/pprof", RLD | IGN, NF, NULL, "path of the pprof endpoints"),
	STR("node.name", "", RLD, FIELD(node_name), NULL, "node name shown by info; empty means hostname_port"),
	DUR("node.info_metrics_aggregate_interval", "60s", 0, INF, RLD, NF, NULL,
	    "interval over which node metrics shown by info are aggregated"),
	DUR("shutdown.timeout", "30s", 0, INF, RLD, FIELD(shutdown_timeout_ms), NULL,
	    "longest a graceful shutdown may take"),
	BOOL("usage_stats.disabled", "false", RLD, NF,
	     "turn anonymous usage statistics off (rotor never sends any)"),
	BOOL("graphite.enabled", "false", RLD | IGN, NF, "send metrics to Graphite"),
	STR("graphite.host", "localhost", RLD | IGN, NF, NULL, "Graphite host"),
	INT("graphite.port", 2003, 1, 65535, RLD | IGN, NF, "Graphite port"),
	STR("graphite.prefix", "centrifugo", RLD | IGN, NF, NULL, "prefix of metric names"),
	DUR("graphite.interval", "10s", 0, INF, RLD | IGN, NF, NULL, "interval between exports"),
	BOOL("graphite.tags", "false", RLD | IGN, NF, "send tags"),
	BOOL("opentelemetry.enabled", "false", RLD | IGN, NF, "export OpenTelemetry traces"),
	BOOL("opentelemetry.api", "false", RLD | IGN, NF, "trace server API calls"),
	BOOL("opentelemetry.consuming", "false", RLD | IGN, NF, "trace consumed messages"),
};

const size_t conf_nkeys = ROTOR_ARRAY_LEN(conf_keys);

const struct conf_key *conf_key_find(const char *name)
{
	for (size_t i = 0; i < conf_nkeys; i++)
		if (strcmp(conf_keys[i].name, name) == 0)
			return &conf_keys[i];
	return NULL;
}

static const char *type_name(enum conf_type t)
{
	switch (t) {
	case CONF_BOOL: return "bool";
	case CONF_INT: return "int";
	case CONF_DURATION: return "duration";
	case CONF_STRING: return "string";
	case CONF_STRLIST: return "[]string";
	case CONF_JSON: return "json";
	}
	return "?";
}

void conf_keys_print(FILE *out)
{
	for (size_t i = 0; i < conf_nkeys; i++) {
		const struct conf_key *k = &conf_keys[i];
		fprintf(out, "%s\t%s\t%s\t%s\t%s\t%s\n", k->name, type_name(k->type), k->def,
			k->flags & CONF_RELOAD ? "reload" : "restart",
			k->flags & CONF_REFUSED ? "refused" : k->flags & CONF_IGNORED ? "ignored" : "supported", k->doc);
	}
}
