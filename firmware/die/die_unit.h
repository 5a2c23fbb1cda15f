/* die_unit.h: the die unit's firmware core: the serial protocol, the entropy reserve, the roll and
 * the SSD1306, around the die engine (CH32V003: RV32EC, 16 KB flash, 2 KB SRAM, no multiplier).
 *
 * What the unit does with the controller (docs/protocol.md, "The die unit"): answer HELLO with
 * its identity (kind die, the decoder's content SHA-256), send HEARTBEAT every QP_HEARTBEAT_MS,
 * keep a reserve of unspent entropy bytes that the controller fills with TOPUP (answered with
 * RESERVE), roll when its button is pressed or a ROLL_REQUEST arrives (ROLL: the pips, the face's
 * 128 SSD1306 page bytes, where in the entropy stream the roll's bytes lie), refuse what it cannot
 * take with ERROR (the protocol table's codes) and answer RESET with ACK. The real unit links it
 * (`make rv32-die`, die_main.c), the simulator runs it (`qcat sim die`, build/libdieunit.so) and
 * the QEMU test runs it (die/qemu_main.c): there is no second copy of this logic.
 *
 * A roll, atomically (nothing is spent unless all of it can be paid for):
 *   1. pips: the reserve's next byte b; b >= DIE_UNIT_REJECT (252) is spent and the next byte
 *      tried (252 = 42 x 6: what is left is uniform over 1..6); pips = 1 + b mod 6, the mod by
 *      subtracting 6 << k for k = 5..0 (RV32EC has no divide);
 *   2. the latent: the next DIE_NZ bytes through die_gauss[] (models.die_reference.gauss_table);
 *   3. the face: die_generate(), straight into the ROLL payload; shown on the OLED at 2x;
 *   4. ROLL(pips, face, entropy_offset = the stream position of the roll's first byte,
 *      entropy_used = the bytes spent, rejected ones included).
 * The controller re-derives pips and face from its own copy of those bytes.
 *
 * C99, no malloc, no globals, no floats, no multiply or divide (a test reads the rv32ec
 * disassembly). The board is behind callbacks (die_board_t): one whole frame out per
 * serial_write, a millisecond clock, the SSD1306 written a page run at a time (never a 1 KB
 * framebuffer), and the button's raw level (the core debounces it). Everything else lives in the
 * caller's die_unit_t (about 1.3 KB with the engine's arena), so two units share nothing.
 *
 * Driving it: feed received bytes to die_unit_rx() as they arrive; every request is answered
 * there, at once (a roll takes a few milliseconds, far inside QP_REPLY_MS). Call die_unit_poll()
 * at least every DIE_UNIT_POLL_MS: it samples the button, rolls on a debounced press and sends
 * heartbeats; it returns how long the unit may sleep.
 */
#ifndef QCAT_DIE_UNIT_H
#define QCAT_DIE_UNIT_H

#include <stdint.h>

#include "die_engine.h"
#include "frame.h"

/* The firmware version this core reports when the board does not set one: major.minor.patch. */
#define DIE_UNIT_FIRMWARE ((0u << 16) | (1u << 8) | 0u)
/* The largest payload the unit takes (HELLO.max_payload): GENERATE's, the longest request of
 * either kind of unit, so that whatever the controller sends a die by mistake is read and refused
 * for what it is (QP_E_UNEXPECTED); it takes the controller's 88-byte HELLO, and a TOPUP of
 * DIE_UNIT_TOPUP_MAX entropy bytes. A longer frame is refused as QP_E_TOO_LONG. */
#define DIE_UNIT_MAX_PAYLOAD QP_GENERATE_SIZE
#define DIE_UNIT_TOPUP_MAX (DIE_UNIT_MAX_PAYLOAD - QP_TOPUP_ENTROPY)
/* The decoder's buffer: header, the largest payload, CRC. */
#define DIE_UNIT_RX_BYTES (QP_HEADER_BYTES + DIE_UNIT_MAX_PAYLOAD + QP_CRC_BYTES)
/* The largest payload the unit sends is ROLL's; its frame on the wire: COBS adds a code byte per
 * 254 and one more, then the delimiter. */
#define DIE_UNIT_TX_PAYLOAD QP_ROLL_SIZE
#define DIE_UNIT_TX_BYTES (QP_HEADER_BYTES + DIE_UNIT_TX_PAYLOAD + QP_CRC_BYTES + 2u + 1u)
/* Entropy bytes the reserve holds (RESERVE.capacity). At most 255, so that a roll's
 * entropy_used (u8) can never overflow, whatever the run of rejected bytes. */
#define DIE_UNIT_RESERVE_BYTES 192u
/* Entropy bytes of one roll, rejections aside: the pips byte and the latent. */
#define DIE_UNIT_ROLL_BYTES (1u + DIE_NZ)
/* A pips byte at or above this is rejected (252 = 42 x 6). */
#define DIE_UNIT_REJECT 252u
/* The button's level must hold this long before a change counts (contact bounce). */
#define DIE_UNIT_DEBOUNCE_MS 20u
/* How often die_unit_poll() wants to be called to see the button. */
#define DIE_UNIT_POLL_MS 5u
/* The SSD1306: 128 x 64 pixels in 8 pages of 8 rows; the 32 x 32 face is shown at 2x, centred. */
#define DIE_OLED_WIDTH 128u
#define DIE_OLED_PAGES 8u
#define DIE_OLED_FACE_COL ((DIE_OLED_WIDTH - 2u * DIE_FACE) >> 1) /* 32 */

typedef struct {
    /* One whole frame for the controller, delimiter included (one call per frame). */
    void (*serial_write)(void *ctx, const uint8_t *frame, uint32_t len);
    /* Milliseconds from any fixed origin, wrapping at 2^32. */
    uint32_t (*millis)(void *ctx);
    /* Write `n` bytes to the SSD1306's page `page` (0..7) from column `col` on: one byte is 8
     * rows of one column, LSB on top (the display's own page addressing mode). */
    void (*oled_write)(void *ctx, uint32_t page, uint32_t col, const uint8_t *data, uint32_t n);
    /* The button's raw level, non-zero while pressed (bouncing is the core's problem). Optional:
     * NULL for a unit rolled only by ROLL_REQUEST. */
    int (*button)(void *ctx);
    void *ctx;
} die_board_t;

/* Who the unit says it is in HELLO. */
typedef struct {
    char serial[QP_HELLO_SERIAL_LEN];  /* ASCII, zero-padded; 16 characters need no terminator */
    uint32_t firmware;                 /* major << 16 | minor << 8 | patch (0: DIE_UNIT_FIRMWARE) */
    uint8_t weights_sha256[QP_HELLO_WEIGHTS_SHA256_LEN]; /* the decoder's content SHA-256 */
} die_identity_t;

/* Counters for tests, the simulator's log and a board's diagnostics. */
typedef struct {
    uint32_t frames_in;      /* frames that passed the decoder (CRC, version, length) */
    uint32_t frames_bad;     /* frames refused for what they are: damaged, malformed, not a die's */
    uint32_t frames_out;     /* frames sent */
    uint32_t rolls;          /* faces rolled (button and ROLL_REQUEST) */
    uint32_t presses;        /* debounced button presses (a refused roll counts too) */
    uint32_t refused;        /* rolls refused for want of entropy (or by the fault state) */
    uint32_t rejected;       /* pips bytes >= DIE_UNIT_REJECT spent and skipped */
} die_unit_stats_t;

typedef struct {
    die_board_t board;
    die_identity_t id;
    const die_model_t *model;
    int engine_rc;           /* the trial roll's answer at init: non-zero keeps QP_STATE_FAULT */
    uint8_t state;           /* enum qp_state */
    uint8_t level;           /* the button's debounced level */
    uint8_t raw;             /* the button's last raw level */
    uint8_t roll_pips;       /* the last roll (0: none yet), for the host's diagnostics */
    uint16_t tx_seq;
    uint16_t held;           /* reserve bytes [0, held) are stream bytes [start, start + held) */
    uint32_t start;
    uint32_t boot_ms, heartbeat_ms, raw_ms;
    die_unit_stats_t stats;
    qp_decoder_t dec;
    /* The engine's windows are needed only while die_generate() runs, the encoded frame and the
     * OLED's scratch line only outside it: they share the memory (2 KB of SRAM in all). */
    union {
        die_arena_t arena;
        uint8_t tx[DIE_UNIT_TX_BYTES];
    } work;
    uint8_t reserve[DIE_UNIT_RESERVE_BYTES];
    uint8_t rx[DIE_UNIT_RX_BYTES];
    uint8_t payload[DIE_UNIT_TX_PAYLOAD];  /* ROLL's face is generated in place here */
} die_unit_t;

/* Start idle with an empty reserve (start 0, held 0), the display cleared. `model` is the decoder
 * (the unit: die_weights.h's die_model). A trial roll checks the model: if the engine refuses it
 * (a DIE_E_* code, returned) the unit stays in QP_STATE_FAULT, still answering HELLO, TOPUP and
 * heartbeats, and refuses rolls with QP_E_ENGINE. -1 when a pointer or callback is missing. */
int die_unit_init(die_unit_t *u, const die_board_t *board, const die_identity_t *id,
                  const die_model_t *model);
/* Received bytes, any number, as they came; every frame they complete is answered at once. */
void die_unit_rx(die_unit_t *u, const uint8_t *bytes, uint32_t n);
/* The line was opened again: forget a half-received frame. */
void die_unit_line_reset(die_unit_t *u);
/* The button and the heartbeat (see the top of this file). Returns the milliseconds until it
 * next has something to do: at most DIE_UNIT_POLL_MS with a button, else QP_HEARTBEAT_MS. */
uint32_t die_unit_poll(die_unit_t *u);

/* What a roll spends, without rolling: the bytes a roll from `bytes` (n of them) would use and
 * its pips, or 0 when they cannot pay for one. The recipe of the roll, for the board's tests and
 * the QEMU main. */
uint32_t die_roll_recipe(const uint8_t *bytes, uint32_t n, int *pips, int8_t *z);

#endif
