/*
 * main.c - rotor-bench: command line, the parent's choreography, the report.
 *
 * The parent starts rotord (--rotord) or measures a running one (--url,
 * --pid), forks the generator processes (gen.c) after mapping the shared
 * region, waits for every one to report READY, samples the server, sends
 * GO with absolute instants (start, start + warm-up, + duration), samples
 * the server's CPU at the start and end of the measured window, collects
 * the results, waits for the generators to exit (they close every
 * connection first), samples memory once more and stops its rotord. It
 * prints a human summary and, last, one JSON line.
 *
 * Everything is bounded: setup by --setup-timeout, the run by --duration,
 * the drain by --drain; a generator that does not answer in time is killed
 * by its pid. SIGINT/SIGTERM end the run early, with a report.
 */
#include "backend.h"
#include "bench.h"
#include "pstat.h"
#include "rd.h"
#include "sock.h"
#include "tp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const scen_names[] = { "fanout", "channels", "burst", "idle", "connect", "api",
					  "emulation", "handshake", "rpc" };
#define NSCEN (sizeof(scen_names) / sizeof(scen_names[0]))
static const char *const fmt_names[] = { "json", "protobuf", "mixed" };

static volatile sig_atomic_t M_stop;
static struct backend M_backend;        /* --proxy: the backend (backend.h) */
static struct backend_counts M_bcounts; /* its counts, once stopped */

static void on_signal(int sig)
{
	(void)sig;
	M_stop = 1;
}

/* The members of channel.without_namespace that the options call for. */
static const char *chan_opts(const struct bench_opts *o)
{
	static char buf[512];
	snprintf(buf, sizeof(buf), "%s%s%s",
		 o->scen == SC_EMULATION ? "\"presence\": true, \"allow_presence_for_subscriber\": true" : "",
		 o->history ? ", \"history_size\": 100, \"history_ttl\": \"300s\", \"force_positioning\": true" : "",
		 o->delta ? ", \"allowed_delta_types\": [\"fossil\"], \"delta_publish\": true" : "");
	return buf[0] == ',' ? buf + 2 : buf;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: rotor-bench SCENARIO [options]\n"
"scenarios:\n"
"  fanout    N subscribers on one channel, publications through the API\n"
"  channels  N subscribers over M channels, publications round-robin\n"
"  burst     fan-out with B publications per API request (/api/batch)\n"
"  idle      N connections, one subscription each: rotord's memory and CPU\n"
"  connect   connect + subscribe storm\n"
"  api       API publishes over keep-alive connections\n"
"  emulation N http_stream (or sse) connections, each sending presence_stats\n"
"            commands through POST /emulation one after another\n"
"  handshake a storm of bare handshakes: TCP connect, with --tls the TLS\n"
"            handshake, close; no HTTP, no transport\n"
"  rpc       N connections, each sending RPC calls one after another (with\n"
"            --proxy: through the RPC proxy to the benchmark's backend)\n"
"server:\n"
"  --rotord PATH        start this rotord (temporary config, free port)\n"
"  --workers N          its workers (1)\n"
"  --cpu-server LIST    pin it to these CPUs (e.g. 0 or 0-1); with --url: the\n"
"                       CPUs it was pinned to, for the per-CPU figures\n"
"  --url URL            a running server instead (http://127.0.0.1:8000)\n"
"  --api-key KEY        its http_api.key\n"
"  --api-url URL        publish through this server instead (another node of\n"
"                       the same Redis engine: deliveries cross nodes)\n"
"  --pid PID            its master's pid, for CPU and memory from /proc\n"
"  --token-secret S     sign HS256 connection tokens with S (with --rotord:\n"
"                       configured instead of client.insecure)\n"
"  --proxy              with --rotord: connect without a token, through the\n"
"                       connect proxy, and route RPC through the RPC proxy, to\n"
"                       a backend of rotor-bench's own (backend.h) on a free\n"
"                       port; its TCP connections are counted\n"
"  --cpu-backend LIST   pin that backend to these CPUs\n"
"  --history            with --rotord: channels keep history (100 for 300 s)\n"
"                       and subscribers are positioned\n"
"  --delta              --history, and subscribers negotiate fossil deltas,\n"
"                       which the channels allow and publications use\n"
"                       (delta_publish); every delta is applied and checked\n"
"  --tls                every connection (clients, API publishers, POSTs)\n"
"                       speaks TLS; the server's certificate is not verified.\n"
"                       With --rotord: a self-signed ECDSA P-256 certificate\n"
"                       and http_server.tls in its config. An https:// --url\n"
"                       implies it\n"
"load:\n"
"  --transport T        the connections' transport: websocket (default),\n"
"                       http_stream, sse, sockjs-websocket, sockjs-xhr-streaming\n"
"  --deflate            websocket: negotiate permessage-deflate and inflate what\n"
"                       arrives (with --rotord: websocket.compression on)\n"
"  --post-conns K       keep-alive connections per process for the POSTs of\n"
"                       http_stream, sse and sockjs-xhr-streaming (16; emulation:\n"
"                       one per connection, at most 1024)\n"
"  --post-pipeline D    POSTs in flight on each of them (1: no pipelining)\n"
"  -n, --conns N        subscribers / connections in all\n"
"  -m, --channels M     channels\n"
"  --format F           json, protobuf or mixed (json)\n"
"  --rate R             publications per second; 0: as fast as --window allows\n"
"  --burst B            publications per API request\n"
"  --window W           publications in flight (not yet delivered everywhere)\n"
"                       before a max-rate publisher waits; 0: no limit\n"
"  --size BYTES         payload size (100)\n"
"  --pub-conns K        API connections per publishing process\n"
"  --pipeline D         requests in flight per API connection (1)\n"
"  --concurrency C      handshakes in flight per process\n"
"  --churn              connect: close each connection once subscribed\n"
"  --prefix P           channel names are P0, P1... (bench)\n"
"generator:\n"
"  --procs P            generator processes (enough for the fd limit)\n"
"  --cpu LIST           pin them (round-robin over the list)\n"
"  --src-addrs K        bind to 127.0.0.1..127.0.0.K (8; 0: no binding)\n"
"  --no-uring           read with recvmsg(2), not through io_uring (io_uring\n"
"                       is used only if it passes a self-check at start and\n"
"                       left for recvmsg if it stalls during the run)\n"
"  --uring-eventfd      diagnosis: sleep in epoll_wait on the ring's eventfd,\n"
"                       not in io_uring_enter: late wake-ups on Linux 6.18\n"
"  --no-uring-check     diagnosis: no self-check, only the stall watchdog\n"
"time (seconds):\n"
"  -d, --duration S     measured window\n"
"  --warmup S           before the window\n"
"  --drain S            most to wait for deliveries after it (3)\n"
"  --setup-timeout S    most for connecting and subscribing\n"
"  -q, --quiet          only the JSON line\n"
"defaults: fanout -n 10000 -m 1; channels -n 10000 -m n/10 --burst 10;\n"
"  burst -n 1000 -m 1 --burst 10; idle, connect and handshake -n 10000 -m n,\n"
"  -d 30, no warm-up (handshake: --churn); api --pub-conns 8, no subscribers;\n"
"  emulation -n 100 -m n, --transport http_stream; otherwise -d 10, --warmup 1,\n"
"  --window max(8, 4 x burst), --concurrency 64, --pub-conns 1\n"
"exit status: 0 a clean run, 1 errors (counted in the report), 2 usage\n");
}

/* Parses "1", "0-3", "0,2-3" into cpus. Returns the count or -1. */
static int parse_cpus(const char *s, int *cpus, int max)
{
	int n = 0;
	while (*s) {
		char *e;
		long a = strtol(s, &e, 10), b;
		if (e == s || a < 0 || a > 1023)
			return -1;
		b = a;
		if (*e == '-') {
			s = e + 1;
			b = strtol(s, &e, 10);
			if (e == s || b < a || b > 1023)
				return -1;
		}
		for (long c = a; c <= b; c++) {
			if (n == max)
				return -1;
			cpus[n++] = (int)c;
		}
		if (*e == ',')
			e++;
		else if (*e)
			return -1;
		s = e;
	}
	return n;
}

static int parse_url(const char *url, struct bench_opts *o)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	char host[64];
	size_t hl = strcspn(p, ":/");
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, p, hl);
	host[hl] = 0;
	int port = 8000;
	if (p[hl] == ':')
		port = atoi(p + hl + 1);
	if (port <= 0 || port > 65535)
		return -1;
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, NULL, &hints, &ai) != 0)
		return -1;
	o->dst = *(struct sockaddr_in *)ai->ai_addr;
	o->dst.sin_port = htons((uint16_t)port);
	freeaddrinfo(ai);
	snprintf(o->host, sizeof(o->host), "%s:%d", host, port);
	return 0;
}

static void pin_self(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		fprintf(stderr, "rotor-bench: sched_setaffinity(%d) failed: %s\n", cpu, strerror(errno));
}

static void sleep_until(uint64_t t)
{
	uint64_t now = bench_now();
	if (now >= t)
		return;
	struct timespec ts = { (time_t)((t - now) / 1000000000u), (long)((t - now) % 1000000000u) };
	nanosleep(&ts, NULL);
}

/* ---- the run ---------------------------------------------------------------- */

struct child {
	pid_t pid;
	int ctl, res;           /* our ends */
	bool ready, done;
	struct bench_result r;
};

/* Reads exactly n bytes, or returns -1 (end of file or error). */
static int read_all(int fd, void *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p = (uint8_t *)p + r;
		n -= (size_t)r;
	}
	return 0;
}

/* Reads one message of child c (its fd is readable). Returns 0 or -1. */
static int read_msg(struct child *c)
{
	if (read_all(c->res, &c->r, BENCH_READY_SIZE) < 0)
		return -1;
	if (c->r.type == MSG_READY) {
		c->ready = true;
		return 0;
	}
	if (c->r.type != MSG_RESULT ||
	    read_all(c->res, (uint8_t *)&c->r + BENCH_READY_SIZE, sizeof(c->r) - BENCH_READY_SIZE) < 0)
		return -1;
	c->ready = c->done = true;
	return 0;
}

static void send_ctl(struct child *ch, int n, const struct bench_go *g)
{
	for (int i = 0; i < n; i++)
		if (!ch[i].done && write(ch[i].ctl, g, sizeof(*g)) != sizeof(*g))
			fprintf(stderr, "rotor-bench: generator %d does not listen\n", i);
}

/* Waits until every child has `ready` (want_done: `done`), or deadline,
 * or a signal (which sends them "stop" once). Returns how many are not
 * there yet. */
static int wait_children(struct child *ch, int n, bool want_done, uint64_t deadline)
{
	static bool stop_sent;
	for (;;) {
		struct pollfd pf[BENCH_MAX_PROCS];
		int idx[BENCH_MAX_PROCS], np = 0, missing = 0;
		for (int i = 0; i < n; i++) {
			if (want_done ? ch[i].done : ch[i].ready)
				continue;
			missing++;
			if (ch[i].res >= 0) {
				pf[np].fd = ch[i].res;
				pf[np].events = POLLIN;
				idx[np++] = i;
			}
		}
		if (missing == 0 || np == 0)
			return missing;
		if (M_stop && !stop_sent) {
			struct bench_go stop = { 0, 0, 0 };
			send_ctl(ch, n, &stop);
			stop_sent = true;
		}
		uint64_t now = bench_now();
		if (now >= deadline)
			return missing;
		int ms = (int)((deadline - now) / 1000000u) + 1;
		if (poll(pf, (nfds_t)np, ms > 100 ? 100 : ms) < 0 && errno != EINTR)
			return missing;
		for (int k = 0; k < np; k++)
			if (pf[k].revents && read_msg(&ch[idx[k]]) < 0) {
				fprintf(stderr, "rotor-bench: generator %d ended without a result\n", idx[k]);
				close(ch[idx[k]].res);
				ch[idx[k]].res = -1;
			}
	}
}

/* ---- report ----------------------------------------------------------------- */

static void fmt_count(char *b, size_t n, double v)
{
	if (v >= 1e6)
		snprintf(b, n, "%.2fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(b, n, "%.1fk", v / 1e3);
	else
		snprintf(b, n, "%.0f", v);
}

static void fmt_ns(char *b, size_t n, uint64_t ns)
{
	if (ns >= 1000000000u)
		snprintf(b, n, "%.2f s", (double)ns / 1e9);
	else if (ns >= 1000000u)
		snprintf(b, n, "%.2f ms", (double)ns / 1e6);
	else
		snprintf(b, n, "%.1f us", (double)ns / 1e3);
}

static void print_lat(const char *what, const struct lat *h)
{
	char a[32], b[32], c[32], d[32];
	if (h->n == 0)
		return;
	fmt_ns(a, sizeof(a), lat_quantile(h, 0.5));
	fmt_ns(b, sizeof(b), lat_quantile(h, 0.9));
	fmt_ns(c, sizeof(c), lat_quantile(h, 0.99));
	fmt_ns(d, sizeof(d), h->max);
	printf("  %-11s p50 %s  p90 %s  p99 %s  max %s  (%llu samples)\n", what, a, b, c, d,
	       (unsigned long long)h->n);
}

static void json_lat(const char *name, const struct lat *h)
{
	printf(",\"%s\":{\"n\":%llu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f,\"mean\":%.1f}",
	       name, (unsigned long long)h->n, lat_quantile(h, 0.5) / 1e3, lat_quantile(h, 0.9) / 1e3,
	       lat_quantile(h, 0.99) / 1e3, h->max / 1e3, h->n ? (double)h->sum / (double)h->n / 1e3 : 0.0);
}

struct samples {
	bool have;
	struct pstat before, ready, start, end, closed;
	bool sys;
	struct pstat_sys sys0, sys1;    /* the machine at the window's ends */
};

static void json_mem(const char *name, const struct pstat *p)
{
	printf(",\"%s\":{\"rss_kb\":%ld,\"pss_kb\":%ld,\"pss_own_kb\":%ld,\"cpu_s\":%.2f,\"procs\":[",
	       name, p->rss_kb, p->pss_kb, p->own_kb, p->cpu_s);
	for (int i = 0; i < p->n; i++)
		printf("%s{\"pid\":%d,\"rss_kb\":%ld,\"pss_kb\":%ld,\"pss_own_kb\":%ld,\"cpu_s\":%.2f}",
		       i ? "," : "", (int)p->p[i].pid, p->p[i].rss_kb, p->p[i].pss_kb, p->p[i].own_kb,
		       p->p[i].cpu_s);
	printf("]}");
}

/* Prints the summary and the JSON line; returns the run's error count. */
static uint64_t report(const struct bench_opts *o, const struct child *ch, const struct bench_shared *sh,
		   const struct samples *s, pid_t server_pid, double setup_s, double window_s,
		   int workers, const int *cpu_server, int ncpu_server)
{
	struct bench_result t;
	memset(&t, 0, sizeof(t));
	double gen_cpu = 0;
	int nres = 0, gen_uring = 0, gen_recvmsg = 0;
	uint32_t stalls = 0, check_us = 0;
	const char *fallback = NULL;
	for (int i = 0; i < o->procs; i++) {
		const struct bench_result *r = &ch[i].r;
		if (!ch[i].done)
			continue;
		nres++;
		t.subscribed += r->subscribed;
		t.setup_failed += r->setup_failed;
		t.deliveries_all += r->deliveries_all;
		t.deliveries_win += r->deliveries_win;
		t.out_of_order += r->out_of_order;
		t.pubs_all += r->pubs_all;
		t.pubs_win += r->pubs_win;
		t.reqs_win += r->reqs_win;
		t.resp_ok += r->resp_ok;
		t.resp_err += r->resp_err;
		t.storm_done += r->storm_done;
		t.storm_win += r->storm_win;
		t.cmds_all += r->cmds_all;
		t.cmds_win += r->cmds_win;
		t.err_send += r->err_send;
		t.err_connect += r->err_connect;
		t.err_handshake += r->err_handshake;
		t.err_reply += r->err_reply;
		t.err_closed += r->err_closed;
		t.err_unsub += r->err_unsub;
		t.err_proto += r->err_proto;
		t.pings += r->pings;
		t.deltas += r->deltas;
		gen_cpu += r->cpu_s;
		gen_uring += r->reads.uring != 0;
		gen_recvmsg += r->reads.recvmsg != 0;
		stalls += r->reads.stalls;
		if (r->reads.check_us > check_us)
			check_us = r->reads.check_us;
		if (fallback == NULL)
			fallback = sock_fallback_name(r->reads.fallback);
		for (int k = 0; k < BENCH_NCODES && r->codes[k].n; k++)
			for (int j = 0; j < BENCH_NCODES; j++)
				if (t.codes[j].code == r->codes[k].code || t.codes[j].n == 0) {
					t.codes[j].code = r->codes[k].code;
					t.codes[j].n += r->codes[k].n;
					break;
				}
		lat_merge(&t.lat_deliv, &r->lat_deliv);
		lat_merge(&t.lat_arrive, &r->lat_arrive);
		lat_merge(&t.lat_api, &r->lat_api);
		lat_merge(&t.lat_conn, &r->lat_conn);
		lat_merge(&t.lat_cmd, &r->lat_cmd);
	}
	const char *reads = gen_uring == 0 ? "recvmsg" : gen_recvmsg == 0 ? "io_uring" : "mixed";
	uint64_t expected = atomic_load(&sh->expected), delivered = 0;
	for (int i = 0; i < o->procs; i++)
		delivered += atomic_load(&sh->slot[i].delivered);
	uint64_t lost = expected > delivered ? expected - delivered : 0;
	uint64_t errors = t.err_connect + t.err_handshake + t.err_reply + t.err_closed + t.err_unsub +
			  t.err_proto + t.err_send + t.resp_err + lost + (uint64_t)(o->procs - nres);
	double w = window_s > 0 ? window_s : 1e-9;
	double srv_cpu = s->have ? pstat_cpu_delta(&s->start, &s->end) : 0;
	double deliv_rate = (double)t.deliveries_win / w;
	long conns = bench_storm(o->scen) && o->churn ? 0 : (long)t.subscribed;
	double pss_per = conns > 0 && s->have ? (double)(s->end.own_kb - s->before.own_kb) * 1024.0 / conns : 0;
	double pss_all_per = conns > 0 && s->have ? (double)(s->end.pss_kb - s->before.pss_kb) * 1024.0 / conns : 0;
	double rss_per = conns > 0 && s->have ? (double)(s->end.rss_kb - s->before.rss_kb) * 1024.0 / conns : 0;
	double cpu_per_conn = conns > 0 ? srv_cpu / w / conns * 1e6 : 0;
	/* CPU the machine spent on anything but rotord and the generators.
	 * Softirq work (loopback TCP) is charged to whichever process it
	 * interrupted, so it is mostly inside their figures already. */
	double sys_busy = s->sys ? s->sys1.busy - s->sys0.busy : 0;
	double others = s->sys ? sys_busy - srv_cpu - gen_cpu : 0;
	if (others < 0)
		others = 0;
	/* rotord's own CPUs when it is pinned: everything they did, whoever
	 * it was charged to. */
	double core_busy = 0, core_softirq = 0;
	for (int i = 0; s->sys && i < ncpu_server; i++)
		if (cpu_server[i] < PSTAT_CPUS) {
			core_busy += s->sys1.cpu_busy[cpu_server[i]] - s->sys0.cpu_busy[cpu_server[i]];
			core_softirq += s->sys1.cpu_softirq[cpu_server[i]] - s->sys0.cpu_softirq[cpu_server[i]];
		}
	bool cores = s->sys && ncpu_server > 0;

	if (!o->quiet) {
		char a[32], b[32];
		printf("rotor-bench %s: %ld connections (%s over %s%s) over %ld channel%s, %d process%s, "
		       "%.1f s window after %.1f s warm-up\n",
		       scen_names[o->scen], o->conns, fmt_names[o->fmt], o->tp->name, o->tls ? " over TLS" : "",
		       o->channels,
		       o->channels == 1 ? "" : "s", o->procs, o->procs == 1 ? "" : "es",
		       window_s, o->warmup);
		if (!bench_storm(o->scen) && o->conns > 0)
			printf("  %-11s %llu subscribed in %.2f s, %llu failed\n", "setup",
			       (unsigned long long)t.subscribed, setup_s, (unsigned long long)t.setup_failed);
		if (t.pubs_all) {
			fmt_count(a, sizeof(a), (double)t.pubs_win / w);
			fmt_count(b, sizeof(b), (double)t.reqs_win / w);
			printf("  %-11s %llu publications in the window: %s/s in %s API requests/s "
			       "(%d per request, %d conn%s x %d in flight), %llu failed\n", "publish",
			       (unsigned long long)t.pubs_win, a, b, o->burst, o->pub_conns,
			       o->pub_conns == 1 ? "" : "s", o->pipeline, (unsigned long long)t.resp_err);
		}
		if (t.deliveries_all) {
			fmt_count(a, sizeof(a), deliv_rate);
			printf("  %-11s %llu in the window: %s/s; lost %llu, out of order %llu", "deliveries",
			       (unsigned long long)t.deliveries_win, a, (unsigned long long)lost,
			       (unsigned long long)t.out_of_order);
			if (o->delta)
				printf("; %llu of %llu as deltas, each applied", (unsigned long long)t.deltas,
				       (unsigned long long)t.deliveries_all);
			printf("\n");
		}
		print_lat("latency", &t.lat_deliv);
		print_lat("arrival", &t.lat_arrive);
		print_lat("api rtt", &t.lat_api);
		if (bench_commands(o->scen)) {
			fmt_count(a, sizeof(a), (double)t.cmds_win / w);
			printf("  %-11s %llu replies in the window: %s/s (%s, one in flight per connection", "commands",
			       (unsigned long long)t.cmds_win, a, o->scen == SC_RPC ? "rpc" : "presence_stats");
			if (o->tp->posts)
				printf("; POSTs over %d conn%s x %d in flight per process", o->post_conns,
				       o->post_conns == 1 ? "" : "s", o->post_pipeline);
			printf(")\n");
			print_lat("command", &t.lat_cmd);
		}
		if (bench_storm(o->scen)) {
			fmt_count(a, sizeof(a), (double)t.storm_win / w);
			printf("  %-11s %llu %s: %s/s%s, %llu failed\n", "connects", (unsigned long long)t.storm_done,
			       o->scen == SC_HANDSHAKE ? (o->tls ? "TLS handshakes" : "TCP connects") :
			       "connected + subscribed", a, o->churn ? " (each closed again)" : "",
			       (unsigned long long)t.setup_failed);
			print_lat("connect", &t.lat_conn);
		}
		if (o->proxy)
			printf("  %-11s %llu requests answered over %llu TCP connections (at most %llu open "
			       "at once)\n", "backend", (unsigned long long)M_bcounts.requests,
			       (unsigned long long)M_bcounts.accepted, (unsigned long long)M_bcounts.max_open);
		if (s->have) {
			printf("  %-11s pid %d, %d process%s (master + %d workers): CPU %.2f s in the window "
			       "(%.0f%% of one core)", "rotord", (int)server_pid, s->end.n,
			       s->end.n == 1 ? "" : "es", workers, srv_cpu, srv_cpu / w * 100);
			double count = t.deliveries_win ? (double)t.deliveries_win : t.reqs_win ? (double)t.reqs_win :
				       bench_storm(o->scen) ? (double)t.storm_win :
				       bench_commands(o->scen) ? (double)t.cmds_win : 0;
			const char *per = t.deliveries_win ? "delivery" : t.reqs_win ? "request" :
					  bench_commands(o->scen) ? "command" : "connect";
			if (count > 0)
				printf(", %.2f us per %s", srv_cpu / count * 1e6, per);
			if (cores) {
				printf("\n  %-11s its CPU%s %.0f%% busy (%.0f%% in softirq)", "", ncpu_server > 1 ? "s" : "",
				       core_busy / w * 100, core_softirq / w * 100);
				if (count > 0)
					printf(": %.2f us per %s", core_busy / count * 1e6, per);
			}
			printf("\n  %-11s PSS %.1f MB before, %.1f MB set up, %.1f MB at the end, %.1f MB after "
			       "closing\n  %-11s (without shared libraries %.1f / %.1f / %.1f / %.1f MB; "
			       "RSS %.1f / %.1f / %.1f / %.1f MB)\n", "memory",
			       s->before.pss_kb / 1024.0, s->ready.pss_kb / 1024.0, s->end.pss_kb / 1024.0,
			       s->closed.pss_kb / 1024.0, "", s->before.own_kb / 1024.0, s->ready.own_kb / 1024.0,
			       s->end.own_kb / 1024.0, s->closed.own_kb / 1024.0, s->before.rss_kb / 1024.0,
			       s->ready.rss_kb / 1024.0, s->end.rss_kb / 1024.0, s->closed.rss_kb / 1024.0);
			if (conns > 0 && (o->scen == SC_IDLE || bench_storm(o->scen)))
				printf("  %-11s %.0f bytes PSS without shared libraries (%.0f with), %.0f bytes "
				       "RSS per connection; CPU %.3f us per connection per second\n", "per conn",
				       pss_per, pss_all_per, rss_per, cpu_per_conn);
		}
		printf("  %-11s CPU %.2f s in the window (%.0f%% of one core, %d process%s, reading %s), "
		       "%llu server pings answered\n", "generator", gen_cpu, gen_cpu / w * 100, o->procs,
		       o->procs == 1 ? "" : "es", reads, (unsigned long long)t.pings);
		if (fallback)
			printf("  %-11s io_uring was asked for, recvmsg ran: %s%s\n", "", fallback,
			       strcmp(fallback, "kernel") == 0 ? " (no io_uring or provided buffers)" :
			       strcmp(fallback, "self-check") == 0 ? " (a receive's wake-up came late)" :
			       " (completions waited without a wake-up during the run)");
		if (s->sys)
			printf("  %-11s %.2f of %d CPUs busy in the window (softirq %.2f), %.2f of it not rotord's "
			       "or the generator's; steal %.2f\n", "machine", sys_busy / w, s->sys1.ncpu,
			       (s->sys1.softirq - s->sys0.softirq) / w, others / w,
			       (s->sys1.steal - s->sys0.steal) / w);
		if (others / w > 0.1)
			printf("  %-11s other processes used the CPUs during the window: "
			       "the numbers are disturbed\n", "warning");
		if (gen_cpu / w > 0.9 * (o->ncpus ? (o->ncpus < o->procs ? o->ncpus : o->procs) : o->procs))
			printf("  %-11s the generator was saturated: these numbers may be its limit\n", "warning");
		if (errors == 0) {
			printf("  %-11s none\n", "errors");
		} else {
			printf("  %-11s connect %llu, handshake %llu, reply %llu, closed %llu, unsubscribed %llu, "
			       "protocol %llu, send %llu, api %llu, lost %llu, generators lost %d", "errors",
			       (unsigned long long)t.err_connect, (unsigned long long)t.err_handshake,
			       (unsigned long long)t.err_reply, (unsigned long long)t.err_closed,
			       (unsigned long long)t.err_unsub, (unsigned long long)t.err_proto,
			       (unsigned long long)t.err_send, (unsigned long long)t.resp_err,
			       (unsigned long long)lost, o->procs - nres);
			for (int j = 0; j < BENCH_NCODES && t.codes[j].n; j++)
				printf("%s%u x%u", j ? ", " : "; codes ", t.codes[j].code, t.codes[j].n);
			printf("\n");
		}
	}

	printf("{\"scenario\":\"%s\",\"transport\":\"%s\",\"tls\":%s,\"deflate\":%s,\"format\":\"%s\",\"conns\":%ld,"
	       "\"channels\":%ld,\"procs\":%d,\"workers\":%d,\"size\":%d,\"burst\":%d,\"rate\":%g,\"window_s\":%.3f,\"warmup_s\":%.3f,"
	       "\"setup_s\":%.3f,\"subscribed\":%llu,\"setup_failed\":%llu,"
	       "\"published\":%llu,\"publications_per_s\":%.1f,\"api_requests\":%llu,\"api_requests_per_s\":%.1f,"
	       "\"api_ok\":%llu,\"api_errors\":%llu,"
	       "\"deliveries\":%llu,\"deliveries_per_s\":%.1f,\"deliveries_all\":%llu,\"expected\":%llu,"
	       "\"lost\":%llu,\"out_of_order\":%llu,\"connects\":%llu,\"connects_per_s\":%.1f,\"pings\":%llu",
	       scen_names[o->scen], o->tp->name, o->tls ? "true" : "false", o->deflate ? "true" : "false",
	       fmt_names[o->fmt], o->conns, o->channels, o->procs, workers, o->size,
	       o->burst, o->rate, window_s, o->warmup, setup_s, (unsigned long long)t.subscribed,
	       (unsigned long long)t.setup_failed, (unsigned long long)t.pubs_win, (double)t.pubs_win / w,
	       (unsigned long long)t.reqs_win, (double)t.reqs_win / w, (unsigned long long)t.resp_ok,
	       (unsigned long long)t.resp_err, (unsigned long long)t.deliveries_win, deliv_rate,
	       (unsigned long long)t.deliveries_all, (unsigned long long)expected, (unsigned long long)lost,
	       (unsigned long long)t.out_of_order, (unsigned long long)t.storm_done,
	       (double)t.storm_win / w, (unsigned long long)t.pings);
	json_lat("latency_us", &t.lat_deliv);
	json_lat("arrival_us", &t.lat_arrive);
	json_lat("api_rtt_us", &t.lat_api);
	json_lat("connect_us", &t.lat_conn);
	printf(",\"commands\":%llu,\"commands_per_s\":%.1f,\"commands_all\":%llu",
	       (unsigned long long)t.cmds_win, (double)t.cmds_win / w, (unsigned long long)t.cmds_all);
	json_lat("command_us", &t.lat_cmd);
	if (o->delta)
		printf(",\"deltas\":%llu", (unsigned long long)t.deltas);
	if (o->proxy)
		printf(",\"backend\":{\"requests\":%llu,\"connections\":%llu,\"max_open\":%llu}",
		       (unsigned long long)M_bcounts.requests, (unsigned long long)M_bcounts.accepted,
		       (unsigned long long)M_bcounts.max_open);
	printf(",\"errors\":{\"total\":%llu,\"connect\":%llu,\"handshake\":%llu,\"reply\":%llu,"
	       "\"closed\":%llu,\"unsubscribed\":%llu,\"protocol\":%llu,\"send\":%llu,\"api\":%llu,"
	       "\"lost\":%llu,\"generators\":%d,\"codes\":{",
	       (unsigned long long)errors, (unsigned long long)t.err_connect,
	       (unsigned long long)t.err_handshake, (unsigned long long)t.err_reply,
	       (unsigned long long)t.err_closed, (unsigned long long)t.err_unsub,
	       (unsigned long long)t.err_proto, (unsigned long long)t.err_send, (unsigned long long)t.resp_err,
	       (unsigned long long)lost,
	       o->procs - nres);
	for (int j = 0; j < BENCH_NCODES && t.codes[j].n; j++)
		printf("%s\"%u\":%u", j ? "," : "", t.codes[j].code, t.codes[j].n);
	printf("}}");
	printf(",\"generator\":{\"cpu_s\":%.3f,\"cpu_pct\":%.1f,\"reads\":\"%s\",\"fallback\":", gen_cpu,
	       gen_cpu / w * 100, reads);
	if (fallback)
		printf("\"%s\"", fallback);
	else
		printf("null");
	printf(",\"uring_check_us\":%u,\"uring_stalls\":%u}", check_us, stalls);
	if (s->sys) {
		printf(",\"machine\":{\"cpus\":%d,\"busy_s\":%.3f,\"others_s\":%.3f,\"softirq_s\":%.3f,"
		       "\"steal_s\":%.3f", s->sys1.ncpu, sys_busy, others, s->sys1.softirq - s->sys0.softirq,
		       s->sys1.steal - s->sys0.steal);
		if (cores)
			printf(",\"server_cpus_busy_s\":%.3f,\"server_cpus_softirq_s\":%.3f", core_busy, core_softirq);
		printf("}");
	}
	if (s->have) {
		printf(",\"server\":{\"pid\":%d,\"cpu_s\":%.3f,\"cpu_pct\":%.1f,\"us_per_delivery\":%.3f,"
		       "\"us_per_request\":%.3f,\"us_per_command\":%.3f,\"us_per_connect\":%.3f,"
		       "\"pss_per_conn_b\":%.0f,"
		       "\"pss_all_per_conn_b\":%.0f,\"rss_per_conn_b\":%.0f,\"cpu_us_per_conn_s\":%.4f",
		       (int)server_pid, srv_cpu, srv_cpu / w * 100,
		       t.deliveries_win ? srv_cpu / (double)t.deliveries_win * 1e6 : 0.0,
		       t.reqs_win ? srv_cpu / (double)t.reqs_win * 1e6 : 0.0,
		       t.cmds_win ? srv_cpu / (double)t.cmds_win * 1e6 : 0.0,
		       t.storm_win ? srv_cpu / (double)t.storm_win * 1e6 : 0.0, pss_per, pss_all_per, rss_per,
		       cpu_per_conn);
		json_mem("before", &s->before);
		json_mem("ready", &s->ready);
		json_mem("end", &s->end);
		json_mem("closed", &s->closed);
		printf("}");
	}
	printf("}\n");
	fflush(stdout);
	return errors;
}

/* ---- options ---------------------------------------------------------------- */

enum {
	O_ROTORD = 256, O_WORKERS, O_CPU_SERVER, O_URL, O_API_URL, O_API_KEY, O_PID, O_SECRET, O_FORMAT,
	O_RATE, O_BURST, O_WINDOW, O_SIZE, O_PUB_CONNS, O_PIPELINE, O_CONCURRENCY, O_CHURN,
	O_PREFIX, O_PROCS, O_CPU, O_SRC, O_URING, O_URING_EVENTFD, O_URING_NOCHECK, O_WARMUP, O_DRAIN,
	O_SETUP, O_TRANSPORT, O_POST_CONNS, O_POST_PIPELINE, O_DEFLATE, O_TLS, O_PROXY, O_CPU_BACKEND,
	O_HISTORY, O_DELTA,
};

static const struct option longopts[] = {
	{ "rotord", 1, 0, O_ROTORD }, { "workers", 1, 0, O_WORKERS },
	{ "cpu-server", 1, 0, O_CPU_SERVER }, { "url", 1, 0, O_URL }, { "api-url", 1, 0, O_API_URL },
	{ "api-key", 1, 0, O_API_KEY },
	{ "pid", 1, 0, O_PID }, { "token-secret", 1, 0, O_SECRET }, { "conns", 1, 0, 'n' },
	{ "channels", 1, 0, 'm' }, { "format", 1, 0, O_FORMAT }, { "rate", 1, 0, O_RATE },
	{ "burst", 1, 0, O_BURST }, { "window", 1, 0, O_WINDOW }, { "size", 1, 0, O_SIZE },
	{ "pub-conns", 1, 0, O_PUB_CONNS }, { "pipeline", 1, 0, O_PIPELINE },
	{ "concurrency", 1, 0, O_CONCURRENCY }, { "churn", 0, 0, O_CHURN }, { "prefix", 1, 0, O_PREFIX },
	{ "procs", 1, 0, O_PROCS }, { "cpu", 1, 0, O_CPU }, { "src-addrs", 1, 0, O_SRC },
	{ "no-uring", 0, 0, O_URING }, { "uring-eventfd", 0, 0, O_URING_EVENTFD },
	{ "no-uring-check", 0, 0, O_URING_NOCHECK },
	{ "duration", 1, 0, 'd' }, { "warmup", 1, 0, O_WARMUP }, { "drain", 1, 0, O_DRAIN },
	{ "setup-timeout", 1, 0, O_SETUP }, { "quiet", 0, 0, 'q' }, { "help", 0, 0, 'h' },
	{ "transport", 1, 0, O_TRANSPORT }, { "post-conns", 1, 0, O_POST_CONNS },
	{ "post-pipeline", 1, 0, O_POST_PIPELINE }, { "deflate", 0, 0, O_DEFLATE }, { "tls", 0, 0, O_TLS },
	{ "proxy", 0, 0, O_PROXY }, { "cpu-backend", 1, 0, O_CPU_BACKEND },
	{ "history", 0, 0, O_HISTORY }, { "delta", 0, 0, O_DELTA },
	{ 0, 0, 0, 0 },
};

static void die(const char *msg, const char *arg)
{
	fprintf(stderr, "rotor-bench: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	exit(2);
}

static long num(const char *s, long lo, long hi, const char *what)
{
	char *e;
	long v = strtol(s, &e, 10);
	if (e == s || *e || v < lo || v > hi)
		die(what, s);
	return v;
}

static double fnum(const char *s, double lo, double hi, const char *what)
{
	char *e;
	double v = strtod(s, &e);
	if (e == s || *e || !(v >= lo && v <= hi))
		die(what, s);
	return v;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	memset(&o, 0, sizeof(o));
	const char *rotord = NULL, *url = NULL, *api_url = NULL;
	int workers = 1, cpu_server[BENCH_MAX_PROCS], ncpu_server = 0;
	int cpu_backend[BENCH_MAX_PROCS], ncpu_backend = 0;
	pid_t server_pid = 0;
	long conns = -1, channels = -1, burst = -1, window = -1, pub_conns = -1, concurrency = -1, procs = 0;
	long post_conns = -1;
	double duration = -1, warmup = -1, setup_timeout = -1;

	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
			usage(stdout);
			return 0;
		}
		usage(stderr);
		return 2;
	}
	int sc = -1;
	for (int i = 0; i < (int)NSCEN; i++)
		if (strcmp(argv[1], scen_names[i]) == 0)
			sc = i;
	if (sc < 0)
		die("unknown scenario", argv[1]);
	o.scen = (enum bench_scen)sc;
	o.fmt = FMT_JSON;
	o.size = 100;
	o.pipeline = 1;
	o.src_addrs = 8;
	o.uring = SOCK_URING;
	o.drain = 3;
	o.chan_prefix = "bench";
	o.api_key = "bench-api-key";
	o.post_pipeline = 1;
	optind = 2;
	int c;
	while ((c = getopt_long(argc, argv, "n:m:d:qh", longopts, NULL)) != -1) {
		switch (c) {
		case O_ROTORD: rotord = optarg; break;
		case O_WORKERS: workers = (int)num(optarg, 1, 256, "bad --workers"); break;
		case O_CPU_SERVER:
			if ((ncpu_server = parse_cpus(optarg, cpu_server, BENCH_MAX_PROCS)) <= 0)
				die("bad --cpu-server", optarg);
			break;
		case O_URL: url = optarg; break;
		case O_API_URL: api_url = optarg; break;
		case O_API_KEY: o.api_key = optarg; break;
		case O_PID: server_pid = (pid_t)num(optarg, 1, 1 << 30, "bad --pid"); break;
		case O_SECRET: o.token_secret = optarg; break;
		case O_PROXY: o.proxy = true; break;
		case O_HISTORY: o.history = true; break;
		case O_DELTA: o.delta = o.history = true; break;
		case O_CPU_BACKEND:
			if ((ncpu_backend = parse_cpus(optarg, cpu_backend, BENCH_MAX_PROCS)) <= 0)
				die("bad --cpu-backend", optarg);
			break;
		case 'n': conns = num(optarg, 0, 10000000, "bad --conns"); break;
		case 'm': channels = num(optarg, 1, 10000000, "bad --channels"); break;
		case O_FORMAT:
			if (strcmp(optarg, "json") == 0) o.fmt = FMT_JSON;
			else if (strcmp(optarg, "protobuf") == 0) o.fmt = FMT_PROTOBUF;
			else if (strcmp(optarg, "mixed") == 0) o.fmt = FMT_MIXED;
			else die("bad --format", optarg);
			break;
		case O_RATE: o.rate = fnum(optarg, 0, 1e9, "bad --rate"); break;
		case O_BURST: burst = num(optarg, 1, 10000, "bad --burst"); break;
		case O_WINDOW: window = num(optarg, 0, 1000000, "bad --window"); break;
		case O_SIZE: o.size = (int)num(optarg, 1, BENCH_MAX_SIZE, "bad --size"); break;
		case O_PUB_CONNS: pub_conns = num(optarg, 1, 4096, "bad --pub-conns"); break;
		case O_PIPELINE: o.pipeline = (int)num(optarg, 1, 256, "bad --pipeline"); break;
		case O_CONCURRENCY: concurrency = num(optarg, 1, 100000, "bad --concurrency"); break;
		case O_CHURN: o.churn = true; break;
		case O_TLS: o.tls = true; break;
		case O_PREFIX:
			if (strpbrk(optarg, "\"\\") || strlen(optarg) > 64)
				die("bad --prefix", optarg);
			o.chan_prefix = optarg;
			break;
		case O_PROCS: procs = num(optarg, 1, BENCH_MAX_PROCS, "bad --procs"); break;
		case O_CPU:
			if ((o.ncpus = parse_cpus(optarg, o.cpus, BENCH_MAX_PROCS)) <= 0)
				die("bad --cpu", optarg);
			break;
		case O_SRC: o.src_addrs = (int)num(optarg, 0, 254, "bad --src-addrs"); break;
		case O_URING: o.uring &= ~(unsigned)SOCK_URING; break;
		case O_URING_EVENTFD: o.uring |= SOCK_URING_EVENTFD; break;
		case O_URING_NOCHECK: o.uring |= SOCK_URING_NOCHECK; break;
		case 'd': duration = fnum(optarg, 0.01, 86400, "bad --duration"); break;
		case O_WARMUP: warmup = fnum(optarg, 0, 3600, "bad --warmup"); break;
		case O_DRAIN: o.drain = fnum(optarg, 0, 3600, "bad --drain"); break;
		case O_SETUP: setup_timeout = fnum(optarg, 1, 86400, "bad --setup-timeout"); break;
		case O_TRANSPORT:
			if ((o.tp = tp_find(optarg)) == NULL) {
				fprintf(stderr, "rotor-bench: unknown --transport %s (one of %s)\n", optarg, tp_names());
				return 2;
			}
			break;
		case O_POST_CONNS: post_conns = num(optarg, 1, 1024, "bad --post-conns"); break;
		case O_DEFLATE: o.deflate = true; break;
		case O_POST_PIPELINE: o.post_pipeline = (int)num(optarg, 1, 1024, "bad --post-pipeline"); break;
		case 'q': o.quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc)
		die("unexpected argument", argv[optind]);
	if ((rotord != NULL) == (url != NULL))
		die("give exactly one of --rotord PATH and --url URL", NULL);
	if (url && strncmp(url, "https://", 8) == 0)
		o.tls = true;
	if ((o.history || o.delta) && !rotord)
		die("--history and --delta need --rotord", NULL);
	if (o.proxy && (!rotord || o.token_secret))
		die("--proxy needs --rotord and no --token-secret", NULL);
	if (o.token_secret && (strpbrk(o.token_secret, "\"\\") || strlen(o.token_secret) > 200))
		die("bad --token-secret", NULL);

	/* Transport. */
	if (o.tp == NULL)
		o.tp = tp_find(o.scen == SC_EMULATION ? "http_stream" : "websocket");
	if (o.fmt != FMT_JSON && !o.tp->protobuf) {
		fprintf(stderr, "rotor-bench: --format %s: the %s transport carries JSON only\n",
			fmt_names[o.fmt], o.tp->name);
		return 2;
	}
	if (o.deflate && strcmp(o.tp->name, "websocket") != 0) {
		fprintf(stderr, "rotor-bench: --deflate is for --transport websocket, not %s\n", o.tp->name);
		return 2;
	}
	if (o.scen == SC_RPC && !o.proxy) {
		fprintf(stderr, "rotor-bench: the rpc scenario needs --proxy (rotord has no RPC handler of "
			"its own)\n");
		return 2;
	}
	if (o.scen == SC_EMULATION && !o.tp->emulation) {
		fprintf(stderr, "rotor-bench: the emulation scenario needs --transport http_stream or sse, "
			"not %s\n", o.tp->name);
		return 2;
	}

	/* Scenario defaults. */
	static const long def_conns[NSCEN] = { 10000, 10000, 1000, 10000, 10000, 0, 100, 10000, 100 };
	o.conns = conns >= 0 ? conns : def_conns[o.scen];
	o.channels = channels > 0 ? channels :
		     o.scen == SC_CHANNELS ? (o.conns >= 10 ? o.conns / 10 : 1) :
		     (o.scen == SC_IDLE || bench_storm(o.scen) || bench_commands(o.scen)) && o.conns > 0 ?
		     o.conns : 1;
	o.burst = burst > 0 ? (int)burst : o.scen == SC_BURST || o.scen == SC_CHANNELS ? 10 : 1;
	o.window = window >= 0 ? (int)window : (o.burst * 4 > 8 ? o.burst * 4 : 8);
	o.pub_conns = pub_conns > 0 ? (int)pub_conns : o.scen == SC_API ? 8 : 1;
	o.concurrency = concurrency > 0 ? (int)concurrency : 64;
	o.duration = duration > 0 ? duration : o.scen == SC_IDLE || bench_storm(o.scen) ? 30 : 10;
	o.warmup = warmup >= 0 ? warmup : o.scen == SC_IDLE || bench_storm(o.scen) ? 0 : 1;
	if (bench_storm(o.scen) && o.conns == 0)
		die("a connect storm needs --conns > 0", NULL);
	if (o.scen == SC_HANDSHAKE)
		o.churn = true;         /* nothing to keep a bare connection for */
	if ((o.scen == SC_FANOUT || o.scen == SC_BURST || o.scen == SC_CHANNELS || bench_commands(o.scen)) &&
	    o.conns == 0)
		die("this scenario needs subscribers (--conns > 0)", NULL);

	/* The POST pool: as a load balancer's upstream connections; in the
	 * emulation scenario one per connection, as each browser has its own.
	 * Sized before the processes, which then count its descriptors. */
	o.post_conns = post_conns > 0 ? (int)post_conns : o.scen == SC_EMULATION ?
		       (int)(o.conns < 1024 ? (o.conns > 0 ? o.conns : 1) : 1024) : 16;

	/* File descriptors: ours up to the hard limit, and enough processes. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			fprintf(stderr, "rotor-bench: setrlimit(RLIMIT_NOFILE) failed: %s\n", strerror(errno));
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	long per_proc = (long)rl.rlim_cur - 64 - o.pub_conns - (o.tp->posts ? o.post_conns : 0);
	long need = bench_storm(o.scen) && o.churn ? 1 : (o.conns + per_proc - 1) / (per_proc > 0 ? per_proc : 1);
	o.procs = procs > 0 ? (int)procs : (int)(need > 1 ? need : 1);
	if (o.procs > BENCH_MAX_PROCS)
		die("too many connections for the fd limit", NULL);
	if (procs > 0 && procs < need)
		fprintf(stderr, "rotor-bench: warning: %ld connections over %ld processes exceed the fd limit "
			"(%llu per process)\n", o.conns, procs, (unsigned long long)rl.rlim_cur);
	/* A TLS handshake costs each side ~0.5 ms of CPU here: 10x a plain connect. */
	o.setup_timeout = setup_timeout > 0 ? setup_timeout : 30 + (double)o.conns / (o.tls ? 200 : 2000);

	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	/* The server. */
	struct rd rd = { 0 };
	if (o.proxy && backend_start(&M_backend, cpu_backend, ncpu_backend) < 0)
		return 1;
	if (rotord) {
		if (rd_start(&rd, rotord, workers, cpu_server, ncpu_server, o.api_key, o.token_secret,
			     o.proxy ? M_backend.port : 0,
			     o.deflate ? "\"websocket\": {\"compression\": true}" : o.tp->rotord_conf,
			     chan_opts(&o), o.tls) < 0) {
			backend_stop(&M_backend, &M_bcounts);
			return 1;
		}
		server_pid = rd.pid;
		char u[64];
		snprintf(u, sizeof(u), "127.0.0.1:%d", rd.port);
		parse_url(u, &o);
	} else if (parse_url(url, &o) < 0) {
		die("bad --url", url);
	}
	if (api_url) {
		/* parse_url fills dst and host: keep the subscribers' aside. */
		struct sockaddr_in dst = o.dst;
		char host[sizeof(o.host)];
		memcpy(host, o.host, sizeof(host));
		if (parse_url(api_url, &o) < 0)
			die("bad --api-url", api_url);
		o.api_dst = o.dst;
		memcpy(o.api_host, o.host, sizeof(o.api_host));
		o.dst = dst;
		memcpy(o.host, host, sizeof(o.host));
	}
	if (!rotord) {
		pid_t kids[PSTAT_MAX];
		workers = server_pid ? pstat_children(server_pid, kids, PSTAT_MAX) : 0;
	}
	if (o.ncpus > 0)
		pin_self(o.cpus[0]);

	struct samples smp;
	memset(&smp, 0, sizeof(smp));
	smp.have = server_pid > 0 && pstat_sample(server_pid, &smp.before) == 0;

	/* The shared region and the generators. */
	size_t shsize = sizeof(struct bench_shared) + (size_t)o.channels * sizeof(_Atomic uint32_t);
	struct bench_shared *sh = mmap(NULL, shsize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		fprintf(stderr, "rotor-bench: mmap(%zu) failed: %s\n", shsize, strerror(errno));
		rd_stop(&rd);
		return 1;
	}
	static struct child ch[BENCH_MAX_PROCS];
	fflush(stdout);
	for (int i = 0; i < o.procs; i++) {
		int cp[2], rp[2];
		if (pipe2(cp, O_CLOEXEC) < 0 || pipe2(rp, O_CLOEXEC) < 0) {
			fprintf(stderr, "rotor-bench: pipe failed: %s\n", strerror(errno));
			o.procs = i;
			break;
		}
		pid_t pid = fork();
		if (pid < 0) {
			fprintf(stderr, "rotor-bench: fork failed: %s\n", strerror(errno));
			close(cp[0]), close(cp[1]), close(rp[0]), close(rp[1]);
			o.procs = i;
			break;
		}
		if (pid == 0) {
			for (int k = 0; k < i; k++)
				close(ch[k].ctl), close(ch[k].res);
			close(cp[1]);
			close(rp[0]);
			if (o.ncpus > 0)
				pin_self(o.cpus[i % o.ncpus]);
			gen_main(&o, sh, i, cp[0], rp[1]);
		}
		close(cp[0]);
		close(rp[1]);
		ch[i].pid = pid;
		ch[i].ctl = cp[1];
		ch[i].res = rp[0];
	}

	int rc = 0;
	uint64_t t0 = bench_now();
	if (!o.quiet)
		fprintf(stderr, "rotor-bench: %s against %s, %d generator process%s, setting up...\n",
			scen_names[o.scen], o.host, o.procs, o.procs == 1 ? "" : "es");
	int missing = wait_children(ch, o.procs, false, t0 + (uint64_t)(o.setup_timeout * 1e9));
	double setup_s = (double)(bench_now() - t0) / 1e9;
	if (missing)
		fprintf(stderr, "rotor-bench: %d generator%s not set up after %.1f s; going on\n",
			missing, missing == 1 ? "" : "s", setup_s);
	if (smp.have)
		pstat_sample(server_pid, &smp.ready);

	struct bench_go go;
	go.t_start = bench_now() + 20000000u;
	go.t_measure = go.t_start + (uint64_t)(o.warmup * 1e9);
	go.t_end = go.t_measure + (uint64_t)(o.duration * 1e9);
	if (!M_stop)
		send_ctl(ch, o.procs, &go);
	if (!o.quiet && !M_stop)
		fprintf(stderr, "rotor-bench: running for %.1f s...\n", o.warmup + o.duration);

	/* The window: CPU at its start and end (or when every generator is
	 * done early, as a connect storm is). */
	while (!M_stop && bench_now() < go.t_measure)
		sleep_until(go.t_measure);
	if (smp.have)
		pstat_sample(server_pid, &smp.start);
	smp.sys = pstat_system(&smp.sys0) == 0;
	uint64_t w0 = bench_now();
	missing = wait_children(ch, o.procs, true, go.t_end);
	uint64_t w1 = bench_now();
	if (smp.have)
		pstat_sample(server_pid, &smp.end);
	smp.sys = smp.sys && pstat_system(&smp.sys1) == 0;
	double window_s = (double)(w1 - w0) / 1e9;
	if (bench_storm(o.scen)) {      /* up to the last completion */
		uint64_t last = 0;
		for (int i = 0; i < o.procs; i++)
			if (ch[i].done && ch[i].r.storm_last_ns > last)
				last = ch[i].r.storm_last_ns;
		if (missing == 0 && last > go.t_measure)
			window_s = (double)(last - go.t_measure) / 1e9;
	}

	/* Results, then the generators' exit. */
	missing = wait_children(ch, o.procs, true, bench_now() + (uint64_t)((o.drain + 5) * 1e9));
	for (int i = 0; i < o.procs; i++) {
		if (!ch[i].done) {
			fprintf(stderr, "rotor-bench: generator %d (pid %d) gave no result: killed\n", i, (int)ch[i].pid);
			kill(ch[i].pid, SIGKILL);
		}
		int st;
		while (waitpid(ch[i].pid, &st, 0) < 0 && errno == EINTR)
			;
		close(ch[i].ctl);
		if (ch[i].res >= 0)
			close(ch[i].res);
	}
	if (smp.have) {
		struct timespec ts = { 0, 500000000L };
		nanosleep(&ts, NULL);
		pstat_sample(server_pid, &smp.closed);
	}
	if (server_pid > 0 && !smp.have)
		fprintf(stderr, "rotor-bench: pid %d could not be sampled\n", (int)server_pid);
	if (rotord && rd_check(&rd) < 0) {
		fprintf(stderr, "rotor-bench: rotord died during the run\n");
		rc = 1;
	}
	if (o.proxy)
		backend_stop(&M_backend, &M_bcounts);
	if (report(&o, ch, sh, &smp, server_pid, setup_s, window_s, workers, cpu_server,
		   ncpu_server) > 0 || missing)
		rc = 1;
	rd_stop(&rd);
	munmap(sh, shsize);
	return rc;
}
