/*
 * peer.h - remote engines loaded from their metadata, and this engine's
 * own metadata (peer.c).
 */
#ifndef XR_PEER_H
#define XR_PEER_H

#include "engine.h"

/* A region a peer published, with its key already mapped for each local rail. */
typedef struct xr_peer_region {
    uint64_t addr, len;
    unsigned access;
    bool staged;                    /* keyless: the peer's staging serves it (stage.c) */
    uint64_t path_mask;             /* local rails with a usable key */
    uint64_t key[XR_MAX_RAILS];     /* indexed by local rail */
    uint64_t base[XR_MAX_RAILS];    /* where the key's registration starts: offsets count from it */
    bool mapped[XR_MAX_RAILS];      /* key came from fi_mr_map_raw and must be unmapped */
} xr_peer_region;

struct xr_peer {
    xr_engine *e;
    xr_list link;                   /* the engine's loaded peers */
    char *name;
    unsigned nrails;                /* the peer's own rail count */
    int peer_rail[XR_MAX_RAILS];    /* per local rail: the peer rail it talks to, -1 none */
    fi_addr_t fi_addr[XR_MAX_RAILS];
    bool virt_addr[XR_MAX_RAILS];   /* peer rail addresses by VA (else by offset) */
    uint64_t mask;
    size_t nregions;
    xr_peer_region *regions;
    xr_spans index;                 /* the regions by address; they may nest */
    unsigned refs;                  /* 1 for the user + 1 per live transfer; engine lock */
    bool unloaded;
    struct xr_md_field *fields;     /* the peer's custom fields, from its metadata */
    uint32_t nfields;
    /* Liveness (health.c): when a chunk to it last completed (ns, the
     * rails' coarse clock), and how many of its transfers are in flight. */
    _Atomic uint64_t last_ok;
    atomic_uint busy;
    atomic_bool answered;           /* a chunk to it completed since it was loaded */
    _Atomic uint64_t answered_rails; /* the rails on which one has */
    atomic_int held;                /* its chunks a provider holds now */
    /* Of those, the ones on each rail's depth (under that rail's lock):
     * a peer takes at most three quarters of a rail's depth, so that one
     * that stopped answering leaves room for the others until its verdict
     * (rail.h, peer_share). */
    uint16_t on_rail[XR_MAX_RAILS];
    _Atomic uint64_t pushed_back;   /* when a provider last refused one with EAGAIN
                                       while the rail had room; 0 after a post */
    atomic_bool lost;               /* it stopped answering: nothing more is posted to it
                                       (a provider may wedge on a dead peer: 1.17 shm
                                       spins on a lock the dead process held) */
    _Atomic uint64_t path_down;     /* rails whose connection to it failed (XR_EPEER);
                                       each new post tries them again */
    atomic_bool gone;               /* it left the directory (dir.c): XR_EGONE */
    /* A probe of it, when it falls silent with chunks held, on a rail of
     * another link that holds none (health.c, "vouching"): answered, the
     * rails that hold them are judged, not the peer. Engine lock. */
    int vouch_rail;                 /* the rail probing it; -1 none */
    uint64_t vouch_at;              /* when that probe was posted */
    uint64_t vouch_mark;            /* the last probe's post or answer: one per silence */
    /* The fence after CUDA IPC copies (xfer.c, fence_join): one READ of
     * its memory at a time, which serves every transfer whose chunks were
     * done before it was posted; those done meanwhile wait for the next. */
    pthread_mutex_t fence_lock;
    xr_list fence_wait, fence_riding; /* transfers, by fence_link */
    bool fence_busy;
    uint8_t fence_rail;             /* where the fence goes first */
    uint8_t fence_tries;            /* posts of this fence canceled by a reset */
    const xr_peer_region *fence_rg; /* what it READs: a riding transfer's peer memory */
    uint64_t fence_rvirt;
    int fence_err;                  /* how it ended: 0 or XR_E*, with fence_why */
    char fence_why[160];
    xr_work fence_work;
    xr_opctx fence_ctx;
    uint32_t rails_sig;             /* CRC of its rails' providers and addresses: the same
                                       engine, when its metadata is loaded again */
    struct xr_peer_retired *retired; /* regions replaced by xr__peer_refresh, kept while
                                       transfers made with them live (refs > 1) */
};

int xr__peer_init(xr_engine *e);
/* Free every peer and this engine's fields. Engine lock not needed: no
 * other thread runs. */
void xr__peer_fini(xr_engine *e);
/* A published region enclosing the range, one granting `need` (XR_ACCESS_*)
 * if any does; NULL if none encloses it. */
const xr_peer_region *xr__peer_region_find(const xr_peer *p, uint64_t addr, uint64_t len,
                                           unsigned need);
/* The loaded peer that rail `rail` reaches at `dst`, or NULL. Engine lock held. */
xr_peer *xr__peer_by_addr(xr_engine *e, unsigned rail, fi_addr_t dst);
/* Somewhere a probe of rail `rail` may READ 8 bytes: a region of the loaded
 * peer that answered last, readable through the rail, or through the peer's
 * staging (`staged`: raddr is the peer's address, key unused) when all its
 * readable regions are staged. Engine lock held. */
bool xr__peer_probe_target(xr_engine *e, unsigned rail, fi_addr_t *dst, uint64_t *raddr,
                           uint64_t *key, bool *staged);
/* The same, for peer `p` alone. Engine lock held. */
bool xr__peer_probe_at(const xr_peer *p, unsigned rail, fi_addr_t *dst, uint64_t *raddr,
                       uint64_t *key, bool *staged);
/* The up rails of `p` whose providers hold operations of ours for it. */
uint64_t xr__peer_holding(xr_engine *e, const xr_peer *p);
/* Whether a verdict on the peer waits for a probe in flight (health.c):
 * for at most half of `allow`, its silence bound. Engine lock held. */
bool xr__peer_vouching(const xr_peer *p, uint64_t now, uint64_t allow);
/* Load a newer version of the peer's metadata in place: its regions and
 * fields change, its rails must not (XR_EVERSION if they do: another
 * engine of that name, to be loaded as a new peer). Transfers already
 * created keep what they planned with. Engine lock not held. */
/* xr_peer_load but for connecting on load, which progress.c adds. */
int xr__peer_load(xr_engine *e, const void *md, size_t len, xr_peer **out);
int xr__peer_refresh(xr_peer *p, const void *md, size_t len);
/* The error to give for a new operation with the peer, or 0 if it may go:
 * XR_ENOENT unloaded, XR_EGONE left the directory, XR_EPEER stopped
 * answering. `what` names the call in the message. */
int xr__peer_check(xr_peer *p, const char *what);
void xr__peer_get(xr_peer *p);      /* engine lock held */
void xr__peer_put(xr_peer *p);      /* engine lock held */

#endif
