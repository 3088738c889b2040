/*
 * tp_sockjs.c - the SockJS transports (tp.h; sockjs.md), as sockjs-client
 * 1.x under centrifuge-js's sockjs transport uses them against rotord's
 * /connection/sockjs (sockjs.enabled): JSON only.
 *
 *   sockjs-websocket       GET <prefix>/<server>/<session>/websocket, one
 *                          SockJS frame per WebSocket text message
 *   sockjs-xhr-streaming   POST .../xhr_streaming, a chunked response of
 *                          newline-terminated frames after a 2,048-byte
 *                          "h" prelude; sends by POST .../xhr_send on the
 *                          process's POST pool (hpool.h)
 *
 * <server> is three random digits and <session> eight random characters
 * of [a-z0-5], new for each connection, as sockjs-client picks them.
 * Frames from the server: "o" (open: the first frame of commands goes
 * out), "h" (heartbeat; the prelude is one long one), a["m1","m2"] (each
 * message a JSON string holding Centrifugo replies joined by newlines:
 * unescaped into a scratch buffer of the process and handed up, one call
 * per message) and c[code,"reason"] (the session is closed). A frame of
 * commands goes out as a one-message array, ["<commands>"].
 *
 * An XHR streaming response ends when it has carried the server's
 * response limit (128 KiB in rotord); the session lives on, and the
 * client opens the next one at once, on the same keep-alive connection
 * (a fresh one if the server closed it). An "o" on such a reopened
 * stream means the session was lost: an error, as sockjs-client takes it.
 */
#include "tp.h"
#include "hpool.h"
#include "hsr.h"
#include "jstr.h"
#include "wsc.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define PREFIX "/connection/sockjs"

struct sjc {
	struct tp_conn c;       /* first */
	union {
		struct wsc w;   /* sockjs-websocket */
		struct hsr r;   /* sockjs-xhr-streaming */
	} u;
	struct hpool_req post;  /* and the commands waiting: for "o", or for
				 * xhr_send (the WebSocket's go out with "o") */
	unsigned k;             /* source address, for a new stream connection */
	bool opened;            /* "o" came */
	bool reopened;          /* xhr: the current request reopens the stream... */
	bool retried;           /* ...and went on a fresh connection already */
	char path[64];          /* PREFIX/<server>/<session>/ */
};

#define OF(p, m) ((struct sjc *)((char *)(p) - offsetof(struct sjc, m)))

extern const struct tp_kind tp_sockjs_websocket;

static struct {
	struct sockaddr_in dst;
	char host[160];
	uint64_t rng;
	uint8_t *buf;           /* sends: ["<escaped commands>"] */
	size_t cap;
	uint8_t *msg;           /* receives: one message unescaped */
	size_t mcap;
} J;

static uint8_t *grow(uint8_t **b, size_t *cap, size_t n)
{
	if (n > *cap) {
		*b = realloc(*b, n);
		if (*b == NULL)
			abort();
		*cap = n;
	}
	return *b;
}

static uint32_t rnd32(void)
{
	J.rng ^= J.rng << 13;
	J.rng ^= J.rng >> 7;
	J.rng ^= J.rng << 17;
	return (uint32_t)(J.rng >> 16);
}

static void setup(const struct tp_env *env)
{
	J.dst = env->dst;
	snprintf(J.host, sizeof(J.host), "%s", env->host);
	if (getrandom(&J.rng, sizeof(J.rng), 0) != sizeof(J.rng) || J.rng == 0)
		J.rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	wsc_setup(&env->dst, env->host, false);
	hpool_setup(env->post_conns, env->post_depth, env->k0);
}

static bool is_ws(const struct sjc *x)
{
	return x->c.kind == &tp_sockjs_websocket;
}

static bool sj_open_now(const struct sjc *x)
{
	return is_ws(x) ? sock_open(&x->u.w.s) : sock_open(&x->u.r.s);
}

static void sj_close(struct tp_conn *c)
{
	struct sjc *x = (struct sjc *)c;
	if (is_ws(x))
		wsc_close(&x->u.w);
	else
		hsr_close(&x->u.r);
	hpool_cancel(&x->post);
	x->opened = x->reopened = x->retried = false;
}

static void end(struct sjc *x, enum tp_end why, int detail)
{
	sj_close(&x->c);
	x->c.ops->on_end(&x->c, why, detail);
}

/* ---- sending --------------------------------------------------------------- */

/* ["<p, escaped>"] into J.buf; returns its length. */
static size_t wrap(const uint8_t *p, size_t n)
{
	uint8_t *b = grow(&J.buf, &J.cap, JSTR_ESCAPED_MAX(n) + 4);
	size_t k = 0;
	b[k++] = '[';
	b[k++] = '"';
	k += jstr_escape((char *)b + k, p, n);
	b[k++] = '"';
	b[k++] = ']';
	return k;
}

static int post(struct hpool_req *r, struct hcli *h)
{
	struct sjc *x = OF(r, post);
	char path[96];
	size_t n = wrap(r->buf, r->len);
	snprintf(path, sizeof(path), "%sxhr_send", x->path);
	return hcli_post(h, path, "text/plain", J.buf, n);
}

static void post_failed(struct hpool_req *r, int status)
{
	end(OF(r, post), TP_END_SEND, status);
}

static const struct hpool_req_ops post_ops = { post, post_failed };

/* Sends what waits, now that the session is open. Returns 0 or an errno
 * value (x is closed then; on_end not called). */
static int flush(struct sjc *x)
{
	int err = 0;
	if (is_ws(x)) {
		if (x->post.len == 0)
			return 0;
		size_t n = wrap(x->post.buf, x->post.len);
		hpool_clear(&x->post);
		err = wsc_send(&x->u.w, false, J.buf, n);
	} else if (hpool_send(&x->post, &post_ops) < 0) {
		err = EPIPE;
	}
	if (err)
		sj_close(&x->c);
	return err;
}

static int sj_send(struct tp_conn *c, const uint8_t *p, size_t n)
{
	struct sjc *x = (struct sjc *)c;
	if (!sj_open_now(x))
		return ENOTCONN;
	hpool_add(&x->post, p, n, true);
	return x->opened ? flush(x) : 0;
}

/* ---- receiving --------------------------------------------------------------- */

/* One frame [p, p+n). Returns 0, or -1 once x is closed. */
static int frame(struct sjc *x, const uint8_t *p, size_t n, uint64_t now)
{
	if (n == 0)
		return 0;
	const uint8_t *e = p + n, *q;
	switch (p[0]) {
	case 'o':
		if (n != 1 || x->opened)        /* again: the session was lost */
			break;
		x->opened = true;
		if (flush(x) != 0) {
			x->c.ops->on_end(&x->c, TP_END_EOF, EPIPE);
			return -1;
		}
		return 0;
	case 'h':
		for (q = p; q < e && *q == 'h'; q++)
			;
		if (q != e)
			break;
		return 0;
	case 'a':
		if (n < 3 || p[1] != '[' || e[-1] != ']')
			break;
		grow(&J.msg, &J.mcap, n);
		for (q = p + 2; q < e && *q == '"';) {
			const uint8_t *next;
			size_t len = jstr_unescape(q + 1, e, J.msg, &next);
			if (len == (size_t)-1)
				goto proto;
			x->c.ops->on_message(&x->c, J.msg, len, now);
			if (!sj_open_now(x))
				return -1;
			q = next;
			if (q < e && *q == ',')
				q++;
		}
		if (q != e - 1)
			break;
		return 0;
	case 'c': {
		int code = 0;
		if (n < 3 || p[1] != '[')
			break;
		for (q = p + 2; q < e && *q >= '0' && *q <= '9'; q++)
			code = code * 10 + (*q - '0');
		end(x, TP_END_CLOSE, code);
		return -1;
	}
	default:
		break;
	}
proto:
	end(x, TP_END_PROTO, 0);
	return -1;
}

/* sockjs-websocket */

static void on_ws_open(struct wsc *w)
{
	(void)w;                /* "o" will come */
}

static void on_ws_message(struct wsc *w, const uint8_t *p, size_t n, uint64_t now)
{
	frame(OF(w, u.w), p, n, now);
}

static void on_ws_end(struct wsc *w, enum wsc_end why, int detail)
{
	end(OF(w, u.w), tp_end_of_wsc(why), detail);
}

static const struct wsc_ops ws_ops = { on_ws_open, on_ws_message, on_ws_end };

/* sockjs-xhr-streaming */

static int stream_request(struct sjc *x)
{
	char req[512];
	int n = snprintf(req, sizeof(req), "POST %sxhr_streaming HTTP/1.1\r\nHost: %s\r\n"
			 "Content-Length: 0\r\n\r\n", x->path, J.host);
	return hsr_request(&x->u.r, req, (size_t)n);
}

static void on_connect(struct hsr *r)
{
	struct sjc *x = OF(r, u.r);
	int err = stream_request(x);
	if (err)
		end(x, TP_END_EOF, err);
}

static size_t on_body(struct hsr *r, uint8_t *p, size_t n, uint64_t now)
{
	struct sjc *x = OF(r, u.r);
	size_t i = 0;
	x->reopened = false;            /* the server answered the reopening */
	for (;;) {
		const uint8_t *nl = memchr(p + i, '\n', n - i);
		if (nl == NULL)
			return i;
		const uint8_t *f = p + i;
		i = (size_t)(nl + 1 - p);
		if (frame(x, f, (size_t)(nl - f), now) < 0)
			return n;
	}
}

static const struct hsr_ops stream_ops;

/* The response reached the server's limit: the next one, at once. */
static void on_done(struct hsr *r)
{
	struct sjc *x = OF(r, u.r);
	x->reopened = true;
	x->retried = false;
	if (stream_request(x) != 0 && hsr_connect(r, &J.dst, x->k, &stream_ops) != 0)
		end(x, TP_END_EOF, 0);
}

static void on_end(struct hsr *r, enum hsr_end why, int detail)
{
	struct sjc *x = OF(r, u.r);
	/* The server closed the kept connection instead of answering the
	 * reopening: once more on a fresh one. */
	if (x->reopened && !x->retried && why == HSR_END_STATUS && detail == 0) {
		x->retried = true;
		if (hsr_connect(r, &J.dst, x->k, &stream_ops) == 0)
			return;
	}
	end(x, tp_end_of_hsr(why), detail);
}

static const struct hsr_ops stream_ops = { on_connect, on_body, on_done, on_end };

static int sj_open(struct tp_conn *c, unsigned k, const uint8_t *first, size_t n)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz012345";
	struct sjc *x = (struct sjc *)c;
	char id[9];
	sj_close(c);
	for (int i = 0; i < 8; i++)
		id[i] = alphabet[rnd32() % 32];
	id[8] = 0;
	snprintf(x->path, sizeof(x->path), PREFIX "/%03u/%s/", rnd32() % 1000, id);
	x->k = k;
	hpool_add(&x->post, first, n, true);
	int err;
	if (is_ws(x)) {
		char *ws = x->path + strlen(x->path);   /* the path is kept: wsc reads it later */
		snprintf(ws, sizeof(x->path) - (size_t)(ws - x->path), "websocket");
		err = wsc_connect(&x->u.w, k, x->path, false, &ws_ops);
	} else {
		err = hsr_connect(&x->u.r, &J.dst, k, &stream_ops);
	}
	if (err)
		sj_close(c);
	return err;
}

const struct tp_kind tp_sockjs_websocket = {
	.name = "sockjs-websocket", .rotord_conf = "\"sockjs\": {\"enabled\": true}",
	.size = sizeof(struct sjc), .setup = setup, .teardown = hpool_close,
	.open = sj_open, .send = sj_send, .close = sj_close,
};

const struct tp_kind tp_sockjs_xhr_streaming = {
	.name = "sockjs-xhr-streaming", .posts = true, .rotord_conf = "\"sockjs\": {\"enabled\": true}",
	.size = sizeof(struct sjc), .setup = setup, .teardown = hpool_close,
	.open = sj_open, .send = sj_send, .close = sj_close,
};
