/*
 * rotorctl.c - the control and helper tool: Centrifugo's helper commands
 * (genconfig, checkconfig, gentoken, gensubtoken, checktoken, checksubtoken,
 * version) with its names, flags and output, plus configdoc.
 *
 * Model: one table of commands; each entry parses its own options with
 * getopt_long and returns the exit status: 0 done, 1 failed (the reason on
 * stderr), 2 bad command line (usage on stderr). Commands that read a config
 * build it the way rotord does (file, then environment, then checks), so
 * what rotorctl accepts rotord accepts. New commands (stats, signals by pid
 * file) are one function and one table line.
 */
#include "config.h"
#include "b64.h"
#include "conf.h"
#include "stats.h"
#include "seg.h"
#include "master.h"
#include "bus.h"
#include "chan.h"
#include "node.h"
#include "smap.h"
#include "snap.h"
#include "pres.h"
#include "log.h"
#include "token.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define DEFAULT_CONFIG "config.json"
#define DEFAULT_TTL 604800 /* one week, like Centrifugo */
#define MAX_TTL 9223372036LL /* what Go's time.Duration holds, in seconds */

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *synopsis; /* options and arguments */
	const char *summary;
	const char *options;  /* one line per option, for -h */
};

static const struct command *find_command(const char *name);
static void usage(FILE *out);

/* Prints the help of CMD to OUT. */
static void command_help(const struct command *cmd, FILE *out)
{
	fprintf(out, "usage: rotorctl %s %s\n\n%s.\n", cmd->name, cmd->synopsis, cmd->summary);
	if (cmd->options && *cmd->options)
		fprintf(out, "\noptions:\n%s", cmd->options);
}

/* Reports a command-line mistake in CMD and returns EXIT_USAGE. */
static int bad_usage(const struct command *cmd, const char *fmt, ...) ROTOR_PRINTF(2, 3);
static int bad_usage(const struct command *cmd, const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		fprintf(stderr, "rotorctl %s: ", cmd->name);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	command_help(cmd, stderr);
	return EXIT_USAGE;
}

/* Options shared by the commands; each command accepts a subset, named by
 * a mask of OPT_* bits. -s is --channel for gensubtoken and --strict for
 * checkconfig, as in Centrifugo. */
enum {
	OPT_CONFIG = 1 << 0,  /* -c, --config FILE */
	OPT_USER = 1 << 1,    /* -u, --user USER */
	OPT_TTL = 1 << 2,     /* -t, --ttl SECONDS */
	OPT_QUIET = 1 << 3,   /* -q, --quiet */
	OPT_CHANNEL = 1 << 4, /* -s, --channel NAME */
	OPT_STRICT = 1 << 5,  /* -s, --strict */
	OPT_JSON = 1 << 6,    /* --json */
	OPT_ROWS = 1 << 7,    /* -n, --rows N */
	OPT_ONCE = 1 << 8,    /* --once */
	OPT_DELAY = 1 << 9,   /* -d, --delay SECONDS */
};

struct opts {
	const char *config;
	const char *user;
	const char *channel;
	long long ttl;
	bool quiet;
	bool strict;
	bool json;
	bool once;
	long long rows;
	double delay;
	char **args; /* positional arguments */
	int nargs;
};

/* Parses ARGV (ARGV[0] is the command name) for CMD, accepting the options
 * in MASK. Returns -1 when parsed, else the exit status (0 after -h,
 * EXIT_USAGE after a mistake). */
static int parse_opts(const struct command *cmd, int argc, char **argv, unsigned mask,
		      struct opts *o)
{
	enum { L_CHANNEL = 256, L_STRICT, L_JSON, L_ONCE };
	static const struct option longs[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "user", required_argument, NULL, 'u' },
		{ "ttl", required_argument, NULL, 't' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "channel", required_argument, NULL, L_CHANNEL },
		{ "strict", no_argument, NULL, L_STRICT },
		{ "json", no_argument, NULL, L_JSON },
		{ "rows", required_argument, NULL, 'n' },
		{ "once", no_argument, NULL, L_ONCE },
		{ "delay", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char optstring[32];
	int ch, idx;

	memset(o, 0, sizeof(*o));
	o->config = DEFAULT_CONFIG;
	o->user = "";
	o->ttl = DEFAULT_TTL;
	o->rows = 20;
	o->delay = 1;
	/* A leading ':' lets us word the missing-argument message ourselves. */
	snprintf(optstring, sizeof(optstring), ":%s%s%s%s%s%s%sh", mask & OPT_CONFIG ? "c:" : "",
		 mask & OPT_USER ? "u:" : "", mask & OPT_TTL ? "t:" : "",
		 mask & OPT_QUIET ? "q" : "",
		 mask & OPT_CHANNEL ? "s:" : mask & OPT_STRICT ? "s" : "",
		 mask & OPT_ROWS ? "n:" : "", mask & OPT_DELAY ? "d:" : "");
	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(argc, argv, optstring, longs, &idx)) != -1) {
		if (ch == 's')
			ch = mask & OPT_CHANNEL ? L_CHANNEL : L_STRICT;
		/* Long options are all known to getopt; refuse those CMD lacks. */
		if ((ch == 'c' && !(mask & OPT_CONFIG)) || (ch == 'u' && !(mask & OPT_USER)) ||
		    (ch == 't' && !(mask & OPT_TTL)) || (ch == 'q' && !(mask & OPT_QUIET)) ||
		    (ch == L_CHANNEL && !(mask & OPT_CHANNEL)) || (ch == L_STRICT && !(mask & OPT_STRICT)) ||
		    (ch == L_JSON && !(mask & OPT_JSON)) || (ch == 'n' && !(mask & OPT_ROWS)) ||
		    (ch == L_ONCE && !(mask & OPT_ONCE)) || (ch == 'd' && !(mask & OPT_DELAY)))
			return bad_usage(cmd, "option --%s is not accepted here", longs[idx].name);
		switch (ch) {
		case 'c':
			o->config = optarg;
			break;
		case 'u':
			o->user = optarg;
			break;
		case L_CHANNEL:
			o->channel = optarg;
			break;
		case 't':
			if (util_parse_int(optarg, -MAX_TTL, MAX_TTL, &o->ttl) < 0)
				return bad_usage(cmd, "-t/--ttl: \"%s\" is not a number of seconds", optarg);
			break;
		case 'q':
			o->quiet = true;
			break;
		case L_STRICT:
			o->strict = true;
			break;
		case L_JSON:
			o->json = true;
			break;
		case L_ONCE:
			o->once = true;
			break;
		case 'n':
			if (util_parse_int(optarg, 1, 1000000, &o->rows) < 0)
				return bad_usage(cmd, "-n/--rows: \"%s\" is not a number of rows", optarg);
			break;
		case 'd': {
			char *end;
			o->delay = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || !(o->delay >= 0.05 && o->delay <= 3600))
				return bad_usage(cmd, "-d/--delay: \"%s\" is not a number of seconds from 0.05 to 3600",
						 optarg);
			break;
		}
		case 'h':
			command_help(cmd, stdout);
			return 0;
		case ':':
			return bad_usage(cmd, "%s needs an argument", argv[optind - 1]);
		default:
			if (optopt > 0 && optopt < 256)
				return bad_usage(cmd, "unknown option -%c", optopt);
			return bad_usage(cmd, "unknown option %s", argv[optind - 1]);
		}
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	return -1;
}

/* Builds the effective config from PATH and the environment, as rotord
 * does. Problems go to stderr. Returns RT_OK or RT_INVAL; C is to be freed
 * with conf_free in both cases. */
static int load_conf(struct conf *c, const char *path)
{
	struct conf_report rep = { 0 };
	int rc;

	conf_init(c);
	conf_apply_file(c, path, &rep);
	conf_apply_env(c, NULL, &rep);
	rc = conf_check(c, &rep);
	for (size_t i = 0; i < rep.nerrors; i++)
		fprintf(stderr, "config error: %s\n", rep.errors[i]);
	conf_report_free(&rep);
	return rc;
}

/* The token section that verifies subscription tokens: its own when
 * client.subscription_token.enabled, else the connection one. */
static const char *sub_token_section(const struct conf *c)
{
	return json_is_true(conf_get(c, "client.subscription_token.enabled"))
		       ? "client.subscription_token" : "client.token";
}

/* Loads the verifier of SECTION; problems go to stderr. */
static int load_keys(struct tok_keys *k, const struct conf *c, const char *section)
{
	struct conf_report rep = { 0 };
	int rc = tok_keys_from_conf(k, c, section, &rep);

	for (size_t i = 0; i < rep.nerrors; i++)
		fprintf(stderr, "config error: %s\n", rep.errors[i]);
	conf_report_free(&rep);
	return rc;
}

/* ---- genconfig ----------------------------------------------------------- */

enum gen_value { GEN_SECRET64, GEN_SECRET16, GEN_EMPTY_LIST, GEN_FALSE };

/* What genconfig writes, as Centrifugo's does. Every key must exist in the
 * config table, which is checked before anything is written. */
static const struct {
	const char *key;
	enum gen_value value;
} gen_keys[] = {
	{ "client.token.hmac_secret_key", GEN_SECRET64 },
	{ "client.allowed_origins", GEN_EMPTY_LIST },
	{ "admin.enabled", GEN_FALSE },
	{ "admin.password", GEN_SECRET16 },
	{ "admin.secret", GEN_SECRET64 },
	{ "http_api.key", GEN_SECRET64 },
};

/* N random bytes as base64url without padding; NULL if the kernel's
 * generator failed (logged). */
static char *random_secret(size_t n)
{
	unsigned char buf[64];
	char *s;

	if (n > sizeof(buf) || util_random(buf, n) < 0)
		return NULL;
	s = b64_encode_alloc(buf, n, B64_URL | B64_NOPAD);
	explicit_bzero(buf, sizeof(buf));
	return s;
}

/* Sets the dotted KEY in the nested object ROOT to V (reference stolen). */
static void set_path(json_t *root, const char *key, json_t *v)
{
	char *path = xstrdup(key), *dot, *name = path;
	json_t *o = root;

	while ((dot = strchr(name, '.')) != NULL) {
		json_t *child;
		*dot = '\0';
		child = json_object_get(o, name);
		if (child == NULL) {
			child = json_object();
			json_object_set_new(o, name, child);
		}
		o = child;
		name = dot + 1;
	}
	json_object_set_new(o, name, v);
	free(path);
}

/* Writes TEXT to a new file PATH (mode 0600: it holds secrets); refuses to
 * replace an existing file. Returns RT_OK, or RT_ERR with the reason on stderr. */
static int write_new_file(const char *path, const char *text)
{
	size_t len = strlen(text), off = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd == -1) {
		if (errno == EEXIST)
			fprintf(stderr, "genconfig: %s already exists; not overwriting it\n", path);
		else
			fprintf(stderr, "genconfig: open(%s) failed: %s\n", path, strerror(errno));
		return RT_ERR;
	}
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "genconfig: write(%s) failed: %s\n", path, strerror(errno));
			close(fd);
			unlink(path);
			return RT_ERR;
		}
		off += (size_t)n;
	}
	if (close(fd) == -1) {
		fprintf(stderr, "genconfig: close(%s) failed: %s\n", path, strerror(errno));
		unlink(path);
		return RT_ERR;
	}
	return RT_OK;
}

static int cmd_genconfig(int argc, char **argv)
{
	const struct command *cmd = find_command("genconfig");
	struct opts o;
	struct conf c;
	json_t *root;
	char *text;
	const char *ext;
	int rc;

	if ((rc = parse_opts(cmd, argc, argv, OPT_CONFIG, &o)) >= 0)
		return rc;
	if (o.nargs > 0)
		return bad_usage(cmd, "unexpected argument %s", o.args[0]);
	ext = strrchr(o.config, '.');
	if (ext && (!strcmp(ext, ".yaml") || !strcmp(ext, ".yml") || !strcmp(ext, ".toml"))) {
		fprintf(stderr, "genconfig: %s: rotor reads JSON configuration only\n", o.config);
		return 1;
	}

	root = json_object();
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(gen_keys); i++) {
		json_t *v;
		char *secret;

		if (conf_key_find(gen_keys[i].key) == NULL) {
			fprintf(stderr, "genconfig: %s is not a key of the config table\n", gen_keys[i].key);
			json_decref(root);
			return 1;
		}
		switch (gen_keys[i].value) {
		case GEN_SECRET64:
		case GEN_SECRET16:
			secret = random_secret(gen_keys[i].value == GEN_SECRET64 ? 64 : 16);
			if (secret == NULL) {
				fprintf(stderr, "genconfig: no random bytes from the kernel\n");
				json_decref(root);
				return 1;
			}
			v = json_string(secret);
			free(secret);
			break;
		case GEN_EMPTY_LIST:
			v = json_array();
			break;
		default:
			v = json_false();
			break;
		}
		set_path(root, gen_keys[i].key, v);
	}
	text = json_dumps(root, JSON_INDENT(2));
	json_decref(root);
	if (text == NULL) {
		fprintf(stderr, "genconfig: out of memory\n");
		return 1;
	}
	{
		char *withnl = xasprintf("%s\n", text);
		free(text);
		text = withnl;
	}
	rc = write_new_file(o.config, text);
	free(text);
	if (rc < 0)
		return 1;

	/* What was written must load, as Centrifugo checks after writing. */
	rc = load_conf(&c, o.config);
	conf_free(&c);
	if (rc < 0) {
		unlink(o.config);
		fprintf(stderr, "genconfig: the generated config did not validate; removed %s\n", o.config);
		return 1;
	}
	printf("%s written with fresh secrets:", o.config);
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(gen_keys); i++)
		printf("%s %s", i ? "," : "", gen_keys[i].key);
	printf("\n");
	return 0;
}

/* ---- checkconfig --------------------------------------------------------- */

static int cmd_checkconfig(int argc, char **argv)
{
	const struct command *cmd = find_command("checkconfig");
	struct conf_report rep = { 0 };
	struct conf c;
	struct opts o;
	int rc;

	if ((rc = parse_opts(cmd, argc, argv, OPT_CONFIG | OPT_STRICT, &o)) >= 0)
		return rc;
	if (o.nargs > 0)
		return bad_usage(cmd, "unexpected argument %s", o.args[0]);

	conf_init(&c);
	conf_apply_file(&c, o.config, &rep);
	conf_apply_env(&c, NULL, &rep);
	conf_check(&c, &rep);
	conf_free(&c);

	for (size_t i = 0; i < rep.nerrors; i++)
		fprintf(stderr, "%s\n", rep.errors[i]);
	for (size_t i = 0; i < rep.nwarnings; i++)
		fprintf(stderr, "warning: %s\n", rep.warnings[i]);
	if (rep.nerrors > 0 || (o.strict && rep.nwarnings > 0)) {
		fprintf(stderr, "%s: invalid (%zu error%s, %zu warning%s%s)\n", o.config,
			rep.nerrors, rep.nerrors == 1 ? "" : "s", rep.nwarnings,
			rep.nwarnings == 1 ? "" : "s", o.strict ? ", strict" : "");
		rc = 1;
	} else {
		printf("%s: valid%s\n", o.config, rep.nwarnings ? " (with warnings)" : "");
		rc = 0;
	}
	conf_report_free(&rep);
	return rc;
}

/* ---- gentoken, gensubtoken ----------------------------------------------- */

/* Go's time.Duration.String() for whole seconds >= 0: 168h0m0s, 1m30s, 30s. */
static void format_ttl(char *buf, size_t n, long long s)
{
	if (s >= 3600)
		snprintf(buf, n, "%lldh%lldm%llds", s / 3600, s / 60 % 60, s % 60);
	else if (s >= 60)
		snprintf(buf, n, "%lldm%llds", s / 60, s % 60);
	else
		snprintf(buf, n, "%llds", s);
}

/* gentoken when CHANNEL is NULL, else gensubtoken. */
static int gen_token(const struct command *cmd, int argc, char **argv, bool sub)
{
	struct tok_keys k;
	struct conf c;
	struct opts o;
	json_t *claims;
	char *token, ttl[96], who[512];
	const char *section;
	int64_t now = util_wall_ms() / 1000;
	int rc;

	if ((rc = parse_opts(cmd, argc, argv,
			     OPT_CONFIG | OPT_USER | OPT_TTL | OPT_QUIET | (sub ? OPT_CHANNEL : 0), &o)) >= 0)
		return rc;
	if (o.nargs > 0)
		return bad_usage(cmd, "unexpected argument %s", o.args[0]);
	if (sub && (o.channel == NULL || *o.channel == '\0'))
		return bad_usage(cmd, "-s/--channel is required");

	rc = load_conf(&c, o.config);
	section = sub ? sub_token_section(&c) : "client.token";
	if (rc >= 0)
		rc = load_keys(&k, &c, section);
	conf_free(&c);
	if (rc < 0)
		return 1;
	if (*k.hmac_secret_key == '\0') {
		fprintf(stderr, "%s: no HMAC secret key set (%s.hmac_secret_key)\n", cmd->name, section);
		tok_keys_free(&k);
		return 1;
	}

	/* Claims in the order Centrifugo writes them. */
	claims = json_object();
	if (*o.user)
		json_object_set_new(claims, "sub", json_string(o.user));
	if (o.ttl > 0)
		json_object_set_new(claims, "exp", json_integer(now + o.ttl));
	json_object_set_new(claims, "iat", json_integer(now));
	if (sub)
		json_object_set_new(claims, "channel", json_string(o.channel));
	if (*k.user_id_claim)
		json_object_set_new(claims, k.user_id_claim, json_string(o.user));
	token = tok_sign_hmac(k.hmac_secret_key, "HS256", claims);
	json_decref(claims);
	tok_keys_free(&k);
	if (token == NULL) {
		fprintf(stderr, "%s: signing failed\n", cmd->name);
		return 1;
	}

	if (o.quiet) {
		printf("%s\n", token);
	} else {
		if (*o.user)
			snprintf(who, sizeof(who), "user \"%s\"", o.user);
		else
			snprintf(who, sizeof(who), "anonymous user");
		if (o.ttl > 0) {
			char d[48];
			format_ttl(d, sizeof(d), o.ttl);
			snprintf(ttl, sizeof(ttl), "with expiration TTL %s", d);
		} else {
			snprintf(ttl, sizeof(ttl), "without expiration");
		}
		if (sub)
			printf("HMAC SHA-256 JWT for %s and channel \"%s\" %s:\n%s\n", who, o.channel, ttl, token);
		else
			printf("HMAC SHA-256 JWT for %s %s:\n%s\n", who, ttl, token);
	}
	free(token);
	return 0;
}

static int cmd_gentoken(int argc, char **argv)
{
	return gen_token(find_command("gentoken"), argc, argv, false);
}

static int cmd_gensubtoken(int argc, char **argv)
{
	return gen_token(find_command("gensubtoken"), argc, argv, true);
}

/* ---- checktoken, checksubtoken ------------------------------------------- */

static int check_token(const struct command *cmd, int argc, char **argv, bool sub)
{
	struct tok_keys k;
	struct conf c;
	struct opts o;
	json_t *claims = NULL;
	const char *why, *token;
	char *user, *payload, when[64];
	int64_t exp;
	int rc;

	if ((rc = parse_opts(cmd, argc, argv, OPT_CONFIG, &o)) >= 0)
		return rc;
	if (o.nargs != 1)
		return bad_usage(cmd, o.nargs ? "only one token, please" : "the token to check is missing");
	token = o.args[0];

	rc = load_conf(&c, o.config);
	if (rc >= 0)
		rc = load_keys(&k, &c, sub ? sub_token_section(&c) : "client.token");
	conf_free(&c);
	if (rc < 0)
		return 1;
	/* Centrifugo's checktoken verifies even when the server is told not to. */
	k.insecure_skip_verify = false;
	if (sub)
		rc = tok_verify_subscribe(&k, token, strlen(token), util_wall_ms() / 1000, &claims, &why);
	else
		rc = tok_verify_connect(&k, token, strlen(token), util_wall_ms() / 1000, &claims, &why);
	if (rc != TOK_OK) {
		fprintf(stderr, "token error: %s\n", why);
		tok_keys_free(&k);
		return 1;
	}

	user = tok_claim_sub(&k, claims);
	exp = tok_claim_exp(claims);
	if (exp > 0) {
		time_t t = (time_t)exp;
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "with expiration at %Y-%m-%dT%H:%M:%SZ", &tm);
	} else {
		snprintf(when, sizeof(when), "without expiration");
	}
	if (*user)
		printf("valid %stoken for user \"%s\"", sub ? "subscription " : "", user);
	else
		printf("valid %stoken for anonymous user", sub ? "subscription " : "");
	if (sub)
		printf(" and channel \"%s\"", json_string_value(json_object_get(claims, "channel")));
	payload = json_dumps(claims, JSON_COMPACT);
	printf(" %s\npayload: %s\n", when, payload ? payload : "?");
	free(payload);
	free(user);
	json_decref(claims);
	tok_keys_free(&k);
	return 0;
}

static int cmd_checktoken(int argc, char **argv)
{
	return check_token(find_command("checktoken"), argc, argv, false);
}

static int cmd_checksubtoken(int argc, char **argv)
{
	return check_token(find_command("checksubtoken"), argc, argv, true);
}

/* ---- version, configdoc, help -------------------------------------------- */

static int cmd_version(int argc, char **argv)
{
	const struct command *cmd = find_command("version");
	struct opts o;
	int rc;

	if ((rc = parse_opts(cmd, argc, argv, 0, &o)) >= 0)
		return rc;
	if (o.nargs > 0)
		return bad_usage(cmd, "unexpected argument %s", o.args[0]);
	printf("%s v%s\n", ROTOR_NAME, PACKAGE_VERSION);
	return 0;
}

static int cmd_configdoc(int argc, char **argv)
{
	const struct command *cmd = find_command("configdoc");
	struct opts o;
	int rc;

	if ((rc = parse_opts(cmd, argc, argv, 0, &o)) >= 0)
		return rc;
	if (o.nargs > 0)
		return bad_usage(cmd, "unexpected argument %s", o.args[0]);
	conf_keys_print(stdout);
	return 0;
}

/* ---- stats: the running daemon's shared memory, read-only ----------------- */

/* Attaches read-only to the stats segment and bus of the rotord that C
 * describes (shm.dir and http_server.port name them); errors name CMD. */
static int attach_shm(const char *cmd, const struct conf *c, struct seg *stats, struct bus *bus)
{
	char *path = xasprintf("%s/rotor-%lld.stats", c->shm_dir, c->port);
	int rc = seg_attach(stats, path, SEG_KIND_STATS, STATS_VERSION, true);
	if (rc < 0) {
		fprintf(stderr, "rotorctl %s: cannot attach %s: %s (is rotord running with this config?)\n",
			cmd, path, errno == EPROTO ? "not a rotor stats segment of this version" : strerror(errno));
		free(path);
		return RT_ERR;
	}
	free(path);
	path = xasprintf("%s/rotor-%lld.bus", c->shm_dir, c->port);
	rc = bus_attach(bus, path, true);
	if (rc < 0)
		fprintf(stderr, "rotorctl %s: cannot attach %s: %s\n", cmd, path, strerror(errno));
	free(path);
	return rc < 0 ? RT_ERR : RT_OK;
}

/* The start of a command that reads a running rotord's shared memory: the
 * options of MASK into O and no operand, the config into C, then the
 * segments. -1 when the command goes on (C is then the caller's to free),
 * else the exit status it ends with. */
static int open_daemon(const struct command *cmd, int argc, char **argv, unsigned mask, struct opts *o,
		       struct conf *c, struct seg *stats, struct bus *bus)
{
	int rc;

	if ((rc = parse_opts(cmd, argc, argv, mask, o)) >= 0)
		return rc;
	if (o->nargs > 0)
		return bad_usage(cmd, "unexpected argument %s", o->args[0]);
	if (load_conf(c, o->config) != RT_OK || attach_shm(cmd->name, c, stats, bus) != RT_OK) {
		conf_free(c);
		return 1;
	}
	return -1;
}

static int cmd_stats(int argc, char **argv)
{
	const struct command *cmd = find_command("stats");
	struct conf c;
	struct opts o;
	struct seg stats;
	struct bus bus;
	struct bus_stats bs;
	int rc;

	if ((rc = open_daemon(cmd, argc, argv, OPT_CONFIG | OPT_JSON, &o, &c, &stats, &bus)) >= 0)
		return rc;
	const struct stats_hdr *h = seg_payload(&stats);
	const struct stats_block *b = stats_blocks(seg_payload(&stats));
	bus_stats(&bus, &bs);
	int64_t uptime = (util_wall_ms() - h->master_start_ms) / 1000;
	json_t *out = json_object(), *ws = json_array();
	uint64_t clients = 0, subs = 0, conns = 0;
	for (unsigned i = 0; i < STATS_SLOTS; i++) {
		if (b[i].pid <= 0)
			continue;
		clients += b[i].clients;
		subs += b[i].subs;
		conns += b[i].conns_current;
		json_array_append_new(ws, json_pack("{s:i, s:i, s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:I}",
			"pid", (int)b[i].pid, "slot", (int)b[i].slot, "generation", (int)b[i].gen,
			"state", b[i].state == 2 ? "draining" : "running",
			"connections", (json_int_t)b[i].conns_current, "clients", (json_int_t)b[i].clients,
			"subscriptions", (json_int_t)b[i].subs, "accepted", (json_int_t)b[i].conns_accepted,
			"accept_errors", (json_int_t)b[i].accept_errors, "bus_lost", (json_int_t)b[i].bus_lost));
	}
	json_object_set_new(out, "master_pid", json_integer(h->master_pid));
	json_object_set_new(out, "uptime", json_integer(uptime));
	json_object_set_new(out, "connections", json_integer((json_int_t)conns));
	json_object_set_new(out, "clients", json_integer((json_int_t)clients));
	json_object_set_new(out, "subscriptions", json_integer((json_int_t)subs));
	json_object_set_new(out, "workers", ws);
	json_object_set_new(out, "bus", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i}",
		"ring_bytes", (json_int_t)bs.ring_bytes, "next_seq", (json_int_t)bs.head_seq,
		"appends", (json_int_t)bs.appends, "bytes", (json_int_t)bs.bytes,
		"laps", (json_int_t)bs.laps, "lost", (json_int_t)bs.lost,
		"repairs", (json_int_t)bs.repairs, "readers", (int)bs.readers));
	/* History and presence, when their segments can be attached. */
	struct ctab_config tc;
	char *dir = master_history_config(&c, &tc);
	tc.attach_only = true;
	struct ctab tab;
	struct ctab_stats ts;
	bool have_hist = ctab_open(&tab, &tc, NULL) == 0;
	if (have_hist) {
		ctab_stats(&tab, &ts);
		json_object_set_new(out, "history", json_pack("{s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I}",
			"streams", (int)ts.nused, "streams_max", (int)ts.nstreams,
			"data_bytes", (json_int_t)ts.data_bytes, "blocks_free", (json_int_t)ts.nfree,
			"blocks", (json_int_t)ts.nblocks, "appends", (json_int_t)ts.appends,
			"evictions", (json_int_t)ts.evictions, "repairs", (json_int_t)ts.repairs));
		ctab_close(&tab);
	}
	free(dir);
	char *ppath = xasprintf("%s/rotor-%lld.pres", c.shm_dir, c.port);
	struct pres pt;
	struct pres_info pi;
	bool have_pres = pres_attach(&pt, ppath, true) == 0;
	if (have_pres) {
		pres_info(&pt, &pi);
		json_object_set_new(out, "presence", json_pack("{s:i, s:i, s:i, s:i}",
			"channels", (int)pi.channels, "clients", (int)pi.clients,
			"entries_max", (int)pi.nodes, "entries_free", (int)pi.nodes_free));
		pres_detach(&pt);
	}
	free(ppath);
	if (o.json) {
		char *s = json_dumps(out, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
	} else {
		printf("master pid %d, up %llds, %zu worker(s)\n", h->master_pid, (long long)uptime,
		       json_array_size(ws));
		printf("connections %llu, clients %llu, subscriptions %llu\n", (unsigned long long)conns,
		       (unsigned long long)clients, (unsigned long long)subs);
		size_t i;
		json_t *wk;
		json_array_foreach(ws, i, wk)
			printf("  worker %lld pid %lld gen %lld %s: %lld connections, %lld clients, "
			       "%lld subscriptions, %lld bus records lost\n",
			       json_integer_value(json_object_get(wk, "slot")),
			       json_integer_value(json_object_get(wk, "pid")),
			       json_integer_value(json_object_get(wk, "generation")),
			       json_string_value(json_object_get(wk, "state")),
			       json_integer_value(json_object_get(wk, "connections")),
			       json_integer_value(json_object_get(wk, "clients")),
			       json_integer_value(json_object_get(wk, "subscriptions")),
			       json_integer_value(json_object_get(wk, "bus_lost")));
		printf("bus: %llu-byte ring, %llu records appended, %llu laps (%llu records lost), "
		       "%llu lock repairs\n", (unsigned long long)bs.ring_bytes,
		       (unsigned long long)bs.appends, (unsigned long long)bs.laps,
		       (unsigned long long)bs.lost, (unsigned long long)bs.repairs);
		if (have_hist)
			printf("history: %u of %u streams, %llu of %llu blocks free, %llu publications kept "
			       "since start, %llu streams evicted\n", ts.nused, ts.nstreams,
			       (unsigned long long)ts.nfree, (unsigned long long)ts.nblocks,
			       (unsigned long long)ts.appends, (unsigned long long)ts.evictions);
		if (have_pres)
			printf("presence: %u clients in %u channels (%u of %u entries free)\n", pi.clients,
			       pi.channels, pi.nodes_free, pi.nodes);
	}
	json_decref(out);
	bus_detach(&bus);
	seg_detach(&stats);
	conf_free(&c);
	return 0;
}

/* ---- top: channels, read from shared memory ----------------------------------- */

/* What top shows of one channel. */
struct top_row {
	char *name;
	size_t len;
	uint64_t subs, pubs;
	bool has_stream;
	struct hist_peek stream;
};

struct top_view {
	struct smap subs;          /* channel -> subscribers, over every worker */
	struct smap pubs;          /* channel -> publications seen on the bus */
	uint64_t lost;             /* bus records this reader lost to laps */
	uint64_t clients, nsubs;
	unsigned workers;
	bool truncated;            /* a worker's snapshot lists counts only */
};

/* Adds the channels of the snapshot of the worker of bus slot SLOT (pid
 * PID) to V: a seqlock copy of its data (snap.h), then its entries. */
static void top_read_snap(const struct conf *c, unsigned slot, int32_t pid, struct top_view *v)
{
	char *path = xasprintf("%s/rotor-%lld.snap.%u", c->shm_dir, c->port, slot);
	struct seg seg;
	int rc = seg_attach(&seg, path, SEG_KIND_SNAP, SNAP_VERSION, true);
	free(path);
	if (rc < 0)
		return;
	const struct snap_hdr *h = seg_payload(&seg);
	struct snap_hdr hdr;
	char *data = NULL;
	bool ok = false;
	for (int tries = 0; tries < 100 && !ok; tries++) {
		uint64_t seq = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
		if (seq & 1)
			continue;
		memcpy(&hdr, h, sizeof(hdr));
		uint32_t len = hdr.len <= SNAP_DATA_MAX ? hdr.len : 0;
		free(data);
		data = xmalloc(len + 1);
		memcpy(data, h + 1, len);
		hdr.len = len;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		ok = __atomic_load_n(&h->seq, __ATOMIC_RELAXED) == seq && hdr.pid == pid;
	}
	if (ok) {
		const unsigned char *p = (const unsigned char *)data, *end = p + hdr.len;
		v->truncated |= hdr.truncated != 0;
		for (uint32_t k = 0; k < hdr.nchannels; k++) {
			uint16_t n;
			uint32_t count;
			if (end - p < 2)
				break;
			memcpy(&n, p, 2);
			if ((size_t)(end - p) < 2u + n + 4u)
				break;
			memcpy(&count, p + 2 + n, 4);
			smap_add(&v->subs, (const char *)p + 2, n, count);
			p += 2 + n + 4;
		}
	}
	free(data);
	seg_detach(&seg);
}

static int top_on_record(void *arg, uint64_t seq, unsigned type, const void *data, size_t len)
{
	struct top_view *v = arg;
	struct pstr ch;
	(void)seq;
	if (node_record_publication(type, data, len, &ch))
		smap_add(&v->pubs, ch.p, ch.n, 1);
	return 0;
}

static volatile sig_atomic_t top_stop;

static void top_on_signal(int sig)
{
	(void)sig;
	top_stop = 1;
}

/* Reads what the bus carries into V for DELAY seconds, or until SIGINT or
 * SIGTERM (polling: a reader without a slot cannot sleep on the bus).
 * Returns the seconds it watched. */
static double top_watch_bus(struct bus_reader *r, double delay, struct top_view *v)
{
	int64_t start = util_mono_ns(), end = start + (int64_t)(delay * 1e9);
	for (;;) {
		uint64_t lost = 0;
		while (bus_read(r, top_on_record, v, 0, &lost) > 0 || lost > 0)
			v->lost += lost, lost = 0;
		int64_t now = util_mono_ns(), left = end - now;
		if (left <= 0 || top_stop)
			return (double)(now - start) / 1e9;
		struct timespec ts = { 0, left < 20000000 ? left : 20000000 };
		nanosleep(&ts, NULL);
	}
}

static void top_collect(void *arg, const char *key, size_t n, uint64_t count)
{
	struct top_row **rows = arg;
	(void)count;
	/* rows[0] is the cursor past the last row written */
	struct top_row *r = rows[0]++;
	r->name = xstrndup(key, n);
	r->len = n;
}

static int top_cmp(const void *pa, const void *pb)
{
	const struct top_row *a = pa, *b = pb;
	if (a->subs != b->subs)
		return a->subs < b->subs ? 1 : -1;
	if (a->pubs != b->pubs)
		return a->pubs < b->pubs ? 1 : -1;
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->name, b->name, n);
	return c ? c : (a->len > b->len) - (a->len < b->len);
}

static void top_union(void *arg, const char *key, size_t n, uint64_t count)
{
	(void)count;
	smap_set(arg, key, n, 1);
}

/* Prints one table of V, publications counted over DELAY seconds: the ROWS
 * busiest channels (most subscribers, then most publications), with their
 * streams' tops from T when it is open. */
static void top_print(const struct top_view *v, const struct ctab *t, double delay, long long rows)
{
	struct smap names = { 0 };
	smap_each(&v->subs, top_union, &names);
	smap_each(&v->pubs, top_union, &names);
	struct top_row *all = xcalloc(names.n ? names.n : 1, sizeof(*all)), *cur = all;
	smap_each(&names, top_collect, &cur);
	size_t n = (size_t)(cur - all);
	int64_t now = util_wall_ms();
	for (size_t i = 0; i < n; i++) {
		all[i].subs = smap_get(&v->subs, all[i].name, all[i].len);
		all[i].pubs = smap_get(&v->pubs, all[i].name, all[i].len);
		all[i].has_stream = t != NULL && hist_peek(t, all[i].name, all[i].len, now, &all[i].stream) == 0;
	}
	qsort(all, n, sizeof(*all), top_cmp);
	printf("%u workers, %llu clients, %llu subscriptions, %zu channels; publications over %.2f s\n",
	       v->workers, (unsigned long long)v->clients, (unsigned long long)v->nsubs, n, delay);
	if (v->lost)
		printf("(this reader lost %llu bus records: publication counts are short)\n",
		       (unsigned long long)v->lost);
	if (v->truncated)
		printf("(a worker's snapshot lists counts only: some channels are missing)\n");
	printf("%-32s %11s %9s %9s %12s %s\n", "CHANNEL", "SUBSCRIBERS", "PUBS/S", "PUBS", "TOP", "EPOCH");
	for (size_t i = 0; i < n && (long long)i < rows; i++) {
		const struct top_row *r = &all[i];
		/* Names are any bytes: blanks and control characters shown as '?'
		 * keep the columns and the terminal sane. */
		for (size_t k = 0; k < r->len; k++)
			putchar((unsigned char)r->name[k] > ' ' && r->name[k] != 0x7f ? r->name[k] : '?');
		printf("%*s %11llu %9.1f %9llu ", r->len < 32 ? (int)(32 - r->len) : 0, "",
		       (unsigned long long)r->subs, (double)r->pubs / delay, (unsigned long long)r->pubs);
		if (r->has_stream)
			printf("%12llu %s\n", (unsigned long long)r->stream.top, r->stream.epoch);
		else
			printf("%12s %s\n", "-", "-");
	}
	for (size_t i = 0; i < n; i++)
		free(all[i].name);
	free(all);
	smap_clear(&names);
}

static int cmd_top(int argc, char **argv)
{
	const struct command *cmd = find_command("top");
	struct conf c;
	struct opts o;
	struct seg stats;
	struct bus bus;
	struct bus_reader r;
	int rc;

	if ((rc = open_daemon(cmd, argc, argv, OPT_CONFIG | OPT_ROWS | OPT_ONCE | OPT_DELAY, &o, &c, &stats, &bus)) >= 0)
		return rc;
	if (bus_reader_init(&r, &bus, BUS_NO_SLOT) < 0) {
		fprintf(stderr, "rotorctl top: bus_reader_init failed: %s\n", strerror(errno));
		bus_detach(&bus);
		seg_detach(&stats);
		conf_free(&c);
		return 1;
	}
	/* The channel table, when history has one: stream tops. */
	struct ctab_config tc;
	char *dir = master_history_config(&c, &tc);
	tc.attach_only = true;
	struct ctab tab;
	bool have_hist = ctab_open(&tab, &tc, NULL) == 0;
	free(dir);

	signal(SIGINT, top_on_signal);
	signal(SIGTERM, top_on_signal);
	if (o.once)
		fprintf(stderr, "rotorctl top: counting publications for %g s (interrupt to print now)\n", o.delay);
	const struct stats_block *b = stats_blocks(seg_payload(&stats));
	for (bool first = true; first || !top_stop; first = false) {
		struct top_view v = { 0 };
		double watched = top_watch_bus(&r, o.delay, &v);
		for (unsigned i = 0; i < STATS_SLOTS && i < BUS_SLOTS_MAX; i++) {
			int32_t pid = __atomic_load_n(&b[i].pid, __ATOMIC_RELAXED);
			if (pid <= 0)
				continue;
			if (__atomic_load_n(&b[i].slot, __ATOMIC_RELAXED) != STATS_SLOT_BROKER)
				v.workers++;
			v.clients += STATS_GET(&b[i], clients);
			v.nsubs += STATS_GET(&b[i], subs);
			top_read_snap(&c, i, pid, &v);
		}
		if (!o.once)
			printf("\033[H\033[2J"); /* home, clear: a refreshing view */
		top_print(&v, have_hist ? &tab : NULL, watched > 0 ? watched : o.delay, o.rows);
		fflush(stdout);
		smap_clear(&v.subs);
		smap_clear(&v.pubs);
		if (o.once)
			break;
	}
	if (have_hist)
		ctab_close(&tab);
	bus_reader_free(&r);
	bus_detach(&bus);
	seg_detach(&stats);
	conf_free(&c);
	return 0;
}

/* ---- signals to the master, by its pid file --------------------------------- */

static int cmd_signal(int argc, char **argv)
{
	static const struct { const char *name; int sig; } sigs[] = {
		{ "reload", SIGHUP }, { "stop", SIGTERM }, { "quit", SIGQUIT }, { "reopen", SIGUSR1 },
	};
	const struct command *cmd = find_command(argv[0]);
	struct conf c;
	struct opts o;
	int rc, sig = 0;

	if ((rc = parse_opts(cmd, argc, argv, OPT_CONFIG, &o)) >= 0)
		return rc;
	if (o.nargs > 0)
		return bad_usage(cmd, "unexpected argument %s", o.args[0]);
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(sigs); i++)
		if (strcmp(argv[0], sigs[i].name) == 0)
			sig = sigs[i].sig;
	if (load_conf(&c, o.config) != RT_OK) {
		conf_free(&c);
		return 1;
	}
	char *path = master_pid_path(&c);
	conf_free(&c);
	FILE *f = fopen(path, "r");
	long pid = 0;
	if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
		fprintf(stderr, "rotorctl %s: no pid in %s: %s (is rotord running?)\n", argv[0], path,
			f ? "not a pid file" : strerror(errno));
		if (f)
			fclose(f);
		free(path);
		return 1;
	}
	fclose(f);
	free(path);
	if (kill((pid_t)pid, sig) < 0) {
		fprintf(stderr, "rotorctl %s: kill(%ld) failed: %s\n", argv[0], pid, strerror(errno));
		return 1;
	}
	return 0;
}

/* ---- binary upgrade ------------------------------------------------------ */

#define UPGRADE_WAIT_MS 30000

/* The pid in the pid file PATH, or 0 (no file, no pid). */
static long read_pidfile(const char *path)
{
	FILE *f = fopen(path, "r");
	long pid = 0;

	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1 || pid <= 1)
		pid = 0;
	fclose(f);
	return pid;
}

/* Whether process PID runs (a zombie, waiting for its parent, does not). */
static bool process_runs(long pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* Sends USR2 to the master of the config's pid file and waits until a new
 * master serves and the old one is gone. The old master's stats segment
 * (mapped before the signal, so it stays the old one's when the new master
 * makes its own) says whether it refused the signal or saw its successor
 * fail. Exit 0 upgraded; 3 the new binary refused the shared segments'
 * layout (a full restart is needed); 1 anything else, the old master still
 * serving unless the message says otherwise. */
static int cmd_upgrade(int argc, char **argv)
{
	const struct command *cmd = find_command("upgrade");
	struct conf c;
	struct opts o;
	struct seg stats;
	int rc;

	if ((rc = parse_opts(cmd, argc, argv, OPT_CONFIG, &o)) >= 0)
		return rc;
	if (o.nargs > 0)
		return bad_usage(cmd, "unexpected argument %s", o.args[0]);
	if (load_conf(&c, o.config) != RT_OK) {
		conf_free(&c);
		return 1;
	}
	char *path = master_pid_path(&c);
	char *spath = xasprintf("%s/rotor-%lld.stats", c.shm_dir, c.port);
	conf_free(&c);
	long old = read_pidfile(path);
	rc = 1;
	if (old == 0) {
		fprintf(stderr, "rotorctl upgrade: no pid in %s (is rotord running?)\n", path);
		goto out;
	}
	if (seg_attach(&stats, spath, SEG_KIND_STATS, STATS_VERSION, true) < 0) {
		fprintf(stderr, "rotorctl upgrade: cannot attach %s: %s\n", spath,
			errno == EPROTO ? "not a rotor stats segment of this version" : strerror(errno));
		goto out;
	}
	const struct stats_hdr *h = seg_payload(&stats);
	if (h->master_pid != old) {
		fprintf(stderr, "rotorctl upgrade: %s belongs to pid %ld, not to the master in %s (%ld); "
			"is an upgrade in flight?\n", spath, (long)h->master_pid, path, old);
		seg_detach(&stats);
		goto out;
	}
	uint32_t failed0 = __atomic_load_n(&h->upgrades_failed, __ATOMIC_ACQUIRE);
	uint32_t refused0 = __atomic_load_n(&h->upgrades_refused, __ATOMIC_ACQUIRE);
	if (kill((pid_t)old, SIGUSR2) < 0) {
		fprintf(stderr, "rotorctl upgrade: kill(%ld, SIGUSR2) failed: %s\n", old, strerror(errno));
		seg_detach(&stats);
		goto out;
	}
	for (int64_t end = util_mono_ms() + UPGRADE_WAIT_MS;; ) {
		long now = read_pidfile(path);
		if (now != 0 && now != old && process_runs(now) && !process_runs(old)) {
			printf("rotorctl upgrade: the new master (pid %ld) serves; the old one (pid %ld) is gone\n",
			       now, old);
			rc = 0;
			break;
		}
		if (__atomic_load_n(&h->upgrades_refused, __ATOMIC_ACQUIRE) != refused0) {
			fprintf(stderr, "rotorctl upgrade: the master (pid %ld) refused: an upgrade is already in "
				"flight, or its binary's path is unknown (see its log)\n", old);
			break;
		}
		if (__atomic_load_n(&h->upgrades_failed, __ATOMIC_ACQUIRE) != failed0) {
			int st = __atomic_load_n(&h->upgrade_status, __ATOMIC_RELAXED);
			fprintf(stderr, "rotorctl upgrade: the new binary %s (exit status %d; see the log); the "
				"old master (pid %ld) still serves\n",
				st == 3 ? "refused the running master's shared memory layout: a full restart is "
				"required" : "failed before it served", st, old);
			rc = st == 3 ? 3 : 1;
			break;
		}
		if (!process_runs(old) && (now == 0 || now == old)) {
			fprintf(stderr, "rotorctl upgrade: the master (pid %ld) is gone and no new one serves\n", old);
			break;
		}
		if (util_mono_ms() >= end) {
			fprintf(stderr, "rotorctl upgrade: no new master serving after %d s; the old master "
				"(pid %ld) %s\n", UPGRADE_WAIT_MS / 1000, old,
				process_runs(old) ? "still runs" : "is gone");
			break;
		}
		usleep(50 * 1000);
	}
	seg_detach(&stats);
out:
	free(path);
	free(spath);
	return rc;
}

static int cmd_help(int argc, char **argv)
{
	const struct command *cmd;

	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	cmd = find_command(argv[1]);
	if (cmd == NULL) {
		fprintf(stderr, "rotorctl: unknown command \"%s\"\n", argv[1]);
		usage(stderr);
		return EXIT_USAGE;
	}
	command_help(cmd, stdout);
	return 0;
}

#define HELP_CONFIG "  -c, --config FILE    config file (default " DEFAULT_CONFIG ")\n"
#define HELP_HELP   "  -h, --help           this help\n"

static const struct command commands[] = {
	{ "genconfig", cmd_genconfig, "[-c FILE]",
	  "Write a new JSON config file with fresh random secrets; an existing file is never replaced",
	  "  -c, --config FILE    file to create (default " DEFAULT_CONFIG ")\n" HELP_HELP },
	{ "checkconfig", cmd_checkconfig, "[-c FILE] [-s]",
	  "Check a config file (and the ROTOR_*/CENTRIFUGO_* environment) as rotord would read it",
	  HELP_CONFIG "  -s, --strict         fail on warnings too (unknown keys)\n" HELP_HELP },
	{ "gentoken", cmd_gentoken, "[-c FILE] [-u USER] [-t TTL] [-q]",
	  "Generate a connection token signed with client.token.hmac_secret_key (HS256)",
	  HELP_CONFIG "  -u, --user USER      user ID, the sub claim (default: anonymous)\n"
	  "  -t, --ttl SECONDS    lifetime; 0 or less: no exp claim (default 604800)\n"
	  "  -q, --quiet          print the token only\n" HELP_HELP },
	{ "gensubtoken", cmd_gensubtoken, "[-c FILE] [-u USER] -s CHANNEL [-t TTL] [-q]",
	  "Generate a subscription token for a channel (HS256)",
	  HELP_CONFIG "  -u, --user USER      user ID, the sub claim (default: anonymous)\n"
	  "  -s, --channel NAME   channel, the channel claim (required)\n"
	  "  -t, --ttl SECONDS    lifetime; 0 or less: no exp claim (default 604800)\n"
	  "  -q, --quiet          print the token only\n" HELP_HELP },
	{ "checktoken", cmd_checktoken, "[-c FILE] TOKEN",
	  "Verify a connection token with the configured keys and print its user and claims",
	  HELP_CONFIG HELP_HELP },
	{ "checksubtoken", cmd_checksubtoken, "[-c FILE] TOKEN",
	  "Verify a subscription token with the configured keys and print its user, channel and claims",
	  HELP_CONFIG HELP_HELP },
	{ "configdoc", cmd_configdoc, "",
	  "List every config key: name, type, default, reload or restart, supported or ignored, description",
	  HELP_HELP },
	{ "stats", cmd_stats, "[-c FILE] [--json]",
	  "Show the running rotord's workers, connections and bus, read from its shared memory",
	  HELP_CONFIG "      --json           one JSON object instead of text\n" HELP_HELP },
	{ "top", cmd_top, "[-c FILE] [-n N] [-d SECONDS] [--once]",
	  "Show the running rotord's busiest channels: subscribers, publication rate, stream top",
	  HELP_CONFIG "  -n, --rows N         channels shown (default 20)\n"
	  "  -d, --delay SECONDS  refresh interval, over which publications are counted (default 1)\n"
	  "      --once           print one table and exit\n" HELP_HELP },
	{ "reload", cmd_signal, "[-c FILE]", "Make the running rotord reload its config (SIGHUP)",
	  HELP_CONFIG HELP_HELP },
	{ "stop", cmd_signal, "[-c FILE]", "Stop the running rotord fast (SIGTERM)", HELP_CONFIG HELP_HELP },
	{ "quit", cmd_signal, "[-c FILE]", "Stop the running rotord gracefully (SIGQUIT)",
	  HELP_CONFIG HELP_HELP },
	{ "reopen", cmd_signal, "[-c FILE]", "Make the running rotord reopen its log files (SIGUSR1)",
	  HELP_CONFIG HELP_HELP },
	{ "upgrade", cmd_upgrade, "[-c FILE]",
	  "Replace the running rotord by the binary now at its path, without refusing a connection (SIGUSR2), "
	  "and wait until the new one serves",
	  HELP_CONFIG HELP_HELP },
	{ "version", cmd_version, "", "Print the version", HELP_HELP },
	{ "help", cmd_help, "[COMMAND]", "Print the list of commands, or the help of one", "" },
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(commands); i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: rotorctl COMMAND [options]\n\ncommands:\n");
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(commands); i++)
		fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nRun 'rotorctl COMMAND -h' for the options of a command.\n");
}

int main(int argc, char **argv)
{
	const struct command *cmd;

	log_set_role("rotorctl");
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-v") == 0)
		return cmd_version(1, argv + 1);
	cmd = find_command(argv[1]);
	if (cmd == NULL) {
		fprintf(stderr, "rotorctl: unknown command \"%s\"\n", argv[1]);
		usage(stderr);
		return EXIT_USAGE;
	}
	return cmd->run(argc - 1, argv + 1);
}
