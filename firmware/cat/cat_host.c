/* cat_host.c: see cat_host.h. The file is read with pread (no shared file position between the two
 * threads); the worker thread lives for one run so that no thread outlives a call from Python. */
#define _XOPEN_SOURCE 700
#include "cat_host.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

uint32_t cat_host_sizeof(void) { return (uint32_t)sizeof(cat_host_t); }
uint32_t cat_host_arena_budget(void) { return CAT_ARENA_BUDGET; }

static int file_read(void *ctx, uint64_t offset, uint8_t *dst, uint32_t len)
{
    cat_host_t *h = ctx;
    while (len > 0) {
        ssize_t n = pread(h->fd, dst, len, (off_t)offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;   /* error or end of file: the image is shorter than it says */
        dst += n;
        offset += (uint64_t)n;
        len -= (uint32_t)n;
    }
    return 0;
}

static void *worker(void *arg)
{
    cat_host_t *h = arg;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (!h->has_request && !h->stop) pthread_cond_wait(&h->cond, &h->lock);
        if (h->stop) break;
        uint64_t off = h->req_offset;
        uint8_t *dst = h->req_dst;
        uint32_t len = h->req_len;
        h->has_request = 0;
        pthread_mutex_unlock(&h->lock);
        int status = file_read(h, off, dst, len);
        pthread_mutex_lock(&h->lock);
        h->request_status = status;
        h->request_done = 1;
        pthread_cond_broadcast(&h->cond);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static int async_start(void *ctx, uint64_t offset, uint8_t *dst, uint32_t len)
{
    cat_host_t *h = ctx;
    pthread_mutex_lock(&h->lock);
    h->req_offset = offset;
    h->req_dst = dst;
    h->req_len = len;
    h->request_done = 0;
    h->has_request = 1;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    return 0;
}

static int async_wait(void *ctx)
{
    cat_host_t *h = ctx;
    pthread_mutex_lock(&h->lock);
    while (!h->request_done) pthread_cond_wait(&h->cond, &h->lock);
    int status = h->request_status;
    pthread_mutex_unlock(&h->lock);
    return status;
}

int cat_host_open(cat_host_t *h, const char *path, uint8_t *arena, uint32_t arena_bytes, int threaded)
{
    if (!h || !path) return CAT_E_ARGS;
    memset(h, 0, sizeof *h);
    h->fd = open(path, O_RDONLY);
    if (h->fd < 0) return CAT_E_READ;
    h->threaded = threaded;
    cat_io_t io = {file_read, NULL, NULL, h};
    int rc = cat_open(&h->engine, &io, arena, arena_bytes);
    if (rc != CAT_OK) {
        close(h->fd);
        h->fd = -1;
    }
    return rc;
}

uint32_t cat_host_arena_bytes(const cat_host_t *h) { return h->engine.plan.total; }
uint32_t cat_host_n_layers(const cat_host_t *h) { return h->engine.model.n_layers; }
uint32_t cat_host_nz(const cat_host_t *h) { return h->engine.model.nz; }

uint32_t cat_host_layer_dim(const cat_host_t *h, uint32_t layer, uint32_t which)
{
    if (layer >= h->engine.model.n_layers) return 0;
    const qcw_layer_t *l = &h->engine.model.layers[layer];
    return which == 0 ? l->c_out : l->h_out;
}

static void on_layer(void *user, uint32_t layer, const uint8_t *hwc, uint32_t c, uint32_t hh,
                     uint32_t w)
{
    cat_host_t *h = user;
    (void)layer;
    h->layers_seen++;
    if (!h->layers_out) return;
    cat_layer_to_chw(hwc, c, hh, w, h->layers_out + h->layers_filled);
    h->layers_filled += (uint64_t)c * hh * w;
}

static void on_progress(void *user, uint32_t done, uint32_t total, uint32_t layer)
{
    cat_host_t *h = user;
    if (h->progress) h->progress(h->progress_user, done, total, layer);
}

int cat_host_run(cat_host_t *h, const int8_t *latent, uint8_t *rgb, int8_t *layers_chw,
                 cat_progress_fn progress, void *user)
{
    if (!h || h->fd < 0 || !h->engine.opened) return CAT_E_NOT_OPEN;
    h->layers_out = layers_chw;
    h->layers_filled = 0;
    h->layers_seen = 0;
    h->progress = progress;
    h->progress_user = user;
    cat_hooks_t hooks = {on_progress, on_layer, h};
    int started = 0;
    if (h->threaded) {
        h->stop = h->has_request = h->request_done = 0;
        int have_lock = pthread_mutex_init(&h->lock, NULL) == 0;
        int have_cond = have_lock && pthread_cond_init(&h->cond, NULL) == 0;
        if (have_cond && pthread_create(&h->thread, NULL, worker, h) == 0) started = 1;
        if (!started) {
            if (have_cond) pthread_cond_destroy(&h->cond);
            if (have_lock) pthread_mutex_destroy(&h->lock);
        }
    }
    /* Without a worker thread (or if one cannot start) the engine reads synchronously. */
    h->engine.io.start = started ? async_start : NULL;
    h->engine.io.wait = started ? async_wait : NULL;
    int rc = cat_generate(&h->engine, latent, rgb, &hooks);
    if (started) {
        pthread_mutex_lock(&h->lock);
        h->stop = 1;
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->thread, NULL);
        pthread_cond_destroy(&h->cond);
        pthread_mutex_destroy(&h->lock);
    }
    h->layers_out = NULL;
    h->progress = NULL;
    return rc;
}

void cat_host_close(cat_host_t *h)
{
    if (h && h->fd >= 0) {
        close(h->fd);
        h->fd = -1;
    }
    if (h) h->engine.opened = 0;
}

int cat_host_failed_slice(const cat_host_t *h, uint32_t *layer, uint32_t *channel)
{
    if (!h || !h->engine.failed_at_slice) return 0;
    *layer = h->engine.fail_layer;
    *channel = h->engine.fail_channel;
    return 1;
}

uint32_t cat_host_layers_seen(const cat_host_t *h) { return h ? h->layers_seen : 0; }

uint32_t cat_host_plan(const cat_host_t *h, uint32_t field)
{
    const cat_arena_plan_t *p = &h->engine.plan;
    const uint32_t fields[] = {p->header_bytes, p->act_off, p->act_bytes, p->unit_limit,
                               p->read_bytes, p->read_off[0], p->read_off[1], p->slice_off,
                               p->slice_bytes, p->lut_off, p->lut_bytes, p->total};
    return field < sizeof fields / sizeof fields[0] ? fields[field] : 0;
}
