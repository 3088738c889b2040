/*
 * utf8.h - the UTF-8 and hex-digit primitives that rotor's text codecs share
 * (the JSON scanner and writer in json.c, the SockJS codec). Inline, no state.
 */
#ifndef ROTOR_UTF8_H
#define ROTOR_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Length of the valid UTF-8 sequence starting at P (P[0] >= 0x80), or 0 if
 * the bytes there are not one (overlong forms, surrogates, code points above
 * U+10FFFF, truncation). The same verdicts as Go's utf8.DecodeRune. */
static inline size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
	size_t left = (size_t)(end - p);
	unsigned c = p[0];

	if (c >= 0xC2 && c <= 0xDF)
		return left >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF) {
		unsigned lo = 0x80, hi = 0xBF;
		if (c == 0xE0)
			lo = 0xA0;          /* overlong below U+0800 */
		else if (c == 0xED)
			hi = 0x9F;          /* U+D800..U+DFFF */
		return left >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
	}
	if (c >= 0xF0 && c <= 0xF4) {
		unsigned lo = 0x80, hi = 0xBF;
		if (c == 0xF0)
			lo = 0x90;          /* overlong below U+10000 */
		else if (c == 0xF4)
			hi = 0x8F;          /* above U+10FFFF */
		return left >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 &&
		       (p[3] & 0xC0) == 0x80 ? 4 : 0;
	}
	return 0;
}

/* Whether P[0..N) is all valid UTF-8 (utf8_seq's verdicts). */
static inline bool utf8_valid(const unsigned char *p, size_t n)
{
	const unsigned char *end = p + n;
	while (p < end) {
		size_t l = *p < 0x80 ? 1 : utf8_seq(p, end);
		if (l == 0)
			return false;
		p += l;
	}
	return true;
}

/* The code point of the valid L-byte sequence at P (L as utf8_seq gave it,
 * or 1 for ASCII). */
static inline uint32_t utf8_cp(const unsigned char *p, size_t l)
{
	switch (l) {
	case 1:
		return p[0];
	case 2:
		return (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
	case 3:
		return (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
	default:
		return (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 |
		       (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
	}
}

/* Encodes code point CP (valid, not a surrogate) as UTF-8 into OUT (when
 * non-NULL); returns the byte count. */
static inline size_t utf8_put(char *out, uint32_t cp)
{
	unsigned char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xC0 | cp >> 6);
		b[1] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xE0 | cp >> 12);
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xF0 | cp >> 18);
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		b[3] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	if (out)
		memcpy(out, b, n);
	return n;
}

/* The value of the hex digit C (either case), or -1. */
static inline int utf8_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

#endif
