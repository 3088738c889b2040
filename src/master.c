/*
 * master.c - the master process. It parses and validates the config, opens
 * the listening sockets (one SO_REUSEPORT socket per worker slot), creates
 * the shared-memory segments, forks the workers and supervises them. It
 * never touches a client.
 *
 * Model:
 *   - Signal handlers only set flags. Signals are blocked except while the
 *     master sleeps in ppoll (sigsuspend with a timeout), so every flag is
 *     handled in the main loop, in order, never inside a handler.
 *   - Each worker process has a slot (which listener it accepts on) and the
 *     generation of the config it was started with. A worker of the current
 *     generation that dies is restarted, at once the first time and with a
 *     growing back-off while it keeps dying young; a worker of an older
 *     generation is retiring and is not replaced.
 *   - Reload (HUP) builds a new config from scratch and keeps the old one if
 *     it has any error. Keys that can change in place go to every worker over
 *     its control socket; any other change starts a new generation: new
 *     workers start (on the same listening sockets when the address did not
 *     change, so no connection is refused) and then the old ones drain.
 *   - Listeners, the stats segment and the pid file belong to the master;
 *     workers get copies of what they need at fork and close the rest. A
 *     listening socket is never closed while its group serves (see
 *     listener_steer): a closed SO_REUSEPORT socket resets its queue.
 *   - Binary upgrade (USR2, nginx's model): the master execs the binary at
 *     its own path as a child that inherits the listening sockets (the
 *     systemd LISTEN_FDS convention, also taken from a service manager)
 *     and attaches the shared segments only if kind, layout version and
 *     size match. Once its workers serve it QUITs the old master, which
 *     then leaves the segments and the pid file path to it; if it exits
 *     first, the old master takes its pid file name back and serves on.
 *     Both masters share the bus meanwhile, so reader slots are claimed in
 *     the bus itself (stats_take).
 *   - The service manager hears READY/RELOADING/STOPPING/MAINPID through
 *     notify.c when NOTIFY_SOCKET is set.
 */
#include "config.h"
#include "master.h"
#include "engine.h"
#include "log.h"
#include "bus.h"
#include "chan.h"
#include "pres.h"
#include "idem.h"
#include "seg.h"
#include "stats.h"
#include "util.h"
#include "worker.h"
#include "handoff.h"
#include "notify.h"
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SLOTS 257          /* the workers' (at most 256), and the broker's */
#define BROKER_SLOT STATS_SLOT_BROKER /* the Redis engine's broker: no listener */
_Static_assert(STATS_SLOT_BROKER == MAX_SLOTS - 1, "the broker's slot follows the workers'");
#define MAX_CHILDREN (2 * MAX_SLOTS)
#define YOUNG_MS 5000          /* a worker dying younger than this is "failing" */
#define BACKOFF_MAX_MS 10000
#define FAST_STOP_MS 5000      /* TERM/INT: hard deadline */
#define KILL_GRACE_MS 2000     /* past shutdown.timeout before SIGKILL */

pid_t master_pid;

static volatile sig_atomic_t got_hup, got_quit, got_term, got_chld, got_usr1, got_usr2;

struct child {
	pid_t pid;             /* 0: free entry */
	int slot;
	unsigned gen;
	int ctl_fd;            /* master's end of the control socket */
	int wake_fd;           /* its eventfd, which other workers write to wake it */
	int handoff_fd;        /* the sending end of its handoff socket (handoff.c) */
	unsigned bus_slot;     /* its bus reader slot = its stats block index */
	struct stats_block *ctr;
	int64_t started_ms;
	bool retiring;
};

/* The listeners: the main one, and the internal endpoints' own when
 * http_server.internal_port gives them one (conf_internal_listener). */
enum { L_MAIN, L_INTERNAL, L_COUNT };

struct slot {
	int fd[L_COUNT];       /* listening sockets, -1 when none (listener.c below) */
	int fails;             /* consecutive young deaths */
	int64_t spawn_at_ms;   /* when to (re)start its worker; 0: not pending */
};

static struct {
	const struct master_args *args;
	struct conf *conf;
	unsigned gen;
	struct child children[MAX_CHILDREN];
	struct slot slots[MAX_SLOTS];
	int nslots;            /* workers of the current generation */
	int nsock[L_COUNT];    /* listening sockets open per listener, >= nslots */
	bool steered[L_COUNT]; /* a steering program is attached to the group */
	bool shared[L_COUNT];  /* passed without SO_REUSEPORT: no more can join;
	                        * the workers share them (listener_fds) */
	struct seg stats;
	struct bus bus;
	struct ctab ctab;
	struct pres pres;
	struct idem idem;
	int64_t pres_swept_ms;
	char *pid_path;
	char *oldbin_path;     /* <pid_path>.oldbin: ours while a successor starts */
	const char *pid_cur;   /* where our pid file is now: one of the two */
	int pid_fd;
	/* Binary upgrade (USR2): the new master this one started and that has
	 * not exited (0: none); and the old master that started this one, while
	 * it runs (0: none, or gone). */
	pid_t successor;
	pid_t predecessor;
	pid_t upgrade_from;    /* the old master this one was started by (0: none) */
	bool refused;          /* a shared segment does not fit: MASTER_EXIT_LAYOUT */
	/* What to tell the service manager once the current generation serves. */
	enum { READY_NONE, READY_START, READY_RELOAD } ready_pending;
	enum { RUNNING, GRACEFUL, FAST } stopping;
	int64_t stop_deadline_ms;
	uint64_t secret[2];    /* random; every worker gets it (worker_boot) */
} M;

static void upgrade_undone(void);

static void on_signal(int sig)
{
	switch (sig) {
	case SIGHUP: got_hup = 1; break;
	case SIGQUIT: got_quit = 1; break;
	case SIGTERM:
	case SIGINT: got_term = 1; break;
	case SIGCHLD: got_chld = 1; break;
	case SIGUSR1: got_usr1 = 1; break;
	case SIGUSR2: got_usr2 = 1; break;
	}
}

const char *master_default_config(void)
{
	return ROTOR_SYSCONFDIR "/rotor/config.json";
}

char *master_pid_path(const struct conf *c)
{
	if (c->pid_file[0] != '\0')
		return xstrdup(c->pid_file);
	return xasprintf("%s/rotor-%lld.pid", c->shm_dir, c->port);
}

/* Prints a config report line through the log, or to stderr for -t. */
static void report(const struct conf_report *rep, int to_stderr)
{
	for (size_t i = 0; i < rep->nwarnings; i++) {
		if (to_stderr)
			fprintf(stderr, "rotord: warning: %s\n", rep->warnings[i]);
		else
			log_warn("config: %s", rep->warnings[i]);
	}
	for (size_t i = 0; i < rep->nerrors; i++) {
		if (to_stderr)
			fprintf(stderr, "rotord: error: %s\n", rep->errors[i]);
		else
			log_error("config: %s", rep->errors[i]);
	}
}

int master_load_config(const struct master_args *args, struct conf *c, int to_stderr)
{
	struct conf_report rep = {0};
	const char *path = args->config_path;

	conf_init(c);
	if (path == NULL) {
		path = master_default_config();
		if (access(path, F_OK) != 0) {
			conf_report_warn(&rep, "no config file at %s; running on built-in defaults", path);
			path = NULL;
		}
	}
	if (path != NULL)
		conf_apply_file(c, path, &rep);
	conf_apply_env(c, NULL, &rep);
	if (args->port != NULL)
		conf_set(c, "http_server.port", args->port, &rep);
	if (args->address != NULL)
		conf_set(c, "http_server.address", args->address, &rep);
	int rc = conf_check(c, &rep);
	/* Certificates and keys are read here, in the master, and handed to
	 * the workers as text (tls.h); not for -t/-T, which show the config
	 * as written. */
	if (rc == RT_OK)
		rc = tls_check(c, &rep, !to_stderr);
	report(&rep, to_stderr);
	conf_report_free(&rep);
	return rc;
}

/* ---- listening sockets ------------------------------------------------ */

/* Where listener L of C listens; false when C has none (the internal
 * one without a port of its own). KEY names the address key. */
static bool listen_addr(const struct conf *c, int l, const char **addr, long long *port, const char **key)
{
	if (l == L_MAIN) {
		*addr = c->address;
		*port = c->port;
		*key = "http_server.address";
		return true;
	}
	*key = "http_server.internal_address";
	return conf_internal_listener(c, addr, port);
}

/* Resolves ADDR:PORT for listening. */
static struct addrinfo *resolve(const char *addr, long long port_num, const char *key)
{
	struct addrinfo hints = {0}, *res = NULL;
	char port[16];
	const char *host = addr[0] ? addr : NULL;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%lld", port_num);
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		log_error("%s: cannot resolve \"%s\": %s", key, addr, gai_strerror(rc));
		return NULL;
	}
	/* With no address, prefer one dual-stack IPv6 socket (all interfaces,
	 * both families), as Centrifugo's ":8000" does. */
	if (host == NULL) {
		for (struct addrinfo *a = res; a; a = a->ai_next) {
			if (a->ai_family == AF_INET6) {
				int s = socket(AF_INET6, SOCK_STREAM, 0);
				if (s >= 0) {
					close(s);
					struct addrinfo *first = res;
					if (a != first) { /* swap payloads so a comes first */
						struct addrinfo tmp = *first;
						first->ai_family = a->ai_family;
						first->ai_addr = a->ai_addr;
						first->ai_addrlen = a->ai_addrlen;
						a->ai_family = tmp.ai_family;
						a->ai_addr = tmp.ai_addr;
						a->ai_addrlen = tmp.ai_addrlen;
					}
				}
				break;
			}
		}
	}
	return res;
}

/* Opens one listening socket on A; REUSEPORT joins the slot group. */
static int open_listener(const struct addrinfo *a, bool reuseport, const char *what, int l)
{
	int one = 1, zero = 0;
	int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_syscall("socket(%s)", what);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
		log_syscall("setsockopt(%s, SO_REUSEPORT)", what);
		close(fd);
		return -1;
	}
	if (a->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, a->ai_addr, a->ai_addrlen) < 0) {
		if (errno == EADDRINUSE)
			log_error("%s: %s is already in use", l == L_MAIN ? "http_server.port" :
				  "http_server.internal_port", what);
		else
			log_syscall("bind(%s)", what);
		close(fd);
		return -1;
	}
	if (reuseport && listen(fd, 4096) < 0) {
		log_syscall("listen(%s)", what);
		close(fd);
		return -1;
	}
	return fd;
}

/* Opens N sockets of listener L of C into FDS[FROM..N) (nothing when C
 * has no such listener). With PROBE, first checks with a plain bind that
 * nobody (another rotord included) listens there, since SO_REUSEPORT would
 * otherwise share the port with it. Returns RT_OK or RT_ERR (logged;
 * nothing left open). */
static int open_listeners(const struct conf *c, int l, int *fds, int from, int n, bool probe)
{
	const char *addr, *key;
	long long port;
	struct addrinfo *res;
	char what[128];

	if (!listen_addr(c, l, &addr, &port, &key))
		return RT_OK;
	if ((res = resolve(addr, port, key)) == NULL)
		return RT_ERR;
	snprintf(what, sizeof(what), "%s:%lld", addr[0] ? addr : "*", port);
	if (probe) {
		int fd = open_listener(res, false, what, l);
		if (fd < 0) {
			freeaddrinfo(res);
			return RT_ERR;
		}
		close(fd);
	}
	for (int i = from; i < n; i++) {
		fds[i] = open_listener(res, true, what, l);
		if (fds[i] < 0) {
			while (--i >= from)
				close(fds[i]);
			freeaddrinfo(res);
			return RT_ERR;
		}
	}
	freeaddrinfo(res);
	log_info("listening on %s with %d socket(s)%s", what, n - from, l == L_MAIN ? "" : " (internal endpoints)");
	return RT_OK;
}

/* Closes the master's sockets of every listener in slots [FROM, N). */
static void close_listeners(int from, int n)
{
	for (int l = 0; l < L_COUNT; l++) {
		for (int i = from; i < n; i++)
			if (M.slots[i].fd[l] >= 0) {
				close(M.slots[i].fd[l]);
				M.slots[i].fd[l] = -1;
			}
		if (M.nsock[l] > from)
			M.nsock[l] = from;
	}
}

/*
 * Listening sockets across reloads and upgrades. A SO_REUSEPORT socket
 * closed with connections in its accept queue resets them, and one that
 * stays in the group while nobody accepts on it collects connections that
 * wait for nothing. So the master never closes a socket of a group that
 * keeps serving: when the worker count shrinks, the sockets of the slots
 * beyond it stay open and in the group, the master stops the kernel from
 * choosing them for new connections (listener_steer), and a current
 * worker accepts on each of them what was queued there or still arrives
 * (slot k goes to worker k % workers, listener_fds). When the count grows
 * again, slot k takes its socket back. Sockets are closed only when their
 * listener moves to another address (all of them, a new group) or at stop.
 *
 * Steering: a classic BPF program attached to the group returns the index
 * of the socket to use; the kernel numbers a group's sockets in the order
 * they joined it, which is slot order because the master opens them in
 * slot order and never closes one but the whole group. The program draws
 * a random index below the worker count (the kernel's own choice is a hash
 * of the 4-tuple; either spreads connections evenly). Without it (a kernel
 * or a seccomp filter refusing it) everything still works: the extra
 * sockets keep receiving connections, which their workers accept.
 */
static void listener_steer(int l, int n)
{
	struct sock_filter code[] = {
		{ BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)(SKF_AD_OFF + SKF_AD_RANDOM) },
		{ BPF_ALU | BPF_MOD | BPF_K, 0, 0, (uint32_t)n },
		{ BPF_RET | BPF_A, 0, 0, 0 },
	};
	struct sock_fprog prog = { .len = ROTOR_ARRAY_LEN(code), .filter = code };
	int fd = M.slots[0].fd[l];

	if (fd < 0 || n <= 0 || (M.nsock[l] <= n && !M.steered[l]))
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) < 0) {
		log_warn("setsockopt(SO_ATTACH_REUSEPORT_CBPF) failed: %s; the %d socket(s) beyond the "
			 "worker count keep receiving connections, which the workers accept", strerror(errno),
			 M.nsock[l] - n);
		return;
	}
	M.steered[l] = true;
}

/* Fills FDS and INTERNAL with the listening sockets the worker of SLOT
 * accepts on with N workers: its slot's own, then those of every slot
 * k >= N with k % N == SLOT; with fewer sockets than workers (passed by a
 * service manager without SO_REUSEPORT, so no more can join them), socket
 * SLOT % count, shared with other workers. Returns how many (none for the
 * broker). */
static int listener_fds(int slot, int n, int *fds, bool *internal)
{
	int k = 0;

	if (slot >= n)
		return 0;
	for (int l = 0; l < L_COUNT; l++) {
		if (M.nsock[l] > 0 && M.nsock[l] < n && M.slots[slot % M.nsock[l]].fd[l] >= 0 &&
		    slot >= M.nsock[l]) {
			fds[k] = M.slots[slot % M.nsock[l]].fd[l];
			internal[k++] = l == L_INTERNAL;
			continue;
		}
		for (int i = slot; i < M.nsock[l]; i += n)
			if (M.slots[i].fd[l] >= 0) {
				fds[k] = M.slots[i].fd[l];
				internal[k++] = l == L_INTERNAL;
			}
	}
	return k;
}

/* Whether FD has SO_REUSEPORT, so that more sockets may join its group. */
static bool reuseport(int fd)
{
	int on = 0;
	socklen_t len = sizeof(on);
	return getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, &len) == 0 && on;
}

/* Whether the socket address SA is A's (family, address and port). */
static bool same_addr(const struct sockaddr_storage *sa, const struct addrinfo *a)
{
	if (sa->ss_family != a->ai_family)
		return false;
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)sa, *y = (const void *)a->ai_addr;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)sa, *y = (const void *)a->ai_addr;
		return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

/* Takes the listening sockets passed as fds 3, 4... by the systemd
 * convention (LISTEN_PID is this process, LISTEN_FDS how many; the names
 * in LISTEN_FDNAMES are not needed): from the old master in a binary
 * upgrade, or from the service manager (socket activation). Each goes to
 * the listener of C whose address it has, in the order passed, which is
 * the order of its SO_REUSEPORT group (listener_steer). One that is not a
 * listening socket of C is closed, with a log line. Unsets the variables
 * (they are this process's alone). Fills FDS and NSOCK; returns how many
 * were taken. */
static int listeners_inherit(const struct conf *c, int fds[L_COUNT][MAX_SLOTS], int nsock[L_COUNT])
{
	const char *pid_s = getenv("LISTEN_PID"), *n_s = getenv("LISTEN_FDS");
	struct addrinfo *want[L_COUNT] = { NULL };
	long long pid, n;
	int taken = 0;

	if (pid_s == NULL || n_s == NULL)
		return 0;
	if (util_parse_int(pid_s, 1, INT32_MAX, &pid) != RT_OK || pid != (long long)getpid() ||
	    util_parse_int(n_s, 0, L_COUNT * MAX_SLOTS, &n) != RT_OK) {
		log_warn("LISTEN_PID=%s LISTEN_FDS=%s are not meant for this process; ignored", pid_s, n_s);
		n = 0;
	}
	for (int l = 0; l < L_COUNT && n > 0; l++) {
		const char *addr, *key;
		long long port;
		if (listen_addr(c, l, &addr, &port, &key))
			want[l] = resolve(addr, port, key);
	}
	for (int fd = 3; fd < 3 + n; fd++) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa), alen = sizeof(int);
		int acc = 0, l = -1;

		if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 &&
		    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) == 0 && acc)
			for (int k = 0; k < L_COUNT && l < 0; k++)
				if (want[k] != NULL && same_addr(&sa, want[k]))
					l = k;
		if (l < 0 || nsock[l] >= MAX_SLOTS) {
			log_warn("inherited fd %d is not a listening socket of this configuration; closed", fd);
			close(fd);
			continue;
		}
		util_set_cloexec(fd);
		fds[l][nsock[l]++] = fd;
		taken++;
	}
	for (int l = 0; l < L_COUNT; l++)
		if (want[l] != NULL)
			freeaddrinfo(want[l]);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (taken > 0)
		log_info("took %d listening socket(s) from %s", taken,
			 M.upgrade_from != 0 ? "the old master" : "the service manager");
	return taken;
}

/* ---- shared memory ------------------------------------------------------ */

/* A version 4 UUID for this rotord (info's node uid). */
static void make_uid(char out[36])
{
	unsigned char b[16] = { 0 };
	util_random(b, sizeof(b));
	util_uuid4(b, out);
}

static int open_stats(const struct conf *c)
{
	char *path = xasprintf("%s/rotor-%lld.stats", c->shm_dir, c->port);
	int rc = seg_create(&M.stats, path, SEG_KIND_STATS, STATS_VERSION, STATS_SEG_SIZE);
	if (rc < 0) {
		log_syscall("creating the stats segment %s", path);
		free(path);
		return RT_ERR;
	}
	free(path);
	struct stats_hdr *h = seg_payload(&M.stats);
	h->magic = SEG_KIND_STATS;
	h->nslots = STATS_SLOTS;
	h->master_pid = (int32_t)getpid();
	h->master_start_ms = util_wall_ms();
	make_uid(h->uid);
	return RT_OK;
}

/* Folds the counters of B, a reaped worker's block, into the retired block
 * and frees B, under fold_seq so that a reader never sees them twice or
 * not at all (stats.h). */
static void stats_retire(struct stats_block *b)
{
	struct stats_hdr *h = seg_payload(&M.stats);
	__atomic_store_n(&h->fold_seq, h->fold_seq + 1, __ATOMIC_RELAXED); /* odd: folding */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	stats_fold(stats_retired(h), b);
	memset(b, 0, sizeof(*b));
	__atomic_store_n(&h->fold_seq, h->fold_seq + 1, __ATOMIC_RELEASE); /* even: done */
}

/* Takes a free stats block whose index is a bus reader slot nobody holds
 * (another master shares the bus during an upgrade) and claims that slot:
 * the index is the worker's bus slot. stats_give_back undoes it. */
static struct stats_block *stats_take(unsigned *index)
{
	struct stats_block *b = stats_blocks(seg_payload(&M.stats));
	for (unsigned i = 0; i < STATS_SLOTS && i < BUS_SLOTS_MAX; i++) {
		if (b[i].pid == 0 && bus_slot_claim(&M.bus, i, (int32_t)getpid()) == 0) {
			memset(&b[i], 0, sizeof(b[i]));
			b[i].pid = -1; /* taken; the real pid follows fork */
			*index = i;
			return &b[i];
		}
	}
	return NULL;
}

/* Gives back what stats_take took, for a worker that was never started. */
static void stats_give_back(struct stats_block *ctr, unsigned bus_slot)
{
	memset(ctr, 0, sizeof(*ctr));
	if (bus_slot_release(&M.bus, bus_slot) < 0)
		log_syscall("bus_slot_release(%u)", bus_slot);
}

/* For a new master during an upgrade: whether the running master's segment
 * PATH (WHAT names it) holds KIND at layout VERSION, with the SIZE this
 * binary and config make it (its geometry; WHICH names the keys that set
 * it). Logs exactly what does not fit and marks the start refused. */
static bool segment_fits(const char *what, const char *path, uint32_t kind, uint32_t version, size_t size,
			 const char *which)
{
	struct seg_hdr h;

	if (seg_peek(path, &h) < 0)
		log_error("upgrade: the %s segment %s of the running master cannot be read: %s; "
			  "a full restart is required", what, path, strerror(errno));
	else if (h.kind != kind)
		log_error("upgrade: %s holds segment kind 0x%08x, not the %s segment (kind 0x%08x); "
			  "a full restart is required", path, h.kind, what, kind);
	else if (h.version != version)
		log_error("upgrade: the layout of the %s segment %s changed from version %u (running) to %u "
			  "(this binary); a full restart is required", what, path, h.version, version);
	else if (h.size != size)
		log_error("upgrade: the %s segment %s is %llu bytes, this configuration makes it %zu (%s "
			  "changed); a full restart is required", what, path, (unsigned long long)h.size, size,
			  which);
	else
		return true;
	M.refused = true;
	return false;
}

/* The master's bus waker: bus_slot_release wakes every live worker (one
 * killed while waking others may have left them asleep). */
static void master_wake(unsigned slot, void *arg)
{
	uint64_t one = 1;
	(void)arg;
	for (int i = 0; i < MAX_CHILDREN; i++) {
		struct child *ch = &M.children[i];
		if (ch->pid != 0 && ch->bus_slot == slot && write(ch->wake_fd, &one, sizeof(one)) < 0 &&
		    errno != EAGAIN)
			log_syscall("write(eventfd of worker %d)", ch->slot);
	}
}

static int open_bus(const struct conf *c)
{
	char *path = xasprintf("%s/rotor-%lld.bus", c->shm_dir, c->port);
	if (M.upgrade_from != 0) {
		/* One bus for both masters: publications made through either
		 * generation's workers reach the clients of both. */
		int rc = RT_ERR;
		if (!segment_fits("bus", path, SEG_KIND_BUS, BUS_VERSION,
				  bus_seg_size((size_t)c->bus_size, BUS_SLOTS_MAX), "shm.bus_size"))
			rc = RT_INVAL;
		else if (bus_attach(&M.bus, path, false) < 0)
			log_syscall("bus_attach(%s)", path);
		else
			rc = RT_OK;
		free(path);
		if (rc == RT_OK)
			bus_set_waker(&M.bus, master_wake, NULL);
		return rc;
	}
	if (bus_create(&M.bus, path, (size_t)c->bus_size, BUS_SLOTS_MAX) < 0) {
		log_syscall("creating the bus segment %s (%lld bytes)", path, c->bus_size);
		free(path);
		return RT_ERR;
	}
	free(path);
	bus_set_waker(&M.bus, master_wake, NULL);
	return RT_OK;
}

char *master_history_config(const struct conf *c, struct ctab_config *cfg)
{
	char *dir = c->data_dir[0] != '\0' ? xstrdup(c->data_dir)
					   : xasprintf("%s/rotor-%lld.data", c->shm_dir, c->port);
	long long name_max = json_integer_value(conf_get(c, "channel.max_length"));
	memset(cfg, 0, sizeof(*cfg));
	cfg->dir = dir;
	cfg->streams = (uint32_t)c->history_streams;
	cfg->data_bytes = (uint64_t)c->history_bytes;
	cfg->name_max = (uint32_t)(name_max > CTAB_NAME_MAX_DEFAULT ? name_max : CTAB_NAME_MAX_DEFAULT);
	return dir;
}

/* Opens (cold) the channel table and history streams, validating what a
 * previous run left: streams that cannot be proven intact get new epochs. */
static int open_history(const struct conf *c)
{
	struct ctab_config cfg;
	char *dir = master_history_config(c, &cfg);
	struct ctab_report rep = { 0 };

	if (c->data_dir[0] == '\0' && mkdir(dir, 0700) < 0 && errno != EEXIST) {
		log_syscall("mkdir(%s)", dir);
		free(dir);
		return RT_ERR;
	}
	if (M.upgrade_from != 0) {
		char *seg = xasprintf("%s/%s", dir, CTAB_SEG_NAME);
		bool fits = segment_fits("history", seg, SEG_KIND_CTAB, CTAB_VERSION, ctab_seg_size(&cfg),
					 "shm.history_size or the stream count");
		free(seg);
		if (!fits) {
			free(dir);
			return RT_INVAL;
		}
	}
	if (ctab_open(&M.ctab, &cfg, &rep) < 0) {
		if (errno == ENOSPC || errno == EFBIG)
			log_error("shm.history_size: no room for %lld bytes of history in %s", c->history_bytes, dir);
		else
			log_syscall("opening the history segment in %s", dir);
		free(dir);
		return RT_ERR;
	}
	if (M.upgrade_from != 0 && (rep.created || rep.sizes_differ)) {
		log_error("upgrade: the history segment in %s %s; a full restart is required", dir,
			  rep.created ? "was made anew" : "has other sizes");
		M.refused = true;
		ctab_close(&M.ctab);
		free(dir);
		return RT_INVAL;
	}
	if (M.upgrade_from != 0 && !rep.cold)
		log_info("history: attached the running master's segment in %s", dir);
	else if (rep.migrated)
		log_msg(rep.streams_dropped || rep.records_dropped || rep.streams_reset ? LOG_WARN : LOG_INFO,
			"history: %s/%s migrated from layout %u to %u: %u stream(s) kept with %llu publication(s); "
			"%u stream(s) and %llu publication(s) dropped for the configured sizes; %u given a new "
			"epoch%s%s",
			dir, CTAB_SEG_NAME, rep.migrated_from, CTAB_VERSION, rep.streams_kept,
			(unsigned long long)rep.records_kept, rep.streams_dropped,
			(unsigned long long)rep.records_dropped, rep.streams_reset, rep.why ? ": " : "",
			rep.why ? rep.why : "");
	else if (rep.set_aside)
		log_warn("history: new segment in %s, every stream a new epoch: %s", dir, rep.why);
	else if (rep.created)
		log_info("history: new segment in %s%s%s", dir, rep.why ? ": " : "", rep.why ? rep.why : "");
	else
		log_info("history: %u stream(s) kept with %llu publication(s), %u given a new epoch%s%s "
			 "(%s)", rep.streams_kept, (unsigned long long)rep.records_kept, rep.streams_reset,
			 rep.why ? ": " : "", rep.why ? rep.why : "", dir);
	free(dir);
	return RT_OK;
}

static int open_presence(const struct conf *c)
{
	char *path = xasprintf("%s/rotor-%lld.pres", c->shm_dir, c->port);
	if (M.upgrade_from != 0) {
		int rc = RT_ERR;
		if (!segment_fits("presence", path, SEG_KIND_PRES, PRES_VERSION,
				  pres_seg_size((uint32_t)c->presence_nodes, (uint64_t)c->presence_bytes),
				  "the presence sizes"))
			rc = RT_INVAL;
		else if (pres_attach(&M.pres, path, false) < 0)
			log_syscall("pres_attach(%s)", path);
		else
			rc = RT_OK;
		free(path);
		return rc;
	}
	if (pres_create(&M.pres, path, (uint32_t)c->presence_nodes, (uint64_t)c->presence_bytes) < 0) {
		log_syscall("creating the presence segment %s", path);
		free(path);
		return RT_ERR;
	}
	free(path);
	return RT_OK;
}

/* The table of idempotent publish results (shm/idem.h): made anew at
 * start, shared with the running master's during an upgrade. */
static int open_idem(const struct conf *c)
{
	char *path = xasprintf("%s/rotor-%lld.idem", c->shm_dir, c->port);
	int rc = RT_ERR;

	if (M.upgrade_from != 0) {
		if (!segment_fits("idempotency results", path, SEG_KIND_IDEM, IDEM_VERSION,
				  idem_seg_size(IDEM_ENTRIES_DEFAULT), "the binary's table size"))
			rc = RT_INVAL;
		else if (idem_attach(&M.idem, path, false) < 0)
			log_syscall("idem_attach(%s)", path);
		else
			rc = RT_OK;
	} else if (idem_create(&M.idem, path, IDEM_ENTRIES_DEFAULT) < 0) {
		log_syscall("creating the idempotency segment %s", path);
	} else {
		rc = RT_OK;
	}
	free(path);
	return rc;
}

/* Sends a control message of TYPE with PAYLOAD, and FD (unless -1) as
 * SCM_RIGHTS, to one worker. Small messages: one sendmsg. */
static int send_ctl(struct child *ch, uint32_t type, const void *payload, uint32_t len, int fd)
{
	struct ctl_hdr h = { .type = type, .len = len };
	char buf[sizeof(h) + 64];
	union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int))]; } cm;
	struct iovec iov = { buf, sizeof(h) + len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (len > sizeof(buf) - sizeof(h))
		return RT_ERR;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), payload, len);
	if (fd >= 0) {
		memset(&cm, 0, sizeof(cm));
		msg.msg_control = &cm;
		msg.msg_controllen = sizeof(cm);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	while (sendmsg(ch->ctl_fd, &msg, MSG_NOSIGNAL) < 0) {
		if (errno == EINTR)
			continue;
		/* A worker that is exiting (not reaped yet) has closed its end. */
		if (errno != EPIPE && errno != ECONNRESET)
			log_syscall("sendmsg(worker %d control, type %u)", ch->slot, type);
		return RT_ERR;
	}
	return RT_OK;
}

/* Tells every live worker but EXCEPT about bus slot SLOT: TYPE with FD
 * (CTL_WAKE_FD, CTL_HANDOFF_FD), or CTL_SLOT_GONE (FD -1). */
static void announce_slot(const struct child *except, uint32_t type, unsigned slot, int fd)
{
	uint32_t s = slot;
	for (int i = 0; i < MAX_CHILDREN; i++) {
		struct child *ch = &M.children[i];
		if (ch->pid != 0 && ch != except)
			send_ctl(ch, type, &s, sizeof(s), fd);
	}
}

/* A worker's handoff socket: a connected SOCK_SEQPACKET pair, HV[0] to send
 * (the master keeps it and hands copies to the other workers), HV[1] to
 * receive (the worker's alone). Connected, so the datagram queue limit
 * (net.unix.max_dgram_qlen) does not apply; the sending buffer is raised so
 * that a request up to HANDOFF_MAX fits in one record. */
static int handoff_pair(int slot, int hv[2])
{
	int size = 4 * HANDOFF_MAX;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, hv) < 0) {
		log_syscall("socketpair(handoff of worker %d)", slot);
		return RT_ERR;
	}
	if (setsockopt(hv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) < 0)
		log_syscall("setsockopt(handoff of worker %d, SO_SNDBUF)", slot);
	return RT_OK;
}

/* Publishes the generation that serves now and its size (stats.h route). */
static void publish_route(int workers)
{
	struct stats_hdr *h = seg_payload(&M.stats);

	__atomic_store_n(&h->route, STATS_ROUTE(M.gen, workers), __ATOMIC_RELEASE);
}

/* ---- workers ------------------------------------------------------------ */

static int live_children(void)
{
	int n = 0;
	for (int i = 0; i < MAX_CHILDREN; i++)
		n += M.children[i].pid != 0;
	return n;
}

static int spawn(int slot)
{
	struct child *ch = NULL;
	int sv[2];
	sigset_t all, old;

	for (int i = 0; i < MAX_CHILDREN && ch == NULL; i++)
		if (M.children[i].pid == 0)
			ch = &M.children[i];
	if (ch == NULL) {
		log_error("too many worker processes; not starting slot %d", slot);
		return RT_ERR;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		log_syscall("socketpair(worker %d)", slot);
		return RT_ERR;
	}
	int hv[2];
	if (handoff_pair(slot, hv) != RT_OK) {
		close(sv[0]);
		close(sv[1]);
		return RT_ERR;
	}
	unsigned bus_slot;
	struct stats_block *ctr = stats_take(&bus_slot);
	if (ctr == NULL) {
		log_error("no free stats block or bus slot; not starting worker %d", slot);
		close(sv[0]);
		close(sv[1]);
		close(hv[0]);
		close(hv[1]);
		return RT_ERR;
	}
	ctr->slot = slot;
	ctr->gen = M.gen;
	ctr->start_ms = util_wall_ms();
	int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (wake_fd < 0) {
		log_syscall("eventfd(worker %d)", slot);
		stats_give_back(ctr, bus_slot);
		close(sv[0]);
		close(sv[1]);
		close(hv[0]);
		close(hv[1]);
		return RT_ERR;
	}

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid_t pid = fork();
	if (pid < 0) {
		log_syscall("fork(worker %d)", slot);
		sigprocmask(SIG_SETMASK, &old, NULL);
		close(sv[0]);
		close(sv[1]);
		close(hv[0]);
		close(hv[1]);
		close(wake_fd);
		stats_give_back(ctr, bus_slot);
		return RT_ERR;
	}
	if (pid == 0) {
		/* No exec follows, so CLOEXEC does not help: close by hand
		 * what belongs to the master and the other workers. */
		static int lfds[L_COUNT * MAX_SLOTS];
		static bool linternal[L_COUNT * MAX_SLOTS];
		int nl = listener_fds(slot, M.nslots, lfds, linternal);
		for (int i = 0; i < MAX_SLOTS; i++)
			for (int l = 0; l < L_COUNT; l++) {
				int fd = M.slots[i].fd[l], j = 0;
				while (j < nl && lfds[j] != fd)
					j++;
				if (fd >= 0 && j == nl)
					close(fd);
			}
		static int wake_fds[BUS_SLOTS_MAX], handoff_fds[BUS_SLOTS_MAX];
		for (int i = 0; i < BUS_SLOTS_MAX; i++)
			wake_fds[i] = handoff_fds[i] = -1;
		for (int i = 0; i < MAX_CHILDREN; i++) {
			if (M.children[i].pid != 0) {
				close(M.children[i].ctl_fd);
				wake_fds[M.children[i].bus_slot] = M.children[i].wake_fd;
				handoff_fds[M.children[i].bus_slot] = M.children[i].handoff_fd;
			}
		}
		if (M.pid_fd >= 0)
			close(M.pid_fd);
		close(sv[0]);
		close(hv[0]);
		struct sigaction dfl = { .sa_handler = SIG_DFL };
		static const int sigs[] = { SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGCHLD, SIGUSR1, SIGUSR2 };
		for (size_t i = 0; i < ROTOR_ARRAY_LEN(sigs); i++)
			sigaction(sigs[i], &dfl, NULL);
		ctr->pid = (int32_t)getpid();
		struct worker_boot boot = {
			.slot = slot, .gen = M.gen, .listen_fds = lfds, .internal = linternal, .nlisten = nl,
			.split = M.slots[0].fd[L_INTERNAL] >= 0, .ctl_fd = sv[1],
			.conf = M.conf, .ctr = ctr, .stats_seg = &M.stats, .bus = &M.bus, .bus_slot = bus_slot,
			.ctab = &M.ctab, .pres = &M.pres, .idem = &M.idem,
			.wake_fd = wake_fd, .wake_fds = wake_fds, .secret = M.secret,
			.handoff_fd = hv[1], .handoff_fds = handoff_fds, .broker = slot == BROKER_SLOT,
		};
		worker_main(&boot);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	close(hv[1]);
	ctr->pid = (int32_t)pid;
	ch->pid = pid;
	ch->slot = slot;
	ch->gen = M.gen;
	ch->ctl_fd = sv[0];
	ch->wake_fd = wake_fd;
	ch->handoff_fd = hv[0];
	ch->bus_slot = bus_slot;
	ch->ctr = ctr;
	announce_slot(ch, CTL_WAKE_FD, bus_slot, wake_fd);
	announce_slot(ch, CTL_HANDOFF_FD, bus_slot, hv[0]);
	/* Running, for the other workers' handoff_owner, only now that its
	 * sockets are on their way to them (unless it is draining already). */
	uint32_t starting = 0;
	__atomic_compare_exchange_n(&ctr->state, &starting, 1, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
	ch->started_ms = util_mono_ms();
	ch->retiring = false;
	M.slots[slot].spawn_at_ms = 0;
	log_info("started worker %d (pid %ld, generation %u)", slot, (long)pid, M.gen);
	return RT_OK;
}

/* Whether CONF needs a broker process: its broker side (PUB/SUB, control)
 * is in Redis. */
static bool wants_broker(const struct conf *conf)
{
	struct engine_plan p;
	return engine_plan(conf, &p, NULL) == RT_OK && p.broker_redis;
}

/* Does slot SLOT have a live worker of the current generation? */
static bool slot_served(int slot)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (M.children[i].pid != 0 && M.children[i].slot == slot && !M.children[i].retiring)
			return true;
	return false;
}

static void describe_exit(int status, char *buf, size_t n)
{
	if (WIFEXITED(status))
		snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, n, "was killed by signal %d (%s)%s", WTERMSIG(status),
			 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, n, "stopped (status 0x%x)", status);
}

static void reap(void)
{
	int status;
	pid_t pid;
	char why[128];

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct child *ch = NULL;
		for (int i = 0; i < MAX_CHILDREN && ch == NULL; i++)
			if (M.children[i].pid == pid)
				ch = &M.children[i];
		if (ch == NULL && pid == M.successor) {
			describe_exit(status, why, sizeof(why));
			M.successor = 0;
			if (M.stopping == RUNNING) {
				log_error("upgrade: the new master (pid %ld) %s before it served; this master "
					  "keeps serving", (long)pid, why);
				struct stats_hdr *h = seg_payload(&M.stats);
				__atomic_store_n(&h->upgrade_status, WIFEXITED(status) ? WEXITSTATUS(status) :
						 128 + WTERMSIG(status), __ATOMIC_RELAXED);
				upgrade_undone();
			} else {
				log_info("the new master (pid %ld) %s", (long)pid, why);
			}
			continue;
		}
		if (ch == NULL)
			continue;
		describe_exit(status, why, sizeof(why));
		close(ch->ctl_fd);
		close(ch->wake_fd);
		close(ch->handoff_fd);
		ch->pid = 0; /* not among the live ones for what follows */
		if (bus_slot_release(&M.bus, ch->bus_slot) < 0)
			log_syscall("bus_slot_release(%u)", ch->bus_slot);
		/* Its presence entries vanish at once (within the few seconds a
		 * respawn takes, clients see who is really there). */
		if (pres_release_slot(&M.pres, ch->bus_slot) < 0)
			log_syscall("pres_release_slot(%u)", ch->bus_slot);
		announce_slot(NULL, CTL_SLOT_GONE, ch->bus_slot, -1);
		char *snap = xasprintf("%s/rotor-%lld.snap.%u", M.conf->shm_dir, M.conf->port, ch->bus_slot);
		unlink(snap);
		free(snap);
		if (ch->ctr != NULL)
			stats_retire(ch->ctr);
		bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
		int64_t lived = util_mono_ms() - ch->started_ms;
		int slot = ch->slot;
		bool replace = !ch->retiring && M.stopping == RUNNING && ch->gen == M.gen;
		if (!replace) {
			if (clean || M.stopping != RUNNING)
				log_info("worker %d (pid %ld) %s", slot, (long)pid, why);
			else
				log_warn("retiring worker %d (pid %ld) %s", slot, (long)pid, why);
			continue;
		}
		struct slot *s = &M.slots[slot];
		s->fails = lived < YOUNG_MS ? s->fails + 1 : 1;
		int64_t delay = 0;
		if (s->fails > 1) {
			delay = 250LL << (s->fails - 2 < 6 ? s->fails - 2 : 6);
			if (delay > BACKOFF_MAX_MS)
				delay = BACKOFF_MAX_MS;
		}
		s->spawn_at_ms = util_mono_ms() + delay;
		log_error("worker %d (pid %ld) %s after %lld ms; restarting it%s", slot, (long)pid, why,
			  (long long)lived, delay ? " after a back-off" : "");
		if (delay)
			log_warn("worker %d keeps dying (%d times in a row); next start in %lld ms", slot,
				 s->fails, (long long)delay);
	}
}

static void signal_children(int sig, bool old_only)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		struct child *ch = &M.children[i];
		if (ch->pid != 0 && (!old_only || ch->gen != M.gen))
			kill(ch->pid, sig);
	}
}

/* Sends the config dump to one worker's control socket. The socket is
 * blocking on our side; a worker that does not read is stuck or dying,
 * and the master's write then fails with the reset once it dies. */
static int send_config(struct child *ch, const char *dump, size_t len)
{
	struct ctl_hdr h = { .type = CTL_CONFIG, .len = (uint32_t)len };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)dump, len } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
	size_t left = sizeof(h) + len;

	while (left > 0) {
		ssize_t n = sendmsg(ch->ctl_fd, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_syscall("sendmsg(worker %d control)", ch->slot);
			return RT_ERR;
		}
		left -= (size_t)n;
		while (n > 0 && msg.msg_iovlen > 0) {
			if ((size_t)n >= msg.msg_iov[0].iov_len) {
				n -= (ssize_t)msg.msg_iov[0].iov_len;
				msg.msg_iov++;
				msg.msg_iovlen--;
			} else {
				msg.msg_iov[0].iov_base = (char *)msg.msg_iov[0].iov_base + n;
				msg.msg_iov[0].iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return RT_OK;
}

/* ---- reload --------------------------------------------------------------- */

struct diff_state {
	bool restart;
	int changed;
};

static void log_change(const struct conf_key *k, const json_t *old, const json_t *nw, void *arg)
{
	struct diff_state *d = arg;
	d->changed++;
	if (!(k->flags & CONF_RELOAD))
		d->restart = true;
	if (k->flags & CONF_SECRET) {
		log_info("reload: %s changed", k->name);
		return;
	}
	char *a = json_dumps(old, JSON_ENCODE_ANY | JSON_COMPACT);
	char *b = json_dumps(nw, JSON_ENCODE_ANY | JSON_COMPACT);
	log_info("reload: %s changed from %s to %s%s", k->name, a ? a : "?", b ? b : "?",
		 k->flags & CONF_RELOAD ? "" : " (restarts the workers)");
	free(a);
	free(b);
}

static void apply_log_settings(const struct conf *old, const struct conf *nw)
{
	if (old == NULL || strcmp(old->log_file, nw->log_file) != 0)
		log_open(nw->log_file);
	log_set_level((enum log_level)nw->log_level_num);
}

static void reload(void)
{
	struct conf *nc = xcalloc(1, sizeof(*nc));
	struct diff_state d = {0};

	log_info("reload: reading the configuration again");
	notify_send("RELOADING=1\nMONOTONIC_USEC=%lld", (long long)util_mono_ns() / 1000);
	if (master_load_config(M.args, nc, 0) != RT_OK) {
		log_error("reload: the new configuration is invalid; keeping the running one unchanged");
		notify_send("READY=1");
		conf_free(nc);
		free(nc);
		return;
	}
	conf_diff(M.conf, nc, log_change, &d);
	if (d.changed == 0) {
		log_info("reload: nothing changed");
		notify_send("READY=1");
		conf_free(nc);
		free(nc);
		return;
	}
	if (strcmp(M.conf->shm_dir, nc->shm_dir) != 0 || strcmp(M.conf->pid_file, nc->pid_file) != 0)
		log_warn("reload: shm.dir and pid_file changes take effect at the next start");
	if (M.conf->bus_size != nc->bus_size || strcmp(M.conf->data_dir, nc->data_dir) != 0 ||
	    M.conf->history_streams != nc->history_streams || M.conf->history_bytes != nc->history_bytes)
		log_warn("reload: shm.bus_size, shm.data_dir and the history sizes take effect at the next start");
	if (M.conf->presence_nodes != nc->presence_nodes || M.conf->presence_bytes != nc->presence_bytes)
		log_warn("reload: the presence sizes take effect at the next start");

	if (!d.restart) {
		char *dump = conf_dump(nc, false);
		size_t len = strlen(dump);
		apply_log_settings(M.conf, nc);
		for (int i = 0; i < MAX_CHILDREN; i++)
			if (M.children[i].pid != 0 && !M.children[i].retiring)
				send_config(&M.children[i], dump, len);
		free(dump);
		conf_free(M.conf);
		free(M.conf);
		M.conf = nc;
		log_info("reload: %d change(s) applied in place by every worker", d.changed);
		notify_send("READY=1");
		return;
	}

	/* A new generation. New listening sockets (a new group) for a
	 * listener whose address changed or that appeared; otherwise the same
	 * ones, plus new ones for the slots the count grew by. Sockets beyond
	 * a shrunk count stay open (see listener_steer). */
	int n = (int)nc->workers;
	int fds[L_COUNT][MAX_SLOTS], nsock[L_COUNT];
	bool moved[L_COUNT];
	for (int l = 0; l < L_COUNT; l++) {
		const char *a0 = "", *a1 = "", *key;
		long long p0 = 0, p1 = 0;
		bool had = listen_addr(M.conf, l, &a0, &p0, &key), has = listen_addr(nc, l, &a1, &p1, &key);
		int rc;

		moved[l] = had != has || strcmp(a0, a1) != 0 || p0 != p1;
		for (int i = 0; i < MAX_SLOTS; i++)
			fds[l][i] = moved[l] || i >= M.nsock[l] ? -1 : M.slots[i].fd[l];
		if (moved[l])
			rc = open_listeners(nc, l, fds[l], 0, n, true);
		else
			rc = n <= M.nsock[l] || M.shared[l] ? RT_OK
							    : open_listeners(nc, l, fds[l], M.nsock[l], n, false);
		nsock[l] = 0;
		while (nsock[l] < MAX_SLOTS && fds[l][nsock[l]] >= 0)
			nsock[l]++;
		if (rc == RT_OK)
			continue;
		log_error(moved[l] ? "reload: cannot listen on the new address; keeping the running configuration"
				   : "reload: cannot open more listening sockets; keeping the running configuration");
		notify_send("READY=1");
		/* Undo what this reload opened. */
		for (int k = 0; k < l; k++)
			for (int i = 0; i < nsock[k]; i++)
				if (moved[k] || i >= M.nsock[k])
					close(fds[k][i]);
		conf_free(nc);
		free(nc);
		return;
	}
	/* A moved listener's old group: the retiring workers hold their own
	 * copies until they stop accepting. */
	for (int l = 0; l < L_COUNT; l++) {
		if (!moved[l])
			continue;
		for (int i = 0; i < M.nsock[l]; i++)
			close(M.slots[i].fd[l]);
		M.steered[l] = false;
		M.shared[l] = false;
	}
	for (int i = 0; i < MAX_SLOTS; i++) {
		for (int l = 0; l < L_COUNT; l++)
			M.slots[i].fd[l] = fds[l][i];
		M.slots[i].fails = 0;
		M.slots[i].spawn_at_ms = 0;
	}
	M.nslots = n;
	for (int l = 0; l < L_COUNT; l++) {
		M.nsock[l] = nsock[l];
		listener_steer(l, n);
	}

	apply_log_settings(M.conf, nc);
	conf_free(M.conf);
	free(M.conf);
	M.conf = nc;
	M.gen++;
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (M.children[i].pid != 0)
			M.children[i].retiring = true;
	/* Two brokers would each feed the bus: the old one goes first. */
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (M.children[i].pid != 0 && M.children[i].slot == BROKER_SLOT)
			kill(M.children[i].pid, SIGTERM);
	for (int i = 0; i < n; i++)
		spawn(i);
	if (wants_broker(nc))
		spawn(BROKER_SLOT);
	publish_route(n);
	M.ready_pending = READY_RELOAD;
	signal_children(SIGQUIT, true);
	log_info("reload: generation %u started with %d worker(s); the old workers drain", M.gen, n);
}

/* ---- pid file ------------------------------------------------------------ */

/* Creates and locks the pid file. A lock held by another process means a
 * rotord already runs with this pid file. */
static int pidfile_open(void)
{
	char buf[32];
	M.pid_fd = open(M.pid_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (M.pid_fd < 0) {
		log_syscall("open(%s)", M.pid_path);
		return RT_ERR;
	}
	if (flock(M.pid_fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t k = pread(M.pid_fd, buf, sizeof(buf) - 1, 0);
		buf[k > 0 ? k : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		log_error("pid_file: %s is locked: rotord is already running (pid %s)", M.pid_path, buf);
		close(M.pid_fd);
		M.pid_fd = -1;
		return RT_ERR;
	}
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(M.pid_fd, 0) < 0 || pwrite(M.pid_fd, buf, (size_t)n, 0) != n) {
		log_syscall("write(%s)", M.pid_path);
		return RT_ERR;
	}
	return RT_OK;
}

static void pidfile_remove(void)
{
	if (M.pid_fd >= 0) {
		unlink(M.pid_cur);
		close(M.pid_fd);
		M.pid_fd = -1;
	}
}

/* ---- binary upgrade -------------------------------------------------------- */

/* In the child forked by upgrade_start: passes every listening socket as
 * fds 3, 4... (the systemd convention: LISTEN_FDS, LISTEN_PID,
 * LISTEN_FDNAMES), main listener first, each in its group's order, closes
 * everything else, says in ROTOR_UPGRADE_FROM which master it replaces and
 * execs the binary at the path this master was started from, with the
 * same arguments. Never returns. */
static ROTOR_NORETURN void exec_successor(pid_t old)
{
	static int fds[L_COUNT * MAX_SLOTS];
	static char names[L_COUNT * MAX_SLOTS * 16];
	char num[32];
	int n = 0;
	size_t nl = 0;

	for (int l = 0; l < L_COUNT; l++)
		for (int i = 0; i < M.nsock[l]; i++) {
			fds[n++] = M.slots[i].fd[l];
			nl += (size_t)snprintf(names + nl, sizeof(names) - nl, "%s%s", nl ? ":" : "",
					       l == L_MAIN ? "main" : "internal");
		}
	/* Above every target first, so that no dup2 clobbers a source. */
	for (int i = 0; i < n; i++)
		if ((fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3 + n)) < 0) {
			fprintf(stderr, "rotord: upgrade: fcntl(F_DUPFD_CLOEXEC) failed: %s\n", strerror(errno));
			_exit(127);
		}
	for (int i = 0; i < n; i++)
		if (dup2(fds[i], 3 + i) < 0) { /* the copy is not close-on-exec */
			fprintf(stderr, "rotord: upgrade: dup2 failed: %s\n", strerror(errno));
			_exit(127);
		}
	close_range((unsigned)(3 + n), ~0U, 0);
	snprintf(num, sizeof(num), "%d", n);
	setenv("LISTEN_FDS", num, 1);
	snprintf(num, sizeof(num), "%ld", (long)getpid());
	setenv("LISTEN_PID", num, 1);
	setenv("LISTEN_FDNAMES", names, 1);
	snprintf(num, sizeof(num), "%ld", (long)old);
	setenv("ROTOR_UPGRADE_FROM", num, 1);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(M.args->exe, M.args->argv);
	fprintf(stderr, "rotord: upgrade: execv(%s) failed: %s\n", M.args->exe, strerror(errno));
	_exit(127);
}

/* The upgrade did not happen: the pid file takes its name back, and the
 * service manager learns that this master still serves. */
static void upgrade_undone(void)
{
	struct stats_hdr *h = seg_payload(&M.stats);

	__atomic_store_n(&h->successor, 0, __ATOMIC_RELEASE);
	if (M.pid_cur == M.oldbin_path) {
		if (rename(M.oldbin_path, M.pid_path) < 0)
			log_syscall("rename(%s, %s)", M.oldbin_path, M.pid_path);
		else
			M.pid_cur = M.pid_path;
	}
	notify_send("READY=1\nSTATUS=the binary upgrade failed; the old master serves");
	/* Last: rotorctl upgrade reads it as "done failing". */
	__atomic_fetch_add(&h->upgrades_failed, 1, __ATOMIC_RELEASE);
}

/* USR2: starts the binary at this master's path as a new master that
 * inherits the listening sockets and attaches the shared segments; it
 * tells this one to QUIT once its workers serve. Refused while an upgrade
 * is in flight: this master has a successor that has not exited, or is
 * itself a successor whose old master still runs (nginx's two rules). */
static void upgrade_start(void)
{
	struct stats_hdr *h = seg_payload(&M.stats);
	sigset_t all, old;

	if (M.stopping != RUNNING)
		return;
	if (M.args->exe == NULL) {
		log_error("upgrade: the path of this binary is unknown; SIGUSR2 ignored");
		__atomic_fetch_add(&h->upgrades_refused, 1, __ATOMIC_RELEASE);
		return;
	}
	if (M.successor != 0) {
		log_warn("upgrade: already in flight (new master pid %ld); SIGUSR2 ignored", (long)M.successor);
		__atomic_fetch_add(&h->upgrades_refused, 1, __ATOMIC_RELEASE);
		return;
	}
	if (M.predecessor != 0 && getppid() != M.predecessor)
		M.predecessor = 0; /* gone since the loop last looked */
	if (M.predecessor != 0) {
		log_warn("upgrade: this master is itself the new binary of an upgrade in flight (old master "
			 "pid %ld); SIGUSR2 ignored", (long)M.predecessor);
		__atomic_fetch_add(&h->upgrades_refused, 1, __ATOMIC_RELEASE);
		return;
	}
	if (rename(M.pid_path, M.oldbin_path) < 0) {
		log_syscall("upgrade: rename(%s, %s)", M.pid_path, M.oldbin_path);
		__atomic_fetch_add(&h->upgrades_refused, 1, __ATOMIC_RELEASE);
		return;
	}
	M.pid_cur = M.oldbin_path;
	__atomic_fetch_add(&h->upgrades_started, 1, __ATOMIC_RELEASE);
	notify_send("RELOADING=1\nSTATUS=binary upgrade: starting %s", M.args->exe);
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid_t pid = fork();
	if (pid == 0)
		exec_successor(master_pid);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		log_syscall("upgrade: fork");
		upgrade_undone();
		return;
	}
	M.successor = pid;
	__atomic_store_n(&h->successor, (int32_t)pid, __ATOMIC_RELEASE);
	log_info("upgrade: started %s as the new master (pid %ld); the pid file is %s until it serves",
		 M.args->exe, (long)pid, M.oldbin_path);
}

/* Whether every worker of the current generation serves: each one has
 * reported its engine (node_health_report, just before its loop runs). */
static bool generation_serves(void)
{
	int n = 0;

	for (int i = 0; i < MAX_CHILDREN; i++) {
		const struct child *ch = &M.children[i];
		if (ch->pid == 0 || ch->retiring || ch->gen != M.gen || ch->slot >= M.nslots)
			continue;
		if (__atomic_load_n(&ch->ctr->engine, __ATOMIC_RELAXED) == STATS_ENGINE_STARTING)
			return false;
		n++;
	}
	return n == M.nslots;
}

/* Once the current generation serves: READY=1 to the service manager; for
 * a new master of an upgrade, MAINPID= first and QUIT to the old master. */
static void ready_check(void)
{
	if (M.ready_pending == READY_NONE || !generation_serves())
		return;
	if (M.ready_pending == READY_START && M.upgrade_from != 0) {
		notify_send("MAINPID=%ld\nREADY=1\nSTATUS=serving with %d worker(s) after a binary upgrade",
			    (long)getpid(), M.nslots);
		log_info("upgrade: serving; telling the old master (pid %ld) to stop gracefully",
			 (long)M.predecessor);
		if (M.predecessor != 0 && kill(M.predecessor, SIGQUIT) < 0)
			log_syscall("kill(%ld, SIGQUIT)", (long)M.predecessor);
	} else {
		notify_send("READY=1\nSTATUS=serving with %d worker(s)", M.nslots);
	}
	M.ready_pending = READY_NONE;
}

/* ---- the loop -------------------------------------------------------------- */

static void begin_stop(bool graceful)
{
	if (M.stopping == FAST || (M.stopping == GRACEFUL && graceful))
		return;
	M.stopping = graceful ? GRACEFUL : FAST;
	/* Not from a new binary whose old master still serves: the service
	 * is not stopping. */
	if (M.predecessor == 0 || getppid() != M.predecessor)
		notify_send("STOPPING=1");
	int64_t budget = graceful ? M.conf->shutdown_timeout_ms + KILL_GRACE_MS : FAST_STOP_MS;
	M.stop_deadline_ms = util_mono_ms() + budget;
	log_info("%s shutdown: %d worker(s) to stop", graceful ? "graceful" : "fast", live_children());
	close_listeners(0, MAX_SLOTS);
	signal_children(graceful ? SIGQUIT : SIGTERM, false);
}

static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	static const int sigs[] = { SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGCHLD, SIGUSR1, SIGUSR2 };
	sigset_t block;

	sigemptyset(&sa.sa_mask);
	sigemptyset(&block);
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(sigs); i++) {
		sigaction(sigs[i], &sa, NULL);
		sigaddset(&block, sigs[i]);
	}
	signal(SIGPIPE, SIG_IGN);
	sigprocmask(SIG_BLOCK, &block, NULL);
}

int master_run(const struct master_args *args, struct conf *conf)
{
	sigset_t waitmask;

	M.args = args;
	M.conf = conf;
	M.gen = 1;
	M.pid_fd = -1;
	master_pid = getpid();
	for (int i = 0; i < MAX_SLOTS; i++)
		for (int l = 0; l < L_COUNT; l++)
			M.slots[i].fd[l] = -1;
	log_set_role("master");
	apply_log_settings(NULL, conf);
	install_signals();
	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGHUP);
	sigdelset(&waitmask, SIGQUIT);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGCHLD);
	sigdelset(&waitmask, SIGUSR1);
	sigdelset(&waitmask, SIGUSR2);

	M.pid_path = master_pid_path(conf);
	M.oldbin_path = xasprintf("%s.oldbin", M.pid_path);
	M.pid_cur = M.pid_path;
	M.nslots = (int)conf->workers;
	const char *from = getenv("ROTOR_UPGRADE_FROM");
	long long old_pid = 0;
	if (from != NULL) {
		if (util_parse_int(from, 2, INT32_MAX, &old_pid) != RT_OK || old_pid != (long long)getppid()) {
			log_error("ROTOR_UPGRADE_FROM=%s is not this process's parent; not starting", from);
			return 1;
		}
		M.upgrade_from = M.predecessor = (pid_t)old_pid;
		unsetenv("ROTOR_UPGRADE_FROM");
		log_info("upgrade: starting as the new binary of the master with pid %lld", old_pid);
	}
	if (util_random(M.secret, sizeof(M.secret)) != RT_OK)
		return 1;
	if (pidfile_open() != RT_OK)
		return 1;
	/* Listening sockets: those passed (upgrade, socket activation), then
	 * new ones for the slots still missing. Nobody else may listen where
	 * none was passed (the probe). */
	int fds[L_COUNT][MAX_SLOTS], nsock[L_COUNT] = { 0 };
	for (int l = 0; l < L_COUNT; l++)
		for (int i = 0; i < MAX_SLOTS; i++)
			fds[l][i] = -1;
	listeners_inherit(conf, fds, nsock);
	bool ok = true;
	for (int l = 0; l < L_COUNT && ok; l++) {
		if (nsock[l] > 0 && !reuseport(fds[l][0])) {
			M.shared[l] = true;
			if (nsock[l] < M.nslots)
				log_info("the %d listening socket(s) passed without SO_REUSEPORT are shared by the "
					 "%d workers", nsock[l], M.nslots);
			continue;
		}
		/* The old master may have steered the group for another
		 * count: steer it again for ours. */
		M.steered[l] = nsock[l] > 0;
		ok = nsock[l] >= M.nslots ||
		     open_listeners(conf, l, fds[l], nsock[l], M.nslots, nsock[l] == 0) == RT_OK;
	}
	for (int l = 0; l < L_COUNT; l++)
		for (int i = 0; i < MAX_SLOTS; i++)
			if ((M.slots[i].fd[l] = fds[l][i]) >= 0)
				M.nsock[l] = i + 1;
	int status = 1;
	/* The shared segments first: a new binary that refuses them must not
	 * have replaced the running master's stats segment. */
	if (ok && open_bus(conf) == RT_OK) {
		if (open_history(conf) == RT_OK) {
			if (open_presence(conf) == RT_OK) {
				if (open_idem(conf) == RT_OK) {
					if (open_stats(conf) == RT_OK)
						status = 0;
					else
						idem_detach(&M.idem);
				}
				if (status != 0)
					pres_detach(&M.pres);
			}
			if (status != 0)
				ctab_close(&M.ctab);
		}
		if (status != 0)
			bus_detach(&M.bus);
	}
	if (status != 0) {
		close_listeners(0, MAX_SLOTS);
		pidfile_remove();
		return M.refused ? MASTER_EXIT_LAYOUT : 1;
	}
	for (int l = 0; l < L_COUNT; l++)
		listener_steer(l, M.nslots);
	log_info("rotor %s starting %d worker(s) (master pid %ld)", PACKAGE_VERSION, M.nslots,
		 (long)getpid());
	for (int i = 0; i < M.nslots; i++)
		spawn(i);
	if (wants_broker(conf))
		spawn(BROKER_SLOT);
	publish_route(M.nslots);
	M.ready_pending = READY_START;
	if (args->ready_fd >= 0) {
		/* rotord -d: the waiting parent exits 0 now; had we failed
		 * before this, the pipe's EOF would have made it exit 1. */
		if (write(args->ready_fd, "0", 1) != 1)
			log_syscall("write(readiness pipe)");
		close(args->ready_fd);
	}

	for (;;) {
		int64_t now = util_mono_ms();
		int64_t wake = now + 1000;

		if (M.stopping == RUNNING) {
			ready_check();
			if (M.ready_pending != READY_NONE)
				wake = now + 20; /* the workers report soon */
		}
		if (M.predecessor != 0 && getppid() != M.predecessor) {
			log_info("upgrade: the old master (pid %ld) is gone; the upgrade is complete",
				 (long)M.predecessor);
			M.predecessor = 0;
		}

		for (int i = 0; i < MAX_SLOTS && M.stopping == RUNNING; i++) {
			if (i >= M.nslots && i != BROKER_SLOT)
				continue;
			if (M.slots[i].spawn_at_ms && !slot_served(i)) {
				if (M.slots[i].spawn_at_ms <= now)
					spawn(i);
				else if (M.slots[i].spawn_at_ms < wake)
					wake = M.slots[i].spawn_at_ms;
			}
		}
		if (M.stopping != RUNNING) {
			if (live_children() == 0)
				break;
			if (now >= M.stop_deadline_ms) {
				log_error("workers did not stop in time; killing %d", live_children());
				signal_children(SIGKILL, false);
				M.stop_deadline_ms = now + 1000;
			}
			if (M.stop_deadline_ms < wake)
				wake = M.stop_deadline_ms;
		}

		/* Reclaims the presence of hung workers and expired entries. */
		if (now - M.pres_swept_ms >= 1000) {
			M.pres_swept_ms = now;
			if (pres_sweep(&M.pres, now, 4096) < 0)
				log_syscall("pres_sweep");
		}
		int64_t ms = wake > now ? wake - now : 0;
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
		if (!(got_chld | got_hup | got_quit | got_term | got_usr1 | got_usr2))
			ppoll(NULL, 0, &ts, &waitmask);

		if (got_chld) {
			got_chld = 0;
			reap();
		}
		if (got_term) {
			got_term = 0;
			begin_stop(false);
		}
		if (got_quit) {
			got_quit = 0;
			begin_stop(true);
		}
		if (got_hup) {
			got_hup = 0;
			if (M.stopping == RUNNING)
				reload();
		}
		if (got_usr1) {
			got_usr1 = 0;
			log_reopen();
			log_info("log reopened");
			signal_children(SIGUSR1, false);
		}
		if (got_usr2) {
			got_usr2 = 0;
			upgrade_start();
		}
	}
	log_info("all workers stopped; exiting");
	if (M.predecessor != 0 && getppid() == M.predecessor) {
		/* A new binary stopped before its old master: that one still
		 * serves from the bus, presence and history. */
		log_info("the old master (pid %ld) serves on; the shared segments stay", (long)M.predecessor);
		seg_unlink(&M.stats);
	} else if (M.successor != 0) {
		/* Handed over: the new master uses the bus, presence and
		 * history, and the stats path is its own segment now. */
		log_info("the new master (pid %ld) serves on; the shared segments stay", (long)M.successor);
	} else {
		seg_unlink(&M.stats);
		bus_unlink(&M.bus);
		pres_unlink(&M.pres);
		idem_unlink(&M.idem);
		/* Every worker is gone: mark the history clean, so the next
		 * start keeps every stream that validates, even after a
		 * reboot. */
		if (ctab_shutdown(&M.ctab) < 0)
			log_syscall("ctab_shutdown");
	}
	seg_detach(&M.stats);
	bus_detach(&M.bus);
	pres_detach(&M.pres);
	idem_detach(&M.idem);
	ctab_close(&M.ctab);
	pidfile_remove();
	conf_free(M.conf);
	return 0;
}
