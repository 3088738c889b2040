/*
 * metrics.h - the Prometheus endpoint (metrics.c).
 */
#ifndef ROTOR_METRICS_H
#define ROTOR_METRICS_H

struct worker;

/* Adds, moves or removes the metrics route after W's config
 * (prometheus.enabled, prometheus.handler_prefix): an internal route, so on
 * the internal port when there is one. At worker start and after a reload,
 * after http_init. A path another handler holds is logged and left to it. */
void metrics_reconfigure(struct worker *w);

#endif
