/*
 * util.c - allocation that never returns NULL, randomness, clocks, fd flags
 * and number parsing. Allocation failure is handled here and only here: the
 * process logs and aborts, and the master restarts a worker that died.
 */
#include "config.h"
#include "util.h"
#include "log.h"
#include "proto.h"
#include "utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static ROTOR_NORETURN void out_of_memory(size_t n)
{
	log_error("out of memory allocating %zu bytes", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		out_of_memory(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		out_of_memory(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		out_of_memory(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		out_of_memory(strlen(fmt));
	return s;
}

long util_unescape(const char *s, size_t n, char *out, bool plus_space)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi, lo;

			if (i + 2 >= n)
				return -1;
			hi = utf8_hexval((unsigned char)s[i + 1]);
			lo = utf8_hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = plus_space && s[i] == '+' ? ' ' : s[i];
		}
	}
	return (long)o;
}

int util_random(void *buf, size_t n)
{
	unsigned char *p = buf;
	while (n > 0) {
		ssize_t k = getrandom(p, n, 0);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			log_syscall("getrandom(%zu)", n);
			return RT_ERR;
		}
		p += k;
		n -= (size_t)k;
	}
	return RT_OK;
}

void util_uuid4(unsigned char b[16], char out[36])
{
	static const char hex[] = "0123456789abcdef";
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	for (int i = 0, j = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = hex[b[i] >> 4];
		out[j++] = hex[b[i] & 15];
	}
}

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

int64_t util_mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

int64_t util_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Adds FLAG to the fd's flags through GET/SET (F_GETFL/F_SETFL or F_GETFD/F_SETFD). */
static int add_fd_flag(int fd, int get, int set, int flag, const char *what)
{
	int fl = fcntl(fd, get);
	if (fl == -1 || fcntl(fd, set, fl | flag) == -1) {
		log_syscall("fcntl(%d, %s)", fd, what);
		return RT_ERR;
	}
	return RT_OK;
}

int util_set_nonblock(int fd)
{
	return add_fd_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK, "O_NONBLOCK");
}

int util_set_cloexec(int fd)
{
	return add_fd_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC, "FD_CLOEXEC");
}

int util_parse_int(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return RT_INVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return RT_INVAL;
	*out = v;
	return RT_OK;
}

struct pstr pstr_dup(struct pstr s)
{
	struct pstr r = { NULL, 0 };
	if (s.n) {
		char *p = xmalloc(s.n);
		memcpy(p, s.p, s.n);
		r.p = p;
		r.n = s.n;
	}
	return r;
}

void pstr_free(struct pstr *s)
{
	free((void *)s->p);
	s->p = NULL;
	s->n = 0;
}
