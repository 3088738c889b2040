/*
 * conf.h - rotor's configuration: Centrifugo's v6 JSON layout, read through
 * one table of keys (conf_keys.c).
 *
 * Model: a config is built in layers, each applied over the last:
 *   conf_init (defaults from the table) -> conf_apply_file -> conf_apply_env
 *   -> conf_set (command line) -> conf_check (cross-key rules, derived fields).
 * Each layer adds "key: problem" lines to a report instead of stopping, so one
 * pass reports every problem. The result is an effective JSON document
 * (c->doc, every key of the table present) plus typed fields for the keys the
 * code reads; strings and lists point into c->doc and live as long as it.
 *
 * The master builds and validates a config, then hands workers its dump
 * (conf_dump); a worker rebuilds it with conf_load_dump. Both sides therefore
 * agree exactly, environment and command line included.
 */
#ifndef ROTOR_CONF_H
#define ROTOR_CONF_H

#include "rotor.h"
#include <stdbool.h>
#include <jansson.h>

enum conf_type {
	CONF_BOOL,     /* JSON true/false; env: 1 t T TRUE true True 0 f F FALSE false False */
	CONF_INT,      /* JSON integer within [min, max]; stored as long long */
	CONF_DURATION, /* Go duration string ("25s", "1m30s", "500ms"); stored as long long ms; [min, max] in ms */
	CONF_STRING,   /* JSON string; stored as const char * (never NULL, "" when unset) */
	CONF_STRLIST,  /* JSON array of strings; env: space-separated; stored as const json_t * */
	CONF_JSON,     /* any JSON value kept as is (arrays of objects, maps); stored as const json_t * */
};

/* Key flags. */
#define CONF_RELOAD 0x01   /* HUP applies a change in place, in every worker */
#define CONF_IGNORED 0x02  /* a Centrifugo key rotor accepts but does not act on yet: warned when set */
#define CONF_SECRET 0x04   /* never printed in logs ("changed" lines show no value) */
#define CONF_REFUSED 0x08  /* with CONF_IGNORED: the key concerns security or where data lives
                            * (TLS, engines, proxies), so setting it is an error, not a warning */

#define CONF_NO_FIELD ((ptrdiff_t)-1)

struct conf_report;

struct conf_key {
	const char *name;   /* dotted v6 path, e.g. "client.ping_interval" */
	enum conf_type type;
	const char *def;    /* default, written as JSON text ("8000", "\"25s\"", "[]", "true") */
	long long min, max; /* bounds for CONF_INT and CONF_DURATION (ms) */
	unsigned flags;
	ptrdiff_t off;      /* offset of the typed field in struct conf, or CONF_NO_FIELD */
	/* Extra validation of a value that already has the right type; adds
	 * "name: problem" to REP and returns RT_INVAL when it refuses. May be NULL. */
	int (*check)(const struct conf_key *k, const json_t *v, struct conf_report *rep);
	const char *doc;    /* one line for rotor.conf(5), genconfig and -T */
};

extern const struct conf_key conf_keys[];
extern const size_t conf_nkeys;

/* Finds a key by its dotted name; NULL if the table has none. */
const struct conf_key *conf_key_find(const char *name);

struct conf_report {
	char **errors;
	size_t nerrors;
	char **warnings;
	size_t nwarnings;
};

void conf_report_error(struct conf_report *rep, const char *fmt, ...) ROTOR_PRINTF(2, 3);
void conf_report_warn(struct conf_report *rep, const char *fmt, ...) ROTOR_PRINTF(2, 3);
void conf_report_free(struct conf_report *rep);

/* The effective configuration. Typed fields are filled from doc by
 * conf_check; add a field here and point its key's `off` at it. */
struct conf {
	json_t *doc;               /* effective document, owned */

	long long workers;         /* workers */
	const char *pid_file;      /* pid_file */
	const char *address;       /* http_server.address */
	long long port;            /* http_server.port */
	const char *internal_address; /* http_server.internal_address */
	const char *internal_port; /* http_server.internal_port ("": none) */
	long long max_header_size; /* http_server.max_header_size */
	long long max_header_count;/* http_server.max_header_count */
	long long max_body_size;   /* http_server.max_request_body_size */
	long long read_header_timeout_ms; /* http_server.read_header_timeout */
	long long read_timeout_ms;  /* http_server.read_timeout */
	long long write_timeout_ms; /* http_server.write_timeout */
	long long idle_timeout_ms;  /* http_server.idle_timeout */
	const char *log_level;     /* log.level */
	const char *log_file;      /* log.file */
	long long shutdown_timeout_ms; /* shutdown.timeout */
	bool health_enabled;       /* health.enabled */
	const char *health_prefix; /* health.handler_prefix */
	const char *shm_dir;       /* shm.dir */
	long long bus_size;        /* shm.bus_size */
	const char *data_dir;      /* shm.data_dir */
	long long history_streams; /* shm.history_streams */
	long long history_bytes;   /* shm.history_size */
	long long presence_nodes;  /* shm.presence_entries */
	long long presence_bytes;  /* shm.presence_size */
	const char *token_hmac_secret; /* client.token.hmac_secret_key */
	const char *api_key;       /* http_api.key */
	bool api_insecure;         /* http_api.insecure */
	const char *api_prefix;    /* http_api.handler_prefix */

	/* client.*: read by every session */
	long long ping_interval_ms;        /* client.ping_interval (negative: no pings) */
	long long pong_timeout_ms;         /* client.pong_timeout (negative: no pong checks) */
	long long expired_close_delay_ms;  /* client.expired_close_delay */
	long long expired_sub_close_delay_ms; /* client.expired_sub_close_delay */
	long long stale_close_delay_ms;    /* client.stale_close_delay */
	long long channel_limit;           /* client.channel_limit */
	long long queue_max_size;          /* client.queue_max_size */
	long long user_connection_limit;   /* client.user_connection_limit */
	long long connection_limit;        /* client.connection_limit */
	long long history_max_limit;       /* client.history_max_publication_limit */
	long long recovery_max_limit;      /* client.recovery_max_publication_limit */
	long long presence_interval_ms;    /* client.presence_update_interval */
	bool client_insecure;              /* client.insecure */
	bool allow_anonymous_connect;      /* client.allow_anonymous_connect_without_token */
	bool disallow_anonymous_tokens;    /* client.disallow_anonymous_connection_tokens */
	bool skip_token_verify;            /* client.insecure_skip_token_signature_verify */
	bool include_server_time;          /* client.connect_include_server_time */
	const char *node_name;             /* node.name */

	int log_level_num;         /* derived from log_level by conf_check (enum log_level) */
};

/* Fills C with the table's defaults. */
void conf_init(struct conf *c);
/* Merges the JSON file PATH over C. A missing or unreadable file, or bad
 * JSON, is an error naming the file (and line/column for bad JSON). Keys not
 * in the table are warnings ("unknown key"); CONF_IGNORED keys that are set
 * are warnings ("not supported by rotor yet; ignored"); a value of the wrong
 * type or out of bounds is an error naming the key. */
int conf_apply_file(struct conf *c, const char *path, struct conf_report *rep);
/* Applies ROTOR_<SECTION>_<KEY> (and, under it, CENTRIFUGO_<SECTION>_<KEY>)
 * environment variables from ENVP (NULL = environ). Empty values count as
 * unset. Errors name the variable and the key. */
int conf_apply_env(struct conf *c, char **envp, struct conf_report *rep);
/* Sets one key from text, as the environment would (used for -p, -a). */
int conf_set(struct conf *c, const char *key, const char *text, struct conf_report *rep);
/* Applies cross-key rules and fills the typed fields. Returns RT_OK when the
 * report has no errors (from any layer), else RT_INVAL. */
int conf_check(struct conf *c, struct conf_report *rep);

/* The effective document as JSON text, nested, every key present; caller
 * frees. With REDACT, CONF_SECRET values print as "<hidden>" (for logs). */
char *conf_dump(const struct conf *c, bool redact);
/* Rebuilds a config from conf_dump output (no environment). RT_OK or RT_INVAL. */
int conf_load_dump(struct conf *c, const char *text, size_t len, struct conf_report *rep);

/* Calls FN for every key whose effective value differs between A and B. */
void conf_diff(const struct conf *a, const struct conf *b,
	       void (*fn)(const struct conf_key *k, const json_t *old, const json_t *new_, void *arg),
	       void *arg);

/* Frees what C owns; C may be conf_init'ed again. */
void conf_free(struct conf *c);

/* Parses a Go duration ("25s", "1m30s", "-1s", "0") into milliseconds
 * (sub-millisecond parts round away from zero). RT_OK or RT_INVAL. */
int conf_duration_ms(const char *s, long long *ms);

/* Whether the internal endpoints (the server API unless http_api.external,
 * /health) have a listener of their own: http_server.internal_port set to
 * something other than the main address and port. Then *ADDR and *PORT are
 * where it listens (the main address when internal_address is empty). */
bool conf_internal_listener(const struct conf *c, const char **addr, long long *port);

/* The value of a key in C's effective document (NULL if the key is unknown). */
const json_t *conf_get(const struct conf *c, const char *key);

/* Prints one line per key of the table: name, type, default, reload|restart,
 * supported|ignored and the doc line, separated by tabs (rotorctl configdoc). */
void conf_keys_print(FILE *out);

#endif
