/*
 * progress.c - driving the engine: a pass over staging, the rails, and what
 * their completions left for later (orphaned transfers, the policy's rail
 * error hook). Progress threads (engine.c) run it in a loop; without them,
 * the calls that wait (xr_xfer_wait, xr_notif_get) run it themselves.
 */
#include "progress.h"

#include "health.h"
#include "notif.h"
#include "policy.h"
#include "stage.h"
#include "xfer.h"

#include <sched.h>
#include <time.h>

int xr__progress_share(xr_engine *e, unsigned part, unsigned of)
{
    int n = 0;
    /* Staging first: the slots it frees let the rails post what waits. */
    if (part == 0)
        n += xr__stage_progress(e);
    for (unsigned i = part; i < e->nrails; i += of)
        n += xr__rail_progress(&e->rails[i]);
    if (part == 0) {
        if (atomic_load(&e->orphans))
            xr__xfer_reap_orphans(e);
        if (atomic_exchange(&e->rail_err, false))
            xr__policy_rail_errors(e);
        xr__xfer_failover(e); /* after the policy: its answers decide */
        xr__health_pass(e);
    }
    return n;
}

int xr_progress(xr_engine *e)
{
    if (!e)
        return xr__error_set(XR_EINVAL, "xr_progress: NULL engine");
    return xr__progress_share(e, 0, 1);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int xr_xfer_wait(xr_xfer *x, int timeout_ms)
{
    if (!x)
        return xr__error_set(XR_EINVAL, "xr_xfer_wait: NULL transfer");
    if (!atomic_load(&x->posted))
        return xr__error_set(XR_EINVAL, "xr_xfer_wait: the transfer was never posted");
    uint64_t deadline = timeout_ms >= 0 ? now_ms() + (uint64_t)timeout_ms : UINT64_MAX;
    for (unsigned spin = 0;; spin++) {
        int s = atomic_load(&x->status);
        if (s != XR_EINPROGRESS)
            return xr_xfer_status(x);
        if (x->e->progress_nthreads)
            sched_yield();
        else
            xr__progress_share(x->e, 0, 1);
        if ((spin & 63) == 0 && now_ms() >= deadline)
            return xr__error_set(XR_ETIMEDOUT, "xr_xfer_wait: %zu of %zu chunks still pending "
                                               "after %d ms",
                                 atomic_load(&x->pending), x->nchunks, timeout_ms);
    }
}

int xr_notif_get(xr_engine *e, char *peer_name_buf, size_t cap, void *msg_buf, size_t *len)
{
    if (!e || !len)
        return xr__error_set(XR_EINVAL, "xr_notif_get: NULL argument");
    if (!e->progress_nthreads && !xr__notif_ready(e))
        xr__progress_share(e, 0, 1);
    return xr__notif_take(e, peer_name_buf, cap, msg_buf, len);
}
