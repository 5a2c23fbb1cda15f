/* frame_host.c: host only: a flat API over frame.c for ctypes (build/libqcatproto.so), so tests
 * and benchmarks drive the C decoder with many inputs in one call (a call per byte would measure
 * ctypes, not the decoder). */
#include <string.h>

#include "frame.h"

/* One frame or error the decoder answered, as the Python side mirrors it (ctypes.Structure). */
typedef struct {
    int32_t code;        /* QP_OK or a QP_E_* code */
    uint32_t input;      /* which input it came from */
    uint32_t payload_at; /* QP_OK: where its payload starts in the payload buffer */
    uint16_t seq;        /* QP_OK, QP_E_BAD_VERSION, QP_E_BAD_LENGTH: header fields */
    uint16_t length;
    uint8_t version;
    uint8_t type;
    uint16_t check;      /* QP_OK: qp_payload_check() of the type and length */
} qp_host_result_t;

uint32_t qp_host_result_size(void);
long qp_host_scan(const uint8_t *data, const uint32_t *lens, uint32_t n_inputs, int stream,
                  uint16_t cap, qp_host_result_t *out, uint32_t max_out, uint8_t *payloads,
                  uint32_t payload_cap);

uint32_t qp_host_result_size(void) { return (uint32_t)sizeof(qp_host_result_t); }

/* Feeds `n_inputs` inputs (sizes in `lens`, bytes back to back in `data`) to a decoder with a
 * buffer of `cap` bytes: a fresh decoder for each input, or one for all when `stream` is
 * non-zero (resynchronisation across inputs). Writes one result per frame or error into `out`
 * and the payloads of good frames into `payloads`. Returns the number of results, or -1 when
 * `out` or `payloads` was too small. */
long qp_host_scan(const uint8_t *data, const uint32_t *lens, uint32_t n_inputs, int stream,
                  uint16_t cap, qp_host_result_t *out, uint32_t max_out, uint8_t *payloads,
                  uint32_t payload_cap)
{
    uint8_t buf[QP_MAX_RAW];
    qp_decoder_t d;
    uint32_t n_out = 0, used = 0;
    if (cap > sizeof buf) cap = (uint16_t)sizeof buf;
    qp_decoder_init(&d, buf, cap);
    for (uint32_t k = 0; k < n_inputs; k++) {
        if (!stream) qp_decoder_reset(&d);
        for (uint32_t i = 0; i < lens[k]; i++) {
            qp_frame_t f;
            memset(&f, 0, sizeof f);
            int rc = qp_decoder_feed(&d, *data++, &f);
            if (rc == QP_MORE) continue;
            if (n_out >= max_out) return -1;
            qp_host_result_t *r = &out[n_out++];
            memset(r, 0, sizeof *r);
            r->code = rc;
            r->input = k;
            r->seq = f.seq;
            r->length = f.length;
            r->version = f.version;
            r->type = f.type;
            if (rc == QP_OK) {
                if (payload_cap - used < f.length) return -1;
                memcpy(payloads + used, f.payload, f.length);
                r->payload_at = used;
                used += f.length;
                r->check = (uint16_t)qp_payload_check(f.type, f.length);
            }
        }
    }
    return (long)n_out;
}
