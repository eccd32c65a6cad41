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
    /* Sleeping when idle (progress.c): an epoll set of its rails' CQ wait
     * fds and wake_fd; epfd -1 when a rail has no wait fd (it is polled). */
    int epfd;
    int wake_fd;            /* eventfd: work was queued on one of its rails */
    atomic_uint sleeping;   /* threads in epoll_wait on epfd, or about to be */
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
    xr_list kept;                   /* released transfers whose chunks a provider may still
                                     * hold for a lost peer (xfer.h, kept): freed at destroy */
    xr_list groups;                 /* group.c: live groups */
    atomic_uint dead_groups;        /* groups nothing refers to, for progress to free */
    void *warm_buf;                 /* progress.c: where xr_peer_connect's warming READs land
                                       (engine lock; freed last, after the MR cache) */
    atomic_uint rr;                 /* round-robin start for small descriptors */
    atomic_uint orphans;            /* transfers released in flight, not yet freed */
    pthread_mutex_t fail_lock;      /* the failed list and the retry lanes' lists */
    xr_list failed;                 /* chunks waiting for failover */
    atomic_bool fail_pending;
    struct xr_retry_lane *retry;    /* per rail */
    /* Transfers ended with a callback to run (xr_xfer_set_callback): finish
     * queues them, progress runs them with no lock held, one at a time. */
    pthread_mutex_t cb_lock;        /* cb_due, cb_current, each xfer's cb fields */
    pthread_cond_t cb_cond;         /* cb_current changed */
    pthread_mutex_t cb_runner;      /* held by the thread running callbacks */
    xr_list cb_due;
    atomic_bool cb_pending;         /* cb_due is not empty: a look without the lock */
    struct xr_xfer *cb_current;     /* whose callback runs now, on cb_thread */
    pthread_t cb_thread;
    /* health.c */
    atomic_uint_fast64_t health_at; /* the next health pass (rails' clock, ns) */
    /* modules' own state */
    struct xr_policies *policy;     /* policy.c: the script, the plan cache, counters */
    struct xr_peers *peers;         /* peer.c: loaded peers, our custom fields */
    struct xr_notifs *notif;        /* notif.c */
    struct xr_stage *stage;         /* stage.c: bounce slots for memory no rail reaches */
    struct xr_layout *layout;       /* metadata layout script; NULL: built-in; fixed at creation */
    struct xr_dir *dir;             /* dir.c: the etcd directory, if opened */
    atomic_uint_fast64_t md_gen;    /* moves when xr_metadata_get's answer may change
                                       (regions, fields): the directory publishes again */

    /* engine.c: progress threads */
    pthread_t progress_tid[XR_MAX_PROGRESS_THREADS];
    xr_progress_part progress_part[XR_MAX_PROGRESS_THREADS];
    xr_progress_part self_part;     /* all rails: the callers that wait without threads */
    unsigned progress_nthreads;     /* running; 0: xr_progress and xr_xfer_wait drive it.
                                       1: the caller posts if the rail lock is free;
                                       more: each rail's thread posts its chunks */
    atomic_bool stop;
    int event_fd;                   /* xr_engine_fd: written when a transfer ends or a
                                       notification arrives; -1 if none could be made */
    atomic_bool event_wanted;       /* xr_engine_fd was asked for: until then no write,
                                       as a syscall per transfer would cost all the others */
    /* Callers blocked in xr_xfer_wait / xr_notif_wait while threads drive
     * progress: they sleep on wait_cond until an event moves wait_gen. */
    pthread_mutex_t wait_lock;
    pthread_cond_t wait_cond;       /* on CLOCK_MONOTONIC */
    uint64_t wait_gen;
    atomic_uint waiters;
};

/* Wake whoever waits: on xr_engine_fd, and the callers blocked in a wait
 * call. A transfer ended, or a notification arrived; its state is stored
 * before (a waiter counts itself, then looks, under wait_lock). Any
 * thread, any lock but wait_lock. */
static inline void xr__engine_signal(xr_engine *e)
{
    uint64_t one = 1;
    if (atomic_load(&e->waiters)) {
        pthread_mutex_lock(&e->wait_lock);
        e->wait_gen++;
        pthread_cond_broadcast(&e->wait_cond);
        pthread_mutex_unlock(&e->wait_lock);
    }
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
