/*
 * http.c - HTTP/1.1 server of a worker, on llhttp in strict mode.
 *
 * Model: one struct http_conn per connection, the conn's ud. Bytes from
 * on_read go through llhttp; the request line and headers are copied into
 * one growing buffer (head), the body into another, and both are freed as
 * soon as the request is answered, so a keep-alive connection between
 * requests holds only the parser state. A request is dispatched when
 * llhttp reports it complete: on_message_complete pauses the parser, the
 * handler runs, and parsing resumes on the remaining bytes only once the
 * response is queued, which answers pipelined requests in order. A handler
 * that answers later leaves the connection paused (reads stop, the unparsed
 * bytes wait in the conn).
 *
 * Checks, all before the handler runs: header section size (raw bytes from
 * the first byte of the method to the end of the headers) and field count
 * -> 431; Content-Length over the body limit -> 413 without reading the body,
 * a chunked body growing over it -> 413; unknown path -> 404; method not
 * allowed -> 405 with Allow; HTTP versions other than 1.0/1.1 -> 505; any
 * parse error, obs-fold lines, empty field names, and (through llhttp)
 * CR without LF, Transfer-Encoding with Content-Length and duplicate
 * Content-Length -> 400. Every refusal answers with Connection: close and
 * then closes gracefully (conn_shutdown).
 *
 * Deadlines (one conn deadline at a time): a fresh connection must start a
 * request within read_header_timeout, a kept-alive one within idle_timeout;
 * a started request must complete its header section within
 * read_header_timeout and the whole request within read_timeout (408 then
 * close); the response must be written within write_timeout of blocking
 * (conn's write timeout). Zero means: fall back as Go's net/http does
 * (header -> read timeout, idle -> read timeout), else no limit.
 *
 * Routes live in a table of this process (one worker per process).
 */
#include "config.h"
#include "http.h"
#include "node.h"
#include "tls.h"
#include "conn.h"
#include "worker.h"
#include "conf.h"
#include "log.h"
#include "util.h"
#include "json.h"
#include <assert.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

/* Header section limit when the config says 0 (Go's DefaultMaxHeaderBytes). */
#define HEAD_MAX_DEFAULT (1 << 20)

enum hstate {
	H_IDLE,    /* between requests (or none yet) */
	H_HEAD,    /* reading the request line and headers */
	H_BODY,    /* reading the body (and trailers) */
	H_HANDLER, /* dispatched, waiting for the response */
	H_DONE,    /* refused or closing: nothing more is read */
};

/* Where a header field's name and value sit in the head buffer. */
struct field {
	uint32_t name, value;
};

struct http_conn {
	struct http_req req;   /* the request being read or handled */
	struct conn *c;
	llhttp_t parser;
	uint8_t state;         /* enum hstate */
	bool closing;          /* answer with Connection: close, then close */
	bool keep_alive;       /* llhttp's verdict for the current request */
	bool hijacked;         /* http_hijack: the conn is another layer's */
	bool write_paused;     /* reads stopped until the output drains */
	bool in_read;          /* inside http_on_read: defer freeing */
	bool dead;             /* the conn closed while in_read */
	bool handed;           /* the next request was read by another worker */
	bool internal;         /* accepted on the internal listener */
	bool redispatch;       /* run the handler again once the output drains */
	bool used;             /* a request has begun on it */
	uint8_t span;          /* which span the head buffer is collecting */
	int err;               /* status of a refusal decided in a callback */
	int64_t req_start;     /* w->now_ms at the request's first byte */

	/* Header section accounting (raw bytes). */
	const char *chunk, *chunk_end; /* data of the current llhttp_execute */
	const char *msg_start; /* first byte of the request, if in this chunk */
	size_t head_prev;      /* bytes of the section in earlier chunks */
	size_t head_spans;     /* bytes of the section up to its last token's end */
	size_t nfields;        /* header and trailer fields */
	size_t trailer_bytes;
	bool in_trailer_section; /* past the last chunk's size line */
	uint32_t val_spans;    /* spans of the current field value */
	bool val_at_end;       /* the last one ended at the end of its chunk */

	/* The request under construction. */
	char *head;            /* target, names and values, each NUL-ended */
	size_t head_len, head_cap;
	uint32_t target_off, cur_off;
	struct field *fields;
	size_t nf, fields_cap;
	struct http_header *hdrs;
	char *body;
	size_t body_cap;

	/* The route, copied (a reload may change the table meanwhile). */
	http_handler_fn fn;
	uint64_t methods;

	/* While a handler runs: the input after its request (pipelined). */
	const char *rest;
	size_t rest_len;

	void (*abort_fn)(void *arg);
	void *abort_arg;
};

enum { SPAN_NONE, SPAN_URL, SPAN_FIELD, SPAN_VALUE };

struct route {
	char *path;
	size_t len;
	unsigned flags;
	uint64_t methods;
	http_handler_fn fn;
	void *arg;
};

static struct {
	struct route *v;
	size_t n, cap;
	char *health_path; /* the route http.c added for health.handler_prefix */
	llhttp_settings_t settings;
} H;

static const struct conn_ops http_ops;

#define HC(req) ((struct http_conn *)((char *)(req) - offsetof(struct http_conn, req)))

/* ---- config helpers ------------------------------------------------------ */

static const struct conf *cf(const struct http_conn *hc)
{
	return hc->c->w->conf;
}

static int64_t header_timeout(const struct conf *k)
{
	return k->read_header_timeout_ms > 0 ? k->read_header_timeout_ms : k->read_timeout_ms;
}

static int64_t idle_timeout(const struct conf *k)
{
	return k->idle_timeout_ms > 0 ? k->idle_timeout_ms : k->read_timeout_ms;
}

static size_t head_max(const struct conf *k)
{
	return k->max_header_size > 0 ? (size_t)k->max_header_size : HEAD_MAX_DEFAULT;
}

/* FROM + MS, or CONN_NEVER when MS is no limit. */
static int64_t after(int64_t from, int64_t ms)
{
	return ms > 0 ? from + ms : CONN_NEVER;
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* ---- status lines ------------------------------------------------------ */

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Request Entity Too Large";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* ---- the request's buffers ---------------------------------------------- */

static void req_free(struct http_conn *hc)
{
	free(hc->head);
	free(hc->fields);
	free(hc->hdrs);
	free(hc->body);
	hc->head = NULL;
	hc->fields = NULL;
	hc->hdrs = NULL;
	hc->body = NULL;
	hc->head_len = hc->head_cap = hc->nf = hc->fields_cap = hc->body_cap = 0;
	hc->req = (struct http_req){ .conn = hc->c, .version_minor = 1 };
	hc->abort_fn = NULL;
	hc->abort_arg = NULL;
	hc->fn = NULL;
	hc->span = SPAN_NONE;
	hc->err = 0;
	hc->redispatch = false;
	hc->rest = NULL;
	hc->rest_len = 0;
}

/* Makes room for N more bytes in the head buffer (which may move). */
static void head_reserve(struct http_conn *hc, size_t n)
{
	size_t cap = hc->head_cap ? hc->head_cap : 256;

	if (hc->head_cap - hc->head_len >= n)
		return;
	while (cap - hc->head_len < n)
		cap *= 2;
	hc->head = xrealloc(hc->head, cap);
	hc->head_cap = cap;
}

/* Appends N bytes from P, which must not point into the head buffer. */
static void head_put(struct http_conn *hc, const char *p, size_t n)
{
	head_reserve(hc, n);
	memcpy(hc->head + hc->head_len, p, n);
	hc->head_len += n;
}

/* Raw size of the header section up to POS in the current chunk. */
static size_t head_size(const struct http_conn *hc, const char *pos)
{
	return hc->head_prev + (size_t)(pos - (hc->msg_start ? hc->msg_start : hc->chunk));
}

/* Refuses the request with STATUS from inside an llhttp callback. */
static int refuse(struct http_conn *hc, int status)
{
	if (!hc->err)
		hc->err = status;
	return HPE_USER;
}

/* Called with the end of each token (llhttp span) of the section. */
static int check_head(struct http_conn *hc, const char *end)
{
	hc->head_spans = head_size(hc, end);
	if (hc->head_spans > head_max(cf(hc)))
		return refuse(hc, 431);
	return 0;
}

/* ---- llhttp callbacks ------------------------------------------------- */

static int on_message_begin(llhttp_t *p)
{
	struct http_conn *hc = p->data;
	const struct conf *k = cf(hc);
	int64_t now = hc->c->w->now_ms;

	req_free(hc);
	hc->state = H_HEAD;
	hc->req_start = now;
	hc->used = true;
	hc->msg_start = NULL;
	hc->head_prev = 0;
	hc->head_spans = 0;
	hc->nfields = 0;
	hc->trailer_bytes = 0;
	hc->in_trailer_section = false;
	hc->val_spans = 0;
	conn_set_write_timeout(hc->c, k->write_timeout_ms);
	conn_set_deadline(hc->c, min64(after(now, header_timeout(k)), after(now, k->read_timeout_ms)));
	return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *hc = p->data;

	if (!hc->msg_start && hc->head_prev == 0)
		hc->msg_start = at;
	return check_head(hc, at + len);
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *hc = p->data;

	if (hc->span != SPAN_URL) {
		hc->span = SPAN_URL;
		hc->target_off = (uint32_t)hc->head_len;
	}
	if (check_head(hc, at + len))
		return HPE_USER;
	head_put(hc, at, len);
	return 0;
}

static int on_url_complete(llhttp_t *p)
{
	struct http_conn *hc = p->data;

	if (hc->span != SPAN_URL)
		hc->target_off = (uint32_t)hc->head_len;
	head_put(hc, "", 1);
	hc->span = SPAN_NONE;
	return 0;
}

static int on_version(llhttp_t *p, const char *at, size_t len)
{
	return check_head(p->data, at + len);
}

static int on_version_complete(llhttp_t *p)
{
	if (p->http_major != 1 || p->http_minor > 1)
		return refuse(p->data, 505);
	return 0;
}

static bool in_trailers(const struct http_conn *hc)
{
	return hc->state == H_BODY;
}

/* The last chunk's size line: what follows is the trailer section. */
static int on_chunk_header(llhttp_t *p)
{
	struct http_conn *hc = p->data;
	if (p->content_length == 0)
		hc->in_trailer_section = true;
	return 0;
}

/* Counts trailer bytes against the header limit (trailers are not kept). */
static int check_trailer(struct http_conn *hc, size_t len)
{
	hc->trailer_bytes += len;
	if (hc->trailer_bytes > head_max(cf(hc)))
		return refuse(hc, 431);
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *hc = p->data;

	if (in_trailers(hc))
		return check_trailer(hc, len);
	if (check_head(hc, at + len))
		return HPE_USER;
	if (hc->span != SPAN_FIELD) {
		hc->span = SPAN_FIELD;
		hc->cur_off = (uint32_t)hc->head_len;
	}
	head_put(hc, at, len);
	return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
	struct http_conn *hc = p->data;
	long long max = cf(hc)->max_header_count;

	if (++hc->nfields > (size_t)max && max > 0)
		return refuse(hc, 431);
	if (in_trailers(hc))
		return 0;
	if (hc->span != SPAN_FIELD || hc->head_len == hc->cur_off)
		return refuse(hc, 400); /* ": value": an empty field name */
	head_put(hc, "", 1);
	if (hc->nf == hc->fields_cap) {
		hc->fields_cap = hc->fields_cap ? 2 * hc->fields_cap : 16;
		hc->fields = xrealloc(hc->fields, hc->fields_cap * sizeof(hc->fields[0]));
	}
	hc->fields[hc->nf].name = hc->cur_off;
	hc->span = SPAN_NONE;
	hc->val_spans = 0;
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *hc = p->data;
	bool at_end = at + len == hc->chunk_end;

	/* llhttp hands an obs-fold continuation ("\r\n b") of a value to us as
	 * a further span. A value is otherwise split only where a chunk of
	 * input ends: a second span after one that did not end there is a
	 * fold. */
	if (hc->val_spans++ > 0 && !hc->val_at_end)
		return refuse(hc, 400);
	hc->val_at_end = at_end;
	if (memchr(at, '\r', len) || memchr(at, '\n', len))
		return refuse(hc, 400);
	if (in_trailers(hc))
		return check_trailer(hc, len);
	if (check_head(hc, at + len))
		return HPE_USER;
	if (hc->span != SPAN_VALUE) {
		hc->span = SPAN_VALUE;
		hc->cur_off = (uint32_t)hc->head_len;
	}
	head_put(hc, at, len);
	return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
	struct http_conn *hc = p->data;

	hc->val_spans = 0;
	if (in_trailers(hc))
		return 0;
	if (hc->span != SPAN_VALUE)
		hc->cur_off = (uint32_t)hc->head_len; /* empty value */
	/* llhttp drops leading whitespace but keeps trailing. */
	while (hc->head_len > hc->cur_off &&
	       (hc->head[hc->head_len - 1] == ' ' || hc->head[hc->head_len - 1] == '\t'))
		hc->head_len--;
	head_put(hc, "", 1);
	hc->fields[hc->nf++].value = hc->cur_off;
	hc->span = SPAN_NONE;
	return 0;
}

/* Splits the request-target into path and query (copied after the other
 * strings) and makes the header list. The head buffer is final afterwards. */
static int finish_head(struct http_conn *hc)
{
	struct http_req *r = &hc->req;
	const char *t = hc->head + hc->target_off, *path, *q;
	size_t plen, qlen, path_off, query_off, i;

	if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
		/* absolute-form: drop scheme and authority */
		path = strstr(t, "://") + 3;
		path += strcspn(path, "/?");
	} else if (t[0] == '/' || strcmp(t, "*") == 0) {
		path = t;
	} else {
		return 400; /* authority-form (CONNECT) or nonsense */
	}
	q = strchr(path, '?');
	plen = q ? (size_t)(q - path) : strlen(path);
	qlen = q ? strlen(q + 1) : 0;
	/* Copy by offset: reserving may move the buffer. */
	path_off = (size_t)(path - hc->head);
	head_reserve(hc, plen + qlen + 3);
	path = hc->head + path_off;
	q = q ? path + plen : NULL;
	path_off = hc->head_len;
	if (plen == 0)
		hc->head[hc->head_len++] = '/'; /* "http://host" means "/" */
	memcpy(hc->head + hc->head_len, path, plen);
	hc->head_len += plen;
	hc->head[hc->head_len++] = '\0';
	query_off = hc->head_len;
	if (q)
		memcpy(hc->head + hc->head_len, q + 1, qlen);
	hc->head_len += qlen;
	hc->head[hc->head_len++] = '\0';

	r->target = hc->head + hc->target_off;
	r->path = hc->head + path_off;
	r->query = hc->head + query_off;
	r->nheaders = hc->nf;
	if (hc->nf) {
		hc->hdrs = xmalloc(hc->nf * sizeof(hc->hdrs[0]));
		for (i = 0; i < hc->nf; i++) {
			hc->hdrs[i].name = hc->head + hc->fields[i].name;
			hc->hdrs[i].value = hc->head + hc->fields[i].value;
		}
	}
	r->headers = hc->hdrs;
	return 0;
}

/* The route of PATH among those HC's listener serves. */
static const struct route *route_find(const struct http_conn *hc, const char *path)
{
	const struct route *best = NULL;
	bool split = hc->c->w->split;
	size_t i;

	for (i = 0; i < H.n; i++) {
		const struct route *rt = &H.v[i];

		if (split && !(rt->flags & HTTP_ROUTE_INTERNAL) != !hc->internal)
			continue;
		if (!(rt->flags & HTTP_ROUTE_PREFIX)) {
			if (strcmp(rt->path, path) == 0)
				return rt;
		} else if (strncmp(rt->path, path, rt->len) == 0 && (!best || rt->len > best->len)) {
			best = rt;
		}
	}
	return best;
}

static int on_headers_complete(llhttp_t *p)
{
	struct http_conn *hc = p->data;
	struct http_req *r = &hc->req;
	const struct conf *k = cf(hc);
	const struct route *rt;
	const char *expect;
	int status;

	hc->state = H_BODY;
	hc->span = SPAN_NONE;
	r->method = p->method; /* before any refusal: a HEAD is answered without a body */
	r->method_name = llhttp_method_name(p->method);
	r->version_minor = p->http_minor;
	r->upgrade = p->upgrade;
	/* The section ends with 4 bytes after its last token: that line's CRLF
	 * and the empty line's (strict mode: no bare LF; a value's span holds
	 * its trailing whitespace). A read that ended among them counted them;
	 * so does one that reads past them. */
	if (hc->head_spans + 4 > head_max(k))
		return refuse(hc, 431);
	if ((status = finish_head(hc)) != 0)
		return refuse(hc, status);
	if ((p->flags & F_CONTENT_LENGTH) && (p->flags & (F_CHUNKED | F_TRANSFER_ENCODING)))
		return refuse(hc, 400); /* llhttp refuses it too; say it twice */

	if (!(rt = route_find(hc, r->path)))
		return refuse(hc, 404);
	hc->methods = rt->methods;
	if (!(rt->methods & HTTP_METHOD_BIT(p->method)))
		return refuse(hc, 405);
	hc->fn = rt->fn;
	r->arg = rt->arg;

	if (k->max_body_size > 0 && (p->flags & F_CONTENT_LENGTH) &&
	    p->content_length > (uint64_t)k->max_body_size)
		return refuse(hc, 413);
	if ((expect = http_req_header(r, "expect")) && p->http_minor >= 1) {
		if (strcasecmp(expect, "100-continue") != 0)
			return refuse(hc, 417);
		if ((p->flags & F_CHUNKED) || p->content_length > 0)
			conn_queue_copy(hc->c, CONTINUE, sizeof(CONTINUE) - 1);
	}
	conn_set_deadline(hc->c, after(hc->req_start, k->read_timeout_ms));
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *hc = p->data;
	long long max = cf(hc)->max_body_size;
	size_t need = hc->req.body_len + len + 1;

	if (max > 0 && hc->req.body_len + len > (size_t)max)
		return refuse(hc, 413);
	if (need > hc->body_cap) {
		size_t cap = hc->body_cap ? hc->body_cap : 1024;

		/* Announced length: all of it at once (llhttp has already taken
		 * this span off content_length), but not more than 1 MiB ahead
		 * of what actually arrived. */
		if ((p->flags & F_CONTENT_LENGTH) && !hc->body_cap)
			cap = need + (p->content_length < (1u << 20) ? (size_t)p->content_length : (1u << 20));
		while (cap < need)
			cap *= 2;
		hc->body = xrealloc(hc->body, cap);
		hc->body_cap = cap;
	}
	memcpy(hc->body + hc->req.body_len, at, len);
	hc->req.body_len += len;
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	return HPE_PAUSED; /* dispatch from http_on_read, then resume */
}

/* ---- responses ---------------------------------------------------------- */

static void queue_response(struct http_conn *hc, int status, const char *ctype,
			   const char *extra, const void *body, size_t len, bool close,
			   bool head_only)
{
	char buf[512];
	int n;

	/* A response always answers a request, also one the engine answered
	 * iterations later (Redis): ahead of any fan-out in the flush. */
	conn_answering(hc->c);
	n = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %zu\r\n%s",
		     status, http_reason(status),
		     ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
		     len,
		     close ? "Connection: close\r\n" :
		     hc->req.version_minor == 0 ? "Connection: keep-alive\r\n" : "");
	assert(n > 0 && (size_t)n < sizeof(buf));
	conn_queue_copy(hc->c, buf, (size_t)n);
	if (extra)
		conn_queue_copy(hc->c, extra, strlen(extra));
	conn_queue_copy(hc->c, "\r\n", 2);
	if (len && !head_only)
		conn_queue_copy(hc->c, body, len);
}

void http_allow_header(uint64_t methods, char *buf, size_t size)
{
	size_t n = (size_t)snprintf(buf, size, "Allow: ");
	int m;

	/* llhttp_method_name aborts on numbers it does not know. */
	for (m = 0; m <= HTTP_FLUSH && n < size; m++) {
		if (methods & HTTP_METHOD_BIT(m))
			n += (size_t)snprintf(buf + n, size - n, "%s%s", n > 7 ? ", " : "",
					      llhttp_method_name((llhttp_method_t)m));
	}
	if (n < size)
		snprintf(buf + n, size - n, "\r\n");
}

/* Answers with an error STATUS (0: none), then closes gracefully. The
 * answer to a HEAD request whose head was read has no body. */
static void http_fail(struct http_conn *hc, int status)
{
	char allow[512], body[64];

	if (status) {
		int n = snprintf(body, sizeof(body), "%d %s\n", status, http_reason(status));
		bool head = hc->state == H_BODY && hc->req.method == HTTP_HEAD;

		if (status == 405)
			http_allow_header(hc->methods, allow, sizeof(allow));
		queue_response(hc, status, "text/plain; charset=utf-8",
			       status == 405 ? allow : NULL, body, (size_t)n, true, head);
	}
	log_debug("http fd %d: %d %s", hc->c->fd, status, status ? http_reason(status) : "(closed)");
	req_free(hc);
	hc->state = H_DONE;
	conn_shutdown(hc->c);
}

static int errno_status(struct http_conn *hc, llhttp_errno_t e)
{
	const char *reason = llhttp_get_error_reason(&hc->parser);

	if (hc->err)
		return hc->err;
	/* Malformed past max_header_size: 431, as when a read had ended
	 * before the bad byte (the check at the end of each read); the answer
	 * must not depend on where reads end. */
	if (hc->state == H_HEAD && head_size(hc, llhttp_get_error_pos(&hc->parser)) > head_max(cf(hc)))
		return 431;
	/* The same for trailers, counted by their tokens: the one the bad
	 * byte cut short, which llhttp never reported, counts up to that
	 * byte, as a read ending there would have reported it. llhttp keeps
	 * where that token started in _span_pos0 (a field of its public
	 * struct, set while a token is open). */
	if (hc->in_trailer_section && hc->parser._span_pos0 != NULL &&
	    hc->trailer_bytes + (size_t)(llhttp_get_error_pos(&hc->parser) - (const char *)hc->parser._span_pos0) >
		    head_max(cf(hc)))
		return 431;
	if (e == HPE_INVALID_VERSION && reason && strcmp(reason, "Invalid HTTP version") == 0)
		return 505; /* well-formed, but neither 1.0 nor 1.1 */
	return 400;
}

/* The request is answered: what next for the connection. */
static void request_done(struct http_conn *hc, bool close)
{
	struct conn *c = hc->c;
	bool async = !hc->in_read;

	req_free(hc);
	if (close) {
		hc->state = H_DONE;
		conn_shutdown(c);
		return;
	}
	hc->state = H_IDLE;
	conn_set_deadline(c, after(c->w->now_ms, idle_timeout(c->w->conf)));
	if (async)
		conn_read_resume(c); /* pipelined bytes wait in the conn */
}

int http_respond_hdrs(struct http_req *req, int status, const char *ctype,
		      const char *extra, const void *body, size_t len)
{
	struct http_conn *hc = HC(req);
	bool close;

	assert(hc->state == H_HANDLER);
	if (conn_closing(hc->c))
		return RT_CLOSED;
	close = hc->closing || !hc->keep_alive || hc->c->w->draining ||
		(req->upgrade && !hc->hijacked);
	queue_response(hc, status, ctype, extra, body, len, close, req->method == HTTP_HEAD);
	request_done(hc, close);
	return RT_OK;
}

int http_respond(struct http_req *req, int status, const char *ctype,
		 const void *body, size_t len)
{
	return http_respond_hdrs(req, status, ctype, NULL, body, len);
}

void http_req_serialize(const struct http_req *req, struct jw *out)
{
	static const char *const drop[] = { "content-length", "transfer-encoding", "expect" };
	char line[64];

	jw_lit(out, req->method_name);
	jw_lit(out, " ");
	jw_lit(out, req->target);
	snprintf(line, sizeof(line), " HTTP/1.%d\r\n", req->version_minor);
	jw_lit(out, line);
	for (size_t i = 0; i < req->nheaders; i++) {
		bool keep = true;

		for (size_t k = 0; k < ROTOR_ARRAY_LEN(drop); k++)
			keep = keep && strcasecmp(req->headers[i].name, drop[k]) != 0;
		if (!keep)
			continue;
		jw_lit(out, req->headers[i].name);
		jw_lit(out, ": ");
		jw_lit(out, req->headers[i].value);
		jw_lit(out, "\r\n");
	}
	if (req->body_len) {
		snprintf(line, sizeof(line), "Content-Length: %zu\r\n", req->body_len);
		jw_lit(out, line);
	}
	jw_lit(out, "\r\n");
	jw_raw(out, req->body, req->body_len);
}

const char *http_req_rest(const struct http_req *req, size_t *len)
{
	struct http_conn *hc = HC(req);

	*len = hc->rest_len;
	return hc->rest ? hc->rest : "";
}

bool http_req_defer_until_flushed(struct http_req *req)
{
	struct http_conn *hc = HC(req);

	if (!hc->c->out_bytes)
		return false;
	hc->redispatch = true;
	return true;
}

void http_req_on_abort(struct http_req *req, void (*fn)(void *arg), void *arg)
{
	struct http_conn *hc = HC(req);

	hc->abort_fn = fn;
	hc->abort_arg = arg;
}

const char *http_req_header(const struct http_req *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

bool http_auth_credentials(const char *h, const char *scheme, const char **cred, size_t *len)
{
	const char *f[3];
	size_t flen[3], nf = 0;

	while (*h) {
		while (is_space(*h))
			h++;
		if (*h == '\0')
			break;
		if (nf == 3)
			return false;
		f[nf] = h;
		while (*h && !is_space(*h))
			h++;
		flen[nf] = (size_t)(h - f[nf]);
		nf++;
	}
	if (nf != 2 || flen[0] != strlen(scheme) || strncasecmp(f[0], scheme, flen[0]) != 0)
		return false;
	*cred = f[1];
	*len = flen[1];
	return true;
}

static void hc_free(struct http_conn *hc)
{
	req_free(hc);
	free(hc);
}

struct conn *http_hijack(struct http_req *req, const struct conn_ops *ops, void *ud)
{
	struct http_conn *hc = HC(req);
	struct conn *c = hc->c;

	assert(hc->state == H_HANDLER && !hc->hijacked);
	hc->hijacked = true;
	conn_set_deadline(c, CONN_NEVER);
	conn_set_ops(c, ops, ud);
	if (!hc->in_read) {
		/* Answered later: the conn was paused with the bytes after the
		 * request; they now go to the new owner. */
		hc_free(hc);
		conn_read_resume(c);
	}
	return c;
}

/* ---- connection callbacks ------------------------------------------ */

/* Runs the handler of the request just parsed; REST[0..LEN) is the input
 * read after it. */
static void dispatch(struct http_conn *hc, const char *rest, size_t len)
{
	hc->state = H_HANDLER;
	hc->keep_alive = llhttp_should_keep_alive(&hc->parser);
	hc->req.body = hc->body ? hc->body : "";
	hc->req.handed = hc->handed;
	hc->handed = false;
	if (hc->body)
		hc->body[hc->req.body_len] = '\0';
	conn_set_deadline(hc->c, CONN_NEVER);
	hc->rest = rest;
	hc->rest_len = len;
	hc->fn(&hc->req, hc->req.arg);
	hc->rest = NULL; /* (in_read: HC is alive even if the conn closed) */
	hc->rest_len = 0;
}

static size_t http_on_read(struct conn *c, const char *data, size_t len)
{
	struct http_conn *hc = c->ud;
	const char *p = data, *end = data + len;
	llhttp_errno_t e;

	hc->in_read = true;
	while (p < end && !hc->dead && !hc->hijacked) {
		if (hc->state == H_DONE)
			break;
		if (hc->state == H_HANDLER) {
			conn_read_pause(c); /* answered later; keep the rest */
			break;
		}
		if (hc->state == H_IDLE && conn_write_blocked(c)) {
			hc->write_paused = true; /* read no more while we can't answer */
			conn_read_pause(c);
			break;
		}
		hc->chunk = p;
		hc->chunk_end = end;
		e = llhttp_execute(&hc->parser, p, (size_t)(end - p));
		if (e == HPE_OK) {
			if (hc->state == H_HEAD) {
				/* The section goes on in the next chunk. */
				hc->head_prev = head_size(hc, end);
				hc->msg_start = NULL;
				if (hc->head_prev > head_max(cf(hc)))
					http_fail(hc, 431);
			}
			p = end;
			break;
		}
		if (e == HPE_PAUSED) {
			p = llhttp_get_error_pos(&hc->parser);
			llhttp_resume(&hc->parser);
			dispatch(hc, p, (size_t)(end - p));
			continue;
		}
		p = end;
		if (e == HPE_PAUSED_UPGRADE) {
			http_fail(hc, 0); /* not reached: upgrades are never resumed */
			break;
		}
		log_debug("http fd %d: %s: %s", c->fd, llhttp_errno_name(e),
			  llhttp_get_error_reason(&hc->parser));
		http_fail(hc, errno_status(hc, e));
	}
	hc->in_read = false;
	if (hc->dead || hc->hijacked)
		hc_free(hc); /* the conn is closed, or another layer's now */
	else if (hc->state == H_HANDLER)
		conn_read_pause(c); /* answered later: read nothing meanwhile */
	return (size_t)(p - data);
}

static void http_on_eof(struct conn *c)
{
	struct http_conn *hc = c->ud;

	switch (hc->state) {
	case H_IDLE:
		conn_shutdown(c); /* write what is queued, then close */
		break;
	case H_HANDLER:
		hc->closing = true;
		break;
	default:
		conn_close(c); /* a request cut short */
		break;
	}
}

static void http_on_timeout(struct conn *c)
{
	struct http_conn *hc = c->ud;

	if (hc->state == H_HEAD || hc->state == H_BODY)
		http_fail(hc, 408);
	else
		conn_close(c);
}

static void http_on_flushed(struct conn *c)
{
	struct http_conn *hc = c->ud;

	if (hc->redispatch && hc->state == H_HANDLER) {
		/* As http_on_read runs a handler: HC stays alive meanwhile. The
		 * input after the request waits in the conn (paused). */
		hc->redispatch = false;
		hc->in_read = true;
		hc->rest = c->in;
		hc->rest_len = c->in_len;
		hc->fn(&hc->req, hc->req.arg);
		hc->in_read = false;
		hc->rest = NULL;
		hc->rest_len = 0;
		if (hc->dead) {
			hc_free(hc);
		} else if (hc->hijacked) {
			hc_free(hc);
			conn_read_resume(c);
		} else if (hc->state == H_IDLE) {
			conn_read_resume(c); /* answered at once */
		}
		return;
	}
	if (hc->write_paused) {
		hc->write_paused = false;
		conn_read_resume(c);
	}
}

static void http_on_drain(struct conn *c)
{
	struct http_conn *hc = c->ud;

	hc->closing = true;
	if (hc->state != H_IDLE)
		return; /* answered with Connection: close */
	/* An idle keep-alive connection is not closed at once: its client may
	 * be sending a request right now, and a close crossing it fails that
	 * request. For a short grace its next request is still answered (with
	 * Connection: close); a connection still idle after it is closed. One
	 * that never carried a request was accepted moments ago (a binary
	 * upgrade or a reload drains workers under load): its client, perhaps
	 * busy, has not sent the request it opened it for yet, so it gets
	 * longer, as Go's Server.Shutdown gives new connections 5 s. The
	 * header timeout still bounds both. */
	int64_t grace = c->w->now_ms + (hc->used ? HTTP_DRAIN_IDLE_MS : HTTP_DRAIN_NEW_MS);
	if (c->deadline > grace)
		conn_set_deadline(c, grace);
}

static void http_on_close(struct conn *c)
{
	struct http_conn *hc = c->ud;

	if (hc->state == H_HANDLER && hc->abort_fn)
		hc->abort_fn(hc->abort_arg);
	if (hc->in_read)
		hc->dead = true; /* http_on_read frees it */
	else
		hc_free(hc);
}

static const struct conn_ops http_ops = {
	.name = "http",
	.on_read = http_on_read,
	.on_eof = http_on_eof,
	.on_timeout = http_on_timeout,
	.on_flushed = http_on_flushed,
	.on_drain = http_on_drain,
	.on_close = http_on_close,
};

/* A fresh HTTP layer on conn C (its ops and ud are set here), waiting
 * for a request until DEADLINE. */
static void serve(struct conn *c, int64_t deadline)
{
	struct http_conn *hc = xcalloc(1, sizeof(*hc));
	const struct conf *k = c->w->conf;

	hc->c = c;
	conn_set_ops(c, &http_ops, hc);
	llhttp_init(&hc->parser, HTTP_REQUEST, &H.settings);
	hc->parser.data = hc;
	hc->state = H_IDLE;
	req_free(hc);
	conn_set_queue_limit(c, 0);
	conn_set_write_timeout(c, k->write_timeout_ms);
	conn_set_deadline(c, deadline);
	if (c->w->draining)
		hc->closing = true;
}

void http_accept(struct worker *w, int fd, bool internal)
{
	SSL_CTX *ctx = tls_ctx(internal);
	struct conn *c = conn_new(w, fd, &http_ops, NULL);

	/* The header timeout bounds the handshake too, as in Go's server. */
	serve(c, after(w->now_ms, header_timeout(w->conf)));
	((struct http_conn *)c->ud)->internal = internal;
	if (ctx)
		conn_start_tls(c, ctx);
}

void http_accept_handed(struct worker *w, int fd, const char *data, size_t len)
{
	struct conn *c = conn_new(w, fd, &http_ops, NULL);
	struct http_conn *hc;

	serve(c, after(w->now_ms, header_timeout(w->conf)));
	hc = c->ud;
	hc->handed = true;
	conn_feed(c, data, len);
}

void http_adopt(struct conn *c)
{
	serve(c, after(c->w->now_ms, idle_timeout(c->w->conf)));
	conn_read_resume(c);
}

void http_drain(struct worker *w)
{
	conn_drain_all(w);
}

/* ---- routes ------------------------------------------------------------ */

int http_route_add(const char *path, unsigned flags, uint64_t methods,
		   http_handler_fn fn, void *arg)
{
	size_t i;

	for (i = 0; i < H.n; i++)
		if (H.v[i].flags == flags && strcmp(H.v[i].path, path) == 0)
			return RT_INVAL;
	if (H.n == H.cap) {
		H.cap = H.cap ? 2 * H.cap : 8;
		H.v = xrealloc(H.v, H.cap * sizeof(H.v[0]));
	}
	H.v[H.n++] = (struct route){
		.path = xstrdup(path), .len = strlen(path), .flags = flags,
		.methods = methods, .fn = fn, .arg = arg,
	};
	return RT_OK;
}

void http_route_remove(const char *path, unsigned flags)
{
	size_t i;

	for (i = 0; i < H.n; i++) {
		if (H.v[i].flags == flags && strcmp(H.v[i].path, path) == 0) {
			free(H.v[i].path);
			H.v[i] = H.v[--H.n];
			return;
		}
	}
}

void http_routes_free(void)
{
	size_t i;

	for (i = 0; i < H.n; i++)
		free(H.v[i].path);
	free(H.v);
	free(H.health_path);
	H.v = NULL;
	H.n = H.cap = 0;
	H.health_path = NULL;
}

/* GET (or anything) /health: 200 {} while the node serves and its
 * engine can serve it, in every worker and the broker (Centrifugo's
 * answer); else 503 with the reason, e.g. the Redis shard that is down
 * (a load balancer then sends clients to another node). */
static void health_handler(struct http_req *req, void *arg)
{
	char why[256];
	if (node_health(req->conn->w, why, sizeof(why))) {
		http_respond(req, 200, "application/json", "{}", 2);
		return;
	}
	struct jw out = { 0 };
	jw_lit(&out, "{\"error\":");
	jw_str(&out, why, strlen(why));
	jw_lit(&out, "}");
	http_respond(req, 503, "application/json", out.buf, out.len);
	jw_free(&out);
}

static void builtin_routes(struct worker *w)
{
	const struct conf *k = w->conf;

	if (H.health_path) {
		http_route_remove(H.health_path, HTTP_ROUTE_EXACT | HTTP_ROUTE_INTERNAL);
		free(H.health_path);
		H.health_path = NULL;
	}
	if (k->health_enabled) {
		const char *path = k->health_prefix && *k->health_prefix ? k->health_prefix : "/health";

		if (http_route_add(path, HTTP_ROUTE_EXACT | HTTP_ROUTE_INTERNAL, HTTP_METHODS_ANY, health_handler,
				   NULL) == RT_OK)
			H.health_path = xstrdup(path);
		else
			log_warn("health.handler_prefix %s: path already taken by another handler", path);
	}
}

void http_init(struct worker *w)
{
	llhttp_settings_t *s = &H.settings;

	llhttp_settings_init(s);
	s->on_message_begin = on_message_begin;
	s->on_method = on_method;
	s->on_url = on_url;
	s->on_url_complete = on_url_complete;
	s->on_version = on_version;
	s->on_version_complete = on_version_complete;
	s->on_header_field = on_header_field;
	s->on_header_field_complete = on_header_field_complete;
	s->on_header_value = on_header_value;
	s->on_header_value_complete = on_header_value_complete;
	s->on_headers_complete = on_headers_complete;
	s->on_body = on_body;
	s->on_chunk_header = on_chunk_header;
	s->on_message_complete = on_message_complete;
	builtin_routes(w);
}

void http_reconfigure(struct worker *w)
{
	builtin_routes(w);
}
