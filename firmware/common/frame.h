/* frame.h: the units' serial framing (docs/protocol.md, "Framing"), shared by both firmwares.
 *
 * On the wire a frame is COBS(header | payload | CRC-16) followed by one 0x00 byte; the header is
 * version u8, type u8, seq u16, length u16, and every multi-byte field is little-endian. The CRC
 * is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout) over header and
 * payload: Python's binascii.crc_hqx(data, 0xFFFF).
 *
 * C99, no malloc, no globals, no floats, no division: every buffer belongs to the caller, so the
 * die unit (CH32V003: RV32EC, 2 KB SRAM) links it as well as the cat unit. The decoder takes one
 * byte at a time (what a UART interrupt hands over) and answers once per 0x00: a whole frame, or
 * the one error that frame earned; after either it is ready for the next frame, so one damaged
 * frame costs exactly that frame (it resynchronises at the next zero byte).
 *
 * The message layouts (types, payload offsets and sizes, states, error codes and their
 * sentences) are in qcat_protocol.h, generated from protocol.toml; qp_payload_check() there
 * checks a decoded frame's payload size against its type.
 */
#ifndef QCAT_FRAME_H
#define QCAT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "qcat_protocol.h"

/* qp_decoder_feed's answer while a frame is still arriving (QP_OK and QP_E_* are >= 0). */
#define QP_MORE (-1)

/* Little-endian fields, assembled byte by byte so the code is right on any host. */
static inline uint16_t qp_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t qp_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static inline void qp_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void qp_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* CRC-16/CCITT-FALSE of `len` bytes, continuing from `crc` (start with QP_CRC_INIT). Bitwise:
 * no 512-byte table in the die unit's 16 KB of flash; a frame is at most QP_MAX_RAW bytes. */
uint16_t qp_crc16(uint16_t crc, const uint8_t *data, size_t len);

/* COBS of `len` bytes into `dst` (`cap` bytes), without the delimiter. Returns the encoded size
 * (never 0: the encoding of nothing is one byte), or 0 when `dst` is too small. */
size_t qp_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

/* Decodes one COBS block sequence `src` (no delimiter in it) into `dst` (`cap` bytes). Returns
 * the decoded size, -QP_E_BAD_COBS when `src` holds a zero or a block runs past its end, or
 * -QP_E_TOO_LONG when `dst` is too small. */
long qp_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

/* One whole frame as it goes on the wire, delimiter included, into `out` (`cap` bytes;
 * QP_MAX_WIRE always suffices). Returns the bytes written, or 0 when `length` exceeds
 * QP_MAX_PAYLOAD or `out` is too small (nothing usable is written then). */
size_t qp_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t length,
                       uint8_t *out, size_t cap);

/* A decoded frame. On QP_OK every field is set and `payload` points into the decoder's buffer
 * (valid until the next byte is fed). On QP_E_BAD_VERSION and QP_E_BAD_LENGTH the CRC held, so
 * the header fields are set (the version seen, and the seq an ERROR reply names) and `payload`
 * is NULL; on every other error the frame is left untouched. */
typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    uint16_t length;
    const uint8_t *payload;
} qp_frame_t;

/* The incremental decoder: plain data, owned by the caller (a unit keeps one per port). */
typedef struct {
    uint8_t *buf;       /* the caller's: decoded header | payload | CRC */
    uint16_t limit;     /* min(its size, QP_MAX_RAW): a longer frame is QP_E_TOO_LONG */
    uint16_t n;         /* decoded bytes so far */
    uint16_t encoded;   /* encoded bytes since the last delimiter (stops at QP_MAX_ENCODED + 1) */
    uint8_t run;        /* data bytes left in the current COBS block */
    uint8_t zero_next;  /* the current block ends in a zero, if another block follows */
    uint8_t flags;      /* what went wrong so far (frame.c) */
} qp_decoder_t;

/* `buf` of `cap` bytes: QP_MAX_RAW takes every frame of the protocol; a smaller buffer (the die
 * unit's) refuses longer frames as QP_E_TOO_LONG and stays in step. */
void qp_decoder_init(qp_decoder_t *d, uint8_t *buf, uint16_t cap);

/* Feed one received byte. Returns QP_MORE while no frame has ended; at a 0x00 ending a frame,
 * QP_OK with `*frame` filled, or the error that frame earned, checked in this order:
 * QP_E_TOO_LONG (over QP_MAX_ENCODED bytes), QP_E_BAD_COBS, QP_E_TOO_LONG (decodes to more than
 * the buffer), QP_E_TRUNCATED, QP_E_BAD_CRC, QP_E_BAD_VERSION, QP_E_BAD_LENGTH. Empty frames
 * (0x00 0x00) are ignored, so a sender may lead with a 0x00 to flush a half-received frame. */
int qp_decoder_feed(qp_decoder_t *d, uint8_t byte, qp_frame_t *frame);

/* Forget a half-received frame (after a RESET, or when the line was re-opened). */
void qp_decoder_reset(qp_decoder_t *d);

#endif
