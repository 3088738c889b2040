/*
 * broker.c - the Redis engine's broker: one process per rotord node (a
 * child of the master, supervised like the workers, with a bus slot and no
 * listener), so that a node is one Centrifugo node whatever its number of
 * workers: one uid, one announcement, one Redis subscription per channel
 * (ref/redis-engine.md §1, §6, §10.4).
 *
 * Per shard it holds a PUB/SUB link for the channels ({p}.shard.0 as the
 * anchor, then {p}.client.CH for every channel with subscribers on this
 * node), a PUB/SUB link for the control plane ({p}.control and
 * {p}.node.<uid>), and a command link to publish on. On a Redis Cluster
 * shard the two PUB/SUB links sit on any node (a classic PUBLISH reaches
 * all of them) and subscribe the {CH}-tagged names (§2.2); whether a shard
 * given as a plain address is a cluster, its command link finds out when
 * it connects, and until then nothing is subscribed on it by name. What comes in goes
 * into the node's bus, where the workers fan it out exactly as they do with
 * the shared-memory engine:
 *
 *   publications and join/leave  -> node_bus_deliver, node_bus_join_leave
 *   disconnect, unsubscribe, subscribe, refresh from other nodes
 *                                -> node_disconnect & co. (this process's
 *                                   engine is the memory one: they are not
 *                                   sent back to Redis)
 *   node announcements           -> the registry, which `info` lists
 *   surveys                      -> answered (channels; centrifuge_emulation:
 *                                   fed to the session's worker, then
 *                                   answered; any other op: 3)
 *   answers to our workers' surveys -> node_bus_survey, to the asking slot
 *
 * Listening: a worker that is about to subscribe a client asks, through
 * the bus (LISTEN), and the broker acknowledges once Redis acknowledged
 * the SUBSCRIBE, so the worker reads the stream position only after the
 * node receives the channel (§5: subscribe, then read). Channels no worker
 * holds any more (their snapshots) and nobody asked for lately are
 * unsubscribed every RECONCILE_MS.
 *
 * Liveness (centrifugo#1189): a PUB/SUB link that heard nothing for
 * PROBE_IDLE_MS gets a probe published to its anchor; if that does not come
 * back within io_timeout, the link is torn down and made again. When a
 * channel link comes back after being down, every worker is told that
 * positioned subscriptions may have missed publications (LOST): they get
 * insufficient state and recover from the history in Redis. Never a
 * silent gap.
 */
#include "config.h"
#include "engine.h"
#include "bus.h"
#include "channel.h"
#include "redis_link.h"
#include "redis_wire.h"
#include "conf.h"
#include "json.h"
#include "log.h"
#include "proto.h"
#include "smap.h"
#include "transport.h"
#include "util.h"
#include "worker.h"

#include <ev.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_MS 250
#define ANNOUNCE_MS 3000     /* node announcements, as Centrifugo */
#define NODE_TTL_MS 7000     /* a node not heard from for longer is gone */
#define RECONCILE_MS 2000
#define LISTEN_KEEP_MS 30000 /* a channel asked for stays subscribed this long */
#define PROBE_IDLE_MS 10000
#define REGISTRY_MAX 256

struct peer {
	char uid[64], name[256], version[64];
	uint32_t num_clients, num_users, num_channels, num_subs, uptime;
	int64_t seen_ms;
};

struct waiter {
	struct waiter *next;
	unsigned slot, shard;
	uint64_t tag;
	int64_t since_ms;
	struct pstr name;       /* owned: the {p}.client.CH name */
};

struct shard {
	struct rlink *sub, *ctl, *cmd;
	bool sub_was_up;        /* the channel link was up before */
	int64_t heard_ms;       /* last message on the channel link */
	int64_t probe_ms;       /* a probe is under way since (0: none) */
};

static struct {
	struct worker *w;
	struct redis_conf cf;
	char uid[37];
	struct shard sh[REDIS_SHARDS_MAX];
	struct smap listened;   /* channel -> last listen (mono ms) */
	struct smap subscribed; /* {p}.client.CH names subscribed -> shard + 1 */
	struct waiter *waiters;
	struct peer peers[REGISTRY_MAX];
	unsigned npeers;
	bool registry_dirty;
	unsigned rr;
	int64_t announce_ms, reconcile_ms;
	int64_t lost_at;        /* when to tell the workers they may have lost publications (0: no) */
	struct jw name, out, scratch;
	ev_timer tick;
	char *registry_path;
} B;

static int64_t now(void)
{
	return util_mono_ms();
}

/* Whether shard I is a Redis Cluster (configured, or found so by its
 * command link): its channel names carry the {CH} hash tag (§2.2). */
static bool cluster_of(unsigned i)
{
	return rlink_cluster(B.sh[i].cmd);
}

static struct pstr client_name(struct pstr ch)
{
	B.name.len = 0;
	rw_name(&B.name, B.cf.prefix, cluster_of(rw_shard_of(ch, B.cf.nshards)), RW_CLIENT, ch,
		(struct pstr){ NULL, 0 });
	return (struct pstr){ B.name.buf, B.name.len };
}

static void on_logged(void *arg, struct redisReply *r, const char *err)
{
	(void)r;
	if (err)
		log_debug("broker: %s: %s", (const char *)arg, err);
}

/* PUBLISH PAYLOAD to CHANNEL through shard I's command link. */
static void publish_on(unsigned i, struct pstr channel, struct pstr payload, const char *what)
{
	const char *argv[] = { "PUBLISH", channel.p, payload.p ? payload.p : "" };
	size_t lens[] = { 7, channel.n, payload.n };
	rlink_cmd_key(B.sh[i].cmd, 1, 3, argv, lens, on_logged, (void *)what);
}

/* A control Command to everyone ({p}.control, one shard in turn: every
 * node listens on all of them) or to one node. */
static void send_command(const struct rw_cmd *c, struct pstr to_uid)
{
	struct jw ch = { 0 };
	B.out.len = 0;
	rw_cmd_encode(&B.out, c);
	if (to_uid.n)
		rw_node(&ch, B.cf.prefix, to_uid);
	else
		rw_control(&ch, B.cf.prefix);
	publish_on(B.rr++ % B.cf.nshards, (struct pstr){ ch.buf, ch.len }, (struct pstr){ B.out.buf, B.out.len },
		   "control command");
	jw_free(&ch);
}

/* ---- this node's announcement and the registry ------------------------------ */

static void announce(struct pstr to_uid)
{
	struct node_info ni;
	char version[64];
	if (node_info(B.w, &ni) != RT_OK)
		return;
	snprintf(version, sizeof(version), "%s", ni.version);
	struct rw_cmd c = { .uid = pstr_c(B.uid), .type = RW_CMD_NODE };
	c.node = (struct rw_node_info){
		.uid = pstr_c(B.uid), .name = pstr_c(ni.name), .version = pstr_c(version),
		.num_clients = ni.num_clients, .num_users = ni.num_users, .num_channels = ni.num_channels,
		.uptime = (uint32_t)ni.uptime, .num_subs = ni.num_subs,
	};
	send_command(&c, to_uid);
}

static struct peer *peer_find(struct pstr uid)
{
	for (unsigned i = 0; i < B.npeers; i++)
		if (strlen(B.peers[i].uid) == uid.n && memcmp(B.peers[i].uid, uid.p, uid.n) == 0)
			return &B.peers[i];
	return NULL;
}

static void peer_drop(struct peer *p)
{
	log_info("broker: node %s (%s) left", p->uid, p->name);
	*p = B.peers[--B.npeers];
	B.registry_dirty = true;
}

static void on_node(const struct rw_node_info *n)
{
	if (n->uid.n == 0 || n->uid.n >= sizeof(B.peers[0].uid))
		return;
	struct peer *p = peer_find(n->uid);
	if (p == NULL) {
		if (B.npeers == REGISTRY_MAX)
			return;
		p = &B.peers[B.npeers++];
		memset(p, 0, sizeof(*p));
		pstr_copy(p->uid, sizeof(p->uid), n->uid);
		pstr_copy(p->name, sizeof(p->name), n->name);
		log_info("broker: node %s (%s) joined", p->uid, p->name);
		/* Newcomers learn of us at once, not within 3 s (§6.3). */
		announce(n->uid);
	}
	if (!pstr_copy(p->name, sizeof(p->name), n->name))
		p->name[0] = '\0';
	if (!pstr_copy(p->version, sizeof(p->version), n->version))
		p->version[0] = '\0';
	p->num_clients = n->num_clients;
	p->num_users = n->num_users;
	p->num_channels = n->num_channels;
	p->num_subs = n->num_subs;
	p->uptime = n->uptime;
	p->seen_ms = now();
	B.registry_dirty = true;
}

/* The registry for the workers' info: one line per other node, written
 * whole to a new file that replaces the old one. */
static void registry_write(void)
{
	char *tmp = xasprintf("%s.tmp", B.registry_path);
	FILE *f = fopen(tmp, "w");
	if (f == NULL) {
		log_syscall("fopen(%s)", tmp);
		free(tmp);
		return;
	}
	for (unsigned i = 0; i < B.npeers; i++) {
		const struct peer *p = &B.peers[i];
		fprintf(f, "%s\t%u\t%u\t%u\t%u\t%u\t%s\t%s\n", p->uid, p->num_clients, p->num_users,
			p->num_channels, p->num_subs, p->uptime, p->version, p->name);
	}
	if (fclose(f) != 0 || rename(tmp, B.registry_path) != 0)
		log_syscall("writing %s", B.registry_path);
	free(tmp);
	B.registry_dirty = false;
}

/* ---- surveys ------------------------------------------------------------------- */

struct chan_acc {
	struct chan_glob *glob;     /* NULL: every channel */
};

static void survey_channel(void *arg, struct pstr channel, uint32_t n)
{
	struct chan_acc *a = arg;
	if (a->glob == NULL || chan_glob_match(a->glob, channel))
		rw_channels_result_add(&B.scratch, channel, n);
}

/* A centrifuge_emulation survey waiting for the session's worker. */
struct emu_answer {
	uint64_t id;
	char to[64];                /* the asking node's uid */
};

static void emulation_answered(void *arg, int outcome)
{
	struct emu_answer *a = arg;
	struct rw_cmd r = { .uid = pstr_c(B.uid), .type = RW_CMD_SURVEY_RESPONSE };
	r.survey_response.id = a->id;
	r.survey_response.code = outcome == NODE_EMU_TAKEN ? 0 : outcome == NODE_EMU_NO_SESSION ? 2 : 1;
	send_command(&r, pstr_c(a->to));
	free(a);
}

/* Centrifugo's codes: 1 a bad request (or, here, a worker that did not
 * answer), 2 no such session. */
static void on_emulation(const struct rw_cmd *c)
{
	struct emu_req er;
	struct cmd_batch b;
	struct emu_answer *a = xcalloc(1, sizeof(*a));

	a->id = c->survey_request.id;
	if (!pstr_copy(a->to, sizeof(a->to), c->uid) ||
	    proto_decode_emulation(PROTO_PB, c->survey_request.data.p, c->survey_request.data.n, &er, &b) != RT_OK) {
		proto_batch_free(&b);
		if (a->to[0])
			emulation_answered(a, NODE_EMU_FAILED);
		else
			free(a);
		return;
	}
	emulation_forwarded(er.session, er.data, emulation_answered, a);
	proto_batch_free(&b);
}

static void on_survey(const struct rw_cmd *c)
{
	struct rw_cmd r = { .uid = pstr_c(B.uid), .type = RW_CMD_SURVEY_RESPONSE };
	r.survey_response.id = c->survey_request.id;
	B.scratch.len = 0;
	if (c->survey_request.op.n == 8 && memcmp(c->survey_request.op.p, "channels", 8) == 0) {
		struct chan_acc a = { 0 };
		struct pstr pattern;
		if (rw_channels_request_decode(c->survey_request.data.p, c->survey_request.data.n, &pattern) != 0 ||
		    (pattern.n && (a.glob = chan_glob_new(pattern.p, pattern.n)) == NULL)) {
			r.survey_response.code = 2; /* a bad request */
		} else {
			node_channels(B.w, survey_channel, &a);
			chan_glob_free(a.glob);
		}
	} else {
		r.survey_response.code = 3; /* an op we do not know: answered, never left to time out */
	}
	struct jw data = B.scratch;
	B.scratch = (struct jw){ 0 };
	r.survey_response.data = (struct pstr){ data.buf, data.len };
	send_command(&r, c->uid);
	jw_free(&data);
}

/* An answer to a survey one of our workers asked (the id's high bits name
 * its bus slot, redis.c): handed over the bus; one too large for it goes
 * as a failure, so that the worker need not wait for its timeout. */
static void on_survey_response(const struct rw_cmd *c)
{
	uint64_t id = c->survey_response.id;
	unsigned slot = (unsigned)(id >> 40);
	if (slot >= BUS_SLOTS_MAX)
		return;
	if (node_bus_survey(B.w, slot, id, c->survey_response.code, c->survey_response.data) != RT_OK)
		node_bus_survey(B.w, slot, id, 1, (struct pstr){ 0 });
}

/* ---- the control plane ---------------------------------------------------------- */

static void on_control(void *arg, const char *channel, size_t chlen, const char *msg, size_t len)
{
	struct rw_cmd c;
	(void)arg, (void)channel, (void)chlen;
	if (rw_cmd_decode(msg, len, &c) != 0) {
		log_warn("broker: an undecodable control command (%zu bytes) skipped", len);
		return;
	}
	if (c.uid.n == strlen(B.uid) && memcmp(c.uid.p, B.uid, c.uid.n) == 0)
		return; /* our own */
	switch (c.type) {
	case RW_CMD_NODE:
		on_node(&c.node);
		break;
	case RW_CMD_SHUTDOWN: {
		struct peer *p = peer_find(c.uid);
		if (p)
			peer_drop(p);
		break;
	}
	case RW_CMD_UNSUBSCRIBE: {
		struct node_target t = { c.unsubscribe.user, c.unsubscribe.client, c.unsubscribe.session };
		node_unsubscribe(B.w, &t, c.unsubscribe.channel);
		break;
	}
	case RW_CMD_DISCONNECT: {
		struct node_target t = { c.disconnect.user, c.disconnect.client, c.disconnect.session };
		struct pstr wl[256], it = c.disconnect.whitelist, s;
		size_t n = 0;
		while (n < ROTOR_ARRAY_LEN(wl) && rw_next_string(&it, &s))
			wl[n++] = s;
		node_disconnect(B.w, &t, wl, n, c.disconnect.code, c.disconnect.reason);
		break;
	}
	case RW_CMD_SUBSCRIBE: {
		struct node_target t = { c.subscribe.user, c.subscribe.client, c.subscribe.session };
		struct node_sub s = {
			.channel = c.subscribe.channel, .info = c.subscribe.channel_info, .data = c.subscribe.data,
			.expire_at = c.subscribe.expire_at, .has_since = c.subscribe.has_since,
			.since_offset = c.subscribe.since_offset, .since_epoch = c.subscribe.since_epoch,
			.override = CHAN_OVERRIDE_NONE,
		};
		node_subscribe(B.w, &t, &s);
		break;
	}
	case RW_CMD_REFRESH: {
		struct node_target t = { c.refresh.user, c.refresh.client, c.refresh.session };
		node_refresh(B.w, &t, c.refresh.expired, c.refresh.expire_at, c.refresh.info);
		break;
	}
	case RW_CMD_SURVEY_REQUEST:
		if (c.survey_request.op.n == 20 && memcmp(c.survey_request.op.p, "centrifuge_emulation", 20) == 0)
			on_emulation(&c);
		else
			on_survey(&c);
		break;
	case RW_CMD_SURVEY_RESPONSE:
		on_survey_response(&c);
		break;
	default:
		break; /* notifications */
	}
}

/* ---- channels ------------------------------------------------------------------ */

static void ack_waiters(struct pstr name, bool ok)
{
	for (struct waiter **pp = &B.waiters, *x; (x = *pp) != NULL;) {
		if (name.n == 0 || (x->name.n == name.n && memcmp(x->name.p, name.p, name.n) == 0)) {
			node_bus_listen_ack(B.w, x->slot, x->tag, ok);
			*pp = x->next;
			pstr_free(&x->name);
			free(x);
		} else {
			pp = &x->next;
		}
	}
}

static void on_subscribed(void *arg, const char *channel, size_t chlen)
{
	(void)arg;
	ack_waiters((struct pstr){ channel, chlen }, true);
}

/* A worker asks: have the node receive CHANNEL. */
static void on_listen(struct worker *w, unsigned slot, uint64_t tag, struct pstr ch)
{
	unsigned i = rw_shard_of(ch, B.cf.nshards);
	smap_set(&B.listened, ch.p, ch.n, (uint64_t)now());
	if (!rlink_mode_known(B.sh[i].cmd)) {
		/* Whether the names take the cluster form is not known yet. */
		node_bus_listen_ack(w, slot, tag, false);
		return;
	}
	struct pstr name = client_name(ch);
	if (!rlink_up(B.sh[i].sub)) {
		/* As Centrifugo: no subscribing while PUB/SUB is down (the
		 * client gets a temporary error and retries). */
		node_bus_listen_ack(w, slot, tag, false);
		return;
	}
	if (smap_get(&B.subscribed, name.p, name.n) && rlink_subscribed(B.sh[i].sub, name.p, name.n)) {
		node_bus_listen_ack(w, slot, tag, true);
		return;
	}
	struct waiter *x = xcalloc(1, sizeof(*x));
	x->slot = slot;
	x->tag = tag;
	x->shard = i;
	x->since_ms = now();
	x->name = pstr_dup(name);
	x->next = B.waiters;
	B.waiters = x;
	smap_set(&B.subscribed, name.p, name.n, i + 1);
	rlink_subscribe(B.sh[i].sub, name.p, name.n);
}

static void on_message(void *arg, const char *channel, size_t chlen, const char *msg, size_t len)
{
	struct shard *s = arg;
	struct pstr name = { channel, chlen }, ch;
	struct rw_frame f;

	s->heard_ms = now();
	s->probe_ms = 0;
	if (!rw_client_channel(name, B.cf.prefix, cluster_of((unsigned)(s - B.sh)), &ch))
		return; /* the anchor: a probe, ours or another node's */
	if (rw_frame_parse(msg, len, &f) != 0) {
		log_warn("broker: an unknown frame (%zu bytes) on %.*s skipped", len, (int)chlen, channel);
		return;
	}
	if (f.type == RW_F_JOIN || f.type == RW_F_LEAVE) {
		struct client_info ci;
		if (rw_info_decode(f.body.p, f.body.n, &ci) == 0)
			node_bus_join_leave(B.w, ch, &ci, f.type == RW_F_JOIN);
		return;
	}
	struct publication p;
	struct client_info ci;
	struct tag tags[64];
	bool delta;
	if (rw_pub_decode(f.body.p, f.body.n, &p, &ci, tags, ROTOR_ARRAY_LEN(tags), &delta) != 0) {
		log_warn("broker: an undecodable publication on %.*s skipped", (int)chlen, channel);
		return;
	}
	if (p.offset == 0)
		p.offset = f.offset;
	/* A d1 frame's previous publication is not needed: every worker
	 * keeps the last one it delivered (hub.c). */
	node_bus_deliver(B.w, ch, &p, f.epoch, delta || f.delta_frame);
}

static void on_sub_state(void *arg, bool up)
{
	struct shard *s = arg;
	unsigned i = (unsigned)(s - B.sh);
	if (up) {
		log_info("broker: PUB/SUB link to %s up", redis_addr_str(&B.cf.shard[i]));
		if (s->sub_was_up)
			node_bus_lost(B.w); /* publications may have passed meanwhile */
		s->sub_was_up = true;
		s->heard_ms = now();
		s->probe_ms = 0;
	} else {
		log_warn("broker: PUB/SUB link to %s down: %s", redis_addr_str(&B.cf.shard[i]),
			 rlink_error(s->sub));
		/* Waiters of this shard: a temporary error; they ask again. */
		for (struct waiter *x = B.waiters; x; x = x->next)
			if (x->shard == i)
				x->since_ms = INT64_MIN / 2;
	}
}

struct reconcile {
	struct smap keep;
	unsigned added;
};

/* A channel some worker holds: kept, and subscribed if it is not (a new
 * broker, after one that died, learns the node's channels this way). */
static void keep_channel(void *arg, struct pstr channel, uint32_t n)
{
	struct reconcile *r = arg;
	(void)n;
	if (!rlink_mode_known(B.sh[rw_shard_of(channel, B.cf.nshards)].cmd))
		return; /* the form of its name is not known yet: the next round */
	struct pstr name = client_name(channel);
	smap_set(&r->keep, name.p, name.n, 1);
	if (smap_get(&B.subscribed, name.p, name.n) == 0) {
		unsigned i = rw_shard_of(channel, B.cf.nshards);
		smap_set(&B.subscribed, name.p, name.n, i + 1);
		rlink_subscribe(B.sh[i].sub, name.p, name.n);
		r->added++;
	}
}

static bool keep_listened(void *arg, const char *key, size_t klen, uint64_t *val)
{
	struct reconcile *r = arg;
	if (now() - (int64_t)*val > LISTEN_KEEP_MS)
		return false; /* forget it */
	struct pstr name = client_name((struct pstr){ key, klen });
	smap_set(&r->keep, name.p, name.n, 1);
	return true;
}

static bool drop_unwanted(void *arg, const char *key, size_t klen, uint64_t *val)
{
	struct reconcile *r = arg;
	if (smap_get(&r->keep, key, klen))
		return true;
	rlink_unsubscribe(B.sh[*val - 1].sub, key, klen);
	return false;
}

/* Unsubscribes the channels no worker holds and nobody asked for lately. */
static void reconcile(void)
{
	struct reconcile r = { 0 };
	node_channels(B.w, keep_channel, &r);
	smap_filter(&B.listened, keep_listened, &r);
	smap_filter(&B.subscribed, drop_unwanted, &r);
	smap_clear(&r.keep);
	if (r.added) {
		/* Subscribed late: what was published before reached nobody
		 * here. Once Redis acknowledged (within the tick after next),
		 * positioned subscriptions resynchronise. */
		log_info("broker: subscribed %u channel(s) the workers hold", r.added);
		B.lost_at = now() + 2 * TICK_MS;
	}
}

/* ---- the tick ------------------------------------------------------------------ */

static void probe(unsigned i)
{
	struct shard *s = &B.sh[i];
	int64_t t = now();
	if (!rlink_up(s->sub))
		return;
	if (s->probe_ms && t - s->probe_ms > (int64_t)B.cf.shard[i].io_timeout_ms) {
		rlink_reconnect(s->sub, "a liveness probe did not come back");
		s->probe_ms = 0;
		return;
	}
	if (!s->probe_ms && t - s->heard_ms > PROBE_IDLE_MS) {
		struct jw anchor = { 0 };
		rw_shard(&anchor, B.cf.prefix, 0);
		publish_on(i, (struct pstr){ anchor.buf, anchor.len }, pstr_c("probe"), "probe");
		jw_free(&anchor);
		s->probe_ms = t;
	}
}

static void on_tick(struct ev_loop *loop, ev_timer *tm, int revents)
{
	int64_t t = now();
	(void)loop, (void)tm, (void)revents;

	if (t - B.announce_ms >= ANNOUNCE_MS) {
		B.announce_ms = t;
		announce((struct pstr){ NULL, 0 });
	}
	for (unsigned i = 0; i < B.npeers;) {
		if (t - B.peers[i].seen_ms > NODE_TTL_MS)
			peer_drop(&B.peers[i]);
		else
			i++;
	}
	if (B.registry_dirty)
		registry_write();
	/* Waiters Redis never acknowledged (a link down or stalled). */
	for (struct waiter **pp = &B.waiters, *x; (x = *pp) != NULL;) {
		if (t - x->since_ms > (int64_t)B.cf.shard[x->shard].io_timeout_ms) {
			node_bus_listen_ack(B.w, x->slot, x->tag, false);
			*pp = x->next;
			pstr_free(&x->name);
			free(x);
		} else {
			pp = &x->next;
		}
	}
	if (t - B.reconcile_ms >= RECONCILE_MS) {
		B.reconcile_ms = t;
		reconcile();
	}
	if (B.lost_at && t >= B.lost_at) {
		B.lost_at = 0;
		node_bus_lost(B.w);
	}
	for (unsigned i = 0; i < B.cf.nshards; i++)
		probe(i);
}

/* ---- start, stop --------------------------------------------------------------- */

int broker_start(struct worker *w)
{
	struct engine_plan p;
	if (engine_plan(w->conf, &p, NULL) != RT_OK || !p.broker_redis ||
	    redis_conf_load(w->conf, p.broker_section, &B.cf, NULL) != RT_OK) {
		log_error("broker: the broker's Redis configuration does not load");
		return RT_ERR;
	}
	B.w = w;
	snprintf(B.uid, sizeof(B.uid), "%s", node_uid(w));
	B.registry_path = xasprintf("%s/rotor-%lld.nodes", w->conf->shm_dir, w->conf->port);
	struct jw ctl = { 0 }, own = { 0 }, anchor = { 0 };
	rw_control(&ctl, B.cf.prefix);
	rw_node(&own, B.cf.prefix, pstr_c(B.uid));
	rw_shard(&anchor, B.cf.prefix, 0);
	for (unsigned i = 0; i < B.cf.nshards; i++) {
		struct shard *s = &B.sh[i];
		struct rlink_opts o = { .loop = w->loop, .addr = &B.cf.shard[i], .kind = RLINK_CMD };
		s->cmd = rlink_new(&o);
		o.kind = RLINK_SUB;
		o.on_message = on_message;
		o.on_subscribed = on_subscribed;
		o.on_state = on_sub_state;
		o.arg = s;
		s->sub = rlink_new(&o);
		rlink_subscribe(s->sub, anchor.buf, anchor.len);
		o.on_message = on_control;
		o.on_subscribed = NULL;
		o.on_state = NULL;
		s->ctl = rlink_new(&o);
		rlink_subscribe(s->ctl, ctl.buf, ctl.len);
		rlink_subscribe(s->ctl, own.buf, own.len);
		s->heard_ms = now();
	}
	jw_free(&ctl);
	jw_free(&own);
	jw_free(&anchor);
	node_on_listen(on_listen, NULL);
	registry_write();
	ev_timer_init(&B.tick, on_tick, TICK_MS / 1000.0, TICK_MS / 1000.0);
	ev_timer_start(w->loop, &B.tick);
	log_info("broker: node %s on %u Redis shard(s), prefix \"%s\"", B.uid, B.cf.nshards, B.cf.prefix);
	return RT_OK;
}

bool broker_health(char *why, size_t n)
{
	for (unsigned i = 0; B.w != NULL && i < B.cf.nshards; i++) {
		const struct shard *s = &B.sh[i];
		const char *what = !rlink_up(s->cmd) ? "command" : !rlink_mode_known(s->cmd) ? "cluster probe" :
				   !rlink_up(s->sub) ? "PUB/SUB" : !rlink_up(s->ctl) ? "control" : NULL;
		if (what != NULL) {
			snprintf(why, n, "broker: redis shard %s: %s link %s", redis_addr_str(&B.cf.shard[i]), what,
				 *rlink_error(s->cmd) && !rlink_up(s->cmd) ? rlink_error(s->cmd) : "not ready");
			return false;
		}
	}
	return true;
}

void broker_stop(struct worker *w)
{
	(void)w;
	if (B.w == NULL)
		return;
	/* Gone at once from the others' info (§6.3), as Centrifugo on exit. */
	struct rw_cmd c = { .uid = pstr_c(B.uid), .type = RW_CMD_SHUTDOWN };
	send_command(&c, (struct pstr){ NULL, 0 });
	ack_waiters((struct pstr){ NULL, 0 }, false);
	ev_timer_stop(B.w->loop, &B.tick);
	unlink(B.registry_path);
}
