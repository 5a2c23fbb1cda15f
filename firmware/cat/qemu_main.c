/* qemu_main.c: the cat engine alone, as the unit compiles it (rv32imafc, -Os), rendering a batch
 * of latents under `qemu-system-riscv32 -machine virt` with picolibc semihosting (`make
 * qemu-cat`), and the same main built for the host (`make qemu-cat-host`). firmware/cat_qemu.py
 * runs both and compares their images with the host engine and the numpy reference.
 *
 * Input, in the working directory (semihosting opens the host's files):
 *   cat.qcw        the weight image, read through the engine's synchronous block reader
 *                  (lseek + read: one semihosting call per read; picolibc's fread on an
 *                  unbuffered FILE would make one call per byte)
 *   latents.bin    N x nz int8 latents, N = file size / nz
 * Output:
 *   images.bin     N x image_size^2 x channels bytes (RGB888 as cat_generate writes it)
 *   cat_counts.txt per latent "latent <n> total <i>" and per layer "latent <n> layer <l> fetch
 *                  <f> compute <c>"; for the first latent, every weight read "unit <u> layer <l>
 *                  offset <o> bytes <b> fetch <f> compute <c>" (the instructions spent on that
 *                  read unit's slices). Instructions are minstret deltas: run QEMU with -icount
 *                  shift=0 for exact counts (without it QEMU reads the host's clock into them); the
 *                  host build writes 0.
 *
 * Counting: the engine marks phase switches (cat_count_mark, CAT_COUNT in cat_engine.h); each
 * mark attributes the instructions since the previous one to the phase, layer and read unit then
 * current. The instructions of this file (the marks' own bookkeeping, the reads, the output) are
 * left out by re-reading the counter on the way out, so the counts are the engine's: "fetch" =
 * CRC and checks (and decoding) of the slices read, "compute" = the arithmetic. The read itself is
 * a DMA transfer on the unit; the time model charges it to the SD card, by the bytes logged here.
 * Exit status 0 when every latent rendered, else 1 (engine error) or 2 (files). */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cat_engine.h"

#define QEMU_WEIGHTS "cat.qcw"
#define QEMU_LATENTS "latents.bin"
#define QEMU_IMAGES "images.bin"
#define QEMU_COUNTS "cat_counts.txt"
/* Read units logged for the first latent (the full model issues about 250). */
#define QEMU_MAX_UNITS 4096u
#define QEMU_MAX_NZ 1024u
#define QEMU_MAX_RGB (256u * 256u * 4u)

typedef struct {
    uint64_t offset;
    uint32_t bytes, layer;
    uint64_t fetch, compute;
} unit_count_t;

typedef struct {
    uint64_t base;              /* the counter at the end of the last bookkeeping */
    uint32_t phase, layer;      /* what the instructions since `base` belong to */
    int32_t unit;               /* the read unit being worked on; -1 before the first */
    int logging;                /* reads and marks are recorded (inside cat_generate only) */
    uint64_t fetch[CAT_MAX_LAYERS], compute[CAT_MAX_LAYERS];
    uint32_t n_units;
    unit_count_t units[QEMU_MAX_UNITS];
} counts_t;

static counts_t counts;
static cat_engine_t engine;
static uint8_t arena[CAT_ARENA_BUDGET] __attribute__((aligned(CAT_ARENA_ALIGN)));
static uint8_t rgb[QEMU_MAX_RGB];

static uint64_t instret(void)
{
#if defined(__riscv)
    /* minstret / minstreth (0xB02 / 0xB82) as raw SYSTEM instructions: -march=rv32imafc has no
     * Zicsr for gcc 12's assembler, and QEMU's CPU has it anyway. Re-read the high half until it
     * did not move. */
    uint32_t hi, lo, hi2;
    do {
        __asm__ volatile(".insn i 0x73, 2, %0, x0, -1150" : "=r"(hi));
        __asm__ volatile(".insn i 0x73, 2, %0, x0, -1278" : "=r"(lo));
        __asm__ volatile(".insn i 0x73, 2, %0, x0, -1150" : "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
#else
    return 0;
#endif
}

/* Attribute the instructions since the last bookkeeping to the current phase, layer and unit. */
static void charge(uint64_t now)
{
    uint64_t d = now - counts.base;
    if (!counts.logging || counts.layer >= CAT_MAX_LAYERS) return;
    if (counts.phase == CAT_PHASE_FETCH) counts.fetch[counts.layer] += d;
    if (counts.phase == CAT_PHASE_COMPUTE) counts.compute[counts.layer] += d;
    if (counts.unit >= 0 && (uint32_t)counts.unit < QEMU_MAX_UNITS) {
        unit_count_t *u = &counts.units[counts.unit];
        if (counts.phase == CAT_PHASE_FETCH) u->fetch += d;
        if (counts.phase == CAT_PHASE_COMPUTE) u->compute += d;
    }
}

void cat_count_mark(uint32_t phase, uint32_t layer)
{
    charge(instret());
    counts.phase = phase;
    counts.layer = layer;
    if (counts.logging && counts.unit >= 0 && (uint32_t)counts.unit < QEMU_MAX_UNITS)
        counts.units[counts.unit].layer = layer;
    counts.base = instret();
}

static int read_weights(void *ctx, uint64_t offset, uint8_t *dst, uint32_t len)
{
    int fd = *(const int *)ctx;
    uint32_t got = 0;
    int rc = 0;
    charge(instret());
    if (counts.logging) {
        /* A new read unit: its slices are what the engine works on until the next read. */
        counts.unit++;
        if ((uint32_t)counts.unit < QEMU_MAX_UNITS) {
            unit_count_t *u = &counts.units[counts.unit];
            memset(u, 0, sizeof *u);
            u->offset = offset;
            u->bytes = len;
            u->layer = counts.layer;
        }
        counts.n_units = (uint32_t)counts.unit + 1u;
    }
    if (lseek(fd, (off_t)offset, SEEK_SET) != (off_t)offset) rc = 1;
    while (rc == 0 && got < len) {
        ssize_t n = read(fd, dst + got, len - got);
        if (n <= 0) rc = 1;
        else got += (uint32_t)n;
    }
    counts.base = instret();
    return rc;
}

static long file_size(FILE *f)
{
    long n;
    if (fseek(f, 0, SEEK_END) != 0) return -1;
    n = ftell(f);
    return fseek(f, 0, SEEK_SET) == 0 ? n : -1;
}

int main(void)
{
    int weights = open(QEMU_WEIGHTS, O_RDONLY);
    FILE *latents = fopen(QEMU_LATENTS, "rb");
    FILE *images = fopen(QEMU_IMAGES, "wb");
    FILE *out = fopen(QEMU_COUNTS, "w");
    cat_io_t io;
    int8_t latent[QEMU_MAX_NZ];
    long n_bytes;
    uint32_t nz, rgb_bytes, n, i, l;
    int rc;
    if (weights < 0 || !latents || !images || !out) return 2;
    memset(&io, 0, sizeof io);
    io.read = read_weights;
    io.ctx = &weights;
    counts.unit = -1;
    if ((rc = cat_open(&engine, &io, arena, sizeof arena)) != CAT_OK) {
        fprintf(out, "error open %d %s\n", rc, cat_strerror(rc));
        fclose(out);
        return 1;
    }
    nz = engine.model.nz;
    rgb_bytes = (uint32_t)engine.model.image_size * engine.model.image_size *
                engine.model.image_channels;
    n_bytes = file_size(latents);
    if (nz > QEMU_MAX_NZ || rgb_bytes > QEMU_MAX_RGB || n_bytes < 0 || n_bytes % nz != 0)
        return 2;
    n = (uint32_t)(n_bytes / nz);
    for (i = 0; i < n; i++) {
        uint64_t t0, t1;
        if (fread(latent, 1, nz, latents) != nz) return 2;
        memset(&counts, 0, sizeof counts);
        counts.unit = -1;
        counts.logging = 1;
        counts.phase = 0;  /* until the engine's first mark: neither fetch nor compute */
        t0 = instret();
        counts.base = t0;
        rc = cat_generate(&engine, latent, rgb, NULL);
        t1 = instret();
        charge(t1);
        counts.logging = 0;
        if (rc != CAT_OK) {
            fprintf(out, "error latent %lu %d %s\n", (unsigned long)i, rc, cat_strerror(rc));
            fclose(out);
            return 1;
        }
        if (fwrite(rgb, 1, rgb_bytes, images) != rgb_bytes) return 2;
        fprintf(out, "latent %lu total %llu\n", (unsigned long)i, (unsigned long long)(t1 - t0));
        for (l = 0; l < engine.model.n_layers; l++)
            fprintf(out, "latent %lu layer %lu fetch %llu compute %llu\n", (unsigned long)i,
                    (unsigned long)l, (unsigned long long)counts.fetch[l],
                    (unsigned long long)counts.compute[l]);
        if (i == 0) {
            uint32_t u;
            for (u = 0; u < counts.n_units && u < QEMU_MAX_UNITS; u++)
                fprintf(out, "unit %lu layer %lu offset %llu bytes %lu fetch %llu compute %llu\n",
                        (unsigned long)u, (unsigned long)counts.units[u].layer,
                        (unsigned long long)counts.units[u].offset,
                        (unsigned long)counts.units[u].bytes,
                        (unsigned long long)counts.units[u].fetch,
                        (unsigned long long)counts.units[u].compute);
        }
    }
    close(weights);
    fclose(latents);
    fclose(images);
    fclose(out);
    return 0;
}
