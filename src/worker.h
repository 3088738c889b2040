/*
 * worker.h - one worker process: a libev loop that owns its client
 * connections completely. The master forks it with a listening socket and a
 * control socket; everything else the worker builds itself after fork.
 */
#ifndef ROTOR_WORKER_H
#define ROTOR_WORKER_H

#include "rotor.h"
#include "conf.h"
#include "wheel.h"
#include "bus.h"
#include <ev.h>
#include <stdbool.h>

struct conn;
struct stats_block;
struct seg;

struct worker {
	struct ev_loop *loop;
	int slot;             /* 0..workers-1 */
	unsigned gen;         /* master generation that started this worker */
	/* The listening sockets this worker accepts on: its slot's own, the
	 * internal endpoints' (when they have a port of their own), and the
	 * sockets of slots beyond the worker count that the master keeps in
	 * the SO_REUSEPORT group and gives to this worker (master.c). */
	struct worker_listener *lsn;
	int nlsn;
	bool split;           /* internal endpoints on a listener of their own */
	int ctl_fd;           /* socketpair end to the master; EOF = master gone */
	int spare_fd;         /* /dev/null, given up to accept-and-close on EMFILE */
	struct conf *conf;    /* current config; replaced on reload */

	ev_io ctl_w;
	ev_prepare flush_w;   /* the one flush point per loop iteration */
	ev_timer tick_w;      /* drives the timer wheel */
	ev_timer accept_pause_w; /* restarts accept after EMFILE/ENFILE */
	ev_signal sig_w[4];

	struct wheel wheel;   /* connection timeouts */
	int64_t now_ms;       /* monotonic ms, cached once per loop iteration */

	/* Connection bookkeeping; conn.c owns these. */
	struct conn *conns;   /* every open connection */
	struct conn *dirty;   /* connections with output to write (conn.c) */
	struct conn *dirty_tail;
	uint32_t iter;        /* loop iterations so far (conn.c's priority) */
	struct conn_batch *batch; /* batched sends (conn.c); NULL: sendmsg */
	size_t nconns;

	bool draining;        /* graceful stop: no accept; idle conns closed */
	bool stopping;        /* fast stop */
	int64_t drain_deadline_ms;

	char ctl_buf_hdr[8];  /* control message assembly (see worker.c) */
	uint32_t ctl_type;
	char *ctl_buf;
	size_t ctl_len, ctl_have;

	struct stats_block *ctr; /* this worker's counters in the stats segment */
	struct seg *stats_seg;   /* the whole stats segment (every worker's block) */

	/* The bus: this worker's reader (its slot is its stats block's index),
	 * its own eventfd that writers use to wake it, and the eventfds of the
	 * other workers by slot (-1: unknown), which the master hands over. */
	struct bus *bus;
	struct ctab *ctab;    /* channel table and history streams (shm/chan.h) */
	struct pres *pres;    /* presence table (shm/pres.h) */
	struct idem *idem;    /* idempotent publish results (shm/idem.h) */
	const struct engine *engine; /* where publications, history, presence live (engine.h) */
	bool broker;          /* the Redis engine's broker (broker.c): no listener, no clients */
	void *engine_state;   /* the engine's own, per worker */
	int64_t pres_touch_ms; /* last lease refresh */
	int64_t sweep_ms;     /* last history sweep */
	struct bus_reader reader;
	unsigned bus_slot;
	int wake_fd;
	ev_io wake_w;
	ev_idle busy_w;       /* keeps the loop from blocking while the bus is busy */
	int wake_fds[BUS_SLOTS_MAX];
	int ctl_pending_fd;   /* an fd received with a control message */
	/* Connections handed between workers (handoff.c): this worker's
	 * receiving end, and the sending ends of the others by bus slot (-1:
	 * unknown), which the master hands over like the eventfds. */
	int handoff_fd;
	ev_io handoff_w;
	int handoff_fds[BUS_SLOTS_MAX];
	uint64_t secret[2];   /* the master's random key, the same in every
	                       * worker: MACs of ids handed to clients */
};

struct worker_listener {
	ev_io io;             /* on the listening socket (io.fd) */
	bool internal;        /* the internal endpoints' listener */
};

/* What the master hands a new worker. */
struct worker_boot {
	int slot;             /* listener slot, 0..workers-1 */
	unsigned gen;         /* master generation */
	const int *listen_fds;  /* NLISTEN listening sockets to accept on */
	const bool *internal;   /* which of them are the internal endpoints' */
	int nlisten;
	bool split;           /* the internal endpoints have a listener of their own */
	int ctl_fd;           /* the worker's end of its control socket */
	struct conf *conf;    /* becomes the worker's */
	struct stats_block *ctr;
	struct seg *stats_seg;
	struct bus *bus;      /* mapped by the master before fork */
	struct ctab *ctab;    /* the channel table and history, likewise */
	struct pres *pres;    /* the presence table, likewise */
	struct idem *idem;    /* the idempotent publish results, likewise */
	unsigned bus_slot;
	int wake_fd;          /* this worker's eventfd */
	const int *wake_fds;  /* BUS_SLOTS_MAX entries: the other workers' eventfds */
	const uint64_t *secret; /* 2 words, drawn once by the master */
	int handoff_fd;       /* the receiving end of this worker's handoff socket */
	const int *handoff_fds; /* BUS_SLOTS_MAX entries: the others' sending ends */
	bool broker;          /* run as the Redis engine's broker (no listener) */
};

/* The one worker of this process (NULL in the master and in rotorctl). */
extern struct worker *worker_self;

/* Runs the worker until it stops; never returns. Called in the child after
 * fork, once every fd that is not in B is closed. */
ROTOR_NORETURN void worker_main(const struct worker_boot *b);

#endif
