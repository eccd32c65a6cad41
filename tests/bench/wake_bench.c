/*
 * wake_bench.c - how fast a waiter learns that a transfer ended or a
 * notification arrived, and what waiting costs, for each way to wait.
 *
 *   xrail-bench-wake [--provider P] [--iters N] [--gap-us N] [--idle S]
 *                    [--modes spin,wait,fd,callback] [--threads 0|1]
 *
 * Two processes over real rails (one each, loopback): prefill (initiator)
 * and decode (target), each with a progress thread (--threads 0: none, the
 * waiting call drives progress).
 *
 *   xfer   prefill posts an 8-byte WRITE, `iters` times, `gap-us` apart so
 *          that the waiter has gone to sleep, and times post -> the waiter
 *          knowing it ended. spin: a loop on xr_xfer_status with
 *          sched_yield, as xr_xfer_wait was before it slept; wait:
 *          xr_xfer_wait; fd: poll() on xr_engine_fd, then the status;
 *          callback: xr_xfer_set_callback, timed inside the callback.
 *   notif  the same WRITEs carry a notification holding the post time
 *          (CLOCK_MONOTONIC is one clock for both processes); decode times
 *          post -> its waiter holding the message. spin: a loop on
 *          xr_notif_get with sched_yield; wait: xr_notif_wait; fd: poll()
 *          then xr_notif_get. (callback: not a way to wait for these.)
 *   idle   decode waits `idle` seconds for one notification, and reports
 *          the CPU its whole process used meanwhile (threads included), as
 *          a share of one core.
 *
 * Prints p50/p99 in us per mode and the idle CPU share. Not a test; the
 * figures and the command go in docs/performance.md.
 */
#include "../integration/harness.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/resource.h>

enum { M_SPIN, M_WAIT, M_FD, M_CALLBACK, M_COUNT };
static const char *mode_name[M_COUNT] = {"spin", "wait", "fd", "callback"};

typedef struct bargs {
    const char *provider;
    unsigned iters, gap_us, idle_s, threads;
    int sleep_us;           /* --sleep-us: both engines' progress_sleep_us; -1 the default */
    bool mode[M_COUNT];
} bargs;

static xr_engine *engine(const bargs *a, const char *name)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.ignore_env = 1;
    o.progress_thread = a->threads > 0;
    o.progress_threads = a->threads;
    if (a->sleep_us >= 0)
        o.progress_sleep_us = a->sleep_us;
    xr_rail_spec spec = {.provider = a->provider, .count = 1};
    if (strstr(a->provider, "tcp"))
        spec.domain = "lo";
    o.rails = &spec;
    o.n_rail_specs = 1;
    xr_engine *e;
    H_OK(xr_engine_create(&o, &e));
    return e;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, const char *mode, uint64_t *lat, unsigned n)
{
    qsort(lat, n, sizeof *lat, cmp_u64);
    printf("%-6s %-9s p50 %8.1f us   p99 %8.1f us   (%u)\n", what, mode, lat[n / 2] / 1e3,
           lat[(size_t)(n * 0.99)] / 1e3, n);
    fflush(stdout);
}

static void pause_us(unsigned us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Wait on the engine's fd until something happened; then the caller looks. */
static void fd_wait(xr_engine *e, int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint64_t v;
    if (poll(&p, 1, 1000) > 0 && read(fd, &v, sizeof v) < 0)
        return;
    (void)e;
}

/* ---- decode: the target, and the notification waiter ---- */

static int notif_take(xr_engine *e, int mode, int fd, int timeout_ms, uint64_t *sent)
{
    char name[64];
    size_t len = sizeof *sent;
    if (mode == M_WAIT)
        return xr_notif_wait(e, timeout_ms, name, sizeof name, sent, &len);
    uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;
    for (;;) {
        len = sizeof *sent;
        int rc = xr_notif_get(e, name, sizeof name, sent, &len);
        if (rc != XR_EAGAIN)
            return rc;
        if (now_ns() > end)
            return XR_ETIMEDOUT;
        if (mode == M_FD)
            fd_wait(e, fd);
        else
            sched_yield();
    }
}

static void decode(int sock, void *arg)
{
    bargs *a = arg;
    xr_engine *e = engine(a, "decode");
    int efd = xr_engine_fd(e);
    H_OK(efd);
    static uint8_t pool[4096];
    xr_region *r;
    H_OK(xr_mem_register(e, pool, sizeof pool, XR_MEM_HOST, -1, XR_ACCESS_RW, &r));
    h_send_metadata(sock, e);
    xr_peer *p = h_load_peer(sock, e); /* its notifications name it */
    (void)p;
    h_send_u64(sock, (uint64_t)(uintptr_t)pool);
    uint64_t *lat = calloc(a->iters, sizeof *lat);
    for (;;) {
        uint64_t mode = h_recv_u64(sock, e);
        if (mode == UINT64_MAX)
            break;
        if (mode >= 100) { /* idle: one notification after idle_s */
            mode -= 100;
            h_send_u64(sock, 1); /* waiting now */
            double c0 = cpu_s();
            uint64_t t0 = now_ns(), sent;
            H_OK(notif_take(e, (int)mode, efd, (int)a->idle_s * 1000 + 5000, &sent));
            double wall = (now_ns() - t0) / 1e9, cpu = cpu_s() - c0;
            printf("idle   %-9s %.1f s waited, CPU %.3f s = %.2f%% of a core\n",
                   mode_name[mode], wall, cpu, 100 * cpu / wall);
            fflush(stdout);
            h_send_u64(sock, 1);
            continue;
        }
        h_send_u64(sock, 1); /* ready */
        for (unsigned i = 0; i < a->iters; i++) {
            uint64_t sent;
            /* callback: prefill times its side; these are only taken. */
            H_OK(notif_take(e, mode == M_CALLBACK ? M_WAIT : (int)mode, efd, 10000, &sent));
            lat[i] = now_ns() - sent;
        }
        if (mode != M_CALLBACK)
            report("notif", mode_name[mode], lat, a->iters);
        h_send_u64(sock, 1);
    }
    free(lat);
    xr_mem_deregister(r);
    xr_engine_destroy(e);
}

/* ---- prefill: the initiator ---- */

typedef struct cb_state {
    xr_xfer *x;
    uint64_t t_post;
    uint64_t *lat;
    unsigned done, iters, gap_us;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} cb_state;

static void on_end(xr_xfer *x, int status, void *user)
{
    cb_state *s = user;
    uint64_t t = now_ns();
    H_CHECK(status == 0, "transfer failed: %s", xr_xfer_error(x));
    pthread_mutex_lock(&s->lock);
    s->lat[s->done++] = t - s->t_post;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void prefill_xfer(bargs *a, xr_engine *e, xr_xfer *x, int mode, uint64_t *lat)
{
    int efd = xr_engine_fd(e);
    cb_state s = {.x = x, .lat = lat, .iters = a->iters};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    if (mode == M_CALLBACK)
        H_OK(xr_xfer_set_callback(x, on_end, &s));
    for (unsigned i = 0; i < a->iters; i++) {
        pause_us(a->gap_us);
        uint64_t t0 = now_ns();
        s.t_post = t0;
        H_OK(xr_xfer_post_notif(x, &t0, sizeof t0));
        switch (mode) {
        case M_SPIN:
            while (xr_xfer_status(x) == XR_EINPROGRESS) {
                if (!a->threads)
                    xr_progress(e);
                sched_yield();
            }
            break;
        case M_WAIT:
            H_OK(xr_xfer_wait(x, 10000));
            break;
        case M_FD:
            while (xr_xfer_status(x) == XR_EINPROGRESS) {
                if (!a->threads)
                    xr_progress(e);
                else
                    fd_wait(e, efd);
            }
            break;
        case M_CALLBACK:
            /* The time is taken in the callback; this thread only waits for
             * it so that the next post does not overlap. */
            if (!a->threads)
                H_OK(xr_xfer_wait(x, 10000));
            pthread_mutex_lock(&s.lock);
            while (s.done <= i)
                pthread_cond_wait(&s.cond, &s.lock);
            pthread_mutex_unlock(&s.lock);
            continue;
        }
        H_CHECK(xr_xfer_status(x) == 0, "transfer failed: %s", xr_xfer_error(x));
        lat[i] = now_ns() - t0;
    }
    if (mode == M_CALLBACK)
        H_OK(xr_xfer_set_callback(x, NULL, NULL));
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
}

static void prefill(int sock, void *arg)
{
    bargs *a = arg;
    xr_engine *e = engine(a, "prefill");
    static uint8_t src[4096];
    xr_region *r;
    H_OK(xr_mem_register(e, src, sizeof src, XR_MEM_HOST, -1, XR_ACCESS_NONE, &r));
    xr_peer *p = h_load_peer(sock, e);
    h_send_metadata(sock, e);
    uint64_t remote = h_recv_u64(sock, e); /* decode's pool */
    xr_iov l = {(uint64_t)(uintptr_t)src, 8}, rv = {remote, 8};
    xr_xfer *x;
    H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &l, &rv, 1, NULL, 0, &x));
    uint64_t *lat = calloc(a->iters, sizeof *lat);
    /* Warm the connection. */
    H_OK(xr_xfer_post(x));
    H_OK(xr_xfer_wait(x, 10000));
    for (int m = 0; m < M_COUNT; m++) {
        if (!a->mode[m])
            continue;
        h_send_u64(sock, (uint64_t)m);
        h_recv_u64(sock, e); /* decode waits in this mode */
        prefill_xfer(a, e, x, m, lat);
        report("xfer", mode_name[m], lat, a->iters);
        h_recv_u64(sock, e); /* decode has taken every notification */
    }
    for (int m = 0; m < M_CALLBACK && a->idle_s; m++) {
        if (!a->mode[m])
            continue;
        h_send_u64(sock, 100 + (uint64_t)m);
        h_recv_u64(sock, e);
        sleep(a->idle_s);
        uint64_t t0 = now_ns();
        H_OK(xr_xfer_post_notif(x, &t0, sizeof t0));
        H_OK(xr_xfer_wait(x, 10000));
        h_recv_u64(sock, e);
    }
    h_send_u64(sock, UINT64_MAX);
    free(lat);
    xr_xfer_release(x);
    xr_mem_deregister(r);
    xr_engine_destroy(e);
}

static void decode_main(int sock, void *arg)
{
    h_role = "decode";
    decode(sock, arg);
}

int main(int argc, char **argv)
{
    bargs a = {.provider = "tcp;ofi_rxm", .iters = 1000, .gap_us = 1000, .idle_s = 10,
               .threads = 1, .sleep_us = -1};
    const char *modes = "spin,wait,fd,callback";
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--provider") && v)
            a.provider = v, i++;
        else if (!strcmp(argv[i], "--iters") && v)
            a.iters = (unsigned)strtoul(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--gap-us") && v)
            a.gap_us = (unsigned)strtoul(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--idle") && v)
            a.idle_s = (unsigned)strtoul(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--threads") && v)
            a.threads = (unsigned)strtoul(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--sleep-us") && v)
            a.sleep_us = atoi(v), i++;
        else if (!strcmp(argv[i], "--modes") && v)
            modes = v, i++;
        else {
            fprintf(stderr, "usage: %s [--provider P] [--iters N] [--gap-us N] [--idle S] "
                            "[--modes spin,wait,fd,callback] [--threads 0|1] [--sleep-us N]\n", argv[0]);
            return 2;
        }
    }
    for (int m = 0; m < M_COUNT; m++)
        a.mode[m] = strstr(modes, mode_name[m]) != NULL;
    /* The engine fd is written from progress: without a thread, nothing
     * drives it while the application sleeps in poll(). */
    if (!a.threads)
        a.mode[M_FD] = false;
    if (!a.iters)
        a.iters = 1;
    h_require_provider(a.provider);
    printf("# xrail-bench-wake: %s, 1 rail, progress threads %u, %u posts %u us apart, "
           "idle %u s\n", a.provider, a.threads, a.iters, a.gap_us, a.idle_s);
    pid_t pid;
    int sock = h_spawn(decode_main, &a, &pid);
    h_role = "prefill";
    prefill(sock, &a);
    close(sock);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
