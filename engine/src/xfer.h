/*
 * xfer.h - transfers (xfer.c): validated and planned at create time, then
 * posted as a prepared array of chunks; the one place a transfer finishes.
 */
#ifndef XR_XFER_H
#define XR_XFER_H

#include "notif.h"
#include "peer.h"
#include "region.h"

typedef struct xr_chunk {
    xr_opctx ctx;                   /* its completion: xfer.c's chunk_done */
    struct xr_xfer *x;
    void *buf;
    void *desc;
    uint64_t raddr;
    uint64_t key;
    size_t len;
    uint32_t desc_index;            /* which descriptor, for error messages */
    uint8_t stage;                  /* XR_STAGE_*: how the bytes reach the rail */
    bool gpu;                       /* the local buffer is device memory */
    int device;                     /* its CUDA device */
} xr_chunk;

/* A chunk's path: RMA straight from and to its buffers, RMA through a
 * local bounce slot, or the request/response protocol with a peer whose
 * region no rail reaches (stage.c). */
enum { XR_STAGE_NONE = 0, XR_STAGE_LOCAL = 1, XR_STAGE_REMOTE = 2 };

/* A transfer's chunks for one rail, queued on the rail's data lane. */
typedef struct xr_xfer_lane {
    xr_work work;
    struct xr_xfer *x;
    uint32_t begin, cursor, end;    /* chunk indexes of this rail in x->chunks */
} xr_xfer_lane;

struct xr_xfer {
    xr_engine *e;
    xr_list link;                   /* the engine's live transfers */
    xr_peer *peer;
    xr_op op;
    xr_chunk *chunks;
    size_t nchunks;
    xr_xfer_lane lane[XR_MAX_RAILS];
    xr_region **regions;            /* distinct local regions, each holding a ref */
    size_t nregions;
    xr_region **owned;              /* on-demand regions of unregistered buffers */
    size_t nowned;
    xr_notif_msg *notif;            /* framed notification, sent after the chunks */

    atomic_size_t pending;          /* chunks not yet completed */
    atomic_int status;              /* XR_EINPROGRESS, 0 or the error; written by finish() */
    atomic_int err;                 /* first error seen while running */
    atomic_bool posted;
    bool orphan;                    /* released while in flight; reaped when done */
    char errmsg[XR_ERRMSG_MAX];
};

/* Whether a transfer is still in flight. */
bool xr__xfer_busy(xr_engine *e);
/* Free transfers released in flight that have finished since. */
void xr__xfer_reap_orphans(xr_engine *e);
void xr__xfer_free_all(xr_engine *e);

#endif
