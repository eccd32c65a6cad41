/*
 * cold_bench.c - what a server pays before its first request runs warm:
 * creating an engine of many rails, and the first transfer to a new peer
 * with and without xr_peer_connect, against the same transfer warm.
 *
 *   xrail-bench-cold [--provider P] [--rails N] [--size BYTES] [--runs N]
 *
 * Engine creation is timed `runs` times in this process. Then two
 * processes over `rails` rails (loopback): the target publishes a region
 * of `size` bytes; the initiator, in each run, makes a fresh engine
 * (its buffer registered at once, so that connecting alone differs) and
 *   cold     loads the peer and READs `size` bytes at once (every rail
 *            connects on its first chunk);
 *   warm     READs the same again;
 *   idle     READs it again after 1 s of idle rails;
 * and another fresh engine that
 *   connect  loads the peer, calls xr_peer_connect (timed on its own),
 *   first    then READs `size` bytes.
 * Prints each run and the medians; the goal in docs/performance.md is
 * "first" within 1.5x of "warm". Not a test.
 */
#include "../integration/harness.h"
#include "size_arg.h"

typedef struct bargs {
    const char *provider;
    unsigned rails, runs;
    size_t size;
} bargs;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_d);
    return v[n / 2];
}

static xr_engine *engine(const bargs *a, const char *name)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.ignore_env = 1;
    o.progress_thread = 1;
    xr_rail_spec spec = {.provider = a->provider, .count = a->rails};
    if (strstr(a->provider, "tcp"))
        spec.domain = "lo";
    o.rails = &spec;
    o.n_rail_specs = 1;
    xr_engine *e;
    H_OK(xr_engine_create(&o, &e));
    return e;
}

static void target(int fd, void *arg)
{
    bargs *a = arg;
    h_role = "target";
    xr_engine *e = engine(a, "decode");
    uint8_t *buf = aligned_alloc(4096, a->size);
    memset(buf, 7, a->size);
    xr_region *r;
    H_OK(xr_mem_register(e, buf, a->size, XR_MEM_HOST, -1, XR_ACCESS_RW, &r));
    h_send_metadata(fd, e);
    h_send_u64(fd, (uint64_t)(uintptr_t)buf);
    h_recv_u64(fd, NULL); /* the initiator is done */
    xr_mem_deregister(r);
    xr_engine_destroy(e);
    free(buf);
}

/* READ the whole region once; its seconds. */
static double read_all(xr_engine *e, xr_peer *p, uint8_t *dst, uint64_t raddr, size_t size)
{
    xr_iov l = {(uint64_t)(uintptr_t)dst, size}, rv = {raddr, size};
    xr_xfer *x;
    double t0 = now_s();
    H_OK(xr_xfer_create(e, p, XR_OP_READ, &l, &rv, 1, NULL, 0, &x));
    H_OK(xr_xfer_post(x));
    int rc = xr_xfer_wait(x, 120000);
    double t = now_s() - t0;
    H_CHECK(rc == 0, "READ: %s", xr_xfer_error(x));
    xr_xfer_release(x);
    return t;
}

int main(int argc, char **argv)
{
    bargs a = {.provider = "tcp;ofi_rxm", .rails = 32, .runs = 3, .size = 64u << 20};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--provider") && v)
            a.provider = v, i++;
        else if (!strcmp(argv[i], "--rails") && v)
            a.rails = (unsigned)strtoul(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--runs") && v)
            a.runs = (unsigned)strtoul(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--size") && v && (a.size = size_arg(v)) != 0)
            i++;
        else {
            fprintf(stderr, "usage: %s [--provider P] [--rails N] [--size BYTES] [--runs N]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!a.runs || !a.rails || !a.size)
        return 2;
    h_require_provider(a.provider);
    printf("# xrail-bench-cold: %s, %u rails, %zu-byte READ, %u runs\n", a.provider, a.rails,
           a.size, a.runs);
    double *create = calloc(a.runs, sizeof(double)), *cold = calloc(a.runs, sizeof(double)),
           *warm = calloc(a.runs, sizeof(double)), *conn = calloc(a.runs, sizeof(double)),
           *first = calloc(a.runs, sizeof(double)), *idle = calloc(a.runs, sizeof(double));
    for (unsigned k = 0; k < a.runs; k++) {
        double t0 = now_s();
        xr_engine *e = engine(&a, "probe");
        create[k] = now_s() - t0;
        xr_engine_destroy(e);
    }
    pid_t pid;
    int fd = h_spawn(target, &a, &pid);
    h_role = "initiator";
    uint64_t mdlen;
    void *md = h_recv(fd, NULL, &mdlen);
    uint64_t raddr = h_recv_u64(fd, NULL);
    uint8_t *dst = aligned_alloc(4096, a.size);
    memset(dst, 0, a.size);
    for (unsigned k = 0; k < a.runs; k++) {
        char name[32];
        snprintf(name, sizeof name, "prefill-%u", k);
        xr_engine *e = engine(&a, name);
        xr_peer *p;
        /* Registered up front on every rail (a region peers reach is; a
         * local-only one would register on each rail at its first use), so
         * that only connecting differs. */
        xr_region *reg;
        H_OK(xr_mem_register(e, dst, a.size, XR_MEM_HOST, -1, XR_ACCESS_RW, &reg));
        H_OK(xr_peer_load(e, md, mdlen, &p));
        cold[k] = read_all(e, p, dst, raddr, a.size);
        warm[k] = read_all(e, p, dst, raddr, a.size);
        /* Whether what a connection learned lasts: the same READ after
         * the rails sat idle past TCP's retransmission timeout, when Linux
         * restarts slow start (net.ipv4.tcp_slow_start_after_idle). */
        struct timespec nap = {1, 0};
        nanosleep(&nap, NULL);
        idle[k] = read_all(e, p, dst, raddr, a.size);
        xr_engine_destroy(e);
        snprintf(name, sizeof name, "prefill-c%u", k);
        e = engine(&a, name);
        H_OK(xr_mem_register(e, dst, a.size, XR_MEM_HOST, -1, XR_ACCESS_RW, &reg));
        H_OK(xr_peer_load(e, md, mdlen, &p));
        double t0 = now_s();
        H_OK(xr_peer_connect(p, 120000));
        conn[k] = now_s() - t0;
        first[k] = read_all(e, p, dst, raddr, a.size);
        xr_engine_destroy(e);
        H_CHECK(dst[0] == 7 && dst[a.size - 1] == 7, "the READ brought the wrong bytes");
        printf("run %u: create %.3f s; cold READ %.3f s, warm %.3f s, warm after 1 s idle "
               "%.3f s; connect %.3f s, then READ %.3f s\n", k + 1, create[k], cold[k], warm[k],
               idle[k], conn[k], first[k]);
        fflush(stdout);
    }
    h_send_u64(fd, 1);
    int st = 0;
    waitpid(pid, &st, 0);
    double mw = median(warm, a.runs), mf = median(first, a.runs);
    printf("median: create %.3f s; cold READ %.3f s (%.1fx warm); warm %.3f s; warm after 1 s "
           "idle %.3f s (%.2fx warm); connect %.3f s; READ after connect %.3f s (%.2fx warm)\n",
           median(create, a.runs), median(cold, a.runs), median(cold, a.runs) / mw, mw,
           median(idle, a.runs), median(idle, a.runs) / mw, median(conn, a.runs), mf, mf / mw);
    free(md), free(dst), free(create), free(cold), free(warm), free(conn), free(first);
    free(idle);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
