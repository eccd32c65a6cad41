/*
 * xfer.c - transfers: validation and planning at create time, then posting
 * that only walks a prepared chunk array.
 *
 * All memory a transfer needs (chunks, per-rail slots, the framed
 * notification) is allocated once in xr_xfer_create. Posting and completion
 * allocate nothing, and a transfer can be posted again once it finishes, so
 * a server that repeats a shape pays the planning once.
 *
 * Every chunk carries its completion (chunk_done) in its context, and each
 * rail's share of a transfer is a work item on that rail's data lane
 * (lane_post). A transfer ends in one place, finish(), whatever ended it:
 * its last chunk, its notification, or an error on either.
 */
#include "xfer.h"

#include "group.h"
#include "policy.h"
#include "stage.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XR_STATUS_NOT_POSTED XR_EAGAIN

typedef struct desc_ref {
    xr_region *lg;
    const xr_peer_region *rg;
    const xr_plan *plan;      /* the cached plan of this descriptor's class */
    uint64_t mask;            /* rails that hold both regions and are in the plan */
    uint8_t stage;            /* XR_STAGE_*: staged pieces are cut to the slot size */
} desc_ref;

typedef struct fill_ctx {
    xr_xfer *x;
    size_t *next;         /* per rail: next free chunk index */
    size_t *count;        /* per rail: chunks (counting pass) */
    const xr_iov *local, *remote;
    const desc_ref *ref;
    size_t d;             /* descriptor being split */
} fill_ctx;

/* A staged piece goes through bounce slots, so it is cut to the slot size. */
static size_t piece_unit(const fill_ctx *f)
{
    return f->ref[f->d].stage ? f->x->e->opts.stage.chunk : SIZE_MAX;
}

static void count_piece(void *arg, unsigned rail, size_t off, size_t len)
{
    fill_ctx *f = arg;
    size_t unit = piece_unit(f);
    (void)off;
    f->count[rail] += unit == SIZE_MAX ? 1 : (len + unit - 1) / unit;
}

static void chunk_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why);

/* Point a chunk at a rail: its local MR, the peer's key and the address as
 * that rail's peer endpoint names it. */
static void chunk_aim(xr_chunk *c, unsigned rail)
{
    const xr_peer *p = c->x->peer;
    c->rail = (uint8_t)rail;
    c->desc = c->lg->desc[rail];
    c->key = c->rg->key[rail];
    /* Without FI_MR_VIRT_ADDR the peer's provider addresses a region by
     * offset; a staged peer region is addressed by the peer itself. */
    c->raddr = p->virt_addr[rail] || c->rg->staged ? c->rvirt : c->rvirt - c->rg->base[rail];
}

static void fill_piece(void *arg, unsigned rail, size_t off, size_t len)
{
    fill_ctx *f = arg;
    xr_xfer *x = f->x;
    const desc_ref *ref = &f->ref[f->d];
    size_t unit = piece_unit(f);
    for (size_t done = 0; done < len;) {
        size_t n = len - done < unit ? len - done : unit;
        xr_chunk *c = &x->chunks[f->next[rail]++];
        /* The chunk array is zeroed: only what differs is written, as this
         * runs once per chunk of a transfer that may have thousands. */
        c->ctx.done = chunk_done;
        c->ctx.flags = ref->stage ? 0 : XR_OPF_DEPTH | XR_OPF_KEEP;
        c->x = x;
        c->buf = (void *)(uintptr_t)(f->local[f->d].addr + off + done);
        c->lg = ref->lg;
        c->rg = ref->rg;
        c->rvirt = f->remote[f->d].addr + off + done;
        chunk_aim(c, rail);
        c->len = n;
        c->desc_index = (uint32_t)f->d;
        c->stage = ref->stage;
        c->gpu = ref->lg->kind == XR_MEM_CUDA;
        c->device = ref->lg->device;
        done += n;
    }
}

static uint64_t plan_mask(const xr_plan *p)
{
    uint64_t m = 0;
    for (unsigned k = 0; k < p->nrails; k++)
        m |= 1ull << p->rail[k];
    return m;
}

/* A buffer nobody registered gets an on-demand region that the transfer
 * owns; descriptors inside the previous one share it. Engine lock held. */
static int own_region(xr_engine *e, xr_xfer *x, uint64_t addr, size_t len, xr_region **out)
{
    xr_region *last = x->nowned ? x->owned[x->nowned - 1] : NULL;
    if (last && addr >= last->addr && addr + len <= last->addr + last->len) {
        *out = last;
        return 0;
    }
    if ((x->nowned & (x->nowned - 1)) == 0) {
        /* grows by doubling: at 0, 1, 2, 4, ... */
        xr_region **v = realloc(x->owned, (x->nowned ? 2 * x->nowned : 1) * sizeof *v);
        if (!v)
            return xr__error_set(XR_ENOMEM, "out of memory for on-demand regions");
        x->owned = v;
    }
    int rc = xr__region_implicit(e, addr, len, out);
    if (!rc)
        x->owned[x->nowned++] = *out;
    return rc;
}

/* Check every descriptor against local and peer regions, and find its
 * plan. Engine lock held. */
static int validate(xr_engine *e, xr_xfer *x, const xr_iov *local, const xr_iov *remote,
                    size_t count, desc_ref *ref)
{
    xr_peer *peer = x->peer;
    xr_op op = x->op;
    unsigned need = op == XR_OP_WRITE ? XR_ACCESS_WRITE : XR_ACCESS_READ;
    const xr_plan *last = NULL;
    uint64_t mask = 0;
    size_t last_len = 0;
    for (size_t d = 0; d < count; d++) {
        if (local[d].len != remote[d].len)
            return xr__error_set(XR_EINVAL, "xfer: descriptor %zu: local length %zu != remote length %zu",
                            d, local[d].len, remote[d].len);
        /* Every range is checked before any sum is trusted: a remote one
         * that wraps would pass the region lookup and reach the target's
         * provider, which writes where it points. */
        if (!local[d].len)
            return xr__error_set(XR_ERANGE, "xfer: descriptor %zu: empty (0 bytes)", d);
        if (local[d].addr + local[d].len < local[d].addr)
            return xr__error_set(XR_ERANGE, "xfer: descriptor %zu: local range [0x%llx, +%zu) "
                                            "wraps the address space",
                                 d, (unsigned long long)local[d].addr, local[d].len);
        if (remote[d].addr + remote[d].len < remote[d].addr)
            return xr__error_set(XR_ERANGE, "xfer: descriptor %zu: remote range [0x%llx, +%zu) "
                                            "wraps the address space",
                                 d, (unsigned long long)remote[d].addr, remote[d].len);
        ref[d].lg = xr__region_find(e, local[d].addr, local[d].len);
        if (!ref[d].lg) {
            int rc = own_region(e, x, local[d].addr, local[d].len, &ref[d].lg);
            if (rc) {
                char why[XR_ERRMSG_MAX];
                snprintf(why, sizeof why, "%s", xr__error_last());
                return xr__error_set(rc, "xfer: descriptor %zu: %s", d, why);
            }
        }
        ref[d].rg = xr__peer_region_find(peer, remote[d].addr, remote[d].len, need);
        if (!ref[d].rg)
            return xr__error_set(XR_ERANGE, "xfer: descriptor %zu: remote range [0x%llx, +%zu) is "
                                       "outside every region peer '%s' published",
                            d, (unsigned long long)remote[d].addr, remote[d].len, peer->name);
        if (!(ref[d].rg->access & need))
            return xr__error_set(XR_EACCESS, "xfer: descriptor %zu: peer '%s' region [0x%llx, +%llu) "
                                        "does not grant remote %s",
                            d, peer->name, (unsigned long long)ref[d].rg->addr,
                            (unsigned long long)ref[d].rg->len,
                            op == XR_OP_WRITE ? "write" : "read");
        /* Descriptors of one size usually come in runs: one lookup per run. */
        if (!last || local[d].len != last_len || ref[d].lg != (d ? ref[d - 1].lg : NULL)) {
            /* For host memory the class's device is the buffer's NUMA node. */
            const xr_region *lg = ref[d].lg;
            int dev = lg->kind == XR_MEM_HOST ? lg->numa : lg->device;
            int rc = xr__policy_plan_get(e, peer, peer->name, peer->mask, op, lg->kind, dev,
                                         local[d].len, &last);
            if (rc)
                return rc;
            mask = plan_mask(last);
            last_len = local[d].len;
        }
        ref[d].plan = last;
        ref[d].stage = ref[d].rg->staged ? XR_STAGE_REMOTE
                       : ref[d].lg->staged ? XR_STAGE_LOCAL
                                           : XR_STAGE_NONE;
        if (ref[d].stage) {
            int rc = xr__stage_need(e, false);
            if (rc)
                return rc;
        }
        ref[d].mask = ref[d].rg->path_mask & ref[d].lg->rail_mask & mask;
        if (!ref[d].mask)
            return xr__error_set(XR_ENORAIL, "xfer: descriptor %zu: no rail of its plan carries both "
                                        "the local region and peer '%s' region at 0x%llx",
                            d, peer->name, (unsigned long long)ref[d].rg->addr);
        /* A local-only region is registered on a rail (through the cache)
         * the first time a plan uses the rail for it. */
        if (d == 0 || ref[d].lg != ref[d - 1].lg || ref[d].mask != ref[d - 1].mask)
            for (uint64_t m = ref[d].mask; m; m &= m - 1) {
                int rc = xr__region_rail(ref[d].lg, (unsigned)__builtin_ctzll(m));
                if (rc)
                    return rc;
            }
    }
    return 0;
}

/* Pin the distinct local regions and the peer for the transfer's life. Engine lock held. */
static int take_refs(xr_xfer *x, const desc_ref *ref, size_t count)
{
    x->regions = malloc((count ? count : 1) * sizeof *x->regions);
    if (!x->regions)
        return xr__error_set(XR_ENOMEM, "xfer: out of memory");
    for (size_t d = 0; d < count; d++) {
        xr_region *g = ref[d].lg;
        if (x->nregions && x->regions[x->nregions - 1] == g)
            continue;
        bool seen = false;
        for (size_t k = 0; k < x->nregions && !seen; k++)
            seen = x->regions[k] == g;
        if (!seen)
            x->regions[x->nregions++] = g;
    }
    for (size_t k = 0; k < x->nregions; k++)
        x->regions[k]->refs++;
    xr__peer_get(x->peer);
    return 0;
}

static void xfer_free(xr_xfer *x)
{
    for (size_t k = 0; k < x->nowned; k++)
        xr__region_drop(x->owned[k]);
    free(x->owned);
    free(x->chunks);
    free(x->regions);
    if (x->notif)
        xr__notif_msg_free(x->notif);
    free(x);
}

static int lane_post(xr_work *w, xr_rail *r);
static void notif_done(void *arg, int err, const char *why);

/* Whether the transfer needs a fence (fence_join): a chunk of local
 * device memory on a rail that moves it to a local peer itself, which
 * libfabric's shm does through CUDA IPC. The fence READs from the peer
 * memory of one such chunk. */
static void fence_plan(xr_xfer *x)
{
    const xr_rail *rails = x->e->rails;
    xr__list_init(&x->fence_link);
    for (size_t k = x->nchunks; k-- > 0;) {
        const xr_chunk *c = &x->chunks[k];
        if (!c->stage && c->gpu && rails[c->rail].hmem && rails[c->rail].local_only &&
            !c->rg->staged) {
            x->fence_rg = c->rg;
            x->fence_rvirt = c->rvirt;
            x->fence_rail = c->rail;
            return;
        }
    }
}

int xr_xfer_create(xr_engine *e, xr_peer *peer, xr_op op, const xr_iov *local,
                   const xr_iov *remote, size_t count, const void *notif, size_t notif_len,
                   xr_xfer **out)
{
    if (out)
        *out = NULL;
    if (!e || !peer || !out || (count && (!local || !remote)) || (!notif && notif_len))
        return xr__error_set(XR_EINVAL, "xr_xfer_create: NULL argument");
    if (op != XR_OP_WRITE && op != XR_OP_READ)
        return xr__error_set(XR_EINVAL, "xr_xfer_create: op %d is neither WRITE nor READ", (int)op);
    /* A peer that stopped answering may be planned for (its post says
     * so); one unloaded or gone from the directory may not. */
    if (peer->unloaded || atomic_load(&peer->gone))
        return xr__peer_check(peer, "xr_xfer_create");
    xr_xfer *x = calloc(1, sizeof *x);
    desc_ref *ref = calloc(count ? count : 1, sizeof *ref);
    size_t counts[XR_MAX_RAILS] = {0}, next[XR_MAX_RAILS];
    if (!x || !ref) {
        free(x);
        free(ref);
        return xr__error_set(XR_ENOMEM, "xr_xfer_create: out of memory for %zu descriptors", count);
    }
    x->e = e;
    xr__list_init(&x->link);
    xr__list_init(&x->cb_link);
    x->peer = peer;
    x->timeout_ms = e->opts.health.xfer_timeout_ms;
    x->op = op;
    atomic_store(&x->status, XR_STATUS_NOT_POSTED);

    pthread_mutex_lock(&e->lock);
    int rc = validate(e, x, local, remote, count, ref);
    /* Counting pass, then filling pass from the same round-robin start, so
     * each rail's chunks land contiguously without a per-chunk allocation. */
    unsigned rr0 = atomic_fetch_add(&e->rr, 1), rr = rr0;
    fill_ctx f = {.x = x, .next = next, .count = counts, .local = local, .remote = remote,
                  .ref = ref};
    /* f.d names the descriptor in both passes: a staged one is cut to the
     * slot size, and the count must be cut as the fill will be. */
    for (f.d = 0; !rc && f.d < count; f.d++)
        xr__plan_split(ref[f.d].plan, ref[f.d].mask, local[f.d].len, &rr, count_piece, &f);
    for (unsigned i = 0; i < e->nrails; i++) {
        next[i] = x->nchunks;
        x->nchunks += counts[i];
    }
    if (!rc && x->nchunks && !(x->chunks = calloc(x->nchunks, sizeof *x->chunks)))
        rc = xr__error_set(XR_ENOMEM, "xr_xfer_create: %zu chunks", x->nchunks);
    if (!rc) {
        for (unsigned i = 0; i < e->nrails; i++) {
            x->lane[i] = (xr_xfer_lane){.work.post = lane_post, .x = x,
                                        .begin = (uint32_t)next[i],
                                        .end = (uint32_t)(next[i] + counts[i])};
            xr__list_init(&x->lane[i].work.link);
        }
        rr = rr0;
        for (f.d = 0; f.d < count; f.d++)
            xr__plan_split(ref[f.d].plan, ref[f.d].mask, local[f.d].len, &rr, fill_piece, &f);
        rc = take_refs(x, ref, count);
        fence_plan(x);
    }
    if (!rc)
        xr__list_push_front(&e->xfers, &x->link);
    pthread_mutex_unlock(&e->lock);
    free(ref);
    if (!rc && notif) {
        rc = xr__notif_msg_new(e, peer, notif, notif_len, notif_done, x, &x->notif);
        if (rc) {
            xr_xfer_release(x);
            return rc;
        }
    }
    if (rc) {
        xfer_free(x);
        return rc;
    }
    *out = x;
    return 0;
}

/* Keep the first error a transfer met, with where it happened. */
static void record_error(xr_xfer *x, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void record_error(xr_xfer *x, int err, const char *fmt, ...)
{
    int zero = 0;
    if (!atomic_compare_exchange_strong(&x->err, &zero, err))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->errmsg, sizeof x->errmsg, fmt, ap);
    va_end(ap);
}

/* The one place a transfer ends: its status is written here and nowhere
 * else, as the first error it met or 0. */
static void finish(xr_xfer *x)
{
    /* Once the status is final the owner may free x: nothing of it is
     * touched after the store. A callback is queued before it, under
     * cb_lock, which release takes to take it off again. */
    xr_engine *e = x->e;
    int status = atomic_load(&x->err);
    xr_group *g = x->group;
    x->group = NULL; /* this post's: the next one says again */
    if (g && status)
        xr__group_member_error(g, status, x->errmsg);
    atomic_fetch_sub(&x->peer->busy, 1);
    if (atomic_load(&x->has_cb)) {
        pthread_mutex_lock(&e->cb_lock);
        if (x->cb && !x->cb_queued) {
            x->cb_status = status;
            x->cb_queued = true;
            xr__list_push_back(&e->cb_due, &x->cb_link);
            atomic_store(&e->cb_pending, true);
        }
        pthread_mutex_unlock(&e->cb_lock);
    }
    atomic_store(&x->status, status);
    xr__engine_signal(e);
    if (g)
        xr__group_member_done(g);
}

void xr__xfer_run_callbacks(xr_engine *e)
{
    /* One runner at a time, so release knows whose callback runs; a thread
     * that finds it busy leaves the queue to it, and the runner looks
     * again after letting go, so nothing queued meanwhile is stranded. */
    while (atomic_load(&e->cb_pending) && pthread_mutex_trylock(&e->cb_runner) == 0) {
        pthread_mutex_lock(&e->cb_lock);
        while (!xr__list_empty(&e->cb_due)) {
            xr_xfer *x = xr__list_entry(xr__list_pop_front(&e->cb_due), xr_xfer, cb_link);
            x->cb_queued = false;
            if (atomic_load(&e->stop))
                continue; /* xr_engine_destroy has begun: no more calls into the application */
            xr_xfer_cb fn = x->cb;
            void *user = x->cb_user;
            int status = x->cb_status;
            e->cb_current = x;
            e->cb_thread = pthread_self();
            pthread_mutex_unlock(&e->cb_lock);
            fn(x, status, user); /* it may post x again, or release it: x is not touched after */
            pthread_mutex_lock(&e->cb_lock);
            e->cb_current = NULL;
            pthread_cond_broadcast(&e->cb_cond);
        }
        atomic_store(&e->cb_pending, false);
        pthread_mutex_unlock(&e->cb_lock);
        pthread_mutex_unlock(&e->cb_runner);
        pthread_mutex_lock(&e->cb_lock);
        atomic_store(&e->cb_pending, !xr__list_empty(&e->cb_due));
        pthread_mutex_unlock(&e->cb_lock);
    }
}

/* The callback of x will not run after this: it is taken off the queue, and
 * one running on another thread is waited for. No engine lock held (the
 * callback may take it). */
static void callback_forget(xr_xfer *x)
{
    xr_engine *e = x->e;
    if (!atomic_load(&x->has_cb))
        return;
    pthread_mutex_lock(&e->cb_lock);
    if (x->cb_queued) {
        xr__list_remove(&x->cb_link);
        x->cb_queued = false;
    }
    x->cb = NULL;
    while (e->cb_current == x && !pthread_equal(e->cb_thread, pthread_self()))
        pthread_cond_wait(&e->cb_cond, &e->cb_lock);
    pthread_mutex_unlock(&e->cb_lock);
}

int xr_xfer_set_callback(xr_xfer *x, xr_xfer_cb fn, void *user)
{
    if (!x)
        return xr__error_set(XR_EINVAL, "xr_xfer_set_callback: NULL transfer");
    if (atomic_load(&x->status) == XR_EINPROGRESS)
        return xr__error_set(XR_EBUSY, "xr_xfer_set_callback: the transfer is in flight");
    xr_engine *e = x->e;
    pthread_mutex_lock(&e->cb_lock);
    x->cb = fn;
    x->cb_user = user;
    atomic_store(&x->has_cb, fn != NULL || x->cb_queued);
    pthread_mutex_unlock(&e->cb_lock);
    return 0;
}

static void notif_done(void *arg, int err, const char *why)
{
    xr_xfer *x = arg;
    if (err)
        record_error(x, err, "notification: %s", why ? why : xr_strerror(err));
    finish(x);
}

/* The chunks, and the fence if any, are done: send the notification, or
 * end. No lock held. */
static void fence_end(void *arg)
{
    xr_xfer *x = arg;
    if (atomic_load(&x->err) || !x->notif || x->group) { /* a group sends its own */
        finish(x);
        return;
    }
    int rc = xr__notif_submit(x->e, x->notif);
    if (rc)
        notif_done(x, rc, xr__error_last());
}

/*
 * Why a fence. libfabric's shm moves device memory between processes by
 * CUDA IPC: the target process opens the initiator's buffer and copies
 * with cudaMemcpy, and skips the device synchronize when both sides are
 * device memory (hmem_cuda.c, ofi_cudaMemcpy in 2.6). A device-to-device
 * cudaMemcpy returns before the copy is done, so the initiator gets its
 * completion while the bytes are still moving: a READ's buffer is read
 * too early (4-16 MiB chunks lost their data on an H200, docs/gpu.md), and
 * a WRITE's source may be reused before the target copied it.
 *
 * The fence is one READ of 8 bytes from the same peer memory into host
 * memory, after the last chunk. The target serves it with a copy from
 * device to host, which waits for the copies it issued before (same
 * device, the legacy stream, and libfabric synchronizes the device for a
 * host buffer CUDA does not know). Its completion means they are done.
 *
 * It costs the target a wait for every copy it has queued, so a peer has
 * one fence in flight at a time: it serves every transfer whose chunks
 * were done before it was posted, and the transfers done meanwhile share
 * the next one.
 */
static void fence_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why);
static void fence_start(void *arg);
static void fence_end_all(void *arg);

static int fence_post(xr_work *w, xr_rail *r)
{
    xr_peer *p = xr__list_entry(w, xr_peer, fence_work);
    unsigned i = r->index;
    if (atomic_load(&p->lost)) { /* judged while the fence waited for room */
        p->fence_err = XR_EPEER;
        snprintf(p->fence_why, sizeof p->fence_why, "peer '%s' stopped answering", p->name);
        xr__rail_after(r, fence_end_all, p);
        return XR_WORK_DONE;
    }
    const xr_peer_region *rg = p->fence_rg;
    p->fence_ctx = (xr_opctx){.done = fence_done};
    uint64_t raddr = p->virt_addr[i] ? p->fence_rvirt : p->fence_rvirt - rg->base[i];
    int rc = xr__rail_rma(r, false, &r->probe_buf, sizeof r->probe_buf, fi_mr_desc(r->probe_mr),
                          p->fi_addr[i], raddr, rg->key[i], &p->fence_ctx);
    if (rc == -FI_EAGAIN) {
        /* A provider that cannot reach the peer may refuse forever: the
         * refusal counts against the peer's deadline, as a chunk's does. */
        xr__rail_refused(&p->pushed_back);
        return XR_WORK_WAIT;
    }
    if (!rc) {
        atomic_fetch_add_explicit(&p->held, 1, memory_order_relaxed);
        xr__rail_accepted(&p->pushed_back);
        p->on_rail[i]++;
        return XR_WORK_DONE;
    }
    p->fence_err = XR_EIO;
    snprintf(p->fence_why, sizeof p->fence_why, "rail %u (%s): posting it failed: %s", i,
             r->provider, fi_strerror(-rc));
    xr__rail_after(r, fence_end_all, p);
    return XR_WORK_DONE;
}

/* Take the transfers that wait into the next fence: its target is the
 * first one's. False if none waits. Fence lock held. */
static bool fence_board(xr_peer *p)
{
    if (xr__list_empty(&p->fence_wait))
        return false;
    const xr_xfer *x = xr__list_entry(p->fence_wait.next, xr_xfer, fence_link);
    p->fence_rg = x->fence_rg;
    p->fence_rvirt = x->fence_rvirt;
    p->fence_rail = x->fence_rail;
    p->fence_tries = 0;
    p->fence_err = 0;
    xr__list_splice(&p->fence_riding, &p->fence_wait);
    return true;
}

/* The fence ended: its transfers go on (notification, or the end), and
 * those that waited meanwhile get the next. No lock held. */
static void fence_end_all(void *arg)
{
    xr_peer *p = arg;
    xr_list done;
    xr__list_init(&done);
    pthread_mutex_lock(&p->fence_lock);
    xr__list_splice(&done, &p->fence_riding);
    int err = p->fence_err;
    char why[sizeof p->fence_why];
    memcpy(why, p->fence_why, sizeof why);
    bool next = fence_board(p);
    p->fence_busy = next;
    pthread_mutex_unlock(&p->fence_lock);
    while (!xr__list_empty(&done)) {
        /* Off the list before it goes on: it may be freed once it ends. */
        xr_xfer *x = xr__list_entry(xr__list_pop_front(&done), xr_xfer, fence_link);
        if (err)
            record_error(x, err, "the fence READ after the chunks: %s", why);
        fence_end(x);
    }
    if (next)
        fence_start(p);
}

static void fence_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why)
{
    (void)len;
    xr_peer *p = xr__list_entry(ctx, xr_peer, fence_ctx);
    atomic_fetch_sub_explicit(&p->held, 1, memory_order_relaxed);
    p->on_rail[r->index]--;
    if (!err) {
        atomic_store_explicit(&p->last_ok, r->last_done, memory_order_relaxed);
    } else if (err == XR_ECANCELED && ++p->fence_tries < 4) {
        /* A reset for another peer, or of a rail judged down: the copies
         * it fences are the peer's, so another rail of the kind will do. */
        xr__rail_after(r, fence_start, p);
        return;
    } else {
        p->fence_err = err;
        snprintf(p->fence_why, sizeof p->fence_why, "rail %u (%s): %s", r->index, r->provider,
                 why ? why : xr_strerror(err));
    }
    xr__rail_after(r, fence_end_all, p);
}

/* Queue the fence on the first rail, from fence_rail on, that moves device
 * memory the same way and still reaches the peer. No lock held. */
static void fence_start(void *arg)
{
    xr_peer *p = arg;
    xr_engine *e = p->e;
    p->fence_work.post = fence_post;
    for (unsigned k = 0; k < e->nrails; k++) {
        xr_rail *r = &e->rails[(p->fence_rail + k) % e->nrails];
        if (r->hmem && r->local_only && r->probe_mr && atomic_load(&r->up) &&
            ((p->mask >> r->index) & 1) &&
            !((atomic_load(&p->path_down) >> r->index) & 1) &&
            ((p->fence_rg->path_mask >> r->index) & 1)) {
            xr__rail_enqueue(r, XR_LANE_CTRL, &p->fence_work);
            return;
        }
    }
    p->fence_err = XR_EIO;
    snprintf(p->fence_why, sizeof p->fence_why, "no rail left to the peer for it (device memory "
                                                "moved by CUDA IPC)");
    fence_end_all(p);
}

/* A transfer whose chunks are done waits for a fence posted after that. */
static void fence_join(xr_xfer *x)
{
    xr_peer *p = x->peer;
    pthread_mutex_lock(&p->fence_lock);
    xr__list_push_back(&p->fence_wait, &x->fence_link);
    bool start = !p->fence_busy && fence_board(p);
    p->fence_busy = p->fence_busy || start;
    pthread_mutex_unlock(&p->fence_lock);
    if (start)
        fence_start(p);
}

/* Every chunk has completed: the fence, or what follows it. No lock held. */
static void chunks_done(void *arg)
{
    xr_xfer *x = arg;
    if (x->fence_rg && !atomic_load(&x->err) && x->e->opts.ipc_fence)
        fence_join(x);
    else
        fence_end(x);
}

/* Count one chunk off; the last one ends the chunk phase once the rail
 * lock is released (the notification may go out on this rail). */
static void count_off(xr_xfer *x, xr_rail *r, size_t n)
{
    if (atomic_fetch_sub(&x->pending, n) == n)
        xr__rail_after(r, chunks_done, x);
}

/* Hand a chunk to failover (xr__xfer_failover, from progress): the
 * decision may need the policy's answer and another rail's lock. */
static void fail_over(xr_xfer *x, xr_chunk *c, int err, bool spend, const char *why)
{
    xr_engine *e = x->e;
    pthread_mutex_lock(&e->fail_lock);
    c->err = (int16_t)err;
    c->spend = spend;
    if (why)
        snprintf(x->fail_why, sizeof x->fail_why, "%s", why);
    xr__list_push_back(&e->failed, &c->ctx.link);
    pthread_mutex_unlock(&e->fail_lock);
    atomic_store(&e->fail_pending, true);
}

static void chunk_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why)
{
    (void)len;
    xr_chunk *c = (xr_chunk *)ctx;
    xr_xfer *x = c->x;
    atomic_fetch_sub_explicit(&x->peer->held, 1, memory_order_relaxed);
    if (!c->stage)
        x->peer->on_rail[r->index]--;
    if (ctx->flags & XR_OPF_GONE) {
        /* Left with the provider for a lost peer: it ends here, never
         * posted again, as the provider may still hand its context back. */
        atomic_store(&x->kept, true);
        record_error(x, err, "descriptor %u: %s", c->desc_index, why ? why : xr_strerror(err));
        count_off(x, r, 1);
        return;
    }
    if (!err) {
        r->ctr.chunks++;
        r->ctr.tx_bytes += c->len;
        if (c->stage)
            r->ctr.staged++;
        atomic_store_explicit(&x->peer->last_ok, r->last_done, memory_order_relaxed);
        if (!atomic_load_explicit(&x->peer->answered, memory_order_relaxed))
            atomic_store(&x->peer->answered, true);
        uint64_t bit = 1ull << r->index;
        if (!(atomic_load_explicit(&x->peer->answered_rails, memory_order_relaxed) & bit))
            atomic_fetch_or(&x->peer->answered_rails, bit);
    } else if (!atomic_load(&x->err) && !(ctx->flags & XR_OPF_FINAL)) {
        /* A reset canceled it: another peer's silence, or its rail's, was
         * the cause, so this peer's deadline starts again. */
        if (err == XR_ECANCELED)
            atomic_store(&x->peer->last_ok, xr__rail_now());
        /* A connection that failed is not tried again by this post's
         * chunks: each attempt would connect again (rxm does, per post). */
        if (err == XR_EPEER)
            atomic_fetch_or(&x->peer->path_down, 1ull << r->index);
        /* A staged chunk starts afresh on its next rail: its slot was
         * freed when it failed, and a peer serves a request on any rail
         * (serving one twice copies the same bytes twice). */
        fail_over(x, c, err, true, why);
        return;
    } else {
        record_error(x, err, "descriptor %u: %s", c->desc_index, why ? why : xr_strerror(err));
    }
    count_off(x, r, 1);
}

/* Post one chunk on rail r: XR_WORK_WAIT if the rail has no room now,
 * XR_WORK_BLOCKED if its peer has none, else XR_WORK_MORE (posted, or
 * handed to its completion). Rail lock held. */
static int post_chunk(xr_xfer *x, xr_chunk *c, xr_rail *r)
{
    if (atomic_load(&x->err)) {
        count_off(x, r, 1); /* failed elsewhere: not sent */
        return XR_WORK_MORE;
    }
    fi_addr_t dst = x->peer->fi_addr[r->index];
    bool write = x->op == XR_OP_WRITE;
    if (!atomic_load(&r->up) || ((atomic_load(&x->peer->path_down) >> r->index) & 1)) {
        /* The rail left plans after this was planned, or its connection to
         * the peer failed: the chunk goes elsewhere without being tried
         * here, and without spending a retry. */
        fail_over(x, c, XR_ECANCELED, false,
                  atomic_load(&r->up) ? "its rail lost the peer" : "its rail is down");
        return XR_WORK_MORE;
    }
    if (c->stage) {
        /* Staged chunks are bounded by the bounce slots, not the rail's
         * depth; stage.c posts them from progress. */
        xr_stage_req q = {.done = &c->ctx, .buf = c->buf, .len = c->len, .raddr = c->raddr,
                          .key = c->key, .dst = dst, .peer = x->peer->name, .write = write,
                          .remote = c->stage == XR_STAGE_REMOTE, .gpu = c->gpu,
                          .device = c->device, .pushed_back = &x->peer->pushed_back,
                          .failed = &x->err};
        c->ctx.flags &= (uint8_t)~XR_OPF_FINAL; /* an earlier post's answer */
        if (xr__stage_start(x->e, r, &q) == XR_EAGAIN)
            return XR_WORK_WAIT;
        atomic_fetch_add_explicit(&x->peer->held, 1, memory_order_relaxed);
        return XR_WORK_MORE;
    }
    if (!write && r->reset_reads_crash && r->reads >= (r->depth + 3) / 4)
        return XR_WORK_WAIT; /* rail.h, reads */
    bool room = r->inflight < r->depth;
    if (room && r->peer_share && x->peer->on_rail[r->index] >= r->depth - r->depth / 4)
        return XR_WORK_BLOCKED; /* its share is full; other peers' work goes first */
    int rc = xr__rail_rma(r, write, c->buf, c->len, c->desc, dst, c->raddr, c->key, &c->ctx);
    if (rc == -FI_EAGAIN) {
        /* Our depth is full (the next CQ read frees room), or the provider
         * pushed back: the latter counts against the peer's deadline, as a
         * provider that cannot reach a peer may say EAGAIN forever, and
         * lets other peers' work go first. */
        if (room)
            xr__rail_refused(&x->peer->pushed_back);
        return room && r->peer_share ? XR_WORK_BLOCKED : XR_WORK_WAIT;
    }
    atomic_fetch_add_explicit(&x->peer->held, 1, memory_order_relaxed);
    x->peer->on_rail[r->index]++;
    xr__rail_accepted(&x->peer->pushed_back);
    if (rc) {
        char why[256];
        snprintf(why, sizeof why, "rail %u (%s): posting fi_%s of %zu bytes failed: %s",
                 r->index, r->provider, write ? "write" : "read", c->len, fi_strerror(-rc));
        chunk_done(&c->ctx, r, 0, XR_EIO, why);
    }
    return XR_WORK_MORE;
}

/* Post this rail's next chunk of a transfer; the rail's data lane calls it. */
static int lane_post(xr_work *w, xr_rail *r)
{
    xr_xfer_lane *s = xr__list_entry(w, xr_xfer_lane, work);
    xr_xfer *x = s->x;
    if (atomic_load(&x->err)) {
        /* The transfer already failed elsewhere: what it has not posted
         * is counted off instead of sent. */
        size_t left = s->end - s->cursor;
        s->cursor = s->end;
        count_off(x, r, left);
        return XR_WORK_DONE;
    }
    int rc = post_chunk(x, &x->chunks[s->cursor], r);
    if (rc == XR_WORK_WAIT || rc == XR_WORK_BLOCKED)
        return rc;
    return ++s->cursor == s->end ? XR_WORK_DONE : XR_WORK_MORE;
}

/* Post the next chunk another rail gave up; the rail's data lane calls it. */
static int retry_post(xr_work *w, xr_rail *r)
{
    struct xr_retry_lane *l = xr__list_entry(w, struct xr_retry_lane, work);
    pthread_mutex_lock(&l->e->fail_lock);
    xr_list *n = xr__list_pop_front(&l->chunks);
    if (!n)
        l->queued = false;
    else
        atomic_fetch_sub(&l->n, 1);
    pthread_mutex_unlock(&l->e->fail_lock);
    if (!n)
        return XR_WORK_DONE;
    xr_chunk *c = xr__list_entry(n, xr_chunk, ctx.link);
    int rc = post_chunk(c->x, c, r);
    if (rc == XR_WORK_WAIT || rc == XR_WORK_BLOCKED) {
        pthread_mutex_lock(&l->e->fail_lock);
        xr__list_push_front(&l->chunks, &c->ctx.link);
        atomic_fetch_add(&l->n, 1);
        pthread_mutex_unlock(&l->e->fail_lock);
        return rc;
    }
    return XR_WORK_MORE;
}

int xr__xfer_init(xr_engine *e)
{
    pthread_mutex_init(&e->cb_lock, NULL);
    pthread_cond_init(&e->cb_cond, NULL);
    pthread_mutex_init(&e->cb_runner, NULL);
    xr__list_init(&e->cb_due);
    pthread_mutex_init(&e->fail_lock, NULL);
    xr__list_init(&e->failed);
    e->retry = calloc(XR_MAX_RAILS, sizeof *e->retry);
    if (!e->retry)
        return xr__error_set(XR_ENOMEM, "xfer: out of memory");
    for (unsigned i = 0; i < XR_MAX_RAILS; i++) {
        e->retry[i] = (struct xr_retry_lane){.work.post = retry_post, .e = e};
        xr__list_init(&e->retry[i].work.link);
        xr__list_init(&e->retry[i].chunks);
    }
    return 0;
}

void xr__xfer_fini(xr_engine *e)
{
    pthread_mutex_destroy(&e->cb_lock);
    pthread_cond_destroy(&e->cb_cond);
    pthread_mutex_destroy(&e->cb_runner);
    if (e->retry)
        pthread_mutex_destroy(&e->fail_lock);
    free(e->retry);
    e->retry = NULL;
}

/* The rail a failed chunk goes to next: one that is up, that reaches the
 * peer and holds a key for its region, other than the one it failed on if
 * there is such a rail; the least loaded of those. -1: none. Engine lock held. */
static int pick_rail(xr_engine *e, const xr_chunk *c)
{
    uint64_t ok = c->x->peer->mask & c->rg->path_mask & ~atomic_load(&c->x->peer->path_down);
    int best = -1;
    unsigned load = 0;
    for (int pass = 0; pass < 2 && best < 0; pass++)
        for (uint64_t m = ok; m; m &= m - 1) {
            unsigned i = (unsigned)__builtin_ctzll(m);
            xr_rail *r = &e->rails[i];
            if (!atomic_load(&r->up) || (pass == 0 && i == c->rail))
                continue;
            /* What it holds and what failover already gave it: counting
             * only the former sent every chunk of a dead rail to the first
             * survivor (they were all at full depth), which then moved a
             * third of the transfer alone. Hints, read without locks. */
            unsigned l = r->inflight + atomic_load(&e->retry[i].n);
            if ((best < 0 || l < load) && xr__region_rail(c->lg, i) == 0)
                best = (int)i, load = l;
        }
    return best;
}

/* A chunk that will not be posted again ends its part of the transfer. */
static void chunk_give_up(xr_chunk *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void chunk_give_up(xr_chunk *c, int err, const char *fmt, ...)
{
    xr_xfer *x = c->x;
    if (err) {
        char why[XR_ERRMSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        record_error(x, err, "descriptor %u: %s", c->desc_index, why);
    }
    if (atomic_fetch_sub(&x->pending, 1) == 1)
        chunks_done(x); /* no rail lock is held here */
}

void xr__xfer_failover(xr_engine *e)
{
    if (!atomic_load_explicit(&e->fail_pending, memory_order_relaxed) ||
        !atomic_exchange(&e->fail_pending, false))
        return; /* looked at first: progress.c says why */
    xr_list todo;
    xr__list_init(&todo);
    pthread_mutex_lock(&e->fail_lock);
    xr__list_splice(&todo, &e->failed);
    pthread_mutex_unlock(&e->fail_lock);
    for (xr_list *n; (n = xr__list_pop_front(&todo));) {
        xr_chunk *c = xr__list_entry(n, xr_chunk, ctx.link);
        xr_xfer *x = c->x;
        xr_rail *from = &e->rails[c->rail];
        char why[256];
        pthread_mutex_lock(&e->fail_lock);
        snprintf(why, sizeof why, "%s", x->fail_why);
        pthread_mutex_unlock(&e->fail_lock);
        if (atomic_load(&x->err)) {
            chunk_give_up(c, 0, "%s", "");
            continue;
        }
        if (c->err != XR_ECANCELED && atomic_load(&from->err_action) == XR_RAIL_ACT_FAIL) {
            chunk_give_up(c, c->err, "%s (the policy answered \"fail\")", why);
            continue;
        }
        if (c->gen != x->gen) {
            c->gen = x->gen;
            c->tries = 0;
        }
        if (c->spend && ++c->tries > e->opts.health.retries) {
            chunk_give_up(c, c->err == XR_ECANCELED ? XR_EIO : c->err,
                          "failed on %u rails; the last: %s", c->tries, why);
            continue;
        }
        pthread_mutex_lock(&e->lock);
        int to = pick_rail(e, c);
        if (to >= 0)
            chunk_aim(c, (unsigned)to);
        pthread_mutex_unlock(&e->lock);
        if (to < 0) { /* the chunk's own error says more than "no rail" */
            bool lost = atomic_load(&x->peer->path_down) & x->peer->mask;
            chunk_give_up(c, c->err != XR_ECANCELED ? c->err : lost ? XR_EPEER : XR_ENORAIL,
                          "no other rail that is up reaches peer '%s' with a key for its "
                          "region; it failed: %s", x->peer->name, why);
            continue;
        }
        pthread_mutex_lock(&from->lock);
        from->ctr.failovers++;
        pthread_mutex_unlock(&from->lock);
        struct xr_retry_lane *l = &e->retry[to];
        pthread_mutex_lock(&e->fail_lock);
        xr__list_push_back(&l->chunks, &c->ctx.link);
        atomic_fetch_add(&l->n, 1);
        bool enqueue = !l->queued;
        l->queued = true;
        pthread_mutex_unlock(&e->fail_lock);
        if (enqueue)
            xr__rail_enqueue(&e->rails[to], XR_LANE_DATA, &l->work);
    }
}

unsigned xr__xfer_fail_peer(xr_engine *e, xr_peer *peer, int err, const char *why)
{
    unsigned n_failed = 0;
    xr__list_each(n, &e->xfers) {
        xr_xfer *x = xr__list_entry(n, xr_xfer, link);
        if (x->peer == peer && atomic_load(&x->status) == XR_EINPROGRESS) {
            record_error(x, err, "%s", why);
            n_failed++;
        }
    }
    return n_failed;
}

/* Whether a transfer's peer is silent: chunks a provider holds, or refuses,
 * and nothing completed for `allow`. While a probe of it on another link
 * is in flight (health.c, vouching), the verdict waits for the answer.
 * Chunks queued behind another peer's (a stopped peer fills a rail's
 * depth) are not this peer's silence. */
static bool peer_silent(xr_engine *e, const xr_peer *p, uint64_t now, uint64_t allow)
{
    if (now <= atomic_load(&p->last_ok) + allow || xr__peer_vouching(p, now, allow))
        return false;
    if (atomic_load(&p->pushed_back))
        return true;
    /* What a down rail holds waits for its link, not for the peer. */
    return atomic_load(&p->held) > 0 && xr__peer_holding(e, p);
}

/* When the oldest chunk a peer's rails hold for it was posted (or the
 * provider first refused one); UINT64_MAX: none. */
static uint64_t oldest_held(xr_engine *e, const xr_peer *p)
{
    uint64_t t = atomic_load(&p->pushed_back);
    if (!t)
        t = UINT64_MAX;
    for (uint64_t m = p->mask; m; m &= m - 1) {
        xr_rail *r = &e->rails[__builtin_ctzll(m)];
        uint64_t o = atomic_load(&r->up) ? xr__rail_oldest(r, p->fi_addr[r->index]) : 0;
        if (o && o < t)
            t = o;
    }
    return t;
}

xr_peer *xr__xfer_watch(xr_engine *e, uint64_t now, uint64_t deadline, uint64_t connect)
{
    /* One peer is judged a pass: a provider where a dead peer blocks a
     * rail (shm's queue, rxm's) silences every peer on it, and the reset
     * that follows the verdict frees the others. The one judged holds the
     * oldest chunk, the one the others wait behind; between equals, the
     * one silent longest. */
    xr_peer *worst = NULL;
    uint64_t allow = 0, worst_old = 0;
    xr__list_each(n, &e->xfers) {
        xr_xfer *x = xr__list_entry(n, xr_xfer, link);
        if (atomic_load(&x->status) != XR_EINPROGRESS || atomic_load(&x->err))
            continue;
        if (x->deadline && now > x->deadline) {
            record_error(x, XR_ETIMEDOUT, "not finished after %u ms (%zu of %zu chunks "
                                          "pending)", x->timeout_ms,
                         atomic_load(&x->pending), x->nchunks);
            continue;
        }
        xr_peer *p = x->peer;
        uint64_t a = atomic_load(&p->answered) ? deadline : connect;
        if (p == worst || !peer_silent(e, p, now, a))
            continue;
        uint64_t old = oldest_held(e, p);
        if (!worst || old < worst_old ||
            (old == worst_old && atomic_load(&p->last_ok) < atomic_load(&worst->last_ok)))
            worst = p, allow = a, worst_old = old;
    }
    if (!worst)
        return NULL;
    atomic_store(&worst->lost, true);
    char why[256];
    snprintf(why, sizeof why, "peer '%s' completed nothing on any rail for %llu ms (%d chunks "
                              "waiting in providers or bounce slots%s)", worst->name,
             (unsigned long long)(allow / 1000000), atomic_load(&worst->held),
             atomic_load(&worst->pushed_back) ? ", refused with EAGAIN" : "");
    xr__xfer_fail_peer(e, worst, XR_EPEER, why);
    /* The others' silence is counted again from the verdict: a dead peer
     * that clogged a shared rail (shm's queue refusing with EAGAIN, rxm's)
     * silenced them too, and the reset that follows frees them. Without
     * this, each was judged lost a pass later for the dead one's silence. */
    xr__list_each(n, &e->xfers) {
        xr_peer *p = xr__list_entry(n, xr_xfer, link)->peer;
        if (p != worst && atomic_load(&p->busy) && !atomic_load(&p->lost)) {
            atomic_store(&p->last_ok, now);
            atomic_store(&p->pushed_back, 0);
        }
    }
    return worst;
}

int xr_xfer_post(xr_xfer *x)
{
    if (!x)
        return xr__error_set(XR_EINVAL, "xr_xfer_post: NULL transfer");
    if (atomic_load(&x->status) == XR_EINPROGRESS)
        return xr__error_set(XR_EBUSY, "xr_xfer_post: the transfer is still in flight");
    if (atomic_load(&x->kept))
        return xr__error_set(XR_EBUSY, "xr_xfer_post: a provider still holds chunks of this "
                                       "transfer for a peer that stopped answering; release "
                                       "it and create another");
    int rc = xr__peer_check(x->peer, "xr_xfer_post");
    if (rc)
        return rc;
    atomic_store(&x->err, 0);
    x->errmsg[0] = 0;
    x->gen++; /* a chunk's retries count per post: reset when failover meets it */
    uint64_t now = xr__rail_now();
    x->deadline = x->timeout_ms ? now + (uint64_t)x->timeout_ms * 1000000 : 0;
    atomic_store(&x->peer->path_down, 0);
    /* A peer's silence is counted from the moment it has work again. */
    if (atomic_fetch_add(&x->peer->busy, 1) == 0) {
        atomic_store(&x->peer->last_ok, now);
        atomic_store(&x->peer->pushed_back, 0); /* a refusal of an earlier post is old news */
    }
    atomic_store(&x->pending, x->nchunks);
    atomic_store(&x->status, XR_EINPROGRESS);
    atomic_store(&x->posted, true);
    if (!x->nchunks) {
        chunks_done(x);
        return 0;
    }
    /* Once its last lane is queued the transfer may finish on a progress
     * thread, and a callback may release it: x is not touched after that
     * (ASan saw the loop read x->e for the empty lanes past the last). */
    xr_engine *e = x->e;
    unsigned last = 0;
    for (unsigned i = 0; i < e->nrails; i++)
        if (x->lane[i].end > x->lane[i].begin)
            last = i;
    for (unsigned i = 0; i <= last; i++) {
        xr_xfer_lane *s = &x->lane[i];
        if (s->end > s->begin) {
            s->cursor = s->begin;
            xr__rail_enqueue(&e->rails[i], XR_LANE_DATA, &s->work);
        }
    }
    return 0;
}

int xr_xfer_post_notif(xr_xfer *x, const void *msg, size_t len)
{
    if (!x || (!msg && len))
        return xr__error_set(XR_EINVAL, "xr_xfer_post_notif: %s",
                             x ? "a length without a message" : "NULL transfer");
    if (atomic_load(&x->status) == XR_EINPROGRESS)
        return xr__error_set(XR_EBUSY, "xr_xfer_post_notif: the transfer is still in flight");
    /* Not in flight: nothing else holds the old message. */
    xr_notif_msg *m = NULL;
    if (msg) {
        int rc = xr__notif_msg_new(x->e, x->peer, msg, len, notif_done, x, &m);
        if (rc)
            return rc;
    }
    if (x->notif)
        xr__notif_msg_free(x->notif);
    x->notif = m;
    return xr_xfer_post(x);
}

int xr_xfer_cancel(xr_xfer *x)
{
    if (!x)
        return xr__error_set(XR_EINVAL, "xr_xfer_cancel: NULL transfer");
    if (atomic_load(&x->status) != XR_EINPROGRESS)
        return xr__error_set(XR_EINVAL, "xr_xfer_cancel: the transfer is not in flight");
    record_error(x, XR_ECANCELED, "canceled by the application");
    return 0;
}

int xr_xfer_set_timeout(xr_xfer *x, unsigned timeout_ms)
{
    if (!x)
        return xr__error_set(XR_EINVAL, "xr_xfer_set_timeout: NULL transfer");
    x->timeout_ms = timeout_ms;
    return 0;
}

int xr_xfer_status(xr_xfer *x)
{
    if (!x)
        return xr__error_set(XR_EINVAL, "xr_xfer_status: NULL transfer");
    int s = atomic_load(&x->status);
    if (s < 0 && s != XR_EINPROGRESS && s != XR_STATUS_NOT_POSTED)
        xr__error_set(s, "%s", x->errmsg);
    return s;
}

const char *xr_xfer_error(xr_xfer *x)
{
    int s = x ? atomic_load(&x->status) : 0;
    return x && s < 0 && s != XR_EINPROGRESS ? x->errmsg : "";
}

size_t xr_xfer_chunk_count(xr_xfer *x, int rail)
{
    if (!x)
        return 0;
    if (rail < 0)
        return x->nchunks;
    if (rail >= XR_MAX_RAILS)
        return 0;
    return x->lane[rail].end - x->lane[rail].begin;
}

static void unlink_and_unref(xr_xfer *x)
{
    xr__list_remove(&x->link);
    for (size_t k = 0; k < x->nregions; k++)
        x->regions[k]->refs--;
    xr__peer_put(x->peer);
}

void xr_xfer_release(xr_xfer *x)
{
    if (!x)
        return;
    xr_engine *e = x->e;
    callback_forget(x);
    pthread_mutex_lock(&e->lock);
    if (atomic_load(&x->status) == XR_EINPROGRESS) {
        /* The provider still holds the chunks: the transfer is freed when
         * they complete (or at engine destroy), never under the provider's
         * feet, and release never blocks on a peer that stopped answering. */
        x->orphan = true;
        atomic_fetch_add(&e->orphans, 1);
        pthread_mutex_unlock(&e->lock);
        return;
    }
    unlink_and_unref(x);
    if (atomic_load(&x->kept)) /* its memory outlives the provider's hold */
        xr__list_push_back(&e->kept, &x->link);
    pthread_mutex_unlock(&e->lock);
    if (!atomic_load(&x->kept))
        xfer_free(x);
}

void xr__xfer_reap_orphans(xr_engine *e)
{
    pthread_mutex_lock(&e->lock);
    xr__list_each(n, &e->xfers) {
        xr_xfer *x = xr__list_entry(n, xr_xfer, link);
        if (x->orphan && atomic_load(&x->status) != XR_EINPROGRESS) {
            unlink_and_unref(x);
            if (atomic_load(&x->kept))
                xr__list_push_back(&e->kept, &x->link);
            else
                xfer_free(x);
            atomic_fetch_sub(&e->orphans, 1);
        }
    }
    pthread_mutex_unlock(&e->lock);
}

void xr__xfer_free_all(xr_engine *e)
{
    while (!xr__list_empty(&e->xfers)) {
        xr_xfer *x = xr__list_entry(e->xfers.next, xr_xfer, link);
        unlink_and_unref(x);
        xfer_free(x);
    }
    while (!xr__list_empty(&e->kept)) /* the endpoints are closed by now */
        xfer_free(xr__list_entry(xr__list_pop_front(&e->kept), xr_xfer, link));
}

bool xr__xfer_busy(xr_engine *e)
{
    bool b = false;
    pthread_mutex_lock(&e->lock);
    xr__list_each(n, &e->xfers)
        b = b || atomic_load(&xr__list_entry(n, xr_xfer, link)->status) == XR_EINPROGRESS;
    pthread_mutex_unlock(&e->lock);
    return b;
}

/* ---- explaining a plan: one descriptor split exactly as a transfer would ---- */

typedef struct split_acc {
    size_t bytes[XR_MAX_RAILS], chunks[XR_MAX_RAILS];
} split_acc;

static void acc_piece(void *arg, unsigned rail, size_t off, size_t len)
{
    split_acc *a = arg;
    (void)off;
    a->bytes[rail] += len;
    a->chunks[rail]++;
}

int xr_policy_explain(xr_engine *e, xr_peer *peer, xr_op op, xr_mem_kind kind, int device,
                      size_t size, char *buf, size_t cap)
{
    if (!e || !peer || !buf || !cap)
        return xr__error_set(XR_EINVAL, "xr_policy_explain: NULL argument");
    pthread_mutex_lock(&e->lock);
    const xr_plan *cached;
    int rc = xr__policy_plan_get(e, peer, peer->name, peer->mask, op, kind, device, size,
                                 &cached);
    xr_plan p = rc ? (xr_plan){0} : *cached;
    char pname[256];
    const char *path = xr__policy_path(e);
    snprintf(pname, sizeof pname, "%s", path ? path : "(built-in equal stripe)");
    pthread_mutex_unlock(&e->lock);
    if (rc)
        return rc;
    /* Split one descriptor of `size` bytes exactly as a transfer would. */
    split_acc a;
    memset(&a, 0, sizeof a);
    unsigned rr = 0;
    size_t n = xr__plan_split(&p, peer->mask, size, &rr, acc_piece, &a);
    uint64_t wsum = 0;
    for (unsigned k = 0; k < p.nrails; k++)
        wsum += p.weight[k];
    size_t w = (size_t)snprintf(buf, cap, "policy %s\n%s of %zu bytes to '%s': %s over %u "
                                          "rail(s), %zu chunk(s), stripe_min %zu\n",
                                pname, op == XR_OP_WRITE ? "write" : "read", size, peer->name,
                                size >= p.stripe_min && p.nrails > 1 ? "striped" : "one rail",
                                p.nrails, n, p.stripe_min);
    for (unsigned k = 0; k < p.nrails; k++) {
        unsigned r = p.rail[k];
        w += (size_t)snprintf(buf + (w < cap ? w : cap), w < cap ? cap - w : 0,
                              "  rail %u: weight share %.1f%%, %zu bytes (%.1f%%), %zu chunk(s) "
                              "of <= %zu\n",
                              r, 100.0 * p.weight[k] / (double)wsum, a.bytes[r],
                              size ? 100.0 * (double)a.bytes[r] / (double)size : 0.0,
                              a.chunks[r], p.chunk[k]);
    }
    if (w >= cap)
        return xr__error_set(XR_ETOOSMALL, "xr_policy_explain: %zu bytes needed", w + 1);
    return 0;
}
