/*
 * notif.h - notifications of any length (notif.c).
 */
#ifndef XR_NOTIF_H
#define XR_NOTIF_H

#include "peer.h"

typedef struct xr_notif_msg xr_notif_msg;

/* How a message ends for its owner: 0, or the error. Called with a rail
 * lock held, or from xr__notif_submit's caller when submission fails. */
typedef void (*xr_notif_done_fn)(void *arg, int err, const char *why);

int xr__notif_init(xr_engine *e);
void xr__notif_fini(xr_engine *e);
/* Frames and posted receives on a rail, made after it opened; dropped
 * after its endpoint closed. */
int xr__notif_rail_open(xr_engine *e, xr_rail *r);
void xr__notif_rail_close(xr_engine *e, xr_rail *r);
/* Build a framed message for `peer`; `done` (may be NULL: standalone,
 * reaped by the engine) hears how it ended. */
int xr__notif_msg_new(xr_engine *e, xr_peer *peer, const void *msg, size_t len,
                      xr_notif_done_fn done, void *arg, xr_notif_msg **out);
void xr__notif_msg_free(xr_notif_msg *m);
/* Queue a message on the lowest rail that is up and reaches its peer. */
int xr__notif_submit(xr_engine *e, xr_notif_msg *m);
/* Send a hello on `rail` to p: a frame that sets up the rail's connection
 * and that the peer drops; done (rail lock held) hears how it went, and
 * the message frees itself after. */
int xr__notif_hello(xr_engine *e, xr_peer *p, unsigned rail, xr_notif_done_fn done, void *arg);
/* Whether a received message waits. */
bool xr__notif_ready(xr_engine *e);
/* The oldest received message (xr_notif_get's contract), or XR_EAGAIN. */
int xr__notif_take(xr_engine *e, char *peer_name_buf, size_t cap, void *msg_buf, size_t *len);
/* No standalone message is still on its way. */
bool xr__notif_idle(xr_engine *e);
/* Free finished standalone messages and hellos, and the peers they held;
 * from progress (cheap when there are none). */
void xr__notif_reap(xr_engine *e);

#endif
