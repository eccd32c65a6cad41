/*
 * stage.h - transfers of memory a rail cannot reach, through bounce slots
 * of pinned host memory (stage.c).
 */
#ifndef XR_STAGE_H
#define XR_STAGE_H

#include "engine.h"

typedef struct xr_stage xr_stage;

/* One staged chunk, as the transfer that owns it hands it over. */
typedef struct xr_stage_req {
    xr_opctx *done;           /* ended through xr__rail_complete on the chunk's rail */
    void *buf;                /* local memory */
    size_t len;
    uint64_t raddr, key;      /* the peer's memory; key unused when `remote` */
    fi_addr_t dst;
    const char *peer;         /* its name, for messages */
    bool write;
    bool remote;              /* the peer's region is staged: the request protocol */
    bool gpu;                 /* buf is device memory of `device` */
    int device;
    /* The peer's refusal time (peer.h, pushed_back): set while the provider
     * refuses the slot's post, cleared when it takes one, so that a peer
     * that refuses forever (rxm to a dead one) meets its deadline. A
     * probe has neither, and ends at its first refusal. */
    _Atomic uint64_t *pushed_back;
    const atomic_int *failed; /* the transfer's error: a refused slot stops retrying */
} xr_stage_req;

int xr__stage_init(xr_engine *e);
void xr__stage_fini(xr_engine *e);          /* after the rails closed */
void xr__stage_rail_close(xr_engine *e, xr_rail *r); /* endpoint closed, domain still open */
/* Make the bounce pool (and, for a target, its receive slots) if they do
 * not exist yet. Engine lock held. */
int xr__stage_need(xr_engine *e, bool target);
/* Take a slot for a staged chunk; XR_EAGAIN when all are busy. Rail lock held. */
int xr__stage_start(xr_engine *e, xr_rail *r, const xr_stage_req *req);
/* Move staged chunks one step: copies, posts, completions. No lock held. */
int xr__stage_progress(xr_engine *e);
/* Bounce slots the rail's staged chunks hold now. */
unsigned xr__stage_held(xr_engine *e, unsigned rail);
/* Whether staged work waits to be stepped (a copy to or from a slot that
 * nothing will signal): progress must poll, not sleep. */
bool xr__stage_active(xr_engine *e);

#endif
