/*
 * mr_cache.c - the memory registration cache.
 *
 * Registration is where deployments lose minutes (Mooncake measured 123.7 s
 * for 48 GPU buffers on 32 NICs), so a registration, once made, is kept
 * and shared: every request for a range that an existing registration of
 * the same rail, memory kind and device encloses, with at least the access
 * asked for, is served by it. Entries are refcounted; an unused one stays
 * registered on an LRU list until the limits (count, bytes) evict it, a
 * flush drops it, or an invalidation of its range does.
 *
 * Never stale: for CUDA memory the allocation's buffer id is compared on
 * every hit, so a freed and reallocated address gets a fresh registration.
 * Host memory has no such id; its contract is that memory is deregistered
 * (xr_mem_deregister, which invalidates the range) or the cache flushed
 * before it is freed, or the cache is off.
 *
 * With the cache off, nothing is indexed: every request registers, and the
 * last release deregisters, with the same results otherwise.
 */
#include "mr_cache.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void xr__mrc_init(xr_mr_cache *c, const xr_mr_backend *be, const xr_mr_cache_opts *o)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    xr__list_init(&c->lru);
    c->be = *be;
    c->enabled = o->enabled != 0;
    c->max_entries = o->max_entries;
    c->max_bytes = o->max_bytes;
}

/* The least recently released unused entry; NULL if none. */
static xr_mr_entry *lru_oldest(xr_mr_cache *c)
{
    return xr__list_empty(&c->lru) ? NULL : xr__list_entry(c->lru.prev, xr_mr_entry, lru);
}

/* Deregister an unused entry and forget it. Cache lock held. */
static void destroy(xr_mr_cache *c, xr_mr_entry *e)
{
    if (e->indexed) {
        xr__spans_remove(&c->index[e->rail], e->addr, e);
        xr__list_remove(&e->lru);
        e->indexed = false;
    }
    c->be.dereg(c->be.ctx, e);
    c->deregistrations++;
    c->entries--;
    c->bytes -= e->len;
    free(e->raw_key);
    free(e);
}

static bool over_limits(const xr_mr_cache *c)
{
    return (c->max_entries && c->entries > c->max_entries) ||
           (c->max_bytes && c->bytes > c->max_bytes);
}

/* Evict unused entries, least recently used first, until within limits. */
static void evict(xr_mr_cache *c)
{
    while (over_limits(c) && lru_oldest(c)) {
        destroy(c, lru_oldest(c));
        c->evictions++;
    }
}

static bool matches(const xr_mr_entry *e, uint64_t access, xr_mem_kind kind, int device)
{
    return (e->access & access) == access && e->kind == kind &&
           (kind == XR_MEM_HOST || e->device == device);
}

int xr__mrc_get(xr_mr_cache *c, unsigned rail, uint64_t addr, uint64_t len,
                    uint64_t reg_addr, uint64_t reg_len, uint64_t access, xr_mem_kind kind,
                    int device, uint64_t buffer_id, xr_mr_entry **out)
{
    *out = NULL;
    if (rail >= XR_MAX_RAILS || !len || reg_addr > addr || reg_addr + reg_len < addr + len)
        return xr__error_set(XR_EINVAL, "mr cache: bad request for [0x%llx, +%llu) on rail %u",
                        (unsigned long long)addr, (unsigned long long)len, rail);
    pthread_mutex_lock(&c->lock);
    xr_spans *ix = &c->index[rail];
    for (ptrdiff_t i = xr__spans_enclosing(ix, addr, addr + len, 0); c->enabled && i >= 0;
         i = xr__spans_enclosing(ix, addr, addr + len, (size_t)i + 1)) {
        xr_mr_entry *e = ix->v[i].item;
        if (!matches(e, access, kind, device))
            continue;
        if (e->buffer_id != buffer_id) {
            /* The address now belongs to another allocation: the entry is
             * stale and must never be served again. */
            c->stale++;
            e->indexed = false;
            xr__spans_remove(ix, e->addr, e);
            xr__list_remove(&e->lru);
            if (!e->refs)
                destroy(c, e);
            i--; /* the array shifted down over the removed span */
            continue;
        }
        if (!e->refs++) {
            xr__list_remove(&e->lru);
            c->in_use++;
        }
        c->hits++;
        pthread_mutex_unlock(&c->lock);
        *out = e;
        return 0;
    }
    c->misses++;
    xr_mr_entry *e = calloc(1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&c->lock);
        return xr__error_set(XR_ENOMEM, "mr cache: out of memory");
    }
    *e = (xr_mr_entry){.addr = reg_addr, .len = reg_len, .rail = rail, .access = access,
                       .kind = kind, .device = device, .buffer_id = buffer_id, .refs = 1};
    xr__list_init(&e->lru);
    /* Registration can take long (pinning); it runs under the cache lock so
     * that two requests for one range never both register it. */
    uint64_t t0 = now_ns();
    int rc = c->be.reg(c->be.ctx, e);
    c->register_ns += now_ns() - t0;
    if (rc) {
        pthread_mutex_unlock(&c->lock);
        free(e->raw_key);
        free(e);
        return rc;
    }
    c->registrations++;
    c->rail_registrations[rail]++;
    c->entries++;
    c->bytes += e->len;
    c->in_use++;
    if (c->enabled) {
        if (xr__spans_insert(ix, e->addr, e->addr + e->len, e) == 0)
            e->indexed = true; /* unindexed, it still works: it is just not shared */
    }
    evict(c);
    pthread_mutex_unlock(&c->lock);
    *out = e;
    return 0;
}

void xr__mrc_put(xr_mr_cache *c, xr_mr_entry *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&c->lock);
    if (--e->refs == 0) {
        c->in_use--;
        if (e->indexed && c->enabled) {
            xr__list_push_front(&c->lru, &e->lru);
            evict(c);
        } else {
            destroy(c, e);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

void xr__mrc_invalidate(xr_mr_cache *c, uint64_t addr, uint64_t len)
{
    pthread_mutex_lock(&c->lock);
    for (unsigned r = 0; r < XR_MAX_RAILS; r++) {
        xr_spans *ix = &c->index[r];
        ptrdiff_t i = xr__spans_overlapping(ix, addr, addr + len, 0);
        while (i >= 0) {
            xr_mr_entry *e = ix->v[i].item;
            if (e->refs) {
                i = xr__spans_overlapping(ix, addr, addr + len, (size_t)i + 1);
                continue;
            }
            destroy(c, e); /* the array shifts down: look again at i */
            c->invalidations++;
            i = xr__spans_overlapping(ix, addr, addr + len, (size_t)i);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

size_t xr__mrc_drop_unused(xr_mr_cache *c)
{
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    while (lru_oldest(c)) {
        destroy(c, lru_oldest(c));
        n++;
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

int xr__mrc_set(xr_mr_cache *c, const xr_mr_cache_opts *o)
{
    pthread_mutex_lock(&c->lock);
    c->max_entries = o->max_entries;
    c->max_bytes = o->max_bytes;
    if (c->enabled && !o->enabled) {
        /* Off: drop what is unused, and stop sharing what is held, so that
         * its last release deregisters it. */
        while (lru_oldest(c))
            destroy(c, lru_oldest(c));
        for (unsigned r = 0; r < XR_MAX_RAILS; r++) {
            for (size_t i = 0; i < c->index[r].n; i++)
                ((xr_mr_entry *)c->index[r].v[i].item)->indexed = false;
            xr__spans_free(&c->index[r]);
        }
    }
    c->enabled = o->enabled != 0;
    evict(c);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

void xr__mrc_opts_get(xr_mr_cache *c, xr_mr_cache_opts *o)
{
    pthread_mutex_lock(&c->lock);
    *o = (xr_mr_cache_opts){.enabled = c->enabled, .max_entries = c->max_entries,
                            .max_bytes = c->max_bytes};
    pthread_mutex_unlock(&c->lock);
}

void xr__mrc_stats_read(xr_mr_cache *c, xr_mr_cache_stats *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&c->lock);
    st->enabled = c->enabled;
    st->max_entries = c->max_entries;
    st->max_bytes = c->max_bytes;
    st->entries = c->entries;
    st->bytes = c->bytes;
    st->in_use = c->in_use;
    st->hits = c->hits;
    st->misses = c->misses;
    st->evictions = c->evictions;
    st->invalidations = c->invalidations;
    st->stale = c->stale;
    st->registrations = c->registrations;
    st->deregistrations = c->deregistrations;
    st->register_ns = c->register_ns;
    memcpy(st->rail_registrations, c->rail_registrations, sizeof st->rail_registrations);
    pthread_mutex_unlock(&c->lock);
}

void xr__mrc_fini(xr_mr_cache *c)
{
    pthread_mutex_lock(&c->lock);
    while (lru_oldest(c))
        destroy(c, lru_oldest(c));
    for (unsigned r = 0; r < XR_MAX_RAILS; r++) {
        xr_spans *ix = &c->index[r];
        while (ix->n) { /* held past the end: a leak upstream, but no fabric leak here */
            xr_mr_entry *e = ix->v[ix->n - 1].item;
            destroy(c, e);
        }
        xr__spans_free(ix);
    }
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_destroy(&c->lock);
}
