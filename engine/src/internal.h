/*
 * internal.h - the objects behind the opaque handles, shared by the engine's
 * modules. Nothing here is exported.
 */
#ifndef XR_INTERNAL_H
#define XR_INTERNAL_H

#include "mr_cache.h"
#include "xrail.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_rma.h>

#define XR_ERRMSG_MAX 512
#define XR_MAX_PROGRESS_THREADS 16 /* opts.progress_threads is capped here */
#define XR_ADDR_MAX 256

/* ---- log.c: last-error text and the engine log ---- */
int xr__fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append to buf at *w; *w counts what would not fit, so *w >= cap means too small. */
void xr__put(char *buf, size_t cap, size_t *w, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void xr__log(const xr_engine *e, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
enum { XR_LOG_ERROR = 0, XR_LOG_WARN = 1, XR_LOG_INFO = 2, XR_LOG_DEBUG = 3 };

/* ---- every libfabric operation carries one of these as its context ---- */
enum xr_ctx_kind {
    XR_CTX_CHUNK = 1, XR_CTX_NOTIF_TX = 2, XR_CTX_NOTIF_RX = 3,
    XR_CTX_STAGE_TX = 4, XR_CTX_STAGE_RX = 5 /* stage.c: a slot's send or RMA, its receive */
};
typedef struct xr_opctx {
    struct fi_context2 fctx; /* first: libfabric hands this pointer back */
    uint8_t kind;
} xr_opctx;

/* ---- notif.c: per-rail message frames ---- */
typedef struct xr_notif_rail xr_notif_rail;
typedef struct xr_notif_msg xr_notif_msg;

/* A transfer's position in one rail's queue of chunks waiting to be posted. */
typedef struct xr_rail_slot {
    struct xr_rail_slot *next;
    struct xr_xfer *x;
    uint32_t begin, cursor, end; /* chunk indexes of this rail in x->chunks */
} xr_rail_slot;

typedef struct xr_rail {
    xr_engine *e;
    unsigned index;
    struct fi_info *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_ep *ep;
    struct fid_cq *cq;
    struct fid_av *av;

    uint64_t mr_mode;
    size_t max_msg;
    bool delivery_complete;
    bool hmem;                /* the provider registers CUDA memory (FI_HMEM) */
    bool hmem_probed;         /* hmem was tried on real device memory (mr.c) */
    char addr[XR_ADDR_MAX];
    size_t addrlen;
    char provider[64], domain_name[64], fabric_name[64];
    uint64_t speed_mbps;
    int numa_node;
    int gpu;
    char pci[32];
    atomic_int up;

    /* Everything below is guarded by `lock`: the endpoint and CQ are driven
     * by one thread at a time per rail, so rails never contend with each other. */
    pthread_mutex_t lock;
    unsigned inflight, depth;
    xr_rail_slot *pend_head, *pend_tail;
    xr_notif_rail *notif;
    xr_rail_counters ctr;
    /* The last chunk error since the policy's on_rail_error hook last ran;
     * the hook runs from xr_progress, outside every rail lock. */
    bool err_pending;
    char err_why[256];
} xr_rail;

struct xr_region {
    xr_engine *e;
    uint64_t addr;
    size_t len;
    xr_mem_kind kind;
    int device;
    unsigned access;
    unsigned refs;            /* transfers that use it; guarded by the engine lock */
    uint64_t rail_mask;       /* rails it may use (the policy's register hook) */
    int numa;                 /* host memory: NUMA node of its first page; -1 unknown */
    bool staged;              /* no rail reaches it: its bytes go through stage.c */
    /* Per rail, the cache entry that registers it: all of rail_mask at once
     * for a region peers reach (its keys are published), and for a local-only
     * one the first time a plan uses the rail. desc and key are copied out
     * for the post path. Engine lock held to fill them. */
    struct xr_mr_entry *ent[XR_MAX_RAILS];
    void *desc[XR_MAX_RAILS];
    uint64_t key[XR_MAX_RAILS];
};

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
    struct xr_peer *next;
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
};

typedef struct xr_chunk {
    xr_opctx ctx;
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

struct xr_xfer {
    xr_engine *e;
    struct xr_xfer *next, *prev;    /* engine's live transfers */
    xr_peer *peer;
    xr_op op;
    xr_chunk *chunks;
    size_t nchunks;
    xr_rail_slot slot[XR_MAX_RAILS];
    xr_region **regions;            /* distinct local regions, each holding a ref */
    size_t nregions;
    xr_region **owned;              /* on-demand regions of unregistered buffers */
    size_t nowned;
    xr_notif_msg *notif;            /* framed notification, sent after the chunks */

    atomic_size_t pending;          /* chunks not yet completed */
    atomic_int status;              /* XR_EINPROGRESS, 0 or the error */
    atomic_int err;                 /* first error seen while running */
    atomic_bool posted;
    bool orphan;                    /* released while in flight; reaped when done */
    char errmsg[XR_ERRMSG_MAX];
};

typedef struct xr_notif_engine xr_notif_engine;
typedef struct xr_stage xr_stage;
typedef struct xr_policy xr_policy;
typedef struct plan_entry plan_entry;

struct xr_engine {
    char *name;
    char *script_path;              /* our copy of opts.script_path */
    uint64_t instance;
    xr_engine_opts opts;
    int log_level;
    unsigned nrails;
    xr_rail *rails;

    pthread_mutex_t lock;           /* regions, peers, transfers lists */
    xr_spans regions;               /* registered regions by address; they may nest */
    xr_mr_cache mrc;                /* every registration goes through it (mr_cache.c) */
    struct xr_md_field *fields;     /* custom metadata fields, published by xr_metadata_get */
    size_t nfields;
    xr_peer *peers;
    xr_xfer *xfers;
    atomic_uint_fast64_t next_key;  /* requested MR keys, for providers without PROV_KEY */
    atomic_uint rr;                 /* round-robin start for small descriptors */
    atomic_uint orphans;            /* transfers released in flight, not yet freed */

    xr_notif_engine *notif;
    xr_stage *stage;                /* bounce slots for memory no rail reaches (stage.c) */

    /* policy.c; guarded by the engine lock, the counters are atomics */
    xr_policy *policy;              /* NULL: built-in equal stripe */
    struct xr_layout *layout;       /* metadata layout script; NULL: built-in; fixed at creation */
    plan_entry **plans;
    size_t nplans, cap_plans;
    atomic_uint_fast64_t policy_calls, policy_hits, policy_reloads;
    atomic_uint_fast64_t rail_error_calls, rails_disabled;
    atomic_bool rail_err;           /* some rail has err_pending */

    pthread_t progress_tid[XR_MAX_PROGRESS_THREADS];
    struct xr_progress_part {
        xr_engine *e;
        unsigned index, of;     /* this thread drives rails i with i % of == index */
    } progress_part[XR_MAX_PROGRESS_THREADS];
    unsigned progress_nthreads;     /* running; 0: xr_progress and xr_xfer_wait drive it.
                                       More than 1: each rail's thread posts its chunks */
    atomic_bool stop;
};

/* ---- rail.c ---- */
int xr__rails_open(xr_engine *e);
void xr__rails_close(xr_engine *e);
int xr__rail_progress(xr_rail *r);
/* Queue a transfer's chunks for rail `r` and post what the depth allows. */
void xr__rail_enqueue(xr_rail *r, xr_rail_slot *s);
void xr__addr_format(const xr_rail *r, const void *addr, size_t len, char *out, size_t cap);
/* Register memory on one rail, honouring FI_MR_ENDPOINT; `key` is used
 * unless the provider picks keys itself (FI_MR_PROV_KEY). */
int xr__rail_mr_reg(xr_rail *r, void *buf, size_t len, uint64_t access, uint64_t key,
                    xr_mem_kind kind, int device, struct fid_mr **out);

/* ---- mr.c ---- */
xr_region *xr__region_find(xr_engine *e, uint64_t addr, size_t len); /* engine lock held */
/* Make sure g is registered on rail i (a local-only region is registered
 * lazily, on the rails its plans use). Engine lock held. */
int xr__region_rail(xr_region *g, unsigned i);
/* A local-only region for a mapped buffer nobody registered; the transfer
 * that needs it owns it and drops it. Engine lock held. */
int xr__region_implicit(xr_engine *e, uint64_t addr, size_t len, xr_region **out);
void xr__region_drop(xr_region *g);
void xr__mr_cache_start(xr_engine *e);
void xr__region_free_all(xr_engine *e);

/* ---- peer.c ---- */
/* A published region enclosing the range, one granting `need` (XR_ACCESS_*)
 * if any does; NULL if none encloses it. */
const xr_peer_region *xr__peer_region_find(const xr_peer *p, uint64_t addr, uint64_t len,
                                           unsigned need);
void xr__peer_put(xr_peer *p);      /* engine lock held */
void xr__peer_free_all(xr_engine *e);
void xr__fields_free(xr_engine *e);

/* ---- xfer.c ---- */
/* Count a chunk's completion; true when it was the transfer's last chunk.
 * Rail lock held: the caller runs xr__xfer_chunks_done after unlocking. */
bool xr__chunk_done(xr_rail *r, xr_chunk *c, int err, const char *why);
void xr__xfer_chunks_done(struct xr_xfer *x);
void xr__xfer_notif_done(struct xr_xfer *x, int err, const char *why);
void xr__xfer_free_all(xr_engine *e);
void xr__xfer_reap_orphans(xr_engine *e);

/* ---- notif.c ---- */
int xr__notif_init(xr_engine *e);
void xr__notif_fini(xr_engine *e);
int xr__notif_rail_init(xr_rail *r);
void xr__notif_rail_fini(xr_rail *r);
/* Build a framed message for `peer` (NULL owner: standalone). */
int xr__notif_msg_new(xr_engine *e, xr_peer *peer, const void *msg, size_t len,
                      struct xr_xfer *owner, xr_notif_msg **out);
void xr__notif_msg_free(xr_notif_msg *m);
int xr__notif_submit(xr_engine *e, xr_notif_msg *m);
void xr__notif_pump(xr_rail *r);    /* rail lock held */
void xr__notif_tx_done(xr_rail *r, xr_opctx *ctx, int err);   /* rail lock held */
void xr__notif_rx_done(xr_rail *r, xr_opctx *ctx, size_t len, int err); /* rail lock held */
bool xr__notif_idle(xr_engine *e);

/* ---- stage.c ---- */
int xr__stage_init(xr_engine *e);
void xr__stage_fini(xr_engine *e);          /* after the rails closed */
void xr__stage_rail_fini(xr_rail *r);       /* endpoint closed, domain still open */
/* Make the bounce pool (and, for a target, its receive slots) if they do
 * not exist yet. Engine lock held. */
int xr__stage_need(xr_engine *e, bool target);
/* Take a slot for a staged chunk; XR_EAGAIN when all are busy. Rail lock held. */
int xr__stage_start(xr_rail *r, xr_chunk *c);
void xr__stage_tx_done(xr_rail *r, xr_opctx *ctx, int err, const char *why); /* rail lock */
void xr__stage_rx_done(xr_rail *r, xr_opctx *ctx, size_t len, int err, const char *why);
int xr__stage_progress(xr_engine *e);      /* no lock held */

#endif
