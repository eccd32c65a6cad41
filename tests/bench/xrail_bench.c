/*
 * xrail_bench.c - bandwidth, latency and post-path cost of xrail transfers
 * between two real processes.
 *
 *   xrail-bench [--op write|read] [--provider P] [--rails N] [--policy FILE]
 *               [--sizes 4k,64k,1M,16M] [--batch 1,8] [--iters N | --duration S]
 *               [--warmup N] [--window N] [--mem host|cuda:D] [--target-mem host|cuda:D]
 *               [--chunk SIZE] [--no-fence] [--host-only]
 *               [--netns PREFIX [--first-rail K] [--speeds MBIT,...]]
 *               [--target-sleep-us N] [--progress-threads N] [--json | --csv] [--raw]
 *
 * One invocation forks: the child is the target (it registers a pool and
 * drives progress with a thread), the parent the initiator. For each block
 * size x batch point, the initiator creates `window` transfers of `batch`
 * descriptors of that size (distinct offsets; a slice of the pool per rail,
 * as --raw has one per endpoint), posts them, and re-posts each
 * as it completes until `iters` transfers are done, after `warmup` more.
 * The target's progress thread polls without napping (--target-sleep-us 0),
 * as the --raw target, fi_pingpong and ucx_perftest do; --target-sleep-us 20
 * shows what the engine's default nap costs. Per point it prints:
 *
 *   GB/s        bytes moved / wall time of the measured transfers
 *   p50, p99    post-to-completion latency of one transfer, in us
 *   post ns/d   CPU time of xr_xfer_create + xr_xfer_post, per descriptor
 *   cpu%        the machine's CPU use (all cores) while it was measured
 *   rail split  bytes each rail moved
 *
 * --netns PREFIX runs the initiator in namespace PREFIX-a and the target in
 * PREFIX-b, rail i over the veth pair PREFIX<K+i> (198.18.i.1 <-> 198.18.i.2)
 * from --first-rail K (default 0), as scripts/netns-rails.sh makes them. On a terminal, a progress bar goes
 * to stderr.
 *
 * Not a test: it checks nothing but that every transfer succeeds. The
 * numbers and how they were taken go in docs/performance.md.
 */
#define _GNU_SOURCE /* setns */
#include "raw.h"
#include "size_arg.h"
#include "xrail.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef XR_BENCH_CUDA
#include <cuda_runtime_api.h>
#endif

#define MAX_POINTS 32
#define MAX_WINDOW 64

/* Where a side's pool lives: host memory, or cudaMalloc on device `dev`. */
typedef struct mem_kind {
    int cuda, dev;
} mem_kind;

typedef struct args {
    xr_op op;
    const char *provider, *policy, *netns;
    mem_kind mem, target_mem;
    unsigned rails, iters, warmup, window, first_rail;
    uint64_t duration_ns; /* --duration: measure for this long (iters is then a cap) */
    int target_sleep_us; /* the target's progress_sleep_us */
    unsigned threads;    /* --progress-threads: both sides' progress threads; 0: the
                            target has one and the initiator's loop drives progress */
    size_t sizes[MAX_POINTS], batches[MAX_POINTS], speeds[XR_MAX_RAILS];
    unsigned nsizes, nbatches, nspeeds;
    size_t chunk; /* --chunk: the engines' chunk_size; 0 the default */
    int json, csv, raw;
    int no_fence; /* --no-fence: ipc_fence off, to see what the fence costs */
    int host_only; /* --host-only: the rails are declared host_only (no FI_HMEM) */
} args;

typedef struct point {
    size_t size, batch;
    unsigned iters; /* measured transfers */
    double busy_pct; /* the whole machine's CPU, all cores, during the measured part */
    double gbps, p50_us, p99_us, create_ns_per_desc, post_ns_per_desc;
    uint64_t rail_bytes[XR_MAX_RAILS];
} point;

static void die(const char *what, int rc)
{
    fprintf(stderr, "xrail-bench: %s: %s: %s\n", what, xr_err_name(rc),
            xr_engine_last_error(NULL));
    exit(1);
}

static uint64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The progress bar on stderr, when stderr is a terminal: which point of the
 * sweep, and how far into it. Redrawn at most every 100 ms. */
static struct {
    bool on;
    unsigned point, npoints;
    uint64_t drawn;
} bar;

static void bar_draw(const args *a, unsigned done, unsigned total, uint64_t t0, size_t size,
                     size_t batch)
{
    uint64_t now = clock_ns(CLOCK_MONOTONIC);
    if (!bar.on || now - bar.drawn < 100000000ull)
        return;
    bar.drawn = now;
    double in = (double)done / total;
    if (a->duration_ns && done >= a->warmup) /* a timed point: how much of its time is gone */
        in = (double)(now - t0) / (double)a->duration_ns;
    double f = ((double)bar.point + (in < 1 ? in : 1)) / bar.npoints;
    char fill[41];
    int k = (int)(f * 40);
    for (int i = 0; i < 40; i++)
        fill[i] = i < k ? '#' : '.';
    fill[40] = 0;
    fprintf(stderr, "\r[%s] %3.0f%%  point %u/%u: %zu B x %zu  ", fill, f * 100, bar.point + 1,
            bar.npoints, size, batch);
}

static void bar_clear(void)
{
    if (bar.on) {
        fprintf(stderr, "\r%*s\r", 79, "");
        fflush(stderr);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Join this side's namespace of --netns before anything opens a socket:
 * libfabric's tcp provider lists the interfaces of the namespace it runs in. */
static void netns_enter(const args *a, char side)
{
    if (!a->netns)
        return;
    char path[160];
    snprintf(path, sizeof path, "/run/netns/%s-%c", a->netns, side);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET)) {
        fprintf(stderr, "xrail-bench: cannot enter %s (scripts/netns-rails.sh up N RATE): %m\n",
                path);
        exit(1);
    }
    close(fd);
}

/* The rail's domain: lo on loopback, the rail's own veth under --netns. */
static void rail_domain(const args *a, unsigned i, char *out, size_t cap)
{
    if (a->netns)
        snprintf(out, cap, "%s%u", a->netns, a->first_rail + i);
    else
        snprintf(out, cap, "%s", strstr(a->provider, "tcp") ? "lo" : "");
}

static xr_engine *engine(const args *a, const char *name, int progress_thread, char side)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.ignore_env = 1;
    o.policy = a->policy;
    o.progress_thread = progress_thread || a->threads;
    o.progress_threads = a->threads;
    o.progress_sleep_us = a->target_sleep_us;
    if (a->chunk)
        o.chunk_size = a->chunk;
    if (a->no_fence)
        o.ipc_fence = 0;
    xr_rail_spec spec[XR_MAX_RAILS];
    char dom[XR_MAX_RAILS][32], src[XR_MAX_RAILS][32];
    if (!a->netns) {
        rail_domain(a, 0, dom[0], sizeof dom[0]);
        spec[0] = (xr_rail_spec){.provider = a->provider, .count = a->rails,
                                 .domain = *dom[0] ? dom[0] : NULL, .host_only = a->host_only};
        o.n_rail_specs = 1;
    } else { /* one spec per veth pair, bound to its address */
        for (unsigned i = 0; i < a->rails; i++) {
            rail_domain(a, i, dom[i], sizeof dom[i]);
            snprintf(src[i], sizeof src[i], "198.18.%u.%d", a->first_rail + i, side == 'a' ? 1 : 2);
            spec[i] = (xr_rail_spec){.provider = a->provider, .count = 1, .domain = dom[i],
                                     .src_addr = src[i]};
            /* A shaped veth reports the link's speed, not the shaper's, so
             * the rates are declared, as an operator declares a NIC's. */
            if (i < a->nspeeds)
                spec[i].speed_mbps = a->speeds[i];
        }
        o.n_rail_specs = a->rails;
    }
    o.rails = spec;
    xr_engine *e;
    int rc = xr_engine_create(&o, &e);
    if (rc)
        die(name, rc);
    return e;
}

static void *pool_alloc(mem_kind m, size_t n, uint8_t fill)
{
    if (!m.cuda) {
        void *p = aligned_alloc(4096, n);
        if (!p)
            exit(1);
        memset(p, fill, n);
        return p;
    }
#ifdef XR_BENCH_CUDA
    void *p = NULL;
    if (cudaSetDevice(m.dev) != cudaSuccess || cudaMalloc(&p, n) != cudaSuccess ||
        cudaMemset(p, fill, n) != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) {
        fprintf(stderr, "xrail-bench: cudaMalloc of %zu bytes on device %d failed\n", n, m.dev);
        exit(1);
    }
    return p;
#else
    fprintf(stderr, "xrail-bench: built without CUDA; --mem cuda:D needs a CUDA build\n");
    exit(1);
#endif
}

static void pool_free(mem_kind m, void *p)
{
#ifdef XR_BENCH_CUDA
    if (m.cuda) {
        cudaFree(p);
        return;
    }
#endif
    (void)m;
    free(p);
}

static xr_region *pool_register(xr_engine *e, mem_kind m, void *p, size_t n, unsigned access)
{
    xr_region *g;
    int rc = xr_mem_register(e, p, n, m.cuda ? XR_MEM_CUDA : XR_MEM_HOST, m.cuda ? m.dev : 0,
                             access, &g);
    if (rc)
        die("registering the pool", rc);
    return g;
}

/* The bytes of one transfer at the largest point. */
static size_t slice_bytes(const args *a)
{
    size_t m = 0;
    for (unsigned i = 0; i < a->nsizes; i++)
        for (unsigned j = 0; j < a->nbatches; j++)
            if (a->sizes[i] * a->batches[j] > m)
                m = a->sizes[i] * a->batches[j];
    return m;
}

/* The pool holds a slice per rail, as --raw holds one per endpoint, and
 * transfer k of the window moves slice k % slices: the working set is
 * raw's, and single-chunk transfers, which take the rails in turn, keep
 * to one slice a rail. With one slice for all, rails' threads wrote the
 * same lines at once on the target, which raw's never do; with one a
 * transfer, a window of 16 MiB transfers left the caches (both measured:
 * docs/performance.md). Past SLICES_MAX_BYTES of pool, slices are shared. */
#define SLICES_MAX_BYTES (256u << 20)

static unsigned pool_slices(const args *a)
{
    size_t n = slice_bytes(a), k = n ? SLICES_MAX_BYTES / n : 1;
    unsigned w = a->window < MAX_WINDOW ? a->window : MAX_WINDOW;
    if (a->rails < w)
        w = a->rails;
    return k < 1 ? 1 : k < w ? (unsigned)k : w;
}

static size_t pool_bytes(const args *a)
{
    return a->raw ? slice_bytes(a) : slice_bytes(a) * pool_slices(a);
}

static void full_write(int fd, const void *p, size_t n)
{
    for (const char *c = p; n;) {
        ssize_t w = write(fd, c, n);
        if (w <= 0)
            exit(1);
        c += w, n -= (size_t)w;
    }
}

static void full_read(int fd, void *p, size_t n)
{
    for (char *c = p; n;) {
        ssize_t r = read(fd, c, n);
        if (r <= 0) {
            fprintf(stderr, "xrail-bench: the other process is gone\n");
            exit(1);
        }
        c += r, n -= (size_t)r;
    }
}

/* --raw target: one endpoint on the pool; it drives its CQ until told to stop. */
/* --raw --rails N: N endpoints, each polled by its own thread on both
 * sides, each over its own slice of the pool. It shows whether the provider
 * lets N endpoints of one process run in parallel, without the engine. */
typedef struct raw_side {
    raw_ep *r;
    _Atomic bool *stop;
} raw_side;

static void *raw_target_thread(void *arg)
{
    raw_side *t = arg;
    void *ctx[64];
    while (!atomic_load(t->stop))
        raw_poll(t->r, ctx, 64); /* software providers move bytes when the target polls */
    return NULL;
}

/* A --raw endpoint over buf, on the domain the bench's first rail uses. */
static raw_ep *raw_open_on(const args *a, void *buf, size_t n)
{
    char dom[32];
    rail_domain(a, 0, dom, sizeof dom);
    return raw_open(a->provider, *dom ? dom : NULL, buf, n);
}

/* --raw target: its endpoints on the pool; each drives its CQ until told to stop. */
static int raw_target(const args *a, int to_parent, int from_parent)
{
    netns_enter(a, 'b');
    size_t n = pool_bytes(a);
    unsigned ne = a->rails;
    char *pool = pool_alloc((mem_kind){0}, n * ne, 0x5a);
    raw_side side[XR_MAX_RAILS];
    pthread_t tid[XR_MAX_RAILS];
    _Atomic bool stop = false;
    for (unsigned k = 0; k < ne; k++) {
        side[k] = (raw_side){raw_open_on(a, pool + k * n, n), &stop};
        uint8_t name[256];
        raw_peer_info pi;
        uint64_t len = raw_name(side[k].r, name, sizeof name, (uintptr_t)(pool + k * n), &pi);
        full_write(to_parent, &len, sizeof len);
        full_write(to_parent, name, len);
        full_write(to_parent, &pi, sizeof pi);
    }
    for (unsigned k = 1; k < ne; k++)
        pthread_create(&tid[k], NULL, raw_target_thread, &side[k]);
    struct pollfd pf = {.fd = from_parent, .events = POLLIN};
    void *ctx[64];
    while (poll(&pf, 1, 0) == 0)
        raw_poll(side[0].r, ctx, 64);
    atomic_store(&stop, true);
    for (unsigned k = 1; k < ne; k++)
        pthread_join(tid[k], NULL);
    for (unsigned k = 0; k < ne; k++)
        raw_close(side[k].r);
    free(pool);
    return 0;
}

/* The target: a pool both ops can use, metadata out, then progress until told. */
static int target(const args *a, int to_parent, int from_parent)
{
    if (a->raw)
        return raw_target(a, to_parent, from_parent);
    netns_enter(a, 'b');
    xr_engine *e = engine(a, "bench-target", 1, 'b');
    size_t n = pool_bytes(a);
    void *pool = pool_alloc(a->target_mem, n, 0x5a);
    xr_region *g = pool_register(e, a->target_mem, pool, n, XR_ACCESS_RW);
    int rc;
    size_t len = 0;
    xr_metadata_get(e, NULL, &len);
    uint8_t *md = malloc(len);
    if ((rc = xr_metadata_get(e, md, &len)))
        die("metadata", rc);
    uint64_t hdr[2] = {len, (uintptr_t)pool};
    full_write(to_parent, hdr, sizeof hdr);
    full_write(to_parent, md, len);
    free(md);
    char done;
    full_read(from_parent, &done, 1); /* the progress thread serves until then */
    xr_mem_deregister(g);
    xr_engine_destroy(e);
    pool_free(a->target_mem, pool);
    return 0;
}

static void rail_bytes(xr_engine *e, uint64_t *out)
{
    for (int i = 0; i < xr_rail_count(e); i++) {
        xr_rail_info ri;
        xr_rail_info_get(e, (unsigned)i, &ri);
        out[i] = ri.counters.tx_bytes;
    }
}

/* The machine's busy and total CPU ticks so far, from /proc/stat (all
 * cores, both processes and the kernel's softirq work): with software
 * providers a point is often bound by CPU, and this says when. */
typedef struct cpu_mark {
    unsigned long long busy, all;
} cpu_mark;

static cpu_mark cpu_now(void)
{
    cpu_mark m = {0, 0};
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                    &v[4], &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            m.all += v[i];
        m.busy = m.all - v[3] - v[4]; /* less idle and iowait */
    }
    if (f)
        fclose(f);
    return m;
}

static double cpu_busy_since(cpu_mark m0)
{
    cpu_mark m1 = cpu_now();
    return m1.all > m0.all ? 100.0 * (double)(m1.busy - m0.busy) / (double)(m1.all - m0.all) : 0;
}

/* Posting stops at `total`, or once the measured part (which starts when
 * the warm-up transfers are done, at t0) has run for --duration. */
static bool may_post(const args *a, unsigned posted, unsigned total, unsigned done, uint64_t t0)
{
    if (posted >= total)
        return false;
    return !a->duration_ns || done < a->warmup || clock_ns(CLOCK_MONOTONIC) - t0 < a->duration_ns;
}

/* GB/s over the measured transfers (lat[warmup..done)), and their p50/p99. */
static void summarize(const args *a, point *pt, uint64_t *lat, unsigned done, uint64_t t0,
                      uint64_t t1, uint64_t post_cpu)
{
    unsigned n = done - a->warmup;
    pt->iters = n;
    double secs = (double)(t1 - t0) / 1e9;
    pt->gbps = secs > 0 ? (double)n * pt->batch * pt->size / secs / 1e9 : 0;
    qsort(lat + a->warmup, n, sizeof *lat, cmp_u64);
    pt->p50_us = n ? (double)lat[a->warmup + n / 2] / 1e3 : 0;
    unsigned i99 = n * 99 / 100;
    pt->p99_us = n ? (double)lat[a->warmup + (i99 < n ? i99 : n - 1)] / 1e3 : 0;
    pt->post_ns_per_desc = done ? (double)post_cpu / ((double)done * pt->batch) : 0;
}

static point measure(const args *a, xr_engine *e, xr_peer *p, void *local, uint64_t remote,
                     size_t size, size_t batch)
{
    point pt = {.size = size, .batch = batch};
    unsigned w = a->window < MAX_WINDOW ? a->window : MAX_WINDOW;
    xr_iov *li = malloc(batch * sizeof *li), *ri = malloc(batch * sizeof *ri);
    /* Each transfer of the window covers its slice of the pool (pool_slices). */
    xr_xfer *x[MAX_WINDOW];
    size_t slice = slice_bytes(a);
    unsigned slices = pool_slices(a);
    uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    for (unsigned k = 0; k < w; k++) {
        size_t off = (k % slices) * slice;
        for (size_t d = 0; d < batch; d++) {
            li[d] = (xr_iov){(uintptr_t)local + off + d * size, size};
            ri[d] = (xr_iov){remote + off + d * size, size};
        }
        int rc = xr_xfer_create(e, p, a->op, li, ri, batch, NULL, 0, &x[k]);
        if (rc)
            die("xr_xfer_create", rc);
    }
    pt.create_ns_per_desc = (double)(clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / (w * batch);

    unsigned total = a->warmup + a->iters, posted = 0, done = 0;
    uint64_t *lat = calloc(total, sizeof *lat), start[MAX_WINDOW], post_cpu = 0, t0 = 0, t1 = 0;
    uint64_t before[XR_MAX_RAILS] = {0}, after[XR_MAX_RAILS] = {0};
    bool busy[MAX_WINDOW] = {false};
    cpu_mark cpu0 = {0, 0};
    if (!a->warmup) {
        t0 = clock_ns(CLOCK_MONOTONIC);
        rail_bytes(e, before);
        cpu0 = cpu_now();
    }
    /* Each slot is reaped before it is posted, so a transfer seen complete
     * is posted again at once, as the raw loop does (measure_raw). */
    for (unsigned k = 0;; k = (k + 1) % w) {
        int s = busy[k] ? xr_xfer_status(x[k]) : XR_EINPROGRESS;
        if (s != XR_EINPROGRESS) {
            if (s)
                die(xr_xfer_error(x[k]), s);
            uint64_t now = clock_ns(CLOCK_MONOTONIC);
            busy[k] = false;
            lat[done++] = now - start[k];
            bar_draw(a, done, total, t0, size, batch);
            t1 = now;
            if (done == a->warmup) { /* the measured part starts here */
                t0 = now;
                rail_bytes(e, before);
                cpu0 = cpu_now();
            }
        }
        if (!busy[k] && may_post(a, posted, total, done, t0)) {
            start[k] = clock_ns(CLOCK_MONOTONIC);
            uint64_t c = clock_ns(CLOCK_THREAD_CPUTIME_ID);
            int rc = xr_xfer_post(x[k]);
            post_cpu += clock_ns(CLOCK_THREAD_CPUTIME_ID) - c;
            if (rc)
                die("xr_xfer_post", rc);
            busy[k] = true;
            posted++;
        }
        if (done == posted && !may_post(a, posted, total, done, t0))
            break;
        if (k == w - 1 && !a->threads)
            xr_progress(e);
    }
    rail_bytes(e, after);
    pt.busy_pct = cpu_busy_since(cpu0);
    for (unsigned k = 0; k < w; k++)
        xr_xfer_release(x[k]);
    summarize(a, &pt, lat, done, t0, t1, post_cpu);
    for (int i = 0; i < xr_rail_count(e); i++)
        pt.rail_bytes[i] = after[i] - before[i];
    free(lat);
    free(li);
    free(ri);
    return pt;
}

/* The window of --raw transfers: what is left of each, and the results. */
typedef struct raw_run {
    const args *a;
    raw_ep *r;
    size_t left[MAX_WINDOW];
    uint64_t start[MAX_WINDOW], *lat, t0, t1;
    unsigned done, warmup, total;
    size_t size, batch;
    cpu_mark cpu0;
} raw_run;

static void raw_finish(raw_run *q, unsigned k)
{
    uint64_t now = clock_ns(CLOCK_MONOTONIC);
    q->lat[q->done++] = now - q->start[k];
    q->t1 = now;
    bar_draw(q->a, q->done, q->total, q->t0, q->size, q->batch);
    if (q->done == q->warmup)
        q->t0 = now, q->cpu0 = cpu_now();
}

/* Count completions; a transfer is done when its last operation is. */
static void raw_reap(raw_run *q)
{
    void *ctx[64];
    int n = raw_poll(q->r, ctx, 64);
    for (int i = 0; i < n; i++) {
        unsigned k = ((raw_op *)ctx[i])->slot;
        if (!--q->left[k])
            raw_finish(q, k);
    }
}

/* The same window of transfers as measure(), as plain fi_write/fi_read. */
static point measure_raw(const args *a, raw_ep *r, const raw_peer_info *pi, void *local,
                         size_t size, size_t batch)
{
    point pt = {.size = size, .batch = batch};
    if (size > raw_max_msg(r)) {
        fprintf(stderr, "xrail-bench --raw: %zu bytes exceed the provider's %zu\n", size,
                raw_max_msg(r));
        exit(1);
    }
    unsigned w = a->window < MAX_WINDOW ? a->window : MAX_WINDOW;
    unsigned total = a->warmup + a->iters, posted = 0;
    raw_op *ops = calloc((size_t)w * batch, sizeof *ops);
    raw_run q = {.a = a, .r = r, .lat = calloc(total, sizeof(uint64_t)), .warmup = a->warmup,
                 .total = total, .size = size, .batch = batch};
    uint64_t post_cpu = 0;
    if (!a->warmup)
        q.t0 = clock_ns(CLOCK_MONOTONIC), q.cpu0 = cpu_now();
    for (;;) {
        if (q.done == posted && !may_post(a, posted, total, q.done, q.t0))
            break;
        for (unsigned k = 0; k < w && may_post(a, posted, total, q.done, q.t0); k++) {
            if (q.left[k])
                continue;
            q.start[k] = clock_ns(CLOCK_MONOTONIC);
            /* Held at 1 while posting, so an early completion cannot end it. */
            q.left[k] = 1;
            for (size_t d = 0; d < batch;) {
                raw_op *op = &ops[(size_t)k * batch + d];
                op->slot = k;
                uint64_t c = clock_ns(CLOCK_THREAD_CPUTIME_ID);
                int again = raw_post(r, a->op == XR_OP_WRITE, (char *)local + d * size, size,
                                     pi->base + d * size, pi->key, op);
                post_cpu += clock_ns(CLOCK_THREAD_CPUTIME_ID) - c;
                if (again) {
                    raw_reap(&q); /* the provider is full: make room */
                    continue;
                }
                q.left[k]++;
                d++;
            }
            if (!--q.left[k])
                raw_finish(&q, k);
            posted++;
        }
        raw_reap(&q);
    }
    pt.busy_pct = cpu_busy_since(q.cpu0);
    summarize(a, &pt, q.lat, q.done, q.t0, q.t1, post_cpu);
    pt.rail_bytes[0] = (uint64_t)pt.iters * batch * size;
    free(q.lat);
    free(ops);
    return pt;
}

static void print_point(const args *a, const point *pt, int nrails, bool first)
{
    const char *op = a->op == XR_OP_WRITE ? "write" : "read";
    if (a->json) {
        printf("%s  {\"mode\": \"%s\", \"op\": \"%s\", \"provider\": \"%s\", \"rails\": %d, \"policy\": \"%s\", "
               "\"size\": %zu, \"batch\": %zu, \"iters\": %u, \"gbps\": %.4f, \"p50_us\": %.2f, "
               "\"p99_us\": %.2f, \"create_ns_per_desc\": %.1f, \"post_ns_per_desc\": %.1f, "
               "\"cpu_busy_pct\": %.0f, \"rail_bytes\": [",
               first ? "" : ",\n", a->raw ? "raw" : "xrail", op, a->provider, nrails, a->policy ? a->policy : "built-in",
               pt->size, pt->batch, pt->iters, pt->gbps, pt->p50_us, pt->p99_us,
               pt->create_ns_per_desc, pt->post_ns_per_desc, pt->busy_pct);
        for (int i = 0; i < nrails; i++)
            printf("%s%llu", i ? ", " : "", (unsigned long long)pt->rail_bytes[i]);
        printf("]}");
        return;
    }
    if (a->csv) {
        if (first)
            printf("mode,op,provider,rails,policy,size,batch,iters,gbps,p50_us,p99_us,create_ns_per_desc,"
                   "post_ns_per_desc,cpu_busy_pct,rail_bytes\n");
        printf("%s,%s,%s,%d,%s,%zu,%zu,%u,%.4f,%.2f,%.2f,%.1f,%.1f,%.0f,", a->raw ? "raw" : "xrail", op,
               a->provider, nrails,
               a->policy ? a->policy : "built-in", pt->size, pt->batch, pt->iters, pt->gbps, pt->p50_us,
               pt->p99_us, pt->create_ns_per_desc, pt->post_ns_per_desc, pt->busy_pct);
        for (int i = 0; i < nrails; i++)
            printf("%s%llu", i ? ";" : "", (unsigned long long)pt->rail_bytes[i]);
        printf("\n");
        return;
    }
    if (first)
        printf("%-10s %6s %9s %10s %10s %10s %10s %5s  %s\n", "size", "batch", "GB/s", "p50 us",
               "p99 us", "create/d", "post/d", "cpu%", "rail split (% of bytes)");
    uint64_t sum = 0;
    for (int i = 0; i < nrails; i++)
        sum += pt->rail_bytes[i];
    char sz[32];
    if (pt->size >= (1u << 20) && pt->size % (1u << 20) == 0)
        snprintf(sz, sizeof sz, "%zuM", pt->size >> 20);
    else if (pt->size >= 1024 && pt->size % 1024 == 0)
        snprintf(sz, sizeof sz, "%zuk", pt->size >> 10);
    else
        snprintf(sz, sizeof sz, "%zu", pt->size);
    printf("%-10s %6zu %9.3f %10.1f %10.1f %9.0fn %9.0fn %5.0f ", sz, pt->batch, pt->gbps,
           pt->p50_us, pt->p99_us, pt->create_ns_per_desc, pt->post_ns_per_desc, pt->busy_pct);
    for (int i = 0; i < nrails; i++)
        printf(" %.0f", sum ? 100.0 * (double)pt->rail_bytes[i] / (double)sum : 0.0);
    printf("\n");
}

static unsigned parse_list(const char *s, size_t *out)
{
    unsigned n = 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save, *t = strtok_r(buf, ",", &save); t && n < MAX_POINTS;
         t = strtok_r(NULL, ",", &save))
        if (!(out[n++] = size_arg(t)))
            return 0;
    return n;
}

/* "200 iterations" or "2.0 s" a point, for the header. */
static const char *amount(const args *a)
{
    static char buf[48];
    if (a->duration_ns)
        snprintf(buf, sizeof buf, "%.1f s a point", (double)a->duration_ns / 1e9);
    else
        snprintf(buf, sizeof buf, "%u iterations", a->iters);
    return buf;
}

/* host, or cuda:D */
static int parse_mem(const char *s, mem_kind *m)
{
    if (!strcmp(s, "host")) {
        *m = (mem_kind){0};
        return 1;
    }
    char *end;
    if (strncmp(s, "cuda:", 5) || !s[5])
        return 0;
    long d = strtol(s + 5, &end, 10);
    if (*end || d < 0 || d > 255)
        return 0;
    *m = (mem_kind){.cuda = 1, .dev = (int)d};
    return 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: xrail-bench [--op write|read] [--provider P] [--rails N] [--policy FILE]\n"
            "                   [--sizes 4k,64k,1M,16M] [--batch 1,8] [--iters N | --duration S]\n"
            "                   [--warmup N] [--window N] [--mem host|cuda:D] [--target-mem host|cuda:D]\n"
            "                   [--chunk SIZE] [--no-fence] [--host-only]\n"
            "                   [--netns PREFIX [--first-rail K] [--speeds MBIT,...]]\n"
            "                   [--target-sleep-us N] [--progress-threads N]\n"
            "                   [--json | --csv] [--raw]\n"
            "  defaults: write, tcp;ofi_rxm on lo, 1 rail, built-in policy, sizes 4k..16M,\n"
            "  batch 1, 200 iterations after 20 warm-up, 4 transfers in flight, host memory\n"
            "  --duration S: each point runs S seconds after its warm-up (--iters caps it)\n"
            "  --raw: the same transfers as plain fi_write/fi_read on one endpoint, no engine;\n"
            "         --raw --rails N: N endpoints, a thread each on both sides, all at once\n"
            "  --netns P: initiator in P-a, target in P-b, rail i over veth P<i>\n"
            "             (scripts/netns-rails.sh); --first-rail K starts at veth P<K>;\n"
            "             --speeds declares each rail's Mbit/s\n"
            "  --target-sleep-us N: the target's progress_sleep_us (default 0: never naps)\n"
            "  --no-fence: no fence after CUDA IPC copies (ipc_fence 0): what it costs\n"
            "  --host-only: rails declared host_only (never FI_HMEM: shm keeps CMA)\n"
            "  --progress-threads N: N progress threads on each side, sharing the rails\n"
            "             (default: one on the target; the initiator's loop drives its own)\n");
    exit(2);
}

/* One endpoint's share of a --raw point, run on its own thread. */
typedef struct raw_job {
    const args *a;
    raw_ep *r;
    raw_peer_info pi;
    char *local;
    size_t size, batch;
    point pt;
} raw_job;

static void *raw_job_run(void *arg)
{
    raw_job *j = arg;
    j->pt = measure_raw(j->a, j->r, &j->pi, j->local, j->size, j->batch);
    return NULL;
}

/* --raw initiator: its endpoints, the target's addresses and keys, the
 * sweep. With N endpoints, N threads each run the whole window on their
 * own endpoint at once: GB/s and bytes add up, latencies are endpoint 0's. */
static int raw_initiator(const args *a, int from_target, int to_target, pid_t pid)
{
    size_t n = pool_bytes(a);
    unsigned ne = a->rails;
    char *local = pool_alloc((mem_kind){0}, n * ne, 0xa5);
    raw_job job[XR_MAX_RAILS];
    for (unsigned k = 0; k < ne; k++) {
        uint64_t len;
        uint8_t name[256];
        full_read(from_target, &len, sizeof len);
        if (len > sizeof name)
            return fprintf(stderr, "xrail-bench --raw: address of %llu bytes\n",
                           (unsigned long long)len), 1;
        full_read(from_target, name, len);
        job[k] = (raw_job){.a = a, .local = local + k * n};
        full_read(from_target, &job[k].pi, sizeof job[k].pi);
        job[k].r = raw_open_on(a, job[k].local, n);
        raw_connect(job[k].r, name);
    }
    if (!a->json && !a->csv)
        printf("# xrail-bench --raw: %s, plain fi_%s on %u %s endpoint(s), a thread each, no "
               "engine, %s after %u warm-up, %u in flight each\n",
               a->op == XR_OP_WRITE ? "WRITE" : "READ", a->op == XR_OP_WRITE ? "write" : "read",
               ne, a->provider, amount(a), a->warmup, a->window);
    if (a->json)
        printf("[\n");
    bool first = true;
    for (unsigned s = 0; s < a->nsizes; s++)
        for (unsigned b = 0; b < a->nbatches; b++) {
            pthread_t tid[XR_MAX_RAILS];
            for (unsigned k = 0; k < ne; k++) {
                job[k].size = a->sizes[s], job[k].batch = a->batches[b];
                if (k)
                    pthread_create(&tid[k], NULL, raw_job_run, &job[k]);
            }
            raw_job_run(&job[0]);
            point pt = job[0].pt;
            for (unsigned k = 1; k < ne; k++) {
                pthread_join(tid[k], NULL);
                pt.gbps += job[k].pt.gbps;
                pt.rail_bytes[k] = job[k].pt.rail_bytes[0];
            }
            bar_clear(); /* the bar and the table may share a terminal */
            print_point(a, &pt, (int)ne, first);
            bar.point++;
            first = false;
            fflush(stdout);
        }
    bar_clear();
    if (a->json)
        printf("\n]\n");
    full_write(to_target, "x", 1);
    int st = 0;
    waitpid(pid, &st, 0);
    for (unsigned k = 0; k < ne; k++)
        raw_close(job[k].r);
    free(local);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    args a = {.op = XR_OP_WRITE, .provider = "tcp;ofi_rxm", .rails = 1, .iters = 200,
              .warmup = 20, .window = 4};
    a.nsizes = parse_list("4k,64k,1M,16M", a.sizes);
    a.nbatches = parse_list("1", a.batches);
    int iters_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--json"))
            a.json = 1;
        else if (!strcmp(o, "--csv"))
            a.csv = 1;
        else if (!strcmp(o, "--raw"))
            a.raw = 1;
        else if (!strcmp(o, "--no-fence"))
            a.no_fence = 1;
        else if (!strcmp(o, "--host-only"))
            a.host_only = 1;
        else if (!v)
            usage();
        else if (!strcmp(o, "--op") && (!strcmp(v, "write") || !strcmp(v, "read")))
            a.op = strcmp(v, "write") ? XR_OP_READ : XR_OP_WRITE, i++;
        else if (!strcmp(o, "--provider"))
            a.provider = v, i++;
        else if (!strcmp(o, "--policy"))
            a.policy = v, i++;
        else if (!strcmp(o, "--rails"))
            a.rails = (unsigned)atoi(v), i++;
        else if (!strcmp(o, "--iters"))
            a.iters = (unsigned)atoi(v), iters_given = 1, i++;
        else if (!strcmp(o, "--warmup"))
            a.warmup = (unsigned)atoi(v), i++;
        else if (!strcmp(o, "--window"))
            a.window = (unsigned)atoi(v), i++;
        else if (!strcmp(o, "--sizes"))
            a.nsizes = parse_list(v, a.sizes), i++;
        else if (!strcmp(o, "--batch"))
            a.nbatches = parse_list(v, a.batches), i++;
        else if (!strcmp(o, "--chunk") && (a.chunk = size_arg(v)))
            i++;
        else if (!strcmp(o, "--speeds"))
            a.nspeeds = parse_list(v, a.speeds), i++;
        else if (!strcmp(o, "--duration"))
            a.duration_ns = (uint64_t)(atof(v) * 1e9), i++;
        else if (!strcmp(o, "--progress-threads"))
            a.threads = (unsigned)atoi(v), i++;
        else if (!strcmp(o, "--target-sleep-us"))
            a.target_sleep_us = atoi(v), i++;
        else if (!strcmp(o, "--first-rail"))
            a.first_rail = (unsigned)atoi(v), i++;
        else if (!strcmp(o, "--netns"))
            a.netns = v, i++;
        else if (!strcmp(o, "--mem") && parse_mem(v, &a.mem))
            i++;
        else if (!strcmp(o, "--target-mem") && parse_mem(v, &a.target_mem))
            i++;
        else
            usage();
    }
    if (!a.rails || !a.iters || !a.window || a.window > MAX_WINDOW || !a.nsizes || !a.nbatches ||
        (a.json && a.csv) || a.rails > XR_MAX_RAILS || (a.netns && strlen(a.netns) > 12))
        usage();
    if (a.raw && (a.mem.cuda || a.target_mem.cuda)) {
        fprintf(stderr, "xrail-bench: --raw moves host memory only\n");
        return 2;
    }
    if (a.duration_ns && !iters_given)
        a.iters = 1000000; /* the clock decides */
    bar.on = isatty(2) && !(a.raw && a.rails > 1); /* one bar, not one a thread */
    bar.npoints = a.nsizes * a.nbatches;

    int up[2], down[2];
    if (pipe(up) || pipe(down))
        return perror("pipe"), 1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(up[0]);
        close(down[1]);
        exit(target(&a, up[1], down[0]));
    }
    close(up[1]);
    close(down[0]);
    netns_enter(&a, 'a');
    if (a.raw)
        return raw_initiator(&a, up[0], down[1], pid);
    uint64_t hdr[2];
    full_read(up[0], hdr, sizeof hdr);
    uint8_t *md = malloc(hdr[0]);
    full_read(up[0], md, hdr[0]);
    xr_engine *e = engine(&a, "bench-initiator", 0, 'a');
    xr_peer *p;
    int rc = xr_peer_load(e, md, hdr[0], &p);
    if (rc)
        die("xr_peer_load", rc);
    free(md);
    size_t n = pool_bytes(&a);
    void *local = pool_alloc(a.mem, n, 0xa5);
    xr_region *g = pool_register(e, a.mem, local, n, XR_ACCESS_NONE);
    if (!a.json && !a.csv)
        printf("# xrail-bench: %s, %u rail(s) of %s, policy %s, %s after %u warm-up, %u in "
               "flight, target naps %d us, %u progress thread(s) a side\n",
               a.op == XR_OP_WRITE ? "WRITE" : "READ", a.rails, a.provider,
               a.policy ? a.policy : "built-in", amount(&a), a.warmup, a.window, a.target_sleep_us,
               a.threads);
    if (a.json)
        printf("[\n");
    bool first = true;
    for (unsigned s = 0; s < a.nsizes; s++)
        for (unsigned b = 0; b < a.nbatches; b++) {
            point pt = measure(&a, e, p, local, hdr[1], a.sizes[s], a.batches[b]);
            bar_clear(); /* the bar and the table may share a terminal */
            print_point(&a, &pt, xr_rail_count(e), first);
            bar.point++;
            first = false;
            fflush(stdout);
        }
    bar_clear();
    if (a.json)
        printf("\n]\n");
    /* Device memory goes to the rails directly (FI_HMEM) or through host
     * bounce slots; say which this run took. */
    uint64_t staged = 0, chunks = 0;
    int hmem = xr_rail_count(e) > 0;
    for (int i = 0; i < xr_rail_count(e); i++) {
        xr_rail_info ri;
        xr_rail_info_get(e, (unsigned)i, &ri);
        staged += ri.counters.staged;
        chunks += ri.counters.chunks;
        hmem = hmem && ri.hmem;
    }
    if (!a.json && !a.csv)
        printf("# %llu of %llu chunks staged through host bounce slots; rails %s device memory\n",
               (unsigned long long)staged, (unsigned long long)chunks,
               hmem ? "register" : "stage");
    full_write(down[1], "x", 1);
    int st = 0;
    waitpid(pid, &st, 0);
    xr_mem_deregister(g);
    xr_peer_unload(p);
    xr_engine_destroy(e);
    pool_free(a.mem, local);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
