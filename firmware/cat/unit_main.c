/* unit_main.c: the cat unit's side of the engine, as linked for the RISC-V build (rv32imafc,
 * picolibc). It owns the one static engine and arena of the unit and reads the weight image from
 * the SD card through the board's block driver. The real board support (SD, LCD, DAC, serial
 * protocol) plugs in through the weak functions below; this file exists so the rv32 build links a
 * complete image and `size` / -fstack-usage measure what the unit will really carry. Until the
 * unit's protocol state machine lands, a job arrives as a GENERATE frame through the shared
 * framing (common/frame.c) and nothing is answered. */
#include <stdint.h>
#include <string.h>

#include "cat_engine.h"
#include "frame.h"

/* The weight image starts at this SD block (the card layout of `qcat sd`). */
#define UNIT_WEIGHTS_LBA 2048u
#define UNIT_IMAGE_BYTES (64u * 64u * 3u)

/* Board support the real unit provides (weak defaults below keep the image linkable). */
int board_sd_read_blocks(uint32_t lba, uint8_t *dst, uint32_t count);
int board_serial_read(uint8_t *byte);
int board_receive_latent(int8_t *latent, uint32_t n);
void board_progress(uint32_t done, uint32_t total);
void board_show(const uint8_t *rgb, int status);

static cat_engine_t engine;
static uint8_t arena[CAT_ARENA_BUDGET] __attribute__((aligned(CAT_ARENA_ALIGN)));
static uint8_t frame[UNIT_IMAGE_BYTES];
static uint8_t sector[QCW_SECTOR];
static uint8_t rx[QP_MAX_RAW];

/* Board support: multi-block SD read of `count` 512-byte blocks. Weak so the board overrides it. */
__attribute__((weak)) int board_sd_read_blocks(uint32_t lba, uint8_t *dst, uint32_t count)
{
    (void)lba;
    (void)dst;
    (void)count;
    return -1;
}

/* Board support: one byte from the controller's serial line (blocking); non-zero when the line
 * is gone. Weak so the board overrides it. */
__attribute__((weak)) int board_serial_read(uint8_t *byte)
{
    (void)byte;
    return -1;
}

/* The latent of the next GENERATE frame from the controller; frames of other types and damaged
 * frames are skipped (the state machine will answer them). Weak so a board may replace it. */
__attribute__((weak)) int board_receive_latent(int8_t *latent, uint32_t n)
{
    qp_decoder_t dec;
    qp_frame_t got;
    uint8_t byte;
    if (n != QP_GENERATE_LATENT_LEN) return -1;
    qp_decoder_init(&dec, rx, sizeof rx);
    while (board_serial_read(&byte) == 0) {
        if (qp_decoder_feed(&dec, byte, &got) != QP_OK) continue;
        if (got.type != QP_MSG_GENERATE ||
            qp_payload_check(got.type, got.length) != QP_OK)
            continue;
        memcpy(latent, got.payload + QP_GENERATE_LATENT, n);
        return 0;
    }
    return -1;
}
/* Board support: show progress and the image. */
__attribute__((weak)) void board_progress(uint32_t done, uint32_t total) { (void)done; (void)total; }
__attribute__((weak)) void board_show(const uint8_t *rgb, int status) { (void)rgb; (void)status; }

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

static void on_progress(void *user, uint32_t done, uint32_t total, uint32_t layer)
{
    (void)user;
    (void)layer;
    board_progress(done, total);
}

int main(void)
{
    cat_io_t io = {sd_read, 0, 0, 0};
    int rc = cat_open(&engine, &io, arena, sizeof arena);
    if (rc != CAT_OK) {
        board_show(0, rc);
        return rc;
    }
    int8_t latent[128];
    if (engine.model.nz > sizeof latent ||
        (uint32_t)engine.model.image_size * engine.model.image_size * engine.model.image_channels >
            sizeof frame)
        return CAT_E_UNSUPPORTED;
    for (;;) {
        if (board_receive_latent(latent, engine.model.nz) != 0) break;
        cat_hooks_t hooks = {on_progress, 0, 0};
        rc = cat_generate(&engine, latent, frame, &hooks);
        board_show(rc == CAT_OK ? frame : 0, rc);
    }
    return 0;
}
