/*
 * rail.c - one libfabric RDM endpoint per NIC: its own fabric, domain,
 * endpoint, CQ and AV, so that rails share no provider lock or queue.
 *
 * What a rail needs from its provider is read from fi_getinfo (MR mode bits,
 * maximum message size, queue depths, delivery-complete support), never
 * inferred from the provider's name: efa and verbs go through the same code
 * as tcp and shm.
 */
#include "cuda_mem.h"
#include "internal.h"
#include "policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fi_tagged.h>

#define XR_FI_VERSION FI_VERSION(1, 14)
#define CQ_BATCH 32

/* MR mode bits xrail can honour; the provider picks the ones it needs. */
#define XR_MR_MODES (FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_PROV_KEY | FI_MR_ALLOCATED | \
                     FI_MR_RAW | FI_MR_ENDPOINT | FI_MR_HMEM)

typedef struct rail_req {
    const char *provider;
    const char *domain;
    const char *src_addr;
    uint64_t speed_mbps;
    const xr_rail_spec *spec;   /* declared attributes, or NULL */
} rail_req;

static struct fi_info *hints_new(const rail_req *q, bool delivery_complete, bool hmem)
{
    struct fi_info *h = fi_allocinfo();
    if (!h)
        return NULL;
    h->ep_attr->type = FI_EP_RDM;
    h->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_MSG |
              FI_SEND | FI_RECV | FI_TAGGED; /* tagged: staging's requests (stage.c) */
    if (hmem)
        h->caps |= FI_HMEM;
    h->mode = FI_CONTEXT | FI_CONTEXT2;
    h->domain_attr->mr_mode = XR_MR_MODES;
    h->domain_attr->threading = FI_THREAD_DOMAIN;
    /* With delivery-complete, a write's completion means the bytes are in
     * target memory, which is what lets a notification follow the data. */
    if (delivery_complete)
        h->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
    if (q->provider && *q->provider)
        h->fabric_attr->prov_name = strdup(q->provider);
    if (q->src_addr && *q->src_addr) {
        struct sockaddr_in *sin = calloc(1, sizeof *sin);
        if (sin && inet_pton(AF_INET, q->src_addr, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            h->addr_format = FI_SOCKADDR_IN;
            h->src_addr = sin;
            h->src_addrlen = sizeof *sin;
        } else {
            free(sin);
        }
    }
    return h;
}

/* Providers list one entry per address family and per layering; a rail
 * takes the first entry of the domain it was asked for. */
static bool info_matches(const struct fi_info *i, const char *domain)
{
    if (!domain || !*domain)
        return true;
    return i->domain_attr->name && strcmp(i->domain_attr->name, domain) == 0;
}

/* Passes from the most wanted: FI_HMEM (only asked for when there is a
 * GPU to use it), then delivery-complete. */
static int getinfo(const rail_req *q, struct fi_info **out, bool *dc, bool *hmem)
{
    int rc = -FI_ENODATA;
    for (int pass = xr__cuda_devices() ? 0 : 2; pass < 4; pass++) {
        struct fi_info *h = hints_new(q, pass % 2 == 0, pass < 2);
        if (!h)
            return -FI_ENOMEM;
        rc = fi_getinfo(XR_FI_VERSION, NULL, NULL, 0, h, out);
        fi_freeinfo(h);
        if (rc == 0) {
            *dc = pass % 2 == 0;
            *hmem = pass < 2;
            return 0;
        }
    }
    return rc;
}

static int read_int_file(const char *path, int dflt)
{
    FILE *f = fopen(path, "r");
    int v = dflt;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = dflt;
        fclose(f);
    }
    return v;
}

static int numa_of(const struct fi_info *i)
{
    char path[256];
    if (i->nic && i->nic->bus_attr && i->nic->bus_attr->bus_type == FI_BUS_PCI) {
        const struct fi_pci_attr *p = &i->nic->bus_attr->attr.pci;
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%04x:%02x:%02x.%x/numa_node",
                 p->domain_id, p->bus_id, p->device_id, p->function_id);
        return read_int_file(path, -1);
    }
    if (i->domain_attr->name) {
        snprintf(path, sizeof path, "/sys/class/net/%s/device/numa_node", i->domain_attr->name);
        return read_int_file(path, -1);
    }
    return -1;
}

void xr__addr_format(const xr_rail *r, const void *addr, size_t len, char *out, size_t cap)
{
    size_t n = cap;
    out[0] = 0;
    if (r->av && fi_av_straddr(r->av, addr, out, &n))
        out[cap - 1] = 0;
    else if (!r->av)
        snprintf(out, cap, "(%zu bytes)", len);
}

#define FI_TRY(call, what)                                                            \
    do {                                                                              \
        int fi_rc_ = (int)(call);                                                     \
        if (fi_rc_)                                                                   \
            return xr__fail(XR_EFABRIC, "rail %u (%s %s): %s failed: %s", r->index,    \
                            r->provider, r->domain_name, what, fi_strerror(-fi_rc_));  \
    } while (0)

static void pci_of(const struct fi_info *i, char *out, size_t cap)
{
    out[0] = 0;
    if (i->nic && i->nic->bus_attr && i->nic->bus_attr->bus_type == FI_BUS_PCI) {
        const struct fi_pci_attr *p = &i->nic->bus_attr->attr.pci;
        snprintf(out, cap, "%04x:%02x:%02x.%x", p->domain_id, p->bus_id, p->device_id,
                 p->function_id);
    }
}

static int rail_open(xr_engine *e, xr_rail *r, struct fi_info *info, bool dc, bool hmem,
                     uint64_t speed, const xr_rail_spec *decl)
{
    r->e = e;
    r->info = fi_dupinfo(info);
    if (!r->info)
        return xr__fail(XR_ENOMEM, "rail %u: fi_dupinfo failed", r->index);
    snprintf(r->provider, sizeof r->provider, "%s", info->fabric_attr->prov_name);
    snprintf(r->domain_name, sizeof r->domain_name, "%s",
             info->domain_attr->name ? info->domain_attr->name : "");
    snprintf(r->fabric_name, sizeof r->fabric_name, "%s",
             info->fabric_attr->name ? info->fabric_attr->name : "");
    r->mr_mode = info->domain_attr->mr_mode;
    r->max_msg = info->ep_attr->max_msg_size ? info->ep_attr->max_msg_size : SIZE_MAX;
    r->delivery_complete = dc;
    r->hmem = hmem;
    r->numa_node = numa_of(info);
    r->gpu = -1;
    pci_of(info, r->pci, sizeof r->pci);
    if (decl && (decl->declared & XR_DECL_NUMA))
        r->numa_node = decl->numa_node;
    if (decl && (decl->declared & XR_DECL_GPU))
        r->gpu = decl->gpu;
    if (decl && (decl->declared & XR_DECL_PCI) && decl->pci)
        snprintf(r->pci, sizeof r->pci, "%s", decl->pci);
    r->speed_mbps = speed;
    if (!speed && info->nic && info->nic->link_attr)
        r->speed_mbps = info->nic->link_attr->speed / 1000000;
    r->depth = e->opts.rail_depth;
    if (info->tx_attr->size && info->tx_attr->size < r->depth)
        r->depth = (unsigned)info->tx_attr->size;
    pthread_mutex_init(&r->lock, NULL);
    atomic_store(&r->up, 1);

    FI_TRY(fi_fabric(info->fabric_attr, &r->fabric, NULL), "fi_fabric");
    FI_TRY(fi_domain(r->fabric, info, &r->domain, NULL), "fi_domain");
    struct fi_cq_attr cq_attr = {
        .format = FI_CQ_FORMAT_DATA,
        .size = info->tx_attr->size + info->rx_attr->size,
        .wait_obj = FI_WAIT_NONE,
    };
    FI_TRY(fi_cq_open(r->domain, &cq_attr, &r->cq, NULL), "fi_cq_open");
    struct fi_av_attr av_attr = {.type = info->domain_attr->av_type};
    if (av_attr.type == FI_AV_UNSPEC)
        av_attr.type = FI_AV_TABLE;
    FI_TRY(fi_av_open(r->domain, &av_attr, &r->av, NULL), "fi_av_open");
    FI_TRY(fi_endpoint(r->domain, info, &r->ep, NULL), "fi_endpoint");
    FI_TRY(fi_ep_bind(r->ep, &r->cq->fid, FI_TRANSMIT | FI_RECV), "fi_ep_bind(cq)");
    FI_TRY(fi_ep_bind(r->ep, &r->av->fid, 0), "fi_ep_bind(av)");
    FI_TRY(fi_enable(r->ep), "fi_enable");
    r->addrlen = sizeof r->addr;
    FI_TRY(fi_getname(&r->ep->fid, r->addr, &r->addrlen), "fi_getname");
    return xr__notif_rail_init(r);
}

static void rail_close(xr_rail *r)
{
    /* The endpoint goes first so that nothing completes into freed frames. */
    if (r->ep)
        fi_close(&r->ep->fid);
    r->ep = NULL;
    xr__notif_rail_fini(r);
    xr__stage_rail_fini(r);
    if (r->av)
        fi_close(&r->av->fid);
    if (r->cq)
        fi_close(&r->cq->fid);
    if (r->domain)
        fi_close(&r->domain->fid);
    if (r->fabric)
        fi_close(&r->fabric->fid);
    if (r->info) {
        fi_freeinfo(r->info);
        pthread_mutex_destroy(&r->lock);
    }
    memset(r, 0, sizeof *r);
}

static int open_one(xr_engine *e, const rail_req *q, struct fi_info *info, bool dc, bool hmem)
{
    if (e->nrails >= XR_MAX_RAILS)
        return xr__fail(XR_EINVAL, "rails: more than %d requested", XR_MAX_RAILS);
    xr_rail *r = &e->rails[e->nrails];
    r->index = e->nrails;
    int rc = rail_open(e, r, info, dc, hmem, q->speed_mbps, q->spec);
    if (rc) {
        rail_close(r);
        return rc;
    }
    e->nrails++;
    return 0;
}

static int open_spec(xr_engine *e, const rail_req *q, unsigned count, unsigned cap)
{
    struct fi_info *list = NULL;
    bool dc = false, hmem = false;
    int rc = getinfo(q, &list, &dc, &hmem);
    if (rc)
        return xr__fail(XR_ENORAIL, "rails: no RDM provider with RMA for provider '%s' domain '%s': %s",
                        q->provider ? q->provider : "(any)", q->domain ? q->domain : "(any)",
                        fi_strerror(-rc));
    struct fi_info *pick = NULL;
    for (struct fi_info *i = list; i && !pick; i = i->next)
        if (info_matches(i, q->domain))
            pick = i;
    if (!pick) {
        fi_freeinfo(list);
        return xr__fail(XR_ENORAIL, "rails: provider '%s' offers no domain named '%s'",
                        q->provider ? q->provider : "(any)", q->domain);
    }
    if (count == 0) { /* discovery: one rail per distinct domain */
        for (struct fi_info *i = list; i && e->nrails < cap && !rc; i = i->next) {
            if (!info_matches(i, q->domain))
                continue;
            bool dup = false;
            for (unsigned k = 0; k < e->nrails && !dup; k++)
                dup = strcmp(e->rails[k].domain_name, i->domain_attr->name) == 0 &&
                      strcmp(e->rails[k].provider, i->fabric_attr->prov_name) == 0;
            if (!dup)
                rc = open_one(e, q, i, dc, hmem);
        }
    } else {
        for (unsigned k = 0; k < count && e->nrails < cap && !rc; k++)
            rc = open_one(e, q, pick, dc, hmem);
    }
    fi_freeinfo(list);
    return rc;
}

int xr__rails_open(xr_engine *e)
{
    const xr_engine_opts *o = &e->opts;
    unsigned cap = o->max_rails && o->max_rails < XR_MAX_RAILS ? o->max_rails : XR_MAX_RAILS;
    e->rails = calloc(XR_MAX_RAILS, sizeof *e->rails);
    if (!e->rails)
        return xr__fail(XR_ENOMEM, "rails: cannot allocate");
    int rc = 0;
    if (o->rails && o->n_rail_specs) {
        for (unsigned i = 0; i < o->n_rail_specs && !rc; i++) {
            const xr_rail_spec *s = &o->rails[i];
            rail_req q = {s->provider ? s->provider : o->provider, s->domain, s->src_addr,
                          s->speed_mbps, s};
            rc = open_spec(e, &q, s->count ? s->count : 1, cap);
        }
    } else {
        rail_req q = {o->provider, o->domain, NULL, 0, NULL};
        rc = open_spec(e, &q, 0, cap);
    }
    if (!rc && e->nrails == 0)
        rc = xr__fail(XR_ENORAIL, "rails: none opened");
    return rc;
}

void xr__rails_close(xr_engine *e)
{
    for (unsigned i = 0; e->rails && i < XR_MAX_RAILS; i++)
        if (e->rails[i].info)
            rail_close(&e->rails[i]);
    free(e->rails);
    e->rails = NULL;
    e->nrails = 0;
}

int xr__rail_mr_reg(xr_rail *r, void *buf, size_t len, uint64_t access, uint64_t key,
                    xr_mem_kind kind, int device, struct fid_mr **out)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct fi_mr_attr attr = {
        .mr_iov = &iov,
        .iov_count = 1,
        .access = access,
        .requested_key = key, /* ignored under FI_MR_PROV_KEY */
        .iface = kind == XR_MEM_CUDA ? FI_HMEM_CUDA : FI_HMEM_SYSTEM,
    };
    if (kind == XR_MEM_CUDA)
        attr.device.cuda = device;
    struct fid_mr *mr = NULL;
    int rc = fi_mr_regattr(r->domain, &attr, 0, &mr);
    if (rc)
        return xr__fail(XR_EFABRIC, "rail %u (%s): fi_mr_regattr of %zu bytes at %p failed: %s",
                        r->index, r->provider, len, buf, fi_strerror(-rc));
    if (r->mr_mode & FI_MR_ENDPOINT) {
        rc = fi_mr_bind(mr, &r->ep->fid, 0);
        if (!rc)
            rc = fi_mr_enable(mr);
        if (rc) {
            fi_close(&mr->fid);
            return xr__fail(XR_EFABRIC, "rail %u (%s): binding an MR to the endpoint failed: %s",
                            r->index, r->provider, fi_strerror(-rc));
        }
    }
    *out = mr;
    return 0;
}

/* ---- posting and progress ---- */

typedef struct done_list {
    struct xr_xfer *x[2 * CQ_BATCH];
    int n;
} done_list;

static void slot_dequeue(xr_rail *r)
{
    xr_rail_slot *s = r->pend_head;
    r->pend_head = s->next;
    if (!r->pend_head)
        r->pend_tail = NULL;
    s->next = NULL;
}

/* Post queued chunks while the rail has room. Rail lock held. */
static void rail_pump(xr_rail *r, done_list *dl)
{
    while (r->pend_head && r->inflight < r->depth && dl->n < (int)(sizeof dl->x / sizeof dl->x[0])) {
        xr_rail_slot *s = r->pend_head;
        struct xr_xfer *x = s->x;
        xr_chunk *c = &x->chunks[s->cursor];
        if (c->stage && !atomic_load(&x->err)) {
            /* Staged chunks are bounded by the bounce slots, not the rail's
             * depth; stage.c posts them from progress. */
            if (xr__stage_start(r, c) == XR_EAGAIN)
                return;
            if (++s->cursor == s->end)
                slot_dequeue(r);
            continue;
        }
        if (atomic_load(&x->err)) {
            /* The transfer already failed elsewhere: what it has not posted
             * is counted off instead of sent. */
            size_t left = s->end - s->cursor;
            s->cursor = s->end;
            slot_dequeue(r);
            if (atomic_fetch_sub(&x->pending, left) == left)
                dl->x[dl->n++] = x;
            continue;
        }
        ssize_t rc;
        fi_addr_t dst = x->peer->fi_addr[r->index];
        if (x->op == XR_OP_WRITE)
            rc = fi_write(r->ep, c->buf, c->len, c->desc, dst, c->raddr, c->key, &c->ctx.fctx);
        else
            rc = fi_read(r->ep, c->buf, c->len, c->desc, dst, c->raddr, c->key, &c->ctx.fctx);
        if (rc == -FI_EAGAIN) {
            r->ctr.eagain++;
            return; /* the next CQ read frees room */
        }
        if (++s->cursor == s->end)
            slot_dequeue(r);
        if (rc) {
            char why[256];
            snprintf(why, sizeof why, "rail %u (%s): posting fi_%s of %zu bytes failed: %s",
                     r->index, r->provider, x->op == XR_OP_WRITE ? "write" : "read", c->len,
                     fi_strerror((int)-rc));
            if (xr__chunk_done(r, c, XR_EIO, why))
                dl->x[dl->n++] = x;
            continue;
        }
        r->inflight++;
    }
}

static void dispatch(xr_rail *r, xr_opctx *ctx, size_t len, int err, const char *why,
                     done_list *dl)
{
    switch (ctx->kind) {
    case XR_CTX_CHUNK: {
        xr_chunk *c = (xr_chunk *)ctx;
        r->inflight--;
        if (err) {
            r->ctr.errors++;
            r->err_pending = true;
            snprintf(r->err_why, sizeof r->err_why, "%.255s", why ? why : xr_strerror(err));
            atomic_store(&r->e->rail_err, true);
        } else {
            r->ctr.chunks++;
            r->ctr.tx_bytes += c->len;
        }
        if (xr__chunk_done(r, c, err, why))
            dl->x[dl->n++] = c->x;
        break;
    }
    case XR_CTX_NOTIF_TX:
        if (err)
            r->ctr.errors++;
        xr__notif_tx_done(r, ctx, err);
        break;
    case XR_CTX_NOTIF_RX:
        xr__notif_rx_done(r, ctx, len, err);
        break;
    case XR_CTX_STAGE_TX:
        if (err)
            r->ctr.errors++;
        xr__stage_tx_done(r, ctx, err, why);
        break;
    case XR_CTX_STAGE_RX:
        xr__stage_rx_done(r, ctx, len, err, why);
        break;
    }
}

static void finish(done_list *dl)
{
    for (int i = 0; i < dl->n; i++)
        xr__xfer_chunks_done(dl->x[i]);
    dl->n = 0;
}

int xr__rail_progress(xr_rail *r)
{
    struct fi_cq_data_entry ent[CQ_BATCH];
    done_list dl = {.n = 0};
    int handled = 0;
    pthread_mutex_lock(&r->lock);
    ssize_t n = fi_cq_read(r->cq, ent, CQ_BATCH);
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++)
            dispatch(r, ent[i].op_context, ent[i].len, 0, NULL, &dl);
        handled = (int)n;
    } else if (n == -FI_EAVAIL) {
        struct fi_cq_err_entry ee = {0};
        if (fi_cq_readerr(r->cq, &ee, 0) == 1) {
            char prov[128], why[384];
            const char *pe = fi_cq_strerror(r->cq, ee.prov_errno, ee.err_data, prov, sizeof prov);
            snprintf(why, sizeof why, "rail %u (%s %s): completion error: %s (%s)", r->index,
                     r->provider, r->domain_name, fi_strerror(ee.err), pe ? pe : "");
            xr_opctx *ctx = ee.op_context;
            /* Only a receive canceled by a closing endpoint (or taken back
             * by fi_cancel) is benign; a chunk that completes in error
             * failed, whatever the code (tcp reports a remote access
             * violation as FI_ECANCELED). */
            bool closing = ee.err == FI_ECANCELED && ctx &&
                           (ctx->kind == XR_CTX_NOTIF_RX || ctx->kind == XR_CTX_STAGE_RX);
            if (!closing)
                xr__log(r->e, XR_LOG_WARN, "%s", why);
            if (ctx)
                dispatch(r, ctx, ee.len, closing ? XR_ECANCELED : XR_EIO, why, &dl);
            handled = 1;
        }
    } else if (n != -FI_EAGAIN) {
        xr__log(r->e, XR_LOG_WARN, "rail %u: fi_cq_read failed: %s", r->index,
                fi_strerror((int)-n));
    }
    rail_pump(r, &dl);
    xr__notif_pump(r);
    pthread_mutex_unlock(&r->lock);
    finish(&dl);
    return handled;
}

void xr__rail_enqueue(xr_rail *r, xr_rail_slot *s)
{
    done_list dl = {.n = 0};
    pthread_mutex_lock(&r->lock);
    s->next = NULL;
    if (r->pend_tail)
        r->pend_tail->next = s;
    else
        r->pend_head = s;
    r->pend_tail = s;
    /* With a thread per group of rails, the rail's thread posts: tcp copies
     * into its socket inside fi_write, and posting from the caller would put
     * every rail's copies on that one thread (measured: 4 rails then move
     * what 1 does; docs/performance.md). Otherwise post now, for latency. */
    if (r->e->progress_nthreads < 2)
        rail_pump(r, &dl);
    pthread_mutex_unlock(&r->lock);
    finish(&dl);
}

/* ---- public rail calls ---- */

int xr_rail_count(xr_engine *e)
{
    return e ? (int)e->nrails : XR_EINVAL;
}

int xr_rail_info_get(xr_engine *e, unsigned index, xr_rail_info *info)
{
    if (!e || !info)
        return xr__fail(XR_EINVAL, "xr_rail_info_get: NULL argument");
    if (index >= e->nrails)
        return xr__fail(XR_ENOENT, "xr_rail_info_get: rail %u of %u", index, e->nrails);
    xr_rail *r = &e->rails[index];
    memset(info, 0, sizeof *info);
    info->index = index;
    snprintf(info->provider, sizeof info->provider, "%s", r->provider);
    snprintf(info->domain, sizeof info->domain, "%s", r->domain_name);
    snprintf(info->fabric, sizeof info->fabric, "%s", r->fabric_name);
    xr__addr_format(r, r->addr, r->addrlen, info->address, sizeof info->address);
    info->speed_mbps = r->speed_mbps;
    info->numa_node = r->numa_node;
    info->gpu = r->gpu;
    snprintf(info->pci, sizeof info->pci, "%s", r->pci);
    info->up = atomic_load(&r->up);
    info->max_msg_size = r->max_msg;
    info->mr_mode = r->mr_mode;
    info->delivery_complete = r->delivery_complete;
    pthread_mutex_lock(&r->lock);
    info->counters = r->ctr;
    pthread_mutex_unlock(&r->lock);
    return 0;
}

int xr_rail_set_state(xr_engine *e, unsigned index, int up)
{
    if (!e)
        return xr__fail(XR_EINVAL, "xr_rail_set_state: NULL engine");
    if (index >= e->nrails)
        return xr__fail(XR_ENOENT, "xr_rail_set_state: rail %u of %u", index, e->nrails);
    pthread_mutex_lock(&e->lock);
    atomic_store(&e->rails[index].up, up ? 1 : 0);
    xr__plan_flush(e); /* plans are re-asked with the new rail states */
    pthread_mutex_unlock(&e->lock);
    return 0;
}
