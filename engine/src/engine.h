/*
 * engine.h - the engine object: what its modules share. Each module keeps
 * its own state behind a pointer to a struct private to it (policy.c,
 * peer.c, notif.c, stage.c); the fields here are those several layers read:
 * the rails, the lock, the options and the log.
 */
#ifndef XR_ENGINE_H
#define XR_ENGINE_H

#include "core/list.h"
#include "core/log.h"
#include "core/mr_cache.h"
#include "core/spans.h"
#include "rail.h"
#include "xrail.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdbool.h>

#define XR_MAX_PROGRESS_THREADS 16 /* opts.progress_threads is capped here */

struct xr_layout;
struct xr_policies;
struct xr_peers;
struct xr_notifs;
struct xr_stage;

typedef struct xr_progress_part {
    xr_engine *e;
    unsigned index, of;     /* this thread drives rails i with i % of == index */
} xr_progress_part;

struct xr_engine {
    char *name;
    char *script_path;              /* our copy of opts.script_path */
    uint64_t instance;
    xr_engine_opts opts;
    xr_logger log;
    unsigned nrails;
    xr_rail *rails;
    xr_rail_cfg rail_cfg;           /* what every rail shares */
    char rail_note[2048];           /* how discovery chose the rails; empty when named */
    atomic_bool rail_err;           /* some rail has err_pending (rail.c sets it) */

    pthread_mutex_t lock;           /* regions, peers, transfers, the policy */
    /* region.c */
    xr_spans regions;               /* registered regions by address; they may nest */
    xr_mr_cache mrc;                /* every registration goes through it */
    atomic_uint_fast64_t next_key;  /* requested MR keys, for providers without PROV_KEY */
    /* xfer.c */
    xr_list xfers;                  /* live transfers */
    atomic_uint rr;                 /* round-robin start for small descriptors */
    atomic_uint orphans;            /* transfers released in flight, not yet freed */
    pthread_mutex_t fail_lock;      /* the failed list and the retry lanes' lists */
    xr_list failed;                 /* chunks waiting for failover */
    atomic_bool fail_pending;
    struct xr_retry_lane *retry;    /* per rail */
    /* health.c */
    atomic_uint_fast64_t health_at; /* the next health pass (rails' clock, ns) */
    /* modules' own state */
    struct xr_policies *policy;     /* policy.c: the script, the plan cache, counters */
    struct xr_peers *peers;         /* peer.c: loaded peers, our custom fields */
    struct xr_notifs *notif;        /* notif.c */
    struct xr_stage *stage;         /* stage.c: bounce slots for memory no rail reaches */
    struct xr_layout *layout;       /* metadata layout script; NULL: built-in; fixed at creation */

    /* engine.c: progress threads */
    pthread_t progress_tid[XR_MAX_PROGRESS_THREADS];
    xr_progress_part progress_part[XR_MAX_PROGRESS_THREADS];
    unsigned progress_nthreads;     /* running; 0: xr_progress and xr_xfer_wait drive it.
                                       More than 1: each rail's thread posts its chunks */
    atomic_bool stop;
    int event_fd;                   /* xr_engine_fd: written when a transfer ends or a
                                       notification arrives; -1 if none could be made */
    atomic_bool event_wanted;       /* xr_engine_fd was asked for: until then no write,
                                       as a syscall per transfer would cost all the others */
};

/* Wake whoever waits on xr_engine_fd: a transfer ended, or a notification
 * arrived. Any thread, any lock; a full counter is still readable. */
static inline void xr__engine_signal(xr_engine *e)
{
    uint64_t one = 1;
    if (!atomic_load_explicit(&e->event_wanted, memory_order_relaxed))
        return;
    if (e->event_fd >= 0 && write(e->event_fd, &one, sizeof one) < 0)
        return; /* EAGAIN: the counter is at its maximum, and readable */
}

/* A fresh MR key for providers that take requested keys. */
static inline uint64_t xr__engine_key(xr_engine *e)
{
    return atomic_fetch_add(&e->next_key, 1) + 1;
}

/* Every rail of the engine, as a mask. */
static inline uint64_t xr__engine_all_rails(const xr_engine *e)
{
    return e->nrails >= 64 ? ~0ull : (1ull << e->nrails) - 1;
}

#endif
