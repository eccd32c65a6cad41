/*
 * peer.c - publishing this engine's metadata and loading a peer's.
 *
 * Rail counts may differ between peers (4 <-> 32 on a mixed fleet). Each
 * local rail is paired with one peer rail of the same provider and address
 * format: local rail i takes the (i mod n)-th compatible peer rail, so every
 * local rail is used and the peer's rails are spread evenly.
 */
#include "peer.h"

#include "core/crc32c.h"
#include "core/layout.h"
#include "policy.h"
#include "region.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fields_free(xr_md_field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].name);
        free(f[i].value);
    }
    free(f);
}

/* peer.c's part of the engine. */
struct xr_peers {
    xr_list loaded;
    struct xr_md_field *fields;     /* custom metadata fields, published by xr_metadata_get */
    size_t nfields;
};

int xr__peer_init(xr_engine *e)
{
    e->peers = calloc(1, sizeof *e->peers);
    if (!e->peers)
        return xr__error_set(XR_ENOMEM, "peers: out of memory");
    xr__list_init(&e->peers->loaded);
    return 0;
}

int xr_metadata_get(xr_engine *e, void *buf, size_t *len)
{
    if (!e || !len)
        return xr__error_set(XR_EINVAL, "xr_metadata_get: NULL argument");
    xr_md m = {.name = e->name, .instance = e->instance, .nrails = e->nrails};
    xr_md_rail rails[XR_MAX_RAILS];
    memset(rails, 0, sizeof rails);
    m.rails = rails;
    for (unsigned i = 0; i < e->nrails; i++) {
        xr_rail *r = &e->rails[i];
        rails[i] = (xr_md_rail){
            .index = i,
            .provider = r->provider,
            .domain = r->domain_name,
            .addr_format = r->info->addr_format,
            .addr = (uint8_t *)r->addr,
            .addrlen = (uint32_t)r->addrlen,
            .mr_mode = r->mr_mode,
            .speed_mbps = r->speed_mbps,
            .numa = r->numa_node,
        };
    }
    pthread_mutex_lock(&e->lock);
    size_t nregions = e->regions.n, nkeys = nregions * e->nrails;
    m.regions = calloc(nregions ? nregions : 1, sizeof *m.regions);
    xr_md_key *keys = calloc(nkeys ? nkeys : 1, sizeof *keys);
    uint8_t *le = malloc(nkeys ? 8 * nkeys : 1);
    int rc = 0;
    if (!m.regions || !keys || !le)
        rc = xr__error_set(XR_ENOMEM, "xr_metadata_get: out of memory");
    for (size_t k = 0; !rc && k < nregions; k++) {
        xr_region *g = e->regions.v[k].item;
        if (!g->access)
            continue; /* local-only regions are not published */
        xr_md_region *mg = &m.regions[m.nregions++];
        *mg = (xr_md_region){.addr = g->addr, .len = g->len, .kind = (uint8_t)g->kind,
                             .device = (uint32_t)g->device, .access = (uint8_t)g->access,
                             .keys = &keys[k * e->nrails], .nkeys = 0, .staged = g->staged};
        /* Staged memory has no key: peers send requests for it instead. */
        for (unsigned i = 0; !g->staged && i < e->nrails; i++) {
            if (!((g->rail_mask >> i) & 1))
                continue; /* not on this rail: peers will not use it for this region */
            xr_md_key *mk = &mg->keys[mg->nkeys++];
            const xr_mr_entry *ent = g->ent[i];
            mk->rail = i;
            /* Served by a registration that starts lower (an enclosing one
             * from the cache): peers count offsets from its start. */
            mk->base = ent->addr != g->addr ? ent->addr : 0;
            if (ent->raw_key) {
                mk->raw = 1;
                mk->bytes = ent->raw_key;
                mk->nbytes = (uint32_t)ent->raw_len;
            } else {
                mk->bytes = &le[8 * (k * e->nrails + i)];
                mk->nbytes = 8;
                for (int b = 0; b < 8; b++)
                    mk->bytes[b] = (uint8_t)(g->key[i] >> (8 * b));
            }
        }
    }
    m.fields = e->peers->fields;
    m.nfields = (uint32_t)e->peers->nfields;
    if (!rc)
        rc = xr__layout_md_encode(e->layout, &m, buf, len);
    pthread_mutex_unlock(&e->lock);
    free(m.regions);
    free(keys);
    free(le);
    return rc;
}

/* A peer's regions: what load_regions builds, and what a refresh retires. */
typedef struct xr_peer_retired {
    xr_peer_region *regions;
    size_t nregions;
    xr_spans index;
    struct xr_peer_retired *next;
} xr_peer_retired;

static void regions_free(xr_engine *e, xr_peer_region *g, size_t n, xr_spans *index)
{
    for (unsigned i = 0; i < e->nrails; i++) {
        xr_rail *r = &e->rails[i];
        pthread_mutex_lock(&r->lock);
        for (size_t k = 0; k < n; k++)
            if (g[k].mapped[i])
                fi_mr_unmap_key(r->domain, g[k].key[i]);
        pthread_mutex_unlock(&r->lock);
    }
    free(g);
    xr__spans_free(index);
}

static void retired_free(xr_peer *p)
{
    for (xr_peer_retired *t; (t = p->retired);) {
        p->retired = t->next;
        regions_free(p->e, t->regions, t->nregions, &t->index);
        free(t);
    }
}

static void peer_free(xr_peer *p)
{
    xr_engine *e = p->e;
    retired_free(p);
    regions_free(e, p->regions, p->nregions, &p->index);
    for (unsigned i = 0; i < e->nrails; i++) {
        xr_rail *r = &e->rails[i];
        pthread_mutex_lock(&r->lock);
        if (p->peer_rail[i] >= 0)
            fi_av_remove(r->av, &p->fi_addr[i], 1, 0);
        pthread_mutex_unlock(&r->lock);
    }
    fields_free(p->fields, p->nfields);
    pthread_mutex_destroy(&p->fence_lock);
    free(p->name);
    free(p);
}

void xr__peer_get(xr_peer *p)
{
    p->refs++;
}

void xr__peer_put(xr_peer *p)
{
    if (--p->refs == 0)
        peer_free(p);
    else if (p->refs == 1 && p->retired)
        retired_free(p); /* the last transfer made with old regions is gone */
}

int xr__peer_check(xr_peer *p, const char *what)
{
    if (p->unloaded)
        return xr__error_set(XR_ENOENT, "%s: peer '%s' was unloaded", what, p->name);
    if (atomic_load(&p->gone))
        return xr__error_set(XR_EGONE, "%s: peer '%s' left the directory; look it up again "
                                       "once it is back", what, p->name);
    if (atomic_load(&p->lost))
        return xr__error_set(XR_EPEER, "%s: peer '%s' stopped answering; load its metadata "
                                       "again to try it again", what, p->name);
    return 0;
}

void xr__peer_fini(xr_engine *e)
{
    struct xr_peers *ps = e->peers;
    if (!ps)
        return;
    for (xr_list *n; (n = xr__list_pop_front(&ps->loaded));)
        peer_free(xr__list_entry(n, xr_peer, link));
    fields_free(ps->fields, ps->nfields);
    free(ps);
    e->peers = NULL;
}

xr_peer *xr__peer_by_addr(xr_engine *e, unsigned rail, fi_addr_t dst)
{
    xr__list_each(n, &e->peers->loaded) {
        xr_peer *p = xr__list_entry(n, xr_peer, link);
        if (((p->mask >> rail) & 1) && p->fi_addr[rail] == dst)
            return p;
    }
    return NULL;
}

/* A region the rail reads directly, else a staged one: a round trip
 * through the peer's engine, but a peer of device memory alone (no
 * FI_HMEM) publishes nothing else. NULL: none readable through the rail. */
static const xr_peer_region *probe_region(const xr_peer *p, unsigned rail)
{
    const xr_peer_region *pick = NULL;
    for (size_t k = 0; k < p->nregions && !(pick && !pick->staged); k++) {
        const xr_peer_region *g = &p->regions[k];
        if ((g->access & XR_ACCESS_READ) && g->len >= 8 && ((g->path_mask >> rail) & 1) &&
            (!pick || !g->staged))
            pick = g;
    }
    return pick;
}

uint64_t xr__peer_holding(xr_engine *e, const xr_peer *p)
{
    uint64_t m = 0;
    for (uint64_t k = p->mask; k; k &= k - 1) {
        xr_rail *r = &e->rails[__builtin_ctzll(k)];
        if (atomic_load(&r->up) && xr__rail_holds(r, p->fi_addr[r->index]))
            m |= 1ull << r->index;
    }
    return m;
}

bool xr__peer_probe_at(const xr_peer *p, unsigned rail, fi_addr_t *dst, uint64_t *raddr,
                       uint64_t *key, bool *staged)
{
    const xr_peer_region *g = ((p->mask >> rail) & 1) ? probe_region(p, rail) : NULL;
    if (!g)
        return false;
    *dst = p->fi_addr[rail];
    *staged = g->staged;
    *raddr = g->staged || p->virt_addr[rail] ? g->addr : g->addr - g->base[rail];
    *key = g->key[rail];
    return true;
}

bool xr__peer_probe_target(xr_engine *e, unsigned rail, fi_addr_t *dst, uint64_t *raddr,
                           uint64_t *key, bool *staged)
{
    const xr_peer *best = NULL;
    xr__list_each(n, &e->peers->loaded) {
        const xr_peer *p = xr__list_entry(n, xr_peer, link);
        if (((p->mask >> rail) & 1) && probe_region(p, rail) &&
            (!best || atomic_load(&best->last_ok) < atomic_load(&p->last_ok)))
            best = p;
    }
    return best && xr__peer_probe_at(best, rail, dst, raddr, key, staged);
}

bool xr__peer_vouching(const xr_peer *p, uint64_t now, uint64_t allow)
{
    return p->vouch_rail >= 0 && now < p->vouch_at + allow / 2;
}

const xr_peer_region *xr__peer_region_find(const xr_peer *p, uint64_t addr, uint64_t len,
                                           unsigned need)
{
    const xr_peer_region *first = NULL;
    for (ptrdiff_t i = xr__spans_enclosing(&p->index, addr, addr + len, 0); i >= 0;
         i = xr__spans_enclosing(&p->index, addr, addr + len, (size_t)i + 1)) {
        const xr_peer_region *g = p->index.v[i].item;
        if (g->access & need)
            return g;
        if (!first)
            first = g;
    }
    return first;
}

/* Connect each local rail to a peer rail of the same provider and address format. */
static int pair_rails(xr_engine *e, xr_peer *p, const xr_md *m)
{
    for (unsigned i = 0; i < e->nrails; i++) {
        xr_rail *r = &e->rails[i];
        unsigned compat[XR_MAX_RAILS], n = 0;
        for (unsigned j = 0; j < m->nrails; j++)
            if (strcmp(m->rails[j].provider, r->provider) == 0 &&
                m->rails[j].addr_format == r->info->addr_format)
                compat[n++] = j;
        if (!n)
            continue;
        unsigned j = compat[i % n];
        pthread_mutex_lock(&r->lock);
        int rc = fi_av_insert(r->av, m->rails[j].addr, 1, &p->fi_addr[i], 0, NULL);
        pthread_mutex_unlock(&r->lock);
        if (rc != 1)
            return xr__error_set(XR_EFABRIC, "peer '%s': rails[%u].addr (%u bytes) was refused by "
                                        "local rail %u's address vector: %s",
                            m->name, j, m->rails[j].addrlen, i, fi_strerror(rc < 0 ? -rc : FI_EINVAL));
        p->peer_rail[i] = (int)j;
        p->virt_addr[i] = (m->rails[j].mr_mode & FI_MR_VIRT_ADDR) != 0;
        p->mask |= 1ull << i;
    }
    if (!p->mask)
        return xr__error_set(XR_ENORAIL, "peer '%s': none of its %u rails (first: %s) matches a "
                                    "provider of this engine's %u rails (first: %s)",
                        m->name, m->nrails, m->nrails ? m->rails[0].provider : "none", e->nrails,
                        e->rails[0].provider);
    return 0;
}

static int map_key(xr_engine *e, xr_peer *p, const xr_md *m, size_t k, unsigned i)
{
    const xr_md_region *mg = &m->regions[k];
    xr_peer_region *g = &p->regions[k];
    unsigned j = (unsigned)p->peer_rail[i];
    for (uint32_t n = 0; n < mg->nkeys; n++) {
        const xr_md_key *mk = &mg->keys[n];
        if (mk->rail != j)
            continue;
        /* A key whose registration starts below the region (a shared,
         * enclosing one) says where; offsets count from there. */
        g->base[i] = mk->base ? mk->base : mg->addr;
        if (mk->raw) {
            int rc = fi_mr_map_raw(e->rails[i].domain, g->base[i], mk->bytes, mk->nbytes,
                                   &g->key[i], 0);
            if (rc)
                return xr__error_set(XR_EBADMD, "peer '%s': regions[%zu].keys[%u]: raw key of %u "
                                           "bytes refused by rail %u: %s",
                                m->name, k, n, mk->nbytes, i, fi_strerror(-rc));
            g->mapped[i] = true;
        } else {
            if (mk->nbytes != 8)
                return xr__error_set(XR_EBADMD, "peer '%s': regions[%zu].keys[%u].bytes: %u bytes, "
                                           "a key is 8", m->name, k, n, mk->nbytes);
            uint64_t key = 0;
            for (int b = 0; b < 8; b++)
                key |= (uint64_t)mk->bytes[b] << (8 * b);
            g->key[i] = key;
        }
        g->path_mask |= 1ull << i;
        return 0;
    }
    return 0; /* not registered on that peer rail: the path is not used for it */
}

/* Values the format can carry and the meaning cannot, refused before any
 * is used, each naming its field. */
static int md_check(const xr_md *m)
{
    const char *n = m->name;
    for (uint32_t j = 0; j < m->nrails; j++) {
        const xr_md_rail *r = &m->rails[j];
        if (r->index != j)
            return xr__error_set(XR_EBADMD, "metadata: peer '%s': rails[%u].index is %u; its %u "
                                            "rails are listed in order", n, j, r->index, m->nrails);
        if (!r->addrlen || r->addrlen > XR_ADDR_MAX)
            return xr__error_set(XR_EBADMD, "metadata: peer '%s': rails[%u].addr is %u bytes; "
                                            "1 to %d", n, j, r->addrlen, XR_ADDR_MAX);
    }
    for (uint32_t k = 0; k < m->nregions; k++) {
        const xr_md_region *g = &m->regions[k];
        if (g->len == 0 || g->addr + g->len < g->addr)
            return xr__error_set(XR_EBADMD, "metadata: peer '%s': regions[%u] [0x%llx, +%llu) is "
                                            "empty or wraps", n, k, (unsigned long long)g->addr,
                                 (unsigned long long)g->len);
        if (g->access & ~(unsigned)XR_ACCESS_RW)
            return xr__error_set(XR_EBADMD, "metadata: peer '%s': regions[%u].access 0x%x is "
                                            "unknown", n, k, g->access);
        if (g->kind != XR_MEM_HOST && g->kind != XR_MEM_CUDA)
            return xr__error_set(XR_EBADMD, "metadata: peer '%s': regions[%u].kind %u is unknown",
                                 n, k, g->kind);
        if (g->staged > 1 || (g->staged && g->nkeys))
            return xr__error_set(XR_EBADMD, "metadata: peer '%s': regions[%u].staged is %u with "
                                            "%u keys; a staged region is 1 and keyless",
                                 n, k, g->staged, g->nkeys);
        uint64_t seen = 0;
        for (uint32_t i = 0; i < g->nkeys; i++) {
            const xr_md_key *key = &g->keys[i];
            if (key->rail >= m->nrails)
                return xr__error_set(XR_EBADMD, "metadata: peer '%s': regions[%u].keys[%u].rail is "
                                                "%u, but the peer has %u rails",
                                     n, k, i, key->rail, m->nrails);
            if ((seen >> key->rail) & 1)
                return xr__error_set(XR_EBADMD, "metadata: peer '%s': regions[%u].keys[%u] is a "
                                                "second key for rail %u", n, k, i, key->rail);
            seen |= 1ull << key->rail;
            if (key->raw > 1)
                return xr__error_set(XR_EBADMD, "metadata: peer '%s': regions[%u].keys[%u].raw is "
                                                "%u, not 0 or 1", n, k, i, key->raw);
            if (key->base > g->addr)
                return xr__error_set(XR_EBADMD, "metadata: peer '%s': regions[%u].keys[%u].base "
                                                "0x%llx lies above the region at 0x%llx",
                                     n, k, i, (unsigned long long)key->base,
                                     (unsigned long long)g->addr);
        }
    }
    return 0;
}

static int load_regions(xr_engine *e, xr_peer *p, const xr_md *m)
{
    p->nregions = m->nregions;
    p->regions = calloc(m->nregions ? m->nregions : 1, sizeof *p->regions);
    if (!p->regions)
        return xr__error_set(XR_ENOMEM, "peer '%s': %u regions", m->name, m->nregions);
    for (size_t k = 0; k < m->nregions; k++) {
        const xr_md_region *mg = &m->regions[k];
        p->regions[k].addr = mg->addr;
        p->regions[k].len = mg->len;
        p->regions[k].access = mg->access;
        p->regions[k].staged = mg->staged != 0;
        if (mg->staged) {
            /* Reached through the peer's staging on every rail we share. */
            p->regions[k].path_mask = p->mask;
            continue;
        }
        for (unsigned i = 0; i < e->nrails; i++)
            if (p->peer_rail[i] >= 0) {
                int rc = map_key(e, p, m, k, i);
                if (rc)
                    return rc;
            }
    }
    /* Regions may nest (a tensor published inside its pool): the index
     * finds an enclosing one for any range. */
    for (size_t k = 0; k < p->nregions; k++)
        if (xr__spans_insert(&p->index, p->regions[k].addr, p->regions[k].addr + p->regions[k].len,
                            &p->regions[k]))
            return xr__error_set(XR_ENOMEM, "peer '%s': region index", m->name);
    return 0;
}

/* Decode a blob and refuse what it cannot mean; *m is freed on failure. */
static int md_decode(xr_engine *e, const void *md, size_t len, xr_md *m)
{
    int rc = xr__layout_md_decode(e->layout, md, len, e->opts.max_metadata, m);
    if (rc)
        return rc;
    if (!*m->name)
        rc = xr__error_set(XR_EBADMD, "metadata: name is empty");
    else if (m->nrails > XR_MAX_RAILS)
        rc = xr__error_set(XR_EBADMD, "metadata: peer '%s' has %u rails; at most %d are supported",
                           m->name, m->nrails, XR_MAX_RAILS);
    else
        rc = md_check(m);
    if (rc)
        xr__layout_free(xr__layout_schema(e->layout), m);
    return rc;
}

/* What identifies the engine behind a name: its rails' providers and
 * addresses. A restarted engine has new ones. */
static uint32_t rails_sig(const xr_md *m)
{
    uint32_t crc = xr__crc32c_update(0, &m->nrails, sizeof m->nrails);
    for (uint32_t j = 0; j < m->nrails; j++) {
        crc = xr__crc32c_update(crc, m->rails[j].provider, strlen(m->rails[j].provider));
        crc = xr__crc32c_update(crc, m->rails[j].addr, m->rails[j].addrlen);
    }
    return crc;
}

int xr__peer_refresh(xr_peer *p, const void *md, size_t len)
{
    xr_engine *e = p->e;
    xr_md m;
    int rc = md_decode(e, md, len, &m);
    if (rc)
        return rc;
    xr_peer_retired *old = calloc(1, sizeof *old);
    pthread_mutex_lock(&e->lock);
    if (!old)
        rc = xr__error_set(XR_ENOMEM, "peer '%s': refresh", p->name);
    else if (strcmp(m.name, p->name) || rails_sig(&m) != p->rails_sig)
        rc = xr__error_set(XR_EVERSION, "peer '%s': the new metadata is of another engine (%s, "
                                        "other rails): load it as a new peer", p->name, m.name);
    if (!rc) {
        /* The new regions replace the old; the old stay for the transfers
         * planned with them, until the last is released. */
        old->regions = p->regions, old->nregions = p->nregions, old->index = p->index;
        p->regions = NULL, p->nregions = 0;
        memset(&p->index, 0, sizeof p->index);
        rc = load_regions(e, p, &m);
        if (rc) {
            regions_free(e, p->regions, p->nregions, &p->index);
            p->regions = old->regions, p->nregions = old->nregions, p->index = old->index;
        } else {
            old->next = p->retired;
            p->retired = old;
            old = NULL;
            fields_free(p->fields, p->nfields);
            p->fields = m.fields, p->nfields = m.nfields;
            m.fields = NULL, m.nfields = 0;
            if (p->refs == 1)
                retired_free(p);
        }
    }
    pthread_mutex_unlock(&e->lock);
    free(old);
    xr__layout_free(xr__layout_schema(e->layout), &m);
    return rc;
}

int xr__peer_load(xr_engine *e, const void *md, size_t len, xr_peer **out)
{
    if (out)
        *out = NULL;
    if (!e || !md || !out)
        return xr__error_set(XR_EINVAL, "xr_peer_load: NULL argument");
    xr_md m;
    int rc = md_decode(e, md, len, &m);
    if (rc)
        return rc;
    xr_peer *p = calloc(1, sizeof *p);
    if (!rc && (!p || !(p->name = strdup(m.name))))
        rc = xr__error_set(XR_ENOMEM, "xr_peer_load: out of memory");
    if (rc) {
        free(p);
        xr__layout_free(xr__layout_schema(e->layout), &m);
        return rc;
    }
    p->e = e;
    xr__list_init(&p->link);
    p->nrails = m.nrails;
    p->rails_sig = rails_sig(&m);
    p->refs = 1;
    p->vouch_rail = -1;
    pthread_mutex_init(&p->fence_lock, NULL);
    xr__list_init(&p->fence_wait);
    xr__list_init(&p->fence_riding);
    xr__list_init(&p->fence_work.link);
    for (unsigned i = 0; i < XR_MAX_RAILS; i++)
        p->peer_rail[i] = -1; /* unpaired: freeing must not remove another peer's address */

    pthread_mutex_lock(&e->lock);
    xr__list_each(n, &e->peers->loaded)
        if (!rc && strcmp(xr__list_entry(n, xr_peer, link)->name, m.name) == 0)
            rc = xr__error_set(XR_EEXIST, "xr_peer_load: peer '%s' is already loaded; unload it "
                                     "first", m.name);
    if (!rc)
        rc = pair_rails(e, p, &m);
    if (!rc)
        rc = load_regions(e, p, &m);
    if (rc) {
        peer_free(p);
    } else {
        p->fields = m.fields; /* taken over from the decoded blob */
        p->nfields = m.nfields;
        m.fields = NULL;
        m.nfields = 0;
        xr__list_push_front(&e->peers->loaded, &p->link);
        *out = p;
    }
    pthread_mutex_unlock(&e->lock);
    xr__layout_free(xr__layout_schema(e->layout), &m);
    return rc;
}

int xr_peer_unload(xr_peer *p)
{
    if (!p)
        return xr__error_set(XR_EINVAL, "xr_peer_unload: NULL peer");
    xr_engine *e = p->e;
    pthread_mutex_lock(&e->lock);
    xr__list_remove(&p->link);
    p->unloaded = true;
    xr__policy_flush(e); /* plans are keyed by the peer's address, which may be reused */
    xr__peer_put(p);
    pthread_mutex_unlock(&e->lock);
    return 0;
}

const char *xr_peer_name(xr_peer *p)
{
    return p ? p->name : NULL;
}

int xr_peer_rail_count(xr_peer *p)
{
    return p ? (int)p->nrails : XR_EINVAL;
}

uint64_t xr_peer_rail_mask(xr_peer *p)
{
    return p ? p->mask : 0;
}

#define XR_FIELD_NAME_MAX 255
#define XR_FIELD_VALUE_MAX (64u << 10)
#define XR_FIELDS_MAX 1024

int xr_metadata_set_field(xr_engine *e, const char *name, const void *value, size_t len)
{
    if (!e || !name || (!value && len))
        return xr__error_set(XR_EINVAL, "xr_metadata_set_field: NULL argument");
    size_t nlen = strlen(name);
    if (!nlen || nlen > XR_FIELD_NAME_MAX)
        return xr__error_set(XR_EINVAL, "xr_metadata_set_field: a name of 1 to %d bytes is required",
                        XR_FIELD_NAME_MAX);
    if (len > XR_FIELD_VALUE_MAX)
        return xr__error_set(XR_EINVAL, "xr_metadata_set_field: '%s' is %zu bytes, at most %u", name,
                        len, XR_FIELD_VALUE_MAX);
    int rc = xr__layout_field_check(e->layout, name, value, len);
    if (rc)
        return rc;
    uint8_t *v = malloc(len ? len : 1);
    if (!v)
        return xr__error_set(XR_ENOMEM, "xr_metadata_set_field: out of memory");
    if (len)
        memcpy(v, value, len);
    pthread_mutex_lock(&e->lock);
    size_t i;
    struct xr_peers *ps = e->peers;
    for (i = 0; i < ps->nfields && strcmp(ps->fields[i].name, name); i++)
        ;
    if (i < ps->nfields) {
        free(ps->fields[i].value);
    } else if (ps->nfields == XR_FIELDS_MAX) {
        rc = xr__error_set(XR_EINVAL, "xr_metadata_set_field: already %d fields", XR_FIELDS_MAX);
    } else {
        xr_md_field *n = realloc(ps->fields, (ps->nfields + 1) * sizeof *n);
        char *nm = strdup(name);
        if (!n || !nm) {
            free(nm);
            if (n)
                ps->fields = n;
            rc = xr__error_set(XR_ENOMEM, "xr_metadata_set_field: out of memory");
        } else {
            ps->fields = n;
            ps->fields[i].name = nm;
            ps->nfields++;
        }
    }
    if (!rc) {
        ps->fields[i].value = v;
        ps->fields[i].len = (uint32_t)len;
        atomic_fetch_add(&e->md_gen, 1);
    }
    pthread_mutex_unlock(&e->lock);
    if (rc)
        free(v);
    return rc;
}

int xr_metadata_field_type(xr_engine *e, const char *name)
{
    if (!e || !name)
        return xr__error_set(XR_EINVAL, "xr_metadata_field_type: NULL argument");
    switch (xr__layout_field_type(e->layout, name)) {
    case XR_FT_U8: return XR_FIELD_U8;
    case XR_FT_U16: return XR_FIELD_U16;
    case XR_FT_U32: return XR_FIELD_U32;
    case XR_FT_U64: return XR_FIELD_U64;
    case XR_FT_I32: return XR_FIELD_I32;
    case XR_FT_STR: return XR_FIELD_STRING;
    case XR_FT_BYTES: return XR_FIELD_BYTES;
    default: return XR_FIELD_UNTYPED;
    }
}

int xr_peer_field(xr_peer *p, const char *name, void *buf, size_t *len)
{
    if (!p || !name || !len)
        return xr__error_set(XR_EINVAL, "xr_peer_field: NULL argument");
    /* The lock: a directory refresh (xr__peer_refresh) may replace them. */
    pthread_mutex_lock(&p->e->lock);
    int rc = XR_ENOENT;
    for (uint32_t i = 0; i < p->nfields && rc == XR_ENOENT; i++) {
        const xr_md_field *f = &p->fields[i];
        if (strcmp(f->name, name))
            continue;
        if (!buf || *len < f->len) {
            size_t had = buf ? *len : 0;
            *len = f->len;
            rc = xr__error_set(XR_ETOOSMALL, "xr_peer_field: '%s' of peer '%s' is %u bytes, "
                                             "buffer holds %zu", name, p->name, f->len, had);
            break;
        }
        if (f->len)
            memcpy(buf, f->value, f->len);
        *len = f->len;
        rc = 0;
    }
    if (rc == XR_ENOENT)
        rc = xr__error_set(XR_ENOENT, "xr_peer_field: peer '%s' published no field '%s' (it has "
                                      "%u)", p->name, name, p->nfields);
    pthread_mutex_unlock(&p->e->lock);
    return rc;
}
