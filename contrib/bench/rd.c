/*
 * rd.c - running the daemon under test (rd.h).
 *
 * The child is given PR_SET_PDEATHSIG(SIGTERM) before exec, so a killed
 * rotor-bench does not leave a rotord behind; its stdout and stderr go to
 * the log file in the temporary directory.
 */
#include "rd.h"
#include "pstat.h"
#include "tlsc.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A port that was free on 127.0.0.1 a moment ago, or -1. */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

/* 1 when GET /health on the port answers 200 (over TLS with tls). */
static int healthy(int port, bool tls)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { 1, 0 };
	char buf[256];
	int ok = 0;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	static const char req[] = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		ssize_t n = -1;
		if (tls)
			n = tlsc_request(fd, req, sizeof(req) - 1, buf, sizeof(buf) - 1);
		else if (write(fd, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1))
			n = read(fd, buf, sizeof(buf) - 1);
		ok = n >= 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0;
	}
	close(fd);
	return ok;
}

static void print_log_tail(const struct rd *r)
{
	char path[192], buf[4096];
	snprintf(path, sizeof(path), "%s/rotord.log", r->dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	lseek(fd, end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0, SEEK_SET);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = 0;
		fprintf(stderr, "rotor-bench: rotord's log (%s) ends with:\n%s\n", path, buf);
	}
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* Removes dir and everything in it (rotord keeps subdirectories in shm.dir),
 * never following symbolic links. */
static void remove_dir(const char *dir)
{
	nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int write_config(const struct rd *r, int workers, const char *api_key, const char *secret,
			int proxy_port, const char *extra, const char *chan_opts)
{
	char path[192];
	snprintf(path, sizeof(path), "%s/config.json", r->dir);
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		fprintf(stderr, "rotor-bench: fopen(%s) failed: %s\n", path, strerror(errno));
		return -1;
	}
	char tls[512] = "";
	if (r->tls)
		snprintf(tls, sizeof(tls), ", \"tls\": {\"enabled\": true, \"cert_pem\": \"%s/cert.pem\", "
			 "\"key_pem\": \"%s/key.pem\"}", r->dir, r->dir);
	fprintf(f, "{\n  \"workers\": %d,\n"
		"  \"http_server\": {\"address\": \"127.0.0.1\", \"port\": %d%s},\n"
		"  \"log\": {\"level\": \"warn\", \"file\": \"%s/rotord.log\"},\n"
		"  \"shm\": {\"dir\": \"%s\"},\n"
		"  \"pid_file\": \"%s/rotord.pid\",\n"
		"  \"http_api\": {\"key\": \"%s\"},\n",
		workers, r->port, tls, r->dir, r->shm, r->dir, api_key);
	if (extra && *extra)
		fprintf(f, "  %s,\n", extra);
	if (proxy_port > 0)
		fprintf(f, "  \"client\": {\"proxy\": {\"connect\": {\"enabled\": true, \"timeout\": \"5s\", "
			"\"endpoint\": \"http://127.0.0.1:%d/connect\"}}},\n"
			"  \"rpc\": {\"proxy\": {\"timeout\": \"5s\", \"endpoint\": \"http://127.0.0.1:%d/rpc\"}, "
			"\"without_namespace\": {\"proxy_enabled\": true}},\n", proxy_port, proxy_port);
	else if (secret)
		fprintf(f, "  \"client\": {\"token\": {\"hmac_secret_key\": \"%s\"}},\n", secret);
	else
		fprintf(f, "  \"client\": {\"insecure\": true},\n");
	fprintf(f, "  \"channel\": {\"without_namespace\": {\"allow_subscribe_for_client\": %s%s%s}}\n}\n",
		secret || proxy_port > 0 ? "true" : "false", chan_opts && *chan_opts ? ", " : "",
		chan_opts ? chan_opts : "");
	return fclose(f) == 0 ? 0 : -1;
}

int rd_start(struct rd *r, const char *path, int workers, const int *cpus, int ncpus,
	     const char *api_key, const char *token_secret, int proxy_port, const char *extra,
	     const char *chan_opts, bool tls)
{
	memset(r, 0, sizeof(*r));
	r->tls = tls;
	const char *tmp = getenv("TMPDIR");
	snprintf(r->dir, sizeof(r->dir), "%s/rotor-bench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(r->dir) == NULL) {
		fprintf(stderr, "rotor-bench: mkdtemp(%s) failed: %s\n", r->dir, strerror(errno));
		r->dir[0] = 0;
		return -1;
	}
	struct stat st;
	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(r->shm, sizeof(r->shm), "/dev/shm/rotor-bench.XXXXXX");
		if (mkdtemp(r->shm) == NULL) {
			fprintf(stderr, "rotor-bench: mkdtemp(%s) failed: %s\n", r->shm, strerror(errno));
			r->shm[0] = 0;
		}
	}
	if (r->shm[0] == 0)
		snprintf(r->shm, sizeof(r->shm), "%s", r->dir);
	r->port = free_port();
	char cert[192], key[192];
	snprintf(cert, sizeof(cert), "%s/cert.pem", r->dir);
	snprintf(key, sizeof(key), "%s/key.pem", r->dir);
	if (r->port < 0 || (tls && tlsc_make_cert(cert, key) < 0) ||
	    write_config(r, workers, api_key, token_secret, proxy_port, extra, chan_opts) < 0) {
		rd_stop(r);
		return -1;
	}
	char conf[192], log[192];
	snprintf(conf, sizeof(conf), "%s/config.json", r->dir);
	snprintf(log, sizeof(log), "%s/rotord.log", r->dir);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "rotor-bench: fork failed: %s\n", strerror(errno));
		rd_stop(r);
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		if (ncpus > 0) {
			cpu_set_t set;
			CPU_ZERO(&set);
			for (int i = 0; i < ncpus; i++)
				CPU_SET(cpus[i], &set);
			if (sched_setaffinity(0, sizeof(set), &set) < 0)
				fprintf(stderr, "rotor-bench: sched_setaffinity for rotord failed: %s\n",
					strerror(errno));
		}
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int nul = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (nul >= 0)
			dup2(nul, 0);
		signal(SIGPIPE, SIG_DFL);
		execl(path, path, "-c", conf, (char *)NULL);
		fprintf(stderr, "rotor-bench: exec %s failed: %s\n", path, strerror(errno));
		_exit(127);
	}
	r->pid = pid;
	for (int i = 0; i < 1000; i++) {        /* 10 s */
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "rotor-bench: rotord exited during start-up (status %d)\n", status);
			r->pid = 0;
			print_log_tail(r);
			rd_stop(r);
			return -1;
		}
		pid_t kids[256];
		/* Every worker (and, with the Redis engine, its broker too). */
		if (pstat_children(pid, kids, 256) >= workers && healthy(r->port, r->tls))
			return 0;
		sleep_ms(10);
	}
	fprintf(stderr, "rotor-bench: rotord did not become healthy within 10 s\n");
	print_log_tail(r);
	rd_stop(r);
	return -1;
}

int rd_check(struct rd *r)
{
	int st;
	if (r->pid <= 0)
		return -1;
	if (waitpid(r->pid, &st, WNOHANG) != r->pid)
		return 0;
	fprintf(stderr, "rotor-bench: rotord exited (status %d)\n", st);
	print_log_tail(r);
	r->pid = 0;
	return -1;
}

void rd_stop(struct rd *r)
{
	if (r->pid > 0) {
		pid_t kids[256];
		int nk = pstat_children(r->pid, kids, 256), st;
		bool gone = rd_check(r) < 0;
		if (!gone) {
			kill(r->pid, SIGTERM);
			for (int i = 0; i < 1000 && !gone; i++) {
				if (waitpid(r->pid, &st, WNOHANG) == r->pid)
					gone = true;
				else
					sleep_ms(10);
			}
		}
		if (!gone) {
			fprintf(stderr, "rotor-bench: rotord ignored SIGTERM for 10 s: SIGKILL\n");
			kill(r->pid, SIGKILL);
			waitpid(r->pid, &st, 0);
			/* Its workers get SIGTERM from PR_SET_PDEATHSIG; any that
			 * ignores it too is killed by the pid we saw it under. */
			sleep_ms(1000);
			for (int i = 0; i < nk; i++)
				kill(kids[i], SIGKILL);
		}
		r->pid = 0;
	}
	if (r->shm[0] && strcmp(r->shm, r->dir) != 0)
		remove_dir(r->shm);
	r->shm[0] = 0;
	if (r->dir[0]) {
		remove_dir(r->dir);
		r->dir[0] = 0;
	}
}
