/*
 * hcli.c - the server-API client of hcli.h.
 *
 * A request is formatted into one buffer (head and body) and handed to
 * sock_write, so pipelined requests go out back to back. Responses are
 * parsed from the shared input buffer; an incomplete one is left
 * unconsumed for sock.c to carry over. Only Content-Length framing is
 * understood: anything else ends the connection as unparseable.
 */
#include "hcli.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { H_CONNECTING, H_OPEN, H_DONE };

#define MAX_RESP (1u << 20)

static struct sockaddr_in H_dst;
static char H_host[160];        /* "Host: ...\r\n" */
static char H_key[384];         /* "X-API-Key: ...\r\n" or "" */

void hcli_setup(const struct sockaddr_in *dst, const char *host, const char *api_key)
{
	H_dst = *dst;
	snprintf(H_host, sizeof(H_host), "Host: %s\r\n", host);
	snprintf(H_key, sizeof(H_key), "%s%s%s", api_key ? "X-API-Key: " : "", api_key ? api_key : "",
		 api_key ? "\r\n" : "");
}

void hcli_close(struct hcli *h)
{
	sock_close(&h->s);
	h->state = H_DONE;
	h->inflight = 0;
}

static void end(struct hcli *h, int err)
{
	unsigned lost = h->inflight;
	hcli_close(h);
	h->ops->on_end(h, err, lost);
}

bool hcli_ready(const struct hcli *h)
{
	return h->state == H_OPEN;
}

int hcli_post(struct hcli *h, const char *path, const char *ctype, const void *body, size_t n)
{
	if (h->state != H_OPEN)
		return ENOTCONN;
	char stackbuf[8192];
	size_t need = n + 1024;
	char *b = need <= sizeof(stackbuf) ? stackbuf : malloc(need);
	if (b == NULL)
		abort();
	int hl = snprintf(b, 1024, "POST %s HTTP/1.1\r\n%s%sContent-Type: %s\r\n"
			  "Content-Length: %zu\r\n\r\n", path, H_host, h->api ? H_key : "",
			  ctype ? ctype : "application/json", n);
	if (hl < 0 || hl >= 1024) {
		if (b != stackbuf)
			free(b);
		hcli_close(h);
		return EINVAL;
	}
	memcpy(b + hl, body, n);
	int err = sock_write(&h->s, b, (size_t)hl + n);
	if (b != stackbuf)
		free(b);
	if (err) {
		hcli_close(h);
		return err;
	}
	h->inflight++;
	return 0;
}

static void on_connect(struct sock *s)
{
	struct hcli *h = (struct hcli *)s;
	h->state = H_OPEN;
	h->ops->on_ready(h);
}

const char *hcli_header(const char *p, const char *e, const char *name, size_t *len)
{
	size_t nl = strlen(name);
	while (p < e) {
		const char *eol = memchr(p, '\n', (size_t)(e - p));
		if (eol == NULL)
			eol = e;
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl, *ve = eol;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			*len = (size_t)(ve - v);
			return v;
		}
		p = eol + 1;
	}
	return NULL;
}

static size_t on_data(struct sock *s, uint8_t *p, size_t n, uint64_t now)
{
	struct hcli *h = (struct hcli *)s;
	size_t off = 0;
	while (h->state == H_OPEN && off < n) {
		const uint8_t *q = p + off;
		size_t left = n - off;
		const uint8_t *e = memmem(q, left, "\r\n\r\n", 4);
		if (e == NULL) {
			if (left > MAX_RESP)
				goto bad;
			break;
		}
		const char *hs = (const char *)q, *he = (const char *)e + 2;
		int status = 0;
		if (left < 12 || memcmp(hs, "HTTP/1.", 7) != 0)
			goto bad;
		for (int i = 9; i < 12 && hs[i] >= '0' && hs[i] <= '9'; i++)
			status = status * 10 + (hs[i] - '0');
		if (status < 100)
			goto bad;
		size_t vl;
		const char *cl = hcli_header(hs, he, "content-length:", &vl);
		if (cl == NULL || hcli_header(hs, he, "transfer-encoding:", &vl))
			goto bad;
		size_t blen = strtoul(cl, NULL, 10);
		size_t total = (size_t)(e + 4 - q) + blen;
		if (total > MAX_RESP)
			goto bad;
		if (left < total)
			break;
		const char *conn = hcli_header(hs, he, "connection:", &vl);
		bool closing = conn && strncasecmp(conn, "close", 5) == 0;
		if (h->inflight > 0)
			h->inflight--;
		unsigned lost = h->inflight;
		if (closing)
			hcli_close(h);
		h->ops->on_response(h, status, e + 4, blen, now);
		off += total;
		if (closing) {
			h->ops->on_end(h, 0, lost);
			return n;
		}
	}
	return off;
bad:
	end(h, -1);
	return n;
}

static void on_error(struct sock *s, int err)
{
	struct hcli *h = (struct hcli *)s;
	unsigned lost = h->inflight;
	h->state = H_DONE;
	h->inflight = 0;
	h->ops->on_end(h, err, lost);
}

static const struct sock_ops hcli_sock_ops = { on_connect, on_data, on_error };

int hcli_connect(struct hcli *h, unsigned k, bool api, const struct hcli_ops *ops)
{
	int err = sock_connect(&h->s, &H_dst, k, &hcli_sock_ops);
	h->ops = ops;
	h->api = api;
	h->inflight = 0;
	h->state = err ? H_DONE : H_CONNECTING;
	return err;
}
