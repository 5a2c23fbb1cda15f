/* die_host.c: the die engine for the controller and the tests (host shared library, ctypes).
 *
 * die_host_run() renders a batch and, when asked, gathers every band's windows back into whole
 * (C, H, W) maps per layer, checking that a halo row computed again by the next band is equal to
 * what the previous band made (DIE_HOST_E_HALO otherwise): the banding is then checked on every
 * run, not only trusted. Host only; the unit links die_engine.c alone.
 */
#include <stdint.h>
#include <string.h>

#include "die_engine.h"

#define DIE_HOST_E_HALO 100
/* Bytes of layers 1..4 of one face in (C, H, W) order, one after the other. */
#define L1_BYTES (1u << (DIE_LOG_C1 + 2u * DIE_LOG_W1))
#define L2_BYTES (1u << (DIE_LOG_C2 + 2u * DIE_LOG_W2))
#define L3_BYTES (1u << (DIE_LOG_C3 + 2u * DIE_LOG_W3))
#define L4_BYTES (1u << (DIE_LOG_C4 + 2u * DIE_LOG_W4))
#define LAYER_BYTES (L1_BYTES + L2_BYTES + L3_BYTES + L4_BYTES)

uint32_t die_host_layer_bytes(void);
uint32_t die_host_arena_bytes(void);
uint32_t die_host_model_bytes(void);
uint32_t die_host_shape(uint32_t layer, uint32_t what);
int die_host_run(const die_model_t *m, uint32_t n, const int8_t *z, const uint8_t *pips,
                 uint8_t *pages, uint8_t *layers);

typedef struct {
    uint8_t *maps;            /* this face's layers 1..4, (C, H, W) each */
    uint8_t seen[4][32];      /* rows of each layer already written */
    int halo_differs;
} gather_t;

static const uint32_t offsets[4] = {0, L1_BYTES, L1_BYTES + L2_BYTES,
                                    L1_BYTES + L2_BYTES + L3_BYTES};
static const uint8_t logs[4][2] = {{DIE_LOG_C1, DIE_LOG_W1}, {DIE_LOG_C2, DIE_LOG_W2},
                                   {DIE_LOG_C3, DIE_LOG_W3}, {DIE_LOG_C4, DIE_LOG_W4}};

static void gather(void *user, uint32_t layer, uint32_t row0, uint32_t rows, const uint8_t *data)
{
    gather_t *g = user;
    uint32_t li = layer - 1u, lc = logs[li][0], lw = logs[li][1], r, c, x;
    uint8_t *map = g->maps + offsets[li];
    for (r = 0; r < rows; r++) {
        uint32_t y = row0 + r;
        for (c = 0; c < (1u << lc); c++)
            for (x = 0; x < (1u << lw); x++) {
                uint8_t v = data[(((r << lc) + c) << lw) + x];
                uint8_t *dst = &map[(((c << lw) + y) << lw) + x];
                if (g->seen[li][y] && *dst != v) g->halo_differs = 1;
                *dst = v;
            }
        g->seen[li][y] = 1;
    }
}

uint32_t die_host_layer_bytes(void) { return LAYER_BYTES; }
uint32_t die_host_arena_bytes(void) { return (uint32_t)sizeof(die_arena_t); }
uint32_t die_host_model_bytes(void) { return (uint32_t)sizeof(die_model_t); }

/* Layer 1..4's channels (what = 0) or width (what = 1); 0 for anything else. What the binding
 * reshapes the gathered maps with, so it never restates the architecture. */
uint32_t die_host_shape(uint32_t layer, uint32_t what)
{
    if (layer < 1u || layer > 4u || what > 1u) return 0;
    return 1u << logs[layer - 1u][what];
}

/* n faces: z (n x DIE_NZ), pips (n) -> pages (n x DIE_PAGE_BYTES) and, when `layers` is not
 * NULL, layers (n x LAYER_BYTES). 0, a DIE_E_* code, or DIE_HOST_E_HALO; stops at the first. */
int die_host_run(const die_model_t *m, uint32_t n, const int8_t *z, const uint8_t *pips,
                 uint8_t *pages, uint8_t *layers)
{
    die_arena_t arena;
    uint32_t i;
    for (i = 0; i < n; i++) {
        gather_t g;
        int rc;
        memset(&g, 0, sizeof g);
        g.maps = layers ? layers + (size_t)i * LAYER_BYTES : NULL;
        rc = die_generate(m, &arena, z + (size_t)i * DIE_NZ, pips[i],
                          pages + (size_t)i * DIE_PAGE_BYTES, layers ? gather : NULL, &g);
        if (rc != DIE_OK) return rc;
        if (g.halo_differs) return DIE_HOST_E_HALO;
    }
    return DIE_OK;
}
