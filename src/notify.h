/*
 * notify.h - the service manager's readiness protocol (sd_notify(3)),
 * spoken by hand: one datagram of newline-separated assignments to the
 * unix socket named by $NOTIFY_SOCKET. No libsystemd.
 */
#ifndef ROTOR_NOTIFY_H
#define ROTOR_NOTIFY_H

#include "rotor.h"

/* Sends the assignments made of FMT ("READY=1", "MAINPID=%ld\nREADY=1")
 * to $NOTIFY_SOCKET: a filesystem path, or an abstract name when it starts
 * with '@'. Does nothing when the variable is unset or empty. Returns
 * RT_OK (sent or nothing to do) or RT_ERR (logged). */
int notify_send(const char *fmt, ...) ROTOR_PRINTF(1, 2);

#endif
