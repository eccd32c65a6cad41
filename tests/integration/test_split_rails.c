/*
 * test_split_rails.c - rails declared host_only carry host memory, the
 * others device memory (xr_rail_spec.host_only), between two real
 * processes on a real provider.
 *
 *   test_split_rails PROVIDER host   host memory on both sides: every byte
 *                                    goes over the host_only rails
 *   test_split_rails PROVIDER cuda   device memory on both sides (skipped
 *                                    without a GPU): over the other rails
 *                                    where they register it themselves
 *                                    (FI_HMEM), else staged over the
 *                                    host_only ones
 *
 * Each side has 2 rails and 2 host_only rails. A 16 MiB WRITE with a
 * notification the target checks against its memory, then a READ back
 * into another buffer, checked byte for byte; the initiator's rail
 * counters say which rails moved the bytes.
 */
#include "harness.h"

#include <sys/wait.h>

#ifdef XR_TEST_CUDA
#include <cuda_runtime_api.h>
#endif

#define SIZE (16u << 20)

static const char *provider;
static bool device; /* cuda mode: both sides' memory on GPU 0 */

static xr_engine *engine(const char *name)
{
    xr_engine_opts o;
    xr_engine_opts_init(&o);
    o.name = name;
    o.ignore_env = 1;
    o.progress_thread = 1;
    xr_rail_spec spec[2] = {{.provider = provider, .count = 2},
                            {.provider = provider, .count = 2, .host_only = 1}};
    if (strstr(provider, "tcp"))
        spec[0].domain = spec[1].domain = "lo";
    o.rails = spec;
    o.n_rail_specs = 2;
    xr_engine *e;
    H_OK(xr_engine_create(&o, &e));
    H_CHECK(xr_rail_count(e) == 4, "%d rails, not 4", xr_rail_count(e));
    for (unsigned i = 0; i < 4; i++) {
        xr_rail_info ri;
        H_OK(xr_rail_info_get(e, i, &ri));
        H_CHECK(ri.host_only == (i >= 2), "rail %u: host_only %d", i, ri.host_only);
        H_CHECK(!(ri.host_only && ri.hmem), "rail %u is host_only and asked for FI_HMEM", i);
    }
    return e;
}

static uint8_t *mem_alloc(size_t len)
{
    uint8_t *p;
#ifdef XR_TEST_CUDA
    if (device) {
        H_CHECK(cudaMalloc((void **)&p, len) == cudaSuccess, "cudaMalloc of %zu bytes", len);
        H_CHECK(cudaMemset(p, 0, len) == cudaSuccess, "cudaMemset");
        return p;
    }
#endif
    p = aligned_alloc(4096, len);
    memset(p, 0, len);
    return p;
}

static void mem_free(uint8_t *p)
{
#ifdef XR_TEST_CUDA
    if (device) {
        cudaFree(p);
        return;
    }
#endif
    free(p);
}

/* Fill with the pattern of `tag` (through the host for device memory). */
static void mem_fill(uint8_t *p, size_t len, uint64_t tag)
{
    uint8_t *h = malloc(len);
    h_fill(h, len, tag, 0);
#ifdef XR_TEST_CUDA
    if (device)
        H_CHECK(cudaMemcpy(p, h, len, cudaMemcpyHostToDevice) == cudaSuccess, "H2D");
    else
#endif
        memcpy(p, h, len);
    free(h);
}

static long long mem_verify(const uint8_t *p, size_t len, uint64_t tag)
{
    uint8_t *h = malloc(len);
#ifdef XR_TEST_CUDA
    if (device)
        H_CHECK(cudaMemcpy(h, p, len, cudaMemcpyDeviceToHost) == cudaSuccess, "D2H");
    else
#endif
        memcpy(h, p, len);
    long long bad = h_verify(h, len, tag, 0);
    free(h);
    return bad;
}

static xr_mem_kind kind(void)
{
    return device ? XR_MEM_CUDA : XR_MEM_HOST;
}

static void target(int fd, void *arg)
{
    (void)arg;
    xr_engine *e = engine("decode");
    uint8_t *t = mem_alloc(SIZE);
    xr_region *g;
    H_OK(xr_mem_register(e, t, SIZE, kind(), 0, XR_ACCESS_RW, &g));
    h_send_metadata(fd, e);
    h_send_u64(fd, (uintptr_t)t);
    char who[64], msg[16];
    size_t n = sizeof msg;
    H_OK(xr_notif_wait(e, 120000, who, sizeof who, msg, &n));
    long long bad = mem_verify(t, SIZE, 1);
    H_CHECK(bad < 0, "WRITE: byte %lld wrong when the notification arrived", bad);
    mem_fill(t, SIZE, 2); /* the READ's source */
    h_send_u64(fd, 1);
    H_CHECK(h_recv_u64(fd, e) == 2, "initiator did not finish");
    H_OK(xr_mem_deregister(g));
    xr_engine_destroy(e);
    mem_free(t);
}

static void initiator(int fd, void *arg)
{
    (void)arg;
    xr_engine *e = engine("prefill");
    xr_peer *p = h_load_peer(fd, e);
    uint64_t ra = h_recv_u64(fd, e);
    uint8_t *l = mem_alloc(SIZE), *back = mem_alloc(SIZE);
    mem_fill(l, SIZE, 1);
    xr_region *g;
    H_OK(xr_mem_register(e, l, SIZE, kind(), 0, XR_ACCESS_NONE, &g));
    /* Direct or staged: where the rails for device memory register it. */
    xr_rail_info r0;
    H_OK(xr_rail_info_get(e, 0, &r0));
    bool direct = device && r0.hmem;

    xr_iov li = {(uintptr_t)l, SIZE}, ri = {ra, SIZE};
    xr_xfer *x;
    H_OK(xr_xfer_create(e, p, XR_OP_WRITE, &li, &ri, 1, "write", 5, &x));
    H_OK(xr_xfer_post(x));
    H_OK(xr_xfer_wait(x, 120000));
    xr_xfer_release(x);
    H_CHECK(h_recv_u64(fd, e) == 1, "target not ready");
    xr_iov lb = {(uintptr_t)back, SIZE};
    H_OK(xr_xfer_create(e, p, XR_OP_READ, &lb, &ri, 1, NULL, 0, &x));
    H_OK(xr_xfer_post(x));
    H_OK(xr_xfer_wait(x, 120000));
    xr_xfer_release(x);
    long long bad = mem_verify(back, SIZE, 2);
    H_CHECK(bad < 0, "READ: byte %lld wrong", bad);

    uint64_t moved[4], staged = 0;
    for (unsigned i = 0; i < 4; i++) {
        xr_rail_info info;
        H_OK(xr_rail_info_get(e, i, &info));
        moved[i] = info.counters.tx_bytes;
        staged += info.counters.staged;
    }
    h_log("%s: rails 0-3 moved %llu / %llu / %llu / %llu bytes, %llu chunks staged",
          !device ? "host memory" : direct ? "device memory, direct" : "device memory, staged",
          (unsigned long long)moved[0], (unsigned long long)moved[1],
          (unsigned long long)moved[2], (unsigned long long)moved[3],
          (unsigned long long)staged);
    bool on_device_rails = direct;
    H_CHECK(on_device_rails ? moved[0] && moved[1] && !moved[2] && !moved[3]
                            : !moved[0] && !moved[1] && moved[2] && moved[3],
            "the bytes should have gone over rails %s only",
            on_device_rails ? "0 and 1 (device memory)" : "2 and 3 (host_only)");
    H_CHECK(direct ? staged == 0 : device ? staged > 0 : staged == 0,
            "%llu chunks staged", (unsigned long long)staged);
    h_log("ok: %s memory went over the %s rails, every byte verified", device ? "device" : "host",
          on_device_rails ? "device-memory" : "host_only");
    h_send_u64(fd, 2);
    H_OK(xr_mem_deregister(g));
    H_OK(xr_peer_unload(p));
    xr_engine_destroy(e);
    mem_free(l);
    mem_free(back);
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[2], "host") && strcmp(argv[2], "cuda")))
        return fprintf(stderr, "usage: %s PROVIDER host|cuda\n", argv[0]), 2;
    provider = argv[1];
    device = !strcmp(argv[2], "cuda");
    if (device) {
        int n = 0;
#ifdef XR_TEST_CUDA
        /* Asked in a child: CUDA must not be initialized before the fork. */
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0)
            _exit(cudaGetDeviceCount(&n) == cudaSuccess && n > 0);
        int st = 0;
        waitpid(pid, &st, 0);
        n = WIFEXITED(st) && WEXITSTATUS(st);
#endif
        if (!n) {
            printf("SKIPPED: no CUDA device here\n");
            return H_SKIP;
        }
    }
    /* Not with device memory: its engine would initialize CUDA here, and
     * the two sides, forked after, could not use it. */
    if (!device)
        h_require_provider(provider);
    int rc = h_run_pair(target, initiator, NULL);
    if (!rc)
        printf("split rails, %s memory on %s: passed\n", argv[2], provider);
    return rc;
}
