/*
 * many_pairs.c - one prefill worker feeding two decode workers, each decode
 * with its own rail count and its own rail policy script.
 *
 *   many_pairs [--provider P] [--rails N] [--layers N] [--blocks N] [--block-kib N]
 *              [--etcd URL [--ttl-ms N]]
 *
 * Three processes. Prefill owns a KV pool (layer-major: layer l, block b at
 * base + (l * blocks + b) * block_bytes), publishes it read-only with the
 * kv_cache.lua layout, and hands its metadata to both decoders over their
 * pipes. Each decoder pulls a different request's blocks with one READ and
 * plans it with its own policy:
 *
 *   decode-0: N rails, even_stripe.lua  - every block striped over all of them
 *   decode-1: 2 rails, single_rail.lua  - one rail per transfer
 *
 * Prefill's engine has N rails, so decode-1 also shows peers with different
 * rail counts pairing up. Each decoder checks the published pool shape
 * before the READ, verifies every byte, prints how its policy split the
 * transfer over its rails, and tells prefill with a notification. Exit 0
 * only if both verified.
 *
 * With --etcd URL there are no pipes for metadata: all three publish
 * themselves in the etcd directory (each with its own pool's shape), the
 * decoders look prefill up by name,
 * and prefill looks each decoder up when its notification comes. Then
 * prefill kills decode-1 (SIGKILL, as a crash would) and waits for the
 * directory to say it left: exit 0 only if that came within the lease's
 * TTL plus 1 s, a notification to it is refused with XR_EGONE, and
 * decode-0, still alive, is answered.
 */
#include "xrail.h"

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), exit(1))
#define CHECK(call)                                                                    \
    do {                                                                               \
        int rc_ = (call);                                                              \
        if (rc_ < 0)                                                                   \
            FAIL("%s: %s: %s", #call, xr_err_name(rc_), xr_engine_last_error(NULL));    \
    } while (0)

typedef struct cfg {
    const char *provider;
    unsigned rails, layers, blocks, block_kib;
    const char *etcd; /* --etcd URL: peers found through the directory */
    unsigned ttl_ms;  /* --ttl-ms: the lease; a killed worker leaves within it */
} cfg;

/* A decoder: its name, rails, policy, and which prefill blocks it wants. */
typedef struct decoder {
    const char *name, *policy;
    unsigned rails, first_block, nblocks;
} decoder;

/* Every byte of prefill block (layer, block): known to all three processes. */
static uint8_t pattern(unsigned layer, unsigned block, size_t i)
{
    uint64_t v = (((uint64_t)layer * 1000003u + block) << 20) ^ i;
    v *= 0xD6E8FEB86659FD93ull;
    return (uint8_t)(v >> 59 ^ v >> 31);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static xr_engine *open_engine(const char *name, const char *provider, unsigned rails,
                              const char *policy)
{
    xr_engine_opts eo;
    xr_engine_opts_init(&eo);
    eo.name = name;
    eo.ignore_env = 1;
    eo.script_path = XR_EXAMPLE_SCRIPTS;
    eo.layout = "kv_cache.lua";
    eo.policy = policy;
    xr_rail_spec spec = {.provider = provider, .count = rails,
                         .domain = strstr(provider, "tcp") ? "lo" : NULL};
    eo.rails = &spec;
    eo.n_rail_specs = 1;
    xr_engine *e;
    CHECK(xr_engine_create(&eo, &e));
    return e;
}

/* Whether a child has ended, leaving it to be reaped later. */
static bool has_ended(pid_t pid)
{
    siginfo_t si = {0};
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* A pool's shape, as the kv_cache.lua layout publishes it. */
static void describe_pool(xr_engine *e, const void *base, unsigned layers, unsigned blocks,
                          size_t block_bytes)
{
    uint64_t b = (uintptr_t)base;
    uint32_t v;
    CHECK(xr_metadata_set_field(e, "model", "demo-uint8", 10));
    CHECK(xr_metadata_set_field(e, "kv.base", &b, sizeof b));
    CHECK(xr_metadata_set_field(e, "kv.layers", (v = layers, &v), sizeof v));
    CHECK(xr_metadata_set_field(e, "kv.blocks", (v = blocks, &v), sizeof v));
    CHECK(xr_metadata_set_field(e, "kv.block_bytes", (v = (uint32_t)block_bytes, &v), sizeof v));
    CHECK(xr_metadata_set_field(e, "kv.dtype", "uint8", 5));
}

/* --etcd: publish this worker under the example's namespace, once its pool
 * and fields are registered, so that no peer sees it half made. */
static void publish(xr_engine *e, const cfg *c)
{
    xr_dir_opts d;
    xr_dir_opts_init(&d);
    d.endpoints = c->etcd;
    d.prefix = "/xrail-many-pairs/";
    d.ttl_ms = (int)c->ttl_ms;
    CHECK(xr_dir_open(e, &d));
}

/* Length-prefixed messages over a pipe. */
static void put_msg(int fd, const void *p, uint64_t n)
{
    if (write(fd, &n, sizeof n) != (ssize_t)sizeof n || write(fd, p, n) != (ssize_t)n)
        FAIL("pipe: short write");
}

static void *get_msg(int fd, uint64_t *n)
{
    if (read(fd, n, sizeof *n) != (ssize_t)sizeof *n)
        FAIL("pipe: closed");
    uint8_t *p = malloc(*n ? *n : 1);
    for (uint64_t got = 0; got < *n;) {
        ssize_t r = read(fd, p + got, *n - got);
        if (r <= 0)
            FAIL("pipe: closed mid-message");
        got += (uint64_t)r;
    }
    return p;
}

static uint32_t field_u32(xr_peer *p, const char *name)
{
    uint32_t v = 0;
    size_t n = sizeof v;
    CHECK(xr_peer_field(p, name, &v, &n));
    return v;
}

static int run_decoder(const cfg *c, const decoder *d, int fd)
{
    xr_engine *e = open_engine(d->name, c->provider, d->rails, d->policy);
    /* Our own pool, in the same layout: the request's blocks land at the
     * front of each layer. It is registered and described before the
     * engine publishes itself, as kv_cache.lua asks. */
    size_t bb = (size_t)c->block_kib * 1024, nd = (size_t)c->layers * d->nblocks, bytes = nd * bb;
    uint8_t *kv = aligned_alloc(4096, bytes);
    memset(kv, 0, bytes);
    xr_region *g;
    CHECK(xr_mem_register(e, kv, bytes, XR_MEM_HOST, 0, XR_ACCESS_WRITE, &g));
    describe_pool(e, kv, c->layers, d->nblocks, bb);
    xr_peer *p;
    if (c->etcd) { /* by name; the directory owns the handle */
        publish(e, c);
        CHECK(xr_peer_lookup(e, "prefill", 60000, &p));
    } else {
        uint64_t mdlen;
        void *md = get_msg(fd, &mdlen);
        CHECK(xr_peer_load(e, md, mdlen, &p));
        free(md);
    }
    /* The published pool, checked before a byte moves. */
    uint64_t base = 0;
    size_t n8 = sizeof base;
    CHECK(xr_peer_field(p, "kv.base", &base, &n8));
    uint32_t layers = field_u32(p, "kv.layers"), blocks = field_u32(p, "kv.blocks");
    if (layers != c->layers || field_u32(p, "kv.block_bytes") != bb ||
        d->first_block + d->nblocks > blocks)
        FAIL("%s: prefill's pool is %u layers x %u blocks x %u bytes; this decoder expects "
             "%u layers x %u KiB blocks", d->name, layers, blocks,
             field_u32(p, "kv.block_bytes"), c->layers, c->block_kib);
    xr_iov *local = malloc(nd * sizeof *local), *remote = malloc(nd * sizeof *remote);
    for (unsigned l = 0; l < layers; l++)
        for (unsigned i = 0; i < d->nblocks; i++) {
            size_t k = (size_t)l * d->nblocks + i;
            local[k] = (xr_iov){(uintptr_t)kv + k * bb, bb};
            remote[k] = (xr_iov){base + ((size_t)l * blocks + d->first_block + i) * bb, bb};
        }
    char plan[1024];
    CHECK(xr_policy_explain(e, p, XR_OP_READ, XR_MEM_HOST, -1, bb, plan, sizeof plan));
    xr_xfer *x;
    CHECK(xr_xfer_create(e, p, XR_OP_READ, local, remote, nd, NULL, 0, &x));
    CHECK(xr_xfer_post(x));
    int rc = xr_xfer_wait(x, 60000);
    if (rc)
        FAIL("%s: READ failed: %s: %s", d->name, xr_err_name(rc), xr_xfer_error(x));
    size_t bad = 0;
    for (unsigned l = 0; l < layers; l++)
        for (unsigned i = 0; i < d->nblocks; i++)
            for (size_t k = 0; k < bb; k++)
                bad += kv[((size_t)l * d->nblocks + i) * bb + k] !=
                       pattern(l, d->first_block + i, k);
    char line[512];
    int w = snprintf(line, sizeof line, "%s: %u rails, policy %s, %u prefill rails: read %u "
                                        "blocks x %u layers (%.1f MiB) in %zu chunks:",
                     d->name, d->rails, d->policy, xr_peer_rail_count(p), d->nblocks, layers,
                     (double)bytes / (1 << 20), xr_xfer_chunk_count(x, -1));
    for (unsigned r = 0; r < d->rails && w < (int)sizeof line; r++)
        w += snprintf(line + w, sizeof line - (size_t)w, " rail%u=%zu", r,
                      xr_xfer_chunk_count(x, (int)r));
    printf("%s; %s\n  plan for one block: %s", line, bad ? "VERIFY FAILED" : "every byte verified",
           plan);
    fflush(stdout);
    xr_xfer_release(x);
    /* Tell prefill, over xrail too: its blocks can be freed. */
    char done[64];
    int dl = snprintf(done, sizeof done, "%s %s", d->name, bad ? "bad" : "ok");
    CHECK(xr_notif_send(e, p, done, (size_t)dl));
    if (c->etcd) { /* prefill answers over xrail too (xr_notif_wait drives progress) */
        char from[64], ack[16];
        size_t n = sizeof ack;
        CHECK(xr_notif_wait(e, 120000, from, sizeof from, ack, &n));
    } else {
        /* Drive progress until prefill says it got it: without a progress
         * thread, the queued notification leaves only while we do. */
        for (struct pollfd pf = {.fd = fd, .events = POLLIN}; poll(&pf, 1, 1) == 0;)
            xr_progress(e);
        uint64_t ack;
        free(get_msg(fd, &ack));
        CHECK(xr_peer_unload(p));
    }
    CHECK(xr_mem_deregister(g));
    xr_engine_destroy(e);
    free(kv);
    free(local);
    free(remote);
    return bad ? 1 : 0;
}

/* --etcd, once both decoders verified: kill decode-1 as a crash would, and
 * wait for the directory to say it left, driving progress meanwhile (the
 * directory's own thread renews and watches; the engine fd wakes us). Then
 * a notification to it must be refused, and decode-0, alive, is answered.
 * True if the leave came within the TTL plus 1 s. */
static bool crash_one(xr_engine *e, const cfg *c, const decoder *dec, const pid_t *pid)
{
    xr_peer *gone, *alive;
    CHECK(xr_peer_lookup(e, dec[1].name, 10000, &gone));
    CHECK(xr_peer_lookup(e, dec[0].name, 10000, &alive));
    int efd = xr_engine_fd(e);
    CHECK(efd);
    xr_dir_event ev;
    while (xr_dir_event_get(e, &ev) == 0) /* the joins so far */
        ;
    double t0 = now_s(), seen = -1, bound = c->ttl_ms / 1e3 + 1;
    kill(pid[1], SIGKILL);
    printf("prefill: killed %s (SIGKILL)\n", dec[1].name);
    fflush(stdout);
    while (seen < 0 && now_s() - t0 < bound + 10) {
        xr_progress(e);
        while (seen < 0 && xr_dir_event_get(e, &ev) == 0)
            if (ev.kind == XR_DIR_LEAVE && !strcmp(ev.name, dec[1].name))
                seen = now_s() - t0;
        struct pollfd pf = {.fd = efd, .events = POLLIN};
        uint64_t drain;
        if (seen < 0 && poll(&pf, 1, 10) == 1 && read(efd, &drain, sizeof drain) < 0)
            FAIL("engine fd: read failed");
    }
    int refused = xr_notif_send(e, gone, "ack", 3);
    CHECK(xr_notif_send(e, alive, "ack", 3));
    if (seen < 0)
        printf("prefill: %s's leave not seen in %.1f s\n", dec[1].name, bound + 10);
    else
        printf("prefill: the directory saw %s leave %.2f s after the kill (lease TTL %.1f s); "
               "a notification to it now: %s\n", dec[1].name, seen, c->ttl_ms / 1e3,
               xr_err_name(refused));
    fflush(stdout);
    /* decode-0 leaves once it has its answer; drive progress until it has. */
    for (double t1 = now_s(); now_s() - t1 < 30;) {
        xr_progress(e);
        if (has_ended(pid[0]))
            break;
    }
    return seen >= 0 && seen <= bound && refused == XR_EGONE;
}

int main(int argc, char **argv)
{
    cfg c = {"tcp;ofi_rxm", 4, 8, 64, 64, NULL, 3000};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--etcd"))
            c.etcd = argv[i + 1];
        else if (!strcmp(argv[i], "--ttl-ms"))
            c.ttl_ms = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--provider"))
            c.provider = argv[i + 1];
        else if (!strcmp(argv[i], "--rails"))
            c.rails = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers"))
            c.layers = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--blocks"))
            c.blocks = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--block-kib"))
            c.block_kib = (unsigned)atoi(argv[i + 1]);
        else
            FAIL("usage: %s [--provider P] [--rails N] [--layers N] [--blocks N] "
                 "[--block-kib N] [--etcd URL [--ttl-ms N]]", argv[0]);
    }
    if (argc % 2 == 0 || c.rails < 2 || !c.layers || c.blocks < 4 || !c.block_kib ||
        c.ttl_ms < 2000)
        FAIL("usage: %s [--provider P] [--rails N>=2] [--layers N] [--blocks N>=4] "
             "[--block-kib N] [--etcd URL [--ttl-ms N>=2000]]", argv[0]);
    decoder dec[2] = {
        {"decode-0", "even_stripe.lua", c.rails, 0, c.blocks / 2},
        {"decode-1", "single_rail.lua", 2, c.blocks / 2, c.blocks / 4},
    };
    int pipes[2][2]; /* per decoder: prefill writes, the decoder reads */
    pid_t pid[2];
    fflush(stdout);
    for (int k = 0; k < 2; k++) {
        if (pipe(pipes[k]))
            FAIL("pipe");
        pid[k] = fork();
        if (pid[k] == 0) {
            close(pipes[k][1]);
            exit(run_decoder(&c, &dec[k], pipes[k][0]));
        }
        close(pipes[k][0]);
    }

    /* Prefill: engines are made after fork (a forked child must not
     * inherit one). */
    xr_engine *e = open_engine("prefill", c.provider, c.rails, NULL);
    size_t bb = (size_t)c.block_kib * 1024, bytes = (size_t)c.layers * c.blocks * bb;
    uint8_t *kv = aligned_alloc(4096, bytes);
    for (unsigned l = 0; l < c.layers; l++)
        for (unsigned b = 0; b < c.blocks; b++)
            for (size_t i = 0; i < bb; i++)
                kv[((size_t)l * c.blocks + b) * bb + i] = pattern(l, b, i);
    xr_region *g;
    CHECK(xr_mem_register(e, kv, bytes, XR_MEM_HOST, 0, XR_ACCESS_READ, &g));
    describe_pool(e, kv, c.layers, c.blocks, bb);
    size_t mdlen = 0;
    xr_metadata_get(e, NULL, &mdlen);
    void *md = malloc(mdlen);
    CHECK(xr_metadata_get(e, md, &mdlen));
    printf("prefill: %u %s rails, pool of %u layers x %u blocks x %u KiB published read-only "
           "to 2 decoders%s\n", c.rails, c.provider, c.layers, c.blocks, c.block_kib,
           c.etcd ? " through etcd" : "");
    fflush(stdout);
    if (c.etcd)
        publish(e, &c);
    else
        for (int k = 0; k < 2; k++)
            put_msg(pipes[k][1], md, mdlen);
    free(md);

    /* Both decoders read at once; prefill waits for both to say they are
     * done, driving progress (it serves their READs) while it waits. */
    int oks = 0;
    for (int got = 0; got < 2;) {
        char from[64], msg[64];
        size_t n = sizeof msg - 1;
        int rc = xr_notif_wait(e, 1000, from, sizeof from, msg, &n);
        if (rc == XR_ETIMEDOUT) { /* a decoder that failed will not write */
            for (int k = 0; k < 2; k++)
                if (has_ended(pid[k]))
                    FAIL("prefill: %s ended before it said it was done", dec[k].name);
            continue;
        }
        CHECK(rc);
        msg[n] = 0;
        printf("prefill: notification from %s: \"%s\"\n", from, msg);
        oks += strstr(msg, " ok") != NULL;
        if (!c.etcd)
            for (int k = 0; k < 2; k++)
                if (!strcmp(from, dec[k].name))
                    put_msg(pipes[k][1], "", 0);
        got++;
    }
    bool left_in_time = true;
    if (c.etcd)
        left_in_time = crash_one(e, &c, dec, pid);
    int st[2];
    for (int k = 0; k < 2; k++)
        waitpid(pid[k], &st[k], 0);
    CHECK(xr_mem_deregister(g));
    xr_engine_destroy(e);
    free(kv);
    /* With --etcd, decode-1 was killed: it is the one that may not exit 0. */
    bool all = oks == 2 && left_in_time;
    for (int k = 0; k < (c.etcd ? 1 : 2); k++)
        all = all && WIFEXITED(st[k]) && WEXITSTATUS(st[k]) == 0;
    if (c.etcd)
        all = all && WIFSIGNALED(st[1]) && WTERMSIG(st[1]) == SIGKILL;
    printf("%s%s\n", all ? "many_pairs: both decoders verified every byte" : "many_pairs: FAILED",
           all && c.etcd ? "; the killed one left the directory within its TTL" : "");
    return all ? 0 : 1;
}
