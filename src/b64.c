/*
 * b64.c - base64 and base64url encoding and decoding.
 *
 * One encoder and one decoder serve both alphabets; FLAGS pick the alphabet
 * and whether '=' padding is written or accepted. The decoder is strict
 * about everything that could make two different strings decode to the same
 * bytes in a way that matters to a caller comparing texts (JWT): no
 * whitespace, no stray '=', no impossible lengths. It only tolerates unused
 * low bits in the last character, like Go's decoders.
 */
#include "config.h"
#include "b64.h"
#include "util.h"

#include <stdbool.h>
#include <stdint.h>

static const char alpha_std[64] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char alpha_url[64] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t b64_encoded_len(size_t n, unsigned flags)
{
	if (flags & B64_NOPAD)
		return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
	return (n + 2) / 3 * 4;
}

size_t b64_encode(char *dst, const void *src, size_t n, unsigned flags)
{
	const char *a = (flags & B64_URL) ? alpha_url : alpha_std;
	const unsigned char *s = src;
	char *d = dst;
	size_t i;

	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*d++ = a[v >> 18];
		*d++ = a[(v >> 12) & 63];
		*d++ = a[(v >> 6) & 63];
		*d++ = a[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)s[i] << 16;
		*d++ = a[v >> 18];
		*d++ = a[(v >> 12) & 63];
		if (!(flags & B64_NOPAD)) {
			*d++ = '=';
			*d++ = '=';
		}
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
		*d++ = a[v >> 18];
		*d++ = a[(v >> 12) & 63];
		*d++ = a[(v >> 6) & 63];
		if (!(flags & B64_NOPAD))
			*d++ = '=';
	}
	*d = '\0';
	return (size_t)(d - dst);
}

char *b64_encode_alloc(const void *src, size_t n, unsigned flags)
{
	char *dst = xmalloc(b64_encoded_len(n, flags) + 1);
	b64_encode(dst, src, n, flags);
	return dst;
}

size_t b64_decoded_max(size_t n)
{
	return (n + 3) / 4 * 3;
}

/* The 6-bit value of C in the alphabet of FLAGS, or -1. */
static int sextet(unsigned char c, unsigned flags)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (flags & B64_URL) {
		if (c == '-')
			return 62;
		if (c == '_')
			return 63;
	} else {
		if (c == '+')
			return 62;
		if (c == '/')
			return 63;
	}
	return -1;
}

int b64_decode(void *dst, size_t *outlen, const char *src, size_t n, unsigned flags)
{
	unsigned char *d = dst;
	size_t data = n, pad = 0, i;
	uint32_t acc = 0;
	int bits = 0;

	/* Split off the padding, then check it against the rules of FLAGS. */
	while (data > 0 && src[data - 1] == '=' && pad < 3) {
		data--;
		pad++;
	}
	if (data % 4 == 1)
		return RT_INVAL;
	if (pad > 0) {
		if (flags & B64_NOPAD)
			return RT_INVAL;
		if (pad != (4 - data % 4) % 4)
			return RT_INVAL; /* exactly the padding that completes a quantum */
	} else if (!(flags & (B64_URL | B64_NOPAD)) && data % 4 != 0) {
		return RT_INVAL; /* standard base64 requires its padding */
	}

	for (i = 0; i < data; i++) {
		int v = sextet((unsigned char)src[i], flags);
		if (v < 0)
			return RT_INVAL;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			*d++ = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	*outlen = (size_t)(d - (unsigned char *)dst);
	return RT_OK;
}
