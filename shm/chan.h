/*
 * chan.h - the channel table and its history streams, in one segment file in
 * the data directory (config shm.data_dir), shared by every process of
 * rotord and kept across restarts of the whole daemon.
 *
 * The table (ctab_*) maps a channel name to its stream: an epoch (8 random
 * letters [a-zA-Z]), a top offset (strictly increasing from 1, never reused
 * within an epoch) and the stream's retained publications (hist_*), each a
 * msgpack record with a CRC. One robust process-shared mutex guards it all;
 * a holder killed at any instruction leaves either its whole change or no
 * trace of it: every change is one journaled operation that the next
 * holder completes or undoes in O(1) (see chan.c).
 *
 * Segment layout (seg kind SEG_KIND_CTAB, layout CTAB_VERSION), all offsets
 * from the payload base (seg_payload), never pointers:
 *
 *   0     +------------------------------------------------------------+
 *         | struct seg_hdr                                       64 B  |
 *   64    +------------------------------------------------------------+
 *         | struct ctab_hdr                                     512 B  |
 *         |   0-1  identity: magic, version, geometry, offsets, key    |
 *         |   2    the robust mutex, owner pid                         |
 *         |   3-4  the journal: the operation in progress              |
 *         |   5    state: clean flag, boot id, derived counts, hands   |
 *         |   6-7  counters                                            |
 *         +------------------------------------------------------------+
 *         | buckets: uint32_t[nbuckets], entry + 1 heading each chain  |
 *         +------------------------------------------------------------+
 *         | streams: nstreams entries of `stride` bytes:               |
 *         |   struct ctab_stream (112 B: chain link, name hash, meta)   |
 *         |   then the name (name_max bytes), padded to 64             |
 *         +------------------------------------------------------------+
 *         | emap: one bit per entry in use          (derived)          |
 *         | bmap: one bit per block in use          (derived)          |
 *         +------------------------------------------------------------+
 *         | blocks: nblocks x 64 B                                     |
 *   size  +------------------------------------------------------------+
 *
 * A record is a chain of blocks. Its first block is a struct hist_blk: the
 * chain link, the stream links (newer, older), owner, length, CRC32C of the
 * payload, offset, append time, a check over those, and the payload's first
 * 16 bytes; each further block is a 4-byte link and 60 payload bytes. The
 * records of a stream form a list from head (oldest) to tail (newest) whose
 * offsets are exactly top - count + 1 .. top.
 *
 * What is authoritative: the bucket chains (which entries are in the table)
 * and each entry's meta (its records). The bitmaps and counts are derived:
 * kept exact by the journal across a dead holder, rebuilt from the chains
 * on every cold open.
 *
 * The payload is a msgpack map with small integer keys, unknown keys
 * skipped on decode so the format can grow: 1 time (int, unix ms), 2 data
 * (bin), 3 info (map: 1 user str, 2 client str, 3 conn_info bin, 4
 * chan_info bin), 4 tags (map str -> str). The offset is not in the payload:
 * it is assigned under the lock and kept in the checked block header, so the
 * payload is encoded and checksummed before the lock (hist_encode).
 */
#ifndef ROTOR_CHAN_H
#define ROTOR_CHAN_H

#include "seg.h"

#include <msgpack.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEG_KIND_CTAB 0x42415443u                /* "CTAB" */
#define CTAB_VERSION 2                           /* 2: versions in hist_meta */
#define CTAB_MAGIC UINT64_C(0x425443524f544f52)  /* "ROTORCTB" little-endian */
#define CTAB_SEG_NAME "channels.seg"             /* in the data directory */
#define CTAB_LOCK_NAME "channels.lock"           /* flock: who else has it open */

#define HIST_EPOCH_LEN 8
#define HIST_BLOCK 64
#define CTAB_NAME_MAX_DEFAULT 255                 /* channel_max_length's default */
#define CTAB_NAME_MAX_LIMIT 4096
#define CTAB_STREAMS_MIN 16
#define CTAB_STREAMS_MAX ((uint32_t)1 << 24)
#define CTAB_DATA_MIN ((uint64_t)64 << 10)
#define CTAB_DATA_MAX ((uint64_t)64 << 30)
#define HIST_RECORD_MAX ((uint32_t)16 << 20)      /* and at most an eighth of the data */

/* ---- shared-memory structs -------------------------------------------- */

/* A stream's state: everything an append, a trim or an expiry changes,
 * committed as one through the journal. check covers all other fields. */
struct hist_meta {
	uint64_t top;              /* last offset given in this epoch, 0 none */
	uint64_t gen;              /* incarnation: new with every epoch */
	uint32_t head;             /* first block + 1 of the oldest record, 0 none */
	uint32_t tail;             /* first block + 1 of the newest record */
	uint32_t count;            /* records retained: offsets top-count+1 .. top */
	uint32_t blocks;           /* blocks they use */
	int64_t touch_ms;          /* last append or read: table eviction order */
	int64_t expire_ms;         /* records dropped from then (last append + ttl) */
	int64_t meta_expire_ms;    /* stream forgotten from then; 0 never */
	int64_t head_ms;           /* append time of the oldest record: space eviction order */
	char epoch[HIST_EPOCH_LEN];/* [a-zA-Z], not NUL-terminated */
	uint64_t version;          /* the last append's publish version, 0 none */
	uint64_t version_epoch;    /* keyed hash of its version_epoch */
	uint32_t size;             /* history_size of the last append */
	uint32_t check;
};
_Static_assert(sizeof(struct hist_meta) == 96, "hist_meta is 96 bytes");

/* A table entry; the channel name follows it. */
struct ctab_stream {
	uint32_t next;             /* hash chain: entry + 1 of the next, 0 last */
	uint32_t name_len;         /* 1 .. name_max */
	uint64_t hash;             /* keyed hash (SipHash-2-4) of the name */
	struct hist_meta m;
};
_Static_assert(sizeof(struct ctab_stream) == 112, "ctab_stream is 112 bytes");

/* The first block of a record. */
struct hist_blk {
	uint32_t next;             /* the record's next block + 1, 0 last */
	uint32_t newer;            /* first block + 1 of the stream's next record */
	uint32_t older;            /* ... and of its previous one (valid past head only) */
	uint32_t stream;           /* owner entry */
	uint32_t len;              /* payload bytes */
	uint32_t crc;              /* CRC32C of the payload */
	uint32_t sgen;             /* low 32 bits of the owner's gen */
	uint32_t check;            /* over stream, len, crc, sgen, offset, time */
	uint64_t offset;
	int64_t time_ms;           /* when appended */
	uint8_t data[16];          /* the payload's first bytes */
};
_Static_assert(sizeof(struct hist_blk) == HIST_BLOCK, "a record's first block is one block");

/* The journal: the operation in progress (state), with what the next
 * holder needs to finish or undo it after its holder died. */
struct ctab_journal {
	uint32_t state;            /* CTAB_J_*; 0 when no operation is in progress */
	uint32_t stream;           /* the entry operated on */
	uint32_t link_blk;         /* COMMIT: block + 1 whose hist_blk.newer becomes link_val, or 0 */
	uint32_t link_val;
	uint32_t alloc_first;      /* ALLOC: the chain of blocks being taken (block + 1) ... */
	uint32_t alloc_count;      /*   ... and its length */
	uint32_t free_first;       /* COMMIT, DELETE: first block + 1 of the records to free ... */
	uint32_t free_count;       /*   ... and how many records, following newer links */
	struct hist_meta meta;     /* COMMIT: the stream's new meta */
};
_Static_assert(sizeof(struct ctab_journal) == 128, "ctab_journal is 128 bytes");

struct ctab_hdr {
	/* lines 0-1: identity, written once by create */
	uint64_t magic;            /* CTAB_MAGIC, stored last */
	uint32_t version;          /* CTAB_VERSION */
	uint32_t hdr_size;         /* sizeof(struct ctab_hdr) */
	uint32_t nstreams, nbuckets, nblocks, stride;
	uint32_t name_max, max_record, block_size, entry_size;
	uint32_t meta_size, journal_size;
	uint64_t buckets_off, streams_off, emap_off, bmap_off, blocks_off;
	uint64_t key[2];           /* SipHash key of the names, random per segment */
	uint8_t pad0[16];

	/* line 2: the lock; pthread's type is the one non-fixed-width field,
	 * its size fixed by the platform's ABI */
	union {
		pthread_mutex_t lock;  /* robust, process-shared, error-checking */
		uint8_t lock_space[56];
	};
	int32_t owner;             /* pid holding the lock, 0 when free (advisory) */
	uint32_t pad1;

	/* lines 3-4: the journal */
	struct ctab_journal j;

	/* line 5: state, the lock holder's */
	uint32_t clean;            /* CTAB_CLEAN: shut down, nothing changed since */
	uint32_t nused;            /* entries in the table (derived) */
	uint32_t nfree;            /* free blocks (derived) */
	uint32_t bcursor;          /* where block allocation looks next */
	uint32_t ecursor;          /* where entry allocation looks next */
	uint32_t sweep_hand;       /* next entry ctab_sweep examines */
	uint32_t evict_hand;       /* where eviction sampling starts */
	uint32_t pad3;
	uint64_t next_gen;         /* gen of the next stream incarnation */
	char boot_id[24];          /* kernel boot id at the last cold open (truncated) */

	/* lines 6-7: counters (monitoring; a kill may leave one uncounted) */
	uint64_t appends;          /* publications added */
	uint64_t reads;            /* hist_read / hist_top calls */
	uint64_t streams_created;  /* new epochs given: creation, expiry, reset */
	uint64_t trims_size;       /* records dropped by history_size */
	uint64_t trims_space;      /* records dropped because the data was full */
	uint64_t expired_records;  /* records dropped by history_ttl */
	uint64_t expired_meta;     /* streams forgotten by history_meta_ttl */
	uint64_t evictions;        /* streams evicted because the table was full */
	uint64_t removes;          /* hist_remove calls that dropped records */
	uint64_t repairs;          /* locks taken over from a dead holder */
	uint64_t resets;           /* streams that failed validation: new epoch */
	uint64_t cold_opens;       /* opens that validated the whole segment */
	uint64_t pad4[4];
};
_Static_assert(sizeof(pthread_mutex_t) <= 56, "the mutex must fit its line");
_Static_assert(sizeof(struct ctab_hdr) == 512, "ctab_hdr is eight cache lines");

/* Journal states: the operation in progress and how a repair ends it. */
#define CTAB_J_ALLOC 0x434f4c41u   /* "ALOC" blocks being taken for a record: give them back */
#define CTAB_J_COMMIT 0x54494d43u  /* "CMIT" a stream's new meta: apply it, free the records */
#define CTAB_J_INSERT 0x544e5349u  /* "ISNT" an entry being added: keep it only if linked */
#define CTAB_J_DELETE 0x454c4544u  /* "DELE" an entry being removed: unlink it, free its records */
#define CTAB_J_WALK 0x4b4c4157u    /* "WALK" the derived maps being rebuilt: walk again */
#define CTAB_CLEAN 0x4e41454cu     /* "LEAN" */

/* ---- this process's handle -------------------------------------------- */

struct hist_info {
	const char *user;
	size_t user_len;
	const char *client;
	size_t client_len;
	const void *conn_info;     /* raw JSON bytes, may be empty */
	size_t conn_info_len;
	const void *chan_info;
	size_t chan_info_len;
};

struct hist_tag {
	const char *key;
	size_t key_len;
	const char *val;
	size_t val_len;
};

/* A publication, as given to hist_encode and as handed back by hist_read
 * (then every pointer is into the reader's copy, valid during the callback). */
struct hist_pub {
	uint64_t offset;           /* on read: its offset; ignored by hist_encode */
	int64_t time_ms;           /* publication time, 0 = none */
	const void *data;
	size_t data_len;
	const struct hist_info *info;  /* NULL = none */
	const struct hist_tag *tags;
	size_t ntags;
};

/* An encoded publication, made outside any lock; reusable. */
struct hist_rec {
	unsigned char *buf;
	size_t len, cap;
	uint32_t crc;              /* CRC32C of buf[0 .. len) */
};

/* Decoding state; reusable. */
struct hist_dec {
	msgpack_unpacked up;
	struct hist_info info;
	struct hist_tag *tags;
	size_t tags_cap;
};

struct ctab {
	struct seg seg;
	struct ctab_hdr *h;
	uint32_t *buckets;
	unsigned char *streams;
	uint64_t *emap, *bmap;
	unsigned char *blocks;
	uint32_t nstreams, nbuckets, nblocks, stride, name_max, max_record;
	int lock_fd;               /* flock LOCK_SH held while open */
	unsigned char *rbuf;       /* hist_read's copy of records */
	size_t rbuf_cap;
	struct hist_dec dec;
	/* Tests only: called at each step of a change (CTAB_STEP_*) with the
	 * lock held; a hook that kills the process simulates a crash there. */
	void (*hook)(struct ctab *t, int step);
};

/* ---- opening ----------------------------------------------------------- */

struct ctab_config {
	const char *dir;           /* data directory; must exist */
	uint32_t streams;          /* table capacity, CTAB_STREAMS_MIN .. MAX */
	uint64_t data_bytes;       /* history data, CTAB_DATA_MIN .. MAX */
	uint32_t name_max;         /* longest channel name; 0 = CTAB_NAME_MAX_DEFAULT */
	int64_t now_ms;            /* wall clock for entries reset at open; 0 = now */
	const char *boot_id;       /* NULL = the kernel's; tests pretend a reboot */
	bool attach_only;          /* never create or recreate; take the segment's
				      sizes (rotorctl) */
};

/* What ctab_open found. */
struct ctab_report {
	bool cold;                 /* this process had the file to itself */
	bool created;              /* a new segment: every epoch is new */
	bool sizes_differ;         /* warm open of a segment made with other sizes */
	bool set_aside;            /* a segment of another layout version was renamed
	                            * to <name>.v<version> (why says where) */
	const char *why;           /* why it was created, or why streams were reset */
	uint32_t streams_kept;     /* cold open: streams validated, epochs kept */
	uint32_t streams_reset;    /* cold open: streams given a new epoch */
	uint32_t entries_dropped;  /* cold open: entries unreadable, forgotten */
	uint64_t records_kept;
	bool migrated;             /* a segment of layout migrated_from was migrated
	                            * to CTAB_VERSION (then the counts above are of
	                            * the migrated table, resets and drops included) */
	uint32_t migrated_from;
	uint32_t streams_dropped;  /* migration: valid streams the configured table
	                            * had no room for (least recently touched) or
	                            * whose name is longer than allowed */
	uint64_t records_dropped;  /* migration: records of kept streams the data
	                            * had no room for (oldest first), and those of
	                            * dropped streams */
};

/* Segment size for CFG's geometry. */
size_t ctab_seg_size(const struct ctab_config *cfg);

/* Opens the channel table in CFG->dir, creating it if needed, and maps it
 * read-write. Who else has it open decides what happens (a flock on
 * CTAB_LOCK_NAME, held shared for as long as T is open, by forked children
 * too):
 *   - nobody (cold: the master at start, or after every process died): the
 *     file is fully allocated (posix_fallocate, so a full disk is ENOSPC
 *     here, never SIGBUS later), the header validated (magic, version,
 *     geometry = CFG, file size); a segment that does not validate or has
 *     other sizes is recreated (every epoch new), unless CFG->attach_only
 *     (then ENOENT or EPROTO, and other sizes are taken as they are). One
 *     of layout 1 that validates as such is migrated to this layout with
 *     CFG's geometry (REP->migrated; see migrate_v1 in chan.c): streams
 *     and records kept, what does not fit dropped and counted, crash-safe
 *     (a new file renamed over the old one); one of another layout version
 *     is first renamed to CTAB_SEG_NAME.v<N>.
 *     Otherwise the lock is re-initialised, the operation a dead holder was
 *     in ended, and every stream validated (meta check, links, offsets,
 *     record checks and CRCs): a stream that fails gets a new epoch and
 *     loses its records. After an unclean stop (no ctab_shutdown) under
 *     another kernel boot (a crash of the machine: pages may have reached
 *     the disk in any order), no stream can be proven intact: every stream
 *     gets a new epoch.
 *   - other processes (warm: rotorctl, a new binary during an upgrade):
 *     waits for a cold open in progress, validates the header and maps the
 *     segment as it is, whatever its sizes (REP->sizes_differ).
 * Returns 0, or -1 with errno: EINVAL (CFG out of range), ENOENT (no
 * directory; attach_only: no segment), ENOSPC/EFBIG (no room for the file;
 * a migration needs room for the old and the new file at once),
 * EPROTO (warm or attach_only: the header does not validate), or the
 * failing call's. REP may be NULL. */
int ctab_open(struct ctab *t, const struct ctab_config *cfg, struct ctab_report *rep);

/* Unmaps T and drops its share of the flock. Safe in a forked child. */
void ctab_close(struct ctab *t);

/* For the master once every other process is gone: flushes the segment to
 * disk (msync) and marks it clean, so that the next cold open, even after
 * a reboot, keeps every stream that validates. Any later change clears the
 * mark. Returns 0 or -1 with errno (the mutex's, msync's). */
int ctab_shutdown(struct ctab *t);

/* ---- history streams --------------------------------------------------- */

/* A stream position. epoch is NUL-terminated. */
struct hist_pos {
	uint64_t offset;
	char epoch[HIST_EPOCH_LEN + 1];
};

/* A channel's history options (namespace history_size, history_ttl,
 * history_meta_ttl resolved by the caller, 0 meta ttl = never forgotten),
 * and the publication's version (the publish API's version and
 * version_epoch). */
struct hist_opts {
	uint32_t size;             /* >= 1 */
	uint64_t ttl_ms;           /* >= 1 */
	uint64_t meta_ttl_ms;      /* 0: the stream's meta does not expire */
	uint64_t version;          /* 0: none */
	const char *version_epoch; /* may be empty (NULL with length 0) */
	size_t version_epoch_len;
};

void hist_rec_init(struct hist_rec *r);
void hist_rec_free(struct hist_rec *r);

/* Encodes PUB into R (replacing what R held) and computes its CRC. Call
 * outside any lock. Returns 0, or -1 with errno ENOMEM. */
int hist_encode(struct hist_rec *r, const struct hist_pub *pub);

void hist_dec_init(struct hist_dec *d);
void hist_dec_free(struct hist_dec *d);

/* Decodes LEN bytes at BUF into PUB (offset left 0); pointers are into BUF
 * and D, valid until the next decode with D. Returns 0, or -1 with errno
 * EBADMSG (not a record) or ENOMEM. */
int hist_decode(struct hist_dec *d, const void *buf, size_t len, struct hist_pub *pub);

/* Whether hist_append would refuse these arguments: 0, or an errno
 * (EINVAL, ENAMETOOLONG, EMSGSIZE). Check it before taking the bus lock:
 * then the append under it can only fail if the mutex is unrecoverable. */
int hist_append_check(const struct ctab *t, size_t name_len, const struct hist_opts *o,
		      const struct hist_rec *rec);

/* Appends REC to channel NAME (NAME_LEN bytes, any bytes but not empty),
 * creating the stream (new epoch) if absent or forgotten, and stores its
 * position in *POS: the offset it was given and the epoch. Then trims the
 * stream to O->size records, sets its records to expire at NOW + ttl (as
 * Centrifugo: all together, ttl after the last publication) and its meta at
 * NOW + meta_ttl. Needing room: the data full, the oldest record of a
 * sampled set of streams goes first (see chan.c), and when the table is
 * full the least recently touched of a sampled set of streams is evicted.
 * Never fails for lack of room.
 *
 * Versions, as Centrifugo's memory broker: with O->version set and the
 * stream existing, a publication whose version is not above the stream's
 * last (and whose version_epoch is empty or the same as the last's) is
 * dropped: nothing changes and *POS is the stream's top. Otherwise the
 * append stores O->version and its epoch (0 and empty included) as the
 * stream's last.
 *
 * Designed to run inside a bus fill (bus_append_fn), so that the offset is
 * assigned and the bus record written under the bus lock, and a writer
 * killed after the append leaves a void record that tells readers. Lock
 * order: bus lock, then this table's; nothing here takes
 * the bus lock. It holds the table lock for a copy of the record and a few
 * cache lines. A dead holder found here is repaired first: its operation
 * finished or undone from the journal, the counts recounted (microseconds;
 * ctab_stats repairs). Returns 0 (appended), 1 (dropped by its version),
 * or -1 with errno: hist_append_check's, or the mutex's (ENOTRECOVERABLE). */
int hist_append(struct ctab *t, const char *name, size_t name_len, const struct hist_opts *o,
		const struct hist_rec *rec, int64_t now_ms, struct hist_pos *pos);

/* Whether hist_append would drop a publication with O's version on
 * channel NAME now (without appending, creating nothing): 1 with *POS the
 * stream's top, 0 when it would append, -1 with errno (EINVAL,
 * ENAMETOOLONG, the mutex's). Under the bus lock, where every append runs,
 * hist_append then answers the same: a caller checks this before it takes
 * a bus record for the append. */
int hist_version_check(struct ctab *t, const char *name, size_t name_len, const struct hist_opts *o, int64_t now,
		       struct hist_pos *pos);

/* A history query (client history, server API history, recovery). */
struct hist_query {
	int32_t limit;             /* 0: no publications; < 0: all; > 0: at most */
	bool reverse;              /* newest first */
	bool has_since;
	uint64_t since_offset;
	const char *since_epoch;   /* NULL or "": any epoch */
	uint64_t meta_ttl_ms;      /* refreshes the meta as an append does; 0 keeps it */
};

struct hist_result {
	struct hist_pos top;       /* the stream's top and epoch, always set */
	uint64_t first;            /* oldest retained offset, 0 when none */
	bool epoch_mismatch;       /* since_epoch given and not the epoch: 112, no publications */
	unsigned count;            /* publications handed to the callback */
};

/* Receives one publication; return 0 to go on, anything else to stop. */
typedef int hist_pub_fn(void *arg, const struct hist_pub *pub);

/* Reads channel NAME's history as Centrifugo does (client-protocol.md 6.5),
 * creating the stream if absent (a new epoch, top 0) and refreshing its
 * meta: with since, the publications strictly after since_offset (forward)
 * or strictly before it (reverse); without, from the oldest (forward) or
 * the newest (reverse); at most LIMIT, ascending or (reverse) descending. A
 * since_offset trimmed away is not an error: forward reads start at the
 * oldest retained (RES->first > since + 1 shows the hole). since_epoch
 * non-empty and not the epoch: RES->epoch_mismatch, no publications (the
 * client's 112). Records are copied under the lock and checked (CRC) and
 * decoded after it; a record that fails gives its stream a new epoch, and
 * the read is answered from the new, empty stream. FN may be NULL (the
 * position only); it must not call hist_read or hist_top on T. Returns 0, or -1 with errno: EINVAL (reverse
 * with since_offset 0: the client's 107, the API's 100; an empty name),
 * ENAMETOOLONG, ENOMEM, or the mutex's. */
int hist_read(struct ctab *t, const char *name, size_t name_len, const struct hist_query *q,
	      int64_t now_ms, hist_pub_fn *fn, void *arg, struct hist_result *res);

/* The stream's top and epoch (creating the stream if absent, as a read
 * does), refreshing its meta with META_TTL_MS (0 keeps it). Returns 0 or -1
 * with errno as hist_read. */
int hist_top(struct ctab *t, const char *name, size_t name_len, uint64_t meta_ttl_ms,
	     int64_t now_ms, struct hist_pos *pos);

/* history_remove: drops NAME's publications and keeps its epoch and top, so
 * subscribers keep their position. Creates nothing. Returns 0 or -1 with
 * errno (EINVAL, ENAMETOOLONG, the mutex's). */
int hist_remove(struct ctab *t, const char *name, size_t name_len, int64_t now_ms);

/* ---- upkeep and monitoring -------------------------------------------- */

/* Examines up to BUDGET entries (from where the last call stopped): drops
 * expired records (history_ttl) and forgets expired streams (meta ttl).
 * Expiry also happens lazily on every access; a worker calls this every
 * second or so to give the room back. Returns how many entries expired
 * (records or meta), or -1 with errno (the mutex's). */
int ctab_sweep(struct ctab *t, int64_t now_ms, unsigned budget);

struct ctab_stats {
	uint32_t nstreams, nused, name_max, max_record;
	uint64_t nblocks, nfree, data_bytes;
	uint64_t appends, reads, streams_created, trims_size, trims_space, expired_records;
	uint64_t expired_meta, evictions, removes, repairs, resets, cold_opens;
	int32_t lock_owner;
};

/* A snapshot of T's counters, without the lock (each field loaded alone). */
void ctab_stats(const struct ctab *t, struct ctab_stats *st);

/* What hist_peek sees of a stream. epoch is NUL-terminated. */
struct hist_peek {
	uint64_t top;              /* last offset given in this epoch */
	uint32_t count;            /* publications retained (0 once expired) */
	char epoch[HIST_EPOCH_LEN + 1];
};

/* Channel NAME's stream as it stands, without the lock and without changing
 * anything (rotorctl top, on a read-only mapping): -1 when there is none or
 * its meta expired (at NOW_MS), else 0 with *OUT filled. Fields are loaded
 * one by one while writers may be changing them: a monitor's view, never a
 * basis for recovery. */
int hist_peek(const struct ctab *t, const char *name, size_t name_len, int64_t now_ms, struct hist_peek *out);

/* Takes the lock (repairing as needed) and checks the whole table without
 * changing it: chains, names, metas, every record's links, offsets and
 * check (and with DEEP its CRC), and that the derived bitmaps and counts
 * match. Stores the number of records in *NRECORDS (may be NULL). Returns
 * 0, or -1 with errno EPROTO (something does not hold) or the mutex's. For
 * tests and rotorctl: it holds the lock for a walk of everything. */
int ctab_verify(struct ctab *t, bool deep, uint64_t *nrecords);

/* Steps of a change, for T->hook. */
enum {
	CTAB_STEP_ALLOC = 1,       /* blocks taken, record not written */
	CTAB_STEP_WRITTEN,         /* record written, not committed */
	CTAB_STEP_JOURNAL,         /* commit filled in, not armed */
	CTAB_STEP_ARMED,           /* commit armed, not applied */
	CTAB_STEP_APPLIED,         /* meta applied, link not yet */
	CTAB_STEP_COMMITTED,       /* meta applied, blocks of dropped records not freed */
	CTAB_STEP_FREEING,         /* half the blocks to free freed */
	CTAB_STEP_INSERT,          /* new entry filled, not linked */
	CTAB_STEP_LINKED,          /* new entry linked, counts not updated */
	CTAB_STEP_UNLINKED,        /* entry unlinked, its records not freed */
	CTAB_STEP_WALK,            /* a rebuild of the maps half done */
	CTAB_STEP_MAX
};

#endif
