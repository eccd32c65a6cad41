/*
 * plan.h - how one descriptor is split over rails. Pure arithmetic, no
 * fabric: a plan is made once per class of transfers (policy.c caches it),
 * a transfer is split once at create time, and posting only walks the
 * chunks that produced.
 */
#ifndef XR_PLAN_H
#define XR_PLAN_H

#include "xrail.h"

#include <stddef.h>
#include <stdint.h>

typedef struct xr_plan {
    unsigned nrails;
    uint8_t rail[XR_MAX_RAILS];       /* rail indexes, in order */
    uint32_t weight[XR_MAX_RAILS];    /* share of a striped descriptor; 0 excludes */
    size_t chunk[XR_MAX_RAILS];       /* largest chunk for that rail (provider cap applied) */
    size_t stripe_min;                /* at or above: split across rails */
    size_t align;                     /* stripe boundaries fall on multiples of this */
} xr_plan;

/* Called for each chunk: rail index, offset into the descriptor, length. */
typedef void (*xr_piece_fn)(void *arg, unsigned rail, size_t off, size_t len);

/*
 * Split a descriptor of `len` bytes over the plan's rails that are also in
 * `mask`. Below stripe_min it goes whole to one rail, chosen round-robin
 * from *rr (advanced). At or above, each rail gets len * weight / total,
 * with boundaries aligned, then every piece is cut to the rail's chunk size.
 * Returns the number of chunks emitted, 0 when no rail is eligible.
 */
size_t xr__plan_split(const xr_plan *p, uint64_t mask, size_t len, unsigned *rr,
                     xr_piece_fn fn, void *arg);

#endif
