/*
 * test_fossil.c - the fossil delta encoder against a decoder written apart
 * from the format's description (rotor-bench's, contrib/bench/fossil.c,
 * which also checks the checksum its own way), not from the encoder: random
 * sources and targets (edits of the source, unrelated bytes, UTF-8 text),
 * every delta applied and compared with its target, its checksum and
 * length checked, UTF-8 targets giving UTF-8 deltas, and similar documents
 * giving small deltas. centrifuge-js applies the daemon's deltas in
 * tests/integration/delta.test.js.
 */
#include "config.h"
#include "fossil.h"
#include "json.h"
#include "utf8.h"
#include "../tap.h"
#include "../../contrib/bench/fossil.h"   /* the decoder: rotor-bench's, written apart */

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- inputs ------------------------------------------------------------ */

static unsigned rnd(unsigned n)
{
	return n ? (unsigned)(random() % n) : 0;
}

/* Appends N random bytes: any byte (BINARY) or text with multi-byte
 * UTF-8 characters. */
static void noise(struct jw *w, size_t n, bool binary)
{
	static const char *const words[] = { "price", "\xc3\xa9t\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
					     "\"id\":", "42", " ", "{\"a\":[1,2,3]}", "\xd0\xbf\xd1\x80\xd0\xb8" };
	while (n > 0) {
		if (binary) {
			unsigned char c = (unsigned char)rnd(256);
			jw_raw(w, &c, 1);
			n--;
		} else {
			const char *s = words[rnd(ROTOR_ARRAY_LEN(words))];
			jw_lit(w, s);
			n = n > strlen(s) ? n - strlen(s) : 0;
		}
	}
}

/* TGT = SRC with a few random edits: replaced, inserted, deleted spans
 * (edits of text keep to character boundaries). */
static void edit(struct jw *tgt, const char *src, size_t n, bool binary)
{
	size_t i = 0;
	while (i < n) {
		size_t keep = rnd(200) + 1;
		if (i + keep > n)
			keep = n - i;
		while (!binary && i + keep < n && ((unsigned char)src[i + keep] & 0xC0) == 0x80)
			keep++;
		jw_raw(tgt, src + i, keep);
		i += keep;
		switch (rnd(4)) {
		case 0: /* insert */
			noise(tgt, rnd(30) + 1, binary);
			break;
		case 1: /* delete */
			i += rnd(20);
			while (!binary && i < n && ((unsigned char)src[i] & 0xC0) == 0x80)
				i++;
			break;
		default:
			break;
		}
	}
}

/* One delta: applied, and the result compared with TGT. */
static bool round_trip(const char *src, size_t nsrc, const char *tgt, size_t ntgt, size_t *dlen,
		       bool *dutf8)
{
	struct jw d = { 0 };
	size_t len = fossil_delta(src, nsrc, tgt, ntgt, &d);
	char *out = malloc(ntgt + 1);
	long n = out ? fossil_apply(src, nsrc, d.buf, d.len, out, ntgt) : -1;
	bool ok = n >= 0 && len == d.len && (size_t)n == ntgt && (n == 0 || memcmp(out, tgt, (size_t)n) == 0);
	if (dlen)
		*dlen = d.len;
	if (dutf8)
		*dutf8 = utf8_valid((const unsigned char *)d.buf, d.len);
	free(out);
	jw_free(&d);
	return ok;
}

int main(void)
{
	srandom(20261207);

	/* The format's fixed parts. */
	{
		struct jw d = { 0 };
		fossil_delta("", 0, "", 0, &d);
		ok(d.len == 4 && memcmp(d.buf, "0\n0;", 4) == 0, "empty to empty is \"0\\n0;\"");
		d.len = 0;
		fossil_delta("abc", 3, "hello", 5, &d);
		/* 5 = "5", insert "5:hello", checksum of "hell" + "o\0\0\0". */
		uint32_t sum = ((uint32_t)'h' << 24 | (uint32_t)'e' << 16 | (uint32_t)'l' << 8 | 'l') +
			       ((uint32_t)'o' << 24);
		struct jw want = { 0 };
		jw_lit(&want, "5\n5:hello");
		char cs[8];
		size_t k = 0;
		static const char dg[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";
		char rev[8];
		for (uint32_t v = sum; k == 0 || v; v >>= 6)
			rev[k++] = dg[v & 63];
		for (size_t j = 0; j < k; j++)
			cs[j] = rev[k - 1 - j];
		jw_raw(&want, cs, k);
		jw_lit(&want, ";");
		ok(d.len == want.len && memcmp(d.buf, want.buf, d.len) == 0,
		   "a short source: one insert, the big-endian word checksum");
		jw_free(&want);
		jw_free(&d);
		is_int(fossil_checksum("\x01\x02\x03\x04\x05", 5), 0x01020304 + 0x05000000, "checksum of 5 bytes");
		is_int(fossil_checksum("\xff\xff\xff\xff\xff\xff\xff\xff", 8), 0xfffffffe,
		       "checksum wraps modulo 2^32");
	}

	/* A copy is used where the source has the bytes. */
	{
		const char *a = "{\"id\":1,\"name\":\"a long enough name to be copied\",\"count\":10}";
		const char *b = "{\"id\":1,\"name\":\"a long enough name to be copied\",\"count\":11}";
		struct jw d = { 0 };
		fossil_delta(a, strlen(a), b, strlen(b), &d);
		ok(memchr(d.buf, '@', d.len) != NULL && d.len < strlen(b) / 2, "similar documents: a copy, %zu bytes",
		   d.len);
		ok(round_trip(a, strlen(a), b, strlen(b), NULL, NULL), "and it applies");
		jw_free(&d);
	}

	/* Random rounds. */
	int bad = 0, notutf8 = 0, big = 0;
	size_t sum_delta = 0, sum_tgt = 0;
	for (int round = 0; round < 3000; round++) {
		bool binary = round % 3 == 0;
		struct jw src = { 0 }, tgt = { 0 };
		noise(&src, rnd(round % 10 == 0 ? 20000 : 2000), binary);
		switch (round % 5) {
		case 0: /* unrelated */
			noise(&tgt, rnd(2000), binary);
			break;
		case 1: /* grown */
			jw_raw(&tgt, src.buf, src.len);
			noise(&tgt, rnd(500) + 1, binary);
			break;
		case 2: /* shrunk from the front */
			if (src.len > 0) {
				size_t cut = rnd((unsigned)src.len);
				while (!binary && cut < src.len && ((unsigned char)src.buf[cut] & 0xC0) == 0x80)
					cut++;
				jw_raw(&tgt, src.buf + cut, src.len - cut);
			}
			break;
		default: /* edited */
			edit(&tgt, src.buf, src.len, binary);
		}
		size_t dlen;
		bool dutf8;
		if (!round_trip(src.buf, src.len, tgt.buf, tgt.len, &dlen, &dutf8))
			bad++;
		if (!binary && !dutf8)
			notutf8++;
		if (round % 5 >= 1 && src.len > 1000 && tgt.len > 1000) {
			sum_delta += dlen;
			sum_tgt += tgt.len;
		}
		if (dlen > tgt.len + 32)
			big++;
		jw_free(&src);
		jw_free(&tgt);
	}
	is_int(bad, 0, "3000 random deltas apply to their targets");
	is_int(notutf8, 0, "deltas of UTF-8 text are UTF-8");
	is_int(big, 0, "a delta is never much longer than its target");
	ok(sum_delta * 4 < sum_tgt, "edited documents: deltas are %zu bytes for %zu bytes of targets", sum_delta,
	   sum_tgt);

	/* A target made of the source's blocks in another order. */
	{
		struct jw src = { 0 }, tgt = { 0 };
		noise(&src, 4096, true);
		for (int k = 15; k >= 0; k--)
			jw_raw(&tgt, src.buf + k * 256, 256);
		size_t dlen = 0;
		bool applied = round_trip(src.buf, src.len, tgt.buf, tgt.len, &dlen, NULL);
		ok(applied && dlen < 300, "blocks moved around: copies (%zu bytes)", dlen);
		jw_free(&src);
		jw_free(&tgt);
	}
	return tap_done();
}
