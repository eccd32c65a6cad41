/*
 * cuda_mem.h - CUDA memory as the engine sees it (cuda.c). Named apart from
 * the toolkit's own cuda.h, which cuda.c includes.
 */
#ifndef XR_CUDA_MEM_H
#define XR_CUDA_MEM_H

#include "xrail.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* GPUs usable at run time; 0 without the toolkit, a driver or a device. */
int xr__cuda_devices(void);
/* Device memory (and its device), or host memory: pageable, pinned or managed. */
xr_mem_kind xr__cuda_classify(const void *p, int *device);
/* The allocation's process-wide unique id (CU_POINTER_ATTRIBUTE_BUFFER_ID); 0 unknown. */
uint64_t xr__cuda_buffer_id(const void *p);
/* Whether cudaIpcGetMemHandle takes the allocation: not for memory from
 * cuMemCreate (PyTorch's expandable segments) or a cudaMallocAsync pool.
 * True when the driver cannot say. */
bool xr__cuda_ipc_capable(const void *p);
/* The whole cudaMalloc allocation holding p; -1 when it cannot say. */
int xr__cuda_alloc_range(const void *p, uint64_t *base, uint64_t *len);
/* Pinned host memory when there is a GPU (*pinned), page-aligned heap otherwise. */
void *xr__cuda_host_alloc(size_t len, bool *pinned);
void xr__cuda_host_free(void *p, bool pinned);
const char *xr__cuda_last_error(void);

#define XR_COPY_MAX_DEVICES 64 /* devices xrail copies on; more are not used */

/* One asynchronous copy at a time; its events are made once, not per copy.
 * An event is bound to the device it was made on, and can only be recorded
 * on that device's streams; a slot that serves two GPUs needs one each. */
typedef struct xr_copy {
    void *event[XR_COPY_MAX_DEVICES]; /* cudaEvent_t per device, made at first use */
    int dev;                          /* the device of the copy in flight */
    bool busy;
} xr_copy;

int xr__cuda_copy_init(xr_copy *c);
void xr__cuda_copy_fini(xr_copy *c);
/* A copy between host and device memory of `device` (gpu), or a memcpy,
 * done at once. 0 started, -1 failed. */
int xr__cuda_copy_start(xr_copy *c, void *dst, const void *src, size_t len, int device, bool gpu);
/* 1 done, 0 still running, -1 failed. */
int xr__cuda_copy_poll(xr_copy *c);

#endif
