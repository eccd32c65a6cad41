/*
 * test_stage.c - memory no rail reaches, moved through bounce slots
 * (stage.c), between two real processes on a real provider.
 *
 *   test_stage PROVIDER host:IT   I, T = s (staged) or d (direct): host
 *                                 memory, with opts.stage.host on the side
 *                                 marked s. Runs the staging protocol on any
 *                                 machine; "ss" is what device -> device
 *                                 does without FI_HMEM.
 *   test_stage PROVIDER cuda:IT   I, T = h (host) or d (cudaMalloc): real
 *                                 device memory; skipped without a GPU.
 *   test_stage PROVIDER gpu2:dd   the initiator's memory on GPU 0, the
 *                                 target's on GPU 1, and the target driven
 *                                 by a progress thread (whose current
 *                                 device is 0); skipped with fewer than 2.
 *
 * Each run: a WRITE of several descriptors (one of an odd length, so a
 * slot is not always full) larger than the bounce pool, with a
 * notification the target checks against its memory, then a READ back
 * into a buffer the initiator never registered, checked byte for byte on
 * the host. The WRITE's source is overwritten as soon as the WRITE
 * completes, and the target must still find the bytes sent. With device
 * memory on the initiator, a freed and reallocated device buffer is shown
 * to get a new registration (buffer id check).
 */
#include "harness.h"

#include <sys/wait.h>
#include <time.h>

#ifdef XR_TEST_CUDA
#include <cuda.h> /* the driver API's types; its functions come through the runtime */
#include <cuda_runtime_api.h>
#endif

#define SIZE (24u << 20) /* more than the 16 x 1 MiB slots of the pool */

static const char *provider;
static bool cuda_mode;
static char side[2]; /* initiator, target: 's'/'d' (host mode) or 'h'/'d' (cuda mode) */
static int gpu[2];   /* each side's device (gpu2 mode: 0 and 1) */
static bool two_gpus;
static bool direct;  /* the rails take device memory themselves (FI_HMEM) */

static bool on_device(int who)
{
    return cuda_mode && side[who] == 'd';
}

static xr_engine *engine(const char *name, int who)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.ignore_env = 1;
    o.stage.host = !cuda_mode && side[who] == 's';
    /* Copies then run on a thread that never chose GPU 1. */
    o.progress_thread = two_gpus && who == 1;
    /* Chunks of another size, to look at a provider's large copies
     * (scripts/gpu-suite.sh direct); the default otherwise. */
    const char *chunk = getenv("XR_TEST_CHUNK");
    if (chunk && *chunk)
        o.chunk_size = (size_t)strtoull(chunk, NULL, 10);
    /* Without the fence after CUDA IPC copies, to see what it guards
     * against (scripts/gpu-suite.sh direct). */
    const char *no_fence = getenv("XR_TEST_NO_FENCE");
    if (no_fence && *no_fence)
        o.ipc_fence = 0;
    xr_rail_spec spec = {.provider = provider, .count = 2};
    if (strstr(provider, "tcp"))
        spec.domain = "lo";
    o.rails = &spec;
    o.n_rail_specs = 1;
    xr_engine *e;
    H_OK(xr_engine_create(&o, &e));
    return e;
}

/* Memory of one side: host, or device memory when that side is 'd'. */
static uint8_t *mem_alloc(int who, size_t len)
{
#ifdef XR_TEST_CUDA
    if (on_device(who)) {
        void *p;
        H_CHECK(cudaSetDevice(gpu[who]) == cudaSuccess, "cudaSetDevice(%d)", gpu[who]);
        H_CHECK(cudaMalloc(&p, len) == cudaSuccess, "cudaMalloc of %zu bytes", len);
        H_CHECK(cudaMemset(p, 0, len) == cudaSuccess, "cudaMemset");
        return p;
    }
#endif
    (void)who;
    uint8_t *p = aligned_alloc(4096, len);
    memset(p, 0, len);
    return p;
}

static void mem_free(int who, void *p)
{
#ifdef XR_TEST_CUDA
    if (on_device(who)) {
        cudaFree(p);
        return;
    }
#endif
    (void)who;
    free(p);
}

/* Overwrite a side's memory at once: device memory on the device, without
 * waiting for it. */
static void wipe(int who, uint8_t *p, size_t len)
{
#ifdef XR_TEST_CUDA
    if (on_device(who)) {
        H_CHECK(cudaMemset(p, 0xee, len) == cudaSuccess, "cudaMemset");
        return;
    }
#endif
    (void)who;
    memset(p, 0xee, len);
}

static void put(int who, uint8_t *dst, const uint8_t *host, size_t len)
{
#ifdef XR_TEST_CUDA
    if (on_device(who)) {
        H_CHECK(cudaMemcpy(dst, host, len, cudaMemcpyHostToDevice) == cudaSuccess, "H2D");
        return;
    }
#endif
    (void)who;
    memcpy(dst, host, len);
}

/* The bytes as the host sees them, after a copy back for device memory. */
static long long verify(int who, const uint8_t *p, size_t len, uint64_t tag)
{
    uint8_t *h = malloc(len);
#ifdef XR_TEST_CUDA
    if (on_device(who))
        H_CHECK(cudaMemcpy(h, p, len, cudaMemcpyDeviceToHost) == cudaSuccess, "D2H");
    else
#endif
        memcpy(h, p, len);
    (void)who;
    long long bad = h_verify(h, len, tag, 0);
    free(h);
    return bad;
}


/* Whether a side's memory is out of the rails' reach: device memory where
 * the provider has no FI_HMEM (or one built without CUDA), host memory
 * marked staged. Both sides run the same provider on one host, so what
 * this process's rails do holds for the other's too. */
static bool staged_side(int who)
{
    return cuda_mode ? side[who] == 'd' && !direct : side[who] == 's';
}

/* Whether the rails register device memory themselves (a libfabric built
 * with CUDA, e.g. 2.6's shm) rather than stage it. The first device buffer
 * settles it (region.c); a small one is registered to ask. */
static bool rails_take_device_memory(xr_engine *e, int who)
{
    bool all = xr_rail_count(e) > 0;
#ifdef XR_TEST_CUDA
    void *d;
    xr_region *g;
    H_CHECK(cudaSetDevice(gpu[who]) == cudaSuccess, "cudaSetDevice(%d)", gpu[who]);
    H_CHECK(cudaMalloc(&d, 1u << 16) == cudaSuccess, "cudaMalloc");
    H_OK(xr_mem_register(e, d, 1u << 16, XR_MEM_CUDA, gpu[who], XR_ACCESS_RW, &g));
    for (int i = 0; i < xr_rail_count(e); i++) {
        xr_rail_info ri;
        H_OK(xr_rail_info_get(e, (unsigned)i, &ri));
        all = all && ri.hmem;
    }
    H_OK(xr_mem_deregister(g));
    cudaFree(d);
#else
    (void)e, (void)who;
    all = false;
#endif
    return all;
}

#ifdef XR_TEST_CUDA
/* A driver function, through the runtime: the test links no libcuda. */
static void *driver_fn(const char *name)
{
    void *fn = NULL;
    enum cudaDriverEntryPointQueryResult st;
    if (cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &st) != cudaSuccess ||
        st != cudaDriverEntryPointSuccess)
        return NULL;
    return fn;
}

/* Device memory as PyTorch's expandable segments make it: cuMemCreate,
 * mapped into a reserved range. *len is rounded up to the granularity. */
static void *vmm_alloc(int dev, size_t *len)
{
    __typeof__(cuMemGetAllocationGranularity) *gran = driver_fn("cuMemGetAllocationGranularity");
    __typeof__(cuMemCreate) *create = driver_fn("cuMemCreate");
    __typeof__(cuMemAddressReserve) *reserve = driver_fn("cuMemAddressReserve");
    __typeof__(cuMemMap) *map = driver_fn("cuMemMap");
    __typeof__(cuMemSetAccess) *set_access = driver_fn("cuMemSetAccess");
    __typeof__(cuMemRelease) *release = driver_fn("cuMemRelease");
    H_CHECK(gran && create && reserve && map && set_access && release,
            "the driver lacks the cuMem* entry points");
    H_CHECK(cudaSetDevice(dev) == cudaSuccess && cudaFree(NULL) == cudaSuccess, "CUDA context");
    CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev}};
    size_t g = 0;
    H_CHECK(gran(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM) == CUDA_SUCCESS && g,
            "cuMemGetAllocationGranularity");
    *len = (*len + g - 1) / g * g;
    CUmemGenericAllocationHandle h;
    CUdeviceptr p;
    H_CHECK(create(&h, *len, &prop, 0) == CUDA_SUCCESS, "cuMemCreate of %zu bytes", *len);
    H_CHECK(reserve(&p, *len, 0, 0, 0) == CUDA_SUCCESS, "cuMemAddressReserve");
    H_CHECK(map(p, *len, 0, h, 0) == CUDA_SUCCESS, "cuMemMap");
    release(h); /* the mapping keeps the memory */
    CUmemAccessDesc rw = {.location = prop.location, .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    H_CHECK(set_access(p, *len, &rw, 1) == CUDA_SUCCESS, "cuMemSetAccess");
    return (void *)(uintptr_t)p;
}

static void vmm_free(void *p, size_t len)
{
    __typeof__(cuMemUnmap) *unmap = driver_fn("cuMemUnmap");
    __typeof__(cuMemAddressFree) *addr_free = driver_fn("cuMemAddressFree");
    H_CHECK(unmap && addr_free && unmap((CUdeviceptr)(uintptr_t)p, len) == CUDA_SUCCESS &&
                addr_free((CUdeviceptr)(uintptr_t)p, len) == CUDA_SUCCESS,
            "cuMemUnmap / cuMemAddressFree");
}

/* Device memory without a CUDA IPC handle: from cuMemCreate, and from a
 * cudaMallocAsync pool. Where the rails move device memory between
 * processes through CUDA IPC (shm with FI_HMEM), libfabric would copy it
 * through host buffers without a word: registration refuses it, saying
 * why. Where they stage device memory, it is taken. A fresh engine meets
 * it first, and its rails must still take cudaMalloc memory as before. */
static void no_ipc_memory(void)
{
    xr_engine *e = engine("no-ipc", 0);
    bool refuse = direct && !strcmp(provider, "shm");
    size_t vlen = 1u << 20;
    void *v = vmm_alloc(gpu[0], &vlen), *a = NULL;
    H_CHECK(cudaMallocAsync(&a, 1u << 20, 0) == cudaSuccess && cudaStreamSynchronize(0) == cudaSuccess,
            "cudaMallocAsync");
    struct { const char *what; void *p; size_t len; } m[] = {{"cuMemCreate", v, vlen},
                                                            {"cudaMallocAsync", a, 1u << 20}};
    for (int k = 0; k < 2; k++) {
        xr_region *g = NULL;
        int rc = xr_mem_register(e, m[k].p, m[k].len, XR_MEM_CUDA, gpu[0], XR_ACCESS_RW, &g);
        const char *why = xr_engine_last_error(NULL);
        if (refuse)
            H_CHECK(rc == XR_ENOTSUP && strstr(why, "no CUDA IPC handle"),
                    "memory from %s on %s: %s (%s), not refused for its missing IPC handle",
                    m[k].what, provider, xr_err_name(rc), rc ? why : "registered");
        else
            H_CHECK(rc == 0, "memory from %s on %s (staged): %s: %s", m[k].what, provider,
                    xr_err_name(rc), why);
        if (g)
            H_OK(xr_mem_deregister(g));
        h_log("ok: memory from %s %s", m[k].what,
              refuse ? "refused, naming the missing CUDA IPC handle" : "registered, staged");
    }
    H_CHECK(rails_take_device_memory(e, 0) == direct,
            "after memory without an IPC handle, the rails %s cudaMalloc memory themselves",
            direct ? "no longer take" : "now take");
    xr_engine_destroy(e);
    vmm_free(v, vlen);
    cudaFree(a);
}
#endif

static void target(int fd, void *arg)
{
    (void)arg;
    xr_engine *e = engine("decode", 1);
    direct = cuda_mode && rails_take_device_memory(e, 1);
    uint8_t *t = mem_alloc(1, SIZE);
    xr_region *g;
    H_OK(xr_mem_register(e, t, SIZE, on_device(1) ? XR_MEM_CUDA : XR_MEM_HOST, gpu[1], XR_ACCESS_RW,
                         &g));
    h_send_metadata(fd, e);
    h_send_u64(fd, (uintptr_t)t);

    /* The WRITE: its notification comes after every byte is in place. */
    char who[64], msg[16];
    size_t n;
    double deadline = h_now() + 120;
    for (;;) {
        H_CHECK(h_now() < deadline, "no notification after 120 s");
        n = sizeof msg;
        int rc = xr_notif_get(e, who, sizeof who, msg, &n);
        if (!rc)
            break;
        H_CHECK(rc == XR_EAGAIN, "notif_get: %s", xr_engine_last_error(NULL));
        xr_progress(e);
    }
    H_CHECK(n == 5 && !memcmp(msg, "write", 5), "unexpected notification");
    long long bad = verify(1, t, SIZE, 1);
    H_CHECK(bad < 0, "WRITE: byte %lld wrong when the notification arrived", bad);
    h_log("ok: the notification found all %u bytes of the WRITE in %s memory", SIZE,
          on_device(1) ? "device" : "host");

    /* The READ's source. */
    uint8_t *h = malloc(SIZE);
    h_fill(h, SIZE, 2, 0);
    put(1, t, h, SIZE);
    free(h);
    h_send_u64(fd, 1);
    H_CHECK(h_recv_u64(fd, e) == 2, "initiator did not finish");
    uint64_t served = H_RAILS_SUM(e, staged_served);
    H_CHECK(staged_side(1) ? served > 0 : served == 0,
            "target memory %s staged, but %llu staged requests were served",
            staged_side(1) ? "is" : "is not", (unsigned long long)served);
    H_OK(xr_mem_deregister(g));
    xr_engine_destroy(e);
    mem_free(1, t);
}

static void initiator(int fd, void *arg)
{
    (void)arg;
    xr_engine *e = engine("prefill", 0);
    direct = cuda_mode && rails_take_device_memory(e, 0);
    if (cuda_mode)
        h_log("device memory on %s: %s", provider, direct ? "registered on the rails (FI_HMEM)"
                                                          : "staged through host bounce slots");
#ifdef XR_TEST_CUDA
    if (on_device(0))
        no_ipc_memory();
#endif
    xr_peer *p = h_load_peer(fd, e);
    uint64_t ra = h_recv_u64(fd, e);
    uint8_t *l = mem_alloc(0, SIZE);
    uint8_t *h = malloc(SIZE);
    h_fill(h, SIZE, 1, 0);
    put(0, l, h, SIZE);
    xr_region *g;
    H_OK(xr_mem_register(e, l, SIZE, on_device(0) ? XR_MEM_CUDA : XR_MEM_HOST, gpu[0],
                         XR_ACCESS_NONE, &g));

    /* WRITE: three descriptors, the middle one of an odd length. */
    size_t a = SIZE / 2, b = 4097;
    xr_iov li[3] = {{(uintptr_t)l, a}, {(uintptr_t)l + a, b}, {(uintptr_t)l + a + b, SIZE - a - b}};
    xr_iov ri[3] = {{ra, a}, {ra + a, b}, {ra + a + b, SIZE - a - b}};
    xr_xfer *x;
    double t0 = h_now();
    H_OK(xr_xfer_create(e, p, XR_OP_WRITE, li, ri, 3, "write", 5, &x));
    H_OK(xr_xfer_post(x));
    H_OK(xr_xfer_wait(x, 120000));
    double dt = h_now() - t0;
    /* A completed WRITE's source is free to reuse: overwritten now, the
     * bytes the target checks must not change (with CUDA IPC, the peer's
     * copy may still be reading it: xfer.c, the fence). */
    wipe(0, l, SIZE);
    h_log("WRITE %s -> %s of %u bytes in %zu chunks: %.1f MB/s", on_device(0) ? "device" : "host",
          on_device(1) ? "device" : "host", SIZE, xr_xfer_chunk_count(x, -1), SIZE / dt / 1e6);
    xr_xfer_release(x);

    /* A range past the peer's region is refused before anything moves. */
    xr_iov bl = {(uintptr_t)l, 64}, br = {ra + SIZE - 32, 64};
    H_CHECK(xr_xfer_create(e, p, XR_OP_WRITE, &bl, &br, 1, NULL, 0, &x) == XR_ERANGE,
            "a staged range past the region was not refused");

    /* READ into memory nobody registered: registered on demand. */
    H_CHECK(h_recv_u64(fd, e) == 1, "target not ready");
    uint8_t *back = mem_alloc(0, SIZE);
    xr_iov lb = {(uintptr_t)back, SIZE}, rb = {ra, SIZE};
    t0 = h_now();
    H_OK(xr_xfer_create(e, p, XR_OP_READ, &lb, &rb, 1, NULL, 0, &x));
    H_OK(xr_xfer_post(x));
    H_OK(xr_xfer_wait(x, 120000));
    dt = h_now() - t0;
    xr_xfer_release(x);
    long long bad = verify(0, back, SIZE, 2);
    H_CHECK(bad < 0, "READ: byte %lld wrong", bad);
    h_log("ok: READ %s <- %s of %u bytes verified: %.1f MB/s", on_device(0) ? "device" : "host",
          on_device(1) ? "device" : "host", SIZE, SIZE / dt / 1e6);

    /* A rail taken out after the transfer was planned: the chunks planned
     * on it, staged ones too, go to the other rail without being tried
     * there, and every byte still arrives. */
    memset(h, 0, SIZE);
    put(0, back, h, SIZE);
    xr_rail_info before, after;
    H_OK(xr_rail_info_get(e, 1, &before));
    H_OK(xr_xfer_create(e, p, XR_OP_READ, &lb, &rb, 1, NULL, 0, &x));
    H_OK(xr_rail_set_state(e, 1, 0));
    H_OK(xr_xfer_post(x));
    H_OK(xr_xfer_wait(x, 120000));
    xr_xfer_release(x);
    H_OK(xr_rail_set_state(e, 1, 1));
    H_OK(xr_rail_info_get(e, 1, &after));
    bad = verify(0, back, SIZE, 2);
    H_CHECK(bad < 0, "READ with rail 1 taken out: byte %lld wrong", bad);
    H_CHECK(after.counters.failovers > before.counters.failovers,
            "no chunk planned on rail 1 went elsewhere when the rail was taken out");
    h_log("ok: with rail 1 taken out after planning, %llu chunks went to rail 0; verified",
          (unsigned long long)(after.counters.failovers - before.counters.failovers));

#ifdef XR_TEST_CUDA
    if (on_device(0)) {
        /* Free a device buffer used on demand and allocate again: the same
         * address, a new allocation. The cached entry must not serve it. */
        const size_t n = 1u << 20;
        xr_iov src = {0, n}, dst = {ra, n};
        void *d1 = NULL, *d2 = NULL;
        H_CHECK(cudaMalloc(&d1, n) == cudaSuccess, "cudaMalloc");
        src.addr = (uintptr_t)d1;
        H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &src, &dst, 1, NULL, 0, &x));
        xr_xfer_release(x);
        cudaFree(d1);
        H_CHECK(cudaMalloc(&d2, n) == cudaSuccess, "cudaMalloc");
        if (d2 != d1) {
            h_log("SKIPPED part: cudaMalloc did not reuse the freed address (%p, then %p)", d1, d2);
        } else {
            xr_mr_cache_stats s0, s1;
            H_OK(xr_mr_cache_stats_get(e, &s0));
            src.addr = (uintptr_t)d2;
            H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &src, &dst, 1, NULL, 0, &x));
            H_OK(xr_mr_cache_stats_get(e, &s1));
            xr_xfer_release(x);
            H_CHECK(s1.stale > s0.stale && s1.registrations > s0.registrations,
                    "a reallocated device buffer at %p was served by the freed one's entry "
                    "(stale %llu -> %llu, registrations %llu -> %llu)",
                    d2, (unsigned long long)s0.stale, (unsigned long long)s1.stale,
                    (unsigned long long)s0.registrations, (unsigned long long)s1.registrations);
            h_log("ok: a freed and reallocated device buffer at %p got a new registration "
                  "(%llu stale entries dropped)", d2,
                  (unsigned long long)(s1.stale - s0.stale));
        }
        cudaFree(d2);
    }
#endif
    uint64_t staged = H_RAILS_SUM(e, staged);
    bool want = staged_side(0) || staged_side(1);
    H_CHECK(want ? staged > 0 : staged == 0, "%llu chunks went through bounce slots; %s",
            (unsigned long long)staged, want ? "some should" : "none should");
    h_log("ok: %llu chunks went through bounce slots", (unsigned long long)staged);
    h_send_u64(fd, 2);
    H_OK(xr_mem_deregister(g));
    H_OK(xr_peer_unload(p));
    xr_engine_destroy(e);
    mem_free(0, l);
    mem_free(0, back);
    free(h);
}

/* GPUs, asked in a child process: CUDA must not be initialized in a process
 * that forks afterwards, and the test forks its two sides. */
static int gpus(void)
{
#ifdef XR_TEST_CUDA
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess)
            n = 0;
        _exit(n > 100 ? 100 : n);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 0;
#else
    return 0;
#endif
}

int main(int argc, char **argv)
{
    const char *mode = argc > 2 ? argv[2] : "";
    two_gpus = !strcmp(mode, "gpu2:dd");
    if (argc < 3 || strlen(mode) != 7 ||
        (strncmp(mode, "host:", 5) && strncmp(mode, "cuda:", 5) && !two_gpus))
        return fprintf(stderr, "usage: %s PROVIDER host:[sd][sd] | cuda:[hd][hd] | gpu2:dd\n",
                       argv[0]), 2;
    provider = argv[1];
    cuda_mode = two_gpus || !strncmp(mode, "cuda:", 5);
    side[0] = mode[5];
    side[1] = mode[6];
    gpu[1] = two_gpus;
    if (two_gpus && gpus() < 2) {
        printf("SKIPPED: %d CUDA device(s) here, gpu2 needs 2\n", gpus());
        return H_SKIP;
    }
    if (cuda_mode && !gpus()) {
        printf("SKIPPED: no CUDA device here%s\n",
#ifdef XR_TEST_CUDA
               ""
#else
               " (built without the CUDA toolkit)"
#endif
        );
        return H_SKIP;
    }
    if (!cuda_mode)
        h_require_provider(provider);
    int rc = h_run_pair(target, initiator, NULL);
    if (!rc)
        printf("stage %s on %s: passed\n", mode, provider);
    return rc;
}
