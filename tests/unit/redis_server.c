/*
 * redis_server.c - see redis_server.h.
 */
#include "redis_server.h"

#include <ev.h>

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
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

/* Whether PORT can be bound on the loopback address now. */
static bool port_free(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
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

/* Forks and execs ARGV[0] for S (port and directory set) and waits until
 * it answers PING. */
static int spawn(struct redis_server *s, const char *const *argv)
{
	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		int null = open("/dev/null", 1);
		if (null >= 0)
			dup2(null, 1);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 250; i++) {
		if (pings(s->port))
			return 0;
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
			fprintf(stderr, "%s on port %d exited at start\n", argv[0], s->port);
			s->pid = 0;
			return -1;
		}
		nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
	}
	fprintf(stderr, "%s on port %d did not answer in 5 s\n", argv[0], s->port);
	redis_server_stop(s, true);
	return -1;
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
	return spawn(s, argv);
}

int redis_sentinel_start(struct redis_server *s, int port, const char *master_name, int master_port, int quorum,
			 int down_ms, const char *const *extra)
{
	char path[128];
	FILE *f;

	memset(s, 0, sizeof(*s));
	s->port = port ? port : free_port();
	if (s->port <= 0)
		return -1;
	snprintf(s->dir, sizeof(s->dir), "/tmp/rotor-sentinel.XXXXXX");
	if (mkdtemp(s->dir) == NULL) {
		perror("mkdtemp");
		return -1;
	}
	snprintf(path, sizeof(path), "%s/sentinel.conf", s->dir);
	if ((f = fopen(path, "w")) == NULL) {
		perror(path);
		return -1;
	}
	fprintf(f, "port %d\nbind 127.0.0.1\ndir %s\nloglevel warning\nlogfile \"\"\n"
		"sentinel monitor %s 127.0.0.1 %d %d\n"
		"sentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s 3000\n",
		s->port, s->dir, master_name, master_port, quorum, master_name, down_ms, master_name);
	for (int i = 0; extra && extra[i]; i++)
		fprintf(f, "%s\n", extra[i]);
	if (fclose(f) != 0) {
		perror(path);
		return -1;
	}
	const char *argv[] = { "redis-sentinel", path, NULL };
	return spawn(s, argv);
}

struct redisReply *redis_server_cmd(int port, const char *password, const char *fmt, ...)
{
	struct timeval tv = { 2, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
	redisReply *r = NULL;
	va_list ap;

	if (c == NULL || c->err) {
		redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	if (password) {
		r = redisCommand(c, "AUTH %s", password);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			if (r)
				freeReplyObject(r);
			redisFree(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	return r;
}

const char *redis_server_str(int port, const char *fmt, ...)
{
	static char buf[1024];
	struct timeval tv = { 2, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
	redisReply *r = NULL;
	va_list ap;

	buf[0] = '\0';
	if (c == NULL || c->err) {
		redisFree(c);
		return buf;
	}
	redisSetTimeout(c, tv);
	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	if (r == NULL)
		return buf;
	if (r->type == REDIS_REPLY_INTEGER)
		snprintf(buf, sizeof(buf), "%lld", r->integer);
	else if (r->type == REDIS_REPLY_NIL)
		snprintf(buf, sizeof(buf), "(nil)");
	else if (r->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i < r->elements; i++) {
			size_t n = strlen(buf);
			const redisReply *e = r->element[i];
			if (e->type == REDIS_REPLY_INTEGER)
				snprintf(buf + n, sizeof(buf) - n, "%s%lld", i ? " " : "", e->integer);
			else
				snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? " " : "", e->str ? e->str : "?");
		}
	else if (r->str)
		snprintf(buf, sizeof(buf), "%s", r->str);
	freeReplyObject(r);
	return buf;
}

int redis_cluster_start(struct redis_server *s, int n)
{
	static const char *const extra[] = { "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
					     "--cluster-node-timeout", "5000", NULL };
	const char *argv[16];
	char addrs[8][32];
	int k = 0, status = -1;
	pid_t pid;

	if (n > 8)
		return -1;
	memset(s, 0, (size_t)n * sizeof(*s));
	for (int i = 0; i < n; i++) {
		/* the cluster bus listens on port + 10000 */
		int port = 0;
		for (int t = 0; t < 100 && port == 0; t++) {
			int p = free_port();
			if (p > 1024 && p + 10000 <= 65535 && port_free(p + 10000))
				port = p;
		}
		if (port == 0 || redis_server_start(&s[i], port, extra) != 0)
			goto fail;
	}
	argv[k++] = "redis-cli";
	argv[k++] = "--cluster";
	argv[k++] = "create";
	for (int i = 0; i < n; i++) {
		snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%d", s[i].port);
		argv[k++] = addrs[i];
	}
	argv[k++] = "--cluster-replicas";
	argv[k++] = "0";
	argv[k++] = "--cluster-yes";
	argv[k] = NULL;
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 1);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "redis-cli --cluster create failed (status %d)\n", status);
		goto fail;
	}
	for (int t = 0; t < 1000; t++) {
		int ok = 0;
		for (int i = 0; i < n; i++) {
			redisReply *r = redis_server_cmd(s[i].port, NULL, "CLUSTER INFO");
			ok += r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok") != NULL;
			if (r)
				freeReplyObject(r);
		}
		if (ok == n)
			return 0;
		nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
	}
	fprintf(stderr, "the cluster did not reach cluster_state:ok in 20 s\n");
fail:
	for (int i = 0; i < n; i++)
		redis_server_stop(&s[i], true);
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

void redis_loop_spin(struct ev_loop *lp, double secs)
{
	double t0 = ev_time();
	while (ev_time() - t0 < secs)
		ev_run(lp, EVRUN_ONCE);
}
