/*
 * worker.c - a worker process: one libev loop that accepts client
 * connections on its own listening socket and serves them until told to
 * stop. Model:
 *
 *   - The loop is created after fork; nothing libev-related crosses fork.
 *   - Time is read once per loop iteration (w->now_ms, monotonic), in a
 *     highest-priority check watcher; timeouts go through one timer wheel.
 *   - Output is queued during the iteration and written in one ev_prepare
 *     step (conn_flush): one flush point per iteration. A flush stops after
 *     FLUSH_BUDGET_NS and the loop polls its sockets without blocking before
 *     it goes on, so a large fan-out neither delays the answer to a request
 *     by its whole length nor stops the worker taking new publications; the
 *     connections still waiting then send several messages in one write.
 *   - The control socket brings new configs from the master; its EOF means
 *     the master is gone, and the worker exits at once (as it does on the
 *     parent-death signal).
 *   - SIGQUIT: graceful stop (stop accepting, finish in-flight requests,
 *     close idle connections, exit when none is left or at shutdown.timeout);
 *     SIGTERM: fast stop; SIGUSR1: reopen the log. INT and HUP belong to
 *     the master and are ignored here.
 */
#include "config.h"
#include "worker.h"
#include "admin.h"
#include "engine.h"
#include "api.h"
#include "client.h"
#include "conn.h"
#include "chan.h"
#include "http.h"
#include "hub.h"
#include "handoff.h"
#include "node.h"
#include "tls.h"
#include "transport.h"
#include "log.h"
#include "master.h"
#include "metrics.h"
#include "stats.h"
#include "util.h"

/* One write slice of the flush point: ~150 sends on this machine, short
 * against the latency targets, long against one non-blocking poll. A build
 * may override it (-DFLUSH_BUDGET_NS=...) to compare. */
#ifndef FLUSH_BUDGET_NS
#define FLUSH_BUDGET_NS 1000000
#endif

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

struct worker *worker_self;

#define ACCEPT_BATCH 64      /* connections taken per readiness callback */
#define ACCEPT_PAUSE 0.1     /* seconds accept stays off after EMFILE */
#define TICK_S 0.1           /* timer wheel resolution */
#define WORKER_TRIM_BYTES (16 << 20) /* free heap kept for the next fan-out */

static struct stats_block *my_stats(struct worker *w)
{
	return w->ctr;
}

static ROTOR_NORETURN void worker_exit(struct worker *w, int status)
{
	log_info("exiting");
	if (w->broker)
		broker_stop(w);
	else if (w->engine != NULL)
		w->engine->stop(w);
	if (w->ctr != NULL) {
		__atomic_store_n(&w->ctr->state, 0, __ATOMIC_RELAXED);
		STATS_SUB(w->ctr, conns_current, STATS_GET(w->ctr, conns_current));
	}
	_exit(status);
}

/* Stops the loop once a stopping worker has no connection left. */
static void maybe_finish(struct worker *w)
{
	if ((w->draining || w->stopping) && w->nconns == 0)
		worker_exit(w, 0);
}

/* Stops accepting and closes this worker's copies of the listening
 * sockets. The master keeps its own copy of every socket in the group, so
 * nothing queued on them is reset here: the next generation's worker of
 * the slot (or, for a slot beyond the new count, the worker the master
 * gives it to) accepts what is waiting. */
static void stop_accepting(struct worker *w)
{
	ev_timer_stop(w->loop, &w->accept_pause_w);
	for (int i = 0; i < w->nlsn; i++) {
		ev_io_stop(w->loop, &w->lsn[i].io);
		close(w->lsn[i].io.fd);
	}
	free(w->lsn);
	w->lsn = NULL;
	w->nlsn = 0;
}

/* Starts (or stops, with ON false) watching every listening socket. */
static void accept_watch(struct worker *w, bool on)
{
	for (int i = 0; i < w->nlsn; i++) {
		if (on)
			ev_io_start(w->loop, &w->lsn[i].io);
		else
			ev_io_stop(w->loop, &w->lsn[i].io);
	}
}

static void begin_drain(struct worker *w)
{
	if (w->draining || w->stopping)
		return;
	w->draining = true;
	w->drain_deadline_ms = w->now_ms + w->conf->shutdown_timeout_ms;
	log_info("graceful stop: %zu connection(s) to finish within %lld ms", w->nconns,
		 w->conf->shutdown_timeout_ms);
	if (w->ctr != NULL)
		__atomic_store_n(&w->ctr->state, 2, __ATOMIC_RELAXED);
	stop_accepting(w);
	http_drain(w);
	transport_drain(w);
	maybe_finish(w);
}

static void begin_stop(struct worker *w)
{
	w->stopping = true;
	log_info("fast stop: closing %zu connection(s)", w->nconns);
	stop_accepting(w);
	conn_close_all(w);
	worker_exit(w, 0);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
	struct worker *w = io->data;
	bool internal = ((struct worker_listener *)io)->internal;
	int lfd = io->fd;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			STATS_ADD(my_stats(w), conns_accepted, 1);
			http_accept(w, fd, internal);
			continue;
		}
		switch (errno) {
		case EAGAIN:
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			return;
		case EMFILE:
		case ENFILE:
			/* Out of descriptors: take the pending connection with
			 * the spare fd and close it, so the peer learns at once
			 * instead of waiting, then rest the watcher a moment
			 * (a level-triggered watcher would spin otherwise). */
			STATS_ADD(my_stats(w), accept_errors, 1);
			log_syscall("accept4(fd %d)", lfd);
			if (w->spare_fd >= 0) {
				close(w->spare_fd);
				fd = accept(lfd, NULL, NULL);
				if (fd >= 0)
					close(fd);
				w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			}
			accept_watch(w, false);
			ev_timer_set(&w->accept_pause_w, ACCEPT_PAUSE, 0.);
			ev_timer_start(loop, &w->accept_pause_w);
			return;
		default:
			STATS_ADD(my_stats(w), accept_errors, 1);
			log_syscall("accept4(fd %d)", lfd);
			return;
		}
	}
}

static void on_accept_pause_end(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;
	if (!w->draining && !w->stopping)
		accept_watch(w, true);
}

/* Applies a new config pushed by the master (already validated there). */
static void apply_config(struct worker *w, const char *text, size_t len)
{
	struct conf_report rep = {0};
	struct conf *c = xcalloc(1, sizeof(*c));

	if (conf_load_dump(c, text, len, &rep) != RT_OK) {
		/* Cannot happen with a master-validated dump; keep the old one. */
		for (size_t i = 0; i < rep.nerrors; i++)
			log_error("reload: %s", rep.errors[i]);
		conf_report_free(&rep);
		conf_free(c);
		free(c);
		return;
	}
	conf_report_free(&rep);
	struct conf *old = w->conf;
	if (strcmp(old->log_file, c->log_file) != 0)
		log_open(c->log_file);
	log_set_level((enum log_level)c->log_level_num);
	w->conf = c;
	http_reconfigure(w);
	api_reconfigure(w);
	metrics_reconfigure(w);
	client_reconfigure(w);
	transport_reconfigure(w);
	tls_worker_configure(w);
	admin_reconfigure(w);
	conf_free(old);
	free(old);
	log_info("configuration reloaded in place");
}

/* Reads from the control socket, keeping an fd that came with the bytes. */
static ssize_t ctl_read(struct worker *w, void *buf, size_t n)
{
	union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int))]; } cm;
	struct iovec iov = { buf, n };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cm, .msg_controllen = sizeof(cm) };
	ssize_t k = recvmsg(w->ctl_fd, &msg, MSG_CMSG_CLOEXEC);
	if (k > 0) {
		for (struct cmsghdr *h = CMSG_FIRSTHDR(&msg); h; h = CMSG_NXTHDR(&msg, h)) {
			if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
				if (w->ctl_pending_fd >= 0)
					close(w->ctl_pending_fd);
				memcpy(&w->ctl_pending_fd, CMSG_DATA(h), sizeof(int));
			}
		}
	}
	return k;
}

/* Acts on one complete control message. */
static void ctl_message(struct worker *w, uint32_t type, const char *p, size_t len)
{
	uint32_t slot;

	switch (type) {
	case CTL_CONFIG:
		apply_config(w, p, len);
		break;
	case CTL_WAKE_FD:
	case CTL_HANDOFF_FD:
	case CTL_SLOT_GONE:
		if (len != sizeof(slot))
			break;
		memcpy(&slot, p, sizeof(slot));
		if (slot >= BUS_SLOTS_MAX || slot == w->bus_slot)
			break;
		if (type != CTL_HANDOFF_FD && w->wake_fds[slot] >= 0) {
			close(w->wake_fds[slot]);
			w->wake_fds[slot] = -1;
		}
		if (type != CTL_WAKE_FD && w->handoff_fds[slot] >= 0) {
			close(w->handoff_fds[slot]);
			w->handoff_fds[slot] = -1;
		}
		if (type == CTL_WAKE_FD)
			w->wake_fds[slot] = w->ctl_pending_fd;
		else if (type == CTL_HANDOFF_FD)
			w->handoff_fds[slot] = w->ctl_pending_fd;
		if (type != CTL_SLOT_GONE)
			w->ctl_pending_fd = -1;
		break;
	}
	if (w->ctl_pending_fd >= 0) { /* an fd nobody asked for */
		close(w->ctl_pending_fd);
		w->ctl_pending_fd = -1;
	}
}

/* Reads control messages: an 8-byte header then the payload. */
static void on_ctl(struct ev_loop *loop, ev_io *io, int revents)
{
	struct worker *w = io->data;

	for (;;) {
		ssize_t n;
		if (w->ctl_buf == NULL)
			n = ctl_read(w, w->ctl_buf_hdr + w->ctl_have, sizeof(struct ctl_hdr) - w->ctl_have);
		else
			n = ctl_read(w, w->ctl_buf + w->ctl_have, w->ctl_len - w->ctl_have);
		if (n == 0) {
			log_warn("master is gone; stopping");
			begin_stop(w);
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			log_syscall("recvmsg(control fd %d)", w->ctl_fd);
			begin_stop(w);
		}
		w->ctl_have += (size_t)n;
		if (w->ctl_buf == NULL) {
			if (w->ctl_have < sizeof(struct ctl_hdr))
				continue;
			struct ctl_hdr h;
			memcpy(&h, w->ctl_buf_hdr, sizeof(h));
			if (h.len > CTL_MAX_LEN || h.type < CTL_CONFIG || h.type > CTL_TYPE_MAX) {
				log_error("bad control message (type %u, %u bytes); stopping", h.type, h.len);
				begin_stop(w);
			}
			w->ctl_len = h.len;
			w->ctl_type = h.type;
			w->ctl_buf = xmalloc(h.len + 1);
			w->ctl_have = 0;
		}
		if (w->ctl_have < w->ctl_len)
			continue;
		w->ctl_buf[w->ctl_len] = '\0';
		ctl_message(w, w->ctl_type, w->ctl_buf, w->ctl_len);
		free(w->ctl_buf);
		w->ctl_buf = NULL;
		w->ctl_have = w->ctl_len = 0;
	}
}

/* A writer woke us through our eventfd: clear it; the flush point reads. */
static void on_wake(struct ev_loop *loop, ev_io *io, int revents)
{
	struct worker *w = io->data;
	uint64_t v;
	if (read(w->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_syscall("read(eventfd %d)", w->wake_fd);
}

/* The bus's waker: another worker announced it sleeps; poke its eventfd. */
static void wake_slot(unsigned slot, void *arg)
{
	struct worker *w = arg;
	uint64_t one = 1;
	int fd = slot < BUS_SLOTS_MAX ? w->wake_fds[slot] : -1;
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_syscall("write(eventfd of bus slot %u)", slot);
}

static void on_busy(struct ev_loop *loop, ev_idle *i, int revents)
{
	ev_idle_stop(loop, i);
}

static void on_check(struct ev_loop *loop, ev_check *c, int revents)
{
	struct worker *w = c->data;
	w->now_ms = util_mono_ms();
	bus_reader_wake_cancel(&w->reader);
}

/* The flush point, once per loop iteration before the loop sleeps: apply
 * what the bus brought, frame and write everything queued, then tell the
 * bus we sleep; if records slipped in meanwhile, go round again. */
static void on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
	struct worker *w = p->data;
	for (int round = 0;; round++) {
		node_poll(w);
		transport_flush(w);
		if (conn_flush(w, FLUSH_BUDGET_NS)) {
			/* More to write than one slice: look at the sockets
			 * (a request that came meanwhile is answered before
			 * the rest of a fan-out), then go on writing. */
			ev_idle_start(loop, &w->busy_w);
			break;
		}
		if (bus_reader_sleep(&w->reader))
			break;
		if (round == 16) {
			/* Writers keep us busy: let the loop look at sockets
			 * without blocking, and come back here right after. */
			ev_idle_start(loop, &w->busy_w);
			break;
		}
	}
	/* Something here fed an event (a connection whose reading resumed
	 * over bytes it holds already): libev would still sleep before
	 * invoking it, up to the next timer. */
	if (ev_pending_count(loop) > 0)
		ev_idle_start(loop, &w->busy_w);
	client_count_flush(w);
	if (w->ctr != NULL) {
		__atomic_store_n(&w->ctr->clients, (uint64_t)client_count(), __ATOMIC_RELAXED);
		__atomic_store_n(&w->ctr->subs, (uint64_t)hub_nsubs(), __ATOMIC_RELAXED);
	}
	maybe_finish(w);
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;
	wheel_advance(&w->wheel, w->now_ms);
	if (w->draining && w->now_ms >= w->drain_deadline_ms) {
		log_warn("shutdown.timeout reached with %zu connection(s) open; closing them", w->nconns);
		conn_close_all(w);
		worker_exit(w, 0);
	}
	if (w->ctr != NULL)
		__atomic_store_n(&w->ctr->conns_current, (uint64_t)w->nconns, __ATOMIC_RELAXED);
	node_snapshot(w);
	node_health_report(w);
	client_presence_lease(w, false);
	/* History upkeep about once a second: expired records and streams give
	 * their room back (expiry also happens lazily on access). */
	if (w->now_ms - w->sweep_ms >= 1000) {
		w->sweep_ms = w->now_ms;
		if (ctab_sweep(w->ctab, util_wall_ms(), 1024) < 0)
			log_syscall("ctab_sweep");
	}
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
	struct worker *w = s->data;
	switch (s->signum) {
	case SIGQUIT:
		begin_drain(w);
		break;
	case SIGTERM:
		begin_stop(w);
		break;
	case SIGUSR1:
		log_reopen();
		log_info("log reopened");
		break;
	}
}

void worker_main(const struct worker_boot *b)
{
	static struct worker wk;
	static ev_check check_w;
	struct worker *w = &wk;
	sigset_t none;
	static const int sigs[] = { SIGQUIT, SIGTERM, SIGUSR1 };
	int slot = b->slot;
	unsigned gen = b->gen;
	int ctl_fd = b->ctl_fd;
	struct stats_block *ctr = b->ctr;

	if (b->broker)
		log_set_role("broker");
	else
		log_set_role("worker %d", slot);
	/* Die with the master, even if it is killed: the ctl EOF covers the
	 * same case, this one also covers a worker stuck in a long callback. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
		log_syscall("prctl(PR_SET_PDEATHSIG)");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	/* USR2 (upgrade) and WINCH belong to the master too: a signal sent to
	 * the whole process group or cgroup must not kill workers. */
	signal(SIGUSR2, SIG_IGN);
	signal(SIGWINCH, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);

	w->slot = slot;
	w->gen = gen;
	w->split = b->split;
	w->ctl_fd = ctl_fd;
	w->conf = b->conf;
	w->ctl_pending_fd = -1;
	w->bus = b->bus;
	w->ctab = b->ctab;
	w->pres = b->pres;
	w->idem = b->idem;
	w->stats_seg = b->stats_seg;
	w->bus_slot = b->bus_slot;
	if (b->secret)
		memcpy(w->secret, b->secret, sizeof(w->secret));
	w->wake_fd = b->wake_fd;
	memcpy(w->wake_fds, b->wake_fds, sizeof(w->wake_fds));
	w->handoff_fd = b->handoff_fd;
	for (int i = 0; i < BUS_SLOTS_MAX; i++)
		w->handoff_fds[i] = b->handoff_fds ? b->handoff_fds[i] : -1;
	w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
	if (w->loop == NULL) {
		log_error("ev_loop_new failed");
		_exit(1);
	}
	/* A fan-out allocates a few hundred bytes of output bookkeeping per
	 * subscriber and frees them once written: megabytes per publication
	 * to 10,000 subscribers. With glibc's default trim threshold (128 KB)
	 * every such wave gave the heap back with brk and faulted it in again
	 * (6% of a worker's time in one-send-per-delivery fan-out). Keep up
	 * to WORKER_TRIM_BYTES of free heap instead. */
	if (mallopt(M_TRIM_THRESHOLD, WORKER_TRIM_BYTES) == 0)
		log_warn("mallopt(M_TRIM_THRESHOLD) refused");
	w->now_ms = util_mono_ms();
	worker_self = w;
	w->ctr = ctr;
	if (w->ctr == NULL) {
		static struct stats_block local;
		w->ctr = &local; /* counting still works; nobody else sees it */
	}

	wheel_init(&w->wheel, w->now_ms, (int64_t)(TICK_S * 1000));
	conn_init(w);
	tls_worker_configure(w);
	http_init(w);
	client_init(w);
	transport_init(w);
	api_init(w);
	metrics_reconfigure(w);
	handoff_init(w);
	admin_init(w);
	if (bus_reader_init(&w->reader, w->bus, w->bus_slot) < 0) {
		log_syscall("bus_reader_init(slot %u)", w->bus_slot);
		_exit(1);
	}
	bus_set_waker(w->bus, wake_slot, w);
	/* The broker feeds the bus from Redis; its own actions (the control
	 * commands other nodes send) stay on this node: its engine is the
	 * shared-memory one, which never sends anything back to Redis. */
	w->broker = b->broker;
	w->engine = w->broker ? &engine_memory : engine_of(w->conf);
	if (w->engine->start(w) != RT_OK || (w->broker && broker_start(w) != RT_OK))
		_exit(1);
	node_health_report(w); /* before the loop runs: reported before it serves */
	node_snapshot_init(w);
	client_presence_lease(w, true);
	ev_idle_init(&w->busy_w, on_busy);
	ev_io_init(&w->wake_w, on_wake, w->wake_fd, EV_READ);
	w->wake_w.data = w;
	ev_io_start(w->loop, &w->wake_w);

	util_set_nonblock(ctl_fd);
	/* The broker has no listener. */
	w->nlsn = b->nlisten;
	w->lsn = w->nlsn > 0 ? xcalloc((size_t)w->nlsn, sizeof(w->lsn[0])) : NULL;
	for (int i = 0; i < w->nlsn; i++) {
		ev_io_init(&w->lsn[i].io, on_accept, b->listen_fds[i], EV_READ);
		w->lsn[i].io.data = w;
		w->lsn[i].internal = b->internal[i];
		util_set_nonblock(b->listen_fds[i]);
	}
	accept_watch(w, true);
	ev_timer_init(&w->accept_pause_w, on_accept_pause_end, ACCEPT_PAUSE, 0.);
	w->accept_pause_w.data = w;
	/* Control first in every iteration: a worker that starts late finds
	 * the master's announcements of the other workers' sockets and its
	 * first connections ready together, and a connection must not be
	 * served here for want of its owner's handoff socket (handoff.c). */
	ev_io_init(&w->ctl_w, on_ctl, ctl_fd, EV_READ);
	ev_set_priority(&w->ctl_w, EV_MAXPRI);
	w->ctl_w.data = w;
	ev_io_start(w->loop, &w->ctl_w);
	ev_check_init(&check_w, on_check);
	ev_set_priority(&check_w, EV_MAXPRI);
	check_w.data = w;
	ev_check_start(w->loop, &check_w);
	ev_prepare_init(&w->flush_w, on_prepare);
	ev_set_priority(&w->flush_w, EV_MINPRI);
	w->flush_w.data = w;
	ev_prepare_start(w->loop, &w->flush_w);
	ev_timer_init(&w->tick_w, on_tick, TICK_S, TICK_S);
	w->tick_w.data = w;
	ev_timer_start(w->loop, &w->tick_w);
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(sigs); i++) {
		ev_signal_init(&w->sig_w[i], on_signal, sigs[i]);
		w->sig_w[i].data = w;
		ev_signal_start(w->loop, &w->sig_w[i]);
	}

	/* The master blocked every signal around fork; libev now owns them. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (getppid() != master_pid) /* the master died before PDEATHSIG was set */
		_exit(1);

	log_info("serving (generation %u, pid %ld)", gen, (long)getpid());
	ev_run(w->loop, 0);
	worker_exit(w, 0);
}
