/*
 * rlock.h - the robust, process-shared lock every shm structure carries,
 * with the pid of its holder beside it (advisory, for humans and stats).
 */
#ifndef ROTOR_SHM_RLOCK_H
#define ROTOR_SHM_RLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

/* getpid(), cached; a forked child asks the kernel again. */
pid_t rlock_pid(void);

/* Initialises M as a robust, process-shared, error-checking mutex. Returns
 * 0 or an errno value (errno itself is left alone). */
int rlock_init(pthread_mutex_t *m);

/* Locks M. If its holder died (EOWNERDEAD), calls REPAIR(ARG), if not NULL,
 * with M held and before M is marked consistent, so that a repairer killed
 * midway leaves the next locker to repair again. Then stores the caller's
 * pid in *OWNER (relaxed). Returns 0, or -1 with errno (M not held). */
int rlock_lock(pthread_mutex_t *m, int32_t *owner, void (*repair)(void *arg), void *arg);

/* Clears *OWNER (relaxed) and unlocks M, which the caller holds. */
void rlock_unlock(pthread_mutex_t *m, int32_t *owner);

#endif
