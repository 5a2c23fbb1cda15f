/* cat_engine.c: the streaming int8 DCGAN of the cat unit (see cat_engine.h for the contract).
 *
 * Loop order: layer by layer, output channel by output channel. Weights arrive in read units: as
 * many whole consecutive slices of one layer as fit in a read buffer (CAT_READ_BYTES; always at
 * least one slice), which are contiguous in the file, so one multi-block read fetches them. Unit
 * k+1 is read into one buffer while the slices of unit k are checked (CRC, layer/channel) and
 * computed one by one from the other, so with an asynchronous reader the time per unit is
 * max(read, compute): the SD card or the arithmetic, whichever is slower. Bigger reads help both
 * machines: SD cards reach their throughput only on long multi-block reads, and the host pays a
 * thread hand-off per read that costs about as much as computing a small slice.
 *
 * Arena (cat_plan_arena): one activation region sized max over layers of (input + output); a layer
 * reads its input from one end and writes its output at the other, and the next layer swaps ends.
 * Activations carry a one-pixel border holding their zero point, so every output pixel of a
 * stride-2 layer runs the same four taps (no border cases in the inner loop). Then the two read
 * buffers, each max(largest slice, CAT_READ_BYTES). No int32 plane: in gather form every output pixel's
 * accumulator lives in a register from its first tap to its requantization.
 */
#include "cat_engine.h"

#include <string.h>

/* Internal activations are uint8 = int8 + ACT_BIAS (see the header comment). */
#define ACT_BIAS 128
/* Every activation carries a one-pixel border holding its zero point (channel_s2). */
#define CAT_PAD 1u
/* Weights lie in -127..127; an input minus its zero point spans at most 255 (docs/formats.md). */
#define CAT_WEIGHT_MAX 127
#define CAT_INPUT_SPAN 255
/* Phase marks for instruction counting (cat_engine.h); nothing at all in a normal build. */
#ifdef CAT_COUNT
#define CAT_MARK(phase, layer) cat_count_mark(CAT_PHASE_##phase, (layer))
#else
#define CAT_MARK(phase, layer) ((void)0)
#endif

static uint32_t align_up(uint32_t v, uint32_t a) { return (v + a - 1u) / a * a; }

const char *cat_strerror(int code) { return cat_error_sentence(code); }

/* Bytes of a padded activation (h + 2)^2 x c, in 64 bits so no header value can wrap. */
static uint64_t padded_bytes(uint32_t c, uint32_t h)
{
    uint64_t p = (uint64_t)h + 2u * CAT_PAD;
    return p * p * c;
}

int cat_plan_arena(const qcw_model_t *m, cat_arena_plan_t *plan)
{
    const int packed = m->version != QCW_VERSION_PADDED;
    uint64_t act = 0, slice = 0, decoded = 0;
    int huffman = 0;
    for (uint16_t i = 0; i < m->n_layers; i++) {
        const qcw_layer_t *l = &m->layers[i];
        uint64_t in = padded_bytes(l->c_in, l->h_in), out = padded_bytes(l->c_out, l->h_out);
        if (in > CAT_ARENA_BUDGET || out > CAT_ARENA_BUDGET) return CAT_E_ARENA;
        in = align_up((uint32_t)in, CAT_ARENA_ALIGN);
        out = align_up((uint32_t)out, CAT_ARENA_ALIGN);
        if (in + out > act) act = in + out;
        if (l->slice_bytes > slice) slice = l->slice_bytes;
        if (l->encoding != QCW_ENC_RAW && (uint64_t)CAT_KERNEL * CAT_KERNEL * l->c_in > decoded)
            decoded = (uint64_t)CAT_KERNEL * CAT_KERNEL * l->c_in;
        if (l->encoding == QCW_ENC_HUFFMAN) huffman = 1;
    }
    if (slice > CAT_ARENA_BUDGET) return CAT_E_ARENA;
    /* A read unit holds at least one slice of every layer, and as many whole slices of a layer
     * as fit in CAT_READ_BYTES. Packed slices start anywhere: the read is widened to whole
     * sectors, at most one sector more at each end. */
    uint64_t limit = slice > CAT_READ_BYTES ? slice : CAT_READ_BYTES;
    uint64_t read = align_up((uint32_t)(limit + (packed ? 2u * QCW_SECTOR : 0u)), CAT_ARENA_ALIGN);
    uint64_t header = packed ? align_up(m->header_bytes, CAT_ARENA_ALIGN) : 0u;
    uint64_t lut = huffman ? (uint64_t)QCW_HUFF_LUT_ENTRIES * sizeof(uint16_t) : 0u;
    decoded = align_up((uint32_t)decoded, CAT_ARENA_ALIGN);
    uint64_t total = header + act + 2u * read + decoded + lut;
    if (total > CAT_ARENA_BUDGET) return CAT_E_ARENA;
    plan->header_bytes = (uint32_t)header;
    plan->act_off = (uint32_t)header;
    plan->act_bytes = (uint32_t)act;
    plan->unit_limit = (uint32_t)limit;
    plan->read_bytes = (uint32_t)read;
    plan->read_off[0] = (uint32_t)(header + act);
    plan->read_off[1] = (uint32_t)(header + act + read);
    plan->slice_off = (uint32_t)(header + act + 2u * read);
    plan->slice_bytes = (uint32_t)decoded;
    plan->lut_off = (uint32_t)(header + act + 2u * read + decoded);
    plan->lut_bytes = (uint32_t)lut;
    plan->total = (uint32_t)total;
    return CAT_OK;
}

int cat_open(cat_engine_t *e, const cat_io_t *io, uint8_t *arena, uint32_t arena_bytes)
{
    if (!e || !io || !io->read || !arena || arena_bytes < QCW_SECTOR) return CAT_E_ARGS;
    if ((io->start == 0) != (io->wait == 0)) return CAT_E_ARGS;
    memset(e, 0, sizeof *e);
    e->io = *io;
    e->arena = arena;
    e->arena_bytes = arena_bytes;
    /* The arena doubles as the scratch buffer for the trailer and the header; the header is
     * read last and stays at the arena's start (versions 2 and 3 keep using its directory). */
    if (io->read(io->ctx, 0, arena, QCW_SECTOR) != 0) return CAT_E_READ;
    int rc = qcw_parse_sector0(arena, &e->model);
    if (rc) return rc;
    if (e->model.header_bytes > arena_bytes) return CAT_E_ARGS;
    if (io->read(io->ctx, e->model.file_bytes - QCW_TRAILER_BYTES, arena, QCW_TRAILER_BYTES) != 0)
        return CAT_E_READ;
    if ((rc = qcw_check_trailer(arena, &e->model)) != 0) return rc;
    if (io->read(io->ctx, 0, arena, e->model.header_bytes) != 0) return CAT_E_READ;
    if ((rc = qcw_parse_header(arena, &e->model)) != 0) return rc;
    if ((rc = cat_plan_arena(&e->model, &e->plan)) != 0) return rc;
    if (e->plan.total > arena_bytes) return CAT_E_ARENA;
    e->opened = 1;
    return CAT_OK;
}

/* The compute kernels. One arithmetic, two machines: the host build (-O3 -march=native) turns
 * plain loops into SIMD dot-product instructions, while the unit's rv32imafc core has no SIMD and
 * pays per instruction (counted under QEMU -icount: firmware/cat_qemu.py). A MAC there costs at
 * least lbu + lb + mul + add; the scalar kernels below get close to that by keeping every pointer
 * in a register and stepping it once per CAT_UNROLL MACs, and in channel_s2 by computing two
 * neighbouring output pixels at once, so that the input column they share is loaded once for
 * both (10 loads for 8 MACs). The int32 sums are exact in any order (they cannot overflow:
 * constants_ok), so both kernels give the reference's bytes.
 *
 * CAT_SCALAR_KERNELS selects them: 1 on RISC-V, 0 (the plain loops, faster on the host's SIMD) by
 * default elsewhere; -DCAT_SCALAR_KERNELS=1 runs the unit's kernels on the host. */
#ifndef CAT_SCALAR_KERNELS
#if defined(__riscv)
#define CAT_SCALAR_KERNELS 1
#else
#define CAT_SCALAR_KERNELS 0
#endif
#endif
/* MACs per pass of the scalar loops: amortises the pointer steps and the branch (9 of 10 loop
 * instructions are the MACs' own at 8 per pass, two pixels), and still covers all of c_in = 32. */
#define CAT_UNROLL 8u

/* The unsigned-by-signed dot product every generic tap reduces to. */
static inline int32_t dot_u8s8(const uint8_t *restrict u, const int8_t *restrict w, uint32_t n)
{
    int32_t s = 0;
#if CAT_SCALAR_KERNELS
    for (const uint8_t *end = u + (n & ~(CAT_UNROLL - 1u)); u != end;
         u += CAT_UNROLL, w += CAT_UNROLL)
        s += u[0] * w[0] + u[1] * w[1] + u[2] * w[2] + u[3] * w[3] + u[4] * w[4] + u[5] * w[5] +
             u[6] * w[6] + u[7] * w[7];
    n &= CAT_UNROLL - 1u;
#endif
    for (uint32_t i = 0; i < n; i++) s += (int32_t)u[i] * (int32_t)w[i];
    return s;
}

/* The four taps of one output pixel of a k4 s2 p1 layer in one pass: two input pixels side by
 * side on each of two rows, each c_in long. One reduction per pixel instead of four. */
static inline int32_t dot4_u8s8(const uint8_t *restrict a0, const uint8_t *restrict a1,
                                const int8_t *restrict w00, const int8_t *restrict w01,
                                const int8_t *restrict w10, const int8_t *restrict w11, uint32_t n)
{
    int32_t s = 0;
    for (uint32_t i = 0; i < n; i++)
        s += (int32_t)a0[i] * w00[i] + (int32_t)a0[n + i] * w01[i] +
             (int32_t)a1[i] * w10[i] + (int32_t)a1[n + i] * w11[i];
    return s;
}

#if CAT_SCALAR_KERNELS
/* dot4_u8s8 for two horizontally neighbouring output pixels of one parity class: from a0 and a1
 * (input column j of the two rows) the first pixel reads columns j, j + 1 and the second j + 1,
 * j + 2; each column is n = c_in long. The middle column is loaded once for both. Ten pointers,
 * two sums and the end stay in registers; the weights are loaded once per step for both pixels. */
static inline void dot4x2_u8s8(const uint8_t *restrict a0, const uint8_t *restrict a1,
                               const int8_t *restrict w00, const int8_t *restrict w01,
                               const int8_t *restrict w10, const int8_t *restrict w11, uint32_t n,
                               int32_t *restrict sums)
{
    const uint8_t *b0 = a0 + n, *c0 = b0 + n, *b1 = a1 + n, *c1 = b1 + n;
    int32_t s0 = 0, s1 = 0;
#define CAT_MAC2(k)                                                                      \
    do {                                                                                 \
        const int32_t v00 = w00[k], v01 = w01[k], v10 = w10[k], v11 = w11[k];            \
        const int32_t m0 = b0[k], m1 = b1[k];                                            \
        s0 += a0[k] * v00 + m0 * v01 + a1[k] * v10 + m1 * v11;                           \
        s1 += m0 * v00 + c0[k] * v01 + m1 * v10 + c1[k] * v11;                           \
    } while (0)
    for (const int8_t *end = w00 + (n & ~(CAT_UNROLL - 1u)); w00 != end;) {
        CAT_MAC2(0); CAT_MAC2(1); CAT_MAC2(2); CAT_MAC2(3);
        CAT_MAC2(4); CAT_MAC2(5); CAT_MAC2(6); CAT_MAC2(7);
        a0 += CAT_UNROLL; b0 += CAT_UNROLL; c0 += CAT_UNROLL;
        a1 += CAT_UNROLL; b1 += CAT_UNROLL; c1 += CAT_UNROLL;
        w00 += CAT_UNROLL; w01 += CAT_UNROLL; w10 += CAT_UNROLL; w11 += CAT_UNROLL;
    }
    for (uint32_t k = 0; k < (n & (CAT_UNROLL - 1u)); k++) CAT_MAC2(k);
#undef CAT_MAC2
    sums[0] = s0;
    sums[1] = s1;
}
#endif

/* One slice's requantization, set up once per output channel: gemmlowp's
 * MultiplyByQuantizedMultiplier with double rounding (int8.md), which the reference computes in 64
 * bits, narrowed to what constants_ok admits: the accumulator fits an int32, the multiplier is 0
 * or in [2^30, 2^31) and the shift is right only (0..31). Then the rounding doubling high multiply
 * is one 32x32->64 product (mul + mulh on the unit; gemmlowp's INT32_MIN * INT32_MIN case needs a
 * negative multiplier) whose result fits an int32, the rounding right shift is 32-bit, and the
 * output zero point comes in after the clamp (lo, hi are the int8 bounds less it), so no sum can
 * overflow. On the unit this replaces 64-bit shifts, masks and compares per output pixel. */
typedef struct {
    int32_t multiplier;
    uint32_t right;        /* -shift */
    int32_t mask, half;    /* the bits the right shift drops, and half their range */
    int32_t lo, hi;        /* the output's clamp, less the output zero point */
    int32_t zp_biased;     /* out_zp + ACT_BIAS */
    int relu;
    const int8_t *tanh_table;
} requant_t;

static requant_t requant_for(const qcw_slice_t *s, const qcw_layer_t *l, const int8_t *tanh_table)
{
    requant_t r;
    r.multiplier = s->multiplier;
    r.right = (uint32_t)-s->shift;
    r.mask = (int32_t)(((uint32_t)1 << r.right) - 1u);
    r.half = r.mask >> 1;
    r.relu = l->activation == QCW_ACT_RELU;
    /* ReLU: the output zero point (q < out_zp gives out_zp) up to 127; Tanh: the table's index
     * range -128..127. */
    r.lo = r.relu ? 0 : -128 - l->out_zp;
    r.hi = 127 - l->out_zp;
    r.zp_biased = l->out_zp + ACT_BIAS;
    r.tanh_table = tanh_table;
    return r;
}

/* Requantize one accumulator and apply the activation: the int8 output as uint8 (+ ACT_BIAS).
 * Right shifts of negative values are arithmetic on every compiler we build with (gcc, clang). */
static inline uint8_t finish(int32_t acc, const requant_t *r)
{
    const int32_t x = (int32_t)(((int64_t)acc * r->multiplier + ((int64_t)1 << 30)) >> 31);
    int32_t y = (x >> r->right) + ((x & r->mask) > r->half + (x < 0));
    y = y < r->lo ? r->lo : (y > r->hi ? r->hi : y);
    if (r->relu) return (uint8_t)(y + r->zp_biased);
    return (uint8_t)(r->tanh_table[y + r->zp_biased] + ACT_BIAS);
}

/* Valid taps of output row/column `o`: kernel index k and input index i with i = (o + p - k) / s
 * integral and inside [0, n_in). Returns how many (at most 4). */
static uint32_t taps(uint32_t o, const qcw_layer_t *l, uint32_t n_in, uint8_t *k_out, uint16_t *i_out)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < CAT_KERNEL; k++) {
        int32_t t = (int32_t)o + l->padding - (int32_t)k;
        if (t < 0 || t % l->stride != 0) continue;
        int32_t i = t / l->stride;
        if (i >= (int32_t)n_in) continue;
        k_out[n] = (uint8_t)k;
        i_out[n] = (uint16_t)i;
        n++;
    }
    return n;
}

/* Any supported shape (the first layer: stride 1, 1x1 input): taps found per pixel. */
static void channel_generic(const qcw_layer_t *l, const qcw_slice_t *s, const int32_t *tap_sum,
                            const requant_t *rq, const uint8_t *in, uint8_t *out, uint32_t c)
{
    const uint32_t cin = l->c_in, pin = l->h_in + 2u * CAT_PAD, wout = l->h_out;
    const uint32_t pout = wout + 2u * CAT_PAD, cout = l->c_out;
    const int64_t zp_offset = ACT_BIAS + l->in_zp;
    uint8_t ky[CAT_KERNEL], kx[CAT_KERNEL];
    uint16_t iy[CAT_KERNEL], ix[CAT_KERNEL];
    for (uint32_t oy = 0; oy < wout; oy++) {
        uint32_t nr = taps(oy, l, l->h_in, ky, iy);
        for (uint32_t ox = 0; ox < wout; ox++) {
            uint32_t nc = taps(ox, l, l->h_in, kx, ix);
            int32_t dot = 0, wsum = 0;
            for (uint32_t r = 0; r < nr; r++) {
                const uint8_t *row = in + (size_t)(iy[r] + CAT_PAD) * pin * cin;
                const int8_t *wrow = s->weights + (size_t)ky[r] * CAT_KERNEL * cin;
                for (uint32_t q = 0; q < nc; q++) {
                    dot += dot_u8s8(row + (size_t)(ix[q] + CAT_PAD) * cin,
                                    wrow + (size_t)kx[q] * cin, cin);
                    wsum += tap_sum[ky[r] * CAT_KERNEL + kx[q]];
                }
            }
            /* bias + sum w (x - zp) over at most 16 taps: an int32 (constants_ok). */
            int32_t acc = (int32_t)((int64_t)s->bias + dot - zp_offset * wsum);
            out[((size_t)(oy + CAT_PAD) * pout + ox + CAT_PAD) * cout + c] = finish(acc, rq);
        }
    }
}

/* ConvTranspose2d k4 s2 p1 (layers 2..5 of the DCGAN), by output parity class (py, px): output
 * (2m + py, 2n + px) reads input rows m - 1 + py, m + py with ky = 3 - py, 1 - py and columns
 * alike (int8.md, gather form). The input's one-pixel border holds the zero point, so border
 * pixels run the same four taps: a border tap adds w * (zp - zp) = 0 after the folding. */
static void channel_s2(const qcw_layer_t *l, const qcw_slice_t *s, const int32_t *tap_sum,
                       const requant_t *rq, const uint8_t *in, uint8_t *out, uint32_t c)
{
    const uint32_t cin = l->c_in, hin = l->h_in, pin = hin + 2u * CAT_PAD;
    const uint32_t pout = l->h_out + 2u * CAT_PAD, cout = l->c_out;
    const int64_t zp_offset = ACT_BIAS + l->in_zp;
    for (uint32_t py = 0; py < 2; py++) {
        for (uint32_t px = 0; px < 2; px++) {
            const uint32_t ky0 = 3 - py, ky1 = 1 - py, kx0 = 3 - px, kx1 = 1 - px;
            const int8_t *w00 = s->weights + (size_t)(ky0 * CAT_KERNEL + kx0) * cin;
            const int8_t *w01 = s->weights + (size_t)(ky0 * CAT_KERNEL + kx1) * cin;
            const int8_t *w10 = s->weights + (size_t)(ky1 * CAT_KERNEL + kx0) * cin;
            const int8_t *w11 = s->weights + (size_t)(ky1 * CAT_KERNEL + kx1) * cin;
            /* bias - zp_offset * (the four taps' weight sums): an int32 (constants_ok), and so is
             * base + dot = bias + sum w (x - zp) over the four taps. */
            const int32_t base = (int32_t)((int64_t)s->bias -
                zp_offset * ((int64_t)tap_sum[ky0 * CAT_KERNEL + kx0] + tap_sum[ky0 * CAT_KERNEL + kx1] +
                             tap_sum[ky1 * CAT_KERNEL + kx0] + tap_sum[ky1 * CAT_KERNEL + kx1]));
            for (uint32_t m = 0; m < hin; m++) {
                /* Padded input row of m - 1 + py is m + py; column n - 1 + px is n + px. */
                const uint8_t *r0 = in + ((size_t)(m + py) * pin + px) * cin;
                const uint8_t *r1 = r0 + (size_t)pin * cin;
                uint8_t *o = out + ((size_t)(2 * m + py + CAT_PAD) * pout + px + CAT_PAD) * cout + c;
                uint32_t n = 0;
#if CAT_SCALAR_KERNELS
                for (; n + 2 <= hin; n += 2) {
                    int32_t dots[2];
                    dot4x2_u8s8(r0 + (size_t)n * cin, r1 + (size_t)n * cin, w00, w01, w10, w11,
                                cin, dots);
                    o[(size_t)2 * n * cout] = finish(base + dots[0], rq);
                    o[(size_t)(2 * n + 2) * cout] = finish(base + dots[1], rq);
                }
#endif
                for (; n < hin; n++) {
                    const size_t col = (size_t)n * cin;
                    int32_t dot = dot4_u8s8(r0 + col, r1 + col, w00, w01, w10, w11, cin);
                    o[(size_t)2 * n * cout] = finish(base + dot, rq);
                }
            }
        }
    }
}

/* Per-tap weight sums (the zero-point folding: acc = sum w (x - zp) = sum w u - (ACT_BIAS + zp)
 * sum w, with u = x + ACT_BIAS, so the zero point leaves the inner loop and becomes one product
 * per pixel), and the format's weight range: -128 never occurs (docs/formats.md). It reads every
 * weight of the slice, so it is written for the unit too: w + 127 is negative only for -128, so
 * one OR per weight collects the check, and the scalar build steps 8 weights per pass. */
static int prepare_slice(const qcw_layer_t *l, const qcw_slice_t *s, int32_t *tap_sum)
{
    const uint32_t cin = l->c_in;
    int32_t below = 0;  /* the OR of every w + CAT_WEIGHT_MAX: negative iff some w < -127 */
    for (uint32_t t = 0; t < CAT_KERNEL * CAT_KERNEL; t++) {
        const int8_t *w = s->weights + (size_t)t * cin;
        int32_t sum = 0;
        uint32_t i = 0;
#if CAT_SCALAR_KERNELS
        for (const int8_t *end = w + (cin & ~(CAT_UNROLL - 1u)); w != end; w += CAT_UNROLL) {
            sum += w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
            below |= (w[0] + CAT_WEIGHT_MAX) | (w[1] + CAT_WEIGHT_MAX) | (w[2] + CAT_WEIGHT_MAX) |
                     (w[3] + CAT_WEIGHT_MAX) | (w[4] + CAT_WEIGHT_MAX) | (w[5] + CAT_WEIGHT_MAX) |
                     (w[6] + CAT_WEIGHT_MAX) | (w[7] + CAT_WEIGHT_MAX);
        }
        i = cin & ~(CAT_UNROLL - 1u);
        w -= i;
#endif
        for (; i < cin; i++) {
            sum += w[i];
            below |= w[i] + CAT_WEIGHT_MAX;
        }
        tap_sum[t] = sum;
    }
    return below < 0 ? CAT_E_UNSUPPORTED : CAT_OK;
}

/* One output channel: padded input (h_in + 2)^2 x c_in -> channel c of the padded output. */
static void compute_channel(const qcw_layer_t *l, const qcw_slice_t *s, const int32_t *tap_sum,
                            const int8_t *tanh_table, const uint8_t *in, uint8_t *out, uint32_t c)
{
    const requant_t rq = requant_for(s, l, tanh_table);
    if (l->stride == 2 && l->padding == 1)
        channel_s2(l, s, tap_sum, &rq, in, out, c);
    else
        channel_generic(l, s, tap_sum, &rq, in, out, c);
}

/* Set the one-pixel border of a padded (h + 2)^2 x c activation to `value` (the zero point). */
static void fill_border(uint8_t *act, uint32_t h, uint32_t c, uint8_t value)
{
    const uint32_t p = h + 2u * CAT_PAD;
    memset(act, value, (size_t)p * c);
    memset(act + (size_t)(p - 1) * p * c, value, (size_t)p * c);
    for (uint32_t y = 1; y + 1 < p; y++) {
        memset(act + (size_t)y * p * c, value, c);
        memset(act + ((size_t)y * p + p - 1) * c, value, c);
    }
}

/* The constants QuantizeMultiplier can give and the weight image allows (models.weightimage
 * refuses the rest too): a Q31 multiplier in [2^30, 2^31) or 0, no left shift, and a bias small
 * enough that every accumulator fits an int32 (|w| <= 127, |x - zp| <= 255 over 16 c_in taps),
 * so every 64-bit intermediate of mbqm stays far from overflow. */
#define CAT_SHIFT_MIN (-31)
#define CAT_SHIFT_MAX 0
#define CAT_Q31_MIN ((int32_t)1 << 30)

static int constants_ok(const qcw_slice_t *s, const qcw_layer_t *l)
{
    int64_t bias_limit = (int64_t)INT32_MAX -
        (int64_t)CAT_KERNEL * CAT_KERNEL * l->c_in * CAT_WEIGHT_MAX * CAT_INPUT_SPAN;
    int64_t bias = s->bias;
    return s->shift >= CAT_SHIFT_MIN && s->shift <= CAT_SHIFT_MAX &&
           (s->multiplier == 0 || s->multiplier >= CAT_Q31_MIN) &&
           (bias < 0 ? -bias : bias) <= bias_limit;
}

/* Where slice `c` of layer `l` starts in the file, and (at c_out) where the layer ends: v1 by
 * arithmetic, v2/v3 from the directory in the header kept at the arena's start. */
static uint64_t slice_at(const cat_engine_t *e, const qcw_layer_t *l, uint32_t c)
{
    if (e->model.version == QCW_VERSION_PADDED) return l->offset + (uint64_t)c * l->slice_bytes;
    return qcw_u32(e->arena + e->model.dir_off + ((size_t)l->first_slice + c) * QCW_DIR_ENTRY_BYTES);
}

/* A read unit: `count` consecutive slices (channels first..first+count-1) of one layer, contiguous
 * in the file, read as one multi-block read of the whole sectors [start, end) that cover them. */
typedef struct {
    uint16_t layer, first, count;
    uint64_t start, end;
} read_unit_t;

static read_unit_t unit_at(const cat_engine_t *e, uint16_t layer, uint16_t first)
{
    const qcw_layer_t *l = &e->model.layers[layer];
    uint64_t from = slice_at(e, l, first);
    uint32_t count = 1;
    while ((uint32_t)first + count < l->c_out &&
           slice_at(e, l, first + count + 1u) - from <= e->plan.unit_limit)
        count++;
    uint64_t to = slice_at(e, l, first + count);
    read_unit_t u = {layer, first, (uint16_t)count, from / QCW_SECTOR * QCW_SECTOR,
                     (to + QCW_SECTOR - 1u) / QCW_SECTOR * QCW_SECTOR};
    return u;
}

/* The unit after `u`, or one with count 0 after the last. */
static read_unit_t unit_after(const cat_engine_t *e, read_unit_t u)
{
    const qcw_model_t *m = &e->model;
    if ((uint32_t)u.first + u.count < m->layers[u.layer].c_out)
        return unit_at(e, u.layer, (uint16_t)(u.first + u.count));
    if (u.layer + 1u < m->n_layers) return unit_at(e, (uint16_t)(u.layer + 1u), 0);
    read_unit_t none = {0, 0, 0, 0, 0};
    return none;
}

/* Check one slice (CRC first, then its layer/channel, then its constants) and only then decode
 * its weights into the slice buffer when the layer codes them. */
static int open_slice(cat_engine_t *e, const qcw_layer_t *l, const uint8_t *at, uint32_t len,
                      uint16_t layer, uint16_t c, qcw_slice_t *s)
{
    int rc = qcw_open_slice(at, len, l, layer, c, s);
    if (rc == CAT_OK && !constants_ok(s, l)) rc = CAT_E_UNSUPPORTED;
    if (rc != CAT_OK || l->encoding == QCW_ENC_RAW) return rc;
    int8_t *dst = (int8_t *)(e->arena + e->plan.slice_off);
    uint32_t n = (uint32_t)CAT_KERNEL * CAT_KERNEL * l->c_in;
    if (l->encoding == QCW_ENC_HUFFMAN)
        rc = qcw_huff_decode((const uint16_t *)(e->arena + e->plan.lut_off), (const uint8_t *)s->weights,
                             s->stream_bytes, dst, n);
    else
        rc = qcw_unpack4((const uint8_t *)s->weights, dst, n);
    s->weights = dst;
    return rc;
}

static int read_unit(const cat_io_t *io, read_unit_t u, uint8_t *dst, int async)
{
    uint32_t len = (uint32_t)(u.end - u.start);
    return async ? io->start(io->ctx, u.start, dst, len) : io->read(io->ctx, u.start, dst, len);
}

int cat_generate(cat_engine_t *e, const int8_t *latent, uint8_t *rgb, const cat_hooks_t *hooks)
{
    if (!e || !latent || !rgb) return CAT_E_ARGS;
    if (!e->opened) return CAT_E_NOT_OPEN;
    const qcw_model_t *m = &e->model;
    const cat_io_t *io = &e->io;
    const uint32_t act_bytes = e->plan.act_bytes;
    uint8_t *act = e->arena + e->plan.act_off;
    uint8_t *buf[2] = {e->arena + e->plan.read_off[0], e->arena + e->plan.read_off[1]};
    e->failed_at_slice = 0;

    uint32_t total = 0;
    for (uint16_t i = 0; i < m->n_layers; i++) total += m->layers[i].c_out;

    /* Layer 0 reads the latent, a padded 1x1 "image" of nz channels, from the region's start. */
    uint8_t *in = act, *out = act;
    fill_border(in, 1, m->nz, (uint8_t)(m->latent_zp + ACT_BIAS));
    for (uint32_t i = 0; i < m->nz; i++)
        in[((size_t)CAT_PAD * 3u + CAT_PAD) * m->nz + i] = (uint8_t)(latent[i] + ACT_BIAS);
    int in_at_start = 1;

    /* Prime the pipeline: the first unit into buffer 0. */
    read_unit_t cur = unit_at(e, 0, 0);
    int pending = 0, rc = CAT_OK;
    if (read_unit(io, cur, buf[0], io->start != 0) != 0) return CAT_E_READ;
    pending = io->start != 0;

    uint32_t done = 0, k = 0;
    while (cur.count > 0) {
        const qcw_layer_t *l = &m->layers[cur.layer];
        if (pending) {
            pending = 0;
            if (io->wait(io->ctx) != 0) { rc = CAT_E_READ; break; }
        }
        /* Start reading the next unit into the other buffer before computing this one. */
        read_unit_t next = unit_after(e, cur);
        if (next.count > 0 && io->start) {
            if (read_unit(io, next, buf[k ^ 1u], 1) != 0) {
                rc = CAT_E_READ;
                break;
            }
            pending = 1;
        }
        if (cur.first == 0) {
            /* A new layer: its output goes to the other end of the activation region, and a
             * Huffman layer's decode table is built from its code lengths in the header. */
            uint32_t out_bytes = align_up((uint32_t)padded_bytes(l->c_out, l->h_out), CAT_ARENA_ALIGN);
            out = in_at_start ? act + act_bytes - out_bytes : act;
            fill_border(out, l->h_out, l->c_out, (uint8_t)(l->out_zp + ACT_BIAS));
            if (l->encoding == QCW_ENC_HUFFMAN) {
                CAT_MARK(FETCH, cur.layer);  /* the decode table is part of fetching the layer */
                qcw_huff_table(e->arena + l->code_lengths, (uint16_t *)(e->arena + e->plan.lut_off));
                CAT_MARK(COMPUTE, cur.layer);
            }
        }
        uint64_t from = slice_at(e, l, cur.first);
        for (uint16_t j = 0; j < cur.count && rc == CAT_OK; j++) {
            qcw_slice_t s;
            uint16_t c = (uint16_t)(cur.first + j);
            uint64_t to = slice_at(e, l, c + 1u);
            CAT_MARK(FETCH, cur.layer);  /* CRC, checks and decoding of the slice up to COMPUTE */
            rc = open_slice(e, l, buf[k] + (from - cur.start), (uint32_t)(to - from), cur.layer, c, &s);
            CAT_MARK(COMPUTE, cur.layer);
            int32_t tap_sum[CAT_KERNEL * CAT_KERNEL];
            if (rc == CAT_OK) rc = prepare_slice(l, &s, tap_sum);
            if (rc != CAT_OK) {
                e->fail_layer = cur.layer;
                e->fail_channel = c;
                e->failed_at_slice = 1;
                break;
            }
            compute_channel(l, &s, tap_sum, m->tanh_table, in, out, c);
            from = to;
            done++;
            if (hooks && hooks->progress) hooks->progress(hooks->user, done, total, cur.layer);
        }
        if (rc != CAT_OK) break;
        /* Without an asynchronous reader the next unit is read now, after computing. */
        if (next.count > 0 && !io->start && read_unit(io, next, buf[k ^ 1u], 0) != 0) {
            rc = CAT_E_READ;
            break;
        }
        if ((uint32_t)cur.first + cur.count == l->c_out) {
            if (hooks && hooks->layer)
                hooks->layer(hooks->user, cur.layer, out, l->c_out, l->h_out, l->h_out);
            in = out;
            in_at_start = !in_at_start;
        }
        cur = next;
        k ^= 1u;
    }
    /* Never return while a read may still be writing into the caller's arena. */
    if (pending && io->wait(io->ctx) != 0 && rc == CAT_OK) rc = CAT_E_READ;
    if (rc != CAT_OK) return rc;
    /* The last layer's output is HWC uint8 = int8 + 128: exactly RGB888, pixel = out + 128; only
     * the border is dropped. */
    const uint32_t hw = m->image_size, ch = m->image_channels, p = hw + 2u * CAT_PAD;
    for (uint32_t y = 0; y < hw; y++)
        memcpy(rgb + (size_t)y * hw * ch, out + ((size_t)(y + CAT_PAD) * p + CAT_PAD) * ch,
               (size_t)hw * ch);
    return CAT_OK;
}

void cat_layer_to_chw(const uint8_t *hwc, uint32_t c, uint32_t h, uint32_t w, int8_t *chw)
{
    const uint32_t pw = w + 2u * CAT_PAD;
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            const uint8_t *px = hwc + ((size_t)(y + CAT_PAD) * pw + x + CAT_PAD) * c;
            for (uint32_t ch = 0; ch < c; ch++)
                chw[((size_t)ch * h + y) * w + x] = (int8_t)(px[ch] - ACT_BIAS);
        }
}
