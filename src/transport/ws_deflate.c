/*
 * ws_deflate.c - permessage-deflate (RFC 7692) for ws.c (ws_deflate.h).
 *
 * Model: no message depends on another, in either direction. That is what
 * lets compression cost nothing per connection:
 *
 *  - Out: each message is deflated alone, from a fresh state, and the
 *    result (ending with a sync flush, so on a byte boundary) serves every
 *    connection that carries the message; a frame of several messages is
 *    their chunks back to back, one valid deflate stream because no chunk
 *    refers back into another. So our side never takes context over, and
 *    the response says server_no_context_takeover (RFC 7692 7.1.1.1 lets a
 *    server add it unasked).
 *
 *  - In: the response also says client_no_context_takeover, which RFC 7692
 *    7.1.1.2 lets a server add to any offer. A client that accepts the
 *    response must then compress each message from an empty window, so one
 *    inflater per worker, reset before each message, decodes every
 *    connection's messages, and a connection that never sends a compressed
 *    frame holds no zlib state at all. The alternative, an inflater per
 *    connection that keeps the client's context, would cost some 40 KB
 *    (zlib's 32 KiB window plus its state) for each connection that sends
 *    even one compressed message; this is what gorilla/websocket, whose
 *    server Centrifugo runs, answers too.
 *
 * Window bits: our output never refers further back than the message it
 * belongs to, within 2^wbits bytes: server_max_window_bits=N (9..15) is
 * honoured by deflating with an N-bit window. zlib's raw deflate has no
 * 8-bit window (deflateInit2 turns 8 into 9), so an offer that insists on
 * 8 is declined rather than answered with a promise we would break. The
 * client's window needs nothing from us: we inflate with 15 bits, which
 * decodes any smaller window.
 *
 * Memory: the inflater (about 7 KB, plus its 32 KiB window allocated on
 * first use) and its output buffer (up to the largest message inflated,
 * dropped back when it passed WSD_KEEP) are the worker's; a deflater per
 * window size in use (about 256 KiB at 15 bits) is too.
 */
#include "config.h"
#include "ws_deflate.h"
#include "conn.h"
#include "util.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define WSD_KEEP 65536 /* output buffer kept between messages */

static struct {
	z_stream in;
	bool in_ready;
	char *buf;            /* inflated output */
	size_t cap;
	z_stream out[7];      /* deflaters for window bits 9..15, lazily */
	int out_level[7];     /* their level; 0: not initialised */
} Z;

static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };

/* ---- negotiation -------------------------------------------------------- */

static bool tchar(int c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *ows(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* A token at *S (advanced past it) into OUT (NUL-terminated, at most SIZE
 * - 1 bytes); false when there is none or it is too long. */
static bool get_token(const char **s, char *out, size_t size)
{
	size_t n = 0;

	while (tchar((unsigned char)**s)) {
		if (n + 1 >= size)
			return false;
		out[n++] = *(*s)++;
	}
	out[n] = '\0';
	return n > 0;
}

/* A parameter value at *S: a token or a quoted string (RFC 7230 3.2.6),
 * unquoted into OUT. */
static bool get_value(const char **s, char *out, size_t size)
{
	size_t n = 0;

	if (**s != '"')
		return get_token(s, out, size);
	for ((*s)++; **s != '"'; (*s)++) {
		if (!**s)
			return false;
		if (**s == '\\' && !*++*s)
			return false;
		if (n + 1 >= size)
			return false;
		out[n++] = **s;
	}
	(*s)++;
	out[n] = '\0';
	return true;
}

/* Window bits 8..15 as a parameter value (plain digits, no sign). */
static int window_bits(const char *v)
{
	if (strlen(v) == 1 && v[0] == '8')
		return 8;
	if (strlen(v) == 1 && v[0] == '9')
		return 9;
	if (strlen(v) == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
		return 10 + (v[1] - '0');
	return 0;
}

enum { P_SNC = 1, P_CNC = 2, P_SMW = 4, P_CMW = 8 };

/* Reads one extension at *S (its name read already into NAME, *S after
 * it) up to the ',' that ends it or the end; *S is left on that ',' or
 * NUL. Returns -1 when the syntax breaks (nothing further can be trusted),
 * else whether NAME is permessage-deflate with parameters we honour
 * (*WBITS: 15 unless server_max_window_bits narrowed it). */
static int read_offer(const char **s, const char *name, uint8_t *wbits)
{
	unsigned seen = 0;
	bool ok = strcmp(name, "permessage-deflate") == 0;
	char pname[32], val[32];

	*wbits = 15;
	for (*s = ows(*s); **s == ';'; *s = ows(*s)) {
		unsigned bit = 0;
		bool has_val = false;
		int wb = 0;

		*s = ows(*s + 1);
		if (!get_token(s, pname, sizeof(pname)))
			return -1;
		*s = ows(*s);
		if (**s == '=') {
			*s = ows(*s + 1);
			if (!get_value(s, val, sizeof(val)))
				return -1;
			has_val = true;
			wb = window_bits(val);
		}
		if (strcmp(pname, "server_no_context_takeover") == 0)
			bit = P_SNC, ok = ok && !has_val;
		else if (strcmp(pname, "client_no_context_takeover") == 0)
			bit = P_CNC, ok = ok && !has_val;
		else if (strcmp(pname, "server_max_window_bits") == 0)
			bit = P_SMW, ok = ok && has_val && wb >= 9, *wbits = (uint8_t)wb;
		else if (strcmp(pname, "client_max_window_bits") == 0)
			bit = P_CMW, ok = ok && (!has_val || wb);
		else
			ok = false;
		if (seen & bit)
			ok = false; /* RFC 7692 7: a parameter given twice declines the offer */
		seen |= bit;
	}
	if (**s && **s != ',')
		return -1;
	return ok;
}

bool wsd_accept(const char *value, char resp[WSD_RESPONSE_MAX], uint8_t *wbits)
{
	const char *s = value;

	for (;;) {
		char name[32];
		uint8_t wb;
		int r;

		s = ows(s);
		if (*s == ',') {
			s++;
			continue; /* an empty list element */
		}
		if (!*s)
			return false;
		if (!get_token(&s, name, sizeof(name)))
			return false;
		r = read_offer(&s, name, &wb);
		if (r < 0)
			return false;
		if (r) {
			int n = snprintf(resp, WSD_RESPONSE_MAX,
					 "permessage-deflate; server_no_context_takeover; client_no_context_takeover%s",
					 wb < 15 ? "; server_max_window_bits=" : "");
			if (wb < 15)
				snprintf(resp + n, WSD_RESPONSE_MAX - (size_t)n, "%u", wb);
			*wbits = wb;
			return true;
		}
	}
}

/* ---- in ------------------------------------------------------------------ */

/* Grows the output buffer towards LIMIT + 1 (one byte more than allowed
 * tells a message over the limit); false when it is there already. */
static bool out_grow(size_t have, size_t limit)
{
	size_t cap;

	if (Z.cap > limit)
		return false;
	cap = Z.cap ? Z.cap * 2 : 4096;
	if (cap > limit + 1)
		cap = limit + 1;
	if (cap <= have)
		return false;
	Z.buf = xrealloc(Z.buf, cap);
	Z.cap = cap;
	return true;
}

int wsd_inflate(const uint8_t *in, size_t n, size_t limit, const char **out, size_t *outlen)
{
	z_stream *z = &Z.in;
	bool tail_fed = false;
	size_t have = 0;
	int rc;

	if (!Z.in_ready) {
		if (inflateInit2(z, -15) != Z_OK)
			abort(); /* only Z_MEM_ERROR: allocation failure */
		Z.in_ready = true;
	} else {
		inflateReset(z);
	}
	if (Z.cap > WSD_KEEP) {
		/* the last message was large: its buffer is not kept */
		free(Z.buf);
		Z.buf = NULL;
		Z.cap = 0;
	}
	if (!Z.cap)
		out_grow(0, limit);
	z->next_in = (Bytef *)(uintptr_t)in;
	z->avail_in = (uInt)n; /* n is at most a message size limit */
	z->next_out = (Bytef *)Z.buf;
	z->avail_out = (uInt)Z.cap;
	for (;;) {
		rc = inflate(z, Z_SYNC_FLUSH);
		have = (size_t)((char *)z->next_out - Z.buf);
		if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_MEM_ERROR)
			return RT_INVAL;
		if (have > limit)
			return RT_AGAIN;
		if (rc == Z_STREAM_END) {
			/* a final block ends the stream: nothing may follow it
			 * but our own tail */
			if (!tail_fed && z->avail_in)
				return RT_INVAL;
			break;
		}
		if (z->avail_out == 0) {
			/* more output may be pending, input or not */
			if (!out_grow(have, limit))
				return RT_AGAIN;
			z->next_out = (Bytef *)Z.buf + have;
			z->avail_out = (uInt)(Z.cap - have);
			continue;
		}
		if (z->avail_in)
			return RT_INVAL; /* inflate stops only for room, input or an error */
		if (tail_fed)
			break;
		z->next_in = (Bytef *)(uintptr_t)tail;
		z->avail_in = sizeof(tail);
		tail_fed = true;
	}
	*out = Z.buf;
	*outlen = have;
	return RT_OK;
}

/* ---- out ----------------------------------------------------------------- */

struct rbuf *wsd_deflate(const void *p, size_t len, int level, unsigned wbits)
{
	z_stream *z;
	struct rbuf *b;
	int rc;

	assert(wbits >= 9 && wbits <= 15 && level >= 1 && level <= 9);
	z = &Z.out[wbits - 9];
	if (!Z.out_level[wbits - 9]) {
		if (deflateInit2(z, level, Z_DEFLATED, -(int)wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			abort(); /* only Z_MEM_ERROR: allocation failure */
		Z.out_level[wbits - 9] = level;
	} else {
		deflateReset(z);
		if (Z.out_level[wbits - 9] != level) {
			deflateParams(z, level, Z_DEFAULT_STRATEGY); /* nothing to flush after a reset */
			Z.out_level[wbits - 9] = level;
		}
	}
	/* deflateBound is for Z_FINISH; a sync flush adds at most an empty
	 * stored block (5 bytes) and the bits before it. */
	b = rbuf_new(deflateBound(z, len) + 16);
	z->next_in = (Bytef *)(uintptr_t)p;
	z->avail_in = (uInt)len;
	z->next_out = (Bytef *)b->data;
	z->avail_out = (uInt)b->len;
	rc = deflate(z, Z_SYNC_FLUSH);
	assert(rc == Z_OK && z->avail_in == 0 && z->avail_out > 0);
	(void)rc;
	b->len = b->len - z->avail_out;
	assert(b->len >= 4 && memcmp(b->data + b->len - 4, tail, 4) == 0);
	return b;
}

void wsd_free(void)
{
	if (Z.in_ready)
		inflateEnd(&Z.in);
	for (int i = 0; i < 7; i++)
		if (Z.out_level[i])
			deflateEnd(&Z.out[i]);
	free(Z.buf);
	memset(&Z, 0, sizeof(Z));
}
