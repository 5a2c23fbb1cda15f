/* frame.c: CRC-16, COBS and frames for the units' serial protocol (frame.h, docs/protocol.md).
 * Caller-owned buffers only; the same rules as the Python codec (installation/units/protocol.py),
 * held together by tests/vectors/protocol.json and a fuzz test that feeds both the same bytes. */
#include "frame.h"

/* qp_decoder_t.flags */
enum {
    DEC_OVERFLOW = 1, /* decoded bytes beyond the buffer: QP_E_TOO_LONG unless COBS is bad */
    DEC_TOO_LONG = 2  /* more than QP_MAX_ENCODED encoded bytes: skip to the next zero */
};

/* COBS: a block is a code byte n (1..255) and n - 1 data bytes; the block stands for its data
 * followed by one zero, except a block of 254 data bytes (code 0xFF) and the last block. */
enum { COBS_FULL = 0xFF };

uint16_t qp_crc16(uint16_t crc, const uint8_t *data, size_t len)
{
    while (len--) {
        crc ^= (uint16_t)(*data++ << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (uint16_t)(crc & 0x8000u ? ((unsigned)crc << 1) ^ QP_CRC_POLY : (unsigned)crc << 1);
    }
    return crc;
}

/* --------------------------------------------------------------------------------------------
 * Encoding: one pass, straight into the caller's buffer. The code byte of a block is written
 * when the block closes, into the slot reserved when it opened. */

typedef struct {
    uint8_t *out;
    size_t cap, n;
    size_t code_at;  /* the slot of the open block's code byte */
    uint8_t code;    /* 1 + data bytes in the open block */
    uint8_t open;    /* 0 after a full block until the next byte: a full last block needs none */
    uint8_t full;    /* the buffer ran out */
} cobs_enc_t;

static void enc_slot(cobs_enc_t *e)
{
    if (e->n >= e->cap) {
        e->full = 1;
        return;
    }
    e->code_at = e->n++;
    e->code = 1;
    e->open = 1;
}

static void enc_start(cobs_enc_t *e, uint8_t *out, size_t cap)
{
    e->out = out;
    e->cap = cap;
    e->n = 0;
    e->full = 0;
    enc_slot(e);
}

static void enc_close(cobs_enc_t *e)
{
    if (!e->full) e->out[e->code_at] = e->code;
    e->open = 0;
}

static void enc_bytes(cobs_enc_t *e, const uint8_t *src, size_t len)
{
    for (; len > 0 && !e->full; len--) {
        uint8_t b = *src++;
        if (!e->open) enc_slot(e);
        if (e->full) return;
        if (b == 0) {
            enc_close(e);
            enc_slot(e);
            continue;
        }
        if (e->n >= e->cap) {
            e->full = 1;
            return;
        }
        e->out[e->n++] = b;
        if (++e->code == COBS_FULL) enc_close(e);
    }
}

/* The encoded size, or 0 when the buffer was too small. */
static size_t enc_finish(cobs_enc_t *e)
{
    if (e->open) enc_close(e);
    return e->full ? 0 : e->n;
}

size_t qp_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    cobs_enc_t e;
    enc_start(&e, dst, cap);
    enc_bytes(&e, src, len);
    return enc_finish(&e);
}

long qp_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    size_t i = 0, n = 0;
    while (i < len) {
        uint8_t code = src[i++];
        if (code == 0 || (size_t)(code - 1) > len - i) return -(long)QP_E_BAD_COBS;
        for (uint8_t k = 1; k < code; k++) {
            uint8_t b = src[i++];
            if (b == 0) return -(long)QP_E_BAD_COBS;
            if (n >= cap) return -(long)QP_E_TOO_LONG;
            dst[n++] = b;
        }
        if (code != COBS_FULL && i < len) {
            if (n >= cap) return -(long)QP_E_TOO_LONG;
            dst[n++] = 0;
        }
    }
    return (long)n;
}

size_t qp_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t length,
                       uint8_t *out, size_t cap)
{
    uint8_t header[QP_HEADER_BYTES], crc_le[QP_CRC_BYTES];
    if (length > QP_MAX_PAYLOAD || (length > 0 && payload == NULL)) return 0;
    header[QP_HDR_VERSION] = (uint8_t)QP_VERSION;
    header[QP_HDR_TYPE] = type;
    qp_put_u16(header + QP_HDR_SEQ, seq);
    qp_put_u16(header + QP_HDR_LENGTH, length);
    uint16_t crc = qp_crc16(QP_CRC_INIT, header, sizeof header);
    crc = qp_crc16(crc, payload, length);
    qp_put_u16(crc_le, crc);

    cobs_enc_t e;
    enc_start(&e, out, cap);
    enc_bytes(&e, header, sizeof header);
    enc_bytes(&e, payload, length);
    enc_bytes(&e, crc_le, sizeof crc_le);
    size_t n = enc_finish(&e);
    if (n == 0 || n >= cap) return 0;
    out[n] = 0;
    return n + 1;
}

/* --------------------------------------------------------------------------------------------
 * Decoding, a byte at a time. */

void qp_decoder_reset(qp_decoder_t *d)
{
    d->n = 0;
    d->encoded = 0;
    d->run = 0;
    d->zero_next = 0;
    d->flags = 0;
}

void qp_decoder_init(qp_decoder_t *d, uint8_t *buf, uint16_t cap)
{
    d->buf = buf;
    d->limit = cap < QP_MAX_RAW ? cap : (uint16_t)QP_MAX_RAW;
    qp_decoder_reset(d);
}

static void dec_put(qp_decoder_t *d, uint8_t b)
{
    if (d->n < d->limit)
        d->buf[d->n++] = b;
    else
        d->flags |= DEC_OVERFLOW;
}

/* The verdict on the frame that just ended (frame.h lists the order of the checks). */
static int dec_finish(const qp_decoder_t *d, qp_frame_t *frame)
{
    if (d->flags & DEC_TOO_LONG) return QP_E_TOO_LONG;
    if (d->run != 0) return QP_E_BAD_COBS;
    if (d->flags & DEC_OVERFLOW) return QP_E_TOO_LONG;
    if (d->n < QP_HEADER_BYTES + QP_CRC_BYTES) return QP_E_TRUNCATED;
    uint16_t body = (uint16_t)(d->n - QP_CRC_BYTES);
    if (qp_crc16(QP_CRC_INIT, d->buf, body) != qp_get_u16(d->buf + body)) return QP_E_BAD_CRC;
    frame->version = d->buf[QP_HDR_VERSION];
    frame->type = d->buf[QP_HDR_TYPE];
    frame->seq = qp_get_u16(d->buf + QP_HDR_SEQ);
    frame->length = qp_get_u16(d->buf + QP_HDR_LENGTH);
    frame->payload = NULL;
    if (frame->version != QP_VERSION) return QP_E_BAD_VERSION;
    if (frame->length != body - QP_HEADER_BYTES) return QP_E_BAD_LENGTH;
    frame->payload = d->buf + QP_HEADER_BYTES;
    return QP_OK;
}

int qp_decoder_feed(qp_decoder_t *d, uint8_t byte, qp_frame_t *frame)
{
    if (byte == 0) {
        int rc = d->encoded == 0 ? QP_MORE : dec_finish(d, frame);
        qp_decoder_reset(d);
        return rc;
    }
    if (d->flags & DEC_TOO_LONG) return QP_MORE;
    if (++d->encoded > QP_MAX_ENCODED) {
        d->flags |= DEC_TOO_LONG;
        return QP_MORE;
    }
    if (d->run == 0) { /* a code byte opens the next block */
        if (d->zero_next) dec_put(d, 0);
        d->run = (uint8_t)(byte - 1);
        d->zero_next = byte != COBS_FULL;
    } else {
        dec_put(d, byte);
        d->run--;
    }
    return QP_MORE;
}
