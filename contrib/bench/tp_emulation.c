/*
 * tp_emulation.c - the emulation transports (tp.h; client-protocol.md
 * §8.2-8.4): http_stream (POST /connection/http_stream with the connect
 * command as the body; the response streams newline-terminated JSON
 * replies, or varint-delimited protobuf ones with Content-Type
 * application/octet-stream) and sse (GET /connection/sse?cf_connect=<the
 * connect command, URL-encoded>; the response is text/event-stream, one
 * "data: <reply>" line per event, JSON only). Everything sent after the
 * connect, the first frame's subscriptions and every pong, goes through
 * POST /emulation {"node","session","data"} on the process's POST pool
 * (hpool.h), once the connect reply has named the session; meanwhile, and
 * while a POST is queued or in flight, it gathers in the pool's buffer of
 * the connection and goes with the next POST.
 *
 * Reading: the stream reader (hsr.c) hands over the body without its
 * chunking. http_stream's whole messages go up in one call per piece of
 * body, as a WebSocket message would; SSE's in one call per event, each
 * event's data line being one reply (rotor writes one per event, and a
 * reply never holds a raw newline). The session and node are looked for
 * only until found, in the first reply.
 */
#include "tp.h"
#include "cfp.h"
#include "hpool.h"
#include "hsr.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_MAX 64               /* session and node ids (rotor's: 36 characters) */

struct emu {
	struct tp_conn c;       /* first */
	struct hsr r;
	struct hpool_req post;  /* and the commands waiting for it */
	uint8_t *first;         /* the connect command, until the request is written */
	uint32_t flen;
	bool session_known;
	char session[ID_MAX], node[ID_MAX];
};

#define OF(p, m) ((struct emu *)((char *)(p) - offsetof(struct emu, m)))

extern const struct tp_kind tp_sse;

static struct {
	struct sockaddr_in dst;
	char host[160];
	uint8_t *buf;           /* request and POST bodies */
	size_t cap;
} E;

static uint8_t *scratch(size_t n)
{
	if (n > E.cap) {
		E.buf = realloc(E.buf, n);
		if (E.buf == NULL)
			abort();
		E.cap = n;
	}
	return E.buf;
}

static void setup(const struct tp_env *env)
{
	E.dst = env->dst;
	snprintf(E.host, sizeof(E.host), "%s", env->host);
	hpool_setup(env->post_conns, env->post_depth, env->k0);
}

static bool is_sse(const struct emu *x)
{
	return x->c.kind == &tp_sse;
}

static void emu_close(struct tp_conn *c)
{
	struct emu *x = (struct emu *)c;
	hsr_close(&x->r);
	hpool_cancel(&x->post);
	free(x->first);
	x->first = NULL;
	x->flen = 0;
	x->session_known = false;
}

static void end(struct emu *x, enum tp_end why, int detail)
{
	emu_close(&x->c);
	x->c.ops->on_end(&x->c, why, detail);
}

/* ---- sending --------------------------------------------------------------- */

static int post(struct hpool_req *r, struct hcli *h)
{
	struct emu *x = OF(r, post);
	uint8_t *b = scratch(CFP_EMULATION_MAX(r->len));
	size_t n = cfp_emulation(b, CFP_EMULATION_MAX(r->len), x->c.protobuf, x->node, x->session, r->buf, r->len);
	return hcli_post(h, "/emulation", x->c.protobuf ? "application/octet-stream" : NULL, b, n);
}

static void post_failed(struct hpool_req *r, int status)
{
	end(OF(r, post), TP_END_SEND, status);
}

static const struct hpool_req_ops post_ops = { post, post_failed };

static int emu_send(struct tp_conn *c, const uint8_t *p, size_t n)
{
	struct emu *x = (struct emu *)c;
	if (!hsr_busy(&x->r) && x->first == NULL)
		return ENOTCONN;
	hpool_add(&x->post, p, n, !c->protobuf);
	if (x->session_known && hpool_send(&x->post, &post_ops) < 0) {
		emu_close(c);
		return EPIPE;
	}
	return 0;
}

/* ---- the stream ---------------------------------------------------------------- */

static int find_session(void *arg, const struct cfp_msg *m)
{
	struct emu *x = arg;
	if (m->kind != CFP_REPLY || m->id != 1)
		return 0;
	if (cfp_session(x->c.protobuf, m->raw, m->rawlen, x->session, x->node, ID_MAX) == 0)
		x->session_known = true;
	return 1;
}

/* Hands messages up. Returns 0, or -1 once x is closed. */
static int deliver(struct emu *x, const uint8_t *p, size_t n, uint64_t now)
{
	if (!x->session_known) {
		cfp_each(x->c.protobuf, p, n, find_session, x);
		if (x->session_known && hpool_send(&x->post, &post_ops) < 0) {
			end(x, TP_END_SEND, 0);
			return -1;
		}
	}
	x->c.ops->on_message(&x->c, p, n, now);
	return hsr_busy(&x->r) ? 0 : -1;
}

static size_t on_body(struct hsr *r, uint8_t *p, size_t n, uint64_t now)
{
	struct emu *x = OF(r, r);
	if (!is_sse(x)) {
		size_t k = cfp_complete(x->c.protobuf, p, n);
		if (k)
			deliver(x, p, k, now);
		return k;
	}
	size_t i = 0;
	for (;;) {
		const uint8_t *nl = memchr(p + i, '\n', n - i);
		if (nl == NULL)
			return i;
		const uint8_t *l = p + i, *le = nl;
		i = (size_t)(nl + 1 - p);
		if (le > l && le[-1] == '\r')
			le--;
		if (le - l < 5 || memcmp(l, "data:", 5) != 0)
			continue;       /* the event's end, the "\r\n" prelude, a comment */
		l += 5;
		if (l < le && *l == ' ')
			l++;
		if (deliver(x, l, (size_t)(le - l), now) < 0)
			return n;
	}
}

static size_t urlencode(char *out, const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	return o;
}

static void on_connect(struct hsr *r)
{
	struct emu *x = OF(r, r);
	uint8_t *b = scratch(3 * (size_t)x->flen + 512);
	int n;
	if (is_sse(x)) {
		n = snprintf((char *)b, 64, "GET /connection/sse?cf_connect=");
		n += (int)urlencode((char *)b + n, x->first, x->flen);
		n += snprintf((char *)b + n, 400, " HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n",
			      E.host);
	} else {
		const char *ct = x->c.protobuf ? "application/octet-stream" : "application/json";
		n = snprintf((char *)b, 400, "POST /connection/http_stream HTTP/1.1\r\nHost: %s\r\n"
			     "Content-Type: %s\r\nAccept: %s\r\nContent-Length: %u\r\n\r\n", E.host, ct, ct,
			     x->flen);
		memcpy(b + n, x->first, x->flen);
		n += (int)x->flen;
	}
	free(x->first);
	x->first = NULL;
	x->flen = 0;
	int err = hsr_request(r, b, (size_t)n);
	if (err)
		end(x, TP_END_EOF, err);
}

/* The response ended: rotor ends it only with the session. */
static void on_done(struct hsr *r)
{
	end(OF(r, r), TP_END_EOF, 0);
}

static void on_end(struct hsr *r, enum hsr_end why, int detail)
{
	end(OF(r, r), tp_end_of_hsr(why), detail);
}

static const struct hsr_ops stream_ops = { on_connect, on_body, on_done, on_end };

static int emu_open(struct tp_conn *c, unsigned k, const uint8_t *first, size_t n)
{
	struct emu *x = (struct emu *)c;
	size_t rest, fl = cfp_first(c->protobuf, first, n, &rest);
	emu_close(c);
	x->first = malloc(fl ? fl : 1);
	if (x->first == NULL)
		abort();
	memcpy(x->first, first, fl);
	x->flen = (uint32_t)fl;
	if (rest < n)
		hpool_add(&x->post, first + rest, n - rest, false);
	int err = hsr_connect(&x->r, &E.dst, k, &stream_ops);
	if (err)
		emu_close(c);
	return err;
}

const struct tp_kind tp_http_stream = {
	.name = "http_stream", .protobuf = true, .emulation = true, .posts = true,
	.rotord_conf = "\"http_stream\": {\"enabled\": true}", .size = sizeof(struct emu), .setup = setup, .teardown = hpool_close,
	.open = emu_open, .send = emu_send, .close = emu_close,
};

const struct tp_kind tp_sse = {
	.name = "sse", .emulation = true, .posts = true,
	.rotord_conf = "\"sse\": {\"enabled\": true}", .size = sizeof(struct emu), .setup = setup, .teardown = hpool_close,
	.open = emu_open, .send = emu_send, .close = emu_close,
};
