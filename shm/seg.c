/*
 * seg.c - creating, attaching and validating shared-memory segment files.
 *
 * Invariants: a segment is created under a temporary name, sized, allocated,
 * given its header and only then renamed into place, so a process that
 * attaches never sees a half-made segment; a segment whose header or size
 * does not validate is refused (EPROTO), never trusted.
 */
#include "seg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_path(struct seg *s, const char *path)
{
	size_t n = strlen(path);
	if (n >= sizeof(s->path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(s->path, path, n + 1);
	return 0;
}

int seg_create(struct seg *s, const char *path, uint32_t kind, uint32_t version, size_t size)
{
	char tmp[sizeof(s->path) + 32];
	uint64_t gen = 1;
	int fd, err;
	void *p;

	memset(s, 0, sizeof(*s));
	if (size < sizeof(struct seg_hdr)) {
		errno = EINVAL;
		return -1;
	}
	if (set_path(s, path) < 0)
		return -1;

	/* Carry the generation forward so attachers can tell a new segment. */
	struct seg old;
	if (seg_attach(&old, path, kind, version, true) == 0) {
		gen = old.hdr->gen + 1;
		seg_detach(&old);
	}

	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	err = posix_fallocate(fd, 0, (off_t)size);
	if (err != 0) {
		close(fd);
		unlink(tmp);
		errno = err;
		return -1;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	err = errno;
	close(fd);
	if (p == MAP_FAILED) {
		unlink(tmp);
		errno = err;
		return -1;
	}
	s->hdr = p;
	s->size = size;
	s->hdr->kind = kind;
	s->hdr->version = version;
	s->hdr->size = size;
	s->hdr->creator = (int32_t)getpid();
	s->hdr->hdr_size = sizeof(struct seg_hdr);
	s->hdr->birth_ms = wall_ms();
	s->hdr->gen = gen;
	/* The magic last: a header with a magic is complete. */
	__atomic_store_n(&s->hdr->magic, SEG_MAGIC, __ATOMIC_RELEASE);
	if (rename(tmp, path) < 0) {
		err = errno;
		munmap(p, size);
		unlink(tmp);
		s->hdr = NULL;
		errno = err;
		return -1;
	}
	return 0;
}

int seg_attach(struct seg *s, const char *path, uint32_t kind, uint32_t version, bool readonly)
{
	struct stat st;
	struct seg_hdr h;
	int fd, err;
	void *p;

	memset(s, 0, sizeof(*s));
	if (set_path(s, path) < 0)
		return -1;
	fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		goto fail;
	if (st.st_size < (off_t)sizeof(h) || pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    h.magic != SEG_MAGIC || h.kind != kind || h.version != version ||
	    h.hdr_size != sizeof(struct seg_hdr) || h.size != (uint64_t)st.st_size) {
		close(fd);
		errno = EPROTO;
		return -1;
	}
	p = mmap(NULL, (size_t)h.size, readonly ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	close(fd);
	s->hdr = p;
	s->size = (size_t)h.size;
	s->readonly = readonly;
	return 0;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

int seg_open(struct seg *s, const char *path, uint32_t kind, uint32_t version, size_t size,
	     bool *created)
{
	if (seg_attach(s, path, kind, version, false) == 0) {
		if (s->size == size) {
			*created = false;
			return 0;
		}
		seg_detach(s);
	}
	*created = true;
	return seg_create(s, path, kind, version, size);
}

int seg_peek(const char *path, struct seg_hdr *h)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = pread(fd, h, sizeof(*h), 0);
	int err = errno;
	close(fd);
	if (n < 0) {
		errno = err;
		return -1;
	}
	if (n != (ssize_t)sizeof(*h) || h->magic != SEG_MAGIC) {
		errno = EPROTO;
		return -1;
	}
	return 0;
}

void seg_detach(struct seg *s)
{
	if (s->hdr != NULL)
		munmap(s->hdr, s->size);
	s->hdr = NULL;
	s->size = 0;
}

int seg_attach_checked(struct seg *s, const char *path, uint32_t kind, uint32_t version, bool readonly,
		       bool (*check)(const void *payload, size_t size))
{
	if (seg_attach(s, path, kind, version, readonly) < 0)
		return -1;
	if (!check(seg_payload(s), s->size)) {
		seg_detach(s);
		errno = EPROTO;
		return -1;
	}
	return 0;
}

int seg_unlink(struct seg *s)
{
	return unlink(s->path);
}

void seg_random_key(uint64_t key[2])
{
	unsigned char *p = (unsigned char *)key;
	size_t n = 2 * sizeof(uint64_t);

	while (n > 0) {
		ssize_t k = getrandom(p, n, GRND_NONBLOCK);
		if (k > 0) {
			p += k;
			n -= (size_t)k;
		} else if (k < 0 && errno != EINTR) {
			break;
		}
	}
	if (n > 0) {
		/* No entropy to be had: the clock and the pid, mixed. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		key[0] ^= ((uint64_t)ts.tv_sec << 32 ^ (uint64_t)ts.tv_nsec) * UINT64_C(0x9e3779b97f4a7c15);
		key[1] ^= ((uint64_t)getpid() << 17 ^ (uint64_t)ts.tv_nsec) * UINT64_C(0xbf58476d1ce4e5b9);
	}
}
