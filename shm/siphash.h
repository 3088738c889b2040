/*
 * siphash.h - SipHash-2-4, for hash tables whose keys come from clients.
 */
#ifndef ROTOR_SHM_SIPHASH_H
#define ROTOR_SHM_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-2-4 of LEN bytes at IN under the 128-bit KEY (key[0] the low
 * half), message words read little-endian. Hashes are stored in segment
 * files, so its results must never change. */
uint64_t siphash24(const uint64_t key[2], const void *in, size_t len);

#endif
