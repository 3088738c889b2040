/*
 * metrics.c - Prometheus metrics of the whole node (prometheus.enabled), in
 * the text exposition format 0.0.4, at prometheus.handler_prefix.
 *
 * Model: the counters live in the stats segment (shm/stats.h), one block per
 * worker written only by its owner, plus the retired block the master folds
 * reaped workers into. Whichever worker a scrape lands on sums every block
 * in use and the retired one, so any worker answers for the node, and
 * counters never go down across worker restarts and reloads. The sum is
 * taken under the header's fold_seq and retaken when a fold overlapped it.
 * Gauges come from the live blocks only; users and channels, which are not
 * sums (one user on two workers counts once), from the workers' snapshots
 * (node_info), as the info API has them.
 *
 * Names and labels are Centrifugo's where it has them (centrifugo_*, with
 * its un-suffixed counters); rotor's own series are rotor_*. Durations are
 * histograms, not summaries as in Centrifugo: quantiles of several processes
 * cannot be merged, buckets can. A histogram's _count is its +Inf bucket,
 * so the two always agree. Like Go's client, labelled series appear once
 * observed.
 *
 * The endpoint is internal: with http_server.internal_port it is served on
 * that port only.
 */
#include "config.h"
#include "metrics.h"
#include "api.h"
#include "bus.h"
#include "chan.h"
#include "client.h"
#include "conf.h"
#include "conn.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "node.h"
#include "seg.h"
#include "stats.h"
#include "util.h"
#include "worker.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_CTYPE "text/plain; version=0.0.4; charset=utf-8"

static struct {
	char *path;            /* the route added, NULL when disabled */
	struct jw out;         /* the exposition being written */
} X;

/* What a scrape sums: the counters of every block in use and the retired
 * one (folded into SUM as the master folds), the gauges of the live ones. */
struct totals {
	struct stats_block sum;
	uint64_t conns, clients, subs;
	uint64_t inflight[STATS_TRANSPORTS];
};

/* Sums the stats segment of W into T; false when a fold kept overlapping. */
static bool sum_blocks(struct worker *w, struct totals *t)
{
	struct stats_hdr *h = seg_payload(w->stats_seg);
	const struct stats_block *b = stats_blocks(h);

	for (int tries = 0; tries < 100; tries++) {
		uint64_t seq = __atomic_load_n(&h->fold_seq, __ATOMIC_ACQUIRE);
		if (seq & 1)
			continue;
		memset(t, 0, sizeof(*t));
		stats_fold(&t->sum, stats_retired(h));
		for (unsigned i = 0; i < STATS_SLOTS; i++) {
			if (__atomic_load_n(&b[i].pid, __ATOMIC_RELAXED) == 0)
				continue;
			stats_fold(&t->sum, &b[i]);
			stats_fold_proxies(&t->sum, &b[i], 1);
			t->conns += STATS_GET(&b[i], conns_current);
			t->clients += STATS_GET(&b[i], clients);
			t->subs += STATS_GET(&b[i], subs);
			for (unsigned k = 0; k < STATS_TRANSPORTS; k++)
				t->inflight[k] += STATS_GET(&b[i], inflight[k]);
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&h->fold_seq, __ATOMIC_RELAXED) == seq)
			return true;
	}
	return false;
}

/* ---- writing the text format ------------------------------------------------ */

static void put(const char *fmt, ...) ROTOR_PRINTF(1, 2);
static void put(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		jw_raw(&X.out, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

void metrics_escape(struct jw *out, const char *s, bool label)
{
	for (; *s; s++) {
		if (*s == '\\')
			jw_lit(out, "\\\\");
		else if (*s == '\n')
			jw_lit(out, "\\n");
		else if (*s == '"' && label)
			jw_lit(out, "\\\"");
		else
			jw_raw(out, s, 1);
	}
}

static void put_escaped(const char *s, bool label)
{
	metrics_escape(&X.out, s, label);
}

/* Opens family NAME: its HELP and TYPE lines, once, before its samples. */
static void family(const char *name, const char *type, const char *help)
{
	put("# HELP %s ", name);
	put_escaped(help, false);
	put("\n# TYPE %s %s\n", name, type);
}

/* Labels: NULL-terminated name, value pairs, written as {a="x",b="y"}. */
static void put_labels(const char *const *kv)
{
	if (kv == NULL || kv[0] == NULL)
		return;
	jw_lit(&X.out, "{");
	for (size_t i = 0; kv[i] != NULL; i += 2) {
		put("%s%s=\"", i ? "," : "", kv[i]);
		put_escaped(kv[i + 1], true);
		jw_lit(&X.out, "\"");
	}
	jw_lit(&X.out, "}");
}

/* One sample: NAME{LABELS} V. */
static void sample(const char *name, const char *const *labels, uint64_t v)
{
	jw_lit(&X.out, name);
	put_labels(labels);
	put(" %llu\n", (unsigned long long)v);
}

/* A family of one sample without labels. */
static void single(const char *name, const char *type, const char *help, uint64_t v)
{
	family(name, type, help);
	sample(name, NULL, v);
}

/* The samples of one histogram series: cumulative buckets with LABELS plus
 * le, then _sum and _count (= the +Inf bucket). */
static void histogram(const char *name, const char *const *labels, const struct stats_hist *h)
{
	static const uint64_t bounds[STATS_BUCKETS] = STATS_BUCKET_BOUNDS_NS;
	const char *kv[16];
	size_t n = 0;
	uint64_t cum = 0;
	char le[32];

	while (labels && labels[n] && n < ROTOR_ARRAY_LEN(kv) - 3) {
		kv[n] = labels[n];
		n++;
	}
	kv[n] = "le";
	kv[n + 2] = NULL;
	for (unsigned i = 0; i <= STATS_BUCKETS; i++) {
		cum += h->bucket[i];
		if (i < STATS_BUCKETS)
			snprintf(le, sizeof(le), "%g", (double)bounds[i] / 1e9);
		else
			snprintf(le, sizeof(le), "+Inf");
		kv[n + 1] = le;
		put("%s_bucket", name);
		put_labels(kv);
		put(" %llu\n", (unsigned long long)cum);
	}
	put("%s_sum", name);
	put_labels(labels);
	put(" %llu.%09llu\n", (unsigned long long)(h->sum_ns / 1000000000u),
	    (unsigned long long)(h->sum_ns % 1000000000u));
	put("%s_count", name);
	put_labels(labels);
	put(" %llu\n", (unsigned long long)cum);
}

static uint64_t hist_count(const struct stats_hist *h)
{
	uint64_t n = 0;
	for (unsigned i = 0; i <= STATS_BUCKETS; i++)
		n += h->bucket[i];
	return n;
}

/* ---- the families ---------------------------------------------------------- */

/* Client commands by CMD_* - 1 (Centrifugo's method label values). */
static const char *const cmd_names[STATS_CMDS] = {
	"connect", "subscribe", "unsubscribe", "publish", "presence", "presence_stats", "history",
	"rpc", "send", "refresh", "sub_refresh",
};

static const char *const msg_types[STATS_MSGS] = {
	[STATS_MSG_PUBLICATION] = "publication", [STATS_MSG_JOIN] = "join",
	[STATS_MSG_LEAVE] = "leave", [STATS_MSG_CONTROL] = "control",
};

static void count_peer(void *arg, const struct node_info *ni)
{
	(void)ni;
	(*(uint64_t *)arg)++;
}

static void node_families(struct worker *w, const struct totals *t)
{
	struct node_info ni;
	uint64_t nodes = 0;

	node_info(w, &ni);
	node_peers(w, count_peer, &nodes);
	single("centrifugo_node_num_clients", "gauge", "Number of clients connected.", t->clients);
	single("centrifugo_node_num_users", "gauge", "Number of unique users connected.", ni.num_users);
	single("centrifugo_node_num_subscriptions", "gauge", "Number of subscriptions.", t->subs);
	single("centrifugo_node_num_channels", "gauge", "Number of channels with one or more subscribers.", ni.num_channels);
	single("centrifugo_node_num_nodes", "gauge", "Number of nodes in the cluster.", 1 + nodes); /* node_peers: the others */
	family("centrifugo_node_build", "gauge", "Node build info.");
	sample("centrifugo_node_build", (const char *const[]){ "version", PACKAGE_VERSION, NULL }, 1);

	family("centrifugo_node_messages_sent_count", "counter", "Number of messages sent by node to broker.");
	for (unsigned i = 0; i < STATS_MSGS; i++)
		sample("centrifugo_node_messages_sent_count", (const char *const[]){ "type", msg_types[i], NULL },
		       t->sum.n.node_sent[i]);
	family("centrifugo_node_messages_received_count", "counter",
	       "Number of messages received by node from broker.");
	for (unsigned i = 0; i < STATS_MSGS; i++)
		sample("centrifugo_node_messages_received_count", (const char *const[]){ "type", msg_types[i], NULL },
		       t->sum.n.node_recv[i]);
}

static void client_families(const struct totals *t)
{
	char code[16];

	family("centrifugo_client_num_reply_errors", "counter", "Number of errors in replies sent to clients.");
	for (unsigned m = 0; m < STATS_CMDS; m++) {
		for (unsigned k = 0; k < STATS_CODES; k++) {
			if (t->sum.n.reply_err[m][k] == 0)
				continue;
			if (k == STATS_CODE_OTHER)
				snprintf(code, sizeof(code), "other");
			else
				snprintf(code, sizeof(code), "%u", 100 + k);
			sample("centrifugo_client_num_reply_errors",
			       (const char *const[]){ "method", cmd_names[m], "code", code, NULL }, t->sum.n.reply_err[m][k]);
		}
	}
	family("centrifugo_client_command_duration_seconds", "histogram",
	       "Client command duration (until answered or handed to the engine).");
	for (unsigned m = 0; m < STATS_CMDS; m++)
		if (hist_count(&t->sum.n.cmd[m]) > 0)
			histogram("centrifugo_client_command_duration_seconds",
				  (const char *const[]){ "method", cmd_names[m], NULL }, &t->sum.n.cmd[m]);

	family("centrifugo_client_connections_accepted", "counter", "Number of accepted client sessions.");
	for (unsigned i = 0; i < STATS_TRANSPORTS; i++)
		if (t->sum.n.sessions[i] > 0)
			sample("centrifugo_client_connections_accepted",
			       (const char *const[]){ "transport", client_transport_name(i), NULL }, t->sum.n.sessions[i]);
	family("centrifugo_client_connections_inflight", "gauge", "Number of client sessions open.");
	for (unsigned i = 0; i < STATS_TRANSPORTS; i++)
		if (t->sum.n.sessions[i] > 0)
			sample("centrifugo_client_connections_inflight",
			       (const char *const[]){ "transport", client_transport_name(i), NULL }, t->inflight[i]);

	static const struct { const char *name, *help; size_t off; } tr[] = {
		{ "centrifugo_transport_messages_sent", "Number of messages sent to clients.",
		  offsetof(struct stats_counts, t_sent) },
		{ "centrifugo_transport_messages_sent_size", "Bytes of the messages sent to clients.",
		  offsetof(struct stats_counts, t_sent_bytes) },
		{ "centrifugo_transport_messages_received", "Number of commands received from clients.",
		  offsetof(struct stats_counts, t_recv) },
		{ "centrifugo_transport_messages_received_size", "Bytes of the frames received from clients.",
		  offsetof(struct stats_counts, t_recv_bytes) },
	};
	for (size_t f = 0; f < ROTOR_ARRAY_LEN(tr); f++) {
		const uint64_t *v = (const uint64_t *)((const char *)&t->sum.n + tr[f].off);
		family(tr[f].name, "counter", tr[f].help);
		for (unsigned i = 0; i < STATS_TRANSPORTS; i++)
			if (t->sum.n.sessions[i] > 0)
				sample(tr[f].name, (const char *const[]){ "transport", client_transport_name(i), NULL }, v[i]);
	}
}

static void api_families(const struct totals *t)
{
	family("centrifugo_api_command_duration_seconds", "histogram", "Server API command duration.");
	for (unsigned m = 0; m < STATS_API_METHODS; m++)
		if (hist_count(&t->sum.n.api[m]) > 0)
			histogram("centrifugo_api_command_duration_seconds",
				  (const char *const[]){ "protocol", "http", "method", api_method_name(m), NULL },
				  &t->sum.n.api[m]);
	family("rotor_api_command_errors_total", "counter", "Server API commands answered with an error.");
	for (unsigned m = 0; m < STATS_API_METHODS; m++)
		if (hist_count(&t->sum.n.api[m]) > 0)
			sample("rotor_api_command_errors_total",
			       (const char *const[]){ "protocol", "http", "method", api_method_name(m), NULL },
			       t->sum.n.api_err[m]);
}

/* The HTTP proxies' calls by kind (proxy.h's enum proxy_kind order; the
 * type label) and proxy name. A series appears once its proxy was called. */
static const char *const proxy_kinds[STATS_PROXY_KINDS] = {
	"connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc",
};

static void proxy_families(const struct totals *t)
{
	static const char *const names[] = { "centrifugo_proxy_duration_seconds", "centrifugo_proxy_errors",
					     "centrifugo_proxy_inflight_requests" };
	static const char *const types[] = { "histogram", "counter", "gauge" };
	static const char *const help[] = {
		"Duration of proxy calls that were answered or failed (not the ones cancelled when their client left).",
		"Proxy calls without a usable answer: transport error, timeout, an HTTP status not in "
		"status_to_code_transforms, a body that is not a proxy answer or is too large.",
		"Proxy calls waiting for their answer.",
	};
	for (unsigned f = 0; f < ROTOR_ARRAY_LEN(names); f++) {
		family(names[f], types[f], help[f]);
		for (int i = 0; i < STATS_PROXY_NAMES; i++) {
			const struct stats_proxy *e = &t->sum.px[i];
			if (e->name[0] == '\0')
				continue;
			for (int k = 0; k < STATS_PROXY_KINDS; k++) {
				uint64_t calls = hist_count(&e->dur[k]);
				const char *const labels[] = { "protocol", "http", "type", proxy_kinds[k], "name", e->name, NULL };
				if (f == 0 && calls > 0)
					histogram(names[f], labels, &e->dur[k]);
				else if (f == 1 && calls > 0)
					sample(names[f], labels, e->errors[k]);
				else if (f == 2 && (calls > 0 || e->inflight[k] > 0))
					sample(names[f], labels, e->inflight[k]);
			}
		}
	}
}

/* rotor's own: the bus, history, every worker. */
static void rotor_families(struct worker *w, const struct totals *t)
{
	struct bus_stats bs;
	struct ctab_stats ts;
	const struct stats_block *b = stats_blocks(seg_payload(w->stats_seg));
	char slot[16], gen[16];

	single("rotor_connections_accepted_total", "counter", "TCP connections accepted.", t->sum.conns_accepted);
	single("rotor_accept_errors_total", "counter", "Failed accept calls.", t->sum.accept_errors);
	single("rotor_connections", "gauge", "Open TCP connections.", t->conns);

	bus_stats(w->bus, &bs);
	single("rotor_bus_appends_total", "counter", "Records appended to the shared-memory bus.", bs.appends);
	single("rotor_bus_bytes_total", "counter", "Bytes appended to the shared-memory bus.", bs.bytes);
	single("rotor_bus_laps_total", "counter", "Times the bus writer lapped a reader.", bs.laps);
	single("rotor_bus_lost_records_total", "counter", "Bus records workers lost to laps.", t->sum.bus_lost);
	single("rotor_bus_readers", "gauge", "Workers reading the bus.", bs.readers);

	if (w->ctab != NULL) {
		ctab_stats(w->ctab, &ts);
		single("rotor_history_streams", "gauge", "History streams in use.", ts.nused);
		single("rotor_history_streams_max", "gauge", "History streams the table holds.", ts.nstreams);
		single("rotor_history_blocks", "gauge", "Data blocks of the history table.", ts.nblocks);
		single("rotor_history_blocks_free", "gauge", "Free data blocks of the history table.", ts.nfree);
		single("rotor_history_appends_total", "counter", "Publications appended to history.", ts.appends);
		single("rotor_history_evictions_total", "counter", "History streams evicted for room.", ts.evictions);
	}

	/* Per worker (live blocks; the broker is worker="broker"). */
	static const struct { const char *name, *type, *help; } per[] = {
		{ "rotor_worker_connections", "gauge", "Open TCP connections of a worker." },
		{ "rotor_worker_clients", "gauge", "Client sessions of a worker that completed connect." },
		{ "rotor_worker_subscriptions", "gauge", "Subscriptions of a worker's clients." },
		{ "rotor_worker_engine_up", "gauge",
		  "1 when a worker's engine (its Redis links; the broker's) serves, 0 when not, as last seen." },
	};
	for (size_t f = 0; f < ROTOR_ARRAY_LEN(per); f++) {
		family(per[f].name, per[f].type, per[f].help);
		for (unsigned i = 0; i < STATS_SLOTS; i++) {
			if (__atomic_load_n(&b[i].pid, __ATOMIC_RELAXED) <= 0 ||
			    __atomic_load_n(&b[i].state, __ATOMIC_RELAXED) == 0)
				continue;
			int32_t s = __atomic_load_n(&b[i].slot, __ATOMIC_RELAXED);
			if (s == STATS_SLOT_BROKER)
				snprintf(slot, sizeof(slot), "broker");
			else
				snprintf(slot, sizeof(slot), "%d", (int)s);
			snprintf(gen, sizeof(gen), "%u", (unsigned)__atomic_load_n(&b[i].gen, __ATOMIC_RELAXED));
			uint64_t v = f == 0 ? STATS_GET(&b[i], conns_current)
				   : f == 1 ? STATS_GET(&b[i], clients)
				   : f == 2 ? STATS_GET(&b[i], subs)
				   : STATS_GET(&b[i], engine) != STATS_ENGINE_DOWN;
			sample(per[f].name, (const char *const[]){ "worker", slot, "generation", gen, NULL }, v);
		}
	}
}

/* GET <prometheus.handler_prefix>: the node's metrics. */
static void metrics_handler(struct http_req *req, void *arg)
{
	struct worker *w = req->conn->w;
	struct totals t;

	(void)arg;
	if (w->stats_seg == NULL || !sum_blocks(w, &t)) {
		http_respond(req, 503, "text/plain; charset=utf-8", "stats segment busy\n", 19);
		return;
	}
	X.out.len = 0;
	node_families(w, &t);
	client_families(&t);
	api_families(&t);
	proxy_families(&t);
	rotor_families(w, &t);
	http_respond(req, 200, METRICS_CTYPE, X.out.buf, X.out.len);
}

void metrics_reconfigure(struct worker *w)
{
	const char *path = json_string_value(conf_get(w->conf, "prometheus.handler_prefix"));

	if (X.path != NULL) {
		http_route_remove(X.path, HTTP_ROUTE_EXACT | HTTP_ROUTE_INTERNAL);
		free(X.path);
		X.path = NULL;
	}
	if (!json_is_true(conf_get(w->conf, "prometheus.enabled")))
		return;
	if (path == NULL || *path == '\0')
		path = "/metrics";
	if (http_route_add(path, HTTP_ROUTE_EXACT | HTTP_ROUTE_INTERNAL, HTTP_METHODS_ANY, metrics_handler, NULL)
	    == RT_OK)
		X.path = xstrdup(path);
	else
		log_warn("prometheus.handler_prefix %s: path already taken by another handler", path);
}
