/*
 * hsr.c - the streaming-response reader of hsr.h.
 *
 * States: CONNECTING -> IDLE (connected, no request) -> HEAD (request
 * written) -> SIZE / DATA / CRLF / TRAILER through each chunk, or RAW
 * without chunking -> IDLE again after the last chunk.
 *
 * Chunks are removed in place, in the input buffer sock.c hands over,
 * without copying what arrives whole. Each piece of chunk payload goes up
 * as soon as it is read; the layer above consumes its whole messages and
 * leaves the start of a cut one. Only that remainder moves: onto the front
 * of the next payload (over the chunk lines between them), or, at the end
 * of the read, up against the raw bytes not parsed yet, so that sock.c
 * carries both over and `pre` says how many of the carried bytes are body
 * already. A server that writes one chunk per flush, as rotor does, makes
 * a read's chunks whole messages: nothing moves but the few bytes of a
 * message a read cut in two.
 */
#include "hsr.h"
#include "hcli.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

enum { R_CLOSED, R_CONNECTING, R_IDLE, R_HEAD, R_SIZE, R_DATA, R_CRLF, R_TRAILER, R_RAW };

#define MAX_HEAD 8192           /* response head */
#define MAX_LINE 256            /* chunk size or trailer line */
#define MAX_CHUNK (1u << 30)

void hsr_close(struct hsr *r)
{
	sock_close(&r->s);
	r->state = R_CLOSED;
	r->pre = r->left = 0;
}

static void end(struct hsr *r, enum hsr_end why, int detail)
{
	hsr_close(r);
	r->ops->on_end(r, why, detail);
}

bool hsr_busy(const struct hsr *r)
{
	return r->state >= R_HEAD;
}

int hsr_request(struct hsr *r, const void *req, size_t n)
{
	if (r->state != R_IDLE)
		return ENOTCONN;
	r->state = R_HEAD;
	r->pre = r->left = 0;
	int err = sock_write(&r->s, req, n);
	if (err)
		hsr_close(r);
	return err;
}

/* The response head in [p, e) (e after its blank line). Returns 0 with the
 * body's state set, or -1 after ending r. */
static int head(struct hsr *r, const uint8_t *p, const uint8_t *e)
{
	const char *h = (const char *)p, *he = (const char *)e - 2;
	int status = 0;
	if (e - p >= 12 && memcmp(h, "HTTP/1.", 7) == 0)
		for (int i = 9; i < 12 && h[i] >= '0' && h[i] <= '9'; i++)
			status = status * 10 + (h[i] - '0');
	if (status != 200) {
		end(r, status ? HSR_END_STATUS : HSR_END_PROTO, status);
		return -1;
	}
	size_t tl;
	const char *te = hcli_header(h, he, "transfer-encoding:", &tl);
	r->state = te && tl == 7 && strncasecmp(te, "chunked", 7) == 0 ? R_SIZE : R_RAW;
	return 0;
}

/* The chunk size line [p, e) (e at its '\n'): 0 and *size, or -1. */
static int chunk_size(const uint8_t *p, const uint8_t *e, uint32_t *size)
{
	uint64_t v = 0;
	const uint8_t *q = p;
	for (; q < e; q++) {
		uint8_t c = *q;
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') :
			     (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (unsigned)((c | 0x20) - 'a' + 10) : 16;
		if (d == 16)
			break;
		v = v * 16 + d;
		if (v > MAX_CHUNK)
			return -1;
	}
	if (q == p || (q < e && *q != ';' && *q != '\r'))
		return -1;
	*size = (uint32_t)v;
	return 0;
}

static size_t on_data(struct sock *s, uint8_t *p, size_t n, uint64_t now)
{
	struct hsr *r = (struct hsr *)s;
	size_t i = r->pre, bs = 0, bl = r->pre;         /* body not consumed: [bs, bs + bl) */
	const uint8_t *e;
	r->pre = 0;
	while (i < n) {
		switch (r->state) {
		case R_HEAD:
			e = memmem(p + i, n - i, "\r\n\r\n", 4);
			if (e == NULL) {
				if (n - i > MAX_HEAD)
					goto proto;
				goto out;
			}
			if (head(r, p + i, e + 4) < 0)
				return n;
			i = (size_t)(e + 4 - p);
			break;
		case R_SIZE:
			e = memchr(p + i, '\n', n - i);
			if (e == NULL) {
				if (n - i > MAX_LINE)
					goto proto;
				goto out;
			}
			if (chunk_size(p + i, e, &r->left) < 0)
				goto proto;
			i = (size_t)(e + 1 - p);
			r->state = r->left ? R_DATA : R_TRAILER;
			break;
		case R_DATA:
		case R_RAW: {
			size_t k = n - i;
			if (r->state == R_DATA && k > r->left)
				k = r->left;
			if (bl && bs + bl != i)         /* join the cut message to this piece */
				memmove(p + i - bl, p + bs, bl);
			bs = i - bl;
			bl += k;
			i += k;
			if (r->state == R_DATA && (r->left -= (uint32_t)k) == 0)
				r->state = R_CRLF;
			size_t u = r->ops->on_body(r, p + bs, bl, now);
			if (r->state == R_CLOSED)
				return n;
			bs += u;
			bl -= u;
			break;
		}
		case R_CRLF:
			if (n - i < 2)
				goto out;
			if (p[i] != '\r' || p[i + 1] != '\n')
				goto proto;
			i += 2;
			r->state = R_SIZE;
			break;
		case R_TRAILER: {
			e = memchr(p + i, '\n', n - i);
			if (e == NULL) {
				if (n - i > MAX_LINE)
					goto proto;
				goto out;
			}
			bool blank = e == p + i || (e == p + i + 1 && p[i] == '\r');
			i = (size_t)(e + 1 - p);
			if (!blank)
				break;
			if (bl)                         /* a message cut by the end */
				goto proto;
			r->state = R_IDLE;
			r->ops->on_done(r);
			if (r->state == R_CLOSED)
				return n;
			break;                          /* a new request's response may follow */
		}
		default:                                /* bytes nobody asked for */
			goto proto;
		}
	}
out:
	if (bl && bs + bl != i)
		memmove(p + i - bl, p + bs, bl);
	r->pre = (uint32_t)bl;
	return i - bl;
proto:
	end(r, HSR_END_PROTO, 0);
	return n;
}

static void on_connect(struct sock *s)
{
	struct hsr *r = (struct hsr *)s;
	r->state = R_IDLE;
	r->ops->on_connect(r);
}

static void on_error(struct sock *s, int err)
{
	struct hsr *r = (struct hsr *)s;
	uint8_t st = r->state;
	r->state = R_CLOSED;
	r->pre = r->left = 0;
	r->ops->on_end(r, st == R_CONNECTING ? HSR_END_CONNECT : st == R_HEAD ? HSR_END_STATUS : HSR_END_EOF,
		       st == R_HEAD ? 0 : err);
}

static const struct sock_ops hsr_sock_ops = { on_connect, on_data, on_error };

int hsr_connect(struct hsr *r, const struct sockaddr_in *dst, unsigned k, const struct hsr_ops *ops)
{
	int err = sock_connect(&r->s, dst, k, &hsr_sock_ops);
	r->ops = ops;
	r->pre = r->left = 0;
	r->state = err ? R_CLOSED : R_CONNECTING;
	return err;
}
