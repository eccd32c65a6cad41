/*
 * test_lifecycle.c - life-cycle bugs, each reproduced on a real provider in
 * one process: a staging receive pool that fails to build, settings changed
 * while another thread reads them, and an engine destroyed with transfers
 * still in flight.
 *
 * usage: test_lifecycle PROVIDER CASE
 *   stage_pool      a receive pool too large to allocate fails every time,
 *                   never "succeeds" the second time with no pool behind it
 *   mrc_settings    xr_mr_cache_configure against xr_mr_cache_opts_get and
 *                   xr_engine_config_get on other threads: never a torn read
 *   destroy_inflight  destroy with transfers in flight to a target that never
 *                   makes progress: bounded, and (under ASan) no use after free
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* A failed allocation is part of what stage_pool tests: under ASan it must
 * come back NULL, as it does without. */
__attribute__((used)) const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static const char *provider;

static int engine_with(const char *name, unsigned rails, unsigned rx_slots, int stage_host,
                       xr_engine **out)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.ignore_env = 1;
    xr_rail_spec spec = {.provider = provider, .count = rails};
    if (strstr(provider, "tcp"))
        spec.domain = "lo";
    o.rails = &spec;
    o.n_rail_specs = 1;
    o.stage.host = stage_host;
    if (rx_slots)
        o.stage.rx_slots = rx_slots;
    return xr_engine_create(&o, out);
}

/* Before the fix, the second registration returned 0: the half-made pool
 * counted as made, so peers' requests would have had no slot to land in. */
static void stage_pool(void)
{
    xr_engine *e;
    /* 2^20 receive slots per rail of about 1 MiB each: terabytes, refused. */
    H_OK(engine_with("stage-pool", 2, 1u << 20, 1, &e));
    size_t len = 1 << 20;
    void *buf = aligned_alloc(4096, len);
    H_CHECK(buf, "buffer");
    for (int k = 0; k < 3; k++) {
        xr_region *g = NULL;
        int rc = xr_mem_register(e, buf, len, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &g);
        H_CHECK(rc == XR_ENOMEM && !g, "attempt %d: a staged region without its receive pool "
                "gave %s (%s)", k, xr_err_name(rc), xr_engine_last_error(NULL));
        h_log("attempt %d: %s", k, xr_engine_last_error(NULL));
    }
    /* The engine goes on for memory that needs no receive slots. */
    xr_region *local;
    H_OK(xr_mem_register(e, buf, len, XR_MEM_HOST, 0, XR_ACCESS_NONE, &local));
    H_OK(xr_mem_deregister(local));
    xr_engine_destroy(e);
    free(buf);
}

typedef struct settings_run {
    xr_engine *e;
    atomic_bool stop;
    atomic_ulong reads, torn;
} settings_run;

/* Two settings, each consistent in itself: a read that mixes them was torn. */
static const xr_mr_cache_opts A = {.enabled = 1, .max_entries = 111, .max_bytes = 1111u << 20};
static const xr_mr_cache_opts B = {.enabled = 0, .max_entries = 222, .max_bytes = 2222u << 20};

static bool is(const xr_mr_cache_opts *o, const xr_mr_cache_opts *w)
{
    return o->enabled == w->enabled && o->max_entries == w->max_entries &&
           o->max_bytes == w->max_bytes;
}

static void *reader(void *arg)
{
    settings_run *s = arg;
    char text[8192];
    while (!atomic_load(&s->stop)) {
        xr_mr_cache_opts o;
        H_OK(xr_mr_cache_opts_get(s->e, &o));
        if (!is(&o, &A) && !is(&o, &B) && !atomic_fetch_add(&s->torn, 1))
            h_log("torn: opts_get gave enabled %d, max_entries %zu, max_bytes %zu", o.enabled,
                  o.max_entries, o.max_bytes);
        xr_mr_cache_stats st;
        H_OK(xr_mr_cache_stats_get(s->e, &st));
        if (!(st.enabled == A.enabled && st.max_entries == A.max_entries &&
              st.max_bytes == A.max_bytes) &&
            !(st.enabled == B.enabled && st.max_entries == B.max_entries &&
              st.max_bytes == B.max_bytes) &&
            !atomic_fetch_add(&s->torn, 1))
            h_log("torn: stats gave enabled %d, max_entries %llu, max_bytes %llu", st.enabled,
                  (unsigned long long)st.max_entries, (unsigned long long)st.max_bytes);
        H_OK(xr_engine_config_get(s->e, text, sizeof text));
        char want_a[128], want_b[128];
        snprintf(want_a, sizeof want_a, "enabled = true, max_entries = %zu, max_bytes = %zu",
                 A.max_entries, A.max_bytes);
        snprintf(want_b, sizeof want_b, "enabled = false, max_entries = %zu, max_bytes = %zu",
                 B.max_entries, B.max_bytes);
        if (!strstr(text, want_a) && !strstr(text, want_b) && !atomic_fetch_add(&s->torn, 1))
            h_log("torn: config_get gave %.200s", strstr(text, "mr_cache"));
        atomic_fetch_add(&s->reads, 1);
    }
    return NULL;
}

/* Before the fix, configure wrote the engine's copy of the settings without
 * a lock, and opts_get and config_get read that copy; now the cache's lock
 * guards the only copy. */
static void mrc_settings(void)
{
    settings_run s = {0};
    H_OK(engine_with("mrc-settings", 1, 0, 0, &s.e));
    H_OK(xr_mr_cache_configure(s.e, &A));
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        H_CHECK(pthread_create(&t[i], NULL, reader, &s) == 0, "thread");
    unsigned long writes = 0;
    for (double end = h_now() + 2; h_now() < end; writes++)
        H_OK(xr_mr_cache_configure(s.e, writes & 1 ? &B : &A));
    atomic_store(&s.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    h_log("%lu settings written, %lu read back, %lu torn", writes, atomic_load(&s.reads),
          atomic_load(&s.torn));
    H_CHECK(atomic_load(&s.torn) == 0, "%lu of %lu reads mixed two settings",
            atomic_load(&s.torn), atomic_load(&s.reads));
    H_CHECK(atomic_load(&s.reads) > 100, "too few reads to tell");
    xr_engine_destroy(s.e);
}

/* The target never calls xr_progress, so on these providers the WRITEs
 * never complete; destroy must still end, and free the transfers only after
 * the endpoints that hold their contexts are closed. */
static void destroy_inflight(void)
{
    xr_engine *t, *i;
    H_OK(engine_with("stuck-target", 2, 0, 0, &t));
    H_OK(engine_with("leaving", 2, 0, 0, &i));
    size_t len = 32 << 20;
    uint8_t *src = aligned_alloc(4096, len), *dst = aligned_alloc(4096, len);
    H_CHECK(src && dst, "buffers");
    h_fill(src, len, 7, 0);
    xr_region *gs, *gd;
    H_OK(xr_mem_register(i, src, len, XR_MEM_HOST, 0, XR_ACCESS_NONE, &gs));
    H_OK(xr_mem_register(t, dst, len, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &gd));
    size_t mlen = 0;
    H_CHECK(xr_metadata_get(t, NULL, &mlen) == XR_ETOOSMALL, "size query");
    void *md = malloc(mlen);
    H_OK(xr_metadata_get(t, md, &mlen));
    xr_peer *p;
    H_OK(xr_peer_load(i, md, mlen, &p));
    free(md);
    xr_xfer *x[4];
    for (int k = 0; k < 4; k++) {
        xr_iov l = {(uintptr_t)src + (size_t)k * (len / 4), len / 4};
        xr_iov r = {(uintptr_t)dst + (size_t)k * (len / 4), len / 4};
        H_OK(xr_xfer_create(i, p, XR_OP_WRITE, &l, &r, 1, "done", 4, &x[k]));
        H_OK(xr_xfer_post(x[k]));
    }
    for (int k = 0; k < 100; k++)
        xr_progress(i);
    int in_flight = 0;
    for (int k = 0; k < 4; k++)
        in_flight += xr_xfer_status(x[k]) == XR_EINPROGRESS;
    h_log("%d of 4 transfers in flight at destroy", in_flight);
    for (int k = 0; k < 2; k++) /* released in flight: destroy frees them */
        xr_xfer_release(x[k]);
    double t0 = h_now();
    xr_engine_destroy(i); /* x[2], x[3] are still the application's, and die with it */
    double took = h_now() - t0;
    h_log("destroy took %.2f s", took);
    H_CHECK(took < 30, "destroy took %.1f s", took);
    xr_engine_destroy(t);
    free(src);
    free(dst);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return fprintf(stderr, "usage: %s PROVIDER CASE\n", argv[0]), 2;
    provider = argv[1];
    h_require_provider(provider);
    if (!strcmp(argv[2], "stage_pool"))
        stage_pool();
    else if (!strcmp(argv[2], "mrc_settings"))
        mrc_settings();
    else if (!strcmp(argv[2], "destroy_inflight"))
        destroy_inflight();
    else
        return fprintf(stderr, "unknown case %s\n", argv[2]), 2;
    h_log("ok: %s on %s", argv[2], provider);
    return 0;
}
