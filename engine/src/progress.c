/*
 * progress.c - driving the engine: a pass over staging, the rails, and what
 * their completions left for later (orphaned transfers, the policy's rail
 * error hook, callbacks). Progress threads (engine.c) run it in a loop;
 * without them, the calls that wait (xr_xfer_wait, xr_notif_wait,
 * xr_notif_get) run it themselves.
 *
 * When a pass finds nothing, a driver spins a little (latency), then
 * sleeps: in epoll on its rails' CQ wait fds when the provider has them and
 * nothing of ours is in flight (an idle engine costs no CPU), else in short
 * naps (shm has no wait object; an RMA target's provider moves bytes only
 * when polled and reports nothing).
 */
#include "progress.h"

#include "group.h"
#include "health.h"
#include "notif.h"
#include "policy.h"
#include "stage.h"
#include "xfer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>

#define SPIN_POLLS 256
/* The longest sleep in epoll: the health pass's period, as deadlines and
 * probes need it to run. */
#define SLEEP_MAX_MS 10

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
        if (atomic_load(&e->dead_groups))
            xr__group_reap(e);
        xr__notif_reap(e);
        /* A look before the exchange: a store on every pass took the line
         * from every thread that reads it (1 MiB over 4 threaded rails:
         * 1.16-1.46x with the look, docs/performance.md). */
        if (atomic_load_explicit(&e->rail_err, memory_order_relaxed) &&
            atomic_exchange(&e->rail_err, false))
            xr__policy_rail_errors(e);
        xr__xfer_failover(e); /* after the policy: its answers decide */
        xr__health_pass(e);
    }
    uint64_t now = xr__rail_now(); /* one clock read for all of this share's rails */
    for (unsigned i = part; i < e->nrails; i += of)
        xr__health_rail(e, &e->rails[i], now);
    /* Any driver: a callback queued on another thread's rail runs here if
     * part 0 sleeps. */
    if (atomic_load(&e->cb_pending))
        xr__xfer_run_callbacks(e);
    return n;
}

int xr_progress(xr_engine *e)
{
    if (!e)
        return xr__error_set(XR_EINVAL, "xr_progress: NULL engine");
    return xr__progress_share(e, 0, 1);
}

/* ---- sleeping when there is nothing to do ---- */

int xr__progress_part_open(xr_engine *e, xr_progress_part *pp, unsigned index, unsigned of)
{
    *pp = (xr_progress_part){.e = e, .index = index, .of = of, .epfd = -1, .wake_fd = -1};
    for (unsigned i = index; i < e->nrails; i += of)
        if (e->rails[i].wait_fd < 0)
            return 0; /* a rail that must be polled: this part naps instead */
    pp->epfd = epoll_create1(EPOLL_CLOEXEC);
    pp->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    bool ok = pp->epfd >= 0 && pp->wake_fd >= 0 &&
              epoll_ctl(pp->epfd, EPOLL_CTL_ADD, pp->wake_fd, &ev) == 0;
    for (unsigned i = index; ok && i < e->nrails; i += of)
        ok = epoll_ctl(pp->epfd, EPOLL_CTL_ADD, e->rails[i].wait_fd, &ev) == 0;
    if (!ok) {
        xr__log_write(&e->log, XR_LOG_INFO, "progress %u: no epoll set (%s); it naps instead "
                                            "of sleeping", index, strerror(errno));
        xr__progress_part_close(pp);
    }
    return 0;
}

void xr__progress_part_close(xr_progress_part *pp)
{
    if (pp->epfd >= 0)
        close(pp->epfd);
    if (pp->wake_fd >= 0)
        close(pp->wake_fd);
    pp->epfd = pp->wake_fd = -1;
}

void xr__progress_wake(void *arg, unsigned rail)
{
    xr_engine *e = arg;
    unsigned n = e->progress_nthreads;
    xr_progress_part *pp = n ? &e->progress_part[rail % n] : &e->self_part;
    uint64_t one = 1;
    if (atomic_load(&pp->sleeping) && pp->wake_fd >= 0 && write(pp->wake_fd, &one, sizeof one) < 0)
        return; /* EAGAIN: the counter is full, and readable */
}

/* Whether nothing but the fds can bring work: counted as sleeping first,
 * so that a wake after these looks is not missed. */
static bool may_sleep(xr_progress_part *pp)
{
    xr_engine *e = pp->e;
    if (pp->index == 0 && (xr__stage_active(e) || atomic_load(&e->fail_pending) ||
                           atomic_load(&e->rail_err) || atomic_load(&e->cb_pending)))
        return false;
    for (unsigned i = pp->index; i < e->nrails; i += pp->of)
        if (!xr__rail_can_sleep(&e->rails[i]))
            return false;
    return true;
}

void xr__progress_idle(xr_progress_part *pp, unsigned *idle, int max_ms, bool nap)
{
    xr_engine *e = pp->e;
    /* Spin first, for latency; then look whether sleeping is allowed,
     * every SPIN_POLLS passes (the look locks each rail). */
    if (++*idle < SPIN_POLLS || !e->opts.progress_sleep_us) {
        sched_yield();
        return;
    }
    if (pp->epfd >= 0 && max_ms != 0 && *idle % SPIN_POLLS == 0) {
        atomic_fetch_add(&pp->sleeping, 1);
        if (may_sleep(pp)) {
            struct epoll_event ev[8];
            int ms = max_ms < 0 || max_ms > SLEEP_MAX_MS ? SLEEP_MAX_MS : max_ms;
            (void)epoll_wait(pp->epfd, ev, 8, ms); /* EINTR: look again, as on a wake */
            uint64_t v;
            if (read(pp->wake_fd, &v, sizeof v) < 0)
                v = 0; /* EAGAIN: it was not this fd */
            atomic_fetch_sub(&pp->sleeping, 1);
            *idle = SPIN_POLLS - 1; /* after a wake, look again at the next empty pass */
            return;
        }
        atomic_fetch_sub(&pp->sleeping, 1);
    }
    if (!nap) {
        sched_yield();
        return;
    }
    /* Timer slack makes this about 70 us; progress_sleep_us = 0 spends the
     * core instead (docs/performance.md). */
    struct timespec ts = {0, (long)e->opts.progress_sleep_us * 1000};
    nanosleep(&ts, NULL);
}

/* ---- the calls that wait ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ms left before `deadline` (UINT64_MAX: none, -1), 0 when it has passed. */
static int left_ms(uint64_t deadline)
{
    if (deadline == UINT64_MAX)
        return -1;
    uint64_t now = now_ms();
    return now >= deadline ? 0 : (int)(deadline - now > INT32_MAX ? INT32_MAX : deadline - now);
}

/*
 * Wait until done() says so or the deadline passes; true if done. With
 * progress threads, sleep on the engine's condition, which every transfer
 * end and notification moves. Without, drive progress: in a loop while
 * this engine has work in flight (the latency xr_xfer_wait always had),
 * and asleep on the rails' wait fds when it has none, as an idle progress
 * thread does.
 */
static bool wait_until(xr_engine *e, uint64_t deadline, bool (*done)(void *), void *arg, bool nap)
{
    if (e->progress_nthreads) {
        /* Counted first, then the generation, then the look: an event
         * stored after the look moves the generation (xr__engine_signal).
         * done() runs outside wait_lock, as signals come from under the
         * locks it may take. */
        atomic_fetch_add(&e->waiters, 1);
        bool ok;
        for (;;) {
            pthread_mutex_lock(&e->wait_lock);
            uint64_t gen = e->wait_gen;
            pthread_mutex_unlock(&e->wait_lock);
            int ms;
            if ((ok = done(arg)) || (ms = left_ms(deadline)) == 0)
                break;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            if (ms > 0) {
                ts.tv_sec += ms / 1000;
                ts.tv_nsec += (long)(ms % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
            }
            pthread_mutex_lock(&e->wait_lock);
            while (e->wait_gen == gen) {
                if (ms < 0)
                    pthread_cond_wait(&e->wait_cond, &e->wait_lock);
                else if (pthread_cond_timedwait(&e->wait_cond, &e->wait_lock, &ts) == ETIMEDOUT)
                    break;
            }
            pthread_mutex_unlock(&e->wait_lock);
        }
        atomic_fetch_sub(&e->waiters, 1);
        return ok;
    }
    unsigned idle = 0;
    for (;;) {
        if (done(arg))
            return true;
        int ms = left_ms(deadline);
        if (ms == 0)
            return false;
        if (xr__progress_share(e, 0, 1) > 0)
            idle = 0;
        else if (!done(arg))
            xr__progress_idle(&e->self_part, &idle, ms, nap);
    }
}

static bool xfer_ended(void *arg)
{
    return atomic_load(&((xr_xfer *)arg)->status) != XR_EINPROGRESS;
}

int xr_xfer_wait(xr_xfer *x, int timeout_ms)
{
    if (!x)
        return xr__error_set(XR_EINVAL, "xr_xfer_wait: NULL transfer");
    if (!atomic_load(&x->posted))
        return xr__error_set(XR_EINVAL, "xr_xfer_wait: the transfer was never posted");
    uint64_t deadline = timeout_ms >= 0 ? now_ms() + (uint64_t)timeout_ms : UINT64_MAX;
    if (!wait_until(x->e, deadline, xfer_ended, x, false))
        return xr__error_set(XR_ETIMEDOUT, "xr_xfer_wait: %zu of %zu chunks still pending "
                                           "after %d ms",
                             atomic_load(&x->pending), x->nchunks, timeout_ms);
    return xr_xfer_status(x);
}

static bool group_ended(void *arg)
{
    return atomic_load(&((xr_group *)arg)->status) != XR_EINPROGRESS;
}

int xr_group_wait(xr_group *g, int timeout_ms)
{
    if (!g)
        return xr__error_set(XR_EINVAL, "xr_group_wait: NULL group");
    uint64_t deadline = timeout_ms >= 0 ? now_ms() + (uint64_t)timeout_ms : UINT64_MAX;
    if (!wait_until(g->e, deadline, group_ended, g, false))
        return xr__error_set(XR_ETIMEDOUT, "xr_group_wait: not ended after %d ms (%u of %u "
                                           "members in flight%s)", timeout_ms,
                             atomic_load(&g->pending) - !atomic_load(&g->sealed),
                             atomic_load(&g->members),
                             atomic_load(&g->sealed) ? "" : "; not sealed");
    return xr_group_status(g);
}

/* A connect in flight: each rail's hello counts off; freed by the last
 * of the caller and the hellos to let go (a caller that timed out leaves
 * first). */
typedef struct connecting {
    xr_engine *e;
    atomic_uint left, refs;
    atomic_int err;
    char why[256];
} connecting;

static void connecting_put(connecting *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        free(c);
}

static void hello_done(void *arg, int err, const char *why)
{
    connecting *c = arg;
    int zero = 0;
    if (err && atomic_compare_exchange_strong(&c->err, &zero, err))
        snprintf(c->why, sizeof c->why, "%s", why ? why : xr_strerror(err));
    atomic_fetch_sub(&c->left, 1);
    xr__engine_signal(c->e);
    connecting_put(c);
}

static bool connected(void *arg)
{
    return atomic_load(&((connecting *)arg)->left) == 0;
}

/*
 * Warm the connections with bytes from the peer. Linux grows a TCP
 * socket's send buffer only as the connection carries data, so the first
 * bulk READ on fresh connections ramped up (2.2x warm for 64 MiB over 32
 * rails), and what a connection learned lasts over idle
 * (docs/performance.md, "The first READ after connecting"). One READ of
 * WARM_BYTES per rail from the largest region the peer lets anyone read,
 * all landing in one engine-owned buffer (its contents are never used).
 * A peer that publishes none is only connected. Best effort: a failure is
 * logged, not returned.
 */
#define WARM_BYTES (1u << 20)

static void warm(xr_peer *p, unsigned nrails, uint64_t deadline)
{
    xr_engine *e = p->e;
    pthread_mutex_lock(&e->lock);
    uint64_t addr = 0, len = 0;
    for (size_t k = 0; k < p->nregions; k++) {
        const xr_peer_region *g = &p->regions[k];
        if ((g->access & XR_ACCESS_READ) && !g->staged && g->len > len)
            addr = g->addr, len = g->len;
    }
    if (!e->warm_buf)
        e->warm_buf = aligned_alloc(4096, WARM_BYTES);
    void *buf = e->warm_buf;
    pthread_mutex_unlock(&e->lock);
    if (len < WARM_BYTES || !buf)
        return;
    unsigned n = (unsigned)(len / WARM_BYTES < nrails ? len / WARM_BYTES : nrails);
    xr_iov l[XR_MAX_RAILS], r[XR_MAX_RAILS];
    for (unsigned i = 0; i < n; i++) {
        l[i] = (xr_iov){(uintptr_t)buf, WARM_BYTES};
        r[i] = (xr_iov){addr + (uint64_t)i * WARM_BYTES, WARM_BYTES};
    }
    xr_xfer *x = NULL;
    int rc = xr_xfer_create(e, p, XR_OP_READ, l, r, n, NULL, 0, &x);
    if (!rc && !(rc = xr_xfer_post(x))) {
        uint64_t now = now_ms();
        int left = deadline == UINT64_MAX ? -1 : now < deadline ? (int)(deadline - now) : 0;
        rc = xr_xfer_wait(x, left);
        if (rc == XR_ETIMEDOUT) { /* what the providers hold comes back within the deadlines */
            xr_xfer_cancel(x);
            xr_xfer_wait(x, -1);
        }
    }
    if (rc)
        xr__log_write(&e->log, XR_LOG_INFO, "xr_peer_connect: warming the rails to '%s': %s",
                      p->name, xr__error_last());
    if (x)
        xr_xfer_release(x);
}

int xr_peer_connect(xr_peer *p, int timeout_ms)
{
    if (!p)
        return xr__error_set(XR_EINVAL, "xr_peer_connect: NULL peer");
    xr_engine *e = p->e;
    uint64_t deadline = timeout_ms >= 0 ? now_ms() + (uint64_t)timeout_ms : UINT64_MAX;
    connecting *c = calloc(1, sizeof *c);
    if (!c)
        return xr__error_set(XR_ENOMEM, "xr_peer_connect: out of memory");
    c->e = e;
    atomic_store(&c->refs, 1);
    unsigned n = 0;
    /* Every rail at once: the providers connect them side by side. */
    for (uint64_t m = p->mask; m; m &= m - 1) {
        unsigned i = (unsigned)__builtin_ctzll(m);
        if (!atomic_load(&e->rails[i].up))
            continue;
        atomic_fetch_add(&c->refs, 1);
        atomic_fetch_add(&c->left, 1);
        if (xr__notif_hello(e, p, i, hello_done, c)) {
            atomic_fetch_sub(&c->left, 1);
            atomic_fetch_sub(&c->refs, 1);
            continue;
        }
        n++;
    }
    int rc = 0;
    if (!wait_until(e, deadline, connected, c, false))
        rc = xr__error_set(XR_ETIMEDOUT, "xr_peer_connect: %u of %u rails to '%s' not "
                                         "connected after %d ms", atomic_load(&c->left), n,
                           p->name, timeout_ms);
    else if (atomic_load(&c->err))
        rc = xr__error_set(atomic_load(&c->err), "xr_peer_connect: '%s': %s", p->name, c->why);
    else if (!n)
        rc = xr__error_set(XR_ENORAIL, "xr_peer_connect: no rail that is up reaches '%s'",
                           p->name);
    connecting_put(c);
    if (!rc)
        warm(p, n, deadline);
    return rc;
}

/* A hello of connect_on_load: nobody waits for it; a rail that cannot
 * connect says so here, and its transfers meet the same error. */
static void hello_sent(void *arg, int err, const char *why)
{
    xr_engine *e = arg;
    if (err)
        xr__log_write(&e->log, XR_LOG_INFO, "connect on load: %s: %s", xr_err_name(err),
                      why ? why : xr_strerror(err));
}

static void connect_start(xr_peer *p)
{
    xr_engine *e = p->e;
    for (uint64_t m = p->mask; m; m &= m - 1) {
        unsigned i = (unsigned)__builtin_ctzll(m);
        if (atomic_load(&e->rails[i].up) && xr__notif_hello(e, p, i, hello_sent, e))
            xr__log_write(&e->log, XR_LOG_WARN, "connect on load: rail %u to '%s': %s", i,
                          p->name, xr__error_last());
    }
    xr__engine_signal(e); /* a progress thread asleep posts them now */
}

/* Here, above peers and notifications, because connecting on load sends
 * a hello on each rail. */
int xr_peer_load(xr_engine *e, const void *md, size_t len, xr_peer **out)
{
    int rc = xr__peer_load(e, md, len, out);
    if (!rc && e->opts.connect_on_load)
        connect_start(*out);
    return rc;
}

int xr_notif_get(xr_engine *e, char *peer_name_buf, size_t cap, void *msg_buf, size_t *len)
{
    if (!e || !len)
        return xr__error_set(XR_EINVAL, "xr_notif_get: NULL argument");
    if (!e->progress_nthreads && !xr__notif_ready(e))
        xr__progress_share(e, 0, 1);
    return xr__notif_take(e, peer_name_buf, cap, msg_buf, len);
}

static bool notif_arrived(void *arg)
{
    return xr__notif_ready(arg);
}

int xr_notif_wait(xr_engine *e, int timeout_ms, char *peer_name_buf, size_t cap, void *msg_buf,
                  size_t *len)
{
    if (!e || !len)
        return xr__error_set(XR_EINVAL, "xr_notif_wait: NULL argument");
    uint64_t deadline = timeout_ms >= 0 ? now_ms() + (uint64_t)timeout_ms : UINT64_MAX;
    for (;;) {
        if (!wait_until(e, deadline, notif_arrived, e, true))
            return xr__error_set(XR_ETIMEDOUT, "xr_notif_wait: no notification in %d ms",
                                 timeout_ms);
        int rc = xr__notif_take(e, peer_name_buf, cap, msg_buf, len);
        if (rc != XR_EAGAIN) /* another thread may have taken it first */
            return rc;
    }
}
