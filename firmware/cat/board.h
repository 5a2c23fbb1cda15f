/* board.h: what the cat unit's board gives the firmware (unit_main.c): the SD card's blocks, the
 * card's files, the serial line, the clock, the LCD and the DAC. unit_main.c defines weak
 * defaults (so the image links and `size` measures it); a board file defines the real ones: the
 * CH32H417 board, or board_qemu.c for QEMU's virt machine. */
#ifndef QCAT_CAT_BOARD_H
#define QCAT_CAT_BOARD_H

#include <stdint.h>

#include "cat_unit.h"

/* Multi-block SD read of `count` 512-byte blocks; non-zero on failure. */
int board_sd_read_blocks(uint32_t lba, uint8_t *dst, uint32_t count);
/* `len` bytes of RESERVE.QCR or JOURNAL.QCJ (enum cat_card_file) at `offset`; non-zero on failure. */
int board_card_read(uint32_t file, uint32_t offset, uint8_t *dst, uint32_t len);
/* Rewrite bytes inside a card file (never growing it); return once they are on the card. */
int board_card_write(uint32_t file, uint32_t offset, const uint8_t *src, uint32_t len);
void board_lcd_show(const uint8_t *rgb, uint32_t len);
/* Bytes received since the last call, at most `cap`. */
uint32_t board_serial_read(uint8_t *dst, uint32_t cap);
void board_serial_write(const uint8_t *bytes, uint32_t len);
uint32_t board_millis(void);
int board_dac_speak(uint32_t verdict);
int board_dac_busy(void);
void board_identity(cat_identity_t *id);
/* Sleep up to `ms` milliseconds, or until a byte arrives. */
void board_wait(uint32_t ms);

#endif
