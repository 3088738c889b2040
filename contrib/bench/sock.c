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
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <sys/socket.h>
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

void sock_setup(struct ev_loop *loop, int src_addrs)
{
	S_loop = loop;
	S_src_addrs = src_addrs;
	S_in = malloc(IN_CAP);
	if (S_in == NULL)
		abort();
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
	close(s->io.fd);
	s->state = S_CLOSED;
	free(s->carry);
	free(s->out);
	s->carry = s->out = NULL;
	s->carry_len = s->out_len = s->out_cap = 0;
}

static void set_events(struct sock *s, int ev)
{
	if (s->io.events == ev)
		return;
	ev_io_stop(S_loop, &s->io);
	ev_io_set(&s->io, s->io.fd, ev);
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

static void do_read(struct sock *s)
{
	size_t have = s->carry_len;
	if (have)
		memcpy(S_in, s->carry, have);
	struct iovec iov = { S_in + have, IN_CAP - have };
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(struct timespec))]; } cm;
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
	have += (size_t)r;
	uint64_t now = bench_now();
	S_arrival = arrival(&msg, now);
	size_t used = s->ops->on_data(s, S_in, have, now);
	S_arrival = 0;
	if (s->state == S_CLOSED)
		return;
	size_t left = have - used;
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
	memcpy(s->carry, S_in + used, left);
	s->carry_len = (uint32_t)left;
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
	memset(s, 0, sizeof(*s));
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
