/*
 * api.c - the server HTTP API (server-api.md §1), as Centrifugo v6 serves it.
 *
 * Model: three entry points share one executor per method.
 *   POST <prefix>/<method>  the method's request object; {"result":{...}} or
 *                           {"error":{...}} (or, in transport error mode, the
 *                           bare error with an HTTP status)
 *   POST <prefix>/batch     {"commands":[{"<method>":{...}}...]}; replies
 *                           {"<method>":{...}} or {"error":{...}} in order
 *   POST <prefix>           legacy: a stream of {"id","method","params"}
 *                           values, executed in order, replies joined by '\n'
 * Every request is POST-only (405) and, unless http_api.insecure, carries
 * http_api.key (401); both answers have empty bodies, as Centrifugo's
 * middleware writes them.
 *
 * Decoding mimics Go's encoding/json into Centrifugo's request structs,
 * because that is what callers were tested against: field names match
 * case-insensitively (exact first), unknown fields are ignored, null leaves
 * a field unset (a raw field gets the four bytes `null`), a value of the
 * wrong type fails the whole request (HTTP 400; in the legacy form error 107
 * for that command's params), integers must be plain integer literals in
 * range. Raw fields (`data`, `info`, `params`) are spans of the request body,
 * so they reach node.h byte for byte. Unescaped strings, decoded base64 and
 * arrays live in a per-request arena.
 *
 * Execution: each entry point decodes its whole request into a job (struct
 * api_job: the document, the arena, the commands, the output) on the heap,
 * then one runner executes the commands in order, each writing its reply,
 * and answers when the last is done. The engine's operations (node.h)
 * answer through a callback, at once with the shared-memory engine or from
 * a later loop iteration with Redis: a command waiting for one suspends the
 * job, and the callback resumes it. A job whose connection closes
 * meanwhile (http_req_on_abort) no longer touches the request; the answer
 * it waits for frees it. Channel options are looked up in the current
 * chan_cfg at each step, since a reload replaces it.
 */
#include "config.h"
#include "api.h"
#include "b64.h"
#include "chan.h"
#include "channel.h"
#include "conf.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "node.h"
#include "stats.h"
#include "utf8.h"
#include "util.h"
#include "worker.h"

#include <openssl/crypto.h>
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

/* Server API error codes (apiproto/errors.go). */
enum {
	API_OK = 0,
	API_INTERNAL = 100,
	API_UNKNOWN_CHANNEL = 102,
	API_NOT_FOUND = 104,
	API_BAD_REQUEST = 107,
	API_NOT_AVAILABLE = 108,
	API_UNRECOVERABLE = 112,
	API_CONFLICT = 113,
};

static const char *err_text(int code)
{
	switch (code) {
	case API_UNKNOWN_CHANNEL: return "unknown channel";
	case API_NOT_FOUND: return "not found";
	case API_BAD_REQUEST: return "bad request";
	case API_NOT_AVAILABLE: return "not available";
	case API_UNRECOVERABLE: return "unrecoverable position";
	case API_CONFLICT: return "conflict";
	default: return "internal server error";
	}
}

/* The HTTP status of an error in transport error mode. */
static int err_status(int code)
{
	switch (code) {
	case API_UNKNOWN_CHANNEL: case API_NOT_FOUND: return 404;
	case API_BAD_REQUEST: case API_NOT_AVAILABLE: return 400;
	case API_UNRECOVERABLE: return 416;
	case API_CONFLICT: return 409;
	default: return 500;
	}
}

/* ---- per-request memory ------------------------------------------------- */

struct arena {
	void **v;
	size_t n, cap;
};

static void *arena_alloc(struct arena *a, size_t size)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 16;
		a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
	}
	return a->v[a->n++] = xmalloc(size ? size : 1);
}

static void arena_free(struct arena *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	*a = (struct arena){ 0 };
}

/* ---- requests ----------------------------------------------------------- */

struct api_strs {
	struct pstr *v;
	size_t n;
};

struct api_tags {
	struct tag *v;
	size_t n;
};

/* Every field of every method's request; each method decodes its own. */
struct api_req {
	struct pstr channel, data, b64data, idempotency_key, version_epoch;
	struct api_strs channels, whitelist;
	struct api_tags tags;
	bool skip_history, delta;
	uint64_t version;
	struct pstr user, client, session, info, b64info;
	int64_t expire_at;
	bool has_since;                 /* recover_since (subscribe), since (history) */
	uint64_t since_offset;
	struct pstr since_epoch;
	bool has_override;
	struct chan_override override;
	bool has_disconnect;
	uint32_t code;
	struct pstr reason;
	bool expired, reverse;
	int32_t limit;
	struct pstr pattern, method, params;
};

enum ftype { F_STR, F_RAW, F_BOOL, F_I64, F_I32, F_U64, F_U32, F_STRLIST, F_TAGS, F_OBJ, F_BOOLVAL };

struct field {
	const char *name;
	uint8_t type;
	size_t off;                 /* of the member in struct api_req */
	const struct field *sub;    /* F_OBJ: its fields */
	size_t present;             /* F_OBJ: offset of its bool "was sent" */
};

#define FLD(n, t, m) { n, t, offsetof(struct api_req, m), NULL, 0 }
#define OBJ(n, sub, flag) { n, F_OBJ, 0, sub, offsetof(struct api_req, flag) }
#define END { NULL, 0, 0, NULL, 0 }

static const struct field position_fields[] = {
	FLD("offset", F_U64, since_offset), FLD("epoch", F_STR, since_epoch), END,
};
static const struct field override_fields[] = {
	FLD("presence", F_BOOLVAL, override.presence),
	FLD("join_leave", F_BOOLVAL, override.join_leave),
	FLD("force_recovery", F_BOOLVAL, override.force_recovery),
	FLD("force_positioning", F_BOOLVAL, override.force_positioning),
	FLD("force_push_join_leave", F_BOOLVAL, override.force_push_join_leave),
	END,
};
static const struct field disconnect_fields[] = {
	FLD("code", F_U32, code), FLD("reason", F_STR, reason), END,
};

#define PUBLISH_COMMON \
	FLD("data", F_RAW, data), FLD("b64data", F_STR, b64data), \
	FLD("skip_history", F_BOOL, skip_history), FLD("tags", F_TAGS, tags), \
	FLD("idempotency_key", F_STR, idempotency_key), FLD("delta", F_BOOL, delta), \
	FLD("version", F_U64, version), FLD("version_epoch", F_STR, version_epoch)

static const struct field publish_fields[] = { FLD("channel", F_STR, channel), PUBLISH_COMMON, END };
static const struct field broadcast_fields[] = { FLD("channels", F_STRLIST, channels), PUBLISH_COMMON, END };
static const struct field subscribe_fields[] = {
	FLD("channel", F_STR, channel), FLD("user", F_STR, user), FLD("expire_at", F_I64, expire_at),
	FLD("info", F_RAW, info), FLD("b64info", F_STR, b64info), FLD("client", F_STR, client),
	FLD("data", F_RAW, data), FLD("b64data", F_STR, b64data),
	OBJ("recover_since", position_fields, has_since), OBJ("override", override_fields, has_override),
	FLD("session", F_STR, session), END,
};
static const struct field unsubscribe_fields[] = {
	FLD("channel", F_STR, channel), FLD("user", F_STR, user), FLD("client", F_STR, client),
	FLD("session", F_STR, session), END,
};
static const struct field disconnect_req_fields[] = {
	FLD("user", F_STR, user), OBJ("disconnect", disconnect_fields, has_disconnect),
	FLD("client", F_STR, client), FLD("whitelist", F_STRLIST, whitelist),
	FLD("session", F_STR, session), END,
};
static const struct field channel_fields[] = { FLD("channel", F_STR, channel), END };
static const struct field history_fields[] = {
	FLD("channel", F_STR, channel), FLD("limit", F_I32, limit),
	OBJ("since", position_fields, has_since), FLD("reverse", F_BOOL, reverse), END,
};
static const struct field no_fields[] = { END };
static const struct field rpc_fields[] = { FLD("method", F_STR, method), FLD("params", F_RAW, params), END };
static const struct field refresh_fields[] = {
	FLD("user", F_STR, user), FLD("client", F_STR, client), FLD("expired", F_BOOL, expired),
	FLD("expire_at", F_I64, expire_at), FLD("info", F_RAW, info), FLD("session", F_STR, session), END,
};
static const struct field channels_fields[] = { FLD("pattern", F_STR, pattern), END };

/* What decoding and executing need: the worker, the request's arena. */
struct api_ctx {
	struct worker *w;
	struct arena ar;
};

/* The text of string token V (unescaped when it has escapes). */
static struct pstr get_str(struct api_ctx *x, const struct js_doc *d, uint32_t v)
{
	const struct js_tok *t = &d->t[v];
	struct pstr s = { d->s + t->start + 1, t->len - 2 };

	if (t->escaped) {
		char *buf = arena_alloc(&x->ar, t->len - 1);
		int64_t n = js_str(d, v, buf, t->len - 1);

		s.p = buf;
		s.n = n > 0 ? (size_t)n : 0;
	}
	return s;
}

static bool pstr_eq(struct pstr a, struct pstr b)
{
	return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* The field of FIELDS named by key token K: an exact match first, else one
 * that differs in ASCII case only (Go's rule). NULL: not a field. */
static const struct field *field_find(const struct js_doc *d, uint32_t k, const struct field *fields)
{
	char key[32];
	int64_t n = js_str(d, k, key, sizeof(key));

	if (n < 0 || (size_t)n != strlen(key))
		return NULL;
	for (const struct field *f = fields; f->name; f++)
		if (strcmp(f->name, key) == 0)
			return f;
	for (const struct field *f = fields; f->name; f++)
		if (strcasecmp(f->name, key) == 0)
			return f;
	return NULL;
}

static int decode_members(struct api_ctx *x, const struct js_doc *d, uint32_t obj,
			  const struct field *fields, struct api_req *r);

/* The one field of a BoolValue wrapper ({"value": bool}). */
static const struct field value_field[] = { { "value", F_BOOL, 0, NULL, 0 }, END };

/* Decodes value V into field F of R. RT_INVAL for a value of the wrong type. */
static int decode_value(struct api_ctx *x, const struct js_doc *d, uint32_t v, const struct field *f,
			struct api_req *r)
{
	void *p = (char *)r + f->off;
	int t = js_type(d, v);
	int64_t i64;
	uint64_t u64;
	bool b;
	uint32_t it = 0, k, e;

	if (f->type == F_RAW) {
		*(struct pstr *)p = (struct pstr){ js_raw(d, v), js_rawlen(d, v) };
		return RT_OK;
	}
	if (t == JS_NULL) {
		/* No effect on scalars; nil for slices, maps and pointers. */
		if (f->type == F_STRLIST)
			*(struct api_strs *)p = (struct api_strs){ 0 };
		else if (f->type == F_TAGS)
			*(struct api_tags *)p = (struct api_tags){ 0 };
		else if (f->type == F_OBJ)
			*(bool *)((char *)r + f->present) = false;
		else if (f->type == F_BOOLVAL)
			*(int8_t *)p = -1;
		return RT_OK;
	}
	switch (f->type) {
	case F_STR:
		if (t != JS_STRING)
			return RT_INVAL;
		*(struct pstr *)p = get_str(x, d, v);
		return RT_OK;
	case F_BOOL:
		return js_bool(d, v, (bool *)p);
	case F_I64:
		return js_int64(d, v, (int64_t *)p);
	case F_I32:
		if (js_int64(d, v, &i64) != RT_OK || i64 < INT32_MIN || i64 > INT32_MAX)
			return RT_INVAL;
		*(int32_t *)p = (int32_t)i64;
		return RT_OK;
	case F_U64:
		return js_uint64(d, v, (uint64_t *)p);
	case F_U32:
		if (js_uint64(d, v, &u64) != RT_OK || u64 > UINT32_MAX)
			return RT_INVAL;
		*(uint32_t *)p = (uint32_t)u64;
		return RT_OK;
	case F_STRLIST: {
		struct api_strs *l = p;

		if (t != JS_ARRAY)
			return RT_INVAL;
		l->n = 0;
		l->v = arena_alloc(&x->ar, d->t[v].size * sizeof(*l->v));
		while (js_next_elem(d, v, &it, &e)) {
			if (js_type(d, e) == JS_STRING)
				l->v[l->n++] = get_str(x, d, e);
			else if (js_type(d, e) == JS_NULL)
				l->v[l->n++] = (struct pstr){ "", 0 };
			else
				return RT_INVAL;
		}
		return RT_OK;
	}
	case F_TAGS: {
		struct api_tags *tags = p;

		if (t != JS_OBJECT)
			return RT_INVAL;
		tags->n = 0;
		tags->v = arena_alloc(&x->ar, d->t[v].size * sizeof(*tags->v));
		while (js_next_member(d, v, &it, &k, &e)) {
			struct tag tg = { get_str(x, d, k), { "", 0 } };
			size_t j;

			if (js_type(d, e) == JS_STRING)
				tg.value = get_str(x, d, e);
			else if (js_type(d, e) != JS_NULL)
				return RT_INVAL;
			for (j = 0; j < tags->n && !pstr_eq(tags->v[j].key, tg.key); j++)
				;
			tags->v[j] = tg; /* a repeated key replaces, as in a Go map */
			if (j == tags->n)
				tags->n++;
		}
		return RT_OK;
	}
	case F_OBJ:
		if (t != JS_OBJECT)
			return RT_INVAL;
		*(bool *)((char *)r + f->present) = true;
		return decode_members(x, d, v, f->sub, r);
	case F_BOOLVAL:
		/* {"value": bool}: present means false unless value is true. */
		if (t != JS_OBJECT)
			return RT_INVAL;
		*(int8_t *)p = 0;
		while (js_next_member(d, v, &it, &k, &e)) {
			if (field_find(d, k, value_field) == NULL)
				continue;
			if (js_type(d, e) == JS_NULL)
				continue;
			if (js_bool(d, e, &b) != RT_OK)
				return RT_INVAL;
			*(int8_t *)p = b;
		}
		return RT_OK;
	}
	return RT_INVAL;
}

static int decode_members(struct api_ctx *x, const struct js_doc *d, uint32_t obj,
			  const struct field *fields, struct api_req *r)
{
	uint32_t it = 0, k, v;
	int rc = RT_OK;

	while (js_next_member(d, obj, &it, &k, &v)) {
		const struct field *f = field_find(d, k, fields);

		if (f && decode_value(x, d, v, f, r) != RT_OK)
			rc = RT_INVAL; /* Go goes on, then fails the whole value */
	}
	return rc;
}

static void req_init(struct api_req *r)
{
	memset(r, 0, sizeof(*r));
	r->override = CHAN_OVERRIDE_NONE;
}

/* Decodes token V as a request with FIELDS: an object, or null for an empty
 * request. */
static int decode_req(struct api_ctx *x, const struct js_doc *d, uint32_t v, const struct field *fields,
		      struct api_req *r)
{
	req_init(r);
	if (js_type(d, v) == JS_NULL)
		return RT_OK;
	if (js_type(d, v) != JS_OBJECT)
		return RT_INVAL;
	return decode_members(x, d, v, fields, r);
}

/* ---- jobs --------------------------------------------------------------- */

/* The module's state: the API's chan_cfg is replaced on reload, so a job
 * looks channels up in A.chan at each step, never keeps an option. */
static struct {
	struct worker *w;
	struct chan_cfg *chan;
	char **paths;               /* routes registered, to remove */
	size_t npaths;
	unsigned route_flags;       /* theirs */
	bool transport;             /* http_api.error_mode is "transport" */
	bool empty_key_logged;
} A;

struct method;

/* One command of a request, decoded before any runs. */
struct api_cmd {
	const struct method *m;     /* NULL: no such method (RC says why) */
	int rc;                     /* API_OK, or the error it answers unrun */
	uint32_t id;                /* legacy: echoed when not 0 */
	struct api_req r;
};

/* The three entry points, told apart where they frame replies. */
enum job_kind { JOB_METHOD, JOB_BATCH, JOB_LEGACY };

/* A request from its decoding to its answer, on the heap: an engine call
 * (node.h) may answer after the handler returned. The commands run one
 * after the other, each writing its reply to OUT; the last one done, the
 * job answers and is freed.
 *
 * Invariant: while a job lives, either job_run is on the stack (RUNNING)
 * or one engine call is outstanding (WAITING), and that one frees the job
 * when it finds REQ gone: the connection closed (job_abort) and nothing
 * may touch the request any more. The document, the arena and OUT are the
 * job's own; REQ's body, which spans point into, is read only while REQ
 * is set. */
struct api_job {
	struct http_req *req;       /* NULL once the connection closed */
	enum job_kind kind;
	struct api_ctx x;           /* the worker, the arena */
	struct js_doc d;
	struct jw out;
	struct api_cmd *cmds;
	size_t ncmds, cmds_cap;
	bool bad;                   /* legacy: the stream broke off after CMDS (400) */
	size_t next;                /* the command running */
	unsigned step;              /* how many times it said API_LATER */
	size_t mark;                /* where its reply's value starts in OUT */
	int method_rc;              /* JOB_METHOD: the command's result */
	int64_t cmd_start_ns;       /* when the command running started */
	bool running, waiting;
	int rc;                     /* what the last engine call answered (API_*) */
	/* Broadcast's: the payload, where the current channel's reply starts. */
	struct pstr data;
	size_t item_mark;
	struct pstr pub_channel;    /* the channel being published to (logs) */
	struct channels_acc *chans; /* channels': what the nodes answered so far */
};

/* Returned by an executor that is not done: it is called again, STEP one
 * more, once no engine call is outstanding. */
#define API_LATER (-1)

/* Each writes its result object to OUT and returns API_OK, or returns an
 * error code (OUT is then cut back by the caller), or API_LATER. An
 * executor that calls the engine sets j->waiting just before; the
 * engine's callback writes the result and calls job_resume. */
typedef int (*exec_fn)(struct api_job *j, const struct api_req *r, struct jw *out);

static void job_run(struct api_job *j);
static void job_free(struct api_job *j);

/* The engine answered the call the job waits for with RC (API_*), the
 * result written to OUT. Goes on with the job, unless job_run is on the
 * stack (the engine answered before returning): that one goes on. */
static void job_resume(struct api_job *j, int rc)
{
	j->rc = rc;
	j->waiting = false;
	if (!j->running)
		job_run(j);
}

/* What an engine callback asks first: whether the connection closed while
 * the engine worked. Then the job is only freed (unless job_run is on the
 * stack: that one frees it), and the callback returns at once. */
static bool job_gone(struct api_job *j)
{
	if (j->req)
		return false;
	j->waiting = false;
	if (!j->running)
		job_free(j);
	return true;
}

/* ---- executors ---------------------------------------------------------- */

/* B64 when not empty (standard base64, padded), else RAW; into *OUT.
 * API_BAD_REQUEST when B64 does not decode. */
static int pick_payload(struct api_ctx *x, struct pstr raw, struct pstr b64, struct pstr *out)
{
	size_t n;
	char *buf;

	if (b64.n == 0) {
		*out = raw;
		return API_OK;
	}
	buf = arena_alloc(&x->ar, b64_decoded_max(b64.n));
	if (b64_decode(buf, &n, b64.p, b64.n, B64_STD) != RT_OK)
		return API_BAD_REQUEST;
	*out = (struct pstr){ buf, n };
	return API_OK;
}

static void published(void *arg, int rc, const struct node_pub_result *res)
{
	struct api_job *j = arg;
	struct jw *out = &j->out;

	if (job_gone(j))
		return;
	if (rc != RT_OK) {
		if (rc != RT_INVAL)
			log_error("api: publishing to %.*s failed", (int)j->pub_channel.n, j->pub_channel.p);
		job_resume(j, rc == RT_INVAL ? API_BAD_REQUEST : API_INTERNAL);
		return;
	}
	jw_lit(out, "{");
	if (res->offset) {
		jw_lit(out, "\"offset\":");
		jw_u64(out, res->offset);
	}
	if (res->epoch[0]) {
		jw_lit(out, res->offset ? ",\"epoch\":" : "\"epoch\":");
		jw_str(out, res->epoch, strnlen(res->epoch, sizeof(res->epoch)));
	}
	jw_lit(out, "}");
	job_resume(j, API_OK);
}

/* Publishes DATA to CH with R's options: returns an error found before,
 * or API_LATER with the PublishResult to come (published). */
static int publish_to(struct api_job *j, struct pstr ch, struct pstr data, const struct api_req *r)
{
	struct node_pub p = { 0 };
	const struct chan_opts *o;

	if (ch.n == 0)
		return API_BAD_REQUEST;
	if ((o = chan_lookup(A.chan, ch, NULL)) == NULL)
		return API_UNKNOWN_CHANNEL;
	chan_pub_history(o, &p);
	p.channel = ch;
	p.data = data;
	p.tags = r->tags.v;
	p.ntags = r->tags.n;
	p.skip_history = r->skip_history;
	p.idempotency_key = r->idempotency_key;
	p.version = r->version;
	p.version_epoch = r->version_epoch;
	p.delta |= r->delta;
	j->pub_channel = ch;
	j->waiting = true;
	node_publish(j->x.w, &p, published, j);
	return API_LATER;
}

static void write_error(struct jw *out, int code)
{
	const char *msg = err_text(code);

	jw_lit(out, "{\"code\":");
	jw_u64(out, (uint64_t)code);
	jw_lit(out, ",\"message\":");
	jw_str(out, msg, strlen(msg));
	jw_lit(out, "}");
}

/* The payload of a publish or broadcast: b64data when set, else data; an
 * empty one is a bad request. */
static int request_payload(struct api_ctx *x, const struct api_req *r, struct pstr *data)
{
	int rc = pick_payload(x, r->data, r->b64data, data);
	if (rc == API_OK && data->n == 0)
		rc = API_BAD_REQUEST;
	return rc;
}

static int exec_publish(struct api_job *j, const struct api_req *r, struct jw *out)
{
	struct pstr data;
	int rc;

	if (j->step > 0)
		return j->rc; /* published */
	if (r->channel.n == 0)
		return API_BAD_REQUEST;
	if ((rc = request_payload(&j->x, r, &data)) != API_OK)
		return rc;
	return publish_to(j, r->channel, data, r);
}

/* One channel a step: step I closes channel I-1's response with what the
 * engine answered and publishes to channel I. */
static int exec_broadcast(struct api_job *j, const struct api_req *r, struct jw *out)
{
	size_t i = j->step;
	int rc;

	if (i == 0) {
		if (r->channels.n == 0)
			return API_BAD_REQUEST;
		if ((rc = request_payload(&j->x, r, &j->data)) != API_OK)
			return rc;
		jw_lit(out, "{\"responses\":[");
	} else {
		if (j->rc != API_OK) {
			out->len = j->item_mark;
			jw_lit(out, "\"error\":");
			write_error(out, j->rc);
		}
		jw_lit(out, "}");
	}
	if (i == r->channels.n) {
		jw_lit(out, "]}");
		return API_OK;
	}
	jw_lit(out, i ? ",{" : "{");
	j->item_mark = out->len;
	jw_lit(out, "\"result\":");
	if ((rc = publish_to(j, r->channels.v[i], j->data, r)) != API_LATER)
		j->rc = rc; /* refused before the engine: on with the next */
	return API_LATER;
}
/* The connections a server-side action is for. Centrifugo lets an empty
 * user stand for anonymous connections; node.h's empty means everyone, so
 * a request naming neither a user nor a client is refused. */
static int target_of(const struct api_req *r, struct node_target *t)
{
	if (r->user.n == 0 && r->client.n == 0)
		return API_BAD_REQUEST;
	t->user = r->user;
	t->client = r->client;
	t->session = r->session;
	return API_OK;
}

static int exec_subscribe(struct api_job *j, const struct api_req *r, struct jw *out)
{
	struct node_target t;
	struct node_sub s = { 0 };
	int rc;

	if (r->channel.n == 0)
		return API_BAD_REQUEST;
	if (chan_lookup(A.chan, r->channel, NULL) == NULL)
		return API_UNKNOWN_CHANNEL;
	if ((rc = target_of(r, &t)) != API_OK)
		return rc;
	if ((rc = pick_payload(&j->x, r->info, r->b64info, &s.info)) != API_OK ||
	    (rc = pick_payload(&j->x, r->data, r->b64data, &s.data)) != API_OK)
		return rc;
	s.channel = r->channel;
	s.expire_at = r->expire_at;
	s.has_since = r->has_since;
	s.since_offset = r->since_offset;
	s.since_epoch = r->since_epoch;
	s.override = r->has_override ? r->override : CHAN_OVERRIDE_NONE;
	if (node_subscribe(j->x.w, &t, &s) != RT_OK) {
		log_error("api: subscribing to %.*s failed", (int)s.channel.n, s.channel.p);
		return API_INTERNAL;
	}
	jw_lit(out, "{}");
	return API_OK;
}

static int exec_unsubscribe(struct api_job *j, const struct api_req *r, struct jw *out)
{
	struct node_target t;
	int rc;

	if (r->channel.n > 0 && chan_lookup(A.chan, r->channel, NULL) == NULL)
		return API_UNKNOWN_CHANNEL;
	if ((rc = target_of(r, &t)) != API_OK)
		return rc;
	if (node_unsubscribe(j->x.w, &t, r->channel) != RT_OK) {
		log_error("api: unsubscribe failed");
		return API_INTERNAL;
	}
	jw_lit(out, "{}");
	return API_OK;
}

static int exec_disconnect(struct api_job *j, const struct api_req *r, struct jw *out)
{
	struct node_target t;
	uint32_t code = 3503;
	struct pstr reason = PSTR("force disconnect");
	int rc;

	if ((rc = target_of(r, &t)) != API_OK)
		return rc;
	if (r->has_disconnect) {
		code = r->code;
		reason = r->reason;
	}
	if (node_disconnect(j->x.w, &t, r->whitelist.v, r->whitelist.n, code, reason) != RT_OK) {
		log_error("api: disconnect failed");
		return API_INTERNAL;
	}
	jw_lit(out, "{}");
	return API_OK;
}

static int exec_refresh(struct api_job *j, const struct api_req *r, struct jw *out)
{
	struct node_target t;
	int rc;

	if ((rc = target_of(r, &t)) != API_OK)
		return rc;
	if (node_refresh(j->x.w, &t, r->expired, r->expire_at, r->info) != RT_OK) {
		log_error("api: refresh failed");
		return API_INTERNAL;
	}
	jw_lit(out, "{}");
	return API_OK;
}

static void presence_stats_done(void *arg, int rc, uint32_t nc, uint32_t nu)
{
	struct api_job *j = arg;

	if (job_gone(j))
		return;
	if (rc != RT_OK) {
		job_resume(j, API_INTERNAL);
		return;
	}
	jw_lit(&j->out, "{\"num_clients\":");
	jw_u64(&j->out, nc);
	jw_lit(&j->out, ",\"num_users\":");
	jw_u64(&j->out, nu);
	jw_lit(&j->out, "}");
	job_resume(j, API_OK);
}

static void presence_done(void *arg, int rc, const struct node_presence *p)
{
	struct api_job *j = arg;

	if (job_gone(j))
		return;
	if (rc != RT_OK || proto_presence_result(&j->out, p->v, p->n) != RT_OK)
		job_resume(j, API_INTERNAL);
	else
		job_resume(j, API_OK);
}

/* presence, presence_stats: who is subscribed to a channel with presence. */
static int exec_presence(struct api_job *j, const struct api_req *r, bool stats)
{
	const struct chan_opts *o;

	if (j->step > 0)
		return j->rc; /* presence_done, presence_stats_done */
	if (r->channel.n == 0)
		return API_BAD_REQUEST;
	if ((o = chan_lookup(A.chan, r->channel, NULL)) == NULL)
		return API_UNKNOWN_CHANNEL;
	if (!o->presence)
		return API_NOT_AVAILABLE;
	j->waiting = true;
	if (stats)
		node_presence_stats(j->x.w, r->channel, presence_stats_done, j);
	else
		node_presence(j->x.w, r->channel, presence_done, j);
	return API_LATER;
}

static int exec_presence_list(struct api_job *j, const struct api_req *r, struct jw *out)
{
	return exec_presence(j, r, false);
}

static int exec_presence_stats(struct api_job *j, const struct api_req *r, struct jw *out)
{
	return exec_presence(j, r, true);
}

static void history_done(void *arg, int rc, const struct node_history *h)
{
	struct api_job *j = arg;

	if (job_gone(j))
		return;
	if (rc != RT_OK)
		job_resume(j, API_INTERNAL); /* reverse with since.offset 0 included, as the core maps it */
	else if (h->epoch_mismatch)
		job_resume(j, API_UNRECOVERABLE);
	else if (proto_history_result(&j->out, h->v, h->n, pstr_c(h->epoch), h->top) != RT_OK)
		job_resume(j, API_INTERNAL);
	else
		job_resume(j, API_OK);
}

/* history: as centrifuge core reads it (server-api.md 1.4); the
 * client's 300 cap does not apply to the API. */
static int exec_history(struct api_job *j, const struct api_req *r, struct jw *out)
{
	const struct chan_opts *o;
	char epoch[64] = "";

	if (j->step > 0)
		return j->rc; /* history_done */
	if (r->channel.n == 0)
		return API_BAD_REQUEST;
	if ((o = chan_lookup(A.chan, r->channel, NULL)) == NULL)
		return API_UNKNOWN_CHANNEL;
	if (!chan_has_history(o))
		return API_NOT_AVAILABLE;
	if (!node_history_fits(j->x.w, r->channel))
		return API_BAD_REQUEST;
	if (!pstr_copy(epoch, sizeof(epoch), r->since_epoch))
		return API_UNRECOVERABLE; /* no epoch is that long */
	struct hist_query q = {
		.limit = r->limit, .reverse = r->reverse, .has_since = r->has_since,
		.since_offset = r->since_offset, .since_epoch = epoch,
		.meta_ttl_ms = (uint64_t)o->history_meta_ttl_ms,
	};
	j->waiting = true;
	node_history(j->x.w, r->channel, &q, history_done, j);
	return API_LATER;
}

static void history_removed(void *arg, int rc)
{
	struct api_job *j = arg;

	if (job_gone(j))
		return;
	if (rc == RT_OK)
		jw_lit(&j->out, "{}");
	job_resume(j, rc == RT_OK ? API_OK : API_INTERNAL);
}

/* history_remove: drops the publications, keeps the stream's position. */
static int exec_history_remove(struct api_job *j, const struct api_req *r, struct jw *out)
{
	const struct chan_opts *o;

	if (j->step > 0)
		return j->rc; /* history_removed */
	if (r->channel.n == 0)
		return API_BAD_REQUEST;
	if ((o = chan_lookup(A.chan, r->channel, NULL)) == NULL)
		return API_UNKNOWN_CHANNEL;
	if (!chan_has_history(o))
		return API_NOT_AVAILABLE;
	if (!node_history_fits(j->x.w, r->channel))
		return API_BAD_REQUEST;
	j->waiting = true;
	node_history_remove(j->x.w, r->channel, history_removed, j);
	return API_LATER;
}

struct chan_count {
	struct pstr name;
	uint32_t num_clients;
};

struct channels_acc {
	struct api_ctx *x;
	struct chan_glob *glob;
	struct chan_count *v;
	size_t n, cap;
};

static void channels_cb(void *arg, struct pstr channel, uint32_t num_clients)
{
	struct channels_acc *a = arg;
	char *copy;

	if (num_clients == 0 || (a->glob && !chan_glob_match(a->glob, channel)))
		return;
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 64;
		a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
	}
	copy = arena_alloc(&a->x->ar, channel.n);
	if (channel.n)
		memcpy(copy, channel.p, channel.n);
	a->v[a->n++] = (struct chan_count){ { copy, channel.n }, num_clients };
}

/* Byte order, as Go sorts map keys when it writes JSON. */
static int count_cmp(const void *pa, const void *pb)
{
	const struct chan_count *a = pa, *b = pb;
	size_t n = a->name.n < b->name.n ? a->name.n : b->name.n;
	int c = n ? memcmp(a->name.p, b->name.p, n) : 0;

	if (c != 0)
		return c;
	return a->name.n < b->name.n ? -1 : a->name.n > b->name.n;
}

static void channels_free(struct channels_acc *a)
{
	if (a == NULL)
		return;
	chan_glob_free(a->glob);
	free(a->v);
	free(a);
}

static void channels_others(void *arg, struct pstr channel, uint32_t num_clients)
{
	struct api_job *j = arg;
	if (j->req)
		channels_cb(j->chans, channel, num_clients);
}

static void channels_done(void *arg, int rc)
{
	struct api_job *j = arg;
	if (job_gone(j))
		return;
	if (rc != RT_OK)
		log_error("api: listing the other nodes' channels failed");
	job_resume(j, rc == RT_OK ? API_OK : API_INTERNAL);
}

/* Step 0 lists this node's channels and asks the others (channels_done);
 * step 1 merges: a channel several nodes hold once, with the sum of their
 * counts. */
static int exec_channels(struct api_job *j, const struct api_req *r, struct jw *out)
{
	struct channels_acc *a;
	int rc = j->rc;

	if (j->step == 0) {
		a = j->chans = xcalloc(1, sizeof(*a));
		a->x = &j->x;
		/* Centrifugo's survey answers "invalid request" for a pattern
		 * that does not compile, which its API reports as an internal
		 * error. */
		if (r->pattern.n > 0 && (a->glob = chan_glob_new(r->pattern.p, r->pattern.n)) == NULL) {
			rc = API_INTERNAL;
			goto done;
		}
		if (node_channels(j->x.w, channels_cb, a) != RT_OK) {
			log_error("api: listing channels failed");
			rc = API_INTERNAL;
			goto done;
		}
		j->waiting = true;
		node_channels_others(j->x.w, r->pattern, channels_others, channels_done, j);
		return API_LATER;
	}
	a = j->chans;
	if (rc != API_OK)
		goto done;
	if (a->n > 1)
		qsort(a->v, a->n, sizeof(*a->v), count_cmp);
	jw_lit(out, "{\"channels\":{");
	for (size_t i = 0, k = 0; i < a->n; i = k) {
		uint64_t sum = 0;
		for (k = i; k < a->n && count_cmp(&a->v[i], &a->v[k]) == 0; k++)
			sum += a->v[k].num_clients;
		if (i)
			jw_lit(out, ",");
		jw_str(out, a->v[i].name.p, a->v[i].name.n);
		jw_lit(out, ":{\"num_clients\":");
		jw_u64(out, sum > UINT32_MAX ? UINT32_MAX : sum);
		jw_lit(out, "}");
	}
	jw_lit(out, "}}");
done:
	channels_free(j->chans);
	j->chans = NULL;
	return rc;
}

static void write_kv_u64(struct jw *out, const char *key, uint64_t v)
{
	jw_lit(out, ",\"");
	jw_lit(out, key);
	jw_lit(out, "\":");
	jw_u64(out, v);
}

static void write_node(struct jw *out, const struct node_info *ni)
{
	const char *name = ni->name ? ni->name : "", *version = ni->version ? ni->version : "";
	jw_lit(out, "{\"uid\":");
	jw_str(out, ni->uid, strnlen(ni->uid, sizeof(ni->uid)));
	jw_lit(out, ",\"name\":");
	jw_str(out, name, strlen(name));
	jw_lit(out, ",\"version\":");
	jw_str(out, version, strlen(version));
	write_kv_u64(out, "num_clients", ni->num_clients);
	write_kv_u64(out, "num_users", ni->num_users);
	write_kv_u64(out, "num_channels", ni->num_channels);
	if (ni->uptime > 0)
		write_kv_u64(out, "uptime", (uint64_t)ni->uptime);
	write_kv_u64(out, "num_subs", ni->num_subs);
	jw_lit(out, "}");
}

static void write_peer(void *arg, const struct node_info *ni)
{
	struct jw *out = arg;
	jw_lit(out, ",");
	write_node(out, ni);
}

/* This node, then the others the engine knows of (Redis). */
static int exec_info(struct api_job *j, const struct api_req *r, struct jw *out)
{
	struct node_info ni;

	memset(&ni, 0, sizeof(ni));
	if (node_info(j->x.w, &ni) != RT_OK) {
		log_error("api: node info failed");
		return API_INTERNAL;
	}
	jw_lit(out, "{\"nodes\":[");
	write_node(out, &ni);
	node_peers(j->x.w, write_peer, out);
	jw_lit(out, "]}");
	return API_OK;
}

/* OSS Centrifugo registers no server-side RPC methods. */
static int exec_rpc(struct api_job *j, const struct api_req *r, struct jw *out)
{
	return r->method.n == 0 ? API_BAD_REQUEST : API_NOT_FOUND;
}

struct method {
	const char *name;           /* path segment and batch field */
	int legacy;                 /* the legacy enum value */
	const struct field *fields;
	exec_fn exec;
};

/* In the order Centrifugo's batch looks for a command's method. */
static const struct method methods[] = {
	{ "publish", 0, publish_fields, exec_publish },
	{ "broadcast", 1, broadcast_fields, exec_broadcast },
	{ "subscribe", 11, subscribe_fields, exec_subscribe },
	{ "unsubscribe", 2, unsubscribe_fields, exec_unsubscribe },
	{ "disconnect", 3, disconnect_req_fields, exec_disconnect },
	{ "history", 6, history_fields, exec_history },
	{ "history_remove", 7, channel_fields, exec_history_remove },
	{ "presence", 4, channel_fields, exec_presence_list },
	{ "presence_stats", 5, channel_fields, exec_presence_stats },
	{ "info", 9, no_fields, exec_info },
	{ "rpc", 10, rpc_fields, exec_rpc },
	{ "refresh", 12, refresh_fields, exec_refresh },
	{ "channels", 8, channels_fields, exec_channels },
};
_Static_assert(ROTOR_ARRAY_LEN(methods) < STATS_API_METHODS, "stats.h counts every method, and unknown ones");

const char *api_method_name(size_t i)
{
	return i < ROTOR_ARRAY_LEN(methods) ? methods[i].name : "unknown";
}


/* ---- running a job ------------------------------------------------------ */

static void bad_request(struct http_req *req);
static bool transport_mode(const struct http_req *req);

static struct api_job *job_new(struct http_req *req, enum job_kind kind)
{
	struct api_job *j = xmalloc(sizeof(*j));

	*j = (struct api_job){ .req = req, .kind = kind, .x = { .w = A.w } };
	return j;
}

static void job_free(struct api_job *j)
{
	channels_free(j->chans);
	jw_free(&j->out);
	js_free(&j->d);
	arena_free(&j->x.ar);
	free(j->cmds);
	free(j);
}

/* A new command at the end of J's, its request empty. */
static struct api_cmd *job_cmd_add(struct api_job *j)
{
	struct api_cmd *c;

	if (j->ncmds == j->cmds_cap) {
		j->cmds_cap = j->cmds_cap ? 2 * j->cmds_cap : 4;
		j->cmds = xrealloc(j->cmds, j->cmds_cap * sizeof(*j->cmds));
	}
	c = &j->cmds[j->ncmds++];
	*c = (struct api_cmd){ .rc = API_OK };
	req_init(&c->r);
	return c;
}

/* The connection closed before the job answered (http_req_on_abort): the
 * engine call outstanding (job_gone), or job_run, frees the job. */
static void job_abort(void *arg)
{
	struct api_job *j = arg;

	assert(j->running || j->waiting);
	j->req = NULL;
}

/* Opens command C's reply in OUT up to where its result goes. */
static void cmd_open(struct api_job *j, const struct api_cmd *c)
{
	struct jw *out = &j->out;

	switch (j->kind) {
	case JOB_METHOD:
		jw_lit(out, "{\"result\":");
		j->mark = out->len;
		break;
	case JOB_BATCH:
		jw_lit(out, j->next ? ",{" : "{\"replies\":[{");
		j->mark = out->len;
		if (c->m) {
			jw_lit(out, "\"");
			jw_lit(out, c->m->name);
			jw_lit(out, "\":");
		}
		break;
	case JOB_LEGACY:
		jw_lit(out, j->next ? "\n{" : "{");
		if (c->id) {
			jw_lit(out, "\"id\":");
			jw_u64(out, c->id);
			jw_lit(out, ",");
		}
		j->mark = out->len;
		jw_lit(out, "\"result\":");
		break;
	}
}

/* Closes the reply of the command that ended with RC: an error replaces
 * what it wrote (a method request's is written by job_answer). */
static void cmd_close(struct api_job *j, int rc)
{
	struct jw *out = &j->out;

	if (j->kind == JOB_METHOD) {
		j->method_rc = rc;
		if (rc == API_OK)
			jw_lit(out, "}");
		return;
	}
	if (rc != API_OK) {
		out->len = j->mark;
		jw_lit(out, "\"error\":");
		write_error(out, rc);
	}
	jw_lit(out, "}");
}

/* Every command is done: answers the request. */
static void job_answer(struct api_job *j)
{
	struct http_req *req = j->req;
	struct jw *out = &j->out;
	int rc = j->method_rc;

	/* Answered, the request is gone even if the connection is closing. */
	http_req_on_abort(req, NULL, NULL);
	switch (j->kind) {
	case JOB_METHOD:
		if (rc == API_OK) {
			http_respond(req, 200, "application/json", out->buf, out->len);
		} else if (transport_mode(req)) {
			out->len = 0;
			write_error(out, rc);
			http_respond(req, err_status(rc), "application/json", out->buf, out->len);
		} else {
			out->len = 0;
			jw_lit(out, "{\"error\":");
			write_error(out, rc);
			jw_lit(out, "}");
			http_respond(req, 200, "application/json", out->buf, out->len);
		}
		break;
	case JOB_BATCH:
		jw_lit(out, j->ncmds ? "]}" : "{}");
		http_respond(req, 200, "application/json", out->buf, out->len);
		break;
	case JOB_LEGACY:
		if (j->bad) {
			/* Commands before the bad one have run, as in Centrifugo. */
			log_debug("api: undecodable legacy command stream");
			bad_request(req);
		} else {
			/* nosniff: the admin UI's browser reads this answer too. */
			http_respond_hdrs(req, 200, "application/json", "X-Content-Type-Options: nosniff\r\n",
					  out->buf ? out->buf : "", out->len);
		}
		break;
	}
}

/* Counts command C of J, which ended with RC: its duration since it
 * started (engine waits included) and whether it failed. */
static void count_cmd(struct api_job *j, const struct api_cmd *c, int rc)
{
	struct stats_block *b = j->x.w->ctr;
	size_t m = c->m ? (size_t)(c->m - methods) : STATS_API_METHODS - 1;

	if (b == NULL)
		return;
	stats_observe(&b->n.api[m], (uint64_t)(util_mono_ns() - j->cmd_start_ns));
	if (rc != API_OK)
		STATS_BUMP(b, n.api_err[m], 1);
}

/* Runs J's commands in order from where it stands, until one waits for
 * the engine (its callback resumes the job) or all are done: then answers
 * and frees J. Frees J without answering once the connection is gone. */
static void job_run(struct api_job *j)
{
	j->running = true;
	while (j->req && !j->waiting && j->next < j->ncmds) {
		const struct api_cmd *c = &j->cmds[j->next];
		int rc = c->rc;

		if (j->step == 0) {
			j->cmd_start_ns = util_mono_ns();
			cmd_open(j, c);
		}
		if (rc == API_OK && c->m)
			rc = c->m->exec(j, &c->r, &j->out);
		if (rc == API_LATER) {
			j->step++;
			continue;
		}
		cmd_close(j, rc);
		count_cmd(j, c, rc);
		j->next++;
		j->step = 0;
	}
	j->running = false;
	if (j->waiting)
		return;
	if (j->req)
		job_answer(j);
	job_free(j);
}

/* Runs J, which holds its decoded commands, for its request. */
static void job_start(struct api_job *j)
{
	http_req_on_abort(j->req, job_abort, j);
	job_run(j);
}

/* ---- auth --------------------------------------------------------------- */

static bool key_eq(const char *key, size_t klen, const char *s, size_t n)
{
	return n == klen && CRYPTO_memcmp(key, s, n) == 0;
}

/* Whether the first api_key parameter of QUERY (as Go's URL.Query().Get
 * finds it) is the key. */
static bool query_key_ok(const char *query, const char *key, size_t klen)
{
	size_t qlen = strlen(query);
	char *buf = xmalloc(qlen + 1);
	bool ok = false;

	for (const char *p = query; *p;) {
		size_t len = strcspn(p, "&");
		const char *eq = memchr(p, '=', len);
		size_t klen_raw = eq ? (size_t)(eq - p) : len;
		ssize_t kn, vn;

		if (memchr(p, ';', len) == NULL && (kn = util_unescape(p, klen_raw, buf, true)) >= 0 &&
		    (size_t)kn == 7 && memcmp(buf, "api_key", 7) == 0) {
			const char *val = eq ? eq + 1 : p + len;
			size_t vlen = eq ? len - klen_raw - 1 : 0;

			if ((vn = util_unescape(val, vlen, buf, true)) >= 0) {
				ok = key_eq(key, klen, buf, (size_t)vn);
				break;
			}
		}
		p += len;
		if (*p == '&')
			p++;
	}
	free(buf);
	return ok;
}

/* "apikey KEY" (http_auth_credentials). */
static bool authorization_ok(const char *h, const char *key, size_t klen)
{
	const char *cred;
	size_t n;

	return http_auth_credentials(h, "apikey", &cred, &n) && key_eq(key, klen, cred, n);
}

/* Centrifugo's APIKeyAuth: X-API-Key when sent decides for the headers,
 * else Authorization; then ?api_key= if still not allowed. */
static bool authorized(const struct http_req *req)
{
	const struct conf *c = A.w->conf;
	const char *key = c->api_key ? c->api_key : "", *h;
	size_t klen = strlen(key);
	bool ok = false;

	if (c->api_insecure)
		return true;
	if (klen == 0) {
		if (!A.empty_key_logged)
			log_error("http_api.key is empty: every API request is refused (401)");
		A.empty_key_logged = true;
		return false;
	}
	if ((h = http_req_header(req, "X-API-Key")) != NULL && *h)
		ok = key_eq(key, klen, h, strlen(h));
	else if ((h = http_req_header(req, "Authorization")) != NULL && *h)
		ok = authorization_ok(h, key, klen);
	if (!ok && req->query && *req->query)
		ok = query_key_ok(req->query, key, klen);
	return ok;
}

/* POST only, then the key. Answers and returns false when refused. */
static bool admit(struct http_req *req)
{
	if (req->method != HTTP_POST) {
		/* Centrifugo's 405 has an empty body; RFC 9110 wants Allow too. */
		http_respond_hdrs(req, 405, NULL, "Allow: POST\r\n", NULL, 0);
		return false;
	}
	if (!authorized(req)) {
		http_respond(req, 401, NULL, NULL, 0);
		return false;
	}
	return true;
}

static void bad_request(struct http_req *req)
{
	static const char body[] = "Bad Request\n";

	http_respond_hdrs(req, 400, "text/plain; charset=utf-8", "X-Content-Type-Options: nosniff\r\n",
			  body, sizeof(body) - 1);
}

static bool transport_mode(const struct http_req *req)
{
	const char *h = http_req_header(req, "X-Centrifugo-Error-Mode");

	return A.transport || (h && strcmp(h, "transport") == 0);
}

/* Scans the whole body as one JSON value (any depth Go would take). */
static int scan_body(struct js_doc *d, const struct http_req *req)
{
	d->depth_limit = JS_DEPTH_MAX;
	return js_scan(d, req->body ? req->body : "", req->body_len, 0);
}

/* ---- POST <prefix>/<method> --------------------------------------------- */

static void handle_method(struct http_req *req, void *arg)
{
	const struct method *m = arg;
	struct api_job *j;
	struct api_cmd *c;

	if (!admit(req))
		return;
	j = job_new(req, JOB_METHOD);
	c = job_cmd_add(j);
	c->m = m;
	if (scan_body(&j->d, req) != RT_OK || decode_req(&j->x, &j->d, 0, m->fields, &c->r) != RT_OK) {
		log_debug("api %s: undecodable request body", m->name);
		bad_request(req);
		job_free(j);
		return;
	}
	job_start(j);
}

/* ---- POST <prefix>/batch ------------------------------------------------ */

/* The method fields of a batch Command; `off` indexes methods[]. */
static const struct field command_fields[] = {
	{ "publish", F_OBJ, 0, NULL, 0 }, { "broadcast", F_OBJ, 1, NULL, 0 },
	{ "subscribe", F_OBJ, 2, NULL, 0 }, { "unsubscribe", F_OBJ, 3, NULL, 0 },
	{ "disconnect", F_OBJ, 4, NULL, 0 }, { "history", F_OBJ, 5, NULL, 0 },
	{ "history_remove", F_OBJ, 6, NULL, 0 }, { "presence", F_OBJ, 7, NULL, 0 },
	{ "presence_stats", F_OBJ, 8, NULL, 0 }, { "info", F_OBJ, 9, NULL, 0 },
	{ "rpc", F_OBJ, 10, NULL, 0 }, { "refresh", F_OBJ, 11, NULL, 0 },
	{ "channels", F_OBJ, 12, NULL, 0 }, END,
};

/* BatchRequest; `off` tells them apart. */
static const struct field batch_fields[] = {
	{ "commands", F_RAW, 0, NULL, 0 }, { "parallel", F_BOOL, 1, NULL, 0 }, END,
};

/* Decodes one Command: every method field present must decode (as Go
 * decodes the whole struct); the first in methods[] order is the one run,
 * none is 104. */
static int decode_command(struct api_ctx *x, const struct js_doc *d, uint32_t v, struct api_cmd *c)
{
	uint32_t it = 0, k, val;
	struct api_req scratch;
	bool set[ROTOR_ARRAY_LEN(methods)] = { false };
	uint32_t tok[ROTOR_ARRAY_LEN(methods)] = { 0 };

	c->m = NULL;
	c->rc = API_NOT_FOUND;
	if (js_type(d, v) == JS_NULL)
		return RT_OK;
	if (js_type(d, v) != JS_OBJECT)
		return RT_INVAL;
	while (js_next_member(d, v, &it, &k, &val)) {
		const struct field *f = field_find(d, k, command_fields);
		size_t i;

		if (f == NULL)
			continue;
		i = f->off;
		if (js_type(d, val) == JS_NULL) {
			set[i] = false;
			continue;
		}
		if (decode_req(x, d, val, methods[i].fields, &scratch) != RT_OK)
			return RT_INVAL;
		set[i] = true;
		tok[i] = val;
	}
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(methods); i++) {
		if (set[i]) {
			c->m = &methods[i];
			c->rc = API_OK;
			return decode_req(x, d, tok[i], methods[i].fields, &c->r);
		}
	}
	return RT_OK;
}

static void handle_batch(struct http_req *req, void *arg)
{
	struct api_job *j;
	struct js_doc *d;
	uint32_t it = 0, k, v, cv;
	int64_t commands = -1;

	if (!admit(req))
		return;
	j = job_new(req, JOB_BATCH);
	d = &j->d;
	if (scan_body(d, req) != RT_OK || (js_type(d, 0) != JS_OBJECT && js_type(d, 0) != JS_NULL))
		goto bad;
	while (js_next_member(d, 0, &it, &k, &v)) {
		const struct field *f = field_find(d, k, batch_fields);
		bool parallel;

		if (f == NULL)
			continue;
		if (f->off == 1) {
			if (js_type(d, v) != JS_NULL && js_bool(d, v, &parallel) != RT_OK)
				goto bad;
		} else if (js_type(d, v) == JS_NULL) {
			commands = -1;
		} else if (js_type(d, v) == JS_ARRAY) {
			commands = v;
		} else {
			goto bad;
		}
	}
	if (commands >= 0) {
		uint32_t ci = 0;

		while (js_next_elem(d, (uint32_t)commands, &ci, &cv))
			if (decode_command(&j->x, d, cv, job_cmd_add(j)) != RT_OK)
				goto bad;
	}
	/* parallel: run in order all the same; the replies are what matters. */
	job_start(j);
	return;
bad:
	log_debug("api batch: undecodable request body");
	bad_request(req);
	job_free(j);
}

/* ---- POST <prefix>: the legacy command stream --------------------------- */

/* Every name of Centrifugo's legacy method enum, PRO ones included (those
 * are known names that OSS answers with 104). */
static const char *const legacy_names[] = {
	"PUBLISH", "BROADCAST", "UNSUBSCRIBE", "DISCONNECT", "PRESENCE", "PRESENCE_STATS", "HISTORY",
	"HISTORY_REMOVE", "CHANNELS", "INFO", "RPC", "SUBSCRIBE", "REFRESH", NULL, "CONNECTIONS",
	"UPDATE_USER_STATUS", "GET_USER_STATUS", "DELETE_USER_STATUS", "BLOCK_USER", "UNBLOCK_USER",
	"REVOKE_TOKEN", "INVALIDATE_USER_TOKENS", "DEVICE_REGISTER", "DEVICE_UPDATE", "DEVICE_REMOVE",
	"DEVICE_LIST", "DEVICE_TOPIC_LIST", "DEVICE_TOPIC_UPDATE", "USER_TOPIC_LIST", "USER_TOPIC_UPDATE",
	"SEND_PUSH_NOTIFICATION", "UPDATE_PUSH_STATUS", "CANCEL_PUSH",
};

/* The method value token V names, as Centrifugo's CommandMethodType
 * decodes it: a known name between quotes (any case; the raw bytes, no
 * unescaping), else the raw text as a decimal integer (Go's Atoi), cast to
 * int32. RT_INVAL for anything else, which fails the whole request. */
static int legacy_method(const struct js_doc *d, uint32_t v, int32_t *out)
{
	const char *raw = js_raw(d, v);
	size_t n = js_rawlen(d, v);
	char up[32];
	uint64_t mag = 0;
	size_t i = 0;
	bool neg = false;

	if (n > 2 && n - 2 < sizeof(up)) {
		for (size_t j = 0; j < n - 2; j++) {
			char c = raw[j + 1];
			up[j] = c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
		}
		up[n - 2] = '\0';
		for (size_t j = 0; j < ROTOR_ARRAY_LEN(legacy_names); j++) {
			if (legacy_names[j] && strcmp(up, legacy_names[j]) == 0) {
				*out = (int32_t)j;
				return RT_OK;
			}
		}
	}
	if (n > 0 && (raw[0] == '-' || raw[0] == '+')) {
		neg = raw[0] == '-';
		i = 1;
	}
	if (i == n)
		return RT_INVAL;
	for (; i < n; i++) {
		unsigned dg = (unsigned)(raw[i] - '0');

		if (dg > 9 || mag > (UINT64_MAX - dg) / 10)
			return RT_INVAL;
		mag = mag * 10 + dg;
	}
	if (mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
		return RT_INVAL;
	/* Go converts the int to the int32 enum, keeping the low 32 bits. */
	*out = (int32_t)(uint32_t)(neg ? 0 - mag : mag);
	return RT_OK;
}

/* The end of the JSON value that starts at S[*POS] (after whitespace):
 * sets *START and *END and returns 1; 0 at the end of S; -1 when no value
 * can end there. The value itself is validated by js_scan afterwards. */
static int next_value(const char *s, size_t n, size_t *pos, size_t *start, size_t *end)
{
	size_t i = *pos;
	int depth = 0;
	bool in_str = false;

	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	if (i == n) {
		*pos = i;
		return 0;
	}
	*start = i;
	if (s[i] == '{' || s[i] == '[' || s[i] == '"') {
		for (; i < n; i++) {
			char c = s[i];

			if (in_str) {
				if (c == '\\')
					i++;
				else if (c == '"')
					in_str = false;
				else
					continue;
				if (in_str || depth > 0)
					continue;
				i++;
				break;
			}
			if (c == '"')
				in_str = true;
			else if (c == '{' || c == '[')
				depth++;
			else if (c == '}' || c == ']') {
				if (--depth == 0) {
					i++;
					break;
				}
				if (depth < 0)
					return -1;
			}
		}
		if (in_str || depth != 0)
			return -1;
	} else {
		while (i < n && (strchr("+-.eE", s[i]) || (s[i] >= '0' && s[i] <= '9') ||
				 (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
			i++;
		if (i == *start)
			return -1;
	}
	*end = *pos = i;
	return 1;
}

/* Decodes the legacy stream into J's commands, up to the end or the first
 * value that does not decode (J's BAD). */
static void decode_legacy(struct api_job *j, const struct http_req *req)
{
	static const struct field cmd_fields[] = {
		{ "id", F_U32, 0, NULL, 0 }, { "method", F_RAW, 1, NULL, 0 },
		{ "params", F_RAW, 2, NULL, 0 }, END,
	};
	struct js_doc *d = &j->d;
	size_t pos = 0, start = 0, end = 0;
	int more;

	d->depth_limit = JS_DEPTH_MAX;
	/* Each value is scanned into D again: what a command keeps points into
	 * the body or the arena, not D. */
	while ((more = next_value(req->body, req->body_len, &pos, &start, &end)) > 0) {
		uint32_t it = 0, k, v, id = 0;
		int32_t method = 0;
		int64_t params = -1;
		const struct method *m = NULL;
		struct api_cmd *c;

		if (js_scan(d, req->body + start, end - start, 0) != RT_OK ||
		    (js_type(d, 0) != JS_OBJECT && js_type(d, 0) != JS_NULL))
			goto bad;
		while (js_next_member(d, 0, &it, &k, &v)) {
			const struct field *f = field_find(d, k, cmd_fields);
			uint64_t u;

			if (f == NULL)
				continue;
			if (f->off == 0) {
				if (js_type(d, v) == JS_NULL)
					continue;
				if (js_uint64(d, v, &u) != RT_OK || u > UINT32_MAX)
					goto bad;
				id = (uint32_t)u;
			} else if (f->off == 1) {
				if (legacy_method(d, v, &method) != RT_OK)
					goto bad;
			} else {
				params = v;
			}
		}
		for (size_t i = 0; i < ROTOR_ARRAY_LEN(methods); i++)
			if (methods[i].legacy == method)
				m = &methods[i];
		c = job_cmd_add(j);
		c->id = id;
		if (m == NULL)
			c->rc = API_NOT_FOUND;
		else if (m->exec == exec_info)
			c->m = m; /* info ignores its params */
		else if (params < 0 || decode_req(&j->x, d, (uint32_t)params, m->fields, &c->r) != RT_OK)
			c->rc = API_BAD_REQUEST; /* absent params do not decode either */
		else
			c->m = m;
	}
	if (more == 0)
		return;
bad:
	j->bad = true;
}

void api_serve_legacy(struct http_req *req)
{
	struct api_job *j;

	if (A.w->draining) {
		http_respond(req, 503, NULL, NULL, 0);
		return;
	}
	if (req->body_len == 0) {
		bad_request(req);
		return;
	}
	j = job_new(req, JOB_LEGACY);
	decode_legacy(j, req);
	job_start(j);
}

static void handle_legacy(struct http_req *req, void *arg)
{
	if (admit(req))
		api_serve_legacy(req);
}

/* ---- routes ------------------------------------------------------------- */

static void route(const char *path, http_handler_fn fn, void *arg)
{
	if (http_route_add(path, A.route_flags, HTTP_METHODS_ANY, fn, arg) != RT_OK) {
		log_warn("http_api: %s is taken by another handler", path);
		return;
	}
	A.paths = xrealloc(A.paths, (A.npaths + 1) * sizeof(*A.paths));
	A.paths[A.npaths++] = xstrdup(path);
}

static void routes_remove(void)
{
	for (size_t i = 0; i < A.npaths; i++) {
		http_route_remove(A.paths[i], A.route_flags);
		free(A.paths[i]);
	}
	free(A.paths);
	A.paths = NULL;
	A.npaths = 0;
}

/* The routes of W's config: the prefix without trailing '/', "/" when that
 * leaves nothing (the methods then sit at the root). */
static void routes_add(const struct conf *c)
{
	const json_t *disabled = conf_get(c, "http_api.disabled");
	const char *cp = c->api_prefix ? c->api_prefix : "/api";
	size_t len = strlen(cp);
	char *prefix;

	if (json_is_true(disabled))
		return;
	/* An internal endpoint, unless http_api.external puts it beside the
	 * client endpoints (which only matters with an internal listener). */
	A.route_flags = HTTP_ROUTE_EXACT |
		(json_is_true(conf_get(c, "http_api.external")) ? 0 : HTTP_ROUTE_INTERNAL);
	while (len > 0 && cp[len - 1] == '/')
		len--;
	prefix = len ? xstrndup(cp, len) : xstrdup("/");
	route(prefix, handle_legacy, NULL);
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(methods); i++) {
		char *path = xasprintf("%s/%s", len ? prefix : "", methods[i].name);
		route(path, handle_method, (void *)&methods[i]);
		free(path);
	}
	{
		char *path = xasprintf("%s/batch", len ? prefix : "");
		route(path, handle_batch, NULL);
		free(path);
	}
	free(prefix);
}

static void settings(const struct conf *c)
{
	const char *mode = json_string_value(conf_get(c, "http_api.error_mode"));

	A.transport = mode && strcmp(mode, "transport") == 0;
	A.empty_key_logged = false;
	chan_cfg_free(A.chan);
	A.chan = chan_cfg_new(c);
}

void api_init(struct worker *w)
{
	A.w = w;
	settings(w->conf);
	routes_add(w->conf);
}

void api_reconfigure(struct worker *w)
{
	A.w = w;
	settings(w->conf);
	routes_remove();
	routes_add(w->conf);
}

void api_free(void)
{
	routes_remove();
	chan_cfg_free(A.chan);
	A.chan = NULL;
	A.w = NULL;
}
