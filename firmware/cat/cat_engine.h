/* cat_engine.h: the cat unit's int8 DCGAN engine, streaming one output channel's slice at a time.
 *
 * C99, no malloc, no globals: everything lives in a cat_engine_t and an arena the caller owns (the
 * unit: one static 512 KB array; the host: a buffer from the binding), so two instances never
 * share state. Weights arrive through a block-reader callback; with the optional start/wait pair
 * the next slices are read while the current ones are computed (the unit: the V3F core or DMA; the
 * host: a pthread, cat_host.c). The arithmetic is exactly the reference's (docs/formats.md,
 * "The arithmetic the slices encode"): gather-form ConvTranspose, double-rounding requantization,
 * the Tanh table, RGB888 out. An error stops the run and leaves the caller's image untouched.
 *
 * Internally activations are stored HWC as uint8 = int8 + 128, so each tap is one contiguous
 * unsigned-by-signed dot product over c_in (what SIMD dot-product instructions take) and the input
 * zero point folds into per-tap weight sums. Hooks hand back layers in that internal layout;
 * cat_layer_to_chw() converts.
 */
#ifndef QCAT_CAT_ENGINE_H
#define QCAT_CAT_ENGINE_H

#include <stdint.h>

#include "cat_errors.h"
#include "qcw.h"

/* The static arena the unit can give the engine: input + output activation + two read buffers
 * (+ for versions 2 and 3 the header, one decoded slice and a Huffman table). */
#ifndef CAT_ARENA_BUDGET
#define CAT_ARENA_BUDGET (512u * 1024u)
#endif
/* Weights are read in units of as many whole slices of one layer as fit in this many bytes (at
 * least one slice): one multi-block SD read per unit, one thread hand-off per unit on the host. */
#ifndef CAT_READ_BYTES
#define CAT_READ_BYTES (64u * 1024u)
#endif
/* Arena regions start on this boundary (cache lines on the host, bus bursts on the unit). */
#define CAT_ARENA_ALIGN 64u

/* Error codes (enum cat_error, CAT_OK = 0, CAT_E_*) and their sentences are generated into
 * cat_errors.h from errors.toml, the table the Python binding reads too. */

/* Block reader: read `len` bytes at byte `offset` of the weight image into `dst`; 0 on success. */
typedef int (*cat_read_fn)(void *ctx, uint64_t offset, uint8_t *dst, uint32_t len);
/* Optional asynchronous pair: start a read, later wait for it (returns the read's status). */
typedef int (*cat_start_fn)(void *ctx, uint64_t offset, uint8_t *dst, uint32_t len);
typedef int (*cat_wait_fn)(void *ctx);

typedef struct {
    cat_read_fn read;
    cat_start_fn start;   /* NULL: reads are synchronous through `read` */
    cat_wait_fn wait;
    void *ctx;
} cat_io_t;

/* Called after each slice: done/total count slices over the whole image. */
typedef void (*cat_progress_fn)(void *user, uint32_t done, uint32_t total, uint32_t layer);
/* Called after each layer with its output in the internal layout: HWC, uint8 = int8 + 128, with a
 * one-pixel border (the buffer is (h + 2) x (w + 2) x c); cat_layer_to_chw() reads it. */
typedef void (*cat_layer_fn)(void *user, uint32_t layer, const uint8_t *hwc, uint32_t c,
                             uint32_t h, uint32_t w);

typedef struct {
    cat_progress_fn progress;
    cat_layer_fn layer;
    void *user;
} cat_hooks_t;

/* How the arena is cut up for one model (bytes; offsets from the arena start). */
typedef struct {
    uint32_t header_bytes;    /* v2/v3: the checked header kept for its slice directory and
                                 Huffman code lengths (at offset 0); v1: 0 */
    uint32_t act_off;
    uint32_t act_bytes;       /* one region holding a layer's input at one end, output at the other */
    uint32_t unit_limit;      /* a read unit's slices span at most this: max(largest slice,
                                 CAT_READ_BYTES) */
    uint32_t read_bytes;      /* one read buffer: unit_limit, plus 2 sectors for v2/v3 (a unit's
                                 range is widened to whole sectors at both ends) */
    uint32_t read_off[2];
    uint32_t slice_off;       /* decoded int8 weights of one slice (coded layers only) */
    uint32_t slice_bytes;
    uint32_t lut_off;         /* the Huffman decode table of the current layer */
    uint32_t lut_bytes;
    uint32_t total;           /* what the model needs */
} cat_arena_plan_t;

typedef struct {
    qcw_model_t model;
    cat_arena_plan_t plan;
    cat_io_t io;
    uint8_t *arena;
    uint32_t arena_bytes;
    int opened;
    /* After a slice error (CRC, index, constants, decoding): which slice, counted from 0. */
    uint16_t fail_layer, fail_channel;
    int failed_at_slice;
} cat_engine_t;

/* Read and check the header and trailer, plan the arena; 0 or a CAT_E_* code. */
int cat_open(cat_engine_t *e, const cat_io_t *io, uint8_t *arena, uint32_t arena_bytes);
/* The arena a parsed model needs; CAT_E_ARENA when over CAT_ARENA_BUDGET. */
int cat_plan_arena(const qcw_model_t *m, cat_arena_plan_t *plan);
/* One image: latent (nz int8) -> rgb (image_size^2 * channels bytes, row-major HWC, pixel = out + 128).
 * On any error `rgb` is not written. `hooks` may be NULL. */
int cat_generate(cat_engine_t *e, const int8_t *latent, uint8_t *rgb, const cat_hooks_t *hooks);
/* Internal layer output (padded HWC uint8, as the layer hook gets it) -> (C, H, W) int8, as the
 * reference hands layers back. */
void cat_layer_to_chw(const uint8_t *hwc, uint32_t c, uint32_t h, uint32_t w, int8_t *chw);
/* Instruction counting (compiled out unless CAT_COUNT is defined: only the QEMU build of
 * qemu_main.c defines it, and defines this function). The engine marks where its work switches
 * phase; everything after a mark, up to the next one, is that phase's work on that layer:
 * CAT_PHASE_FETCH = checking (CRC, layer/channel) and decoding weights the reader delivered,
 * CAT_PHASE_COMPUTE = the arithmetic. Weight reads themselves go through the reader, which counts
 * them itself. */
#ifdef CAT_COUNT
enum cat_phase { CAT_PHASE_FETCH = 1, CAT_PHASE_COMPUTE = 2 };
void cat_count_mark(uint32_t phase, uint32_t layer);
#endif

/* One sentence naming the error (static string): the errors.toml sentence of `code`. */
const char *cat_strerror(int code);

#endif
