/*
 * rotord.c - the daemon's entry point: command line, config test and dump,
 * signalling a running master, daemonizing, then the master itself.
 */
#include "config.h"
#include "conf.h"
#include "log.h"
#include "master.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
	fprintf(out,
		"usage: rotord [-dhtTv] [-c file] [-p port] [-a address] [-s signal]\n"
		"  -c, --config FILE    config file (default %s)\n"
		"  -t, --test           check the config and exit\n"
		"  -T, --dump           print the effective config and exit\n"
		"  -s SIGNAL            send reload|stop|quit|reopen to the running master\n"
		"  -d, --daemon         run in the background\n"
		"  -p, --http_server.port PORT\n"
		"  -a, --http_server.address ADDRESS\n"
		"  -v, --version        print the version and exit\n"
		"  -h, --help           this help\n",
		master_default_config());
}

static const struct { const char *name; int sig; } signals[] = {
	{ "reload", SIGHUP }, { "stop", SIGTERM }, { "quit", SIGQUIT }, { "reopen", SIGUSR1 },
};

/* -s: signals the master named by the config's pid file. */
static int send_signal(const char *name, const struct conf *c)
{
	int sig = 0;
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(signals); i++)
		if (strcmp(name, signals[i].name) == 0)
			sig = signals[i].sig;
	if (sig == 0) {
		fprintf(stderr, "rotord: -s: unknown signal \"%s\" (reload, stop, quit or reopen)\n", name);
		return 2;
	}
	char *path = master_pid_path(c);
	FILE *f = fopen(path, "r");
	long pid = 0;
	if (f == NULL) {
		fprintf(stderr, "rotord: cannot open pid file %s: %s (is rotord running?)\n", path,
			strerror(errno));
		free(path);
		return 1;
	}
	if (fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
		fprintf(stderr, "rotord: pid file %s holds no pid\n", path);
		fclose(f);
		free(path);
		return 1;
	}
	fclose(f);
	if (kill((pid_t)pid, sig) < 0) {
		fprintf(stderr, "rotord: kill(%ld, %s) failed: %s\n", pid, name, strerror(errno));
		free(path);
		return 1;
	}
	free(path);
	return 0;
}

/* Forks into the background. The parent exits only once the child has said
 * whether it started (0) or not (1), so `rotord -d` reports failures. */
static int daemonize(int *ready_fd)
{
	int p[2];
	char c;

	if (pipe2(p, O_CLOEXEC) < 0) {
		perror("rotord: pipe");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("rotord: fork");
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		ssize_t n = read(p[0], &c, 1);
		_exit(n == 1 && c == '0' ? 0 : 1);
	}
	close(p[0]);
	setsid();
	if (fork() > 0)
		_exit(0);
	if (chdir("/") < 0)
		perror("rotord: chdir /");
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	*ready_fd = p[1];
	return 0;
}

/* This binary's absolute path into OUT: ARGV0 resolved when it names a
 * path, else (found through PATH) the one the kernel ran. NULL if unknown. */
static const char *self_path(const char *argv0, char out[PATH_MAX])
{
	if (strchr(argv0, '/') != NULL)
		return realpath(argv0, out);
	ssize_t n = readlink("/proc/self/exe", out, PATH_MAX - 1);
	if (n <= 0)
		return NULL;
	out[n] = '\0';
	return out;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "dump", no_argument, NULL, 'T' },
		{ "daemon", no_argument, NULL, 'd' },
		{ "http_server.port", required_argument, NULL, 'p' },
		{ "http_server.address", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },    /* Centrifugo v5 spelling */
		{ "address", required_argument, NULL, 'a' }, /* Centrifugo v5 spelling */
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct master_args args = { .ready_fd = -1 };
	const char *sig = NULL;
	int test = 0, dump = 0, opt;

	log_set_role("rotord");
	while ((opt = getopt_long(argc, argv, "c:tTs:dp:a:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': args.config_path = optarg; break;
		case 't': test = 1; break;
		case 'T': dump = 1; break;
		case 's': sig = optarg; break;
		case 'd': args.daemonize = 1; break;
		case 'p': args.port = optarg; break;
		case 'a': args.address = optarg; break;
		case 'v': printf("rotor v%s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "rotord: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	struct conf *c = xcalloc(1, sizeof(*c));
	int valid = master_load_config(&args, c, test || dump || sig) == RT_OK;
	if (test) {
		if (valid)
			printf("rotord: configuration %s is valid\n",
			       args.config_path ? args.config_path : master_default_config());
		return valid ? 0 : 1;
	}
	if (!valid) {
		if (!dump && !sig)
			log_error("invalid configuration; not starting");
		return 1;
	}
	if (dump) {
		char *text = conf_dump(c, false);
		printf("%s\n", text);
		free(text);
		return 0;
	}
	if (sig)
		return send_signal(sig, c);

	/* The binary upgrade (USR2) runs what is at this path then: resolved
	 * now, before -d moves to /. Found through PATH, the path is the one
	 * the kernel ran. */
	static char exe[PATH_MAX];
	if (self_path(argv[0], exe) != NULL) {
		args.exe = exe;
		args.argv = argv;
	}
	/* A new binary started by an upgrade is in the background already. */
	if (getenv("ROTOR_UPGRADE_FROM") != NULL)
		args.daemonize = 0;
	int ready_fd = -1;
	if (args.daemonize && c->log_file[0] == '\0')
		fprintf(stderr, "rotord: warning: -d without log.file: the log is discarded\n");
	if (args.daemonize && daemonize(&ready_fd) < 0)
		return 1;
	if (args.daemonize && args.config_path && args.config_path[0] != '/')
		log_warn("-c %s is relative and rotord -d runs in /; reload will look for it there",
			 args.config_path);
	args.ready_fd = ready_fd;
	return master_run(&args, c);
}
