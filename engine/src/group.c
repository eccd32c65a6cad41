/*
 * group.c - transfer groups: a request's transfers to one peer (one per
 * layer, posted as each layer is ready) that end as one. Its notification
 * goes once every member has ended, so it arrives after every byte of all
 * of them, as a transfer's own follows its bytes. A member's own
 * notification is not sent.
 *
 * The group counts its members in flight, plus one until it is sealed;
 * whoever takes the count to zero (the seal, or the last member's end, on
 * a progress thread) sends the notification. It is freed when the
 * application has released it and nothing in flight refers to it.
 */
#include "group.h"

#include "xfer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void record(xr_group *g, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void record(xr_group *g, int err, const char *fmt, ...)
{
    int zero = 0;
    if (!atomic_compare_exchange_strong(&g->err, &zero, err))
        return; /* the first cause is the one worth reporting */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->errmsg, sizeof g->errmsg, fmt, ap);
    va_end(ap);
}

/* The last reference marks it for progress to free: it may be dropped
 * under a rail lock (a notification's completion), where the engine lock
 * that unlinks it must not be taken. */
static void put(xr_group *g)
{
    if (atomic_fetch_sub(&g->refs, 1) == 1)
        atomic_fetch_add(&g->e->dead_groups, 1);
}

static void group_free(xr_group *g)
{
    xr__list_remove(&g->link);
    xr__peer_put(g->peer);
    if (g->notif)
        xr__notif_msg_free(g->notif);
    free(g);
}

void xr__group_reap(xr_engine *e)
{
    pthread_mutex_lock(&e->lock);
    xr__list_each(n, &e->groups) {
        xr_group *g = xr__list_entry(n, xr_group, link);
        if (atomic_load(&g->refs) == 0) {
            group_free(g);
            atomic_fetch_sub(&e->dead_groups, 1);
        }
    }
    pthread_mutex_unlock(&e->lock);
}

/* The one place a group ends. Nothing of it is touched after the status
 * store but through the reference the caller still holds. */
static void end(xr_group *g)
{
    atomic_store(&g->status, atomic_load(&g->err));
    xr__engine_signal(g->e);
}

static void notif_done(void *arg, int err, const char *why)
{
    xr_group *g = arg;
    if (err)
        record(g, err, "notification: %s", why ? why : xr_strerror(err));
    end(g);
    put(g); /* the notification's reference */
}

/* Every member has ended and the group is sealed. No lock held. */
static void all_done(xr_group *g)
{
    if (atomic_load(&g->err) || !g->notif) {
        end(g);
        return;
    }
    atomic_fetch_add(&g->refs, 1);
    int rc = xr__notif_submit(g->e, g->notif);
    if (rc)
        notif_done(g, rc, xr__error_last());
}

static void drop_pending(xr_group *g)
{
    if (atomic_fetch_sub(&g->pending, 1) == 1)
        all_done(g);
}

void xr__group_member_error(xr_group *g, int err, const char *why)
{
    record(g, err, "member transfer: %s", why);
}

void xr__group_member_done(xr_group *g)
{
    drop_pending(g);
    put(g); /* the member's reference */
}

int xr_group_create(xr_engine *e, xr_peer *peer, const void *notif, size_t notif_len,
                    xr_group **out)
{
    if (out)
        *out = NULL;
    if (!e || !peer || !out || (!notif && notif_len))
        return xr__error_set(XR_EINVAL, "xr_group_create: NULL argument");
    if (peer->unloaded)
        return xr__error_set(XR_ENOENT, "xr_group_create: peer '%s' was unloaded", peer->name);
    xr_group *g = calloc(1, sizeof *g);
    if (!g)
        return xr__error_set(XR_ENOMEM, "xr_group_create: out of memory");
    g->e = e;
    g->peer = peer;
    atomic_store(&g->refs, 1);
    atomic_store(&g->pending, 1);
    atomic_store(&g->status, XR_EINPROGRESS);
    if (notif) {
        int rc = xr__notif_msg_new(e, peer, notif, notif_len, notif_done, g, &g->notif);
        if (rc) {
            free(g);
            return rc;
        }
    }
    pthread_mutex_lock(&e->lock);
    xr__peer_get(peer);
    xr__list_push_front(&e->groups, &g->link);
    pthread_mutex_unlock(&e->lock);
    *out = g;
    return 0;
}

int xr_group_add(xr_group *g, xr_xfer *x)
{
    if (!g || !x)
        return xr__error_set(XR_EINVAL, "xr_group_add: NULL argument");
    if (atomic_load(&g->sealed))
        return xr__error_set(XR_EINVAL, "xr_group_add: the group is sealed");
    if (x->e != g->e || x->peer != g->peer)
        return xr__error_set(XR_EINVAL, "xr_group_add: the transfer goes to '%s', the group "
                                        "to '%s'", x->peer->name, g->peer->name);
    if (atomic_load(&x->status) == XR_EINPROGRESS)
        return xr__error_set(XR_EBUSY, "xr_group_add: the transfer is still in flight");
    atomic_fetch_add(&g->refs, 1);
    atomic_fetch_add(&g->pending, 1);
    x->group = g;
    int rc = xr_xfer_post(x);
    if (rc) {
        x->group = NULL;
        atomic_fetch_sub(&g->pending, 1); /* the seal's share holds it above 0 */
        atomic_fetch_sub(&g->refs, 1);
        return rc;
    }
    atomic_fetch_add(&g->members, 1);
    return 0;
}

int xr_group_seal(xr_group *g)
{
    if (!g)
        return xr__error_set(XR_EINVAL, "xr_group_seal: NULL group");
    bool was = false;
    if (!atomic_compare_exchange_strong(&g->sealed, &was, true))
        return xr__error_set(XR_EINVAL, "xr_group_seal: already sealed");
    drop_pending(g);
    return 0;
}

int xr_group_status(xr_group *g)
{
    if (!g)
        return xr__error_set(XR_EINVAL, "xr_group_status: NULL group");
    int s = atomic_load(&g->status);
    if (s < 0 && s != XR_EINPROGRESS)
        xr__error_set(s, "%s", g->errmsg);
    return s;
}

const char *xr_group_error(xr_group *g)
{
    int s = g ? atomic_load(&g->status) : 0;
    return g && s < 0 && s != XR_EINPROGRESS ? g->errmsg : "";
}

void xr_group_release(xr_group *g)
{
    if (!g)
        return;
    bool was = false;
    if (atomic_compare_exchange_strong(&g->sealed, &was, true)) {
        /* Released open: what it would have said is not sent. */
        record(g, XR_ECANCELED, "released before it was sealed");
        drop_pending(g);
    }
    put(g);
}

void xr__group_free_all(xr_engine *e)
{
    while (!xr__list_empty(&e->groups))
        group_free(xr__list_entry(e->groups.next, xr_group, link));
}
