/*
 * wheel.h - a hashed timer wheel: one per worker, for the deadlines of
 * thousands of connections (idle, header, body, write; later WebSocket pings,
 * pongs and expiry) instead of one libev timer each.
 *
 * Timers are intrusive: embed a struct wheel_timer in the object that owns
 * the deadline, and find the owner back in the callback with
 * container_of-style arithmetic. Adding and cancelling are O(1).
 */
#ifndef ROTOR_WHEEL_H
#define ROTOR_WHEEL_H

#include "rotor.h"
#include <stdbool.h>

/* Slots per revolution (a power of two). With 100 ms ticks one revolution is
 * about 102 s; later deadlines simply wait in their slot for more laps. */
#define WHEEL_SLOTS 1024

struct wheel_timer {
	struct wheel_timer *next;
	struct wheel_timer **pprev; /* NULL while not pending */
	int64_t when;               /* absolute deadline, ms */
	void (*fn)(struct wheel_timer *t);
};

struct wheel {
	int64_t tick_ms;     /* resolution */
	int64_t cur;         /* tick the next advance starts scanning from */
	size_t count;        /* pending timers */
	bool advancing;      /* inside wheel_advance (it is not re-entrant) */
	struct wheel_timer *slot[WHEEL_SLOTS];
};

/* Prepares an empty wheel whose clock starts at NOW_MS, with TICK_MS
 * resolution (> 0). */
void wheel_init(struct wheel *wh, int64_t now_ms, int64_t tick_ms);

/* Prepares T (not pending) to call FN when it fires. */
void wheel_timer_init(struct wheel_timer *t, void (*fn)(struct wheel_timer *t));

/* Schedules T to fire at WHEN_MS (absolute, same clock as wheel_advance).
 * A pending T is moved. A deadline already past fires on the next advance.
 * Callable from a timer callback, including T's own. */
void wheel_add(struct wheel *wh, struct wheel_timer *t, int64_t when_ms);

/* Unschedules T; harmless when T is not pending. Callable from any timer
 * callback, also for timers due in the same advance (they then do not fire). */
void wheel_cancel(struct wheel *wh, struct wheel_timer *t);

static inline bool wheel_pending(const struct wheel_timer *t)
{
	return t->pprev != NULL;
}

/* Fires every timer whose deadline is <= NOW_MS: those of earlier ticks
 * first, in no particular order within one tick. A fired timer is no longer
 * pending when its callback runs; the callback may re-add it, add or cancel
 * others (a cancelled timer that was due does not fire), or free the memory
 * that holds it. Timers added by a callback fire on a later advance at the
 * earliest. Not re-entrant: never call it from a timer callback. */
void wheel_advance(struct wheel *wh, int64_t now_ms);

/* The earliest pending deadline in ms, or -1 when no timer is pending.
 * Costs one scan of the slots (plus their timers): for sizing a sleep, not
 * for every event. */
int64_t wheel_next(const struct wheel *wh);

#endif
