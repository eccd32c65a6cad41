/*
 * cuda_bw.c - the copy ceilings of xrail's GPU paths, on this machine:
 *
 *   xrail-bench-cuda [--src P] [--dst D] [--sizes 64k,1M,16M] [--duration S]
 *
 * per block size:
 *   peer     cudaMemcpyPeerAsync from GPU P to GPU D (on one GPU, P = D, a
 *            device-to-device copy): the ceiling of a direct GPU path
 *   h2d      pinned host -> GPU D (cudaMemcpyAsync from cudaHostAlloc memory)
 *   d2h      GPU P -> pinned host: with h2d, the ceilings of the staged path,
 *            which copies device -> bounce slot -> wire -> bounce slot -> device
 *
 * Each figure is bytes / wall time of back-to-back copies of one block on one
 * stream for the duration, after a warm-up; GB/s are 10^9 bytes a second, as
 * xrail-bench prints them. Not a test: the numbers go in docs/gpu.md.
 */
#include "size_arg.h"

#include <cuda_runtime_api.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call)                                                                          \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                             \
            fprintf(stderr, "xrail-bench-cuda: %s: %s\n", #call, cudaGetErrorString(e_));    \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef enum { PEER, H2D, D2H } kind;

static void copy_once(kind k, void *dst, int ddev, const void *src, int sdev, size_t size,
                      cudaStream_t st)
{
    if (k == PEER)
        CHECK(cudaMemcpyPeerAsync(dst, ddev, src, sdev, size, st));
    else
        CHECK(cudaMemcpyAsync(dst, src, size,
                              k == H2D ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, st));
}

/* Copies of `size` bytes, batches of 8 then a sync, until `secs` pass. */
static double rate(kind k, void *dst, int ddev, const void *src, int sdev, size_t size,
                   double secs, cudaStream_t st)
{
    for (int warm = 0; warm < 4; warm++)
        copy_once(k, dst, ddev, src, sdev, size, st);
    CHECK(cudaStreamSynchronize(st));
    double t0 = now_s(), t;
    size_t n = 0;
    do {
        for (int i = 0; i < 8; i++, n++)
            copy_once(k, dst, ddev, src, sdev, size, st);
        CHECK(cudaStreamSynchronize(st));
        t = now_s();
    } while (t - t0 < secs);
    return (double)n * (double)size / (t - t0) / 1e9;
}

int main(int argc, char **argv)
{
    int src = 0, dst = 0;
    double secs = 1;
    char sizes[256] = "64k,1M,16M";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--src"))
            src = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dst"))
            dst = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration"))
            secs = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--sizes"))
            snprintf(sizes, sizeof sizes, "%s", argv[i + 1]);
        else {
            fprintf(stderr, "usage: xrail-bench-cuda [--src P] [--dst D] [--sizes L] "
                            "[--duration S]\n");
            return 2;
        }
    }
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("SKIPPED: no GPU\n");
        return 77;
    }
    if (src >= n || dst >= n) {
        fprintf(stderr, "xrail-bench-cuda: GPUs %d and %d asked, %d present\n", src, dst, n);
        return 2;
    }
    int peer = src == dst;
    if (!peer) {
        CHECK(cudaDeviceCanAccessPeer(&peer, src, dst));
        if (peer) {
            CHECK(cudaSetDevice(src));
            cudaError_t e = cudaDeviceEnablePeerAccess(dst, 0);
            if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled)
                CHECK(e);
        }
    }
    struct cudaDeviceProp ps, pd;
    CHECK(cudaGetDeviceProperties(&ps, src));
    CHECK(cudaGetDeviceProperties(&pd, dst));
    printf("# xrail-bench-cuda: GPU %d (%s) -> GPU %d (%s), peer access %s, %.1f s a point\n",
           src, ps.name, dst, pd.name, src == dst ? "n/a (one GPU)" : peer ? "on" : "off", secs);
    printf("%-8s %10s %10s %10s\n", "size", "peer GB/s", "h2d GB/s", "d2h GB/s");

    size_t max = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", sizes);
    for (char *sv, *t = strtok_r(buf, ",", &sv); t; t = strtok_r(NULL, ",", &sv))
        if (size_arg(t) > max)
            max = size_arg(t);
    void *ds, *dd, *host;
    CHECK(cudaSetDevice(src));
    CHECK(cudaMalloc(&ds, max));
    CHECK(cudaMemset(ds, 1, max));
    CHECK(cudaSetDevice(dst));
    CHECK(cudaMalloc(&dd, max));
    CHECK(cudaHostAlloc(&host, max, cudaHostAllocPortable));
    memset(host, 2, max);
    cudaStream_t st;
    CHECK(cudaStreamCreate(&st)); /* on dst: peer and h2d land there */
    cudaStream_t ss;
    CHECK(cudaSetDevice(src));
    CHECK(cudaStreamCreate(&ss)); /* on src: d2h reads there */

    snprintf(buf, sizeof buf, "%s", sizes);
    for (char *sv, *t = strtok_r(buf, ",", &sv); t; t = strtok_r(NULL, ",", &sv)) {
        size_t size = size_arg(t);
        if (!size)
            continue;
        CHECK(cudaSetDevice(dst));
        double p = rate(PEER, dd, dst, ds, src, size, secs, st);
        double h2d = rate(H2D, dd, dst, host, -1, size, secs, st);
        CHECK(cudaSetDevice(src));
        double d2h = rate(D2H, host, -1, ds, src, size, secs, ss);
        printf("%-8s %10.2f %10.2f %10.2f\n", t, p, h2d, d2h);
        fflush(stdout);
    }
    cudaFreeHost(host);
    cudaFree(dd);
    cudaFree(ds);
    return 0;
}
