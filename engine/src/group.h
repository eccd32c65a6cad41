/*
 * group.h - transfer groups (group.c): transfers to one peer that end as
 * one, with one notification after every byte of all of them.
 */
#ifndef XR_GROUP_H
#define XR_GROUP_H

#include "notif.h"

struct xr_group {
    xr_engine *e;
    xr_peer *peer;
    xr_list link;                   /* the engine's groups (engine lock) */
    xr_notif_msg *notif;            /* NULL: none */
    atomic_uint refs;               /* the application's, each member in flight, the
                                       notification in flight; freed at 0 */
    atomic_uint pending;            /* members in flight, and 1 until sealed */
    atomic_bool sealed;
    atomic_int err;                 /* the first error of a member or the notification */
    atomic_int status;              /* XR_EINPROGRESS until it ends, then err */
    atomic_uint members;            /* posted so far */
    char errmsg[XR_ERRMSG_MAX];
};

/* A member ended (xfer.c's finish, no lock held): err and why if it
 * failed, recorded before its own status went final. */
void xr__group_member_error(xr_group *g, int err, const char *why);
/* ...and after: the group ends when the last one has. */
void xr__group_member_done(xr_group *g);
/* Free the groups nothing refers to any more (progress, when
 * e->dead_groups says there are some). */
void xr__group_reap(xr_engine *e);
/* Free the groups left at engine destroy. */
void xr__group_free_all(xr_engine *e);

#endif
