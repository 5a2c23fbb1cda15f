/* sha256.h: SHA-256 (FIPS 180-4), small and portable, for the units' firmware.
 *
 * The cat unit names its image in IMAGE_DONE by the SHA-256 of its RGB bytes, so the controller can
 * tell a damaged transfer from a wrong image (docs/protocol.md). C99, no malloc, no globals (the
 * round constants are const data), no floats; the state is the caller's. Checked against Python's
 * hashlib by tests/test_cat_unit_sha256.py (known answers and every length around the block edges).
 */
#ifndef QCAT_SHA256_H
#define QCAT_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32u
#define SHA256_BLOCK 64u

typedef struct {
    uint32_t h[8];
    uint64_t bytes;               /* message bytes so far */
    uint8_t block[SHA256_BLOCK];  /* the unfinished block */
    uint32_t fill;                /* bytes in `block` */
} sha256_t;

void sha256_init(sha256_t *s);
void sha256_update(sha256_t *s, const uint8_t *data, size_t len);
/* Writes the digest into `out` (32 bytes); `s` must be initialised again before reuse. */
void sha256_final(sha256_t *s, uint8_t out[SHA256_BYTES]);
/* The digest of one buffer. */
void sha256(const uint8_t *data, size_t len, uint8_t out[SHA256_BYTES]);

#endif
