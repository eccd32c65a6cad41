/*
 * mr.c - memory regions: registration on every rail, the remote keys that
 * metadata publishes, and the sorted index used to check local buffers.
 */
#include "internal.h"
#include "policy.h"

#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>

static void region_release_mrs(xr_region *g)
{
    for (unsigned i = 0; i < XR_MAX_RAILS; i++) {
        if (g->mr[i])
            fi_close(&g->mr[i]->fid);
        free(g->raw_key[i]);
    }
}

/* Engine lock held. The index is sorted by address, and regions never overlap. */
static size_t lower_bound(xr_engine *e, uint64_t addr)
{
    size_t lo = 0, hi = e->nregions;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (e->regions[mid]->addr < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

xr_region *xr__region_find(xr_engine *e, uint64_t addr, size_t len)
{
    size_t i = lower_bound(e, addr + 1); /* first region starting after addr */
    if (i == 0)
        return NULL;
    xr_region *g = e->regions[i - 1];
    if (addr >= g->addr && len <= g->len && addr - g->addr <= g->len - len)
        return g;
    return NULL;
}

static int register_rail(xr_region *g, xr_rail *r, uint64_t key)
{
    uint64_t access = FI_READ | FI_WRITE | FI_SEND | FI_RECV;
    if (g->access & XR_ACCESS_READ)
        access |= FI_REMOTE_READ;
    if (g->access & XR_ACCESS_WRITE)
        access |= FI_REMOTE_WRITE;
    unsigned i = r->index;
    int rc = xr__rail_mr_reg(r, (void *)(uintptr_t)g->addr, g->len, access, key, &g->mr[i]);
    if (rc)
        return rc;
    g->desc[i] = fi_mr_desc(g->mr[i]);
    g->key[i] = fi_mr_key(g->mr[i]);
    if (g->key[i] == FI_KEY_NOTAVAIL || (r->mr_mode & FI_MR_RAW)) {
        /* Raw keys are larger than 64 bits; the peer maps them with fi_mr_map_raw. */
        uint64_t base = g->addr;
        size_t n = 0;
        fi_mr_raw_attr(g->mr[i], &base, NULL, &n, 0);
        g->raw_key[i] = malloc(n ? n : 1);
        g->raw_len[i] = n;
        if (!g->raw_key[i])
            return xr__fail(XR_ENOMEM, "region: raw key of %zu bytes", n);
        rc = fi_mr_raw_attr(g->mr[i], &base, g->raw_key[i], &n, 0);
        if (rc)
            return xr__fail(XR_EFABRIC, "rail %u (%s): fi_mr_raw_attr failed: %s", i,
                            r->provider, fi_strerror(-rc));
    }
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

int xr_mem_register(xr_engine *e, void *addr, size_t len, xr_mem_kind kind, int device,
                    unsigned access, xr_region **out)
{
    if (out)
        *out = NULL;
    if (!e || !addr || !len || !out)
        return xr__fail(XR_EINVAL, "xr_mem_register: needs an engine, a non-NULL address, a "
                                   "length and an out pointer");
    if (access > XR_ACCESS_RW)
        return xr__fail(XR_EINVAL, "xr_mem_register: access 0x%x is not a XR_ACCESS_* value",
                        access);
    if (kind != XR_MEM_HOST)
        return xr__fail(XR_ENOTSUP, "xr_mem_register: memory kind %d: this build registers "
                                    "host memory only", (int)kind);
    xr_region *g = calloc(1, sizeof *g);
    if (!g)
        return xr__fail(XR_ENOMEM, "xr_mem_register: out of memory");
    g->e = e;
    g->addr = (uintptr_t)addr;
    g->len = len;
    g->kind = kind;
    g->device = device;
    g->access = access;
    g->numa = kind == XR_MEM_HOST ? numa_of_page(addr) : -1;

    pthread_mutex_lock(&e->lock);
    size_t at = lower_bound(e, g->addr);
    bool overlaps = (at < e->nregions && e->regions[at]->addr < g->addr + len) ||
                    (at > 0 && e->regions[at - 1]->addr + e->regions[at - 1]->len > g->addr);
    int rc = 0;
    if (overlaps)
        rc = xr__fail(XR_EEXIST, "xr_mem_register: [%p, +%zu) overlaps a registered region",
                      addr, len);
    uint64_t key = ++e->next_key;
    if (!rc)
        rc = xr__policy_region_rails(e, g, &g->rail_mask);
    for (unsigned i = 0; !rc && i < e->nrails; i++)
        if ((g->rail_mask >> i) & 1)
            rc = register_rail(g, &e->rails[i], key);
    if (!rc && e->nregions == e->cap_regions) {
        size_t cap = e->cap_regions ? 2 * e->cap_regions : 16;
        xr_region **n = realloc(e->regions, cap * sizeof *n);
        if (!n)
            rc = xr__fail(XR_ENOMEM, "xr_mem_register: region index");
        else {
            e->regions = n;
            e->cap_regions = cap;
        }
    }
    if (rc) {
        pthread_mutex_unlock(&e->lock);
        region_release_mrs(g);
        free(g);
        return rc;
    }
    memmove(&e->regions[at + 1], &e->regions[at], (e->nregions - at) * sizeof *e->regions);
    e->regions[at] = g;
    e->nregions++;
    pthread_mutex_unlock(&e->lock);
    *out = g;
    return 0;
}

int xr_mem_deregister(xr_region *g)
{
    if (!g)
        return xr__fail(XR_EINVAL, "xr_mem_deregister: NULL region");
    xr_engine *e = g->e;
    pthread_mutex_lock(&e->lock);
    if (g->refs) {
        unsigned n = g->refs;
        pthread_mutex_unlock(&e->lock);
        return xr__fail(XR_EBUSY, "xr_mem_deregister: region [0x%llx, +%zu) is used by %u "
                                  "transfer(s); release them first",
                        (unsigned long long)g->addr, g->len, n);
    }
    size_t at = lower_bound(e, g->addr);
    if (at < e->nregions && e->regions[at] == g) {
        memmove(&e->regions[at], &e->regions[at + 1], (e->nregions - at - 1) * sizeof *e->regions);
        e->nregions--;
    }
    pthread_mutex_unlock(&e->lock);
    region_release_mrs(g);
    free(g);
    return 0;
}

void xr__region_free_all(xr_engine *e)
{
    for (size_t i = 0; i < e->nregions; i++) {
        region_release_mrs(e->regions[i]);
        free(e->regions[i]);
    }
    free(e->regions);
    e->regions = NULL;
    e->nregions = e->cap_regions = 0;
}
