/*
 * admin.h - the admin web interface (admin.*): Centrifugo's admin
 * endpoints (settings, init, auth, api) and the static files of a web UI,
 * rotor's own or one admin.web_path names.
 */
#ifndef ROTOR_ADMIN_H
#define ROTOR_ADMIN_H

#include "rotor.h"
#include <stdbool.h>

struct worker;
struct conf;
struct conf_report;

/* Where `make install` puts rotor's own UI; admin.web_path overrides it. */
#ifndef ROTOR_ADMINDIR
#define ROTOR_ADMINDIR "/usr/local/share/rotor/admin"
#endif

/* Registers the admin routes from W's config when admin.enabled: on the
 * internal listener unless admin.external. Once per worker, after
 * api_init (the admin API runs the server API's code). */
void admin_init(struct worker *w);

/* After a reload applied in place: the routes follow admin.enabled,
 * admin.handler_prefix and admin.external; password, secret and insecure
 * are read per request, so a changed secret or password ends every session
 * at once. */
void admin_reconfigure(struct worker *w);

/* Removes the routes (worker exit, tests). */
void admin_free(void);

/* The admin.* keys of a config, read by admin_settings_of. The strings
 * point into the config's document and live as long as it; never NULL. */
struct admin_settings {
	bool enabled, insecure, external;
	const char *handler_prefix, *password, *secret, *web_path;
};

void admin_settings_of(const struct conf *c, struct admin_settings *s);

/* The cross-key rules of the admin.* keys, for conf_check: with
 * admin.enabled and not admin.insecure, admin.password and admin.secret
 * must be set (errors naming the key); admin.insecure with admin.enabled
 * is a loud warning; admin.handler_prefix must be empty or start with '/';
 * admin.web_path must be a directory. */
void admin_conf_check(const struct conf *c, struct conf_report *rep);

#endif
