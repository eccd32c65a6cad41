/*
 * stage_wire.h - the staging protocol's request and response header
 * (stage_wire.c). Pure code: a header is bytes a peer sent, and every
 * field of it is checked here before stage.c acts on it.
 *
 * Layout, little-endian, in a 512-byte area: magic u32 "XSTG", op u8, pad
 * u8[3], status i32, srclen u32, cookie u64, addr u64, len u64, why
 * char[160], src u8[256] (the requester's rail address).
 */
#ifndef XR_CORE_STAGE_WIRE_H
#define XR_CORE_STAGE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XR_STAGE_HDR 512
#define XR_STAGE_MAGIC 0x47545358u /* "XSTG" */
#define XR_STAGE_WHY 160
#define XR_STAGE_SRC_MAX 256
#define XR_STAGE_RSP_MIN 200       /* a response needs no requester address */

typedef struct xr_stage_hdr {
    uint8_t op;                    /* XR_OP_WRITE or XR_OP_READ */
    int32_t status;                /* response: 0 or a negative XR_E* code */
    uint32_t srclen;
    uint64_t cookie;               /* the initiator's tag for the response */
    uint64_t addr, len;            /* target memory */
    char why[XR_STAGE_WHY];        /* response: what was wrong; NUL-terminated */
    uint8_t src[XR_STAGE_SRC_MAX]; /* request: the initiator's rail address */
} xr_stage_hdr;

/* Encode h into the first XR_STAGE_HDR bytes of b; with_src: a request. */
void xr__stage_wire_put(uint8_t *b, const xr_stage_hdr *h, bool with_src);

enum { XR_STAGE_REQ_OK = 0, XR_STAGE_REQ_DROP = 1, XR_STAGE_REQ_REFUSE = 2 };
/*
 * Decode a request of `rxlen` bytes (header and, for a WRITE, its payload)
 * for a target whose slots hold `chunk` bytes. DROP: not a request that can
 * be answered (no header, no requester address); REFUSE: answerable but
 * malformed. *why says what is wrong unless OK.
 */
int xr__stage_wire_request(const uint8_t *b, size_t rxlen, size_t chunk, xr_stage_hdr *h,
                           const char **why);
/*
 * Decode the response to the request with `cookie`, expecting `want` bytes
 * in all (the header, and the bytes of a READ). 0 and *status the peer's
 * verdict (a known XR_E* code or 0); or XR_EIO and *why what is wrong.
 */
int xr__stage_wire_response(const uint8_t *b, size_t len, uint64_t cookie, size_t want,
                            xr_stage_hdr *h, const char **why);

#endif
