/*
 * test_conf.c - the configuration module: the key table, defaults, every
 * type's parsing and its error messages, files, environment, namespaces,
 * cross-key rules, dump/load_dump round trips and diffs.
 */
#include "config.h"
#include "conf.h"
#include "engine.h"
#include "redis_link.h"
#include "log.h"
#include "../tap.h"
#include "util.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

static const char *srcdir = ".";

/* ---- helpers ------------------------------------------------------------ */

static bool has(char **list, size_t n, const char *msg)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], msg) == 0)
			return true;
	return false;
}

static void show(const struct conf_report *rep)
{
	for (size_t i = 0; i < rep->nerrors; i++)
		printf("#   error: %s\n", rep->errors[i]);
	for (size_t i = 0; i < rep->nwarnings; i++)
		printf("#   warning: %s\n", rep->warnings[i]);
}

#define has_error(rep, msg) do { if (!ok(has((rep)->errors, (rep)->nerrors, msg), "error: %s", msg)) show(rep); } while (0)
#define has_warning(rep, msg) do { if (!ok(has((rep)->warnings, (rep)->nwarnings, msg), "warning: %s", msg)) show(rep); } while (0)
#define clean(rep, name) do { if (!ok((rep)->nerrors == 0 && (rep)->nwarnings == 0, "%s: no errors or warnings", name)) show(rep); } while (0)

/* Writes TEXT to a temporary file and returns its path (static buffer). */
static const char *tmp_json(const char *text)
{
	static char path[64];
	strcpy(path, "/tmp/test_conf_XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		perror("tmp_json");
		exit(2);
	}
	close(fd);
	return path;
}

/* Builds a config from defaults, JSON text (or NULL) and ENVP (or none),
 * then checks it. */
static int build(struct conf *c, const char *json, char **envp, struct conf_report *rep)
{
	static char *no_env[] = { NULL };
	conf_init(c);
	if (json) {
		const char *path = tmp_json(json);
		conf_apply_file(c, path, rep);
		unlink(path);
	}
	conf_apply_env(c, envp ? envp : no_env, rep);
	return conf_check(c, rep);
}

static const char *str_at(const struct conf *c, const char *key)
{
	return json_string_value(conf_get(c, key));
}

/* Path of a sample config in tests/configs; caller frees. */
static char *config_path(const char *name)
{
	return xasprintf("%s/tests/configs/%s", srcdir, name);
}

/* ---- the table ---------------------------------------------------------- */

static void test_table(void)
{
	size_t dup = 0, nested = 0, envdup = 0, nodoc = 0;

	ok(conf_nkeys > 300, "the table has every key (%zu)", conf_nkeys);
	for (size_t i = 0; i < conf_nkeys; i++) {
		const struct conf_key *k = &conf_keys[i];
		size_t len = strlen(k->name);
		if (k->doc == NULL || k->doc[0] == '\0')
			nodoc++;
		if (conf_key_find(k->name) != k)
			dup++;
		for (size_t j = 0; j < conf_nkeys; j++) {
			const char *o = conf_keys[j].name;
			if (strncmp(o, k->name, len) == 0 && o[len] == '.')
				nested++;
			if (j != i && strlen(o) == len) {
				size_t m = 0;
				while (m < len && (o[m] == '.' ? '_' : o[m]) == (k->name[m] == '.' ? '_' : k->name[m]))
					m++;
				if (m == len)
					envdup++;
			}
		}
	}
	is_int(nodoc, 0, "every key has a doc line");
	is_int(dup, 0, "key names are unique");
	is_int(nested, 0, "no key is nested under another key");
	is_int(envdup, 0, "environment variable names are unique");
	ok(conf_key_find("http_server.port") != NULL, "conf_key_find finds http_server.port");
	ok(conf_key_find("http_server") == NULL, "a section is not a key");
	ok(conf_key_find("no.such.key") == NULL, "conf_key_find: unknown key gives NULL");

	const struct conf_key *k = conf_key_find("workers");
	ok(k && !(k->flags & CONF_RELOAD), "workers is not reloadable in place");
	ok(!(conf_key_find("shm.dir")->flags & CONF_RELOAD), "shm.dir is not reloadable");
	ok(!(conf_key_find("http_server.port")->flags & CONF_RELOAD), "http_server.port is not reloadable");
	ok(!(conf_key_find("engine.type")->flags & CONF_RELOAD), "engine.type is not reloadable");
	ok(conf_key_find("client.token.hmac_secret_key")->flags & CONF_RELOAD, "token secret is reloadable");
	ok(conf_key_find("client.token.hmac_secret_key")->flags & CONF_SECRET, "token secret is secret");
	ok(conf_key_find("http_api.key")->flags & CONF_SECRET, "api key is secret");
	ok(conf_key_find("engine.redis.password")->flags & CONF_SECRET, "redis password is secret");
	ok(conf_key_find("grpc_api.enabled")->flags & CONF_IGNORED, "grpc_api is ignored");
	ok(!(conf_key_find("client.ping_interval")->flags & CONF_IGNORED), "client.* is supported");
	ok(conf_key_find("channel.without_namespace.history_ttl") != NULL, "channel options are keys");
}

static void test_keys_print(void)
{
	char *buf = NULL;
	size_t len = 0, lines = 0, bad = 0;
	FILE *f = open_memstream(&buf, &len);
	conf_keys_print(f);
	fclose(f);
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		size_t tabs = 0;
		for (char *p = line; *p; p++)
			tabs += *p == '\t';
		bad += tabs != 5;
		lines++;
	}
	is_int(lines, conf_nkeys, "conf_keys_print prints one line per key");
	is_int(bad, 0, "each line has six tab-separated fields");
	free(buf);
	f = open_memstream(&buf, &len);
	conf_keys_print(f);
	fclose(f);
	ok(strstr(buf, "workers\tint\t0\trestart\tsupported\t") != NULL, "workers line");
	ok(strstr(buf, "\nclient.ping_interval\tduration\t\"25s\"\treload\tsupported\t") != NULL,
	   "client.ping_interval line");
	ok(strstr(buf, "\ngrpc_api.enabled\tbool\tfalse\treload\tignored\t") != NULL, "grpc_api.enabled line");
	free(buf);
}

/* ---- defaults ----------------------------------------------------------- */

static void test_defaults(void)
{
	struct conf c;
	struct conf_report rep = { 0 };

	conf_init(&c);
	is_int(c.port, 8000, "default port");
	is_str(c.address, "", "default address");
	is_int(c.workers, 0, "workers before conf_check: 0");
	ok(c.health_enabled, "health is on by default in rotor");
	is_str(c.health_prefix, "/health", "health prefix");
	is_str(c.shm_dir, "/dev/shm", "shm.dir");
	is_str(c.log_level, "info", "log level");
	is_str(c.log_file, "", "log file");
	is_int(c.shutdown_timeout_ms, 30000, "shutdown.timeout 30s");
	is_int(c.max_header_size, 32768, "max_header_size");
	is_int(c.max_header_count, 100, "max_header_count");
	is_int(c.max_body_size, 4194304, "max_request_body_size");
	is_int(c.read_header_timeout_ms, 10000, "read_header_timeout");
	is_int(c.read_timeout_ms, 30000, "read_timeout");
	is_int(c.write_timeout_ms, 30000, "write_timeout");
	is_int(c.idle_timeout_ms, 60000, "idle_timeout");
	is_str(c.api_prefix, "/api", "api prefix");
	is_str(c.api_key, "", "api key");
	ok(!c.api_insecure, "api not insecure");
	is_str(c.token_hmac_secret, "", "no hmac secret");
	is_str(c.pid_file, "", "no pid file");
	is_str(str_at(&c, "client.ping_interval"), "25s", "ping_interval 25s");
	is_str(str_at(&c, "client.pong_timeout"), "8s", "pong_timeout 8s");
	is_str(str_at(&c, "websocket.write_timeout"), "1s", "defaults are canonical (1000ms -> 1s)");
	is_str(str_at(&c, "channel.history_meta_ttl"), "720h0m0s", "history_meta_ttl 720h");
	is_str(str_at(&c, "channel.without_namespace.history_ttl"), "0s", "history_ttl 0s");
	is_int(json_integer_value(conf_get(&c, "client.channel_limit")), 128, "channel_limit 128");
	ok(json_is_array(conf_get(&c, "channel.namespaces")) &&
	   json_array_size(conf_get(&c, "channel.namespaces")) == 0, "namespaces []");
	is_str(json_string_value(json_array_get(conf_get(&c, "engine.redis.address"), 0)),
	       "redis://127.0.0.1:6379", "redis address list");
	ok(conf_get(&c, "http_server") && json_is_object(conf_get(&c, "http_server")), "sections are objects");

	is_int(conf_check(&c, &rep), RT_OK, "defaults pass conf_check");
	clean(&rep, "defaults");
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	is_int(c.workers, n < 1 ? 1 : n > 256 ? 256 : n, "workers 0 becomes the CPU count");
	is_int(json_integer_value(conf_get(&c, "workers")), c.workers, "and the document says so");
	is_int(c.log_level_num, LOG_INFO, "log_level_num info");
	conf_report_free(&rep);
	conf_free(&c);
}

/* ---- files -------------------------------------------------------------- */

static void test_full_file(void)
{
	struct conf c;
	struct conf_report rep = { 0 };
	char *path = config_path("full.json");

	conf_init(&c);
	is_int(conf_apply_file(&c, path, &rep), RT_OK, "full.json applies");
	is_int(conf_check(&c, &rep), RT_OK, "full.json passes conf_check");
	clean(&rep, "full.json");
	is_int(c.port, 9000, "port from file");
	is_str(c.address, "127.0.0.1", "address from file");
	is_int(c.workers, 2, "workers from file");
	is_int(c.read_header_timeout_ms, 5000, "read_header_timeout 5s");
	is_int(c.idle_timeout_ms, 120000, "idle_timeout 2m");
	is_str(str_at(&c, "http_server.idle_timeout"), "2m0s", "stored canonically");
	is_int(c.log_level_num, LOG_DEBUG, "log level debug");
	is_str(c.token_hmac_secret, "secret-for-tests-only", "hmac secret");
	is_str(c.api_key, "api-key-for-tests-only", "api key");
	is_int(c.shutdown_timeout_ms, 10000, "shutdown 10s");

	const json_t *ns = conf_get(&c, "channel.namespaces");
	is_int(json_array_size(ns), 3, "three namespaces");
	const json_t *chat = json_array_get(ns, 0);
	is_str(json_string_value(json_object_get(chat, "name")), "chat", "first is chat");
	is_str(json_string_value(json_object_get(chat, "history_ttl")), "5m0s", "namespace durations canonical");
	is_int(json_integer_value(json_object_get(chat, "history_size")), 100, "history_size");
	ok(json_is_false(json_object_get(chat, "allow_history_for_client")), "missing options get defaults");
	is_str(json_string_value(json_object_get(chat, "subscribe_proxy_name")), "default",
	       "proxy name default \"default\"");
	is_int(json_object_size(chat), json_object_size(conf_get(&c, "channel.without_namespace")) + 1,
	       "an item has name plus every channel option");
	ok(json_is_true(conf_get(&c, "channel.without_namespace.presence")), "without_namespace.presence");
	is_int(json_array_size(conf_get(&c, "client.allowed_origins")), 2, "allowed_origins");
	free(path);
	conf_report_free(&rep);
	conf_free(&c);
}

static void test_bad_file(void)
{
	struct conf c;
	struct conf_report rep = { 0 };
	char *path = config_path("bad-types.json");

	conf_init(&c);
	is_int(conf_apply_file(&c, path, &rep), RT_INVAL, "bad-types.json is refused");
	is_int(conf_check(&c, &rep), RT_INVAL, "conf_check fails after file errors");
	has_error(&rep, "http_server.port: must be an integer from 1 to 65535, got \"abc\"");
	has_error(&rep, "http_server.max_header_count: must be an integer from 8 to 1000, got 5000");
	has_error(&rep, "log.level: must be one of none, trace, debug, info, warn, error, got \"loud\"");
	has_error(&rep, "client.ping_interval: must be a duration such as \"25s\", \"1m30s\" or \"500ms\", got \"25\"");
	has_error(&rep, "client.channel_limit: must be an integer >= 0, got true");
	has_error(&rep, "client.insecure: must be true or false, got \"maybe\"");
	has_error(&rep, "client.allowed_origins: must be an array of strings, got [1,2]");
	has_error(&rep, "channel.namespaces[chat].history_size: must be an integer >= 0, got \"lots\"");
	has_error(&rep, "channel.namespaces[1].name: must match ^[-a-zA-Z0-9_.]{2,}$, got \"x\"");
	has_error(&rep, "channel.namespaces[chat]: duplicate name");
	has_error(&rep, "http_api.key: must be a string, got <hidden>");
	has_error(&rep, "websocket: must be an object, got 5");
	has_error(&rep, "sockjs.handler_prefix: must be a path like \"/connection/sockjs\" (a '/' first, none last), "
		  "got \"/connection/sockjs/\"");
	has_error(&rep, "sockjs.url: must start with \"/\" or \"http\" and hold no spaces, quotes or angle brackets, "
		  "got \"javascript:alert(1)\"");
	has_error(&rep, "sockjs.test_services_prefix: must be a path like \"/connection/sockjs\" (a '/' first, none "
		  "last), got \"t\"");
	has_warning(&rep, "engine is a Centrifugo v5 name; use engine.type");
	has_warning(&rep, "no_such_section: unknown key");
	is_int(rep.nerrors, 15, "every error of the file in one pass");
	is_int(c.port, 8000, "a refused value leaves the default");
	is_str(str_at(&c, "engine.type"), "redis", "the v5 engine name was applied");
	is_int(json_array_size(conf_get(&c, "channel.namespaces")), 0, "refused namespaces are not stored");
	free(path);
	conf_report_free(&rep);
	conf_free(&c);
}

static void test_file_errors(void)
{
	struct conf c;
	struct conf_report rep = { 0 };
	const char *path;
	char *msg;

	conf_init(&c);
	is_int(conf_apply_file(&c, "/nonexistent/rotor.json", &rep), RT_INVAL, "missing file refused");
	has_error(&rep, "/nonexistent/rotor.json: cannot open: No such file or directory");
	conf_report_free(&rep);

	path = tmp_json("{\n  \"log\": {\n    \"level\": \"info\",\n  }\n}\n");
	is_int(conf_apply_file(&c, path, &rep), RT_INVAL, "bad JSON refused");
	msg = xasprintf("%s:4:", path);
	ok(rep.nerrors == 1 && strncmp(rep.errors[0], msg, strlen(msg)) == 0 &&
	   strstr(rep.errors[0], ":4:") != NULL && strstr(rep.errors[0], "invalid JSON") != NULL,
	   "bad JSON: error names the file, line and column");
	free(msg);
	unlink(path);
	conf_report_free(&rep);

	path = tmp_json("[1, 2]");
	is_int(conf_apply_file(&c, path, &rep), RT_INVAL, "a top-level array is refused");
	ok(rep.nerrors == 1 && strstr(rep.errors[0], "must hold a JSON object"), "and said so");
	unlink(path);
	conf_report_free(&rep);
	conf_free(&c);
}

/* The internal endpoints get a listener of their own only when
 * internal_port names another address and port than the main one. */
static void test_internal_listener(void)
{
	static const struct {
		const char *json;
		bool own;
		const char *addr;
		long long port;
	} cases[] = {
		{ "{}", false, NULL, 0 },
		{ "{\"http_server\": {\"port\": 8000, \"internal_port\": \"8000\"}}", false, NULL, 0 },
		{ "{\"http_server\": {\"address\": \"127.0.0.1\", \"internal_port\": \"9000\"}}", true, "127.0.0.1", 9000 },
		{ "{\"http_server\": {\"port\": 8000, \"internal_address\": \"127.0.0.2\", \"internal_port\": \"8000\"}}",
		  true, "127.0.0.2", 8000 },
	};

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(cases); i++) {
		struct conf c;
		struct conf_report rep = { 0 };
		const char *addr = NULL;
		long long port = 0;
		bool own;

		build(&c, cases[i].json, NULL, &rep);
		own = conf_internal_listener(&c, &addr, &port);
		ok(own == cases[i].own && (!own || (strcmp(addr, cases[i].addr) == 0 && port == cases[i].port)),
		   "internal listener of %s", cases[i].json);
		conf_report_free(&rep);
		conf_free(&c);
	}
}

/* Centrifugo decodes with weak typing; so does rotor. */
static void test_lenient(void)
{
	struct conf c;
	struct conf_report rep = { 0 };

	build(&c, "{\"http_server\": {\"port\": \"8001\", \"internal_port\": 9001},"
		  " \"client\": {\"insecure\": \"true\", \"connect_include_server_time\": 1,"
		  " \"allowed_origins\": \"https://a.example\", \"channel_limit\": 10.0},"
		  " \"log\": {\"level\": null}}", NULL, &rep);
	is_int(rep.nerrors, 0, "lenient values are accepted");
	is_int(c.port, 8001, "a numeric string is an integer");
	is_str(str_at(&c, "http_server.internal_port"), "9001", "a number is a string");
	{
		const char *addr;
		long long port = 0;

		ok(conf_internal_listener(&c, &addr, &port) && port == 9001 && strcmp(addr, c.address) == 0,
		   "internal_port 9001 is a listener of its own, on http_server.address");
	}
	ok(json_is_true(conf_get(&c, "client.insecure")), "\"true\" is a boolean");
	ok(json_is_true(conf_get(&c, "client.connect_include_server_time")), "1 is true");
	is_str(json_string_value(json_array_get(conf_get(&c, "client.allowed_origins"), 0)),
	       "https://a.example", "a single string is a one-element list");
	is_int(json_integer_value(conf_get(&c, "client.channel_limit")), 10, "10.0 is an integer");
	is_str(c.log_level, "info", "null leaves the value as it was");
	conf_report_free(&rep);
	conf_free(&c);

	build(&c, "{\"client\": {\"channel_limit\": 10.5, \"ping_interval\": 25000000000},"
		  " \"http_server\": {\"internal_port\": \"http\"}}", NULL, &rep);
	has_error(&rep, "client.channel_limit: must be an integer >= 0, got 10.5");
	has_error(&rep, "http_server.internal_port: must be empty or a port from 1 to 65535, got \"http\"");
	has_warning(&rep, "client.ping_interval: the number 25000000000 is read as nanoseconds, as "
		    "Centrifugo does; write a string such as \"25s\"");
	is_str(str_at(&c, "client.ping_interval"), "25s", "a JSON number is nanoseconds");
	conf_report_free(&rep);
	conf_free(&c);
}

static void test_warnings(void)
{
	struct conf c;
	struct conf_report rep = { 0 };
	char *path = config_path("unknown-ignored.json");

	conf_init(&c);
	is_int(conf_apply_file(&c, path, &rep), RT_OK, "unknown and ignored keys are not errors");
	is_int(conf_check(&c, &rep), RT_OK, "and pass conf_check");
	has_warning(&rep, "client.pingg_interval: unknown key");
	has_warning(&rep, "totally_unknown: unknown key");
	has_warning(&rep, "channel.namespaces[chat].colour: unknown key");
	has_warning(&rep, "grpc_api.enabled: not supported by rotor yet; ignored");
	/* Proxies are implemented (src/proxy/): their keys are not warned about. */
	for (size_t i = 0; i < rep.nwarnings; i++)
		ok(strstr(rep.warnings[i], "proxies") == NULL && strstr(rep.warnings[i], "proxy_name") == NULL,
		   "no proxy warning: %s", rep.warnings[i]);
	is_int(rep.nwarnings, 4, "an ignored key left at its default is not warned about");
	ok(conf_get(&c, "client.pingg_interval") == NULL, "unknown keys are dropped");
	ok(json_object_get(json_array_get(conf_get(&c, "channel.namespaces"), 0), "colour") == NULL,
	   "unknown namespace options are dropped");
	free(path);
	conf_report_free(&rep);
	conf_free(&c);
}

/* Keys of TLS, engines and proxies that rotor does not implement are errors
 * when set: running without them would be less safe, or keep data
 * elsewhere, than the file says. At their defaults they are nothing. */
static void test_refused(void)
{
	static const char *const refused[] = {
		"http_server.tls_autocert.enabled", "channel.namespaces[st].subscribe_stream_proxy_enabled",
	};
	/* Proxies rotor has, enabled without an endpoint. */
	static const char *const no_endpoint[] = {
		"client.proxy.connect.enabled: needs client.proxy.connect.endpoint",
		"client.proxy.refresh.enabled: needs client.proxy.refresh.endpoint",
		"channel.without_namespace.publish_proxy_enabled: needs channel.proxy.publish.endpoint",
		"channel.namespaces[chat].subscribe_proxy_enabled: needs channel.proxy.subscribe.endpoint",
		"rpc.without_namespace.proxy_enabled: needs rpc.proxy.endpoint",
	};
	struct conf c;
	struct conf_report rep = { 0 };
	char want[256];

	is_int(build(&c, "{\"http_server\": {\"tls_autocert\": {\"enabled\": true}},"
		     " \"engine\": {\"type\": \"redis\", \"redis\": {"
		     " \"tls\": {\"enabled\": true}, \"address\": [\"rediss://127.0.0.1:6380\", \"redis!example:6379\"]}},"
		     " \"client\": {\"proxy\": {\"connect\": {\"enabled\": true}, \"refresh\": {\"enabled\": true}}},"
		     " \"channel\": {\"without_namespace\": {\"publish_proxy_enabled\": true},"
		     " \"namespaces\": [{\"name\": \"chat\", \"subscribe_proxy_enabled\": true},"
		     " {\"name\": \"st\", \"subscribe_stream_proxy_enabled\": true}]},"
		     " \"rpc\": {\"without_namespace\": {\"proxy_enabled\": true}}}", NULL, &rep),
	       RT_INVAL, "a file that sets them is refused");
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(refused); i++) {
		snprintf(want, sizeof want, "%s: not supported by rotor yet; refused (TLS, engines and proxies are "
			 "never ignored)", refused[i]);
		has_error(&rep, want);
	}
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(no_endpoint); i++)
		has_error(&rep, no_endpoint[i]);
	/* The Redis engine is implemented; what it does not serve is named. */
	has_error(&rep, "engine.redis.tls.enabled: not supported by rotor yet; refused (rotor serves Redis "
		  "shards without TLS, and no list-mode history or hash field TTL)");
	is_int(rep.nerrors, ROTOR_ARRAY_LEN(refused) + ROTOR_ARRAY_LEN(no_endpoint) + 3, "nothing else");
	bool addr0 = false, addr1 = false;
	for (size_t i = 0; i < rep.nerrors; i++) {
		addr0 |= strncmp(rep.errors[i], "engine.redis.address[0]: ", 25) == 0 && strstr(rep.errors[i], "TLS");
		addr1 |= strncmp(rep.errors[i], "engine.redis.address[1]: ", 25) == 0 &&
			 strstr(rep.errors[i], "\"redis!example\" is neither an IP address nor a host name") != NULL;
	}
	ok(addr0, "rediss:// is an error naming the address (no TLS to Redis yet)");
	ok(addr1, "a malformed host is an error naming it");
	ok(!(conf_key_find("http_server.tls.key_pem")->flags & (CONF_REFUSED | CONF_IGNORED)) &&
	   !(conf_key_find("http_server.internal_tls.key_pem")->flags & (CONF_REFUSED | CONF_IGNORED)),
	   "TLS of both listeners is implemented (http_server.tls, internal_tls)");
	ok(!(conf_key_find("grpc_api.enabled")->flags & CONF_REFUSED), "a feature that is simply absent is not");
	conf_report_free(&rep);
	conf_free(&c);
	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"http_server\": {\"tls\": {\"enabled\": false}}, \"engine\": {\"type\": \"memory\"}}",
		     NULL, &rep), RT_OK, "at their defaults they pass");
	is_int(rep.nerrors + rep.nwarnings, 0, "without a word");
	conf_report_free(&rep);
	conf_free(&c);
}

/* engine.redis.sentinel_*: a list of Sentinel groups, one per shard, that
 * wins over address; the master name required; sentinel_tls refused. */
/* Centrifugo v6's broker and presence_manager sections: whichever is
 * enabled wins over engine.* for its side, with both enabled engine.* is
 * not read at all, and a type rotor does not serve is refused naming its
 * key. */
static void test_engine_plan(void)
{
	struct conf c;
	struct conf_report rep = { 0 };
	struct engine_plan p;

	is_int(build(&c, "{}", NULL, &rep), RT_OK, "defaults");
	ok(engine_plan(&c, &p, NULL) == RT_OK && !p.broker_redis && !p.presence_redis &&
	   p.broker_section == NULL && p.presence_section == NULL, "defaults: both in shared memory");
	conf_free(&c);

	is_int(build(&c, "{\"engine\": {\"type\": \"redis\"}}", NULL, &rep), RT_OK, "engine.type redis");
	ok(engine_plan(&c, &p, NULL) == RT_OK && p.broker_redis && p.presence_redis &&
	   strcmp(p.broker_section, "engine.redis") == 0 && engine_plan_shared(&p),
	   "engine redis alone: both sides on engine.redis, one set of shards");
	conf_free(&c);

	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {\"address\": [\"127.0.0.1:6379\"]}},"
		     " \"broker\": {\"enabled\": true, \"type\": \"redis\", \"redis\": {\"address\": [\"127.0.0.1:6380\"]}}}",
		     NULL, &rep), RT_OK, "broker section over engine redis");
	clean(&rep, "broker.enabled");
	ok(engine_plan(&c, &p, NULL) == RT_OK && p.broker_redis && p.presence_redis &&
	   strcmp(p.broker_section, "broker.redis") == 0 && strcmp(p.presence_section, "engine.redis") == 0 &&
	   !engine_plan_shared(&p), "the broker from broker.redis, presence still from engine.redis");
	conf_free(&c);

	is_int(build(&c, "{\"broker\": {\"enabled\": true, \"type\": \"redis\"}}", NULL, &rep), RT_OK,
	       "broker redis, engine memory");
	ok(engine_plan(&c, &p, NULL) == RT_OK && p.broker_redis && !p.presence_redis,
	   "broker redis, presence from engine.type memory: in shared memory");
	conf_free(&c);

	is_int(build(&c, "{\"engine\": {\"type\": \"redis\"}, \"presence_manager\": {\"enabled\": true}}", NULL,
		     &rep), RT_OK, "presence_manager memory over engine redis");
	ok(engine_plan(&c, &p, NULL) == RT_OK && p.broker_redis && !p.presence_redis &&
	   strcmp(p.broker_section, "engine.redis") == 0, "presence_manager.type defaults to memory and wins");
	conf_free(&c);

	/* Both enabled: engine.* is ignored, however wrong. */
	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {\"address\": [\"redis!example:6379\"],"
		     " \"tls\": {\"enabled\": true}}},"
		     " \"broker\": {\"enabled\": true, \"type\": \"redis\", \"redis\": {\"address\": [\"127.0.0.1:6380\"]}},"
		     " \"presence_manager\": {\"enabled\": true, \"type\": \"redis\","
		     " \"redis\": {\"address\": [\"127.0.0.1:6381\"], \"prefix\": \"pm\"}}}", NULL, &rep), RT_OK,
	       "both enabled: a broken engine.redis is not read");
	clean(&rep, "both enabled");
	ok(engine_plan(&c, &p, NULL) == RT_OK && strcmp(p.broker_section, "broker.redis") == 0 &&
	   strcmp(p.presence_section, "presence_manager.redis") == 0, "each side from its own section");
	struct redis_conf rc;
	ok(redis_conf_load(&c, "presence_manager.redis", &rc, NULL) == RT_OK && rc.nshards == 1 &&
	   rc.shard[0].port == 6381 && strcmp(rc.prefix, "pm") == 0, "presence_manager.redis.* read under its prefix");
	conf_free(&c);

	/* Errors name the key under the section that is read. */
	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"broker\": {\"enabled\": true, \"type\": \"redis\", \"redis\": {\"address\": [\"h!example:1\"],"
		     " \"tls\": {\"enabled\": true}, \"prefix\": \"{x}\"}},"
		     " \"presence_manager\": {\"enabled\": true, \"type\": \"redis\", \"redis\": {"
		     " \"sentinel_address\": [\"127.0.0.1:26379\"]}}}", NULL, &rep), RT_INVAL,
	       "bad broker.redis and presence_manager.redis blocks are refused");
	has_error(&rep, "broker.redis.tls.enabled: not supported by rotor yet; refused (rotor serves Redis shards "
		  "without TLS, and no list-mode history or hash field TTL)");
	has_error(&rep, "broker.redis.prefix: \"{x}\" cannot prefix Redis keys (empty, too long, or with a brace)");
	has_error(&rep, "presence_manager.redis.sentinel_master_name: required with "
		  "presence_manager.redis.sentinel_address (the name the sentinels monitor the master by)");
	bool named = false;
	for (size_t i = 0; i < rep.nerrors; i++)
		named |= strncmp(rep.errors[i], "broker.redis.address[0]: ", 25) == 0;
	ok(named, "a bad broker address names broker.redis.address[0]");
	conf_report_free(&rep);
	conf_free(&c);

	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"broker\": {\"enabled\": true, \"type\": \"nats\"}}", NULL, &rep), RT_INVAL,
	       "broker.type nats is refused");
	has_error(&rep, "broker.type: \"nats\" is not supported by rotor; refused (TLS, engines and proxies are "
		  "never ignored); use \"memory\" or \"redis\"");
	is_int(rep.nerrors, 1, "one error");
	conf_report_free(&rep);
	conf_free(&c);

	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"broker\": {\"type\": \"redisnats\"}}", NULL, &rep), RT_OK,
	       "broker.type without broker.enabled is not read, as in Centrifugo");
	conf_report_free(&rep);
	conf_free(&c);
}

static void test_sentinel(void)
{
	struct conf c;
	struct conf_report rep = { 0 };
	struct redis_conf rc;

	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {"
		     "\"sentinel_address\": [\"127.0.0.1:26381,127.0.0.1:26382\", \"[::1]:26390\"],"
		     " \"address\": [\"redis!example:6379\"], \"sentinel_master_name\": \"m1\","
		     " \"sentinel_user\": \"su\", \"sentinel_password\": \"sp\", \"sentinel_client_name\": \"sc\","
		     " \"password\": \"mp\", \"db\": 2}}}", NULL, &rep), RT_OK,
	       "sentinel_address with sentinel_master_name is accepted (address ignored)");
	clean(&rep, "sentinel");
	is_int(redis_conf_load(&c, "engine.redis", &rc, NULL), RT_OK, "redis_conf_load");
	is_int(rc.nshards, 2, "one shard per sentinel_address entry");
	ok(rc.shard[0].nsentinels == 2 && rc.shard[0].sentinel[1].port == 26382 &&
	   strcmp(rc.shard[0].sentinel[0].host, "127.0.0.1") == 0, "shard 0: two sentinels");
	ok(rc.shard[1].nsentinels == 1 && strcmp(rc.shard[1].sentinel[0].host, "::1") == 0 &&
	   rc.shard[1].sentinel[0].port == 26390, "shard 1: an IPv6 sentinel");
	ok(strcmp(rc.shard[0].master_name, "m1") == 0 && strcmp(rc.shard[0].sentinel_user, "su") == 0 &&
	   strcmp(rc.shard[0].sentinel_password, "sp") == 0 && strcmp(rc.shard[0].sentinel_client_name, "sc") == 0,
	   "sentinel_master_name, _user, _password, _client_name");
	ok(strcmp(rc.shard[1].password, "mp") == 0 && rc.shard[1].db == 2, "the master's password and db");
	is_str(redis_addr_str(&rc.shard[0]), "sentinel master m1 (127.0.0.1:26381,127.0.0.1:26382)",
	       "redis_addr_str of a Sentinel group");
	conf_report_free(&rep);
	conf_free(&c);

	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {"
		     "\"sentinel_address\": [\"127.0.0.1:26381\"]}}}", NULL, &rep), RT_INVAL,
	       "sentinel_address without sentinel_master_name is refused");
	has_error(&rep, "engine.redis.sentinel_master_name: required with engine.redis.sentinel_address (the name "
		  "the sentinels monitor the master by)");
	is_int(rep.nerrors, 1, "one error");
	conf_report_free(&rep);
	conf_free(&c);

	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {\"sentinel_master_name\": \"m1\","
		     " \"sentinel_address\": [\"127.0.0.1:26381,sentinel!example:26379\", \"127.0.0.1:1,\"],"
		     " \"sentinel_tls\": {\"enabled\": true}}}}", NULL, &rep), RT_INVAL,
	       "bad sentinel addresses and sentinel_tls are refused");
	has_error(&rep, "engine.redis.sentinel_tls.enabled: not supported by rotor yet; refused (rotor "
		  "serves Redis shards without TLS, and no list-mode history or hash field TTL)");
	bool name = false, empty = false;
	for (size_t i = 0; i < rep.nerrors; i++) {
		name |= strncmp(rep.errors[i], "engine.redis.sentinel_address[0]: ", 34) == 0 &&
			strstr(rep.errors[i], "sentinel!example") != NULL;
		empty |= strncmp(rep.errors[i], "engine.redis.sentinel_address[1]: ", 34) == 0 &&
			 strstr(rep.errors[i], "empty") != NULL;
	}
	ok(name, "a malformed sentinel host is an error naming the entry");
	ok(empty, "an empty sentinel address is an error naming the entry");
	is_int(rep.nerrors, 3, "all three in one pass");
	conf_report_free(&rep);
	conf_free(&c);

	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {\"address\": "
		     "[\"redis+sentinel://:mp@127.0.0.1:26381/3?sentinel_master_name=m2&addr=127.0.0.1:26382\"]}}}",
		     NULL, &rep), RT_OK, "a redis+sentinel:// address");
	clean(&rep, "redis+sentinel://");
	is_int(redis_conf_load(&c, "engine.redis", &rc, NULL), RT_OK, "redis_conf_load");
	ok(rc.nshards == 1 && rc.shard[0].nsentinels == 2 && strcmp(rc.shard[0].master_name, "m2") == 0 &&
	   strcmp(rc.shard[0].password, "mp") == 0 && rc.shard[0].db == 3,
	   "its sentinels, master name, and the master's password and db");
	conf_report_free(&rep);
	conf_free(&c);

	/* Redis Cluster: cluster_address wins over address (§7.3). */
	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {\"address\": [\"redis!example:1\"],"
		     " \"cluster_address\": [\"127.0.0.1:7000, 127.0.0.1:7001\", \"127.0.0.1:7100\"]}}}", NULL, &rep),
	       RT_OK, "cluster_address is accepted, and address then ignored");
	clean(&rep, "cluster_address");
	is_int(redis_conf_load(&c, "engine.redis", &rc, NULL), RT_OK, "redis_conf_load of cluster_address");
	ok(rc.nshards == 2 && rc.shard[0].cluster && rc.shard[0].nseeds == 2 && rc.shard[0].seed[1].port == 7001 &&
	   rc.shard[1].cluster && rc.shard[1].nseeds == 1 && rc.shard[1].seed[0].port == 7100,
	   "two cluster shards with their seeds");
	conf_report_free(&rep);
	conf_free(&c);

	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {\"cluster_address\": "
		     "[\"127.0.0.1:7000,node!example:7001\"], \"tls\": {\"enabled\": true}}}}", NULL, &rep), RT_INVAL,
	       "a cluster with TLS or a malformed host is refused");
	has_error(&rep, "engine.redis.tls.enabled: not supported by rotor yet; refused (rotor serves Redis "
		  "shards without TLS, and no list-mode history or hash field TTL)");
	bool host = false;
	for (size_t i = 0; i < rep.nerrors; i++)
		host |= strncmp(rep.errors[i], "engine.redis.cluster_address[0]: ", 33) == 0 &&
			strstr(rep.errors[i], "node!example") != NULL;
	ok(host, "a cluster node's malformed host is an error naming the entry");
	is_int(rep.nerrors, 2, "both in one pass");
	conf_report_free(&rep);
	conf_free(&c);

	/* Host names (Docker's "redis:6379") in every address form: checked
	 * for syntax only, so rotord -t needs no DNS (nonexistent.invalid). */
	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {\"address\": [\"redis:6379\","
		     " \"redis://u:p@cache-1.nonexistent.invalid:6380/1\", \"redis_2\","
		     " \"redis+cluster://seed-a:7000?addr=seed-b.nonexistent.invalid:7001\"]}}}", NULL, &rep),
	       RT_OK, "host names in address are accepted without a lookup");
	clean(&rep, "host names in address");
	is_int(redis_conf_load(&c, "engine.redis", &rc, NULL), RT_OK, "redis_conf_load of host names");
	ok(rc.nshards == 4 && strcmp(rc.shard[0].host, "redis") == 0 && rc.shard[0].port == 6379 &&
	   strcmp(rc.shard[1].host, "cache-1.nonexistent.invalid") == 0 && rc.shard[1].db == 1 &&
	   strcmp(rc.shard[2].host, "redis_2") == 0 && rc.shard[2].port == 6379 && rc.shard[3].cluster &&
	   strcmp(rc.shard[3].seed[1].host, "seed-b.nonexistent.invalid") == 0,
	   "the names are kept for connect time");
	conf_report_free(&rep);
	conf_free(&c);
	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {\"sentinel_master_name\": \"m\","
		     " \"sentinel_address\": [\"sentinel-1:26379,sentinel-2.nonexistent.invalid\"]}}}", NULL, &rep),
	       RT_OK, "host names in sentinel_address are accepted");
	clean(&rep, "host names in sentinel_address");
	is_int(redis_conf_load(&c, "engine.redis", &rc, NULL), RT_OK, "redis_conf_load of sentinel names");
	ok(rc.nshards == 1 && rc.shard[0].nsentinels == 2 && strcmp(rc.shard[0].sentinel[0].host, "sentinel-1") == 0 &&
	   rc.shard[0].sentinel[1].port == 26379, "the sentinels' names are kept");
	conf_report_free(&rep);
	conf_free(&c);
	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {\"cluster_address\":"
		     " [\"node-1:7000,node-2.nonexistent.invalid:7001\"]}}}", NULL, &rep),
	       RT_OK, "host names in cluster_address are accepted");
	clean(&rep, "host names in cluster_address");
	conf_report_free(&rep);
	conf_free(&c);

	rep = (struct conf_report){ 0 };
	is_int(build(&c, "{\"engine\": {\"type\": \"redis\", \"redis\": {\"address\": "
		     "[\"redis+cluster://:pw@127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002\"]}}}",
		     NULL, &rep), RT_OK, "a redis+cluster:// address");
	is_int(redis_conf_load(&c, "engine.redis", &rc, NULL), RT_OK, "redis_conf_load of redis+cluster://");
	ok(rc.nshards == 1 && rc.shard[0].cluster && rc.shard[0].nseeds == 3 && rc.shard[0].seed[2].port == 7002 &&
	   strcmp(rc.shard[0].password, "pw") == 0, "its seeds and password");
	conf_report_free(&rep);
	conf_free(&c);
}

static void test_v5(void)
{
	struct conf c;
	struct conf_report rep = { 0 };
	char *path = config_path("v5.json");

	conf_init(&c);
	conf_apply_file(&c, path, &rep);
	is_int(conf_check(&c, &rep), RT_OK, "a v5 file is accepted");
	has_warning(&rep, "token_hmac_secret_key is a Centrifugo v5 name; use client.token.hmac_secret_key");
	has_warning(&rep, "api_key is a Centrifugo v5 name; use http_api.key");
	has_warning(&rep, "port is a Centrifugo v5 name; use http_server.port");
	has_warning(&rep, "presence is a Centrifugo v5 name; use channel.without_namespace.presence");
	has_warning(&rep, "client_channel_limit is a Centrifugo v5 name; use client.channel_limit");
	is_str(c.token_hmac_secret, "v5-secret", "v5 token secret applied");
	is_str(c.api_key, "v5-api-key", "v5 api key applied");
	is_int(c.port, 8100, "v5 port applied");
	is_int(json_integer_value(conf_get(&c, "client.channel_limit")), 32, "v5 client_ prefix applied");
	ok(json_is_true(conf_get(&c, "channel.without_namespace.presence")), "v5 top-level channel option");
	is_int(json_array_size(conf_get(&c, "channel.namespaces")), 1, "v5 namespaces");
	is_int(c.log_level_num, LOG_WARN, "v5 log_level");
	has_warning(&rep, "sockjs is a Centrifugo v5 name; use sockjs.enabled");
	ok(json_is_true(conf_get(&c, "sockjs.enabled")), "v5 sockjs");
	is_str(json_string_value(conf_get(&c, "sockjs.handler_prefix")), "/sockjs", "v5 sockjs_handler_prefix");
	is_str(json_string_value(conf_get(&c, "sockjs.url")), "/static/sockjs.min.js", "v5 sockjs_url");
	is_str(json_string_value(conf_get(&c, "sockjs.heartbeat_delay")), "25s", "v5 sockjs_heartbeat_delay");
	free(path);
	conf_report_free(&rep);
	conf_free(&c);
}

/* ---- types through conf_set --------------------------------------------- */

static int set1(struct conf *c, const char *key, const char *text, struct conf_report *rep)
{
	conf_report_free(rep);
	return conf_set(c, key, text, rep);
}

static void test_types(void)
{
	struct conf c;
	struct conf_report rep = { 0 };
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };

	conf_init(&c);
	for (size_t i = 0; i < 6; i++) {
		set1(&c, "client.insecure", yes[i], &rep);
		ok(json_is_true(conf_get(&c, "client.insecure")), "bool \"%s\" is true", yes[i]);
		set1(&c, "client.insecure", no[i], &rep);
		ok(json_is_false(conf_get(&c, "client.insecure")), "bool \"%s\" is false", no[i]);
	}
	is_int(set1(&c, "client.insecure", "yes", &rep), RT_INVAL, "bool \"yes\" refused");
	has_error(&rep, "client.insecure: must be true or false, got \"yes\"");

	is_int(set1(&c, "http_server.port", "8080", &rep), RT_OK, "int 8080");
	is_int(json_integer_value(conf_get(&c, "http_server.port")), 8080, "int stored");
	is_int(set1(&c, "http_server.port", "0", &rep), RT_INVAL, "int below min refused");
	has_error(&rep, "http_server.port: must be an integer from 1 to 65535, got \"0\"");
	is_int(set1(&c, "http_server.port", "65536", &rep), RT_INVAL, "int above max refused");
	is_int(set1(&c, "http_server.port", "80x", &rep), RT_INVAL, "int with junk refused");
	is_int(set1(&c, "http_server.port", "", &rep), RT_INVAL, "empty int refused");
	is_int(set1(&c, "client.channel_limit", "-1", &rep), RT_INVAL, "negative refused");
	has_error(&rep, "client.channel_limit: must be an integer >= 0, got \"-1\"");
	is_int(json_integer_value(conf_get(&c, "http_server.port")), 8080, "refused values change nothing");

	is_int(set1(&c, "node.name", "node-1", &rep), RT_OK, "string");
	is_str(str_at(&c, "node.name"), "node-1", "string stored");
	is_int(set1(&c, "node.name", "", &rep), RT_OK, "empty string through conf_set");

	is_int(set1(&c, "client.allowed_origins", "  https://a.example   https://b.example ", &rep), RT_OK, "list");
	is_int(json_array_size(conf_get(&c, "client.allowed_origins")), 2, "list split on spaces");
	is_str(json_string_value(json_array_get(conf_get(&c, "client.allowed_origins"), 1)),
	       "https://b.example", "list item");

	is_int(set1(&c, "channel.namespaces", "[{\"name\": \"ns1\", \"presence\": true}]", &rep), RT_OK,
	       "namespaces as JSON");
	ok(json_is_true(json_object_get(json_array_get(conf_get(&c, "channel.namespaces"), 0), "presence")),
	   "namespace option from JSON");
	is_int(set1(&c, "channel.namespaces", "chat news", &rep), RT_OK, "namespaces as names");
	is_str(json_string_value(json_object_get(json_array_get(conf_get(&c, "channel.namespaces"), 1), "name")),
	       "news", "second name");
	is_int(set1(&c, "channel.namespaces", "[{\"name\": ", &rep), RT_INVAL, "invalid JSON refused");
	ok(rep.nerrors == 1 && strncmp(rep.errors[0], "channel.namespaces: invalid JSON: ", 34) == 0,
	   "invalid JSON error names the key");
	is_int(set1(&c, "broker.nats.raw_mode.channel_replacements", ":.,#:_", &rep), RT_OK, "map as k:v pairs");
	is_str(json_string_value(json_object_get(conf_get(&c, "broker.nats.raw_mode.channel_replacements"), "#")),
	       "_", "map value");
	is_int(set1(&c, "broker.nats.raw_mode.channel_replacements", "nocolon", &rep), RT_INVAL, "bad map refused");
	is_int(set1(&c, "no.such.key", "1", &rep), RT_INVAL, "conf_set refuses unknown keys");
	has_error(&rep, "no.such.key: unknown key");
	is_int(set1(&c, "http_api.error_mode", "loud", &rep), RT_INVAL, "one-of check");
	has_error(&rep, "http_api.error_mode: must be one of \"\", \"transport\", got \"loud\"");
	is_int(set1(&c, "engine.type", "redis", &rep), RT_OK, "engine.type redis accepted");
	is_int(set1(&c, "engine.type", "tarantool", &rep), RT_INVAL, "engine.type tarantool refused");
	is_int(set1(&c, "client.token.user_id_claim", "user-id", &rep), RT_INVAL, "claim name checked");
	is_int(set1(&c, "channel.without_namespace.allowed_delta_types", "fossil", &rep), RT_OK, "fossil");
	is_int(set1(&c, "channel.without_namespace.allowed_delta_types", "fossil zstd", &rep), RT_INVAL, "zstd");
	conf_report_free(&rep);
	conf_free(&c);
}

/* Milliseconds of duration TEXT, LLONG_MIN if refused: TEXT is read as
 * client.ping_interval (which takes negative durations), and its canonical
 * text, without the sign, as shutdown.timeout, whose typed field gives the
 * milliseconds. So this also checks that canonical text reads back. */
static long long dur_ms(const char *text)
{
	struct conf c;
	struct conf_report rep = { 0 };
	long long ms = LLONG_MIN;

	conf_init(&c);
	if (conf_set(&c, "client.ping_interval", text, &rep) == RT_OK) {
		const char *canon = str_at(&c, "client.ping_interval");
		bool neg = canon[0] == '-';
		if (conf_set(&c, "shutdown.timeout", canon + neg, &rep) == RT_OK) {
			conf_check(&c, &rep);
			ms = neg ? -c.shutdown_timeout_ms : c.shutdown_timeout_ms;
		}
	}
	conf_report_free(&rep);
	conf_free(&c);
	return ms;
}

static const char *dur_canon(const char *text)
{
	static char buf[64];
	struct conf c;
	struct conf_report rep = { 0 };
	conf_init(&c);
	if (conf_set(&c, "client.ping_interval", text, &rep) == RT_OK)
		snprintf(buf, sizeof buf, "%s", str_at(&c, "client.ping_interval"));
	else
		snprintf(buf, sizeof buf, "(refused)");
	conf_report_free(&rep);
	conf_free(&c);
	return buf;
}

static void test_durations(void)
{
	static const struct {
		const char *in;
		long long ms;
	} good[] = {
		{ "25s", 25000 }, { "1m30s", 90000 }, { "500ms", 500 }, { "1.5h", 5400000 },
		{ "-1s", -1000 }, { "0", 0 }, { "-0", 0 }, { "+5s", 5000 }, { "0s", 0 },
		{ "1ns", 1 }, { "1us", 1 }, { "1\xc2\xb5s", 1 }, { "1\xce\xbcs", 1 }, { "1500us", 2 },
		{ "999999ns", 1 }, { "1000000ns", 1 }, { "1000001ns", 2 }, { ".5s", 500 }, { "1.s", 1000 },
		{ "2h45m", 9900000 }, { "1h1m1s1ms", 3661001 }, { "720h", 2592000000LL },
		{ "-1.5s", -1500 }, { "0.0000001s", 1 }, { "2562047h", 9223369200000LL },
		{ "9223372036854775807ns", 9223372036854LL }, { "-9223372036854775808ns", -9223372036854LL },
	};
	static const char *const bad[] = {
		"", "1", "25", "s", "1x", "5sec", "1.5", "-", ".s", "1h-1m", " 1s", "1s ", "1e3s",
		"2562048h", "9223372036854775808ns", "abc", "1..5s", "--1s",
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(good); i++)
		is_int(dur_ms(good[i].in), good[i].ms, "duration \"%s\"", good[i].in);
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(bad); i++)
		is_int(dur_ms(bad[i]), LLONG_MIN, "duration \"%s\" refused", bad[i]);

	is_str(dur_canon("90s"), "1m30s", "canonical 90s");
	is_str(dur_canon("3600s"), "1h0m0s", "canonical 3600s");
	is_str(dur_canon("61.5s"), "1m1.5s", "canonical 61.5s");
	is_str(dur_canon("1.25s"), "1.25s", "canonical 1.25s");
	is_str(dur_canon("1000ms"), "1s", "canonical 1000ms");
	is_str(dur_canon("999ms"), "999ms", "canonical 999ms");
	is_str(dur_canon("-1.5s"), "-1.5s", "canonical -1.5s");
	is_str(dur_canon("0"), "0s", "canonical 0");
	is_str(dur_canon("1ns"), "1ms", "canonical 1ns rounds up to 1ms");

	struct conf c;
	struct conf_report rep = { 0 };
	conf_init(&c);
	is_int(conf_set(&c, "http_server.read_header_timeout", "48h", &rep), RT_INVAL, "duration above max");
	has_error(&rep, "http_server.read_header_timeout: must be a duration from 1ms to 24h0m0s "
		  "(such as \"25s\" or \"500ms\"), got \"48h\"");
	conf_report_free(&rep);
	is_int(conf_set(&c, "shutdown.timeout", "-5s", &rep), RT_INVAL, "negative shutdown refused");
	has_error(&rep, "shutdown.timeout: must be a duration of at least 0s (such as \"25s\", "
		  "\"1m30s\" or \"500ms\"), got \"-5s\"");
	conf_report_free(&rep);
	is_int(conf_set(&c, "channel.without_namespace.history_ttl", "1.5s", &rep), RT_INVAL,
	       "history_ttl must be whole seconds");
	has_error(&rep, "channel.without_namespace.history_ttl: must be a whole number of seconds, got \"1.5s\"");
	conf_report_free(&rep);
	conf_free(&c);
}

/* ---- environment -------------------------------------------------------- */

static void test_env(void)
{
	struct conf c;
	struct conf_report rep = { 0 };
	char *env1[] = {
		"ROTOR_HTTP_SERVER_PORT=9100",
		"CENTRIFUGO_HTTP_SERVER_PORT=9200",
		"CENTRIFUGO_LOG_LEVEL=debug",
		"ROTOR_HTTP_SERVER_ADDRESS=",
		"CENTRIFUGO_HTTP_SERVER_ADDRESS=10.0.0.1",
		"ROTOR_CLIENT_ALLOWED_ORIGINS=https://a.example https://b.example",
		"ROTOR_CLIENT_TOKEN_HMAC_SECRET_KEY=env-secret",
		"ROTOR_WORKERS=3",
		"CENTRIFUGO_CHANNEL_NAMESPACES=[{\"name\": \"ns1\"}, {\"name\": \"news.v-2\"}]",
		"ROTOR_CHANNEL_NAMESPACES_NS1_PRESENCE=true",
		"CENTRIFUGO_CHANNEL_NAMESPACES_NS1_PRESENCE=false",
		"CENTRIFUGO_CHANNEL_NAMESPACES_NEWS_V_2_HISTORY_SIZE=10",
		"CENTRIFUGO_CHANNEL_NAMESPACES_NEWS_V_2_HISTORY_TTL=60s",
		"ROTOR_CLIENT_PING_INTERVAL=30s",
		"ROTOR_BUILDDIR=/tmp/build",
		"PATH=/usr/bin",
		NULL,
	};
	is_int(build(&c, "{\"http_server\": {\"port\": 9300}, \"shutdown\": {\"timeout\": \"5s\"}}", env1, &rep),
	       RT_OK, "environment applies");
	clean(&rep, "environment");
	is_int(c.port, 9100, "ROTOR_ beats CENTRIFUGO_ and the file");
	is_int(c.shutdown_timeout_ms, 5000, "the file still applies where env is silent");
	is_int(c.log_level_num, LOG_DEBUG, "CENTRIFUGO_ alone applies");
	is_str(c.address, "10.0.0.1", "an empty ROTOR_ value is unset");
	is_int(json_array_size(conf_get(&c, "client.allowed_origins")), 2, "lists are space-separated");
	is_str(c.token_hmac_secret, "env-secret", "secret from env");
	is_int(c.workers, 3, "ROTOR_WORKERS");
	is_str(str_at(&c, "client.ping_interval"), "30s", "duration from env");
	const json_t *ns = conf_get(&c, "channel.namespaces");
	is_int(json_array_size(ns), 2, "namespaces from a JSON env value");
	ok(json_is_true(json_object_get(json_array_get(ns, 0), "presence")),
	   "per-namespace override, ROTOR_ first");
	is_int(json_integer_value(json_object_get(json_array_get(ns, 1), "history_size")), 10,
	       "per-namespace override, name with . and - as _");
	is_str(json_string_value(json_object_get(json_array_get(ns, 1), "history_ttl")), "1m0s",
	       "per-namespace duration");
	conf_report_free(&rep);
	conf_free(&c);

	char *env2[] = {
		"ROTOR_HTTP_SERVER_PORT=abc",
		"CENTRIFUGO_CLIENT_INSECURE=maybe",
		"ROTOR_CLIENT_PINGINTERVAL=1s",
		"CENTRIFUGO_GRPC_API_ENABLED=true",
		"ROTOR_CHANNEL_NAMESPACES=chat",
		"ROTOR_CHANNEL_NAMESPACES_CHAT_HISTORY_SIZE=many",
		"ROTOR_CHANNEL_NAMESPACES_NOPE_PRESENCE=true",
		"ROTOR_SRCDIR=/src",
		NULL,
	};
	is_int(build(&c, NULL, env2, &rep), RT_INVAL, "bad environment refused");
	has_error(&rep, "ROTOR_HTTP_SERVER_PORT: http_server.port: must be an integer from 1 to 65535, got \"abc\"");
	has_error(&rep, "CENTRIFUGO_CLIENT_INSECURE: client.insecure: must be true or false, got \"maybe\"");
	has_error(&rep, "ROTOR_CHANNEL_NAMESPACES_CHAT_HISTORY_SIZE: channel.namespaces[chat].history_size: "
		  "must be an integer >= 0, got \"many\"");
	has_warning(&rep, "ROTOR_CLIENT_PINGINTERVAL: unknown environment variable");
	has_warning(&rep, "ROTOR_CHANNEL_NAMESPACES_NOPE_PRESENCE: unknown environment variable");
	has_warning(&rep, "grpc_api.enabled: not supported by rotor yet; ignored");
	is_int(rep.nerrors, 3, "all env errors in one pass");
	is_int(rep.nwarnings, 3, "ROTOR_SRCDIR is not taken for a config variable");
	is_int(json_array_size(conf_get(&c, "channel.namespaces")), 1, "names list made one namespace");
	conf_report_free(&rep);
	conf_free(&c);

	char *env_v5[] = {
		"CENTRIFUGO_API_KEY=v5-key",
		"CENTRIFUGO_TOKEN_HMAC_SECRET_KEY=v5-secret",
		"CENTRIFUGO_HTTP_API_KEY=v6-key",
		"CENTRIFUGO_PORT=8123",
		NULL,
	};
	is_int(build(&c, NULL, env_v5, &rep), RT_OK, "v5 environment names are accepted");
	has_warning(&rep, "CENTRIFUGO_API_KEY is a Centrifugo v5 name; use CENTRIFUGO_HTTP_API_KEY");
	has_warning(&rep, "CENTRIFUGO_TOKEN_HMAC_SECRET_KEY is a Centrifugo v5 name; use "
		    "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY");
	has_warning(&rep, "CENTRIFUGO_PORT is a Centrifugo v5 name; use CENTRIFUGO_HTTP_SERVER_PORT");
	is_int(rep.nwarnings, 3, "no other warnings");
	is_str(c.token_hmac_secret, "v5-secret", "v5 variable applied");
	is_str(c.api_key, "v6-key", "the v6 name wins over the v5 name");
	is_int(c.port, 8123, "CENTRIFUGO_PORT");
	conf_report_free(&rep);
	conf_free(&c);

	char *env3[] = { "ROTOR_LOG_LEVEL=debug", NULL };
	setenv("ROTOR_LOG_LEVEL", "trace", 1);
	conf_init(&c);
	conf_apply_env(&c, NULL, &rep);
	conf_check(&c, &rep);
	is_int(c.log_level_num, LOG_TRACE, "NULL envp reads environ");
	conf_free(&c);
	conf_report_free(&rep);
	unsetenv("ROTOR_LOG_LEVEL");
	build(&c, NULL, env3, &rep);
	is_int(c.log_level_num, LOG_DEBUG, "a custom envp is used instead of environ");
	conf_report_free(&rep);
	conf_free(&c);
}

/* ---- namespaces and cross-key rules ------------------------------------- */

static void test_namespaces(void)
{
	struct conf c;
	struct conf_report rep = { 0 };

	build(&c, "{\"channel\": {\"namespaces\": {\"name\": \"chat\"}}}", NULL, &rep);
	has_error(&rep, "channel.namespaces: must be an array of objects, got {\"name\":\"chat\"}");
	conf_report_free(&rep);
	conf_free(&c);

	build(&c, "{\"channel\": {\"namespaces\": [1, {\"presence\": true}, {\"name\": 7},"
		  " {\"name\": \"ok\", \"history_ttl\": \"soon\", \"presence\": \"yes\", \"pink\": 1}]},"
		  " \"rpc\": {\"namespaces\": [{\"name\": \"a\"}]}, \"proxies\": [{\"name\": \"default\"}]}",
		  NULL, &rep);
	has_error(&rep, "channel.namespaces[0]: must be an object, got 1");
	has_error(&rep, "channel.namespaces[1].name: missing");
	has_error(&rep, "channel.namespaces[2].name: must match ^[-a-zA-Z0-9_.]{2,}$, got 7");
	has_error(&rep, "channel.namespaces[ok].history_ttl: must be a duration of at least 0s (such as "
		  "\"25s\", \"1m30s\" or \"500ms\"), got \"soon\"");
	has_error(&rep, "channel.namespaces[ok].presence: must be true or false, got \"yes\"");
	has_warning(&rep, "channel.namespaces[ok].pink: unknown key");
	has_error(&rep, "rpc.namespaces[0].name: must match ^[-a-zA-Z0-9_.]{2,}$, got \"a\"");
	has_error(&rep, "proxies[default]: the name \"default\" is reserved");
	is_int(rep.nerrors, 7, "every namespace problem in one pass");
	conf_report_free(&rep);
	conf_free(&c);

	build(&c, "{\"channel\": {\"history_meta_ttl\": \"1h\", \"namespaces\": ["
		  "{\"name\": \"a1\", \"history_size\": 10},"
		  "{\"name\": \"b1\", \"history_size\": 10, \"history_ttl\": \"2h\"},"
		  "{\"name\": \"c1\", \"force_recovery\": true},"
		  "{\"name\": \"d1\", \"history_size\": 1, \"history_ttl\": \"2h\", \"history_meta_ttl\": \"3h\"},"
		  "{\"name\": \"e1\", \"publish_proxy_name\": \"nope\"}],"
		  " \"without_namespace\": {\"history_ttl\": \"10s\"}},"
		  " \"client\": {\"subscribe_to_user_personal_channel\": {\"enabled\": true,"
		  " \"personal_channel_namespace\": \"a1\", \"single_connection\": true}}}", NULL, &rep);
	has_error(&rep, "channel.namespaces[a1]: history_size and history_ttl must be set together");
	has_error(&rep, "channel.namespaces[b1].history_ttl (2h0m0s) must not exceed channel.history_meta_ttl (1h0m0s)");
	has_error(&rep, "channel.namespaces[c1].force_recovery needs history_size and history_ttl");
	has_error(&rep, "channel.namespaces[e1].publish_proxy_name: no proxy named \"nope\" in proxies");
	has_error(&rep, "channel.without_namespace: history_size and history_ttl must be set together");
	has_error(&rep, "client.subscribe_to_user_personal_channel.single_connection needs presence in the namespace a1");
	is_int(rep.nerrors, 6, "cross-option rules; d1's own meta ttl is honoured");
	conf_report_free(&rep);
	conf_free(&c);

	build(&c, "{\"client\": {\"subscribe_to_user_personal_channel\": {\"enabled\": true,"
		  " \"personal_channel_namespace\": \"users\"}}, \"proxies\": [{\"name\": \"p1\"}],"
		  " \"channel\": {\"namespaces\": [{\"name\": \"x1\", \"subscribe_proxy_name\": \"p1\"}]}}", NULL, &rep);
	has_error(&rep, "client.subscribe_to_user_personal_channel.personal_channel_namespace: no namespace "
		  "\"users\" in channel.namespaces");
	is_int(rep.nerrors, 1, "a named proxy may be referenced");
	conf_report_free(&rep);
	conf_free(&c);
}

static void test_cross_rules(void)
{
	struct conf c;
	struct conf_report rep = { 0 };

	is_int(build(&c, "{\"client\": {\"ping_interval\": \"10s\", \"pong_timeout\": \"10s\"}}", NULL, &rep),
	       RT_INVAL, "pong_timeout == ping_interval refused");
	has_error(&rep, "client.pong_timeout (10s) must be less than client.ping_interval (10s); "
		  "a negative value disables either");
	conf_report_free(&rep);
	conf_free(&c);
	is_int(build(&c, "{\"client\": {\"ping_interval\": \"-1s\", \"pong_timeout\": \"30s\"}}", NULL, &rep),
	       RT_OK, "pings disabled: any pong_timeout");
	conf_report_free(&rep);
	conf_free(&c);
	is_int(build(&c, "{\"client\": {\"ping_interval\": \"5s\", \"pong_timeout\": -1}}", NULL, &rep),
	       RT_OK, "pong_timeout disabled (-1 as a number)");
	conf_report_free(&rep);
	conf_free(&c);
	is_int(build(&c, "{\"client\": {\"ping_interval\": \"9s\", \"pong_timeout\": \"8s\"}}", NULL, &rep),
	       RT_OK, "pong_timeout below ping_interval");
	conf_report_free(&rep);
	conf_free(&c);

	build(&c, "{\"client\": {\"token\": {\"audience\": \"a\", \"audience_regex\": \"^a$\"}}}", NULL, &rep);
	has_error(&rep, "client.token.audience_regex: can not be used together with client.token.audience");
	conf_report_free(&rep);
	conf_free(&c);

	is_int(build(&c, "{\"workers\": 300}", NULL, &rep), RT_INVAL, "300 workers refused");
	has_error(&rep, "workers: must be an integer from 0 to 256, got 300");
	conf_report_free(&rep);
	conf_free(&c);
}

/* ---- dump, load_dump, diff ---------------------------------------------- */

struct diffs {
	char names[16][64];
	int n;
};

static void collect(const struct conf_key *k, const json_t *old, const json_t *new_, void *arg)
{
	struct diffs *d = arg;
	if (d->n < 16)
		snprintf(d->names[d->n], sizeof d->names[0], "%s", k->name);
	d->n++;
}

static void test_dump(void)
{
	struct conf a, b;
	struct conf_report rep = { 0 };
	struct diffs d = { .n = 0 };
	char *path = config_path("full.json");
	char *text, *text2, *red;

	conf_init(&a);
	conf_apply_file(&a, path, &rep);
	conf_check(&a, &rep);
	text = conf_dump(&a, false);
	ok(text && text[0] == '{', "dump is a JSON object");
	ok(strstr(text, "\"secret-for-tests-only\"") != NULL, "unredacted dump keeps secrets");
	ok(strstr(text, "\"admin\": {") != NULL && strstr(text, "\"tls_autocert\": {") != NULL,
	   "dump is nested and has every section");
	ok(strstr(text, "\"address\"") < strstr(text, "\"idle_timeout\""), "keys are sorted");

	conf_report_free(&rep);
	is_int(conf_load_dump(&b, text, strlen(text), &rep), RT_OK, "load_dump accepts the dump");
	clean(&rep, "load_dump");
	conf_diff(&a, &b, collect, &d);
	is_int(d.n, 0, "load_dump rebuilds an equal config");
	is_int(b.port, a.port, "typed fields agree");
	is_str(b.token_hmac_secret, a.token_hmac_secret, "secrets survive the dump");
	text2 = conf_dump(&b, false);
	is_str(text2, text, "dump -> load_dump -> dump is stable");

	size_t nkeys_seen = 0;
	for (size_t i = 0; i < conf_nkeys; i++)
		nkeys_seen += conf_get(&b, conf_keys[i].name) != NULL;
	is_int(nkeys_seen, conf_nkeys, "every table key is in the document");

	red = conf_dump(&a, true);
	ok(strstr(red, "secret-for-tests-only") == NULL && strstr(red, "api-key-for-tests-only") == NULL,
	   "redacted dump hides secrets");
	ok(strstr(red, "\"hmac_secret_key\": \"<hidden>\"") != NULL, "secrets show as <hidden>");
	ok(strstr(red, "\"password\": \"\"") != NULL, "unset secrets show as empty");

	conf_report_free(&rep);
	conf_set(&b, "client.ping_interval", "20000ms", &rep);
	conf_set(&b, "http_server.port", "9001", &rep);
	conf_set(&b, "channel.namespaces", "[{\"name\": \"chat\"}]", &rep);
	conf_set(&b, "client.token.hmac_secret_key", "new", &rep);
	conf_check(&b, &rep);
	d.n = 0;
	conf_diff(&a, &b, collect, &d);
	is_int(d.n, 3, "conf_diff: three keys changed (20000ms equals 20s)");
	is_str(d.names[0], "http_server.port", "port changed");
	is_str(d.names[1], "client.token.hmac_secret_key", "secret changed");
	is_str(d.names[2], "channel.namespaces", "namespaces changed");

	conf_report_free(&rep);
	conf_free(&b);
	is_int(conf_load_dump(&b, "{\"http_server\": ", 16, &rep), RT_INVAL, "a broken dump is refused");
	ok(rep.nerrors == 1 && strncmp(rep.errors[0], "configuration dump:", 19) == 0, "and said so");
	free(text);
	free(text2);
	free(red);
	free(path);
	conf_report_free(&rep);
	conf_free(&a);
	conf_free(&b);
}

int main(void)
{
	if (getenv("ROTOR_SRCDIR"))
		srcdir = getenv("ROTOR_SRCDIR");
	test_table();
	test_keys_print();
	test_defaults();
	test_full_file();
	test_bad_file();
	test_file_errors();
	test_lenient();
	test_internal_listener();
	test_warnings();
	test_refused();
	test_engine_plan();
	test_sentinel();
	test_v5();
	test_types();
	test_durations();
	test_env();
	test_namespaces();
	test_cross_rules();
	test_dump();
	return tap_done();
}
