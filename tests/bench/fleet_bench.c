/*
 * fleet_bench.c - the etcd directory at fleet size: the metadata of many
 * engines on one etcd, and what watchers and lookups pay for it.
 *
 *   xrail-bench-fleet --etcd URL [--engines 1000] [--publishers 4] [--watchers 4]
 *                     [--rails 32] [--regions 100] [--ttl-ms 5000] [--request-ms 0]
 *
 * Each publisher process makes one real engine of `rails` tcp rails and
 * `regions` registered regions, and publishes its metadata under
 * engines/publishers names, one lease each (renewed every TTL/3), as an
 * engine's directory does: the blob is the engine's own with the name
 * changed, so every entry is real metadata of that size. Then, in this
 * process:
 *   publish  all puts (a lease grant and a put each), from every publisher
 *            at once: entries per second;
 *   learn    each new watcher (a real engine opening the directory): the
 *            time from xr_dir_open to its last join event (its first read
 *            of the prefix, keys only; --request-ms bounds each request,
 *            0 for the directory's default);
 *   lookup   xr_peer_lookup of every name on one watcher (the first reads
 *            the blob and loads the peer: p50, p99, max), and again (a
 *            handle already loaded);
 *   death    publisher 0 SIGKILLed: the time until every watcher has the
 *            leave event of every name it held;
 *   memory   etcd's resident set before and after (XRAIL_ETCD_PID, which
 *            scripts/with-etcd.sh sets).
 * The goals (docs/discovery.md): learn < 2 s, lookup p99 < 5 ms, death
 * within the TTL + 1 s. Not a test; run it beside a throwaway etcd:
 *   scripts/with-etcd.sh build/tests/xrail-bench-fleet --etcd @ETCD@
 */
#include "etcd.h"
#include "layout.h"
#include "log.h"
#include "xrail.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...) (fprintf(stderr, "fleet: " __VA_ARGS__), fputc('\n', stderr), exit(1))
#define PREFIX "/xrail-fleet/"
#define NAME_FMT "fleet-%05u"

typedef struct bargs {
    const char *etcd;
    unsigned engines, publishers, watchers, rails, regions, ttl_ms, request_ms;
} bargs;

/* The engine's errors are read through the library (xr_engine_last_error);
 * the etcd client and the codec, built into this program, set their own
 * (xr__error_last). */

/* What a publisher reports once its puts are done. */
typedef struct report {
    double start, end;
    unsigned n;
    size_t md_bytes;
} report;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of n sorted values. */
static double quantile(const double *v, unsigned n, double q)
{
    unsigned i = (unsigned)(q * (n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static xr_engine *engine(const char *name, unsigned rails)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.ignore_env = 1;
    o.log_level = 0; /* a thousand leaves would each warn */
    xr_rail_spec spec = {.provider = "tcp;ofi_rxm", .domain = "lo", .count = rails};
    o.rails = &spec;
    o.n_rail_specs = 1;
    xr_engine *e;
    if (xr_engine_create(&o, &e))
        FAIL("engine %s: %s", name, xr_engine_last_error(NULL));
    return e;
}

static void xwrite(int fd, const void *p, size_t n)
{
    if (write(fd, p, n) != (ssize_t)n)
        FAIL("pipe: short write");
}

/* Read n bytes, waiting at most timeout_s: a publisher that died says so. */
static void xread(int fd, void *p, size_t n, double timeout_s)
{
    for (size_t got = 0; got < n;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)(timeout_s * 1000)) != 1)
            FAIL("a publisher did not answer in %.0f s", timeout_s);
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r <= 0)
            FAIL("a publisher ended early");
        got += (size_t)r;
    }
}

/* ---- a publisher: one real engine's metadata under many names ---- */

/* Renew the first n leases if a third of the TTL has passed since *last:
 * also between puts, for publishing may outlast a TTL. */
static void renew(const bargs *a, xr_etcd *c, const int64_t *lease, unsigned n, double *last)
{
    if (now_s() - *last < a->ttl_ms / 3e3)
        return;
    *last = now_s();
    for (unsigned i = 0; i < n; i++) {
        int64_t left;
        if (xr__etcd_lease_keepalive(c, lease[i], &left) || left == 0)
            fprintf(stderr, "fleet: renew: %s\n", left ? xr__error_last() : "lease gone");
    }
}

static void publisher(const bargs *a, unsigned id, unsigned first, unsigned n, int go_fd,
                      int out_fd)
{
    /* rxm's receive buffers dominate creating 32 rails (docs/deploy.md). */
    setenv("FI_OFI_RXM_MSG_RX_SIZE", "128", 0);
    char name[64];
    snprintf(name, sizeof name, "fleet-publisher-%u", id);
    xr_engine *e = engine(name, a->rails);
    size_t slice = 64 << 10;
    char *pool = aligned_alloc(4096, slice * a->regions);
    memset(pool, 0, slice * a->regions);
    for (unsigned r = 0; r < a->regions; r++) {
        xr_region *g;
        if (xr_mem_register(e, pool + r * slice, slice, XR_MEM_HOST, 0, XR_ACCESS_RW, &g))
            FAIL("register: %s", xr_engine_last_error(NULL));
    }
    size_t len = 0;
    xr_metadata_get(e, NULL, &len);
    uint8_t *blob = malloc(len);
    if (xr_metadata_get(e, blob, &len))
        FAIL("metadata: %s", xr_engine_last_error(NULL));
    xr_md md;
    if (xr__layout_decode(&xr__layout_md_schema, blob, len, len, &md))
        FAIL("decode: %s", xr__error_last());
    char *own = md.name;
    size_t cap = len + 64;
    uint8_t *out = malloc(cap);

    xr_dir_opts o;
    xr_dir_opts_init(&o);
    o.endpoints = a->etcd;
    xr_etcd *c;
    if (xr__etcd_open(&o, &c))
        FAIL("etcd: %s", xr__error_last());
    int64_t *lease = calloc(n, sizeof *lease);
    char ready = 1;
    xwrite(out_fd, &ready, 1);
    char go;
    if (read(go_fd, &go, 1) != 1)
        exit(0);
    report rep = {.start = now_s(), .n = n};
    double last = rep.start;
    for (unsigned i = 0; i < n; i++) {
        renew(a, c, lease, i, &last);
        char key[128];
        snprintf(name, sizeof name, NAME_FMT, first + i);
        snprintf(key, sizeof key, PREFIX "%s", name);
        md.name = name;
        md.instance = ((uint64_t)id << 32) + first + i + 1;
        size_t olen = cap;
        if (xr__layout_encode(&xr__layout_md_schema, &md, out, &olen))
            FAIL("encode: %s", xr__error_last());
        rep.md_bytes = olen;
        if (xr__etcd_lease_grant(c, (a->ttl_ms + 999) / 1000, &lease[i]) ||
            xr__etcd_put(c, key, out, olen, lease[i]))
            FAIL("publish %s: %s", name, xr__error_last());
    }
    rep.end = now_s();
    xwrite(out_fd, &rep, sizeof rep);
    md.name = own;
    xr__layout_free(&xr__layout_md_schema, &md);
    /* Alive until told to stop (or killed): renew every third of the TTL. */
    for (;;) {
        struct pollfd pf = {.fd = go_fd, .events = POLLIN};
        if (poll(&pf, 1, 50) != 0)
            break;
        renew(a, c, lease, n, &last);
    }
    for (unsigned i = 0; i < n; i++)
        xr__etcd_lease_revoke(c, lease[i]);
    xr__etcd_close(c);
    xr_engine_destroy(e);
    free(lease), free(out), free(blob), free(pool);
    exit(0);
}

/* ---- measurements ---- */

static long rss_kib(const char *pid)
{
    if (!pid)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%s/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* Index of a fleet name, or -1 for another engine's (a watcher's). */
static long fleet_index(const char *name)
{
    unsigned i;
    char tail;
    return sscanf(name, NAME_FMT "%c", &i, &tail) == 1 ? (long)i : -1;
}

/* A new watcher: seconds from opening its directory to the last join. */
static double learn(const bargs *a, xr_engine *w)
{
    xr_dir_opts o;
    xr_dir_opts_init(&o);
    o.endpoints = a->etcd;
    o.prefix = PREFIX;
    o.ttl_ms = (int)a->ttl_ms;
    o.request_ms = (int)a->request_ms;
    int fd = xr_engine_fd(w);
    double t0 = now_s();
    if (xr_dir_open(w, &o))
        FAIL("xr_dir_open: %s", xr_engine_last_error(NULL));
    unsigned joins = 0;
    while (joins < a->engines) {
        xr_dir_event ev;
        while (xr_dir_event_get(w, &ev) == 0)
            joins += ev.kind == XR_DIR_JOIN && fleet_index(ev.name) >= 0;
        if (now_s() - t0 > 60)
            FAIL("a watcher learnt %u of %u in 60 s", joins, a->engines);
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        uint64_t drain;
        if (joins < a->engines && poll(&pf, 1, 100) == 1 && read(fd, &drain, 8) < 0)
            FAIL("engine fd: %s", strerror(errno));
    }
    return now_s() - t0;
}

/* Every name looked up once, in a shuffled order; returns the p99. */
static double lookups(const bargs *a, xr_engine *w, const char *what)
{
    unsigned n = a->engines;
    double *t = malloc(n * sizeof *t);
    unsigned *order = malloc(n * sizeof *order);
    for (unsigned i = 0; i < n; i++)
        order[i] = i;
    srand(7);
    for (unsigned i = n - 1; i > 0; i--) {
        unsigned j = (unsigned)rand() % (i + 1), s = order[i];
        order[i] = order[j], order[j] = s;
    }
    for (unsigned i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, NAME_FMT, order[i]);
        xr_peer *p;
        double t0 = now_s();
        if (xr_peer_lookup(w, name, 5000, &p))
            FAIL("lookup %s: %s", name, xr_engine_last_error(NULL));
        t[i] = now_s() - t0;
        if ((unsigned)xr_peer_rail_count(p) != a->rails)
            FAIL("lookup %s: %d rails, published %u", name, xr_peer_rail_count(p), a->rails);
    }
    qsort(t, n, sizeof *t, cmp_d);
    printf("lookup (%s): p50 %.3f ms, p99 %.3f ms, max %.3f ms over %u names\n", what,
           quantile(t, n, 0.5) * 1e3, quantile(t, n, 0.99) * 1e3, t[n - 1] * 1e3, n);
    double p99 = quantile(t, n, 0.99);
    free(order);
    free(t);
    return p99;
}

/* Publisher 0 killed: seconds until every watcher has every leave; -1 if
 * not within the TTL + 10 s. */
static double death(const bargs *a, xr_engine **w, pid_t victim, unsigned nvictim,
                    double *first)
{
    xr_dir_event ev;
    for (unsigned k = 0; k < a->watchers; k++) /* what came before */
        while (xr_dir_event_get(w[k], &ev) == 0)
            ;
    unsigned *left = calloc(a->watchers, sizeof *left), done = 0;
    double t0 = now_s(), all = -1;
    *first = -1;
    kill(victim, SIGKILL);
    while (done < a->watchers && now_s() - t0 < a->ttl_ms / 1e3 + 10) {
        for (unsigned k = 0; k < a->watchers; k++)
            while (left[k] < nvictim && xr_dir_event_get(w[k], &ev) == 0) {
                long i = fleet_index(ev.name);
                if (ev.kind != XR_DIR_LEAVE || i < 0 || (unsigned long)i >= nvictim)
                    continue;
                if (*first < 0)
                    *first = now_s() - t0;
                if (++left[k] == nvictim)
                    done++;
            }
        usleep(1000);
    }
    if (done == a->watchers)
        all = now_s() - t0;
    free(left);
    return all;
}

int main(int argc, char **argv)
{
    bargs a = {NULL, 1000, 4, 4, 32, 100, 5000, 0};
    for (int i = 1; i + 1 < argc; i += 2) {
        unsigned v = (unsigned)strtoul(argv[i + 1], NULL, 10);
        if (!strcmp(argv[i], "--etcd"))
            a.etcd = argv[i + 1];
        else if (!strcmp(argv[i], "--engines"))
            a.engines = v;
        else if (!strcmp(argv[i], "--publishers"))
            a.publishers = v;
        else if (!strcmp(argv[i], "--watchers"))
            a.watchers = v;
        else if (!strcmp(argv[i], "--rails"))
            a.rails = v;
        else if (!strcmp(argv[i], "--regions"))
            a.regions = v;
        else if (!strcmp(argv[i], "--ttl-ms"))
            a.ttl_ms = v;
        else if (!strcmp(argv[i], "--request-ms"))
            a.request_ms = v;
        else
            a.etcd = NULL;
    }
    if (!a.etcd || argc % 2 == 0 || !a.publishers || a.engines < a.publishers || !a.watchers ||
        !a.rails || a.ttl_ms < 2000)
        FAIL("usage: %s --etcd URL [--engines N] [--publishers N] [--watchers N] [--rails N] "
             "[--regions N] [--ttl-ms N>=2000] [--request-ms N]", argv[0]);
    /* Publishers first: forked before this process has an engine. */
    pid_t *pid = calloc(a.publishers, sizeof *pid);
    int *go = calloc(a.publishers, sizeof *go), *from = calloc(a.publishers, sizeof *from);
    unsigned per = a.engines / a.publishers;
    for (unsigned p = 0; p < a.publishers; p++) {
        int gp[2], rp[2];
        if (pipe(gp) || pipe(rp))
            FAIL("pipe");
        unsigned first = p * per, n = p + 1 == a.publishers ? a.engines - first : per;
        fflush(stdout);
        if ((pid[p] = fork()) == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* none outlives a failed run */
            close(gp[1]), close(rp[0]);
            for (unsigned q = 0; q < p; q++) /* the others' ends: EOF must reach them */
                close(go[q]), close(from[q]);
            publisher(&a, p, first, n, gp[0], rp[1]);
        }
        close(gp[0]), close(rp[1]);
        go[p] = gp[1], from[p] = rp[0];
    }
    const char *etcd_pid = getenv("XRAIL_ETCD_PID");
    long rss0 = rss_kib(etcd_pid);
    for (unsigned p = 0; p < a.publishers; p++) {
        char ready;
        xread(from[p], &ready, 1, 300);
    }
    for (unsigned p = 0; p < a.publishers; p++)
        xwrite(go[p], "g", 1);
    double start = 1e300, end = 0;
    size_t md_bytes = 0;
    for (unsigned p = 0; p < a.publishers; p++) {
        report r;
        xread(from[p], &r, sizeof r, 600);
        start = r.start < start ? r.start : start;
        end = r.end > end ? r.end : end;
        md_bytes = r.md_bytes;
    }
    long rss1 = rss_kib(etcd_pid);
    printf("fleet: %u engines of %u rails and %u regions (%zu bytes of metadata each), "
           "%u publishers, %u watchers, TTL %.1f s\n", a.engines, a.rails, a.regions, md_bytes,
           a.publishers, a.watchers, a.ttl_ms / 1e3);
    printf("publish: %u entries (lease grant + put each) in %.2f s from %u processes: "
           "%.0f entries/s\n", a.engines, end - start, a.publishers, a.engines / (end - start));

    xr_engine **w = calloc(a.watchers, sizeof *w);
    double *learnt = calloc(a.watchers, sizeof *learnt);
    for (unsigned k = 0; k < a.watchers; k++) {
        char name[32];
        snprintf(name, sizeof name, "watcher-%u", k);
        w[k] = engine(name, 1);
        learnt[k] = learn(&a, w[k]);
        printf("learn: watcher %u saw all %u join in %.3f s\n", k, a.engines, learnt[k]);
    }
    qsort(learnt, a.watchers, sizeof *learnt, cmp_d);
    double p99 = lookups(&a, w[0], "first: loads the peer");
    lookups(&a, w[0], "again: already loaded");
    double first, all = death(&a, w, pid[0], per, &first);
    if (all < 0)
        printf("death: not every watcher saw all %u leaves within %.1f s\n", per,
               a.ttl_ms / 1e3 + 10);
    else
        printf("death: publisher 0 (%u names) SIGKILLed: first leave at %.2f s, every watcher "
               "had every leave at %.2f s (TTL %.1f s)\n", per, first, all, a.ttl_ms / 1e3);
    if (rss0 >= 0)
        printf("etcd memory: %.1f MiB resident before, %.1f MiB after publishing\n", rss0 / 1024.0,
               rss1 / 1024.0);
    printf("goals: learn %.3f s (slowest watcher) < 2 s: %s; lookup p99 %.3f ms < 5 ms: %s; "
           "death within TTL + 1 s: %s\n", learnt[a.watchers - 1],
           learnt[a.watchers - 1] < 2 ? "met" : "MISSED", p99 * 1e3, p99 < 0.005 ? "met" : "MISSED",
           all >= 0 && all <= a.ttl_ms / 1e3 + 1 ? "met" : "MISSED");
    fflush(stdout);
    for (unsigned k = 0; k < a.watchers; k++)
        xr_engine_destroy(w[k]);
    for (unsigned p = 0; p < a.publishers; p++) {
        close(go[p]); /* the survivors revoke their leases and leave */
        waitpid(pid[p], NULL, 0);
    }
    free(w), free(learnt), free(pid), free(go), free(from);
    return 0;
}
