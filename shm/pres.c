/*
 * pres.c - the presence table in shared memory (see pres.h for the layout,
 * the liveness rule and the invariants).
 *
 * Writers hold a robust process-shared mutex. Each change has one commit
 * point, a single 32-bit store into a hash chain: an insert fills a node
 * and its block chain while nothing points to them, then links the node;
 * a replacement fills the new node with the old one's successor and swaps
 * it in with the store that unlinks the old one; a removal unlinks. A new
 * channel is a change of its own (linked before its first entry), and an
 * empty channel is removed by one more: a channel left empty by a writer
 * that died between the two is just a derived fact the repair cleans up.
 * Around the commit point writers update only derived state (member lists,
 * free lists, counts), which a repair rebuilds from the chains.
 *
 * Repair (whoever gets EOWNERDEAD): walk every chain, keep the nodes that
 * hold together (kind, check, bucket, block chain not shared), rebuild the
 * member lists, drop empty channels, and give every node and block nobody
 * reached back to the free lists. Nodes and blocks a dead writer had taken
 * but not linked are thereby freed. A repair changes the chains only to
 * drop what a crashed writer never leaves (damage from a stray write) and
 * empty channels, so it is idempotent: a repairer killed midway is
 * repaired after in turn.
 *
 * Readers with a read-write mapping take the lock and copy what they need
 * out; callbacks then run without it. A read-only mapping (rotorctl) cannot
 * lock: it copies with every index and length bounded, under a seqlock
 * (wver, odd while a writer changes anything), and retries on a change.
 */
#include "pres.h"
#include "bus.h"
#include "rlock.h"
#include "siphash.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Static_assert(PRES_SLOTS == BUS_SLOTS_MAX, "an owner slot is a bus slot");
_Static_assert(PRES_SLOTS <= 65536, "owner is 16 bits");
_Static_assert(PRES_CLIENT_MAX < 65536 && PRES_USER_MAX < 65536, "lengths are 16 bits");
_Static_assert(offsetof(struct pres_node, kind) == 4 && offsetof(struct pres_node, check) == 52,
	       "check covers bytes 4 .. 52");

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define BUMP(p) STORE((p), LOAD(p) + 1) /* under the lock */

#define RELEASE_CHUNK 4096u  /* buckets pres_release_slot reaps per lock */
#define RO_TRIES 1000        /* copies a read-only reader attempts */
#define PEEK_MAX 131072u     /* entries a copy buffer is sized for before the lock */

unsigned long pres_crash_countdown;

/* A step of a change: where a test may have the process killed. */
#define STEP()                                                                       \
	do {                                                                         \
		if (pres_crash_countdown != 0 && --pres_crash_countdown == 0)        \
			kill(getpid(), SIGKILL);                                     \
	} while (0)

/* ---- small helpers ------------------------------------------------------ */

static uint64_t chan_hash(const struct pres *t, const char *name, size_t len)
{
	return siphash24(t->h->key, name, len);
}

/* An entry's hash: its client id under a key that depends on its channel
 * node, so the same client in two channels lands in two places. */
static uint64_t client_hash(const struct pres *t, uint32_t chan, const char *client, size_t len)
{
	uint64_t key[2] = { t->h->key[0] ^ (uint64_t)chan * UINT64_C(0x9e3779b97f4a7c15), t->h->key[1] };
	return siphash24(key, client, len);
}

/* The check of a node: a hash of its bytes 4 .. 52. */
static uint32_t node_check(const struct pres_node *n)
{
	uint64_t w[6], x = UINT64_C(0x9e3779b97f4a7c15);
	memcpy(w, (const char *)n + offsetof(struct pres_node, kind), sizeof(w));
	for (int i = 0; i < 6; i++) {
		x = (x ^ w[i]) * UINT64_C(0xbf58476d1ce4e5b9);
		x ^= x >> 31;
	}
	return (uint32_t)(x ^ (x >> 32));
}

static uint32_t blocks_for(uint64_t bytes)
{
	return (uint32_t)((bytes + PRES_BLOCK_DATA - 1) / PRES_BLOCK_DATA);
}

/* Node and block references are index + 1; 0 is none. */
static struct pres_node *N(const struct pres *t, uint32_t ref)
{
	return &t->nodes[ref - 1];
}

static struct pres_blk *B(const struct pres *t, uint32_t ref)
{
	return &t->blocks[ref - 1];
}

static bool bit_get(const uint64_t *map, uint32_t i)
{
	return (map[i / 64] >> (i % 64)) & 1;
}

static void bit_set(uint64_t *map, uint32_t i)
{
	map[i / 64] |= UINT64_C(1) << (i % 64);
}

static void bit_clear(uint64_t *map, uint32_t i)
{
	map[i / 64] &= ~(UINT64_C(1) << (i % 64));
}

/* ---- layout ------------------------------------------------------------- */

struct layout {
	uint64_t lease_off, bucket_off, node_off, nmap_off, bmap_off, block_off, end;
	uint32_t nbuckets;
};

static uint64_t up64(uint64_t x)
{
	return (x + 63) & ~(uint64_t)63;
}

static void layout(uint32_t nodes, uint32_t nblocks, struct layout *L)
{
	uint32_t nb = PRES_NODES_MIN;
	while (nb < nodes)
		nb <<= 1;
	L->nbuckets = nb;
	L->lease_off = sizeof(struct pres_hdr);
	L->bucket_off = up64(L->lease_off + (uint64_t)PRES_SLOTS * sizeof(struct pres_lease));
	L->node_off = up64(L->bucket_off + (uint64_t)nb * sizeof(uint32_t));
	L->nmap_off = L->node_off + (uint64_t)nodes * sizeof(struct pres_node);
	L->bmap_off = up64(L->nmap_off + (uint64_t)(nodes + 63) / 64 * 8);
	L->block_off = up64(L->bmap_off + (uint64_t)(nblocks + 63) / 64 * 8);
	L->end = L->block_off + (uint64_t)nblocks * sizeof(struct pres_blk);
}

static bool geometry_ok(uint32_t nodes, uint64_t arena_bytes)
{
	return nodes >= PRES_NODES_MIN && nodes <= PRES_NODES_MAX && arena_bytes >= PRES_ARENA_MIN &&
	       arena_bytes <= PRES_ARENA_MAX;
}

size_t pres_seg_size(uint32_t nodes, uint64_t arena_bytes)
{
	struct layout L;
	layout(nodes, (uint32_t)(arena_bytes / PRES_BLOCK), &L);
	return sizeof(struct seg_hdr) + (size_t)L.end;
}

static uint32_t entry_max_of(uint32_t nblocks)
{
	uint64_t eighth = (uint64_t)nblocks * PRES_BLOCK_DATA / 8;
	return eighth < PRES_ENTRY_MAX ? (uint32_t)eighth : PRES_ENTRY_MAX;
}

static void map(struct pres *t)
{
	struct pres_hdr *h = seg_payload(&t->seg);
	char *base = (char *)h;

	t->h = h;
	t->leases = (struct pres_lease *)(base + h->lease_off);
	t->buckets = (uint32_t *)(base + h->bucket_off);
	t->nodes = (struct pres_node *)(base + h->node_off);
	t->nmap = (uint64_t *)(base + h->nmap_off);
	t->bmap = (uint64_t *)(base + h->bmap_off);
	t->blocks = (struct pres_blk *)(base + h->block_off);
	t->nnodes = h->nnodes;
	t->nblocks = h->nblocks;
	t->mask = h->nbuckets - 1;
	t->readonly = t->seg.readonly;
}

int pres_create(struct pres *t, const char *path, uint32_t nodes, uint64_t arena_bytes)
{
	struct layout L;
	int err;

	memset(t, 0, sizeof(*t));
	if (!geometry_ok(nodes, arena_bytes)) {
		errno = EINVAL;
		return -1;
	}
	uint32_t nblocks = (uint32_t)(arena_bytes / PRES_BLOCK);
	layout(nodes, nblocks, &L);
	if (seg_create(&t->seg, path, SEG_KIND_PRES, PRES_VERSION, sizeof(struct seg_hdr) + L.end) < 0)
		return -1;

	struct pres_hdr *h = seg_payload(&t->seg);
	h->version = PRES_VERSION;
	h->hdr_size = sizeof(struct pres_hdr);
	h->node_size = sizeof(struct pres_node);
	h->block_size = sizeof(struct pres_blk);
	h->lease_size = sizeof(struct pres_lease);
	h->nslots = PRES_SLOTS;
	h->nnodes = nodes;
	h->nbuckets = L.nbuckets;
	h->nblocks = nblocks;
	h->entry_max = entry_max_of(nblocks);
	h->lease_off = L.lease_off;
	h->bucket_off = L.bucket_off;
	h->node_off = L.node_off;
	h->nmap_off = L.nmap_off;
	h->bmap_off = L.bmap_off;
	h->block_off = L.block_off;
	seg_random_key(h->key);

	if ((err = rlock_init(&h->lock)) != 0) {
		seg_unlink(&t->seg);
		seg_detach(&t->seg);
		errno = err;
		return -1;
	}
	map(t);
	/* Everything free, lowest first; the file is zero-filled. */
	for (uint32_t i = 1; i < nodes; i++)
		t->nodes[i - 1].next = i + 1;
	for (uint32_t i = 1; i < nblocks; i++)
		t->blocks[i - 1].next = i + 1;
	h->free_node = 1;
	h->nfree_nodes = nodes;
	h->free_blk = 1;
	h->nfree_blks = nblocks;
	/* The magic last: a header with a magic is complete. */
	STORE_REL(&h->magic, PRES_MAGIC);
	return 0;
}

/* Whether H, in a segment of SIZE bytes, describes a presence table. */
static bool hdr_ok(const void *payload, size_t size)
{
	const struct pres_hdr *h = payload;
	struct layout L;

	if (LOAD_ACQ(&h->magic) != PRES_MAGIC || h->version != PRES_VERSION ||
	    h->hdr_size != sizeof(struct pres_hdr) || h->node_size != sizeof(struct pres_node) ||
	    h->block_size != sizeof(struct pres_blk) || h->lease_size != sizeof(struct pres_lease) ||
	    h->nslots != PRES_SLOTS ||
	    !geometry_ok(h->nnodes, (uint64_t)h->nblocks * PRES_BLOCK))
		return false;
	layout(h->nnodes, h->nblocks, &L);
	return h->nbuckets == L.nbuckets && h->lease_off == L.lease_off && h->bucket_off == L.bucket_off &&
	       h->node_off == L.node_off && h->nmap_off == L.nmap_off && h->bmap_off == L.bmap_off &&
	       h->block_off == L.block_off && h->entry_max == entry_max_of(h->nblocks) &&
	       size == sizeof(struct seg_hdr) + L.end;
}

int pres_attach(struct pres *t, const char *path, bool readonly)
{
	memset(t, 0, sizeof(*t));
	if (seg_attach_checked(&t->seg, path, SEG_KIND_PRES, PRES_VERSION, readonly, hdr_ok) < 0)
		return -1;
	map(t);
	return 0;
}

void pres_detach(struct pres *t)
{
	seg_detach(&t->seg);
	t->h = NULL;
}

int pres_unlink(struct pres *t)
{
	return seg_unlink(&t->seg);
}

/* ---- block chains ------------------------------------------------------- */

/* A position in a block chain. Every link is range-checked before use, so
 * a reader without the lock never leaves the arena. */
struct cur {
	const struct pres *t;
	uint32_t b;    /* block + 1 */
	uint32_t off;  /* bytes of it consumed */
};

static bool cur_init(struct cur *c, const struct pres *t, uint32_t first)
{
	c->t = t;
	c->b = first;
	c->off = 0;
	return first != 0 && first <= t->nblocks;
}

/* Makes the cursor stand on a byte, moving to the next block if needed. */
static bool cur_next(struct cur *c)
{
	if (c->off < PRES_BLOCK_DATA)
		return true;
	c->b = LOAD(&B(c->t, c->b)->next);
	c->off = 0;
	return c->b != 0 && c->b <= c->t->nblocks;
}

/* Copies LEN bytes at the cursor to DST (NULL: skips them). */
static bool cur_copy(struct cur *c, void *dst, size_t len)
{
	unsigned char *d = dst;
	while (len > 0) {
		if (!cur_next(c))
			return false;
		size_t k = PRES_BLOCK_DATA - c->off;
		if (k > len)
			k = len;
		if (d != NULL) {
			memcpy(d, B(c->t, c->b)->data + c->off, k);
			d += k;
		}
		c->off += (uint32_t)k;
		len -= k;
	}
	return true;
}

/* Whether the LEN bytes at the cursor are those at S. */
static bool cur_eq(struct cur *c, const void *s, size_t len)
{
	const unsigned char *p = s;
	while (len > 0) {
		if (!cur_next(c))
			return false;
		size_t k = PRES_BLOCK_DATA - c->off;
		if (k > len)
			k = len;
		if (memcmp(B(c->t, c->b)->data + c->off, p, k) != 0)
			return false;
		p += k;
		c->off += (uint32_t)k;
		len -= k;
	}
	return true;
}

struct part {
	const void *p;
	size_t len;
};

/* Takes blocks off the free list for the parts' TOTAL bytes (the caller
 * made sure there are enough), writes the parts into them in order, and
 * returns the first block + 1. The chain is nobody's until a node that
 * refers to it is linked. */
static uint32_t chain_new_locked(struct pres *t, const struct part *parts, int nparts, size_t total)
{
	struct pres_hdr *h = t->h;
	uint32_t k = blocks_for(total), first = 0, prev = 0;
	int pi = 0;
	size_t po = 0;

	for (uint32_t i = 0; i < k; i++) {
		uint32_t b = h->free_blk;
		struct pres_blk *blk = B(t, b);
		h->free_blk = blk->next;
		h->nfree_blks--;
		STEP();
		size_t room = PRES_BLOCK_DATA, o = 0;
		while (room > 0 && pi < nparts) {
			size_t n = parts[pi].len - po;
			if (n > room)
				n = room;
			if (n > 0)
				memcpy(blk->data + o, (const unsigned char *)parts[pi].p + po, n);
			o += n;
			room -= n;
			po += n;
			if (po == parts[pi].len) {
				pi++;
				po = 0;
			}
		}
		memset(blk->data + o, 0, room);
		blk->next = 0;
		if (prev != 0)
			B(t, prev)->next = b;
		else
			first = b;
		prev = b;
	}
	return first;
}

/* Gives the chain of a node of BYTES bytes back to the free list. */
static void chain_free_locked(struct pres *t, uint32_t first, uint32_t bytes)
{
	struct pres_hdr *h = t->h;
	uint32_t b = first;

	for (uint32_t i = blocks_for(bytes); i > 0; i--) {
		struct pres_blk *blk = B(t, b);
		uint32_t next = blk->next;
		STORE(&blk->next, h->free_blk);
		h->free_blk = b;
		h->nfree_blks++;
		b = next;
		STEP();
	}
}

/* ---- nodes ---------------------------------------------------------------- */

static uint32_t node_new_locked(struct pres *t)
{
	struct pres_hdr *h = t->h;
	uint32_t r = h->free_node;
	h->free_node = N(t, r)->next;
	h->nfree_nodes--;
	STEP();
	return r;
}

/* Frees node R, which no chain links any more, with its blocks. */
static void node_free_locked(struct pres *t, uint32_t r)
{
	struct pres_hdr *h = t->h;
	struct pres_node *n = N(t, r);

	chain_free_locked(t, n->data, n->bytes);
	STORE(&n->kind, PRES_K_FREE);
	STORE(&n->next, h->free_node);
	h->free_node = r;
	h->nfree_nodes++;
	STEP();
}

/* Whether the entry N (a snapshot, possibly torn for a reader without the
 * lock: OWNER is range-checked) is live at NOW. */
static bool live(const struct pres *t, const struct pres_node *n, int64_t now)
{
	if (n->owner >= PRES_SLOTS)
		return false;
	const struct pres_lease *l = &t->leases[n->owner];
	return LOAD(&l->gen) == n->owner_gen && now < LOAD(&l->until_ms) &&
	       (n->expires_ms == 0 || now < n->expires_ms);
}

/* The channel node named NAME (LEN bytes, hash H) + 1, or 0. *LINKP (may
 * be NULL) gets the link that points to it. A bounded walk: links out of
 * range end it, for a reader without the lock. */
static uint32_t find_chan(const struct pres *t, const char *name, size_t len, uint64_t h, uint32_t **linkp)
{
	uint32_t *link = &t->buckets[h & t->mask], r;
	struct cur c;

	for (uint32_t steps = 0; (r = LOAD(link)) != 0 && r <= t->nnodes && steps < t->nnodes; steps++) {
		struct pres_node *n = N(t, r);
		if (LOAD(&n->kind) == PRES_K_CHAN && LOAD(&n->hash) == h && LOAD(&n->bytes) == len &&
		    cur_init(&c, t, LOAD(&n->data)) && cur_eq(&c, name, len)) {
			if (linkp != NULL)
				*linkp = link;
			return r;
		}
		link = &n->next;
	}
	return 0;
}

/* The entry of CLIENT (LEN bytes, hash H) in channel node CHAN + 1, or 0;
 * *LINKP gets the link that points to it. Lock held. */
static uint32_t find_client_locked(const struct pres *t, uint32_t chan, const char *client, size_t len,
				   uint64_t h, uint32_t **linkp)
{
	uint32_t *link = &t->buckets[h & t->mask], r;
	struct cur c;

	while ((r = *link) != 0) {
		struct pres_node *n = N(t, r);
		if (n->kind == PRES_K_CLIENT && n->hash == h && n->chan == chan && n->client_len == len &&
		    cur_init(&c, t, n->data) && cur_eq(&c, client, len)) {
			*linkp = link;
			return r;
		}
		link = &n->next;
	}
	return 0;
}

/* Channel member lists (derived). */
static void member_push_locked(struct pres *t, uint32_t chan, uint32_t r)
{
	struct pres_node *c = N(t, chan), *n = N(t, r);
	uint32_t first = c->l.c.first;

	n->l.m.prev = 0;
	n->l.m.next = first;
	if (first != 0)
		N(t, first)->l.m.prev = r;
	STORE(&c->l.c.first, r);
	c->l.c.count++;
}

static void member_unlink_locked(struct pres *t, uint32_t r)
{
	struct pres_node *n = N(t, r), *c = N(t, n->chan);
	uint32_t prev = n->l.m.prev, next = n->l.m.next;

	if (prev != 0)
		STORE(&N(t, prev)->l.m.next, next);
	else
		STORE(&c->l.c.first, next);
	if (next != 0)
		N(t, next)->l.m.prev = prev;
	c->l.c.count--;
}

/* Puts entry R in entry X's place in their channel's list. */
static void member_replace_locked(struct pres *t, uint32_t x, uint32_t r)
{
	struct pres_node *o = N(t, x), *n = N(t, r), *c = N(t, o->chan);

	n->l.m = o->l.m;
	if (n->l.m.prev != 0)
		STORE(&N(t, n->l.m.prev)->l.m.next, r);
	else
		STORE(&c->l.c.first, r);
	if (n->l.m.next != 0)
		N(t, n->l.m.next)->l.m.prev = r;
}

/* Seqlock for readers without the lock: odd while the table changes. A
 * writer killed midway leaves it odd until the repair. */
static void begin_write(struct pres *t)
{
	uint64_t v = LOAD(&t->h->wver);
	if ((v & 1) == 0) {
		STORE(&t->h->wver, v + 1);
		__atomic_thread_fence(__ATOMIC_RELEASE);
	}
}

static void end_write(struct pres *t)
{
	uint64_t v = LOAD(&t->h->wver);
	if (v & 1)
		STORE_REL(&t->h->wver, v + 1);
}

/* ---- changes: everything _locked runs with the lock held ---------------- */

/* Links a new, empty channel node for NAME: its own commit. The caller
 * made sure a node and the name's blocks are free. Returns it. */
static uint32_t chan_new_locked(struct pres *t, const char *name, size_t len, uint64_t hash)
{
	struct part p = { name, len };
	uint32_t r = node_new_locked(t), *head = &t->buckets[hash & t->mask];
	struct pres_node *n = N(t, r);

	memset((char *)n + offsetof(struct pres_node, kind), 0, sizeof(*n) - offsetof(struct pres_node, kind));
	n->kind = PRES_K_CHAN;
	n->hash = hash;
	n->data = chain_new_locked(t, &p, 1, len);
	n->bytes = (uint32_t)len;
	n->check = node_check(n);
	n->next = *head;
	STEP();
	STORE_REL(head, r); /* commit */
	STEP();
	t->h->nchannels++;
	return r;
}

/* Unlinks the empty channel node C (one store) and frees it. */
static void chan_drop_locked(struct pres *t, uint32_t c)
{
	struct pres_node *n = N(t, c);
	uint32_t *link = &t->buckets[n->hash & t->mask];

	while (*link != c)
		link = &N(t, *link)->next;
	STEP();
	STORE_REL(link, n->next); /* commit */
	STEP();
	t->h->nchannels--;
	node_free_locked(t, c);
}

/* Unlinks entry R, which LINK points to (one store), and frees it. */
static void entry_drop_locked(struct pres *t, uint32_t *link, uint32_t r)
{
	STEP();
	STORE_REL(link, N(t, r)->next); /* commit */
	STEP();
	member_unlink_locked(t, r);
	t->h->nclients--;
	node_free_locked(t, r);
}

/* Whether entry X already holds exactly what IT would write. */
static bool same_locked(const struct pres *t, const struct pres_node *x, const struct pres_item *it,
			size_t ulen)
{
	struct cur c;

	return x->owner == it->owner && x->owner_gen == LOAD(&t->leases[it->owner].gen) &&
	       x->expires_ms == it->expires_ms && x->user_len == ulen &&
	       x->conn_info_len == it->conn_info_len && x->chan_info_len == it->chan_info_len &&
	       cur_init(&c, t, x->data) && cur_copy(&c, NULL, x->client_len) && cur_eq(&c, it->user, ulen) &&
	       cur_eq(&c, it->conn_info, it->conn_info_len) && cur_eq(&c, it->chan_info, it->chan_info_len);
}

static int lock(struct pres *t);
static void unlock(struct pres *t);

int pres_add(struct pres *t, const char *channel, const struct pres_item *it)
{
	struct pres_hdr *h = t->h;

	if (t->readonly) {
		errno = EROFS;
		return -1;
	}
	if (channel == NULL || it->client == NULL || it->user == NULL || it->owner >= PRES_SLOTS ||
	    (it->conn_info == NULL && it->conn_info_len > 0) || (it->chan_info == NULL && it->chan_info_len > 0)) {
		errno = EINVAL;
		return -1;
	}
	size_t chn = strlen(channel), cln = strlen(it->client), usn = strlen(it->user);
	if (chn == 0 || cln == 0) {
		errno = EINVAL;
		return -1;
	}
	size_t bytes = cln + usn + it->conn_info_len + it->chan_info_len;
	if (chn > PRES_CHANNEL_MAX || cln > PRES_CLIENT_MAX || usn > PRES_USER_MAX ||
	    it->conn_info_len > PRES_INFO_MAX || it->chan_info_len > PRES_INFO_MAX || bytes > h->entry_max ||
	    chn > h->entry_max) {
		__atomic_fetch_add(&h->too_big, 1, __ATOMIC_RELAXED);
		errno = EMSGSIZE;
		return -1;
	}
	uint64_t hc = chan_hash(t, channel, chn), hk = 0;
	if (lock(t) < 0)
		return -1;

	uint32_t *xlink = NULL, x = 0, c = find_chan(t, channel, chn, hc, NULL);
	if (c != 0) {
		hk = client_hash(t, c, it->client, cln);
		x = find_client_locked(t, c, it->client, cln, hk, &xlink);
		if (x != 0 && same_locked(t, N(t, x), it, usn)) {
			unlock(t);
			return 0;
		}
	}
	uint32_t need_nodes = c == 0 ? 2 : 1;
	uint32_t need_blocks = blocks_for(bytes) + (c == 0 ? blocks_for(chn) : 0);
	if (h->nfree_nodes < need_nodes || h->nfree_blks < need_blocks) {
		BUMP(&h->full);
		unlock(t);
		errno = ENOSPC;
		return -1;
	}
	begin_write(t);
	if (c == 0) {
		c = chan_new_locked(t, channel, chn, hc);
		hk = client_hash(t, c, it->client, cln);
	}

	struct part parts[4] = {
		{ it->client, cln }, { it->user, usn }, { it->conn_info, it->conn_info_len },
		{ it->chan_info, it->chan_info_len },
	};
	uint32_t r = node_new_locked(t);
	struct pres_node *n = N(t, r);
	memset((char *)n + offsetof(struct pres_node, kind), 0, sizeof(*n) - offsetof(struct pres_node, kind));
	n->kind = PRES_K_CLIENT;
	n->owner = (uint16_t)it->owner;
	n->hash = hk;
	n->data = chain_new_locked(t, parts, 4, bytes);
	n->bytes = (uint32_t)bytes;
	n->chan = c;
	n->owner_gen = LOAD(&t->leases[it->owner].gen);
	n->expires_ms = it->expires_ms;
	n->client_len = (uint16_t)cln;
	n->user_len = (uint16_t)usn;
	n->conn_info_len = (uint32_t)it->conn_info_len;
	n->chan_info_len = (uint32_t)it->chan_info_len;
	n->check = node_check(n);
	STEP();
	if (x != 0) {
		/* In X's place: the store that links R unlinks X. */
		n->next = N(t, x)->next;
		STEP();
		STORE_REL(xlink, r); /* commit */
		STEP();
		member_replace_locked(t, x, r);
		node_free_locked(t, x);
		BUMP(&h->updates);
	} else {
		uint32_t *head = &t->buckets[hk & t->mask];
		n->next = *head;
		STEP();
		STORE_REL(head, r); /* commit */
		STEP();
		member_push_locked(t, c, r);
		h->nclients++;
		BUMP(&h->adds);
	}
	end_write(t);
	unlock(t);
	return 0;
}

int pres_remove(struct pres *t, const char *channel, const char *client)
{
	if (t->readonly) {
		errno = EROFS;
		return -1;
	}
	size_t chn = strlen(channel), cln = strlen(client);
	if (chn == 0 || cln == 0 || chn > PRES_CHANNEL_MAX || cln > PRES_CLIENT_MAX) {
		errno = ENOENT;
		return -1;
	}
	uint64_t hc = chan_hash(t, channel, chn);
	if (lock(t) < 0)
		return -1;
	uint32_t *xlink = NULL, x = 0, c = find_chan(t, channel, chn, hc, NULL);
	if (c != 0)
		x = find_client_locked(t, c, client, cln, client_hash(t, c, client, cln), &xlink);
	if (x == 0) {
		unlock(t);
		errno = ENOENT;
		return -1;
	}
	begin_write(t);
	entry_drop_locked(t, xlink, x);
	if (N(t, c)->l.c.count == 0)
		chan_drop_locked(t, c);
	BUMP(&t->h->removes);
	end_write(t);
	unlock(t);
	return 0;
}

/* What a reap removes: dead entries at NOW, or (SLOT >= 0) the entries of
 * released slot SLOT. */
struct reap {
	int64_t now;
	int slot;
	unsigned visited;
};

static bool reapable(const struct pres *t, const struct pres_node *n, const struct reap *rp)
{
	if (rp->slot >= 0)
		return n->owner == rp->slot && n->owner_gen != LOAD(&t->leases[rp->slot].gen);
	return !live(t, n, rp->now);
}

/* Removes what RP says from bucket B's chain; returns how many entries. */
static unsigned reap_bucket_locked(struct pres *t, uint32_t b, struct reap *rp)
{
	unsigned removed = 0;
	uint32_t *link, r;

restart:
	link = &t->buckets[b];
	while ((r = *link) != 0) {
		struct pres_node *n = N(t, r);
		rp->visited++;
		if (n->kind == PRES_K_CLIENT && reapable(t, n, rp)) {
			uint32_t c = n->chan;
			begin_write(t);
			entry_drop_locked(t, link, r);
			removed++;
			if (N(t, c)->l.c.count == 0) {
				chan_drop_locked(t, c);
				goto restart; /* LINK may have been C's */
			}
			continue;
		}
		link = &n->next;
	}
	return removed;
}

int pres_sweep(struct pres *t, int64_t now_ms, unsigned budget)
{
	struct reap rp = { .now = now_ms, .slot = -1 };
	unsigned removed = 0;

	if (t->readonly) {
		errno = EROFS;
		return -1;
	}
	if (lock(t) < 0)
		return -1;
	for (uint32_t i = 0; i <= t->mask && rp.visited < budget; i++) {
		uint32_t b = t->h->sweep_hand & t->mask;
		t->h->sweep_hand = (b + 1) & t->mask;
		rp.visited++;
		removed += reap_bucket_locked(t, b, &rp);
	}
	t->h->swept += removed;
	end_write(t);
	unlock(t);
	return (int)removed;
}

int pres_touch_owner(struct pres *t, unsigned owner, int64_t now_ms, int64_t until_ms)
{
	if (t->readonly) {
		errno = EROFS;
		return -1;
	}
	if (owner >= PRES_SLOTS) {
		errno = EINVAL;
		return -1;
	}
	struct pres_lease *l = &t->leases[owner];
	int64_t old = __atomic_exchange_n(&l->until_ms, until_ms, __ATOMIC_SEQ_CST);
	if (LOAD(&l->pid) != rlock_pid())
		STORE(&l->pid, rlock_pid());
	return old <= now_ms ? 1 : 0;
}

int pres_release_slot(struct pres *t, unsigned owner)
{
	struct reap rp = { .slot = (int)owner };
	unsigned removed = 0;

	if (t->readonly) {
		errno = EROFS;
		return -1;
	}
	if (owner >= PRES_SLOTS) {
		errno = EINVAL;
		return -1;
	}
	struct pres_lease *l = &t->leases[owner];
	__atomic_fetch_add(&l->gen, 1, __ATOMIC_SEQ_CST); /* from here its entries are dead */
	STORE(&l->until_ms, 0);
	STORE(&l->pid, 0);
	for (uint32_t b = 0; b <= t->mask;) {
		unsigned n = 0;
		if (lock(t) < 0)
			return -1;
		for (uint32_t end = b + RELEASE_CHUNK; b <= t->mask && b < end; b++)
			n += reap_bucket_locked(t, b, &rp);
		t->h->purged += n;
		end_write(t);
		unlock(t);
		removed += n;
	}
	return (int)removed;
}

/* ---- repair and verification --------------------------------------------- */

/* Whether chained node N, in bucket B, holds together on its own. */
static bool node_ok(const struct pres *t, const struct pres_node *n, uint32_t b)
{
	uint32_t max = t->h->entry_max;

	if ((n->kind != PRES_K_CHAN && n->kind != PRES_K_CLIENT) || n->pad0 != 0 || n->check != node_check(n) ||
	    (n->hash & t->mask) != b || n->data == 0 || n->data > t->nblocks || n->bytes == 0 || n->bytes > max)
		return false;
	if (n->kind == PRES_K_CHAN)
		return n->bytes <= PRES_CHANNEL_MAX;
	return n->client_len >= 1 && n->client_len <= PRES_CLIENT_MAX && n->user_len <= PRES_USER_MAX &&
	       n->conn_info_len <= PRES_INFO_MAX && n->chan_info_len <= PRES_INFO_MAX &&
	       (uint64_t)n->client_len + n->user_len + n->conn_info_len + n->chan_info_len == n->bytes &&
	       n->owner < PRES_SLOTS && n->chan >= 1 && n->chan <= t->nnodes;
}

/* Marks the blocks of N's chain in bmap. Returns false, unmarking them
 * again, if the chain does not hold: a link out of range, a block already
 * marked (another node's), or one block too many. */
static bool mark_chain(struct pres *t, const struct pres_node *n)
{
	uint32_t k = blocks_for(n->bytes), b = n->data, i;

	for (i = 0; i < k; i++) {
		if (b == 0 || b > t->nblocks || bit_get(t->bmap, b - 1))
			break;
		bit_set(t->bmap, b - 1);
		b = B(t, b)->next;
	}
	if (i == k && b == 0)
		return true;
	for (uint32_t u = n->data; i > 0; i--) {
		bit_clear(t->bmap, u - 1);
		u = B(t, u)->next;
	}
	return false;
}

static void unmark_chain(struct pres *t, const struct pres_node *n)
{
	uint32_t b = n->data;
	for (uint32_t i = blocks_for(n->bytes); i > 0; i--) {
		bit_clear(t->bmap, b - 1);
		b = B(t, b)->next;
	}
}

/* Rebuilds everything derived from the chains after a holder died. */
static void repair_locked(struct pres *t)
{
	struct pres_hdr *h = t->h;
	uint32_t nchan = 0, ncli = 0, nfree = 0, bfree = 0, *link, r;

	BUMP(&h->repairs);
	STORE(&h->owner, 0);
	begin_write(t);
	memset(t->nmap, 0, (size_t)(t->nnodes + 63) / 64 * 8);
	memset(t->bmap, 0, (size_t)(t->nblocks + 63) / 64 * 8);

	/* Keep each chain's nodes that hold together, marking them and their
	 * blocks; a node met twice ends its chain (a cycle or a cross-link). */
	for (uint32_t b = 0; b <= t->mask; b++) {
		uint32_t steps = 0;
		link = &t->buckets[b];
		while ((r = *link) != 0) {
			if (r > t->nnodes || ++steps > t->nnodes || bit_get(t->nmap, r - 1)) {
				STORE_REL(link, 0);
				BUMP(&h->dropped);
				break;
			}
			struct pres_node *n = N(t, r);
			if (!node_ok(t, n, b) || !mark_chain(t, n)) {
				STORE_REL(link, n->next <= t->nnodes ? n->next : 0);
				BUMP(&h->dropped);
				STEP();
				continue;
			}
			bit_set(t->nmap, r - 1);
			if (n->kind == PRES_K_CHAN)
				n->l.c.first = n->l.c.count = 0;
			link = &n->next;
		}
	}
	STEP();
	/* Entries join their channel's list; one without a channel goes. */
	for (uint32_t b = 0; b <= t->mask; b++) {
		link = &t->buckets[b];
		while ((r = *link) != 0) {
			struct pres_node *n = N(t, r);
			if (n->kind == PRES_K_CLIENT) {
				if (!bit_get(t->nmap, n->chan - 1) || N(t, n->chan)->kind != PRES_K_CHAN) {
					STORE_REL(link, n->next);
					unmark_chain(t, n);
					bit_clear(t->nmap, r - 1);
					BUMP(&h->dropped);
					STEP();
					continue;
				}
				member_push_locked(t, n->chan, r);
				STEP();
			}
			link = &n->next;
		}
	}
	STEP();
	/* Channels left empty (a writer died between its entry's commit and
	 * its channel's, or before its first entry) go. */
	for (uint32_t b = 0; b <= t->mask; b++) {
		link = &t->buckets[b];
		while ((r = *link) != 0) {
			struct pres_node *n = N(t, r);
			if (n->kind == PRES_K_CHAN && n->l.c.count == 0) {
				STORE_REL(link, n->next);
				unmark_chain(t, n);
				bit_clear(t->nmap, r - 1);
				STEP();
				continue;
			}
			link = &n->next;
		}
	}
	STEP();
	/* What nobody reached is free. */
	h->free_node = 0;
	for (r = t->nnodes; r > 0; r--) {
		struct pres_node *n = N(t, r);
		if (bit_get(t->nmap, r - 1)) {
			if (n->kind == PRES_K_CHAN)
				nchan++;
			else
				ncli++;
			continue;
		}
		n->kind = PRES_K_FREE;
		n->next = h->free_node;
		h->free_node = r;
		nfree++;
		STEP();
	}
	h->free_blk = 0;
	for (r = t->nblocks; r > 0; r--) {
		if (bit_get(t->bmap, r - 1))
			continue;
		B(t, r)->next = h->free_blk;
		h->free_blk = r;
		bfree++;
	}
	h->nfree_nodes = nfree;
	h->nfree_blks = bfree;
	h->nchannels = nchan;
	h->nclients = ncli;
	end_write(t);
}

/* The repair rlock_lock runs after a dead holder, with the lock held. */
static void repair(void *t)
{
	repair_locked(t);
}

/* Takes the lock, repairing after a dead holder. 0, or -1 with errno. */
static int lock(struct pres *t)
{
	return rlock_lock(&t->h->lock, &t->h->owner, repair, t);
}

static void unlock(struct pres *t)
{
	rlock_unlock(&t->h->lock, &t->h->owner);
}

/* Checks every invariant; returns what failed, or NULL. BUF holds
 * entry_max bytes (a node's bytes, to recompute its hash). */
static const char *verify_locked(struct pres *t, struct pres_counts *vc, char *buf)
{
	const struct pres_hdr *h = t->h;
	uint32_t r, nchan = 0, ncli = 0, stale = 0, bused = 0, nfree = 0, bfree = 0;
	struct cur c;

	memset(vc, 0, sizeof(*vc));
	if (LOAD(&h->wver) & 1)
		return "the write version is odd with the lock free";
	memset(t->nmap, 0, (size_t)(t->nnodes + 63) / 64 * 8);
	memset(t->bmap, 0, (size_t)(t->nblocks + 63) / 64 * 8);

	/* The chains: each node once, whole, in its bucket, its blocks its own. */
	for (uint32_t b = 0; b <= t->mask; b++) {
		for (r = t->buckets[b]; r != 0; r = N(t, r)->next) {
			if (r > t->nnodes)
				return "a chain link out of range";
			if (bit_get(t->nmap, r - 1))
				return "a node chained twice (or a cycle)";
			bit_set(t->nmap, r - 1);
			const struct pres_node *n = N(t, r);
			if (n->kind != PRES_K_CHAN && n->kind != PRES_K_CLIENT)
				return "a free node in a chain";
			if (n->check != node_check(n))
				return "a node whose check fails";
			if (!node_ok(t, n, b))
				return "a node with bad lengths or in the wrong bucket";
			if (!mark_chain(t, n))
				return "a block chain that is broken, too long or shared";
			bused += blocks_for(n->bytes);
			if (!cur_init(&c, t, n->data) || !cur_copy(&c, buf, n->bytes))
				return "a block chain that cannot be read";
			if (n->kind == PRES_K_CHAN) {
				nchan++;
				if (chan_hash(t, buf, n->bytes) != n->hash)
					return "a channel whose hash is not its name's";
			} else {
				ncli++;
				if (client_hash(t, n->chan, buf, n->client_len) != n->hash)
					return "an entry whose hash is not its client's";
				if (n->owner_gen != LOAD(&t->leases[n->owner].gen))
					stale++;
			}
		}
	}
	/* Each entry's channel is a chained channel. */
	for (r = 1; r <= t->nnodes; r++) {
		const struct pres_node *n = N(t, r);
		if (bit_get(t->nmap, r - 1) && n->kind == PRES_K_CLIENT &&
		    (!bit_get(t->nmap, n->chan - 1) || N(t, n->chan)->kind != PRES_K_CHAN))
			return "an entry whose channel is not a chained channel";
	}
	/* The free lists hold exactly the rest. */
	for (r = h->free_node; r != 0; r = N(t, r)->next) {
		if (r > t->nnodes || bit_get(t->nmap, r - 1))
			return "the free node list runs into a used node, out of range, or loops";
		if (N(t, r)->kind != PRES_K_FREE)
			return "a node on the free list is not marked free";
		bit_set(t->nmap, r - 1);
		nfree++;
	}
	if (nfree != h->nfree_nodes || nfree + nchan + ncli != t->nnodes)
		return "free node count wrong, or nodes neither used nor free";
	for (r = h->free_blk; r != 0; r = B(t, r)->next) {
		if (r > t->nblocks || bit_get(t->bmap, r - 1))
			return "the free block list runs into a used block, out of range, or loops";
		bit_set(t->bmap, r - 1);
		bfree++;
	}
	if (bfree != h->nfree_blks || bfree + bused != t->nblocks)
		return "free block count wrong, or blocks neither used nor free";
	if (nchan != h->nchannels || ncli != h->nclients)
		return "channel or entry count wrong";
	/* Member lists: each entry in its channel's, once; counts right. An
	 * entry met is unmarked, so one met twice or never shows. */
	for (uint32_t b = 0; b <= t->mask; b++) {
		for (r = t->buckets[b]; r != 0; r = N(t, r)->next) {
			const struct pres_node *ch = N(t, r);
			if (ch->kind != PRES_K_CHAN)
				continue;
			uint32_t count = 0, prev = 0;
			for (uint32_t m = ch->l.c.first; m != 0; m = N(t, m)->l.m.next) {
				if (m > t->nnodes || !bit_get(t->nmap, m - 1))
					return "a member list runs out of range or meets an entry twice";
				const struct pres_node *e = N(t, m);
				if (e->kind != PRES_K_CLIENT || e->chan != r)
					return "a member list holds another channel's entry";
				if (e->l.m.prev != prev)
					return "a member's back link is wrong";
				bit_clear(t->nmap, m - 1);
				prev = m;
				count++;
			}
			if (count != ch->l.c.count)
				return "a channel's member count is wrong";
			if (count == 0)
				return "an empty channel";
		}
	}
	for (r = 1; r <= t->nnodes; r++)
		if (bit_get(t->nmap, r - 1) && N(t, r)->kind == PRES_K_CLIENT)
			return "an entry missing from its channel's member list";
	vc->channels = nchan;
	vc->clients = ncli;
	vc->stale = stale;
	vc->nodes_free = nfree;
	vc->blocks_used = bused;
	vc->blocks_free = bfree;
	return NULL;
}

int pres_verify(struct pres *t, struct pres_counts *vc)
{
	struct pres_counts dummy;
	const char *problem;

	if (vc == NULL)
		vc = &dummy;
	memset(vc, 0, sizeof(*vc));
	if (t->readonly) {
		errno = EROFS;
		return -1;
	}
	char *buf = malloc(t->h->entry_max + 1);
	if (buf == NULL) {
		errno = ENOMEM;
		return -1;
	}
	if (lock(t) < 0) {
		free(buf);
		return -1;
	}
	problem = verify_locked(t, vc, buf);
	unlock(t);
	free(buf);
	if (problem != NULL) {
		vc->problem = problem;
		errno = EPROTO;
		return -1;
	}
	return 0;
}

/* ---- readers ------------------------------------------------------------ */

/* A private copy of a channel's live entries: records of a struct crec, then
 * client NUL, user NUL, conn_info, chan_info, padded to 8 bytes. */
struct crec {
	uint32_t size;            /* of the record, padding included */
	uint16_t client_len, user_len;
	uint32_t conn_info_len, chan_info_len;
	uint32_t owner;
	uint32_t pad;
	int64_t expires_ms;
};

struct coll {
	unsigned char *buf;
	size_t len, cap;
	uint32_t n;
	bool infos;               /* copy conn_info and chan_info (pres_get) */
};

static int coll_room(struct coll *co, size_t more)
{
	if (co->len + more <= co->cap)
		return 0;
	size_t cap = co->cap ? co->cap : 4096;
	while (cap < co->len + more)
		cap *= 2;
	unsigned char *p = realloc(co->buf, cap);
	if (p == NULL) {
		errno = ENOMEM;
		return -1;
	}
	co->buf = p;
	co->cap = cap;
	return 0;
}

/* Copies the live entries of channel NAME (LEN bytes, hash HC) into CO.
 * Returns 0; -1 with errno ENOMEM; or 1 when what it read does not hold
 * together (torn under a writer, for a reader without the lock; else
 * damage). Every index and length is checked before use, and the walk is
 * bounded, so torn data never takes it outside the segment. */
static int collect(const struct pres *t, const char *name, size_t len, uint64_t hc, int64_t now,
		   struct coll *co)
{
	co->len = 0;
	co->n = 0;
	uint32_t c = find_chan(t, name, len, hc, NULL);
	if (c == 0)
		return 0;
	uint32_t r = LOAD(&N(t, c)->l.c.first);
	uint64_t copied = 0, arena = (uint64_t)t->nblocks * PRES_BLOCK_DATA;
	for (uint32_t steps = 0; r != 0; steps++) {
		struct pres_node n;
		struct cur cu;

		if (r > t->nnodes || steps >= t->nnodes)
			return 1;
		memcpy(&n, N(t, r), sizeof(n)); /* one snapshot: no field is read twice */
		if (n.kind != PRES_K_CLIENT || n.chan != c || n.client_len == 0 || n.client_len > PRES_CLIENT_MAX ||
		    n.user_len > PRES_USER_MAX || n.conn_info_len > PRES_INFO_MAX || n.chan_info_len > PRES_INFO_MAX)
			return 1;
		copied += n.client_len + n.user_len + n.conn_info_len + n.chan_info_len;
		if (copied > arena)
			return 1; /* more than the arena holds: torn */
		if (live(t, &n, now)) {
			size_t info = co->infos ? (size_t)n.conn_info_len + n.chan_info_len : 0;
			size_t size = (sizeof(struct crec) + n.client_len + 1 + n.user_len + 1 + info + 7) & ~(size_t)7;
			if (coll_room(co, size) < 0)
				return -1;
			struct crec *cr = (struct crec *)(co->buf + co->len);
			char *p = (char *)(cr + 1);
			*cr = (struct crec){ .size = (uint32_t)size, .client_len = n.client_len, .user_len = n.user_len,
					     .owner = n.owner, .expires_ms = n.expires_ms };
			if (!cur_init(&cu, t, n.data) || !cur_copy(&cu, p, n.client_len))
				return 1;
			p[n.client_len] = '\0';
			p += n.client_len + 1;
			if (!cur_copy(&cu, p, n.user_len))
				return 1;
			p[n.user_len] = '\0';
			p += n.user_len + 1;
			if (co->infos) {
				cr->conn_info_len = n.conn_info_len;
				cr->chan_info_len = n.chan_info_len;
				if (!cur_copy(&cu, p, info))
					return 1;
			}
			co->len += size;
			co->n++;
		}
		r = n.l.m.next;
	}
	return 0;
}

/* Fills CO with channel NAME's live entries: under the lock, or (read-only
 * mapping) under the seqlock. 0, or -1 with errno. */
static int read_channel(struct pres *t, const char *name, int64_t now, struct coll *co)
{
	size_t len = strlen(name);
	int rc;

	co->len = 0;
	co->n = 0;
	if (len == 0) {
		errno = EINVAL;
		return -1;
	}
	if (len > PRES_CHANNEL_MAX)
		return 0; /* cannot be in the table */
	uint64_t hc = chan_hash(t, name, len);

	/* Size the copy before the lock, from a peek at the member count (a
	 * bounded walk, safe without the lock): its page faults then happen
	 * here, not while every writer waits. */
	uint32_t c = find_chan(t, name, len, hc, NULL), guess = c != 0 ? LOAD(&N(t, c)->l.c.count) : 0;
	if (c != 0 && LOAD(&N(t, c)->kind) != PRES_K_CHAN)
		guess = 0; /* reused meanwhile: the count was something else */
	if (guess > PEEK_MAX)
		guess = PEEK_MAX;
	size_t want = (size_t)guess * (sizeof(struct crec) + 48 + (co->infos ? 64 : 0));
	if (want > 0) {
		if (coll_room(co, want) < 0)
			return -1;
		memset(co->buf, 0, want);
	}
	if (!t->readonly) {
		if (lock(t) < 0)
			return -1;
		rc = collect(t, name, len, hc, now, co);
		unlock(t);
	} else {
		rc = 2;
		for (int tries = 0; tries < RO_TRIES && rc == 2; tries++) {
			uint64_t v = LOAD_ACQ(&t->h->wver);
			if (v & 1) {
				sched_yield();
				continue;
			}
			rc = collect(t, name, len, hc, now, co);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (rc >= 0 && LOAD(&t->h->wver) != v)
				rc = 2;
		}
		if (rc == 2) {
			errno = EAGAIN;
			return -1;
		}
	}
	if (rc == 1) {
		errno = EPROTO;
		return -1;
	}
	return rc;
}

int pres_get(struct pres *t, const char *channel, int64_t now_ms, pres_item_fn *fn, void *arg)
{
	struct coll co = { .infos = true };
	int n = 0;

	if (read_channel(t, channel, now_ms, &co) < 0) {
		free(co.buf);
		return -1;
	}
	for (size_t off = 0; off < co.len;) {
		const struct crec *cr = (const struct crec *)(co.buf + off);
		const char *p = (const char *)(cr + 1);
		struct pres_item it = {
			.client = p,
			.user = p + cr->client_len + 1,
			.owner = cr->owner,
			.expires_ms = cr->expires_ms,
		};
		p += cr->client_len + 1 + cr->user_len + 1;
		if (cr->conn_info_len > 0) {
			it.conn_info = p;
			it.conn_info_len = cr->conn_info_len;
		}
		if (cr->chan_info_len > 0) {
			it.chan_info = p + cr->conn_info_len;
			it.chan_info_len = cr->chan_info_len;
		}
		off += cr->size;
		n++;
		if (fn(arg, &it) != 0)
			break;
	}
	free(co.buf);
	return n;
}

struct ustr {
	const char *p;
	size_t len;
};

static int ustr_cmp(const void *a, const void *b)
{
	const struct ustr *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->p, y->p, n);
	return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

int pres_stats(struct pres *t, const char *channel, int64_t now_ms, uint32_t *num_clients,
	       uint32_t *num_users)
{
	struct coll co = { .infos = false };
	struct ustr *u = NULL;
	uint32_t users = 0;

	*num_clients = 0;
	*num_users = 0;
	if (read_channel(t, channel, now_ms, &co) < 0) {
		free(co.buf);
		return -1;
	}
	if (co.n > 0 && (u = malloc(co.n * sizeof(*u))) == NULL) {
		free(co.buf);
		errno = ENOMEM;
		return -1;
	}
	uint32_t i = 0;
	for (size_t off = 0; off < co.len; i++) {
		const struct crec *cr = (const struct crec *)(co.buf + off);
		u[i].p = (const char *)(cr + 1) + cr->client_len + 1;
		u[i].len = cr->user_len;
		off += cr->size;
	}
	if (co.n > 0) {
		qsort(u, co.n, sizeof(*u), ustr_cmp);
		users = 1;
		for (i = 1; i < co.n; i++)
			if (ustr_cmp(&u[i - 1], &u[i]) != 0)
				users++;
	}
	*num_clients = co.n;
	*num_users = users;
	free(u);
	free(co.buf);
	return 0;
}

void pres_info(const struct pres *t, struct pres_info *st)
{
	const struct pres_hdr *h = t->h;

	memset(st, 0, sizeof(*st));
	st->nodes = t->nnodes;
	st->blocks = t->nblocks;
	st->nodes_free = LOAD(&h->nfree_nodes);
	st->blocks_free = LOAD(&h->nfree_blks);
	st->channels = LOAD(&h->nchannels);
	st->clients = LOAD(&h->nclients);
	st->adds = LOAD(&h->adds);
	st->updates = LOAD(&h->updates);
	st->removes = LOAD(&h->removes);
	st->swept = LOAD(&h->swept);
	st->purged = LOAD(&h->purged);
	st->full = LOAD(&h->full);
	st->too_big = LOAD(&h->too_big);
	st->repairs = LOAD(&h->repairs);
	st->dropped = LOAD(&h->dropped);
	st->lock_owner = LOAD(&h->owner);
	for (unsigned i = 0; i < PRES_SLOTS; i++)
		if (LOAD(&t->leases[i].until_ms) != 0)
			st->leases++;
}
