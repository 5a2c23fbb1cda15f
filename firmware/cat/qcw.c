/* qcw.c: parsing and checking the cat weight image (.qcw v1-v3, docs/formats.md, "Cat weight image"),
 * and decoding the coded weights of versions 2 and 3 (Huffman, packed 4-bit).
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
    H_PROV_LEN = 68, H_FIRST_SLICE = 72, H_DIR_OFF = 76, H_DIR_ENTRIES = 80, H_FIXED_END = 128
};
/* Layer table entry field offsets. */
enum {
    L_C_IN = 0, L_C_OUT = 2, L_H_IN = 4, L_H_OUT = 6, L_KERNEL = 8, L_STRIDE = 9, L_PADDING = 10,
    L_ACT = 11, L_IN_ZP = 12, L_OUT_ZP = 13, L_IN_SCALE = 16, L_OUT_SCALE = 20,
    L_SLICE_BYTES = 24, L_OFFSET = 28, L_ENCODING = 36, L_WEIGHT_BITS = 37, L_CODE_LENGTHS = 40,
    L_STORED = 44
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
    uint16_t version = qcw_u16(s + H_VERSION);
    if (version < QCW_VERSION_MIN || version > QCW_VERSION_MAX) return CAT_E_VERSION;
    memset(m, 0, sizeof *m);
    m->version = version;
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

/* Huffman code lengths a decoder can trust: at most 12 bits, only values of the layer's width
 * (-127..127, or -7..7 for 4-bit weights) present, at least one, and no more codes than the
 * lengths allow (Kraft sum <= 1; an unused code word is caught when a stream uses it). */
static int lengths_ok(const uint8_t *len, uint8_t bits)
{
    int span = bits == 4 ? QCW_INT4_MAX : 127;
    uint32_t kraft = 0, used = 0;
    for (int sym = 0; sym < 256; sym++) {
        if (len[sym] == 0) continue;
        if (len[sym] > QCW_HUFF_MAX_BITS || sym - 128 < -span || sym - 128 > span) return 0;
        kraft += 1u << (QCW_HUFF_MAX_BITS - len[sym]);
        used++;
    }
    return used > 0 && kraft <= QCW_HUFF_LUT_ENTRIES;
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

    if (m->version != QCW_VERSION_PADDED) {
        m->dir_off = qcw_u32(h + H_DIR_OFF);
        m->dir_entries = qcw_u32(h + H_DIR_ENTRIES);
        if (m->dir_entries < 2u ||
            !inside(m->dir_off, (uint64_t)m->dir_entries * QCW_DIR_ENTRY_BYTES, H_FIXED_END, end))
            return CAT_E_HEADER;
    }
    for (uint32_t b = H_DIR_OFF + (m->version == QCW_VERSION_PADDED ? 0u : 8u); b < H_FIXED_END; b++)
        if (h[b] != 0) return CAT_E_HEADER;

    uint64_t expect_offset = m->first_slice;
    uint32_t slice_index = 0;
    int have_int4 = 0;
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
        uint64_t nw = (uint64_t)CAT_KERNEL * CAT_KERNEL * l->c_in;
        if (m->version == QCW_VERSION_PADDED) {
            /* Raw int8 slices padded to whole sectors; no encoding fields. */
            for (uint32_t b = L_ENCODING; b < QCW_LAYER_ENTRY_BYTES; b++)
                if (e[b] != 0) return CAT_E_HEADER;
            l->encoding = QCW_ENC_RAW;
            l->weight_bits = 8;
            uint64_t need = nw + QCW_SLICE_FIXED_BYTES;
            if (l->slice_bytes % QCW_SECTOR != 0 || l->slice_bytes < need) return CAT_E_HEADER;
            if (l->offset != expect_offset) return CAT_E_HEADER;
            expect_offset += (uint64_t)l->slice_bytes * l->c_out;
            continue;
        }
        l->encoding = e[L_ENCODING];
        l->weight_bits = e[L_WEIGHT_BITS];
        l->code_lengths = qcw_u32(e + L_CODE_LENGTHS);
        if (l->encoding > QCW_ENC_PACKED4 || (l->weight_bits != 8 && l->weight_bits != 4))
            return CAT_E_UNSUPPORTED;
        /* 4-bit layers only in version 3, stored packed4 or huffman; packed4 holds 4-bit
         * weights only. */
        if (l->weight_bits == 4 ? (m->version != QCW_VERSION_INT4 || l->encoding == QCW_ENC_RAW)
                                : l->encoding == QCW_ENC_PACKED4)
            return CAT_E_UNSUPPORTED;
        if (l->weight_bits == 4) have_int4 = 1;
        if (l->encoding == QCW_ENC_HUFFMAN) {
            if (!inside(l->code_lengths, QCW_CODE_LENGTHS_BYTES, H_FIXED_END, end)) return CAT_E_HEADER;
            if (!lengths_ok(h + l->code_lengths, l->weight_bits)) return CAT_E_UNSUPPORTED;
        } else if (l->code_lengths != 0) {
            return CAT_E_HEADER;
        }
        /* The slice directory: this layer's slices follow the previous one's, each holds at least
         * its tail and CRC (exactly the weights' bytes more when raw or packed4), the largest is
         * the entry's slice_bytes, and their sum the entry's stored bytes. */
        l->first_slice = slice_index;
        if ((uint64_t)slice_index + l->c_out + 1u > m->dir_entries) return CAT_E_HEADER;
        const uint8_t *d = h + m->dir_off + (size_t)slice_index * QCW_DIR_ENTRY_BYTES;
        uint32_t first = qcw_u32(d), largest = 0;
        if (first != expect_offset || l->offset != first) return CAT_E_HEADER;
        uint64_t fixed = l->encoding == QCW_ENC_RAW ? nw : (l->encoding == QCW_ENC_PACKED4 ? nw / 2u : 0);
        for (uint32_t c = 0; c < l->c_out; c++) {
            uint32_t a = qcw_u32(d + (size_t)c * QCW_DIR_ENTRY_BYTES);
            uint32_t b = qcw_u32(d + (size_t)(c + 1u) * QCW_DIR_ENTRY_BYTES);
            if (b < a || b - a < QCW_SLICE_FIXED_BYTES) return CAT_E_HEADER;
            if (fixed && b - a != fixed + QCW_SLICE_FIXED_BYTES) return CAT_E_HEADER;
            if (b - a > largest) largest = b - a;
        }
        uint32_t last = qcw_u32(d + (size_t)l->c_out * QCW_DIR_ENTRY_BYTES);
        if (largest != l->slice_bytes || qcw_u64(e + L_STORED) != (uint64_t)last - first)
            return CAT_E_HEADER;
        expect_offset = last;
        slice_index += l->c_out;
    }
    const qcw_layer_t *last = &m->layers[m->n_layers - 1];
    if (last->c_out != m->image_channels || last->h_out != m->image_size) return CAT_E_HEADER;
    if (m->version == QCW_VERSION_PADDED) {
        if (m->file_bytes != expect_offset + QCW_TRAILER_BYTES) return CAT_E_HEADER;
    } else {
        if (slice_index + 1u != m->dir_entries) return CAT_E_HEADER;
        if (m->version == QCW_VERSION_INT4 && !have_int4) return CAT_E_UNSUPPORTED;
        uint64_t padded = (expect_offset + QCW_SECTOR - 1u) / QCW_SECTOR * QCW_SECTOR;
        if (m->file_bytes != padded + QCW_TRAILER_BYTES) return CAT_E_HEADER;
    }
    return CAT_OK;
}

int qcw_check_trailer(const uint8_t *t, const qcw_model_t *m)
{
    if (memcmp(t + T_MAGIC, QCW_TRAILER_MAGIC, 8) != 0) return CAT_E_TRAILER;
    if (qcw_u64(t + T_FILE_BYTES) != m->file_bytes) return CAT_E_TRAILER;
    return CAT_OK;
}

int qcw_open_slice(const uint8_t *slice, uint32_t len, const qcw_layer_t *l, uint16_t layer,
                   uint16_t channel, qcw_slice_t *out)
{
    uint32_t body = len - QCW_SLICE_CRC_BYTES;
    if (qcw_crc32(0, slice, body) != qcw_u32(slice + body)) return CAT_E_SLICE_CRC;
    /* Raw weights are 16 * c_in bytes (v1 pads after the tail); coded ones end at the tail. */
    uint32_t tail_at = l->encoding == QCW_ENC_RAW ? (uint32_t)CAT_KERNEL * CAT_KERNEL * l->c_in
                                                  : len - QCW_SLICE_FIXED_BYTES;
    const uint8_t *tail = slice + tail_at;
    out->weights = (const int8_t *)slice;
    out->stream_bytes = tail_at;
    out->bias = (int32_t)qcw_u32(tail);
    out->multiplier = (int32_t)qcw_u32(tail + 4);
    out->shift = (int32_t)qcw_u32(tail + 8);
    out->layer = qcw_u16(tail + 12);
    out->channel = qcw_u16(tail + 14);
    if (out->layer != layer || out->channel != channel) return CAT_E_SLICE_INDEX;
    return CAT_OK;
}

void qcw_huff_table(const uint8_t *code_lengths, uint16_t *lut)
{
    /* Canonical codes in order of (length, symbol), MSB first; every code of length n fills the
     * 2^(12 - n) table entries that begin with it. Entries no code begins with stay 0. */
    memset(lut, 0, QCW_HUFF_LUT_ENTRIES * sizeof *lut);
    uint32_t code = 0;
    for (uint32_t n = 1; n <= QCW_HUFF_MAX_BITS; n++) {
        for (uint32_t sym = 0; sym < 256; sym++) {
            if (code_lengths[sym] != n) continue;
            uint32_t span = 1u << (QCW_HUFF_MAX_BITS - n), lo = code << (QCW_HUFF_MAX_BITS - n);
            for (uint32_t k = 0; k < span; k++) lut[lo + k] = (uint16_t)(sym | (n << 8));
            code++;
        }
        code <<= 1;
    }
}

int qcw_huff_decode(const uint16_t *lut, const uint8_t *src, uint32_t len, int8_t *dst, uint32_t n)
{
    /* A 32-bit window holding the next `have` bits left-aligned; bytes past the end read as 0
     * and are accounted for afterwards. */
    uint32_t window = 0, have = 0, next = 0;
    uint64_t used = 0;
    for (uint32_t i = 0; i < n; i++) {
        while (have <= 24u) {
            window |= (uint32_t)(next < len ? src[next] : 0u) << (24u - have);
            next++;
            have += 8u;
        }
        uint16_t entry = lut[window >> (32u - QCW_HUFF_MAX_BITS)];
        uint32_t size = entry >> 8;
        if (size == 0) return CAT_E_SLICE_DECODE;
        dst[i] = (int8_t)((int32_t)(entry & 0xffu) - 128);
        window <<= size;
        have -= size;
        used += size;
    }
    if ((used + 7u) / 8u != len) return CAT_E_SLICE_DECODE;
    if (used % 8u && (src[len - 1] & (0xffu >> (used % 8u)))) return CAT_E_SLICE_DECODE;
    return CAT_OK;
}

int qcw_unpack4(const uint8_t *src, int8_t *dst, uint32_t n)
{
    for (uint32_t i = 0; i < n; i += 2) {
        uint8_t b = src[i / 2u];
        int8_t lo = (int8_t)((int32_t)((b & 0x0fu) ^ 8u) - 8), hi = (int8_t)((int32_t)((b >> 4) ^ 8u) - 8);
        if (lo == -8 || hi == -8) return CAT_E_SLICE_DECODE;
        dst[i] = lo;
        dst[i + 1] = hi;
    }
    return CAT_OK;
}
