/* cat_host.h: the host side of the cat engine: a file as the block device, a pthread that
 * prefetches the next slice while the current one computes (the V3F core's job on the unit), and a
 * flat API for the ctypes binding (firmware/cat_engine.py). Host only: never built for the unit.
 * The caller owns every buffer (the host struct and the arena), so instances share nothing. */
#ifndef QCAT_CAT_HOST_H
#define QCAT_CAT_HOST_H

#include <pthread.h>
#include <stdint.h>

#include "cat_engine.h"

typedef struct {
    int fd;
    int threaded;
    /* Prefetch worker: one request at a time (the engine never has two in flight). */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop, has_request, request_done, request_status;
    uint64_t req_offset;
    uint8_t *req_dst;
    uint32_t req_len;
    cat_engine_t engine;
    /* During one run: where the layers go, in (C, H, W) order, and the Python progress hook. */
    int8_t *layers_out;
    uint64_t layers_filled;
    uint32_t layers_seen;        /* layers the layer hook saw in the last run */
    cat_progress_fn progress;
    void *progress_user;
} cat_host_t;

/* sizeof(cat_host_t), so the binding can allocate it. */
uint32_t cat_host_sizeof(void);
uint32_t cat_host_arena_budget(void);
/* Open `path` and check its header; threaded = 1 prefetches on a second thread. */
int cat_host_open(cat_host_t *h, const char *path, uint8_t *arena, uint32_t arena_bytes, int threaded);
/* Model facts for the binding: arena bytes needed, layer count, and per layer c_out and h_out. */
uint32_t cat_host_arena_bytes(const cat_host_t *h);
uint32_t cat_host_n_layers(const cat_host_t *h);
uint32_t cat_host_nz(const cat_host_t *h);
uint32_t cat_host_layer_dim(const cat_host_t *h, uint32_t layer, uint32_t which); /* 0 c, 1 h */
/* One image. `layers_chw` (nullable) receives every layer's output, (C, H, W) int8, one after
 * the other; `progress` (nullable) is called per slice. */
int cat_host_run(cat_host_t *h, const int8_t *latent, uint8_t *rgb, int8_t *layers_chw,
                 cat_progress_fn progress, void *user);
void cat_host_close(cat_host_t *h);
/* After a failed run: 1 and the slice's layer and channel (from 0) when a slice was at fault. */
int cat_host_failed_slice(const cat_host_t *h, uint32_t *layer, uint32_t *channel);
/* Layers whose output the layer hook received in the last run (a bad slice's layer never is). */
uint32_t cat_host_layers_seen(const cat_host_t *h);
/* The engine's arena plan, for tests of its figures: fields of cat_arena_plan_t in order. */
uint32_t cat_host_plan(const cat_host_t *h, uint32_t field);

#endif
