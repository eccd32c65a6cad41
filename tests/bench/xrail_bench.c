/*
 * xrail_bench.c - bandwidth, latency and post-path cost of xrail transfers
 * between two real processes.
 *
 *   xrail-bench [--op write|read] [--provider P] [--rails N] [--policy FILE]
 *               [--sizes 4k,64k,1M,16M] [--batch 1,8] [--iters N] [--warmup N]
 *               [--window N] [--json | --csv]
 *
 * One invocation forks: the child is the target (it registers a pool and
 * drives progress with a thread), the parent the initiator. For each block
 * size x batch point, the initiator creates `window` transfers of `batch`
 * descriptors of that size (distinct offsets), posts them, and re-posts each
 * as it completes until `iters` transfers are done, after `warmup` more.
 * Per point it prints:
 *
 *   GB/s        bytes moved / wall time of the measured transfers
 *   p50, p99    post-to-completion latency of one transfer, in us
 *   post ns/d   CPU time of xr_xfer_create + xr_xfer_post, per descriptor
 *   rail split  bytes each rail moved
 *
 * Not a test: it checks nothing but that every transfer succeeds. The
 * numbers and how they were taken go in docs/performance.md.
 */
#include "raw.h"
#include "xrail.h"

#include <poll.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_POINTS 32
#define MAX_WINDOW 64

typedef struct args {
    xr_op op;
    const char *provider, *policy;
    unsigned rails, iters, warmup, window;
    size_t sizes[MAX_POINTS], batches[MAX_POINTS];
    unsigned nsizes, nbatches;
    int json, csv, raw;
} args;

typedef struct point {
    size_t size, batch;
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

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static xr_engine *engine(const args *a, const char *name, int progress_thread)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.ignore_env = 1;
    o.policy = a->policy;
    o.progress_thread = progress_thread;
    xr_rail_spec spec = {.provider = a->provider, .count = a->rails,
                         .domain = strstr(a->provider, "tcp") ? "lo" : NULL};
    o.rails = &spec;
    o.n_rail_specs = 1;
    xr_engine *e;
    int rc = xr_engine_create(&o, &e);
    if (rc)
        die(name, rc);
    return e;
}

static size_t pool_bytes(const args *a)
{
    size_t m = 0;
    for (unsigned i = 0; i < a->nsizes; i++)
        for (unsigned j = 0; j < a->nbatches; j++)
            if (a->sizes[i] * a->batches[j] > m)
                m = a->sizes[i] * a->batches[j];
    return m;
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
static int raw_target(const args *a, int to_parent, int from_parent)
{
    size_t n = pool_bytes(a);
    void *pool = aligned_alloc(4096, n);
    memset(pool, 0x5a, n);
    raw_ep *r = raw_open(a->provider, pool, n);
    uint8_t name[256];
    raw_peer_info pi;
    uint64_t len = raw_name(r, name, sizeof name, (uintptr_t)pool, &pi);
    full_write(to_parent, &len, sizeof len);
    full_write(to_parent, name, len);
    full_write(to_parent, &pi, sizeof pi);
    struct pollfd pf = {.fd = from_parent, .events = POLLIN};
    void *ctx[64];
    while (poll(&pf, 1, 0) == 0)
        raw_poll(r, ctx, 64); /* software providers move bytes when the target polls */
    raw_close(r);
    free(pool);
    return 0;
}

/* The target: a pool both ops can use, metadata out, then progress until told. */
static int target(const args *a, int to_parent, int from_parent)
{
    if (a->raw)
        return raw_target(a, to_parent, from_parent);
    xr_engine *e = engine(a, "bench-target", 1);
    size_t n = pool_bytes(a);
    void *pool = aligned_alloc(4096, n);
    memset(pool, 0x5a, n);
    xr_region *g;
    int rc = xr_mem_register(e, pool, n, XR_MEM_HOST, 0, XR_ACCESS_RW, &g);
    if (rc)
        die("target pool", rc);
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
    free(pool);
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

static point measure(const args *a, xr_engine *e, xr_peer *p, void *local, uint64_t remote,
                     size_t size, size_t batch)
{
    point pt = {.size = size, .batch = batch};
    unsigned w = a->window < MAX_WINDOW ? a->window : MAX_WINDOW;
    xr_iov *li = malloc(batch * sizeof *li), *ri = malloc(batch * sizeof *ri);
    for (size_t d = 0; d < batch; d++) {
        li[d] = (xr_iov){(uintptr_t)local + d * size, size};
        ri[d] = (xr_iov){remote + d * size, size};
    }
    /* Every transfer of the window covers the same bytes: the point is the
     * engine and the wire, not distinct data. */
    xr_xfer *x[MAX_WINDOW];
    uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    for (unsigned k = 0; k < w; k++) {
        int rc = xr_xfer_create(e, p, a->op, li, ri, batch, NULL, 0, &x[k]);
        if (rc)
            die("xr_xfer_create", rc);
    }
    pt.create_ns_per_desc = (double)(clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / (w * batch);

    unsigned total = a->warmup + a->iters, posted = 0, done = 0;
    uint64_t *lat = calloc(total, sizeof *lat), start[MAX_WINDOW], post_cpu = 0, t0 = 0, t1 = 0;
    uint64_t before[XR_MAX_RAILS] = {0}, after[XR_MAX_RAILS] = {0};
    bool busy[MAX_WINDOW] = {false};
    if (!a->warmup) {
        t0 = clock_ns(CLOCK_MONOTONIC);
        rail_bytes(e, before);
    }
    for (unsigned k = 0;; k = (k + 1) % w) {
        if (!busy[k] && posted < total) {
            start[k] = clock_ns(CLOCK_MONOTONIC);
            uint64_t c = clock_ns(CLOCK_THREAD_CPUTIME_ID);
            int rc = xr_xfer_post(x[k]);
            post_cpu += clock_ns(CLOCK_THREAD_CPUTIME_ID) - c;
            if (rc)
                die("xr_xfer_post", rc);
            busy[k] = true;
            posted++;
        }
        if (done == total)
            break;
        if (k == w - 1)
            xr_progress(e);
        if (!busy[k])
            continue;
        int s = xr_xfer_status(x[k]);
        if (s == XR_EINPROGRESS)
            continue;
        if (s)
            die(xr_xfer_error(x[k]), s);
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        busy[k] = false;
        lat[done++] = now - start[k];
        t1 = now;
        if (done == a->warmup) { /* the measured part starts here */
            t0 = now;
            rail_bytes(e, before);
        }
    }
    rail_bytes(e, after);
    for (unsigned k = 0; k < w; k++)
        xr_xfer_release(x[k]);
    double secs = (double)(t1 - t0) / 1e9;
    pt.gbps = secs > 0 ? (double)a->iters * batch * size / secs / 1e9 : 0;
    qsort(lat + a->warmup, a->iters, sizeof *lat, cmp_u64);
    pt.p50_us = (double)lat[a->warmup + a->iters / 2] / 1e3;
    unsigned i99 = a->iters * 99 / 100;
    pt.p99_us = (double)lat[a->warmup + (i99 < a->iters ? i99 : a->iters - 1)] / 1e3;
    pt.post_ns_per_desc = (double)post_cpu / ((double)total * batch);
    for (int i = 0; i < xr_rail_count(e); i++)
        pt.rail_bytes[i] = after[i] - before[i];
    free(lat);
    free(li);
    free(ri);
    return pt;
}

/* The window of --raw transfers: what is left of each, and the results. */
typedef struct raw_run {
    raw_ep *r;
    size_t left[MAX_WINDOW];
    uint64_t start[MAX_WINDOW], *lat, t0, t1;
    unsigned done, warmup;
} raw_run;

static void raw_finish(raw_run *q, unsigned k)
{
    uint64_t now = clock_ns(CLOCK_MONOTONIC);
    q->lat[q->done++] = now - q->start[k];
    q->t1 = now;
    if (q->done == q->warmup)
        q->t0 = now;
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
    raw_run q = {.r = r, .lat = calloc(total, sizeof(uint64_t)), .warmup = a->warmup};
    uint64_t post_cpu = 0;
    if (!a->warmup)
        q.t0 = clock_ns(CLOCK_MONOTONIC);
    while (q.done < total) {
        for (unsigned k = 0; k < w && posted < total; k++) {
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
    double secs = (double)(q.t1 - q.t0) / 1e9;
    pt.gbps = secs > 0 ? (double)a->iters * batch * size / secs / 1e9 : 0;
    qsort(q.lat + a->warmup, a->iters, sizeof *q.lat, cmp_u64);
    pt.p50_us = (double)q.lat[a->warmup + a->iters / 2] / 1e3;
    unsigned i99 = a->iters * 99 / 100;
    pt.p99_us = (double)q.lat[a->warmup + (i99 < a->iters ? i99 : a->iters - 1)] / 1e3;
    pt.post_ns_per_desc = (double)post_cpu / ((double)total * batch);
    pt.rail_bytes[0] = (uint64_t)a->iters * batch * size;
    free(q.lat);
    free(ops);
    return pt;
}

static void print_point(const args *a, const point *pt, int nrails, bool first)
{
    const char *op = a->op == XR_OP_WRITE ? "write" : "read";
    if (a->json) {
        printf("%s  {\"op\": \"%s\", \"provider\": \"%s\", \"rails\": %d, \"policy\": \"%s\", "
               "\"size\": %zu, \"batch\": %zu, \"gbps\": %.4f, \"p50_us\": %.2f, "
               "\"p99_us\": %.2f, \"create_ns_per_desc\": %.1f, \"post_ns_per_desc\": %.1f, "
               "\"rail_bytes\": [",
               first ? "" : ",\n", op, a->provider, nrails, a->policy ? a->policy : "built-in",
               pt->size, pt->batch, pt->gbps, pt->p50_us, pt->p99_us, pt->create_ns_per_desc,
               pt->post_ns_per_desc);
        for (int i = 0; i < nrails; i++)
            printf("%s%llu", i ? ", " : "", (unsigned long long)pt->rail_bytes[i]);
        printf("]}");
        return;
    }
    if (a->csv) {
        if (first)
            printf("op,provider,rails,policy,size,batch,gbps,p50_us,p99_us,create_ns_per_desc,"
                   "post_ns_per_desc,rail_bytes\n");
        printf("%s,%s,%d,%s,%zu,%zu,%.4f,%.2f,%.2f,%.1f,%.1f,", op, a->provider, nrails,
               a->policy ? a->policy : "built-in", pt->size, pt->batch, pt->gbps, pt->p50_us,
               pt->p99_us, pt->create_ns_per_desc, pt->post_ns_per_desc);
        for (int i = 0; i < nrails; i++)
            printf("%s%llu", i ? ";" : "", (unsigned long long)pt->rail_bytes[i]);
        printf("\n");
        return;
    }
    if (first)
        printf("%-10s %6s %9s %10s %10s %10s %10s  %s\n", "size", "batch", "GB/s", "p50 us",
               "p99 us", "create/d", "post/d", "rail split (% of bytes)");
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
    printf("%-10s %6zu %9.3f %10.1f %10.1f %9.0fn %9.0fn ", sz, pt->batch, pt->gbps, pt->p50_us,
           pt->p99_us, pt->create_ns_per_desc, pt->post_ns_per_desc);
    for (int i = 0; i < nrails; i++)
        printf(" %.0f", sum ? 100.0 * (double)pt->rail_bytes[i] / (double)sum : 0.0);
    printf("\n");
}

static size_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end == 'k' || *end == 'K')
        v *= 1024;
    else if (*end == 'm' || *end == 'M')
        v *= 1024 * 1024;
    else if (*end == 'g' || *end == 'G')
        v *= 1024.0 * 1024 * 1024;
    else if (*end)
        return 0;
    return (size_t)v;
}

static unsigned parse_list(const char *s, size_t *out)
{
    unsigned n = 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save, *t = strtok_r(buf, ",", &save); t && n < MAX_POINTS;
         t = strtok_r(NULL, ",", &save))
        if (!(out[n++] = parse_size(t)))
            return 0;
    return n;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: xrail-bench [--op write|read] [--provider P] [--rails N] [--policy FILE]\n"
            "                   [--sizes 4k,64k,1M,16M] [--batch 1,8] [--iters N] [--warmup N]\n"
            "                   [--window N] [--json | --csv] [--raw]\n"
            "  defaults: write, tcp;ofi_rxm on lo, 1 rail, built-in policy, sizes 4k..16M,\n"
            "  batch 1, 200 iterations after 20 warm-up, 4 transfers in flight\n"
            "  --raw: the same transfers as plain fi_write/fi_read on one endpoint, no engine\n");
    exit(2);
}

/* --raw initiator: one endpoint, the target's address and key, the sweep. */
static int raw_initiator(const args *a, int from_target, int to_target, pid_t pid)
{
    uint64_t len;
    uint8_t name[256];
    raw_peer_info pi;
    full_read(from_target, &len, sizeof len);
    if (len > sizeof name)
        return fprintf(stderr, "xrail-bench --raw: address of %llu bytes\n",
                       (unsigned long long)len), 1;
    full_read(from_target, name, len);
    full_read(from_target, &pi, sizeof pi);
    size_t n = pool_bytes(a);
    void *local = aligned_alloc(4096, n);
    memset(local, 0xa5, n);
    raw_ep *r = raw_open(a->provider, local, n);
    raw_connect(r, name);
    if (!a->json && !a->csv)
        printf("# xrail-bench --raw: %s, plain fi_%s on one %s endpoint, no engine, %u "
               "iterations after %u warm-up, %u in flight\n", a->op == XR_OP_WRITE ? "WRITE" : "READ",
               a->op == XR_OP_WRITE ? "write" : "read", a->provider, a->iters, a->warmup, a->window);
    if (a->json)
        printf("[\n");
    bool first = true;
    for (unsigned s = 0; s < a->nsizes; s++)
        for (unsigned b = 0; b < a->nbatches; b++) {
            point pt = measure_raw(a, r, &pi, local, a->sizes[s], a->batches[b]);
            print_point(a, &pt, 1, first);
            first = false;
            fflush(stdout);
        }
    if (a->json)
        printf("\n]\n");
    full_write(to_target, "x", 1);
    int st = 0;
    waitpid(pid, &st, 0);
    raw_close(r);
    free(local);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    args a = {.op = XR_OP_WRITE, .provider = "tcp;ofi_rxm", .rails = 1, .iters = 200,
              .warmup = 20, .window = 4};
    a.nsizes = parse_list("4k,64k,1M,16M", a.sizes);
    a.nbatches = parse_list("1", a.batches);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--json"))
            a.json = 1;
        else if (!strcmp(o, "--csv"))
            a.csv = 1;
        else if (!strcmp(o, "--raw"))
            a.raw = 1;
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
            a.iters = (unsigned)atoi(v), i++;
        else if (!strcmp(o, "--warmup"))
            a.warmup = (unsigned)atoi(v), i++;
        else if (!strcmp(o, "--window"))
            a.window = (unsigned)atoi(v), i++;
        else if (!strcmp(o, "--sizes"))
            a.nsizes = parse_list(v, a.sizes), i++;
        else if (!strcmp(o, "--batch"))
            a.nbatches = parse_list(v, a.batches), i++;
        else
            usage();
    }
    if (!a.rails || !a.iters || !a.window || a.window > MAX_WINDOW || !a.nsizes || !a.nbatches ||
        (a.json && a.csv))
        usage();

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
    if (a.raw)
        return raw_initiator(&a, up[0], down[1], pid);
    uint64_t hdr[2];
    full_read(up[0], hdr, sizeof hdr);
    uint8_t *md = malloc(hdr[0]);
    full_read(up[0], md, hdr[0]);
    xr_engine *e = engine(&a, "bench-initiator", 0);
    xr_peer *p;
    int rc = xr_peer_load(e, md, hdr[0], &p);
    if (rc)
        die("xr_peer_load", rc);
    free(md);
    size_t n = pool_bytes(&a);
    void *local = aligned_alloc(4096, n);
    memset(local, 0xa5, n);
    xr_region *g;
    if ((rc = xr_mem_register(e, local, n, XR_MEM_HOST, 0, XR_ACCESS_NONE, &g)))
        die("local pool", rc);
    if (!a.json && !a.csv)
        printf("# xrail-bench: %s, %u rail(s) of %s, policy %s, %u iterations after %u "
               "warm-up, %u in flight\n", a.op == XR_OP_WRITE ? "WRITE" : "READ", a.rails,
               a.provider, a.policy ? a.policy : "built-in", a.iters, a.warmup, a.window);
    if (a.json)
        printf("[\n");
    bool first = true;
    for (unsigned s = 0; s < a.nsizes; s++)
        for (unsigned b = 0; b < a.nbatches; b++) {
            point pt = measure(&a, e, p, local, hdr[1], a.sizes[s], a.batches[b]);
            print_point(&a, &pt, xr_rail_count(e), first);
            first = false;
            fflush(stdout);
        }
    if (a.json)
        printf("\n]\n");
    full_write(down[1], "x", 1);
    int st = 0;
    waitpid(pid, &st, 0);
    xr_mem_deregister(g);
    xr_peer_unload(p);
    xr_engine_destroy(e);
    free(local);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
