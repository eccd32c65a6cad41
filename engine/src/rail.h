/*
 * rail.h - one libfabric RDM endpoint per NIC, and how operations travel on
 * it (rail.c). The lowest layer above core: it keeps the fabric objects,
 * reads the CQ and pumps per-rail queues of work, and knows no kind of
 * operation. Every operation carries its completion function in its
 * context; every queued item carries its post function.
 */
#ifndef XR_RAIL_H
#define XR_RAIL_H

#include "core/list.h"
#include "core/log.h"
#include "xrail.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_rma.h>

#define XR_ADDR_MAX 256
#define XR_RAIL_AFTER_MAX 64
/* What memory the engine itself touches through a rail needs. */
#define XR_FI_LOCAL_ACCESS (FI_READ | FI_WRITE | FI_SEND | FI_RECV)

typedef struct xr_rail xr_rail;
typedef struct xr_opctx xr_opctx;

/*
 * How an operation ends: `len` (receives), 0 or an XR_E* code, and the
 * reason. Called with the rail lock held, from the CQ read or from
 * xr__rail_complete; work that may lock a rail again goes through
 * xr__rail_after.
 */
typedef void (*xr_op_done_fn)(xr_opctx *op, xr_rail *r, size_t len, int err, const char *why);

enum {
    XR_OPF_RX = 1,    /* a receive: one canceled by a closing endpoint is not an error */
    XR_OPF_DEPTH = 2, /* counts against the rail's depth, and its errors go to the policy */
    XR_OPF_READ = 4,  /* an RMA read (xr__rail_rma sets it), or a receive the provider
                       * completes by reading (rxm's rendezvous): see reset_reads_crash */
    XR_OPF_FINAL = 8, /* its error is an answer (the peer's, or a device copy's) that another
                       * rail would get too: not worth failing over (stage.c sets it) */
    XR_OPF_CANCEL = 16, /* a receive awaiting an answer, on held_tx: a reset that is refused
                         * takes it back with fi_cancel if nothing matched it yet */
    XR_OPF_QUIET = 32,  /* a send whose completion proves nothing of the path (copied into a
                         * socket's buffer): it does not count as the rail answering */
    XR_OPF_KEEP = 64,   /* its owner keeps its memory while the provider holds it, even after
                         * its end: it may be left with the provider (xr__rail_abandon) */
    XR_OPF_GONE = 128,  /* left with the provider: ended for its owner; dropped on return */
};

/* The context of every operation posted to a rail. */
struct xr_opctx {
    struct fi_context2 fctx; /* first: libfabric hands this pointer back */
    xr_op_done_fn done;
    xr_list link;            /* on the rail's list of what the provider holds */
    uint64_t t_post;         /* when it was posted (ns, coarse): its deadline counts from it */
    fi_addr_t dst;           /* where it went: health asks who stopped answering */
    uint8_t flags;           /* XR_OPF_* */
};

/* A queued item: its post function posts what it can, rail lock held.
 * The item is off the queue during the call; MORE and WAIT put it back at
 * the front, DONE leaves it to its owner. BLOCKED: the item waits on its
 * peer (its share of the rail's depth, or a provider's push-back for it),
 * not on the rail: the items behind it are posted meanwhile, and it is
 * tried again at the next pump. */
typedef struct xr_work xr_work;
enum { XR_WORK_MORE = 0, XR_WORK_DONE = 1, XR_WORK_WAIT = 2, XR_WORK_BLOCKED = 3 };
typedef int (*xr_work_post_fn)(xr_work *w, xr_rail *r); /* XR_WORK_* */
struct xr_work {
    xr_list link;
    xr_work_post_fn post;
};

/* What on_rail_error answered (policy.c), and what failover does with the
 * chunks that failed on the rail (xfer.c). */
enum { XR_RAIL_ACT_RETRY = 0, XR_RAIL_ACT_DISABLE = 1, XR_RAIL_ACT_FAIL = 2 };

/* Bulk data waits for the rail's depth; control messages never wait
 * behind it. */
enum { XR_LANE_DATA = 0, XR_LANE_CTRL = 1, XR_LANES = 2 };

/* Who posts work queued on a rail (xr__rail_enqueue): the caller, at once
 * (no progress thread: whoever waits drives progress); the caller if the
 * rail lock is free, else the rail's thread, which holds it (one progress
 * thread); the rail's thread (a thread per group of rails). */
enum { XR_POST_NOW = 0, XR_POST_TRY = 1, XR_POST_QUEUE = 2 };

typedef void (*xr_after_fn)(void *arg);

/* What the rails of one engine share. */
typedef struct xr_rail_cfg {
    const xr_logger *log;
    unsigned depth;             /* the most DEPTH operations in flight per rail */
    atomic_bool *error_flag;    /* set when a rail records an error for the policy */
    /* Called after work is queued on a rail, to wake a progress thread that
     * sleeps on the rails' wait fds; NULL: none sleeps. Any thread, no lock. */
    void (*wake)(void *arg, unsigned rail);
    void *wake_arg;
} xr_rail_cfg;

struct xr_rail {
    const xr_rail_cfg *cfg;
    unsigned index;
    struct fi_info *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_ep *ep;
    struct fid_cq *cq;
    struct fid_av *av;
    enum fi_av_type av_type;
    int wait_fd;              /* the CQ's wait object (FI_WAIT_FD); -1: polled only,
                                 as the rail is after its first reset (rail lock) */

    uint64_t mr_mode;
    size_t max_msg;
    bool delivery_complete;
    bool hmem;                /* the provider registers CUDA memory (FI_HMEM) */
    bool local_only;          /* reaches only its own host (FI_LOCAL_COMM alone: shm) */
    bool host_only;           /* declared: carries host memory, never asks FI_HMEM */
    bool hmem_probed;         /* hmem was tried on real device memory (region.c) */
    char addr[XR_ADDR_MAX];
    size_t addrlen;
    char provider[64], domain_name[64], fabric_name[64];
    uint64_t speed_mbps;
    int numa_node;
    int gpu;
    char pci[32];
    atomic_int up;               /* in plans: state UP or SUSPECT */
    atomic_int posting;          /* who posts what is queued: XR_POST_* */

    /* Work queued by other threads waits here, under a lock of its own,
     * until the rail's pump moves it to the lanes: `lock` is held across
     * the provider's calls (tcp copies a whole chunk into its socket in
     * fi_write), and a caller queuing behind it blocked for that long,
     * which held 4 rails with a thread each to a third of 4 raw endpoints
     * at 64 KiB (docs/performance.md). */
    pthread_mutex_t inbox_lock;
    xr_list inbox[XR_LANES];
    atomic_uint inbox_n;         /* items in the inbox: the pump's and the sleeper's look */

    /* Everything below is guarded by `lock`: the endpoint and CQ are driven
     * by one thread at a time per rail, so rails never contend with each other. */
    pthread_mutex_t lock;
    unsigned inflight, depth;
    xr_list lane[XR_LANES];
    struct {
        xr_after_fn fn;
        void *arg;
    } after[XR_RAIL_AFTER_MAX];
    unsigned nafter;
    xr_rail_counters ctr;
    /* The last error of a DEPTH operation since the policy's on_rail_error
     * hook last ran; the hook runs from progress, outside every rail lock. */
    bool err_pending;
    int err_fi;               /* its provider error code (fi_errno.h); 0 none */
    char err_why[256];
    atomic_int err_action;    /* the policy's last answer for it: XR_RAIL_ACT_* */
    xr_log_limit err_log;     /* completion errors: one line a second, then counts */

    /* What the provider holds, oldest first (each op's ctx->link): sends
     * and RMA in tx, receives in rx. A reset completes them all. */
    xr_list held_tx, held_rx;
    /* Operations of a lost peer left with the provider (xr__rail_abandon),
     * and their count: they end for their owners, not for the provider. */
    xr_list gone;
    unsigned ngone;
    /* The provider gives a reopened endpoint another address (shm names
     * its region afresh): a reset would lose every peer that holds ours.
     * Found by a trial at open (rail.c, reopen_check), only for a rail that
     * reaches only its host and where peer_share: about 12 ms for shm.
     * Network rails keep resets: a tcp endpoint takes 40 ms to open here,
     * so a trial at open doubled the start of 32 rails, and run after a
     * verdict it held 1.17's rxm rails long enough that the ASan leg's
     * stopped peer failed past its bound. tcp and rxm bind the same port
     * again; whether EFA keeps its address is not known here. Set too
     * where registrations are bound to the endpoint (FI_MR_ENDPOINT, as
     * cxi asks): closing it would take every region's key on this rail
     * with it, and a reset does not bind them again. */
    bool reopen_moves;
    uint64_t last_done;       /* when the CQ last returned something (ns, coarse) */
    uint64_t last_good;       /* when it last returned a success */
    /* Health, written by the health pass (health.c) under the rail lock. */
    _Atomic uint64_t health_at; /* its next look (ns): whoever drives the rail takes it */
    int state;                /* xr_rail_state */
    uint64_t state_since;
    char reason[160];
    char last_error[256];
    uint64_t probe_at, probe_wait; /* next probe (ns), and the wait that doubles */
    /* A probe: an 8-byte READ into a buffer of the rail's own. */
    xr_opctx probe;
    bool probe_busy;
    int probe_result;         /* 1 came back, -1 failed, 0 none since the last look */
    uint64_t probe_buf;
    struct fid_mr *probe_mr;
    /* libfabric 1.x rxm crashes in fi_close when the endpoint holds a READ
     * over a dead connection (tests/faults/test_link.c): such a rail is not
     * reset while it holds one, and its READs finish when the link returns. */
    bool reset_reads_crash;
    /* The data READs it holds (XR_OPF_DEPTH with XR_OPF_READ). Where
     * reset_reads_crash, xfer.c keeps them to a quarter of the depth: a
     * dead link strands those until it returns, and they then finish on
     * this rail alone (48 of them took 2 s of faults.link.down's READ). */
    unsigned reads;
    /* A peer takes at most 3/4 of the depth (xfer.c), so that one that
     * stopped answering leaves room for the others. Not on libfabric 1.x's
     * shm: a stopped peer wedges its queue for every peer there, and a live
     * peer's operations caught in it by the reset never completed (the
     * survivor of faults.peer_stop.shm failed); there the dead peer holds
     * the whole depth until its verdict and the others wait in our queue. */
    bool peer_share;
};

/* Open the rails `o` asks for into rails[XR_MAX_RAILS]; *n counts them,
 * also on failure (close those with xr__rail_close_all). How discovery
 * chose, if it ran, goes into note (empty otherwise). */
int xr__rail_open_all(const xr_engine_opts *o, const xr_rail_cfg *cfg, xr_rail *rails,
                      unsigned *n, char *note, size_t note_cap);
/* Close every endpoint: nothing completes after this, so the memory that
 * receives were posted into may be freed. */
void xr__rail_close_eps(xr_rail *rails, unsigned n);
/* Close what is left (MRs registered on a domain must be closed first). */
void xr__rail_close_all(xr_rail *rails, unsigned n);

/* The coarse monotonic clock every deadline is read on, in ns. */
uint64_t xr__rail_now(void);
/*
 * A peer's refusal clock (peer.h, pushed_back): started at the first
 * EAGAIN a provider answers a post to it with, stopped by the next post
 * that goes through. Every rail's thread posts to the same peer, so each
 * looks before it stores: an unchanged clock costs no write to a line the
 * others read.
 */
static inline void xr__rail_refused(_Atomic uint64_t *since)
{
    if (!atomic_load_explicit(since, memory_order_relaxed))
        atomic_store(since, xr__rail_now());
}
static inline void xr__rail_accepted(_Atomic uint64_t *since)
{
    if (atomic_load_explicit(since, memory_order_relaxed))
        atomic_store(since, 0);
}
/* Record an operation the provider accepted (rail lock held): from now on
 * it has a deadline, and a reset completes it if the CQ does not. RMA
 * posted with xr__rail_rma is recorded already. */
void xr__rail_held(xr_rail *r, xr_opctx *ctx, fi_addr_t dst);
/*
 * Whether the oldest send or RMA the rail holds was posted more than
 * `deadline` ns ago; if so, where it went, and whether the rail has
 * completed nothing at all in that time (silent).
 */
bool xr__rail_overdue(xr_rail *r, uint64_t now, uint64_t deadline, fi_addr_t *dst,
                      bool *silent);
/* Whether the rail holds a send or RMA to dst. */
bool xr__rail_holds(xr_rail *r, fi_addr_t dst);
/* When the oldest operation the rail holds for dst was posted; 0: none. */
uint64_t xr__rail_oldest(xr_rail *r, fi_addr_t dst);
/*
 * Close the endpoint and open it again, asking for the same address (a
 * provider may give another: reopen_moves), with the same CQ and AV: what the provider held is canceled, and its operations
 * complete with XR_ECANCELED and `why` (receives once the new endpoint can
 * take them again, so their owners post them anew). 0, XR_EFABRIC if the
 * endpoint could not be reopened (the rail then has none; the next reset
 * tries again), or XR_EBUSY if a READ it holds forbids it
 * (reset_reads_crash).
 */
int xr__rail_reset(xr_rail *r, const char *why);
/*
 * Instead of a reset: end what the rail holds for `dst` (a peer judged
 * lost) with XR_EPEER, leaving the operations with the provider, which may
 * still return them (dropped then). Only where a reset would move the
 * rail's address and a dead peer blocks no other, and only if every such
 * operation's owner keeps its memory (XR_OPF_KEEP): else XR_ENOTSUP, and
 * the caller resets. *n gets the count.
 */
int xr__rail_abandon(xr_rail *r, fi_addr_t dst, const char *why, unsigned *n);
/* Post a probe READ of 8 bytes at raddr/key through dst: 0 (or 0 with one
 * already out), XR_EFABRIC if the rail has no endpoint, XR_ENOTSUP if it
 * has no probe buffer, XR_EIO if the post failed. Rail lock not held. */
int xr__rail_probe(xr_rail *r, fi_addr_t dst, uint64_t raddr, uint64_t key);
/* The same with the post left to `post`, called with the rail lock held and
 * the rail's probe context, which it must complete: 0 if it posted. For a
 * peer whose regions are all staged (stage.c answers the probe). */
typedef int (*xr_probe_post_fn)(void *arg, xr_rail *r, xr_opctx *probe);
int xr__rail_probe_via(xr_rail *r, xr_probe_post_fn post, void *arg);
/* Read the CQ, complete through each context, post queued work. The
 * number of completions handled. */
int xr__rail_progress(xr_rail *r);
/* Queue an item on a lane, and post now unless the rail's thread does. */
void xr__rail_enqueue(xr_rail *r, unsigned lane, xr_work *w);
/*
 * Whether a progress thread may sleep on the rail's wait_fd: the rail has
 * one, holds nothing of ours to send or post, and fi_trywait agrees (else
 * there is something to read: poll again). Rail lock not held.
 */
bool xr__rail_can_sleep(xr_rail *r);
/*
 * Post an RMA (write or read) whose completion comes to ctx->done. A DEPTH
 * operation waits for room under the rail's depth. 0, -FI_EAGAIN (no room
 * now: try again from the queue), or another negative fi_errno. Rail lock held.
 */
int xr__rail_rma(xr_rail *r, bool write, void *buf, size_t len, void *desc, fi_addr_t dst,
                 uint64_t raddr, uint64_t key, xr_opctx *ctx);
/* Run fn(arg) once the rail lock is released. Rail lock held. */
void xr__rail_after(xr_rail *r, xr_after_fn fn, void *arg);
/* End an operation that never reached the CQ (a staged chunk) as if the CQ
 * had returned it. No rail lock held. */
void xr__rail_complete(xr_rail *r, xr_opctx *ctx, int err, const char *why);
/* Register memory on one rail, honouring FI_MR_ENDPOINT; `key` is used
 * unless the provider picks keys itself (FI_MR_PROV_KEY). */
int xr__rail_mr_reg(xr_rail *r, void *buf, size_t len, uint64_t access, uint64_t key,
                    xr_mem_kind kind, int device, struct fid_mr **out);
/* The largest chunk a rail takes: `chunk`, or the provider's message cap. */
static inline size_t xr__rail_chunk_cap(const xr_rail *r, size_t chunk)
{
    return chunk < r->max_msg ? chunk : r->max_msg;
}
void xr__rail_addr_format(const xr_rail *r, const void *addr, size_t len, char *out, size_t cap);
void xr__rail_info(xr_rail *r, xr_rail_info *info);

#endif
