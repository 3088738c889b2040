/*
 * hub.c - channel name -> local subscribers, and encode-once fan-out.
 *
 * Model: a chained hash table of channels that have at least one local
 * subscriber; each channel keeps an intrusive list of its subscriptions and
 * counts per protocol format. Fan-out encodes the push once per format that
 * has subscribers, into one reference-counted buffer, and queues that same
 * buffer on every subscriber. A send may end the receiving client (queue over
 * its limit); it then unlinks only its own subscription, so the iteration
 * keeps the next pointer taken before the send.
 */
#include "config.h"
#include "hub.h"
#include "client.h"
#include "conn.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static struct {
	struct hub_chan **tab;
	size_t cap;       /* power of two */
	size_t nchan;
	size_t nsubs;
	uint64_t version; /* bumped by every link and unlink */
	struct jw enc;    /* scratch encoder */
} H;

static uint32_t hash_name(const char *s, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

struct hub_chan *hub_find(const char *name, size_t len)
{
	if (H.cap == 0)
		return NULL;
	uint32_t h = hash_name(name, len);
	for (struct hub_chan *ch = H.tab[h & (H.cap - 1)]; ch; ch = ch->hnext)
		if (ch->hash == h && ch->len == len && memcmp(ch->name, name, len) == 0)
			return ch;
	return NULL;
}

static void grow(void)
{
	size_t cap = H.cap ? H.cap * 2 : 64;
	struct hub_chan **tab = xcalloc(cap, sizeof(*tab));
	for (size_t i = 0; i < H.cap; i++) {
		struct hub_chan *ch = H.tab[i], *next;
		for (; ch; ch = next) {
			next = ch->hnext;
			ch->hnext = tab[ch->hash & (cap - 1)];
			tab[ch->hash & (cap - 1)] = ch;
		}
	}
	free(H.tab);
	H.tab = tab;
	H.cap = cap;
}

void hub_link(struct csub *s, const char *name, size_t len, enum proto_fmt f)
{
	struct hub_chan *ch = hub_find(name, len);
	if (ch == NULL) {
		if (H.nchan + 1 > H.cap)
			grow();
		ch = xcalloc(1, sizeof(*ch) + len + 1);
		memcpy(ch->name, name, len);
		ch->len = (uint16_t)len;
		ch->hash = hash_name(name, len);
		ch->hnext = H.tab[ch->hash & (H.cap - 1)];
		H.tab[ch->hash & (H.cap - 1)] = ch;
		H.nchan++;
	}
	s->ch = ch;
	s->prev = NULL;
	s->next = ch->subs;
	if (ch->subs)
		ch->subs->prev = s;
	ch->subs = s;
	ch->nsubs++;
	ch->nfmt[f]++;
	H.version++;
	if (s->flags & CSUB_JOIN_LEAVE)
		ch->njoin++;
	H.nsubs++;
}

void hub_unlink(struct csub *s, enum proto_fmt f)
{
	struct hub_chan *ch = s->ch;
	if (ch == NULL)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		ch->subs = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	s->ch = NULL;
	ch->nsubs--;
	ch->nfmt[f]--;
	H.version++;
	if (s->flags & CSUB_JOIN_LEAVE)
		ch->njoin--;
	H.nsubs--;
	if (ch->nsubs > 0)
		return;
	struct hub_chan **pp = &H.tab[ch->hash & (H.cap - 1)];
	while (*pp != ch)
		pp = &(*pp)->hnext;
	*pp = ch->hnext;
	H.nchan--;
	free(ch);
}

/* Encodes with ENC into a shared buffer; NULL when the payload cannot be
 * written in that format. */
static struct rbuf *encode(int (*enc)(struct jw *, enum proto_fmt, const void *, const void *),
			   enum proto_fmt f, const void *a, const void *b)
{
	H.enc.len = 0;
	if (enc(&H.enc, f, a, b) != RT_OK)
		return NULL;
	struct rbuf *r = rbuf_new(H.enc.len);
	memcpy(r->data, H.enc.buf, H.enc.len);
	return r;
}

static int enc_pub(struct jw *out, enum proto_fmt f, const void *ch, const void *p)
{
	return proto_push_pub(out, f, *(const struct pstr *)ch, p);
}

static int enc_join(struct jw *out, enum proto_fmt f, const void *ch, const void *ci)
{
	return proto_push_join(out, f, *(const struct pstr *)ch, ci);
}

static int enc_leave(struct jw *out, enum proto_fmt f, const void *ch, const void *ci)
{
	return proto_push_leave(out, f, *(const struct pstr *)ch, ci);
}

/* Queues the push built by ENC on the subscribers of CH (only those with
 * CSUB_JOIN_LEAVE when JOIN_ONLY). POS, for a publication, is its offset
 * and epoch, checked against each positioned subscriber's. */
static void fan_out(struct hub_chan *ch, bool join_only,
		    int (*enc)(struct jw *, enum proto_fmt, const void *, const void *), const void *arg,
		    const struct publication *pos, struct pstr epoch)
{
	struct pstr name = { ch->name, ch->len };
	struct rbuf *buf[2] = { NULL, NULL };
	bool tried[2] = { false, false };
	struct csub *s, *next;

	for (s = ch->subs; s; s = next) {
		next = s->next;
		if (join_only && !(s->flags & CSUB_JOIN_LEAVE))
			continue;
		if (pos && (s->flags & CSUB_POSITIONED) && client_position(s, pos->offset, epoch) <= 0)
			continue;
		enum proto_fmt f = client_fmt(s->c);
		if (!tried[f]) {
			tried[f] = true;
			buf[f] = encode(enc, f, &name, arg);
		}
		if (buf[f] == NULL) {
			/* Binary from a protobuf publisher to a JSON client. */
			client_disconnect(s->c, 3506, "inappropriate protocol");
			continue;
		}
		client_push(s->c, buf[f], 0, buf[f]->len);
	}
	for (int i = 0; i < 2; i++)
		if (buf[i])
			rbuf_unref(buf[i]);
}

void hub_publication(struct pstr channel, const struct publication *p, struct pstr epoch)
{
	struct hub_chan *ch = hub_find(channel.p, channel.n);
	if (ch != NULL)
		fan_out(ch, false, enc_pub, p, p, epoch);
}

void hub_join_leave(struct pstr channel, const struct client_info *ci, bool join)
{
	struct hub_chan *ch = hub_find(channel.p, channel.n);
	if (ch != NULL && ch->njoin > 0)
		fan_out(ch, true, join ? enc_join : enc_leave, ci, NULL, (struct pstr){ NULL, 0 });
}

size_t hub_nchannels(void)
{
	return H.nchan;
}

uint64_t hub_version(void)
{
	return H.version;
}

size_t hub_nsubs(void)
{
	return H.nsubs;
}

void hub_each(void (*fn)(void *arg, const struct hub_chan *ch), void *arg)
{
	for (size_t i = 0; i < H.cap; i++)
		for (struct hub_chan *ch = H.tab[i]; ch; ch = ch->hnext)
			fn(arg, ch);
}
