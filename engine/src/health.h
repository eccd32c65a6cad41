/*
 * health.h - deadlines, rail states and probes, peers that stopped
 * answering, transfer timeouts (health.c).
 */
#ifndef XR_HEALTH_H
#define XR_HEALTH_H

#include "engine.h"

/* One pass over the rails and transfers, at most every 10 ms whoever
 * calls; progress calls it. No lock held. */
void xr__health_pass(xr_engine *e);

#endif
