/*
 * test_events.c - two processes, real providers: completions delivered to
 * the application without polling. Callbacks (reposting from inside one,
 * releasing inside one, a release from another thread waiting for one that
 * runs, a canceled transfer's status, an engine destroyed with one due),
 * xr_notif_wait (its timeout, and a message it waits for), and an idle
 * engine that sleeps instead of polling.
 *
 * usage: test_events PROVIDER PROGRESS_THREAD(0|1)
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

#define REGION (8u << 20)
#define NX 4             /* transfers in the callback chain */
#define XLEN (REGION / NX)
#define POSTS 10         /* posts of each, all from its callback */

typedef struct cfg {
    const char *provider;
    int threads;
} cfg;

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- decode: the target ---- */

static void target(int fd, void *arg)
{
    cfg *c = arg;
    xr_engine *e;
    H_OK(h_engine("decode", c->provider, 2, c->threads, &e));
    uint8_t *buf = aligned_alloc(4096, REGION);
    memset(buf, 0, REGION);
    xr_region *r;
    H_OK(xr_mem_register(e, buf, REGION, XR_MEM_HOST, -1, XR_ACCESS_RW, &r));
    h_send_metadata(fd, e);
    xr_peer *p = h_load_peer(fd, e);
    (void)p;
    h_send_u64(fd, (uint64_t)(uintptr_t)buf);

    /* Nothing comes: the wait ends at its timeout, not before. */
    char name[64];
    uint64_t tag;
    size_t len = sizeof tag;
    double t0 = h_now();
    int rc = xr_notif_wait(e, 200, name, sizeof name, &tag, &len);
    double waited = h_now() - t0;
    H_CHECK(rc == XR_ETIMEDOUT, "xr_notif_wait with nothing sent: %s", xr_err_name(rc));
    H_CHECK(waited >= 0.19 && waited < 5, "xr_notif_wait(200 ms) returned after %.3f s", waited);
    h_log("ok: xr_notif_wait(200 ms) with nothing sent: XR_ETIMEDOUT after %.3f s", waited);

    /* Idle: waiting costs (almost) no CPU where the rails have wait
     * objects. shm has none: its cost is reported, not judged. */
    double c0 = cpu_s();
    t0 = h_now();
    rc = xr_notif_wait(e, 1000, name, sizeof name, &tag, &len);
    H_CHECK(rc == XR_ETIMEDOUT, "idle xr_notif_wait: %s", xr_err_name(rc));
    double share = (cpu_s() - c0) / (h_now() - t0);
    if (strstr(c->provider, "tcp")) {
        /* Sleeping costs about 0.5% here; polling, 100% (docs/performance.md). */
        H_CHECK(share < 0.25, "an idle engine on %s used %.0f%% of a core for 1 s: it polls "
                              "instead of sleeping", c->provider, 100 * share);
        h_log("ok: idle for 1 s on %s, %.1f%% of a core", c->provider, 100 * share);
    } else {
        h_log("idle for 1 s on %s, %.1f%% of a core (no wait object: it naps, not judged)",
              c->provider, 100 * share);
    }
    h_send_u64(fd, 1);

    /* The callback chain's bytes, then its notification. */
    len = sizeof tag;
    H_OK(xr_notif_wait(e, 60000, name, sizeof name, &tag, &len));
    H_CHECK(len == sizeof tag && !strcmp(name, "prefill"), "notification of %zu bytes from '%s'",
            len, name);
    long long bad = h_verify(buf, REGION, tag, 0);
    H_CHECK(bad < 0, "after the callback chain, byte %lld is wrong", bad);
    h_log("ok: %u transfers x %u posts from their callbacks, every byte in place, then the "
          "notification", NX, POSTS);
    h_send_u64(fd, 1);
    h_recv_u64(fd, e); /* the initiator is done */
    xr_mem_deregister(r);
    xr_engine_destroy(e);
    free(buf);
}

/* ---- prefill: the initiator ---- */

typedef struct chain {
    atomic_uint posts[NX], errors;
    atomic_uint done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} chain;

typedef struct link {
    chain *ch;
    unsigned i;
} link_t;

static void on_chain(xr_xfer *x, int status, void *user)
{
    link_t *l = user;
    chain *ch = l->ch;
    if (status || xr_xfer_status(x) != status)
        atomic_fetch_add(&ch->errors, 1);
    if (atomic_fetch_add(&ch->posts[l->i], 1) + 1 < POSTS) {
        if (xr_xfer_post(x)) /* again, from its own callback */
            atomic_fetch_add(&ch->errors, 1);
        return;
    }
    pthread_mutex_lock(&ch->lock);
    atomic_fetch_add(&ch->done, 1);
    pthread_cond_signal(&ch->cond);
    pthread_mutex_unlock(&ch->lock);
}

/* Wait for *flag to reach want, driving progress without threads; bounded. */
static void wait_for(xr_engine *e, int threads, atomic_uint *flag, unsigned want, const char *what)
{
    double end = h_now() + 60;
    while (atomic_load(flag) < want) {
        H_CHECK(h_now() < end, "%s: still %u of %u after 60 s", what, atomic_load(flag), want);
        if (threads) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        } else {
            H_OK(xr_progress(e));
        }
    }
}

typedef struct probe {
    atomic_uint calls, entered, returned;
    int status;
    xr_xfer *self;
} probe;

static void on_release_self(xr_xfer *x, int status, void *user)
{
    probe *pr = user;
    pr->status = status;
    xr_xfer_release(x); /* allowed: x is not touched after the callback returns */
    atomic_fetch_add(&pr->calls, 1);
}

static void on_slow(xr_xfer *x, int status, void *user)
{
    probe *pr = user;
    (void)x;
    pr->status = status;
    atomic_store(&pr->entered, 1);
    struct timespec ts = {0, 150 * 1000000};
    nanosleep(&ts, NULL);
    atomic_store(&pr->returned, 1);
    atomic_fetch_add(&pr->calls, 1);
}

static void on_count(xr_xfer *x, int status, void *user)
{
    probe *pr = user;
    (void)x;
    pr->status = status;
    atomic_fetch_add(&pr->calls, 1);
}

static void initiator(int fd, void *arg)
{
    cfg *c = arg;
    xr_engine *e;
    h_connect_on_load = 1;
    H_OK(h_engine("prefill", c->provider, 2, c->threads, &e));
    h_connect_on_load = 0;
    uint8_t *src = aligned_alloc(4096, REGION);
    uint64_t tag = 0xE7E175ull + (uint64_t)c->threads;
    h_fill(src, REGION, tag, 0);
    xr_region *r;
    H_OK(xr_mem_register(e, src, REGION, XR_MEM_HOST, -1, XR_ACCESS_NONE, &r));
    xr_peer *p = h_load_peer(fd, e);
    h_send_metadata(fd, e);
    uint64_t dst = h_recv_u64(fd, e);
    /* connect_on_load: loading sent a hello on every rail, with no
     * transfer, notification or xr_peer_connect from us (the target is
     * in its timed notification waits, driving its progress). */
    double end = h_now() + 30;
    for (unsigned i = 0; i < 2; i++) {
        xr_rail_info ri;
        for (;;) {
            H_OK(xr_rail_info_get(e, i, &ri));
            if (ri.counters.notif_tx >= 1)
                break;
            H_CHECK(h_now() < end, "connect on load: rail %u sent no hello in 30 s", i);
            if (c->threads)
                usleep(1000);
            else
                H_OK(xr_progress(e));
        }
    }
    h_log("ok: connect_on_load: a hello on each of 2 rails at load");
    /* Every rail connected at once, before the first transfer; again is
     * harmless. The target drops the hellos (its next notification is the
     * chain's, checked there). */
    uint64_t before = H_RAILS_SUM(e, tx_bytes);
    double tc = h_now();
    H_OK(xr_peer_connect(p, 30000));
    H_OK(xr_peer_connect(p, 30000));
    uint64_t moved = H_RAILS_SUM(e, tx_bytes) - before;
    /* Each call also warmed the rails: a 1 MiB READ a rail from the
     * target's region, which anyone may read. */
    H_CHECK(moved >= 4u << 20, "xr_peer_connect warmed the rails with %llu bytes, not 4 MiB",
            (unsigned long long)moved);
    h_log("ok: xr_peer_connect: 2 rails connected and warmed (%.1f MiB) in %.3f s (twice)",
          moved / 1048576.0, h_now() - tc);
    h_recv_u64(fd, e); /* the target's waits are done */

    /* The chain: each transfer is posted again from its callback. */
    chain ch = {0};
    pthread_mutex_init(&ch.lock, NULL);
    pthread_cond_init(&ch.cond, NULL);
    xr_xfer *x[NX];
    link_t links[NX];
    for (unsigned i = 0; i < NX; i++) {
        xr_iov l = {(uint64_t)(uintptr_t)src + i * XLEN, XLEN}, rv = {dst + i * XLEN, XLEN};
        H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &l, &rv, 1, NULL, 0, &x[i]));
        links[i] = (link_t){&ch, i};
        H_OK(xr_xfer_set_callback(x[i], on_chain, &links[i]));
    }
    for (unsigned i = 0; i < NX; i++) {
        H_OK(xr_xfer_post(x[i]));
        /* In flight, the callback cannot change. */
        int rc = xr_xfer_set_callback(x[i], on_chain, &links[i]);
        H_CHECK(rc == XR_EBUSY || (rc == 0 && xr_xfer_status(x[i]) != XR_EINPROGRESS),
                "xr_xfer_set_callback while in flight: %s", xr_err_name(rc));
    }
    wait_for(e, c->threads, &ch.done, NX, "callback chain");
    H_CHECK(atomic_load(&ch.errors) == 0, "%u callbacks saw an error", atomic_load(&ch.errors));
    for (unsigned i = 0; i < NX; i++)
        H_CHECK(atomic_load(&ch.posts[i]) == POSTS, "transfer %u: %u callbacks for %u posts", i,
                atomic_load(&ch.posts[i]), POSTS);
    for (unsigned i = 0; i < NX; i++) {
        H_CHECK(xr_xfer_status(x[i]) == 0, "transfer %u: %s", i, xr_xfer_error(x[i]));
        xr_xfer_release(x[i]);
    }
    h_log("ok: %u transfers reposted from their callbacks, %u calls each, status 0", NX, POSTS);
    H_OK(xr_notif_send(e, p, &tag, sizeof tag));
    h_recv_u64(fd, e); /* verified */

    /* A callback that releases its own transfer. */
    xr_iov l = {(uint64_t)(uintptr_t)src, 4096}, rv = {dst, 4096};
    probe self = {0};
    xr_xfer *y;
    H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &l, &rv, 1, NULL, 0, &y));
    H_OK(xr_xfer_set_callback(y, on_release_self, &self));
    H_OK(xr_xfer_post(y));
    wait_for(e, c->threads, &self.calls, 1, "a callback releasing its transfer");
    H_CHECK(self.status == 0, "released in its callback: status %s", xr_err_name(self.status));
    h_log("ok: a transfer released inside its callback");

    /* Release from this thread while the callback runs on a progress
     * thread: release returns only after the callback has. */
    if (c->threads) {
        probe slow = {0};
        xr_xfer *z;
        H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &l, &rv, 1, NULL, 0, &z));
        H_OK(xr_xfer_set_callback(z, on_slow, &slow));
        H_OK(xr_xfer_post(z));
        wait_for(e, 1, &slow.entered, 1, "the slow callback to start");
        xr_xfer_release(z);
        H_CHECK(atomic_load(&slow.returned), "xr_xfer_release returned while its callback ran");
        h_log("ok: xr_xfer_release waited for the callback running on the progress thread");
    }

    /* A canceled transfer's callback hears XR_ECANCELED. */
    probe cn = {0};
    xr_iov bl = {(uint64_t)(uintptr_t)src, REGION}, brv = {dst, REGION};
    xr_xfer *w;
    H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &bl, &brv, 1, NULL, 0, &w));
    H_OK(xr_xfer_set_callback(w, on_count, &cn));
    H_OK(xr_xfer_post(w));
    int crc = xr_xfer_cancel(w);
    wait_for(e, c->threads, &cn.calls, 1, "the canceled transfer's callback");
    if (crc == 0)
        H_CHECK(cn.status == XR_ECANCELED, "canceled: callback status %s",
                xr_err_name(cn.status));
    else
        H_CHECK(crc == XR_EINVAL && cn.status == 0, "cancel %s, callback status %s",
                xr_err_name(crc), xr_err_name(cn.status));
    H_CHECK(atomic_load(&cn.calls) == 1, "%u callbacks for one post", atomic_load(&cn.calls));
    h_log("ok: cancel %s, callback status %s", xr_err_name(crc), xr_err_name(cn.status));
    xr_xfer_release(w);

    /* Destroyed with a callback due: it runs before, or never; never after. */
    static probe late = {0};
    xr_xfer *v;
    H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &bl, &brv, 1, NULL, 0, &v));
    H_OK(xr_xfer_set_callback(v, on_count, &late));
    H_OK(xr_xfer_post(v));
    xr_mem_deregister(r); /* XR_EBUSY while v flies: the region goes with the engine */
    xr_engine_destroy(e);
    unsigned calls = atomic_load(&late.calls);
    H_CHECK(calls <= 1, "%u callbacks for one post", calls);
    h_log("ok: engine destroyed with a transfer in flight; its callback ran %u time(s), before",
          calls);
    h_send_u64(fd, 1);
    pthread_cond_destroy(&ch.cond);
    pthread_mutex_destroy(&ch.lock);
    free(src);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PROVIDER PROGRESS_THREAD(0|1)\n", argv[0]);
        return 2;
    }
    cfg c = {argv[1], atoi(argv[2])};
    h_require_provider(c.provider);
    return h_run_pair(target, initiator, &c);
}
