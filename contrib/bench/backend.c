/*
 * backend.c - the proxy benchmarks' application backend (backend.h).
 *
 * One process, one libev loop, one buffer per connection. A request is
 * taken once its head (up to the blank line) and its Content-Length body
 * are in the buffer; requests pipelined behind it are answered in turn.
 * Anything it cannot parse closes the connection: rotord sends well-formed
 * requests, and a benchmark must not hide a malformed one.
 */
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <ev.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUF_MAX 65536

struct bconn {
	ev_io w;
	size_t have;
	char buf[BUF_MAX];
};

static struct backend_counts B;
static uint64_t B_open;
static int B_res_fd;

static void bconn_close(struct ev_loop *loop, struct bconn *c)
{
	ev_io_stop(loop, &c->w);
	close(c->w.fd);
	free(c);
	B_open--;
}

/* The Content-Length of the head at p (n bytes, ending in the blank
 * line), 0 without one, -1 when it is not a number. */
static long content_length(const char *p, size_t n)
{
	static const char name[] = "\r\ncontent-length:";
	for (size_t i = 0; i + sizeof(name) - 1 <= n; i++) {
		if (strncasecmp(p + i, name, sizeof(name) - 1) != 0)
			continue;
		char *end;
		long v = strtol(p + i + sizeof(name) - 1, &end, 10);
		return v >= 0 && v < BUF_MAX && (*end == '\r' || *end == ' ') ? v : -1;
	}
	return 0;
}

/* Answers every whole request in c's buffer. Returns -1 to close. */
static int serve(struct bconn *c)
{
	size_t off = 0;
	char out[8192];
	size_t olen = 0;
	for (;;) {
		char *head_end = memmem(c->buf + off, c->have - off, "\r\n\r\n", 4);
		if (head_end == NULL)
			break;
		size_t head = (size_t)(head_end - (c->buf + off)) + 4;
		long body = content_length(c->buf + off, head);
		if (body < 0)
			return -1;
		if (c->have - off < head + (size_t)body)
			break;
		const char *p = c->buf + off;
		char resp[160];
		int status = 200, rn;
		const char *sp = memchr(p, ' ', head), *sp2 = sp ? memchr(sp + 1, ' ', head - (size_t)(sp + 1 - p)) : NULL;
		if (sp == NULL || sp2 == NULL || strncmp(p, "POST ", 5) != 0) {
			status = 404;
			rn = 0;
		} else if (sp2 - sp > 8 && memcmp(sp2 - 8, "/connect", 8) == 0) {
			rn = snprintf(resp, sizeof(resp), "{\"result\":{\"user\":\"u%llu\"}}",
				      (unsigned long long)B.requests);
		} else if (sp2 - sp > 4 && memcmp(sp2 - 4, "/rpc", 4) == 0) {
			rn = snprintf(resp, sizeof(resp), "{\"result\":{\"data\":{\"ok\":true}}}");
		} else {
			status = 404;
			rn = 0;
		}
		int n = snprintf(out + olen, sizeof(out) - olen,
				 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%.*s",
				 status, status == 200 ? "OK" : "Not Found", rn, rn, resp);
		if (n < 0 || (size_t)n >= sizeof(out) - olen)
			return -1;      /* more pipelined than a benchmark sends */
		olen += (size_t)n;
		B.requests++;
		off += head + (size_t)body;
	}
	memmove(c->buf, c->buf + off, c->have - off);
	c->have -= off;
	/* Small answers to a loopback peer: a short write means the peer
	 * stopped reading, which rotord never does. */
	if (olen > 0 && write(c->w.fd, out, olen) != (ssize_t)olen)
		return -1;
	return 0;
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	struct bconn *c = (struct bconn *)w;
	for (;;) {
		if (c->have == BUF_MAX) {
			bconn_close(loop, c);
			return;
		}
		ssize_t n = read(w->fd, c->buf + c->have, BUF_MAX - c->have);
		if (n > 0) {
			c->have += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		bconn_close(loop, c);   /* EOF or error */
		return;
	}
	if (serve(c) < 0)
		bconn_close(loop, c);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct bconn *c = malloc(sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->have = 0;
		B.accepted++;
		if (++B_open > B.max_open)
			B.max_open = B_open;
		ev_io_init(&c->w, on_read, fd, EV_READ);
		ev_io_start(loop, &c->w);
	}
}

static void on_term(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	ssize_t n = write(B_res_fd, &B, sizeof(B));
	(void)n;
	ev_break(loop, EVBREAK_ALL);
}

static void child(int lfd, int res_fd, const int *cpus, int ncpus)
{
	if (ncpus > 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		for (int i = 0; i < ncpus; i++)
			CPU_SET(cpus[i], &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	B_res_fd = res_fd;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	ev_io aw;
	ev_signal sw;
	ev_io_init(&aw, on_accept, lfd, EV_READ);
	ev_io_start(loop, &aw);
	ev_signal_init(&sw, on_term, SIGTERM);
	ev_signal_start(loop, &sw);
	ev_run(loop, 0);
	_exit(0);
}

int backend_start(struct backend *b, const int *cpus, int ncpus)
{
	memset(b, 0, sizeof(*b));
	b->res_fd = -1;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int pfd[2];
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0 || pipe2(pfd, O_CLOEXEC) < 0) {
		fprintf(stderr, "rotor-bench: the backend's socket failed: %s\n", strerror(errno));
		if (lfd >= 0)
			close(lfd);
		return -1;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "rotor-bench: fork failed: %s\n", strerror(errno));
		close(lfd);
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		close(pfd[0]);
		child(lfd, pfd[1], cpus, ncpus);
	}
	close(lfd);
	close(pfd[1]);
	b->pid = pid;
	b->port = ntohs(sa.sin_port);
	b->res_fd = pfd[0];
	return 0;
}

void backend_stop(struct backend *b, struct backend_counts *c)
{
	memset(c, 0, sizeof(*c));
	if (b->pid > 0) {
		kill(b->pid, SIGTERM);
		if (read(b->res_fd, c, sizeof(*c)) != (ssize_t)sizeof(*c))
			memset(c, 0, sizeof(*c));
		waitpid(b->pid, NULL, 0);
		b->pid = 0;
	}
	if (b->res_fd >= 0)
		close(b->res_fd);
	b->res_fd = -1;
}
