/*
 * tls13.c - TLS 1.3 record protection for established connections
 * (tls13.h).
 *
 * Per RFC 8446: keys and IVs come from a traffic secret by
 * HKDF-Expand-Label(secret, "key" | "iv", "", length) (§7.1, §7.3); the
 * nonce of a record is the IV XOR its 64-bit sequence number, big-endian,
 * right-aligned (§5.3); the additional data is the record header (§5.2);
 * the content is followed by its real type and any zero padding; a
 * KeyUpdate replaces the secret by HKDF-Expand-Label(secret, "traffic
 * upd", "", Hash.length) (§7.2).
 */
#include "config.h"
#include "tls13.h"
#include "log.h"
#include "utf8.h"
#include "util.h"

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_MAX 48 /* SHA-384 */
#define KEY_MAX 32
#define IV_LEN 12
/* Records per write key before an update; AES-GCM is safe to 2^24.5
 * (RFC 8446 §5.5). */
#define UPDATE_AFTER (UINT64_C(1) << 24)

struct dir {
	uint8_t secret[SECRET_MAX], key[KEY_MAX], iv[IV_LEN];
	uint64_t seq;
	bool have;
};

struct tls13 {
	const EVP_CIPHER *cipher;
	const EVP_MD *md;
	size_t keylen, hlen;
	struct dir r, w; /* we are the server: read = client's, write = server's */
};

static EVP_CIPHER_CTX *aead; /* one per process */

void tls13_keylog(struct tls13 **k, const char *line)
{
	static const char client[] = "CLIENT_TRAFFIC_SECRET_0 ", server[] = "SERVER_TRAFFIC_SECRET_0 ";
	bool is_client = strncmp(line, client, sizeof(client) - 1) == 0;
	const char *hex;
	struct dir *d;
	size_t n = 0;

	if (!is_client && strncmp(line, server, sizeof(server) - 1) != 0)
		return;
	hex = strchr(line + sizeof(client) - 1, ' '); /* after the client random */
	if (!hex)
		return;
	if (!*k)
		*k = xcalloc(1, sizeof(**k));
	d = is_client ? &(*k)->r : &(*k)->w;
	for (hex++; hex[0] && hex[1] && n < SECRET_MAX; hex += 2) {
		int hi = utf8_hexval((unsigned char)hex[0]), lo = utf8_hexval((unsigned char)hex[1]);

		if (hi < 0 || lo < 0)
			return;
		d->secret[n++] = (uint8_t)(hi << 4 | lo);
	}
	d->have = n > 0;
	(*k)->hlen = n;
}

/* HKDF-Expand-Label(SECRET, LABEL, "", OUTLEN) with K's hash. */
static bool expand_label(const struct tls13 *k, const uint8_t *secret, const char *label, uint8_t *out,
			 size_t outlen)
{
	uint8_t info[2 + 1 + 255 + 1];
	size_t ll = strlen(label), n = 0;
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
	bool ok;

	info[n++] = (uint8_t)(outlen >> 8);
	info[n++] = (uint8_t)outlen;
	info[n++] = (uint8_t)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	memcpy(info + n + 6, label, ll);
	n += 6 + ll;
	info[n++] = 0; /* empty context */
	ok = pc && EVP_PKEY_derive_init(pc) > 0 &&
	     EVP_PKEY_CTX_set_hkdf_mode(pc, EVP_PKEY_HKDEF_MODE_EXPAND_ONLY) > 0 &&
	     EVP_PKEY_CTX_set_hkdf_md(pc, k->md) > 0 &&
	     EVP_PKEY_CTX_set1_hkdf_key(pc, secret, (int)k->hlen) > 0 &&
	     EVP_PKEY_CTX_add1_hkdf_info(pc, info, (int)n) > 0 && EVP_PKEY_derive(pc, out, &outlen) > 0;
	EVP_PKEY_CTX_free(pc);
	return ok;
}

static bool dir_keys(const struct tls13 *k, struct dir *d)
{
	d->seq = 0;
	return expand_label(k, d->secret, "key", d->key, k->keylen) && expand_label(k, d->secret, "iv", d->iv, IV_LEN);
}

bool tls13_start(struct tls13 *k, const SSL *ssl)
{
	const SSL_CIPHER *cs = SSL_get_current_cipher(ssl);

	if (!k || !k->r.have || !k->w.have || SSL_version(ssl) != TLS1_3_VERSION || !cs)
		return false;
	switch (SSL_CIPHER_get_id(cs)) {
	case TLS1_3_CK_AES_128_GCM_SHA256:
		k->cipher = EVP_aes_128_gcm(), k->md = EVP_sha256(), k->keylen = 16;
		break;
	case TLS1_3_CK_AES_256_GCM_SHA384:
		k->cipher = EVP_aes_256_gcm(), k->md = EVP_sha384(), k->keylen = 32;
		break;
	case TLS1_3_CK_CHACHA20_POLY1305_SHA256:
		k->cipher = EVP_chacha20_poly1305(), k->md = EVP_sha256(), k->keylen = 32;
		break;
	default:
		return false;
	}
	if ((size_t)EVP_MD_get_size(k->md) != k->hlen)
		return false;
	if (!aead && (aead = EVP_CIPHER_CTX_new()) == NULL)
		return false;
	return dir_keys(k, &k->r) && dir_keys(k, &k->w);
}

static void nonce(const struct dir *d, uint8_t out[IV_LEN])
{
	memcpy(out, d->iv, IV_LEN);
	for (int i = 0; i < 8; i++)
		out[IV_LEN - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

size_t tls13_seal(struct tls13 *k, uint8_t type, const void *p, size_t n, uint8_t *out)
{
	size_t len = n + 1 + TLS13_TAG;
	uint8_t iv[IV_LEN];
	int a, b, c;

	out[0] = TLS13_DATA;
	out[1] = 3;
	out[2] = 3;
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
	nonce(&k->w, iv);
	if (EVP_EncryptInit_ex(aead, k->cipher, NULL, k->w.key, iv) != 1 ||
	    EVP_EncryptUpdate(aead, NULL, &a, out, TLS13_HEADER) != 1 ||
	    EVP_EncryptUpdate(aead, out + TLS13_HEADER, &a, p, (int)n) != 1 ||
	    EVP_EncryptUpdate(aead, out + TLS13_HEADER + a, &b, &type, 1) != 1 ||
	    EVP_EncryptFinal_ex(aead, out + TLS13_HEADER + a + b, &c) != 1 ||
	    (size_t)(a + b + c) != n + 1 ||
	    EVP_CIPHER_CTX_ctrl(aead, EVP_CTRL_AEAD_GET_TAG, TLS13_TAG, out + TLS13_HEADER + n + 1) != 1)
		return 0;
	k->w.seq++;
	return TLS13_HEADER + len;
}

bool tls13_update_due(const struct tls13 *k)
{
	return k->w.seq >= UPDATE_AFTER;
}

long tls13_record_len(const uint8_t *p, size_t n)
{
	size_t len;

	if (n < TLS13_HEADER)
		return 0;
	len = (size_t)p[3] << 8 | p[4];
	if (p[0] != TLS13_DATA || p[1] != 3 || p[2] != 3 || len < 1 + TLS13_TAG || len > TLS13_CIPHER_MAX)
		return -1;
	return (long)(TLS13_HEADER + len);
}

bool tls13_open(struct tls13 *k, uint8_t *rec, size_t len, uint8_t **content, size_t *clen, uint8_t *type)
{
	size_t n = len - TLS13_HEADER - TLS13_TAG;
	uint8_t iv[IV_LEN], *body = rec + TLS13_HEADER;
	int a, b;

	nonce(&k->r, iv);
	if (EVP_DecryptInit_ex(aead, k->cipher, NULL, k->r.key, iv) != 1 ||
	    EVP_CIPHER_CTX_ctrl(aead, EVP_CTRL_AEAD_SET_TAG, TLS13_TAG, body + n) != 1 ||
	    EVP_DecryptUpdate(aead, NULL, &a, rec, TLS13_HEADER) != 1 ||
	    EVP_DecryptUpdate(aead, body, &a, body, (int)n) != 1 || EVP_DecryptFinal_ex(aead, body + a, &b) != 1)
		return false;
	k->r.seq++;
	while (n > 0 && body[n - 1] == 0) /* padding */
		n--;
	if (n == 0 || n - 1 > TLS13_PLAIN_MAX)
		return false;
	*type = body[n - 1];
	*content = body;
	*clen = n - 1;
	return true;
}

void tls13_update(struct tls13 *k, bool write)
{
	struct dir *d = write ? &k->w : &k->r;
	uint8_t next[SECRET_MAX];

	if (!expand_label(k, d->secret, "traffic upd", next, k->hlen) ||
	    (memcpy(d->secret, next, k->hlen), !dir_keys(k, d))) {
		/* Without keys nothing more can be sealed or opened: the
		 * next record fails and the connection ends. */
		log_warn("tls: key update failed");
		OPENSSL_cleanse(d->key, sizeof(d->key));
	}
	OPENSSL_cleanse(next, sizeof(next));
}

void tls13_free(struct tls13 *k)
{
	if (!k)
		return;
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}
