/*
 * redis.c - the Redis engine's worker side (engine.type "redis"): several
 * rotord nodes, and Centrifugo nodes, share publications, history and
 * presence through Redis with Centrifugo's layout (redis_wire.h,
 * ref/redis-engine.md).
 *
 * Each worker holds one command link per shard (redis_link.h), pipelined;
 * a channel's keys live on the shard rw_shard_of names. On a Redis Cluster
 * shard the names carry the {CH} hash tag, so that every key of a script
 * is in one slot, and the link routes each request by its first key. A publication is
 * never delivered here at publish time: like every node, this one gets it
 * back from Redis PUB/SUB (the node's broker feeds it into the bus), so
 * subscribers see Redis's order, which is offset order. Offsets and epochs
 * come only from the scripts.
 *
 * The answers come later, from the loop; a request keeps what it needs to
 * answer in its own heap block (struct rq), and a link that is down answers
 * every request with an error (the caller's 100), never "ok".
 *
 * Two sets of shards (engine.c's plan): the broker's (publish, history,
 * join/leave, control) and presence's, each from its own connection block
 * (engine.redis, broker.redis, presence_manager.redis), the same set when
 * both come from one block. Either may be absent: engine_of then runs
 * the shared-memory engine's operations for that side, and this file only
 * opens, frees and watches the other's links.
 */
#include "config.h"
#include "engine.h"
#include "redis_link.h"
#include "redis_wire.h"
#include "conf.h"
#include "json.h"
#include "log.h"
#include "pb.h"
#include "util.h"
#include "worker.h"
#include "chan.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- per worker ------------------------------------------------------------ */

/* A listen request waiting for the broker's acknowledgement. */
struct lwait {
	struct lwait *next;
	uint64_t tag;
	int64_t since_ms;
	node_done_fn *done;
	void *arg;
};

/* A survey waiting for the other nodes' answers: channels (from every
 * node) or centrifuge_emulation (from one). */
struct swait {
	struct swait *next;
	uint64_t id;
	int64_t since_ms;
	unsigned want;                  /* answers still due */
	bool emu;
	int rc;                         /* channels: RT_OK until an answer fails */
	node_channel_fn fn;             /* channels */
	node_done_fn *done;             /* channels */
	node_emu_fn *emu_done;          /* emulation */
	void *arg;
};

/* One set of shards, with a command link to each. */
struct rside {
	struct redis_conf cf;
	struct rlink *cmd[REDIS_SHARDS_MAX];
};

struct reng {
	struct worker *w;
	struct rside sides[2];
	struct rside *bro, *pre;        /* the broker's, presence's (NULL: in shm; may be one) */
	struct jw key[4], arg;          /* scratch for names and arguments */
	struct lwait *waits;
	struct swait *surveys;
	uint64_t next_tag;
	unsigned rr;                    /* control commands go to the shards in turn */
	ev_timer tick;
};

static struct rscript s_publish = { rw_script_publish_stream, "" };
static struct rscript s_publish_idem = { rw_script_publish_idempotent, "" };
static struct rscript s_history = { rw_script_history_stream, "" };
static struct rscript s_pres_add = { rw_script_presence_add, "" };
static struct rscript s_pres_rem = { rw_script_presence_rem, "" };
static struct rscript s_pres_get = { rw_script_presence_get, "" };
static struct rscript s_pres_stats = { rw_script_presence_stats, "" };

static struct reng *R(struct worker *w)
{
	return w->engine_state;
}

static struct rlink *link_of(const struct rside *s, struct pstr ch)
{
	return s->cmd[rw_shard_of(ch, s->cf.nshards)];
}

/* Fills key scratch I with name KIND of CH on side S: hash-tagged {CH}
 * when CH's shard is a Redis Cluster (§2.2). */
static struct pstr name(struct reng *r, const struct rside *s, int i, enum rw_name kind, struct pstr ch,
			struct pstr extra)
{
	r->key[i].len = 0;
	rw_name(&r->key[i], s->cf.prefix, rlink_cluster(link_of(s, ch)), kind, ch, extra);
	return (struct pstr){ r->key[i].buf, r->key[i].len };
}

/* Arguments of one request, with their lengths. */
struct args {
	const char *v[16];
	size_t n[16];
	int c;
	char nums[8][24];
	int nnums;
};

static void put(struct args *a, struct pstr s)
{
	a->v[a->c] = s.p ? s.p : "";
	a->n[a->c] = s.n;
	a->c++;
}

static void put_s(struct args *a, const char *s)
{
	put(a, (struct pstr){ s, strlen(s) });
}

static void put_u(struct args *a, uint64_t v)
{
	char *b = a->nums[a->nnums++];
	snprintf(b, 24, "%" PRIu64, v);
	put_s(a, b);
}

static void put_i(struct args *a, int64_t v)
{
	char *b = a->nums[a->nnums++];
	snprintf(b, 24, "%" PRId64, v);
	put_s(a, b);
}

/* A request waiting for its reply: whom to answer. */
struct rq {
	struct worker *w;
	void *done, *arg;
	struct pstr channel;           /* owned, for logs */
	char since_epoch[NODE_EPOCH_MAX + 1];
	bool has_since_epoch;
	bool stats_by_hand;            /* presence_stats without the user mapping */
	struct node_pub_result res;    /* publish: the result, while WAIT runs */
	int replicas;                  /* ... for how many replicas */
	const char *what;              /* fire-and-forget requests: for the log */
};

static struct rq *rq_new(struct worker *w, void *done, void *arg, struct pstr ch)
{
	struct rq *q = xcalloc(1, sizeof(*q));
	q->w = w;
	q->done = done;
	q->arg = arg;
	q->channel = pstr_dup(ch);
	return q;
}

static void rq_free(struct rq *q)
{
	pstr_free(&q->channel);
	free(q);
}

/* Logs a failed request; true when R is no answer to use. */
static bool failed(const struct rq *q, const char *what, redisReply *r, const char *err)
{
	if (err == NULL && r != NULL && r->type != REDIS_REPLY_ERROR)
		return false;
	log_warn("redis: %s of %.*s failed: %s", what, (int)q->channel.n, q->channel.p,
		 err ? err : r->str);
	return true;
}

static bool reply_u64(const redisReply *r, uint64_t *v)
{
	if (r->type == REDIS_REPLY_INTEGER) {
		*v = (uint64_t)r->integer;
		return r->integer >= 0;
	}
	if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
		char *end;
		errno = 0;
		*v = strtoull(r->str, &end, 10);
		return errno == 0 && end != r->str && *end == '\0';
	}
	if (r->type == REDIS_REPLY_NIL) {
		*v = 0;
		return true;
	}
	return false;
}

static bool reply_str(const redisReply *r, struct pstr *s)
{
	if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)
		return false;
	*s = (struct pstr){ r->str, r->len };
	return true;
}

/* ---- publish --------------------------------------------------------------- */

/* The answer to the WAIT after a publish with history on a Sentinel
 * shard (sentinel_wait_replicas): ok only when every replica the
 * sentinels consider healthy has it, so that no failover, manual ones
 * included (the old master takes writes until it is demoted, and they are
 * lost), takes away a publication that was answered ok. */
static void on_waited(void *arg, redisReply *r, const char *err)
{
	struct rq *q = arg;
	int rc = RT_ERR;

	if (!failed(q, "waiting for the replicas of a publish", r, err)) {
		if (r->type == REDIS_REPLY_INTEGER && r->integer >= q->replicas)
			rc = RT_OK;
		else
			log_warn("redis: a publish to %.*s reached %lld of %d replicas in time; answered as failed",
				 (int)q->channel.n, q->channel.p, r->type == REDIS_REPLY_INTEGER ? r->integer : -1LL,
				 q->replicas);
	}
	((node_pub_fn *)q->done)(q->arg, rc, &q->res);
	rq_free(q);
}

static void on_publish(void *arg, redisReply *r, const char *err)
{
	struct rq *q = arg;
	struct node_pub_result res = { 0 };
	int rc = RT_ERR;
	struct pstr epoch;
	uint64_t cached = 0, dropped = 0;

	if (!failed(q, "publish", r, err)) {
		if (r->type == REDIS_REPLY_INTEGER) {
			rc = RT_OK; /* PUBLISH: the number of receivers; no history */
		} else if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && reply_u64(r->element[0], &res.offset) &&
			   reply_str(r->element[1], &epoch) && pstr_copy(res.epoch, sizeof(res.epoch), epoch)) {
			/* {offset, epoch, from the idempotency cache, dropped by
			 * its version}: older scripts answer 2 or 3 of them. */
			if (r->elements >= 3)
				reply_u64(r->element[2], &cached);
			if (r->elements >= 4)
				reply_u64(r->element[3], &dropped);
			res.suppressed = cached == 1 || dropped == 1;
			rc = RT_OK;
			if (q->replicas > 0 && !res.suppressed) {
				struct reng *e = R(q->w);
				struct rlink *l = link_of(e->bro, q->channel);
				char n[16], ms[24];
				uint64_t t = e->bro->cf.shard[0].io_timeout_ms / 2;
				snprintf(n, sizeof(n), "%d", q->replicas);
				snprintf(ms, sizeof(ms), "%llu", (unsigned long long)(t < 100 ? 100 : t));
				q->res = res;
				rlink_cmd(l, 3, (const char *[]){ "WAIT", n, ms }, NULL, on_waited, q);
				return;
			}
		} else if (r->type == REDIS_REPLY_NIL || r->type == REDIS_REPLY_ARRAY) {
			rc = RT_OK; /* the idempotent publish without history answers nothing */
		} else {
			log_warn("redis: publish to %.*s: unexpected reply of type %d", (int)q->channel.n,
				 q->channel.p, r->type);
		}
	}
	((node_pub_fn *)q->done)(q->arg, rc, &res);
	rq_free(q);
}

static void redis_publish(struct worker *w, const struct node_pub *p, node_pub_fn *done, void *arg)
{
	struct reng *r = R(w);
	bool history = p->history_size > 0 && p->history_ttl_ms > 0 && !p->skip_history;
	struct publication pub = { .data = p->data, .info = p->info, .tags = p->tags, .ntags = p->ntags,
				   .time = util_wall_ms() };
	struct args a = { 0 };
	char epoch[9];

	r->arg.len = 0;
	/* Without history the delta flag travels in the Publication (§3.1). */
	rw_pub_encode_v(&r->arg, &pub, !history && p->delta, p->version);
	struct pstr body = { r->arg.buf, r->arg.len };
	struct rside *b = r->bro;
	struct pstr client = name(r, b, 0, RW_CLIENT, p->channel, (struct pstr){ NULL, 0 });
	struct rq *q = rq_new(w, (void *)done, arg, p->channel);
	struct rlink *l = link_of(b, p->channel);

	if (history) {
		/* §4.1: KEYS stream, meta, result; ARGV 1..11. */
		put(&a, name(r, b, 1, RW_STREAM, p->channel, (struct pstr){ NULL, 0 }));
		put(&a, name(r, b, 2, RW_STREAM_META, p->channel, (struct pstr){ NULL, 0 }));
		put(&a, name(r, b, 3, RW_RESULT, p->channel, p->idempotency_key));
		put(&a, body);
		put_u(&a, p->history_size);
		put_u(&a, rw_secs(p->history_ttl_ms));
		put(&a, client);
		put_u(&a, rw_secs(p->history_meta_ttl_ms));
		rw_epoch_new(epoch);
		put_s(&a, epoch);
		put_s(&a, "publish");
		put_s(&a, p->idempotency_key.n ? "300" : "");
		put_s(&a, p->delta ? "1" : "");
		/* ARGV 10-11 as Centrifugo writes them: strconv.Itoa(int(v)),
		 * so a version above 2^63 - 1 goes as a negative number. */
		if (p->version == 0)
			put_s(&a, "0");
		else
			put_i(&a, (int64_t)p->version);
		put(&a, p->version_epoch);
		/* WAIT goes after the script's reply: a NOSCRIPT retry of
		 * EVALSHA would otherwise come after it. */
		if (b->cf.wait_replicas && b->cf.shard[rw_shard_of(p->channel, b->cf.nshards)].master_name[0])
			q->replicas = rlink_replicas(l) < 0 ? 1 : rlink_replicas(l); /* unknown yet: one at least */
		rlink_eval(l, &s_publish, 3, a.c, a.v, a.n, on_publish, q);
	} else if (p->idempotency_key.n) {
		/* §4.3 */
		put(&a, name(r, b, 3, RW_RESULT, p->channel, p->idempotency_key));
		put(&a, body);
		put(&a, client);
		put_s(&a, "publish");
		put_s(&a, "300");
		rlink_eval(l, &s_publish_idem, 1, a.c, a.v, a.n, on_publish, q);
	} else {
		put_s(&a, "PUBLISH");
		put(&a, client);
		put(&a, body);
		rlink_cmd_key(l, 1, a.c, a.v, a.n, on_publish, q);
	}
}

/* ---- history ----------------------------------------------------------------- */

/* One publication of a history reply and what it points to. */
struct hblock {
	struct publication p;
	struct client_info ci;
	struct tag tags[64];
};

/* Fills H from the entries of an XRANGE-shaped reply E: [[id, [field,
 * value, ...]], ...]; the pointers go into the reply. RT_OK or RT_ERR. */
static int history_entries(const redisReply *e, struct node_history *h)
{
	if (e->type == REDIS_REPLY_NIL)
		return RT_OK;
	if (e->type != REDIS_REPLY_ARRAY)
		return RT_ERR;
	h->v = xcalloc(e->elements + 1, sizeof(*h->v));
	h->blocks = xcalloc(e->elements + 1, sizeof(*h->blocks));
	for (size_t i = 0; i < e->elements; i++) {
		const redisReply *x = e->element[i];
		if (x->type != REDIS_REPLY_ARRAY || x->elements < 2 || x->element[0]->type != REDIS_REPLY_STRING ||
		    x->element[1]->type != REDIS_REPLY_ARRAY)
			return RT_ERR;
		uint64_t offset = strtoull(x->element[0]->str, NULL, 10);
		const redisReply *f = x->element[1];
		const redisReply *d = NULL;
		for (size_t j = 0; j + 1 < f->elements; j += 2)
			if (f->element[j]->type == REDIS_REPLY_STRING && f->element[j]->len == 1 &&
			    f->element[j]->str[0] == 'd')
				d = f->element[j + 1];
		if (d == NULL || d->type != REDIS_REPLY_STRING)
			return RT_ERR;
		struct hblock *b = xcalloc(1, sizeof(*b));
		bool delta;
		h->blocks[h->n] = b;
		if (rw_pub_decode(d->str, d->len, &b->p, &b->ci, b->tags, ROTOR_ARRAY_LEN(b->tags), &delta) != 0) {
			free(b);
			h->blocks[h->n] = NULL;
			return RT_ERR;
		}
		b->p.offset = offset;
		h->v[h->n++] = b->p;
		if (h->first == 0 || offset < h->first)
			h->first = offset;
	}
	return RT_OK;
}

static void history_free(struct node_history *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->blocks[i]);
	free(h->blocks);
	free(h->v);
}

static void on_history(void *arg, redisReply *r, const char *err)
{
	struct rq *q = arg;
	struct node_history h = { 0 };
	int rc = RT_ERR;
	struct pstr epoch;

	if (!failed(q, "history", r, err)) {
		if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && reply_u64(r->element[0], &h.top) &&
		    reply_str(r->element[1], &epoch) && pstr_copy(h.epoch, sizeof(h.epoch), epoch) &&
		    (r->elements < 3 || history_entries(r->element[2], &h) == RT_OK)) {
			rc = RT_OK;
			if (q->has_since_epoch && strcmp(q->since_epoch, h.epoch) != 0) {
				/* As the shared-memory engine: the client's 112, no publications. */
				h.epoch_mismatch = true;
				history_free(&h);
				h.v = NULL, h.blocks = NULL, h.n = 0;
			}
		} else {
			log_warn("redis: history of %.*s: unexpected reply", (int)q->channel.n, q->channel.p);
		}
	}
	if (rc != RT_OK) {
		history_free(&h);
		memset(&h, 0, sizeof(h));
	}
	((node_history_fn *)q->done)(q->arg, rc, &h);
	history_free(&h);
	rq_free(q);
}

/* A history read (§4.4), the script's arguments from a query; a reverse
 * read from offset 1 fetches the position only. DONE is a node_history_fn. */
static void history_read(struct worker *w, struct pstr ch, int32_t limit, bool reverse, bool has_since,
			 uint64_t since, const char *since_epoch, uint64_t meta_ttl_ms, void *done, void *arg)
{
	struct reng *r = R(w);
	struct args a = { 0 };
	char epoch[9];
	bool include = limit != 0;
	char start[24] = "0";

	if (has_since && !reverse)
		snprintf(start, sizeof(start), "%" PRIu64, since + 1);
	else if (has_since && reverse) {
		if (since <= 1)
			include = false;
		else
			snprintf(start, sizeof(start), "%" PRIu64, since - 1);
	}
	struct rq *q = rq_new(w, done, arg, ch);
	if (since_epoch && *since_epoch && pstr_copy(q->since_epoch, sizeof(q->since_epoch), pstr_c(since_epoch)))
		q->has_since_epoch = true;
	put(&a, name(r, r->bro, 0, RW_STREAM, ch, (struct pstr){ NULL, 0 }));
	put(&a, name(r, r->bro, 1, RW_STREAM_META, ch, (struct pstr){ NULL, 0 }));
	put_s(&a, include ? "1" : "0");
	put_s(&a, start);
	put_i(&a, limit > 0 ? limit : 0);
	put_s(&a, reverse ? "1" : "0");
	put_u(&a, rw_secs(meta_ttl_ms));
	rw_epoch_new(epoch);
	put_s(&a, epoch);
	rlink_eval(link_of(r->bro, ch), &s_history, 2, a.c, a.v, a.n, on_history, q);
}

static void redis_history(struct worker *w, struct pstr ch, const struct hist_query *q, node_history_fn *done,
			  void *arg)
{
	if (q->reverse && q->has_since && q->since_offset == 0) {
		struct node_history h = { 0 };
		done(arg, RT_INVAL, &h);
		return;
	}
	history_read(w, ch, q->limit, q->reverse, q->has_since, q->since_offset, q->since_epoch, q->meta_ttl_ms,
		     (void *)done, arg);
}

/* The position only: a history read of no publications. */
struct top_rq {
	node_top_fn *done;
	void *arg;
};

static void on_top(void *arg, int rc, const struct node_history *h)
{
	struct top_rq *t = arg;
	t->done(t->arg, rc, h->top, pstr_c(h->epoch));
	free(t);
}

static void redis_history_top(struct worker *w, struct pstr ch, uint64_t meta_ttl_ms, node_top_fn *done,
			      void *arg)
{
	struct top_rq *t = xmalloc(sizeof(*t));
	t->done = done;
	t->arg = arg;
	history_read(w, ch, 0, false, false, 0, NULL, meta_ttl_ms, (void *)on_top, t);
}

static void on_removed(void *arg, redisReply *r, const char *err)
{
	struct rq *q = arg;
	int rc = failed(q, "history_remove", r, err) ? RT_ERR : RT_OK;
	((node_done_fn *)q->done)(q->arg, rc);
	rq_free(q);
}

/* §4.6: the stream goes, the meta (and so the position) stays. */
static void redis_history_remove(struct worker *w, struct pstr ch, node_done_fn *done, void *arg)
{
	struct reng *r = R(w);
	struct args a = { 0 };
	put_s(&a, "DEL");
	put(&a, name(r, r->bro, 0, RW_STREAM, ch, (struct pstr){ NULL, 0 }));
	rlink_cmd_key(link_of(r->bro, ch), 1, a.c, a.v, a.n, on_removed, rq_new(w, (void *)done, arg, ch));
}

/* ---- presence ---------------------------------------------------------------- */

/* KEYS 1..4 of the presence scripts (§4.7), on the presence shards. */
static void presence_keys(struct reng *r, struct args *a, struct pstr ch)
{
	put(a, name(r, r->pre, 0, RW_PRES_EXPIRE, ch, (struct pstr){ NULL, 0 }));
	put(a, name(r, r->pre, 1, RW_PRES_DATA, ch, (struct pstr){ NULL, 0 }));
	put(a, name(r, r->pre, 2, RW_PRES_USER_EXPIRE, ch, (struct pstr){ NULL, 0 }));
	put(a, name(r, r->pre, 3, RW_PRES_USER_CLIENTS, ch, (struct pstr){ NULL, 0 }));
}

static void on_presence(void *arg, redisReply *r, const char *err)
{
	struct rq *q = arg;
	struct node_presence p = { 0 };
	int rc = RT_ERR;

	if (!failed(q, "presence", r, err) && r->type == REDIS_REPLY_ARRAY && r->elements % 2 == 0) {
		rc = RT_OK;
		p.v = xcalloc(r->elements / 2 + 1, sizeof(*p.v));
		for (size_t i = 0; i + 1 < r->elements; i += 2) {
			const redisReply *v = r->element[i + 1];
			if (v->type != REDIS_REPLY_STRING || rw_info_decode(v->str, v->len, &p.v[p.n]) != 0) {
				/* Centrifugo fails the whole call on one bad value: so do we. */
				log_warn("redis: presence of %.*s: an undecodable ClientInfo", (int)q->channel.n,
					 q->channel.p);
				rc = RT_ERR;
				p.n = 0;
				break;
			}
			p.n++;
		}
	}
	if (q->stats_by_hand) {
		/* Distinct users among the entries. */
		uint32_t nu = 0;
		for (size_t i = 0; i < p.n; i++) {
			bool seen = false;
			for (size_t j = 0; j < i && !seen; j++)
				seen = p.v[j].user.n == p.v[i].user.n &&
				       memcmp(p.v[j].user.p, p.v[i].user.p, p.v[i].user.n) == 0;
			nu += !seen;
		}
		((node_stats_fn *)q->done)(q->arg, rc, rc == RT_OK ? (uint32_t)p.n : 0, rc == RT_OK ? nu : 0);
	} else {
		((node_presence_fn *)q->done)(q->arg, rc, &p);
	}
	free(p.v);
	rq_free(q);
}

static void presence_get(struct worker *w, struct pstr ch, void *done, void *arg, bool stats)
{
	struct reng *r = R(w);
	struct args a = { 0 };
	struct rq *q = rq_new(w, done, arg, ch);
	q->stats_by_hand = stats;
	put(&a, name(r, r->pre, 0, RW_PRES_EXPIRE, ch, (struct pstr){ NULL, 0 }));
	put(&a, name(r, r->pre, 1, RW_PRES_DATA, ch, (struct pstr){ NULL, 0 }));
	put_i(&a, util_wall_ms() / 1000);
	put_s(&a, "0");
	rlink_eval(link_of(r->pre, ch), &s_pres_get, 2, a.c, a.v, a.n, on_presence, q);
}

static void redis_presence(struct worker *w, struct pstr ch, node_presence_fn *done, void *arg)
{
	presence_get(w, ch, (void *)done, arg, false);
}

static void on_stats(void *arg, redisReply *r, const char *err)
{
	struct rq *q = arg;
	uint64_t nc = 0, nu = 0;
	int rc = RT_ERR;
	if (!failed(q, "presence_stats", r, err) && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    reply_u64(r->element[0], &nc) && reply_u64(r->element[1], &nu))
		rc = RT_OK;
	((node_stats_fn *)q->done)(q->arg, rc, (uint32_t)nc, (uint32_t)nu);
	rq_free(q);
}

static void redis_presence_stats(struct worker *w, struct pstr ch, node_stats_fn *done, void *arg)
{
	struct reng *r = R(w);
	if (!r->pre->cf.user_mapping) {
		presence_get(w, ch, (void *)done, arg, true);
		return;
	}
	struct args a = { 0 };
	presence_keys(r, &a, ch);
	put_i(&a, util_wall_ms() / 1000);
	put_s(&a, "0");
	rlink_eval(link_of(r->pre, ch), &s_pres_stats, 4, a.c, a.v, a.n, on_stats, rq_new(w, (void *)done, arg, ch));
}

static void on_fire_and_forget(void *arg, redisReply *r, const char *err)
{
	struct rq *q = arg;
	failed(q, q->what, r, err);
	rq_free(q);
}

static struct rq *rq_log(struct worker *w, const char *what, struct pstr ch)
{
	struct rq *q = rq_new(w, NULL, NULL, ch);
	q->what = what;
	return q;
}

static void redis_presence_add(struct worker *w, struct pstr ch, const struct client_info *ci)
{
	struct reng *r = R(w);
	struct args a = { 0 };
	presence_keys(r, &a, ch);
	put_u(&a, r->pre->cf.presence_ttl_s);
	put_i(&a, util_wall_ms() / 1000 + (int64_t)r->pre->cf.presence_ttl_s);
	put(&a, ci->client);
	r->arg.len = 0;
	rw_info_encode(&r->arg, ci);
	put(&a, (struct pstr){ r->arg.buf, r->arg.len });
	put(&a, ci->user);
	put_s(&a, r->pre->cf.user_mapping ? "1" : "0");
	put_s(&a, "0");
	rlink_eval(link_of(r->pre, ch), &s_pres_add, 4, a.c, a.v, a.n, on_fire_and_forget,
		   rq_log(w, "presence add", ch));
}

static void redis_presence_remove(struct worker *w, struct pstr ch, const struct client_info *ci)
{
	struct reng *r = R(w);
	struct args a = { 0 };
	presence_keys(r, &a, ch);
	put(&a, ci->client);
	put(&a, ci->user);
	put_s(&a, r->pre->cf.user_mapping ? "1" : "0");
	put_s(&a, "0");
	rlink_eval(link_of(r->pre, ch), &s_pres_rem, 4, a.c, a.v, a.n, on_fire_and_forget,
		   rq_log(w, "presence remove", ch));
}

/* Entries live presence_ttl in Redis: every update interval the session
 * adds all of them again, which is the refresh (as Centrifugo does). */
static bool redis_presence_refresh(struct worker *w, bool first)
{
	(void)w;
	return !first;
}

static int redis_join_leave(struct worker *w, struct pstr ch, const struct client_info *ci, bool join)
{
	struct reng *r = R(w);
	struct args a = { 0 };
	put_s(&a, "PUBLISH");
	put(&a, name(r, r->bro, 0, RW_CLIENT, ch, (struct pstr){ NULL, 0 }));
	r->arg.len = 0;
	rw_join_leave(&r->arg, join, ci);
	put(&a, (struct pstr){ r->arg.buf, r->arg.len });
	rlink_cmd_key(link_of(r->bro, ch), 1, a.c, a.v, a.n, on_fire_and_forget,
		  rq_log(w, join ? "join" : "leave", ch));
	return RT_OK;
}

/* ---- listening, through the broker ------------------------------------------ */

static void redis_listen(struct worker *w, struct pstr ch, node_done_fn *done, void *arg)
{
	struct reng *r = R(w);
	struct lwait *x = xmalloc(sizeof(*x));
	x->tag = ++r->next_tag;
	x->since_ms = util_mono_ms();
	x->done = done;
	x->arg = arg;
	x->next = r->waits;
	r->waits = x;
	if (node_bus_listen(w, x->tag, ch) != RT_OK)
		x->since_ms = INT64_MIN / 2; /* answered RT_ERR at the next tick */
}

static void on_listen_ack(struct worker *w, uint64_t tag, bool ok)
{
	struct reng *r = R(w);
	for (struct lwait **pp = &r->waits, *x; (x = *pp) != NULL; pp = &x->next) {
		if (x->tag == tag) {
			*pp = x->next;
			x->done(x->arg, ok ? RT_OK : RT_ERR);
			free(x);
			return;
		}
	}
}

static void survey_end(struct swait *x, int rc);

/* Listen requests the broker never answered (it is dead or restarting)
 * fail after io_timeout and a second: the client retries. So do surveys
 * some node did not answer. */
static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct reng *r = t->data;
	int64_t now = util_mono_ms(), limit = (int64_t)r->bro->cf.shard[0].io_timeout_ms + 1000;
	(void)loop, (void)revents;
	for (struct lwait **pp = &r->waits, *x; (x = *pp) != NULL;) {
		if (now - x->since_ms > limit) {
			*pp = x->next;
			log_warn("redis: the broker did not answer a listen request");
			x->done(x->arg, RT_ERR);
			free(x);
		} else {
			pp = &x->next;
		}
	}
	for (struct swait **pp = &r->surveys, *x; (x = *pp) != NULL;) {
		if (now - x->since_ms > limit) {
			*pp = x->next;
			log_warn("redis: %u node(s) did not answer a %s survey", x->want,
				 x->emu ? "centrifuge_emulation" : "channels");
			survey_end(x, RT_ERR);
		} else {
			pp = &x->next;
		}
	}
}

/* ---- server-side actions to the other nodes (§6.5) -------------------------------- */

/* To every node ({p}.control), or to the one whose uid is TO. */
static void send_control(struct worker *w, struct rw_cmd *c, struct pstr to)
{
	struct reng *r = R(w);
	struct jw ch = { 0 };
	struct args a = { 0 };
	c->uid = pstr_c(node_uid(w));
	r->arg.len = 0;
	rw_cmd_encode(&r->arg, c);
	if (to.n)
		rw_node(&ch, r->bro->cf.prefix, to);
	else
		rw_control(&ch, r->bro->cf.prefix);
	put_s(&a, "PUBLISH");
	put(&a, (struct pstr){ ch.buf, ch.len });
	put(&a, (struct pstr){ r->arg.buf, r->arg.len });
	rlink_cmd_key(r->bro->cmd[r->rr++ % r->bro->cf.nshards], 1, a.c, a.v, a.n, on_fire_and_forget,
		  rq_log(w, "control command", pstr_c("{control}")));
	jw_free(&ch);
}

static void redis_disconnect(struct worker *w, const struct node_target *t, const struct pstr *whitelist,
			     size_t nwhitelist, uint32_t code, struct pstr reason)
{
	struct rw_cmd c = { .type = RW_CMD_DISCONNECT };
	struct jw wl = { 0 };
	c.disconnect.user = t->user;
	c.disconnect.client = t->client;
	c.disconnect.session = t->session;
	c.disconnect.code = code;
	c.disconnect.reason = reason;
	rw_cmd_set_whitelist(&wl, whitelist, nwhitelist, &c);
	send_control(w, &c, (struct pstr){ 0 });
	jw_free(&wl);
}

static void redis_unsubscribe(struct worker *w, const struct node_target *t, struct pstr channel)
{
	struct rw_cmd c = { .type = RW_CMD_UNSUBSCRIBE };
	c.unsubscribe.user = t->user;
	c.unsubscribe.client = t->client;
	c.unsubscribe.session = t->session;
	c.unsubscribe.channel = channel;
	c.unsubscribe.code = 2000;
	c.unsubscribe.reason = pstr_c("server unsubscribe");
	send_control(w, &c, (struct pstr){ 0 });
}

static void redis_subscribe(struct worker *w, const struct node_target *t, const struct node_sub *s)
{
	struct rw_cmd c = { .type = RW_CMD_SUBSCRIBE };
	c.subscribe.user = t->user;
	c.subscribe.client = t->client;
	c.subscribe.session = t->session;
	c.subscribe.channel = s->channel;
	c.subscribe.channel_info = s->info;
	c.subscribe.data = s->data;
	c.subscribe.expire_at = s->expire_at;
	c.subscribe.has_since = s->has_since;
	c.subscribe.recover = s->has_since;
	c.subscribe.since_offset = s->since_offset;
	c.subscribe.since_epoch = s->since_epoch;
	send_control(w, &c, (struct pstr){ 0 });
}

static void redis_refresh(struct worker *w, const struct node_target *t, bool expired, int64_t expire_at,
			  struct pstr info)
{
	struct rw_cmd c = { .type = RW_CMD_REFRESH };
	c.refresh.user = t->user;
	c.refresh.client = t->client;
	c.refresh.session = t->session;
	c.refresh.expired = expired;
	c.refresh.expire_at = expire_at;
	c.refresh.info = info;
	send_control(w, &c, (struct pstr){ 0 });
}

/* ---- surveys of the other nodes (§6.4): channels, emulation -------------------- */

static void count_peer(void *arg, const struct node_info *ni)
{
	(void)ni;
	++*(unsigned *)arg;
}

struct find_peer {
	struct pstr uid;
	bool found;
};

static void find_peer(void *arg, const struct node_info *ni)
{
	struct find_peer *f = arg;
	if (f->uid.n == strlen(ni->uid) && memcmp(f->uid.p, ni->uid, f->uid.n) == 0)
		f->found = true;
}

/* Every node answers on our node channel, which the broker holds: it
 * hands the answer to the slot in the id's high bits (node_bus_survey).
 * X is filled but for its id; TO is one node's uid, or empty: all. */
static void survey_send(struct worker *w, struct swait *x, const char *op, struct pstr data, struct pstr to)
{
	struct reng *r = R(w);
	struct rw_cmd c = { .type = RW_CMD_SURVEY_REQUEST };

	x->id = (uint64_t)w->bus_slot << 40 | (++r->next_tag & ((UINT64_C(1) << 40) - 1));
	x->since_ms = util_mono_ms();
	x->next = r->surveys;
	r->surveys = x;
	c.survey_request.id = x->id;
	c.survey_request.op = pstr_c(op);
	c.survey_request.data = data;
	send_control(w, &c, to);
}

/* Answers X's caller (RC: RT_ERR when an answer is missing) and frees X,
 * which is off the list. */
static void survey_end(struct swait *x, int rc)
{
	if (x->emu)
		x->emu_done(x->arg, rc == RT_OK ? x->rc : NODE_EMU_FAILED);
	else
		x->done(x->arg, rc == RT_OK ? x->rc : RT_ERR);
	free(x);
}

static void redis_channels(struct worker *w, struct pstr pattern, node_channel_fn fn, node_done_fn *done,
			   void *arg)
{
	struct jw data = { 0 };
	unsigned peers = 0;

	node_peers(w, count_peer, &peers);
	if (peers == 0) {
		done(arg, RT_OK);
		return;
	}
	struct swait *x = xcalloc(1, sizeof(*x));
	x->want = peers;
	x->rc = RT_OK;
	x->fn = fn;
	x->done = done;
	x->arg = arg;
	rw_channels_request(&data, pattern);
	survey_send(w, x, "channels", (struct pstr){ data.buf, data.len }, (struct pstr){ 0 });
	jw_free(&data);
}

/* To the node that owns the session, which feeds DATA to it and answers
 * 0, or 2 when it has no such session. */
static void redis_emulate(struct worker *w, struct pstr node, struct pstr session, struct pstr data,
			  node_emu_fn *done, void *arg)
{
	struct find_peer f = { node, false };
	struct jw req = { 0 };

	node_peers(w, find_peer, &f);
	if (!f.found) {
		done(arg, NODE_EMU_NO_NODE);
		return;
	}
	struct swait *x = xcalloc(1, sizeof(*x));
	x->want = 1;
	x->emu = true;
	x->emu_done = done;
	x->arg = arg;
	pb_lenfield(&req, 1, node.p, node.n);
	pb_lenfield(&req, 2, session.p, session.n);
	pb_lenfield(&req, 3, data.p, data.n);
	survey_send(w, x, "centrifuge_emulation", (struct pstr){ req.buf, req.len }, node);
	jw_free(&req);
}

static void on_survey(struct worker *w, uint64_t id, uint32_t code, struct pstr data)
{
	struct reng *r = R(w);
	struct swait **pp = &r->surveys, *x;

	while ((x = *pp) != NULL && x->id != id)
		pp = &x->next;
	if (x == NULL)
		return; /* timed out already, or not ours */
	if (x->emu) {
		x->rc = code == 0 ? NODE_EMU_TAKEN : code == 2 ? NODE_EMU_NO_SESSION : NODE_EMU_FAILED;
		if (x->rc == NODE_EMU_FAILED)
			log_warn("redis: a node answered a centrifuge_emulation survey with code %u", code);
	} else if (code != 0) {
		log_warn("redis: a node answered a channels survey with code %u", code);
		x->rc = RT_ERR;
	} else if (rw_channels_result_decode(data.p, data.n, x->fn, x->arg) != 0) {
		log_warn("redis: an undecodable answer to a channels survey (%zu bytes)", data.n);
		x->rc = RT_ERR;
	}
	if (--x->want > 0)
		return;
	*pp = x->next;
	survey_end(x, RT_OK);
}

/* ---- start, stop ---------------------------------------------------------- */

/* Loads side S from block SECTION and opens its links. RT_OK or RT_ERR. */
static int side_open(struct worker *w, struct rside *s, const char *section)
{
	if (redis_conf_load(w->conf, section, &s->cf, NULL) != RT_OK) {
		log_error("redis: the configuration of %s does not load", section);
		s->cf.nshards = 0; /* no links opened */
		return RT_ERR;
	}
	for (unsigned i = 0; i < s->cf.nshards; i++) {
		struct rlink_opts o = { .loop = w->loop, .addr = &s->cf.shard[i], .kind = RLINK_CMD };
		s->cmd[i] = rlink_new(&o);
	}
	return RT_OK;
}

static void side_close(struct rside *s)
{
	for (unsigned i = 0; i < s->cf.nshards; i++)
		rlink_free(s->cmd[i]);
	s->cf.nshards = 0;
}

/* Opens the links of each side the plan puts in Redis: one set when both
 * sides come from one block. Listening and surveys go through the broker
 * process, which runs only when the broker side is in Redis. */
static int redis_start(struct worker *w)
{
	struct engine_plan p;
	struct reng *r = xcalloc(1, sizeof(*r));

	r->w = w;
	w->engine_state = r;
	if (engine_plan(w->conf, &p, NULL) != RT_OK || (!p.broker_redis && !p.presence_redis)) {
		log_error("redis: the configuration puts nothing in Redis");
		goto fail;
	}
	if (p.broker_redis) {
		if (side_open(w, &r->sides[0], p.broker_section) != RT_OK)
			goto fail;
		r->bro = &r->sides[0];
	}
	if (engine_plan_shared(&p)) {
		r->pre = r->bro;
	} else if (p.presence_redis) {
		if (side_open(w, &r->sides[1], p.presence_section) != RT_OK)
			goto fail;
		r->pre = &r->sides[1];
	}
	if (r->bro) {
		node_on_listen(NULL, on_listen_ack);
		node_on_survey(on_survey);
		ev_timer_init(&r->tick, on_tick, 1.0, 1.0);
		r->tick.data = r;
		ev_timer_start(w->loop, &r->tick);
	}
	return RT_OK;
fail:
	side_close(&r->sides[0]);
	side_close(&r->sides[1]);
	free(r);
	w->engine_state = NULL;
	return RT_ERR;
}

static void redis_stop(struct worker *w)
{
	struct reng *r = R(w);
	if (r == NULL)
		return;
	if (r->bro)
		ev_timer_stop(w->loop, &r->tick);
	for (struct lwait *x = r->waits, *next; x; x = next) {
		next = x->next;
		x->done(x->arg, RT_ERR);
		free(x);
	}
	for (struct swait *x = r->surveys, *next; x; x = next) {
		next = x->next;
		survey_end(x, RT_ERR);
	}
	side_close(&r->sides[0]);
	side_close(&r->sides[1]);
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(r->key); i++)
		jw_free(&r->key[i]);
	jw_free(&r->arg);
	free(r);
	w->engine_state = NULL;
}

/* Healthy when every link of both sides is up; else WHY names the first
 * that is not. */
static bool redis_health(struct worker *w, char *why, size_t n)
{
	struct reng *r = R(w);
	for (int k = 0; r && k < 2; k++) {
		const struct rside *s = &r->sides[k];
		for (unsigned i = 0; i < s->cf.nshards; i++) {
			if (!rlink_up(s->cmd[i])) {
				snprintf(why, n, "redis %sshard %s: %s", s == r->pre && s != r->bro ? "presence " : "",
					 redis_addr_str(&s->cf.shard[i]),
					 *rlink_error(s->cmd[i]) ? rlink_error(s->cmd[i]) : "not connected");
				return false;
			}
		}
	}
	return true;
}

const struct engine engine_redis = {
	.name = "redis",
	.start = redis_start,
	.stop = redis_stop,
	.publish = redis_publish,
	.history = redis_history,
	.history_top = redis_history_top,
	.history_remove = redis_history_remove,
	.presence = redis_presence,
	.presence_stats = redis_presence_stats,
	.presence_add = redis_presence_add,
	.presence_remove = redis_presence_remove,
	.presence_refresh = redis_presence_refresh,
	.join_leave = redis_join_leave,
	.listen = redis_listen,
	.channels = redis_channels,
	.emulate = redis_emulate,
	.health = redis_health,
	.disconnect = redis_disconnect,
	.unsubscribe = redis_unsubscribe,
	.subscribe = redis_subscribe,
	.refresh = redis_refresh,
};
