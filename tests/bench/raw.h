/*
 * raw.h - plain libfabric RMA on one endpoint, for xrail-bench --raw.
 */
#ifndef XR_BENCH_RAW_H
#define XR_BENCH_RAW_H

#include <stddef.h>
#include <stdint.h>

typedef struct raw_ep raw_ep;

/* One posted operation: the provider's context first, then which transfer
 * of the window it belongs to. */
typedef struct raw_op {
    _Alignas(8) unsigned char fctx[64]; /* struct fi_context2 */
    unsigned slot;
} raw_op;

/* What the initiator needs of the target's region. */
typedef struct raw_peer_info {
    uint64_t key, base;
} raw_peer_info;

/* An endpoint of `provider` (on `domain`, where not NULL) with `buf`
 * registered for local and remote RMA. */
raw_ep *raw_open(const char *provider, const char *domain, void *buf, size_t len);
/* Its address into buf (its length returned), and its region's key and base. */
size_t raw_name(raw_ep *r, void *buf, size_t cap, uint64_t base, raw_peer_info *pi);
void raw_connect(raw_ep *r, const void *name);
/* 0 posted, 1 the provider pushed back (poll and try again). */
int raw_post(raw_ep *r, int write, void *buf, size_t len, uint64_t raddr, uint64_t key,
             void *ctx);
/* Completed contexts, up to max (at most 64); 0 when none. */
int raw_poll(raw_ep *r, void **ctx, int max);
size_t raw_max_msg(raw_ep *r);
void raw_close(raw_ep *r);

#endif
