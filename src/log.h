/*
 * log.h - one line per event, to stderr or a file, with a timestamp, the
 * process role and a level. Reopened on SIGUSR1.
 */
#ifndef ROTOR_LOG_H
#define ROTOR_LOG_H

#include "rotor.h"

enum log_level {
	LOG_NONE = 0,
	LOG_ERROR,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
	LOG_TRACE,
};

extern enum log_level log_level_cur;

/* Parses a Centrifugo level name (none, trace, debug, info, warn, error).
 * Returns RT_OK and sets *out, or RT_INVAL for an unknown name. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level l);

/* Sets the role printed on each line ("master", "worker 3", "rotorctl"). */
void log_set_role(const char *fmt, ...) ROTOR_PRINTF(1, 2);
void log_set_level(enum log_level l);

/* Sends the log to PATH (appending), or to stderr when PATH is NULL or "".
 * Returns RT_OK, or RT_ERR (logged to the previous destination) if PATH cannot
 * be opened; the previous destination then stays in use. */
int log_open(const char *path);
/* Reopens the current file (after rotation). Same contract as log_open. */
int log_reopen(void);

void log_msg(enum log_level l, const char *fmt, ...) ROTOR_PRINTF(2, 3);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_level_cur >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_trace(...) \
	do { if (log_level_cur >= LOG_TRACE) log_msg(LOG_TRACE, __VA_ARGS__); } while (0)

/* Logs a failed system call as "call(args) failed: strerror(errno)" at error
 * level; errno is preserved. Example: log_syscall("open(%s)", path). */
void log_syscall(const char *fmt, ...) ROTOR_PRINTF(1, 2);

#endif
