/* unit_main.c: the cat unit's entry point, as linked for the RISC-V build (rv32imafc, picolibc).
 * It owns the one static unit and arena and wires the firmware core (cat_unit.c) to the board:
 * the weight image from the SD card through the board's block driver, the card's reserve and
 * journal through its FAT driver (offline work), the USB serial line, the millisecond tick, the
 * LCD and the DAC. The real board support plugs in through the weak functions below;
 * they keep the image linkable so that `size` and -fstack-usage measure what the unit will really
 * carry. The protocol itself is entirely cat_unit.c's (the simulator runs the same file). */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "cat_unit.h"

/* The weight image starts at this SD block (the card layout of `qcat sd`). */
#define UNIT_WEIGHTS_LBA 2048u
/* Bytes taken from the serial line per turn of the main loop. */
#define UNIT_RX_CHUNK 64u


static cat_unit_t unit;
static uint8_t arena[CAT_ARENA_BUDGET] __attribute__((aligned(CAT_ARENA_ALIGN)));
static uint8_t sector[QCW_SECTOR];

/* Multi-block SD read of `count` 512-byte blocks; non-zero on failure. */
__attribute__((weak)) int board_sd_read_blocks(uint32_t lba, uint8_t *dst, uint32_t count)
{
    (void)lba;
    (void)dst;
    (void)count;
    return -1;
}
/* `len` bytes of RESERVE.QCR or JOURNAL.QCJ (enum cat_card_file) at `offset`, through the FAT
 * driver; non-zero on failure (the default: no card access, so no offline work). */
__attribute__((weak)) int board_card_read(uint32_t file, uint32_t offset, uint8_t *dst,
                                          uint32_t len)
{
    (void)file;
    (void)offset;
    (void)dst;
    (void)len;
    return -1;
}
/* Rewrite bytes inside a card file (never growing it), then flush the card's cache: return only
 * once the sector is on the card. */
__attribute__((weak)) int board_card_write(uint32_t file, uint32_t offset, const uint8_t *src,
                                           uint32_t len)
{
    (void)file;
    (void)offset;
    (void)src;
    (void)len;
    return -1;
}
/* Show a 64 x 64 RGB image on the LCD. */
__attribute__((weak)) void board_lcd_show(const uint8_t *rgb, uint32_t len)
{
    (void)rgb;
    (void)len;
}
/* The bytes the USB CDC endpoint received since the last call (never blocks). */
__attribute__((weak)) uint32_t board_serial_read(uint8_t *dst, uint32_t cap)
{
    (void)dst;
    (void)cap;
    return 0;
}
/* Queue bytes for the controller. */
__attribute__((weak)) void board_serial_write(const uint8_t *bytes, uint32_t len)
{
    (void)bytes;
    (void)len;
}
/* The SysTick millisecond counter. */
__attribute__((weak)) uint32_t board_millis(void) { return 0; }
/* Start playing the verdict's four clips from the card's clip bank; non-zero when there is none. */
__attribute__((weak)) int board_dac_speak(uint32_t verdict)
{
    (void)verdict;
    return -1;
}
__attribute__((weak)) int board_dac_busy(void) { return 0; }
/* Serial number and the card manifest's hashes. */
__attribute__((weak)) void board_identity(cat_identity_t *id) { memset(id, 0, sizeof *id); }
/* Sleep until an interrupt or `ms` milliseconds (WFI with a timer). */
__attribute__((weak)) void board_wait(uint32_t ms) { (void)ms; }

/* Byte-addressed reads on top of whole blocks: slices and the header are sector-aligned, so only
 * the odd unaligned tail goes through the bounce sector. */
static int sd_read(void *ctx, uint64_t offset, uint8_t *dst, uint32_t len)
{
    (void)ctx;
    while (len > 0) {
        uint32_t lba = UNIT_WEIGHTS_LBA + (uint32_t)(offset / QCW_SECTOR);
        uint32_t skip = (uint32_t)(offset % QCW_SECTOR);
        if (skip == 0 && len >= QCW_SECTOR) {
            uint32_t blocks = len / QCW_SECTOR;
            if (board_sd_read_blocks(lba, dst, blocks) != 0) return -1;
            dst += blocks * QCW_SECTOR;
            offset += (uint64_t)blocks * QCW_SECTOR;
            len -= blocks * QCW_SECTOR;
        } else {
            uint32_t take = QCW_SECTOR - skip;
            if (take > len) take = len;
            if (board_sd_read_blocks(lba, sector, 1) != 0) return -1;
            memcpy(dst, sector + skip, take);
            dst += take;
            offset += take;
            len -= take;
        }
    }
    return 0;
}

static void serial_write(void *ctx, const uint8_t *frame, uint32_t len)
{
    (void)ctx;
    board_serial_write(frame, len);
}
static uint32_t millis(void *ctx)
{
    (void)ctx;
    return board_millis();
}
static int speak_start(void *ctx, uint32_t verdict)
{
    (void)ctx;
    return board_dac_speak(verdict);
}
static int speak_busy(void *ctx)
{
    (void)ctx;
    return board_dac_busy();
}

static int card_read(void *ctx, uint32_t file, uint32_t offset, uint8_t *dst, uint32_t len)
{
    (void)ctx;
    return board_card_read(file, offset, dst, len);
}
static int card_write(void *ctx, uint32_t file, uint32_t offset, const uint8_t *src, uint32_t len)
{
    (void)ctx;
    return board_card_write(file, offset, src, len);
}
static void display(void *ctx, const uint8_t *rgb, uint32_t len)
{
    (void)ctx;
    board_lcd_show(rgb, len);
}

int main(void)
{
    cat_board_t board = {
        .serial_write = serial_write, .millis = millis, .speak_start = speak_start,
        .speak_busy = speak_busy, .sd = {sd_read, 0, 0, 0}, .card_read = card_read,
        .card_write = card_write, .display = display,
        .offline_after_ms = CAT_UNIT_OFFLINE_AFTER_MS,
        .offline_period_ms = CAT_UNIT_OFFLINE_PERIOD_MS};
    cat_identity_t id;
    board_identity(&id);
    /* A card the engine refuses leaves the unit in QP_STATE_FAULT: it still talks, and says why. */
    (void)cat_unit_init(&unit, &board, &id, arena, sizeof arena);
    for (;;) {
        uint8_t rx[UNIT_RX_CHUNK];
        uint32_t n = board_serial_read(rx, sizeof rx);
        if (n) cat_unit_rx(&unit, rx, n);
        uint32_t wait = cat_unit_poll(&unit);
        if (n == 0 && wait) board_wait(wait);
    }
}
