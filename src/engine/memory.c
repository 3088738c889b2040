/*
 * memory.c - the shared-memory engine, rotor's default (engine.type
 * "memory"): everything on this machine, in shm/. A publication's offset is
 * assigned under the bus lock as its record is appended (node.c's
 * node_bus_publish), so every worker sees a channel's publications in
 * offset order; an idempotency key's result (the idempotency table) and a
 * version's fate are decided under the same lock. History is read from the
 * channel table's streams and presence from the presence table, both of
 * which outlive any worker. Every operation answers before it returns.
 */
#include "config.h"
#include "engine.h"
#include "conf.h"
#include "worker.h"
#include "log.h"
#include "util.h"
#include "chan.h"
#include "pres.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- history ------------------------------------------------------------- */

/* One publication and everything it points to, in one block. */
struct hist_copy {
	struct publication p;
	struct client_info ci;
	struct tag tags[];
};

static int copy_pub(void *arg, const struct hist_pub *hp)
{
	struct node_history *h = arg;
	const struct hist_info *hi = hp->info;
	size_t ntags = hp->ntags, bytes = hp->data_len;

	if (hi)
		bytes += hi->user_len + hi->client_len + hi->conn_info_len + hi->chan_info_len;
	for (size_t i = 0; i < ntags; i++)
		bytes += hp->tags[i].key_len + hp->tags[i].val_len;
	struct hist_copy *c = xmalloc(sizeof(*c) + ntags * sizeof(struct tag) + bytes);
	char *at = (char *)&c->tags[ntags];
/* (an empty field's pointer may be NULL, which memcpy must not see) */
#define COPY(dst, src, len) do { if (len) memcpy(at, (src), (len)); (dst) = (struct pstr){ at, (len) }; at += (len); } while (0)
	memset(&c->p, 0, sizeof(c->p));
	c->p.offset = hp->offset;
	COPY(c->p.data, hp->data, hp->data_len);
	if (hi) {
		COPY(c->ci.user, hi->user, hi->user_len);
		COPY(c->ci.client, hi->client, hi->client_len);
		COPY(c->ci.conn_info, hi->conn_info, hi->conn_info_len);
		COPY(c->ci.chan_info, hi->chan_info, hi->chan_info_len);
		c->p.info = &c->ci;
	}
	for (size_t i = 0; i < ntags; i++) {
		COPY(c->tags[i].key, hp->tags[i].key, hp->tags[i].key_len);
		COPY(c->tags[i].value, hp->tags[i].val, hp->tags[i].val_len);
	}
#undef COPY
	c->p.tags = c->tags;
	c->p.ntags = ntags;
	h->blocks = xrealloc(h->blocks, (h->n + 1) * sizeof(*h->blocks));
	h->blocks[h->n] = c;
	h->n++;
	return 0;
}

static void history_free(struct node_history *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->blocks[i]);
	free(h->blocks);
	free(h->v);
}

static void mem_history(struct worker *w, struct pstr channel, const struct hist_query *q,
		  node_history_fn *done, void *arg)
{
	struct hist_result res = { 0 };
	struct node_history h = { 0 };

	if (hist_read(w->ctab, channel.p, channel.n, q, util_wall_ms(), copy_pub, &h, &res) < 0) {
		int rc = errno == EINVAL && q->reverse && q->has_since && q->since_offset == 0 ? RT_INVAL : RT_ERR;
		if (rc == RT_ERR)
			log_syscall("hist_read(%.*s)", (int)channel.n, channel.p);
		history_free(&h);
		memset(&h, 0, sizeof(h));
		done(arg, rc, &h);
		return;
	}
	h.v = xcalloc(h.n + 1, sizeof(*h.v));
	for (size_t i = 0; i < h.n; i++)
		h.v[i] = ((struct hist_copy *)h.blocks[i])->p;
	h.top = res.top.offset;
	h.first = res.first;
	memcpy(h.epoch, res.top.epoch, HIST_EPOCH_LEN);
	h.epoch[HIST_EPOCH_LEN] = '\0';
	h.epoch_mismatch = res.epoch_mismatch;
	done(arg, RT_OK, &h);
	history_free(&h);
}

static void mem_history_top(struct worker *w, struct pstr channel, uint64_t meta_ttl_ms, node_top_fn *done,
		      void *arg)
{
	struct hist_pos pos;
	if (hist_top(w->ctab, channel.p, channel.n, meta_ttl_ms, util_wall_ms(), &pos) < 0) {
		log_syscall("hist_top(%.*s)", (int)channel.n, channel.p);
		done(arg, RT_ERR, 0, (struct pstr){ "", 0 });
		return;
	}
	done(arg, RT_OK, pos.offset, (struct pstr){ pos.epoch, strnlen(pos.epoch, HIST_EPOCH_LEN) });
}

static void mem_history_remove(struct worker *w, struct pstr channel, node_done_fn *done, void *arg)
{
	if (hist_remove(w->ctab, channel.p, channel.n, util_wall_ms()) < 0) {
		log_syscall("hist_remove(%.*s)", (int)channel.n, channel.p);
		done(arg, RT_ERR);
		return;
	}
	done(arg, RT_OK);
}

/* ---- presence ------------------------------------------------------------ */

static int copy_entry(void *arg, const struct pres_item *it)
{
	struct node_presence *p = arg;
	size_t nc = strlen(it->client), nu = strlen(it->user);
	char *b = xmalloc(nc + nu + it->conn_info_len + it->chan_info_len + 1);
	struct client_info *ci;

	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 16;
		p->v = xrealloc(p->v, p->cap * sizeof(*p->v));
	}
	ci = &p->v[p->n++];
	memcpy(b, it->client, nc);
	ci->client = (struct pstr){ b, nc };
	memcpy(b + nc, it->user, nu);
	ci->user = (struct pstr){ b + nc, nu };
	if (it->conn_info_len) /* else conn_info may be NULL, which memcpy must not see */
		memcpy(b + nc + nu, it->conn_info, it->conn_info_len);
	ci->conn_info = (struct pstr){ b + nc + nu, it->conn_info_len };
	if (it->chan_info_len)
		memcpy(b + nc + nu + it->conn_info_len, it->chan_info, it->chan_info_len);
	ci->chan_info = (struct pstr){ b + nc + nu + it->conn_info_len, it->chan_info_len };
	return 0;
}

/* pres_* take NUL-terminated names; channel names may come from the wire. */
static const char *cname(struct pstr ch, char *buf, size_t cap)
{
	if ((ch.n && memchr(ch.p, '\0', ch.n)) || !pstr_copy(buf, cap, ch))
		return NULL;
	return buf;
}

static void presence_free(struct node_presence *p)
{
	for (size_t i = 0; i < p->n; i++)
		free((void *)p->v[i].client.p);
	free(p->v);
}

static void mem_presence(struct worker *w, struct pstr channel, node_presence_fn *done, void *arg)
{
	char name[PRES_CHANNEL_MAX + 1];
	const char *ch = cname(channel, name, sizeof(name));
	struct node_presence p = { 0 };
	int rc = RT_OK;

	/* (a name presence cannot hold has nobody in it) */
	if (ch != NULL && pres_get(w->pres, ch, util_mono_ms(), copy_entry, &p) < 0) {
		log_syscall("pres_get(%s)", ch);
		rc = RT_ERR;
	}
	done(arg, rc, &p);
	presence_free(&p);
}

static void mem_presence_stats(struct worker *w, struct pstr channel, node_stats_fn *done, void *arg)
{
	char name[PRES_CHANNEL_MAX + 1];
	const char *ch = cname(channel, name, sizeof(name));
	uint32_t nc = 0, nu = 0;
	int rc = RT_OK;

	if (ch != NULL && pres_stats(w->pres, ch, util_mono_ms(), &nc, &nu) < 0) {
		log_syscall("pres_stats(%s)", ch);
		rc = RT_ERR;
	}
	done(arg, rc, nc, nu);
}


/* Presence entries are owned by this worker's bus slot, so that the master
 * can clear them when the worker dies; a lease that runs out (a stopped
 * or starved worker) clears them too. */
static void mem_presence_add(struct worker *w, struct pstr channel, const struct client_info *ci)
{
	char name[PRES_CHANNEL_MAX + 1], client[PRES_CLIENT_MAX + 1], user[PRES_USER_MAX + 1];
	const char *ch = cname(channel, name, sizeof(name));
	if (ch == NULL)
		return; /* a name the table cannot hold: nobody is in it */
	if (!pstr_copy(client, sizeof(client), ci->client) || !pstr_copy(user, sizeof(user), ci->user)) {
		log_warn("presence: cannot add client %.*s to %s: %s", (int)ci->client.n, ci->client.p, ch,
			 strerror(EMSGSIZE));
		return;
	}
	struct pres_item it = {
		.client = client, .user = user, .conn_info = ci->conn_info.p, .conn_info_len = ci->conn_info.n,
		.chan_info = ci->chan_info.p, .chan_info_len = ci->chan_info.n, .owner = w->bus_slot,
	};
	if (pres_add(w->pres, ch, &it) < 0)
		log_warn("presence: cannot add client %s to %s: %s", client, ch,
			 errno == ENOSPC ? "the table is full (shm.presence_entries, shm.presence_size)"
					 : strerror(errno));
}

static void mem_presence_remove(struct worker *w, struct pstr channel, const struct client_info *ci)
{
	char name[PRES_CHANNEL_MAX + 1], client[PRES_CLIENT_MAX + 1];
	const char *ch = cname(channel, name, sizeof(name));
	if (ch == NULL || !pstr_copy(client, sizeof(client), ci->client))
		return;
	if (pres_remove(w->pres, ch, client) < 0 && errno != ENOENT)
		log_syscall("pres_remove(%s, %s)", ch, client);
}

static bool mem_presence_refresh(struct worker *w, bool first)
{
	long long iv = w->conf->presence_interval_ms > 0 ? w->conf->presence_interval_ms : 27000;
	int rc = pres_touch_owner(w->pres, w->bus_slot, w->now_ms, w->now_ms + pres_lease_ms(iv));
	if (rc == 1 && !first) {
		/* The lease ran out (this worker was stopped or starved): its
		 * entries are gone; the session puts them back. */
		log_warn("presence: this worker's lease had run out; adding its entries again");
		return true;
	}
	return false;
}

static void mem_publish(struct worker *w, const struct node_pub *p, node_pub_fn *done, void *arg)
{
	struct node_pub_result res;
	int rc = node_bus_publish(w, p, &res);
	done(arg, rc, &res);
}

/* Every worker reads the whole bus: the node receives every channel. */
static void mem_listen(struct worker *w, struct pstr channel, node_done_fn *done, void *arg)
{
	(void)w, (void)channel;
	done(arg, RT_OK);
}

static int mem_start(struct worker *w)
{
	(void)w;
	return RT_OK;
}

static void mem_stop(struct worker *w)
{
	(void)w;
}

const struct engine engine_memory = {
	.name = "memory",
	.start = mem_start,
	.stop = mem_stop,
	.publish = mem_publish,
	.history = mem_history,
	.history_top = mem_history_top,
	.history_remove = mem_history_remove,
	.presence = mem_presence,
	.presence_stats = mem_presence_stats,
	.presence_add = mem_presence_add,
	.presence_remove = mem_presence_remove,
	.presence_refresh = mem_presence_refresh,
	.join_leave = node_bus_join_leave,
	.listen = mem_listen,
};

/* A node whose broker and presence are different members runs the
 * broker's table with the presence member's five presence operations;
 * start, stop and health are the Redis engine's, which opens the links
 * of whichever side is in Redis (redis.c). One per process: every worker
 * of a generation has one config. */
static struct engine mixed;

const struct engine *engine_of(const struct conf *k)
{
	struct engine_plan p;

	if (engine_plan(k, &p, NULL) != RT_OK) /* rotord -t refused it first */
		return &engine_memory;
	if (p.broker_redis == p.presence_redis)
		return p.broker_redis ? &engine_redis : &engine_memory;
	const struct engine *pres = p.presence_redis ? &engine_redis : &engine_memory;
	mixed = p.broker_redis ? engine_redis : engine_memory;
	mixed.name = p.broker_redis ? "redis broker, memory presence" : "memory broker, redis presence";
	mixed.presence = pres->presence;
	mixed.presence_stats = pres->presence_stats;
	mixed.presence_add = pres->presence_add;
	mixed.presence_remove = pres->presence_remove;
	mixed.presence_refresh = pres->presence_refresh;
	mixed.start = engine_redis.start;
	mixed.stop = engine_redis.stop;
	mixed.health = engine_redis.health;
	return &mixed;
}
