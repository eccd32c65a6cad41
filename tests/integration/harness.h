/*
 * harness.h - what the two-process integration tests share: a side channel
 * (a socketpair between a forked target and initiator), engine set-up on
 * real providers, and a deterministic byte pattern.
 */
#ifndef XR_HARNESS_H
#define XR_HARNESS_H

#include "xrail.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Exit code ctest reads as "skipped" (SKIP_RETURN_CODE). */
#define H_SKIP 77

static const char *h_role = "main";

#define H_FAIL(...)                                                                        \
    do {                                                                                   \
        fprintf(stderr, "[%s] FAIL %s:%d: ", h_role, __FILE__, __LINE__);                  \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fprintf(stderr, "\n");                                                             \
        exit(1);                                                                           \
    } while (0)

#define H_CHECK(cond, ...)                                                                 \
    do {                                                                                   \
        if (!(cond))                                                                       \
            H_FAIL(__VA_ARGS__);                                                           \
    } while (0)

#define H_OK(call)                                                                         \
    do {                                                                                   \
        int h_rc_ = (call);                                                                \
        if (h_rc_ < 0)                                                                     \
            H_FAIL("%s = %s: %s", #call, xr_err_name(h_rc_), xr_engine_last_error(NULL)); \
    } while (0)

static inline void h_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%s] ", h_role);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- side channel ---- */

static inline void h_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        H_CHECK(n > 0, "side channel write failed");
        p += n;
        len -= (size_t)n;
    }
}

static inline void h_read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        H_CHECK(n > 0, "side channel closed by the other process (%s)", n ? strerror(errno) : "EOF");
        p += n;
        len -= (size_t)n;
    }
}

static inline void h_send(int fd, const void *buf, uint64_t len)
{
    h_write_all(fd, &len, sizeof len);
    h_write_all(fd, buf, len);
}

/* Wait for the next message, driving the engine's progress meanwhile: the
 * target of an RMA must make progress for the initiator's operations to
 * complete on providers with manual progress. */
static inline void *h_recv(int fd, xr_engine *e, uint64_t *len)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, e ? 0 : -1);
        if (n > 0)
            break;
        if (e)
            xr_progress(e);
    }
    h_read_all(fd, len, sizeof *len);
    void *buf = malloc(*len ? *len : 1);
    h_read_all(fd, buf, *len);
    return buf;
}

static inline void h_send_u64(int fd, uint64_t v)
{
    h_send(fd, &v, sizeof v);
}

static inline uint64_t h_recv_u64(int fd, xr_engine *e)
{
    uint64_t len, v;
    void *b = h_recv(fd, e, &len);
    H_CHECK(len == sizeof v, "side channel: expected 8 bytes, got %llu", (unsigned long long)len);
    memcpy(&v, b, sizeof v);
    free(b);
    return v;
}

/* ---- engines on real providers ---- */

/* A policy script for the engines this process creates (NULL: built-in). */
static const char *h_policy;
static int h_connect_on_load; /* h_engine's engines connect every rail to a peer as it loads */
static int h_stage_host;      /* h_engine's engines stage their host regions (xr_stage_opts.host) */

/* The health deadline the engines here get: the engine's default, or a
 * longer one for a sanitizer build that runs 5-20x slower (scripts/test.sh
 * --tsan sets XR_TEST_DEADLINE_MS). The engine's environment is ignored in
 * tests, so that a user's settings cannot change one. */
static inline unsigned h_deadline_ms(void)
{
    const char *v = getenv("XR_TEST_DEADLINE_MS");
    if (v && *v)
        return (unsigned)strtoul(v, NULL, 10);
    xr_engine_opts o;
    xr_engine_opts_defaults(&o);
    return o.health.deadline_ms;
}

/* How long a test waits for its other process before failing: 2 minutes,
 * scaled as h_deadline_ms is. A process whose peer died must not spin until
 * ctest's timeout. */
static inline double h_patience_s(void)
{
    xr_engine_opts o;
    xr_engine_opts_defaults(&o);
    return 120.0 * h_deadline_ms() / o.health.deadline_ms;
}

/* First contact's deadline (health.connect_ms) for the engines this process
 * creates: 0, the engine's default, scaled as h_deadline_ms is. */
static unsigned h_connect_ms;

static inline unsigned h_connect_deadline_ms(void)
{
    if (h_connect_ms)
        return h_connect_ms;
    xr_engine_opts o;
    xr_engine_opts_defaults(&o);
    return (unsigned)((uint64_t)o.health.connect_ms * h_deadline_ms() / o.health.deadline_ms);
}

/* progress_thread: 0 none, 1 one thread, N > 1 N threads sharing the rails. */
static inline int h_engine(const char *name, const char *provider, unsigned rails,
                           int progress_thread, xr_engine **out)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.policy = h_policy;
    o.ignore_env = 1;
    o.connect_on_load = h_connect_on_load;
    o.stage.host = h_stage_host;
    o.progress_thread = progress_thread > 0;
    o.progress_threads = progress_thread > 1 ? (unsigned)progress_thread : 0;
    o.health.deadline_ms = h_deadline_ms();
    o.health.connect_ms = h_connect_deadline_ms();
    const char *lv = getenv("XR_TEST_LOG"); /* 0-3: the engines' log level, for debugging */
    if (lv && *lv)
        o.log_level = atoi(lv);
    /* Rails on loopback only: tcp on the lo domain (its first entry is
     * 127.0.0.1), shm is host-local. No src_addr: with one, rxm's per-endpoint
     * interface lookup costs about 100 ms a rail instead of 40. */
    xr_rail_spec spec = {.provider = provider, .count = rails};
    if (strstr(provider, "tcp"))
        spec.domain = "lo";
    o.rails = &spec;
    o.n_rail_specs = 1;
    return xr_engine_create(&o, out);
}

/* Send this engine's metadata to the other process, as a real deployment
 * would through its own side channel. */
/* One rail counter, summed over the engine's rails. */
static inline uint64_t h_rails_sum(xr_engine *e, size_t offset)
{
    uint64_t sum = 0;
    for (int i = 0; i < xr_rail_count(e); i++) {
        xr_rail_info ri;
        H_OK(xr_rail_info_get(e, (unsigned)i, &ri));
        sum += *(const uint64_t *)((const char *)&ri.counters + offset);
    }
    return sum;
}
#define H_RAILS_SUM(e, field) h_rails_sum((e), offsetof(xr_rail_counters, field))

static inline void h_send_metadata(int fd, xr_engine *e)
{
    size_t len = 0;
    H_CHECK(xr_metadata_get(e, NULL, &len) == XR_ETOOSMALL, "metadata size query");
    void *md = malloc(len);
    H_OK(xr_metadata_get(e, md, &len));
    h_send(fd, md, len);
    free(md);
}

/* Receive the other process's metadata and load it as a peer. */
static inline xr_peer *h_load_peer(int fd, xr_engine *e)
{
    uint64_t len;
    void *md = h_recv(fd, NULL, &len);
    xr_peer *p;
    H_OK(xr_peer_load(e, md, len, &p));
    free(md);
    return p;
}

/* A provider that is absent from this libfabric skips the test, never passes it. */
static inline void h_require_provider(const char *provider)
{
    xr_engine *e;
    int rc = h_engine("probe", provider, 1, 0, &e);
    if (rc == XR_ENORAIL) {
        printf("SKIPPED: provider %s is not available: %s\n", provider,
               xr_engine_last_error(NULL));
        exit(H_SKIP);
    }
    H_CHECK(rc == 0, "engine on %s: %s", provider, xr_engine_last_error(NULL));
    /* libfabric 1.x answers a request for "tcp" RDM endpoints with rxm over
     * tcp; only 2.x has a tcp provider of its own. */
    xr_rail_info ri;
    H_CHECK(xr_rail_info_get(e, 0, &ri) == 0, "rail info");
    if (strcmp(ri.provider, provider)) {
        printf("SKIPPED: provider %s is %s in this libfabric\n", provider, ri.provider);
        xr_engine_destroy(e);
        exit(H_SKIP);
    }
    xr_engine_destroy(e);
}

/* Seconds on the monotonic clock. */
static inline double h_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- data ---- */

static inline uint64_t h_rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Byte at absolute position `pos` of stream `tag`: anything misplaced shows. */
static inline uint8_t h_byte(uint64_t tag, uint64_t pos)
{
    uint64_t x = (pos + 1) * 0x9E3779B97F4A7C15ull ^ tag * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 29;
    return (uint8_t)(x ^ (x >> 17));
}

static inline void h_fill(uint8_t *p, size_t len, uint64_t tag, uint64_t pos)
{
    for (size_t i = 0; i < len; i++)
        p[i] = h_byte(tag, pos + i);
}

/* Index of the first wrong byte, or -1. */
static inline long long h_verify(const uint8_t *p, size_t len, uint64_t tag, uint64_t pos)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != h_byte(tag, pos + i))
            return (long long)i;
    return -1;
}

/* Fork a child that runs fn(fd, arg) and exits; *pid gets it, and the
 * return is this side's end of the socketpair joining them. The child dies
 * with this process, so that one stopped by a test never outlives it. */
static inline int h_spawn(void (*fn)(int fd, void *arg), void *arg, pid_t *pid)
{
    int sv[2];
    H_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    fflush(NULL);
    *pid = fork();
    H_CHECK(*pid >= 0, "fork");
    if (*pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(sv[0]);
        fn(sv[1], arg);
        close(sv[1]);
        exit(0); /* not _exit: LeakSanitizer checks the child at exit too */
    }
    close(sv[1]);
    return sv[0];
}

/* Run `target` in this process and `initiator` in a child, joined by a socketpair. */
static inline int h_run_pair(void (*target)(int fd, void *arg), void (*initiator)(int fd, void *arg),
                             void *arg)
{
    int sv[2];
    H_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    fflush(NULL);
    pid_t pid = fork();
    H_CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(sv[0]);
        h_role = "initiator";
        initiator(sv[1], arg);
        close(sv[1]);
        exit(0); /* not _exit: LeakSanitizer checks the child at exit too */
    }
    close(sv[1]);
    h_role = "target";
    target(sv[0], arg);
    close(sv[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        h_log("initiator process failed (status 0x%x)", st);
        return 1;
    }
    return 0;
}

#endif
