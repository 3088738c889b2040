/*
 * tlsc.c - the generator's TLS pieces (tlsc.h). The bytes of each
 * connection go through sock.c, which feeds what the socket read into an
 * SSL's read BIO and sends what SSL_write left in its write BIO; nothing
 * here touches a socket except tlsc_request, which runs before any loop.
 */
#include "tlsc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

static SSL_CTX *C_ctx;

/* "rotor-bench: what", then OpenSSL's queue of errors, which it empties. */
static void ssl_fail(const char *what, const char *arg)
{
	fprintf(stderr, "rotor-bench: %s%s\n", what, arg ? arg : "");
	ERR_print_errors_fp(stderr);
}

/* A client context as tlsc_setup describes it, or NULL. */
static SSL_CTX *ctx_new(void)
{
	static const unsigned char alpn[] = "\x08http/1.1";
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) != 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int tlsc_setup(void)
{
	if (C_ctx)
		return 0;
	C_ctx = ctx_new();
	if (C_ctx == NULL) {
		ssl_fail("cannot make a TLS client context", NULL);
		return -1;
	}
	return 0;
}

SSL *tlsc_new(void)
{
	SSL *ssl = SSL_new(C_ctx);
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	if (ssl == NULL || rb == NULL || wb == NULL) {
		SSL_free(ssl);
		BIO_free(rb);
		BIO_free(wb);
		return NULL;
	}
	/* An empty read BIO means "not yet", not end of file. */
	BIO_set_mem_eof_return(rb, -1);
	SSL_set_bio(ssl, rb, wb);
	SSL_set_connect_state(ssl);
	return ssl;
}

/* Writes what to path as PEM through emit; 0 or -1 (reported). */
static int write_pem(const char *path, mode_t mode, int (*emit)(FILE *, void *), void *what)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (f == NULL) {
		fprintf(stderr, "rotor-bench: open(%s) failed: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	int ok = emit(f, what);
	if (fclose(f) != 0 || !ok) {
		ssl_fail("cannot write ", path);
		return -1;
	}
	return 0;
}

static int pem_cert(FILE *f, void *x)
{
	return PEM_write_X509(f, x);
}

static int pem_key(FILE *f, void *k)
{
	return PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
}

int tlsc_make_cert(const char *cert_path, const char *key_path)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509_EXTENSION *san = NULL;
	X509V3_CTX v3;
	int rc = -1;
	if (k == NULL || x == NULL || name == NULL)
		goto out;
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
	if (san == NULL || !X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 86400) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"rotor-bench",
					-1, -1, 0) ||
	    !X509_set_subject_name(x, name) || !X509_set_issuer_name(x, name) ||
	    !X509_add_ext(x, san, -1) || !X509_set_pubkey(x, k) || !X509_sign(x, k, EVP_sha256()))
		goto out;
	rc = write_pem(cert_path, 0644, pem_cert, x) == 0 && write_pem(key_path, 0600, pem_key, k) == 0 ? 0 : -2;
out:
	if (rc == -1)
		ssl_fail("cannot make a test certificate", NULL);
	X509_EXTENSION_free(san);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(k);
	return rc == 0 ? 0 : -1;
}

ssize_t tlsc_request(int fd, const void *req, size_t n, void *buf, size_t cap)
{
	SSL_CTX *ctx = ctx_new();
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	size_t got = 0;
	ssize_t rc = -1;
	if (ssl && SSL_set_fd(ssl, fd) == 1 && SSL_connect(ssl) == 1 &&
	    SSL_write_ex(ssl, req, n, &got) == 1 && SSL_read_ex(ssl, buf, cap, &got) == 1)
		rc = (ssize_t)got;
	ERR_clear_error();
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return rc;
}
