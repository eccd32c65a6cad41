/*
 * mr_cache.h - the memory registration cache between regions/transfers and
 * the providers' registration calls (see mr_cache.c).
 */
#ifndef XR_MR_CACHE_H
#define XR_MR_CACHE_H

#include "list.h"
#include "spans.h"
#include "xrail.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* One registration of [addr, addr + len) on one rail. */
typedef struct xr_mr_entry {
    uint64_t addr, len;
    unsigned rail;
    uint64_t access;        /* FI_* access bits it was registered with */
    xr_mem_kind kind;
    int device;
    uint64_t buffer_id;     /* CUDA allocation id; 0 for host memory */
    /* What the backend made: */
    void *mr;               /* struct fid_mr * */
    void *desc;
    uint64_t key;
    uint8_t *raw_key;       /* FI_MR_RAW providers; NULL otherwise */
    size_t raw_len;
    /* Cache state, under the cache lock: */
    unsigned refs;
    bool indexed;           /* findable; false once invalidated, or with the cache off */
    xr_list lru;            /* on the LRU list while unused and indexed */
} xr_mr_entry;

/* How the cache registers and deregisters; region.c's for real rails, a
 * counting stand-in in the module's unit test. `e` is filled in place. */
typedef struct xr_mr_backend {
    int (*reg)(void *ctx, xr_mr_entry *e);
    void (*dereg)(void *ctx, xr_mr_entry *e);
    void *ctx;
} xr_mr_backend;

typedef struct xr_mr_cache {
    pthread_mutex_t lock;
    xr_mr_backend be;
    bool enabled;
    size_t max_entries, max_bytes;  /* 0: no limit */
    xr_spans index[XR_MAX_RAILS];
    xr_list lru;                      /* front: most recently released */
    uint64_t entries, bytes, in_use;  /* registered now (indexed or held) */
    uint64_t hits, misses, evictions, invalidations, stale;
    uint64_t registrations, deregistrations, register_ns;
    uint64_t rail_registrations[XR_MAX_RAILS];
} xr_mr_cache;

void xr__mrc_init(xr_mr_cache *c, const xr_mr_backend *be, const xr_mr_cache_opts *o);
/* Deregister everything; entries still held are a caller's bug, and are
 * deregistered all the same. */
void xr__mrc_fini(xr_mr_cache *c);

/*
 * A registration on `rail` that covers [addr, addr + len) with at least
 * `access`, for memory of that kind and device: an enclosing cached entry
 * (a hit, unless its buffer id differs: then the old one is stale and is
 * dropped), else a new one of the range [reg_addr, reg_addr + reg_len),
 * which the caller widens to pages or to the whole allocation. The caller
 * holds a reference until xr__mrc_put.
 */
int xr__mrc_get(xr_mr_cache *c, unsigned rail, uint64_t addr, uint64_t len,
                    uint64_t reg_addr, uint64_t reg_len, uint64_t access, xr_mem_kind kind,
                    int device, uint64_t buffer_id, xr_mr_entry **out);
void xr__mrc_put(xr_mr_cache *c, xr_mr_entry *e);
/* Drop the unused entries that overlap [addr, addr + len) on any rail: the
 * memory may be freed after this. Entries someone holds stay valid: the
 * holder vouches that the memory is still there. */
void xr__mrc_invalidate(xr_mr_cache *c, uint64_t addr, uint64_t len);
/* Drop every unused entry; the number dropped. */
size_t xr__mrc_drop_unused(xr_mr_cache *c);
int xr__mrc_set(xr_mr_cache *c, const xr_mr_cache_opts *o);
/* The settings in force, read under the cache's lock. */
void xr__mrc_opts_get(xr_mr_cache *c, xr_mr_cache_opts *o);
void xr__mrc_stats_read(xr_mr_cache *c, xr_mr_cache_stats *st);

#endif
