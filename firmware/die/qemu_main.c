/* qemu_main.c: the die unit's core driven like a controller would, for two builds of the same
 * bytes: rv32ec under `qemu-system-riscv32 -machine virt` (picolibc, semihosting: `make qemu-die`)
 * and the host (`make qemu-die-host`). A test runs both and compares what they wrote.
 *
 * The "controller" here tops the unit up with TOPUP frames of DIE_UNIT_TOPUP_MAX seeded entropy
 * bytes (xorshift32, QEMU_SEED) whenever a ROLL_REQUEST is refused with QP_E_NO_ENTROPY, and sends
 * ROLL_REQUEST frames until QEMU_ROLLS faces are rolled. Everything goes through die_unit_rx()
 * as encoded frames, exactly as from the serial line.
 *
 * Output, in the working directory (semihosting opens the host's files):
 *   die_rolls.bin    every frame the unit sent, as sent (RESERVE, ACK, ROLL, ERROR)
 *   die_oled.bin     the SSD1306's 8 x 128 bytes after the last roll
 *   die_counts.txt   one line per roll: "roll <n> instret <i> cycle <c>", the RV32 counters read
 *                    around the die_unit_rx() that takes the ROLL_REQUEST (decode, roll, the OLED,
 *                    the ROLL frame): 0 on the host. Run QEMU with -icount shift=0 so that they
 *                    count instructions (without it QEMU reads the host's clock into them).
 * Exit status 0 when all rolls were made, 1 otherwise. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "die_unit.h"
#include "die_weights.h"

#ifndef QEMU_ROLLS
#define QEMU_ROLLS 120u
#endif
#ifndef QEMU_SEED
#define QEMU_SEED 0x2545F491u
#endif

typedef struct {
    FILE *frames;
    uint32_t ms;
    qp_decoder_t dec;     /* the unit's replies, read back like a controller would */
    uint8_t buf[QP_MAX_RAW];
    uint8_t last_type;
    uint16_t last_error;
    uint8_t oled[DIE_OLED_PAGES][DIE_OLED_WIDTH];
} rig_t;

static rig_t rig;
static die_unit_t unit;

static void serial_write(void *ctx, const uint8_t *frame, uint32_t len)
{
    rig_t *r = ctx;
    uint32_t i;
    fwrite(frame, 1, len, r->frames);
    for (i = 0; i < len; i++) {
        qp_frame_t f;
        if (qp_decoder_feed(&r->dec, frame[i], &f) != QP_OK) continue;
        r->last_type = f.type;
        r->last_error = f.type == QP_MSG_ERROR ? qp_get_u16(f.payload + QP_ERROR_CODE) : 0;
    }
}

static uint32_t millis(void *ctx)
{
    rig_t *r = ctx;
    return r->ms;  /* frozen: no heartbeat is due, the output depends on the bytes alone */
}

static void oled_write(void *ctx, uint32_t page, uint32_t col, const uint8_t *data, uint32_t n)
{
    rig_t *r = ctx;
    if (page < DIE_OLED_PAGES && col + n <= DIE_OLED_WIDTH) memcpy(&r->oled[page][col], data, n);
}

static uint32_t xorshift32(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void send_frame(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t length)
{
    uint8_t wire[DIE_UNIT_RX_BYTES + 4u];
    size_t n = qp_frame_encode(type, seq, payload, length, wire, sizeof wire);
    die_unit_rx(&unit, wire, (uint32_t)n);
}

static void counters(uint32_t *instret, uint32_t *cycle)
{
#if defined(__riscv)
    /* csrr rd, minstret (0xB02) / mcycle (0xB00), spelled as raw I-type SYSTEM instructions:
     * -march=rv32ec has no Zicsr for the assembler, and QEMU's CPU has it anyway. */
    __asm__ volatile(".insn i 0x73, 2, %0, x0, -1278" : "=r"(*instret));
    __asm__ volatile(".insn i 0x73, 2, %0, x0, -1280" : "=r"(*cycle));
#else
    *instret = 0;
    *cycle = 0;
#endif
}

int main(void)
{
    die_board_t io = {serial_write, millis, oled_write, 0, &rig};
    die_identity_t id;
    uint8_t topup[DIE_UNIT_MAX_PAYLOAD];
    uint32_t state = QEMU_SEED, sent = 0, rolls = 0, tries = 0, k;
    uint16_t seq = 0;
    FILE *counts;
    memset(&id, 0, sizeof id);
    memcpy(id.serial, "die-qemu", 8);
    memcpy(id.weights_sha256, die_weights_sha256, sizeof id.weights_sha256);
    rig.frames = fopen("die_rolls.bin", "wb");
    counts = fopen("die_counts.txt", "w");
    if (!rig.frames || !counts) return 2;
    qp_decoder_init(&rig.dec, rig.buf, sizeof rig.buf);
    if (die_unit_init(&unit, &io, &id, &die_model) != DIE_OK) return 3;
    while (rolls < QEMU_ROLLS && tries < 4u * QEMU_ROLLS) {
        uint32_t i0, c0, i1, c1;
        tries++;
        counters(&i0, &c0);
        send_frame(QP_MSG_ROLL_REQUEST, seq++, 0, 0);
        counters(&i1, &c1);
        if (rig.last_type == QP_MSG_ROLL) {
            rolls++;
            fprintf(counts, "roll %lu instret %lu cycle %lu\n", (unsigned long)rolls,
                    (unsigned long)(i1 - i0), (unsigned long)(c1 - c0));
            continue;
        }
        if (rig.last_error != QP_E_NO_ENTROPY) break;
        /* Refused: top up from the stream's next byte on. */
        qp_put_u32(topup + QP_TOPUP_OFFSET, sent);
        for (k = 0; k < DIE_UNIT_TOPUP_MAX; k++)
            topup[QP_TOPUP_ENTROPY + k] = (uint8_t)(xorshift32(&state) >> 24);
        send_frame(QP_MSG_TOPUP, seq++, topup, (uint16_t)DIE_UNIT_MAX_PAYLOAD);
        if (rig.last_type != QP_MSG_RESERVE) break;
        sent += DIE_UNIT_TOPUP_MAX;
    }
    fclose(rig.frames);
    fclose(counts);
    rig.frames = fopen("die_oled.bin", "wb");
    if (!rig.frames) return 2;
    fwrite(rig.oled, 1, sizeof rig.oled, rig.frames);
    fclose(rig.frames);
    return rolls == QEMU_ROLLS ? 0 : 1;
}
