/* cat_unit.h: the cat unit's firmware core: the serial protocol's state machine around the engine.
 *
 * What the unit does with the controller (docs/protocol.md, "The cat unit"): answer HELLO with its
 * identity, send HEARTBEAT every QP_HEARTBEAT_MS, take one job at a time (GENERATE -> ACK,
 * PROGRESS, IMAGE chunks, IMAGE_DONE with the SHA-256 of the RGB bytes), speak a verdict (SPEAK ->
 * ACK, SPOKEN), refuse what it cannot take with ERROR (the protocol table's codes; an engine
 * failure carries its CAT_E code) and drop everything on RESET. It is the code the real unit links
 * (`make rv32`) and the code the simulator runs (`qcat sim cat`, through build/libcatunit.so):
 * there is no second copy of this logic anywhere.
 *
 * C99, no malloc, no globals, no floats. The board is behind callbacks (cat_board_t): serial
 * output, the SD card as the engine's block reader, a millisecond clock and the DAC, and (when
 * the board has them) the card's reserve and journal for offline work. Everything
 * else, the image included, lives in the caller's cat_unit_t and arena, so two units (two
 * simulators in one process, or tests) share nothing.
 *
 * Driving it: feed received bytes to cat_unit_rx() as they arrive (an interrupt's buffer, a read
 * from the pty); requests are answered there, at once. Call cat_unit_poll() whenever the line is
 * quiet: it sends heartbeats, runs a queued job, sends the next image chunk and notices the end of
 * speech; it returns how many milliseconds may pass before it wants to be called again. A job runs
 * to its end inside one cat_unit_poll() (the engine is not interruptible): heartbeats and PROGRESS
 * still go out from the engine's progress callback, and frames that arrive meanwhile are handled by
 * the next cat_unit_rx().
 *
 * Offline (docs/protocol.md, "Offline: the card's reserve"): a board with card access lets the
 * unit make exhibits with no controller. At init the core checks the reserve's and the journal's
 * headers and scans the journal (docs/formats.md, "A unit's SD card"); when no frame has come
 * from a controller for `offline_after_ms`, it spends the reserve's next record every
 * `offline_period_ms`: engine, SHA-256, journal entry written, and only then shown and spoken. A
 * frame from a controller ends offline mode (the exhibit in flight is finished first). Anything
 * on the card it cannot trust stops offline work for good (until the next start), and
 * `offline_why` says why: the unit never writes past what it cannot read.
 */
#ifndef QCAT_CAT_UNIT_H
#define QCAT_CAT_UNIT_H

#include <stdint.h>

#include "cat_engine.h"
#include "frame.h"

/* The firmware version this core reports when the board does not set one: major.minor.patch. */
#define CAT_UNIT_FIRMWARE ((0u << 16) | (1u << 8) | 0u)
/* PROGRESS within one layer at most this often ("a few per second"); a new layer and the last
 * slice are always reported. */
#define CAT_UNIT_PROGRESS_MS 250u
/* While a verdict plays, the end of speech is looked for this often (SPOKEN.ms is that exact). */
#define CAT_UNIT_SPEAK_POLL_MS 10u
/* The latent the protocol carries; a model with another nz cannot take GENERATE (QP_E_BAD_LATENT). */
#define CAT_UNIT_NZ QP_GENERATE_LATENT_LEN

/* The card's files beside the weight image that the board reads and writes for the core (the
 * weights stay on the engine's `sd` reader, the clips behind speak_start). */
enum cat_card_file { CAT_CARD_RESERVE = 0, CAT_CARD_JOURNAL = 1 };
/* Reserve records, journal entries and both headers are one sector each (docs/formats.md). */
#define CAT_CARD_SECTOR 512u
/* Defaults a board may take: offline after 30 s without a controller's frame (a controller
 * heartbeats every second, so a quiet half minute is no hiccup), then an exhibit a minute. */
#define CAT_UNIT_OFFLINE_AFTER_MS 30000u
#define CAT_UNIT_OFFLINE_PERIOD_MS 60000u

/* Why the unit cannot work offline (cat_unit_t.offline_why); `offline_detail` names the record,
 * slot or CAT_E code where one applies. Never renumber: the binding and the simulator name them. */
enum cat_offline_why {
    CAT_OFFLINE_READY = 0,   /* it can (the card's reserve and journal checked) */
    CAT_OFFLINE_NO_CARD,     /* the board has no card access (NULL card_read or card_write) */
    CAT_OFFLINE_ENGINE,      /* the engine refused the weights or failed a run (detail: code) */
    CAT_OFFLINE_CARD_IO,     /* a card read failed (detail: the sector's byte offset) */
    CAT_OFFLINE_RESERVE,     /* the reserve's header is bad */
    CAT_OFFLINE_JOURNAL,     /* the journal's header is bad */
    CAT_OFFLINE_MISMATCH,    /* the journal names another lease or card, or has another capacity */
    CAT_OFFLINE_WEIGHTS,     /* the reserve's latents were made for another weight image */
    CAT_OFFLINE_TORN,        /* the journal is not "good entries, then empty" (detail: slot) */
    CAT_OFFLINE_STRUCK,      /* the next record is struck (detail: record) */
    CAT_OFFLINE_DAMAGED,     /* the next record is damaged (detail: record) */
    CAT_OFFLINE_SPENT,       /* every record is spent (detail: records) */
    CAT_OFFLINE_WRITE        /* writing a journal entry failed (detail: slot) */
};

typedef struct {
    /* One whole frame for the controller, delimiter included: a frame is never split across
     * calls (one USB transfer on the unit; the simulator's faults act per frame). */
    void (*serial_write)(void *ctx, const uint8_t *frame, uint32_t len);
    /* Milliseconds from any fixed origin, wrapping at 2^32. */
    uint32_t (*millis)(void *ctx);
    /* Start speaking `verdict` (its four clips from the card's clip bank, through the DAC);
     * 0 when it started, non-zero when it cannot (no or a damaged clip bank): QP_E_SPEECH. */
    int (*speak_start)(void *ctx, uint32_t verdict);
    /* Non-zero while the verdict is still playing. */
    int (*speak_busy)(void *ctx);
    /* Optional (NULL on the unit): sees the finished image before its SHA-256 is taken and it is
     * sent. The simulator flips bits here to play a unit that computes wrongly. */
    void (*image_hook)(void *ctx, uint8_t *rgb, uint32_t len);
    void *ctx;
    /* The weight image on the SD card: the engine's block reader (cat_engine.h). */
    cat_io_t sd;
    /* Optional (both NULL: no offline work): `len` bytes of a card file (enum cat_card_file) at
     * byte `offset`; 0 when done. card_write returns only once the bytes are on the card (its
     * cache flushed): the journal entry must be there before the cat is shown. */
    int (*card_read)(void *ctx, uint32_t file, uint32_t offset, uint8_t *dst, uint32_t len);
    int (*card_write)(void *ctx, uint32_t file, uint32_t offset, const uint8_t *src,
                      uint32_t len);
    /* Optional: show an offline exhibit's image (the LCD); called after its journal entry. */
    void (*display)(void *ctx, const uint8_t *rgb, uint32_t len);
    /* Offline after this long without a controller's frame; then an exhibit every period,
     * counted from the end of the previous one's speech (0 and 0: as fast as it can). */
    uint32_t offline_after_ms, offline_period_ms;
} cat_board_t;

/* Who the unit says it is in HELLO. The hashes come from the card's manifest (hashing 13 MB of
 * SD card at boot would take the unit half a minute); zeros mean "none". */
typedef struct {
    char serial[QP_HELLO_SERIAL_LEN];  /* ASCII, zero-padded; 16 characters need no terminator */
    uint32_t firmware;                 /* major << 16 | minor << 8 | patch (0: CAT_UNIT_FIRMWARE) */
    uint8_t weights_sha256[QP_HELLO_WEIGHTS_SHA256_LEN];
    uint8_t clips_sha256[QP_HELLO_CLIPS_SHA256_LEN];
} cat_identity_t;

/* Counters for tests, the simulator's log and a board's diagnostics screen. */
typedef struct {
    uint32_t frames_in;      /* frames that passed the decoder (CRC, version, length) */
    uint32_t frames_bad;     /* frames refused for what they are: damaged, malformed (type, size,
                              * a field out of range) or not a cat unit's to take */
    uint32_t frames_out;     /* frames sent */
    uint32_t jobs_run;       /* images the engine computed */
    uint32_t jobs_resent;    /* GENERATE of the finished job again: the image re-sent, not re-run */
    uint32_t offline_exhibits; /* reserve records spent (journal entry written) since start */
} cat_unit_stats_t;

/* The job's progress through its life. */
enum cat_unit_job {
    CAT_UNIT_JOB_NONE = 0,   /* nothing held */
    CAT_UNIT_JOB_QUEUED,     /* GENERATE accepted, the engine has not run yet */
    CAT_UNIT_JOB_DONE        /* the image is computed: sending, sent, speaking or spoken */
};

typedef struct {
    cat_board_t board;
    cat_identity_t id;
    cat_engine_t engine;
    int engine_rc;           /* cat_open's answer: non-zero keeps the unit in QP_STATE_FAULT */
    uint8_t state;           /* enum qp_state */
    uint8_t job;             /* enum cat_unit_job */
    uint16_t tx_seq;
    uint16_t job_seq;        /* seq of the GENERATE being served (ERROR names it) */
    uint32_t boot_ms, heartbeat_ms, progress_ms, speak_ms;
    uint32_t exhibit, verdict;
    uint32_t sent;           /* image bytes sent so far while QP_STATE_SENDING */
    uint8_t progress_layer;  /* the layer of the last PROGRESS (0: none yet) */
    int8_t latent[CAT_UNIT_NZ];
    uint8_t image[QP_IMAGE_BYTES];
    uint8_t image_sha256[QP_IMAGE_DONE_SHA256_LEN];
    cat_unit_stats_t stats;
    /* Offline work (see the top of this file). */
    uint8_t offline;         /* 1 while in offline mode (no controller for offline_after_ms) */
    uint8_t offline_job;     /* 1 while the job computed or spoken is an offline exhibit */
    uint8_t offline_why;     /* enum cat_offline_why */
    uint32_t offline_detail;
    uint32_t records;        /* the reserve's records (= the journal's slots) */
    uint32_t next_record;    /* the next record to spend: the journal's first empty slot */
    uint32_t controller_ms;  /* the last frame from a controller (boot: start) */
    uint32_t offline_due_ms; /* the next offline exhibit is due then */
    uint8_t card_ids[32];    /* the reserve's lease id and card id, while checking the journal */
    uint8_t card[CAT_CARD_SECTOR];  /* one record or journal sector */
    qp_decoder_t dec;
    uint8_t rx[QP_MAX_RAW];
    uint8_t payload[QP_MAX_PAYLOAD];
    uint8_t tx[QP_MAX_WIRE];
} cat_unit_t;

/* Open the weight image through board->sd and start idle. Returns CAT_OK, CAT_E_ARGS (a missing
 * callback), or the engine's error for the card: the unit then stays in QP_STATE_FAULT, still
 * answering HELLO and sending heartbeats, and refuses GENERATE with QP_E_ENGINE and that code. */
int cat_unit_init(cat_unit_t *u, const cat_board_t *board, const cat_identity_t *id,
                  uint8_t *arena, uint32_t arena_bytes);
/* Received bytes, any number, as they came; every frame they complete is answered at once. */
void cat_unit_rx(cat_unit_t *u, const uint8_t *bytes, uint32_t n);
/* The line was opened again (the USB cable re-plugged, the host re-opened the port): forget a
 * half-received frame, so that the first frame of the new connection is not lost with it. */
void cat_unit_line_reset(cat_unit_t *u);
/* Due work (see the top of this file). Returns the milliseconds until it next has something to
 * do (0: call again at once), at most QP_HEARTBEAT_MS. */
uint32_t cat_unit_poll(cat_unit_t *u);

#endif
