/*
 * tls.h - TLS on the client port: the certificate material and the
 * worker's OpenSSL context. The bytes of a TLS connection go through
 * conn.c (conn_start_tls), which every transport sits on, so all of them
 * work over TLS without knowing it.
 *
 * Who reads what: the master resolves http_server.tls.cert_pem, key_pem
 * and client_ca_pem (PEM text, base64 PEM or a file path, as Centrifugo
 * takes them) and validates them by building a context, at start, for
 * `rotord -t` and on every HUP. At start and on HUP it writes the PEM
 * text itself into the configuration it hands the workers, so a worker
 * never opens a key file: it builds its context from that text, and
 * rebuilds it in place when a reload brings different text (connections
 * already open keep the context they started with; OpenSSL counts its
 * references).
 */
#ifndef ROTOR_TLS_H
#define ROTOR_TLS_H

#include <stdbool.h>
#include <stdint.h>
#include <openssl/ssl.h>

struct conf;
struct conf_report;
struct worker;

/* Checks the TLS keys of C: with http_server.tls.enabled (and likewise
 * http_server.internal_tls.enabled) the certificate and key must load and
 * match (errors name the key; an expired
 * certificate is a warning). With INLINE_PEM, replaces each PEM key's
 * value in C's document by the PEM text it resolved to (for the workers).
 * Returns RT_OK or RT_INVAL. */
int tls_check(struct conf *c, struct conf_report *rep, bool inline_pem);

/* Builds or rebuilds W's contexts from w->conf when their TLS keys differ
 * from those they were built from; on failure keeps the previous one and
 * logs why. The main listener serves http_server.tls; the internal one
 * (when there is one) http_server.internal_tls, or else http_server.tls
 * unless http_server.tls_external. TLS off: no context (tls_new returns
 * NULL). */
void tls_worker_configure(struct worker *w);

/* The context of the main or the INTERNAL listener, NULL when TLS is off
 * there. Borrowed: conn_start_tls takes its own reference. */
SSL_CTX *tls_ctx(bool internal);

#endif
