/*
 * test_mr_cache_rails.c - the MR cache on real rails, two processes.
 *
 * The target registers a KV pool and 64 tensor regions nested in it, then
 * deregisters and registers the tensors again; with the cache on, the
 * tensors are served by the pool's registrations, with it off each one
 * registers on every rail. It publishes them all. The initiator writes
 * into every tensor and into the pool beside them from a local-only buffer
 * that is registered lazily, on the rails the plan uses; then deregisters
 * that buffer, which must invalidate its registrations, registers it again
 * and writes again. The target checks every byte of the pool after each
 * pass. The bytes must be the same with the cache on and off.
 *
 * usage: test_mr_cache_rails PROVIDER on|off
 */
#include "harness.h"

#define RAILS 4
#define POOL (8u << 20)
#define NT 64
#define PASSES 4
#define TENSOR (64u << 10)
#define TSTRIDE (96u << 10) /* tensors with gaps between them */
#define EXTRA_OFF (7u << 20) /* a 1 MiB range of the pool outside every tensor */
#define EXTRA (1u << 20)

static const char *provider;
static int cache_on;

static xr_engine *engine(const char *name)
{
    xr_engine *e;
    H_OK(h_engine(name, provider, RAILS, 0, &e));
    xr_mr_cache_opts o = {.enabled = cache_on, .max_entries = 1024, .max_bytes = 0};
    H_OK(xr_mr_cache_configure(e, &o));
    return e;
}

static xr_mr_cache_stats stats(xr_engine *e)
{
    xr_mr_cache_stats st;
    H_OK(xr_mr_cache_stats_get(e, &st));
    return st;
}

/* Where pass p writes, as pool offsets: every tensor, then the extra range. */
static size_t piece(unsigned i, size_t *len)
{
    *len = i < NT ? TENSOR : EXTRA;
    return i < NT ? (size_t)i * TSTRIDE : EXTRA_OFF;
}

static void target(int fd, void *arg)
{
    (void)arg;
    xr_engine *e = engine("target");
    uint8_t *pool = aligned_alloc(4096, POOL);
    memset(pool, 0, POOL);
    xr_region *whole, *t[NT];
    H_OK(xr_mem_register(e, pool, POOL, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &whole));
    xr_mr_cache_stats s0 = stats(e);
    H_CHECK(s0.registrations == RAILS, "the pool: %llu registrations, expected one per rail",
            (unsigned long long)s0.registrations);
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < NT; i++)
            H_OK(xr_mem_register(e, pool + (size_t)i * TSTRIDE, TENSOR, XR_MEM_HOST, 0,
                                 XR_ACCESS_WRITE, &t[i]));
        xr_mr_cache_stats s = stats(e);
        uint64_t want = cache_on ? RAILS : RAILS + (uint64_t)(pass + 1) * NT * RAILS;
        H_CHECK(s.registrations == want, "pass %d: %llu registrations, expected %llu (cache %s)",
                pass, (unsigned long long)s.registrations, (unsigned long long)want,
                cache_on ? "on" : "off");
        H_CHECK(s.hits == (cache_on ? (uint64_t)(pass + 1) * NT * RAILS : 0),
                "pass %d: %llu hits", pass, (unsigned long long)s.hits);
        h_log("tensors registered (pass %d): %llu registrations, %llu hits, %.1f us registering",
              pass, (unsigned long long)s.registrations, (unsigned long long)s.hits,
              s.register_ns / 1e3);
        if (pass == 0)
            for (unsigned i = 0; i < NT; i++)
                H_OK(xr_mem_deregister(t[i]));
    }
    /* Deregistering a tensor must not take the pool's registration that
     * serves it, since the pool still holds it. */
    H_CHECK(stats(e).invalidations == 0, "the pool's entries were invalidated");
    h_send_metadata(fd, e);
    xr_peer *p = h_load_peer(fd, e);
    (void)p;
    h_send_u64(fd, (uintptr_t)pool);
    for (uint64_t tag = 1; tag <= PASSES; tag++) {
        char who[64];
        size_t wl = sizeof who, ml;
        void *msg = NULL;
        uint8_t buf[16];
        double give_up = h_now() + h_patience_s();
        for (;;) {
            H_CHECK(h_now() < give_up, "pass %llu: no notification", (unsigned long long)tag);
            ml = sizeof buf;
            wl = sizeof who;
            int rc = xr_notif_get(e, who, wl, buf, &ml);
            if (rc == 0) {
                msg = buf;
                break;
            }
            H_CHECK(rc == XR_EAGAIN, "notif_get: %s", xr_engine_last_error(NULL));
            xr_progress(e);
        }
        H_CHECK(msg && ml == 8 && !memcmp(buf, &tag, 8), "pass %llu: wrong notification",
                (unsigned long long)tag);
        /* Every written byte has the pass's pattern; everything else is 0. */
        size_t w = 0;
        for (unsigned i = 0; i <= NT; i++) {
            size_t len, off = piece(i, &len);
            for (size_t k = w; k < off; k++)
                H_CHECK(pool[k] == 0, "pass %llu: byte %zu outside the writes is %u",
                        (unsigned long long)tag, k, pool[k]);
            long long bad = h_verify(pool + off, len, tag, off);
            H_CHECK(bad < 0, "pass %llu: piece %u wrong at byte %lld", (unsigned long long)tag, i,
                    bad);
            w = off + len;
        }
        for (size_t k = w; k < POOL; k++)
            H_CHECK(pool[k] == 0, "byte %zu after the writes is %u", k, pool[k]);
        h_send_u64(fd, tag);
        h_log("pass %llu: every byte of the pool verified", (unsigned long long)tag);
    }
    h_recv_u64(fd, e);
    for (unsigned i = 0; i < NT; i++)
        H_OK(xr_mem_deregister(t[i]));
    H_OK(xr_mem_deregister(whole));
    xr_engine_destroy(e);
    free(pool);
}

static void initiator(int fd, void *arg)
{
    (void)arg;
    xr_engine *e = engine("initiator");
    xr_peer *p = h_load_peer(fd, e);
    h_send_metadata(fd, e);
    uint64_t rpool = h_recv_u64(fd, e);
    uint8_t *src = aligned_alloc(4096, POOL);
    xr_iov local[NT + 1], remote[NT + 1];
    uint64_t regs_before_pass2 = 0;
    for (uint64_t tag = 1; tag <= PASSES; tag++) {
        /* Passes 1 and 2 register the buffer; 3 and 4 leave it to the
         * transfer, which registers it on demand through the cache. */
        bool on_demand = tag > 2;
        xr_region *g = NULL;
        if (!on_demand) {
            H_OK(xr_mem_register(e, src, POOL, XR_MEM_HOST, 0, XR_ACCESS_NONE, &g));
            H_CHECK(stats(e).in_use == 0,
                    "a local-only region was registered before any plan used it");
        }
        for (unsigned i = 0; i <= NT; i++) {
            size_t len, off = piece(i, &len);
            h_fill(src + off, len, tag, off);
            local[i] = (xr_iov){(uintptr_t)src + off, len};
            remote[i] = (xr_iov){rpool + off, len};
        }
        xr_mr_cache_stats s0 = stats(e);
        xr_xfer *x;
        H_OK(xr_xfer_create(e, p, XR_OP_WRITE, local, remote, NT + 1, &tag, 8, &x));
        xr_mr_cache_stats s = stats(e);
        if (!on_demand)
            H_CHECK(s.in_use >= 1 && s.in_use <= RAILS, "pass %llu: %llu registrations in use",
                    (unsigned long long)tag, (unsigned long long)s.in_use);
        if (tag == 2)
            H_CHECK(s.registrations > regs_before_pass2,
                    "pass 2 reused a registration of the deregistered buffer");
        if (tag == 3)
            H_CHECK(s.registrations > s0.registrations,
                    "pass 3: the unregistered buffer was not registered on demand");
        if (tag == 4 && cache_on)
            H_CHECK(s.registrations == s0.registrations && s.hits > s0.hits,
                    "pass 4: the on-demand registrations of pass 3 were not reused "
                    "(%llu new registrations, %llu hits)",
                    (unsigned long long)(s.registrations - s0.registrations),
                    (unsigned long long)(s.hits - s0.hits));
        if (tag == 4 && !cache_on)
            H_CHECK(s.registrations > s0.registrations && s.hits == s0.hits,
                    "pass 4, cache off: the buffer was not registered again");
        if (on_demand)
            h_log("pass %llu (on demand): %llu registrations, %llu hits", (unsigned long long)tag,
                  (unsigned long long)(s.registrations - s0.registrations),
                  (unsigned long long)(s.hits - s0.hits));
        H_OK(xr_xfer_post(x));
        H_OK(xr_xfer_wait(x, 30000));
        xr_xfer_release(x);
        H_CHECK(h_recv_u64(fd, e) == tag, "target did not confirm pass %llu",
                (unsigned long long)tag);
        if (g)
            H_OK(xr_mem_deregister(g));
        s = stats(e);
        if (tag == 3) {
            /* Released with the transfer, the on-demand registrations stay
             * cached for the next transfer of the buffer. */
            H_CHECK(cache_on ? s.entries > 0 : s.entries == 0,
                    "cache %s: %llu entries after an on-demand transfer", cache_on ? "on" : "off",
                    (unsigned long long)s.entries);
            continue;
        }
        if (tag == PASSES)
            H_OK(xr_mem_invalidate(e, src, POOL));
        s = stats(e);
        if (cache_on)
            H_CHECK(s.invalidations > 0 && s.entries == 0,
                    "pass %llu: invalidating the buffer left %llu entries (%llu invalidated)",
                    (unsigned long long)tag, (unsigned long long)s.entries,
                    (unsigned long long)s.invalidations);
        else
            H_CHECK(s.entries == 0 && s.hits == 0, "cache off: %llu entries, %llu hits",
                    (unsigned long long)s.entries, (unsigned long long)s.hits);
        regs_before_pass2 = s.registrations;
    }
    h_send_u64(fd, 0);
    H_OK(xr_peer_unload(p));
    xr_engine_destroy(e);
    free(src);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return fprintf(stderr, "usage: %s PROVIDER on|off\n", argv[0]), 2;
    provider = argv[1];
    cache_on = !strcmp(argv[2], "on");
    h_require_provider(provider);
    int rc = h_run_pair(target, initiator, NULL);
    if (!rc)
        printf("mr cache %s on %s: passed\n", argv[2], provider);
    return rc;
}
