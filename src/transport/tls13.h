/*
 * tls13.h - TLS 1.3 records without OpenSSL's per-connection state
 * (RFC 8446 §5.2-§5.4, §7.1-§7.3).
 *
 * OpenSSL 3.0 keeps ~14 KB per established connection (7.6 KB of it its
 * struct ssl_st). After a TLS 1.3 handshake with an AEAD suite, conn.c
 * frees it and keeps this instead: the traffic secrets (taken from
 * OpenSSL's key log while the handshake runs), the keys and IVs derived
 * from them, and the record sequence numbers, about 250 bytes. Sealing
 * and opening use one cipher context per process.
 *
 * conn.c sends no session tickets (SSL_CTX_set_num_tickets 0) and reads
 * without read-ahead until the handshake is done, so when OpenSSL returns
 * from it neither side has used the traffic keys yet: both sequence
 * numbers start at 0, and the client's next record is still in the socket.
 */
#ifndef ROTOR_TLS13_H
#define ROTOR_TLS13_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Record layer constants. */
#define TLS13_HEADER 5
#define TLS13_TAG 16
#define TLS13_PLAIN_MAX 16384                 /* content of one record */
#define TLS13_CIPHER_MAX (TLS13_PLAIN_MAX + 256) /* what a peer may send */
/* A sealed record of N content bytes takes N + TLS13_OVERHEAD. */
#define TLS13_OVERHEAD (TLS13_HEADER + 1 + TLS13_TAG)

/* Content types. */
#define TLS13_ALERT 21
#define TLS13_HANDSHAKE 22
#define TLS13_DATA 23

struct tls13;

/* Keeps the secret of a key-log LINE that is one of the connection's
 * traffic secrets (CLIENT_/SERVER_TRAFFIC_SECRET_0), allocating *K at the
 * first; ignores other lines. */
void tls13_keylog(struct tls13 **k, const char *line);

/* Derives the keys when SSL finished a TLS 1.3 handshake with a suite this
 * file seals (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305) and both
 * secrets were logged; false otherwise (OpenSSL then stays). */
bool tls13_start(struct tls13 *k, const SSL *ssl);

/* Seals N (at most TLS13_PLAIN_MAX) bytes of content TYPE into OUT (room
 * for N + TLS13_OVERHEAD); returns the record's length, 0 if the cipher
 * failed. */
size_t tls13_seal(struct tls13 *k, uint8_t type, const void *p, size_t n, uint8_t *out);

/* Whether the write key has sealed so many records that it should be
 * updated (RFC 8446 §5.5: well before AES-GCM's limit). */
bool tls13_update_due(const struct tls13 *k);

/* The length of the whole record starting at P (N bytes there), 0 if its
 * header is not all there yet, -1 if it is not a TLS 1.3 record a peer
 * may send (outer type, version, length). */
long tls13_record_len(const uint8_t *p, size_t n);

/* Opens the whole record REC (LEN bytes) in place: true with its content
 * at *CONTENT (*CLEN bytes) and real type in *TYPE; false if it does not
 * authenticate or has no type (the connection is then over). */
bool tls13_open(struct tls13 *k, uint8_t *rec, size_t len, uint8_t **content, size_t *clen, uint8_t *type);

/* The next traffic secret and keys of the read or the WRITE direction
 * (KeyUpdate, §4.6.3, §7.2). */
void tls13_update(struct tls13 *k, bool write);

/* Wipes and frees K (NULL is ignored). */
void tls13_free(struct tls13 *k);

#endif
