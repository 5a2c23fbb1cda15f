/* die_main.c: the die unit's image as linked for the RV32EC build (CH32V003, picolibc), so that
 * `size` and -fstack-usage measure what the engine and its weights really cost. The unit core
 * (protocol, SSD1306, the roll's entropy) comes later and plugs in through the weak board
 * functions below; until then main() renders one face per roll and hands its pages on. */
#include <stdint.h>

#include "die_engine.h"
#include "die_weights.h"

/* The roll: the latent and the pip count (the unit core fills these from entropy records). */
int board_roll(int8_t *z, int *pips);
/* Send the 128 page bytes to the SSD1306 (shown at 2x on the 128x64 panel). */
void board_show(const uint8_t *page_bytes);

static die_arena_t arena;
static uint8_t face[DIE_PAGE_BYTES];

__attribute__((weak)) int board_roll(int8_t *z, int *pips)
{
    uint32_t i;
    for (i = 0; i < DIE_NZ; i++) z[i] = 0;
    *pips = 1;
    return 0;
}

__attribute__((weak)) void board_show(const uint8_t *page_bytes) { (void)page_bytes; }

int main(void)
{
    int8_t z[DIE_NZ];
    int pips;
    for (;;) {
        if (board_roll(z, &pips) != 0) continue;
        if (die_generate(&die_model, &arena, z, pips, face, 0, 0) == DIE_OK) board_show(face);
    }
}
