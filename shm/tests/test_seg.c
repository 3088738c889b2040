/*
 * test_seg.c - segments: create, attach, validation of every header field,
 * generations, a full disk refused at creation, and attachment by another
 * process (including one killed while writing).
 */
#include "seg.h"
#include "stats.h"
#include "../../tests/tap.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/rotor-test-seg-XXXXXX";

int main(void)
{
	struct seg s, r;
	char p[256];
	bool created;

	if (mkdtemp(dir) == NULL)
		return 99;
	path_of(p, sizeof(p), dir, "a.seg");

	ok(seg_attach(&r, p, 1, 1, false) == -1 && errno == ENOENT, "attach to a missing file fails with ENOENT");
	ok(seg_create(&s, p, 7, 3, 4096) == 0, "create a 4 KiB segment");
	ok(s.hdr->magic == SEG_MAGIC && s.hdr->kind == 7 && s.hdr->version == 3 && s.hdr->size == 4096,
	   "header carries magic, kind, version and size");
	is_int(s.hdr->creator, getpid(), "creator pid recorded");
	is_int(s.hdr->gen, 1, "first generation is 1");
	memcpy(seg_payload(&s), "hello", 6);

	struct seg_hdr h;
	ok(seg_peek(p, &h) == 0 && h.kind == 7 && h.version == 3 && h.size == 4096,
	   "seg_peek reads kind, version and size without judging them");
	{
		char q[256];
		path_of(q, sizeof(q), dir, "peek-missing.seg");
		ok(seg_peek(q, &h) == -1 && errno == ENOENT, "seg_peek of a missing file: ENOENT");
		int fd = open(q, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		ok(fd >= 0 && write(fd, "not a segment", 13) == 13, "a short file that is no segment");
		close(fd);
		ok(seg_peek(q, &h) == -1 && errno == EPROTO, "seg_peek of it: EPROTO");
		unlink(q);
	}
	ok(seg_attach(&r, p, 7, 3, true) == 0, "attach read-only");
	is_str((char *)seg_payload(&r), "hello", "attacher sees the payload");
	seg_detach(&r);
	ok(seg_attach(&r, p, 8, 3, false) == -1 && errno == EPROTO, "wrong kind is refused (EPROTO)");
	ok(seg_attach(&r, p, 7, 4, false) == -1 && errno == EPROTO, "wrong version is refused (EPROTO)");

	ok(seg_open(&r, p, 7, 3, 4096, &created) == 0 && !created, "seg_open reattaches a valid segment");
	is_str((char *)seg_payload(&r), "hello", "reattached payload kept");
	seg_detach(&r);
	ok(seg_open(&r, p, 7, 3, 8192, &created) == 0 && created, "seg_open recreates on a size change");
	is_int(r.hdr->gen, 2, "a recreated segment gets the next generation");
	ok(((char *)seg_payload(&r))[0] == 0, "a recreated segment starts zeroed");
	seg_detach(&r);
	seg_detach(&s);

	/* Corruptions of the file are refused, never trusted. */
	uint64_t bad = 0;
	poke(p, 0, &bad, sizeof(bad));
	ok(seg_attach(&r, p, 7, 3, false) == -1 && errno == EPROTO, "bad magic is refused");
	ok(seg_create(&s, p, 7, 3, 4096) == 0, "create over a corrupt file");
	seg_detach(&s);
	ok(truncate(p, 2048) == 0, "truncate the file behind the header's back");
	ok(seg_attach(&r, p, 7, 3, false) == -1 && errno == EPROTO, "size mismatch is refused");
	ok(truncate(p, 10) == 0 && seg_attach(&r, p, 7, 3, false) == -1 && errno == EPROTO,
	   "a file shorter than a header is refused");

	/* A full disk is an error at creation, never a SIGBUS later. */
	struct rlimit old, lim;
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &old);
	lim.rlim_cur = 1 << 16;
	lim.rlim_max = old.rlim_max;
	setrlimit(RLIMIT_FSIZE, &lim);
	path_of(p, sizeof(p), dir, "big.seg");
	int rc = seg_create(&s, p, 7, 3, 1 << 20);
	int err = errno;
	setrlimit(RLIMIT_FSIZE, &old);
	ok(rc == -1 && (err == EFBIG || err == ENOSPC), "segment larger than the space left fails cleanly");
	ok(access(p, F_OK) == -1, "no segment file left behind after a failed create");

	/* Another process writes counters and is killed mid-way; the segment
	 * stays valid and readable for everyone else. */
	path_of(p, sizeof(p), dir, "stats.seg");
	ok(seg_create(&s, p, SEG_KIND_STATS, STATS_VERSION, STATS_SEG_SIZE) == 0, "create a stats segment");
	int pfd[2];
	if (pipe(pfd) < 0)
		return 99;
	pid_t pid = fork();
	if (pid == 0) {
		struct seg c;
		if (seg_attach(&c, p, SEG_KIND_STATS, STATS_VERSION, false) != 0) {
			perror("child seg_attach");
			_exit(1);
		}
		struct stats_block *b = &stats_blocks(seg_payload(&c))[5];
		b->pid = getpid();
		for (int i = 0; i < 1000; i++)
			STATS_ADD(b, http_requests, 1);
		if (write(pfd[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			STATS_ADD(b, bytes_out, 1);
	}
	char c;
	close(pfd[1]);
	ok(read(pfd[0], &c, 1) == 1, "child attached and counted");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	struct stats_block *b = &stats_blocks(seg_payload(&s))[5];
	is_int(STATS_GET(b, http_requests), 1000, "counts written by a killed process are all visible");
	is_int(b->pid, pid, "its block names it");
	ok(seg_attach(&r, p, SEG_KIND_STATS, STATS_VERSION, true) == 0, "segment still validates after the kill");
	seg_detach(&r);
	seg_unlink(&s);
	seg_detach(&s);

	path_of(p, sizeof(p), dir, "a.seg");
	unlink(p);
	rmdir(dir);
	return tap_done();
}
