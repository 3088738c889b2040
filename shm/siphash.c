/*
 * siphash.c - SipHash-2-4 (Aumasson and Bernstein), the keyed hash of the
 * shm hash tables: names and ids come from clients, so with a secret key
 * per segment the chains they land in cannot be predicted. Segments store
 * these hashes: any change to the output is a layout change.
 */
#include "siphash.h"

#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "message words are read little-endian");

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                 \
	do {                                                                     \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);        \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                           \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                           \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);        \
	} while (0)

uint64_t siphash24(const uint64_t key[2], const void *in, size_t len)
{
	uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ key[0], v1 = UINT64_C(0x646f72616e646f6d) ^ key[1];
	uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ key[0], v3 = UINT64_C(0x7465646279746573) ^ key[1];
	const unsigned char *p = in, *end = p + (len & ~(size_t)7);
	uint64_t m, b = (uint64_t)len << 56;

	for (; p != end; p += 8) {
		memcpy(&m, p, 8);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t i = len & 7; i > 0; i--)
		b |= (uint64_t)p[i - 1] << (8 * (i - 1));
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}
