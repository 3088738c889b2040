/*
 * metrics.h - the Prometheus endpoint (metrics.c).
 */
#ifndef ROTOR_METRICS_H
#define ROTOR_METRICS_H

#include <stdbool.h>

struct jw;
struct worker;

/* Adds, moves or removes the metrics route after W's config
 * (prometheus.enabled, prometheus.handler_prefix): an internal route, so on
 * the internal port when there is one. At worker start and after a reload,
 * after http_init. A path another handler holds is logged and left to it. */
void metrics_reconfigure(struct worker *w);

/* Appends S to OUT escaped as the text format wants it: in a HELP line
 * (LABEL false) backslash and newline as \\ and \n; in a label value (LABEL
 * true) the double quote as \" too. */
void metrics_escape(struct jw *out, const char *s, bool label);

#endif
