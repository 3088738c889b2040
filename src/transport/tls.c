/*
 * tls.c - the certificate material and the worker's OpenSSL context
 * (tls.h). The bytes of each connection are conn.c's.
 *
 * The context: TLS 1.2 at least; ALPN "http/1.1" (a client that offers
 * only other protocols goes on without ALPN); client-initiated
 * renegotiation refused; an EOF without close_notify is an ordinary EOF
 * (browsers do that); no server-side session cache (it holds memory per
 * client). TLS 1.3 connections leave OpenSSL after the handshake (conn.c
 * takes their traffic secrets through the key log, tls13.h), so no TLS
 * 1.3 tickets are issued and there is no read-ahead while OpenSSL does the
 * handshake; TLS 1.2 connections stay with OpenSSL, with read-ahead from
 * then on (conn.c), SSL_MODE_RELEASE_BUFFERS (an idle connection holds no
 * record buffers) and stateless tickets whose keys every worker derives
 * from the node's secret, so a client resumes on whichever worker its
 * next connection lands.
 *
 * With http_server.tls.client_ca_pem set, every client must present a
 * certificate that CA signed (mutual TLS, Go's RequireAndVerifyClientCert,
 * as Centrifugo sets it).
 */
#include "config.h"
#include "tls.h"
#include "b64.h"
#include "conf.h"
#include "conn.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define PEM_FILE_MAX (1 << 20) /* a certificate chain is a few KB */

/* The TLS objects of the listeners: the main one, and the internal one's
 * own (used only when there is an internal listener). */
static const char *const tls_keys[] = { "http_server.tls", "http_server.internal_tls" };

/* The worker's contexts, by listener (the internal listener's may be the
 * main one's, referenced twice), and the PEM text each was built from. */
static struct {
	SSL_CTX *ctx[2];
	char *built_from[2]; /* cert, key and CA text joined, NULL when off */
} T;

/* The last OpenSSL error as text, clearing the queue. */
static const char *ssl_error(void)
{
	static char buf[256];
	unsigned long e, last = 0;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last == 0)
		return "no detail from OpenSSL";
	ERR_error_string_n(last, buf, sizeof(buf));
	return buf;
}

/* ---- PEM values ----------------------------------------------------------- */

/* Reads the file PATH (at most PEM_FILE_MAX bytes) into a string. */
static char *read_file(const char *path, const char *key, struct conf_report *rep)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		conf_report_error(rep, "%s: cannot open \"%s\": %s (the value is PEM text, base64 PEM or a file path)",
				  key, path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > PEM_FILE_MAX) {
		conf_report_error(rep, "%s: \"%s\" is not a regular file of at most %d bytes", key, path,
				  PEM_FILE_MAX);
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n < 0) {
		conf_report_error(rep, "%s: cannot read \"%s\": %s", key, path, strerror(errno));
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* The PEM text that the value of KEY stands for: the value itself when it
 * holds PEM, its decoding when it is base64 of PEM, else the contents of
 * the file it names (Centrifugo's PEMData). NULL when the key is empty or
 * cannot be read (reported). */
static char *pem_text(const struct conf *c, const char *key, struct conf_report *rep)
{
	const char *v = json_string_value(conf_get(c, key));
	size_t n, len;
	char *dec;

	if (v == NULL || *v == '\0')
		return NULL;
	if (strstr(v, "-----BEGIN ") != NULL)
		return xstrdup(v);
	n = strlen(v);
	dec = xmalloc(b64_decoded_max(n) + 1);
	if (b64_decode(dec, &len, v, n, B64_STD) == RT_OK) {
		dec[len] = '\0';
		if (memchr(dec, '\0', len) == NULL && strstr(dec, "-----BEGIN ") != NULL)
			return dec;
	}
	free(dec);
	return read_file(v, key, rep);
}

/* ---- contexts ------------------------------------------------------------ */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned inlen, void *arg)
{
	static const unsigned char ours[] = "\x08http/1.1";
	unsigned char *sel;

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* Never asks for a passphrase: an encrypted key fails to load instead of
 * blocking the daemon on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Certificate chain (leaf first) from CERT into CTX. */
static int use_chain(SSL_CTX *ctx, const char *p, const char *cert, struct conf_report *rep)
{
	BIO *b = BIO_new_mem_buf(cert, -1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, no_passphrase, NULL) : NULL;
	int rc = RT_INVAL;

	if (x == NULL) {
		conf_report_error(rep, "%s.cert_pem: no PEM certificate in it (%s)", p, ssl_error());
		goto out;
	}
	if (SSL_CTX_use_certificate(ctx, x) != 1) {
		conf_report_error(rep, "%s.cert_pem: certificate refused (%s)", p, ssl_error());
		goto out;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		conf_report_warn(rep, "%s.cert_pem: the certificate has expired; clients will refuse it", p);
	for (;;) {
		X509 *ca = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);

		if (ca == NULL)
			break;
		if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
			X509_free(ca);
			conf_report_error(rep, "%s.cert_pem: chain certificate refused (%s)", p, ssl_error());
			goto out;
		}
	}
	ERR_clear_error(); /* the end of the chain */
	rc = RT_OK;
out:
	X509_free(x);
	BIO_free(b);
	return rc;
}

static int use_key(SSL_CTX *ctx, const char *p, const char *key, struct conf_report *rep)
{
	BIO *b = BIO_new_mem_buf(key, -1);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
	int rc = RT_INVAL;

	if (k == NULL)
		conf_report_error(rep, "%s.key_pem: no unencrypted PEM private key in it (%s)", p, ssl_error());
	else if (SSL_CTX_use_PrivateKey(ctx, k) != 1)
		conf_report_error(rep, "%s.key_pem: private key refused (%s)", p, ssl_error());
	else if (SSL_CTX_check_private_key(ctx) != 1)
		conf_report_error(rep, "%s.key_pem: does not match the certificate of %s.cert_pem", p, p);
	else
		rc = RT_OK;
	ERR_clear_error();
	EVP_PKEY_free(k);
	BIO_free(b);
	return rc;
}

/* Mutual TLS: clients must present a certificate signed by a CA in CA. */
static int use_client_ca(SSL_CTX *ctx, const char *p, const char *ca, struct conf_report *rep)
{
	BIO *b = BIO_new_mem_buf(ca, -1);
	X509_STORE *st = SSL_CTX_get_cert_store(ctx);
	STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
	X509 *x;
	int n = 0;

	while (b && names && (x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)) != NULL) {
		X509_STORE_add_cert(st, x);
		sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(x)));
		X509_free(x);
		n++;
	}
	ERR_clear_error();
	BIO_free(b);
	if (n == 0) {
		conf_report_error(rep, "%s.client_ca_pem: no PEM certificate in it", p);
		sk_X509_NAME_pop_free(names, X509_NAME_free);
		return RT_INVAL;
	}
	SSL_CTX_set_client_CA_list(ctx, names);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return RT_OK;
}

/* Ticket keys (a 16-byte name, 32-byte HMAC and AES keys) derived from
 * the node's secret, the same in every worker of this run. */
static void set_ticket_keys(SSL_CTX *ctx, const uint64_t secret[2])
{
	static const char label[] = "rotor tls ticket keys";
	unsigned char in[16 + sizeof(label)], md[3][32], keys[80];

	memcpy(in, secret, 16);
	memcpy(in + 16, label, sizeof(label));
	for (int i = 0; i < 3; i++) {
		in[16 + sizeof(label) - 1] = (unsigned char)i;
		EVP_Digest(in, sizeof(in), md[i], NULL, EVP_sha256(), NULL);
	}
	memcpy(keys, md, sizeof(keys));
	if (SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof(keys)) != 1)
		log_warn("tls: ticket keys refused (%s); resumption works per worker only", ssl_error());
	OPENSSL_cleanse(keys, sizeof(keys));
	OPENSSL_cleanse(md, sizeof(md));
}

/* A server context from the PEM texts of TLS object P; NULL with errors in
 * REP. SECRET (NULL in the master) sets the ticket keys. */
static SSL_CTX *ctx_build(const char *p, const char *cert, const char *key, const char *ca,
			  const uint64_t *secret, struct conf_report *rep)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		conf_report_error(rep, "%s: cannot create a TLS context (%s)", p, ssl_error());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
				 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* No TLS 1.3 tickets and no read-ahead during the handshake: then
	 * OpenSSL's state can be dropped when it is done (conn.c, tls13.h). */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_keylog_callback(ctx, conn_tls_keylog);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
	if (secret)
		set_ticket_keys(ctx, secret);
	if (use_chain(ctx, p, cert, rep) != RT_OK || use_key(ctx, p, key, rep) != RT_OK ||
	    (ca && use_client_ca(ctx, p, ca, rep) != RT_OK)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* ---- master ---------------------------------------------------------------- */

/* Keys of a TLS object that only a TLS client uses: a server has no use
 * for them (neither has Centrifugo's). */
static void warn_client_only(const struct conf *c, const char *p, struct conf_report *rep)
{
	static const char *const keys[] = { "server_ca_pem", "insecure_skip_verify" };

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(keys); i++) {
		char *k = xasprintf("%s.%s", p, keys[i]);
		const json_t *v = conf_get(c, k);

		if (json_is_true(v) || (json_is_string(v) && *json_string_value(v)))
			conf_report_warn(rep, "%s: only TLS clients use it; the server has no use for it", k);
		free(k);
	}
}

/* The certificate should cover P.server_name when it is set. */
static void check_server_name(SSL_CTX *ctx, const struct conf *c, const char *p, struct conf_report *rep)
{
	char *k = xasprintf("%s.server_name", p);
	const char *name = json_string_value(conf_get(c, k));
	X509 *x = SSL_CTX_get0_certificate(ctx);

	if (name && *name && x && X509_check_host(x, name, 0, 0, NULL) != 1)
		conf_report_warn(rep, "%s: the certificate of %s.cert_pem is not valid for \"%s\"", k, p, name);
	free(k);
}

/* Checks TLS object P of C (see tls_check). */
static int check_object(struct conf *c, const char *p, struct conf_report *rep, bool inline_pem)
{
	static const char *const names[] = { "cert_pem", "key_pem", "client_ca_pem" };
	char *key[3], *pem[3] = { NULL, NULL, NULL };
	int rc = RT_INVAL;
	SSL_CTX *ctx;

	for (int i = 0; i < 3; i++)
		key[i] = xasprintf("%s.%s", p, names[i]);
	warn_client_only(c, p, rep);
	for (int i = 0; i < 3; i++) {
		const char *v = json_string_value(conf_get(c, key[i]));

		if (i < 2 && (v == NULL || *v == '\0')) {
			conf_report_error(rep, "%s: must be set when %s.enabled is true", key[i], p);
			goto out;
		}
		pem[i] = pem_text(c, key[i], rep);
		if (pem[i] == NULL && v && *v)
			goto out;
	}
	ctx = ctx_build(p, pem[0], pem[1], pem[2], NULL, rep);
	if (ctx == NULL)
		goto out;
	check_server_name(ctx, c, p, rep);
	SSL_CTX_free(ctx);
	for (int i = 0; inline_pem && i < 3; i++)
		if (pem[i] && conf_set(c, key[i], pem[i], rep) != RT_OK)
			goto out;
	rc = RT_OK;
out:
	for (int i = 0; i < 3; i++) {
		if (pem[i])
			OPENSSL_cleanse(pem[i], strlen(pem[i]));
		free(pem[i]);
		free(key[i]);
	}
	return rc;
}

/* Whether TLS object P of C is enabled. */
static bool enabled(const struct conf *c, const char *p)
{
	char *k = xasprintf("%s.enabled", p);
	bool on = json_is_true(conf_get(c, k));

	free(k);
	return on;
}

int tls_check(struct conf *c, struct conf_report *rep, bool inline_pem)
{
	const char *addr;
	long long port;
	int rc = RT_OK;

	for (int l = 0; l < 2; l++)
		if (enabled(c, tls_keys[l]) && check_object(c, tls_keys[l], rep, inline_pem) != RT_OK)
			rc = RT_INVAL;
	if (enabled(c, tls_keys[1]) && !conf_internal_listener(c, &addr, &port))
		conf_report_warn(rep, "%s.enabled: there is no internal listener (http_server.internal_port) "
				 "for it; the internal endpoints are on the main port", tls_keys[1]);
	return rc;
}

/* ---- worker --------------------------------------------------------------- */

/* Rebuilds listener L's context from TLS object P of W's config when its
 * text changed (P NULL: none); on failure keeps the previous one. */
static void configure(struct worker *w, int l, const char *p)
{
	const struct conf *c = w->conf;
	struct conf_report rep = {0};
	char *from = NULL, *k[3];
	SSL_CTX *ctx = NULL;

	if (p) {
		k[0] = xasprintf("%s.cert_pem", p);
		k[1] = xasprintf("%s.key_pem", p);
		k[2] = xasprintf("%s.client_ca_pem", p);
		const char *cert = json_string_value(conf_get(c, k[0]));
		const char *key = json_string_value(conf_get(c, k[1]));
		const char *ca = json_string_value(conf_get(c, k[2]));

		from = xasprintf("%s\n%s\n%s\n%s", p, cert, key, ca);
		if (!T.built_from[l] || strcmp(from, T.built_from[l]) != 0) {
			/* The master resolved the values into PEM text: nothing
			 * here reads a file (pem_text is the master's). */
			ctx = ctx_build(p, cert, key, *ca ? ca : NULL, w->secret, &rep);
			for (size_t i = 0; i < rep.nerrors; i++)
				log_error("tls: %s; keeping the previous certificate", rep.errors[i]);
			conf_report_free(&rep);
		}
		for (int i = 0; i < 3; i++)
			free(k[i]);
		if (!ctx) {
			OPENSSL_cleanse(from, strlen(from));
			free(from);
			return; /* unchanged, or failed */
		}
	} else if (!T.built_from[l]) {
		return; /* off, and was */
	}
	SSL_CTX_free(T.ctx[l]); /* open connections hold their own reference */
	T.ctx[l] = ctx;
	if (T.built_from[l]) {
		OPENSSL_cleanse(T.built_from[l], strlen(T.built_from[l]));
		free(T.built_from[l]);
	}
	T.built_from[l] = from;
	log_info("tls: %s%s", l ? "internal listener: " : "", ctx ? "serving TLS with the configured certificate" : "off");
}

void tls_worker_configure(struct worker *w)
{
	const struct conf *c = w->conf;
	bool main_on = enabled(c, tls_keys[0]);
	const char *internal = NULL;

	configure(w, 0, main_on ? tls_keys[0] : NULL);
	/* The internal listener: its own TLS object, else the main one's
	 * unless tls_external keeps TLS to the external port. */
	if (w->split) {
		if (enabled(c, tls_keys[1]))
			internal = tls_keys[1];
		else if (main_on && !json_is_true(conf_get(c, "http_server.tls_external")))
			internal = tls_keys[0];
	}
	configure(w, 1, internal);
}

SSL_CTX *tls_ctx(bool internal)
{
	return T.ctx[internal];
}
