/*
 * proxy_conf.c - the cross-key rules of the proxy keys (proxy.h), apart
 * from the proxies themselves so that everything that links conf.c
 * (rotorctl, the fuzz targets) can check a config without the HTTP client.
 *
 * What rotor does not implement is refused, naming the key: gRPC proxies
 * (a grpc:// endpoint, grpc_metadata, the grpc object), subscribe stream
 * proxies, TLS client certificates towards a proxy.
 */
#include "config.h"
#include "proxy.h"
#include "conf.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const json_t *proxy_json_at(const json_t *root, const char *path)
{
	char key[128];
	while (root && *path) {
		size_t n = strcspn(path, ".");
		if (n >= sizeof key)
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		root = json_object_get(root, key);
		path += n + (path[n] == '.');
	}
	return root;
}

/* VALUE with every ${CENTRIFUGO_VAR_NAME} replaced by that environment
 * variable, as Centrifugo's map-of-strings options do, into a new string;
 * NULL (and the variable's name in ERR) when one is not set. */
static char *expand_vars(const char *value, char *err, size_t n)
{
	struct jw w = { 0 };
	const char *p = value, *q;
	while ((q = strstr(p, "${CENTRIFUGO_VAR_")) != NULL) {
		const char *end = strchr(q, '}');
		if (end == NULL)
			break;
		char name[128];
		size_t len = (size_t)(end - q - 2);
		if (len >= sizeof(name)) {
			snprintf(err, n, "an environment variable name over %zu bytes", sizeof(name) - 1);
			jw_free(&w);
			return NULL;
		}
		memcpy(name, q + 2, len);
		name[len] = '\0';
		const char *v = getenv(name);
		if (v == NULL) {
			snprintf(err, n, "environment variable %s is not set", name);
			jw_free(&w);
			return NULL;
		}
		jw_raw(&w, p, (size_t)(q - p));
		jw_raw(&w, v, strlen(v));
		p = end + 1;
	}
	jw_raw(&w, p, strlen(p));
	char *out = xstrndup(w.buf ? w.buf : "", w.len);
	jw_free(&w);
	return out;
}

const char *proxy_static_headers(const json_t *st, proxy_header_fn *fn, void *arg, char *err, size_t n)
{
	size_t i;
	const char *k;
	const json_t *v;
	if (st == NULL || json_is_null(st))
		return NULL;
	if (json_is_object(st)) {
		json_object_foreach((json_t *)st, k, v) {
			if (!json_is_string(v))
				return snprintf(err, n, "%s: must be a string", k), err;
			char *x = expand_vars(json_string_value(v), err, n);
			if (x == NULL)
				return err;
			fn(arg, k, x);
			free(x);
		}
		return NULL;
	}
	if (!json_is_array(st))
		return snprintf(err, n, "must be an object of strings or an array of {\"key\", \"value\"}"), err;
	json_array_foreach(st, i, v) {
		const json_t *key = json_object_get(v, "key"), *val = json_object_get(v, "value");
		if (!json_is_string(key) || !json_is_string(val))
			return snprintf(err, n, "[%zu]: must be {\"key\": string, \"value\": string}", i), err;
		for (size_t j = 0; j < i; j++)
			if (strcmp(json_string_value(json_object_get(json_array_get(st, j), "key")),
				   json_string_value(key)) == 0)
				return snprintf(err, n, "[%zu]: key \"%s\" given twice", i, json_string_value(key)), err;
		char *x = expand_vars(json_string_value(val), err, n);
		if (x == NULL)
			return err;
		fn(arg, json_string_value(key), x);
		free(x);
	}
	return NULL;
}

struct hdr_check {
	const char *label;
	struct conf_report *rep;
};

static void check_header(void *arg, const char *name, const char *value)
{
	struct hdr_check *c = arg;
	if (*name == '\0' || strpbrk(value, "\r\n") || strpbrk(name, "\r\n: "))
		conf_report_error(c->rep, "%s.http.static_headers.%s: must be a header name and value "
				  "(without CR or LF)", c->label, name);
}

static bool set_nonempty(const json_t *v)
{
	return v && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0) &&
	       !(json_is_object(v) && json_object_size(v) == 0) && !(json_is_string(v) && !*json_string_value(v)) &&
	       !json_is_false(v);
}

static void check_transforms(const char *label, const json_t *tr, struct conf_report *rep)
{
	size_t i;
	const json_t *t;

	if (tr == NULL)
		return;
	if (!json_is_array(tr)) {
		conf_report_error(rep, "%s.http.status_to_code_transforms: must be an array", label);
		return;
	}
	json_array_foreach(tr, i, t) {
		const json_t *st = proxy_json_at(t, "status_code");
		const json_t *ec = proxy_json_at(t, "to_error.code"), *dc = proxy_json_at(t, "to_disconnect.code");
		long long e = json_integer_value(ec), d = json_integer_value(dc);
		if (!json_is_object(t) || !json_is_integer(st) || json_integer_value(st) < 100 ||
		    json_integer_value(st) > 599)
			conf_report_error(rep, "%s.http.status_to_code_transforms[%zu].status_code: must be an HTTP "
					  "status (100-599)", label, i);
		else if ((e > 0) == (d > 0) || e < 0 || d < 0 || e > 0xffffffffLL || d > 0xffffffffLL)
			conf_report_error(rep, "%s.http.status_to_code_transforms[%zu]: needs exactly one of "
					  "to_error.code and to_disconnect.code (> 0)", label, i);
	}
}

/* The rules of one proxy object O labelled LABEL. */
static void check_one(const char *label, const json_t *o, struct conf_report *rep)
{
	const char *ep = json_string_value(proxy_json_at(o, "endpoint"));
	const json_t *http = proxy_json_at(o, "http");
	const char *key;
	const json_t *v;

	if (ep && strncmp(ep, "grpc://", 7) == 0)
		conf_report_error(rep, "%s.endpoint: gRPC proxies are not supported by rotor (HTTP proxies "
				  "only); refused", label);
	else if (ep && *ep && strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)
		conf_report_error(rep, "%s.endpoint: must be an http:// or https:// URL, got \"%s\"", label, ep);
	if (set_nonempty(proxy_json_at(o, "grpc_metadata")))
		conf_report_error(rep, "%s.grpc_metadata: gRPC proxies are not supported by rotor; refused", label);
	if (set_nonempty(proxy_json_at(o, "grpc")))
		conf_report_error(rep, "%s.grpc: gRPC proxies are not supported by rotor; refused", label);
	if (proxy_json_at(o, "timeout") && json_is_string(proxy_json_at(o, "timeout"))) {
		long long ms;
		if (conf_duration_ms(json_string_value(proxy_json_at(o, "timeout")), &ms) != RT_OK || ms <= 0)
			conf_report_error(rep, "%s.timeout: must be a positive duration, got \"%s\"", label,
					  json_string_value(proxy_json_at(o, "timeout")));
	}
	if (http && !json_is_object(http)) {
		conf_report_error(rep, "%s.http: must be an object", label);
		return;
	}
	json_object_foreach((json_t *)http, key, v) {
		if (strcmp(key, "static_headers") == 0) {
			struct hdr_check hc = { label, rep };
			char err[256];
			if (proxy_static_headers(v, check_header, &hc, err, sizeof(err)))
				conf_report_error(rep, "%s.http.static_headers%s%s", label, *err == '[' ? "" : ": ", err);
		} else if (strcmp(key, "status_to_code_transforms") == 0) {
			check_transforms(label, v, rep);
		} else if (strcmp(key, "tls") == 0) {
			const char *tk;
			const json_t *tv;
			json_object_foreach((json_t *)v, tk, tv) {
				if (strcmp(tk, "enabled") == 0 || strcmp(tk, "insecure_skip_verify") == 0)
					continue;
				if (strcmp(tk, "server_ca_pem_file") == 0 && (json_is_string(tv) || json_is_null(tv)))
					continue;
				if (set_nonempty(tv))
					conf_report_error(rep, "%s.http.tls.%s: not supported by rotor for proxies "
							  "(enabled, insecure_skip_verify and server_ca_pem_file are); "
							  "refused", label, tk);
			}
		} else {
			conf_report_error(rep, "%s.http.%s: unknown option (static_headers, "
					  "status_to_code_transforms, tls)", label, key);
		}
	}
}

static bool has_endpoint(const json_t *o)
{
	const char *ep = json_string_value(proxy_json_at(o, "endpoint"));
	return ep && *ep;
}

/* The proxy NAME ("default": the section DEF) used by option LABEL must
 * have an endpoint. */
static void check_used(const struct conf *c, const char *label, const char *name, const char *def,
		       struct conf_report *rep)
{
	size_t i;
	const json_t *p;

	if (*name == '\0' || strcmp(name, "default") == 0) {
		if (!has_endpoint(proxy_json_at(c->doc, def)))
			conf_report_error(rep, "%s: needs %s.endpoint", label, def);
		return;
	}
	json_array_foreach(proxy_json_at(c->doc, "proxies"), i, p) {
		const char *s = json_string_value(json_object_get(p, "name"));
		if (s && strcmp(s, name) == 0 && !has_endpoint(p))
			conf_report_error(rep, "%s: proxies[%s] has no endpoint", label, name);
	}
}

static void check_channel_opts(const struct conf *c, const char *label, const json_t *o, struct conf_report *rep)
{
	static const char *const kinds[][2] = {
		{ "subscribe", "channel.proxy.subscribe" },
		{ "publish", "channel.proxy.publish" },
		{ "sub_refresh", "channel.proxy.sub_refresh" },
	};
	char en[64], nm[64], where[256];

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(kinds); i++) {
		snprintf(en, sizeof en, "%s_proxy_enabled", kinds[i][0]);
		snprintf(nm, sizeof nm, "%s_proxy_name", kinds[i][0]);
		if (!json_is_true(json_object_get(o, en)))
			continue;
		const char *name = json_string_value(json_object_get(o, nm));
		snprintf(where, sizeof where, "%s.%s", label, en);
		check_used(c, where, name ? name : "default", kinds[i][1], rep);
	}
}

static void check_rpc_opts(const struct conf *c, const char *label, const json_t *o, struct conf_report *rep)
{
	char where[256];
	if (!json_is_true(json_object_get(o, "proxy_enabled")))
		return;
	const char *name = json_string_value(json_object_get(o, "proxy_name"));
	snprintf(where, sizeof where, "%s.proxy_enabled", label);
	check_used(c, where, name ? name : "default", "rpc.proxy", rep);
}

void proxy_conf_check(const struct conf *c, struct conf_report *rep)
{
	static const char *const sections[] = {
		"client.proxy.connect", "client.proxy.refresh", "channel.proxy.subscribe",
		"channel.proxy.publish", "channel.proxy.sub_refresh", "rpc.proxy",
	};
	char label[160];
	size_t i;
	const json_t *v;

	for (i = 0; i < ROTOR_ARRAY_LEN(sections); i++)
		check_one(sections[i], proxy_json_at(c->doc, sections[i]), rep);
	if (has_endpoint(proxy_json_at(c->doc, "channel.proxy.subscribe_stream")))
		conf_report_error(rep, "channel.proxy.subscribe_stream.endpoint: subscribe stream proxies are not "
				  "supported by rotor; refused");
	json_array_foreach(proxy_json_at(c->doc, "proxies"), i, v) {
		snprintf(label, sizeof label, "proxies[%s]", json_string_value(json_object_get(v, "name")));
		check_one(label, v, rep);
	}
	if (json_is_true(proxy_json_at(c->doc, "client.proxy.connect.enabled")))
		check_used(c, "client.proxy.connect.enabled", "default", "client.proxy.connect", rep);
	if (json_is_true(proxy_json_at(c->doc, "client.proxy.refresh.enabled")))
		check_used(c, "client.proxy.refresh.enabled", "default", "client.proxy.refresh", rep);
	check_channel_opts(c, "channel.without_namespace", proxy_json_at(c->doc, "channel.without_namespace"), rep);
	json_array_foreach(proxy_json_at(c->doc, "channel.namespaces"), i, v) {
		snprintf(label, sizeof label, "channel.namespaces[%s]", json_string_value(json_object_get(v, "name")));
		check_channel_opts(c, label, v, rep);
	}
	check_rpc_opts(c, "rpc.without_namespace", proxy_json_at(c->doc, "rpc.without_namespace"), rep);
	json_array_foreach(proxy_json_at(c->doc, "rpc.namespaces"), i, v) {
		snprintf(label, sizeof label, "rpc.namespaces[%s]", json_string_value(json_object_get(v, "name")));
		check_rpc_opts(c, label, v, rep);
	}
}
