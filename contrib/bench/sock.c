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
 * How the loop learns of completions. The ring is set up with
 * IORING_SETUP_DEFER_TASKRUN: a receive made ready by the peer becomes work
 * queued for this task, which runs only inside io_uring_enter(2) with
 * IORING_ENTER_GETEVENTS, and the kernel wakes the task for it only if it
 * sleeps there. So the loop sleeps in io_uring_enter (sock_run): it runs
 * libev without blocking, then waits in the ring for a completion, with a
 * poll request on libev's epoll descriptor (any libev watcher with an
 * event ends the wait) and the caller's next timer as the timeout. Each
 * return brings the receives that were ready, a few at a time while the
 * peer is still writing, so reads follow arrivals.
 *
 * It used to sleep in libev's epoll_wait on an eventfd registered with the
 * ring, which the kernel signals when the first work is queued; Linux 6.18
 * signals it from an RCU callback (io_eventfd_do_signal under
 * rcu_do_batch), one grace period later: 7 to 180 ms here. Every round
 * trip through an idle generator waited for it (api: 400-3,100 requests/s
 * instead of ~68,000). SOCK_URING_EVENTFD keeps that way for diagnosis.
 * IORING_SETUP_COOP_TASKRUN with the eventfd would wake in time, but then
 * the work runs on the way back to user space and keeps running there as
 * long as the peer keeps queueing more: a fan-out of 1,000 messages was
 * read all at once when its last one arrived, adding up to its length to
 * every read time.
 *
 * Safety nets: before any connection, a self-check makes a child process
 * write to a socketpair read by a receive on the ring while this process
 * sleeps as the loop will; unless most of five wake-ups come within 2 ms,
 * reads go by recvmsg. Sleeping in io_uring_enter, every wait has a
 * timeout (the generator's 1 ms tick during the run), so a lost wake-up
 * cannot stall it for longer. Sleeping on the eventfd, a watchdog (an
 * ev_check, kept looking by a 5 ms timer) notices completions or queued
 * receives that wait through several loop iterations without the eventfd
 * firing; it hands them over itself, and after the third such stall it
 * cancels every receive, hands over what they had read and moves every
 * socket to recvmsg. sock_reads() says what happened.
 *
 * Arrival: every socket asks for the kernel's receive timestamps
 * (SO_TIMESTAMPNS), and sock_arrival() gives, inside on_data, when the last
 * segment of that read was queued on the socket: when the message reached
 * the client, before this process got round to it. One generator reading
 * thousands of sockets in turn adds its own queueing to the time of the
 * read; the arrival leaves it out.
 *
 * TLS (sock_tls): each connection has an SSL on two memory BIOs. Whatever
 * either reader brings (an io_uring buffer or a recvmsg) is written into
 * the read BIO, and SSL_read moves the plaintext into the shared input
 * buffer behind the carried-over bytes, where the layer above parses it
 * as it would a plaintext read; the records stay in the BIO until whole.
 * sock_write seals through SSL_write into the write BIO, which is then
 * sent (or queued) as a plaintext write is. The handshake runs in the
 * same way, non-blocking, between the TCP connect and on_connect, so the
 * layers above start their own exchanges on an established TLS session
 * and never see a record.
 *
 * Source addresses: towards 127.0.0.0/8 each socket binds 127.0.0.k with
 * IP_BIND_ADDRESS_NO_PORT, so the port is picked at connect time per
 * 4-tuple and n addresses give n times the ephemeral port range.
 */
#include "sock.h"
#include "bench.h"
#include "tlsc.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

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
static bool S_tls;              /* sock_tls: every new connection speaks TLS */
static uint8_t *S_rec;          /* TLS: records read by recvmsg, or to send */
#define REC_CAP (1u << 18)

/* The control space every read asks for: one receive timestamp. */
#define STAMP_SPACE CMSG_SPACE(sizeof(struct timespec))

/* io_uring reads */
#define U_ENTRIES 1024          /* submission queue */
#define U_CQ_ENTRIES 32768      /* completions: one per ready socket */
#define U_BUFS 16384            /* provided buffers (a power of two) */
#define U_BUF_SIZE 1024         /* a message or two; longer reads take several */
#define U_GEN_SHIFT 48
#define U_TAG_MIN 4096          /* user_data below this is no sock */
#define U_PROBE 1               /* user_data of the self-check's receive */
#define U_LOOP 2                /* user_data of the poll on libev's epoll */
#define U_IDLE_WAIT_NS 50000000ull      /* longest sleep without a timer due */
#define U_PROBE_ROUNDS 5
#define U_PROBE_FAST_NS 2000000ull      /* a wake-up that counts as prompt */
#define U_PROBE_WAIT_NS 50000000ull     /* a round gives up after this */
#define U_WATCH_PERIOD 0.005            /* the watchdog looks at least this often */
#define U_STALL_NS 10000000ull          /* work waiting this long... */
#define U_STALL_LOOPS 4                 /* ...through this many iterations is a stall */
#define U_STALLS_MAX 3                  /* then reads go by recvmsg */

static struct {
	bool on;
	bool ringwait;          /* the loop sleeps in io_uring_enter (sock_run) */
	bool draining;          /* falling back: no receive is armed again */
	bool loop_armed;        /* the poll on libev's epoll is in the ring */
	bool io_changed;        /* an ev_io started since libev last ran */
	int loopfd;             /* libev's epoll descriptor */
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	struct msghdr tmpl;     /* what each recvmsg asks for: control only */
	ev_io efd;              /* with SOCK_URING_EVENTFD */
	ev_prepare flush;       /* submits what was queued before the loop blocks */
	ev_check watch;         /* the stall watchdog, after every poll */
	ev_timer wake;          /* keeps the watchdog looking while the loop idles */
	uint64_t pend_since;    /* when waiting work was first seen, 0: none */
	unsigned pend_loops;    /* loop iterations it has waited through since */
	long narmed;            /* open socks with a receive in flight */
	struct sock *open;      /* every open sock, while reads use the ring */
	struct sock_reads st;
} U;

static int send_raw(struct sock *s, const void *p, size_t n);

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
	if (!s->armed)
		U.narmed++;
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
	U.narmed--;
}

/* The list of open socks a fallback moves to recvmsg. */
static void uring_list(struct sock *s)
{
	s->uprev = NULL;
	s->unext = U.open;
	if (U.open)
		U.open->uprev = s;
	U.open = s;
}

static void uring_unlist(struct sock *s)
{
	if (s->uprev)
		s->uprev->unext = s->unext;
	else if (U.open == s)
		U.open = s->unext;
	if (s->unext)
		s->unext->uprev = s->uprev;
	s->uprev = s->unext = NULL;
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
	if (U.on && s->state == S_OPEN)
		uring_unlist(s);
	if (s->armed)
		uring_disarm(s);
	s->gen++;
	SSL_free(s->ssl);
	s->ssl = NULL;
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
	if (ev) {
		ev_io_start(S_loop, &s->io);
		U.io_changed = true;
	}
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

/* ---- TLS ---------------------------------------------------------------- */

int sock_tls(void)
{
	S_rec = malloc(REC_CAP);
	if (S_rec == NULL)
		abort();
	if (tlsc_setup() < 0)
		return -1;
	S_tls = true;
	return 0;
}

/* Sends the records OpenSSL left in s's write BIO. Returns 0, or an errno
 * value after which s is closed. */
static int tls_flush(struct sock *s)
{
	BIO *wb = SSL_get_wbio(s->ssl);
	int n;
	while ((n = BIO_read(wb, S_rec, REC_CAP)) > 0) {
		int err = send_raw(s, S_rec, (size_t)n);
		if (err)
			return err;
	}
	return 0;
}

/* Runs s's handshake as far as the bytes in its read BIO allow, sending
 * what it makes; once done, on_connect. Returns true when the handshake
 * is done and s still open. */
static bool tls_handshake(struct sock *s)
{
	ERR_clear_error();
	int rc = SSL_do_handshake(s->ssl), err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(s->ssl, rc);
	int serr = tls_flush(s);
	if (serr) {
		fail(s, serr);
		return false;
	}
	if (err == SSL_ERROR_WANT_READ)
		return false;
	if (err != SSL_ERROR_NONE) {
		ERR_clear_error();
		fail(s, EPROTO);
		return false;
	}
	s->ops->on_connect(s);
	return s->state == S_OPEN;
}

/* After the TCP connect: the SSL, and the ClientHello on its way. */
static void tls_start(struct sock *s)
{
	s->ssl = tlsc_new();
	if (s->ssl == NULL) {
		fail(s, ENOMEM);
		return;
	}
	tls_handshake(s);
}

/* n bytes the socket brought: into s's read BIO, then the handshake or the
 * plaintext they complete to the layer above, in as few calls as the
 * input buffer allows. A close_notify is an end of file; a record that
 * does not decrypt ends s with EPROTO. */
static void tls_input(struct sock *s, const uint8_t *p, size_t n, uint64_t now, uint64_t arrived)
{
	if (BIO_write(SSL_get_rbio(s->ssl), p, (int)n) != (int)n)
		abort();
	if (!SSL_is_init_finished(s->ssl) && !tls_handshake(s))
		return;
	int err = SSL_ERROR_NONE;
	ERR_clear_error();
	while (s->state == S_OPEN && err == SSL_ERROR_NONE) {
		size_t have = s->carry_len, got;
		if (have)
			memcpy(S_in, s->carry, have);
		while (have < IN_CAP) {
			int rc = SSL_read_ex(s->ssl, S_in + have, IN_CAP - have, &got);
			if (rc != 1) {
				err = SSL_get_error(s->ssl, rc);
				break;
			}
			have += got;
		}
		if (have > s->carry_len)
			consume(s, S_in, have, now, arrived);
	}
	if (s->state != S_OPEN)
		return;
	int serr = tls_flush(s);        /* a key update's answer, an alert */
	if (serr)
		fail(s, serr);
	else if (err == SSL_ERROR_ZERO_RETURN)
		fail(s, 0);
	else if (err != SSL_ERROR_WANT_READ)
		fail(s, EPROTO);
	ERR_clear_error();
}

/* ---- reading ------------------------------------------------------------- */

static void do_read(struct sock *s)
{
	size_t have = s->ssl ? 0 : s->carry_len;
	uint8_t *in = s->ssl ? S_rec : S_in;
	if (have)
		memcpy(S_in, s->carry, have);
	struct iovec iov = { in + have, (s->ssl ? REC_CAP : IN_CAP) - have };
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
	if (s->ssl)
		tls_input(s, S_rec, (size_t)r, now, arrival(&msg, now));
	else
		consume(s, S_in, have + (size_t)r, now, arrival(&msg, now));
}

/* One completion of a multishot recvmsg. */
static void uring_done(struct io_uring_cqe *cqe)
{
	uint64_t tag = io_uring_cqe_get_data64(cqe);
	if (tag == U_LOOP)
		U.loop_armed = false;
	struct sock *s = (struct sock *)(uintptr_t)(tag & ((1ull << U_GEN_SHIFT) - 1));
	bool more = cqe->flags & IORING_CQE_F_MORE;
	uint8_t *buf = NULL;
	unsigned short bid = 0;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		bid = (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		buf = U.bufs + (size_t)bid * U_BUF_SIZE;
	}
	bool mine = tag >= U_TAG_MIN && tag != LIBURING_UDATA_TIMEOUT && (uint16_t)(tag >> U_GEN_SHIFT) == s->gen && s->state == S_OPEN;
	if (mine && !more) {
		s->armed = 0;
		U.narmed--;
	}
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
			} else if (s->ssl) {
				tls_input(s, p, n, now, arrived);
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
	} else if (mine && cqe->res < 0 && cqe->res != -ENOBUFS &&
		   !(cqe->res == -ECANCELED && U.draining)) {
		fail(s, -cqe->res);
	}
	if (buf) {
		io_uring_buf_ring_add(U.br, buf, U_BUF_SIZE, bid, io_uring_buf_ring_mask(U_BUFS), 0);
		io_uring_buf_ring_advance(U.br, 1);
	}
	/* Out of buffers (or a receive the kernel ended): arm again once the
	 * buffers of this batch are back. */
	if (mine && s->state == S_OPEN && !s->armed && !U.draining)
		uring_arm(s);
}

/* Hands every completion in the ring to its sock; returns how many. */
static unsigned uring_reap(void)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&U.ring, head, cqe) {
		uring_done(cqe);
		n++;
	}
	io_uring_cq_advance(&U.ring, n);
	return n;
}

/* Receives the kernel made ready for this task but has not run yet, or
 * completions it could not post (a full completion queue). */
static bool uring_kernel_owes(void)
{
	return IO_URING_READ_ONCE(*U.ring.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW);
}

/* Submits what is queued, runs the receives the kernel queued for this task
 * and hands over every completion (SOCK_URING_EVENTFD; IORING_SQ_TASKRUN
 * says whether io_uring_enter has anything to run). */
static void uring_run(void)
{
	if (io_uring_sq_ready(&U.ring) || uring_kernel_owes())
		io_uring_submit_and_get_events(&U.ring);
	uring_reap();
	U.pend_since = 0;
}

static void on_uring(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop, (void)revents;
	uint64_t v;
	if (read(w->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		abort();
	uring_run();
}

static void on_uring_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop, (void)w, (void)revents;
	if (io_uring_sq_ready(&U.ring))
		io_uring_submit(&U.ring);
}

/* Stops the watchers and frees the ring, its buffers and the eventfd. */
static void uring_teardown(void)
{
	ev_io_stop(S_loop, &U.efd);
	ev_prepare_stop(S_loop, &U.flush);
	ev_check_stop(S_loop, &U.watch);
	ev_timer_stop(S_loop, &U.wake);
	io_uring_queue_exit(&U.ring);
	if (U.efd.fd >= 0)
		close(U.efd.fd);
	U.efd.fd = -1;
	free(U.br);
	free(U.bufs);
	U.br = NULL;
	U.bufs = NULL;
	U.on = false;
}

/* From io_uring to recvmsg in the middle of a run: every receive is
 * cancelled, what they had read is handed over (a socket's data comes in
 * its completions in order, before the final one), then libev watches
 * every open socket for reading. Data that arrives meanwhile waits in the
 * socket. */
static void uring_fall_back(enum sock_fallback why)
{
	U.draining = true;
	struct io_uring_sqe *sqe = uring_sqe();
	io_uring_prep_cancel(sqe, NULL, IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY);
	io_uring_sqe_set_data64(sqe, 0);
	io_uring_submit(&U.ring);
	uint64_t until = bench_now() + 1000000000ull;
	while (U.narmed > 0 && bench_now() < until) {
		struct __kernel_timespec ts = { 0, 10000000 };
		struct io_uring_cqe *cqe;
		io_uring_wait_cqe_timeout(&U.ring, &cqe, &ts);  /* runs the pending work */
		uring_reap();
	}
	/* A receive that would not end could take data recvmsg should get:
	 * those connections are closed (and counted by the layer above). */
	for (struct sock *s = U.open; s; ) {
		if (!s->armed) {
			s = s->unext;
			continue;
		}
		uring_unlist(s);
		s->armed = 0;
		U.narmed--;
		fail(s, ETIMEDOUT);
		s = U.open;     /* its callback may have closed others */
	}
	struct sock *open = U.open;
	U.open = NULL;
	uring_teardown();
	for (struct sock *s = open; s; s = s->unext)
		set_events(s, (s->io.events & (EV_READ | EV_WRITE)) | EV_READ);
	U.st.recvmsg = 1;
	U.st.fallback = why;
	fprintf(stderr, "rotor-bench: io_uring reads stalled %u times: reading with recvmsg from now on\n",
		U.st.stalls);
}

/* The watchdog, with SOCK_URING_EVENTFD, after every poll of the loop:
 * completions in the ring, or receives the kernel queued for this task,
 * that wait through several iterations and U_STALL_NS without the eventfd
 * firing are a stall. It hands them over; the third one ends io_uring
 * reads. */
static void on_uring_watch(struct ev_loop *loop, ev_check *w, int revents)
{
	(void)loop, (void)w, (void)revents;
	if (!U.on || (!io_uring_cq_ready(&U.ring) && !uring_kernel_owes())) {
		U.pend_since = 0;
		return;
	}
	uint64_t now = bench_now();
	if (U.pend_since == 0) {
		U.pend_since = now;
		U.pend_loops = 0;
		return;
	}
	if (++U.pend_loops < U_STALL_LOOPS || now - U.pend_since < U_STALL_NS)
		return;
	struct pollfd p = { .fd = U.efd.fd, .events = POLLIN };
	if (poll(&p, 1, 0) == 1) {      /* signalled just now: the loop will see it */
		U.pend_since = now;
		U.pend_loops = 0;
		return;
	}
	U.st.stalls++;
	fprintf(stderr, "rotor-bench: io_uring completions waited %.1f ms without a wake-up\n",
		(double)(now - U.pend_since) / 1e6);
	uring_run();
	if (U.st.stalls >= U_STALLS_MAX)
		uring_fall_back(SOCK_FB_STALLS);
}

static void on_uring_wake(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop, (void)w, (void)revents;     /* on_uring_watch runs after it */
}

/* Sleeps the way the loop does, at most ns: in io_uring_enter until a
 * completion, or in poll(2) on the eventfd (SOCK_URING_EVENTFD), which
 * then runs what the kernel queued. The completions are left in the ring. */
static void uring_sleep(uint64_t ns)
{
	if (U.ringwait) {
		struct __kernel_timespec ts = { (long long)(ns / 1000000000u), (long long)(ns % 1000000000u) };
		struct io_uring_cqe *cqe;
		io_uring_submit_and_wait_timeout(&U.ring, &cqe, 1, &ts, NULL);
		return;
	}
	struct pollfd p = { .fd = U.efd.fd, .events = POLLIN };
	if (poll(&p, 1, (int)(ns / 1000000) + 1) <= 0)
		return;
	uint64_t v;
	if (read(U.efd.fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		abort();
	if (io_uring_sq_ready(&U.ring) || uring_kernel_owes())
		io_uring_submit_and_get_events(&U.ring);
}

/* Collects the self-check's completions: the child's send times that
 * arrived, the latest at or after `since` into *lat (now minus it).
 * Returns 0, or an errno value when the receive failed or ended. */
static int probe_reap(uint64_t since, uint64_t *lat)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int err = 0;
	io_uring_for_each_cqe(&U.ring, head, cqe) {
		n++;
		uint8_t *buf = NULL;
		unsigned short bid = 0;
		if (cqe->flags & IORING_CQE_F_BUFFER) {
			bid = (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
			buf = U.bufs + (size_t)bid * U_BUF_SIZE;
		}
		if (io_uring_cqe_get_data64(cqe) == U_PROBE) {
			if (cqe->res < 0) {
				err = -cqe->res;
			} else if (buf) {
				struct msghdr msg = U.tmpl;
				struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf, cqe->res, &msg);
				size_t len = o ? io_uring_recvmsg_payload_length(o, cqe->res, &msg) : 0;
				uint8_t *p = o ? io_uring_recvmsg_payload(o, &msg) : NULL;
				uint64_t now = bench_now();
				for (size_t k = 0; k + sizeof(uint64_t) <= len; k += sizeof(uint64_t)) {
					uint64_t t;
					memcpy(&t, p + k, sizeof(t));
					if (t >= since)
						*lat = now > t ? now - t : 1;
				}
			}
			if (!(cqe->flags & IORING_CQE_F_MORE) && err == 0)
				err = ECONNRESET;
		}
		if (buf) {
			io_uring_buf_ring_add(U.br, buf, U_BUF_SIZE, bid, io_uring_buf_ring_mask(U_BUFS), 0);
			io_uring_buf_ring_advance(U.br, 1);
		}
	}
	io_uring_cq_advance(&U.ring, n);
	return err;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The self-check: what a connection's data does during a run, with a
 * socketpair. A child process writes its clock 1 ms after each request, so
 * it lands while this process sleeps as the loop will (uring_sleep); the
 * round's latency is from that write to its completion in hand.
 * At least three of five rounds must take under U_PROBE_FAST_NS.
 * Returns true, or false with the reason in why. */
static bool uring_probe(char *why, size_t len)
{
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		snprintf(why, len, "socketpair: %s", strerror(errno));
		return false;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, len, "fork: %s", strerror(errno));
		close(sp[0]);
		close(sp[1]);
		return false;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sp[0]);
		char c;
		while (read(sp[1], &c, 1) == 1) {
			struct timespec d = { 0, 1000000 };
			nanosleep(&d, NULL);
			uint64_t t = bench_now();
			if (write(sp[1], &t, sizeof(t)) != (ssize_t)sizeof(t))
				break;
		}
		_exit(0);
	}
	close(sp[1]);
	struct io_uring_sqe *sqe = uring_sqe();
	io_uring_prep_recvmsg_multishot(sqe, sp[0], &U.tmpl, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, U_PROBE);
	io_uring_submit(&U.ring);

	uint64_t lat[U_PROBE_ROUNDS];
	int fast = 0, slow = 0, nlat = 0, err = 0;
	while (fast < 3 && slow < 3 && err == 0) {
		uint64_t go = bench_now(), got = 0;
		if (write(sp[0], "g", 1) != 1) {
			err = errno;
			break;
		}
		while (got == 0 && err == 0) {
			uint64_t now = bench_now();
			if (now >= go + U_PROBE_WAIT_NS)
				break;
			uring_sleep(go + U_PROBE_WAIT_NS - now);
			err = probe_reap(go, &got);
		}
		lat[nlat++] = got ? got : U_PROBE_WAIT_NS;
		if (got && got < U_PROBE_FAST_NS)
			fast++;
		else
			slow++;
	}
	/* The child's end closes: the receive ends; then nothing of the
	 * probe is left in the ring. */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	sqe = uring_sqe();
	io_uring_prep_cancel64(sqe, U_PROBE, 0);
	io_uring_sqe_set_data64(sqe, 0);
	io_uring_submit(&U.ring);
	for (int i = 0, e = 0; i < 20 && e == 0; i++) {
		struct __kernel_timespec ts = { 0, 10000000 };
		struct io_uring_cqe *cqe;
		io_uring_wait_cqe_timeout(&U.ring, &cqe, &ts);
		uint64_t ignored = 0;
		e = probe_reap(UINT64_MAX, &ignored);
	}
	close(sp[0]);
	uint64_t v;
	if (U.efd.fd >= 0 && read(U.efd.fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		abort();

	qsort(lat, (size_t)nlat, sizeof(lat[0]), cmp_u64);
	U.st.check_us = nlat ? (uint32_t)(lat[nlat / 2] / 1000) : 0;
	if (err) {
		snprintf(why, len, "its test receive failed: %s", strerror(err));
		return false;
	}
	if (fast < 3) {
		snprintf(why, len, "%d of %d wake-ups took longer than %.0f ms, median %.1f ms", slow, nlat,
			 U_PROBE_FAST_NS / 1e6, (double)lat[nlat / 2] / 1e6);
		return false;
	}
	return true;
}

/* libev's epoll descriptor, readable whenever a watcher of the loop has
 * an event, or -1. libev has no accessor for it: an ev_embed watcher
 * (whose purpose is polling one loop's backend from another) started on a
 * scratch loop opens its ev_io on it, which is read and stopped again. */
static int loop_fd(struct ev_loop *loop)
{
	if (!(ev_backend(loop) & ev_embeddable_backends()))
		return -1;
	struct ev_loop *scratch = ev_loop_new(EVBACKEND_SELECT);
	if (scratch == NULL)
		return -1;
	ev_embed e;
	ev_embed_init(&e, NULL, loop);
	ev_embed_start(scratch, &e);
	int fd = e.io.fd;
	ev_embed_stop(scratch, &e);
	ev_loop_destroy(scratch);
	return fd;
}

/* Sets up io_uring reads; false (and a note on stderr) when the kernel
 * does not offer what they need or the ring fails its self-check. */
static bool uring_setup(unsigned how)
{
	U.ringwait = !(how & SOCK_URING_EVENTFD);
	U.efd.fd = -1;
	U.loopfd = U.ringwait ? loop_fd(S_loop) : -1;
	if (U.ringwait && U.loopfd < 0) {
		fprintf(stderr, "rotor-bench: libev's backend cannot be polled: reads by recvmsg\n");
		U.st.fallback = SOCK_FB_KERNEL;
		return false;
	}
	struct io_uring_params p = {
		.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			 IORING_SETUP_TASKRUN_FLAG,
		.cq_entries = U_CQ_ENTRIES };
	int err = io_uring_queue_init_params(U_ENTRIES, &U.ring, &p);
	if (err < 0) {
		fprintf(stderr, "rotor-bench: io_uring unavailable (%s): reads by recvmsg\n", strerror(-err));
		U.st.fallback = SOCK_FB_KERNEL;
		return false;
	}
	size_t ring_sz = U_BUFS * sizeof(struct io_uring_buf);
	U.br = aligned_alloc(4096, ring_sz);
	U.bufs = malloc((size_t)U_BUFS * U_BUF_SIZE);
	int efd = U.ringwait ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (U.br == NULL || U.bufs == NULL || (!U.ringwait && efd < 0))
		abort();
	memset(U.bufs, 0, (size_t)U_BUFS * U_BUF_SIZE); /* fault them in before any run */
	ev_io_init(&U.efd, on_uring, efd, EV_READ);
	ev_prepare_init(&U.flush, on_uring_flush);
	ev_check_init(&U.watch, on_uring_watch);
	ev_timer_init(&U.wake, on_uring_wake, U_WATCH_PERIOD, U_WATCH_PERIOD);
	io_uring_buf_ring_init(U.br);
	struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)U.br, .ring_entries = U_BUFS, .bgid = 0 };
	if ((err = io_uring_register_buf_ring(&U.ring, &reg, 0)) < 0 ||
	    (efd >= 0 && (err = io_uring_register_eventfd(&U.ring, efd)) < 0)) {
		fprintf(stderr, "rotor-bench: io_uring without provided buffers or eventfd (%s): "
			"reads by recvmsg\n", strerror(-err));
		uring_teardown();
		U.st.fallback = SOCK_FB_KERNEL;
		return false;
	}
	for (unsigned i = 0; i < U_BUFS; i++)
		io_uring_buf_ring_add(U.br, U.bufs + (size_t)i * U_BUF_SIZE, U_BUF_SIZE, (unsigned short)i,
				      io_uring_buf_ring_mask(U_BUFS), (int)i);
	io_uring_buf_ring_advance(U.br, U_BUFS);
	U.tmpl.msg_controllen = STAMP_SPACE;
	char why[160];
	if (!(how & SOCK_URING_NOCHECK) && !uring_probe(why, sizeof(why))) {
		fprintf(stderr, "rotor-bench: io_uring failed its self-check (%s): reads by recvmsg\n", why);
		uring_teardown();
		U.st.fallback = SOCK_FB_CHECK;
		return false;
	}
	if (!U.ringwait) {
		ev_io_start(S_loop, &U.efd);
		ev_prepare_start(S_loop, &U.flush);
		ev_check_start(S_loop, &U.watch);
		ev_timer_start(S_loop, &U.wake);
	}
	return true;
}

void sock_run(struct ev_loop *loop, ev_timer *bound)
{
	if (!U.on || !U.ringwait) {
		ev_run(loop, EVRUN_ONCE);
		return;
	}
	/* libev's turn. Watchers its callbacks start reach its epoll only in
	 * its next iteration: run it again then, before sleeping. */
	for (int i = 0; i < 4; i++) {
		U.io_changed = false;
		ev_run(loop, EVRUN_NOWAIT);
		if (!U.on || !U.io_changed)
			break;
	}
	if (!U.on)
		return;         /* fell back to recvmsg meanwhile */
	if (!U.loop_armed) {
		struct io_uring_sqe *sqe = uring_sqe();
		io_uring_prep_poll_add(sqe, U.loopfd, POLLIN);
		io_uring_sqe_set_data64(sqe, U_LOOP);
		U.loop_armed = true;
	}
	uint64_t ns = U.io_changed ? 0 : U_IDLE_WAIT_NS;     /* still unsettled: no sleep */
	if (ns > 0 && bound && ev_is_active(bound)) {
		double left = ev_timer_remaining(loop, bound);
		ns = left > 0 ? (uint64_t)(left * 1e9) : 0;
	}
	if (ns > 0 && io_uring_cq_ready(&U.ring) == 0) {
		struct __kernel_timespec ts = { (long long)(ns / 1000000000u), (long long)(ns % 1000000000u) };
		struct io_uring_cqe *cqe;
		io_uring_submit_and_wait_timeout(&U.ring, &cqe, 1, &ts, NULL);
	} else {
		io_uring_submit_and_get_events(&U.ring);
	}
	uring_reap();
}

void sock_setup(struct ev_loop *loop, int src_addrs, unsigned uring)
{
	S_loop = loop;
	S_src_addrs = src_addrs;
	S_in = malloc(IN_CAP);
	if (S_in == NULL)
		abort();
	U.on = (uring & SOCK_URING) && uring_setup(uring);
	U.st.uring = U.on;
	U.st.recvmsg = !U.on;
}

void sock_reads(struct sock_reads *r)
{
	*r = U.st;
}

const char *sock_fallback_name(uint32_t fb)
{
	switch (fb) {
	case SOCK_FB_KERNEL: return "kernel";
	case SOCK_FB_CHECK: return "self-check";
	case SOCK_FB_STALLS: return "stalls";
	default: return NULL;
	}
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
		if (U.on) {
			uring_list(s);
			uring_arm(s);
		}
		if (S_tls)
			tls_start(s);   /* on_connect once the handshake is done */
		else
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
	U.io_changed = true;
	return 0;
}

/* Sends n bytes as they are, queueing what the kernel does not take.
 * Returns 0, or an errno value after which the sock is closed. */
static int send_raw(struct sock *s, const void *p, size_t n)
{
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

int sock_write(struct sock *s, const void *p, size_t n)
{
	if (s->state != S_OPEN)
		return ENOTCONN;
	if (s->ssl == NULL)
		return send_raw(s, p, n);
	size_t done;
	ERR_clear_error();
	if (SSL_write_ex(s->ssl, p, n, &done) != 1 || done != n) {
		ERR_clear_error();
		sock_close(s);
		return EPROTO;
	}
	return tls_flush(s);
}
