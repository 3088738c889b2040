/*
 * test_api.c - the server HTTP API (src/api.c) driven through the real HTTP
 * server on a libev loop and socketpairs, as test_http.c does, against a
 * fake node: the node_* functions are defined here (so node.o is never
 * linked: librotor.a's member is only pulled for a symbol nothing else
 * defines), record each call as a line of text, and answer what the test
 * sets. Covers both endpoint forms and batch, every auth path, both error
 * modes, each method's validation and result shape, raw payloads byte for
 * byte, and reconfiguration.
 *
 * The engine's operations answer through callbacks (node.h): at once, as
 * the shared-memory engine does, or from a later loop iteration, as the
 * Redis one will. The whole suite runs twice, the second time with every
 * answer deferred, and test_deferred covers what only the deferred path
 * has: replies in order when one command of several waits, and a
 * connection that closes while the engine has not answered.
 */
#include "config.h"
#include "api.h"
#include "conf.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "chan.h"
#include "node.h"
#include "util.h"
#include "worker.h"
#include "harness.h"
#include "../tap.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static struct worker w;
static struct conf k;

/* ---- the fake node ------------------------------------------------------ */

static struct {
	char log[16384];          /* one line per call */
	int fail;                 /* node_* return RT_ERR */
	uint64_t offset;          /* node_publish result */
	const char *epoch;
	const char *const *channels; /* node_channels: name, count, name, count..., NULL */
	bool peer;                /* node_peers lists one other node */
	const char *const *others; /* node_channels_others: the other node's, as channels */
	bool others_fail;         /* ... which then fails */
} F;

static void logf_(const char *fmt, ...) ROTOR_PRINTF(1, 2);
static void logf_(const char *fmt, ...)
{
	size_t n = strlen(F.log);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(F.log + n, sizeof(F.log) - n, fmt, ap);
	va_end(ap);
}

#define P(s) (int)(s).n, (s).p

static void log_target(const struct node_target *t)
{
	logf_(" user=%.*s client=%.*s session=%.*s", P(t->user), P(t->client), P(t->session));
}

/* ---- engine answers: at once, or from a later loop iteration ---------- */

enum { A_PUB, A_HIST, A_DONE, A_PRES, A_STATS };

/* One answer of the fake engine, with a copy of its result. */
struct answer {
	int kind, rc;
	void *fn, *arg;
	unsigned iteration;         /* the loop iteration it was made in */
	struct node_pub_result pub;
	struct node_history hist;   /* its publication is static */
	struct node_presence pres;  /* its entry is static */
	uint32_t nc, nu;
};

static struct {
	bool all;                   /* defer every answer */
	uint32_t mask;              /* defer answer I (since reset_node) when bit I is set */
	bool hold;                  /* keep deferred answers until released */
	unsigned ncalls;            /* engine calls since reset_node */
	struct answer q[64];
	size_t n;
	ev_check w;
	unsigned answered;          /* deferred answers given */
	unsigned at_once;           /* answers given before the call returned */
} D;

static void answer_now(const struct answer *a)
{
	switch (a->kind) {
	case A_PUB: ((node_pub_fn *)a->fn)(a->arg, a->rc, &a->pub); break;
	case A_HIST: ((node_history_fn *)a->fn)(a->arg, a->rc, &a->hist); break;
	case A_DONE: ((node_done_fn *)a->fn)(a->arg, a->rc); break;
	case A_PRES: ((node_presence_fn *)a->fn)(a->arg, a->rc, &a->pres); break;
	case A_STATS: ((node_stats_fn *)a->fn)(a->arg, a->rc, a->nc, a->nu); break;
	}
}

/* Gives the deferred answers made in an earlier loop iteration, in order
 * (those given now may defer more). */
static void answer_deferred(struct ev_loop *loop, ev_check *c, int revents)
{
	while (!D.hold && D.n > 0 && D.q[0].iteration < ev_iteration(loop)) {
		struct answer a = D.q[0];

		memmove(D.q, D.q + 1, --D.n * sizeof(*D.q));
		D.answered++;
		answer_now(&a);
	}
}

/* The engine answers A: now, or later when the test defers this call. */
static void answer(struct answer a)
{
	unsigned i = D.ncalls++;

	if (!D.all && !(i < 32 && (D.mask >> i & 1))) {
		D.at_once++;
		answer_now(&a);
		return;
	}
	assert(D.n < ROTOR_ARRAY_LEN(D.q));
	a.iteration = ev_iteration(w.loop);
	D.q[D.n++] = a;
}

void node_publish(struct worker *wk, const struct node_pub *p, node_pub_fn *done, void *arg)
{
	struct answer a = { .kind = A_PUB, .fn = (void *)done, .arg = arg };

	logf_("publish ch=%.*s data=%.*s skip=%d key=%.*s tags=", P(p->channel), P(p->data),
	      p->skip_history, P(p->idempotency_key));
	for (size_t i = 0; i < p->ntags; i++)
		logf_("%s%.*s:%.*s", i ? "," : "", P(p->tags[i].key), P(p->tags[i].value));
	logf_(" info=%s\n", p->info ? "set" : "null");
	a.rc = F.fail ? RT_ERR : RT_OK;
	if (!F.fail) {
		a.pub.offset = F.offset;
		snprintf(a.pub.epoch, sizeof(a.pub.epoch), "%s", F.epoch ? F.epoch : "");
	}
	answer(a);
}

int node_disconnect(struct worker *wk, const struct node_target *t, const struct pstr *wl, size_t nwl,
		    uint32_t code, struct pstr reason)
{
	logf_("disconnect");
	log_target(t);
	logf_(" code=%u reason=%.*s whitelist=", code, P(reason));
	for (size_t i = 0; i < nwl; i++)
		logf_("%s%.*s", i ? "," : "", P(wl[i]));
	logf_("\n");
	return F.fail ? RT_ERR : RT_OK;
}

int node_unsubscribe(struct worker *wk, const struct node_target *t, struct pstr channel)
{
	logf_("unsubscribe");
	log_target(t);
	logf_(" ch=%.*s\n", P(channel));
	return F.fail ? RT_ERR : RT_OK;
}

int node_subscribe(struct worker *wk, const struct node_target *t, const struct node_sub *s)
{
	logf_("subscribe");
	log_target(t);
	logf_(" ch=%.*s info=%.*s data=%.*s expire_at=%lld since=%d:%llu:%.*s override=%d,%d,%d,%d,%d\n",
	      P(s->channel), P(s->info), P(s->data), (long long)s->expire_at, s->has_since,
	      (unsigned long long)s->since_offset, P(s->since_epoch), s->override.presence,
	      s->override.join_leave, s->override.force_push_join_leave, s->override.force_recovery,
	      s->override.force_positioning);
	return F.fail ? RT_ERR : RT_OK;
}

int node_refresh(struct worker *wk, const struct node_target *t, bool expired, int64_t expire_at,
		 struct pstr info)
{
	logf_("refresh");
	log_target(t);
	logf_(" expired=%d expire_at=%lld info=%.*s\n", expired, (long long)expire_at, P(info));
	return F.fail ? RT_ERR : RT_OK;
}

/* The fake store's streams take names up to 255 bytes, as shm's do by
 * default. */
bool node_history_fits(const struct worker *wk, struct pstr channel)
{
	return channel.n <= 255;
}

/* History: the fake store holds one publication at offset F.offset in
 * epoch F.epoch ("" means none). */
void node_history(struct worker *wk, struct pstr channel, const struct hist_query *q,
		  node_history_fn *done, void *arg)
{
	static struct publication pub;
	struct answer a = { .kind = A_HIST, .fn = (void *)done, .arg = arg, .rc = RT_OK };
	struct node_history *h = &a.hist;

	logf_("history ch=%.*s limit=%d reverse=%d since=%d:%llu:%s\n", P(channel), q->limit, q->reverse,
	      q->has_since, (unsigned long long)q->since_offset, q->since_epoch ? q->since_epoch : "");
	if (F.fail) {
		a.rc = RT_ERR;
		answer(a);
		return;
	}
	snprintf(h->epoch, sizeof(h->epoch), "%s", F.epoch ? F.epoch : "");
	h->top = F.offset;
	h->epoch_mismatch = q->since_epoch && *q->since_epoch && strcmp(q->since_epoch, h->epoch) != 0;
	if (!h->epoch_mismatch && q->limit != 0 && F.offset > 0) {
		pub = (struct publication){ .data = PSTR("{\"x\":1.10}"), .offset = F.offset };
		h->v = &pub;
		h->n = 1;
	}
	answer(a);
}

void node_history_remove(struct worker *wk, struct pstr channel, node_done_fn *done, void *arg)
{
	logf_("history_remove ch=%.*s\n", P(channel));
	answer((struct answer){ .kind = A_DONE, .fn = (void *)done, .arg = arg, .rc = F.fail ? RT_ERR : RT_OK });
}

/* Presence: the fake table holds one anonymous client with raw info. */
void node_presence(struct worker *wk, struct pstr channel, node_presence_fn *done, void *arg)
{
	static struct client_info ci;
	struct answer a = { .kind = A_PRES, .fn = (void *)done, .arg = arg, .rc = F.fail ? RT_ERR : RT_OK };

	logf_("presence ch=%.*s\n", P(channel));
	if (!F.fail) {
		ci = (struct client_info){ PSTR(""), PSTR("c1"), PSTR("{\"n\":1.50}"), { NULL, 0 } };
		a.pres.v = &ci;
		a.pres.n = 1;
	}
	answer(a);
}

void node_presence_stats(struct worker *wk, struct pstr channel, node_stats_fn *done, void *arg)
{
	logf_("presence_stats ch=%.*s\n", P(channel));
	answer((struct answer){ .kind = A_STATS, .fn = (void *)done, .arg = arg,
				.rc = F.fail ? RT_ERR : RT_OK, .nc = 3, .nu = 2 });
}

int node_channels(struct worker *wk, node_channel_fn fn, void *arg)
{
	logf_("channels\n");
	if (F.fail)
		return RT_ERR;
	for (const char *const *c = F.channels; c && *c; c += 2)
		fn(arg, pstr_c(c[0]), (uint32_t)atoi(c[1]));
	return RT_OK;
}

/* The other node's channels at once, unfiltered (the API applies the
 * pattern to what comes back too); the end through answer(). */
void node_channels_others(struct worker *wk, struct pstr pattern, node_channel_fn fn, node_done_fn *done,
			  void *arg)
{
	logf_("channels_others pattern=%.*s\n", P(pattern));
	for (const char *const *c = F.others; c && *c; c += 2)
		fn(arg, pstr_c(c[0]), (uint32_t)atoi(c[1]));
	answer((struct answer){ .kind = A_DONE, .fn = (void *)done, .arg = arg,
				.rc = F.others_fail ? RT_ERR : RT_OK });
}

int node_info(struct worker *wk, struct node_info *out)
{
	logf_("info\n");
	if (F.fail)
		return RT_ERR;
	snprintf(out->uid, sizeof(out->uid), "%s", "0b6a8e2c-1c2f-4b7e-9d53-5f1e2a3b4c5d");
	out->name = "host_8000";
	out->version = "0.1.0 rotor";
	out->num_clients = 3;
	out->num_users = 2;
	out->num_channels = 0;
	out->num_subs = 4;
	out->uptime = F.offset ? (int64_t)F.offset : 0;
	return RT_OK;
}

/* /health (http.c) asks the engine; this one always serves. */
bool node_health(struct worker *wk, char *why, size_t n)
{
	(void)wk, (void)why, (void)n;
	return true;
}

/* What the sessions (client.c, linked in) use; the API never calls them. */
void node_listen(struct worker *wk, struct pstr channel, node_done_fn *done, void *arg)
{
	(void)wk, (void)channel;
	done(arg, RT_OK);
}

void node_presence_add(struct worker *wk, struct pstr channel, const struct client_info *ci)
{
	(void)wk, (void)channel, (void)ci;
}

void node_presence_remove(struct worker *wk, struct pstr channel, const struct client_info *ci)
{
	(void)wk, (void)channel, (void)ci;
}

bool node_presence_refresh(struct worker *wk, bool first)
{
	(void)wk, (void)first;
	return false;
}

/* One other node, as a Redis engine's registry would list it, when the
 * test asks for it. */
void node_peers(struct worker *wk, void (*fn)(void *arg, const struct node_info *ni), void *arg)
{
	(void)wk;
	if (!F.peer)
		return;
	struct node_info ni = { .name = "other", .version = "6.9.1 OSS", .num_clients = 7, .num_users = 5,
				.num_channels = 2, .num_subs = 9, .uptime = 11 };
	snprintf(ni.uid, sizeof(ni.uid), "%s", "11111111-2222-4333-8444-555555555555");
	fn(arg, &ni);
}

/* ---- the loop, configs, requests ---------------------------------------- */

/* Loads JSON config text into K (after freeing what K held). */
static void load_conf(const char *json)
{
	struct conf_report rep = { 0 };
	char path[] = "/tmp/test_api_XXXXXX";
	int fd = mkstemp(path);
	static char *no_env[] = { NULL };

	if (fd < 0 || write(fd, json, strlen(json)) != (ssize_t)strlen(json))
		abort();
	close(fd);
	conf_free(&k);
	conf_init(&k);
	conf_apply_file(&k, path, &rep);
	unlink(path);
	conf_apply_env(&k, no_env, &rep);
	if (conf_check(&k, &rep) != RT_OK) {
		for (size_t i = 0; i < rep.nerrors; i++)
			printf("# config error: %s\n", rep.errors[i]);
		fflush(stdout);
		abort();
	}
	conf_report_free(&rep);
}

#define BASE_CONF \
	"\"http_api\":{\"key\":\"sekret\"},\"channel\":{\"namespaces\":[" \
	"{\"name\":\"chat\",\"presence\":true,\"history_size\":10,\"history_ttl\":\"60s\"}," \
	"{\"name\":\"rx\",\"channel_regex\":\"^[a-z]+$\"}]}"

static struct resp {
	int status;
	char head[4096];
	char body[65536];
	size_t body_len;
} R;

/* The value of response header NAME (static buffer), or NULL. */
static const char *rhdr(const char *name)
{
	static char val[512];
	size_t n = strlen(name);

	for (const char *l = strstr(R.head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
		if (strncasecmp(l + 2, name, n) == 0 && l[2 + n] == ':') {
			const char *v = l + 3 + n, *e = strstr(v, "\r\n");
			while (*v == ' ')
				v++;
			snprintf(val, sizeof(val), "%.*s", (int)(e - v), v);
			return val;
		}
	}
	return NULL;
}

/* One request on a fresh connection: METHOD PATH with extra header lines
 * HDRS ("Name: v\r\n"...) and BODY (LEN bytes). Fills R. */
static void call_n(const char *method, const char *path, const char *hdrs, const char *body, size_t len)
{
	int sv[2];
	char *req;
	size_t got = 0, cap = sizeof(R.head) + sizeof(R.body);
	char *buf = malloc(cap);
	const char *sep;
	int n;

	memset(&R, 0, sizeof(R));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	http_accept(&w, sv[0], false);
	n = asprintf(&req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n",
		     method, path, hdrs ? hdrs : "", len);
	if (n < 0 || write(sv[1], req, (size_t)n) != n || (len && write(sv[1], body, len) != (ssize_t)len))
		abort();
	free(req);
	for (int i = 0; i < 50; i++) {
		ssize_t r;

		spin();
		while ((r = read(sv[1], buf + got, cap - got - 1)) > 0)
			got += (size_t)r;
		if (r == 0)
			break;
	}
	buf[got] = '\0';
	close(sv[1]);
	spin();
	R.status = strncmp(buf, "HTTP/1.1 ", 9) == 0 ? atoi(buf + 9) : -1;
	sep = strstr(buf, "\r\n\r\n");
	if (sep) {
		snprintf(R.head, sizeof(R.head), "%.*s\r\n", (int)(sep - buf), buf);
		R.body_len = got - (size_t)(sep + 4 - buf);
		memcpy(R.body, sep + 4, R.body_len);
	}
	free(buf);
}

static void call(const char *method, const char *path, const char *hdrs, const char *body)
{
	call_n(method, path, hdrs, body, body ? strlen(body) : 0);
}

#define KEY "X-API-Key: sekret\r\n"

/* POST PATH with the key; checks status 200 and the body. */
#define api_is(path_, body_, want_, name_) do { \
	call("POST", path_, KEY, body_); \
	is_int(R.status, 200, "%s: 200", name_); \
	is_str(R.body, want_, "%s", name_); \
} while (0)

static void reset_node(void)
{
	memset(&F, 0, sizeof(F));
	D.ncalls = 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_auth(void)
{
	call("GET", "/api/info", KEY, "{}");
	is_int(R.status, 405, "GET: 405");
	is_int(R.body_len, 0, "405 has an empty body");
	is_str(rhdr("Allow"), "POST", "Allow: POST, as RFC 9110 requires of a 405");
	call("PUT", "/api", KEY, "{}");
	is_int(R.status, 405, "PUT on the legacy endpoint: 405");

	call("POST", "/api/info", NULL, "{}");
	is_int(R.status, 401, "no key: 401");
	is_int(R.body_len, 0, "401 has an empty body");
	call("GET", "/api/info", NULL, "{}");
	is_int(R.status, 405, "the method is checked before the key");

	api_is("/api/info", "{}", "{\"result\":{\"nodes\":[{\"uid\":\"0b6a8e2c-1c2f-4b7e-9d53-5f1e2a3b4c5d\","
	       "\"name\":\"host_8000\",\"version\":\"0.1.0 rotor\",\"num_clients\":3,\"num_users\":2,"
	       "\"num_channels\":0,\"num_subs\":4}]}}", "X-API-Key");
	ok(rhdr("Content-Type") && strcmp(rhdr("Content-Type"), "application/json") == 0,
	   "Content-Type: application/json");
	F.peer = true;
	api_is("/api/info", "{}", "{\"result\":{\"nodes\":[{\"uid\":\"0b6a8e2c-1c2f-4b7e-9d53-5f1e2a3b4c5d\","
	       "\"name\":\"host_8000\",\"version\":\"0.1.0 rotor\",\"num_clients\":3,\"num_users\":2,"
	       "\"num_channels\":0,\"num_subs\":4},{\"uid\":\"11111111-2222-4333-8444-555555555555\","
	       "\"name\":\"other\",\"version\":\"6.9.1 OSS\",\"num_clients\":7,\"num_users\":5,"
	       "\"num_channels\":2,\"uptime\":11,\"num_subs\":9}]}}", "info lists the other nodes after this one");
	F.peer = false;
	call("POST", "/api/info", "x-api-key: sekret\r\n", "{}");
	is_int(R.status, 200, "header names in any case");
	call("POST", "/api/info", "X-API-Key: sekre\r\n", "{}");
	is_int(R.status, 401, "wrong X-API-Key: 401");
	call("POST", "/api/info", "X-API-Key: sekrett\r\n", "{}");
	is_int(R.status, 401, "longer X-API-Key: 401");
	call("POST", "/api/info", "X-API-Key: wrong\r\nAuthorization: apikey sekret\r\n", "{}");
	is_int(R.status, 401, "a present X-API-Key decides over Authorization");
	call("POST", "/api/info?api_key=sekret", "X-API-Key: wrong\r\n", "{}");
	is_int(R.status, 200, "... but ?api_key= is still tried after it");

	call("POST", "/api/info", "Authorization: apikey sekret\r\n", "{}");
	is_int(R.status, 200, "Authorization: apikey KEY");
	call("POST", "/api/info", "Authorization: APIKEY   sekret\r\n", "{}");
	is_int(R.status, 200, "scheme in any case, any whitespace between");
	call("POST", "/api/info", "Authorization: bearer sekret\r\n", "{}");
	is_int(R.status, 401, "another scheme: 401");
	call("POST", "/api/info", "Authorization: apikey sekret extra\r\n", "{}");
	is_int(R.status, 401, "three fields: 401");
	call("POST", "/api/info", "Authorization: apikey\r\n", "{}");
	is_int(R.status, 401, "one field: 401");

	call("POST", "/api/info?api_key=sekret", NULL, "{}");
	is_int(R.status, 200, "?api_key=");
	call("POST", "/api/info?x=1&api_key=sek%72et", NULL, "{}");
	is_int(R.status, 200, "?api_key= percent-decoded, after another parameter");
	call("POST", "/api/info?api_key=wrong&api_key=sekret", NULL, "{}");
	is_int(R.status, 401, "only the first api_key counts");
	call("POST", "/api/info?api_key=sekret;x=1", NULL, "{}");
	is_int(R.status, 401, "a pair with ';' is dropped, as Go does");
	call("POST", "/api/info?api_key=%zz", NULL, "{}");
	is_int(R.status, 401, "a bad escape is dropped");
	call("POST", "/api/info?api_key", NULL, "{}");
	is_int(R.status, 401, "api_key without value");
	call("POST", "/api/info", "Authorization: apikey wrong\r\n", "{}");
	is_int(R.status, 401, "wrong Authorization: 401");

	/* http_api.insecure, and an empty key. */
	load_conf("{\"http_api\":{\"insecure\":true}}");
	api_reconfigure(&w);
	call("POST", "/api/info", NULL, "{}");
	is_int(R.status, 200, "http_api.insecure: no key needed");
	call("GET", "/api/info", NULL, "{}");
	is_int(R.status, 405, "http_api.insecure: still POST only");
	load_conf("{}");
	api_reconfigure(&w);
	call("POST", "/api/info", "X-API-Key: \r\n", "{}");
	is_int(R.status, 401, "empty http_api.key: 401 even for an empty key");
	call("POST", "/api/info?api_key=", NULL, "{}");
	is_int(R.status, 401, "empty http_api.key: 401 for an empty ?api_key=");
	load_conf("{" BASE_CONF "}");
	api_reconfigure(&w);
}

static void test_errors(void)
{
	call("POST", "/api/publish", KEY, "{\"channel\":");
	is_int(R.status, 400, "malformed JSON: 400");
	is_str(R.body, "Bad Request\n", "400 body");
	ok(rhdr("Content-Type") && strcmp(rhdr("Content-Type"), "text/plain; charset=utf-8") == 0,
	   "400 is text/plain");
	call("POST", "/api/publish", KEY, "");
	is_int(R.status, 400, "empty body: 400");
	call("POST", "/api/info", KEY, "");
	is_int(R.status, 400, "empty body for info: 400 too");
	call("POST", "/api/publish", KEY, "[]");
	is_int(R.status, 400, "an array where an object goes: 400");
	call("POST", "/api/publish", KEY, "{\"channel\":5,\"data\":{}}");
	is_int(R.status, 400, "a field of the wrong type: 400");
	call("POST", "/api/publish", KEY, "{\"channel\":\"x\",\"data\":1} x");
	is_int(R.status, 400, "trailing bytes: 400");
	call("POST", "/api/publish", KEY, "{\"channel\":\"x\",\"data\":\"\xff\"}");
	is_int(R.status, 400, "invalid UTF-8: 400");
	api_is("/api/publish", "null", "{\"error\":{\"code\":107,\"message\":\"bad request\"}}",
	       "null body: an empty request (107)");

	api_is("/api/publish", "{\"channel\":\"nope:x\",\"data\":{}}",
	       "{\"error\":{\"code\":102,\"message\":\"unknown channel\"}}", "body mode: error in 200");
	call("POST", "/api/publish", KEY "X-Centrifugo-Error-Mode: transport\r\n",
	     "{\"channel\":\"nope:x\",\"data\":{}}");
	is_int(R.status, 404, "transport mode header: 102 is 404");
	is_str(R.body, "{\"code\":102,\"message\":\"unknown channel\"}", "transport mode: the bare error");
	call("POST", "/api/publish", KEY "X-Centrifugo-Error-Mode: Transport\r\n",
	     "{\"channel\":\"nope:x\",\"data\":{}}");
	is_int(R.status, 200, "the header value is compared exactly");
	call("POST", "/api/publish", KEY "X-Centrifugo-Error-Mode: transport\r\n", "{\"channel\":\"\"}");
	is_int(R.status, 400, "transport: 107 is 400");
	call("POST", "/api/rpc", KEY "X-Centrifugo-Error-Mode: transport\r\n", "{\"method\":\"m\"}");
	is_int(R.status, 404, "transport: 104 is 404");
	call("POST", "/api/presence", KEY "X-Centrifugo-Error-Mode: transport\r\n", "{\"channel\":\"x\"}");
	is_int(R.status, 400, "transport: 108 is 400");
	F.fail = 1;
	call("POST", "/api/info", KEY "X-Centrifugo-Error-Mode: transport\r\n", "{}");
	is_int(R.status, 500, "transport: 100 is 500");
	is_str(R.body, "{\"code\":100,\"message\":\"internal server error\"}", "100 text");
	F.fail = 0;
	call("POST", "/api/info", KEY "X-Centrifugo-Error-Mode: transport\r\n", "{}");
	is_int(R.status, 200, "transport: success is the usual {\"result\"}");
	ok(strncmp(R.body, "{\"result\":{\"nodes\"", 18) == 0, "... with its result");

	/* http_api.error_mode: transport */
	load_conf("{" BASE_CONF ",\"http_api\":{\"key\":\"sekret\",\"error_mode\":\"transport\"}}");
	api_reconfigure(&w);
	call("POST", "/api/publish", KEY, "{\"channel\":\"nope:x\",\"data\":{}}");
	is_int(R.status, 404, "http_api.error_mode transport");
	call("POST", "/api/batch", KEY, "{\"commands\":[{\"publish\":{\"channel\":\"nope:x\",\"data\":1}}]}");
	is_int(R.status, 200, "transport mode does not apply to batch");
	is_str(R.body, "{\"replies\":[{\"error\":{\"code\":102,\"message\":\"unknown channel\"}}]}",
	       "batch error stays in the reply");
	call("POST", "/api", KEY, "{\"method\":\"publish\",\"params\":{\"channel\":\"nope:x\",\"data\":1}}");
	is_int(R.status, 200, "nor to the legacy endpoint");
	load_conf("{" BASE_CONF "}");
	api_reconfigure(&w);

	call("POST", "/api/nosuch", KEY, "{}");
	is_int(R.status, 404, "unknown method path: plain 404");
	call("POST", "/api/", KEY, "{}");
	is_int(R.status, 404, "/api/: 404");
}

static void test_publish(void)
{
	reset_node();
	api_is("/api/publish", "{\"channel\":\"news\",\"data\":{\"x\":1.10}}", "{\"result\":{}}",
	       "publish without history: {}");
	is_str(F.log, "publish ch=news data={\"x\":1.10} skip=0 key= tags= info=null\n",
	       "data reaches node_publish byte for byte");
	reset_node();
	api_is("/api/publish", "{ \"Channel\" : \"news\" , \"DATA\" :\n [1, 2.50e3,\n \"\\u00e9\"] }",
	       "{\"result\":{}}", "field names in any case");
	is_str(F.log, "publish ch=news data=[1, 2.50e3,\n \"\\u00e9\"] skip=0 key= tags= info=null\n",
	       "raw data keeps whitespace, newlines and escapes");
	reset_node();
	F.offset = 7;
	F.epoch = "ab<c";
	api_is("/api/publish", "{\"channel\":\"chat:room\",\"data\":null,\"skip_history\":true,"
	       "\"idempotency_key\":\"k1\",\"tags\":{\"a\":\"1\",\"b\":\"2\",\"a\":\"3\"},\"delta\":true}",
	       "{\"result\":{\"offset\":7,\"epoch\":\"ab\\u003cc\"}}", "offset and epoch (HTML-safe like Go)");
	is_str(F.log, "publish ch=chat:room data=null skip=1 key=k1 tags=a:3,b:2 info=null\n",
	       "null data is the 4 bytes null; skip_history, idempotency key, tags (last wins)");
	reset_node();
	F.epoch = "e";
	api_is("/api/publish", "{\"channel\":\"ch\\u0061t:x\",\"b64data\":\"aGk=\",\"data\":{\"y\":2}}",
	       "{\"result\":{\"epoch\":\"e\"}}", "epoch alone (offset 0 omitted)");
	is_str(F.log, "publish ch=chat:x data=hi skip=0 key= tags= info=null\n",
	       "escaped channel unescaped; b64data wins over data");
	reset_node();
	api_is("/api/publish", "{\"channel\":\"news\",\"b64data\":\"\",\"data\":\"s\"}", "{\"result\":{}}",
	       "empty b64data: data is used");
	is_str(F.log, "publish ch=news data=\"s\" skip=0 key= tags= info=null\n", "... a JSON string as is");

	reset_node();
	api_is("/api/publish", "{\"channel\":\"news\",\"b64data\":\"aGk\"}",
	       "{\"error\":{\"code\":107,\"message\":\"bad request\"}}", "bad base64: 107");
	api_is("/api/publish", "{\"channel\":\"news\"}", "{\"error\":{\"code\":107,\"message\":\"bad request\"}}",
	       "no data: 107");
	api_is("/api/publish", "{\"data\":1}", "{\"error\":{\"code\":107,\"message\":\"bad request\"}}",
	       "no channel: 107");
	api_is("/api/publish", "{\"channel\":\"nope:x\"}", "{\"error\":{\"code\":107,\"message\":\"bad request\"}}",
	       "no data comes before the namespace");
	api_is("/api/publish", "{\"channel\":\"nope:x\",\"data\":1}",
	       "{\"error\":{\"code\":102,\"message\":\"unknown channel\"}}", "unknown namespace: 102");
	is_str(F.log, "", "nothing published on errors");
	api_is("/api/publish", "{\"channel\":\"rx:A1\",\"data\":1}", "{\"result\":{}}",
	       "the API does not check channel_regex");
	api_is("/api/publish", "{\"channel\":\"$n\xc3\xa9ws#1\",\"data\":1}", "{\"result\":{}}",
	       "... nor ASCII, private or user-limited names");
	F.fail = 1;
	api_is("/api/publish", "{\"channel\":\"news\",\"data\":1}",
	       "{\"error\":{\"code\":100,\"message\":\"internal server error\"}}", "node failure: 100");
	F.fail = 0;
	call("POST", "/api/publish", KEY, "{\"channel\":\"news\",\"data\":1,\"tags\":{\"a\":1}}");
	is_int(R.status, 400, "a tag value that is not a string: 400");
	call("POST", "/api/publish", KEY, "{\"channel\":\"news\",\"data\":1,\"skip_history\":\"yes\"}");
	is_int(R.status, 400, "a bool that is a string: 400");
	call("POST", "/api/publish", KEY, "{\"channel\":null,\"data\":1,\"skip_history\":null,\"unknown\":[{}]}");
	is_int(R.status, 200, "nulls leave fields unset; unknown fields ignored");
	call("POST", "/api/publish", KEY, "{\"channel\":\"news\",\"data\":1,\"version\":1.5}");
	is_int(R.status, 400, "a fraction where an integer goes: 400");
	call("POST", "/api/publish", KEY, "{\"channel\":\"news\",\"data\":1,\"version\":-1}");
	is_int(R.status, 400, "a negative uint64: 400");
}

static void test_broadcast(void)
{
	reset_node();
	F.offset = 2;
	api_is("/api/broadcast", "{\"channels\":[\"a\",\"\",\"nope:x\",\"chat:b\"],\"data\":{\"v\":1}}",
	       "{\"result\":{\"responses\":[{\"result\":{\"offset\":2}},"
	       "{\"error\":{\"code\":107,\"message\":\"bad request\"}},"
	       "{\"error\":{\"code\":102,\"message\":\"unknown channel\"}},{\"result\":{\"offset\":2}}]}}",
	       "broadcast: one response per channel, in order");
	is_str(F.log, "publish ch=a data={\"v\":1} skip=0 key= tags= info=null\n"
	       "publish ch=chat:b data={\"v\":1} skip=0 key= tags= info=null\n", "published to the good ones");
	reset_node();
	api_is("/api/broadcast", "{\"channels\":[],\"data\":1}",
	       "{\"error\":{\"code\":107,\"message\":\"bad request\"}}", "no channels: 107");
	api_is("/api/broadcast", "{\"channels\":[\"a\"]}", "{\"error\":{\"code\":107,\"message\":\"bad request\"}}",
	       "no data: 107");
	api_is("/api/broadcast", "{\"channels\":[\"a\"],\"b64data\":\"!\"}",
	       "{\"error\":{\"code\":107,\"message\":\"bad request\"}}", "bad b64data: 107");
	F.fail = 1;
	api_is("/api/broadcast", "{\"channels\":[\"a\"],\"data\":1}",
	       "{\"result\":{\"responses\":[{\"error\":{\"code\":100,\"message\":\"internal server error\"}}]}}",
	       "node failure per channel: 100 inside");
	F.fail = 0;
	call("POST", "/api/broadcast", KEY, "{\"channels\":\"a\",\"data\":1}");
	is_int(R.status, 400, "channels not an array: 400");
	call("POST", "/api/broadcast", KEY, "{\"channels\":[1],\"data\":1}");
	is_int(R.status, 400, "a channel that is not a string: 400");
}

static void test_subscribe_family(void)
{
	reset_node();
	api_is("/api/subscribe", "{\"user\":\"42\",\"channel\":\"chat:x\",\"info\":{\"i\":1},\"data\":[2],"
	       "\"expire_at\":1700000000,\"client\":\"c1\",\"session\":\"s1\","
	       "\"recover_since\":{\"offset\":5,\"epoch\":\"ep\"},"
	       "\"override\":{\"presence\":{\"value\":true},\"join_leave\":{\"value\":false},"
	       "\"force_recovery\":{},\"force_positioning\":null}}",
	       "{\"result\":{}}", "subscribe");
	is_str(F.log, "subscribe user=42 client=c1 session=s1 ch=chat:x info={\"i\":1} data=[2] "
	       "expire_at=1700000000 since=1:5:ep override=1,0,-1,0,-1\n", "subscribe reaches the node");
	reset_node();
	api_is("/api/subscribe", "{\"user\":\"42\",\"channel\":\"x\",\"b64info\":\"aQ==\",\"b64data\":\"ZA==\"}",
	       "{\"result\":{}}", "subscribe with b64info / b64data");
	is_str(F.log, "subscribe user=42 client= session= ch=x info=i data=d expire_at=0 since=0:0: "
	       "override=-1,-1,-1,-1,-1\n", "decoded base64; no override");
	reset_node();
	api_is("/api/subscribe", "{\"user\":\"42\"}", "{\"error\":{\"code\":107,\"message\":\"bad request\"}}",
	       "subscribe without channel: 107");
	api_is("/api/subscribe", "{\"user\":\"42\",\"channel\":\"nope:x\"}",
	       "{\"error\":{\"code\":102,\"message\":\"unknown channel\"}}", "subscribe unknown namespace: 102");
	api_is("/api/subscribe", "{\"channel\":\"x\"}", "{\"error\":{\"code\":107,\"message\":\"bad request\"}}",
	       "subscribe without user or client: 107");
	is_str(F.log, "", "nothing subscribed on errors");
	call("POST", "/api/subscribe", KEY, "{\"user\":\"42\",\"channel\":\"x\",\"override\":{\"presence\":true}}");
	is_int(R.status, 400, "override value not wrapped: 400");
	call("POST", "/api/subscribe", KEY, "{\"user\":\"42\",\"channel\":\"x\",\"expire_at\":\"1\"}");
	is_int(R.status, 400, "expire_at as a string: 400");

	reset_node();
	api_is("/api/unsubscribe", "{\"user\":\"42\",\"channel\":\"chat:x\",\"client\":\"c\",\"session\":\"s\"}",
	       "{\"result\":{}}", "unsubscribe");
	api_is("/api/unsubscribe", "{\"user\":\"42\"}", "{\"result\":{}}", "unsubscribe from every channel");
	is_str(F.log, "unsubscribe user=42 client=c session=s ch=chat:x\n"
	       "unsubscribe user=42 client= session= ch=\n", "unsubscribe reaches the node");
	api_is("/api/unsubscribe", "{\"user\":\"42\",\"channel\":\"nope:x\"}",
	       "{\"error\":{\"code\":102,\"message\":\"unknown channel\"}}", "unsubscribe unknown namespace: 102");

	reset_node();
	api_is("/api/disconnect", "{\"user\":\"42\"}", "{\"result\":{}}", "disconnect");
	api_is("/api/disconnect", "{\"user\":\"42\",\"disconnect\":{\"code\":4000,\"reason\":\"bye\"},"
	       "\"whitelist\":[\"c1\",\"c2\"],\"client\":\"c3\",\"session\":\"s\"}", "{\"result\":{}}",
	       "disconnect with code, reason, whitelist");
	is_str(F.log, "disconnect user=42 client= session= code=3503 reason=force disconnect whitelist=\n"
	       "disconnect user=42 client=c3 session=s code=4000 reason=bye whitelist=c1,c2\n",
	       "default 3503 force disconnect; the given one otherwise");
	call("POST", "/api/disconnect", KEY, "{\"user\":\"42\",\"disconnect\":{\"code\":4294967296}}");
	is_int(R.status, 400, "a code over uint32: 400");
	api_is("/api/disconnect", "{\"user\":\"\"}", "{\"error\":{\"code\":107,\"message\":\"bad request\"}}",
	       "disconnect with nobody: 107");

	reset_node();
	api_is("/api/refresh", "{\"user\":\"42\",\"expired\":true,\"expire_at\":5,\"info\":{\"a\" : 1}}",
	       "{\"result\":{}}", "refresh");
	is_str(F.log, "refresh user=42 client= session= expired=1 expire_at=5 info={\"a\" : 1}\n",
	       "refresh reaches the node");
	F.fail = 1;
	api_is("/api/refresh", "{\"client\":\"c\"}", "{\"error\":{\"code\":100,\"message\":\"internal server error\"}}",
	       "refresh node failure: 100");
	api_is("/api/unsubscribe", "{\"client\":\"c\"}",
	       "{\"error\":{\"code\":100,\"message\":\"internal server error\"}}", "unsubscribe node failure: 100");
	api_is("/api/disconnect", "{\"client\":\"c\"}",
	       "{\"error\":{\"code\":100,\"message\":\"internal server error\"}}", "disconnect node failure: 100");
	api_is("/api/subscribe", "{\"client\":\"c\",\"channel\":\"x\"}",
	       "{\"error\":{\"code\":100,\"message\":\"internal server error\"}}", "subscribe node failure: 100");
	F.fail = 0;
}

static void test_other_methods(void)
{
	static const char *const chans[] = { "news", "3", "chat:b", "1", "chat:a", "2", "idle", "0",
					     "\xc3\xa9t\xc3\xa9", "5", NULL };

	api_is("/api/presence", "{\"channel\":\"chat:x\"}",
	       "{\"result\":{\"presence\":{\"c1\":{\"user\":\"\",\"client\":\"c1\",\"conn_info\":{\"n\":1.50}}}}}",
	       "presence: clients by id, user always written, info byte for byte");
	api_is("/api/presence_stats", "{\"channel\":\"chat:x\"}", "{\"result\":{\"num_clients\":3,\"num_users\":2}}",
	       "presence_stats");
	api_is("/api/presence", "{\"channel\":\"x\"}", "{\"error\":{\"code\":108,\"message\":\"not available\"}}",
	       "presence without presence on the channel: 108");
	api_is("/api/presence_stats", "{\"channel\":\"x\"}", "{\"error\":{\"code\":108,\"message\":\"not available\"}}",
	       "presence_stats without presence: 108");
	/* History: chat: keeps some, channels without namespace none. */
	reset_node();
	F.offset = 7;
	F.epoch = "abcdEFGH";
	api_is("/api/history", "{\"channel\":\"chat:x\",\"limit\":-1,\"since\":{\"offset\":1},\"reverse\":true}",
	       "{\"result\":{\"publications\":[{\"data\":{\"x\":1.10},\"offset\":7}],\"epoch\":\"abcdEFGH\",\"offset\":7}}",
	       "history: publications, epoch and top, data byte for byte");
	is_str(F.log, "history ch=chat:x limit=-1 reverse=1 since=1:1:\n", "history: the query reaches the store as sent");
	api_is("/api/history", "{\"channel\":\"chat:x\"}",
	       "{\"result\":{\"publications\":[],\"epoch\":\"abcdEFGH\",\"offset\":7}}",
	       "history without limit: the position only, publications always present");
	api_is("/api/history", "{\"channel\":\"chat:x\",\"limit\":5,\"since\":{\"offset\":3,\"epoch\":\"old\"}}",
	       "{\"error\":{\"code\":112,\"message\":\"unrecoverable position\"}}", "history: another epoch is 112");
	api_is("/api/history", "{\"channel\":\"x\",\"limit\":1}",
	       "{\"error\":{\"code\":108,\"message\":\"not available\"}}", "history without history options: 108");
	reset_node();
	api_is("/api/history_remove", "{\"channel\":\"chat:x\"}", "{\"result\":{}}", "history_remove: {}");
	is_str(F.log, "history_remove ch=chat:x\n", "history_remove reaches the store");
	api_is("/api/history_remove", "{\"channel\":\"x\"}", "{\"error\":{\"code\":108,\"message\":\"not available\"}}",
	       "history_remove without history options: 108");
	{
		/* A name no stream can have is the caller's error, and the store
		 * is not asked. */
		char body[400];
		snprintf(body, sizeof(body), "{\"channel\":\"chat:%0251d\"}", 0);
		reset_node();
		api_is("/api/history", body, "{\"error\":{\"code\":107,\"message\":\"bad request\"}}",
		       "history of a 256-byte channel: 107");
		api_is("/api/history_remove", body, "{\"error\":{\"code\":107,\"message\":\"bad request\"}}",
		       "history_remove of a 256-byte channel: 107");
		is_str(F.log, "", "the store is not asked about a 256-byte channel");
	}
	F.fail = 1;
	api_is("/api/history", "{\"channel\":\"chat:x\",\"limit\":1}",
	       "{\"error\":{\"code\":100,\"message\":\"internal server error\"}}", "history store failure: 100");
	reset_node();
	api_is("/api/presence", "{}", "{\"error\":{\"code\":107,\"message\":\"bad request\"}}", "presence no channel: 107");
	api_is("/api/history", "{\"channel\":\"nope:x\"}", "{\"error\":{\"code\":102,\"message\":\"unknown channel\"}}",
	       "history unknown namespace: 102");
	call("POST", "/api/history", KEY, "{\"channel\":\"x\",\"limit\":2147483648}");
	is_int(R.status, 400, "limit over int32: 400");

	api_is("/api/rpc", "{\"method\":\"m\",\"params\":{}}", "{\"error\":{\"code\":104,\"message\":\"not found\"}}",
	       "rpc: 104 (no server RPC in OSS)");
	api_is("/api/rpc", "{}", "{\"error\":{\"code\":107,\"message\":\"bad request\"}}", "rpc without method: 107");

	reset_node();
	F.channels = chans;
	api_is("/api/channels", "{}", "{\"result\":{\"channels\":{\"chat:a\":{\"num_clients\":2},"
	       "\"chat:b\":{\"num_clients\":1},\"news\":{\"num_clients\":3},\"\xc3\xa9t\xc3\xa9\":{\"num_clients\":5}}}}",
	       "channels: sorted, empty ones left out");
	api_is("/api/channels", "{\"pattern\":\"chat:*\"}", "{\"result\":{\"channels\":{\"chat:a\":{\"num_clients\":2},"
	       "\"chat:b\":{\"num_clients\":1}}}}", "channels with a pattern");
	api_is("/api/channels", "{\"pattern\":\"{news,x}\"}", "{\"result\":{\"channels\":{\"news\":{\"num_clients\":3}}}}",
	       "channels with alternatives");
	api_is("/api/channels", "{\"pattern\":\"zzz\"}", "{\"result\":{\"channels\":{}}}", "nothing matches: {}");
	api_is("/api/channels", "{\"pattern\":\"[a\"}", "{\"error\":{\"code\":100,\"message\":\"internal server error\"}}",
	       "a pattern that does not compile: 100, as Centrifugo");
	F.others = (const char *const[]){ "news", "4", "chat:c", "1", "zzz", "0", NULL };
	api_is("/api/channels", "{}", "{\"result\":{\"channels\":{\"chat:a\":{\"num_clients\":2},"
	       "\"chat:b\":{\"num_clients\":1},\"chat:c\":{\"num_clients\":1},\"news\":{\"num_clients\":7},"
	       "\"\xc3\xa9t\xc3\xa9\":{\"num_clients\":5}}}}",
	       "channels of the other nodes: merged, a channel on both once with the sum");
	api_is("/api/channels", "{\"pattern\":\"chat:*\"}", "{\"result\":{\"channels\":{\"chat:a\":{\"num_clients\":2},"
	       "\"chat:b\":{\"num_clients\":1},\"chat:c\":{\"num_clients\":1}}}}",
	       "... the pattern applied to what they answer too");
	ok(strstr(F.log, "channels_others pattern=chat:*\n") != NULL, "... and sent to them");
	F.others_fail = true;
	api_is("/api/channels", "{}", "{\"error\":{\"code\":100,\"message\":\"internal server error\"}}",
	       "a node that does not answer: 100, as Centrifugo's survey timeout");
	F.others_fail = false;
	F.others = NULL;
	F.channels = NULL;
	F.fail = 1;
	api_is("/api/channels", "{}", "{\"error\":{\"code\":100,\"message\":\"internal server error\"}}",
	       "channels node failure: 100");
	F.fail = 0;

	F.offset = 99; /* uptime in the fake */
	api_is("/api/info", "null", "{\"result\":{\"nodes\":[{\"uid\":\"0b6a8e2c-1c2f-4b7e-9d53-5f1e2a3b4c5d\","
	       "\"name\":\"host_8000\",\"version\":\"0.1.0 rotor\",\"num_clients\":3,\"num_users\":2,"
	       "\"num_channels\":0,\"uptime\":99,\"num_subs\":4}]}}", "info with uptime");
	F.offset = 0;
}

static void test_batch(void)
{
	reset_node();
	api_is("/api/batch", "{\"commands\":[{\"publish\":{\"channel\":\"a\",\"data\":{\"x\":1.10}}},"
	       "{\"publish\":{\"channel\":\"nope:x\",\"data\":1}},{\"info\":{}},{},{\"foo\":{}},"
	       "{\"Presence\":{\"channel\":\"x\"}},{\"disconnect\":{\"user\":\"u\"},\"publish\":null},"
	       "{\"rpc\":{\"method\":\"m\"},\"broadcast\":{\"channels\":[\"b\"],\"data\":2}}],\"parallel\":true}",
	       "{\"replies\":[{\"publish\":{}},{\"error\":{\"code\":102,\"message\":\"unknown channel\"}},"
	       "{\"info\":{\"nodes\":[{\"uid\":\"0b6a8e2c-1c2f-4b7e-9d53-5f1e2a3b4c5d\",\"name\":\"host_8000\","
	       "\"version\":\"0.1.0 rotor\",\"num_clients\":3,\"num_users\":2,\"num_channels\":0,\"num_subs\":4}]}},"
	       "{\"error\":{\"code\":104,\"message\":\"not found\"}},{\"error\":{\"code\":104,\"message\":\"not found\"}},"
	       "{\"error\":{\"code\":108,\"message\":\"not available\"}},{\"disconnect\":{}},{\"broadcast\":"
	       "{\"responses\":[{\"result\":{}}]}}]}", "batch: replies in order, no result wrapper");
	is_str(F.log, "publish ch=a data={\"x\":1.10} skip=0 key= tags= info=null\n"
	       "info\n"
	       "disconnect user=u client= session= code=3503 reason=force disconnect whitelist=\n"
	       "publish ch=b data=2 skip=0 key= tags= info=null\n",
	       "batch commands executed in order; the first method in Centrifugo's order wins");
	api_is("/api/batch", "{\"commands\":[]}", "{}", "empty batch: {} (replies omitted when empty)");
	api_is("/api/batch", "{}", "{}", "no commands: {}");
	api_is("/api/batch", "null", "{}", "null: {}");
	reset_node();
	call("POST", "/api/batch", KEY, "{\"commands\":[{\"publish\":{\"channel\":\"a\",\"data\":1}},"
	     "{\"publish\":{\"channel\":5}}]}");
	is_int(R.status, 400, "a command that does not decode: 400 for the whole batch");
	is_str(F.log, "", "... and nothing ran");
	call("POST", "/api/batch", KEY, "{\"commands\":[{\"info\":{},\"publish\":{\"channel\":[]}}]}");
	is_int(R.status, 400, "even an unused method field must decode");
	call("POST", "/api/batch", KEY, "{\"commands\":{}}");
	is_int(R.status, 400, "commands not an array: 400");
	call("POST", "/api/batch", KEY, "{\"commands\":[1]}");
	is_int(R.status, 400, "a command that is not an object: 400");
	call("POST", "/api/batch", KEY, "{\"commands\":[],\"parallel\":1}");
	is_int(R.status, 400, "parallel not a bool: 400");
	call("POST", "/api/batch", KEY, "{\"commands\":[{\"publish\":{\"channel\":\"nope:x\",\"data\":1}}");
	is_int(R.status, 400, "malformed: 400");
	call("POST", "/api/batch", NULL, "{}");
	is_int(R.status, 401, "batch needs the key");
}

static void test_legacy(void)
{
	reset_node();
	api_is("/api", "{\"method\":\"publish\",\"params\":{\"channel\":\"a\",\"data\":{\"x\":1.10}}}",
	       "{\"result\":{}}", "legacy publish");
	is_str(F.log, "publish ch=a data={\"x\":1.10} skip=0 key= tags= info=null\n", "legacy data byte for byte");
	reset_node();
	api_is("/api", "{\"method\":\"PUBLISH\",\"params\":{\"channel\":\"a\",\"data\":1},\"id\":3}\n"
	       "{\"method\":1,\"params\":{\"channels\":[\"b\"],\"data\":2}}"
	       "{\"id\":5,\"method\":\"Info\"}\n\n  "
	       "{\"method\":99,\"id\":6}\n"
	       "{\"method\":\"connections\",\"id\":7}\n"
	       "{\"method\":\"publish\",\"params\":{\"channel\":\"nope:x\",\"data\":1},\"id\":8}\n"
	       "{\"method\":\"publish\",\"id\":9}\n"
	       "{\"method\":\"publish\",\"params\":\"x\",\"id\":10}\n"
	       "{\"method\":11,\"params\":null,\"id\":11}\n",
	       "{\"id\":3,\"result\":{}}\n"
	       "{\"result\":{\"responses\":[{\"result\":{}}]}}\n"
	       "{\"id\":5,\"result\":{\"nodes\":[{\"uid\":\"0b6a8e2c-1c2f-4b7e-9d53-5f1e2a3b4c5d\",\"name\":\"host_8000\","
	       "\"version\":\"0.1.0 rotor\",\"num_clients\":3,\"num_users\":2,\"num_channels\":0,\"num_subs\":4}]}}\n"
	       "{\"id\":6,\"error\":{\"code\":104,\"message\":\"not found\"}}\n"
	       "{\"id\":7,\"error\":{\"code\":104,\"message\":\"not found\"}}\n"
	       "{\"id\":8,\"error\":{\"code\":102,\"message\":\"unknown channel\"}}\n"
	       "{\"id\":9,\"error\":{\"code\":107,\"message\":\"bad request\"}}\n"
	       "{\"id\":10,\"error\":{\"code\":107,\"message\":\"bad request\"}}\n"
	       "{\"id\":11,\"error\":{\"code\":107,\"message\":\"bad request\"}}",
	       "several commands back to back: replies joined by newlines, id echoed when set");
	is_str(F.log, "publish ch=a data=1 skip=0 key= tags= info=null\n"
	       "publish ch=b data=2 skip=0 key= tags= info=null\n"
	       "info\n", "each executed in order");
	api_is("/api", "{\"method\":\"subscribe\",\"params\":{\"channel\":\"x\",\"user\":\"1\"}}",
	       "{\"result\":{}}", "legacy method by name: subscribe (11)");
	api_is("/api", "{\"method\":12,\"params\":{\"user\":\"1\"}}", "{\"result\":{}}", "legacy method by number: refresh");
	api_is("/api", "{\"params\":{\"channel\":\"a\",\"data\":1}}", "{\"result\":{}}",
	       "no method: 0, publish (as Go decodes it)");
	api_is("/api", "   ", "", "only whitespace: 200, no replies");

	reset_node();
	call("POST", "/api", KEY, "{\"method\":\"publish\",\"params\":{\"channel\":\"a\",\"data\":1}}\n{\"method\":");
	is_int(R.status, 400, "a stream that breaks off: 400");
	is_str(F.log, "publish ch=a data=1 skip=0 key= tags= info=null\n", "... after running what came before");
	call("POST", "/api", KEY, "");
	is_int(R.status, 400, "empty body: 400");
	call("POST", "/api", KEY, "{\"method\":\"nosuch\"}");
	is_int(R.status, 400, "an unknown method name does not decode (Centrifugo: 400)");
	call("POST", "/api", KEY, "{\"method\":\"\\u0070ublish\"}");
	is_int(R.status, 400, "method names are matched as raw bytes");
	call("POST", "/api", KEY, "{\"method\":1.5}");
	is_int(R.status, 400, "a fractional method: 400");
	call("POST", "/api", KEY, "{\"method\":null}");
	is_int(R.status, 400, "a null method: 400");
	call("POST", "/api", KEY, "{\"method\":\"info\",\"id\":-1}");
	is_int(R.status, 400, "a negative id: 400");
	call("POST", "/api", KEY, "[1]");
	is_int(R.status, 400, "a command that is not an object: 400");
	call("POST", "/api", KEY, "{\"method\":\"info\"}}");
	is_int(R.status, 400, "a stray '}': 400");
	call("POST", "/api", NULL, "{\"method\":\"info\"}");
	is_int(R.status, 401, "legacy needs the key");
	call("GET", "/api", KEY, "{\"method\":\"info\"}");
	is_int(R.status, 405, "legacy is POST only");

	w.draining = true;
	call("POST", "/api", KEY, "{\"method\":\"info\"}");
	is_int(R.status, 503, "legacy during shutdown: 503");
	w.draining = false;
}

static void test_reconfigure(void)
{
	load_conf("{" BASE_CONF ",\"http_api\":{\"key\":\"sekret\",\"handler_prefix\":\"/v2/api/\"}}");
	api_reconfigure(&w);
	call("POST", "/api/info", KEY, "{}");
	is_int(R.status, 404, "old prefix gone after reload");
	call("POST", "/v2/api/info", KEY, "{}");
	is_int(R.status, 200, "new prefix (trailing '/' trimmed)");
	call("POST", "/v2/api", KEY, "{\"method\":\"info\"}");
	is_int(R.status, 200, "legacy at the new prefix");

	load_conf("{\"http_api\":{\"key\":\"k2\",\"handler_prefix\":\"\"},"
		  "\"channel\":{\"namespaces\":[{\"name\":\"fresh\"}]}}");
	api_reconfigure(&w);
	call("POST", "/publish", "X-API-Key: k2\r\n", "{\"channel\":\"fresh:x\",\"data\":1}");
	is_int(R.status, 200, "empty prefix: methods at the root");
	is_str(R.body, "{\"result\":{}}", "... and the reloaded namespaces apply");
	call("POST", "/publish", KEY, "{\"channel\":\"fresh:x\",\"data\":1}");
	is_int(R.status, 401, "... and the reloaded key");
	call("POST", "/", "X-API-Key: k2\r\n", "{\"method\":\"info\"}");
	is_int(R.status, 200, "legacy at /");

	load_conf("{\"http_api\":{\"key\":\"k2\",\"disabled\":true}}");
	api_reconfigure(&w);
	call("POST", "/api/info", "X-API-Key: k2\r\n", "{}");
	is_int(R.status, 404, "http_api.disabled: no API");
	call("POST", "/info", "X-API-Key: k2\r\n", "{}");
	is_int(R.status, 404, "http_api.disabled: the old root routes are gone too");

	load_conf("{" BASE_CONF "}");
	api_reconfigure(&w);
	call("POST", "/api/info", KEY, "{}");
	is_int(R.status, 200, "enabled again");
}

/* Sends METHOD PATH with the key and BODY on a new connection; returns
 * the client end, the request handled. */
static int send_req(const char *path, const char *body)
{
	int fd = client();
	char *req;
	int n = asprintf(&req, "POST %s HTTP/1.1\r\nHost: x\r\n" KEY "Content-Length: %zu\r\n\r\n%s",
			 path, strlen(body), body);

	if (n < 0)
		abort();
	send_str(fd, req);
	free(req);
	spin();
	return fd;
}

/* The body of the response FD has received so far, "" when none. */
static const char *body_of(int fd)
{
	static char body[8192];
	bool eof;
	char *resp = recv_avail(fd, &eof, NULL);
	const char *b = strstr(resp, "\r\n\r\n");

	snprintf(body, sizeof(body), "%s", b ? b + 4 : "");
	free(resp);
	return body;
}

/* What only an engine that answers later exercises. */
static void test_deferred(void)
{
	int fd;
	unsigned before;

	reset_node();
	F.offset = 3;
	D.mask = 1;
	D.hold = true;
	fd = send_req("/api/publish", "{\"channel\":\"chat:x\",\"data\":1}");
	is_str(body_of(fd), "", "deferred publish: no answer while the engine has not answered");
	D.hold = false;
	before = D.answered;
	is_str(body_of(fd), "{\"result\":{\"offset\":3}}", "... the answer once it has, a loop iteration later");
	is_int(D.answered - before, 1, "... which it gave from the loop");
	close(fd);

	reset_node();
	F.offset = 7;
	F.epoch = "abcdEFGH";
	D.mask = 2; /* the second engine call */
	D.hold = true;
	fd = send_req("/api/batch", "{\"commands\":[{\"publish\":{\"channel\":\"a\",\"data\":1}},"
		      "{\"history\":{\"channel\":\"chat:x\",\"limit\":1}},"
		      "{\"presence_stats\":{\"channel\":\"chat:x\"}}],\"parallel\":true}");
	is_str(body_of(fd), "", "batch: no answer while its second command waits");
	is_str(F.log, "publish ch=a data=1 skip=0 key= tags= info=null\n"
	       "history ch=chat:x limit=1 reverse=0 since=0:0:\n", "... and the third has not started");
	D.hold = false;
	is_str(body_of(fd), "{\"replies\":[{\"publish\":{\"offset\":7,\"epoch\":\"abcdEFGH\"}},{\"history\":{\"publications\":[{\"data\":{\"x\":1.10},"
	       "\"offset\":7}],\"epoch\":\"abcdEFGH\",\"offset\":7}},{\"presence_stats\":{\"num_clients\":3,"
	       "\"num_users\":2}}]}", "... then every reply, in order");
	close(fd);

	/* The connection goes while the first channel of a broadcast waits:
	 * the answer then frees the job and goes no further (ASan: nothing
	 * touched after free, nothing leaked). The HTTP layer does not read
	 * a connection whose request is with a handler, so the close is seen
	 * when the worker closes its connections. */
	reset_node();
	D.mask = 1;
	D.hold = true;
	fd = send_req("/api/broadcast", "{\"channels\":[\"a\",\"b\"],\"data\":1}");
	close(fd);
	spin();
	conn_close_all(&w);
	spin();
	is_int(w.nconns, 0, "aborted: the connection is gone");
	before = D.answered;
	D.hold = false;
	spin();
	is_int(D.answered - before, 1, "... the engine answered afterwards");
	is_str(F.log, "publish ch=a data=1 skip=0 key= tags= info=null\n", "... and the job went no further");

	/* The same for a legacy stream, its second command waiting. */
	reset_node();
	D.mask = 2;
	D.hold = true;
	fd = send_req("/api", "{\"method\":\"publish\",\"params\":{\"channel\":\"a\",\"data\":1}}\n"
		      "{\"method\":\"history_remove\",\"params\":{\"channel\":\"chat:x\"}}\n"
		      "{\"method\":\"presence\",\"params\":{\"channel\":\"chat:x\"}}");
	close(fd);
	conn_close_all(&w);
	D.hold = false;
	spin();
	is_int(D.n, 0, "legacy aborted: the engine answered");
	is_str(F.log, "publish ch=a data=1 skip=0 key= tags= info=null\nhistory_remove ch=chat:x\n",
	       "... and the job went no further");

	/* channels waiting for the other nodes; then the same, its
	 * connection gone meanwhile (what it gathered is freed). */
	reset_node();
	F.others = (const char *const[]){ "x", "2", NULL };
	D.mask = 1;
	D.hold = true;
	fd = send_req("/api/channels", "{}");
	is_str(body_of(fd), "", "channels: no answer while the other nodes have not answered");
	D.hold = false;
	is_str(body_of(fd), "{\"result\":{\"channels\":{\"x\":{\"num_clients\":2}}}}", "... then theirs");
	close(fd);
	reset_node();
	F.others = (const char *const[]){ "x", "2", NULL };
	D.mask = 1;
	D.hold = true;
	fd = send_req("/api/channels", "{}");
	close(fd);
	spin();
	conn_close_all(&w);
	spin();
	before = D.answered;
	D.hold = false;
	spin();
	is_int(D.answered - before, 1, "channels aborted: the survey ended afterwards");
	D.mask = 0;
}

static void run_suite(void)
{
	test_auth();
	test_errors();
	test_publish();
	test_broadcast();
	test_subscribe_family();
	test_other_methods();
	test_batch();
	test_legacy();
	test_reconfigure();
}

int main(void)
{
	unsigned at_once;

	log_set_level(LOG_NONE);
	w.loop = ev_default_loop(0);
	w.now_ms = 1000000;
	conf_init(&k);
	load_conf("{" BASE_CONF "}");
	w.conf = &k;
	wheel_init(&w.wheel, w.now_ms, 100);
	conn_init(&w);
	http_init(&w);
	api_init(&w);
	harness_init(&w, NULL);
	ev_check_init(&D.w, answer_deferred);
	ev_check_start(w.loop, &D.w);

	run_suite();
	printf("# again, the engine answering every call from a later loop iteration\n");
	D.all = true;
	at_once = D.at_once;
	run_suite();
	ok(D.answered > 0 && D.at_once == at_once && D.n == 0, "every answer of that run came later (%u)",
	   D.answered);
	D.all = false;
	test_deferred();

	is_int(w.nconns, 0, "no connection left");
	api_free();
	http_routes_free();
	conf_free(&k);
	return tap_done();
}
