/* qcw.h: the cat weight image (.qcw, versions 1, 2 and 3) as the C engine reads it
 * (docs/formats.md). Version 1 pads every slice to whole sectors and stores raw int8 weights;
 * versions 2 and 3 pack the slices back to back (a slice directory in the header says where each
 * starts) and store each layer raw, canonical-Huffman-coded or (version 3) as packed 4-bit weights.
 *
 * Pure C99, no allocation, no globals: parsing works on byte buffers the caller owns, and every
 * multi-byte field is assembled little-endian byte by byte so the code is correct on any host.
 * The SHA-256 in the trailer is the controller's business; the unit checks the header CRC, the
 * layout and, before using each slice, the slice's CRC-32 and the layer/channel it says it holds.
 */
#ifndef QCAT_QCW_H
#define QCAT_QCW_H

#include <stddef.h>
#include <stdint.h>

#define QCW_MAGIC "QCWEIGHT"
#define QCW_TRAILER_MAGIC "QCWTRAIL"
/* The versions this engine reads; any other is CAT_E_VERSION. */
#define QCW_VERSION_MIN 1u
#define QCW_VERSION_MAX 3u
#define QCW_VERSION_PADDED 1u
#define QCW_VERSION_INT4 3u
#define QCW_SECTOR 512u
#define QCW_LAYER_ENTRY_BYTES 64u
#define QCW_TANH_BYTES 256u
#define QCW_TRAILER_BYTES 512u
/* Bytes after the weights of a slice: bias, multiplier, shift (i32 each), layer, channel (u16). */
#define QCW_SLICE_TAIL_BYTES 16u
#define QCW_SLICE_CRC_BYTES 4u
#define QCW_SLICE_FIXED_BYTES (QCW_SLICE_TAIL_BYTES + QCW_SLICE_CRC_BYTES)
#define QCW_DIR_ENTRY_BYTES 4u
/* Huffman: one u8 code length per int8 value + 128; codes at most 12 bits, so one lookup in a
 * 4096-entry table (u16: symbol | length << 8) decodes one weight. */
#define QCW_CODE_LENGTHS_BYTES 256u
#define QCW_HUFF_MAX_BITS 12u
#define QCW_HUFF_LUT_ENTRIES (1u << QCW_HUFF_MAX_BITS)
#define QCW_INT4_MAX 7

/* Compile-time limits of the engine; a model beyond them is refused, never overflowed. */
#define CAT_MAX_LAYERS 8u
#define CAT_KERNEL 4u
/* 16 taps x c_in x 255 x 128 must stay inside an int32 accumulator. */
#define CAT_MAX_CIN 4096u

enum qcw_activation { QCW_ACT_RELU = 1, QCW_ACT_TANH = 2 };
enum qcw_encoding { QCW_ENC_RAW = 0, QCW_ENC_HUFFMAN = 1, QCW_ENC_PACKED4 = 2 };

typedef struct {
    uint16_t c_in, c_out, h_in, h_out;
    uint8_t kernel, stride, padding, activation;
    int8_t in_zp, out_zp;
    float in_scale, out_scale;   /* informational: the integer kernel never uses them */
    uint32_t slice_bytes;        /* v1: every slice's size; v2/v3: the largest slice's */
    uint64_t offset;             /* file offset of the layer's first slice */
    uint8_t encoding, weight_bits; /* enum qcw_encoding; 8, or 4 (version 3) */
    uint32_t code_lengths;       /* Huffman: header offset of its 256 code lengths, else 0 */
    uint32_t first_slice;        /* index of its first slice in the directory (v2/v3) */
} qcw_layer_t;

typedef struct {
    uint16_t header_bytes;
    uint64_t file_bytes;
    char size_name[17];
    uint16_t nz, ngf, n_layers, image_size, image_channels;
    int8_t latent_zp;
    float latent_scale;
    uint32_t first_slice;
    uint16_t version;
    uint32_t dir_off, dir_entries; /* v2/v3: the slice directory in the header, slices + 1 */
    qcw_layer_t layers[CAT_MAX_LAYERS];
    int8_t tanh_table[QCW_TANH_BYTES];
} qcw_model_t;

/* zlib's CRC-32 (poly 0xEDB88320, init/xorout 0xFFFFFFFF); `crc` is a running value, start at 0. */
uint32_t qcw_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* Fixed-size fields of sector 0; returns 0 or a CAT_E_* code (cat_engine.h). */
int qcw_parse_sector0(const uint8_t *sector0, qcw_model_t *m);
/* The whole header (m->header_bytes bytes, already read): CRC, layer table, Tanh table, layout. */
int qcw_parse_header(const uint8_t *header, qcw_model_t *m);
/* The trailer sector: magic and file size. */
int qcw_check_trailer(const uint8_t *trailer, const qcw_model_t *m);

/* The fields of one slice of `len` stored bytes. */
typedef struct {
    const int8_t *weights;       /* raw: [ky][kx][ci], 16 * c_in bytes; else the coded stream */
    uint32_t stream_bytes;       /* bytes of the weight stream before the tail */
    int32_t bias, multiplier, shift;
    uint16_t layer, channel;
} qcw_slice_t;

/* CRC-32 and the layer/channel it claims; returns 0, CAT_E_SLICE_CRC or CAT_E_SLICE_INDEX.
 * Nothing of the slice is interpreted before its CRC matched. */
int qcw_open_slice(const uint8_t *slice, uint32_t len, const qcw_layer_t *l, uint16_t layer,
                   uint16_t channel, qcw_slice_t *out);

/* The decode table of a Huffman layer (validated code lengths): lut[QCW_HUFF_LUT_ENTRIES]. */
void qcw_huff_table(const uint8_t *code_lengths, uint16_t *lut);
/* n weights from a Huffman stream of `len` bytes (MSB first); 0, or CAT_E_SLICE_DECODE when the
 * stream is not exactly n codes followed by zero bits up to its last byte. */
int qcw_huff_decode(const uint16_t *lut, const uint8_t *src, uint32_t len, int8_t *dst, uint32_t n);
/* n 4-bit weights, two per byte (low nibble first); CAT_E_SLICE_DECODE on a -8. */
int qcw_unpack4(const uint8_t *src, int8_t *dst, uint32_t n);

uint16_t qcw_u16(const uint8_t *p);
uint32_t qcw_u32(const uint8_t *p);
uint64_t qcw_u64(const uint8_t *p);

#endif
