/*
 * proxy.c - what every proxy kind shares (proxy.h): the proxies of a config
 * (the default one of each kind and the named ones), the request envelope
 * and headers, the HTTP exchange through upstream.h, and the answer:
 * result / error / disconnect, status_to_code_transforms, b64 fields.
 *
 * Ownership: a struct proxy is reference-counted: its set holds one
 * reference, every call in flight another, so a reload (which frees the old
 * set) never pulls a proxy from under a call. Upstreams belong to upstream.c
 * and live as long as the worker.
 */
#include "config.h"
#include "proxy.h"
#include "b64.h"
#include "conf.h"
#include "http.h"
#include "log.h"
#include "upstream.h"
#include "stats.h"
#include "util.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct proxy_kind_ops *const kinds[PROXY_KINDS] = {
	[PROXY_CONNECT] = &proxy_kind_connect,     [PROXY_REFRESH] = &proxy_kind_refresh,
	[PROXY_SUBSCRIBE] = &proxy_kind_subscribe, [PROXY_PUBLISH] = &proxy_kind_publish,
	[PROXY_SUB_REFRESH] = &proxy_kind_sub_refresh, [PROXY_RPC] = &proxy_kind_rpc,
};

_Static_assert(PROXY_KINDS == STATS_PROXY_KINDS, "the proxy table of shm/stats.h has a column per kind");

/* The config section of each kind's default proxy. */
static const char *const sections[PROXY_KINDS] = {
	[PROXY_CONNECT] = "client.proxy.connect",   [PROXY_REFRESH] = "client.proxy.refresh",
	[PROXY_SUBSCRIBE] = "channel.proxy.subscribe", [PROXY_PUBLISH] = "channel.proxy.publish",
	[PROXY_SUB_REFRESH] = "channel.proxy.sub_refresh", [PROXY_RPC] = "rpc.proxy",
};

struct transform {
	int status;
	bool disconnect;
	uint32_t code;
	bool temporary;
	char *message;
};

struct hdr {
	char *name, *value;
	bool emulated;                 /* from the connect request's headers, not HTTP */
};

struct proxy {
	unsigned refs;
	char *name;                    /* "default" or the named proxy's */
	char *endpoint;
	struct ev_loop *loop;
	struct stats_block *ctr;       /* the worker's counters; NULL: not counted */
	int stat;                      /* its entry in ctr->px, -1: not counted */
	struct upstream *up;           /* NULL: could not be made (calls fail) */
	uint64_t timeout_ms;
	bool b64, include_meta;
	char **pass;                   /* http_headers, lower case */
	size_t npass;
	char **emul;                   /* emulated_headers, lower case */
	size_t nemul;
	struct hdr *statics;           /* http.static_headers */
	size_t nstatics;
	struct transform *tr;
	size_t ntr;
};

struct rpc_ns {
	char *name;
	bool enabled;
	char *proxy;
};

struct proxy_set {
	struct proxy *def[PROXY_KINDS];    /* NULL without an endpoint */
	bool enabled[PROXY_KINDS];         /* connect, refresh: the section's enabled */
	struct proxy **named;
	size_t nnamed;
	struct rpc_ns rpc_none;            /* rpc.without_namespace */
	struct rpc_ns *rpc;                /* rpc.namespaces */
	size_t nrpc;
	char *rpc_boundary;
	char **keep;                       /* union of every proxy's http_headers */
	size_t nkeep;
	char **ekeep;                      /* union of every proxy's emulated_headers */
	size_t nekeep;
};

struct proxy_headers {
	size_t n;
	struct hdr v[];
};

struct proxy_call {
	struct proxy *p;
	const struct proxy_kind_ops *kind;
	enum proxy_kind k;
	int64_t start_ns;
	struct upstream_req *ur;
	ev_timer fail_w;                   /* a proxy without upstream fails from here */
	proxy_done_fn *done;
	void *arg;
};

/* ---- config ------------------------------------------------------------- */

static const char *str_at(const json_t *root, const char *path)
{
	const char *s = json_string_value(proxy_json_at(root, path));
	return s ? s : "";
}

static void proxy_unref(struct proxy *p)
{
	if (p == NULL || --p->refs > 0)
		return;
	free(p->name);
	free(p->endpoint);
	for (size_t i = 0; i < p->npass; i++)
		free(p->pass[i]);
	free(p->pass);
	for (size_t i = 0; i < p->nemul; i++)
		free(p->emul[i]);
	free(p->emul);
	for (size_t i = 0; i < p->nstatics; i++) {
		free(p->statics[i].name);
		free(p->statics[i].value);
	}
	free(p->statics);
	for (size_t i = 0; i < p->ntr; i++)
		free(p->tr[i].message);
	free(p->tr);
	free(p);
}

/* One static header of P (proxy_static_headers' callback). */
static void add_static(void *arg, const char *name, const char *value)
{
	struct proxy *p = arg;
	p->statics[p->nstatics].name = xstrdup(name);
	p->statics[p->nstatics].value = xstrdup(value);
	p->nstatics++;
}

/* The strings of list L, lower-cased, into *V (owned), their count into *N. */
static void lower_list(const json_t *l, char ***v, size_t *n)
{
	size_t i;
	const json_t *e;

	*v = xcalloc(json_array_size(l) + 1, sizeof(**v));
	*n = 0;
	json_array_foreach(l, i, e) {
		if (!json_is_string(e))
			continue;
		char *h = xstrdup(json_string_value(e));
		for (char *c = h; *c; c++)
			*c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
		(*v)[(*n)++] = h;
	}
}

/* A proxy from object O (a section or an item of `proxies`), validated by
 * proxy_conf_check. NULL when it has no endpoint. */
static struct proxy *proxy_new(struct ev_loop *loop, struct stats_block *ctr, const char *name, const json_t *o)
{
	const char *endpoint = str_at(o, "endpoint");
	const char *timeout = str_at(o, "timeout");
	long long ms = 1000;
	size_t i;
	const json_t *v;

	if (*endpoint == '\0')
		return NULL;
	struct proxy *p = xcalloc(1, sizeof(*p));
	p->refs = 1;
	p->name = xstrdup(name);
	p->endpoint = xstrdup(endpoint);
	p->loop = loop;
	p->ctr = ctr;
	p->stat = ctr ? stats_proxy_slot(ctr, name, strlen(name)) : -1;
	if (ctr && p->stat < 0)
		log_warn("proxy %s: not counted in the metrics (more than %d proxy names, or a name over %d bytes)",
			 name, STATS_PROXY_NAMES, STATS_PROXY_NAME_LEN - 1);
	if (*timeout && conf_duration_ms(timeout, &ms) != RT_OK)
		ms = 1000;
	p->timeout_ms = ms > 0 ? (uint64_t)ms : 1000;
	p->b64 = json_is_true(proxy_json_at(o, "binary_encoding"));
	p->include_meta = json_is_true(proxy_json_at(o, "include_connection_meta"));
	lower_list(proxy_json_at(o, "http_headers"), &p->pass, &p->npass);
	lower_list(proxy_json_at(o, "emulated_headers"), &p->emul, &p->nemul);
	const json_t *st = proxy_json_at(o, "http.static_headers");
	char err[256];          /* the config was checked: no error here */
	p->statics = xcalloc((json_is_array(st) ? json_array_size(st) : json_object_size(st)) + 1,
			     sizeof(*p->statics));
	proxy_static_headers(st, add_static, p, err, sizeof(err));
	const json_t *tr = proxy_json_at(o, "http.status_to_code_transforms");
	p->tr = xcalloc(json_array_size(tr) + 1, sizeof(*p->tr));
	json_array_foreach(tr, i, v) {
		struct transform *t = &p->tr[p->ntr];
		long long ec = json_integer_value(proxy_json_at(v, "to_error.code"));
		long long dc = json_integer_value(proxy_json_at(v, "to_disconnect.code"));
		t->status = (int)json_integer_value(proxy_json_at(v, "status_code"));
		if (ec > 0) {
			t->code = (uint32_t)ec;
			t->message = xstrdup(str_at(v, "to_error.message"));
			t->temporary = json_is_true(proxy_json_at(v, "to_error.temporary"));
		} else if (dc > 0) {
			t->disconnect = true;
			t->code = (uint32_t)dc;
			t->message = xstrdup(str_at(v, "to_disconnect.reason"));
		} else {
			continue;
		}
		p->ntr++;
	}
	struct upstream_opts uo = { 0 };
	if (json_is_true(proxy_json_at(o, "http.tls.enabled"))) { /* else https with the system's roots */
		const char *ca = str_at(o, "http.tls.server_ca_pem_file");
		uo.tls_insecure = json_is_true(proxy_json_at(o, "http.tls.insecure_skip_verify"));
		uo.ca_file = *ca ? ca : NULL;
	}
	p->up = upstream_get(loop, endpoint, &uo, err, sizeof err);
	if (p->up == NULL)
		log_error("proxy %s (%s): %s; its calls fail until a reload", name, endpoint, err);
	return p;
}

/* Adds the names of FROM (N) missing from *V (*NV). */
static void union_add(char ***v, size_t *nv, char *const *from, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t j;
		for (j = 0; j < *nv && strcmp((*v)[j], from[i]) != 0; j++)
			;
		if (j < *nv)
			continue;
		*v = xrealloc(*v, (*nv + 1) * sizeof(**v));
		(*v)[(*nv)++] = xstrdup(from[i]);
	}
}

static void keep_add(struct proxy_set *s, const struct proxy *p)
{
	if (p == NULL)
		return;
	union_add(&s->keep, &s->nkeep, p->pass, p->npass);
	union_add(&s->ekeep, &s->nekeep, p->emul, p->nemul);
}

static void rpc_ns_read(struct rpc_ns *r, const char *name, const json_t *o)
{
	const char *pn = str_at(o, "proxy_name");
	r->name = xstrdup(name);
	r->enabled = json_is_true(proxy_json_at(o, "proxy_enabled"));
	r->proxy = xstrdup(*pn ? pn : "default");
}

struct proxy_set *proxy_set_new(struct ev_loop *loop, const struct conf *c, struct stats_block *ctr)
{
	struct proxy_set *s = xcalloc(1, sizeof(*s));
	size_t i;
	const json_t *v;

	for (int k = 0; k < PROXY_KINDS; k++) {
		const json_t *o = proxy_json_at(c->doc, sections[k]);
		s->def[k] = proxy_new(loop, ctr, "default", o);
		s->enabled[k] = s->def[k] != NULL &&
				(k == PROXY_CONNECT || k == PROXY_REFRESH ? json_is_true(proxy_json_at(o, "enabled")) : true);
		keep_add(s, s->def[k]);
	}
	const json_t *named = proxy_json_at(c->doc, "proxies");
	s->named = xcalloc(json_array_size(named) + 1, sizeof(*s->named));
	json_array_foreach(named, i, v) {
		struct proxy *p = proxy_new(loop, ctr, str_at(v, "name"), v);
		if (p) {
			s->named[s->nnamed++] = p;
			keep_add(s, p);
		}
	}
	rpc_ns_read(&s->rpc_none, "", proxy_json_at(c->doc, "rpc.without_namespace"));
	const json_t *rns = proxy_json_at(c->doc, "rpc.namespaces");
	s->rpc = xcalloc(json_array_size(rns) + 1, sizeof(*s->rpc));
	json_array_foreach(rns, i, v)
		rpc_ns_read(&s->rpc[s->nrpc++], str_at(v, "name"), v);
	s->rpc_boundary = xstrdup(str_at(c->doc, "rpc.namespace_boundary"));
	return s;
}

static void rpc_ns_free(struct rpc_ns *r)
{
	free(r->name);
	free(r->proxy);
}

void proxy_set_free(struct proxy_set *s)
{
	if (s == NULL)
		return;
	for (int k = 0; k < PROXY_KINDS; k++)
		proxy_unref(s->def[k]);
	for (size_t i = 0; i < s->nnamed; i++)
		proxy_unref(s->named[i]);
	free(s->named);
	rpc_ns_free(&s->rpc_none);
	for (size_t i = 0; i < s->nrpc; i++)
		rpc_ns_free(&s->rpc[i]);
	free(s->rpc);
	free(s->rpc_boundary);
	for (size_t i = 0; i < s->nkeep; i++)
		free(s->keep[i]);
	free(s->keep);
	for (size_t i = 0; i < s->nekeep; i++)
		free(s->ekeep[i]);
	free(s->ekeep);
	free(s);
}

const struct proxy *proxy_find(const struct proxy_set *s, enum proxy_kind kind, const char *name)
{
	if (kind == PROXY_CONNECT || kind == PROXY_REFRESH || name == NULL || *name == '\0' ||
	    strcmp(name, "default") == 0)
		return s->enabled[kind] ? s->def[kind] : NULL;
	for (size_t i = 0; i < s->nnamed; i++)
		if (strcmp(s->named[i]->name, name) == 0)
			return s->named[i];
	return NULL;
}

bool proxy_enabled(const struct proxy_set *s, enum proxy_kind kind)
{
	return s->enabled[kind];
}

const struct proxy *proxy_for_rpc(const struct proxy_set *s, struct pstr method)
{
	const struct rpc_ns *r = &s->rpc_none;
	size_t bl = strlen(s->rpc_boundary);
	const char *b = NULL;

	for (size_t i = 0; bl && i + bl <= method.n && !b; i++)
		if (memcmp(method.p + i, s->rpc_boundary, bl) == 0)
			b = method.p + i;
	if (b && b > method.p) {
		size_t n = (size_t)(b - method.p);
		r = NULL;
		for (size_t i = 0; i < s->nrpc && !r; i++)
			if (strlen(s->rpc[i].name) == n && memcmp(s->rpc[i].name, method.p, n) == 0)
				r = &s->rpc[i];
		if (r == NULL)
			return NULL; /* an unknown namespace: no handler (104) */
	}
	return r->enabled ? proxy_find(s, PROXY_RPC, r->proxy) : NULL;
}

bool proxy_rpc_configured(const struct proxy_set *s)
{
	bool any = s->rpc_none.enabled;
	for (size_t i = 0; i < s->nrpc; i++)
		any |= s->rpc[i].enabled;
	return any;
}

/* ---- headers ------------------------------------------------------------ */

struct proxy_headers *proxy_headers_keep(const struct proxy_set *s, const struct http_req *req)
{
	struct proxy_headers *h = NULL;

	if (s == NULL || req == NULL || s->nkeep == 0)
		return NULL;
	for (size_t i = 0; i < req->nheaders; i++) {
		size_t j;
		for (j = 0; j < s->nkeep && strcasecmp(s->keep[j], req->headers[i].name) != 0; j++)
			;
		if (j == s->nkeep)
			continue;
		size_t n = h ? h->n : 0;
		h = xrealloc(h, sizeof(*h) + (n + 1) * sizeof(h->v[0]));
		h->n = n + 1;
		h->v[n].name = xstrdup(req->headers[i].name);
		h->v[n].value = xstrdup(req->headers[i].value);
		h->v[n].emulated = false;
	}
	return h;
}

/* Whether NAME is an HTTP token (RFC 9110 tchar) and VALUE has no control
 * character but HTAB: what may be written into a request's header line. */
static bool header_ok(struct pstr name, struct pstr value)
{
	static const char tchar[] = "!#$%&'*+-.^_`|~";
	if (name.n == 0)
		return false;
	for (size_t i = 0; i < name.n; i++) {
		unsigned char c = (unsigned char)name.p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c != 0 && strchr(tchar, c))))
			return false;
	}
	for (size_t i = 0; i < value.n; i++) {
		unsigned char c = (unsigned char)value.p[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

int proxy_headers_emulate(const struct proxy_set *s, struct proxy_headers **hp, const struct connect_hdr *v,
			  size_t n)
{
	struct proxy_headers *h = *hp;
	int dropped = 0;

	if (s == NULL || s->nekeep == 0)
		return 0;
	/* A replayed connect comes here again: what it added before goes. */
	for (size_t i = 0; h && i < h->n;) {
		if (h->v[i].emulated) {
			free(h->v[i].name);
			free(h->v[i].value);
			h->v[i] = h->v[--h->n];
		} else {
			i++;
		}
	}
	for (size_t i = 0; i < n; i++) {
		size_t j;
		for (j = 0; j < s->nekeep && (strlen(s->ekeep[j]) != v[i].name.n ||
					      strncasecmp(s->ekeep[j], v[i].name.p, v[i].name.n) != 0); j++)
			;
		if (j == s->nekeep)
			continue;
		if (!header_ok(v[i].name, v[i].value)) {
			dropped++;
			continue;
		}
		size_t k;   /* a repeated name: the last one wins (map semantics) */
		for (k = 0; h && k < h->n && !(h->v[k].emulated && strlen(h->v[k].name) == v[i].name.n &&
						strncasecmp(h->v[k].name, v[i].name.p, v[i].name.n) == 0); k++)
			;
		if (h && k < h->n) {
			free(h->v[k].value);
			h->v[k].value = xstrndup(v[i].value.p, v[i].value.n);
			continue;
		}
		size_t m = h ? h->n : 0;
		h = xrealloc(h, sizeof(*h) + (m + 1) * sizeof(h->v[0]));
		h->n = m + 1;
		h->v[m].name = xstrndup(v[i].name.p, v[i].name.n);
		h->v[m].value = xstrndup(v[i].value.p, v[i].value.n);
		h->v[m].emulated = true;
	}
	*hp = h;
	return dropped;
}

void proxy_headers_free(struct proxy_headers *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->n; i++) {
		free(h->v[i].name);
		free(h->v[i].value);
	}
	free(h);
}

/* ---- the answer --------------------------------------------------------- */

void proxy_answer_free(struct proxy_answer *a)
{
	if (a == NULL)
		return;
	free(a->message);
	free(a->user);
	pstr_free(&a->info);
	pstr_free(&a->data);
	pstr_free(&a->meta);
	for (size_t i = 0; i < a->nsubs; i++) {
		free(a->subs[i].channel);
		pstr_free(&a->subs[i].info);
		pstr_free(&a->subs[i].data);
	}
	free(a->subs);
	for (size_t i = 0; i < a->ntags; i++) {
		pstr_free(&a->tags[i].key);
		pstr_free(&a->tags[i].value);
	}
	free(a->tags);
	pstr_free(&a->idempotency_key);
	free(a);
}

/* `NAME` or `b64NAME` of object OBJ into *OUT (owned): the base64 form
 * wins when non-empty, unless RAW_FIRST and NAME is there. Returns false
 * for bad base64; *HAS tells whether either was there (null counts as
 * absent). */
static bool bytes_field(const struct js_doc *d, uint32_t obj, const char *name, struct pstr *out, bool *has,
			bool raw_first)
{
	char b64name[32];
	snprintf(b64name, sizeof b64name, "b64%s", name);
	int64_t b = js_get(d, obj, b64name, false);
	int64_t r = js_get(d, obj, name, false);

	if (raw_first && r >= 0 && js_type(d, (uint32_t)r) != JS_NULL)
		b = -1;
	if (b >= 0 && js_type(d, (uint32_t)b) == JS_STRING && js_rawlen(d, (uint32_t)b) > 2) {
		char *s = js_strdup(d, (uint32_t)b);
		size_t n = strlen(s), len;
		char *p = xmalloc(b64_decoded_max(n) + 1);
		bool ok = b64_decode(p, &len, s, n, B64_STD) == RT_OK;
		free(s);
		if (!ok) {
			free(p);
			return false;
		}
		out->p = p;
		out->n = len;
		*has = true;
	} else if (r >= 0 && js_type(d, (uint32_t)r) != JS_NULL) {
		*out = pstr_dup((struct pstr){ js_raw(d, (uint32_t)r), js_rawlen(d, (uint32_t)r) });
		*has = true;
	}
	return true;
}

static struct chan_override override_of(const struct js_doc *d, int64_t ov)
{
	static const char *const names[] = { "presence", "join_leave", "force_push_join_leave",
					     "force_recovery", "force_positioning" };
	struct chan_override r = CHAN_OVERRIDE_NONE;
	int8_t *fields[] = { &r.presence, &r.join_leave, &r.force_push_join_leave, &r.force_recovery,
			     &r.force_positioning };
	for (size_t i = 0; ov >= 0 && i < ROTOR_ARRAY_LEN(names); i++) {
		int64_t f = js_get(d, (uint32_t)ov, names[i], false);
		bool b;
		if (f >= 0 && js_bool(d, (uint32_t)js_get(d, (uint32_t)f, "value", false), &b) == RT_OK)
			*fields[i] = b ? 1 : 0;
	}
	return r;
}

static void sub_add(struct proxy_answer *a, char *channel)
{
	a->subs = xrealloc(a->subs, (a->nsubs + 1) * sizeof(*a->subs));
	memset(&a->subs[a->nsubs], 0, sizeof(a->subs[0]));
	a->subs[a->nsubs].channel = channel;
	a->subs[a->nsubs].ov = CHAN_OVERRIDE_NONE;
	a->nsubs++;
}

/* The fields of result object RES. False when one is malformed. */
static bool parse_result(struct proxy_answer *a, const struct js_doc *d, uint32_t res, bool data_first)
{
	int64_t v;
	uint32_t it = 0, key, val;

	if ((v = js_get(d, res, "user", false)) >= 0 && js_type(d, (uint32_t)v) == JS_STRING)
		a->user = js_strdup(d, (uint32_t)v);
	if ((v = js_get(d, res, "expire_at", false)) >= 0 && js_type(d, (uint32_t)v) != JS_NULL &&
	    js_int64(d, (uint32_t)v, &a->expire_at) != RT_OK)
		return false;
	if ((v = js_get(d, res, "expired", false)) >= 0)
		js_bool(d, (uint32_t)v, &a->expired);
	if ((v = js_get(d, res, "skip_history", false)) >= 0)
		js_bool(d, (uint32_t)v, &a->skip_history);
	if (!bytes_field(d, res, "info", &a->info, &a->has_info, false) ||
	    !bytes_field(d, res, "data", &a->data, &a->has_data, data_first))
		return false;
	if ((v = js_get(d, res, "idempotency_key", false)) >= 0 && js_type(d, (uint32_t)v) == JS_STRING) {
		char *k = js_strdup(d, (uint32_t)v);
		a->idempotency_key = (struct pstr){ k, strlen(k) };
	}
	if ((v = js_get(d, res, "tags", false)) >= 0 && js_type(d, (uint32_t)v) == JS_OBJECT) {
		a->tags = xcalloc(d->t[v].size + 1, sizeof(*a->tags));
		while (js_next_member(d, (uint32_t)v, &it, &key, &val)) {
			if (js_type(d, val) != JS_STRING)
				return false;
			char *k = js_strdup(d, key), *s = js_strdup(d, val);
			a->tags[a->ntags].key = (struct pstr){ k, strlen(k) };
			a->tags[a->ntags].value = (struct pstr){ s, strlen(s) };
			a->ntags++;
		}
		it = 0;
	}
	if ((v = js_get(d, res, "meta", false)) >= 0 && js_type(d, (uint32_t)v) != JS_NULL) {
		a->meta = pstr_dup((struct pstr){ js_raw(d, (uint32_t)v), js_rawlen(d, (uint32_t)v) });
		a->has_meta = true;
	}
	if ((v = js_get(d, res, "override", false)) >= 0 && js_type(d, (uint32_t)v) == JS_OBJECT) {
		a->ov = override_of(d, v);
		a->has_override = true;
	} else {
		a->ov = CHAN_OVERRIDE_NONE;
	}
	if ((v = js_get(d, res, "channels", false)) >= 0 && js_type(d, (uint32_t)v) == JS_ARRAY) {
		while (js_next_elem(d, (uint32_t)v, &it, &val))
			if (js_type(d, val) == JS_STRING && js_rawlen(d, val) > 2)
				sub_add(a, js_strdup(d, val));
	}
	if ((v = js_get(d, res, "subs", false)) >= 0 && js_type(d, (uint32_t)v) == JS_OBJECT) {
		it = 0;
		while (js_next_member(d, (uint32_t)v, &it, &key, &val)) {
			if (js_rawlen(d, key) <= 2)
				continue;
			sub_add(a, js_strdup(d, key));
			struct proxy_sub *s = &a->subs[a->nsubs - 1];
			bool has;
			if (!bytes_field(d, val, "info", &s->info, &has, false) ||
			    !bytes_field(d, val, "data", &s->data, &has, false))
				return false;
			s->ov = override_of(d, js_get(d, val, "override", false));
		}
	}
	return true;
}

/* Reads BODY into A: disconnect, then error, then result (Centrifugo's
 * order; DATA_FIRST as proxy_kind_ops). False when it is not a JSON object
 * or a field is malformed. */
static bool parse_answer(struct proxy_answer *a, const char *body, size_t len, bool data_first)
{
	struct js_doc d = { 0 };
	int64_t v;
	bool ok = true;

	if (js_scan(&d, body, len, 0) != RT_OK || js_type(&d, 0) != JS_OBJECT) {
		js_free(&d);
		return false;
	}
	if ((v = js_get(&d, 0, "disconnect", false)) >= 0 && js_type(&d, (uint32_t)v) == JS_OBJECT) {
		uint64_t code = 0;
		int64_t r = js_get(&d, (uint32_t)v, "reason", false);
		a->outcome = PROXY_DISCONNECT;
		js_uint64(&d, (uint32_t)js_get(&d, (uint32_t)v, "code", false), &code);
		a->code = (uint32_t)code;
		a->message = r >= 0 ? js_strdup(&d, (uint32_t)r) : NULL;
	} else if ((v = js_get(&d, 0, "error", false)) >= 0 && js_type(&d, (uint32_t)v) == JS_OBJECT) {
		uint64_t code = 0;
		int64_t m = js_get(&d, (uint32_t)v, "message", false);
		int64_t t = js_get(&d, (uint32_t)v, "temporary", false);
		a->outcome = PROXY_ERROR;
		js_uint64(&d, (uint32_t)js_get(&d, (uint32_t)v, "code", false), &code);
		a->code = (uint32_t)code;
		a->message = m >= 0 ? js_strdup(&d, (uint32_t)m) : NULL;
		if (t >= 0)
			js_bool(&d, (uint32_t)t, &a->temporary);
	} else if ((v = js_get(&d, 0, "result", false)) >= 0 && js_type(&d, (uint32_t)v) == JS_OBJECT) {
		a->outcome = PROXY_RESULT;
		ok = parse_result(a, &d, (uint32_t)v, data_first);
	} else {
		a->outcome = PROXY_NO_RESULT;
	}
	js_free(&d);
	return ok;
}

/* ---- the call ----------------------------------------------------------- */

static const char *const upstream_errs[] = {
	[UPSTREAM_OK] = "ok", [UPSTREAM_ETIMEDOUT] = "timeout", [UPSTREAM_ECONNECT] = "connect failed",
	[UPSTREAM_ETLS] = "TLS failed", [UPSTREAM_ECLOSED] = "connection closed",
	[UPSTREAM_ETOOBIG] = "response too large", [UPSTREAM_EPROTO] = "malformed response",
	[UPSTREAM_ESHUTDOWN] = "shutdown",
};

/* The call's metrics: in flight while it waits; when it ends (ANSWERED
 * false: cancelled, the client left), its duration, and an error when it
 * got no usable answer (PROXY_FAILED). */
static void count_start(struct proxy_call *call)
{
	struct proxy *p = call->p;
	call->start_ns = util_mono_ns();
	if (p->stat >= 0)
		STATS_BUMP(p->ctr, px[p->stat].inflight[call->k], 1);
}

static void count_end(struct proxy_call *call, const struct proxy_answer *a)
{
	struct proxy *p = call->p;
	if (p->stat < 0)
		return;
	STATS_BUMP(p->ctr, px[p->stat].inflight[call->k], (uint64_t)-1);
	if (a == NULL)
		return;
	int64_t ns = util_mono_ns() - call->start_ns;
	stats_observe(&p->ctr->px[p->stat].dur[call->k], ns > 0 ? (uint64_t)ns : 0);
	if (a->outcome == PROXY_FAILED)
		STATS_BUMP(p->ctr, px[p->stat].errors[call->k], 1);
}

static void finish(struct proxy_call *call, struct proxy_answer *a)
{
	if (a->message == NULL)
		a->message = xstrdup("");
	count_end(call, a);
	proxy_unref(call->p);
	proxy_done_fn *done = call->done;
	void *arg = call->arg;
	free(call);
	done(arg, a);
}

static void fail(struct proxy_call *call, struct proxy_answer *a, const char *why, int status)
{
	log_warn("%s proxy %s (%s): %s%s%.0d", call->kind->name, call->p->name, call->p->endpoint, why,
		 status ? " " : "", status);
	a->outcome = PROXY_FAILED;
	a->code = 100;
	finish(call, a);
}

static void on_response(void *arg, const struct upstream_resp *r)
{
	struct proxy_call *call = arg;
	struct proxy_answer *a = xcalloc(1, sizeof(*a));

	a->ov = CHAN_OVERRIDE_NONE;
	call->ur = NULL;
	if (r->err != UPSTREAM_OK) {
		fail(call, a, r->err < (int)ROTOR_ARRAY_LEN(upstream_errs) ? upstream_errs[r->err] : "error", 0);
		return;
	}
	if (r->status != 200) {
		for (size_t i = 0; i < call->p->ntr; i++) {
			const struct transform *t = &call->p->tr[i];
			if (t->status != r->status)
				continue;
			a->outcome = t->disconnect ? PROXY_DISCONNECT : PROXY_ERROR;
			a->code = t->code;
			a->message = xstrdup(t->message);
			a->temporary = t->temporary;
			finish(call, a);
			return;
		}
		fail(call, a, "unexpected HTTP status", r->status);
		return;
	}
	if (!parse_answer(a, r->body, r->len, call->kind->data_first)) {
		fail(call, a, "the response is not a valid proxy answer", 0);
		return;
	}
	finish(call, a);
}

static void on_no_upstream(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct proxy_call *call = w->data;
	struct proxy_answer *a = xcalloc(1, sizeof(*a));
	(void)revents;
	ev_timer_stop(loop, w);
	a->ov = CHAN_OVERRIDE_NONE;
	fail(call, a, "no upstream", 0);
}

void proxy_write_data(struct jw *w, struct pstr data, bool b64)
{
	if (!b64 && data.n > 0 && js_valid(data.p, data.n)) {
		jw_lit(w, ",\"data\":");
		jw_json(w, data.p, data.n);
		return;
	}
	char *s = b64_encode_alloc(data.p, data.n, B64_STD);
	jw_lit(w, ",\"b64data\":");
	jw_str(w, s, strlen(s));
	free(s);
}

static bool listed(char *const *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(v[i], name) == 0)
			return true;
	return false;
}

/* Whether P passes on a header NAME that the client sent (CH), as a real
 * HTTP header (EMULATED false: listed in http_headers) or as an emulated
 * one (listed in emulated_headers, and no real one of that name passes). */
static bool passes(const struct proxy *p, const struct proxy_headers *ch, const char *name, bool emulated)
{
	if (!listed(emulated ? p->emul : p->pass, emulated ? p->nemul : p->npass, name))
		return false;
	for (size_t j = 0; ch && j < ch->n; j++)
		if (ch->v[j].emulated == emulated && strcasecmp(ch->v[j].name, name) == 0)
			return !emulated || !passes(p, ch, name, false);
	return false;
}

/* The request headers into H (CAP entries): Content-Type, the static ones,
 * then the client's: an emulated one listed in emulated_headers, a real one
 * listed in http_headers. Centrifugo's precedence: real over emulated over
 * static, for one name. */
static size_t build_headers(const struct proxy *p, const struct proxy_headers *ch, struct upstream_header *h,
			    size_t cap)
{
	size_t n = 0;
	h[n++] = (struct upstream_header){ "Content-Type", "application/json", 16 };
	for (size_t i = 0; i < p->nstatics && n < cap; i++)
		if (!passes(p, ch, p->statics[i].name, false) && !passes(p, ch, p->statics[i].name, true))
			h[n++] = (struct upstream_header){ p->statics[i].name, p->statics[i].value,
							   strlen(p->statics[i].value) };
	for (size_t j = 0; ch && j < ch->n && n < cap; j++)
		if (passes(p, ch, ch->v[j].name, ch->v[j].emulated))
			h[n++] = (struct upstream_header){ ch->v[j].name, ch->v[j].value, strlen(ch->v[j].value) };
	return n;
}

struct proxy_call *proxy_call(const struct proxy *cp, enum proxy_kind kind, const struct proxy_req *q,
			      proxy_done_fn *done, void *arg)
{
	struct proxy *p = (struct proxy *)cp;
	struct proxy_call *call = xcalloc(1, sizeof(*call));
	struct jw w = { 0 };

	call->p = p;
	p->refs++;
	call->kind = kinds[kind];
	call->k = kind;
	call->done = done;
	call->arg = arg;
	count_start(call);
	if (p->up == NULL) {
		ev_timer_init(&call->fail_w, on_no_upstream, 0., 0.);
		call->fail_w.data = call;
		ev_timer_start(p->loop, &call->fail_w);
		return call;
	}
	jw_lit(&w, "{\"client\":");
	jw_str(&w, q->client, strlen(q->client));
	jw_lit(&w, ",\"transport\":");
	jw_str(&w, q->transport, strlen(q->transport));
	jw_lit(&w, q->fmt == PROTO_PB ? ",\"protocol\":\"protobuf\"" : ",\"protocol\":\"json\"");
	jw_lit(&w, p->b64 ? ",\"encoding\":\"binary\"" : ",\"encoding\":\"json\"");
	call->kind->write(&w, q, p->b64);
	if (p->include_meta && q->meta.n > 0) {
		jw_lit(&w, ",\"meta\":");
		jw_json(&w, q->meta.p, q->meta.n);
	}
	jw_lit(&w, "}");

	size_t cap = 1 + p->nstatics + (q->headers ? q->headers->n : 0);
	struct upstream_header *h = xcalloc(cap, sizeof(*h));
	size_t nh = build_headers(p, q->headers, h, cap);
	call->ur = upstream_request(p->up, "POST", upstream_url_target(p->endpoint), h, nh, w.buf, w.len,
				    PROXY_MAX_BODY, p->timeout_ms, on_response, call);
	free(h);
	jw_free(&w);
	return call;
}

void proxy_cancel(struct proxy_call *call)
{
	if (call == NULL)
		return;
	if (call->ur)
		upstream_cancel(call->ur);
	else
		ev_timer_stop(call->p->loop, &call->fail_w);
	count_end(call, NULL);
	proxy_unref(call->p);
	free(call);
}
