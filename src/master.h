/*
 * master.h - the master process: owns the config, the listening sockets and
 * the shared memory, forks the workers and supervises them. It never serves
 * a client. Also the control protocol between master and workers.
 */
#ifndef ROTOR_MASTER_H
#define ROTOR_MASTER_H

#include "rotor.h"
#include "conf.h"
#include <stdint.h>
#include <sys/types.h>

/* The master's pid, known to workers too (they are its forks). */
extern pid_t master_pid;

/* Master -> worker messages on the control socket: a header, then LEN bytes. */
enum ctl_type {
	CTL_CONFIG = 1,     /* payload: conf_dump text of the new effective config */
	CTL_WAKE_FD = 2,    /* payload: u32 bus slot; an eventfd travels with it (SCM_RIGHTS) */
	CTL_SLOT_GONE = 3,  /* payload: u32 bus slot whose worker died: drop its fds */
	CTL_HANDOFF_FD = 4, /* payload: u32 bus slot; the sending end of that worker's
	                     * handoff socket travels with it (SCM_RIGHTS) */
};
#define CTL_TYPE_MAX CTL_HANDOFF_FD

struct ctl_hdr {
	uint32_t type;
	uint32_t len;
};
_Static_assert(sizeof(struct ctl_hdr) == 8, "ctl_hdr is 8 bytes on the wire");

#define CTL_MAX_LEN (64u << 20)

/* What the command line asked for, kept so a reload can rebuild the config
 * exactly as at start (file, then environment, then these overrides). */
struct master_args {
	const char *config_path;  /* NULL: the default path, which may be missing */
	const char *port;         /* -p */
	const char *address;      /* -a */
	int daemonize;            /* -d */
	int ready_fd;             /* -d: "0" goes here once serving; -1 if none */
	const char *exe;          /* the binary's absolute path as started (USR2 runs
	                           * what is there then); NULL: no upgrade */
	char **argv;              /* the command line, for the upgrade's exec */
};

/* Exit status of a new master that refuses an upgrade because a shared
 * segment of the running one has another kind, layout version or geometry. */
#define MASTER_EXIT_LAYOUT 3

/* Builds the effective config from ARGS (defaults, file, environment,
 * command line), printing every warning and error through the log. Returns
 * RT_OK or RT_INVAL (every problem already logged). */
int master_load_config(const struct master_args *args, struct conf *c, int print_to_stderr);

/* The default config file path (ROTOR_SYSCONFDIR/rotor/config.json). */
const char *master_default_config(void);

/* The pid file of a config: pid_file, or <shm.dir>/rotor-<port>.pid. Caller frees. */
char *master_pid_path(const struct conf *c);

/* The channel table's geometry and directory for config C, as the master
 * opens it (rotorctl attaches with the same). Returns the directory, which
 * CFG->dir points to; the caller frees it. */
struct ctab_config;
char *master_history_config(const struct conf *c, struct ctab_config *cfg);

/* Runs the master until shutdown; returns the process exit status. */
int master_run(const struct master_args *args, struct conf *conf);

#endif
