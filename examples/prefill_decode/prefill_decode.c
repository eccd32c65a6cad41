/*
 * prefill_decode.c - move a request's KV-cache blocks from a prefill worker
 * to a decode worker with xrail, the way a disaggregated inference server
 * does.
 *
 *   prefill_decode                      both roles, as two processes (the demo)
 *   prefill_decode decode  [options]    the decode worker alone
 *   prefill_decode prefill [options]    the prefill worker alone
 *
 * options: --provider P (default "tcp;ofi_rxm"), --rails N (4), --port N
 *          (18515), --layers N (16), --blocks N (64), --block-kib N (64),
 *          --request N (blocks to move, 24), --layout F (kv_cache.lua),
 *          --layerwise (one transfer per layer, each posted into a transfer
 *          group as soon as prefill has computed it; one notification after
 *          all), --compute-us N (prefill's time per layer, 0; with it the
 *          prefill side prints the time from the last layer ready to the
 *          notification delivered, and then the earlier layers' own time
 *          on the wire, which layer by layer is to save),
 *          --etcd URL (no side channel: both workers publish themselves in
 *          the etcd directory and find each other by name; the timing and
 *          the verdict travel as xrail notifications),
 *          --gpu P,D (builds with CUDA: prefill's KV cache on GPU P, decode's
 *          on GPU D, both from cudaMalloc; the bytes are checked on the host
 *          after copying decode's blocks back),
 *          --config F (the rails, policy and the rest from config script F,
 *          instead of --provider and --rails),
 *          --duration S (before the request, prefill moves the request's
 *          blocks again and again for S seconds, 4 transfers in flight, and
 *          both sides print the rate; decode's check after the request
 *          covers every block, as the bytes are the same),
 *          --start-at T (with --duration: wait until T, seconds since the
 *          epoch, so that several pairs move at once: scripts/gpu-suite.sh
 *          node)
 *
 * The KV cache is layer-major: layer l, block b starts at
 * base + (l * blocks + b) * block_bytes. The decode side has a pool twice
 * as large and its own block ids. It publishes the pool's geometry as
 * custom metadata fields (model, kv.base, kv.layers, kv.blocks,
 * kv.block_bytes, kv.dtype), typed by the layout script
 * scripts/layout/kv_cache.lua, which the prefill side checks before it
 * moves a byte; a decode worker whose layout lacks them is refused at
 * xr_peer_load, naming the first missing field. The
 * metadata blob and, afterwards, the prefill side's timing travel over a
 * small TCP side channel on 127.0.0.1; the KV bytes travel over xrail.
 */
#include "xrail.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef XR_EXAMPLE_CUDA
#include <cuda_runtime_api.h>
#endif

typedef struct opts {
    const char *provider, *layout;
    const char *etcd;    /* --etcd URL: peers found through the directory, no side channel */
    unsigned rails, port, layers, blocks, block_kib, request;
    unsigned compute_us; /* --compute-us: prefill's time per layer before it is ready */
    int layerwise;       /* --layerwise: each layer goes as soon as it is ready, in a group */
    int gpu[2]; /* --gpu P,D: prefill's and decode's device; -1: host memory */
    const char *config;  /* --config F: rails and settings from a config script */
    double duration_s;   /* --duration S: the sustained phase before the request; 0 none */
    double start_at;     /* --start-at T: when it starts (CLOCK_REALTIME s); 0 at once */
} opts;

/* The decode side's pool, as published in its metadata fields. */
typedef struct pool_info {
    uint64_t base;
    uint32_t layers, blocks, block_bytes;
} pool_info;

/* The notification: which prefill block went to which decode block. */
typedef struct request_hdr {
    uint64_t id;
    uint32_t nblocks;
} request_hdr;

/* After the transfer, over the side channel: how it went. */
typedef struct stats {
    uint64_t ns, bytes, descriptors;
    uint32_t nrails;
    uint64_t rail_bytes[XR_MAX_RAILS];
    uint64_t sustain_ns, sustain_bytes; /* --duration's phase; 0 without */
} stats;

#define DIE(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), exit(1))
#define TRY(call)                                                                      \
    do {                                                                               \
        int rc_ = (call);                                                              \
        if (rc_ < 0)                                                                   \
            DIE("%s failed: %s: %s", #call, xr_err_name(rc_), xr_engine_last_error(NULL)); \
    } while (0)

static uint8_t kv_byte(unsigned layer, unsigned block, size_t off)
{
    uint64_t x = ((uint64_t)layer << 40 | (uint64_t)block << 24) + off;
    x *= 0x9E3779B97F4A7C15ull;
    return (uint8_t)(x >> 56);
}

/* ---- the KV pool: host memory, or a GPU's ---- */

/* The pool itself: `host` for -1, else a copy of it on GPU `gpu`. */
static uint8_t *pool_new(int gpu, uint8_t *host, size_t bytes)
{
    if (gpu < 0)
        return host;
#ifdef XR_EXAMPLE_CUDA
    void *d = NULL;
    if (cudaSetDevice(gpu) != cudaSuccess || cudaMalloc(&d, bytes) != cudaSuccess ||
        cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
        DIE("cannot make a %zu-byte pool on GPU %d", bytes, gpu);
    return d;
#else
    (void)bytes;
    DIE("--gpu: this build has no CUDA");
#endif
}

/* The pool's bytes, on the host: itself, or a copy back from the GPU. */
static const uint8_t *pool_host(int gpu, const uint8_t *pool, uint8_t *scratch, size_t bytes)
{
#ifdef XR_EXAMPLE_CUDA
    if (gpu >= 0) {
        if (cudaMemcpy(scratch, pool, bytes, cudaMemcpyDeviceToHost) != cudaSuccess)
            DIE("cannot copy the pool back from GPU %d", gpu);
        return scratch;
    }
#endif
    (void)gpu, (void)scratch, (void)bytes;
    return pool;
}

static void pool_free(int gpu, uint8_t *pool, uint8_t *host)
{
#ifdef XR_EXAMPLE_CUDA
    if (gpu >= 0)
        cudaFree(pool);
#endif
    (void)gpu, (void)pool;
    free(host);
}

/* ---- side channel ---- */

static void xwrite(int fd, const void *p, size_t n)
{
    for (const char *c = p; n;) {
        ssize_t k = write(fd, c, n);
        if (k <= 0)
            DIE("side channel: write failed");
        c += k, n -= (size_t)k;
    }
}

static void xread(int fd, void *p, size_t n)
{
    for (char *c = p; n;) {
        ssize_t k = read(fd, c, n);
        if (k <= 0)
            DIE("side channel: the other side went away");
        c += k, n -= (size_t)k;
    }
}

static int listen_on(unsigned port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 1))
        DIE("side channel: cannot listen on 127.0.0.1:%u", port);
    return s;
}

static int connect_to(unsigned port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int tries = 0; tries < 200; tries++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
            return s;
        close(s);
        usleep(50000);
    }
    DIE("side channel: nobody listens on 127.0.0.1:%u", port);
}

static xr_engine *engine(const char *name, const opts *o)
{
    xr_engine_opts eo;
    xr_engine_opts_init(&eo);
    eo.name = name;
    xr_rail_spec spec = {.provider = o->provider, .count = o->rails};
    if (strstr(o->provider, "tcp")) /* loopback rails: many endpoints on lo */
        spec.domain = "lo";
    if (o->config) { /* its rails, e.g. tagged with their GPU for numa_local.lua */
        eo.config = o->config;
    } else {
        eo.rails = &spec;
        eo.n_rail_specs = 1;
    }
    eo.layout = o->layout;
    /* A thread drives the rails, as in a server: prefill's layers move
     * while it computes the next, and decode serves the WRITEs landing in
     * its pool while it sleeps in xr_notif_wait. */
    eo.progress_thread = 1;
    /* The repository's scripts first; XRAIL_SCRIPT_PATH and the installed
     * ones after. */
    eo.script_path = XR_EXAMPLE_SCRIPTS;
    xr_engine *e;
    TRY(xr_engine_create(&eo, &e));
    return e;
}

/* --etcd: publish this worker, once what peers must see is registered (a
 * later change is published again, but a peer may look in between). A
 * short lease: a killed worker leaves within 5 s. */
static void publish(xr_engine *e, const opts *o)
{
    xr_dir_opts d;
    xr_dir_opts_init(&d);
    d.endpoints = o->etcd;
    d.prefix = "/xrail-demo/";
    d.ttl_ms = 5000;
    TRY(xr_dir_open(e, &d));
}

/* ---- decode ---- */

static int decode(const opts *o, int lfd)
{
    xr_engine *e = engine("decode-0", o);
    pool_info pool = {.layers = o->layers, .blocks = 2 * o->blocks,
                      .block_bytes = o->block_kib * 1024};
    size_t bytes = (size_t)pool.layers * pool.blocks * pool.block_bytes;
    int gpu = o->gpu[1];
    uint8_t *host = aligned_alloc(4096, bytes); /* the pool, or its copy back from the GPU */
    if (!host)
        DIE("decode: out of memory for the pool");
    memset(host, 0, bytes);
    uint8_t *kv = pool_new(gpu, host, bytes);
    xr_region *reg;
    TRY(xr_mem_register(e, kv, bytes, gpu >= 0 ? XR_MEM_CUDA : XR_MEM_HOST, gpu >= 0 ? gpu : 0,
                        XR_ACCESS_WRITE, &reg));
    pool.base = (uintptr_t)kv;
    /* What a prefill worker must know, and check, about this pool. */
    TRY(xr_metadata_set_field(e, "kv.base", &pool.base, sizeof pool.base));
    TRY(xr_metadata_set_field(e, "kv.layers", &pool.layers, sizeof pool.layers));
    TRY(xr_metadata_set_field(e, "kv.blocks", &pool.blocks, sizeof pool.blocks));
    TRY(xr_metadata_set_field(e, "kv.block_bytes", &pool.block_bytes, sizeof pool.block_bytes));
    TRY(xr_metadata_set_field(e, "kv.dtype", "uint8", 5));
    TRY(xr_metadata_set_field(e, "model", "demo-uint8", 10));

    int fd = -1;
    if (!o->etcd) { /* the side channel: our metadata to whoever connects */
        fd = accept(lfd, NULL, NULL);
        close(lfd);
        size_t len = 0;
        xr_metadata_get(e, NULL, &len);
        void *md = malloc(len);
        TRY(xr_metadata_get(e, md, &len));
        uint64_t l64 = len;
        xwrite(fd, &l64, sizeof l64);
        xwrite(fd, md, len);
        free(md);
    } else {
        publish(e, o);
    }
    printf("decode:  %u rails, KV pool %u layers x %u blocks x %u KiB registered in %s; "
           "waiting\n", xr_rail_count(e), pool.layers, pool.blocks, o->block_kib,
           gpu >= 0 ? "GPU memory" : "host memory");
    fflush(stdout);

    /* The notification arrives only once every byte of the transfer is here. */
    char from[64];
    size_t cap = 1 << 20, n;
    uint8_t *msg = malloc(cap);
    /* Asleep until it comes: the progress thread says when. */
    n = cap;
    TRY(xr_notif_wait(e, 120000, from, sizeof from, msg, &n));
    request_hdr h;
    if (n < sizeof h)
        DIE("decode: short notification (%zu bytes)", n);
    memcpy(&h, msg, sizeof h);
    if (n != sizeof h + (size_t)h.nblocks * 8)
        DIE("decode: notification of %zu bytes does not match %u blocks", n, h.nblocks);
    const uint32_t *pairs = (const uint32_t *)(msg + sizeof h);
    size_t bad = 0;
    const uint8_t *seen = pool_host(gpu, kv, host, bytes);
    for (uint32_t i = 0; i < h.nblocks; i++) {
        uint32_t src = pairs[2 * i], dst = pairs[2 * i + 1];
        for (unsigned l = 0; l < pool.layers; l++) {
            const uint8_t *b = seen + ((size_t)l * pool.blocks + dst) * pool.block_bytes;
            for (size_t k = 0; k < pool.block_bytes; k++)
                bad += b[k] != kv_byte(l, src, k);
        }
    }
    stats st;
    if (o->etcd) { /* prefill's figures come as a notification after the request's */
        n = cap;
        TRY(xr_notif_wait(e, 60000, from, sizeof from, msg, &n));
        if (n != sizeof st)
            DIE("decode: expected prefill's figures (%zu bytes), got %zu", sizeof st, n);
        memcpy(&st, msg, sizeof st);
    } else {
        xread(fd, &st, sizeof st);
    }
    double mib = (double)st.bytes / (1 << 20), secs = (double)st.ns / 1e9;
    printf("decode:  request %llu from '%s': %u blocks x %u layers = %.1f MiB in %llu "
           "descriptors\n", (unsigned long long)h.id, from, h.nblocks, pool.layers, mib,
           (unsigned long long)st.descriptors);
    printf("decode:  rails used:");
    for (uint32_t i = 0; i < st.nrails; i++)
        printf(" rail%u=%.1fMiB", i, (double)st.rail_bytes[i] / (1 << 20));
    printf("\ndecode:  %.2f ms, %.2f GB/s\n", secs * 1e3, (double)st.bytes / secs / 1e9);
    if (st.sustain_ns)
        printf("decode:  sustained %.2f GB/s for %.2f s before the request\n",
               (double)st.sustain_bytes / ((double)st.sustain_ns / 1e9) / 1e9,
               (double)st.sustain_ns / 1e9);
    if (bad)
        printf("decode:  VERIFY FAILED: %zu bytes differ\n", bad);
    else
        printf("decode:  verified every byte of %u blocks: OK\n", h.nblocks);
    uint8_t ack = bad == 0;
    if (o->etcd) {
        xr_peer *pf;
        TRY(xr_peer_lookup(e, from, 30000, &pf));
        TRY(xr_notif_send(e, pf, &ack, 1));
        /* Sent once it has left: wait for its answer before closing. */
        char who[64];
        uint8_t bye;
        size_t nb = 1;
        TRY(xr_notif_wait(e, 60000, who, sizeof who, &bye, &nb));
    } else {
        xwrite(fd, &ack, 1);
        close(fd);
    }
    free(msg);
    TRY(xr_mem_deregister(reg));
    xr_engine_destroy(e);
    pool_free(gpu, kv, host);
    return bad ? 1 : 0;
}

/* ---- prefill ---- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (us && nanosleep(&ts, &ts))
        ;
}

#define SUSTAIN_WINDOW 4

/* --duration: the request's descriptors again and again, SUSTAIN_WINDOW
 * transfers in flight, from --start-at for the given time. No
 * notification: the request that follows writes the same bytes to the same
 * blocks, and decode checks them after it. */
static void sustain(xr_engine *e, xr_peer *peer, const xr_iov *local, const xr_iov *remote,
                    size_t nd, size_t bb, const opts *o, stats *st)
{
    xr_xfer *w[SUSTAIN_WINDOW];
    bool live[SUSTAIN_WINDOW];
    for (unsigned k = 0; k < SUSTAIN_WINDOW; k++)
        TRY(xr_xfer_create(e, peer, XR_OP_WRITE, local, remote, nd, NULL, 0, &w[k]));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double wait_s = o->start_at - ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    if (wait_s > 0)
        sleep_us((uint64_t)(wait_s * 1e6));
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(o->duration_s * 1e9), done = 0;
    for (unsigned k = 0; k < SUSTAIN_WINDOW; k++) {
        TRY(xr_xfer_post(w[k]));
        live[k] = true;
    }
    for (unsigned k = 0, left = SUSTAIN_WINDOW; left; k = (k + 1) % SUSTAIN_WINDOW) {
        if (!live[k])
            continue;
        int rc = xr_xfer_wait(w[k], 60000);
        if (rc)
            DIE("prefill: sustained transfer failed: %s: %s", xr_err_name(rc), xr_xfer_error(w[k]));
        done++;
        if (now_ns() < end)
            TRY(xr_xfer_post(w[k]));
        else
            live[k] = false, left--;
    }
    st->sustain_ns = now_ns() - t0;
    st->sustain_bytes = done * nd * bb;
    for (unsigned k = 0; k < SUSTAIN_WINDOW; k++)
        xr_xfer_release(w[k]);
    printf("prefill: sustained %.2f GB/s for %.2f s (%llu transfers of %.1f MiB, %u in flight)\n",
           (double)st->sustain_bytes / ((double)st->sustain_ns / 1e9) / 1e9,
           (double)st->sustain_ns / 1e9, (unsigned long long)done,
           (double)(nd * bb) / (1 << 20), SUSTAIN_WINDOW);
    fflush(stdout);
}

static int prefill(const opts *o)
{
    xr_engine *e = engine("prefill-0", o);
    size_t bb = (size_t)o->block_kib * 1024, bytes = (size_t)o->layers * o->blocks * bb;
    uint8_t *host = aligned_alloc(4096, bytes);
    if (!host)
        DIE("prefill: out of memory for the pool");
    for (unsigned l = 0; l < o->layers; l++) /* "prefill": every block gets known bytes */
        for (unsigned b = 0; b < o->blocks; b++)
            for (size_t k = 0; k < bb; k++)
                host[((size_t)l * o->blocks + b) * bb + k] = kv_byte(l, b, k);
    int gpu = o->gpu[0];
    uint8_t *kv = pool_new(gpu, host, bytes);
    xr_region *reg;
    TRY(xr_mem_register(e, kv, bytes, gpu >= 0 ? XR_MEM_CUDA : XR_MEM_HOST, gpu >= 0 ? gpu : 0,
                        XR_ACCESS_NONE, &reg));

    int fd = -1;
    xr_peer *peer;
    if (o->etcd) { /* by name, once decode has published itself */
        /* Decode answers us through the directory too. The layout asks
         * every worker for its pool's geometry: ours, then. */
        pool_info mine = {(uintptr_t)kv, o->layers, o->blocks, (uint32_t)bb};
        TRY(xr_metadata_set_field(e, "kv.base", &mine.base, sizeof mine.base));
        TRY(xr_metadata_set_field(e, "kv.layers", &mine.layers, sizeof mine.layers));
        TRY(xr_metadata_set_field(e, "kv.blocks", &mine.blocks, sizeof mine.blocks));
        TRY(xr_metadata_set_field(e, "kv.block_bytes", &mine.block_bytes,
                                  sizeof mine.block_bytes));
        TRY(xr_metadata_set_field(e, "kv.dtype", "uint8", 5));
        TRY(xr_metadata_set_field(e, "model", "demo-uint8", 10));
        publish(e, o);
        TRY(xr_peer_lookup(e, "decode-0", 60000, &peer));
    } else {
        fd = connect_to(o->port);
        uint64_t len;
        xread(fd, &len, sizeof len);
        void *md = malloc(len);
        xread(fd, md, len);
        TRY(xr_peer_load(e, md, len, &peer));
        free(md);
    }
    /* Connect every rail now, side by side, rather than each on its first
     * chunk: the request below then runs at warm speed. */
    TRY(xr_peer_connect(peer, 30000));
    /* Check the decode side's published layout before moving a byte. */
    pool_info pool;
    char dtype[16] = "";
    size_t n8 = sizeof pool.base, n4 = sizeof pool.layers, ndt = sizeof dtype - 1;
    TRY(xr_peer_field(peer, "kv.base", &pool.base, &n8));
    TRY(xr_peer_field(peer, "kv.layers", &pool.layers, &n4));
    TRY(xr_peer_field(peer, "kv.blocks", &pool.blocks, &n4));
    TRY(xr_peer_field(peer, "kv.block_bytes", &pool.block_bytes, &n4));
    TRY(xr_peer_field(peer, "kv.dtype", dtype, &ndt));
    char model[64] = "";
    size_t nm = sizeof model - 1;
    TRY(xr_peer_field(peer, "model", model, &nm));
    printf("prefill: decode serves '%s': pool of %u layers x %u blocks x %u KiB of %s\n", model,
           pool.layers, pool.blocks, pool.block_bytes >> 10, dtype);
    if (pool.layers != o->layers || pool.block_bytes != bb || strcmp(dtype, "uint8"))
        DIE("prefill: decode's pool is %u layers x %u bytes of %s, ours %u x %zu of uint8",
            pool.layers, pool.block_bytes, dtype, o->layers, bb);

    /* The request: some prefill blocks, each to a free decode block. */
    unsigned n = o->request < o->blocks ? o->request : o->blocks;
    size_t nd = (size_t)n * o->layers;
    xr_iov *local = malloc(nd * sizeof *local), *remote = malloc(nd * sizeof *remote);
    size_t msg_len = sizeof(request_hdr) + (size_t)n * 8;
    uint8_t *msg = malloc(msg_len);
    request_hdr h = {.id = 1, .nblocks = n};
    memcpy(msg, &h, sizeof h);
    uint32_t *pairs = (uint32_t *)(msg + sizeof h);
    srand(7);
    for (unsigned i = 0; i < n; i++) {
        pairs[2 * i] = (i * 5 + 3) % o->blocks;                  /* prefill block */
        pairs[2 * i + 1] = (uint32_t)(rand() % (int)pool.blocks); /* decode block... */
        for (unsigned j = 0; j < i; j++)                          /* ...distinct */
            if (pairs[2 * j + 1] == pairs[2 * i + 1])
                pairs[2 * i + 1] = (pairs[2 * i + 1] + 1) % pool.blocks, j = (unsigned)-1;
    }
    for (unsigned l = 0; l < o->layers; l++)
        for (unsigned i = 0; i < n; i++) {
            size_t d = (size_t)l * n + i;
            local[d] = (xr_iov){(uintptr_t)kv + ((size_t)l * o->blocks + pairs[2 * i]) * bb, bb};
            remote[d] = (xr_iov){pool.base + ((size_t)l * pool.blocks + pairs[2 * i + 1]) * bb, bb};
        }

    stats sus = {0};
    if (o->duration_s > 0)
        sustain(e, peer, local, remote, nd, bb, o, &sus);

    xr_rail_info before[XR_MAX_RAILS];
    int nr = xr_rail_count(e);
    for (int i = 0; i < nr; i++)
        TRY(xr_rail_info_get(e, (unsigned)i, &before[i]));
    /* Prepared before prefill "computes": one transfer for everything, or
     * (--layerwise) one per layer, each posted into a group as soon as its
     * layer is ready, while the next one computes. Either way the decode
     * side gets one notification, after every byte. */
    unsigned nx = o->layerwise ? o->layers : 1;
    xr_xfer **x = calloc(nx, sizeof *x);
    for (unsigned k = 0; k < nx; k++) {
        size_t per = nd / nx;
        TRY(xr_xfer_create(e, peer, XR_OP_WRITE, local + k * per, remote + k * per, per,
                           o->layerwise ? NULL : msg, o->layerwise ? 0 : msg_len, &x[k]));
    }
    xr_group *g = NULL;
    if (o->layerwise)
        TRY(xr_group_create(e, peer, msg, msg_len, &g));
    uint64_t t0 = now_ns();
    for (unsigned l = 0; l < o->layers; l++) {
        sleep_us((uint64_t)o->compute_us); /* prefill computes layer l */
        if (g)
            TRY(xr_group_add(g, x[l]));
    }
    uint64_t t_ready = now_ns(); /* the last layer is ready */
    int rc;
    if (g) {
        TRY(xr_group_seal(g));
        rc = xr_group_wait(g, 60000);
    } else {
        TRY(xr_xfer_post(x[0]));
        rc = xr_xfer_wait(x[0], 60000);
    }
    uint64_t t1 = now_ns();
    if (rc)
        DIE("prefill: transfer failed: %s: %s", xr_err_name(rc),
            g ? xr_group_error(g) : xr_xfer_error(x[0]));
    xr_group_release(g);
    for (unsigned k = 0; k < nx; k++)
        xr_xfer_release(x[k]);
    free(x);
    if (o->compute_us || o->layerwise)
        printf("prefill: %s: last layer ready -> notification delivered in %.2f ms (%u layers "
               "computed in %.1f ms)\n", g ? "layer by layer, one group" : "one transfer after "
               "the last layer", (double)(t1 - t_ready) / 1e6, o->layers,
               (double)(t_ready - t0) / 1e6);
    if (o->compute_us && o->layers > 1) {
        /* What the layer-wise group is to save: the time the earlier
         * layers take on the wire, measured as it is, the same bytes again
         * with no notification (decode checks its blocks only after the
         * request's notification; the bytes are the same). Median of 3. */
        size_t ne = nd / o->layers * (o->layers - 1);
        xr_xfer *w;
        TRY(xr_xfer_create(e, peer, XR_OP_WRITE, local, remote, ne, NULL, 0, &w));
        double ms[3];
        for (int k = 0; k < 3; k++) {
            uint64_t a = now_ns();
            TRY(xr_xfer_post(w));
            TRY(xr_xfer_wait(w, 60000));
            ms[k] = (double)(now_ns() - a) / 1e6;
        }
        xr_xfer_release(w);
        /* The median of three: the third, held between the other two. */
        double lo = ms[0] < ms[1] ? ms[0] : ms[1], hi = ms[0] + ms[1] - lo;
        double median = ms[2] < lo ? lo : ms[2] > hi ? hi : ms[2];
        printf("prefill: the earlier %u layers alone on the wire (no notification): %.2f ms, "
               "median of 3\n", o->layers - 1, median);
    }
    stats st = {.ns = t1 - t0, .bytes = nd * bb, .descriptors = nd, .nrails = (uint32_t)nr,
                .sustain_ns = sus.sustain_ns, .sustain_bytes = sus.sustain_bytes};
    for (int i = 0; i < nr; i++) {
        xr_rail_info ri;
        TRY(xr_rail_info_get(e, (unsigned)i, &ri));
        st.rail_bytes[i] = ri.counters.tx_bytes - before[i].counters.tx_bytes;
    }
    printf("prefill: wrote %u blocks (%zu descriptors) to '%s' with a notification%s\n", n, nd,
           xr_peer_name(peer), gpu >= 0 ? ", from GPU memory" : "");
    fflush(stdout);
    uint8_t ack = 0;
    if (o->etcd) {
        TRY(xr_notif_send(e, peer, &st, sizeof st));
        char who[64];
        size_t na = 1;
        TRY(xr_notif_wait(e, 60000, who, sizeof who, &ack, &na));
        TRY(xr_notif_send(e, peer, &ack, 1)); /* decode may close now */
    } else {
        xwrite(fd, &st, sizeof st);
        xread(fd, &ack, 1);
        close(fd);
    }
    free(local);
    free(remote);
    free(msg);
    if (!o->etcd) /* a peer from the directory is the directory's */
        TRY(xr_peer_unload(peer));
    TRY(xr_mem_deregister(reg));
    xr_engine_destroy(e);
    pool_free(gpu, kv, host);
    return ack ? 0 : 1;
}

int main(int argc, char **argv)
{
    opts o = {.provider = "tcp;ofi_rxm", .layout = "kv_cache.lua", .rails = 4, .port = 18515,
              .layers = 16, .blocks = 64, .block_kib = 64, .request = 24, .gpu = {-1, -1}};
    const char *role = "both";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "decode") || !strcmp(a, "prefill"))
            role = a;
        else if (v && !strcmp(a, "--provider"))
            o.provider = v, i++;
        else if (v && !strcmp(a, "--rails"))
            o.rails = (unsigned)atoi(v), i++;
        else if (v && !strcmp(a, "--port"))
            o.port = (unsigned)atoi(v), i++;
        else if (v && !strcmp(a, "--layers"))
            o.layers = (unsigned)atoi(v), i++;
        else if (v && !strcmp(a, "--blocks"))
            o.blocks = (unsigned)atoi(v), i++;
        else if (v && !strcmp(a, "--block-kib"))
            o.block_kib = (unsigned)atoi(v), i++;
        else if (v && !strcmp(a, "--request"))
            o.request = (unsigned)atoi(v), i++;
        else if (v && !strcmp(a, "--etcd"))
            o.etcd = v, i++;
        else if (v && !strcmp(a, "--layout"))
            o.layout = v, i++;
        else if (v && !strcmp(a, "--config"))
            o.config = v, i++;
        else if (v && !strcmp(a, "--duration"))
            o.duration_s = atof(v), i++;
        else if (v && !strcmp(a, "--start-at"))
            o.start_at = atof(v), i++;
        else if (v && !strcmp(a, "--compute-us"))
            o.compute_us = (unsigned)atoi(v), i++;
        else if (!strcmp(a, "--layerwise"))
            o.layerwise = 1;
        else if (v && !strcmp(a, "--gpu") && sscanf(v, "%d,%d", &o.gpu[0], &o.gpu[1]) == 2 &&
                 o.gpu[0] >= 0 && o.gpu[1] >= 0)
            i++;
        else
            DIE("usage: %s [decode|prefill] [--provider P] [--rails N] [--port N] [--layers N] "
                "[--blocks N] [--block-kib N] [--request N] [--layout F] [--gpu P,D] "
                "[--layerwise] [--compute-us N] [--etcd URL] [--config F] [--duration S] "
                "[--start-at T]", argv[0]);
    }
    if (!o.rails || !o.layers || !o.blocks || !o.block_kib || !o.request)
        DIE("rails, layers, blocks, block-kib and request must be positive");
    if (!strcmp(role, "decode"))
        return decode(&o, o.etcd ? -1 : listen_on(o.port));
    if (!strcmp(role, "prefill"))
        return prefill(&o);
    /* Both: listen first so the prefill process can always connect. */
    int lfd = o.etcd ? -1 : listen_on(o.port);
    if (o.config)
        printf("prefill -> decode over the rails of %s (two processes)", o.config);
    else
        printf("prefill -> decode over %u %s rails (two processes)", o.rails, o.provider);
    if (o.gpu[0] >= 0)
        printf(", KV cache on GPU %d -> GPU %d", o.gpu[0], o.gpu[1]);
    printf("\n");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        exit(decode(&o, lfd));
    }
    if (lfd >= 0)
        close(lfd);
    int rc = prefill(&o), st = 0;
    waitpid(pid, &st, 0);
    return rc || !WIFEXITED(st) || WEXITSTATUS(st);
}
