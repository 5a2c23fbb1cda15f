/* cat_unit.c: see cat_unit.h; the conversation is drawn in docs/protocol.md ("The cat unit").
 *
 * Requests are answered inside cat_unit_rx() (a reply is due within QP_REPLY_MS, and a job can
 * take seconds); the work that takes time happens in cat_unit_poll(). Every frame goes out through
 * send(), which encodes it into the unit's own tx buffer: nothing large ever sits on the stack. */
#include "cat_unit.h"

#include <string.h>

#include "qcw.h"
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
    /* Any whole frame means a controller is on the line: offline mode ends (an offline verdict
     * still being spoken finishes; the controller's GENERATE meets QP_E_BUSY until then). */
    u->controller_ms = now_ms(u);
    u->offline = 0;
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
    if (u->offline_job) {  /* nobody asked for this exhibit: no PROGRESS, only the pulse */
        heartbeat_if_due(u, now);
        return;
    }
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

/* The engine on u->latent into u->image, then its SHA-256: a controller's job and an offline
 * exhibit alike. CAT_OK or the engine's code. */
static int compute(cat_unit_t *u)
{
    cat_hooks_t hooks = {on_progress, 0, u};
    u->progress_ms = now_ms(u);
    int rc = cat_generate(&u->engine, u->latent, u->image, &hooks);
    u->stats.jobs_run++;
    if (rc != CAT_OK) return rc;
    if (u->board.image_hook) u->board.image_hook(u->board.ctx, u->image, QP_IMAGE_BYTES);
    sha256(u->image, QP_IMAGE_BYTES, u->image_sha256);
    return CAT_OK;
}

static void run_job(cat_unit_t *u)
{
    int rc = compute(u);
    if (rc != CAT_OK) {
        u->job = CAT_UNIT_JOB_NONE;
        u->state = QP_STATE_IDLE;
        send_error(u, QP_E_ENGINE, u->job_seq, (uint32_t)rc, cat_strerror(rc));
        return;
    }
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

/* --------------------------------------------------------------------------------------------
 * Offline: the card's reserve and journal (docs/formats.md, "A unit's SD card") */

/* Offsets in the card's sectors (docs/formats.md names them; cardfmt.py packs the same). */
enum {
    CARD_MAGIC = 0, CARD_VERSION = 8, CARD_HEADER_BYTES = 10, CARD_HEADER_CRC = 12,
    CARD_LEASE_ID = 16, CARD_CARD_ID = 32, CARD_IDS_LEN = 32,
    RESERVE_SERIAL = 48, RESERVE_RECORDS = 64, RESERVE_RECORD_BYTES = 68,
    RESERVE_WEIGHTS_SHA256 = 72, RESERVE_HEADER_END = 104,
    JOURNAL_CAPACITY = 48, JOURNAL_HEADER_END = 52,
    RECORD_INDEX = 0, RECORD_VERDICT = 4, RECORD_RAW = 8, RECORD_LATENT = 211,
    RECORD_END = 311,
    ENTRY_INDEX = 0, ENTRY_VERDICT = 4, ENTRY_SHA256 = 8, ENTRY_UPTIME_MS = 40, ENTRY_END = 44,
    CARD_CRC_AT = 508,  /* every record and entry: CRC-32 of bytes [0, 508) */
    CARD_VERSION_1 = 1
};
#define RAW_VERDICT_BYTE 200u  /* raw bytes 200..202 give the verdict code (DESIGN section 4) */

static const uint8_t RESERVE_MAGIC[8] = {'Q', 'C', 'R', 'E', 'S', 'E', 'R', 'V'};
static const uint8_t JOURNAL_MAGIC[8] = {'Q', 'C', 'J', 'O', 'U', 'R', 'N', 'L'};

static uint32_t sector_offset(uint32_t index) { return CAT_CARD_SECTOR * (index + 1u); }

static int all_zero(const uint8_t *p, uint32_t n)
{
    while (n--)
        if (*p++) return 0;
    return 1;
}

/* Offline work stops for good: why, and where. */
static void stop_offline(cat_unit_t *u, int why, uint32_t detail)
{
    u->offline_why = (uint8_t)why;
    u->offline_detail = detail;
    u->offline = 0;
}

static int card_read(cat_unit_t *u, uint32_t file, uint32_t offset)
{
    return u->board.card_read(u->board.ctx, file, offset, u->card, CAT_CARD_SECTOR);
}

/* A reserve or journal header in u->card: magic, version, size, CRC with its own 4 bytes as
 * zero, and the reserved tail zero. */
static int header_ok(const uint8_t *h, const uint8_t magic[8], uint32_t end)
{
    static const uint8_t zero4[4] = {0, 0, 0, 0};
    if (memcmp(h + CARD_MAGIC, magic, 8) != 0 || qp_get_u16(h + CARD_VERSION) != CARD_VERSION_1 ||
        qp_get_u16(h + CARD_HEADER_BYTES) != CAT_CARD_SECTOR)
        return 0;
    uint32_t crc = qcw_crc32(0, h, CARD_HEADER_CRC);
    crc = qcw_crc32(crc, zero4, 4);
    crc = qcw_crc32(crc, h + CARD_HEADER_CRC + 4, CAT_CARD_SECTOR - CARD_HEADER_CRC - 4);
    return crc == qp_get_u32(h + CARD_HEADER_CRC) && all_zero(h + end, CAT_CARD_SECTOR - end);
}

static int sealed(const uint8_t *block)
{
    return qcw_crc32(0, block, CARD_CRC_AT) == qp_get_u32(block + CARD_CRC_AT);
}

/* At start: the reserve's and the journal's headers, then the journal's slots, which must be
 * good entries (index = slot) and then only empty ones; the first empty slot is the next record. */
static void open_card(cat_unit_t *u)
{
    if (!u->board.card_read || !u->board.card_write) {
        stop_offline(u, CAT_OFFLINE_NO_CARD, 0);
        return;
    }
    if (u->engine_rc != CAT_OK || u->engine.model.nz != CAT_UNIT_NZ) {
        stop_offline(u, CAT_OFFLINE_ENGINE, (uint32_t)u->engine_rc);
        return;
    }
    uint8_t *h = u->card;
    if (card_read(u, CAT_CARD_RESERVE, 0) != 0) {
        stop_offline(u, CAT_OFFLINE_CARD_IO, 0);
        return;
    }
    u->records = qp_get_u32(h + RESERVE_RECORDS);
    if (!header_ok(h, RESERVE_MAGIC, RESERVE_HEADER_END) || u->records == 0 ||
        qp_get_u32(h + RESERVE_RECORD_BYTES) != CAT_CARD_SECTOR) {
        stop_offline(u, CAT_OFFLINE_RESERVE, 0);
        return;
    }
    /* Latents quantized with another image's scale would draw other cats than the controller
     * re-renders (a manifest with no hash, all zeros, is not checked). */
    if (!all_zero(u->id.weights_sha256, sizeof u->id.weights_sha256) &&
        memcmp(h + RESERVE_WEIGHTS_SHA256, u->id.weights_sha256, sizeof u->id.weights_sha256)) {
        stop_offline(u, CAT_OFFLINE_WEIGHTS, 0);
        return;
    }
    memcpy(u->card_ids, h + CARD_LEASE_ID, CARD_IDS_LEN);
    if (card_read(u, CAT_CARD_JOURNAL, 0) != 0) {
        stop_offline(u, CAT_OFFLINE_CARD_IO, 0);
        return;
    }
    if (!header_ok(h, JOURNAL_MAGIC, JOURNAL_HEADER_END)) {
        stop_offline(u, CAT_OFFLINE_JOURNAL, 0);
        return;
    }
    if (memcmp(h + CARD_LEASE_ID, u->card_ids, CARD_IDS_LEN) != 0 ||
        qp_get_u32(h + JOURNAL_CAPACITY) != u->records) {
        stop_offline(u, CAT_OFFLINE_MISMATCH, 0);
        return;
    }
    u->next_record = u->records;  /* a full journal: every record spent */
    for (uint32_t slot = 0; slot < u->records; slot++) {
        if (card_read(u, CAT_CARD_JOURNAL, sector_offset(slot)) != 0) {
            stop_offline(u, CAT_OFFLINE_CARD_IO, sector_offset(slot));
            return;
        }
        int empty = all_zero(h, CAT_CARD_SECTOR);
        if (u->next_record < u->records) {
            if (!empty) {  /* something after the end: a slot the unit cannot account for */
                stop_offline(u, CAT_OFFLINE_TORN, slot);
                return;
            }
        } else if (empty) {
            u->next_record = slot;
        } else if (!sealed(h) || qp_get_u32(h + ENTRY_INDEX) != slot ||
                   !all_zero(h + ENTRY_END, CARD_CRC_AT - ENTRY_END)) {
            stop_offline(u, CAT_OFFLINE_TORN, slot);  /* a torn write, or not a unit's entry */
            return;
        }
    }
    if (u->next_record >= u->records) stop_offline(u, CAT_OFFLINE_SPENT, u->records);
}

/* Record k in u->card as the unit may use it: not struck, sealed, its own index, reserved bytes
 * zero and a verdict code that follows from its raw bytes. */
static int record_why(const uint8_t *r, uint32_t k)
{
    if (all_zero(r, CAT_CARD_SECTOR)) return CAT_OFFLINE_STRUCK;
    const uint8_t *raw = r + RECORD_RAW + RAW_VERDICT_BYTE;
    uint32_t code = ((uint32_t)(raw[0] & 1u) << 16) | ((uint32_t)raw[1] << 8) | raw[2];
    if (!sealed(r) || qp_get_u32(r + RECORD_INDEX) != k || qp_get_u32(r + RECORD_VERDICT) != code ||
        !all_zero(r + RECORD_END, CARD_CRC_AT - RECORD_END))
        return CAT_OFFLINE_DAMAGED;
    return CAT_OFFLINE_READY;
}

/* Spend the next record (docs/formats.md, "The unit's rules"): read and check it, compute, write
 * its journal entry, and only then show the cat and speak: a record without an entry was never
 * shown to anyone. Any failure before the entry is on the card stops offline work. */
static void offline_exhibit(cat_unit_t *u, uint32_t now)
{
    uint32_t k = u->next_record;
    if (card_read(u, CAT_CARD_RESERVE, sector_offset(k)) != 0) {
        stop_offline(u, CAT_OFFLINE_CARD_IO, sector_offset(k));
        return;
    }
    int why = record_why(u->card, k);
    if (why != CAT_OFFLINE_READY) {
        stop_offline(u, why, k);
        return;
    }
    /* The controller's held job, if any, is dropped: its image is overwritten now. */
    u->job = CAT_UNIT_JOB_NONE;
    u->exhibit = k;
    u->verdict = qp_get_u32(u->card + RECORD_VERDICT);
    memcpy(u->latent, u->card + RECORD_LATENT, CAT_UNIT_NZ);
    u->offline_job = 1;
    u->state = QP_STATE_GENERATING;
    int rc = compute(u);
    u->state = QP_STATE_IDLE;
    if (rc != CAT_OK) {
        u->offline_job = 0;
        stop_offline(u, CAT_OFFLINE_ENGINE, (uint32_t)rc);
        return;
    }
    now = now_ms(u);
    uint8_t *e = u->card;
    memset(e, 0, CAT_CARD_SECTOR);
    qp_put_u32(e + ENTRY_INDEX, k);
    qp_put_u32(e + ENTRY_VERDICT, u->verdict);
    memcpy(e + ENTRY_SHA256, u->image_sha256, sizeof u->image_sha256);
    qp_put_u32(e + ENTRY_UPTIME_MS, now - u->boot_ms);
    qp_put_u32(e + CARD_CRC_AT, qcw_crc32(0, e, CARD_CRC_AT));
    if (u->board.card_write(u->board.ctx, CAT_CARD_JOURNAL, sector_offset(k), e,
                            CAT_CARD_SECTOR) != 0) {
        u->offline_job = 0;
        stop_offline(u, CAT_OFFLINE_WRITE, k);  /* the slot may be torn: write nothing more */
        return;
    }
    u->stats.offline_exhibits++;
    u->next_record = k + 1u;
    if (u->board.display) u->board.display(u->board.ctx, u->image, QP_IMAGE_BYTES);
    if (u->board.speak_start(u->board.ctx, u->verdict) == 0) {
        u->speak_ms = now;
        u->state = QP_STATE_SPEAKING;
    } else {  /* no clip bank: the cat is shown, unspoken */
        u->offline_job = 0;
        u->offline_due_ms = now + u->board.offline_period_ms;
    }
    if (u->next_record >= u->records) stop_offline(u, CAT_OFFLINE_SPENT, u->records);
}

/* Idle: go offline after offline_after_ms without a controller's frame, then spend a record
 * whenever one is due. Returns the milliseconds until that is next worth looking at. */
static uint32_t offline_poll(cat_unit_t *u, uint32_t now)
{
    if (u->offline_why != CAT_OFFLINE_READY) return QP_HEARTBEAT_MS;
    if (!u->offline) {
        uint32_t quiet = now - u->controller_ms;
        if (quiet < u->board.offline_after_ms) return u->board.offline_after_ms - quiet;
        u->offline = 1;
        u->offline_due_ms = now;
        return 0;  /* the first exhibit at the next poll: the board may note the change first */
    }
    int32_t until = (int32_t)(u->offline_due_ms - now);
    if (until > 0) return (uint32_t)until;
    offline_exhibit(u, now);
    return 0;
}

uint32_t cat_unit_poll(cat_unit_t *u)
{
    uint32_t now = now_ms(u);
    uint32_t offline_wait = QP_HEARTBEAT_MS;
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
            u->state = QP_STATE_IDLE;
            if (u->offline_job) {  /* nobody asked: no SPOKEN; the next one after the period */
                u->offline_job = 0;
                u->offline_due_ms = now + u->board.offline_period_ms;
                return 0;
            }
            qp_put_u32(u->payload + QP_SPOKEN_EXHIBIT, u->exhibit);
            qp_put_u32(u->payload + QP_SPOKEN_MS, now - u->speak_ms);
            send(u, QP_MSG_SPOKEN, QP_SPOKEN_SIZE);
            return 0;
        }
        break;
    case QP_STATE_IDLE:
        offline_wait = offline_poll(u, now);
        if (offline_wait == 0) return 0;
        break;
    default:
        break;
    }
    uint32_t since = now - u->heartbeat_ms;
    uint32_t wait = since >= QP_HEARTBEAT_MS ? 0 : QP_HEARTBEAT_MS - since;
    if (wait > offline_wait) wait = offline_wait;
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
    u->controller_ms = u->boot_ms;
    /* The first heartbeat goes out at the first poll: the controller hears the unit at once. */
    u->heartbeat_ms = u->boot_ms - QP_HEARTBEAT_MS;
    open_card(u);
    return u->engine_rc;
}
