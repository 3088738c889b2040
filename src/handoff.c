/*
 * handoff.c - an HTTP connection handed to the worker that owns what its
 * request names (handoff.h).
 *
 * Model: the sender has parsed a request completely and finds, in its
 * route handler, that another worker owns it. It writes one record - the
 * header, the request re-serialised by http.c, then the bytes it had read
 * after it - and sends it with the connection's socket as SCM_RIGHTS over
 * the owner's handoff socket, without blocking. If the kernel took it, the
 * sender forgets the connection: it removes the socket from its own epoll
 * set and closes its descriptor, never shutdown(2), which would end the
 * connection the owner now holds. Anything the sender had queued for the
 * connection must have been written first (http_req_defer_until_flushed),
 * and nothing unread in the kernel is lost: it stays with the socket. The
 * owner reads records from its own end in a loop and serves each
 * connection through http_accept_handed, the request marked as handed (so
 * it is served there, never sent on: a routing change between the two
 * workers costs one local answer, not a loop).
 *
 * Why the explicit EPOLL_CTL_DEL: an epoll registration belongs to the
 * open file description, which survives our close (the owner holds it), so
 * the sender's epoll set would keep reporting the socket's events under
 * its old number; libev then rebuilds its whole epoll set to get rid of
 * them. libev does not expose its epoll descriptor, so handoff_init finds
 * it once in /proc/self/fd (the only eventpoll of a worker); without it
 * (no /proc) everything still works, at the cost of those rebuilds.
 *
 * A TLS connection is not handed (its keys are this process's): the owner
 * gets one end of a socketpair in its place and this worker stays in the
 * middle, relaying plaintext both ways until either side ends (see "TLS
 * relay"); to the owner it looks like any handed connection.
 *
 * A sender whose owner died meanwhile gets EPIPE/ECONNREFUSED (the owner's
 * end is closed with it), and a record queued to an owner that dies
 * before reading it is closed with its socket by the kernel: the client
 * sees its connection close, as with any worker that dies.
 */
#include "config.h"
#include "handoff.h"
#include "conn.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "seg.h"
#include "siphash.h"
#include "stats.h"
#include "util.h"
#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RECV_BATCH 32 /* records taken per readiness callback */
#define FDS_MAX 4     /* descriptors a record may carry before it is refused */

static struct {
	int epfd;         /* libev's epoll descriptor, or -1 */
	struct jw out;    /* the record being built (reused) */
	char *in;         /* HANDOFF_MAX bytes, allocated at the first record */
} H = { .epfd = -1 };

/* ---- owners -------------------------------------------------------------- */

int handoff_owner(const struct worker *w, const void *key, size_t n, unsigned *slot)
{
	const struct stats_hdr *h;
	const struct stats_block *b;
	uint64_t route;
	uint32_t gen, workers;
	int32_t want;

	if (!w->stats_seg)
		return RT_ERR;
	h = seg_payload(w->stats_seg);
	route = __atomic_load_n(&h->route, __ATOMIC_ACQUIRE);
	gen = STATS_ROUTE_GEN(route);
	workers = STATS_ROUTE_WORKERS(route);
	if (workers == 0)
		return RT_ERR;
	want = (int32_t)(siphash24(w->secret, key, n) % workers);
	b = stats_blocks(seg_payload(w->stats_seg));
	for (unsigned i = 0; i < STATS_SLOTS && i < BUS_SLOTS_MAX; i++) {
		if (__atomic_load_n(&b[i].pid, __ATOMIC_RELAXED) > 0 &&
		    __atomic_load_n(&b[i].gen, __ATOMIC_RELAXED) == gen &&
		    __atomic_load_n(&b[i].slot, __ATOMIC_RELAXED) == want &&
		    __atomic_load_n(&b[i].state, __ATOMIC_RELAXED) == 1) {
			*slot = i;
			return RT_OK;
		}
	}
	return RT_ERR;
}

/* ---- TLS relay ------------------------------------------------------------ */

/* A TLS connection cannot travel: its keys live in this process. The
 * owner gets one end of a socketpair instead, as if it were the client's
 * socket, and this worker relays plaintext between the two until either
 * side ends: the TLS conn and the pair end are each other's ud. Reading
 * one pauses while the other's output is blocked. */
static size_t relay_read(struct conn *c, const char *data, size_t len)
{
	struct conn *peer = c->ud;

	if (peer && conn_queue_copy(peer, data, len) == RT_OK && conn_write_blocked(peer))
		conn_read_pause(c);
	return len;
}

static void relay_flushed(struct conn *c)
{
	if (c->ud)
		conn_read_resume(c->ud);
}

/* Either side ended: the other writes what it has, then closes. */
static void relay_eof(struct conn *c)
{
	conn_close(c);
}

static void relay_close(struct conn *c)
{
	struct conn *peer = c->ud;

	if (peer) {
		peer->ud = NULL;
		conn_read_resume(peer);
		conn_shutdown(peer);
	}
}

static const struct conn_ops relay_ops = {
	.name = "relay",
	.on_read = relay_read,
	.on_eof = relay_eof,
	.on_flushed = relay_flushed,
	.on_close = relay_close,
};

/* ---- sending ----------------------------------------------------------- */

int handoff_request(struct http_req *req, unsigned slot)
{
	struct conn *c = req->conn;
	struct worker *w = c->w;
	int fd = slot < BUS_SLOTS_MAX ? w->handoff_fds[slot] : -1;
	union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int))]; } cm;
	struct handoff_hdr hdr = { .magic = HANDOFF_MAGIC };
	struct iovec iov[2];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = &cm, .msg_controllen = sizeof(cm) };
	struct cmsghdr *ch;
	const char *rest;
	size_t rest_len;
	ssize_t k;

	int pair[2] = { -1, -1 };

	if (req->handed || fd < 0 || slot == w->bus_slot)
		return RT_ERR;
	if (http_req_defer_until_flushed(req))
		return RT_AGAIN;
	H.out.len = 0;
	http_req_serialize(req, &H.out);
	/* Relayed, the bytes after the request follow through the relay. */
	if (!c->tls) {
		rest = http_req_rest(req, &rest_len);
		jw_raw(&H.out, rest, rest_len);
	}
	if (H.out.len > HANDOFF_MAX - sizeof(hdr)) {
		log_debug("handoff: %zu bytes of request are too many to hand to bus slot %u", H.out.len, slot);
		return RT_ERR;
	}
	hdr.len = (uint32_t)H.out.len;
	iov[0] = (struct iovec){ &hdr, sizeof(hdr) };
	iov[1] = (struct iovec){ H.out.buf, H.out.len };
	memset(&cm, 0, sizeof(cm));
	ch = CMSG_FIRSTHDR(&mh);
	ch->cmsg_level = SOL_SOCKET;
	ch->cmsg_type = SCM_RIGHTS;
	ch->cmsg_len = CMSG_LEN(sizeof(int));
	if (c->tls && socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0) {
		log_syscall("socketpair(TLS relay)");
		return RT_ERR;
	}
	memcpy(CMSG_DATA(ch), c->tls ? &pair[1] : &c->fd, sizeof(int));
	do
		k = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (k < 0 && errno == EINTR);
	if (pair[1] >= 0)
		close(pair[1]); /* the owner's now, or nobody's */
	if (k < 0) {
		int e = errno;

		if (pair[0] >= 0)
			close(pair[0]);
		if (e == EPIPE || e == ECONNREFUSED || e == ECONNRESET) {
			log_debug("handoff: the worker at bus slot %u is gone", slot);
			return RT_CLOSED;
		}
		log_warn("sendmsg(handoff to bus slot %u, %zu bytes) failed: %s", slot, H.out.len, strerror(e));
		return RT_ERR;
	}
	if (c->tls) {
		struct conn *r = conn_new(w, pair[0], &relay_ops, NULL);

		log_debug("handoff: fd %d (%s %s) relayed to bus slot %u over TLS", c->fd, req->method_name,
			  req->path, slot);
		r->ud = http_hijack(req, &relay_ops, r);
		return RT_OK;
	}
	/* The owner holds the socket now: forget it here, leaving it open. */
	if (H.epfd >= 0 && epoll_ctl(H.epfd, EPOLL_CTL_DEL, c->fd, NULL) < 0 && errno != ENOENT)
		log_debug("epoll_ctl(DEL fd %d) failed: %s", c->fd, strerror(errno));
	log_debug("handoff: fd %d (%s %s) handed to bus slot %u", c->fd, req->method_name, req->path, slot);
	conn_close(c);
	return RT_OK;
}

/* ---- receiving ------------------------------------------------------------- */

int handoff_parse(const char *buf, size_t n, int nfds, int truncated, const char **data, size_t *len)
{
	struct handoff_hdr hdr;

	if (truncated || nfds != 1 || n <= sizeof(hdr))
		return RT_INVAL;
	memcpy(&hdr, buf, sizeof(hdr));
	if (hdr.magic != HANDOFF_MAGIC || hdr.len != n - sizeof(hdr))
		return RT_INVAL;
	*data = buf + sizeof(hdr);
	*len = hdr.len;
	return RT_OK;
}

/* Reads one record; false when there is none (or the socket failed). */
static bool recv_one(struct worker *w)
{
	union { struct cmsghdr h; char space[CMSG_SPACE(FDS_MAX * sizeof(int))]; } cm;
	struct iovec iov = { H.in, HANDOFF_MAX };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cm, .msg_controllen = sizeof(cm) };
	int fds[FDS_MAX], nfds = 0;
	const char *data;
	size_t len;
	ssize_t k;

	do
		k = recvmsg(w->handoff_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (k < 0 && errno == EINTR);
	if (k < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			log_syscall("recvmsg(handoff fd %d)", w->handoff_fd);
		return false;
	}
	if (k == 0)
		return false; /* every sending end is closed: only at exit */
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; (i + 1) * sizeof(int) <= h->cmsg_len - CMSG_LEN(0); i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
			if (nfds < FDS_MAX)
				fds[nfds++] = fd;
			else
				close(fd);
		}
	}
	if (handoff_parse(H.in, (size_t)k, nfds, mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC), &data, &len) != RT_OK) {
		log_warn("handoff: malformed record (%zd bytes, %d descriptor(s)); dropped", k, nfds);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		return true;
	}
	util_set_nonblock(fds[0]);
	log_debug("handoff: fd %d taken over with %zu bytes", fds[0], len);
	http_accept_handed(w, fds[0], data, len);
	return true;
}

static void on_handoff(struct ev_loop *loop, ev_io *io, int revents)
{
	struct worker *w = io->data;

	if (!H.in)
		H.in = xmalloc(HANDOFF_MAX);
	for (int i = 0; i < RECV_BATCH && recv_one(w); i++)
		;
}

/* ---- set-up -------------------------------------------------------------- */

/* libev's epoll descriptor: this process's one eventpoll, or -1. */
static int find_epoll_fd(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int found = -1;

	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char path[64], link[64];
		ssize_t k;
		int fd = atoi(e->d_name);

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		k = readlink(path, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = '\0';
		if (strcmp(link, "anon_inode:[eventpoll]") == 0) {
			if (found >= 0) {
				found = -1; /* more than one: cannot tell which */
				break;
			}
			found = fd;
		}
	}
	closedir(d);
	return found;
}

void handoff_init(struct worker *w)
{
	H.epfd = find_epoll_fd();
	if (H.epfd < 0)
		log_info("handoff: libev's epoll descriptor not found; handed connections cost a rebuild of it");
	if (w->handoff_fd < 0)
		return;
	util_set_nonblock(w->handoff_fd);
	ev_io_init(&w->handoff_w, on_handoff, w->handoff_fd, EV_READ);
	w->handoff_w.data = w;
	ev_io_start(w->loop, &w->handoff_w);
}
