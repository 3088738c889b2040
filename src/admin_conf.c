/*
 * admin_conf.c - the cross-key rules of the admin.* keys (admin.h), apart
 * from the admin server itself so that everything that links conf.c (the
 * daemon, rotorctl, the fuzz targets) can check a config without the
 * server API behind the admin interface. Reads C's effective document only.
 */
#include "config.h"
#include "admin.h"
#include "conf.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static const char *str(const struct conf *c, const char *key)
{
	const char *v = json_string_value(conf_get(c, key));
	return v ? v : "";
}

void admin_settings_of(const struct conf *c, struct admin_settings *s)
{
	s->enabled = json_is_true(conf_get(c, "admin.enabled"));
	s->insecure = json_is_true(conf_get(c, "admin.insecure"));
	s->external = json_is_true(conf_get(c, "admin.external"));
	s->handler_prefix = str(c, "admin.handler_prefix");
	s->password = str(c, "admin.password");
	s->secret = str(c, "admin.secret");
	s->web_path = str(c, "admin.web_path");
}

void admin_conf_check(const struct conf *c, struct conf_report *rep)
{
	struct admin_settings a;
	struct stat st;

	admin_settings_of(c, &a);

	if (*a.handler_prefix && *a.handler_prefix != '/')
		conf_report_error(rep, "admin.handler_prefix: must be empty or start with '/', got \"%s\"", a.handler_prefix);
	if (!a.enabled)
		return;
	if (a.insecure) {
		conf_report_warn(rep, "admin.insecure: the admin interface and its server API are open to "
				 "anyone who reaches them, without a password; never in production");
	} else {
		if (!*a.password)
			conf_report_error(rep, "admin.password: must be set when admin.enabled is true "
					  "(or set admin.insecure for development)");
		if (!*a.secret)
			conf_report_error(rep, "admin.secret: must be set when admin.enabled is true "
					  "(it signs admin sessions; or set admin.insecure for development)");
	}
	if (*a.web_path) {
		if (stat(a.web_path, &st) != 0)
			conf_report_error(rep, "admin.web_path: %s: %s", a.web_path, strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			conf_report_error(rep, "admin.web_path: %s: not a directory", a.web_path);
	} else if (stat(ROTOR_ADMINDIR, &st) != 0 || !S_ISDIR(st.st_mode)) {
		conf_report_warn(rep, "admin.web_path: not set, and rotor's web UI is not installed in %s: "
				 "only the admin endpoints are served", ROTOR_ADMINDIR);
	}
}
