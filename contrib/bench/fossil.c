/*
 * fossil.c - Fossil delta application (fossil.h).
 *
 * A delta is "<target length>\n" and then instructions, each starting with
 * an integer: "N@O," copies N bytes of the source from offset O, "N:"
 * inserts the N bytes that follow, "N;" ends with N the checksum of the
 * target. Integers are written in base 64 with the digits 0-9, A-Z, _,
 * a-z, ~ (in that order), most significant first.
 */
#include "fossil.h"

#include <stdint.h>
#include <limits.h>
#include <string.h>

/* The value of base-64 digit c, or -1. */
static int digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 10;
	if (c == '_')
		return 36;
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 37;
	if (c == '~')
		return 63;
	return -1;
}

/* Reads an integer at *p (before e). Returns -1 without a digit. */
static long get_int(const char **p, const char *e)
{
	uint64_t v = 0;
	const char *q = *p;
	int d;
	while (q < e && (d = digit((unsigned char)*q)) >= 0) {
		if (v > (UINT64_MAX >> 6))
			return -1;
		v = v << 6 | (uint64_t)d;
		q++;
	}
	if (q == *p || v > (uint64_t)LONG_MAX)
		return -1;
	*p = q;
	return (long)v;
}

/* The checksum a delta ends with: the bytes summed as big-endian 32-bit
 * words, a short last word padded with zeros, modulo 2^32. */
static uint32_t checksum(const unsigned char *z, size_t n)
{
	uint32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	for (; n >= 4; z += 4, n -= 4) {
		s0 += z[0];
		s1 += z[1];
		s2 += z[2];
		s3 += z[3];
	}
	s3 += (s2 << 8) + (s1 << 16) + (s0 << 24);
	if (n == 3)
		s3 += (uint32_t)z[2] << 8;
	if (n >= 2)
		s3 += (uint32_t)z[1] << 16;
	if (n >= 1)
		s3 += (uint32_t)z[0] << 24;
	return s3;
}

long fossil_apply(const char *src, size_t slen, const char *delta, size_t dlen, char *out, size_t cap)
{
	const char *p = delta, *e = delta + dlen;
	long limit = get_int(&p, e);
	if (limit < 0 || p >= e || *p++ != '\n' || (size_t)limit > cap)
		return -1;
	size_t have = 0;
	while (p < e) {
		long n = get_int(&p, e);
		if (n < 0 || p >= e)
			return -1;
		switch (*p++) {
		case '@': {
			long off = get_int(&p, e);
			if (off < 0 || p >= e || *p++ != ',' || (size_t)off > slen || (size_t)n > slen - (size_t)off ||
			    (size_t)n > (size_t)limit - have)
				return -1;
			memcpy(out + have, src + off, (size_t)n);
			have += (size_t)n;
			break;
		}
		case ':':
			if ((size_t)n > (size_t)(e - p) || (size_t)n > (size_t)limit - have)
				return -1;
			memcpy(out + have, p, (size_t)n);
			have += (size_t)n;
			p += n;
			break;
		case ';':
			if (p != e || have != (size_t)limit || (uint32_t)n != checksum((const unsigned char *)out, have))
				return -1;
			return (long)have;
		default:
			return -1;
		}
	}
	return -1;      /* no checksum */
}
