/*
 * notif.c - notifications of any length.
 *
 * A notification is framed (core/frame.c): each frame carries a 40-byte
 * header and up to FRAME_SIZE - 40 bytes of the message, which starts with
 * the sender's name. Frames come from a fixed pool of registered buffers
 * per rail, so a 1 MiB notification, or a 32-rail metadata blob, costs no
 * allocation per frame and never meets a provider's message size limit:
 * nothing is truncated, which is the failure this design exists to avoid
 * (NIXL's 1 KiB cap).
 *
 * A transfer's notification is submitted only after every chunk completed,
 * and chunks complete with FI_DELIVERY_COMPLETE (rail.c refuses a rail
 * without it), so the target sees the notification after the bytes.
 */
#include "notif.h"

#include "core/bytes.h"
#include "core/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_SIZE 8192
#define NRX 16
#define NTX 16

typedef struct nrail nrail;

typedef struct frame {
    xr_opctx ctx;
    nrail *nr;
    uint8_t *buf;
    xr_notif_msg *msg;
    xr_list link;               /* free transmit frames */
} frame;

/* One rail's frames. */
struct nrail {
    xr_engine *e;
    uint8_t *arena;
    size_t frame_size;
    struct fid_mr *mr;
    void *desc;
    frame rx[NRX];
    frame tx[NTX];
    xr_list free_tx;
};

struct xr_notif_msg {
    xr_work work;                   /* on its rail's control lane */
    xr_list live;                   /* standalone: the engine's live, then reap list */
    xr_engine *e;
    xr_peer *peer;
    xr_notif_done_fn done;          /* NULL: standalone */
    void *done_arg;
    nrail *nr;
    fi_addr_t dst;
    uint64_t seq;
    uint8_t *data;                  /* name length u16 | name | body */
    size_t len, sent;
    unsigned inflight;
    bool queued;
    int err;
    unsigned resent;                /* times a reset canceled it and it went again */
    bool hello;                     /* a frame with no message, on one rail (xr_peer_connect) */
    bool seq_sent;                  /* a frame of it has gone (a hello has no bytes to count) */
};

typedef struct ready {
    xr_list link;
    uint8_t *data;
    size_t len;
} ready;

/* notif.c's part of the engine. */
struct xr_notifs {
    pthread_mutex_t lock;           /* reassembly, ready, live, reap */
    atomic_uint_fast64_t seq;
    xr_reasm reasm;
    xr_list ready;                  /* received, in arrival order */
    xr_list live;                   /* standalone messages not yet finished */
    xr_list reap;                   /* finished standalone messages */
    atomic_bool reapable;           /* reap holds some: progress frees them (peers too) */
    nrail *rails[XR_MAX_RAILS];
};

int xr__notif_init(xr_engine *e)
{
    struct xr_notifs *n = calloc(1, sizeof *n);
    if (!n)
        return xr__error_set(XR_ENOMEM, "notif: out of memory");
    pthread_mutex_init(&n->lock, NULL);
    /* Room for the sender's name beside the largest message allowed. */
    xr__frame_reasm_init(&n->reasm, e->opts.max_notif ? e->opts.max_notif + 2 + 4096 : 0);
    xr__list_init(&n->ready);
    xr__list_init(&n->live);
    xr__list_init(&n->reap);
    e->notif = n;
    return 0;
}

void xr__notif_fini(xr_engine *e)
{
    struct xr_notifs *n = e->notif;
    if (!n)
        return;
    xr__frame_reasm_fini(&n->reasm);
    for (xr_list *l; (l = xr__list_pop_front(&n->ready));) {
        ready *r = xr__list_entry(l, ready, link);
        free(r->data);
        free(r);
    }
    xr__list_splice(&n->live, &n->reap);
    for (xr_list *l; (l = xr__list_pop_front(&n->live));)
        xr__notif_msg_free(xr__list_entry(l, xr_notif_msg, live));
    for (unsigned i = 0; i < XR_MAX_RAILS; i++)
        free(n->rails[i]);
    pthread_mutex_destroy(&n->lock);
    free(n);
    e->notif = NULL;
}

/* Rail lock held, or the rail not yet shared. */
static void rx_post(xr_rail *r, frame *f)
{
    if (!r->ep)
        return; /* a reset could not reopen it; the next one posts it */
    ssize_t rc = fi_recv(r->ep, f->buf, f->nr->frame_size, f->nr->desc, FI_ADDR_UNSPEC,
                         &f->ctx.fctx);
    if (!rc)
        xr__rail_held(r, &f->ctx, FI_ADDR_UNSPEC);
    else
        xr__log_write(&f->nr->e->log, XR_LOG_ERROR, "rail %u: posting a notification receive "
                                                    "failed: %s", r->index, fi_strerror((int)-rc));
}

static void tx_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why);
static void rx_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why);

int xr__notif_rail_open(xr_engine *e, xr_rail *r)
{
    nrail *nr = calloc(1, sizeof *nr);
    if (!nr)
        return xr__error_set(XR_ENOMEM, "rail %u: notification frames", r->index);
    e->notif->rails[r->index] = nr;
    nr->e = e;
    xr__list_init(&nr->free_tx);
    nr->frame_size = xr__rail_chunk_cap(r, FRAME_SIZE);
    if (nr->frame_size <= XR_FRAME_HDR)
        return xr__error_set(XR_ENOTSUP, "rail %u (%s): max message size %zu cannot carry a "
                                         "notification frame", r->index, r->provider, r->max_msg);
    size_t bytes = (NRX + NTX) * nr->frame_size;
    nr->arena = aligned_alloc(4096, bytes);
    if (!nr->arena)
        return xr__error_set(XR_ENOMEM, "rail %u: %zu bytes of notification frames", r->index,
                             bytes);
    int rc = xr__rail_mr_reg(r, nr->arena, bytes, XR_FI_LOCAL_ACCESS, xr__engine_key(e),
                             XR_MEM_HOST, -1, &nr->mr);
    if (rc)
        return rc;
    nr->desc = fi_mr_desc(nr->mr);
    for (int i = 0; i < NTX; i++) {
        frame *f = &nr->tx[i];
        f->ctx = (xr_opctx){.done = tx_done};
        f->nr = nr;
        f->buf = nr->arena + (size_t)(NRX + i) * nr->frame_size;
        xr__list_push_back(&nr->free_tx, &f->link);
    }
    for (int i = 0; i < NRX; i++) {
        frame *f = &nr->rx[i];
        f->ctx = (xr_opctx){.done = rx_done, .flags = XR_OPF_RX};
        f->nr = nr;
        f->buf = nr->arena + (size_t)i * nr->frame_size;
        rx_post(r, f);
    }
    return 0;
}

void xr__notif_rail_close(xr_engine *e, xr_rail *r)
{
    nrail *nr = e->notif ? e->notif->rails[r->index] : NULL;
    if (!nr)
        return;
    if (nr->mr)
        fi_close(&nr->mr->fid);
    free(nr->arena);
    free(nr);
    e->notif->rails[r->index] = NULL;
}

static int msg_post(xr_work *w, xr_rail *r);

static void msg_init(xr_notif_msg *m, xr_engine *e, xr_peer *peer, xr_notif_done_fn done,
                     void *arg)
{
    m->work.post = msg_post;
    xr__list_init(&m->work.link);
    xr__list_init(&m->live);
    m->e = e;
    m->peer = peer;
    m->done = done;
    m->done_arg = arg;
}

int xr__notif_msg_new(xr_engine *e, xr_peer *peer, const void *msg, size_t len,
                      xr_notif_done_fn done, void *arg, xr_notif_msg **out)
{
    size_t nlen = strlen(e->name);
    if (e->opts.max_notif && len > e->opts.max_notif)
        return xr__error_set(XR_EINVAL, "notif: %zu bytes exceeds the configured maximum of %zu",
                             len, e->opts.max_notif);
    xr_notif_msg *m = calloc(1, sizeof *m);
    uint8_t *data = malloc(2 + nlen + len);
    if (!m || !data) {
        free(m);
        free(data);
        return xr__error_set(XR_ENOMEM, "notif: %zu bytes", len);
    }
    xr__bytes_put_le(data, nlen, 2);
    memcpy(data + 2, e->name, nlen);
    if (len)
        memcpy(data + 2 + nlen, msg, len);
    msg_init(m, e, peer, done, arg);
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
 * and no frame of it is still with the provider. Called with its rail's
 * lock held, or with none when it could not be submitted. */
static void msg_finish(xr_notif_msg *m)
{
    if (m->hello) /* then reaped as a standalone message: it holds its peer too */
        m->done(m->done_arg, m->err, m->err ? "the hello failed on the rail" : NULL);
    else if (m->done) {
        m->done(m->done_arg, m->err,
                m->err ? "a frame failed on the rail; see the engine log" : NULL);
        return;
    }
    struct xr_notifs *n = m->e->notif;
    pthread_mutex_lock(&n->lock);
    xr__list_remove(&m->live);
    xr__list_push_back(&n->reap, &m->live);
    atomic_store(&n->reapable, true);
    pthread_mutex_unlock(&n->lock);
}

/* Send the message's next frame; its rail's control lane calls this. */
static int msg_post(xr_work *w, xr_rail *r)
{
    xr_notif_msg *m = xr__list_entry(w, xr_notif_msg, work);
    nrail *nr = m->nr;
    if (m->err || (m->sent == m->len && !(m->hello && !m->seq_sent))) {
        m->queued = false;
        if (!m->inflight)
            msg_finish(m);
        return XR_WORK_DONE;
    }
    if (xr__list_empty(&nr->free_tx))
        return XR_WORK_WAIT;
    frame *f = xr__list_entry(nr->free_tx.next, frame, link);
    size_t n = m->len - m->sent, room = nr->frame_size - XR_FRAME_HDR;
    if (n > room)
        n = room;
    xr__frame_hdr_put(f->buf, &(xr_frame_hdr){.instance = m->e->instance, .seq = m->seq,
                                               .total = m->len, .off = m->sent});
    if (n) /* a hello has no bytes, and no buffer */
        memcpy(f->buf + XR_FRAME_HDR, m->data + m->sent, n);
    ssize_t rc = r->ep ? fi_send(r->ep, f->buf, XR_FRAME_HDR + n, nr->desc, m->dst, &f->ctx.fctx)
                       : -FI_ENOTCONN;
    if (rc == -FI_EAGAIN) {
        r->ctr.eagain++;
        return XR_WORK_WAIT;
    }
    if (rc) {
        xr__log_write(&m->e->log, XR_LOG_WARN, "rail %u: sending a notification frame failed: "
                                               "%s", r->index, fi_strerror((int)-rc));
        m->err = XR_EIO;
        return XR_WORK_MORE;
    }
    xr__rail_held(r, &f->ctx, m->dst);
    xr__list_remove(&f->link);
    f->msg = m;
    m->inflight++;
    m->sent += n;
    m->seq_sent = true;
    r->ctr.notif_tx++;
    return XR_WORK_MORE;
}

/* A message a rail reset canceled goes again, whole, under a new sequence
 * number, on the lowest rail up (the reset rail may be down by now). At
 * least once: a frame that arrived before its completion was canceled is
 * delivered twice. */
static void resend(void *arg)
{
    xr_notif_msg *m = arg;
    int rc = xr__notif_submit(m->e, m);
    if (rc) {
        m->err = rc;
        msg_finish(m);
    }
}

static void tx_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why)
{
    (void)len, (void)why;
    frame *f = (frame *)ctx;
    xr_notif_msg *m = f->msg;
    f->msg = NULL;
    xr__list_push_back(&f->nr->free_tx, &f->link);
    m->inflight--;
    if (err && !m->err)
        m->err = err;
    if (m->queued || m->inflight)
        return;
    if (m->err == XR_ECANCELED && !m->hello && m->resent++ < 2)
        xr__rail_after(r, resend, m);
    else
        msg_finish(m);
}

/* A whole message arrived: check its name and queue it. Notif lock held. */
static void deliver(xr_engine *e, uint8_t *data, size_t len)
{
    size_t nlen = len >= 2 ? xr__bytes_get_le(data, 2) : 0;
    if (len < 2 || nlen > len - 2) {
        xr__log_write(&e->log, XR_LOG_WARN, "notif: dropped a message whose name length %zu "
                                            "exceeds its %zu bytes", nlen, len);
        free(data);
        return;
    }
    ready *r = malloc(sizeof *r);
    if (!r) {
        xr__log_write(&e->log, XR_LOG_ERROR, "notif: out of memory; a %zu-byte message was "
                                             "dropped", len);
        free(data);
        return;
    }
    r->data = data;
    r->len = len;
    xr__list_push_back(&e->notif->ready, &r->link);
    xr__engine_signal(e);
}

static void rx_done(xr_opctx *ctx, xr_rail *r, size_t len, int err, const char *why)
{
    (void)why;
    frame *f = (frame *)ctx;
    xr_engine *e = f->nr->e;
    /* A closing endpoint completes nothing; a canceled receive comes from a
     * reset, and is posted again on the new endpoint. */
    if (!err) {
        r->ctr.notif_rx++;
        struct xr_notifs *n = e->notif;
        uint8_t *msg;
        size_t mlen;
        pthread_mutex_lock(&n->lock);
        const char *bad = xr__frame_place(&n->reasm, f->buf, len, &msg, &mlen);
        if (msg)
            deliver(e, msg, mlen);
        pthread_mutex_unlock(&n->lock);
        if (bad)
            xr__log_write(&e->log, XR_LOG_WARN, "rail %u: notification dropped: %s", r->index,
                          bad);
    }
    rx_post(r, f);
}

int xr__notif_hello(xr_engine *e, xr_peer *p, unsigned rail, xr_notif_done_fn done, void *arg)
{
    xr_notif_msg *m = calloc(1, sizeof *m);
    if (!m)
        return xr__error_set(XR_ENOMEM, "notif: a hello");
    msg_init(m, e, p, done, arg);
    m->hello = true;
    /* The peer stays until the hello is reaped: an application may unload
     * it (or time out of xr_peer_connect and unload it) while the hello
     * waits in the rail's queue, and its address must outlive the send.
     * And destroy drains it with the other messages. */
    pthread_mutex_lock(&e->lock);
    xr__peer_get(p);
    pthread_mutex_unlock(&e->lock);
    pthread_mutex_lock(&e->notif->lock);
    xr__list_push_back(&e->notif->live, &m->live);
    pthread_mutex_unlock(&e->notif->lock);
    m->nr = e->notif->rails[rail];
    m->dst = p->fi_addr[rail];
    m->seq = atomic_fetch_add(&e->notif->seq, 1);
    m->queued = true;
    xr__rail_enqueue(&e->rails[rail], XR_LANE_CTRL, &m->work);
    return 0;
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
        return xr__error_set(XR_ENORAIL, "notif: no rail that is up reaches peer '%s'", p->name);
    m->nr = e->notif->rails[r->index];
    m->dst = p->fi_addr[r->index];
    m->seq = atomic_fetch_add(&e->notif->seq, 1);
    m->sent = 0;
    m->inflight = 0;
    m->err = 0;
    m->queued = true;
    xr__rail_enqueue(r, XR_LANE_CTRL, &m->work);
    return 0;
}

/* Free standalone messages that finished, dropping their peer reference. */
static void reap(xr_engine *e)
{
    struct xr_notifs *n = e->notif;
    xr_list done;
    xr__list_init(&done);
    pthread_mutex_lock(&n->lock);
    xr__list_splice(&done, &n->reap);
    atomic_store(&n->reapable, false);
    pthread_mutex_unlock(&n->lock);
    if (xr__list_empty(&done))
        return;
    pthread_mutex_lock(&e->lock);
    for (xr_list *l; (l = xr__list_pop_front(&done));) {
        xr_notif_msg *m = xr__list_entry(l, xr_notif_msg, live);
        if (m->err && !m->hello) /* a hello's caller was told */
            xr__log_write(&e->log, XR_LOG_WARN, "notif: a %zu-byte notification to '%s' failed",
                          m->len, m->peer->name);
        xr__peer_put(m->peer);
        xr__notif_msg_free(m);
    }
    pthread_mutex_unlock(&e->lock);
}

void xr__notif_reap(xr_engine *e)
{
    if (atomic_load(&e->notif->reapable))
        reap(e);
}

bool xr__notif_idle(xr_engine *e)
{
    reap(e);
    pthread_mutex_lock(&e->notif->lock);
    bool idle = xr__list_empty(&e->notif->live);
    pthread_mutex_unlock(&e->notif->lock);
    return idle;
}

int xr_notif_send(xr_engine *e, xr_peer *peer, const void *msg, size_t len)
{
    if (!e || !peer || (!msg && len))
        return xr__error_set(XR_EINVAL, "xr_notif_send: NULL argument");
    int rc = xr__peer_check(peer, "xr_notif_send");
    if (rc)
        return rc;
    xr_notif_msg *m;
    rc = xr__notif_msg_new(e, peer, msg, len, NULL, NULL, &m);
    if (rc)
        return rc;
    pthread_mutex_lock(&e->lock);
    xr__peer_get(peer);
    pthread_mutex_unlock(&e->lock);
    struct xr_notifs *n = e->notif;
    pthread_mutex_lock(&n->lock);
    xr__list_push_back(&n->live, &m->live);
    pthread_mutex_unlock(&n->lock);
    rc = xr__notif_submit(e, m);
    if (rc) {
        m->err = rc;
        msg_finish(m);
    }
    reap(e);
    return rc;
}

bool xr__notif_ready(xr_engine *e)
{
    pthread_mutex_lock(&e->notif->lock);
    bool any = !xr__list_empty(&e->notif->ready);
    pthread_mutex_unlock(&e->notif->lock);
    return any;
}

int xr__notif_take(xr_engine *e, char *peer_name_buf, size_t cap, void *msg_buf, size_t *len)
{
    struct xr_notifs *n = e->notif;
    pthread_mutex_lock(&n->lock);
    if (xr__list_empty(&n->ready)) {
        pthread_mutex_unlock(&n->lock);
        return XR_EAGAIN; /* the common case while polling: no text to set */
    }
    ready *r = xr__list_entry(n->ready.next, ready, link);
    size_t nlen = xr__bytes_get_le(r->data, 2), body = r->len - 2 - nlen;
    if ((!msg_buf && body) || *len < body) {
        size_t had = msg_buf ? *len : 0;
        *len = body;
        pthread_mutex_unlock(&n->lock);
        return xr__error_set(XR_ETOOSMALL, "xr_notif_get: message of %zu bytes, buffer holds %zu",
                             body, had);
    }
    xr__list_remove(&r->link);
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
