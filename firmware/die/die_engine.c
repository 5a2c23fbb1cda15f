/* die_engine.c: the die decoder, band by band, with adds and shifts only (see die_engine.h).
 *
 * The arithmetic is exactly models/die_reference.py's (docs/formats.md, "The die decoder"):
 *   acc = bias[o] + sum of weight * input (int32, exact: |acc| stays far below 2^31)
 *   layers 1-4: out = acc <= 0 ? 0 : min((acc + (1 << s >> 1)) >> s, 255), s = shift[o]
 *   layer 5:    pixel lit when acc > 0
 * Transposed convolutions are computed in gather form: output (oy, ox) takes input (iy, ix) with
 * oy = 2 iy - 1 + ky, so each output pixel sums 2x2 taps per input channel.
 * Products are never written `*`: gcc has no multiply on RV32EC and would call __mulsi3.
 */
#include "die_engine.h"

#include <stddef.h>

#define DIE_MAX_SHIFT 24u
#define DIE_ACT_MAX 255

/* Shapes of layers 1..5 (index 0..4): log2 of output channels and output width. */
static const uint8_t log_c[DIE_LAYERS] = {DIE_LOG_C1, DIE_LOG_C2, DIE_LOG_C3, DIE_LOG_C4,
                                          DIE_LOG_C5};
static const uint8_t log_w[DIE_LAYERS] = {DIE_LOG_W1, DIE_LOG_W2, DIE_LOG_W3, DIE_LOG_W4,
                                          DIE_LOG_W5};

/* A window of one layer's rows: the first map row it holds and where they are. */
typedef struct {
    uint8_t *data;
    uint32_t row0;
    uint32_t rows;
} window_t;

/* weight (4-bit sign-magnitude nibble) x a: three conditional adds of a, 2a, 4a. */
static int32_t times_nibble(int32_t a, uint32_t nib)
{
    int32_t s = 0;
    if (nib & 1u) s += a;
    a += a;
    if (nib & 2u) s += a;
    a += a;
    if (nib & 4u) s += a;
    return (nib & 8u) ? -s : s;
}

static uint32_t nibble(const uint8_t *packed, uint32_t i)
{
    return ((uint32_t)packed[i >> 1] >> ((i & 1u) << 2)) & 15u;
}

/* ReLU, rounding right shift, clamp: the requantization of layers 1-4. */
static uint8_t requantize(int32_t acc, uint32_t s)
{
    if (acc <= 0) return 0;
    acc = (int32_t)(((uint32_t)acc + ((1u << s) >> 1)) >> s);
    return (uint8_t)(acc > DIE_ACT_MAX ? DIE_ACT_MAX : acc);
}

/* Layer 1 (FC) into its window: both rows of the 16x2x2 map. Output j = (c, y, x) in C order. */
static void fc(const die_model_t *m, const int8_t *z, uint32_t label, uint8_t *out)
{
    const uint32_t n_out = 1u << (DIE_LOG_C1 + 2u * DIE_LOG_W1);
    uint32_t j, i, base = 0;
    for (j = 0; j < n_out; j++, base += DIE_FC_IN) {
        int32_t acc = m->bias[0][j >> (2u * DIE_LOG_W1)];
        uint32_t nib = nibble(m->weights[0], base + DIE_NZ + label);
        int32_t col = (int32_t)((nib & 7u) << m->label_shift);  /* the one-hot: a column pick */
        uint32_t c = j >> (2u * DIE_LOG_W1);
        uint32_t y = (j >> DIE_LOG_W1) & ((1u << DIE_LOG_W1) - 1u);
        uint32_t x = j & ((1u << DIE_LOG_W1) - 1u);
        acc += (nib & 8u) ? -col : col;
        for (i = 0; i < DIE_NZ; i++)
            acc += times_nibble(z[i], nibble(m->weights[0], base + i));
        out[(((y << DIE_LOG_C1) + c) << DIE_LOG_W1) + x] =
            requantize(acc, m->shift[0][j >> (2u * DIE_LOG_W1)]);
    }
}

/* The accumulator of output channel oc at (oy, ox) of layer L (2..5, index li = L-1) from the
 * window `in` of layer L-1. Only taps inside the input map contribute (the padding is zero). */
static int32_t tc_acc(const die_model_t *m, uint32_t li, const window_t *in, uint32_t oc,
                      uint32_t oy, uint32_t ox)
{
    const uint32_t lcin = log_c[li - 1u], lwin = log_w[li - 1u];
    const uint32_t w_in = 1u << lwin, c_in = 1u << lcin;
    const uint8_t *w = m->weights[li];
    int32_t acc = m->bias[li][oc];
    uint32_t ky, kx, ic;
    for (ky = (oy & 1u) ? 0u : 1u; ky < 4u; ky += 2u) {
        uint32_t iy2 = oy + 1u;
        const uint8_t *row;
        if (iy2 < ky) continue;
        iy2 = (iy2 - ky) >> 1;
        if (iy2 >= w_in) continue;
        row = in->data + ((iy2 - in->row0) << (lcin + lwin));
        for (kx = (ox & 1u) ? 0u : 1u; kx < 4u; kx += 2u) {
            uint32_t ix = ox + 1u;
            if (ix < kx) continue;
            ix = (ix - kx) >> 1;
            if (ix >= w_in) continue;
            for (ic = 0; ic < c_in; ic++) {
                uint32_t wi = (((oc << lcin) + ic) << 4) + (ky << 2) + kx;
                acc += times_nibble(row[(ic << lwin) + ix], nibble(w, wi));
            }
        }
    }
    return acc;
}

/* The rows of layer L-1 that rows a..b of layer L need, clipped to the map. */
static void needs(uint32_t li, uint32_t a, uint32_t b, window_t *below)
{
    uint32_t h_in = 1u << log_w[li - 1u];
    uint32_t lo = a ? (a - 1u) >> 1 : 0u, hi = (b + 1u) >> 1;
    if (hi >= h_in) hi = h_in - 1u;
    below->row0 = lo;
    below->rows = hi - lo + 1u;
}

/* Rows out->row0 .. +rows of layer L (2..4) from the window `in` of layer L-1. */
static void tc_rows(const die_model_t *m, uint32_t li, const window_t *in, const window_t *out)
{
    const uint32_t lc = log_c[li], lw = log_w[li];
    uint32_t r, oc, ox;
    uint8_t *dst = out->data;
    for (r = 0; r < out->rows; r++)
        for (oc = 0; oc < (1u << lc); oc++)
            for (ox = 0; ox < (1u << lw); ox++)
                *dst++ = requantize(tc_acc(m, li, in, oc, out->row0 + r, ox), m->shift[li][oc]);
}

int die_generate(const die_model_t *m, die_arena_t *arena, const int8_t *z, int pips,
                 uint8_t *page_out, die_layer_fn hook, void *user)
{
    uint32_t li, c, band, x, r;
    window_t win[DIE_LAYERS - 1u];
    if (pips < 1 || pips > (int)DIE_PIPS) return DIE_E_PIPS;
    for (li = 0; li + 1u < DIE_LAYERS; li++)
        for (c = 0; c < (1u << log_c[li]); c++)
            if (m->shift[li][c] > DIE_MAX_SHIFT) return DIE_E_SHIFT;
    win[0].data = arena->l1;
    win[1].data = arena->l2;
    win[2].data = arena->l3;
    win[3].data = arena->l4;
    for (band = 0; band < DIE_BANDS; band++) {
        uint32_t first = band << 3;
        /* Which rows each layer needs, from the face down. */
        needs(4u, first, first + DIE_PAGE_ROWS - 1u, &win[3]);
        for (li = 3u; li > 0u; li--)
            needs(li, win[li].row0, win[li].row0 + win[li].rows - 1u, &win[li - 1u]);
        win[0].row0 = 0;  /* the FC makes its whole (tiny) map: every band needs most of it */
        win[0].rows = DIE_WIN1;
        /* Then compute them from the FC up. */
        fc(m, z, (uint32_t)pips - 1u, win[0].data);
        if (hook) hook(user, 1u, win[0].row0, win[0].rows, win[0].data);
        for (li = 1u; li < DIE_LAYERS - 1u; li++) {
            tc_rows(m, li, &win[li - 1u], &win[li]);
            if (hook) hook(user, li + 1u, win[li].row0, win[li].rows, win[li].data);
        }
        for (x = 0; x < DIE_FACE; x++) {
            uint8_t byte = 0;
            for (r = 0; r < DIE_PAGE_ROWS; r++)
                if (tc_acc(m, DIE_LAYERS - 1u, &win[3], 0u, first + r, x) > 0)
                    byte |= (uint8_t)(1u << r);
            page_out[(band << 5) + x] = byte;
        }
    }
    return DIE_OK;
}
