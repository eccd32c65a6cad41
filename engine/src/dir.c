/*
 * dir.c - the etcd directory (docs/discovery.md): this engine's metadata
 * published under a lease, the peers of the namespace watched, loaded on
 * lookup and kept up to date.
 *
 * One thread per directory does all the talking to etcd but lookups'
 * waits: it renews the lease every third of its TTL, publishes again when
 * md_gen moves or the lease was lost (etcd restarted, or unreachable for
 * longer than the TTL), and reads the watch stream; when the stream ends
 * it reads the whole prefix again (what changed meanwhile becomes events)
 * and watches from there. Nothing here is on the data path.
 *
 * That read takes keys and revisions only: a blob is tens of KB at 32
 * rails and 100 regions, and a new engine in a fleet of 1,000 would read
 * them all before its first event. A peer's blob is read at its first
 * lookup (with a client of the lookups' own, so a lookup never waits on
 * the thread's watch), or comes with a watch event; a loaded peer whose
 * revision moved while the watch was down is read again before it is
 * refreshed.
 */
#include "dir.h"

#include "core/log.h"
#include "peer.h"
#include "xfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVENTS_MAX 4096
#define TICK_MS 100

#ifdef XR_HAVE_ETCD
#include "etcd.h"

/* A name under the prefix, as the directory last saw it. */
typedef struct entry {
    char *name;
    bool present;           /* published now */
    int64_t revision;       /* of the metadata below */
    uint8_t *md;            /* NULL: not read yet (a keys-only read saw it), or
                               loaded into peer, which keeps what it needs */
    size_t len;
    xr_peer *peer;          /* loaded by a lookup; the directory owns it */
} entry;

struct xr_dir {
    xr_engine *e;
    xr_etcd *c;
    xr_etcd *lc;            /* lookups' reads of a blob, under lc_lock */
    pthread_mutex_t lc_lock;
    char *prefix, *key;
    unsigned ttl_s;
    pthread_t tid;
    atomic_bool stop;
    pthread_mutex_t lock;   /* all below; never held across a request to etcd */
    pthread_cond_t cond;    /* entries changed (lookups wait on it) */
    entry *ent;
    size_t n, cap;
    xr_peer **retired;      /* handles replaced or left; ours until close */
    size_t nretired;
    xr_dir_event q[EVENTS_MAX];
    size_t qhead, qn;
    uint64_t dropped;
    /* The thread's own, read by others under lock for messages. */
    int64_t lease;
    uint64_t published_gen;
    bool watching, reachable;
    char last_error[256];
    uint64_t seen;          /* sync pass number: entries not seen in a pass left */
};

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* ---- entries and events (lock held) ---- */

static entry *find(xr_dir *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->ent[i].name, name) == 0)
            return &d->ent[i];
    return NULL;
}

static entry *find_or_add(xr_dir *d, const char *name)
{
    entry *t = find(d, name);
    if (t)
        return t;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 16;
        entry *v = realloc(d->ent, cap * sizeof *v);
        if (!v)
            return NULL;
        d->ent = v, d->cap = cap;
    }
    t = &d->ent[d->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return NULL;
    d->n++;
    return t;
}

static void event(xr_dir *d, xr_dir_event_kind kind, const char *name, int64_t rev)
{
    if (d->qn == EVENTS_MAX) { /* nobody reads them: the oldest go */
        d->qhead = (d->qhead + 1) % EVENTS_MAX;
        d->qn--;
        if (d->dropped++ % 1024 == 0)
            xr__log_write(&d->e->log, XR_LOG_WARN, "directory: %d events wait unread; the "
                                                   "oldest are dropped", EVENTS_MAX);
    }
    xr_dir_event *v = &d->q[(d->qhead + d->qn++) % EVENTS_MAX];
    v->kind = kind;
    snprintf(v->name, sizeof v->name, "%s", name);
    v->revision = rev;
}

/* Keep a handle valid until close, out of the way of a new one of the
 * same name: unloaded (transfers made with it end as they would), our
 * reference kept. */
static void retire(xr_dir *d, entry *t)
{
    xr_peer *p = t->peer;
    t->peer = NULL;
    xr_peer **v = realloc(d->retired, (d->nretired + 1) * sizeof *v);
    if (!v) { /* cannot keep it: it stays loaded, under its name, until close */
        xr__log_write(&d->e->log, XR_LOG_ERROR, "directory: out of memory retiring '%s'",
                      p->name);
        return;
    }
    d->retired = v;
    pthread_mutex_lock(&d->e->lock);
    xr__peer_get(p);
    pthread_mutex_unlock(&d->e->lock);
    xr_peer_unload(p);
    d->retired[d->nretired++] = p;
}

/* The peer's lease ended: what is in flight to it fails, nothing more goes. */
static void leave(xr_dir *d, entry *t, int64_t rev)
{
    t->present = false;
    event(d, XR_DIR_LEAVE, t->name, rev);
    if (!t->peer)
        return;
    xr_engine *e = d->e;
    char why[320];
    snprintf(why, sizeof why, "peer '%s' left the directory (its lease ended or it closed)",
             t->name);
    pthread_mutex_lock(&e->lock);
    atomic_store(&t->peer->gone, true);
    atomic_store(&t->peer->lost, true);
    unsigned failed = xr__xfer_fail_peer(e, t->peer, XR_EGONE, why);
    pthread_mutex_unlock(&e->lock);
    /* A peer that closed while nothing went to it is news, not trouble. */
    xr__log_write(&e->log, failed ? XR_LOG_WARN : XR_LOG_INFO, "%s: %u transfer(s) in flight "
                  "fail with XR_EGONE, and new ones are refused", why, failed);
}

/* A put under the prefix: a join, or an update that a loaded handle takes
 * in place. Lock held; the refresh takes the engine lock (lock order:
 * directory, then engine). */
static void put(xr_dir *d, const char *name, const uint8_t *md, size_t len, int64_t rev)
{
    entry *t = find_or_add(d, name);
    uint8_t *copy = md ? malloc(len ? len : 1) : NULL;
    if (!t || (md && !copy)) {
        free(copy);
        xr__log_write(&d->e->log, XR_LOG_ERROR, "directory: out of memory for '%s'", name);
        return;
    }
    if (md)
        memcpy(copy, md, len);
    bool was = t->present;
    if (was && t->revision == rev) {
        free(copy);
        return; /* seen already (a sync after the watch delivered it) */
    }
    free(t->md);
    t->md = copy, t->len = md ? len : 0, t->revision = rev, t->present = true;
    event(d, was ? XR_DIR_UPDATE : XR_DIR_JOIN, name, rev);
    if (!t->peer)
        return;
    /* No blob: sync_all could not read it; the next lookup loads afresh. */
    if (!md || atomic_load(&t->peer->gone) || xr__peer_refresh(t->peer, md, len)) {
        /* Left and back, or another engine under the name: the next lookup
         * loads it as a new peer. */
        if (md && !atomic_load(&t->peer->gone))
            xr__log_write(&d->e->log, XR_LOG_INFO, "directory: '%s' is a new engine: %s", name,
                          xr__error_last());
        retire(d, t);
    }
}

/* ---- the thread ---- */

static void set_unreachable(xr_dir *d, const char *what)
{
    pthread_mutex_lock(&d->lock);
    bool was = d->reachable;
    d->reachable = false;
    snprintf(d->last_error, sizeof d->last_error, "%s: %.200s", what, xr__error_last());
    pthread_mutex_unlock(&d->lock);
    if (was)
        xr__log_write(&d->e->log, XR_LOG_WARN, "directory: %s (transfers go on; retrying)",
                      d->last_error);
}

static void set_reachable(xr_dir *d)
{
    pthread_mutex_lock(&d->lock);
    bool was = d->reachable;
    d->reachable = true;
    pthread_mutex_unlock(&d->lock);
    if (!was)
        xr__log_write(&d->e->log, XR_LOG_INFO, "directory: etcd at %s answers again",
                      xr__etcd_endpoint(d->c));
}

/* Publish our metadata under our lease, granting one if we have none. */
static int publish(xr_dir *d)
{
    uint64_t gen = atomic_load(&d->e->md_gen);
    size_t len = 0;
    int rc = xr_metadata_get(d->e, NULL, &len);
    uint8_t *md = rc == XR_ETOOSMALL ? malloc(len) : NULL;
    if (rc != XR_ETOOSMALL)
        return rc ? rc : xr__error_set(XR_EINVAL, "directory: empty metadata");
    if (!md)
        return xr__error_set(XR_ENOMEM, "directory: %zu bytes of metadata", len);
    rc = xr_metadata_get(d->e, md, &len);
    if (!rc && !d->lease)
        rc = xr__etcd_lease_grant(d->c, d->ttl_s, &d->lease);
    if (!rc)
        rc = xr__etcd_put(d->c, d->key, md, len, d->lease);
    free(md);
    if (!rc)
        d->published_gen = gen;
    return rc;
}

static void on_watch(void *user, bool deleted, const xr_etcd_kv *kv)
{
    xr_dir *d = user;
    const char *name = kv->key + strlen(d->prefix);
    if (strncmp(kv->key, d->prefix, strlen(d->prefix)) || strcmp(name, d->e->name) == 0)
        return;
    pthread_mutex_lock(&d->lock);
    entry *t = find(d, name);
    if (deleted) {
        if (t && t->present)
            leave(d, t, kv->mod_revision);
    } else {
        put(d, name, kv->value, kv->len, kv->mod_revision);
    }
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    xr__engine_signal(d->e);
}

/* A loaded peer whose revision moved while nobody watched: its blob, read
 * before put() refreshes it (kv->value stays NULL if the key went
 * meanwhile). A failed read fails the sync, which is tried again: applying
 * the new revision without its blob would lose the update. */
static int sync_read_loaded(xr_dir *d, xr_etcd_kv *kvs, size_t n)
{
    bool *want = calloc(n + 1, sizeof *want);
    if (!want)
        return xr__error_set(XR_ENOMEM, "directory: out of memory");
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < n; i++) {
        entry *t = find(d, kvs[i].key + strlen(d->prefix));
        want[i] = t && t->peer && t->present && t->revision != kvs[i].mod_revision;
    }
    pthread_mutex_unlock(&d->lock);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        xr_etcd_kv *one;
        size_t k;
        int64_t r;
        if (!want[i] || (rc = xr__etcd_range(d->c, kvs[i].key, 0, &one, &k, &r)))
            continue;
        xr__log_write(&d->e->log, XR_LOG_INFO, "directory: '%s' changed while the watch was "
                                               "down; its blob read again", kvs[i].key);
        if (k == 1) {
            kvs[i].value = one[0].value, kvs[i].len = one[0].len;
            kvs[i].mod_revision = one[0].mod_revision;
            one[0].value = NULL;
        }
        xr__etcd_kvs_free(one, k);
    }
    free(want);
    return rc;
}

/* Read the whole prefix, keys only: what appeared, changed or went since
 * the last look becomes events. *rev: the revision to watch from. */
static int sync_all(xr_dir *d, int64_t *rev)
{
    xr_etcd_kv *kvs;
    size_t n;
    int64_t r;
    int rc = xr__etcd_range(d->c, d->prefix, XR_ETCD_PREFIX | XR_ETCD_KEYS_ONLY, &kvs, &n, &r);
    if (!rc && (rc = sync_read_loaded(d, kvs, n)))
        xr__etcd_kvs_free(kvs, n);
    if (rc)
        return rc;
    pthread_mutex_lock(&d->lock);
    bool *seen = calloc(d->n + n + 1, sizeof *seen);
    for (size_t i = 0; i < n; i++) {
        const char *name = kvs[i].key + strlen(d->prefix);
        if (strcmp(name, d->e->name) == 0)
            continue;
        put(d, name, kvs[i].value, kvs[i].len, kvs[i].mod_revision);
        entry *t = find(d, name);
        if (t && seen)
            seen[t - d->ent] = true;
    }
    for (size_t i = 0; seen && i < d->n; i++)
        if (!seen[i] && d->ent[i].present)
            leave(d, &d->ent[i], r);
    free(seen);
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    xr__etcd_kvs_free(kvs, n);
    xr__engine_signal(d->e);
    *rev = r + 1;
    return 0;
}

static void *dir_thread(void *arg)
{
    xr_dir *d = arg;
    uint64_t renew_every = d->ttl_s * 1000ull / 3, next_renew = now_ms() + renew_every;
    uint64_t retry_at = 0;
    int64_t from = 0;
    while (!atomic_load(&d->stop)) {
        uint64_t now = now_ms();
        if (now >= next_renew && d->lease) {
            int64_t left = 0;
            if (xr__etcd_lease_keepalive(d->c, d->lease, &left)) {
                set_unreachable(d, "renewing the lease");
                next_renew = now + 500; /* and again soon: the lease runs out meanwhile */
            } else {
                set_reachable(d);
                if (!left) { /* expired while etcd was away, or etcd lost it */
                    xr__log_write(&d->e->log, XR_LOG_WARN, "directory: the lease ended; "
                                                           "publishing again");
                    d->lease = 0;
                }
                next_renew = now + renew_every;
            }
        }
        if ((!d->lease || atomic_load(&d->e->md_gen) != d->published_gen) && now >= retry_at) {
            if (publish(d)) {
                set_unreachable(d, "publishing");
                retry_at = now + 500;
            } else {
                set_reachable(d);
                next_renew = now + renew_every;
            }
        }
        if (!d->watching && now >= retry_at) {
            if (sync_all(d, &from) || xr__etcd_watch_start(d->c, d->prefix, from)) {
                set_unreachable(d, "watching");
                retry_at = now + 500;
            } else {
                d->watching = true;
            }
        }
        if (d->watching) {
            if (xr__etcd_watch_poll(d->c, TICK_MS, on_watch, d, &from)) {
                /* etcd restarted, or the stream broke: read all again. */
                xr__log_write(&d->e->log, XR_LOG_INFO, "directory: %s; watching again",
                              xr__error_last());
                d->watching = false;
                retry_at = now_ms() + 250;
            }
        } else {
            struct timespec ts = {0, TICK_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* ---- the calls ---- */

int xr_dir_open(xr_engine *e, const xr_dir_opts *o)
{
    if (!e || !o || !o->endpoints || !*o->endpoints)
        return xr__error_set(XR_EINVAL, "xr_dir_open: NULL engine, options or endpoints");
    if (e->dir)
        return xr__error_set(XR_EEXIST, "xr_dir_open: engine '%s' has a directory already",
                             e->name);
    xr_dir_opts def;
    xr_dir_opts_init(&def);
    const char *prefix = o->prefix && *o->prefix ? o->prefix : def.prefix;
    unsigned ttl_ms = o->ttl_ms ? o->ttl_ms : def.ttl_ms;
    xr_dir_opts eo = *o;
    if (!eo.request_ms)
        eo.request_ms = def.request_ms;
    xr_dir *d = calloc(1, sizeof *d);
    if (!d)
        return xr__error_set(XR_ENOMEM, "xr_dir_open: out of memory");
    d->e = e;
    d->ttl_s = ttl_ms < 2000 ? 2 : (ttl_ms + 999) / 1000;
    d->prefix = strdup(prefix);
    size_t kl = strlen(prefix) + strlen(e->name) + 1;
    d->key = malloc(kl);
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->lc_lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    int rc = d->prefix && d->key ? 0 : xr__error_set(XR_ENOMEM, "xr_dir_open: out of memory");
    if (!rc) {
        snprintf(d->key, kl, "%s%s", prefix, e->name);
        rc = xr__etcd_open(&eo, &d->c);
    }
    if (!rc)
        rc = xr__etcd_open(&eo, &d->lc);
    /* The first publish and the first look are done here, so that a
     * lookup right after sees every peer published before. */
    int64_t from = 0;
    if (!rc)
        rc = publish(d);
    if (!rc)
        rc = sync_all(d, &from);
    if (!rc)
        rc = xr__etcd_watch_start(d->c, d->prefix, from);
    if (!rc) {
        d->watching = d->reachable = true;
        e->dir = d;
        if (pthread_create(&d->tid, NULL, dir_thread, d)) {
            e->dir = NULL;
            rc = xr__error_set(XR_ENOMEM, "xr_dir_open: no thread");
        }
    }
    if (rc) {
        char why[XR_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", xr__error_last());
        if (d->c && d->lease)
            xr__etcd_lease_revoke(d->c, d->lease);
        xr__dir_free(d);
        return xr__error_set(rc, "%s", why);
    }
    xr__log_write(&e->log, XR_LOG_INFO, "directory: published as %s at %s (lease %u s)", d->key,
                  xr__etcd_endpoint(d->c), d->ttl_s);
    return 0;
}

void xr__dir_free(xr_dir *d)
{
    if (d->c)
        xr__etcd_close(d->c);
    if (d->lc)
        xr__etcd_close(d->lc);
    for (size_t i = 0; i < d->n; i++) {
        if (d->ent[i].peer)
            xr_peer_unload(d->ent[i].peer);
        free(d->ent[i].name);
        free(d->ent[i].md);
    }
    if (d->nretired) {
        pthread_mutex_lock(&d->e->lock);
        for (size_t i = 0; i < d->nretired; i++)
            xr__peer_put(d->retired[i]);
        pthread_mutex_unlock(&d->e->lock);
    }
    free(d->retired);
    free(d->ent);
    free(d->prefix);
    free(d->key);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lc_lock);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

int xr_dir_close(xr_engine *e)
{
    if (!e)
        return xr__error_set(XR_EINVAL, "xr_dir_close: NULL engine");
    xr_dir *d = e->dir;
    if (!d)
        return xr__error_set(XR_ENOENT, "xr_dir_close: engine '%s' has no directory", e->name);
    atomic_store(&d->stop, true);
    xr__etcd_wakeup(d->c);
    pthread_join(d->tid, NULL);
    e->dir = NULL;
    /* Revoking the lease deletes our key: peers see us leave now, not
     * after the TTL. Unreachable etcd: the TTL does it. */
    int rc = d->lease ? xr__etcd_lease_revoke(d->c, d->lease) : 0;
    if (rc)
        xr__log_write(&e->log, XR_LOG_WARN, "directory: %s; peers see this engine leave when "
                                            "its lease ends", xr__error_last());
    xr__dir_free(d);
    return 0;
}

/* Read the blob of `name`, which a keys-only read saw at revision `rev`,
 * into its entry. Called and returns with d->lock held, which it drops for
 * the requests; entries may move meanwhile. */
static int read_blob(xr_dir *d, const char *name, int64_t rev)
{
    size_t kl = strlen(d->prefix) + strlen(name) + 1;
    char *key = malloc(kl);
    if (!key)
        return xr__error_set(XR_ENOMEM, "xr_peer_lookup: out of memory");
    snprintf(key, kl, "%s%s", d->prefix, name);
    pthread_mutex_unlock(&d->lock);
    xr_etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t r;
    pthread_mutex_lock(&d->lc_lock);
    /* Serializable first: the member's own copy, without a quorum round
     * (a lookup's latency under load). A member behind `rev` gives an
     * older blob, which the watch would never correct: read again,
     * linearizable. */
    int rc = xr__etcd_range(d->lc, key, XR_ETCD_SERIALIZABLE, &kvs, &n, &r);
    if (!rc && n == 1 && kvs[0].mod_revision < rev) {
        xr__etcd_kvs_free(kvs, n);
        rc = xr__etcd_range(d->lc, key, 0, &kvs, &n, &r);
    }
    pthread_mutex_unlock(&d->lc_lock);
    free(key);
    pthread_mutex_lock(&d->lock);
    if (rc)
        return xr__error_set(rc, "xr_peer_lookup: reading '%s' from etcd: %s", name,
                             xr__error_last());
    entry *t = find(d, name);
    /* Gone meanwhile (n == 0): the watch will say so. A newer blob is
     * kept; the watch's event of it refreshes nothing new. */
    if (n == 1 && t && t->present && !t->md) {
        t->md = kvs[0].value, t->len = kvs[0].len;
        kvs[0].value = NULL;
    }
    xr__etcd_kvs_free(kvs, n);
    return 0;
}

int xr_peer_lookup(xr_engine *e, const char *name, int timeout_ms, xr_peer **out)
{
    if (out)
        *out = NULL;
    if (!e || !name || !out)
        return xr__error_set(XR_EINVAL, "xr_peer_lookup: NULL argument");
    xr_dir *d = e->dir;
    if (!d)
        return xr__error_set(XR_EINVAL, "xr_peer_lookup: engine '%s' has no directory; call "
                                        "xr_dir_open first", e->name);
    uint64_t until = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    int rc = 0;
    int64_t read_rev = -1;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        entry *t = find(d, name);
        if (t && t->peer && !atomic_load(&t->peer->gone)) {
            *out = t->peer;
            break;
        }
        if (t && t->present && !t->md && t->revision != read_rev) {
            read_rev = t->revision; /* once per revision; else wait for the watch */
            if ((rc = read_blob(d, name, read_rev)))
                break;
            continue;
        }
        if (t && t->present && t->md) {
            if (t->peer)
                retire(d, t);
            /* Loading takes the engine lock: the directory's comes first,
             * as in put(). */
            rc = xr_peer_load(e, t->md, t->len, &t->peer);
            if (!rc) { /* the handle has it now; a later blob comes with its event */
                free(t->md);
                t->md = NULL, t->len = 0;
            }
            if (rc == XR_EEXIST)
                rc = xr__error_set(XR_EEXIST, "xr_peer_lookup: a peer named '%s' was loaded "
                                              "with xr_peer_load; the directory cannot own it",
                                   name);
            *out = t->peer;
            break;
        }
        uint64_t now = now_ms();
        if (now >= until) {
            if (t)
                rc = xr__error_set(XR_EGONE, "xr_peer_lookup: peer '%s' left the directory and "
                                             "has not come back", name);
            else if (!d->reachable)
                rc = xr__error_set(XR_EDIR, "xr_peer_lookup: peer '%s' is not known here, and "
                                            "the directory is unreachable: %s", name,
                                   d->last_error);
            else
                rc = xr__error_set(XR_ETIMEDOUT, "xr_peer_lookup: no peer '%s' under %s after "
                                                 "%d ms", name, d->prefix, timeout_ms);
            break;
        }
        uint64_t left = until - now;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)(left / 1000);
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L)
            ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&d->cond, &d->lock, &ts);
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int xr_dir_event_get(xr_engine *e, xr_dir_event *ev)
{
    if (!e || !ev)
        return xr__error_set(XR_EINVAL, "xr_dir_event_get: NULL argument");
    xr_dir *d = e->dir;
    if (!d)
        return xr__error_set(XR_EINVAL, "xr_dir_event_get: engine '%s' has no directory",
                             e->name);
    pthread_mutex_lock(&d->lock);
    int rc = XR_EAGAIN;
    if (d->qn) {
        *ev = d->q[d->qhead];
        d->qhead = (d->qhead + 1) % EVENTS_MAX;
        d->qn--;
        rc = 0;
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

#else /* no libcurl or json-c at build time */

static int no_etcd(const char *call)
{
    return xr__error_set(XR_ENOTSUP, "%s: this libxrail was built without the etcd directory "
                                     "(libcurl and json-c were not found)", call);
}

int xr_dir_open(xr_engine *e, const xr_dir_opts *o)
{
    (void)e, (void)o;
    return no_etcd("xr_dir_open");
}

int xr_dir_close(xr_engine *e)
{
    (void)e;
    return no_etcd("xr_dir_close");
}

int xr_peer_lookup(xr_engine *e, const char *name, int timeout_ms, xr_peer **out)
{
    (void)e, (void)name, (void)timeout_ms;
    if (out)
        *out = NULL;
    return no_etcd("xr_peer_lookup");
}

int xr_dir_event_get(xr_engine *e, xr_dir_event *ev)
{
    (void)e, (void)ev;
    return no_etcd("xr_dir_event_get");
}

void xr__dir_free(xr_dir *d)
{
    (void)d;
}

#endif

void xr_dir_opts_init(xr_dir_opts *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->prefix = "/xrail/";
    o->ttl_ms = 10000;
    o->request_ms = 2000;
}
