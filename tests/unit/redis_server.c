/*
 * redis_server.c - see redis_server.h.
 */
#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

bool redis_server_available(void)
{
	return system("command -v redis-server >/dev/null 2>&1") == 0;
}

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* One PING over a plain socket: whether +PONG came back. */
static bool pings(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char buf[16] = "";
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = false;

	if (fd < 0)
		return false;
	struct timeval tv = { 0, 200000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && write(fd, "PING\r\n", 6) == 6 &&
	    read(fd, buf, sizeof(buf) - 1) > 0)
		ok = strncmp(buf, "+PONG", 5) == 0 || strncmp(buf, "-NOAUTH", 7) == 0; /* alive, with a password */
	close(fd);
	return ok;
}

int redis_server_start(struct redis_server *s, int port, const char *const *extra)
{
	const char *argv[64];
	char portbuf[16];
	int n = 0;

	memset(s, 0, sizeof(*s));
	s->port = port ? port : free_port();
	if (s->port <= 0)
		return -1;
	snprintf(s->dir, sizeof(s->dir), "/tmp/rotor-redis.XXXXXX");
	if (mkdtemp(s->dir) == NULL) {
		perror("mkdtemp");
		return -1;
	}
	snprintf(portbuf, sizeof(portbuf), "%d", s->port);
	argv[n++] = "redis-server";
	argv[n++] = "--port";
	argv[n++] = portbuf;
	argv[n++] = "--bind";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--appendonly";
	argv[n++] = "no";
	argv[n++] = "--dir";
	argv[n++] = s->dir;
	argv[n++] = "--loglevel";
	argv[n++] = "warning";
	for (int i = 0; extra && extra[i] && n < 62; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		int null = open("/dev/null", 1);
		if (null >= 0)
			dup2(null, 1);
		execvp("redis-server", (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 250; i++) {
		if (pings(s->port))
			return 0;
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
			fprintf(stderr, "redis-server on port %d exited at start\n", s->port);
			s->pid = 0;
			return -1;
		}
		nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
	}
	fprintf(stderr, "redis-server on port %d did not answer in 5 s\n", s->port);
	redis_server_stop(s, true);
	return -1;
}

void redis_server_stop(struct redis_server *s, bool hard)
{
	char cmd[128];

	if (s->pid > 0) {
		kill(s->pid, SIGCONT);
		kill(s->pid, hard ? SIGKILL : SIGTERM);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
	if (s->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", s->dir);
		s->dir[0] = '\0';
	}
}

void redis_server_pause(struct redis_server *s, bool pause)
{
	if (s->pid > 0)
		kill(s->pid, pause ? SIGSTOP : SIGCONT);
}
