/* cat_unit_host.c: host only: what the ctypes binding (firmware/cat_unit.py) needs beside
 * cat_unit.h itself: the sizes of the structs it mirrors (checked at load, so a change to a struct
 * cannot silently shift a field), the counters, and the model's layers for the time model of
 * `qcat sim cat --timing realistic`. Never built for the unit. */
#include "cat_unit.h"
#include "sha256.h"

uint32_t cat_unit_host_sizeof(uint32_t which);
uint32_t cat_unit_host_state(const cat_unit_t *u);
void cat_unit_host_stats(const cat_unit_t *u, uint32_t out[6]);
void cat_unit_host_offline(const cat_unit_t *u, uint32_t out[5]);
uint32_t cat_unit_host_n_layers(const cat_unit_t *u);
void cat_unit_host_layer(const cat_unit_t *u, uint32_t i, uint32_t out[7]);

/* 0: cat_unit_t, 1: cat_board_t, 2: cat_identity_t, 3: CAT_ARENA_BUDGET, 4: sha256_t. */
uint32_t cat_unit_host_sizeof(uint32_t which)
{
    switch (which) {
    case 0: return (uint32_t)sizeof(cat_unit_t);
    case 1: return (uint32_t)sizeof(cat_board_t);
    case 2: return (uint32_t)sizeof(cat_identity_t);
    case 3: return CAT_ARENA_BUDGET;
    case 4: return (uint32_t)sizeof(sha256_t);
    default: return 0;
    }
}

uint32_t cat_unit_host_state(const cat_unit_t *u) { return u->state; }

void cat_unit_host_stats(const cat_unit_t *u, uint32_t out[6])
{
    out[0] = u->stats.frames_in;
    out[1] = u->stats.frames_bad;
    out[2] = u->stats.frames_out;
    out[3] = u->stats.jobs_run;
    out[4] = u->stats.jobs_resent;
    out[5] = u->stats.offline_exhibits;
}

/* Offline work: in offline mode (0/1), why not possible (enum cat_offline_why), its detail, the
 * next record to spend and the reserve's records. */
void cat_unit_host_offline(const cat_unit_t *u, uint32_t out[5])
{
    out[0] = u->offline;
    out[1] = u->offline_why;
    out[2] = u->offline_detail;
    out[3] = u->next_record;
    out[4] = u->records;
}

uint32_t cat_unit_host_n_layers(const cat_unit_t *u)
{
    return u->engine_rc == CAT_OK ? u->engine.model.n_layers : 0;
}

/* c_in, c_out, h_in, h_out, stride, padding, slice_bytes of layer `i` (from 0). */
void cat_unit_host_layer(const cat_unit_t *u, uint32_t i, uint32_t out[7])
{
    const qcw_layer_t *l = &u->engine.model.layers[i];
    out[0] = l->c_in;
    out[1] = l->c_out;
    out[2] = l->h_in;
    out[3] = l->h_out;
    out[4] = l->stride;
    out[5] = l->padding;
    out[6] = l->slice_bytes;
}
