/*
 * rotor.h - what every part of rotor shares: the result codes that functions
 * return, and a few attributes. Kept tiny on purpose.
 */
#ifndef ROTOR_H
#define ROTOR_H

#include <stddef.h>
#include <stdint.h>

/* The small shared set of result codes. Functions return RT_OK (0) on success
 * and a negative code on failure; details go to the log or to a report. */
/* (Not R_OK: <unistd.h> owns that name for access(2).) */
enum {
	RT_OK = 0,
	RT_ERR = -1,    /* failed; the reason was logged or reported */
	RT_AGAIN = -2,  /* would block: try again when ready */
	RT_NOMEM = -3,  /* allocation failed */
	RT_INVAL = -4,  /* the input was refused */
	RT_CLOSED = -5, /* the peer or the object is gone */
};

#define ROTOR_NAME "rotor"
#define ROTOR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define ROTOR_UNUSED __attribute__((unused))
#define ROTOR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define ROTOR_NORETURN __attribute__((noreturn))

#endif
