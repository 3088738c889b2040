/*
 * channel.c - channel names, namespaces, options and permissions, compiled
 * from the config once per reload (channel.h).
 *
 * Model: Centrifugo v6's config container (internal/config/container.go)
 * and client handler (internal/client/handler.go), plus the checks the
 * centrifuge core does before calling that handler. Lookup is: strip the
 * private prefix, split at the first namespace boundary, find the namespace
 * by exact name (binary search over the namespaces sorted by name), else
 * channel.without_namespace. Nothing is cached per channel: a lookup does a
 * memmem and a bsearch and never allocates.
 *
 * Invariants: a chan_cfg owns every string and regex it holds, and is never
 * modified after chan_cfg_new; the without_namespace options have name "".
 *
 * The end of the file holds the glob matcher of the `channels` API method:
 * the pattern compiles to a Thompson program run as a Pike VM, so matching
 * is linear whatever the pattern.
 */
#include "config.h"
#include "channel.h"
#include "conf.h"
#include "log.h"
#include "token.h"
#include "util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct chan_cfg {
	struct chan_opts without;
	struct chan_opts *ns;      /* sorted by name */
	size_t nns;
	struct pstr private_prefix, ns_boundary, user_boundary, user_sep; /* owned copies */
	int64_t max_length;        /* channel.max_length; 0: no limit */
	int64_t channel_limit;     /* client.channel_limit; 0: no limit */
	bool insecure;             /* client.insecure */
	bool personal;             /* client.subscribe_to_user_personal_channel.enabled */
	bool personal_single;
	char *personal_ns;
};

/* ---- building ----------------------------------------------------------- */

static struct pstr own_str(const json_t *v)
{
	const char *s = json_string_value(v);
	struct pstr r = { xstrdup(s ? s : ""), s ? strlen(s) : 0 };
	return r;
}

static bool opt_bool(const json_t *o, const char *key)
{
	return json_is_true(json_object_get(o, key));
}

/* The proxy name option KEY of O into OUT (64 bytes); "default" when unset. */
static void proxy_name(char out[64], const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	snprintf(out, 64, "%s", s && *s ? s : "default");
}

static int64_t opt_ms(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	long long ms = 0;

	if (s == NULL || conf_duration_ms(s, &ms) != RT_OK)
		return 0; /* impossible after conf_check */
	return ms;
}

/* Compiles O->channel_regex (Go syntax) as POSIX ERE; LABEL names the
 * namespace in the log. */
static void compile_regex(struct chan_opts *o, const char *label)
{
	char *posix;
	int rc;

	if (o->channel_regex[0] == '\0')
		return;
	posix = tok_regex_from_go(o->channel_regex);
	o->regex = xmalloc(sizeof(*o->regex));
	rc = regcomp(o->regex, posix, REG_EXTENDED | REG_NOSUB);
	free(posix);
	if (rc != 0) {
		char msg[128];

		regerror(rc, o->regex, msg, sizeof(msg));
		log_error("%s.channel_regex: not a regular expression rotor can use (%s); "
			  "every channel name of it is refused", label, msg);
		free(o->regex);
		o->regex = NULL;
		o->regex_broken = true;
	}
}

/* Fills O from the options object J; GLOBAL_META_MS is
 * channel.history_meta_ttl. */
static void opts_fill(struct chan_opts *o, const json_t *j, const char *name, int64_t global_meta_ms,
		      const char *label)
{
	const json_t *deltas = json_object_get(j, "allowed_delta_types");
	const char *mode = json_string_value(json_object_get(j, "force_recovery_mode"));
	const char *re = json_string_value(json_object_get(j, "channel_regex"));
	size_t i;
	json_t *d;

	memset(o, 0, sizeof(*o));
	o->name = xstrdup(name);
	o->presence = opt_bool(j, "presence");
	o->join_leave = opt_bool(j, "join_leave");
	o->force_push_join_leave = opt_bool(j, "force_push_join_leave");
	o->history_size = json_integer_value(json_object_get(j, "history_size"));
	o->history_ttl_ms = opt_ms(j, "history_ttl");
	o->history_meta_ttl_ms = opt_ms(j, "history_meta_ttl");
	if (o->history_meta_ttl_ms == 0)
		o->history_meta_ttl_ms = global_meta_ms;
	o->force_positioning = opt_bool(j, "force_positioning");
	o->allow_positioning = opt_bool(j, "allow_positioning");
	o->force_recovery = opt_bool(j, "force_recovery");
	o->allow_recovery = opt_bool(j, "allow_recovery");
	o->force_recovery_mode = mode && strcmp(mode, "cache") == 0 ? CHAN_RECOVERY_CACHE
								   : CHAN_RECOVERY_STREAM;
	json_array_foreach(deltas, i, d) {
		if (json_is_string(d) && strcmp(json_string_value(d), "fossil") == 0)
			o->delta_fossil = true;
	}
	o->delta_publish = opt_bool(j, "delta_publish");
	o->allow_subscribe_for_client = opt_bool(j, "allow_subscribe_for_client");
	o->allow_subscribe_for_anonymous = opt_bool(j, "allow_subscribe_for_anonymous");
	o->allow_publish_for_client = opt_bool(j, "allow_publish_for_client");
	o->allow_publish_for_subscriber = opt_bool(j, "allow_publish_for_subscriber");
	o->allow_publish_for_anonymous = opt_bool(j, "allow_publish_for_anonymous");
	o->allow_presence_for_client = opt_bool(j, "allow_presence_for_client");
	o->allow_presence_for_subscriber = opt_bool(j, "allow_presence_for_subscriber");
	o->allow_presence_for_anonymous = opt_bool(j, "allow_presence_for_anonymous");
	o->allow_history_for_client = opt_bool(j, "allow_history_for_client");
	o->allow_history_for_subscriber = opt_bool(j, "allow_history_for_subscriber");
	o->allow_history_for_anonymous = opt_bool(j, "allow_history_for_anonymous");
	o->allow_user_limited_channels = opt_bool(j, "allow_user_limited_channels");
	o->channel_regex = xstrdup(re ? re : "");
	o->subscribe_proxy = opt_bool(j, "subscribe_proxy_enabled");
	proxy_name(o->subscribe_proxy_name, j, "subscribe_proxy_name");
	proxy_name(o->publish_proxy_name, j, "publish_proxy_name");
	proxy_name(o->sub_refresh_proxy_name, j, "sub_refresh_proxy_name");
	o->publish_proxy = opt_bool(j, "publish_proxy_enabled");
	o->sub_refresh_proxy = opt_bool(j, "sub_refresh_proxy_enabled");
	o->subscribe_stream_proxy = opt_bool(j, "subscribe_stream_proxy_enabled");
	o->subscribe_stream_bidirectional = opt_bool(j, "subscribe_stream_proxy_bidirectional");
	compile_regex(o, label);
}

static void opts_free(struct chan_opts *o)
{
	free((char *)o->name);
	free((char *)o->channel_regex);
	if (o->regex) {
		regfree(o->regex);
		free(o->regex);
	}
}

static int ns_cmp(const void *a, const void *b)
{
	return strcmp(((const struct chan_opts *)a)->name, ((const struct chan_opts *)b)->name);
}

struct chan_cfg *chan_cfg_new(const struct conf *c)
{
	struct chan_cfg *cfg = xcalloc(1, sizeof(*cfg));
	const json_t *nss = conf_get(c, "channel.namespaces");
	int64_t meta_ms = opt_ms(conf_get(c, "channel"), "history_meta_ttl");
	size_t i;
	json_t *item;

	opts_fill(&cfg->without, conf_get(c, "channel.without_namespace"), "", meta_ms,
		  "channel.without_namespace");
	cfg->ns = xcalloc(json_array_size(nss) + 1, sizeof(*cfg->ns));
	json_array_foreach(nss, i, item) {
		const char *name = json_string_value(json_object_get(item, "name"));
		char *label = xasprintf("channel.namespaces[%s]", name ? name : "");

		opts_fill(&cfg->ns[cfg->nns++], item, name ? name : "", meta_ms, label);
		free(label);
	}
	qsort(cfg->ns, cfg->nns, sizeof(*cfg->ns), ns_cmp);

	cfg->private_prefix = own_str(conf_get(c, "channel.private_prefix"));
	cfg->ns_boundary = own_str(conf_get(c, "channel.namespace_boundary"));
	cfg->user_boundary = own_str(conf_get(c, "channel.user_boundary"));
	cfg->user_sep = own_str(conf_get(c, "channel.user_separator"));
	cfg->max_length = json_integer_value(conf_get(c, "channel.max_length"));
	cfg->channel_limit = json_integer_value(conf_get(c, "client.channel_limit"));
	cfg->insecure = json_is_true(conf_get(c, "client.insecure"));
	cfg->personal = json_is_true(conf_get(c, "client.subscribe_to_user_personal_channel.enabled"));
	cfg->personal_single =
		json_is_true(conf_get(c, "client.subscribe_to_user_personal_channel.single_connection"));
	cfg->personal_ns = xstrdup(json_string_value(conf_get(c,
		"client.subscribe_to_user_personal_channel.personal_channel_namespace")));
	return cfg;
}

void chan_cfg_free(struct chan_cfg *cfg)
{
	if (cfg == NULL)
		return;
	opts_free(&cfg->without);
	for (size_t i = 0; i < cfg->nns; i++)
		opts_free(&cfg->ns[i]);
	free(cfg->ns);
	free((char *)cfg->private_prefix.p);
	free((char *)cfg->ns_boundary.p);
	free((char *)cfg->user_boundary.p);
	free((char *)cfg->user_sep.p);
	free(cfg->personal_ns);
	free(cfg);
}

/* ---- names -------------------------------------------------------------- */

/* The first occurrence of NEEDLE in S, or NULL (also for an empty NEEDLE). */
static const char *find(struct pstr s, struct pstr needle)
{
	if (needle.n == 0 || s.n < needle.n)
		return NULL;
	return memmem(s.p, s.n, needle.p, needle.n);
}

static bool has_prefix(struct pstr s, struct pstr prefix)
{
	return prefix.n > 0 && s.n >= prefix.n && memcmp(s.p, prefix.p, prefix.n) == 0;
}

static const struct chan_opts *ns_find(const struct chan_cfg *cfg, struct pstr name)
{
	size_t lo = 0, hi = cfg->nns;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *n = cfg->ns[mid].name;
		int c = strncmp(n, name.p, name.n);

		if (c == 0)
			c = n[name.n] == '\0' ? 0 : 1;
		if (c == 0)
			return &cfg->ns[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct chan_opts *chan_lookup(const struct chan_cfg *cfg, struct pstr ch, struct pstr *rest)
{
	struct pstr t = ch;
	const char *b;

	if (has_prefix(t, cfg->private_prefix)) {
		t.p += cfg->private_prefix.n;
		t.n -= cfg->private_prefix.n;
	}
	if ((b = find(t, cfg->ns_boundary)) != NULL) {
		struct pstr ns = { t.p, (size_t)(b - t.p) };

		if (rest) {
			rest->p = b + cfg->ns_boundary.n;
			rest->n = t.n - ns.n - cfg->ns_boundary.n;
		}
		return ns.n == 0 ? &cfg->without : ns_find(cfg, ns);
	}
	if (rest)
		*rest = ch;
	return &cfg->without;
}

/* channel_regex against REST, else CH must be ASCII. */
static bool name_ok(const struct chan_opts *o, struct pstr ch, struct pstr rest)
{
	if (o->channel_regex[0] != '\0') {
		regmatch_t m = { .rm_so = 0, .rm_eo = (regoff_t)rest.n };

		if (o->regex_broken)
			return false;
		return regexec(o->regex, rest.p ? rest.p : "", 1, &m, REG_STARTEND) == 0;
	}
	for (size_t i = 0; i < ch.n; i++)
		if ((unsigned char)ch.p[i] >= 0x80)
			return false;
	return true;
}

bool chan_is_private(const struct chan_cfg *cfg, struct pstr ch)
{
	return has_prefix(ch, cfg->private_prefix);
}

bool chan_has_user_part(const struct chan_cfg *cfg, struct pstr ch)
{
	return find(ch, cfg->user_boundary) != NULL;
}

bool chan_user_allowed(const struct chan_cfg *cfg, struct pstr ch, struct pstr user)
{
	struct pstr users;
	const char *b, *last = NULL;

	for (struct pstr t = ch; (b = find(t, cfg->user_boundary)) != NULL;) {
		last = b;
		t.n -= (size_t)(b - t.p) + cfg->user_boundary.n;
		t.p = b + cfg->user_boundary.n;
	}
	if (last == NULL)
		return true;
	users.p = last + cfg->user_boundary.n;
	users.n = ch.n - (size_t)(users.p - ch.p);
	if (cfg->user_sep.n == 0)
		return users.n == user.n && memcmp(users.p, user.p, user.n) == 0;
	for (;;) {
		const char *sep = find(users, cfg->user_sep);
		size_t len = sep ? (size_t)(sep - users.p) : users.n;

		if (len == user.n && (len == 0 || memcmp(users.p, user.p, len) == 0))
			return true;
		if (sep == NULL)
			return false;
		users.n -= len + cfg->user_sep.n;
		users.p = sep + cfg->user_sep.n;
	}
}

/* ---- permissions -------------------------------------------------------- */

/* Centrifugo's three-flag rule (allow_X_for_client / _subscriber /
 * _anonymous), with client.insecure allowing everything. */
static bool allowed(const struct chan_cfg *cfg, bool for_client, bool for_subscriber, bool for_anonymous,
		    bool subscribed, struct pstr user)
{
	bool who = user.n > 0 || for_anonymous;

	return (for_client && who) || (for_subscriber && subscribed && who) || cfg->insecure;
}

static bool history_allowed(const struct chan_cfg *cfg, const struct chan_opts *o, struct pstr user,
			    bool subscribed)
{
	return allowed(cfg, o->allow_history_for_client, o->allow_history_for_subscriber,
		       o->allow_history_for_anonymous, subscribed, user);
}

static bool presence_allowed(const struct chan_cfg *cfg, const struct chan_opts *o, struct pstr user,
			     bool subscribed)
{
	return allowed(cfg, o->allow_presence_for_client, o->allow_presence_for_subscriber,
		       o->allow_presence_for_anonymous, subscribed, user);
}

int chan_check_name(const struct chan_cfg *cfg, struct pstr ch, const struct chan_opts **opts)
{
	struct pstr rest;
	const struct chan_opts *o = chan_lookup(cfg, ch, &rest);

	if (o == NULL)
		return CHAN_ERR_UNKNOWN_CHANNEL;
	if (opts)
		*opts = o;
	return name_ok(o, ch, rest) ? CHAN_OK : CHAN_ERR_BAD_REQUEST;
}

int chan_check_subscribe(const struct chan_cfg *cfg, struct pstr ch, const struct chan_sub_req *q,
			 const struct chan_opts **opts)
{
	const struct chan_opts *o;
	bool limited;
	int rc;

	if (ch.n == 0)
		return CHAN_ERR_UNKNOWN_CHANNEL;
	if (cfg->max_length > 0 && ch.n > (uint64_t)cfg->max_length)
		return CHAN_ERR_BAD_REQUEST;
	if (q->subscribed)
		return CHAN_ERR_ALREADY_SUBSCRIBED;
	if (cfg->channel_limit > 0 && q->nsubs >= (uint64_t)cfg->channel_limit)
		return CHAN_ERR_LIMIT_EXCEEDED;
	if ((rc = chan_check_name(cfg, ch, &o)) != CHAN_OK) {
		if (opts && rc != CHAN_ERR_UNKNOWN_CHANNEL)
			*opts = o;
		return rc;
	}
	if (opts)
		*opts = o;
	limited = o->allow_user_limited_channels && chan_has_user_part(cfg, ch);
	if (chan_is_private(cfg, ch) && !q->has_token)
		return CHAN_ERR_PERMISSION_DENIED;
	if (q->has_token)
		return CHAN_NEED_TOKEN;
	if (limited && chan_user_allowed(cfg, ch, q->user))
		return CHAN_OK;
	if (o->subscribe_proxy && !limited)
		return CHAN_PROXY;
	if (o->subscribe_stream_proxy && !limited)
		return CHAN_ERR_NOT_AVAILABLE;
	if (o->allow_subscribe_for_client && (q->user.n > 0 || o->allow_subscribe_for_anonymous) && !limited)
		return CHAN_OK;
	if (cfg->insecure)
		return CHAN_OK;
	return CHAN_ERR_PERMISSION_DENIED;
}

/* chan_check_name for the client operations below: the options go to
 * *OPTS (when not NULL) whenever the namespace is known, even if the name
 * is refused, and to *O. */
static int checked_name(const struct chan_cfg *cfg, struct pstr ch, const struct chan_opts **opts,
			const struct chan_opts **o)
{
	int rc = chan_check_name(cfg, ch, o);

	if (rc != CHAN_ERR_UNKNOWN_CHANNEL && opts)
		*opts = *o;
	return rc;
}

int chan_check_publish(const struct chan_cfg *cfg, struct pstr ch, struct pstr user, bool subscribed,
		       const struct chan_opts **opts)
{
	const struct chan_opts *o;
	int rc = checked_name(cfg, ch, opts, &o);

	if (rc != CHAN_OK)
		return rc;
	if (o->publish_proxy)
		return CHAN_PROXY;
	if (o->subscribe_stream_proxy)
		return CHAN_ERR_NOT_AVAILABLE;
	if (allowed(cfg, o->allow_publish_for_client, o->allow_publish_for_subscriber,
		    o->allow_publish_for_anonymous, subscribed, user))
		return CHAN_OK;
	return CHAN_ERR_PERMISSION_DENIED;
}

int chan_check_presence(const struct chan_cfg *cfg, struct pstr ch, struct pstr user, bool subscribed,
			const struct chan_opts **opts)
{
	const struct chan_opts *o;
	int rc = checked_name(cfg, ch, opts, &o);

	if (rc != CHAN_OK)
		return rc;
	if (!o->presence)
		return CHAN_ERR_NOT_AVAILABLE;
	return presence_allowed(cfg, o, user, subscribed) ? CHAN_OK : CHAN_ERR_PERMISSION_DENIED;
}

int chan_check_history(const struct chan_cfg *cfg, struct pstr ch, struct pstr user, bool subscribed,
		       const struct chan_opts **opts)
{
	const struct chan_opts *o;
	int rc = checked_name(cfg, ch, opts, &o);

	if (rc != CHAN_OK)
		return rc;
	if (!chan_has_history(o))
		return CHAN_ERR_NOT_AVAILABLE;
	return history_allowed(cfg, o, user, subscribed) ? CHAN_OK : CHAN_ERR_PERMISSION_DENIED;
}

int chan_check_connect_sub(const struct chan_cfg *cfg, struct pstr ch, struct pstr user,
			   const struct chan_opts **opts)
{
	struct pstr rest;
	const struct chan_opts *o = chan_lookup(cfg, ch, &rest);

	if (o == NULL)
		return CHAN_ERR_UNKNOWN_CHANNEL;
	if (opts)
		*opts = o;
	if (chan_is_private(cfg, ch) || o->subscribe_proxy || !name_ok(o, ch, rest))
		return CHAN_ERR_PERMISSION_DENIED;
	if (chan_has_user_part(cfg, ch) && o->allow_user_limited_channels && user.n > 0 &&
	    chan_user_allowed(cfg, ch, user))
		return CHAN_OK;
	if (o->allow_subscribe_for_client && (user.n > 0 || o->allow_subscribe_for_anonymous))
		return CHAN_OK;
	return CHAN_ERR_PERMISSION_DENIED;
}

void chan_grant(const struct chan_cfg *cfg, const struct chan_opts *o, const struct chan_override *ov,
		const struct chan_ask *ask, struct pstr user, struct chan_sub_opts *out)
{
	memset(out, 0, sizeof(*out));
	out->emit_presence = o->presence;
	out->emit_join_leave = o->join_leave;
	out->push_join_leave = o->force_push_join_leave;
	out->positioning = o->force_positioning;
	out->recovery = o->force_recovery;
	out->recovery_mode = o->force_recovery_mode;
	out->history_meta_ttl_ms = o->history_meta_ttl_ms;
	out->delta_fossil = o->delta_fossil;
	if (ov) {
		if (ov->presence >= 0)
			out->emit_presence = ov->presence;
		if (ov->join_leave >= 0)
			out->emit_join_leave = ov->join_leave;
		if (ov->force_push_join_leave >= 0)
			out->push_join_leave = ov->force_push_join_leave;
		if (ov->force_recovery >= 0)
			out->recovery = ov->force_recovery;
		if (ov->force_positioning >= 0)
			out->positioning = ov->force_positioning;
	}
	if (ask == NULL)
		return;
	/* Permissions as a subscriber: the subscription is being made. */
	if (ask->positioned && (o->allow_positioning || history_allowed(cfg, o, user, true)))
		out->positioning = true;
	if (ask->recoverable && (o->allow_recovery || history_allowed(cfg, o, user, true)))
		out->recovery = true;
	if (ask->join_leave && o->join_leave && presence_allowed(cfg, o, user, true))
		out->push_join_leave = true;
}

char *chan_personal(const struct chan_cfg *cfg, struct pstr user)
{
	if (!cfg->personal || user.n == 0)
		return NULL;
	if (cfg->personal_ns[0] == '\0')
		return xasprintf("%s%.*s", cfg->user_boundary.p, (int)user.n, user.p);
	return xasprintf("%s%s%s%.*s", cfg->personal_ns, cfg->ns_boundary.p, cfg->user_boundary.p,
			 (int)user.n, user.p);
}

bool chan_personal_single(const struct chan_cfg *cfg)
{
	return cfg->personal && cfg->personal_single;
}

/* ---- glob patterns ------------------------------------------------------ */

enum g_op { G_CHAR, G_ANY, G_SET, G_SPLIT, G_JMP, G_MATCH };

struct g_inst {
	uint8_t op;
	bool neg;          /* G_SET: [!...] */
	uint32_t c;        /* G_CHAR: the character */
	uint32_t x, y;     /* G_SPLIT: both targets; G_JMP: x; G_SET: first range, count */
};

struct chan_glob {
	struct g_inst *prog;
	size_t n, cap;
	uint32_t *ranges;  /* pairs lo, hi */
	size_t nranges, rcap;
};

/* Decodes one UTF-8 character of S[0..N) (N > 0) into *C, returning its
 * length; a byte that does not start a valid sequence is U+FFFD of length 1,
 * as Go decodes. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *c)
{
	uint32_t v;
	size_t len, i;

	if (s[0] < 0x80) {
		*c = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, v = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, v = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, v = s[0] & 0x07;
	else
		goto bad;
	if (n < len)
		goto bad;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			goto bad;
		v = v << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10ffff)) ||
	    (v >= 0xd800 && v <= 0xdfff))
		goto bad;
	*c = v;
	return len;
bad:
	*c = 0xfffd;
	return 1;
}

static uint32_t g_emit(struct chan_glob *g, uint8_t op, uint32_t c, uint32_t x, uint32_t y)
{
	if (g->n == g->cap) {
		g->cap = g->cap ? 2 * g->cap : 16;
		g->prog = xrealloc(g->prog, g->cap * sizeof(*g->prog));
	}
	g->prog[g->n] = (struct g_inst){ .op = op, .c = c, .x = x, .y = y };
	return (uint32_t)g->n++;
}

static void g_range(struct chan_glob *g, uint32_t lo, uint32_t hi)
{
	if (g->nranges + 2 > g->rcap) {
		g->rcap = g->rcap ? 2 * g->rcap : 16;
		g->ranges = xrealloc(g->ranges, g->rcap * sizeof(*g->ranges));
	}
	g->ranges[g->nranges++] = lo;
	g->ranges[g->nranges++] = hi;
}

struct g_parser {
	const unsigned char *s;
	size_t n, i;
	int depth;
};

static bool g_peek(struct g_parser *p, uint32_t *c, size_t *len)
{
	if (p->i >= p->n)
		return false;
	*len = utf8_next(p->s + p->i, p->n - p->i, c);
	return true;
}

/* [...] after the '['. gobwas/glob: either one range [lo-hi] or a list of
 * characters, both negated by a leading '!'; '\' quotes in a list. */
static bool g_set(struct chan_glob *g, struct g_parser *p)
{
	uint32_t c, lo, hi;
	size_t len, first = g->nranges;
	bool neg = false;

	if (!g_peek(p, &c, &len))
		return false;
	if (c == '!') {
		neg = true;
		p->i += len;
	}
	/* lo-hi] */
	if (g_peek(p, &lo, &len)) {
		size_t save = p->i;
		uint32_t dash, close;

		p->i += len;
		if (g_peek(p, &dash, &len) && dash == '-') {
			p->i += len;
			if (g_peek(p, &hi, &len)) {
				p->i += len;
				if (g_peek(p, &close, &len) && close == ']') {
					p->i += len;
					g_range(g, lo, hi);
					goto done;
				}
			}
		}
		p->i = save;
	}
	for (;;) {
		if (!g_peek(p, &c, &len))
			return false;
		p->i += len;
		if (c == ']')
			break;
		if (c == '\\') {
			if (!g_peek(p, &c, &len))
				return false;
			p->i += len;
		}
		g_range(g, c, c);
	}
	if (g->nranges == first)
		return false;
done: {
		uint32_t at = g_emit(g, G_SET, 0, (uint32_t)first, (uint32_t)(g->nranges - first) / 2);
		g->prog[at].neg = neg;
	}
	return true;
}

/* A sequence up to the end, or inside braces up to ',' or '}' (not
 * consumed). */
static bool g_seq(struct chan_glob *g, struct g_parser *p)
{
	uint32_t c;
	size_t len;

	while (g_peek(p, &c, &len)) {
		if (p->depth > 0 && (c == ',' || c == '}'))
			return true;
		p->i += len;
		switch (c) {
		case '*': {
			uint32_t split;

			while (g_peek(p, &c, &len) && c == '*')
				p->i += len;
			split = g_emit(g, G_SPLIT, 0, 0, 0);
			g->prog[split].x = g_emit(g, G_ANY, 0, 0, 0);
			g_emit(g, G_JMP, 0, split, 0);
			g->prog[split].y = (uint32_t)g->n;
			break;
		}
		case '?':
			g_emit(g, G_ANY, 0, 0, 0);
			break;
		case '[':
			if (!g_set(g, p))
				return false;
			break;
		case '{': {
			uint32_t jumps[64];
			size_t njumps = 0;

			if (++p->depth > 32)
				return false;
			for (;;) {
				uint32_t split = g_emit(g, G_SPLIT, 0, 0, 0);

				g->prog[split].x = (uint32_t)g->n;
				if (!g_seq(g, p) || !g_peek(p, &c, &len))
					return false;
				p->i += len;
				if (c == '}') {
					g->prog[split].y = g->prog[split].x;
					break;
				}
				if (njumps == ROTOR_ARRAY_LEN(jumps))
					return false;
				jumps[njumps++] = g_emit(g, G_JMP, 0, 0, 0);
				g->prog[split].y = (uint32_t)g->n;
			}
			for (size_t k = 0; k < njumps; k++)
				g->prog[jumps[k]].x = (uint32_t)g->n;
			p->depth--;
			break;
		}
		case '\\':
			if (!g_peek(p, &c, &len))
				return false;
			p->i += len;
			/* fall through */
		default:
			g_emit(g, G_CHAR, c, 0, 0);
			break;
		}
	}
	return p->depth == 0;
}

struct chan_glob *chan_glob_new(const char *pat, size_t len)
{
	struct chan_glob *g = xcalloc(1, sizeof(*g));
	struct g_parser p = { (const unsigned char *)pat, len, 0, 0 };

	if (!g_seq(g, &p)) {
		chan_glob_free(g);
		return NULL;
	}
	g_emit(g, G_MATCH, 0, 0, 0);
	return g;
}

void chan_glob_free(struct chan_glob *g)
{
	if (g == NULL)
		return;
	free(g->prog);
	free(g->ranges);
	free(g);
}

/* Adds PC and everything reachable from it without input to LIST (MARK
 * holds the generation each instruction was last added in). */
static void g_add(const struct chan_glob *g, uint32_t *list, size_t *n, uint32_t *mark, uint32_t gen,
		  uint32_t *stack, uint32_t pc)
{
	size_t sp = 0;

	stack[sp++] = pc;
	while (sp > 0) {
		pc = stack[--sp];
		if (mark[pc] == gen)
			continue;
		mark[pc] = gen;
		switch (g->prog[pc].op) {
		case G_JMP:
			stack[sp++] = g->prog[pc].x;
			break;
		case G_SPLIT:
			stack[sp++] = g->prog[pc].y;
			stack[sp++] = g->prog[pc].x;
			break;
		default:
			list[(*n)++] = pc;
			break;
		}
	}
}

static bool g_step(const struct g_inst *in, const uint32_t *ranges, uint32_t c)
{
	bool hit = false;

	switch (in->op) {
	case G_CHAR:
		return in->c == c;
	case G_ANY:
		return true;
	case G_SET:
		for (uint32_t k = 0; k < in->y && !hit; k++)
			hit = c >= ranges[in->x + 2 * k] && c <= ranges[in->x + 2 * k + 1];
		return hit != in->neg;
	default:
		return false;
	}
}

bool chan_glob_match(const struct chan_glob *g, struct pstr s)
{
	size_t n = g->n, ncur = 0, nnext, i = 0;
	uint32_t *cur = xmalloc(6 * n * sizeof(uint32_t)); /* cur, next, mark: n; stack: 3n */
	uint32_t *next = cur + n, *mark = next + n, *stack = mark + n;
	uint32_t gen = 1;
	bool matched = false;

	memset(mark, 0, n * sizeof(uint32_t));
	g_add(g, cur, &ncur, mark, gen, stack, 0);
	while (i < s.n && ncur > 0) {
		uint32_t c;

		i += utf8_next((const unsigned char *)s.p + i, s.n - i, &c);
		gen++;
		nnext = 0;
		for (size_t k = 0; k < ncur; k++) {
			const struct g_inst *in = &g->prog[cur[k]];

			if (g_step(in, g->ranges, c))
				g_add(g, next, &nnext, mark, gen, stack, cur[k] + 1);
		}
		memcpy(cur, next, nnext * sizeof(uint32_t));
		ncur = nnext;
	}
	if (i >= s.n)
		for (size_t k = 0; k < ncur && !matched; k++)
			matched = g->prog[cur[k]].op == G_MATCH;
	free(cur);
	return matched;
}
