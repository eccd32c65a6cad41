/*
 * notif.c - notifications of any length.
 *
 * A notification is framed: each frame carries a 40-byte header (sender
 * instance, message sequence, total length, offset) and up to
 * FRAME_SIZE - 40 bytes of the message, which starts with the sender's name.
 * Frames come from a fixed pool of registered buffers per rail, so a 1 MiB
 * notification, or a 32-rail metadata blob, costs no allocation per frame
 * and never meets a provider's message size limit: nothing is truncated,
 * which is the failure this design exists to avoid (NIXL's 1 KiB cap).
 *
 * A transfer's notification is submitted only after every chunk completed,
 * and chunks complete with FI_DELIVERY_COMPLETE where the provider offers
 * it, so the target sees the notification after the bytes.
 */
#include "bytes.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_SIZE 8192
#define FRAME_HDR 40
#define NRX 16
#define NTX 16
#define FRAME_MAGIC 0x464E5258u /* "XRNF" */

typedef struct frame {
    xr_opctx ctx;
    uint8_t *buf;
    xr_notif_msg *msg;
    struct frame *next;
} frame;

struct xr_notif_rail {
    uint8_t *arena;
    size_t frame_size;
    struct fid_mr *mr;
    void *desc;
    frame rx[NRX];
    frame tx[NTX];
    frame *free_tx;
    xr_notif_msg *q_head, *q_tail;
};

struct xr_notif_msg {
    xr_notif_msg *next;                /* rail queue */
    xr_notif_msg *live_next, *live_prev; /* standalone messages */
    xr_engine *e;
    xr_peer *peer;
    xr_xfer *owner;                    /* NULL: standalone */
    xr_rail *rail;
    fi_addr_t dst;
    uint64_t seq;
    uint8_t *data;                     /* name length u16 | name | body */
    size_t len, sent;
    unsigned inflight;
    bool queued;
    int err;
};

typedef struct reasm {
    struct reasm *next;
    uint64_t instance, seq;
    size_t total, got;
    uint8_t *data;
} reasm;

typedef struct ready {
    struct ready *next;
    uint8_t *data;
    size_t len;
} ready;

struct xr_notif_engine {
    pthread_mutex_t lock;
    atomic_uint_fast64_t seq;
    reasm *partial;
    ready *head, *tail;
    xr_notif_msg *live;                /* standalone messages not yet reaped */
    xr_notif_msg *reap;                /* finished standalone messages */
};

int xr__notif_init(xr_engine *e)
{
    e->notif = calloc(1, sizeof *e->notif);
    if (!e->notif)
        return xr__fail(XR_ENOMEM, "notif: out of memory");
    pthread_mutex_init(&e->notif->lock, NULL);
    return 0;
}

void xr__notif_fini(xr_engine *e)
{
    xr_notif_engine *n = e->notif;
    if (!n)
        return;
    while (n->partial) {
        reasm *p = n->partial;
        n->partial = p->next;
        free(p->data);
        free(p);
    }
    while (n->head) {
        ready *r = n->head;
        n->head = r->next;
        free(r->data);
        free(r);
    }
    for (xr_notif_msg *m = n->live, *next; m; m = next) {
        next = m->live_next;
        xr__notif_msg_free(m);
    }
    for (xr_notif_msg *m = n->reap, *next; m; m = next) {
        next = m->next;
        xr__notif_msg_free(m);
    }
    pthread_mutex_destroy(&n->lock);
    free(n);
    e->notif = NULL;
}

static void rx_post(xr_rail *r, frame *f)
{
    ssize_t rc = fi_recv(r->ep, f->buf, r->notif->frame_size, r->notif->desc, FI_ADDR_UNSPEC,
                         &f->ctx.fctx);
    if (rc)
        xr__log(r->e, XR_LOG_ERROR, "rail %u: posting a notification receive failed: %s",
                r->index, fi_strerror((int)-rc));
}

int xr__notif_rail_init(xr_rail *r)
{
    xr_notif_rail *nr = calloc(1, sizeof *nr);
    if (!nr)
        return xr__fail(XR_ENOMEM, "rail %u: notification frames", r->index);
    r->notif = nr;
    nr->frame_size = FRAME_SIZE < r->max_msg ? FRAME_SIZE : r->max_msg;
    if (nr->frame_size <= FRAME_HDR)
        return xr__fail(XR_ENOTSUP, "rail %u (%s): max message size %zu cannot carry a "
                                    "notification frame", r->index, r->provider, r->max_msg);
    size_t bytes = (NRX + NTX) * nr->frame_size;
    nr->arena = aligned_alloc(4096, bytes);
    if (!nr->arena)
        return xr__fail(XR_ENOMEM, "rail %u: %zu bytes of notification frames", r->index, bytes);
    int rc = xr__rail_mr_reg(r, nr->arena, bytes, FI_SEND | FI_RECV | FI_READ | FI_WRITE,
                             ++r->e->next_key, XR_MEM_HOST, -1, &nr->mr);
    if (rc)
        return rc;
    nr->desc = fi_mr_desc(nr->mr);
    for (int i = 0; i < NTX; i++) {
        frame *f = &nr->tx[i];
        f->ctx.kind = XR_CTX_NOTIF_TX;
        f->buf = nr->arena + (size_t)(NRX + i) * nr->frame_size;
        f->next = nr->free_tx;
        nr->free_tx = f;
    }
    for (int i = 0; i < NRX; i++) {
        frame *f = &nr->rx[i];
        f->ctx.kind = XR_CTX_NOTIF_RX;
        f->buf = nr->arena + (size_t)i * nr->frame_size;
        rx_post(r, f);
    }
    return 0;
}

void xr__notif_rail_fini(xr_rail *r)
{
    xr_notif_rail *nr = r->notif;
    if (!nr)
        return;
    if (nr->mr)
        fi_close(&nr->mr->fid);
    free(nr->arena);
    free(nr);
    r->notif = NULL;
}

int xr__notif_msg_new(xr_engine *e, xr_peer *peer, const void *msg, size_t len, xr_xfer *owner,
                      xr_notif_msg **out)
{
    size_t nlen = strlen(e->name);
    if (e->opts.max_notif && len > e->opts.max_notif)
        return xr__fail(XR_EINVAL, "notif: %zu bytes exceeds the configured maximum of %zu",
                        len, e->opts.max_notif);
    xr_notif_msg *m = calloc(1, sizeof *m);
    uint8_t *data = malloc(2 + nlen + len);
    if (!m || !data) {
        free(m);
        free(data);
        return xr__fail(XR_ENOMEM, "notif: %zu bytes", len);
    }
    xr__put_le(data, nlen, 2);
    memcpy(data + 2, e->name, nlen);
    if (len)
        memcpy(data + 2 + nlen, msg, len);
    m->e = e;
    m->peer = peer;
    m->owner = owner;
    m->data = data;
    m->len = 2 + nlen + len;
    *out = m;
    return 0;
}

void xr__notif_msg_free(xr_notif_msg *m)
{
    if (m) {
        free(m->data);
        free(m);
    }
}

/* A message is finished when every byte went into a frame (or it failed)
 * and no frame of it is still with the provider. Rail lock held. */
static void msg_finish(xr_notif_msg *m)
{
    if (m->owner) {
        xr__xfer_notif_done(m->owner, m->err,
                            m->err ? "a frame failed on the rail; see the engine log" : NULL);
        return;
    }
    xr_notif_engine *n = m->e->notif;
    pthread_mutex_lock(&n->lock);
    if (m->live_prev)
        m->live_prev->live_next = m->live_next;
    else
        n->live = m->live_next;
    if (m->live_next)
        m->live_next->live_prev = m->live_prev;
    m->next = n->reap;
    n->reap = m;
    pthread_mutex_unlock(&n->lock);
}

static void q_pop(xr_notif_rail *nr)
{
    xr_notif_msg *m = nr->q_head;
    nr->q_head = m->next;
    if (!nr->q_head)
        nr->q_tail = NULL;
    m->queued = false;
}

void xr__notif_pump(xr_rail *r)
{
    xr_notif_rail *nr = r->notif;
    while (nr->q_head && nr->free_tx) {
        xr_notif_msg *m = nr->q_head;
        if (m->err || m->sent == m->len) {
            q_pop(nr);
            if (!m->inflight)
                msg_finish(m);
            continue;
        }
        frame *f = nr->free_tx;
        size_t n = m->len - m->sent, room = nr->frame_size - FRAME_HDR;
        if (n > room)
            n = room;
        xr__put_le(f->buf, FRAME_MAGIC, 4);
        xr__put_le(f->buf + 4, 0, 4);
        xr__put_le(f->buf + 8, m->e->instance, 8);
        xr__put_le(f->buf + 16, m->seq, 8);
        xr__put_le(f->buf + 24, m->len, 8);
        xr__put_le(f->buf + 32, m->sent, 8);
        memcpy(f->buf + FRAME_HDR, m->data + m->sent, n);
        ssize_t rc = fi_send(r->ep, f->buf, FRAME_HDR + n, nr->desc, m->dst, &f->ctx.fctx);
        if (rc == -FI_EAGAIN) {
            r->ctr.eagain++;
            return;
        }
        if (rc) {
            xr__log(r->e, XR_LOG_WARN, "rail %u: sending a notification frame failed: %s",
                    r->index, fi_strerror((int)-rc));
            m->err = XR_EIO;
            continue;
        }
        nr->free_tx = f->next;
        f->msg = m;
        m->inflight++;
        m->sent += n;
        r->ctr.notif_tx++;
    }
}

void xr__notif_tx_done(xr_rail *r, xr_opctx *ctx, int err)
{
    frame *f = (frame *)ctx;
    xr_notif_msg *m = f->msg;
    f->msg = NULL;
    f->next = r->notif->free_tx;
    r->notif->free_tx = f;
    m->inflight--;
    if (err && !m->err)
        m->err = err;
    if (!m->queued && !m->inflight)
        msg_finish(m);
}

static void deliver(xr_engine *e, uint8_t *data, size_t len)
{
    size_t nlen = xr__get_le(data, 2);
    if (nlen > len - 2) {
        xr__log(e, XR_LOG_WARN, "notif: dropped a message whose name length %zu exceeds its "
                                "%zu bytes", nlen, len);
        free(data);
        return;
    }
    ready *r = malloc(sizeof *r);
    if (!r) {
        xr__log(e, XR_LOG_ERROR, "notif: out of memory; a %zu-byte message was dropped", len);
        free(data);
        return;
    }
    r->next = NULL;
    r->data = data;
    r->len = len;
    xr_notif_engine *n = e->notif;
    if (n->tail)
        n->tail->next = r;
    else
        n->head = r;
    n->tail = r;
}

/* Place one frame; notif lock held. Returns a message to log, or NULL. */
static const char *reassemble(xr_engine *e, const uint8_t *b, size_t flen)
{
    xr_notif_engine *n = e->notif;
    if (flen < FRAME_HDR || xr__get_le(b, 4) != FRAME_MAGIC)
        return "a frame without the xrail header";
    uint64_t inst = xr__get_le(b + 8, 8), seq = xr__get_le(b + 16, 8);
    size_t total = xr__get_le(b + 24, 8), off = xr__get_le(b + 32, 8), plen = flen - FRAME_HDR;
    if (total < 2 || (e->opts.max_notif && total > e->opts.max_notif + 2 + 4096) ||
        off > total || plen > total - off)
        return "a frame whose lengths do not add up";
    reasm **pp = &n->partial, *p;
    for (p = *pp; p && !(p->instance == inst && p->seq == seq); pp = &p->next, p = *pp)
        ;
    if (!p) {
        if (off == 0 && plen == total) { /* one-frame message: no reassembly */
            uint8_t *d = malloc(total);
            if (!d)
                return "out of memory";
            memcpy(d, b + FRAME_HDR, total);
            deliver(e, d, total);
            return NULL;
        }
        p = calloc(1, sizeof *p);
        if (!p || !(p->data = malloc(total))) {
            free(p);
            return "out of memory";
        }
        p->instance = inst;
        p->seq = seq;
        p->total = total;
        p->next = n->partial;
        n->partial = p;
        pp = &n->partial;
    }
    if (p->total != total)
        return "a frame that disagrees with its message's length";
    memcpy(p->data + off, b + FRAME_HDR, plen);
    p->got += plen;
    if (p->got >= p->total) {
        *pp = p->next;
        deliver(e, p->data, p->total);
        free(p);
    }
    return NULL;
}

void xr__notif_rx_done(xr_rail *r, xr_opctx *ctx, size_t len, int err)
{
    frame *f = (frame *)ctx;
    if (err == XR_ECANCELED)
        return; /* the endpoint is closing */
    if (!err) {
        r->ctr.notif_rx++;
        xr_notif_engine *n = r->e->notif;
        pthread_mutex_lock(&n->lock);
        const char *bad = reassemble(r->e, f->buf, len);
        pthread_mutex_unlock(&n->lock);
        if (bad)
            xr__log(r->e, XR_LOG_WARN, "rail %u: notification dropped: %s", r->index, bad);
    }
    rx_post(r, f);
}

int xr__notif_submit(xr_engine *e, xr_notif_msg *m)
{
    xr_peer *p = m->peer;
    xr_rail *r = NULL;
    /* One rail per peer, the lowest that is up, so that one sender's
     * notifications arrive in the order they were sent. */
    for (unsigned i = 0; i < e->nrails && !r; i++)
        if ((p->mask >> i) & 1 && atomic_load(&e->rails[i].up))
            r = &e->rails[i];
    if (!r)
        return xr__fail(XR_ENORAIL, "notif: no rail that is up reaches peer '%s'", p->name);
    m->rail = r;
    m->dst = p->fi_addr[r->index];
    m->seq = atomic_fetch_add(&e->notif->seq, 1);
    m->sent = 0;
    m->inflight = 0;
    m->err = 0;
    m->next = NULL;
    pthread_mutex_lock(&r->lock);
    m->queued = true;
    if (r->notif->q_tail)
        r->notif->q_tail->next = m;
    else
        r->notif->q_head = m;
    r->notif->q_tail = m;
    xr__notif_pump(r);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

/* Free standalone messages that finished, dropping their peer reference. */
static void reap(xr_engine *e)
{
    xr_notif_engine *n = e->notif;
    pthread_mutex_lock(&n->lock);
    xr_notif_msg *m = n->reap;
    n->reap = NULL;
    pthread_mutex_unlock(&n->lock);
    if (!m)
        return;
    pthread_mutex_lock(&e->lock);
    for (xr_notif_msg *next; m; m = next) {
        next = m->next;
        if (m->err)
            xr__log(e, XR_LOG_WARN, "notif: a %zu-byte notification to '%s' failed", m->len,
                    m->peer->name);
        xr__peer_put(m->peer);
        xr__notif_msg_free(m);
    }
    pthread_mutex_unlock(&e->lock);
}

bool xr__notif_idle(xr_engine *e)
{
    reap(e);
    pthread_mutex_lock(&e->notif->lock);
    bool idle = !e->notif->live;
    pthread_mutex_unlock(&e->notif->lock);
    return idle;
}

int xr_notif_send(xr_engine *e, xr_peer *peer, const void *msg, size_t len)
{
    if (!e || !peer || (!msg && len))
        return xr__fail(XR_EINVAL, "xr_notif_send: NULL argument");
    if (peer->unloaded)
        return xr__fail(XR_ENOENT, "xr_notif_send: peer '%s' was unloaded", peer->name);
    xr_notif_msg *m;
    int rc = xr__notif_msg_new(e, peer, msg, len, NULL, &m);
    if (rc)
        return rc;
    pthread_mutex_lock(&e->lock);
    peer->refs++;
    pthread_mutex_unlock(&e->lock);
    xr_notif_engine *n = e->notif;
    pthread_mutex_lock(&n->lock);
    m->live_next = n->live;
    if (n->live)
        n->live->live_prev = m;
    n->live = m;
    pthread_mutex_unlock(&n->lock);
    rc = xr__notif_submit(e, m);
    if (rc) {
        m->err = rc;
        msg_finish(m);
    }
    reap(e);
    return rc;
}

int xr_notif_get(xr_engine *e, char *peer_name_buf, size_t cap, void *msg_buf, size_t *len)
{
    if (!e || !len)
        return xr__fail(XR_EINVAL, "xr_notif_get: NULL argument");
    xr_notif_engine *n = e->notif;
    if (!e->progress_nthreads) {
        pthread_mutex_lock(&n->lock);
        bool empty = !n->head;
        pthread_mutex_unlock(&n->lock);
        if (empty)
            xr_progress(e);
    }
    pthread_mutex_lock(&n->lock);
    ready *r = n->head;
    if (!r) {
        pthread_mutex_unlock(&n->lock);
        return XR_EAGAIN; /* the common case while polling: no text to set */
    }
    size_t nlen = xr__get_le(r->data, 2), body = r->len - 2 - nlen;
    if ((!msg_buf && body) || *len < body) {
        size_t had = msg_buf ? *len : 0;
        *len = body;
        pthread_mutex_unlock(&n->lock);
        return xr__fail(XR_ETOOSMALL, "xr_notif_get: message of %zu bytes, buffer holds %zu",
                        body, had);
    }
    n->head = r->next;
    if (!n->head)
        n->tail = NULL;
    pthread_mutex_unlock(&n->lock);
    if (peer_name_buf && cap) {
        size_t c = nlen < cap - 1 ? nlen : cap - 1;
        memcpy(peer_name_buf, r->data + 2, c);
        peer_name_buf[c] = 0;
    }
    if (body)
        memcpy(msg_buf, r->data + 2 + nlen, body);
    *len = body;
    free(r->data);
    free(r);
    return 0;
}
