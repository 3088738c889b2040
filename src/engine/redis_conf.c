/*
 * redis_conf.c - the Redis engine's settings (engine.redis.*), read the
 * same way by rotord -t, the master, the broker and every worker: the
 * shard addresses (redis_link.h parses them: servers, Sentinel groups from
 * sentinel_address, or Redis Clusters from cluster_address; as in
 * Centrifugo cluster_address wins over both others, sentinel_address over
 * address),
 * the prefix, presence options, and an error naming each key rotor does
 * not serve yet.
 */
#include "config.h"
#include "engine.h"
#include "redis_link.h"
#include "redis_wire.h"
#include "conf.h"
#include "util.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Keys of the connection block that rotor does not serve yet: set, they
 * stop rotord (where data lives and how it is protected are never
 * guessed). */
static const char *const refused_keys[] = {
	"tls.enabled", "sentinel_tls.enabled",
	"history_use_lists", "presence_hash_field_ttl",
};

static bool key_set(const json_t *v)
{
	if (v == NULL || json_is_null(v) || json_is_false(v))
		return false;
	if (json_is_array(v))
		return json_array_size(v) > 0;
	if (json_is_string(v))
		return json_string_length(v) > 0;
	return true;
}

static uint64_t dur_ms(const struct conf *k, const char *key, uint64_t dflt)
{
	const char *s = json_string_value(conf_get(k, key));
	long long ms;
	if (s == NULL || conf_duration_ms(s, &ms) != RT_OK || ms < 0)
		return dflt;
	return (uint64_t)ms;
}

static const char *str_of(const struct conf *k, const char *key)
{
	const char *s = json_string_value(conf_get(k, key));
	return s ? s : "";
}

int redis_conf_load(const struct conf *k, struct redis_conf *rc, struct conf_report *rep)
{
	char key[128], err[256];
	int bad = 0;

	memset(rc, 0, sizeof(*rc));
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(refused_keys); i++) {
		snprintf(key, sizeof(key), "engine.redis.%s", refused_keys[i]);
		if (key_set(conf_get(k, key))) {
			if (rep)
				conf_report_error(rep, "%s: not supported by rotor yet; refused (engine.type \"redis\" "
						  "serves Redis shards without TLS, and no list-mode history or hash field TTL)", key);
			bad++;
		}
	}
	const char *prefix = str_of(k, "engine.redis.prefix");
	if (*prefix == '\0' || strpbrk(prefix, "{}") || strlen(prefix) >= sizeof(rc->prefix)) {
		if (rep)
			conf_report_error(rep, "engine.redis.prefix: \"%s\" cannot prefix Redis keys (empty, too long, "
					  "or with a brace)", prefix);
		bad++;
	} else {
		strcpy(rc->prefix, prefix);
	}

	struct redis_addr dflt = { 0 };
	dflt.connect_timeout_ms = dur_ms(k, "engine.redis.connect_timeout", 1000);
	dflt.io_timeout_ms = dur_ms(k, "engine.redis.io_timeout", 4000);
	json_int_t db = json_integer_value(conf_get(k, "engine.redis.db"));
	dflt.db = (int)db;
	snprintf(dflt.user, sizeof(dflt.user), "%s", str_of(k, "engine.redis.user"));
	snprintf(dflt.password, sizeof(dflt.password), "%s", str_of(k, "engine.redis.password"));
	snprintf(dflt.client_name, sizeof(dflt.client_name), "%s", str_of(k, "engine.redis.client_name"));
	static const struct {
		const char *key;
		size_t off, size;
	} sen_strs[] = {
		{ "engine.redis.sentinel_master_name", offsetof(struct redis_addr, master_name),
		  sizeof(dflt.master_name) },
		{ "engine.redis.sentinel_user", offsetof(struct redis_addr, sentinel_user), sizeof(dflt.sentinel_user) },
		{ "engine.redis.sentinel_password", offsetof(struct redis_addr, sentinel_password),
		  sizeof(dflt.sentinel_password) },
		{ "engine.redis.sentinel_client_name", offsetof(struct redis_addr, sentinel_client_name),
		  sizeof(dflt.sentinel_client_name) },
	};
	for (size_t j = 0; j < ROTOR_ARRAY_LEN(sen_strs); j++) {
		const char *v = str_of(k, sen_strs[j].key);
		if (strlen(v) >= sen_strs[j].size) {
			if (rep)
				conf_report_error(rep, "%s: longer than %zu bytes", sen_strs[j].key, sen_strs[j].size - 1);
			bad++;
			continue;
		}
		strcpy((char *)&dflt + sen_strs[j].off, v);
	}

	/* cluster_address, when set, wins over the two others, sentinel_address
	 * over address (§7.3) */
	bool cluster = key_set(conf_get(k, "engine.redis.cluster_address"));
	bool sentinel = !cluster && key_set(conf_get(k, "engine.redis.sentinel_address"));
	const char *list = cluster ? "engine.redis.cluster_address" :
			   sentinel ? "engine.redis.sentinel_address" : "engine.redis.address";
	if (cluster)
		dflt.master_name[0] = '\0';
	if (sentinel && dflt.master_name[0] == '\0') {
		if (rep)
			conf_report_error(rep, "engine.redis.sentinel_master_name: required with "
					  "engine.redis.sentinel_address (the name the sentinels monitor the master by)");
		bad++;
	}
	size_t i;
	const json_t *a;
	json_array_foreach(conf_get(k, list), i, a) {
		if (sentinel && dflt.master_name[0] == '\0')
			break;
		const char *s = json_string_value(a);
		if (rc->nshards == REDIS_SHARDS_MAX) {
			if (rep)
				conf_report_error(rep, "%s: more than %d shards", list, REDIS_SHARDS_MAX);
			bad++;
			break;
		}
		int r = -1;
		if (s)
			r = cluster ? redis_addr_parse_cluster(s, &dflt, &rc->shard[rc->nshards], err, sizeof(err))
			    : sentinel ? redis_addr_parse_sentinels(s, &dflt, &rc->shard[rc->nshards], err, sizeof(err))
				       : redis_addr_parse(s, &dflt, &rc->shard[rc->nshards], err, sizeof(err));
		if (r != 0) {
			if (rep)
				conf_report_error(rep, "%s[%zu]: %s", list, i, s ? err : "not a string");
			bad++;
			continue;
		}
		rc->nshards++;
	}
	if (rc->nshards == 0 && bad == 0) {
		if (rep)
			conf_report_error(rep, "%s: no Redis address", list);
		bad++;
	}
	rc->presence_ttl_s = rw_secs(dur_ms(k, "engine.redis.presence_ttl", 60000));
	if (rc->presence_ttl_s == 0)
		rc->presence_ttl_s = 1;
	rc->user_mapping = json_is_true(conf_get(k, "engine.redis.presence_user_mapping"));
	rc->wait_replicas = json_is_true(conf_get(k, "engine.redis.sentinel_wait_replicas"));
	return bad ? RT_INVAL : RT_OK;
}
