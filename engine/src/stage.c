/*
 * stage.c - transfers of memory a rail cannot reach: CUDA memory where the
 * provider has no FI_HMEM (and, to test the protocol without a GPU, host
 * regions marked staged with opts.stage.host).
 *
 * Bytes go through bounce slots of pinned host memory, a bounded pool:
 *
 *   local staged, remote reachable: the initiator copies device -> slot and
 *     fi_writes the slot (WRITE), or fi_reads into the slot and copies it
 *     into the device (READ).
 *   remote staged: the target's region has no key. The initiator sends a
 *     tagged request (a header, and the bytes of a WRITE) that lands in one
 *     of the target's receive slots; the target copies it into the device
 *     (WRITE) or the device into the slot (READ) and answers with a tagged
 *     response (a status, and the bytes of a READ). The chunk completes with
 *     the response, so a transfer's notification follows bytes that are
 *     already in device memory.
 *
 * A slot is [request header | response header | payload], so a request's
 * header and bytes, and a response's, arrive in one contiguous buffer.
 * Copies run on CUDA streams and are polled by progress rather than waited
 * on: as many chunks move at once as there are slots, copies overlapping
 * the network. Fabric completions only record what happened and queue the
 * slot for progress, which copies, posts and completes chunks outside every
 * rail lock. Nothing is allocated per chunk: the pools are made the first
 * time an engine needs them.
 */
#include "stage.h"

#include "core/cuda_mem.h"
#include "core/stage_wire.h"
#include "region.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fi_tagged.h>

#define HDR XR_STAGE_HDR
#define TAG_REQ 0x8000000000000000ull
#define TAG_RSP 0xC000000000000000ull
#define COOKIE_MASK 0x3FFFFFFFFFFFFFFFull

enum op_state {
    /* initiator */
    S_IDLE, S_COPY_IN, S_SEND, S_WAIT, S_AFTER, S_COPY_OUT, S_DONE,
    /* target */
    S_POSTED, S_RECEIVED, S_COPY, S_RESPOND, S_RESPONDING, S_REPOST,
};

typedef struct sop {
    xr_opctx tx, rx, rx_alt;
    /* The receive context in use. After a receive fails the other is
     * used: rxm may complete a rendezvous receive that failed once more
     * (seen on 1.17 and 2.6 after a connection reset), and that late
     * completion must not be taken for the receive posted since. */
    xr_opctx *rxc;
    xr_list link;             /* the free list, or the active queue */
    xr_stage *st;
    uint8_t *slot;
    unsigned index;
    bool target;
    int state;
    xr_rail *r;
    unsigned pend;            /* fabric operations not yet completed */
    bool rx_posted;           /* the response receive is posted (retries skip it) */
    uint64_t cookie;
    xr_stage_req req;         /* initiator: the chunk it carries */
    xr_stage_hdr h;           /* target: the request being served */
    xr_copy copy;
    int err;
    bool final;               /* err is an answer: XR_OPF_FINAL */
    char why[256];
    fi_addr_t reply;          /* target: the initiator on r */
    size_t rxlen;
} sop;

typedef struct known_addr {
    xr_list link;
    unsigned rail;
    size_t len;
    uint8_t addr[XR_STAGE_SRC_MAX];
    fi_addr_t fa;
} known_addr;

typedef struct pool {
    uint8_t *arena;
    bool pinned;
    struct fid_mr *mr[XR_MAX_RAILS];
    void *desc[XR_MAX_RAILS];
    sop *ops;
    unsigned n;
} pool;

struct xr_stage {
    xr_engine *e;
    size_t chunk, stride;
    pthread_mutex_t lock;     /* free list, active list, known addresses */
    pool out;                 /* this engine's transfers */
    pool in;                  /* peers' requests: rx_slots per rail */
    xr_list free;
    xr_list active;
    xr_list known;
    uint64_t gen;
    /* Slots one rail may hold: three quarters of the pool. A rail whose
     * link died keeps its slots until the deadline; holding them all, it
     * would starve the peer's other rails, and the peer, not the rail,
     * would look silent. */
    unsigned rail_cap;
    unsigned held[XR_MAX_RAILS];
};

#define SOP_OF(p, member) ((sop *)((char *)(p) - offsetof(sop, member)))

static uint8_t *hdr_a(sop *s) { return s->slot; }
static uint8_t *hdr_b(sop *s) { return s->slot + HDR; }
static uint8_t *payload(sop *s) { return s->slot + 2 * HDR; }

/* Queue a slot for progress, once: a slot still queued (or still on the
 * pass that is stepping it) is stepped in its newest state. */
static void activate(sop *s)
{
    xr_stage *st = s->st;
    pthread_mutex_lock(&st->lock);
    if (!xr__list_linked(&s->link))
        xr__list_push_back(&st->active, &s->link);
    pthread_mutex_unlock(&st->lock);
}

/* `final`: the error is an answer, the peer's or a device copy's, that
 * another rail would get too; a fabric error is worth another rail. */
static void fail(sop *s, int err, bool final, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(sop *s, int err, bool final, const char *fmt, ...)
{
    if (s->err)
        return; /* the first cause is the one worth reporting */
    s->err = err;
    s->final = final;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
}

static void tx_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why);
static void rx_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why);
static void rx_alt_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why);

/* ---- pools ---- */

static void pool_free(pool *p)
{
    for (unsigned i = 0; i < XR_MAX_RAILS; i++)
        if (p->mr[i])
            fi_close(&p->mr[i]->fid);
    for (unsigned k = 0; p->ops && k < p->n; k++)
        xr__cuda_copy_fini(&p->ops[k].copy);
    free(p->ops);
    if (p->arena)
        xr__cuda_host_free(p->arena, p->pinned);
    memset(p, 0, sizeof *p);
}

/* A whole pool or none: on failure nothing of it is left (and nothing of
 * it was posted). */
static int pool_make(xr_stage *st, pool *p, unsigned n, bool target)
{
    xr_engine *e = st->e;
    int rc = 0;
    p->arena = xr__cuda_host_alloc(st->stride * n, &p->pinned);
    p->ops = calloc(n, sizeof *p->ops);
    if (!p->arena || !p->ops)
        rc = xr__error_set(XR_ENOMEM, "staging: %u slots of %zu bytes", n, st->stride);
    else
        p->n = n;
    for (unsigned i = 0; !rc && i < e->nrails; i++) {
        xr_rail *r = &e->rails[i];
        pthread_mutex_lock(&r->lock);
        rc = xr__rail_mr_reg(r, p->arena, st->stride * n, XR_FI_LOCAL_ACCESS,
                             xr__engine_key(e), XR_MEM_HOST, -1, &p->mr[i]);
        pthread_mutex_unlock(&r->lock);
        if (!rc)
            p->desc[i] = fi_mr_desc(p->mr[i]);
    }
    for (unsigned k = 0; !rc && k < n; k++) {
        sop *s = &p->ops[k];
        s->st = st;
        s->index = k;
        s->target = target;
        s->slot = p->arena + (size_t)k * st->stride;
        s->tx = (xr_opctx){.done = tx_done};
        /* An initiator's response receive is an answer owed: it waits on
         * the rail's list of sends and RMA, under their deadline, not among
         * the receives that may wait forever (post_initiator sets its flags). */
        s->rx = (xr_opctx){.done = rx_done, .flags = target ? XR_OPF_RX : 0};
        s->rx_alt = (xr_opctx){.done = rx_alt_done, .flags = s->rx.flags};
        s->rxc = &s->rx;
        xr__list_init(&s->link);
        if (xr__cuda_copy_init(&s->copy))
            rc = xr__error_set(XR_EIO, "staging: CUDA event: %s", xr__cuda_last_error());
    }
    if (rc)
        pool_free(p);
    return rc;
}

int xr__stage_init(xr_engine *e)
{
    xr_stage *st = calloc(1, sizeof *st);
    if (!st)
        return xr__error_set(XR_ENOMEM, "staging: out of memory");
    st->e = e;
    st->chunk = e->opts.stage.chunk;
    st->stride = (2 * HDR + st->chunk + 4095) & ~(size_t)4095;
    pthread_mutex_init(&st->lock, NULL);
    xr__list_init(&st->free);
    xr__list_init(&st->active);
    xr__list_init(&st->known);
    e->stage = st;
    return 0;
}

void xr__stage_rail_close(xr_engine *e, xr_rail *r)
{
    xr_stage *st = e->stage;
    if (!st)
        return;
    pool *ps[2] = {&st->out, &st->in};
    for (int k = 0; k < 2; k++)
        if (ps[k]->mr[r->index]) {
            fi_close(&ps[k]->mr[r->index]->fid);
            ps[k]->mr[r->index] = NULL;
        }
}

void xr__stage_fini(xr_engine *e)
{
    xr_stage *st = e->stage;
    if (!st)
        return;
    pool_free(&st->out);
    pool_free(&st->in);
    xr__list_each(n, &st->known) {
        xr__list_remove(n);
        free(xr__list_entry(n, known_addr, link));
    }
    pthread_mutex_destroy(&st->lock);
    free(st);
    e->stage = NULL;
}

/* Rail lock held. */
static int post_rx(sop *s)
{
    xr_stage *st = s->st;
    unsigned i = s->r->index;
    if (!s->r->ep)
        return -FI_ENOTCONN; /* a reset could not reopen it */
    ssize_t rc = fi_trecv(s->r->ep, hdr_b(s), HDR + st->chunk, st->in.desc[i], FI_ADDR_UNSPEC,
                          TAG_REQ, 0, &s->rxc->fctx);
    if (!rc) {
        s->state = S_POSTED;
        xr__rail_held(s->r, s->rxc, FI_ADDR_UNSPEC);
    }
    return (int)rc;
}

int xr__stage_need(xr_engine *e, bool target)
{
    xr_stage *st = e->stage;
    if (!st->out.ops) {
        int rc = pool_make(st, &st->out, e->opts.stage.slots, false);
        if (rc)
            return rc;
        for (unsigned k = 0; k < st->out.n; k++)
            xr__list_push_back(&st->free, &st->out.ops[k].link);
        st->rail_cap = st->out.n - st->out.n / 4;
        xr__log_write(&e->log, XR_LOG_INFO, "staging: %u slots of %zu bytes for this engine's "
                                            "transfers", st->out.n, st->chunk);
    }
    if (!target || st->in.ops)
        return 0;
    /* Receive slots exist once this engine publishes a staged region: only
     * then can a peer's request arrive. */
    unsigned per = e->opts.stage.rx_slots;
    int rc = pool_make(st, &st->in, per * e->nrails, true);
    if (rc)
        return rc;
    /* The pool is whole: a receive that cannot be posted now is retried
     * from progress, never left half-made. */
    for (unsigned k = 0; k < st->in.n; k++) {
        sop *s = &st->in.ops[k];
        s->r = &e->rails[k / per];
        pthread_mutex_lock(&s->r->lock);
        int prc = post_rx(s);
        pthread_mutex_unlock(&s->r->lock);
        if (prc) {
            if (prc != -FI_EAGAIN)
                xr__log_write(&e->log, XR_LOG_WARN, "staging: rail %u: posting a receive slot "
                                                    "failed: %s; retrying", s->r->index,
                              fi_strerror(-prc));
            s->state = S_REPOST;
            activate(s);
        }
    }
    xr__log_write(&e->log, XR_LOG_INFO, "staging: %u receive slots on each of %u rails", per,
                  e->nrails);
    return 0;
}

/* ---- the initiator ---- */

/* Post what a chunk needs on its rail: the RMA from or to the slot, or the
 * response receive and the request. Rail lock held; -FI_EAGAIN: again later. */
static int post_initiator(sop *s)
{
    xr_stage *st = s->st;
    const xr_stage_req *q = &s->req;
    xr_rail *r = s->r;
    void *desc = st->out.desc[r->index];
    if (!r->ep)
        return -FI_ENOTCONN; /* a reset could not reopen it */
    if (!q->remote) {
        s->tx.flags = 0;
        int rc = xr__rail_rma(r, q->write, payload(s), q->len, desc, q->dst, q->raddr, q->key,
                              &s->tx);
        if (!rc)
            s->pend = 1;
        return rc;
    }
    if (!s->rx_posted) {
        /* A response that carries bytes is read by rxm itself (its
         * rendezvous): for a reset it counts as an RMA READ. */
        s->rxc->flags = (uint8_t)(q->write ? XR_OPF_CANCEL : XR_OPF_CANCEL | XR_OPF_READ);
        ssize_t rc = fi_trecv(r->ep, hdr_b(s), HDR + (q->write ? 0 : q->len), desc, q->dst,
                              TAG_RSP | s->cookie, 0, &s->rxc->fctx);
        if (rc)
            return (int)rc;
        xr__rail_held(r, s->rxc, q->dst);
        s->rx_posted = true;
        s->pend++;
    }
    /* The request's send completes once tcp has copied it: the response,
     * not the send, is what shows the rail reaches the peer. */
    s->tx.flags = XR_OPF_QUIET;
    xr_stage_hdr h = {.op = q->write ? XR_OP_WRITE : XR_OP_READ, .cookie = s->cookie,
                      .addr = q->raddr, .len = q->len, .srclen = (uint32_t)r->addrlen};
    memcpy(h.src, r->addr, r->addrlen);
    xr__stage_wire_put(hdr_a(s), &h, true);
    ssize_t rc;
    if (q->write) {
        struct iovec iov[2] = {{hdr_a(s), HDR}, {payload(s), q->len}};
        void *d[2] = {desc, desc};
        rc = fi_tsendv(r->ep, iov, d, 2, q->dst, TAG_REQ, &s->tx.fctx);
    } else {
        rc = fi_tsend(r->ep, hdr_a(s), HDR, desc, q->dst, TAG_REQ, &s->tx.fctx);
    }
    if (!rc) {
        xr__rail_held(r, &s->tx, q->dst);
        s->pend++;
    }
    return (int)rc;
}

/* Rail lock held: a posted receive that will never match is taken back. */
static void cancel_rx(sop *s)
{
    if (s->rx_posted && s->pend && s->r->ep)
        fi_cancel(&s->r->ep->fid, &s->rxc->fctx);
}

static void send_step(sop *s)
{
    xr_rail *r = s->r;
    pthread_mutex_lock(&r->lock);
    /* The state changes under the rail lock: a completion on another
     * thread's progress may follow the post at once. */
    int rc = post_initiator(s);
    const xr_stage_req *q = &s->req;
    /* A probe (no transfer) is refused once: its rail sends the next later. */
    int gave_up = rc != -FI_EAGAIN ? 0 : q->failed ? atomic_load(q->failed) : XR_EAGAIN;
    if (rc == -FI_EAGAIN && q->remote)
        r->ctr.eagain++; /* xr__rail_rma counts its own */
    if (!rc) {
        s->state = S_WAIT;
        if (q->pushed_back)
            xr__rail_accepted(q->pushed_back);
    } else if (rc == -FI_EAGAIN && !gave_up) {
        /* Retried on the next pass; until then the peer's deadline runs,
         * as it does for a refused chunk of memory the rail reaches. */
        xr__rail_refused(q->pushed_back);
        activate(s);
    } else {
        if (gave_up) /* an answer: nothing is posted for a transfer that failed */
            fail(s, gave_up, true, "rail %u (%s): the provider refused a staged %s of %zu bytes%s",
                 r->index, r->provider, q->write ? "write" : "read", q->len,
                 q->failed ? " until its transfer failed" : " (a probe: the next is sent later)");
        else
            fail(s, XR_EIO, false, "rail %u (%s): posting a staged %s of %zu bytes failed: %s",
                 r->index, r->provider, q->write ? "write" : "read", q->len, fi_strerror(-rc));
        if (s->pend) {
            cancel_rx(s); /* the chunk ends when the receive comes back canceled */
            s->state = S_WAIT;
        } else {
            s->state = S_AFTER;
            activate(s);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

int xr__stage_start(xr_engine *e, xr_rail *r, const xr_stage_req *req)
{
    xr_stage *st = e->stage;
    pthread_mutex_lock(&st->lock);
    xr_list *n = st->held[r->index] < st->rail_cap ? xr__list_pop_front(&st->free) : NULL;
    sop *s = n ? xr__list_entry(n, sop, link) : NULL;
    if (s) {
        s->cookie = ((++st->gen << 16) | s->index) & COOKIE_MASK;
        st->held[r->index]++;
    }
    pthread_mutex_unlock(&st->lock);
    if (!s)
        return XR_EAGAIN; /* every slot, or this rail's share, is busy: posted when one frees */
    s->req = *req;
    s->r = r;
    s->err = 0;
    s->final = false;
    s->why[0] = 0;
    s->pend = 0;
    s->rx_posted = false;
    s->state = S_SEND;
    if (req->write) {
        if (xr__cuda_copy_start(&s->copy, payload(s), req->buf, req->len, req->device,
                                req->gpu)) {
            fail(s, XR_EIO, true, "staging: copy of %zu bytes from device %d failed: %s", req->len,
                 req->device, xr__cuda_last_error());
            s->state = S_DONE;
        } else if (s->copy.busy) {
            s->state = S_COPY_IN;
        }
    }
    /* Progress posts it: the rail lock is held here, and progress is the
     * one place that posts for staged chunks. */
    activate(s);
    return 0;
}

/* A fabric operation of an initiator slot finished. Rail lock held. */
static void initiator_done(sop *s, bool is_rx, size_t len, int err, const char *why)
{
    const xr_stage_req *q = &s->req;
    s->pend--;
    if (err) {
        fail(s, err, false, "%s", why ? why : xr_strerror(err));
        if (!is_rx)
            cancel_rx(s);
    } else if (is_rx) {
        xr_stage_hdr h;
        const char *bad;
        size_t want = HDR + (q->write ? 0 : q->len);
        if (xr__stage_wire_response(hdr_b(s), len, s->cookie, want, &h, &bad))
            fail(s, XR_EIO, false, "peer '%s': %s (%zu bytes, expected %zu)", q->peer, bad, len,
                 want);
        else if (h.status)
            fail(s, h.status, true, "peer '%s': %s", q->peer, h.why);
    }
    if (!s->pend) {
        s->state = S_AFTER;
        activate(s);
    }
}

/* Progress: one step of an initiator slot; true if it needs more. */
static bool initiator_step(sop *s)
{
    const xr_stage_req *q = &s->req;
    int p;
    switch (s->state) {
    case S_COPY_IN:
        p = xr__cuda_copy_poll(&s->copy);
        if (!p)
            return true;
        if (p < 0) {
            fail(s, XR_EIO, true, "staging: copy from device %d failed: %s", q->device,
                 xr__cuda_last_error());
            s->state = S_DONE;
            return initiator_step(s);
        }
        s->state = S_SEND;
        /* fall through */
    case S_SEND:
        send_step(s);
        return false;
    case S_AFTER:
        if (!s->err && !q->write) {
            if (xr__cuda_copy_start(&s->copy, q->buf, payload(s), q->len, q->device, q->gpu))
                fail(s, XR_EIO, true, "staging: copy of %zu bytes to device %d failed: %s", q->len,
                     q->device, xr__cuda_last_error());
            else if (s->copy.busy)
                return s->state = S_COPY_OUT, true;
        }
        s->state = S_DONE;
        return initiator_step(s);
    case S_COPY_OUT:
        p = xr__cuda_copy_poll(&s->copy);
        if (!p)
            return true;
        if (p < 0)
            fail(s, XR_EIO, true, "staging: copy to device %d failed: %s", q->device,
                 xr__cuda_last_error());
        s->state = S_DONE;
        /* fall through */
    case S_DONE: {
        /* The slot is free before the chunk ends: its owner may post again. */
        xr_stage *st = s->st;
        xr_rail *r = s->r;
        xr_opctx *done = q->done;
        int err = s->err;
        char why[sizeof s->why];
        memcpy(why, s->why, sizeof why);
        if (err && s->final)
            done->flags |= XR_OPF_FINAL; /* the chunk is not failed over */
        s->state = S_IDLE;
        pthread_mutex_lock(&st->lock);
        xr__list_push_back(&st->free, &s->link);
        st->held[r->index]--;
        pthread_mutex_unlock(&st->lock);
        xr__rail_complete(r, done, err, err ? why : NULL);
        return false;
    }
    default:
        return false;
    }
}

/* ---- the target ---- */

/* The initiator's address on rail r, inserted once. */
static int reply_addr(sop *s, const xr_stage_hdr *h, fi_addr_t *out)
{
    xr_stage *st = s->st;
    unsigned i = s->r->index;
    pthread_mutex_lock(&st->lock);
    xr__list_each(n, &st->known) {
        known_addr *k = xr__list_entry(n, known_addr, link);
        if (k->rail == i && k->len == h->srclen && !memcmp(k->addr, h->src, k->len)) {
            *out = k->fa;
            pthread_mutex_unlock(&st->lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&st->lock);
    known_addr *k = calloc(1, sizeof *k);
    if (!k)
        return XR_ENOMEM;
    k->rail = i;
    k->len = h->srclen;
    memcpy(k->addr, h->src, k->len);
    pthread_mutex_lock(&s->r->lock);
    int n = fi_av_insert(s->r->av, k->addr, 1, &k->fa, 0, NULL);
    pthread_mutex_unlock(&s->r->lock);
    if (n != 1) {
        free(k);
        return XR_EFABRIC;
    }
    pthread_mutex_lock(&st->lock);
    xr__list_push_back(&st->known, &k->link);
    pthread_mutex_unlock(&st->lock);
    *out = k->fa;
    return 0;
}

static void respond(sop *s, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void respond(sop *s, int status, const char *fmt, ...)
{
    s->h.status = status;
    s->h.why[0] = 0;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->h.why, sizeof s->h.why, fmt, ap);
        va_end(ap);
        xr__log_write(&s->st->e->log, XR_LOG_WARN, "staging: refused a request: %s", s->h.why);
    }
    s->state = S_RESPOND;
}

/* A request arrived in slot s: check it against this engine's staged
 * regions and start its copy. */
static void target_received(sop *s)
{
    xr_stage *st = s->st;
    xr_engine *e = st->e;
    xr_stage_hdr *h = &s->h;
    const char *bad;
    int verdict = xr__stage_wire_request(hdr_b(s), s->rxlen, st->chunk, h, &bad);
    if (verdict == XR_STAGE_REQ_DROP) {
        /* Nobody to answer: drop it and take the next. */
        xr__log_write(&e->log, XR_LOG_WARN, "staging: rail %u: dropped a request of %zu bytes: "
                                            "%s", s->r->index, s->rxlen, bad);
        s->state = S_REPOST;
        return;
    }
    if (reply_addr(s, h, &s->reply)) {
        xr__log_write(&e->log, XR_LOG_WARN, "staging: rail %u: the requester's address was "
                                            "refused", s->r->index);
        s->state = S_REPOST;
        return;
    }
    if (verdict == XR_STAGE_REQ_REFUSE) { /* a refusal carries no payload */
        respond(s, XR_EINVAL, "%s: op %u, %llu bytes in %zu", bad, h->op,
                (unsigned long long)h->len, s->rxlen);
        return;
    }
    bool write = h->op == XR_OP_WRITE;
    pthread_mutex_lock(&e->lock);
    xr_region *g = xr__region_find_staged(e, h->addr, h->len,
                                          write ? XR_ACCESS_WRITE : XR_ACCESS_READ);
    int dev = g ? g->device : -1;
    bool gpu = g && g->kind == XR_MEM_CUDA;
    pthread_mutex_unlock(&e->lock);
    if (!g) {
        respond(s, XR_ERANGE, "engine '%s': [0x%llx, +%llu) is in no staged region that grants "
                              "remote %s",
                e->name, (unsigned long long)h->addr, (unsigned long long)h->len,
                write ? "write" : "read");
        return;
    }
    void *mem = (void *)(uintptr_t)h->addr;
    int rc = write ? xr__cuda_copy_start(&s->copy, mem, payload(s), h->len, dev, gpu)
                   : xr__cuda_copy_start(&s->copy, payload(s), mem, h->len, dev, gpu);
    if (rc) {
        respond(s, XR_EIO, "engine '%s': copy of %llu bytes %s device %d failed: %s", e->name,
                (unsigned long long)h->len, write ? "to" : "from", dev, xr__cuda_last_error());
        return;
    }
    s->state = S_COPY;
}

static bool target_step(sop *s)
{
    int p, rc;
    switch (s->state) {
    case S_RECEIVED:
        target_received(s);
        return target_step(s);
    case S_COPY:
        p = xr__cuda_copy_poll(&s->copy);
        if (!p)
            return true;
        if (p < 0)
            respond(s, XR_EIO, "engine '%s': device copy failed: %s", s->st->e->name,
                    xr__cuda_last_error());
        else
            respond(s, 0, NULL);
        return target_step(s);
    case S_RESPOND: {
        xr_stage_hdr *h = &s->h;
        size_t n = HDR + (h->op == XR_OP_READ && !h->status ? h->len : 0);
        xr__stage_wire_put(hdr_b(s), h, false);
        pthread_mutex_lock(&s->r->lock);
        rc = !s->r->ep ? -FI_ENOTCONN
                       : (int)fi_tsend(s->r->ep, hdr_b(s), n, s->st->in.desc[s->r->index],
                                       s->reply, TAG_RSP | (h->cookie & COOKIE_MASK), &s->tx.fctx);
        if (!rc) {
            xr__rail_held(s->r, &s->tx, s->reply);
            /* Under the rail lock: its completion may come at once. */
            s->state = S_RESPONDING;
            if (!h->status)
                s->r->ctr.staged_served++;
        }
        pthread_mutex_unlock(&s->r->lock);
        if (rc == -FI_EAGAIN)
            return true;
        if (rc) {
            xr__log_write(&s->st->e->log, XR_LOG_WARN, "staging: rail %u: response failed: %s",
                          s->r->index, fi_strerror(-rc));
            s->state = S_REPOST;
            return target_step(s);
        }
        return false;
    }
    case S_REPOST:
        pthread_mutex_lock(&s->r->lock);
        rc = post_rx(s);
        pthread_mutex_unlock(&s->r->lock);
        if (rc && rc != -FI_EAGAIN)
            xr__log_write(&s->st->e->log, XR_LOG_WARN, "staging: rail %u: re-posting a receive "
                                                       "slot failed: %s", s->r->index,
                          fi_strerror(-rc));
        return rc == -FI_EAGAIN;
    default:
        return false;
    }
}

/* ---- completions (rail lock held) and progress ---- */

static void tx_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why)
{
    (void)len;
    sop *s = SOP_OF(ctx, tx);
    if (!s->target) {
        initiator_done(s, false, 0, err, why);
        return;
    }
    if (err)
        xr__log_write(&s->st->e->log, XR_LOG_WARN, "staging: rail %u: a response was lost: %s",
                      r->index, why ? why : xr_strerror(err));
    /* The slot takes the next request; rail lock held, so post it here. */
    if (post_rx(s)) {
        s->state = S_REPOST;
        activate(s);
    }
}

static void rx_finish(sop *s, xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why)
{
    if (ctx != s->rxc) {
        xr__log_write(&s->st->e->log, XR_LOG_INFO, "staging: rail %u: slot %u: a late "
                                                   "completion of a receive that had failed "
                                                   "(ignored)", r->index, s->index);
        return;
    }
    if (err && err != XR_ECANCELED)
        s->rxc = s->rxc == &s->rx ? &s->rx_alt : &s->rx;
    if (!s->target) {
        initiator_done(s, true, len, err, why);
        return;
    }
    if (s->state != S_POSTED) {
        /* Seen with libfabric 1.17's rxm after a connection reset: a
         * receive it failed completes again. The request it held may be
         * lost; its sender's deadline covers that. */
        xr__log_write(&s->st->e->log, XR_LOG_WARN, "staging: rail %u: receive slot %u completed "
                                                   "twice: %s", r->index, s->index,
                      err ? (why ? why : xr_strerror(err)) : "a request may be lost");
    }
    if (err == XR_ECANCELED) {
        /* A reset: the slot waits for requests on the new endpoint. (A
         * closing endpoint completes nothing; only a reset cancels.) */
        s->state = S_REPOST;
        activate(s);
        return;
    }
    if (err) {
        xr__log_write(&s->st->e->log, XR_LOG_WARN, "staging: rail %u: a request failed to "
                                                   "arrive: %s", r->index,
                      why ? why : xr_strerror(err));
        s->state = S_REPOST;
    } else {
        s->rxlen = len;
        s->state = S_RECEIVED;
    }
    activate(s);
}

static void rx_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why)
{
    rx_finish(SOP_OF(ctx, rx), ctx, r, len, err, why);
}

static void rx_alt_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why)
{
    rx_finish(SOP_OF(ctx, rx_alt), ctx, r, len, err, why);
}

unsigned xr__stage_held(xr_engine *e, unsigned rail)
{
    xr_stage *st = e->stage;
    if (!st)
        return 0;
    pthread_mutex_lock(&st->lock);
    unsigned n = st->held[rail];
    pthread_mutex_unlock(&st->lock);
    return n;
}

bool xr__stage_active(xr_engine *e)
{
    xr_stage *st = e->stage;
    return st && __atomic_load_n(&st->active.next, __ATOMIC_ACQUIRE) != &st->active;
}

int xr__stage_progress(xr_engine *e)
{
    xr_stage *st = e->stage;
    /* A relaxed look first: progress runs all the time, staging rarely. */
    if (!st || __atomic_load_n(&st->active.next, __ATOMIC_RELAXED) == &st->active)
        return 0;
    xr_list list;
    xr__list_init(&list);
    pthread_mutex_lock(&st->lock);
    xr__list_splice(&list, &st->active);
    pthread_mutex_unlock(&st->lock);
    int n = 0;
    for (;;) {
        /* Popped under the lock: a completion on another thread may
         * activate a slot still on this pass's list. */
        pthread_mutex_lock(&st->lock);
        xr_list *l = xr__list_pop_front(&list);
        pthread_mutex_unlock(&st->lock);
        if (!l)
            break;
        sop *s = xr__list_entry(l, sop, link);
        bool again = s->target ? target_step(s) : initiator_step(s);
        if (again)
            activate(s);
        else
            n++;
    }
    return n;
}
