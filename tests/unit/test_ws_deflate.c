/*
 * test_ws_deflate.c - permessage-deflate's parts on their own
 * (src/transport/ws_deflate.c): the Sec-WebSocket-Extensions parser and the
 * answer it makes (several offers, every parameter, quoted values,
 * duplicates, malformed lists, window bits 8), the inflater (limits, bombs,
 * corrupt and final-block streams, messages after a failure) and the
 * context-free deflated chunks, alone and concatenated into one message
 * as ws.c frames several messages.
 */
#include "config.h"
#include "ws_deflate.h"
#include "conn.h"
#include "../tap.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* wsd_accept of VALUE: the answer, or NULL when nothing was accepted. */
static const char *accept_of(const char *value, uint8_t *wbits)
{
	static char resp[WSD_RESPONSE_MAX];
	uint8_t wb = 0;

	if (!wsd_accept(value, resp, &wb))
		return NULL;
	if (wbits)
		*wbits = wb;
	return resp;
}

#define BOTH "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

static void test_accept(void)
{
	uint8_t wb = 0;

	is_str(accept_of("permessage-deflate", &wb), BOTH, "a bare offer is accepted, both no_context_takeover asked");
	is_int(wb, 15, "with a 15-bit window");
	is_str(accept_of("permessage-deflate; client_max_window_bits", NULL), BOTH,
	       "client_max_window_bits without a value (browsers, ws) is accepted and not answered");
	is_str(accept_of("permessage-deflate; client_max_window_bits=10", NULL), BOTH,
	       "client_max_window_bits=10: we inflate any window, nothing to answer");
	is_str(accept_of("permessage-deflate;server_no_context_takeover;client_no_context_takeover", NULL), BOTH,
	       "both no_context_takeover offered, without spaces");
	is_str(accept_of("permessage-deflate; server_max_window_bits=10", &wb),
	       BOTH "; server_max_window_bits=10", "server_max_window_bits=10 is answered");
	is_int(wb, 10, "and our window is 10 bits");
	is_str(accept_of("permessage-deflate; server_max_window_bits=\"12\"", &wb),
	       BOTH "; server_max_window_bits=12", "a quoted value is unquoted");
	is_int(wb, 12, "12 bits");
	is_str(accept_of("permessage-deflate; server_max_window_bits=15", &wb), BOTH, "15 is the default: not repeated");
	is_str(accept_of("  permessage-deflate  ;  client_max_window_bits  ", NULL), BOTH, "spaces around everything");

	ok(!accept_of("permessage-deflate; server_max_window_bits=8", NULL),
	   "server_max_window_bits=8 is declined: zlib's raw deflate has no 256-byte window");
	is_str(accept_of("permessage-deflate; server_max_window_bits=8, permessage-deflate", &wb), BOTH,
	       "... and the next offer is taken instead");
	is_int(wb, 15, "with its own window");
	is_str(accept_of("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits", NULL), BOTH,
	       "another extension first is skipped");
	is_str(accept_of("foo; a=1; b=\"x,y\", permessage-deflate", NULL), BOTH,
	       "a quoted comma does not end an offer");

	/* declined, each for the reason given */
	static const char *const declined[][2] = {
		{ "permessage-deflate; server_max_window_bits", "server_max_window_bits needs a value" },
		{ "permessage-deflate; server_max_window_bits=16", "16 bits is out of range" },
		{ "permessage-deflate; server_max_window_bits=7", "7 bits is out of range" },
		{ "permessage-deflate; server_max_window_bits=010", "a leading zero is refused" },
		{ "permessage-deflate; server_max_window_bits=+9", "a sign is refused" },
		{ "permessage-deflate; client_max_window_bits=7", "client_max_window_bits=7 is refused" },
		{ "permessage-deflate; client_max_window_bits=abc", "client_max_window_bits=abc is refused" },
		{ "permessage-deflate; server_no_context_takeover=1", "server_no_context_takeover takes no value" },
		{ "permessage-deflate; client_no_context_takeover=\"\"", "client_no_context_takeover takes no value" },
		{ "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
		  "a parameter given twice declines the offer" },
		{ "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
		  "client_max_window_bits twice declines the offer" },
		{ "permessage-deflate; foo", "an unknown parameter declines the offer" },
		{ "permessage-deflate-x", "another name is not ours" },
		{ "PERMESSAGE-DEFLATE", "extension names are case-sensitive tokens here" },
		{ "", "an empty header accepts nothing" },
		{ " , ,", "empty elements accept nothing" },
		{ "permessage-deflate; server_max_window_bits=\"12", "an unterminated quote breaks the list" },
		{ "foo bar, permessage-deflate", "a broken list is not read past the break" },
		{ "permessage-deflate;", "a ';' with no parameter breaks the list" },
		{ "permessage-deflate; =9", "a value without a name breaks the list" },
		{ "permessage-deflate; server_max_window_bits=", "an empty value breaks the list" },
		{ "permessage-deflate; client_max_window_bits=123456789012345678901234567890123456789",
		  "an overlong value is refused, not overrun" },
	};
	for (size_t i = 0; i < sizeof(declined) / sizeof(declined[0]); i++)
		ok(!accept_of(declined[i][0], NULL), "%s: \"%s\"", declined[i][1], declined[i][0]);
	is_str(accept_of("permessage-deflate; client_max_window_bits; client_max_window_bits, permessage-deflate",
			 NULL), BOTH, "after a declined offer the next one is taken");
}

/* Raw deflate as a client sends it: sync flush, tail cut (FINISH: a final block). */
static size_t client_deflate(const void *p, size_t n, uint8_t *out, size_t cap, int flush)
{
	z_stream z = { 0 };
	size_t len;

	deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
	z.next_in = (Bytef *)(uintptr_t)p;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	deflate(&z, flush);
	len = cap - z.avail_out;
	deflateEnd(&z);
	return flush == Z_SYNC_FLUSH ? len - 4 : len;
}

static void test_inflate(void)
{
	static uint8_t big[1 << 20], z[1 << 16];
	const char *msg = "{\"id\":1,\"connect\":{}}", *out;
	size_t n, len;

	n = client_deflate(msg, strlen(msg), z, sizeof(z), Z_SYNC_FLUSH);
	is_int(wsd_inflate(z, n, 100, &out, &len), RT_OK, "a message inflates");
	ok(len == strlen(msg) && memcmp(out, msg, len) == 0, "to what was deflated");
	is_int(wsd_inflate(z, n, strlen(msg), &out, &len), RT_OK, "exactly at the limit");
	is_int(wsd_inflate(z, n, strlen(msg) - 1, &out, &len), RT_AGAIN, "one byte over the limit: RT_AGAIN");

	memset(big, 0, sizeof(big));
	n = client_deflate(big, sizeof(big), z, sizeof(z), Z_SYNC_FLUSH);
	ok(n < 4096, "1 MiB of zeros deflates to %zu bytes", n);
	is_int(wsd_inflate(z, n, 65536, &out, &len), RT_AGAIN, "a deflate bomb stops at the limit");
	n = client_deflate(msg, strlen(msg), z, sizeof(z), Z_SYNC_FLUSH);
	is_int(wsd_inflate(z, n, 100, &out, &len), RT_OK, "the inflater is fine for the next message");
	ok(len == strlen(msg) && memcmp(out, msg, len) == 0, "which inflates whole");

	n = client_deflate(msg, strlen(msg), z, sizeof(z), Z_FINISH);
	is_int(wsd_inflate(z, n, 100, &out, &len), RT_OK, "a message ending in a final block inflates");
	ok(len == strlen(msg) && memcmp(out, msg, len) == 0, "whole");
	z[n] = 'x';
	is_int(wsd_inflate(z, n + 1, 100, &out, &len), RT_INVAL, "a byte after the final block is refused");

	z[0] = 0x07; /* BFINAL=1, BTYPE=11: reserved */
	is_int(wsd_inflate(z, 4, 100, &out, &len), RT_INVAL, "a reserved block type is corrupt: RT_INVAL");
	is_int(wsd_inflate((const uint8_t *)"", 0, 100, &out, &len), RT_OK, "an empty message inflates");
	is_int(len, 0, "to nothing");
}

/* Inflates LEN bytes at P with 00 00 ff ff appended, as a client does. */
static size_t client_inflate(const void *p, size_t n, char *out, size_t cap, int *rc)
{
	z_stream z = { 0 };
	uint8_t in[8192];

	memcpy(in, p, n);
	memcpy(in + n, "\x00\x00\xff\xff", 4);
	inflateInit2(&z, -15);
	z.next_in = in;
	z.avail_in = (uInt)n + 4;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)cap;
	*rc = inflate(&z, Z_SYNC_FLUSH);
	n = cap - z.avail_out;
	*rc = *rc == Z_OK && z.avail_in == 0 ? Z_OK : *rc;
	inflateEnd(&z);
	return n;
}

static void test_deflate(void)
{
	const char *a = "{\"push\":{\"channel\":\"chat\",\"pub\":{\"data\":{\"text\":\"hello hello hello\"}}}}";
	const char *b = "{\"push\":{\"channel\":\"news\",\"pub\":{\"data\":{\"text\":\"hello again\"}}}}";
	struct rbuf *za = wsd_deflate(a, strlen(a), 1, 15), *zb = wsd_deflate(b, strlen(b), 9, 15);
	struct rbuf *znl = wsd_deflate("\n", 1, 1, 15), *z9 = wsd_deflate(a, strlen(a), 1, 9);
	uint8_t cat[4096];
	char out[4096], want[4096];
	size_t n = 0, len;
	int rc;

	ok(za->len >= 4 && memcmp(za->data + za->len - 4, "\x00\x00\xff\xff", 4) == 0, "a chunk ends with 00 00 ff ff");
	len = client_inflate(za->data, za->len - 4, out, sizeof(out), &rc);
	ok(rc == Z_OK && len == strlen(a) && memcmp(out, a, len) == 0, "one chunk, tail cut, is one message");
	len = client_inflate(z9->data, z9->len - 4, out, sizeof(out), &rc);
	ok(rc == Z_OK && len == strlen(a) && memcmp(out, a, len) == 0, "so is a chunk within a 9-bit window");

	/* a frame of a, '\n', b as ws.c builds it: whole chunks, the last one's tail cut */
	memcpy(cat + n, za->data, za->len), n += za->len;
	memcpy(cat + n, znl->data, znl->len), n += znl->len;
	memcpy(cat + n, zb->data, zb->len - 4), n += zb->len - 4;
	len = client_inflate(cat, n, out, sizeof(out), &rc);
	snprintf(want, sizeof(want), "%s\n%s", a, b);
	ok(rc == Z_OK && len == strlen(want) && memcmp(out, want, len) == 0,
	   "chunks of different levels and a '\\n' chunk concatenate into one message");
	rbuf_unref(za);
	rbuf_unref(zb);
	rbuf_unref(znl);
	rbuf_unref(z9);

	za = wsd_deflate("", 0, 1, 15);
	len = client_inflate(za->data, za->len - 4, out, sizeof(out), &rc);
	ok(rc == Z_OK && len == 0, "an empty message deflates to a chunk that inflates to nothing");
	rbuf_unref(za);
}

int main(void)
{
	test_accept();
	test_inflate();
	test_deflate();
	wsd_free();
	return tap_done();
}
