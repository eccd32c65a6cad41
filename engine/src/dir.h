/*
 * dir.h - the etcd directory (dir.c): the engine's metadata published
 * under a lease, peers looked up by name and kept up to date, and their
 * joins, updates and departures as events. The public calls are in
 * xrail.h; the engine closes its directory when it is destroyed.
 */
#ifndef XR_DIR_H
#define XR_DIR_H

#include "engine.h"

typedef struct xr_dir xr_dir;

/* Free a directory whose thread is stopped (or never ran). */
void xr__dir_free(xr_dir *d);

#endif
