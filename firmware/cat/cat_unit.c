/* cat_unit.c: see cat_unit.h; the conversation is drawn in docs/protocol.md ("The cat unit").
 *
 * Requests are answered inside cat_unit_rx() (a reply is due within QP_REPLY_MS, and a job can
 * take seconds); the work that takes time happens in cat_unit_poll(). Every frame goes out through
 * send(), which encodes it into the unit's own tx buffer: nothing large ever sits on the stack. */
#include "cat_unit.h"

#include <string.h>

#include "sha256.h"

/* --------------------------------------------------------------------------------------------
 * Sending */

static uint32_t now_ms(cat_unit_t *u) { return u->board.millis(u->board.ctx); }

static void send(cat_unit_t *u, uint8_t type, uint16_t length)
{
    size_t n = qp_frame_encode(type, u->tx_seq, u->payload, length, u->tx, sizeof u->tx);
    if (n == 0) return;  /* cannot happen: every payload here is within QP_MAX_PAYLOAD */
    u->tx_seq = (uint16_t)(u->tx_seq + 1u);
    u->stats.frames_out++;
    u->board.serial_write(u->board.ctx, u->tx, (uint32_t)n);
}

/* ERROR: the table's code, the seq refused (QP_NO_SEQ: none or unknown), a detail, and a
 * sentence of our own only where the code's own would say less (the engine's). */
#define QP_NO_SEQ 0xFFFFu

static void send_error(cat_unit_t *u, int code, uint16_t about_seq, uint32_t detail,
                       const char *sentence)
{
    size_t len = sentence ? strlen(sentence) : 0;
    if (len > QP_MAX_PAYLOAD - QP_ERROR_SENTENCE) len = QP_MAX_PAYLOAD - QP_ERROR_SENTENCE;
    qp_put_u16(u->payload + QP_ERROR_CODE, (uint16_t)code);
    qp_put_u16(u->payload + QP_ERROR_ABOUT_SEQ, about_seq);
    qp_put_u32(u->payload + QP_ERROR_DETAIL, detail);
    if (len) memcpy(u->payload + QP_ERROR_SENTENCE, sentence, len);
    send(u, QP_MSG_ERROR, (uint16_t)(QP_ERROR_SENTENCE + len));
}

/* A frame refused for what it is (damaged, malformed, not for a cat unit), not for the unit's state. */
static void refuse(cat_unit_t *u, int code, uint16_t about_seq, uint32_t detail)
{
    u->stats.frames_bad++;
    send_error(u, code, about_seq, detail, 0);
}

static void send_ack(cat_unit_t *u, uint16_t seq)
{
    qp_put_u16(u->payload + QP_ACK_ACKED_SEQ, seq);
    u->payload[QP_ACK_STATE] = u->state;
    send(u, QP_MSG_ACK, QP_ACK_SIZE);
}

static void send_hello(cat_unit_t *u)
{
    uint8_t *p = u->payload;
    p[QP_HELLO_PROTOCOL] = QP_VERSION;
    p[QP_HELLO_KIND] = QP_KIND_CAT;
    memcpy(p + QP_HELLO_SERIAL, u->id.serial, QP_HELLO_SERIAL_LEN);
    qp_put_u32(p + QP_HELLO_FIRMWARE, u->id.firmware ? u->id.firmware : CAT_UNIT_FIRMWARE);
    memcpy(p + QP_HELLO_WEIGHTS_SHA256, u->id.weights_sha256, QP_HELLO_WEIGHTS_SHA256_LEN);
    memcpy(p + QP_HELLO_CLIPS_SHA256, u->id.clips_sha256, QP_HELLO_CLIPS_SHA256_LEN);
    qp_put_u16(p + QP_HELLO_MAX_PAYLOAD, QP_MAX_PAYLOAD);
    send(u, QP_MSG_HELLO, QP_HELLO_SIZE);
}

static void send_heartbeat(cat_unit_t *u, uint32_t now)
{
    qp_put_u32(u->payload + QP_HEARTBEAT_UPTIME_MS, now - u->boot_ms);
    u->payload[QP_HEARTBEAT_STATE] = u->state;
    send(u, QP_MSG_HEARTBEAT, QP_HEARTBEAT_SIZE);
    u->heartbeat_ms = now;
}

/* A heartbeat when one is due: from cat_unit_poll(), and from inside a job's progress callback
 * so that a long generation never looks like a lost unit. */
static void heartbeat_if_due(cat_unit_t *u, uint32_t now)
{
    if ((uint32_t)(now - u->heartbeat_ms) >= QP_HEARTBEAT_MS) send_heartbeat(u, now);
}

/* --------------------------------------------------------------------------------------------
 * Requests */

static int busy(const cat_unit_t *u)
{
    return u->state == QP_STATE_GENERATING || u->state == QP_STATE_SENDING ||
           u->state == QP_STATE_SPEAKING;
}

/* The held job is this exhibit with these exact bytes: a GENERATE that repeats it (the controller
 * reconnected and lost track) is served from what the unit already has. */
static int same_job(const cat_unit_t *u, uint32_t exhibit, const uint8_t *latent)
{
    return u->job != CAT_UNIT_JOB_NONE && u->exhibit == exhibit &&
           memcmp(u->latent, latent, CAT_UNIT_NZ) == 0;
}

static void on_generate(cat_unit_t *u, uint16_t seq, const uint8_t *p)
{
    uint32_t exhibit = qp_get_u32(p + QP_GENERATE_EXHIBIT);
    uint32_t verdict = qp_get_u32(p + QP_GENERATE_VERDICT);
    const uint8_t *latent = p + QP_GENERATE_LATENT;
    if (verdict > QP_GENERATE_VERDICT_MAX) {
        refuse(u, QP_E_BAD_FIELD, seq, verdict);
        return;
    }
    if (u->engine_rc != CAT_OK) {
        send_error(u, QP_E_ENGINE, seq, (uint32_t)u->engine_rc, cat_strerror(u->engine_rc));
        return;
    }
    if (u->engine.model.nz != CAT_UNIT_NZ) {
        send_error(u, QP_E_BAD_LATENT, seq, u->engine.model.nz, 0);
        return;
    }
    if (same_job(u, exhibit, latent) && u->state != QP_STATE_SPEAKING) {
        /* Queued: it will run. Computed: send it again from the first chunk. */
        u->job_seq = seq;
        u->verdict = verdict;
        if (u->job == CAT_UNIT_JOB_DONE) {
            u->state = QP_STATE_SENDING;
            u->sent = 0;
            u->stats.jobs_resent++;
        }
        send_ack(u, seq);
        return;
    }
    if (busy(u)) {
        send_error(u, QP_E_BUSY, seq, u->exhibit, 0);
        return;
    }
    u->exhibit = exhibit;
    u->verdict = verdict;
    u->job_seq = seq;
    memcpy(u->latent, latent, CAT_UNIT_NZ);
    u->job = CAT_UNIT_JOB_QUEUED;
    u->state = QP_STATE_GENERATING;
    u->progress_layer = 0;
    send_ack(u, seq);
}

static void on_speak(cat_unit_t *u, uint16_t seq, const uint8_t *p)
{
    uint32_t exhibit = qp_get_u32(p + QP_SPEAK_EXHIBIT);
    uint32_t verdict = qp_get_u32(p + QP_SPEAK_VERDICT);
    if (verdict > QP_SPEAK_VERDICT_MAX) {
        refuse(u, QP_E_BAD_FIELD, seq, verdict);
        return;
    }
    if (busy(u)) {
        send_error(u, QP_E_BUSY, seq, u->exhibit, 0);
        return;
    }
    if (u->job != CAT_UNIT_JOB_DONE || u->exhibit != exhibit) {
        send_error(u, QP_E_NO_JOB, seq, exhibit, 0);
        return;
    }
    int rc = u->board.speak_start(u->board.ctx, verdict);
    if (rc != 0) {
        send_error(u, QP_E_SPEECH, seq, (uint32_t)rc, 0);
        return;
    }
    u->verdict = verdict;
    u->speak_ms = now_ms(u);
    u->state = QP_STATE_SPEAKING;
    send_ack(u, seq);
}

static void on_reset(cat_unit_t *u, uint16_t seq)
{
    u->job = CAT_UNIT_JOB_NONE;
    u->sent = 0;
    u->state = u->engine_rc == CAT_OK ? QP_STATE_IDLE : QP_STATE_FAULT;
    qp_decoder_reset(&u->dec);
    send_ack(u, seq);
}

static void on_frame(cat_unit_t *u, const qp_frame_t *f)
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
    case QP_MSG_GENERATE: on_generate(u, f->seq, f->payload); return;
    case QP_MSG_SPEAK: on_speak(u, f->seq, f->payload); return;
    case QP_MSG_RESET: on_reset(u, f->seq); return;
    case QP_MSG_HEARTBEAT:  /* the controller's pulse: nothing to answer */
    case QP_MSG_ACK:
    case QP_MSG_ERROR:      /* never answer an ERROR with an ERROR: two sides could ping-pong */
        return;
    default:                /* a unit's message, or a die unit's: not for a cat unit to take */
        refuse(u, QP_E_UNEXPECTED, f->seq, f->type);
        return;
    }
}

void cat_unit_rx(cat_unit_t *u, const uint8_t *bytes, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        qp_frame_t f;
        int rc = qp_decoder_feed(&u->dec, bytes[i], &f);
        if (rc == QP_MORE) continue;
        if (rc == QP_OK) {
            on_frame(u, &f);
            continue;
        }
        /* A damaged frame: the header is only known when the CRC held (version, length). */
        int known = rc == QP_E_BAD_VERSION || rc == QP_E_BAD_LENGTH;
        uint32_t detail = rc == QP_E_BAD_VERSION ? f.version : rc == QP_E_BAD_LENGTH ? f.length : 0;
        refuse(u, rc, known ? f.seq : (uint16_t)QP_NO_SEQ, detail);
    }
}

void cat_unit_line_reset(cat_unit_t *u) { qp_decoder_reset(&u->dec); }

/* --------------------------------------------------------------------------------------------
 * The job */

static void on_progress(void *user, uint32_t done, uint32_t total, uint32_t layer)
{
    cat_unit_t *u = user;
    uint32_t now = now_ms(u);
    uint8_t layer1 = (uint8_t)(layer + 1u);
    if (layer1 != u->progress_layer || done == total ||
        (uint32_t)(now - u->progress_ms) >= CAT_UNIT_PROGRESS_MS) {
        qp_put_u32(u->payload + QP_PROGRESS_EXHIBIT, u->exhibit);
        u->payload[QP_PROGRESS_LAYER] = layer1;
        qp_put_u16(u->payload + QP_PROGRESS_SLICE, (uint16_t)done);
        qp_put_u16(u->payload + QP_PROGRESS_SLICES, (uint16_t)total);
        send(u, QP_MSG_PROGRESS, QP_PROGRESS_SIZE);
        u->progress_layer = layer1;
        u->progress_ms = now;
    }
    heartbeat_if_due(u, now);
}

static void run_job(cat_unit_t *u)
{
    cat_hooks_t hooks = {on_progress, 0, u};
    u->progress_ms = now_ms(u);
    int rc = cat_generate(&u->engine, u->latent, u->image, &hooks);
    u->stats.jobs_run++;
    if (rc != CAT_OK) {
        u->job = CAT_UNIT_JOB_NONE;
        u->state = QP_STATE_IDLE;
        send_error(u, QP_E_ENGINE, u->job_seq, (uint32_t)rc, cat_strerror(rc));
        return;
    }
    if (u->board.image_hook) u->board.image_hook(u->board.ctx, u->image, QP_IMAGE_BYTES);
    sha256(u->image, QP_IMAGE_BYTES, u->image_sha256);
    u->job = CAT_UNIT_JOB_DONE;
    u->state = QP_STATE_SENDING;
    u->sent = 0;
}

/* One IMAGE chunk per call, so that frames arriving between chunks (a RESET) are heard; after the
 * last, IMAGE_DONE, and the unit is idle again, holding the image for SPEAK or a repeat. */
static void send_chunk(cat_unit_t *u)
{
    if (u->sent < QP_IMAGE_BYTES) {
        uint32_t n = QP_IMAGE_BYTES - u->sent;
        if (n > QP_IMAGE_CHUNK) n = QP_IMAGE_CHUNK;
        qp_put_u32(u->payload + QP_IMAGE_EXHIBIT, u->exhibit);
        qp_put_u16(u->payload + QP_IMAGE_OFFSET, (uint16_t)u->sent);
        memcpy(u->payload + QP_IMAGE_DATA, u->image + u->sent, n);
        send(u, QP_MSG_IMAGE, (uint16_t)(QP_IMAGE_DATA + n));
        u->sent += n;
        return;
    }
    qp_put_u32(u->payload + QP_IMAGE_DONE_EXHIBIT, u->exhibit);
    qp_put_u16(u->payload + QP_IMAGE_DONE_LENGTH, QP_IMAGE_BYTES);
    memcpy(u->payload + QP_IMAGE_DONE_SHA256, u->image_sha256, QP_IMAGE_DONE_SHA256_LEN);
    send(u, QP_MSG_IMAGE_DONE, QP_IMAGE_DONE_SIZE);
    u->state = QP_STATE_IDLE;
}

uint32_t cat_unit_poll(cat_unit_t *u)
{
    uint32_t now = now_ms(u);
    heartbeat_if_due(u, now);
    switch (u->state) {
    case QP_STATE_GENERATING:
        run_job(u);
        return 0;
    case QP_STATE_SENDING:
        send_chunk(u);
        return 0;
    case QP_STATE_SPEAKING:
        if (!u->board.speak_busy(u->board.ctx)) {
            qp_put_u32(u->payload + QP_SPOKEN_EXHIBIT, u->exhibit);
            qp_put_u32(u->payload + QP_SPOKEN_MS, now - u->speak_ms);
            send(u, QP_MSG_SPOKEN, QP_SPOKEN_SIZE);
            u->state = QP_STATE_IDLE;
            return 0;
        }
        break;
    default:
        break;
    }
    uint32_t since = now - u->heartbeat_ms;
    uint32_t wait = since >= QP_HEARTBEAT_MS ? 0 : QP_HEARTBEAT_MS - since;
    /* While speaking, look again soon: the DAC's end is noticed by polling. */
    if (u->state == QP_STATE_SPEAKING && wait > CAT_UNIT_SPEAK_POLL_MS) wait = CAT_UNIT_SPEAK_POLL_MS;
    return wait;
}

/* --------------------------------------------------------------------------------------------
 * Start */

int cat_unit_init(cat_unit_t *u, const cat_board_t *board, const cat_identity_t *id,
                  uint8_t *arena, uint32_t arena_bytes)
{
    if (!u || !board || !id || !board->serial_write || !board->millis || !board->speak_start ||
        !board->speak_busy)
        return CAT_E_ARGS;
    memset(u, 0, sizeof *u);
    u->board = *board;
    u->id = *id;
    qp_decoder_init(&u->dec, u->rx, sizeof u->rx);
    u->engine_rc = cat_open(&u->engine, &board->sd, arena, arena_bytes);
    if (u->engine_rc == CAT_OK &&
        (uint32_t)u->engine.model.image_size * u->engine.model.image_size *
                u->engine.model.image_channels != QP_IMAGE_BYTES)
        u->engine_rc = CAT_E_UNSUPPORTED;  /* the protocol carries 64 x 64 RGB images only */
    u->state = u->engine_rc == CAT_OK ? QP_STATE_IDLE : QP_STATE_FAULT;
    u->boot_ms = now_ms(u);
    /* The first heartbeat goes out at the first poll: the controller hears the unit at once. */
    u->heartbeat_ms = u->boot_ms - QP_HEARTBEAT_MS;
    return u->engine_rc;
}
