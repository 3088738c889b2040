/*
 * api.h - Centrifugo's server HTTP API (server-api.md §1): POST
 * <prefix>/<method> with the method's request object, POST <prefix> with
 * the legacy {"method","params","id"} stream, and POST <prefix>/batch.
 * Requests are authorised by http_api.key and executed through node.h.
 */
#ifndef ROTOR_API_H
#define ROTOR_API_H

#include "rotor.h"

#include <stddef.h>

struct worker;
struct http_req;

/* Registers the API routes on W's HTTP server from W's config
 * (http_api.handler_prefix, http_api.disabled) and compiles the channel
 * options the API checks names against. Once per worker, after http_init.
 * A path another handler holds already is logged and left to it. */
void api_init(struct worker *w);

/* Applies W's new config after a reload: the routes move with
 * http_api.handler_prefix and go away with http_api.disabled; namespaces,
 * key and error mode are those of the new config from the next request on;
 * a request waiting for the engine runs its commands still to come with the
 * new namespaces. */
void api_reconfigure(struct worker *w);

/* Runs REQ's body as the legacy command stream ({"method","params","id"}
 * values, replies joined by '\n') and answers it, exactly as POST
 * <prefix> does once the key is checked: for a caller that has authorised
 * REQ itself (the admin API, admin.c). 503 while the worker drains, 400 for
 * an empty or undecodable body. */
void api_serve_legacy(struct http_req *req);

/* The name of server API method I in the order of the stats block's
 * api counters (stats.h); "unknown" past the last. */
const char *api_method_name(size_t i);

/* Removes the API's routes and frees what it holds (worker exit, tests). */
void api_free(void);

#endif
