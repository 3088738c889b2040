/*
 * tlsc.h - TLS for the generator: the client context every connection of
 * a process shares (sock.c), the test certificate of a rotord that
 * rotor-bench starts itself, and a one-off request for its health check
 * (rd.c). A load generator does not verify the server's certificate.
 */
#ifndef TLSC_H
#define TLSC_H

#include <stddef.h>
#include <sys/types.h>

struct ssl_st;

/* Makes the process's client context: TLS 1.2 or later, ALPN http/1.1, no
 * certificate verification, no session resumption (every handshake is a
 * full one), record buffers released while idle. Returns 0, or -1 with a
 * message on stderr. */
int tlsc_setup(void);

/* A client SSL on two memory BIOs (read: what the socket brought, write:
 * what goes to it), in connect state; NULL when out of memory. The caller
 * frees it with SSL_free. Needs tlsc_setup. */
struct ssl_st *tlsc_new(void);

/* Writes a self-signed ECDSA P-256 certificate for 127.0.0.1 and
 * localhost, valid for a day, to cert_path and its key to key_path (mode
 * 0600). Returns 0, or -1 with a message on stderr. */
int tlsc_make_cert(const char *cert_path, const char *key_path);

/* Over the connected blocking socket fd: a TLS handshake (its own
 * context, no verification), the n bytes of req, then one read of the
 * answer into buf (at most cap). Returns the bytes read, or -1. */
ssize_t tlsc_request(int fd, const void *req, size_t n, void *buf, size_t cap);

#endif
