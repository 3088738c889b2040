/*
 * test_conn_tls.c - conn.c's TLS: a server conn with a context from tls.c
 * (built from PEM text made here: an ECDSA P-256 self-signed certificate)
 * and an OpenSSL client on the other end of a socketpair, both driven by
 * the harness's loop.
 *
 *   - the handshake, then an echo;
 *   - many small messages and a large one queued at once, read by a slow
 *     client behind a small socket buffer: every byte in order (sealing in
 *     records, partial sends, EV_WRITE);
 *   - records that arrive together (OpenSSL reads ahead): each delivered;
 *   - conn_shutdown: what was queued, then close_notify;
 *   - a ClientHello one byte at a time, and bytes that are no TLS;
 *   - every TLS 1.3 suite on conn.c's own records (tls13.h) with a
 *     KeyUpdate both ways, TLS 1.2 on OpenSSL's, a tampered record;
 *   - plain HTTP on the TLS conn: Go's 400 in plain text, then EOF;
 *   - a reload with the same certificate keeps the context, a new one
 *     replaces it for new connections only.
 */
#include "config.h"
#include "conf.h"
#include "conn.h"
#include "harness.h"
#include "tls.h"
#include "worker.h"
#include "../tap.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct worker w;
static struct conf k;

/* ---- a certificate ---------------------------------------------------------- */

/* PEM text of a fresh self-signed ECDSA certificate for "localhost" and
 * of its key; caller frees both. */
static void make_cert(char **cert, char **key)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	BIO *b;
	char *p;
	long n;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_sign(x, pk, EVP_sha256());
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &p);
	*cert = strndup(p, (size_t)n);
	BIO_free(b);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(b, &p);
	*key = strndup(p, (size_t)n);
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(pk);
}

/* Turns TLS on in the worker's config with CERT and KEY (PEM text, as the
 * master hands it to workers) and applies it. */
static void configure(const char *cert, const char *key)
{
	struct conf_report rep = { 0 };

	conf_set(&k, "http_server.tls.enabled", "true", &rep);
	conf_set(&k, "http_server.tls.cert_pem", cert, &rep);
	conf_set(&k, "http_server.tls.key_pem", key, &rep);
	is_int(rep.nerrors, 0, "TLS keys set");
	conf_report_free(&rep);
	tls_worker_configure(&w);
}

/* ---- the server layer: echo, and commands ---------------------------------- */

#define SMALL_N 20000
#define SMALL_LEN 100
#define LARGE_LEN (300 * 1024)

static char pattern(size_t i)
{
	return (char)('a' + (i * 7 + i / 251) % 26);
}

static size_t echo_read(struct conn *c, const char *data, size_t len)
{
	if (len >= 4 && memcmp(data, "MANY", 4) == 0) {
		/* Many small messages, then a large one, all queued at once. */
		char msg[SMALL_LEN];
		size_t pos = 0;

		for (int i = 0; i < SMALL_N; i++) {
			for (size_t j = 0; j < SMALL_LEN; j++)
				msg[j] = pattern(pos++);
			conn_queue_copy(c, msg, SMALL_LEN);
		}
		struct rbuf *b = rbuf_new(LARGE_LEN);
		for (size_t j = 0; j < LARGE_LEN; j++)
			b->data[j] = pattern(pos++);
		conn_queue(c, b, 0, LARGE_LEN);
		rbuf_unref(b);
		return len;
	}
	if (len >= 3 && memcmp(data, "BYE", 3) == 0) {
		conn_queue_copy(c, "bye", 3);
		conn_shutdown(c);
		return len;
	}
	conn_queue_copy(c, data, len);
	return len;
}

static const struct conn_ops echo_ops = { .name = "echo", .on_read = echo_read };

/* ---- the client ----------------------------------------------------------- */

static SSL_CTX *cctx;

/* A TLS client on a new server conn (whose handshake it completes, or
 * not: *OK says); returns the SSL, its fd nonblocking. */
static SSL *connect_tls(struct conn **cp, bool *ok_)
{
	int fd = pair(cp, &echo_ops);
	SSL *s = SSL_new(cctx);
	int rc = 0;

	conn_start_tls(*cp, tls_ctx(false));
	SSL_set_fd(s, fd);
	SSL_set_tlsext_host_name(s, "localhost");
	for (int i = 0; i < 200 && (rc = SSL_connect(s)) != 1; i++) {
		int e = SSL_get_error(s, rc);

		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			break;
		spin();
	}
	*ok_ = rc == 1;
	return s;
}

/* Reads up to N bytes into BUF, running the loop while none are there.
 * Returns the bytes, 0 at close_notify, -1 on error or when nothing came. */
static long tls_recv(SSL *s, char *buf, size_t n)
{
	for (int i = 0; i < 200; i++) {
		size_t got = 0;
		int rc = SSL_read_ex(s, buf, n, &got);

		if (rc == 1)
			return (long)got;
		switch (SSL_get_error(s, rc)) {
		case SSL_ERROR_WANT_READ:
			spin();
			continue;
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		default:
			return -1;
		}
	}
	return -1;
}

static void close_client(SSL *s)
{
	close(SSL_get_fd(s));
	SSL_free(s);
	spin();
}

/* ---- tests ------------------------------------------------------------------ */

static void test_echo(void)
{
	struct conn *c;
	bool hs;
	SSL *s = connect_tls(&c, &hs);
	char buf[64];
	long n;

	ok(hs, "handshake");
	ok(SSL_write(s, "hello", 5) == 5, "client writes");
	n = tls_recv(s, buf, sizeof(buf));
	ok(n == 5 && memcmp(buf, "hello", 5) == 0, "echoed through TLS");
	close_client(s);
}

static void test_many_to_a_slow_client(void)
{
	struct conn *c;
	bool hs;
	SSL *s = connect_tls(&c, &hs);
	int small = 4096;
	size_t want = (size_t)SMALL_N * SMALL_LEN + LARGE_LEN, got = 0, bad = SIZE_MAX;
	char buf[3000];

	setsockopt(SSL_get_fd(s), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	ok(hs, "handshake");
	SSL_write(s, "MANY", 4);
	spin();
	ok(conn_write_blocked(c), "the server's output blocks on the small buffer");
	while (got < want) {
		long n = tls_recv(s, buf, sizeof(buf));

		if (n <= 0)
			break;
		for (long i = 0; i < n && bad == SIZE_MAX; i++)
			if (buf[i] != pattern(got + (size_t)i))
				bad = got + (size_t)i;
		got += (size_t)n;
	}
	is_int(got, want, "every byte of the small messages and the large one");
	ok(bad == SIZE_MAX, "in order (first wrong byte at %zu)", bad);
	ok(!conn_write_blocked(c) && c->out_bytes == 0, "the server's queue is drained");
	close_client(s);
}

static void test_records_together(void)
{
	struct conn *c;
	bool hs;
	SSL *s = connect_tls(&c, &hs);
	BIO *mem = BIO_new(BIO_s_mem());
	BIO *sock = SSL_get_wbio(s);
	char buf[256], *p, want[41];
	size_t got = 0;
	long n;

	ok(hs, "handshake");
	/* 40 records of one byte each, in one write on the socket. */
	BIO_up_ref(sock);
	SSL_set0_wbio(s, mem);
	for (int i = 0; i < 40; i++) {
		want[i] = (char)('A' + i % 26);
		SSL_write(s, &want[i], 1);
	}
	want[40] = '\0';
	n = BIO_get_mem_data(mem, &p);
	ok(write(SSL_get_fd(s), p, (size_t)n) == n, "40 records in one write");
	SSL_set0_wbio(s, sock);
	while (got < 40 && (n = tls_recv(s, buf + got, sizeof(buf) - got)) > 0)
		got += (size_t)n;
	is_int(got, 40, "every record delivered, though one read(2) brought them all");
	ok(got == 40 && memcmp(buf, want, 40) == 0, "in order");
	close_client(s);
}

static void test_shutdown(void)
{
	struct conn *c;
	bool hs;
	SSL *s = connect_tls(&c, &hs);
	char buf[16];
	long n;

	ok(hs, "handshake");
	SSL_write(s, "BYE", 3);
	n = tls_recv(s, buf, sizeof(buf));
	ok(n == 3 && memcmp(buf, "bye", 3) == 0, "the last answer");
	is_int(tls_recv(s, buf, sizeof(buf)), 0, "then close_notify");
	close_client(s);
	tick(3000);
}

/* The ClientHello one byte per read: the conn holds what came, no SSL
 * yet, and the handshake then completes. Bytes that are no TLS at all:
 * closed. */
static void test_trickled_hello(void)
{
	struct conn *c;
	int fd = pair(&c, &echo_ops);
	SSL *s = SSL_new(cctx);
	BIO *mem = BIO_new(BIO_s_mem()), *sock = BIO_new_socket(fd, BIO_NOCLOSE);
	char *p, buf[16];
	long n;
	int rc = 0;
	bool eof = false;

	conn_start_tls(c, tls_ctx(false));
	SSL_set_bio(s, sock, mem);
	SSL_set_connect_state(s);
	SSL_do_handshake(s);
	n = BIO_get_mem_data(mem, &p);
	ok(n > 100, "a ClientHello of %ld bytes", n);
	long sent = 0;
	for (long i = 0; i < n; i++) {
		sent += write(fd, p + i, 1) == 1;
		spin();
		if (i == n / 2)
			ok(c->tls != NULL && !conn_closing(c), "half a hello: waiting");
	}
	is_int(sent, n, "sent one byte at a time");
	BIO_up_ref(sock);
	SSL_set0_wbio(s, sock);
	for (int i = 0; i < 200 && (rc = SSL_do_handshake(s)) != 1; i++)
		spin();
	ok(rc == 1, "the handshake completes after a trickled hello");
	SSL_write(s, "hi", 2);
	n = tls_recv(s, buf, sizeof(buf));
	ok(n == 2 && memcmp(buf, "hi", 2) == 0, "and the conn echoes");
	close_client(s);

	fd = pair(&c, &echo_ops);
	conn_start_tls(c, tls_ctx(false));
	send_bytes(fd, "\x01\x02\x03\x04\x05\x06", 6);
	free(recv_avail(fd, &eof, NULL));
	ok(eof, "bytes that are not a TLS record: closed");
	close(fd);
}

/* Each suite and version: TLS 1.3's AEAD suites run on conn.c's own
 * records after the handshake (tls13.h), TLS 1.2 on OpenSSL's; the
 * client's KeyUpdate (asking for ours) is followed on both sides. */
static void test_suites(void)
{
	static const struct {
		const char *suite; /* TLS 1.3 */
		bool tls12;
	} cases[] = {
		{ "TLS_AES_128_GCM_SHA256", false },
		{ "TLS_AES_256_GCM_SHA384", false },
		{ "TLS_CHACHA20_POLY1305_SHA256", false },
		{ NULL, true },
	};

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(cases); i++) {
		const char *name = cases[i].suite ? cases[i].suite : "TLS 1.2";
		struct conn *c;
		bool hs;
		SSL *s;
		char buf[64];
		long n;

		SSL_CTX_set_max_proto_version(cctx, cases[i].tls12 ? TLS1_2_VERSION : 0);
		if (cases[i].suite)
			SSL_CTX_set_ciphersuites(cctx, cases[i].suite);
		s = connect_tls(&c, &hs);
		ok(hs, "%s: handshake", name);
		ok(cases[i].tls12 ? SSL_version(s) == TLS1_2_VERSION
				  : strcmp(SSL_CIPHER_get_name(SSL_get_current_cipher(s)), cases[i].suite) == 0,
		   "%s: negotiated", name);
		for (int round = 0; round < 3; round++) {
			char msg[32];
			int len = snprintf(msg, sizeof(msg), "round %d", round);

			if (round == 1 && !cases[i].tls12)
				ok(SSL_key_update(s, SSL_KEY_UPDATE_REQUESTED) == 1, "%s: KeyUpdate asked", name);
			SSL_write(s, msg, len);
			n = tls_recv(s, buf, sizeof(buf));
			ok(n == len && memcmp(buf, msg, (size_t)len) == 0, "%s: echo %d", name, round);
		}
		if (!cases[i].tls12)
			ok(SSL_get_key_update_type(s) == SSL_KEY_UPDATE_NONE,
			   "%s: the client's KeyUpdate went out (echoes after it: both sides followed)", name);
		size_t open_before = w.nconns;
		SSL_shutdown(s); /* close_notify from the client: an EOF */
		spin();
		is_int(w.nconns, open_before - 1, "%s: closed after the client's close_notify", name);
		close_client(s);
	}
	SSL_CTX_set_max_proto_version(cctx, 0);
	SSL_CTX_set_ciphersuites(cctx, "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256");
}

/* A record changed on the way does not authenticate: the end. */
static void test_tampered(void)
{
	struct conn *c;
	bool hs;
	SSL *s = connect_tls(&c, &hs);
	BIO *mem = BIO_new(BIO_s_mem()), *sock = SSL_get_wbio(s);
	char *p;
	long n;
	bool eof = false;

	ok(hs, "handshake");
	BIO_up_ref(sock);
	SSL_set0_wbio(s, mem);
	SSL_write(s, "secret", 6);
	n = BIO_get_mem_data(mem, &p);
	p[n - 1] ^= 1; /* the tag */
	ok(write(SSL_get_fd(s), p, (size_t)n) == n, "a record with a flipped bit");
	SSL_set0_wbio(s, sock);
	free(recv_avail(SSL_get_fd(s), &eof, NULL));
	ok(eof, "closed");
	close_client(s);
}

static void test_plain_http(void)
{
	struct conn *c;
	int fd = pair(&c, &echo_ops);
	const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	char *resp;
	bool eof = false;

	conn_start_tls(c, tls_ctx(false));
	send_bytes(fd, req, sizeof(req) - 1);
	resp = recv_avail(fd, &eof, NULL);
	ok(strncmp(resp, "HTTP/1.0 400 Bad Request\r\n", 26) == 0, "plain HTTP gets a plain 400");
	ok(strstr(resp, "\r\n\r\nClient sent an HTTP request to an HTTPS server.\n") != NULL, "Go's words");
	ok(eof, "and the end");
	free(resp);
	close(fd);
	tick(3000);
}

static void test_reload(const char *cert, const char *key)
{
	char *cert2, *key2;
	struct conn *c;
	bool hs;
	SSL *s;
	X509 *seen;

	configure(cert, key); /* the same text: nothing rebuilt */
	make_cert(&cert2, &key2);
	configure(cert2, key2);
	s = connect_tls(&c, &hs);
	ok(hs, "handshake after the reload");
	seen = SSL_get1_peer_certificate(s);
	{
		BIO *b = BIO_new_mem_buf(cert2, -1);
		X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

		ok(seen && x && X509_cmp(seen, x) == 0, "new connections get the new certificate");
		X509_free(x);
		BIO_free(b);
	}
	X509_free(seen);
	close_client(s);
	free(cert2);
	free(key2);
}

int main(void)
{
	char *cert, *key;

	harness_worker(&w, &k);
	harness_init(&w, NULL);
	make_cert(&cert, &key);
	configure(cert, key);
	ok(tls_ctx(false) && !tls_ctx(true), "TLS on the main listener only");
	cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);

	test_echo();
	test_many_to_a_slow_client();
	test_records_together();
	test_shutdown();
	test_trickled_hello();
	test_suites();
	test_tampered();
	test_plain_http();
	test_reload(cert, key);

	tick(3000);
	is_int(w.nconns, 0, "no connection left");
	SSL_CTX_free(cctx);
	free(cert);
	free(key);
	conf_free(&k);
	return tap_done();
}
