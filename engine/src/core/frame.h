/*
 * frame.h - notification frames (frame.c): the 40-byte header every frame
 * carries, and the reassembly of a message from its frames. Pure code: a
 * frame is bytes a peer sent, and every length in it is checked here.
 *
 * Header, little-endian: magic u32 "XRNF", reserved u32, sender instance
 * u64, message sequence u64, message length u64, offset of this frame's
 * payload u64. The payload follows. A frame of message length 0 and no
 * payload is a hello (xr_peer_connect): it sets up the connection it
 * travels on, and is dropped on arrival.
 */
#ifndef XR_CORE_FRAME_H
#define XR_CORE_FRAME_H

#include "list.h"

#include <stddef.h>
#include <stdint.h>

#define XR_FRAME_HDR 40
#define XR_FRAME_MAGIC 0x464E5258u /* "XRNF" */

typedef struct xr_frame_hdr {
    uint64_t instance, seq, total, off;
} xr_frame_hdr;

/* Messages being reassembled, by (instance, seq). */
typedef struct xr_reasm {
    xr_list partial;
    size_t max_total;       /* a longer message is refused; 0: no limit */
} xr_reasm;

void xr__frame_hdr_put(uint8_t *b, const xr_frame_hdr *h);
/* Read and check a frame's header against its length; NULL if it is
 * sound, else what is wrong. */
const char *xr__frame_hdr_get(const uint8_t *b, size_t flen, size_t max_total, xr_frame_hdr *h);

void xr__frame_reasm_init(xr_reasm *ra, size_t max_total);
void xr__frame_reasm_fini(xr_reasm *ra);
/*
 * Place one received frame. When it completes a message, *msg gets it
 * (malloc'd, the caller frees it) and *len its length; otherwise *msg is
 * NULL. Returns NULL, or what is wrong with the frame (then nothing of it
 * was kept, and a message it belonged to is dropped).
 */
const char *xr__frame_place(xr_reasm *ra, const uint8_t *frame, size_t flen, uint8_t **msg,
                            size_t *len);

#endif
