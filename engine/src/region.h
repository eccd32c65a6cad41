/*
 * region.h - registered memory (region.c): regions, their registrations on
 * rails through the MR cache, and the index that checks local buffers.
 */
#ifndef XR_REGION_H
#define XR_REGION_H

#include "engine.h"

struct xr_region {
    xr_engine *e;
    uint64_t addr;
    size_t len;
    xr_mem_kind kind;
    int device;
    unsigned access;
    unsigned refs;            /* transfers that use it; guarded by the engine lock */
    uint64_t rail_mask;       /* rails it may use (the policy's register hook) */
    int numa;                 /* host memory: NUMA node of its first page; -1 unknown */
    bool staged;              /* no rail reaches it: its bytes go through stage.c */
    /* Per rail, the cache entry that registers it: all of rail_mask at once
     * for a region peers reach (its keys are published), and for a local-only
     * one the first time a plan uses the rail. desc and key are copied out
     * for the post path. Engine lock held to fill them. */
    struct xr_mr_entry *ent[XR_MAX_RAILS];
    void *desc[XR_MAX_RAILS];
    uint64_t key[XR_MAX_RAILS];
};

/* A new region, not yet registered anywhere nor indexed. */
int xr__region_new(xr_engine *e, uint64_t addr, size_t len, xr_mem_kind kind, int device,
                   unsigned access, xr_region **out);
/* The rails that may carry g's bytes: with rails declared host_only,
 * those for host memory (and staged device memory), the others for device
 * memory the rails register; without, every rail. */
uint64_t xr__region_path_rails(const xr_region *g);
/* Register g on every rail of g->rail_mask (the caller set it) and index
 * it; on failure nothing of it stays. Engine lock held. */
int xr__region_publish(xr_region *g);
/* The innermost region enclosing the range; NULL if none. Engine lock held. */
xr_region *xr__region_find(xr_engine *e, uint64_t addr, size_t len);
/* A staged region enclosing the range that grants `need`; NULL if none.
 * Engine lock held. */
xr_region *xr__region_find_staged(xr_engine *e, uint64_t addr, size_t len, unsigned need);
/* Make sure g is registered on rail i (a local-only region is registered
 * lazily, on the rails its plans use). Engine lock held. */
int xr__region_rail(xr_region *g, unsigned i);
/* A local-only region for a mapped buffer nobody registered; the transfer
 * that needs it owns it and drops it. Engine lock held. */
int xr__region_implicit(xr_engine *e, uint64_t addr, size_t len, xr_region **out);
/* Release g's registrations and free it (not indexed). */
void xr__region_drop(xr_region *g);
void xr__region_cache_start(xr_engine *e);
void xr__region_free_all(xr_engine *e);

#endif
