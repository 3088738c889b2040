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

/* Callbacks. None of them may free the struct sock; they may sock_close it,
 * after which sock.c touches nothing but its flags. */
struct sock_ops {
	/* The TCP connection is established. */
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
	uint16_t gen;           /* io_uring: tells this connection's completions */
	uint8_t state;
	uint8_t armed;          /* io_uring: a receive is in flight */
};

/* The loop every sock of this process runs on, the source addresses
 * (127.0.0.1 .. 127.0.0.n, used only towards a loopback destination;
 * n = 0 lets the kernel choose) and whether to read through io_uring (if
 * the kernel allows; otherwise a note on stderr and recvmsg). Call once
 * before anything else. */
void sock_setup(struct ev_loop *loop, int src_addrs, bool uring);

/* Whether reads go through io_uring. */
bool sock_uring(void);

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
