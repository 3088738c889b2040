/*
 * bench.h - what the parent (main.c) and the generator processes (gen.c) of
 * rotor-bench share: the options, the shared-memory region they both see,
 * the result each generator sends back, and the clock.
 *
 * Process model: the parent forks --procs generators after mapping the
 * shared region (MAP_SHARED | MAP_ANONYMOUS, so every process sees the same
 * pages), talks to each over two pipes (control down, results up) and never
 * opens a client connection itself. All times are CLOCK_MONOTONIC
 * nanoseconds, comparable across the processes of one machine; the parent
 * hands every generator the same absolute start, measure and end instants.
 */
#ifndef BENCH_H
#define BENCH_H

#include "lat.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define BENCH_MAX_PROCS 64
#define BENCH_MAX_SIZE 60000 /* largest --size */

enum bench_scen { SC_FANOUT, SC_CHANNELS, SC_BURST, SC_IDLE, SC_CONNECT, SC_API, SC_EMULATION,
		  SC_HANDSHAKE, SC_RPC };
enum bench_fmt { FMT_JSON, FMT_PROTOBUF, FMT_MIXED };

struct tp_kind;

/* The command line, after defaults for the scenario are filled in. Read-only
 * once the generators are forked. */
struct bench_opts {
	enum bench_scen scen;
	enum bench_fmt fmt;
	const struct tp_kind *tp;   /* the subscribers' transport (tp.h) */
	bool deflate;               /* websocket: negotiate permessage-deflate */
	int post_conns;             /* its POST pool's connections per process */
	int post_pipeline;          /* POSTs in flight on each */
	struct sockaddr_in dst;     /* rotord's address */
	char host[80];              /* Host header: name:port */
	struct sockaddr_in api_dst; /* where publications go (--api-url: another node), */
	char api_host[80];          /* ... and its Host header; else dst and host */
	const char *api_key;
	const char *token_secret;   /* HS256 connection tokens, or NULL: none */
	const char *chan_prefix;    /* channel names are <prefix><index> */
	long conns;                 /* -n: subscribers / connections, all procs */
	long channels;              /* -m */
	double rate;                /* publications per second, 0: windowed max */
	int burst;                  /* publications per API request */
	int window;                 /* publications in flight at max rate */
	int size;                   /* payload bytes */
	int pub_conns;              /* API connections of each publisher */
	int pipeline;               /* requests in flight per API connection */
	int concurrency;            /* handshakes in flight per process */
	bool churn;                 /* connect: close each once subscribed */
	bool proxy;                 /* connect without a token, through the connect proxy */
	bool history;               /* channels keep history, subscribers positioned */
	bool delta;                 /* subscribers negotiate fossil deltas */
	bool tls;                   /* every connection speaks TLS */
	int procs;
	int src_addrs;              /* source addresses 127.0.0.1..N */
	unsigned uring;             /* read through io_uring: SOCK_URING... (sock.h) */
	int cpus[BENCH_MAX_PROCS];  /* --cpu list, ncpus entries */
	int ncpus;
	double duration, warmup, drain, setup_timeout;
	bool quiet;
};

/* Per generator, on its own cache line: counters other processes poll. */
struct bench_slot {
	_Atomic uint64_t delivered;     /* publications received, whole run */
	char pad[56];
};

/* The shared region: the publisher adds, for every publication, the number
 * of subscribers of its channel to `expected`; generators count what they
 * receive in their slot. A windowed publisher waits while expected minus
 * the sum of the slots exceeds its window; everyone's drain ends when the
 * sum reaches expected after pub_done. chan_subs[] is filled during setup,
 * before any publication. */
struct bench_shared {
	_Atomic uint64_t expected;
	_Atomic uint32_t pub_done;
	char pad[52];
	struct bench_slot slot[BENCH_MAX_PROCS];
	_Atomic uint32_t chan_subs[];   /* opts.channels entries */
};

/* Control messages, parent -> generator. */
struct bench_go {
	uint64_t t_start, t_measure, t_end;     /* CLOCK_MONOTONIC ns */
};

/* What a generator reports: first a bench_msg READY after its setup, then
 * RESULT with the full struct once it drained. "win" counters count events
 * inside [t_measure, t_end). */
enum { MSG_READY = 1, MSG_RESULT = 2 };
#define BENCH_NCODES 8
#define BENCH_READY_SIZE offsetof(struct bench_result, deliveries_all)

struct bench_result {
	uint32_t type;
	uint32_t proc;
	/* setup */
	uint64_t subscribed, setup_failed;
	/* deliveries */
	uint64_t deliveries_all, deliveries_win, out_of_order;
	/* publishing */
	uint64_t pubs_all, pubs_win, reqs_win, resp_ok, resp_err;
	/* connect storm */
	uint64_t storm_done, storm_win, storm_last_ns;
	/* commands (emulation): replies received, and in the window */
	uint64_t cmds_all, cmds_win;
	/* trouble */
	uint64_t err_connect, err_handshake, err_reply, err_closed, err_unsub, err_proto, err_send;
	uint64_t pings;
	uint64_t deltas;                /* --delta: publications that came as deltas */
	struct { uint32_t code, n; } codes[BENCH_NCODES]; /* close codes seen */
	double cpu_s;                   /* this process, inside the window */
	struct {                        /* its reads: struct sock_reads (sock.h) */
		uint32_t uring, recvmsg, fallback, stalls, check_us;
	} reads;
	struct lat lat_deliv;           /* publish -> read by the generator */
	struct lat lat_arrive;          /* publish -> queued on the socket */
	struct lat lat_api;             /* API request round trip */
	struct lat lat_conn;            /* TCP connect -> subscribe reply */
	struct lat lat_cmd;             /* command sent -> its reply read */
};

/* The connect storms: connections are made during the run, at the
 * --concurrency the scenario allows, and counted as they complete. */
static inline bool bench_storm(enum bench_scen s)
{
	return s == SC_CONNECT || s == SC_HANDSHAKE;
}

/* The command loops: every connection sends a command and the next as
 * soon as its reply came (emulation: presence_stats through POST
 * /emulation; rpc: an RPC over the connection's own transport). */
static inline bool bench_commands(enum bench_scen s)
{
	return s == SC_EMULATION || s == SC_RPC;
}

static inline uint64_t bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Runs generator number `proc` (gen.c): never returns. */
void gen_main(const struct bench_opts *o, struct bench_shared *sh, int proc,
	      int ctl_fd, int res_fd) __attribute__((noreturn));

#endif
