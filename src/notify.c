/*
 * notify.c - sd_notify(3) by hand (notify.h). The protocol is one
 * datagram per message on an AF_UNIX SOCK_DGRAM socket whose address is
 * $NOTIFY_SOCKET, '@' standing for the abstract namespace's leading NUL.
 * A socket is made per message: messages are rare (start, reload, stop,
 * upgrade) and nothing is kept open across fork or exec.
 */
#include "config.h"
#include "notify.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int notify_send(const char *fmt, ...)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char msg[512];
	va_list ap;

	if (path == NULL || path[0] == '\0')
		return RT_OK;
	size_t len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path)) {
		log_error("NOTIFY_SOCKET: \"%s\" is neither an absolute path nor an abstract name", path);
		return RT_ERR;
	}
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	/* An abstract address is exactly as long as the name, a path ends
	 * with its NUL. */
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return RT_ERR;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_syscall("socket(AF_UNIX, SOCK_DGRAM)");
		return RT_ERR;
	}
	ssize_t k = sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	int saved = errno;
	close(fd);
	if (k < 0) {
		errno = saved;
		log_syscall("sendto(NOTIFY_SOCKET %s)", path);
		return RT_ERR;
	}
	return RT_OK;
}
