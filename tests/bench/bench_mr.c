/*
 * bench_mr.c - what memory registration costs, with the MR cache on and off.
 *
 * The workload is the one NIXL users reported: a model's KV cache as 1265
 * tensors, registered, deregistered and registered again (a server that
 * re-registers on every request, or after a reconfiguration). Two layouts:
 *
 *   pooled    the tensors live in one pool that stays registered, as paged
 *             KV caches do; the cache serves each tensor from the pool's
 *             registration.
 *   separate  each tensor is its own allocation. Deregistration invalidates
 *             (a freed buffer must never be served again), so the cache
 *             cannot help the second registration, and the run shows that.
 *
 * Each pass is timed on the same engine type, cache on and off, in one run;
 * the median of --reps runs is printed. Then the cost of a hit alone: a
 * lookup and release in the cache's index holding one entry per tensor per
 * rail, against a backend that does nothing.
 *
 * Not a test: it checks nothing but that the calls succeed.
 */
#include "mr_cache.h"
#include "xrail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct args {
    const char *provider;
    unsigned rails, buffers, reps;
    size_t size;
} args;

enum { PASS_REG, PASS_DEREG, PASS_REREG, NPASS };
static const char *pass_name[NPASS] = {"register", "deregister", "re-register"};

typedef struct result {
    double ns[NPASS];           /* per operation, median over reps */
    uint64_t regs[NPASS], hits[NPASS];
} result;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "xrail-bench-mr: %s: %s: %s\n", what, xr_strerror(rc),
            xr_engine_last_error(NULL));
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static xr_engine *engine(const args *a, int cache_on)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = "bench-mr";
    o.ignore_env = 1;
    o.mr_cache.enabled = cache_on;
    xr_rail_spec spec = {.provider = a->provider, .count = a->rails};
    if (strstr(a->provider, "tcp"))
        spec.domain = "lo";
    o.rails = &spec;
    o.n_rail_specs = 1;
    xr_engine *e;
    int rc = xr_engine_create(&o, &e);
    if (rc)
        die("engine", rc);
    return e;
}

/* One rep of the three passes over `bufs`; adds each pass's ns/op to ns[]. */
static void passes(xr_engine *e, const args *a, uint8_t **bufs, xr_region **g, double *ns,
                   uint64_t *regs, uint64_t *hits)
{
    for (int p = 0; p < NPASS; p++) {
        xr_mr_cache_stats s0, s1;
        xr_mr_cache_stats_get(e, &s0);
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < a->buffers; i++) {
            int rc = p == PASS_DEREG
                         ? xr_mem_deregister(g[i])
                         : xr_mem_register(e, bufs[i], a->size, XR_MEM_HOST, 0, XR_ACCESS_RW, &g[i]);
            if (rc)
                die(pass_name[p], rc);
        }
        ns[p] = (double)(now_ns() - t0) / a->buffers;
        xr_mr_cache_stats_get(e, &s1);
        regs[p] = s1.registrations - s0.registrations;
        hits[p] = s1.hits - s0.hits;
    }
    for (unsigned i = 0; i < a->buffers; i++)
        xr_mem_deregister(g[i]);
}

static result run(const args *a, int cache_on, int pooled)
{
    xr_engine *e = engine(a, cache_on);
    size_t pool_len = (size_t)a->buffers * a->size;
    uint8_t *pool = NULL, **bufs = calloc(a->buffers, sizeof *bufs);
    xr_region **g = calloc(a->buffers, sizeof *g), *pool_g = NULL;
    if (pooled) {
        pool = aligned_alloc(4096, pool_len);
        memset(pool, 1, pool_len);
        int rc = xr_mem_register(e, pool, pool_len, XR_MEM_HOST, 0, XR_ACCESS_RW, &pool_g);
        if (rc)
            die("pool", rc);
    }
    for (unsigned i = 0; i < a->buffers; i++) {
        bufs[i] = pooled ? pool + (size_t)i * a->size : aligned_alloc(4096, a->size);
        memset(bufs[i], 1, a->size);
    }
    double *ns = calloc((size_t)a->reps * NPASS, sizeof *ns);
    result r;
    memset(&r, 0, sizeof r);
    for (unsigned k = 0; k < a->reps; k++)
        passes(e, a, bufs, g, &ns[k * NPASS], r.regs, r.hits);
    for (int p = 0; p < NPASS; p++) {
        double v[a->reps];
        for (unsigned k = 0; k < a->reps; k++)
            v[k] = ns[k * NPASS + p];
        qsort(v, a->reps, sizeof v[0], cmp_double);
        r.ns[p] = v[a->reps / 2];
    }
    if (pool_g)
        xr_mem_deregister(pool_g);
    xr_engine_destroy(e);
    if (!pooled)
        for (unsigned i = 0; i < a->buffers; i++)
            free(bufs[i]);
    free(pool);
    free(bufs);
    free(g);
    free(ns);
    return r;
}

static int nop_reg(void *ctx, xr_mr_entry *m)
{
    (void)ctx;
    m->key = m->addr;
    return 0;
}

static void nop_dereg(void *ctx, xr_mr_entry *m)
{
    (void)ctx;
    (void)m;
}

/* ns for one hit (get + put) in an index of buffers x rails entries. */
static double hit_ns(const args *a)
{
    xr_mr_backend be = {nop_reg, nop_dereg, NULL};
    xr_mr_cache_opts o = {.enabled = 1, .max_entries = 0, .max_bytes = 0};
    xr_mr_cache c;
    xr__mrc_init(&c, &be, &o);
    const uint64_t base = 1ull << 40, stride = a->size;
    xr_mr_entry *m;
    for (unsigned r = 0; r < a->rails; r++)
        for (unsigned i = 0; i < a->buffers; i++) {
            uint64_t at = base + i * stride;
            xr__mrc_get(&c, r, at, stride, at, stride, 0, XR_MEM_HOST, 0, 0, &m);
            xr__mrc_put(&c, m);
        }
    const unsigned n = 1000000;
    uint64_t rng = 88172645463325252ull, t0 = now_ns();
    for (unsigned k = 0; k < n; k++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        unsigned i = (unsigned)(rng % a->buffers), r = (unsigned)((rng >> 32) % a->rails);
        uint64_t at = base + i * stride + 64;
        if (xr__mrc_get(&c, r, at, 256, at, 256, 0, XR_MEM_HOST, 0, 0, &m) ||
            m->addr != base + i * stride) {
            fprintf(stderr, "xrail-bench-mr: lookup %u missed\n", k);
            exit(1);
        }
        xr__mrc_put(&c, m);
    }
    double ns = (double)(now_ns() - t0) / n;
    xr__mrc_fini(&c);
    return ns;
}

static void usage(void)
{
    fprintf(stderr, "usage: xrail-bench-mr [--provider P] [--rails N] [--buffers N] "
                    "[--size BYTES] [--reps N]\n"
                    "  defaults: tcp;ofi_rxm on lo, 4 rails, 1265 buffers of 65536 bytes, "
                    "5 reps\n");
    exit(2);
}

int main(int argc, char **argv)
{
    args a = {.provider = "tcp;ofi_rxm", .rails = 4, .buffers = 1265, .reps = 5,
              .size = 65536};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(argv[i], "--provider"))
            a.provider = v;
        else if (!strcmp(argv[i], "--rails"))
            a.rails = (unsigned)atoi(v);
        else if (!strcmp(argv[i], "--buffers"))
            a.buffers = (unsigned)atoi(v);
        else if (!strcmp(argv[i], "--size"))
            a.size = (size_t)strtoull(v, NULL, 0);
        else if (!strcmp(argv[i], "--reps"))
            a.reps = (unsigned)atoi(v);
        else
            usage();
        i++;
    }
    if (!a.rails || !a.buffers || !a.reps || a.size < 4096 || a.size % 4096)
        usage();
    printf("# xrail-bench-mr: %u buffers of %zu bytes, %u rails of %s, median of %u reps\n",
           a.buffers, a.size, a.rails, a.provider, a.reps);
    printf("%-9s %-5s %-12s %12s %12s %10s %8s\n", "layout", "cache", "pass", "ns/op",
           "pass ms", "prov.regs", "hits");
    for (int pooled = 1; pooled >= 0; pooled--)
        for (int on = 1; on >= 0; on--) {
            result r = run(&a, on, pooled);
            for (int p = 0; p < NPASS; p++)
                printf("%-9s %-5s %-12s %12.0f %12.3f %10llu %8llu\n",
                       pooled ? "pooled" : "separate", on ? "on" : "off", pass_name[p], r.ns[p],
                       r.ns[p] * a.buffers / 1e6, (unsigned long long)r.regs[p],
                       (unsigned long long)r.hits[p]);
        }
    printf("hit lookup (get+put, %u entries on %u rails): %.0f ns\n", a.buffers * a.rails,
           a.rails, hit_ns(&a));
    return 0;
}
