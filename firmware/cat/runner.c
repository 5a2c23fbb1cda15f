/* runner.c: a small command-line runner for the host build (not used by qcat itself, which goes
 * through the ctypes binding): renders one latent and writes the raw RGB888 bytes.
 *
 *   cat_run WEIGHTS.qcw LATENT.bin OUT.rgb [REPEAT]
 *
 * LATENT.bin holds nz int8 values; OUT.rgb receives image_size^2 * 3 bytes (written only on
 * success). With REPEAT the image is rendered that many times and the mean time is printed. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cat_host.h"

static uint8_t arena[CAT_ARENA_BUDGET];
static cat_host_t host;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s WEIGHTS.qcw LATENT.bin OUT.rgb [REPEAT]\n", argv[0]);
        return 2;
    }
    int repeat = argc > 4 ? atoi(argv[4]) : 1;
    if (repeat < 1) repeat = 1;
    int rc = cat_host_open(&host, argv[1], arena, sizeof arena, 1);
    if (rc) {
        fprintf(stderr, "cat_run: %s: %s [%s, code %d]\n", argv[1], cat_strerror(rc),
                cat_error_name(rc), rc);
        return 2;
    }
    int8_t latent[1024];
    uint32_t nz = cat_host_nz(&host);
    FILE *f = fopen(argv[2], "rb");
    if (!f || nz > sizeof latent || fread(latent, 1, nz, f) != nz) {
        fprintf(stderr, "cat_run: %s must hold %u int8 latent values\n", argv[2], (unsigned)nz);
        if (f) fclose(f);
        return 2;
    }
    fclose(f);
    const qcw_model_t *m = &host.engine.model;
    size_t rgb_bytes = (size_t)m->image_size * m->image_size * m->image_channels;
    static uint8_t rgb[256 * 256 * 4];
    if (rgb_bytes > sizeof rgb) return 2;
    double t0 = now_ms();
    for (int i = 0; i < repeat && rc == 0; i++) rc = cat_host_run(&host, latent, rgb, NULL, NULL, NULL);
    double ms = (now_ms() - t0) / repeat;
    if (rc) {
        fprintf(stderr, "cat_run: %s [%s, code %d]\n", cat_strerror(rc), cat_error_name(rc), rc);
        return 1;
    }
    f = fopen(argv[3], "wb");
    if (!f || fwrite(rgb, 1, rgb_bytes, f) != rgb_bytes) {
        fprintf(stderr, "cat_run: cannot write %s\n", argv[3]);
        if (f) fclose(f);
        return 2;
    }
    fclose(f);
    printf("%s model, arena %u bytes, %.2f ms per image\n", m->size_name,
           (unsigned)cat_host_arena_bytes(&host), ms);
    cat_host_close(&host);
    return 0;
}
