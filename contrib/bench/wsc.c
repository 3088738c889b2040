/*
 * wsc.c - the WebSocket client of wsc.h.
 *
 * States: CONNECTING (TCP) -> HANDSHAKE (request sent, waiting for the
 * 101) -> OPEN. The server's reply is parsed from the shared input buffer;
 * bytes after it are already frames. Frames are parsed in place; a partial
 * frame stays unconsumed (sock.c carries it over), so the only memory a
 * connection owns is a fragmented message's reassembly buffer. Control
 * frames are answered at once: ping -> pong with the same payload, close ->
 * close with the same code, then the socket is closed and on_end reports
 * the code.
 *
 * permessage-deflate (wsc_setup): the offer asks nothing; the answer must
 * carry server_no_context_takeover, so that every compressed message
 * inflates on its own, through the one inflater of the process (reset per
 * message) into one growing buffer: a connection holds no zlib state.
 *
 * Frames out are masked (RFC 6455 5.3) with keys from a xorshift generator
 * seeded once from getrandom: unpredictability does not matter here, the
 * mask being mandatory does.
 */
#include "wsc.h"
#include "hcli.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

enum { W_CONNECTING, W_HANDSHAKE, W_OPEN, W_DONE };

#define MAX_FRAME (256u * 1024)         /* larger server frames are refused */
#define MAX_HEAD 8192                   /* the server's handshake reply */
#define MAX_INFLATED (16u * 1024 * 1024) /* larger inflated messages are refused */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static struct sockaddr_in W_dst;
static char W_host[128];
static uint64_t W_rng;
static bool W_deflate;
static z_stream W_z;
static uint8_t *W_zbuf;
static size_t W_zcap;

static uint32_t rnd32(void)
{
	W_rng ^= W_rng << 13;
	W_rng ^= W_rng >> 7;
	W_rng ^= W_rng << 17;
	return (uint32_t)(W_rng >> 16);
}

void wsc_setup(const struct sockaddr_in *dst, const char *host, bool deflate)
{
	W_dst = *dst;
	W_deflate = deflate;
	if (deflate && inflateInit2(&W_z, -15) != Z_OK)
		abort();
	snprintf(W_host, sizeof(W_host), "%s", host);
	if (getrandom(&W_rng, sizeof(W_rng), 0) != sizeof(W_rng) || W_rng == 0)
		W_rng = 0x9e3779b97f4a7c15ull;
}

static void end(struct wsc *w, enum wsc_end why, int detail)
{
	sock_close(&w->s);
	free(w->frag);
	w->frag = NULL;
	w->frag_len = 0;
	w->state = W_DONE;
	w->ops->on_end(w, why, detail);
}

void wsc_close(struct wsc *w)
{
	sock_close(&w->s);
	free(w->frag);
	w->frag = NULL;
	w->frag_len = 0;
	w->state = W_DONE;
}

/* Writes one masked frame with opcode op. */
static int send_frame(struct wsc *w, unsigned op, const void *p, size_t n)
{
	uint8_t stackbuf[4096];
	size_t need = n + 14;
	uint8_t *f = need <= sizeof(stackbuf) ? stackbuf : malloc(need);
	if (f == NULL)
		abort();
	size_t h = 0;
	f[h++] = (uint8_t)(0x80 | op);
	if (n < 126) {
		f[h++] = (uint8_t)(0x80 | n);
	} else if (n < 65536) {
		f[h++] = 0x80 | 126;
		f[h++] = (uint8_t)(n >> 8);
		f[h++] = (uint8_t)n;
	} else {
		f[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			f[h++] = (uint8_t)((uint64_t)n >> (8 * i));
	}
	uint32_t k = rnd32();
	uint8_t mask[4] = { (uint8_t)k, (uint8_t)(k >> 8), (uint8_t)(k >> 16), (uint8_t)(k >> 24) };
	memcpy(f + h, mask, 4);
	h += 4;
	const uint8_t *src = p;
	for (size_t i = 0; i < n; i++)
		f[h + i] = src[i] ^ mask[i & 3];
	int err = sock_write(&w->s, f, h + n);
	if (f != stackbuf)
		free(f);
	return err;
}

bool wsc_is_open(const struct wsc *w)
{
	return w->state == W_OPEN;
}

int wsc_send(struct wsc *w, bool binary, const void *p, size_t n)
{
	if (w->state != W_OPEN)
		return ENOTCONN;
	int err = send_frame(w, binary ? 2 : 1, p, n);
	if (err)
		wsc_close(w);
	return err;
}

static void key_of(const uint8_t nonce[16], char out[25])
{
	EVP_EncodeBlock((unsigned char *)out, nonce, 16);
}

static void on_connect(struct sock *s)
{
	struct wsc *w = (struct wsc *)s;
	char key[25], req[1280];
	for (int i = 0; i < 16; i += 4) {
		uint32_t r = rnd32();
		memcpy(w->nonce + i, &r, 4);
	}
	key_of(w->nonce, key);
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
			 "Sec-WebSocket-Version: 13\r\n%s%s\r\n",
			 w->path, W_host, key,
			 w->protobuf ? "Sec-WebSocket-Protocol: centrifuge-protobuf\r\n" : "",
			 W_deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
	w->state = W_HANDSHAKE;
	int err = sock_write(s, req, (size_t)n);
	if (err)
		end(w, WSC_END_HANDSHAKE, 0);
}

/* Parses the server's reply at p. Returns the bytes it took, 0 if it is not
 * complete yet, or (size_t)-1 after ending the connection. */
static size_t handshake(struct wsc *w, const uint8_t *p, size_t n)
{
	const uint8_t *e = memmem(p, n, "\r\n\r\n", 4);
	if (e == NULL) {
		if (n > MAX_HEAD) {
			end(w, WSC_END_HANDSHAKE, 0);
			return (size_t)-1;
		}
		return 0;
	}
	const char *h = (const char *)p, *he = (const char *)e + 2;
	int status = 0;
	if (n >= 12 && memcmp(h, "HTTP/1.1 ", 9) == 0)
		for (int i = 9; i < 12 && h[i] >= '0' && h[i] <= '9'; i++)
			status = status * 10 + (h[i] - '0');
	if (status != 101) {
		end(w, WSC_END_HANDSHAKE, status);
		return (size_t)-1;
	}
	char key[25], cat[64], want[29];
	unsigned char sha[SHA_DIGEST_LENGTH];
	key_of(w->nonce, key);
	int cl = snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
	SHA1((unsigned char *)cat, (size_t)cl, sha);
	EVP_EncodeBlock((unsigned char *)want, sha, SHA_DIGEST_LENGTH);
	size_t al, pl, xl;
	const char *acc = hcli_header(h, he, "sec-websocket-accept:", &al);
	const char *proto = hcli_header(h, he, "sec-websocket-protocol:", &pl);
	const char *ext = hcli_header(h, he, "sec-websocket-extensions:", &xl);
	if (W_deflate && (ext == NULL || !memmem(ext, xl, "permessage-deflate", 18) ||
			  !memmem(ext, xl, "server_no_context_takeover", 26))) {
		end(w, WSC_END_HANDSHAKE, status);
		return (size_t)-1;
	}
	if (acc == NULL || al != 28 || memcmp(acc, want, 28) != 0 ||
	    (w->protobuf && (proto == NULL || pl != 19 || memcmp(proto, "centrifuge-protobuf", 19) != 0))) {
		end(w, WSC_END_HANDSHAKE, status);
		return (size_t)-1;
	}
	w->state = W_OPEN;
	w->ops->on_open(w);
	return (size_t)(e + 4 - p);
}

/* Inflates one compressed message [p, p + n) into W_zbuf; its length, or
 * (size_t)-1 when it does not inflate or inflates past MAX_INFLATED. */
static size_t inflate_msg(const uint8_t *p, size_t n)
{
	static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };
	size_t have = 0;
	int rc = Z_OK;

	inflateReset(&W_z);
	for (int part = 0; part < 2; part++) {
		W_z.next_in = (Bytef *)(uintptr_t)(part ? tail : p);
		W_z.avail_in = (uInt)(part ? sizeof(tail) : n);
		/* (a full buffer may hide output still pending in zlib) */
		while ((W_z.avail_in > 0 || have == W_zcap) && rc != Z_STREAM_END) {
			if (have == W_zcap) {
				if (W_zcap >= MAX_INFLATED)
					return (size_t)-1;
				W_zcap = W_zcap ? W_zcap * 2 : 65536;
				if ((W_zbuf = realloc(W_zbuf, W_zcap)) == NULL)
					abort();
			}
			W_z.next_out = W_zbuf + have;
			W_z.avail_out = (uInt)(W_zcap - have);
			rc = inflate(&W_z, Z_SYNC_FLUSH);
			have = W_zcap - W_z.avail_out;
			if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
				return (size_t)-1;
		}
	}
	return have;
}

/* Hands a whole message up, inflated first if Z. Returns 0, or -1 once w
 * is closed. */
static int message(struct wsc *w, bool z, const uint8_t *p, size_t n, uint64_t now)
{
	if (z) {
		if ((n = inflate_msg(p, n)) == (size_t)-1) {
			end(w, WSC_END_PROTO, 0);
			return -1;
		}
		p = W_zbuf;
	}
	w->ops->on_message(w, p, n, now);
	return w->state == W_OPEN ? 0 : -1;
}

/* Handles one complete frame. Returns 0, or -1 once w is closed. */
static int frame(struct wsc *w, unsigned b0, const uint8_t *pl, size_t len, uint64_t now)
{
	unsigned op = b0 & 0x0f;
	bool fin = b0 & 0x80, z = b0 & 0x40;
	if ((b0 & 0x30) || (z && (!W_deflate || (op != 0x1 && op != 0x2))))
		goto proto;
	switch (op) {
	case 0x1:
	case 0x2:
		if (w->frag != NULL)
			goto proto;
		if (fin)
			return message(w, z, pl, len, now);
		w->frag_z = z;
		w->frag = malloc(len ? len : 1);
		if (w->frag == NULL)
			abort();
		memcpy(w->frag, pl, len);
		w->frag_len = (uint32_t)len;
		return 0;
	case 0x0: {
		if (w->frag == NULL || w->frag_len + len > MAX_FRAME)
			goto proto;
		uint8_t *f = realloc(w->frag, w->frag_len + len + 1);
		if (f == NULL)
			abort();
		memcpy(f + w->frag_len, pl, len);
		w->frag = f;
		w->frag_len += (uint32_t)len;
		if (fin) {
			uint8_t *m = w->frag;
			int r;
			w->frag = NULL;
			r = message(w, w->frag_z, m, w->frag_len, now);
			free(m);
			w->frag_len = 0;
			return r;
		}
		return 0;
	}
	case 0x8: {
		int code = len >= 2 ? (pl[0] << 8 | pl[1]) : 1005;
		send_frame(w, 0x8, pl, len >= 2 ? 2 : 0);
		end(w, WSC_END_CLOSE, code);
		return -1;
	}
	case 0x9: {
		if (!fin || len > 125)
			goto proto;
		int err = send_frame(w, 0xA, pl, len);
		if (err)
			end(w, WSC_END_EOF, err);
		return err ? -1 : 0;
	}
	case 0xA:
		return 0;
	default:
		goto proto;
	}
proto:
	end(w, WSC_END_PROTO, 0);
	return -1;
}

static size_t on_data(struct sock *s, uint8_t *p, size_t n, uint64_t now)
{
	struct wsc *w = (struct wsc *)s;
	size_t off = 0;
	if (w->state == W_HANDSHAKE) {
		size_t used = handshake(w, p, n);
		if (used == (size_t)-1 || used == 0)
			return used == 0 ? 0 : n;
		off = used;
	}
	while (w->state == W_OPEN && n - off >= 2) {
		unsigned b0 = p[off], b1 = p[off + 1];
		size_t hl = 2;
		uint64_t len = b1 & 0x7f;
		if (b1 & 0x80) {         /* a server never masks */
			end(w, WSC_END_PROTO, 0);
			return n;
		}
		if (len == 126) {
			if (n - off < 4)
				break;
			len = (uint64_t)p[off + 2] << 8 | p[off + 3];
			hl = 4;
		} else if (len == 127) {
			if (n - off < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | p[off + 2 + i];
			hl = 10;
		}
		if (len > MAX_FRAME) {
			end(w, WSC_END_PROTO, 0);
			return n;
		}
		if (n - off - hl < len)
			break;
		if (frame(w, b0, p + off + hl, (size_t)len, now) < 0)
			return n;
		off += hl + (size_t)len;
	}
	return off;
}

static void on_error(struct sock *s, int err)
{
	struct wsc *w = (struct wsc *)s;
	end(w, w->state == W_CONNECTING ? WSC_END_CONNECT :
	       w->state == W_HANDSHAKE ? WSC_END_HANDSHAKE : WSC_END_EOF, err);
}

static const struct sock_ops wsc_sock_ops = { on_connect, on_data, on_error };

int wsc_connect(struct wsc *w, unsigned k, const char *path, bool protobuf, const struct wsc_ops *ops)
{
	free(w->frag);
	int err = sock_connect(&w->s, &W_dst, k, &wsc_sock_ops);
	w->ops = ops;
	w->frag = NULL;
	w->frag_len = 0;
	w->protobuf = protobuf;
	w->path = path;
	w->state = err ? W_DONE : W_CONNECTING;
	return err;
}
