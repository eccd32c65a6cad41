/*
 * region.c - memory regions: registration through the MR cache
 * (core/mr_cache.c) on the rails a region uses, the index used to check
 * local buffers, the cache's backend on real rails, and the cache's public
 * calls. Which rails a region uses is decided above (mem.c asks the policy).
 */
#include "region.h"

#include "core/cuda_mem.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>


/* ---- the cache's backend: registration on a real rail ---- */

static int backend_reg(void *ctx, xr_mr_entry *m)
{
    xr_engine *e = ctx;
    xr_rail *r = &e->rails[m->rail];
    if (!m->access)
        return 0; /* a staged region's record: no rail reaches the memory */
    uint64_t key = xr__engine_key(e);
    struct fid_mr *mr;
    int rc = xr__rail_mr_reg(r, (void *)(uintptr_t)m->addr, m->len, m->access, key, m->kind,
                             m->device, &mr);
    if (rc)
        return rc;
    m->mr = mr;
    m->desc = fi_mr_desc(mr);
    m->key = fi_mr_key(mr);
    /* Only a registration peers reach needs a key. Without remote access
     * a provider may give none (libfabric 2.x's shm answers
     * FI_KEY_NOTAVAIL and has no raw key either); a key too large for 64
     * bits (FI_MR_RAW) is read raw and mapped by the peer. */
    bool remote = m->access & (FI_REMOTE_READ | FI_REMOTE_WRITE);
    if (m->key == FI_KEY_NOTAVAIL && !remote) {
        m->key = 0;
    } else if (remote && (m->key == FI_KEY_NOTAVAIL || (r->mr_mode & FI_MR_RAW))) {
        /* Raw keys are larger than 64 bits; the peer maps them with fi_mr_map_raw. */
        uint64_t base = m->addr;
        size_t n = 0;
        fi_mr_raw_attr(mr, &base, NULL, &n, 0);
        m->raw_key = malloc(n ? n : 1);
        m->raw_len = n;
        if (!m->raw_key) {
            fi_close(&mr->fid);
            return xr__error_set(XR_ENOMEM, "region: raw key of %zu bytes", n);
        }
        rc = fi_mr_raw_attr(mr, &base, m->raw_key, &n, 0);
        if (rc) {
            fi_close(&mr->fid);
            free(m->raw_key);
            m->raw_key = NULL;
            return xr__error_set(XR_EFABRIC, "rail %u (%s): fi_mr_raw_attr failed: %s", m->rail,
                            r->provider, fi_strerror(-rc));
        }
    }
    return 0;
}

static void backend_dereg(void *ctx, xr_mr_entry *m)
{
    (void)ctx;
    if (m->mr)
        fi_close(&((struct fid_mr *)m->mr)->fid);
}

void xr__region_cache_start(xr_engine *e)
{
    xr_mr_backend be = {backend_reg, backend_dereg, e};
    xr__mrc_init(&e->mrc, &be, &e->opts.mr_cache);
}

int xr_mr_cache_configure(xr_engine *e, const xr_mr_cache_opts *o)
{
    if (!e || !o)
        return xr__error_set(XR_EINVAL, "xr_mr_cache_configure: NULL argument");
    return xr__mrc_set(&e->mrc, o);
}

int xr_mr_cache_opts_get(xr_engine *e, xr_mr_cache_opts *o)
{
    if (!e || !o)
        return xr__error_set(XR_EINVAL, "xr_mr_cache_opts_get: NULL argument");
    xr__mrc_opts_get(&e->mrc, o);
    return 0;
}

int xr_mr_cache_flush(xr_engine *e)
{
    if (!e)
        return xr__error_set(XR_EINVAL, "xr_mr_cache_flush: NULL engine");
    size_t n = xr__mrc_drop_unused(&e->mrc);
    xr__log_write(&e->log, XR_LOG_INFO, "mr cache: flushed %zu unused registration(s)", n);
    return 0;
}

int xr_mr_cache_stats_get(xr_engine *e, xr_mr_cache_stats *st)
{
    if (!e || !st)
        return xr__error_set(XR_EINVAL, "xr_mr_cache_stats_get: NULL argument");
    xr__mrc_stats_read(&e->mrc, st);
    return 0;
}

/* ---- regions ---- */

static void region_release(xr_region *g)
{
    for (unsigned i = 0; i < XR_MAX_RAILS; i++)
        if (g->ent[i]) {
            xr__mrc_put(&g->e->mrc, g->ent[i]);
            g->ent[i] = NULL;
        }
}

xr_region *xr__region_find(xr_engine *e, uint64_t addr, size_t len)
{
    ptrdiff_t i = xr__spans_enclosing(&e->regions, addr, addr + len, 0);
    return i < 0 ? NULL : e->regions.v[i].item;
}

xr_region *xr__region_find_staged(xr_engine *e, uint64_t addr, size_t len, unsigned need)
{
    for (ptrdiff_t k = xr__spans_enclosing(&e->regions, addr, addr + len, 0); k >= 0;
         k = xr__spans_enclosing(&e->regions, addr, addr + len, (size_t)k + 1)) {
        xr_region *g = e->regions.v[k].item;
        if (g->staged && (g->access & need))
            return g;
    }
    return NULL;
}

int xr__region_rail(xr_region *g, unsigned i)
{
    if (g->ent[i])
        return 0;
    uint64_t access = XR_FI_LOCAL_ACCESS, ra = g->addr, rl = g->len;
    if (g->access & XR_ACCESS_READ)
        access |= FI_REMOTE_READ;
    if (g->access & XR_ACCESS_WRITE)
        access |= FI_REMOTE_WRITE;
    if (g->staged) {
        /* No rail reaches it: the cache keeps a record (range, device,
         * buffer id) without a registration, so a reallocated CUDA address
         * is still told apart from the old one. */
        access = 0;
    }
    uint64_t base, blen;
    if (!g->access && g->kind == XR_MEM_CUDA && !xr__cuda_alloc_range((void *)(uintptr_t)g->addr,
                                                                      &base, &blen)) {
        /* Local-only device memory: the whole allocation, so every buffer
         * carved from it shares one registration. */
        ra = base;
        rl = blen;
    } else if (!g->access) {
        /* Local only: widen to whole pages, so that neighbouring buffers
         * share one registration. A region peers reach is registered
         * exactly: its key must not open a byte more. */
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
        ra = g->addr & ~(page - 1);
        rl = ((g->addr + g->len + page - 1) & ~(page - 1)) - ra;
    }
    uint64_t id = g->kind == XR_MEM_CUDA ? xr__cuda_buffer_id((void *)(uintptr_t)g->addr) : 0;
    xr_mr_entry *m;
    int rc = xr__mrc_get(&g->e->mrc, i, g->addr, g->len, ra, rl, access, g->kind, g->device,
                             id, &m);
    if (rc)
        return rc;
    g->ent[i] = m;
    g->desc[i] = m->desc;
    g->key[i] = m->key;
    return 0;
}

/* The NUMA node of the page at addr, from the kernel; -1 if it cannot say. */
static int numa_of_page(void *addr)
{
#ifdef SYS_move_pages
    void *page = (void *)((uintptr_t)addr & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1));
    int status = -1;
    if (syscall(SYS_move_pages, 0, 1UL, &page, NULL, &status, 0) == 0 && status >= 0)
        return status;
#else
    (void)addr;
#endif
    return -1;
}

/* Some providers list FI_HMEM without being built with CUDA (Debian's shm
 * answers a CUDA registration with FI_ENOSYS). The first device buffer a
 * rail meets settles it: a trial registration of its first bytes, and a
 * rail that refuses stages CUDA memory from then on. */
static void hmem_probe(xr_engine *e, uint64_t addr, size_t len, int device)
{
    for (unsigned i = 0; i < e->nrails; i++) {
        xr_rail *r = &e->rails[i];
        pthread_mutex_lock(&r->lock);
        if (r->hmem && !r->hmem_probed) {
            struct fid_mr *mr;
            uint64_t key = xr__engine_key(e);
            int rc = xr__rail_mr_reg(r, (void *)(uintptr_t)addr, len < 65536 ? len : 65536,
                                     XR_FI_LOCAL_ACCESS | FI_REMOTE_READ | FI_REMOTE_WRITE, key,
                                     XR_MEM_CUDA, device, &mr);
            if (rc) {
                r->hmem = false;
                xr__log_write(&e->log, XR_LOG_INFO, "rail %u (%s) lists FI_HMEM but cannot register CUDA "
                                        "memory; it stages CUDA memory: %s",
                        i, r->provider, xr__error_last());
            } else {
                fi_close(&mr->fid);
            }
            r->hmem_probed = true;
        }
        pthread_mutex_unlock(&r->lock);
    }
}

/* Whether no rail can reach memory of this kind: CUDA memory on rails
 * without FI_HMEM (mixed rails stage too, to keep one path per region;
 * rails declared host_only do not count, as they never carry it), or host
 * memory when the engine was told to stage it for tests. */
static bool staged(const xr_engine *e, xr_mem_kind kind)
{
    if (kind == XR_MEM_HOST)
        return e->opts.stage.host != 0;
    bool any = false;
    for (unsigned i = 0; i < e->nrails; i++) {
        if (e->rails[i].host_only)
            continue;
        if (!e->rails[i].hmem)
            return true;
        any = true;
    }
    return !any;
}

uint64_t xr__region_path_rails(const xr_region *g)
{
    const xr_engine *e = g->e;
    uint64_t host = 0, all = xr__engine_all_rails(e);
    for (unsigned i = 0; i < e->nrails; i++)
        host |= (uint64_t)e->rails[i].host_only << i;
    if (g->kind == XR_MEM_CUDA && !g->staged)
        return all & ~host;
    return host ? host : all;
}

/* A rail that reaches only its own host and registers device memory
 * (libfabric's shm built with CUDA) moves it through CUDA IPC, and falls
 * back without a word to copies through 32 KiB host buffers for memory
 * that has no IPC handle: the trap NIXL's users met with PyTorch's
 * expandable segments (0.3 GB/s, ai-dynamo/nixl#1754). Such memory is
 * refused, saying why, rather than moved slowly. */
static int ipc_check(const xr_engine *e, uint64_t addr, size_t len, int device)
{
    for (unsigned i = 0; i < e->nrails; i++) {
        const xr_rail *r = &e->rails[i];
        if (!r->hmem || !r->local_only)
            continue;
        if (!xr__cuda_ipc_capable((void *)(uintptr_t)addr))
            return xr__error_set(XR_ENOTSUP, "device memory [0x%llx, +%zu) on GPU %d has no CUDA IPC "
                                        "handle (it comes from cuMemCreate, e.g. PyTorch's "
                                        "expandable_segments, or from a cudaMallocAsync pool), and "
                                        "rail %u (%s) moves device memory between processes only "
                                        "through CUDA IPC; without it libfabric would copy through "
                                        "host buffers at a fraction of the speed. Allocate it with "
                                        "cudaMalloc (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False), "
                                        "or use rails that stage device memory",
                              (unsigned long long)addr, len, device, i, r->provider);
        return 0; /* one answer from the driver serves every rail */
    }
    return 0;
}

int xr__region_new(xr_engine *e, uint64_t addr, size_t len, xr_mem_kind kind, int device,
                   unsigned access, xr_region **out)
{
    xr_region *g = calloc(1, sizeof *g);
    if (!g)
        return xr__error_set(XR_ENOMEM, "region: out of memory");
    g->e = e;
    g->addr = addr;
    g->len = len;
    g->kind = kind;
    g->device = device;
    g->access = access;
    g->numa = kind == XR_MEM_HOST ? numa_of_page((void *)(uintptr_t)addr) : -1;
    if (kind == XR_MEM_CUDA)
        hmem_probe(e, addr, len, device);
    g->staged = staged(e, kind);
    int rc = kind == XR_MEM_CUDA && !g->staged ? ipc_check(e, addr, len, device) : 0;
    if (rc) {
        free(g);
        return rc;
    }
    *out = g;
    return 0;
}

int xr__region_publish(xr_region *g)
{
    xr_engine *e = g->e;
    int rc = 0;
    /* Peers get keys for every rail of the mask in the metadata, so a
     * region they reach is registered on all of them now. */
    for (unsigned i = 0; !rc && g->access && i < e->nrails; i++)
        if ((g->rail_mask >> i) & 1)
            rc = xr__region_rail(g, i);
    if (!rc && xr__spans_insert(&e->regions, g->addr, g->addr + g->len, g))
        rc = xr__error_set(XR_ENOMEM, "xr_mem_register: region index");
    if (rc)
        region_release(g);
    else
        atomic_fetch_add(&e->md_gen, 1);
    return rc;
}

/* Whether every page of [addr, addr + len) is mapped: registration on
 * tcp or shm would not notice a wild pointer, and the provider would
 * fault on it later, in the middle of a transfer. */
static bool mapped(uint64_t addr, size_t len)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t a = addr & ~(page - 1), end = addr + len;
    unsigned char vec[256];
    while (a < end) {
        uint64_t n = (end - a + page - 1) / page;
        if (n > sizeof vec)
            n = sizeof vec;
        if (mincore((void *)(uintptr_t)a, n * page, vec))
            return false;
        a += n * page;
    }
    return true;
}

int xr__region_implicit(xr_engine *e, uint64_t addr, size_t len, xr_region **out)
{
    int dev;
    xr_mem_kind kind = xr__cuda_classify((void *)(uintptr_t)addr, &dev);
    if (kind == XR_MEM_HOST && !mapped(addr, len))
        return xr__error_set(XR_ENOTREG, "local buffer [0x%llx, +%zu) is not registered, and is not "
                                    "mapped memory that could be registered on demand",
                        (unsigned long long)addr, len);
    xr_region *g;
    int rc = xr__region_new(e, addr, len, kind, dev, XR_ACCESS_NONE, &g);
    if (rc)
        return rc;
    /* The plan picks the rails; registration follows it lazily, through
     * the cache, so a buffer sent again hits the entry this one leaves. */
    g->rail_mask = xr__region_path_rails(g);
    *out = g;
    return 0;
}

void xr__region_drop(xr_region *g)
{
    region_release(g);
    free(g);
}

int xr_mem_invalidate(xr_engine *e, const void *addr, size_t len)
{
    if (!e || !addr || !len)
        return xr__error_set(XR_EINVAL, "xr_mem_invalidate: needs an engine, an address and a length");
    xr__mrc_invalidate(&e->mrc, (uintptr_t)addr, len);
    return 0;
}

int xr_mem_deregister(xr_region *g)
{
    if (!g)
        return xr__error_set(XR_EINVAL, "xr_mem_deregister: NULL region");
    xr_engine *e = g->e;
    pthread_mutex_lock(&e->lock);
    if (g->refs) {
        unsigned n = g->refs;
        pthread_mutex_unlock(&e->lock);
        return xr__error_set(XR_EBUSY, "xr_mem_deregister: region [0x%llx, +%zu) is used by %u "
                                  "transfer(s); release them first",
                        (unsigned long long)g->addr, g->len, n);
    }
    xr__spans_remove(&e->regions, g->addr, g);
    region_release(g);
    atomic_fetch_add(&e->md_gen, 1);
    pthread_mutex_unlock(&e->lock);
    /* The memory may be freed after this: registrations of it that nobody
     * else holds must never be served again. */
    xr__mrc_invalidate(&e->mrc, g->addr, g->len);
    free(g);
    return 0;
}

void xr__region_free_all(xr_engine *e)
{
    for (size_t i = 0; i < e->regions.n; i++) {
        xr_region *g = e->regions.v[i].item;
        region_release(g);
        free(g);
    }
    xr__spans_free(&e->regions);
}
