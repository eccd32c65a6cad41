/*
 * health.c - watching rails and peers (docs/reliability.md): deadlines on
 * what the providers hold, rails taken down and probed back, peers that
 * stopped answering, transfers past their timeout. Every HEALTH_PERIOD,
 * progress's part 0 runs a pass over the transfers and their peers, and
 * each rail is looked at by the progress share that drives it; nothing
 * here is on the data path.
 *
 * The rule, per rail, when the oldest operation it holds is past the
 * deadline:
 *   - its peer completed nothing on any rail for the deadline: the peer
 *     stopped answering (killed, stopped, its host gone). Its transfers fail
 *     with XR_EPEER, and the rail is reset to take back what it held (or,
 *     where a reset would move the rail's address, what it held for the
 *     peer is left with the provider: let_go); the rail stays up, as it
 *     serves other peers.
 *   - the rail completed nothing for the deadline while the peer completes
 *     elsewhere: the rail's link is gone. It goes down, is reset (its chunks
 *     fail over to the peer's other rails) and is probed with backoff.
 *   - both answer but this operation is older than PATH_FACTOR deadlines:
 *     the path between them is broken; the rail is reset and its chunks
 *     fail over.
 * The first two look alike when a rail's link goes just as the peer's
 * other rails finish their share: nothing completes anywhere. So a peer
 * silent for half its deadline with chunks held is probed on an idle rail
 * of another link (another domain); an answer proves the peer alive, and
 * the rails that hold its chunks are judged instead ("vouching", once per
 * silence). A dead or stopped peer does not answer, and its verdict comes
 * at the deadline as before.
 * Age alone is no sign: a deep queue on a slow link holds operations for
 * seconds while it completes others. A peer, or a rail of it, that has not
 * answered since the peer was loaded gets connect_ms instead of the
 * deadline: first contact connects.
 */
#include "health.h"

#include "policy.h"
#include "stage.h"
#include "xfer.h"

#include <stdio.h>
#include <string.h>

#define HEALTH_PERIOD_NS 10000000ull /* 10 ms */
#define PATH_FACTOR 4
#define MS 1000000ull

/* Take a rail out of plans, to be probed back. Engine lock not held. */
static void rail_down(xr_engine *e, xr_rail *r, const char *reason)
{
    pthread_mutex_lock(&e->lock);
    xr__policy_rail_state(e, r->index, XR_RAIL_DOWN, reason);
    pthread_mutex_unlock(&e->lock);
    xr__log_write(&e->log, XR_LOG_WARN, "rail %u (%s %s) down: %s; its chunks go to the "
                                        "other rails", r->index, r->provider, r->domain_name,
                  reason);
}

static void reset(xr_engine *e, xr_rail *r, const char *why)
{
    xr__log_write(&e->log, XR_LOG_INFO, "rail %u (%s %s): reset: %s", r->index, r->provider,
                  r->domain_name, why);
    int rc = xr__rail_reset(r, why);
    if (rc) /* a refusal (XR_EBUSY) recurs each pass while the link is down */
        xr__log_write(&e->log, rc == XR_EBUSY ? XR_LOG_INFO : XR_LOG_ERROR, "rail %u: %s",
                      r->index, xr__error_last());
    /* A rail left without an endpoint is down; probe_rail resets it again. */
    pthread_mutex_lock(&r->lock);
    bool up = r->state != XR_RAIL_DOWN && r->state != XR_RAIL_DISABLED;
    pthread_mutex_unlock(&r->lock);
    if (rc == XR_EFABRIC && up)
        rail_down(e, r, "its endpoint could not be reopened after a reset");
}

/* What a rail holds for a lost peer: taken back by a reset, or, where a
 * reset would lose the other peers (rail.h, reopen_moves), left with the
 * provider. */
static void let_go(xr_engine *e, xr_rail *r, fi_addr_t dst, const char *why)
{
    unsigned n;
    if (xr__rail_abandon(r, dst, why, &n) == 0) {
        xr__log_write(&e->log, XR_LOG_INFO, "rail %u (%s %s): %u operations left with the "
                                            "provider, not reset: %s", r->index, r->provider,
                      r->domain_name, n, why);
        return;
    }
    reset(e, r, why);
}

/* Apply the rule above to one rail. */
static void check_rail(xr_engine *e, xr_rail *r, uint64_t now, uint64_t deadline,
                       uint64_t connect)
{
    fi_addr_t dst;
    bool silent = false;
    /* A down rail holds at most its probe; probe_rail watches it. */
    pthread_mutex_lock(&r->lock);
    bool down = r->state == XR_RAIL_DOWN;
    pthread_mutex_unlock(&r->lock);
    if (down || !xr__rail_overdue(r, now, deadline, &dst, &silent))
        return;
    char why[256];
    pthread_mutex_lock(&e->lock);
    xr_peer *p = xr__peer_by_addr(e, r->index, dst);
    /* First contact sets up connections on every rail at once, and some
     * rails connect and complete while others still connect: a rail on
     * which the peer has not answered yet gets connect_ms. (With 1.5 s, 16
     * of 32 tcp rails were taken down for it; with 6 s, CI's slower host
     * once judged a whole 32-rail peer lost before any rail connected.) */
    if (p && !(atomic_load(&p->answered_rails) >> r->index & 1)) {
        deadline = connect;
        if (!xr__rail_overdue(r, now, deadline, &dst, &silent)) {
            pthread_mutex_unlock(&e->lock);
            return;
        }
    }
    bool peer_silent = p && atomic_load(&p->held) > 0 &&
                       now > atomic_load(&p->last_ok) + deadline &&
                       !xr__peer_vouching(p, now, deadline);
    if (peer_silent) {
        snprintf(why, sizeof why, "peer '%s' completed nothing on any rail for %llu ms",
                 p->name, (unsigned long long)(deadline / MS));
        atomic_store(&p->lost, true);
        xr__xfer_fail_peer(e, p, XR_EPEER, why);
    }
    pthread_mutex_unlock(&e->lock);
    if (peer_silent) {
        xr__log_write(&e->log, XR_LOG_WARN, "%s: its transfers fail", why);
        let_go(e, r, dst, why);
        return;
    }
    /* A peer neither clearly answering elsewhere nor yet silent for the
     * deadline: wait. Which of the two failed is not known yet, and on a
     * provider where a dead peer blocks a rail for all (shm), the peer's
     * verdict comes first, with its own deadline. */
    if (silent && p && now > atomic_load(&p->last_ok) + deadline / 2)
        return;
    if (silent) {
        snprintf(why, sizeof why, "completed nothing for %llu ms with work in flight",
                 (unsigned long long)(deadline / MS));
        pthread_mutex_lock(&r->lock);
        r->ctr.stalls++;
        snprintf(r->last_error, sizeof r->last_error, "stall: %.240s", why);
        bool was_down = r->state == XR_RAIL_DOWN || r->state == XR_RAIL_DISABLED;
        pthread_mutex_unlock(&r->lock);
        if (!was_down)
            rail_down(e, r, why);
        reset(e, r, why);
        return;
    }
    if (!xr__rail_overdue(r, now, PATH_FACTOR * deadline, &dst, &silent))
        return;
    snprintf(why, sizeof why, "an operation waited %llu ms while the rail and its peer "
                              "completed others", (unsigned long long)(PATH_FACTOR * deadline / MS));
    pthread_mutex_lock(&r->lock);
    r->ctr.stalls++;
    snprintf(r->last_error, sizeof r->last_error, "stall: %.240s", why);
    pthread_mutex_unlock(&r->lock);
    reset(e, r, why);
}

/* A probe through the peer's staging: a request for 8 bytes of a staged
 * region, which its engine answers. */
typedef struct staged_probe {
    xr_engine *e;
    xr_stage_req q;
} staged_probe;

static int post_staged_probe(void *arg, xr_rail *r, xr_opctx *probe)
{
    staged_probe *sp = arg;
    /* The slot keeps a copy of the request and copies the answer to `buf`
     * at the end, so `buf` must outlive this call: the rail's probe buffer. */
    sp->q.done = probe;
    sp->q.buf = &r->probe_buf;
    sp->q.len = sizeof r->probe_buf;
    return xr__stage_start(sp->e, r, &sp->q) ? XR_EAGAIN : 0;
}

/* A down rail: read its last probe, and send the next when it is due. */
static void probe_rail(xr_engine *e, xr_rail *r, uint64_t now)
{
    const xr_health_opts *h = &e->opts.health;
    pthread_mutex_lock(&r->lock);
    bool down = r->state == XR_RAIL_DOWN, busy = r->probe_busy;
    /* An up rail's probe vouches for a peer: vouch_read takes its result. */
    int result = down ? r->probe_result : 0;
    if (down)
        r->probe_result = 0;
    if (down && !r->probe_wait) { /* just went down: a result from before is old */
        result = 0;
        r->probe_wait = (uint64_t)h->probe_ms * MS;
        r->probe_at = now + r->probe_wait;
    } else if (down && result < 0) { /* the probe failed or was canceled: wait longer */
        r->probe_wait *= 2;
        if (r->probe_wait > (uint64_t)h->probe_max_ms * MS)
            r->probe_wait = (uint64_t)h->probe_max_ms * MS;
        r->probe_at = now + r->probe_wait;
    }
    bool due = down && !busy && result <= 0 && now >= r->probe_at;
    /* A probe unanswered for the deadline is taken back by a reset, and the
     * next one connects afresh (TCP's own SYN retries back off to seconds). */
    uint64_t dl = (uint64_t)h->deadline_ms * MS;
    bool stuck = down && busy && now > r->probe.t_post + dl && now >= r->probe_at;
    if (stuck) /* once a deadline: 1.x refuses to reset a rail that holds READs */
        r->probe_at = now + dl;
    pthread_mutex_unlock(&r->lock);
    if (stuck)
        reset(e, r, "its probe went unanswered");
    if (!down)
        return;
    if (result > 0) {
        pthread_mutex_lock(&e->lock);
        xr__policy_rail_state(e, r->index, XR_RAIL_UP, "");
        pthread_mutex_unlock(&e->lock);
        xr__log_write(&e->log, XR_LOG_WARN, "rail %u (%s %s) is back: a probe completed",
                      r->index, r->provider, r->domain_name);
        return;
    }
    if (!due)
        return;
    fi_addr_t dst;
    uint64_t raddr, key;
    bool staged = false;
    pthread_mutex_lock(&e->lock);
    bool target = xr__peer_probe_target(e, r->index, &dst, &raddr, &key, &staged);
    pthread_mutex_unlock(&e->lock);
    int rc = XR_ENOTSUP;
    if (target && staged) {
        staged_probe sp = {e, {.raddr = raddr, .dst = dst, .peer = "(probed)", .remote = true,
                               .device = -1}};
        rc = xr__rail_probe_via(r, post_staged_probe, &sp);
    } else if (target) {
        rc = xr__rail_probe(r, dst, raddr, key);
    }
    if (rc == XR_EFABRIC) /* no endpoint: a reset opens one */
        reset(e, r, "it has no endpoint to probe with");
    pthread_mutex_lock(&r->lock);
    if (rc) { /* nothing to probe with, or the post failed: try again later */
        r->probe_result = -1;
    }
    pthread_mutex_unlock(&r->lock);
}

/* Probe silent peer `p` on a rail that holds nothing for it, on a link
 * none of the holding rails shares: rails of one domain fail together, so
 * an answer there says nothing of them. Engine lock held. */
static void vouch_start(xr_engine *e, xr_peer *p, uint64_t now)
{
    uint64_t held = xr__peer_holding(e, p);
    if (!held)
        return;
    for (uint64_t k = p->mask & ~held; k; k &= k - 1) {
        xr_rail *r = &e->rails[__builtin_ctzll(k)];
        bool apart = atomic_load(&r->up);
        for (uint64_t h = held; h && apart; h &= h - 1)
            apart = strcmp(e->rails[__builtin_ctzll(h)].domain_name, r->domain_name) != 0;
        pthread_mutex_lock(&r->lock);
        apart = apart && r->state == XR_RAIL_UP && !r->probe_busy;
        pthread_mutex_unlock(&r->lock);
        fi_addr_t dst;
        uint64_t raddr, key;
        bool staged;
        if (!apart || !xr__peer_probe_at(p, r->index, &dst, &raddr, &key, &staged))
            continue;
        staged_probe sp = {e, {.raddr = raddr, .dst = dst, .peer = "(vouching)", .remote = true,
                               .device = -1}};
        int rc = staged ? xr__rail_probe_via(r, post_staged_probe, &sp)
                        : xr__rail_probe(r, dst, raddr, key);
        if (rc)
            continue;
        p->vouch_rail = (int)r->index;
        p->vouch_at = p->vouch_mark = now;
        return;
    }
}

/* The answer to a probe vouch_start sent, if it came. Engine lock held. */
static void vouch_read(xr_engine *e, xr_peer *p, uint64_t now)
{
    xr_rail *r = &e->rails[p->vouch_rail];
    pthread_mutex_lock(&r->lock);
    int result = r->probe_result;
    bool busy = r->probe_busy;
    if (result)
        r->probe_result = 0;
    pthread_mutex_unlock(&r->lock);
    if (busy && !result)
        return;
    /* Not busy and no result: the rail went down and probe_rail took it. */
    p->vouch_rail = -1;
    if (result <= 0)
        return; /* the verdict comes at the deadline */
    atomic_store(&p->last_ok, now);
    p->vouch_mark = now;
    xr__log_write(&e->log, XR_LOG_INFO, "peer '%s' answered a probe on rail %u while the rails "
                                        "holding its chunks were silent: they are judged, not "
                                        "the peer", p->name, r->index);
}

/* Each peer silent for half its bound with chunks held: start a probe, or
 * read the one in flight. A peer vouched for once is probed again only
 * after something of its own completed. Engine lock held. */
static void vouch_pass(xr_engine *e, uint64_t now, uint64_t deadline, uint64_t connect)
{
    xr__list_each(n, &e->xfers) {
        xr_xfer *x = xr__list_entry(n, xr_xfer, link);
        xr_peer *p = x->peer;
        if (atomic_load(&x->status) != XR_EINPROGRESS || atomic_load(&p->lost))
            continue;
        if (p->vouch_rail >= 0) {
            vouch_read(e, p, now);
            continue;
        }
        uint64_t allow = atomic_load(&p->answered) ? deadline : connect;
        uint64_t last = atomic_load(&p->last_ok);
        if (atomic_load(&p->held) > 0 && now > last + allow / 2 && last > p->vouch_mark)
            vouch_start(e, p, now);
    }
}

void xr__health_pass(xr_engine *e)
{
    uint64_t now = xr__rail_now(), at = atomic_load(&e->health_at);
    if (now < at || !atomic_compare_exchange_strong(&e->health_at, &at, now + HEALTH_PERIOD_NS))
        return;
    uint64_t deadline = (uint64_t)e->opts.health.deadline_ms * MS;
    /* Transfers first: a peer found silent is lost, and every rail that
     * holds something for it is reset, which frees what waits behind it. */
    fi_addr_t addr[XR_MAX_RAILS];
    uint64_t mask = 0;
    char why[256] = "";
    pthread_mutex_lock(&e->lock);
    uint64_t connect = (uint64_t)e->opts.health.connect_ms * MS;
    vouch_pass(e, now, deadline, connect);
    xr_peer *lost = xr__xfer_watch(e, now, deadline, connect);
    if (lost) {
        mask = lost->mask;
        memcpy(addr, lost->fi_addr, sizeof addr);
        snprintf(why, sizeof why, "peer '%s' stopped answering", lost->name);
    }
    pthread_mutex_unlock(&e->lock);
    if (lost)
        xr__log_write(&e->log, XR_LOG_WARN, "%s: its transfers fail with XR_EPEER", why);
    for (uint64_t m = mask; m; m &= m - 1) {
        xr_rail *r = &e->rails[__builtin_ctzll(m)];
        if (xr__rail_holds(r, addr[r->index]))
            let_go(e, r, addr[r->index], why);
    }
}

void xr__health_rail(xr_engine *e, xr_rail *r, uint64_t now)
{
    uint64_t at = atomic_load_explicit(&r->health_at, memory_order_relaxed);
    if (now < at || !atomic_compare_exchange_strong(&r->health_at, &at, now + HEALTH_PERIOD_NS))
        return;
    check_rail(e, r, now, (uint64_t)e->opts.health.deadline_ms * MS,
               (uint64_t)e->opts.health.connect_ms * MS);
    probe_rail(e, r, now);
    /* A suspect rail that completed something since is up again. */
    pthread_mutex_lock(&r->lock);
    bool healed = r->state == XR_RAIL_SUSPECT && r->last_good > r->state_since &&
                  !r->err_pending;
    pthread_mutex_unlock(&r->lock);
    if (healed) {
        pthread_mutex_lock(&e->lock);
        xr__policy_rail_state(e, r->index, XR_RAIL_UP, "");
        pthread_mutex_unlock(&e->lock);
    }
}
