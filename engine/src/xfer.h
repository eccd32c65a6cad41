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
    xr_opctx ctx;                   /* its completion: xfer.c's chunk_done. Once the
                                       rail has let go of it, ctx.link puts it on the
                                       engine's failed list or a retry lane */
    struct xr_xfer *x;
    void *buf;
    void *desc;
    uint64_t raddr;
    uint64_t key;
    size_t len;
    /* Failover: what it takes to aim the chunk at another rail. */
    xr_region *lg;                  /* the local region (its MR per rail) */
    const xr_peer_region *rg;       /* the peer's region (its key per rail) */
    uint64_t rvirt;                 /* the remote address before any per-rail offset */
    uint32_t desc_index;            /* which descriptor, for error messages */
    uint32_t gen;                   /* the post `tries` counts in */
    int device;                     /* its CUDA device */
    int16_t err;                    /* why it last failed (XR_E*) */
    uint8_t stage;                  /* XR_STAGE_*: how the bytes reach the rail */
    uint8_t rail;                   /* where it was last aimed */
    uint8_t tries;                  /* times it went to another rail in post `gen` */
    bool gpu;                       /* the local buffer is device memory */
    bool spend;                     /* this failover counts as one of them (a chunk
                                       rerouted before it was posted does not) */
} xr_chunk;

/* Chunks posted again on one rail after failing or being canceled on
 * another: a work item on the rail's data lane (engine.h holds one per rail). */
struct xr_retry_lane {
    xr_work work;
    xr_engine *e;
    xr_list chunks;                 /* guarded by e->fail_lock */
    atomic_uint n;                  /* how many: written under it, read as a hint */
    bool queued;                    /* the work item is on the rail's lane */
};

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
    xr_group *group;                /* the group this post belongs to; NULL: none */

    atomic_size_t pending;          /* chunks not yet completed */
    atomic_int status;              /* XR_EINPROGRESS, 0 or the error; written by finish() */
    atomic_int err;                 /* first error seen while running */
    atomic_bool posted;
    bool orphan;                    /* released while in flight; reaped when done */
    /* Chunks of it were left with a provider for a lost peer (rail.c,
     * xr__rail_abandon): the provider may still write their contexts, so
     * it is never posted again, and its memory lives until destroy. */
    atomic_bool kept;
    /* The callback, and its place on the engine's cb_due (under cb_lock). */
    atomic_bool has_cb;
    xr_xfer_cb cb;
    void *cb_user;
    xr_list cb_link;
    bool cb_queued;
    int cb_status;                  /* the status its callback is called with */
    unsigned timeout_ms;            /* per post; 0 none */
    uint32_t gen;                   /* posts so far */
    uint64_t deadline;              /* this post's end (rails' clock, ns); 0 none */
    char errmsg[XR_ERRMSG_MAX];
    char fail_why[256];             /* the last chunk error, kept for failover's verdict */
    /* The fence its chunks need (xfer.c, fence_join): where the provider
     * moved its device memory through CUDA IPC, a READ of the peer memory
     * of one such chunk. fence_rg NULL: none. */
    const xr_peer_region *fence_rg;
    uint64_t fence_rvirt;
    uint8_t fence_rail;
    xr_list fence_link;             /* on its peer's fence_wait or fence_riding */
};

int xr__xfer_init(xr_engine *e);
void xr__xfer_fini(xr_engine *e);
/* Post the chunks that failed or were canceled again on another rail, or
 * fail their transfers (retries spent, the policy said "fail", no rail
 * left). Progress calls it; no lock held. */
void xr__xfer_failover(xr_engine *e);
/* Fail every transfer in flight to `peer` with err and a reason; returns
 * how many. Engine lock held. */
unsigned xr__xfer_fail_peer(xr_engine *e, xr_peer *peer, int err, const char *why);
/* Fail the transfers past their timeout (XR_ETIMEDOUT), and those of the
 * peer silent longest, if one completed nothing for the deadline (XR_EPEER;
 * `connect` for a peer not heard from since it was loaded): that peer is
 * lost, and returned. Times in ns. Engine lock held. */
xr_peer *xr__xfer_watch(xr_engine *e, uint64_t now, uint64_t deadline, uint64_t connect);
/* Whether a transfer is still in flight. */
bool xr__xfer_busy(xr_engine *e);
/* Free transfers released in flight that have finished since. */
void xr__xfer_reap_orphans(xr_engine *e);
/* Run the callbacks of transfers that ended (none once the engine stops).
 * Progress calls it; no lock held. */
void xr__xfer_run_callbacks(xr_engine *e);
void xr__xfer_free_all(xr_engine *e);

#endif
