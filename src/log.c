/*
 * log.c - rotor's log: one line per event, "TIME LEVEL [role] message", to
 * stderr or to a file opened in append mode. Every process (master, workers,
 * rotorctl) writes its own lines with one write(2) each, so lines from
 * different processes appending to one file do not interleave. SIGUSR1 makes
 * each process reopen the file (log_reopen), for logrotate.
 */
#include "config.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_level_cur = LOG_INFO;

static int log_fd = STDERR_FILENO;
static char log_path[4096];
static char log_role[32] = "rotor";

static const char *const level_names[] = {
	[LOG_NONE] = "none", [LOG_ERROR] = "error", [LOG_WARN] = "warn",
	[LOG_INFO] = "info", [LOG_DEBUG] = "debug", [LOG_TRACE] = "trace",
};

int log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(level_names); i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return RT_OK;
		}
	}
	if (strcasecmp(name, "warning") == 0) {
		*out = LOG_WARN;
		return RT_OK;
	}
	return RT_INVAL;
}

const char *log_level_name(enum log_level l)
{
	return (unsigned)l < ROTOR_ARRAY_LEN(level_names) ? level_names[l] : "?";
}

void log_set_role(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(log_role, sizeof(log_role), fmt, ap);
	va_end(ap);
}

void log_set_level(enum log_level l)
{
	log_level_cur = l;
}

/* Opens PATH for appending; returns the fd or -1 with errno set. */
static int open_append(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_open(const char *path)
{
	if (path == NULL || path[0] == '\0') {
		if (log_fd != STDERR_FILENO)
			close(log_fd);
		log_fd = STDERR_FILENO;
		log_path[0] = '\0';
		return RT_OK;
	}
	int fd = open_append(path);
	if (fd < 0) {
		log_syscall("open(%s)", path);
		return RT_ERR;
	}
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	snprintf(log_path, sizeof(log_path), "%s", path);
	return RT_OK;
}

int log_reopen(void)
{
	if (log_path[0] == '\0')
		return RT_OK;
	char path[sizeof(log_path)];
	memcpy(path, log_path, sizeof(path));
	return log_open(path);
}

static void log_vmsg(enum log_level l, const char *fmt, va_list ap, int errnum)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ld %-5s [%s] ",
			      (long)(tv.tv_usec / 1000), log_level_name(l), log_role);
	if (n < sizeof(line)) {
		int k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (k > 0)
			n += (size_t)k;
	}
	if (errnum && n < sizeof(line)) {
		int k = snprintf(line + n, sizeof(line) - n, " failed: %s", strerror(errnum));
		if (k > 0)
			n += (size_t)k;
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line; a failed log write has nowhere to be reported. */
	ssize_t w = write(log_fd, line, n);
	(void)w;
}

void log_msg(enum log_level l, const char *fmt, ...)
{
	if (l > log_level_cur || l == LOG_NONE)
		return;
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(l, fmt, ap, 0);
	va_end(ap);
	errno = saved;
}

void log_syscall(const char *fmt, ...)
{
	int saved = errno;
	if (log_level_cur >= LOG_ERROR) {
		va_list ap;
		va_start(ap, fmt);
		log_vmsg(LOG_ERROR, fmt, ap, saved ? saved : EIO);
		va_end(ap);
	}
	errno = saved;
}
