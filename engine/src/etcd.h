/*
 * etcd.h - a client of etcd v3's JSON gateway (etcd.c), over libcurl and
 * json-c: leases, puts, ranges and one watch stream. What the directory
 * (dir.c) needs and nothing more. Built only with both libraries
 * (XR_HAVE_ETCD); dir.c says XR_ENOTSUP without them.
 *
 * One client is used by one thread at a time (the directory's lock
 * serialises the callers), except xr__etcd_wakeup, which any thread may
 * call. Every request has a bound (opts.request_ms); a failure is XR_EDIR
 * with the endpoint and libcurl's or etcd's words in the last error.
 */
#ifndef XR_ETCD_H
#define XR_ETCD_H

#include "xrail.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct xr_etcd xr_etcd;

typedef struct xr_etcd_kv {
    char *key;
    uint8_t *value;
    size_t len;
    int64_t mod_revision;
    int64_t lease;
} xr_etcd_kv;

/* What a watch saw: a put (value set) or a delete (a lease that ended, a
 * key removed), and the store's revision after it. */
typedef void (*xr_etcd_watch_fn)(void *user, bool deleted, const xr_etcd_kv *kv);

int xr__etcd_open(const xr_dir_opts *o, xr_etcd **out);
void xr__etcd_close(xr_etcd *c);
/* The endpoint requests go to now (the client moves on when one fails). */
const char *xr__etcd_endpoint(const xr_etcd *c);

int xr__etcd_lease_grant(xr_etcd *c, unsigned ttl_s, int64_t *id);
/* *ttl_s: what is left after the renewal; 0 if the lease is gone. */
int xr__etcd_lease_keepalive(xr_etcd *c, int64_t id, int64_t *ttl_s);
int xr__etcd_lease_revoke(xr_etcd *c, int64_t id);
int xr__etcd_put(xr_etcd *c, const char *key, const void *value, size_t len, int64_t lease);
/* How a range reads. */
enum {
    XR_ETCD_PREFIX = 1,       /* every key under `key`, not `key` alone */
    XR_ETCD_KEYS_ONLY = 2,    /* keys and revisions without values (value NULL, len 0) */
    XR_ETCD_SERIALIZABLE = 4, /* from the member asked, without a quorum round: maybe
                                 behind, never torn; for reads a revision check guards */
};
/* *rev: the store's revision. `how`: XR_ETCD_* flags. */
int xr__etcd_range(xr_etcd *c, const char *key, unsigned how, xr_etcd_kv **kvs, size_t *n,
                   int64_t *rev);
void xr__etcd_kvs_free(xr_etcd_kv *kvs, size_t n);

/* Watch every key under `prefix` from revision `from` on. Events come
 * through xr__etcd_watch_poll; the stream ends with XR_EDIR (etcd gone, the
 * revision compacted) and is started again by the caller. */
int xr__etcd_watch_start(xr_etcd *c, const char *prefix, int64_t from);
/* Wait up to timeout_ms for the stream, calling fn for each event.
 * 0: the stream goes on; XR_EDIR: it ended (*next_rev: where to resume). */
int xr__etcd_watch_poll(xr_etcd *c, int timeout_ms, xr_etcd_watch_fn fn, void *user,
                        int64_t *next_rev);
void xr__etcd_watch_stop(xr_etcd *c);
/* End a xr__etcd_watch_poll that waits, from any thread. */
void xr__etcd_wakeup(xr_etcd *c);

#endif
