/* die_unit.c: see die_unit.h; the conversation is drawn in docs/protocol.md ("The die unit").
 *
 * Every request is answered inside die_unit_rx(), a roll included (it takes milliseconds); the
 * button and the heartbeat are looked after by die_unit_poll(). Frames go out through send(),
 * which encodes into the unit's own tx buffer; between frames that buffer is also the scratch
 * line the OLED is written from, and while the engine runs it is the engine's arena (die_unit.h:
 * no frame goes out and nothing is shown during die_generate()), so nothing large ever sits on
 * the stack and the RAM is counted once. No `*`, `/` or `%` on
 * a variable anywhere: gcc would call __mulsi3/__udivsi3/__umodsi3 on RV32EC.
 */
#include "die_unit.h"

#include <string.h>

#include "die_gauss.h"

#define QP_NO_SEQ 0xFFFFu
/* A roll's state while it runs (the ACK to ROLL_REQUEST says so). */
#define DIE_UNIT_ROLLING QP_STATE_ROLLING

/* --------------------------------------------------------------------------------------------
 * The roll's recipe */

uint32_t die_roll_recipe(const uint8_t *bytes, uint32_t n, int *pips, int8_t *z)
{
    uint32_t i = 0, k, b, s;
    while (i < n && bytes[i] >= DIE_UNIT_REJECT) i++;
    if (n < DIE_UNIT_ROLL_BYTES || i > n - DIE_UNIT_ROLL_BYTES) return 0;
    /* b mod 6 by restoring division: b < 252 < 6 << 6, so subtracting 6 << k (k = 5..0)
     * whenever it fits leaves the remainder. */
    b = bytes[i];
    for (s = 6u << 5; s >= 6u; s >>= 1)
        if (b >= s) b -= s;
    *pips = (int)(b + 1u);
    for (k = 0; k < DIE_NZ; k++) z[k] = die_gauss[bytes[i + 1u + k]];
    return i + DIE_UNIT_ROLL_BYTES;
}

/* --------------------------------------------------------------------------------------------
 * Sending */

static uint32_t now_ms(die_unit_t *u) { return u->board.millis(u->board.ctx); }

static void send(die_unit_t *u, uint8_t type, uint16_t length)
{
    size_t n = qp_frame_encode(type, u->tx_seq, u->payload, length, u->work.tx,
                               sizeof u->work.tx);
    if (n == 0) return;  /* cannot happen: every payload here fits DIE_UNIT_TX_BYTES */
    u->tx_seq = (uint16_t)(u->tx_seq + 1u);
    u->stats.frames_out++;
    u->board.serial_write(u->board.ctx, u->work.tx, (uint32_t)n);
}

/* ERROR with the code's own sentence (none of ours: flash is scarce, the table has them). */
static void send_error(die_unit_t *u, int code, uint16_t about_seq, uint32_t detail)
{
    qp_put_u16(u->payload + QP_ERROR_CODE, (uint16_t)code);
    qp_put_u16(u->payload + QP_ERROR_ABOUT_SEQ, about_seq);
    qp_put_u32(u->payload + QP_ERROR_DETAIL, detail);
    send(u, QP_MSG_ERROR, QP_ERROR_SENTENCE);
}

/* A frame refused for what it is (damaged, malformed, not for a die unit). */
static void refuse(die_unit_t *u, int code, uint16_t about_seq, uint32_t detail)
{
    u->stats.frames_bad++;
    send_error(u, code, about_seq, detail);
}

static void send_ack(die_unit_t *u, uint16_t seq)
{
    qp_put_u16(u->payload + QP_ACK_ACKED_SEQ, seq);
    u->payload[QP_ACK_STATE] = u->state;
    send(u, QP_MSG_ACK, QP_ACK_SIZE);
}

static void send_hello(die_unit_t *u)
{
    uint8_t *p = u->payload;
    memset(p, 0, QP_HELLO_SIZE);  /* clips_sha256: zeros, a die has no clip bank */
    p[QP_HELLO_PROTOCOL] = QP_VERSION;
    p[QP_HELLO_KIND] = QP_KIND_DIE;
    memcpy(p + QP_HELLO_SERIAL, u->id.serial, QP_HELLO_SERIAL_LEN);
    qp_put_u32(p + QP_HELLO_FIRMWARE, u->id.firmware ? u->id.firmware : DIE_UNIT_FIRMWARE);
    memcpy(p + QP_HELLO_WEIGHTS_SHA256, u->id.weights_sha256, QP_HELLO_WEIGHTS_SHA256_LEN);
    qp_put_u16(p + QP_HELLO_MAX_PAYLOAD, DIE_UNIT_MAX_PAYLOAD);
    send(u, QP_MSG_HELLO, QP_HELLO_SIZE);
}

static void send_reserve(die_unit_t *u)
{
    qp_put_u32(u->payload + QP_RESERVE_START, u->start);
    qp_put_u16(u->payload + QP_RESERVE_HELD, u->held);
    qp_put_u16(u->payload + QP_RESERVE_CAPACITY, DIE_UNIT_RESERVE_BYTES);
    send(u, QP_MSG_RESERVE, QP_RESERVE_SIZE);
}

static void send_heartbeat(die_unit_t *u, uint32_t now)
{
    qp_put_u32(u->payload + QP_HEARTBEAT_UPTIME_MS, now - u->boot_ms);
    u->payload[QP_HEARTBEAT_STATE] = u->state;
    send(u, QP_MSG_HEARTBEAT, QP_HEARTBEAT_SIZE);
    u->heartbeat_ms = now;
}

/* --------------------------------------------------------------------------------------------
 * The display: the 32 x 32 face at 2x (64 x 64) in columns 32..95 of the 128 x 64 panel. Display
 * page P shows face rows 4P..4P+3, which are half of face page P/2: each of those four bits is
 * doubled into two rows, each column into two columns. Built a page at a time in u->work.tx. */

static uint8_t doubled_rows(uint32_t nibble)
{
    uint32_t out = 0, k;
    for (k = 0; k < 4u; k++)
        if (nibble & (1u << k)) out |= 3u << (k << 1);
    return (uint8_t)out;
}

static void show_face(die_unit_t *u, const uint8_t *face)
{
    uint32_t page, x;
    for (page = 0; page < DIE_OLED_PAGES; page++) {
        const uint8_t *src = face + ((page >> 1) << 5);
        uint32_t shift = (page & 1u) << 2;
        for (x = 0; x < DIE_FACE; x++) {
            uint8_t b = doubled_rows(((uint32_t)src[x] >> shift) & 15u);
            u->work.tx[x << 1] = b;
            u->work.tx[(x << 1) + 1u] = b;
        }
        u->board.oled_write(u->board.ctx, page, DIE_OLED_FACE_COL, u->work.tx, DIE_FACE << 1);
    }
}

static void clear_display(die_unit_t *u)
{
    uint32_t page;
    memset(u->work.tx, 0, DIE_OLED_WIDTH >> 1);
    for (page = 0; page < DIE_OLED_PAGES; page++) {
        u->board.oled_write(u->board.ctx, page, 0, u->work.tx, DIE_OLED_WIDTH >> 1);
        u->board.oled_write(u->board.ctx, page, DIE_OLED_WIDTH >> 1, u->work.tx,
                            DIE_OLED_WIDTH >> 1);
    }
}

/* "No entropy": the face's square outline crossed by both diagonals, never a die face. Written
 * into `face` (the ROLL payload's face, unused when a roll is refused) and shown. */
static void show_no_entropy(die_unit_t *u)
{
    uint8_t *face = u->payload + QP_ROLL_FACE;
    uint32_t x, y;
    memset(face, 0, DIE_PAGE_BYTES);
    for (y = 0; y < DIE_FACE; y++)
        for (x = 0; x < DIE_FACE; x++)
            if (x == 0 || y == 0 || x == DIE_FACE - 1u || y == DIE_FACE - 1u || x == y ||
                x + y == DIE_FACE - 1u)
                face[((y >> 3) << 5) + x] |= (uint8_t)(1u << (y & 7u));
    show_face(u, face);
}

/* --------------------------------------------------------------------------------------------
 * The roll */

/* Roll once: for a ROLL_REQUEST (`seq` its seq, answered ACK then ROLL) or for the button
 * (`seq` QP_NO_SEQ: ROLL unasked). Nothing is spent unless the whole roll is paid for. */
static void roll(die_unit_t *u, uint16_t seq)
{
    int8_t z[DIE_NZ];
    int pips = 0;
    uint32_t used, offset;
    int rc;
    if (u->engine_rc != DIE_OK) {
        u->stats.refused++;
        send_error(u, QP_E_ENGINE, seq, (uint32_t)u->engine_rc);
        return;
    }
    used = die_roll_recipe(u->reserve, u->held, &pips, z);
    if (used == 0) {
        u->stats.refused++;
        show_no_entropy(u);
        send_error(u, QP_E_NO_ENTROPY, seq, u->held);
        return;
    }
    u->state = DIE_UNIT_ROLLING;
    if (seq != QP_NO_SEQ) send_ack(u, seq);
    rc = die_generate(u->model, &u->work.arena, z, pips, u->payload + QP_ROLL_FACE, 0, 0);
    u->state = QP_STATE_IDLE;
    if (rc != DIE_OK) {  /* the trial roll at init passed, so this is not expected; spend nothing */
        u->stats.refused++;
        send_error(u, QP_E_ENGINE, seq, (uint32_t)rc);
        return;
    }
    /* Spent: gone for good. */
    offset = u->start;
    u->start += used;
    u->held = (uint16_t)(u->held - used);
    memmove(u->reserve, u->reserve + used, u->held);
    u->stats.rolls++;
    u->stats.rejected += used - DIE_UNIT_ROLL_BYTES;
    u->roll_pips = (uint8_t)pips;
    show_face(u, u->payload + QP_ROLL_FACE);
    u->payload[QP_ROLL_PIPS] = (uint8_t)pips;
    qp_put_u32(u->payload + QP_ROLL_ENTROPY_OFFSET, offset);
    u->payload[QP_ROLL_ENTROPY_USED] = (uint8_t)used;
    send(u, QP_MSG_ROLL, QP_ROLL_SIZE);
}

/* --------------------------------------------------------------------------------------------
 * Requests */

/* TOPUP: the reserve is the window [start, start + held) of the die's entropy stream.
 *   no bytes                                  -> RESERVE (a question)
 *   empty reserve, offset >= start            -> the bytes are the reserve, from offset on
 *   offset == start + held                    -> appended (ERROR, detail = room, if too many)
 *   bytes all within [start, start + held)    -> ignored (a repeated TOPUP)
 *   anything else                             -> ERROR QP_E_BAD_FIELD, detail = start + held
 * Positions before `start` are spent (or were skipped): never taken again. */
static void on_topup(die_unit_t *u, uint16_t seq, const uint8_t *p, uint16_t length)
{
    uint32_t offset = qp_get_u32(p + QP_TOPUP_OFFSET);
    uint32_t n = (uint32_t)length - QP_TOPUP_ENTROPY;
    uint32_t end = u->start + u->held;
    uint32_t room = DIE_UNIT_RESERVE_BYTES - u->held;
    const uint8_t *bytes = p + QP_TOPUP_ENTROPY;
    if (n == 0) {
        send_reserve(u);
        return;
    }
    if ((u->held == 0 && offset >= u->start) || offset == end) {
        if (n > room) {
            refuse(u, QP_E_BAD_FIELD, seq, room);
            return;
        }
        if (u->held == 0) u->start = offset;
        memcpy(u->reserve + u->held, bytes, n);
        u->held = (uint16_t)(u->held + n);
        send_reserve(u);
        return;
    }
    if (offset >= u->start && offset < end && n <= end - offset) {
        send_reserve(u);  /* already held: nothing to take */
        return;
    }
    refuse(u, QP_E_BAD_FIELD, seq, end);
}

static void on_reset(die_unit_t *u, uint16_t seq)
{
    /* The reserve stays: its bytes are the controller's draws, and spent ones are gone anyway. */
    u->state = u->engine_rc == DIE_OK ? QP_STATE_IDLE : QP_STATE_FAULT;
    qp_decoder_reset(&u->dec);
    send_ack(u, seq);
}

static void on_frame(die_unit_t *u, const qp_frame_t *f)
{
    int check = qp_payload_check(f->type, f->length);
    u->stats.frames_in++;
    if (check != QP_OK) {
        refuse(u, check, f->seq, check == QP_E_UNKNOWN_TYPE ? f->type : f->length);
        return;
    }
    switch (f->type) {
    case QP_MSG_HELLO:
        if (f->payload[QP_HELLO_KIND] > QP_KIND_DIE) {
            refuse(u, QP_E_BAD_FIELD, f->seq, f->payload[QP_HELLO_KIND]);
            return;
        }
        send_hello(u);
        return;
    case QP_MSG_TOPUP: on_topup(u, f->seq, f->payload, f->length); return;
    case QP_MSG_ROLL_REQUEST: roll(u, f->seq); return;
    case QP_MSG_RESET: on_reset(u, f->seq); return;
    case QP_MSG_HEARTBEAT:  /* the controller's pulse: nothing to answer */
    case QP_MSG_ACK:
    case QP_MSG_ERROR:      /* never answer an ERROR with an ERROR */
        return;
    default:                /* a unit's message, or a cat unit's: not for a die to take */
        refuse(u, QP_E_UNEXPECTED, f->seq, f->type);
        return;
    }
}

void die_unit_rx(die_unit_t *u, const uint8_t *bytes, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++) {
        qp_frame_t f;
        int rc = qp_decoder_feed(&u->dec, bytes[i], &f);
        int known;
        uint32_t detail;
        if (rc == QP_MORE) continue;
        if (rc == QP_OK) {
            on_frame(u, &f);
            continue;
        }
        /* A damaged frame: the header is only known when the CRC held (version, length). */
        known = rc == QP_E_BAD_VERSION || rc == QP_E_BAD_LENGTH;
        detail = rc == QP_E_BAD_VERSION ? f.version : rc == QP_E_BAD_LENGTH ? f.length : 0;
        refuse(u, rc, known ? f.seq : (uint16_t)QP_NO_SEQ, detail);
    }
}

void die_unit_line_reset(die_unit_t *u) { qp_decoder_reset(&u->dec); }

/* --------------------------------------------------------------------------------------------
 * Polling: the button (debounced: a level counts once it has held DIE_UNIT_DEBOUNCE_MS) and
 * the heartbeat. */

uint32_t die_unit_poll(die_unit_t *u)
{
    uint32_t now = now_ms(u), since, wait;
    if (u->board.button) {
        uint8_t raw = u->board.button(u->board.ctx) ? 1u : 0u;
        if (raw != u->raw) {
            u->raw = raw;
            u->raw_ms = now;
        } else if (raw != u->level && (uint32_t)(now - u->raw_ms) >= DIE_UNIT_DEBOUNCE_MS) {
            u->level = raw;
            if (raw) {
                u->stats.presses++;
                roll(u, QP_NO_SEQ);
                now = now_ms(u);
            }
        }
    }
    since = now - u->heartbeat_ms;
    if (since >= QP_HEARTBEAT_MS) {
        send_heartbeat(u, now);
        since = 0;
    }
    wait = QP_HEARTBEAT_MS - since;
    if (u->board.button && wait > DIE_UNIT_POLL_MS) wait = DIE_UNIT_POLL_MS;
    return wait;
}

/* --------------------------------------------------------------------------------------------
 * Start */

int die_unit_init(die_unit_t *u, const die_board_t *board, const die_identity_t *id,
                  const die_model_t *model)
{
    int8_t z[DIE_NZ];
    if (!u || !board || !id || !model || !board->serial_write || !board->millis ||
        !board->oled_write)
        return -1;
    memset(u, 0, sizeof *u);
    u->board = *board;
    u->id = *id;
    u->model = model;
    qp_decoder_init(&u->dec, u->rx, sizeof u->rx);
    /* The trial roll: the engine checks the model's shifts; its face is not shown. */
    memset(z, 0, sizeof z);
    u->engine_rc = die_generate(model, &u->work.arena, z, 1, u->payload + QP_ROLL_FACE, 0, 0);
    u->state = u->engine_rc == DIE_OK ? QP_STATE_IDLE : QP_STATE_FAULT;
    clear_display(u);
    if (board->button) u->raw = u->level = board->button(board->ctx) ? 1u : 0u;
    u->boot_ms = now_ms(u);
    u->raw_ms = u->boot_ms;
    /* The first heartbeat goes out at the first poll: the controller hears the unit at once. */
    u->heartbeat_ms = u->boot_ms - QP_HEARTBEAT_MS;
    return u->engine_rc;
}
