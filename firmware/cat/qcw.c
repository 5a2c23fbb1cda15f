/* qcw.c: parsing and checking the cat weight image (.qcw v1, docs/formats.md, "Cat weight image").
 * Byte-buffer in, fields out; never allocates, never reads on its own (cat_engine.c does the I/O). */
#include "qcw.h"

#include <string.h>

#include "cat_engine.h"
#include "crc32_table.h"

/* Header field offsets (docs/formats.md). */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_HEADER_BYTES = 10, H_HEADER_CRC = 12, H_FILE_BYTES = 16,
    H_SIZE_NAME = 24, H_NZ = 40, H_NGF = 42, H_N_LAYERS = 44, H_IMAGE = 46, H_CHANNELS = 48,
    H_LATENT_ZP = 50, H_LATENT_SCALE = 52, H_LAYER_TABLE = 56, H_TANH = 60, H_PROV = 64,
    H_PROV_LEN = 68, H_FIRST_SLICE = 72, H_FIXED_END = 128
};
/* Layer table entry field offsets. */
enum {
    L_C_IN = 0, L_C_OUT = 2, L_H_IN = 4, L_H_OUT = 6, L_KERNEL = 8, L_STRIDE = 9, L_PADDING = 10,
    L_ACT = 11, L_IN_ZP = 12, L_OUT_ZP = 13, L_IN_SCALE = 16, L_OUT_SCALE = 20,
    L_SLICE_BYTES = 24, L_OFFSET = 28
};
/* Trailer field offsets. */
enum { T_MAGIC = 0, T_FILE_BYTES = 8 };

uint16_t qcw_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

uint32_t qcw_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint64_t qcw_u64(const uint8_t *p) { return (uint64_t)qcw_u32(p) | ((uint64_t)qcw_u32(p + 4) << 32); }

static float qcw_f32(const uint8_t *p)
{
    uint32_t bits = qcw_u32(p);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint32_t qcw_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    crc = ~crc;
#ifdef CAT_CRC_SLICE8
    /* Host build: eight bytes per step; the CRC of 12 MB of weights would otherwise cost about as
     * much as the arithmetic of a whole image. */
    while (len >= 8) {
        uint32_t lo = crc ^ qcw_u32(data);
        uint32_t hi = qcw_u32(data + 4);
        crc = crc32_t17[6][lo & 0xff] ^ crc32_t17[5][(lo >> 8) & 0xff] ^
              crc32_t17[4][(lo >> 16) & 0xff] ^ crc32_t17[3][lo >> 24] ^
              crc32_t17[2][hi & 0xff] ^ crc32_t17[1][(hi >> 8) & 0xff] ^
              crc32_t17[0][(hi >> 16) & 0xff] ^ crc32_t0[hi >> 24];
        data += 8;
        len -= 8;
    }
#endif
    while (len--) crc = (crc >> 8) ^ crc32_t0[(crc ^ *data++) & 0xff];
    return ~crc;
}

int qcw_parse_sector0(const uint8_t *s, qcw_model_t *m)
{
    if (memcmp(s + H_MAGIC, QCW_MAGIC, 8) != 0) return CAT_E_MAGIC;
    if (qcw_u16(s + H_VERSION) != QCW_VERSION) return CAT_E_VERSION;
    memset(m, 0, sizeof *m);
    m->header_bytes = qcw_u16(s + H_HEADER_BYTES);
    m->file_bytes = qcw_u64(s + H_FILE_BYTES);
    memcpy(m->size_name, s + H_SIZE_NAME, 16);
    m->size_name[16] = '\0';
    m->nz = qcw_u16(s + H_NZ);
    m->ngf = qcw_u16(s + H_NGF);
    m->n_layers = qcw_u16(s + H_N_LAYERS);
    m->image_size = qcw_u16(s + H_IMAGE);
    m->image_channels = qcw_u16(s + H_CHANNELS);
    m->latent_zp = (int8_t)s[H_LATENT_ZP];
    m->latent_scale = qcw_f32(s + H_LATENT_SCALE);
    m->first_slice = qcw_u32(s + H_FIRST_SLICE);
    if (m->header_bytes < QCW_SECTOR || m->header_bytes % QCW_SECTOR != 0) return CAT_E_HEADER;
    if (m->first_slice != m->header_bytes) return CAT_E_HEADER;
    if (strcmp(m->size_name, "demo") != 0 && strcmp(m->size_name, "full") != 0 &&
        strcmp(m->size_name, "custom") != 0)
        return CAT_E_HEADER;
    if (m->n_layers < 1 || m->n_layers > CAT_MAX_LAYERS) return CAT_E_UNSUPPORTED;
    return CAT_OK;
}

/* [off, off + len) inside [lo, hi)? Computed in 64 bits so no field can wrap around. */
static int inside(uint64_t off, uint64_t len, uint64_t lo, uint64_t hi)
{
    return off >= lo && off + len <= hi;
}

int qcw_parse_header(const uint8_t *h, qcw_model_t *m)
{
    uint32_t stored = qcw_u32(h + H_HEADER_CRC);
    static const uint8_t zero4[4] = {0, 0, 0, 0};
    uint32_t crc = qcw_crc32(0, h, H_HEADER_CRC);
    crc = qcw_crc32(crc, zero4, 4);
    crc = qcw_crc32(crc, h + H_HEADER_CRC + 4, (size_t)m->header_bytes - H_HEADER_CRC - 4);
    if (crc != stored) return CAT_E_HEADER_CRC;

    uint32_t table = qcw_u32(h + H_LAYER_TABLE), tanh = qcw_u32(h + H_TANH);
    uint32_t prov = qcw_u32(h + H_PROV), prov_len = qcw_u32(h + H_PROV_LEN);
    uint64_t end = m->header_bytes;
    if (!inside(table, (uint64_t)QCW_LAYER_ENTRY_BYTES * m->n_layers, H_FIXED_END, end) ||
        !inside(tanh, QCW_TANH_BYTES, H_FIXED_END, end) || !inside(prov, prov_len, H_FIXED_END, end))
        return CAT_E_HEADER;
    memcpy(m->tanh_table, h + tanh, QCW_TANH_BYTES);

    uint64_t expect_offset = m->first_slice;
    for (uint16_t i = 0; i < m->n_layers; i++) {
        const uint8_t *e = h + table + (size_t)i * QCW_LAYER_ENTRY_BYTES;
        qcw_layer_t *l = &m->layers[i];
        l->c_in = qcw_u16(e + L_C_IN);
        l->c_out = qcw_u16(e + L_C_OUT);
        l->h_in = qcw_u16(e + L_H_IN);
        l->h_out = qcw_u16(e + L_H_OUT);
        l->kernel = e[L_KERNEL];
        l->stride = e[L_STRIDE];
        l->padding = e[L_PADDING];
        l->activation = e[L_ACT];
        l->in_zp = (int8_t)e[L_IN_ZP];
        l->out_zp = (int8_t)e[L_OUT_ZP];
        l->in_scale = qcw_f32(e + L_IN_SCALE);
        l->out_scale = qcw_f32(e + L_OUT_SCALE);
        l->slice_bytes = qcw_u32(e + L_SLICE_BYTES);
        l->offset = qcw_u64(e + L_OFFSET);

        if (l->kernel != CAT_KERNEL || (l->stride != 1 && l->stride != 2) || l->padding > 1 ||
            l->c_in == 0 || l->c_in > CAT_MAX_CIN || l->c_out == 0 || l->h_in == 0)
            return CAT_E_UNSUPPORTED;
        /* The DCGAN: ReLU after every layer but the last, the Tanh table after the last. */
        if (l->activation != (i + 1u == m->n_layers ? QCW_ACT_TANH : QCW_ACT_RELU))
            return CAT_E_UNSUPPORTED;
        /* ConvTranspose2d output size: (h_in - 1) * s - 2p + k. */
        if ((uint32_t)l->h_out + 2u * l->padding != ((uint32_t)l->h_in - 1u) * l->stride + l->kernel)
            return CAT_E_HEADER;
        /* The chain: each layer consumes what the previous one produced, zero point included. */
        if (i == 0) {
            if (l->c_in != m->nz || l->h_in != 1 || l->in_zp != m->latent_zp) return CAT_E_HEADER;
        } else {
            const qcw_layer_t *p = &m->layers[i - 1];
            if (l->c_in != p->c_out || l->h_in != p->h_out || l->in_zp != p->out_zp)
                return CAT_E_HEADER;
        }
        uint64_t need = (uint64_t)CAT_KERNEL * CAT_KERNEL * l->c_in + QCW_SLICE_TAIL_BYTES +
                        QCW_SLICE_CRC_BYTES;
        if (l->slice_bytes % QCW_SECTOR != 0 || l->slice_bytes < need) return CAT_E_HEADER;
        if (l->offset != expect_offset) return CAT_E_HEADER;
        expect_offset += (uint64_t)l->slice_bytes * l->c_out;
    }
    const qcw_layer_t *last = &m->layers[m->n_layers - 1];
    if (last->c_out != m->image_channels || last->h_out != m->image_size) return CAT_E_HEADER;
    if (m->file_bytes != expect_offset + QCW_TRAILER_BYTES) return CAT_E_HEADER;
    return CAT_OK;
}

int qcw_check_trailer(const uint8_t *t, const qcw_model_t *m)
{
    if (memcmp(t + T_MAGIC, QCW_TRAILER_MAGIC, 8) != 0) return CAT_E_TRAILER;
    if (qcw_u64(t + T_FILE_BYTES) != m->file_bytes) return CAT_E_TRAILER;
    return CAT_OK;
}

int qcw_open_slice(const uint8_t *slice, const qcw_layer_t *l, uint16_t layer, uint16_t channel,
                   qcw_slice_t *out)
{
    uint32_t body = l->slice_bytes - QCW_SLICE_CRC_BYTES;
    if (qcw_crc32(0, slice, body) != qcw_u32(slice + body)) return CAT_E_SLICE_CRC;
    const uint8_t *tail = slice + (size_t)CAT_KERNEL * CAT_KERNEL * l->c_in;
    out->weights = (const int8_t *)slice;
    out->bias = (int32_t)qcw_u32(tail);
    out->multiplier = (int32_t)qcw_u32(tail + 4);
    out->shift = (int32_t)qcw_u32(tail + 8);
    out->layer = qcw_u16(tail + 12);
    out->channel = qcw_u16(tail + 14);
    if (out->layer != layer || out->channel != channel) return CAT_E_SLICE_INDEX;
    return CAT_OK;
}
