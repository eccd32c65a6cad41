/*
 * health.h - deadlines, rail states and probes, peers that stopped
 * answering, transfer timeouts (health.c).
 */
#ifndef XR_HEALTH_H
#define XR_HEALTH_H

#include "engine.h"

/* One pass over the transfers and the peers they wait on, at most every
 * 10 ms whoever calls; progress's part 0 calls it. No lock held. */
void xr__health_pass(xr_engine *e);
/* One look at rail `r` (deadlines, probes), at most every 10 ms whoever
 * calls; `now` is xr__rail_now, read once for a share's rails. The
 * progress share that drives the rail calls it, so that its rail lock is
 * not taken from another thread while the rail is busy (a thread that
 * holds a lock in a loop starved the one pass that looked at every rail,
 * and that thread's own rail with it). No lock held. */
void xr__health_rail(xr_engine *e, xr_rail *r, uint64_t now);

#endif
