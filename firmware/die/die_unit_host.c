/* die_unit_host.c: host only: what the ctypes binding (firmware/die_unit.py) needs beside
 * die_unit.h itself: the sizes of the structs it mirrors (checked at load, so a change to a struct
 * cannot silently shift a field), the unit's state, counters and reserve, the core's limits, and
 * the decoder compiled into the firmware (die_weights.h), which the simulator runs by default.
 * Never built for the unit. */
#include <string.h>

#include "die_unit.h"
#include "die_weights.h"

uint32_t die_unit_host_sizeof(uint32_t which);
uint32_t die_unit_host_limit(uint32_t which);
uint32_t die_unit_host_state(const die_unit_t *u);
void die_unit_host_stats(const die_unit_t *u, uint32_t out[7]);
void die_unit_host_reserve(const die_unit_t *u, uint32_t out[2], uint8_t *bytes);
const die_model_t *die_unit_host_builtin_model(void);
void die_unit_host_builtin_sha256(uint8_t out[32]);
uint32_t die_unit_host_builtin_array(uint32_t layer, uint32_t what, void *dst, uint32_t cap);

/* 0: die_unit_t, 1: die_board_t, 2: die_identity_t, 3: die_model_t. */
uint32_t die_unit_host_sizeof(uint32_t which)
{
    switch (which) {
    case 0: return (uint32_t)sizeof(die_unit_t);
    case 1: return (uint32_t)sizeof(die_board_t);
    case 2: return (uint32_t)sizeof(die_identity_t);
    case 3: return (uint32_t)sizeof(die_model_t);
    default: return 0;
    }
}

/* The core's constants, so the binding never restates them: 0 max payload, 1 reserve capacity,
 * 2 reject threshold, 3 roll bytes, 4 debounce ms, 5 poll ms, 6 firmware version, 7 the OLED's
 * face column. */
uint32_t die_unit_host_limit(uint32_t which)
{
    switch (which) {
    case 0: return DIE_UNIT_MAX_PAYLOAD;
    case 1: return DIE_UNIT_RESERVE_BYTES;
    case 2: return DIE_UNIT_REJECT;
    case 3: return DIE_UNIT_ROLL_BYTES;
    case 4: return DIE_UNIT_DEBOUNCE_MS;
    case 5: return DIE_UNIT_POLL_MS;
    case 6: return DIE_UNIT_FIRMWARE;
    case 7: return DIE_OLED_FACE_COL;
    default: return 0;
    }
}

uint32_t die_unit_host_state(const die_unit_t *u) { return u->state; }

void die_unit_host_stats(const die_unit_t *u, uint32_t out[7])
{
    out[0] = u->stats.frames_in;
    out[1] = u->stats.frames_bad;
    out[2] = u->stats.frames_out;
    out[3] = u->stats.rolls;
    out[4] = u->stats.presses;
    out[5] = u->stats.refused;
    out[6] = u->stats.rejected;
}

/* start, held; the held bytes into `bytes` (DIE_UNIT_RESERVE_BYTES) when not NULL. */
void die_unit_host_reserve(const die_unit_t *u, uint32_t out[2], uint8_t *bytes)
{
    out[0] = u->start;
    out[1] = u->held;
    if (bytes) memcpy(bytes, u->reserve, u->held);
}

const die_model_t *die_unit_host_builtin_model(void) { return &die_model; }

void die_unit_host_builtin_sha256(uint8_t out[32]) { memcpy(out, die_weights_sha256, 32); }

/* One array of the built-in decoder, layer 1..DIE_LAYERS: what 0 packed weights, 1 biases (int32,
 * host order), 2 shifts; copied into `dst` when it holds `cap` bytes. Returns the array's size in
 * bytes (0: no such array). The binding rebuilds the model from these, so the controller can
 * check the firmware's decoder against a weights file by its content SHA-256. */
uint32_t die_unit_host_builtin_array(uint32_t layer, uint32_t what, void *dst, uint32_t cap)
{
    static const uint32_t w_bytes[DIE_LAYERS] = {sizeof die_w1, sizeof die_w2, sizeof die_w3,
                                                 sizeof die_w4, sizeof die_w5};
    static const uint32_t b_bytes[DIE_LAYERS] = {sizeof die_b1, sizeof die_b2, sizeof die_b3,
                                                 sizeof die_b4, sizeof die_b5};
    static const uint32_t s_bytes[DIE_LAYERS] = {sizeof die_s1, sizeof die_s2, sizeof die_s3,
                                                 sizeof die_s4, sizeof die_s5};
    const void *src;
    uint32_t n;
    if (layer < 1u || layer > DIE_LAYERS) return 0;
    switch (what) {
    case 0: src = die_model.weights[layer - 1u]; n = w_bytes[layer - 1u]; break;
    case 1: src = die_model.bias[layer - 1u]; n = b_bytes[layer - 1u]; break;
    case 2: src = die_model.shift[layer - 1u]; n = s_bytes[layer - 1u]; break;
    default: return 0;
    }
    if (dst && cap >= n) memcpy(dst, src, n);
    return n;
}
