/*
 * cuda.c - CUDA memory: what a pointer is, the identity of its allocation,
 * pinned host memory for staging, and asynchronous copies that progress
 * polls instead of waiting on.
 *
 * Built against the CUDA runtime when CMake finds the toolkit (XR_HAVE_CUDA),
 * linked statically so that libxrail loads on machines without it. With no
 * toolkit at build time, or no GPU at run time, every pointer is host memory
 * and a copy is a memcpy that is done at once.
 *
 * The buffer id and the allocation range come from the driver API, which
 * is looked up with dlopen: linking libcuda would tie the library to
 * machines that have a driver.
 */
#include "cuda_mem.h"

#include <stdlib.h>
#include <string.h>

#ifdef XR_HAVE_CUDA
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#define STREAMS_PER_DEVICE 4
#define MAX_DEVICES XR_COPY_MAX_DEVICES

static struct {
    pthread_once_t once;
    int ndevices;
    pid_t pid;                /* the process that initialized CUDA */
    CUresult (*get_attr)(void *, CUpointer_attribute, CUdeviceptr);
    CUresult (*addr_range)(CUdeviceptr *, size_t *, CUdeviceptr);
    pthread_mutex_t lock;
    cudaStream_t streams[MAX_DEVICES][STREAMS_PER_DEVICE];
    unsigned next[MAX_DEVICES];
} G = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER};

static void probe(void)
{
    int n = 0;
    G.pid = getpid();
    if (cudaGetDeviceCount(&n) != cudaSuccess)
        n = 0;
    G.ndevices = n > MAX_DEVICES ? MAX_DEVICES : n;
    if (!G.ndevices)
        return;
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (h) {
        *(void **)&G.get_attr = dlsym(h, "cuPointerGetAttribute");
        *(void **)&G.addr_range = dlsym(h, "cuMemGetAddressRange_v2");
    }
}

int xr__cuda_devices(void)
{
    pthread_once(&G.once, probe);
    /* CUDA does not survive fork: in a child of a process that initialized
     * it, every pointer is host memory and copies are memcpy. */
    if (G.ndevices && getpid() != G.pid)
        return 0;
    return G.ndevices;
}

xr_mem_kind xr__cuda_classify(const void *p, int *device)
{
    *device = -1;
    if (!xr__cuda_devices())
        return XR_MEM_HOST;
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError(); /* a plain host pointer on older runtimes: clear it */
        return XR_MEM_HOST;
    }
    /* Pinned host and managed memory are reachable by the CPU, and by the
     * NIC through an ordinary registration. */
    if (a.type != cudaMemoryTypeDevice)
        return XR_MEM_HOST;
    *device = a.device;
    return XR_MEM_CUDA;
}

uint64_t xr__cuda_buffer_id(const void *p)
{
    unsigned long long id = 0;
    if (xr__cuda_devices() && G.get_attr &&
        G.get_attr(&id, CU_POINTER_ATTRIBUTE_BUFFER_ID, (CUdeviceptr)(uintptr_t)p) != CUDA_SUCCESS)
        id = 0;
    return id;
}

bool xr__cuda_ipc_capable(const void *p)
{
    /* Zeroed wide enough for however the driver writes its boolean. */
    unsigned long long yes = 0;
    if (!xr__cuda_devices() || !G.get_attr ||
        G.get_attr(&yes, CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE,
                   (CUdeviceptr)(uintptr_t)p) != CUDA_SUCCESS)
        return true; /* a driver that cannot say: as before it could */
    return yes != 0;
}

int xr__cuda_alloc_range(const void *p, uint64_t *base, uint64_t *len)
{
    CUdeviceptr b;
    size_t n;
    if (!xr__cuda_devices() || !G.addr_range ||
        G.addr_range(&b, &n, (CUdeviceptr)(uintptr_t)p) != CUDA_SUCCESS)
        return -1;
    *base = (uint64_t)b;
    *len = n;
    return 0;
}

void *xr__cuda_host_alloc(size_t len, bool *pinned)
{
    void *p = NULL;
    *pinned = false;
    if (xr__cuda_devices() && cudaHostAlloc(&p, len, cudaHostAllocPortable) == cudaSuccess) {
        *pinned = true;
        return p;
    }
    return aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
}

void xr__cuda_host_free(void *p, bool pinned)
{
    if (pinned)
        cudaFreeHost(p);
    else
        free(p);
}

/* A stream of the device, created the first time it is needed (not per
 * copy); copies spread over a few so that they overlap each other. */
static cudaStream_t stream_of(int dev)
{
    if (dev < 0 || dev >= G.ndevices)
        dev = 0;
    pthread_mutex_lock(&G.lock);
    unsigned k = G.next[dev]++ % STREAMS_PER_DEVICE;
    if (!G.streams[dev][k]) {
        cudaSetDevice(dev);
        cudaStreamCreateWithFlags(&G.streams[dev][k], cudaStreamNonBlocking);
    }
    cudaStream_t s = G.streams[dev][k];
    pthread_mutex_unlock(&G.lock);
    return s;
}

int xr__cuda_copy_init(xr_copy *c)
{
    /* The event is made by the slot's first device copy: host-only staging
     * never touches CUDA. */
    memset(c, 0, sizeof *c);
    return 0;
}

void xr__cuda_copy_fini(xr_copy *c)
{
    for (int d = 0; d < XR_COPY_MAX_DEVICES; d++)
        if (c->event[d])
            cudaEventDestroy((cudaEvent_t)c->event[d]);
    memset(c->event, 0, sizeof c->event);
}

int xr__cuda_copy_start(xr_copy *c, void *dst, const void *src, size_t len, int device, bool gpu)
{
    c->busy = false;
    if (!gpu) {
        memcpy(dst, src, len);
        return 0;
    }
    if (!xr__cuda_devices())
        return -1;
    int d = device < 0 || device >= G.ndevices ? 0 : device;
    /* The calling thread's current device is whatever it last set (a
     * progress thread: device 0); the stream and the event must be d's. */
    cudaStream_t s = stream_of(d);
    if (cudaSetDevice(d) != cudaSuccess)
        return -1;
    if (!c->event[d]) {
        cudaEvent_t ev;
        if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess)
            return -1;
        c->event[d] = ev;
    }
    if (cudaMemcpyAsync(dst, src, len, cudaMemcpyDefault, s) != cudaSuccess ||
        cudaEventRecord((cudaEvent_t)c->event[d], s) != cudaSuccess)
        return -1;
    c->dev = d;
    c->busy = true;
    return 0;
}

int xr__cuda_copy_poll(xr_copy *c)
{
    if (!c->busy)
        return 1;
    cudaError_t rc = cudaEventQuery((cudaEvent_t)c->event[c->dev]);
    if (rc == cudaErrorNotReady)
        return 0;
    c->busy = false;
    return rc == cudaSuccess ? 1 : -1;
}

const char *xr__cuda_last_error(void)
{
    return cudaGetErrorString(cudaGetLastError());
}

#else /* no CUDA toolkit at build time */

int xr__cuda_devices(void)
{
    return 0;
}

xr_mem_kind xr__cuda_classify(const void *p, int *device)
{
    (void)p;
    *device = -1;
    return XR_MEM_HOST;
}

uint64_t xr__cuda_buffer_id(const void *p)
{
    (void)p;
    return 0;
}

bool xr__cuda_ipc_capable(const void *p)
{
    (void)p;
    return true;
}

int xr__cuda_alloc_range(const void *p, uint64_t *base, uint64_t *len)
{
    (void)p;
    (void)base;
    (void)len;
    return -1;
}

void *xr__cuda_host_alloc(size_t len, bool *pinned)
{
    *pinned = false;
    return aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
}

void xr__cuda_host_free(void *p, bool pinned)
{
    (void)pinned;
    free(p);
}

int xr__cuda_copy_init(xr_copy *c)
{
    memset(c, 0, sizeof *c);
    return 0;
}

void xr__cuda_copy_fini(xr_copy *c)
{
    (void)c;
}

int xr__cuda_copy_start(xr_copy *c, void *dst, const void *src, size_t len, int device, bool gpu)
{
    (void)device;
    c->busy = false;
    if (gpu)
        return -1;
    memcpy(dst, src, len);
    return 0;
}

int xr__cuda_copy_poll(xr_copy *c)
{
    (void)c;
    return 1;
}

const char *xr__cuda_last_error(void)
{
    return "this build has no CUDA";
}

#endif
