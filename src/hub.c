/*
 * hub.c - channel name -> local subscribers, and encode-once fan-out.
 *
 * Model: a chained hash table of channels that have at least one local
 * subscriber; each channel keeps an intrusive list of its subscriptions and
 * counts per protocol format. Fan-out encodes the push once per format that
 * has subscribers, into one reference-counted buffer, and queues that same
 * buffer on every subscriber. A send may end the receiving client (queue over
 * its limit); it then unlinks only its own subscription, so the iteration
 * keeps the next pointer taken before the send (and the channel's record
 * may be gone after the loop: nothing touches it there).
 *
 * Delta (client-protocol.md 6.6): a channel with subscribers that
 * negotiated fossil deltas keeps the payload of the last publication it
 * delivered, with its offset and epoch. The next offset, when its
 * publisher asked for delta, gets two more frames per format: whole (in
 * JSON as a string) and as a delta of that payload, computed once. Each such subscriber gets the delta only when it is
 * positioned and holds the previous offset (CSUB_DELTA_BASE: it was sent
 * one, live or recovered, since it subscribed); else the whole payload,
 * which becomes its base. A subscriber whose state is in doubt (a lapped
 * bus, a gap, another epoch) has its subscription ended by
 * client_position or client_lost_state, and starts again whole.
 */
#include "config.h"
#include "hub.h"
#include "client.h"
#include "conn.h"
#include "fossil.h"
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
	struct jw patch;  /* the delta of the publication being fanned out */
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
		ch = xcalloc(1, offsetof(struct hub_chan, name) + len + 1);
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
	ch->nfmt[f]++;
	H.version++;
	if (s->flags & CSUB_JOIN_LEAVE)
		ch->njoin++;
	if ((s->flags & CSUB_DELTA) && ch->delta == NULL)
		ch->delta = xcalloc(1, sizeof(*ch->delta));
	if (s->flags & CSUB_DELTA)
		ch->delta->n++;
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
	ch->nfmt[f]--;
	H.version++;
	if (s->flags & CSUB_JOIN_LEAVE)
		ch->njoin--;
	if ((s->flags & CSUB_DELTA) && --ch->delta->n == 0) {
		pstr_free(&ch->delta->prev);
		free(ch->delta);
		ch->delta = NULL;
	}
	H.nsubs--;
	if (hub_chan_nsubs(ch) > 0)
		return;
	struct hub_chan **pp = &H.tab[ch->hash & (H.cap - 1)];
	while (*pp != ch)
		pp = &(*pp)->hnext;
	*pp = ch->hnext;
	H.nchan--;
	free(ch);               /* its delta went with its last CSUB_DELTA subscriber */
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

/* Appends to OUT the fossil delta that turns BASE into DATA and returns
 * true when it is shorter than DATA; else leaves OUT as it was: the
 * payload goes whole (client-protocol.md 6.6). */
static bool delta_of(struct pstr base, struct pstr data, struct jw *out)
{
	size_t start = out->len;
	if (fossil_delta(base.p, base.n, data.p, data.n, out) < data.n)
		return true;
	out->len = start;
	return false;
}

/* The frames of one publication for the subscribers with CSUB_DELTA,
 * each encoded on first use. */
struct dframes {
	struct pstr name;
	const struct publication *p;
	struct pstr base;           /* owned: the previous payload, when CAN_DELTA */
	bool can_delta;             /* asked for, and BASE is the previous offset's */
	bool patched, shorter;      /* H.patch computed; shorter than the payload */
	bool tried[2][2];           /* [whole, delta][format] */
	struct rbuf *frame[2][2];
};

/* D's frame K (0 whole, 1 delta) in format F; NULL when it cannot be
 * written (a whole payload that is not JSON, for JSON). */
static struct rbuf *frame_of(struct dframes *d, int k, enum proto_fmt f)
{
	if (!d->tried[k][f]) {
		struct publication q = *d->p;
		q.data_string = true;
		if (k == 1) {
			q.data = (struct pstr){ H.patch.buf, H.patch.len };
			q.delta = true;
		}
		d->tried[k][f] = true;
		d->frame[k][f] = encode(enc_pub, f, &d->name, &q);
	}
	return d->frame[k][f];
}

/* The frame for S (format F, past client_position) and what it now holds
 * as its base; NULL when the payload cannot go to it (3506). */
static struct rbuf *delta_frame(struct dframes *d, struct csub *s, enum proto_fmt f)
{
	const struct publication *p = d->p;
	bool positioned = (s->flags & CSUB_POSITIONED) && p->offset > 0;
	bool use = positioned && (s->flags & CSUB_DELTA_BASE) && d->can_delta;

	if (positioned)
		s->flags |= CSUB_DELTA_BASE;
	else
		s->flags &= (uint8_t)~CSUB_DELTA_BASE;
	if (use && !d->patched) {
		d->patched = true;
		H.patch.len = 0;
		d->shorter = delta_of(d->base, p->data, &H.patch);
	}
	struct rbuf *b = use && d->shorter ? frame_of(d, 1, f) : NULL;
	return b ? b : frame_of(d, 0, f);
}

/* Queues the push built by ENC on the subscribers of CH (only those with
 * CSUB_JOIN_LEAVE when JOIN_ONLY). POS, for a publication, is its offset
 * and epoch, checked against each positioned subscriber's; D, when CH has
 * subscribers with CSUB_DELTA, their frames. */
static void fan_out(struct hub_chan *ch, bool join_only,
		    int (*enc)(struct jw *, enum proto_fmt, const void *, const void *), const void *arg,
		    const struct publication *pos, struct pstr epoch, struct dframes *d)
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
		struct rbuf *b;
		if (d && (s->flags & CSUB_DELTA)) {
			b = delta_frame(d, s, f);
		} else {
			if (!tried[f]) {
				tried[f] = true;
				buf[f] = encode(enc, f, &name, arg);
			}
			b = buf[f];
		}
		if (b == NULL) {
			/* Binary from a protobuf publisher to a JSON client. */
			client_disconnect(s->c, 3506, "inappropriate protocol");
			continue;
		}
		client_push(s->c, b, 0, b->len);
	}
	for (int i = 0; i < 2; i++)
		if (buf[i])
			rbuf_unref(buf[i]);
}

static bool epoch_is(const char *e, struct pstr epoch)
{
	return strlen(e) == epoch.n && memcmp(e, epoch.p, epoch.n) == 0;
}

/* Whether P (offset, EPOCH) is later than delta base D. */
static bool after_base(const struct hub_delta *d, const struct publication *p, struct pstr epoch)
{
	return p->offset > 0 && epoch.n <= NODE_EPOCH_MAX &&
	       (d->prev_offset == 0 || !epoch_is(d->prev_epoch, epoch) || p->offset > d->prev_offset);
}

/* Makes P's payload delta base D; the old one goes to *OLD (owned) when
 * OLD is not NULL, else is freed. */
static void set_base(struct hub_delta *d, const struct publication *p, struct pstr epoch, struct pstr *old)
{
	if (old)
		*old = d->prev;
	else
		pstr_free(&d->prev);
	d->prev = pstr_dup(p->data);
	d->prev_offset = p->offset;
	memcpy(d->prev_epoch, epoch.p, epoch.n);
	d->prev_epoch[epoch.n] = '\0';
}

void hub_publication(struct pstr channel, const struct publication *p, struct pstr epoch, bool delta)
{
	struct hub_chan *ch = hub_find(channel.p, channel.n);
	if (ch == NULL)
		return;
	struct hub_delta *hd = ch->delta;
	if (hd == NULL) {
		fan_out(ch, false, enc_pub, p, p, epoch, NULL);
		return;
	}
	struct dframes d = { .name = { ch->name, ch->len }, .p = p };
	if (after_base(hd, p, epoch)) {
		d.can_delta = delta && hd->prev_offset + 1 == p->offset && epoch_is(hd->prev_epoch, epoch);
		set_base(hd, p, epoch, &d.base);  /* before the loop: CH may go in it */
	}
	fan_out(ch, false, enc_pub, p, p, epoch, &d);
	pstr_free(&d.base);
	for (int k = 0; k < 2; k++)
		for (int f = 0; f < 2; f++)
			if (d.frame[k][f])
				rbuf_unref(d.frame[k][f]);
}

void hub_delta_base(struct hub_chan *ch, const struct publication *p, struct pstr epoch)
{
	if (ch->delta && after_base(ch->delta, p, epoch))
		set_base(ch->delta, p, epoch, NULL);
}

void hub_delta_chain(const struct publication *v, size_t n, bool json, struct publication *out,
		     struct jw *buf)
{
	size_t *at = xcalloc(n ? n : 1, sizeof(*at));

	buf->len = 0;
	for (size_t i = 0; i < n; i++) {
		out[i] = v[i];
		out[i].data_string = json;
		if (i == 0)
			continue;
		size_t start = buf->len;
		if (delta_of(v[i - 1].data, v[i].data, buf)) {
			out[i].delta = true;
			out[i].data.n = buf->len - start;
			at[i] = start;
		}
	}
	for (size_t i = 0; i < n; i++)  /* BUF has stopped moving */
		if (out[i].delta)
			out[i].data.p = buf->buf + at[i];
	free(at);
}

void hub_join_leave(struct pstr channel, const struct client_info *ci, bool join)
{
	struct hub_chan *ch = hub_find(channel.p, channel.n);
	if (ch != NULL && ch->njoin > 0)
		fan_out(ch, true, join ? enc_join : enc_leave, ci, NULL, (struct pstr){ NULL, 0 }, NULL);
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
