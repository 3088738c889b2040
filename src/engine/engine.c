/*
 * engine.c - which members serve a node, after Centrifugo v6's rules: the
 * broker (PUB/SUB, history streams, idempotency results, join/leave and
 * the control channel) comes from the broker section when broker.enabled,
 * presence from the presence_manager section when presence_manager.enabled,
 * and whichever of the two is not enabled from the engine section (with
 * both enabled the engine section is not read at all). Each side is
 * "memory" (this node's shared memory, memory.c) or "redis" (redis.c, with
 * the connection block under its own prefix); nats and the others are
 * refused, naming the key.
 *
 * rotord -t, the master (whether to run a broker process), the broker and
 * every worker resolve the same config the same way, here (engine_of, in
 * memory.c beside the member every process has, turns the plan into the
 * table a worker runs; this file links nothing but the config's readers).
 */
#include "config.h"
#include "engine.h"
#include "conf.h"
#include "util.h"

#include <stdbool.h>
#include <string.h>

/* Whether TYPE (the value of KEY) is one rotor serves; else an error
 * naming KEY into REP. */
static bool type_served(const char *key, const char *type, bool *redis, struct conf_report *rep)
{
	if (type != NULL && (strcmp(type, "memory") == 0 || strcmp(type, "redis") == 0)) {
		*redis = strcmp(type, "redis") == 0;
		return true;
	}
	if (rep)
		conf_report_error(rep, "%s: \"%s\" is not supported by rotor; refused (TLS, engines and proxies "
				  "are never ignored); use \"memory\" or \"redis\"", key, type ? type : "");
	return false;
}

int engine_plan(const struct conf *k, struct engine_plan *p, struct conf_report *rep)
{
	bool broker_on = json_is_true(conf_get(k, "broker.enabled"));
	bool presence_on = json_is_true(conf_get(k, "presence_manager.enabled"));
	bool in_redis = false, ok = true;

	memset(p, 0, sizeof(*p));
	if (!broker_on || !presence_on)
		ok &= type_served("engine.type", json_string_value(conf_get(k, "engine.type")), &in_redis, rep);
	if (broker_on) {
		ok &= type_served("broker.type", json_string_value(conf_get(k, "broker.type")), &p->broker_redis, rep);
		p->broker_section = "broker.redis";
	} else {
		p->broker_redis = in_redis;
		p->broker_section = "engine.redis";
	}
	if (presence_on) {
		ok &= type_served("presence_manager.type", json_string_value(conf_get(k, "presence_manager.type")),
				  &p->presence_redis, rep);
		p->presence_section = "presence_manager.redis";
	} else {
		p->presence_redis = in_redis;
		p->presence_section = "engine.redis";
	}
	if (!p->broker_redis)
		p->broker_section = NULL;
	if (!p->presence_redis)
		p->presence_section = NULL;
	return ok ? RT_OK : RT_INVAL;
}

int engine_check(const struct conf *k, struct conf_report *rep)
{
	struct engine_plan p;
	struct redis_conf rc;
	int rc_b = RT_OK, rc_p = RT_OK;

	if (engine_plan(k, &p, rep) != RT_OK)
		return RT_INVAL;
	if (p.broker_redis)
		rc_b = redis_conf_load(k, p.broker_section, &rc, rep);
	if (p.presence_redis && !engine_plan_shared(&p))
		rc_p = redis_conf_load(k, p.presence_section, &rc, rep);
	return rc_b == RT_OK && rc_p == RT_OK ? RT_OK : RT_INVAL;
}

bool engine_plan_shared(const struct engine_plan *p)
{
	return p->broker_redis && p->presence_redis && strcmp(p->broker_section, p->presence_section) == 0;
}
