/*
 * mem.c - the public registration call: the policy picks the rails, staging
 * gets its receive slots, and region.c registers. It sits above all three
 * so that none of them calls another.
 */
#include "policy.h"
#include "region.h"
#include "stage.h"

#include "core/cuda_mem.h"

#include <stdlib.h>

int xr_mem_register(xr_engine *e, void *addr, size_t len, xr_mem_kind kind, int device,
                    unsigned access, xr_region **out)
{
    if (out)
        *out = NULL;
    if (!e || !addr || !len || !out)
        return xr__error_set(XR_EINVAL, "xr_mem_register: needs an engine, a non-NULL address, "
                                        "a length and an out pointer");
    if ((uintptr_t)addr + len < (uintptr_t)addr)
        return xr__error_set(XR_EINVAL, "xr_mem_register: [%p, +%zu) wraps the address space",
                             addr, len);
    if (access > XR_ACCESS_RW)
        return xr__error_set(XR_EINVAL, "xr_mem_register: access 0x%x is not a XR_ACCESS_* "
                                        "value", access);
    if (kind != XR_MEM_HOST && kind != XR_MEM_CUDA)
        return xr__error_set(XR_EINVAL, "xr_mem_register: memory kind %d is not a XR_MEM_* "
                                        "value", (int)kind);
    if (kind == XR_MEM_CUDA) {
        int dev;
        if (!xr__cuda_devices())
            return xr__error_set(XR_ENOTSUP, "xr_mem_register: CUDA memory, but %s",
#ifdef XR_HAVE_CUDA
                                 "the CUDA runtime sees no GPU here"
#else
                                 "this build has no CUDA support"
#endif
            );
        if (xr__cuda_classify(addr, &dev) != XR_MEM_CUDA || dev != device)
            return xr__error_set(XR_EINVAL, "xr_mem_register: %p is not memory of CUDA device "
                                            "%d (the runtime says %s %d)",
                                 addr, device, dev < 0 ? "host memory, device" : "device", dev);
    }
    xr_region *g;
    int rc = xr__region_new(e, (uintptr_t)addr, len, kind, device, access, &g);
    if (rc)
        return rc;
    pthread_mutex_lock(&e->lock);
    rc = xr__policy_region_rails(e, g->addr, len, kind, device, access, &g->rail_mask);
    uint64_t path = xr__region_path_rails(g);
    if (!rc && !(g->rail_mask & path))
        rc = xr__error_set(XR_ENORAIL, "xr_mem_register: the policy's rails for this %s memory "
                                       "(0x%llx) include none of the rails that carry it "
                                       "(0x%llx; host_only rails carry host memory)",
                           kind == XR_MEM_CUDA ? "device" : "host",
                           (unsigned long long)g->rail_mask, (unsigned long long)path);
    g->rail_mask &= path;
    /* A peer's request for staged memory lands in receive slots, which
     * exist from the first such region on. */
    if (!rc && g->staged && g->access)
        rc = xr__stage_need(e, true);
    if (!rc)
        rc = xr__region_publish(g);
    pthread_mutex_unlock(&e->lock);
    if (rc) {
        free(g);
        return rc;
    }
    *out = g;
    return 0;
}
