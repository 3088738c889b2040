/*
 * bus.h - the bus: one broadcast ring in shared memory. Any process may
 * append records (appends are serialised by a robust process-shared mutex);
 * every worker reads every record with its own cursor and never takes the
 * lock. A writer never waits for a reader: a reader that falls a whole ring
 * behind is lapped, is told exactly how many records it lost, and resumes
 * among the oldest records still intact (a quarter of a ring in, out of the
 * writers' way).
 *
 * Segment layout (seg kind SEG_KIND_BUS, layout BUS_VERSION):
 *
 *   0     +------------------------------------------------------------+
 *         | struct seg_hdr                                       64 B  |
 *   64    +------------------------------------------------------------+
 *         | struct bus_hdr                                      384 B  |
 *         |   line 0  identity: magic, version, sizes, offsets         |
 *         |   line 1  the writers' robust mutex, owner pid             |
 *         |   line 2  what readers load: pub_ver head head_seq resv lo |
 *         |   line 3  the writers' own: tail tail_seq w_pos w_end w_seq|
 *         |   line 4  sleepers: one bit per reader slot                |
 *         |   line 5  counters                                         |
 *   448   +------------------------------------------------------------+
 *         | struct bus_slot[nslots]     64 B each: pid, cursor, counts |
 *         +------------------------------------------------------------+
 *         | ring: ring_bytes (a power of two) of records               |
 *   size  +------------------------------------------------------------+
 *
 * Positions are absolute byte counts that never wrap (2^64 bytes); the byte
 * at position P lives at ring[P & (ring_bytes - 1)]. Offsets in the header
 * are from the payload base (seg_payload), never pointers.
 *
 * A record is a 16-byte header and its payload, padded to 16 bytes:
 *
 *   +-----------+----------+-----------+------------+---------------------+
 *   | seq  u64  | len  u32 | type  u16 | check  u16 | payload (len bytes) |
 *   +-----------+----------+-----------+------------+---------------------+
 *
 * A record never straddles the end of the ring: a writer that would cross
 * it first writes a pad record (type BUS_T_PAD, len = bytes to the end). A
 * writer that died holding the lock has its unfinished record turned into a
 * void record (BUS_T_VOID) carrying the seq it had taken, so seqs stay
 * gap-free and never repeat. check is a hash of (seq, len, type).
 *
 * Invariants, all positions multiples of 16 (R = ring_bytes):
 *   lo <= head <= tail <= resv, tail - lo <= R, resv - tail < R / 2
 *   [lo, tail)    complete records, intact, seqs contiguous up to tail_seq - 1
 *   [lo, head)    the part published to readers, up to head_seq - 1
 *   [tail, resv)  space writers may be writing: resv runs ahead in steps
 *                 of R / 64, so that the line readers load is not written
 *                 for it on every record
 *   w_seq == tail_seq: the record [w_pos, w_end) is being written
 * A byte at position P that a reader copied is intact iff resv <= P + R
 * after the copy: that is the readers' seqlock; they need nothing else.
 */
#ifndef ROTOR_BUS_H
#define ROTOR_BUS_H

#include "seg.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEG_KIND_BUS 0x42555352u           /* "BUSR" */
#define BUS_VERSION 1
#define BUS_MAGIC UINT64_C(0x535542524f544f52) /* "ROTORBUS" little-endian */

#define BUS_SLOTS_MAX 512                  /* 256 workers, twice over during a rolling restart */
#define BUS_NO_SLOT (~0u)                  /* a reader without a slot (rotorctl): cannot sleep */
#define BUS_RING_MIN ((size_t)4096)
#define BUS_RING_MAX ((size_t)1 << 30)
#define BUS_RING_DEFAULT ((size_t)16 << 20)
#define BUS_ALIGN 16                       /* records start on 16 bytes */

/* Record types: the caller owns 0 .. BUS_TYPE_MAX - 1. */
#define BUS_TYPE_MAX 0x8000u
#define BUS_T_VOID 0xfffeu                 /* a dead writer's reservation; never delivered */
#define BUS_T_PAD 0xffffu                  /* filler to the end of the ring; never delivered */

struct bus_rec {
	uint64_t seq;      /* global, strictly increasing from 1 */
	uint32_t len;      /* payload bytes; for a pad, bytes to the ring's end */
	uint16_t type;
	uint16_t check;    /* hash of seq, len and type */
};
_Static_assert(sizeof(struct bus_rec) == 16, "bus_rec is 16 bytes");

struct bus_hdr {
	/* line 0: identity, written once by bus_create */
	uint64_t magic;        /* BUS_MAGIC, stored last */
	uint32_t version;      /* BUS_VERSION */
	uint32_t hdr_size;     /* sizeof(struct bus_hdr) */
	uint64_t ring_bytes;   /* a power of two */
	uint64_t ring_off;     /* from the payload base */
	uint64_t slot_off;     /* from the payload base */
	uint32_t nslots;
	uint32_t max_record;   /* largest payload accepted: ring_bytes / 8 - 16 */
	uint32_t slot_size;    /* sizeof(struct bus_slot) */
	uint32_t rec_size;     /* sizeof(struct bus_rec) */
	uint8_t pad0[8];

	/* line 1: the writers' lock; pthread's type is the one non-fixed-width
	 * field, its size and layout fixed by the platform's ABI */
	union {
		pthread_mutex_t lock;  /* robust, process-shared, error-checking */
		uint8_t lock_space[56];
	};
	int32_t owner;         /* pid holding the lock, 0 when free (advisory) */
	uint32_t pad1;

	/* line 2: what readers load; written by the lock holder */
	uint64_t pub_ver;      /* odd while head and head_seq change */
	uint64_t head;         /* end of the records published to readers */
	uint64_t head_seq;     /* seq of the first record not published */
	uint64_t resv;         /* end of the space writers may be writing */
	uint64_t lo;           /* the oldest intact record (never a pad) */
	uint64_t pad2[3];

	/* line 3: the lock holder's own */
	uint64_t tail;         /* end of the complete records (>= head) */
	uint64_t tail_seq;     /* seq the next record will get */
	uint64_t w_pos;        /* the record being written: where (after a pad), */
	uint64_t w_end;        /*   where it ends, */
	uint64_t w_seq;        /*   its seq; == tail_seq while it is written */
	uint64_t pad3[3];

	/* line 4: a bit per reader slot that announced it is about to sleep */
	uint64_t sleepers[BUS_SLOTS_MAX / 64];

	/* line 5: counters, relaxed, for monitoring: a process killed between
	 * an event and its count leaves it uncounted (seqs are exact) */
	uint64_t appends;      /* records appended */
	uint64_t bytes;        /* payload bytes appended */
	uint64_t repairs;      /* locks taken over from a dead holder */
	uint64_t voids;        /* reservations of dead writers voided */
	uint64_t laps;         /* times a reader found itself lapped */
	uint64_t lost;         /* records lapped readers lost, summed */
	uint64_t wakes;        /* wake calls made for sleepers */
	uint64_t corrupt;      /* records that failed their check, ring resets */
};
_Static_assert(sizeof(pthread_mutex_t) <= 56, "the mutex must fit its line");
_Static_assert(sizeof(struct bus_hdr) == 384, "bus_hdr is six cache lines");

/* One reader's slot, written by that reader (and cleared by the master). */
struct bus_slot {
	int32_t pid;           /* reader process, 0 when free */
	uint32_t pad;
	uint64_t pos;          /* its cursor (lag = head - pos) */
	uint64_t seq;          /* the seq it expects next */
	uint64_t delivered;
	uint64_t laps;
	uint64_t lost;
	uint64_t voids;
	uint64_t sleeps;       /* times it announced a sleep that stuck */
};
_Static_assert(sizeof(struct bus_slot) == 64, "bus_slot is one cache line");

/* Called by a writer for each reader slot that announced a sleep. It runs
 * after the lock is released; it must not block (an eventfd write). */
typedef void bus_wake_fn(unsigned slot, void *arg);

/* Writes the payload of a record in place: LEN bytes at DST (16-byte
 * aligned, in the ring) for the record numbered SEQ. Runs under the bus lock:
 * be short, do not append to the bus from it (EDEADLK), do not fail. */
typedef void bus_fill_fn(void *dst, size_t len, uint64_t seq, void *arg);

/* Receives one record. DATA (8-byte aligned) is the reader's private copy,
 * valid until the callback returns. Return 0 to go on, anything else to stop
 * bus_read after this record. */
typedef int bus_record_fn(void *arg, uint64_t seq, unsigned type, const void *data, size_t len);

/* A mapping of the bus in this process. Not shared: each process has its
 * own; a forked child may use its parent's. */
struct bus {
	struct seg seg;
	struct bus_hdr *h;
	struct bus_slot *slots;
	unsigned char *ring;
	uint64_t mask;         /* ring_bytes - 1 */
	uint32_t max_record;
	unsigned nslots;
	bool readonly;
	bool defer;            /* wakes wait for bus_wake_flush */
	bool wake_due;         /* something was appended while deferred */
	bus_wake_fn *wake;
	void *wake_arg;
};

/* A reader's cursor. Process-local; one per slot. */
struct bus_reader {
	struct bus *bus;
	unsigned slot;         /* or BUS_NO_SLOT */
	uint64_t pos;          /* position of the next record */
	uint64_t seq;          /* seq expected there */
	uint64_t delivered;    /* records given to callbacks */
	uint64_t laps;         /* times lapped */
	uint64_t lost;         /* records lost to laps and corruption */
	uint64_t voids;        /* void records skipped */
	uint64_t corrupt;      /* records that failed their check */
	unsigned char *buf;    /* records copied out of the ring */
	size_t bufsz;
};

/* Segment size for a ring of RING_BYTES and NSLOTS slots. */
size_t bus_seg_size(size_t ring_bytes, unsigned nslots);

/* Creates the bus segment PATH (replacing any) with a ring of RING_BYTES (a
 * power of two, BUS_RING_MIN .. BUS_RING_MAX) and NSLOTS reader slots (1 ..
 * BUS_SLOTS_MAX), and maps it read-write. Returns 0, or -1 with errno
 * (EINVAL for a size or slot count out of range, else seg_create's). */
int bus_create(struct bus *b, const char *path, size_t ring_bytes, unsigned nslots);

/* Attaches to the bus segment PATH and validates its header: magic, version,
 * struct sizes, offsets and positions consistent with the file size. Returns
 * 0, or -1 with errno ENOENT, EPROTO (does not validate) or seg_attach's. A
 * READONLY mapping can read (bus_read, bus_stats) but not append or sleep. */
int bus_attach(struct bus *b, const char *path, bool readonly);

/* Unmaps B. Readers on it must not be used afterwards. */
void bus_detach(struct bus *b);

/* Removes B's file; the mapping stays valid until bus_detach. */
int bus_unlink(struct bus *b);

/* Largest payload bus_append accepts on B: an eighth of the ring minus a
 * record header, so that a reader copying a record is not lapped by the next
 * few appends and wrap padding wastes at most an eighth of the ring. */
static inline size_t bus_max_record(const struct bus *b)
{
	return b->max_record;
}

/* Sets the function a writer in this process calls to wake sleeping
 * readers. Every process that appends must set one (without it, appends
 * leave the sleepers asleep rather than lose their announcements). */
void bus_set_waker(struct bus *b, bus_wake_fn *fn, void *arg);

/* Appends one record of TYPE (< BUS_TYPE_MAX) with LEN payload bytes that
 * FILL writes in place under the lock, so FILL may assign per-channel stream
 * offsets in the record's order. Stores the record's seq in *SEQ (may be
 * NULL). Then, unless wakes are deferred, wakes the readers that announced a
 * sleep. Never waits for readers; waits for the lock only while another
 * writer copies a record. Returns 0, or -1 with errno: EMSGSIZE (LEN over
 * bus_max_record), EINVAL (TYPE), EROFS (read-only mapping), EDEADLK (called
 * from a fill), or the mutex's error. A lock whose holder died is taken over
 * and repaired first (counted in repairs). */
int bus_append_fn(struct bus *b, unsigned type, size_t len, bus_fill_fn *fill, void *arg,
		  uint64_t *seq);

/* bus_append_fn copying LEN bytes from DATA. */
int bus_append(struct bus *b, unsigned type, const void *data, size_t len, uint64_t *seq);

/* A batch: bus_lock, any number of bus_append_locked, bus_unlock. Records
 * of a batch are published to readers together at bus_unlock (and whenever
 * a quarter of the ring is waiting), so a batch costs one lock and one
 * publication; readers see nothing of it before. Hold the lock for as short
 * a time as an append's fill: other writers wait for it. bus_lock returns 0
 * or -1 with errno (EROFS, EDEADLK when already held, the mutex's error); it
 * repairs after a dead holder as bus_append_fn does. */
int bus_lock(struct bus *b);

/* bus_append_fn with the lock held: same arguments and errors, publishes
 * nothing and wakes no one. */
int bus_append_locked(struct bus *b, unsigned type, size_t len, bus_fill_fn *fill, void *arg,
		      uint64_t *seq);

/* Publishes the batch, releases the lock, and (unless deferred) wakes the
 * readers that announced a sleep. */
void bus_unlock(struct bus *b);

/* Defers this process's wakes: appends no longer wake sleepers until
 * bus_wake_flush. Call bus_wake_flush before the loop sleeps, or sleepers
 * miss what was appended. */
void bus_wake_defer(struct bus *b);

/* Ends deferral and wakes the sleepers once if anything was appended. */
void bus_wake_flush(struct bus *b);

/* Wakes every occupied slot once and clears every announcement. For the
 * master after a process died: a writer killed between taking the sleepers'
 * announcements and waking them would leave them asleep. Does nothing
 * without a waker (bus_set_waker): the master must set one that reaches
 * every worker's eventfd. */
void bus_wake_all(struct bus *b);

/* Starts reader R on B at the current head (it sees records appended from
 * now on) in SLOT (< nslots), recording this process's pid in the slot; or
 * without a slot (BUS_NO_SLOT). Returns 0, or -1 with errno EINVAL (slot) or
 * ENOMEM. */
int bus_reader_init(struct bus_reader *r, struct bus *b, unsigned slot);

/* Frees R's buffer. The slot stays the process's until bus_slot_release. */
void bus_reader_free(struct bus_reader *r);

/* Delivers up to MAX (0: no limit) published records to FN in seq order and
 * returns how many it delivered. *LOST is set to the number of records R
 * lost because it was lapped (or met a record damaged by a stray write): 0
 * normally. A loss ends the call: everything delivered came before the gap,
 * everything delivered by later calls comes after it. After a lap R stands
 * a quarter of a ring past the oldest intact record: resuming at the oldest
 * would leave it where the writers overwrite next, to be lapped again and
 * again. After damage it stands at the head. Void records are skipped
 * (counted in R->voids); the seqs delivered plus those lost plus the voids
 * are exactly the seqs that passed. Never takes the lock, never blocks. */
int bus_read(struct bus_reader *r, bus_record_fn *fn, void *arg, unsigned max, uint64_t *lost);

/* True when records are waiting for R (or R was lapped). */
bool bus_reader_pending(const struct bus_reader *r);

/* Announces that R's process is about to block. Returns true: announced,
 * block until woken (the next append wakes it); false: records arrived
 * meanwhile, the announcement is withdrawn, read instead of blocking. */
bool bus_reader_sleep(struct bus_reader *r);

/* Withdraws R's announcement if it is still up. Call on every wake-up,
 * whatever woke the process, before reading. */
void bus_reader_wake_cancel(struct bus_reader *r);

/* Claims the free reader SLOT for a worker about to be forked, writing
 * PID (the claiming master's) in it with one compare-and-swap, so that two
 * masters sharing the bus during a binary upgrade never give one slot to
 * two readers; the worker's bus_reader_init then writes its own pid, and
 * bus_slot_release frees it. Returns 0, or -1 with errno EBUSY (taken),
 * EINVAL or EROFS. */
int bus_slot_claim(struct bus *b, unsigned slot, int32_t pid);

/* For the master once SLOT's process is dead and reaped: clears the slot
 * and its announcement, repairs what the process may have left holding the
 * lock (unless a live writer holds it: that one would take it over on its
 * next lock anyway), and wakes every other slot (bus_wake_all, so B needs a
 * waker). Returns 0, or -1 with errno EINVAL or EROFS. */
int bus_slot_release(struct bus *b, unsigned slot);

struct bus_stats {
	uint64_t ring_bytes, head, lo, head_seq;
	uint64_t appends, bytes, repairs, voids, laps, lost, wakes, corrupt;
	int32_t lock_owner;
	unsigned nslots, readers;
};

/* A snapshot of B's positions and counters (each field loaded alone). */
void bus_stats(const struct bus *b, struct bus_stats *st);

/* Takes the lock (repairing as needed) and walks the whole ring from lo to
 * head checking every record: checks, spans, pads, seqs contiguous and
 * ending at head_seq - 1. Stores the number of records in *NRECORDS (may be
 * NULL). Returns 0, or -1 with errno EPROTO (the ring is damaged), EROFS, or
 * the mutex's error. For tests and rotorctl-style checks: it holds the lock
 * for a walk of the ring. */
int bus_verify(struct bus *b, uint64_t *nrecords);

#endif
