/*
 * loop_wait.h - waiting on a real libev loop in the unit tests that drive
 * one (the Redis links, the HTTP client, the proxies, the resolver): run
 * the loop until a condition holds or a time passes, with a ticking timer
 * so that no single ev_run(EVRUN_ONCE) sleeps past the deadline.
 */
#ifndef ROTOR_LOOP_WAIT_H
#define ROTOR_LOOP_WAIT_H

#include <ev.h>

/* Runs the libev loop LP until COND holds or SECS pass; the value of COND. */
#define LOOP_WAIT(lp, cond, secs) __extension__({ \
	double t0_ = ev_time(); \
	while (!(cond) && ev_time() - t0_ < (secs)) \
		ev_run((lp), EVRUN_ONCE); \
	(cond); })

static inline void loop_tick_cb(struct ev_loop *lp, ev_timer *w, int revents)
{
	(void)lp, (void)w, (void)revents;
}

/* Starts a timer on LP that fires every EVERY seconds and does nothing:
 * it bounds each EVRUN_ONCE of LOOP_WAIT. One per test program. */
static inline void loop_tick(struct ev_loop *lp, double every)
{
	static ev_timer w;
	ev_timer_init(&w, loop_tick_cb, every, every);
	ev_timer_start(lp, &w);
}

#endif
