/*
 * sock.h - one non-blocking client TCP connection on a libev loop, with
 * input carry-over and an output queue, for the protocol layers above
 * (wsc.c, hcli.c).
 */
#ifndef SOCK_H
#define SOCK_H

#include <ev.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sock;
struct ssl_st;

/* Callbacks. None of them may free the struct sock; they may sock_close it,
 * after which sock.c touches nothing but its flags. */
struct sock_ops {
	/* The TCP connection is established (with sock_tls, and its TLS
	 * handshake done). */
	void (*on_connect)(struct sock *s);
	/* n bytes arrived (with any carried-over ones in front, at p). Returns
	 * how many it consumed; the rest is carried over to the next call. */
	size_t (*on_data)(struct sock *s, uint8_t *p, size_t n, uint64_t now);
	/* The connection failed or the peer closed it (err: an errno value,
	 * 0 for end of file). The socket is already closed. */
	void (*on_error)(struct sock *s, int err);
};

struct sock {
	ev_io io;
	const struct sock_ops *ops;
	uint8_t *carry, *out;
	uint32_t carry_len, out_len, out_cap;
	struct sock *uprev, *unext; /* io_uring: every open sock, for a fallback */
	struct ssl_st *ssl;     /* with sock_tls: the connection's TLS state */
	uint16_t gen;           /* io_uring: tells this connection's completions */
	uint8_t state;
	uint8_t armed;          /* io_uring: a receive is in flight */
};

/* sock_setup's `uring`: 0 reads by recvmsg(2); SOCK_URING through io_uring
 * if the kernel has what it needs and the ring passes a self-check (a
 * receive completed by another process must wake this one within 2 ms);
 * otherwise a note on stderr and recvmsg. The other two are for diagnosis:
 * SOCK_URING_EVENTFD sleeps in libev's epoll_wait on an eventfd registered
 * with the ring instead of in io_uring_enter (the old way, whose wake-ups
 * come one RCU grace period late on Linux 6.18, see sock.c),
 * SOCK_URING_NOCHECK skips the self-check and leaves a broken ring to the
 * stall watchdog. */
enum { SOCK_URING = 1, SOCK_URING_EVENTFD = 2, SOCK_URING_NOCHECK = 4 };

/* Why reads went by recvmsg although io_uring was asked for. */
enum sock_fallback {
	SOCK_FB_NONE,           /* they did not, or io_uring was not asked for */
	SOCK_FB_KERNEL,         /* the kernel lacks io_uring or provided buffers */
	SOCK_FB_CHECK,          /* the self-check failed */
	SOCK_FB_STALLS,         /* the watchdog caught stalls during the run */
};

/* Which readers ran in this process and what io_uring did. */
struct sock_reads {
	uint32_t uring, recvmsg;        /* 1: that reader ran at some point */
	uint32_t fallback;              /* enum sock_fallback */
	uint32_t stalls;                /* completions the watchdog found waiting */
	uint32_t check_us;              /* the self-check's median wake-up, 0: none */
};

/* The loop every sock of this process runs on, the source addresses
 * (127.0.0.1 .. 127.0.0.n, used only towards a loopback destination;
 * n = 0 lets the kernel choose) and how to read (SOCK_URING...). Call once
 * before anything else. */
void sock_setup(struct ev_loop *loop, int src_addrs, unsigned uring);

/* From now on every sock_connect of this process speaks TLS: on_connect
 * comes once the handshake is done, on_data brings plaintext, sock_write
 * takes plaintext. The server's certificate is not verified. Returns 0, or
 * -1 with a message on stderr. */
int sock_tls(void);

/* One iteration of the loop, in place of ev_run(loop, EVRUN_ONCE): with
 * io_uring reads it runs libev without blocking and then sleeps in
 * io_uring_enter until a receive completes, one of libev's descriptors
 * has an event, or `bound` (a timer of the caller, if active) is due;
 * otherwise ev_run(loop, EVRUN_ONCE). */
void sock_run(struct ev_loop *loop, ev_timer *bound);

/* What sock_reads says about this process so far. */
void sock_reads(struct sock_reads *r);

/* "kernel", "self-check", "stalls" for a sock_fallback; NULL for none. */
const char *sock_fallback_name(uint32_t fb);

/* Starts connecting s to dst from the k-th source address (mod n). Returns
 * 0 (on_connect or on_error follow) or an errno value when the socket could
 * not even be started (EMFILE, EADDRNOTAVAIL...). */
int sock_connect(struct sock *s, const struct sockaddr_in *dst, unsigned k,
		 const struct sock_ops *ops);

/* Writes n bytes, queueing what the kernel does not take. Returns 0, or an
 * errno value after which the sock is closed (on_error is not called). */
int sock_write(struct sock *s, const void *p, size_t n);

/* Closes the socket and frees the buffers; the struct stays valid and can
 * be connected again. Safe on a closed sock and inside callbacks. */
void sock_close(struct sock *s);

/* Inside on_data: when the kernel queued the last of those bytes on the
 * socket (bench_now()'s clock), 0 if it did not say. */
uint64_t sock_arrival(void);

/* 1 while the socket is open (connecting or connected). */
int sock_open(const struct sock *s);

#endif
