/*
 * fossil.c - fossil deltas (fossil.h has the format).
 *
 * Model: SOURCE is cut into blocks of WIN bytes at multiples of WIN, each
 * indexed in a hash table by a hash of its bytes. A window of WIN bytes
 * slides over TARGET with a rolling hash; where a source block has the
 * same hash and the same bytes, the match is grown forwards and backwards
 * (never back over bytes already emitted) and the longest candidate wins.
 * Bytes between matches become inserts. A match is kept only when its
 * copy instruction is clearly shorter than the bytes it replaces.
 *
 * The output goes to a struct jw; nothing is kept between calls but the
 * index's arrays, which grow to the largest source seen (per worker: one
 * delta per publication and channel, computed by the hub).
 */
#include "config.h"
#include "fossil.h"
#include "json.h"
#include "util.h"

#include <stdbool.h>
#include <string.h>

#define WIN 16                     /* bytes per source block and hash window */
#define MAX_CHAIN 64               /* candidates tried per target position */
#define HMUL 0x01000193u           /* the rolling hash's multiplier */

static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";

/* The index, reused by every call. */
static struct {
	int32_t *head;                 /* bucket -> first block, -1: none */
	int32_t *next;                 /* block -> next block of its bucket */
	size_t nbucket, nblock;        /* allocated sizes */
} X;

static void put_int(struct jw *o, uint64_t v)
{
	char buf[16];
	size_t i = sizeof(buf);

	do {
		buf[--i] = digits[v & 63];
		v >>= 6;
	} while (v);
	jw_raw(o, buf + i, sizeof(buf) - i);
}

static size_t int_len(uint64_t v)
{
	size_t n = 1;
	while (v >>= 6)
		n++;
	return n;
}

uint32_t fossil_checksum(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint32_t sum = 0;
	size_t i = 0;

	for (; i + 4 <= n; i += 4)
		sum += (uint32_t)s[i] << 24 | (uint32_t)s[i + 1] << 16 | (uint32_t)s[i + 2] << 8 | s[i + 3];
	for (unsigned shift = 24; i < n; i++, shift -= 8)
		sum += (uint32_t)s[i] << shift;
	return sum;
}

/* The hash of the WIN bytes at P, and HMUL^(WIN-1) for rolling it. */
static uint32_t hash_win(const unsigned char *p)
{
	uint32_t h = 0;
	for (int i = 0; i < WIN; i++)
		h = h * HMUL + p[i];
	return h;
}

static uint32_t hmul_top(void)
{
	uint32_t m = 1;
	for (int i = 0; i < WIN - 1; i++)
		m *= HMUL;
	return m;
}

static size_t bucket_of(uint32_t h, size_t nbucket)
{
	return (size_t)((h ^ (h >> 15)) * 0x9E3779B1u) & (nbucket - 1);
}

/* A UTF-8 continuation byte: a match boundary must not fall before it. */
static bool cont(unsigned char c)
{
	return (c & 0xC0) == 0x80;
}

static void insert(struct jw *o, const unsigned char *p, size_t n)
{
	if (n == 0)
		return;
	put_int(o, n);
	jw_raw(o, ":", 1);
	jw_raw(o, p, n);
}

/* Indexes the blocks of SRC (NSRC >= WIN); returns the bucket count. */
static size_t build_index(const unsigned char *src, size_t nsrc)
{
	size_t nblock = nsrc / WIN, nbucket = 1;
	while (nbucket < nblock)
		nbucket <<= 1;
	if (nbucket > X.nbucket) {
		X.head = xrealloc(X.head, nbucket * sizeof(*X.head));
		X.nbucket = nbucket;
	}
	if (nblock > X.nblock) {
		X.next = xrealloc(X.next, nblock * sizeof(*X.next));
		X.nblock = nblock;
	}
	memset(X.head, 0xff, nbucket * sizeof(*X.head));
	/* Later blocks first in each chain: walking it, earlier ones replace
	 * them only when longer. */
	for (size_t b = 0; b < nblock; b++) {
		size_t k = bucket_of(hash_win(src + b * WIN), nbucket);
		X.next[b] = X.head[k];
		X.head[k] = (int32_t)b;
	}
	return nbucket;
}

size_t fossil_delta(const void *srcv, size_t nsrc, const void *tgtv, size_t ntgt, struct jw *out)
{
	const unsigned char *src = srcv, *tgt = tgtv;
	size_t start = out->len, base = 0, i = 0;

	put_int(out, ntgt);
	jw_raw(out, "\n", 1);
	if (nsrc >= WIN && ntgt >= WIN && nsrc / WIN <= INT32_MAX) {
		size_t nbucket = build_index(src, nsrc);
		uint32_t top = hmul_top(), h = hash_win(tgt);

		while (i + WIN <= ntgt) {
			size_t best = 0, bs = 0, bt = 0; /* length, source and target start */
			int chain = 0;
			for (int32_t b = X.head[bucket_of(h, nbucket)]; b >= 0 && chain < MAX_CHAIN;
			     b = X.next[b], chain++) {
				size_t s = (size_t)b * WIN, f = 0, k = 0;
				if (memcmp(src + s, tgt + i, WIN) != 0)
					continue;
				f = WIN;
				while (s + f < nsrc && i + f < ntgt && src[s + f] == tgt[i + f])
					f++;
				while (k < s && k < i - base && src[s - k - 1] == tgt[i - k - 1])
					k++;
				if (k + f > best) {
					best = k + f;
					bs = s - k;
					bt = i - k;
				}
			}
			if (best > 0) {
				size_t end = bt + best;
				while (bt < end && cont(tgt[bt])) {
					bt++;
					bs++;
				}
				while (end > bt && end < ntgt && cont(tgt[end]))
					end--;
				size_t len = end - bt;
				/* The copy, and the insert it may split in two. */
				size_t cost = int_len(len) + int_len(bs) + 2 + int_len(ntgt) + 1;
				if (len > cost) {
					insert(out, tgt + base, bt - base);
					put_int(out, len);
					jw_raw(out, "@", 1);
					put_int(out, bs);
					jw_raw(out, ",", 1);
					base = i = end;
					if (i + WIN <= ntgt)
						h = hash_win(tgt + i);
					continue;
				}
			}
			if (i + WIN >= ntgt)
				break;
			h = (h - tgt[i] * top) * HMUL + tgt[i + WIN];
			i++;
		}
	}
	insert(out, tgt + base, ntgt - base);
	put_int(out, fossil_checksum(tgt, ntgt));
	jw_raw(out, ";", 1);
	return out->len - start;
}
