/*
 * sock.c - non-blocking client TCP connections for the generator.
 *
 * Input: every connection of the process reads into one static buffer, one
 * read(2) per readiness event (level-triggered, as the server does), and
 * the layer above parses in place. Only a partial message at the end is
 * copied into a per-connection carry buffer, freed when used up, so an idle
 * connection holds no input memory. Output normally goes straight to the
 * kernel; what it refuses waits in s->out with EV_WRITE armed.
 *
 * With io_uring (sock_setup's `uring`), reads skip the system call per
 * socket: each open socket has one multishot recvmsg into a ring of
 * provided buffers, and one kernel entry runs every pending receive and
 * posts their completions. A system call per read costs about 1 us on
 * this machine's guest kernel, a sixth of what the generator spends per
 * delivery. Sockets are then watched by libev only for connect and
 * writes. Each request's user_data is the sock's address with a
 * generation in the top 16 bits, so completions of a closed (or reused)
 * sock are recognised and dropped.
 *
 * How the loop learns of completions. libev sleeps in epoll_wait, so the
 * ring signals an eventfd that libev watches. The ring is set up with
 * IORING_SETUP_COOP_TASKRUN: a receive made ready by the peer becomes task
 * work of this process, and queueing it wakes the process out of
 * epoll_wait (no inter-processor interrupt when it is running); the work
 * runs on its way back to user space, posts the completions and signals
 * the eventfd from this process. It used to be IORING_SETUP_DEFER_TASKRUN,
 * which keeps the work until io_uring_enter(IORING_ENTER_GETEVENTS) and
 * only wakes a task that sleeps in io_uring_enter; for one sleeping
 * elsewhere it signals the registered eventfd when the first work is
 * queued, but Linux 6.18 does that from an RCU callback
 * (io_eventfd_do_signal under rcu_do_batch), one grace period later: 4 to
 * 60 ms here. Every round trip through an idle generator waited for it
 * (the API scenario made 400-3,100 requests/s instead of ~68,000).
 *
 * Arrival: every socket asks for the kernel's receive timestamps
 * (SO_TIMESTAMPNS), and sock_arrival() gives, inside on_data, when the last
 * segment of that read was queued on the socket: when the message reached
 * the client, before this process got round to it. One generator reading
 * thousands of sockets in turn adds its own queueing to the time of the
 * read; the arrival leaves it out.
 *
 * Source addresses: towards 127.0.0.0/8 each socket binds 127.0.0.k with
 * IP_BIND_ADDRESS_NO_PORT, so the port is picked at connect time per
 * 4-tuple and n addresses give n times the ephemeral port range.
 */
#include "sock.h"
#include "bench.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { S_CLOSED, S_CONNECTING, S_OPEN };

#define IN_CAP (1u << 20)       /* the shared input buffer */
#define CARRY_MAX (IN_CAP / 2)  /* the most one connection may carry over */

static struct ev_loop *S_loop;
static int S_src_addrs;
static uint8_t *S_in;
static uint64_t S_arrival;      /* of the read being handled; 0: unknown */

/* The control space every read asks for: one receive timestamp. */
#define STAMP_SPACE CMSG_SPACE(sizeof(struct timespec))

/* io_uring reads */
#define U_ENTRIES 1024          /* submission queue */
#define U_CQ_ENTRIES 32768      /* completions: one per ready socket */
#define U_BUFS 16384            /* provided buffers (a power of two) */
#define U_BUF_SIZE 1024         /* a message or two; longer reads take several */
#define U_GEN_SHIFT 48

static struct {
	bool on;
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	struct msghdr tmpl;     /* what each recvmsg asks for: control only */
	ev_io efd;
	ev_prepare flush;       /* submits what was queued before the loop blocks */
} U;

static void on_uring(struct ev_loop *loop, ev_io *w, int revents);

static void on_uring_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop, (void)w, (void)revents;
	if (io_uring_sq_ready(&U.ring))
		io_uring_submit(&U.ring);
}

/* Sets up io_uring reads; false (and a note on stderr) when the kernel
 * does not offer what they need. */
static bool uring_setup(void)
{
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
					      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
				     .cq_entries = U_CQ_ENTRIES };
	int err = io_uring_queue_init_params(U_ENTRIES, &U.ring, &p);
	if (err < 0) {
		fprintf(stderr, "rotor-bench: io_uring unavailable (%s): reads by recvmsg\n", strerror(-err));
		return false;
	}
	size_t ring_sz = U_BUFS * sizeof(struct io_uring_buf);
	U.br = aligned_alloc(4096, ring_sz);
	U.bufs = malloc((size_t)U_BUFS * U_BUF_SIZE);
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (U.br == NULL || U.bufs == NULL || efd < 0)
		abort();
	memset(U.bufs, 0, (size_t)U_BUFS * U_BUF_SIZE); /* fault them in before any run */
	io_uring_buf_ring_init(U.br);
	struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)U.br, .ring_entries = U_BUFS, .bgid = 0 };
	if ((err = io_uring_register_buf_ring(&U.ring, &reg, 0)) < 0 ||
	    (err = io_uring_register_eventfd(&U.ring, efd)) < 0) {
		fprintf(stderr, "rotor-bench: io_uring without provided buffers or eventfd (%s): "
			"reads by recvmsg\n", strerror(-err));
		io_uring_queue_exit(&U.ring);
		close(efd);
		free(U.br);
		free(U.bufs);
		return false;
	}
	for (unsigned i = 0; i < U_BUFS; i++)
		io_uring_buf_ring_add(U.br, U.bufs + (size_t)i * U_BUF_SIZE, U_BUF_SIZE, (unsigned short)i,
				      io_uring_buf_ring_mask(U_BUFS), (int)i);
	io_uring_buf_ring_advance(U.br, U_BUFS);
	U.tmpl.msg_controllen = STAMP_SPACE;
	ev_io_init(&U.efd, on_uring, efd, EV_READ);
	ev_io_start(S_loop, &U.efd);
	ev_prepare_init(&U.flush, on_uring_flush);
	ev_prepare_start(S_loop, &U.flush);
	return true;
}

void sock_setup(struct ev_loop *loop, int src_addrs, bool uring)
{
	S_loop = loop;
	S_src_addrs = src_addrs;
	S_in = malloc(IN_CAP);
	if (S_in == NULL)
		abort();
	U.on = uring && uring_setup();
}

bool sock_uring(void)
{
	return U.on;
}

static struct io_uring_sqe *uring_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&U.ring);
	if (sqe == NULL) {
		io_uring_submit(&U.ring);
		sqe = io_uring_get_sqe(&U.ring);
		if (sqe == NULL)
			abort();
	}
	return sqe;
}

static uint64_t uring_tag(const struct sock *s)
{
	return (uint64_t)(uintptr_t)s | (uint64_t)s->gen << U_GEN_SHIFT;
}

/* Starts s's multishot receive; submitted with the next batch. */
static void uring_arm(struct sock *s)
{
	struct io_uring_sqe *sqe = uring_sqe();
	io_uring_prep_recvmsg_multishot(sqe, s->io.fd, &U.tmpl, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, uring_tag(s));
	s->armed = 1;
}

/* Cancels s's receive (its late completions carry the old generation) and
 * submits at once: the request holds the socket open until cancelled. */
static void uring_disarm(struct sock *s)
{
	struct io_uring_sqe *sqe = uring_sqe();
	io_uring_prep_cancel64(sqe, uring_tag(s), 0);
	io_uring_sqe_set_data64(sqe, 0);
	io_uring_submit(&U.ring);
	s->armed = 0;
}

int sock_open(const struct sock *s)
{
	return s->state != S_CLOSED;
}

void sock_close(struct sock *s)
{
	if (s->state == S_CLOSED)
		return;
	ev_io_stop(S_loop, &s->io);
	if (s->armed)
		uring_disarm(s);
	s->gen++;
	close(s->io.fd);
	s->state = S_CLOSED;
	free(s->carry);
	free(s->out);
	s->carry = s->out = NULL;
	s->carry_len = s->out_len = s->out_cap = 0;
}

/* Watches s for ev; with io_uring reads, for writes only. */
static void set_events(struct sock *s, int ev)
{
	if (U.on)
		ev &= ~EV_READ;
	if (s->io.events == ev && (ev == 0 || ev_is_active(&s->io)))
		return;
	ev_io_stop(S_loop, &s->io);
	ev_io_set(&s->io, s->io.fd, ev);
	if (ev)
		ev_io_start(S_loop, &s->io);
}

static void fail(struct sock *s, int err)
{
	sock_close(s);
	s->ops->on_error(s, err);
}

static void do_write(struct sock *s)
{
	while (s->out_len > 0) {
		ssize_t w = send(s->io.fd, s->out, s->out_len, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			fail(s, errno);
			return;
		}
		memmove(s->out, s->out + w, s->out_len - (size_t)w);
		s->out_len -= (uint32_t)w;
	}
	free(s->out);
	s->out = NULL;
	s->out_cap = 0;
	set_events(s, EV_READ);
}

uint64_t sock_arrival(void)
{
	return S_arrival;
}

/* The receive timestamp in msg (CLOCK_REALTIME) on bench_now()'s clock, or
 * 0 when there is none. */
static uint64_t arrival(struct msghdr *msg, uint64_t now)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS)
			continue;
		struct timespec ts, real;
		memcpy(&ts, CMSG_DATA(c), sizeof(ts));
		clock_gettime(CLOCK_REALTIME, &real);
		uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		uint64_t r = (uint64_t)real.tv_sec * 1000000000u + (uint64_t)real.tv_nsec;
		uint64_t ago = r > t ? r - t : 0;
		return now > ago ? now - ago : 0;
	}
	return 0;
}

/* Hands n bytes at p (with the carried-over ones already in front) to the
 * layer above and keeps what it leaves. */
static void consume(struct sock *s, uint8_t *p, size_t n, uint64_t now, uint64_t arrived)
{
	S_arrival = arrived;
	size_t used = s->ops->on_data(s, p, n, now);
	S_arrival = 0;
	if (s->state == S_CLOSED)
		return;
	size_t left = n - used;
	if (left == 0) {
		free(s->carry);
		s->carry = NULL;
		s->carry_len = 0;
		return;
	}
	if (left > CARRY_MAX) {
		fail(s, EMSGSIZE);
		return;
	}
	if (left != s->carry_len || s->carry == NULL) {
		uint8_t *c = realloc(s->carry, left);
		if (c == NULL)
			abort();
		s->carry = c;
	}
	memmove(s->carry, p + used, left);
	s->carry_len = (uint32_t)left;
}

static void do_read(struct sock *s)
{
	size_t have = s->carry_len;
	if (have)
		memcpy(S_in, s->carry, have);
	struct iovec iov = { S_in + have, IN_CAP - have };
	union { struct cmsghdr h; char b[STAMP_SPACE]; } cm;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cm,
			      .msg_controllen = sizeof(cm) };
	ssize_t r = recvmsg(s->io.fd, &msg, 0);
	if (r < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		fail(s, errno);
		return;
	}
	if (r == 0) {
		fail(s, 0);
		return;
	}
	uint64_t now = bench_now();
	consume(s, S_in, have + (size_t)r, now, arrival(&msg, now));
}

/* One completion of a multishot recvmsg. */
static void uring_done(struct io_uring_cqe *cqe)
{
	uint64_t tag = io_uring_cqe_get_data64(cqe);
	struct sock *s = (struct sock *)(uintptr_t)(tag & ((1ull << U_GEN_SHIFT) - 1));
	bool more = cqe->flags & IORING_CQE_F_MORE;
	uint8_t *buf = NULL;
	unsigned short bid = 0;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		bid = (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		buf = U.bufs + (size_t)bid * U_BUF_SIZE;
	}
	bool mine = tag != 0 && (uint16_t)(tag >> U_GEN_SHIFT) == s->gen && s->state == S_OPEN;
	if (mine && !more)
		s->armed = 0;
	if (mine && cqe->res > 0 && buf) {
		struct msghdr msg = U.tmpl;
		struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf, cqe->res, &msg);
		if (o == NULL) {
			fail(s, EPROTO);
		} else {
			uint8_t *p = io_uring_recvmsg_payload(o, &msg);
			size_t n = io_uring_recvmsg_payload_length(o, cqe->res, &msg);
			struct msghdr cm = { .msg_control = (uint8_t *)(o + 1) + o->namelen,
					     .msg_controllen = o->controllen };
			uint64_t now = bench_now(), arrived = arrival(&cm, now);
			if (n == 0 && !(o->flags & MSG_TRUNC)) {
				fail(s, 0);
			} else if (s->carry_len) {
				memcpy(S_in, s->carry, s->carry_len);
				memcpy(S_in + s->carry_len, p, n);
				consume(s, S_in, s->carry_len + n, now, arrived);
			} else {
				consume(s, p, n, now, arrived);
			}
		}
	} else if (mine && cqe->res == 0) {
		fail(s, 0);
	} else if (mine && cqe->res < 0 && cqe->res != -ENOBUFS) {
		fail(s, -cqe->res);
	}
	if (buf) {
		io_uring_buf_ring_add(U.br, buf, U_BUF_SIZE, bid, io_uring_buf_ring_mask(U_BUFS), 0);
		io_uring_buf_ring_advance(U.br, 1);
	}
	/* Out of buffers (or a receive the kernel ended): arm again once the
	 * buffers of this batch are back. */
	if (mine && s->state == S_OPEN && !s->armed)
		uring_arm(s);
}

static void on_uring(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop, (void)revents;
	uint64_t v;
	if (read(w->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		abort();
	/* The receives the kernel queued for this task ran on the way out of
	 * that read; io_uring_enter only when something is left to submit,
	 * to run or to flush (IORING_SETUP_TASKRUN_FLAG says so). */
	if (io_uring_sq_ready(&U.ring) ||
	    (IO_URING_READ_ONCE(*U.ring.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)))
		io_uring_submit_and_get_events(&U.ring);
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&U.ring, head, cqe) {
		uring_done(cqe);
		n++;
	}
	io_uring_cq_advance(&U.ring, n);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	struct sock *s = (struct sock *)w;
	if (s->state == S_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(s->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			fail(s, err);
			return;
		}
		s->state = S_OPEN;
		set_events(s, EV_READ);
		if (U.on)
			uring_arm(s);
		s->ops->on_connect(s);
		return;
	}
	if (revents & EV_WRITE) {
		do_write(s);
		if (s->state == S_CLOSED)
			return;
	}
	if (revents & EV_READ)
		do_read(s);
}

int sock_connect(struct sock *s, const struct sockaddr_in *dst, unsigned k,
		 const struct sock_ops *ops)
{
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
	if (S_src_addrs > 0 && (ntohl(dst->sin_addr.s_addr) >> 24) == 127) {
		struct sockaddr_in src = { .sin_family = AF_INET };
		src.sin_addr.s_addr = htonl(0x7f000001u + k % (unsigned)S_src_addrs);
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			int err = errno;
			close(fd);
			return err;
		}
	}
	uint16_t gen = s->gen;  /* a reused sock keeps counting */
	memset(s, 0, sizeof(*s));
	s->gen = gen;
	s->ops = ops;
	ev_io_init(&s->io, on_io, fd, EV_WRITE);
	if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 && errno != EINPROGRESS) {
		int err = errno;
		close(fd);
		return err;
	}
	s->state = S_CONNECTING;
	ev_io_start(S_loop, &s->io);
	return 0;
}

int sock_write(struct sock *s, const void *p, size_t n)
{
	if (s->state != S_OPEN)
		return ENOTCONN;
	size_t done = 0;
	if (s->out_len == 0) {
		while (done < n) {
			ssize_t w = send(s->io.fd, (const uint8_t *)p + done, n - done, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					break;
				int err = errno;
				sock_close(s);
				return err;
			}
			done += (size_t)w;
		}
		if (done == n)
			return 0;
	}
	size_t need = s->out_len + (n - done);
	if (need > s->out_cap) {
		size_t cap = s->out_cap ? s->out_cap : 4096;
		while (cap < need)
			cap *= 2;
		uint8_t *o = realloc(s->out, cap);
		if (o == NULL)
			abort();
		s->out = o;
		s->out_cap = (uint32_t)cap;
	}
	memcpy(s->out + s->out_len, (const uint8_t *)p + done, n - done);
	s->out_len = (uint32_t)need;
	set_events(s, EV_READ | EV_WRITE);
	return 0;
}
