/* die_engine.h: the die unit's decoder (CH32V003: RV32EC, no multiplier, 16 KB flash, 2 KB SRAM).
 *
 * The decoder of a conditional VAE (docs/formats.md, "The die decoder"): an int8 latent z of
 * DIE_NZ values and the pip count 1..6 (a one-hot, so its weights are a column pick) -> FC to an
 * 16x2x2 map -> four transposed convolutions (kernel 4, stride 2, padding 1) to 16x4x4, 8x8x8,
 * 4x16x16 and a 1x32x32 score whose sign is the pixel -> a 32x32 1-bit face in SSD1306 pages.
 * (The first two maps were 8 channels wide until the trained decoder showed that width could not
 * draw 3-6 rotated pips; 16 costs 128 B of windows and 2.3 KB of flash.)
 *
 * Integer only, and no multiply anywhere: weights are 4-bit sign-magnitude nibbles (-7..7), a
 * weight times an activation is three conditional adds; scaling is a rounding right shift per
 * output channel, then ReLU and a clamp to 0..255. Every dimension is a power of two, so indexing
 * is shifts too: the rv32ec build calls no __mulsi3 (a test reads its disassembly).
 *
 * Computed in bands: the face is made one SSD1306 page (8 output rows) at a time, and for each
 * band only the rows of the lower maps that band needs are computed (with their one-row halo,
 * recomputed by the next band) into windows of the caller's die_arena_t. No whole map above
 * 16x4x4 is ever held. C99, no malloc, no floats, no globals: weights come in a die_model_t (the
 * unit: the const arrays of the generated die_weights.h; the host: buffers from the binding).
 */
#ifndef QCAT_DIE_ENGINE_H
#define QCAT_DIE_ENGINE_H

#include <stdint.h>

#define DIE_NZ 8u           /* latent values (int8, scale 1/32: a standard normal at 32) */
#define DIE_PIPS 6u         /* pip counts 1..6: the one-hot label */
#define DIE_LAYERS 5u       /* FC, then four transposed convolutions; layer 5 is the face */
#define DIE_FACE 32u        /* the face is DIE_FACE x DIE_FACE pixels */
#define DIE_PAGE_ROWS 8u    /* one SSD1306 page: 8 rows per byte, LSB = top row */
#define DIE_PAGE_BYTES 128u /* 32 columns x 4 pages */
#define DIE_BANDS (DIE_FACE / DIE_PAGE_ROWS)

/* Layer shapes as log2 (every dimension is a power of two): output channels and width
 * (maps are square). Layer 1 is the FC (DIE_NZ + DIE_PIPS inputs), its 64 outputs read as
 * (16, 2, 2) in (C, H, W) order. */
#define DIE_LOG_C1 4u
#define DIE_LOG_W1 1u
#define DIE_LOG_C2 4u
#define DIE_LOG_W2 2u
#define DIE_LOG_C3 3u
#define DIE_LOG_W3 3u
#define DIE_LOG_C4 2u
#define DIE_LOG_W4 4u
#define DIE_LOG_C5 0u
#define DIE_LOG_W5 5u
#define DIE_FC_IN (DIE_NZ + DIE_PIPS)

/* Rows of each layer's window: the most rows of that layer one band needs (kernel 4, stride 2,
 * padding 1: output rows a..b need input rows (a-1)/2 .. (b+1)/2). Band of 8 face rows -> 6 rows
 * of layer 4 -> 4 of layer 3 -> 3 of layer 2 -> both rows of layer 1. */
#define DIE_WIN1 2u
#define DIE_WIN2 3u
#define DIE_WIN3 4u
#define DIE_WIN4 6u

/* The caller's working memory (the unit: one static; 896 bytes). Each window holds rows
 * of one layer as [row][channel][x], uint8 activations 0..255. */
typedef struct {
    uint8_t l1[DIE_WIN1 << (DIE_LOG_C1 + DIE_LOG_W1)];
    uint8_t l2[DIE_WIN2 << (DIE_LOG_C2 + DIE_LOG_W2)];
    uint8_t l3[DIE_WIN3 << (DIE_LOG_C3 + DIE_LOG_W3)];
    uint8_t l4[DIE_WIN4 << (DIE_LOG_C4 + DIE_LOG_W4)];
} die_arena_t;

/* One model. Per layer L (index L-1): packed weights (two 4-bit sign-magnitude nibbles per byte,
 * low nibble first; FC [out][DIE_FC_IN] with the DIE_PIPS label columns last; transposed
 * convolutions [out][in][ky][kx]), an int32 bias per output channel in accumulator units, and a
 * right shift per output channel (unused by layer 5, whose score is only compared with 0). */
typedef struct {
    const uint8_t *weights[DIE_LAYERS];
    const int32_t *bias[DIE_LAYERS];
    const uint8_t *shift[DIE_LAYERS];
    uint32_t label_shift; /* the one-hot's value is 1 << label_shift: its weight is shifted so */
} die_model_t;

/* Called with every window a band computes: `rows` rows of layer `layer` (1..4) starting at map
 * row `row0`, laid out [row][channel][x]. Halo rows come again with the next band, equal. */
typedef void (*die_layer_fn)(void *user, uint32_t layer, uint32_t row0, uint32_t rows,
                             const uint8_t *data);

enum die_error {
    DIE_OK = 0,
    DIE_E_PIPS = 1,  /* pips outside 1..6: a bug in the caller */
    DIE_E_SHIFT = 2  /* a shift over 24 in the model: a bad weight header */
};

/* One face: z (DIE_NZ int8), pips 1..6 -> page_out (DIE_PAGE_BYTES: page p, column x at
 * p * 32 + x; bit r is row 8p + r; 1 = lit). `hook` may be NULL. 0 or a DIE_E_* code, in which
 * case page_out is untouched. */
int die_generate(const die_model_t *m, die_arena_t *arena, const int8_t *z, int pips,
                 uint8_t *page_out, die_layer_fn hook, void *user);

#endif
