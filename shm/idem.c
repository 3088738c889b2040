/*
 * idem.c - the table of idempotent publish results (see idem.h for the
 * model and the layout).
 *
 * Writing an entry is three moves under the lock: mark it as being written
 * in the header (writing = entry + 1) and clear its check, store the
 * fields, set the check, then clear the mark. A holder killed anywhere in
 * between leaves at most that one entry torn; the next locker (EOWNERDEAD)
 * clears it. Readers also take the lock, and treat an entry whose check
 * does not hold as free, so even a torn entry is never believed.
 */
#include "idem.h"
#include "rlock.h"
#include "siphash.h"

#include <errno.h>
#include <string.h>

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define COUNT(p) STORE((p), LOAD(p) + 1) /* counters: the lock holder writes */
/* Stores before it are emitted before stores after it: what a process
 * killed between two instructions has written is a prefix of the code. */
#define BARRIER() __atomic_signal_fence(__ATOMIC_SEQ_CST)

/* ---- geometry ----------------------------------------------------------- */

static uint32_t buckets_for(uint32_t entries)
{
	uint32_t n = 1;
	while ((uint64_t)n * IDEM_WAYS < entries)
		n <<= 1;
	return n;
}

static uint64_t ents_off(void)
{
	return sizeof(struct idem_hdr);
}

size_t idem_seg_size(uint32_t entries)
{
	return sizeof(struct seg_hdr) + ents_off() +
	       (size_t)buckets_for(entries) * IDEM_WAYS * sizeof(struct idem_ent);
}

static bool hdr_ok(const void *payload, size_t size)
{
	const struct idem_hdr *h = payload;
	uint32_t nb = h->nbuckets;

	if (LOAD_ACQ(&h->magic) != IDEM_MAGIC || h->version != IDEM_VERSION ||
	    h->hdr_size != sizeof(struct idem_hdr) || h->ent_size != sizeof(struct idem_ent) || nb == 0 ||
	    (nb & (nb - 1)) != 0 || (uint64_t)nb * IDEM_WAYS > IDEM_ENTRIES_MAX || h->ent_off != ents_off())
		return false;
	return size == idem_seg_size(nb * IDEM_WAYS);
}

static void map(struct idem *t)
{
	t->h = seg_payload(&t->seg);
	t->ents = (struct idem_ent *)((char *)t->h + t->h->ent_off);
	t->mask = t->h->nbuckets - 1;
}

int idem_create(struct idem *t, const char *path, uint32_t entries)
{
	int err;

	memset(t, 0, sizeof(*t));
	if (entries < IDEM_ENTRIES_MIN || entries > IDEM_ENTRIES_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (seg_create(&t->seg, path, SEG_KIND_IDEM, IDEM_VERSION, idem_seg_size(entries)) < 0)
		return -1;
	struct idem_hdr *h = seg_payload(&t->seg);
	h->version = IDEM_VERSION;
	h->hdr_size = sizeof(struct idem_hdr);
	h->ent_size = sizeof(struct idem_ent);
	h->nbuckets = buckets_for(entries);
	h->ent_off = ents_off();
	seg_random_key(h->key);
	if ((err = rlock_init(&h->lock)) != 0) {
		seg_unlink(&t->seg);
		seg_detach(&t->seg);
		errno = err;
		return -1;
	}
	STORE_REL(&h->magic, IDEM_MAGIC);
	map(t);
	return 0;
}

int idem_attach(struct idem *t, const char *path, bool readonly)
{
	memset(t, 0, sizeof(*t));
	if (seg_attach_checked(&t->seg, path, SEG_KIND_IDEM, IDEM_VERSION, readonly, hdr_ok) < 0)
		return -1;
	map(t);
	return 0;
}

void idem_detach(struct idem *t)
{
	seg_detach(&t->seg);
	t->h = NULL;
	t->ents = NULL;
}

int idem_unlink(struct idem *t)
{
	return seg_unlink(&t->seg);
}

/* ---- entries ------------------------------------------------------------ */

/* The 128-bit hash of (CHANNEL, KEY): the channel's length first, so that
 * no two pairs make the same bytes. */
static void pair_hash(const struct idem *t, const char *channel, size_t clen, const char *key, size_t klen,
		      uint64_t out[2])
{
	uint64_t k2[2] = { t->h->key[1] ^ UINT64_C(0x6964656d70617232), t->h->key[0] };
	uint64_t n = clen;
	uint64_t a = siphash24(t->h->key, &n, sizeof(n)), b = siphash24(k2, &n, sizeof(n));

	/* Chained: each part's hash keys the next. */
	uint64_t ka[2] = { t->h->key[0] ^ a, t->h->key[1] }, kb[2] = { k2[0] ^ b, k2[1] };
	a = siphash24(ka, channel, clen);
	b = siphash24(kb, channel, clen);
	ka[0] = t->h->key[0] ^ a;
	kb[0] = k2[0] ^ b;
	out[0] = siphash24(ka, key, klen);
	out[1] = siphash24(kb, key, klen);
}

static uint64_t ent_check(const struct idem *t, const struct idem_ent *e)
{
	uint64_t c = siphash24(t->h->key, e, offsetof(struct idem_ent, check));
	return c != 0 ? c : 1;
}

static bool ent_ok(const struct idem *t, const struct idem_ent *e)
{
	return e->check != 0 && e->check == ent_check(t, e);
}

static struct idem_ent *bucket(const struct idem *t, const uint64_t h[2])
{
	return &t->ents[(h[0] & t->mask) * IDEM_WAYS];
}

static void step(struct idem *t, int s)
{
	if (t->hook != NULL)
		t->hook(t, s);
}

/* ---- the lock ----------------------------------------------------------- */

/* After a dead holder: the entry it was writing, if any, is cleared. */
static void repair(void *arg)
{
	struct idem *t = arg;
	uint32_t w = t->h->writing;
	uint64_t n = (uint64_t)t->h->nbuckets * IDEM_WAYS;

	if (w != 0 && w <= n) {
		struct idem_ent *e = &t->ents[w - 1];
		if (!ent_ok(t, e))
			COUNT(&t->h->torn);
		memset(e, 0, sizeof(*e));
		BARRIER();
	}
	t->h->writing = 0;
	COUNT(&t->h->repairs);
}

static int lock(struct idem *t)
{
	return rlock_lock(&t->h->lock, &t->h->owner, repair, t);
}

static void unlock(struct idem *t)
{
	rlock_unlock(&t->h->lock, &t->h->owner);
}

/* ---- operations --------------------------------------------------------- */

int idem_get(struct idem *t, const char *channel, size_t channel_len, const char *key, size_t key_len,
	     int64_t now_ms, struct idem_result *out)
{
	uint64_t h[2];
	int found = 0;

	pair_hash(t, channel, channel_len, key, key_len, h);
	if (lock(t) < 0)
		return -1;
	COUNT(&t->h->lookups);
	struct idem_ent *b = bucket(t, h);
	for (int i = 0; i < IDEM_WAYS; i++) {
		const struct idem_ent *e = &b[i];
		if (e->h[0] != h[0] || e->h[1] != h[1] || now_ms >= e->expire_ms || !ent_ok(t, e))
			continue;
		out->offset = e->offset;
		memcpy(out->epoch, e->epoch, IDEM_EPOCH_MAX);
		out->epoch[IDEM_EPOCH_MAX] = '\0';
		COUNT(&t->h->hits);
		found = 1;
		break;
	}
	unlock(t);
	return found;
}

int idem_put(struct idem *t, const char *channel, size_t channel_len, const char *key, size_t key_len,
	     const struct idem_result *r, int64_t now_ms, uint64_t ttl_ms)
{
	uint64_t h[2];
	size_t elen = strnlen(r->epoch, sizeof(r->epoch));

	if (elen > IDEM_EPOCH_MAX || ttl_ms == 0 || ttl_ms > INT64_MAX / 2) {
		errno = EINVAL;
		return -1;
	}
	pair_hash(t, channel, channel_len, key, key_len, h);
	if (lock(t) < 0)
		return -1;
	COUNT(&t->h->stores);

	/* The pair's own entry, else a free one, else the first to expire. */
	struct idem_ent *b = bucket(t, h), *e = NULL, *free = NULL, *soonest = NULL;
	for (int i = 0; i < IDEM_WAYS && e == NULL; i++) {
		struct idem_ent *x = &b[i];
		bool valid = x->check != 0 && ent_ok(t, x);
		if (valid && x->h[0] == h[0] && x->h[1] == h[1]) {
			e = x;
		} else if (!valid || now_ms >= x->expire_ms) {
			if (free == NULL)
				free = x;
		} else if (soonest == NULL || x->expire_ms < soonest->expire_ms) {
			soonest = x;
		}
	}
	if (e == NULL)
		e = free;
	if (e == NULL) {
		e = soonest;
		COUNT(&t->h->evictions);
	}

	uint32_t idx = (uint32_t)(e - t->ents);
	STORE(&t->h->writing, idx + 1);
	BARRIER();
	e->check = 0;
	BARRIER();
	step(t, 1);
	e->h[0] = h[0];
	e->h[1] = h[1];
	e->expire_ms = now_ms + (int64_t)ttl_ms;
	step(t, 2);
	e->offset = r->offset;
	memset(e->epoch, 0, sizeof(e->epoch));
	memcpy(e->epoch, r->epoch, elen);
	e->pad = 0;
	step(t, 3);
	BARRIER();
	e->check = ent_check(t, e);
	BARRIER();
	STORE(&t->h->writing, 0);
	unlock(t);
	return 0;
}

void idem_stats(const struct idem *t, int64_t now_ms, struct idem_stats *st)
{
	uint64_t n = (uint64_t)t->h->nbuckets * IDEM_WAYS;

	memset(st, 0, sizeof(*st));
	st->capacity = (uint32_t)n;
	for (uint64_t i = 0; i < n; i++)
		if (LOAD(&t->ents[i].check) != 0 && LOAD(&t->ents[i].expire_ms) > now_ms)
			st->live++;
	st->lookups = LOAD(&t->h->lookups);
	st->hits = LOAD(&t->h->hits);
	st->stores = LOAD(&t->h->stores);
	st->evictions = LOAD(&t->h->evictions);
	st->repairs = LOAD(&t->h->repairs);
	st->torn = LOAD(&t->h->torn);
}

int idem_verify(struct idem *t)
{
	uint64_t n = (uint64_t)t->h->nbuckets * IDEM_WAYS;
	int used = 0, bad = 0;

	if (lock(t) < 0)
		return -1;
	for (uint64_t i = 0; i < n; i++) {
		const struct idem_ent *e = &t->ents[i];
		if (e->check == 0)
			continue;
		if (!ent_ok(t, e) || bucket(t, e->h) != &t->ents[i - i % IDEM_WAYS])
			bad++;
		else
			used++;
	}
	if (t->h->writing != 0)
		bad++;
	unlock(t);
	if (bad != 0) {
		errno = EPROTO;
		return -1;
	}
	return used;
}
