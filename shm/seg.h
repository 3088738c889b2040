/*
 * seg.h - shared-memory segments: files mapped MAP_SHARED, each opening with
 * a header that says what it holds, so any process (a worker, a new master
 * after a restart, rotorctl) can attach and validate it.
 *
 * Layout of every segment:
 *
 *   0        +----------------------------------------------+
 *            | struct seg_hdr (64 bytes)                     |
 *            |   magic "ROTORSEG", kind, layout version,     |
 *            |   total size, creator pid, birth time, gen    |
 *   64       +----------------------------------------------+
 *            | payload (kind-specific; offsets only, never   |
 *            |          pointers)                            |
 *   size     +----------------------------------------------+
 *
 * The file is fully allocated (posix_fallocate) before it is mapped, so a
 * full disk is an error at creation, never a SIGBUS on a later page write.
 */
#ifndef ROTOR_SEG_H
#define ROTOR_SEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEG_MAGIC UINT64_C(0x474553524f544f52) /* "ROTORSEG" little-endian */

struct seg_hdr {
	uint64_t magic;     /* SEG_MAGIC */
	uint32_t kind;      /* what the payload is (SEG_KIND_*) */
	uint32_t version;   /* the payload's layout version */
	uint64_t size;      /* total mapped size, header included */
	int32_t creator;    /* pid of the process that created it */
	uint32_t hdr_size;  /* sizeof(struct seg_hdr) when created */
	int64_t birth_ms;   /* wall clock at creation */
	uint64_t gen;       /* bumped each time the segment is created anew */
	uint8_t pad[16];
};
_Static_assert(sizeof(struct seg_hdr) == 64, "seg_hdr must stay 64 bytes");

/* A mapping in this process. Not shared: each process has its own. */
struct seg {
	struct seg_hdr *hdr; /* base of the mapping; NULL when not attached */
	size_t size;
	bool readonly;
	char path[512];
};

/* Payload base of S. */
static inline void *seg_payload(const struct seg *s)
{
	return (char *)s->hdr + sizeof(struct seg_hdr);
}

/* Creates the segment file PATH of SIZE bytes (header included) holding KIND
 * at VERSION, replacing whatever was there, zero-filled. Returns 0, or -1
 * with errno set (ENOSPC when the disk is full). */
int seg_create(struct seg *s, const char *path, uint32_t kind, uint32_t version, size_t size);

/* Attaches to an existing segment PATH and validates its header against
 * KIND and VERSION (and its file size against the recorded size). Returns 0;
 * -1 with errno ENOENT (no file), EPROTO (the header does not validate) or
 * the failing call's errno. With READONLY the mapping is PROT_READ. */
int seg_attach(struct seg *s, const char *path, uint32_t kind, uint32_t version, bool readonly);

/* seg_attach, then CHECK on the payload and the mapped size: the kind's
 * own header. When CHECK says false the segment is detached and the call
 * fails with EPROTO. */
int seg_attach_checked(struct seg *s, const char *path, uint32_t kind, uint32_t version, bool readonly,
		       bool (*check)(const void *payload, size_t size));

/* Attaches to PATH if it validates with SIZE, else creates it anew. Sets
 * *created accordingly. Same returns as seg_create. */
int seg_open(struct seg *s, const char *path, uint32_t kind, uint32_t version, size_t size,
	     bool *created);

/* Reads the header of the segment file PATH into *H without mapping it
 * or judging its kind and version, so that a caller can say exactly what
 * it found (a new binary facing another layout). Returns 0; -1 with errno
 * ENOENT (no file), EPROTO (no segment header: too short or no magic) or
 * the failing call's. */
int seg_peek(const char *path, struct seg_hdr *h);

/* Unmaps S (the file stays). */
void seg_detach(struct seg *s);

/* Fills KEY with random bits for a table's SipHash key (getrandom; the
 * clock and the pid when there is no entropy to be had). */
void seg_random_key(uint64_t key[2]);

/* Removes the file of S (the mapping stays valid until seg_detach). */
int seg_unlink(struct seg *s);

#endif
